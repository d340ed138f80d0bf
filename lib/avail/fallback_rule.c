/*
 * The fallback rule lives here and nowhere else.  lib/avail/read.c reads
 * the customer keys (hedged, with deadlines), turns each outcome into a state
 * through the CK_RV class table (lib/base/ckr_class.c), asks kt_fallback_decide
 * what to do, and carries the verdict out (availability key, audit record,
 * cache eviction).  No I/O and no state here, so that the rule can be
 * tested on every combination of its inputs
 * (tests/lib/avail/test_fallback_rule.c).
 *
 *   a customer key unwrapped                     -> serve
 *   a customer key not asked yet                 -> try next
 *   both failed:
 *     refresh                                    -> revoked if one is denied
 *                                                   (evict), else unavailable
 *     user                                       -> availability key only when
 *                                                   NEITHER is denied and the
 *                                                   workload falls back on
 *                                                   outages
 *     internal, rewrap (roll, assign, migrate)   -> never the availability key
 *     internal, recover                          -> availability key
 *     internal, other                            -> availability key when the
 *                                                   workload falls back
 *   refused, or the availability key failed too  -> revoked if one customer
 *                                                   key is denied, else
 *                                                   unavailable
 */
#include "fallback_rule.h"
#include "ckr_class.h"

bool kt_fallback_revocation_seen(const kt_fallback_in *in)
{
    return in->key_a == KT_FALLBACK_KEY_DENIED ||
           in->key_b == KT_FALLBACK_KEY_DENIED;
}

static bool kt_fallback_allowed(const kt_fallback_in *in, bool denied)
{
    switch (in->kind) {
    case KT_FALLBACK_USER:
        /* One revoked key is enough to refuse a user: an outage of the
         * other must not turn a revocation into a fallback. */
        return !denied && in->outage_fallback;
    case KT_FALLBACK_INTERNAL:
        switch (in->op) {
        case KT_FALLBACK_OP_REWRAP:
            return false;
        case KT_FALLBACK_OP_RECOVER:
            return true;
        case KT_FALLBACK_OP_READ:
            return in->outage_fallback;
        }
        return false;
    case KT_FALLBACK_REFRESH:
        break;
    }
    /* A refresh never uses the availability key: such a key is never
     * cached, every read of it is audited. */
    return false;
}

kt_fallback_verdict kt_fallback_decide(const kt_fallback_in *in)
{
    bool denied;

    if (in->key_a == KT_FALLBACK_KEY_OK || in->key_b == KT_FALLBACK_KEY_OK)
        return KT_FALLBACK_SERVE;
    if (in->key_a == KT_FALLBACK_KEY_UNTRIED ||
        in->key_b == KT_FALLBACK_KEY_UNTRIED)
        return KT_FALLBACK_TRY_NEXT;
    denied = kt_fallback_revocation_seen(in);
    if (in->avail == KT_FALLBACK_AVAIL_UNTRIED &&
        kt_fallback_allowed(in, denied))
        return KT_FALLBACK_USE_AVAIL;
    return denied ? KT_FALLBACK_DENY_REVOKED : KT_FALLBACK_DENY_UNAVAILABLE;
}

kt_fallback_key kt_fallback_key_state(CK_RV rv)
{
    switch (kt_ckr_classify(rv)) {
    case KT_CKR_CLASS_OK:
        return KT_FALLBACK_KEY_OK;
    case KT_CKR_CLASS_DENIED:
        return KT_FALLBACK_KEY_DENIED;
    case KT_CKR_CLASS_SYSTEM:
        break;
    }
    return KT_FALLBACK_KEY_SYSTEM;
}

const char *kt_fallback_verdict_name(kt_fallback_verdict v)
{
    switch (v) {
    case KT_FALLBACK_SERVE:
        return "serve";
    case KT_FALLBACK_TRY_NEXT:
        return "try next";
    case KT_FALLBACK_USE_AVAIL:
        return "availability key";
    case KT_FALLBACK_DENY_REVOKED:
        return "revoked";
    case KT_FALLBACK_DENY_UNAVAILABLE:
        break;
    }
    return "unavailable";
}
