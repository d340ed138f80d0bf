/* Sessions: a table of counters-as-handles, each session referenced while a
 * call uses it so C_CloseSession on another thread cannot free it. */
#include "kt.h"
#include "ossl/ossl.h"
#include "pkcs11v3.h"

#include <stdlib.h>
#include <string.h>

CK_RV kt_session_enter(CK_SESSION_HANDLE h, bool args_ok, struct kt_session **s)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && !args_ok)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_session_ref(h, s);
    return rv;
}

CK_RV kt_not_offered(const char *fn, CK_SESSION_HANDLE h)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_enter(h, true, &s);
    if (rv == CKR_OK)
        rv = CKR_FUNCTION_NOT_SUPPORTED;
    kt_session_unref(s);
    return kt_trace(fn, rv);
}

CK_RV kt_session_ref(CK_SESSION_HANDLE h, struct kt_session **out)
{
    struct kt_sess_shard *sh = &kt_g.sess[kt_handle_shard(h)];
    pthread_rwlock_rdlock(&sh->lock);
    if (!kt_g.initialized) {
        pthread_rwlock_unlock(&sh->lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    struct kt_session *s = kt_hmap_get(&sh->sessions, h);
    if (s != NULL)
        atomic_fetch_add(&s->refs, 1);
    pthread_rwlock_unlock(&sh->lock);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    /* A re-initialisation by another process reaches every call, those that
     * never read the store (C_EncryptUpdate) included (tokenlock.c). */
    if (kt_token_sync_due(s->token) &&
        kt_token_sync(s->token) == CKR_SESSION_CLOSED) {
        kt_session_unref(s);
        return CKR_SESSION_CLOSED;
    }
    *out = s;
    return CKR_OK;
}

/* The session's cached key snapshot and the contexts keyed with it (the
 * session's lock held, or the session unreachable). */
static void key_cache_drop(struct kt_session *s)
{
    struct kt_key_cache *c = &s->key_cache;
    /* Also when not valid: a fork child may find a snapshot half made. */
    kt_key_clear(&c->key);
    memset(c, 0, sizeof(*c));
    atomic_store(&s->cached_key, 0);
    for (int i = 0; i < 2; i++) {
        kt_ossl_cipher_free(s->wrap_ciphers[i]);
        s->wrap_ciphers[i] = NULL;
    }
}

CK_RV kt_session_key(struct kt_session *s, CK_OBJECT_HANDLE h,
                     CK_ATTRIBUTE_TYPE usage, const struct kt_key **out)
{
    struct kt_key_cache *c = &s->key_cache;
    /* Read before the snapshot: a change that lands after this read moves
     * the counter, and the next call takes a new snapshot. */
    unsigned long seq = atomic_load(&s->token->objects_seq);
    if (c->valid && c->handle == h && c->usage == usage && c->seq == seq) {
        *out = &c->key;
        return CKR_OK;
    }
    key_cache_drop(s);
    /* Published before the snapshot takes the token lock: a destroy or a
     * logout that follows the snapshot sees it (kt_session_forget_keys). */
    atomic_store(&s->cached_key, h);
    CK_RV rv = kt_key_snapshot(s->token, h, usage, &c->key);
    if (rv != CKR_OK) {
        atomic_store(&s->cached_key, 0);
        return rv;
    }
    c->valid = true;
    c->handle = h;
    c->usage = usage;
    c->seq = seq;
    *out = &c->key;
    return CKR_OK;
}

void kt_session_forget_keys(struct kt_token *t, CK_OBJECT_HANDLE h)
{
    /* Lock order: a session shard, then a session's lock (no call takes a
     * session shard while it holds a session's lock). */
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        struct kt_sess_shard *sh = &kt_g.sess[i];
        void *v;
        pthread_rwlock_rdlock(&sh->lock);
        for (size_t j = 0; kt_hmap_iter(&sh->sessions, &j, NULL, &v);) {
            struct kt_session *s = v;
            /* Sessions busy with other keys are not disturbed (their lock
             * is their hot path's). */
            CK_ULONG held = atomic_load(&s->cached_key);
            if (s->token != t || held == 0 || (h != 0 && held != h))
                continue;
            pthread_mutex_lock(&s->lock);
            if (s->key_cache.valid && (h == 0 || s->key_cache.handle == h))
                key_cache_drop(s);
            pthread_mutex_unlock(&s->lock);
        }
        pthread_rwlock_unlock(&sh->lock);
    }
}

void kt_session_drop_caches(struct kt_session *s)
{
    key_cache_drop(s);
    kt_ossl_cipher_free(s->check_cipher);
    s->check_cipher = NULL;
}

static void session_free(struct kt_session *s)
{
    kt_session_drop_caches(s);
    for (int i = 0; i < KT_OP_KIND_MAX; i++)
        kt_op_release(&s->ops[i]);
    kt_msg_release(s, true);
    kt_msg_release(s, false);
    free(s->find.handles);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void kt_session_unref(struct kt_session *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        session_free(s);
}

void kt_session_reset_ops(struct kt_session *s)
{
    for (int i = 0; i < KT_OP_KIND_MAX; i++)
        kt_op_release(&s->ops[i]);
    kt_msg_release(s, true);
    kt_msg_release(s, false);
    free(s->find.handles);
    memset(&s->find, 0, sizeof(s->find));
}

void kt_session_cancel(struct kt_session *s, CK_FLAGS flags)
{
    static const CK_FLAGS kind_flag[KT_OP_KIND_MAX] = {
        [KT_OP_ENCRYPT] = CKF_ENCRYPT, [KT_OP_DECRYPT] = CKF_DECRYPT,
        [KT_OP_SIGN] = CKF_SIGN,       [KT_OP_VERIFY] = CKF_VERIFY,
        [KT_OP_DIGEST] = CKF_DIGEST,
    };
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < KT_OP_KIND_MAX; i++)
        if (flags & kind_flag[i])
            kt_op_release(&s->ops[i]);
    if (flags & CKF_FIND_OBJECTS) {
        free(s->find.handles);
        memset(&s->find, 0, sizeof(s->find));
    }
    if (flags & CKF_MESSAGE_ENCRYPT)
        kt_msg_release(s, true);
    if (flags & CKF_MESSAGE_DECRYPT)
        kt_msg_release(s, false);
    pthread_mutex_unlock(&s->lock);
}

bool kt_session_rw(const struct kt_session *s)
{
    return (s->flags & CKF_RW_SESSION) != 0;
}

CK_STATE kt_session_state(const struct kt_session *s)
{
    CK_USER_TYPE login = s->token->login;
    bool rw = kt_session_rw(s);
    if (login == CKU_SO)
        return CKS_RW_SO_FUNCTIONS;
    if (login == CKU_USER)
        return rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    return rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
}

static KT_NODISCARD CK_RV session_open(CK_SLOT_ID slot, CK_FLAGS flags,
                                       CK_SESSION_HANDLE *out)
{
    CK_RV rv = CKR_OK;
    struct kt_session *s =
        aligned_alloc(_Alignof(struct kt_session), sizeof(*s));
    if (s == NULL)
        return CKR_HOST_MEMORY;
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->refs, 1);
    s->flags = flags;
    s->slot = slot;
    pthread_mutex_lock(&kt_g.lock);
    struct kt_token *t = kt_slot_token(slot);
    if (t == NULL) {
        rv = CKR_SLOT_ID_INVALID;
        goto out;
    }
    if (!t->initialized || t->busy) {
        rv = CKR_TOKEN_NOT_RECOGNIZED;
        goto out;
    }
    /* PKCS#11 v2.40 §5.6: no read-only session while the SO is logged
     * in. */
    if (!(flags & CKF_RW_SESSION) && t->login == CKU_SO) {
        rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
        goto out;
    }
    /* The first session of this process on the token holds the lock that
     * keeps other processes' C_InitToken off it (tokenlock.c). */
    if (t->session_count == 0) {
        rv = kt_tokenlock_shared(t);
        if (rv != CKR_OK)
            goto out;
    }
    s->token = t;
    /* Sessions take the shards in turn: an application's sessions (one per
     * thread, typically) then share neither a lock nor a handle counter. */
    s->handle = kt_handle_next_in(atomic_fetch_add(&kt_g.sess_next_shard, 1));
    struct kt_sess_shard *sh = &kt_g.sess[kt_handle_shard(s->handle)];
    pthread_rwlock_wrlock(&sh->lock);
    rv = kt_hmap_put(&sh->sessions, s->handle, s);
    pthread_rwlock_unlock(&sh->lock);
    if (rv != CKR_OK)
        goto out;
    t->session_count++;
    if (flags & CKF_RW_SESSION)
        t->rw_session_count++;
    *out = s->handle;
out:
    if (rv != CKR_OK && t != NULL && t->session_count == 0)
        kt_tokenlock_release(t);
    pthread_mutex_unlock(&kt_g.lock);
    if (rv == KT_CKR_RETRY) {
        /* Another process re-initialises the token: wait for it. */
        session_free(s);
        rv = kt_tokenlock_wait(t);
        return rv == CKR_OK ? KT_CKR_RETRY : rv;
    }
    if (rv != CKR_OK) {
        session_free(s);
        return rv;
    }
    /* The first session loads the token's objects; later ones notice other
     * processes' changes. */
    rv = kt_token_sync(t);
    if (rv != CKR_OK) {
        KT_IGNORE_RESULT(kt_session_close(*out));
        /* A re-initialisation by another process was found (and closed
         * this new session with the others): open on the new token. */
        return rv == CKR_SESSION_CLOSED ? KT_CKR_RETRY : rv;
    }
    return CKR_OK;
}

CK_RV kt_session_open(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE *out)
{
    CK_RV rv = KT_CKR_RETRY;
    for (int i = 0; i < 5 && rv == KT_CKR_RETRY; i++)
        rv = session_open(slot, flags, out);
    return rv == KT_CKR_RETRY ? CKR_DEVICE_ERROR : rv;
}

/* kt_g.lock held; removes the session from the table. */
static struct kt_session *session_detach(CK_SESSION_HANDLE h, bool *last)
{
    struct kt_sess_shard *sh = &kt_g.sess[kt_handle_shard(h)];
    pthread_rwlock_wrlock(&sh->lock);
    struct kt_session *s = kt_hmap_del(&sh->sessions, h);
    pthread_rwlock_unlock(&sh->lock);
    if (s == NULL)
        return NULL;
    struct kt_token *t = s->token;
    t->session_count--;
    if (s->flags & CKF_RW_SESSION)
        t->rw_session_count--;
    *last = t->session_count == 0;
    if (*last)
        kt_tokenlock_release(t);
    return s;
}

CK_RV kt_session_close(CK_SESSION_HANDLE h)
{
    bool last = false;
    pthread_mutex_lock(&kt_g.lock);
    struct kt_session *s = session_detach(h, &last);
    pthread_mutex_unlock(&kt_g.lock);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    /* A call still running on the session (it holds a reference) can no
     * longer add an object that would outlive it. */
    s->closed = true;
    kt_token_destroy_session_objects(s->token, s->handle);
    kt_session_forget_keys(s->token, 0);
    /* The application is logged out when its last session closes. */
    if (last)
        kt_logout(s->token);
    kt_session_unref(s);
    return CKR_OK;
}

CK_RV kt_session_close_all(CK_SLOT_ID slot)
{
    pthread_mutex_lock(&kt_g.lock);
    struct kt_token *t = kt_slot_token(slot);
    if (t == NULL) {
        pthread_mutex_unlock(&kt_g.lock);
        return CKR_SLOT_ID_INVALID;
    }
    CK_SESSION_HANDLE hs[64];
    size_t n;
    do {
        n = 0;
        void *v;
        CK_ULONG k;
        for (unsigned j = 0; j < KT_SHARDS && n < 64; j++) {
            struct kt_sess_shard *sh = &kt_g.sess[j];
            pthread_rwlock_rdlock(&sh->lock);
            for (size_t i = 0;
                 n < 64 && kt_hmap_iter(&sh->sessions, &i, &k, &v);)
                if (((struct kt_session *)v)->token == t)
                    hs[n++] = k;
            pthread_rwlock_unlock(&sh->lock);
        }
        pthread_mutex_unlock(&kt_g.lock);
        for (size_t i = 0; i < n; i++)
            if (kt_session_close(hs[i]) != CKR_OK)
                continue; /* closed meanwhile by another thread */
        pthread_mutex_lock(&kt_g.lock);
    } while (n == 64);
    pthread_mutex_unlock(&kt_g.lock);
    kt_token_destroy_session_objects(t, 0);
    kt_logout(t);
    return CKR_OK;
}
