#!/usr/bin/env bash
# keytier health and keytier stats (docs/DESIGN.md §2 "Operations"):
# counters a reading process publishes, read from other processes (they
# rise with its reads and its cache's refreshes; a clean close withdraws
# them; a killed process's go stale); --prometheus checked by the
# Prometheus client's parser and tests/cli/prom_check.py's rules; -o
# replaces its file whole (never seen half written); health's exit codes
# each reached by a real condition: 0 all well, 1 a configured token that
# is not there and a killed publisher, 2 the audit log altered, the store
# not a database, every token of a DEP gone, 3 an unusable configuration.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
cat >>"$KEYTIER_LIB_CONF" <<CONF
avail.stats_publish_ms = 200
avail.cache_ttl_ms = 4000
avail.call_deadline_ms = 500
avail.hedge_ms = 100
avail.cache_refresh_ahead_ms = 2000
CONF
cd "$KT_TMP" || kt_fail "cd"
dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create"
kt mailbox create --tenant acme --dep "$dep" alice >/dev/null ||
    kt_fail "mailbox create"
head -c 20000 /dev/urandom >pt
kt encrypt --tenant acme --mailbox alice -i pt -o ct || kt_fail "encrypt"

# wait_stats JQ SECONDS: polls `keytier --json stats` (into stats.json)
# until JQ holds.
wait_stats()
{
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        if kt --json stats >stats.json 2>stats.err &&
            jq -e "$1" stats.json >/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    kt_fail "stats never showed $1: $(cat stats.json stats.err)"
}

# publisher NAME: a `keytier decrypt` of ct reading a FIFO whose writer
# (fd 3 or 4) stays open: it has read the key and runs until the writer
# closes. Its PID in PUB.
publisher()
{
    mkfifo "$1.fifo"
    "$KT_CLI" decrypt --tenant acme --mailbox alice -i "$1.fifo" -o "$1.out" \
        2>"$1.err" &
    PUB=$!
    kt_on_exit "kill -9 $PUB 2>/dev/null"
}

kt_log "health: healthy"
expect_rc 0 kt health
assert_contains "$KT_LAST_OUTPUT" "status: healthy"
assert_contains "$KT_LAST_OUTPUT" "token vault-a (customer,configured, 1 DEPs): reachable"
kt --json health >h.json || kt_fail "health --json exit $?"
assert_eq healthy "$(jf .status <h.json)"
assert_eq 0 "$(jf .exit <h.json)"
assert_eq true "$(jf .store.reachable <h.json)"
assert_eq 12 "$(jf .store.schema <h.json)"
assert_eq intact "$(jf .audit.state <h.json)"
assert_eq 1 "$(jf .deps.total <h.json)"
assert_eq "true true true" "$(jq -r '[.tokens[] | .reachable] | join(" ")' h.json)"
assert_eq "availability,service,configured" \
    "$(jq -r '.tokens[] | select(.token == "svc") | .roles' h.json)"

kt_log "stats: a reading process's counters, read by another"
publisher one
exec 3>one.fifo
cat ct >&3
wait_stats ".nodes[] | select(.pid == $PUB) | .counters.token_reads >= 1 and .counters.cache_misses >= 1" 15
calls1=$(jq -r ".nodes[] | select(.pid == $PUB) | [.tokens[].calls] | add" stats.json)
[ "$calls1" -ge 1 ] || kt_fail "no token call counted: $(cat stats.json)"
assert_eq "$(hostname)" "$(jq -r ".nodes[] | select(.pid == $PUB) | .node" stats.json)"
assert_eq 200 "$(jq -r ".nodes[] | select(.pid == $PUB) | .interval_ms" stats.json)"
kt_log "stats: they rise with the cache's refreshes (customer keys only)"
wait_stats ".nodes[] | select(.pid == $PUB) | .counters.cache_refreshes >= 1 and ([.tokens[].calls] | add) > $calls1" 15
jq -e ".nodes[] | select(.pid == $PUB) | .counters.fallbacks == 0 and
    ([.tokens[].errors[]] | add) == 0 and
    ([.tokens[] | .latency_buckets[-1].calls <= .calls] | all) and
    ([.tokens[].token] - [\"vault-a\", \"vault-b\"] == [])" stats.json \
    >/dev/null || kt_fail "published counters: $(cat stats.json)"

kt_log "stats: text"
expect_ok kt stats
assert_contains "$KT_LAST_OUTPUT" "process $PUB:"
assert_contains "$KT_LAST_OUTPUT" "  token vault-"

kt_log "stats --prometheus: parsed, checked, the reader's figures"
expect_ok kt stats --prometheus -o keytier.prom
[ -z "$KT_LAST_OUTPUT" ] || kt_fail "-o printed: $KT_LAST_OUTPUT"
reads=$(/usr/bin/python3 "$KT_SOURCE_ROOT/tests/cli/prom_check.py" keytier.prom \
    "keytier_token_reads_total:process=$PUB") || kt_fail "prom_check"
[[ $reads =~ \ ([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 2 ] ||
    kt_fail "keytier_token_reads_total: $reads"
grep -q "^keytier_token_latency_seconds_bucket{node=\"$(hostname)\",process=\"$PUB\",token=\"vault-[ab]\",le=\"+Inf\"} [1-9]" keytier.prom ||
    kt_fail "no latency histogram of the reader: $(cat keytier.prom)"
kt_log "stats: a broken exposition is refused by the check"
sed '0,/^keytier_cache_hits_total/s//keytier_cache_hits/' keytier.prom >bad.prom
/usr/bin/python3 "$KT_SOURCE_ROOT/tests/cli/prom_check.py" bad.prom 2>/dev/null &&
    kt_fail "prom_check took a counter sample outside its family"

kt_log "stats -o: the file replaced whole, never seen half written"
ino1=$(stat -c %i keytier.prom)
expect_ok kt stats --prometheus -o keytier.prom
[ "$(stat -c %i keytier.prom)" != "$ino1" ] || kt_fail "-o rewrote the file in place"
(for i in $(seq 15); do kt stats --prometheus -o keytier.prom || exit 1; done) &
writer=$!
seen=0
while kill -0 "$writer" 2>/dev/null; do
    cp keytier.prom snap.prom
    grep -q '^keytier_token_latency_seconds_count' snap.prom &&
        [ "$(tail -c 1 snap.prom | od -An -c | tr -d ' ')" = '\n' ] ||
        kt_fail "a reader saw a partial file: $(tail -c 200 snap.prom)"
    seen=$((seen + 1))
done
wait "$writer" || kt_fail "stats -o failed while rewriting"
[ "$seen" -ge 3 ] || kt_fail "only $seen reads during the rewrites"
compgen -G ".keytier.prom.keytier-*" >/dev/null && kt_fail "temp file left"
expect_rc 7 kt stats --prometheus -o "$KT_TMP/none/keytier.prom"
expect_rc 2 kt --json stats --prometheus

kt_log "stats: a clean close withdraws the row"
exec 3>&-
wait "$PUB" || kt_fail "decrypt from the FIFO: $(cat one.err)"
cmp -s pt one.out || kt_fail "decrypt gave other bytes"
kt --json stats >stats.json || kt_fail "stats"
jq -e "[.nodes[] | select(.pid == $PUB)] == []" stats.json >/dev/null ||
    kt_fail "a closed process's counters stayed: $(cat stats.json)"

kt_log "health: degraded: a configured token that is not there"
cp "$KEYTIER_LIB_CONF" ghost.conf
echo "pin.ghost = env:PIN" >>ghost.conf
expect_rc 1 kt --config ghost.conf health
assert_contains "$KT_LAST_OUTPUT" "status: degraded"
assert_contains "$KT_LAST_OUTPUT" "token ghost (configured, 0 DEPs): UNREACHABLE"
assert_contains "$KT_LAST_OUTPUT" "why: token 'ghost' unreachable"

kt_log "health: degraded: a killed publisher's counters go stale"
publisher two
exec 4>two.fifo
head -c 100 ct >&4
wait_stats ".nodes[] | select(.pid == $PUB) | .counters.token_reads >= 1" 15
kill -9 "$PUB"
exec 4>&-
sleep 1.7 # three intervals of 200 ms and a second
expect_rc 1 kt health
assert_contains "$KT_LAST_OUTPUT" "process $PUB: counters"
assert_contains "$KT_LAST_OUTPUT" "hung or killed"
kt --json stats >stats.json
assert_eq true "$(jq -r ".nodes[] | select(.pid == $PUB) | .stale" stats.json)"

if [ -z "${KT_TEST_PG:-}" ]; then
    kt_log "stats: a row that is not the library's counters is refused"
    sqlite3 "$KT_TMP/store/keytier.db" "INSERT INTO node_stats VALUES
        ('forged', 'elsewhere', 1, $(date +%s%3N), 200, '{\"avail\": 1}')" ||
        kt_fail "sqlite3 insert"
    expect_rc 1 kt stats
    assert_contains "$KT_LAST_OUTPUT" "node elsewhere, process 1 [KEYTIER_E_OPS_COUNTERS]"
    expect_rc 1 kt health
    assert_contains "$KT_LAST_OUTPUT" "why: published counters unread"
    sqlite3 "$KT_TMP/store/keytier.db" "DELETE FROM node_stats WHERE origin = 'forged'"
fi

kt_log "health: critical: the audit log altered"
log=$KT_TMP/store/keytier.db.audit.jsonl
cp "$log" log.keep
flip_byte "$log" 40
expect_rc 2 kt health
assert_contains "$KT_LAST_OUTPUT" "status: critical"
assert_contains "$KT_LAST_OUTPUT" "why: audit log altered at line 1"
rc=0
kt --json health >h.json || rc=$?
assert_eq 2 "$rc"
assert_eq altered "$(jf .audit.state <h.json)"
cp log.keep "$log"

kt_log "health: critical: the store is not a database"
head -c 8192 /dev/urandom >garbage.db
grep -v '^store = \|^avail.audit_log' "$KEYTIER_LIB_CONF" >garbage.conf
echo "store = $KT_TMP/garbage.db" >>garbage.conf
expect_rc 2 kt --config garbage.conf health
assert_contains "$KT_LAST_OUTPUT" "status: critical"
assert_contains "$KT_LAST_OUTPUT" "keytier health: store unreachable:"
expect_rc 2 kt --config garbage.conf --json health
[ "$(tail -n 1 <<<"$KT_LAST_OUTPUT" | jq -r .error)" = KEYTIER_E_STORE ] ||
    kt_fail "health --json: $KT_LAST_OUTPUT"

kt_log "health: unknown: the configuration is unusable"
expect_rc 3 kt --config "$KT_TMP/none.conf" health
assert_contains "$KT_LAST_OUTPUT" "configuration unusable"
echo "no_such_key = 1" >bad.conf
expect_rc 3 kt --config bad.conf health
expect_rc 3 kt health extra

kt_log "health: critical: every token of the DEP gone"
mv "$KT_TMP/module/tokens" "$KT_TMP/module/tokens.away"
mkdir "$KT_TMP/module/tokens"
expect_rc 2 kt health
assert_contains "$KT_LAST_OUTPUT" "why: DEP $dep: no token of its keys answers"
kt_log "ok"
