/* Object management (PKCS#11 v2.40 §5.7). */
#include "kt.h"

CK_RV C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR out)
{
    struct kt_session *s = NULL;
    kt_attrs a;
    kt_attrs_init(&a);
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && ((t == NULL && n > 0) || out == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_attrs_from_template(&a, t, n);
    if (rv == CKR_OK)
        rv = kt_object_create(s, &a, KT_CREATE_OBJECT, NULL, NULL, out);
    kt_attrs_clear(&a);
    kt_session_unref(s);
    return kt_trace("C_CreateObject", rv);
}

CK_RV C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                   CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && ((t == NULL && n > 0) || out == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_object_copy(s, obj, t, n, out);
    kt_session_unref(s);
    return kt_trace("C_CopyObject", rv);
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_object_destroy(s, obj);
    kt_session_unref(s);
    return kt_trace("C_DestroyObject", rv);
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                      CK_ULONG_PTR size)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && size == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_object_size(s, obj, size);
    kt_session_unref(s);
    return kt_trace("C_GetObjectSize", rv);
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                          CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && t == NULL && n > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_object_get(s, obj, t, n);
    kt_session_unref(s);
    return kt_trace("C_GetAttributeValue", rv);
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                          CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && t == NULL && n > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_object_set(s, obj, t, n);
    kt_session_unref(s);
    return kt_trace("C_SetAttributeValue", rv);
}
