#!/usr/bin/env bash
# The "CLI read in an outage" figure of BENCHMARKS.md: the wall time of
# `keytier decrypt` of a mailbox (mail shape) with both customer vaults
# frozen (SIGSTOP of their `p11-kit server`), served by the availability
# key, beside avail.call_deadline_ms.  Each build gets fresh vaults
# (tests/outage/outage.sh) and RUNS reads, each a new process; name two
# builds to compare trees in one run.
#   tools/bench/cli_outage.sh [RUNS] [BUILD_DIR...]   (defaults: 5, build)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-5}
shift || true
[ $# -gt 0 ] || set -- "$root/build"
export KT_SOURCE_ROOT=$root
export SOFTHSM2_MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
export P11KIT_CLIENT_MODULE=${P11KIT_CLIENT_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so}
for build in "$@"; do
    echo "== $build"
    KT_CLI=$(cd "$build" && pwd)/tools/cli/keytier KT_CLI_READ_TIMES=$runs \
        "$root/tests/outage/outage.sh" bash "$root/tests/outage/cli_read.sh"
done
