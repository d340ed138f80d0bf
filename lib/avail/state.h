/*
 * The availability state of a context (ctx->avail), shared by the files of
 * lib/avail/ and by no one else: state.c opens and closes it, read.c reads
 * DEP keys with it, inval.c keeps its cache in step with other processes.
 */
#ifndef KT_AVAIL_STATE_H
#define KT_AVAIL_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "audit.h"
#include "avail.h"
#include "cache.h"
#include "call_pool.h"

struct kt_avail {
    keytier_ctx *ctx;
    struct kt_avail_cfg *cfg;
    kt_pool *pool;   /* the context's (ctx->pool) */
    kt_cache *cache; /* NULL when cache_ttl_ms is 0 */
    kt_audit *audit;
    kt_avail_gate_fn gate; /* set once, before any read (kt_avail_set_gate) */
    pthread_mutex_t lock;  /* guards the alert callback */
    keytier_alert_fn alert_fn;
    void *alert_arg;
    atomic_uint_fast64_t token_reads, timeouts, fallbacks, denied, unavailable;
    /* invalidations other processes recorded in the store */
    pthread_mutex_t sync_mu;           /* one sync at a time */
    int64_t sync_seq;                  /* last row applied (sync_mu) */
    uint64_t last_prune_ms;            /* (sync_mu) */
    atomic_uint_fast64_t last_sync_ms; /* start of the last good sync */
    atomic_uint_fast64_t syncs, sync_applied, sync_failures;
    /* notifications of them (a PostgreSQL store): a thread waits on the
     * listener and has the cache sync at once (inval.c) */
    struct kt_store_listener *listener;
    pthread_t listen_thread;
    bool listening;
    atomic_bool listen_stop;
};

/* read.c: the cache's refresh callback (kt_cache_config.refresh): the DEP
 * key again through the customer keys only, the rule's verdict for a
 * refresh as the CK_RV the cache acts on. */
KT_NODISCARD CK_RV kt_avail_refresh(void *arg, const char *id,
                                    const char *dep_id, unsigned char *out,
                                    size_t *out_len);

/* inval.c: the monotonic clock of the sync bound, in milliseconds. */
uint64_t kt_avail_now_ms(void);
/* inval.c: the cache's sync callback (kt_cache_config.sync): applies the
 * invalidations other processes recorded since the last sync. */
void kt_avail_sync(void *arg);
/* inval.c: the listener thread (nothing on a SQLite store), started once
 * the cache is, stopped before it is freed. */
KT_NODISCARD keytier_err kt_avail_listen_start(struct kt_avail *av);
void kt_avail_listen_stop(struct kt_avail *av);

#endif
