#!/usr/bin/env bash
# End-to-end load benchmark: the development broker + vigild (release build) with each store in
# turn (Redis started for the Redis store), driven open-loop by `vigil produce` at fixed rates,
# each for DURATION seconds after a warm-up; then unthrottled; then the broker's
# consume+produce+commit rate without scoring (`vigil bench-kafka`) in the same run. Prints one
# table for all stores and the Redis store's unthrottled rate as a share of the in-memory one.
# Each rate gets a fresh stack, so one rate's broker logs (the development broker's cost grows
# with the message sets it holds, up to ~5 MiB per partition) never bleed into the next; keep
# MAX_N under what 2 partitions hold (~25k transactions), or the broker deletes unread ones.
#   RATES="1000 2000 5000" DURATION=5 STORES="memory redis" scripts/load-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
RATES=${RATES:-"1000 2000 5000"}
DURATION=${DURATION:-5}
STORES=${STORES:-${STORE:-"memory redis"}}
MAX_N=${MAX_N:-20000}
source scripts/lib/stack.sh
results=$(mktemp -d /tmp/vigil-load.XXXXXX)

for store in $STORES; do
  for r in $RATES 0; do
    stack_start "$store"
    if [ "$r" = 0 ]; then n=$MAX_N; else n=$((r * DURATION)); fi
    echo "== $store, rate ${r/#0/unthrottled}: $n transactions ($(nproc) cores)" >&2
    $bin/vigil produce --brokers "$brokers" --simulate "$n" --seed "$((1000 + r))" --rate "$r" \
      --warmup "$(( r > 0 ? r : 1000 ))" --await-verdicts verdicts --timeout 120 --summary-json "$results/$store-$r.json" >&2 || true
    if [ "$r" = 0 ] && [ "$store" = "${STORES%% *}" ]; then
      echo "== broker: consume+produce+commit with no scoring" >&2
      $bin/vigil bench-kafka --brokers "$brokers" | tee "$results/ceiling.txt" >&2
    fi
    stack_stop
    trap - EXIT
  done
done

python3 - "$results" $STORES <<'PY'
import json, sys, re, os
results, stores = sys.argv[1], sys.argv[2:]
print("| store | target tx/s | sustained tx/s | verdicts | missing | p50 ms | p99 ms | p99.9 ms |")
print("|---|---|---|---|---|---|---|---|")
unthrottled = {}
for store in stores:
    files = sorted((f for f in os.listdir(results) if f.startswith(store + "-")), key=lambda f: (int(f.split("-")[-1][:-5]) or 10**9))
    for f in files:
        try: s = json.load(open(os.path.join(results, f)))
        except Exception: continue
        target = "unthrottled" if s["target_rate"] == 0 else f"{int(s['target_rate']):,}"
        if s["target_rate"] == 0: unthrottled[store] = s["verdict_rate"]
        print(f"| {store} | {target} | {s['verdict_rate']:,.0f} | {s['verdicts']} | {s['missing']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} |")
try:
    ceiling = open(os.path.join(results, "ceiling.txt")).read()
    cp = int(re.search(r"consume\+produce\+commit: \d+ in [\d.]+ s = (\d+)", ceiling).group(1))
    print(f"\nbroker consume+produce+commit without scoring (same broker, same run): {cp:,} msg/s")
except Exception:
    pass
if "memory" in unthrottled and "redis" in unthrottled:
    print(f"Redis store unthrottled: {unthrottled['redis'] / unthrottled['memory']:.0%} of the in-memory store's ({unthrottled['redis']:,.0f} vs {unthrottled['memory']:,.0f} tx/s)")
PY
rm -rf "$results"
