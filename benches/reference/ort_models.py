#!/usr/bin/env python3
"""Model inference alone in onnxruntime, beside `cargo bench --bench model` (tract).

Benchmark-only code. Same model files and same input as benches/model.rs:
tests/fixtures/pv/images/001R.jpg, normalised by `pvtherm_train.preprocess` to the
640x512 detector input; the classifier runs on the crop of the first module the
detector finds (same precision); "stack" is detector + one classifier run per
module, as one frame costs in the pipeline, with the Python pre/post-processing
(normalise, decode/NMS, crops), as tract's `stack_frame` bench does in Rust;
"frame_runs_only" is the same frame's `session.run` calls alone (detector + one
classifier run per module, crops prepared beforehand): inference alone.

For every precision (f32, int8) and intra_op_num_threads (1, 2) it prints the
median and min-max of wall time and of process CPU time per call (CPU > wall
means several threads, including onnxruntime's spinning workers).

    .venv/bin/python benches/reference/ort_models.py [--iters 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as ref  # noqa: E402  (R-JPEG decoder and the model wrapper of the reference)
from pvtherm_train import preprocess  # noqa: E402
from pvtherm_train.decode import decode  # noqa: E402

REPO = ref.REPO


def timed(fn, iters: int) -> dict:
    fn()  # warm-up (allocations, kernel selection)
    fn()
    wall, cpu = [], []
    for _ in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    return {"wall_ms": statistics.median(wall), "wall_min": min(wall), "wall_max": max(wall),
            "cpu_ms": statistics.median(cpu), "cpu_min": min(cpu), "cpu_max": max(cpu)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--models", type=Path, default=REPO / "models", help="folder of the ONNX files")
    args = ap.parse_args(argv)

    raw, _ = ref.load_rjpeg(REPO / "tests/fixtures/pv/images/001R.jpg")
    x = preprocess.model_input(raw, 512, 640)[None, None]
    rows = []
    for precision in ("f32", "int8"):
        for threads in (1, 2):
            m = ref.Models(args.models, precision, threads)
            maps = m.det.run(None, {"image": x})[0][0]
            _, quads, _ = decode(maps, m.score_threshold)
            crop = preprocess.crop_module(raw, quads[0])[None, None]
            crops = [preprocess.crop_module(raw, q)[None, None] for q in quads]

            def runs_only():  # inference alone for one frame: detector + one classifier run per module
                m.det.run(None, {"image": x})
                for c in crops:
                    m.cls.run(None, {"crop": c})

            r = {"precision": precision, "threads": threads, "modules": len(quads)}
            r["detector"] = timed(lambda: m.det.run(None, {"image": x}), args.iters)
            r["classifier"] = timed(lambda: m.cls.run(None, {"crop": crop}), args.iters * 20)
            r["frame_runs_only"] = timed(runs_only, max(5, args.iters // 3))
            r["stack"] = timed(lambda: m.infer(raw), max(5, args.iters // 3))
            rows.append(r)
            for k in ("detector", "classifier", "frame_runs_only", "stack"):
                t = r[k]
                print(f"onnxruntime {precision:4} threads={threads} {k:15} wall {t['wall_ms']:8.3f} ms "
                      f"[{t['wall_min']:.3f}-{t['wall_max']:.3f}]  cpu {t['cpu_ms']:8.3f} ms "
                      f"[{t['cpu_min']:.3f}-{t['cpu_max']:.3f}]  ({len(quads)} modules)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"onnxruntime": ort.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
