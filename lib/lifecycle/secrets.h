/*
 * The protected-secret format of keyset secrets ("KTS1", keytier.h block
 * "lifecycle"), for the code that reads it and its fuzz target.
 */
#ifndef KT_SECRETS_H
#define KT_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define KT_SEC_MAGIC "KTS1"
#define KT_SEC_NONCE 12
#define KT_SEC_TAG   16

/* Reads the header of a protected secret: the keyset name (NUL-terminated),
 * the key version (never 0) and the header's length through the nonce.
 * False when env is not a protected secret (bad magic, a name longer than
 * KT_KEYSET_NAME_MAX, version 0, or no room for nonce and tag). */
bool kt_sec_parse(const void *env, size_t env_len,
                  char name[KT_KEYSET_NAME_MAX + 1], uint32_t *version,
                  size_t *hdr_len);

#endif
