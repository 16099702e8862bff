#!/usr/bin/env bash
# Regenerates vendor/tract-linalg: the published tract-linalg crate (the exact
# version and checksum Cargo.lock pinned before the patch) with pvtherm's
# patches applied. Cargo.toml points at it with [patch.crates-io]. Run it after
# changing a patch or moving to a new tract release (update VERSION/SHA256 below
# and check that each patch still applies), then commit the result.
#
#   vendor/regenerate.sh            # uses cargo's download cache or crates.io
#   vendor/regenerate.sh --pristine DIR   # the published crate alone, into DIR
#                                         # (the reference of benches/tract-steps.sh)
#
# The patches are the upstream-ready files docs/upstream/tract-linalg-*.patch,
# listed in PATCHES below (each says what it fixes and what it measured).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=0.23.9
SHA256=ca57ed3a2f6293e7866c6ceed7c6ca3413b4e083a892a00a79f5e9b607154982
DEST=$ROOT/vendor/tract-linalg
# In the order they apply (each later one builds on the earlier ones).
PATCHES=("$ROOT"/docs/upstream/tract-linalg-avx2-int8-vmovq.patch
         "$ROOT"/docs/upstream/tract-linalg-pack-write-slice-pieces.patch
         "$ROOT"/docs/upstream/tract-linalg-pack-k4-interleave-groups.patch)
if [[ "${1:-}" == --pristine ]]; then
  DEST=${2:?"--pristine needs a destination folder"}
  PATCHES=()
fi
CRATE=tract-linalg-$VERSION.crate

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$CRATE" 2>/dev/null | head -1 || true)
if [[ -n "$cached" ]]; then
  cp "$cached" "$work/$CRATE"
else
  curl -fsSL --retry 3 -o "$work/$CRATE" "https://static.crates.io/crates/tract-linalg/$CRATE"
fi
echo "$SHA256  $work/$CRATE" | sha256sum -c --quiet - \
  || { echo "vendor/regenerate.sh: $CRATE does not match the checksum crates.io published" >&2; exit 1; }

tar -xzf "$work/$CRATE" -C "$work"
src=$work/tract-linalg-$VERSION
# Files the published crate carries that no build reads: two core dumps, a
# spreadsheet and benchmark notes (4 MB of the 11).
rm -f "$src"/core.* "$src"/*.xlsx "$src"/*_BENCH*.md "$src"/*BENCHMARKS.md "$src"/.cargo_vcs_info.json
for p in "${PATCHES[@]}"; do
  patch -s -p1 -d "$src" --no-backup-if-mismatch < "$p" \
    || { echo "vendor/regenerate.sh: $(basename "$p") does not apply to tract-linalg $VERSION" >&2; exit 1; }
  echo "applied $(basename "$p")"
done
rm -rf "$DEST"
mv "$src" "$DEST"
echo "$DEST: tract-linalg $VERSION + ${#PATCHES[@]} patch(es)"
