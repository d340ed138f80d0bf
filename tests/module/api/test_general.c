/* C_Initialize/C_Finalize, info, slots, tokens, mechanisms, sessions,
 * login states, PINs and the retry counter. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static CK_RV dummy_create(CK_VOID_PTR_PTR m)
{
    (void)m;
    return CKR_OK;
}
static CK_RV dummy_mutex(CK_VOID_PTR m)
{
    (void)m;
    return CKR_OK;
}

START_TEST(test_initialize_args)
{
    CK_C_INITIALIZE_ARGS a;
    memset(&a, 0, sizeof(a));
    a.pReserved = &a;
    RV(CKR_ARGUMENTS_BAD, P->C_Initialize(&a));
    memset(&a, 0, sizeof(a));
    a.CreateMutex = dummy_create; /* some but not all */
    RV(CKR_ARGUMENTS_BAD, P->C_Initialize(&a));
    a.DestroyMutex = dummy_mutex;
    a.LockMutex = dummy_mutex;
    a.UnlockMutex = dummy_mutex;
    RV(CKR_CANT_LOCK, P->C_Initialize(&a));
    a.flags = CKF_OS_LOCKING_OK;
    CK(P->C_Initialize(&a));
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED, P->C_Initialize(NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_Finalize(&a));
    CK(P->C_Finalize(NULL));
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, P->C_Finalize(NULL));
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    CK(P->C_Initialize(&a));
}
END_TEST

START_TEST(test_not_initialized)
{
    CK_INFO info;
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s;
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, P->C_GetInfo(&info));
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, P->C_GetSlotList(CK_TRUE, NULL, &n));
    RV(CKR_CRYPTOKI_NOT_INITIALIZED,
       P->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s));
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, P->C_CloseSession(1));
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, P->C_GenerateRandom(1, NULL, 0));
}
END_TEST

START_TEST(test_info_and_function_list)
{
    CK_INFO info;
    CK(P->C_Initialize(NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetInfo(NULL));
    CK(P->C_GetInfo(&info));
    ck_assert_int_eq(info.cryptokiVersion.major, 2);
    ck_assert_int_eq(info.cryptokiVersion.minor, 40);
    ck_assert_int_eq(memcmp(info.manufacturerID, "keytier ", 8), 0);
    RV(CKR_ARGUMENTS_BAD, P->C_GetFunctionList(NULL));
    /* every entry point is present */
    void **fns = (void **)&P->C_Initialize;
    size_t n = (sizeof(*P) - sizeof(CK_VERSION)) / sizeof(void *);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_nonnull(fns[i]);
}
END_TEST

START_TEST(test_slots_and_free_token)
{
    CK(P->C_Initialize(NULL));
    CK_ULONG n = 0;
    RV(CKR_ARGUMENTS_BAD, P->C_GetSlotList(CK_FALSE, NULL, NULL));
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 1);
    CK_SLOT_ID slots[4];
    CK_ULONG small = 0;
    RV(CKR_BUFFER_TOO_SMALL, P->C_GetSlotList(CK_TRUE, slots, &small));
    ck_assert_uint_eq(small, 1);
    n = 4;
    CK(P->C_GetSlotList(CK_FALSE, slots, &n));
    CK_SLOT_INFO si;
    CK(P->C_GetSlotInfo(slots[0], &si));
    ck_assert(si.flags & CKF_TOKEN_PRESENT);
    RV(CKR_SLOT_ID_INVALID, P->C_GetSlotInfo(0x7777777, &si));
    RV(CKR_ARGUMENTS_BAD, P->C_GetSlotInfo(slots[0], NULL));
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slots[0], &ti));
    ck_assert(!(ti.flags & CKF_TOKEN_INITIALIZED));
    RV(CKR_SLOT_ID_INVALID, P->C_GetTokenInfo(0x7777777, &ti));
    CK_SESSION_HANDLE s;
    RV(CKR_TOKEN_NOT_RECOGNIZED,
       P->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s));
    /* C_InitToken makes a token and a new free slot appears */
    CK_SLOT_ID slot = kt_test_new_token("first");
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_TOKEN_INITIALIZED);
    ck_assert(ti.flags & CKF_USER_PIN_INITIALIZED);
    ck_assert(ti.flags & CKF_LOGIN_REQUIRED);
    ck_assert(ti.flags & CKF_RNG);
    ck_assert_int_eq(memcmp(ti.label, "first   ", 8), 0);
    ck_assert_uint_eq(ti.ulSessionCount, 0);
    n = 4;
    CK(P->C_GetSlotList(CK_TRUE, slots, &n));
    ck_assert_uint_eq(n, 2);
    (void)kt_test_free_slot();
}
END_TEST

START_TEST(test_init_token_rules)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID free_slot = kt_test_free_slot();
    CK_UTF8CHAR label[32];
    memset(label, ' ', 32);
    RV(CKR_ARGUMENTS_BAD, P->C_InitToken(free_slot, NULL, 4, label));
    RV(CKR_ARGUMENTS_BAD,
       P->C_InitToken(free_slot, (CK_UTF8CHAR_PTR) "1234", 4, NULL));
    RV(CKR_PIN_LEN_RANGE,
       P->C_InitToken(free_slot, (CK_UTF8CHAR_PTR) "12", 2, label));
    RV(CKR_SLOT_ID_INVALID,
       P->C_InitToken(0x7777777, (CK_UTF8CHAR_PTR) "1234", 4, label));
    CK_SLOT_ID slot = kt_test_new_token("rules");
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s));
    RV(CKR_SESSION_EXISTS,
       P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label));
    CK(P->C_CloseSession(s));
    RV(CKR_PIN_INCORRECT,
       P->C_InitToken(slot, (CK_UTF8CHAR_PTR) "wrong-pin", 9, label));
    /* re-initialisation with the SO PIN wipes objects and the user PIN */
    s = kt_test_user_session(slot);
    (void)kt_test_aes_key(s, 16, true, false, "gone");
    CK(P->C_CloseSession(s));
    memcpy(label, "again", 5);
    CK(P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label));
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(!(ti.flags & CKF_USER_PIN_INITIALIZED));
    ck_assert_int_eq(memcmp(ti.label, "again ", 6), 0);
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    RV(CKR_USER_PIN_NOT_INITIALIZED,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 9;
    CK(P->C_FindObjectsInit(s, &t, 1));
    CK(P->C_FindObjects(s, h, 4, &n));
    ck_assert_uint_eq(n, 0);
    CK(P->C_FindObjectsFinal(s));
}
END_TEST

START_TEST(test_mechanism_list_and_info)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("mechs");
    CK_ULONG n = 0;
    RV(CKR_ARGUMENTS_BAD, P->C_GetMechanismList(slot, NULL, NULL));
    RV(CKR_SLOT_ID_INVALID, P->C_GetMechanismList(0x7777777, NULL, &n));
    CK(P->C_GetMechanismList(slot, NULL, &n));
    ck_assert_uint_ge(n, 15);
    CK_MECHANISM_TYPE *list = calloc(n, sizeof(*list));
    CK_ULONG small = 1;
    RV(CKR_BUFFER_TOO_SMALL, P->C_GetMechanismList(slot, list, &small));
    ck_assert_uint_eq(small, n);
    CK(P->C_GetMechanismList(slot, list, &n));
    const CK_MECHANISM_TYPE want[] = {
        CKM_AES_KEY_GEN,      CKM_GENERIC_SECRET_KEY_GEN,
        CKM_AES_KEY_WRAP,     CKM_AES_KEY_WRAP_PAD,
        CKM_AES_KEY_WRAP_KWP, CKM_AES_GCM,
        CKM_AES_CBC_PAD,      CKM_AES_CBC,
        CKM_AES_ECB,          CKM_SHA256,
        CKM_SHA384,           CKM_SHA512,
        CKM_SHA256_HMAC,      CKM_SHA384_HMAC,
        CKM_SHA512_HMAC};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        bool found = false;
        for (CK_ULONG j = 0; j < n; j++)
            found |= list[j] == want[i];
        ck_assert_msg(found, "mechanism 0x%lx missing", want[i]);
    }
    free(list);
    CK_MECHANISM_INFO mi;
    CK(P->C_GetMechanismInfo(slot, CKM_AES_KEY_WRAP_PAD, &mi));
    ck_assert_uint_eq(mi.ulMinKeySize, 16);
    ck_assert_uint_eq(mi.ulMaxKeySize, 32);
    ck_assert(mi.flags & CKF_WRAP && mi.flags & CKF_UNWRAP &&
              mi.flags & CKF_ENCRYPT && mi.flags & CKF_DECRYPT);
    CK(P->C_GetMechanismInfo(slot, CKM_AES_KEY_GEN, &mi));
    ck_assert(mi.flags & CKF_GENERATE);
    CK(P->C_GetMechanismInfo(slot, CKM_SHA256_HMAC, &mi));
    ck_assert(mi.flags & CKF_SIGN && mi.flags & CKF_VERIFY);
    CK(P->C_GetMechanismInfo(slot, CKM_SHA512, &mi));
    ck_assert(mi.flags & CKF_DIGEST);
    RV(CKR_MECHANISM_INVALID, P->C_GetMechanismInfo(slot, CKM_MD5, &mi));
    RV(CKR_ARGUMENTS_BAD, P->C_GetMechanismInfo(slot, CKM_SHA256, NULL));
    RV(CKR_SLOT_ID_INVALID, P->C_GetMechanismInfo(0x7777777, CKM_SHA256, &mi));
}
END_TEST

static CK_STATE state_of(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO si;
    CK(P->C_GetSessionInfo(s, &si));
    return si.state;
}

START_TEST(test_sessions_and_login_states)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("states");
    CK_SESSION_HANDLE ro, rw, rw2;
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED,
       P->C_OpenSession(slot, 0, NULL, NULL, &ro));
    RV(CKR_ARGUMENTS_BAD,
       P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL));
    RV(CKR_SLOT_ID_INVALID,
       P->C_OpenSession(0x7777777, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &rw));
    ck_assert_uint_ne(ro, rw);
    ck_assert_uint_eq(state_of(ro), CKS_RO_PUBLIC_SESSION);
    ck_assert_uint_eq(state_of(rw), CKS_RW_PUBLIC_SESSION);
    CK_SESSION_INFO si;
    CK(P->C_GetSessionInfo(rw, &si));
    ck_assert_uint_eq(si.slotID, slot);
    ck_assert(si.flags & CKF_RW_SESSION);
    RV(CKR_ARGUMENTS_BAD, P->C_GetSessionInfo(rw, NULL));
    RV(CKR_SESSION_HANDLE_INVALID, P->C_GetSessionInfo(0x7777777, &si));
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert_uint_eq(ti.ulSessionCount, 2);
    ck_assert_uint_eq(ti.ulRwSessionCount, 1);
    /* SO login with a read-only session open */
    RV(CKR_SESSION_READ_ONLY_EXISTS,
       P->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    RV(CKR_USER_TYPE_INVALID,
       P->C_Login(rw, 7, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    RV(CKR_ARGUMENTS_BAD, P->C_Login(rw, CKU_USER, NULL, 4));
    RV(CKR_USER_NOT_LOGGED_IN, P->C_Logout(rw));
    CK(P->C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    ck_assert_uint_eq(state_of(ro), CKS_RO_USER_FUNCTIONS);
    ck_assert_uint_eq(state_of(rw), CKS_RW_USER_FUNCTIONS);
    RV(CKR_USER_ALREADY_LOGGED_IN,
       P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
       P->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    /* a session opened later shares the login */
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &rw2));
    ck_assert_uint_eq(state_of(rw2), CKS_RW_USER_FUNCTIONS);
    CK(P->C_Logout(ro));
    ck_assert_uint_eq(state_of(rw2), CKS_RW_PUBLIC_SESSION);
    CK(P->C_CloseSession(ro));
    RV(CKR_SESSION_HANDLE_INVALID, P->C_CloseSession(ro));
    CK(P->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    ck_assert_uint_eq(state_of(rw2), CKS_RW_SO_FUNCTIONS);
    RV(CKR_SESSION_READ_WRITE_SO_EXISTS,
       P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
       P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    /* closing every session logs the application out */
    CK(P->C_CloseAllSessions(slot));
    RV(CKR_SESSION_HANDLE_INVALID, P->C_GetSessionInfo(rw, &si));
    RV(CKR_SLOT_ID_INVALID, P->C_CloseAllSessions(0x7777777));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    ck_assert_uint_eq(state_of(ro), CKS_RO_PUBLIC_SESSION);
}
END_TEST

START_TEST(test_init_pin_and_set_pin)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("pins");
    CK_SESSION_HANDLE ro, rw;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    RV(CKR_SESSION_READ_ONLY, P->C_InitPIN(ro, (CK_UTF8CHAR_PTR) "12345", 5));
    RV(CKR_SESSION_READ_ONLY,
       P->C_SetPIN(ro, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN),
                   (CK_UTF8CHAR_PTR) "new-pin", 7));
    CK(P->C_CloseSession(ro));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &rw));
    RV(CKR_USER_NOT_LOGGED_IN, P->C_InitPIN(rw, (CK_UTF8CHAR_PTR) "12345", 5));
    /* the user's PIN from a public session */
    RV(CKR_PIN_INCORRECT, P->C_SetPIN(rw, (CK_UTF8CHAR_PTR) "bad-pin", 7,
                                      (CK_UTF8CHAR_PTR) "new-pin", 7));
    RV(CKR_PIN_LEN_RANGE,
       P->C_SetPIN(rw, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN),
                   (CK_UTF8CHAR_PTR) "ab", 2));
    RV(CKR_ARGUMENTS_BAD, P->C_SetPIN(rw, NULL, 3, NULL, 0));
    /* a key made under the old PIN stays usable: it is resealed under the
     * new master key the PIN change makes */
    CK(P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK_OBJECT_HANDLE k = kt_test_aes_key(rw, 32, true, false, "survivor");
    CK(P->C_SetPIN(rw, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN),
                   (CK_UTF8CHAR_PTR) "new-pin", 7));
    CK(P->C_Logout(rw));
    RV(CKR_PIN_INCORRECT,
       P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "new-pin", 7));
    CK_ATTRIBUTE q = {CKA_LABEL, "survivor", 8};
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(rw, &q, 1));
    CK(P->C_FindObjects(rw, &k, 1, &n));
    CK(P->C_FindObjectsFinal(rw));
    ck_assert_uint_eq(n, 1);
    unsigned char iv[16] = {0}, in[16] = {1}, out[32];
    CK_ULONG ol = sizeof(out);
    CK_MECHANISM m = {CKM_AES_CBC, iv, sizeof(iv)};
    CK(P->C_EncryptInit(rw, &m, k));
    CK(P->C_Encrypt(rw, in, 16, out, &ol));
    CK(P->C_Logout(rw));
    /* SO changes its own PIN and (re)sets the user's */
    CK(P->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    RV(CKR_PIN_LEN_RANGE, P->C_InitPIN(rw, (CK_UTF8CHAR_PTR) "12", 2));
    CK(P->C_InitPIN(rw, (CK_UTF8CHAR_PTR) "reset-pin", 9));
    CK(P->C_SetPIN(rw, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN),
                   (CK_UTF8CHAR_PTR) "new-so-pin", 10));
    CK(P->C_Logout(rw));
    RV(CKR_PIN_INCORRECT,
       P->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK(P->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "new-so-pin", 10));
    CK(P->C_Logout(rw));
    CK(P->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "reset-pin", 9));
}
END_TEST

START_TEST(test_pin_retry_counter_and_lockout)
{
    /* harness config: pin_max_retries = 3 */
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("lockout");
    CK_SESSION_HANDLE s;
    CK_TOKEN_INFO ti;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "nope", 4));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_USER_PIN_COUNT_LOW);
    ck_assert(!(ti.flags & CKF_USER_PIN_FINAL_TRY));
    /* a success resets the counter */
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(!(ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
                            CKF_USER_PIN_LOCKED)));
    CK(P->C_Logout(s));
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "nope", 4));
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "nope", 4));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_USER_PIN_FINAL_TRY);
    ck_assert(ti.flags & CKF_USER_PIN_COUNT_LOW);
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "nope", 4));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_USER_PIN_LOCKED);
    /* locked: even the right PIN is refused, and the lock is persisted */
    RV(CKR_PIN_LOCKED,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("lockout");
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_USER_PIN_LOCKED);
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    RV(CKR_PIN_LOCKED,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    /* the SO unlocks by setting a new user PIN; SO counters too */
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) "nope", 4));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_SO_PIN_COUNT_LOW);
    CK(P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK(P->C_InitPIN(s, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Logout(s));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(!(ti.flags & (CKF_USER_PIN_LOCKED | CKF_SO_PIN_COUNT_LOW)));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
}
END_TEST

START_TEST(test_config_errors)
{
    /* Config errors go to stderr: the log file named in a broken config
     * cannot be trusted. */
    char err_path[300];
    snprintf(err_path, sizeof(err_path), "%s/stderr.txt", kt_test_dir);
    FILE *err = freopen(err_path, "w", stderr);
    ck_assert_ptr_nonnull(err);
    kt_test_write_config("bogus_key = 1\n");
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    fflush(stderr);
    snprintf(kt_test_log, sizeof(kt_test_log), "%s", err_path);
    ck_assert(kt_test_log_contains("keytier.conf:6: unknown key 'bogus_key'"));
    kt_test_write_config("pin_kdf_cost = 99\n");
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    kt_test_write_config("slots = many\n");
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    kt_test_write_config("log_level = loud\n");
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    kt_test_write_config("token_dir relative\n");
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    setenv("KEYTIER_CONF", "/nonexistent/keytier.conf", 1);
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    fflush(stderr);
    ck_assert(kt_test_log_contains("keytier.conf:6: pin_kdf_cost: need"));
    ck_assert(kt_test_log_contains("/nonexistent/keytier.conf: cannot open"));
    /* A key given twice is refused, whichever key it is. */
    kt_test_write_config("slots = 2\nslots = 3\n");
    RV(CKR_GENERAL_ERROR, P->C_Initialize(NULL));
    fflush(stderr);
    ck_assert(kt_test_log_contains(
        "keytier.conf:7: slots: set again (first on line 6)"));
    snprintf(kt_test_log, sizeof(kt_test_log), "%s/module.log", kt_test_dir);
    kt_test_write_config("slots = 2\n");
    CK(P->C_Initialize(NULL));
}
END_TEST

/* Without KEYTIER_CONF: tokens under $XDG_DATA_HOME/keytier, made 0700. */
START_TEST(test_default_config_location)
{
    char xdg[300];
    snprintf(xdg, sizeof(xdg), "%s/xdg", kt_test_dir);
    unsetenv("KEYTIER_CONF");
    setenv("XDG_DATA_HOME", xdg, 1);
    CK(P->C_Initialize(NULL));
    (void)kt_test_new_token("default");
    CK(P->C_Finalize(NULL));
    ck_assert_int_eq(
        kt_test_sh("test \"$(stat -c %%a '%s/keytier')\" = 700", xdg), 0);
    ck_assert_int_eq(kt_test_sh("ls '%s/keytier/'*.db >/dev/null", xdg), 0);
    CK(P->C_Initialize(NULL));
    (void)kt_test_token_slot("default");
}
END_TEST

/* A unix datagram socket standing in for /dev/log. */
static int syslog_server(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    unlink(path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_usec = 300000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Takes every record of a socket, one a line, into all, on a thread of
 * its own: a logger that does not read makes the module's sends wait (a
 * datagram queue holds a few records). */
struct syslog_drain {
    int fd;
    atomic_bool stop;
    pthread_t thread;
    size_t used;
    char all[1 << 16];
};

static void *syslog_drain_run(void *arg)
{
    struct syslog_drain *d = arg;
    char rec[2048];
    for (;;) {
        ssize_t n = recv(d->fd, rec, sizeof(rec) - 1, 0);
        if (n <= 0) {
            if (atomic_load(&d->stop))
                return NULL;
            continue;
        }
        rec[n] = '\0';
        size_t cap = sizeof(d->all) - d->used;
        int w = snprintf(d->all + d->used, cap, "%s\n", rec);
        if (w > 0 && (size_t)w < cap)
            d->used += (size_t)w;
    }
}

static void syslog_drain_start(struct syslog_drain *d, int fd)
{
    d->fd = fd;
    d->used = 0;
    d->all[0] = '\0';
    atomic_store(&d->stop, false);
    ck_assert_int_eq(pthread_create(&d->thread, NULL, syslog_drain_run, d), 0);
}

/* Stops d once the socket has been quiet for 0.3 s; d->all then holds
 * every record. */
static void syslog_drain_stop(struct syslog_drain *d)
{
    atomic_store(&d->stop, true);
    ck_assert_int_eq(pthread_join(d->thread, NULL), 0);
}

#define ck_assert_has(hay, needle)                                             \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not in '%s'",         \
                  (needle), (hay))

/* log_target = syslog: the module's records go to the logger's socket as
 * "<PRI>keytier-pkcs11[PID]: LEVEL: TEXT" (facility daemon), a logger that
 * restarted gets the next record, and no record holds a PIN, right or
 * wrong, even at level debug. A logger that cannot be reached leaves the
 * records on stderr, saying so: the module still starts. */
START_TEST(test_log_syslog)
{
    if (kt_test_is_softhsm())
        return;
    char path[300], extra[700], want[256];
    static struct syslog_drain d;
    snprintf(path, sizeof(path), "%s/log.sock", kt_test_dir);
    snprintf(extra, sizeof(extra),
             "log_target = syslog\nlog_syslog_socket = %s\nlog_level = "
             "debug\n",
             path);
    kt_test_write_config(extra);
    int srv = syslog_server(path);
    syslog_drain_start(&d, srv);
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("syslog");
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s));
    RV(CKR_PIN_INCORRECT,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin-7", 11));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    syslog_drain_stop(&d);
    long pid = (long)getpid();
    snprintf(want, sizeof(want),
             "<31>keytier-pkcs11[%ld]: debug: C_Login -> "
             "CKR_PIN_INCORRECT\n",
             pid);
    ck_assert_has(d.all, want);
    snprintf(want, sizeof(want), "<28>keytier-pkcs11[%ld]: warning: token ",
             pid);
    ck_assert_has(d.all, want);
    ck_assert_has(d.all, "PIN incorrect (1 of 3 tries)");
    ck_assert_ptr_null(strstr(d.all, "wrong-pin-7"));
    ck_assert_ptr_null(strstr(d.all, USER_PIN));
    ck_assert_ptr_null(strstr(d.all, SO_PIN));
    /* nothing went to the file a log_file would have named */
    ck_assert_int_ne(access(kt_test_log, F_OK), 0);
    /* the logger restarts: its socket is made anew */
    close(srv);
    srv = syslog_server(path);
    syslog_drain_start(&d, srv);
    CK_INFO info;
    CK(P->C_GetInfo(&info));
    syslog_drain_stop(&d);
    snprintf(want, sizeof(want),
             "<31>keytier-pkcs11[%ld]: debug: C_GetInfo -> CKR_OK\n", pid);
    ck_assert_str_eq(d.all, want);
    CK(P->C_Finalize(NULL));
    /* no logger: the module starts, stderr says so and takes the records */
    close(srv);
    unlink(path);
    char err_path[300];
    snprintf(err_path, sizeof(err_path), "%s/stderr.txt", kt_test_dir);
    ck_assert_ptr_nonnull(freopen(err_path, "w", stderr));
    CK(P->C_Initialize(NULL));
    CK(P->C_GetInfo(&info));
    fflush(stderr);
    snprintf(kt_test_log, sizeof(kt_test_log), "%s", err_path);
    ck_assert(kt_test_log_contains("log_target = syslog: cannot reach"));
    ck_assert(kt_test_log_contains("debug: C_GetInfo -> CKR_OK"));
}
END_TEST

START_TEST(test_slots_limit)
{
    kt_test_write_config("slots = 2\n");
    CK(P->C_Initialize(NULL));
    (void)kt_test_new_token("one");
    CK_ULONG n = 0;
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 2);
    (void)kt_test_new_token("two");
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 2); /* no third slot */
}
END_TEST

/* A child after fork() initialises the module itself and uses the token. */
START_TEST(test_fork_child_uses_token)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("forked");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    (void)kt_test_aes_key(s, 32, true, false, "parent-key");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        CK_SESSION_INFO si;
        int code = 0;
        if (P->C_GetSessionInfo(s, &si) != CKR_CRYPTOKI_NOT_INITIALIZED)
            code = 10;
        else if (P->C_Initialize(NULL) != CKR_OK)
            code = 11;
        else {
            CK_SLOT_ID sl = kt_test_token_slot("forked");
            CK_SESSION_HANDLE cs;
            CK_OBJECT_HANDLE h[4];
            CK_ULONG n = 0;
            CK_ATTRIBUTE t = {CKA_LABEL, "parent-key", 10};
            if (P->C_OpenSession(sl, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                 NULL, &cs) != CKR_OK ||
                P->C_Login(cs, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN,
                           strlen(USER_PIN)) != CKR_OK ||
                P->C_FindObjectsInit(cs, &t, 1) != CKR_OK ||
                P->C_FindObjects(cs, h, 4, &n) != CKR_OK || n != 1)
                code = 12;
            else {
                unsigned char iv[16] = {0}, in[16] = {0}, out[16];
                CK_ULONG ol = sizeof(out);
                CK_MECHANISM m = {CKM_AES_CBC, iv, 16};
                if (P->C_EncryptInit(cs, &m, h[0]) != CKR_OK ||
                    P->C_Encrypt(cs, in, 16, out, &ol) != CKR_OK)
                    code = 13;
                (void)kt_test_aes_key(cs, 16, true, false, "child-key");
            }
            P->C_Finalize(NULL);
        }
        _exit(code);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    /* the parent still works and sees the child's key */
    CK_ATTRIBUTE t = {CKA_LABEL, "child-key", 9};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, &t, 1));
    CK(P->C_FindObjects(s, h, 4, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(test_random)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("random");
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s));
    unsigned char a[32] = {0}, b[32] = {0}, zero[32] = {0};
    CK(P->C_GenerateRandom(s, a, sizeof(a)));
    CK(P->C_GenerateRandom(s, b, sizeof(b)));
    ck_assert(memcmp(a, b, 32) != 0 && memcmp(a, zero, 32) != 0);
    CK(P->C_GenerateRandom(s, NULL, 0));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateRandom(s, NULL, 5));
    RV(CKR_SESSION_HANDLE_INVALID, P->C_GenerateRandom(0x7777777, a, 4));
    CK(P->C_SeedRandom(s, a, sizeof(a)));
    RV(CKR_ARGUMENTS_BAD, P->C_SeedRandom(s, NULL, 5));
}
END_TEST

START_TEST(test_unsupported_entry_points)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("unsupported");
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s));
    CK_ULONG len = 0;
    RV(CKR_FUNCTION_NOT_SUPPORTED, P->C_GetOperationState(s, NULL, &len));
    RV(CKR_FUNCTION_NOT_SUPPORTED, P->C_SetOperationState(s, NULL, 0, 0, 0));
    RV(CKR_FUNCTION_NOT_PARALLEL, P->C_GetFunctionStatus(s));
    RV(CKR_FUNCTION_NOT_PARALLEL, P->C_CancelFunction(s));
    RV(CKR_SESSION_HANDLE_INVALID, P->C_CancelFunction(0x7777777));
    CK_SLOT_ID sl;
    RV(CKR_FUNCTION_NOT_SUPPORTED,
       P->C_WaitForSlotEvent(CKF_DONT_BLOCK, &sl, NULL));
    RV(CKR_FUNCTION_NOT_SUPPORTED,
       P->C_DigestEncryptUpdate(s, NULL, 0, NULL, &len));
}
END_TEST

/* NULL where a pointer is required: CKR_ARGUMENTS_BAD from every function,
 * never a crash. */
START_TEST(test_null_arguments)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("nulls");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, false, false, "k");
    CK_OBJECT_HANDLE h;
    CK_ULONG n = 0, l = 16;
    unsigned char buf[64], iv[16] = {0};
    CK_UTF8CHAR label[32];
    memset(label, ' ', 32);
    CK_ATTRIBUTE t = {CKA_LABEL, "x", 1};
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    CK_MECHANISM cbc = {CKM_AES_CBC, iv, 16};
    CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
    RV(CKR_ARGUMENTS_BAD, P->C_GetInfo(NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetSlotList(CK_TRUE, NULL, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetSlotInfo(slot, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetTokenInfo(slot, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetMechanismList(slot, NULL, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetMechanismInfo(slot, CKM_AES_ECB, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_InitToken(slot, NULL, 4, label));
    RV(CKR_ARGUMENTS_BAD, P->C_InitPIN(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_SetPIN(s, NULL, 4, (CK_UTF8CHAR_PTR) "1234", 4));
    RV(CKR_ARGUMENTS_BAD, P->C_SetPIN(s, (CK_UTF8CHAR_PTR) "1234", 4, NULL, 4));
    RV(CKR_ARGUMENTS_BAD,
       P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetSessionInfo(s, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetOperationState(s, NULL, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_Login(s, CKU_USER, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_CreateObject(s, NULL, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_CreateObject(s, &t, 1, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_CopyObject(s, k, NULL, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_CopyObject(s, k, &t, 1, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetObjectSize(s, k, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GetAttributeValue(s, k, NULL, 1));
    RV(CKR_ARGUMENTS_BAD, P->C_SetAttributeValue(s, k, NULL, 1));
    RV(CKR_ARGUMENTS_BAD, P->C_FindObjectsInit(s, NULL, 1));
    CK(P->C_FindObjectsInit(s, &t, 1));
    RV(CKR_ARGUMENTS_BAD, P->C_FindObjects(s, NULL, 1, &n));
    RV(CKR_ARGUMENTS_BAD, P->C_FindObjects(s, &h, 1, NULL));
    CK(P->C_FindObjectsFinal(s));
    RV(CKR_ARGUMENTS_BAD, P->C_EncryptInit(s, NULL, k));
    CK(P->C_EncryptInit(s, &ecb, k));
    RV(CKR_ARGUMENTS_BAD, P->C_Encrypt(s, NULL, 16, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_Encrypt(s, buf, 16, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_EncryptUpdate(s, NULL, 16, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_EncryptUpdate(s, buf, 16, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_EncryptFinal(s, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_DecryptInit(s, NULL, k));
    CK(P->C_DecryptInit(s, &cbc, k));
    RV(CKR_ARGUMENTS_BAD, P->C_Decrypt(s, NULL, 16, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_Decrypt(s, buf, 16, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_DecryptUpdate(s, NULL, 16, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_DecryptFinal(s, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_DigestInit(s, NULL));
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    CK(P->C_DigestInit(s, &sha));
    RV(CKR_ARGUMENTS_BAD, P->C_Digest(s, NULL, 4, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_Digest(s, buf, 4, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_DigestUpdate(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_DigestFinal(s, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_SignInit(s, NULL, k));
    RV(CKR_ARGUMENTS_BAD, P->C_Sign(s, NULL, 4, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_Sign(s, buf, 4, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_SignUpdate(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_SignFinal(s, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_VerifyInit(s, NULL, k));
    RV(CKR_ARGUMENTS_BAD, P->C_Verify(s, NULL, 4, buf, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_Verify(s, buf, 4, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_VerifyUpdate(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_VerifyFinal(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_SignRecoverInit(s, NULL, k));
    RV(CKR_ARGUMENTS_BAD, P->C_VerifyRecover(s, buf, 4, buf, NULL));
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateKey(s, NULL, &t, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateKey(s, &gen, NULL, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateKey(s, &gen, &t, 1, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateKeyPair(s, NULL, &t, 1, &t, 1, &h, &h));
    RV(CKR_ARGUMENTS_BAD,
       P->C_GenerateKeyPair(s, &gen, &t, 1, &t, 1, NULL, &h));
    CK_MECHANISM wp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    RV(CKR_ARGUMENTS_BAD, P->C_WrapKey(s, NULL, k, k, buf, &l));
    RV(CKR_ARGUMENTS_BAD, P->C_WrapKey(s, &wp, k, k, buf, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_UnwrapKey(s, NULL, k, buf, 24, &t, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_UnwrapKey(s, &wp, k, NULL, 24, &t, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_UnwrapKey(s, &wp, k, buf, 24, NULL, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_UnwrapKey(s, &wp, k, buf, 24, &t, 1, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_DeriveKey(s, NULL, k, &t, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_DeriveKey(s, &hm, k, &t, 1, NULL));
    RV(CKR_ARGUMENTS_BAD, P->C_SeedRandom(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateRandom(s, NULL, 4));
    RV(CKR_ARGUMENTS_BAD, P->C_WaitForSlotEvent(0, NULL, NULL));
    /* out-of-range lengths of templates */
    RV(CKR_ARGUMENTS_BAD, P->C_CreateObject(s, &t, (CK_ULONG)-1, &h));
}
END_TEST

/* A label given as a NUL-padded C string is stored blank padded. */
START_TEST(test_init_token_nul_padded_label)
{
    CK(P->C_Initialize(NULL));
    CK_UTF8CHAR label[32] = "c-string";
    CK_SLOT_ID slot = kt_test_free_slot();
    CK(P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label));
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("c-string");
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_TOKEN_INITIALIZED);
}
END_TEST

START_TEST(test_so_pin_lockout)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("so-lock");
    CK_SESSION_HANDLE s;
    CK_TOKEN_INFO ti;
    CK_UTF8CHAR label[32];
    memset(label, ' ', 32);
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) "nope", 4));
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) "nope", 4));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_SO_PIN_FINAL_TRY);
    RV(CKR_PIN_INCORRECT, P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) "nope", 4));
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_SO_PIN_LOCKED);
    RV(CKR_PIN_LOCKED,
       P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK(P->C_CloseSession(s));
    /* a locked SO cannot re-initialise the token either */
    RV(CKR_PIN_LOCKED,
       P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label));
    /* the user is unaffected */
    s = kt_test_user_session(slot);
    CK_SESSION_INFO si;
    CK(P->C_GetSessionInfo(s, &si));
    ck_assert_uint_eq(si.state, CKS_RW_USER_FUNCTIONS);
}
END_TEST

/* Tokens made and PIN failures counted by another process show up. */
START_TEST(test_other_process_tokens_and_counters)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("counted");
    pid_t pid = fork();
    if (pid == 0) {
        int code = 0;
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(50);
        CK_SESSION_HANDLE cs;
        CK_SLOT_ID sl = kt_test_token_slot("counted");
        if (P->C_OpenSession(sl, CKF_SERIAL_SESSION, NULL, NULL, &cs) !=
                CKR_OK ||
            P->C_Login(cs, CKU_USER, (CK_UTF8CHAR_PTR) "nope", 4) !=
                CKR_PIN_INCORRECT)
            code = 51;
        (void)kt_test_new_token("from-child");
        P->C_Finalize(NULL);
        _exit(code);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert(ti.flags & CKF_USER_PIN_COUNT_LOW);
    CK_ULONG n = 0;
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 3); /* counted, from-child, the free slot */
    CK_SESSION_HANDLE s =
        kt_test_user_session(kt_test_token_slot("from-child"));
    CK_SESSION_INFO si;
    CK(P->C_GetSessionInfo(s, &si));
    ck_assert_uint_eq(si.state, CKS_RW_USER_FUNCTIONS);
}
END_TEST

static Suite *general_suite(void)
{
    Suite *su = suite_create("general");
    TCase *tc = tcase_create("general");
    tcase_add_checked_fixture(tc, kt_test_setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_initialize_args);
    tcase_add_test(tc, test_not_initialized);
    tcase_add_test(tc, test_info_and_function_list);
    tcase_add_test(tc, test_slots_and_free_token);
    tcase_add_test(tc, test_init_token_rules);
    tcase_add_test(tc, test_mechanism_list_and_info);
    tcase_add_test(tc, test_sessions_and_login_states);
    tcase_add_test(tc, test_init_pin_and_set_pin);
    tcase_add_test(tc, test_pin_retry_counter_and_lockout);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_log_syslog);
    tcase_add_test(tc, test_slots_limit);
    tcase_add_test(tc, test_default_config_location);
    tcase_add_test(tc, test_fork_child_uses_token);
    tcase_add_test(tc, test_random);
    tcase_add_test(tc, test_unsupported_entry_points);
    tcase_add_test(tc, test_null_arguments);
    tcase_add_test(tc, test_so_pin_lockout);
    tcase_add_test(tc, test_init_token_nul_padded_label);
    tcase_add_test(tc, test_other_process_tokens_and_counters);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(general_suite)
