/*
 * The fallback rule: the one place that decides, from the request, the
 * workload and the outcome of the two customer keys, whether a DEP key read
 * goes on, falls back to the availability key (on the files shape once an
 * approval is used), or is refused (lib/avail/fallback_rule.c), and the one
 * table of internal operations behind it.  Pure: no I/O, no state; the read
 * path (lib/avail/read.c) does the token calls, the approval, the audit and
 * the cache, and only acts on the verdict.
 */
#ifndef KT_FALLBACK_RULE_H
#define KT_FALLBACK_RULE_H

#include <stdbool.h>

#include <p11-kit/pkcs11.h>

#include "keytier.h"

/* Who asks. */
typedef enum kt_fallback_kind {
    KT_FALLBACK_USER,     /* a user reads data: revocation must bite */
    KT_FALLBACK_INTERNAL, /* the service's own processing */
    KT_FALLBACK_REFRESH,  /* the cache renewing an entry in the background */
} kt_fallback_kind;

/* What the caller of the read path does with the key. */
typedef enum kt_fallback_op {
    KT_FALLBACK_OP_READ,    /* a read: the request's operation decides */
    KT_FALLBACK_OP_RECOVER, /* keytier_dep_recover's migration, whose entry
                             * point consumed a recovery approval for the
                             * DEP: falls back whatever the workload */
    KT_FALLBACK_OP_REWRAP,  /* roll, assign/migrate: a lasting new copy of
                             * the key, which must never undo a revocation */
} kt_fallback_op;

/* The workload's shape (docs/DESIGN.md §2 "Terms"). */
typedef enum kt_fallback_shape {
    KT_FALLBACK_MAIL,  /* Exchange and the multi-workload shape */
    KT_FALLBACK_FILES, /* SharePoint / OneDrive: availability-key reads only
                        * with a live approval */
} kt_fallback_shape;

/* One customer key's outcome (kt_fallback_key_state of its CK_RV). */
typedef enum kt_fallback_key {
    KT_FALLBACK_KEY_UNTRIED, /* not asked yet */
    KT_FALLBACK_KEY_OK,      /* it unwrapped the DEP key */
    KT_FALLBACK_KEY_SYSTEM,  /* outage: absent, broken, too slow */
    KT_FALLBACK_KEY_DENIED,  /* revocation: the customer took it away */
} kt_fallback_key;

/* The availability key's state when the rule is asked. */
typedef enum kt_fallback_avail {
    KT_FALLBACK_AVAIL_UNTRIED, /* not asked yet */
    KT_FALLBACK_AVAIL_FAILED,  /* asked, and it did not unwrap the key */
} kt_fallback_avail;

typedef struct kt_fallback_in {
    kt_fallback_kind kind;
    kt_fallback_op op;            /* read for user requests and refreshes */
    keytier_internal_op internal; /* an internal request's operation */
    kt_fallback_shape shape;
    bool outage_fallback; /* the workload's avail.outage_fallback */
    bool approved; /* a live approval of this files-shape read was used */
    kt_fallback_key key_a, key_b;
    kt_fallback_avail avail;
} kt_fallback_in;

typedef enum kt_fallback_verdict {
    KT_FALLBACK_SERVE,         /* a customer key unwrapped the key: use it */
    KT_FALLBACK_TRY_NEXT,      /* ask the customer key not tried yet */
    KT_FALLBACK_USE_AVAIL,     /* unwrap with the availability key, audited */
    KT_FALLBACK_NEED_APPROVAL, /* the availability key once a live approval
                                * is used (files shape): ask again with
                                * approved set, or refuse */
    KT_FALLBACK_DENY_REVOKED,  /* KEYTIER_E_REVOKED; a refresh evicts */
    KT_FALLBACK_DENY_UNAVAILABLE, /* KEYTIER_E_UNAVAILABLE; a refresh keeps
                                   * its entry and retries */
} kt_fallback_verdict;

/* The rule.  Total over its inputs: every combination has a verdict. */
kt_fallback_verdict kt_fallback_decide(const kt_fallback_in *in);

/* Whether the outcome shows a revocation (one customer key denied), which
 * every process's cache must hear of, whatever the verdict. */
bool kt_fallback_revocation_seen(const kt_fallback_in *in);

/* The state a customer key's CK_RV stands for (lib/base/ckr_class.c). */
kt_fallback_key kt_fallback_key_state(CK_RV rv);

/* "serve", "try next", "availability key", "approval", "revoked",
 * "unavailable" */
const char *kt_fallback_verdict_name(kt_fallback_verdict v);

/* Every operation of the set by name, the library's own included (a
 * migration's stored operation); false for any other text. */
bool kt_internal_op_lookup(const char *name, keytier_internal_op *out);
/* The library's own re-encryption (roll, assign, migrate). */
bool kt_internal_op_own(keytier_internal_op op);

#endif
