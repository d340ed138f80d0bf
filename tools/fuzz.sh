#!/usr/bin/env bash
# Builds the libFuzzer build (clang, -fsanitize=fuzzer,address,undefined)
# in build-fuzz and runs every target in tests/fuzz for SECONDS each
# (default 600), starting from its seed corpus in tests/fuzz/corpus.
#   tools/fuzz.sh [SECONDS] [TARGET...]
# New corpus entries go to build-fuzz/fuzz-corpus/TARGET (the seed corpus
# is not changed); crashing inputs to build-fuzz/fuzz-artifacts/. Prints
# libFuzzer's final stats (executions, exec/s, coverage) per target and
# exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
dir=build-fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/fuzz_*.c; do
    t=${f#tests/fuzz/fuzz_}
    targets+=("${t%.c}")
  done
fi
if ! command -v clang > /dev/null; then
  echo "tools/fuzz.sh: clang is missing (install it with tools/deps.sh)" >&2
  exit 1
fi
CC=clang tools/build.sh "$dir" -Dfuzzing=true \
  -Db_sanitize=address,undefined -Db_lundef=false
failed=()
for t in "${targets[@]}"; do
  exe=$dir/tests/fuzz/fuzz_$t
  if [ ! -x "$exe" ]; then
    echo "tools/fuzz.sh: no target $exe (is it in tests/fuzz/meson.build?)" >&2
    exit 1
  fi
  work=$dir/fuzz-corpus/$t
  art=$dir/fuzz-artifacts
  mkdir -p "$work" "$art"
  log=$dir/fuzz-$t.log
  echo "== fuzz_$t: ${seconds}s"
  if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
     "$exe" -max_total_time="$seconds" -print_final_stats=1 \
       -artifact_prefix="$art/$t-" "$work" "tests/fuzz/corpus/$t" \
       > "$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
  echo "   corpus $(ls "$work" | wc -l) new + $(ls "tests/fuzz/corpus/$t" | wc -l) seed files; $status (log: $log)"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "tools/fuzz.sh: crashes in: ${failed[*]} (inputs in $dir/fuzz-artifacts, stack in the logs)" >&2
  exit 1
fi
