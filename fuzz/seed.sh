#!/usr/bin/env bash
# Fill fuzz/corpus/parse_print with every .drv of the fixtures and the shared vectors.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/parse_print
find ../fixtures ../../shared/nix-vectors -name '*.drv' -exec cp {} corpus/parse_print/ \; 2>/dev/null || true
ls corpus/parse_print | wc -l
