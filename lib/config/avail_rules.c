/*
 * The rules between the cache's avail.* keys (docs/DESIGN.md §2 "Cache"),
 * applied once the file is read: the defaults of the refresh keys that the
 * file leaves unset follow the TTL it sets, then every combination that
 * would refresh an entry more often than the rules allow, or make the
 * "refresh failing" alert come late or never, is refused with
 * KEYTIER_E_CONFIG naming the keys, their values and the rule.
 *
 * Why these rules: a refreshed entry is due again ttl - refresh_ahead
 * later, so refresh_ahead above half the TTL costs more unwraps than no
 * refresh at all, and refresh_ahead = ttl refreshes without pause (an
 * entry refreshed the moment it is filled, again and again).  The alert
 * fires alert_after after the entry's refresh became due unless a refresh
 * succeeded; the cache thread may then be inside one refresh attempt (the
 * second customer key asked at the hedge offset, each at most one call
 * deadline), so refresh_ahead - alert_after must exceed that attempt: the
 * alert then comes at least refresh_ahead - alert_after - (min(hedge,
 * deadline) + deadline) ms before expiry.
 */
#include <inttypes.h>
#include <stdio.h>

#include "kt_lib.h"

/* Written beside a value the file did not set. */
static const char *kt_rule_mark(bool set, const char *derived)
{
    return set ? "" : derived;
}

static keytier_err kt_rule_storm(const struct kt_avail_cfg *a,
                                 const struct kt_avail_set *set)
{
    if (a->cache_refresh_ahead_ms * 2 > a->cache_ttl_ms)
        return kt_err(KEYTIER_E_CONFIG,
                      "avail.cache_refresh_ahead_ms (%" PRIu64
                      "%s) must be at most half of avail.cache_ttl_ms "
                      "(%" PRIu64 "%s): an entry is refreshed again "
                      "ttl - refresh_ahead after its last refresh, so a "
                      "larger value re-unwraps with the customer keys "
                      "more often than a cache without refresh (and "
                      "refresh_ahead = ttl without pause); set it to at "
                      "most %" PRIu64 ", or to 0 for no refresh",
                      a->cache_refresh_ahead_ms,
                      kt_rule_mark(set->refresh_ahead, ", ttl/5 by default"),
                      a->cache_ttl_ms, kt_rule_mark(set->ttl, ", default"),
                      a->cache_ttl_ms / 2);
    if (a->cache_ttl_ms - a->cache_refresh_ahead_ms < KT_CACHE_REFRESH_MIN_MS)
        return kt_err(KEYTIER_E_CONFIG,
                      "avail.cache_ttl_ms (%" PRIu64
                      ") minus avail.cache_refresh_ahead_ms (%" PRIu64
                      "%s) must be at least %u ms: no entry is refreshed "
                      "more than once per that interval; raise the TTL or "
                      "set refresh_ahead to 0",
                      a->cache_ttl_ms, a->cache_refresh_ahead_ms,
                      kt_rule_mark(set->refresh_ahead, ", ttl/5 by default"),
                      KT_CACHE_REFRESH_MIN_MS);
    return KEYTIER_OK;
}

/* The longest one refresh attempt holds the cache thread: the first
 * customer key's deadline after the second one was asked (at the hedge
 * offset, or when the first failed). */
static uint64_t kt_rule_attempt_ms(const struct kt_avail_cfg *a)
{
    unsigned hedge =
        a->hedge_ms < a->call_deadline_ms ? a->hedge_ms : a->call_deadline_ms;
    return (uint64_t)hedge + a->call_deadline_ms;
}

static keytier_err kt_rule_alert(const struct kt_avail_cfg *a,
                                 const struct kt_avail_set *set)
{
    if (a->cache_alert_after_ms >= a->cache_refresh_ahead_ms)
        return kt_err(
            KEYTIER_E_CONFIG,
            "avail.cache_alert_after_ms (%" PRIu64
            "%s) must be less than avail.cache_refresh_ahead_ms "
            "(%" PRIu64 "%s): the alert's clock starts when the "
            "entry's refresh becomes due, and it must fire "
            "before the entry expires",
            a->cache_alert_after_ms,
            kt_rule_mark(set->alert_after, ", refresh_ahead/2 by default"),
            a->cache_refresh_ahead_ms,
            kt_rule_mark(set->refresh_ahead, ", ttl/5 by default"));
    if (a->cache_refresh_ahead_ms - a->cache_alert_after_ms <=
        kt_rule_attempt_ms(a))
        return kt_err(
            KEYTIER_E_CONFIG,
            "avail.cache_refresh_ahead_ms (%" PRIu64
            "%s) minus avail.cache_alert_after_ms (%" PRIu64
            "%s) must exceed one refresh attempt, "
            "min(avail.hedge_ms, avail.call_deadline_ms) + "
            "avail.call_deadline_ms (%" PRIu64 " ms): an alert "
            "that falls due while the cache thread waits for an "
            "attempt fires when the attempt ends, and must still "
            "come before the entry expires; lower alert_after, "
            "raise refresh_ahead (and the TTL) or lower the "
            "deadline",
            a->cache_refresh_ahead_ms,
            kt_rule_mark(set->refresh_ahead, ", ttl/5 by default"),
            a->cache_alert_after_ms,
            kt_rule_mark(set->alert_after, ", refresh_ahead/2 by default"),
            kt_rule_attempt_ms(a));
    return KEYTIER_OK;
}

keytier_err kt_avail_config_settle(struct kt_avail_cfg *a,
                                   const struct kt_avail_set *set)
{
    /* Unset refresh keys follow the TTL (the table's defaults are these
     * for the default TTL: 300000 / 5 = 60000, / 2 = 30000). */
    if (set->ttl && !set->refresh_ahead)
        a->cache_refresh_ahead_ms = a->cache_ttl_ms / 5;
    if (!set->alert_after)
        a->cache_alert_after_ms = a->cache_refresh_ahead_ms / 2;
    if (!set->retry && a->cache_refresh_ahead_ms != 0 &&
        a->cache_refresh_ahead_ms / 4 < a->cache_retry_ms)
        a->cache_retry_ms =
            a->cache_refresh_ahead_ms / 4 < KT_CACHE_RETRY_MIN_MS
                ? KT_CACHE_RETRY_MIN_MS
                : a->cache_refresh_ahead_ms / 4;
    if (a->cache_ttl_ms == 0 || a->cache_refresh_ahead_ms == 0)
        return KEYTIER_OK; /* no cache, or no refresh: nothing to storm */
    keytier_err e = kt_rule_storm(a, set);
    return e != KEYTIER_OK ? e : kt_rule_alert(a, set);
}
