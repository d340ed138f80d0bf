/* Tokens: slots, the in-memory object index and its synchronisation with
 * the token database. */
#include "kt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ossl/ossl.h"
#include "store/store.h"

static struct kt_token *token_alloc(CK_SLOT_ID slot)
{
    /* The shards are aligned to cache lines (kt_secure_alloc: so is every
     * block). The master key and the keys derived from it live in here:
     * the secure heap. */
    struct kt_token *t = kt_secure_alloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].lock, NULL);
        kt_hmap_init(&t->shards[i].objects);
        kt_hmap_init(&t->shards[i].labels);
    }
    t->slot_id = slot;
    t->lock_fd = -1;
    t->login = KT_NO_LOGIN;
    t->seen_gen = -1;
    pthread_mutex_init(&t->dblock, NULL);
    pthread_rwlock_init(&t->lock, NULL);
    kt_hmap_init(&t->objects);
    kt_hmap_init(&t->by_id);
    kt_hmap_init(&t->labels);
    return t;
}

struct kt_token *kt_token_new_free(CK_SLOT_ID slot)
{
    return token_alloc(slot);
}

void kt_token_free(struct kt_token *t)
{
    if (t == NULL)
        return;
    void *v;
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);)
        kt_object_free(v);
    kt_hmap_free(&t->objects);
    kt_hmap_free(&t->by_id);
    kt_hmap_free(&t->labels);
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        struct kt_obj_shard *sh = &t->shards[i];
        for (size_t j = 0; kt_hmap_iter(&sh->objects, &j, NULL, &v);)
            kt_object_free(v);
        kt_hmap_free(&sh->objects);
        kt_hmap_free(&sh->labels);
        pthread_mutex_destroy(&sh->lock);
    }
    kt_tokenlock_release(t);
    sqlite3_finalize(t->dv_stmt);
    if (t->db != NULL)
        kt_store_close(t->db);
    kt_wipe(t->mk, sizeof(t->mk));
    kt_wipe(t->mac_key, sizeof(t->mac_key));
    kt_wipe(t->man_key, sizeof(t->man_key));
    pthread_mutex_destroy(&t->dblock);
    pthread_rwlock_destroy(&t->lock);
    kt_free_secret(t, sizeof(*t));
}

CK_RV kt_token_open(const char *path, CK_SLOT_ID slot, struct kt_token **out)
{
    struct kt_token *t = token_alloc(slot);
    if (t == NULL)
        return CKR_HOST_MEMORY;
    snprintf(t->path, sizeof(t->path), "%s", path);
    CK_RV rv = kt_store_open(path, &t->db);
    if (rv == CKR_OK)
        rv = kt_store_read_meta(t->db, path, t->label, t->serial);
    if (rv == CKR_OK)
        rv = kt_store_read_pins(t->db, path, t->pins);
    if (rv == CKR_OK)
        rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv == CKR_OK)
        rv = kt_store_data_version(t->db, &t->dv_stmt, &t->data_version);
    if (rv != CKR_OK) {
        kt_token_free(t);
        return rv;
    }
    t->initialized = true;
    kt_log(KT_LOG_INFO, "token %s opened", path);
    *out = t;
    return CKR_OK;
}

bool kt_token_visible(const struct kt_token *t, const struct kt_object *o)
{
    if (o->token && (o->refused || t->man_refused))
        return false;
    if (o->token && !o->verified && t->mk_loaded)
        return false;
    return !o->private_ || t->login == CKU_USER;
}

static struct kt_obj_shard *shard_of(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    return &t->shards[kt_handle_shard(h)];
}

struct kt_object *kt_token_get(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    struct kt_object *o = kt_hmap_get(&t->objects, h);
    if (o == NULL) {
        struct kt_obj_shard *sh = shard_of(t, h);
        pthread_mutex_lock(&sh->lock);
        o = kt_hmap_get(&sh->objects, h);
        pthread_mutex_unlock(&sh->lock);
    }
    return o;
}

struct kt_object *kt_token_object(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    struct kt_object *o = kt_token_get(t, h);
    if (o == NULL || !kt_token_visible(t, o))
        return NULL;
    return o;
}

CK_ULONG kt_label_hash(const void *label, size_t len)
{
    if (len == 0)
        return 0;
    const unsigned char *p = label;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return (CK_ULONG)(h | 1);
}

/* The label index of a token object's table, or of a session object's
 * shard (whose lock the caller holds). */
static CK_RV labels_add(kt_hmap *labels, struct kt_object *o)
{
    o->label_prev = o->label_next = NULL;
    if (o->label_hash == 0)
        return CKR_OK;
    struct kt_object *head = kt_hmap_get(labels, o->label_hash);
    CK_RV rv = kt_hmap_put(labels, o->label_hash, o);
    if (rv != CKR_OK)
        return rv;
    o->label_next = head;
    if (head != NULL)
        head->label_prev = o;
    return CKR_OK;
}

static void labels_del(kt_hmap *labels, struct kt_object *o)
{
    if (o->label_hash == 0)
        return;
    if (o->label_next != NULL)
        o->label_next->label_prev = o->label_prev;
    if (o->label_prev != NULL)
        o->label_prev->label_next = o->label_next;
    else if (o->label_next != NULL) {
        /* Replaces an existing key: no allocation, cannot fail. */
        CK_RV r = kt_hmap_put(labels, o->label_hash, o->label_next);
        (void)r;
    } else
        kt_hmap_del(labels, o->label_hash);
    o->label_prev = o->label_next = NULL;
}

/* Label index of any object (token lock held for writing). */
static CK_RV index_add(struct kt_token *t, struct kt_object *o)
{
    if (o->token)
        return labels_add(&t->labels, o);
    struct kt_obj_shard *sh = shard_of(t, o->handle);
    pthread_mutex_lock(&sh->lock);
    CK_RV rv = labels_add(&sh->labels, o);
    pthread_mutex_unlock(&sh->lock);
    return rv;
}

static void index_del(struct kt_token *t, struct kt_object *o)
{
    if (o->token) {
        labels_del(&t->labels, o);
        return;
    }
    struct kt_obj_shard *sh = shard_of(t, o->handle);
    pthread_mutex_lock(&sh->lock);
    labels_del(&sh->labels, o);
    pthread_mutex_unlock(&sh->lock);
}

/* A session object into its shard (the shard's lock held). */
static CK_RV shard_add(struct kt_obj_shard *sh, struct kt_object *o)
{
    CK_RV rv = kt_hmap_put(&sh->objects, o->handle, o);
    if (rv == CKR_OK)
        rv = labels_add(&sh->labels, o);
    if (rv != CKR_OK)
        kt_hmap_del(&sh->objects, o->handle);
    return rv;
}

static void shard_del(struct kt_obj_shard *sh, struct kt_object *o)
{
    labels_del(&sh->labels, o);
    kt_hmap_del(&sh->objects, o->handle);
}

/* Object tables: handle map, id map, label index (token lock held for
 * writing; session objects: their shard). */
static CK_RV table_add(struct kt_token *t, struct kt_object *o)
{
    if (!o->token) {
        struct kt_obj_shard *sh = shard_of(t, o->handle);
        pthread_mutex_lock(&sh->lock);
        CK_RV rv = shard_add(sh, o);
        pthread_mutex_unlock(&sh->lock);
        return rv;
    }
    CK_RV rv = kt_hmap_put(&t->objects, o->handle, o);
    if (rv == CKR_OK && o->id != 0)
        rv = kt_hmap_put(&t->by_id, (CK_ULONG)o->id, o);
    if (rv == CKR_OK)
        rv = labels_add(&t->labels, o);
    if (rv != CKR_OK) {
        kt_hmap_del(&t->objects, o->handle);
        if (o->id != 0 && kt_hmap_get(&t->by_id, (CK_ULONG)o->id) == o)
            kt_hmap_del(&t->by_id, (CK_ULONG)o->id);
    }
    return rv;
}

static void table_del(struct kt_token *t, struct kt_object *o)
{
    if (!o->token) {
        struct kt_obj_shard *sh = shard_of(t, o->handle);
        pthread_mutex_lock(&sh->lock);
        shard_del(sh, o);
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    labels_del(&t->labels, o);
    kt_hmap_del(&t->objects, o->handle);
    if (o->id != 0)
        kt_hmap_del(&t->by_id, (CK_ULONG)o->id);
}

/* ---- loading rows ----------------------------------------------------- */

/* A token object as read from a row: parsed (verified and unsealed later,
 * outside the lock). A damaged row becomes a refused placeholder: hidden,
 * but still accounted for in the manifest. Lock held for writing. */
static CK_RV object_from_row(struct kt_token *t, int64_t id,
                             const unsigned char *blob, size_t len,
                             const unsigned char *mac, size_t mac_len,
                             struct kt_object **out)
{
    struct kt_object *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return CKR_HOST_MEMORY;
    kt_attrs_init(&o->attrs);
    o->id = id;
    o->token = true;
    CK_RV rv = mac_len == 32 ? CKR_OK : CKR_DATA_INVALID;
    if (rv == CKR_OK)
        rv = kt_attrs_parse(&o->attrs, blob, len);
    if (rv == CKR_OK)
        rv = kt_attrs_get_ulong(&o->attrs, CKA_CLASS, &o->cls);
    if (rv == CKR_HOST_MEMORY) {
        kt_object_free(o);
        return rv;
    }
    if (rv != CKR_OK) {
        kt_attrs_clear(&o->attrs);
        o->refused = true;
    }
    memcpy(o->mac, mac, mac_len < 32 ? mac_len : 32);
    o->blob = malloc(len);
    if (o->blob == NULL) {
        kt_object_free(o);
        return CKR_HOST_MEMORY;
    }
    memcpy(o->blob, blob, len);
    o->blob_len = len;
    kt_object_refresh(o);
    o->token = true;
    if (o->refused)
        kt_log(KT_LOG_ERROR, "token %s: object %lld refused: damaged record",
               t->path, (long long)id);
    *out = o;
    return CKR_OK;
}

CK_RV kt_object_unseal(struct kt_token *t, struct kt_object *o)
{
    if (!o->token || o->unsealed)
        return CKR_OK;
    if (!o->has_term && t->mk_loaded &&
        kt_seal_manifest_term(t->man_key, o->id, (int64_t)o->gen, o->mac, 32,
                              o->term) == CKR_OK)
        o->has_term = true;
    if (o->refused)
        return CKR_DATA_INVALID;
    CK_RV rv = kt_seal_verify(t->mac_key, o->id, (int64_t)o->gen, o->blob,
                              o->blob_len, o->mac);
    if (rv == CKR_OK)
        rv = kt_seal_open_attrs(t->mk, o->id, o->cls, &o->attrs);
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR,
               "token %s: object %lld refused: integrity check failed (the "
               "stored attributes were changed outside the token)",
               t->path, (long long)o->id);
        /* Kept (hidden) so the manifest still accounts for its row; its
         * attributes stay as stored (sealed). */
        o->refused = true;
        return CKR_DATA_INVALID;
    }
    o->verified = true;
    o->unsealed = true;
    kt_object_attrs_changed(o);
    return CKR_OK;
}

static void drop_object(struct kt_token *t, struct kt_object *o)
{
    table_del(t, o);
    kt_object_free(o);
}

static CK_RV sync_row(void *ctx, int64_t id, int64_t gen,
                      const unsigned char *blob, size_t len,
                      const unsigned char *mac, size_t mac_len)
{
    struct kt_token *t = ctx;
    struct kt_object *old = kt_hmap_get(&t->by_id, (CK_ULONG)id);
    /* The generation is part of the record MAC and of the manifest term:
     * a row is unchanged only if it matches too. */
    if (old != NULL && old->gen == (uint64_t)gen && old->blob_len == len &&
        mac_len == 32 && memcmp(old->mac, mac, 32) == 0 &&
        memcmp(old->blob, blob, len) == 0)
        return CKR_OK;
    struct kt_object *o = NULL;
    CK_RV rv = object_from_row(t, id, blob, len, mac, mac_len, &o);
    if (rv != CKR_OK)
        return rv;
    o->gen = (uint64_t)gen;
    if (old != NULL) {
        /* Same handle, new attributes. */
        o->handle = old->handle;
        drop_object(t, old);
    } else {
        o->handle = kt_handle_next();
    }
    CK_RV rv2 = table_add(t, o);
    if (rv2 != CKR_OK)
        kt_object_free(o);
    return rv2;
}

static void sync_del(void *ctx, int64_t id)
{
    struct kt_token *t = ctx;
    struct kt_object *o = kt_hmap_get(&t->by_id, (CK_ULONG)id);
    if (o != NULL)
        drop_object(t, o);
}

struct sync_rows {
    struct sync_row {
        int64_t id;
        int64_t gen;
        unsigned char *blob;
        size_t len;
        unsigned char *mac;
        size_t mac_len;
    } * v;
    size_t n, cap;
    int64_t *dels;
    size_t nd, capd;
};

static CK_RV collect_row(void *ctx, int64_t id, int64_t gen,
                         const unsigned char *blob, size_t len,
                         const unsigned char *mac, size_t mac_len)
{
    struct sync_rows *r = ctx;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct sync_row *nv = realloc(r->v, cap * sizeof(*nv));
        if (nv == NULL)
            return CKR_HOST_MEMORY;
        r->v = nv;
        r->cap = cap;
    }
    struct sync_row *row = &r->v[r->n];
    row->id = id;
    row->gen = gen;
    row->len = len;
    row->mac_len = mac_len;
    row->blob = malloc(len ? len : 1);
    row->mac = malloc(mac_len ? mac_len : 1);
    if (row->blob == NULL || row->mac == NULL) {
        free(row->blob);
        free(row->mac);
        return CKR_HOST_MEMORY;
    }
    if (len > 0)
        memcpy(row->blob, blob, len);
    if (mac_len > 0)
        memcpy(row->mac, mac, mac_len);
    r->n++;
    return CKR_OK;
}

static void collect_del(void *ctx, int64_t id)
{
    struct sync_rows *r = ctx;
    if (r->nd == r->capd) {
        size_t cap = r->capd ? r->capd * 2 : 64;
        int64_t *nd = realloc(r->dels, cap * sizeof(*nd));
        if (nd == NULL)
            return; /* reloaded at the next full sync */
        r->dels = nd;
        r->capd = cap;
    }
    r->dels[r->nd++] = id;
}

static void sync_rows_free(struct sync_rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].blob);
        free(r->v[i].mac);
    }
    free(r->v);
    free(r->dels);
}

static void drop_session_objects(struct kt_token *t, CK_SESSION_HANDLE s,
                                 bool private_only);

/* dblock held, the store's epoch differs from ours: another process
 * re-initialised the token (its lock bypassed). Everything of the old token
 * goes: login, master key, objects; the label is read again and every row
 * reloaded. The sessions are closed by kt_token_sync once dblock is free. */
static void reinit_seen(struct kt_token *t, const char epoch[KT_EPOCH_LEN])
{
    char label[KT_LABEL_LEN], serial[KT_SERIAL_LEN];
    bool meta = kt_store_read_meta(t->db, t->path, label, serial) == CKR_OK;
    kt_token_wrlock(t);
    memcpy(t->epoch, epoch, KT_EPOCH_LEN);
    if (meta)
        memcpy(t->label, label, KT_LABEL_LEN);
    t->login = KT_NO_LOGIN;
    kt_nodump_token(t, false);
    t->mk_loaded = false;
    kt_wipe(t->mk, sizeof(t->mk));
    kt_wipe(t->mac_key, sizeof(t->mac_key));
    kt_wipe(t->man_key, sizeof(t->man_key));
    drop_session_objects(t, 0, false);
    void *v;
    while (t->objects.n > 0) {
        size_t i = 0;
        if (!kt_hmap_iter(&t->objects, &i, NULL, &v))
            break;
        drop_object(t, v);
    }
    memset(&t->man, 0, sizeof(t->man));
    t->man_refused = false;
    t->man_ctr_seen = 0;
    t->loaded = false;
    t->seen_gen = -1;
    t->reinit_seen = true;
    pthread_rwlock_unlock(&t->lock);
}

/* dblock held. The store is read and the rows copied with no token lock;
 * the table is changed under the write lock (no I/O, no cryptography);
 * changed objects are verified and unsealed afterwards, outside it. */
static CK_RV sync_locked(struct kt_token *t)
{
    int64_t dv = 0;
    CK_RV rv;
    struct sync_rows rows;
    memset(&rows, 0, sizeof(rows));
    if (t->loaded) {
        rv = kt_store_data_version(t->db, &t->dv_stmt, &dv);
        if (rv != CKR_OK)
            return rv;
        if (dv == t->data_version)
            return CKR_OK;
    }
    char epoch[KT_EPOCH_LEN];
    rv = kt_store_read_epoch(t->db, epoch);
    if (rv != CKR_OK)
        return rv;
    if (memcmp(epoch, t->epoch, KT_EPOCH_LEN) != 0)
        reinit_seen(t, epoch);
    struct kt_pin pins[2];
    rv = kt_store_read_pins(t->db, t->path, pins);
    if (rv != CKR_OK)
        return rv;
    int64_t max_gen = t->seen_gen;
    struct kt_manifest man;
    rv = kt_store_changes(t->db, t->seen_gen, collect_row, collect_del, &rows,
                          &max_gen, &man);
    if (rv == CKR_OK && dv == 0)
        rv = kt_store_data_version(t->db, &t->dv_stmt, &dv);
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        memcpy(t->pins, pins, sizeof(pins));
        for (size_t i = 0; i < rows.n && rv == CKR_OK; i++)
            rv = sync_row(t, rows.v[i].id, rows.v[i].gen, rows.v[i].blob,
                          rows.v[i].len, rows.v[i].mac, rows.v[i].mac_len);
        for (size_t i = 0; i < rows.nd; i++)
            sync_del(t, rows.dels[i]);
        if (rv == CKR_OK) {
            t->seen_gen = max_gen;
            t->loaded = true;
            t->data_version = dv;
            /* The rows and this manifest are one snapshot: checked against
             * each other once the changed rows are verified (below). */
            t->man = man;
            t->man_stale = false;
            t->man_dirty = true;
        }
        pthread_rwlock_unlock(&t->lock);
    }
    sync_rows_free(&rows);
    kt_wipe(pins, sizeof(pins));
    if (rv == CKR_OK)
        kt_token_unseal_pending(t);
    return rv;
}

CK_RV kt_token_sync(struct kt_token *t)
{
    if (!t->initialized)
        return CKR_OK;
    pthread_mutex_lock(&t->dblock);
    CK_RV rv = sync_locked(t);
    bool reinit = t->reinit_seen;
    t->reinit_seen = false;
    pthread_mutex_unlock(&t->dblock);
    if (reinit) {
        CK_RV r2 = kt_token_reinit_seen(t);
        if (rv == CKR_OK)
            rv = r2;
    }
    return rv;
}

struct pending {
    CK_OBJECT_HANDLE h;
    int64_t id;
    int64_t gen;
    CK_OBJECT_CLASS cls;
    bool refused;
    unsigned char *blob;
    size_t len;
    unsigned char mac[32];
    unsigned char term[32];
    kt_attrs plain;
    CK_RV rv;
    CK_RV term_rv;
};

static bool manifest_equal(const struct kt_manifest *a,
                           const struct kt_manifest *b)
{
    return a->present == b->present && a->count == b->count &&
           a->ctr == b->ctr && memcmp(a->acc, b->acc, 32) == 0 &&
           memcmp(a->mac, b->mac, 32) == 0;
}

/* Lock held for writing, every token object verified: the in-memory object
 * set against the manifest read with it (man_ok: its MAC verified). O(n)
 * XORs, no cryptography; only after a reload or a login, never on the
 * operation paths. A mismatch hides every token object (never repaired:
 * the file is left as it is). */
static void manifest_verdict(struct kt_token *t, bool man_ok)
{
    unsigned char acc[32];
    int64_t count = 0;
    void *v;
    if (!t->man_dirty || t->man_stale)
        return;
    memset(acc, 0, sizeof(acc));
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);) {
        struct kt_object *o = v;
        if (!o->token)
            continue;
        if (!o->has_term)
            return; /* not all verified yet (out of memory): next time */
        for (int k = 0; k < 32; k++)
            acc[k] ^= o->term[k];
        count++;
    }
    const char *why = NULL;
    if (!t->man.present)
        why = "has no object manifest";
    else if (!man_ok)
        why = "object manifest is not authentic";
    else if (t->man.ctr < t->man_ctr_seen)
        why = "object manifest went back to an older write";
    else if ((kt_ossl_memcmp(acc, t->man.acc, 32) != 0) |
             (count != t->man.count))
        why = "object set does not match its manifest: a record was rolled "
              "back, removed or re-inserted";
    t->man_dirty = false;
    if (why == NULL) {
        t->man_ctr_seen = t->man.ctr;
        if (t->man_refused)
            kt_log(KT_LOG_WARNING,
                   "token %s: object set matches its manifest again", t->path);
        t->man_refused = false;
        return;
    }
    if (!t->man_refused)
        kt_log(KT_LOG_ERROR, "token %s refused: %s; its objects are refused",
               t->path, why);
    t->man_refused = true;
}

void kt_token_unseal_pending(struct kt_token *t)
{
    unsigned char mk[32], mac_key[32], man_key[32];
    struct kt_manifest man;
    bool man_ok = false;
    struct pending *p = NULL;
    size_t n = 0;
    pthread_rwlock_rdlock(&t->lock);
    if (t->mk_loaded) {
        memcpy(mk, t->mk, 32);
        memcpy(mac_key, t->mac_key, 32);
        memcpy(man_key, t->man_key, 32);
        man = t->man;
        p = calloc(t->objects.n + 1, sizeof(*p));
        void *v;
        for (size_t i = 0;
             p != NULL && kt_hmap_iter(&t->objects, &i, NULL, &v);) {
            struct kt_object *o = v;
            if (!o->token || o->unsealed || (o->refused && o->has_term))
                continue;
            struct pending *q = &p[n];
            q->blob = malloc(o->blob_len ? o->blob_len : 1);
            if (q->blob == NULL)
                break;
            memcpy(q->blob, o->blob, o->blob_len);
            q->len = o->blob_len;
            q->h = o->handle;
            q->id = o->id;
            q->gen = (int64_t)o->gen;
            q->cls = o->cls;
            q->refused = o->refused;
            memcpy(q->mac, o->mac, 32);
            kt_attrs_init(&q->plain);
            n++;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (p == NULL)
        return;
    /* The cryptography: no lock held. */
    man_ok = kt_seal_manifest_check(man_key, &man) == CKR_OK;
    for (size_t i = 0; i < n; i++) {
        struct pending *q = &p[i];
        q->term_rv =
            kt_seal_manifest_term(man_key, q->id, q->gen, q->mac, 32, q->term);
        q->rv = q->refused ? CKR_DATA_INVALID
                           : kt_seal_verify(mac_key, q->id, q->gen, q->blob,
                                            q->len, q->mac);
        if (q->rv == CKR_OK)
            q->rv = kt_attrs_parse(&q->plain, q->blob, q->len);
        if (q->rv == CKR_OK)
            q->rv = kt_seal_open_attrs(mk, q->id, q->cls, &q->plain);
    }
    kt_token_wrlock(t);
    for (size_t i = 0; t->mk_loaded && i < n; i++) {
        struct pending *q = &p[i];
        struct kt_object *o = kt_hmap_get(&t->objects, q->h);
        /* Changed or gone meanwhile: left to the pass below. */
        if (o == NULL || o->unsealed || o->gen != (uint64_t)q->gen ||
            o->blob_len != q->len || memcmp(o->blob, q->blob, q->len) != 0 ||
            memcmp(o->mac, q->mac, 32) != 0)
            continue;
        if (q->term_rv == CKR_OK) {
            memcpy(o->term, q->term, 32);
            o->has_term = true;
        }
        if (q->rv != CKR_OK) {
            if (!o->refused)
                kt_log(KT_LOG_ERROR,
                       "token %s: object %lld refused: integrity check "
                       "failed (the stored attributes were changed outside "
                       "the token)",
                       t->path, (long long)o->id);
            /* Kept, hidden: its row still counts in the manifest. */
            o->refused = true;
            continue;
        }
        kt_object_attrs_changed(o);
        kt_attrs tmp = o->attrs;
        o->attrs = q->plain;
        q->plain = tmp;
        o->verified = o->unsealed = true;
    }
    if (t->mk_loaded) {
        kt_token_unseal_all(t); /* the few that changed meanwhile */
        if (!manifest_equal(&man, &t->man))
            man_ok = kt_seal_manifest_check(t->man_key, &t->man) == CKR_OK;
        manifest_verdict(t, man_ok);
    }
    pthread_rwlock_unlock(&t->lock);
    for (size_t i = 0; i < n; i++) {
        kt_attrs_clear(&p[i].plain);
        free(p[i].blob);
    }
    free(p);
    kt_wipe(mk, sizeof(mk));
    kt_wipe(mac_key, sizeof(mac_key));
    kt_wipe(man_key, sizeof(man_key));
}

void kt_token_unseal_all(struct kt_token *t)
{
    void *v;
    /* A record that fails is marked refused by kt_object_unseal. */
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);) {
        CK_RV rv = kt_object_unseal(t, v);
        (void)rv;
    }
}

/* Removes the session objects that match (token lock held for writing):
 * every one of session s (0: of any session), or only private ones. */
static void drop_session_objects(struct kt_token *t, CK_SESSION_HANDLE s,
                                 bool private_only)
{
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        /* A session's objects are all in the session's shard. */
        if (s != 0 && i != kt_handle_shard(s))
            continue;
        struct kt_obj_shard *sh = &t->shards[i];
        struct kt_object *gone = NULL;
        void *v;
        pthread_mutex_lock(&sh->lock);
        for (size_t j = 0; kt_hmap_iter(&sh->objects, &j, NULL, &v);) {
            struct kt_object *o = v;
            if ((s == 0 || o->session == s) && (!private_only || o->private_)) {
                /* Chained through label_next once out of the index. */
                labels_del(&sh->labels, o);
                o->label_next = gone;
                gone = o;
            }
        }
        for (struct kt_object *o = gone; o != NULL; o = o->label_next)
            kt_hmap_del(&sh->objects, o->handle);
        pthread_mutex_unlock(&sh->lock);
        while (gone != NULL) {
            struct kt_object *next = gone->label_next;
            kt_object_free(gone);
            gone = next;
        }
    }
}

void kt_token_forget_private(struct kt_token *t)
{
    drop_session_objects(t, 0, true);
    size_t n = 0, cap = t->objects.n;
    struct kt_object **priv = malloc((cap ? cap : 1) * sizeof(*priv));
    void *v;
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);) {
        struct kt_object *o = v;
        if (o->private_ && priv != NULL && n < cap)
            priv[n++] = o;
    }
    for (size_t i = 0; i < n; i++) {
        struct kt_object *o = priv[i];
        if (!o->token) {
            drop_object(t, o);
            continue;
        }
        kt_hmap_del(&t->objects, o->handle);
        o->handle = kt_handle_next();
        if (kt_hmap_put(&t->objects, o->handle, o) != CKR_OK) {
            /* Out of memory: the object leaves the table until reloaded. */
            index_del(t, o);
            if (o->id != 0)
                kt_hmap_del(&t->by_id, (CK_ULONG)o->id);
            kt_object_free(o);
            t->loaded = false;
            t->seen_gen = -1;
        }
    }
    free(priv);
}

void kt_token_reseal_all(struct kt_token *t)
{
    struct kt_object *bad[64];
    size_t n_bad = 0;
    void *v;
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);) {
        struct kt_object *o = v;
        if (!o->token || !o->unsealed)
            continue;
        kt_attrs sealed;
        kt_attrs_init(&sealed);
        if (kt_attrs_parse(&sealed, o->blob, o->blob_len) != CKR_OK) {
            /* Out of memory: never leave plaintext behind; the object is
             * reloaded from the store at the next sync. */
            bad[n_bad++] = o;
            if (n_bad == sizeof(bad) / sizeof(bad[0]))
                break;
            continue;
        }
        kt_object_attrs_changed(o);
        kt_attrs_clear(&o->attrs);
        o->attrs = sealed;
        o->unsealed = false;
        kt_ossl_pkey_free(o->pkey);
        o->pkey = NULL;
        kt_cache_unref(o->cache);
        o->cache = NULL;
    }
    for (size_t k = 0; k < n_bad; k++)
        drop_object(t, bad[k]);
    if (n_bad > 0) {
        t->loaded = false;
        t->seen_gen = -1;
    }
}

/* ---- changes ------------------------------------------------------------ */

/* Copies of the keys a store write needs (CKR_USER_NOT_LOGGED_IN without
 * the master key). */
static CK_RV write_keys(struct kt_token *t, struct kt_store_keys *k,
                        unsigned char *mk)
{
    pthread_rwlock_rdlock(&t->lock);
    bool loaded = t->mk_loaded;
    if (mk != NULL)
        memcpy(mk, t->mk, 32);
    memcpy(k->mac, t->mac_key, 32);
    memcpy(k->manifest, t->man_key, 32);
    pthread_rwlock_unlock(&t->lock);
    return loaded ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
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

static CK_RV seal_into(struct kt_token *t, struct kt_object *o,
                       struct kt_store_keys *k)
{
    unsigned char mk[32];
    unsigned char *blob = NULL;
    size_t len = 0;
    CK_RV rv = write_keys(t, k, mk);
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
        struct kt_obj_shard *sh = shard_of(t, h);
        pthread_mutex_lock(&sh->lock);
        if (owner == NULL || owner->closed)
            rv = CKR_SESSION_CLOSED;
        else if (o->private_ && t->login != CKU_USER)
            rv = CKR_USER_NOT_LOGGED_IN;
        else
            rv = shard_add(sh, o);
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
            rv = table_add(t, o);
            if (rv != CKR_OK)
                t->man_stale = true; /* in the store, not in memory */
            pthread_rwlock_unlock(&t->lock);
        }
        pthread_mutex_unlock(&t->dblock);
        if (rv != CKR_FUNCTION_FAILED)
            break;
    }
    kt_wipe(&k, sizeof(k));
    if (rv != CKR_OK) {
        kt_object_free(o);
        return rv;
    }
    *handle = o->handle;
    return CKR_OK;
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
    if (fresh->token) {
        rv = seal_into(t, fresh, &k);
        if (rv != CKR_OK) {
            kt_object_free(fresh);
            return rv;
        }
        pthread_mutex_lock(&t->dblock);
        /* Compare-and-swap: the copy the change was made on must still be
         * the current version, here and in the store (another process). */
        pthread_rwlock_rdlock(&t->lock);
        o = kt_token_get(t, h);
        if (o == NULL)
            rv = CKR_OBJECT_HANDLE_INVALID;
        else if (o->gen != expect_gen)
            rv = KT_CKR_RETRY;
        pthread_rwlock_unlock(&t->lock);
        if (rv == CKR_OK)
            rv = kt_store_put_object(t->db, &k, fresh->id, fresh->blob,
                                     fresh->blob_len, false,
                                     (int64_t)expect_gen, &w);
        kt_wipe(&k, sizeof(k));
    }
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        o = kt_token_get(t, h);
        if (o == NULL || o->gen != expect_gen) {
            rv = o == NULL ? CKR_OBJECT_HANDLE_INVALID : KT_CKR_RETRY;
            if (fresh->token)
                t->man_stale = true; /* in the store, not in memory */
        } else {
            if (fresh->token)
                adopt_written(t, o, &w);
            else
                o->gen = (uint64_t)w.gen;
            /* Swap contents so the handle and id entries stay; the label
             * may change. */
            index_del(t, o);
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
            rv = index_add(t, o);
            /* The parsed key belonged to the old attributes. */
            void *pk = o->pkey;
            o->pkey = fresh->pkey;
            fresh->pkey = pk;
            struct kt_cache *kc = o->cache;
            o->cache = fresh->cache;
            fresh->cache = kc;
            o->verified = o->unsealed = true;
        }
        pthread_rwlock_unlock(&t->lock);
    }
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

static CK_RV modify_cb(void *vctx, int64_t gen, const unsigned char *blob,
                       size_t len, const unsigned char *mac, size_t mac_len,
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

CK_RV kt_token_modify_object(struct kt_token *t, CK_OBJECT_HANDLE h,
                             kt_change_fn change, void *ctx)
{
    struct modify_ctx c;
    struct kt_store_written w;
    CK_RV rv = CKR_OK;
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
    if (rv == CKR_OK) {
        c.id = o->id;
        c.known_gen = (int64_t)o->gen;
        c.cls = o->cls;
        memcpy(c.mk, t->mk, 32);
        memcpy(c.keys.mac, t->mac_key, 32);
        memcpy(c.keys.manifest, t->man_key, 32);
    }
    pthread_rwlock_unlock(&t->lock);
    if (rv == CKR_OK)
        rv = kt_store_update_object(t->db, &c.keys, c.id, modify_cb, &c, &w);
    if (rv == CKR_OK) {
        struct kt_object *fresh = NULL;
        rv = kt_object_new_take(&c.plain, &fresh);
        kt_token_wrlock(t);
        o = kt_hmap_get(&t->objects, h);
        if (rv != CKR_OK || o == NULL)
            t->man_stale = true; /* in the store, not in memory */
        if (rv == CKR_OK && o != NULL) {
            adopt_written(t, o, &w);
            index_del(t, o);
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
            rv = index_add(t, o);
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

CK_RV kt_token_destroy_object(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    CK_RV rv = CKR_OK;
    struct kt_store_keys k;
    struct kt_store_written w;
    pthread_mutex_lock(&t->dblock);
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_object(t, h);
    int64_t id = o != NULL ? o->id : 0;
    bool is_token = o != NULL && o->token;
    pthread_rwlock_unlock(&t->lock);
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    /* The manifest is updated with the deletion: like creation, that
     * needs the master key. */
    if (rv == CKR_OK && is_token)
        rv = write_keys(t, &k, NULL);
    if (rv == CKR_OK && is_token)
        rv = kt_store_delete_object(t->db, &k, id, &w);
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        o = kt_token_get(t, h);
        if (o != NULL)
            drop_object(t, o);
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

void kt_token_destroy_session_objects(struct kt_token *t, CK_SESSION_HANDLE s)
{
    kt_token_wrlock(t);
    drop_session_objects(t, s, false);
    pthread_rwlock_unlock(&t->lock);
}

/* ---- C_InitToken ----------------------------------------------------------
 */

static CK_RV mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return CKR_DEVICE_ERROR;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return CKR_DEVICE_ERROR;
    return CKR_OK;
}

CK_RV kt_token_init(struct kt_token *t, const char *dir,
                    const unsigned char *so_pin, CK_ULONG len,
                    const unsigned char *label)
{
    unsigned char mk[32], man_key[32];
    struct kt_pin so;
    CK_RV rv;
    memset(&so, 0, sizeof(so));
    char serial[KT_SERIAL_LEN + 1];
    if (t->initialized) {
        /* Re-initialisation: the SO proves the PIN (a try is charged first,
         * as at login), then every object goes. */
        rv = kt_login_verify_pin(t, KT_PIN_SO, so_pin, len, mk);
        if (rv != CKR_OK)
            goto out;
        memcpy(serial, t->serial, KT_SERIAL_LEN);
    } else {
        unsigned char sr[8];
        rv = kt_ossl_random(sr, sizeof(sr));
        if (rv != CKR_OK)
            goto out;
        for (int i = 0; i < 8; i++)
            snprintf(serial + 2 * i, 3, "%02x", sr[i]);
    }
    rv = kt_ossl_random(mk, sizeof(mk));
    if (rv == CKR_OK)
        rv = kt_pin_make(&so, so_pin, len, kt_g.cfg.pin_kdf_cost, mk, KT_PIN_SO,
                         serial);
    if (rv != CKR_OK)
        goto out;
    kt_seal_manifest_key(mk, man_key);
    if (t->initialized) {
        pthread_mutex_lock(&t->dblock);
        rv = kt_store_reinit(t->db, (const char *)label, &so, man_key);
        /* Our own new epoch: not another process's re-initialisation. */
        if (rv == CKR_OK)
            rv = kt_store_read_epoch(t->db, t->epoch);
        if (rv == CKR_OK) {
            kt_token_wrlock(t);
            memcpy(t->label, label, KT_LABEL_LEN);
            drop_session_objects(t, 0, false);
            void *v;
            while (t->objects.n > 0) {
                size_t i = 0;
                if (!kt_hmap_iter(&t->objects, &i, NULL, &v))
                    break;
                drop_object(t, v);
            }
            t->man_refused = false;
            t->man_ctr_seen = 0;
            pthread_rwlock_unlock(&t->lock);
            t->loaded = false;
            t->seen_gen = -1;
            rv = sync_locked(t);
            kt_log(KT_LOG_INFO,
                   "token %s re-initialised: objects and user "
                   "PIN removed",
                   t->path);
        }
        pthread_mutex_unlock(&t->dblock);
        goto out;
    }
    rv = mkdir_p(dir);
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR, "token_dir %s: cannot create: %s", dir,
               strerror(errno));
        goto out;
    }
    snprintf(t->path, sizeof(t->path), "%s/%s.db", dir, serial);
    rv = kt_store_create(t->path, (const char *)label, serial, &so, man_key,
                         &t->db);
    if (rv != CKR_OK)
        goto out;
    rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv != CKR_OK)
        goto out;
    kt_token_wrlock(t);
    memcpy(t->serial, serial, KT_SERIAL_LEN);
    memcpy(t->label, label, KT_LABEL_LEN);
    t->pins[KT_PIN_SO] = so;
    memset(&t->pins[KT_PIN_USER], 0, sizeof(t->pins[KT_PIN_USER]));
    pthread_rwlock_unlock(&t->lock);
    pthread_mutex_lock(&t->dblock);
    rv = sync_locked(t);
    pthread_mutex_unlock(&t->dblock);
    kt_token_wrlock(t);
    t->initialized = true;
    pthread_rwlock_unlock(&t->lock);
    kt_log(KT_LOG_INFO, "token %s created", t->path);
out:
    kt_wipe(mk, sizeof(mk));
    kt_wipe(man_key, sizeof(man_key));
    kt_wipe(&so, sizeof(so));
    return rv;
}

/* ---- slots ------------------------------------------------------------------
 */

static CK_SLOT_ID slot_id_for(const char *serial)
{
    char hex[9];
    memcpy(hex, serial, 8);
    hex[8] = '\0';
    /* Serial-derived IDs are stable across processes; free slots count from
     * 0, below this range. */
    return (CK_SLOT_ID)((strtoul(hex, NULL, 16) & 0x0fffffffUL) | 0x10000000UL);
}

static bool slot_known(const char *path)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].token->initialized &&
            strcmp(kt_g.slots[i].token->path, path) == 0)
            return true;
    return false;
}

static bool slot_id_used(CK_SLOT_ID id)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].id == id)
            return true;
    return false;
}

static CK_RV slot_append(struct kt_token *t)
{
    struct kt_slot *ns = realloc(kt_g.slots, (kt_g.n_slots + 1) * sizeof(*ns));
    if (ns == NULL)
        return CKR_HOST_MEMORY;
    kt_g.slots = ns;
    kt_g.slots[kt_g.n_slots].id = t->slot_id;
    kt_g.slots[kt_g.n_slots].token = t;
    kt_g.n_slots++;
    return CKR_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

CK_RV kt_slots_add_free(void)
{
    size_t free_slots = 0;
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (!kt_g.slots[i].token->initialized)
            free_slots++;
    if (free_slots > 0 || kt_g.n_slots >= kt_g.cfg.slots)
        return CKR_OK;
    while (slot_id_used(kt_g.next_free_id))
        kt_g.next_free_id++;
    struct kt_token *t = kt_token_new_free(kt_g.next_free_id++);
    if (t == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = slot_append(t);
    if (rv != CKR_OK)
        kt_token_free(t);
    return rv;
}

CK_RV kt_slots_scan(void)
{
    const char *dir = kt_g.cfg.token_dir;
    /* A token being created has a file but no slot yet: scan later. */
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].token->busy)
            return CKR_OK;
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    CK_RV rv = CKR_OK;
    if (d == NULL) {
        if (errno != ENOENT)
            kt_log(KT_LOG_ERROR, "token_dir %s: %s", dir, strerror(errno));
        return kt_slots_add_free();
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != KT_SERIAL_LEN + 3 || strcmp(e->d_name + l - 3, ".db") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (nn == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), name_cmp);
    /* Slots beyond the configured maximum keep one place for the free
     * slot. */
    for (size_t i = 0; i < n && rv == CKR_OK; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (slot_known(path))
            continue;
        size_t inited = 0;
        for (size_t j = 0; j < kt_g.n_slots; j++)
            if (kt_g.slots[j].token->initialized)
                inited++;
        if (inited + 1 >= kt_g.cfg.slots) {
            kt_log(KT_LOG_WARNING, "token %s not loaded: slots = %lu reached",
                   path, (unsigned long)kt_g.cfg.slots);
            continue;
        }
        struct kt_token *t = NULL;
        if (kt_token_open(path, 0, &t) != CKR_OK)
            continue; /* logged; the file is left untouched */
        CK_SLOT_ID id = slot_id_for(t->serial);
        while (slot_id_used(id))
            id++;
        t->slot_id = id;
        rv = slot_append(t);
        if (rv != CKR_OK)
            kt_token_free(t);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rv == CKR_OK)
        rv = kt_slots_add_free();
    return rv;
}

void kt_slots_free(void)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        kt_token_free(kt_g.slots[i].token);
    free(kt_g.slots);
    kt_g.slots = NULL;
    kt_g.n_slots = 0;
}

struct kt_token *kt_slot_token(CK_SLOT_ID id)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].id == id)
            return kt_g.slots[i].token;
    return NULL;
}

static void pad_copy(unsigned char *dst, const char *src, size_t len)
{
    size_t l = strlen(src);
    memset(dst, ' ', len);
    memcpy(dst, src, l < len ? l : len);
}

void kt_token_token_info(struct kt_token *t, CK_TOKEN_INFO *info)
{
    memset(info, 0, sizeof(*info));
    pad_copy(info->manufacturerID, "keytier", sizeof(info->manufacturerID));
    pad_copy(info->model, "keytier soft", sizeof(info->model));
    info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_RESTORE_KEY_NOT_NEEDED;
    pthread_rwlock_rdlock(&t->lock);
    if (t->initialized) {
        memcpy(info->label, t->label, sizeof(info->label));
        memcpy(info->serialNumber, t->serial, sizeof(info->serialNumber));
        info->flags |= CKF_TOKEN_INITIALIZED;
        const CK_ULONG max = kt_g.cfg.pin_max_retries;
        const struct kt_pin *u = &t->pins[KT_PIN_USER];
        const struct kt_pin *so = &t->pins[KT_PIN_SO];
        if (u->present) {
            info->flags |= CKF_USER_PIN_INITIALIZED;
            if (u->failures >= max)
                info->flags |= CKF_USER_PIN_LOCKED;
            else if (u->failures + 1 == max)
                info->flags |= CKF_USER_PIN_FINAL_TRY;
            if (u->failures > 0 && u->failures < max)
                info->flags |= CKF_USER_PIN_COUNT_LOW;
        }
        if (so->failures >= max)
            info->flags |= CKF_SO_PIN_LOCKED;
        else if (so->failures + 1 == max)
            info->flags |= CKF_SO_PIN_FINAL_TRY;
        if (so->failures > 0 && so->failures < max)
            info->flags |= CKF_SO_PIN_COUNT_LOW;
    } else {
        memset(info->label, ' ', sizeof(info->label));
        memset(info->serialNumber, ' ', sizeof(info->serialNumber));
    }
    pthread_rwlock_unlock(&t->lock);
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulSessionCount = t->session_count;
    info->ulRwSessionCount = t->rw_session_count;
    info->ulMaxPinLen = kt_g.cfg.pin_max_length;
    info->ulMinPinLen = kt_g.cfg.pin_min_length;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = 0;
    info->hardwareVersion.minor = 1;
    info->firmwareVersion.major = 0;
    info->firmwareVersion.minor = 1;
    memset(info->utcTime, ' ', sizeof(info->utcTime));
}
