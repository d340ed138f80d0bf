/*
 * The availability state of a context (ctx->avail, docs/DESIGN.md §2): its
 * audit log and key cache opened and closed with the context, the cache's
 * callbacks wired (refresh: read.c, sync: inval.c, alert: here), the
 * statistics and the alert callback of the public API, and the audit
 * record of a new DEP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kt_lib.h"
#include "state.h"

/* The cache's alert callback: an entry whose refresh keeps failing is
 * about to expire; logged, and handed to the application's callback. */
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

/* The cache's sync callback: the other processes' invalidations applied
 * (inval.c), then this context's counters published when due (stats.c). */
static void kt_avail_tick(void *arg)
{
    kt_avail_sync(arg);
    kt_avail_publish_due(arg);
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
    pthread_mutex_init(&av->tok_mu, NULL);
    ctx->avail = av;
    av->tok = calloc(KT_TOK_STATS_MAX, sizeof *av->tok);
    if (!av->tok) {
        e = kt_err(KEYTIER_E_NOMEM, "token counters");
        goto fail;
    }
    av->last_publish_ms = kt_avail_now_ms(); /* first write: one interval */
    av->pool = ctx->pool;
    path = kt_config_audit_log(&ctx->cfg);
    if (!path) {
        e = kt_err(KEYTIER_E_NOMEM, "audit log path");
        goto fail;
    }
    e = kt_audit_open(path, &av->audit);
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
            .sync = kt_avail_tick,
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
        if (e == KEYTIER_OK && c->cache_sync_ms)
            e = kt_avail_listen_start(av);
        if (e != KEYTIER_OK)
            goto fail;
    }
    return KEYTIER_OK;
fail:
    kt_avail_close(ctx);
    return e;
}

void kt_avail_set_gate(keytier_ctx *ctx, kt_avail_gate_fn gate)
{
    if (ctx->avail)
        ctx->avail->gate = gate;
}

void kt_avail_close(keytier_ctx *ctx)
{
    struct kt_avail *av = ctx->avail;

    if (!av)
        return;
    /* The cache thread first: it makes token calls of its own (each
     * bounded by the call deadline).  Root-key reads still running on a
     * worker are late ones: they hold the context, not this state
     * (keytier_ctx_close never waits for a hung token).  The listener
     * before it: it pokes the cache. */
    kt_avail_listen_stop(av);
    kt_cache_free(av->cache);
    av->cache = NULL;
    kt_avail_unpublish(av); /* the thread that wrote the row has stopped */
    kt_audit_close(av->audit);
    av->audit = NULL;
}

void kt_avail_free(keytier_ctx *ctx)
{
    struct kt_avail *av = ctx->avail;

    if (!av)
        return;
    pthread_mutex_destroy(&av->sync_mu);
    pthread_mutex_destroy(&av->tok_mu);
    pthread_mutex_destroy(&av->lock);
    free(av->tok);
    free(av);
    ctx->avail = NULL;
}

/* ---- public API (keytier.h, availability block) ----------------------- */

KEYTIER_API keytier_err keytier_avail_stats_get(keytier_ctx *ctx,
                                                keytier_avail_stats *out)
{
    kt_err_clear();
    if (!ctx || !out)
        return kt_err(KEYTIER_E_ARGS, "stats: context or output missing");
    if (!ctx->avail)
        return kt_err(KEYTIER_E_INTERNAL, "availability state not open");
    kt_avail_stats_fill(ctx->avail, out);
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
