#!/usr/bin/env bash
# Audit-log append rate without and with the keyed anchor, the service token
# on keytier's module (BENCHMARKS.md "Audit log anchor").
#   tools/bench-avail/audit.sh [BUILD_DIR] [records per round] [rounds]
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
cat >"$KT_TMP/lib.conf" <<CONF
module = $KEYTIER_MODULE
service_token = pkcs11:token=svc
store = $KT_TMP/store/keytier.db
pin.svc = env:PIN
log_file = $KT_TMP/lib.log
CONF
"$build/tools/bench-avail/bench-audit" "$KT_TMP/lib.conf" "${2:-500}" "${3:-4}"
