#!/usr/bin/env bash
# keytier health and keytier stats in a real outage (run by outage.sh,
# which serves vaults A and B from two `p11-kit server` processes): vault A
# frozen (SIGSTOP) shows as unreachable with "timeout" and the check still
# ends within its bound (no probe waits longer than one call deadline);
# both vaults frozen, a reading process falls back to the availability key
# and its published counters say so (fallbacks, token errors) to another
# process, while health says degraded (the service token answers, no DEP
# is dark); vault B's server killed shows as gone ("system", not a
# timeout).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/outage/cli_env.sh"
DEADLINE_MS=${KT_CLI_DEADLINE_MS:-1500}
outage_cli_setup ops ops "avail.stats_publish_ms = 200"
# the reader started below: killed at exit whatever happens
pub=
trap 'thaw; [ -z "$pub" ] || kill -9 "$pub" 2>/dev/null || true' EXIT

# health_rc WANT: runs `keytier --json health` into h.json, asserts its exit
# status; its wall time in ms in HEALTH_MS.
health_rc()
{
    local rc=0 t0
    t0=$(date +%s%N)
    kt --json health >h.json 2>h.err || rc=$?
    HEALTH_MS=$((($(date +%s%N) - t0) / 1000000))
    [ "$rc" -eq "$1" ] ||
        kt_fail "health exited $rc, expected $1: $(cat h.json h.err)"
}
tok() { jq -r ".tokens[] | select(.token == \"$1\") | $2" h.json; }

kt_log "health: all vaults answer"
health_rc 0
assert_eq "true true true" "$(jq -r '[.tokens[].reachable] | join(" ")' h.json)"

kt_log "health: vault A frozen: unreachable, timeout, within the bound"
kill -STOP "$KT_OUTAGE_PID_A"
health_rc 1
assert_eq false "$(tok VaultA .reachable)"
assert_eq timeout "$(tok VaultA .class)" "$(cat h.json)"
assert_eq true "$(tok VaultB .reachable)"
assert_eq 1 "$(jq -r .deps.degraded h.json)"
# the module start waits one deadline, the probe at most one more
[ "$HEALTH_MS" -lt $((2 * DEADLINE_MS + 1500)) ] ||
    kt_fail "health took $HEALTH_MS ms with one vault frozen (deadline $DEADLINE_MS ms)"
kt_log "health with vault A frozen: $HEALTH_MS ms (deadline $DEADLINE_MS ms)"

kt_log "stats: both frozen, a reader falls back; another process sees it"
kill -STOP "$KT_OUTAGE_PID_B"
mkfifo in.fifo
"$KT_CLI" decrypt --tenant acme --mailbox alice -i in.fifo -o out 2>dec.err &
pub=$!
exec 3>in.fifo
cat ct >&3
ok=
for ((i = 0; i < 120; i++)); do
    if kt --json stats >stats.json 2>/dev/null &&
        jq -e ".nodes[] | select(.pid == $pub) | .counters.fallbacks >= 1 and
            ([.tokens[] | select(.token == \"VaultA\" or .token == \"VaultB\")
              | .errors[]] | add) >= 2" stats.json >/dev/null; then
        ok=1
        break
    fi
    sleep 0.25
done
[ -n "$ok" ] || kt_fail "no published fallback: $(cat stats.json)"
kt stats --prometheus -o ops.prom || kt_fail "stats --prometheus"
out=$(/usr/bin/python3 "$KT_SOURCE_ROOT/tests/cli/prom_check.py" ops.prom \
    "keytier_fallbacks_total:process=$pub") || kt_fail "prom_check"
[[ $out =~ \ [1-9][0-9]*$ ]] || kt_fail "keytier_fallbacks_total: $out"
kt_log "health: both frozen: degraded (the availability key answers)"
health_rc 1
assert_eq "0 1" "$(jq -r '"\(.deps.dark) \(.deps.degraded)"' h.json)"
exec 3>&-
# The reader ends while both vaults are still frozen: a vault answering
# while a process exits races with p11-kit's exit handlers (lib/p11/
# unload.c says why nothing can order that), so the thaw comes after.
wait "$pub" || kt_fail "decrypt in the outage: $(cat dec.err)"
thaw
cmp -s pt out || kt_fail "decrypt gave other bytes"

kt_log "health: vault B's server killed: gone, not a timeout"
kill -9 "$KT_OUTAGE_PID_B"
health_rc 1
assert_eq false "$(tok VaultB .reachable)"
assert_eq system "$(tok VaultB .class)"
assert_eq true "$(tok VaultA .reachable)"
kt_log "ok"
