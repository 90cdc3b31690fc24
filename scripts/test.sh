#!/usr/bin/env bash
# Runs the whole test suite. Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build "$@"
# Coverage-guided fuzzing of the decoder and the rule parser, briefly (longer: scripts/fuzz.sh 600).
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
