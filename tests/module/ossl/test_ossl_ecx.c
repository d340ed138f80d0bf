/*
 * Unit tests of the Edwards (Ed25519, Ed448) and Montgomery (X25519, X448)
 * keys of module/ossl/asym.c, ECDH with the X9.63 KDFs, the curve names
 * and OIDs tools send, and the key <-> attribute conversions of
 * module/mech/ops_asym.c that private-key wrapping uses. OpenSSL, called
 * directly, is the reference.
 */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/obj_mac.h>
#include <openssl/dsa.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "mech/kt_asym.h"
#include "ossl/asym.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const unsigned char msg[] = "keytier ecx unit test message";

static const struct ecx {
    const char *name; /* OpenSSL's */
    unsigned char oid[5];
    const char *p11; /* PKCS#11 3.0 curve name */
    CK_KEY_TYPE type;
    size_t len;
} ecx[] = {
    {"ED25519",
     {0x06, 0x03, 0x2b, 0x65, 0x70},
     "edwards25519",
     CKK_EC_EDWARDS,
     32},
    {"ED448", {0x06, 0x03, 0x2b, 0x65, 0x71}, "edwards448", CKK_EC_EDWARDS, 57},
    {"X25519",
     {0x06, 0x03, 0x2b, 0x65, 0x6e},
     "curve25519",
     CKK_EC_MONTGOMERY,
     32},
    {"X448", {0x06, 0x03, 0x2b, 0x65, 0x6f}, "curve448", CKK_EC_MONTGOMERY, 56},
};

static size_t printable(const char *name, unsigned char *out)
{
    size_t n = strlen(name);
    out[0] = 0x13;
    out[1] = (unsigned char)n;
    memcpy(out + 2, name, n);
    return n + 2;
}

static void canon_is(const unsigned char *params, size_t len,
                     const unsigned char *oid, size_t oid_len, CK_KEY_TYPE type)
{
    kt_ossl_buf c = {NULL, 0};
    CK_KEY_TYPE t = 0;
    ck_assert_uint_eq(kt_ossl_ec_params_canon(params, len, &c), CKR_OK);
    ck_assert_uint_eq(c.len, oid_len);
    ck_assert_mem_eq(c.data, oid, oid_len);
    kt_ossl_buf_free(&c);
    ck_assert_uint_eq(kt_ossl_ec_params_key_type(params, len, &t), CKR_OK);
    ck_assert_uint_eq(t, type);
}

/* CKA_EC_PARAMS as tools send it: RFC 8410 OIDs, PKCS#11 3.0 names, the
 * GnuPG OIDs of pkcs11-tool before 0.24, pkcs11-tool 0.23's "curve25519"
 * with a length octet of 11; Brainpool and secp256k1 by name. */
START_TEST(test_curve_names)
{
    unsigned char p[64];
    static const unsigned char gnupg_ed[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x04,
                                             0x01, 0xda, 0x47, 0x0f, 0x01};
    static const unsigned char gnupg_x[] = {0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04,
                                            0x01, 0x97, 0x55, 0x01, 0x05, 0x01};
    static const unsigned char tool023[] = {0x13, 0x0b, 'c', 'u', 'r', 'v',
                                            'e',  '2',  '5', '5', '1', '9'};
    static const unsigned char k1[] = {0x06, 0x05, 0x2b, 0x81,
                                       0x04, 0x00, 0x0a};
    static const unsigned char bp512[] = {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03,
                                          0x02, 0x08, 0x01, 0x01, 0x0d};
    kt_ossl_buf c = {NULL, 0};
    CK_KEY_TYPE t;

    for (size_t i = 0; i < N(ecx); i++) {
        canon_is(ecx[i].oid, 5, ecx[i].oid, 5, ecx[i].type);
        canon_is(p, printable(ecx[i].p11, p), ecx[i].oid, 5, ecx[i].type);
    }
    canon_is(gnupg_ed, sizeof(gnupg_ed), ecx[0].oid, 5, CKK_EC_EDWARDS);
    canon_is(gnupg_x, sizeof(gnupg_x), ecx[2].oid, 5, CKK_EC_MONTGOMERY);
    canon_is(tool023, sizeof(tool023), ecx[2].oid, 5, CKK_EC_MONTGOMERY);
    canon_is(p, printable("secp256k1", p), k1, sizeof(k1), CKK_EC);
    canon_is(p, printable("brainpoolP512r1", p), bp512, sizeof(bp512), CKK_EC);
    /* an unknown name, a curve not offered, the 0.23 length octet on
     * another string */
    ck_assert_uint_eq(kt_ossl_ec_params_canon(p, printable("edwards1", p), &c),
                      CKR_CURVE_NOT_SUPPORTED);
    ck_assert_uint_eq(kt_ossl_ec_params_canon(p, printable("secp224r1", p), &c),
                      CKR_CURVE_NOT_SUPPORTED);
    memcpy(p, tool023, sizeof(tool023));
    p[11] = '8';
    ck_assert_uint_eq(kt_ossl_ec_params_key_type(p, sizeof(tool023), &t),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_ptr_null(c.data);
}
END_TEST

/* Generated keys: facts, export, import of the private value (the public
 * key computed) and of the point (DER and raw), all equal to the original
 * by OpenSSL's comparison. */
START_TEST(test_ecx_roundtrip)
{
    const struct ecx *e = &ecx[_i];
    EVP_PKEY *key = NULL, *priv = NULL, *pub = NULL, *pub2 = NULL;
    kt_ec_parts parts, in;
    unsigned char raw[64];
    size_t rl = sizeof(raw);

    ck_assert_uint_eq(kt_ossl_ec_generate(e->oid, 5, &key), CKR_OK);
    ck_assert(EVP_PKEY_is_a(key, e->name));
    ck_assert_uint_eq(kt_ossl_key_type(key), e->type);
    ck_assert(kt_ossl_key_is_private(key));
    ck_assert_uint_eq(kt_ossl_ec_export(key, 1, &parts), CKR_OK);
    ck_assert_uint_eq(parts.params.len, 5);
    ck_assert_mem_eq(parts.params.data, e->oid, 5);
    ck_assert_uint_eq(parts.point.len, e->len + 2);
    ck_assert_uint_eq(parts.point.data[0], 0x04);
    ck_assert_uint_eq(parts.point.data[1], e->len);
    ck_assert(EVP_PKEY_get_raw_public_key(key, raw, &rl) == 1);
    ck_assert_mem_eq(parts.point.data + 2, raw, e->len);
    rl = sizeof(raw);
    ck_assert(EVP_PKEY_get_raw_private_key(key, raw, &rl) == 1);
    ck_assert_uint_eq(parts.value.len, e->len);
    ck_assert_mem_eq(parts.value.data, raw, e->len);

    in = (kt_ec_parts){parts.params, {NULL, 0}, parts.value};
    ck_assert_uint_eq(kt_ossl_ec_import(&in, 1, &priv), CKR_OK);
    ck_assert_int_eq(EVP_PKEY_eq(priv, key), 1);
    in = (kt_ec_parts){parts.params, parts.point, {NULL, 0}};
    ck_assert_uint_eq(kt_ossl_ec_import(&in, 0, &pub), CKR_OK);
    ck_assert(!kt_ossl_key_is_private(pub));
    ck_assert_int_eq(EVP_PKEY_eq(pub, key), 1);
    in.point.data += 2;
    in.point.len -= 2;
    ck_assert_uint_eq(kt_ossl_ec_import(&in, 0, &pub2), CKR_OK);
    ck_assert_int_eq(EVP_PKEY_eq(pub2, key), 1);
    EVP_PKEY_free(pub2);
    /* wrong lengths; a private value with another key's point */
    in.point.len -= 1;
    ck_assert_uint_eq(kt_ossl_ec_import(&in, 0, &pub2),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    in = (kt_ec_parts){parts.params, {NULL, 0}, parts.value};
    in.value.len -= 1;
    ck_assert_uint_eq(kt_ossl_ec_import(&in, 1, &pub2),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    in = (kt_ec_parts){parts.params, parts.point, parts.value};
    parts.point.data[5] ^= 1;
    ck_assert_uint_eq(kt_ossl_ec_import(&in, 1, &pub2),
                      CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_ptr_null(pub2);
    kt_ec_parts_free(&parts);
    EVP_PKEY_free(key);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
}
END_TEST

static int ossl_eddsa_verify(EVP_PKEY *k, const unsigned char *sig,
                             size_t sig_len)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit_ex(c, NULL, NULL, NULL, NULL, k, NULL) == 1 &&
             EVP_DigestVerify(c, sig, sig_len, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* CKM_EDDSA through kt_ossl_asym_*: one-shot and gathered multi-part
 * signatures verified by OpenSSL; parameters; Montgomery keys refused. */
START_TEST(test_eddsa)
{
    const struct ecx *e = &ecx[_i];
    CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
    struct kt_eddsa_params prm = {CK_FALSE, 0, NULL};
    EVP_PKEY *key = NULL, *x = NULL;
    kt_asym_op *op = NULL;
    unsigned char sig[128];
    size_t n = 0;

    ck_assert_uint_eq(kt_ossl_ec_generate(e->oid, 5, &key), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, key, KT_ASYM_SIGN, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_out_len(op), 2 * e->len);
    ck_assert_uint_eq(kt_ossl_asym_sign(op, msg, sizeof(msg), sig, &n), CKR_OK);
    kt_ossl_asym_free(op);
    ck_assert(ossl_eddsa_verify(key, sig, n));
    m.pParameter = &prm;
    m.ulParameterLen = sizeof(prm);
    ck_assert_uint_eq(kt_ossl_asym_init(&m, key, KT_ASYM_SIGN, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg, 10), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_update(op, msg + 10, sizeof(msg) - 10),
                      CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_sign_final(op, sig, &n), CKR_OK);
    kt_ossl_asym_free(op);
    ck_assert(ossl_eddsa_verify(key, sig, n));
    ck_assert_uint_eq(kt_ossl_asym_init(&m, key, KT_ASYM_VERIFY, &op), CKR_OK);
    ck_assert_uint_eq(kt_ossl_asym_verify(op, msg, sizeof(msg), sig, n),
                      CKR_OK);
    kt_ossl_asym_free(op);
    prm.phFlag = CK_TRUE;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, key, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    prm.phFlag = CK_FALSE;
    prm.ulContextDataLen = 1;
    prm.pContextData = (CK_BYTE_PTR) "c";
    ck_assert_uint_eq(kt_ossl_asym_init(&m, key, KT_ASYM_SIGN, &op),
                      CKR_MECHANISM_PARAM_INVALID);
    ck_assert_uint_eq(kt_ossl_ec_generate(ecx[2 + _i].oid, 5, &x), CKR_OK);
    m.pParameter = NULL;
    m.ulParameterLen = 0;
    ck_assert_uint_eq(kt_ossl_asym_init(&m, x, KT_ASYM_SIGN, &op),
                      CKR_KEY_TYPE_INCONSISTENT);
    ck_assert_ptr_null(op);
    EVP_PKEY_free(key);
    EVP_PKEY_free(x);
}
END_TEST

static void x963(const char *md, const unsigned char *z, size_t zl,
                 unsigned char *out, size_t len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "X963KDF", NULL);
    EVP_KDF_CTX *c = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)md, 0),
        OSSL_PARAM_construct_octet_string("key", (void *)z, zl),
        OSSL_PARAM_construct_octet_string("info", (void *)"si", 2),
        OSSL_PARAM_construct_end()};
    ck_assert(EVP_KDF_derive(c, out, len, p) == 1);
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
}

/* X25519/X448 ECDH: Z equals OpenSSL's, cut with CKD_NULL, through the
 * SHA-256 X9.63 KDF at any length; an Edwards key cannot derive. */
START_TEST(test_montgomery_ecdh)
{
    const struct ecx *e = &ecx[2 + _i];
    EVP_PKEY *key = NULL, *peer = EVP_PKEY_Q_keygen(NULL, NULL, e->name);
    unsigned char praw[64], z[64], want[100];
    size_t prl = sizeof(praw), zl = sizeof(z);
    kt_ossl_buf s = {NULL, 0};
    EVP_PKEY *ed = NULL;

    ck_assert_uint_eq(kt_ossl_ec_generate(e->oid, 5, &key), CKR_OK);
    ck_assert(EVP_PKEY_get_raw_public_key(peer, praw, &prl) == 1);
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, (CK_ULONG)prl, praw};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
    ck_assert(EVP_PKEY_derive_init(c) == 1);
    ck_assert(EVP_PKEY_derive_set_peer(c, peer) == 1);
    ck_assert(EVP_PKEY_derive(c, z, &zl) == 1);
    EVP_PKEY_CTX_free(c);
    ck_assert_uint_eq(kt_ossl_ecdh_derive(key, &m, 0, &s), CKR_OK);
    ck_assert_uint_eq(s.len, zl);
    ck_assert_mem_eq(s.data, z, zl);
    kt_ossl_buf_free(&s);
    ck_assert_uint_eq(kt_ossl_ecdh_derive(key, &m, 16, &s), CKR_OK);
    ck_assert_uint_eq(s.len, 16);
    ck_assert_mem_eq(s.data, z, 16);
    kt_ossl_buf_free(&s);
    ck_assert_uint_eq(kt_ossl_ecdh_derive(key, &m, zl + 1, &s),
                      CKR_TEMPLATE_INCONSISTENT);
    p.kdf = CKD_SHA256_KDF;
    p.pSharedData = (CK_BYTE_PTR) "si";
    p.ulSharedDataLen = 2;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(key, &m, 100, &s), CKR_OK);
    x963("SHA256", z, zl, want, 100);
    ck_assert_uint_eq(s.len, 100);
    ck_assert_mem_eq(s.data, want, 100);
    kt_ossl_buf_free(&s);
    ck_assert_uint_eq(kt_ossl_ecdh_derive(key, &m, 513, &s),
                      CKR_TEMPLATE_INCONSISTENT);
    m.mechanism = CKM_ECDH1_COFACTOR_DERIVE;
    ck_assert_uint_eq(kt_ossl_ecdh_derive(key, &m, 0, &s),
                      CKR_KEY_TYPE_INCONSISTENT);
    m.mechanism = CKM_ECDH1_DERIVE;
    ck_assert_uint_eq(kt_ossl_ec_generate(ecx[_i].oid, 5, &ed), CKR_OK);
    ck_assert_uint_eq(kt_ossl_ecdh_derive(ed, &m, 0, &s),
                      CKR_KEY_TYPE_INCONSISTENT);
    ck_assert_ptr_null(s.data);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(key);
    EVP_PKEY_free(peer);
}
END_TEST

/* A DSA key from kt_ossl_dsa_generate on a domain OpenSSL made; the
 * domain's sizes checked (p 2048, q 256; p 512 refused). */
static EVP_PKEY *dsa_key(void)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL);
    EVP_PKEY *dom = NULL, *key = NULL;
    BIGNUM *bn[3] = {NULL};
    unsigned char b[3][256];
    kt_dsa_parts d;
    static const char *names[] = {"p", "q", "g"};

    ck_assert(EVP_PKEY_paramgen_init(pc) == 1);
    ck_assert(EVP_PKEY_CTX_set_dsa_paramgen_bits(pc, 2048) == 1);
    ck_assert(EVP_PKEY_CTX_set_dsa_paramgen_q_bits(pc, 256) == 1);
    ck_assert(EVP_PKEY_paramgen(pc, &dom) == 1);
    for (int i = 0; i < 3; i++)
        ck_assert(EVP_PKEY_get_bn_param(dom, names[i], &bn[i]));
    d.p = (kt_ossl_buf){b[0], (size_t)BN_bn2bin(bn[0], b[0])};
    d.q = (kt_ossl_buf){b[1], (size_t)BN_bn2bin(bn[1], b[1])};
    d.g = (kt_ossl_buf){b[2], (size_t)BN_bn2bin(bn[2], b[2])};
    d.value = (kt_ossl_buf){NULL, 0};
    ck_assert_uint_eq(kt_ossl_dsa_generate(&d, &key), CKR_OK);
    ck_assert_uint_eq(kt_ossl_key_type(key), CKK_DSA);
    d.p.len = 64; /* a 512-bit p */
    d.p.data[0] |= 0x80;
    EVP_PKEY *small = NULL;
    ck_assert_uint_ne(kt_ossl_dsa_generate(&d, &small), CKR_OK);
    ck_assert_ptr_null(small);
    for (int i = 0; i < 3; i++)
        BN_free(bn[i]);
    EVP_PKEY_free(dom);
    EVP_PKEY_CTX_free(pc);
    return key;
}

/* A DH key from kt_ossl_dh_generate on the ffdhe2048 domain. */
static EVP_PKEY *dh_key(void)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    EVP_PKEY *dom = NULL, *key = NULL;
    BIGNUM *p = NULL, *g = NULL;
    unsigned char pb[256], gb[8];
    kt_dsa_parts d;

    ck_assert(EVP_PKEY_paramgen_init(pc) == 1);
    ck_assert(EVP_PKEY_CTX_set_dh_nid(pc, NID_ffdhe2048) == 1);
    ck_assert(EVP_PKEY_paramgen(pc, &dom) == 1);
    ck_assert(EVP_PKEY_get_bn_param(dom, "p", &p));
    ck_assert(EVP_PKEY_get_bn_param(dom, "g", &g));
    memset(&d, 0, sizeof(d));
    d.p = (kt_ossl_buf){pb, (size_t)BN_bn2bin(p, pb)};
    d.g = (kt_ossl_buf){gb, (size_t)BN_bn2bin(g, gb)};
    ck_assert_uint_eq(kt_ossl_dh_generate(&d, &key), CKR_OK);
    ck_assert_uint_eq(kt_ossl_key_type(key), CKK_DH);
    BN_free(p);
    BN_free(g);
    EVP_PKEY_free(dom);
    EVP_PKEY_CTX_free(pc);
    return key;
}

/* kt_asym_attrs_from_key and kt_asym_key_from_attrs, the conversions
 * private-key wrapping uses: every key type there and back. */
START_TEST(test_attrs_roundtrip)
{
    static const unsigned char k1[] = {0x06, 0x05, 0x2b, 0x81,
                                       0x04, 0x00, 0x0a};
    EVP_PKEY *key = NULL, *back = NULL, *pub = NULL;
    kt_attrs a, pa;
    CK_KEY_TYPE t = 0;

    if (_i == 6)
        key = dsa_key();
    else if (_i == 7)
        key = dh_key();
    else if (_i == 0)
        ck_assert_uint_eq(kt_ossl_rsa_generate(2048, NULL, 0, &key), CKR_OK);
    else if (_i == 1)
        ck_assert_uint_eq(kt_ossl_ec_generate(k1, sizeof(k1), &key), CKR_OK);
    else
        ck_assert_uint_eq(kt_ossl_ec_generate(ecx[_i - 2].oid, 5, &key),
                          CKR_OK);
    kt_attrs_init(&a);
    kt_attrs_init(&pa);
    ck_assert_uint_eq(kt_attrs_set_ulong(&a, CKA_CLASS, CKO_PRIVATE_KEY),
                      CKR_OK);
    ck_assert_uint_eq(kt_asym_attrs_from_key(key, CKO_PRIVATE_KEY, &a), CKR_OK);
    ck_assert_uint_eq(kt_attrs_get_ulong(&a, CKA_KEY_TYPE, &t), CKR_OK);
    ck_assert_uint_eq(t, kt_ossl_key_type(key));
    ck_assert(kt_attrs_has(&a, CKA_PUBLIC_KEY_INFO));
    ck_assert_uint_eq(kt_asym_key_from_attrs(&a, &back), CKR_OK);
    ck_assert(kt_ossl_key_is_private(back));
    ck_assert_int_eq(EVP_PKEY_eq(back, key), 1);
    EVP_PKEY_free(back);
    /* the public half */
    ck_assert_uint_eq(kt_attrs_set_ulong(&pa, CKA_CLASS, CKO_PUBLIC_KEY),
                      CKR_OK);
    ck_assert_uint_eq(kt_asym_attrs_from_key(key, CKO_PUBLIC_KEY, &pa), CKR_OK);
    ck_assert_uint_eq(kt_asym_key_from_attrs(&pa, &pub), CKR_OK);
    ck_assert(!kt_ossl_key_is_private(pub));
    ck_assert_int_eq(EVP_PKEY_eq(pub, key), 1);
    /* no private half to give, no class */
    kt_attrs_clear(&pa);
    kt_attrs_init(&pa);
    ck_assert_uint_eq(kt_asym_attrs_from_key(pub, CKO_PRIVATE_KEY, &pa),
                      CKR_KEY_TYPE_INCONSISTENT);
    ck_assert_uint_eq(kt_asym_key_from_attrs(&pa, &back),
                      CKR_KEY_TYPE_INCONSISTENT);
    kt_attrs_clear(&a);
    kt_attrs_clear(&pa);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
}
END_TEST

static Suite *ecx_suite(void)
{
    Suite *s = suite_create("ossl_ecx");
    TCase *tc = tcase_create("ecx");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_curve_names);
    tcase_add_loop_test(tc, test_ecx_roundtrip, 0, 4);
    tcase_add_loop_test(tc, test_eddsa, 0, 2);
    tcase_add_loop_test(tc, test_montgomery_ecdh, 0, 2);
    tcase_add_loop_test(tc, test_attrs_roundtrip, 0, 8);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ecx_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
