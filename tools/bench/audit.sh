#!/usr/bin/env bash
# The audit log's keyed anchor: keyset rollovers (one audit record each)
# without and with the anchor, the service token on keytier's module
# (BENCHMARKS.md "Availability").
#   tools/bench/audit.sh [BUILD_DIR] [records per round] [rounds]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
export KT_SOURCE_ROOT=$root KT_BUILD_ROOT=$build
. "$root/tests/common.sh"
kt_tmpdir
kt_keytier_conf "$KT_TMP/module"
export KEYTIER_MODULE=$build/module/keytier-pkcs11.so PIN=4711-user SO_PIN=0815-security
"$build/tools/cli/keytier" token init --label svc --so-pin-env SO_PIN \
    --pin-env PIN >/dev/null
"$build/tools/cli/keytier" token keygen --token svc --label ks-root \
    --type aes256 --pin-env PIN >/dev/null
for kind in plain anchored; do
  {
    echo "module = $KEYTIER_MODULE"
    [ $kind = anchored ] && echo "service_token = pkcs11:token=svc"
    echo "store = $KT_TMP/$kind/keytier.db"
    echo "pin.svc = env:PIN"
    echo "log_file = $KT_TMP/$kind.log"
  } >"$KT_TMP/$kind.conf"
done
"$build/tools/bench/bench-audit" "$KT_TMP/plain.conf" "$KT_TMP/anchored.conf" \
    "pkcs11:token=svc;object=ks-root" "${2:-500}" "${3:-4}"
