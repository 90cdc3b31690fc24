#!/usr/bin/env bash
# End-to-end load benchmark: Redis + the development broker + vigild (release build), driven
# open-loop by `vigil produce` at fixed rates, each for DURATION seconds after a warm-up; then
# unthrottled; then the broker's consume+produce+commit rate without scoring (`vigil
# bench-kafka`) in the same run.
#   RATES="500 1000 2000" DURATION=15 STORE=redis scripts/load-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
RATES=${RATES:-"500 1000 2000"}
DURATION=${DURATION:-20}
STORE=${STORE:-redis}
MAX_N=${MAX_N:-40000}
source scripts/lib/stack.sh
stack_start "$STORE"

echo "store: $STORE; each rate for ${DURATION}s; machine: $(nproc) cores" >&2
results=()
for r in $RATES 0; do
  if [ "$r" = 0 ]; then n=$MAX_N; else n=$((r * DURATION)); fi
  echo "== rate ${r/#0/unthrottled}: $n transactions" >&2
  $bin/vigil produce --brokers "$brokers" --simulate "$n" --seed "$((1000 + r))" --rate "$r" \
    --warmup "$(( r > 0 ? r : 1000 ))" --await-verdicts verdicts --timeout 120 --summary-json "$work/rate-$r.json" >&2 || true
  results+=("$work/rate-$r.json")
done
echo "== broker: consume+produce+commit with no scoring" >&2
$bin/vigil bench-kafka --brokers "$brokers" | tee "$work/ceiling.txt" >&2

python3 - "$work/ceiling.txt" "${results[@]}" <<'PY'
import json, sys, re
ceiling = open(sys.argv[1]).read()
cp = int(re.search(r"consume\+produce\+commit: \d+ in [\d.]+ s = (\d+)", ceiling).group(1))
print("| target tx/s | sustained tx/s | verdicts | missing | p50 ms | p99 ms | p99.9 ms |")
print("|---|---|---|---|---|---|---|")
for path in sys.argv[2:]:
    try: s = json.load(open(path))
    except Exception: continue
    target = "unthrottled" if s["target_rate"] == 0 else int(s["target_rate"])
    print(f"| {target} | {s['verdict_rate']:,.0f} | {s['verdicts']} | {s['missing']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} |")
print(f"\nbroker consume+produce+commit without scoring (same broker, same run): {cp:,} msg/s")
PY
