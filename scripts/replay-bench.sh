#!/usr/bin/env bash
# Replay throughput of the whole pipeline (features, rules, model, decision; in-memory store) on
# a simulated stream, against the naive path in the same run: one transaction per batch through
# the XGBoost C API, on the stream's first NAIVE transactions (default 100000; at batch size 1
# the whole million takes the better part of an hour).
# Usage: scripts/replay-bench.sh [transactions, default 1000000] [naive transactions, default 100000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NAIVE=${2:-100000}
scripts/install-deps.sh
swift build -c release --product vigil >&2
vigil=.build/release/vigil
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$vigil simulate --transactions "$N" --days 60 --seed 5 --start 2026-01-01 --out "$work/stream.jsonl"
head -n "$NAIVE" "$work/stream.jsonl" > "$work/prefix.jsonl"
run() {  # name, data, extra args
  local start end
  start=$(date +%s.%N)
  $vigil backtest --data "$work/$2" --label-delay 7d --rules rules/default.yaml --report "$work/$1" "${@:3}" >/dev/null 2>"$work/$1.log"
  end=$(date +%s.%N)
  grep -o 'replayed ([0-9]* tx/s)' "$work/$1.log" | tr -d '()' | awk -v n="$1" '{print n": "$2" tx/s (replay only)"}'
  awk -v n="$1" -v a="$start" -v b="$end" 'BEGIN { printf "%s: %.1f s wall, including reading, the report and writing\n", n, b - a }'
}
run batched stream.jsonl --batch-size 256
run batched-prefix prefix.jsonl --batch-size 256
run naive-prefix prefix.jsonl --batch-size 1 --evaluator capi
