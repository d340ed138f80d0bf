#!/usr/bin/env bash
# Real vault outages for the fallback rule (issue 6, DESIGN.md §2-3):
# customer keys A and B live in SoftHSM2 tokens that two separate
# `p11-kit server` processes serve; libkeytier reaches them through
# p11-kit-client.so (`remote =` in its config), while the availability key
# is in a service token loaded directly.  The vault tokens live in their own
# SoftHSM2 directory, so the library can reach them only through the
# servers.  test_outage (argument 1) drives the scenarios and freezes
# (SIGSTOP), thaws and kills the servers by PID.
. "$KT_SOURCE_ROOT/tests/common.sh"
kt_tmpdir
# Nothing foreign here loads keytier's (sanitized) module: the servers serve
# SoftHSM2 and test_outage links its sanitizer runtime itself.  Preloading
# libasan into ps, softhsm2-util and p11-kit only risks hangs (ps does).
unset LD_PRELOAD

kt_softhsm2_conf "$KT_TMP/vaults"
for t in VaultA VaultB; do
    softhsm2-util --init-token --free --label "$t" --so-pin 5678 --pin 1234 \
        >/dev/null || kt_fail "softhsm2-util --init-token $t"
done
kt_server_start "$SOFTHSM2_MODULE" VaultA
export KT_OUTAGE_ADDR_A=$P11_KIT_SERVER_ADDRESS KT_OUTAGE_PID_A=$P11_KIT_SERVER_PID
kt_server_start "$SOFTHSM2_MODULE" VaultB
export KT_OUTAGE_ADDR_B=$P11_KIT_SERVER_ADDRESS KT_OUTAGE_PID_B=$P11_KIT_SERVER_PID
unset P11_KIT_SERVER_ADDRESS P11_KIT_SERVER_PID

kt_softhsm2_conf "$KT_TMP/service"
softhsm2-util --init-token --free --label Service --so-pin 5678 --pin 1234 \
    >/dev/null || kt_fail "softhsm2-util --init-token Service"

export KT_OUTAGE_DIR=$KT_TMP
kt_log "vault A: $KT_OUTAGE_ADDR_A (pid $KT_OUTAGE_PID_A)," \
    "vault B: $KT_OUTAGE_ADDR_B (pid $KT_OUTAGE_PID_B)"
"$1"
