/* Encryption and decryption (PKCS#11 v2.40 §5.8-5.9). */
#include "kt.h"

static KT_NODISCARD CK_RV init_op(const char *fn, CK_SESSION_HANDLE h,
                                  enum kt_op_kind k, CK_MECHANISM_PTR mech,
                                  CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && mech == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_op_begin(s, k, mech, key);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

static KT_NODISCARD CK_RV run_op(const char *fn, CK_SESSION_HANDLE h,
                                 enum kt_op_kind k, bool update, CK_BYTE_PTR in,
                                 CK_ULONG in_len, CK_BYTE_PTR out,
                                 CK_ULONG_PTR out_len)
{
    struct kt_session *s = NULL;
    CK_RV rv =
        kt_op_session(h, k, (in != NULL || in_len == 0) && out_len != NULL, &s);
    if (rv == CKR_OK)
        rv = update ? kt_op_update(s, k, in, in_len, out, out_len)
                    : kt_op_oneshot(s, k, in, in_len, out, out_len);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

static KT_NODISCARD CK_RV final_op(const char *fn, CK_SESSION_HANDLE h,
                                   enum kt_op_kind k, CK_BYTE_PTR out,
                                   CK_ULONG_PTR out_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, k, out_len != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_finish(s, k, out, out_len);
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                    CK_OBJECT_HANDLE key)
{
    return init_op("C_EncryptInit", h, KT_OP_ENCRYPT, mech, key);
}

CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    return run_op("C_Encrypt", h, KT_OP_ENCRYPT, false, in, in_len, out,
                  out_len);
}

CK_RV C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                      CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    return run_op("C_EncryptUpdate", h, KT_OP_ENCRYPT, true, in, in_len, out,
                  out_len);
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    return final_op("C_EncryptFinal", h, KT_OP_ENCRYPT, out, out_len);
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                    CK_OBJECT_HANDLE key)
{
    return init_op("C_DecryptInit", h, KT_OP_DECRYPT, mech, key);
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    return run_op("C_Decrypt", h, KT_OP_DECRYPT, false, in, in_len, out,
                  out_len);
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                      CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    return run_op("C_DecryptUpdate", h, KT_OP_DECRYPT, true, in, in_len, out,
                  out_len);
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    return final_op("C_DecryptFinal", h, KT_OP_DECRYPT, out, out_len);
}

/* Dual-function operations (§5.12) are not offered. */
CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in,
                            CK_ULONG in_len, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
    (void)in, (void)in_len, (void)out, (void)out_len;
    return kt_not_offered("C_DigestEncryptUpdate", h);
}

CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in,
                            CK_ULONG in_len, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
    (void)in, (void)in_len, (void)out, (void)out_len;
    return kt_not_offered("C_DecryptDigestUpdate", h);
}

CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    (void)in, (void)in_len, (void)out, (void)out_len;
    return kt_not_offered("C_SignEncryptUpdate", h);
}

CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in,
                            CK_ULONG in_len, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
    (void)in, (void)in_len, (void)out, (void)out_len;
    return kt_not_offered("C_DecryptVerifyUpdate", h);
}
