#!/usr/bin/env bash
# Reproduces the module figures of BENCHMARKS.md: builds (plain build in
# build/), then runs kt-bench twice, keytier beside SoftHSM2 in each run.
#
#   tools/bench/run.sh [SECONDS]      (default 2 s per figure)
#
# Run 1: every benchmark except find, tokens on the disk
#        under ${BENCH_DIR:-/var/tmp} (durable creation means something
#        only on a real file system).
# Run 2: find by label among 1,000 and 10,000 token objects, tokens of both
#        modules on tmpfs (/dev/shm): SoftHSM2 creates ~20 objects/s on
#        ext4 here (its file store waits in ftruncate), which would make
#        filling 10,000 objects take minutes; its find itself is CPU-bound,
#        and tmpfs only makes SoftHSM2's find faster, never keytier's
#        ratio better.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-2}
tools/deps.sh
tools/build.sh build
bench=build/tools/bench/kt-bench
mods=(--keytier "$PWD/build/module/keytier-pkcs11.so"
    --softhsm2 /usr/lib/softhsm/libsofthsm2.so)

echo "== run 1: tokens on disk (${BENCH_DIR:-/var/tmp})"
"$bench" "${mods[@]}" --seconds "$secs" \
    --only login,keygen,wrap,unwrap,gcm,create,threads,rsa,oaep,ecdsa \
    --dir "${BENCH_DIR:-/var/tmp}"
echo
echo "== run 2: find among 1,000 and 10,000 token objects, tokens on tmpfs"
"$bench" "${mods[@]}" --seconds "$secs" --only find \
    --find-sizes 1000,10000 --dir /dev/shm --no-openssl-speed
