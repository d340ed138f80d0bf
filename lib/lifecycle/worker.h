/*
 * worker.h - what lifecycle/worker.c (keytier_worker_pass) uses of
 * lifecycle/migrate.c: a migration run in batches claimed under a lease.
 */
#ifndef KT_WORKER_H
#define KT_WORKER_H

#include <stdio.h>
#include <time.h>

#include "kt_lib.h"

/* The worker's settings for one pass (keytier_worker_opts, defaults
 * filled in). */
struct kt_worker {
    const keytier_worker_opts *opts;
    size_t batch;
    uint32_t lease_ms;
    keytier_worker_report *report;
    char first[512]; /* the first failed step and its detail */
};

/* Milliseconds since the epoch (CLOCK_REALTIME): the time leases are
 * written in, shared by the workers of every node.  (Inline, as
 * kt_worker_emit: migrate.c and worker.c both use them, and files do not
 * call each other in a circle.) */
static inline int64_t kt_worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends ev to the worker's callback; counts a failure and keeps the
 * first one's text. */
static inline void kt_worker_emit(struct kt_worker *w, keytier_worker_event *ev)
{
    if (ev->tenant == NULL)
        ev->tenant = "";
    if (ev->id == NULL)
        ev->id = "";
    if (ev->detail == NULL)
        ev->detail = "";
    if (ev->err != KEYTIER_OK && ev->err != KEYTIER_E_LEASE_LOST &&
        w->report->failed++ == 0)
        snprintf(w->first, sizeof w->first, "%s %s: %s", ev->what, ev->id,
                 ev->detail);
    if (w->opts->each != NULL)
        w->opts->each(w->opts->arg, ev);
}
/* Runs migration_id in claimed batches until none of its items is left to
 * claim (or w's stop asks), finishing it when none is left to do. */
KT_NODISCARD keytier_err kt_mig_work(keytier_ctx *ctx, const char *migration_id,
                                     struct kt_worker *w);

#endif
