/*
 * The fallback rule lives here and nowhere else.  lib/avail/read.c reads
 * the customer keys (hedged, with deadlines), turns each outcome into a state
 * through the CK_RV class table (lib/base/ckr_class.c), asks kt_fallback_decide
 * what to do, and carries the verdict out (approval, availability key, audit
 * record, cache eviction).  No I/O and no state here, so that the rule can be
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
 *     internal, keytier_dep_recover's migration  -> availability key
 *     internal, the request's operation          -> kt_internal_ops below, per
 *                                                   workload shape
 *   the files shape: the availability key only once a live approval of
 *   the read is used (keytier_dep_recover's migration used one at its
 *   entry point)                                 -> approval first
 *   refused, or the availability key failed too  -> revoked if one customer
 *                                                   key is denied, else
 *                                                   unavailable
 */
#include <string.h>

#include "fallback_rule.h"
#include "ckr_class.h"
#include "kt_base.h"

/* When an internal operation may read through the availability key. */
enum kt_internal_use {
    KT_USE_NEVER,  /* not even on an outage */
    KT_USE_OUTAGE, /* when the workload falls back on outages, then
                    * whatever the customer keys' error class */
    KT_USE_ALWAYS, /* whatever the workload and the error class */
};

/* The internal operations (keytier.h keytier_internal_op): the one table
 * of their names and of what each may do on each workload shape.  The
 * seeds' service operations fall back on the mail shape, revocation
 * included, until the availability key is gone; on the files shape
 * (SharePoint, OneDrive) only a recovery does. */
static const struct kt_internal_row {
    const char *name;
    bool own; /* the library's own re-encryption, never a caller's */
    enum kt_internal_use use[2]; /* [kt_fallback_shape] */
} kt_internal_ops[] = {
    [KEYTIER_INTERNAL_MOVE] = {"move", false, {KT_USE_OUTAGE, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_INDEX] = {"index", false, {KT_USE_OUTAGE, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_MALWARE_SCAN] = {"malware-scan",
                                       false,
                                       {KT_USE_OUTAGE, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_EDISCOVERY] = {"ediscovery",
                                     false,
                                     {KT_USE_OUTAGE, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_DLP] = {"dlp", false, {KT_USE_OUTAGE, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_RECOVER] = {"recover",
                                  false,
                                  {KT_USE_ALWAYS, KT_USE_ALWAYS}},
    /* a lasting new copy of a key must never undo a revocation */
    [KEYTIER_INTERNAL_ROLL] = {"roll", true, {KT_USE_NEVER, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_ASSIGN] = {"assign", true, {KT_USE_NEVER, KT_USE_NEVER}},
    [KEYTIER_INTERNAL_MIGRATE] = {"migrate",
                                  true,
                                  {KT_USE_NEVER, KT_USE_NEVER}},
};
#define KT_N_INTERNAL (sizeof kt_internal_ops / sizeof kt_internal_ops[0])

static const struct kt_internal_row *kt_internal_row(keytier_internal_op op)
{
    if ((unsigned)op >= KT_N_INTERNAL || kt_internal_ops[op].name == NULL)
        return NULL;
    return &kt_internal_ops[op];
}

KEYTIER_API const char *keytier_internal_op_name(keytier_internal_op op)
{
    const struct kt_internal_row *r = kt_internal_row(op);
    return r != NULL ? r->name : NULL;
}

bool kt_internal_op_lookup(const char *name, keytier_internal_op *out)
{
    for (size_t i = 0; name != NULL && i < KT_N_INTERNAL; i++)
        if (kt_internal_ops[i].name != NULL &&
            strcmp(kt_internal_ops[i].name, name) == 0) {
            *out = (keytier_internal_op)i;
            return true;
        }
    return false;
}

bool kt_internal_op_own(keytier_internal_op op)
{
    const struct kt_internal_row *r = kt_internal_row(op);
    return r != NULL && r->own;
}

KEYTIER_API keytier_err keytier_internal_op_parse(const char *name,
                                                  keytier_internal_op *out)
{
    char valid[128] = "";
    keytier_internal_op op;

    kt_err_clear();
    if (out != NULL && kt_internal_op_lookup(name, &op) &&
        !kt_internal_op_own(op)) {
        *out = op;
        return KEYTIER_OK;
    }
    for (size_t i = 0; i < KT_N_INTERNAL; i++)
        if (kt_internal_ops[i].name != NULL && !kt_internal_ops[i].own) {
            if (valid[0] != '\0')
                strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
            strncat(valid, kt_internal_ops[i].name,
                    sizeof valid - strlen(valid) - 1);
        }
    return kt_err(KEYTIER_E_ARGS, "internal operation '%.64s': one of %s",
                  name != NULL ? name : "", valid);
}

bool kt_fallback_revocation_seen(const kt_fallback_in *in)
{
    return in->key_a == KT_FALLBACK_KEY_DENIED ||
           in->key_b == KT_FALLBACK_KEY_DENIED;
}

/* An internal request's own operation, on its workload's shape. */
static bool kt_internal_allowed(const kt_fallback_in *in)
{
    const struct kt_internal_row *r = kt_internal_row(in->internal);

    if (r == NULL || (unsigned)in->shape > KT_FALLBACK_FILES)
        return false;
    switch (r->use[in->shape]) {
    case KT_USE_ALWAYS:
        return true;
    case KT_USE_OUTAGE:
        return in->outage_fallback;
    case KT_USE_NEVER:
        break;
    }
    return false;
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
            return kt_internal_allowed(in);
        }
        return false;
    case KT_FALLBACK_REFRESH:
        break;
    }
    /* A refresh never uses the availability key: such a key is never
     * cached, every read of it is audited. */
    return false;
}

/* The files shape reads through the availability key only under a live
 * approval (Lockbox): this read's own, or, for keytier_dep_recover's
 * migration, the recovery approval its entry point used. */
static bool kt_fallback_needs_approval(const kt_fallback_in *in)
{
    return in->shape != KT_FALLBACK_MAIL && !in->approved &&
           !(in->kind == KT_FALLBACK_INTERNAL &&
             in->op == KT_FALLBACK_OP_RECOVER);
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
        return kt_fallback_needs_approval(in) ? KT_FALLBACK_NEED_APPROVAL
                                              : KT_FALLBACK_USE_AVAIL;
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
    case KT_FALLBACK_NEED_APPROVAL:
        return "approval";
    case KT_FALLBACK_DENY_REVOKED:
        return "revoked";
    case KT_FALLBACK_DENY_UNAVAILABLE:
        break;
    }
    return "unavailable";
}
