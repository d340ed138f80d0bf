#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with clang in
# release (the second compiler: -Wall -Wextra -Werror, no tests run
# there) and in the
# other build types (tools/build-types.sh), builds twice
# with gcc (plain, and with AddressSanitizer + UndefinedBehaviorSanitizer
# and -Dfault_injection=true, whose 'fault' suite fails each allocation,
# SQLite call, write and fsync of the module's and the library's
# operations in turn under LeakSanitizer) and runs every suite in both;
# then builds with ThreadSanitizer and runs the suites module, lib, avail,
# lifecycle, fuzz, outage and interop but their tests in suite no-tsan
# (those load the module into pkcs11-tool, openssl, p11-kit server or
# java, which cannot load a TSan-built library; cli, trust and
# conformance are left out whole: tests/README.md "Sanitizers"); last
# the PostgreSQL pass ("pg"): the library's suites lib, lifecycle and
# avail and the three-node suite nodes again in the plain build, but their
# tests in suite no-pg (about
# the SQLite file itself, tests/README.md) and the layer checks, each
# test with a fresh database on a throwaway cluster (tests/pg.sh:
# Debian's postgresql, a Unix socket in a temp dir, no TCP port), which is
# removed at the end even on failure; then the Debian packages
# (tools/deb-check.sh), counted as one test.
# Idempotent; exits non-zero if any test fails, times out or is skipped
# (every peer a test needs is installed by tools/deps.sh, so a skip would
# hide an untested path), and if any build runs fewer tests than
# tests/test-count records for it (a suite that stopped being registered).
# `tools/test.sh --record-count` runs everything and, when all passed,
# raises the recorded counts to what ran (commit tests/test-count with the
# tests that were added).  Other arguments (test names) go to meson test;
# with them the TSan pass and the count check are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
record=no
if [ "${1:-}" = --record-count ]; then
  record=yes
  shift
  [ $# -eq 0 ] || { echo "tools/test.sh: --record-count takes no test names" >&2; exit 2; }
fi
counts=tests/test-count
tools/deps.sh

CC=clang tools/build.sh build-clang --buildtype=release
tools/build.sh build
# The build types a packager may choose, warning-free (tools/build-types.sh:
# kept directories, so only what changed is rebuilt; no tests run there;
# clang's release is build-clang above, gcc's debugoptimized is build).
tools/build-types.sh gcc:release gcc:plain gcc:debug
tools/build.sh build-san -Db_sanitize=address,undefined -Db_lundef=false \
  -Dfault_injection=true
tsan=()
if [ $# -eq 0 ]; then
  tools/build.sh build-tsan -Db_sanitize=thread -Db_lundef=false
  tsan=(build-tsan)
fi

# intercept_tls_get_addr=0: see kt_own_asan_options in tests/meson.build.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:intercept_tls_get_addr=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}

# The PostgreSQL pass: the library's suites, every test on a database of
# its own (KT_TEST_PG); tests that edit or read the store do it through
# testenv_sql (tests/lib/testenv.h) and kt_sql (tests/common.sh) on either
# engine.  Suite no-pg: tests about the SQLite file itself; static: the
# layer checks (they read the objects, not the store).
pg_tests=(--suite lib --suite lifecycle --suite avail --suite nodes
          --no-suite no-pg --no-suite static)
pg=()
if [ $# -eq 0 ]; then
  pg_dir=$(mktemp -u "${TMPDIR:-/tmp}/keytier-pg.XXXXXX")
  trap 'tests/pg.sh stop "$pg_dir"' EXIT
  pg=(pg)
fi

total_ok=0 total_fail=0 total_skip=0
declare -A ran
for dir in build build-san "${tsan[@]}" "${pg[@]}"; do
  echo "== meson test ($dir)"
  args=("$@")
  # the layer checks (suite static) read the objects: once, in build
  [ "$dir" = build-san ] && [ $# -eq 0 ] && args=(--no-suite static)
  [ "$dir" = build-tsan ] &&
    args=(--suite module --suite lib --suite avail --suite lifecycle --suite fuzz
          --suite outage --suite interop --no-suite no-tsan --no-suite static)
  summary=$dir/test-summary.txt
  set +e
  if [ "$dir" = pg ]; then
    summary=build/test-summary-pg.txt
    : >"$summary" # stays empty (a failure) when the cluster did not start
    KT_TEST_PG=$(tests/pg.sh start "$pg_dir") &&
      KT_TEST_PG=$KT_TEST_PG meson test -C build --print-errorlogs \
        --num-processes 2 "${pg_tests[@]}" | tee "$summary"
  else
    meson test -C "$dir" --print-errorlogs --num-processes 2 "${args[@]}" | tee "$summary"
  fi
  set -e
  ok=$(awk '/^Ok:/{print $2}' "$summary")
  fail=$(awk '/^(Fail|Unexpected Pass|Timeout):/{s+=$NF} END{print s+0}' "$summary")
  skip=$(awk '/^Skipped:/{print $2}' "$summary")
  total_ok=$((total_ok + ${ok:-0}))
  total_fail=$((total_fail + ${fail:-0}))
  total_skip=$((total_skip + ${skip:-0}))
  [ -n "$ok" ] || total_fail=$((total_fail + 1))   # meson itself failed
  ran[$dir]=$(tools/test-count.sh run "$summary")
done
# The Debian packages (tools/deb-check.sh: built, lintian, unpacked into a
# throwaway root, the module seen by p11-kit, p11tool and the proxy): one
# more test, counted with the others.
if [ $# -eq 0 ]; then
  echo "== tools/deb-check.sh"
  if tools/deb-check.sh; then
    total_ok=$((total_ok + 1))
  else
    echo "deb-check: FAILED" >&2
    total_fail=$((total_fail + 1))
  fi
fi
echo "tests: $total_ok passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ] && [ "$total_skip" -eq 0 ] || exit 1

if [ $# -gt 0 ]; then
  echo "test count: not checked (a subset of the tests was asked for)"
  exit 0
fi
status=0
for dir in build build-san build-tsan pg; do
  if [ "$record" = yes ]; then
    tools/test-count.sh record "$counts" "$dir" "${ran[$dir]}" || status=1
  else
    tools/test-count.sh check "$counts" "$dir" "${ran[$dir]}" || status=1
  fi
done
exit $status
