#!/usr/bin/env bash
# Fuzzes the router's `route` (decode, normalize, redact, serialize) with libFuzzer for a bounded
# time. Target: fuzz/fuzz_targets/route.rs, which routes arbitrary bytes as both raw streams, with
# no operator rule and with all of them, and fails if an accepted record's envelope is not JSON or
# still holds a header or field that a rule removes.
#
#   scripts/fuzz.sh                  fuzz for 60 seconds
#   FUZZ_SECONDS=600 scripts/fuzz.sh fuzz for 10 minutes
#   scripts/fuzz.sh -jobs=2          extra arguments go to libFuzzer
#
# Inputs start from the checked-in seeds (fuzz/seeds/route: valid raw events, JSON and Avro) and
# the tokens of fuzz/route.dict; what the fuzzer learns is kept in fuzz/corpus/route (git-ignored)
# for the next run. A crash is saved under fuzz/artifacts/route/ and the script exits non-zero;
# replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run route <file>` and turn it into a unit test.
#
# cargo-fuzz is installed when missing. It passes nightly-only flags to rustc (-Zsanitizer=address,
# sanitizer coverage); this machine has only a stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable
# rustc accept them. The fuzz package (fuzz/) is outside the workspace so that those flags never
# reach the workspace's own builds; it has its own target directory, fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${FUZZ_SECONDS:-60}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

mkdir -p fuzz/corpus/route
RUSTC_BOOTSTRAP=1 cargo fuzz run route fuzz/corpus/route fuzz/seeds/route -- \
  -max_total_time="$seconds" -dict=fuzz/route.dict -max_len=4096 -timeout=10 "$@"
