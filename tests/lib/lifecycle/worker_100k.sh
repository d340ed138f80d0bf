#!/usr/bin/env bash
# The migration of KT_WORKER_KEYS mailbox keys (100,000 in the plain build)
# run by three `keytier worker` processes on one store, one of them
# SIGKILLed twice during the run and started again: the migration ends
# complete with every key exactly once under the new DEP (none left under
# the old, no name twice, the count exact) and the item sealed under each
# key before the migration opening under it.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
echo "approval.required = no" >>"$KEYTIER_LIB_CONF"
w=$KT_TMP
N=${KT_WORKER_KEYS:-100000}
# Long enough for a batch on a loaded machine: a lease that runs out
# under a live worker costs its batch (taken over, written once by the
# other), never a key.
LEASE_MS=10000
items() { kt_own "$KT_WORKER_ITEMS" "$@"; }
keygen() { kt token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN; }
URI_A2=$(keygen vault-a root-a2) || kt_fail "keygen root-a2"
URI_B2=$(keygen vault-b root-b2) || kt_fail "keygen root-b2"

kt_log "$N mailboxes with an item each under DEP 1"
t0=$SECONDS
dep1=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create 1"
items make acme Exchange "$dep1" "$N" "$w/items" || kt_fail "items"
kt_log "made in $((SECONDS - t0)) s"
dep2=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A2" \
    --key-b "$URI_B2" | jf .dep_id) || kt_fail "dep create 2"
mig=$(kt --json assign --tenant acme --all --dep "$dep2" | jf .migration_id) ||
    kt_fail "assign"
status() { kt --json migrate --tenant acme --status "$mig" | jf "$1"; }
assert_eq "$N" "$(status .total)"

# start_worker I: worker I in the background, its JSON lines appended to
# w$I.out; its PID in pids[I].
declare -a pids
start_worker()
{
    "$KT_CLI" --json worker --batch 500 --lease-ms "$LEASE_MS" --poll-ms 200 \
        >>"$w/w$1.out" 2>>"$w/w$1.err" &
    pids[$1]=$!
}
stop_workers()
{
    local i
    for i in 1 2 3; do
        [ -n "${pids[$i]:-}" ] && kill -TERM "${pids[$i]}" 2>/dev/null || true
    done
}
kt_on_exit stop_workers
# wait_done N: until the migration has at least N keys done (10 min at
# most; each look is a CLI process, so once a second).
wait_done()
{
    local d
    for _ in $(seq 1 600); do
        d=$(status .done)
        [ "$d" -ge "$1" ] && return 0
        for i in 1 2 3; do
            pid_alive "${pids[$i]}" || kt_fail "worker $i died: $(cat "$w/w$i.err")"
        done
        sleep 1
    done
    kt_fail "only $d of $1 keys done after 10 minutes"
}

kt_log "three workers; worker 1 SIGKILLed at a quarter and at half, started again each time"
t0=$SECONDS
for i in 1 2 3; do start_worker "$i"; done
for frac in 4 2; do
    wait_done $((N / frac))
    kill -KILL "${pids[1]}"
    wait "${pids[1]}" 2>/dev/null || true
    kt_log "worker 1 killed at $(status .done) of $N done"
    start_worker 1
done
for _ in $(seq 1 600); do
    [ "$(status .finished)" = true ] && break
    sleep 1
done
assert_eq true "$(status .finished)" "migration finished"
secs=$((SECONDS - t0))
kt_log "migration finished in $secs s"
for i in 1 2 3; do
    kill -TERM "${pids[$i]}"
    rc=0
    wait "${pids[$i]}" || rc=$?
    assert_eq 0 "$rc" "worker $i exit after SIGTERM: $(tail -3 "$w/w$i.err")"
done
pids=()
assert_eq "$N" "$(status .done)"
assert_eq "$N" "$(status .total)"
all=$(cat "$w/w1.out" "$w/w2.out" "$w/w3.out")
moved=$(jq -s '[.[] | select(.event == "migration batch") | .moved] | add' <<<"$all")
taken=$(jq -s '[.[] | select(.event == "migration batch") | .taken_over] | add' <<<"$all")
lost=$(jq -s '[.[] | select(.event == "migration batch") | .lost] | add' <<<"$all")
completed=$(jq -s '[.[] | select(.event == "migration completed")] | length' <<<"$all")
kt_log "batches reported $moved keys moved, $taken taken over after a kill, $lost lost"
# A killed worker may die after its commit and before its line: never more.
[ "$moved" -le "$N" ] || kt_fail "$moved keys reported moved, more than $N"
assert_eq 1 "$completed" "workers that finished the migration"
for i in 2 3; do
    [ "$(jq -s '[.[] | select(.event == "migration batch")] | length' <"$w/w$i.out")" -gt 0 ] ||
        kt_fail "worker $i ran no batch: the three did not share the run"
done

kt_log "every key once under the new DEP, every item readable"
expect_ok items check acme Exchange "$dep1" "$dep2" "$N" "$w/items"
assert_eq "ok $N" "$KT_LAST_OUTPUT"
