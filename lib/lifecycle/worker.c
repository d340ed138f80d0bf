/*
 * Workers (keytier worker, docs/DESIGN.md "Workers"): one pass over the
 * lifecycle work of every tenant that a store holds.  Several workers, on
 * one node or several, may run passes at once on one store:
 *
 *   - DEPs left rolling or registering: kt_dep_settle settles the ones
 *     whose process is dead (a live change is left alone; the store's
 *     transitions are conditional, so two settlers end it once, and a
 *     dead roll is claimed first, so one settler records it);
 *   - keysets due: keytier_keyset_rollover_due (the store refuses a second
 *     new version of the same current key: each rollover happens once);
 *   - migrations: batches of items claimed under a lease
 *     (lifecycle/migrate.c, kt_mig_work; store/store_claim.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "kt_lib.h"
#include "worker.h"

#define KT_WORKER_UNSETTLED 256 /* DEPs looked at per pass */

KEYTIER_API keytier_err keytier_worker_id(char *out, size_t cap)
{
    kt_err_clear();
    char host[65] = "";
    uint8_t r[4];
    if (out == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_worker_id");
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        kt_strlcpy(host, "localhost", sizeof host);
    if (RAND_bytes(r, sizeof r) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    int n = snprintf(out, cap, "%s:%ld:%02x%02x%02x%02x", host, (long)getpid(),
                     r[0], r[1], r[2], r[3]);
    if (n < 0 || (size_t)n >= cap)
        return kt_err(KEYTIER_E_BUFFER, "a worker id needs %d bytes", n + 1);
    return KEYTIER_OK;
}

KEYTIER_API void keytier_worker_defaults(keytier_ctx *ctx, size_t *batch,
                                         uint32_t *lease_ms, uint32_t *poll_ms)
{
    if (batch != NULL)
        *batch = ctx ? ctx->cfg.worker.batch : 256;
    if (lease_ms != NULL)
        *lease_ms = ctx ? ctx->cfg.worker.lease_ms : 30000;
    if (poll_ms != NULL)
        *poll_ms = ctx ? ctx->cfg.worker.poll_ms : 5000;
}

/* Settles DEP dep_id if a dead process left it rolling or registering. */
static keytier_err kt_worker_settle_one(keytier_ctx *ctx, struct kt_worker *w,
                                        const char *dep_id)
{
    struct kt_dep_rec *d = malloc(sizeof *d), *fresh = NULL;
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    bool settled = false; /* by this worker, not another process */
    keytier_err e = kt_store_dep_get(ctx->store, dep_id, d);
    if (e == KEYTIER_OK && (d->state == KEYTIER_DEP_ROLLING ||
                            d->state == KEYTIER_DEP_REGISTERING))
        e = kt_dep_settle(ctx, d, &fresh, &settled);
    if (e == KEYTIER_OK && settled) {
        w->report->deps_settled++;
        keytier_worker_event ev = {
            .what = "DEP settled", .tenant = d->tenant, .id = dep_id};
        kt_worker_emit(w, &ev);
    } else if (e != KEYTIER_OK) {
        keytier_worker_event ev = {.what = "DEP settle failed",
                                   .tenant = d->tenant,
                                   .id = dep_id,
                                   .err = e,
                                   .detail = keytier_last_error_detail()};
        kt_worker_emit(w, &ev);
    }
    if (fresh != NULL)
        kt_wipe(fresh, sizeof *fresh);
    free(fresh);
    kt_wipe(d, sizeof *d);
    free(d);
    return e;
}

/* Every DEP left rolling or registering; the first failure. */
static keytier_err kt_worker_settle(keytier_ctx *ctx, struct kt_worker *w)
{
    char(*ids)[KEYTIER_ID_SIZE] = calloc(KT_WORKER_UNSETTLED, sizeof *ids);
    size_t n = 0;
    if (ids == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err first =
        kt_store_dep_unsettled(ctx->store, ids, KT_WORKER_UNSETTLED, &n);
    for (size_t i = 0; i < n; i++) {
        keytier_err e = kt_worker_settle_one(ctx, w, ids[i]);
        if (first == KEYTIER_OK)
            first = e;
    }
    free(ids);
    return first;
}

/* Keysets due for rollover or retirement. */
static keytier_err kt_worker_keysets(keytier_ctx *ctx, struct kt_worker *w)
{
    keytier_keyset_due_report rep;
    memset(&rep, 0, sizeof rep);
    keytier_err e = keytier_keyset_rollover_due(ctx, 0, &rep, NULL, NULL);
    w->report->keysets_rolled += rep.rolled;
    w->report->versions_retired += rep.retired;
    if (e != KEYTIER_OK || rep.rolled > 0 || rep.retired > 0) {
        keytier_worker_event ev = {
            .what = "keysets",
            .rolled = rep.rolled,
            .retired = rep.retired,
            .err = e,
            .detail = e != KEYTIER_OK ? keytier_last_error_detail() : ""};
        kt_worker_emit(w, &ev);
    }
    return e;
}

/* Every unfinished migration; a failed one is reported and the others
 * run. */
static keytier_err kt_worker_migrations(keytier_ctx *ctx, struct kt_worker *w)
{
    struct kt_mig_rec *list = NULL;
    size_t n = 0;
    keytier_err first = kt_store_mig_runnable(ctx->store, &list, &n);
    for (size_t i = 0; i < n && !w->report->stopped; i++) {
        keytier_err e = kt_mig_work(ctx, list[i].migration_id, w);
        if (e == KEYTIER_OK)
            continue;
        keytier_worker_event ev = {.what = "migration failed",
                                   .tenant = list[i].tenant,
                                   .id = list[i].migration_id,
                                   .err = e,
                                   .detail = keytier_last_error_detail()};
        kt_worker_emit(w, &ev);
        if (first == KEYTIER_OK)
            first = e;
    }
    free(list);
    return first;
}

KEYTIER_API keytier_err keytier_worker_pass(keytier_ctx *ctx,
                                            const keytier_worker_opts *opts,
                                            keytier_worker_report *report)
{
    kt_err_clear();
    if (ctx == NULL || opts == NULL ||
        !kt_text_ok(opts->worker_id, KEYTIER_WORKER_ID_MAX))
        return kt_err(KEYTIER_E_ARGS,
                      "keytier_worker_pass: a worker id of 1 to %d characters "
                      "(keytier_worker_id)",
                      KEYTIER_WORKER_ID_MAX);
    keytier_worker_report rep;
    memset(&rep, 0, sizeof rep);
    struct kt_worker w = {
        .opts = opts,
        .batch = opts->batch ? opts->batch : ctx->cfg.worker.batch,
        .lease_ms = opts->lease_ms ? opts->lease_ms : ctx->cfg.worker.lease_ms,
        .report = &rep};
    keytier_err first = kt_worker_settle(ctx, &w);
    keytier_err e = kt_worker_keysets(ctx, &w);
    if (first == KEYTIER_OK)
        first = e;
    e = kt_worker_migrations(ctx, &w);
    if (first == KEYTIER_OK)
        first = e;
    if (report != NULL)
        *report = rep;
    if (first != KEYTIER_OK)
        return kt_err(first, "%zu step(s) failed; the first: %s",
                      rep.failed ? rep.failed : 1,
                      w.first[0] ? w.first : keytier_last_error_detail());
    return KEYTIER_OK;
}
