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
        {CKA_VERIFY, &yes, 1},
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

/* gcm_iv: the IV buffer of a GCM wrap (zeros until the module fills it
 * with the blob's IV), or NULL. unwrap_rv: what C_UnwrapKey answers
 * (mechanisms that are unwrap oracles are refused by default). */
static void wrap_unwrap_roundtrip(CK_MECHANISM_TYPE mt, void *param,
                                  CK_ULONG plen, const unsigned char *gcm_iv,
                                  CK_RV unwrap_rv)
{
    static const unsigned char zero[12];
    CK_OBJECT_HANDLE root = kt_test_wrap_key(s, 32, true, false, "root");
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
    /* neither a length query nor a short buffer hands out an IV */
    if (gcm_iv != NULL)
        ck_assert_mem_eq(gcm_iv, zero, 12);
    wl = sizeof(wrapped);
    CK(P->C_WrapKey(s, &m, root, dek, wrapped, &wl));
    if (gcm_iv != NULL)
        ck_assert(memcmp(gcm_iv, zero, 12) != 0);
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
    if (unwrap_rv != CKR_OK) {
        RV(unwrap_rv, P->C_UnwrapKey(s, &m, root, wrapped, wl, t, 5, &back));
        return;
    }
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
    unsigned char gcm_iv[12] = {0};
    CK_GCM_PARAMS gp = {gcm_iv, sizeof(gcm_iv), 96, NULL, 0, 128};
    wrap_unwrap_roundtrip(CKM_AES_KEY_WRAP, NULL, 0, NULL, CKR_OK);
    wrap_unwrap_roundtrip(CKM_AES_KEY_WRAP_PAD, NULL, 0, NULL, CKR_OK);
    if (!kt_test_is_softhsm())
        wrap_unwrap_roundtrip(CKM_AES_KEY_WRAP_KWP, NULL, 0, NULL, CKR_OK);
    /* CBC-PAD still wraps; unwrapping with it is a padding oracle */
    wrap_unwrap_roundtrip(CKM_AES_CBC_PAD, iv, sizeof(iv), NULL,
                          kt_test_is_softhsm() ? CKR_OK
                                               : CKR_MECHANISM_INVALID);
    if (!kt_test_is_softhsm())
        wrap_unwrap_roundtrip(CKM_AES_GCM, &gp, sizeof(gp), gcm_iv, CKR_OK);
}
END_TEST

/* legacy_mechanisms = yes: CBC-PAD unwraps again. */
START_TEST(test_wrap_unwrap_legacy_cbc_pad)
{
    if (kt_test_is_softhsm())
        return;
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("crypto"));
    unsigned char iv[16] = {1, 2, 3};
    wrap_unwrap_roundtrip(CKM_AES_CBC_PAD, iv, sizeof(iv), NULL, CKR_OK);
}
END_TEST

/* C_WrapKey with AES-GCM: the module chooses the IV and returns it in the
 * caller's zeroed 12-byte buffer; C_UnwrapKey takes that IV. */
START_TEST(test_gcm_wrap_iv_rules)
{
    if (kt_test_is_softhsm())
        return;
    CK_OBJECT_HANDLE kek = kt_test_wrap_key(s, 32, false, false, "kek");
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    unsigned char iv[16] = {0}, w[64], w2[64];
    CK_ULONG wl = sizeof(w), wl2 = sizeof(w2);
    CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
    CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
    /* refused: a chosen IV, other lengths and IV bits, short tags, none */
    iv[11] = 1;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_WrapKey(s, &m, kek, dek, w, &wl));
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_WrapKey(s, &m, kek, dek, NULL, &wl));
    iv[11] = 0;
    CK_GCM_PARAMS bad[] = {
        {iv, 16, 128, NULL, 0, 128}, {iv, 1, 8, NULL, 0, 128},
        {iv, 12, 64, NULL, 0, 128},  {iv, 12, 96, NULL, 0, 96},
        {iv, 12, 96, NULL, 0, 120},  {NULL, 12, 96, NULL, 0, 128},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CK_MECHANISM mb = {CKM_AES_GCM, &bad[i], sizeof(bad[i])};
        wl = sizeof(w);
        ck_assert_msg(P->C_WrapKey(s, &mb, kek, dek, w, &wl) ==
                          CKR_MECHANISM_PARAM_INVALID,
                      "bad[%zu]", i);
    }
    CK_MECHANISM none = {CKM_AES_GCM, NULL, 0};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_WrapKey(s, &none, kek, dek, w, &wl));
    /* two wraps: two IVs, returned with the blob; ulIvBits 0 is accepted */
    gp.ulIvBits = 0;
    wl = sizeof(w);
    CK(P->C_WrapKey(s, &m, kek, dek, w, &wl));
    ck_assert_uint_eq(wl, 48);
    unsigned char iv1[12];
    memcpy(iv1, iv, 12);
    memset(iv, 0, sizeof(iv));
    CK(P->C_WrapKey(s, &m, kek, dek, w2, &wl2));
    ck_assert(memcmp(iv1, iv, 12) != 0);
    ck_assert(memcmp(w, w2, 32) != 0);
    /* the v2.40 layout without ulIvBits, with AAD */
    struct {
        CK_BYTE_PTR pIv;
        CK_ULONG ulIvLen;
        CK_BYTE_PTR pAAD;
        CK_ULONG ulAADLen;
        CK_ULONG ulTagBits;
    } old = {iv, 12, (CK_BYTE_PTR) "aad", 3, 128};
    CK_MECHANISM mo = {CKM_AES_GCM, &old, sizeof(old)};
    memset(iv, 0, sizeof(iv));
    unsigned char w3[64];
    CK_ULONG wl3 = sizeof(w3);
    CK(P->C_WrapKey(s, &mo, kek, dek, w3, &wl3));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    CK_OBJECT_HANDLE back;
    CK(P->C_UnwrapKey(s, &mo, kek, w3, wl3, t, 2, &back));
    /* unwrap: the returned IV, 12 bytes, tag 128 bits */
    memcpy(iv, iv1, 12);
    CK(P->C_UnwrapKey(s, &m, kek, w, wl, t, 2, &back));
    gp.ulTagBits = 96;
    RV(CKR_MECHANISM_PARAM_INVALID,
       P->C_UnwrapKey(s, &m, kek, w, wl - 4, t, 2, &back));
    gp.ulTagBits = 128;
    gp.ulIvLen = 16;
    RV(CKR_MECHANISM_PARAM_INVALID,
       P->C_UnwrapKey(s, &m, kek, w, wl, t, 2, &back));
    /* C_Encrypt with GCM still takes the caller's IV (another key role) */
    CK_GCM_PARAMS ep = {iv1, 12, 96, NULL, 0, 128};
    CK_MECHANISM em = {CKM_AES_GCM, &ep, sizeof(ep)};
    CK(P->C_EncryptInit(s, &em, dek));
}
END_TEST

/* An AES wrapping key is at least as strong as the key it wraps: AES keys
 * by size, other secret keys by size up to 256 bits. */
START_TEST(test_wrapping_key_strength)
{
    if (kt_test_is_softhsm())
        return;
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char w[128];
    CK_ULONG wl;
    CK_OBJECT_HANDLE k128 = kt_test_wrap_key(s, 16, false, false, "k128");
    CK_OBJECT_HANDLE k192 = kt_test_wrap_key(s, 24, false, false, "k192");
    CK_OBJECT_HANDLE k256 = kt_test_wrap_key(s, 32, false, false, "k256");
    CK_OBJECT_HANDLE a128 = kt_test_aes_key(s, 16, false, true, "a128");
    CK_OBJECT_HANDLE a256 = kt_test_aes_key(s, 32, false, true, "a256");
    unsigned char g[64];
    memset(g, 0x61, sizeof(g));
    CK_OBJECT_HANDLE g16 = secret(g, 16, CKK_GENERIC_SECRET, true);
    CK_OBJECT_HANDLE g17 = secret(g, 17, CKK_GENERIC_SECRET, true);
    CK_OBJECT_HANDLE g64 = secret(g, 64, CKK_GENERIC_SECRET, true);
    struct {
        CK_OBJECT_HANDLE kek, key;
        CK_RV want;
    } rows[] = {
        {k128, a128, CKR_OK},
        {k128, a256, CKR_WRAPPING_KEY_SIZE_RANGE},
        {k192, a256, CKR_WRAPPING_KEY_SIZE_RANGE},
        {k256, a256, CKR_OK},
        {k128, g16, CKR_OK},
        {k128, g17, CKR_WRAPPING_KEY_SIZE_RANGE},
        {k256, g64, CKR_OK},
        {k192, g64, CKR_WRAPPING_KEY_SIZE_RANGE},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        wl = sizeof(w);
        ck_assert_msg(P->C_WrapKey(s, &m, rows[i].kek, rows[i].key, w, &wl) ==
                          rows[i].want,
                      "row %zu", i);
        wl = 0;
        ck_assert_msg(P->C_WrapKey(s, &m, rows[i].kek, rows[i].key, NULL,
                                   &wl) == rows[i].want,
                      "row %zu (length)", i);
    }
    /* Unwrap: a 256-bit value encrypted outside the wrap path under the
     * 128-bit value of an unwrapping key. */
    unsigned char kv[16];
    memset(kv, 0x42, sizeof(kv));
    CK_OBJECT_HANDLE enc = secret(kv, 16, CKK_AES, false);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE ut[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &aes, sizeof(aes)},
                         {CKA_VALUE, kv, 16},
                         {CKA_UNWRAP, &yes, 1}};
    CK_OBJECT_HANDLE u128;
    CK(P->C_CreateObject(s, ut, 4, &u128));
    unsigned char value[32];
    memset(value, 0x24, sizeof(value));
    wl = sizeof(w);
    CK(P->C_EncryptInit(s, &m, enc));
    CK(P->C_Encrypt(s, value, 32, w, &wl));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &aes, sizeof(aes)}};
    CK_OBJECT_HANDLE back = CK_INVALID_HANDLE;
    CK_ULONG before = 0, after = 0;
    CK_OBJECT_HANDLE all[64];
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, all, 64, &before));
    CK(P->C_FindObjectsFinal(s));
    RV(CKR_UNWRAPPING_KEY_SIZE_RANGE,
       P->C_UnwrapKey(s, &m, u128, w, wl, t, 2, &back));
    ck_assert_uint_eq(back, CK_INVALID_HANDLE);
    t[1].pValue = &gen;
    RV(CKR_UNWRAPPING_KEY_SIZE_RANGE,
       P->C_UnwrapKey(s, &m, u128, w, wl, t, 2, &back));
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, all, 64, &after));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(before, after);
    /* a 128-bit value comes in */
    wl = sizeof(w);
    CK(P->C_EncryptInit(s, &m, enc));
    CK(P->C_Encrypt(s, value, 16, w, &wl));
    t[1].pValue = &aes;
    CK(P->C_UnwrapKey(s, &m, u128, w, wl, t, 2, &back));
}
END_TEST

/* NIST GCM test vector (gcmEncryptExtIV256, Count 0 of the 96-bit IV,
 * 128-bit plaintext, 128-bit AAD set): key, IV, PT, AAD -> CT, tag. */
START_TEST(test_gcm_vector_and_params)
{
    unsigned char key[32], iv[12], pt[16], aad[16], ct[16], tag[16];
    size_t l;
    hex("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b", key,
        &l);
    hex("ac93a1a6145299bde902f21a", iv, &l);
    hex("2d71bcfa914e4ac045b2aa60955fad24", pt, &l);
    hex("1e0889016f67601c8ebea4943bc23ad6", aad, &l);
    hex("8995ae2e6df3dbf96fac7b7137bae67f", ct, &l);
    hex("eca5aa77d51d4a0a14d9c51e1da474ab", tag, &l);
    CK_OBJECT_HANDLE k = secret(key, 32, CKK_AES, false);
    CK_GCM_PARAMS gp = {iv, 12, 96, aad, 16, 128};
    CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
    unsigned char out[64], back[64];
    CK_ULONG ol = sizeof(out), bl = sizeof(back);
    CK(P->C_EncryptInit(s, &m, k));
    CK(P->C_Encrypt(s, pt, 16, out, &ol));
    ck_assert_uint_eq(ol, 32);
    ck_assert_mem_eq(out, ct, 16);
    ck_assert_mem_eq(out + 16, tag, 16);
    /* multi-part encrypt gives the same bytes */
    unsigned char mp[64];
    CK_ULONG a = sizeof(mp), b;
    CK(P->C_EncryptInit(s, &m, k));
    CK(P->C_EncryptUpdate(s, pt, 5, mp, &a));
    b = sizeof(mp) - a;
    CK_ULONG a2 = b;
    CK(P->C_EncryptUpdate(s, pt + 5, 11, mp + a, &a2));
    b = sizeof(mp) - a - a2;
    CK(P->C_EncryptFinal(s, mp + a + a2, &b));
    ck_assert_uint_eq(a + a2 + b, 32);
    ck_assert_mem_eq(mp, out, 32);
    CK(P->C_DecryptInit(s, &m, k));
    CK(P->C_Decrypt(s, out, 32, back, &bl));
    ck_assert_uint_eq(bl, 16);
    ck_assert_mem_eq(back, pt, 16);
    /* multi-part decrypt releases nothing before the tag is checked */
    CK(P->C_DecryptInit(s, &m, k));
    bl = sizeof(back);
    CK(P->C_DecryptUpdate(s, out, 20, back, &bl));
    ck_assert_uint_eq(bl, 0);
    bl = sizeof(back);
    CK(P->C_DecryptUpdate(s, out + 20, 12, back, &bl));
    bl = sizeof(back);
    CK(P->C_DecryptFinal(s, back, &bl));
    ck_assert_uint_eq(bl, 16);
    ck_assert_mem_eq(back, pt, 16);
    /* wrong AAD, flipped tag: no plaintext */
    aad[0] ^= 1;
    CK(P->C_DecryptInit(s, &m, k));
    bl = sizeof(back);
    memset(back, 0, sizeof(back));
    RV(CKR_ENCRYPTED_DATA_INVALID, P->C_Decrypt(s, out, 32, back, &bl));
    unsigned char zero[16] = {0};
    ck_assert_mem_eq(back, zero, 16);
    aad[0] ^= 1;
    out[31] ^= 1;
    CK(P->C_DecryptInit(s, &m, k));
    bl = sizeof(back);
    RV(CKR_ENCRYPTED_DATA_INVALID, P->C_Decrypt(s, out, 32, back, &bl));
    /* other IV lengths and tag sizes */
    unsigned char iv1[1] = {5}, iv60[60] = {6};
    CK_ULONG tags[] = {96, 104, 112, 120, 128};
    for (int i = 0; i < 5; i++) {
        CK_GCM_PARAMS g2 = {
            i % 2 ? iv1 : iv60, i % 2 ? 1 : 60, 0, NULL, 0, tags[i]};
        CK_MECHANISM m2 = {CKM_AES_GCM, &g2, sizeof(g2)};
        ol = sizeof(out);
        CK(P->C_EncryptInit(s, &m2, k));
        CK(P->C_Encrypt(s, pt, 16, out, &ol));
        ck_assert_uint_eq(ol, 16 + tags[i] / 8);
        bl = sizeof(back);
        CK(P->C_DecryptInit(s, &m2, k));
        CK(P->C_Decrypt(s, out, ol, back, &bl));
        ck_assert_uint_eq(bl, 16);
        ck_assert_mem_eq(back, pt, 16);
    }
    CK_GCM_PARAMS bad1 = {iv, 12, 96, NULL, 0, 64};
    CK_GCM_PARAMS bad2 = {NULL, 0, 0, NULL, 0, 128};
    CK_GCM_PARAMS bad3 = {iv, 12, 96, NULL, 5, 128};
    CK_MECHANISM mb = {CKM_AES_GCM, &bad1, sizeof(bad1)};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mb, k));
    mb.pParameter = &bad2;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mb, k));
    mb.pParameter = &bad3;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mb, k));
    mb.pParameter = NULL;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mb, k));
    mb.pParameter = &gp;
    mb.ulParameterLen = 3;
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &mb, k));
    /* the v2.40 layout without ulIvBits is also understood */
    struct {
        CK_BYTE_PTR pIv;
        CK_ULONG ulIvLen;
        CK_BYTE_PTR pAAD;
        CK_ULONG ulAADLen;
        CK_ULONG ulTagBits;
    } old = {iv, 12, aad, 16, 128};
    CK_MECHANISM mo = {CKM_AES_GCM, &old, sizeof(old)};
    ol = sizeof(out);
    CK(P->C_EncryptInit(s, &mo, k));
    CK(P->C_Encrypt(s, pt, 16, out, &ol));
    ck_assert_mem_eq(out, ct, 16);
}
END_TEST

/* FIPS-197 C.3 (AES-256 ECB) and SP 800-38A F.2.5 (CBC-AES256). */
START_TEST(test_ecb_cbc_vectors_and_multipart)
{
    unsigned char key[32], pt[16], ct[16], out[128], back[128];
    size_t l;
    CK_ULONG ol, bl;
    hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", key,
        &l);
    hex("00112233445566778899aabbccddeeff", pt, &l);
    hex("8ea2b7ca516745bfeafc49904b496089", ct, &l);
    CK_OBJECT_HANDLE k = secret(key, 32, CKK_AES, false);
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    ol = sizeof(out);
    CK(P->C_EncryptInit(s, &ecb, k));
    CK(P->C_Encrypt(s, pt, 16, out, &ol));
    ck_assert_uint_eq(ol, 16);
    ck_assert_mem_eq(out, ct, 16);
    CK(P->C_EncryptInit(s, &ecb, k));
    ol = sizeof(out);
    RV(CKR_DATA_LEN_RANGE, P->C_Encrypt(s, pt, 15, out, &ol));
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_Encrypt(s, pt, 16, out, &ol));
    unsigned char k2[32], iv[16], p4[64], c4[64];
    hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", k2,
        &l);
    hex("000102030405060708090a0b0c0d0e0f", iv, &l);
    hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c8"
        "1c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        p4, &l);
    hex("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f2"
        "3369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        c4, &l);
    CK_OBJECT_HANDLE kc = secret(k2, 32, CKK_AES, false);
    CK_MECHANISM cbc = {CKM_AES_CBC, iv, 16};
    /* multi-part in odd pieces */
    CK(P->C_EncryptInit(s, &cbc, kc));
    size_t pieces[] = {7, 20, 1, 36}, off = 0;
    CK_ULONG total = 0;
    for (int i = 0; i < 4; i++) {
        CK_ULONG want = 0;
        CK(P->C_EncryptUpdate(s, p4 + off, pieces[i], NULL, &want));
        ol = sizeof(out) - total;
        CK(P->C_EncryptUpdate(s, p4 + off, pieces[i], out + total, &ol));
        ck_assert_uint_le(ol, want);
        total += ol;
        off += pieces[i];
    }
    ol = sizeof(out) - total;
    CK(P->C_EncryptFinal(s, out + total, &ol));
    total += ol;
    ck_assert_uint_eq(total, 64);
    ck_assert_mem_eq(out, c4, 64);
    /* A single-part call in a multi-part operation fails, and a failed
     * C_Encrypt ends the operation (v2.40 §5.8: it "always terminates"
     * it but for CKR_BUFFER_TOO_SMALL and a length query). */
    CK(P->C_EncryptInit(s, &cbc, kc));
    ol = sizeof(out);
    CK(P->C_EncryptUpdate(s, p4, 16, out, &ol));
    ol = sizeof(out);
    RV(CKR_OPERATION_ACTIVE, P->C_Encrypt(s, p4, 16, out, &ol));
    ol = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_EncryptFinal(s, out, &ol));
    CK(P->C_DecryptInit(s, &cbc, kc));
    bl = sizeof(back);
    CK(P->C_Decrypt(s, c4, 64, back, &bl));
    ck_assert_mem_eq(back, p4, 64);
    /* CBC-PAD single and multi-part, length queries, too-small buffers */
    CK_MECHANISM pad = {CKM_AES_CBC_PAD, iv, 16};
    for (CK_ULONG len = 0; len <= 33; len += 11) {
        CK(P->C_EncryptInit(s, &pad, kc));
        ol = 0;
        CK(P->C_Encrypt(s, p4, len, NULL, &ol));
        ck_assert_uint_eq(ol, (len / 16 + 1) * 16);
        CK_ULONG need = ol;
        ol = need - 1;
        RV(CKR_BUFFER_TOO_SMALL, P->C_Encrypt(s, p4, len, out, &ol));
        ck_assert_uint_eq(ol, need);
        ol = sizeof(out);
        CK(P->C_Encrypt(s, p4, len, out, &ol));
        ck_assert_uint_eq(ol, need);
        CK(P->C_DecryptInit(s, &pad, kc));
        bl = len; /* exact size fits even though the bound is larger */
        CK(P->C_Decrypt(s, out, ol, back, &bl));
        ck_assert_uint_eq(bl, len);
        ck_assert_mem_eq(back, p4, len);
        CK(P->C_DecryptInit(s, &pad, kc));
        CK_ULONG got = 0, part = sizeof(back);
        CK(P->C_DecryptUpdate(s, out, ol, back, &part));
        got = part;
        part = sizeof(back) - got;
        CK(P->C_DecryptFinal(s, back + got, &part));
        ck_assert_uint_eq(got + part, len);
        ck_assert_mem_eq(back, p4, len);
    }
    CK(P->C_DecryptInit(s, &pad, kc));
    bl = sizeof(back);
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE, P->C_Decrypt(s, c4, 15, back, &bl));
    CK_MECHANISM badiv = {CKM_AES_CBC, iv, 8};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_EncryptInit(s, &badiv, kc));
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_EncryptUpdate(s, p4, 16, out, &ol));
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_DecryptFinal(s, out, &ol));
    RV(CKR_ARGUMENTS_BAD, P->C_EncryptInit(s, NULL, kc));
    CK(P->C_EncryptInit(s, &cbc, kc));
    RV(CKR_ARGUMENTS_BAD, P->C_Encrypt(s, p4, 16, out, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_Encrypt(s, NULL, 16, out, &ol));
}
END_TEST

/* pkcs11-tool's pattern: 1024-byte updates into a 1024-byte buffer; a
 * CBC-PAD decrypt update outputs at most what it was given minus the
 * held-back block. */
START_TEST(test_cbc_pad_decrypt_update_exact_lengths)
{
    unsigned char key[32] = {3}, iv[16] = {4};
    static unsigned char pt[2048], ct[2064], back[2048];
    for (size_t i = 0; i < sizeof(pt); i++)
        pt[i] = (unsigned char)i;
    CK_OBJECT_HANDLE k = secret(key, 32, CKK_AES, false);
    CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, 16};
    CK_ULONG cl = sizeof(ct);
    CK(P->C_EncryptInit(s, &m, k));
    CK(P->C_Encrypt(s, pt, sizeof(pt), ct, &cl));
    ck_assert_uint_eq(cl, 2064);
    CK(P->C_DecryptInit(s, &m, k));
    size_t off = 0, got = 0;
    while (off < cl) {
        size_t n = cl - off < 1024 ? cl - off : 1024;
        unsigned char buf[1024];
        CK_ULONG bl = sizeof(buf);
        CK(P->C_DecryptUpdate(s, ct + off, n, buf, &bl));
        ck_assert_uint_le(bl, 1024);
        memcpy(back + got, buf, bl);
        got += bl;
        off += n;
    }
    unsigned char last[16];
    CK_ULONG ll = sizeof(last);
    CK(P->C_DecryptFinal(s, last, &ll));
    memcpy(back + got, last, ll);
    got += ll;
    ck_assert_uint_eq(got, sizeof(pt));
    ck_assert_mem_eq(back, pt, sizeof(pt));
    /* an update whose output is exactly one block fits a 16-byte buffer */
    CK(P->C_DecryptInit(s, &m, k));
    unsigned char b16[16];
    CK_ULONG l16 = sizeof(b16);
    CK(P->C_DecryptUpdate(s, ct, 32, b16, &l16));
    ck_assert_uint_eq(l16, 16);
    ck_assert_mem_eq(b16, pt, 16);
    l16 = 0;
    RV(CKR_BUFFER_TOO_SMALL, P->C_DecryptUpdate(s, ct + 32, 16, b16, &l16));
    ck_assert_uint_eq(l16, 16);
}
END_TEST

/* CKA_CHECK_VALUE (§2.8): the first 3 bytes of AES-ECB(key, 0^128). */
START_TEST(test_check_value)
{
    unsigned char key[32] = {9, 8, 7}, zero[16] = {0}, ct[16], cv[3];
    CK_OBJECT_HANDLE k = secret(key, 32, CKK_AES, false);
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    CK_ULONG l = sizeof(ct);
    CK(P->C_EncryptInit(s, &ecb, k));
    CK(P->C_Encrypt(s, zero, 16, ct, &l));
    CK_ATTRIBUTE g = {CKA_CHECK_VALUE, cv, sizeof(cv)};
    CK(P->C_GetAttributeValue(s, k, &g, 1)); /* readable on a sensitive key */
    ck_assert_uint_eq(g.ulValueLen, 3);
    ck_assert_mem_eq(cv, ct, 3);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    unsigned char wrong[3] = {ct[0] ^ 1, ct[1], ct[2]};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, key, 32},
                        {CKA_CHECK_VALUE, wrong, 3}};
    CK_OBJECT_HANDLE h;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, t, 4, &h));
    t[3].pValue = ct;
    CK(P->C_CreateObject(s, t, 4, &h));
    CK_ATTRIBUTE set = {CKA_CHECK_VALUE, wrong, 3};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, h, &set, 1));
}
END_TEST

START_TEST(test_digests)
{
    struct {
        CK_MECHANISM_TYPE m;
        const char *abc;
    } v[] = {
        {CKM_SHA256,
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {CKM_SHA384,
         "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43"
         "ff5bed8086072ba1e7cc2358baeca134c825a7"},
        {CKM_SHA512,
         "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b"
         "55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9a"
         "c94fa54ca49f"},
    };
    for (int i = 0; i < 3; i++) {
        unsigned char want[64], out[64];
        size_t wl;
        hex(v[i].abc, want, &wl);
        CK_MECHANISM m = {v[i].m, NULL, 0};
        CK_ULONG ol = 0;
        CK(P->C_DigestInit(s, &m));
        CK(P->C_Digest(s, (CK_BYTE_PTR) "abc", 3, NULL, &ol));
        ck_assert_uint_eq(ol, wl);
        ol = 4;
        RV(CKR_BUFFER_TOO_SMALL,
           P->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &ol));
        ol = sizeof(out);
        CK(P->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &ol));
        ck_assert_mem_eq(out, want, wl);
        CK(P->C_DigestInit(s, &m));
        CK(P->C_DigestUpdate(s, (CK_BYTE_PTR) "a", 1));
        CK(P->C_DigestUpdate(s, (CK_BYTE_PTR) "bc", 2));
        ol = 0;
        CK(P->C_DigestFinal(s, NULL, &ol));
        ck_assert_uint_eq(ol, wl);
        ol = 3;
        RV(CKR_BUFFER_TOO_SMALL, P->C_DigestFinal(s, out, &ol));
        ol = sizeof(out);
        CK(P->C_DigestFinal(s, out, &ol));
        ck_assert_mem_eq(out, want, wl);
    }
    CK_MECHANISM bad = {CKM_AES_ECB, NULL, 0};
    RV(CKR_MECHANISM_INVALID, P->C_DigestInit(s, &bad));
    RV(CKR_OPERATION_NOT_INITIALIZED,
       P->C_DigestUpdate(s, (CK_BYTE_PTR) "a", 1));
    /* C_DigestKey on a readable secret */
    unsigned char kv[16] = "0123456789abcdef", d1[32], d2[32];
    CK_OBJECT_HANDLE k = secret(kv, 16, CKK_AES, true);
    CK_MECHANISM m = {CKM_SHA256, NULL, 0};
    CK_ULONG l1 = 32, l2 = 32;
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_DigestKey(s, k));
    CK(P->C_DigestInit(s, &m));
    RV(CKR_KEY_HANDLE_INVALID, P->C_DigestKey(s, 0x7777777));
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_DigestFinal(s, d1, &l1));
    CK(P->C_DigestInit(s, &m));
    CK(P->C_DigestKey(s, k));
    CK(P->C_DigestFinal(s, d1, &l1));
    CK(P->C_DigestInit(s, &m));
    CK(P->C_Digest(s, kv, 16, d2, &l2));
    ck_assert_mem_eq(d1, d2, 32);
}
END_TEST

/* RFC 4231 test case 2 ("Jefe"). */
START_TEST(test_hmac)
{
    struct {
        CK_MECHANISM_TYPE m;
        const char *mac;
    } v[] = {
        {CKM_SHA256_HMAC,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {CKM_SHA384_HMAC, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e4"
                          "2ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
        {CKM_SHA512_HMAC, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610"
                          "270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaea"
                          "b1a34d4a6b4b636e070a38bce737"},
    };
    const char *data = "what do ya want for nothing?";
    CK_OBJECT_HANDLE k =
        secret((const unsigned char *)"Jefe", 4, CKK_GENERIC_SECRET, false);
    for (int i = 0; i < 3; i++) {
        unsigned char want[64], out[64];
        size_t wl;
        hex(v[i].mac, want, &wl);
        CK_MECHANISM m = {v[i].m, NULL, 0};
        CK_ULONG ol = 0;
        CK(P->C_SignInit(s, &m, k));
        CK(P->C_Sign(s, (CK_BYTE_PTR)data, strlen(data), NULL, &ol));
        ck_assert_uint_eq(ol, wl);
        ol = sizeof(out);
        CK(P->C_Sign(s, (CK_BYTE_PTR)data, strlen(data), out, &ol));
        ck_assert_mem_eq(out, want, wl);
        CK(P->C_SignInit(s, &m, k));
        CK(P->C_SignUpdate(s, (CK_BYTE_PTR)data, 10));
        CK(P->C_SignUpdate(s, (CK_BYTE_PTR)data + 10, strlen(data) - 10));
        ol = 5;
        RV(CKR_BUFFER_TOO_SMALL, P->C_SignFinal(s, out, &ol));
        ck_assert_uint_eq(ol, wl);
        ol = sizeof(out);
        CK(P->C_SignFinal(s, out, &ol));
        ck_assert_mem_eq(out, want, wl);
        CK(P->C_VerifyInit(s, &m, k));
        CK(P->C_Verify(s, (CK_BYTE_PTR)data, strlen(data), want, wl));
        CK(P->C_VerifyInit(s, &m, k));
        CK(P->C_VerifyUpdate(s, (CK_BYTE_PTR)data, 3));
        CK(P->C_VerifyUpdate(s, (CK_BYTE_PTR)data + 3, strlen(data) - 3));
        CK(P->C_VerifyFinal(s, want, wl));
        want[0] ^= 1;
        CK(P->C_VerifyInit(s, &m, k));
        RV(CKR_SIGNATURE_INVALID,
           P->C_Verify(s, (CK_BYTE_PTR)data, strlen(data), want, wl));
        RV(CKR_OPERATION_NOT_INITIALIZED,
           P->C_Verify(s, (CK_BYTE_PTR)data, strlen(data), want, wl));
        CK(P->C_VerifyInit(s, &m, k));
        RV(CKR_SIGNATURE_LEN_RANGE,
           P->C_Verify(s, (CK_BYTE_PTR)data, strlen(data), want, wl - 1));
    }
    CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_SignFinal(s, NULL, &(CK_ULONG){0}));
    CK_MECHANISM withp = {CKM_SHA256_HMAC, (void *)data, 4};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_SignInit(s, &withp, k));
    RV(CKR_MECHANISM_INVALID, P->C_SignRecoverInit(s, &hm, k));
    CK_MECHANISM aes = {CKM_AES_ECB, NULL, 0};
    RV(CKR_MECHANISM_INVALID, P->C_SignInit(s, &aes, k));
}
END_TEST

START_TEST(test_not_logged_in_and_wrong_session)
{
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, true, false, "k");
    CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
    RV(CKR_SESSION_HANDLE_INVALID, P->C_EncryptInit(0x7777777, &m, k));
    CK(P->C_Logout(s));
    RV(CKR_KEY_HANDLE_INVALID, P->C_EncryptInit(s, &m, k));
    /* a public token key cannot be made without a login */
    CK_ULONG l = 16;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &l, sizeof(l)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &no, 1}};
    CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(s, &g, t, 3, &h));
    /* keys are private by default; a public session key works without
     * login */
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(s, &g, t, 1, &h));
    t[1] = t[2];
    CK(P->C_GenerateKey(s, &g, t, 2, &h));
    CK(P->C_EncryptInit(s, &m, h));
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
    tcase_add_test(tc, test_wrap_unwrap_legacy_cbc_pad);
    tcase_add_test(tc, test_gcm_wrap_iv_rules);
    tcase_add_test(tc, test_wrapping_key_strength);
    tcase_add_test(tc, test_gcm_vector_and_params);
    tcase_add_test(tc, test_ecb_cbc_vectors_and_multipart);
    tcase_add_test(tc, test_cbc_pad_decrypt_update_exact_lengths);
    tcase_add_test(tc, test_check_value);
    tcase_add_test(tc, test_digests);
    tcase_add_test(tc, test_hmac);
    tcase_add_test(tc, test_not_logged_in_and_wrong_session);
    suite_add_tcase(su, tc);
    return su;
}
KT_TEST_MAIN(crypto_suite)
