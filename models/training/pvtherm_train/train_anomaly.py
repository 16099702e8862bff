"""Anomaly class model (nets.AnomalyNet): the 12 InfraredSolarModules classes of a module crop.

python -m pvtherm_train.train_anomaly train --minutes 60 --out ../../work-data/anom
python -m pvtherm_train.train_anomaly export --ckpt ../../work-data/anom/last.pt --version 0.1.0
python -m pvtherm_train.train_anomaly eval --json results/ism-val-anomaly-0.1.0.json \
    --fixture ../../tests/fixtures/ism
python -m pvtherm_train.train_anomaly pv --montage ../../work-data/anomaly-pv.png

The daemon runs it only on the modules that the defect decision flags (the classifier and the
fusion decide *whether*; this model says *what*), so it can cost ~10x the classifier per crop.
It trains on ISM's train split only (12-class cross-entropy, no class weights: the goal is
accuracy over ISM's own class mix) with the classifier's augmentation (flips, jitter, noise,
float / 8-bit AGC / plain 8-bit renderings). The last checkpoint is exported: the ISM val split
is never used to pick one.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import ISM_CLASSES, add_data_args, load_ism, load_pv_frames, load_split, split_frames
from .export import MODELS, check_ort, classifier_calibration, export_f32, quantize
from .nets import AnomalyNet, count_macs
from .preprocess import normalise
from .train_classifier import ism_augment_batch
from .train_res import ism_arrays

F32 = np.float32
RESULTS = Path(__file__).resolve().parents[1] / "results"


VIEW_COUNTS = (1, 2, 4)


def views(x: np.ndarray, n: int) -> list[np.ndarray]:
    """The first `n` test-time views of the crop batch (B, 1, 40, 24) in the daemon's order
    (`[model] anomaly_views`): the crop, turned 180 degrees, mirrored left-right, mirrored
    top-bottom."""
    return [x, x[..., ::-1, ::-1], x[..., ::-1], x[..., ::-1, :]][:n]


def logits(run, x: np.ndarray, n_views: int = 1, bs: int = 512) -> np.ndarray:
    """Class logits (B, 12) of `run` (batch -> (b, 12) array), averaged over `n_views` views."""
    views_ = views(x, n_views)
    out = []
    for i in range(0, len(x), bs):
        out.append(np.mean([run(np.ascontiguousarray(v[i:i + bs], dtype=F32)) for v in views_], axis=0))
    return np.concatenate(out) if out else np.zeros((0, 12), F32)


def metrics(lo: np.ndarray, y: np.ndarray) -> dict:
    """12-class accuracy, per-class recall and the confusion matrix (rows: true class)."""
    pred = lo.argmax(1)
    conf = np.zeros((12, 12), np.int64)
    np.add.at(conf, (y, pred), 1)
    rec = {ISM_CLASSES[c]: round(float(conf[c, c] / conf[c].sum()), 3) for c in range(12) if conf[c].sum()}
    return {"n": int(len(y)), "acc12": round(float((pred == y).mean()), 4), "per_class_recall": rec,
            "confusion": conf.tolist()}


def torch_runner(model):
    model.eval()

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x))[:, :, 0, 0].numpy()
    return run


def ort_runner(path: Path):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    # the file takes one crop at a time ([1,1,40,24], as the daemon feeds it)
    return lambda x: np.concatenate([s.run(None, {name: x[i:i + 1]})[0][:, :, 0, 0] for i in range(len(x))])


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, tr, vx, vy = ism_arrays(args.data, args.work, load_split())
    model = AnomalyNet(args.widths, args.blocks)
    print(f"anomaly model {model.cfg}: {count_macs(model, 40, 24) / 1e6:.2f} M MAC, "
          f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    freq = np.bincount(labels[tr], minlength=12).astype(np.float64)
    cw = (freq.sum() / freq) ** args.class_weight_pow
    cw = torch.tensor(cw / cw.mean(), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    log = open(out / "train_log.jsonl", "a")

    def save(step):
        torch.save({"model": model.state_dict(), "cfg": model.cfg, "step": step, "args": vars(args)}, out / "last.pt")

    def evaluate(step, minutes):
        r = {"step": step, "minutes": round(minutes, 1), "acc12": metrics(logits(torch_runner(model), vx), vy)["acc12"]}
        print("VAL", json.dumps(r), flush=True)
        log.write(json.dumps(r) + "\n")
        log.flush()
        save(step)

    budget, t0, step, hist = args.minutes * 60, time.time(), 0, []
    next_eval = args.eval_every * 60
    while (el := time.time() - t0) < budget:
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * el / budget))
        for g in opt.param_groups:
            g["lr"] = lr
        bi = rng.choice(tr, args.batch)
        x = torch.from_numpy(ism_augment_batch(rng, images[bi])[:, None])
        model.train()
        loss = F.cross_entropy(model(x)[:, :, 0, 0], torch.from_numpy(labels[bi]), weight=cw,
                               label_smoothing=args.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(loss.item())
        step += 1
        if step % 200 == 0:
            print(f"step {step} t={el / 60:.1f}min lr={lr:.2e} loss={np.mean(hist):.3f}", flush=True)
            hist = []
        if el >= next_eval:
            next_eval += args.eval_every * 60
            evaluate(step, el / 60)
    evaluate(step, args.minutes)
    print("done", step, "steps", flush=True)


def export(args) -> None:
    ck = torch.load(args.ckpt, map_location="cpu")
    cfg = dict(ck["cfg"])
    cfg.pop("arch")
    model = AnomalyNet(**cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    meta = {"pvtherm.kind": "anomaly", "pvtherm.name": "pvtherm-anomaly", "pvtherm.version": args.version,
            "pvtherm.classes": ",".join(ISM_CLASSES)}
    out_dir = Path(args.out_dir)
    f32, i8 = out_dir / "pvtherm-anomaly-f32.onnx", out_dir / "pvtherm-anomaly-int8.onnx"
    export_f32(model.export_module(), "classifier", f32, meta)
    split = load_split()
    frames = split_frames(load_pv_frames(args.data, args.work), split, "train")
    quantize(f32, i8, "classifier", classifier_calibration(frames, split, args, args.calib), meta,
             keep_first_float=True)
    x = np.zeros((1, 1, 40, 24), F32)
    ref = torch_runner(model)(x)
    print(f"{f32.name}: {f32.stat().st_size} B, max |ort - torch| = {np.abs(check_ort(f32, x)[:, :, 0, 0] - ref).max():.2e}")
    print(f"{i8.name}: {i8.stat().st_size} B")


def evaluate_files(args) -> None:
    _, _, _, vx, vy = ism_arrays(args.data, args.work, load_split())
    res = {}
    for p in ("f32", "int8"):
        run = ort_runner(Path(args.model_dir) / f"pvtherm-anomaly-{p}.onnx")
        res[p] = {f"views{n}": metrics(logits(run, vx, n), vy) for n in VIEW_COUNTS}
        print(p, "acc12 with 1 / 2 / 4 views:", *(res[p][f"views{n}"]["acc12"] for n in VIEW_COUNTS), flush=True)
        print("  per-class recall (2 views):", res[p]["views2"]["per_class_recall"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    if args.fixture:
        write_fixture(Path(args.fixture), Path(args.model_dir), args)


def write_fixture(out: Path, model_dir: Path, args, per_class: int = 2) -> None:
    """The Rust parity fixture: the first `per_class` ISM val crops of each class (8-bit, as in the
    data set) and the classes and logits onnxruntime gives them with all 4 views, per precision."""
    ids, images, labels = load_ism(args.data, args.work)
    val = set(load_split()["ism"]["val_ids"])
    pick = [i for c in range(12) for i in [j for j in range(len(ids)) if int(ids[j]) in val and labels[j] == c][:per_class]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "crops.u8").write_bytes(images[pick].astype(np.uint8).tobytes())
    x = np.stack([normalise(images[i]) for i in pick])[:, None]
    expect = {"ids": [int(ids[i]) for i in pick], "labels": [ISM_CLASSES[labels[i]] for i in pick]}
    for p in ("f32", "int8"):
        lo = logits(ort_runner(model_dir / f"pvtherm-anomaly-{p}.onnx"), x.astype(F32), 4)
        expect[p] = {"logits": np.round(lo, 4).tolist(),
                     "named": [ISM_CLASSES[1 + int(np.argmax(r[1:]))] for r in lo]}
    (out / "expected.json").write_text(json.dumps(expect) + "\n")
    print(f"{out}: {len(pick)} crops", flush=True)


def pv_defects(args) -> None:
    """What the exported f32 file names the annotated defective modules of the pv-thermography
    frames, beside the classifier's class head (what a flagged module was shown as before).
    There are no class labels there: a tally per camera, and a montage of the crops to look at."""
    from PIL import Image, ImageDraw

    from .preprocess import crop_module

    run = ort_runner(Path(args.model_dir) / "pvtherm-anomaly-f32.onnx")
    head = ort_runner(Path(args.model_dir) / "pvtherm-classifier-f32.onnx")
    tally, tiles = {}, []
    for f in load_pv_frames(args.data, args.work, verbose=False):
        for q in f.quads[f.defect]:
            x = crop_module(f.raw, q)[None, None].astype(F32)
            names = {}
            for who, lo in (("anomaly", logits(run, x, args.views)[0]), ("classifier", head(x)[0, :12])):
                names[who] = ISM_CLASSES[1 + int(np.argmax(lo[1:]))]
                t = tally.setdefault(f.subset, {}).setdefault(who, {})
                t[names[who]] = t.get(names[who], 0) + 1
            tiles.append((x[0, 0], f"{f.name[-6:]} {names['anomaly']}", f"(cls: {names['classifier']})"))
    print(json.dumps(tally, indent=1), flush=True)
    if args.montage and tiles:
        cols, tw, th = 8, 130, 200
        sheet = Image.new("L", (cols * tw, -(-len(tiles) // cols) * th), 0)
        draw = ImageDraw.Draw(sheet)
        for k, (crop, label, before) in enumerate(tiles):
            im = Image.fromarray(np.uint8(np.clip(crop, 0, 1) * 255)).resize((72, 120), Image.NEAREST)
            x0, y0 = (k % cols) * tw, (k // cols) * th
            sheet.paste(im, (x0 + 29, y0 + 4))
            draw.text((x0 + 2, y0 + 130), label, fill=255)
            draw.text((x0 + 2, y0 + 145), before, fill=160)
        sheet.save(args.montage)
        print("montage:", args.montage, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.train_anomaly")
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train", help="train on ISM's train split")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=60.0)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--wd", type=float, default=5e-4)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--widths", type=int, nargs="+", default=[32, 48, 96, 128])
    t.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 1, 1])
    t.add_argument("--class-weight-pow", type=float, default=0.0, help="0 = plain CE; 0.5 = inverse-sqrt weights")
    t.add_argument("--label-smoothing", type=float, default=0.05)
    t.add_argument("--eval-every", type=float, default=10.0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=1)
    e = sub.add_parser("export", help="ONNX f32 + int8 (models/pvtherm-anomaly-*.onnx)")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--version", required=True)
    e.add_argument("--calib", type=int, default=200)
    e.add_argument("--out-dir", default=str(MODELS))
    v = sub.add_parser("eval", help="ISM val split: 12-class accuracy of the exported files (onnxruntime)")
    v.add_argument("--model-dir", default=str(MODELS))
    v.add_argument("--json")
    v.add_argument("--fixture", help="also write the Rust parity fixture (crops + expected classes) here")
    d = sub.add_parser("pv", help="classes named for the annotated defective pv-thermography modules")
    d.add_argument("--model-dir", default=str(MODELS))
    d.add_argument("--montage", help="PNG of the crops with their names")
    d.add_argument("--views", type=int, choices=VIEW_COUNTS, default=2, help="test-time views averaged")
    for p in (t, e, v, d):
        add_data_args(p)
    args = ap.parse_args(argv)
    {"train": train, "export": export, "eval": evaluate_files, "pv": pv_defects}[args.mode](args)


if __name__ == "__main__":
    main()
