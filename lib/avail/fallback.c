/*
 * The road from a DEP to its key (DESIGN.md §2 "Reading a DEP key"):
 *
 *   cache hit -> done, no token call;
 *   customer key A or B (random) on a pool worker with a deadline; the other
 *   one hedged after hedge_ms (or at once when the first fails); first
 *   success wins and is cached;
 *   both failed -> each failure classified (ckr_class.c) and the verdict of
 *   the fallback rule (fallback_rule.c, the only place it is decided)
 *   carried out: the availability key with a fallback record, or a refusal
 *   with a denied record.
 *   A key obtained through the availability key is never cached: every
 *   such read is audited, and the customer keys are asked again next time.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "audit.h"
#include "avail.h"
#include "cache.h"
#include "call_pool.h"
#include "fallback_rule.h"
#include "kt_lib.h"

#define KT_DETAIL_MAX KT_TJOB_DETAIL

struct kt_avail {
    keytier_ctx *ctx;
    struct kt_avail_cfg *cfg;
    kt_pool *pool;   /* the context's (ctx->pool) */
    kt_cache *cache; /* NULL when cache_ttl_ms is 0 */
    kt_audit *audit;
    pthread_mutex_t lock; /* guards the alert callback */
    keytier_alert_fn alert_fn;
    void *alert_arg;
    atomic_uint_fast64_t token_reads, timeouts, fallbacks, denied, unavailable;
    /* invalidations other processes recorded in the store */
    pthread_mutex_t sync_mu;           /* one sync at a time */
    int64_t sync_seq;                  /* last row applied (sync_mu) */
    uint64_t last_prune_ms;            /* (sync_mu) */
    atomic_uint_fast64_t last_sync_ms; /* start of the last good sync */
    atomic_uint_fast64_t syncs, sync_applied, sync_failures;
};

/* Outage fallback for a workload: its override, else on for the mail
 * shape and off for the files shape (DESIGN.md §2). */
static bool kt_avail_outage_fallback(keytier_ctx *ctx, const char *workload)
{
    const struct kt_avail_cfg *c = &ctx->cfg.avail;
    const struct kt_workload_cfg *w;

    for (size_t i = 0; i < c->n_overrides; i++)
        if (!strcmp(c->overrides[i].workload, workload))
            return c->overrides[i].outage_fallback;
    w = kt_config_workload(&ctx->cfg, workload);
    return !(w && w->shape == KT_SHAPE_FILES);
}

/* ---- one root-key read on a worker ------------------------------------ */

/* What the caller gets back from a slot read. */
struct kt_slot_result {
    kt_secret *key;
    keytier_err err;
    CK_RV rv; /* the CK_RV the failure stands for (kt_ckr_from_err) */
    char detail[KT_DETAIL_MAX];
};

/* One wrapped copy unwrapped on the pool: a token job (kt_tjob) that owns
 * a copy of the DEP, as a late job outlives the caller. */
struct kt_slot_job {
    struct kt_tjob base;
    struct kt_avail *av;
    struct kt_dep_rec dep;
    int slot;
    kt_secret *key; /* the result; wiped with the job unless taken */
};

static keytier_err kt_slot_work(struct kt_tjob *tj)
{
    struct kt_slot_job *j = (struct kt_slot_job *)tj;

    /* av lives as long as the context (kt_avail_free), which the job
     * holds until its last reference goes. */
    atomic_fetch_add(&j->av->token_reads, 1);
    return kt_dep_key_unwrap_slot(tj->ctx, &j->dep, j->slot, &j->key, &tj->rv);
}

static void kt_slot_cleanup(struct kt_tjob *tj)
{
    struct kt_slot_job *j = (struct kt_slot_job *)tj;

    /* A late or losing unwrap: its key is wiped, never used. */
    kt_secret_free(j->key);
    kt_wipe(&j->dep, sizeof j->dep);
}

static const char *const kt_slot_names[] = {"unwrap A", "unwrap B",
                                            "unwrap availability"};

/* A slot job and its pool call; NULL on allocation failure. */
static struct kt_slot_job *kt_slot_job_new(struct kt_avail *av,
                                           const struct kt_dep_rec *dep,
                                           int slot, kt_call *call)
{
    struct kt_slot_job *j = kt_tjob_new(av->ctx, sizeof *j, kt_slot_work);

    if (!j)
        return NULL;
    j->base.cleanup = kt_slot_cleanup;
    j->av = av;
    j->dep = *dep;
    j->slot = slot;
    kt_tjob_call(&j->base, kt_slot_names[slot], dep->roots[slot].uri, call);
    return j;
}

/* Moves a slot job's outcome into r (when the caller took it) and drops the
 * caller's reference.  A job not taken leaves r as it was. */
static void kt_slot_take(struct kt_slot_job *j, struct kt_slot_result *r)
{
    if (j->base.taken) {
        r->err = j->base.err;
        r->rv = kt_ckr_from_err(j->base.err, j->base.rv);
        snprintf(r->detail, sizeof r->detail, "%s",
                 r->err != KEYTIER_OK ? j->base.detail : "");
        r->key = j->key;
        j->key = NULL;
    }
    kt_tjob_put(&j->base);
}

/* Hedged read with the two customer keys (no fallback).  On success *key
 * and the winning slot; otherwise res[KEYTIER_ROOT_A/B] hold both failures
 * with their CK_RV (timeouts included). */
static keytier_err kt_avail_customer_read(struct kt_avail *av,
                                          const struct kt_dep_rec *dep,
                                          kt_secret **key,
                                          struct kt_slot_result res[2])
{
    unsigned char coin = 0;
    int order[2];
    kt_call calls[2];
    struct kt_slot_job *jobs[2];
    CK_RV rv[2], hedged;
    int winner = -1;

    memset(res, 0, 2 * sizeof *res);
    if (RAND_bytes(&coin, 1) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    order[0] = coin & 1 ? KEYTIER_ROOT_B : KEYTIER_ROOT_A;
    order[1] = order[0] == KEYTIER_ROOT_A ? KEYTIER_ROOT_B : KEYTIER_ROOT_A;
    for (int i = 0; i < 2; i++) {
        /* rv stays KT_CKR_NOT_STARTED unless the call is taken */
        res[order[i]].rv = KT_CKR_NOT_STARTED;
        res[order[i]].err = KEYTIER_E_UNAVAILABLE;
    }
    jobs[0] = kt_slot_job_new(av, dep, order[0], &calls[0]);
    jobs[1] = jobs[0] ? kt_slot_job_new(av, dep, order[1], &calls[1]) : NULL;
    if (!jobs[1]) {
        if (jobs[0]) {
            calls[0].release(calls[0].ctx);
            kt_tjob_put(&jobs[0]->base);
        }
        return kt_err(KEYTIER_E_NOMEM, "DEP %s", dep->dep_id);
    }
    hedged = kt_pool_hedge(av->pool, calls, av->cfg->hedge_ms,
                           av->cfg->call_deadline_ms, &winner, rv);
    for (int i = 0; i < 2; i++)
        kt_slot_take(jobs[i], &res[order[i]]);
    if (hedged == CKR_OK) {
        *key = res[order[winner]].key;
        res[order[winner]].key = NULL;
        return KEYTIER_OK;
    }
    for (int i = 0; i < 2; i++) {
        struct kt_slot_result *r = &res[order[i]];
        /* A leg not taken (timed out, never started, refused as hung)
         * carries the pool's code instead of the token's. */
        if (r->rv == KT_CKR_NOT_STARTED || rv[i] == KT_CKR_TIMEOUT ||
            rv[i] == KT_CKR_TOKEN_HUNG) {
            r->rv = rv[i];
            char name[KT_CKR_NAME_MAX];
            snprintf(r->detail, sizeof r->detail, "%s %s: %s",
                     order[i] == KEYTIER_ROOT_A ? "customer key A"
                                                : "customer key B",
                     dep->roots[order[i]].uri, kt_ckr_name(rv[i], name));
        }
        if (rv[i] == KT_CKR_TIMEOUT)
            atomic_fetch_add(&av->timeouts, 1);
    }
    return KEYTIER_E_UNWRAP;
}

/* ---- the cache's refresh and alert ------------------------------------ */

static CK_RV kt_avail_refresh(void *arg, const char *id, const char *dep_id,
                              unsigned char *out, size_t *out_len)
{
    struct kt_avail *av = arg;
    struct kt_dep_rec *dep = malloc(sizeof *dep);
    struct kt_slot_result res[2];
    kt_secret *key = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;

    (void)id;
    if (!dep)
        return CKR_HOST_MEMORY;
    if (kt_store_dep_get(av->ctx->store, dep_id, dep) != KEYTIER_OK) {
        /* The DEP is gone from the store: nothing to serve. */
        free(dep);
        return KT_CKR_NO_MATCH;
    }
    keytier_err e = kt_avail_customer_read(av, dep, &key, res);
    if (e == KEYTIER_OK) {
        if (kt_secret_len(key) <= KT_CACHE_KEY_MAX) {
            memcpy(out, kt_secret_cdata(key), kt_secret_len(key));
            *out_len = kt_secret_len(key);
            rv = CKR_OK;
        }
        kt_secret_free(key);
    } else if (e == KEYTIER_E_UNWRAP) {
        kt_fallback_in in = {
            .kind = KT_FALLBACK_REFRESH,
            .key_a = kt_fallback_key_state(res[KEYTIER_ROOT_A].rv),
            .key_b = kt_fallback_key_state(res[KEYTIER_ROOT_B].rv),
        };
        /* The cache evicts on a "denied" code and keeps the entry (and
         * retries) on a "system" one: hand it the code of the verdict. */
        bool revoked = kt_fallback_decide(&in) == KT_FALLBACK_DENY_REVOKED;
        rv = res[KEYTIER_ROOT_A].rv;
        if (revoked && in.key_a != KT_FALLBACK_KEY_DENIED)
            rv = res[KEYTIER_ROOT_B].rv;
        /* and every other process drops it too */
        if (revoked && kt_store_inval_publish(av->ctx->store, KT_INVAL_DEP,
                                              dep_id, "revoked") != KEYTIER_OK)
            kt_log_event(av->ctx->log, KT_LOG_ERROR,
                         "revocation not published to other processes", dep_id);
    }
    kt_secret_free(res[0].key);
    kt_secret_free(res[1].key);
    free(dep);
    return rv;
}

static void kt_avail_alert(void *arg, const kt_cache_alert *a)
{
    struct kt_avail *av = arg;
    char name[KT_CKR_NAME_MAX];
    keytier_alert_fn fn;
    void *fn_arg;
    keytier_alert pub = {
        .tenant = a->org_id,
        .dep_id = a->dep_id,
        .failing_ms = a->failing_ms,
        .expires_in_ms = a->expires_in_ms,
        .last_error = kt_ckr_name(a->last_error, name),
    };

    kt_log_event(av->ctx->log, KT_LOG_WARNING,
                 "cache refresh failing, DEP key expires soon", a->dep_id);
    pthread_mutex_lock(&av->lock);
    fn = av->alert_fn;
    fn_arg = av->alert_arg;
    pthread_mutex_unlock(&av->lock);
    if (fn)
        fn(fn_arg, &pub);
}

/* ---- invalidations across processes ---------------------------------- */

/* Coarse is enough for intervals of tens of milliseconds, and cheap on the
 * hit path. */
static uint64_t kt_avail_now_ms(void)
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

/* The cache thread's call, every avail.cache_sync_ms. */
static void kt_avail_sync(void *arg)
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

/* ---- open / close ----------------------------------------------------- */

keytier_err kt_avail_open(keytier_ctx *ctx)
{
    struct kt_avail_cfg *c = &ctx->cfg.avail;
    struct kt_avail *av = calloc(1, sizeof *av);
    keytier_err e;
    char *path = NULL;

    if (!av)
        return kt_err(KEYTIER_E_NOMEM, "availability state");
    av->ctx = ctx;
    av->cfg = c;
    pthread_mutex_init(&av->lock, NULL);
    pthread_mutex_init(&av->sync_mu, NULL);
    ctx->avail = av;
    av->pool = ctx->pool;
    if (!c->audit_log) {
        size_t n = strlen(ctx->cfg.store_path) + sizeof ".audit.jsonl";
        path = malloc(n);
        if (!path) {
            e = kt_err(KEYTIER_E_NOMEM, "audit log path");
            goto fail;
        }
        snprintf(path, n, "%s.audit.jsonl", ctx->cfg.store_path);
    }
    e = kt_audit_open(c->audit_log ? c->audit_log : path, &av->audit);
    free(path);
    if (e != KEYTIER_OK)
        goto fail;
    kt_audit_anchor_attach(ctx, av->audit);
    if (c->cache_ttl_ms) {
        kt_cache_config cc = {
            .ttl_ms = c->cache_ttl_ms,
            .refresh_ahead_ms = c->cache_refresh_ahead_ms,
            .retry_ms = c->cache_retry_ms,
            .alert_after_ms = c->cache_alert_after_ms,
            .max_entries = c->cache_max_entries,
            .background = c->cache_refresh_ahead_ms > 0 || c->cache_sync_ms > 0,
            .refresh = kt_avail_refresh,
            .refresh_arg = av,
            .alert = kt_avail_alert,
            .alert_arg = av,
            .audit = av->audit,
            .sync_ms = c->cache_sync_ms,
            .sync = kt_avail_sync,
            .sync_arg = av,
        };
        /* Rows recorded before this context existed concern nothing it
         * caches. */
        e = kt_store_inval_head(ctx->store, &av->sync_seq);
        if (e != KEYTIER_OK)
            goto fail;
        av->last_sync_ms = kt_avail_now_ms();
        av->last_prune_ms = 0;
        e = kt_cache_new(&cc, &av->cache);
        if (e != KEYTIER_OK)
            goto fail;
    }
    return KEYTIER_OK;
fail:
    kt_avail_close(ctx);
    return e;
}

void kt_avail_close(keytier_ctx *ctx)
{
    struct kt_avail *av = ctx->avail;

    if (!av)
        return;
    /* The cache thread first: it makes token calls of its own (each
     * bounded by the call deadline).  Root-key reads still running on a
     * worker are late ones: they hold the context, not this state
     * (keytier_ctx_close never waits for a hung token). */
    kt_cache_free(av->cache);
    av->cache = NULL;
    kt_audit_close(av->audit);
    av->audit = NULL;
}

void kt_avail_free(keytier_ctx *ctx)
{
    struct kt_avail *av = ctx->avail;

    if (!av)
        return;
    pthread_mutex_destroy(&av->sync_mu);
    pthread_mutex_destroy(&av->lock);
    free(av);
    ctx->avail = NULL;
}

/* ---- the rule --------------------------------------------------------- */

static void kt_avail_key_errors(const struct kt_dep_rec *dep,
                                const struct kt_slot_result res[2],
                                kt_audit_key_error errs[2])
{
    errs[0] = (kt_audit_key_error){"A", dep->roots[KEYTIER_ROOT_A].uri,
                                   res[KEYTIER_ROOT_A].rv};
    errs[1] = (kt_audit_key_error){"B", dep->roots[KEYTIER_ROOT_B].uri,
                                   res[KEYTIER_ROOT_B].rv};
}

keytier_err kt_avail_dep_key_read(keytier_ctx *ctx,
                                  const struct kt_dep_rec *dep,
                                  const keytier_request *req,
                                  const struct kt_avail_fill *fill,
                                  kt_secret **out)
{
    struct kt_avail *av = ctx->avail;
    struct kt_slot_result res[2], avail_res;
    kt_audit_key_error errs[2];
    kt_audit_request areq;
    kt_call call;
    char cache_id[KT_AVAIL_CACHE_ID], req_id[40];
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len;
    kt_secret *key = NULL;
    keytier_err e;
    bool internal, any_denied;
    kt_fallback_in in;
    kt_fallback_verdict verdict;
    struct kt_slot_job *job;
    CK_RV rv;

    *out = NULL;
    if (!req || (req->kind != KEYTIER_REQUEST_USER &&
                 req->kind != KEYTIER_REQUEST_INTERNAL))
        return kt_err(KEYTIER_E_ARGS, "a request must say its kind");
    internal = req->kind == KEYTIER_REQUEST_INTERNAL;
    if (internal && (!req->operation || !req->operation[0]))
        return kt_err(KEYTIER_E_ARGS,
                      "an internal request must name its operation");
    if (!av)
        return kt_err(KEYTIER_E_INTERNAL, "availability state not open");

    /* 0. the cache: no token call at all (looked up by the caller when it
     * passes fill) */
    kt_avail_cache_id(cache_id, "dep:", dep->dep_id);
    if (!fill && kt_avail_cache_hit(ctx, cache_id, buf, sizeof buf, &len, NULL,
                                    0, NULL, NULL, true)) {
        *out = kt_secret_from(buf, len);
        kt_wipe(buf, sizeof buf);
        return *out ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, "DEP key");
    }

    /* 1-2. the customer keys, hedged */
    e = kt_avail_customer_read(av, dep, &key, res);
    if (e == KEYTIER_OK) {
        if (av->cache && fill) {
            kt_cache_tags tags = {
                .org_id = dep->tenant,
                .dep_id = dep->dep_id,
                .roots = {dep->roots[0].uri, dep->roots[1].uri,
                          dep->roots[2].uri},
                .aux = fill->aux,
                .aux_len = fill->aux_len,
                .epoch = &fill->epoch,
            };
            if (kt_cache_put(av->cache, cache_id, &tags, kt_secret_cdata(key),
                             kt_secret_len(key)) != KEYTIER_OK)
                kt_log_event(ctx->log, KT_LOG_WARNING, "DEP key not cached",
                             dep->dep_id);
        }
        *out = key;
        return KEYTIER_OK;
    }
    if (e != KEYTIER_E_UNWRAP)
        return e;

    /* 3-4. both failed: the rule (fallback_rule.c) */
    in = (kt_fallback_in){
        .kind = internal ? KT_FALLBACK_INTERNAL : KT_FALLBACK_USER,
        .op = internal && !strcmp(req->operation, "recover")
                  ? KT_FALLBACK_OP_RECOVER
                  : KT_FALLBACK_OP_READ,
        .outage_fallback = kt_avail_outage_fallback(ctx, dep->workload),
        .key_a = kt_fallback_key_state(res[KEYTIER_ROOT_A].rv),
        .key_b = kt_fallback_key_state(res[KEYTIER_ROOT_B].rv),
        .avail = KT_FALLBACK_AVAIL_UNTRIED,
    };
    any_denied = kt_fallback_revocation_seen(&in);
    verdict = kt_fallback_decide(&in);

    if (!req->request_id || !req->request_id[0]) {
        uint8_t rid[KT_UUID_BYTES];
        if (!kt_uuid_new(rid))
            return kt_err(KEYTIER_E_CRYPTO, "request id");
        kt_uuid_format(rid, req_id);
    } else {
        snprintf(req_id, sizeof req_id, "%s", req->request_id);
    }
    areq = (kt_audit_request){
        .workload = dep->workload,
        .org_id = dep->tenant,
        .dep_id = dep->dep_id,
        .policy_id = dep->policy_id,
        .request_id =
            req->request_id && req->request_id[0] ? req->request_id : req_id,
        .kind = internal ? "internal" : "user",
        .operation = internal ? req->operation : NULL,
    };
    kt_avail_key_errors(dep, res, errs);
    /* A revocation seen here empties the caches of every
     * process (whether or not this request may fall back). */
    if (any_denied)
        kt_avail_publish(ctx, KT_INVAL_DEP, dep->dep_id, "revoked");

    if (verdict != KT_FALLBACK_USE_AVAIL) {
        if (verdict == KT_FALLBACK_DENY_REVOKED) {
            atomic_fetch_add(&av->denied, 1);
            e = kt_audit_denied(av->audit, &areq, errs);
            if (e != KEYTIER_OK)
                kt_log_event(ctx->log, KT_LOG_ERROR,
                             "audit record of a denied request not written",
                             dep->dep_id);
            return kt_err(KEYTIER_E_REVOKED, "DEP %s: [A] %s; [B] %s",
                          dep->dep_id, res[KEYTIER_ROOT_A].detail,
                          res[KEYTIER_ROOT_B].detail);
        }
        atomic_fetch_add(&av->unavailable, 1);
        return kt_err(KEYTIER_E_UNAVAILABLE,
                      "DEP %s (workload %s, no outage fallback): [A] %s; "
                      "[B] %s",
                      dep->dep_id, dep->workload, res[KEYTIER_ROOT_A].detail,
                      res[KEYTIER_ROOT_B].detail);
    }

    /* the availability key, audited */
    memset(&avail_res, 0, sizeof avail_res);
    avail_res.err = KEYTIER_E_UNAVAILABLE;
    job = kt_slot_job_new(av, dep, KEYTIER_ROOT_AVAIL, &call);
    if (!job)
        return kt_err(KEYTIER_E_NOMEM, "DEP %s", dep->dep_id);
    rv = kt_pool_run(av->pool, &call, av->cfg->call_deadline_ms);
    kt_slot_take(job, &avail_res);
    if (rv != CKR_OK) {
        char name[KT_CKR_NAME_MAX];
        if (rv == KT_CKR_TIMEOUT)
            atomic_fetch_add(&av->timeouts, 1);
        in.avail = KT_FALLBACK_AVAIL_FAILED;
        verdict = kt_fallback_decide(&in);
        if (verdict == KT_FALLBACK_DENY_REVOKED) {
            atomic_fetch_add(&av->denied, 1);
            if (kt_audit_denied(av->audit, &areq, errs) != KEYTIER_OK)
                kt_log_event(ctx->log, KT_LOG_ERROR,
                             "audit record of a denied request not written",
                             dep->dep_id);
        }
        return kt_err(
            verdict == KT_FALLBACK_DENY_REVOKED ? KEYTIER_E_REVOKED
                                                : KEYTIER_E_UNAVAILABLE,
            "DEP %s: [A] %s; [B] %s; availability key: %s", dep->dep_id,
            res[KEYTIER_ROOT_A].detail, res[KEYTIER_ROOT_B].detail,
            avail_res.detail[0] ? avail_res.detail : kt_ckr_name(rv, name));
    }
    key = avail_res.key;
    /* No unaudited use of the availability key. */
    e = kt_audit_fallback(av->audit, &areq, errs);
    if (e != KEYTIER_OK) {
        kt_secret_free(key);
        return e;
    }
    atomic_fetch_add(&av->fallbacks, 1);
    if (av->cache)
        kt_cache_count_fallback(av->cache);
    kt_log_event(ctx->log, KT_LOG_WARNING, "fallback to availability key",
                 dep->dep_id);
    *out = key;
    return KEYTIER_OK;
}

/* ---- customer keys only (roll, assign/migrate) ------------------------
 * Operations that make a lasting new copy of a DEP
 * key, or of the keys under it (rolling a root, moving tier keys to another
 * DEP), must not undo a revocation: the availability key would let them
 * rewrap a key the customer has denied, and users would read again.  So
 * they read through the customer keys alone: no cache (the tokens must
 * answer now), no availability key whatever the error class. */
keytier_err kt_avail_dep_key_read_customer(keytier_ctx *ctx,
                                           const struct kt_dep_rec *dep,
                                           const keytier_request *req,
                                           kt_secret **out)
{
    struct kt_avail *av = ctx->avail;
    struct kt_slot_result res[2];
    kt_audit_key_error errs[2];
    kt_audit_request areq;
    char req_id[40];
    kt_secret *key = NULL;
    keytier_err e;
    kt_fallback_in in;

    *out = NULL;
    if (!req || req->kind != KEYTIER_REQUEST_INTERNAL || !req->operation ||
        !req->operation[0])
        return kt_err(KEYTIER_E_ARGS,
                      "a customer-keys-only read is an internal request "
                      "naming its operation");
    if (!av)
        return kt_err(KEYTIER_E_INTERNAL, "availability state not open");
    if (dep->state == KEYTIER_DEP_PURGED)
        return kt_err(KEYTIER_E_PURGED, "DEP %s of tenant %s was purged",
                      dep->dep_id, dep->tenant);

    e = kt_avail_customer_read(av, dep, &key, res);
    kt_secret_free(res[0].key);
    kt_secret_free(res[1].key);
    if (e == KEYTIER_OK) {
        *out = key;
        return KEYTIER_OK;
    }
    if (e != KEYTIER_E_UNWRAP)
        return e;

    in = (kt_fallback_in){
        .kind = KT_FALLBACK_INTERNAL,
        .op = KT_FALLBACK_OP_REWRAP,
        .key_a = kt_fallback_key_state(res[KEYTIER_ROOT_A].rv),
        .key_b = kt_fallback_key_state(res[KEYTIER_ROOT_B].rv),
        .avail = KT_FALLBACK_AVAIL_UNTRIED,
    };
    if (kt_fallback_decide(&in) != KT_FALLBACK_DENY_REVOKED) {
        atomic_fetch_add(&av->unavailable, 1);
        return kt_err(KEYTIER_E_UNAVAILABLE,
                      "DEP %s: %s needs a customer key and neither answers "
                      "(retry when one does): [A] %s; [B] %s",
                      dep->dep_id, req->operation, res[KEYTIER_ROOT_A].detail,
                      res[KEYTIER_ROOT_B].detail);
    }
    if (req->request_id && req->request_id[0]) {
        snprintf(req_id, sizeof req_id, "%s", req->request_id);
    } else {
        uint8_t rid[KT_UUID_BYTES];
        if (!kt_uuid_new(rid))
            return kt_err(KEYTIER_E_CRYPTO, "request id");
        kt_uuid_format(rid, req_id);
    }
    areq = (kt_audit_request){
        .workload = dep->workload,
        .org_id = dep->tenant,
        .dep_id = dep->dep_id,
        .policy_id = dep->policy_id,
        .request_id = req_id,
        .kind = "internal",
        .operation = req->operation,
    };
    kt_avail_key_errors(dep, res, errs);
    atomic_fetch_add(&av->denied, 1);
    kt_avail_publish(ctx, KT_INVAL_DEP, dep->dep_id, "revoked");
    if (kt_audit_denied(av->audit, &areq, errs) != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "audit record of a denied request not written",
                     dep->dep_id);
    return kt_err(KEYTIER_E_REVOKED,
                  "DEP %s: the customer revoked its keys; %s refused (it "
                  "never uses the availability key): [A] %s; [B] %s",
                  dep->dep_id, req->operation, res[KEYTIER_ROOT_A].detail,
                  res[KEYTIER_ROOT_B].detail);
}

keytier_err kt_avail_dep_created(keytier_ctx *ctx, const struct kt_dep_rec *dep)
{
    kt_audit_request areq = {
        .workload = dep->workload,
        .org_id = dep->tenant,
        .dep_id = dep->dep_id,
        .policy_id = dep->policy_id,
    };

    if (!ctx->avail)
        return KEYTIER_OK;
    return kt_audit_dep_created(ctx->avail->audit, &areq);
}

/* ---- public API (keytier.h, availability block) ----------------------- */

KEYTIER_API keytier_err keytier_avail_stats_get(keytier_ctx *ctx,
                                                keytier_avail_stats *out)
{
    struct kt_avail *av;
    kt_cache_stats cs = {0};

    kt_err_clear();
    if (!ctx || !out)
        return kt_err(KEYTIER_E_ARGS, "stats: context or output missing");
    av = ctx->avail;
    if (!av)
        return kt_err(KEYTIER_E_INTERNAL, "availability state not open");
    if (av->cache)
        kt_cache_get_stats(av->cache, &cs);
    *out = (keytier_avail_stats){
        .cache_hits = cs.hits,
        .cache_misses = cs.misses,
        .cache_refreshes = cs.refreshes,
        .cache_refresh_failures = cs.refresh_failures,
        .cache_alerts = cs.alerts,
        .cache_entries = cs.entries,
        .cache_locked_pages = cs.locked_pages,
        .fallbacks = atomic_load(&av->fallbacks),
        .denied = atomic_load(&av->denied),
        .unavailable = atomic_load(&av->unavailable),
        .token_reads = atomic_load(&av->token_reads),
        .timeouts = atomic_load(&av->timeouts),
        .cache_invalidations = cs.invalidations,
        .cache_syncs = atomic_load(&av->syncs),
        .cache_sync_rows = atomic_load(&av->sync_applied),
        .cache_sync_failures = atomic_load(&av->sync_failures),
    };
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_alert_callback_set(keytier_ctx *ctx,
                                                   keytier_alert_fn fn,
                                                   void *arg)
{
    kt_err_clear();
    if (!ctx || !ctx->avail)
        return kt_err(KEYTIER_E_ARGS, "alert callback: no context");
    pthread_mutex_lock(&ctx->avail->lock);
    ctx->avail->alert_fn = fn;
    ctx->avail->alert_arg = arg;
    pthread_mutex_unlock(&ctx->avail->lock);
    return KEYTIER_OK;
}

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
