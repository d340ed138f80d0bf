/*
 * p11call.h - the single door through which libkeytier calls PKCS#11.
 *
 * Every C_* call of the library is made in p11call.c and nowhere else, so
 * that logging (call name, result, latency - never arguments), and later
 * deadlines, hedging and error classification apply to all of
 * them.  The functions return the module's CK_RV unchanged.
 *
 * They are called on call-pool workers only (root-key reads:
 * avail/read.c; module start and scans: module.c; every other token job:
 * token_job.c; the last step of a close: unload.c, inline only if that job
 * cannot be posted), so that a caller never waits longer than a deadline
 * for a token.
 */
#ifndef KT_P11CALL_H
#define KT_P11CALL_H

#include "kt_lib.h"

KT_NODISCARD CK_RV kt_p11_initialize(keytier_ctx *ctx, struct kt_module *mod);
KT_NODISCARD CK_RV kt_p11_finalize(keytier_ctx *ctx, struct kt_module *mod);
KT_NODISCARD CK_RV kt_p11_get_info(keytier_ctx *ctx, struct kt_module *mod,
                                   CK_INFO *info);
KT_NODISCARD CK_RV kt_p11_get_slot_list(keytier_ctx *ctx, struct kt_module *mod,
                                        CK_SLOT_ID *slots, CK_ULONG *count);
KT_NODISCARD CK_RV kt_p11_get_token_info(keytier_ctx *ctx,
                                         struct kt_module *mod, CK_SLOT_ID slot,
                                         CK_TOKEN_INFO *info);

KT_NODISCARD CK_RV kt_p11_open_session(struct kt_token *tok,
                                       CK_SESSION_HANDLE *s);
KT_NODISCARD CK_RV kt_p11_close_session(struct kt_token *tok,
                                        CK_SESSION_HANDLE s);
KT_NODISCARD CK_RV kt_p11_login(struct kt_token *tok, CK_SESSION_HANDLE s,
                                const kt_secret *pin);
/* FindObjectsInit + FindObjects (up to max) + FindObjectsFinal. */
KT_NODISCARD CK_RV kt_p11_find_objects(struct kt_token *tok,
                                       CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
                                       CK_ULONG n, CK_OBJECT_HANDLE *out,
                                       CK_ULONG max, CK_ULONG *count);
KT_NODISCARD CK_RV kt_p11_get_attributes(struct kt_token *tok,
                                         CK_SESSION_HANDLE s,
                                         CK_OBJECT_HANDLE obj,
                                         CK_ATTRIBUTE *tmpl, CK_ULONG n);
KT_NODISCARD CK_RV kt_p11_create_object(struct kt_token *tok,
                                        CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
                                        CK_ULONG n, CK_OBJECT_HANDLE *obj);
KT_NODISCARD CK_RV kt_p11_destroy_object(struct kt_token *tok,
                                         CK_SESSION_HANDLE s,
                                         CK_OBJECT_HANDLE obj);
KT_NODISCARD CK_RV kt_p11_generate_key(struct kt_token *tok,
                                       CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                                       CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                       CK_OBJECT_HANDLE *obj);
KT_NODISCARD CK_RV kt_p11_generate_key_pair(
    struct kt_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
    CK_ATTRIBUTE *pub_tmpl, CK_ULONG pub_n, CK_ATTRIBUTE *priv_tmpl,
    CK_ULONG priv_n, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv);
KT_NODISCARD CK_RV kt_p11_wrap_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                                   CK_MECHANISM *mech,
                                   CK_OBJECT_HANDLE wrapping,
                                   CK_OBJECT_HANDLE key, uint8_t *out,
                                   CK_ULONG *out_len);
KT_NODISCARD CK_RV kt_p11_unwrap_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                                     CK_MECHANISM *mech,
                                     CK_OBJECT_HANDLE unwrapping,
                                     const uint8_t *wrapped,
                                     CK_ULONG wrapped_len, CK_ATTRIBUTE *tmpl,
                                     CK_ULONG n, CK_OBJECT_HANDLE *obj);

/* C_SignInit + C_Sign (single part); out_len: capacity in, length out. */
KT_NODISCARD CK_RV kt_p11_sign(struct kt_token *tok, CK_SESSION_HANDLE s,
                               CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
                               const uint8_t *in, CK_ULONG in_len, uint8_t *out,
                               CK_ULONG *out_len);

/* ---- administration (cli: lib/admin/admin.c) ---------------------------
 * Token preparation for the keytier command line; same door, same log. */
KT_NODISCARD CK_RV kt_p11_init_token(keytier_ctx *ctx, struct kt_module *mod,
                                     CK_SLOT_ID slot, const kt_secret *so_pin,
                                     const CK_UTF8CHAR label[32]);
/* C_Login as user_type (CKU_SO or CKU_USER). */
KT_NODISCARD CK_RV kt_p11_login_as(struct kt_token *tok, CK_SESSION_HANDLE s,
                                   CK_USER_TYPE user_type,
                                   const kt_secret *pin);
KT_NODISCARD CK_RV kt_p11_logout(struct kt_token *tok, CK_SESSION_HANDLE s);
KT_NODISCARD CK_RV kt_p11_init_pin(struct kt_token *tok, CK_SESSION_HANDLE s,
                                   const kt_secret *pin);
/* ---- end administration ------------------------------------------------ */

/* Text of a CK_RV for logs and error details. */
const char *kt_p11_rv_text(CK_RV rv);

#endif /* KT_P11CALL_H */
