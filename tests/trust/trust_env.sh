# Shared setup of the 'trust' suite, sourced after tests/common.sh and
# tests/cli/cli_env.sh.
#
#   trust_setup   the cli suite's tokens and configuration (cli_setup,
#                 cli_tokens), then trust_approvers
#   trust_approvers
#                 approvers with their key pairs in tokens of their own:
#                   alice  ECDSA P-256 on SoftHSM2 (token approver-alice)
#                   bob    RSA-2048 (PSS) on keytier's module (approver-bob)
#                   mallory ECDSA P-256 on SoftHSM2, never pinned: the key
#                          of someone with the store, the CLI and the
#                          service token but no place in the configuration
#                 alice and bob pinned (approval.approver) and registered;
#                 their key URIs in $KEY_ALICE, $KEY_BOB, $KEY_MALLORY and
#                 their DER public keys in $KT_TMP/<name>.der
#   approve OP TENANT SCOPE [REQUESTER [APPROVER]]
#                 requests and grants an approval, prints its id
#   sql STATEMENT runs SQL on the store as an operator with write access

# A PKCS#11 tool (pkcs11-tool, p11tool) on MODULE: on SoftHSM2 without the
# sanitizer build's LD_PRELOAD (only keytier's module needs it).
trust_tool()
{
    local module=$1
    shift
    if [ "$module" = "$KT_MODULE" ]; then
        "$@"
    else
        env -u LD_PRELOAD "$@"
    fi
}

trust_p11()
{
    local module=$1
    shift
    trust_tool "$module" pkcs11-tool --module "$module" "$@"
}

# trust_keypair MODULE TOKEN NAME TYPE ID: a key pair NAME in TOKEN, its DER
# public key in $KT_TMP/NAME.der. The public key is read with p11tool:
# pkcs11-tool 0.23 reads freed memory when it exports an EC public key. A
# ThreadSanitizer build of the module cannot be loaded by either tool, so
# there the keytier CLI makes the pair (ECDSA P-256 whatever TYPE says).
trust_keypair()
{
    local module=$1 token=$2 name=$3 type=$4 id=$5
    if [ "$module" = "$KT_MODULE" ] && ldd "$KT_MODULE" | grep libtsan >/dev/null; then
        kt approval keygen --token "pkcs11:token=$token" --label "$name" \
            --pubkey-out "$KT_TMP/$name.der" --pin-env PIN \
            >/dev/null 2>"$KT_TMP/keygen.err" ||
            kt_fail "keypair $name: $(cat "$KT_TMP/keygen.err")"
        return
    fi
    trust_p11 "$module" --token-label "$token" --login \
        --pin "$PIN" --keypairgen --key-type "$type" --label "$name" \
        --id "$id" >/dev/null 2>"$KT_TMP/keygen.err" ||
        kt_fail "keypair $name: $(cat "$KT_TMP/keygen.err")"
    GNUTLS_PIN=$PIN trust_tool "$module" p11tool --login \
        --provider "$module" --export-pubkey \
        "pkcs11:token=$token;object=$name" --outfile "$KT_TMP/$name.pem" \
        >/dev/null 2>"$KT_TMP/read.err" ||
        kt_fail "public key $name: $(cat "$KT_TMP/read.err")"
    openssl pkey -pubin -in "$KT_TMP/$name.pem" -outform DER \
        -out "$KT_TMP/$name.der" 2>"$KT_TMP/read.err" ||
        kt_fail "public key $name: $(cat "$KT_TMP/read.err")"
}

trust_setup()
{
    cli_setup
    cli_tokens
    trust_approvers
}

trust_approvers()
{
    kt_softhsm2_conf "$KT_TMP/softhsm"
    local t
    for t in approver-alice approver-mallory; do
        softhsm2-util --init-token --free --label "$t" --so-pin "$SO_PIN" \
            --pin "$PIN" >/dev/null || kt_fail "softhsm2 token $t"
    done
    trust_keypair "$SOFTHSM2_MODULE" approver-alice alice EC:prime256v1 a1
    trust_keypair "$SOFTHSM2_MODULE" approver-mallory mallory EC:prime256v1 a3
    kt token init --label approver-bob --so-pin-env SO_PIN --pin-env PIN \
        >/dev/null || kt_fail "token init approver-bob"
    trust_keypair "$KT_MODULE" approver-bob bob rsa:2048 a2
    KEY_ALICE="pkcs11:token=approver-alice;object=alice;type=private"
    KEY_BOB="pkcs11:token=approver-bob;object=bob;type=private"
    KEY_MALLORY="pkcs11:token=approver-mallory;object=mallory;type=private"
    {
        echo "module = $SOFTHSM2_MODULE"
        echo "approval.approver = alice $(kt approval fingerprint --pubkey "$KT_TMP/alice.der")"
        echo "approval.approver = bob $(kt approval fingerprint --pubkey "$KT_TMP/bob.der")"
    } >>"$KEYTIER_LIB_CONF"
    kt approval register --name alice --pubkey "$KT_TMP/alice.der" \
        >/dev/null || kt_fail "register alice"
    # The second approver is a change to the list: alice approves it.
    local id
    id=$(kt approval request --op change-approvers --tenant '*' --scope bob \
        --justification "second approver" --requester ops) ||
        kt_fail "request change-approvers"
    kt approval grant "$id" --approver alice --key "$KEY_ALICE" \
        --pin-env PIN >/dev/null || kt_fail "grant change-approvers"
    kt approval register --name bob --pubkey "$KT_TMP/bob.der" \
        --approval "$id" >/dev/null || kt_fail "register bob"
}

approve()
{
    local op=$1 tenant=$2 scope=$3 requester=${4:-ops} approver=${5:-alice}
    local key id
    case $approver in
    alice) key=$KEY_ALICE ;;
    bob) key=$KEY_BOB ;;
    *) key=$KEY_MALLORY ;;
    esac
    id=$(kt approval request --op "$op" --tenant "$tenant" --scope "$scope" \
        --justification "ticket 4711: $op" --requester "$requester") ||
        kt_fail "request $op"
    kt approval grant "$id" --approver "$approver" --key "$key" \
        --pin-env PIN >/dev/null || kt_fail "grant $op by $approver"
    echo "$id"
}

sql()
{
    sqlite3 "$KT_TMP/store/keytier.db" "$1"
}
