/* Blank-padded PKCS#11 strings (p11str.h). */
#include <string.h>

#include "p11str.h"

void kt_p11str_pad(CK_UTF8CHAR *dst, const char *src, size_t n)
{
    size_t len = strlen(src);

    memset(dst, ' ', n);
    memcpy(dst, src, len < n ? len : n);
}

void kt_p11str_trim(char *dst, const CK_UTF8CHAR *src, size_t n)
{
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
        n--;
    memcpy(dst, src, n);
    dst[n] = '\0';
}
