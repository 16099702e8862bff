"""Train the module classifier: 12 InfraredSolarModules classes + a defect logit.

python -m pvtherm_train.train_classifier --minutes 20 --out ../../work-data/cls

Data: all InfraredSolarModules crops (class + defect = class != No-Anomaly; 90/10 split by
id from split.json) and module crops cut by rule 4 from the pv-thermography train frames
(defect loss only, defective modules oversampled).
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
from .data import ISM_CLASSES, add_data_args, load_ism, load_pv_frames, load_split, split_frames
from .nets import Classifier, count_macs, freeze_bn, load_folded_onnx
from .preprocess import CROP_H, CROP_W, crop_module, crop_module_raw, normalise

F32 = np.float32


def ism_augment(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Flips, small affine jitter, 8-bit re-rendering / float rendering, noise -> normalise."""
    v = img.astype(F32)
    if rng.random() < 0.5:
        v = v[:, ::-1]
    if rng.random() < 0.5:
        v = v[::-1, :]
    if rng.random() < 0.5:
        # small scale/shift jitter (detector quads are not exact)
        s = rng.uniform(0.92, 1.08, size=2)
        t = rng.uniform(-1.5, 1.5, size=2)
        yy, xx = np.mgrid[0:CROP_H, 0:CROP_W].astype(F32)
        sx = (xx + 0.5 - CROP_W / 2) / s[0] + CROP_W / 2 + t[0] - 0.5
        sy = (yy + 0.5 - CROP_H / 2) / s[1] + CROP_H / 2 + t[1] - 0.5
        v = augment.sample_map(np.ascontiguousarray(v), sx, sy)
    u = rng.random()
    if u < 0.3:
        return normalise(np.ascontiguousarray(augment.add_noise(rng, v, 0.03), dtype=F32))
    if u < 0.6:
        v = augment.add_noise(rng, v, 0.02)
        return normalise(augment.agc_render(rng, v))
    return normalise(np.ascontiguousarray(v, dtype=np.uint8) if v.dtype == np.uint8 else
                     np.clip(np.round(v), 0, 255).astype(np.uint8))


def normalise_batch(x: np.ndarray) -> np.ndarray:
    """preprocess.normalise applied to each (40, 24) item of a float32 or uint8 batch (vectorised).

    Same order statistics and arithmetic as normalise(); checked against it in selftest()."""
    from .preprocess import percentile_indices

    n = x.shape[1] * x.shape[2]
    k_lo, k_hi = percentile_indices(n)
    flat = x.reshape(len(x), -1)
    part = np.partition(flat, [k_lo, k_hi], axis=1)
    if x.dtype == np.uint8:
        lo = part[:, k_lo].astype(np.int64)
        hi = part[:, k_hi].astype(np.int64)
        hi = np.where(hi <= lo, lo + 1, hi)
        den = (hi - lo).astype(F32)
        lo = lo.astype(F32)
    else:
        lo = part[:, k_lo].astype(F32)
        hi = part[:, k_hi].astype(F32)
        hi = np.where(hi <= lo, lo + F32(1), hi).astype(F32)
        den = (hi - lo).astype(F32)
    out = (x.astype(F32) - lo[:, None, None]) / den[:, None, None]
    return np.clip(out, F32(0), F32(1)).astype(F32)


def ism_augment_batch(rng: np.random.Generator, imgs: np.ndarray) -> np.ndarray:
    """Vectorised version of ism_augment for a (B, 40, 24) uint8 batch."""
    b = len(imgs)
    v = imgs.astype(F32)
    fx = rng.random(b) < 0.5
    fy = rng.random(b) < 0.5
    v[fx] = v[fx][:, :, ::-1]
    v[fy] = v[fy][:, ::-1, :]
    # small scale/shift jitter on half of the batch
    jit = rng.random(b) < 0.5
    if jit.any():
        nj = int(jit.sum())
        s = rng.uniform(0.92, 1.08, size=(nj, 2)).astype(F32)
        t = rng.uniform(-1.5, 1.5, size=(nj, 2)).astype(F32)
        yy, xx = np.mgrid[0:CROP_H, 0:CROP_W].astype(F32)
        sx = np.clip((xx[None] + 0.5 - CROP_W / 2) / s[:, 0, None, None] + CROP_W / 2 + t[:, 0, None, None] - 0.5, 0, CROP_W - 1)
        sy = np.clip((yy[None] + 0.5 - CROP_H / 2) / s[:, 1, None, None] + CROP_H / 2 + t[:, 1, None, None] - 0.5, 0, CROP_H - 1)
        x0 = np.floor(sx).astype(np.int64)
        y0 = np.floor(sy).astype(np.int64)
        x1 = np.minimum(x0 + 1, CROP_W - 1)
        y1 = np.minimum(y0 + 1, CROP_H - 1)
        ax, ay = sx - x0, sy - y0
        a = v[jit]
        bi = np.arange(nj)[:, None, None]
        top = a[bi, y0, x0] * (1 - ax) + a[bi, y0, x1] * ax
        bot = a[bi, y1, x0] * (1 - ax) + a[bi, y1, x1] * ax
        v[jit] = top * (1 - ay) + bot * ay
    # noise relative to each crop's spread
    p1, p99 = np.percentile(v.reshape(b, -1), [1, 99], axis=1)
    spread = np.maximum(p99 - p1, 1e-3).astype(F32)
    sig = (rng.uniform(0, 0.03, b) * spread * (rng.random(b) < 0.7)).astype(F32)
    v = v + rng.normal(0, 1, v.shape).astype(F32) * sig[:, None, None]
    out = np.empty_like(v)
    u = rng.random(b)
    # 30 %: float ("radiometric") rendering
    kf = u < 0.3
    out[kf] = normalise_batch(v[kf])
    # 30 %: AGC re-rendering (random percentile clip + gamma), quantised to 8 bit
    ka = (u >= 0.3) & (u < 0.6)
    if ka.any():
        va = v[ka].reshape(int(ka.sum()), -1)
        plo = rng.uniform(0, 5, len(va))
        phi = rng.uniform(95, 100, len(va))
        srt = np.sort(va, axis=1)
        n = va.shape[1]
        lo = srt[np.arange(len(va)), np.round(plo / 100 * (n - 1)).astype(int)]
        hi = srt[np.arange(len(va)), np.round(phi / 100 * (n - 1)).astype(int)]
        hi = np.maximum(hi, lo + 1)
        g = rng.uniform(0.6, 1.6, len(va))[:, None]
        r = np.clip((va - lo[:, None]) / (hi - lo)[:, None], 0, 1) ** g
        out[ka] = normalise_batch(np.round(r * 255).astype(np.uint8).reshape(-1, CROP_H, CROP_W))
    # 40 %: plain 8-bit
    kp = u >= 0.6
    out[kp] = normalise_batch(np.clip(np.round(v[kp]), 0, 255).astype(np.uint8))
    return out


class BatchStream(torch.utils.data.IterableDataset):
    """Endless stream of (x, ISM labels, pv defect labels) batches, built in a worker process."""

    def __init__(self, images, labels, tr_idx, pv, batch_ism, batch_pv, n_def, seed):
        self.images, self.labels, self.tr_idx, self.pv = images, labels, tr_idx, pv
        self.batch_ism, self.batch_pv, self.n_def, self.seed = batch_ism, batch_pv, n_def, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(self.seed * 1000 + (info.id if info else 0) + int(time.time()) % 100000)
        while True:
            bi = rng.choice(self.tr_idx, self.batch_ism)
            xi = ism_augment_batch(rng, self.images[bi])
            pv = [self.pv.sample(rng, True) for _ in range(self.n_def)] + \
                 [self.pv.sample(rng, False) for _ in range(self.batch_pv - self.n_def)]
            xp = np.stack([p[0] for p in pv])
            x = torch.from_numpy(np.concatenate([xi, xp])[:, None].astype(F32))
            yield x, torch.from_numpy(self.labels[bi]), torch.tensor([p[1] for p in pv], dtype=torch.float32)


class PvCrops:
    """Module crops from pv-thermography frames with quad jitter and camera renderings."""

    def __init__(self, frames, rng, pred_quads: str | None = None, jitter: float = 1.5, p_pred: float = 0.5):
        self.frames = frames
        self.jitter = jitter
        self.p_pred = p_pred
        self.p_misalign = 0.0
        self.items = [(fi, mi) for fi, f in enumerate(frames) for mi in range(len(f.quads))]
        # detector-predicted quads matched to each annotation (see predquads.py)
        self.pred: dict[tuple[int, int], list[np.ndarray]] = {}
        if pred_quads:
            z = np.load(pred_quads)
            index = {f"{f.subset}/{f.name}": fi for fi, f in enumerate(frames)}
            for k, j, q in zip(z["keys"], z["gt_idx"], z["quads"]):
                if str(k) in index:
                    self.pred.setdefault((index[str(k)], int(j)), []).append(q)
        self.defect = np.array([frames[fi].defect[mi] for fi, mi in self.items])
        # a few fixed 8-bit renderings per frame (AGC of the whole frame, as a camera would)
        self.renders = [[augment.agc_render(rng, f.raw.astype(F32)) for _ in range(3)] for f in frames]

    def sample(self, rng, defective: bool | None):
        pool = np.nonzero(self.defect == defective)[0] if defective is not None else np.arange(len(self.items))
        fi, mi = self.items[pool[rng.integers(len(pool))]]
        f = self.frames[fi]
        cands = self.pred.get((fi, mi))
        if cands and rng.random() < self.p_pred:
            q = cands[rng.integers(len(cands))] + rng.normal(0, 1.0, (4, 2))
        else:
            q = f.quads[mi] + rng.normal(0, self.jitter, (4, 2)) + rng.normal(0, self.jitter, (1, 2))
        if rng.random() < self.p_misalign:
            # detector-like misalignment: shift along the module's own axes by up to 12 % of
            # its sides and scale by 0.9-1.1 (label unchanged)
            c = q.mean(axis=0)
            ax_u = (q[1] - q[0] + q[2] - q[3]) / 2
            ax_v = (q[3] - q[0] + q[2] - q[1]) / 2
            q = c + (q - c) * rng.uniform(0.9, 1.1) + rng.uniform(-0.12, 0.12) * ax_u + rng.uniform(-0.12, 0.12) * ax_v
        u = rng.random()
        if u < 0.5:
            c = crop_module_raw(f.raw, q)
            if rng.random() < 0.5:
                c = augment.add_noise(rng, c, 0.03)
            x = normalise(np.ascontiguousarray(c, dtype=F32))
        else:
            src = f.visible if u < 0.7 else self.renders[fi][rng.integers(3)]
            x = normalise(np.clip(np.round(crop_module_raw(src, q)), 0, 255).astype(np.uint8))
        if rng.random() < 0.5:
            x = x[:, ::-1]
        if rng.random() < 0.5:
            x = x[::-1, :]
        return np.ascontiguousarray(x), float(f.defect[mi])


def pv_val_crops(frames):
    xs, ys, subsets = [], [], []
    for f in frames:
        for q, d in zip(f.quads, f.defect):
            xs.append(crop_module(f.raw, q))
            ys.append(float(d))
            subsets.append(f.subset)
    return np.stack(xs)[:, None], np.array(ys), np.array(subsets)


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def evaluate(model, ism_x, ism_y, pv_x, pv_y, pv_s, thr=0.5):
    model.eval()
    with torch.no_grad():
        lo = torch.cat([model(torch.from_numpy(ism_x[i:i + 2048])) for i in range(0, len(ism_x), 2048)])[:, :, 0, 0]
        lp = model(torch.from_numpy(pv_x))[:, :, 0, 0]
    acc = float((lo[:, :12].argmax(1).numpy() == ism_y).mean())
    pd = torch.sigmoid(lo[:, 12]).numpy()
    ism_def = prf(pd >= thr, ism_y != 0)
    pp = torch.sigmoid(lp[:, 12]).numpy()
    res = {"ism_acc12": acc, "ism_defect": ism_def}
    for s in ("dataset_1", "dataset_2"):
        k = pv_s == s
        res[f"pv_{s}_defect"] = prf(pp[k] >= thr, pv_y[k] > 0.5)
    return res, pd, pp


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.train_classifier")
    add_data_args(ap)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--w1", type=int, default=16)
    ap.add_argument("--w2", type=int, default=32)
    ap.add_argument("--extra", type=int, default=1)
    ap.add_argument("--batch-ism", type=int, default=96)
    ap.add_argument("--batch-pv", type=int, default=32)
    ap.add_argument("--pv-defect-share", type=float, default=0.25, help="share of defective pv crops")
    ap.add_argument("--w-defect", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--eval-every", type=float, default=4.0)
    ap.add_argument("--init", help="checkpoint to start from")
    ap.add_argument("--init-onnx", help="start from an exported f32 classifier (BN folded: BN statistics stay frozen)")
    ap.add_argument("--pred-quads", help="npz from predquads.py: train pv crops also use detector quads")
    ap.add_argument("--jitter", type=float, default=1.5, help="px sigma of the corner / quad jitter")
    ap.add_argument("--p-misalign", type=float, default=0.0, help="share of pv crops with a shifted/scaled quad")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split()
    ids, images, labels = load_ism(args.data, args.work)
    val_ids = set(split["ism"]["val_ids"])
    is_val = np.array([int(k) in val_ids for k in ids])
    tr_idx = np.nonzero(~is_val)[0]
    ism_vx = np.stack([normalise(images[i]) for i in np.nonzero(is_val)[0]])[:, None]
    ism_vy = labels[is_val]
    frames = load_pv_frames(args.data, args.work)
    pv_train = PvCrops(split_frames(frames, split, "train"), rng, args.pred_quads, args.jitter)
    pv_train.p_misalign = args.p_misalign
    pv_vx, pv_vy, pv_vs = pv_val_crops(split_frames(frames, split, "val"))
    print(f"ISM train {len(tr_idx)} val {len(ism_vy)}; pv train modules {len(pv_train.items)} "
          f"({int(pv_train.defect.sum())} defective); pv val {len(pv_vy)} ({int(pv_vy.sum())} defective)", flush=True)

    # mild class re-weighting (inverse square root of frequency)
    freq = np.bincount(labels[tr_idx], minlength=12).astype(np.float64)
    cw = torch.tensor((freq.sum() / freq) ** 0.5 / ((freq.sum() / freq) ** 0.5).mean(), dtype=torch.float32)
    model = Classifier(args.w1, args.w2, args.extra)
    if args.init:
        model.load_state_dict(torch.load(args.init)["model"])
    if args.init_onnx:
        load_folded_onnx(model, args.init_onnx)
    print(f"classifier {model.cfg}: {count_macs(model, 40, 24) / 1e6:.2f} M MAC", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    budget = args.minutes * 60
    t0 = time.time()
    next_eval = args.eval_every * 60
    step, hist, best = 0, [], -1.0
    log = open(out / "train_log.jsonl", "a")
    n_def = int(round(args.batch_pv * args.pv_defect_share))
    stream = BatchStream(images, labels, tr_idx, pv_train, args.batch_ism, args.batch_pv, n_def, args.seed)
    loader = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers,
                                              persistent_workers=args.workers > 0))
    while True:
        el = time.time() - t0
        frac = el / budget
        if frac >= 1:
            break
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        x, yi, yp = next(loader)
        bi = yi
        model.train()
        if args.init_onnx:
            freeze_bn(model)
        lo = model(x)[:, :, 0, 0]
        l_cls = F.cross_entropy(lo[:len(bi), :12], yi, weight=cw, label_smoothing=0.05)
        yd = torch.cat([(yi != 0).float(), yp])
        l_def = F.binary_cross_entropy_with_logits(lo[:, 12], yd)
        loss = l_cls + args.w_defect * l_def
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((loss.item(), l_cls.item(), l_def.item()))
        step += 1
        if step % 100 == 0:
            h = np.mean(hist, axis=0)
            hist = []
            print(f"step {step} t={el / 60:.1f}min lr={lr:.2e} loss={h[0]:.3f} cls={h[1]:.3f} def={h[2]:.3f}",
                  flush=True)
        if el >= next_eval:
            next_eval += args.eval_every * 60
            r, _, _ = evaluate(model, ism_vx, ism_vy, pv_vx, pv_vy, pv_vs)
            rec = {"step": step, "minutes": el / 60, **r}
            print("VAL", json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            ck = {"model": model.state_dict(), "cfg": model.cfg, "step": step, "args": vars(args), "val": r}
            torch.save(ck, out / "last.pt")
    r, pd, pp = evaluate(model, ism_vx, ism_vy, pv_vx, pv_vy, pv_vs)
    rec = {"step": step, "minutes": (time.time() - t0) / 60, **r, "final": True}
    # threshold sweep on the pv val GT crops (pooled) and on ISM val, for information
    sweep = {}
    for t in np.round(np.arange(0.05, 1.0, 0.05), 2):
        sweep[f"{t:.2f}"] = {"pv_val": prf(pp >= t, pv_vy > 0.5)["f1"], "ism_val": prf(pd >= t, ism_vy != 0)["f1"]}
    rec["threshold_sweep_f1"] = sweep
    print("VAL", json.dumps(rec), flush=True)
    log.write(json.dumps(rec) + "\n")
    ck = {"model": model.state_dict(), "cfg": model.cfg, "step": step, "args": vars(args), "val": r}
    torch.save(ck, out / "last.pt")
    torch.save(ck, out / "best.pt")
    print("classes", ISM_CLASSES)
    print("done", flush=True)


if __name__ == "__main__":
    main()
