/* PKCS#11 3.0 (§5.4 interfaces, §5.6 C_LoginUser and C_SessionCancel,
 * §5.15-5.19 message-based functions). The module offers the interface
 * "PKCS 11" twice: version 3.0 (CK_FUNCTION_LIST_3_0, the default) and
 * version 2.40 (the list C_GetFunctionList returns). */
#include "kt.h"

#include <string.h>

#include "p11_functions.h"
#include "pkcs11v3.h"

static CK_FUNCTION_LIST_3_0 function_list_3_0 = {
    {3, 0},
    KT_P11_FUNCTIONS_2_40(C_GetInfo),
    /* 3.0 additions (§5.4, §5.6, §5.15-5.19). */
    C_GetInterfaceList,
    C_GetInterface,
    C_LoginUser,
    C_SessionCancel,
    C_MessageEncryptInit,
    C_EncryptMessage,
    C_EncryptMessageBegin,
    C_EncryptMessageNext,
    C_MessageEncryptFinal,
    C_MessageDecryptInit,
    C_DecryptMessage,
    C_DecryptMessageBegin,
    C_DecryptMessageNext,
    C_MessageDecryptFinal,
    C_MessageSignInit,
    C_SignMessage,
    C_SignMessageBegin,
    C_SignMessageNext,
    C_MessageSignFinal,
    C_MessageVerifyInit,
    C_VerifyMessage,
    C_VerifyMessageBegin,
    C_VerifyMessageNext,
    C_MessageVerifyFinal,
};

static CK_CHAR interface_name[] = "PKCS 11";

/* The first is the default (C_GetInterface with no name or version). No
 * CKF_INTERFACE_FORK_SAFE: a fork child starts uninitialised (its sessions,
 * logins and session objects are not the parent's). */
#define N_INTERFACES 2
static CK_INTERFACE interfaces[N_INTERFACES] = {
    {interface_name, &function_list_3_0, 0},
    {interface_name, NULL, 0}, /* the 2.40 list, filled in on first use */
};
static pthread_once_t interfaces_once = PTHREAD_ONCE_INIT;

static void interfaces_init(void)
{
    CK_FUNCTION_LIST_PTR v240 = NULL;
    if (C_GetFunctionList(&v240) == CKR_OK)
        interfaces[1].pFunctionList = v240;
}

/* Like C_GetFunctionList, these may be called before C_Initialize. */
__attribute__((visibility("default"))) CK_RV
C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&interfaces_once, interfaces_init);
    if (list == NULL) {
        *count = N_INTERFACES;
        return CKR_OK;
    }
    if (*count < N_INTERFACES) {
        *count = N_INTERFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, interfaces, sizeof(interfaces));
    *count = N_INTERFACES;
    return CKR_OK;
}

static const CK_VERSION *interface_version(const CK_INTERFACE *i)
{
    /* Both lists begin with their CK_VERSION. */
    return (const CK_VERSION *)i->pFunctionList;
}

/* §5.4: a NULL name or version matches any; flags are the flags the
 * interface must have. No match is CKR_ARGUMENTS_BAD. */
__attribute__((visibility("default"))) CK_RV
C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
               CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags)
{
    if (iface == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&interfaces_once, interfaces_init);
    for (size_t i = 0; i < N_INTERFACES; i++) {
        const CK_INTERFACE *it = &interfaces[i];
        const CK_VERSION *v = interface_version(it);
        if (name != NULL &&
            strcmp((const char *)name, (const char *)it->pInterfaceName) != 0)
            continue;
        if (version != NULL &&
            (version->major != v->major || version->minor != v->minor))
            continue;
        if ((it->flags & flags) != flags)
            continue;
        *iface = &interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}

/* §5.6: this token has one user per role and no user names, so the name
 * must be absent (NULL or empty); otherwise C_Login. */
CK_RV C_LoginUser(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                  CK_ULONG pin_len, CK_UTF8CHAR_PTR username,
                  CK_ULONG username_len)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && username_len > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv != CKR_OK)
        return kt_trace("C_LoginUser", rv);
    (void)username;
    return C_Login(h, user, pin, pin_len);
}

/* §5.6: ends the session's operations named by flags (mechanism flags:
 * CKF_ENCRYPT, CKF_DECRYPT, CKF_DIGEST, CKF_SIGN, CKF_VERIFY,
 * CKF_FIND_OBJECTS, ...). An operation that is not active, or that this
 * module does not offer, has nothing to cancel. */
CK_RV C_SessionCancel(CK_SESSION_HANDLE h, CK_FLAGS flags)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        kt_session_cancel(s, flags);
    kt_session_unref(s);
    return kt_trace("C_SessionCancel", rv);
}

/* Message-based encryption and decryption (§5.15-5.16): CKM_AES_GCM
 * (core/msgcrypt.c). args_ok false: CKR_ARGUMENTS_BAD (the message, not
 * the operation, is what a bad call ends). */
static KT_NODISCARD CK_RV msg_init(const char *fn, bool enc,
                                   CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                                   CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_enter(h, mech != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_msg_init(s, enc, mech, key);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

static KT_NODISCARD CK_RV msg_oneshot(const char *fn, bool enc,
                                      CK_SESSION_HANDLE h, CK_VOID_PTR param,
                                      CK_ULONG param_len, CK_BYTE_PTR aad,
                                      CK_ULONG aad_len, CK_BYTE_PTR in,
                                      CK_ULONG in_len, CK_BYTE_PTR out,
                                      CK_ULONG_PTR out_len)
{
    struct kt_session *s = NULL;
    bool ok = (aad != NULL || aad_len == 0) && (in != NULL || in_len == 0) &&
              out_len != NULL;
    CK_RV rv = kt_session_enter(h, ok, &s);
    if (rv == CKR_OK)
        rv = kt_msg_oneshot(s, enc, param, param_len, aad, aad_len, in, in_len,
                            out, out_len);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

static KT_NODISCARD CK_RV msg_begin(const char *fn, bool enc,
                                    CK_SESSION_HANDLE h, CK_VOID_PTR param,
                                    CK_ULONG param_len, CK_BYTE_PTR aad,
                                    CK_ULONG aad_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_enter(h, aad != NULL || aad_len == 0, &s);
    if (rv == CKR_OK)
        rv = kt_msg_begin(s, enc, param, param_len, aad, aad_len);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

static KT_NODISCARD CK_RV msg_next(const char *fn, bool enc,
                                   CK_SESSION_HANDLE h, CK_VOID_PTR param,
                                   CK_ULONG param_len, CK_BYTE_PTR in,
                                   CK_ULONG in_len, CK_BYTE_PTR out,
                                   CK_ULONG_PTR out_len, CK_FLAGS flags)
{
    struct kt_session *s = NULL;
    bool ok = (in != NULL || in_len == 0) && out_len != NULL &&
              (flags & ~CKF_END_OF_MESSAGE) == 0;
    CK_RV rv = kt_session_enter(h, ok, &s);
    if (rv == CKR_OK)
        rv = kt_msg_next(s, enc, param, param_len, in, in_len, out, out_len,
                         flags);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

static KT_NODISCARD CK_RV msg_final(const char *fn, bool enc,
                                    CK_SESSION_HANDLE h)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_enter(h, true, &s);
    if (rv == CKR_OK)
        rv = kt_msg_final(s, enc);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

CK_RV C_MessageEncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                           CK_OBJECT_HANDLE key)
{
    return msg_init("C_MessageEncryptInit", true, h, mech, key);
}

CK_RV C_EncryptMessage(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                       CK_ULONG param_len, CK_BYTE_PTR aad, CK_ULONG aad_len,
                       CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                       CK_ULONG_PTR out_len)
{
    return msg_oneshot("C_EncryptMessage", true, h, param, param_len, aad,
                       aad_len, in, in_len, out, out_len);
}

CK_RV C_EncryptMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                            CK_ULONG param_len, CK_BYTE_PTR aad,
                            CK_ULONG aad_len)
{
    return msg_begin("C_EncryptMessageBegin", true, h, param, param_len, aad,
                     aad_len);
}

CK_RV C_EncryptMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                           CK_ULONG param_len, CK_BYTE_PTR in, CK_ULONG in_len,
                           CK_BYTE_PTR out, CK_ULONG_PTR out_len,
                           CK_FLAGS flags)
{
    return msg_next("C_EncryptMessageNext", true, h, param, param_len, in,
                    in_len, out, out_len, flags);
}

CK_RV C_MessageEncryptFinal(CK_SESSION_HANDLE h)
{
    return msg_final("C_MessageEncryptFinal", true, h);
}

CK_RV C_MessageDecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                           CK_OBJECT_HANDLE key)
{
    return msg_init("C_MessageDecryptInit", false, h, mech, key);
}

CK_RV C_DecryptMessage(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                       CK_ULONG param_len, CK_BYTE_PTR aad, CK_ULONG aad_len,
                       CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                       CK_ULONG_PTR out_len)
{
    return msg_oneshot("C_DecryptMessage", false, h, param, param_len, aad,
                       aad_len, in, in_len, out, out_len);
}

CK_RV C_DecryptMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                            CK_ULONG param_len, CK_BYTE_PTR aad,
                            CK_ULONG aad_len)
{
    return msg_begin("C_DecryptMessageBegin", false, h, param, param_len, aad,
                     aad_len);
}

CK_RV C_DecryptMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                           CK_ULONG param_len, CK_BYTE_PTR in, CK_ULONG in_len,
                           CK_BYTE_PTR out, CK_ULONG_PTR out_len,
                           CK_FLAGS flags)
{
    return msg_next("C_DecryptMessageNext", false, h, param, param_len, in,
                    in_len, out, out_len, flags);
}

CK_RV C_MessageDecryptFinal(CK_SESSION_HANDLE h)
{
    return msg_final("C_MessageDecryptFinal", false, h);
}

/* Message-based signatures (§5.17-5.18) are not offered: the session is
 * checked, then CKR_FUNCTION_NOT_SUPPORTED. */
CK_RV C_MessageSignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                        CK_OBJECT_HANDLE key)
{
    (void)mech, (void)key;
    return kt_not_offered("C_MessageSignInit", h);
}

CK_RV C_SignMessage(CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,
                    CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
                    CK_ULONG_PTR sig_len)
{
    (void)param, (void)param_len, (void)data, (void)data_len;
    (void)sig, (void)sig_len;
    return kt_not_offered("C_SignMessage", h);
}

CK_RV C_SignMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                         CK_ULONG param_len)
{
    (void)param, (void)param_len;
    return kt_not_offered("C_SignMessageBegin", h);
}

CK_RV C_SignMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                        CK_ULONG param_len, CK_BYTE_PTR data, CK_ULONG data_len,
                        CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    (void)param, (void)param_len, (void)data, (void)data_len;
    (void)sig, (void)sig_len;
    return kt_not_offered("C_SignMessageNext", h);
}

CK_RV C_MessageSignFinal(CK_SESSION_HANDLE h)
{
    return kt_not_offered("C_MessageSignFinal", h);
}

CK_RV C_MessageVerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                          CK_OBJECT_HANDLE key)
{
    (void)mech, (void)key;
    return kt_not_offered("C_MessageVerifyInit", h);
}

CK_RV C_VerifyMessage(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                      CK_ULONG param_len, CK_BYTE_PTR data, CK_ULONG data_len,
                      CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    (void)param, (void)param_len, (void)data, (void)data_len;
    (void)sig, (void)sig_len;
    return kt_not_offered("C_VerifyMessage", h);
}

CK_RV C_VerifyMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                           CK_ULONG param_len)
{
    (void)param, (void)param_len;
    return kt_not_offered("C_VerifyMessageBegin", h);
}

CK_RV C_VerifyMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR param,
                          CK_ULONG param_len, CK_BYTE_PTR data,
                          CK_ULONG data_len, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    (void)param, (void)param_len, (void)data, (void)data_len;
    (void)sig, (void)sig_len;
    return kt_not_offered("C_VerifyMessageNext", h);
}

CK_RV C_MessageVerifyFinal(CK_SESSION_HANDLE h)
{
    return kt_not_offered("C_MessageVerifyFinal", h);
}
