/*
 * Key tiers below the DEP key, depth as data: the workload's shape says how
 * many levels there are (mail: mailbox; files: tenant intermediate key
 * (TIK), site, blob).  Every tier key is stored only wrapped by its parent
 * with AES-256-GCM; the ids that place it (tenant, workload, DEP, parent,
 * key id, level, name) are the AAD, so a wrapped key moved to another
 * parent or tenant fails to open.  Below a TIK the TIK's id stands where
 * the DEP's would: the TIK binds its DEP, and a TIK moves to another DEP
 * or to a service-managed key without its sites being rewrapped.  Files
 * DEPs made before TIKs keep their sites at level 1 (two levels).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cache.h"
#include "kt_lib.h"

#define KT_GCM_NONCE 12
#define KT_GCM_TAG   16

/* Levels below the DEP key per shape. */
static const unsigned kt_shape_depths[] = {
    [KT_SHAPE_MAIL] = 1,  /* mailbox key -> items */
    [KT_SHAPE_FILES] = 3, /* TIK -> site key -> blob key -> blob */
};

unsigned kt_shape_depth(enum kt_shape shape)
{
    return kt_shape_depths[shape];
}

/* A key below a TIK (not the TIK itself). */
static bool kt_under_tik(const struct kt_key_rec *r)
{
    return r->tik_id[0] != '\0' && strcmp(r->tik_id, r->key_id) != 0;
}

static bool kt_tier_aad(const struct kt_key_rec *r, uint8_t *buf, size_t cap,
                        size_t *len)
{
    struct kt_wr wr;
    bool tik = kt_under_tik(r);
    const char *dom = tik ? r->tik_id : r->dep_id;
    kt_wr_init(&wr, buf, cap);
    if (tik)
        kt_wr_lv8(&wr, "keytier tier key under tik v1", 29);
    else
        kt_wr_lv8(&wr, "keytier tier key v1", 19);
    kt_wr_lv8(&wr, r->tenant, strlen(r->tenant));
    kt_wr_lv8(&wr, r->workload, strlen(r->workload));
    kt_wr_lv8(&wr, dom, strlen(dom));
    kt_wr_lv8(&wr, r->parent_id, strlen(r->parent_id));
    kt_wr_lv8(&wr, r->key_id, strlen(r->key_id));
    kt_wr_u8(&wr, (uint8_t)r->level);
    kt_wr_lv8(&wr, r->name, strlen(r->name));
    *len = wr.len;
    return kt_wr_ok(&wr);
}

#define KT_AAD_MAX 1024

/* enc: wraps `key` into r->wrapped; !enc: unwraps r->wrapped into `key`.
 * (lifecycle: not static, migrate.c rewraps with it) */
keytier_err kt_tier_gcm(const kt_secret *kek, struct kt_key_rec *r,
                        kt_secret *key, int enc)
{
    uint8_t aad[KT_AAD_MAX];
    size_t aad_len;
    int n;
    keytier_err e = KEYTIER_OK;
    if (!kt_tier_aad(r, aad, sizeof aad, &aad_len))
        return kt_err(KEYTIER_E_INTERNAL, "tier AAD");
    uint8_t *nonce = r->wrapped, *ct = r->wrapped + KT_GCM_NONCE,
            *tag = ct + KT_KEY_SIZE;
    if (enc && RAND_bytes(nonce, KT_GCM_NONCE) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL ||
        EVP_CipherInit_ex2(c, kt_aes256gcm(), kt_secret_cdata(kek), nonce, enc,
                           NULL) != 1 ||
        (!enc &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, KT_GCM_TAG, tag) != 1) ||
        EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1) {
        e = kt_err(KEYTIER_E_CRYPTO, "AES-GCM");
        goto out;
    }
    if (enc) {
        if (EVP_CipherUpdate(c, ct, &n, kt_secret_cdata(key), KT_KEY_SIZE) !=
                1 ||
            EVP_CipherFinal_ex(c, ct + KT_KEY_SIZE, &n) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, KT_GCM_TAG, tag) != 1)
            e = kt_err(KEYTIER_E_CRYPTO, "AES-GCM");
    } else {
        if (EVP_CipherUpdate(c, kt_secret_data(key), &n, ct, KT_KEY_SIZE) !=
                1 ||
            EVP_CipherFinal_ex(c, kt_secret_data(key) + KT_KEY_SIZE, &n) != 1) {
            kt_wipe(kt_secret_data(key), KT_KEY_SIZE);
            e = kt_err(KEYTIER_E_AUTH,
                       "stored key %s does not open under its parent %s "
                       "(altered or moved)",
                       r->key_id, r->parent_id);
        }
    }
out:
    EVP_CIPHER_CTX_free(c);
    return e;
}

static keytier_key *kt_key_alloc(keytier_ctx *ctx)
{
    keytier_key *k = calloc(1, sizeof *k);
    if (k != NULL)
        k->ctx = ctx;
    return k;
}

KEYTIER_API void keytier_key_close(keytier_key *key)
{
    if (key == NULL)
        return;
    kt_envelope_key_free(key);
    kt_secret_free(key->key);
    kt_wipe(key, sizeof *key);
    free(key);
}

KEYTIER_API void keytier_key_get_info(const keytier_key *key,
                                      keytier_key_info *out)
{
    if (key != NULL && out != NULL)
        *out = key->info;
}

static keytier_err kt_shape_of(keytier_ctx *ctx, const char *workload,
                               unsigned *depth, bool *files)
{
    const struct kt_workload_cfg *w = kt_config_workload(&ctx->cfg, workload);
    if (w == NULL)
        return kt_err(KEYTIER_E_CONFIG, "unknown workload '%s'", workload);
    *depth = kt_shape_depth(w->shape);
    *files = w->shape == KT_SHAPE_FILES;
    return KEYTIER_OK;
}

/* ---- the cache's hit paths --------------------------------
 * A hit rebuilds the key from the cache entry alone: the key bytes (for a
 * tier key followed by its envelope key and commitment, so no HKDF runs)
 * and a kt_key_aux with everything else.  No store read, no token call.
 * The entry's aux decides, under the cache lock, whether the asker may
 * have it; when not, the caller takes the slow path, which gives the exact
 * error (wrong tenant, wrong parent, altered key). */

static void kt_key_aux_of(const keytier_key *k, struct kt_key_aux *a)
{
    memset(a, 0, sizeof *a);
    a->info = k->info;
    memcpy(a->workload, k->workload, sizeof a->workload);
    memcpy(a->key_id_bin, k->key_id_bin, KT_UUID_BYTES);
    memcpy(a->dep_id_bin, k->dep_id_bin, KT_UUID_BYTES);
    a->max_level = k->max_level;
    memcpy(a->tik_id, k->tik_id, sizeof a->tik_id);
    a->files = k->files;
}

static void kt_key_from_aux(keytier_key *k, const struct kt_key_aux *a)
{
    k->info = a->info;
    memcpy(k->workload, a->workload, sizeof k->workload);
    memcpy(k->key_id_bin, a->key_id_bin, KT_UUID_BYTES);
    memcpy(k->dep_id_bin, a->dep_id_bin, KT_UUID_BYTES);
    k->max_level = a->max_level;
    memcpy(k->tik_id, a->tik_id, sizeof k->tik_id);
    k->files = a->files;
}

static bool kt_dep_hit_ok(const void *aux, const void *tenant)
{
    const struct kt_key_aux *a = aux;
    return strcmp(a->info.tenant, tenant) == 0;
}

/* A request the slow path would refuse is never a hit (avail/read.c
 * kt_read_check). */
static bool kt_request_ok(const keytier_request *req)
{
    bool named = keytier_internal_op_name(req->operation) != NULL;
    return ((req->kind == KEYTIER_REQUEST_USER &&
             req->operation == KEYTIER_INTERNAL_NONE) ||
            (req->kind == KEYTIER_REQUEST_INTERNAL && named)) &&
           (req->approval_id == NULL ||
            kt_text_ok(req->approval_id, KEYTIER_ID_SIZE - 1));
}

/*
 * A key served by the cache: the entry `prefix` + id whose aux the accept
 * function takes, holding want bytes (the key, then for tier keys its
 * envelope and commitment keys).  NULL on a miss or a refused entry.
 */
static keytier_key *kt_cached_key(keytier_ctx *ctx, const char *prefix,
                                  const char *id, size_t want,
                                  kt_cache_accept_fn accept, const void *arg,
                                  bool count_miss)
{
    char cid[KT_AVAIL_CACHE_ID];
    unsigned char buf[KT_CACHE_KEY_MAX];
    struct kt_key_aux aux;
    size_t len = 0;
    keytier_key *k = NULL;
    kt_avail_cache_id(cid, prefix, id);
    if (!kt_avail_cache_hit(ctx, cid, buf, sizeof buf, &len, &aux, sizeof aux,
                            accept, arg, count_miss))
        return NULL;
    if (len == want && (k = kt_key_alloc(ctx)) != NULL) {
        kt_key_from_aux(k, &aux);
        k->key = kt_secret_from(buf, KT_KEY_SIZE);
        if (k->key == NULL ||
            (want > KT_KEY_SIZE &&
             kt_envelope_key_restore(k, buf + KT_KEY_SIZE,
                                     buf + 2 * KT_KEY_SIZE) != KEYTIER_OK)) {
            keytier_key_close(k);
            k = NULL;
            kt_err_clear();
        }
    }
    kt_wipe(buf, len);
    return k;
}

static bool kt_dep_key_hit(keytier_ctx *ctx, const keytier_request *req,
                           const char *tenant, const char *dep_id,
                           keytier_key **out)
{
    keytier_key *k;
    if (!kt_request_ok(req))
        return false;
    /* the DEP key's one lookup: kt_dep_key_read does not look again */
    k = kt_cached_key(ctx, "dep:", dep_id, KT_KEY_SIZE, kt_dep_hit_ok, tenant,
                      true);
    if (k != NULL)
        *out = k;
    return k != NULL;
}

/* The cached child's aux must name exactly what the slow path binds: the
 * parent, its tenant, DEP, workload and the next level (the AAD). */
static bool kt_tier_hit_ok(const void *aux, const void *arg)
{
    const struct kt_key_aux *a = aux;
    const keytier_key *p = arg;
    return a->info.level == p->info.level + 1 &&
           strcmp(a->info.parent_id, p->info.key_id) == 0 &&
           strcmp(a->info.tenant, p->info.tenant) == 0 &&
           strcmp(a->info.dep_id, p->info.dep_id) == 0 &&
           strcmp(a->workload, p->workload) == 0;
}

static bool kt_tier_cacheable(const keytier_key *parent)
{
    return parent->info.level + 1 <= parent->ctx->cfg.avail.cache_tier_levels;
}

#define KT_TIER_CACHED (3 * KT_KEY_SIZE) /* key, envelope key, commitment */

static bool kt_tier_hit(keytier_key *parent, const char *key_id,
                        keytier_key **out)
{
    keytier_key *k;
    if (!kt_tier_cacheable(parent))
        return false;
    k = kt_cached_key(parent->ctx, "key:", key_id, KT_TIER_CACHED,
                      kt_tier_hit_ok, parent, false);
    if (k != NULL)
        *out = k;
    return k != NULL;
}

/* Caches a tier key just opened the slow way (epoch: read before its
 * record was). */
static void kt_tier_put(const keytier_key *k, uint64_t epoch)
{
    unsigned char buf[KT_TIER_CACHED];
    struct kt_key_aux aux;
    struct kt_avail_fill fill = {epoch, &aux, sizeof aux};
    if (k->info.level > k->ctx->cfg.avail.cache_tier_levels ||
        k->enc_key == NULL)
        return;
    kt_key_aux_of(k, &aux);
    memcpy(buf, kt_secret_cdata(k->key), KT_KEY_SIZE);
    memcpy(buf + KT_KEY_SIZE, kt_secret_cdata(k->enc_key), KT_KEY_SIZE);
    memcpy(buf + 2 * KT_KEY_SIZE, k->commit, KT_KEY_SIZE);
    kt_avail_cache_put_key(k->ctx, k->info.key_id, k->info.tenant,
                           k->info.dep_id, k->info.parent_id, buf, sizeof buf,
                           &fill);
    kt_wipe(buf, sizeof buf);
}

KEYTIER_API keytier_err keytier_dep_key_open(keytier_ctx *ctx,
                                             const keytier_request *req,
                                             const char *tenant,
                                             const char *dep_id,
                                             keytier_key **out)
{
    kt_err_clear();
    if (ctx == NULL || req == NULL || out == NULL ||
        !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(dep_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_key_open");
    /* A hit touches neither the store nor a token. */
    if (kt_dep_key_hit(ctx, req, tenant, dep_id, out))
        return KEYTIER_OK;
    uint64_t epoch = kt_avail_cache_epoch(ctx);
    struct kt_dep_rec *d = malloc(sizeof *d);
    struct kt_key_aux *aux = malloc(sizeof *aux);
    keytier_key *k = kt_key_alloc(ctx);
    keytier_err e;
    if (d == NULL || aux == NULL || k == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto out;
    }
    e = kt_store_dep_get(ctx->store, dep_id, d);
    if (e != KEYTIER_OK)
        goto out;
    if (strcmp(d->tenant, tenant) != 0) {
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "DEP %s does not belong to tenant %s", dep_id, tenant);
        goto out;
    }
    if (d->state == KEYTIER_DEP_OFFBOARDED) {
        e = kt_err(KEYTIER_E_OFFBOARDED,
                   "DEP %s was offboarded: its DEP key is no longer used; "
                   "open sites by name or path, or the region's TIK "
                   "(keytier_tik_open)",
                   dep_id);
        goto out;
    }
    if (!kt_uuid_parse(d->dep_id, k->dep_id_bin)) {
        e = kt_err(KEYTIER_E_FORMAT, "DEP id %s", d->dep_id);
        goto out;
    }
    e = kt_shape_of(ctx, d->workload, &k->max_level, &k->files);
    if (e != KEYTIER_OK)
        goto out;
    memcpy(k->key_id_bin, k->dep_id_bin, KT_UUID_BYTES);
    kt_strlcpy(k->info.key_id, d->dep_id, sizeof k->info.key_id);
    kt_strlcpy(k->info.dep_id, d->dep_id, sizeof k->info.dep_id);
    kt_strlcpy(k->info.tenant, d->tenant, sizeof k->info.tenant);
    kt_strlcpy(k->workload, d->workload, sizeof k->workload);
    k->info.level = 0;
    k->info.created = d->created;
    kt_key_aux_of(k, aux);
    struct kt_avail_fill fill = {epoch, aux, sizeof *aux};
    e = kt_dep_key_read(ctx, d, req, KT_FALLBACK_OP_READ, &fill, &k->key);
    if (e != KEYTIER_OK)
        goto out;
    *out = k;
    k = NULL;
out:
    free(aux);
    keytier_key_close(k);
    if (d != NULL) {
        kt_wipe(d, sizeof *d);
        free(d);
    }
    return e;
}

/* The deepest level below a new child of parent: a site of a files DEP
 * made before TIKs (level 1, under no TIK) has one level less. */
static unsigned kt_child_max(const keytier_key *parent, const char *tik_id)
{
    if (parent->info.level == 0 && parent->files && tik_id[0] == '\0')
        return parent->max_level - 1;
    return parent->max_level;
}

/* A site asked of a files DEP key goes under the DEP's TIK (its oldest),
 * when the DEP has one: *done says whether it went there. */
static keytier_err kt_create_under_tik(keytier_key *parent, const char *name,
                                       char out_id[KEYTIER_ID_SIZE], bool *done)
{
    struct kt_key_rec *tiks = NULL;
    size_t n = 0;
    keytier_key *tik = NULL;
    *done = false;
    if (parent->info.level != 0 || !parent->files)
        return KEYTIER_OK;
    keytier_err e =
        kt_store_tik_list(parent->ctx->store, parent->info.dep_id, &tiks, &n);
    if (e == KEYTIER_OK && n > 0) {
        *done = true;
        e = keytier_key_open(parent, tiks[0].key_id, &tik);
        if (e == KEYTIER_OK)
            e = keytier_key_create(tik, name, out_id);
    }
    keytier_key_close(tik);
    if (tiks != NULL)
        kt_wipe(tiks, n * sizeof *tiks);
    free(tiks);
    return e;
}

/* The DEP of parent accepts new keys: not disabled or purged; an
 * offboarded DEP only below its TIKs (service-managed). */
static keytier_err kt_create_state_ok(const keytier_key *parent)
{
    int state = 0;
    keytier_err e =
        kt_store_dep_state(parent->ctx->store, parent->info.dep_id, &state);
    if (e != KEYTIER_OK)
        return e;
    if (state == KEYTIER_DEP_DISABLED || state == KEYTIER_DEP_PURGED ||
        (state == KEYTIER_DEP_OFFBOARDED && parent->tik_id[0] == '\0'))
        return kt_err(KEYTIER_E_DEP_DISABLED, "DEP %s accepts no new keys",
                      parent->info.dep_id);
    if (state == KEYTIER_DEP_REGISTERING)
        return kt_err(KEYTIER_E_DEP_STATE,
                      "DEP %s is registering: no key until its copies are "
                      "proven",
                      parent->info.dep_id);
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_key_create(keytier_key *parent,
                                           const char *name,
                                           char out_id[KEYTIER_ID_SIZE])
{
    kt_err_clear();
    if (parent == NULL || !kt_text_ok(name, KEYTIER_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_key_create");
    keytier_ctx *ctx = parent->ctx;
    if (parent->info.level >= parent->max_level)
        return kt_err(KEYTIER_E_DEPTH,
                      "workload %s has %u levels below the DEP key; %s is at "
                      "level %u",
                      parent->workload, parent->max_level, parent->info.key_id,
                      parent->info.level);
    struct kt_key_rec r;
    kt_secret *key = NULL;
    uint8_t id[KT_UUID_BYTES];
    bool done = false;
    keytier_err e = kt_create_state_ok(parent);
    if (e == KEYTIER_OK)
        e = kt_create_under_tik(parent, name, out_id, &done);
    if (e != KEYTIER_OK || done)
        goto out;
    key = kt_secret_random(KT_KEY_SIZE);
    if (key == NULL || !kt_uuid_new(id)) {
        e = kt_err(KEYTIER_E_CRYPTO, "random generation failed");
        goto out;
    }
    memset(&r, 0, sizeof r);
    kt_uuid_format(id, r.key_id);
    kt_strlcpy(r.tenant, parent->info.tenant, sizeof r.tenant);
    kt_strlcpy(r.workload, parent->workload, sizeof r.workload);
    kt_strlcpy(r.dep_id, parent->info.dep_id, sizeof r.dep_id);
    kt_strlcpy(r.parent_id, parent->info.key_id, sizeof r.parent_id);
    kt_strlcpy(r.name, name, sizeof r.name);
    if (parent->info.level > 0)
        kt_strlcpy(r.tik_id, parent->tik_id, sizeof r.tik_id);
    r.level = parent->info.level + 1;
    r.created = (int64_t)time(NULL);
    e = kt_tier_gcm(parent->key, &r, key, 1);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_store_key_insert(ctx->store, &r);
    if (e != KEYTIER_OK)
        goto out;
    if (out_id != NULL)
        kt_strlcpy(out_id, r.key_id, KEYTIER_ID_SIZE);
out:
    kt_secret_free(key);
    return e;
}

keytier_err kt_key_handle(keytier_ctx *ctx, const struct kt_key_rec *r,
                          kt_secret **key, bool files, unsigned max_level,
                          keytier_key **out)
{
    keytier_key *k = kt_key_alloc(ctx);
    keytier_err e = KEYTIER_OK;
    if (k == NULL) {
        kt_secret_free(*key);
        *key = NULL;
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    k->key = *key;
    *key = NULL;
    if (!kt_uuid_parse(r->key_id, k->key_id_bin) ||
        !kt_uuid_parse(r->dep_id, k->dep_id_bin)) {
        e = kt_err(KEYTIER_E_FORMAT, "key id %s", r->key_id);
        goto out;
    }
    kt_strlcpy(k->info.key_id, r->key_id, sizeof k->info.key_id);
    kt_strlcpy(k->info.parent_id, r->parent_id, sizeof k->info.parent_id);
    kt_strlcpy(k->info.dep_id, r->dep_id, sizeof k->info.dep_id);
    kt_strlcpy(k->info.tenant, r->tenant, sizeof k->info.tenant);
    kt_strlcpy(k->info.name, r->name, sizeof k->info.name);
    kt_strlcpy(k->workload, r->workload, sizeof k->workload);
    kt_strlcpy(k->tik_id, r->tik_id, sizeof k->tik_id);
    k->info.level = r->level;
    k->info.created = r->created;
    k->max_level = max_level;
    k->files = files;
    e = kt_envelope_key_init(k);
    if (e != KEYTIER_OK)
        goto out;
    *out = k;
    k = NULL;
out:
    keytier_key_close(k);
    return e;
}

/* Opens record r under parent (r already read and checked to be a child of
 * parent). */
static keytier_err kt_key_open_rec(keytier_key *parent, struct kt_key_rec *r,
                                   keytier_key **out)
{
    kt_secret *key = kt_secret_new(KT_KEY_SIZE + 16);
    if (key == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    /* The AAD is rebuilt from where the key is being opened (the parent
     * handle), not only from the stored columns: below a TIK the TIK is
     * the parent's; at level 1 only a TIK names one (itself). */
    kt_strlcpy(r->parent_id, parent->info.key_id, sizeof r->parent_id);
    kt_strlcpy(r->dep_id, parent->info.dep_id, sizeof r->dep_id);
    kt_strlcpy(r->tenant, parent->info.tenant, sizeof r->tenant);
    kt_strlcpy(r->workload, parent->workload, sizeof r->workload);
    r->level = parent->info.level + 1;
    if (parent->info.level > 0)
        kt_strlcpy(r->tik_id, parent->tik_id, sizeof r->tik_id);
    else if (!parent->files || strcmp(r->tik_id, r->key_id) != 0)
        r->tik_id[0] = '\0';
    keytier_err e = kt_tier_gcm(parent->key, r, key, 0);
    if (e != KEYTIER_OK) {
        kt_secret_free(key);
        return e;
    }
    kt_secret_truncate(key, KT_KEY_SIZE);
    return kt_key_handle(parent->ctx, r, &key, parent->files,
                         kt_child_max(parent, r->tik_id), out);
}

/* A site asked of its files DEP key: r is a TIK's child, the TIK being
 * (as its open checks) under this DEP key. */
static bool kt_site_of_dep_key(const keytier_key *parent,
                               const struct kt_key_rec *r)
{
    return parent->info.level == 0 && parent->files && r->tik_id[0] != '\0' &&
           strcmp(r->parent_id, r->tik_id) == 0 &&
           strcmp(r->tenant, parent->info.tenant) == 0;
}

static keytier_err kt_key_open_via_tik(keytier_key *parent,
                                       const struct kt_key_rec *r,
                                       keytier_key **out)
{
    keytier_key *tik = NULL;
    keytier_err e = keytier_key_open(parent, r->tik_id, &tik);
    if (e == KEYTIER_OK)
        e = keytier_key_open(tik, r->key_id, out);
    keytier_key_close(tik);
    return e;
}

KEYTIER_API keytier_err keytier_key_open(keytier_key *parent,
                                         const char *key_id, keytier_key **out)
{
    kt_err_clear();
    if (parent == NULL || out == NULL ||
        !kt_text_ok(key_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_key_open");
    /* A hit touches neither the store nor the parent key. */
    if (kt_tier_hit(parent, key_id, out))
        return KEYTIER_OK;
    uint64_t epoch = kt_avail_cache_epoch(parent->ctx);
    struct kt_key_rec r;
    keytier_err e = kt_store_key_get(parent->ctx->store, key_id, &r);
    if (e == KEYTIER_OK && kt_site_of_dep_key(parent, &r)) {
        e = kt_key_open_via_tik(parent, &r, out);
        kt_wipe(&r, sizeof r);
        return e;
    }
    if (e == KEYTIER_OK && strcmp(r.tenant, parent->info.tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "key %s does not belong to tenant %s", key_id,
                   parent->info.tenant);
    else if (e == KEYTIER_OK && strcmp(r.parent_id, parent->info.key_id) != 0)
        e = kt_err(KEYTIER_E_WRONG_PARENT, "key %s is not under %s", key_id,
                   parent->info.key_id);
    if (e == KEYTIER_OK)
        e = kt_key_open_rec(parent, &r, out);
    if (e == KEYTIER_OK)
        kt_tier_put(*out, epoch);
    kt_wipe(&r, sizeof r);
    return e;
}

#define KT_MAX_DEPTH 8

/* Where a chain starts: the DEP key, or for the TIK of an offboarded DEP
 * the TIK itself through its service-managed copy (*top_done). */
static keytier_err kt_chain_start(keytier_ctx *ctx, const keytier_request *req,
                                  const char *tenant,
                                  const struct kt_key_rec *top,
                                  keytier_key **cur, bool *top_done)
{
    int state = 0;
    *top_done = false;
    if (top->tik_id[0] != '\0' && strcmp(top->tik_id, top->key_id) == 0 &&
        kt_store_dep_state(ctx->store, top->dep_id, &state) == KEYTIER_OK &&
        state == KEYTIER_DEP_OFFBOARDED) {
        *top_done = true;
        kt_secret *key = NULL;
        keytier_err e = kt_tik_managed_key(ctx, top, &key);
        if (e != KEYTIER_OK)
            return e;
        /* below the TIK: the TIK's levels of the files shape */
        return kt_key_handle(ctx, top, &key, true,
                             kt_shape_depth(KT_SHAPE_FILES), cur);
    }
    kt_err_clear();
    return keytier_dep_key_open(ctx, req, tenant, top->parent_id, cur);
}

static keytier_err kt_open_chain(keytier_ctx *ctx, const keytier_request *req,
                                 const char *tenant, struct kt_key_rec *leaf,
                                 uint64_t epoch, keytier_key **out)
{
    /* Walk up to the DEP, then open down from the DEP key. */
    struct kt_key_rec *chain = calloc(KT_MAX_DEPTH, sizeof *chain);
    keytier_key *cur = NULL, *next = NULL;
    size_t n = 0;
    keytier_err e = KEYTIER_OK;
    if (chain == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    chain[n++] = *leaf;
    while (chain[n - 1].level > 1) {
        if (n == KT_MAX_DEPTH) {
            e = kt_err(KEYTIER_E_DEPTH, "key %s", leaf->key_id);
            goto out;
        }
        e = kt_store_key_get(ctx->store, chain[n - 1].parent_id, &chain[n]);
        if (e != KEYTIER_OK)
            goto out;
        if (strcmp(chain[n].tenant, tenant) != 0) {
            e = kt_err(KEYTIER_E_WRONG_TENANT, "key %s", chain[n].key_id);
            goto out;
        }
        n++;
    }
    bool top_done = false;
    e = kt_chain_start(ctx, req, tenant, &chain[n - 1], &cur, &top_done);
    if (e != KEYTIER_OK)
        goto out;
    if (top_done)
        n--;
    while (n > 0) {
        struct kt_key_rec *r = &chain[--n];
        if (strcmp(r->parent_id, cur->info.key_id) != 0) {
            e = kt_err(KEYTIER_E_WRONG_PARENT, "key %s", r->key_id);
            goto out;
        }
        if (!kt_tier_hit(cur, r->key_id, &next)) {
            e = kt_key_open_rec(cur, r, &next);
            if (e != KEYTIER_OK)
                goto out;
            kt_tier_put(next, epoch);
        }
        keytier_key_close(cur);
        cur = next;
        next = NULL;
    }
    *out = cur;
    cur = NULL;
out:
    keytier_key_close(cur);
    kt_wipe(chain, KT_MAX_DEPTH * sizeof *chain);
    free(chain);
    return e;
}

KEYTIER_API keytier_err keytier_key_open_path(keytier_ctx *ctx,
                                              const keytier_request *req,
                                              const char *tenant,
                                              const char *key_id,
                                              keytier_key **out)
{
    kt_err_clear();
    if (ctx == NULL || req == NULL || out == NULL ||
        !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(key_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_key_open_path");
    struct kt_key_rec r;
    uint64_t epoch = kt_avail_cache_epoch(ctx);
    keytier_err e = kt_store_key_get(ctx->store, key_id, &r);
    if (e == KEYTIER_OK && strcmp(r.tenant, tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "key %s does not belong to tenant %s", key_id, tenant);
    if (e == KEYTIER_OK)
        e = kt_open_chain(ctx, req, tenant, &r, epoch, out);
    else /* lifecycle: gone with a purge */
        e = kt_key_purged(ctx, e, tenant, NULL, "key");
    /* lifecycle: a migration moves a site and the keys below it in one
     * transaction, but the chain is read row by row: a read that straddled
     * that commit sees old and new rows mixed and fails to authenticate.
     * One fresh read settles it (a really altered key fails again). */
    if (e == KEYTIER_E_AUTH &&
        (epoch = kt_avail_cache_epoch(ctx),
         kt_store_key_get(ctx->store, key_id, &r) == KEYTIER_OK) &&
        strcmp(r.tenant, tenant) == 0)
        e = kt_open_chain(ctx, req, tenant, &r, epoch, out);
    kt_wipe(&r, sizeof r);
    return e;
}

KEYTIER_API keytier_err keytier_key_open_name(
    keytier_ctx *ctx, const keytier_request *req, const char *tenant,
    const char *workload, const char *name, keytier_key **out)
{
    kt_err_clear();
    if (ctx == NULL || req == NULL || out == NULL ||
        !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX) ||
        !kt_text_ok(name, KEYTIER_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_key_open_name");
    struct kt_key_rec r;
    uint64_t epoch = kt_avail_cache_epoch(ctx);
    keytier_err e =
        kt_store_key_get_by_name(ctx->store, tenant, workload, name, &r);
    if (e == KEYTIER_OK)
        e = kt_open_chain(ctx, req, tenant, &r, epoch, out);
    else /* lifecycle: gone with a purge */
        e = kt_key_purged(ctx, e, tenant, workload, name);
    /* lifecycle: as in keytier_key_open_path, once. */
    if (e == KEYTIER_E_AUTH &&
        (epoch = kt_avail_cache_epoch(ctx),
         kt_store_key_get_by_name(ctx->store, tenant, workload, name, &r) ==
             KEYTIER_OK))
        e = kt_open_chain(ctx, req, tenant, &r, epoch, out);
    kt_wipe(&r, sizeof r);
    return e;
}

KEYTIER_API keytier_err keytier_key_list(keytier_ctx *ctx, const char *tenant,
                                         const char *parent_id,
                                         keytier_key_info **out, size_t *count)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || count == NULL ||
        !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(parent_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_key_list");
    struct kt_key_rec *recs = NULL;
    size_t n = 0;
    keytier_err e = kt_store_key_list(ctx->store, tenant, parent_id, &recs, &n);
    if (e != KEYTIER_OK)
        return e;
    keytier_key_info *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL) {
        free(recs);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        keytier_key_info *o = &list[i];
        kt_strlcpy(o->key_id, recs[i].key_id, sizeof o->key_id);
        kt_strlcpy(o->parent_id, recs[i].parent_id, sizeof o->parent_id);
        kt_strlcpy(o->dep_id, recs[i].dep_id, sizeof o->dep_id);
        kt_strlcpy(o->tenant, recs[i].tenant, sizeof o->tenant);
        kt_strlcpy(o->name, recs[i].name, sizeof o->name);
        o->level = recs[i].level;
        o->created = recs[i].created;
    }
    free(recs);
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

KEYTIER_API void keytier_key_list_free(keytier_key_info *list)
{
    free(list);
}

KEYTIER_API keytier_err keytier_status_get(keytier_ctx *ctx, const char *tenant,
                                           const char *workload,
                                           const char *name,
                                           keytier_status *out)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX) ||
        !kt_text_ok(name, KEYTIER_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_status_get");
    memset(out, 0, sizeof *out);
    struct kt_key_rec r;
    keytier_err e =
        kt_store_key_get_by_name(ctx->store, tenant, workload, name, &r);
    if (e == KEYTIER_E_NOT_FOUND) {
        kt_err_clear();
        /* lifecycle: not encrypted, or gone with a purge */
        bool purged = false;
        e = kt_store_tenant_purged(ctx->store, tenant, workload, &purged);
        if (e == KEYTIER_OK && purged) {
            out->purged = 1;
            out->dep_state = KEYTIER_DEP_PURGED;
        }
        return e;
    }
    if (e != KEYTIER_OK)
        return e;
    struct kt_dep_rec *d = malloc(sizeof *d);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    e = kt_store_dep_get(ctx->store, r.dep_id, d);
    if (e == KEYTIER_OK) {
        out->encrypted = 1;
        kt_strlcpy(out->dep_id, d->dep_id, sizeof out->dep_id);
        kt_strlcpy(out->policy_id, d->policy_id, sizeof out->policy_id);
        kt_strlcpy(out->key_id, r.key_id, sizeof out->key_id);
        out->dep_state = (keytier_dep_state)d->state;
        kt_strlcpy(out->dep_name, d->name, sizeof out->dep_name);
        /* files shape */
        kt_strlcpy(out->region, kt_dep_region(ctx, d), sizeof out->region);
        out->service_managed = d->state == KEYTIER_DEP_OFFBOARDED;
    }
    free(d);
    return e;
}

const char *kt_dep_region(keytier_ctx *ctx, const struct kt_dep_rec *d)
{
    const struct kt_workload_cfg *w =
        kt_config_workload(&ctx->cfg, d->workload);
    if (d->region[0] != '\0')
        return d->region;
    return w != NULL && w->shape == KT_SHAPE_FILES ? KEYTIER_REGION_DEFAULT
                                                   : "";
}

/* The files DEP of a region in use (offboarded ones included) and its
 * oldest TIK. */
static keytier_err kt_region_tik(keytier_ctx *ctx, const char *tenant,
                                 const char *workload, const char *region,
                                 struct kt_key_rec *tik)
{
    char dep_id[KEYTIER_ID_SIZE];
    struct kt_key_rec *tiks = NULL;
    size_t n = 0;
    keytier_err e =
        kt_store_dep_of_region(ctx->store, tenant, workload, region, dep_id);
    if (e == KEYTIER_OK && dep_id[0] == '\0')
        return kt_err(KEYTIER_E_DEP_NOT_FOUND,
                      "tenant %s has no files DEP for workload %s in region "
                      "%s",
                      tenant, workload, region);
    if (e == KEYTIER_OK)
        e = kt_store_tik_list(ctx->store, dep_id, &tiks, &n);
    if (e == KEYTIER_OK && n == 0)
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND,
                   "files DEP %s was made before tenant intermediate keys: "
                   "open it with keytier_dep_key_open",
                   dep_id);
    if (e == KEYTIER_OK)
        *tik = tiks[0];
    if (tiks != NULL)
        kt_wipe(tiks, n * sizeof *tiks);
    free(tiks);
    return e;
}

KEYTIER_API keytier_err keytier_tik_open(keytier_ctx *ctx,
                                         const keytier_request *req,
                                         const char *tenant,
                                         const char *workload,
                                         const char *region, keytier_key **out)
{
    kt_err_clear();
    if (ctx == NULL || req == NULL || out == NULL ||
        !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX) ||
        (region != NULL && !kt_text_ok(region, KEYTIER_REGION_MAX)))
        return kt_err(KEYTIER_E_ARGS, "keytier_tik_open");
    const struct kt_workload_cfg *w = kt_config_workload(&ctx->cfg, workload);
    if (w == NULL)
        return kt_err(KEYTIER_E_CONFIG, "unknown workload '%s'", workload);
    if (w->shape != KT_SHAPE_FILES)
        return kt_err(KEYTIER_E_ARGS,
                      "workload %s has the mail shape: tenant intermediate "
                      "keys are the files shape's",
                      workload);
    struct kt_key_rec tik;
    keytier_err e = kt_region_tik(
        ctx, tenant, workload, region ? region : KEYTIER_REGION_DEFAULT, &tik);
    if (e == KEYTIER_OK)
        e = keytier_key_open_path(ctx, req, tenant, tik.key_id, out);
    kt_wipe(&tik, sizeof tik);
    return e;
}
