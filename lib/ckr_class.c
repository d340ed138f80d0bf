/*
 * The CK_RV -> {system, denied} table (DESIGN.md §2).  Keep it the only
 * place that decides whether a token failure is an outage or a revocation.
 */
#include <stdio.h>

#include "ckr_class.h"

#define ROW(rv, cls)                                                           \
    {                                                                          \
        rv, KT_CKR_CLASS_##cls, #rv                                            \
    }

static const kt_ckr_row kt_ckr_table[] = {
    ROW(CKR_OK, OK),

    /* The key is gone: destroyed, or the URI no longer names it. */
    ROW(CKR_OBJECT_HANDLE_INVALID, DENIED),
    ROW(CKR_KEY_HANDLE_INVALID, DENIED),
    {KT_CKR_NO_MATCH, KT_CKR_CLASS_DENIED, "no matching key"},
    /* The URI now names a key of another type: the customer replaced it. */
    ROW(CKR_KEY_TYPE_INCONSISTENT, DENIED),
    /* CKA_UNWRAP (or CKA_DECRYPT) turned off: PKCS#11 v2.40 §5.2. */
    ROW(CKR_KEY_FUNCTION_NOT_PERMITTED, DENIED),
    /* Login refused: PIN changed, locked, expired; token reinitialised. */
    ROW(CKR_PIN_INCORRECT, DENIED),
    ROW(CKR_PIN_INVALID, DENIED),
    ROW(CKR_PIN_LEN_RANGE, DENIED),
    ROW(CKR_PIN_EXPIRED, DENIED),
    ROW(CKR_PIN_LOCKED, DENIED),
    ROW(CKR_USER_PIN_NOT_INITIALIZED, DENIED),
    /* The key refuses the wrapped DEP key (rolled or replaced root). */
    ROW(CKR_WRAPPED_KEY_INVALID, DENIED),
    ROW(CKR_WRAPPED_KEY_LEN_RANGE, DENIED),
    ROW(CKR_ENCRYPTED_DATA_INVALID, DENIED),
    ROW(CKR_ENCRYPTED_DATA_LEN_RANGE, DENIED),
    ROW(CKR_UNWRAPPING_KEY_HANDLE_INVALID, DENIED),
    ROW(CKR_UNWRAPPING_KEY_SIZE_RANGE, DENIED),
    ROW(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, DENIED),
    {KT_CKR_BLOB_REFUSED, KT_CKR_CLASS_DENIED, "wrapped key refused"},
    /* Some tokens report a refused OAEP block as bad data. */
    ROW(CKR_DATA_INVALID, DENIED),
    ROW(CKR_DATA_LEN_RANGE, DENIED),
    /* The customer restricted the root: CKA_ALLOWED_MECHANISMS, an
     * CKA_UNWRAP_TEMPLATE the unwrapped key cannot meet, a policy. The
     * mechanism and template worked when the DEP was created. */
    ROW(CKR_MECHANISM_INVALID, DENIED),
    ROW(CKR_MECHANISM_PARAM_INVALID, DENIED),
    ROW(CKR_TEMPLATE_INCONSISTENT, DENIED),
    ROW(CKR_ACTION_PROHIBITED, DENIED),
    /* The unwrapping key's template made the DEP key unreadable. */
    ROW(CKR_ATTRIBUTE_SENSITIVE, DENIED),
    ROW(CKR_KEY_UNEXTRACTABLE, DENIED),

    /* The vault is absent, broken or lost our session. */
    ROW(CKR_DEVICE_ERROR, SYSTEM),
    ROW(CKR_DEVICE_MEMORY, SYSTEM),
    ROW(CKR_DEVICE_REMOVED, SYSTEM),
    ROW(CKR_TOKEN_NOT_PRESENT, SYSTEM),
    ROW(CKR_TOKEN_NOT_RECOGNIZED, SYSTEM),
    ROW(CKR_SLOT_ID_INVALID, SYSTEM),
    ROW(CKR_SESSION_HANDLE_INVALID, SYSTEM),
    ROW(CKR_SESSION_CLOSED, SYSTEM),
    ROW(CKR_SESSION_COUNT, SYSTEM),
    ROW(CKR_USER_NOT_LOGGED_IN, SYSTEM),
    ROW(CKR_GENERAL_ERROR, SYSTEM),
    ROW(CKR_FUNCTION_FAILED, SYSTEM),
    ROW(CKR_HOST_MEMORY, SYSTEM),
    ROW(CKR_CRYPTOKI_NOT_INITIALIZED, SYSTEM),
    ROW(CKR_FUNCTION_CANCELED, SYSTEM),
    ROW(CKR_OPERATION_ACTIVE, SYSTEM),
    {KT_CKR_TIMEOUT, KT_CKR_CLASS_SYSTEM, "timeout"},
    {KT_CKR_UNREACHABLE, KT_CKR_CLASS_SYSTEM, "token unreachable"},
    {KT_CKR_TOKEN_HUNG, KT_CKR_CLASS_SYSTEM, "token hung"},
    {KT_CKR_NOT_STARTED, KT_CKR_CLASS_SYSTEM, "deadline passed"},
};

static const kt_ckr_row *kt_ckr_find(CK_RV rv)
{
    for (size_t i = 0; i < sizeof kt_ckr_table / sizeof kt_ckr_table[0]; i++)
        if (kt_ckr_table[i].rv == rv)
            return &kt_ckr_table[i];
    return NULL;
}

kt_ckr_class kt_ckr_classify(CK_RV rv)
{
    const kt_ckr_row *row = kt_ckr_find(rv);

    /* DESIGN.md §2: an unknown code is an outage, never a revocation. */
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

const kt_ckr_row *kt_ckr_rows(size_t *count)
{
    *count = sizeof kt_ckr_table / sizeof kt_ckr_table[0];
    return kt_ckr_table;
}

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
    case KEYTIER_E_UNAVAILABLE: /* Its module does not answer */
        return KT_CKR_UNREACHABLE;
    default:
        return CKR_GENERAL_ERROR;
    }
}
