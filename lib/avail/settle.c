/*
 * A DEP's state change that a process left unfinished, settled on the next
 * read of its key (docs/DESIGN.md §2 "Lifecycle", state):
 *
 *   registering - the creation stored the three copies and died before
 *   proving them: each is unwrapped (and checked against the DEP's check
 *   value); all three proven -> REGISTERED, otherwise the DEP stays
 *   registering and serves no key (KEYTIER_E_DEP_STATE);
 *   rolling - the roll stored its pending copy (dep_roll) and died before
 *   its read-back: the pending copy is unwrapped; proven -> committed,
 *   otherwise dropped (the old copy was never touched).  Either way the
 *   DEP is REGISTERED again.
 *
 * A change still running in another process is left alone: it is dead
 * only when it is older than the steps it still had to take, each bounded
 * by avail.admin_deadline_ms.  Should the two race anyway, the store's
 * transitions are conditional (a roll ends once, a DEP registers once) and
 * the loser finds the state already settled; a dead roll is claimed first
 * (kt_store_roll_claim), so that one process settles it and writes its one
 * record.  Every settlement is an audit
 * record.  Also the proof of a new DEP's copies and its registration
 * (keys/dep_state.c), whose audit record is written before the DEP is
 * registered, and the record of a creation undone after its record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "kt_lib.h"
#include "state.h"

/* Steps left after the store write, each bounded by the admin deadline:
 * registration proves three copies, a roll reads one back; one more for
 * the store write that ends it. */
#define KT_SETTLE_REGISTER_STEPS 4
#define KT_SETTLE_ROLL_STEPS     2

/* Whether a change written at `since` (seconds) is older than `steps`
 * admin deadlines and a second: its process is gone. */
static bool kt_settle_dead(keytier_ctx *ctx, int64_t since, unsigned steps)
{
    int64_t grace =
        (int64_t)steps * (((int64_t)kt_admin_deadline_ms(ctx) + 999) / 1000) +
        1;
    return (int64_t)time(NULL) - since > grace;
}

bool kt_dep_roll_dead(keytier_ctx *ctx, int64_t started)
{
    return kt_settle_dead(ctx, started, KT_SETTLE_ROLL_STEPS);
}

keytier_err kt_dep_register_prove(keytier_ctx *ctx,
                                  const struct kt_dep_rec *dep)
{
    for (int slot = 0; slot < 3; slot++) {
        kt_secret *key = NULL;
        CK_RV rv = CKR_OK;
        keytier_err e = kt_dep_key_unwrap_slot_bounded(
            ctx, dep, slot, &key, &rv, kt_admin_deadline_ms(ctx));
        kt_secret_free(key);
        if (e != KEYTIER_OK)
            return e;
    }
    return KEYTIER_OK;
}

/* The settlement's audit record: the DEP's fields, what happened and why. */
static keytier_err kt_settle_audit(keytier_ctx *ctx,
                                   const struct kt_dep_rec *dep,
                                   const char *activity, json_object *f)
{
    struct kt_avail *av = ctx->avail;
    if (f == NULL)
        f = json_object_new_object();
    if (f == NULL || av == NULL || av->audit == NULL) {
        json_object_put(f);
        kt_log_event(ctx->log, KT_LOG_ERROR, "audit record not written",
                     dep->dep_id);
        return f == NULL ? kt_err(KEYTIER_E_NOMEM, "audit record") : KEYTIER_OK;
    }
    kt_audit_add_dep_fields(f, dep->workload, dep->tenant, dep->dep_id,
                            dep->policy_id);
    keytier_err e = kt_audit_append(av->audit, activity, f, NULL);
    if (e != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_ERROR, "audit record not written",
                     dep->dep_id);
    return e;
}

/* The "DEP created" record of a creation. */
static keytier_err kt_register_created(keytier_ctx *ctx,
                                       const struct kt_dep_rec *dep)
{
    kt_audit_request areq = {
        .workload = dep->workload,
        .org_id = dep->tenant,
        .dep_id = dep->dep_id,
        .policy_id = dep->policy_id,
    };
    if (ctx->avail == NULL || ctx->avail->audit == NULL)
        return KEYTIER_OK;
    return kt_audit_dep_created(ctx->avail->audit, &areq);
}

/*
 * The record comes before the state: a process killed between the two
 * leaves the DEP registering (refused, then finished and recorded again by
 * the next read once it is dead), never registered without a record.  A
 * record that cannot be written leaves the DEP registering.  A state update
 * that fails is tried once more (a failed update changed nothing); *recorded
 * tells the caller that the record is written, so that a DEP it drops
 * after all gets its undo record (kt_dep_register_undone).
 */
keytier_err kt_dep_register_commit(keytier_ctx *ctx,
                                   const struct kt_dep_rec *dep, bool creating,
                                   bool *recorded, bool *done)
{
    *done = false;
    *recorded = false;
    keytier_err e =
        creating ? kt_register_created(ctx, dep)
                 : kt_settle_audit(ctx, dep, "DEP registration finished", NULL);
    if (e != KEYTIER_OK)
        return e;
    *recorded = true;
    e = kt_store_dep_registered(ctx->store, dep->dep_id, done);
    if (e != KEYTIER_OK)
        e = kt_store_dep_registered(ctx->store, dep->dep_id, done);
    return e;
}

keytier_err kt_dep_register_undone(keytier_ctx *ctx,
                                   const struct kt_dep_rec *dep,
                                   const char *why)
{
    json_object *f = json_object_new_object();
    json_object *r = json_object_new_string(why);
    if (f == NULL || r == NULL) {
        json_object_put(f);
        json_object_put(r);
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    }
    json_object_object_add(f, "Reason", r);
    return kt_settle_audit(ctx, dep, KT_AUDIT_DEP_UNDONE, f);
}

/* A registering DEP: refused while its creation may still run; once dead,
 * finished when its three copies prove, refused otherwise. */
static keytier_err kt_settle_registering(keytier_ctx *ctx,
                                         const struct kt_dep_rec *dep,
                                         bool *done)
{
    if (!kt_settle_dead(ctx, dep->created, KT_SETTLE_REGISTER_STEPS))
        return kt_err(KEYTIER_E_DEP_STATE,
                      "DEP %s is registering: its creation is still proving "
                      "its wrapped copies; retry in a moment",
                      dep->dep_id);
    keytier_err e = kt_dep_register_prove(ctx, dep);
    if (e != KEYTIER_OK) {
        char why[KT_TJOB_DETAIL];
        snprintf(why, sizeof why, "%s", keytier_last_error_detail());
        return kt_err(KEYTIER_E_DEP_STATE,
                      "DEP %s is registering: its creation stopped before its "
                      "wrapped copies were proven, and one does not prove "
                      "(%s); it serves no key",
                      dep->dep_id, why);
    }
    bool recorded = false;
    e = kt_dep_register_commit(ctx, dep, false, &recorded, done);
    if (e == KEYTIER_OK && *done)
        kt_log_event(ctx->log, KT_LOG_INFO, "DEP registration finished",
                     dep->dep_id);
    return e;
}

/* The audit record of a roll settled: committed or rolled back, and why. */
static keytier_err kt_settle_roll_audit(keytier_ctx *ctx,
                                        const struct kt_dep_rec *dep, int slot,
                                        const struct kt_root_rec *pending,
                                        bool commit, const char *why)
{
    json_object *f = json_object_new_object();
    if (f != NULL) {
        json_object_object_add(f, "Key",
                               json_object_new_string(slot ? "B" : "A"));
        json_object_object_add(
            f, "OldKeyUri",
            json_object_new_string_len(
                dep->roots[slot].uri, (int)strcspn(dep->roots[slot].uri, "?")));
        json_object_object_add(
            f, "NewKeyUri",
            json_object_new_string_len(pending->uri,
                                       (int)strcspn(pending->uri, "?")));
        json_object_object_add(
            f, "Outcome",
            json_object_new_string(commit ? "committed" : "rolled back"));
        if (why != NULL)
            json_object_object_add(f, "Reason", json_object_new_string(why));
    }
    return kt_settle_audit(ctx, dep,
                           commit ? "Customer key roll resumed"
                                  : "Customer key roll rolled back",
                           f);
}

/* A rolling DEP whose roll is dead: its pending copy proven and committed,
 * or dropped.  A live roll is left to finish (the old copies still read). */
static keytier_err kt_settle_roll(keytier_ctx *ctx,
                                  const struct kt_dep_rec *dep, bool *ended)
{
    struct kt_dep_rec *probe = malloc(sizeof *probe);
    struct kt_root_rec pending;
    kt_secret *key = NULL;
    int64_t started = 0;
    int slot = 0;
    CK_RV rv = CKR_OK;
    char why[KT_TJOB_DETAIL] = "";
    if (probe == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e =
        kt_store_roll_get(ctx->store, dep->dep_id, &slot, &pending, &started);
    if (e == KEYTIER_E_NOT_FOUND) {
        /* ended by another process since dep was read */
        kt_err_clear();
        free(probe);
        return KEYTIER_OK;
    }
    if (e != KEYTIER_OK || !kt_settle_dead(ctx, started, KT_SETTLE_ROLL_STEPS))
        goto out;
    /* One settler only: the others find the roll started since and leave
     * it (one "roll resumed" record), until this one is dead in turn. */
    bool claimed = false;
    e = kt_store_roll_claim(ctx->store, dep->dep_id, started,
                            (int64_t)time(NULL), &claimed);
    if (e != KEYTIER_OK || !claimed)
        goto out;
    *probe = *dep;
    probe->roots[slot] = pending;
    bool commit =
        kt_dep_key_unwrap_slot_bounded(ctx, probe, slot, &key, &rv,
                                       kt_admin_deadline_ms(ctx)) == KEYTIER_OK;
    if (!commit)
        snprintf(why, sizeof why, "%s", keytier_last_error_detail());
    /* The record first, as a roll writes it (lifecycle.c): killed between
     * the two, the next read settles it again. */
    e = kt_settle_roll_audit(ctx, dep, slot, &pending, commit,
                             commit ? NULL : why);
    if (e == KEYTIER_OK)
        e = kt_store_roll_end(ctx->store, dep->dep_id, commit);
    if (e == KEYTIER_E_NOT_FOUND) { /* another process ended it first */
        kt_err_clear();
        e = KEYTIER_OK;
        goto out;
    }
    if (e != KEYTIER_OK)
        goto out;
    *ended = true;
    if (commit) /* cached entries name the old root */
        (void)kt_avail_uncache(ctx, KT_INVAL_DEP, dep->dep_id);
    if (commit)
        kt_log_event(ctx->log, KT_LOG_WARNING, "interrupted roll resumed",
                     dep->dep_id);
    else
        kt_log_event(ctx->log, KT_LOG_WARNING, "interrupted roll rolled back",
                     dep->dep_id);
out:
    kt_secret_free(key);
    kt_wipe(probe, sizeof *probe);
    free(probe);
    kt_wipe(&pending, sizeof pending);
    return e;
}

keytier_err kt_dep_settle(keytier_ctx *ctx, const struct kt_dep_rec *dep,
                          struct kt_dep_rec **fresh, bool *settled)
{
    keytier_err e = KEYTIER_OK;
    bool mine = false;
    *fresh = NULL;
    if (settled != NULL)
        *settled = false;
    if (dep->state == KEYTIER_DEP_REGISTERING)
        e = kt_settle_registering(ctx, dep, &mine);
    else if (dep->state == KEYTIER_DEP_ROLLING)
        e = kt_settle_roll(ctx, dep, &mine);
    else
        return KEYTIER_OK;
    if (e != KEYTIER_OK)
        return e;
    /* the record as the store now has it */
    struct kt_dep_rec *d = malloc(sizeof *d);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    e = kt_store_dep_get(ctx->store, dep->dep_id, d);
    if (e == KEYTIER_OK && d->state == KEYTIER_DEP_REGISTERING)
        e = kt_err(KEYTIER_E_DEP_STATE, "DEP %s is registering", dep->dep_id);
    if (e != KEYTIER_OK) {
        kt_wipe(d, sizeof *d);
        free(d);
        return e;
    }
    *fresh = d;
    if (settled != NULL)
        *settled = mine;
    return KEYTIER_OK;
}
