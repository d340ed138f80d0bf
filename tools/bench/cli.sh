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
cd "$(dirname "$0")/../.."
mib=${1:-1024}
build=${2:-build}
[ -x "$build/tools/cli/keytier" ] || { echo "build $build first (tools/build.sh $build)" >&2; exit 1; }
kt=$PWD/$build/tools/cli/keytier
module=$PWD/$build/module/keytier-pkcs11.so
dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/keytier-bench-cli.XXXXXX")
trap 'rm -rf -- "$dir"' EXIT
cd "$dir"

printf 'token_dir = %s/tokens\npin_kdf_cost = 10\nlog_file = %s/module.log\n' \
    "$dir" "$dir" >module.conf
export KEYTIER_CONF=$dir/module.conf KEYTIER_MODULE=$module
export PIN=bench-user-pin SO_PIN=bench-so-pin
for t in vault-a vault-b svc; do
    "$kt" token init --label $t --so-pin-env SO_PIN --pin-env PIN >/dev/null
done
a=$("$kt" token keygen --token vault-a --label ra --type aes256 --pin-env PIN)
b=$("$kt" token keygen --token vault-b --label rb --type aes256 --pin-env PIN)
cat >lib.conf <<CONF
module = $module
service_token = pkcs11:token=svc
store = $dir/keytier.db
pin.vault-a = env:PIN
pin.vault-b = env:PIN
pin.svc = env:PIN
CONF
export KEYTIER_LIB_CONF=$dir/lib.conf
dep=$("$kt" --json dep create --tenant bench --workload Exchange --key-a "$a" --key-b "$b" | jq -r .dep_id)
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
