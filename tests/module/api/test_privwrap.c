/* Private keys wrapped and unwrapped as PKCS#8 PrivateKeyInfo through the
 * PKCS#11 API: RSA and EC keys under AES key wrap with padding (RFC 5649,
 * both mechanism names) and AES-GCM with the module's IV. Plain OpenSSL is
 * the independent side: it opens the module's blobs with the wrapping
 * key's known value and parses the PKCS#8, and it makes the blobs the
 * module unwraps; keys unwrapped in the module sign what OpenSSL verifies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY, c_priv = CKO_PRIVATE_KEY;
static CK_KEY_TYPE k_aes = CKK_AES, k_rsa = CKK_RSA, k_ec = CKK_EC;

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x23};

enum kind { RSA2048, P256, P384, P521, KINDS };
static const char *kind_name[] = {"RSA-2048", "P-256", "P-384", "P-521"};

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("privwrap");
    s = kt_test_user_session(slot);
}

static void setup_legacy(void)
{
    kt_test_setup();
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("privwrap");
    s = kt_test_user_session(slot);
}

/* ---- helpers --------------------------------------------------------- */

/* A wrap-only AES key whose value the test knows. */
static CK_OBJECT_HANDLE known_wrap_key(CK_ULONG len, unsigned char fill)
{
    unsigned char v[32];
    memset(v, fill, sizeof(v));
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &c_secret, sizeof(c_secret)},
        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
        {CKA_VALUE, v, len},
        {CKA_WRAP, &yes, 1},
        {CKA_UNWRAP, &yes, 1},
        {CKA_ENCRYPT, &no, 1},
        {CKA_DECRYPT, &no, 1},
        {CKA_TOKEN, &no, 1},
    };
    CK_OBJECT_HANDLE h;
    RV(CKR_OK, P->C_CreateObject(s, t, N(t), &h));
    return h;
}

static void pair(enum kind kind, bool extractable, CK_OBJECT_HANDLE *pub,
                 CK_OBJECT_HANDLE *priv)
{
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {0x01, 0x00, 0x01};
    const unsigned char *oid = kind == P256   ? oid_p256
                               : kind == P384 ? oid_p384
                                              : oid_p521;
    size_t oid_len = kind == P256 ? sizeof(oid_p256) : sizeof(oid_p384);
    CK_ATTRIBUTE rsa_pub[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                              {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                              {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE ec_pub[] = {{CKA_EC_PARAMS, (void *)oid, oid_len},
                             {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_SIGN, &yes, 1},
                         {CKA_SENSITIVE, &yes, 1},
                         {CKA_EXTRACTABLE, extractable ? &yes : &no, 1}};
    CK_MECHANISM rsa_m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM ec_m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    if (kind == RSA2048)
        RV(CKR_OK, P->C_GenerateKeyPair(s, &rsa_m, rsa_pub, N(rsa_pub), vt,
                                        N(vt), pub, priv));
    else
        RV(CKR_OK, P->C_GenerateKeyPair(s, &ec_m, ec_pub, N(ec_pub), vt, N(vt),
                                        pub, priv));
}

static unsigned char *attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                           CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    RV(CKR_OK, P->C_GetAttributeValue(s, h, &a, 1));
    unsigned char *v = malloc(a.ulValueLen + 1);
    a.pValue = v;
    RV(CKR_OK, P->C_GetAttributeValue(s, h, &a, 1));
    *len = a.ulValueLen;
    return v;
}

static bool attr_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL b = CK_TRUE;
    CK_ATTRIBUTE a = {type, &b, 1};
    RV(CKR_OK, P->C_GetAttributeValue(s, h, &a, 1));
    return b == CK_TRUE;
}

static void same_attr(CK_OBJECT_HANDLE x, CK_OBJECT_HANDLE y,
                      CK_ATTRIBUTE_TYPE type)
{
    CK_ULONG lx, ly;
    unsigned char *vx = attr(x, type, &lx), *vy = attr(y, type, &ly);
    ck_assert_msg(lx == ly && memcmp(vx, vy, lx) == 0,
                  "attribute 0x%lx differs", (unsigned long)type);
    free(vx);
    free(vy);
}

static CK_ULONG count_objects(void)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    RV(CKR_OK, P->C_FindObjects(s, h, N(h), &n));
    CK(P->C_FindObjectsFinal(s));
    return n;
}

/* A public key object's key from its values (a module without
 * CKA_PUBLIC_KEY_INFO, SoftHSM2 2.6). */
static EVP_PKEY *pub_from_values(CK_OBJECT_HANDLE h)
{
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE q = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    RV(CKR_OK, P->C_GetAttributeValue(s, h, &q, 1));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    CK_ULONG l1, l2;
    unsigned char *v1 =
        attr(h, kt == CKK_RSA ? CKA_MODULUS : CKA_EC_PARAMS, &l1);
    unsigned char *v2 =
        attr(h, kt == CKK_RSA ? CKA_PUBLIC_EXPONENT : CKA_EC_POINT, &l2);
    BIGNUM *n = NULL, *e = NULL;
    if (kt == CKK_RSA) {
        n = BN_bin2bn(v1, (int)l1, NULL);
        e = BN_bin2bn(v2, (int)l2, NULL);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    } else {
        const unsigned char *p = v1;
        ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)l1);
        ck_assert_ptr_nonnull(oid);
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        OBJ_nid2sn(OBJ_obj2nid(oid)), 0);
        ASN1_OBJECT_free(oid);
        p = v2;
        ASN1_OCTET_STRING *pt = d2i_ASN1_OCTET_STRING(NULL, &p, (long)l2);
        ck_assert_ptr_nonnull(pt);
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt->data,
                                         (size_t)pt->length);
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        ASN1_OCTET_STRING_free(pt);
        OSSL_PARAM_BLD_free(bld);
        bld = NULL;
        free(v1), free(v2);
        v1 = v2 = NULL;
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        EVP_PKEY *k = NULL;
        ck_assert(EVP_PKEY_fromdata_init(c) == 1);
        ck_assert(EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, params) == 1);
        EVP_PKEY_CTX_free(c);
        OSSL_PARAM_free(params);
        return k;
    }
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    ck_assert(EVP_PKEY_fromdata_init(c) == 1);
    ck_assert(EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, params) == 1);
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n), BN_free(e);
    free(v1), free(v2);
    return k;
}

/* The public key of a module key pair, parsed by OpenSSL from
 * CKA_PUBLIC_KEY_INFO, or from the values where the module has none. */
static EVP_PKEY *spki_of(CK_OBJECT_HANDLE h)
{
    CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, NULL, 0};
    if (P->C_GetAttributeValue(s, h, &a, 1) != CKR_OK || a.ulValueLen == 0)
        return pub_from_values(h);
    CK_ULONG len;
    unsigned char *der = attr(h, CKA_PUBLIC_KEY_INFO, &len);
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    ck_assert_ptr_nonnull(k);
    free(der);
    return k;
}

/* The module key signs, OpenSSL verifies with pub. */
static void signs_for(CK_OBJECT_HANDLE priv, EVP_PKEY *pub)
{
    static const unsigned char msg[] = "private key wrap round trip";
    bool rsa = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA;
    CK_MECHANISM m = {rsa ? CKM_SHA256_RSA_PKCS : CKM_ECDSA_SHA256, NULL, 0};
    unsigned char sig[512], der[600];
    CK_ULONG sl = sizeof(sig);
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &sl));
    const unsigned char *vs = sig;
    size_t vl = sl;
    if (!rsa) { /* r || s to the DER OpenSSL verifies */
        ECDSA_SIG *es = ECDSA_SIG_new();
        ck_assert(ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)sl / 2, NULL),
                                 BN_bin2bn(sig + sl / 2, (int)sl / 2, NULL)));
        unsigned char *p = der;
        vl = (size_t)i2d_ECDSA_SIG(es, &p);
        vs = der;
        ECDSA_SIG_free(es);
    }
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    ck_assert(EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, pub) == 1);
    ck_assert_msg(EVP_DigestVerify(c, vs, vl, msg, sizeof(msg)) == 1,
                  "OpenSSL does not verify the signature");
    EVP_MD_CTX_free(c);
}

/* RFC 5649 with OpenSSL under a known key. */
static size_t ossl_kwp(const unsigned char *key, size_t key_len, bool enc,
                       const unsigned char *in, size_t in_len,
                       unsigned char *out)
{
    const EVP_CIPHER *ci = key_len == 16   ? EVP_aes_128_wrap_pad()
                           : key_len == 24 ? EVP_aes_192_wrap_pad()
                                           : EVP_aes_256_wrap_pad();
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ck_assert(EVP_CipherInit_ex(c, ci, NULL, key, NULL, enc) == 1);
    ck_assert(EVP_CipherUpdate(c, out, &l1, in, (int)in_len) == 1);
    ck_assert(EVP_CipherFinal_ex(c, out + l1, &l2) == 1);
    EVP_CIPHER_CTX_free(c);
    return (size_t)(l1 + l2);
}

/* A PKCS#8 PrivateKeyInfo parsed by OpenSSL (NULL if it is none). */
static EVP_PKEY *parse_pkcs8(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (p8 == NULL || p != der + len) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return NULL;
    }
    EVP_PKEY *k = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return k;
}

static size_t to_pkcs8(EVP_PKEY *k, unsigned char *out)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k);
    ck_assert_ptr_nonnull(p8);
    unsigned char *p = out;
    int len = i2d_PKCS8_PRIV_KEY_INFO(p8, &p);
    PKCS8_PRIV_KEY_INFO_free(p8);
    ck_assert_int_gt(len, 0);
    return (size_t)len;
}

static EVP_PKEY *ossl_key(enum kind kind)
{
    EVP_PKEY *k = NULL;
    if (kind == RSA2048)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
                              kind == P256   ? "P-256"
                              : kind == P384 ? "P-384"
                                             : "P-521");
    ck_assert_ptr_nonnull(k);
    return k;
}

static CK_RV unwrap(CK_MECHANISM *m, CK_OBJECT_HANDLE uk,
                    const unsigned char *blob, CK_ULONG len, CK_KEY_TYPE type,
                    CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_priv, sizeof(c_priv)},
                        {CKA_KEY_TYPE, &type, sizeof(type)},
                        {CKA_SIGN, &yes, 1},
                        {CKA_TOKEN, &no, 1}};
    *out = CK_INVALID_HANDLE;
    return P->C_UnwrapKey(s, m, uk, (CK_BYTE_PTR)blob, len, t, N(t), out);
}

/* ---- round trips ------------------------------------------------------ */

/* Each mechanism: wrap a module key, unwrap it into the module: the new key
 * has the same public values, signs what OpenSSL verifies with the
 * original's public key, and carries the attributes of an unwrapped key. */
START_TEST(test_round_trip)
{
    enum kind kind = (enum kind)_i;
    unsigned char iv[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM mechs[] = {{CKM_AES_KEY_WRAP_KWP, NULL, 0},
                            {CKM_AES_KEY_WRAP_PAD, NULL, 0},
                            {CKM_AES_GCM, &gcm, sizeof(gcm)}};
    CK_OBJECT_HANDLE pub, priv;
    pair(kind, true, &pub, &priv);
    CK_OBJECT_HANDLE wk = kt_test_wrap_key(s, 32, false, false, "w");
    EVP_PKEY *pk = spki_of(pub);
    for (size_t i = 0; i < N(mechs); i++) {
        unsigned char blob[4096];
        CK_ULONG bl = 0;
        memset(iv, 0, sizeof(iv));
        RV(CKR_OK, P->C_WrapKey(s, &mechs[i], wk, priv, NULL, &bl));
        ck_assert_uint_gt(bl, 0);
        ck_assert_uint_le(bl, sizeof(blob));
        RV(CKR_OK, P->C_WrapKey(s, &mechs[i], wk, priv, blob, &bl));
        CK_OBJECT_HANDLE u;
        RV(CKR_OK,
           unwrap(&mechs[i], wk, blob, bl, kind == RSA2048 ? k_rsa : k_ec, &u));
        signs_for(u, pk);
        same_attr(u, priv, CKA_PUBLIC_KEY_INFO);
        same_attr(u, priv, kind == RSA2048 ? CKA_MODULUS : CKA_EC_PARAMS);
        ck_assert(!attr_bool(u, CKA_LOCAL));
        ck_assert(!attr_bool(u, CKA_ALWAYS_SENSITIVE));
        ck_assert(!attr_bool(u, CKA_NEVER_EXTRACTABLE));
        ck_assert(attr_bool(u, CKA_SENSITIVE));
        CK(P->C_DestroyObject(s, u));
    }
    EVP_PKEY_free(pk);
    (void)kind_name;
}
END_TEST

/* The module's blob opened by OpenSSL (RFC 5649 and GCM under the
 * wrapping key's known value) is a PKCS#8 PrivateKeyInfo of the same
 * key. */
START_TEST(test_blob_opened_by_openssl)
{
    enum kind kind = (enum kind)_i;
    unsigned char kv[32], blob[4096], plain[4096];
    memset(kv, 0x5a, sizeof(kv));
    CK_OBJECT_HANDLE wk = known_wrap_key(32, 0x5a), pub, priv;
    pair(kind, true, &pub, &priv);
    EVP_PKEY *pk = spki_of(pub);

    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG bl = sizeof(blob);
    RV(CKR_OK, P->C_WrapKey(s, &kwp, wk, priv, blob, &bl));
    size_t pl = ossl_kwp(kv, 32, false, blob, bl, plain);
    EVP_PKEY *k = parse_pkcs8(plain, pl);
    ck_assert_msg(k != NULL, "not a PKCS#8 PrivateKeyInfo");
    ck_assert_int_eq(EVP_PKEY_eq(k, pk), 1);
    EVP_PKEY_free(k);

    unsigned char iv[12] = {0}, zero[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM gm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    bl = sizeof(blob);
    RV(CKR_OK, P->C_WrapKey(s, &gm, wk, priv, blob, &bl));
    ck_assert_msg(memcmp(iv, zero, sizeof(iv)) != 0, "no IV returned");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    ck_assert(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, kv, iv));
    ck_assert(EVP_DecryptUpdate(c, plain, &l1, blob, (int)bl - 16));
    ck_assert(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, blob + bl - 16));
    ck_assert_msg(EVP_DecryptFinal_ex(c, plain + l1, &l2) == 1, "GCM tag");
    EVP_CIPHER_CTX_free(c);
    k = parse_pkcs8(plain, (size_t)(l1 + l2));
    ck_assert_msg(k != NULL, "not a PKCS#8 PrivateKeyInfo");
    ck_assert_int_eq(EVP_PKEY_eq(k, pk), 1);
    EVP_PKEY_free(k);
    EVP_PKEY_free(pk);
}
END_TEST

/* A key made and wrapped by OpenSSL comes into the module and signs what
 * OpenSSL verifies with its own key. */
START_TEST(test_unwrap_openssl_blob)
{
    enum kind kind = (enum kind)_i;
    unsigned char kv[32], der[4096], blob[4096];
    memset(kv, 0x33, sizeof(kv));
    CK_OBJECT_HANDLE wk = known_wrap_key(32, 0x33), u;
    EVP_PKEY *k = ossl_key(kind);
    size_t bl = ossl_kwp(kv, 32, true, der, to_pkcs8(k, der), blob);
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    RV(CKR_OK, unwrap(&m, wk, blob, bl, kind == RSA2048 ? k_rsa : k_ec, &u));
    signs_for(u, k);
    /* The template may leave the key type to the blob; a token key is
     * stored like any other. */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_priv, sizeof(c_priv)},
                        {CKA_SIGN, &yes, 1},
                        {CKA_TOKEN, &yes, 1}};
    CK_OBJECT_HANDLE u2;
    RV(CKR_OK, P->C_UnwrapKey(s, &m, wk, blob, bl, t, N(t), &u2));
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE q = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    RV(CKR_OK, P->C_GetAttributeValue(s, u2, &q, 1));
    ck_assert_uint_eq(kt, kind == RSA2048 ? CKK_RSA : CKK_EC);
    signs_for(u2, k);
    CK(P->C_DestroyObject(s, u2));
    EVP_PKEY_free(k);
}
END_TEST

/* ---- refusals --------------------------------------------------------- */

START_TEST(test_wrap_refused)
{
    CK_OBJECT_HANDLE wk = kt_test_wrap_key(s, 32, false, false, "w");
    CK_OBJECT_HANDLE pub, priv, pub2, fixed;
    unsigned char blob[4096];
    CK_ULONG bl = sizeof(blob);
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    pair(P256, false, &pub, &fixed);
    RV(CKR_KEY_UNEXTRACTABLE, P->C_WrapKey(s, &kwp, wk, fixed, blob, &bl));

    /* RFC 3394 (no padding), CBC-PAD without legacy_mechanisms: no private
     * key leaves under them. */
    pair(P256, true, &pub2, &priv);
    unsigned char iv[16] = {0};
    CK_MECHANISM others[] = {{CKM_AES_KEY_WRAP, NULL, 0},
                             {CKM_AES_CBC_PAD, iv, sizeof(iv)}};
    for (size_t i = 0; i < N(others); i++) {
        bl = sizeof(blob);
        RV(CKR_KEY_NOT_WRAPPABLE,
           P->C_WrapKey(s, &others[i], wk, priv, blob, &bl));
    }
    /* A public key is no key to wrap. */
    bl = sizeof(blob);
    RV(CKR_KEY_NOT_WRAPPABLE, P->C_WrapKey(s, &kwp, wk, pub2, blob, &bl));

    /* CKA_WRAP_WITH_TRUSTED under a key that is not trusted. */
    CK_ATTRIBUTE trusted = {CKA_WRAP_WITH_TRUSTED, &yes, 1};
    RV(CKR_OK, P->C_SetAttributeValue(s, priv, &trusted, 1));
    bl = sizeof(blob);
    RV(CKR_KEY_NOT_WRAPPABLE, P->C_WrapKey(s, &kwp, wk, priv, blob, &bl));
}
END_TEST

/* The wrapping key is at least as strong as the private key (SP 800-57:
 * P-256 128 bits, P-384 192, P-521 256): an AES-128 key wraps a P-256 key,
 * not a P-384 one; unwrap checks the same on the decrypted key before any
 * object is made. */
START_TEST(test_strength)
{
    CK_OBJECT_HANDLE w128 = kt_test_wrap_key(s, 16, false, false, "w128");
    CK_OBJECT_HANDLE w192 = kt_test_wrap_key(s, 24, false, false, "w192");
    CK_OBJECT_HANDLE pub, p256, p384, p521;
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char blob[4096];
    CK_ULONG bl = sizeof(blob);
    pair(P256, true, &pub, &p256);
    pair(P384, true, &pub, &p384);
    pair(P521, true, &pub, &p521);
    RV(CKR_OK, P->C_WrapKey(s, &kwp, w128, p256, blob, &bl));
    bl = sizeof(blob);
    RV(CKR_WRAPPING_KEY_SIZE_RANGE,
       P->C_WrapKey(s, &kwp, w128, p384, blob, &bl));
    bl = sizeof(blob);
    RV(CKR_OK, P->C_WrapKey(s, &kwp, w192, p384, blob, &bl));
    bl = sizeof(blob);
    RV(CKR_WRAPPING_KEY_SIZE_RANGE,
       P->C_WrapKey(s, &kwp, w192, p521, blob, &bl));

    unsigned char kv[16], der[4096];
    memset(kv, 0x11, sizeof(kv));
    CK_OBJECT_HANDLE k128 = known_wrap_key(16, 0x11), u;
    EVP_PKEY *k = ossl_key(P384);
    size_t n = ossl_kwp(kv, 16, true, der, to_pkcs8(k, der), blob);
    CK_ULONG before = count_objects();
    RV(CKR_UNWRAPPING_KEY_SIZE_RANGE, unwrap(&kwp, k128, blob, n, k_ec, &u));
    ck_assert_uint_eq(u, CK_INVALID_HANDLE);
    ck_assert_uint_eq(count_objects(), before);
    EVP_PKEY_free(k);
}
END_TEST

/* What the blob holds decides the key: a template naming another type or
 * any of the key's values is inconsistent; a blob that is no PKCS#8 key of
 * a type the module keeps, or whose parts do not belong together, is
 * invalid; none of them makes an object. */
START_TEST(test_unwrap_refused)
{
    unsigned char kv[32], der[8192], blob[8192];
    memset(kv, 0x44, sizeof(kv));
    CK_OBJECT_HANDLE wk = known_wrap_key(32, 0x44), u;
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    EVP_PKEY *k = ossl_key(P256);
    size_t dl = to_pkcs8(k, der);
    size_t bl = ossl_kwp(kv, 32, true, der, dl, blob);
    CK_ULONG before = count_objects();

    RV(CKR_TEMPLATE_INCONSISTENT, unwrap(&kwp, wk, blob, bl, k_rsa, &u));
    /* The template may name the curve, the blob's only. */
    CK_ATTRIBUTE curve[] = {
        {CKA_CLASS, &c_priv, sizeof(c_priv)},
        {CKA_TOKEN, &no, 1},
        {CKA_EC_PARAMS, (void *)oid_p384, sizeof(oid_p384)}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_UnwrapKey(s, &kwp, wk, blob, bl, curve, N(curve), &u));
    curve[2].pValue = (void *)oid_p256;
    curve[2].ulValueLen = sizeof(oid_p256);
    RV(CKR_OK, P->C_UnwrapKey(s, &kwp, wk, blob, bl, curve, N(curve), &u));
    CK(P->C_DestroyObject(s, u));
    /* A public key class, or a mechanism that carries no private key. */
    CK_OBJECT_CLASS c_pub = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE pub_t[] = {{CKA_CLASS, &c_pub, sizeof(c_pub)}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_UnwrapKey(s, &kwp, wk, blob, bl, pub_t, N(pub_t), &u));
    CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
    RV(CKR_MECHANISM_INVALID, unwrap(&kw, wk, blob, bl, k_ec, &u));

    /* Trailing bytes after the PrivateKeyInfo. */
    der[dl] = 0;
    bl = ossl_kwp(kv, 32, true, der, dl + 1, blob);
    RV(CKR_WRAPPED_KEY_INVALID, unwrap(&kwp, wk, blob, bl, k_ec, &u));
    /* Not DER at all. */
    memset(der, 0x30, 64);
    bl = ossl_kwp(kv, 32, true, der, 64, blob);
    RV(CKR_WRAPPED_KEY_INVALID, unwrap(&kwp, wk, blob, bl, k_ec, &u));
    /* An RSA-PSS key: a PKCS#8 key of a type the module does not keep. */
    EVP_PKEY *pss = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
    ck_assert(EVP_PKEY_keygen_init(pc) == 1);
    ck_assert(EVP_PKEY_CTX_set_rsa_keygen_bits(pc, 2048) == 1);
    ck_assert(EVP_PKEY_keygen(pc, &pss) == 1);
    EVP_PKEY_CTX_free(pc);
    bl = ossl_kwp(kv, 32, true, der, to_pkcs8(pss, der), blob);
    RV(CKR_WRAPPED_KEY_INVALID, unwrap(&kwp, wk, blob, bl, k_rsa, &u));
    EVP_PKEY_free(pss);
    /* An RSA key below the module's 2048 bits. */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ck_assert_ptr_nonnull(small);
    bl = ossl_kwp(kv, 32, true, der, to_pkcs8(small, der), blob);
    RV(CKR_WRAPPED_KEY_INVALID, unwrap(&kwp, wk, blob, bl, k_rsa, &u));
    EVP_PKEY_free(small);
    ck_assert_uint_eq(count_objects(), before);
    EVP_PKEY_free(k);
}
END_TEST

/* An RSA PrivateKeyInfo whose CRT values are another key's: the checks of
 * an imported key refuse it (OpenSSL would sign with the CRT values). */
START_TEST(test_unwrap_inconsistent_rsa)
{
    unsigned char kv[32], der[8192], blob[8192];
    memset(kv, 0x45, sizeof(kv));
    CK_OBJECT_HANDLE wk = known_wrap_key(32, 0x45), u;
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    EVP_PKEY *a = ossl_key(RSA2048), *b = ossl_key(RSA2048);
    BIGNUM *n = NULL, *e = NULL, *d = NULL, *p = NULL, *q = NULL, *dp = NULL,
           *dq = NULL, *qi = NULL;
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_N, &n));
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_E, &e));
    ck_assert(EVP_PKEY_get_bn_param(b, OSSL_PKEY_PARAM_RSA_D, &d));
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_FACTOR1, &p));
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_FACTOR2, &q));
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_EXPONENT1, &dp));
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_EXPONENT2, &dq));
    ck_assert(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &qi));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *bad = NULL;
    ck_assert(EVP_PKEY_fromdata_init(c) == 1);
    ck_assert(EVP_PKEY_fromdata(c, &bad, EVP_PKEY_KEYPAIR, params) == 1);
    size_t bl = ossl_kwp(kv, 32, true, der, to_pkcs8(bad, der), blob);
    CK_ULONG before = count_objects();
    RV(CKR_WRAPPED_KEY_INVALID, unwrap(&kwp, wk, blob, bl, k_rsa, &u));
    ck_assert_uint_eq(count_objects(), before);
    EVP_PKEY_free(bad);
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n), BN_free(e), BN_free(d), BN_free(p), BN_free(q);
    BN_free(dp), BN_free(dq), BN_free(qi);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}
END_TEST

/* ---- legacy_mechanisms = yes ----------------------------------------- */

/* CBC-PAD carries private keys, GCM takes the caller's IV (as OpenSC's
 * p11test wraps: a 16-byte IV and AAD), and the strength rule is off. */
START_TEST(test_legacy)
{
    /* legacy: one key wraps and decrypts */
    CK_ATTRIBUTE both[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                           {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                           {CKA_VALUE_LEN, &(CK_ULONG){16}, sizeof(CK_ULONG)},
                           {CKA_WRAP, &yes, 1},
                           {CKA_UNWRAP, &yes, 1},
                           {CKA_DECRYPT, &yes, 1}};
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE w128, pub, priv, u;
    RV(CKR_OK, P->C_GenerateKey(s, &gen, both, N(both), &w128));
    unsigned char iv[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    unsigned char aad[8] = {0, 2, 4, 8, 16, 32, 64, 128};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 64, aad, sizeof(aad), 128};
    CK_MECHANISM mechs[] = {{CKM_AES_CBC_PAD, iv, sizeof(iv)},
                            {CKM_AES_GCM, &gcm, sizeof(gcm)},
                            {CKM_AES_KEY_WRAP, NULL, 0}};
    pair(P521, true, &pub, &priv);
    EVP_PKEY *pk = spki_of(pub);
    for (size_t i = 0; i < N(mechs); i++) {
        unsigned char blob[4096], plain[4096];
        CK_ULONG bl = sizeof(blob), pl = sizeof(plain);
        RV(CKR_OK, P->C_WrapKey(s, &mechs[i], w128, priv, blob, &bl));
        RV(CKR_OK, unwrap(&mechs[i], w128, blob, bl, k_ec, &u));
        signs_for(u, pk);
        /* legacy: the key decrypts as well; the plaintext is PKCS#8 */
        RV(CKR_OK, P->C_DecryptInit(s, &mechs[i], w128));
        RV(CKR_OK, P->C_Decrypt(s, blob, bl, plain, &pl));
        /* RFC 3394: zeros pad the PrivateKeyInfo (241 bytes for P-521)
         * to a multiple of 8 (PKCS#11 v2.40 §2.14.3) */
        size_t dl = pl;
        if (mechs[i].mechanism == CKM_AES_KEY_WRAP) {
            const unsigned char *p = plain;
            PKCS8_PRIV_KEY_INFO *p8 =
                d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)pl);
            ck_assert_ptr_nonnull(p8);
            PKCS8_PRIV_KEY_INFO_free(p8);
            dl = (size_t)(p - plain);
            ck_assert_uint_ne(dl % 8, 0);
            ck_assert_uint_eq(pl, (dl + 7) / 8 * 8);
            for (size_t j = dl; j < pl; j++)
                ck_assert_uint_eq(plain[j], 0);
        }
        EVP_PKEY *k = parse_pkcs8(plain, dl);
        ck_assert_ptr_nonnull(k);
        ck_assert_int_eq(EVP_PKEY_eq(k, pk), 1);
        EVP_PKEY_free(k);
    }
    EVP_PKEY_free(pk);
}
END_TEST

/* With legacy_mechanisms = yes RSA-OAEP carries a private key short
 * enough for it (a P-256 PrivateKeyInfo under RSA-2048); a longer one is
 * CKR_KEY_NOT_WRAPPABLE once its length is known. */
START_TEST(test_legacy_rsa_oaep)
{
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {0x01, 0x00, 0x01};
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                         {CKA_WRAP, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_UNWRAP, &yes, 1}};
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE rpub, rpriv, pub, priv, big_pub, big, u;
    RV(CKR_OK,
       P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, N(vt), &rpub, &rpriv));
    CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256,
                                  CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
    pair(P256, true, &pub, &priv);
    EVP_PKEY *pk = spki_of(pub);
    unsigned char blob[512];
    CK_ULONG bl = sizeof(blob);
    RV(CKR_OK, P->C_WrapKey(s, &oaep, rpub, priv, blob, &bl));
    RV(CKR_OK, unwrap(&oaep, rpriv, blob, bl, k_ec, &u));
    signs_for(u, pk);
    pair(P521, true, &big_pub, &big);
    bl = sizeof(blob);
    RV(CKR_KEY_NOT_WRAPPABLE, P->C_WrapKey(s, &oaep, rpub, big, blob, &bl));
    EVP_PKEY_free(pk);
}
END_TEST

static Suite *privwrap_suite(void)
{
    Suite *su = suite_create("privwrap");
    TCase *rt = tcase_create("round_trip");
    tcase_add_checked_fixture(rt, setup, kt_test_teardown);
    tcase_set_timeout(rt, 120);
    tcase_add_loop_test(rt, test_round_trip, 0, KINDS);
    tcase_add_loop_test(rt, test_blob_opened_by_openssl, 0, KINDS);
    tcase_add_loop_test(rt, test_unwrap_openssl_blob, 0, KINDS);
    suite_add_tcase(su, rt);
    TCase *bad = tcase_create("refused");
    tcase_add_checked_fixture(bad, setup, kt_test_teardown);
    tcase_set_timeout(bad, 120);
    tcase_add_test(bad, test_wrap_refused);
    tcase_add_test(bad, test_strength);
    tcase_add_test(bad, test_unwrap_refused);
    tcase_add_test(bad, test_unwrap_inconsistent_rsa);
    suite_add_tcase(su, bad);
    TCase *leg = tcase_create("legacy");
    tcase_add_checked_fixture(leg, setup_legacy, kt_test_teardown);
    tcase_set_timeout(leg, 120);
    tcase_add_test(leg, test_legacy);
    tcase_add_test(leg, test_legacy_rsa_oaep);
    suite_add_tcase(su, leg);
    return su;
}

KT_TEST_MAIN(privwrap_suite)
