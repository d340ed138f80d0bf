/* Writes to a token's database: objects added, updated, modified in place
 * and destroyed, PIN records rewritten; each commit updates the manifest
 * and raises <serial>.seq. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "store/store.h"
#include "token_int.h"

/* Lock held: the keys a store write needs; it never writes below the
 * counter this process has seen committed or read in <serial>.seq. pins
 * gets a copy of the PIN records as this process last read them (for
 * keys_pins, outside the lock). */
static void store_keys(const struct kt_token *t, struct kt_store_keys *k,
                       struct kt_pin pins[2])
{
    memcpy(k->mac, t->mac_key, 32);
    memcpy(k->manifest, t->man_key, 32);
    k->min_ctr = t->man_ctr_seen > t->seq_ctr ? t->man_ctr_seen : t->seq_ctr;
    k->check_pins = false;
    if (pins != NULL)
        memcpy(pins, t->pins, 2 * sizeof(pins[0]));
}

/* An object write is refused (KT_CKR_RETRY) if the PIN records changed
 * since: the master key this process seals with may be an old one. */
static KT_NODISCARD CK_RV keys_pins(struct kt_store_keys *k,
                                    struct kt_pin pins[2])
{
    CK_RV rv = kt_seal_pins_digest(k->manifest, pins, k->pins);
    k->check_pins = rv == CKR_OK;
    kt_wipe(pins, 2 * sizeof(pins[0]));
    /* Out of memory the check could not be armed: no write without it. */
    return rv == CKR_HOST_MEMORY ? rv : CKR_OK;
}

/* Copies of the keys a store write needs (CKR_USER_NOT_LOGGED_IN without
 * the master key when need_mk: the record seals something, or the object
 * is private). The record MAC and manifest keys come from <serial>.key, so
 * a public object without secrets is written without a login, as PKCS#11
 * lets a read/write public session do. A refused token is never written: a
 * write would carry a tampered or rolled-back file forward under a new
 * manifest. */
static KT_NODISCARD CK_RV write_keys(struct kt_token *t,
                                     struct kt_store_keys *k, unsigned char *mk,
                                     bool need_mk)
{
    struct kt_pin pins[2];
    pthread_rwlock_rdlock(&t->lock);
    bool loaded = t->mk_loaded;
    bool refused = t->man_refused;
    if (mk != NULL)
        memcpy(mk, t->mk, 32);
    store_keys(t, k, pins);
    pthread_rwlock_unlock(&t->lock);
    CK_RV rv = keys_pins(k, pins);
    if (rv != CKR_OK)
        return rv;
    if (refused)
        return CKR_DEVICE_ERROR;
    return loaded || !need_mk ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
}

/* dblock held, after a commit: <serial>.seq raised to the manifest counter
 * committed. A failure is logged; the database is then ahead of .seq,
 * which is accepted (the window of a crash between the two). */
static void seq_after_commit(struct kt_token *t, int64_t ctr)
{
    char base[PATH_MAX];
    kt_tok_base(t, base);
    if (kt_seq_advance(base, t->key_fd, t->seq_key, t->serial, ctr, false) !=
        CKR_OK)
        kt_log(KT_LOG_ERROR,
               "token %s: write counter file (.seq) not updated to %lld",
               t->path, (long long)ctr);
}

CK_RV kt_token_pins_write(struct kt_token *t, kt_pins_fn fn, void *ctx,
                          const struct kt_store_reseal *reseal)
{
    struct kt_store_keys k;
    struct kt_manifest man;
    struct kt_pin pins[2];
    memset(&man, 0, sizeof(man));
    pthread_mutex_lock(&t->dblock);
    pthread_rwlock_rdlock(&t->lock);
    store_keys(t, &k, NULL);
    bool refused = t->man_refused;
    pthread_rwlock_unlock(&t->lock);
    CK_RV rv =
        refused ? CKR_DEVICE_ERROR
                : kt_store_pins_update(t->db, &k, fn, ctx, reseal, pins, &man);
    if (rv == CKR_OK && man.present) {
        kt_token_wrlock(t);
        memcpy(t->pins, pins, sizeof(pins));
        if (reseal != NULL) {
            /* Every row was rewritten: all reloaded (handles kept). */
            t->loaded = false;
            if (t->mk_loaded)
                memcpy(t->mk, reseal->new_mk, 32);
        } else if (t->man.present && man.ctr == t->man.ctr + 1) {
            t->man = man;
        } else {
            t->man_stale = true;
        }
        pthread_rwlock_unlock(&t->lock);
        seq_after_commit(t, man.ctr);
        if (reseal != NULL)
            rv = kt_tok_sync_locked(t);
    }
    pthread_mutex_unlock(&t->dblock);
    kt_wipe(&k, sizeof(k));
    kt_wipe(pins, sizeof(pins));
    return rv;
}

/* Lock held for writing: our own write committed w. The manifest it wrote
 * describes our object set only if no other process wrote since our last
 * reload; otherwise the next sync (data_version changed) brings both. */
static void adopt_written(struct kt_token *t, struct kt_object *o,
                          const struct kt_store_written *w)
{
    if (o != NULL) {
        o->gen = (uint64_t)w->gen;
        memcpy(o->mac, w->mac, 32);
        memcpy(o->term, w->term, 32);
        o->has_term = true;
    }
    if (!t->man.present || w->man.ctr != t->man.ctr + 1)
        t->man_stale = true;
    t->man = w->man;
}

static KT_NODISCARD CK_RV seal_into(struct kt_token *t, struct kt_object *o,
                                    struct kt_store_keys *k)
{
    unsigned char mk[32];
    unsigned char *blob = NULL;
    size_t len = 0;
    CK_RV rv = write_keys(t, k, mk,
                          o->private_ || kt_seal_needs_mk(o->cls, &o->attrs));
    if (rv == CKR_OK)
        rv = kt_seal_object(mk, o->id, o->cls, &o->attrs, &blob, &len);
    if (rv == CKR_OK) {
        free(o->blob);
        o->blob = blob;
        o->blob_len = len;
    }
    kt_wipe(mk, sizeof(mk));
    return rv;
}

CK_RV kt_token_add_object(struct kt_token *t, const struct kt_session *owner,
                          struct kt_object *o, CK_OBJECT_HANDLE *handle)
{
    CK_RV rv = CKR_OK;
    struct kt_store_keys k;
    if (!o->token) {
        /* The hot path of C_UnwrapKey and C_GenerateKey: only the owner's
         * shard is locked and counted on. */
        CK_OBJECT_HANDLE h = kt_handle_next_in(kt_handle_shard(o->session));
        o->handle = h;
        struct kt_obj_shard *sh = kt_tok_shard_of(t, h);
        pthread_mutex_lock(&sh->lock);
        if (owner == NULL || owner->closed)
            rv = CKR_SESSION_CLOSED;
        else if (o->private_ && t->login != CKU_USER)
            rv = CKR_USER_NOT_LOGGED_IN;
        else
            rv = kt_tok_shard_add(sh, o);
        pthread_mutex_unlock(&sh->lock);
        /* Once the shard lock is released a logout or a session close may
         * free the object at once: only the local handle is read now. */
        if (rv != CKR_OK)
            kt_object_free(o);
        else
            *handle = h;
        return rv;
    }
    o->handle = kt_handle_next();
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t id = 0;
        rv = kt_ossl_random((unsigned char *)&id, sizeof(id));
        if (rv != CKR_OK)
            break;
        o->id = (int64_t)(id >> 2) + 1;
        rv = seal_into(t, o, &k);
        if (rv != CKR_OK)
            break;
        pthread_mutex_lock(&t->dblock);
        struct kt_store_written w;
        rv = kt_store_put_object(t->db, &k, o->id, o->blob, o->blob_len, true,
                                 0, &w);
        if (rv == CKR_OK) {
            kt_token_wrlock(t);
            adopt_written(t, o, &w);
            rv = kt_tok_table_add(t, o);
            if (rv != CKR_OK)
                t->man_stale = true; /* in the store, not in memory */
            pthread_rwlock_unlock(&t->lock);
            seq_after_commit(t, w.man.ctr);
        }
        pthread_mutex_unlock(&t->dblock);
        /* A PIN changed in another process: reload (a new master key,
         * or a logout) and seal again. */
        if (rv == KT_CKR_RETRY)
            rv = kt_token_sync(t) == CKR_OK ? KT_CKR_RETRY : CKR_DEVICE_ERROR;
        if (rv != CKR_FUNCTION_FAILED && rv != KT_CKR_RETRY)
            break;
    }
    kt_wipe(&k, sizeof(k));
    if (rv == KT_CKR_RETRY)
        rv = CKR_FUNCTION_FAILED;
    if (rv != CKR_OK) {
        kt_object_free(o);
        return rv;
    }
    *handle = o->handle;
    return CKR_OK;
}

/* A new object with attrs that takes the place of h's (same store id and
 * session); CKR_OBJECT_HANDLE_INVALID when h is not visible. */
static KT_NODISCARD CK_RV update_fresh(struct kt_token *t, CK_OBJECT_HANDLE h,
                                       const kt_attrs *attrs,
                                       struct kt_object **out)
{
    struct kt_object *fresh = NULL;
    CK_RV rv = kt_object_new(attrs, &fresh);
    if (rv != CKR_OK)
        return rv;
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_object(t, h);
    if (o != NULL) {
        fresh->id = o->id;
        fresh->session = o->session;
    }
    pthread_rwlock_unlock(&t->lock);
    if (o == NULL) {
        kt_object_free(fresh);
        return CKR_OBJECT_HANDLE_INVALID;
    }
    fresh->handle = h;
    *out = fresh;
    return CKR_OK;
}

/* dblock held: fresh's sealed record written over h's row if h is still
 * at expect_gen, here and in the store (another process). */
static KT_NODISCARD CK_RV update_store(struct kt_token *t, CK_OBJECT_HANDLE h,
                                       const struct kt_object *fresh,
                                       struct kt_store_keys *k,
                                       uint64_t expect_gen,
                                       struct kt_store_written *w)
{
    CK_RV rv = CKR_OK;
    /* Compare-and-swap: the copy the change was made on must still be the
     * current version, here and in the store (another process). */
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_get(t, h);
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (o->gen != expect_gen)
        rv = KT_CKR_RETRY;
    pthread_rwlock_unlock(&t->lock);
    if (rv == CKR_OK)
        rv =
            kt_store_put_object(t->db, k, fresh->id, fresh->blob,
                                fresh->blob_len, false, (int64_t)expect_gen, w);
    if (rv == CKR_OK)
        seq_after_commit(t, w->man.ctr);
    return rv;
}

/* Lock held for writing: o takes fresh's attributes, record and parsed
 * key; fresh gets o's old ones (to be freed). The handle and id entries
 * stay; the label may change. */
static KT_NODISCARD CK_RV swap_contents(struct kt_token *t, struct kt_object *o,
                                        struct kt_object *fresh)
{
    kt_tok_index_del(t, o);
    kt_object_attrs_changed(o);
    kt_attrs tmp = o->attrs;
    o->attrs = fresh->attrs;
    fresh->attrs = tmp;
    unsigned char *b = o->blob;
    size_t bl = o->blob_len;
    o->blob = fresh->blob;
    o->blob_len = fresh->blob_len;
    fresh->blob = b;
    fresh->blob_len = bl;
    kt_object_refresh(o);
    CK_RV rv = kt_tok_index_add(t, o);
    /* The parsed key belonged to the old attributes. */
    void *pk = o->pkey;
    o->pkey = fresh->pkey;
    fresh->pkey = pk;
    struct kt_cache *kc = o->cache;
    o->cache = fresh->cache;
    fresh->cache = kc;
    o->verified = o->unsealed = true;
    return rv;
}

/* The change into memory, if h is still at expect_gen. */
static KT_NODISCARD CK_RV update_install(struct kt_token *t, CK_OBJECT_HANDLE h,
                                         struct kt_object *fresh,
                                         uint64_t expect_gen,
                                         const struct kt_store_written *w)
{
    CK_RV rv;
    kt_token_wrlock(t);
    struct kt_object *o = kt_token_get(t, h);
    if (o == NULL || o->gen != expect_gen) {
        rv = o == NULL ? CKR_OBJECT_HANDLE_INVALID : KT_CKR_RETRY;
        if (fresh->token)
            t->man_stale = true; /* in the store, not in memory */
    } else {
        if (fresh->token)
            adopt_written(t, o, w);
        else
            o->gen = (uint64_t)w->gen;
        rv = swap_contents(t, o, fresh);
    }
    pthread_rwlock_unlock(&t->lock);
    return rv;
}

CK_RV kt_token_update_object(struct kt_token *t, CK_OBJECT_HANDLE h,
                             const kt_attrs *attrs, uint64_t expect_gen)
{
    struct kt_store_written w;
    struct kt_store_keys k;
    struct kt_object *fresh = NULL;
    memset(&w, 0, sizeof(w));
    memset(&k, 0, sizeof(k));
    w.gen = (int64_t)expect_gen + 1;
    CK_RV rv = update_fresh(t, h, attrs, &fresh);
    if (rv != CKR_OK)
        return rv;
    if (fresh->token) {
        rv = seal_into(t, fresh, &k);
        if (rv != CKR_OK) {
            kt_object_free(fresh);
            return rv;
        }
        pthread_mutex_lock(&t->dblock);
        rv = update_store(t, h, fresh, &k, expect_gen, &w);
        kt_wipe(&k, sizeof(k));
    }
    if (rv == CKR_OK)
        rv = update_install(t, h, fresh, expect_gen, &w);
    if (fresh->token)
        pthread_mutex_unlock(&t->dblock);
    kt_object_free(fresh);
    return rv;
}

struct modify_ctx {
    struct kt_token *t;
    int64_t id;
    int64_t known_gen;
    CK_OBJECT_CLASS cls;
    unsigned char mk[32];
    struct kt_store_keys keys;
    kt_change_fn change;
    void *change_ctx;
    kt_attrs plain;
    unsigned char *blob;
    size_t blob_len;
};

static KT_NODISCARD CK_RV modify_cb(void *vctx, int64_t gen,
                                    const unsigned char *blob, size_t len,
                                    const unsigned char *mac, size_t mac_len,
                                    unsigned char **new_blob, size_t *new_len)
{
    struct modify_ctx *c = vctx;
    /* Generations only grow: an older one is an older copy put back. */
    if (gen < c->known_gen) {
        kt_log(KT_LOG_ERROR,
               "token %s: object %lld refused: its record went back to an "
               "older generation (rolled back outside the token)",
               c->t->path, (long long)c->id);
        return CKR_DEVICE_ERROR;
    }
    CK_RV rv = mac_len == 32
                   ? kt_seal_verify(c->keys.mac, c->id, gen, blob, len, mac)
                   : CKR_DATA_INVALID;
    if (rv == CKR_OK)
        rv = kt_attrs_parse(&c->plain, blob, len);
    if (rv == CKR_OK)
        rv = kt_seal_open_attrs(c->mk, c->id, c->cls, &c->plain);
    if (rv == CKR_HOST_MEMORY)
        return rv; /* not checked: no verdict */
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR,
               "token %s: object %lld refused: integrity check failed (the "
               "stored attributes were changed outside the token)",
               c->t->path, (long long)c->id);
        return CKR_DEVICE_ERROR;
    }
    rv = c->change(c->change_ctx, &c->plain);
    if (rv == CKR_OK)
        rv = kt_seal_object(c->mk, c->id, c->cls, &c->plain, new_blob, new_len);
    if (rv == CKR_OK) {
        c->blob = malloc(*new_len);
        if (c->blob == NULL)
            return CKR_HOST_MEMORY;
        memcpy(c->blob, *new_blob, *new_len);
        c->blob_len = *new_len;
    }
    return rv;
}

static KT_NODISCARD CK_RV modify_once(struct kt_token *t, CK_OBJECT_HANDLE h,
                                      kt_change_fn change, void *ctx)
{
    struct modify_ctx c;
    struct kt_store_written w;
    struct kt_pin pins[2];
    CK_RV rv = CKR_OK;
    memset(pins, 0, sizeof(pins));
    memset(&c, 0, sizeof(c));
    kt_attrs_init(&c.plain);
    c.t = t;
    c.change = change;
    c.change_ctx = ctx;
    pthread_mutex_lock(&t->dblock);
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_object(t, h);
    if (o == NULL || !o->token)
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (!t->mk_loaded)
        rv = CKR_USER_NOT_LOGGED_IN;
    else if (t->man_refused)
        rv = CKR_DEVICE_ERROR;
    if (rv == CKR_OK) {
        c.id = o->id;
        c.known_gen = (int64_t)o->gen;
        c.cls = o->cls;
        memcpy(c.mk, t->mk, 32);
        store_keys(t, &c.keys, pins);
    }
    pthread_rwlock_unlock(&t->lock);
    CK_RV kp = keys_pins(&c.keys, pins);
    if (rv == CKR_OK)
        rv = kp;
    if (rv == CKR_OK)
        rv = kt_store_update_object(t->db, &c.keys, c.id, modify_cb, &c, &w);
    if (rv == CKR_OK)
        seq_after_commit(t, w.man.ctr);
    if (rv == CKR_OK) {
        struct kt_object *fresh = NULL;
        rv = kt_object_new_take(&c.plain, &fresh);
        kt_token_wrlock(t);
        o = kt_hmap_get(&t->objects, h);
        if (rv != CKR_OK || o == NULL)
            t->man_stale = true; /* in the store, not in memory */
        if (rv == CKR_OK && o != NULL) {
            adopt_written(t, o, &w);
            kt_tok_index_del(t, o);
            kt_object_attrs_changed(o);
            kt_attrs tmp = o->attrs;
            o->attrs = fresh->attrs;
            fresh->attrs = tmp;
            free(o->blob);
            o->blob = c.blob;
            o->blob_len = c.blob_len;
            c.blob = NULL;
            kt_object_refresh(o);
            o->token = true;
            rv = kt_tok_index_add(t, o);
            kt_ossl_pkey_free(o->pkey);
            o->pkey = NULL;
            kt_cache_unref(o->cache);
            o->cache = NULL;
            o->verified = o->unsealed = true;
        }
        pthread_rwlock_unlock(&t->lock);
        kt_object_free(fresh);
    }
    pthread_mutex_unlock(&t->dblock);
    kt_wipe(c.mk, sizeof(c.mk));
    kt_wipe(&c.keys, sizeof(c.keys));
    kt_attrs_clear(&c.plain);
    free(c.blob);
    return rv;
}

/* A write that met a PIN change of another process (KT_CKR_RETRY) is
 * made again after a reload: with the new master key, or refused if this
 * process was logged out by it. */
CK_RV kt_token_modify_object(struct kt_token *t, CK_OBJECT_HANDLE h,
                             kt_change_fn change, void *ctx)
{
    CK_RV rv = KT_CKR_RETRY;
    for (int attempt = 0; attempt < 4 && rv == KT_CKR_RETRY; attempt++) {
        rv = modify_once(t, h, change, ctx);
        if (rv == KT_CKR_RETRY && kt_token_sync(t) != CKR_OK)
            rv = CKR_DEVICE_ERROR;
    }
    return rv == KT_CKR_RETRY ? CKR_FUNCTION_FAILED : rv;
}

static KT_NODISCARD CK_RV destroy_once(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    CK_RV rv = CKR_OK;
    struct kt_store_keys k;
    struct kt_store_written w;
    pthread_mutex_lock(&t->dblock);
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_object(t, h);
    int64_t id = o != NULL ? o->id : 0;
    bool is_token = o != NULL && o->token;
    bool need_mk = o != NULL && (o->private_ || o->cls == CKO_SECRET_KEY ||
                                 o->cls == CKO_PRIVATE_KEY);
    pthread_rwlock_unlock(&t->lock);
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    /* The manifest is updated with the deletion: like creation, a private
     * or secret-bearing object needs the master key. */
    if (rv == CKR_OK && is_token)
        rv = write_keys(t, &k, NULL, need_mk);
    if (rv == CKR_OK && is_token)
        rv = kt_store_delete_object(t->db, &k, id, &w);
    if (rv == CKR_OK && is_token)
        seq_after_commit(t, w.man.ctr);
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        o = kt_token_get(t, h);
        if (o != NULL)
            kt_tok_drop_object(t, o);
        else if (is_token)
            t->man_stale = true;
        if (is_token)
            adopt_written(t, NULL, &w);
        pthread_rwlock_unlock(&t->lock);
    }
    pthread_mutex_unlock(&t->dblock);
    kt_wipe(&k, sizeof(k));
    return rv;
}

CK_RV kt_token_destroy_object(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    CK_RV rv = KT_CKR_RETRY;
    for (int attempt = 0; attempt < 4 && rv == KT_CKR_RETRY; attempt++) {
        rv = destroy_once(t, h);
        if (rv == KT_CKR_RETRY && kt_token_sync(t) != CKR_OK)
            rv = CKR_DEVICE_ERROR;
    }
    return rv == KT_CKR_RETRY ? CKR_FUNCTION_FAILED : rv;
}
