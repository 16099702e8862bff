"""Data loading: pv-thermography frames (raw 16-bit + visible 8-bit + quads) and
InfraredSolarModules crops. Everything derived is cached under the work dir
(default `<repo>/work-data`, git-ignored); the shared data set is only read.
"""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .preprocess import read_raw_tiff

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "datasets"
DEFAULT_WORK = REPO_ROOT / "work-data"
SPLIT_PATH = Path(__file__).resolve().parents[1] / "split.json"

ISM_CLASSES = [
    "No-Anomaly", "Cell", "Cell-Multi", "Cracking", "Diode", "Diode-Multi", "Hot-Spot",
    "Hot-Spot-Multi", "Offline-Module", "Shadowing", "Soiling", "Vegetation",
]
SUBSETS = ("dataset_1", "dataset_2")


@dataclass
class PvFrame:
    """One annotated pv-thermography frame."""

    subset: str
    name: str
    raw: np.ndarray  # (512, 640) uint16, RawThermalImage
    visible: np.ndarray  # (512, 640) uint8, luminance of the JPEG, shifted to align with raw
    vis_shift: tuple[int, int]  # (dy, dx) applied to the visible layer
    quads: np.ndarray  # (N, 4, 2) float64, annotated corners (data set order)
    defect: np.ndarray  # (N,) bool


def add_data_args(ap) -> None:
    """Common --data / --work command-line options."""
    ap.add_argument("--data", default=str(DEFAULT_DATA),
                    help="folder holding pv-thermography/ and infrared-solar-modules/ (default ../shared/datasets)")
    ap.add_argument("--work", default=str(DEFAULT_WORK),
                    help="cache folder for extracted raw frames etc. (default <repo>/work-data, git-ignored)")


def load_split(path: Path = SPLIT_PATH) -> dict:
    return json.loads(Path(path).read_text())


def extract_raw(jpg: Path, out_tif: Path) -> None:
    """exiftool -b -RawThermalImage jpg > out_tif (cached)."""
    out_tif.parent.mkdir(parents=True, exist_ok=True)
    data = subprocess.run(["exiftool", "-b", "-RawThermalImage", str(jpg)],
                          check=True, capture_output=True).stdout
    if len(data) < 1000:
        raise RuntimeError(f"{jpg}: no RawThermalImage (exiftool gave {len(data)} bytes)")
    out_tif.write_bytes(data)


def estimate_shift(raw: np.ndarray, vis: np.ndarray, r: int = 20, m: int = 24) -> tuple[int, int]:
    """Integer (dy, dx) with raw[y + dy, x + dx] ~ vis[y, x] (max correlation).

    In dataset_1 the visible JPEG layer is displaced vertically by 3-16 px against the
    raw image (the annotations follow the raw image), so the visible layer is shifted
    before it is used as an 8-bit training variant.
    """
    b = vis[m:-m, m:-m].astype(np.float32).ravel()
    b = (b - b.mean()) / (b.std() + 1e-6)
    rf = raw.astype(np.float32)
    best = (-2.0, 0, 0)
    for dy in range(-r, r + 1):
        for dx in range(-6, 7):
            a = rf[m + dy:rf.shape[0] - m + dy, m + dx:rf.shape[1] - m + dx].ravel()
            a = (a - a.mean()) / (a.std() + 1e-6)
            c = float(np.dot(a, b)) / a.size
            if c > best[0]:
                best = (c, dy, dx)
    return best[1], best[2]


def shift_image(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[y + dy, x + dx] = img[y, x], edges replicated."""
    h, w = img.shape
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[ys][:, xs]


def _frame_names(data: Path, subset: str) -> list[str]:
    return sorted(p.stem for p in (data / "pv-thermography" / subset / "images").glob("*.jpg"))


def load_pv_frames(data: str | Path, work: str | Path, names: dict[str, list[str]] | None = None,
                   verbose: bool = True) -> list[PvFrame]:
    """Load pv-thermography frames (all present ones, or `names[subset]`)."""
    from PIL import Image

    data = Path(data)
    work = Path(work)
    cache = work / "frames-cache"
    cache.mkdir(parents=True, exist_ok=True)
    frames = []
    for subset in SUBSETS:
        wanted = names[subset] if names is not None else _frame_names(data, subset)
        for name in wanted:
            npz = cache / f"{subset}__{name}.npz"
            jpg = data / "pv-thermography" / subset / "images" / f"{name}.jpg"
            ann = json.loads((data / "pv-thermography" / subset / "annotations" / f"{name}.json").read_text())
            quads = np.array([[[c["x"], c["y"]] for c in i["corners"]] for i in ann["instances"]],
                             dtype=np.float64).reshape(-1, 4, 2)
            defect = np.array([bool(i["defected_module"]) for i in ann["instances"]], dtype=bool)
            if npz.exists():
                z = np.load(npz)
                raw, vis, shift = z["raw"], z["visible"], tuple(int(v) for v in z["shift"])
            else:
                tif = work / "raw" / subset / f"{name}.tif"
                if not tif.exists():
                    extract_raw(jpg, tif)
                raw = read_raw_tiff(tif)
                with Image.open(jpg) as im:
                    vis0 = np.array(im.convert("L"))  # ITU-R 601 luma; dataset_1 is grey already
                shift = estimate_shift(raw, vis0)
                vis = shift_image(vis0, *shift)
                np.savez(npz, raw=raw, visible=vis, shift=np.array(shift))
            frames.append(PvFrame(subset, name, raw, vis, shift, quads, defect))
            if verbose and not npz.exists():
                print(f"cached {subset}/{name} shift={shift}", flush=True)
    return frames


def split_frames(frames: list[PvFrame], split: dict, part: str) -> list[PvFrame]:
    """Frames of one split part ('train' or 'val')."""
    keep = {(s, n) for s in SUBSETS for n in split[s][part]}
    return [f for f in frames if (f.subset, f.name) in keep]


def load_ism(data: str | Path, work: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """InfraredSolarModules: (ids (N,), images (N, 40, 24) uint8, class index (N,))."""
    from PIL import Image

    cache = Path(work) / "ism.npz"
    if cache.exists():
        z = np.load(cache)
        return z["ids"], z["images"], z["labels"]
    root = Path(data) / "infrared-solar-modules"
    meta = json.loads((root / "module_metadata.json").read_text())
    ids = np.array(sorted(int(k) for k in meta), dtype=np.int64)
    images = np.zeros((len(ids), 40, 24), np.uint8)
    labels = np.zeros(len(ids), np.int64)
    with zipfile.ZipFile(root / "InfraredSolarModules.zip") as z:
        for i, k in enumerate(ids):
            m = meta[str(k)]
            with Image.open(io.BytesIO(z.read("InfraredSolarModules/" + m["image_filepath"]))) as im:
                a = np.array(im.convert("L"))
            if a.shape != (40, 24):
                raise RuntimeError(f"ISM {k}: unexpected shape {a.shape}")
            images[i] = a
            labels[i] = ISM_CLASSES.index(m["anomaly_class"])
    Path(work).mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=ids, images=images, labels=labels)
    return ids, images, labels


def make_split(data: Path, out: Path, ism_ids: np.ndarray, seed: int = 20240611) -> dict:
    """Write split.json (frame blocks per the project rules, seeded 90/10 ISM split by id)."""
    d1 = _frame_names(data, "dataset_1")
    d2 = _frame_names(data, "dataset_2")
    d1_val = [f"{i:03d}R" for i in range(64, 80)]
    d1_guard = ["062R", "063R"]
    d2_val = ["20180630_154519", "20180630_154523", "20180630_154531", "20180630_154541"]
    for n in d1_val + d1_guard:
        assert n in d1, n
    for n in d2_val:
        assert n in d2, n
    rng = np.random.default_rng(seed)
    perm = rng.permutation(np.sort(ism_ids))
    ism_val = sorted(int(v) for v in perm[: len(perm) // 10])
    split = {
        "comment": ("Contiguous frame blocks, never random. dataset_1 frames 044-051 and 080-099 and the "
                    "last 3 dataset_2 frames are absent from the shared copy (held back by someone else). "
                    "guard frames are in neither train nor val. ism.val = seeded 10 % of the "
                    "InfraredSolarModules ids (numpy default_rng(seed).permutation(sorted ids)[:N/10])."),
        "dataset_1": {"train": [n for n in d1 if n not in d1_val + d1_guard], "val": d1_val, "guard": d1_guard},
        "dataset_2": {"train": [n for n in d2 if n not in d2_val], "val": d2_val, "guard": []},
        "ism": {"seed": seed, "val_fraction": 0.1, "val_ids": ism_val},
    }
    out.write_text(json.dumps(split, indent=1) + "\n")
    return split


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.data",
                                 description="Extract/cache the data and (re)write split.json.")
    add_data_args(ap)
    ap.add_argument("--write-split", action="store_true", help="(re)write models/training/split.json")
    args = ap.parse_args(argv)
    ids, _, labels = load_ism(args.data, args.work)
    print("ISM", len(ids), np.bincount(labels, minlength=12).tolist())
    if args.write_split or not SPLIT_PATH.exists():
        make_split(Path(args.data), SPLIT_PATH, ids)
        print("wrote", SPLIT_PATH)
    frames = load_pv_frames(args.data, args.work)
    split = load_split()
    for part in ("train", "val"):
        fs = split_frames(frames, split, part)
        for s in SUBSETS:
            sub = [f for f in fs if f.subset == s]
            print(part, s, len(sub), "frames", sum(len(f.quads) for f in sub), "modules",
                  int(sum(f.defect.sum() for f in sub)), "defective")
    print("visible shifts", {f"{f.subset}/{f.name}": f.vis_shift for f in frames})


if __name__ == "__main__":
    main()
