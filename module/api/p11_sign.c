/* Signing and verification (PKCS#11 v2.40 §5.11-5.12). */
#include "kt.h"

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                 CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_enter(h, mech != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_begin(s, KT_OP_SIGN, mech, key);
    kt_session_unref(s);
    return kt_trace("C_SignInit", rv);
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len,
             CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_SIGN,
                             (data != NULL || len == 0) && sig_len != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_oneshot(s, KT_OP_SIGN, data, len, sig, sig_len);
    kt_session_unref(s);
    return kt_trace("C_Sign", rv);
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_SIGN, part != NULL || len == 0, &s);
    if (rv == CKR_OK)
        rv = kt_op_update(s, KT_OP_SIGN, part, len, NULL, NULL);
    kt_session_unref(s);
    return kt_trace("C_SignUpdate", rv);
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_SIGN, sig_len != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_finish(s, KT_OP_SIGN, sig, sig_len);
    kt_session_unref(s);
    return kt_trace("C_SignFinal", rv);
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                   CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_enter(h, mech != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_begin(s, KT_OP_VERIFY, mech, key);
    kt_session_unref(s);
    return kt_trace("C_VerifyInit", rv);
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len,
               CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(
        h, KT_OP_VERIFY,
        (data != NULL || len == 0) && (sig != NULL || sig_len == 0), &s);
    if (rv == CKR_OK)
        rv = kt_op_verify_oneshot(s, data, len, sig, sig_len);
    kt_session_unref(s);
    return kt_trace("C_Verify", rv);
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_VERIFY, part != NULL || len == 0, &s);
    if (rv == CKR_OK)
        rv = kt_op_update(s, KT_OP_VERIFY, part, len, NULL, NULL);
    kt_session_unref(s);
    return kt_trace("C_VerifyUpdate", rv);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_VERIFY, sig != NULL || sig_len == 0, &s);
    if (rv == CKR_OK)
        rv = kt_op_verify_finish(s, sig, sig_len);
    kt_session_unref(s);
    return kt_trace("C_VerifyFinal", rv);
}

/* No mechanism of this token signs with message recovery. */
CK_RV C_SignRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                        CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    (void)key;
    CK_RV rv = kt_session_enter(h, mech != NULL, &s);
    if (rv == CKR_OK)
        rv = CKR_MECHANISM_INVALID;
    kt_session_unref(s);
    return kt_trace("C_SignRecoverInit", rv);
}

CK_RV C_SignRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len,
                    CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    struct kt_session *s = NULL;
    (void)sig;
    CK_RV rv =
        kt_session_enter(h, (data != NULL || len == 0) && sig_len != NULL, &s);
    if (rv == CKR_OK)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    kt_session_unref(s);
    return kt_trace("C_SignRecover", rv);
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                          CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    (void)key;
    CK_RV rv = kt_session_enter(h, mech != NULL, &s);
    if (rv == CKR_OK)
        rv = CKR_MECHANISM_INVALID;
    kt_session_unref(s);
    return kt_trace("C_VerifyRecoverInit", rv);
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len,
                      CK_BYTE_PTR data, CK_ULONG_PTR len)
{
    struct kt_session *s = NULL;
    (void)data;
    CK_RV rv =
        kt_session_enter(h, (sig != NULL || sig_len == 0) && len != NULL, &s);
    if (rv == CKR_OK)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    kt_session_unref(s);
    return kt_trace("C_VerifyRecover", rv);
}
