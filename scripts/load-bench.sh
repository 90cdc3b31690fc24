#!/usr/bin/env bash
# End-to-end load benchmark: the development broker + vigild (release build) with each store in
# turn (Redis started for the Redis store), driven open-loop by `vigil produce` at fixed rates,
# each for DURATION seconds after a warm-up; then unthrottled; then the broker's
# consume+produce+commit rate without scoring (`vigil bench-kafka`, which also reports its own CPU
# per message: the Kafka client's floor) and the `Scorer` alone (`vigil bench`) in the same run.
# Prints one table for all stores, the Redis store's unthrottled rate as a share of the in-memory
# one, and where vigild's CPU went per transaction in the unthrottled runs, by stage
# (`vigil_cpu_seconds_total`), next to the `Scorer`'s own and the Kafka client's floor.
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
    if [ "$r" = 0 ]; then
      # Idle first: with no message flowing, the consumer's empty fetches still cost both
      # processes CPU (the mock cluster holds one for fetch.wait.max.ms, 5 ms): a cost per
      # second, not per transaction, reported apart.
      cpu_snapshot > "$results/cpu-$store.idle"; sleep 4
      cpu_snapshot > "$results/cpu-$store.before"
    fi
    cpu_of=(); [ "$r" = 0 ] && cpu_of=(--cpu-of "vigild=$vigild_pid" --cpu-of "broker=$broker_pid")
    $bin/vigil produce --brokers "$brokers" --simulate "$n" --seed "$((1000 + r))" --rate "$r" "${cpu_of[@]}" \
      --warmup "$(( r > 0 ? r : 1000 ))" --await-verdicts verdicts --timeout 120 --summary-json "$results/$store-$r.json" >&2 || true
    if [ "$r" = 0 ]; then sleep 1.5; cpu_snapshot > "$results/cpu-$store.after"; fi  # vigild flushes its CPU counters each second
    if [ "$r" = 0 ] && [ "$store" = "${STORES%% *}" ]; then
      echo "== broker: consume+produce+commit with no scoring" >&2
      $bin/vigil bench-kafka --brokers "$brokers" | tee "$results/ceiling.txt" >&2
    fi
    stack_stop
    trap - EXIT
  done
done
echo "== the Scorer alone (in-process, in-memory store, one core)" >&2
# The daemons above score a few tens of thousands of transactions from an empty store: the
# Scorer is measured on as young a store (one day of the stream), so the two do the same work.
$bin/vigil bench --seconds 1 --warm-up-days 1 | tee "$results/scorer.txt" >&2

python3 - "$results" $STORES <<'PY'
import json, sys, re, os
results, stores = sys.argv[1], sys.argv[2:]
print("| store | target tx/s | sustained tx/s | verdicts | missing | p50 ms | p99 ms | p99.9 ms | p99 to verdict produced, ms |")
print("|---|---|---|---|---|---|---|---|---|")
unthrottled = {}
for store in stores:
    files = sorted((f for f in os.listdir(results) if f.startswith(store + "-")), key=lambda f: (int(f.split("-")[-1][:-5]) or 10**9))
    for f in files:
        try: s = json.load(open(os.path.join(results, f)))
        except Exception: continue
        target = "unthrottled" if s["target_rate"] == 0 else f"{int(s['target_rate']):,}"
        if s["target_rate"] == 0: unthrottled[store] = s["verdict_rate"]
        print(f"| {store} | {target} | {s['verdict_rate']:,.0f} | {s['verdicts']} | {s['missing']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} | {s.get('produced_p99_ms', 0):.0f} |")
try:
    ceiling = open(os.path.join(results, "ceiling.txt")).read()
    cp = int(re.search(r"consume\+produce\+commit: \d+ in [\d.]+ s = (\d+)", ceiling).group(1))
    print(f"\nbroker consume+produce+commit without scoring (same broker, same run): {cp:,} msg/s")
except Exception:
    pass
# The Kafka client's own floor: the pass-through process's CPU per message (consume, produce with
# the daemon's two headers, delivery reports, commits; no decoding, scoring or encoding).
kafka_us = None
try:
    m = re.search(r"CPU of this process: ([\d.]+) µs per message \(librdkafka's threads ([\d.]+)\)", ceiling)
    kafka_us = float(m.group(1))
    print(f"Kafka client alone (that pass-through's own CPU): {kafka_us:.2f} µs per message (librdkafka's threads {float(m.group(2)):.2f})")
except Exception:
    pass
if "memory" in unthrottled and "redis" in unthrottled:
    print(f"Redis store unthrottled: {unthrottled['redis'] / unthrottled['memory']:.0%} of the in-memory store's ({unthrottled['redis']:,.0f} vs {unthrottled['memory']:,.0f} tx/s)")

# CPU per transaction in the unthrottled runs, from two snapshots around each.
scorer_us = None
try:
    tps = int(re.search(r"scorer native batch 256: (\d+) tx/s", open(os.path.join(results, "scorer.txt")).read()).group(1))
    scorer_us = 1e6 / tps
except Exception:
    pass
cpu = {}
for store in stores:
    try:
        a, b = (json.load(open(os.path.join(results, f"cpu-{store}.{w}"))) for w in ("before", "after"))
    except Exception:
        continue
    n = b["transactions"] - a["transactions"]
    if n <= 0: continue
    us = lambda x, y: (x - y) * 1e6 / n
    # The processes' own CPU from the run's first message to its last verdict (`vigil produce
    # --cpu-of`, schedstat): the window of the stage counters, which vigild flushes each second,
    # also holds idle seconds before and after the run.
    summary = json.load(open(os.path.join(results, f"{store}-0.json")))
    run, sent = summary.get("cpu", {}), summary["sent"]
    i = json.load(open(os.path.join(results, f"cpu-{store}.idle")))
    idle = {k: (a[k] - i[k]) / (a["time"] - i["time"]) * 1e3 for k in ("vigild", "broker")}
    order = ["consume", "decode", "features", "labels", "decide", "encode", "publish", "settle", "other"]
    row = {s: us(b["stages"].get(s, 0), a["stages"].get(s, 0)) for s in sorted(b["stages"], key=lambda x: order.index(x) if x in order else 99)}
    row["pipeline threads"] = sum(row.values())
    per = lambda x: x * 1e6 / sent
    row["librdkafka threads"] = per(run["vigild"]["librdkafka_seconds"])
    row["rest of the process"] = per(run["vigild"]["seconds"]) - row["pipeline threads"] - row["librdkafka threads"]
    row["vigild total"] = per(run["vigild"]["seconds"])
    row["development broker"] = per(run["broker"]["seconds"])
    row["idle: vigild, CPU ms per second"] = idle["vigild"]
    row["idle: development broker, CPU ms per second"] = idle["broker"]
    cpu[store] = row
if cpu:
    names = list(next(iter(cpu.values())).keys())
    print("\nCPU µs per transaction, unthrottled runs (vigil_cpu_seconds_total and /proc):")
    print("| stage | " + " | ".join(cpu) + " |")
    print("|---|" + "---|" * len(cpu))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{cpu[s].get(name, 0):.1f}" for s in cpu) + " |")
    if scorer_us:
        print(f"| Scorer alone, batch 256 (vigil bench) | " + " | ".join(f"{scorer_us:.1f}" for _ in cpu) + " |")
        for s in cpu:
            print(f"{s}: vigild {cpu[s]['vigild total'] / scorer_us:.2f}× the Scorer's CPU per transaction; without librdkafka's threads {(cpu[s]['vigild total'] - cpu[s]['librdkafka threads']) / scorer_us:.2f}×")
            if kafka_us:
                print(f"{s}: the Scorer plus the Kafka client alone would be {(scorer_us + kafka_us) / scorer_us:.2f}×; vigild's CPU beyond both: {cpu[s]['vigild total'] - scorer_us - kafka_us:.1f} µs per transaction")
PY
rm -rf "$results"
