#!/usr/bin/env bash
# Reading an audit log as an attacker would feed it: a line with no end,
# a device, a directory, a file that fails to read. A read or allocation
# failure is an error, never the end of the log, and no line is read
# without a bound.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup

kt_log "/dev/zero under a memory limit: line 1 too long, not '0 records, intact'"
# (AddressSanitizer reserves its shadow memory up front and cannot start
# under an address-space limit: there the bound alone is checked.)
limit=400000
ldd "${KT_CLI_BIN:-$KT_CLI}" | grep libasan >/dev/null && limit=unlimited
rc=0
out=$( (ulimit -v $limit && exec "$KT_CLI" audit verify --chain-only --log /dev/zero) 2>&1) || rc=$?
assert_eq 8 "$rc" "exit status; output: $out"
assert_contains "$out" "keytier audit verify: /dev/zero: line 1: audit log altered: line 1 is longer than a record can be (65536 bytes) [KEYTIER_E_AUDIT_TAMPERED]"

kt_log "a 300 MB line is refused at 64 KiB, in bounded memory"
head -c 300000000 /dev/zero | tr '\0' 'a' >"$KT_TMP/long.log"
rc=0
out=$(/usr/bin/time -f "peak-kib %M" "$KT_CLI" audit verify --chain-only \
    --log "$KT_TMP/long.log" 2>&1) || rc=$?
assert_eq 8 "$rc" "exit status; output: $out"
assert_contains "$out" "line 1 is longer than a record can be (65536 bytes)"
peak=$(sed -n 's/^peak-kib //p' <<<"$out")
[ "$peak" -lt 65536 ] || kt_fail "verify of a 300 MB line took $peak KiB"
kt_log "audit list reads with the same bound"
rc=0
out=$(/usr/bin/time -f "peak-kib %M" "$KT_CLI" audit list \
    --log "$KT_TMP/long.log" 2>&1) || rc=$?
rm -f "$KT_TMP/long.log"
assert_eq 8 "$rc" "exit status of audit list; output: $out"
assert_contains "$out" "keytier audit list: audit log $KT_TMP/long.log: line 1 is longer than a record can be (65536 bytes) (run keytier audit verify)"
peak=$(sed -n 's/^peak-kib //p' <<<"$out")
[ "$peak" -lt 65536 ] || kt_fail "audit list of a 300 MB line took $peak KiB"

kt_log "a log that cannot be read is an I/O error (exit 7), not an empty log"
mkdir "$KT_TMP/log.d"
expect_rc 7 kt audit verify --chain-only --log "$KT_TMP/log.d"
assert_contains "$KT_LAST_OUTPUT" "cannot read audit log $KT_TMP/log.d at line 1: Is a directory"

kt_log "a NUL byte inside a record is tampering, named by its line"
cli_tokens
expect_ok kt dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B"
log=$(find "$KT_TMP/store" -name '*.jsonl' | head -n 1)
[ -s "$log" ] || kt_fail "no audit log under $KT_TMP/store"
expect_ok kt audit verify --chain-only --log "$log"
{ head -c 5 "$log" && printf '\0' && tail -c +7 "$log"; } >"$KT_TMP/nul.log"
expect_rc 8 kt audit verify --chain-only --log "$KT_TMP/nul.log"
assert_contains "$KT_LAST_OUTPUT" "line 1 holds a NUL byte"
kt_log "ok"
