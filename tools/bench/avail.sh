#!/usr/bin/env bash
# Availability benchmarks: serves vault tokens A and B from two
# `p11-kit server` processes (tests/outage/outage.sh) and runs bench-avail.
#   tools/bench/avail.sh [BUILD_DIR] [cold reads per case]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
export KT_SOURCE_ROOT=$root
export SOFTHSM2_MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
export P11KIT_CLIENT_MODULE=${P11KIT_CLIENT_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so}
exec "$root/tests/outage/outage.sh" "$build/tools/bench/bench-avail" \
    "${2:-200}"
