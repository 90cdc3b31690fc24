#!/usr/bin/env bash
# End-to-end load benchmark: Redis + the development broker + vigild (release build), driven
# open-loop by `vigil produce` at fixed rates, each for DURATION seconds; then unthrottled; then
# the broker's own consume+produce+commit ceiling (`vigil bench-kafka`) in the same run.
#   RATES="1000 2000 4000" DURATION=20 STORE=redis scripts/load-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
RATES=${RATES:-"1000 2000 4000 8000"}
DURATION=${DURATION:-20}
STORE=${STORE:-redis}
MAX_N=${MAX_N:-100000}
work=$(mktemp -d /tmp/vigil-load.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
swift build -c release --product vigil >&2
swift build -c release --product vigild >&2
bin=.build/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

store=memory
if [ "$STORE" = redis ]; then
  rp=$(free_port)
  redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
  pids+=($!)
  store="redis://127.0.0.1:$rp/0"
fi
$bin/vigil dev-broker --partitions 4 > "$work/broker.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
brokers=$(head -1 "$work/broker.out")
export VIGIL_HASH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ap=$(free_port)
$bin/vigild --brokers "$brokers" --redis "$store" --model models/default --rules rules/default.yaml --admin-port "$ap" 2> "$work/vigild.log" &
pids+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$ap/ready" >/dev/null 2>&1 && break; sleep 0.1; done

echo "store: $STORE; each rate for ${DURATION}s; machine: $(nproc) cores" >&2
results=()
for r in $RATES 0; do
  if [ "$r" = 0 ]; then n=$MAX_N; else n=$((r * DURATION)); fi
  echo "== rate ${r/#0/unthrottled}: $n transactions" >&2
  $bin/vigil produce --brokers "$brokers" --simulate "$n" --seed "$((1000 + r))" --rate "$r" \
    --warmup "$(( r > 0 ? r : 1000 ))" --await-verdicts verdicts --timeout 120 --summary-json "$work/rate-$r.json" >&2 || true
  results+=("$work/rate-$r.json")
done
echo "== broker ceiling: consume+produce+commit with no scoring" >&2
$bin/vigil bench-kafka --brokers "$brokers" | tee "$work/ceiling.txt" >&2

python3 - "$work/ceiling.txt" "${results[@]}" <<'PY'
import json, sys, re
ceiling = open(sys.argv[1]).read()
cp = int(re.search(r"consume\+produce\+commit: \d+ in [\d.]+ s = (\d+)", ceiling).group(1))
print(f"| target tx/s | sustained tx/s | verdicts | missing | p50 ms | p99 ms | p99.9 ms | share of broker ceiling |")
print(f"|---|---|---|---|---|---|---|---|")
for path in sys.argv[2:]:
    try: s = json.load(open(path))
    except Exception: continue
    sustained = s["verdict_rate"]
    target = "unthrottled" if s["target_rate"] == 0 else int(s["target_rate"])
    print(f"| {target} | {sustained:,.0f} | {s['verdicts']} | {s['missing']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} | {sustained / cp:.3f} |")
print(f"\nbroker ceiling (consume+produce+commit, same broker, same run): {cp:,} msg/s")
PY
