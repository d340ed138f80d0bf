/*
 * Cache of unwrapped DEP and intermediate keys (DESIGN.md §2 "Cache").
 *
 * Key bytes live in page-sized slabs locked with mlock(2) when the
 * RLIMIT_MEMLOCK allows (and excluded from core dumps); when it does not,
 * the cache works unlocked and counts it.  Bytes are wiped on eviction,
 * invalidation, replacement and at free.
 *
 * Each entry expires ttl_ms after it was filled.  From refresh_ahead_ms
 * before expiry the maintenance pass (a background thread, or
 * kt_cache_maintain() when the owner drives it) calls the refresh callback,
 * which re-unwraps with the customer keys; success replaces the bytes and
 * restarts the TTL; a "denied" failure evicts the entry at once (the key was
 * revoked); a "system" failure is retried every retry_ms, and once refreshing
 * has failed for alert_after_ms while the entry has not expired, an alert
 * fires once: an audit record (if an audit log is set) and the alert
 * callback.  Entries are tagged with their tenant, DEP and root URIs so that
 * revoke, purge and DEP change empty the entries under them at once.
 */
#ifndef KT_CACHE_H
#define KT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "ckr_class.h"
#include "kt_base.h"

#define KT_CACHE_KEY_MAX 64 /* bytes of one cached key */
#define KT_CACHE_ROOTS   3  /* customer A, customer B, availability */

typedef struct kt_cache kt_cache;

typedef struct kt_cache_tags {
    const char *org_id;
    const char *dep_id;
    const char *roots[KT_CACHE_ROOTS]; /* URIs; NULL entries allowed */
} kt_cache_tags;

typedef struct kt_cache_alert {
    const char *id, *org_id, *dep_id;
    uint64_t failing_ms;    /* how long refreshing has failed */
    uint64_t expires_in_ms; /* time left before the entry expires */
    CK_RV last_error;
} kt_cache_alert;

/* Re-unwraps entry id (customer keys only, no fallback).  On CKR_OK stores
 * the key in out (at most KT_CACHE_KEY_MAX bytes) and its length. */
typedef CK_RV (*kt_cache_refresh_fn)(void *arg, const char *id,
                                     const char *dep_id, unsigned char *out,
                                     size_t *out_len);
typedef void (*kt_cache_alert_fn)(void *arg, const kt_cache_alert *alert);
/* Milliseconds on a monotonic clock (tests inject their own). */
typedef uint64_t (*kt_cache_clock_fn)(void *arg);

typedef struct kt_cache_config {
    uint64_t ttl_ms;
    uint64_t refresh_ahead_ms; /* <= ttl_ms; 0: no refresh */
    uint64_t retry_ms;         /* > 0 when refreshing */
    uint64_t alert_after_ms;   /* < refresh_ahead_ms, so it fires in time */
    size_t max_entries;
    bool background; /* run maintenance on a thread of the cache */
    kt_cache_refresh_fn refresh;
    void *refresh_arg;
    kt_cache_alert_fn alert;
    void *alert_arg;
    kt_audit *audit; /* cache alerts are recorded here (may be NULL) */
    kt_cache_clock_fn clock;
    void *clock_arg;
} kt_cache_config;

typedef struct kt_cache_stats {
    uint64_t hits, misses;
    uint64_t refreshes, refresh_failures;
    uint64_t fallbacks; /* counted by the fallback rule */
    uint64_t alerts, evictions, invalidations;
    uint64_t entries;
    uint64_t locked_pages, unlocked_pages;
} kt_cache_stats;

/* KEYTIER_E_CONFIG naming the bad value when the config is inconsistent. */
KT_MUST_CHECK keytier_err kt_cache_new(const kt_cache_config *config,
                                       kt_cache **out);
void kt_cache_free(kt_cache *cache); /* stops the thread, wipes everything */

/* Inserts or replaces entry id. */
KT_MUST_CHECK keytier_err kt_cache_put(kt_cache *cache, const char *id,
                                       const kt_cache_tags *tags,
                                       const unsigned char *key, size_t len);

/* Copies a live entry's key into out (cap bytes) and counts a hit; counts a
 * miss and returns false when absent or expired. */
KT_MUST_CHECK bool kt_cache_get(kt_cache *cache, const char *id,
                                unsigned char *out, size_t cap, size_t *len);

/* Immediate invalidation; each returns the number of entries wiped. */
size_t kt_cache_invalidate_id(kt_cache *cache, const char *id);
size_t kt_cache_invalidate_dep(kt_cache *cache, const char *dep_id);
size_t kt_cache_invalidate_tenant(kt_cache *cache, const char *org_id);
size_t kt_cache_invalidate_root(kt_cache *cache, const char *root_uri);
size_t kt_cache_invalidate_all(kt_cache *cache);

/* One maintenance pass at the cache clock's now: expire, refresh, alert. */
void kt_cache_maintain(kt_cache *cache);

void kt_cache_count_fallback(kt_cache *cache);
void kt_cache_get_stats(kt_cache *cache, kt_cache_stats *stats);

#endif
