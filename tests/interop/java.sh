#!/usr/bin/env bash
# Java's SunPKCS11 provider uses token keys as Java users do: keytool makes
# an RSA key pair and its self-signed certificate in the token and an AES
# secret key, lists them, and jarsigner signs a jar with the token key; the
# signature is verified by jarsigner with only the exported certificate (no
# token), and a tampered jar must fail that verification.
#
#   java.sh keytier|softhsm2
. "$(dirname "$0")/../common.sh"

kt_tmpdir
kt_module_use "$1"
kt_token_init java 87654321 123456
cd "$KT_TMP"

command -v keytool >/dev/null || kt_fail "keytool not installed (tools/deps.sh)"
slot=$(kt_p11 -L 2>/dev/null | awk '
    /^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
    /token label +: java$/ { print id; exit }')
[ -n "$slot" ] || kt_fail "token 'java' not found"
cat >sunpkcs11.cfg <<CFG
name = keytier-test
library = $KT_P11_MODULE
slot = $((slot))
CFG

# The JVM handles SIGSEGV itself; an ASan runtime preloaded by the
# sanitizer build must let it.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0:allow_user_segv_handler=1:detect_leaks=0
p11ks=(-keystore NONE -storetype PKCS11
       -providerClass sun.security.pkcs11.SunPKCS11
       -providerArg "$KT_TMP/sunpkcs11.cfg" -storepass 123456)

kt_log "keytool -genkeypair RSA 2048 in the token"
expect_ok timeout 120 keytool -genkeypair "${p11ks[@]}" -alias signer \
    -keyalg RSA -keysize 2048 -sigalg SHA256withRSA \
    -dname "CN=keytier java test" -validity 2
kt_log "keytool -genseckey AES 256 in the token"
expect_ok timeout 120 keytool -genseckey "${p11ks[@]}" -alias aes1 \
    -keyalg AES -keysize 256
kt_log "keytool -list"
expect_ok timeout 120 keytool -list "${p11ks[@]}"
assert_contains "$KT_LAST_OUTPUT" "signer, PrivateKeyEntry" "keytool -list"
assert_contains "$KT_LAST_OUTPUT" "aes1, SecretKeyEntry" "keytool -list"
expect_ok timeout 120 keytool -exportcert "${p11ks[@]}" -alias signer \
    -rfc -file signer.pem
expect_ok openssl x509 -in signer.pem -noout -subject
assert_contains "$KT_LAST_OUTPUT" "keytier java test" "exported certificate"

kt_log "jarsigner with the token key"
mkdir -p content
head -c 4096 /dev/urandom >content/data.bin
echo "Main-Class: none" >manifest.txt
expect_ok timeout 120 jar cfm app.jar manifest.txt -C content .
expect_ok timeout 120 jarsigner "${p11ks[@]}" -sigalg SHA256withRSA \
    -signedjar signed.jar app.jar signer

# Verified with a keystore that holds only the exported certificate: the
# token is not involved in the check.
expect_ok timeout 120 keytool -importcert -noprompt -alias signer \
    -file signer.pem -keystore trust.p12 -storetype PKCS12 -storepass trustpw
expect_ok timeout 120 jarsigner -verify -strict -keystore trust.p12 \
    -storetype PKCS12 -storepass trustpw signed.jar
assert_contains "$KT_LAST_OUTPUT" "jar verified" "jarsigner -verify"

kt_log "a tampered jar does not verify"
mkdir -p tampered && (cd tampered && jar xf ../signed.jar)
head -c 4096 /dev/urandom >tampered/data.bin
(cd tampered && jar cfM ../tampered.jar .)
expect_fail "jarsigner: java.lang.SecurityException: SHA-256 digest error for data.bin" \
    timeout 120 jarsigner -verify -strict -keystore trust.p12 \
    -storetype PKCS12 -storepass trustpw tampered.jar
kt_log "ok"
