/*
 * Availability of DEP keys (docs/DESIGN.md §2 "Reading a DEP key", "Cache",
 * "Audit"): the fallback rule, hedged and time-limited root-key reads on a
 * bounded worker pool, the key cache and the audit log, per context.
 *
 * Configuration keys (in the library config file, prefix "avail."):
 *   avail.call_deadline_ms = 2000  a root-key read slower than this is a
 *                                  "system" failure (its late result is
 *                                  dropped)
 *   avail.admin_deadline_ms = 30000
 *                                  every other token call
 *                                  (DEP creation: finding and checking
 *                                  the customer roots, wrapping, generating
 *                                  the availability key; roll; purge;
 *                                  keyset keys; the CLI's token commands)
 *                                  fails with KEYTIER_E_UNAVAILABLE naming
 *                                  the key/token after this.  Longer than
 *                                  call_deadline_ms because such a step is
 *                                  several calls and may generate an RSA
 *                                  key.  Module start (C_Initialize) and
 *                                  slot scans use call_deadline_ms; so does
 *                                  keytier_ctx_close when it waits for
 *                                  calls still hung (then it returns).
 *   avail.hedge_ms = 150           ask the second customer key after this
 *                                  while the first is still pending
 *   avail.workers = 32             worker threads for token calls
 *   avail.per_token = 4            calls of one token at once (and hung)
 *   avail.cache_ttl_ms = 300000    0 disables the cache
 *   avail.cache_refresh_ahead_ms = 60000
 *   avail.cache_retry_ms = 5000
 *   avail.cache_alert_after_ms = 30000  (< cache_refresh_ahead_ms)
 *   avail.cache_max_entries = 10000
 *   avail.cache_tier_levels = 1    deepest tier-key level kept in the cache
 *                                  beside DEP keys (1: mailbox / site
 *                                  keys; 0: DEP keys only)
 *   avail.cache_sync_ms = 200      how often each context applies the
 *                                  cache invalidations other processes
 *                                  recorded in the store (purge, disable,
 *                                  roll, keys moved, revocation seen); a
 *                                  hit finding the last sync older than
 *                                  twice this applies them first.  0: no
 *                                  sync (one process per store only)
 *   avail.stats_publish_ms = 10000 how often the cache's thread writes this
 *                                  context's counters to the store's
 *                                  node_stats (keytier stats, keytier
 *                                  health); 0: not published.  Needs the
 *                                  cache and its sync (cache_ttl_ms and
 *                                  cache_sync_ms not 0); the first write
 *                                  comes one interval after the open
 *   avail.audit_log = PATH         default: the store path + ".audit.jsonl"
 *   avail.outage_fallback.WORKLOAD = yes|no
 *                                  default yes for the mail shape, no for
 *                                  the files shape (there only the internal
 *                                  operation "recover" uses the
 *                                  availability key, and any read through
 *                                  it needs a live approval)
 */
#ifndef KT_AVAIL_H
#define KT_AVAIL_H

#include <stdbool.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "fallback_rule.h"
#include "kt_base.h"

#define KT_AVAIL_MAX_OVERRIDES 16

struct kt_avail_override {
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    bool outage_fallback;
};

struct kt_avail_cfg {
    unsigned call_deadline_ms;
    unsigned admin_deadline_ms; /* every other token call of the library */
    unsigned hedge_ms;
    unsigned workers;
    unsigned per_token;
    uint64_t cache_ttl_ms;
    uint64_t cache_refresh_ahead_ms;
    uint64_t cache_retry_ms;
    uint64_t cache_alert_after_ms;
    unsigned cache_max_entries;
    unsigned cache_tier_levels;
    uint64_t cache_sync_ms;
    uint64_t stats_publish_ms; /* 0: counters not published */
    char *audit_log;
    struct kt_avail_override overrides[KT_AVAIL_MAX_OVERRIDES];
    size_t n_overrides;
};

/* The avail.* keys are rows of the library's key table (config.c): these
 * set their defaults and free what they hold. */
void kt_avail_config_defaults(struct kt_avail_cfg *cfg);
void kt_avail_config_free(struct kt_avail_cfg *cfg);

/* The least time between two refreshes of one entry (ttl - refresh_ahead)
 * and between two attempts of a failing one (cache_retry_ms). */
#define KT_CACHE_REFRESH_MIN_MS 1000u
#define KT_CACHE_RETRY_MIN_MS   100u

/* Which of the cache's refresh keys the file set. */
struct kt_avail_set {
    bool ttl, refresh_ahead, retry, alert_after;
};

/* Gives the refresh keys the file left unset their defaults from the ones
 * it set (refresh_ahead = ttl / 5, alert_after = refresh_ahead / 2, retry
 * at most refresh_ahead / 4), then checks the rules between the keys
 * (config/avail_rules.c): KEYTIER_E_CONFIG naming the keys, values and
 * rule. */
KT_NODISCARD keytier_err kt_avail_config_settle(struct kt_avail_cfg *cfg,
                                                const struct kt_avail_set *set);

struct kt_avail;
struct kt_dep_rec;

/* Starts the cache (and its refresh thread) and opens the audit log of
 * ctx (after its store, modules and pool are up). */
KT_NODISCARD keytier_err kt_avail_open(keytier_ctx *ctx);

/* The gate of a privileged operation (trust/'s kt_approval_gate), given by
 * the opener (ctx/ctx.c) once the state is open: the read path, a layer
 * below trust/, asks it before a files-shape read through the
 * availability key.  Without a gate such a read is refused. */
typedef keytier_err (*kt_avail_gate_fn)(keytier_ctx *ctx,
                                        keytier_approval_op op,
                                        const char *tenant, const char *scope,
                                        const char *approval_id,
                                        const char *what);
void kt_avail_set_gate(keytier_ctx *ctx, kt_avail_gate_fn gate);
/* Stops the cache thread and closes the audit log.  Token calls still
 * running on workers hold the context, not this state. */
void kt_avail_close(keytier_ctx *ctx);
/* Frees the state itself, once no token job is left (kt_ctx_drain). */
void kt_avail_free(keytier_ctx *ctx);

/* What a read that missed the cache puts in it with the key. */
struct kt_avail_fill {
    uint64_t epoch;  /* kt_avail_cache_epoch() before the store was read */
    const void *aux; /* what a hit needs besides the key (not secret) */
    size_t aux_len;
};

/* The read path (read.c), the one road from a DEP to its key: the cache,
 * customer keys A and B hedged on the call pool, and the verdict of the
 * fallback rule (fallback_rule.h) carried out.  op is what the caller does
 * with the key, the rule's operation:
 *   KT_FALLBACK_OP_READ     a user's or the service's read: the
 *                           request's operation decides (an internal
 *                           KEYTIER_INTERNAL_RECOVER is a recovery)
 *   KT_FALLBACK_OP_RECOVER  keytier_dep_recover's migration, whose entry
 *                           point used a recovery approval for the DEP
 *   KT_FALLBACK_OP_REWRAP   a lasting new copy of the key or of the keys
 *                           under it (roll, assign, migrate): an internal
 *                           request; never the cache, never the
 *                           availability key, so it cannot undo a
 *                           revocation
 * With fill, the caller (the public open, which also checks the tenant of
 * a hit) has looked the cache up already and a key read through the
 * customer keys is cached (as "dep:ID"); without fill this read looks the
 * cache up itself.  Either way a read looks it up once, through
 * kt_avail_cache_hit.  Errors: KEYTIER_E_REVOKED (a customer key denied
 * and the rule refuses; audited as denied), KEYTIER_E_UNAVAILABLE,
 * KEYTIER_E_PURGED, KEYTIER_E_ARGS, and on the files shape the gate's
 * (KEYTIER_E_APPROVAL_REQUIRED, KEYTIER_E_APPROVAL_EXPIRED, ...) when the
 * rule needs an approval the request does not bring. */
KT_NODISCARD keytier_err kt_dep_key_read(
    keytier_ctx *ctx, const struct kt_dep_rec *dep, const keytier_request *req,
    kt_fallback_op op, const struct kt_avail_fill *fill, kt_secret **out);

/* ---- unfinished state changes (settle.c) ---------------------------
 * A DEP left REGISTERING or ROLLING by a process that died, settled on the
 * read of its key (kt_dep_key_read calls it): a dead registration is
 * finished when its three copies prove (else KEYTIER_E_DEP_STATE, the DEP
 * serves no key), a dead roll committed when its pending copy proves and
 * rolled back otherwise; each audited.  A change younger than the steps it
 * had left (avail.admin_deadline_ms each) is another process's, still
 * running: a registration is then refused (KEYTIER_E_DEP_STATE), a roll
 * left alone.  *fresh: NULL when dep reads as it is, else the DEP as the
 * store now has it (free()); *settled (NULL: not asked) whether this call
 * settled it (false when another process did). */
KT_NODISCARD keytier_err kt_dep_settle(keytier_ctx *ctx,
                                       const struct kt_dep_rec *dep,
                                       struct kt_dep_rec **fresh,
                                       bool *settled);
/* Whether a roll that stored its pending copy at `started` (seconds) is
 * dead: older than the steps it still had to take, each bounded by
 * avail.admin_deadline_ms (a live one is another process's, still
 * running). */
bool kt_dep_roll_dead(keytier_ctx *ctx, int64_t started);
/* A new DEP's copies (as the store holds them) each unwrapped and
 * checked. */
KT_NODISCARD keytier_err kt_dep_register_prove(keytier_ctx *ctx,
                                               const struct kt_dep_rec *dep);
/* Then its audit record ("DEP created" for the creation, "DEP registration
 * finished" for a dead one settled), durable before the DEP is REGISTERED
 * (a failed update tried once more; *recorded: the record is written;
 * *done false: it was registering no more). */
KT_NODISCARD keytier_err kt_dep_register_commit(keytier_ctx *ctx,
                                                const struct kt_dep_rec *dep,
                                                bool creating, bool *recorded,
                                                bool *done);
/* The record of a creation taken back after its "DEP created" record
 * ("DEP creation undone", the DEP's fields and Reason: why), written
 * before the DEP is dropped. */
KT_NODISCARD keytier_err kt_dep_register_undone(keytier_ctx *ctx,
                                                const struct kt_dep_rec *dep,
                                                const char *why);

/* ---- the cache's fast paths ----------------------------------------
 * Cache ids: "dep:" DEP id, "key:" tier key id (KT_AVAIL_CACHE_ID bytes). */
#define KT_AVAIL_CACHE_ID (4 + KEYTIER_ID_SIZE)
void kt_avail_cache_id(char out[KT_AVAIL_CACHE_ID], const char *prefix,
                       const char *id);
/* 0 without a cache. */
uint64_t kt_avail_cache_epoch(keytier_ctx *ctx);
/* A hit: the key bytes (cap) and aux (exactly aux_len) of entry id if
 * accept(aux, arg) takes it; no store read, no token call.  When the sync
 * thread is late (last sync older than 2 x avail.cache_sync_ms) the other
 * processes' invalidations are applied first; if that fails, no hit.  A
 * miss is counted when count_miss. */
KT_NODISCARD bool
kt_avail_cache_hit(keytier_ctx *ctx, const char *id, unsigned char *key,
                   size_t cap, size_t *len, void *aux, size_t aux_len,
                   bool (*accept)(const void *aux, const void *arg),
                   const void *arg, bool count_miss);
/* Caches a tier key (never refreshed: it expires at the TTL) tagged with
 * its tenant, DEP and parent. */
void kt_avail_cache_put_key(keytier_ctx *ctx, const char *key_id,
                            const char *tenant, const char *dep_id,
                            const char *parent_id, const unsigned char *key,
                            size_t len, const struct kt_avail_fill *fill);
/* Drops cached keys in this process only (scope: enum kt_inval_scope). */
size_t kt_avail_uncache(keytier_ctx *ctx, int scope, const char *value);
/* Drops them here and records the invalidation in the store for every
 * other process (a change made outside a store transaction, e.g. a
 * revocation a read found). */
void kt_avail_publish(keytier_ctx *ctx, int scope, const char *value,
                      const char *reason);

/* audit_anchor.c: the context's hooks on a log handle: each record
 * carries the node and its global index (kt_audit_node_attach), and after
 * every append to a, the log's head is anchored in ctx's store with the
 * service token's MAC (no anchor without a service_token). */
struct kt_audit;
void kt_audit_anchor_attach(keytier_ctx *ctx, struct kt_audit *a);
/* audit_node.c: every record a writes carries ctx's node and a global index
 * taken from ctx's store (no-op without a store). */
void kt_audit_node_attach(keytier_ctx *ctx, struct kt_audit *a);

#endif
