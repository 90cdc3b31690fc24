#!/usr/bin/env bash
# The main job, end to end: simulate a labelled payment stream, score it with the shipped
# model bundle and rules through the same Scorer the daemon uses, and summarise the verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
N=${N:-50000}
out=${OUT:-demo-out}
mkdir -p "$out"
echo "== building (release)" >&2
swift build -c release --product vigil >&2
vigil=.build/release/vigil
echo "== simulating $N transactions" >&2
$vigil simulate --transactions "$N" --days 10 --seed 7 --start 2026-03-01 --out "$out/stream.jsonl"
echo "== scoring with models/default and rules/default.yaml" >&2
$vigil score --model models/default --rules rules/default.yaml --data "$out/stream.jsonl" --out "$out/verdicts.jsonl" \
  --label-delay 7d --summary
echo "== three verdicts that are not 'approve'" >&2
grep -v "\"action\":\"approve\"" "$out/verdicts.jsonl" | head -3 || true
echo "== how the verdicts line up with the simulated labels" >&2
python3 - "$out/stream.jsonl" "$out/verdicts.jsonl" <<'PY' 2>/dev/null || true
import json, sys, collections
labels = {json.loads(l)["id"]: json.loads(l).get("label", 0) for l in open(sys.argv[1])}
mix = collections.Counter()
for l in open(sys.argv[2]):
    v = json.loads(l); mix[(v["action"], labels.get(v["id"], 0))] += 1
for a in ["approve", "challenge", "review", "block"]:
    print(f"  {a:9s} legit {mix[(a,0)]:7d}   fraud {mix[(a,1)]:6d}")
PY
