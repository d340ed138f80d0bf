/* Public sessions (no login): they create, generate and use public session
 * objects (CKA_PRIVATE=FALSE, CKA_TOKEN=FALSE), and are refused private
 * objects (CKR_USER_NOT_LOGGED_IN; CKA_PRIVATE defaults to true for secret
 * and private keys) and, read-only, token objects (CKR_SESSION_READ_ONLY).
 * PKCS#11 3.0 §4.4, §5.6 (session states). */
#include <string.h>

#include "harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE ro, rw;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY, c_data = CKO_DATA;
static CK_KEY_TYPE k_aes = CKK_AES;
static unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                               0xce, 0x3d, 0x03, 0x01, 0x07};

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("pubsession");
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &rw));
}

static CK_ULONG count_all(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE h[32];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, h, N(h), &n));
    CK(P->C_FindObjectsFinal(s));
    return n;
}

static void roundtrip(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    CK_BYTE iv[16] = {9}, in[32] = "public session object plaintext";
    CK_BYTE ct[64], pt[64];
    CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
    CK_ULONG cl = sizeof(ct), pl = sizeof(pt);
    CK(P->C_EncryptInit(s, &m, k));
    CK(P->C_Encrypt(s, in, sizeof(in), ct, &cl));
    CK(P->C_DecryptInit(s, &m, k));
    CK(P->C_Decrypt(s, ct, cl, pt, &pl));
    ck_assert_uint_eq(pl, sizeof(in));
    ck_assert(memcmp(pt, in, pl) == 0);
}

static void sign_verify(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt,
                        CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pubk)
{
    CK_MECHANISM m = {mt, NULL, 0};
    CK_BYTE data[] = "signed without login", sig[512];
    CK_ULONG sl = sizeof(sig);
    CK(P->C_SignInit(s, &m, priv));
    CK(P->C_Sign(s, data, sizeof(data), sig, &sl));
    CK(P->C_VerifyInit(s, &m, pubk));
    CK(P->C_Verify(s, data, sizeof(data), sig, sl));
    sig[0] ^= 1;
    CK(P->C_VerifyInit(s, &m, pubk));
    RV(CKR_SIGNATURE_INVALID, P->C_Verify(s, data, sizeof(data), sig, sl));
}

START_TEST(test_public_session_makes_and_uses_public_objects)
{
    CK_SESSION_HANDLE ss[] = {ro, rw};
    for (size_t i = 0; i < N(ss); i++) {
        CK_SESSION_HANDLE s = ss[i];
        CK_ULONG len = 32;
        CK_ATTRIBUTE kt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                             {CKA_PRIVATE, &no, 1},
                             {CKA_TOKEN, &no, 1},
                             {CKA_ENCRYPT, &yes, 1},
                             {CKA_DECRYPT, &yes, 1}};
        CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
        CK_OBJECT_HANDLE k;
        CK(P->C_GenerateKey(s, &g, kt, N(kt), &k));
        roundtrip(s, k);
        CK_ATTRIBUTE ct[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                             {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                             {CKA_VALUE, "0123456789abcdef", 16},
                             {CKA_PRIVATE, &no, 1},
                             {CKA_ENCRYPT, &yes, 1},
                             {CKA_DECRYPT, &yes, 1}};
        CK_OBJECT_HANDLE c;
        CK(P->C_CreateObject(s, ct, N(ct), &c));
        roundtrip(s, c);
        CK_ATTRIBUTE lbl = {CKA_LABEL, "renamed", 7};
        CK(P->C_SetAttributeValue(s, c, &lbl, 1));
        CK_OBJECT_HANDLE cp;
        CK_ATTRIBUTE cl = {CKA_LABEL, "copy", 4};
        CK(P->C_CopyObject(s, c, &cl, 1, &cp));
        roundtrip(s, cp);
        /* Key pairs: CKA_PRIVATE=FALSE on both halves. */
        CK_ULONG bits = 2048;
        CK_BYTE e[] = {1, 0, 1};
        CK_ATTRIBUTE rp[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                             {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                             {CKA_PRIVATE, &no, 1},
                             {CKA_TOKEN, &no, 1},
                             {CKA_VERIFY, &yes, 1}};
        CK_ATTRIBUTE rs[] = {
            {CKA_PRIVATE, &no, 1}, {CKA_TOKEN, &no, 1}, {CKA_SIGN, &yes, 1}};
        CK_MECHANISM rg = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
        CK_OBJECT_HANDLE rpub, rpriv;
        CK(P->C_GenerateKeyPair(s, &rg, rp, N(rp), rs, N(rs), &rpub, &rpriv));
        sign_verify(s, CKM_SHA256_RSA_PKCS, rpriv, rpub);
        /* The public half's CKA_PRIVATE is false by default. */
        CK_ATTRIBUTE ep[] = {{CKA_EC_PARAMS, p256, sizeof(p256)},
                             {CKA_VERIFY, &yes, 1}};
        CK_ATTRIBUTE es[] = {{CKA_PRIVATE, &no, 1}, {CKA_SIGN, &yes, 1}};
        CK_MECHANISM eg = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
        CK_OBJECT_HANDLE epub, epriv;
        CK(P->C_GenerateKeyPair(s, &eg, ep, N(ep), es, N(es), &epub, &epriv));
        sign_verify(s, CKM_ECDSA_SHA256, epriv, epub);
        CK_BBOOL priv = CK_TRUE;
        CK_ATTRIBUTE gp = {CKA_PRIVATE, &priv, 1};
        CK(P->C_GetAttributeValue(s, epriv, &gp, 1));
        ck_assert(!priv);
        CK(P->C_DestroyObject(s, cp));
    }
    /* Six session objects of each session, visible to both. */
    ck_assert_uint_eq(count_all(ro), 12);
    ck_assert_uint_eq(count_all(rw), 12);
}
END_TEST

START_TEST(test_public_session_refused_private_and_token_objects)
{
    CK_ULONG len = 16;
    CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE k, a, b;
    /* CKA_PRIVATE left out: a private secret key. */
    CK_ATTRIBUTE d[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_ENCRYPT, &yes, 1}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(ro, &g, d, N(d), &k));
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(rw, &g, d, N(d), &k));
    CK_ATTRIBUTE pt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_PRIVATE, &yes, 1}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(rw, &g, pt, N(pt), &k));
    CK_ATTRIBUTE ct[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, "0123456789abcdef", 16}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_CreateObject(rw, ct, N(ct), &k));
    /* A key pair whose private half does not say CKA_PRIVATE=FALSE: no
     * half is left behind. */
    CK_ATTRIBUTE ep[] = {{CKA_EC_PARAMS, p256, sizeof(p256)},
                         {CKA_PRIVATE, &no, 1}};
    CK_ATTRIBUTE es[] = {{CKA_SIGN, &yes, 1}};
    CK_MECHANISM eg = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    RV(CKR_USER_NOT_LOGGED_IN,
       P->C_GenerateKeyPair(rw, &eg, ep, N(ep), es, N(es), &a, &b));
    ck_assert_uint_eq(count_all(rw), 0);
    /* Token objects in a read-only session, logged in or not. */
    CK_ATTRIBUTE tt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_TOKEN, &yes, 1}};
    RV(CKR_SESSION_READ_ONLY, P->C_GenerateKey(ro, &g, tt, N(tt), &k));
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_VALUE, "x", 1}};
    RV(CKR_SESSION_READ_ONLY, P->C_CreateObject(ro, dt, N(dt), &k));
    CK_ATTRIBUTE etp[] = {{CKA_EC_PARAMS, p256, sizeof(p256)},
                          {CKA_PRIVATE, &no, 1},
                          {CKA_TOKEN, &yes, 1}};
    CK_ATTRIBUTE ets[] = {{CKA_PRIVATE, &no, 1}, {CKA_SIGN, &yes, 1}};
    RV(CKR_SESSION_READ_ONLY,
       P->C_GenerateKeyPair(ro, &eg, etp, N(etp), ets, N(ets), &a, &b));
    /* A public object copied into a private one needs a login too. */
    CK_ATTRIBUTE pub_t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                            {CKA_PRIVATE, &no, 1}};
    CK(P->C_GenerateKey(rw, &g, pub_t, N(pub_t), &k));
    CK_ATTRIBUTE to_priv = {CKA_PRIVATE, &yes, 1};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_CopyObject(rw, k, &to_priv, 1, &a));
    ck_assert_uint_eq(count_all(rw), 1);
    CK(P->C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    RV(CKR_SESSION_READ_ONLY, P->C_GenerateKey(ro, &g, tt, N(tt), &k));
}
END_TEST

/* Public objects made before login serve after login and after logout;
 * private session objects go with the logout. */
START_TEST(test_public_objects_across_login)
{
    CK_ULONG len = 32;
    CK_ATTRIBUTE kt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_ENCRYPT, &yes, 1},
                         {CKA_DECRYPT, &yes, 1}};
    CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE before, during, priv;
    CK(P->C_GenerateKey(rw, &g, kt, N(kt), &before));
    CK(P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    roundtrip(ro, before);
    CK(P->C_GenerateKey(ro, &g, kt, N(kt), &during));
    CK_ATTRIBUTE pk[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_ENCRYPT, &yes, 1}};
    CK(P->C_GenerateKey(ro, &g, pk, N(pk), &priv));
    ck_assert_uint_eq(count_all(ro), 3);
    CK(P->C_Logout(rw));
    roundtrip(ro, before);
    roundtrip(rw, during);
    ck_assert_uint_eq(count_all(ro), 2);
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    CK_RV rv = P->C_EncryptInit(ro, &ecb, priv);
    ck_assert(rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID);
}
END_TEST

/* A read/write public session writes public token objects that hold
 * nothing sealed (a public key, a public data object: what a certificate
 * tool writes before any login), and destroys them; they survive
 * C_Finalize. Token objects that would seal something (any secret key, a
 * private data object) still need the login. */
START_TEST(test_public_token_objects_without_login)
{
    CK_OBJECT_HANDLE pub, priv, d, k, found[4];
    CK_ULONG n = 0, len = 16;
    CK_MECHANISM eg = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE ep[] = {{CKA_EC_PARAMS, p256, sizeof(p256)},
                         {CKA_PRIVATE, &no, 1}};
    CK_ATTRIBUTE es[] = {{CKA_PRIVATE, &no, 1}, {CKA_SIGN, &yes, 1}};
    CK(P->C_GenerateKeyPair(rw, &eg, ep, N(ep), es, N(es), &pub, &priv));
    unsigned char point[200];
    CK_ATTRIBUTE pa = {CKA_EC_POINT, point, sizeof(point)};
    CK(P->C_GetAttributeValue(rw, pub, &pa, 1));
    CK_OBJECT_CLASS c_pub = CKO_PUBLIC_KEY;
    CK_KEY_TYPE k_ec = CKK_EC;
    CK_ATTRIBUTE tp[] = {{CKA_CLASS, &c_pub, sizeof(c_pub)},
                         {CKA_KEY_TYPE, &k_ec, sizeof(k_ec)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_LABEL, "planted-pub", 11},
                         {CKA_EC_PARAMS, p256, sizeof(p256)},
                         {CKA_EC_POINT, point, pa.ulValueLen}};
    CK(P->C_CreateObject(rw, tp, N(tp), &k));
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_LABEL, "planted-data", 12},
                         {CKA_VALUE, "public", 6}};
    CK(P->C_CreateObject(rw, dt, N(dt), &d));
    /* Sealed records: refused without the login. */
    CK_ATTRIBUTE pdt[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                          {CKA_TOKEN, &yes, 1},
                          {CKA_PRIVATE, &yes, 1},
                          {CKA_VALUE, "private", 7}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_CreateObject(rw, pdt, N(pdt), &k));
    CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE st[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_TOKEN, &yes, 1}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(rw, &g, st, N(st), &k));
    CK_ATTRIBUTE sc[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_VALUE, "0123456789abcdef", 16}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_CreateObject(rw, sc, N(sc), &k));
    /* Both written objects are in the store. */
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("pubsession");
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &rw));
    CK_ATTRIBUTE tok = {CKA_TOKEN, &yes, 1};
    CK(P->C_FindObjectsInit(rw, &tok, 1));
    CK(P->C_FindObjects(rw, found, N(found), &n));
    CK(P->C_FindObjectsFinal(rw));
    ck_assert_uint_eq(n, 2);
    for (CK_ULONG i = 0; i < n; i++)
        CK(P->C_DestroyObject(rw, found[i]));
    CK(P->C_FindObjectsInit(rw, &tok, 1));
    CK(P->C_FindObjects(rw, found, N(found), &n));
    CK(P->C_FindObjectsFinal(rw));
    ck_assert_uint_eq(n, 0);
}
END_TEST

static Suite *pubsession_suite(void)
{
    Suite *su = suite_create("pubsession");
    TCase *tc = tcase_create("pubsession");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_public_session_makes_and_uses_public_objects);
    tcase_add_test(tc, test_public_session_refused_private_and_token_objects);
    tcase_add_test(tc, test_public_objects_across_login);
    tcase_add_test(tc, test_public_token_objects_without_login);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(pubsession_suite)
