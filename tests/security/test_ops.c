/* Attacks on the lifetime of an operation (PKCS#11 v2.40 §5.2, §5.8-5.12):
 * a call that fails must end its operation, except CKR_BUFFER_TOO_SMALL and
 * a successful length query. An operation that outlives a failed call lets
 * an application (or a library above it that treats the error as the end)
 * keep using a key context it believes gone. Each attack starts an
 * operation, makes one call fail with a NULL pointer the C_* layer refuses
 * (CKR_ARGUMENTS_BAD), then shows whether the operation still answers. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sec.h"

static CK_SESSION_HANDLE s;
static CK_OBJECT_HANDLE aes, hmac;

static const unsigned char aes_key[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                          9, 10, 11, 12, 13, 14, 15, 16};
static const unsigned char hmac_key[32] = {
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};
static unsigned char iv[16];
static CK_MECHANISM cbc = {CKM_AES_CBC, iv, sizeof(iv)};
static CK_MECHANISM mac = {CKM_SHA256_HMAC, NULL, 0};
static CK_MECHANISM sha = {CKM_SHA256, NULL, 0};

static CK_OBJECT_HANDLE secret(CK_KEY_TYPE kt, const unsigned char *v,
                               CK_ULONG len, CK_ATTRIBUTE_TYPE u1,
                               CK_ATTRIBUTE_TYPE u2)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)v, len},    {CKA_TOKEN, &no, sizeof(no)},
        {u1, &yes, sizeof(yes)},        {u2, &yes, sizeof(yes)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK(P->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]), &h));
    return h;
}

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("ops");
    s = kt_test_user_session(slot);
    aes = secret(CKK_AES, aes_key, sizeof(aes_key), CKA_ENCRYPT, CKA_DECRYPT);
    hmac = secret(CKK_GENERIC_SECRET, hmac_key, sizeof(hmac_key), CKA_SIGN,
                  CKA_VERIFY);
}

enum family { ENCRYPT, DECRYPT, SIGN, VERIFY, DIGEST };
static const char *const family_name[] = {"encrypt", "decrypt", "sign",
                                          "verify", "digest"};
static const char *const single_name[] = {"C_Encrypt", "C_Decrypt", "C_Sign",
                                          "C_Verify", "C_Digest"};

static CK_RV start(enum family f)
{
    switch (f) {
    case ENCRYPT:
        return P->C_EncryptInit(s, &cbc, aes);
    case DECRYPT:
        return P->C_DecryptInit(s, &cbc, aes);
    case SIGN:
        return P->C_SignInit(s, &mac, hmac);
    case VERIFY:
        return P->C_VerifyInit(s, &mac, hmac);
    case DIGEST:
        return P->C_DigestInit(s, &sha);
    }
    return CKR_GENERAL_ERROR;
}

/* The single-part call on 16 bytes of data (data NULL: the bad call). */
static CK_RV single(enum family f, const unsigned char *data)
{
    unsigned char out[64];
    CK_ULONG n = sizeof(out);
    unsigned char sig[32];
    memset(sig, 0x5a, sizeof(sig));
    switch (f) {
    case ENCRYPT:
        return P->C_Encrypt(s, (CK_BYTE_PTR)data, 16, out, &n);
    case DECRYPT:
        return P->C_Decrypt(s, (CK_BYTE_PTR)data, 16, out, &n);
    case SIGN:
        return P->C_Sign(s, (CK_BYTE_PTR)data, 16, out, &n);
    case VERIFY:
        return P->C_Verify(s, (CK_BYTE_PTR)data, 16, sig, sizeof(sig));
    case DIGEST:
        return P->C_Digest(s, (CK_BYTE_PTR)data, 16, out, &n);
    }
    return CKR_GENERAL_ERROR;
}

static CK_RV update(enum family f, const unsigned char *data)
{
    unsigned char out[64];
    CK_ULONG n = sizeof(out);
    switch (f) {
    case ENCRYPT:
        return P->C_EncryptUpdate(s, (CK_BYTE_PTR)data, 16, out, &n);
    case DECRYPT:
        return P->C_DecryptUpdate(s, (CK_BYTE_PTR)data, 16, out, &n);
    case SIGN:
        return P->C_SignUpdate(s, (CK_BYTE_PTR)data, 16);
    case VERIFY:
        return P->C_VerifyUpdate(s, (CK_BYTE_PTR)data, 16);
    case DIGEST:
        return P->C_DigestUpdate(s, (CK_BYTE_PTR)data, 16);
    }
    return CKR_GENERAL_ERROR;
}

/* The final call (bad: a NULL length pointer, or a NULL signature). */
static CK_RV final(enum family f, bool bad)
{
    unsigned char out[64];
    CK_ULONG n = sizeof(out);
    CK_ULONG_PTR np = bad ? NULL : &n;
    unsigned char sig[32];
    memset(sig, 0x5a, sizeof(sig));
    switch (f) {
    case ENCRYPT:
        return P->C_EncryptFinal(s, out, np);
    case DECRYPT:
        return P->C_DecryptFinal(s, out, np);
    case SIGN:
        return P->C_SignFinal(s, out, np);
    case VERIFY:
        return P->C_VerifyFinal(s, bad ? NULL : sig, sizeof(sig));
    case DIGEST:
        return P->C_DigestFinal(s, out, np);
    }
    return CKR_GENERAL_ERROR;
}

static const unsigned char data[16] = "sixteen bytes...";

/* The bad call itself is refused (SoftHSM2's answer is only reported). */
static void bad_call(CK_RV rv)
{
    if (!kt_test_is_softhsm())
        ck_assert_msg(rv == CKR_ARGUMENTS_BAD, "bad call: 0x%lx",
                      (unsigned long)rv);
}

/* C_X with a NULL data pointer, then C_X again with data. */
static bool single_part_survives(enum family f)
{
    CK(start(f));
    bad_call(single(f, NULL));
    CK_RV rv = single(f, data);
    if (rv != CKR_OPERATION_NOT_INITIALIZED) {
        /* Whatever it answered, the session is left clean for the next
         * attack. */
        (void)single(f, data);
        return true;
    }
    return false;
}

/* C_XUpdate with a NULL data pointer, then the single-part C_X: an
 * operation that survived still accepts it (no update ran). */
static bool update_survives(enum family f)
{
    CK(start(f));
    bad_call(update(f, NULL));
    CK_RV rv = single(f, data);
    if (rv != CKR_OPERATION_NOT_INITIALIZED) {
        (void) final(f, false);
        return true;
    }
    return false;
}

/* C_XFinal with a NULL length (or signature) pointer, then C_XFinal again.
 */
static bool final_survives(enum family f)
{
    CK(start(f));
    CK(update(f, data));
    bad_call(final(f, true));
    CK_RV rv = final(f, false);
    return rv != CKR_OPERATION_NOT_INITIALIZED;
}

static void attack_family(enum family f, const char *test)
{
    char what[160];
    snprintf(what, sizeof(what),
             "%s with a NULL data pointer failed (CKR_ARGUMENTS_BAD) and "
             "the %s operation still answered the next single-part call",
             single_name[f], family_name[f]);
    sec_outcome(test, !single_part_survives(f), what);
    snprintf(what, sizeof(what),
             "a failed %s update (NULL data pointer) left the operation "
             "running",
             family_name[f]);
    sec_outcome(test, !update_survives(f), what);
    snprintf(what, sizeof(what),
             "a failed %s final (NULL pointer) left the operation running",
             family_name[f]);
    sec_outcome(test, !final_survives(f), what);
    /* The session is usable afterwards: a new operation starts. */
    CK(start(f));
    CK_RV rv = single(f, data);
    ck_assert(rv == CKR_OK || (f == VERIFY && rv == CKR_SIGNATURE_INVALID));
}

START_TEST(test_failed_encrypt_call_ends_operation)
{
    attack_family(ENCRYPT, "test_failed_encrypt_call_ends_operation");
}
END_TEST

START_TEST(test_failed_decrypt_call_ends_operation)
{
    attack_family(DECRYPT, "test_failed_decrypt_call_ends_operation");
}
END_TEST

START_TEST(test_failed_sign_call_ends_operation)
{
    attack_family(SIGN, "test_failed_sign_call_ends_operation");
}
END_TEST

START_TEST(test_failed_verify_call_ends_operation)
{
    attack_family(VERIFY, "test_failed_verify_call_ends_operation");
}
END_TEST

START_TEST(test_failed_digest_call_ends_operation)
{
    attack_family(DIGEST, "test_failed_digest_call_ends_operation");
}
END_TEST

/* The two exceptions stay: a length query and CKR_BUFFER_TOO_SMALL keep
 * the operation (an application retries with a larger buffer). */
START_TEST(test_length_query_and_short_buffer_keep_operation)
{
    unsigned char out[64];
    CK_ULONG n = 0;
    CK(P->C_EncryptInit(s, &cbc, aes));
    CK(P->C_Encrypt(s, (CK_BYTE_PTR)data, 16, NULL, &n));
    ck_assert_uint_eq(n, 16);
    n = 4;
    RV(CKR_BUFFER_TOO_SMALL, P->C_Encrypt(s, (CK_BYTE_PTR)data, 16, out, &n));
    n = sizeof(out);
    CK(P->C_Encrypt(s, (CK_BYTE_PTR)data, 16, out, &n));
    ck_assert_uint_eq(n, 16);
}
END_TEST

/* A wrapping key destroyed in one session while another session unwraps
 * with it on another thread (keeping its snapshot between calls): every
 * unwrap that starts after C_DestroyObject returned must be refused. A
 * cached snapshot that survived the destruction would let the key go on
 * unwrapping after its owner destroyed it. */
struct unwrapper {
    CK_OBJECT_HANDLE kek;
    unsigned char blob[64];
    CK_ULONG blob_len;
    atomic_int done;         /* successful unwraps */
    atomic_bool destroyed;   /* C_DestroyObject returned */
    atomic_bool late_unwrap; /* an unwrap started after it succeeded */
    atomic_bool stopped;
    CK_RV last; /* read after the join */
};

static void *unwrap_until_refused(void *arg)
{
    struct unwrapper *u = arg;
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, sizeof(no)},
                        {CKA_ENCRYPT, &yes, sizeof(yes)}};
    for (;;) {
        bool after = atomic_load(&u->destroyed);
        CK_OBJECT_HANDLE h;
        u->last =
            P->C_UnwrapKey(s, &wm, u->kek, u->blob, u->blob_len, t, 4, &h);
        if (u->last != CKR_OK)
            break;
        if (after) {
            atomic_store(&u->late_unwrap, true);
            break;
        }
        if (P->C_DestroyObject(s, h) != CKR_OK) {
            u->last = CKR_GENERAL_ERROR;
            break;
        }
        atomic_fetch_add(&u->done, 1);
    }
    atomic_store(&u->stopped, true);
    return NULL;
}

START_TEST(test_destroyed_wrapping_key_refused_at_once_in_other_sessions)
{
    CK_SESSION_HANDLE b;
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_SLOT_ID slot;
    CK_SESSION_INFO si;
    if (kt_test_is_softhsm()) {
        SEC_NA("SoftHSM2 2.6.1 crashes (SIGSEGV in C_UnwrapKey) when another "
               "session destroys the unwrapping key during the call");
        return;
    }
    CK(P->C_GetSessionInfo(s, &si));
    slot = si.slotID;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &b));
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    bool refused = true;
    for (int round = 0; round < 50 && refused; round++) {
        static struct unwrapper u;
        memset(&u, 0, sizeof(u));
        /* A session key of session b, used from session s. */
        u.kek = kt_test_wrap_key(b, 32, false, false, "kek");
        u.blob_len = sizeof(u.blob);
        CK(P->C_WrapKey(s, &wm, u.kek, dek, u.blob, &u.blob_len));
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, unwrap_until_refused, &u),
                         0);
        /* Let the unwrapper take and keep the snapshot, then destroy. */
        while (atomic_load(&u.done) < 1 + round % 4 && !atomic_load(&u.stopped))
            ;
        CK(P->C_DestroyObject(b, u.kek));
        atomic_store(&u.destroyed, true);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        if (atomic_load(&u.late_unwrap) ||
            u.last != CKR_UNWRAPPING_KEY_HANDLE_INVALID)
            refused = false;
    }
    SEC_REFUSED(refused, "unwrap with a wrapping key another session "
                         "destroyed, through the unwrapping session's kept "
                         "snapshot");
    CK(P->C_CloseSession(b));
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *su = suite_create("sec-ops");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_failed_encrypt_call_ends_operation);
    tcase_add_test(tc, test_failed_decrypt_call_ends_operation);
    tcase_add_test(tc, test_failed_sign_call_ends_operation);
    tcase_add_test(tc, test_failed_verify_call_ends_operation);
    tcase_add_test(tc, test_failed_digest_call_ends_operation);
    tcase_add_test(tc, test_length_query_and_short_buffer_keep_operation);
    tcase_add_test(
        tc, test_destroyed_wrapping_key_refused_at_once_in_other_sessions);
    suite_add_tcase(su, tc);
    return su;
}
KT_TEST_MAIN(ops_suite)
