/* Wiping secrets (wipe.h). */
#include <openssl/crypto.h>

#include "wipe.h"

void kt_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        OPENSSL_cleanse(p, len);
}
