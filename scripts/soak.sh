#!/usr/bin/env bash
# Soak and overload: vigild (release, Redis store) under a sustained rate for DURATION seconds
# while its memory (RSS), open file descriptors and consumer lag are sampled every SAMPLE
# seconds; then OVERLOAD_RATE (default twice the sustainable rate) for OVERLOAD seconds, then
# back to RATE, to show bounded memory, backpressure and recovery. Writes OUT/samples.csv,
# OUT/soak.svg and OUT/summary.txt.
#   RATE=1000 DURATION=600 WARMUP=60 OVERLOAD_RATE=4400 OVERLOAD=60 OUT=soak-out scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
RATE=${RATE:-1000}
DURATION=${DURATION:-600}
OVERLOAD_RATE=${OVERLOAD_RATE:-4400}
OVERLOAD=${OVERLOAD:-60}
SAMPLE=${SAMPLE:-5}
# The development broker's cost per fetch grows with the message sets it holds until its logs
# reach their retention (~5 MiB per partition: about 30 s at 2,000 tx/s), so the first minutes
# of a cold stack are cheaper than any later one for reasons outside vigild. The soak's minutes
# are counted after WARMUP seconds at RATE (vigild's windows and cache keep filling all along).
WARMUP=${WARMUP:-60}
OUT=${OUT:-soak-out}
mkdir -p "$OUT"
source scripts/lib/stack.sh
stack_start redis
vpid=$vigild_pid
ap=$admin_port

echo "t_s,phase,rss_kib,fds,lag,verdicts,paused,degraded,vigild_cpu_s,broker_cpu_s,redis_cpu_s" > "$OUT/samples.csv"
phase_file="$work/phase"; echo soak > "$phase_file"
(
  trap - EXIT
  start=$(date +%s)
  while kill -0 "$vpid" 2>/dev/null; do
    t=$(( $(date +%s) - start ))
    rss=$(awk '/VmRSS/ { print $2 }' /proc/$vpid/status)
    # CPU seconds so far (utime + stime) of vigild, the broker and Redis: which one a slowdown is in.
    cpu=""; for p in "$vpid" "${stack_pids[1]}" "${stack_pids[0]}"; do cpu="$cpu,$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' /proc/$p/stat 2>/dev/null)"; done
    fds=$(ls /proc/$vpid/fd | wc -l)
    v=0; for a in approve challenge review block; do x=$(curl -s "http://127.0.0.1:$ap/metrics" | awk -v a="vigil_verdicts_total{action=\"$a\"}" '$1 == a { print $2 }'); v=$((v + ${x:-0})); done
    echo "$t,$(cat "$phase_file"),$rss,$fds,$(metric vigil_consumer_lag),$v,$(metric vigil_paused),$(metric vigil_degraded_verdicts_total)$cpu" >> "$OUT/samples.csv"
    sleep "$SAMPLE"
  done
) &
stack_pids+=($!)

echo "== soak: $RATE tx/s for $DURATION s, after $WARMUP s of warm-up at the same rate" >&2
$bin/vigil produce --brokers "$brokers" --simulate $((RATE * DURATION)) --seed 501 --rate "$RATE" --warmup $((RATE * WARMUP)) \
  --await-verdicts verdicts --timeout 300 --summary-json "$OUT/soak.json" 2> "$work/soak-produce.log" | tee "$OUT/soak.txt" >&2
echo overload > "$phase_file"
echo "== overload: $OVERLOAD_RATE tx/s for $OVERLOAD s" >&2
$bin/vigil produce --brokers "$brokers" --simulate $((OVERLOAD_RATE * OVERLOAD)) --seed 502 --rate "$OVERLOAD_RATE" \
  --await-verdicts verdicts --timeout 120 --summary-json "$OUT/overload.json" 2> "$work/overload-produce.log" | tee "$OUT/overload.txt" >&2 &
over=$!
sleep "$OVERLOAD"
echo recovery > "$phase_file"
wait $over || true
echo "== back to $RATE tx/s for 60 s" >&2
$bin/vigil produce --brokers "$brokers" --simulate $((RATE * 60)) --seed 503 --rate "$RATE" \
  --await-verdicts verdicts --timeout 300 --summary-json "$OUT/after.json" 2> "$work/after-produce.log" | tee "$OUT/after.txt" >&2
echo done > "$phase_file"
sleep "$SAMPLE"

python3 - "$OUT" "$DURATION" <<'PY'
import csv, sys, json
out = sys.argv[1]
rows = [r for r in csv.DictReader(open(f"{out}/samples.csv"))]
def num(r, k):
    try: return float(r[k])
    except: return 0.0
soak = [r for r in rows if r["phase"] == "soak"]
lines = []
if soak:
    first, last = soak[min(2, len(soak)-1)], soak[-1]
    lines.append(f"soak: {len(soak)} samples over {int(num(last,'t_s'))} s; RSS {num(first,'rss_kib')/1024:.1f} → {num(last,'rss_kib')/1024:.1f} MiB (max {max(num(r,'rss_kib') for r in soak)/1024:.1f}); fds {int(num(first,'fds'))} → {int(num(last,'fds'))} (max {int(max(num(r,'fds') for r in soak))}); max lag {int(max(num(r,'lag') for r in soak))}")
over = [r for r in rows if r["phase"] in ("overload", "recovery")]
if over:
    lines.append(f"overload: max RSS {max(num(r,'rss_kib') for r in over)/1024:.1f} MiB, max lag {int(max(num(r,'lag') for r in over))}, paused samples {sum(1 for r in over if num(r,'paused') > 0)}")
    rec = [r for r in rows if r["phase"] == "recovery"]
    t0 = num(rec[0], "t_s") if rec else None
    back = next((r for r in rows if r["phase"] in ("recovery", "done") and num(r, "lag") < 1000 and t0 is not None and num(r, "t_s") >= t0), None)
    if back is not None: lines.append(f"recovery: lag under 1000 {int(num(back,'t_s') - t0)} s after the overload stopped")
try:
    m = json.load(open(f"{out}/soak.json")).get("p99_ms_by_minute", [])
    full = m[:max(1, int(sys.argv[2]) // 60)]
    if len(full) >= 2:
        lines.append(f"soak p99 by minute: first {full[0]:.1f} ms, last {full[-1]:.1f} ms (last/first ×{full[-1] / max(full[0], 1e-9):.2f}); every minute: {', '.join(f'{x:.0f}' for x in full)}")
except Exception as e:
    lines.append(f"soak p99 by minute: unavailable ({e})")
# CPU (cores) of vigild and the broker per minute of the soak: which one a slow minute is in.
soak_rows = [r for r in rows if r["phase"] == "soak"]
if len(soak_rows) > 2:
    t0 = num(soak_rows[0], "t_s")
    per = {}
    for a, b in zip(soak_rows, soak_rows[1:]):
        dt = num(b, "t_s") - num(a, "t_s")
        if dt <= 0: continue
        m = int((num(b, "t_s") - t0) // 60)
        per.setdefault(m, [0.0, 0.0, 0.0])
        per[m][0] += num(b, "vigild_cpu_s") - num(a, "vigild_cpu_s")
        per[m][1] += num(b, "broker_cpu_s") - num(a, "broker_cpu_s")
        per[m][2] += dt
    lines.append("CPU by minute from the start of the warm-up (cores), vigild / broker: " + ", ".join(f"{v / t:.2f}/{b / t:.2f}" for _, (v, b, t) in sorted(per.items()) if t > 0))
for name in ("soak", "overload", "after"):
    try:
        s = json.load(open(f"{out}/{name}.json"))
        lines.append(f"{name}: sent {s['sent']}, verdicts {s['verdicts']}, missing {s['missing']}, duplicates {s['duplicates']} (differing {s['differing']}), p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms")
    except Exception as e:
        lines.append(f"{name}: no summary ({e})")
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
# A plot: RSS (MiB) and fds against time, phases shaded.
W, H, P = 760, 300, 50
ts = [num(r, "t_s") for r in rows] or [0]
rss = [num(r, "rss_kib") / 1024 for r in rows] or [0]
fds = [num(r, "fds") for r in rows] or [0]
lag = [num(r, "lag") for r in rows] or [0]
tmax = max(ts) or 1
def x(t): return P + (W - 2 * P) * t / tmax
def poly(vals, vmax, color):
    vmax = vmax or 1
    pts = " ".join(f"{x(t):.1f},{H - P - (H - 2 * P) * v / vmax:.1f}" for t, v in zip(ts, vals))
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>'
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>']
for ph, color in (("overload", "#fde2e2"), ("recovery", "#e2f0fd")):
    pts = [num(r, "t_s") for r in rows if r["phase"] == ph]
    if pts: svg.append(f'<rect x="{x(min(pts)):.1f}" y="{P}" width="{max(2, x(max(pts)) - x(min(pts))):.1f}" height="{H - 2 * P}" fill="{color}"/>')
svg.append(f'<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/><line x1="{P}" y1="{P}" x2="{P}" y2="{H-P}" stroke="black"/>')
svg.append(poly(rss, max(rss) * 1.2, "#1f77b4"))
svg.append(poly(fds, max(fds) * 1.2, "#2ca02c"))
svg.append(poly(lag, max(lag) * 1.2 if max(lag) > 0 else 1, "#d62728"))
svg.append(f'<text x="{P}" y="20">vigild soak: RSS (blue, max {max(rss):.0f} MiB), open fds (green, max {int(max(fds))}), consumer lag (red, max {int(max(lag))}); overload shaded red, recovery blue</text>')
svg.append(f'<text x="{W-P}" y="{H-P+20}" text-anchor="end">{int(tmax)} s</text></svg>')
open(f"{out}/soak.svg", "w").write("\n".join(svg))
PY
