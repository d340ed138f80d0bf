#!/usr/bin/env bash
# OpenSSL 3 with libp11's pkcs11 engine uses token keys as users do:
# pkeyutl signs with an RSA and an EC key (plain openssl verifies with the
# exported public key), req makes a CSR and a self-signed certificate, and
# s_server holding its key in the token completes a TLS handshake with
# s_client on 127.0.0.1.
#
#   asym-openssl.sh keytier|softhsm2
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/asym-lib.sh"

kt_tmpdir
kt_module_use "$1"
kt_token_init asym 87654321 123456
cd "$KT_TMP"

p11() { kt_p11 --token-label asym --login --pin 123456 "$@"; }

kt_log "key pairs in the token"
expect_ok p11 --keypairgen --key-type rsa:2048 --id 01 --label rsa1
expect_ok p11 --keypairgen --key-type EC:prime256v1 --id 02 --label ec1

asym_engine_conf 123456
export OPENSSL_CONF=$KT_TMP/engine.cnf
uri() { echo "pkcs11:token=asym;object=$1;type=private"; }

head -c 1000 /dev/urandom >data.bin
ossl dgst -sha256 -binary -out data.sha256 data.bin

for key in rsa1 ec1; do
    kt_log "pkeyutl sign with $key, plain openssl verify"
    # (pkcs11-tool 0.23 --read-object of an EC public key reads freed
    # memory: ASan stops it. The engine exports instead.)
    asym_pubkey asym $key $key.pub.pem
    opts=()
    [ $key = rsa1 ] && opts=(-pkeyopt digest:sha256)
    expect_ok timeout 60 openssl pkeyutl -engine pkcs11 -keyform engine \
        -sign -inkey "$(uri $key)" -in data.sha256 -out $key.sig "${opts[@]}"
    expect_ok ossl pkeyutl -verify -pubin -inkey $key.pub.pem \
        -in data.sha256 -sigfile $key.sig "${opts[@]}"
    assert_contains "$KT_LAST_OUTPUT" "Signature Verified Successfully"
    # A changed message must not verify: the check above can fail.
    ossl dgst -sha256 -binary -out other.sha256 engine.cnf
    expect_fail "Signature Verification Failure" ossl pkeyutl -verify \
        -pubin -inkey $key.pub.pem -in other.sha256 -sigfile $key.sig \
        "${opts[@]}"

    kt_log "req: CSR and self-signed certificate with $key"
    expect_ok timeout 60 openssl req -new -engine pkcs11 -keyform engine \
        -key "$(uri $key)" -subj "/CN=keytier $key" -sha256 -out $key.csr
    expect_ok ossl req -in $key.csr -verify -noout
    assert_contains "$KT_LAST_OUTPUT" "self-signature verify OK"
    ossl req -in $key.csr -pubkey -noout >$key.csr.pub
    assert_files_eq $key.pub.pem $key.csr.pub "CSR public key"
    expect_ok timeout 60 openssl req -new -x509 -days 2 -engine pkcs11 \
        -keyform engine -key "$(uri $key)" -subj "/CN=127.0.0.1" -sha256 \
        -out $key.crt
    expect_ok ossl verify -CAfile $key.crt $key.crt
    ossl x509 -in $key.crt -pubkey -noout >$key.crt.pub
    assert_files_eq $key.pub.pem $key.crt.pub "certificate public key"

    kt_log "TLS: s_server with the $key token key, s_client"
    port=$((20000 + RANDOM % 30000))
    timeout 60 openssl s_server -engine pkcs11 -keyform engine \
        -key "$(uri $key)" -cert $key.crt -accept 127.0.0.1:$port \
        -naccept 1 -www >server-$key.log 2>&1 </dev/null &
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
        OPENSSL_CONF=/dev/null timeout 60 openssl s_client \
            -connect 127.0.0.1:$port -CAfile $key.crt -verify_return_error \
            -ign_eof 2>&1) || kt_fail "s_client failed: $out
server: $(cat server-$key.log)"
    assert_contains "$out" "Verify return code: 0 (ok)" "s_client"
    assert_contains "$out" "HTTP/1.0 200 ok" "s_server reply over TLS"
    wait $spid || kt_fail "s_server exited with an error: $(cat server-$key.log)"
done
kt_log "ok"
