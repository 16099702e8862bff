"""Residual defect classifier (nets.ResClassifier): ISM pre-training, then fine-tuning on
pv-thermography module crops. Used by the CLI below and, per fold, by crossval.py.

python -m pvtherm_train.train_res pretrain --minutes 30 --out ../../work-data/res-ism
python -m pvtherm_train.train_res finetune --init ../../work-data/res-ism/best.pt \
    --pred-quads ../../work-data/predquads-all.npz --minutes 8 --out ../../work-data/res-ft

`pretrain` sees InfraredSolarModules only (its train split), so one pre-trained checkpoint
serves every cross-validation fold. `finetune` adds module crops of the pv-thermography
frames it is given (all present frames by default; crossval.py passes each fold's training
frames), defect loss only, defective modules oversampled.
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
from .data import ISM_CLASSES, add_data_args, load_ism, load_pv_frames, load_split
from .nets import ResClassifier, count_macs, make_classifier
from .preprocess import CROP_H, CROP_W, normalise
from .train_classifier import ism_augment_batch, normalise_batch

F32 = np.float32


# --------------------------------------------------------------------------------------
# Vectorised module crops (rule 4) from a stack of frames
# --------------------------------------------------------------------------------------


def portrait_batch(q: np.ndarray) -> np.ndarray:
    """preprocess.portrait_corners for a (B, 4, 2) batch."""
    q = np.asarray(q, np.float64)
    c = q.mean(axis=1, keepdims=True)
    ang = np.arctan2(q[..., 1] - c[..., 1], q[..., 0] - c[..., 0])
    order = np.argsort(ang, axis=1, kind="stable")
    q = np.take_along_axis(q, order[..., None], axis=1)
    tl, tr, bl = q[:, 0], q[:, 1], q[:, 3]
    land = np.hypot(*(tr - tl).T) > np.hypot(*(bl - tl).T)
    q[land] = q[land][:, [1, 2, 3, 0]]
    return q


def crop_batch(stack: np.ndarray, fi: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Un-normalised (B, 40, 24) float32 crops of quads (B, 4, 2) from frames stack[fi]
    (rule 4 sampling, as preprocess.crop_module_raw)."""
    q = portrait_batch(quads).astype(F32)
    s = ((np.arange(CROP_W, dtype=F32) + F32(0.5)) / F32(CROP_W))[None, None, :]
    t = ((np.arange(CROP_H, dtype=F32) + F32(0.5)) / F32(CROP_H))[None, :, None]
    w = [(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t]
    px = sum(w[k] * q[:, k, 0, None, None] for k in range(4)) - F32(0.5)
    py = sum(w[k] * q[:, k, 1, None, None] for k in range(4)) - F32(0.5)
    h, wd = stack.shape[1:]
    px = np.clip(px, 0, wd - 1).astype(F32)
    py = np.clip(py, 0, h - 1).astype(F32)
    x0 = np.floor(px).astype(np.int64)
    y0 = np.floor(py).astype(np.int64)
    x1 = np.minimum(x0 + 1, wd - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx, fy = px - x0, py - y0
    f = fi[:, None, None]
    v00 = stack[f, y0, x0].astype(F32)
    v01 = stack[f, y0, x1].astype(F32)
    v10 = stack[f, y1, x0].astype(F32)
    v11 = stack[f, y1, x1].astype(F32)
    top = v00 * (1 - fx) + v01 * fx
    bot = v10 * (1 - fx) + v11 * fx
    return (top * (1 - fy) + bot * fy).astype(F32)


class FrameBank:
    """pv-thermography frames as stacked arrays (raw, visible layer, two AGC renderings) with
    every annotated module and, optionally, detector-predicted quads matched to them."""

    def __init__(self, frames, rng: np.random.Generator, pred_quads: str | None = None, cut_weight: float = 1.0):
        self.frames = frames
        self.raw = np.stack([f.raw for f in frames])
        self.vis = np.stack([f.visible for f in frames])
        self.agc = np.stack([np.stack([augment.agc_render(rng, f.raw.astype(F32)) for _ in range(2)])
                             for f in frames])  # (F, 2, H, W)
        self.fi = np.concatenate([np.full(len(f.quads), i) for i, f in enumerate(frames)])
        self.mi = np.concatenate([np.arange(len(f.quads)) for f in frames])
        self.quads = np.concatenate([f.quads for f in frames])
        self.defect = np.concatenate([f.defect for f in frames])
        self.pred: dict[int, np.ndarray] = {}
        if pred_quads:
            z = np.load(pred_quads)
            index = {(f.subset, f.name): i for i, f in enumerate(frames)}
            off = np.concatenate([[0], np.cumsum([len(f.quads) for f in frames])])
            lists: dict[int, list] = {}
            for k, j, q in zip(z["keys"], z["gt_idx"], z["quads"]):
                s, n = str(k).split("/")
                if (s, n) in index:
                    lists.setdefault(int(off[index[(s, n)]] + int(j)), []).append(q)
            self.pred = {k: np.stack(v) for k, v in lists.items()}
        self.pos = np.nonzero(self.defect)[0]
        self.neg = np.nonzero(~self.defect)[0]
        # modules cut by the frame edge (visible box side < 60 % of the frame's median module
        # side): their stretched crops were the classifier's typical false defects, so healthy
        # ones are drawn cut_weight times as often
        self.cut = np.zeros(len(self.defect), bool)
        o = 0
        for f in frames:
            q = f.quads
            b = np.concatenate([np.clip(q.min(1), 0, [f.raw.shape[1], f.raw.shape[0]]),
                                np.clip(q.max(1), 0, [f.raw.shape[1], f.raw.shape[0]])], axis=1)
            wh = b[:, 2:] - b[:, :2]
            self.cut[o:o + len(q)] = (wh / np.median(wh, axis=0)).min(axis=1) < 0.6
            o += len(q)
        self.cut_weight = cut_weight
        w = np.where(self.cut[self.neg], cut_weight, 1.0)
        self.neg_p = w / w.sum()

    def sample(self, rng: np.random.Generator, n_def: int, n_ok: int, jitter: float = 1.5,
               p_pred: float = 0.5, p_misalign: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([rng.choice(self.pos, n_def), rng.choice(self.neg, n_ok, p=self.neg_p)])
        b = len(idx)
        q = self.quads[idx].copy()
        q += rng.normal(0, jitter, (b, 4, 2)) + rng.normal(0, jitter, (b, 1, 2))
        if self.pred:
            for i, k in enumerate(idx):
                c = self.pred.get(int(k))
                if c is not None and rng.random() < p_pred:
                    q[i] = c[rng.integers(len(c))] + rng.normal(0, 1.0, (4, 2))
        mis = rng.random(b) < p_misalign
        if mis.any():
            qm = q[mis]
            c = qm.mean(axis=1, keepdims=True)
            ax_u = ((qm[:, 1] - qm[:, 0] + qm[:, 2] - qm[:, 3]) / 2)[:, None]
            ax_v = ((qm[:, 3] - qm[:, 0] + qm[:, 2] - qm[:, 1]) / 2)[:, None]
            n = len(qm)
            q[mis] = (c + (qm - c) * rng.uniform(0.9, 1.1, (n, 1, 1))
                      + rng.uniform(-0.12, 0.12, (n, 1, 1)) * ax_u + rng.uniform(-0.12, 0.12, (n, 1, 1)) * ax_v)
        fi = self.fi[idx]
        u = rng.random(b)
        out = np.empty((b, CROP_H, CROP_W), F32)
        kr = u < 0.5
        if kr.any():
            c = crop_batch(self.raw, fi[kr], q[kr])
            # sensor noise relative to the crop's spread on half of them
            p1, p99 = np.percentile(c.reshape(len(c), -1), [1, 99], axis=1)
            sig = (rng.uniform(0, 0.03, len(c)) * np.maximum(p99 - p1, 1.0) * (rng.random(len(c)) < 0.5)).astype(F32)
            c = c + rng.normal(0, 1, c.shape).astype(F32) * sig[:, None, None]
            out[kr] = normalise_batch(c)
        kv = (u >= 0.5) & (u < 0.7)
        if kv.any():
            out[kv] = normalise_batch(crop_batch(self.vis, fi[kv], q[kv]))
        ka = u >= 0.7
        if ka.any():
            sel = rng.integers(2, size=int(ka.sum()))
            stack = self.agc.reshape(-1, *self.agc.shape[2:])
            out[ka] = normalise_batch(crop_batch(stack, fi[ka] * 2 + sel, q[ka]))
        fx = rng.random(b) < 0.5
        fy = rng.random(b) < 0.5
        out[fx] = out[fx][:, :, ::-1]
        out[fy] = out[fy][:, ::-1, :]
        return out, self.defect[idx].astype(F32)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def ism_arrays(data, work, split):
    ids, images, labels = load_ism(data, work)
    val_ids = set(split["ism"]["val_ids"])
    is_val = np.array([int(k) in val_ids for k in ids])
    tr = np.nonzero(~is_val)[0]
    va = np.nonzero(is_val)[0]
    vx = np.stack([normalise(images[i]) for i in va])[:, None]
    return images, labels, tr, vx, labels[va]


def logits_of(model, x: np.ndarray, bs: int = 1024) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + bs], dtype=F32)))[:, :, 0, 0]
               for i in range(0, len(x), bs)]
    return torch.cat(out).numpy() if out else np.zeros((0, 13), F32)


def ism_metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    pred = logits[:, :12].argmax(1)
    rec = {ISM_CLASSES[c]: float((pred[y == c] == c).mean()) for c in range(12) if (y == c).any()}
    return {"acc12": float((pred == y).mean()), "recall": rec}


def train(model, images, labels, tr_idx, minutes: float, lr: float, rng, bank: FrameBank | None = None,
          batch_ism: int = 128, batch_pv: int = 0, pv_defect_share: float = 0.25, w_ism_def: float = 0.5,
          w_pv: float = 1.0, class_weight_pow: float = 0.0, warmup: int = 200, log=None, eval_fn=None,
          eval_every: float = 0.0, p_misalign: float = 0.3, jitter: float = 1.5, wd: float = 5e-4,
          label_smoothing: float = 0.05, tag: str = ""):
    """Time-budgeted training (cosine LR over `minutes` of wall clock). Returns (model, steps)."""
    freq = np.bincount(labels[tr_idx], minlength=12).astype(np.float64)
    cw = (freq.sum() / freq) ** class_weight_pow
    cw = torch.tensor(cw / cw.mean(), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    budget = minutes * 60
    t0 = time.time()
    next_eval = eval_every * 60 if eval_every else float("inf")
    n_def = int(round(batch_pv * pv_defect_share))
    step, hist = 0, []
    while True:
        el = time.time() - t0
        frac = el / budget
        if frac >= 1:
            break
        cur = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = cur
        bi = rng.choice(tr_idx, batch_ism)
        xs = [ism_augment_batch(rng, images[bi])]
        yp = None
        if bank is not None and batch_pv:
            xp, yp = bank.sample(rng, n_def, batch_pv - n_def, jitter=jitter, p_misalign=p_misalign)
            xs.append(xp)
        x = torch.from_numpy(np.concatenate(xs)[:, None])
        yi = torch.from_numpy(labels[bi])
        model.train()
        lo = model(x)[:, :, 0, 0]
        l_cls = F.cross_entropy(lo[:batch_ism, :12], yi, weight=cw, label_smoothing=label_smoothing)
        l_idef = F.binary_cross_entropy_with_logits(lo[:batch_ism, 12], (yi != 0).float())
        loss = l_cls + w_ism_def * l_idef
        l_pv = torch.zeros(())
        if yp is not None:
            l_pv = F.binary_cross_entropy_with_logits(lo[batch_ism:, 12], torch.from_numpy(yp))
            loss = loss + w_pv * l_pv
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((loss.item(), l_cls.item(), l_pv.item()))
        step += 1
        if step % 200 == 0:
            h = np.mean(hist, axis=0)
            hist = []
            print(f"{tag}step {step} t={el / 60:.1f}min lr={cur:.2e} loss={h[0]:.3f} cls={h[1]:.3f} pv={h[2]:.3f}",
                  flush=True)
        if el >= next_eval and eval_fn is not None:
            next_eval += eval_every * 60
            eval_fn(model, step, el / 60)
    return model, step


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.train_res")
    ap.add_argument("mode", choices=["pretrain", "finetune"])
    add_data_args(ap)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--lr", type=float, default=None, help="default 3e-3 (pretrain) / 1e-3 (finetune)")
    ap.add_argument("--init", help="checkpoint to start from (finetune: the ISM pre-trained one)")
    ap.add_argument("--pred-quads", help="npz from predquads.py (crops of detector quads)")
    ap.add_argument("--batch-ism", type=int, default=128)
    ap.add_argument("--batch-pv", type=int, default=64)
    ap.add_argument("--w0", type=int, default=16)
    ap.add_argument("--w1", type=int, default=32)
    ap.add_argument("--w2", type=int, default=40)
    ap.add_argument("--w3", type=int, default=80)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--eval-every", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split()
    images, labels, tr, vx, vy = ism_arrays(args.data, args.work, split)
    if args.init:
        ck = torch.load(args.init, map_location="cpu")
        model = make_classifier(ck["cfg"])
        model.load_state_dict(ck["model"])
    else:
        model = ResClassifier(args.w0, args.w1, args.w2, args.w3, args.blocks)
    print(f"classifier {model.cfg}: {count_macs(model, 40, 24) / 1e6:.2f} M MAC", flush=True)
    log = open(out / "train_log.jsonl", "a")
    best = {"acc": -1.0}

    def save(model, step, name):
        torch.save({"model": model.state_dict(), "cfg": model.cfg, "step": step, "args": vars(args)}, out / name)

    def eval_fn(model, step, minutes):
        r = ism_metrics(logits_of(model, vx), vy)
        rec = {"step": step, "minutes": minutes, "ism": r}
        print("VAL", json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        save(model, step, "last.pt")
        if r["acc12"] > best["acc"]:
            best["acc"] = r["acc12"]
            save(model, step, "best.pt")

    bank = None
    if args.mode == "finetune":
        frames = load_pv_frames(args.data, args.work)
        bank = FrameBank(frames, rng, args.pred_quads)
    lr = args.lr or (3e-3 if args.mode == "pretrain" else 1e-3)
    model, step = train(model, images, labels, tr, args.minutes, lr, rng, bank=bank, batch_ism=args.batch_ism,
                        batch_pv=args.batch_pv if bank is not None else 0, eval_fn=eval_fn,
                        eval_every=args.eval_every)
    eval_fn(model, step, args.minutes)
    if args.mode == "finetune":
        save(model, step, "best.pt")  # finetune: the last state is the one cross-validated
    print("done", step, "steps; best ISM acc", best["acc"], flush=True)


if __name__ == "__main__":
    main()
