"""Markdown tables of a crossval.py results file (the tables in MODEL_CARD.md).

python -m pvtherm_train.cvreport results/crossval-res2.json
"""

from __future__ import annotations

import argparse
import json

SUBSETS = ("dataset_1", "dataset_2")
CAMERA = {"dataset_1": "XT2 (dataset_1)", "dataset_2": "Vue Pro (dataset_2)"}


def ci(v) -> str:
    return f"[{v[0]:.2f}, {v[1]:.2f}]"


def rows(label: str, rep: dict) -> list[str]:
    out = []
    for s in SUBSETS:
        for level in ("sighting", "physical"):
            m = rep[s][level]
            out.append(f"| {label} | {CAMERA[s]} | {level} | {m['positives']} / {m['n']} | "
                       f"{m['tp']} / {m['fp']} / {m['fn']} | {m['precision']:.2f} {ci(m['precision_ci95'])} | "
                       f"{m['recall']:.2f} {ci(m['recall_ci95'])} | {m['ap']:.2f} |")
    return out


HEAD = ["| decision | camera | level | defective / all | tp / fp / fn | precision [95 % CI] | recall [95 % CI] | AP |",
        "|---|---|---|---|---|---|---|---|"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.cvreport")
    ap.add_argument("json")
    ap.add_argument("--precision", default="f32")
    args = ap.parse_args(argv)
    r = json.load(open(args.json))
    lines = list(HEAD)
    for name, e in r["models"].items():
        if args.precision not in e:
            continue
        e = e[args.precision]
        t = e["defect_threshold"]
        lines += rows(f"{name}, classifier only (p >= {t:.3g})", e["gt_quads"])
        if "fusion" in e:
            lines += rows(f"{name}, fused", e["fusion"]["report"])
    print("\n".join(lines))
    print()
    # int8 vs f32 and detector quads, compact
    print("| model | decision | quads | " + " | ".join(f"{CAMERA[s]} P / R / AP" for s in SUBSETS) + " |")
    print("|---|---|---|---|---|")
    for name, e in r["models"].items():
        for prec in ("f32", "int8"):
            if prec not in e:
                continue
            x = e[prec]
            for dec, quads, rep in (("classifier only", "annotated", x["gt_quads"]),
                                    ("classifier only", "detector", x["pred_quads"]),
                                    ("fused", "annotated", x["fusion"]["report"]),
                                    ("fused", "detector", x["fusion"]["pred_quads"])):
                cells = [f"{rep[s]['sighting']['precision']:.2f} / {rep[s]['sighting']['recall']:.2f} / "
                         f"{rep[s]['sighting']['ap']:.2f}" for s in SUBSETS]
                print(f"| {name} {prec} | {dec} | {quads} | " + " | ".join(cells) + " |")
    print()
    for name, e in r["models"].items():
        if "ism" in e:
            for prec, v in e["ism"].items():
                rec = ", ".join(f"{k} {x:.2f}" for k, x in v["recall"].items())
                print(f"ISM {name} {prec}: acc12 {v['acc12']:.3f}; recall: {rec}")


if __name__ == "__main__":
    main()
