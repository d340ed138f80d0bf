/*
 * The library's own failures as the CK_RV they stand for (ckr_class.h); the
 * names and classes of CK_RVs are in common/ckr.c.
 */
#include "ckr_class.h"

CK_RV kt_ckr_from_err(keytier_err err, CK_RV rv)
{
    if (err == KEYTIER_OK)
        return CKR_OK;
    if (rv != CKR_OK)
        return rv;
    switch (err) {
    case KEYTIER_E_KEY_NOT_FOUND:
        return KT_CKR_NO_MATCH;
    case KEYTIER_E_KEY_USAGE:
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    case KEYTIER_E_AUTH:
        return CKR_WRAPPED_KEY_INVALID;
    case KEYTIER_E_TOKEN_NOT_FOUND:
    case KEYTIER_E_MODULE:
    case KEYTIER_E_UNAVAILABLE: /* its module does not answer */
        return KT_CKR_UNREACHABLE;
    default:
        return CKR_GENERAL_ERROR;
    }
}
