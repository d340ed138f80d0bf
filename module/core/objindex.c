/* The in-memory object index of a token: token objects by handle, store
 * id and label; session objects in shards by handle, with their own label
 * index; lookups, visibility and removal. */
#include "kt.h"

#include <stdlib.h>

#include "token_int.h"

bool kt_token_visible(const struct kt_token *t, const struct kt_object *o)
{
    if (o->token && (o->refused || t->man_refused))
        return false;
    if (o->token && !o->verified)
        return false;
    return !o->private_ || t->login == CKU_USER;
}

struct kt_obj_shard *kt_tok_shard_of(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    return &t->shards[kt_handle_shard(h)];
}

struct kt_object *kt_token_get(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    struct kt_object *o = kt_hmap_get(&t->objects, h);
    if (o == NULL) {
        struct kt_obj_shard *sh = kt_tok_shard_of(t, h);
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
KT_NODISCARD CK_RV kt_tok_index_add(struct kt_token *t, struct kt_object *o)
{
    if (o->token)
        return labels_add(&t->labels, o);
    struct kt_obj_shard *sh = kt_tok_shard_of(t, o->handle);
    pthread_mutex_lock(&sh->lock);
    CK_RV rv = labels_add(&sh->labels, o);
    pthread_mutex_unlock(&sh->lock);
    return rv;
}

void kt_tok_index_del(struct kt_token *t, struct kt_object *o)
{
    if (o->token) {
        labels_del(&t->labels, o);
        return;
    }
    struct kt_obj_shard *sh = kt_tok_shard_of(t, o->handle);
    pthread_mutex_lock(&sh->lock);
    labels_del(&sh->labels, o);
    pthread_mutex_unlock(&sh->lock);
}

/* A session object into its shard (the shard's lock held). */
KT_NODISCARD CK_RV kt_tok_shard_add(struct kt_obj_shard *sh,
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
KT_NODISCARD CK_RV kt_tok_table_add(struct kt_token *t, struct kt_object *o)
{
    if (!o->token) {
        struct kt_obj_shard *sh = kt_tok_shard_of(t, o->handle);
        pthread_mutex_lock(&sh->lock);
        CK_RV rv = kt_tok_shard_add(sh, o);
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
        struct kt_obj_shard *sh = kt_tok_shard_of(t, o->handle);
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

/* Out of the shard's maps into its dying list (the shard's lock held). */
static void dying_add(struct kt_obj_shard *sh, struct kt_object *o)
{
    shard_del(sh, o);
    o->label_prev = NULL;
    o->label_next = sh->dying;
    if (sh->dying != NULL)
        sh->dying->label_prev = o;
    sh->dying = o;
}

static void dying_del(struct kt_obj_shard *sh, struct kt_object *o)
{
    if (o->label_next != NULL)
        o->label_next->label_prev = o->label_prev;
    if (o->label_prev != NULL)
        o->label_prev->label_next = o->label_next;
    else
        sh->dying = o->label_next;
    o->label_prev = o->label_next = NULL;
}

/* Every lookup that may hold an object removed from its shard holds the
 * token's `lock` for reading since before the removal: once a write
 * acquisition succeeds, none does. Readers hold it for table work only, so
 * a few tries without blocking nearly always succeed; no objects_seq move
 * (nothing visible changes here). */
static void wait_readers(struct kt_token *t)
{
    for (int i = 0; i < 64; i++) {
        if (pthread_rwlock_trywrlock(&t->lock) == 0) {
            pthread_rwlock_unlock(&t->lock);
            return;
        }
        for (int k = 0; k < 32; k++)
            kt_cpu_relax();
    }
    pthread_rwlock_wrlock(&t->lock);
    pthread_rwlock_unlock(&t->lock);
}

CK_RV kt_token_destroy_session_object(struct kt_token *t, CK_OBJECT_HANDLE h,
                                      bool *snapshotted)
{
    struct kt_obj_shard *sh = kt_tok_shard_of(t, h);
    CK_RV rv = CKR_OK;
    pthread_rwlock_rdlock(&t->lock);
    pthread_mutex_lock(&sh->lock);
    struct kt_object *o = kt_hmap_get(&sh->objects, h);
    if (o == NULL)
        rv = KT_CKR_RETRY; /* a token object, or none */
    else if (!kt_token_visible(t, o))
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (!kt_attrs_get_bool(&o->attrs, CKA_DESTROYABLE, true))
        rv = CKR_ACTION_PROHIBITED;
    else
        dying_add(sh, o); /* no lookup finds it from here on */
    pthread_mutex_unlock(&sh->lock);
    pthread_rwlock_unlock(&t->lock);
    if (rv != CKR_OK)
        return rv;
    wait_readers(t);
    /* Set under the token's lock by a snapshot, which wait_readers waited
     * for: a snapshot taken after the removal found nothing. */
    *snapshotted = atomic_load(&o->snapshotted);
    pthread_mutex_lock(&sh->lock);
    dying_del(sh, o);
    pthread_mutex_unlock(&sh->lock);
    kt_object_free(o);
    return CKR_OK;
}

void kt_token_fork_wipe_dying(struct kt_token *t)
{
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        struct kt_object *o = t->shards[i].dying;
        t->shards[i].dying = NULL;
        while (o != NULL) {
            struct kt_object *next = o->label_next;
            kt_object_free(o);
            o = next;
        }
    }
}

void kt_tok_drop_object(struct kt_token *t, struct kt_object *o)
{
    table_del(t, o);
    kt_object_free(o);
}

/* Every token object of this process's table (lock held for writing): the
 * token was re-initialised or its integrity key replaced, and its rows are
 * read again. */
void kt_tok_drop_token_objects(struct kt_token *t)
{
    void *v;
    while (t->objects.n > 0) {
        size_t i = 0;
        if (!kt_hmap_iter(&t->objects, &i, NULL, &v))
            break;
        kt_tok_drop_object(t, v);
    }
}

/* Removes the session objects that match (token lock held for writing):
 * every one of session s (0: of any session), or only private ones. */
void kt_tok_drop_session_objects(struct kt_token *t, CK_SESSION_HANDLE s,
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
    kt_tok_drop_session_objects(t, 0, true);
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
            kt_tok_drop_object(t, o);
            continue;
        }
        kt_hmap_del(&t->objects, o->handle);
        o->handle = kt_handle_next();
        if (kt_hmap_put(&t->objects, o->handle, o) != CKR_OK) {
            /* Out of memory: the object leaves the table until reloaded. */
            kt_tok_index_del(t, o);
            if (o->id != 0)
                kt_hmap_del(&t->by_id, (CK_ULONG)o->id);
            kt_object_free(o);
            t->loaded = false;
            t->seen_gen = -1;
        }
    }
    free(priv);
}

void kt_token_destroy_session_objects(struct kt_token *t, CK_SESSION_HANDLE s)
{
    kt_token_wrlock(t);
    kt_tok_drop_session_objects(t, s, false);
    pthread_rwlock_unlock(&t->lock);
}
