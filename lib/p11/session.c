/*
 * Sessions of a token: idle ones reused, new ones opened and logged in
 * with the token's configured PIN (login.c), broken ones closed.
 */
#include <stdlib.h>

#include "p11call.h"
#include "token.h"

keytier_err kt_session_get(struct kt_token *tok, CK_SESSION_HANDLE *out,
                           CK_RV *rvp)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&tok->mu);
    if (tok->n_idle > 0) {
        *out = tok->idle[--tok->n_idle];
        pthread_mutex_unlock(&tok->mu);
        *rvp = CKR_OK;
        return KEYTIER_OK;
    }
    pthread_mutex_unlock(&tok->mu);

    CK_SESSION_HANDLE s;
    rv = kt_p11_open_session(tok, &s);
    *rvp = rv;
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_OpenSession: %s",
                      tok->label, kt_p11_rv_text(rv));
    /* Login is shared by all sessions of the application (PKCS#11 v2.40
     * §5.6), so a new session of a token we already logged in to answers
     * CKR_USER_ALREADY_LOGGED_IN. */
    const struct kt_pin_cfg *pc = kt_config_pin(&tok->ctx->cfg, tok->label);
    if (pc != NULL) {
        kt_secret *pin = NULL;
        keytier_err e = kt_pin_read(pc, &pin);
        if (e != KEYTIER_OK) {
            KT_IGNORE_RESULT(kt_p11_close_session(tok, s));
            return e;
        }
        rv = kt_login_once(tok, s, pin);
        kt_secret_free(pin);
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
            *rvp = rv;
            KT_IGNORE_RESULT(kt_p11_close_session(tok, s));
            return kt_err(KEYTIER_E_LOGIN, "token '%s': C_Login: %s",
                          tok->label, kt_p11_rv_text(rv));
        }
    }
    *out = s;
    return KEYTIER_OK;
}

static bool kt_rv_breaks_session(CK_RV rv)
{
    switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_OPERATION_ACTIVE:
        return true;
    default:
        return false;
    }
}

void kt_session_put(struct kt_token *tok, CK_SESSION_HANDLE s, CK_RV rv)
{
    if (s == CK_INVALID_HANDLE)
        return;
    if (!kt_rv_breaks_session(rv)) {
        pthread_mutex_lock(&tok->mu);
        if (tok->n_idle == tok->cap_idle) {
            size_t ncap = tok->cap_idle ? tok->cap_idle * 2 : 4;
            CK_SESSION_HANDLE *ni = reallocarray(tok->idle, ncap, sizeof *ni);
            if (ni != NULL) {
                tok->idle = ni;
                tok->cap_idle = ncap;
            }
        }
        if (tok->n_idle < tok->cap_idle) {
            tok->idle[tok->n_idle++] = s;
            pthread_mutex_unlock(&tok->mu);
            return;
        }
        pthread_mutex_unlock(&tok->mu);
    }
    KT_IGNORE_RESULT(kt_p11_close_session(tok, s));
}
