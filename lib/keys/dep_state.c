/*
 * DEP states as they are (docs/DESIGN.md §2 "Lifecycle", state): a new
 * DEP is stored REGISTERING and becomes REGISTERED only once each stored
 * copy was unwrapped and checked (lib/avail/settle.c finishes one a dead
 * process left); the health of a DEP's roots, probed now; and a purged
 * tenant's keys that are gone named as purged, not as never made.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "ckr_class.h"
#include "p11call.h"

/* ---- registration ------------------------------------------------------ */

/* A registration that failed after its "DEP created" record: the DEP
 * goes, and the log says so.  The undo record ("DEP creation undone", with
 * why) is written first, so that the log's last word on the DEP is true
 * whatever stops the drop (a kill, the store): a DEP left behind stays
 * registering and the next read of its key finishes it ("DEP registration
 * finished"); so does one whose undo record cannot be written.  *kept: the
 * DEP is still in the store (its availability key must stay). */
static void kt_dep_store_undo(keytier_ctx *ctx, const struct kt_dep_rec *dep,
                              const char *why, bool *kept)
{
    *kept = true;
    if (kt_dep_register_undone(ctx, dep, why) != KEYTIER_OK) {
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "DEP creation not undone (its record was not written): "
                     "left registering for the next read to finish",
                     dep->dep_id);
        return;
    }
    if (kt_store_dep_unregister(ctx->store, dep->dep_id) != KEYTIER_OK) {
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "DEP creation recorded as undone but not dropped: left "
                     "registering for the next read to finish",
                     dep->dep_id);
        return;
    }
    *kept = false;
}

/* The stored DEP's copies proven, its record written, its state set;
 * *recorded: its "DEP created" record is written. */
static keytier_err kt_dep_store_register(keytier_ctx *ctx,
                                         const struct kt_dep_rec *dep,
                                         bool *recorded)
{
    bool done = false;
    struct kt_dep_rec *stored = malloc(sizeof *stored);
    *recorded = false;
    keytier_err e = stored == NULL
                        ? kt_err(KEYTIER_E_NOMEM, NULL)
                        : kt_store_dep_get(ctx->store, dep->dep_id, stored);
    /* each copy as the store holds it, proven by an unwrap; the "DEP
     * created" record, then the state */
    if (e == KEYTIER_OK)
        e = kt_dep_register_prove(ctx, stored);
    if (e == KEYTIER_OK)
        e = kt_dep_register_commit(ctx, stored, true, recorded, &done);
    if (e == KEYTIER_OK && !done)
        e = kt_err(KEYTIER_E_DEP_STATE,
                   "DEP %s left registering meanwhile (registered, disabled "
                   "or settled by another process): kept as it is",
                   dep->dep_id);
    if (stored != NULL) {
        kt_wipe(stored, sizeof *stored);
        free(stored);
    }
    return e;
}

keytier_err kt_dep_store(keytier_ctx *ctx, struct kt_dep_rec *dep,
                         unsigned limit, const struct kt_key_rec *tik,
                         const char *replaces, bool *kept)
{
    bool recorded = false;
    *kept = false;
    dep->state = KEYTIER_DEP_REGISTERING;
    /* the time the row exists: a registration older than the steps it
     * has left is a dead one (settle.c) */
    dep->created = (int64_t)time(NULL);
    keytier_err e =
        tik == NULL
            ? kt_store_dep_insert(ctx->store, dep, limit)
            : kt_store_dep_insert_files(ctx->store, dep, limit, tik, replaces);
    if (e != KEYTIER_OK)
        return e;
    e = kt_dep_store_register(ctx, dep, &recorded);
    if (e == KEYTIER_OK) {
        dep->state = KEYTIER_DEP_REGISTERED;
        return KEYTIER_OK;
    }
    char saved[KT_TJOB_DETAIL * 2], why[KT_TJOB_DETAIL * 2 + 128];
    snprintf(saved, sizeof saved, "%s", keytier_last_error_detail());
    if (e == KEYTIER_E_DEP_STATE && recorded) {
        /* no longer registering: not this creation's to take back */
        *kept = true;
    } else if (recorded) {
        kt_dep_store_undo(ctx, dep, saved, kept);
        snprintf(why, sizeof why, "%s; DEP %s %s", saved, dep->dep_id,
                 *kept ? "left registering: the next read of its key "
                         "finishes its registration"
                       : "undone (audit record \"" KT_AUDIT_DEP_UNDONE "\")");
        kt_err_restore(why);
        return e;
    } else if (kt_store_dep_unregister(ctx->store, dep->dep_id) != KEYTIER_OK) {
        /* the DEP never served a key and has no record: it goes, the
         * caller destroys its availability key */
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "DEP whose copies did not prove left registering",
                     dep->dep_id);
    }
    kt_err_restore(saved);
    return e;
}

/* ---- health ------------------------------------------------------------ */

KEYTIER_API const char *keytier_key_health_name(keytier_key_health h, int slot)
{
    switch (h) {
    case KEYTIER_KEY_REACHABLE:
        return slot == KEYTIER_ROOT_AVAIL ? "present" : "reachable";
    case KEYTIER_KEY_REFUSED:
        return "refused";
    case KEYTIER_KEY_DESTROYED:
        return slot == KEYTIER_ROOT_AVAIL ? "missing" : "destroyed";
    case KEYTIER_KEY_UNREACHABLE:
        return "unreachable";
    }
    return "unknown";
}

/* A probe's outcome: gone when the token says there is no such key, else
 * by the class of the CK_RV it stands for (common/ckr.c), as the fallback
 * rule sees it: denied is refused, system (timeouts included) unreachable. */
static keytier_key_health kt_health_of(keytier_err e, CK_RV rv)
{
    if (e == KEYTIER_OK)
        return KEYTIER_KEY_REACHABLE;
    CK_RV r = kt_ckr_from_err(e, rv);
    if (e == KEYTIER_E_KEY_NOT_FOUND || r == KT_CKR_NO_MATCH ||
        r == CKR_KEY_HANDLE_INVALID)
        return KEYTIER_KEY_DESTROYED;
    return kt_ckr_classify(r) == KT_CKR_CLASS_DENIED ? KEYTIER_KEY_REFUSED
                                                     : KEYTIER_KEY_UNREACHABLE;
}

static void kt_health_set(keytier_health *out, int slot, keytier_err e,
                          CK_RV rv)
{
    out->key[slot] = kt_health_of(e, rv);
    out->err[slot] = e;
    snprintf(out->detail[slot], sizeof out->detail[slot], "%s",
             e == KEYTIER_OK ? "" : keytier_last_error_detail());
}

/* The availability key: found in the service token, never used. */
static void kt_health_avail(keytier_ctx *ctx, const struct kt_dep_rec *d,
                            keytier_health *out)
{
    struct kt_root_job *j =
        kt_root_job_new(ctx, sizeof *j, "availability key",
                        d->roots[KEYTIER_ROOT_AVAIL].uri, false, NULL);
    if (j == NULL) {
        kt_health_set(out, KEYTIER_ROOT_AVAIL, kt_err(KEYTIER_E_NOMEM, NULL),
                      CKR_HOST_MEMORY);
        return;
    }
    keytier_err e = kt_root_job_run(j, kt_call_deadline_ms(ctx));
    kt_health_set(out, KEYTIER_ROOT_AVAIL, e,
                  j->base.taken ? j->base.rv : KT_CKR_TIMEOUT);
    kt_tjob_put(&j->base);
}

KEYTIER_API keytier_err keytier_dep_health(keytier_ctx *ctx, const char *tenant,
                                           const char *dep_id,
                                           keytier_health *out)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL ||
        (tenant != NULL && !kt_text_ok(tenant, KEYTIER_TENANT_MAX)) ||
        !kt_text_ok(dep_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_health");
    memset(out, 0, sizeof *out);
    struct kt_dep_rec *d = malloc(sizeof *d);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_store_dep_get(ctx->store, dep_id, d);
    if (e == KEYTIER_OK && tenant != NULL && strcmp(d->tenant, tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "DEP %s does not belong to tenant %s", dep_id, tenant);
    if (e == KEYTIER_OK && d->state == KEYTIER_DEP_PURGED)
        e = kt_err(KEYTIER_E_PURGED,
                   "DEP %s of tenant %s was purged (crypto-shredded): no "
                   "root key is left to probe",
                   dep_id, d->tenant);
    for (int slot = 0; e == KEYTIER_OK && slot < 2; slot++) {
        kt_secret *key = NULL;
        CK_RV rv = CKR_OK;
        keytier_err pe = kt_dep_key_unwrap_slot_bounded(
            ctx, d, slot, &key, &rv, kt_call_deadline_ms(ctx));
        kt_secret_free(key); /* a probe: never used */
        kt_health_set(out, slot, pe, rv);
    }
    if (e == KEYTIER_OK)
        kt_health_avail(ctx, d, out);
    kt_wipe(d, sizeof *d);
    free(d);
    if (e == KEYTIER_OK)
        kt_err_clear();
    return e;
}

/* ---- purged tenants ---------------------------------------------------- */

keytier_err kt_key_purged(keytier_ctx *ctx, keytier_err e, const char *tenant,
                          const char *workload, const char *what)
{
    bool purged = false;
    if (e != KEYTIER_E_NOT_FOUND)
        return e;
    char saved[KT_TJOB_DETAIL * 2];
    snprintf(saved, sizeof saved, "%s", keytier_last_error_detail());
    if (kt_store_tenant_purged(ctx->store, tenant, workload, &purged) !=
            KEYTIER_OK ||
        !purged) {
        kt_err_restore(saved);
        return e;
    }
    return kt_err(KEYTIER_E_PURGED,
                  "%s of tenant %s is gone with them; what was encrypted "
                  "under it is crypto-shredded and can never be decrypted",
                  what, tenant);
}
