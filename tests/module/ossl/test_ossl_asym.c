/*
 * Unit tests of module/ossl/asym.c: key generation, component round trips,
 * every signature mechanism (single and multi-part, cross-checked against
 * the raw forms), RSA encryption, ECDH, and the error paths.
 */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "ossl/asym.h"

static EVP_PKEY *rsa2048, *ec256, *ec384, *ec521;

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x23};
/* secp224r1: a valid named curve the token does not offer */
static const unsigned char oid_p224[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x21};
static const unsigned char name_p256[] = {0x13, 0x0a, 'p', 'r', 'i', 'm',
                                          'e',  '2',  '5', '6', 'v', '1'};
static const unsigned char name_p384[] = {0x13, 0x05, 'P', '-', '3', '8', '4'};
/* RFC 8017 §9.2 note 1: DigestInfo prefix for SHA-256 */
static const unsigned char sha256_prefix[] = {
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

static const unsigned char msg[] = "keytier asymmetric test message";

static void setup(void)
{
    if (rsa2048 != NULL)
        return;
    ck_assert_uint_eq(kt_ossl_rsa_generate(2048, NULL, 0, &rsa2048), CKR_OK);
    ck_assert_uint_eq(kt_ossl_ec_generate(oid_p256, sizeof(oid_p256), &ec256),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_ec_generate(oid_p384, sizeof(oid_p384), &ec384),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_ec_generate(oid_p521, sizeof(oid_p521), &ec521),
                      CKR_OK);
}

static void sha256(const unsigned char *d, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    ck_assert(EVP_Digest(d, n, out, &len, EVP_sha256(), NULL) == 1);
}

static EVP_PKEY *public_half(EVP_PKEY *key)
{
    kt_ossl_buf spki = {NULL, 0};
    const unsigned char *p;
    EVP_PKEY *pub;

    ck_assert_uint_eq(kt_ossl_spki(key, &spki), CKR_OK);
    p = spki.data;
    pub = d2i_PUBKEY(NULL, &p, (long)spki.len);
    ck_assert_ptr_nonnull(pub);
    ck_assert(p == spki.data + spki.len);
    ck_assert_int_eq(EVP_PKEY_eq(pub, key), 1);
    kt_ossl_buf_free(&spki);
    return pub;
}

/* Signs with key and mech, returns the signature length. */
static size_t sign_once(EVP_PKEY *key, CK_MECHANISM *m, const unsigned char *d,
                        size_t n, unsigned char *sig)
{
    kt_asym_op *op = NULL;
    size_t len = 0;

    ck_assert_uint_eq(kt_ossl_asym_init(m, key, KT_ASYM_SIGN, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, d, n, sig, &len), CKR_OK);
    ck_assert_uint_eq(len, kt_ossl_asym_out_len(op));
    kt_ossl_asym_free(op);
    return len;
}

static CK_RV verify_once(EVP_PKEY *key, CK_MECHANISM *m, const unsigned char *d,
                         size_t n, const unsigned char *sig, size_t sig_len)
{
    kt_asym_op *op = NULL;
    CK_RV rv;

    ck_assert_uint_eq(kt_ossl_asym_init(m, key, KT_ASYM_VERIFY, &op), CKR_OK);
    rv = kt_ossl_asym_verify(op, d, n, sig, sig_len);
    kt_ossl_asym_free(op);
    return rv;
}

/* ---- generation ------------------------------------------------------ */

START_TEST(test_rsa_generate_sizes)
{
    static const CK_ULONG sizes[] = {2048, 3072, 4096};
    static const unsigned char e3[] = {0x03};
    CK_ULONG bits = sizes[_i];
    EVP_PKEY *key = NULL;
    kt_rsa_parts parts;

    ck_assert_uint_eq(kt_ossl_rsa_generate(bits, e3, sizeof(e3), &key), CKR_OK);
    ck_assert_uint_eq(kt_ossl_key_type(key), CKK_RSA);
    ck_assert_uint_eq(kt_ossl_key_bits(key), bits);
    ck_assert_uint_eq(kt_ossl_rsa_export(key, 1, &parts), CKR_OK);
    ck_assert_uint_eq(parts.n.len, bits / 8);
    ck_assert_uint_eq(parts.e.len, 1);
    ck_assert_uint_eq(parts.e.data[0], 3);
    ck_assert_ptr_nonnull(parts.d.data);
    ck_assert_ptr_nonnull(parts.p.data);
    ck_assert_ptr_nonnull(parts.qinv.data);
    kt_rsa_parts_free(&parts);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_rsa_generate_bad)
{
    static const unsigned char even[] = {0x01, 0x00, 0x00};
    static const unsigned char one[] = {0x01};
    static const unsigned char big[9] = {1, 0, 0, 0, 0, 0, 0, 0, 1};
    EVP_PKEY *key = NULL;

    ck_assert_uint_eq(kt_ossl_rsa_generate(1024, NULL, 0, &key),
                      CKR_KEY_SIZE_RANGE);
    ck_assert_uint_eq(kt_ossl_rsa_generate(8192, NULL, 0, &key),
                      CKR_KEY_SIZE_RANGE);
    ck_assert_uint_eq(kt_ossl_rsa_generate(2049, NULL, 0, &key),
                      CKR_KEY_SIZE_RANGE);
    ck_assert_uint_eq(kt_ossl_rsa_generate(2048, even, sizeof(even), &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_rsa_generate(2048, one, sizeof(one), &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_rsa_generate(2048, big, sizeof(big), &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_ptr_null(key);
}
END_TEST

START_TEST(test_ec_generate_curves)
{
    static const struct {
        const unsigned char *params;
        size_t len;
        const unsigned char *canon;
        size_t canon_len;
        CK_ULONG bits;
        size_t point_der_len;
    } c[] = {
        {oid_p256, sizeof(oid_p256), oid_p256, sizeof(oid_p256), 256, 67},
        {oid_p384, sizeof(oid_p384), oid_p384, sizeof(oid_p384), 384, 99},
        {oid_p521, sizeof(oid_p521), oid_p521, sizeof(oid_p521), 521, 136},
        {name_p256, sizeof(name_p256), oid_p256, sizeof(oid_p256), 256, 67},
        {name_p384, sizeof(name_p384), oid_p384, sizeof(oid_p384), 384, 99},
    };
    EVP_PKEY *key = NULL;
    kt_ec_parts parts;
    kt_ossl_buf canon = {NULL, 0};

    ck_assert_uint_eq(kt_ossl_ec_generate(c[_i].params, c[_i].len, &key),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_key_type(key), CKK_EC);
    ck_assert_uint_eq(kt_ossl_key_bits(key), c[_i].bits);
    ck_assert_uint_eq(kt_ossl_ec_export(key, 1, &parts), CKR_OK);
    ck_assert_uint_eq(parts.params.len, c[_i].canon_len);
    ck_assert_mem_eq(parts.params.data, c[_i].canon, c[_i].canon_len);
    /* CKA_EC_POINT: OCTET STRING around 04 || X || Y */
    ck_assert_uint_eq(parts.point.len, c[_i].point_der_len);
    ck_assert_uint_eq(parts.point.data[0], 0x04);
    ck_assert_uint_eq(
        parts.point.data[parts.point.len - 2 * ((c[_i].bits + 7) / 8) - 1],
        0x04);
    ck_assert_uint_eq(parts.value.len, (c[_i].bits + 7) / 8);
    ck_assert_uint_eq(kt_ossl_ec_params_canon(c[_i].params, c[_i].len, &canon),
                      CKR_OK);
    ck_assert_mem_eq(canon.data, c[_i].canon, c[_i].canon_len);
    kt_ossl_buf_free(&canon);
    kt_ec_parts_free(&parts);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_ec_generate_bad_params)
{
    static const unsigned char trailing[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
                                             0x3d, 0x03, 0x01, 0x07, 0x00};
    static const unsigned char truncated[] = {0x06, 0x08, 0x2a, 0x86, 0x48};
    static const unsigned char junk[] = {0x04, 0x02, 0x01, 0x02};
    static const unsigned char unknown_name[] = {0x13, 0x03, 'f', 'o', 'o'};
    static const unsigned char explicit_params[] = {0x30, 0x03, 0x02, 0x01,
                                                    0x01};
    EVP_PKEY *key = NULL;

    ck_assert_uint_eq(kt_ossl_ec_generate(trailing, sizeof(trailing), &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_ec_generate(truncated, sizeof(truncated), &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_ec_generate(junk, sizeof(junk), &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_ec_generate(NULL, 0, &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_ec_generate(oid_p224, sizeof(oid_p224), &key),
                      CKR_CURVE_NOT_SUPPORTED);
    ck_assert_uint_eq(
        kt_ossl_ec_generate(unknown_name, sizeof(unknown_name), &key),
        CKR_CURVE_NOT_SUPPORTED);
    ck_assert_uint_eq(
        kt_ossl_ec_generate(explicit_params, sizeof(explicit_params), &key),
        CKR_CURVE_NOT_SUPPORTED);
    ck_assert_ptr_null(key);
}
END_TEST

/* ---- import ---------------------------------------------------------- */

START_TEST(test_rsa_import_roundtrip)
{
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    unsigned char sig[512], sig2[512];
    kt_rsa_parts parts, pub_parts;
    EVP_PKEY *priv = NULL, *nedonly = NULL, *pub = NULL;
    kt_ossl_buf save[5];
    size_t n;

    ck_assert_uint_eq(kt_ossl_rsa_export(rsa2048, 1, &parts), CKR_OK);
    ck_assert_uint_eq(kt_ossl_rsa_import(&parts, 1, &priv), CKR_OK);
    ck_assert_int_eq(EVP_PKEY_eq(priv, rsa2048), 1);
    n = sign_once(priv, &m, msg, sizeof(msg), sig);
    ck_assert_uint_eq(sign_once(rsa2048, &m, msg, sizeof(msg), sig2), n);
    ck_assert_mem_eq(sig, sig2, n);

    /* n, e, d only: still signs, the same PKCS#1 v1.5 signature */
    save[0] = parts.p, save[1] = parts.q, save[2] = parts.dp;
    save[3] = parts.dq, save[4] = parts.qinv;
    memset(&parts.p, 0, sizeof(parts.p));
    memset(&parts.q, 0, sizeof(parts.q));
    memset(&parts.dp, 0, sizeof(parts.dp));
    memset(&parts.dq, 0, sizeof(parts.dq));
    memset(&parts.qinv, 0, sizeof(parts.qinv));
    ck_assert_uint_eq(kt_ossl_rsa_import(&parts, 1, &nedonly), CKR_OK);
    ck_assert_uint_eq(sign_once(nedonly, &m, msg, sizeof(msg), sig2), n);
    ck_assert_mem_eq(sig, sig2, n);

    /* partial CRT set is refused */
    parts.p = save[0];
    ck_assert_uint_eq(kt_ossl_rsa_import(&parts, 1, &pub),
                      CKR_TEMPLATE_INCOMPLETE);
    parts.q = save[1], parts.dp = save[2], parts.dq = save[3];
    parts.qinv = save[4];

    /* public half */
    ck_assert_uint_eq(kt_ossl_rsa_export(rsa2048, 0, &pub_parts), CKR_OK);
    ck_assert_ptr_null(pub_parts.d.data);
    ck_assert_uint_eq(kt_ossl_rsa_import(&pub_parts, 0, &pub), CKR_OK);
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig, n), CKR_OK);
    /* a public-only key cannot sign */
    {
        kt_asym_op *op = NULL;
        ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_SIGN, &op),
                          CKR_KEY_TYPE_INCONSISTENT);
        ck_assert_ptr_null(op);
    }
    /* missing d */
    {
        EVP_PKEY *none = NULL;
        ck_assert_uint_eq(kt_ossl_rsa_import(&pub_parts, 1, &none),
                          CKR_TEMPLATE_INCOMPLETE);
        ck_assert_ptr_null(none);
    }
    EVP_PKEY_free(nedonly);
    kt_rsa_parts_free(&pub_parts);
    kt_rsa_parts_free(&parts);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
}
END_TEST

START_TEST(test_rsa_import_bad)
{
    unsigned char n_small[128], e_even[] = {0x01, 0x00, 0x00};
    unsigned char n2048[256];
    kt_rsa_parts parts;
    EVP_PKEY *key = (EVP_PKEY *)1;

    memset(n_small, 0xc5, sizeof(n_small));
    memset(n2048, 0xc5, sizeof(n2048));
    memset(&parts, 0, sizeof(parts));
    parts.n.data = n_small, parts.n.len = sizeof(n_small);
    parts.e.data = e_even, parts.e.len = sizeof(e_even);
    ck_assert_uint_eq(kt_ossl_rsa_import(&parts, 0, &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_ptr_null(key);
    parts.n.data = n2048, parts.n.len = sizeof(n2048);
    ck_assert_uint_eq(kt_ossl_rsa_import(&parts, 0, &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    parts.e.len = 0;
    ck_assert_uint_eq(kt_ossl_rsa_import(&parts, 0, &key),
                      CKR_TEMPLATE_INCOMPLETE);
}
END_TEST

START_TEST(test_ec_import_roundtrip)
{
    EVP_PKEY *keys[] = {ec256, ec384, ec521};
    EVP_PKEY *key = keys[_i], *priv = NULL, *pub = NULL, *pub2 = NULL;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char sig[200];
    kt_ec_parts parts, only_value, raw_point;
    size_t n;

    ck_assert_uint_eq(kt_ossl_ec_export(key, 1, &parts), CKR_OK);

    /* private value without the point: the point is computed */
    memset(&only_value, 0, sizeof(only_value));
    only_value.params = parts.params;
    only_value.value = parts.value;
    ck_assert_uint_eq(kt_ossl_ec_import(&only_value, 1, &priv), CKR_OK);
    ck_assert_int_eq(EVP_PKEY_eq(priv, key), 1);
    n = sign_once(priv, &m, msg, sizeof(msg), sig);

    /* public key from the DER point and from the bare point */
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 0, &pub), CKR_OK);
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig, n), CKR_OK);
    memset(&raw_point, 0, sizeof(raw_point));
    raw_point.params = parts.params;
    raw_point.point.data = parts.point.data + (parts.point.len - n - 1);
    raw_point.point.len = n + 1;
    ck_assert_uint_eq(raw_point.point.data[0], 0x04);
    ck_assert_uint_eq(kt_ossl_ec_import(&raw_point, 0, &pub2), CKR_OK);
    ck_assert_int_eq(EVP_PKEY_eq(pub2, key), 1);
    EVP_PKEY_free(pub2);
    pub2 = NULL;

    /* a point off the curve, or a point not matching the value */
    parts.point.data[parts.point.len - 1] ^= 0x01;
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 0, &pub2),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 1, &pub2),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_ptr_null(pub2);
    parts.point.data[parts.point.len - 1] ^= 0x01;

    kt_ec_parts_free(&parts);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
}
END_TEST

START_TEST(test_ec_import_bad_value)
{
    unsigned char zero[32] = {0}, big[32], toolong[33];
    kt_ec_parts parts;
    EVP_PKEY *key = NULL;

    memset(big, 0xff, sizeof(big));
    memset(toolong, 0x01, sizeof(toolong));
    memset(&parts, 0, sizeof(parts));
    parts.params.data = (unsigned char *)oid_p256;
    parts.params.len = sizeof(oid_p256);
    parts.value.data = zero, parts.value.len = sizeof(zero);
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 1, &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    parts.value.data = big; /* >= order */
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 1, &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    parts.value.data = toolong, parts.value.len = sizeof(toolong);
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 1, &key),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    parts.params.data = (unsigned char *)oid_p224;
    parts.params.len = sizeof(oid_p224);
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 1, &key),
                      CKR_CURVE_NOT_SUPPORTED);
    parts.value.len = 0;
    ck_assert_uint_eq(kt_ossl_ec_import(&parts, 1, &key),
                      CKR_TEMPLATE_INCOMPLETE);
    ck_assert_ptr_null(key);
}
END_TEST

START_TEST(test_spki)
{
    EVP_PKEY *pub;

    pub = public_half(rsa2048);
    ck_assert_uint_eq(kt_ossl_key_type(pub), CKK_RSA);
    EVP_PKEY_free(pub);
    pub = public_half(ec521);
    ck_assert_uint_eq(kt_ossl_key_type(pub), CKK_EC);
    EVP_PKEY_free(pub);
}
END_TEST

START_TEST(test_key_id)
{
    unsigned char a[KT_KEY_ID_LEN], b[KT_KEY_ID_LEN];
    EVP_PKEY *pub = public_half(ec256);

    ck_assert_uint_eq(kt_ossl_key_id(ec256, a), CKR_OK);
    ck_assert_uint_eq(kt_ossl_key_id(pub, b), CKR_OK);
    ck_assert_mem_eq(a, b, sizeof(a)); /* both halves get the same id */
    ck_assert_uint_eq(kt_ossl_key_id(ec384, b), CKR_OK);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    ck_assert_uint_eq(kt_ossl_key_id(rsa2048, b), CKR_OK);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    EVP_PKEY_free(pub);
}
END_TEST

/* A self-signed certificate made with OpenSSL directly. */
static unsigned char *make_cert(size_t *len)
{
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new(), *iss = X509_NAME_new();
    unsigned char *der = NULL;
    int n;

    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
                               (const unsigned char *)"keytier subject", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(iss, "CN", MBSTRING_ASC,
                               (const unsigned char *)"keytier issuer", -1, -1,
                               0);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234);
    X509_set_subject_name(x, subj);
    X509_set_issuer_name(x, iss);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, ec256);
    ck_assert_int_gt(X509_sign(x, ec256, EVP_sha256()), 0);
    n = i2d_X509(x, &der);
    ck_assert_int_gt(n, 0);
    *len = (size_t)n;
    X509_NAME_free(subj);
    X509_NAME_free(iss);
    X509_free(x);
    return der;
}

START_TEST(test_cert_fields)
{
    static const unsigned char serial[] = {0x02, 0x02, 0x12, 0x34};
    kt_cert_fields f;
    const unsigned char *p;
    X509_NAME *name;
    size_t len;
    unsigned char *der = make_cert(&len);
    char buf[64];

    ck_assert_uint_eq(kt_ossl_cert_fields(der, len, &f), CKR_OK);
    ck_assert_uint_eq(f.serial.len, sizeof(serial));
    ck_assert_mem_eq(f.serial.data, serial, sizeof(serial));
    p = f.subject.data;
    name = d2i_X509_NAME(NULL, &p, (long)f.subject.len);
    ck_assert_ptr_nonnull(name);
    X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof(buf));
    ck_assert_str_eq(buf, "keytier subject");
    X509_NAME_free(name);
    p = f.issuer.data;
    name = d2i_X509_NAME(NULL, &p, (long)f.issuer.len);
    X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof(buf));
    ck_assert_str_eq(buf, "keytier issuer");
    X509_NAME_free(name);
    kt_cert_fields_free(&f);

    /* truncated, trailing garbage, empty */
    ck_assert_uint_eq(kt_ossl_cert_fields(der, len - 1, &f),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_uint_eq(kt_ossl_cert_fields(der, 0, &f),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    {
        unsigned char *more = OPENSSL_malloc(len + 1);
        memcpy(more, der, len);
        more[len] = 0;
        ck_assert_uint_eq(kt_ossl_cert_fields(more, len + 1, &f),
                          CKR_ATTRIBUTE_VALUE_INVALID);
        OPENSSL_free(more);
    }
    ck_assert_ptr_null(f.subject.data);
    OPENSSL_free(der);
}
END_TEST

/* ---- signatures ------------------------------------------------------ */

static const struct sigcase {
    CK_MECHANISM_TYPE mech;
    int ec;
    CK_MECHANISM_TYPE pss_hash; /* PSS: hashAlg of the parameter */
    CK_RSA_PKCS_MGF_TYPE mgf;
    const char *md; /* for the independent OpenSSL check */
} sigcases[] = {
    {CKM_SHA1_RSA_PKCS, 0, 0, 0, "SHA1"},
    {CKM_SHA224_RSA_PKCS, 0, 0, 0, "SHA224"},
    {CKM_SHA256_RSA_PKCS, 0, 0, 0, "SHA256"},
    {CKM_SHA384_RSA_PKCS, 0, 0, 0, "SHA384"},
    {CKM_SHA512_RSA_PKCS, 0, 0, 0, "SHA512"},
    {CKM_SHA1_RSA_PKCS_PSS, 0, CKM_SHA_1, CKG_MGF1_SHA1, "SHA1"},
    {CKM_SHA224_RSA_PKCS_PSS, 0, CKM_SHA224, CKG_MGF1_SHA224, "SHA224"},
    {CKM_SHA256_RSA_PKCS_PSS, 0, CKM_SHA256, CKG_MGF1_SHA256, "SHA256"},
    {CKM_SHA384_RSA_PKCS_PSS, 0, CKM_SHA384, CKG_MGF1_SHA384, "SHA384"},
    {CKM_SHA512_RSA_PKCS_PSS, 0, CKM_SHA512, CKG_MGF1_SHA512, "SHA512"},
    {CKM_ECDSA_SHA1, 1, 0, 0, "SHA1"},
    {CKM_ECDSA_SHA224, 1, 0, 0, "SHA224"},
    {CKM_ECDSA_SHA256, 1, 0, 0, "SHA256"},
    {CKM_ECDSA_SHA384, 1, 0, 0, "SHA384"},
    {CKM_ECDSA_SHA512, 1, 0, 0, "SHA512"},
};
#define N_SIGCASES (sizeof(sigcases) / sizeof(sigcases[0]))

/* OpenSSL's own check of a PKCS#11 signature (ECDSA r||s turned into DER
 * by the test, independently of asym.c). */
static int openssl_verify(EVP_PKEY *key, const struct sigcase *c,
                          const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char der[200];
    size_t der_len = sig_len;
    int ok;

    if (c->ec) {
        ECDSA_SIG *s = ECDSA_SIG_new();
        unsigned char *p = der;
        ECDSA_SIG_set0(s, BN_bin2bn(sig, (int)sig_len / 2, NULL),
                       BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2, NULL));
        der_len = (size_t)i2d_ECDSA_SIG(s, &p);
        ECDSA_SIG_free(s);
        sig = der;
    }
    ck_assert(
        EVP_DigestVerifyInit_ex(md, &pctx, c->md, NULL, NULL, key, NULL) == 1);
    if (c->pss_hash) {
        ck_assert(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) ==
                  1);
        ck_assert(
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1);
    }
    ok = EVP_DigestVerify(md, sig, der_len, msg, sizeof(msg));
    EVP_MD_CTX_free(md);
    return ok;
}

START_TEST(test_sign_verify_all)
{
    const struct sigcase *c = &sigcases[_i % N_SIGCASES];
    EVP_PKEY *ec_keys[] = {ec256, ec384, ec521};
    EVP_PKEY *key = c->ec ? ec_keys[_i / N_SIGCASES] : rsa2048;
    EVP_PKEY *pub = public_half(key);
    CK_RSA_PKCS_PSS_PARAMS pss = {c->pss_hash, c->mgf, 20};
    CK_MECHANISM m = {c->mech, NULL, 0};
    unsigned char sig[600], sig2[600];
    kt_asym_op *op = NULL;
    size_t n, n2 = 0;

    if (c->pss_hash) {
        m.pParameter = &pss;
        m.ulParameterLen = sizeof(pss);
    }
    ck_assert(kt_ossl_asym_mech_multipart(c->mech));
    n = sign_once(key, &m, msg, sizeof(msg), sig);
    ck_assert_uint_eq(n, c->ec ? 2 * ((kt_ossl_key_bits(key) + 7) / 8) : 256);
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig, n), CKR_OK);
    ck_assert_int_eq(openssl_verify(pub, c, sig, n), 1);

    /* multi-part in three pieces gives a signature the single-part verify
     * accepts, and multi-part verify accepts the single-part signature */
    ck_assert_uint_eq(kt_ossl_asym_init(&m, key, KT_ASYM_SIGN, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg, 5), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg + 5, 0), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg + 5, sizeof(msg) - 5),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_sign_final(op, sig2, &n2), CKR_OK);
    kt_ossl_asym_free(op);
    ck_assert_uint_eq(n2, n);
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig2, n2), CKR_OK);
    if (!c->ec && !c->pss_hash) /* deterministic */
        ck_assert_mem_eq(sig, sig2, n);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_VERIFY, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg, 7), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg + 7, sizeof(msg) - 7),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_verify_final(op, sig, n), CKR_OK);
    kt_ossl_asym_free(op);

    /* tampered signature, tampered message, wrong lengths */
    sig[n / 2] ^= 0x40;
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig, n),
                      CKR_SIGNATURE_INVALID);
    sig[n / 2] ^= 0x40;
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg) - 1, sig, n),
                      CKR_SIGNATURE_INVALID);
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig, n - 1),
                      CKR_SIGNATURE_LEN_RANGE);
    ck_assert_uint_eq(verify_once(pub, &m, msg, sizeof(msg), sig, n + 1),
                      CKR_SIGNATURE_LEN_RANGE);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_VERIFY, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg, sizeof(msg)), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_verify_final(op, sig, 3),
                      CKR_SIGNATURE_LEN_RANGE);
    kt_ossl_asym_free(op);

    /* the key of the other family is inconsistent with the mechanism */
    ck_assert_uint_eq(
        kt_ossl_asym_init(&m, c->ec ? rsa2048 : ec256, KT_ASYM_SIGN, &op),
        CKR_KEY_TYPE_INCONSISTENT);
    ck_assert_ptr_null(op);
    /* signature mechanisms do not encrypt */
    ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_ENCRYPT, &op),
                      CKR_MECHANISM_INVALID);
    EVP_PKEY_free(pub);
}
END_TEST

/* CKM_RSA_PKCS over a DigestInfo equals CKM_SHA256_RSA_PKCS over the
 * message; CKM_ECDSA and CKM_RSA_PKCS_PSS over the hash verify as the
 * hashing variants. */
START_TEST(test_raw_mechanisms)
{
    CK_MECHANISM raw = {CKM_RSA_PKCS, NULL, 0};
    CK_MECHANISM hashed = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM raw_pss = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
    CK_MECHANISM hashed_pss = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    CK_MECHANISM ecdsa256 = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char di[sizeof(sha256_prefix) + 32], h[32];
    unsigned char sig[512], sig2[512], big[300];
    kt_asym_op *op = NULL;
    size_t n, n2;

    sha256(msg, sizeof(msg), h);
    memcpy(di, sha256_prefix, sizeof(sha256_prefix));
    memcpy(di + sizeof(sha256_prefix), h, 32);
    ck_assert(!kt_ossl_asym_mech_multipart(CKM_RSA_PKCS));
    ck_assert(!kt_ossl_asym_mech_multipart(CKM_ECDSA));
    ck_assert(!kt_ossl_asym_mech_multipart(CKM_RSA_PKCS_PSS));

    n = sign_once(rsa2048, &raw, di, sizeof(di), sig);
    n2 = sign_once(rsa2048, &hashed, msg, sizeof(msg), sig2);
    ck_assert_uint_eq(n, n2);
    ck_assert_mem_eq(sig, sig2, n);
    ck_assert_uint_eq(verify_once(rsa2048, &raw, di, sizeof(di), sig, n),
                      CKR_OK);
    di[5] ^= 1;
    ck_assert_uint_eq(verify_once(rsa2048, &raw, di, sizeof(di), sig, n),
                      CKR_SIGNATURE_INVALID);
    /* raw PKCS#1 v1.5 input longer than k - 11 */
    memset(big, 1, sizeof(big));
    ck_assert_uint_eq(kt_ossl_asym_init(&raw, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, big, 246, sig, &n2),
                      CKR_DATA_LEN_RANGE);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, big, 245, sig, &n2), CKR_OK);
    /* single-part mechanisms have no update */
    ck_assert_uint_eq(kt_ossl_asym_update(op, big, 1),
                      CKR_FUNCTION_NOT_SUPPORTED);
    kt_ossl_asym_free(op);

    n = sign_once(rsa2048, &raw_pss, h, sizeof(h), sig);
    ck_assert_uint_eq(
        verify_once(rsa2048, &hashed_pss, msg, sizeof(msg), sig, n), CKR_OK);
    ck_assert_uint_eq(verify_once(rsa2048, &raw_pss, h, sizeof(h), sig, n),
                      CKR_OK);
    /* the raw PSS input must be exactly one hash long */
    ck_assert_uint_eq(kt_ossl_asym_init(&raw_pss, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, h, 31, sig, &n2),
                      CKR_DATA_LEN_RANGE);
    kt_ossl_asym_free(op);

    n = sign_once(ec256, &ecdsa, h, sizeof(h), sig);
    ck_assert_uint_eq(n, 64);
    ck_assert_uint_eq(verify_once(ec256, &ecdsa256, msg, sizeof(msg), sig, n),
                      CKR_OK);
    n = sign_once(ec256, &ecdsa256, msg, sizeof(msg), sig);
    ck_assert_uint_eq(verify_once(ec256, &ecdsa, h, sizeof(h), sig, n), CKR_OK);
    /* r = s = 0 is not a signature */
    memset(sig, 0, n);
    ck_assert_uint_eq(verify_once(ec256, &ecdsa, h, sizeof(h), sig, n),
                      CKR_SIGNATURE_INVALID);
    /* ECDSA takes no parameter */
    ecdsa.pParameter = &pss;
    ecdsa.ulParameterLen = sizeof(pss);
    ck_assert_uint_eq(kt_ossl_asym_init(&ecdsa, ec256, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
}
END_TEST

START_TEST(test_pss_params)
{
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 0};
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
    kt_asym_op *op = NULL;

    /* sLen bound for a 2048-bit key: emLen - hLen - 2 = 256 - 32 - 2 */
    pss.sLen = 222;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_OK);
    kt_ossl_asym_free(op);
    op = NULL;
    pss.sLen = 223;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    pss.sLen = (CK_ULONG)-1;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_VERIFY, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    pss.sLen = 32;
    pss.hashAlg = CKM_SHA384; /* not the mechanism's hash */
    pss.mgf = CKG_MGF1_SHA384;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    pss.hashAlg = CKM_SHA256;
    pss.mgf = CKG_MGF1_SHA1; /* mask generator on another hash */
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    pss.mgf = 0x77;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    pss.mgf = CKG_MGF1_SHA256;
    m.ulParameterLen = sizeof(pss) - 1;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    m.pParameter = NULL;
    m.ulParameterLen = 0;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    /* raw PSS: the parameter names any SHA hash */
    m.mechanism = CKM_RSA_PKCS_PSS;
    m.pParameter = &pss;
    m.ulParameterLen = sizeof(pss);
    pss.hashAlg = CKM_MD5;
    pss.mgf = CKG_MGF1_SHA256;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    ck_assert_ptr_null(op);
    /* PKCS#1 v1.5 takes no parameter */
    m.mechanism = CKM_SHA256_RSA_PKCS;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    m.mechanism = CKM_AES_ECB;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_INVALID);
    ck_assert_ptr_null(op);
}
END_TEST

/* ---- encryption ------------------------------------------------------ */

START_TEST(test_oaep)
{
    static const CK_MECHANISM_TYPE hashes[] = {CKM_SHA_1, CKM_SHA256,
                                               CKM_SHA384, CKM_SHA512};
    static const CK_RSA_PKCS_MGF_TYPE mgfs[] = {
        CKG_MGF1_SHA1, CKG_MGF1_SHA256, CKG_MGF1_SHA384, CKG_MGF1_SHA512};
    static const size_t hlen[] = {20, 32, 48, 64};
    unsigned char label[] = "keytier-label";
    CK_RSA_PKCS_OAEP_PARAMS p = {hashes[_i], mgfs[_i], CKZ_DATA_SPECIFIED,
                                 label, sizeof(label) - 1};
    CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
    EVP_PKEY *pub = public_half(rsa2048);
    unsigned char key[32], ct[256], pt[256];
    size_t ct_len = 0, pt_len = sizeof(pt), max_in = 256 - 2 * hlen[_i] - 2;
    kt_asym_op *op = NULL;

    memset(key, 0x5a, sizeof(key));
    ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_ENCRYPT, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_out_len(op), 256);
    ck_assert_uint_eq(kt_ossl_asym_encrypt(op, key, sizeof(key), ct, &ct_len),
                      CKR_OK);
    ck_assert_uint_eq(ct_len, 256);
    {
        unsigned char big[256] = {0};
        size_t l = 0;
        ck_assert_uint_eq(kt_ossl_asym_encrypt(op, big, max_in + 1, ct, &l),
                          CKR_DATA_LEN_RANGE);
    }
    kt_ossl_asym_free(op);

    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_OK);
    ck_assert_uint_eq(pt_len, sizeof(key));
    ck_assert_mem_eq(pt, key, sizeof(key));
    /* short output buffer: the needed length, nothing written */
    memset(pt, 0, sizeof(pt));
    pt_len = 31;
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(pt_len, 32);
    ck_assert_uint_eq(pt[0], 0);
    /* corrupted and wrong-length ciphertexts */
    ct[100] ^= 0x01;
    pt_len = sizeof(pt);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_ENCRYPTED_DATA_INVALID);
    ck_assert_uint_eq(pt[0], 0);
    ct[100] ^= 0x01;
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len - 1, pt, &pt_len),
                      CKR_ENCRYPTED_DATA_LEN_RANGE);
    kt_ossl_asym_free(op);

    /* another label does not decrypt */
    label[0] ^= 1;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_OK);
    pt_len = sizeof(pt);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_ENCRYPTED_DATA_INVALID);
    kt_ossl_asym_free(op);
    /* no label does not decrypt either */
    p.source = 0;
    p.pSourceData = NULL;
    p.ulSourceDataLen = 0;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_OK);
    pt_len = sizeof(pt);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_ENCRYPTED_DATA_INVALID);
    kt_ossl_asym_free(op);
    EVP_PKEY_free(pub);
}
END_TEST

START_TEST(test_oaep_params)
{
    CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 0, NULL, 0};
    CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
    kt_asym_op *op = NULL;

    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_OK);
    kt_ossl_asym_free(op);
    op = NULL;
    p.mgf = CKG_MGF1_SHA1;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    p.mgf = CKG_MGF1_SHA256;
    p.hashAlg = CKM_MD5;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    p.hashAlg = CKM_SHA256;
    p.source = 2;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    p.source = CKZ_DATA_SPECIFIED;
    p.ulSourceDataLen = 4; /* length without data */
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    p.ulSourceDataLen = 0;
    m.ulParameterLen = 4;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    m.pParameter = NULL;
    m.ulParameterLen = sizeof(p);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    /* OAEP does not sign; EC keys do not encrypt */
    m.pParameter = &p;
    m.ulParameterLen = sizeof(p);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_INVALID);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, ec256, KT_ASYM_ENCRYPT, &op),
                      CKR_KEY_TYPE_INCONSISTENT);
    ck_assert_ptr_null(op);
}
END_TEST

START_TEST(test_rsa_pkcs_encrypt)
{
    CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
    EVP_PKEY *pub = public_half(rsa2048);
    unsigned char in[245], ct[256], pt[256];
    size_t ct_len = 0, pt_len = sizeof(pt);
    kt_asym_op *op = NULL;

    memset(in, 0xa7, sizeof(in));
    ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_ENCRYPT, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_encrypt(op, in, 246, ct, &ct_len),
                      CKR_DATA_LEN_RANGE);
    ck_assert_uint_eq(kt_ossl_asym_encrypt(op, in, sizeof(in), ct, &ct_len),
                      CKR_OK);
    kt_ossl_asym_free(op);
    /* a public key cannot decrypt */
    ck_assert_uint_eq(kt_ossl_asym_init(&m, pub, KT_ASYM_DECRYPT, &op),
                      CKR_KEY_TYPE_INCONSISTENT);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_OK);
    ck_assert_uint_eq(pt_len, sizeof(in));
    ck_assert_mem_eq(pt, in, sizeof(in));
    /* operations are checked against their mode */
    ck_assert_uint_eq(kt_ossl_asym_encrypt(op, in, 1, ct, &ct_len),
                      CKR_OPERATION_NOT_INITIALIZED);
    kt_ossl_asym_free(op);
    EVP_PKEY_free(pub);
}
END_TEST

/* ---- ECDH ------------------------------------------------------------ */

START_TEST(test_ecdh)
{
    EVP_PKEY *other = NULL;
    kt_ec_parts a, b;
    kt_ossl_buf s1 = {NULL, 0}, s2 = {NULL, 0}, s3 = {NULL, 0};
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 0, NULL};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    kt_ec_parts c384;

    ck_assert_uint_eq(kt_ossl_ec_generate(oid_p256, sizeof(oid_p256), &other),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_ec_export(ec256, 0, &a), CKR_OK);
    ck_assert_uint_eq(kt_ossl_ec_export(other, 0, &b), CKR_OK);
    p.pPublicData = b.point.data;
    p.ulPublicDataLen = b.point.len;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(ec256, &m, 0, &s1), CKR_OK);
    ck_assert_uint_eq(s1.len, 32);
    /* the other side with the bare point */
    p.pPublicData = a.point.data + 2;
    p.ulPublicDataLen = a.point.len - 2;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(other, &m, 0, &s2), CKR_OK);
    ck_assert_uint_eq(s2.len, 32);
    ck_assert_mem_eq(s1.data, s2.data, 32);

    /* bad parameters: a KDF not offered (ASN.1 form), shared data without
     * a KDF, no point, point of another curve, point off the curve, wrong
     * key type */
    p.kdf = CKD_SHA1_KDF_ASN1;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(other, &m, 0, &s3),
                      CKR_MECHANISM_PARAM_INVALID);
    p.kdf = CKD_NULL;
    p.pSharedData = (unsigned char *)msg;
    p.ulSharedDataLen = 4;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(other, &m, 0, &s3),
                      CKR_MECHANISM_PARAM_INVALID);
    p.pSharedData = NULL;
    p.ulSharedDataLen = 0;
    ck_assert_uint_eq(kt_ossl_ec_export(ec384, 0, &c384), CKR_OK);
    p.pPublicData = c384.point.data;
    p.ulPublicDataLen = c384.point.len;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(other, &m, 0, &s3),
                      CKR_MECHANISM_PARAM_INVALID);
    p.pPublicData = a.point.data;
    p.ulPublicDataLen = a.point.len;
    a.point.data[a.point.len - 1] ^= 1;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(other, &m, 0, &s3),
                      CKR_MECHANISM_PARAM_INVALID);
    a.point.data[a.point.len - 1] ^= 1;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(rsa2048, &m, 0, &s3),
                      CKR_KEY_TYPE_INCONSISTENT);
    m.ulParameterLen = 3;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(other, &m, 0, &s3),
                      CKR_MECHANISM_PARAM_INVALID);
    ck_assert_ptr_null(s3.data);

    kt_ec_parts_free(&c384);
    kt_ec_parts_free(&a);
    kt_ec_parts_free(&b);
    kt_ossl_buf_free(&s1);
    kt_ossl_buf_free(&s2);
    EVP_PKEY_free(other);
}
END_TEST

/* No OAEP parameter: SHA-1/MGF1-SHA-1 without label, what plain OpenSSL
 * does by default. */
START_TEST(test_oaep_default_params)
{
    CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED,
                                 NULL, 0};
    CK_MECHANISM none = {CKM_RSA_PKCS_OAEP, NULL, 0};
    CK_MECHANISM sha1 = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
    unsigned char in[16] = "0123456789abcdef", ct[256], pt[256];
    size_t ct_len = 0, pt_len = sizeof(pt);
    kt_asym_op *op = NULL;

    ck_assert_uint_eq(kt_ossl_asym_init(&none, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_encrypt(op, in, sizeof(in), ct, &ct_len),
                      CKR_OK);
    kt_ossl_asym_free(op);
    ck_assert_uint_eq(kt_ossl_asym_init(&sha1, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ct_len, pt, &pt_len),
                      CKR_OK);
    ck_assert_uint_eq(pt_len, sizeof(in));
    ck_assert_mem_eq(pt, in, sizeof(in));
    kt_ossl_asym_free(op);
}
END_TEST

/* CKM_RSA_X_509: raw RSA; short input is an integer left-padded to k. */
START_TEST(test_rsa_x509)
{
    CK_MECHANISM raw = {CKM_RSA_X_509, NULL, 0};
    unsigned char in[257], sig[256], sig2[256];
    size_t n = 0;
    kt_asym_op *op = NULL;

    memset(in, 0, sizeof(in));
    memset(in + 200, 0x42, 56);
    n = sign_once(rsa2048, &raw, in + 200, 56, sig);
    ck_assert_uint_eq(n, 256);
    ck_assert_uint_eq(sign_once(rsa2048, &raw, in, 256, sig2), 256);
    ck_assert_mem_eq(sig, sig2, 256);
    ck_assert_uint_eq(verify_once(rsa2048, &raw, in + 200, 56, sig, n), CKR_OK);
    ck_assert_uint_eq(verify_once(rsa2048, &raw, in, 256, sig, n), CKR_OK);
    in[255] ^= 1;
    ck_assert_uint_eq(verify_once(rsa2048, &raw, in, 256, sig, n),
                      CKR_SIGNATURE_INVALID);
    /* not below the modulus; longer than the modulus */
    memset(in, 0xff, sizeof(in));
    ck_assert_uint_eq(kt_ossl_asym_init(&raw, rsa2048, KT_ASYM_SIGN, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, in, 256, sig, &n),
                      CKR_DATA_INVALID);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, in, 257, sig, &n),
                      CKR_DATA_LEN_RANGE);
    kt_ossl_asym_free(op);
    /* raw encryption: the same integer as the raw signature's input, sent
     * back by the private key as a whole modulus-sized block */
    memset(in, 0, sizeof(in));
    memset(in + 200, 0x42, 56);
    ck_assert_uint_eq(kt_ossl_asym_init(&raw, rsa2048, KT_ASYM_ENCRYPT, &op),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_encrypt(op, in + 200, 56, sig, &n), CKR_OK);
    ck_assert_uint_eq(n, 256);
    kt_ossl_asym_free(op);
    ck_assert_uint_eq(kt_ossl_asym_init(&raw, rsa2048, KT_ASYM_DECRYPT, &op),
                      CKR_OK);
    n = sizeof(sig2);
    ck_assert_uint_eq(kt_ossl_asym_decrypt(op, sig, 256, sig2, &n), CKR_OK);
    ck_assert_uint_eq(n, 256);
    ck_assert_mem_eq(sig2, in, 256);
    kt_ossl_asym_free(op);
}
END_TEST

/* A cached key: later operations start from a duplicated template and
 * behave exactly like the first (also across modes and mechanisms). */
START_TEST(test_cached_key_templates)
{
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    CK_MECHANISM pkcs = {CKM_RSA_PKCS, NULL, 0};
    unsigned char h[32], sig[512], ct[256], pt[256];
    kt_asym_key *ek = NULL, *rk = NULL;
    kt_asym_op *op = NULL;
    size_t n = 0, ctl = 0, ptl;

    sha256(msg, sizeof(msg), h);
    ck_assert_uint_eq(kt_ossl_asym_key_new(ec256, &ek), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_key_new(rsa2048, &rk), CKR_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(kt_ossl_asym_init_key(&ecdsa, ek, KT_ASYM_SIGN, &op),
                          CKR_OK);
        ck_assert_uint_eq(kt_ossl_asym_sign(op, h, sizeof(h), sig, &n), CKR_OK);
        kt_ossl_asym_free(op);
        ck_assert_uint_eq(
            kt_ossl_asym_init_key(&ecdsa, ek, KT_ASYM_VERIFY, &op), CKR_OK);
        ck_assert_uint_eq(kt_ossl_asym_verify(op, h, sizeof(h), sig, n),
                          CKR_OK);
        sig[3] ^= 1;
        ck_assert_uint_eq(kt_ossl_asym_verify(op, h, sizeof(h), sig, n),
                          CKR_SIGNATURE_INVALID);
        kt_ossl_asym_free(op);

        ck_assert_uint_eq(
            kt_ossl_asym_init_key(&pkcs, rk, KT_ASYM_ENCRYPT, &op), CKR_OK);
        ck_assert_uint_eq(kt_ossl_asym_encrypt(op, h, sizeof(h), ct, &ctl),
                          CKR_OK);
        kt_ossl_asym_free(op);
        ck_assert_uint_eq(
            kt_ossl_asym_init_key(&pkcs, rk, KT_ASYM_DECRYPT, &op), CKR_OK);
        ptl = sizeof(pt);
        ck_assert_uint_eq(kt_ossl_asym_decrypt(op, ct, ctl, pt, &ptl), CKR_OK);
        ck_assert_uint_eq(ptl, sizeof(h));
        ck_assert_mem_eq(pt, h, sizeof(h));
        /* the input limit comes with the template */
        ck_assert_uint_eq(kt_ossl_asym_encrypt(op, h, sizeof(h), ct, &ctl),
                          CKR_OPERATION_NOT_INITIALIZED);
        kt_ossl_asym_free(op);
        ck_assert_uint_eq(kt_ossl_asym_init_key(&pkcs, rk, KT_ASYM_SIGN, &op),
                          CKR_OK);
        ck_assert_uint_eq(kt_ossl_asym_sign(op, sig, 246, sig, &n),
                          CKR_DATA_LEN_RANGE);
        kt_ossl_asym_free(op);
    }
    /* the wrong key type is still refused from the cached facts */
    ck_assert_uint_eq(kt_ossl_asym_init_key(&ecdsa, rk, KT_ASYM_SIGN, &op),
                      CKR_KEY_TYPE_INCONSISTENT);
    kt_ossl_asym_key_free(ek);
    kt_ossl_asym_key_free(rk);
}
END_TEST

static Suite *asym_suite(void)
{
    Suite *s = suite_create("ossl_asym");
    TCase *gen = tcase_create("generate");
    TCase *imp = tcase_create("import");
    TCase *ops = tcase_create("operations");

    tcase_set_timeout(gen, 240);
    tcase_add_loop_test(gen, test_rsa_generate_sizes, 0, 3);
    tcase_add_test(gen, test_rsa_generate_bad);
    tcase_add_loop_test(gen, test_ec_generate_curves, 0, 5);
    tcase_add_test(gen, test_ec_generate_bad_params);
    suite_add_tcase(s, gen);

    tcase_add_unchecked_fixture(imp, setup, NULL);
    tcase_set_timeout(imp, 120);
    tcase_add_test(imp, test_rsa_import_roundtrip);
    tcase_add_test(imp, test_rsa_import_bad);
    tcase_add_loop_test(imp, test_ec_import_roundtrip, 0, 3);
    tcase_add_test(imp, test_ec_import_bad_value);
    tcase_add_test(imp, test_spki);
    tcase_add_test(imp, test_key_id);
    tcase_add_test(imp, test_cert_fields);
    suite_add_tcase(s, imp);

    tcase_add_unchecked_fixture(ops, setup, NULL);
    tcase_set_timeout(ops, 120);
    /* RSA cases once, ECDSA cases on each of the three curves */
    tcase_add_loop_test(ops, test_sign_verify_all, 0, (int)(3 * N_SIGCASES));
    tcase_add_test(ops, test_raw_mechanisms);
    tcase_add_test(ops, test_pss_params);
    tcase_add_loop_test(ops, test_oaep, 0, 4);
    tcase_add_test(ops, test_oaep_params);
    tcase_add_test(ops, test_oaep_default_params);
    tcase_add_test(ops, test_rsa_x509);
    tcase_add_test(ops, test_cached_key_templates);
    tcase_add_test(ops, test_rsa_pkcs_encrypt);
    tcase_add_test(ops, test_ecdh);
    suite_add_tcase(s, ops);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(asym_suite());
    int failed;

    /* One process for all tests: the key fixtures are generated once. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(ec256);
    EVP_PKEY_free(ec384);
    EVP_PKEY_free(ec521);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
