/* The module's operations under injected faults (fault.h): token and PIN
 * initialisation, object create, generate, destroy and change, wrap and
 * unwrap with each wrapping mechanism, login and PIN change. One test case
 * per family, chosen by CK_RUN_CASE in tests/fault/meson.build so that the
 * families run in parallel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* KT_FAULT_STRIDE=k fails every kth allocation (1: every one, which
 * takes about an hour under ASan); unset, fs_run chooses (fault.h). */
static unsigned long stride(void)
{
    const char *s = getenv("KT_FAULT_STRIDE");
    return s != NULL && atol(s) > 0 ? (unsigned long)atol(s) : 0;
}

static void setup_none(struct fs_ctx *ctx)
{
    (void)ctx;
}

static void setup_token(struct fs_ctx *ctx)
{
    ctx->slot = kt_test_new_token(FS_LABEL);
}

static void pad(CK_UTF8CHAR out[32], const char *s)
{
    memset(out, ' ', 32);
    memcpy(out, s, strlen(s));
}

/* --- token: C_InitToken, C_InitPIN --- */

static void prep_free_slot(struct fs_ctx *ctx)
{
    ctx->slot = kt_test_free_slot();
}

static CK_RV op_init_token(struct fs_ctx *ctx)
{
    CK_UTF8CHAR label[32];
    pad(label, FS_LABEL);
    return P->C_InitToken(ctx->slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN),
                          label);
}

static void setup_token_no_pin(struct fs_ctx *ctx)
{
    prep_free_slot(ctx);
    CK(op_init_token(ctx));
}

static void prep_so(struct fs_ctx *ctx)
{
    ctx->session = fs_session(CKU_SO);
}

static CK_RV op_init_pin(struct fs_ctx *ctx)
{
    return P->C_InitPIN(ctx->session, (CK_UTF8CHAR_PTR)USER_PIN,
                        strlen(USER_PIN));
}

/* --- objects --- */

static CK_OBJECT_HANDLE aes_key(CK_SESSION_HANDLE s, const char *label,
                                CK_ATTRIBUTE_TYPE role1,
                                CK_ATTRIBUTE_TYPE role2)
{
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &yes, 1},
        {CKA_EXTRACTABLE, &yes, 1},
        {CKA_SENSITIVE, &no, 1},
        {role1, &yes, 1},
        {role2, &yes, 1},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    CK(P->C_GenerateKey(s, &m, t, N(t), &k));
    return k;
}

/* A token with one AES key ("k0") and one data object ("d0"). */
static void setup_objects(struct fs_ctx *ctx)
{
    setup_token(ctx);
    CK_SESSION_HANDLE s = fs_session(CKU_USER);
    (void)aes_key(s, "k0", CKA_ENCRYPT, CKA_DECRYPT);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &yes, 1},
                        {CKA_LABEL, "d0", 2},
                        {CKA_VALUE, "data", 4}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    CK(P->C_CloseSession(s));
}

static void prep_user(struct fs_ctx *ctx)
{
    ctx->session = fs_session(CKU_USER);
    ctx->obj[0] = fs_find(ctx->session, "k0");
    ctx->obj[1] = fs_find(ctx->session, "d0");
}

static CK_RV op_create(struct fs_ctx *ctx)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    unsigned char v[32] = {1, 2, 3, 4};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &yes, 1},           {CKA_SENSITIVE, &no, 1},
        {CKA_EXTRACTABLE, &yes, 1},     {CKA_ENCRYPT, &yes, 1},
        {CKA_VALUE, v, sizeof(v)},      {CKA_LABEL, "created", 7},
    };
    CK_OBJECT_HANDLE h;
    return P->C_CreateObject(ctx->session, t, N(t), &h);
}

static CK_RV op_generate(struct fs_ctx *ctx)
{
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &yes, 1},
        {CKA_SENSITIVE, &no, 1},
        {CKA_EXTRACTABLE, &yes, 1},
        {CKA_ENCRYPT, &yes, 1},
        {CKA_LABEL, "generated", 9},
    };
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    return P->C_GenerateKey(ctx->session, &m, t, N(t), &h);
}

static CK_RV op_destroy(struct fs_ctx *ctx)
{
    return P->C_DestroyObject(ctx->session, ctx->obj[0]);
}

static CK_RV op_set_attribute(struct fs_ctx *ctx)
{
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "d0-renamed", 10},
                        {CKA_VALUE, "other data", 10}};
    return P->C_SetAttributeValue(ctx->session, ctx->obj[1], t, N(t));
}

/* --- wrap and unwrap: KEK "kek", key to wrap "dek", an RSA pair --- */

static CK_BYTE gcm_iv[12];
static CK_GCM_PARAMS gcm = {gcm_iv, sizeof(gcm_iv), 96, NULL, 0, 128};
static CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256,
                                       CKZ_DATA_SPECIFIED, NULL, 0};
static const CK_MECHANISM wrap_mechs[] = {
    {CKM_AES_KEY_WRAP, NULL, 0},
    {CKM_AES_KEY_WRAP_KWP, NULL, 0},
    {CKM_AES_GCM, &gcm, sizeof(gcm)},
    {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)},
};
static size_t wrap_mech; /* the index into wrap_mechs in use */
static unsigned char wrapped[512];
static CK_ULONG wrapped_len;

static void rsa_pair(CK_SESSION_HANDLE s)
{
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {0x01, 0x00, 0x01};
    CK_ATTRIBUTE pub[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                          {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                          {CKA_TOKEN, &yes, 1},
                          {CKA_WRAP, &yes, 1},
                          {CKA_LABEL, "rsa-pub", 7}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1},
                           {CKA_UNWRAP, &yes, 1},
                           {CKA_LABEL, "rsa-priv", 8}};
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE a, b;
    CK(P->C_GenerateKeyPair(s, &m, pub, N(pub), priv, N(priv), &a, &b));
}

static void prep_wrap(struct fs_ctx *ctx)
{
    ctx->session = fs_session(CKU_USER);
    bool rsa = wrap_mechs[wrap_mech].mechanism == CKM_RSA_PKCS_OAEP;
    ctx->obj[0] = fs_find(ctx->session, rsa ? "rsa-pub" : "kek");
    ctx->obj[1] = fs_find(ctx->session, rsa ? "rsa-priv" : "kek");
    ctx->obj[2] = fs_find(ctx->session, "dek");
}

static CK_RV op_wrap(struct fs_ctx *ctx)
{
    memset(gcm_iv, 0, sizeof(gcm_iv));
    wrapped_len = sizeof(wrapped);
    return P->C_WrapKey(ctx->session, (CK_MECHANISM_PTR)&wrap_mechs[wrap_mech],
                        ctx->obj[0], ctx->obj[2], wrapped, &wrapped_len);
}

/* The keys, and the dek wrapped once (the blob and GCM's IV kept for the
 * unwrap scenarios). */
static void setup_wrap(struct fs_ctx *ctx)
{
    setup_token(ctx);
    CK_SESSION_HANDLE s = fs_session(CKU_USER);
    (void)aes_key(s, "kek", CKA_WRAP, CKA_UNWRAP);
    (void)aes_key(s, "dek", CKA_ENCRYPT, CKA_DECRYPT);
    if (wrap_mechs[wrap_mech].mechanism == CKM_RSA_PKCS_OAEP)
        rsa_pair(s);
    CK(P->C_CloseSession(s));
    prep_wrap(ctx);
    CK(op_wrap(ctx));
    CK(P->C_CloseSession(ctx->session));
}

static CK_RV op_unwrap(struct fs_ctx *ctx)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &yes, 1},           {CKA_SENSITIVE, &no, 1},
        {CKA_EXTRACTABLE, &yes, 1},     {CKA_ENCRYPT, &yes, 1},
        {CKA_LABEL, "unwrapped", 9},
    };
    CK_OBJECT_HANDLE h;
    return P->C_UnwrapKey(ctx->session,
                          (CK_MECHANISM_PTR)&wrap_mechs[wrap_mech], ctx->obj[1],
                          wrapped, wrapped_len, t, N(t), &h);
}

/* --- login and PIN change --- */

static void prep_public(struct fs_ctx *ctx)
{
    ctx->session = fs_session(FS_PUBLIC);
}

static CK_RV op_login_user(struct fs_ctx *ctx)
{
    return P->C_Login(ctx->session, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN,
                      strlen(USER_PIN));
}

static CK_RV op_login_so(struct fs_ctx *ctx)
{
    return P->C_Login(ctx->session, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN,
                      strlen(SO_PIN));
}

static CK_RV op_set_pin_user(struct fs_ctx *ctx)
{
    return P->C_SetPIN(ctx->session, (CK_UTF8CHAR_PTR)USER_PIN,
                       strlen(USER_PIN), (CK_UTF8CHAR_PTR)FS_NEW_USER_PIN,
                       strlen(FS_NEW_USER_PIN));
}

static CK_RV op_set_pin_so(struct fs_ctx *ctx)
{
    return P->C_SetPIN(ctx->session, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN),
                       (CK_UTF8CHAR_PTR)FS_NEW_SO_PIN, strlen(FS_NEW_SO_PIN));
}

static const struct fs_scenario token_scenarios[] = {
    {"init-token", setup_none, prep_free_slot, op_init_token},
    {"init-pin", setup_token_no_pin, prep_so, op_init_pin},
};

static const struct fs_scenario object_scenarios[] = {
    {"create-object", setup_objects, prep_user, op_create},
    {"generate-key", setup_objects, prep_user, op_generate},
    {"destroy-object", setup_objects, prep_user, op_destroy},
    {"set-attribute", setup_objects, prep_user, op_set_attribute},
};

static const char *const wrap_names[][2] = {
    {"wrap-aes-kw", "unwrap-aes-kw"},
    {"wrap-aes-kwp", "unwrap-aes-kwp"},
    {"wrap-aes-gcm", "unwrap-aes-gcm"},
    {"wrap-rsa-oaep", "unwrap-rsa-oaep"},
};

static const struct fs_scenario login_scenarios[] = {
    {"login-user", setup_objects, prep_public, op_login_user,
     CKF_USER_PIN_COUNT_LOW, true},
    {"login-so", setup_objects, prep_public, op_login_so, CKF_SO_PIN_COUNT_LOW,
     true},
};

static const struct fs_scenario pin_scenarios[] = {
    {"set-pin-user", setup_objects, prep_user, op_set_pin_user,
     CKF_USER_PIN_COUNT_LOW, true},
    {"set-pin-so", setup_objects, prep_so, op_set_pin_so, CKF_SO_PIN_COUNT_LOW,
     true},
};

START_TEST(test_token)
{
    fs_run(&token_scenarios[_i], stride());
}
END_TEST

START_TEST(test_objects)
{
    fs_run(&object_scenarios[_i], stride());
}
END_TEST

START_TEST(test_wrap)
{
    wrap_mech = (size_t)_i;
    struct fs_scenario sc = {wrap_names[_i][0], setup_wrap, prep_wrap, op_wrap};
    fs_run(&sc, stride());
}
END_TEST

START_TEST(test_unwrap)
{
    wrap_mech = (size_t)_i;
    struct fs_scenario sc = {wrap_names[_i][1], setup_wrap, prep_wrap,
                             op_unwrap, 0};
    fs_run(&sc, stride());
}
END_TEST

START_TEST(test_login)
{
    fs_run(&login_scenarios[_i], stride());
}
END_TEST

START_TEST(test_pin)
{
    fs_run(&pin_scenarios[_i], stride());
}
END_TEST

/* --- a token's objects loaded under faults --- */

/* The objects setup_objects makes, a public data object and a second key:
 * what a user session must find. */
#define LOAD_OBJECTS 4
/* The token's place in the slot list: its label (C_GetTokenInfo) is read
 * once, in setup_load, as reading it loads the token. */
static CK_ULONG load_slot_at;

/* After C_Initialize: the token's slot, found without loading it. */
static CK_SLOT_ID load_slot(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = N(slots);
    CK(P->C_GetSlotList(CK_TRUE, slots, &n));
    ck_assert_uint_lt(load_slot_at, n);
    return slots[load_slot_at];
}

static void setup_load(void)
{
    if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    kt_test_setup();
    struct fs_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    CK(P->C_Initialize(NULL));
    setup_objects(&ctx);
    CK_SESSION_HANDLE s = fs_session(CKU_USER);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_LABEL, "p0", 2},
                        {CKA_VALUE, "public", 6}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    (void)aes_key(s, "k1", CKA_SIGN, CKA_VERIFY);
    CK(P->C_CloseSession(s));
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slots[16], slot = fs_token_slot();
    CK_ULONG n = N(slots);
    CK(P->C_GetSlotList(CK_TRUE, slots, &n));
    for (load_slot_at = 0; load_slot_at < n && slots[load_slot_at] != slot;)
        load_slot_at++;
    CK(P->C_Finalize(NULL));
}

/* Every object the session sees (n), or the first error. */
static CK_RV find_all(CK_SESSION_HANDLE s, CK_ULONG *n)
{
    CK_OBJECT_HANDLE h[FS_MAX_OBJECTS];
    *n = 0;
    CK_RV rv = P->C_FindObjectsInit(s, NULL, 0);
    if (rv != CKR_OK)
        return rv;
    rv = P->C_FindObjects(s, h, N(h), n);
    CK_RV r2 = P->C_FindObjectsFinal(s);
    return rv != CKR_OK ? rv : r2;
}

/* The load: the first session loads the token, the login unseals its
 * keys, the search lists them. Each step's answer in rv[]. */
static void load_op(CK_SLOT_ID slot, CK_SESSION_HANDLE *s, CK_RV rv[3],
                    CK_ULONG *n)
{
    *n = 0;
    rv[0] = P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                             NULL, s);
    rv[1] = rv[0] != CKR_OK
                ? rv[0]
                : P->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN,
                             strlen(USER_PIN));
    rv[2] = rv[1] != CKR_OK ? rv[1] : find_all(*s, n);
}

/* After a failed step, unarmed: the same steps again find every object
 * (the load is retried, nothing stayed hidden). */
static void load_retry(CK_SLOT_ID slot, CK_SESSION_HANDLE s, const CK_RV rv[3],
                       unsigned long at)
{
    CK_ULONG n = 0;
    if (rv[0] != CKR_OK)
        CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                            NULL, &s));
    if (rv[1] != CKR_OK)
        CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN,
                      strlen(USER_PIN)));
    CK(find_all(s, &n));
    ck_assert_msg(n == LOAD_OBJECTS,
                  "alloc #%lu: after a failed load, %lu of %d objects found "
                  "again",
                  at, (unsigned long)n, LOAD_OBJECTS);
}

/* Every allocation of a token's load under C_OpenSession, C_Login and
 * C_FindObjects* fails in turn: each answer is either the whole object set
 * or an error (CKR_HOST_MEMORY, or the store's CKR_DEVICE_ERROR), never a
 * part of it with CKR_OK, nothing is logged as damage, and the next calls
 * find every object. */
START_TEST(test_load)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv[3];
    CK_ULONG n = 0;
    unsigned long errors = 0, step = stride() ? stride() : 1;
    setup_load();
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = load_slot();
    kt_fault_arm(KT_FAULT_ALLOC, 0);
    load_op(slot, &s, rv, &n);
    kt_fault_disarm();
    unsigned long count = kt_fault_count(KT_FAULT_ALLOC);
    CK(rv[2]);
    ck_assert_uint_eq(n, LOAD_OBJECTS);
    CK(P->C_Finalize(NULL));
    for (unsigned long at = 1; at <= count; at += step) {
        CK(P->C_Initialize(NULL));
        slot = load_slot();
        kt_fault_arm(KT_FAULT_ALLOC, at);
        load_op(slot, &s, rv, &n);
        kt_fault_disarm();
        bool damage = fs_log_names_damage();
        ck_assert_msg(!damage, "alloc #%lu: logged as damage", at);
        if (rv[2] == CKR_OK) {
            ck_assert_msg(n == LOAD_OBJECTS,
                          "alloc #%lu: CKR_OK with %lu of %d objects", at,
                          (unsigned long)n, LOAD_OBJECTS);
        } else {
            ck_assert_msg(rv[2] == CKR_HOST_MEMORY ||
                              rv[2] == CKR_DEVICE_MEMORY ||
                              rv[2] == CKR_DEVICE_ERROR,
                          "alloc #%lu: answer 0x%lx", at, (unsigned long)rv[2]);
            errors++;
            load_retry(slot, s, rv, at);
        }
        CK(P->C_Finalize(NULL));
    }
    printf("fault: load           alloc  calls %4lu, injected %4lu (every "
           "%lu), errors %4lu\n",
           count, (count + step - 1) / step, step, errors);
    ck_assert_uint_gt(errors, 0);
    kt_test_teardown();
}
END_TEST

/* The user's tries, read from the token's flags. */
static CK_FLAGS pin_flags(void)
{
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(fs_token_slot(), &ti));
    return ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
                       CKF_USER_PIN_LOCKED);
}

/* One round: the user at the last try (harness: pin_max_retries = 3),
 * the right PIN with the nth SQLite call failing. True if the login
 * succeeded but its counter reset did not reach the store. The due reset
 * is written at C_Logout, or (even rounds) at C_Finalize. */
static bool reset_round(unsigned long at)
{
    CK_SESSION_HANDLE s = fs_session(FS_PUBLIC);
    for (int i = 0; i < 2; i++)
        RV(CKR_PIN_INCORRECT,
           P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong", 5));
    ck_assert(pin_flags() & CKF_USER_PIN_FINAL_TRY);
    kt_fault_arm(KT_FAULT_SQLITE, at);
    CK_RV rv =
        P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
    kt_fault_disarm();
    bool unreset = rv == CKR_OK && pin_flags() != 0;
    if (unreset) {
        /* never reset without a durable write: the charged try shows */
        ck_assert(pin_flags() & CKF_USER_PIN_LOCKED);
        ck_assert(kt_test_log_contains("cannot reset the user PIN retry"));
    }
    if (rv == CKR_OK && unreset && at % 2 == 0) {
        CK(P->C_Finalize(NULL));
        CK(P->C_Initialize(NULL));
        s = fs_session(FS_PUBLIC);
    } else if (rv == CKR_OK) {
        CK(P->C_Logout(s));
    }
    /* The right PIN again: never locked out by the failed write. */
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    ck_assert_uint_eq(pin_flags(), 0);
    CK(P->C_CloseSession(s));
    return unreset;
}

/* A right PIN whose counter reset fails to be written: the login succeeds,
 * the store keeps the try charged (no reset without a durable write), and
 * the reset is retried at logout, at C_Finalize and before the next try is
 * charged, so the user who typed the right PIN at the last try is not
 * locked out. Every SQLite call of the login fails in turn. */
START_TEST(test_login_reset_retried)
{
    CK_SESSION_HANDLE s;
    unsigned long unreset = 0;
    setup_load();
    CK(P->C_Initialize(NULL));
    s = fs_session(FS_PUBLIC);
    kt_fault_arm(KT_FAULT_SQLITE, 0);
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    kt_fault_disarm();
    unsigned long count = kt_fault_count(KT_FAULT_SQLITE);
    CK(P->C_Finalize(NULL));
    for (unsigned long at = 1; at <= count; at++) {
        CK(P->C_Initialize(NULL));
        unreset += reset_round(at);
        CK(P->C_Finalize(NULL));
    }
    printf("fault: login-reset    sqlite calls %4lu, reset not written %lu\n",
           count, unreset);
    ck_assert_uint_gt(unreset, 0);
    kt_test_teardown();
}
END_TEST

static TCase *family(const char *name, const TTest *test, int n)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test, 0, n);
    return tc;
}

static Suite *faults_suite(void)
{
    Suite *s = suite_create("module-faults");
    suite_add_tcase(s, family("token", test_token, N(token_scenarios)));
    suite_add_tcase(s, family("objects", test_objects, N(object_scenarios)));
    suite_add_tcase(s, family("wrap", test_wrap, N(wrap_mechs)));
    suite_add_tcase(s, family("unwrap", test_unwrap, N(wrap_mechs)));
    TCase *login = family("login", test_login, N(login_scenarios));
    tcase_add_test(login, test_login_reset_retried);
    suite_add_tcase(s, login);
    suite_add_tcase(s, family("pin", test_pin, N(pin_scenarios)));
    TCase *load = tcase_create("load");
    tcase_set_timeout(load, 900);
    tcase_add_test(load, test_load);
    suite_add_tcase(s, load);
    return s;
}

KT_TEST_MAIN(faults_suite)
