/*
 * Login, and the memory of a refused PIN: a PIN the token refused is never
 * offered again until its source gives another one, since every retry
 * would spend the customer's PIN retry counter until the PIN locks for
 * everyone.
 */
#include "p11call.h"
#include "token.h"

static bool kt_rv_refuses_pin(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ||
           rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID ||
           rv == CKR_PIN_LEN_RANGE;
}

CK_RV kt_login_once(struct kt_token *tok, CK_SESSION_HANDLE s, kt_secret *pin)
{
    pthread_mutex_lock(&tok->mu);
    bool refused = tok->refused_pin != NULL &&
                   kt_secret_len(tok->refused_pin) == kt_secret_len(pin) &&
                   kt_ct_equal(kt_secret_cdata(tok->refused_pin),
                               kt_secret_cdata(pin), kt_secret_len(pin));
    CK_RV rv = tok->refused_rv;
    pthread_mutex_unlock(&tok->mu);
    if (refused)
        return rv;

    rv = kt_p11_login(tok, s, pin);
    pthread_mutex_lock(&tok->mu);
    if (kt_rv_refuses_pin(rv)) {
        kt_secret_free(tok->refused_pin);
        tok->refused_pin = kt_secret_dup(pin); /* NULL on OOM: asks again */
        tok->refused_rv = rv;
    } else if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        kt_secret_free(tok->refused_pin);
        tok->refused_pin = NULL;
    }
    pthread_mutex_unlock(&tok->mu);
    return rv;
}
