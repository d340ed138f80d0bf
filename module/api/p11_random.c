/* Random number generation (PKCS#11 v2.40 §5.15). */
#include "kt.h"

#include "ossl/ossl.h"

CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && seed == NULL && len > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    /* Mixed into OpenSSL's DRBG as additional input; it never replaces
     * the system entropy. */
    if (rv == CKR_OK)
        kt_ossl_seed(seed, len);
    kt_session_unref(s);
    return kt_trace("C_SeedRandom", rv);
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && out == NULL && len > 0)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (rv == CKR_OK)
        rv = kt_ossl_random(out, len);
    kt_session_unref(s);
    return kt_trace("C_GenerateRandom", rv);
}
