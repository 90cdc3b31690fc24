#!/usr/bin/env bash
# Replay throughput of the whole pipeline (features, rules, model, decision; in-memory store) on
# a simulated stream, against the naive path in the same run: one transaction per batch through
# the XGBoost C API. Usage: scripts/replay-bench.sh [transactions, default 1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
scripts/install-deps.sh
swift build -c release --product vigil >&2
vigil=.build/release/vigil
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$vigil simulate --transactions "$N" --days 60 --seed 5 --start 2026-01-01 --out "$work/stream.jsonl"
run() {  # name, extra args
  local start end
  start=$(date +%s.%N)
  $vigil backtest --data "$work/stream.jsonl" --label-delay 7d --rules rules/default.yaml --report "$work/$1" "${@:2}" >/dev/null 2>"$work/$1.log"
  end=$(date +%s.%N)
  grep -o 'replayed ([0-9]* tx/s)' "$work/$1.log" | tr -d '()' | awk -v n="$1" '{print n": "$2" tx/s (replay only)"}'
  echo "$1: $(echo "$end - $start" | bc) s wall, including reading, the report and writing" 
}
run batched --batch-size 256
run naive --batch-size 1 --evaluator capi
