/* Message digesting (PKCS#11 v2.40 §5.10). */
#include "kt.h"

#include <string.h>

CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && mech == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_op_begin(s, KT_OP_DIGEST, mech, CK_INVALID_HANDLE);
    kt_session_unref(s);
    return kt_trace("C_DigestInit", rv);
}

CK_RV C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len,
               CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_DIGEST,
                             (data != NULL || len == 0) && out_len != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_oneshot(s, KT_OP_DIGEST, data, len, out, out_len);
    kt_session_unref(s);
    return kt_trace("C_Digest", rv);
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_DIGEST, part != NULL || len == 0, &s);
    if (rv == CKR_OK)
        rv = kt_op_update(s, KT_OP_DIGEST, part, len, NULL, NULL);
    kt_session_unref(s);
    return kt_trace("C_DigestUpdate", rv);
}

CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
    struct kt_session *s = NULL;
    struct kt_key k;
    memset(&k, 0, sizeof(k));
    kt_attrs_init(&k.attrs);
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK && !kt_op_active(s, KT_OP_DIGEST)) {
        kt_session_unref(s);
        return kt_trace("C_DigestKey", CKR_OPERATION_NOT_INITIALIZED);
    }
    if (rv == CKR_OK)
        rv = kt_key_snapshot(s->token, key, 0, &k);
    /* A digest of a key is key material leaving the token: only keys that
     * may be read may be digested. */
    if (rv == CKR_OK && (k.cls != CKO_SECRET_KEY || k.value == NULL ||
                         kt_attrs_get_bool(&k.attrs, CKA_SENSITIVE, true) ||
                         !kt_attrs_get_bool(&k.attrs, CKA_EXTRACTABLE, false)))
        rv = CKR_KEY_INDIGESTIBLE;
    if (rv == CKR_OK)
        rv = kt_op_update(s, KT_OP_DIGEST, k.value, k.value_len, NULL, NULL);
    else if (s != NULL)
        kt_op_abort(s, KT_OP_DIGEST); /* an error ends the digest (§5.10) */
    kt_key_clear(&k);
    kt_session_unref(s);
    return kt_trace("C_DigestKey", rv);
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_op_session(h, KT_OP_DIGEST, out_len != NULL, &s);
    if (rv == CKR_OK)
        rv = kt_op_finish(s, KT_OP_DIGEST, out, out_len);
    kt_session_unref(s);
    return kt_trace("C_DigestFinal", rv);
}
