/*
 * The fixed-size strings of PKCS#11 (CK_INFO, CK_SLOT_INFO, CK_TOKEN_INFO:
 * labels, manufacturer, model, serial) are blank-padded and not
 * NUL-terminated (PKCS#11 v2.40 §3.2).
 */
#ifndef KT_COMMON_P11STR_H
#define KT_COMMON_P11STR_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

/* Writes src into the n bytes of dst, blank-padded; a longer src is cut. */
void kt_p11str_pad(CK_UTF8CHAR *dst, const char *src, size_t n);

/* Copies the n bytes of src into dst (at least n + 1 bytes) as a C string
 * without the trailing blanks (nor the NULs some tokens pad with). */
void kt_p11str_trim(char *dst, const CK_UTF8CHAR *src, size_t n);

#endif
