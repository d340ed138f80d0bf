/* Operation rules of PKCS#11 3.0 §5.2 that google/pkcs11test checks: a
 * single-part call that asked for the output length (or had too small a
 * buffer) keeps its operation single-part: an Update or Final call then
 * answers CKR_OPERATION_ACTIVE and ends the operation, as a failed call
 * does. */
#include <string.h>

#include "harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SESSION_HANDLE s;

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_new_token("spec"));
}

/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
static const CK_BYTE sha256_abc[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

START_TEST(test_digest_length_query_stays_single_part)
{
    CK_MECHANISM m = {CKM_SHA256, NULL, 0};
    CK_BYTE abc[] = "abc", out[64];
    CK_ULONG len = 0;
    /* Length query, then the single-part call: the digest. */
    CK(P->C_DigestInit(s, &m));
    CK(P->C_Digest(s, abc, 3, NULL, &len));
    ck_assert_uint_eq(len, 32);
    len = 1;
    RV(CKR_BUFFER_TOO_SMALL, P->C_Digest(s, abc, 3, out, &len));
    ck_assert_uint_eq(len, 32);
    len = sizeof(out);
    CK(P->C_Digest(s, abc, 3, out, &len));
    ck_assert(memcmp(out, sha256_abc, 32) == 0);
    /* Length query, then C_DigestFinal: refused, and the digest ends. */
    CK(P->C_DigestInit(s, &m));
    len = 0;
    CK(P->C_Digest(s, abc, 3, NULL, &len));
    len = sizeof(out);
    RV(CKR_OPERATION_ACTIVE, P->C_DigestFinal(s, out, &len));
    len = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_DigestFinal(s, out, &len));
    /* Likewise C_DigestUpdate. */
    CK(P->C_DigestInit(s, &m));
    len = 0;
    CK(P->C_Digest(s, abc, 3, NULL, &len));
    RV(CKR_OPERATION_ACTIVE, P->C_DigestUpdate(s, abc, 3));
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_DigestUpdate(s, abc, 3));
    /* Multi-part as before. */
    CK(P->C_DigestInit(s, &m));
    CK(P->C_DigestUpdate(s, abc, 1));
    CK(P->C_DigestUpdate(s, abc + 1, 2));
    len = sizeof(out);
    CK(P->C_DigestFinal(s, out, &len));
    ck_assert(memcmp(out, sha256_abc, 32) == 0);
}
END_TEST

START_TEST(test_encrypt_and_sign_length_query_stay_single_part)
{
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, false, false, "spec");
    CK_BYTE iv[16] = {0}, in[32] = {1}, out[64];
    CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
    CK_ULONG len = 0;
    CK(P->C_EncryptInit(s, &cbc, k));
    CK(P->C_Encrypt(s, in, sizeof(in), NULL, &len));
    ck_assert_uint_eq(len, 48);
    len = sizeof(out);
    RV(CKR_OPERATION_ACTIVE, P->C_EncryptUpdate(s, in, 16, out, &len));
    len = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_EncryptFinal(s, out, &len));
    CK(P->C_EncryptInit(s, &cbc, k));
    len = 1;
    RV(CKR_BUFFER_TOO_SMALL, P->C_Encrypt(s, in, sizeof(in), out, &len));
    len = sizeof(out);
    RV(CKR_OPERATION_ACTIVE, P->C_EncryptFinal(s, out, &len));
    len = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_Encrypt(s, in, 16, out, &len));

    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE ht[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &gen, sizeof(gen)},
                         {CKA_VALUE, "0123456789abcdef0123456789abcdef", 32},
                         {CKA_SIGN, &yes, 1}};
    CK_OBJECT_HANDLE hk;
    CK(P->C_CreateObject(s, ht, N(ht), &hk));
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK(P->C_SignInit(s, &hmac, hk));
    len = 0;
    CK(P->C_Sign(s, in, sizeof(in), NULL, &len));
    ck_assert_uint_eq(len, 32);
    RV(CKR_OPERATION_ACTIVE, P->C_SignUpdate(s, in, 16));
    len = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_SignFinal(s, out, &len));
}
END_TEST

static Suite *spec_suite(void)
{
    Suite *su = suite_create("spec");
    TCase *tc = tcase_create("spec");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_digest_length_query_stays_single_part);
    tcase_add_test(tc, test_encrypt_and_sign_length_query_stay_single_part);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(spec_suite)
