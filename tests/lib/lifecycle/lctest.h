/* Helpers shared by the lifecycle tests (on top of tests/lib/testenv). */
#ifndef KT_LCTEST_H
#define KT_LCTEST_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "keytier.h"
#include "testenv.h"

#define assert_ok(call)                                                        \
    do {                                                                       \
        keytier_err e_ = (call);                                               \
        ck_assert_msg(e_ == KEYTIER_OK, "%s: %s (%s)", #call,                  \
                      keytier_error_name(e_), keytier_last_error_detail());    \
    } while (0)

#define assert_err(call, want)                                                 \
    do {                                                                       \
        keytier_err e_ = (call);                                               \
        ck_assert_msg(e_ == (want), "%s: got %s, want %s (%s)", #call,         \
                      keytier_error_name(e_), keytier_error_name(want),        \
                      keytier_last_error_detail());                            \
    } while (0)

static const keytier_request lc_user = {KEYTIER_REQUEST_USER,
                                        KEYTIER_INTERNAL_NONE, "req-1", NULL};
static const keytier_request lc_index = {KEYTIER_REQUEST_INTERNAL,
                                         KEYTIER_INTERNAL_INDEX, "req-2", NULL};

/* Seals `msg` under mailbox `name` of the tenant's workload. */
static inline size_t lc_seal(keytier_ctx *ctx, const char *tenant,
                             const char *workload, const char *name,
                             const char *msg, uint8_t *env, size_t cap)
{
    keytier_key *k = NULL;
    size_t n = 0;
    assert_ok(keytier_key_open_name(ctx, &lc_user, tenant, workload, name, &k));
    assert_ok(
        keytier_seal(k, name, strlen(name), msg, strlen(msg), env, cap, &n));
    keytier_key_close(k);
    return n;
}

/* Opens env under mailbox `name` and compares with msg; returns the error
 * of the first failing call (KEYTIER_OK when it matched). */
static inline keytier_err lc_open(keytier_ctx *ctx, const keytier_request *req,
                                  const char *tenant, const char *workload,
                                  const char *name, const uint8_t *env,
                                  size_t env_len, const char *msg)
{
    keytier_key *k = NULL;
    uint8_t out[4096];
    size_t n = 0;
    keytier_err e = keytier_key_open_name(ctx, req, tenant, workload, name, &k);
    if (e != KEYTIER_OK)
        return e;
    e = keytier_open(k, name, strlen(name), env, env_len, out, sizeof out, &n);
    keytier_key_close(k);
    if (e != KEYTIER_OK)
        return e;
    ck_assert_uint_eq(n, strlen(msg));
    ck_assert_mem_eq(out, msg, n);
    return KEYTIER_OK;
}

#endif

/* Counts lines of the audit log that contain `needle`. */
static inline int lc_audit_count(keytier_ctx *ctx, const char *needle)
{
    char path[4096], line[8192];
    int n = 0;
    assert_ok(keytier_audit_log_path(ctx, path, sizeof path));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

#include <p11-kit/p11-kit.h>

/* The customer turns CKA_UNWRAP off on its root `label` in SoftHSM2 token
 * `token` (user PIN 1234), through PKCS#11 as the customer would. */
static inline void lc_unwrap_off(const char *softhsm_module, const char *token,
                                 const char *label)
{
    CK_FUNCTION_LIST *fl = p11_kit_module_load(softhsm_module, 0);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, found = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE find[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE set[] = {{CKA_UNWRAP, &no, sizeof no}};
    CK_OBJECT_HANDLE h;
    ck_assert_ptr_nonnull(fl);
    ck_assert_int_eq(p11_kit_module_initialize(fl), CKR_OK);
    ck_assert_int_eq(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n && s == CK_INVALID_HANDLE; i++) {
        CK_TOKEN_INFO ti;
        size_t l = strlen(token);
        ck_assert_int_eq(fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, token, l) != 0 || ti.label[l] != ' ')
            continue;
        ck_assert_int_eq(fl->C_OpenSession(slots[i],
                                           CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                           NULL, NULL, &s),
                         CKR_OK);
    }
    ck_assert_msg(s != CK_INVALID_HANDLE, "token %s not found", token);
    ck_assert_int_eq(fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4),
                     CKR_OK);
    ck_assert_int_eq(fl->C_FindObjectsInit(s, find, 1), CKR_OK);
    ck_assert_int_eq(fl->C_FindObjects(s, &h, 1, &found), CKR_OK);
    ck_assert_int_eq(fl->C_FindObjectsFinal(s), CKR_OK);
    ck_assert_uint_eq(found, 1);
    ck_assert_int_eq(fl->C_SetAttributeValue(s, h, set, 1), CKR_OK);
    fl->C_CloseSession(s);
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
}

/* How a test revokes a customer root. */
enum lc_revoke { LC_DESTROY, LC_UNWRAP_OFF };

static inline void lc_revoke_root(struct testenv *t, enum lc_revoke how,
                                  const char *token, const char *label)
{
    if (how == LC_DESTROY)
        testenv_destroy(t, token, label);
    else
        lc_unwrap_off(t->softhsm_module, token, label);
}
