#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "kt_asym.h"
#include "store/store.h"

static CK_OBJECT_CLASS cls_of(const kt_attrs *a)
{
    CK_OBJECT_CLASS c = CK_UNAVAILABLE_INFORMATION;
    KT_IGNORE_RESULT(kt_attrs_get_ulong(a, CKA_CLASS, &c));
    return c;
}

void kt_object_attrs_changed(struct kt_object *o)
{
    kt_shared_attrs_unref(atomic_exchange(&o->shared, NULL));
}

void kt_object_free(struct kt_object *o)
{
    if (o == NULL)
        return;
    kt_object_attrs_changed(o);
    kt_attrs_clear(&o->attrs);
    kt_ossl_pkey_free(o->pkey);
    kt_cache_unref(o->cache);
    free(o->blob);
    free(o);
}

/* Installing a cache or a parsed key changes no attribute, visibility or
 * existence: objects_seq stays, and sessions keep their snapshots. */
void kt_object_set_cache(struct kt_token *t, CK_OBJECT_HANDLE h,
                         struct kt_cache *cache)
{
    pthread_rwlock_wrlock(&t->lock);
    struct kt_object *o = kt_token_get(t, h);
    if (o != NULL && o->cache == NULL && o->unsealed) {
        o->cache = cache;
        cache = NULL;
    }
    pthread_rwlock_unlock(&t->lock);
    kt_cache_unref(cache);
}

void kt_object_refresh(struct kt_object *o)
{
    if (kt_attrs_get_ulong(&o->attrs, CKA_CLASS, &o->cls) != CKR_OK)
        o->cls = CK_UNAVAILABLE_INFORMATION;
    if (kt_attrs_get_ulong(&o->attrs, CKA_KEY_TYPE, &o->key_type) != CKR_OK)
        o->key_type = CK_UNAVAILABLE_INFORMATION;
    o->token = kt_attrs_get_bool(&o->attrs, CKA_TOKEN, false);
    o->private_ = kt_attrs_get_bool(&o->attrs, CKA_PRIVATE, true);
    o->sensitive = (o->cls == CKO_SECRET_KEY || o->cls == CKO_PRIVATE_KEY) &&
                   (kt_attrs_get_bool(&o->attrs, CKA_SENSITIVE, true) ||
                    !kt_attrs_get_bool(&o->attrs, CKA_EXTRACTABLE, false));
    const CK_ATTRIBUTE *l = kt_attrs_find(&o->attrs, CKA_LABEL);
    o->label_hash = l != NULL ? kt_label_hash(l->pValue, l->ulValueLen) : 0;
}

void kt_object_set_pkey(struct kt_token *t, CK_OBJECT_HANDLE h, void *pkey)
{
    pthread_rwlock_wrlock(&t->lock);
    struct kt_object *o = kt_token_get(t, h);
    if (o != NULL && o->pkey == NULL && o->unsealed) {
        o->pkey = pkey;
        pkey = NULL;
    }
    pthread_rwlock_unlock(&t->lock);
    kt_ossl_pkey_free(pkey);
}

CK_RV kt_object_new_take(kt_attrs *attrs, struct kt_object **out)
{
    struct kt_object *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return CKR_HOST_MEMORY;
    /* Objects keep their attributes packed in one block (kt_attrs_copy);
     * without memory for it, as they are. */
    kt_attrs_init(&o->attrs);
    if (kt_attrs_move(&o->attrs, attrs) != CKR_OK)
        o->attrs = *attrs;
    kt_attrs_init(attrs);
    if (kt_attrs_get_ulong(&o->attrs, CKA_CLASS, &o->cls) != CKR_OK) {
        kt_object_free(o);
        return CKR_GENERAL_ERROR;
    }
    kt_object_refresh(o);
    o->verified = true;
    o->unsealed = true;
    *out = o;
    return CKR_OK;
}

CK_RV kt_object_new(const kt_attrs *attrs, struct kt_object **out)
{
    struct kt_object *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return CKR_HOST_MEMORY;
    kt_attrs_init(&o->attrs);
    CK_RV rv = kt_attrs_copy(&o->attrs, attrs);
    if (rv == CKR_OK)
        rv = kt_attrs_get_ulong(&o->attrs, CKA_CLASS, &o->cls);
    if (rv != CKR_OK) {
        kt_object_free(o);
        return rv == CKR_TEMPLATE_INCOMPLETE ? CKR_GENERAL_ERROR : rv;
    }
    kt_object_refresh(o);
    o->verified = true;
    o->unsealed = true;
    *out = o;
    return CKR_OK;
}

/* ---- object operations ------------------------------------------------- */

static bool is_so(const struct kt_token *t)
{
    return t->login == CKU_SO;
}

CK_RV kt_object_create(struct kt_session *s, kt_attrs *attrs,
                       enum kt_create_how how, const struct kt_mech *gen,
                       const CK_MECHANISM *mech, CK_OBJECT_HANDLE *out)
{
    struct kt_token *t = s->token;
    struct kt_object *o = NULL;
    CK_RV rv = kt_schema_create(
        attrs, how, mech != NULL ? mech->mechanism : CK_UNAVAILABLE_INFORMATION,
        is_so(t));
    if (rv != CKR_OK)
        return rv;
    bool token = kt_attrs_get_bool(attrs, CKA_TOKEN, false);
    bool priv = kt_attrs_get_bool(attrs, CKA_PRIVATE, false);
    if (token && !kt_session_rw(s))
        return CKR_SESSION_READ_ONLY;
    if (priv && t->login != CKU_USER)
        return CKR_USER_NOT_LOGGED_IN;
    /* What a token record seals (key material, a private data object's
     * value) needs the master key, which only a login provides; a public
     * certificate, public key or data object is written without one. */
    if (token && !t->mk_loaded && kt_seal_needs_mk(cls_of(attrs), attrs))
        return CKR_USER_NOT_LOGGED_IN;
    if (gen != NULL) {
        rv = gen->generate(mech, attrs);
        if (rv != CKR_OK)
            return rv;
    }
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
    rv = kt_attrs_get_ulong(attrs, CKA_CLASS, &cls);
    if (rv != CKR_OK)
        return rv;
    if (kt_attrs_get_ulong(attrs, CKA_KEY_TYPE, &kt) != CKR_OK)
        kt = CK_UNAVAILABLE_INFORMATION;
    rv = kt_schema_check_value(cls, kt, attrs);
    if (rv != CKR_OK)
        return rv;
    /* RSA/EC key material and certificates; generated pairs
     * come complete from kt_asym_generate_pair(). */
    if (how != KT_CREATE_GENERATE) {
        rv = kt_asym_complete(attrs);
        if (rv != CKR_OK)
            return rv;
    }
    if (cls == CKO_SECRET_KEY) {
        const CK_ATTRIBUTE *v = kt_attrs_find(attrs, CKA_VALUE);
        unsigned char cv[3];
        /* C_UnwrapKey holds the session's lock: its kept context. */
        rv = kt_ossl_check_value(
            kt, v->pValue, v->ulValueLen,
            how == KT_CREATE_UNWRAP ? &s->check_cipher : NULL, cv);
        if (rv != CKR_OK)
            return rv;
        const CK_ATTRIBUTE *given = kt_attrs_find(attrs, CKA_CHECK_VALUE);
        if (given != NULL && given->ulValueLen != 0 &&
            (given->ulValueLen != 3 || memcmp(given->pValue, cv, 3) != 0))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        rv = kt_attrs_set_ulong(attrs, CKA_VALUE_LEN, v->ulValueLen);
        if (rv == CKR_OK)
            rv = kt_attrs_set(attrs, CKA_CHECK_VALUE, cv, 3);
        if (rv != CKR_OK)
            return rv;
    }
    rv = kt_object_new_take(attrs, &o);
    if (rv != CKR_OK)
        return rv;
    o->session = token ? 0 : s->handle;
    return kt_token_add_object(t, s, o, out);
}

/* Secret attribute values are still sealed (a token key before login);
 * objects without secret attributes are usable as read. */
static bool kt_object_sealed(const struct kt_object *o)
{
    return o->token && !o->unsealed &&
           (o->cls == CKO_SECRET_KEY || o->cls == CKO_PRIVATE_KEY);
}

static bool object_sensitive(const struct kt_object *o)
{
    return o->sensitive;
}

CK_RV kt_object_get(struct kt_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE *t,
                    CK_ULONG n)
{
    struct kt_token *tok = s->token;
    CK_RV rv = kt_token_sync(tok);
    if (rv != CKR_OK)
        return rv;
    pthread_rwlock_rdlock(&tok->lock);
    struct kt_object *o = kt_token_object(tok, h);
    if (o == NULL) {
        rv = CKR_OBJECT_HANDLE_INVALID;
        goto out;
    }
    bool sensitive = object_sensitive(o);
    /* PKCS#11 v2.40 §5.7: every attribute is processed; each failing one
     * gets CK_UNAVAILABLE_INFORMATION and the call reports an error. */
    for (CK_ULONG i = 0; i < n; i++) {
        CK_RV r = CKR_OK;
        const CK_ATTRIBUTE *at = kt_attrs_find(&o->attrs, t[i].type);
        if (at == NULL) {
            r = CKR_ATTRIBUTE_TYPE_INVALID;
        } else if (kt_schema_secret(o->cls, t[i].type) &&
                   (sensitive || !o->unsealed)) {
            r = CKR_ATTRIBUTE_SENSITIVE;
        } else {
            r = kt_attr_export(at, &t[i]);
        }
        if (r != CKR_OK) {
            if (r != CKR_BUFFER_TOO_SMALL)
                t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            if (rv == CKR_OK)
                rv = r;
        }
    }
out:
    pthread_rwlock_unlock(&tok->lock);
    return rv;
}

/* Copies the attributes of a visible object. */
static KT_NODISCARD CK_RV object_snapshot(struct kt_token *t,
                                          CK_OBJECT_HANDLE h, kt_attrs *out,
                                          struct kt_object *meta)
{
    CK_RV rv = CKR_OK;
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_object(t, h);
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (kt_object_sealed(o))
        rv = CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK)
        rv = kt_attrs_copy(out, &o->attrs);
    if (rv == CKR_OK && meta != NULL) {
        *meta = *o;
        kt_attrs_init(&meta->attrs);
        meta->blob = NULL;
    }
    pthread_rwlock_unlock(&t->lock);
    return rv;
}

static KT_NODISCARD CK_RV apply_changes(struct kt_token *tok, kt_attrs *cur,
                                        const CK_ATTRIBUTE *t, CK_ULONG n,
                                        bool copying)
{
    kt_attrs ch;
    kt_attrs_init(&ch);
    CK_RV rv = kt_attrs_from_template(&ch, t, n);
    for (size_t i = 0; rv == CKR_OK && i < ch.n; i++) {
        rv = kt_schema_modify(cur, &ch.v[i], copying, is_so(tok));
        if (rv == CKR_OK)
            rv = kt_attrs_set(cur, ch.v[i].type, ch.v[i].pValue,
                              ch.v[i].ulValueLen);
    }
    if (rv == CKR_OK)
        rv = kt_schema_roles_changed(cur, &ch, copying);
    kt_attrs_clear(&ch);
    return rv;
}

struct set_ctx {
    struct kt_token *tok;
    const CK_ATTRIBUTE *t;
    CK_ULONG n;
};

static KT_NODISCARD CK_RV set_change(void *vctx, kt_attrs *cur)
{
    struct set_ctx *c = vctx;
    if (!kt_attrs_get_bool(cur, CKA_MODIFIABLE, true))
        return CKR_ACTION_PROHIBITED;
    return apply_changes(c->tok, cur, c->t, c->n, false);
}

CK_RV kt_object_set(struct kt_session *s, CK_OBJECT_HANDLE h,
                    const CK_ATTRIBUTE *t, CK_ULONG n)
{
    struct kt_token *tok = s->token;
    struct set_ctx ctx = {tok, t, n};
    CK_RV rv = kt_token_sync(tok);
    if (rv != CKR_OK)
        return rv;
    pthread_rwlock_rdlock(&tok->lock);
    struct kt_object *o = kt_token_object(tok, h);
    bool token = o != NULL && o->token;
    /* Only the master key matters for a token object: the change reads it
     * from the store, verified and unsealed. In memory it may be sealed for
     * a moment while logged in: another thread's sync installs a row
     * another process changed before it unseals it (outside the lock). */
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (token && !tok->mk_loaded)
        rv = CKR_USER_NOT_LOGGED_IN;
    pthread_rwlock_unlock(&tok->lock);
    if (rv != CKR_OK)
        return rv;
    if (token) {
        if (!kt_session_rw(s))
            return CKR_SESSION_READ_ONLY;
        /* Read, change and write in one store transaction: a concurrent
         * change from another thread or process is never lost, so nothing
         * brings back CKA_EXTRACTABLE=TRUE or CKA_SENSITIVE=FALSE. */
        return kt_token_modify_object(tok, h, set_change, &ctx);
    }
    /* Session objects: compare-and-swap on the object's generation. */
    rv = KT_CKR_RETRY;
    for (int attempt = 0; attempt < 64 && rv == KT_CKR_RETRY; attempt++) {
        struct kt_object meta;
        kt_attrs cur;
        kt_attrs_init(&cur);
        rv = object_snapshot(tok, h, &cur, &meta);
        if (rv == CKR_OK)
            rv = set_change(&ctx, &cur);
        if (rv == CKR_OK)
            rv = kt_token_update_object(tok, h, &cur, meta.gen);
        kt_attrs_clear(&cur);
    }
    return rv == KT_CKR_RETRY ? CKR_FUNCTION_FAILED : rv;
}

CK_RV kt_object_copy(struct kt_session *s, CK_OBJECT_HANDLE h,
                     const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    struct kt_token *tok = s->token;
    struct kt_object *o = NULL;
    kt_attrs cur;
    kt_attrs_init(&cur);
    CK_RV rv = kt_token_sync(tok);
    if (rv == CKR_OK)
        rv = object_snapshot(tok, h, &cur, NULL);
    if (rv != CKR_OK)
        goto out;
    if (!kt_attrs_get_bool(&cur, CKA_COPYABLE, true)) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    rv = apply_changes(tok, &cur, t, n, true);
    if (rv != CKR_OK)
        goto out;
    bool token = kt_attrs_get_bool(&cur, CKA_TOKEN, false);
    bool priv = kt_attrs_get_bool(&cur, CKA_PRIVATE, false);
    if (token && !kt_session_rw(s))
        rv = CKR_SESSION_READ_ONLY;
    else if ((priv && tok->login != CKU_USER) ||
             (token && !tok->mk_loaded && kt_seal_needs_mk(cls_of(&cur), &cur)))
        rv = CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK)
        rv = kt_object_new_take(&cur, &o);
    if (rv == CKR_OK) {
        o->session = token ? 0 : s->handle;
        rv = kt_token_add_object(tok, s, o, out);
    }
out:
    kt_attrs_clear(&cur);
    return rv;
}

CK_RV kt_object_destroy(struct kt_session *s, CK_OBJECT_HANDLE h)
{
    struct kt_token *tok = s->token;
    /* Session objects: neither the store's lock nor a write of the token's
     * lock, and a sweep only if a session may cache the key. */
    bool swept = false;
    CK_RV rv = kt_token_destroy_session_object(tok, h, &swept);
    if (rv != KT_CKR_RETRY) {
        if (rv == CKR_OK && swept)
            kt_session_forget_keys(tok, h);
        return rv;
    }
    rv = CKR_OK;
    /* No store sync here: deleting a row another process already deleted
     * is harmless, and session objects never touch the store. */
    pthread_rwlock_rdlock(&tok->lock);
    struct kt_object *o = kt_token_object(tok, h);
    if (o == NULL)
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (o->token && !kt_session_rw(s))
        rv = CKR_SESSION_READ_ONLY;
    else if (!kt_attrs_get_bool(&o->attrs, CKA_DESTROYABLE, true))
        rv = CKR_ACTION_PROHIBITED;
    pthread_rwlock_unlock(&tok->lock);
    if (rv == CKR_OK)
        rv = kt_token_destroy_object(tok, h);
    /* Its material leaves the sessions' cached snapshots with it. */
    if (rv == CKR_OK)
        kt_session_forget_keys(tok, h);
    return rv;
}

CK_RV kt_object_size(struct kt_session *s, CK_OBJECT_HANDLE h, CK_ULONG *size)
{
    struct kt_token *tok = s->token;
    CK_RV rv = CKR_OK;
    pthread_rwlock_rdlock(&tok->lock);
    struct kt_object *o = kt_token_object(tok, h);
    if (o == NULL) {
        rv = CKR_OBJECT_HANDLE_INVALID;
    } else {
        CK_ULONG sz = 4;
        for (size_t i = 0; i < o->attrs.n; i++)
            sz += 12 + o->attrs.v[i].ulValueLen;
        *size = sz;
    }
    pthread_rwlock_unlock(&tok->lock);
    return rv;
}

static int handle_cmp(const void *a, const void *b)
{
    CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a;
    CK_OBJECT_HANDLE y = *(const CK_OBJECT_HANDLE *)b;
    return x < y ? -1 : x > y;
}

static bool find_match(const struct kt_object *o, const kt_attrs *tmpl)
{
    bool sensitive = object_sensitive(o) || !o->unsealed;
    for (size_t i = 0; i < tmpl->n; i++) {
        /* Secret values never serve as a search oracle. */
        if (sensitive && kt_schema_secret(o->cls, tmpl->v[i].type))
            return false;
        const CK_ATTRIBUTE *have = kt_attrs_find(&o->attrs, tmpl->v[i].type);
        if (have == NULL || !kt_attr_equal(have, &tmpl->v[i]))
            return false;
    }
    return true;
}

struct find_out {
    CK_OBJECT_HANDLE *v;
    size_t n, cap;
};

static KT_NODISCARD CK_RV find_push(struct find_out *f, CK_OBJECT_HANDLE h)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        CK_OBJECT_HANDLE *v = realloc(f->v, cap * sizeof(*v));
        if (v == NULL)
            return CKR_HOST_MEMORY;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = h;
    return CKR_OK;
}

CK_RV kt_find_init(struct kt_session *s, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    struct kt_token *tok = s->token;
    kt_attrs tmpl;
    kt_attrs_init(&tmpl);
    CK_RV rv = kt_attrs_from_template(&tmpl, t, n);
    if (rv != CKR_OK)
        return rv;
    /* A search for session objects alone (CKA_TOKEN false) can find
     * nothing another process wrote: no store read (no system call). */
    bool session_only = kt_attrs_has(&tmpl, CKA_TOKEN) &&
                        !kt_attrs_get_bool(&tmpl, CKA_TOKEN, true);
    if (!session_only)
        rv = kt_token_sync(tok);
    if (rv != CKR_OK)
        goto out;
    pthread_rwlock_rdlock(&tok->lock);
    const CK_ATTRIBUTE *lbl = kt_attrs_find(&tmpl, CKA_LABEL);
    CK_ULONG lh = lbl != NULL ? kt_label_hash(lbl->pValue, lbl->ulValueLen) : 0;
    struct find_out f = {NULL, 0, 0};
    /* Token objects, then each shard of session objects under its lock. */
    for (int part = -1; rv == CKR_OK && part < KT_SHARDS; part++) {
        kt_hmap *objects = &tok->objects, *labels = &tok->labels;
        if (part >= 0) {
            objects = &tok->shards[part].objects;
            labels = &tok->shards[part].labels;
            pthread_mutex_lock(&tok->shards[part].lock);
        }
        if (lh != 0) {
            /* The label index: O(matches), not O(objects). */
            for (const struct kt_object *o = kt_hmap_get(labels, lh);
                 rv == CKR_OK && o != NULL; o = o->label_next)
                if (kt_token_visible(tok, o) && find_match(o, &tmpl))
                    rv = find_push(&f, o->handle);
        } else {
            void *v;
            for (size_t i = 0;
                 rv == CKR_OK && kt_hmap_iter(objects, &i, NULL, &v);) {
                const struct kt_object *o = v;
                if (kt_token_visible(tok, o) && find_match(o, &tmpl))
                    rv = find_push(&f, o->handle);
            }
        }
        if (part >= 0)
            pthread_mutex_unlock(&tok->shards[part].lock);
    }
    if (rv == CKR_OK && f.v == NULL) { /* no match: still an array */
        f.v = malloc(sizeof(*f.v));
        if (f.v == NULL)
            rv = CKR_HOST_MEMORY;
    }
    CK_OBJECT_HANDLE *hs = f.v;
    size_t k = f.n;
    if (rv != CKR_OK) {
        pthread_rwlock_unlock(&tok->lock);
        free(hs);
        goto out;
    }
    pthread_rwlock_unlock(&tok->lock);
    qsort(hs, k, sizeof(*hs), handle_cmp);
    free(s->find.handles);
    s->find.handles = hs;
    s->find.n = k;
    s->find.pos = 0;
    s->find.active = true;
out:
    kt_attrs_clear(&tmpl);
    return rv;
}

CK_RV kt_key_snapshot(struct kt_token *t, CK_OBJECT_HANDLE h,
                      CK_ATTRIBUTE_TYPE usage, struct kt_key *key)
{
    CK_RV rv = CKR_OK;
    memset(key, 0, sizeof(*key));
    kt_attrs_init(&key->attrs);
    pthread_rwlock_rdlock(&t->lock);
    struct kt_object *o = kt_token_object(t, h);
    if (o == NULL || (o->cls != CKO_SECRET_KEY && o->cls != CKO_PUBLIC_KEY &&
                      o->cls != CKO_PRIVATE_KEY))
        rv = CKR_KEY_HANDLE_INVALID;
    else if (usage != 0 && !kt_attrs_get_bool(&o->attrs, usage, false))
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    /* A secret key stored with both roles (made before roles were
     * separated) serves neither until one is switched off. */
    else if ((usage == CKA_WRAP || usage == CKA_UNWRAP ||
              usage == CKA_ENCRYPT || usage == CKA_DECRYPT) &&
             kt_schema_roles_combined(&o->attrs))
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    else if (kt_object_sealed(o))
        rv = CKR_USER_NOT_LOGGED_IN;
    /* Its destruction must reach sessions that keep this snapshot
     * (kt_token_destroy_session_object reads it). */
    if (rv == CKR_OK && !o->token)
        atomic_store_explicit(&o->snapshotted, true, memory_order_relaxed);
    if (rv == CKR_OK) {
        /* The hot path of wrap/unwrap: share one immutable copy of the
         * attributes instead of copying them per operation. Writers hold
         * the lock for writing, so under the read lock o->shared only goes
         * from NULL to a value. */
        struct kt_shared_attrs *sa = atomic_load(&o->shared);
        if (sa == NULL) {
            struct kt_shared_attrs *fresh = calloc(1, sizeof(*fresh));
            if (fresh == NULL) {
                rv = CKR_HOST_MEMORY;
            } else {
                atomic_init(&fresh->refs, 1); /* the object's reference */
                kt_attrs_init(&fresh->attrs);
                rv = kt_attrs_copy(&fresh->attrs, &o->attrs);
                struct kt_shared_attrs *expect = NULL;
                if (rv != CKR_OK) {
                    kt_shared_attrs_unref(fresh);
                } else if (atomic_compare_exchange_strong(&o->shared, &expect,
                                                          fresh)) {
                    sa = fresh;
                } else {
                    kt_shared_attrs_unref(fresh);
                    sa = expect;
                }
            }
        }
        if (rv == CKR_OK) {
            atomic_fetch_add(&sa->refs, 1);
            key->shared = sa;
            key->attrs = sa->attrs;
            key->token = t;
            key->keep_cache = kt_object_set_cache;
            key->handle = h;
            key->cls = o->cls;
            key->type = o->key_type;
            key->pkey = kt_ossl_pkey_ref(o->pkey);
            key->cache = kt_cache_ref(o->cache);
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (rv != CKR_OK) {
        kt_key_clear(key);
        return rv;
    }
    const CK_ATTRIBUTE *v = kt_attrs_find(&key->attrs, CKA_VALUE);
    if (v != NULL) {
        key->value = v->pValue;
        key->value_len = v->ulValueLen;
    }
    return CKR_OK;
}
