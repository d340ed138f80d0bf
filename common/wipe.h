/* Wiping secrets, for the module and the library alike. */
#ifndef KT_COMMON_WIPE_H
#define KT_COMMON_WIPE_H

#include <stddef.h>

/* Overwrites len bytes at p (OPENSSL_cleanse: not optimised away); p may
 * be NULL. */
void kt_wipe(void *p, size_t len);

#endif
