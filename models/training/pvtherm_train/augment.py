"""Training augmentation: geometry (scale, crop, flips, 90-degree and small rotations) and
"camera" renderings (radiometric 16-bit, 8-bit AGC, the R-JPEG's own visible layer), so that
one model serves radiometric 16-bit and plain 8-bit cameras. Every rendering goes through the
same preprocess.normalise() as in the product.
"""

from __future__ import annotations

import math

import numpy as np

from .preprocess import normalise

F32 = np.float32


def sample_map(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Bilinear sampling at float pixel-index coordinates (edges replicated), float32."""
    h, w = img.shape
    sx = np.clip(sx, 0, w - 1).astype(F32)
    sy = np.clip(sy, 0, h - 1).astype(F32)
    x0 = np.floor(sx).astype(np.int32)
    y0 = np.floor(sy).astype(np.int32)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = sx - x0
    fy = sy - y0
    a = img
    top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
    bot = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(F32)


class Geometry:
    """A random affine transform from frame coordinates to an out_h x out_w crop.

    Continuous coordinates (pixel i covers [i, i+1)).
    dst = c_dst + s * F * R(-theta) * A (src - c_src), where A (shear and aspect, drawn with
    probability p_affine) turns rectangles into parallelograms: wide-angle lenses (dataset_2)
    show the modules near the frame edge as strongly slanted quads, which a similarity
    transform of the few training frames never produces.
    """

    def __init__(self, rng: np.random.Generator, in_h: int, in_w: int, out_h: int, out_w: int,
                 scale=(0.6, 1.5), rot_jitter_deg: float = 12.0, p_jitter: float = 0.4,
                 p_affine: float = 0.0, max_shear: float = 0.35, max_aspect: float = 0.15):
        self.out_h, self.out_w = out_h, out_w
        k = int(rng.integers(4))
        theta = k * math.pi / 2
        if rng.random() < p_jitter:
            theta += math.radians(rng.uniform(-rot_jitter_deg, rot_jitter_deg))
        flip = rng.random() < 0.5
        c, s_ = math.cos(theta), math.sin(theta)
        a = np.eye(2)
        if p_affine > 0 and rng.random() < p_affine:
            sh = rng.uniform(-max_shear, max_shear)
            asp = math.exp(rng.uniform(-max_aspect, max_aspect))
            shear = np.array([[1.0, sh], [0.0, 1.0]]) if rng.random() < 0.5 else np.array([[1.0, 0.0], [sh, 1.0]])
            a = np.diag([asp, 1 / asp]) @ shear
        fm = np.diag([-1.0, 1.0]) if flip else np.eye(2)
        rot_inv = np.array([[c, s_], [-s_, c]])  # R(-theta)
        m1 = fm @ rot_inv @ a  # src -> dst linear part at scale 1
        # Source half-extent of the crop at scale 1: the crop corners mapped back.
        corners = np.array([[sx * out_w / 2, sy * out_h / 2] for sx in (-1, 1) for sy in (-1, 1)]).T
        back = np.abs(np.linalg.inv(m1) @ corners)
        hx, hy = float(back[0].max()), float(back[1].max())
        smin = max(hx * 2 / in_w, hy * 2 / in_h)
        lo, hi = math.log(max(scale[0], smin)), math.log(max(scale[1], smin))
        s = math.exp(rng.uniform(lo, hi))
        ex, ey = hx / s, hy / s
        cx = rng.uniform(ex, in_w - ex) if in_w > 2 * ex else in_w / 2
        cy = rng.uniform(ey, in_h - ey) if in_h > 2 * ey else in_h / 2
        self.m = s * m1  # src -> dst linear part
        self.c_src = np.array([cx, cy])
        self.c_dst = np.array([out_w / 2, out_h / 2])
        self.m_inv = np.linalg.inv(self.m)
        yy, xx = np.mgrid[0:out_h, 0:out_w]
        d = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 0) - self.c_dst[:, None]
        src = self.m_inv @ d + self.c_src[:, None]
        self.sx = (src[0] - 0.5).reshape(out_h, out_w).astype(F32)
        self.sy = (src[1] - 0.5).reshape(out_h, out_w).astype(F32)
        self.scale = s

    def warp(self, img: np.ndarray) -> np.ndarray:
        return sample_map(img.astype(F32, copy=False), self.sx, self.sy)

    def points(self, p: np.ndarray) -> np.ndarray:
        """Map (..., 2) frame points to crop points."""
        q = np.asarray(p, dtype=np.float64)
        return (q - self.c_src) @ self.m.T + self.c_dst


def shrink(img: np.ndarray, factor: float, antialias: bool = False) -> np.ndarray:
    """`img` shrunk by `factor` per side (half-pixel bilinear as `pvtherm eval --downscale`, or
    area-like with `antialias`, as a sensor integrates), rounded to integer counts, float32."""
    import torch
    import torch.nn.functional as F

    h, w = img.shape
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=F32))[None, None]
    small = (max(2, round(h * factor)), max(2, round(w * factor)))
    return torch.round(F.interpolate(t, size=small, mode="bilinear", align_corners=False,
                                     antialias=antialias))[0, 0].numpy()


def stretch(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """`img` resized to h x w, half-pixel bilinear (the product's input resize), float32."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=F32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def low_resolution(img: np.ndarray, factor: float, antialias: bool) -> np.ndarray:
    """What a camera with `factor` times fewer pixels per side shows after the detector's input
    upsampling: the frame shrunk (see shrink) and stretched back to its own size."""
    return stretch(shrink(img, factor, antialias), *img.shape)


def agc_render(rng: np.random.Generator, v: np.ndarray) -> np.ndarray:
    """An 8-bit AGC-like rendering: random percentile clip, gamma, optional equalisation."""
    flat = v.ravel()[::5]
    p_lo = rng.uniform(0.0, 5.0)
    p_hi = rng.uniform(95.0, 100.0)
    lo, hi = np.percentile(flat, [p_lo, p_hi])
    if hi <= lo:
        hi = lo + 1
    x = np.clip((v - lo) / (hi - lo), 0, 1)
    if rng.random() < 0.3:
        # histogram equalisation on 256 bins
        q = np.round(x * 255).astype(np.int32)
        hist = np.bincount(q.ravel(), minlength=256).astype(np.float64)
        cdf = np.cumsum(hist)
        cdf = (cdf - cdf.min()) / max(cdf.max() - cdf.min(), 1)
        x = cdf[q]
    else:
        x = x ** rng.uniform(0.6, 1.6)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def add_noise(rng: np.random.Generator, v: np.ndarray, max_rel: float = 0.02) -> np.ndarray:
    """Gaussian sensor noise plus optional row/column stripes, relative to the value spread."""
    lo, hi = np.percentile(v.ravel()[::7], [1, 99])
    spread = max(hi - lo, 1e-3)
    out = v + rng.normal(0, rng.uniform(0, max_rel) * spread, v.shape).astype(F32)
    if rng.random() < 0.3:
        out += rng.normal(0, rng.uniform(0, max_rel / 2) * spread, (v.shape[0], 1)).astype(F32)
    if rng.random() < 0.3:
        out += rng.normal(0, rng.uniform(0, max_rel / 2) * spread, (1, v.shape[1])).astype(F32)
    return out.astype(F32)


def render(rng: np.random.Generator, raw_f: np.ndarray, vis_f: np.ndarray | None,
           p_raw: float = 0.45, p_vis: float = 0.2) -> np.ndarray:
    """Pick a camera rendering of an (already warped) float frame and normalise it.

    raw: float radiometric values + noise; vis: the R-JPEG's visible 8-bit layer; else an
    8-bit AGC rendering of the raw values. Output: normalise() of the rendering, float32.
    """
    u = rng.random()
    if u < p_raw:
        v = add_noise(rng, raw_f) if rng.random() < 0.7 else raw_f
        return normalise(v.astype(F32))
    if vis_f is not None and u < p_raw + p_vis:
        v = vis_f
        if rng.random() < 0.5:
            v = add_noise(rng, v, 0.015)
        return normalise(np.clip(np.round(v), 0, 255).astype(np.uint8))
    v = add_noise(rng, raw_f) if rng.random() < 0.7 else raw_f
    return normalise(agc_render(rng, v))
