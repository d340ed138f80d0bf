/*
 * The one CK_RV table of keytier: every code's symbolic name and the class
 * the library gives it when a customer root key answers with it.  Both the
 * module (log lines) and the library (error text, audit records, the
 * fallback rule's inputs) read it; nothing else names or classifies a
 * CK_RV.
 *
 * The classes: "denied" means the customer took its key away (destroyed
 * it, turned CKA_UNWRAP off, changed or locked the PIN, or the key refuses
 * the wrapped blob) and a user request must fail; "system" means the vault
 * is not answering properly (absent, broken, session lost, too slow) and
 * the availability key may cover the gap.  An unknown code is "system".
 */
#ifndef KT_COMMON_CKR_H
#define KT_COMMON_CKR_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

/*
 * Outcomes of a token call that are not a CK_RV a token returns but still
 * need a name and a class.  They live in the vendor-defined range (PKCS#11
 * v2.40 §3.6) so that one CK_RV variable can carry any outcome.
 */
#define KT_CKR_BASE (CKR_VENDOR_DEFINED | 0x4b540000UL)
/* the call did not return before its deadline; its late result is dropped */
#define KT_CKR_TIMEOUT (KT_CKR_BASE | 0x01UL)
/* the module could not be loaded or its server cannot be reached */
#define KT_CKR_UNREACHABLE (KT_CKR_BASE | 0x02UL)
/* no object on the token matches the root key's URI */
#define KT_CKR_NO_MATCH (KT_CKR_BASE | 0x03UL)
/* too many calls to this token are hung already: refused without trying */
#define KT_CKR_TOKEN_HUNG (KT_CKR_BASE | 0x04UL)
/* the call was not started because the request's deadline had passed */
#define KT_CKR_NOT_STARTED (KT_CKR_BASE | 0x05UL)
/* C_UnwrapKey failed with a generic code (CKR_GENERAL_ERROR,
 * CKR_FUNCTION_FAILED) on a session and key the token had just served:
 * the key refused the wrapped blob. SoftHSM2 2.6 answers a blob that does
 * not unwrap under the key (a root replaced under the same URI) this way. */
#define KT_CKR_BLOB_REFUSED (KT_CKR_BASE | 0x06UL)

typedef enum kt_ckr_class {
    KT_CKR_CLASS_OK = 0, /* CKR_OK: not a failure */
    KT_CKR_CLASS_SYSTEM, /* outage: availability key may be used */
    KT_CKR_CLASS_DENIED, /* revocation: user requests fail */
} kt_ckr_class;

typedef struct kt_ckr_row {
    CK_RV rv;
    kt_ckr_class cls;
    const char *name; /* "CKR_PIN_LOCKED", "timeout" */
    /* what a failed C_UnwrapKey with this code stands for, when a root key
     * the token has just found and served answers it (0: rv itself) */
    CK_RV in_unwrap;
} kt_ckr_row;

/* Every row: each CK_RV of PKCS#11 v2.40, then the KT_CKR_* outcomes. */
const kt_ckr_row *kt_ckr_rows(size_t *count);

/* The row of rv, or NULL for a code the table does not know. */
const kt_ckr_row *kt_ckr_find(CK_RV rv);

/* The class of a token-call outcome; unknown codes are KT_CKR_CLASS_SYSTEM. */
kt_ckr_class kt_ckr_classify(CK_RV rv);

/* The name of rv; an unknown code is written to buf (at least
 * KT_CKR_NAME_MAX bytes) as "CKR_0x%08lx" and buf is returned. */
#define KT_CKR_NAME_MAX 32
const char *kt_ckr_name(CK_RV rv, char buf[KT_CKR_NAME_MAX]);

/* The code a failed C_UnwrapKey stands for (KT_CKR_BLOB_REFUSED for a
 * generic failure of a key that was just found), else rv itself. */
CK_RV kt_ckr_unwrap_outcome(CK_RV rv);

/* "system", "denied" or "ok" */
const char *kt_ckr_class_name(kt_ckr_class cls);

#endif
