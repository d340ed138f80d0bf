#!/usr/bin/env bash
# OpenSC's pkcs11-tool (0.23) drives a PKCS#11 module as a user would.
#
#   pkcs11_tool.sh MODULE GROUP
#
# MODULE is keytier (path in KT_MODULE) or softhsm2 (SOFTHSM2_MODULE); the
# same steps run on both, so a step that passes on SoftHSM2 and fails on
# keytier points at keytier. GROUP is one of the functions named group_*
# below. Every group starts from a fresh token in its own temp dir.
# Results are checked against plain openssl wherever a known key makes
# that possible.
set -euo pipefail
. "${KT_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/common.sh"

[ $# -eq 2 ] || kt_fail "usage: $0 keytier|softhsm2 GROUP"
module=$1 group=$2

SO_PIN=87654321
PIN=123456
LABEL=interop
IV=000102030405060708090a0b0c0d0e0f


# p11u ARGS...: pkcs11-tool on our token, logged in as the user.
p11u()
{
    kt_p11 --token-label "$LABEL" --login --pin "$PIN" "$@"
}

# hex FILE: the file's bytes as one lowercase hex string (openssl -K form).
hex()
{
    od -An -v -tx1 "$1" | tr -d ' \n'
}

# import_key FILE LABEL ID [pkcs11-tool flags...]: writes the raw AES key in
# FILE as a token secret key, so openssl can reproduce what the token does.
import_key()
{
    local file=$1 label=$2 id=$3
    shift 3
    expect_ok p11u --write-object "$file" --type secrkey --key-type AES:32 \
        --label "$label" --id "$id" "$@"
    assert_contains "$KT_LAST_OUTPUT" "Created secret key:" "import $label"
}

# setup_token: a fresh token with user PIN, for every group but 'token'.
setup_token()
{
    kt_token_init "$LABEL" "$SO_PIN" "$PIN"
}

# -L, -I, -M, --init-token, --init-pin, --change-pin.
group_token()
{
    local out slot
    expect_ok kt_p11 -I
    # pkcs11-tool asks for the default interface (C_GetInterface): keytier's
    # is PKCS#11 3.0; SoftHSM2 2.6 has only C_GetFunctionList (2.40).
    if [ "$module" = keytier ]; then
        assert_contains "$KT_LAST_OUTPUT" "Cryptoki version 3.0" "-I"
    else
        assert_contains "$KT_LAST_OUTPUT" "Cryptoki version 2.40" "-I"
    fi

    expect_ok kt_p11 -L
    assert_contains "$KT_LAST_OUTPUT" "token state:   uninitialized" \
        "-L before --init-token"
    slot=$(kt_free_slot)
    kt_log "free slot $slot"

    expect_ok kt_p11 --slot "$slot" --init-token --label "$LABEL" \
        --so-pin "$SO_PIN"
    assert_contains "$KT_LAST_OUTPUT" "Token successfully initialized"

    expect_ok kt_p11 -L
    out=$KT_LAST_OUTPUT
    assert_contains "$out" "token label        : $LABEL" "-L after init"
    assert_contains "$out" "token initialized" "-L flags"
    # PKCS#11 always leaves one free slot with an uninitialised token.
    assert_contains "$out" "token state:   uninitialized" \
        "-L free slot after init"

    expect_ok kt_p11 --token-label "$LABEL" --login --login-type so \
        --so-pin "$SO_PIN" --init-pin --pin "$PIN"
    assert_contains "$KT_LAST_OUTPUT" "User PIN successfully initialized"
    expect_ok kt_p11 -L
    assert_contains "$KT_LAST_OUTPUT" "PIN initialized" "-L after --init-pin"

    expect_ok p11u --change-pin --new-pin 654321
    assert_contains "$KT_LAST_OUTPUT" "PIN successfully changed"
    expect_fail "error: PKCS11 function C_Login failed: rv = CKR_PIN_INCORRECT (0xa0)" \
        p11u -O
    expect_ok kt_p11 --token-label "$LABEL" --login --pin 654321 -O

    expect_ok kt_p11 --token-label "$LABEL" -M
    out=$KT_LAST_OUTPUT
    local m
    for m in "AES-KEY-GEN, keySize={16,32}" "AES-CBC," "AES-CBC-PAD," \
        "AES-ECB," "AES-GCM," "AES-KEY-WRAP," "mechtype-0x210A," \
        "SHA256," "SHA256-HMAC,"; do
        assert_contains "$out" "$m" "-M"
    done
}

# --keygen --key-type AES:32 and --list-objects.
group_keygen()
{
    setup_token
    expect_ok p11u --keygen --key-type AES:32 --label root1 --id 01 \
        --sensitive --private
    assert_contains "$KT_LAST_OUTPUT" "Key generated:"
    expect_ok p11u --keygen --key-type AES:16 --label k128 --id 02
    expect_ok p11u --list-objects
    local out=$KT_LAST_OUTPUT
    assert_contains "$out" "Secret Key Object; AES length 32" "-O"
    assert_contains "$out" "Secret Key Object; AES length 16" "-O"
    assert_contains "$out" "label:      root1" "-O"
    assert_contains "$out" "label:      k128" "-O"
    assert_contains "$out" "ID:         01" "-O"
    # A generated key is local; a sensitive key never shows its value.
    assert_contains "$out" "local" "-O access"
    assert_not_contains "$out" "VALUE:" "-O of sensitive keys"
    assert_contains "$out" "sensitive, always sensitive, never extractable, local" \
        "-O access of root1"
    # Private objects are invisible without login.
    expect_ok kt_p11 --token-label "$LABEL" --list-objects
    assert_not_contains "$KT_LAST_OUTPUT" "root1" "-O without login"
}

# --encrypt/--decrypt with AES-CBC and AES-CBC-PAD, checked against
# `openssl enc` with the same key and IV.
group_crypt()
{
    setup_token
    head -c 32 /dev/urandom >key.bin
    import_key key.bin known 10 --usage-decrypt
    local kh mech len
    kh=$(hex key.bin)
    for len in 16 64 4096; do
        head -c $len /dev/urandom >pt.bin
        expect_ok p11u --encrypt -m AES-CBC --id 10 --iv $IV -i pt.bin -o ct.bin
        openssl enc -aes-256-cbc -K "$kh" -iv $IV -nopad -in pt.bin -out ref.bin
        assert_files_eq ref.bin ct.bin "AES-CBC $len bytes vs openssl"
        expect_ok p11u --decrypt -m AES-CBC --id 10 --iv $IV -i ct.bin -o rt.bin
        assert_files_eq pt.bin rt.bin "AES-CBC $len bytes round trip"
    done
    for len in 1 15 16 37 4099; do
        head -c $len /dev/urandom >pt.bin
        expect_ok p11u --encrypt -m AES-CBC-PAD --id 10 --iv $IV -i pt.bin \
            -o ct.bin
        openssl enc -aes-256-cbc -K "$kh" -iv $IV -in pt.bin -out ref.bin
        assert_files_eq ref.bin ct.bin "AES-CBC-PAD $len bytes vs openssl"
        expect_ok p11u --decrypt -m AES-CBC-PAD --id 10 --iv $IV -i ct.bin \
            -o rt.bin
        assert_files_eq pt.bin rt.bin "AES-CBC-PAD $len bytes round trip"
        # And the other way: the token decrypts what openssl encrypted.
        expect_ok p11u --decrypt -m AES-CBC-PAD --id 10 --iv $IV -i ref.bin \
            -o rt2.bin
        assert_files_eq pt.bin rt2.bin "AES-CBC-PAD $len bytes from openssl"
    done
    # A generated (unknown) key: round trip only.
    expect_ok p11u --keygen --key-type AES:32 --label gen --id 11 \
        --usage-decrypt
    for mech in AES-CBC AES-CBC-PAD; do
        head -c 48 /dev/urandom >pt.bin
        expect_ok p11u --encrypt -m $mech --id 11 --iv $IV -i pt.bin -o ct.bin
        expect_ok p11u --decrypt -m $mech --id 11 --iv $IV -i ct.bin -o rt.bin
        assert_files_eq pt.bin rt.bin "$mech generated key round trip"
        if cmp -s pt.bin ct.bin; then kt_fail "$mech output is the plaintext"; fi
    done
}

# --wrap with AES-KEY-WRAP (RFC 3394) and 0x210A (RFC 5649), checked
# against `openssl enc -id-aes256-wrap[-pad]` with the same keys.
group_wrap()
{
    setup_token
    head -c 32 /dev/urandom >kek.bin
    head -c 32 /dev/urandom >key.bin
    import_key kek.bin kek 20 --usage-wrap
    import_key key.bin data 21 --extractable
    local kh
    kh=$(hex kek.bin)
    expect_ok p11u --wrap -m AES-KEY-WRAP --id 20 --application-id 21 \
        -o kw.bin
    openssl enc -id-aes256-wrap -K "$kh" -iv A6A6A6A6A6A6A6A6 -in key.bin \
        -out ref-kw.bin
    assert_files_eq ref-kw.bin kw.bin "AES-KEY-WRAP vs openssl"
    expect_ok p11u --wrap -m 0x210A --id 20 --application-id 21 -o kwp.bin
    openssl enc -id-aes256-wrap-pad -K "$kh" -iv A65959A6 -in key.bin \
        -out ref-kwp.bin
    assert_files_eq ref-kwp.bin kwp.bin "AES-KEY-WRAP-PAD vs openssl"
    assert_eq 40 "$(stat -c %s kwp.bin)" "RFC 5649 blob size"
    # CKM_AES_KEY_WRAP_KWP (0x210B) is RFC 5649 too, where a token lists it
    # (keytier does; SoftHSM2 2.6 does not). The list is read whole first:
    # grep -q stopping early would leave pkcs11-tool a SIGPIPE, which
    # pipefail takes for a missing mechanism once the list is long.
    local listed
    listed=$(kt_p11 --token-label "$LABEL" -M 2>/dev/null)
    if grep -q 'mechtype-0x210B' <<<"$listed"; then
        expect_ok p11u --wrap -m 0x210B --id 20 --application-id 21 \
            -o kwp2.bin
        assert_files_eq ref-kwp.bin kwp2.bin "AES-KEY-WRAP-KWP vs openssl"
    elif [ "$module" = keytier ]; then
        kt_fail "keytier does not list CKM_AES_KEY_WRAP_KWP (0x210B)"
    fi
}

# --unwrap with AES-KEY-WRAP and 0x210A of blobs made by openssl; the
# unwrapped key must encrypt exactly like the original key. pkcs11-tool
# 0.23 puts CKA_VALUE_LEN in the unwrap template (SoftHSM2 2.6 refuses it
# with CKR_ATTRIBUTE_READ_ONLY, so this group runs on keytier only).
group_unwrap()
{
    setup_token
    head -c 32 /dev/urandom >kek.bin
    head -c 32 /dev/urandom >key.bin
    import_key kek.bin kek 20 --usage-wrap
    local kh mech blob id=30
    kh=$(hex kek.bin)
    openssl enc -id-aes256-wrap -K "$kh" -iv A6A6A6A6A6A6A6A6 -in key.bin \
        -out kw.bin
    openssl enc -id-aes256-wrap-pad -K "$kh" -iv A65959A6 -in key.bin \
        -out kwp.bin
    head -c 32 /dev/urandom >pt.bin
    openssl enc -aes-256-cbc -K "$(hex key.bin)" -iv $IV -nopad -in pt.bin \
        -out ref.bin
    local mechs="AES-KEY-WRAP 0x210A"
    local listed
    listed=$(kt_p11 --token-label "$LABEL" -M 2>/dev/null)
    if grep -q 'mechtype-0x210B' <<<"$listed"; then
        mechs="$mechs 0x210B"
    fi
    for mech in $mechs; do
        if [ $mech = AES-KEY-WRAP ]; then blob=kw.bin; else blob=kwp.bin; fi
        expect_ok p11u --unwrap -m $mech --id 20 -i $blob --key-type AES:32 \
            --application-id $id --application-label "unwrapped-$mech"
        expect_ok p11u --list-objects --type secrkey --id $id
        assert_contains "$KT_LAST_OUTPUT" "Secret Key Object; AES length 32" \
            "$mech unwrapped key"
        expect_ok p11u --encrypt -m AES-CBC --id $id --iv $IV -i pt.bin \
            -o ct.bin
        assert_files_eq ref.bin ct.bin "$mech unwrapped key encrypts as original"
        id=$((id + 1))
    done
    # A corrupted blob is refused and creates nothing.
    cp kwp.bin bad.bin
    kt_flip_byte bad.bin 9
    local before after rc=0
    before=$(p11u --list-objects 2>/dev/null | grep -c 'Secret Key Object')
    p11u --unwrap -m 0x210A --id 20 -i bad.bin --key-type AES:32 \
        --application-id 40 --application-label bad >bad.out 2>&1 || rc=$?
    [ $rc -ne 0 ] || kt_fail "corrupted RFC 5649 blob was unwrapped"
    grep -Eq 'C_UnwrapKey failed: rv = (CKR_WRAPPED_KEY_INVALID|CKR_ENCRYPTED_DATA_INVALID)' \
        bad.out || kt_fail "corrupted blob: unexpected error: $(cat bad.out)"
    after=$(p11u --list-objects 2>/dev/null | grep -c 'Secret Key Object')
    assert_eq "$before" "$after" "objects after a refused unwrap"

    # Round trip under a generated non-extractable root (a wrapping key:
    # a key wraps or encrypts, never both).
    expect_ok p11u --keygen --key-type AES:32 --label root --id 50 --sensitive \
        --usage-wrap
    import_key key.bin data 51 --extractable
    expect_ok p11u --wrap -m 0x210A --id 50 --application-id 51 -o rt.bin
    expect_ok p11u --unwrap -m 0x210A --id 50 -i rt.bin --key-type AES:32 \
        --application-id 52 --application-label back
    expect_ok p11u --encrypt -m AES-CBC --id 52 --iv $IV -i pt.bin -o ct2.bin
    assert_files_eq ref.bin ct2.bin "root round trip"
}

# A non-extractable key can be neither read nor wrapped.
group_nonextractable()
{
    setup_token
    head -c 32 /dev/urandom >kek.bin
    import_key kek.bin kek 20 --usage-wrap
    expect_ok p11u --keygen --key-type AES:32 --label root --id 01 --sensitive \
        --usage-wrap
    expect_ok p11u --list-objects --type secrkey --id 01
    assert_contains "$KT_LAST_OUTPUT" "never extractable" "root access flags"
    assert_not_contains "$KT_LAST_OUTPUT" "VALUE:" "root listing"
    expect_fail "error: get CKA_VALUE failed" \
        p11u --read-object --type secrkey --id 01
    assert_contains "$KT_LAST_OUTPUT" "CKR_ATTRIBUTE_SENSITIVE" "--read-object"
    expect_fail "error: PKCS11 function C_WrapKey failed: rv = CKR_KEY_UNEXTRACTABLE (0x6a)" \
        p11u --wrap -m AES-KEY-WRAP --id 20 --application-id 01 -o x.bin
    expect_fail "error: PKCS11 function C_WrapKey failed: rv = CKR_KEY_UNEXTRACTABLE (0x6a)" \
        p11u --wrap -m 0x210A --id 20 --application-id 01 -o x.bin
    [ ! -s x.bin ] || kt_fail "a wrapped blob of the root was written"
    # The root itself still wraps (that is what it is for).
    head -c 32 /dev/urandom >key.bin
    import_key key.bin data 21 --extractable
    expect_ok p11u --wrap -m 0x210A --id 01 --application-id 21 -o ok.bin
}

# pkcs11-tool's own self test over the mechanisms the token lists.
group_selftest()
{
    setup_token
    expect_ok p11u --keygen --key-type AES:32 --label aes --id 01 \
        --usage-decrypt
    local flags
    for flags in "" "--allow-sw"; do
        # shellcheck disable=SC2086
        expect_ok p11u --test $flags
        assert_contains "$KT_LAST_OUTPUT" "No errors" "--test $flags"
    done
}

declare -F "group_$group" >/dev/null || kt_fail "unknown group '$group'"
kt_tmpdir
kt_module_use "$module"
cd "$KT_TMP"
kt_log "module $module ($KT_P11_MODULE), group $group"
"group_$group"
kt_log "PASS"
