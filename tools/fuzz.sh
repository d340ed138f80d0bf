#!/usr/bin/env bash
# Builds the libFuzzer build (clang, -fsanitize=fuzzer,address,undefined)
# in build-fuzz and runs every target in tests/fuzz for SECONDS each
# (default 600), starting from its seed corpus in tests/fuzz/corpus.
#   tools/fuzz.sh [SECONDS] [TARGET...]
# New corpus entries go to build-fuzz/fuzz-corpus/TARGET (the seed corpus
# is not changed); crashing inputs to build-fuzz/fuzz-artifacts/. Prints
# libFuzzer's final stats (executions, exec/s, coverage) per target,
# appends one markdown table row per target to build-fuzz/fuzz-summary.md
# (the header first when the file is new):
#   | target | seconds | executions | exec/s | cov | ft | corpus files | result |
# (executions and exec/s from stat::number_of_executed_units and
# stat::average_exec_per_sec, cov and ft from the final "#N DONE" line;
# corpus files: seeds plus new inputs), and exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
dir=build-fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  # a target is a fuzz_NAME.c with an entry point (fuzz_module.c is the
  # module fixture some targets share)
  for f in $(grep -l LLVMFuzzerTestOneInput tests/fuzz/fuzz_*.c); do
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
summary=$dir/fuzz-summary.md
if [ ! -s "$summary" ]; then
  printf '%s\n' '| target | seconds | executions | exec/s | cov | ft | corpus files | result |' \
    '|---|---|---|---|---|---|---|---|' > "$summary"
fi
# lf_stat NAME LOG: the value libFuzzer printed as stat::NAME, or "-"
lf_stat() {
  sed -n "s/^stat::$1:[[:space:]]*\([0-9]*\).*/\1/p" "$2" | tail -n 1 | grep . || echo -
}
# cov_ft LOG: "cov ft" of the final DONE line (else the last status line)
cov_ft() {
  local line
  line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$1" | tail -n 1)
  [ -n "$line" ] || line=$(grep -E '^#[0-9]+.* cov: ' "$1" | tail -n 1)
  echo "$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$line" | grep . || echo -)" \
       "$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$line" | grep . || echo -)"
}
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
  new=$(ls "$work" | wc -l)
  seeds=$(ls "tests/fuzz/corpus/$t" | wc -l)
  echo "   corpus $new new + $seeds seed files; $status (log: $log)"
  read -r cov ft <<< "$(cov_ft "$log")"
  echo "| $t | $seconds | $(lf_stat number_of_executed_units "$log") |" \
       "$(lf_stat average_exec_per_sec "$log") | $cov | $ft |" \
       "$((new + seeds)) ($new new) | $status |" >> "$summary"
done
echo "summary: $summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "tools/fuzz.sh: crashes in: ${failed[*]} (inputs in $dir/fuzz-artifacts, stack in the logs)" >&2
  exit 1
fi
