#!/usr/bin/env bash
# One call deadline per CLI read in an outage (run by outage.sh, which
# serves vaults A and B from two `p11-kit server` processes): with both
# vaults frozen (SIGSTOP) since before the command starts, `keytier
# decrypt` of a mailbox (mail shape) falls back to the availability key.
# Its module start waits out the deadline once; the read then finds the
# vaults already known hung in this process and does not wait again, and
# the close does not wait for the hung calls.  Asserted: the read succeeds
# with the fallback audited, and the whole command takes less than two
# deadlines and a third (it took three deadlines when start, read and
# close each waited one out); the ThreadSanitizer build gives a longer
# deadline (tests/outage/meson.build), so the command's own work, several
# times slower there, fits in the third.
#   KT_CLI_READ_TIMES=N  prints N timed reads instead, asserting only that
#                        each succeeds (tools/bench/cli_outage.sh)
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/outage/cli_env.sh"
DEADLINE_MS=${KT_CLI_DEADLINE_MS:-3000}
outage_cli_setup cli cli

kill -STOP "$KT_OUTAGE_PID_A" "$KT_OUTAGE_PID_B"
# One timed read; its wall time in ms on stdout.
timed_read()
{
    local t0 t1
    rm -f "$dir/out"
    t0=$(date +%s%N)
    kt decrypt --tenant acme --mailbox alice -i "$dir/ct" -o "$dir/out" \
        >"$dir/read.err" 2>&1 || kt_fail "decrypt in the outage: $(cat "$dir/read.err")"
    t1=$(date +%s%N)
    cmp -s "$dir/pt" "$dir/out" || kt_fail "decrypt gave other bytes"
    echo $(((t1 - t0) / 1000000))
}
if [ -n "${KT_CLI_READ_TIMES:-}" ]; then # tools/bench/cli_outage.sh
    for ((i = 1; i <= KT_CLI_READ_TIMES; i++)); do
        echo "run $i: $(timed_read) ms (deadline $DEADLINE_MS ms)"
    done
    exit 0
fi
ms=$(timed_read)
kt_log "keytier decrypt with both vaults frozen: $ms ms (deadline $DEADLINE_MS ms)"
[ "$ms" -lt $((2 * DEADLINE_MS + DEADLINE_MS / 3)) ] ||
    kt_fail "decrypt took $ms ms: more than 2 1/3 x the deadline ($DEADLINE_MS ms)"
# the read itself fell back (audited)
grep -q "Fallback to availability key" "$dir/store.db.audit.jsonl" ||
    kt_fail "no fallback record in $dir/store.db.audit.jsonl"
