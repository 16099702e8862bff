"""Reference pre-processing shared with the Rust side (contract rules 1, 2 and 4).

Numpy only. Everything here is the *definition* of what `src/model/*` must do;
the golden files in `tests/fixtures/parity/` are written by the CLI at the end
of this file (`python -m pvtherm_train.preprocess --help`).

Precision rules (so that Rust can reproduce the numbers bit-for-bit or within
1e-6):
* percentile indices are computed in f64: k_lo = floor(0.01 * (n - 1)),
  k_hi = ceil(0.99 * (n - 1));
* all pixel arithmetic is float32;
* resize and crop sampling coordinates are float32.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

F32 = np.float32

#: Classifier input size (rule 4): portrait, height 40, width 24.
CROP_H = 40
CROP_W = 24


# --------------------------------------------------------------------------------------
# Rule 1: normalisation and resize
# --------------------------------------------------------------------------------------


def percentile_indices(n: int) -> tuple[int, int]:
    """0-based order-statistic indices of the low (1 %) and high (99 %) clip values."""
    k_lo = int(math.floor(0.01 * (n - 1)))
    k_hi = int(math.ceil(0.99 * (n - 1)))
    return k_lo, k_hi


def normalise(values: np.ndarray) -> np.ndarray:
    """Map a 2-D uint8/uint16/float32 image to float32 0..1 by its 1 % / 99 % order statistics.

    lo = k-th smallest value, k = floor(0.01 (n-1)); hi = k-th smallest, k = ceil(0.99 (n-1));
    if hi <= lo: hi = lo + 1; out = clip((v - lo) / (hi - lo), 0, 1), all in float32.
    Integer inputs keep lo and hi as integers (so hi - lo is exact).
    """
    a = np.asarray(values)
    if a.ndim != 2:
        raise ValueError(f"normalise expects a 2-D array, got shape {a.shape}")
    if a.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"normalise expects uint8, uint16 or float32, got {a.dtype}")
    n = a.size
    k_lo, k_hi = percentile_indices(n)
    part = np.partition(a.ravel(), [k_lo, k_hi])
    if a.dtype == np.float32:
        lo = F32(part[k_lo])
        hi = F32(part[k_hi])
        if hi <= lo:
            hi = F32(lo + F32(1.0))
        den = F32(hi - lo)
    else:
        lo = int(part[k_lo])
        hi = int(part[k_hi])
        if hi <= lo:
            hi = lo + 1
        den = F32(hi - lo)
    out = (a.astype(F32) - F32(lo)) / den
    return np.clip(out, F32(0.0), F32(1.0)).astype(F32)


def _axis_coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel-centre source indices and weights along one axis (float32)."""
    scale = F32(n_in) / F32(n_out)
    dst = np.arange(n_out, dtype=F32)
    src = (dst + F32(0.5)) * scale - F32(0.5)
    src = np.clip(src, F32(0.0), F32(n_in - 1))
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0.astype(F32)).astype(F32)
    return i0, i1, frac


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Separable bilinear resize with half-pixel centres, float32.

    src = (dst + 0.5) * (in / out) - 0.5 clamped to [0, in - 1]; i0 = floor(src),
    i1 = min(i0 + 1, in - 1), frac = src - i0. Horizontal pass first:
    tmp = a[:, x0] * (1 - fx) + a[:, x1] * fx; then out = tmp[y0] * (1 - fy) + tmp[y1] * fy.
    """
    a = np.asarray(img, dtype=F32)
    in_h, in_w = a.shape
    if (in_h, in_w) == (out_h, out_w):
        return a.copy()
    x0, x1, fx = _axis_coords(in_w, out_w)
    y0, y1, fy = _axis_coords(in_h, out_h)
    tmp = a[:, x0] * (F32(1.0) - fx)[None, :] + a[:, x1] * fx[None, :]
    out = tmp[y0, :] * (F32(1.0) - fy)[:, None] + tmp[y1, :] * fy[:, None]
    return out.astype(F32)


def model_input(frame: np.ndarray, in_h: int | None = None, in_w: int | None = None) -> np.ndarray:
    """Detector input for a raw frame: normalise(frame), then resize if the size differs."""
    x = normalise(frame)
    if in_h is None or in_w is None or (in_h, in_w) == x.shape:
        return x
    return resize_bilinear(x, in_h, in_w)


# --------------------------------------------------------------------------------------
# Rule 2: canonical corner order
# --------------------------------------------------------------------------------------


def canonical_corners(corners: np.ndarray) -> np.ndarray:
    """Sort 4 corners (4, 2) by atan2(y - cy, x - cx) ascending (TL, TR, BR, BL if upright).

    The centre is the mean of the corners. Ties keep the input order (stable sort).
    """
    c = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    centre = c.mean(axis=0)
    ang = np.arctan2(c[:, 1] - centre[1], c[:, 0] - centre[0])
    order = np.argsort(ang, kind="stable")
    return c[order]


# --------------------------------------------------------------------------------------
# Rule 4: classifier crop
# --------------------------------------------------------------------------------------


def portrait_corners(quad: np.ndarray) -> np.ndarray:
    """Canonical corners, rotated to [TR, BR, BL, TL] when the module is landscape.

    Landscape means dist(TL, TR) > dist(TL, BL); after the rotation the long side runs
    along the crop's 40-pixel height.
    """
    q = canonical_corners(quad)
    tl, tr, br, bl = q
    if np.hypot(*(tr - tl)) > np.hypot(*(bl - tl)):
        q = np.stack([tr, br, bl, tl])
    return q


def sample_bilinear(frame: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of `frame` at float32 pixel-index coordinates (clamped to the frame)."""
    a = np.asarray(frame)
    h, w = a.shape
    x = np.clip(np.asarray(x, dtype=F32), F32(0.0), F32(w - 1))
    y = np.clip(np.asarray(y, dtype=F32), F32(0.0), F32(h - 1))
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0.astype(F32)).astype(F32)
    fy = (y - y0.astype(F32)).astype(F32)
    v00 = a[y0, x0].astype(F32)
    v01 = a[y0, x1].astype(F32)
    v10 = a[y1, x0].astype(F32)
    v11 = a[y1, x1].astype(F32)
    one = F32(1.0)
    top = v00 * (one - fx) + v01 * fx
    bot = v10 * (one - fx) + v11 * fx
    return (top * (one - fy) + bot * fy).astype(F32)


def crop_module_raw(frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The un-normalised 40x24 float32 crop of one module (rule 4 without normalise)."""
    q = portrait_corners(quad).astype(F32)
    tl, tr, br, bl = q
    u = np.arange(CROP_W, dtype=F32)
    v = np.arange(CROP_H, dtype=F32)
    s = ((u + F32(0.5)) / F32(CROP_W))[None, :]
    t = ((v + F32(0.5)) / F32(CROP_H))[:, None]
    one = F32(1.0)
    w_tl = (one - s) * (one - t)
    w_tr = s * (one - t)
    w_br = s * t
    w_bl = (one - s) * t
    px = w_tl * tl[0] + w_tr * tr[0] + w_br * br[0] + w_bl * bl[0]
    py = w_tl * tl[1] + w_tr * tr[1] + w_br * br[1] + w_bl * bl[1]
    return sample_bilinear(frame, px - F32(0.5), py - F32(0.5))


def crop_module(frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Classifier input for one module: the 40x24 bilinear crop of rule 4, normalised."""
    return normalise(crop_module_raw(frame, quad))


# --------------------------------------------------------------------------------------
# I/O helpers
# --------------------------------------------------------------------------------------


def read_raw_tiff(path: str | Path) -> np.ndarray:
    """Read a 16-bit RawThermalImage TIFF (as written by exiftool) into uint16 (H, W)."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.array(im)
    if a.dtype != np.uint16:
        a = a.astype(np.uint16)
    return a


def _write(path: Path, arr: np.ndarray, dtype: str) -> dict:
    data = np.ascontiguousarray(arr, dtype=np.dtype(dtype))
    path.write_bytes(data.tobytes())
    return {"file": path.name, "dtype": dtype, "shape": list(arr.shape)}


def write_parity_fixture(raw: np.ndarray, quads: dict[str, np.ndarray], out: Path,
                         resize_to: tuple[int, int] | None, source: str) -> dict:
    """Write raw u16, normalised full frame, an optional resized input and module crops."""
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"source": source, "byte_order": "little-endian", "layout": "row-major"}
    manifest["raw"] = _write(out / "raw.u16", raw, "<u2")
    norm = normalise(raw)
    manifest["normalised"] = _write(out / "normalised.f32", norm, "<f4")
    k_lo, k_hi = percentile_indices(raw.size)
    part = np.partition(raw.ravel(), [k_lo, k_hi])
    manifest["normalise_lo_hi"] = [int(part[k_lo]), int(part[k_hi])]
    if resize_to is not None:
        h, w = resize_to
        manifest["resized"] = _write(out / f"input_{h}x{w}.f32", model_input(raw, h, w), "<f4")
    crops = []
    for name, quad in quads.items():
        # Round to f32 first: the Rust side holds corners as f32.
        q = np.asarray(quad, dtype=np.float32).astype(np.float64).reshape(4, 2)
        entry = _write(out / f"crop_{name}.f32", crop_module(raw, q), "<f4")
        entry["name"] = name
        entry["quad_input"] = q.tolist()
        entry["quad_canonical"] = canonical_corners(q).tolist()
        entry["quad_portrait"] = portrait_corners(q).tolist()
        crops.append(entry)
    manifest["crops"] = crops
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m pvtherm_train.preprocess",
        description="Write parity golden files (raw u16, normalised f32, resized input, crops).")
    ap.add_argument("--rjpeg-raw", required=True, help="RawThermalImage TIFF (exiftool -b -RawThermalImage)")
    ap.add_argument("--annotation", help="pv-thermography JSON; --instance picks the module to crop")
    ap.add_argument("--instance", type=int, default=0, help="instance index in --annotation (default 0)")
    ap.add_argument("--quad", action="append", default=[],
                    help="extra quad NAME:x,y,x,y,x,y,x,y (any corner order); repeatable")
    ap.add_argument("--resize", default="256x320", help="also write the model input resized to HxW ('' = none)")
    ap.add_argument("--source-name", help="source description for manifest.json (default: --rjpeg-raw)")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args(argv)

    raw = read_raw_tiff(args.rjpeg_raw)
    quads: dict[str, np.ndarray] = {}
    if args.annotation:
        inst = json.loads(Path(args.annotation).read_text())["instances"][args.instance]
        quads["module"] = np.array([[c["x"], c["y"]] for c in inst["corners"]])
    for spec in args.quad:
        name, _, nums = spec.partition(":")
        vals = [float(v) for v in nums.split(",")]
        if len(vals) != 8:
            raise SystemExit(f"--quad {spec!r}: need NAME:8 comma-separated numbers")
        quads[name] = np.array(vals).reshape(4, 2)
    resize_to = None
    if args.resize:
        h, w = (int(v) for v in args.resize.lower().split("x"))
        resize_to = (h, w)
    m = write_parity_fixture(raw, quads, Path(args.out), resize_to, source=args.source_name or str(args.rjpeg_raw))
    print(json.dumps(m, indent=2))


if __name__ == "__main__":
    main()
