/* Symmetric mechanisms through the PKCS#11 API, each checked against
 * OpenSSL computing the same result in the test (or RFC / NIST known
 * answers): AES-CTR, AES-CMAC and CMAC_GENERAL, SHA-1/224/SHA-3 digests,
 * HMACs and their _GENERAL forms, HKDF, *_ENCRYPT_DATA derivation, generic
 * secret generation; and the legacy set (DES, DES3, MD5) behind
 * legacy_mechanisms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "harness.h"

#include "pkcs11v3.h" /* 3.0 mechanism and key type names */

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY;

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("sym");
    s = kt_test_user_session(slot);
}

/* keytier only: restarts the module with legacy_mechanisms set. */
static void restart(const char *config)
{
    CK(P->C_Finalize(NULL));
    kt_test_write_config(config);
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("sym");
    s = kt_test_user_session(slot);
}

static void hex(const char *in, unsigned char *out, size_t *len)
{
    size_t n = strlen(in) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        sscanf(in + 2 * i, "%2x", &x);
        out[i] = (unsigned char)x;
    }
    *len = n;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 3));
}

/* A session key of type kt with value v, usable for crypt and sign, read
 * back and derived from. */
static CK_OBJECT_HANDLE key(CK_KEY_TYPE kt, const unsigned char *v,
                            CK_ULONG len)
{
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &c_secret, sizeof(c_secret)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)v, len},
        {CKA_EXTRACTABLE, &yes, 1},
        {CKA_SENSITIVE, &no, 1},
        {CKA_ENCRYPT, &yes, 1},
        {CKA_DECRYPT, &yes, 1},
        {CKA_SIGN, &yes, 1},
        {CKA_VERIFY, &yes, 1},
        {CKA_DERIVE, &yes, 1},
    };
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    return h;
}

static size_t get_value(CK_OBJECT_HANDLE h, unsigned char *out, size_t cap)
{
    CK_ATTRIBUTE a = {CKA_VALUE, out, cap};
    CK(P->C_GetAttributeValue(s, h, &a, 1));
    return a.ulValueLen;
}

static bool get_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, 1};
    CK(P->C_GetAttributeValue(s, h, &a, 1));
    return v != CK_FALSE;
}

/* ---- OpenSSL, the independent implementation ---------------------- */

static size_t ossl_cipher(const char *name, const unsigned char *k,
                          const unsigned char *iv, const unsigned char *in,
                          size_t len, unsigned char *out, bool pad)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    ck_assert_ptr_nonnull(c);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    ck_assert_int_eq(EVP_EncryptInit_ex2(x, c, k, iv, NULL), 1);
    EVP_CIPHER_CTX_set_padding(x, pad ? 1 : 0);
    ck_assert_int_eq(EVP_EncryptUpdate(x, out, &l1, in, (int)len), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(x, out + l1, &l2), 1);
    EVP_CIPHER_CTX_free(x);
    EVP_CIPHER_free(c);
    return (size_t)(l1 + l2);
}

static size_t ossl_mac(const char *mac, const char *param, const char *alg,
                       const unsigned char *k, size_t kl,
                       const unsigned char *in, size_t len, unsigned char *out)
{
    EVP_MAC *m = EVP_MAC_fetch(NULL, mac, NULL);
    ck_assert_ptr_nonnull(m);
    EVP_MAC_CTX *x = EVP_MAC_CTX_new(m);
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(param, (char *)alg, 0),
                      OSSL_PARAM_construct_end()};
    size_t ol = 0;
    ck_assert_int_eq(EVP_MAC_init(x, k, kl, p), 1);
    ck_assert_int_eq(EVP_MAC_update(x, in, len), 1);
    ck_assert_int_eq(EVP_MAC_final(x, out, &ol, 64), 1);
    EVP_MAC_CTX_free(x);
    EVP_MAC_free(m);
    return ol;
}

static size_t ossl_digest(const char *name, const unsigned char *in, size_t len,
                          unsigned char *out)
{
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    ck_assert_ptr_nonnull(md);
    unsigned int ol = 0;
    ck_assert_int_eq(EVP_Digest(in, len, out, &ol, md, NULL), 1);
    EVP_MD_free(md);
    return ol;
}

/* ---- AES-CTR -------------------------------------------------------- */

/* Encrypts in one part and in odd-sized parts; both equal OpenSSL's CTR,
 * and decrypting gives the plaintext back. */
START_TEST(test_aes_ctr)
{
    static const size_t klen[] = {16, 24, 32};
    static const char *names[] = {"AES-128-CTR", "AES-192-CTR", "AES-256-CTR"};
    unsigned char kv[32], in[100], want[128], out[128], back[128];
    fill(in, sizeof(in), 1);
    for (size_t i = 0; i < N(klen); i++) {
        fill(kv, klen[i], (unsigned)i + 2);
        CK_OBJECT_HANDLE k = key(CKK_AES, kv, klen[i]);
        CK_AES_CTR_PARAMS p = {128, {0}};
        fill(p.cb, 16, 9);
        CK_MECHANISM m = {CKM_AES_CTR, &p, sizeof(p)};
        ossl_cipher(names[i], kv, p.cb, in, sizeof(in), want, false);
        CK_ULONG ol = sizeof(out);
        CK(P->C_EncryptInit(s, &m, k));
        CK(P->C_Encrypt(s, in, sizeof(in), out, &ol));
        ck_assert_uint_eq(ol, sizeof(in));
        ck_assert_mem_eq(out, want, sizeof(in));
        /* multi-part: 1 + 30 + 69 bytes, each part's output at once */
        size_t done = 0;
        static const size_t parts[] = {1, 30, 69};
        CK(P->C_EncryptInit(s, &m, k));
        for (size_t j = 0; j < N(parts); j++) {
            CK_ULONG l = sizeof(out) - done;
            CK(P->C_EncryptUpdate(s, in + done, parts[j], out + done, &l));
            ck_assert_uint_eq(l, parts[j]);
            done += l;
        }
        CK_ULONG fl = 16;
        CK(P->C_EncryptFinal(s, out + done, &fl));
        ck_assert_uint_eq(fl, 0);
        ck_assert_mem_eq(out, want, sizeof(in));
        CK_ULONG bl = sizeof(back);
        CK(P->C_DecryptInit(s, &m, k));
        CK(P->C_Decrypt(s, want, sizeof(in), back, &bl));
        ck_assert_uint_eq(bl, sizeof(in));
        ck_assert_mem_eq(back, in, sizeof(in));
    }
}
END_TEST

/* ulCounterBits counts the low bits of the counter block that count: data
 * that would take the counter past its last value is refused
 * (CKR_DATA_LEN_RANGE), in one part or across parts; a width outside
 * 1..128 or a wrong parameter is CKR_MECHANISM_PARAM_INVALID. */
START_TEST(test_aes_ctr_counter_bits)
{
    unsigned char kv[16], in[64], out[128], want[128];
    fill(kv, 16, 3);
    fill(in, sizeof(in), 4);
    CK_OBJECT_HANDLE k = key(CKK_AES, kv, 16);
    /* 8 counter bits at 0xFE: two blocks (32 bytes) left */
    CK_AES_CTR_PARAMS p = {8, {0}};
    fill(p.cb, 15, 5);
    p.cb[15] = 0xFE;
    CK_MECHANISM m = {CKM_AES_CTR, &p, sizeof(p)};
    CK_ULONG ol = sizeof(out);
    CK(P->C_EncryptInit(s, &m, k));
    CK(P->C_Encrypt(s, in, 32, out, &ol));
    ossl_cipher("AES-128-CTR", kv, p.cb, in, 32, want, false);
    ck_assert_mem_eq(out, want, 32);
    ol = sizeof(out);
    CK(P->C_EncryptInit(s, &m, k));
    RV(CKR_DATA_LEN_RANGE, P->C_Encrypt(s, in, 33, out, &ol));
    /* across parts: 20 + 12 fit, one more byte does not */
    CK(P->C_EncryptInit(s, &m, k));
    ol = sizeof(out);
    CK(P->C_EncryptUpdate(s, in, 20, out, &ol));
    ol = sizeof(out);
    CK(P->C_EncryptUpdate(s, in + 20, 12, out, &ol));
    ol = sizeof(out);
    RV(CKR_DATA_LEN_RANGE, P->C_EncryptUpdate(s, in + 32, 1, out, &ol));
    /* decryption counts the same way */
    ol = sizeof(out);
    CK(P->C_DecryptInit(s, &m, k));
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE, P->C_Decrypt(s, in, 48, out, &ol));
    /* 128 counter bits at the last value: one block */
    CK_AES_CTR_PARAMS q = {128, {0}};
    memset(q.cb, 0xFF, 16);
    CK_MECHANISM mq = {CKM_AES_CTR, &q, sizeof(q)};
    ol = sizeof(out);
    CK(P->C_EncryptInit(s, &mq, k));
    CK(P->C_Encrypt(s, in, 16, out, &ol));
    ol = sizeof(out);
    CK(P->C_EncryptInit(s, &mq, k));
    RV(CKR_DATA_LEN_RANGE, P->C_Encrypt(s, in, 17, out, &ol));
    /* bad parameters */
    CK_AES_CTR_PARAMS z = p, w = p;
    z.ulCounterBits = 0;
    w.ulCounterBits = 129;
    CK_MECHANISM mz = {CKM_AES_CTR, &z, sizeof(z)};
    CK_MECHANISM mw = {CKM_AES_CTR, &w, sizeof(w)};
    CK_MECHANISM ms = {CKM_AES_CTR, &p, sizeof(p) - 1};
    CK_MECHANISM mn = {CKM_AES_CTR, NULL, 0};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mz, k));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mw, k));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &ms, k));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mn, k));
}
END_TEST

/* ---- CMAC ------------------------------------------------------------- */

/* RFC 4493 §4 (AES-128) and OpenSSL for 192/256-bit keys; one part and
 * many; CMAC_GENERAL cuts the MAC. */
START_TEST(test_aes_cmac)
{
    unsigned char kv[32], msg[64], want[16], mac[32];
    size_t kl, ml, wl;
    hex("2b7e151628aed2a6abf7158809cf4f3c", kv, &kl);
    hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        msg, &ml);
    static const struct {
        size_t len;
        const char *mac;
    } rfc[] = {
        {0, "bb1d6929e95937287fa37d129b756746"},
        {16, "070a16b46b4d4144f79bdd9dd04a287c"},
        {40, "dfa66747de9ae63030ca32611497c827"},
        {64, "51f0bebf7e3b9d92fc49741779363cfe"},
    };
    CK_OBJECT_HANDLE k = key(CKK_AES, kv, kl);
    CK_MECHANISM m = {CKM_AES_CMAC, NULL, 0};
    for (size_t i = 0; i < N(rfc); i++) {
        hex(rfc[i].mac, want, &wl);
        CK_ULONG sl = sizeof(mac);
        CK(P->C_SignInit(s, &m, k));
        CK(P->C_Sign(s, msg, rfc[i].len, mac, &sl));
        ck_assert_uint_eq(sl, 16);
        ck_assert_mem_eq(mac, want, 16);
        CK(P->C_VerifyInit(s, &m, k));
        CK(P->C_Verify(s, msg, rfc[i].len, want, 16));
    }
    /* 192 and 256-bit keys, in parts, against OpenSSL */
    static const char *cbc[] = {"AES-192-CBC", "AES-256-CBC"};
    for (size_t i = 0; i < 2; i++) {
        size_t len = 24 + 8 * i;
        fill(kv, len, 7 + (unsigned)i);
        CK_OBJECT_HANDLE k2 = key(CKK_AES, kv, len);
        ossl_mac("CMAC", OSSL_MAC_PARAM_CIPHER, cbc[i], kv, len, msg, 37, want);
        CK(P->C_SignInit(s, &m, k2));
        CK(P->C_SignUpdate(s, msg, 5));
        CK(P->C_SignUpdate(s, msg + 5, 32));
        CK_ULONG sl = sizeof(mac);
        CK(P->C_SignFinal(s, mac, &sl));
        ck_assert_uint_eq(sl, 16);
        ck_assert_mem_eq(mac, want, 16);
        CK(P->C_VerifyInit(s, &m, k2));
        CK(P->C_VerifyUpdate(s, msg, 37));
        CK(P->C_VerifyFinal(s, want, 16));
    }
    /* CMAC_GENERAL: the leading bytes */
    hex(rfc[3].mac, want, &wl);
    CK_ULONG glen = 4;
    CK_MECHANISM g = {CKM_AES_CMAC_GENERAL, &glen, sizeof(glen)};
    CK_ULONG sl = sizeof(mac);
    CK(P->C_SignInit(s, &g, k));
    CK(P->C_Sign(s, msg, 64, mac, &sl));
    ck_assert_uint_eq(sl, 4);
    ck_assert_mem_eq(mac, want, 4);
    CK(P->C_VerifyInit(s, &g, k));
    CK(P->C_Verify(s, msg, 64, want, 4));
    CK(P->C_VerifyInit(s, &g, k));
    RV(CKR_SIGNATURE_LEN_RANGE, P->C_Verify(s, msg, 64, want, 16));
    want[0] ^= 1;
    CK(P->C_VerifyInit(s, &g, k));
    RV(CKR_SIGNATURE_INVALID, P->C_Verify(s, msg, 64, want, 4));
    /* errors */
    CK_ULONG zero = 0, big = 17;
    CK_MECHANISM g0 = {CKM_AES_CMAC_GENERAL, &zero, sizeof(zero)};
    CK_MECHANISM g17 = {CKM_AES_CMAC_GENERAL, &big, sizeof(big)};
    CK_MECHANISM gn = {CKM_AES_CMAC_GENERAL, NULL, 0};
    CK_MECHANISM mp = {CKM_AES_CMAC, &glen, sizeof(glen)};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &g0, k));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &g17, k));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &gn, k));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &mp, k));
    CK(P->C_VerifyInit(s, &m, k));
    RV(CKR_SIGNATURE_LEN_RANGE, P->C_Verify(s, msg, 64, want, 15));
}
END_TEST

/* keytier's key roles: a key of the wrap role neither MACs with CMAC nor
 * derives with *_ENCRYPT_DATA (each computes the cipher under the key on
 * the caller's input); with legacy_mechanisms = yes it does. */
START_TEST(test_wrap_key_no_cmac_no_encrypt_data)
{
    if (kt_test_is_softhsm())
        return;
    for (int legacy = 0; legacy < 2; legacy++) {
        if (legacy)
            restart("legacy_mechanisms = yes\n");
        CK_ULONG len = 32;
        CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
        CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                            {CKA_WRAP, &yes, 1},
                            {CKA_UNWRAP, &yes, 1},
                            {CKA_SIGN, &yes, 1},
                            {CKA_DERIVE, &yes, 1}};
        CK_OBJECT_HANDLE k, h;
        CK(P->C_GenerateKey(s, &gen, t, N(t), &k));
        CK_RV want = legacy ? CKR_OK : CKR_KEY_FUNCTION_NOT_PERMITTED;
        CK_MECHANISM cmac = {CKM_AES_CMAC, NULL, 0};
        RV(want, P->C_SignInit(s, &cmac, k));
        unsigned char data[16] = {0};
        CK_KEY_DERIVATION_STRING_DATA sd = {data, 16};
        CK_MECHANISM ecb = {CKM_AES_ECB_ENCRYPT_DATA, &sd, sizeof(sd)};
        CK_ATTRIBUTE dt[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)}};
        RV(want, P->C_DeriveKey(s, &ecb, k, dt, 1, &h));
    }
}
END_TEST

/* ---- digests and HMACs --------------------------------------------- */

static const struct md_row {
    CK_MECHANISM_TYPE digest, hmac, general;
    CK_KEY_TYPE kt;
    const char *name;
    size_t len;
} mds[] = {
    {CKM_SHA_1, CKM_SHA_1_HMAC, CKM_SHA_1_HMAC_GENERAL, CKK_SHA_1_HMAC, "SHA1",
     20},
    {CKM_SHA224, CKM_SHA224_HMAC, CKM_SHA224_HMAC_GENERAL, CKK_SHA224_HMAC,
     "SHA224", 28},
    {CKM_SHA256, CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL, CKK_SHA256_HMAC,
     "SHA256", 32},
    {CKM_SHA384, CKM_SHA384_HMAC, CKM_SHA384_HMAC_GENERAL, CKK_SHA384_HMAC,
     "SHA384", 48},
    {CKM_SHA512, CKM_SHA512_HMAC, CKM_SHA512_HMAC_GENERAL, CKK_SHA512_HMAC,
     "SHA512", 64},
    {CKM_SHA3_224, CKM_SHA3_224_HMAC, CKM_SHA3_224_HMAC_GENERAL, 0x36,
     "SHA3-224", 28},
    {CKM_SHA3_256, CKM_SHA3_256_HMAC, CKM_SHA3_256_HMAC_GENERAL, 0x37,
     "SHA3-256", 32},
    {CKM_SHA3_384, CKM_SHA3_384_HMAC, CKM_SHA3_384_HMAC_GENERAL, 0x38,
     "SHA3-384", 48},
    {CKM_SHA3_512, CKM_SHA3_512_HMAC, CKM_SHA3_512_HMAC_GENERAL, 0x39,
     "SHA3-512", 64},
};

/* Each digest in one part, in parts, and of a key (C_DigestKey), equal to
 * OpenSSL's. */
START_TEST(test_digests)
{
    unsigned char in[200], want[64], out[64], kv[32];
    fill(in, sizeof(in), 11);
    fill(kv, sizeof(kv), 12);
    CK_OBJECT_HANDLE k = key(CKK_GENERIC_SECRET, kv, sizeof(kv));
    for (size_t i = 0; i < N(mds); i++) {
        CK_MECHANISM m = {mds[i].digest, NULL, 0};
        ck_assert_uint_eq(ossl_digest(mds[i].name, in, sizeof(in), want),
                          mds[i].len);
        CK_ULONG ol = 0;
        CK(P->C_DigestInit(s, &m));
        CK(P->C_Digest(s, in, sizeof(in), NULL, &ol));
        ck_assert_uint_eq(ol, mds[i].len);
        CK(P->C_Digest(s, in, sizeof(in), out, &ol));
        ck_assert_mem_eq(out, want, mds[i].len);
        CK(P->C_DigestInit(s, &m));
        CK(P->C_DigestUpdate(s, in, 3));
        CK(P->C_DigestUpdate(s, in + 3, sizeof(in) - 3));
        ol = sizeof(out);
        CK(P->C_DigestFinal(s, out, &ol));
        ck_assert_mem_eq(out, want, mds[i].len);
        /* C_DigestKey: the key's value between two parts */
        unsigned char cat[32 + 8];
        memcpy(cat, in, 4);
        memcpy(cat + 4, kv, 32);
        memcpy(cat + 36, in, 4);
        ossl_digest(mds[i].name, cat, sizeof(cat), want);
        CK(P->C_DigestInit(s, &m));
        CK(P->C_DigestUpdate(s, in, 4));
        CK(P->C_DigestKey(s, k));
        CK(P->C_DigestUpdate(s, in, 4));
        ol = sizeof(out);
        CK(P->C_DigestFinal(s, out, &ol));
        ck_assert_mem_eq(out, want, mds[i].len);
        /* a digest takes no parameter */
        CK_MECHANISM bad = {mds[i].digest, in, 4};
        RV(CKR_MECHANISM_PARAM_INVALID, P->C_DigestInit(s, &bad));
    }
}
END_TEST

/* Each HMAC with a generic secret and with its own key type, against
 * OpenSSL; _GENERAL at 1, half and the full length; lengths 0 and hLen+1
 * refused; another HMAC key type refused. */
START_TEST(test_hmacs)
{
    unsigned char in[77], kv[131], want[64], mac[64];
    fill(in, sizeof(in), 21);
    fill(kv, sizeof(kv), 22);
    static const size_t klens[] = {1, 20, 131};
    for (size_t i = 0; i < N(mds); i++) {
        for (size_t j = 0; j < N(klens); j++) {
            CK_KEY_TYPE kt = j == 1 ? mds[i].kt : CKK_GENERIC_SECRET;
            CK_OBJECT_HANDLE k = key(kt, kv, klens[j]);
            ck_assert_uint_eq(ossl_mac("HMAC", OSSL_MAC_PARAM_DIGEST,
                                       mds[i].name, kv, klens[j], in,
                                       sizeof(in), want),
                              mds[i].len);
            CK_MECHANISM m = {mds[i].hmac, NULL, 0};
            CK_ULONG sl = sizeof(mac);
            CK(P->C_SignInit(s, &m, k));
            CK(P->C_Sign(s, in, sizeof(in), mac, &sl));
            ck_assert_uint_eq(sl, mds[i].len);
            ck_assert_mem_eq(mac, want, mds[i].len);
            CK(P->C_VerifyInit(s, &m, k));
            CK(P->C_VerifyUpdate(s, in, 10));
            CK(P->C_VerifyUpdate(s, in + 10, sizeof(in) - 10));
            CK(P->C_VerifyFinal(s, want, mds[i].len));
            CK_ULONG lens[] = {1, mds[i].len / 2, mds[i].len};
            for (size_t g = 0; g < N(lens); g++) {
                CK_MECHANISM gm = {mds[i].general, &lens[g], sizeof(CK_ULONG)};
                sl = sizeof(mac);
                CK(P->C_SignInit(s, &gm, k));
                CK(P->C_SignUpdate(s, in, sizeof(in)));
                CK(P->C_SignFinal(s, mac, &sl));
                ck_assert_uint_eq(sl, lens[g]);
                ck_assert_mem_eq(mac, want, lens[g]);
                CK(P->C_VerifyInit(s, &gm, k));
                CK(P->C_Verify(s, in, sizeof(in), want, lens[g]));
            }
            CK_ULONG zero = 0, over = mds[i].len + 1;
            CK_MECHANISM g0 = {mds[i].general, &zero, sizeof(zero)};
            CK_MECHANISM go = {mds[i].general, &over, sizeof(over)};
            RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &g0, k));
            RV(CKR_MECHANISM_PARAM_INVALID, P->C_VerifyInit(s, &go, k));
        }
        /* an HMAC key of another hash does not fit */
        CK_KEY_TYPE other = mds[(i + 1) % N(mds)].kt;
        CK_OBJECT_HANDLE ko = key(other, kv, 32);
        CK_MECHANISM m = {mds[i].hmac, NULL, 0};
        RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &m, ko));
    }
}
END_TEST

/* ---- HKDF ------------------------------------------------------------ */

static CK_RV hkdf_derive(CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE base,
                         const CK_HKDF_PARAMS *p, CK_ULONG len,
                         CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = mech == CKM_HKDF_DATA ? CKO_DATA : CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_MECHANISM m = {mech, (void *)p, sizeof(*p)};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_SENSITIVE, &no, 1},
        {CKA_EXTRACTABLE, &yes, 1},         {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
    };
    CK_ULONG n = mech == CKM_HKDF_DATA ? 1 : 4;
    if (len != 0) {
        t[n] = t[4];
        n++;
    }
    return P->C_DeriveKey(s, &m, base, t, n, out);
}

static void ossl_hkdf(const char *md, int mode, const unsigned char *ikm,
                      size_t il, const unsigned char *salt, size_t sl,
                      const unsigned char *info, size_t nl, unsigned char *out,
                      size_t len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *x = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[6];
    size_t n = 0;
    p[n++] =
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
    p[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    p[n++] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, il);
    if (sl > 0)
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                   (void *)salt, sl);
    if (nl > 0)
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                   (void *)info, nl);
    p[n] = OSSL_PARAM_construct_end();
    ck_assert_int_eq(EVP_KDF_derive(x, out, len, p), 1);
    EVP_KDF_CTX_free(x);
    EVP_KDF_free(kdf);
}

/* RFC 5869 A.1 (and its PRK: extract only), A.3 (no salt); expand only;
 * every PRF hash and a salt key against OpenSSL; CKM_HKDF_DATA. */
START_TEST(test_hkdf)
{
    unsigned char ikm[22], salt[13], info[10], okm[42], prk[32], got[128];
    size_t il, sl, nl, ol, pl;
    hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", ikm, &il);
    hex("000102030405060708090a0b0c", salt, &sl);
    hex("f0f1f2f3f4f5f6f7f8f9", info, &nl);
    hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865",
        okm, &ol);
    hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5", prk,
        &pl);
    CK_OBJECT_HANDLE base = key(CKK_GENERIC_SECRET, ikm, il), h;
    CK_HKDF_PARAMS p = {CK_TRUE, CK_TRUE, CKM_SHA256, CKF_HKDF_SALT_DATA,
                        salt,    sl,      0,          info,
                        nl};
    CK(hkdf_derive(CKM_HKDF_DERIVE, base, &p, ol, &h));
    ck_assert_uint_eq(get_value(h, got, sizeof(got)), ol);
    ck_assert_mem_eq(got, okm, ol);
    ck_assert(!get_bool(h, CKA_LOCAL));
    /* extract only: the PRK (CKA_VALUE_LEN may be left out) */
    CK_HKDF_PARAMS x = p;
    x.bExpand = CK_FALSE;
    CK(hkdf_derive(CKM_HKDF_DERIVE, base, &x, 0, &h));
    ck_assert_uint_eq(get_value(h, got, sizeof(got)), 32);
    ck_assert_mem_eq(got, prk, 32);
    RV(CKR_TEMPLATE_INCONSISTENT,
       hkdf_derive(CKM_HKDF_DERIVE, base, &x, 16, &h));
    /* expand only from the PRK */
    CK_OBJECT_HANDLE kp = key(CKK_HKDF, prk, 32);
    CK_HKDF_PARAMS e = p;
    e.bExtract = CK_FALSE;
    CK(hkdf_derive(CKM_HKDF_DERIVE, kp, &e, ol, &h));
    get_value(h, got, sizeof(got));
    ck_assert_mem_eq(got, okm, ol);
    /* A.3: no salt, no info */
    hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8",
        okm, &ol);
    CK_HKDF_PARAMS z = {
        CK_TRUE, CK_TRUE, CKM_SHA256, CKF_HKDF_SALT_NULL, NULL, 0, 0, NULL, 0};
    CK(hkdf_derive(CKM_HKDF_DERIVE, base, &z, ol, &h));
    get_value(h, got, sizeof(got));
    ck_assert_mem_eq(got, okm, ol);
    /* every PRF, the salt from a key, against OpenSSL */
    static const struct {
        CK_MECHANISM_TYPE m;
        const char *name;
    } prf[] = {{CKM_SHA_1, "SHA1"},
               {CKM_SHA224, "SHA224"},
               {CKM_SHA384, "SHA384"},
               {CKM_SHA512, "SHA512"},
               {CKM_SHA3_256, "SHA3-256"}};
    unsigned char sv[24], want[100];
    fill(sv, sizeof(sv), 31);
    CK_OBJECT_HANDLE sk = key(CKK_GENERIC_SECRET, sv, sizeof(sv));
    for (size_t i = 0; i < N(prf); i++) {
        CK_HKDF_PARAMS q = {CK_TRUE, CK_TRUE, prf[i].m, CKF_HKDF_SALT_KEY,
                            NULL,    0,       sk,       info,
                            nl};
        ossl_hkdf(prf[i].name, EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, ikm, il,
                  sv, sizeof(sv), info, nl, want, 100);
        CK(hkdf_derive(CKM_HKDF_DERIVE, base, &q, 100, &h));
        ck_assert_uint_eq(get_value(h, got, sizeof(got)), 100);
        ck_assert_mem_eq(got, want, 100);
    }
    /* CKM_HKDF_DATA: a data object holding the result */
    CK(hkdf_derive(CKM_HKDF_DATA, base, &z, ol, &h));
    CK_OBJECT_CLASS cls = 0;
    CK_ATTRIBUTE ca = {CKA_CLASS, &cls, sizeof(cls)};
    CK(P->C_GetAttributeValue(s, h, &ca, 1));
    ck_assert_uint_eq(cls, CKO_DATA);
    ck_assert_uint_eq(get_value(h, got, sizeof(got)), ol);
    ck_assert_mem_eq(got, okm, ol);
}
END_TEST

/* HKDF's errors: each with its exact code. */
START_TEST(test_hkdf_errors)
{
    unsigned char v[32], aes[16];
    fill(v, 32, 41);
    fill(aes, 16, 42);
    CK_OBJECT_HANDLE base = key(CKK_GENERIC_SECRET, v, 32), h;
    CK_HKDF_PARAMS p = {
        CK_TRUE, CK_TRUE, CKM_SHA256, CKF_HKDF_SALT_NULL, NULL, 0, 0, NULL, 0};
    CK_HKDF_PARAMS q = p;
    q.bExtract = q.bExpand = CK_FALSE;
    RV(CKR_MECHANISM_PARAM_INVALID,
       hkdf_derive(CKM_HKDF_DERIVE, base, &q, 16, &h));
    q = p;
    q.prfHashMechanism = CKM_AES_ECB;
    RV(CKR_MECHANISM_PARAM_INVALID,
       hkdf_derive(CKM_HKDF_DERIVE, base, &q, 16, &h));
    q = p;
    q.ulSaltType = CKF_HKDF_SALT_DATA; /* and no salt */
    RV(CKR_MECHANISM_PARAM_INVALID,
       hkdf_derive(CKM_HKDF_DERIVE, base, &q, 16, &h));
    q = p;
    q.ulSaltType = 8;
    RV(CKR_MECHANISM_PARAM_INVALID,
       hkdf_derive(CKM_HKDF_DERIVE, base, &q, 16, &h));
    q = p;
    q.ulSaltType = CKF_HKDF_SALT_KEY;
    q.hSaltKey = 0x7777777;
    RV(CKR_MECHANISM_PARAM_INVALID,
       hkdf_derive(CKM_HKDF_DERIVE, base, &q, 16, &h));
    /* expanding needs CKA_VALUE_LEN, at most 255 hLen */
    RV(CKR_TEMPLATE_INCOMPLETE, hkdf_derive(CKM_HKDF_DERIVE, base, &p, 0, &h));
    RV(CKR_KEY_SIZE_RANGE,
       hkdf_derive(CKM_HKDF_DERIVE, base, &p, 255 * 32 + 1, &h));
    CK_MECHANISM m = {CKM_HKDF_DERIVE, &p, sizeof(p) - 1};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)}};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m, base, t, 1, &h));
    /* an AES base key; a key without CKA_DERIVE */
    CK_OBJECT_HANDLE ka = key(CKK_AES, aes, 16);
    RV(CKR_KEY_TYPE_INCONSISTENT, hkdf_derive(CKM_HKDF_DERIVE, ka, &p, 16, &h));
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE nd[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_VALUE, v, 32},
                         {CKA_DERIVE, &no, 1}};
    CK_OBJECT_HANDLE kn;
    CK(P->C_CreateObject(s, nd, N(nd), &kn));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED,
       hkdf_derive(CKM_HKDF_DERIVE, kn, &p, 16, &h));
}
END_TEST

/* A derived key is CKA_LOCAL false; always sensitive and never
 * extractable only if its base key was and it is. */
START_TEST(test_derived_key_attributes)
{
    CK_ULONG len = 32;
    CK_MECHANISM gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_DERIVE, &yes, 1},
                         {CKA_SENSITIVE, &yes, 1},
                         {CKA_EXTRACTABLE, &no, 1}};
    CK_OBJECT_HANDLE base, h;
    CK(P->C_GenerateKey(s, &gen, gt, N(gt), &base));
    ck_assert(get_bool(base, CKA_ALWAYS_SENSITIVE));
    ck_assert(get_bool(base, CKA_NEVER_EXTRACTABLE));
    CK_HKDF_PARAMS p = {
        CK_TRUE, CK_TRUE, CKM_SHA256, CKF_HKDF_SALT_NULL, NULL, 0, 0, NULL, 0};
    CK_MECHANISM m = {CKM_HKDF_DERIVE, &p, sizeof(p)};
    CK_ULONG dl = 16;
    CK_ATTRIBUTE sens[] = {{CKA_VALUE_LEN, &dl, sizeof(dl)},
                           {CKA_SENSITIVE, &yes, 1},
                           {CKA_EXTRACTABLE, &no, 1}};
    CK(P->C_DeriveKey(s, &m, base, sens, N(sens), &h));
    ck_assert(!get_bool(h, CKA_LOCAL));
    ck_assert(get_bool(h, CKA_ALWAYS_SENSITIVE));
    ck_assert(get_bool(h, CKA_NEVER_EXTRACTABLE));
    CK_ATTRIBUTE open[] = {{CKA_VALUE_LEN, &dl, sizeof(dl)},
                           {CKA_SENSITIVE, &no, 1},
                           {CKA_EXTRACTABLE, &yes, 1}};
    CK(P->C_DeriveKey(s, &m, base, open, N(open), &h));
    ck_assert(!get_bool(h, CKA_ALWAYS_SENSITIVE));
    ck_assert(!get_bool(h, CKA_NEVER_EXTRACTABLE));
    /* a base key made outside the token passes neither on */
    unsigned char v[32];
    fill(v, 32, 51);
    CK_OBJECT_HANDLE imported = key(CKK_GENERIC_SECRET, v, 32);
    CK(P->C_DeriveKey(s, &m, imported, sens, N(sens), &h));
    ck_assert(!get_bool(h, CKA_ALWAYS_SENSITIVE));
    ck_assert(!get_bool(h, CKA_NEVER_EXTRACTABLE));
}
END_TEST

/* ---- *_ENCRYPT_DATA -------------------------------------------------- */

/* AES ECB and CBC _ENCRYPT_DATA: the new key is the encryption of the
 * data under the base key (OpenSSL), cut to CKA_VALUE_LEN; errors. */
START_TEST(test_aes_encrypt_data)
{
    unsigned char kv[32], data[48], want[64], got[64];
    fill(kv, 32, 61);
    fill(data, sizeof(data), 62);
    CK_OBJECT_HANDLE k = key(CKK_AES, kv, 32), h;
    CK_KEY_DERIVATION_STRING_DATA sd = {data, 32};
    CK_MECHANISM ecb = {CKM_AES_ECB_ENCRYPT_DATA, &sd, sizeof(sd)};
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_VALUE_LEN, &len, sizeof(len)}};
    CK(P->C_DeriveKey(s, &ecb, k, t, N(t), &h));
    ossl_cipher("AES-256-ECB", kv, NULL, data, 32, want, false);
    ck_assert_uint_eq(get_value(h, got, sizeof(got)), 32);
    ck_assert_mem_eq(got, want, 32);
    ck_assert(!get_bool(h, CKA_LOCAL));
    CK_AES_CBC_ENCRYPT_DATA_PARAMS cp = {{0}, data, 48};
    fill(cp.iv, 16, 63);
    CK_MECHANISM cbc = {CKM_AES_CBC_ENCRYPT_DATA, &cp, sizeof(cp)};
    len = 16;
    CK(P->C_DeriveKey(s, &cbc, k, t, N(t), &h));
    ossl_cipher("AES-256-CBC", kv, cp.iv, data, 48, want, false);
    ck_assert_uint_eq(get_value(h, got, sizeof(got)), 16);
    ck_assert_mem_eq(got, want, 16);
    /* a generic secret takes the whole result without CKA_VALUE_LEN */
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE tg[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &gk, sizeof(gk)},
                         {CKA_SENSITIVE, &no, 1},
                         {CKA_EXTRACTABLE, &yes, 1}};
    CK(P->C_DeriveKey(s, &cbc, k, tg, N(tg), &h));
    ck_assert_uint_eq(get_value(h, got, sizeof(got)), 48);
    ck_assert_mem_eq(got, want, 48);
    /* errors: data not whole blocks, no data, a wrong parameter size, a
     * length beyond the data */
    CK_KEY_DERIVATION_STRING_DATA odd = {data, 17}, none = {NULL, 0};
    CK_MECHANISM m1 = {CKM_AES_ECB_ENCRYPT_DATA, &odd, sizeof(odd)};
    CK_MECHANISM m2 = {CKM_AES_ECB_ENCRYPT_DATA, &none, sizeof(none)};
    CK_MECHANISM m3 = {CKM_AES_CBC_ENCRYPT_DATA, &sd, sizeof(sd)};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m1, k, tg, N(tg), &h));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m2, k, tg, N(tg), &h));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_DeriveKey(s, &m3, k, tg, N(tg), &h));
    /* an AES key of a size AES lacks */
    CK_KEY_DERIVATION_STRING_DATA d48 = {data, 48};
    CK_MECHANISM m4 = {CKM_AES_ECB_ENCRYPT_DATA, &d48, sizeof(d48)};
    len = 48;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_DeriveKey(s, &m4, k, t, N(t), &h));
}
END_TEST

/* CKM_GENERIC_SECRET_KEY_GEN: CKA_VALUE_LEN in bytes, required. */
START_TEST(test_generic_secret_generation)
{
    CK_MECHANISM m = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_ULONG len = 40;
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE h;
    unsigned char v[64];
    CK(P->C_GenerateKey(s, &m, t, N(t), &h));
    ck_assert_uint_eq(get_value(h, v, sizeof(v)), 40);
    ck_assert(get_bool(h, CKA_LOCAL));
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE ka = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    CK(P->C_GetAttributeValue(s, h, &ka, 1));
    ck_assert_uint_eq(kt, CKK_GENERIC_SECRET);
    RV(CKR_TEMPLATE_INCOMPLETE, P->C_GenerateKey(s, &m, t + 1, 2, &h));
    len = 0;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_GenerateKey(s, &m, t, N(t), &h));
}
END_TEST

/* ---- the legacy set (keytier's policy) --------------------------------- */

static const CK_MECHANISM_TYPE legacy_mechs[] = {
    CKM_DES_KEY_GEN,
    CKM_DES2_KEY_GEN,
    CKM_DES3_KEY_GEN,
    CKM_DES_ECB,
    CKM_DES_CBC,
    CKM_DES_CBC_PAD,
    CKM_DES3_ECB,
    CKM_DES3_CBC,
    CKM_DES3_CBC_PAD,
    CKM_DES3_CMAC,
    CKM_DES3_CMAC_GENERAL,
    CKM_DES_ECB_ENCRYPT_DATA,
    CKM_DES_CBC_ENCRYPT_DATA,
    CKM_DES3_ECB_ENCRYPT_DATA,
    CKM_DES3_CBC_ENCRYPT_DATA,
    CKM_MD5,
    CKM_MD5_HMAC,
    CKM_MD5_HMAC_GENERAL,
};

static bool listed(CK_MECHANISM_TYPE m)
{
    CK_ULONG n = 0;
    CK(P->C_GetMechanismList(slot, NULL, &n));
    CK_MECHANISM_TYPE *list = calloc(n, sizeof(*list));
    CK(P->C_GetMechanismList(slot, list, &n));
    bool found = false;
    for (CK_ULONG i = 0; i < n; i++)
        found |= list[i] == m;
    free(list);
    return found;
}

/* legacy_mechanisms = no (the default): DES, DES3 and MD5 are not listed
 * and answer CKR_MECHANISM_INVALID; DES keys cannot be made. */
START_TEST(test_legacy_set_absent_by_default)
{
    if (kt_test_is_softhsm())
        return;
    for (size_t i = 0; i < N(legacy_mechs); i++) {
        CK_MECHANISM_INFO info;
        ck_assert_msg(!listed(legacy_mechs[i]), "0x%lx listed",
                      legacy_mechs[i]);
        RV(CKR_MECHANISM_INVALID,
           P->C_GetMechanismInfo(slot, legacy_mechs[i], &info));
    }
    CK_MECHANISM gen = {CKM_DES3_KEY_GEN, NULL, 0}, md5 = {CKM_MD5, NULL, 0};
    CK_OBJECT_HANDLE h;
    RV(CKR_MECHANISM_INVALID, P->C_GenerateKey(s, &gen, NULL, 0, &h));
    RV(CKR_MECHANISM_INVALID, P->C_DigestInit(s, &md5));
    unsigned char v[24];
    fill(v, 24, 71);
    CK_KEY_TYPE kt = CKK_DES3;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, v, 24}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, t, N(t), &h));
    restart("legacy_mechanisms = yes\n");
    for (size_t i = 0; i < N(legacy_mechs); i++)
        ck_assert_msg(listed(legacy_mechs[i]), "0x%lx not listed",
                      legacy_mechs[i]);
}
END_TEST

static void check_parity(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(__builtin_parity(v[i]) == 1, "byte %zu even parity", i);
}

/* legacy_mechanisms = yes: DES/DES2/DES3 generation (odd parity), ECB, CBC
 * and CBC-PAD against OpenSSL (single DES from its legacy provider). */
START_TEST(test_legacy_des)
{
    if (kt_test_is_softhsm())
        return;
    restart("legacy_mechanisms = yes\n");
    OSSL_PROVIDER *lp = OSSL_PROVIDER_load(NULL, "legacy");
    OSSL_PROVIDER *dp = OSSL_PROVIDER_load(NULL, "default");
    ck_assert_ptr_nonnull(lp);
    static const struct {
        CK_MECHANISM_TYPE gen;
        size_t len;
        CK_MECHANISM_TYPE ecb, cbc, pad;
        const char *oecb, *ocbc;
    } rows[] = {
        {CKM_DES_KEY_GEN, 8, CKM_DES_ECB, CKM_DES_CBC, CKM_DES_CBC_PAD,
         "DES-ECB", "DES-CBC"},
        {CKM_DES2_KEY_GEN, 16, CKM_DES3_ECB, CKM_DES3_CBC, CKM_DES3_CBC_PAD,
         "DES-EDE-ECB", "DES-EDE-CBC"},
        {CKM_DES3_KEY_GEN, 24, CKM_DES3_ECB, CKM_DES3_CBC, CKM_DES3_CBC_PAD,
         "DES-EDE3-ECB", "DES-EDE3-CBC"},
    };
    unsigned char in[29], kv[24], iv[8], want[64], out[64], back[64];
    fill(in, sizeof(in), 81);
    fill(iv, 8, 82);
    for (size_t i = 0; i < N(rows); i++) {
        CK_MECHANISM gm = {rows[i].gen, NULL, 0};
        CK_ATTRIBUTE t[] = {{CKA_SENSITIVE, &no, 1},
                            {CKA_EXTRACTABLE, &yes, 1}};
        CK_OBJECT_HANDLE k;
        CK(P->C_GenerateKey(s, &gm, t, N(t), &k));
        ck_assert_uint_eq(get_value(k, kv, sizeof(kv)), rows[i].len);
        check_parity(kv, rows[i].len);
        /* CKA_CHECK_VALUE: ECB encryption of a zero block, 3 bytes */
        unsigned char zero[8] = {0}, kcv[8], cv[3];
        ossl_cipher(rows[i].oecb, kv, NULL, zero, 8, kcv, false);
        CK_ATTRIBUTE ca = {CKA_CHECK_VALUE, cv, 3};
        CK(P->C_GetAttributeValue(s, k, &ca, 1));
        ck_assert_uint_eq(ca.ulValueLen, 3);
        ck_assert_mem_eq(cv, kcv, 3);
        /* ECB and CBC on whole blocks, CBC-PAD on 29 bytes */
        CK_MECHANISM me = {rows[i].ecb, NULL, 0};
        CK_MECHANISM mc = {rows[i].cbc, iv, 8};
        CK_MECHANISM mp = {rows[i].pad, iv, 8};
        const CK_MECHANISM *ms[] = {&me, &mc, &mp};
        for (size_t j = 0; j < 3; j++) {
            size_t inl = j == 2 ? sizeof(in) : 24;
            size_t wl = ossl_cipher(j == 0 ? rows[i].oecb : rows[i].ocbc, kv,
                                    j == 0 ? NULL : iv, in, inl, want, j == 2);
            CK_ULONG ol = sizeof(out), bl = sizeof(back);
            CK(P->C_EncryptInit(s, (CK_MECHANISM *)ms[j], k));
            CK(P->C_Encrypt(s, in, inl, out, &ol));
            ck_assert_uint_eq(ol, wl);
            ck_assert_mem_eq(out, want, wl);
            CK(P->C_DecryptInit(s, (CK_MECHANISM *)ms[j], k));
            CK(P->C_DecryptUpdate(s, out, 5, back, &bl));
            CK_ULONG got = bl;
            bl = sizeof(back) - got;
            CK(P->C_DecryptUpdate(s, out + 5, ol - 5, back + got, &bl));
            got += bl;
            bl = sizeof(back) - got;
            CK(P->C_DecryptFinal(s, back + got, &bl));
            got += bl;
            ck_assert_uint_eq(got, inl);
            ck_assert_mem_eq(back, in, inl);
        }
        /* data not whole blocks; an 8-byte IV only */
        CK_ULONG ol = sizeof(out);
        CK(P->C_EncryptInit(s, &me, k));
        RV(CKR_DATA_LEN_RANGE, P->C_Encrypt(s, in, 9, out, &ol));
        CK_MECHANISM bad = {rows[i].cbc, in, 16};
        RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &bad, k));
    }
    /* a DES key is one size; a DES3 key of the wrong size is refused */
    CK_ULONG len = 16;
    CK_ATTRIBUTE vl = {CKA_VALUE_LEN, &len, sizeof(len)};
    CK_MECHANISM g = {CKM_DES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_GenerateKey(s, &g, &vl, 1, &h));
    unsigned char v[20];
    fill(v, 20, 83);
    CK_KEY_TYPE kt = CKK_DES3;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, v, 20}};
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, t, N(t), &h));
    OSSL_PROVIDER_unload(lp);
    OSSL_PROVIDER_unload(dp);
}
END_TEST

/* legacy_mechanisms = yes: DES3-CMAC (and _GENERAL) against OpenSSL, MD5
 * (RFC 1321) and HMAC-MD5 (RFC 2202), DES and DES3 _ENCRYPT_DATA. */
START_TEST(test_legacy_macs_md5_encrypt_data)
{
    if (kt_test_is_softhsm())
        return;
    restart("legacy_mechanisms = yes\n");
    OSSL_PROVIDER *lp = OSSL_PROVIDER_load(NULL, "legacy");
    OSSL_PROVIDER *dp = OSSL_PROVIDER_load(NULL, "default");
    unsigned char kv[24], in[40], want[64], out[64];
    size_t wl, kl, il;
    fill(kv, 24, 91);
    fill(in, sizeof(in), 92);
    CK_OBJECT_HANDLE k3 = key(CKK_DES3, kv, 24);
    ossl_mac("CMAC", OSSL_MAC_PARAM_CIPHER, "DES-EDE3-CBC", kv, 24, in, 40,
             want);
    CK_MECHANISM m = {CKM_DES3_CMAC, NULL, 0};
    CK_ULONG ol = sizeof(out);
    CK(P->C_SignInit(s, &m, k3));
    CK(P->C_Sign(s, in, 40, out, &ol));
    ck_assert_uint_eq(ol, 8);
    ck_assert_mem_eq(out, want, 8);
    CK_ULONG glen = 4;
    CK_MECHANISM g = {CKM_DES3_CMAC_GENERAL, &glen, sizeof(glen)};
    CK(P->C_VerifyInit(s, &g, k3));
    CK(P->C_Verify(s, in, 40, want, 4));
    /* a two-key DES3 key is K1 K2 K1 */
    memcpy(kv + 16, kv, 8);
    CK_OBJECT_HANDLE k2 = key(CKK_DES2, kv, 16);
    ossl_mac("CMAC", OSSL_MAC_PARAM_CIPHER, "DES-EDE3-CBC", kv, 24, in, 40,
             want);
    ol = sizeof(out);
    CK(P->C_SignInit(s, &m, k2));
    CK(P->C_Sign(s, in, 40, out, &ol));
    ck_assert_mem_eq(out, want, 8);
    /* MD5 and HMAC-MD5 */
    CK_MECHANISM md5 = {CKM_MD5, NULL, 0};
    hex("c3fcd3d76192e4007dfb496cca67e13b", want, &wl);
    ol = sizeof(out);
    CK(P->C_DigestInit(s, &md5));
    CK(P->C_Digest(s, (CK_BYTE_PTR) "abcdefghijklmnopqrstuvwxyz", 26, out,
                   &ol));
    ck_assert_uint_eq(ol, 16);
    ck_assert_mem_eq(out, want, 16);
    unsigned char hk[16], msg[8];
    hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", hk, &kl);
    hex("4869205468657265", msg, &il);
    hex("9294727a3638bb1c13f48ef8158bfc9d", want, &wl);
    CK_OBJECT_HANDLE hkh = key(CKK_GENERIC_SECRET, hk, kl);
    CK_MECHANISM hm = {CKM_MD5_HMAC, NULL, 0};
    ol = sizeof(out);
    CK(P->C_SignInit(s, &hm, hkh));
    CK(P->C_Sign(s, msg, il, out, &ol));
    ck_assert_uint_eq(ol, 16);
    ck_assert_mem_eq(out, want, 16);
    CK_ULONG ten = 10;
    CK_MECHANISM hg = {CKM_MD5_HMAC_GENERAL, &ten, sizeof(ten)};
    CK(P->C_VerifyInit(s, &hg, hkh));
    CK(P->C_Verify(s, msg, il, want, 10));
    /* DES3 ECB and DES CBC _ENCRYPT_DATA */
    fill(kv, 24, 93);
    k3 = key(CKK_DES3, kv, 24);
    CK_KEY_DERIVATION_STRING_DATA sd = {in, 24};
    CK_MECHANISM de = {CKM_DES3_ECB_ENCRYPT_DATA, &sd, sizeof(sd)};
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE h;
    CK(P->C_DeriveKey(s, &de, k3, t, N(t), &h));
    ossl_cipher("DES-EDE3-ECB", kv, NULL, in, 24, want, false);
    ck_assert_uint_eq(get_value(h, out, sizeof(out)), 24);
    ck_assert_mem_eq(out, want, 24);
    CK_OBJECT_HANDLE k1 = key(CKK_DES, kv, 8);
    CK_DES_CBC_ENCRYPT_DATA_PARAMS cp = {{1, 2, 3, 4, 5, 6, 7, 8}, in, 16};
    CK_MECHANISM dc = {CKM_DES_CBC_ENCRYPT_DATA, &cp, sizeof(cp)};
    CK(P->C_DeriveKey(s, &dc, k1, t, N(t), &h));
    ossl_cipher("DES-CBC", kv, cp.iv, in, 16, want, false);
    ck_assert_uint_eq(get_value(h, out, sizeof(out)), 16);
    ck_assert_mem_eq(out, want, 16);
    OSSL_PROVIDER_unload(lp);
    OSSL_PROVIDER_unload(dp);
}
END_TEST

static Suite *sym_suite(void)
{
    Suite *su = suite_create("sym");
    TCase *tc = tcase_create("sym");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_aes_ctr);
    tcase_add_test(tc, test_aes_ctr_counter_bits);
    tcase_add_test(tc, test_aes_cmac);
    tcase_add_test(tc, test_wrap_key_no_cmac_no_encrypt_data);
    tcase_add_test(tc, test_digests);
    tcase_add_test(tc, test_hmacs);
    tcase_add_test(tc, test_hkdf);
    tcase_add_test(tc, test_hkdf_errors);
    tcase_add_test(tc, test_derived_key_attributes);
    tcase_add_test(tc, test_aes_encrypt_data);
    tcase_add_test(tc, test_generic_secret_generation);
    tcase_add_test(tc, test_legacy_set_absent_by_default);
    tcase_add_test(tc, test_legacy_des);
    tcase_add_test(tc, test_legacy_macs_md5_encrypt_data);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(sym_suite)
