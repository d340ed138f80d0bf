#!/usr/bin/env bash
# Reproduces the "Workers" figures of BENCHMARKS.md: the same N mailbox
# keys (default 100,000) moved between two DEPs by one `keytier migrate`
# (keytier_migrate_run, one process, no claims), then by one `keytier
# worker --once`, then by three at once, wall time of each.
#
#   tools/bench/worker.sh [N] [BUILD_DIR]     (defaults: 100000, build)
#
# The store lives in a temp dir under ${BENCH_DIR:-/var/tmp} (ext4), removed
# at the end; DEP roots are AES keys on keytier's module.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-100000}
build=${2:-build}
kt=$PWD/$build/tools/cli/keytier
items=$PWD/$build/tests/lib/lifecycle/worker-items
module=$PWD/$build/module/keytier-pkcs11.so
[ -x "$kt" ] && [ -x "$items" ] ||
    { echo "build $build first (tools/build.sh $build)" >&2; exit 1; }
dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/keytier-bench-worker.XXXXXX")
trap 'rm -rf -- "$dir"' EXIT
cd "$dir"

printf 'token_dir = %s/tokens\npin_kdf_cost = 10\nlog_file = %s/module.log\n' \
    "$dir" "$dir" >module.conf
export KEYTIER_CONF=$dir/module.conf KEYTIER_MODULE=$module
export PIN=bench-user-pin SO_PIN=bench-so-pin
for t in vault-a vault-b svc; do
    "$kt" token init --label $t --so-pin-env SO_PIN --pin-env PIN >/dev/null
done
key() { "$kt" token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN; }
a1=$(key vault-a a1) b1=$(key vault-b b1) a2=$(key vault-a a2) b2=$(key vault-b b2)
cat >lib.conf <<CONF
module = $module
service_token = pkcs11:token=svc
store = $dir/keytier.db
pin.vault-a = env:PIN
pin.vault-b = env:PIN
pin.svc = env:PIN
CONF
export KEYTIER_LIB_CONF=$dir/lib.conf
dep() { "$kt" --json dep create --tenant bench --workload Exchange --key-a "$1" --key-b "$2" | jq -r .dep_id; }
d1=$(dep "$a1" "$b1") d2=$(dep "$a2" "$b2")
t0=$(date +%s.%N)
"$items" make bench Exchange "$d1" "$n" items
made=$(date +%s.%N)
printf 'created %d mailbox keys (one transaction each, an item sealed under each): %.1f s\n' \
    "$n" "$(echo "$made - $t0" | bc)"

# run LABEL TARGET CMD...: assigns every key to TARGET, times CMD.
run()
{
    local label=$1 target=$2 s e
    shift 2
    "$kt" assign --tenant bench --all --dep "$target" >/dev/null
    s=$(date +%s.%N)
    "$@"
    e=$(date +%s.%N)
    printf '%-34s %7.1f s  %8.0f keys/s\n' "$label" "$(echo "$e - $s" | bc)" \
        "$(echo "$n / ($e - $s)" | bc -l)"
}
three()
{
    local p=() i
    for i in 1 2 3; do "$kt" worker --once >/dev/null 2>&1 & p+=($!); done
    for i in "${p[@]}"; do wait "$i"; done
}
mig() { "$kt" migrate --tenant bench >/dev/null; }
run "keytier migrate (one process)" "$d2" mig
one() { "$kt" worker --once >/dev/null 2>&1; }
run "keytier worker --once (one)" "$d1" one
run "keytier worker --once (three)" "$d2" three
"$items" check bench Exchange "$d1" "$d2" "$n" items >/dev/null
echo "every key under the last DEP once, every item readable"
