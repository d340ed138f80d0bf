/* Tokens: slots, the in-memory object index and its synchronisation with
 * the token database. */
#include "kt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ossl/ossl.h"
#include "p11str.h"
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
    t->key_fd = -1;
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
    kt_store_data_version_free(t->dv_stmt);
    if (t->db != NULL)
        kt_store_close(t->db);
    kt_wipe(t->mk, sizeof(t->mk));
    kt_wipe(t->ik, sizeof(t->ik));
    kt_wipe(t->mac_key, sizeof(t->mac_key));
    kt_wipe(t->man_key, sizeof(t->man_key));
    kt_wipe(t->seq_key, sizeof(t->seq_key));
    if (t->key_fd >= 0)
        close(t->key_fd);
    pthread_mutex_destroy(&t->dblock);
    pthread_rwlock_destroy(&t->lock);
    kt_free_secret(t, sizeof(*t));
}

/* The token's files without ".db": <base>.key, <base>.seq. */
static void token_base(const struct kt_token *t, char out[PATH_MAX])
{
    size_t l = strlen(t->path);
    snprintf(out, PATH_MAX, "%.*s", (int)(l > 3 ? l - 3 : l), t->path);
}

/* The integrity key and the keys derived from it (token lock held for
 * writing, or the token not yet shared). */
static void keys_from_ik(struct kt_token *t, const unsigned char ik[32])
{
    memcpy(t->ik, ik, 32);
    kt_seal_mac_key(ik, t->mac_key);
    kt_seal_manifest_key(ik, t->man_key);
    kt_seal_seq_key(ik, t->seq_key);
}

static KT_NODISCARD CK_RV open_key(struct kt_token *t)
{
    char base[PATH_MAX];
    unsigned char ik[32];
    int fd = -1;
    uint64_t ino = 0;
    token_base(t, base);
    CK_RV rv = kt_keyfile_read(base, ik, &fd, &ino);
    if (rv == CKR_OK) {
        if (t->key_fd >= 0)
            close(t->key_fd);
        t->key_fd = fd;
        t->key_ino = ino;
        keys_from_ik(t, ik);
    }
    kt_wipe(ik, sizeof(ik));
    return rv;
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
        rv = open_key(t);
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
    if (o->token && !o->verified)
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
static KT_NODISCARD CK_RV labels_add(kt_hmap *labels, struct kt_object *o)
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
static KT_NODISCARD CK_RV index_add(struct kt_token *t, struct kt_object *o)
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
static KT_NODISCARD CK_RV shard_add(struct kt_obj_shard *sh,
                                    struct kt_object *o)
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
static KT_NODISCARD CK_RV table_add(struct kt_token *t, struct kt_object *o)
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
static KT_NODISCARD CK_RV object_from_row(struct kt_token *t, int64_t id,
                                          const unsigned char *blob, size_t len,
                                          const unsigned char *mac,
                                          size_t mac_len,
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
    /* The record MAC was checked when the row was loaded. */
    if (o->refused || !o->verified || !t->mk_loaded)
        return CKR_DATA_INVALID;
    CK_RV rv = kt_seal_open_attrs(t->mk, o->id, o->cls, &o->attrs);
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
        /* Checked with the integrity key before the row is installed. */
        CK_RV verified;
        unsigned char term[32];
        CK_RV term_rv;
    } * v;
    size_t n, cap;
    int64_t *dels;
    size_t nd, capd;
};

/* Lock held for writing: a row read and checked (sync_check) becomes the
 * object of its id; an unchanged row keeps its object. */
static KT_NODISCARD CK_RV sync_row(struct kt_token *t, const struct sync_row *r)
{
    struct kt_object *old = kt_hmap_get(&t->by_id, (CK_ULONG)r->id);
    /* The generation is part of the record MAC and of the manifest term:
     * a row is unchanged only if it matches too. */
    if (old != NULL && old->gen == (uint64_t)r->gen &&
        old->blob_len == r->len && r->mac_len == 32 &&
        memcmp(old->mac, r->mac, 32) == 0 &&
        memcmp(old->blob, r->blob, r->len) == 0)
        return CKR_OK;
    struct kt_object *o = NULL;
    CK_RV rv =
        object_from_row(t, r->id, r->blob, r->len, r->mac, r->mac_len, &o);
    if (rv != CKR_OK)
        return rv;
    o->gen = (uint64_t)r->gen;
    if (r->term_rv == CKR_OK) {
        memcpy(o->term, r->term, 32);
        o->has_term = true;
    }
    if (r->verified != CKR_OK && !o->refused) {
        kt_log(KT_LOG_ERROR,
               "token %s: object %lld refused: integrity check failed (the "
               "stored attributes were changed outside the token)",
               t->path, (long long)r->id);
        o->refused = true;
    }
    o->verified = !o->refused;
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

/* No token lock held: every row read is checked against its record MAC
 * and gets its manifest term, with the integrity key's keys. */
static void sync_check(const struct kt_store_keys *k, struct sync_rows *rows)
{
    for (size_t i = 0; i < rows->n; i++) {
        struct sync_row *r = &rows->v[i];
        r->verified = r->mac_len == 32 ? kt_seal_verify(k->mac, r->id, r->gen,
                                                        r->blob, r->len, r->mac)
                                       : CKR_DATA_INVALID;
        r->term_rv = kt_seal_manifest_term(k->manifest, r->id, r->gen, r->mac,
                                           r->mac_len, r->term);
    }
}

static KT_NODISCARD CK_RV collect_row(void *ctx, int64_t id, int64_t gen,
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

/* Lock held for writing: the in-memory object set (every token object
 * carries the term computed with its MAC check at load) against the
 * manifest read with it; the manifest against the PIN records read with it
 * and against <serial>.seq. man_ok / pins_ok: the manifest's MAC and pins
 * field verified (outside the lock). O(n) XORs, no cryptography; only
 * after a reload, never on the operation paths. Any mismatch refuses the
 * token whole: every object hidden, login refused (never repaired: the
 * files are left as they are). */
static void manifest_verdict(struct kt_token *t, bool man_ok, bool pins_ok)
{
    unsigned char acc[32];
    int64_t count = 0;
    char buf[256];
    void *v;
    if (!t->man_dirty || t->man_stale)
        return;
    memset(acc, 0, sizeof(acc));
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);) {
        struct kt_object *o = v;
        if (!o->token)
            continue;
        if (!o->has_term)
            return; /* out of memory at load: next time */
        for (int k = 0; k < 32; k++)
            acc[k] ^= o->term[k];
        count++;
    }
    const char *why = NULL;
    if (!t->man.present)
        why = "has no object manifest";
    else if (!man_ok)
        why = "object manifest is not authentic";
    else if (!pins_ok)
        why = "PIN records do not match the object manifest (a record or a "
              "retry counter was changed outside the token)";
    else if (t->seq_ctr < 0)
        why = t->seq_why;
    else if (t->man.ctr < t->seq_ctr) {
        snprintf(buf, sizeof(buf),
                 "the database was rolled back: its manifest write counter "
                 "%lld is below %lld recorded in its .seq file",
                 (long long)t->man.ctr, (long long)t->seq_ctr);
        why = buf;
    } else if (t->man.ctr < t->man_ctr_seen)
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

static void drop_session_objects(struct kt_token *t, CK_SESSION_HANDLE s,
                                 bool private_only);

/* Every token object of this process's table (lock held for writing): the
 * token was re-initialised or its integrity key replaced, and its rows are
 * read again. */
static void drop_token_objects(struct kt_token *t)
{
    void *v;
    while (t->objects.n > 0) {
        size_t i = 0;
        if (!kt_hmap_iter(&t->objects, &i, NULL, &v))
            break;
        drop_object(t, v);
    }
}

/* dblock held, the store's epoch differs from ours: another process
 * re-initialised the token (its lock bypassed). Everything of the old token
 * goes: login, master key, objects; the label is read again and every row
 * reloaded (under the integrity key reload_key_if_replaced read). The
 * sessions are closed by kt_token_sync once dblock is free. */
static void reinit_seen(struct kt_token *t, const char epoch[KT_EPOCH_LEN])
{
    char label[KT_LABEL_LEN], serial[KT_SERIAL_LEN];
    bool meta = kt_store_read_meta(t->db, t->path, label, serial) == CKR_OK;
    kt_token_wrlock(t);
    memcpy(t->epoch, epoch, KT_EPOCH_LEN);
    if (meta)
        memcpy(t->label, label, KT_LABEL_LEN);
    if (t->login != KT_NO_LOGIN)
        kt_login_drop_locked(t);
    t->mk_loaded = false;
    kt_wipe(t->mk, sizeof(t->mk));
    drop_session_objects(t, 0, false);
    drop_token_objects(t);
    memset(&t->man, 0, sizeof(t->man));
    t->man_refused = false;
    t->man_ctr_seen = 0;
    t->loaded = false;
    t->seen_gen = -1;
    t->reinit_seen = true;
    pthread_rwlock_unlock(&t->lock);
}

/* dblock held: a new <serial>.key (a re-initialisation by another process)
 * means a new token: its objects are all reloaded under the new key. */
static KT_NODISCARD CK_RV reload_key_if_replaced(struct kt_token *t)
{
    char base[PATH_MAX];
    token_base(t, base);
    if (kt_keyfile_ino(base) == t->key_ino)
        return CKR_OK;
    kt_token_wrlock(t);
    CK_RV rv = open_key(t);
    if (rv == CKR_OK) {
        drop_token_objects(t);
        t->loaded = false;
        t->seen_gen = -1;
        kt_log(KT_LOG_INFO, "token %s: new integrity key; reloaded", t->path);
    }
    pthread_rwlock_unlock(&t->lock);
    return rv;
}

/* dblock held. <serial>.seq is read first, then the rows, PIN records and
 * manifest in one snapshot (a counter in .seq was committed before it was
 * written, so the snapshot is never behind it unless rolled back). Rows are
 * checked with the integrity key with no token lock held; the table is
 * changed and the verdict given under the write lock (no I/O, no
 * cryptography); secrets are unsealed afterwards, outside it, when logged
 * in. */
static KT_NODISCARD CK_RV sync_locked(struct kt_token *t)
{
    int64_t dv = 0;
    CK_RV rv;
    struct sync_rows rows;
    struct kt_store_keys k;
    char base[PATH_MAX];
    unsigned char mk[32];
    memset(&rows, 0, sizeof(rows));
    if (t->loaded) {
        rv = kt_store_data_version(t->db, &t->dv_stmt, &dv);
        if (rv != CKR_OK)
            return rv;
        if (dv == t->data_version)
            return CKR_OK;
    }
    rv = reload_key_if_replaced(t);
    if (rv != CKR_OK)
        return rv;
    char epoch[KT_EPOCH_LEN];
    rv = kt_store_read_epoch(t->db, epoch);
    if (rv != CKR_OK)
        return rv;
    if (memcmp(epoch, t->epoch, KT_EPOCH_LEN) != 0)
        reinit_seen(t, epoch);
    token_base(t, base);
    int64_t seq = -1;
    const char *seq_why = NULL;
    if (kt_seq_read(base, t->seq_key, t->serial, &seq, &seq_why) != CKR_OK)
        seq = -1;
    struct kt_pin pins[2];
    int64_t max_gen = t->seen_gen;
    struct kt_manifest man;
    rv = kt_store_changes(t->db, t->path, t->seen_gen, collect_row, collect_del,
                          &rows, &max_gen, pins, &man);
    if (rv == CKR_OK && dv == 0)
        rv = kt_store_data_version(t->db, &t->dv_stmt, &dv);
    /* The keys only change under dblock, which is held. */
    memcpy(k.mac, t->mac_key, 32);
    memcpy(k.manifest, t->man_key, 32);
    bool man_ok = false, pins_ok = false, mk_ok = true;
    if (rv == CKR_OK) {
        unsigned char digest[32];
        sync_check(&k, &rows);
        man_ok = kt_seal_manifest_check(k.manifest, &man) == CKR_OK;
        pins_ok = kt_seal_pins_digest(k.manifest, pins, digest) == CKR_OK &&
                  kt_ossl_memcmp(digest, man.pins, 32) == 0;
        /* A master key this process holds must still be the one the
         * records are bound to: a PIN change in another process made a new
         * one (and resealed every object under it). */
        pthread_rwlock_rdlock(&t->lock);
        CK_USER_TYPE who = t->login;
        bool loaded = t->mk_loaded;
        memcpy(mk, t->mk, 32);
        pthread_rwlock_unlock(&t->lock);
        if (loaded && who != KT_NO_LOGIN) {
            int role = who == CKU_SO ? KT_PIN_SO : KT_PIN_USER;
            mk_ok = pins[role].present &&
                    kt_pin_check_bind(&pins[role], mk, role, t->serial,
                                      t->ik) == CKR_OK;
        }
    }
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        memcpy(t->pins, pins, sizeof(pins));
        for (size_t i = 0; i < rows.n && rv == CKR_OK; i++)
            rv = sync_row(t, &rows.v[i]);
        for (size_t i = 0; i < rows.nd; i++)
            sync_del(t, rows.dels[i]);
        if (rv == CKR_OK) {
            t->seen_gen = max_gen;
            t->loaded = true;
            t->data_version = dv;
            t->seq_ctr = seq;
            t->seq_why = seq_why;
            /* The rows and this manifest are one snapshot. */
            t->man = man;
            t->man_stale = false;
            t->man_dirty = true;
            manifest_verdict(t, man_ok, pins_ok);
            if (!mk_ok && t->mk_loaded && memcmp(mk, t->mk, 32) == 0) {
                kt_log(KT_LOG_WARNING,
                       "token %s: a PIN was changed in another process (new "
                       "master key): logged out",
                       t->path);
                kt_login_drop_locked(t);
            }
        }
        pthread_rwlock_unlock(&t->lock);
    }
    sync_rows_free(&rows);
    kt_wipe(pins, sizeof(pins));
    kt_wipe(&k, sizeof(k));
    kt_wipe(mk, sizeof(mk));
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
    int64_t gen;
    int64_t id;
    CK_OBJECT_CLASS cls;
    unsigned char *blob;
    size_t len;
    kt_attrs plain;
    CK_RV rv;
};

void kt_token_unseal_pending(struct kt_token *t)
{
    unsigned char mk[32];
    struct pending *p = NULL;
    size_t n = 0;
    pthread_rwlock_rdlock(&t->lock);
    if (t->mk_loaded) {
        memcpy(mk, t->mk, 32);
        p = calloc(t->objects.n + 1, sizeof(*p));
        void *v;
        for (size_t i = 0;
             p != NULL && kt_hmap_iter(&t->objects, &i, NULL, &v);) {
            struct kt_object *o = v;
            if (!o->token || o->unsealed || o->refused || !o->verified)
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
            kt_attrs_init(&q->plain);
            n++;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (p == NULL)
        return;
    /* The cryptography: no lock held. The record MACs were checked at
     * load; this opens the sealed attributes. */
    for (size_t i = 0; i < n; i++) {
        struct pending *q = &p[i];
        q->rv = kt_attrs_parse(&q->plain, q->blob, q->len);
        if (q->rv == CKR_OK)
            q->rv = kt_seal_open_attrs(mk, q->id, q->cls, &q->plain);
    }
    kt_token_wrlock(t);
    for (size_t i = 0; t->mk_loaded && memcmp(mk, t->mk, 32) == 0 && i < n;
         i++) {
        struct pending *q = &p[i];
        struct kt_object *o = kt_hmap_get(&t->objects, q->h);
        /* Changed or gone meanwhile: left to the pass below. */
        if (o == NULL || o->unsealed || o->gen != (uint64_t)q->gen ||
            o->blob_len != q->len || memcmp(o->blob, q->blob, q->len) != 0)
            continue;
        if (q->rv != CKR_OK) {
            if (!o->refused)
                kt_log(KT_LOG_ERROR,
                       "token %s: object %lld refused: integrity check "
                       "failed (its sealed attributes do not open)",
                       t->path, (long long)o->id);
            /* Kept, hidden: its row still counts in the manifest. */
            o->refused = true;
            continue;
        }
        kt_object_attrs_changed(o);
        kt_attrs tmp = o->attrs;
        o->attrs = q->plain;
        q->plain = tmp;
        o->unsealed = true;
    }
    if (t->mk_loaded)
        kt_token_unseal_all(t); /* the few that changed meanwhile */
    pthread_rwlock_unlock(&t->lock);
    for (size_t i = 0; i < n; i++) {
        kt_attrs_clear(&p[i].plain);
        free(p[i].blob);
    }
    free(p);
    kt_wipe(mk, sizeof(mk));
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
static void keys_pins(struct kt_store_keys *k, struct kt_pin pins[2])
{
    k->check_pins = kt_seal_pins_digest(k->manifest, pins, k->pins) == CKR_OK;
    kt_wipe(pins, 2 * sizeof(pins[0]));
}

/* Copies of the keys a store write needs (CKR_USER_NOT_LOGGED_IN without
 * the master key). A refused token is never written: a write would carry a
 * tampered or rolled-back file forward under a new manifest. */
static KT_NODISCARD CK_RV write_keys(struct kt_token *t,
                                     struct kt_store_keys *k, unsigned char *mk)
{
    struct kt_pin pins[2];
    pthread_rwlock_rdlock(&t->lock);
    bool loaded = t->mk_loaded;
    bool refused = t->man_refused;
    if (mk != NULL)
        memcpy(mk, t->mk, 32);
    store_keys(t, k, pins);
    pthread_rwlock_unlock(&t->lock);
    keys_pins(k, pins);
    if (refused)
        return CKR_DEVICE_ERROR;
    return loaded ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
}

/* dblock held, after a commit: <serial>.seq raised to the manifest counter
 * committed. A failure is logged; the database is then ahead of .seq,
 * which is accepted (the window of a crash between the two). */
static void seq_after_commit(struct kt_token *t, int64_t ctr)
{
    char base[PATH_MAX];
    token_base(t, base);
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
            rv = sync_locked(t);
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
        if (rv == CKR_OK)
            seq_after_commit(t, w.man.ctr);
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
    keys_pins(&c.keys, pins);
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
    pthread_rwlock_unlock(&t->lock);
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    /* The manifest is updated with the deletion: like creation, that
     * needs the master key. */
    if (rv == CKR_OK && is_token)
        rv = write_keys(t, &k, NULL);
    if (rv == CKR_OK && is_token)
        rv = kt_store_delete_object(t->db, &k, id, &w);
    if (rv == CKR_OK && is_token)
        seq_after_commit(t, w.man.ctr);
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

void kt_token_destroy_session_objects(struct kt_token *t, CK_SESSION_HANDLE s)
{
    kt_token_wrlock(t);
    drop_session_objects(t, s, false);
    pthread_rwlock_unlock(&t->lock);
}

/* ---- C_InitToken ----------------------------------------------------------
 */

static KT_NODISCARD CK_RV mkdir_p(const char *dir)
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

/* A new SO record for a new master key mk under integrity key ik. */
static KT_NODISCARD CK_RV new_so(struct kt_pin *so, const unsigned char *so_pin,
                                 CK_ULONG len, const unsigned char mk[32],
                                 const char serial[KT_SERIAL_LEN],
                                 const unsigned char ik[32])
{
    CK_RV rv =
        kt_pin_make(so, so_pin, len, kt_g.cfg.pin_kdf_cost, KT_PIN_SO, serial);
    if (rv == CKR_OK)
        rv = kt_pin_box(so, mk, KT_PIN_SO, serial, ik);
    return rv;
}

/* Re-initialisation: a new integrity key (written beside the old one,
 * renamed over it once the database commit is done), a new master key, an
 * empty token. A crash between the commit and the rename leaves a database
 * the old key does not authenticate: the token is refused (logged). */
static KT_NODISCARD CK_RV reinit(struct kt_token *t,
                                 const unsigned char *so_pin, CK_ULONG len,
                                 const unsigned char *label)
{
    unsigned char mk[32], ik[32];
    struct kt_pin so;
    struct kt_store_keys k;
    struct kt_manifest man;
    char base[PATH_MAX];
    memset(&so, 0, sizeof(so));
    memset(&k, 0, sizeof(k));
    token_base(t, base);
    CK_RV rv = kt_ossl_random(mk, sizeof(mk));
    if (rv == CKR_OK)
        rv = kt_keyfile_prepare(base, ik);
    if (rv == CKR_OK) {
        kt_seal_mac_key(ik, k.mac);
        kt_seal_manifest_key(ik, k.manifest);
        rv = new_so(&so, so_pin, len, mk, t->serial, ik);
    }
    if (rv != CKR_OK) {
        kt_keyfile_discard(base);
        goto out;
    }
    pthread_mutex_lock(&t->dblock);
    rv = kt_store_reinit(t->db, (const char *)label, &so, &k, &man);
    /* Our own new epoch: not another process's re-initialisation. */
    if (rv == CKR_OK)
        rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv == CKR_OK)
        rv = kt_keyfile_install(base);
    else
        kt_keyfile_discard(base);
    if (rv == CKR_OK) {
        unsigned char seq_key[32];
        kt_seal_seq_key(ik, seq_key);
        rv = kt_seq_advance(base, t->key_fd, seq_key, t->serial, man.ctr, true);
        kt_wipe(seq_key, sizeof(seq_key));
    }
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        rv = open_key(t);
        memcpy(t->label, label, KT_LABEL_LEN);
        drop_session_objects(t, 0, false);
        drop_token_objects(t);
        t->man_refused = false;
        t->man_ctr_seen = 0;
        pthread_rwlock_unlock(&t->lock);
        t->loaded = false;
        t->seen_gen = -1;
        if (rv == CKR_OK)
            rv = sync_locked(t);
        kt_log(KT_LOG_INFO,
               "token %s re-initialised: objects and user PIN removed, new "
               "integrity and master keys",
               t->path);
    }
    pthread_mutex_unlock(&t->dblock);
out:
    kt_wipe(mk, sizeof(mk));
    kt_wipe(ik, sizeof(ik));
    kt_wipe(&k, sizeof(k));
    kt_wipe(&so, sizeof(so));
    return rv;
}

CK_RV kt_token_init(struct kt_token *t, const char *dir,
                    const unsigned char *so_pin, CK_ULONG len,
                    const unsigned char *label)
{
    unsigned char mk[32], ik[32], seq_key[32];
    struct kt_pin so;
    struct kt_store_keys k;
    char base[PATH_MAX];
    CK_RV rv;
    memset(&so, 0, sizeof(so));
    memset(&k, 0, sizeof(k));
    char serial[KT_SERIAL_LEN + 1];
    if (t->initialized) {
        /* Re-initialisation: the SO proves the PIN (a try is charged first,
         * as at login), then every object goes. */
        rv = kt_login_verify_pin(t, KT_PIN_SO, so_pin, len, mk);
        kt_wipe(mk, sizeof(mk));
        if (rv == CKR_OK)
            rv = reinit(t, so_pin, len, label);
        return rv;
    }
    unsigned char sr[8];
    rv = kt_ossl_random(sr, sizeof(sr));
    if (rv != CKR_OK)
        goto out;
    for (int i = 0; i < 8; i++)
        snprintf(serial + 2 * i, 3, "%02x", sr[i]);
    rv = mkdir_p(dir);
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR, "token_dir %s: cannot create: %s", dir,
               strerror(errno));
        goto out;
    }
    snprintf(t->path, sizeof(t->path), "%s/%s.db", dir, serial);
    token_base(t, base);
    /* The integrity key first (O_EXCL, synced), then the database, then
     * <serial>.seq: a token is listed only once its database exists. */
    rv = kt_keyfile_create(base, ik);
    if (rv != CKR_OK)
        goto out;
    kt_seal_mac_key(ik, k.mac);
    kt_seal_manifest_key(ik, k.manifest);
    kt_seal_seq_key(ik, seq_key);
    rv = kt_ossl_random(mk, sizeof(mk));
    if (rv == CKR_OK)
        rv = new_so(&so, so_pin, len, mk, serial, ik);
    if (rv == CKR_OK)
        rv = kt_store_create(t->path, (const char *)label, serial, &so, &k,
                             &t->db);
    if (rv == CKR_OK) {
        rv = kt_seq_advance(base, -1, seq_key, serial, 0, true);
        if (rv != CKR_OK) {
            kt_store_close(t->db);
            t->db = NULL;
            unlink(t->path);
        }
    }
    if (rv != CKR_OK) {
        char key[PATH_MAX + 8];
        snprintf(key, sizeof(key), "%s.key", base);
        unlink(key);
        goto out;
    }
    rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv != CKR_OK)
        goto out;
    kt_token_wrlock(t);
    memcpy(t->serial, serial, KT_SERIAL_LEN);
    memcpy(t->label, label, KT_LABEL_LEN);
    rv = open_key(t);
    t->pins[KT_PIN_SO] = so;
    memset(&t->pins[KT_PIN_USER], 0, sizeof(t->pins[KT_PIN_USER]));
    pthread_rwlock_unlock(&t->lock);
    if (rv != CKR_OK)
        goto out;
    pthread_mutex_lock(&t->dblock);
    rv = sync_locked(t);
    pthread_mutex_unlock(&t->dblock);
    kt_token_wrlock(t);
    t->initialized = true;
    pthread_rwlock_unlock(&t->lock);
    kt_log(KT_LOG_INFO, "token %s created", t->path);
out:
    kt_wipe(mk, sizeof(mk));
    kt_wipe(ik, sizeof(ik));
    kt_wipe(seq_key, sizeof(seq_key));
    kt_wipe(&k, sizeof(k));
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

static KT_NODISCARD CK_RV slot_append(struct kt_token *t)
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

void kt_token_token_info(struct kt_token *t, CK_TOKEN_INFO *info)
{
    memset(info, 0, sizeof(*info));
    kt_p11str_pad(info->manufacturerID, "keytier",
                  sizeof(info->manufacturerID));
    kt_p11str_pad(info->model, "keytier soft", sizeof(info->model));
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
