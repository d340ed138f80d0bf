# shellcheck shell=bash
# Helpers shared by the asym-*.sh interop tests (sourced after common.sh,
# kt_tmpdir and kt_module_use).

# Plain OpenSSL without any engine: the independent checker.
ossl() { OPENSSL_CONF=/dev/null openssl "$@"; }

# asym_engine_conf PIN
#   Writes $KT_TMP/engine.cnf from hsm-config/openssl-pkcs11.cnf with
#   MODULE_PATH pointing at the module under test and the user PIN, for
#   commands run with OPENSSL_CONF=$KT_TMP/engine.cnf.
asym_engine_conf()
{
    sed -e "s|^MODULE_PATH = .*|MODULE_PATH = $KT_P11_MODULE|" \
        -e "/^init = 0/a PIN = $1" \
        "$KT_SOURCE_ROOT/hsm-config/openssl-pkcs11.cnf" >"$KT_TMP/engine.cnf"
    grep -q "^MODULE_PATH = $KT_P11_MODULE\$" "$KT_TMP/engine.cnf" ||
        kt_fail "openssl-pkcs11.cnf has no MODULE_PATH line"
}

# asym_pubkey TOKEN LABEL OUT.pem
#   Exports the public key object LABEL through the engine as PEM (pkcs11-tool
#   0.23 --read-object of EC public keys reads freed memory: wrong keys or
#   an ASan abort).
asym_pubkey()
{
    expect_ok env OPENSSL_CONF="$KT_TMP/engine.cnf" openssl pkey \
        -engine pkcs11 -pubin -inform engine \
        -in "pkcs11:token=$1;object=$2;type=public" -pubout -out "$3"
    expect_ok ossl pkey -pubin -in "$3" -noout
}
