/*
 * Envelopes: libkeytier's encrypted form of data (lib/envelope/ENVELOPE.md).
 *
 * Version 1 layout (integers big-endian):
 *
 *   offset  size  field
 *   0       4     magic "KTEV"
 *   4       1     format version = 1
 *   5       1     algorithm = 1: AES-256-GCM, HKDF-SHA-256 key commitment,
 *                 chunked
 *   6       1     flags = 0 (reserved)
 *   7       4     chunk size C: plaintext bytes of every non-final chunk
 *                 (256 .. 16 MiB)
 *   11      1     tenant length n (1 .. 128)
 *   12      n     tenant id
 *   12+n    16    DEP id (UUID)                    \ the key path
 *   28+n    16    key id (UUID) of the sealing key /
 *   44+n    12    base nonce N (random)
 *   56+n    32    key commitment
 *   88+n          chunks
 *
 * Chunk i is the AES-256-GCM encryption of plaintext bytes [iC, iC+C)
 * followed by its 16-byte tag.  Every chunk but the last holds exactly C
 * bytes; the last ("final") holds 0 .. C-1 bytes, so the final chunk is
 * recognised by its size and an empty final chunk ends a plaintext whose
 * length is a multiple of C.  Chunk i uses
 *   nonce  = N with its last 8 bytes XORed with i
 *   AAD    = header (bytes 0 .. 88+n) || caller context || u64 i || u8 final
 * so reordering, dropping or repeating chunks, truncation (the final flag)
 * and appended data (which shifts the chunk boundaries) all fail
 * authentication, and the header is authenticated with every chunk.
 *
 * Key commitment (as the AWS Encryption SDK's committing suites): from the
 * sealing key K, HKDF-SHA-256 derives the encryption key
 *   Ke = HKDF(K, info = "keytier envelope v1 key" || key id)
 * and the commitment
 *   Kc = HKDF(K, info = "keytier envelope v1 commit" || key id).
 * Kc is stored in the header and compared in constant time before any
 * decryption, so an envelope opens under one key only.  The derivation is
 * per key rather than per message (AWS salts with a message id): items are
 * small and many, and a per-item HKDF would cost more than decrypting a
 * 4 KiB item.  Random 96-bit base nonces then bound one key to 2^32
 * envelopes (NIST SP 800-38D §8.3); keys are per mailbox/blob.
 *
 * Plaintext of a chunk is never released before its tag verifies: the
 * buffer API decrypts everything and wipes the output on any failure; the
 * stream API decrypts each chunk in its pipeline slot (stream.h), checks
 * the tag, and only then hands it to the writer.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kt_lib.h"
#include "stream.h"

#define KT_ENV_MAGIC        "KTEV"
#define KT_ENV_VERSION      1
#define KT_ENV_ALG_GCM_HKDF 1
#define KT_ENV_FIXED        88 /* header bytes besides the tenant */
#define KT_ENV_FIXED_PRE    12 /* bytes up to and including the tenant length */
#define KT_NONCE_SIZE       12
#define KT_TAG_SIZE         16
#define KT_COMMIT_SIZE      32
#define KT_ENV_HEADER_MAX   (KT_ENV_FIXED + KEYTIER_TENANT_MAX)
#define KT_CHUNK_MIN        256u
#define KT_CHUNK_MAX        (16u << 20)
#define KT_POOL_MAX         16

/* ---- cipher contexts ------------------------------------------------------
 * EVP_CIPHER_CTXs keyed once per key and reused (only the IV changes per
 * chunk), kept in a small per-key pool; the fetched cipher is shared. */

struct kt_cipher_pool {
    pthread_mutex_t mu;
    EVP_CIPHER_CTX *idle[2][KT_POOL_MAX]; /* [0] decrypt, [1] encrypt */
    size_t n[2];
};

static EVP_CIPHER_CTX *kt_cipher_get(keytier_key *key, int enc)
{
    struct kt_cipher_pool *p = key->pool;
    EVP_CIPHER_CTX *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n[enc] > 0)
        c = p->idle[enc][--p->n[enc]];
    pthread_mutex_unlock(&p->mu);
    if (c != NULL)
        return c;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return NULL;
    if (EVP_CipherInit_ex2(c, kt_aes256gcm(), kt_secret_cdata(key->enc_key),
                           NULL, enc, NULL) != 1) {
        EVP_CIPHER_CTX_free(c);
        return NULL;
    }
    return c;
}

static void kt_cipher_put(keytier_key *key, int enc, EVP_CIPHER_CTX *c)
{
    struct kt_cipher_pool *p = key->pool;
    pthread_mutex_lock(&p->mu);
    if (p->n[enc] < KT_POOL_MAX) {
        p->idle[enc][p->n[enc]++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    EVP_CIPHER_CTX_free(c); /* wipes the key schedule */
}

keytier_err kt_envelope_key_init(keytier_key *key)
{
    static const char lk[] = "keytier envelope v1 key";
    static const char lc[] = "keytier envelope v1 commit";
    uint8_t info[64];
    if (kt_aes256gcm() == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "AES-256-GCM unavailable");
    key->enc_key = kt_secret_new(KT_KEY_SIZE);
    key->pool = calloc(1, sizeof *key->pool);
    if (key->enc_key == NULL || key->pool == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    pthread_mutex_init(&key->pool->mu, NULL);
    memcpy(info, lk, sizeof lk - 1);
    memcpy(info + sizeof lk - 1, key->key_id_bin, KT_UUID_BYTES);
    if (!kt_hkdf(key->key, info, sizeof lk - 1 + KT_UUID_BYTES,
                 kt_secret_data(key->enc_key), KT_KEY_SIZE))
        return kt_err(KEYTIER_E_CRYPTO, "HKDF");
    memcpy(info, lc, sizeof lc - 1);
    memcpy(info + sizeof lc - 1, key->key_id_bin, KT_UUID_BYTES);
    if (!kt_hkdf(key->key, info, sizeof lc - 1 + KT_UUID_BYTES, key->commit,
                 KT_COMMIT_SIZE))
        return kt_err(KEYTIER_E_CRYPTO, "HKDF");
    return KEYTIER_OK;
}

keytier_err kt_envelope_key_restore(keytier_key *key, const uint8_t *enc_key,
                                    const uint8_t *commit)
{
    if (kt_aes256gcm() == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "AES-256-GCM unavailable");
    key->enc_key = kt_secret_from(enc_key, KT_KEY_SIZE);
    key->pool = calloc(1, sizeof *key->pool);
    if (key->enc_key == NULL || key->pool == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    pthread_mutex_init(&key->pool->mu, NULL);
    memcpy(key->commit, commit, KT_COMMIT_SIZE);
    return KEYTIER_OK;
}

void kt_envelope_key_free(keytier_key *key)
{
    if (key->pool != NULL) {
        for (int d = 0; d < 2; d++)
            for (size_t i = 0; i < key->pool->n[d]; i++)
                EVP_CIPHER_CTX_free(key->pool->idle[d][i]);
        pthread_mutex_destroy(&key->pool->mu);
        free(key->pool);
        key->pool = NULL;
    }
    kt_secret_free(key->enc_key);
    key->enc_key = NULL;
    kt_wipe(key->commit, sizeof key->commit);
}

/* ---- header ------------------------------------------------------------- */

struct kt_env_header {
    uint8_t bytes[KT_ENV_HEADER_MAX];
    size_t len;
    uint32_t chunk;
    const uint8_t *nonce; /* into bytes */
};

static bool kt_header_write(const keytier_key *key, uint32_t chunk,
                            struct kt_env_header *h)
{
    struct kt_wr wr;
    size_t tl = strlen(key->info.tenant);
    kt_wr_init(&wr, h->bytes, sizeof h->bytes);
    kt_wr_bytes(&wr, KT_ENV_MAGIC, 4);
    kt_wr_u8(&wr, KT_ENV_VERSION);
    kt_wr_u8(&wr, KT_ENV_ALG_GCM_HKDF);
    kt_wr_u8(&wr, 0);
    kt_wr_u32(&wr, chunk);
    kt_wr_lv8(&wr, key->info.tenant, tl);
    kt_wr_bytes(&wr, key->dep_id_bin, KT_UUID_BYTES);
    kt_wr_bytes(&wr, key->key_id_bin, KT_UUID_BYTES);
    uint8_t *nonce = kt_wr_reserve(&wr, KT_NONCE_SIZE);
    kt_wr_bytes(&wr, key->commit, KT_COMMIT_SIZE);
    if (!kt_wr_ok(&wr) || RAND_bytes(nonce, KT_NONCE_SIZE) != 1)
        return false;
    h->len = wr.len;
    h->chunk = chunk;
    h->nonce = nonce;
    return true;
}

struct kt_env_parsed {
    uint32_t chunk;
    const uint8_t *tenant;
    size_t tenant_len;
    const uint8_t *dep_id, *key_id, *nonce, *commit;
    size_t len; /* header length */
};

/* Parses a header from untrusted bytes (no key needed). */
static keytier_err kt_header_parse(const uint8_t *buf, size_t len,
                                   struct kt_env_parsed *p)
{
    struct kt_rd rd;
    const uint8_t *magic;
    uint8_t version, alg, flags;
    kt_rd_init(&rd, buf, len);
    if (!kt_rd_view(&rd, 4, &magic) || memcmp(magic, KT_ENV_MAGIC, 4) != 0)
        return kt_err(KEYTIER_E_FORMAT, "not a keytier envelope");
    if (!kt_rd_u8(&rd, &version))
        return kt_err(KEYTIER_E_FORMAT, "header truncated");
    if (version != KT_ENV_VERSION)
        return kt_err(KEYTIER_E_VERSION, "envelope version %u", version);
    if (!kt_rd_u8(&rd, &alg) || !kt_rd_u8(&rd, &flags) ||
        !kt_rd_u32(&rd, &p->chunk) ||
        !kt_rd_lv8(&rd, &p->tenant, &p->tenant_len) ||
        !kt_rd_view(&rd, KT_UUID_BYTES, &p->dep_id) ||
        !kt_rd_view(&rd, KT_UUID_BYTES, &p->key_id) ||
        !kt_rd_view(&rd, KT_NONCE_SIZE, &p->nonce) ||
        !kt_rd_view(&rd, KT_COMMIT_SIZE, &p->commit))
        return kt_err(KEYTIER_E_FORMAT, "header truncated");
    if (alg != KT_ENV_ALG_GCM_HKDF)
        return kt_err(KEYTIER_E_FORMAT, "unknown algorithm %u", alg);
    if (flags != 0)
        return kt_err(KEYTIER_E_FORMAT, "unknown flags 0x%02x", flags);
    if (p->chunk < KT_CHUNK_MIN || p->chunk > KT_CHUNK_MAX)
        return kt_err(KEYTIER_E_FORMAT, "chunk size %u out of range", p->chunk);
    if (p->tenant_len == 0 || p->tenant_len > KEYTIER_TENANT_MAX)
        return kt_err(KEYTIER_E_FORMAT, "bad tenant length");
    p->len = rd.pos;
    return KEYTIER_OK;
}

/* The header names this key and commits to it.  lifecycle: the DEP id is
 * the DEP the key was under when sealing; a key migrated to another DEP
 * (keytier_assign) keeps its id and still opens its envelopes, so the DEP
 * id is not compared here (it stays authenticated: the header is AAD). */
static keytier_err kt_header_check(const keytier_key *key,
                                   const struct kt_env_parsed *p)
{
    size_t tl = strlen(key->info.tenant);
    if (p->tenant_len != tl || memcmp(p->tenant, key->info.tenant, tl) != 0 ||
        memcmp(p->key_id, key->key_id_bin, KT_UUID_BYTES) != 0)
        return kt_err(KEYTIER_E_WRONG_KEY, "envelope names another key than %s",
                      key->info.key_id);
    if (!kt_ct_equal(p->commit, key->commit, KT_COMMIT_SIZE))
        return kt_err(KEYTIER_E_COMMITMENT, "key %s", key->info.key_id);
    return KEYTIER_OK;
}

/* ---- chunks ------------------------------------------------------------- */

struct kt_chunk_ctx {
    EVP_CIPHER_CTX *c;
    const uint8_t *hdr;
    size_t hdr_len;
    const uint8_t *nonce;
    const void *aad;
    size_t aad_len;
};

/* Encrypts (enc) or decrypts len bytes in -> out (may alias) for chunk idx;
 * the tag is written to / checked against tag.  False on any failure,
 * including a tag that does not verify. */
static bool kt_chunk(const struct kt_chunk_ctx *k, int enc, uint64_t idx,
                     bool final, const uint8_t *in, size_t len, uint8_t *out,
                     uint8_t *tag)
{
    uint8_t iv[KT_NONCE_SIZE], tail[9];
    int n;
    memcpy(iv, k->nonce, KT_NONCE_SIZE);
    for (int i = 0; i < 8; i++) {
        iv[4 + i] ^= (uint8_t)(idx >> (56 - 8 * i));
        tail[i] = (uint8_t)(idx >> (56 - 8 * i));
    }
    tail[8] = final ? 1 : 0;
    if (EVP_CipherInit_ex2(k->c, NULL, NULL, iv, enc, NULL) != 1)
        return false;
    if (!enc &&
        EVP_CIPHER_CTX_ctrl(k->c, EVP_CTRL_GCM_SET_TAG, KT_TAG_SIZE, tag) != 1)
        return false;
    /* One AAD call when it fits a stack buffer: each EVP call costs about
     * as much as hashing a few hundred AAD bytes. */
    uint8_t joined[512];
    if (k->hdr_len + k->aad_len + sizeof tail <= sizeof joined) {
        memcpy(joined, k->hdr, k->hdr_len); /* hdr_len <= header max */
        if (k->aad_len > 0)
            memcpy(joined + k->hdr_len, k->aad, k->aad_len); /* fits */
        memcpy(joined + k->hdr_len + k->aad_len, tail, sizeof tail);
        if (EVP_CipherUpdate(k->c, NULL, &n, joined,
                             (int)(k->hdr_len + k->aad_len + sizeof tail)) != 1)
            return false;
    } else if (EVP_CipherUpdate(k->c, NULL, &n, k->hdr, (int)k->hdr_len) != 1 ||
               EVP_CipherUpdate(k->c, NULL, &n, k->aad, (int)k->aad_len) != 1 ||
               EVP_CipherUpdate(k->c, NULL, &n, tail, sizeof tail) != 1) {
        return false;
    }
    if (len > 0 && EVP_CipherUpdate(k->c, out, &n, in, (int)len) != 1)
        return false;
    if (EVP_CipherFinal_ex(k->c, out + len, &n) != 1)
        return false; /* decrypt: the tag did not verify */
    if (enc &&
        EVP_CIPHER_CTX_ctrl(k->c, EVP_CTRL_GCM_GET_TAG, KT_TAG_SIZE, tag) != 1)
        return false;
    return true;
}

static keytier_err kt_key_can_seal(const keytier_key *key, const void *aad,
                                   size_t aad_len)
{
    if (key == NULL || key->enc_key == NULL)
        return kt_err(KEYTIER_E_ARGS,
                      "data is sealed under tier keys (level >= 1), not the "
                      "DEP key");
    if ((aad == NULL && aad_len > 0) || aad_len > INT32_MAX)
        return kt_err(KEYTIER_E_ARGS, "caller context");
    return KEYTIER_OK;
}

/* ---- buffer API --------------------------------------------------------- */

static size_t kt_bound(size_t tenant_len, uint32_t chunk, size_t pt_len)
{
    size_t chunks = pt_len / chunk + 1, tags, total;
    if (!kt_size_mul(chunks, KT_TAG_SIZE, &tags) ||
        !kt_size_add(pt_len, tags, &total) ||
        !kt_size_add(total, KT_ENV_FIXED + tenant_len, &total))
        return SIZE_MAX;
    return total;
}

KEYTIER_API size_t keytier_seal_bound(const keytier_key *key, size_t pt_len)
{
    if (key == NULL)
        return SIZE_MAX;
    return kt_bound(strlen(key->info.tenant), key->ctx->cfg.chunk_size, pt_len);
}

KEYTIER_API keytier_err keytier_seal(keytier_key *key, const void *aad,
                                     size_t aad_len, const void *pt,
                                     size_t pt_len, void *out, size_t out_cap,
                                     size_t *out_len)
{
    kt_err_clear();
    keytier_err e = kt_key_can_seal(key, aad, aad_len);
    if (e != KEYTIER_OK)
        return e;
    if ((pt == NULL && pt_len > 0) || out == NULL || out_len == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_seal");
    uint32_t chunk = key->ctx->cfg.chunk_size;
    size_t need = kt_bound(strlen(key->info.tenant), chunk, pt_len);
    if (need == SIZE_MAX || out_cap < need)
        return kt_err(KEYTIER_E_BUFFER, "need %zu bytes", need);

    struct kt_env_header h;
    if (!kt_header_write(key, chunk, &h))
        return kt_err(KEYTIER_E_CRYPTO, "writing the envelope header");
    struct kt_wr wr;
    kt_wr_init(&wr, out, out_cap);
    kt_wr_bytes(&wr, h.bytes, h.len);
    struct kt_chunk_ctx k = {
        kt_cipher_get(key, 1), h.bytes, h.len, h.nonce, aad, aad_len};
    if (k.c == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "cipher context");
    const uint8_t *p = pt;
    size_t left = pt_len;
    for (uint64_t i = 0;; i++) {
        bool final = left < chunk;
        size_t n = final ? left : chunk;
        uint8_t *ct = kt_wr_reserve(&wr, n + KT_TAG_SIZE);
        if (ct == NULL || !kt_chunk(&k, 1, i, final, p, n, ct, ct + n)) {
            e = kt_err(ct ? KEYTIER_E_CRYPTO : KEYTIER_E_INTERNAL,
                       "sealing chunk %llu", (unsigned long long)i);
            break;
        }
        p += n;
        left -= n;
        if (final)
            break;
    }
    kt_cipher_put(key, 1, k.c);
    if (e != KEYTIER_OK) {
        kt_wipe(out, out_cap);
        return e;
    }
    *out_len = wr.len;
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_open(keytier_key *key, const void *aad,
                                     size_t aad_len, const void *env,
                                     size_t env_len, void *out, size_t out_cap,
                                     size_t *out_len)
{
    kt_err_clear();
    keytier_err e = kt_key_can_seal(key, aad, aad_len);
    if (e != KEYTIER_OK)
        return e;
    if (env == NULL || out_len == NULL || (out == NULL && out_cap > 0))
        return kt_err(KEYTIER_E_ARGS, "keytier_open");
    struct kt_env_parsed h;
    e = kt_header_parse(env, env_len, &h);
    if (e != KEYTIER_OK)
        return e;
    e = kt_header_check(key, &h);
    if (e != KEYTIER_OK)
        return e;

    /* Split the body into chunks by size alone, before decrypting. */
    size_t body = env_len - h.len, full = (size_t)h.chunk + KT_TAG_SIZE;
    size_t n_full = body / full, rest = body % full;
    if (rest < KT_TAG_SIZE)
        /* Ends on a chunk boundary or inside a tag: no final chunk. */
        return kt_err(KEYTIER_E_TRUNCATED, "envelope has no final chunk");
    size_t pt_len = n_full * h.chunk + (rest - KT_TAG_SIZE);
    if (pt_len > out_cap)
        return kt_err(KEYTIER_E_BUFFER, "need %zu bytes", pt_len);

    struct kt_chunk_ctx k = {
        kt_cipher_get(key, 0), env, h.len, h.nonce, aad, aad_len};
    if (k.c == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "cipher context");
    struct kt_rd rd;
    kt_rd_init(&rd, (const uint8_t *)env + h.len, body);
    uint8_t *o = out;
    for (uint64_t i = 0; i <= n_full; i++) {
        bool final = i == n_full;
        size_t n = final ? rest - KT_TAG_SIZE : h.chunk;
        const uint8_t *ct, *tag;
        if (!kt_rd_view(&rd, n, &ct) || !kt_rd_view(&rd, KT_TAG_SIZE, &tag)) {
            e = kt_err(KEYTIER_E_INTERNAL, "chunk split");
            break;
        }
        uint8_t tagc[KT_TAG_SIZE];
        memcpy(tagc, tag, KT_TAG_SIZE);
        if (!kt_chunk(&k, 0, i, final, ct, n, o, tagc)) {
            e = kt_err(KEYTIER_E_AUTH, "chunk %llu of the envelope",
                       (unsigned long long)i);
            break;
        }
        o += n;
    }
    kt_cipher_put(key, 0, k.c);
    if (e != KEYTIER_OK) {
        kt_wipe(out, out_cap); /* nothing unauthenticated is released */
        return e;
    }
    *out_len = pt_len;
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_envelope_peek(
    const void *env, size_t env_len, char tenant[KEYTIER_TENANT_MAX + 1],
    char key_id[KEYTIER_ID_SIZE])
{
    kt_err_clear();
    if (env == NULL || tenant == NULL || key_id == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_envelope_peek");
    struct kt_env_parsed h;
    keytier_err e = kt_header_parse(env, env_len, &h);
    if (e != KEYTIER_OK)
        return e;
    memcpy(tenant, h.tenant, h.tenant_len); /* <= KEYTIER_TENANT_MAX */
    tenant[h.tenant_len] = '\0';
    if (strlen(tenant) != h.tenant_len)
        return kt_err(KEYTIER_E_FORMAT, "NUL in tenant id");
    kt_uuid_format(h.key_id, key_id);
    return KEYTIER_OK;
}

/* ---- streaming API ------------------------------------------------------ */

/* The streams run through the pipeline of stream.h: a reader thread, the
 * cryptography on the caller's thread, a writer thread.  A pipeline slot
 * holds several chunks (about KT_SLOT_BYTES, at most KT_SLOT_CHUNKS so one
 * writev() takes a slot) and is encrypted or decrypted in place. */
#define KT_SLOT_BYTES  (1u << 20)
#define KT_SLOT_CHUNKS 256u

static size_t kt_slot_chunks(uint32_t chunk)
{
    size_t k = KT_SLOT_BYTES / chunk;
    return k < 1 ? 1 : k > KT_SLOT_CHUNKS ? KT_SLOT_CHUNKS : k;
}

/* Reads up to n bytes, stopping early only at end of input (the header;
 * the chunks go through the pipeline's reader). */
static keytier_err kt_read_full(int fd, uint8_t *buf, size_t n, size_t *got)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, buf + off, n - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) { /* a non-blocking fd */
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, -1) >= 0 || errno == EINTR)
                continue;
        }
        if (r < 0)
            return kt_err(KEYTIER_E_IO, "read: %s", strerror(errno));
        if (r == 0)
            break;
        off += (size_t)r;
    }
    *got = off;
    return KEYTIER_OK;
}

struct kt_stream_state {
    keytier_key *key;
    int enc;
    struct kt_chunk_ctx k[KT_STREAM_WORKERS_MAX]; /* c: one per worker */
    uint32_t chunk;
    const struct kt_env_header *h; /* sealing: written before chunk 0 */
};

/* The chunk context of a transform worker; its cipher context is taken on
 * the worker's first slot (worker 0's before the stream starts). */
static const struct kt_chunk_ctx *
kt_stream_chunk_ctx(struct kt_stream_state *st, unsigned worker)
{
    struct kt_chunk_ctx *k = &st->k[worker];
    if (k->c == NULL) {
        EVP_CIPHER_CTX *c = kt_cipher_get(st->key, st->enc);
        if (c == NULL)
            return NULL;
        *k = st->k[0];
        k->c = c;
    }
    return k;
}

/* Returns the workers' cipher contexts to the key's pool. */
static void kt_stream_state_done(struct kt_stream_state *st)
{
    for (unsigned w = 0; w < KT_STREAM_WORKERS_MAX; w++)
        if (st->k[w].c != NULL)
            kt_cipher_put(st->key, st->enc, st->k[w].c);
}

/* Sealing a slot: it holds plaintext, C bytes per chunk, contiguous; the
 * chunks are encrypted in place and their tags kept in aux, and the writer
 * interleaves them (chunk, tag, chunk, tag ...). */
static keytier_err kt_seal_slot(void *arg, unsigned worker,
                                struct kt_stream_slot *sl, bool *last)
{
    struct kt_stream_state *st = arg;
    const struct kt_chunk_ctx *k = kt_stream_chunk_ctx(st, worker);
    size_t c = st->chunk, full = sl->len / c;
    /* At end of input the rest (0 .. C-1 bytes) is the final chunk. */
    size_t n = full + (sl->eof ? 1 : 0), v = 0;
    if (k == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "cipher context");
    if (sl->seq == 0)
        sl->iov[v++] = (struct iovec){(void *)st->h->bytes, st->h->len};
    for (size_t j = 0; j < n; j++) {
        uint64_t idx = sl->first_unit + j;
        bool final = j == full;
        size_t len = final ? sl->len - full * c : c;
        uint8_t *p = sl->buf + j * c, *tag = sl->aux + j * KT_TAG_SIZE;
        if (!kt_chunk(k, 1, idx, final, p, len, p, tag)) {
            sl->iov_n = v;
            return kt_err(KEYTIER_E_CRYPTO, "sealing chunk %llu",
                          (unsigned long long)idx);
        }
        sl->iov[v++] = (struct iovec){p, len};
        sl->iov[v++] = (struct iovec){tag, KT_TAG_SIZE};
    }
    sl->iov_n = v;
    *last = sl->eof;
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_seal_stream(keytier_key *key, const void *aad,
                                            size_t aad_len, int in_fd,
                                            int out_fd)
{
    kt_err_clear();
    keytier_err e = kt_key_can_seal(key, aad, aad_len);
    if (e != KEYTIER_OK)
        return e;
    if (in_fd < 0 || out_fd < 0)
        return kt_err(KEYTIER_E_ARGS, "file descriptor");
    uint32_t chunk = key->ctx->cfg.chunk_size;
    struct kt_env_header h;
    if (!kt_header_write(key, chunk, &h))
        return kt_err(KEYTIER_E_CRYPTO, "writing the envelope header");
    struct kt_stream_state st = {
        .key = key,
        .enc = 1,
        .k = {{kt_cipher_get(key, 1), h.bytes, h.len, h.nonce, aad, aad_len}},
        .chunk = chunk,
        .h = &h};
    if (st.k[0].c == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "cipher context");
    size_t k = kt_slot_chunks(chunk);
    struct kt_stream_cfg cfg = {.in_fd = in_fd,
                                .out_fd = out_fd,
                                .unit = chunk,
                                .read_size = k * chunk,
                                .aux_size = k * KT_TAG_SIZE, /* the tags */
                                .iov_max = 2 * k + 1, /* header, chunk, tag */
                                .workers = key->ctx->cfg.stream_threads,
                                .fn = kt_seal_slot,
                                .arg = &st};
    e = kt_stream_run(&cfg);
    kt_stream_state_done(&st);
    return e;
}

/* Opening a slot: it holds ciphertext as read, chunk after chunk with
 * their tags; a piece of C+16 bytes is a non-final chunk, the shorter
 * rest at end of input the final one.  Each chunk is decrypted in place
 * and released to the writer only once its tag verified. */
static keytier_err kt_open_slot(void *arg, unsigned worker,
                                struct kt_stream_slot *sl, bool *last)
{
    struct kt_stream_state *st = arg;
    const struct kt_chunk_ctx *k = kt_stream_chunk_ctx(st, worker);
    size_t c = st->chunk, piece = c + KT_TAG_SIZE;
    size_t full = sl->len / piece, rest = sl->len % piece, v = 0;
    keytier_err e = KEYTIER_OK;
    if (k == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "cipher context");
    for (size_t j = 0; j <= full && e == KEYTIER_OK; j++) {
        uint64_t idx = sl->first_unit + j;
        bool final = j == full;
        if (final && !sl->eof)
            break; /* the rest (if any) is the start of the next piece;
                    * only a read error leaves one here */
        if (final && rest < KT_TAG_SIZE) {
            /* End of input on a chunk boundary (or inside a tag): the
             * final chunk is missing. */
            e = kt_err(KEYTIER_E_TRUNCATED, "stream ends before its final "
                                            "chunk");
            break;
        }
        size_t len = final ? rest - KT_TAG_SIZE : c;
        uint8_t *p = sl->buf + j * piece, tag[KT_TAG_SIZE];
        memcpy(tag, p + len, KT_TAG_SIZE);
        if (!kt_chunk(k, 0, idx, final, p, len, p, tag)) {
            kt_wipe(p, len);
            e = kt_err(KEYTIER_E_AUTH, "chunk %llu of the stream",
                       (unsigned long long)idx);
            break;
        }
        sl->iov[v++] = (struct iovec){p, len}; /* authenticated: release */
        *last = final;
    }
    sl->iov_n = v;
    return e;
}

KEYTIER_API keytier_err keytier_open_stream(keytier_key *key, const void *aad,
                                            size_t aad_len, int in_fd,
                                            int out_fd)
{
    kt_err_clear();
    keytier_err e = kt_key_can_seal(key, aad, aad_len);
    if (e != KEYTIER_OK)
        return e;
    if (in_fd < 0 || out_fd < 0)
        return kt_err(KEYTIER_E_ARGS, "file descriptor");
    uint8_t hdr[KT_ENV_HEADER_MAX];
    size_t got, more;
    /* The fixed part up to the tenant length, then the rest it implies. */
    e = kt_read_full(in_fd, hdr, KT_ENV_FIXED_PRE, &got);
    if (e != KEYTIER_OK)
        return e;
    size_t hlen = KT_ENV_FIXED + (got == KT_ENV_FIXED_PRE ? hdr[11] : 0);
    if (got == KT_ENV_FIXED_PRE && hlen <= sizeof hdr) {
        e = kt_read_full(in_fd, hdr + got, hlen - got, &more);
        if (e != KEYTIER_OK)
            return e;
        got += more;
    }
    struct kt_env_parsed h;
    e = kt_header_parse(hdr, got, &h);
    if (e != KEYTIER_OK)
        return e;
    e = kt_header_check(key, &h);
    if (e != KEYTIER_OK)
        return e;

    struct kt_stream_state st = {
        .key = key,
        .enc = 0,
        .k = {{kt_cipher_get(key, 0), hdr, h.len, h.nonce, aad, aad_len}},
        .chunk = h.chunk};
    if (st.k[0].c == NULL)
        return kt_err(KEYTIER_E_CRYPTO, "cipher context");
    size_t k = kt_slot_chunks(h.chunk);
    size_t piece = (size_t)h.chunk + KT_TAG_SIZE;
    struct kt_stream_cfg cfg = {.in_fd = in_fd,
                                .out_fd = out_fd,
                                .unit = piece,
                                .read_size = k * piece,
                                .iov_max = k,
                                .workers = key->ctx->cfg.stream_threads,
                                .fn = kt_open_slot,
                                .arg = &st};
    e = kt_stream_run(&cfg);
    kt_stream_state_done(&st);
    return e;
}
