#!/usr/bin/env bash
# OpenSSL 3 with pkcs11-provider (Debian bookworm-backports, installed by
# tools/deps.sh) loaded in the default library context, in front of the
# module: the provider calls the module, and the module's own OpenSSL calls
# must stay in its private library context (a key the module built in the
# default one would go to the provider, which calls back into the module).
# With an RSA and an EC key made by pkcs11-tool: pkey -pubout, pkeyutl
# -sign, dgst -sign (plain openssl verifies with the exported public key),
# req -x509 (plain openssl verifies the certificate), and a TLS handshake
# with s_server's key in the token.
#
# The provider is listed before the default provider, so a fetch in the
# default library context with no property query (EVP_PKEY_fromdata of an
# RSA or EC key) gets the provider's key management, which imports the key
# into the token through the module: a module that made its keys there
# recursed into itself and pkeyutl -sign failed. Digests are blocked in the
# provider (pkcs11-module-block-operations): TLS needs a handshake hash it
# can copy, which the provider's token digests are not.
#
# Under the sanitizer build (the ASan runtime preloaded) the module cannot
# load into OpenSSL's process: pkcs11-provider opens its module with
# RTLD_DEEPBIND, which the ASan runtime refuses. There the module runs in a
# `p11-kit server` with the ASan runtime, and OpenSSL, without it, reaches
# the token through p11-kit-client.so; the plain build runs the module
# inside OpenSSL's process, where the recursion was.
#
#   openssl-provider.sh keytier|softhsm2
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/asym-lib.sh"

provider=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')/pkcs11.so
[ -f "$provider" ] ||
    kt_fail "pkcs11-provider is not installed ($provider): run tools/deps.sh"

kt_tmpdir
kt_module_use "$1"
kt_token_init prov 87654321 123456
cd "$KT_TMP"

p11() { kt_p11 --token-label prov --login --pin 123456 "$@"; }

kt_log "key pairs in the token"
expect_ok p11 --keypairgen --key-type rsa:2048 --id 01 --label rsa1
expect_ok p11 --keypairgen --key-type EC:prime256v1 --id 02 --label ec1

# The OpenSSL that loads the provider; the checks use plain openssl (ossl).
pssl=(env -u LD_PRELOAD openssl)
provider_module=$KT_P11_MODULE
tls_opts=()
case ${LD_PRELOAD:-} in
*libasan*)
    kt_server_start "$KT_P11_MODULE" prov
    provider_module=$P11KIT_CLIENT_MODULE
    # Through p11-kit's RPC the RSA-PSS signature of TLS 1.3 fails
    # (pkcs11-provider: CKR_MECHANISM_INVALID); in process it works, so
    # there the handshake is TLS 1.2 with PKCS#1 v1.5 and ECDSA.
    tls_opts=(-tls1_2 -sigalgs RSA+SHA256:ECDSA+SHA256)
    ;;
esac

printf '%s' 123456 >pin.txt
cat >provider.cnf <<EOF
openssl_conf = openssl_init

[openssl_init]
providers = provider_section

[provider_section]
pkcs11 = pkcs11_section
default = default_section

[default_section]
activate = 1

[pkcs11_section]
module = $provider
pkcs11-module-path = $provider_module
pkcs11-module-token-pin = file:$KT_TMP/pin.txt
pkcs11-module-block-operations = digest
activate = 1
EOF
export OPENSSL_CONF=$KT_TMP/provider.cnf
expect_ok "${pssl[@]}" list -providers
assert_contains "$KT_LAST_OUTPUT" "pkcs11" "openssl list -providers"

uri() { echo "pkcs11:token=prov;object=$1;type=private"; }

head -c 1000 /dev/urandom >data.bin
ossl dgst -sha256 -binary -out data.sha256 data.bin
ossl dgst -sha256 -binary -out other.sha256 provider.cnf

for key in rsa1 ec1; do
    kt_log "pkey -pubout with $key"
    expect_ok timeout 60 "${pssl[@]}" pkey -in "$(uri $key)" -pubout \
        -out $key.provider.pem
    # (pkcs11-provider 1.0 writes an RSA key as PKCS#1 "RSA PUBLIC KEY":
    # plain openssl reads it and writes the SubjectPublicKeyInfo.)
    expect_ok ossl pkey -pubin -in $key.provider.pem -pubout -out $key.pub.pem

    kt_log "pkeyutl -sign with $key, plain openssl verifies"
    opts=()
    [ $key = rsa1 ] && opts=(-pkeyopt digest:sha256)
    expect_ok timeout 60 "${pssl[@]}" pkeyutl -sign -inkey "$(uri $key)" \
        -in data.sha256 -out $key.sig "${opts[@]}"
    expect_ok ossl pkeyutl -verify -pubin -inkey $key.pub.pem \
        -in data.sha256 -sigfile $key.sig "${opts[@]}"
    assert_contains "$KT_LAST_OUTPUT" "Signature Verified Successfully"
    # A changed message must not verify: the check above can fail.
    expect_fail "Signature Verification Failure" ossl pkeyutl -verify \
        -pubin -inkey $key.pub.pem -in other.sha256 -sigfile $key.sig \
        "${opts[@]}"

    kt_log "dgst -sign with $key, plain openssl verifies"
    expect_ok timeout 60 "${pssl[@]}" dgst -sha256 -sign "$(uri $key)" \
        -out $key.dgst.sig data.bin
    expect_ok ossl dgst -sha256 -verify $key.pub.pem -signature $key.dgst.sig \
        data.bin
    assert_contains "$KT_LAST_OUTPUT" "Verified OK"
    expect_fail "Verification failure" ossl dgst -sha256 -verify \
        $key.pub.pem -signature $key.dgst.sig provider.cnf

    kt_log "req -x509 with $key, plain openssl verifies the certificate"
    expect_ok timeout 60 "${pssl[@]}" req -new -x509 -days 2 -key "$(uri $key)" \
        -subj "/CN=127.0.0.1" -sha256 -out $key.crt
    expect_ok ossl verify -CAfile $key.crt $key.crt
    assert_contains "$KT_LAST_OUTPUT" "$key.crt: OK"
    ossl x509 -in $key.crt -pubkey -noout >$key.crt.pub
    assert_files_eq $key.pub.pem $key.crt.pub "certificate public key"

    kt_log "TLS: s_server with the $key token key, plain s_client"
    port=$((20000 + RANDOM % 30000))
    : >server-$key.log
    timeout 60 "${pssl[@]}" s_server -key "$(uri $key)" -cert $key.crt \
        -accept 127.0.0.1:$port -naccept 1 -www \
        >server-$key.log 2>&1 </dev/null &
    spid=$!
    kt_on_exit "kill $spid 2>/dev/null"
    for ((i = 0; i < 200; i++)); do
        grep -q '^ACCEPT' server-$key.log && break
        kill -0 $spid 2>/dev/null ||
            kt_fail "s_server exited: $(cat server-$key.log)"
        sleep 0.1
    done
    grep -q '^ACCEPT' server-$key.log ||
        kt_fail "s_server did not start: $(cat server-$key.log)"
    out=$(printf 'GET / HTTP/1.0\r\n\r\n' |
        OPENSSL_CONF=/dev/null timeout 60 "${pssl[@]}" s_client \
            -connect 127.0.0.1:$port -CAfile $key.crt -verify_return_error \
            "${tls_opts[@]}" -ign_eof 2>&1) || kt_fail "s_client failed: $out
server: $(cat server-$key.log)"
    assert_contains "$out" "Verify return code: 0 (ok)" "s_client"
    assert_contains "$out" "HTTP/1.0 200 ok" "s_server reply over TLS"
    wait $spid || kt_fail "s_server exited with an error: $(cat server-$key.log)"
done
kt_log "ok"
