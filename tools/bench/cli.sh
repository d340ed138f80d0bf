#!/usr/bin/env bash
# Reproduces the "CLI" figures of BENCHMARKS.md: `keytier encrypt`
# and `keytier decrypt` of one file (default 1 GiB) beside `openssl enc
# -aes-256-ctr` on the same file, wall time and peak RSS from GNU time.
#
#   tools/bench/cli.sh [MIB] [BUILD_DIR]     (defaults: 1024, build)
#
# Files live in a temp dir under ${BENCH_DIR:-/dev/shm} (tmpfs, so that the
# disk does not set the pace), removed at the end. The DEP's roots are AES
# keys on keytier's module (the DEP key is read once per command).
set -euo pipefail
. "$(dirname "$0")/common.sh"
mib=${1:-1024}
bench_setup cli "${BENCH_DIR:-/dev/shm}" "${2:-build}"
a=$(bench_key vault-a ra)
b=$(bench_key vault-b rb)
bench_lib_conf sqlite
dep=$(bench_dep "$a" "$b")
"$kt" mailbox create --tenant bench --dep "$dep" box >/dev/null

head -c $((mib << 20)) /dev/urandom >data
key=$(openssl rand -hex 32)
iv=$(openssl rand -hex 16)

# run NAME COMMAND...: prints "NAME seconds MiB/s peak-RSS-MiB"
run()
{
    local name=$1
    shift
    /usr/bin/time -v -o "$name.time" "$@"
    local secs rss
    secs=$(sed -n 's/^\tElapsed (wall clock) time (h:mm:ss or m:ss): //p' "$name.time" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/^\tMaximum resident set size (kbytes): //p' "$name.time")
    awk -v n="$name" -v s="$secs" -v m="$mib" -v r="$rss" \
        'BEGIN { printf "| %s | %.2f | %.0f | %.1f |\n", n, s, m / s, r / 1024 }'
}

echo "file: $mib MiB of random data in $dir ($(uname -m), $(nproc) cores)"
echo
echo "| command | wall s | MiB/s | peak RSS MiB |"
echo "|---|---|---|---|"
run "keytier encrypt" "$kt" encrypt --tenant bench --mailbox box -i data -o data.kt
run "keytier decrypt" "$kt" decrypt --tenant bench --mailbox box -i data.kt -o data.out
cmp -s data data.out || { echo "decrypted file differs" >&2; exit 1; }
rm -f data.out
run "openssl enc -aes-256-ctr (encrypt)" openssl enc -aes-256-ctr -K "$key" -iv "$iv" -in data -out data.ctr
run "openssl enc -d -aes-256-ctr (decrypt)" openssl enc -d -aes-256-ctr -K "$key" -iv "$iv" -in data.ctr -out data.out
cmp -s data data.out || { echo "openssl round trip differs" >&2; exit 1; }
echo
echo "envelope overhead: $(( $(stat -c %s data.kt) - $(stat -c %s data) )) bytes on $((mib << 20))"
