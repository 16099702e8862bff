"""Detector targets, decoding (contract rule 2) and the module-level metrics.

The Rust side implements decode() and the metrics identically; keep them simple and exact.
"""

from __future__ import annotations

import numpy as np

from .preprocess import canonical_corners

STRIDE = 8
CORNER_SCALE = 32.0
NMS_IOU = 0.5
MATCH_IOU = 0.5
#: Detections used for AP are decoded at this score (lower scores are dropped).
AP_MIN_SCORE = 0.05


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------


def module_target(quad: np.ndarray):
    """(centre (2,), canonical corners (4, 2), short side length) of a quad."""
    q = canonical_corners(quad)
    centre = q.mean(axis=0)
    sides = np.hypot(*(np.roll(q, -1, axis=0) - q).T)
    short = min(sides[0] + sides[2], sides[1] + sides[3]) / 2
    return centre, q, short


def clip_quad(quad: np.ndarray, w: float, h: float, min_side: float = 2.0):
    """The part of a module quad (4, 2) inside [0, w] x [0, h], as a quad, or None.

    The data set annotates a module cut by the frame edge as its visible part (the corners
    outside slide onto the edge), so a module cut by a training crop's edge must become
    its visible part too: with the full quad as target, the detector learns to ignore
    the slivers the annotations count. Sutherland-Hodgman clip, then each corner outside
    is replaced by the clipped polygon's vertex nearest to it. None when less than
    `min_side` pixels of the module are visible in either direction.
    """
    poly = [np.asarray(p, np.float64) for p in quad]
    for axis, bound, keep_below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):
        def inside(p):
            return p[axis] <= bound if keep_below else p[axis] >= bound
        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur) != inside(prev):
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(prev + t * (cur - prev))
            if inside(cur):
                out.append(cur)
        poly = out
        if not poly:
            return None
    pts = np.array(poly)
    if np.ptp(pts[:, 0]) < min_side or np.ptp(pts[:, 1]) < min_side:
        return None
    q = np.asarray(quad, np.float64).copy()
    for i, c in enumerate(q):
        if not (0 <= c[0] <= w and 0 <= c[1] <= h):
            q[i] = pts[np.argmin(np.hypot(*(pts - c).T))]
    return q


def clip_quads(quads: np.ndarray, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """clip_quad() over (N, 4, 2) quads, dropping the ones not visible: (kept quads, their indices)."""
    clipped = [clip_quad(q, w, h) for q in np.asarray(quads)]
    kept = np.array([i for i, c in enumerate(clipped) if c is not None], np.int64)
    return np.array([clipped[i] for i in kept], np.float64).reshape(-1, 4, 2), kept


def build_targets(quads: np.ndarray, h: int, w: int, sigma_frac: float = 0.15, sigma_min: float = 0.6,
                  weights: np.ndarray | None = None):
    """Heatmap (1, h/8, w/8), regression (10, h/8, w/8) and mask (1, h/8, w/8) for one crop.

    Modules whose centre (mean of corners) lies outside [0, w) x [0, h) are not targets.
    Gaussian sigma (cells) = max(sigma_min, sigma_frac * short side / 8). The mask holds each
    module's loss weight (`weights`, default 1) at its centre cell.
    """
    gh, gw = h // STRIDE, w // STRIDE
    heat = np.zeros((gh, gw), np.float32)
    reg = np.zeros((10, gh, gw), np.float32)
    mask = np.zeros((gh, gw), np.float32)
    yy, xx = np.mgrid[0:gh, 0:gw]
    for i, quad in enumerate(quads):
        c, q, short = module_target(quad)
        if not (0 <= c[0] < w and 0 <= c[1] < h):
            continue
        col, row = int(c[0] // STRIDE), int(c[1] // STRIDE)
        sigma = max(sigma_min, sigma_frac * short / STRIDE)
        g = np.exp(-((xx - col) ** 2 + (yy - row) ** 2) / (2 * sigma * sigma))
        np.maximum(heat, g, out=heat)
        heat[row, col] = 1.0
        reg[0, row, col] = c[0] / STRIDE - col
        reg[1, row, col] = c[1] / STRIDE - row
        reg[2:, row, col] = ((q - c) / CORNER_SCALE).ravel()
        mask[row, col] = 1.0 if weights is None else weights[i]
    return heat[None], reg, mask[None]


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes (N, 4) x (M, 4) as x0, y0, x1, y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def quad_box(quads: np.ndarray, frame_w: float, frame_h: float) -> np.ndarray:
    """Axis-aligned boxes (N, 4) of quads (N, 4, 2), clipped to the frame."""
    q = np.asarray(quads, np.float64).reshape(-1, 4, 2)
    b = np.concatenate([q.min(axis=1), q.max(axis=1)], axis=1)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, frame_w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, frame_h)
    return b


def decode(maps: np.ndarray, threshold: float, frame_w: float | None = None, frame_h: float | None = None):
    """Detector output (11, H/8, W/8) -> (scores (N,), quads (N, 4, 2), boxes (N, 4)).

    p = sigmoid(ch0); keep cells with p >= threshold that are >= all 8 neighbours;
    centre = ((col + ch1) * 8, (row + ch2) * 8); quad = centre + 32 * corners (TL, TR, BR, BL);
    box = min/max of the corners clipped to the frame; greedy NMS (score descending) drops a
    detection whose box IoU with an already kept one is > 0.5. Coordinates are in model-input
    pixels; the frame defaults to the model input size.
    """
    maps = np.asarray(maps, np.float32)
    gh, gw = maps.shape[1:]
    if frame_w is None:
        frame_w = gw * STRIDE
    if frame_h is None:
        frame_h = gh * STRIDE
    p = sigmoid(maps[0].astype(np.float64))
    padded = np.pad(p, 1, constant_values=-np.inf)
    neigh = np.max(np.stack([padded[dy:dy + gh, dx:dx + gw] for dy in range(3) for dx in range(3)]), axis=0)
    rows, cols = np.nonzero((p >= threshold) & (p >= neigh))
    scores = p[rows, cols]
    cx = (cols + maps[1, rows, cols].astype(np.float64)) * STRIDE
    cy = (rows + maps[2, rows, cols].astype(np.float64)) * STRIDE
    corners = maps[3:, rows, cols].astype(np.float64).T.reshape(-1, 4, 2)
    quads = np.stack([cx, cy], axis=1)[:, None, :] + CORNER_SCALE * corners
    boxes = quad_box(quads, frame_w, frame_h)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if keep and box_iou(boxes[i], boxes[keep]).max() > NMS_IOU:
            continue
        keep.append(int(i))
    keep_arr = np.array(keep, dtype=np.int64)
    return scores[keep_arr], quads[keep_arr].reshape(-1, 4, 2), boxes[keep_arr].reshape(-1, 4)


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def match(pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = MATCH_IOU):
    """Greedy matching by descending score: each prediction takes the unmatched annotation with the
    highest IoU if that IoU >= `iou`. Returns gt index per prediction (-1 = false positive)."""
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    out = np.full(len(pred_scores), -1, np.int64)
    if len(gt_boxes) == 0 or len(pred_scores) == 0:
        return out
    ious = box_iou(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for i in order:
        cand = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            out[i] = j
            taken[j] = True
    return out


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (area under the monotone precision envelope)."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(tp, np.float64)[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
