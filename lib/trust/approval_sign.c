/*
 * The approver's signature over an approval request, made in the token the
 * approver holds (lib/trust/approval.c decides what is signed and checks
 * the result).  The token is found by the key's PKCS#11 URI among the
 * context's modules and logged in with the PIN the approver gave; the
 * private key never leaves it.  ECDSA signs the SHA-256 digest (CKM_ECDSA,
 * r || s), RSA uses PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt
 * (CKM_RSA_PKCS_PSS over the digest): both are mechanisms SoftHSM2,
 * keytier's module and network HSMs offer.
 */
#include <string.h>

#include <p11-kit/uri.h>

#include "ckr.h"
#include "p11call.h"
#include "trust.h"

struct kt_sign_job {
    struct kt_tjob base;
    char uri[KEYTIER_URI_MAX];
    kt_secret *pin;
    uint8_t digest[32];
    /* outputs */
    uint8_t sig[KT_APPROVAL_SIG_MAX];
    size_t sig_len;
};

static void kt_sign_job_cleanup(struct kt_tjob *tj)
{
    struct kt_sign_job *j = (struct kt_sign_job *)tj;
    kt_secret_free(j->pin);
}

/* The one private key the URI names (its object= and id= parts). */
static keytier_err kt_sign_find_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                                    const char *uri, CK_OBJECT_HANDLE *key,
                                    CK_KEY_TYPE *type)
{
    char nb[KT_CKR_NAME_MAX];
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN_AND_MODULE, u) !=
        P11_KIT_URI_OK) {
        p11_kit_uri_free(u);
        return kt_err(KEYTIER_E_URI, "approver key %s", uri);
    }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof cls}};
    CK_ULONG n = 1;
    CK_ATTRIBUTE *label = p11_kit_uri_get_attribute(u, CKA_LABEL);
    CK_ATTRIBUTE *id = p11_kit_uri_get_attribute(u, CKA_ID);
    if (label != NULL)
        t[n++] = *label;
    if (id != NULL)
        t[n++] = *id;
    keytier_err e = KEYTIER_OK;
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    CK_RV rv = n == 1 ? CKR_ARGUMENTS_BAD
                      : kt_p11_find_objects(tok, s, t, n, found, 2, &count);
    if (n == 1)
        e = kt_err(KEYTIER_E_URI,
                   "approver key %s: name the key (object= or id=)", uri);
    else if (rv != CKR_OK)
        e = kt_err(KEYTIER_E_TOKEN, "approver key %s: C_FindObjects: %s", uri,
                   kt_ckr_name(rv, nb));
    else if (count != 1)
        e = kt_err(count ? KEYTIER_E_KEY_AMBIGUOUS : KEYTIER_E_KEY_NOT_FOUND,
                   "approver key %s: %s private key", uri,
                   count ? "more than one" : "no");
    p11_kit_uri_free(u);
    if (e != KEYTIER_OK)
        return e;
    CK_ATTRIBUTE kt = {CKA_KEY_TYPE, type, sizeof *type};
    rv = kt_p11_get_attributes(tok, s, found[0], &kt, 1);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "approver key %s: CKA_KEY_TYPE: %s", uri,
                      kt_ckr_name(rv, nb));
    if (*type != CKK_EC && *type != CKK_RSA)
        return kt_err(KEYTIER_E_KEY_TYPE,
                      "approver key %s: neither an EC nor an RSA key", uri);
    *key = found[0];
    return KEYTIER_OK;
}

static keytier_err kt_sign_here(struct kt_sign_job *j, struct kt_token *tok,
                                CK_SESSION_HANDLE s)
{
    char nb[KT_CKR_NAME_MAX];
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    CK_KEY_TYPE type = CKK_EC;
    keytier_err e = kt_sign_find_key(tok, s, j->uri, &key, &type);
    if (e != KEYTIER_OK)
        return e;
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    if (type == CKK_RSA)
        mech = (CK_MECHANISM){CKM_RSA_PKCS_PSS, &pss, sizeof pss};
    CK_ULONG len = sizeof j->sig;
    CK_RV rv = kt_p11_sign(tok, s, &mech, key, j->digest, sizeof j->digest,
                           j->sig, &len);
    j->base.rv = rv;
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "approver key %s: C_Sign: %s", j->uri,
                      kt_ckr_name(rv, nb));
    j->sig_len = len;
    return KEYTIER_OK;
}

static keytier_err kt_sign_run(struct kt_tjob *tj)
{
    struct kt_sign_job *j = (struct kt_sign_job *)tj;
    char nb[KT_CKR_NAME_MAX];
    struct kt_token *tok;
    keytier_err e = kt_token_find(tj->ctx, j->uri, &tok);
    if (e != KEYTIER_OK)
        return e;
    /* A session of our own, logged in with the approver's PIN and closed
     * after: the PIN is never kept, nor offered to any other token. */
    CK_SESSION_HANDLE s;
    CK_RV rv = kt_p11_open_session(tok, &s);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN,
                      "approver token of %s: C_OpenSession: %s", j->uri,
                      kt_ckr_name(rv, nb));
    rv = kt_p11_login_as(tok, s, CKU_USER, j->pin);
    bool logged_in = rv == CKR_OK;
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        e = kt_err(KEYTIER_E_LOGIN, "approver token of %s: C_Login: %s", j->uri,
                   kt_ckr_name(rv, nb));
    else
        e = kt_sign_here(j, tok, s);
    if (logged_in)
        KT_IGNORE_RESULT(kt_p11_logout(tok, s));
    KT_IGNORE_RESULT(kt_p11_close_session(tok, s));
    return e;
}

keytier_err kt_approval_sign(keytier_ctx *ctx, const char *key_uri,
                             const char *pin, const uint8_t digest[32],
                             uint8_t sig[KT_APPROVAL_SIG_MAX], size_t *sig_len)
{
    if (!kt_text_ok(key_uri, KEYTIER_URI_MAX - 1))
        return kt_err(KEYTIER_E_ARGS, "approver key URI");
    keytier_err e = kt_uri_check("approver key", key_uri);
    if (e != KEYTIER_OK)
        return e;
    struct kt_sign_job *j = kt_tjob_new(ctx, sizeof *j, kt_sign_run);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->base.cleanup = kt_sign_job_cleanup;
    kt_strlcpy(j->uri, key_uri, sizeof j->uri);
    memcpy(j->digest, digest, sizeof j->digest);
    j->pin = kt_secret_from(pin, strlen(pin));
    e = j->pin == NULL ? kt_err(KEYTIER_E_NOMEM, NULL)
                       : kt_tjob_run(&j->base, "approver signature", key_uri,
                                     ctx->cfg.avail.admin_deadline_ms);
    if (e == KEYTIER_OK && j->base.taken) {
        memcpy(sig, j->sig, j->sig_len);
        *sig_len = j->sig_len;
    }
    kt_tjob_put(&j->base);
    return e;
}
