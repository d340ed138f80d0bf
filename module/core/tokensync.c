/* Loading a token's rows from its database and keeping them in step:
 * record MACs checked, the manifest verdict, a replaced integrity key or a
 * re-initialisation by another process noticed. */
#include "kt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "store/store.h"
#include "token_int.h"

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

static void sync_del(void *ctx, int64_t id)
{
    struct kt_token *t = ctx;
    struct kt_object *o = kt_hmap_get(&t->by_id, (CK_ULONG)id);
    if (o != NULL)
        kt_tok_drop_object(t, o);
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
    bool oom; /* a deletion could not be recorded: the sync fails */
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
        kt_tok_drop_object(t, old);
    } else {
        o->handle = kt_handle_next();
    }
    CK_RV rv2 = kt_tok_table_add(t, o);
    if (rv2 != CKR_OK)
        kt_object_free(o);
    return rv2;
}

/* No token lock held: every row read is checked against its record MAC
 * and gets its manifest term, with the integrity key's keys. A check that
 * could not be made (memory) fails the sync: the row is never taken for
 * a damaged one (refused, hidden) for want of memory. */
static KT_NODISCARD CK_RV sync_check(const struct kt_store_keys *k,
                                     struct sync_rows *rows)
{
    for (size_t i = 0; i < rows->n; i++) {
        struct sync_row *r = &rows->v[i];
        r->verified = r->mac_len == 32 ? kt_seal_verify(k->mac, r->id, r->gen,
                                                        r->blob, r->len, r->mac)
                                       : CKR_DATA_INVALID;
        r->term_rv = kt_seal_manifest_term(k->manifest, r->id, r->gen, r->mac,
                                           r->mac_len, r->term);
        if (r->verified == CKR_HOST_MEMORY || r->term_rv == CKR_HOST_MEMORY)
            return CKR_HOST_MEMORY;
    }
    return CKR_OK;
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
        if (nd == NULL) {
            r->oom = true;
            return;
        }
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
    kt_tok_drop_session_objects(t, 0, false);
    kt_tok_drop_token_objects(t);
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
    kt_tok_base(t, base);
    if (kt_keyfile_ino(base) == t->key_ino)
        return CKR_OK;
    kt_token_wrlock(t);
    CK_RV rv = kt_tok_open_key(t);
    if (rv == CKR_OK) {
        kt_tok_drop_token_objects(t);
        t->loaded = false;
        t->seen_gen = -1;
        kt_log(KT_LOG_INFO, "token %s: new integrity key; reloaded", t->path);
    }
    pthread_rwlock_unlock(&t->lock);
    return rv;
}

/* One snapshot of the store as a sync reads it, and what was found
 * checking it outside the token lock. */
struct sync_snap {
    struct sync_rows rows;
    struct kt_pin pins[2];
    struct kt_manifest man;
    int64_t max_gen;
    int64_t dv;
    int64_t seq;
    const char *seq_why;
    bool man_ok, pins_ok, mk_ok;
    /* The master key this process held when the snapshot was checked. */
    unsigned char mk[32];
};

/* dblock held: *same is set when the database has not changed since the
 * last load (PRAGMA data_version); s->dv gets the version read. */
static KT_NODISCARD CK_RV sync_unchanged(struct kt_token *t,
                                         struct sync_snap *s, bool *same)
{
    *same = false;
    if (!t->loaded)
        return CKR_OK;
    CK_RV rv = kt_store_data_version(t->db, &t->dv_stmt, &s->dv);
    if (rv == CKR_OK && s->dv == t->data_version)
        *same = true;
    return rv;
}

/* dblock held: a new integrity key or a new epoch means another process
 * re-initialised the token. */
static KT_NODISCARD CK_RV sync_same_token(struct kt_token *t)
{
    CK_RV rv = reload_key_if_replaced(t);
    if (rv != CKR_OK)
        return rv;
    char epoch[KT_EPOCH_LEN];
    rv = kt_store_read_epoch(t->db, epoch);
    if (rv != CKR_OK)
        return rv;
    if (memcmp(epoch, t->epoch, KT_EPOCH_LEN) != 0)
        reinit_seen(t, epoch);
    return CKR_OK;
}

/* dblock held: <serial>.seq first, then the rows, PIN records and manifest
 * in one snapshot. */
static KT_NODISCARD CK_RV sync_read(struct kt_token *t, struct sync_snap *s)
{
    char base[PATH_MAX];
    kt_tok_base(t, base);
    s->seq = -1;
    s->seq_why = NULL;
    CK_RV rv = kt_seq_read(base, t->seq_key, t->serial, &s->seq, &s->seq_why);
    if (rv == CKR_HOST_MEMORY)
        return rv;
    if (rv != CKR_OK)
        s->seq = -1; /* missing or not authentic: the token is refused */
    s->max_gen = t->seen_gen;
    rv = kt_store_changes(t->db, t->path, t->seen_gen, collect_row, collect_del,
                          &s->rows, &s->max_gen, s->pins, &s->man);
    if (rv == CKR_OK && s->rows.oom)
        rv = CKR_HOST_MEMORY;
    if (rv == CKR_OK && s->dv == 0)
        rv = kt_store_data_version(t->db, &t->dv_stmt, &s->dv);
    return rv;
}

/* CKR_OK or a verdict (a mismatch): ok is set; a failure to compute
 * (memory) is returned and judges nothing. */
static KT_NODISCARD CK_RV verdict(CK_RV rv, bool *ok)
{
    *ok = rv == CKR_OK;
    return rv == CKR_HOST_MEMORY ? rv : CKR_OK;
}

/* dblock held, no token lock: every row against its record MAC, the
 * manifest's MAC and PIN digest, and the master key this process holds
 * against its role's bind. The keys only change under dblock. */
static KT_NODISCARD CK_RV sync_verify(struct kt_token *t, struct sync_snap *s)
{
    struct kt_store_keys k;
    unsigned char digest[32];
    memcpy(k.mac, t->mac_key, 32);
    memcpy(k.manifest, t->man_key, 32);
    CK_RV rv = sync_check(&k, &s->rows);
    if (rv == CKR_OK)
        rv = verdict(kt_seal_manifest_check(k.manifest, &s->man), &s->man_ok);
    if (rv == CKR_OK)
        rv = verdict(kt_seal_pins_digest(k.manifest, s->pins, digest),
                     &s->pins_ok);
    s->pins_ok = s->pins_ok && kt_ossl_memcmp(digest, s->man.pins, 32) == 0;
    kt_wipe(&k, sizeof(k));
    if (rv != CKR_OK)
        return rv;
    /* A master key this process holds must still be the one the records
     * are bound to: a PIN change in another process made a new one (and
     * resealed every object under it). */
    pthread_rwlock_rdlock(&t->lock);
    CK_USER_TYPE who = t->login;
    bool loaded = t->mk_loaded;
    memcpy(s->mk, t->mk, 32);
    pthread_rwlock_unlock(&t->lock);
    s->mk_ok = true;
    if (loaded && who != KT_NO_LOGIN) {
        int role = who == CKU_SO ? KT_PIN_SO : KT_PIN_USER;
        s->mk_ok = s->pins[role].present;
        if (s->mk_ok)
            rv = verdict(kt_pin_check_bind(&s->pins[role], s->mk, role,
                                           t->serial, t->ik),
                         &s->mk_ok);
    }
    return rv;
}

/* Lock held for writing: the snapshot's rows into the table, its manifest
 * and .seq counter recorded and judged (no I/O, no cryptography). */
static KT_NODISCARD CK_RV sync_install(struct kt_token *t,
                                       const struct sync_snap *s)
{
    CK_RV rv = CKR_OK;
    memcpy(t->pins, s->pins, sizeof(s->pins));
    for (size_t i = 0; i < s->rows.n && rv == CKR_OK; i++)
        rv = sync_row(t, &s->rows.v[i]);
    for (size_t i = 0; i < s->rows.nd; i++)
        sync_del(t, s->rows.dels[i]);
    if (rv != CKR_OK)
        return rv;
    t->seen_gen = s->max_gen;
    t->loaded = true;
    t->data_version = s->dv;
    t->seq_ctr = s->seq;
    t->seq_why = s->seq_why;
    /* The rows and this manifest are one snapshot. */
    t->man = s->man;
    t->man_stale = false;
    t->man_dirty = true;
    manifest_verdict(t, s->man_ok, s->pins_ok);
    if (!s->mk_ok && t->mk_loaded && memcmp(s->mk, t->mk, 32) == 0) {
        kt_log(KT_LOG_WARNING,
               "token %s: a PIN was changed in another process (new "
               "master key): logged out",
               t->path);
        kt_login_drop_locked(t);
    }
    return CKR_OK;
}

/* dblock held: the loaded objects' sealed attributes opened (logged in);
 * what ran out of memory is opened by the next sync, and fails this one. */
static KT_NODISCARD CK_RV unseal_loaded(struct kt_token *t)
{
    CK_RV rv = kt_token_unseal_pending(t);
    t->unseal_due = rv != CKR_OK;
    return rv;
}

/* dblock held. <serial>.seq is read first, then the rows, PIN records and
 * manifest in one snapshot (a counter in .seq was committed before it was
 * written, so the snapshot is never behind it unless rolled back). Rows are
 * checked with the integrity key with no token lock held; the table is
 * changed and the verdict given under the write lock (no I/O, no
 * cryptography); secrets are unsealed afterwards, outside it, when logged
 * in. */
KT_NODISCARD CK_RV kt_tok_sync_locked(struct kt_token *t)
{
    struct sync_snap s;
    bool same = false;
    memset(&s, 0, sizeof(s));
    CK_RV rv = sync_unchanged(t, &s, &same);
    if (rv != CKR_OK)
        return rv;
    if (same)
        return t->unseal_due ? unseal_loaded(t) : CKR_OK;
    rv = sync_same_token(t);
    if (rv != CKR_OK)
        return rv;
    rv = sync_read(t, &s);
    if (rv == CKR_OK)
        rv = sync_verify(t, &s);
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        rv = sync_install(t, &s);
        pthread_rwlock_unlock(&t->lock);
    }
    sync_rows_free(&s.rows);
    kt_wipe(&s, sizeof(s));
    if (rv == CKR_OK)
        rv = unseal_loaded(t);
    return rv;
}

CK_RV kt_token_sync(struct kt_token *t)
{
    if (!t->initialized)
        return CKR_OK;
    pthread_mutex_lock(&t->dblock);
    CK_RV rv = kt_tok_sync_locked(t);
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
