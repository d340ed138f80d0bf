#!/usr/bin/env bash
# Real vault outages for the fallback rule (docs/DESIGN.md §2):
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
# With KT_OUTAGE_B=keytier, vault B is keytier's own module: only the
# programs that load it get the preload back.
KT_ASAN_PRELOAD=${LD_PRELOAD:-}
unset LD_PRELOAD

kt_softhsm2_conf "$KT_TMP/vaults"
softhsm2-util --init-token --free --label VaultA --so-pin 5678 --pin 1234 \
    >/dev/null || kt_fail "softhsm2-util --init-token VaultA"
kt_server_start "$SOFTHSM2_MODULE" VaultA
export KT_OUTAGE_ADDR_A=$P11_KIT_SERVER_ADDRESS KT_OUTAGE_PID_A=$P11_KIT_SERVER_PID
if [ "${KT_OUTAGE_B:-softhsm2}" = keytier ]; then
    kt_module_use keytier "$KT_TMP/keytier-vault"
    LD_PRELOAD=$KT_ASAN_PRELOAD kt_p11 --slot "$(LD_PRELOAD=$KT_ASAN_PRELOAD kt_free_slot)" \
        --init-token --label VaultB --so-pin 5678 >/dev/null 2>&1 ||
        kt_fail "keytier --init-token VaultB"
    LD_PRELOAD=$KT_ASAN_PRELOAD kt_p11 --token-label VaultB --login \
        --login-type so --so-pin 5678 --init-pin --pin 1234 >/dev/null 2>&1 ||
        kt_fail "keytier --init-pin VaultB"
    # started by hand: kt_server_start's own `ps` must not get the preload
    sock=$KT_TMP/p11kit-VaultB.sock
    LD_PRELOAD=$KT_ASAN_PRELOAD p11-kit server --sh --provider "$KT_MODULE" \
        -n "$sock" "pkcs11:token=VaultB" >"$KT_TMP/server-b.env" \
        2>"$KT_TMP/server-b.err" </dev/null ||
        kt_fail "p11-kit server: $(cat "$KT_TMP/server-b.err")"
    . "$KT_TMP/server-b.env"
    KT_SERVER_PIDS+=("$P11_KIT_SERVER_PID")
    for ((i = 0; i < 100; i++)); do
        [ -S "$sock" ] && break
        sleep 0.05
    done
    [ -S "$sock" ] || kt_fail "p11-kit server socket $sock missing"
else
    softhsm2-util --init-token --free --label VaultB --so-pin 5678 --pin 1234 \
        >/dev/null || kt_fail "softhsm2-util --init-token VaultB"
    kt_server_start "$SOFTHSM2_MODULE" VaultB
fi
export KT_OUTAGE_ADDR_B=$P11_KIT_SERVER_ADDRESS KT_OUTAGE_PID_B=$P11_KIT_SERVER_PID
unset P11_KIT_SERVER_ADDRESS P11_KIT_SERVER_PID

kt_softhsm2_conf "$KT_TMP/service"
softhsm2-util --init-token --free --label Service --so-pin 5678 --pin 1234 \
    >/dev/null || kt_fail "softhsm2-util --init-token Service"
# A customer vault loaded directly (not through a server), for
# DEPs that do not need vault A while A is frozen.
softhsm2-util --init-token --free --label VaultL --so-pin 5678 --pin 1234 \
    >/dev/null || kt_fail "softhsm2-util --init-token VaultL"

export KT_OUTAGE_DIR=$KT_TMP
kt_log "vault A: $KT_OUTAGE_ADDR_A (pid $KT_OUTAGE_PID_A)," \
    "vault B: $KT_OUTAGE_ADDR_B (pid $KT_OUTAGE_PID_B)"
# The program given is ours (test_outage, test_audit_anchor, or bash running
# cli_read.sh, whose keytier CLI is KT_CLI): leak detection on for it.
kt_own "$@"
