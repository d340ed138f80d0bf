#!/usr/bin/env bash
# keytier encrypt | decrypt: mailboxes and site blobs, stdin/stdout and
# files, JSON, request ids, --internal, and the error paths: missing
# mailbox or blob, another key, tampered and truncated input (no
# plaintext, no output file, an existing file untouched, no temp file
# left), unreadable input, unwritable output.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
echo "workload.Files.shape = files" >>"$KEYTIER_LIB_CONF"
dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id)
fdep=$(kt --json dep create --tenant acme --workload Files --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id)
kt mailbox create --tenant acme --dep "$dep" alice >/dev/null
kt mailbox create --tenant acme --dep "$dep" bob >/dev/null
kt site create --tenant acme --dep "$fdep" finance >/dev/null
w=$KT_TMP/work
mkdir "$w"
cd "$w"
# 300 000 bytes: five 64 KiB chunks, the last one partial.
head -c 300000 /dev/urandom >pt
no_temp_left() { ! ls -a "$w" | grep -q '\.keytier-' || kt_fail "a temp file was left: $(ls -a "$w")"; }

kt_log "mailbox: stdin to stdout and back"
kt encrypt --tenant acme --mailbox alice <pt >ct || kt_fail "encrypt stdin"
! cmp -s pt ct || kt_fail "ciphertext equals plaintext"
[ "$(stat -c %s ct)" -gt 300000 ] || kt_fail "envelope shorter than the data"
kt decrypt --tenant acme --mailbox alice <ct >out || kt_fail "decrypt stdin"
assert_files_eq pt out
kt_log "mailbox: -i/-o files, JSON with the request id"
expect_ok kt --json encrypt --tenant acme --mailbox alice -i pt -o ct2 --request-id rq-42
j=$KT_LAST_OUTPUT
assert_eq encrypt "$(jf .operation <<<"$j")"
assert_eq alice "$(jf .mailbox <<<"$j")"
assert_eq "$dep" "$(jf .dep_id <<<"$j")"
assert_eq rq-42 "$(jf .request_id <<<"$j")"
assert_eq ct2 "$(jf .output <<<"$j")"
expect_ok kt --json decrypt --tenant acme --mailbox alice --in ct2 --out out2
assert_files_eq pt out2
[[ $(jf .request_id <<<"$KT_LAST_OUTPUT") =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
    kt_fail "generated request id is not a UUID v4"
kt_log "decrypt --internal"
expect_ok kt --json decrypt --tenant acme --mailbox alice --internal index -i ct -o out3
assert_eq index "$(jf .internal <<<"$KT_LAST_OUTPUT")"
assert_files_eq pt out3
expect_fail "keytier encrypt: --internal is for decrypt (see 'keytier encrypt --help') [KEYTIER_E_ARGS]" \
    kt encrypt --tenant acme --mailbox alice --internal index -i pt -o x
kt_log "empty input"
: >empty
kt encrypt --tenant acme --mailbox alice -i empty -o ct-empty || kt_fail "encrypt empty"
kt decrypt --tenant acme --mailbox alice -i ct-empty -o out-empty || kt_fail "decrypt empty"
assert_files_eq empty out-empty

kt_log "site blobs: a blob key per blob, created on first encryption"
expect_ok kt --json encrypt --tenant acme --site finance --blob q3.xlsx --workload Files -i pt -o blob
bkey=$(jf .key_id <<<"$KT_LAST_OUTPUT")
assert_eq finance "$(jf .site <<<"$KT_LAST_OUTPUT")"
assert_eq q3.xlsx "$(jf .blob <<<"$KT_LAST_OUTPUT")"
expect_ok kt --json encrypt --tenant acme --site finance --blob q3.xlsx --workload Files -i pt -o blob-again
assert_eq "$bkey" "$(jf .key_id <<<"$KT_LAST_OUTPUT")" "same blob, same key"
kt decrypt --tenant acme --site finance --blob q3.xlsx --workload Files -i blob >out4 ||
    kt_fail "decrypt blob"
assert_files_eq pt out4
expect_fail "keytier decrypt: blob 'q4.xlsx' not found in site 'finance' of tenant acme [KEYTIER_E_NOT_FOUND]" \
    kt decrypt --tenant acme --site finance --blob q4.xlsx --workload Files -i blob -o x
expect_rc 6 kt decrypt --tenant acme --site finance --blob q4.xlsx --workload Files -i blob -o x
[ ! -e x ] || kt_fail "output written for a missing blob"

kt_log "missing mailbox or site"
expect_fail "keytier encrypt: mailbox 'ghost' of tenant acme (Exchange): key not found: ghost [KEYTIER_E_NOT_FOUND]" \
    kt encrypt --tenant acme --mailbox ghost -i pt -o ghost.ct
expect_rc 6 kt encrypt --tenant acme --mailbox ghost -i pt -o ghost.ct
[ ! -e ghost.ct ] || kt_fail "output created for a missing mailbox"
expect_fail "keytier decrypt: site 'nosite' of tenant acme (Files): key not found: nosite [KEYTIER_E_NOT_FOUND]" \
    kt decrypt --tenant acme --site nosite --blob b --workload Files -i blob -o x
expect_fail "keytier decrypt: mailbox 'alice' of tenant other (Exchange): key not found: alice [KEYTIER_E_NOT_FOUND]" \
    kt decrypt --tenant other --mailbox alice -i ct -o x

kt_log "another mailbox's key: refused, nothing written"
bob_key=$(kt --json status --tenant acme --mailbox bob | jf .key_id)
expect_fail "keytier decrypt: ct: envelope was sealed under another key: envelope names another key than $bob_key [KEYTIER_E_WRONG_KEY]" \
    kt decrypt --tenant acme --mailbox bob -i ct -o wrong
expect_rc 3 kt decrypt --tenant acme --mailbox bob -i ct -o wrong
[ ! -e wrong ] || kt_fail "output written under the wrong key"

kt_log "tampered input: exit 3, no output file, an existing file untouched"
cp ct bad
flip_byte bad 150000
cmp -s ct bad && kt_fail "tampering changed nothing"
expect_fail "keytier decrypt: bad: authentication failed: data altered or wrong key: chunk 2 of the stream [KEYTIER_E_AUTH]" \
    kt decrypt --tenant acme --mailbox alice -i bad -o tampered.out
expect_rc 3 kt decrypt --tenant acme --mailbox alice -i bad -o tampered.out
[ ! -e tampered.out ] || kt_fail "a failed decrypt created its output file"
echo "previous content" >existing
expect_rc 3 kt decrypt --tenant acme --mailbox alice -i bad -o existing
assert_eq "previous content" "$(cat existing)" "existing output after a failed decrypt"
no_temp_left
kt_log "tampered input to stdout: no plaintext at all, from a file or a pipe"
rc=0
kt decrypt --tenant acme --mailbox alice -i bad >partial 2>err || rc=$?
assert_eq 3 "$rc" "exit"
assert_eq 0 "$(stat -c %s partial)" "plaintext written before the bad chunk"
rc=0
cat bad | kt decrypt --tenant acme --mailbox alice >partial 2>err || rc=$?
assert_eq 3 "$rc" "exit (pipe)"
assert_eq 0 "$(stat -c %s partial)" "plaintext written from a pipe"
kt_log "intact input through a pipe to stdout: the plaintext, spooled as ciphertext"
cat ct | TMPDIR="$PWD" kt decrypt --tenant acme --mailbox alice >piped
cmp -s piped pt || kt_fail "piped decrypt differs from the plaintext"
kt_log "tampered header: no plaintext at all"
cp ct bad-head
flip_byte bad-head 60
rc=0
kt decrypt --tenant acme --mailbox alice -i bad-head >nothing 2>err || rc=$?
assert_eq 3 "$rc" "exit"
assert_eq 0 "$(stat -c %s nothing)" "plaintext from a bad header"
grep -q '^keytier decrypt: bad-head: key commitment mismatch: key .* \[KEYTIER_E_COMMITMENT\]$' err ||
    kt_fail "header error: $(cat err)"
kt_log "truncated input"
head -c 200000 ct >trunc
expect_fail "keytier decrypt: trunc: authentication failed: data altered or wrong key: chunk 3 of the stream [KEYTIER_E_AUTH]" \
    kt decrypt --tenant acme --mailbox alice -i trunc -o trunc.out
[ ! -e trunc.out ] || kt_fail "output from a truncated stream"
kt_log "data appended after the final chunk"
{ cat ct; printf 'extra'; } >appended
expect_rc 3 kt decrypt --tenant acme --mailbox alice -i appended -o app.out
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_AUTH]"
[ ! -e app.out ] || kt_fail "output from a stream with appended data"
no_temp_left

kt_log "unreadable input, unwritable output: exit 7, no partial file"
expect_fail "keytier encrypt: cannot open input nofile: No such file or directory [KEYTIER_E_IO]" \
    kt encrypt --tenant acme --mailbox alice -i nofile -o x
expect_rc 7 kt encrypt --tenant acme --mailbox alice -i nofile -o x
expect_fail "keytier encrypt: cannot write output $w/pt/x: Not a directory [KEYTIER_E_IO]" \
    kt encrypt --tenant acme --mailbox alice -i pt -o "$w/pt/x"
expect_rc 7 kt encrypt --tenant acme --mailbox alice -i pt -o "$w/pt/x"
expect_fail "keytier encrypt: cannot write output $w/nodir/x: No such file or directory [KEYTIER_E_IO]" \
    kt encrypt --tenant acme --mailbox alice -i pt -o "$w/nodir/x"
expect_fail "keytier encrypt: $w: input/output error: read: Is a directory [KEYTIER_E_IO]" \
    kt encrypt --tenant acme --mailbox alice -i "$w" -o failed.ct
expect_rc 7 kt encrypt --tenant acme --mailbox alice -i "$w" -o failed.ct
[ ! -e failed.ct ] || kt_fail "a failed encrypt left its output file"
no_temp_left
expect_rc 7 bash -c '"$KT_CLI" encrypt --tenant acme --mailbox alice -i pt >/dev/full'

kt_log "progress bar on a terminal only"
head -c $((8 << 20)) /dev/urandom >eight
tty_out=$(script -qec "'$KT_CLI' encrypt --tenant acme --mailbox alice -i eight -o eight.ct" /dev/null </dev/null)
assert_contains "$tty_out" "encrypting ["
assert_contains "$tty_out" "] 100% 8/8 MiB"
tty_out=$(script -qec "'$KT_CLI' decrypt --tenant acme --mailbox alice -i eight.ct -o eight.out" /dev/null </dev/null)
assert_contains "$tty_out" "decrypting ["
assert_files_eq eight eight.out
kt encrypt --tenant acme --mailbox alice -i eight -o eight2.ct 2>stderr.txt
assert_eq "" "$(cat stderr.txt)" "stderr when not on a terminal"
tty_out=$(script -qec "'$KT_CLI' --json encrypt --tenant acme --mailbox alice -i eight -o eight3.ct" /dev/null </dev/null)
assert_not_contains "$tty_out" "encrypting [" "progress with --json"

kt_log "usage errors"
expect_fail "keytier encrypt: give --mailbox M or --site S --blob B (see 'keytier encrypt --help') [KEYTIER_E_ARGS]" \
    kt encrypt --tenant acme -i pt -o x
expect_fail "keytier encrypt: --site needs --blob NAME (see 'keytier encrypt --help') [KEYTIER_E_ARGS]" \
    kt encrypt --tenant acme --site finance -i pt -o x
expect_fail "keytier decrypt: --tenant is required (see 'keytier decrypt --help') [KEYTIER_E_ARGS]" \
    kt decrypt --mailbox alice -i ct -o x
expect_fail "keytier decrypt: unknown option or missing value: -o (see 'keytier decrypt --help') [KEYTIER_E_ARGS]" \
    kt decrypt --tenant acme --mailbox alice -o
expect_rc 2 kt decrypt --tenant acme --mailbox alice -o
kt_log "ok"
