# Sourced by demo.sh, load-bench.sh and soak.sh: builds the release binaries and starts a local
# stack — Redis (unless STORE=memory), the development Kafka broker and vigild — all stopped on
# exit. Sets: bin, work, brokers, store_url, admin_port, vigild_pid.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stack_pids=()
stack_stop() {
  # Newest first: vigild drains and commits while the broker and Redis are still up.
  local i
  for (( i=${#stack_pids[@]}-1; i>=0; i-- )); do
    kill "${stack_pids[i]}" 2>/dev/null || true
    wait "${stack_pids[i]}" 2>/dev/null || true
  done
  stack_pids=()
  [ -n "${work:-}" ] && rm -rf "$work"
  work=
}

# stack_start STORE [vigild arguments…]
stack_start() {
  local store=$1; shift
  trap stack_stop EXIT
  work=$(mktemp -d /tmp/vigil-stack.XXXXXX)
  swift build -c release --product vigil >&2
  swift build -c release --product vigild >&2
  bin=.build/release
  store_url=memory
  if [ "$store" = redis ]; then
    local rp; rp=$(free_port)
    redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
    stack_pids+=($!)
    store_url="redis://127.0.0.1:$rp/0"
    echo "   redis-server on 127.0.0.1:$rp" >&2
  fi
  $bin/vigil dev-broker --partitions "${PARTITIONS:-2}" > "$work/broker.out" 2> "$work/broker.err" &
  broker_pid=$!
  stack_pids+=($broker_pid)
  for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
  brokers=$(head -1 "$work/broker.out")
  echo "   development Kafka broker (librdkafka mock cluster) at $brokers" >&2
  # Secrets from the environment, never from files in the repository.
  export VIGIL_HASH_SECRET=${VIGIL_HASH_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  export VIGIL_ADMIN_TOKEN=${VIGIL_ADMIN_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  admin_port=$(free_port)
  $bin/vigild --brokers "$brokers" --redis "$store_url" --model models/default --rules rules/default.yaml \
    --admin-port "$admin_port" "$@" 2> "$work/vigild.log" &
  vigild_pid=$!
  stack_pids+=($vigild_pid)
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null || { echo "vigild did not become ready:" >&2; tail -20 "$work/vigild.log" >&2; exit 1; }
  echo "   vigild ready (store $store_url; admin on 127.0.0.1:$admin_port)" >&2
}

metric() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# cpu_snapshot: one JSON line of CPU seconds so far — vigild's whole process, its librdkafka
# threads, each pipeline stage (vigil_cpu_seconds_total), the broker's — and the transactions
# vigild consumed and the API requests it answered, and the wall clock. Two snapshots around a run
# give CPU per transaction; two around an idle wait, what vigild and the broker spend doing nothing.
cpu_snapshot() {
  python3 - "$vigild_pid" "$broker_pid" "$admin_port" <<'PY'
import json, os, sys, time, urllib.request
pid, broker, port = sys.argv[1:4]
hz = os.sysconf("SC_CLK_TCK")
def seconds(stat):
    text = open(stat).read()
    fields = text[text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / hz  # utime + stime
tasks = f"/proc/{pid}/task"
rdk = sum(seconds(f"{tasks}/{t}/stat") for t in os.listdir(tasks)
          if open(f"{tasks}/{t}/comm").read().startswith("rdk:"))
stages, tx, api = {}, 0.0, 0.0
for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines():
    if line.startswith('vigil_cpu_seconds_total{stage="'):
        stages[line.split('"')[1]] = float(line.split()[-1])
    elif line.startswith("vigil_transactions_total "):
        tx = float(line.split()[-1])
    elif line.startswith("vigil_api_requests_total{"):
        api += float(line.split()[-1])
print(json.dumps({"vigild": seconds(f"/proc/{pid}/stat"), "librdkafka": rdk, "broker": seconds(f"/proc/{broker}/stat"),
                  "stages": stages, "transactions": tx, "api_requests": api, "time": time.time()}))
PY
}
