/* Fuzz target: envelopes as keytier_open and keytier_envelope_peek read
 * them (lib/envelope/ENVELOPE.md), from callers and storage anyone may
 * have edited. The first byte picks the mode:
 *   even: the rest is an envelope, given as is;
 *   odd:  the rest describes an envelope that fuzz_env.h builds under the
 *         known key: header fields from the input (each field real or
 *         fuzzed), chunks sealed with valid tags, then chunk-sequence
 *         edits (swap, drop, repeat, wrong index, wrong final flag, cut,
 *         append, bit flip), so that inputs get past the tags.
 * Properties: an envelope opens only when it is one the key sealed and
 * unchanged, to exactly its plaintext; a built envelope gives the result
 * the builder predicts (the header's error in the reader's order, else
 * AUTH or TRUNCATED for any edit); a failed open leaves the output buffer
 * untouched or wiped; peek agrees with the header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Opens env; aborts on a broken property. Returns the result. */
static keytier_err open_checked(const uint8_t *env, size_t len, uint8_t *out,
                                size_t cap, size_t *out_len)
{
    keytier_key *k = fe_key_get();
    char tenant[KEYTIER_TENANT_MAX + 1], kid[KEYTIER_ID_SIZE];
    keytier_err p = keytier_envelope_peek(env, len, tenant, kid);
    if (p == KEYTIER_OK && (strlen(tenant) == 0 || strlen(tenant) != env[11] ||
                            memcmp(tenant, env + 12, env[11]) != 0))
        abort(); /* peek returned another tenant than the header's */
    memset(out, 0xAA, cap);
    *out_len = 0;
    keytier_err e =
        keytier_open(k, FE_AAD, FE_AAD_LEN, env, len, out, cap, out_len);
    if (e == KEYTIER_OK) {
        if (p != KEYTIER_OK || strcmp(tenant, FE_TENANT) != 0 ||
            strcmp(kid, FE_KEY_ID) != 0 || *out_len > cap)
            abort(); /* opened an envelope that does not name the key */
        return e;
    }
    if (!fe_refusal(e) && e != KEYTIER_E_BUFFER)
        abort();
    for (size_t i = 0; i < cap; i++)
        if (out[i] != 0xAA && out[i] != 0)
            abort(); /* something was released */
    return e;
}

/* An envelope that opened reseals to one that opens to the same bytes. */
static void reseal(const uint8_t *pt, size_t n)
{
    keytier_key *k = fe_key_get();
    size_t cap = keytier_seal_bound(k, n), el = 0, got = 0;
    uint8_t *env = malloc(cap), *back = malloc(n + 1);
    if (keytier_seal(k, FE_AAD, FE_AAD_LEN, pt, n, env, cap, &el) !=
            KEYTIER_OK ||
        keytier_open(k, FE_AAD, FE_AAD_LEN, env, el, back, n, &got) !=
            KEYTIER_OK ||
        got != n || memcmp(back, pt, n) != 0)
        abort();
    free(env);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0) {
        size_t cap = size, n = 0;
        uint8_t *out = malloc(cap + 1);
        if (open_checked(data + 1, size - 1, out, cap, &n) == KEYTIER_OK)
            reseal(out, n);
        free(out);
        return 0;
    }
    struct fe_built b;
    fe_build(data + 1, size - 1, 1 << 16, &b);
    size_t cap = b.len + 1, n = 0; /* room for what any edit implies */
    uint8_t *out = malloc(cap);
    keytier_err e = open_checked(b.env, b.len, out, cap, &n);
    if (!fe_agrees(&b, e)) {
        fprintf(stderr, "built envelope: expected %s, got %s\n",
                keytier_error_name(b.expect), keytier_error_name(e));
        abort();
    }
    if (e == KEYTIER_OK && (n != b.pt_len || memcmp(out, b.pt, n) != 0))
        abort(); /* opened to other bytes than were sealed */
    free(out);
    fe_built_free(&b);
    return 0;
}
