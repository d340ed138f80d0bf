/* The module's operations under injected faults (fault.h): token and PIN
 * initialisation, object create, generate, destroy and change, wrap and
 * unwrap with each wrapping mechanism, login and PIN change. One test case
 * per family, chosen by CK_RUN_CASE in tests/fault/meson.build so that the
 * families run in parallel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
     CKF_USER_PIN_COUNT_LOW},
    {"login-so", setup_objects, prep_public, op_login_so, CKF_SO_PIN_COUNT_LOW},
};

static const struct fs_scenario pin_scenarios[] = {
    {"set-pin-user", setup_objects, prep_user, op_set_pin_user,
     CKF_USER_PIN_COUNT_LOW},
    {"set-pin-so", setup_objects, prep_so, op_set_pin_so, CKF_SO_PIN_COUNT_LOW},
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
    suite_add_tcase(s, family("login", test_login, N(login_scenarios)));
    suite_add_tcase(s, family("pin", test_pin, N(pin_scenarios)));
    return s;
}

KT_TEST_MAIN(faults_suite)
