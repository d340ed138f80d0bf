/* AES, key wrap, GCM, digests, HMAC and random through the PKCS#11 API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("crypto");
    s = kt_test_user_session(slot);
}

static CK_OBJECT_HANDLE secret(const unsigned char *v, CK_ULONG len,
                               CK_KEY_TYPE kt, bool extractable)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE, ext = extractable, sens = !extractable;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)v, len},    {CKA_EXTRACTABLE, &ext, 1},
        {CKA_SENSITIVE, &sens, 1},      {CKA_ENCRYPT, &yes, 1},
        {CKA_DECRYPT, &yes, 1},         {CKA_SIGN, &yes, 1},
        {CKA_VERIFY, &yes, 1},          {CKA_WRAP, &yes, 1},
        {CKA_UNWRAP, &yes, 1},
    };
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]), &h));
    return h;
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

/* RFC 3394 §4.6: 256-bit KEK wrapping 256-bit key data. */
START_TEST(test_aes_key_wrap_rfc3394_vector)
{
    unsigned char kek[32], data[32], want[40], out[64];
    size_t kl, dl, wl;
    hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", kek,
        &kl);
    hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
        data, &dl);
    hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB98"
        "8B9B7A02DD21",
        want, &wl);
    CK_OBJECT_HANDLE k = secret(kek, kl, CKK_AES, false);
    CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
    CK_ULONG ol = 0;
    CK(P->C_EncryptInit(s, &m, k));
    RV(CKR_OK, P->C_Encrypt(s, data, dl, NULL, &ol));
    ck_assert_uint_eq(ol, 40);
    ol = 39;
    RV(CKR_BUFFER_TOO_SMALL, P->C_Encrypt(s, data, dl, out, &ol));
    ck_assert_uint_eq(ol, 40);
    ol = sizeof(out);
    CK(P->C_Encrypt(s, data, dl, out, &ol));
    ck_assert_uint_eq(ol, 40);
    ck_assert_mem_eq(out, want, 40);
    /* the operation ended */
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_Encrypt(s, data, dl, out, &ol));
    CK(P->C_DecryptInit(s, &m, k));
    unsigned char back[64];
    CK_ULONG bl = sizeof(back);
    CK(P->C_Decrypt(s, out, 40, back, &bl));
    ck_assert_uint_eq(bl, 32);
    ck_assert_mem_eq(back, data, 32);
    out[5] ^= 1;
    CK(P->C_DecryptInit(s, &m, k));
    bl = sizeof(back);
    RV(CKR_ENCRYPTED_DATA_INVALID, P->C_Decrypt(s, out, 40, back, &bl));
}
END_TEST

/* RFC 5649 §6: 192-bit KEK, 20 and 7 octets of key data. */
START_TEST(test_aes_key_wrap_pad_rfc5649_vectors)
{
    unsigned char kek[24], d1[20], w1[32], d2[7], w2[16], out[64];
    size_t kl, l1, lw1, l2, lw2;
    hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", kek, &kl);
    hex("c37b7e6492584340bed12207808941155068f738", d1, &l1);
    hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", w1,
        &lw1);
    hex("466f7250617369", d2, &l2);
    hex("afbeb0f07dfbf5419200f2ccb50bb24f", w2, &lw2);
    CK_OBJECT_HANDLE k = secret(kek, kl, CKK_AES, false);
    CK_MECHANISM_TYPE mechs[] = {CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP};
    for (int i = 0; i < 2; i++) {
        CK_MECHANISM m = {mechs[i], NULL, 0};
        CK_ULONG ol = sizeof(out);
        CK(P->C_EncryptInit(s, &m, k));
        CK(P->C_Encrypt(s, d1, l1, out, &ol));
        ck_assert_uint_eq(ol, lw1);
        ck_assert_mem_eq(out, w1, lw1);
        ol = sizeof(out);
        CK(P->C_EncryptInit(s, &m, k));
        CK(P->C_Encrypt(s, d2, l2, out, &ol));
        ck_assert_uint_eq(ol, lw2);
        ck_assert_mem_eq(out, w2, lw2);
        ol = sizeof(out);
        CK(P->C_DecryptInit(s, &m, k));
        CK(P->C_Decrypt(s, w1, lw1, out, &ol));
        ck_assert_uint_eq(ol, l1);
        ck_assert_mem_eq(out, d1, l1);
    }
}
END_TEST

static void wrap_unwrap_roundtrip(CK_MECHANISM_TYPE mt, void *param,
                                  CK_ULONG plen)
{
    CK_OBJECT_HANDLE root = kt_test_aes_key(s, 32, true, false, "root");
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    CK_MECHANISM m = {mt, param, plen};
    unsigned char wrapped[128], v1[32], v2[32];
    CK_ULONG wl = 0;
    CK(P->C_WrapKey(s, &m, root, dek, NULL, &wl));
    ck_assert_uint_gt(wl, 32);
    CK_ULONG need = wl;
    wl = 8;
    RV(CKR_BUFFER_TOO_SMALL, P->C_WrapKey(s, &m, root, dek, wrapped, &wl));
    ck_assert_uint_eq(wl, need);
    wl = sizeof(wrapped);
    CK(P->C_WrapKey(s, &m, root, dek, wrapped, &wl));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG vlen = 32;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},       {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_EXTRACTABLE, &yes, 1},           {CKA_SENSITIVE, &no, 1},
        {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
    };
    CK_OBJECT_HANDLE back;
    CK(P->C_UnwrapKey(s, &m, root, wrapped, wl, t, 5, &back));
    CK_ATTRIBUTE g1 = {CKA_VALUE, v1, 32}, g2 = {CKA_VALUE, v2, 32};
    CK(P->C_GetAttributeValue(s, dek, &g1, 1));
    CK(P->C_GetAttributeValue(s, back, &g2, 1));
    ck_assert_mem_eq(v1, v2, 32);
    CK_BBOOL local = CK_TRUE, asens = CK_TRUE;
    CK_ATTRIBUTE g3[] = {{CKA_LOCAL, &local, 1},
                         {CKA_ALWAYS_SENSITIVE, &asens, 1}};
    CK(P->C_GetAttributeValue(s, back, g3, 2));
    ck_assert_int_eq(local, CK_FALSE);
    ck_assert_int_eq(asens, CK_FALSE);
    /* a damaged blob gives no key */
    wrapped[wl - 1] ^= 0x40;
    RV(CKR_WRAPPED_KEY_INVALID,
       P->C_UnwrapKey(s, &m, root, wrapped, wl, t, 5, &back));
}

START_TEST(test_wrap_unwrap_all_mechanisms)
{
    unsigned char iv[16] = {1, 2, 3};
    unsigned char gcm_iv[12] = {9, 9, 9};
    CK_GCM_PARAMS gp = {gcm_iv, sizeof(gcm_iv), 96, NULL, 0, 128};
    wrap_unwrap_roundtrip(CKM_AES_KEY_WRAP, NULL, 0);
    wrap_unwrap_roundtrip(CKM_AES_KEY_WRAP_PAD, NULL, 0);
    if (!kt_test_is_softhsm())
        wrap_unwrap_roundtrip(CKM_AES_KEY_WRAP_KWP, NULL, 0);
    wrap_unwrap_roundtrip(CKM_AES_CBC_PAD, iv, sizeof(iv));
    if (!kt_test_is_softhsm())
        wrap_unwrap_roundtrip(CKM_AES_GCM, &gp, sizeof(gp));
}
END_TEST

Suite *crypto_suite(void);
Suite *crypto_suite(void)
{
    Suite *su = suite_create("crypto");
    TCase *tc = tcase_create("crypto");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_aes_key_wrap_rfc3394_vector);
    tcase_add_test(tc, test_aes_key_wrap_pad_rfc5649_vectors);
    tcase_add_test(tc, test_wrap_unwrap_all_mechanisms);
    suite_add_tcase(su, tc);
    return su;
}
KT_TEST_MAIN(crypto_suite)
