"""Leave-one-block-out cross-validation of the defect classifier (and the physics fusion).

python -m pvtherm_train.crossval --pretrained ../../work-data/res-ism/best.pt --minutes 6 \
    --json results/crossval.json

What it does (all numbers with onnxruntime, f32 and int8):

* Folds: every camera's present frames are cut into 5 contiguous blocks (`BLOCKS`); fold k
  holds out block k of dataset_1 *and* block k of dataset_2 (the folds stay within a
  camera: a block never mixes cameras). A fold's classifier trains on all other frames
  except a guard of `GUARD` neighbouring frames on each side of each held-out block
  (neighbouring frames overlap). So every annotated module is scored once by a classifier
  that did not train on its frame, its neighbours, or (checked, `leaks`) another sighting
  of the same physical module.
* Recipe per fold: start from one ISM-pre-trained checkpoint (ISM train split only, no
  pv-thermography frame), fine-tune `--minutes` on ISM + module crops of the fold's training
  frames (train_res.train), export f32 + int8 ONNX (export.py), score the held-out modules.
* The detector is *not* retrained per fold (too costly on this CPU): the committed detector
  (trained on split.json's train frames, i.e. on most of these frames) supplies the
  "predicted quad" crops; those numbers are therefore optimistic about the quads, not
  about the classifier. The main numbers use the annotated quads.
* The committed classifier is scored on the same crops (one model for all folds: it trained
  on split.json's train frames, so outside the `val` frames its numbers are in-sample).
* Metrics per camera: per module sighting and per physical module (sightings of one module in
  consecutive frames grouped, `physical_groups`), precision / recall with Wilson 95 % intervals,
  at the classifier-only operating point and with the fusion combiner (`fusion_*`).
* ISM: 12-class accuracy and per-class recall on split.json's ISM val ids.

Out-of-fold predictions are cached (`--work`/cv/<tag>/oof.npz); `--reuse` recomputes only the
metrics and the fusion.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from .data import DEFAULT_WORK, SUBSETS, add_data_args, load_pv_frames, load_split
from .decode import box_iou, decode, match, quad_box
from .preprocess import CROP_H, CROP_W, crop_module, normalise

F32 = np.float32
CLS_META_FILE = "pvtherm-classifier-{}.onnx"

#: Contiguous blocks per camera (frame names as in the data set; dataset_1 044-051 and
#: 080-099 and the last 3 dataset_2 frames are absent from the shared copy). Boundaries are
#: chosen so that no defective physical module has sightings in two blocks.
BLOCKS = {
    "dataset_1": [("001R", "020R"), ("021R", "036R"), ("037R", "061R"), ("062R", "079R"), ("100R", "120R")],
    "dataset_2": [("20180630_154039", "20180630_154201"), ("20180630_154239", "20180630_154305"),
                  ("20180630_154327", "20180630_154451"), ("20180630_154509", "20180630_154519"),
                  ("20180630_154523", "20180630_154541")],
}
#: Frames on each side of a held-out block that its fold does not train on.
GUARD = {"dataset_1": 2, "dataset_2": 1}
N_FOLDS = 5


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k / n."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (float(max(0.0, c - h)), float(min(1.0, c + h)))


def pr(pred: np.ndarray, truth: np.ndarray) -> dict:
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"positives": int(truth.sum()), "n": int(len(truth)), "tp": tp, "fp": fp, "fn": fn,
            "precision": p, "precision_ci95": wilson(tp, tp + fp), "recall": r, "recall_ci95": wilson(tp, tp + fn),
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def average_precision(score: np.ndarray, truth: np.ndarray) -> float:
    o = np.argsort(-score, kind="stable")
    t = truth[o].astype(float)
    if t.sum() == 0:
        return float("nan")
    ctp = np.cumsum(t)
    prec = ctp / np.arange(1, len(t) + 1)
    return float((prec * t).sum() / t.sum())


def best_recall_at_precision(score: np.ndarray, truth: np.ndarray, min_p: float = 0.6) -> dict:
    """Highest recall over thresholds whose precision >= min_p (the issue's goal, as a curve point)."""
    best = {"threshold": None, "recall": 0.0, "precision": 0.0}
    for t in np.unique(score):
        pred = score >= t
        tp = int((pred & truth).sum())
        fp = int((pred & ~truth).sum())
        if tp + fp == 0:
            continue
        p, r = tp / (tp + fp), tp / max(int(truth.sum()), 1)
        if p >= min_p and r > best["recall"]:
            best = {"threshold": float(t), "recall": r, "precision": p}
    return best


# --------------------------------------------------------------------------------------
# Frames, blocks, physical modules
# --------------------------------------------------------------------------------------


def frame_blocks(frames) -> dict[tuple[str, str], int]:
    """(subset, name) -> block index."""
    out = {}
    for f in frames:
        for b, (lo, hi) in enumerate(BLOCKS[f.subset]):
            if lo <= f.name <= hi:
                out[(f.subset, f.name)] = b
        if (f.subset, f.name) not in out:
            raise RuntimeError(f"{f.subset}/{f.name} in no block")
    return out


def fold_train_mask(frames, blocks, k: int) -> np.ndarray:
    """Frames a fold trains on: not in block k (either camera), not within GUARD frames of it."""
    keep = np.ones(len(frames), bool)
    for s in SUBSETS:
        idx = [i for i, f in enumerate(frames) if f.subset == s]  # frames are sorted by name
        held = [j for j, i in enumerate(idx) if blocks[(s, frames[i].name)] == k]
        if not held:
            continue
        lo, hi = max(0, min(held) - GUARD[s]), min(len(idx) - 1, max(held) + GUARD[s])
        for j in range(lo, hi + 1):
            keep[idx[j]] = False
    return keep


def _consecutive(a, b) -> bool:
    """dataset_1 frames are consecutive when their numbers differ by 1 (absent frames break the
    chain); dataset_2 frames are consecutive in capture order (all present ones)."""
    if a.subset != b.subset:
        return False
    if a.subset == "dataset_1":
        return int(b.name[:3]) - int(a.name[:3]) == 1
    return True


def _blur_down(img: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks."""
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def masked_ncc(a: np.ndarray, b: np.ndarray, min_overlap: float) -> np.ndarray:
    """Normalised correlation of the overlap of a and b shifted by every (dy, dx) (FFT, zero
    padding; Padfield's masked NCC with full masks). Entry [dy, dx] (indices modulo the padded
    size) compares a[y, x] with b[y + dy, x + dx]; -1 where the overlap < min_overlap."""
    h, w = a.shape
    H, W = 2 * h, 2 * w
    fa = lambda x: np.fft.rfft2(x, (H, W))  # noqa: E731
    one = np.ones_like(a)

    def corr(x, y):  # sum_p x[p] y[p + s]
        return np.fft.irfft2(np.conj(fa(x)) * fa(y), (H, W))

    n = np.round(corr(one, one))
    sa, sb = corr(a, one), corr(one, b)
    saa, sbb = corr(a * a, one), corr(one, b * b)
    sab = corr(a, b)
    nn = np.maximum(n, 1)
    num = sab - sa * sb / nn
    den = np.sqrt(np.maximum(saa - sa * sa / nn, 1e-12) * np.maximum(sbb - sb * sb / nn, 1e-12))
    r = num / den
    r[n < min_overlap * h * w] = -1
    return r


def frame_shift(a: np.ndarray, b: np.ndarray, f: int = 8) -> tuple[float, float, float, float]:
    """Global shift (dx, dy) with b[y + dy, x + dx] ~ a[y, x] between two raw frames, the
    normalised correlation of the overlap at that shift, and its margin over the best shift more
    than 6 coarse cells (48 px) away.

    PV arrays are periodic, so plain phase correlation locks onto a wrong period. Coarse:
    masked NCC of f x f block means (blurs away the module pattern, keeps the array layout) over
    every shift with >= 20 % overlap; fine: masked NCC at full resolution within +-f px."""
    fa, fb = normalise(a).astype(np.float64), normalise(b).astype(np.float64)
    ca, cb = _blur_down(fa, f), _blur_down(fb, f)
    r = masked_ncc(ca, cb, 0.2)
    dy, dx = np.unravel_index(int(np.argmax(r)), r.shape)
    H, W = r.shape
    # margin over the best shift farther than `sep` coarse cells away (a periodic scene has
    # near-equal peaks one array period apart)
    sep = 6
    yy = np.minimum(np.abs(np.arange(H) - dy), H - np.abs(np.arange(H) - dy))[:, None]
    xx = np.minimum(np.abs(np.arange(W) - dx), W - np.abs(np.arange(W) - dx))[None, :]
    far = (yy > sep) | (xx > sep)
    margin = float(r[dy, dx] - r[far].max())
    dy = dy - H if dy >= H // 2 else dy
    dx = dx - W if dx >= W // 2 else dx
    h, w = fa.shape
    best = (0.0, 0.0, -1.0)
    for ddy in range(dy * f - f, dy * f + f + 1):
        for ddx in range(dx * f - f, dx * f + f + 1, 1):
            ya0, ya1 = max(0, -ddy), min(h, h - ddy)
            xa0, xa1 = max(0, -ddx), min(w, w - ddx)
            if (ya1 - ya0) * (xa1 - xa0) < 0.15 * h * w:
                continue
            pa = fa[ya0:ya1:2, xa0:xa1:2].ravel()
            pb = fb[ya0 + ddy:ya1 + ddy:2, xa0 + ddx:xa1 + ddx:2].ravel()
            c = float(np.corrcoef(pa, pb)[0, 1])
            if c > best[2]:
                best = (float(ddx), float(ddy), c)
    return best + (margin,)


def link(boxes_a: np.ndarray, boxes_b: np.ndarray, shift, min_iou: float = 0.3, max_cd: float = 0.5):
    """Greedy IoU association of frame a's boxes, shifted, with frame b's (the Rust tracker's
    gates: IoU >= 0.3, centre distance <= 0.5 x the longer side of the shifted box)."""
    pa = boxes_a + np.array([shift[0], shift[1], shift[0], shift[1]])
    iou = box_iou(pa, boxes_b)
    ca = (pa[:, :2] + pa[:, 2:]) / 2
    cb = (boxes_b[:, :2] + boxes_b[:, 2:]) / 2
    dist = np.hypot(*(ca[:, None] - cb[None]).transpose(2, 0, 1))
    gate = max_cd * np.maximum(pa[:, 2] - pa[:, 0], pa[:, 3] - pa[:, 1])
    ok = (iou >= min_iou) & (dist <= gate[:, None])
    pairs = sorted(((iou[i, j], i, j) for i, j in zip(*np.nonzero(ok))), reverse=True)
    ta, tb, out = set(), set(), []
    for _, i, j in pairs:
        if i not in ta and j not in tb:
            ta.add(i)
            tb.add(j)
            out.append((int(i), int(j)))
    return out


#: A frame pair is linked when the overlap correlates with NCC >= LINK_NCC and the shift is
#: unambiguous: its coarse peak beats every peak > 48 px away by LINK_MARGIN, or it agrees within
#: LINK_AGREE px with the shift of a neighbouring pair that itself has NCC >= LINK_NCC
#: (constant velocity, as the Rust tracker predicts).
LINK_NCC = 0.85
LINK_MARGIN = 0.05
LINK_AGREE = 80.0


def physical_groups(frames) -> tuple[np.ndarray, list[dict]]:
    """Group id per annotated module (all frames concatenated): sightings of one physical module
    linked over consecutive frames, then union-find.

    Per consecutive pair: global shift by masked NCC (`frame_shift`); if the pair passes the
    reliability test above, the annotated boxes of the first frame, moved by the shift, are
    associated greedily by IoU with the second frame's (the Rust tracker's gates: IoU >= 0.3,
    centre distance <= 0.5 x the longer side), the shift is refined to the median displacement of
    the associated modules and the association repeated."""
    off = np.concatenate([[0], np.cumsum([len(f.quads) for f in frames])])
    parent = np.arange(off[-1])

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs_i = [i for i in range(len(frames) - 1) if _consecutive(frames[i], frames[i + 1])]
    shifts = {i: frame_shift(frames[i].raw, frames[i + 1].raw) for i in pairs_i}
    info = []
    for i in pairs_i:
        a, b = frames[i], frames[i + 1]
        dx, dy, c, margin = shifts[i]
        agree = any(j in shifts and shifts[j][2] >= LINK_NCC
                    and np.hypot(shifts[j][0] - dx, shifts[j][1] - dy) <= LINK_AGREE for j in (i - 1, i + 1))
        reliable = c >= LINK_NCC and (margin >= LINK_MARGIN or agree)
        ba = quad_box(a.quads, 640, 512)
        bb = quad_box(b.quads, 640, 512)
        pairs = link(ba, bb, (dx, dy)) if reliable else []
        if pairs:  # refine with the median displacement of the linked modules, link again
            d = np.array([((bb[j, :2] + bb[j, 2:]) - (ba[k, :2] + ba[k, 2:])) / 2 for k, j in pairs])
            dx, dy = np.median(d, axis=0)
            pairs = link(ba, bb, (dx, dy))
        info.append({"a": f"{a.subset}/{a.name}", "b": b.name, "shift": [round(float(dx), 1), round(float(dy), 1)],
                     "ncc": round(c, 3), "margin": round(margin, 3), "linked": bool(reliable), "links": len(pairs)})
        for k, j in pairs:
            ra, rb = find(off[i] + k), find(off[i + 1] + j)
            if ra != rb:
                parent[rb] = ra
    roots = np.array([find(i) for i in range(off[-1])])
    _, gid = np.unique(roots, return_inverse=True)
    return gid, info


# --------------------------------------------------------------------------------------
# Temperature evidence inside the quad (fusion features)
# --------------------------------------------------------------------------------------


def planck_params(frames, data: Path, work: Path) -> dict:
    """Planck constants per frame (exiftool, cached)."""
    cache = work / "planck.json"
    d = json.loads(cache.read_text()) if cache.exists() else {}
    changed = False
    for f in frames:
        k = f"{f.subset}/{f.name}"
        if k in d:
            continue
        jpg = data / "pv-thermography" / f.subset / "images" / f"{f.name}.jpg"
        out = subprocess.run(["exiftool", "-j", "-n", "-PlanckR1", "-PlanckB", "-PlanckF", "-PlanckO", "-PlanckR2",
                              "-Emissivity", "-ObjectDistance", str(jpg)], check=True, capture_output=True).stdout
        d[k] = json.loads(out)[0]
        changed = True
    if changed:
        cache.write_text(json.dumps(d))
    return d


def raw_to_celsius(raw: np.ndarray, p: dict) -> np.ndarray:
    """FLIR Planck conversion with emissivity 1 and no atmosphere (dataset_1: emissivity 1.00,
    object distance 0, so the Rust side's correction is the identity):
    T = B / ln(R1 / (R2 (raw + O)) + F) - 273.15."""
    v = raw.astype(np.float64)
    return p["PlanckB"] / np.log(p["PlanckR1"] / (p["PlanckR2"] * (v + p["PlanckO"])) + p["PlanckF"]) - 273.15


def quad_pixels(values: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Values of the pixels whose centres (x + 0.5, y + 0.5) lie inside the quad (even-odd rule),
    as the Rust TemperatureMeter selects them."""
    h, w = values.shape
    q = np.asarray(quad, np.float64)
    x0, y0 = np.floor(np.clip(q.min(0), 0, [w, h])).astype(int)
    x1, y1 = np.ceil(np.clip(q.max(0), 0, [w, h])).astype(int)
    if x1 <= x0 or y1 <= y0:
        return values[:0, 0]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    px, py = xx + 0.5, yy + 0.5
    inside = np.zeros(px.shape, bool)
    for k in range(4):
        (ax, ay), (bx, by) = q[k], q[(k + 1) % 4]
        cond = (ay > py) != (by > py)
        xint = (bx - ax) * (py - ay) / np.where(by - ay == 0, 1e-12, by - ay) + ax
        inside ^= cond & (px < xint)
    return values[y0:y1, x0:x1][inside]


#: Fusion feature definitions (MODEL_CARD.md "Fusion"): the hot-area threshold above the
#: module's own median, in units of the frame spread (1 K on radiometric frames).
HOT_SPREADS = 2.0
#: Columns of module_features().
FEATURE_COLUMNS = ["delta", "contrast", "hot_fraction", "max", "mean", "median", "pixels"]


def module_features(values: np.ndarray, quads: np.ndarray, radiometric: bool):
    """Per quad the columns FEATURE_COLUMNS, and the frame reference and spread.

    values: the frame in degrees C (radiometric) or raw counts (relative). Per module, over
    the pixels whose centres lie inside its quad: max, mean, median.
    reference = median over the frame's modules (with >= 1 pixel) of the module medians;
    spread = 1 K on radiometric frames, else the interquartile range (75th - 25th percentile,
    numpy linear interpolation) of the module medians, at least 1 count;
    delta = (module max - reference) / spread;
    contrast = (module max - module median) / spread;
    hot_fraction = share of the module's pixels > module median + HOT_SPREADS x spread."""
    stats = []
    for q in quads:
        v = quad_pixels(values, q)
        if len(v) == 0:
            stats.append((np.nan, np.nan, np.nan, 0, v))
        else:
            stats.append((float(v.max()), float(v.mean()), float(np.median(v)), len(v), v))
    med = np.array([st[2] for st in stats])
    ok = np.isfinite(med)
    ref = float(np.median(med[ok])) if ok.any() else np.nan
    if radiometric:
        spread = 1.0
    else:
        q75, q25 = np.percentile(med[ok], [75, 25]) if ok.any() else (np.nan, np.nan)
        spread = float(max(q75 - q25, 1.0))
    out = np.full((len(quads), len(FEATURE_COLUMNS)), np.nan)
    for i, (mx, mn, md, n, v) in enumerate(stats):
        if n == 0:
            continue
        out[i] = [(mx - ref) / spread, (mx - md) / spread, float((v > md + HOT_SPREADS * spread).mean()),
                  mx, mn, md, n]
    return out, ref, spread


# --------------------------------------------------------------------------------------
# Module table: every annotated module, its crops and its features
# --------------------------------------------------------------------------------------


class ModuleTable:
    """All annotated modules of the present frames (concatenated in frame order)."""

    def __init__(self, frames, data: Path, work: Path, detector: Path, log=print):
        self.frames = frames
        self.subset = np.concatenate([[f.subset] * len(f.quads) for f in frames])
        self.frame_i = np.concatenate([np.full(len(f.quads), i) for i, f in enumerate(frames)])
        self.defect = np.concatenate([f.defect for f in frames])
        blocks = frame_blocks(frames)
        self.block = np.array([blocks[(frames[i].subset, frames[i].name)] for i in self.frame_i])
        self.group, self.link_info = physical_groups(frames)
        # Keyed by the detector file: its quads, crops and features are in the cache.
        digest = hashlib.sha256(Path(detector).read_bytes()).hexdigest()[:12]
        cache = work / "cv" / f"modules-{digest}.npz"
        if cache.exists():
            z = np.load(cache)
            self.crop_gt, self.crop_pred, self.has_pred = z["crop_gt"], z["crop_pred"], z["has_pred"]
            self.feat_gt, self.feat_pred = z["feat_gt"], z["feat_pred"]
            self.pred_quads, self.pred_keys, self.pred_gt = z["pred_quads"], z["pred_keys"], z["pred_gt"]
            return
        t0 = time.time()
        planck = planck_params(frames, data, work)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        det = ort.InferenceSession(str(detector), opts, providers=["CPUExecutionProvider"])
        import onnx

        thr = float({p.key: p.value for p in onnx.load(str(detector)).metadata_props}["pvtherm.score_threshold"])
        crop_gt, crop_pred, has_pred, feat_gt, feat_pred = [], [], [], [], []
        pq, pk, pg = [], [], []
        for f in frames:
            radiometric = f.subset == "dataset_1"
            values = raw_to_celsius(f.raw, planck[f"{f.subset}/{f.name}"]) if radiometric else f.raw.astype(np.float64)
            fg, _, _ = module_features(values, f.quads, radiometric)
            crop_gt += [crop_module(f.raw, q) for q in f.quads]
            feat_gt.append(fg)
            # detector quads (raw input at the detector's threshold, and the visible layer for
            # training crops), matched to the annotations
            per_gt = [None] * len(f.quads)
            for src_name, src in (("raw", f.raw), ("visible", f.visible)):
                img = normalise(src)
                maps = det.run(None, {"image": img[None, None]})[0][0]
                sc, q, b = decode(maps, 0.2, 640, 512)
                m = match(b, sc, quad_box(f.quads, 640, 512))
                for i, j in enumerate(m):
                    if j >= 0:
                        pq.append(q[i])
                        pk.append(f"{f.subset}/{f.name}")
                        pg.append(j)
                        if src_name == "raw" and sc[i] >= thr and per_gt[j] is None:
                            per_gt[j] = q[i]
            # features of the predicted quads: the frame reference from all predicted quads
            quads_p = np.array([p if p is not None else f.quads[j] for j, p in enumerate(per_gt)])
            fp, _, _ = module_features(values, quads_p, radiometric)
            feat_pred.append(fp)
            for j, p in enumerate(per_gt):
                has_pred.append(p is not None)
                crop_pred.append(crop_module(f.raw, p) if p is not None else np.zeros((CROP_H, CROP_W), F32))
        self.crop_gt = np.stack(crop_gt)
        self.crop_pred = np.stack(crop_pred)
        self.has_pred = np.array(has_pred)
        self.feat_gt = np.concatenate(feat_gt)
        self.feat_pred = np.concatenate(feat_pred)
        self.pred_quads, self.pred_keys, self.pred_gt = np.array(pq), np.array(pk), np.array(pg)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, crop_gt=self.crop_gt, crop_pred=self.crop_pred, has_pred=self.has_pred,
                 feat_gt=self.feat_gt, feat_pred=self.feat_pred, pred_quads=self.pred_quads,
                 pred_keys=self.pred_keys, pred_gt=self.pred_gt)
        log(f"module table: {len(self.defect)} modules, {int(self.has_pred.sum())} with a detector quad "
            f"({time.time() - t0:.0f} s)")

    def predquads_npz(self, path: Path, frame_mask: np.ndarray) -> Path:
        """predquads.py-style npz restricted to the frames in frame_mask (training crops)."""
        names = {f"{f.subset}/{f.name}" for f, k in zip(self.frames, frame_mask) if k}
        keep = np.array([k in names for k in self.pred_keys])
        np.savez(path, keys=self.pred_keys[keep], gt_idx=self.pred_gt[keep], quads=self.pred_quads[keep])
        return path


# --------------------------------------------------------------------------------------
# Scoring with onnxruntime
# --------------------------------------------------------------------------------------


def ort_logits(path: Path, crops: np.ndarray) -> np.ndarray:
    """(N, 40, 24) -> (N, 13) logits, one crop per call (the models' batch dim is 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"crop": c[None, None].astype(F32)})[0][0, :, 0, 0] for c in crops])


def ism_eval(path: Path, vx: np.ndarray, vy: np.ndarray) -> dict:
    from .train_res import ism_metrics

    return ism_metrics(ort_logits(path, vx[:, 0]), vy)


# --------------------------------------------------------------------------------------
# Fusion combiner
# --------------------------------------------------------------------------------------

FUSION_FEATURES = ["defect_logit", "delta", "contrast"]


def fit_logreg(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (Newton), on standardised features; returns weights
    and bias for the raw features."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    a = np.c_[z, np.ones(len(z))]
    w = np.zeros(a.shape[1])
    reg = np.diag([l2] * z.shape[1] + [1e-6])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-a @ w))
        g = a.T @ (p - y) + reg @ w
        hmat = (a * (p * (1 - p))[:, None]).T @ a + reg
        step = np.linalg.solve(hmat, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    wr = w[:-1] / sd
    return wr, float(w[-1] - (wr * mu).sum())


def fusion_x(logit: np.ndarray, feat: np.ndarray, features=None) -> np.ndarray:
    """The combiner's inputs (FUSION_FEATURES); a module without pixels gets 0 for every
    temperature feature."""
    cols = [np.asarray(logit, np.float64)]
    for name in (features or FUSION_FEATURES)[1:]:
        cols.append(np.nan_to_num(feat[:, FEATURE_COLUMNS.index(name)], nan=0.0))
    return np.stack(cols, axis=1)


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def group_reduce(score: np.ndarray, truth: np.ndarray, group: np.ndarray):
    """Per physical module: max score over its sightings, defective if any sighting is."""
    g, inv = np.unique(group, return_inverse=True)
    s = np.full(len(g), -np.inf)
    t = np.zeros(len(g), bool)
    np.maximum.at(s, inv, score)
    np.logical_or.at(t, inv, truth)
    return s, t


def report(score: np.ndarray, thr: float, tab: ModuleTable, mask: np.ndarray | None = None) -> dict:
    """P/R per camera, per sighting and per physical module, at score >= thr."""
    out = {}
    for s in SUBSETS:
        k = tab.subset == s
        if mask is not None:
            k &= mask
        sc, tr = score[k], tab.defect[k]
        gs, gt = group_reduce(sc, tr, tab.group[k])
        out[s] = {"sighting": {**pr(sc >= thr, tr), "ap": average_precision(sc, tr),
                               "best_recall_at_p0.6": best_recall_at_precision(sc, tr)},
                  "physical": {**pr(gs >= thr, gt), "ap": average_precision(gs, gt),
                               "best_recall_at_p0.6": best_recall_at_precision(gs, gt)}}
    return out


def choose_threshold(score: np.ndarray, truth: np.ndarray, subset: np.ndarray) -> float:
    """Operating point on the cross-validation: the threshold that maximises the *smaller* of the
    two cameras' sighting F1 (one threshold serves both cameras), ties -> the higher threshold."""
    best, bt = -1.0, 0.0
    for t in np.unique(score):
        f = min(pr(score[subset == s] >= t, truth[subset == s])["f1"] for s in SUBSETS)
        if f >= best:
            best, bt = f, float(t)
    return bt


def fmt_table(name: str, rep: dict) -> str:
    lines = []
    for s in SUBSETS:
        for level in ("sighting", "physical"):
            m = rep[s][level]
            lines.append(f"| {name} | {s} | {level} | {m['positives']} / {m['n']} | {m['tp']}/{m['fp']}/{m['fn']} | "
                         f"{m['precision']:.2f} [{m['precision_ci95'][0]:.2f}, {m['precision_ci95'][1]:.2f}] | "
                         f"{m['recall']:.2f} [{m['recall_ci95'][0]:.2f}, {m['recall_ci95'][1]:.2f}] | {m['ap']:.2f} | "
                         f"{m['best_recall_at_p0.6']['recall']:.2f} |")
    return "\n".join(lines)


TABLE_HEAD = ("| model | camera | level | positives / modules | tp/fp/fn | precision [95 % CI] | recall [95 % CI] | "
              "AP | best recall at P >= 0.6 |\n|---|---|---|---|---|---|---|---|---|")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def run_folds(tab: ModuleTable, args, out_dir: Path, log) -> dict:
    """Train + export + score one classifier per fold; returns OOF logits (f32, int8) on the
    annotated and the predicted quads, and per-fold ISM results."""
    import torch

    from . import export as ex
    from .data import load_ism
    from .nets import make_classifier
    from .train_res import FrameBank, ism_arrays, train

    torch.set_num_threads(args.threads)
    split = load_split()
    images, labels, tr, vx, vy = ism_arrays(args.data, args.work, split)
    n = len(tab.defect)
    oof = {k: np.full((n, 13), np.nan, F32) for k in ("f32_gt", "int8_gt", "f32_pred", "int8_pred")}
    folds = []
    for k in range(N_FOLDS):
        fd = out_dir / f"fold{k}"
        fd.mkdir(parents=True, exist_ok=True)
        mask = fold_train_mask(tab.frames, frame_blocks(tab.frames), k)
        held = tab.block == k
        f32p, i8p = fd / CLS_META_FILE.format("f32"), fd / CLS_META_FILE.format("int8")
        if not (f32p.exists() and i8p.exists()):
            rng = np.random.default_rng(args.seed + k)
            torch.manual_seed(args.seed + k)
            ck = torch.load(args.pretrained, map_location="cpu")
            model = make_classifier(ck["cfg"])
            model.load_state_dict(ck["model"])
            train_frames = [f for f, m in zip(tab.frames, mask) if m]
            pq = tab.predquads_npz(fd / "predquads.npz", mask)
            bank = FrameBank(train_frames, rng, str(pq), cut_weight=args.cut_weight)
            log(f"fold {k}: training on {len(train_frames)} frames ({int(bank.defect.sum())} defective modules), "
                f"held out {int(held.sum())} modules ({int(tab.defect[held].sum())} defective)")
            model, steps = train(model, images, labels, tr, args.minutes, args.lr, rng, bank=bank,
                                 batch_ism=args.batch_ism, batch_pv=args.batch_pv, warmup=50, tag=f"fold{k} ")
            torch.save({"model": model.state_dict(), "cfg": model.cfg, "step": steps}, fd / "last.pt")
            meta = {"pvtherm.kind": "classifier", "pvtherm.name": "pvtherm-classifier",
                    "pvtherm.version": f"cv-fold{k}", "pvtherm.defect_threshold": "0.5",
                    "pvtherm.classes": ",".join(__import__("pvtherm_train.data", fromlist=["x"]).ISM_CLASSES)}
            ex.export_classifier_files(model, fd, meta, train_frames, split, args)
        for prec, p in (("f32", f32p), ("int8", i8p)):
            oof[f"{prec}_gt"][held] = ort_logits(p, tab.crop_gt[held])
            hp = held & tab.has_pred
            oof[f"{prec}_pred"][hp] = ort_logits(p, tab.crop_pred[hp])
        ism = {prec: ism_eval(p, vx, vy) for prec, p in (("f32", f32p), ("int8", i8p))}
        folds.append({"fold": k, "train_frames": int(mask.sum()), "held_modules": int(held.sum()),
                      "held_defective": int(tab.defect[held].sum()), "ism": ism})
        log(f"fold {k}: ISM acc f32 {ism['f32']['acc12']:.3f} int8 {ism['int8']['acc12']:.3f}")
    return oof, folds


def leaks(tab: ModuleTable) -> dict:
    """Physical modules of a held-out block that also have a sighting in that fold's training
    frames (should be none for the defective ones)."""
    frame_mask = {k: fold_train_mask(tab.frames, frame_blocks(tab.frames), k) for k in range(N_FOLDS)}
    out = {"all": 0, "defective": 0, "defective_groups_in_two_blocks": 0}
    for g in np.unique(tab.group):
        idx = np.nonzero(tab.group == g)[0]
        leak = any(frame_mask[k][tab.frame_i[idx]].any() for k in set(tab.block[idx]))
        out["all"] += int(leak)
        out["defective"] += int(leak and tab.defect[idx].any())
        out["defective_groups_in_two_blocks"] += int(tab.defect[idx].any() and len(set(tab.block[idx])) > 1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.crossval")
    add_data_args(ap)
    ap.add_argument("--pretrained", help="ISM pre-trained checkpoint (train_res pretrain); omit to score "
                    "only the committed classifier")
    ap.add_argument("--tag", default="res", help="name of this recipe's run under <work>/cv/")
    ap.add_argument("--minutes", type=float, default=6.0, help="fine-tuning budget per fold")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-ism", type=int, default=128)
    ap.add_argument("--batch-pv", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--cut-weight", type=float, default=1.0,
                    help="healthy modules cut by the frame edge are drawn this many times as often")
    ap.add_argument("--models", default=str(Path(__file__).resolve().parents[2]),
                    help="folder of the committed ONNX files (baseline)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--final", action="store_true",
                    help="after the folds, fine-tune the same recipe on all frames and export it with the "
                         "cross-validated operating point and fusion combiner to <work>/cv/<tag>/final/")
    ap.add_argument("--version", default="0.5.0", help="pvtherm.version of the --final export")
    ap.add_argument("--install", action="store_true",
                    help="with --final: copy the final f32/int8 files to models/ if the cross-validation says it "
                         "beats the committed classifier (see better_than_committed)")
    args = ap.parse_args(argv)
    data, work = Path(args.data), Path(args.work)
    t0 = time.time()

    def log(msg):
        print(f"[{(time.time() - t0) / 60:5.1f} min] {msg}", flush=True)

    frames = load_pv_frames(data, work, verbose=False)
    frames = sorted(frames, key=lambda f: (f.subset, f.name))
    models = Path(args.models)
    tab = ModuleTable(frames, data, work, models / "pvtherm-detector-f32.onnx", log)
    split = load_split()
    from .train_res import ism_arrays

    _, _, _, vx, vy = ism_arrays(data, work, split)
    val_frames = {(s, n) for s in SUBSETS for n in split[s]["val"]}
    in_val = np.array([(f.subset, f.name) in val_frames for f in frames])[tab.frame_i]
    res = {"blocks": BLOCKS, "guard": GUARD, "folds": N_FOLDS, "leaks": leaks(tab),
           "modules": {s: {"sightings": int((tab.subset == s).sum()), "defective_sightings": int(tab.defect[tab.subset == s].sum()),
                           "physical": int(len(np.unique(tab.group[tab.subset == s]))),
                           "defective_physical": int(len(np.unique(tab.group[(tab.subset == s) & tab.defect])))}
                       for s in SUBSETS},
           "links": tab.link_info, "models": {}}
    log(f"modules {res['modules']}; leaks {res['leaks']}")
    tables = [TABLE_HEAD]

    def add_model(name: str, logits: dict, thr: float | None, fusion: bool):
        """logits: precision -> (gt logits, pred logits)."""
        entry = {}
        for prec, (lg, lp) in logits.items():
            sc = sigmoid(lg[:, 12])
            t = thr if thr is not None else choose_threshold(sc, tab.defect, tab.subset)
            e = {"defect_threshold": t, "gt_quads": report(sc, t, tab),
                 "gt_quads_val_frames": report(sc, t, tab, in_val)}
            ok = tab.has_pred
            sp = np.where(ok, sigmoid(np.nan_to_num(lp[:, 12], nan=-50)), 0.0)
            e["pred_quads"] = report(sp, t, tab, ok)
            if fusion:
                e["fusion"] = fuse(lg[:, 12], lp[:, 12], tab, prec)
            entry[prec] = e
            tables.append(fmt_table(f"{name} {prec}, classifier only (t={t:.3g})", e["gt_quads"]))
            tables.append(fmt_table(f"{name} {prec}, classifier only, split.json val frames", e["gt_quads_val_frames"]))
            if fusion:
                tables.append(fmt_table(f"{name} {prec}, fused", e["fusion"]["report"]))
        res["models"][name] = entry

    # the committed classifier (one model for all folds; in-sample outside split.json's val frames)
    committed = {}
    for prec in ("f32", "int8"):
        p = models / CLS_META_FILE.format(prec)
        committed[prec] = (ort_logits(p, tab.crop_gt), np.where(tab.has_pred[:, None], ort_logits(p, tab.crop_pred), np.nan))
    import onnx

    cmeta = {q.key: q.value for q in onnx.load(str(models / CLS_META_FILE.format("f32"))).metadata_props}
    res["committed_version"] = cmeta.get("pvtherm.version")
    add_model(f"committed {cmeta.get('pvtherm.version')}", committed, float(cmeta["pvtherm.defect_threshold"]), True)
    res["models"][f"committed {cmeta.get('pvtherm.version')}"]["ism"] = {
        prec: ism_eval(models / CLS_META_FILE.format(prec), vx, vy) for prec in ("f32", "int8")}
    log("committed classifier scored")

    if args.pretrained:
        out_dir = work / "cv" / args.tag
        out_dir.mkdir(parents=True, exist_ok=True)
        oof, folds = run_folds(tab, args, out_dir, log)
        np.savez(out_dir / "oof.npz", **oof)
        add_model(f"cv {args.tag}", {p: (oof[f"{p}_gt"], oof[f"{p}_pred"]) for p in ("f32", "int8")}, None, True)
        res["models"][f"cv {args.tag}"]["folds"] = folds
        res["models"][f"cv {args.tag}"]["recipe"] = {"pretrained": str(Path(args.pretrained).name),
                                                     "minutes_per_fold": args.minutes, "lr": args.lr, "cut_weight": args.cut_weight,
                                                     "batch_ism": args.batch_ism, "batch_pv": args.batch_pv}
        if args.final:
            final(tab, args, out_dir, res, vx, vy, log)
    print("\n".join(tables))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float) + "\n")
        log(f"wrote {args.json}")


def fusion_metadata(branches: dict) -> dict:
    """The `pvtherm.fusion` metadata value: per frame kind, z = bias + sum(w_i x_i) over the
    features, defective when z >= logit_threshold."""
    out = {"version": 1, "features": FUSION_FEATURES,
           "feature_definitions": {
               "defect_logit": "logits[12] of this classifier",
               "delta": "(module max - reference) / spread",
               "contrast": "(module max - module median) / spread",
               "reference": "median over the frame's modules of the module medians",
               "spread": "radiometric: 1 K; relative: interquartile range of the module medians (>= 1 raw count)",
               "pixels": "pixels whose centres lie inside the module quad (even-odd rule), values in degrees C "
                         "(radiometric) or raw counts (relative)"}}
    for name, br in branches.items():
        out[name] = {"weights": [round(w, 6) for w in br["weights"]], "bias": round(br["bias"], 6),
                     "logit_threshold": round(br["logit_threshold"], 6)}
    return out


def better_than_committed(res: dict, new: str, old: str) -> tuple[bool, dict]:
    """The install rule, fixed before the comparison: the new classifier must beat the committed one
    on the mean over the two cameras of the classifier-only sighting AP on split.json's val frames
    (the only frames on which both are out-of-sample), and not lose ISM 12-class accuracy."""
    def ap_val(name):
        e = res["models"][name]["f32"]["gt_quads_val_frames"]
        return float(np.mean([e[s]["sighting"]["ap"] for s in SUBSETS]))

    a_new, a_old = ap_val(new), ap_val(old)
    i_new = res["models"][new]["ism"]["f32"]["acc12"]
    i_old = res["models"][old]["ism"]["f32"]["acc12"]
    ok = a_new > a_old and i_new >= i_old
    return ok, {"val_frames_mean_ap": [a_new, a_old], "ism_acc12": [i_new, i_old], "better": ok}


def final(tab, args, out_dir: Path, res: dict, vx, vy, log) -> None:
    """The shipped model: the fold recipe on all frames, operating point and fusion from the CV."""
    import shutil

    import torch

    from . import export as ex
    from .data import ISM_CLASSES
    from .nets import make_classifier
    from .train_res import FrameBank, ism_arrays, train

    cv = res["models"][f"cv {args.tag}"]["f32"]
    fd = out_dir / "final"
    fd.mkdir(parents=True, exist_ok=True)
    f32p, i8p = fd / CLS_META_FILE.format("f32"), fd / CLS_META_FILE.format("int8")
    meta = {"pvtherm.kind": "classifier", "pvtherm.name": "pvtherm-classifier", "pvtherm.version": args.version,
            "pvtherm.defect_threshold": f"{cv['defect_threshold']:.4g}", "pvtherm.classes": ",".join(ISM_CLASSES),
            "pvtherm.fusion": json.dumps(fusion_metadata(cv["fusion"]["branches"]), separators=(",", ":"))}
    split = load_split()
    ck_path = fd / "last.pt"
    if ck_path.exists():
        ck = torch.load(ck_path, map_location="cpu")
        model = make_classifier(ck["cfg"])
        model.load_state_dict(ck["model"])
    else:
        torch.set_num_threads(args.threads)
        rng = np.random.default_rng(args.seed + 100)
        torch.manual_seed(args.seed + 100)
        ck = torch.load(args.pretrained, map_location="cpu")
        model = make_classifier(ck["cfg"])
        model.load_state_dict(ck["model"])
        images, labels, tr, _, _ = ism_arrays(args.data, args.work, split)
        pq = tab.predquads_npz(fd / "predquads.npz", np.ones(len(tab.frames), bool))
        bank = FrameBank(tab.frames, rng, str(pq), cut_weight=args.cut_weight)
        log(f"final: training on all {len(tab.frames)} frames")
        model, steps = train(model, images, labels, tr, args.minutes, args.lr, rng, bank=bank,
                             batch_ism=args.batch_ism, batch_pv=args.batch_pv, warmup=50, tag="final ")
        torch.save({"model": model.state_dict(), "cfg": model.cfg, "step": steps}, ck_path)
    ex.export_classifier_files(model, fd, meta, tab.frames, split, args)
    name = f"final {args.tag} {args.version}"
    res["models"][name] = {"ism": {p: ism_eval(q, vx, vy) for p, q in (("f32", f32p), ("int8", i8p))},
                           "metadata": meta}
    log(f"final: ISM acc f32 {res['models'][name]['ism']['f32']['acc12']:.3f}")
    old = next(k for k in res["models"] if k.startswith("committed"))
    new = f"cv {args.tag}"
    res["models"][new]["ism"] = res["models"][name]["ism"]
    ok, why = better_than_committed(res, new, old)
    res["install"] = why
    log(f"better than the committed classifier: {why}")
    if args.install and ok:
        models = Path(args.models)
        for p in (f32p, i8p):
            shutil.copyfile(p, models / p.name)
        log(f"installed {f32p.name}, {i8p.name} in {models}")


def fuse(logit_gt: np.ndarray, logit_pred: np.ndarray, tab: ModuleTable, prec: str) -> dict:
    """Per camera branch (radiometric dataset_1: delta in K; relative dataset_2: delta in units of
    the frame spread), logistic regression on [defect_logit, delta, hot_fraction] fitted on the
    out-of-fold predictions. Reported with the combiner itself cross-validated over the same
    folds (fitted on the other folds' OOF predictions), threshold per branch = max sighting F1
    on the OOF fused scores."""
    x = fusion_x(logit_gt, tab.feat_gt)
    y = tab.defect.astype(float)
    nested = np.zeros(len(y))
    nested_score = np.zeros(len(y))
    insample_score = np.zeros(len(y))
    branches = {}
    for s, branch in (("dataset_1", "radiometric"), ("dataset_2", "relative")):
        k = tab.subset == s
        for f in range(N_FOLDS):
            tr_, te = k & (tab.block != f), k & (tab.block == f)
            w, b = fit_logreg(x[tr_], y[tr_])
            nested[te] = x[te] @ w + b
        w, b = fit_logreg(x[k], y[k])
        full = x[k] @ w + b
        t_nested = _best_f1_threshold(nested[k], tab.defect[k])
        t_full = _best_f1_threshold(full, tab.defect[k])
        nested_score[k] = nested[k] - t_nested
        insample_score[k] = full - t_full
        branches[branch] = {"subset": s, "features": FUSION_FEATURES, "weights": [float(v) for v in w], "bias": b,
                            "logit_threshold": t_full, "threshold": float(sigmoid(t_full)),
                            "nested_logit_threshold": t_nested}
    # nested: the combiner fitted without the fold it scores (honest); in-sample: the shipped
    # weights on all OOF predictions (3 parameters fitted on the same modules)
    rep = report(nested_score, 0.0, tab)
    rep_in = report(insample_score, 0.0, tab)
    xp = fusion_x(np.nan_to_num(logit_pred, nan=-50), tab.feat_pred)
    sp = np.full(len(y), -np.inf)
    for br in branches.values():
        k = (tab.subset == br["subset"]) & tab.has_pred
        sp[k] = xp[k] @ np.array(br["weights"]) + br["bias"] - br["logit_threshold"]
    return {"branches": branches, "report": rep, "report_insample": rep_in,
            "pred_quads": report(sp, 0.0, tab, tab.has_pred)}


def _best_f1_threshold(score: np.ndarray, truth: np.ndarray) -> float:
    best, bt = -1.0, 0.0
    for t in np.unique(score):
        f1 = pr(score >= t, truth)["f1"]
        if f1 >= best:
            best, bt = f1, float(t)
    return bt


if __name__ == "__main__":
    main()
