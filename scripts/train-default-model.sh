#!/usr/bin/env bash
# Rebuilds the shipped bundle models/default from scratch, deterministically:
# 300k simulated transactions over 45 days (seed 2026), trained on 2026-01-08 … 2026-02-15 with a
# 7-day label delay (the first week only warms the windows), on the built-in feature spec; one
# member (the searched best), so that the shipped bundle scores as fast as it can.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product vigil >&2
vigil=.build/release/vigil
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$vigil simulate --transactions 300000 --days 45 --seed 2026 --start 2026-01-01 --out "$work/history.jsonl"
$vigil features --print-default > "$work/features.yaml"
rm -rf models/default
$vigil train --data "$work/history.jsonl" --from 2026-01-08 --to 2026-02-15 --label-delay 7d \
  --features "$work/features.yaml" --members 1 --name default --version 2026.12.02 --out models/default
$vigil model check models/default
