#!/usr/bin/env bash
# keytier worker on keytier's module: SIGTERM mid-migration exits 0 and
# leaves no claim behind (a second worker whose claims would be blocked
# for an hour by any left finishes the migration at once), every key then
# once under the new DEP and every item readable; a roll a killed process
# left half done is finished by a worker pass (a live one left alone) and,
# by three workers at once, settled and recorded once; a
# keyset due for rollover is rolled over once by two workers at once;
# options are checked.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
echo "approval.required = no" >>"$KEYTIER_LIB_CONF"
w=$KT_TMP
# The configuration naming the store the test environment made (SQLite or
# PostgreSQL): kt_sql writes the rows a killed roll leaves there.
conf=$KEYTIER_LIB_CONF
items() { kt_own "$KT_WORKER_ITEMS" "$@"; }
keygen() { kt token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN; }
URI_A2=$(keygen vault-a root-a2) || kt_fail "keygen root-a2"
URI_B2=$(keygen vault-b root-b2) || kt_fail "keygen root-b2"
URI_A3=$(keygen vault-a root-a3) || kt_fail "keygen root-a3"
N=3000

kt_log "usage errors"
expect_rc 2 kt worker --batch 0
assert_contains "$KT_LAST_OUTPUT" "--batch: a number from 1 to 100000, not '0'"
expect_rc 2 kt worker --lease-ms 999
expect_rc 2 kt worker --poll-ms x
expect_rc 2 kt worker extra
expect_ok kt worker --help
assert_contains "$KT_LAST_OUTPUT" "usage: keytier worker [--once]"

kt_log "nothing to do: one pass, exit 0"
expect_ok kt worker --once
assert_contains "$KT_LAST_OUTPUT" "pass done"

kt_log "$N mailboxes with an item each under DEP 1, assigned to DEP 2"
dep1=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create 1"
items make acme Exchange "$dep1" "$N" "$w/items" || kt_fail "items"
dep2=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A2" \
    --key-b "$URI_B2" | jf .dep_id) || kt_fail "dep create 2"
mig=$(kt --json assign --tenant acme --all --dep "$dep2" | jf .migration_id) ||
    kt_fail "assign"
status() { kt --json migrate --tenant acme --status "$mig" | jf "$1"; }
assert_eq "$N" "$(status .total)"

kt_log "SIGTERM during the run: exit 0 after its batch, no claim left behind"
"$KT_CLI" worker --batch 1 --lease-ms 3600000 >"$w/w1.out" 2>"$w/w1.err" &
pid=$!
for _ in $(seq 1 300); do
    grep -q "moved" "$w/w1.out" 2>/dev/null && break
    sleep 0.05
done
grep -q "moved" "$w/w1.out" || kt_fail "no batch in 15 s: $(cat "$w/w1.err")"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
assert_eq 0 "$rc" "worker exit after SIGTERM: $(cat "$w/w1.err")"
assert_contains "$(cat "$w/w1.err")" "stopped by a signal, claims released"
done1=$(status .done)
[ "$done1" -gt 0 ] && [ "$done1" -lt "$N" ] ||
    kt_fail "after SIGTERM $done1 of $N done: the worker was not stopped mid-run"
assert_eq false "$(status .finished)"
# Any claim the stopped worker kept would hold its item for an hour: this
# pass could then not finish the migration.
expect_ok kt --json worker --once --lease-ms 3600000
moved=$(jq -s '[.[] | select(.event == "migration batch") | .moved] | add' <<<"$KT_LAST_OUTPUT")
assert_eq "$((N - done1))" "$moved" "keys the second worker moved"
assert_eq 0 "$(jq -s '[.[] | .taken_over] | add' <<<"$KT_LAST_OUTPUT")"
assert_eq 1 "$(jq -s '[.[] | select(.event == "migration completed")] | length' <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(status .finished)"
assert_eq "$N" "$(status .done)"
expect_ok items check acme Exchange "$dep1" "$dep2" "$N" "$w/items"
assert_eq "ok $N" "$KT_LAST_OUTPUT"
expect_ok kt audit list --activity "Migration completed"
assert_eq 1 "$(grep -c "$dep2" <<<"$KT_LAST_OUTPUT")"

kt_log "a roll killed after storing its new copy: a worker pass finishes it"
dep3=$(kt --json dep create --tenant beta --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create 3"
expect_ok kt mailbox create --tenant beta --dep "$dep3" bob
printf 'bob data' >"$w/plain"
expect_ok kt encrypt --tenant beta --mailbox bob -i "$w/plain" -o "$w/bob.kt"
# dead_roll URI: the rows a roll of key A to URI killed after storing its
# new copy leaves (started long ago): a real roll, its new copy moved back
# into the roll journal and the old copy restored (the row before the roll
# kept in a table of the store's own, on either engine).
old() { echo "(SELECT $1 FROM old_root)"; }
dead_roll()
{
    kt_sql "$conf" "CREATE TABLE old_root AS SELECT uri, mech, wrapped, ident FROM dep_roots WHERE dep_id = '$dep3' AND slot = 0" ||
        kt_fail "old row"
    expect_ok kt dep roll --tenant beta --key a --new-key "$1" "$dep3"
    kt_sql "$conf" "INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, ident, started) SELECT dep_id, 0, uri, mech, wrapped, ident, 1 FROM dep_roots WHERE dep_id = '$dep3' AND slot = 0;
UPDATE dep_roots SET uri = $(old uri), mech = $(old mech), wrapped = $(old wrapped), ident = $(old ident) WHERE dep_id = '$dep3' AND slot = 0;
UPDATE deps SET state = 2 WHERE dep_id = '$dep3';
DROP TABLE old_root;" || kt_fail "journal rows"
}
dead_roll "$URI_A3"
assert_eq rolling "$(kt --json dep show "$dep3" | jf .state)"
expect_ok kt --json worker --once
assert_eq 1 "$(jq -s "[.[] | select(.event == \"DEP settled\" and .id == \"$dep3\")] | length" <<<"$KT_LAST_OUTPUT")"
assert_eq registered "$(kt --json dep show "$dep3" | jf .state)"
assert_eq "$URI_A3" "$(kt --json dep show "$dep3" | jf .roots.a.uri)"
expect_ok kt audit list --activity "Customer key roll resumed"
assert_eq 1 "$(grep -c "$dep3" <<<"$KT_LAST_OUTPUT")"
expect_ok kt decrypt --tenant beta --mailbox bob -i "$w/bob.kt" -o "$w/out"
cmp -s "$w/plain" "$w/out" || kt_fail "bob's data differs after the roll"

kt_log "a live roll (started now) is left alone"
kt_sql "$conf" "INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, ident, started) SELECT dep_id, 0, uri, mech, wrapped, ident, $(date +%s) FROM dep_roots WHERE dep_id = '$dep3' AND slot = 0;
UPDATE deps SET state = 2 WHERE dep_id = '$dep3';" || kt_fail "live roll rows"
expect_ok kt --json worker --once
assert_eq 0 "$(jq -s '[.[] | select(.event == "DEP settled")] | length' <<<"$KT_LAST_OUTPUT")"
assert_eq rolling "$(kt --json dep show "$dep3" | jf .state)"
kt_sql "$conf" "DELETE FROM dep_roll WHERE dep_id = '$dep3'; UPDATE deps SET state = 1 WHERE dep_id = '$dep3';"

kt_log "one dead roll, three workers at once: one settles it, one record"
URI_A4=$(keygen vault-a root-a4) || kt_fail "keygen root-a4"
dead_roll "$URI_A4"
# The store's write lock held while the three start: each reads the dead
# roll, proves its copy and waits at its first write, so that they all
# settle it at the same moment once the lock is let go.
# (SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory lock every write
# transaction of the store takes, KT_PG_TX_LOCK in lib/store/store_pg.c)
store=$(sed -n 's/^store = //p' "$conf")
case $store in
postgres://* | postgresql://* | *=*)
    coproc HOLD { psql -qAt "$store"; }
    echo "BEGIN; SELECT 'held' FROM (SELECT pg_advisory_xact_lock(7020644312278386)) l;" >&"${HOLD[1]}" ;;
*)
    coproc HOLD { sqlite3 "$store"; }
    echo "BEGIN IMMEDIATE; SELECT 'held';" >&"${HOLD[1]}" ;;
esac
read -r held <&"${HOLD[0]}"
assert_eq held "$held"
for i in 1 2 3; do
    "$KT_CLI" --json worker --once >"$w/s$i.out" 2>"$w/s$i.err" &
    spid[$i]=$!
done
sleep 3
echo "COMMIT;" >&"${HOLD[1]}"
exec {HOLD[1]}>&-
for i in 1 2 3; do
    wait "${spid[$i]}" || kt_fail "settling worker $i: $(cat "$w/s$i.err")"
done
assert_eq 1 "$(cat "$w/s1.out" "$w/s2.out" "$w/s3.out" | jq -s "[.[] | select(.event == \"DEP settled\" and .id == \"$dep3\")] | length")" \
    "settlers: $(cat "$w"/s?.out "$w"/s?.err)"
assert_eq registered "$(kt --json dep show "$dep3" | jf .state)"
assert_eq "$URI_A4" "$(kt --json dep show "$dep3" | jf .roots.a.uri)"
expect_ok kt audit list --activity "Customer key roll resumed"
assert_eq 2 "$(grep -c "$dep3" <<<"$KT_LAST_OUTPUT")" "roll resumed records of $dep3 (the first roll's and this one's)"

kt_log "a keyset due for rollover: rolled over once by two workers at once"
expect_ok kt secret create --keyset conn --root "$URI_A" --rollover-after 3600 \
    --retire-after 0
expect_ok kt worker --once
assert_eq 1 "$(kt --json secret show --keyset conn | jf .current_version)"
kt_sql "$conf" "UPDATE keyset_keys SET created = created - 3600 WHERE name = 'conn' AND state = 0" ||
    kt_fail "aging conn"
kt --json worker --once >"$w/k1" 2>"$w/k1.err" &
p1=$!
kt --json worker --once >"$w/k2" 2>"$w/k2.err" &
p2=$!
wait "$p1" || kt_fail "worker 1: $(cat "$w/k1.err")"
wait "$p2" || kt_fail "worker 2: $(cat "$w/k2.err")"
assert_eq 1 "$(cat "$w/k1" "$w/k2" | jq -s '[.[] | select(.event == "keysets") | .rolled] | add')"
assert_eq 2 "$(kt --json secret show --keyset conn | jf .current_version)"
assert_eq 1 "$(kt --json audit list | jq -c 'select(.Activity == "Keyset rollover" and .Keyset == "conn")' | wc -l)"
