/* RSA and EC keys through the PKCS#11 API: key pairs, import,
 * every asymmetric mechanism through every function its flags claim, OAEP
 * wrapping, ECDH, and the negative paths. Results are checked with plain
 * OpenSSL, independently of the module. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x23};
static const unsigned char msg[] = "keytier asymmetric API test message";

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("asym");
    s = kt_test_user_session(slot);
}

/* ---- helpers --------------------------------------------------------- */

static void rsa_pair(CK_ULONG bits, CK_OBJECT_HANDLE *pub,
                     CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_BYTE e[] = {0x01, 0x00, 0x01};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {
        {CKA_MODULUS_BITS, &bits, sizeof(bits)},
        {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
        {CKA_TOKEN, &yes, 1},
    };
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &m, pt, N(pt), vt, N(vt), pub, priv));
}

static void ec_pair(const unsigned char *params, size_t len,
                    CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)params, len}};
    CK_ATTRIBUTE vt[] = {{CKA_DERIVE, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &m, pt, N(pt), vt, N(vt), pub, priv));
}

/* An attribute's value, malloc'ed (NULL and len 0 when unavailable). */
static unsigned char *attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                           CK_ULONG *len, CK_RV *rv_out)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = P->C_GetAttributeValue(s, h, &a, 1);
    unsigned char *v = NULL;
    if (rv == CKR_OK) {
        v = malloc(a.ulValueLen + 1);
        a.pValue = v;
        rv = P->C_GetAttributeValue(s, h, &a, 1);
    }
    if (rv_out != NULL)
        *rv_out = rv;
    *len = rv == CKR_OK ? a.ulValueLen : 0;
    if (rv != CKR_OK) {
        free(v);
        v = NULL;
    }
    return v;
}

/* The public key of a key object, parsed by OpenSSL from
 * CKA_PUBLIC_KEY_INFO. */
static EVP_PKEY *spki_of(CK_OBJECT_HANDLE h)
{
    CK_ULONG len;
    unsigned char *der = attr(h, CKA_PUBLIC_KEY_INFO, &len, NULL);
    const unsigned char *p = der;
    ck_assert_ptr_nonnull(der);
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    ck_assert_ptr_nonnull(k);
    free(der);
    return k;
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

/* ---- key pairs ------------------------------------------------------- */

START_TEST(test_generate_rsa)
{
    static const CK_ULONG sizes[] = {2048, 3072, 4096};
    CK_OBJECT_HANDLE pub, priv;
    CK_ULONG len, len2, bits = 0;
    CK_RV rv;
    unsigned char *a, *b;

    rsa_pair(sizes[_i], &pub, &priv);
    a = attr(pub, CKA_MODULUS, &len, NULL);
    ck_assert_uint_eq(len, sizes[_i] / 8);
    b = attr(priv, CKA_MODULUS, &len2, NULL);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(a, b, len);
    free(a);
    free(b);
    a = attr(pub, CKA_MODULUS_BITS, &len, NULL);
    memcpy(&bits, a, sizeof(bits));
    ck_assert_uint_eq(bits, sizes[_i]);
    free(a);
    a = attr(pub, CKA_PUBLIC_EXPONENT, &len, NULL);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(a[0], 1);
    free(a);
    /* Both halves: same CKA_ID (computed), same SubjectPublicKeyInfo */
    a = attr(pub, CKA_ID, &len, NULL);
    b = attr(priv, CKA_ID, &len2, NULL);
    ck_assert_uint_eq(len, 20);
    ck_assert_uint_eq(len2, 20);
    ck_assert_mem_eq(a, b, len);
    free(a);
    free(b);
    a = attr(pub, CKA_PUBLIC_KEY_INFO, &len, NULL);
    b = attr(priv, CKA_PUBLIC_KEY_INFO, &len2, NULL);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(a, b, len);
    free(a);
    free(b);
    EVP_PKEY *k = spki_of(pub);
    ck_assert_int_eq(EVP_PKEY_get_bits(k), (int)sizes[_i]);
    EVP_PKEY_free(k);
    /* Private components never leave */
    static const CK_ATTRIBUTE_TYPE secret[] = {
        CKA_PRIVATE_EXPONENT, CKA_PRIME_1,    CKA_PRIME_2,
        CKA_EXPONENT_1,       CKA_EXPONENT_2, CKA_COEFFICIENT};
    for (size_t i = 0; i < N(secret); i++) {
        a = attr(priv, secret[i], &len, &rv);
        ck_assert_ptr_null(a);
        ck_assert_uint_eq(rv, CKR_ATTRIBUTE_SENSITIVE);
    }
    a = attr(priv, CKA_LOCAL, &len, NULL);
    ck_assert_int_eq(a[0], CK_TRUE);
    free(a);
    a = attr(priv, CKA_ALWAYS_SENSITIVE, &len, NULL);
    ck_assert_int_eq(a[0], CK_TRUE);
    free(a);
}
END_TEST

START_TEST(test_generate_ec)
{
    static const struct {
        const unsigned char *oid;
        size_t len;
        int bits;
    } c[] = {{oid_p256, sizeof(oid_p256), 256},
             {oid_p384, sizeof(oid_p384), 384},
             {oid_p521, sizeof(oid_p521), 521}};
    CK_OBJECT_HANDLE pub, priv;
    CK_ULONG len;
    CK_RV rv;
    unsigned char *a;

    ec_pair(c[_i].oid, c[_i].len, &pub, &priv);
    a = attr(pub, CKA_EC_PARAMS, &len, NULL);
    ck_assert_uint_eq(len, c[_i].len);
    ck_assert_mem_eq(a, c[_i].oid, len);
    free(a);
    a = attr(priv, CKA_EC_PARAMS, &len, NULL);
    ck_assert_mem_eq(a, c[_i].oid, len);
    free(a);
    /* CKA_EC_POINT: DER OCTET STRING of the uncompressed point */
    a = attr(pub, CKA_EC_POINT, &len, NULL);
    size_t plen = 1 + 2 * (size_t)((c[_i].bits + 7) / 8);
    ck_assert_uint_eq(a[0], 0x04);
    ck_assert_uint_eq(a[len - plen], 0x04);
    ck_assert_uint_eq(len, plen + (plen < 128 ? 2 : 3));
    free(a);
    EVP_PKEY *k = spki_of(priv);
    ck_assert_int_eq(EVP_PKEY_get_bits(k), c[_i].bits);
    EVP_PKEY_free(k);
    a = attr(priv, CKA_VALUE, &len, &rv);
    ck_assert_ptr_null(a);
    ck_assert_uint_eq(rv, CKR_ATTRIBUTE_SENSITIVE);
}
END_TEST

START_TEST(test_generate_bad_templates)
{
    CK_MECHANISM rsa = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM ec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    /* secp224r1, a named curve the token does not offer */
    static const unsigned char k256[] = {0x06, 0x05, 0x2b, 0x81,
                                         0x04, 0x00, 0x21};
    static const unsigned char junk[] = {0x06, 0x08, 0x2a, 0x86, 0x48};
    static const unsigned char name[] = {0x13, 0x0a, 'p', 'r', 'i', 'm',
                                         'e',  '2',  '5', '6', 'v', '1'};
    CK_ULONG bits = 1024, before = count_objects();
    CK_BYTE even[] = {0x01, 0x00, 0x00};
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    CK_ATTRIBUTE t1[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    CK_ATTRIBUTE t2[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, even, sizeof(even)}};
    CK_ATTRIBUTE e1[] = {{CKA_EC_PARAMS, (void *)k256, sizeof(k256)}};
    CK_ATTRIBUTE e2[] = {{CKA_EC_PARAMS, (void *)junk, sizeof(junk)}};
    CK_ATTRIBUTE e3[] = {{CKA_EC_PARAMS, (void *)name, sizeof(name)}};
    CK_ATTRIBUTE e4[] = {{CKA_EC_PARAMS, (void *)oid_p384, sizeof(oid_p384)}};

    RV(CKR_KEY_SIZE_RANGE,
       P->C_GenerateKeyPair(s, &rsa, t1, 1, NULL, 0, &pub, &priv));
    bits = 2048;
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &rsa, t2, 2, NULL, 0, &pub, &priv));
    RV(CKR_TEMPLATE_INCOMPLETE,
       P->C_GenerateKeyPair(s, &rsa, NULL, 0, NULL, 0, &pub, &priv));
    /* bad EC params: unsupported curve, malformed, missing, mismatched */
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &ec, e1, 1, NULL, 0, &pub, &priv));
    RV(CKR_ATTRIBUTE_VALUE_INVALID,
       P->C_GenerateKeyPair(s, &ec, e2, 1, NULL, 0, &pub, &priv));
    RV(CKR_TEMPLATE_INCOMPLETE,
       P->C_GenerateKeyPair(s, &ec, NULL, 0, NULL, 0, &pub, &priv));
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_GenerateKeyPair(s, &ec, e3, 1, e4, 1, &pub, &priv));
    /* a template with a key type of another family */
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE e5[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_GenerateKeyPair(s, &ec, e5, 2, NULL, 0, &pub, &priv));
    /* the private template fails after the public half was stored: neither
     * half remains, even a public half that asked not to be destroyable */
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE e6[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_DESTROYABLE, &no, 1}};
    CK_ATTRIBUTE v6[] = {{CKA_TOKEN, &yes, 1},
                         {CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    /* CKA_MODULUS_BITS is no attribute of an EC private key */
    RV(CKR_ATTRIBUTE_TYPE_INVALID,
       P->C_GenerateKeyPair(s, &ec, e6, N(e6), v6, N(v6), &pub, &priv));
    ck_assert_uint_eq(count_objects(), before);
    /* the printable curve name works and is stored as the OID */
    RV(CKR_OK, P->C_GenerateKeyPair(s, &ec, e3, 1, NULL, 0, &pub, &priv));
    CK_ULONG len;
    unsigned char *a = attr(pub, CKA_EC_PARAMS, &len, NULL);
    ck_assert_uint_eq(len, sizeof(oid_p256));
    ck_assert_mem_eq(a, oid_p256, len);
    free(a);
}
END_TEST

/* ---- every listed asymmetric mechanism through its flags ------------ */

struct keys {
    CK_OBJECT_HANDLE rsa_pub, rsa_priv, ec_pub[3], ec_priv[3];
};

static void make_keys(struct keys *k)
{
    rsa_pair(2048, &k->rsa_pub, &k->rsa_priv);
    ec_pair(oid_p256, sizeof(oid_p256), &k->ec_pub[0], &k->ec_priv[0]);
    ec_pair(oid_p384, sizeof(oid_p384), &k->ec_pub[1], &k->ec_priv[1]);
    ec_pair(oid_p521, sizeof(oid_p521), &k->ec_pub[2], &k->ec_priv[2]);
}

static CK_MECHANISM_TYPE hash_of(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_SHA1_RSA_PKCS_PSS:
        return CKM_SHA_1;
    case CKM_SHA224_RSA_PKCS_PSS:
        return CKM_SHA224;
    case CKM_SHA384_RSA_PKCS_PSS:
        return CKM_SHA384;
    case CKM_SHA512_RSA_PKCS_PSS:
        return CKM_SHA512;
    default:
        return CKM_SHA256;
    }
}

static CK_RSA_PKCS_MGF_TYPE mgf_of(CK_MECHANISM_TYPE h)
{
    switch (h) {
    case CKM_SHA_1:
        return CKG_MGF1_SHA1;
    case CKM_SHA224:
        return CKG_MGF1_SHA224;
    case CKM_SHA384:
        return CKG_MGF1_SHA384;
    case CKM_SHA512:
        return CKG_MGF1_SHA512;
    default:
        return CKG_MGF1_SHA256;
    }
}

static bool is_pss(CK_MECHANISM_TYPE m)
{
    return m == CKM_RSA_PKCS_PSS || m == CKM_SHA1_RSA_PKCS_PSS ||
           m == CKM_SHA224_RSA_PKCS_PSS || m == CKM_SHA256_RSA_PKCS_PSS ||
           m == CKM_SHA384_RSA_PKCS_PSS || m == CKM_SHA512_RSA_PKCS_PSS;
}

static bool is_hashing(CK_MECHANISM_TYPE m)
{
    return m != CKM_RSA_PKCS && m != CKM_RSA_X_509 && m != CKM_RSA_PKCS_PSS &&
           m != CKM_ECDSA;
}

/* Sign + verify single part (and multi-part for hashing mechanisms), with
 * a tampered signature and a short one refused. */
static void check_sign(CK_MECHANISM_TYPE type, CK_OBJECT_HANDLE priv,
                       CK_OBJECT_HANDLE pub)
{
    CK_RSA_PKCS_PSS_PARAMS pss = {hash_of(type), mgf_of(hash_of(type)), 20};
    CK_MECHANISM m = {type, NULL, 0};
    unsigned char in[256], sig[600], sig2[600];
    CK_ULONG in_len = sizeof(msg), n, n2 = sizeof(sig2);

    memcpy(in, msg, sizeof(msg));
    if (is_pss(type)) {
        m.pParameter = &pss;
        m.ulParameterLen = sizeof(pss);
    }
    if (type == CKM_RSA_PKCS_PSS || type == CKM_ECDSA)
        in_len = 32; /* a SHA-256 sized input */
    if (type == CKM_RSA_X_509) {
        in[0] = 0; /* below the modulus */
        in_len = 256;
    }
    n = sign(&m, priv, in, in_len, sig);
    RV(CKR_OK, verify(&m, pub, in, in_len, sig, n));
    sig[n - 1] ^= 0x01;
    RV(CKR_SIGNATURE_INVALID, verify(&m, pub, in, in_len, sig, n));
    sig[n - 1] ^= 0x01;
    RV(CKR_SIGNATURE_LEN_RANGE, verify(&m, pub, in, in_len, sig, n - 1));
    if (!is_hashing(type)) {
        /* single-part only */
        RV(CKR_OK, P->C_SignInit(s, &m, priv));
        RV(CKR_FUNCTION_NOT_SUPPORTED, P->C_SignUpdate(s, in, in_len));
        return;
    }
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_SignUpdate(s, in, 10));
    RV(CKR_OK, P->C_SignUpdate(s, in + 10, in_len - 10));
    RV(CKR_OK, P->C_SignFinal(s, sig2, &n2));
    ck_assert_uint_eq(n2, n);
    RV(CKR_OK, P->C_VerifyInit(s, &m, pub));
    RV(CKR_OK, P->C_VerifyUpdate(s, in, 3));
    RV(CKR_OK, P->C_VerifyUpdate(s, in + 3, in_len - 3));
    RV(CKR_OK, P->C_VerifyFinal(s, sig2, n2));
    RV(CKR_OK, verify(&m, pub, in, in_len, sig2, n2));
}

static void check_crypt(CK_MECHANISM_TYPE type, const struct keys *k)
{
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256,
                                    CKZ_DATA_SPECIFIED, (void *)"lbl", 3};
    CK_MECHANISM m = {type, NULL, 0};
    unsigned char ct[256], pt[256];
    CK_ULONG ct_len = sizeof(ct), pt_len = sizeof(pt);

    if (type == CKM_RSA_PKCS_OAEP) {
        m.pParameter = &oaep;
        m.ulParameterLen = sizeof(oaep);
    }
    RV(CKR_OK, P->C_EncryptInit(s, &m, k->rsa_pub));
    RV(CKR_OK, P->C_Encrypt(s, (CK_BYTE_PTR)msg, sizeof(msg), ct, &ct_len));
    ck_assert_uint_eq(ct_len, 256);
    RV(CKR_OK, P->C_DecryptInit(s, &m, k->rsa_priv));
    RV(CKR_OK, P->C_Decrypt(s, ct, ct_len, pt, &pt_len));
    ck_assert_uint_eq(pt_len, sizeof(msg));
    ck_assert_mem_eq(pt, msg, sizeof(msg));
    ct[17] ^= 0x20;
    pt_len = sizeof(pt);
    RV(CKR_OK, P->C_DecryptInit(s, &m, k->rsa_priv));
    RV(CKR_ENCRYPTED_DATA_INVALID, P->C_Decrypt(s, ct, ct_len, pt, &pt_len));
}

/* AES-256 key wrapped under the public key, unwrapped by the private key;
 * the unwrapped key encrypts like the original. */
static void check_wrap(CK_MECHANISM_TYPE type, const struct keys *k)
{
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256,
                                    CKZ_DATA_SPECIFIED, (void *)"tier", 4};
    CK_MECHANISM m = {type, NULL, 0};
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &aes, sizeof(aes)},
                        {CKA_ENCRYPT, &yes, 1}};
    unsigned char wrapped[256], a[16], b[16];
    CK_ULONG wl = sizeof(wrapped), al = sizeof(a), bl = sizeof(b);
    CK_OBJECT_HANDLE key = kt_test_aes_key(s, 32, false, true, "dek"), out;

    if (type == CKM_RSA_PKCS_OAEP) {
        m.pParameter = &oaep;
        m.ulParameterLen = sizeof(oaep);
    }
    RV(CKR_OK, P->C_WrapKey(s, &m, k->rsa_pub, key, NULL, &wl));
    ck_assert_uint_eq(wl, 256);
    RV(CKR_OK, P->C_WrapKey(s, &m, k->rsa_pub, key, wrapped, &wl));
    /* PKCS#1 v1.5 unwrap is a Bleichenbacher oracle: withdrawn unless
     * legacy_mechanisms = yes (C_GetMechanismInfo says which). */
    CK_MECHANISM_INFO info;
    RV(CKR_OK, P->C_GetMechanismInfo(slot, type, &info));
    if (!(info.flags & CKF_UNWRAP)) {
        ck_assert_uint_eq(type, CKM_RSA_PKCS);
        RV(CKR_MECHANISM_INVALID,
           P->C_UnwrapKey(s, &m, k->rsa_priv, wrapped, wl, t, N(t), &out));
        return;
    }
    RV(CKR_OK, P->C_UnwrapKey(s, &m, k->rsa_priv, wrapped, wl, t, N(t), &out));
    RV(CKR_OK, P->C_EncryptInit(s, &ecb, key));
    RV(CKR_OK, P->C_Encrypt(s, (CK_BYTE_PTR)msg, 16, a, &al));
    RV(CKR_OK, P->C_EncryptInit(s, &ecb, out));
    RV(CKR_OK, P->C_Encrypt(s, (CK_BYTE_PTR)msg, 16, b, &bl));
    ck_assert_mem_eq(a, b, 16);
}

START_TEST(test_every_mechanism)
{
    CK_MECHANISM_TYPE list[128];
    CK_ULONG n = N(list), tested = 0;
    struct keys k;

    make_keys(&k);
    RV(CKR_OK, P->C_GetMechanismList(slot, list, &n));
    for (CK_ULONG i = 0; i < n; i++) {
        CK_MECHANISM_INFO info;
        CK_MECHANISM_TYPE t = list[i];
        bool rsa = t == CKM_RSA_PKCS || t == CKM_RSA_X_509 ||
                   t == CKM_RSA_PKCS_OAEP || is_pss(t) ||
                   t == CKM_SHA1_RSA_PKCS || t == CKM_SHA224_RSA_PKCS ||
                   t == CKM_SHA256_RSA_PKCS || t == CKM_SHA384_RSA_PKCS ||
                   t == CKM_SHA512_RSA_PKCS;
        bool ec = t == CKM_ECDSA || t == CKM_ECDSA_SHA1 ||
                  t == CKM_ECDSA_SHA224 || t == CKM_ECDSA_SHA256 ||
                  t == CKM_ECDSA_SHA384 || t == CKM_ECDSA_SHA512;
        if (!rsa && !ec)
            continue;
        RV(CKR_OK, P->C_GetMechanismInfo(slot, t, &info));
        if (info.flags & CKF_SIGN) {
            ck_assert(info.flags & CKF_VERIFY);
            if (rsa)
                check_sign(t, k.rsa_priv, k.rsa_pub);
            else
                for (int c = 0; c < 3; c++)
                    check_sign(t, k.ec_priv[c], k.ec_pub[c]);
        }
        /* raw RSA has no padding to fail: test_asym_ext.c */
        if ((info.flags & CKF_ENCRYPT) && t != CKM_RSA_X_509) {
            ck_assert(info.flags & CKF_DECRYPT);
            check_crypt(t, &k);
        }
        if (info.flags & CKF_WRAP) {
            ck_assert((info.flags & CKF_UNWRAP) || t == CKM_RSA_PKCS);
            check_wrap(t, &k);
        }
        ck_assert_uint_eq(info.ulMinKeySize, rsa ? 2048 : 256);
        ck_assert_uint_eq(info.ulMaxKeySize, rsa ? 4096 : 521);
        tested++;
    }
    /* 13 RSA + 6 ECDSA mechanisms at least */
    ck_assert_uint_ge(tested, 19);
}
END_TEST

/* ---- negative paths -------------------------------------------------- */

START_TEST(test_wrong_key)
{
    struct keys k;
    CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0};
    CK_MECHANISM rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_MECHANISM aes = {CKM_AES_ECB, NULL, 0};
    CK_OBJECT_HANDLE secret = kt_test_aes_key(s, 32, false, false, "aes");

    make_keys(&k);
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &ecdsa, k.rsa_priv));
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &rsa, k.ec_priv[0]));
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_VerifyInit(s, &rsa, k.ec_pub[0]));
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &rsa, secret));
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_EncryptInit(s, &aes, k.rsa_pub));

    /* usage attributes: a private key made without CKA_SIGN/CKA_DECRYPT */
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_VERIFY, &no, 1},
                         {CKA_ENCRYPT, &no, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_SIGN, &no, 1}, {CKA_DECRYPT, &no, 1}};
    CK_OBJECT_HANDLE pub, priv;
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA_1, CKG_MGF1_SHA1, 0, NULL, 0};
    CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
    RV(CKR_OK,
       P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, N(vt), &pub, &priv));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_SignInit(s, &rsa, priv));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_VerifyInit(s, &rsa, pub));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_DecryptInit(s, &om, priv));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_EncryptInit(s, &om, pub));
}
END_TEST

START_TEST(test_bad_params)
{
    struct keys k;
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 223};
    CK_MECHANISM pm = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA1, 0, NULL, 0};
    CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};

    rsa_pair(2048, &k.rsa_pub, &k.rsa_priv);
    /* sLen above emLen - hLen - 2, hash not the mechanism's, MGF mismatch */
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &pm, k.rsa_priv));
    pss.sLen = 32;
    pss.hashAlg = CKM_SHA512;
    pss.mgf = CKG_MGF1_SHA512;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &pm, k.rsa_priv));
    pss.hashAlg = CKM_SHA256;
    pss.mgf = CKG_MGF1_SHA1;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_VerifyInit(s, &pm, k.rsa_pub));
    pm.ulParameterLen = 3;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &pm, k.rsa_priv));
    /* OAEP: MGF on another hash, unknown hash, bad source */
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &om, k.rsa_pub));
    oaep.mgf = CKG_MGF1_SHA256;
    oaep.hashAlg = CKM_MD5;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DecryptInit(s, &om, k.rsa_priv));
    oaep.hashAlg = CKM_SHA256;
    oaep.source = 7;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DecryptInit(s, &om, k.rsa_priv));
    /* the same refused at C_WrapKey */
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    CK_ULONG wl = 0;
    RV(CKR_MECHANISM_PARAM_INVALID,
       P->C_WrapKey(s, &om, k.rsa_pub, dek, NULL, &wl));
    /* a session works normally afterwards */
    oaep.source = CKZ_DATA_SPECIFIED;
    RV(CKR_OK, P->C_EncryptInit(s, &om, k.rsa_pub));
}
END_TEST

static void unwrap_corrupted(bool legacy)
{
    struct keys k;
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256,
                                    CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM m[] = {{CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)},
                        {CKM_RSA_PKCS, NULL, 0}};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &aes, sizeof(aes)}};
    unsigned char wrapped[256];
    CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;

    rsa_pair(2048, &k.rsa_pub, &k.rsa_priv);
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    for (size_t i = 0; i < N(m); i++) {
        CK_ULONG wl = sizeof(wrapped), before;
        RV(CKR_OK, P->C_WrapKey(s, &m[i], k.rsa_pub, dek, wrapped, &wl));
        before = count_objects();
        wrapped[40] ^= 0x08;
        /* by default PKCS#1 v1.5 unwrap is refused whatever the blob */
        bool refused = m[i].mechanism == CKM_RSA_PKCS && !legacy;
        RV(refused ? CKR_MECHANISM_INVALID : CKR_WRAPPED_KEY_INVALID,
           P->C_UnwrapKey(s, &m[i], k.rsa_priv, wrapped, wl, t, N(t), &out));
        RV(refused ? CKR_MECHANISM_INVALID : CKR_WRAPPED_KEY_LEN_RANGE,
           P->C_UnwrapKey(s, &m[i], k.rsa_priv, wrapped, wl - 1, t, N(t),
                          &out));
        ck_assert_uint_eq(count_objects(), before);
        ck_assert_uint_eq(out, CK_INVALID_HANDLE);
    }
    /* the public key does not unwrap, the private key does not wrap */
    CK_ULONG wl = sizeof(wrapped);
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED,
       P->C_UnwrapKey(s, &m[0], k.rsa_pub, wrapped, 256, t, N(t), &out));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED,
       P->C_WrapKey(s, &m[0], k.rsa_priv, dek, wrapped, &wl));
    (void)wl;
}

START_TEST(test_unwrap_corrupted)
{
    unwrap_corrupted(false);
}
END_TEST

/* legacy_mechanisms = yes: PKCS#1 v1.5 unwraps again. */
START_TEST(test_unwrap_legacy_rsa_pkcs)
{
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("asym");
    s = kt_test_user_session(slot);
    unwrap_corrupted(true);
    struct keys k;
    rsa_pair(2048, &k.rsa_pub, &k.rsa_priv);
    check_wrap(CKM_RSA_PKCS, &k);
}
END_TEST

/* ---- import ---------------------------------------------------------- */

static void bn_attr(EVP_PKEY *k, const char *name, unsigned char *buf,
                    CK_ULONG *len)
{
    BIGNUM *bn = NULL;
    ck_assert(EVP_PKEY_get_bn_param(k, name, &bn));
    *len = (CK_ULONG)BN_bn2bin(bn, buf);
    BN_clear_free(bn);
}

static CK_OBJECT_HANDLE import_rsa_private(EVP_PKEY *k, bool crt, bool tamper)
{
    static const char *names[] = {
        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    static const CK_ATTRIBUTE_TYPE types[] = {
        CKA_MODULUS,    CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,    CKA_PRIME_2,         CKA_EXPONENT_1,
        CKA_EXPONENT_2, CKA_COEFFICIENT};
    static unsigned char bufs[8][512];
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE t[10] = {{CKA_CLASS, &cls, sizeof(cls)},
                          {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    CK_ULONG n = 2;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    for (size_t i = 0; i < (crt ? 8u : 3u); i++) {
        CK_ULONG len;
        bn_attr(k, names[i], bufs[i], &len);
        t[n].type = types[i];
        t[n].pValue = bufs[i];
        t[n].ulValueLen = len;
        n++;
    }
    if (tamper)
        bufs[2][10] ^= 0x01; /* d no longer matches n, e */
    CK_RV rv = P->C_CreateObject(s, t, n, &h);
    if (tamper) {
        RV(CKR_ATTRIBUTE_VALUE_INVALID, rv);
        return CK_INVALID_HANDLE;
    }
    RV(CKR_OK, rv);
    return h;
}

/* Signature by the token, verified by OpenSSL with the original key. */
static void check_imported_signs(CK_OBJECT_HANDLE h, EVP_PKEY *k,
                                 CK_MECHANISM_TYPE mech, const char *md)
{
    CK_MECHANISM m = {mech, NULL, 0};
    unsigned char sig[512], der[200];
    CK_ULONG n = sign(&m, h, msg, sizeof(msg), sig);
    size_t der_len = n;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (mech == CKM_ECDSA_SHA256) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        unsigned char *p = der;
        ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)n / 2, NULL),
                       BN_bin2bn(sig + n / 2, (int)n / 2, NULL));
        der_len = (size_t)i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
    }
    ck_assert(EVP_DigestVerifyInit_ex(c, NULL, md, NULL, NULL, k, NULL) == 1);
    ck_assert_int_eq(EVP_DigestVerify(c, mech == CKM_ECDSA_SHA256 ? der : sig,
                                      der_len, msg, sizeof(msg)),
                     1);
    EVP_MD_CTX_free(c);
}

START_TEST(test_import_rsa)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    CK_OBJECT_HANDLE crt = import_rsa_private(k, true, false);
    CK_OBJECT_HANDLE ned = import_rsa_private(k, false, false);
    ck_assert_ptr_nonnull(k);
    check_imported_signs(crt, k, CKM_SHA256_RSA_PKCS, "SHA256");
    check_imported_signs(ned, k, CKM_SHA256_RSA_PKCS, "SHA256");
    import_rsa_private(k, true, true);
    import_rsa_private(k, false, true);

    /* public key: verifies an OpenSSL signature; CKA_MODULUS_BITS computed */
    unsigned char nb[512], eb[8], sig[256];
    CK_ULONG nl, el, len;
    bn_attr(k, OSSL_PKEY_PARAM_RSA_N, nb, &nl);
    bn_attr(k, OSSL_PKEY_PARAM_RSA_E, eb, &el);
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_MODULUS, nb, nl},
                        {CKA_PUBLIC_EXPONENT, eb, el}};
    CK_OBJECT_HANDLE pub;
    RV(CKR_OK, P->C_CreateObject(s, t, N(t), &pub));
    unsigned char *a = attr(pub, CKA_MODULUS_BITS, &len, NULL);
    CK_ULONG bits;
    memcpy(&bits, a, sizeof(bits));
    ck_assert_uint_eq(bits, 2048);
    free(a);
    size_t sl = sizeof(sig);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    ck_assert(EVP_DigestSignInit_ex(c, NULL, "SHA256", NULL, NULL, k, NULL));
    ck_assert(EVP_DigestSign(c, sig, &sl, msg, sizeof(msg)) == 1);
    EVP_MD_CTX_free(c);
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, sl));
    /* a 1024-bit modulus, or a wrong CKA_MODULUS_BITS, is refused */
    CK_ULONG wrong = 1024;
    CK_ATTRIBUTE t2[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_MODULUS, nb, nl},
                         {CKA_PUBLIC_EXPONENT, eb, el},
                         {CKA_MODULUS_BITS, &wrong, sizeof(wrong)}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, t2, N(t2), &pub));
    t2[2].ulValueLen = 128;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, t2, 4, &pub));
    EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_import_ec)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char d[32], pt[65], der_pt[67];
    size_t pl = 0;
    CK_ULONG dl;
    CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY, pubc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_OBJECT_HANDLE h, ph;

    ck_assert_ptr_nonnull(k);
    BIGNUM *bn = NULL;
    ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &bn));
    dl = (CK_ULONG)BN_bn2binpad(bn, d, 32);
    BN_clear_free(bn);
    ck_assert(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                              sizeof(pt), &pl));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &priv, sizeof(priv)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                        {CKA_VALUE, d, dl}};
    RV(CKR_OK, P->C_CreateObject(s, t, N(t), &h));
    check_imported_signs(h, k, CKM_ECDSA_SHA256, "SHA256");
    /* CKA_PUBLIC_KEY_INFO computed from the private value */
    EVP_PKEY *spki = spki_of(h);
    ck_assert_int_eq(EVP_PKEY_eq(spki, k), 1);
    EVP_PKEY_free(spki);

    der_pt[0] = 0x04;
    der_pt[1] = 65;
    memcpy(der_pt + 2, pt, 65);
    CK_ATTRIBUTE pt_t[] = {{CKA_CLASS, &pubc, sizeof(pubc)},
                           {CKA_KEY_TYPE, &kt, sizeof(kt)},
                           {CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                           {CKA_EC_POINT, der_pt, sizeof(der_pt)}};
    RV(CKR_OK, P->C_CreateObject(s, pt_t, N(pt_t), &ph));
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char sig[64];
    CK_ULONG n = sign(&m, h, msg, sizeof(msg), sig);
    RV(CKR_OK, verify(&m, ph, msg, sizeof(msg), sig, n));
    /* off-curve point, bad params, zero private value */
    der_pt[66] ^= 1;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, pt_t, N(pt_t), &ph));
    static const unsigned char bad[] = {0x06, 0x03, 0x2a, 0x03, 0x04};
    pt_t[2].pValue = (void *)bad;
    pt_t[2].ulValueLen = sizeof(bad);
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, pt_t, N(pt_t), &ph));
    memset(d, 0, sizeof(d));
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, t, N(t), &h));
    EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_import_cert_and_data)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();
    unsigned char *der = NULL;
    int dl;

    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                               (const unsigned char *)"keytier cert", -1, -1,
                               0);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 77);
    X509_set_subject_name(x, nm);
    X509_set_issuer_name(x, nm);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    ck_assert_int_gt(X509_sign(x, k, EVP_sha256()), 0);
    dl = i2d_X509(x, &der);
    ck_assert_int_gt(dl, 0);

    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_LABEL, "cert", 4},
                        {CKA_VALUE, der, (CK_ULONG)dl}};
    CK_OBJECT_HANDLE h;
    RV(CKR_OK, P->C_CreateObject(s, t, N(t), &h));
    CK_ULONG len;
    unsigned char *a = attr(h, CKA_SERIAL_NUMBER, &len, NULL);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(a[2], 77);
    free(a);
    a = attr(h, CKA_SUBJECT, &len, NULL);
    unsigned char *nd = NULL;
    int nl = i2d_X509_NAME(nm, &nd);
    ck_assert_uint_eq(len, (CK_ULONG)nl);
    ck_assert_mem_eq(a, nd, len);
    free(a);
    a = attr(h, CKA_ISSUER, &len, NULL);
    ck_assert_mem_eq(a, nd, len);
    free(a);
    /* a subject that is not the certificate's, a truncated certificate */
    CK_ATTRIBUTE t2[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
                         {CKA_SUBJECT, "xyz", 3},
                         {CKA_VALUE, der, (CK_ULONG)dl}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, t2, N(t2), &h));
    t2[2].type = CKA_LABEL;
    t2[3].ulValueLen = (CK_ULONG)dl - 1;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, t2, N(t2), &h));

    /* Java's SunPKCS11 gives CKA_SERIAL_NUMBER as the INTEGER's content
     * octets: accepted for the same serial and stored as the DER INTEGER;
     * another serial in either form is inconsistent. */
    unsigned char raw77 = 77, raw78 = 78, der78[] = {0x02, 0x01, 78};
    CK_ATTRIBUTE t3[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
                         {CKA_SERIAL_NUMBER, &raw77, 1},
                         {CKA_VALUE, der, (CK_ULONG)dl}};
    RV(CKR_OK, P->C_CreateObject(s, t3, N(t3), &h));
    a = attr(h, CKA_SERIAL_NUMBER, &len, NULL);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(a[0], 0x02);
    ck_assert_int_eq(a[2], 77);
    free(a);
    t3[2].pValue = &raw78;
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, t3, N(t3), &h));
    t3[2].pValue = der78;
    t3[2].ulValueLen = sizeof(der78);
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, t3, N(t3), &h));

    /* CKO_DATA */
    CK_OBJECT_CLASS dc = CKO_DATA;
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &dc, sizeof(dc)},
                         {CKA_APPLICATION, "keytier", 7},
                         {CKA_VALUE, "payload", 7}};
    RV(CKR_OK, P->C_CreateObject(s, dt, N(dt), &h));
    a = attr(h, CKA_VALUE, &len, NULL);
    ck_assert_uint_eq(len, 7);
    ck_assert_mem_eq(a, "payload", 7);
    free(a);

    OPENSSL_free(nd);
    OPENSSL_free(der);
    X509_NAME_free(nm);
    X509_free(x);
    EVP_PKEY_free(k);
}
END_TEST

/* ---- ECDH ------------------------------------------------------------ */

START_TEST(test_ecdh)
{
    CK_OBJECT_HANDLE pub, priv, aes, gen;
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char pt[65], z[32];
    size_t pl = 0, zl = sizeof(z);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES, gk = CKK_GENERIC_SECRET;
    CK_ULONG len = 16, l;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;

    ec_pair(oid_p256, sizeof(oid_p256), &pub, &priv);
    ck_assert(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                              sizeof(pt), &pl));
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, (CK_ULONG)pl, pt};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1}};
    RV(CKR_OK, P->C_DeriveKey(s, &m, priv, t, N(t), &aes));
    CK_ATTRIBUTE gt[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &gk, sizeof(gk)},
                         {CKA_SENSITIVE, &no, 1},
                         {CKA_EXTRACTABLE, &yes, 1}};
    RV(CKR_OK, P->C_DeriveKey(s, &m, priv, gt, N(gt), &gen));

    /* OpenSSL computes Z on the peer's side */
    EVP_PKEY *mine = spki_of(pub);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(peer, NULL);
    ck_assert(EVP_PKEY_derive_init(c) == 1);
    ck_assert(EVP_PKEY_derive_set_peer(c, mine) == 1);
    ck_assert(EVP_PKEY_derive(c, z, &zl) == 1);
    EVP_PKEY_CTX_free(c);
    unsigned char *v = attr(gen, CKA_VALUE, &l, NULL);
    ck_assert_uint_eq(l, 32);
    ck_assert_mem_eq(v, z, 32);
    free(v);
    v = attr(aes, CKA_VALUE, &l, NULL);
    ck_assert_uint_eq(l, 16);
    ck_assert_mem_eq(v, z, 16);
    free(v);

    /* bad parameters: a KDF not offered, off-curve point, RSA base key; AES
     * without a length */
    CK_OBJECT_HANDLE out;
    p.kdf = CKD_SHA1_KDF_ASN1;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, N(t), &out));
    p.kdf = CKD_NULL;
    pt[64] ^= 1;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, priv, t, N(t), &out));
    pt[64] ^= 1;
    RV(CKR_TEMPLATE_INCOMPLETE, P->C_DeriveKey(s, &m, priv, t, 2, &out));
    CK_OBJECT_HANDLE rp, rk;
    CK_MECHANISM rg = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_ATTRIBUTE rpt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    CK_ATTRIBUTE rvt[] = {{CKA_DERIVE, &yes, 1}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &rg, rpt, 1, rvt, 1, &rp, &rk));
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_DeriveKey(s, &m, rk, t, N(t), &out));
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
}
END_TEST

/* CKA_DERIVE_TEMPLATE of the base key is forced on the derived key; a
 * template that contradicts it is refused. */
START_TEST(test_ecdh_derive_template)
{
    CK_MECHANISM gm = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub, priv, dk, out;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE forced[] = {{CKA_SENSITIVE, &yes, 1},
                             {CKA_EXTRACTABLE, &no, 1}};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}};
    CK_ATTRIBUTE vt[] = {{CKA_DERIVE, &yes, 1},
                         {CKA_DERIVE_TEMPLATE, forced, sizeof(forced)}};
    RV(CKR_OK, P->C_GenerateKeyPair(s, &gm, pt, N(pt), vt, N(vt), &pub, &priv));
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char ppt[65];
    size_t pl = 0;
    ck_assert(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY,
                                              ppt, sizeof(ppt), &pl));
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, (CK_ULONG)pl, ppt};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    /* asking for an exportable key contradicts the base key's template */
    CK_ATTRIBUTE open_t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                             {CKA_KEY_TYPE, &gk, sizeof(gk)},
                             {CKA_SENSITIVE, &no, 1},
                             {CKA_EXTRACTABLE, &yes, 1}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_DeriveKey(s, &m, priv, open_t, N(open_t), &out));
    /* a derived secret key has one role: wrap or encrypt */
    CK_KEY_TYPE ak = CKK_AES;
    CK_ULONG al = 32;
    CK_ATTRIBUTE both[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_KEY_TYPE, &ak, sizeof(ak)},
                           {CKA_VALUE_LEN, &al, sizeof(al)},
                           {CKA_WRAP, &yes, 1},
                           {CKA_DECRYPT, &yes, 1}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_DeriveKey(s, &m, priv, both, N(both), &out));
    /* silent on them: the template's values are imposed */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &gk, sizeof(gk)}};
    RV(CKR_OK, P->C_DeriveKey(s, &m, priv, t, N(t), &dk));
    CK_ULONG l;
    unsigned char *v = attr(dk, CKA_SENSITIVE, &l, NULL);
    ck_assert_uint_eq(l, 1);
    ck_assert_uint_eq(v[0], CK_TRUE);
    free(v);
    v = attr(dk, CKA_EXTRACTABLE, &l, NULL);
    ck_assert_uint_eq(l, 1);
    ck_assert_uint_eq(v[0], CK_FALSE);
    free(v);
    CK_RV rv;
    v = attr(dk, CKA_VALUE, &l, &rv);
    ck_assert_int_eq(rv, CKR_ATTRIBUTE_SENSITIVE);
    free(v);
    EVP_PKEY_free(peer);
}
END_TEST

/* ---- CKA_ALWAYS_AUTHENTICATE ---------------------------------------- */

START_TEST(test_always_authenticate)
{
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}};
    CK_ATTRIBUTE vt[] = {{CKA_ALWAYS_AUTHENTICATE, &yes, 1}};
    CK_OBJECT_HANDLE pub, priv;
    unsigned char sig[64];
    CK_ULONG n = sizeof(sig), len;

    RV(CKR_OK, P->C_GenerateKeyPair(s, &gen, pt, 1, vt, 1, &pub, &priv));
    unsigned char *a = attr(priv, CKA_ALWAYS_AUTHENTICATE, &len, NULL);
    ck_assert_int_eq(a[0], CK_TRUE);
    free(a);
    /* no operation waits for a context login */
    RV(CKR_OPERATION_NOT_INITIALIZED,
       P->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)USER_PIN,
                  strlen(USER_PIN)));
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    /* a length query is fine, the signature needs the PIN again */
    RV(CKR_OK, P->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), NULL, &n));
    RV(CKR_USER_NOT_LOGGED_IN,
       P->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &n));
    /* that failed C_Sign ended the operation (v2.40 §5.11: C_Sign always
     * terminates it but for CKR_BUFFER_TOO_SMALL and a length query) */
    RV(CKR_OPERATION_NOT_INITIALIZED,
       P->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)USER_PIN,
                  strlen(USER_PIN)));
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_PIN_INCORRECT,
       P->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "wrong-pin", 9));
    RV(CKR_USER_NOT_LOGGED_IN,
       P->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &n));
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)USER_PIN,
                          strlen(USER_PIN)));
    RV(CKR_OK, P->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &n));
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, n));
    /* the next operation asks again, multi-part too */
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_USER_NOT_LOGGED_IN, P->C_SignUpdate(s, (CK_BYTE_PTR)msg, 4));
    RV(CKR_OK, P->C_SignInit(s, &m, priv));
    RV(CKR_OK, P->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)USER_PIN,
                          strlen(USER_PIN)));
    RV(CKR_OK, P->C_SignUpdate(s, (CK_BYTE_PTR)msg, sizeof(msg)));
    n = sizeof(sig);
    RV(CKR_OK, P->C_SignFinal(s, sig, &n));
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, n));
    /* the session is still logged in normally */
    CK_SESSION_INFO info;
    RV(CKR_OK, P->C_GetSessionInfo(s, &info));
    ck_assert_uint_eq(info.state, CKS_RW_USER_FUNCTIONS);
}
END_TEST

/* ---- threads --------------------------------------------------------- */

struct signer {
    CK_OBJECT_HANDLE priv, pub;
    CK_MECHANISM_TYPE mech;
    int ok;
};

/* Each thread: its own session, many sign/verify rounds on the shared key
 * objects (one parsed key and its templates, used concurrently). */
static void *signer_run(void *arg)
{
    struct signer *w = arg;
    CK_SESSION_HANDLE ss;
    CK_MECHANISM m = {w->mech, NULL, 0};
    unsigned char h[32], sig[512];

    memset(h, 0x3c, sizeof(h));
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ss) != CKR_OK)
        return NULL;
    for (int i = 0; i < 40; i++) {
        CK_ULONG n = sizeof(sig);
        h[0] = (unsigned char)i;
        if (P->C_SignInit(ss, &m, w->priv) != CKR_OK ||
            P->C_Sign(ss, h, sizeof(h), sig, &n) != CKR_OK ||
            P->C_VerifyInit(ss, &m, w->pub) != CKR_OK ||
            P->C_Verify(ss, h, sizeof(h), sig, n) != CKR_OK)
            break;
        sig[n / 2] ^= 1;
        if (P->C_VerifyInit(ss, &m, w->pub) != CKR_OK ||
            P->C_Verify(ss, h, sizeof(h), sig, n) != CKR_SIGNATURE_INVALID)
            break;
        w->ok++;
    }
    P->C_CloseSession(ss);
    return NULL;
}

START_TEST(test_threads_share_keys)
{
    struct keys k;
    struct signer w[4];
    pthread_t t[4];

    rsa_pair(2048, &k.rsa_pub, &k.rsa_priv);
    ec_pair(oid_p256, sizeof(oid_p256), &k.ec_pub[0], &k.ec_priv[0]);
    for (int i = 0; i < 4; i++) {
        w[i].priv = i % 2 ? k.rsa_priv : k.ec_priv[0];
        w[i].pub = i % 2 ? k.rsa_pub : k.ec_pub[0];
        w[i].mech = i % 2 ? CKM_SHA256_RSA_PKCS : CKM_ECDSA;
        w[i].ok = 0;
        ck_assert_int_eq(pthread_create(&t[i], NULL, signer_run, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_int_eq(w[i].ok, 40);
    }
}
END_TEST

/* ---- the secure heap running out ------------------------------------- */

static void setup_small_heap(void)
{
    /* The heap is made when the module is loaded: the size is in the
     * configuration before. */
    kt_test_setup_with("secure_heap_size = 65536\n");
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("asym");
    s = kt_test_user_session(slot);
}

/* More key material than the smallest secure heap holds (8,000 AES keys
 * take at least 128 KiB of 16-byte blocks): the module moves on to
 * ordinary memory and leaves OpenSSL its share of the heap, whose DRBG
 * reseeds and private-key numbers come from it too. A heap filled to the
 * last block made C_GenerateKey answer CKR_FUNCTION_FAILED after 65,520
 * keys of the default 1 MiB heap. */
START_TEST(test_secure_heap_full)
{
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG len = 32;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE k, pub, priv;
    for (int i = 0; i < 8000; i++)
        RV(CKR_OK, P->C_GenerateKey(s, &gen, t, N(t), &k));
    rsa_pair(2048, &pub, &priv);
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    unsigned char sig[512];
    CK_ULONG n = sign(&m, priv, msg, sizeof(msg), sig);
    RV(CKR_OK, verify(&m, pub, msg, sizeof(msg), sig, n));
    unsigned char rnd[64];
    for (int i = 0; i < 2000; i++)
        RV(CKR_OK, P->C_GenerateRandom(s, rnd, sizeof(rnd)));
    RV(CKR_OK, P->C_GenerateKey(s, &gen, t, N(t), &k));
}
END_TEST

Suite *asym_suite(void);
Suite *asym_suite(void)
{
    Suite *su = suite_create("asym");
    TCase *gen = tcase_create("generate");
    TCase *ops = tcase_create("operations");
    TCase *imp = tcase_create("import");

    tcase_add_checked_fixture(gen, setup, kt_test_teardown);
    tcase_set_timeout(gen, 240);
    tcase_add_loop_test(gen, test_generate_rsa, 0, 3);
    tcase_add_loop_test(gen, test_generate_ec, 0, 3);
    tcase_add_test(gen, test_generate_bad_templates);
    suite_add_tcase(su, gen);

    tcase_add_checked_fixture(ops, setup, kt_test_teardown);
    tcase_set_timeout(ops, 120);
    tcase_add_test(ops, test_every_mechanism);
    tcase_add_test(ops, test_wrong_key);
    tcase_add_test(ops, test_bad_params);
    tcase_add_test(ops, test_unwrap_corrupted);
    tcase_add_test(ops, test_unwrap_legacy_rsa_pkcs);
    tcase_add_test(ops, test_ecdh);
    tcase_add_test(ops, test_ecdh_derive_template);
    tcase_add_test(ops, test_always_authenticate);
    tcase_add_test(ops, test_threads_share_keys);
    suite_add_tcase(su, ops);

    tcase_add_checked_fixture(imp, setup, kt_test_teardown);
    tcase_set_timeout(imp, 120);
    tcase_add_test(imp, test_import_rsa);
    tcase_add_test(imp, test_import_ec);
    tcase_add_test(imp, test_import_cert_and_data);
    suite_add_tcase(su, imp);

    TCase *heap = tcase_create("secure heap");
    tcase_add_checked_fixture(heap, setup_small_heap, kt_test_teardown);
    tcase_set_timeout(heap, 120);
    tcase_add_test(heap, test_secure_heap_full);
    suite_add_tcase(su, heap);
    return su;
}

KT_TEST_MAIN(asym_suite)
