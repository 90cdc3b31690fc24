#!/usr/bin/env bash
# Synchronous API load benchmark: vigild (release, in-memory store unless STORE=redis) with its
# HTTP and gRPC APIs on, driven open-loop by `vigil load-api` with single-transaction requests
# at fixed rates, micro-batched three ways (the default, waiting up to 1 ms, one per batch); then the
# Kafka path at the same rates (`vigil produce`) and the in-process Scorer (`vigil bench`), all
# in the same run.
#   RATES="1000 5000" DURATION=5 STORE=memory scripts/api-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
RATES=${RATES:-"1000 5000 10000"}
# gRPC is driven up to this rate only: past its saturation (~5k/s here) an open-loop run only
# measures a growing backlog, for minutes.
GRPC_MAX_RATE=${GRPC_MAX_RATE:-5000}
DURATION=${DURATION:-5}
STORE=${STORE:-memory}
source scripts/lib/stack.sh
results=$(mktemp -d /tmp/vigil-api.XXXXXX)
export VIGIL_API_TOKEN=${VIGIL_API_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}

# batched: the defaults (no waiting: a batch is what arrived while the last was scored);
# waiting: batches wait up to 1 ms for company; unbatched: one transaction per batch.
for mode in ${MODES:-batched waiting unbatched}; do
  http_port=$(free_port); grpc_port=$(free_port)
  config="$results/api-$mode.yaml"
  printf 'api:\n  http_port: %s\n  grpc_port: %s\n' "$http_port" "$grpc_port" > "$config"
  [ "$mode" = unbatched ] && printf '  max_batch: 1\n' >> "$config"
  [ "$mode" = waiting ] && printf '  max_wait_us: 1000\n' >> "$config"
  stack_start "$STORE" --config "$config"
  for r in $RATES; do
    for proto in http grpc; do
      port=$http_port; [ "$proto" = grpc ] && port=$grpc_port
      [ "$proto" = grpc ] && [ "$r" -gt "$GRPC_MAX_RATE" ] && continue
      echo "== $proto, micro-batching $mode, $r req/s for ${DURATION}s" >&2
      cpu_snapshot > "$results/cpu-$proto-$mode-$r.before"
      $bin/vigil load-api --"$proto" "127.0.0.1:$port" --rate "$r" --duration "$DURATION" \
        --simulate $(( r * (DURATION + 1) + 1000 )) --seed "$r" --summary-json "$results/$proto-$mode-$r.json" >&2 || true
      sleep 1.5; cpu_snapshot > "$results/cpu-$proto-$mode-$r.after"
    done
  done
  stack_stop
  trap - EXIT
done

for r in $RATES; do
  # The development broker keeps ~5 MiB per partition (~25k transactions on 2 partitions).
  if [ $(( r * DURATION )) -gt 20000 ]; then echo "== Kafka path at $r tx/s skipped: more than the development broker holds" >&2; continue; fi
  stack_start "$STORE"
  echo "== Kafka path, $r tx/s for ${DURATION}s" >&2
  $bin/vigil produce --brokers "$brokers" --simulate $(( r * DURATION )) --seed "$r" --rate "$r" --warmup "$r" \
    --await-verdicts verdicts --timeout 120 --summary-json "$results/kafka-$r.json" >&2 || true
  stack_stop
  trap - EXIT
done
echo "== the Scorer alone (in-process, in-memory store, one core)" >&2
$bin/vigil bench --seconds 1 | tee "$results/scorer.txt" >&2

python3 - "$results" $RATES <<'PY'
import json, os, re, sys
results, rates = sys.argv[1], sys.argv[2:]
def load(name):
    try: return json.load(open(os.path.join(results, name)))
    except Exception: return None
def vigild_us(name):
    # vigild's CPU per request over the run (warm-up included in both), from /proc.
    try:
        a, b = (json.load(open(os.path.join(results, f"cpu-{name}.{w}"))) for w in ("before", "after"))
        n = b["api_requests"] - a["api_requests"]
        return f"{(b['vigild'] - a['vigild']) * 1e6 / n:.0f}" if n > 0 else "–"
    except Exception:
        return "–"
print("| path | target /s | achieved /s | p50 ms | p99 ms | p99.9 ms | refused | vigild CPU µs/request |")
print("|---|---|---|---|---|---|---|---|")
for r in rates:
    for proto in ("http", "grpc"):
        for mode in ("batched", "waiting", "unbatched"):
            s = load(f"{proto}-{mode}-{r}.json")
            label = {"batched": "batched (default)", "waiting": "batched, waiting ≤ 1 ms", "unbatched": "one per batch"}[mode]
            if s: print(f"| {'HTTP' if proto == 'http' else 'gRPC'}, {label} | {int(float(r)):,} | {s['achieved_rate']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} | {s['refused']} | {vigild_us(f'{proto}-{mode}-{r}')} |")
    s = load(f"kafka-{r}.json")
    if s: print(f"| Kafka (produce → verdict) | {int(float(r)):,} | {s['verdict_rate']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} | – | – |")
try:
    text = open(os.path.join(results, "scorer.txt")).read()
    m = re.search(r"scorer native batch 256: (\d+) tx/s on one core; single transaction p50 ([\d.]+) µs", text)
    print(f"\nScorer in-process (same run): batch 256 {int(m.group(1)):,} tx/s on one core; single transaction p50 {float(m.group(2)):.1f} µs")
except Exception:
    pass
PY
rm -rf "$results"
