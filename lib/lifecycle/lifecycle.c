/*
 * Key lifecycle (docs/DESIGN.md §2 "Lifecycle"): rolling a customer root.
 * Purging a tenant is purge.c, assign/migrate/recover migrate.c, secrets
 * with rollover secrets.c.  Every event is an audit record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "audit.h"
#include "p11call.h"
#include "trust.h"

static int64_t kt_lc_time(void)
{
    return (int64_t)time(NULL);
}

int64_t (*kt_lc_clock)(void) = kt_lc_time;

/* ---- audit ------------------------------------------------------------ */

keytier_err kt_lc_audit(keytier_ctx *ctx, const char *activity,
                        const struct kt_dep_rec *dep, json_object *fields)
{
    char path[4096];
    kt_audit *a = NULL;
    json_object *o = fields ? fields : json_object_new_object();
    if (o == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    if (dep != NULL)
        kt_audit_add_dep_fields(o, dep->workload, dep->tenant, dep->dep_id,
                                dep->policy_id);
    /* keytier_audit_log_path clears the thread's error: keep ours. */
    keytier_err e = keytier_audit_log_path(ctx, path, sizeof path);
    if (e == KEYTIER_OK)
        e = kt_audit_open(path, &a);
    if (e != KEYTIER_OK) {
        json_object_put(o);
        return e;
    }
    /* A handle of our own: appends take an exclusive flock, so the chain
     * stays whole beside the availability machinery's handle. */
    kt_audit_anchor_attach(ctx, a);
    e = kt_audit_append(a, activity, o, NULL);
    kt_audit_close(a);
    return e;
}

/* Wipes cached keys in scope in this process; the count of entries wiped.
 * (the store transaction that made the change recorded it for
 * the other processes.) */
static size_t kt_lc_uncache(keytier_ctx *ctx, int scope, const char *value)
{
    return kt_avail_uncache(ctx, scope, value);
}

/* The URI without any query part (where a PIN could be). */
static json_object *kt_lc_uri(const char *uri)
{
    return json_object_new_string_len(uri, (int)strcspn(uri, "?"));
}

static keytier_err kt_lc_dep_get(keytier_ctx *ctx, const char *tenant,
                                 const char *dep_id, struct kt_dep_rec *d)
{
    keytier_err e = kt_store_dep_get(ctx->store, dep_id, d);
    if (e == KEYTIER_OK && strcmp(d->tenant, tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "DEP %s does not belong to tenant %s", dep_id, tenant);
    return e;
}

/* ---- roll ------------------------------------------------------------- */

static const char *const kt_slot_names[] = {"customer key A", "customer key B"};

/* Wraps the DEP key under the new root with the first mechanism the token
 * takes (RSA: OAEP SHA-256, SHA-1 only when allowed). */
static keytier_err kt_roll_wrap(keytier_ctx *ctx, const char *what,
                                const char *uri, const struct kt_root *root,
                                CK_SESSION_HANDLE s, const kt_secret *key,
                                struct kt_root_rec *rec, CK_RV *rv)
{
    enum kt_wrap_mech mechs[2];
    size_t n = 0;
    keytier_err e = KEYTIER_E_INTERNAL;
    if (root->type == CKK_AES) {
        mechs[n++] = KT_WRAP_AES_KWP;
    } else {
        mechs[n++] = KT_WRAP_RSA_OAEP_SHA256;
        if (ctx->cfg.allow_oaep_sha1)
            mechs[n++] = KT_WRAP_RSA_OAEP_SHA1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = sizeof rec->wrapped;
        e = kt_root_wrap(root, s, mechs[i], key, rec->wrapped, &len, rv);
        if (e == KEYTIER_OK) {
            rec->wrapped_len = len;
            kt_strlcpy(rec->mech, kt_wrap_mech_name(mechs[i]),
                       sizeof rec->mech);
            kt_strlcpy(rec->uri, uri, sizeof rec->uri);
            return KEYTIER_OK;
        }
        if (e != KEYTIER_E_MECHANISM)
            break;
    }
    return kt_err_context(e, "%s %s", what, uri);
}

/* The new root's work on the call pool (admin deadline). */
struct kt_roll_job {
    struct kt_root_job rj;
    kt_secret *key; /* a copy: a late job outlives the caller */
    struct kt_root_rec rec;
};

/* The new root is a customer key (its identity into rec); with a key,
 * the DEP key is wrapped under it. */
static keytier_err kt_roll_job_op(struct kt_root_job *rj,
                                  const struct kt_root *root,
                                  CK_SESSION_HANDLE s, CK_RV *rv)
{
    struct kt_roll_job *j = (struct kt_roll_job *)rj;
    keytier_err e = kt_root_check_customer(rj->base.ctx, root, s, rj->what,
                                           rj->uri, j->rec.ident, rv);
    if (e != KEYTIER_OK || j->key == NULL)
        return e;
    return kt_roll_wrap(rj->base.ctx, rj->what, rj->uri, root, s, j->key,
                        &j->rec, rv);
}

static void kt_roll_job_cleanup(struct kt_tjob *tj)
{
    struct kt_roll_job *j = (struct kt_roll_job *)tj;
    kt_secret_free(j->key);
}

/* Checks the new root (sensitive, non-extractable, can wrap and unwrap,
 * AES-256 or RSA >= 2048, a customer key); with key, also wraps key under
 * it into *rec. */
static keytier_err kt_roll_root(keytier_ctx *ctx, const char *what,
                                const char *uri, const kt_secret *key,
                                struct kt_root_rec *rec)
{
    struct kt_roll_job *j =
        kt_root_job_new(ctx, sizeof *j, what, uri, true, kt_roll_job_op);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->rj.base.cleanup = kt_roll_job_cleanup;
    keytier_err e = KEYTIER_OK;
    if (key != NULL && (j->key = kt_secret_dup(key)) == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    if (e == KEYTIER_OK)
        e = kt_root_job_run(&j->rj, kt_admin_deadline_ms(ctx));
    if (e == KEYTIER_OK)
        e = kt_dep_customer_role(ctx, what, uri, j->rec.ident);
    if (e == KEYTIER_OK && rec != NULL)
        *rec = j->rec;
    kt_tjob_put(&j->rj.base);
    return e;
}

/* A rolling DEP's roll, when it is another process's still running:
 * KEYTIER_E_DEP_STATE (dropping its pending copy would make that roll
 * commit whatever copy is pending when it ends). */
static keytier_err kt_roll_live(keytier_ctx *ctx, const char *dep_id)
{
    struct kt_root_rec *pending = malloc(sizeof *pending);
    int64_t started = 0;
    int slot = 0;
    if (pending == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e =
        kt_store_roll_get(ctx->store, dep_id, &slot, pending, &started);
    kt_wipe(pending, sizeof *pending);
    free(pending);
    if (e == KEYTIER_E_NOT_FOUND) { /* ended meanwhile */
        kt_err_clear();
        return KEYTIER_OK;
    }
    if (e == KEYTIER_OK && !kt_dep_roll_dead(ctx, started))
        e = kt_err(KEYTIER_E_DEP_STATE,
                   "DEP %s: a roll of its %s is under way in another "
                   "process; roll again when it is done",
                   dep_id, kt_slot_names[slot ? 1 : 0]);
    return e;
}

/* The DEP to roll: the tenant's, registered (an earlier roll stopped
 * before its read-back is dropped: its pending copy was never trusted;
 * one still running is left alone, KEYTIER_E_DEP_STATE). */
static keytier_err kt_roll_dep_get(keytier_ctx *ctx, const char *tenant,
                                   const char *dep_id, struct kt_dep_rec *dep)
{
    keytier_err e = kt_lc_dep_get(ctx, tenant, dep_id, dep);
    if (e != KEYTIER_OK)
        return e;
    if (dep->state == KEYTIER_DEP_ROLLING) {
        e = kt_roll_live(ctx, dep_id);
        if (e == KEYTIER_OK)
            e = kt_store_roll_end(ctx->store, dep_id, false);
        if (e != KEYTIER_OK)
            return e;
        dep->state = KEYTIER_DEP_REGISTERED;
    }
    if (dep->state != KEYTIER_DEP_REGISTERED)
        return kt_err(KEYTIER_E_DEP_STATE,
                      "DEP %s is %s; only a registered DEP can roll", dep_id,
                      dep->state == KEYTIER_DEP_MIGRATING  ? "migrating"
                      : dep->state == KEYTIER_DEP_DISABLED ? "disabled"
                      : dep->state == KEYTIER_DEP_PURGED   ? "purged"
                      : dep->state == KEYTIER_DEP_OFFBOARDED
                          ? "offboarded: its data is under a service-managed "
                            "key, no customer key to roll"
                          : "registering");
    return KEYTIER_OK;
}

/* The new root: a URI without a PIN, another key than today's, in another
 * token than the other customer key, sensitive, non-extractable, able to
 * wrap and unwrap, AES-256 or RSA >= 2048, a customer key. */
static keytier_err kt_roll_new_check(keytier_ctx *ctx,
                                     const struct kt_dep_rec *dep, int slot,
                                     const char *new_uri)
{
    const char *what = kt_slot_names[slot];
    keytier_err e = kt_uri_check(what, new_uri);
    if (e != KEYTIER_OK)
        return e;
    if (strcmp(dep->roots[slot].uri, new_uri) == 0)
        return kt_err(KEYTIER_E_EXISTS,
                      "%s of DEP %s is already %s; a roll needs a new key",
                      what, dep->dep_id, new_uri);
    /* The two customer keys stay in two different tokens. */
    struct kt_token *tnew, *tother;
    e = kt_token_find(ctx, new_uri, &tnew);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "new %s %s", what, new_uri);
    const char *other = dep->roots[1 - slot].uri;
    e = kt_token_find(ctx, other, &tother);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "%s %s", kt_slot_names[1 - slot], other);
    if (kt_token_same(tnew, tother))
        return kt_err(KEYTIER_E_SAME_TOKEN,
                      "new %s %s is in token '%s', like %s %s", what, new_uri,
                      tnew->label, kt_slot_names[1 - slot], other);
    return kt_roll_root(ctx, what, new_uri, NULL, NULL);
}

/* Reads back what the store holds as pending, through the token, as a
 * reader would: only a copy that unwraps to key may replace the old one.
 * dep's slot now names the pending copy; old_uri keeps the one it had. */
static keytier_err kt_roll_read_back(keytier_ctx *ctx, struct kt_dep_rec *dep,
                                     int slot, const char *new_uri,
                                     const kt_secret *key,
                                     struct kt_root_rec *pending,
                                     char old_uri[KEYTIER_URI_MAX],
                                     kt_secret **back)
{
    const char *what = kt_slot_names[slot];
    CK_RV rv = CKR_OK;
    int pslot;
    keytier_err e =
        kt_store_roll_get(ctx->store, dep->dep_id, &pslot, pending, NULL);
    if (e != KEYTIER_OK)
        return e;
    kt_strlcpy(old_uri, dep->roots[slot].uri, KEYTIER_URI_MAX);
    dep->roots[slot] = *pending;
    e = kt_dep_key_unwrap_slot_bounded(ctx, dep, slot, back, &rv,
                                       kt_admin_deadline_ms(ctx));
    if (e != KEYTIER_OK)
        return kt_err_context(e, "reading back the new copy of %s", what);
    if (!kt_ct_equal(kt_secret_cdata(*back), kt_secret_cdata(key), KT_KEY_SIZE))
        return kt_err(KEYTIER_E_AUTH, "new %s %s unwrapped another key", what,
                      new_uri);
    return KEYTIER_OK;
}

/* The "Customer key rolled" record. */
static keytier_err kt_roll_audit(keytier_ctx *ctx, const struct kt_dep_rec *dep,
                                 int slot, const char *old_uri,
                                 const char *new_uri,
                                 const struct kt_root_rec *pending, uint64_t t0)
{
    json_object *f = json_object_new_object();
    if (f != NULL) {
        json_object_object_add(f, "Key",
                               json_object_new_string(slot ? "B" : "A"));
        json_object_object_add(f, "OldKeyUri", kt_lc_uri(old_uri));
        json_object_object_add(f, "NewKeyUri", kt_lc_uri(new_uri));
        json_object_object_add(f, "Mechanism",
                               json_object_new_string(pending->mech));
        json_object_object_add(
            f, "DurationMs",
            json_object_new_int64((int64_t)((kt_now_ns() - t0) / 1000000)));
    }
    return kt_lc_audit(ctx, "Customer key rolled", dep, f);
}

KEYTIER_API keytier_err keytier_dep_roll(keytier_ctx *ctx, const char *tenant,
                                         const char *dep_id, int slot,
                                         const char *new_uri,
                                         keytier_dep_info *out)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(dep_id, KEYTIER_ID_SIZE - 1) ||
        !kt_text_ok(new_uri, KEYTIER_URI_MAX - 1) ||
        (slot != KEYTIER_ROOT_A && slot != KEYTIER_ROOT_B))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_roll");
    const char *what = kt_slot_names[slot];
    const keytier_request req = {KEYTIER_REQUEST_INTERNAL,
                                 KEYTIER_INTERNAL_ROLL, NULL, NULL};
    struct kt_dep_rec *dep = calloc(1, sizeof *dep);
    struct kt_root_rec *pending = calloc(1, sizeof *pending);
    kt_secret *key = NULL, *back = NULL;
    bool begun = false;
    char old_uri[KEYTIER_URI_MAX];
    uint64_t t0 = kt_now_ns();
    keytier_err e = KEYTIER_OK;
    if (dep == NULL || pending == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    if (e == KEYTIER_OK)
        e = kt_roll_dep_get(ctx, tenant, dep_id, dep);
    if (e == KEYTIER_OK)
        e = kt_roll_new_check(ctx, dep, slot, new_uri);
    /* A rewrap: a roll makes a new lasting copy, and one made through the
     * availability key would undo a revocation (the rolled copy would open
     * for users again), so the rule never lets it use that key.  Revoked:
     * refused; both down: refused too, the customer rolls again when a key
     * answers. */
    if (e == KEYTIER_OK)
        e = kt_dep_key_read(ctx, dep, &req, KT_FALLBACK_OP_REWRAP, NULL, &key);
    if (e == KEYTIER_OK)
        e = kt_roll_root(ctx, what, new_uri, key, pending);
    if (e == KEYTIER_OK)
        e = kt_store_roll_begin(ctx->store, dep_id, slot, pending,
                                dep->roots[1 - slot].uri, kt_lc_clock());
    if (e != KEYTIER_OK)
        goto out;
    begun = true;
    e = kt_roll_read_back(ctx, dep, slot, new_uri, key, pending, old_uri,
                          &back);
    /* The record before the commit: a process killed between the two
     * leaves the DEP rolling, settled (and recorded again) by the next
     * read, never rolled without a record; a record that cannot be
     * written drops the pending copy. */
    if (e == KEYTIER_OK)
        e = kt_roll_audit(ctx, dep, slot, old_uri, new_uri, pending, t0);
    if (e != KEYTIER_OK)
        goto out;
    /* Recorded: from here the pending copy is kept whatever happens, so a
     * commit that fails leaves the DEP rolling for the next read to
     * settle, as a kill would, never a record of a roll that is undone. */
    begun = false;
    e = kt_store_roll_end(ctx->store, dep_id, true);
    if (e != KEYTIER_OK) /* once more: a failed commit changed nothing */
        e = kt_store_roll_end(ctx->store, dep_id, true);
    if (e != KEYTIER_OK)
        goto out;
    /* Cached entries are tagged with the old root URI. */
    (void)kt_lc_uncache(ctx, KT_INVAL_DEP, dep_id);
    dep->state = KEYTIER_DEP_REGISTERED;
    kt_log_event(ctx->log, KT_LOG_INFO, "customer key rolled", dep_id);
    if (out != NULL)
        e = keytier_dep_show(ctx, tenant, dep_id, out);
out:
    if (begun && kt_store_roll_end(ctx->store, dep_id, false) != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_ERROR, "roll: pending copy not dropped",
                     dep_id);
    kt_secret_free(key);
    kt_secret_free(back);
    if (dep != NULL)
        kt_wipe(dep, sizeof *dep);
    free(dep);
    free(pending);
    return e;
}
