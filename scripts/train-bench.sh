#!/usr/bin/env bash
# Training on sparse history, measured: simulated card-present data with only a customer, a
# terminal, an amount, a time and a label (fraud that clusters by terminal and by card, unusual
# amounts, labels known 7 days later). Each model trains on one week and is backtested on the
# week that starts 7 days after it, all in the same run:
#   derived      vigil train with only the column map (the spec derived from the fields)
#   hand         the hand-written spec config/specs/pos-hand.yaml, searched model
#   xgboost      default XGBoost on the hand-written spec (--baseline xgboost)
#   logistic     logistic regression on the hand-written spec (--baseline logistic)
#   builtin      the built-in spec (what vigil train used to do without --features)
# Usage: scripts/train-bench.sh [seed ...]   (default seeds: 42 7; SEARCH seconds, default 120;
#        MODELS, default "derived hand xgboost logistic builtin")
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${*:-42 7}
SEARCH=${SEARCH:-120}
scripts/install-deps.sh >&2
swift build -c release --product vigil >&2
vigil=$PWD/.build/release/vigil
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
# 60 days from 2026-01-01: days 0–34 warm the 30-day windows (+ the 7-day delay), train on
# days 35–41, a 7-day gap, test on days 49–55.
period=(--from 2026-02-05 --to 2026-02-12)
test=(--from 2026-02-19 --to 2026-02-26)
printf '%-6s %-10s %8s %8s %12s %9s %9s\n' seed model AUC AP "card P@100" "(ceiling)" "train s"
for seed in $SEEDS; do
  data=$work/pos-$seed.csv
  [ -s "$data" ] || $vigil simulate --shape pos --days 60 --seed "$seed" --out "$data" 2>/dev/null
  map=$work/pos-$seed.map.yaml
  for model in ${MODELS:-derived hand xgboost logistic builtin}; do
    args=()
    case $model in
      hand) args=(--features config/specs/pos-hand.yaml) ;;
      xgboost) args=(--features config/specs/pos-hand.yaml --baseline xgboost) ;;
      logistic) args=(--features config/specs/pos-hand.yaml --baseline logistic) ;;
      builtin) $vigil features --print-default > "$work/builtin.yaml"; args=(--features "$work/builtin.yaml") ;;
    esac
    out=$work/$seed-$model
    start=$(date +%s.%N)
    $vigil train --data "$data" --map "$map" "${period[@]}" --label-delay 7d --search-time "$SEARCH" \
      "${args[@]}" --out "$out/model" >"$out.train.log" 2>&1 || { echo "train $model failed: $out.train.log" >&2; exit 1; }
    end=$(date +%s.%N)
    $vigil backtest --model "$out/model" --data "$data" --map "$map" "${test[@]}" --label-delay 7d \
      --report "$out/report" >"$out.backtest.log" 2>&1 || { echo "backtest $model failed: $out.backtest.log" >&2; exit 1; }
    python3 - "$out/report/report.json" "$seed" "$model" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<6} {sys.argv[3]:<10} {r['aucROC']:8.4f} {r['averagePrecision']:8.4f} {r['precisionAtTopKPerDay']:12.4f} {r['precisionAtTopKCeiling']:9.4f} {float(sys.argv[5]) - float(sys.argv[4]):9.1f}")
PY
  done
done
echo "models, reports and logs: $work" >&2
