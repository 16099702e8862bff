#!/usr/bin/env bash
# Whole-pipeline benchmark: pvtherm against the Python reference
# (benches/reference/pipeline.py: numpy + Pillow + onnxruntime + paho-mqtt),
# both over the same 100 R-JPEG frames, publishing to the same local mosquitto
# with QoS 1; then model inference alone in onnxruntime (f32/int8, 1 and 2
# threads) beside tract's criterion numbers. Results and how to read them:
# BENCHMARKS.md.
#
#   benches/pipeline.sh                 # pipeline table + onnxruntime models
#   benches/pipeline.sh --criterion     # also `cargo bench --bench model` (tract; a long build)
#   RUNS=5 STARTUP_RUNS=3 FRAMES=100 THREADS=1 PRECISIONS="int8 f32" PVTHERM_FPS=0 benches/pipeline.sh   # the defaults
#   PVTHERM=path/to/pvtherm benches/pipeline.sh
#
# Needs: a built pvtherm (target/release/pvtherm, else target/debug/pvtherm with
# a warning: numbers from a debug build are not the product's), mosquitto, and a
# Python with numpy, pillow, onnxruntime and paho-mqtt (PYTHON, default
# .venv/bin/python in the repository if it exists, else python3), and the
# pv-thermography data set (DATASET, default ../shared/datasets/pv-thermography
# beside the repository; without it the 5 fixture frames are cycled). It never
# builds pvtherm: run `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DATASET=${DATASET:-../shared/datasets/pv-thermography}
if [ -z "${PVTHERM:-}" ]; then
    if [ -x target/release/pvtherm ]; then
        PVTHERM=target/release/pvtherm
    elif [ -x target/debug/pvtherm ]; then
        PVTHERM=target/debug/pvtherm
        echo "warning: no target/release/pvtherm; using the debug build (pvtherm's own code at opt-level 1)" >&2
    else
        echo "no pvtherm binary: run 'cargo build --release' first (or set PVTHERM=...)" >&2
        exit 2
    fi
fi
command -v mosquitto >/dev/null || { echo "mosquitto is not installed (apt-get install mosquitto)" >&2; exit 2; }
"$PYTHON" -c 'import numpy, PIL, onnxruntime, paho.mqtt' 2>/dev/null || {
    echo "$PYTHON lacks numpy/pillow/onnxruntime/paho-mqtt (pip install numpy pillow onnxruntime paho-mqtt==2.2.0)" >&2
    exit 2
}
CRITERION=0
[ "${1:-}" = "--criterion" ] && CRITERION=1

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|CPU max MHz|L2|L3|Flags)' | sed 's/^Flags:.*\(avx512_vnni\|avx_vnni\).*/Flags: ... \1 .../; s/^Flags:.*avx2.*/Flags: ... avx2 (no VNNI) .../'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pvtherm: $PVTHERM ($("$PVTHERM" --version 2>/dev/null || echo '?'))"
echo "python: $("$PYTHON" -c 'import sys, numpy, PIL, onnxruntime; print(sys.version.split()[0], "numpy", numpy.__version__, "pillow", PIL.__version__, "onnxruntime", onnxruntime.__version__)')"

for precision in ${PRECISIONS:-int8 f32}; do
    echo
    echo "== whole pipeline, ${FRAMES:-100} frames, $precision models on both sides: pvtherm vs Python reference"
    "$PYTHON" benches/reference/driver.py --pvtherm "$PVTHERM" --python "$PYTHON" --dataset "$DATASET" \
        --frames "${FRAMES:-100}" --runs "${RUNS:-5}" --startup-runs "${STARTUP_RUNS:-3}" \
        --threads "${THREADS:-1}" --precision "$precision" --pvtherm-fps "${PVTHERM_FPS:-0}" \
        --out "${TMPDIR:-/tmp}/pvtherm-bench/results-$precision.json"
done

echo
echo "== model inference alone: onnxruntime (session.run only; stack = detector + classifier per module, with the Python pre/post-processing)"
"$PYTHON" benches/reference/ort_models.py --iters "${ITERS:-30}" --models "${TMPDIR:-/tmp}/pvtherm-bench/models"

echo
echo "== model inference alone: tract, per stage, in the same pvtherm binary (pvtherm bench)"
"$PVTHERM" bench --both --iterations "${ITERS:-30}" tests/fixtures/pv/images/001R.jpg

if [ "$CRITERION" = 1 ]; then
    echo
    echo "== model inference alone: tract (criterion, benches/model.rs)"
    cargo bench --bench model -- --noplot
fi
