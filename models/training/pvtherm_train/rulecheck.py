"""Score a fusion rule (the classifier's `pvtherm.fusion` value) on every annotated module of the
present frames, as the daemon applies it (`src/analysis/fusion.rs`), and write it into the
committed classifier files.

python -m pvtherm_train.rulecheck --rule RULE.json [--json results/rule.json]
python -m pvtherm_train.rulecheck --rule RULE.json --embed      # into ../pvtherm-classifier-*.onnx

The modules, their crops and temperature features are crossval's module table (annotated quads,
and the committed detector's quads matched to them); the classifier is the committed one, so its
logits are in-sample for the frames it trained on (see MODEL_CARD, "Defect decisions"). Reported
per camera, per sighting and per physical module (crossval's grouping), with Wilson intervals.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from . import crossval as cv
from .data import SUBSETS, add_data_args, load_pv_frames

MODELS = Path(__file__).resolve().parents[2]
BORDER_PX = 1.0  # a module whose box comes this close to the frame border is cut by it (fusion.rs)
SLIVER_SHARE = 0.25  # ... and a sliver when its short side is under this share of the frame's median
BRANCH = {"dataset_1": "radiometric", "dataset_2": "relative"}


def slivers(tab: cv.ModuleTable, width: float = 640, height: float = 512) -> np.ndarray:
    """Per module: whether its annotated quad is a sliver cut by the frame border (the
    detector's quad for it is taken to be one too), as fusion.rs decides it."""
    out = []
    for f in tab.frames:
        lo, hi = f.quads.min(1), f.quads.max(1)
        short = (hi - lo).min(1)
        border = (lo[:, 0] <= BORDER_PX) | (lo[:, 1] <= BORDER_PX) | (hi[:, 0] >= width - BORDER_PX) | \
            (hi[:, 1] >= height - BORDER_PX)
        typical = np.sort(short)[len(short) // 2] if len(short) else 0.0
        out.append(border & (short < SLIVER_SHARE * typical))
    return np.concatenate(out)


def fused_logit(rule: dict, branch: str, defect_logit: np.ndarray, feat: np.ndarray,
                classifier_threshold: float, border: np.ndarray) -> np.ndarray:
    """z per module: the combiner's, raised by `keep_classifier` (not on slivers) and
    the branch's `hot_spot_floor` (the module documentation of src/analysis/fusion.rs)."""
    c = rule[branch]
    z = cv.fusion_x(defect_logit, feat, rule["features"]) @ np.array(c["weights"]) + c["bias"]
    t = c["logit_threshold"]
    if rule.get("keep_classifier"):
        kept = t + defect_logit - np.log(classifier_threshold / (1 - classifier_threshold))
        z = np.maximum(z, np.where(border, -np.inf, kept))
    if c.get("hot_spot_floor") is not None:
        d = feat[:, cv.FEATURE_COLUMNS.index("delta")]
        k = feat[:, cv.FEATURE_COLUMNS.index("contrast")]
        hot = np.where(np.isfinite(d) & np.isfinite(k), np.minimum(d, k), -np.inf)
        z = np.maximum(z, t + hot - c["hot_spot_floor"])
    return z


def score(rule: dict, tab: cv.ModuleTable, logits: dict, classifier_threshold: float) -> dict:
    """Per precision and quads: the rule's z minus each branch's threshold (defective at >= 0),
    reported by crossval.report."""
    out = {}
    border = slivers(tab)
    for prec, (lg, lp) in logits.items():
        for quads, lo, feat, mask in (("annotated", lg, tab.feat_gt, None),
                                      ("detector", lp, tab.feat_pred, tab.has_pred)):
            s = np.full(len(tab.defect), -np.inf)
            for sub in SUBSETS:
                k = tab.subset == sub
                z = fused_logit(rule, BRANCH[sub], np.nan_to_num(lo[k, 12], nan=-50.0), feat[k], classifier_threshold,
                                border[k])
                s[k] = z - rule[BRANCH[sub]]["logit_threshold"]
            out[f"{prec} {quads} quads"] = cv.report(s, 0.0, tab, mask)
    return out


def embed(rule: dict, models: Path) -> None:
    """Writes `rule` as pvtherm.fusion into both committed classifier files (weights untouched)."""
    value = json.dumps(rule, separators=(",", ":"))
    for prec in ("f32", "int8"):
        path = models / cv.CLS_META_FILE.format(prec)
        m = onnx.load(str(path))
        props = {p.key: p.value for p in m.metadata_props}
        props["pvtherm.fusion"] = value
        del m.metadata_props[:]
        for k, v in props.items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(m, str(path))
        print(f"{path.name}: pvtherm.fusion written ({len(value)} B)", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.rulecheck")
    add_data_args(ap)
    ap.add_argument("--rule", required=True, help="fusion rule JSON (the pvtherm.fusion value)")
    ap.add_argument("--models", default=str(MODELS), help="folder of the committed ONNX files")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--embed", action="store_true", help="write the rule into the committed classifier files")
    args = ap.parse_args(argv)
    rule = json.loads(Path(args.rule).read_text())
    models = Path(args.models)
    if args.embed:
        embed(rule, models)
        return
    data, work = Path(args.data), Path(args.work)
    frames = sorted(load_pv_frames(data, work, verbose=False), key=lambda f: (f.subset, f.name))
    tab = cv.ModuleTable(frames, data, work, models / "pvtherm-detector-f32.onnx")
    meta = {p.key: p.value for p in onnx.load(str(models / cv.CLS_META_FILE.format("f32"))).metadata_props}
    logits = {}
    for prec in ("f32", "int8"):
        f = models / cv.CLS_META_FILE.format(prec)
        logits[prec] = (cv.ort_logits(f, tab.crop_gt),
                        np.where(tab.has_pred[:, None], cv.ort_logits(f, tab.crop_pred), np.nan))
    res = score(rule, tab, logits, float(meta["pvtherm.defect_threshold"]))
    lines = [cv.TABLE_HEAD]
    for name, rep in res.items():
        lines.append(cv.fmt_table(name, rep))
    print("\n".join(lines), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rule": rule, "report": res}, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
