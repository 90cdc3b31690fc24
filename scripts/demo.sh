#!/usr/bin/env bash
# The main job, live: starts Redis and the development Kafka broker, starts vigild, streams
# simulated payments through it at a fixed rate with live progress (transactions/s, latency
# percentiles, verdict mix), then prints a summary and the daemon's own metrics.
#   N=30000 RATE=2000 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
N=${N:-30000}
RATE=${RATE:-2000}
work=$(mktemp -d /tmp/vigil-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== building (release)" >&2
swift build -c release --product vigil >&2
swift build -c release --product vigild >&2
bin=.build/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
echo "== redis-server on 127.0.0.1:$redis_port" >&2
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
pids+=($!)

echo "== development Kafka broker (librdkafka mock cluster)" >&2
$bin/vigil dev-broker --partitions 4 > "$work/broker.out" 2> "$work/broker.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
brokers=$(head -1 "$work/broker.out")
echo "   bootstrap $brokers" >&2

# Secrets from the environment, never from files in the repository.
export VIGIL_HASH_SECRET=${VIGIL_HASH_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export VIGIL_ADMIN_TOKEN=${VIGIL_ADMIN_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
admin_port=$(free_port)
echo "== vigild (model models/default, rules rules/default.yaml, Redis windows; admin on 127.0.0.1:$admin_port)" >&2
$bin/vigild --brokers "$brokers" --redis "redis://127.0.0.1:$redis_port/0" --model models/default \
  --rules rules/default.yaml --admin-port "$admin_port" 2> "$work/vigild.log" &
pids+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null || { echo "vigild did not become ready:" >&2; tail -20 "$work/vigild.log" >&2; exit 1; }
echo "   ready (joined the consumer group)" >&2

echo "== streaming $N simulated transactions at $RATE/s (every 1000th malformed on purpose; labels follow 2000 messages later)" >&2
$bin/vigil produce --brokers "$brokers" --simulate "$N" --rate "$RATE" --corrupt-every 1000 \
  --labels-topic labels --label-lag 2000 --await-verdicts verdicts --summary-json "$work/summary.json"

echo "== the daemon's metrics (GET /metrics)" >&2
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^vigil_(transactions_total|verdicts_total|dead_letters_total|degraded_verdicts_total|labels_total|consumer_lag|batches_total) ' || true
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^vigil_(verdicts_total|dead_letters_total)\{' || true
echo "== a verdict that is not 'approve' (from the verdicts topic)" >&2
kcat -C -b "$brokers" -t verdicts -e -q -c 20000 2>/dev/null | grep -v '"action":"approve"' | head -1 || true
echo "== graceful stop (SIGTERM: finish in flight, commit, leave the group)" >&2
kill -TERM "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
tail -2 "$work/vigild.log" >&2
rm -rf "$work"
