#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (Swift's -sanitize=fuzzer, with AddressSanitizer):
# the transaction decoder (seeded with the hostile corpus) and the rule parser (seeded with the
# shipped rules), SECONDS each. A crash, a failed precondition or a hang (> 10 s) fails the run
# and leaves the input in Fuzz/findings/.
#   scripts/fuzz.sh 60                   each target for 60 s (CI runs 20 s each)
#   RUNS=10000000 scripts/fuzz.sh        each target to 10 million executions (optimised build,
#                                        the targets side by side, one per core; not for CI: hours)
#   TARGETS=rules RUNS=… scripts/fuzz.sh  one target only (the corpus in .build-fuzz carries over
#                                        from earlier runs)
# AddressSanitizer keeps two frames of each allocation's stack, not thirty, and a smaller
# quarantine: the rule target allocates on every YAML node, and full stacks cost a third of its
# time (835 → 1,058 executions per second). Reports still name the faulting frame in full.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
SECONDS_EACH=${1:-60}
RUNS=${RUNS:-}
TARGETS=${TARGETS:-decoder rules}
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=2:quarantine_size_mb=16}
CONFIG=debug; [ -n "$RUNS" ] && CONFIG=release
# Instrument every module (the decoder and rule parser live in the main package), not only the
# fuzz targets, so libFuzzer's coverage guidance sees inside them.
swift build --package-path Fuzz --scratch-path .build-fuzz -c "$CONFIG" -Xswiftc -sanitize=fuzzer,address >&2
bin=.build-fuzz/$CONFIG
mkdir -p Fuzz/findings .build-fuzz/corpus-decoder .build-fuzz/corpus-rules
cp Tests/Corpus/hostile/* .build-fuzz/corpus-decoder/
cp Fuzz/corpus/rules/* .build-fuzz/corpus-rules/
fuzz() {
  local target=$1 exe budget
  exe=$bin/Fuzz$(tr '[:lower:]' '[:upper:]' <<< "${target:0:1}")${target:1}
  if [ -n "$RUNS" ]; then budget=(-runs="$RUNS"); else budget=(-max_total_time="$SECONDS_EACH"); fi
  "$exe" "${budget[@]}" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix=Fuzz/findings/$target- -print_final_stats=1 .build-fuzz/corpus-$target > .build-fuzz/$target.log 2>&1
}
status=0
if [ -n "$RUNS" ]; then
  echo "== fuzzing ($TARGETS) to $RUNS executions each, side by side" >&2
  pids=()
  for target in $TARGETS; do fuzz "$target" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  for target in $TARGETS; do echo "== $target" >&2; tail -12 .build-fuzz/$target.log; done
else
  for target in $TARGETS; do
    echo "== fuzzing the $target for ${SECONDS_EACH}s" >&2
    fuzz $target || status=1
    tail -12 .build-fuzz/$target.log
  done
fi
exit $status
