/* A token's sealed attributes opened once its master key is loaded, and
 * sealed again (plaintext dropped) when it goes. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "store/store.h"
#include "token_int.h"

CK_RV kt_object_unseal(struct kt_token *t, struct kt_object *o)
{
    if (!o->token || o->unsealed)
        return CKR_OK;
    /* The record MAC was checked when the row was loaded. */
    if (o->refused || !o->verified || !t->mk_loaded)
        return CKR_DATA_INVALID;
    /* Opened from the stored record into a copy: a failure leaves the
     * object as it was (sealed), to be opened again later. */
    kt_attrs plain;
    kt_attrs_init(&plain);
    CK_RV rv = kt_attrs_parse(&plain, o->blob, o->blob_len);
    if (rv == CKR_OK)
        rv = kt_seal_open_attrs(t->mk, o->id, o->cls, &plain);
    if (rv == CKR_HOST_MEMORY) {
        kt_attrs_clear(&plain);
        return rv;
    }
    if (rv != CKR_OK) {
        kt_attrs_clear(&plain);
        kt_log(KT_LOG_ERROR,
               "token %s: object %lld refused: integrity check failed (the "
               "stored attributes were changed outside the token)",
               t->path, (long long)o->id);
        /* Kept (hidden) so the manifest still accounts for its row; its
         * attributes stay as stored (sealed). */
        o->refused = true;
        return CKR_DATA_INVALID;
    }
    kt_attrs tmp = o->attrs;
    o->attrs = plain;
    kt_attrs_clear(&tmp);
    o->verified = true;
    o->unsealed = true;
    kt_object_attrs_changed(o);
    return CKR_OK;
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

/* Lock held for reading: the token objects still sealed, copied into p
 * (n of them). CKR_HOST_MEMORY if not all could be copied. */
static KT_NODISCARD CK_RV collect_sealed(struct kt_token *t,
                                         struct pending **out, size_t *count)
{
    size_t n = 0;
    struct pending *p = calloc(t->objects.n + 1, sizeof(*p));
    void *v;
    CK_RV rv = p != NULL ? CKR_OK : CKR_HOST_MEMORY;
    for (size_t i = 0; p != NULL && kt_hmap_iter(&t->objects, &i, NULL, &v);) {
        struct kt_object *o = v;
        if (!o->token || o->unsealed || o->refused || !o->verified)
            continue;
        struct pending *q = &p[n];
        q->blob = malloc(o->blob_len ? o->blob_len : 1);
        if (q->blob == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        memcpy(q->blob, o->blob, o->blob_len);
        q->len = o->blob_len;
        q->h = o->handle;
        q->id = o->id;
        q->gen = (int64_t)o->gen;
        q->cls = o->cls;
        kt_attrs_init(&q->plain);
        n++;
    }
    *out = p;
    *count = n;
    return rv;
}

/* Lock held for writing: the opened copies installed; a record that does
 * not open is refused (hidden), one that could not be opened for want of
 * memory stays sealed and the answer is CKR_HOST_MEMORY. */
static KT_NODISCARD CK_RV install_unsealed(struct kt_token *t,
                                           struct pending *p, size_t n)
{
    CK_RV rv = CKR_OK;
    for (size_t i = 0; i < n; i++) {
        struct pending *q = &p[i];
        struct kt_object *o = kt_hmap_get(&t->objects, q->h);
        /* Changed or gone meanwhile: left to kt_token_unseal_all. */
        if (o == NULL || o->unsealed || o->gen != (uint64_t)q->gen ||
            o->blob_len != q->len || memcmp(o->blob, q->blob, q->len) != 0)
            continue;
        if (q->rv == CKR_HOST_MEMORY) {
            rv = CKR_HOST_MEMORY;
            continue;
        }
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
    return rv;
}

CK_RV kt_token_unseal_pending(struct kt_token *t)
{
    unsigned char mk[32];
    struct pending *p = NULL;
    size_t n = 0;
    CK_RV rv = CKR_OK;
    pthread_rwlock_rdlock(&t->lock);
    if (t->mk_loaded) {
        memcpy(mk, t->mk, 32);
        rv = collect_sealed(t, &p, &n);
    }
    pthread_rwlock_unlock(&t->lock);
    if (p == NULL)
        return rv;
    /* The cryptography: no lock held. The record MACs were checked at
     * load; this opens the sealed attributes. */
    for (size_t i = 0; i < n; i++) {
        struct pending *q = &p[i];
        q->rv = kt_attrs_parse(&q->plain, q->blob, q->len);
        if (q->rv == CKR_OK)
            q->rv = kt_seal_open_attrs(mk, q->id, q->cls, &q->plain);
    }
    kt_token_wrlock(t);
    if (t->mk_loaded && memcmp(mk, t->mk, 32) == 0) {
        CK_RV r = install_unsealed(t, p, n);
        if (rv == CKR_OK)
            rv = r;
    }
    if (t->mk_loaded) {
        CK_RV r = kt_token_unseal_all(t); /* the few that changed meanwhile */
        if (rv == CKR_OK)
            rv = r;
    }
    pthread_rwlock_unlock(&t->lock);
    for (size_t i = 0; i < n; i++) {
        kt_attrs_clear(&p[i].plain);
        free(p[i].blob);
    }
    free(p);
    kt_wipe(mk, sizeof(mk));
    return rv;
}

CK_RV kt_token_unseal_all(struct kt_token *t)
{
    void *v;
    CK_RV rv = CKR_OK;
    /* A record that fails is marked refused by kt_object_unseal; one that
     * ran out of memory stays sealed. */
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);)
        if (kt_object_unseal(t, v) == CKR_HOST_MEMORY)
            rv = CKR_HOST_MEMORY;
    return rv;
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
        kt_tok_drop_object(t, bad[k]);
    if (n_bad > 0) {
        t->loaded = false;
        t->seen_gen = -1;
    }
}
