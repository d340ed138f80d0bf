/*
 * The one CK_RV -> {system, denied} table of libkeytier (DESIGN.md §2,
 * "Reading a DEP key").  Every token failure is classified here and nowhere
 * else: "denied" means the customer took its key away (destroyed it, turned
 * CKA_UNWRAP off, changed or locked the PIN, or the key refuses the wrapped
 * blob) and a user request must fail; "system" means the vault is not
 * answering properly (absent, broken, session lost, too slow) and the
 * availability key may cover the gap.  An unknown code is "system".
 */
#ifndef KT_CKR_CLASS_H
#define KT_CKR_CLASS_H

#include <p11-kit/pkcs11.h>

#include "keytier.h"

/*
 * Failures that are not a CK_RV returned by a token but still need a class.
 * They live in the vendor-defined range (PKCS#11 v2.40 §3.6) so that one
 * CK_RV variable can carry any token-call outcome through the library.
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

/* The class of a token-call outcome; unknown codes are KT_CKR_CLASS_SYSTEM. */
kt_ckr_class kt_ckr_classify(CK_RV rv);

/* "CKR_DEVICE_ERROR", "timeout", ...; "CKR_0x%08lx" style for unknown codes
 * is written to buf (at least KT_CKR_NAME_MAX bytes) and returned. */
#define KT_CKR_NAME_MAX 32
const char *kt_ckr_name(CK_RV rv, char buf[KT_CKR_NAME_MAX]);

/* "system", "denied" or "ok" */
const char *kt_ckr_class_name(kt_ckr_class cls);

/*
 * The outcome of a root-key operation that failed before or without a
 * token error code (the library checked attributes or the result itself),
 * as the CK_RV it stands for: rv itself when the token returned one;
 * otherwise KEYTIER_E_KEY_NOT_FOUND -> KT_CKR_NO_MATCH, KEYTIER_E_KEY_USAGE
 * -> CKR_KEY_FUNCTION_NOT_PERMITTED, KEYTIER_E_AUTH (the copy unwrapped to
 * another key) -> CKR_WRAPPED_KEY_INVALID, KEYTIER_E_TOKEN_NOT_FOUND,
 * KEYTIER_E_MODULE and KEYTIER_E_UNAVAILABLE (the token's module does not
 * answer) -> KT_CKR_UNREACHABLE, KEYTIER_OK -> CKR_OK, anything
 * else -> CKR_GENERAL_ERROR (system).
 */
CK_RV kt_ckr_from_err(keytier_err err, CK_RV rv);

/* Rows of the table, for tests that walk every row. */
typedef struct kt_ckr_row {
    CK_RV rv;
    kt_ckr_class cls;
    const char *name;
} kt_ckr_row;
const kt_ckr_row *kt_ckr_rows(size_t *count);

#endif
