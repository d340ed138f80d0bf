/* Attacks through public session objects (SECURITY.md, "Public session
 * objects"): objects any session may make and use without login. Each
 * attack tries to reach a private object from them: a public key made
 * before login (value known to the attacker) wraps a private key out,
 * unwraps or derives a private key whose value a session without login can
 * reproduce, a copy turns a private key public, a session without login
 * sees or uses private objects, or a public object reaches the store. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "sec.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE pub; /* public R/W session, never logged in */
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE k_aes = CKK_AES;
static unsigned char known[32] = "attacker knows this key value!!";

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("public");
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &pub));
}

static void login(void)
{
    CK(P->C_Login(pub, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
}

/* Before login: a public AES key of a value the attacker chose, with the
 * wrap role (a key planted for the logged-in application to find). */
static CK_OBJECT_HANDLE planted_wrap_key(void)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                        {CKA_VALUE, known, 32},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_WRAP, &yes, 1},
                        {CKA_UNWRAP, &yes, 1},
                        {CKA_LABEL, "backup", 6}};
    CK_OBJECT_HANDLE k;
    CK(P->C_CreateObject(pub, t, N(t), &k));
    return k;
}

/* After login: a private, extractable AES key (the target). */
static CK_OBJECT_HANDLE private_target(void)
{
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_ENCRYPT, &yes, 1}};
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE k;
    CK(P->C_GenerateKey(pub, &m, t, N(t), &k));
    return k;
}

/* AES key unwrap with padding (RFC 5649) under the known key, with
 * OpenSSL: the blob's plaintext. */
static int kwp_unwrap(const unsigned char *blob, int len, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    int n = -1, f = 0;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_DecryptInit_ex2(c, ciph, known, NULL, NULL) == 1 &&
        EVP_DecryptUpdate(c, out, &n, blob, len) == 1 &&
        EVP_DecryptFinal_ex(c, out + n, &f) == 1)
        n += f;
    else
        n = -1;
    EVP_CIPHER_free(ciph);
    EVP_CIPHER_CTX_free(c);
    return n;
}

/* The planted key wraps a private key: the attacker, who knows the
 * planted key's value, unwraps the blob outside the token. */
START_TEST(test_planted_key_wraps_private_key_out)
{
    CK_OBJECT_HANDLE k = planted_wrap_key();
    login();
    CK_OBJECT_HANDLE target = private_target();
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char blob[64], plain[64];
    CK_ULONG bl = sizeof(blob);
    CK_RV rv = P->C_WrapKey(pub, &m, k, target, blob, &bl);
    bool leaked = rv == CKR_OK && kwp_unwrap(blob, (int)bl, plain) == 32;
    SEC_REFUSED(!leaked, "a public key made before login wraps a private key "
                         "out; the blob opens under the planted value");
    if (kt_test_is_softhsm())
        return;
    RV(CKR_KEY_NOT_WRAPPABLE, rv);
    /* A private (CKO_PRIVATE_KEY) key as well: its PrivateKeyInfo. */
    unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                            0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, p256, sizeof(p256)}};
    CK_ATTRIBUTE st[] = {{CKA_EXTRACTABLE, &yes, 1}, {CKA_SIGN, &yes, 1}};
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE ec_pub, ec_priv;
    CK(P->C_GenerateKeyPair(pub, &gen, pt, N(pt), st, N(st), &ec_pub,
                            &ec_priv));
    unsigned char big[512];
    bl = sizeof(big);
    RV(CKR_KEY_NOT_WRAPPABLE, P->C_WrapKey(pub, &m, k, ec_priv, big, &bl));
}
END_TEST

/* The planted key unwraps a blob into a private key; after logout a session
 * without login unwraps the same blob into a public, readable key: the
 * private key's value. */
START_TEST(test_planted_key_unwraps_into_private_key)
{
    CK_OBJECT_HANDLE k = planted_wrap_key();
    /* A blob under the planted key, made where the attacker likes. */
    CK_ATTRIBUTE vt[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, "0123456789abcdef", 16},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_EXTRACTABLE, &yes, 1},
                         {CKA_SENSITIVE, &no, 1}};
    CK_OBJECT_HANDLE v;
    CK(P->C_CreateObject(pub, vt, N(vt), &v));
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char blob[64];
    CK_ULONG bl = sizeof(blob);
    CK(P->C_WrapKey(pub, &m, k, v, blob, &bl));
    CK_ATTRIBUTE priv_t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                             {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                             {CKA_ENCRYPT, &yes, 1}};
    CK_OBJECT_HANDLE u;
    /* Without login: no private object at all. */
    RV(CKR_USER_NOT_LOGGED_IN,
       P->C_UnwrapKey(pub, &m, k, blob, bl, priv_t, N(priv_t), &u));
    login();
    CK_RV rv = P->C_UnwrapKey(pub, &m, k, blob, bl, priv_t, N(priv_t), &u);
    SEC_REFUSED(rv != CKR_OK,
                "a public key made before login unwraps a private key whose "
                "value any session without login can unwrap again");
    if (!kt_test_is_softhsm())
        RV(CKR_TEMPLATE_INCONSISTENT, rv);
    /* Into a public key it is the public realm's business. */
    CK_ATTRIBUTE pub_t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                            {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                            {CKA_PRIVATE, &no, 1},
                            {CKA_ENCRYPT, &yes, 1}};
    CK(P->C_UnwrapKey(pub, &m, k, blob, bl, pub_t, N(pub_t), &u));
}
END_TEST

/* ECDH from a key pair made without login: the same derivation into a
 * public, readable key gives the private key's value. */
START_TEST(test_public_pair_derives_private_key)
{
    unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                            0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, p256, sizeof(p256)},
                         {CKA_PRIVATE, &no, 1}};
    CK_ATTRIBUTE st[] = {{CKA_PRIVATE, &no, 1}, {CKA_DERIVE, &yes, 1}};
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE a_pub, a_priv, b_pub, b_priv;
    CK(P->C_GenerateKeyPair(pub, &gen, pt, N(pt), st, N(st), &a_pub, &a_priv));
    CK(P->C_GenerateKeyPair(pub, &gen, pt, N(pt), st, N(st), &b_pub, &b_priv));
    unsigned char point[200];
    CK_ATTRIBUTE ga = {CKA_EC_POINT, point, sizeof(point)};
    CK(P->C_GetAttributeValue(pub, b_pub, &ga, 1));
    CK_ECDH1_DERIVE_PARAMS dp = {CKD_NULL, 0, NULL, ga.ulValueLen, point};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, &dp, sizeof(dp)};
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE priv_t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                             {CKA_KEY_TYPE, &gk, sizeof(gk)},
                             {CKA_SIGN, &yes, 1}};
    CK_OBJECT_HANDLE d;
    RV(CKR_USER_NOT_LOGGED_IN,
       P->C_DeriveKey(pub, &m, a_priv, priv_t, N(priv_t), &d));
    login();
    CK_RV rv = P->C_DeriveKey(pub, &m, a_priv, priv_t, N(priv_t), &d);
    SEC_REFUSED(rv != CKR_OK,
                "a key pair made without login derives a private key whose "
                "value any session without login can derive again");
    if (!kt_test_is_softhsm())
        RV(CKR_TEMPLATE_INCONSISTENT, rv);
}
END_TEST

/* The same with a symmetric derivation (*_ENCRYPT_DATA) from a planted
 * key: the derived value is E_K(data) under the planted value. */
START_TEST(test_planted_key_derives_private_key)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                        {CKA_VALUE, known, 32},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_DERIVE, &yes, 1}};
    CK_OBJECT_HANDLE k;
    CK(P->C_CreateObject(pub, t, N(t), &k));
    unsigned char data[16] = "derivation data";
    CK_KEY_DERIVATION_STRING_DATA dp = {data, sizeof(data)};
    CK_MECHANISM m = {CKM_AES_ECB_ENCRYPT_DATA, &dp, sizeof(dp)};
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    CK_ULONG len = 16;
    CK_ATTRIBUTE priv_t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                             {CKA_KEY_TYPE, &gk, sizeof(gk)},
                             {CKA_VALUE_LEN, &len, sizeof(len)},
                             {CKA_SIGN, &yes, 1}};
    CK_OBJECT_HANDLE d;
    login();
    CK_RV rv = P->C_DeriveKey(pub, &m, k, priv_t, N(priv_t), &d);
    SEC_REFUSED(rv != CKR_OK, "a public key made before login derives a "
                              "private key whose value its planter knows");
    if (!kt_test_is_softhsm())
        RV(CKR_TEMPLATE_INCONSISTENT, rv);
}
END_TEST

/* A logged-in copy with CKA_PRIVATE=FALSE would leave a private key usable
 * by every session without login. */
START_TEST(test_copy_private_key_to_public)
{
    login();
    CK_OBJECT_HANDLE target = private_target();
    CK_ATTRIBUTE ct[] = {{CKA_PRIVATE, &no, 1}};
    CK_OBJECT_HANDLE c = CK_INVALID_HANDLE;
    CK_RV rv = P->C_CopyObject(pub, target, ct, N(ct), &c);
    bool used = false;
    if (rv == CKR_OK) {
        CK(P->C_Logout(pub));
        CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
        used = P->C_EncryptInit(pub, &ecb, c) == CKR_OK;
    }
    SEC_REFUSED(!used, "a private key copied with CKA_PRIVATE=FALSE is used "
                       "by a session without login");
    if (!kt_test_is_softhsm())
        RV(CKR_ATTRIBUTE_READ_ONLY, rv);
}
END_TEST

/* After logout, a session without login neither finds nor uses private
 * objects, token or session ones, by any handle it saw. */
START_TEST(test_public_session_reaches_no_private_object)
{
    login();
    CK_OBJECT_HANDLE sess_key = private_target();
    CK_ULONG len = 32;
    CK_ATTRIBUTE tt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_ENCRYPT, &yes, 1}};
    CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE tok_key;
    CK(P->C_GenerateKey(pub, &g, tt, N(tt), &tok_key));
    CK(P->C_Logout(pub));
    CK_OBJECT_HANDLE found[8];
    CK_ULONG nf = 0;
    CK(P->C_FindObjectsInit(pub, NULL, 0));
    CK(P->C_FindObjects(pub, found, N(found), &nf));
    CK(P->C_FindObjectsFinal(pub));
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    bool reached = nf != 0;
    CK_OBJECT_HANDLE hs[] = {sess_key, tok_key};
    for (size_t i = 0; i < N(hs); i++) {
        CK_BBOOL v;
        CK_ATTRIBUTE a = {CKA_ENCRYPT, &v, 1};
        reached |= P->C_GetAttributeValue(pub, hs[i], &a, 1) == CKR_OK;
        reached |= P->C_EncryptInit(pub, &ecb, hs[i]) == CKR_OK;
    }
    SEC_REFUSED(!reached, "a session without login finds or uses a private "
                          "object by a handle seen while logged in");
}
END_TEST

static long db_rows(void)
{
    char db[400], cmd[600];
    kt_test_token_db_path(db, sizeof(db));
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'SELECT count(*) FROM objects'",
             db);
    FILE *fp = popen(cmd, "r");
    long n = -1;
    if (fp != NULL) {
        if (fscanf(fp, "%ld", &n) != 1)
            n = -1;
        pclose(fp);
    }
    return n;
}

/* Objects made without login never reach the token's files: session
 * objects stay in memory, and a token object needs a login (its record is
 * sealed and MACed under the master key). */
START_TEST(test_public_objects_never_stored)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("keytier's store layout");
        return;
    }
    long before = db_rows();
    ck_assert_int_ge(before, 0);
    (void)planted_wrap_key();
    CK_ULONG len = 16;
    CK_ATTRIBUTE st[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE tt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_ENCRYPT, &yes, 1}};
    CK_MECHANISM g = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE k;
    CK(P->C_GenerateKey(pub, &g, st, N(st), &k));
    CK_RV rv = P->C_GenerateKey(pub, &g, tt, N(tt), &k);
    long after = db_rows();
    SEC_REFUSED(rv != CKR_OK && after == before,
                "an object made without login is written to the token");
    RV(CKR_USER_NOT_LOGGED_IN, rv);
    /* Gone with the process's module state. */
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("public");
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &pub));
    CK_OBJECT_HANDLE found[4];
    CK_ULONG nf = 1;
    CK(P->C_FindObjectsInit(pub, NULL, 0));
    CK(P->C_FindObjects(pub, found, N(found), &nf));
    ck_assert_uint_eq(nf, 0);
}
END_TEST

static Suite *public_suite(void)
{
    Suite *su = suite_create("public");
    TCase *tc = tcase_create("public");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_planted_key_wraps_private_key_out);
    tcase_add_test(tc, test_planted_key_unwraps_into_private_key);
    tcase_add_test(tc, test_public_pair_derives_private_key);
    tcase_add_test(tc, test_planted_key_derives_private_key);
    tcase_add_test(tc, test_copy_private_key_to_public);
    tcase_add_test(tc, test_public_session_reaches_no_private_object);
    tcase_add_test(tc, test_public_objects_never_stored);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(public_suite)
