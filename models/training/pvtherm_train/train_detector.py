"""Train the module detector (CPU, time-budgeted).

python -m pvtherm_train.train_detector --minutes 25 --out ../../work-data/det
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

from . import augment
from .data import SUBSETS, add_data_args, load_pv_frames, load_split, split_frames
from .decode import AP_MIN_SCORE, average_precision, build_targets, clip_quads, decode, match, quad_box
from .nets import Detector, count_macs, freeze_bn, load_folded_onnx
from .preprocess import normalise


class DetStream(torch.utils.data.IterableDataset):
    """Endless stream of augmented (image, heat, reg, mask) crops."""

    def __init__(self, frames, crop_h, crop_w, seed, p_ds2, sigma_frac, scale, p_affine=0.0, max_shear=0.35,
                 p_lowres=0.0, lowres=(0.25, 0.5), w_defect=1.0):
        self.frames = frames
        self.w_defect = w_defect
        self.p_lowres = p_lowres
        self.lowres = lowres
        self.p_affine = p_affine
        self.max_shear = max_shear
        self.crop_h, self.crop_w = crop_h, crop_w
        self.seed = seed
        self.sigma_frac = sigma_frac
        self.scale = scale
        self.p_vis = 0.2  # share of samples rendered from the visible 8-bit layer
        w = np.array([p_ds2 if f.subset == "dataset_2" else 1 - p_ds2 for f in frames], np.float64)
        for s in SUBSETS:
            idx = [i for i, f in enumerate(frames) if f.subset == s]
            if idx:
                w[idx] /= len(idx)
        self.weights = w / w.sum()

    def sample(self, rng):
        f = self.frames[rng.choice(len(self.frames), p=self.weights)]
        g = augment.Geometry(rng, f.raw.shape[0], f.raw.shape[1], self.crop_h, self.crop_w, scale=self.scale,
                              p_affine=self.p_affine, max_shear=self.max_shear)
        src_raw, src_vis = f.raw, f.visible
        if self.p_lowres > 0 and rng.random() < self.p_lowres:
            # A Lepton/TC001-like frame upsampled by input_scale auto: the same scene, blurred.
            k = math.exp(rng.uniform(math.log(self.lowres[0]), math.log(self.lowres[1])))
            aa = bool(rng.random() < 0.5)
            src_raw = augment.low_resolution(f.raw, k, aa)
            src_vis = augment.low_resolution(f.visible, k, aa)
        raw = g.warp(src_raw)
        if rng.random() < self.p_vis:
            img = augment.render(rng, raw, g.warp(src_vis), p_raw=0.0, p_vis=1.0)
        else:
            img = augment.render(rng, raw, None, p_raw=0.5, p_vis=0.0)
        quads, kept = clip_quads(g.points(f.quads), self.crop_w, self.crop_h)
        weights = np.where(f.defect[kept], self.w_defect, 1.0).astype(np.float32)
        heat, reg, mask = build_targets(quads, self.crop_h, self.crop_w, sigma_frac=self.sigma_frac, weights=weights)
        return img[None], heat, reg, mask

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(self.seed + (info.id if info else 0) * 7919 + int(time.time()) % 100000)
        while True:
            yield tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in self.sample(rng))


def focal_loss(logits, heat, pos_weight):
    """CenterNet penalty-reduced focal loss, normalised by the number of centres; `pos_weight`
    (the target mask) weighs each centre's term."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    neg = 1 - pos
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos * pos_weight
    neg_loss = -torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return (pos_loss.sum() + neg_loss.sum()) / n


def det_loss(out, heat, reg, mask, w_off=1.0, w_corner=1.0):
    lh = focal_loss(out[:, :1], heat, mask)
    n = mask.sum().clamp(min=1)
    l_off = (F.l1_loss(out[:, 1:3], reg[:, :2], reduction="none") * mask).sum() / n
    l_cor = (F.l1_loss(out[:, 3:], reg[:, 2:], reduction="none") * mask).sum() / n
    return lh + w_off * l_off + w_corner * l_cor, (lh.item(), l_off.item(), l_cor.item())


def run_maps(model_fn, img: np.ndarray) -> np.ndarray:
    """Pad a normalised (H, W) image to multiples of 16 with zeros and return the maps."""
    return model_fn(img)


def downscaled_input(raw: np.ndarray, factor: float) -> np.ndarray:
    """The detector input `pvtherm eval --downscale factor --input-scale auto` builds from a raw
    frame: shrunk (half-pixel bilinear, rounded to counts), normalised, then stretched by the
    power of two that makes the short side >= 384 px (frames whose short side is under 256 px),
    in multiples of 16."""
    small = augment.shrink(raw, factor)
    sh, sw = small.shape
    img = normalise(np.clip(small, 0, 65535).astype(np.uint16))
    k = 1.0
    if min(sh, sw) < 256:
        k = 2.0
        while min(sh, sw) * k < 384:
            k *= 2
    ih, iw = (int(math.ceil(round(v * k) / 16) * 16) for v in (sh, sw))
    return augment.stretch(img, ih, iw)


def evaluate_frames(predict, frames, threshold_grid=None, variant="raw", downscale=1.0):
    """AP50 and P/R per subset; `predict(img (H,W) f32) -> maps (11,h,w)`; `downscale` < 1 scores
    the frames as a smaller camera would see them (see downscaled_input)."""
    res = {}
    for s in SUBSETS:
        fs = [f for f in frames if f.subset == s]
        if not fs:
            continue
        all_scores, all_tp, n_gt = [], [], 0
        for f in fs:
            if downscale < 1:
                img = downscaled_input(f.raw, downscale)
            else:
                img = normalise(f.raw) if variant == "raw" else normalise(f.visible)
            maps = predict(img)
            h, w = img.shape
            scores, quads, boxes = decode(maps, AP_MIN_SCORE, w, h)
            fh, fw = f.raw.shape
            gt = quad_box(f.quads * np.array([w / fw, h / fh]), w, h)
            m = match(boxes, scores, gt)
            all_scores.append(scores)
            all_tp.append(m >= 0)
            n_gt += len(gt)
        sc = np.concatenate(all_scores)
        tp = np.concatenate(all_tp)
        r = {"ap50": average_precision(sc, tp, n_gt), "n_gt": n_gt}
        for t in threshold_grid or []:
            k = sc >= t
            r[f"p@{t:.2f}"] = float(tp[k].sum() / max(k.sum(), 1))
            r[f"r@{t:.2f}"] = float(tp[k].sum() / max(n_gt, 1))
        res[s] = r
    return res


def evaluate_scales(predict, frames, scales, threshold_grid=None):
    """evaluate_frames at each camera scale: ({subset or subset@scale: result}, mean AP50 of all)."""
    res = {}
    for k in scales:
        for s, v in evaluate_frames(predict, frames, threshold_grid, downscale=k).items():
            res[s if k == 1 else f"{s}@{k:g}"] = v
    return res, float(np.mean([v["ap50"] for v in res.values()]))


def torch_predictor(model):
    def predict(img):
        with torch.no_grad():
            return model(torch.from_numpy(img)[None, None]).numpy()[0]
    return predict


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.train_detector")
    add_data_args(ap)
    ap.add_argument("--out", required=True, help="checkpoint/log folder (outside git)")
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--crop", default="288x352", help="training crop HxW (multiples of 16)")
    ap.add_argument("--sigma-frac", type=float, default=0.15)
    ap.add_argument("--p-ds2", type=float, default=0.35, help="share of samples from dataset_2")
    ap.add_argument("--scale-min", type=float, default=0.6)
    ap.add_argument("--scale-max", type=float, default=1.5)
    ap.add_argument("--p-affine", type=float, default=0.0,
                    help="share of crops with a random shear/aspect change (slanted modules)")
    ap.add_argument("--max-shear", type=float, default=0.35, help="largest shear factor of --p-affine crops")
    ap.add_argument("--eval-every", type=float, default=5.0, help="minutes between validation runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--init", help="checkpoint to start from")
    ap.add_argument("--init-onnx", help="start from an exported f32 detector (BN folded: BN statistics stay frozen)")
    ap.add_argument("--p-lowres", type=float, default=0.0,
                    help="share of samples shown as a low-resolution camera upsampled back (see augment.low_resolution)")
    ap.add_argument("--lowres-min", type=float, default=0.25, help="smallest camera scale of --p-lowres samples")
    ap.add_argument("--lowres-max", type=float, default=0.5, help="largest camera scale of --p-lowres samples")
    ap.add_argument("--w-defect", type=float, default=1.0,
                    help="loss weight of defective modules' targets (a hot module must not be missed: "
                         "the defect decision only sees what the detector finds)")
    ap.add_argument("--val-scales", default="1",
                    help="comma-separated camera scales the validation scores (1 = full frame); "
                         "best.pt maximises the mean AP50 over subsets and scales")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split()
    frames = load_pv_frames(args.data, args.work)
    train = split_frames(frames, split, "train")
    val = split_frames(frames, split, "val")
    ch, cw = (int(v) for v in args.crop.split("x"))
    stream = DetStream(train, ch, cw, args.seed, args.p_ds2, args.sigma_frac, (args.scale_min, args.scale_max),
                       args.p_affine, args.max_shear, args.p_lowres, (args.lowres_min, args.lowres_max),
                       args.w_defect)
    val_scales = [float(v) for v in args.val_scales.split(",")]
    loader = torch.utils.data.DataLoader(stream, batch_size=args.batch, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    model = Detector(args.width)
    if args.init:
        model.load_state_dict(torch.load(args.init)["model"])
    if args.init_onnx:
        load_folded_onnx(model, args.init_onnx)
    print(f"detector width {args.width}: {count_macs(model, 512, 640) / 1e6:.1f} M MAC at 640x512", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = args.minutes * 60
    t0 = time.time()
    next_eval = args.eval_every * 60
    step = 0
    best = -1.0
    log = open(out / "train_log.jsonl", "a")
    hist = []
    for img, heat, reg, mask in loader:
        el = time.time() - t0
        frac = el / budget
        if frac >= 1:
            break
        warm = min(1.0, (step + 1) / 100)
        lr = args.lr * warm * 0.5 * (1 + math.cos(math.pi * frac))
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        model.train()
        if args.init_onnx:
            freeze_bn(model)
        out_maps = model(img)
        loss, parts = det_loss(out_maps, heat, reg, mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        hist.append((loss.item(),) + parts)
        step += 1
        if step % 50 == 0:
            h = np.mean(hist, axis=0)
            hist = []
            print(f"step {step} t={el / 60:.1f}min lr={lr:.2e} loss={h[0]:.3f} heat={h[1]:.3f} "
                  f"off={h[2]:.3f} corner={h[3]:.3f}", flush=True)
        if el >= next_eval:
            next_eval += args.eval_every * 60
            model.eval()
            r, mean_ap = evaluate_scales(torch_predictor(model), val, val_scales)
            rec = {"step": step, "minutes": el / 60, "val": r, "mean_ap50": mean_ap}
            print("VAL", json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            ck = {"model": model.state_dict(), "width": args.width, "step": step, "args": vars(args), "val": r}
            torch.save(ck, out / "last.pt")
            if mean_ap > best:
                best = mean_ap
                torch.save(ck, out / "best.pt")
    model.eval()
    r, mean_ap = evaluate_scales(torch_predictor(model), val, val_scales, threshold_grid=[0.2, 0.3, 0.4, 0.5])
    rv = evaluate_frames(torch_predictor(model), val, variant="visible")
    rec = {"step": step, "minutes": (time.time() - t0) / 60, "val": r, "val_visible8bit": rv,
           "mean_ap50": mean_ap, "final": True}
    print("VAL", json.dumps(rec), flush=True)
    log.write(json.dumps(rec) + "\n")
    ck = {"model": model.state_dict(), "width": args.width, "step": step, "args": vars(args), "val": r}
    torch.save(ck, out / "last.pt")
    if rec["mean_ap50"] >= best:
        torch.save(ck, out / "best.pt")
    print("done", flush=True)


if __name__ == "__main__":
    main()
