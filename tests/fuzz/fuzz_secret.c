/* Fuzz target: the protected-secret format of keyset secrets ("KTS1",
 * kt_sec_parse), which keytier_secret_unprotect reads from callers before
 * any key is looked up. Properties: a header that parses has the layout
 * keytier.h gives (magic, name length, name, non-zero big-endian version,
 * nonce) with room for the tag; every other input is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secrets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The layout of keytier.h, read independently: the header length, or 0. */
static size_t reference_header(const uint8_t *d, size_t n, uint32_t *version)
{
    if (n < 5 || memcmp(d, "KTS1", 4) != 0 || d[4] > KT_KEYSET_NAME_MAX)
        return 0;
    size_t v = 5 + (size_t)d[4];
    if (n < v + 4)
        return 0;
    *version = (uint32_t)d[v] << 24 | (uint32_t)d[v + 1] << 16 |
               (uint32_t)d[v + 2] << 8 | d[v + 3];
    size_t hdr = v + 4 + KT_SEC_NONCE;
    if (*version == 0 || n < hdr + KT_SEC_TAG)
        return 0;
    return hdr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[KT_KEYSET_NAME_MAX + 1];
    uint32_t version = 0, ref_version = 0;
    size_t hdr_len = 0;
    bool ok = kt_sec_parse(data, size, name, &version, &hdr_len);
    size_t ref = reference_header(data, size, &ref_version);
    if (ok != (ref != 0))
        abort();
    if (!ok)
        return 0;
    if (hdr_len != ref || version != ref_version || strlen(name) > data[4] ||
        memcmp(name, data + 5, strlen(name)) != 0)
        abort();
    return 0;
}
