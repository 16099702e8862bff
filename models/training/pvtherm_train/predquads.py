"""Collect detector-predicted quads on the *train* frames, matched to their annotations, so the
classifier can be trained on crops with the detector's real corner errors (on validation, crops
from predicted quads gave many more false defects than crops from the annotated quads).

python -m pvtherm_train.predquads --detector ../pvtherm-detector-f32.onnx --out ../../work-data/predquads.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from .data import add_data_args, load_pv_frames, load_split, split_frames
from .decode import decode, match, quad_box
from .preprocess import normalise


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.predquads")
    add_data_args(ap)
    ap.add_argument("--detector", required=True, help="detector ONNX (f32)")
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(args.detector, opts, providers=["CPUExecutionProvider"])
    frames = split_frames(load_pv_frames(args.data, args.work), load_split(), "train")
    keys, gt_idx, quads = [], [], []
    errs = []
    for f in frames:
        for src in (f.raw, f.visible):
            img = normalise(src)
            maps = sess.run(None, {"image": img[None, None]})[0][0]
            sc, q, b = decode(maps, args.threshold, img.shape[1], img.shape[0])
            m = match(b, sc, quad_box(f.quads, img.shape[1], img.shape[0]))
            for i, j in enumerate(m):
                if j >= 0:
                    keys.append(f"{f.subset}/{f.name}")
                    gt_idx.append(j)
                    quads.append(q[i])
                    errs.append(np.abs(np.sort(q[i], 0) - np.sort(f.quads[j], 0)).mean())
    np.savez(args.out, keys=np.array(keys), gt_idx=np.array(gt_idx), quads=np.array(quads))
    print(f"{len(keys)} matched predicted quads; mean corner error ~{np.mean(errs):.2f} px -> {args.out}")


if __name__ == "__main__":
    main()
