#!/usr/bin/env bash
# keytier demo.
#
#   tools/demo.sh                 install missing packages, build, and run
#                                 `keytier demo`: the DESIGN.md story end to
#                                 end (two remote customer vaults behind
#                                 p11-kit servers, a DEP, a mailbox, an
#                                 outage, the audited fallback, a
#                                 revocation, the audit chain), everything in
#                                 a temp dir that is removed at the end
#   tools/demo.sh --built DIR     the same with an existing build directory
#                                 (the 'cli' test suite uses this form)
#   tools/demo.sh --module PATH   the token-level steps only, on PATH: a root
#                                 key that never leaves the token, wrapping
#                                 and unwrapping the keys below it, through
#                                 OpenSC's pkcs11-tool (the 'interop' suite
#                                 uses this form)
#
# Every step prints one line; a step that does not behave as claimed prints
# "FAILED: ..." with what happened, and the demo exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

module=
case ${1:-} in
--module)
    [ $# -eq 2 ] || { echo "usage: $0 [--built DIR | --module PATH]" >&2; exit 2; }
    module=$2
    ;;
--built)
    [ $# -eq 2 ] || { echo "usage: $0 [--built DIR | --module PATH]" >&2; exit 2; }
    exec "$2/tools/cli/keytier" demo --module "$2/module/keytier-pkcs11.so"
    ;;
"")
    echo "== installing missing packages (tools/deps.sh)"
    tools/deps.sh
    echo "== building (tools/build.sh build)"
    tools/build.sh build
    exec build/tools/cli/keytier demo --module "$PWD/build/module/keytier-pkcs11.so"
    ;;
*) echo "usage: $0 [--built DIR | --module PATH]" >&2; exit 2 ;;
esac

# ---- token-level steps (--module PATH) -----------------------------------
# A root key that never leaves the token, wrapping and unwrapping the keys
# below it. Everything happens through the PKCS#11 API (OpenSC's
# pkcs11-tool) on a token created in a fresh temp dir, which is removed at
# the end: running it again starts from scratch.
[ -f "$module" ] || { echo "FAILED: no module at $module" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/keytier-demo.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
cd "$work"

# The module's config: tokens live in this temp dir only.
cat >keytier.conf <<EOF
token_dir = $work/tokens
log_level = warning
log_file = $work/keytier.log
pin_kdf_cost = 10
EOF
export KEYTIER_CONF=$work/keytier.conf
# SoftHSM2, when --module points at it, also keeps its token here.
mkdir -p softhsm2-tokens
printf 'directories.tokendir = %s/softhsm2-tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$work" >softhsm2.conf
export SOFTHSM2_CONF=$work/softhsm2.conf

SO_PIN=87654321
PIN=246810
LABEL=demo
IV=000102030405060708090a0b0c0d0e0f

step=0
# ok MESSAGE / fail MESSAGE [OUTPUT FILE]
ok()
{
    step=$((step + 1))
    printf 'ok %d: %s\n' "$step" "$1"
}
fail()
{
    step=$((step + 1))
    printf 'FAILED %d: %s\n' "$step" "$1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then sed 's/^/    /' "$2"; fi
    if [ -s "$work/keytier.log" ]; then
        echo "    module log (last lines):"
        tail -n 5 "$work/keytier.log" | sed 's/^/    /'
    fi
    exit 1
}

p11()
{
    pkcs11-tool --module "$module" "$@"
}
p11u()
{
    p11 --token-label "$LABEL" --login --pin "$PIN" "$@"
}
hex()
{
    od -An -v -tx1 "$1" | tr -d ' \n'
}

echo "== keytier demo: module $module, token in $work"

slot=$(p11 -L 2>out.err | awk '
    /^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
    /token state: +uninitialized/ { print id; exit }') || true
[ -n "$slot" ] || fail "the module shows a free slot with a new token" out.err
if p11 --slot "$slot" --init-token --label "$LABEL" --so-pin "$SO_PIN" \
    >out 2>&1 &&
    p11 --token-label "$LABEL" --login --login-type so --so-pin "$SO_PIN" \
        --init-pin --pin "$PIN" >>out 2>&1; then
    ok "created token '$LABEL' (security officer PIN and user PIN set)"
else
    fail "create token '$LABEL'" out
fi

if p11u --keygen --key-type AES:32 --label demo-root --id 01 --sensitive \
    --private --usage-wrap >out 2>&1 &&
    p11u --list-objects --type secrkey --id 01 >list 2>&1 &&
    grep -q 'Secret Key Object; AES length 32' list &&
    grep -q 'sensitive, always sensitive, never extractable, local' list; then
    ok "generated root key 'demo-root' in the token: AES-256, sensitive, never extractable"
else
    fail "generate a non-extractable AES-256 root key" out
fi

# A data key we know, so we can prove the unwrapped key is the same key.
head -c 32 /dev/urandom >data-key.bin
if p11u --write-object data-key.bin --type secrkey --key-type AES:32 \
    --label data-key --id 02 --extractable --usage-decrypt >out 2>&1; then
    ok "imported a 256-bit data key 'data-key' (extractable, so it can be wrapped)"
else
    fail "import a data key" out
fi

if p11u --wrap -m 0x210A --id 01 --application-id 02 -o wrapped.bin \
    >out 2>&1 && [ "$(stat -c %s wrapped.bin)" = 40 ]; then
    ok "wrapped 'data-key' under the root (RFC 5649, CKM_AES_KEY_WRAP_PAD): 40-byte blob $(hex wrapped.bin | cut -c1-16)..."
else
    fail "wrap the data key under the root" out
fi
if cmp -s wrapped.bin data-key.bin || grep -qF "$(hex data-key.bin)" \
    <<<"$(hex wrapped.bin)"; then
    fail "the wrapped blob does not contain the key in clear"
fi

if p11u --unwrap -m 0x210A --id 01 -i wrapped.bin --key-type AES:32 \
    --application-id 03 --application-label data-key-unwrapped >out 2>&1; then
    ok "unwrapped the blob with the root into a new token key 'data-key-unwrapped'"
else
    fail "unwrap the blob with the root" out
fi

# Same key? Encrypt one message with the unwrapped key inside the token and
# with the original key bytes in plain openssl: the ciphertexts must match.
echo "keytier demo: same key, same ciphertext." >msg.txt
if p11u --encrypt -m AES-CBC-PAD --id 03 --iv $IV -i msg.txt -o ct-token.bin \
    >out 2>&1 &&
    openssl enc -aes-256-cbc -K "$(hex data-key.bin)" -iv $IV -in msg.txt \
        -out ct-openssl.bin && cmp -s ct-token.bin ct-openssl.bin; then
    ok "the unwrapped key is the original key: token AES-CBC-PAD ciphertext equals openssl's"
else
    fail "the unwrapped key encrypts like the original key" out
fi

if p11u --read-object --type secrkey --id 01 -o stolen.bin >out 2>&1; then
    fail "reading the root's value must be refused, but it was returned" out
elif grep -q 'CKR_ATTRIBUTE_SENSITIVE' out && [ ! -s stolen.bin ]; then
    ok "the root's value cannot be read: the token answers CKR_ATTRIBUTE_SENSITIVE"
else
    fail "reading the root's value is refused with CKR_ATTRIBUTE_SENSITIVE" out
fi

# Give the data key the right to wrap, then try to wrap the root with it.
head -c 32 /dev/urandom >other-key.bin
p11u --write-object other-key.bin --type secrkey --key-type AES:32 \
    --label other-key --id 04 --usage-wrap >out 2>&1 ||
    fail "import a second wrapping key" out
if p11u --wrap -m 0x210A --id 04 --application-id 01 -o stolen.bin \
    >out 2>&1; then
    fail "wrapping the root must be refused, but a blob came out" out
elif grep -qF 'C_WrapKey failed: rv = CKR_KEY_UNEXTRACTABLE' out &&
    [ ! -s stolen.bin ]; then
    ok "the root cannot be wrapped out of the token: CKR_KEY_UNEXTRACTABLE"
else
    fail "wrapping the root is refused with CKR_KEY_UNEXTRACTABLE" out
fi

echo "== demo complete: $step steps behaved as claimed (temp dir removed)"
