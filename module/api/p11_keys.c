/* Key management (PKCS#11 v2.40 §5.13). */
#include "kt.h"
#include "kt_asym.h" /* key pairs, ECDH */

CK_RV C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                    CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && (mech == NULL || (t == NULL && n > 0) || out == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_keys_generate(s, mech, t, n, out);
    kt_session_unref(s);
    return kt_trace("C_GenerateKey", rv);
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                        CK_ATTRIBUTE_PTR pub_t, CK_ULONG pub_n,
                        CK_ATTRIBUTE_PTR priv_t, CK_ULONG priv_n,
                        CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK &&
        (mech == NULL || (pub_t == NULL && pub_n > 0) ||
         (priv_t == NULL && priv_n > 0) || pub == NULL || priv == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_keys_generate_pair(s, mech, pub_t, pub_n, priv_t, priv_n, pub,
                                   priv);
    kt_session_unref(s);
    return kt_trace("C_GenerateKeyPair", rv);
}

CK_RV C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && (mech == NULL || out_len == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_keys_wrap(s, mech, wrapping, key, out, out_len);
    kt_session_unref(s);
    return kt_trace("C_WrapKey", rv);
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                  CK_OBJECT_HANDLE unwrapping, CK_BYTE_PTR wrapped,
                  CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                  CK_OBJECT_HANDLE_PTR out)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && (mech == NULL || (wrapped == NULL && wrapped_len > 0) ||
                         (t == NULL && n > 0) || out == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_keys_unwrap(s, mech, unwrapping, wrapped, wrapped_len, t, n,
                            out);
    kt_session_unref(s);
    return kt_trace("C_UnwrapKey", rv);
}

CK_RV C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                  CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                  CK_OBJECT_HANDLE_PTR out)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && (mech == NULL || (t == NULL && n > 0) || out == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_derive_symmetric(mech->mechanism)
                 ? kt_keys_derive_sym(s, mech, base, t, n, out)
                 : kt_keys_derive(s, mech, base, t, n, out);
    kt_session_unref(s);
    return kt_trace("C_DeriveKey", rv);
}
