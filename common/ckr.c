/*
 * The CK_RV table (ckr.h): one row per code, with its name and class.  The
 * classes of the token's codes are the library's decision on what a root
 * key's answer means; the fallback rule (lib/avail/fallback_rule.c) acts on
 * them.
 */
#include <stdio.h>

#include "ckr.h"

#define ROW(rv, cls)                                                           \
    {                                                                          \
        rv, KT_CKR_CLASS_##cls, #rv, 0                                         \
    }
#define UNWRAP(rv, cls, in_unwrap)                                             \
    {                                                                          \
        rv, KT_CKR_CLASS_##cls, #rv, in_unwrap                                 \
    }

static const kt_ckr_row kt_ckr_table[] = {
    ROW(CKR_OK, OK),
    ROW(CKR_CANCEL, SYSTEM),
    ROW(CKR_HOST_MEMORY, SYSTEM),
    ROW(CKR_SLOT_ID_INVALID, SYSTEM),
    /* A generic failure of C_UnwrapKey itself, on a key the token has just
     * found and served in the same session, is the key refusing the blob;
     * anywhere else it is an outage. */
    UNWRAP(CKR_GENERAL_ERROR, SYSTEM, KT_CKR_BLOB_REFUSED),
    UNWRAP(CKR_FUNCTION_FAILED, SYSTEM, KT_CKR_BLOB_REFUSED),
    ROW(CKR_ARGUMENTS_BAD, SYSTEM),
    ROW(CKR_NO_EVENT, SYSTEM),
    ROW(CKR_NEED_TO_CREATE_THREADS, SYSTEM),
    ROW(CKR_CANT_LOCK, SYSTEM),
    ROW(CKR_ATTRIBUTE_READ_ONLY, SYSTEM),
    /* the unwrapping key's template made the DEP key unreadable */
    ROW(CKR_ATTRIBUTE_SENSITIVE, DENIED),
    ROW(CKR_ATTRIBUTE_TYPE_INVALID, SYSTEM),
    ROW(CKR_ATTRIBUTE_VALUE_INVALID, SYSTEM),
    ROW(CKR_ACTION_PROHIBITED, DENIED),
    /* some tokens report a refused OAEP block as bad data */
    ROW(CKR_DATA_INVALID, DENIED),
    ROW(CKR_DATA_LEN_RANGE, DENIED),
    ROW(CKR_DEVICE_ERROR, SYSTEM),
    ROW(CKR_DEVICE_MEMORY, SYSTEM),
    ROW(CKR_DEVICE_REMOVED, SYSTEM),
    ROW(CKR_ENCRYPTED_DATA_INVALID, DENIED),
    ROW(CKR_ENCRYPTED_DATA_LEN_RANGE, DENIED),
    ROW(CKR_FUNCTION_CANCELED, SYSTEM),
    ROW(CKR_FUNCTION_NOT_PARALLEL, SYSTEM),
    ROW(CKR_FUNCTION_NOT_SUPPORTED, SYSTEM),
    ROW(CKR_KEY_HANDLE_INVALID, DENIED),
    ROW(CKR_KEY_SIZE_RANGE, SYSTEM),
    /* the URI now names a key of another type: the customer replaced it */
    ROW(CKR_KEY_TYPE_INCONSISTENT, DENIED),
    ROW(CKR_KEY_NOT_NEEDED, SYSTEM),
    ROW(CKR_KEY_CHANGED, SYSTEM),
    ROW(CKR_KEY_NEEDED, SYSTEM),
    ROW(CKR_KEY_INDIGESTIBLE, SYSTEM),
    /* CKA_UNWRAP (or CKA_DECRYPT) turned off: PKCS#11 v2.40 §5.2 */
    ROW(CKR_KEY_FUNCTION_NOT_PERMITTED, DENIED),
    ROW(CKR_KEY_NOT_WRAPPABLE, SYSTEM),
    ROW(CKR_KEY_UNEXTRACTABLE, DENIED),
    /* the customer restricted the root (CKA_ALLOWED_MECHANISMS, a
       CKA_UNWRAP_TEMPLATE the unwrapped key cannot meet, a policy): the
       mechanism and template worked when the DEP was created */
    ROW(CKR_MECHANISM_INVALID, DENIED),
    ROW(CKR_MECHANISM_PARAM_INVALID, DENIED),
    /* the key is gone: destroyed, or the URI no longer names it */
    ROW(CKR_OBJECT_HANDLE_INVALID, DENIED),
    ROW(CKR_OPERATION_ACTIVE, SYSTEM),
    ROW(CKR_OPERATION_NOT_INITIALIZED, SYSTEM),
    /* login refused: PIN changed, locked, expired; token reinitialised */
    ROW(CKR_PIN_INCORRECT, DENIED),
    ROW(CKR_PIN_INVALID, DENIED),
    ROW(CKR_PIN_LEN_RANGE, DENIED),
    ROW(CKR_PIN_EXPIRED, DENIED),
    ROW(CKR_PIN_LOCKED, DENIED),
    ROW(CKR_SESSION_CLOSED, SYSTEM),
    ROW(CKR_SESSION_COUNT, SYSTEM),
    ROW(CKR_SESSION_HANDLE_INVALID, SYSTEM),
    ROW(CKR_SESSION_PARALLEL_NOT_SUPPORTED, SYSTEM),
    ROW(CKR_SESSION_READ_ONLY, SYSTEM),
    ROW(CKR_SESSION_EXISTS, SYSTEM),
    ROW(CKR_SESSION_READ_ONLY_EXISTS, SYSTEM),
    ROW(CKR_SESSION_READ_WRITE_SO_EXISTS, SYSTEM),
    ROW(CKR_SIGNATURE_INVALID, SYSTEM),
    ROW(CKR_SIGNATURE_LEN_RANGE, SYSTEM),
    ROW(CKR_TEMPLATE_INCOMPLETE, SYSTEM),
    ROW(CKR_TEMPLATE_INCONSISTENT, DENIED),
    ROW(CKR_TOKEN_NOT_PRESENT, SYSTEM),
    ROW(CKR_TOKEN_NOT_RECOGNIZED, SYSTEM),
    ROW(CKR_TOKEN_WRITE_PROTECTED, SYSTEM),
    ROW(CKR_UNWRAPPING_KEY_HANDLE_INVALID, DENIED),
    ROW(CKR_UNWRAPPING_KEY_SIZE_RANGE, DENIED),
    ROW(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, DENIED),
    ROW(CKR_USER_ALREADY_LOGGED_IN, SYSTEM),
    ROW(CKR_USER_NOT_LOGGED_IN, SYSTEM),
    ROW(CKR_USER_PIN_NOT_INITIALIZED, DENIED),
    ROW(CKR_USER_TYPE_INVALID, SYSTEM),
    ROW(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, SYSTEM),
    ROW(CKR_USER_TOO_MANY_TYPES, SYSTEM),
    /* the key refuses the wrapped DEP key (rolled or replaced root) */
    ROW(CKR_WRAPPED_KEY_INVALID, DENIED),
    ROW(CKR_WRAPPED_KEY_LEN_RANGE, DENIED),
    ROW(CKR_WRAPPING_KEY_HANDLE_INVALID, SYSTEM),
    ROW(CKR_WRAPPING_KEY_SIZE_RANGE, SYSTEM),
    ROW(CKR_WRAPPING_KEY_TYPE_INCONSISTENT, SYSTEM),
    ROW(CKR_RANDOM_SEED_NOT_SUPPORTED, SYSTEM),
    ROW(CKR_RANDOM_NO_RNG, SYSTEM),
    ROW(CKR_DOMAIN_PARAMS_INVALID, SYSTEM),
    ROW(CKR_CURVE_NOT_SUPPORTED, SYSTEM),
    ROW(CKR_BUFFER_TOO_SMALL, SYSTEM),
    ROW(CKR_SAVED_STATE_INVALID, SYSTEM),
    ROW(CKR_INFORMATION_SENSITIVE, SYSTEM),
    ROW(CKR_STATE_UNSAVEABLE, SYSTEM),
    ROW(CKR_CRYPTOKI_NOT_INITIALIZED, SYSTEM),
    ROW(CKR_CRYPTOKI_ALREADY_INITIALIZED, SYSTEM),
    ROW(CKR_MUTEX_BAD, SYSTEM),
    ROW(CKR_MUTEX_NOT_LOCKED, SYSTEM),
    ROW(CKR_NEW_PIN_MODE, SYSTEM),
    ROW(CKR_NEXT_OTP, SYSTEM),
    ROW(CKR_EXCEEDED_MAX_ITERATIONS, SYSTEM),
    ROW(CKR_FIPS_SELF_TEST_FAILED, SYSTEM),
    ROW(CKR_LIBRARY_LOAD_FAILED, SYSTEM),
    ROW(CKR_PIN_TOO_WEAK, SYSTEM),
    ROW(CKR_PUBLIC_KEY_INVALID, SYSTEM),
    ROW(CKR_FUNCTION_REJECTED, SYSTEM),
    ROW(CKR_VENDOR_DEFINED, SYSTEM),

    /* outcomes of the library's own calls */
    {KT_CKR_TIMEOUT, KT_CKR_CLASS_SYSTEM, "timeout", 0},
    {KT_CKR_UNREACHABLE, KT_CKR_CLASS_SYSTEM, "token unreachable", 0},
    {KT_CKR_NO_MATCH, KT_CKR_CLASS_DENIED, "no matching key", 0},
    {KT_CKR_TOKEN_HUNG, KT_CKR_CLASS_SYSTEM, "token hung", 0},
    {KT_CKR_NOT_STARTED, KT_CKR_CLASS_SYSTEM, "deadline passed", 0},
    {KT_CKR_BLOB_REFUSED, KT_CKR_CLASS_DENIED, "wrapped key refused", 0},
};

const kt_ckr_row *kt_ckr_rows(size_t *count)
{
    *count = sizeof kt_ckr_table / sizeof kt_ckr_table[0];
    return kt_ckr_table;
}

const kt_ckr_row *kt_ckr_find(CK_RV rv)
{
    for (size_t i = 0; i < sizeof kt_ckr_table / sizeof kt_ckr_table[0]; i++)
        if (kt_ckr_table[i].rv == rv)
            return &kt_ckr_table[i];
    return NULL;
}

kt_ckr_class kt_ckr_classify(CK_RV rv)
{
    const kt_ckr_row *row = kt_ckr_find(rv);

    /* An unknown code is an outage, never a revocation. */
    return row ? row->cls : KT_CKR_CLASS_SYSTEM;
}

const char *kt_ckr_name(CK_RV rv, char buf[KT_CKR_NAME_MAX])
{
    const kt_ckr_row *row = kt_ckr_find(rv);

    if (row)
        return row->name;
    snprintf(buf, KT_CKR_NAME_MAX, "CKR_0x%08lx", (unsigned long)rv);
    return buf;
}

CK_RV kt_ckr_unwrap_outcome(CK_RV rv)
{
    const kt_ckr_row *row = kt_ckr_find(rv);

    return row && row->in_unwrap ? row->in_unwrap : rv;
}

const char *kt_ckr_class_name(kt_ckr_class cls)
{
    switch (cls) {
    case KT_CKR_CLASS_OK:
        return "ok";
    case KT_CKR_CLASS_DENIED:
        return "denied";
    case KT_CKR_CLASS_SYSTEM:
        break;
    }
    return "system";
}
