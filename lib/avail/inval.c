/*
 * The cache of a context as the rest of the library sees it (docs/DESIGN.md
 * §2 "Cache"): its ids, hits served only while the last sync with other
 * processes is recent enough, tier keys put in it, and invalidations, in
 * this process (uncache) and in every other one sharing the store
 * (publish, and the sync that applies what the others recorded).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kt_lib.h"
#include "state.h"

/* ---- invalidations across processes ---------------------------------- */

/* Coarse is enough for intervals of tens of milliseconds, and cheap on the
 * hit path. */
uint64_t kt_avail_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A root: the entries tagged with it (and their DEPs' tier keys), then
 * the DEPs the store says it wraps (tier keys carry their DEP, not the
 * roots, and their DEP key may have left the cache already). */
static size_t kt_avail_apply_root(keytier_ctx *ctx, kt_cache *c,
                                  const char *uri)
{
    char(*ids)[KEYTIER_ID_SIZE] = NULL;
    size_t n = kt_cache_invalidate_root(c, uri), nd = 0;

    if (kt_store_inval_root_deps(ctx->store, uri, &ids, &nd) != KEYTIER_OK) {
        /* Cannot tell which DEPs: drop everything rather than too little. */
        kt_err_clear();
        return n + kt_cache_invalidate_all(c);
    }
    for (size_t i = 0; i < nd; i++)
        n += kt_cache_invalidate_dep(c, ids[i]);
    free(ids);
    return n;
}

static size_t kt_avail_apply(keytier_ctx *ctx, kt_cache *c, int scope,
                             const char *value)
{
    switch (scope) {
    case KT_INVAL_DEP:
        return kt_cache_invalidate_dep(c, value);
    case KT_INVAL_TENANT:
        return kt_cache_invalidate_tenant(c, value);
    case KT_INVAL_ROOT:
        return kt_avail_apply_root(ctx, c, value);
    case KT_INVAL_KEY: {
        char id[KT_AVAIL_CACHE_ID];
        kt_avail_cache_id(id, "key:", value);
        return kt_cache_invalidate_tree(c, id);
    }
    default: /* KT_INVAL_ALL, and any scope a newer library adds */
        return kt_cache_invalidate_all(c);
    }
}

#define KT_SYNC_BATCH 32
/* Rows are kept at least this long, and longer than the TTL (a context
 * that has not synced for longer holds no entry filled before them). */
#define KT_SYNC_KEEP_S   3600
#define KT_SYNC_PRUNE_MS 60000

/* Applies the rows recorded since the last sync.  Under sync_mu.  On
 * failure nothing moves: the next sync (or a hit) tries again. */
static bool kt_avail_sync_locked(struct kt_avail *av)
{
    struct kt_inval_rec *rows = malloc(KT_SYNC_BATCH * sizeof *rows);
    uint64_t start = kt_avail_now_ms();
    size_t n;
    bool gap, ok = rows != NULL;

    while (ok) {
        if (kt_store_inval_read(av->ctx->store, av->sync_seq, rows,
                                KT_SYNC_BATCH, &n, &gap) != KEYTIER_OK) {
            ok = false;
            break;
        }
        if (gap) {
            /* Rows we never saw were pruned: drop everything. */
            kt_cache_invalidate_all(av->cache);
        } else {
            /* Our own rows were applied when written. */
            for (size_t i = 0; i < n; i++)
                if (!rows[i].own) {
                    kt_avail_apply(av->ctx, av->cache, rows[i].scope,
                                   rows[i].value);
                    atomic_fetch_add(&av->sync_applied, 1);
                }
        }
        if (n > 0)
            av->sync_seq = rows[n - 1].seq;
        if (n < KT_SYNC_BATCH)
            break;
    }
    free(rows);
    if (!ok) {
        atomic_fetch_add(&av->sync_failures, 1);
        return false;
    }
    atomic_fetch_add(&av->syncs, 1);
    atomic_store(&av->last_sync_ms, start);
    if (start - av->last_prune_ms >= KT_SYNC_PRUNE_MS) {
        int64_t keep = (int64_t)(av->cfg->cache_ttl_ms / 1000) * 2;
        av->last_prune_ms = start;
        if (keep < KT_SYNC_KEEP_S)
            keep = KT_SYNC_KEEP_S;
        if (kt_store_inval_prune(av->ctx->store, (int64_t)time(NULL) - keep) !=
            KEYTIER_OK)
            kt_log_event(av->ctx->log, KT_LOG_WARNING,
                         "old cache invalidations not pruned", NULL);
    }
    return true;
}

/* How long the listener waits before it looks at listen_stop again (a
 * context's close waits at most this). */
#define KT_LISTEN_WAIT_MS 250

static void *kt_avail_listen_thread(void *arg)
{
    struct kt_avail *av = arg;
    while (!atomic_load(&av->listen_stop))
        if (kt_store_listen_wait(av->listener, KT_LISTEN_WAIT_MS))
            kt_cache_sync_soon(av->cache);
    return NULL;
}

keytier_err kt_avail_listen_start(struct kt_avail *av)
{
    keytier_err e = kt_store_listen_open(av->ctx->store, &av->listener);
    if (e != KEYTIER_OK || av->listener == NULL)
        return e;
    atomic_store(&av->listen_stop, false);
    if (pthread_create(&av->listen_thread, NULL, kt_avail_listen_thread, av)) {
        kt_store_listen_close(av->listener);
        av->listener = NULL;
        return kt_err(KEYTIER_E_INTERNAL, "cannot start the listener thread");
    }
    av->listening = true;
    return KEYTIER_OK;
}

void kt_avail_listen_stop(struct kt_avail *av)
{
    if (av->listening) {
        atomic_store(&av->listen_stop, true);
        pthread_join(av->listen_thread, NULL);
        av->listening = false;
    }
    kt_store_listen_close(av->listener);
    av->listener = NULL;
}

/* The cache thread's call, every avail.cache_sync_ms. */
void kt_avail_sync(void *arg)
{
    struct kt_avail *av = arg;

    pthread_mutex_lock(&av->sync_mu);
    if (!kt_avail_sync_locked(av))
        kt_log_event(av->ctx->log, KT_LOG_WARNING,
                     "cache invalidations not read from the store",
                     keytier_last_error_detail());
    pthread_mutex_unlock(&av->sync_mu);
}

/* A hit may be served: the last sync is recent enough, or one done now
 * succeeds. */
static bool kt_avail_sync_fresh(struct kt_avail *av)
{
    uint64_t bound = 2 * av->cfg->cache_sync_ms, now;
    bool ok = true;

    if (!av->cfg->cache_sync_ms)
        return true;
    now = kt_avail_now_ms();
    if (now - atomic_load_explicit(&av->last_sync_ms, memory_order_relaxed) <=
        bound)
        return true;
    /* The thread is late (stalled, or the store is slow): this hit waits
     * for a sync of its own, so the bound holds whatever the thread does. */
    pthread_mutex_lock(&av->sync_mu);
    if (kt_avail_now_ms() - atomic_load(&av->last_sync_ms) > bound)
        ok = kt_avail_sync_locked(av);
    pthread_mutex_unlock(&av->sync_mu);
    return ok;
}

/* ---- the cache's lookups and invalidations, for the other folders ---- */

void kt_avail_cache_id(char out[KT_AVAIL_CACHE_ID], const char *prefix,
                       const char *id)
{
    size_t n = strnlen(id, KEYTIER_ID_SIZE - 1);

    memcpy(out, prefix, 4);
    memcpy(out + 4, id, n);
    out[4 + n] = '\0';
}

uint64_t kt_avail_cache_epoch(keytier_ctx *ctx)
{
    return ctx->avail && ctx->avail->cache ? kt_cache_epoch(ctx->avail->cache)
                                           : 0;
}

bool kt_avail_cache_hit(keytier_ctx *ctx, const char *id, unsigned char *key,
                        size_t cap, size_t *len, void *aux, size_t aux_len,
                        bool (*accept)(const void *aux, const void *arg),
                        const void *arg, bool count_miss)
{
    struct kt_avail *av = ctx->avail;

    if (!av || !av->cache || !kt_avail_sync_fresh(av))
        return false;
    return kt_cache_lookup(av->cache, id, key, cap, len, aux, aux_len, accept,
                           arg, count_miss);
}

void kt_avail_cache_put_key(keytier_ctx *ctx, const char *key_id,
                            const char *tenant, const char *dep_id,
                            const char *parent_id, const unsigned char *key,
                            size_t len, const struct kt_avail_fill *fill)
{
    struct kt_avail *av = ctx->avail;
    char id[KT_AVAIL_CACHE_ID], parent[KT_AVAIL_CACHE_ID];

    if (!av || !av->cache)
        return;
    kt_avail_cache_id(id, "key:", key_id);
    /* the parent as a cache id, so that its invalidation finds us (a
     * level-1 key's parent is its DEP, whose entry is "dep:") */
    kt_avail_cache_id(parent, "key:", parent_id);
    kt_cache_tags tags = {
        .org_id = tenant,
        .dep_id = dep_id,
        .parent_id = parent,
        .aux = fill->aux,
        .aux_len = fill->aux_len,
        .no_refresh = true,
        .epoch = &fill->epoch,
    };
    if (kt_cache_put(av->cache, id, &tags, key, len) != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_WARNING, "tier key not cached", key_id);
}

size_t kt_avail_uncache(keytier_ctx *ctx, int scope, const char *value)
{
    struct kt_avail *av = ctx->avail;

    if (!av || !av->cache)
        return 0;
    return kt_avail_apply(ctx, av->cache, scope, value);
}

void kt_avail_publish(keytier_ctx *ctx, int scope, const char *value,
                      const char *reason)
{
    (void)kt_avail_uncache(ctx, scope, value);
    if (kt_store_inval_publish(ctx->store, scope, value, reason) != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "cache invalidation not published to other processes",
                     value);
}

/* ---- public API (keytier.h, invalidation) ----------------------------- */

KEYTIER_API keytier_err keytier_cache_invalidate(keytier_ctx *ctx,
                                                 keytier_invalidate_scope scope,
                                                 const char *value,
                                                 size_t *count)
{
    size_t n = 0;
    int s;
    keytier_err e;

    kt_err_clear();
    if (!ctx || !ctx->avail)
        return kt_err(KEYTIER_E_ARGS, "invalidate: no context");
    if (scope != KEYTIER_INVALIDATE_ALL && (!value || !value[0]))
        return kt_err(KEYTIER_E_ARGS, "invalidate: value missing");
    switch (scope) {
    case KEYTIER_INVALIDATE_ROOT:
        s = KT_INVAL_ROOT;
        break;
    case KEYTIER_INVALIDATE_DEP:
        s = KT_INVAL_DEP;
        break;
    case KEYTIER_INVALIDATE_TENANT:
        s = KT_INVAL_TENANT;
        break;
    case KEYTIER_INVALIDATE_ALL:
        s = KT_INVAL_ALL;
        value = "";
        break;
    default:
        return kt_err(KEYTIER_E_ARGS, "invalidate: unknown scope %d",
                      (int)scope);
    }
    n = kt_avail_uncache(ctx, s, value);
    /* Every other process sharing the store drops them too. */
    e = kt_store_inval_publish(ctx->store, s, value, "invalidate");
    if (count)
        *count = n;
    return e;
}
