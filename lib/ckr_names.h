/*
 * ckr_names.h - the symbolic name of any CK_RV (lib/ckr_names.c).
 */
#ifndef KT_CKR_NAMES_H
#define KT_CKR_NAMES_H

#include <p11-kit/pkcs11.h>

#define KT_CKR_FULL_NAME_MAX 32
/* "CKR_FUNCTION_NOT_SUPPORTED"; unknown codes are written to buf as
 * "CKR_0x%08lx" and buf is returned. */
const char *kt_ckr_full_name(CK_RV rv, char buf[KT_CKR_FULL_NAME_MAX]);

#endif
