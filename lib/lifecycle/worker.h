/*
 * worker.h - what lifecycle/worker.c (keytier_worker_pass) uses of
 * lifecycle/migrate.c: a migration run in batches claimed under a lease.
 */
#ifndef KT_WORKER_H
#define KT_WORKER_H

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
 * written in, shared by the workers of every node. */
int64_t kt_worker_now_ms(void);
/* Sends ev to the worker's callback and counts a failure. */
void kt_worker_emit(struct kt_worker *w, keytier_worker_event *ev);
/* Runs migration_id in claimed batches until none of its items is left to
 * claim (or w's stop asks), finishing it when none is left to do. */
KT_NODISCARD keytier_err kt_mig_work(keytier_ctx *ctx, const char *migration_id,
                                     struct kt_worker *w);

#endif
