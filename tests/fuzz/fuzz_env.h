/* What the envelope and stream fuzz targets share (and the corpus
 * generator): one key handle without tokens, and a structure-aware
 * builder that turns fuzz bytes into an envelope whose header fields come
 * from the input and whose chunks are encrypted and tagged here, with an
 * implementation of lib/envelope/ENVELOPE.md independent of envelope.c,
 * under the known key. Since the header is every chunk's AAD, tampering
 * with raw bytes fails at the first tag; built envelopes carry valid tags
 * over fuzzed headers and chunk layouts, so the reader's checks after
 * authentication are reached, and the builder predicts the result. */
#ifndef KT_FUZZ_ENV_H
#define KT_FUZZ_ENV_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kt_lib.h"

#define FE_AAD     "aad"
#define FE_AAD_LEN 3
#define FE_TENANT  "org-1"
#define FE_KEY_ID  "00112233-4455-4677-8899-aabbccddeeff"
#define FE_DEP_ID  "10112233-4455-4677-8899-aabbccddeeff"

/* Header flags of a built envelope: each set bit puts the real value of
 * that field instead of the input's bytes. */
enum {
    FE_REAL_PREFIX = 1, /* magic, version, algorithm, flags */
    FE_REAL_CHUNK = 2,  /* a chunk size of 256 + (input % 4096) */
    FE_REAL_TENANT = 4,
    FE_REAL_KEY_ID = 8,
    FE_REAL_COMMIT = 16,
    FE_REAL_DEP_ID = 32, /* not compared by the reader: only authenticated */
};

static keytier_ctx fe_ctx;
static keytier_key *fe_key;

/* The key handle: the envelope layer needs only the key, its ids and the
 * context's chunk size and stream threads. */
static inline keytier_key *fe_key_get(void)
{
    if (fe_key != NULL)
        return fe_key;
    fe_ctx.cfg.chunk_size = 256;
    fe_ctx.cfg.stream_threads = 1;
    fe_key = calloc(1, sizeof *fe_key);
    if (fe_key == NULL)
        abort();
    fe_key->ctx = &fe_ctx;
    fe_key->info.level = 1;
    strcpy(fe_key->info.tenant, FE_TENANT);
    strcpy(fe_key->info.key_id, FE_KEY_ID);
    if (!kt_uuid_parse(FE_KEY_ID, fe_key->key_id_bin) ||
        !kt_uuid_parse(FE_DEP_ID, fe_key->dep_id_bin))
        abort();
    static const uint8_t k[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    fe_key->key = kt_secret_from(k, sizeof k);
    if (fe_key->key == NULL || kt_envelope_key_init(fe_key) != KEYTIER_OK)
        abort();
    return fe_key;
}

/* A cursor over the fuzz input that gives zeros once exhausted. */
struct fe_in {
    const uint8_t *p;
    size_t n, at;
};

static inline uint8_t fe_u8(struct fe_in *in)
{
    return in->at < in->n ? in->p[in->at++] : 0;
}

static inline uint32_t fe_be(struct fe_in *in, int bytes)
{
    uint32_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | fe_u8(in);
    return v;
}

static inline void fe_bytes(struct fe_in *in, uint8_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = fe_u8(in);
}

/* Edits of the chunk sequence, each applied after the chunks are sealed. */
enum fe_op {
    FE_SWAP,        /* chunks a and b change places */
    FE_DROP,        /* chunk a removed */
    FE_DUP,         /* chunk a repeated after itself */
    FE_WRONG_INDEX, /* chunk a sealed with index a + 1 + b */
    FE_WRONG_FINAL, /* chunk a sealed with the final flag inverted */
    FE_CUT,         /* the envelope cut to a/256 of its length */
    FE_APPEND,      /* b + 1 bytes of value a appended */
    FE_FLIP,        /* a bit of the body flipped */
    FE_N_OPS
};

struct fe_chunk {
    size_t off, len; /* into the plaintext */
    uint64_t index;  /* as sealed */
    bool final;      /* as sealed */
};

#define FE_MAX_CHUNKS 4200
#define FE_MAX_OPS    4

struct fe_built {
    uint8_t *env; /* malloc'd */
    size_t len;
    uint8_t *pt; /* malloc'd: the plaintext sealed */
    size_t pt_len;
    uint32_t chunk;     /* the chunk size the chunks were split by */
    bool header_ok;     /* the header parses and names this key */
    bool header_cut;    /* an edit cut into the header (then appended
                         * bytes may stand in for its end) */
    keytier_err expect; /* KEYTIER_OK, or the header's error, or
                         * KEYTIER_E_AUTH for "AUTH or TRUNCATED" */
};

static inline void fe_built_free(struct fe_built *b)
{
    free(b->env);
    free(b->pt);
    memset(b, 0, sizeof *b);
}

/* The expected result of a header, in the order the reader checks. */
static inline keytier_err fe_header_expect(const uint8_t *h, size_t tl,
                                           uint32_t chunk, const uint8_t *kid,
                                           const uint8_t *commit)
{
    const keytier_key *k = fe_key_get();
    if (memcmp(h, "KTEV", 4) != 0)
        return KEYTIER_E_FORMAT;
    if (h[4] != 1)
        return KEYTIER_E_VERSION;
    if (h[5] != 1 || h[6] != 0 || chunk < 256 || chunk > (16u << 20) ||
        tl == 0 || tl > KEYTIER_TENANT_MAX)
        return KEYTIER_E_FORMAT;
    if (tl != strlen(FE_TENANT) || memcmp(h + 12, FE_TENANT, tl) != 0 ||
        memcmp(kid, k->key_id_bin, 16) != 0)
        return KEYTIER_E_WRONG_KEY;
    if (memcmp(commit, k->commit, 32) != 0)
        return KEYTIER_E_COMMITMENT;
    return KEYTIER_OK;
}

/* AES-256-GCM of one chunk as ENVELOPE.md defines it, into out (len bytes
 * and the 16-byte tag). */
static inline void fe_seal_chunk(const uint8_t *hdr, size_t hlen,
                                 const uint8_t nonce[12], uint64_t idx,
                                 bool final, const uint8_t *pt, size_t len,
                                 uint8_t *out)
{
    uint8_t iv[12], tail[9];
    int n;
    memcpy(iv, nonce, 12);
    for (int i = 0; i < 8; i++) {
        tail[i] = (uint8_t)(idx >> (56 - 8 * i));
        iv[4 + i] ^= tail[i];
    }
    tail[8] = final;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL,
                           kt_secret_cdata(fe_key_get()->enc_key), iv) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, hdr, (int)hlen) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const uint8_t *)FE_AAD, FE_AAD_LEN) !=
            1 ||
        EVP_EncryptUpdate(c, NULL, &n, tail, sizeof tail) != 1 ||
        (len > 0 && EVP_EncryptUpdate(c, out, &n, pt, (int)len) != 1) ||
        EVP_EncryptFinal_ex(c, out + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + len) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
}

/* The header from the input: its bytes, length, chunk size, key id and
 * commitment positions. */
static inline size_t fe_header(struct fe_in *in, uint8_t *h, uint32_t *chunk)
{
    const keytier_key *k = fe_key_get();
    uint8_t fl = fe_u8(in);
    fe_bytes(in, h, 7);
    if (fl & FE_REAL_PREFIX)
        memcpy(h, "KTEV\1\1\0", 7);
    uint32_t c = fe_be(in, 4);
    if (fl & FE_REAL_CHUNK)
        c = 256 + c % 4096;
    *chunk = c;
    for (int i = 0; i < 4; i++)
        h[7 + i] = (uint8_t)(c >> (24 - 8 * i));
    size_t tl = fe_u8(in);
    if (fl & FE_REAL_TENANT)
        tl = strlen(FE_TENANT);
    h[11] = (uint8_t)tl;
    fe_bytes(in, h + 12, tl);
    if (fl & FE_REAL_TENANT)
        memcpy(h + 12, FE_TENANT, tl);
    fe_bytes(in, h + 12 + tl, 16 + 16 + 12 + 32);
    if (fl & FE_REAL_DEP_ID)
        memcpy(h + 12 + tl, k->dep_id_bin, 16);
    if (fl & FE_REAL_KEY_ID)
        memcpy(h + 28 + tl, k->key_id_bin, 16);
    if (fl & FE_REAL_COMMIT)
        memcpy(h + 56 + tl, k->commit, 32);
    return 88 + tl;
}

/* Applies op to the chunk list; true if it did anything. */
static inline bool fe_apply(struct fe_chunk *ch, size_t *n, uint8_t op,
                            uint8_t a, uint8_t b)
{
    size_t i = *n ? a % *n : 0, j = *n ? b % *n : 0;
    switch (op % FE_N_OPS) {
    case FE_SWAP:
        if (*n < 2 || i == j)
            return false;
        struct fe_chunk t = ch[i];
        ch[i] = ch[j];
        ch[j] = t;
        return true;
    case FE_DROP:
        if (*n == 0)
            return false;
        memmove(ch + i, ch + i + 1, (*n - i - 1) * sizeof *ch);
        (*n)--;
        return true;
    case FE_DUP:
        if (*n == 0 || *n >= FE_MAX_CHUNKS)
            return false;
        memmove(ch + i + 1, ch + i, (*n - i) * sizeof *ch);
        (*n)++;
        return true;
    case FE_WRONG_INDEX:
        if (*n == 0)
            return false;
        ch[i].index += 1 + (uint64_t)b;
        return true;
    case FE_WRONG_FINAL:
        if (*n == 0)
            return false;
        ch[i].final = !ch[i].final;
        return true;
    default:
        return false; /* byte-level edits: after sealing */
    }
}

/* Builds an envelope from the input (plaintext of up to pt_max bytes). */
static inline void fe_build(const uint8_t *data, size_t size, size_t pt_max,
                            struct fe_built *b)
{
    static struct fe_chunk ch[FE_MAX_CHUNKS];
    struct fe_in in = {data, size, 0};
    uint8_t h[88 + 255], ops[FE_MAX_OPS * 3];
    memset(b, 0, sizeof *b);
    size_t hlen = fe_header(&in, h, &b->chunk);
    size_t tl = h[11];
    b->expect = fe_header_expect(h, tl, b->chunk, h + 28 + tl, h + 56 + tl);
    b->header_ok = b->expect == KEYTIER_OK;
    uint32_t c = b->chunk >= 256 && b->chunk <= (16u << 20) ? b->chunk : 256;
    b->pt_len = fe_be(&in, 3) % (pt_max + 1);
    size_t n_ops = fe_u8(&in) % (FE_MAX_OPS + 1);
    /* One read of every edit's three bytes: a read per edit has gcc -O3
     * (release) see writes past ops that cannot happen. */
    fe_bytes(&in, ops, n_ops * 3);
    b->pt = malloc(b->pt_len + 1);
    for (size_t i = 0; i < b->pt_len; i++) /* the rest, repeated */
        b->pt[i] =
            in.at < in.n ? in.p[in.at + i % (in.n - in.at)] : (uint8_t)(i * 31);
    size_t n = b->pt_len / c + 1;
    if (n > FE_MAX_CHUNKS)
        abort(); /* pt_max too large for the chunk table */
    for (size_t i = 0; i < n; i++)
        ch[i] = (struct fe_chunk){i * c, i + 1 < n ? c : b->pt_len % c, i,
                                  i + 1 == n};
    size_t n0 = n;
    for (size_t i = 0; i < n_ops; i++)
        fe_apply(ch, &n, ops[3 * i], ops[3 * i + 1], ops[3 * i + 2]);
    /* Edits may undo each other (a chunk repeated, then one copy
     * dropped): what counts is whether the sequence differs in the end. */
    bool changed = n != n0;
    for (size_t i = 0; i < n && !changed; i++)
        changed = ch[i].off != i * c || ch[i].index != i ||
                  ch[i].final != (i + 1 == n0) ||
                  ch[i].len != (i + 1 < n0 ? c : b->pt_len % c);
    size_t cap =
        hlen + b->pt_len * (1 + FE_MAX_OPS) + (n + FE_MAX_OPS + 1) * 16 + 512;
    b->env = malloc(cap);
    memcpy(b->env, h, hlen);
    b->len = hlen;
    for (size_t i = 0; i < n; i++) {
        fe_seal_chunk(h, hlen, h + 44 + tl, ch[i].index, ch[i].final,
                      b->pt + ch[i].off, ch[i].len, b->env + b->len);
        b->len += ch[i].len + 16;
    }
    /* Byte edits may undo each other too (a bit flipped twice): the
     * bytes are compared with the sealed ones in the end. */
    size_t sealed_len = b->len;
    uint8_t *sealed = malloc(sealed_len + 1);
    memcpy(sealed, b->env, sealed_len);
    for (size_t i = 0; i < n_ops; i++) {
        uint8_t op = ops[3 * i] % FE_N_OPS, x = ops[3 * i + 1],
                y = ops[3 * i + 2];
        if (op == FE_CUT && (size_t)x * b->len / 256 < b->len) {
            b->len = (size_t)x * b->len / 256;
            b->header_cut |= b->len < hlen;
        } else if (op == FE_APPEND && b->len + y + 1u <= cap) {
            memset(b->env + b->len, x, y + 1u);
            b->len += y + 1u;
        } else if (op == FE_FLIP && b->len > hlen) {
            b->env[hlen + ((size_t)x << 8 | y) % (b->len - hlen)] ^= 1;
        }
    }
    changed = changed || b->len != sealed_len ||
              memcmp(b->env, sealed, sealed_len) != 0;
    free(sealed);
    if (b->expect == KEYTIER_OK && changed)
        b->expect = KEYTIER_E_AUTH;
}

/* Is e one of the results an envelope reader may give for bad input? */
static inline bool fe_refusal(keytier_err e)
{
    return e == KEYTIER_E_FORMAT || e == KEYTIER_E_VERSION ||
           e == KEYTIER_E_WRONG_KEY || e == KEYTIER_E_COMMITMENT ||
           e == KEYTIER_E_AUTH || e == KEYTIER_E_TRUNCATED;
}

/* Does result e agree with what the builder expects? */
static inline bool fe_agrees(const struct fe_built *b, keytier_err e)
{
    if (b->header_cut)
        return fe_refusal(e); /* whatever the reader makes of the rest */
    if (b->expect == KEYTIER_E_AUTH)
        return e == KEYTIER_E_AUTH || e == KEYTIER_E_TRUNCATED;
    return e == b->expect;
}

#endif
