/*
 * CK_RV names and classes for libkeytier: the table is common/ckr.h (one
 * table for the module and the library; the fallback rule acts on its
 * classes, lib/avail/fallback_rule.c).  Here only the library's own failures
 * are turned into the CK_RV they stand for.
 */
#ifndef KT_CKR_CLASS_H
#define KT_CKR_CLASS_H

#include "ckr.h"
#include "nodiscard.h"
#include "keytier.h"

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
KT_NODISCARD CK_RV kt_ckr_from_err(keytier_err err, CK_RV rv);

#endif
