/* The asymmetric key types and mechanisms beyond RSA and the NIST curves,
 * through the PKCS#11 API: Ed25519/Ed448 (CKK_EC_EDWARDS, CKM_EDDSA),
 * X25519/X448 (CKK_EC_MONTGOMERY, CKM_ECDH1_DERIVE), ECDH with the ANSI
 * X9.63 KDFs, secp256k1 and the Brainpool curves, raw RSA encryption,
 * SHA-3 signatures, and the legacy policy for RSA below 2048 bits and
 * MD5_RSA_PKCS. Every result is checked with plain OpenSSL, independently
 * of the module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/dsa.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

#include "pkcs11v3.h" /* 3.0 mechanism and key type names */

struct eddsa_params {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
};

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;
static const unsigned char msg[] = "keytier asymmetric extension message";

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

/* A curve: its OID (DER), its PKCS#11 3.0 / OpenSSL name as the
 * PrintableString tools send, OpenSSL's name, and key sizes. */
struct curve {
    const char *ossl; /* OpenSSL algorithm or group name */
    unsigned char oid[12];
    size_t oid_len;
    const char *p11name;
    size_t raw; /* raw public/private length (Edwards, Montgomery) */
};

static const struct curve ed[] = {
    {"ED25519", {0x06, 0x03, 0x2b, 0x65, 0x70}, 5, "edwards25519", 32},
    {"ED448", {0x06, 0x03, 0x2b, 0x65, 0x71}, 5, "edwards448", 57},
};
static const struct curve mont[] = {
    {"X25519", {0x06, 0x03, 0x2b, 0x65, 0x6e}, 5, "curve25519", 32},
    {"X448", {0x06, 0x03, 0x2b, 0x65, 0x6f}, 5, "curve448", 56},
};
static const struct curve weier[] = {
    {"secp256k1",
     {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a},
     7,
     "secp256k1",
     32},
    {"brainpoolP256r1",
     {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07},
     11,
     "brainpoolP256r1",
     32},
    {"brainpoolP384r1",
     {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0b},
     11,
     "brainpoolP384r1",
     48},
    {"brainpoolP512r1",
     {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0d},
     11,
     "brainpoolP512r1",
     64},
};

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("asymx");
    s = kt_test_user_session(slot);
}

/* ---- helpers --------------------------------------------------------- */

/* DER PrintableString of a curve name. */
static size_t printable(const char *name, unsigned char *out)
{
    size_t n = strlen(name);
    out[0] = 0x13;
    out[1] = (unsigned char)n;
    memcpy(out + 2, name, n);
    return n + 2;
}

static void gen_pair(CK_MECHANISM_TYPE mech, const unsigned char *params,
                     size_t len, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {mech, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)params, len},
                         {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_SIGN, &yes, 1}, {CKA_DERIVE, &yes, 1}};
    /* Montgomery keys do not sign */
    bool signs = mech != CKM_EC_MONTGOMERY_KEY_PAIR_GEN;
    RV(CKR_OK, P->C_GenerateKeyPair(s, &m, pt, signs ? 2 : 1, vt + !signs,
                                    signs ? 2 : 1, pub, priv));
}

static unsigned char *attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                           CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    RV(CKR_OK, P->C_GetAttributeValue(s, h, &a, 1));
    a.pValue = malloc(a.ulValueLen + 1);
    RV(CKR_OK, P->C_GetAttributeValue(s, h, &a, 1));
    *len = a.ulValueLen;
    return a.pValue;
}

static EVP_PKEY *spki_of(CK_OBJECT_HANDLE h)
{
    CK_ULONG len;
    unsigned char *der = attr(h, CKA_PUBLIC_KEY_INFO, &len);
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    ck_assert_ptr_nonnull(k);
    free(der);
    return k;
}

static CK_ULONG sign(CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                     const unsigned char *d, CK_ULONG n, unsigned char *sig)
{
    CK_ULONG len = 0;
    RV(CKR_OK, P->C_SignInit(s, m, k));
    RV(CKR_OK, P->C_Sign(s, (CK_BYTE_PTR)d, n, NULL, &len));
    RV(CKR_OK, P->C_Sign(s, (CK_BYTE_PTR)d, n, sig, &len));
    return len;
}

static CK_RV verify(CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *d,
                    CK_ULONG n, const unsigned char *sig, CK_ULONG sig_len)
{
    RV(CKR_OK, P->C_VerifyInit(s, m, k));
    return P->C_Verify(s, (CK_BYTE_PTR)d, n, (CK_BYTE_PTR)sig, sig_len);
}

/* OpenSSL verifies a signature: md NULL for EdDSA. */
static int ossl_verify(EVP_PKEY *k, const char *md, const unsigned char *d,
                       size_t n, const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit_ex(c, NULL, md, NULL, NULL, k, NULL) == 1 &&
             EVP_DigestVerify(c, sig, sig_len, d, n) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* r || s (PKCS#11) to the DER ECDSA-Sig-Value OpenSSL verifies. */
static size_t ecdsa_der(const unsigned char *raw, size_t len,
                        unsigned char *der)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    unsigned char *p = der;
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, (int)len / 2, NULL),
                   BN_bin2bn(raw + len / 2, (int)len / 2, NULL));
    int n = i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    return (size_t)n;
}

static CK_OBJECT_HANDLE secret_of(CK_MECHANISM *m, CK_OBJECT_HANDLE base,
                                  CK_KEY_TYPE kt, CK_ULONG len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_VALUE_LEN, &len, sizeof(len)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    RV(CKR_OK, P->C_DeriveKey(s, m, base, t, len != 0 ? 5 : 4, &h));
    return h;
}

static void ossl_derive(EVP_PKEY *mine, EVP_PKEY *peer, unsigned char *z,
                        size_t *zl)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(mine, NULL);
    ck_assert(EVP_PKEY_derive_init(c) == 1);
    ck_assert(EVP_PKEY_derive_set_peer(c, peer) == 1);
    ck_assert(EVP_PKEY_derive(c, z, zl) == 1);
    EVP_PKEY_CTX_free(c);
}

/* ---- EdDSA ----------------------------------------------------------- */

/* Ed25519 and Ed448 generated (CKA_EC_PARAMS as OID and as the PKCS#11 3.0
 * curve name), signing through the module, verified by OpenSSL on the
 * exported public key (CKA_PUBLIC_KEY_INFO and CKA_EC_POINT). */
START_TEST(test_eddsa_generate_sign)
{
    const struct curve *c = &ed[_i / 2];
    unsigned char params[32], sig[256];
    size_t plen = _i % 2 ? printable(c->p11name, params) : c->oid_len;
    CK_OBJECT_HANDLE pub, priv;
    CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
    CK_ULONG len;

    if (!(_i % 2))
        memcpy(params, c->oid, c->oid_len);
    gen_pair(CKM_EC_EDWARDS_KEY_PAIR_GEN, params, plen, &pub, &priv);
    /* stored as the RFC 8410 OID; the point is a DER OCTET STRING */
    unsigned char *v = attr(pub, CKA_EC_PARAMS, &len);
    ck_assert_uint_eq(len, c->oid_len);
    ck_assert_mem_eq(v, c->oid, len);
    free(v);
    unsigned char *pt = attr(pub, CKA_EC_POINT, &len);
    ck_assert_uint_eq(len, c->raw + 2);
    ck_assert_uint_eq(pt[0], 0x04);
    ck_assert_uint_eq(pt[1], c->raw);
    v = attr(priv, CKA_KEY_TYPE, &len);
    ck_assert_uint_eq(*(CK_KEY_TYPE *)v, CKK_EC_EDWARDS);
    free(v);

    CK_ULONG n = sign(&m, priv, msg, sizeof(msg), sig);
    ck_assert_uint_eq(n, 2 * c->raw);
    EVP_PKEY *k = spki_of(pub);
    ck_assert(EVP_PKEY_is_a(k, c->ossl));
    ck_assert(ossl_verify(k, NULL, msg, sizeof(msg), sig, n));
    EVP_PKEY *raw =
        EVP_PKEY_new_raw_public_key_ex(NULL, c->ossl, NULL, pt + 2, c->raw);
    ck_assert(ossl_verify(raw, NULL, msg, sizeof(msg), sig, n));
    /* the module verifies its own and refuses a changed one */
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, n));
    sig[3] ^= 1;
    RV(CKR_SIGNATURE_INVALID, verify(&m, pub, msg, sizeof(msg), sig, n));
    RV(CKR_SIGNATURE_LEN_RANGE, verify(&m, pub, msg, sizeof(msg), sig, n - 1));
    /* an empty message is a message */
    n = sign(&m, priv, msg, 0, sig);
    ck_assert(ossl_verify(k, NULL, msg, 0, sig, n));
    EVP_PKEY_free(raw);
    EVP_PKEY_free(k);
    free(pt);
}
END_TEST

/* CK_EDDSA_PARAMS: pure EdDSA spelt out is accepted; prehash and contexts
 * (Ed25519ph/ctx, Ed448ph, an Ed448 context) are refused; multi-part
 * operations; Edwards keys with other mechanisms and the other way
 * round. */
START_TEST(test_eddsa_params_and_errors)
{
    CK_OBJECT_HANDLE pub, priv, epub, epriv;
    unsigned char sig[256], ctx[] = "context";
    struct eddsa_params p = {CK_FALSE, 0, NULL};
    CK_MECHANISM m = {CKM_EDDSA, &p, sizeof(p)};
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    CK_ULONG n;

    gen_pair(CKM_EC_EDWARDS_KEY_PAIR_GEN, ed[0].oid, ed[0].oid_len, &pub,
             &priv);
    n = sign(&m, priv, msg, sizeof(msg), sig);
    EVP_PKEY *k = spki_of(pub);
    ck_assert(ossl_verify(k, NULL, msg, sizeof(msg), sig, n));
    EVP_PKEY_free(k);
    p.phFlag = CK_TRUE;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &m, priv));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_VerifyInit(s, &m, pub));
    p.phFlag = CK_FALSE;
    p.pContextData = ctx;
    p.ulContextDataLen = sizeof(ctx);
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &m, priv));
    m.ulParameterLen = 3;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &m, priv));
    /* multi-part: the message gathered, signed at C_SignFinal */
    m.pParameter = NULL;
    m.ulParameterLen = 0;
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg, 4));
    RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg + 4, 0));
    RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg + 4, sizeof(msg) - 4));
    n = 0;
    RV(CKR_OK, P->C_SignFinal(s, NULL, &n));
    ck_assert_uint_eq(n, 64);
    RV(CKR_OK, P->C_SignFinal(s, sig, &n));
    k = spki_of(pub);
    ck_assert(ossl_verify(k, NULL, msg, sizeof(msg), sig, n));
    RV(CKR_OK, P->C_VerifyInit(s, &m, pub));
    RV(CKR_OK, P->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 7));
    RV(CKR_OK, P->C_VerifyUpdate(s, (CK_BYTE_PTR)msg + 7, sizeof(msg) - 7));
    RV(CKR_OK, P->C_VerifyFinal(s, sig, n));
    RV(CKR_OK, P->C_VerifyInit(s, &m, pub));
    RV(CKR_OK, P->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 7));
    RV(CKR_SIGNATURE_INVALID, P->C_VerifyFinal(s, sig, n));
    /* no update at all: the empty message */
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_SignFinal(s, sig, &n));
    ck_assert(ossl_verify(k, NULL, msg, 0, sig, n));
    EVP_PKEY_free(k);
    /* C_Sign after an update is refused */
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg, 4));
    n = sizeof(sig);
    RV(CKR_OPERATION_ACTIVE, P->C_Sign(s, (CK_BYTE_PTR)msg, 4, sig, &n));
    /* key types: ECDSA on Edwards, EdDSA on P-256, ECDH on Edwards */
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &ecdsa, priv));
    gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), &epub, &epriv);
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &m, epriv));
    /* curves of another key type for each generator */
    CK_MECHANISM eg = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM xg = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE edp[] = {{CKA_EC_PARAMS, (void *)ed[0].oid, ed[0].oid_len}};
    CK_ATTRIBUTE p256[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}};
    CK_ATTRIBUTE x25519[] = {
        {CKA_EC_PARAMS, (void *)mont[0].oid, mont[0].oid_len}};
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &eg, edp, 1, NULL, 0, &pub, &priv));
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &xg, p256, 1, NULL, 0, &pub, &priv));
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &xg, x25519, 1, NULL, 0, &pub, &priv));
    RV(CKR_TEMPLATE_INCOMPLETE,
       P->C_GenerateKeyPair(s, &xg, NULL, 0, NULL, 0, &pub, &priv));
    /* GnuTLS 3.7 generates with CKM_EDDSA: the Edwards generator */
    CK_MECHANISM gm = {CKM_EDDSA, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE gpt[] = {{CKA_VERIFY, &yes, 1}, edp[0]};
    CK_ATTRIBUTE gvt[] = {{CKA_SIGN, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &gm, gpt, 2, gvt, 1, &pub, &priv));
    CK_MECHANISM_TYPE genm = 0;
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE q[] = {{CKA_KEY_GEN_MECHANISM, &genm, sizeof(genm)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    RV(CKR_OK, P->C_GetAttributeValue(s, priv, q, 2));
    ck_assert_uint_eq(genm, CKM_EC_EDWARDS_KEY_PAIR_GEN);
    ck_assert_uint_eq(kt, CKK_EC_EDWARDS);
    m.pParameter = NULL;
    m.ulParameterLen = 0;
    n = sign(&m, priv, msg, sizeof(msg), sig);
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, n));
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &gm, p256, 1, NULL, 0, &pub, &priv));
}
END_TEST

/* An OpenSSL-made Ed25519/Ed448 key imported: private (CKA_VALUE = the raw
 * key, CKA_EC_PARAMS as the curve name) and public (CKA_EC_POINT as the
 * DER OCTET STRING and as the raw key). EdDSA is deterministic: the module
 * and OpenSSL make the same signature. */
START_TEST(test_eddsa_import)
{
    const struct curve *c = &ed[_i];
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, c->ossl);
    unsigned char raw[64], pub[64], der[80], params[32];
    size_t rl = sizeof(raw), pl = sizeof(pub);
    size_t plen = printable(c->p11name, params);
    CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC_EDWARDS;
    CK_BBOOL yes = CK_TRUE;
    CK_OBJECT_HANDLE hv, hp, hp2, bad;

    ck_assert(EVP_PKEY_get_raw_private_key(k, raw, &rl) == 1);
    ck_assert(EVP_PKEY_get_raw_public_key(k, pub, &pl) == 1);
    ck_assert_uint_eq(rl, c->raw);
    der[0] = 0x04;
    der[1] = (unsigned char)pl;
    memcpy(der + 2, pub, pl);
    CK_ATTRIBUTE vt[] = {{CKA_CLASS, &priv_cls, sizeof(priv_cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_EC_PARAMS, params, plen},
                         {CKA_SIGN, &yes, 1},
                         {CKA_VALUE, raw, rl}};
    CK_ATTRIBUTE pt[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_EC_PARAMS, (void *)c->oid, c->oid_len},
                         {CKA_VERIFY, &yes, 1},
                         {CKA_EC_POINT, der, pl + 2}};
    RV(CKR_OK, P->C_CreateObject(s, vt, N(vt), &hv));
    RV(CKR_OK, P->C_CreateObject(s, pt, N(pt), &hp));
    pt[4].pValue = pub;
    pt[4].ulValueLen = pl;
    RV(CKR_OK, P->C_CreateObject(s, pt, N(pt), &hp2));
    /* the stored point is the DER form either way */
    CK_ULONG len;
    unsigned char *v = attr(hp2, CKA_EC_POINT, &len);
    ck_assert_uint_eq(len, pl + 2);
    ck_assert_mem_eq(v, der, len);
    free(v);

    CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
    unsigned char sig[256], osig[256];
    size_t on = sizeof(osig);
    CK_ULONG n = sign(&m, hv, msg, sizeof(msg), sig);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    ck_assert(EVP_DigestSignInit_ex(mc, NULL, NULL, NULL, NULL, k, NULL) == 1);
    ck_assert(EVP_DigestSign(mc, osig, &on, msg, sizeof(msg)) == 1);
    EVP_MD_CTX_free(mc);
    ck_assert_uint_eq(n, on);
    ck_assert_mem_eq(sig, osig, n);
    RV(CKR_OK, verify(&m, hp, msg, sizeof(msg), osig, on));
    RV(CKR_OK, verify(&m, hp2, msg, sizeof(msg), osig, on));

    /* refused: CKA_EC_POINT on a private key (not one of its attributes),
     * a short value, an Edwards curve under CKK_EC, a Montgomery curve
     * under CKK_EC_EDWARDS */
    CK_ATTRIBUTE both[] = {
        vt[0], vt[1], vt[2], vt[4], {CKA_EC_POINT, der, pl + 2}};
    RV(CKR_ATTRIBUTE_TYPE_INVALID, P->C_CreateObject(s, both, 5, &bad));
    vt[4].ulValueLen = rl - 1;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, vt, N(vt), &bad));
    vt[4].ulValueLen = rl;
    CK_KEY_TYPE ec = CKK_EC;
    vt[1].pValue = &ec;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, vt, N(vt), &bad));
    vt[1].pValue = &kt;
    vt[2].pValue = (void *)mont[0].oid;
    vt[2].ulValueLen = mont[0].oid_len;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, vt, N(vt), &bad));
    EVP_PKEY_free(k);
}
END_TEST

/* ---- X25519 / X448 --------------------------------------------------- */

/* Generated Montgomery keys derive with an OpenSSL peer (public data = the
 * peer's raw key); OpenSSL computes the same secret on its side. */
START_TEST(test_montgomery_derive)
{
    const struct curve *c = &mont[_i / 2];
    unsigned char params[32], peer_raw[64], z[64];
    size_t plen = _i % 2 ? printable(c->p11name, params) : c->oid_len;
    size_t prl = sizeof(peer_raw), zl = sizeof(z);
    CK_OBJECT_HANDLE pub, priv;
    CK_ULONG len;

    if (!(_i % 2))
        memcpy(params, c->oid, c->oid_len);
    gen_pair(CKM_EC_MONTGOMERY_KEY_PAIR_GEN, params, plen, &pub, &priv);
    unsigned char *v = attr(pub, CKA_KEY_TYPE, &len);
    ck_assert_uint_eq(*(CK_KEY_TYPE *)v, CKK_EC_MONTGOMERY);
    free(v);
    v = attr(pub, CKA_EC_POINT, &len);
    ck_assert_uint_eq(len, c->raw + 2);
    free(v);

    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, c->ossl);
    ck_assert(EVP_PKEY_get_raw_public_key(peer, peer_raw, &prl) == 1);
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, (CK_ULONG)prl, peer_raw};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    CK_OBJECT_HANDLE gen = secret_of(&m, priv, CKK_GENERIC_SECRET, 0);
    CK_OBJECT_HANDLE aes = secret_of(&m, priv, CKK_AES, 16);
    EVP_PKEY *mine = spki_of(pub);
    ossl_derive(peer, mine, z, &zl);
    ck_assert_uint_eq(zl, c->raw);
    v = attr(gen, CKA_VALUE, &len);
    ck_assert_uint_eq(len, zl);
    ck_assert_mem_eq(v, z, zl);
    free(v);
    v = attr(aes, CKA_VALUE, &len);
    ck_assert_uint_eq(len, 16);
    ck_assert_mem_eq(v, z, 16);
    free(v);

    /* refused: public data of a wrong length, the all-zero (low order)
     * key, the cofactor variant, signing with a Montgomery key */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &gk, sizeof(gk)}};
    CK_OBJECT_HANDLE out;
    p.ulPublicDataLen = (CK_ULONG)prl - 1;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    memset(peer_raw, 0, sizeof(peer_raw));
    p.ulPublicDataLen = (CK_ULONG)prl;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    m.mechanism = CKM_ECDH1_COFACTOR_DERIVE;
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &ecdsa, priv));
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
}
END_TEST

/* An OpenSSL X25519/X448 private key imported derives what OpenSSL
 * derives with it. */
START_TEST(test_montgomery_import)
{
    const struct curve *c = &mont[_i];
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, c->ossl);
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, c->ossl);
    unsigned char raw[64], praw[64], z[64];
    size_t rl = sizeof(raw), prl = sizeof(praw), zl = sizeof(z);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC_MONTGOMERY;
    CK_BBOOL yes = CK_TRUE;
    CK_OBJECT_HANDLE h;
    CK_ULONG len;

    ck_assert(EVP_PKEY_get_raw_private_key(k, raw, &rl) == 1);
    ck_assert(EVP_PKEY_get_raw_public_key(peer, praw, &prl) == 1);
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_EC_PARAMS, (void *)c->oid, c->oid_len},
                        {CKA_DERIVE, &yes, 1},
                        {CKA_VALUE, raw, rl}};
    RV(CKR_OK, P->C_CreateObject(s, t, N(t), &h));
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, (CK_ULONG)prl, praw};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    CK_OBJECT_HANDLE gen = secret_of(&m, h, CKK_GENERIC_SECRET, 0);
    ossl_derive(k, peer, z, &zl);
    unsigned char *v = attr(gen, CKA_VALUE, &len);
    ck_assert_uint_eq(len, zl);
    ck_assert_mem_eq(v, z, zl);
    free(v);
    EVP_PKEY_free(k);
    EVP_PKEY_free(peer);
}
END_TEST

/* ---- ECDH with the X9.63 KDFs ------------------------------------------ */

static const struct {
    CK_ULONG kdf;
    const char *md;
    size_t hlen;
} kdfs[] = {{CKD_SHA1_KDF, "SHA1", 20},
            {CKD_SHA224_KDF, "SHA224", 28},
            {CKD_SHA256_KDF, "SHA256", 32},
            {CKD_SHA384_KDF, "SHA384", 48},
            {CKD_SHA512_KDF, "SHA512", 64}};

/* OpenSSL's X963KDF over Z and the shared data. */
static void x963(const char *md, const unsigned char *z, size_t zl,
                 const unsigned char *info, size_t il, unsigned char *out,
                 size_t len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "X963KDF", NULL);
    EVP_KDF_CTX *c = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)md, 0),
        OSSL_PARAM_construct_octet_string("key", (void *)z, zl),
        OSSL_PARAM_construct_octet_string("info", (void *)info, il),
        OSSL_PARAM_construct_end()};
    ck_assert(EVP_KDF_derive(c, out, len, p) == 1);
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
}

START_TEST(test_ecdh_kdf)
{
    CK_OBJECT_HANDLE pub, priv;
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char pt[65], z[32], want[64];
    unsigned char shared[] = "keytier shared info";
    size_t pl = 0, zl = sizeof(z);
    CK_ULONG len;

    gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), &pub, &priv);
    ck_assert(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                              sizeof(pt), &pl));
    EVP_PKEY *mine = spki_of(pub);
    ossl_derive(peer, mine, z, &zl);
    CK_ECDH1_DERIVE_PARAMS p = {kdfs[_i].kdf, sizeof(shared) - 1, shared,
                                (CK_ULONG)pl, pt};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    /* AES-256 and a 40-byte generic secret, with shared data */
    CK_OBJECT_HANDLE aes = secret_of(&m, priv, CKK_AES, 32);
    x963(kdfs[_i].md, z, zl, shared, sizeof(shared) - 1, want, 32);
    unsigned char *v = attr(aes, CKA_VALUE, &len);
    ck_assert_uint_eq(len, 32);
    ck_assert_mem_eq(v, want, 32);
    free(v);
    CK_OBJECT_HANDLE gen = secret_of(&m, priv, CKK_GENERIC_SECRET, 40);
    x963(kdfs[_i].md, z, zl, shared, sizeof(shared) - 1, want, 40);
    v = attr(gen, CKA_VALUE, &len);
    ck_assert_uint_eq(len, 40);
    ck_assert_mem_eq(v, want, 40);
    free(v);
    /* no shared data, no length: the hash's length; the cofactor variant
     * is the same on a curve of cofactor 1 */
    p.pSharedData = NULL;
    p.ulSharedDataLen = 0;
    m.mechanism = CKM_ECDH1_COFACTOR_DERIVE;
    gen = secret_of(&m, priv, CKK_GENERIC_SECRET, 0);
    x963(kdfs[_i].md, z, zl, NULL, 0, want, kdfs[_i].hlen);
    v = attr(gen, CKA_VALUE, &len);
    ck_assert_uint_eq(len, kdfs[_i].hlen);
    ck_assert_mem_eq(v, want, len);
    free(v);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
}
END_TEST

START_TEST(test_ecdh_kdf_errors)
{
    CK_OBJECT_HANDLE pub, priv, out;
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char pt[65], shared[] = "info";
    size_t pl = 0;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_ULONG big = 4096;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &gk, sizeof(gk)},
                        {CKA_VALUE_LEN, &big, sizeof(big)}};

    gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), &pub, &priv);
    ck_assert(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                              sizeof(pt), &pl));
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 4, shared, (CK_ULONG)pl, pt};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    /* CKD_NULL takes no shared data */
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    /* KDFs not offered (ASN.1, concatenation forms), an unknown one */
    p.kdf = CKD_SHA1_KDF_ASN1;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    p.kdf = CKD_SHA1_KDF_CONCATENATE;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    p.kdf = 0x77;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    /* a length without data */
    p.kdf = CKD_SHA256_KDF;
    p.pSharedData = NULL;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    /* no public data */
    p.ulSharedDataLen = 0;
    p.pPublicData = NULL;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    p.pPublicData = pt;
    /* more than a derived key may hold; CKD_NULL beyond Z */
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_DeriveKey(s, &m, priv, t, 3, &out));
    big = 33;
    p.kdf = CKD_NULL;
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_DeriveKey(s, &m, priv, t, 3, &out));
    EVP_PKEY_free(peer);
}
END_TEST

/* ---- secp256k1 and Brainpool ----------------------------------------- */

/* Generated (OID and name), ECDSA verified by OpenSSL, ECDH against an
 * OpenSSL peer, and an OpenSSL key imported and signing. */
START_TEST(test_curves)
{
    const struct curve *c = &weier[_i];
    unsigned char params[32], sig[160], der[200], pt[140], z[64];
    CK_OBJECT_HANDLE pub, priv, pub2, priv2;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    size_t pl = 0, zl = sizeof(z);
    CK_ULONG len;

    gen_pair(CKM_EC_KEY_PAIR_GEN, c->oid, c->oid_len, &pub, &priv);
    gen_pair(CKM_EC_KEY_PAIR_GEN, params, printable(c->p11name, params), &pub2,
             &priv2);
    unsigned char *v = attr(pub2, CKA_EC_PARAMS, &len);
    ck_assert_uint_eq(len, c->oid_len);
    ck_assert_mem_eq(v, c->oid, len);
    free(v);
    CK_ULONG n = sign(&m, priv, msg, sizeof(msg), sig);
    ck_assert_uint_eq(n, 2 * c->raw);
    EVP_PKEY *k = spki_of(pub);
    ck_assert(ossl_verify(k, "SHA256", msg, sizeof(msg), der,
                          ecdsa_der(sig, n, der)));
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, n));

    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", c->ossl);
    ck_assert(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                              sizeof(pt), &pl));
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, (CK_ULONG)pl, pt};
    CK_MECHANISM dm = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    CK_OBJECT_HANDLE gen = secret_of(&dm, priv, CKK_GENERIC_SECRET, 0);
    ossl_derive(peer, k, z, &zl);
    v = attr(gen, CKA_VALUE, &len);
    ck_assert_uint_eq(len, zl);
    ck_assert_mem_eq(v, z, zl);
    free(v);

    /* the peer's key imported signs for OpenSSL */
    BIGNUM *d = NULL;
    unsigned char dv[64];
    ck_assert(EVP_PKEY_get_bn_param(peer, OSSL_PKEY_PARAM_PRIV_KEY, &d));
    ck_assert(BN_bn2binpad(d, dv, (int)c->raw) == (int)c->raw);
    BN_clear_free(d);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_EC_PARAMS, (void *)c->oid, c->oid_len},
                        {CKA_SIGN, &yes, 1},
                        {CKA_VALUE, dv, c->raw}};
    CK_OBJECT_HANDLE imp;
    RV(CKR_OK, P->C_CreateObject(s, t, N(t), &imp));
    n = sign(&m, imp, msg, sizeof(msg), sig);
    ck_assert(ossl_verify(peer, "SHA256", msg, sizeof(msg), der,
                          ecdsa_der(sig, n, der)));
    EVP_PKEY_free(peer);
    EVP_PKEY_free(k);
}
END_TEST

/* ---- RSA: raw encryption, SHA-3 ---------------------------------------- */

static void rsa_pair(CK_ULONG bits, CK_OBJECT_HANDLE *pub,
                     CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_ENCRYPT, &yes, 1},
                         {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_DECRYPT, &yes, 1}, {CKA_SIGN, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &m, pt, N(pt), vt, N(vt), pub, priv));
}

/* CKM_RSA_X_509: the module's raw encryption equals OpenSSL's (it is
 * deterministic), OpenSSL's ciphertext decrypts to the k-byte block. */
START_TEST(test_rsa_x509_crypt)
{
    CK_OBJECT_HANDLE pub, priv;
    CK_MECHANISM m = {CKM_RSA_X_509, NULL, 0};
    unsigned char in[257], block[256], ct[256], oct[256], pt[256];
    CK_ULONG cl = sizeof(ct), ptl = sizeof(pt);
    size_t ol = sizeof(oct);

    rsa_pair(2048, &pub, &priv);
    EVP_PKEY *k = spki_of(pub);
    memset(in, 0x5a, sizeof(in));
    memset(block, 0, sizeof(block));
    memcpy(block + 256 - 40, in, 40);
    RV(CKR_OK, P->C_EncryptInit(s, &m, pub));
    RV(CKR_OK, P->C_Encrypt(s, in, 40, ct, &cl));
    ck_assert_uint_eq(cl, 256);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    ck_assert(EVP_PKEY_encrypt_init(c) == 1);
    ck_assert(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) == 1);
    ck_assert(EVP_PKEY_encrypt(c, oct, &ol, block, 256) == 1);
    EVP_PKEY_CTX_free(c);
    ck_assert_mem_eq(ct, oct, 256);
    RV(CKR_OK, P->C_DecryptInit(s, &m, priv));
    RV(CKR_OK, P->C_Decrypt(s, oct, (CK_ULONG)ol, pt, &ptl));
    ck_assert_uint_eq(ptl, 256);
    ck_assert_mem_eq(pt, block, 256);
    /* longer than the modulus, not below it, a short ciphertext */
    cl = sizeof(ct);
    RV(CKR_OK, P->C_EncryptInit(s, &m, pub));
    RV(CKR_DATA_LEN_RANGE, P->C_Encrypt(s, in, 257, ct, &cl));
    memset(in, 0xff, sizeof(in));
    RV(CKR_OK, P->C_EncryptInit(s, &m, pub));
    RV(CKR_DATA_INVALID, P->C_Encrypt(s, in, 256, ct, &cl));
    ptl = sizeof(pt);
    RV(CKR_OK, P->C_DecryptInit(s, &m, priv));
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE, P->C_Decrypt(s, oct, 255, pt, &ptl));
    /* never an unwrap mechanism: it is an oracle */
    CK_MECHANISM_INFO info;
    RV(CKR_OK, P->C_GetMechanismInfo(slot, CKM_RSA_X_509, &info));
    ck_assert(!(info.flags & CKF_UNWRAP));
    ck_assert(info.flags & CKF_ENCRYPT && info.flags & CKF_DECRYPT);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &aes, sizeof(aes)}};
    CK_OBJECT_HANDLE out;
    RV(CKR_MECHANISM_INVALID,
       P->C_UnwrapKey(s, &m, priv, oct, 256, t, N(t), &out));
    EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_sha3_signatures)
{
    static const struct {
        CK_MECHANISM_TYPE rsa, ecdsa;
        const char *md;
    } h[] = {{CKM_SHA3_224_RSA_PKCS, CKM_ECDSA_SHA3_224, "SHA3-224"},
             {CKM_SHA3_256_RSA_PKCS, CKM_ECDSA_SHA3_256, "SHA3-256"},
             {CKM_SHA3_384_RSA_PKCS, CKM_ECDSA_SHA3_384, "SHA3-384"},
             {CKM_SHA3_512_RSA_PKCS, CKM_ECDSA_SHA3_512, "SHA3-512"}};
    CK_OBJECT_HANDLE rpub, rpriv, epub, epriv;
    unsigned char sig[512], der[160];

    rsa_pair(2048, &rpub, &rpriv);
    gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), &epub, &epriv);
    EVP_PKEY *rk = spki_of(rpub), *ek = spki_of(epub);
    for (size_t i = 0; i < N(h); i++) {
        CK_MECHANISM m = {h[i].rsa, NULL, 0};
        CK_ULONG n = sign(&m, rpriv, msg, sizeof(msg), sig);
        ck_assert(ossl_verify(rk, h[i].md, msg, sizeof(msg), sig, n));
        RV(CKR_OK, verify(&m, rpub, msg, sizeof(msg), sig, n));
        /* multi-part, as the hashing mechanisms allow */
        RV(CKR_OK, P->C_SignInit(s, &m, rpriv));
        RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg, 5));
        RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg + 5, sizeof(msg) - 5));
        n = sizeof(sig);
        RV(CKR_OK, P->C_SignFinal(s, sig, &n));
        ck_assert(ossl_verify(rk, h[i].md, msg, sizeof(msg), sig, n));
        CK_MECHANISM e = {h[i].ecdsa, NULL, 0};
        n = sign(&e, epriv, msg, sizeof(msg), sig);
        ck_assert(ossl_verify(ek, h[i].md, msg, sizeof(msg), der,
                              ecdsa_der(sig, n, der)));
        RV(CKR_OK, verify(&e, epub, msg, sizeof(msg), sig, n));
    }
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ek);
}
END_TEST

/* ---- the legacy policy (keytier only) -------------------------------- */

static bool listed(CK_MECHANISM_TYPE t)
{
    CK_MECHANISM_TYPE list[256];
    CK_ULONG n = N(list);
    RV(CKR_OK, P->C_GetMechanismList(slot, list, &n));
    for (CK_ULONG i = 0; i < n; i++)
        if (list[i] == t)
            return true;
    return false;
}

/* An RSA-1024 key made by OpenSSL, as a C_CreateObject template of its
 * private half (n, e, d only). */
static CK_RV import_rsa1024(EVP_PKEY *k, CK_OBJECT_HANDLE *h)
{
    static unsigned char nb[128], eb[8], db[128];
    BIGNUM *n = NULL, *e = NULL, *d = NULL;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_BBOOL yes = CK_TRUE;
    ck_assert(EVP_PKEY_get_bn_param(k, "n", &n));
    ck_assert(EVP_PKEY_get_bn_param(k, "e", &e));
    ck_assert(EVP_PKEY_get_bn_param(k, "d", &d));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_SIGN, &yes, 1},
                        {CKA_MODULUS, nb, (CK_ULONG)BN_bn2bin(n, nb)},
                        {CKA_PUBLIC_EXPONENT, eb, (CK_ULONG)BN_bn2bin(e, eb)},
                        {CKA_PRIVATE_EXPONENT, db, (CK_ULONG)BN_bn2bin(d, db)}};
    BN_free(n);
    BN_free(e);
    BN_clear_free(d);
    return P->C_CreateObject(s, t, N(t), h);
}

/* Default (legacy_mechanisms = no): no RSA key below 2048 bits, no MD5. */
START_TEST(test_legacy_off)
{
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM md5 = {CKM_MD5_RSA_PKCS, NULL, 0};
    CK_ULONG bits = 1024;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    CK_OBJECT_HANDLE pub, priv, h;
    CK_MECHANISM_INFO info;

    RV(CKR_KEY_SIZE_RANGE,
       P->C_GenerateKeyPair(s, &gen, pt, 1, NULL, 0, &pub, &priv));
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    RV(CKR_ATTRIBUTE_VALUE_INVALID, import_rsa1024(k, &h));
    EVP_PKEY_free(k);
    ck_assert(!listed(CKM_MD5_RSA_PKCS));
    RV(CKR_MECHANISM_INVALID,
       P->C_GetMechanismInfo(slot, CKM_MD5_RSA_PKCS, &info));
    RV(CKR_OK, P->C_GetMechanismInfo(slot, CKM_RSA_PKCS_KEY_PAIR_GEN, &info));
    ck_assert_uint_eq(info.ulMinKeySize, 2048);
    RV(CKR_OK, P->C_GetMechanismInfo(slot, CKM_SHA256_RSA_PKCS, &info));
    ck_assert_uint_eq(info.ulMinKeySize, 2048);
    rsa_pair(2048, &pub, &priv);
    RV(CKR_MECHANISM_INVALID, P->C_SignInit(s, &md5, priv));
}
END_TEST

/* legacy_mechanisms = yes: RSA-1024 generated and imported, MD5 with RSA
 * verified by OpenSSL; back to the default, the 1024-bit key stays but
 * is refused for use. */
START_TEST(test_legacy_on)
{
    CK_MECHANISM md5 = {CKM_MD5_RSA_PKCS, NULL, 0};
    CK_MECHANISM sha = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_OBJECT_HANDLE pub, priv, h;
    CK_MECHANISM_INFO info;
    unsigned char sig[512];

    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asymx");
    s = kt_test_user_session(slot);
    ck_assert(listed(CKM_MD5_RSA_PKCS));
    RV(CKR_OK, P->C_GetMechanismInfo(slot, CKM_RSA_PKCS_KEY_PAIR_GEN, &info));
    ck_assert_uint_eq(info.ulMinKeySize, 1024);
    RV(CKR_OK, P->C_GetMechanismInfo(slot, CKM_MD5_RSA_PKCS, &info));
    ck_assert(info.flags & CKF_SIGN);
    rsa_pair(1024, &pub, &priv);
    EVP_PKEY *k = spki_of(pub);
    ck_assert_int_eq(EVP_PKEY_get_bits(k), 1024);
    CK_ULONG n = sign(&md5, priv, msg, sizeof(msg), sig);
    ck_assert_uint_eq(n, 128);
    ck_assert(ossl_verify(k, "MD5", msg, sizeof(msg), sig, n));
    n = sign(&sha, priv, msg, sizeof(msg), sig);
    ck_assert(ossl_verify(k, "SHA256", msg, sizeof(msg), sig, n));
    EVP_PKEY_free(k);
    /* 512 bits stay refused */
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 512;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    RV(CKR_KEY_SIZE_RANGE,
       P->C_GenerateKeyPair(s, &gen, pt, 1, NULL, 0, &pub, &priv));
    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    RV(CKR_OK, import_rsa1024(k, &h));
    n = sign(&sha, h, msg, sizeof(msg), sig);
    ck_assert(ossl_verify(k, "SHA256", msg, sizeof(msg), sig, n));
    EVP_PKEY_free(k);
    /* a token 1024-bit key under the default configuration */
    CK_ATTRIBUTE tok[] = {{CKA_TOKEN, &yes, 1}, {CKA_LABEL, "rsa1024", 7}};
    bits = 1024;
    CK_ATTRIBUTE tpt[] = {pt[0], tok[0]};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &gen, tpt, 2, tok, 2, &pub, &priv));
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = no\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asymx");
    s = kt_test_user_session(slot);
    ck_assert(!listed(CKM_MD5_RSA_PKCS));
    CK_ULONG found = 0;
    RV(CKR_OK, P->C_FindObjectsInit(s, tok + 1, 1));
    RV(CKR_OK, P->C_FindObjects(s, &priv, 1, &found));
    RV(CKR_OK, P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(found, 1);
    RV(CKR_KEY_SIZE_RANGE, P->C_SignInit(s, &sha, priv));
}
END_TEST

/* DSA (legacy_mechanisms = yes): a pair generated on an OpenSSL domain,
 * every DSA mechanism verified by OpenSSL; an OpenSSL key imported signs
 * for OpenSSL. */
static void bn_bytes(EVP_PKEY *k, const char *name, unsigned char *buf,
                     CK_ULONG *len)
{
    BIGNUM *bn = NULL;
    ck_assert(EVP_PKEY_get_bn_param(k, name, &bn));
    *len = (CK_ULONG)BN_bn2bin(bn, buf);
    BN_clear_free(bn);
}

START_TEST(test_dsa)
{
    static const struct {
        CK_MECHANISM_TYPE m;
        const char *md;
    } mechs[] = {{CKM_DSA, NULL},
                 {CKM_DSA_SHA1, "SHA1"},
                 {CKM_DSA_SHA224, "SHA224"},
                 {CKM_DSA_SHA256, "SHA256"},
                 {CKM_DSA_SHA384, "SHA384"},
                 {CKM_DSA_SHA512, "SHA512"}};
    unsigned char p[384], q[32], g[384], x[32], y[384], sig[64], der[80];
    unsigned char h[32];
    CK_ULONG pl, ql, gl, xl, yl, len;
    CK_BBOOL yes = CK_TRUE;
    CK_OBJECT_HANDLE pub, priv, imp;

    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asymx");
    s = kt_test_user_session(slot);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL);
    EVP_PKEY *dom = NULL, *ok = NULL;
    ck_assert(EVP_PKEY_paramgen_init(pc) == 1);
    ck_assert(EVP_PKEY_CTX_set_dsa_paramgen_bits(pc, 2048) == 1);
    ck_assert(EVP_PKEY_CTX_set_dsa_paramgen_q_bits(pc, 256) == 1);
    ck_assert(EVP_PKEY_paramgen(pc, &dom) == 1);
    EVP_PKEY_CTX_free(pc);
    bn_bytes(dom, "p", p, &pl);
    bn_bytes(dom, "q", q, &ql);
    bn_bytes(dom, "g", g, &gl);
    CK_MECHANISM gen = {CKM_DSA_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_PRIME, p, pl},
                         {CKA_SUBPRIME, q, ql},
                         {CKA_BASE, g, gl},
                         {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_SIGN, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, 1, &pub, &priv));
    EVP_PKEY *k = spki_of(pub);
    ck_assert(EVP_PKEY_is_a(k, "DSA"));
    unsigned char *v = attr(pub, CKA_VALUE, &len);
    bn_bytes(k, "pub", y, &yl);
    ck_assert_uint_eq(len, yl);
    ck_assert_mem_eq(v, y, yl);
    free(v);
    unsigned int hl = 32;
    ck_assert(EVP_Digest(msg, sizeof(msg), h, &hl, EVP_sha256(), NULL));
    for (size_t i = 0; i < N(mechs); i++) {
        CK_MECHANISM m = {mechs[i].m, NULL, 0};
        const unsigned char *in = mechs[i].md ? msg : h;
        CK_ULONG inl = mechs[i].md ? sizeof(msg) : 32, n;
        n = sign(&m, priv, in, inl, sig);
        ck_assert_uint_eq(n, 64);
        size_t dl = ecdsa_der(sig, n, der);
        if (mechs[i].md != NULL) {
            ck_assert(ossl_verify(k, mechs[i].md, msg, sizeof(msg), der, dl));
        } else {
            EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
            ck_assert(EVP_PKEY_verify_init(c) == 1);
            ck_assert(EVP_PKEY_verify(c, der, dl, h, 32) == 1);
            EVP_PKEY_CTX_free(c);
        }
        RV(CKR_OK, verify(&m, pub, in, inl, sig, n));
        sig[5] ^= 1;
        RV(CKR_SIGNATURE_INVALID, verify(&m, pub, in, inl, sig, n));
    }
    /* an OpenSSL key on the same domain, imported */
    pc = EVP_PKEY_CTX_new_from_pkey(NULL, dom, NULL);
    ck_assert(EVP_PKEY_keygen_init(pc) == 1);
    ck_assert(EVP_PKEY_generate(pc, &ok) == 1);
    EVP_PKEY_CTX_free(pc);
    bn_bytes(ok, "priv", x, &xl);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_DSA;
    CK_ATTRIBUTE it[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         pt[0],
                         pt[1],
                         pt[2],
                         {CKA_SIGN, &yes, 1},
                         {CKA_VALUE, x, xl}};
    RV(CKR_OK, P->C_CreateObject(s, it, N(it), &imp));
    CK_MECHANISM m = {CKM_DSA_SHA256, NULL, 0};
    CK_ULONG n = sign(&m, imp, msg, sizeof(msg), sig);
    ck_assert(ossl_verify(ok, "SHA256", msg, sizeof(msg), der,
                          ecdsa_der(sig, n, der)));
    /* x not below q */
    memset(x, 0xff, sizeof(x));
    it[6].ulValueLen = 32;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, it, N(it), &imp));
    /* without the switch: no DSA mechanism, no DSA key */
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = no\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asymx");
    s = kt_test_user_session(slot);
    ck_assert(!listed(CKM_DSA) && !listed(CKM_DSA_KEY_PAIR_GEN));
    RV(CKR_MECHANISM_INVALID,
       P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, 1, &pub, &priv));
    bn_bytes(ok, "priv", x, &xl);
    it[6].ulValueLen = xl;
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, it, N(it), &imp));
    EVP_PKEY_free(k);
    EVP_PKEY_free(ok);
    EVP_PKEY_free(dom);
}
END_TEST

/* PKCS#3 DH (legacy_mechanisms = yes): a pair on the ffdhe2048 domain
 * derives with an OpenSSL peer what OpenSSL derives (Z padded to p); an
 * imported OpenSSL key too; bad peer values refused. */
START_TEST(test_dh)
{
    unsigned char p[256], g[8], x[256], py[256], z[256];
    CK_ULONG pl, gl, xl, pyl, len;
    size_t zl = sizeof(z);
    CK_BBOOL yes = CK_TRUE;
    CK_OBJECT_HANDLE pub, priv, imp, out;

    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asymx");
    s = kt_test_user_session(slot);
    EVP_PKEY *dom = NULL, *peer = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    ck_assert(EVP_PKEY_paramgen_init(pc) == 1);
    ck_assert(EVP_PKEY_CTX_set_dh_nid(pc, NID_ffdhe2048) == 1);
    ck_assert(EVP_PKEY_paramgen(pc, &dom) == 1);
    EVP_PKEY_CTX_free(pc);
    pc = EVP_PKEY_CTX_new_from_pkey(NULL, dom, NULL);
    ck_assert(EVP_PKEY_keygen_init(pc) == 1);
    ck_assert(EVP_PKEY_generate(pc, &peer) == 1);
    EVP_PKEY_CTX_free(pc);
    bn_bytes(dom, "p", p, &pl);
    bn_bytes(dom, "g", g, &gl);
    bn_bytes(peer, "pub", py, &pyl);
    CK_MECHANISM gen = {CKM_DH_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_PRIME, p, pl}, {CKA_BASE, g, gl}};
    CK_ATTRIBUTE vt[] = {{CKA_DERIVE, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, 1, &pub, &priv));
    EVP_PKEY *mine = spki_of(pub);
    CK_MECHANISM m = {CKM_DH_PKCS_DERIVE, py, pyl};
    CK_OBJECT_HANDLE k = secret_of(&m, priv, CKK_GENERIC_SECRET, 0);
    pc = EVP_PKEY_CTX_new(peer, NULL);
    ck_assert(EVP_PKEY_derive_init(pc) == 1);
    ck_assert(EVP_PKEY_CTX_set_dh_pad(pc, 1) == 1);
    ck_assert(EVP_PKEY_derive_set_peer(pc, mine) == 1);
    ck_assert(EVP_PKEY_derive(pc, z, &zl) == 1);
    EVP_PKEY_CTX_free(pc);
    ck_assert_uint_eq(zl, 256);
    unsigned char *v = attr(k, CKA_VALUE, &len);
    ck_assert_uint_eq(len, zl);
    ck_assert_mem_eq(v, z, zl);
    free(v);
    k = secret_of(&m, priv, CKK_AES, 32);
    v = attr(k, CKA_VALUE, &len);
    ck_assert_uint_eq(len, 32);
    ck_assert_mem_eq(v, z, 32);
    free(v);
    /* the peer's key imported derives the same with our y */
    bn_bytes(peer, "priv", x, &xl);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_DH;
    CK_ATTRIBUTE it[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         pt[0],
                         pt[1],
                         {CKA_DERIVE, &yes, 1},
                         {CKA_VALUE, x, xl}};
    RV(CKR_OK, P->C_CreateObject(s, it, N(it), &imp));
    unsigned char *my = attr(pub, CKA_VALUE, &len);
    CK_MECHANISM m2 = {CKM_DH_PKCS_DERIVE, my, len};
    k = secret_of(&m2, imp, CKK_GENERIC_SECRET, 0);
    v = attr(k, CKA_VALUE, &len);
    ck_assert_uint_eq(len, zl);
    ck_assert_mem_eq(v, z, zl);
    free(v);
    free(my);
    /* peer y = 1, no parameter; without the switch: nothing */
    CK_OBJECT_CLASS sc = CKO_SECRET_KEY;
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &sc, sizeof(sc)},
                        {CKA_KEY_TYPE, &gk, sizeof(gk)}};
    unsigned char one = 1;
    CK_MECHANISM bad = {CKM_DH_PKCS_DERIVE, &one, 1};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &bad, priv, t, 2, &out));
    bad.pParameter = NULL;
    bad.ulParameterLen = 0;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &bad, priv, t, 2, &out));
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = no\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asymx");
    s = kt_test_user_session(slot);
    ck_assert(!listed(CKM_DH_PKCS_DERIVE) && !listed(CKM_DH_PKCS_KEY_PAIR_GEN));
    RV(CKR_MECHANISM_INVALID,
       P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, 1, &pub, &priv));
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, it, N(it), &imp));
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(dom);
}
END_TEST

Suite *asym_ext_suite(void);
Suite *asym_ext_suite(void)
{
    Suite *su = suite_create("asym_ext");
    TCase *ed_tc = tcase_create("eddsa");
    TCase *x = tcase_create("montgomery");
    TCase *ecdh = tcase_create("ecdh");
    TCase *rsa = tcase_create("rsa");
    TCase *leg = tcase_create("legacy");
    TCase *all[] = {ed_tc, x, ecdh, rsa, leg};

    for (size_t i = 0; i < N(all); i++) {
        tcase_add_checked_fixture(all[i], setup, kt_test_teardown);
        tcase_set_timeout(all[i], 120);
        suite_add_tcase(su, all[i]);
    }
    tcase_add_loop_test(ed_tc, test_eddsa_generate_sign, 0, 4);
    tcase_add_test(ed_tc, test_eddsa_params_and_errors);
    tcase_add_loop_test(ed_tc, test_eddsa_import, 0, 2);
    tcase_add_loop_test(x, test_montgomery_derive, 0, 4);
    tcase_add_loop_test(x, test_montgomery_import, 0, 2);
    tcase_add_loop_test(ecdh, test_ecdh_kdf, 0, 5);
    tcase_add_test(ecdh, test_ecdh_kdf_errors);
    tcase_add_loop_test(ecdh, test_curves, 0, 4);
    tcase_add_test(rsa, test_rsa_x509_crypt);
    tcase_add_test(rsa, test_sha3_signatures);
    tcase_add_test(leg, test_legacy_off);
    tcase_add_test(leg, test_legacy_on);
    tcase_add_test(leg, test_dsa);
    tcase_add_test(leg, test_dh);
    return su;
}

KT_TEST_MAIN(asym_ext_suite)
