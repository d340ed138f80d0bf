#!/usr/bin/env bash
# encrypt/decrypt stream in constant memory: a 256 MiB file through both,
# peak resident memory (GNU time -v) under 64 MiB each, output identical.
# (A memory bound, never a time bound.)
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id)
kt mailbox create --tenant acme --dep "$dep" alice >/dev/null
cd "$KT_TMP"
size_mib=${KT_CLI_MEMORY_MIB:-256}
limit_kib=$((64 * 1024))
head -c $((size_mib << 20)) /dev/urandom >big
peak_kib()
{
    sed -n 's/^\tMaximum resident set size (kbytes): //p' "$1"
}
kt_log "encrypt $size_mib MiB"
/usr/bin/time -v -o time-enc "$KT_CLI" encrypt --tenant acme --mailbox alice -i big -o big.ct ||
    kt_fail "encrypt: $(cat time-enc)"
kt_log "decrypt $size_mib MiB"
/usr/bin/time -v -o time-dec "$KT_CLI" decrypt --tenant acme --mailbox alice -i big.ct -o big.out ||
    kt_fail "decrypt: $(cat time-dec)"
cmp -s big big.out || kt_fail "decrypted file differs"
enc=$(peak_kib time-enc)
dec=$(peak_kib time-dec)
kt_log "peak RSS: encrypt $enc KiB, decrypt $dec KiB (limit $limit_kib KiB)"
[ -n "$enc" ] && [ "$enc" -lt "$limit_kib" ] || kt_fail "encrypt peak RSS $enc KiB >= 64 MiB"
[ -n "$dec" ] && [ "$dec" -lt "$limit_kib" ] || kt_fail "decrypt peak RSS $dec KiB >= 64 MiB"
kt_log "decrypt to a pipe"
/usr/bin/time -v -o time-pipe bash -c '"$KT_CLI" decrypt --tenant acme --mailbox alice -i big.ct | cmp -s - big' ||
    kt_fail "decrypt to a pipe differs"
kt_log "ok"
