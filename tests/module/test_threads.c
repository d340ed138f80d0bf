/* Many threads, many sessions: operations on independent sessions run
 * concurrently and give the same results as alone (CKF_OS_LOCKING_OK). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define THREADS 4
#define ROUNDS  150

static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE root;

static void *worker(void *arg)
{
    long id = (long)arg;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                         &s) != CKR_OK)
        return (void *)1;
    for (int i = 0; i < ROUNDS; i++) {
        char label[32];
        snprintf(label, sizeof(label), "t%ld-%d", id, i);
        CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, label);
        unsigned char w[64], c1[16], c2[16], in[16] = {(unsigned char)i};
        CK_ULONG wl = sizeof(w), l1 = 16, l2 = 16;
        CK_OBJECT_HANDLE back;
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_KEY_TYPE, &kt, sizeof(kt)},
                            {CKA_TOKEN, &no, 1},
                            {CKA_ENCRYPT, &yes, 1}};
        if (P->C_WrapKey(s, &wm, root, dek, w, &wl) != CKR_OK ||
            P->C_UnwrapKey(s, &wm, root, w, wl, t, 4, &back) != CKR_OK ||
            P->C_EncryptInit(s, &ecb, dek) != CKR_OK ||
            P->C_Encrypt(s, in, 16, c1, &l1) != CKR_OK ||
            P->C_EncryptInit(s, &ecb, back) != CKR_OK ||
            P->C_Encrypt(s, in, 16, c2, &l2) != CKR_OK ||
            memcmp(c1, c2, 16) != 0)
            return (void *)2;
        CK_ATTRIBUTE q = {CKA_LABEL, label, strlen(label)};
        CK_OBJECT_HANDLE found[4];
        CK_ULONG n = 0;
        if (P->C_FindObjectsInit(s, &q, 1) != CKR_OK ||
            P->C_FindObjects(s, found, 4, &n) != CKR_OK ||
            P->C_FindObjectsFinal(s) != CKR_OK || n != 1 || found[0] != dek)
            return (void *)3;
        if (P->C_DestroyObject(s, dek) != CKR_OK ||
            P->C_DestroyObject(s, back) != CKR_OK)
            return (void *)4;
        if (i % 50 == 0) {
            /* a durable object now and then, and a short-lived session */
            CK_OBJECT_HANDLE tk = kt_test_aes_key(s, 16, true, false, label);
            CK_SESSION_HANDLE extra;
            if (P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL,
                                 &extra) != CKR_OK ||
                P->C_CloseSession(extra) != CKR_OK ||
                P->C_DestroyObject(s, tk) != CKR_OK)
                return (void *)5;
        }
    }
    return P->C_CloseSession(s) == CKR_OK ? NULL : (void *)6;
}

START_TEST(test_concurrent_sessions)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    CK(P->C_Initialize(&args));
    slot = kt_test_new_token("threads");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    root = kt_test_aes_key(s, 32, true, false, "root");
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        ck_assert_int_eq(pthread_join(th[i], &r), 0);
        ck_assert_msg(r == NULL, "worker %d failed at step %ld", i, (long)r);
    }
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert_uint_eq(ti.ulSessionCount, 1);
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, h, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1); /* the root only */
}
END_TEST

static CK_OBJECT_HANDLE shared_key;

static void *renamer(void *arg)
{
    (void)arg;
    CK_SESSION_HANDLE s;
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                         &s) != CKR_OK)
        return (void *)1;
    for (int i = 0; i < 300; i++) {
        char label[16];
        snprintf(label, sizeof(label), "name-%d", i);
        CK_ATTRIBUTE l = {CKA_LABEL, label, strlen(label)};
        CK_RV rv = P->C_SetAttributeValue(s, shared_key, &l, 1);
        if (rv != CKR_OK) {
            fprintf(stderr, "rename: 0x%lx\n", (unsigned long)rv);
            return (void *)2;
        }
    }
    return NULL;
}

/* Changes made concurrently on the same object are never lost: a rename
 * racing with CKA_EXTRACTABLE=FALSE must not bring the old value back (in
 * this process, and through the store from another one). */
START_TEST(test_concurrent_set_attribute_no_lost_update)
{
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("cas");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    shared_key = kt_test_aes_key(s, 32, true, true, "name");
    pid_t pid = fork();
    if (pid == 0) {
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(60);
        CK_SESSION_HANDLE cs = kt_test_user_session(kt_test_token_slot("cas"));
        CK_OBJECT_CLASS kc = CKO_SECRET_KEY;
        CK_ATTRIBUTE q = {CKA_CLASS, &kc, sizeof(kc)};
        CK_ULONG n = 0;
        if (P->C_FindObjectsInit(cs, &q, 1) != CKR_OK ||
            P->C_FindObjects(cs, &shared_key, 1, &n) != CKR_OK || n != 1)
            _exit(61);
        CK_RV rv = P->C_FindObjectsFinal(cs);
        slot = kt_test_token_slot("cas");
        _exit(rv == CKR_OK && renamer(NULL) == NULL ? 0 : 62);
    }
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, renamer, NULL), 0);
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE ext = {CKA_EXTRACTABLE, &no, 1};
    CK_ATTRIBUTE sens = {CKA_SENSITIVE, &yes, 1};
    for (int i = 0; i < 20; i++) {
        CK(P->C_SetAttributeValue(s, shared_key, &ext, 1));
        CK(P->C_SetAttributeValue(s, shared_key, &sens, 1));
    }
    void *r;
    ck_assert_int_eq(pthread_join(th, &r), 0);
    ck_assert_ptr_null(r);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x",
                  st);
    CK_BBOOL e = 1, se = 0;
    CK_ATTRIBUTE g[] = {{CKA_EXTRACTABLE, &e, 1}, {CKA_SENSITIVE, &se, 1}};
    CK(P->C_GetAttributeValue(s, shared_key, g, 2));
    ck_assert(!e && se);
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("cas"));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE q = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE h;
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, &q, 1));
    CK(P->C_FindObjects(s, &h, 1, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1);
    e = 1, se = 0;
    CK(P->C_GetAttributeValue(s, h, g, 2));
    ck_assert(!e && se);
}
END_TEST

static CK_RV guess_rv[16];

static void *guesser(void *arg)
{
    long i = (long)arg;
    CK_SESSION_HANDLE s;
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return (void *)1;
    guess_rv[i] = P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9);
    return NULL;
}

/* Parallel wrong guesses (threads here, processes alike: the try is charged
 * in the store before the PIN is checked) never get more than
 * pin_max_retries (3 in the harness config) attempts. */
START_TEST(test_parallel_guesses_respect_lockout)
{
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("guesses");
    CK_SESSION_HANDLE keep;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &keep));
    pthread_t th[16];
    for (long i = 0; i < 16; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, guesser, (void *)i), 0);
    for (int i = 0; i < 16; i++) {
        void *r;
        ck_assert_int_eq(pthread_join(th[i], &r), 0);
        ck_assert_ptr_null(r);
    }
    int incorrect = 0, locked = 0;
    for (int i = 0; i < 16; i++) {
        if (guess_rv[i] == CKR_PIN_INCORRECT)
            incorrect++;
        else if (guess_rv[i] == CKR_PIN_LOCKED)
            locked++;
    }
    ck_assert_int_eq(incorrect, 3);
    ck_assert_int_eq(locked, 13);
    RV(CKR_PIN_LOCKED,
       P->C_Login(keep, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
}
END_TEST

static Suite *threads_suite(void)
{
    Suite *su = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, kt_test_setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_concurrent_sessions);
    tcase_add_test(tc, test_parallel_guesses_respect_lockout);
    tcase_add_test(tc, test_concurrent_set_attribute_no_lost_update);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(threads_suite)
