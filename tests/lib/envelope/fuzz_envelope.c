/*
 * Envelope mutation test: 30,000 random mutations (bit flips, byte
 * overwrites, insertions, deletions, truncations, extensions, chunk
 * splices) of valid envelopes of several sizes, run as an ordinary test.
 * Every input must either open to exactly the sealed plaintext (only if
 * unchanged) or fail, with the output wiped or untouched; ASan/UBSan catch
 * memory errors.  The libFuzzer target for envelopes is
 * tests/fuzz/fuzz_envelope.c (with built envelopes that get past the
 * tags); this test keeps its own property, that no mutation of a sealed
 * envelope opens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "kt_lib.h"

static keytier_ctx fuzz_ctx;
static keytier_key *fuzz_key;

/* A key handle without tokens: the envelope layer needs only the key, its
 * ids and the chunk size. */
static void fuzz_init(void)
{
    if (fuzz_key != NULL)
        return;
    fuzz_ctx.cfg.chunk_size = 256;
    fuzz_key = calloc(1, sizeof *fuzz_key);
    fuzz_key->ctx = &fuzz_ctx;
    fuzz_key->info.level = 1;
    strcpy(fuzz_key->info.tenant, "org-1");
    strcpy(fuzz_key->info.key_id, "00112233-4455-4677-8899-aabbccddeeff");
    if (!kt_uuid_parse(fuzz_key->info.key_id, fuzz_key->key_id_bin) ||
        !kt_uuid_parse("10112233-4455-4677-8899-aabbccddeeff",
                       fuzz_key->dep_id_bin))
        abort();
    static const uint8_t k[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    fuzz_key->key = kt_secret_from(k, sizeof k);
    if (kt_envelope_key_init(fuzz_key) != KEYTIER_OK)
        abort();
}

static int fuzz_one(const uint8_t *data, size_t size, const uint8_t *want,
                    size_t want_len)
{
    static uint8_t out[1 << 16];
    size_t n = 0;
    char tenant[KEYTIER_TENANT_MAX + 1], kid[KEYTIER_ID_SIZE];
    if (keytier_envelope_peek(data, size, tenant, kid) == KEYTIER_OK &&
        strlen(tenant) > KEYTIER_TENANT_MAX)
        return -1;
    memset(out, 0xAA, sizeof out);
    keytier_err e =
        keytier_open(fuzz_key, "aad", 3, data, size, out, sizeof out, &n);
    if (e == KEYTIER_OK)
        return want != NULL && n == want_len && memcmp(out, want, n) == 0 ? 1
                                                                          : -1;
    for (size_t i = 0; i < sizeof out; i++)
        if (out[i] != 0xAA && out[i] != 0)
            return -1; /* something was released */
    return 0;
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int main(void)
{
    fuzz_init();
    static const size_t sizes[] = {0, 1, 100, 255, 256, 257, 700};
    static uint8_t pt[1024], env[4096], m[8192];
    uint32_t seed = 0x4b544556;
    long opened = 0, refused = 0;
    RAND_bytes(pt, sizeof pt);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t el;
        if (keytier_seal(fuzz_key, "aad", 3, pt, sizes[si], env, sizeof env,
                         &el) != KEYTIER_OK)
            return 1;
        if (fuzz_one(env, el, pt, sizes[si]) != 1)
            return 1;
        for (int it = 0; it < 4300; it++) {
            size_t ml = el;
            memcpy(m, env, el);
            int edits = 1 + (int)(rnd(&seed) % 3);
            for (int k = 0; k < edits; k++) {
                size_t pos = ml ? rnd(&seed) % ml : 0;
                switch (rnd(&seed) % 6) {
                case 0: /* bit flip */
                    if (ml)
                        m[pos] ^= (uint8_t)(1u << (rnd(&seed) % 8));
                    break;
                case 1: /* overwrite */
                    if (ml)
                        m[pos] = (uint8_t)rnd(&seed);
                    break;
                case 2: /* insert */
                    if (ml + 1 < sizeof m) {
                        memmove(m + pos + 1, m + pos, ml - pos);
                        m[pos] = (uint8_t)rnd(&seed);
                        ml++;
                    }
                    break;
                case 3: /* delete */
                    if (ml) {
                        memmove(m + pos, m + pos + 1, ml - pos - 1);
                        ml--;
                    }
                    break;
                case 4: /* truncate */
                    ml = pos;
                    break;
                default: /* extend with a copy of a stretch */
                    if (ml && ml + 64 < sizeof m) {
                        size_t from = rnd(&seed) % ml,
                               len = 1 + rnd(&seed) % 64;
                        if (from + len > ml)
                            len = ml - from;
                        memcpy(m + ml, m + from, len);
                        ml += len;
                    }
                }
            }
            bool same = ml == el && memcmp(m, env, el) == 0;
            int r = fuzz_one(m, ml, pt, sizes[si]);
            if (r < 0 || (r == 1 && !same) || (r == 0 && same)) {
                fprintf(stderr, "size %zu iteration %d: result %d (same %d)\n",
                        sizes[si], it, r, same);
                return 1;
            }
            r == 1 ? opened++ : refused++;
        }
    }
    printf("fuzz_envelope: %ld refused, %ld unchanged inputs opened\n", refused,
           opened);
    keytier_key_close(fuzz_key);
    return refused > 29000 ? 0 : 1;
}
