/* Session management and login (PKCS#11 v2.40 §5.6). */
#include "kt.h"

#include <string.h>

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app,
                    CK_NOTIFY notify, CK_SESSION_HANDLE_PTR out)
{
    (void)app;
    (void)notify; /* no surrender callbacks: calls never wait on a device */
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && out == NULL)
        rv = CKR_ARGUMENTS_BAD;
    /* Legacy requirement (§5.6): CKF_SERIAL_SESSION must be set. */
    if (rv == CKR_OK && !(flags & CKF_SERIAL_SESSION))
        rv = CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (rv == CKR_OK)
        rv = kt_session_open(slot, flags, out);
    return kt_trace("C_OpenSession", rv);
}

CK_RV C_CloseSession(CK_SESSION_HANDLE h)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_close(h);
    return kt_trace("C_CloseSession", rv);
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_close_all(slot);
    return kt_trace("C_CloseAllSessions", rv);
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && info == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK) {
        memset(info, 0, sizeof(*info));
        info->slotID = s->slot;
        info->flags = s->flags & (CKF_RW_SESSION | CKF_SERIAL_SESSION);
        pthread_rwlock_rdlock(&s->token->lock);
        info->state = kt_session_state(s);
        pthread_rwlock_unlock(&s->token->lock);
        info->ulDeviceError = 0;
    }
    kt_session_unref(s);
    return kt_trace("C_GetSessionInfo", rv);
}

CK_RV C_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR state,
                          CK_ULONG_PTR len)
{
    struct kt_session *s = NULL;
    (void)state;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && len == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = CKR_FUNCTION_NOT_SUPPORTED;
    kt_session_unref(s);
    return kt_trace("C_GetOperationState", rv);
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG len,
                          CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key)
{
    struct kt_session *s = NULL;
    (void)enc_key;
    (void)auth_key;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && state == NULL && len > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = CKR_FUNCTION_NOT_SUPPORTED;
    kt_session_unref(s);
    return kt_trace("C_SetOperationState", rv);
}

/* Login rules of PKCS#11 v2.40 §5.6 that depend on the other sessions. */
static KT_NODISCARD CK_RV login_allowed(struct kt_session *s, CK_USER_TYPE user)
{
    struct kt_token *t = s->token;
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&kt_g.lock);
    pthread_rwlock_rdlock(&t->lock);
    if (t->login == user)
        rv = CKR_USER_ALREADY_LOGGED_IN;
    else if (t->login != KT_NO_LOGIN)
        rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    else if (user == CKU_SO && t->rw_session_count != t->session_count)
        rv = CKR_SESSION_READ_ONLY_EXISTS;
    pthread_rwlock_unlock(&t->lock);
    pthread_mutex_unlock(&kt_g.lock);
    return rv;
}

CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
              CK_ULONG pin_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && pin == NULL && pin_len > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (user == CKU_CONTEXT_SPECIFIC) {
        /* CKA_ALWAYS_AUTHENTICATE keys */
        rv = kt_op_context_login(s, pin, pin_len);
        goto out;
    }
    if (user != CKU_SO && user != CKU_USER) {
        rv = CKR_USER_TYPE_INVALID;
        goto out;
    }
    rv = login_allowed(s, user);
    if (rv == CKR_OK)
        rv = kt_login(s->token, user, pin, pin_len);
out:
    kt_session_unref(s);
    return kt_trace("C_Login", rv);
}

CK_RV C_Logout(CK_SESSION_HANDLE h)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK) {
        if (s->token->login == KT_NO_LOGIN)
            rv = CKR_USER_NOT_LOGGED_IN;
        else
            kt_logout(s->token);
    }
    kt_session_unref(s);
    return kt_trace("C_Logout", rv);
}

CK_RV C_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && pin == NULL && pin_len > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (s->token->login != CKU_SO)
        rv = kt_session_rw(s) ? CKR_USER_NOT_LOGGED_IN : CKR_SESSION_READ_ONLY;
    if (rv == CKR_OK)
        rv = kt_login_check_pin_len(pin_len);
    if (rv == CKR_OK)
        rv = kt_login_init_pin(s->token, pin, pin_len);
out:
    kt_session_unref(s);
    return kt_trace("C_InitPIN", rv);
}

CK_RV C_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
               CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK &&
        ((old_pin == NULL && old_len > 0) || (new_pin == NULL && new_len > 0)))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (!kt_session_rw(s)) {
        rv = CKR_SESSION_READ_ONLY;
        goto out;
    }
    /* §5.6: the SO's PIN when the SO is logged in, else the user's. */
    int which = s->token->login == CKU_SO ? KT_PIN_SO : KT_PIN_USER;
    rv = kt_login_set_pin(s->token, which, old_pin, old_len, new_pin, new_len);
out:
    kt_session_unref(s);
    return kt_trace("C_SetPIN", rv);
}
