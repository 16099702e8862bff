"""Evaluate the exported ONNX models with onnxruntime on the validation split.

python -m pvtherm_train.evaluate                   # f32 and int8, thresholds from the metadata
python -m pvtherm_train.evaluate --tune            # also sweep the thresholds (pooled over subsets)

Per sub-dataset: module AP50 (boxes clipped to the frame, IoU >= 0.5, greedy by score; detections
decoded at p >= 0.05), precision/recall at the model's score threshold, and defect
precision/recall/F1 over the matched modules (classifier run on the crop of the *predicted*
quad from the raw frame; defective = sigmoid(logit 12) >= defect threshold).
The Rust `pvtherm eval` computes the same numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .data import SUBSETS, add_data_args, load_pv_frames, load_split, split_frames
from .decode import AP_MIN_SCORE, average_precision, decode, match, quad_box, sigmoid
from .export import MODELS
from .preprocess import crop_module, normalise


class OnnxModels:
    def __init__(self, det_path: Path, cls_path: Path):
        import onnx
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.det = ort.InferenceSession(str(det_path), opts, providers=["CPUExecutionProvider"])
        self.cls = ort.InferenceSession(str(cls_path), opts, providers=["CPUExecutionProvider"])
        self.det_meta = {p.key: p.value for p in onnx.load(str(det_path)).metadata_props}
        self.cls_meta = {p.key: p.value for p in onnx.load(str(cls_path)).metadata_props}

    def maps(self, img: np.ndarray) -> np.ndarray:
        return self.det.run(None, {"image": img[None, None].astype(np.float32)})[0][0]

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """(N, 40, 24) normalised crops -> (N, 13) logits (one call per crop: batch dim is 1)."""
        out = [self.cls.run(None, {"crop": c[None, None].astype(np.float32)})[0][0, :, 0, 0] for c in crops]
        return np.stack(out) if out else np.zeros((0, 13), np.float32)


def frame_input(f, variant: str) -> np.ndarray:
    return normalise(f.raw if variant == "raw" else f.visible)


def collect(models: OnnxModels, frames, variant: str = "raw"):
    """Per frame: detections at p >= AP_MIN_SCORE with their match and defect probability."""
    recs = []
    for f in frames:
        img = frame_input(f, variant)
        h, w = img.shape
        scores, quads, boxes = decode(models.maps(img), AP_MIN_SCORE, w, h)
        gt = quad_box(f.quads, w, h)
        src = f.raw if variant == "raw" else f.visible
        crops = np.stack([crop_module(src, q) for q in quads]) if len(quads) else np.zeros((0, 40, 24), np.float32)
        logits = models.classify(crops)
        recs.append({"subset": f.subset, "name": f.name, "scores": scores, "boxes": boxes, "gt": gt,
                     "gt_defect": f.defect, "defect_p": sigmoid(logits[:, 12]) if len(logits) else np.zeros(0),
                     "cls": logits[:, :12].argmax(1) if len(logits) else np.zeros(0, int)})
    return recs


def metrics(recs, det_thr: float, def_thr: float) -> dict:
    out = {}
    for s in list(SUBSETS) + ["all"]:
        rs = [r for r in recs if s == "all" or r["subset"] == s]
        if not rs:
            continue
        sc, tp, n_gt = [], [], 0
        tp_t = fp_t = 0
        d_tp = d_fp = d_fn = d_tn = 0
        for r in rs:
            m = match(r["boxes"], r["scores"], r["gt"])
            sc.append(r["scores"])
            tp.append(m >= 0)
            n_gt += len(r["gt"])
            # at the operating threshold (greedy matching redone on the kept detections)
            k = r["scores"] >= det_thr
            mk = match(r["boxes"][k], r["scores"][k], r["gt"])
            tp_t += int((mk >= 0).sum())
            fp_t += int((mk < 0).sum())
            dp = r["defect_p"][k]
            for i, j in enumerate(mk):
                if j < 0:
                    continue
                pred, truth = bool(dp[i] >= def_thr), bool(r["gt_defect"][j])
                d_tp += pred and truth
                d_fp += pred and not truth
                d_fn += (not pred) and truth
                d_tn += (not pred) and (not truth)
        sc = np.concatenate(sc)
        tp = np.concatenate(tp)
        dp_ = d_tp / (d_tp + d_fp) if d_tp + d_fp else 0.0
        dr_ = d_tp / (d_tp + d_fn) if d_tp + d_fn else 0.0
        out[s] = {
            "frames": len(rs), "modules": n_gt, "ap50": average_precision(sc, tp, n_gt),
            "precision": tp_t / max(tp_t + fp_t, 1), "recall": tp_t / max(n_gt, 1),
            "tp": tp_t, "fp": fp_t,
            "defect": {"tp": d_tp, "fp": d_fp, "fn": d_fn, "tn": d_tn, "precision": dp_, "recall": dr_,
                       "f1": 2 * dp_ * dr_ / (dp_ + dr_) if dp_ + dr_ else 0.0},
        }
    return out


def tune(recs) -> dict:
    """Thresholds maximising the pooled detection F1 and the pooled defect F1 (on these frames)."""
    best_det = max(np.round(np.arange(0.1, 0.9, 0.02), 2),
                   key=lambda t: _f1(metrics(recs, t, 0.5)["all"]["precision"], metrics(recs, t, 0.5)["all"]["recall"]))
    best_def = max(np.round(np.arange(0.05, 0.96, 0.01), 2),
                   key=lambda t: (metrics(recs, best_det, t)["all"]["defect"]["f1"], -abs(t - 0.5)))
    return {"score_threshold": float(best_det), "defect_threshold": float(best_def)}


def _f1(p, r):
    return 2 * p * r / (p + r) if p + r else 0.0


def table(results: dict) -> str:
    lines = ["| model | variant | subset | frames | modules | AP50 | P@thr | R@thr | defect P | defect R | defect F1 (tp/fp/fn) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        prec, var = key.split("/")
        for s, m in res["metrics"].items():
            d = m["defect"]
            lines.append(f"| {prec} | {var} | {s} | {m['frames']} | {m['modules']} | {m['ap50']:.3f} | "
                         f"{m['precision']:.3f} | {m['recall']:.3f} | {d['precision']:.2f} | {d['recall']:.2f} | "
                         f"{d['f1']:.2f} ({d['tp']}/{d['fp']}/{d['fn']}) |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.evaluate")
    add_data_args(ap)
    ap.add_argument("--models", default=str(MODELS), help="folder with pvtherm-{detector,classifier}-{f32,int8}.onnx")
    ap.add_argument("--precisions", default="f32,int8")
    ap.add_argument("--variants", default="raw", help="raw (16-bit radiometric) and/or visible (8-bit JPEG layer)")
    ap.add_argument("--part", default="val", choices=["val", "train"])
    ap.add_argument("--det-threshold", type=float, help="override pvtherm.score_threshold")
    ap.add_argument("--defect-threshold", type=float, help="override pvtherm.defect_threshold")
    ap.add_argument("--tune", action="store_true", help="sweep thresholds on the f32/raw results and print them")
    ap.add_argument("--json", help="write all results here")
    args = ap.parse_args(argv)

    frames = split_frames(load_pv_frames(args.data, args.work), load_split(), args.part)
    md = Path(args.models)
    results = {}
    for prec in args.precisions.split(","):
        models = OnnxModels(md / f"pvtherm-detector-{prec}.onnx", md / f"pvtherm-classifier-{prec}.onnx")
        det_thr = args.det_threshold if args.det_threshold is not None else float(models.det_meta["pvtherm.score_threshold"])
        def_thr = args.defect_threshold if args.defect_threshold is not None else float(models.cls_meta["pvtherm.defect_threshold"])
        for var in args.variants.split(","):
            recs = collect(models, frames, var)
            res = {"score_threshold": det_thr, "defect_threshold": def_thr, "metrics": metrics(recs, det_thr, def_thr)}
            if args.tune and prec == args.precisions.split(",")[0] and var == "raw":
                res["tuned"] = tune(recs)
                print("tuned (on this split):", json.dumps(res["tuned"]), flush=True)
            results[f"{prec}/{var}"] = res
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
