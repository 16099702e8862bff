#!/usr/bin/env bash
# The tract changes pvtherm carries, one step at a time, side by side in one
# run (BENCHMARKS.md, section 2): `pvtherm bench --both` on the same frame,
# interleaved over several rounds, for
#
#   0 tract as published          UPSTREAM binary, tract's own convolution lowering
#   1 + eager im2col              UPSTREAM binary, pvtherm's lowering (src/model/onnx.rs)
#   2 + packing patch, vmovq fix  PIECES binary (optional): vendor/tract-linalg with the first
#                                 two patches (a build of the commit before the third)
#   3 + K=4 group packing         PATCHED binary (vendor/tract-linalg, all three patches)
#
# Step 1 differs from step 0 only in tract knobs, which the environment can set
# back to tract's defaults; steps 0/1 need a binary built against the published
# tract-linalg:
#
#   cargo build --profile bench --bin pvtherm                      # PATCHED: target/release/pvtherm
#   d=$(mktemp -d) && git archive HEAD | tar -x -C "$d" && vendor/regenerate.sh --pristine "$d/vendor/tract-linalg" \
#     && (cd "$d" && CARGO_TARGET_DIR=$PWD/target/bench-upstream cargo build --profile bench --bin pvtherm)
#   d=$(mktemp -d) && git archive d4145d2~1 | tar -x -C "$d" \
#     && (cd "$d" && CARGO_TARGET_DIR=$PWD/target/bench-pieces cargo build --profile bench --bin pvtherm)   # PIECES
#   UPSTREAM=target/bench-upstream/release/pvtherm PIECES=target/bench-pieces/release/pvtherm \
#     PATCHED=target/release/pvtherm benches/tract-steps.sh
#
# ISA="TRACT_CPU_ISA=-avx512f,-avx512vnni,-avxvnni" takes tract's AVX2 kernels
# on a newer x86 CPU (an AVX2-only CPU's code path). Prints, per step and
# precision, the median over rounds of each round's median detector and
# whole-frame time (ms) and the fastest single iteration.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${UPSTREAM:?UPSTREAM= a pvtherm built against the published tract-linalg}"
: "${PATCHED:?PATCHED= a pvtherm built with vendor/tract-linalg}"
IMAGE=${IMAGE:-tests/fixtures/pv/images/001R.jpg}
ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-20}
ISA=${ISA:-}
# tract 0.23.9's own defaults for the three knobs pvtherm sets in a scope.
TRACT_DEFAULTS="TRACT_DISABLE_DIRECT_SPATIAL=false TRACT_LAZY_IM2COL_MIN_KERNEL=6 TRACT_LAZY_IM2COL_MAX_EAGER_BYTES=4194304"
steps=(
  "0-tract-as-published|$UPSTREAM|$TRACT_DEFAULTS"
  "1-eager-im2col|$UPSTREAM|"
)
[ -n "${PIECES:-}" ] && steps+=("2-packing+vmovq|$PIECES|")
steps+=("3-k4-group-packing|$PATCHED|")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for step in "${steps[@]}"; do
    IFS='|' read -r name bin knobs <<< "$step"
    # shellcheck disable=SC2086 # the knob lists are words on purpose
    env $ISA $knobs "$bin" bench --both --iterations "$ITERS" "$IMAGE" 2>/dev/null \
      | awk -v n="$name" '/detector \(n/ {print n, $1, "detector", $(NF-3), $(NF-2)}
                          /whole frame/ {print n, $1, "frame", $(NF-3), $(NF-2)}' >> "$out"
  done
done
python3 - "$out" "$ROUNDS" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    step, precision, stage, median, best = line.split()
    runs[(step, precision, stage)].append((float(median), float(best)))
print(f"{'step':22} {'precision':9} {'stage':9} {'median ms':>9} {'range of round medians':>23} {'best ms':>8}   ({sys.argv[2]} rounds)")
for (step, precision, stage), v in sorted(runs.items()):
    medians = [m for m, _ in v]
    print(f"{step:22} {precision:9} {stage:9} {statistics.median(medians):9.2f} "
          f"{min(medians):11.2f}-{max(medians):<11.2f} {min(b for _, b in v):8.2f}")
EOF
