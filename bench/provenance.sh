#!/usr/bin/env bash
# Provenance benchmarks (issue targets: the post-build hook on a small output
# under 50 ms wall including the Nix queries; `provenance verify` of a 1 GiB
# output within 1.3x of `nix-store --dump | sha256sum`).
#
#   bench/provenance.sh [RUNS]     (default 9; medians of wall time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-9}
export NIX_CONFIG="experimental-features = nix-command flakes ca-derivations impure-derivations
sandbox = false"
cargo build --release --quiet
drvmeta=$PWD/target/release/drvmeta
scratch=$(mktemp -d -p /var/tmp drvmeta-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wall() { /usr/bin/time -o "$scratch/t" -f %e "$@" > /dev/null 2>&1; cat "$scratch/t"; }

# A small output with inputs: the kernel example's root.
small=$(nix-build fixtures/kernel/kernel.nix --arg withMeta false --no-out-link 2>/dev/null)
small_drv=$(nix-store --query --deriver "$small")
hook_times=$(for i in $(seq "$runs"); do
  DRV_PATH=$small_drv OUT_PATHS=$small wall "$drvmeta" hook --records "$scratch/records-$i"
done | median)

# A 1 GiB output.
cat > "$scratch/big.nix" <<'NIX'
derivation {
  name = "drvmeta-bench-1gib";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out && /bin/dd if=/dev/urandom of=$out/blob bs=1M count=1024 status=none && /bin/echo small > $out/file" ];
}
NIX
big=$(nix-build "$scratch/big.nix" --no-out-link 2>/dev/null)
"$drvmeta" record --records "$scratch/big-records" "$(nix-store --query --deriver "$big")" > /dev/null
cat "$big/blob" > /dev/null  # page cache warm for both
dump_times=$(for i in $(seq "$runs"); do wall bash -c "nix-store --dump $big | sha256sum"; done | median)
verify_times=$(for i in $(seq "$runs"); do wall "$drvmeta" provenance verify --records "$scratch/big-records" "$big"; done | median)

{
  echo "| measurement | median wall (s) | target |"
  echo "|---|---:|---|"
  echo "| drvmeta hook, small output ($small) | $hook_times | < 0.050 |"
  echo "| nix-store --dump \| sha256sum, 1 GiB output | $dump_times | |"
  echo "| drvmeta provenance verify, 1 GiB output | $verify_times | ≤ 1.3 × dump ($(awk -v d="$dump_times" -v v="$verify_times" 'BEGIN {printf "%.2f ×", v/d}')) |"
} | tee bench/out/provenance.md
