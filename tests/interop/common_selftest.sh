#!/usr/bin/env bash
# Checks tests/common.sh itself, since other suites (outage, cli) rely on it:
# the assertion helpers fail when they must, a token can be initialised on
# the module named by $1, and p11-kit server exports it to p11-kit-client.so
# and is stopped by PID.
#
#   common_selftest.sh keytier|softhsm2
set -euo pipefail
. "${KT_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/common.sh"

[ $# -eq 1 ] || kt_fail "usage: $0 keytier|softhsm2"
kt_tmpdir
kt_module_use "$1"

# must_fail DESCRIPTION COMMAND...: COMMAND (a helper run in a subshell)
# must exit non-zero; used to prove the assertion helpers can fail.
must_fail()
{
    local what=$1
    shift
    if ("$@") 2>/dev/null; then
        kt_fail "helper did not fail: $what"
    fi
}

assert_eq a a
must_fail "assert_eq a b" assert_eq a b
assert_contains "hello world" "lo wo"
must_fail "assert_contains" assert_contains "hello" "bye"
assert_not_contains "hello" "bye"
must_fail "assert_not_contains" assert_not_contains "hello" "ell"
expect_fail "boom" sh -c 'echo boom; exit 3'
must_fail "expect_fail on success" expect_fail "boom" sh -c 'echo boom'
must_fail "expect_fail, wrong message" expect_fail "boom" sh -c 'echo boo; exit 1'
must_fail "expect_fail, partial line" expect_fail "boo" sh -c 'echo boom; exit 1'
expect_ok true
must_fail "expect_ok on failure" expect_ok false

# The config files land in the temp dir, not in $HOME or /etc.
case $1 in
keytier)
    assert_eq "$KT_TMP/keytier/keytier.conf" "$KEYTIER_CONF" KEYTIER_CONF
    grep -qx 'pin_kdf_cost = 10' "$KEYTIER_CONF" || kt_fail "pin_kdf_cost"
    ;;
softhsm2)
    assert_eq "$KT_TMP/softhsm2/softhsm2.conf" "$SOFTHSM2_CONF" SOFTHSM2_CONF
    grep -qx "directories.tokendir = $KT_TMP/softhsm2/tokens" \
        "$SOFTHSM2_CONF" || kt_fail "tokendir in $SOFTHSM2_CONF"
    ;;
esac

kt_token_init remote 87654321 1234
kt_p11 --token-label remote --login --pin 1234 --keygen --key-type AES:32 \
    --label k >/dev/null 2>&1 || kt_fail "keygen on the local token"

kt_server_start "$KT_P11_MODULE" remote
case $P11_KIT_SERVER_ADDRESS in
unix:path=$KT_TMP/*) ;;
*) kt_fail "P11_KIT_SERVER_ADDRESS=$P11_KIT_SERVER_ADDRESS" ;;
esac
kt_pid_alive "$P11_KIT_SERVER_PID" || kt_fail "server PID not running"
expect_ok pkcs11-tool --module "$P11KIT_CLIENT_MODULE" -L
assert_contains "$KT_LAST_OUTPUT" "token label        : remote" "remote -L"
expect_ok pkcs11-tool --module "$P11KIT_CLIENT_MODULE" --token-label remote \
    --login --pin 1234 --list-objects --type secrkey
assert_contains "$KT_LAST_OUTPUT" "label:      k" "remote -O"

pid=$P11_KIT_SERVER_PID
local_module=$KT_P11_MODULE
kt_use_remote
expect_ok kt_p11 --token-label remote -I
kt_server_freeze "$pid"
# A frozen server: the client hangs, so bound the call.
rc=0
timeout 2 pkcs11-tool --module "$P11KIT_CLIENT_MODULE" -L >/dev/null 2>&1 || rc=$?
assert_eq 124 "$rc" "pkcs11-tool on a frozen server (timeout's status)"
kt_server_thaw "$pid"
expect_ok kt_p11 -L
kt_server_freeze "$pid"
kt_server_stop "$pid" || kt_fail "server $pid still running after stop"
KT_P11_MODULE=$local_module
if kt_pid_alive "$pid"; then kt_fail "server $pid survived"; fi

# A crashed server (SIGKILL): gone at once, clients fail.
kt_server_start "$KT_P11_MODULE" remote
pid=$P11_KIT_SERVER_PID
kt_server_crash "$pid"
sleep 0.2
if kt_pid_alive "$pid"; then kt_fail "crashed server $pid alive"; fi
expect_fail "No slots." pkcs11-tool --module "$P11KIT_CLIENT_MODULE" -L
kt_log PASS
