# Shared setup of the 'cli' suite, sourced after tests/common.sh.
#
#   cli_setup            temp dir, keytier module config, KEYTIER_MODULE
#   cli_tokens           tokens vault-a, vault-b, svc on keytier's module
#                        (user PIN $PIN), AES roots root-a / root-b whose
#                        URIs are in $URI_A / $URI_B, and the library
#                        config $KEYTIER_LIB_CONF naming them
#   kt ARGS...           runs the keytier CLI under test
#
# Environment (meson): KT_CLI (the keytier binary), KT_MODULE.

cli_setup()
{
    kt_tmpdir
    [ -n "${KT_CLI:-}" ] || kt_fail "KT_CLI is not set"
    [ -n "${KT_MODULE:-}" ] || kt_fail "KT_MODULE is not set"
    kt_keytier_conf "$KT_TMP/module"
    export KEYTIER_MODULE=$KT_MODULE
    unset KEYTIER_LIB_CONF
    PIN=4711-user
    SO_PIN=0815-security
    export PIN SO_PIN
}

kt()
{
    "$KT_CLI" "$@"
}

cli_tokens()
{
    local t
    for t in vault-a vault-b svc; do
        kt token init --label "$t" --so-pin-env SO_PIN --pin-env PIN \
            >/dev/null || kt_fail "token init $t"
    done
    URI_A=$(kt token keygen --token vault-a --label root-a --type aes256 \
        --pin-env PIN) || kt_fail "keygen root-a"
    URI_B=$(kt token keygen --token vault-b --label root-b --type aes256 \
        --pin-env PIN) || kt_fail "keygen root-b"
    export URI_A URI_B
    # not in $(...): the database's drop is registered in this shell
    kt_store_conf "$KT_TMP/store/keytier.db" >"$KT_TMP/store.conf"
    cat >"$KT_TMP/lib.conf" <<CONF
module = $KT_MODULE
service_token = pkcs11:token=svc
$(cat "$KT_TMP/store.conf")
pin.vault-a = env:PIN
pin.vault-b = env:PIN
pin.svc = env:PIN
log_file = $KT_TMP/lib.log
CONF
    export KEYTIER_LIB_CONF=$KT_TMP/lib.conf
}

# jf FILTER: a field of the JSON document on stdin (jq -r FILTER).
jf()
{
    jq -er "$1"
}

# expect_rc CODE COMMAND...: runs COMMAND, asserts its exit status; the
# combined output is in KT_LAST_OUTPUT.
expect_rc()
{
    local want=$1 rc=0
    shift
    KT_LAST_OUTPUT=$("$@" 2>&1) || rc=$?
    [ "$rc" -eq "$want" ] ||
        kt_fail "'$*' exited $rc, expected $want; output: $KT_LAST_OUTPUT"
}

# pid_alive PID: true if PID runs (not a zombie). Reads /proc directly:
# `ps` under the sanitizer build's LD_PRELOAD=libasan can hang on a futex.
pid_alive()
{
    local stat rest
    [ -r "/proc/$1/stat" ] || return 1
    read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
    rest=${stat##*) }
    [ "${rest:0:1}" != Z ]
}

# flip_byte FILE OFFSET: overwrites the byte at OFFSET
# with 0x55 (or 0xaa if it already is 0x55), without dd (which aborts under
# the sanitizer build's LD_PRELOAD).
flip_byte()
{
    local f=$1 off=$2 old new
    old=$(od -An -tx1 -j "$off" -N1 "$f" | tr -d ' ')
    if [ "$old" = 55 ]; then new='\xaa'; else new='\x55'; fi
    {
        head -c "$off" "$f"
        printf "$new"
        tail -c +$((off + 2)) "$f"
    } >"$f.flip"
    mv "$f.flip" "$f"
}
