/*
 * The only code of libkeytier that calls C_* functions (see p11call.h).
 * Each wrapper times the call and logs its name, result and latency.
 */
#include <stdio.h>
#include <p11-kit/p11-kit.h>

#include "ckr.h"
#include "p11call.h"

#define KT_CALL(log, fl, fn, args)                                             \
    do {                                                                       \
        uint64_t t0_ = kt_now_ns();                                            \
        rv = (fl)->fn args;                                                    \
        kt_log_call((log), #fn, rv, kt_p11_rv_text(rv), kt_now_ns() - t0_);    \
    } while (0)

const char *kt_p11_rv_text(CK_RV rv)
{
    /* cli: "CKR_PIN_INCORRECT (The PIN is incorrect)": the code's name,
     * which people search for and the CLI issue asks errors to show, then
     * p11-kit's words.  Per thread, valid until this thread's next call
     * (every caller formats one result at a time). */
    static _Thread_local char buf[160];
    char name[KT_CKR_NAME_MAX];
    if (rv == CKR_OK)
        return "ok"; /* p11_kit_strerror gives "" */
    const char *t = p11_kit_strerror(rv);
    if (t != NULL && *t != '\0')
        snprintf(buf, sizeof buf, "%s (%s)", kt_ckr_name(rv, name), t);
    else
        snprintf(buf, sizeof buf, "%s", kt_ckr_name(rv, name));
    return buf;
}

CK_RV kt_p11_initialize(keytier_ctx *ctx, struct kt_module *mod)
{
    CK_RV rv;
    /* Libraries share the process: OS locking, no callbacks (PKCS#11
     * v2.40 §5.4 C_Initialize). */
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    KT_CALL(ctx->log, mod->fl, C_Initialize, (&args));
    return rv;
}

CK_RV kt_p11_finalize(keytier_ctx *ctx, struct kt_module *mod)
{
    CK_RV rv;
    KT_CALL(ctx->log, mod->fl, C_Finalize, (NULL));
    return rv;
}

CK_RV kt_p11_get_info(keytier_ctx *ctx, struct kt_module *mod, CK_INFO *info)
{
    CK_RV rv;
    KT_CALL(ctx->log, mod->fl, C_GetInfo, (info));
    return rv;
}

CK_RV kt_p11_get_slot_list(keytier_ctx *ctx, struct kt_module *mod,
                           CK_SLOT_ID *slots, CK_ULONG *count)
{
    CK_RV rv;
    KT_CALL(ctx->log, mod->fl, C_GetSlotList, (CK_TRUE, slots, count));
    return rv;
}

CK_RV kt_p11_get_token_info(keytier_ctx *ctx, struct kt_module *mod,
                            CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    CK_RV rv;
    KT_CALL(ctx->log, mod->fl, C_GetTokenInfo, (slot, info));
    return rv;
}

CK_RV kt_p11_open_session(struct kt_token *tok, CK_SESSION_HANDLE *s)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_OpenSession,
            (tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s));
    return rv;
}

CK_RV kt_p11_close_session(struct kt_token *tok, CK_SESSION_HANDLE s)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_CloseSession, (s));
    return rv;
}

CK_RV kt_p11_login(struct kt_token *tok, CK_SESSION_HANDLE s,
                   const kt_secret *pin)
{
    CK_RV rv;
    KT_CALL(
        tok->ctx->log, tok->mod->fl, C_Login,
        (s, CKU_USER, (CK_UTF8CHAR *)kt_secret_cdata(pin), kt_secret_len(pin)));
    return rv;
}

CK_RV kt_p11_find_objects(struct kt_token *tok, CK_SESSION_HANDLE s,
                          CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out,
                          CK_ULONG max, CK_ULONG *count)
{
    CK_RV rv, rv2;
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    KT_CALL(tok->ctx->log, fl, C_FindObjectsInit, (s, tmpl, n));
    if (rv != CKR_OK)
        return rv;
    KT_CALL(tok->ctx->log, fl, C_FindObjects, (s, out, max, count));
    rv2 = rv;
    KT_CALL(tok->ctx->log, fl, C_FindObjectsFinal, (s));
    return rv2 != CKR_OK ? rv2 : rv;
}

CK_RV kt_p11_get_attributes(struct kt_token *tok, CK_SESSION_HANDLE s,
                            CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *tmpl,
                            CK_ULONG n)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_GetAttributeValue,
            (s, obj, tmpl, n));
    return rv;
}

CK_RV kt_p11_create_object(struct kt_token *tok, CK_SESSION_HANDLE s,
                           CK_ATTRIBUTE *tmpl, CK_ULONG n,
                           CK_OBJECT_HANDLE *obj)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_CreateObject, (s, tmpl, n, obj));
    return rv;
}

CK_RV kt_p11_destroy_object(struct kt_token *tok, CK_SESSION_HANDLE s,
                            CK_OBJECT_HANDLE obj)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_DestroyObject, (s, obj));
    return rv;
}

CK_RV kt_p11_generate_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                          CK_MECHANISM *mech, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                          CK_OBJECT_HANDLE *obj)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_GenerateKey,
            (s, mech, tmpl, n, obj));
    return rv;
}

CK_RV kt_p11_generate_key_pair(struct kt_token *tok, CK_SESSION_HANDLE s,
                               CK_MECHANISM *mech, CK_ATTRIBUTE *pub_tmpl,
                               CK_ULONG pub_n, CK_ATTRIBUTE *priv_tmpl,
                               CK_ULONG priv_n, CK_OBJECT_HANDLE *pub,
                               CK_OBJECT_HANDLE *priv)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_GenerateKeyPair,
            (s, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, pub, priv));
    return rv;
}

CK_RV kt_p11_wrap_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                      CK_MECHANISM *mech, CK_OBJECT_HANDLE wrapping,
                      CK_OBJECT_HANDLE key, uint8_t *out, CK_ULONG *out_len)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_WrapKey,
            (s, mech, wrapping, key, out, out_len));
    return rv;
}

CK_RV kt_p11_unwrap_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                        CK_MECHANISM *mech, CK_OBJECT_HANDLE unwrapping,
                        const uint8_t *wrapped, CK_ULONG wrapped_len,
                        CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *obj)
{
    CK_RV rv;
    KT_CALL(
        tok->ctx->log, tok->mod->fl, C_UnwrapKey,
        (s, mech, unwrapping, (CK_BYTE *)wrapped, wrapped_len, tmpl, n, obj));
    return rv;
}

CK_RV kt_p11_sign(struct kt_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                  CK_OBJECT_HANDLE key, const uint8_t *in, CK_ULONG in_len,
                  uint8_t *out, CK_ULONG *out_len)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_SignInit, (s, mech, key));
    if (rv != CKR_OK)
        return rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_Sign,
            (s, (CK_BYTE *)in, in_len, out, out_len));
    return rv;
}

/* ---- administration (cli: lib/admin/admin.c) --------------------------- */

CK_RV kt_p11_init_token(keytier_ctx *ctx, struct kt_module *mod,
                        CK_SLOT_ID slot, const kt_secret *so_pin,
                        const CK_UTF8CHAR label[32])
{
    CK_RV rv;
    KT_CALL(ctx->log, mod->fl, C_InitToken,
            (slot, (CK_UTF8CHAR *)kt_secret_cdata(so_pin),
             kt_secret_len(so_pin), (CK_UTF8CHAR *)label));
    return rv;
}

CK_RV kt_p11_login_as(struct kt_token *tok, CK_SESSION_HANDLE s,
                      CK_USER_TYPE user_type, const kt_secret *pin)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_Login,
            (s, user_type, (CK_UTF8CHAR *)kt_secret_cdata(pin),
             kt_secret_len(pin)));
    return rv;
}

CK_RV kt_p11_logout(struct kt_token *tok, CK_SESSION_HANDLE s)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_Logout, (s));
    return rv;
}

CK_RV kt_p11_init_pin(struct kt_token *tok, CK_SESSION_HANDLE s,
                      const kt_secret *pin)
{
    CK_RV rv;
    KT_CALL(tok->ctx->log, tok->mod->fl, C_InitPIN,
            (s, (CK_UTF8CHAR *)kt_secret_cdata(pin), kt_secret_len(pin)));
    return rv;
}
