#!/usr/bin/env bash
# What a challenger in shadow costs the champion: vigild (in-memory store, release build) with no
# challenger and with one, in the same run, each on a fresh stack: produce→verdict latency at a
# fixed rate, then unthrottled, with vigild's CPU per transaction from /proc (the monitoring
# thread and the shadow producer's librdkafka threads included). The challenger has the
# champion's schema: the built-in spec, trained on other simulated history with default XGBoost.
#   RATE=5000 DURATION=4 scripts/shadow-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
RATE=${RATE:-5000}
DURATION=${DURATION:-4}
MAX_N=${MAX_N:-20000}
source scripts/lib/stack.sh
results=$(mktemp -d /tmp/vigil-shadow.XXXXXX)
swift build -c release --product vigil >&2
.build/release/vigil simulate --transactions 100000 --days 20 --seed 77 --out "$results/history.jsonl" 2>/dev/null
.build/release/vigil features --print-default > "$results/features.yaml"
.build/release/vigil train --data "$results/history.jsonl" --from 2026-01-08 --features "$results/features.yaml" \
  --baseline xgboost --name challenger --out "$results/challenger" >"$results/train.log" 2>&1
for mode in none shadow; do
  extra=()
  [ "$mode" = shadow ] && extra=(--shadow-model "$results/challenger")
  for r in $RATE 0; do
    stack_start memory "${extra[@]}"
    if [ "$r" = 0 ]; then n=$MAX_N; else n=$((r * DURATION)); fi
    echo "== $mode, rate ${r/#0/unthrottled}: $n transactions" >&2
    [ "$r" = 0 ] && cpu_snapshot > "$results/cpu-$mode.before"
    $bin/vigil produce --brokers "$brokers" --simulate "$n" --seed "$((2000 + r))" --rate "$r" \
      --warmup "$(( r > 0 ? r : 1000 ))" --await-verdicts verdicts --timeout 120 --summary-json "$results/$mode-$r.json" >&2 || true
    if [ "$r" = 0 ]; then sleep 1.5; cpu_snapshot > "$results/cpu-$mode.after"; fi
    [ "$mode" = shadow ] && echo "   shadowed: $(metric 'vigil_shadow_transactions_total{challenger="challenger@1"}'), skipped batches: $(metric vigil_monitor_skipped_batches_total)" >&2
    stack_stop
    trap - EXIT
  done
done
python3 - "$results" <<'PY'
import json, os, sys
results = sys.argv[1]
print("| challengers | target tx/s | sustained tx/s | missing | p50 ms | p99 ms | p99.9 ms | vigild CPU µs/tx (unthrottled) | of which librdkafka threads |")
print("|---|---|---|---|---|---|---|---|---|")
cpu, parts = {}, {}
for mode in ("none", "shadow"):
    a, b = (json.load(open(os.path.join(results, f"cpu-{mode}.{w}"))) for w in ("before", "after"))
    tx = max(b["transactions"] - a["transactions"], 1)
    cpu[mode] = (b["vigild"] - a["vigild"]) / tx * 1e6
    parts[mode] = (b["librdkafka"] - a["librdkafka"]) / tx * 1e6
    for f in sorted((f for f in os.listdir(results) if f.startswith(mode + "-")), key=lambda f: int(f.split("-")[-1][:-5]) or 10**9):
        s = json.load(open(os.path.join(results, f)))
        target = "unthrottled" if s["target_rate"] == 0 else f"{int(s['target_rate']):,}"
        extra = f"{cpu[mode]:.1f} | {parts[mode]:.1f}" if s["target_rate"] == 0 else " | "
        print(f"| {'none' if mode == 'none' else 'one'} | {target} | {s['verdict_rate']:,.0f} | {s['missing']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} | {extra} |")
print(f"\none challenger: vigild CPU per transaction ×{cpu['shadow'] / cpu['none']:.2f} of none (same run)")
PY
