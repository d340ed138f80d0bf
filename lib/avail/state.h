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
    /* each token's root-key reads (stats.c), published with the rest
     * every stats_publish_ms by the cache's thread */
    pthread_mutex_t tok_mu;
    struct kt_tok_stat *tok; /* KT_TOK_STATS_MAX, allocated at open */
    size_t n_tok;
    uint64_t last_publish_ms; /* (cache thread) */
    bool published;           /* a row of ours is in node_stats */
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

/* stats.c: the most tokens a context counts apart (more share the last
 * row, named "other"). */
#define KT_TOK_STATS_MAX 32
struct kt_tok_stat {
    char token[KEYTIER_OPS_TOKEN_MAX + 1];
    uint64_t calls, errors[KEYTIER_CLASS_COUNT], latency_sum_us;
    uint64_t bucket[KEYTIER_LATENCY_BUCKETS];
};
/* stats.c: a root-key read on a worker returned after ns nanoseconds with
 * rv; a caller stopped waiting for one at its deadline (or it was not
 * started: the token's calls are hung). */
void kt_avail_count_call(struct kt_avail *av, const char *uri, CK_RV rv,
                         uint64_t ns);
void kt_avail_count_timeout(struct kt_avail *av, const char *uri);
/* stats.c: this context's counters now. */
void kt_avail_stats_fill(struct kt_avail *av, keytier_avail_stats *out);
/* stats.c: on the cache's thread after each sync: writes the counters to
 * the store when stats_publish_ms have passed since the last write. */
void kt_avail_publish_due(struct kt_avail *av);
/* stats.c: the context's close: its row withdrawn. */
void kt_avail_unpublish(struct kt_avail *av);

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
