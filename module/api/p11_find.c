/* Object search (PKCS#11 v2.40 §5.7): the match runs over the in-memory
 * index once at C_FindObjectsInit; C_FindObjects pages the result. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && t == NULL && n > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv != CKR_OK)
        goto out;
    pthread_mutex_lock(&s->lock);
    if (s->find.active)
        rv = CKR_OPERATION_ACTIVE;
    else
        rv = kt_find_init(s, t, n);
    pthread_mutex_unlock(&s->lock);
out:
    kt_session_unref(s);
    return kt_trace("C_FindObjectsInit", rv);
}

CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                    CK_ULONG_PTR count)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && ((out == NULL && max > 0) || count == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv != CKR_OK)
        goto out;
    pthread_mutex_lock(&s->lock);
    if (!s->find.active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else {
        size_t left = s->find.n - s->find.pos;
        size_t k = left < max ? left : max;
        if (k > 0)
            memcpy(out, s->find.handles + s->find.pos, k * sizeof(*out));
        s->find.pos += k;
        *count = k;
    }
    pthread_mutex_unlock(&s->lock);
out:
    kt_session_unref(s);
    return kt_trace("C_FindObjects", rv);
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv != CKR_OK)
        goto out;
    pthread_mutex_lock(&s->lock);
    if (!s->find.active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else {
        free(s->find.handles);
        memset(&s->find, 0, sizeof(s->find));
    }
    pthread_mutex_unlock(&s->lock);
out:
    kt_session_unref(s);
    return kt_trace("C_FindObjectsFinal", rv);
}
