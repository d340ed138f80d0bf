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
 * revoked); a "system" failure is retried after retry_ms, doubled at each
 * failure in a row up to max(retry_ms, refresh_ahead_ms / 8).  The alert's
 * clock starts when the refresh becomes due (expiry - refresh_ahead_ms),
 * not at the first failure: if no refresh succeeded alert_after_ms later
 * and the entry has not expired, an alert fires once per window: an audit
 * record (if an audit log is set) and the alert callback.  Alerts are
 * looked at before and after each refresh attempt, so one comes at most
 * one attempt late.  Entries are tagged with their tenant, DEP and root URIs so
 * that revoke, purge and DEP change empty the entries under them at once.
 *
 * Tier keys are entries too (tagged with their tenant, DEP and
 * parent, never refreshed), so a DEP, tenant or root invalidation takes
 * them with their DEP key, and a key's invalidation takes the keys below
 * it.  Each entry may carry an aux (ids the hit path needs, checked by the
 * caller under the read lock).  Every invalidation moves an epoch on, and
 * a fill that started before it is not kept.  A sync callback, run on the
 * thread every sync_ms, applies other processes' invalidations.
 */
#ifndef KT_CACHE_H
#define KT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "ckr_class.h"
#include "kt_base.h"

#define KT_CACHE_KEY_MAX 128  /* bytes of one cached key (with derived keys) */
#define KT_CACHE_AUX_MAX 1024 /* bytes of an entry's aux */
#define KT_CACHE_ROOTS   3    /* customer A, customer B, availability */

typedef struct kt_cache kt_cache;

typedef struct kt_cache_tags {
    const char *org_id;
    const char *dep_id;
    const char *roots[KT_CACHE_ROOTS]; /* URIs; NULL entries allowed */
    /* A tier key's parent key id (NULL for DEP keys): invalidating the
     * parent's id drops this entry too, and so on down. */
    const char *parent_id;
    /* Opaque bytes (not secret) kept with the entry and copied out by
     * kt_cache_lookup: what a hit needs besides the key (at most
     * KT_CACHE_AUX_MAX). */
    const void *aux;
    size_t aux_len;
    bool no_refresh; /* expires at its TTL, never refreshed */
    /* Not NULL: the entry is put only if no invalidation happened since
     * *epoch was read with kt_cache_epoch() (a fill that read the store
     * before a change must not outlive the change's invalidation). */
    const uint64_t *epoch;
} kt_cache_tags;

typedef struct kt_cache_alert {
    const char *id, *org_id, *dep_id;
    uint64_t failing_ms;    /* since the refresh became due, no success */
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
/* Called on the cache's thread every sync_ms (real time): applies
 * invalidations other processes recorded. */
typedef void (*kt_cache_sync_fn)(void *arg);

typedef struct kt_cache_config {
    uint64_t ttl_ms;
    uint64_t refresh_ahead_ms; /* <= ttl_ms / 2; 0: no refresh */
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
    uint64_t sync_ms; /* 0: no sync callback */
    kt_cache_sync_fn sync;
    void *sync_arg;
} kt_cache_config;

typedef struct kt_cache_stats {
    uint64_t hits, misses;
    uint64_t refreshes, refresh_failures;
    uint64_t fallbacks; /* counted by the fallback rule */
    uint64_t alerts, evictions, invalidations;
    uint64_t entries;
    uint64_t alerts_active; /* entries alerted, not renewed, not expired */
    uint64_t locked_pages, unlocked_pages;
} kt_cache_stats;

/* KEYTIER_E_CONFIG naming the bad value when the config is inconsistent. */
KT_NODISCARD keytier_err kt_cache_new(const kt_cache_config *config,
                                      kt_cache **out);
void kt_cache_free(kt_cache *cache); /* stops the thread, wipes everything */
/* The thread runs the sync callback at once, not at its next period (a
 * notification came: avail/inval.c). */
void kt_cache_sync_soon(kt_cache *c);

/* Inserts or replaces entry id. */
KT_NODISCARD keytier_err kt_cache_put(kt_cache *cache, const char *id,
                                      const kt_cache_tags *tags,
                                      const unsigned char *key, size_t len);

/* Copies a live entry's key into out (cap bytes) and counts a hit; counts a
 * miss and returns false when absent or expired. */
KT_NODISCARD bool kt_cache_get(kt_cache *cache, const char *id,
                               unsigned char *out, size_t cap, size_t *len);
/* Decides, under the cache's read lock, whether an entry's aux allows this
 * hit (e.g. the tenant asking is the entry's). */
typedef bool (*kt_cache_accept_fn)(const void *aux, const void *arg);
/* The same, also copying the entry's aux into aux (exactly aux_len bytes:
 * an entry whose aux has another length is not a hit), if accept (may be
 * NULL) takes it; a refused entry is neither a hit nor copied.  A miss is
 * counted only when count_miss (a caller that falls to a path which looks
 * up again counts it there). */
KT_NODISCARD bool kt_cache_lookup(kt_cache *cache, const char *id,
                                  unsigned char *out, size_t cap, size_t *len,
                                  void *aux, size_t aux_len,
                                  kt_cache_accept_fn accept,
                                  const void *accept_arg, bool count_miss);

/* Moves on at every invalidation (see kt_cache_tags.epoch). */
uint64_t kt_cache_epoch(kt_cache *cache);

/* Immediate invalidation; each returns the number of entries wiped.  A
 * root drops the entries tagged with it and every entry of their DEPs; a
 * key (_tree) drops the entry and every entry below it (parent_id). */
size_t kt_cache_invalidate_id(kt_cache *cache, const char *id);
size_t kt_cache_invalidate_tree(kt_cache *cache, const char *id);
size_t kt_cache_invalidate_dep(kt_cache *cache, const char *dep_id);
size_t kt_cache_invalidate_tenant(kt_cache *cache, const char *org_id);
size_t kt_cache_invalidate_root(kt_cache *cache, const char *root_uri);
size_t kt_cache_invalidate_all(kt_cache *cache);

/* One maintenance pass at the cache clock's now: expire, refresh, alert. */
void kt_cache_maintain(kt_cache *cache);

void kt_cache_count_fallback(kt_cache *cache);
void kt_cache_get_stats(kt_cache *cache, kt_cache_stats *stats);

#endif
