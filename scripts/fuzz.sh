#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (Swift's -sanitize=fuzzer, with AddressSanitizer):
# the transaction decoder (seeded with the hostile corpus) and the rule parser (seeded with the
# shipped rules), SECONDS each. A crash, a failed precondition or a hang (> 10 s) fails the run
# and leaves the input in Fuzz/findings/.
#   scripts/fuzz.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
SECONDS_EACH=${1:-60}
# Instrument every module (the decoder and rule parser live in the main package), not only the
# fuzz targets, so libFuzzer's coverage guidance sees inside them.
swift build --package-path Fuzz --scratch-path .build-fuzz -c debug -Xswiftc -sanitize=fuzzer,address >&2
bin=.build-fuzz/debug
mkdir -p Fuzz/findings .build-fuzz/corpus-decoder .build-fuzz/corpus-rules
cp Tests/Corpus/hostile/* .build-fuzz/corpus-decoder/
cp Fuzz/corpus/rules/* .build-fuzz/corpus-rules/
status=0
for target in decoder rules; do
  exe=$bin/Fuzz$(tr '[:lower:]' '[:upper:]' <<< "${target:0:1}")${target:1}
  echo "== fuzzing the $target for ${SECONDS_EACH}s" >&2
  "$exe" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix=Fuzz/findings/$target- -print_final_stats=1 .build-fuzz/corpus-$target 2>&1 | tail -12 || status=1
done
exit $status
