/* The mechanism table's promise: every mechanism C_GetMechanismList names
 * works through every function its C_GetMechanismInfo flags claim, at the
 * smallest and largest key sizes it announces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static CK_SESSION_HANDLE s;
static CK_SLOT_ID slot;

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("mechs");
    s = kt_test_user_session(slot);
}

/* Asymmetric families are exercised by test_asym.c and test_ossl_asym.c. */
static bool asymmetric(CK_MECHANISM_TYPE m)
{
    return m <= 0x4f || (m >= 0x60 && m <= 0x66) ||
           (m >= 0x1040 && m <= 0x1057) || (m >= 0x1200 && m <= 0x1230);
}

#ifndef CKM_HKDF_DERIVE
#define CKM_HKDF_DERIVE 0x402AUL
#define CKM_HKDF_DATA   0x402BUL
#define CKK_HKDF        0x42UL
#endif

/* HMACs (SHA-1 to SHA3-512, MD5, and their _GENERAL forms) and HKDF take
 * generic secret keys. */
static bool is_hmac(CK_MECHANISM_TYPE m)
{
    return (m >= 0x211 && m <= 0x272 && (m & 0xf) != 0) ||
           (m >= 0x2B1 && m <= 0x2D2 && (m & 0xf) != 0 && (m & 0xf) != 5 &&
            (m & 0xf) != 3 && (m & 0xf) != 8) ||
           m == CKM_HKDF_DERIVE || m == CKM_HKDF_DATA;
}

static bool is_general(CK_MECHANISM_TYPE m)
{
    return m == CKM_AES_CMAC_GENERAL || m == CKM_DES3_CMAC_GENERAL ||
           m == CKM_MD5_HMAC_GENERAL || m == CKM_SHA_1_HMAC_GENERAL ||
           m == CKM_SHA224_HMAC_GENERAL || m == CKM_SHA256_HMAC_GENERAL ||
           m == CKM_SHA384_HMAC_GENERAL || m == CKM_SHA512_HMAC_GENERAL ||
           (m >= 0x2B1 && m <= 0x2D2 && (m & 0xf) == 2) || m == 0x2B7;
}

/* The key type for mechanism m and a key of len bytes. */
static CK_KEY_TYPE key_type_for(CK_MECHANISM_TYPE m, CK_ULONG len)
{
    if (is_hmac(m))
        return CKK_GENERIC_SECRET;
    if ((m >= CKM_DES_ECB && m <= CKM_DES3_CMAC) ||
        (m >= CKM_DES_ECB_ENCRYPT_DATA && m <= CKM_DES3_CBC_ENCRYPT_DATA))
        return len == 8 ? CKK_DES : len == 16 ? CKK_DES2 : CKK_DES3;
    return CKK_AES;
}

/* A key for mechanism m; wrap: a wrapping key (a key has one role), else
 * the usage attributes default to encrypt/decrypt (and sign/verify). */
static CK_OBJECT_HANDLE make_key(CK_MECHANISM_TYPE m, CK_ULONG len, bool wrap)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = key_type_for(m, len);
    CK_BBOOL yes = CK_TRUE;
    unsigned char v[512];
    memset(v, 0x42, sizeof(v));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, v, len},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_SENSITIVE, &(CK_BBOOL){CK_FALSE}, 1},
                        {CKA_WRAP, &yes, 1}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, wrap ? 6 : 5, &h));
    return h;
}

static CK_GCM_PARAMS gcm;
static unsigned char iv[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static CK_AES_CTR_PARAMS ctr = {128, {1, 2, 3}};
static CK_ULONG general_len = 8;

static CK_MECHANISM params_for(CK_MECHANISM_TYPE m)
{
    CK_MECHANISM mech = {m, NULL, 0};
    if (m == CKM_AES_CBC || m == CKM_AES_CBC_PAD) {
        mech.pParameter = iv;
        mech.ulParameterLen = 16;
    } else if (m == CKM_DES_CBC || m == CKM_DES_CBC_PAD || m == CKM_DES3_CBC ||
               m == CKM_DES3_CBC_PAD) {
        mech.pParameter = iv;
        mech.ulParameterLen = 8;
    } else if (m == CKM_AES_CTR) {
        mech.pParameter = &ctr;
        mech.ulParameterLen = sizeof(ctr);
    } else if (is_general(m)) {
        mech.pParameter = &general_len;
        mech.ulParameterLen = sizeof(general_len);
    } else if (m == CKM_AES_GCM) {
        gcm = (CK_GCM_PARAMS){iv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
        mech.pParameter = &gcm;
        mech.ulParameterLen = sizeof(gcm);
    }
    return mech;
}

static void check_crypt(CK_MECHANISM_TYPE m, CK_OBJECT_HANDLE k)
{
    CK_MECHANISM mech = params_for(m);
    unsigned char in[32], out[128], back[128];
    for (int i = 0; i < 32; i++)
        in[i] = (unsigned char)i;
    CK_ULONG ol = sizeof(out), bl = sizeof(back);
    CK(P->C_EncryptInit(s, &mech, k));
    CK(P->C_Encrypt(s, in, 32, out, &ol));
    CK(P->C_DecryptInit(s, &mech, k));
    CK(P->C_Decrypt(s, out, ol, back, &bl));
    ck_assert_uint_eq(bl, 32);
    ck_assert_mem_eq(back, in, 32);
}

/* Wraps a key as strong as the wrapping key (len bytes) and, if the
 * mechanism claims CKF_UNWRAP, unwraps it. */
static void check_wrap(CK_MECHANISM_TYPE m, CK_OBJECT_HANDLE k, CK_ULONG len,
                       CK_FLAGS flags)
{
    CK_MECHANISM mech = params_for(m);
    /* GCM wraps take no IV from the caller: a zeroed buffer the module
     * fills with the IV it chose. */
    unsigned char giv[12] = {0};
    CK_GCM_PARAMS gw = {giv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
    if (m == CKM_AES_GCM)
        mech.pParameter = &gw;
    CK_OBJECT_HANDLE dek = make_key(CKM_AES_KEY_GEN, len, false), back;
    unsigned char w[128], v1[32], v2[32];
    CK_ULONG wl = sizeof(w);
    ck_assert(flags & CKF_WRAP);
    CK(P->C_WrapKey(s, &mech, k, dek, w, &wl));
    if (!(flags & CKF_UNWRAP))
        return;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_SENSITIVE, &no, 1}};
    CK(P->C_UnwrapKey(s, &mech, k, w, wl, t, 4, &back));
    CK_ATTRIBUTE g1 = {CKA_VALUE, v1, len}, g2 = {CKA_VALUE, v2, len};
    CK(P->C_GetAttributeValue(s, dek, &g1, 1));
    CK(P->C_GetAttributeValue(s, back, &g2, 1));
    ck_assert_mem_eq(v1, v2, len);
}

static void check_sign(CK_MECHANISM_TYPE m, CK_OBJECT_HANDLE k, bool verify)
{
    CK_MECHANISM mech = params_for(m);
    unsigned char sig[128];
    CK_ULONG sl = sizeof(sig);
    CK(P->C_SignInit(s, &mech, k));
    CK(P->C_Sign(s, (CK_BYTE_PTR) "data", 4, sig, &sl));
    if (verify) {
        CK(P->C_VerifyInit(s, &mech, k));
        CK(P->C_Verify(s, (CK_BYTE_PTR) "data", 4, sig, sl));
    }
}

static CK_OBJECT_HANDLE make_derive_key(CK_MECHANISM_TYPE m, CK_ULONG len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = key_type_for(m, len);
    CK_BBOOL yes = CK_TRUE;
    unsigned char v[512];
    memset(v, 0x42, sizeof(v));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, v, len},
                        {CKA_DERIVE, &yes, 1}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, 4, &h));
    return h;
}

/* A derivation with mechanism m from base key k: a 16-byte generic
 * secret (or data object, CKM_HKDF_DATA). */
static void check_derive(CK_MECHANISM_TYPE m, CK_OBJECT_HANDLE k)
{
    unsigned char data[32] = {7};
    CK_KEY_DERIVATION_STRING_DATA sd = {data, 32};
    CK_AES_CBC_ENCRYPT_DATA_PARAMS acbc = {{0}, data, 32};
    CK_DES_CBC_ENCRYPT_DATA_PARAMS dcbc = {{0}, data, 32};
    struct {
        CK_BBOOL bExtract, bExpand;
        CK_MECHANISM_TYPE prf;
        CK_ULONG salt_type;
        CK_BYTE_PTR salt;
        CK_ULONG salt_len;
        CK_OBJECT_HANDLE salt_key;
        CK_BYTE_PTR info;
        CK_ULONG info_len;
    } hk = {CK_TRUE, CK_TRUE, CKM_SHA256, 1, NULL, 0, 0, data, 4};
    CK_MECHANISM mech = {m, &sd, sizeof(sd)};
    if (m == CKM_AES_CBC_ENCRYPT_DATA)
        mech = (CK_MECHANISM){m, &acbc, sizeof(acbc)};
    else if (m == CKM_DES_CBC_ENCRYPT_DATA || m == CKM_DES3_CBC_ENCRYPT_DATA)
        mech = (CK_MECHANISM){m, &dcbc, sizeof(dcbc)};
    else if (m == CKM_HKDF_DERIVE || m == CKM_HKDF_DATA)
        mech = (CK_MECHANISM){m, &hk, sizeof(hk)};
    CK_OBJECT_CLASS cls = m == CKM_HKDF_DATA ? CKO_DATA : CKO_SECRET_KEY;
    CK_ULONG len = 16;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_VALUE_LEN, &len, sizeof(len)}};
    CK_OBJECT_HANDLE h;
    CK(P->C_DeriveKey(s, &mech, k, t, 2, &h));
}

static void every_mechanism_every_flag(void)
{
    CK_ULONG n = 0;
    CK(P->C_GetMechanismList(slot, NULL, &n));
    CK_MECHANISM_TYPE *list = calloc(n, sizeof(*list));
    CK(P->C_GetMechanismList(slot, list, &n));
    size_t checked = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_MECHANISM_TYPE m = list[i];
        CK_MECHANISM_INFO info;
        CK(P->C_GetMechanismInfo(slot, m, &info));
        if (asymmetric(m))
            continue;
        /* 0x2 | 0x4: PKCS#11 3.0 CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT,
         * checked in test_v3.c. */
        const CK_FLAGS known = CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP |
                               CKF_UNWRAP | CKF_SIGN | CKF_VERIFY | CKF_DIGEST |
                               CKF_GENERATE | CKF_DERIVE | 0x2UL | 0x4UL;
        ck_assert_msg((info.flags & ~known) == 0,
                      "mechanism 0x%lx claims flags this test cannot check", m);
        if (info.flags & CKF_DIGEST) {
            CK_MECHANISM mech = {m, NULL, 0};
            unsigned char d[64];
            CK_ULONG dl = sizeof(d);
            CK(P->C_DigestInit(s, &mech));
            CK(P->C_Digest(s, (CK_BYTE_PTR) "abc", 3, d, &dl));
            checked++;
            continue;
        }
        if (info.flags & CKF_GENERATE) {
            CK_ULONG lens[2] = {info.ulMinKeySize, info.ulMaxKeySize};
            for (int j = 0; j < 2; j++) {
                /* key gen sizes: bits for generic secrets, else bytes */
                CK_ULONG len =
                    m == CKM_GENERIC_SECRET_KEY_GEN ? lens[j] / 8 : lens[j];
                CK_MECHANISM mech = {m, NULL, 0};
                CK_ATTRIBUTE t = {CKA_VALUE_LEN, &len, sizeof(len)};
                CK_OBJECT_HANDLE h;
                CK(P->C_GenerateKey(s, &mech, &t, 1, &h));
            }
            checked++;
            continue;
        }
        CK_ULONG sizes[2] = {info.ulMinKeySize, info.ulMaxKeySize};
        for (int j = 0; j < 2; j++) {
            CK_OBJECT_HANDLE k = make_key(m, sizes[j], false);
            if (info.flags & (CKF_ENCRYPT | CKF_DECRYPT)) {
                ck_assert((info.flags & (CKF_ENCRYPT | CKF_DECRYPT)) ==
                          (CKF_ENCRYPT | CKF_DECRYPT));
                check_crypt(m, k);
            }
            if (info.flags & (CKF_WRAP | CKF_UNWRAP))
                check_wrap(m, make_key(m, sizes[j], true), sizes[j],
                           info.flags);
            if (info.flags & CKF_SIGN)
                check_sign(m, k, (info.flags & CKF_VERIFY) != 0);
            if (info.flags & CKF_DERIVE)
                check_derive(m, make_derive_key(m, sizes[j]));
        }
        checked++;
    }
    free(list);
    ck_assert_uint_ge(checked, 15);
}

START_TEST(test_every_mechanism_every_flag)
{
    every_mechanism_every_flag();
}
END_TEST

static void restart(const char *config)
{
    CK(P->C_Finalize(NULL));
    kt_test_write_config(config);
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("mechs");
    s = kt_test_user_session(slot);
}

/* legacy_mechanisms = yes: the unwrap oracles are back, and every flag
 * they claim works. */
START_TEST(test_every_mechanism_every_flag_legacy)
{
    /* keytier's policy (SECURITY.md); SoftHSM2 has its own */
    if (kt_test_is_softhsm())
        return;
    restart("legacy_mechanisms = yes\n");
    every_mechanism_every_flag();
}
END_TEST

/* C_GetMechanismInfo claims CKF_UNWRAP for no unauthenticated unwrap
 * mechanism unless legacy_mechanisms = yes; their other flags stay. */
START_TEST(test_unwrap_flags_follow_legacy_mechanisms)
{
    /* keytier's policy (SECURITY.md); SoftHSM2 has its own */
    if (kt_test_is_softhsm())
        return;
    static const struct {
        CK_MECHANISM_TYPE m;
        CK_FLAGS others;
        bool oracle;
    } rows[] = {
        {CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP, true},
        {CKM_RSA_PKCS,
         CKF_ENCRYPT | CKF_DECRYPT | CKF_SIGN | CKF_VERIFY | CKF_WRAP, true},
        {CKM_AES_ECB, CKF_ENCRYPT | CKF_DECRYPT, true},
        {CKM_RSA_PKCS_OAEP, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP, false},
        {CKM_AES_KEY_WRAP, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP, false},
        {CKM_AES_KEY_WRAP_PAD, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP, false},
        {CKM_AES_KEY_WRAP_KWP, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP, false},
        {CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP, false},
    };
    const char *configs[] = {"", "legacy_mechanisms = no\n",
                             "legacy_mechanisms = yes\n"};
    for (int c = 0; c < 3; c++) {
        if (c > 0)
            restart(configs[c]);
        bool legacy = c == 2;
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            CK_MECHANISM_INFO info;
            CK(P->C_GetMechanismInfo(slot, rows[i].m, &info));
            ck_assert_msg((info.flags & rows[i].others) == rows[i].others,
                          "0x%lx lost a flag", rows[i].m);
            /* ECB never unwrapped */
            bool unwrap =
                rows[i].m == CKM_AES_ECB ? false : !rows[i].oracle || legacy;
            ck_assert_msg(((info.flags & CKF_UNWRAP) != 0) == unwrap,
                          "0x%lx CKF_UNWRAP with %s", rows[i].m, configs[c]);
        }
    }
}
END_TEST

/* Unwrapping with CBC-PAD or RSA PKCS#1 v1.5 is refused by default, before
 * the blob is looked at. */
START_TEST(test_unwrap_oracles_refused)
{
    /* keytier's policy (SECURITY.md); SoftHSM2 has its own */
    if (kt_test_is_softhsm())
        return;
    CK_OBJECT_HANDLE k = make_key(CKM_AES_CBC_PAD, 32, true);
    CK_MECHANISM mech = params_for(CKM_AES_CBC_PAD);
    unsigned char blob[48] = {0};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    CK_OBJECT_HANDLE out;
    RV(CKR_MECHANISM_INVALID,
       P->C_UnwrapKey(s, &mech, k, blob, sizeof(blob), t, 2, &out));
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    RV(CKR_MECHANISM_INVALID, P->C_UnwrapKey(s, &ecb, k, blob, 32, t, 2, &out));
    /* wrapping with it stays (the blob is made by the token) */
    CK_OBJECT_HANDLE dek = make_key(CKM_AES_KEY_GEN, 32, false);
    unsigned char w[64];
    CK_ULONG wl = sizeof(w);
    CK(P->C_WrapKey(s, &mech, k, dek, w, &wl));
    RV(CKR_MECHANISM_INVALID, P->C_UnwrapKey(s, &mech, k, w, wl, t, 2, &out));
}
END_TEST

static Suite *mechs_suite(void)
{
    Suite *su = suite_create("mechs");
    TCase *tc = tcase_create("mechs");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_mechanism_every_flag);
    tcase_add_test(tc, test_every_mechanism_every_flag_legacy);
    tcase_add_test(tc, test_unwrap_flags_follow_legacy_mechanisms);
    tcase_add_test(tc, test_unwrap_oracles_refused);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(mechs_suite)
