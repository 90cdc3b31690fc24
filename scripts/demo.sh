#!/usr/bin/env bash
# The main job, live: starts Redis and the development Kafka broker, starts vigild, streams
# simulated payments through it at a fixed rate with live progress (transactions/s, latency
# percentiles, verdict mix), then prints a summary and the daemon's own metrics.
# The default length stays within what the development broker (librdkafka's mock cluster)
# sustains: its CPU grows with its logs, and past ~20k messages plus their labels and verdicts it
# becomes the bottleneck, whatever the store (measured: docs/benchmarks.md).
#   N=15000 RATE=1000 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
N=${N:-15000}
RATE=${RATE:-1000}
source scripts/lib/stack.sh
echo "== starting Redis, the broker and vigild (model models/default, rules rules/default.yaml)" >&2
stack_start redis

echo "== streaming $N simulated transactions at $RATE/s (every 1000th malformed on purpose; labels follow 2000 messages later)" >&2
$bin/vigil produce --brokers "$brokers" --simulate "$N" --rate "$RATE" --warmup 500 --corrupt-every 1000 \
  --labels-topic labels --label-lag 2000 --await-verdicts verdicts

echo "== the daemon's metrics (GET /metrics)" >&2
sleep 5  # the model monitor refreshes its gauges every 5 s
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^vigil_(transactions_total|verdicts_total|dead_letters_total|degraded_verdicts_total|labels_total|consumer_lag|batches_total|drift_score_psi|drift_rows|model_labelled|model_precision|model_recall|model_cost_per_transaction)[ {]' || true
echo "   (drift: this run's scores against the bundle's training reference; the demo starts with empty windows, which the PSI shows as drift)" >&2
echo "== a verdict that is not 'approve' (read back with kcat)" >&2
kcat -C -b "$brokers" -t verdicts -e -q -c 20000 2>/dev/null | grep -v '"action":"approve"' | head -1 || true
echo "== a dead letter: its reason header, then the original bytes" >&2
kcat -C -b "$brokers" -t transactions.dlq -e -q -c 1 -f '%h\n%s\n' 2>/dev/null | cut -c1-200 || true
echo "== graceful stop (SIGTERM: finish in flight, commit, leave the group)" >&2
kill -TERM "$vigild_pid"; wait "$vigild_pid" 2>/dev/null || true
tail -1 "$work/vigild.log" >&2
