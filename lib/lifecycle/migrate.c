/*
 * Assigning a DEP and migrating keys to it (docs/DESIGN.md §2
 * "Lifecycle"), and recovery from lost customer keys, which is a migration
 * whose old DEP key comes through the availability key.
 *
 * Revocation: moving a key to another DEP rewraps it under a key the
 * customer may not have revoked.  A plain assign/migrate therefore reads
 * every DEP key (the old ones and the target) through the read path as a
 * rewrap, the fallback rule's operation that never uses the availability
 * key: out of or into a revoked DEP it is refused with KEYTIER_E_REVOKED,
 * during an outage with KEYTIER_E_UNAVAILABLE (run it again later).  Only
 * a migration recorded by keytier_dep_recover (operation "recover", an
 * explicit, audited service operation) reads the OLD DEP key as the rule's
 * "recover", which may use the availability key.
 *
 * Resumability: a migration is a list of items (level-1 keys) in the
 * store.  A batch rewraps some keys and, in the same transaction, marks
 * their items done; each row update is conditional on the key still being
 * under the DEP it was read under.  A process killed anywhere leaves each
 * key complete under either its old or its new DEP and its item in step,
 * so the next run neither loses nor double-wraps a key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kt_lib.h"
#include "trust.h"
#include "worker.h"

#define KT_MIG_BATCH   256
#define KT_MIG_DEPS    64 /* DEP keys kept open during one run */
#define KT_MIG_SUBTREE 4096

struct kt_mig_run {
    keytier_ctx *ctx;
    struct kt_mig_rec m;
    keytier_request req;
    struct kt_dep_rec *target;
    kt_secret *target_key;
    unsigned depth; /* levels below the DEP key */
    struct {
        char dep_id[KEYTIER_ID_SIZE];
        kt_secret *key;
    } deps[KT_MIG_DEPS];
    size_t n_deps;
    struct kt_mig_update *u;
    size_t n_u, cap_u;
};

static void kt_mig_fill(const struct kt_mig_rec *m, keytier_migration *o)
{
    memset(o, 0, sizeof *o);
    kt_strlcpy(o->migration_id, m->migration_id, sizeof o->migration_id);
    kt_strlcpy(o->tenant, m->tenant, sizeof o->tenant);
    kt_strlcpy(o->workload, m->workload, sizeof o->workload);
    kt_strlcpy(o->target_dep_id, m->target_dep, sizeof o->target_dep_id);
    kt_strlcpy(o->scope, m->scope, sizeof o->scope);
    kt_strlcpy(o->operation, m->operation, sizeof o->operation);
    o->finished = m->state == 1;
    o->done = m->done;
    o->total = m->total;
    o->percent = m->total ? 100.0 * (double)m->done / (double)m->total : 100.0;
    o->eta_seconds = o->finished ? 0 : -1;
}

static json_object *kt_mig_fields(const keytier_migration *p)
{
    json_object *f = json_object_new_object();
    if (f == NULL)
        return NULL;
    json_object_object_add(f, "MigrationId",
                           json_object_new_string(p->migration_id));
    json_object_object_add(f, "Scope", json_object_new_string(p->scope));
    json_object_object_add(f, "Operation",
                           json_object_new_string(p->operation));
    json_object_object_add(f, "Done", json_object_new_int64((int64_t)p->done));
    json_object_object_add(f, "Total",
                           json_object_new_int64((int64_t)p->total));
    json_object_object_add(f, "Percent", json_object_new_double(p->percent));
    return f;
}

/* The fallback rule's operation for the old DEP keys of a migration. */
static kt_fallback_op kt_mig_op(const struct kt_mig_rec *m)
{
    return strcmp(m->operation, "recover") == 0 ? KT_FALLBACK_OP_RECOVER
                                                : KT_FALLBACK_OP_REWRAP;
}

/* The DEP key of dep_id, read once per run. */
static keytier_err kt_mig_dep_key(struct kt_mig_run *r, const char *dep_id,
                                  const kt_secret **out)
{
    for (size_t i = 0; i < r->n_deps; i++)
        if (strcmp(r->deps[i].dep_id, dep_id) == 0) {
            *out = r->deps[i].key;
            return KEYTIER_OK;
        }
    if (r->n_deps == KT_MIG_DEPS) {
        kt_secret_free(r->deps[0].key);
        memmove(&r->deps[0], &r->deps[1],
                (KT_MIG_DEPS - 1) * sizeof r->deps[0]);
        r->n_deps--;
    }
    struct kt_dep_rec *d = malloc(sizeof *d);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_store_dep_get(r->ctx->store, dep_id, d);
    if (e == KEYTIER_OK && strcmp(d->tenant, r->m.tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT, "DEP %s", dep_id);
    kt_secret *key = NULL;
    /* A migration rewraps the keys under the old DEP key; only recovery
     * is allowed the availability key (the rule's "recover"), a plain
     * migration out of a revoked DEP would undo the revocation. */
    if (e == KEYTIER_OK)
        e = kt_dep_key_read(r->ctx, d, &r->req, kt_mig_op(&r->m), NULL, &key);
    kt_wipe(d, sizeof *d);
    free(d);
    if (e != KEYTIER_OK)
        return e;
    kt_strlcpy(r->deps[r->n_deps].dep_id, dep_id, KEYTIER_ID_SIZE);
    r->deps[r->n_deps].key = key;
    *out = r->deps[r->n_deps++].key;
    return KEYTIER_OK;
}

static struct kt_mig_update *kt_mig_push(struct kt_mig_run *r)
{
    if (r->n_u == r->cap_u) {
        size_t ncap = r->cap_u ? r->cap_u * 2 : KT_MIG_BATCH;
        struct kt_mig_update *nu = reallocarray(r->u, ncap, sizeof *nu);
        if (nu == NULL)
            return NULL;
        r->u = nu;
        r->cap_u = ncap;
    }
    struct kt_mig_update *u = &r->u[r->n_u++];
    memset(u, 0, sizeof *u);
    return u;
}

/* Rewraps the keys below `parent` (already open as pkey): same parent key,
 * the AAD now naming the target DEP. */
static keytier_err kt_mig_subtree(struct kt_mig_run *r,
                                  const struct kt_key_rec *parent,
                                  const kt_secret *pkey, unsigned left)
{
    struct kt_key_rec *kids = NULL;
    size_t n = 0;
    keytier_err e = kt_store_key_list(r->ctx->store, r->m.tenant,
                                      parent->key_id, &kids, &n);
    if (e != KEYTIER_OK)
        return e;
    kt_secret *key = kt_secret_new(KT_KEY_SIZE + 16);
    if (key == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++) {
        struct kt_key_rec *c = &kids[i];
        if (strcmp(c->dep_id, parent->dep_id) != 0) {
            e = kt_err(KEYTIER_E_WRONG_PARENT,
                       "key %s is under DEP %s, its parent %s under %s",
                       c->key_id, c->dep_id, parent->key_id, parent->dep_id);
            break;
        }
        e = kt_tier_gcm(pkey, c, key, 0);
        if (e != KEYTIER_OK)
            break;
        struct kt_mig_update *u = kt_mig_push(r);
        if (u == NULL) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        struct kt_key_rec nc = *c;
        kt_strlcpy(nc.dep_id, r->m.target_dep, sizeof nc.dep_id);
        e = kt_tier_gcm(pkey, &nc, key, 1);
        if (e != KEYTIER_OK)
            break;
        kt_strlcpy(u->key_id, c->key_id, sizeof u->key_id);
        kt_strlcpy(u->old_dep, c->dep_id, sizeof u->old_dep);
        kt_strlcpy(u->dep_id, nc.dep_id, sizeof u->dep_id);
        kt_strlcpy(u->parent_id, c->parent_id, sizeof u->parent_id);
        memcpy(u->wrapped, nc.wrapped, sizeof u->wrapped);
        kt_wipe(&nc, sizeof nc);
        if (left > 1) {
            kt_secret *ck = kt_secret_from(kt_secret_cdata(key), KT_KEY_SIZE);
            if (ck == NULL) {
                e = kt_err(KEYTIER_E_NOMEM, NULL);
                break;
            }
            struct kt_key_rec oc = *c; /* its children carry the old DEP */
            e = kt_mig_subtree(r, &oc, ck, left - 1);
            kt_secret_free(ck);
        }
    }
    kt_secret_free(key);
    free(kids);
    return e;
}

/* The keys below a TIK moving with it: their wrapped bytes stay (their
 * AAD names the TIK, not the DEP), only their DEP column changes. */
static keytier_err kt_mig_subtree_move(struct kt_mig_run *r,
                                       const char *parent_id, unsigned left)
{
    struct kt_key_rec *kids = NULL;
    size_t n = 0;
    keytier_err e =
        kt_store_key_list(r->ctx->store, r->m.tenant, parent_id, &kids, &n);
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++) {
        struct kt_mig_update *u = kt_mig_push(r);
        if (u == NULL) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        kt_strlcpy(u->key_id, kids[i].key_id, sizeof u->key_id);
        kt_strlcpy(u->old_dep, kids[i].dep_id, sizeof u->old_dep);
        kt_strlcpy(u->dep_id, r->m.target_dep, sizeof u->dep_id);
        kt_strlcpy(u->parent_id, kids[i].parent_id, sizeof u->parent_id);
        memcpy(u->wrapped, kids[i].wrapped, sizeof u->wrapped);
        if (left > 1)
            e = kt_mig_subtree_move(r, kids[i].key_id, left - 1);
    }
    free(kids);
    return e;
}

/* Adds the updates that move item t (and its subtree): a level-1 key
 * rewrapped under the target's DEP key; below it, a TIK's keys moved
 * as they are, an older site's or a mailbox's keys rewrapped (their AAD
 * names the DEP). */
static keytier_err kt_mig_item(struct kt_mig_run *r, struct kt_mig_todo *t)
{
    struct kt_key_rec rec = t->rec;
    keytier_err e = KEYTIER_OK;
    struct kt_mig_update *u = kt_mig_push(r);
    if (u == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    u->item = true;
    kt_strlcpy(u->key_id, t->key_id, sizeof u->key_id);
    if (t->gone) {
        u->gone = true; /* deleted since: nothing to move */
        return KEYTIER_OK;
    }
    if (strcmp(rec.dep_id, r->m.target_dep) == 0) {
        u->gone = true; /* already there */
        return KEYTIER_OK;
    }
    const kt_secret *old = NULL;
    e = kt_mig_dep_key(r, rec.dep_id, &old);
    if (e != KEYTIER_OK)
        return e;
    kt_secret *key = kt_secret_new(KT_KEY_SIZE + 16);
    if (key == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    e = kt_tier_gcm(old, &rec, key, 0);
    struct kt_key_rec nr = rec;
    if (e == KEYTIER_OK) {
        kt_strlcpy(nr.dep_id, r->m.target_dep, sizeof nr.dep_id);
        kt_strlcpy(nr.parent_id, r->m.target_dep, sizeof nr.parent_id);
        e = kt_tier_gcm(r->target_key, &nr, key, 1);
    }
    if (e == KEYTIER_OK) {
        u = &r->u[r->n_u - 1]; /* (no push since) */
        kt_strlcpy(u->old_dep, rec.dep_id, sizeof u->old_dep);
        kt_strlcpy(u->dep_id, nr.dep_id, sizeof u->dep_id);
        kt_strlcpy(u->parent_id, nr.parent_id, sizeof u->parent_id);
        memcpy(u->wrapped, nr.wrapped, sizeof u->wrapped);
    }
    if (e == KEYTIER_OK && rec.tik_id[0] != '\0' &&
        strcmp(rec.tik_id, rec.key_id) == 0) {
        e = kt_mig_subtree_move(r, rec.key_id, r->depth - 1);
    } else if (e == KEYTIER_OK && r->depth > 1) {
        kt_secret *k1 = kt_secret_from(kt_secret_cdata(key), KT_KEY_SIZE);
        e = k1 ? kt_mig_subtree(r, &rec, k1, r->depth - 1)
               : kt_err(KEYTIER_E_NOMEM, NULL);
        kt_secret_free(k1);
    }
    kt_secret_free(key);
    kt_wipe(&nr, sizeof nr);
    kt_wipe(&rec, sizeof rec);
    return e;
}

static void kt_mig_run_free(struct kt_mig_run *r)
{
    for (size_t i = 0; i < r->n_deps; i++)
        kt_secret_free(r->deps[i].key);
    kt_secret_free(r->target_key);
    if (r->u != NULL)
        kt_wipe(r->u, r->cap_u * sizeof *r->u);
    free(r->u);
    free(r->target);
}

/* The target DEP of a run: registered or migrating, its key read as a
 * rewrap, recovery included (its new customer keys must work): nothing
 * moves into a revoked DEP. */
static keytier_err kt_mig_target_open(struct kt_mig_run *r)
{
    keytier_ctx *ctx = r->ctx;
    keytier_err e = kt_store_dep_get(ctx->store, r->m.target_dep, r->target);
    if (e != KEYTIER_OK)
        return e;
    if (r->target->state == KEYTIER_DEP_DISABLED ||
        r->target->state == KEYTIER_DEP_PURGED ||
        r->target->state == KEYTIER_DEP_OFFBOARDED)
        return kt_err(
            KEYTIER_E_DEP_STATE, "target DEP %s is %s", r->target->dep_id,
            r->target->state == KEYTIER_DEP_PURGED     ? "purged"
            : r->target->state == KEYTIER_DEP_DISABLED ? "disabled"
                                                       : "offboarded");
    return kt_dep_key_read(ctx, r->target, &r->req, KT_FALLBACK_OP_REWRAP, NULL,
                           &r->target_key);
}

/* One batch: the n items rewrapped and applied in one store transaction
 * (*applied: the keys moved), then dropped from this process's cache (the
 * store recorded them for the others). */
static keytier_err kt_mig_batch(struct kt_mig_run *r, const char *migration_id,
                                struct kt_mig_todo *todo, size_t n,
                                size_t *applied)
{
    keytier_err e = KEYTIER_OK;
    r->n_u = 0;
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++)
        e = kt_mig_item(r, &todo[i]);
    if (e == KEYTIER_OK)
        e = kt_store_mig_apply(r->ctx->store, migration_id, r->u, r->n_u,
                               applied);
    if (e != KEYTIER_OK)
        return e;
    for (size_t i = 0; i < r->n_u; i++)
        if (r->u[i].item && !r->u[i].gone)
            (void)kt_avail_uncache(r->ctx, KT_INVAL_KEY, r->u[i].key_id);
    return KEYTIER_OK;
}

/* Progress after a batch: p from the store, its rate and ETA since t0, a
 * "Migration progress" record at each new tenth. */
static keytier_err kt_mig_progress(struct kt_mig_run *r,
                                   const char *migration_id,
                                   keytier_migration *p, uint64_t t0,
                                   uint64_t moved, int *decile)
{
    keytier_err e = kt_store_mig_get(r->ctx->store, migration_id, &r->m);
    if (e != KEYTIER_OK)
        return e;
    kt_mig_fill(&r->m, p);
    double secs = (double)(kt_now_ns() - t0) / 1e9;
    if (secs > 0 && moved > 0) {
        p->rate = (double)moved / secs;
        p->eta_seconds = (double)(p->total - p->done) / p->rate;
    }
    if ((int)(p->percent / 10) != *decile && p->done < p->total) {
        *decile = (int)(p->percent / 10);
        e = kt_lc_audit(r->ctx, "Migration progress", r->target,
                        kt_mig_fields(p));
    }
    return e;
}

/* Batches until no item is left (keys created under another DEP while
 * migrating join in), or until fn asks to pause (*paused). */
static keytier_err kt_mig_batches(struct kt_mig_run *r,
                                  const char *migration_id,
                                  struct kt_mig_todo *todo,
                                  keytier_migration *p, keytier_progress_fn fn,
                                  void *arg, bool *paused)
{
    keytier_err e;
    uint64_t t0 = kt_now_ns(), moved = 0;
    int decile = (int)(p->percent / 10);
    for (;;) {
        size_t n = 0, applied = 0;
        e = kt_store_mig_todo(r->ctx->store, migration_id, KT_MIG_BATCH, todo,
                              &n);
        if (e != KEYTIER_OK)
            return e;
        if (n == 0) {
            size_t added = 0;
            if (strncmp(r->m.scope, "name:", 5) != 0) {
                e = kt_store_mig_add(r->ctx->store, &r->m, &added);
                if (e != KEYTIER_OK)
                    return e;
            }
            if (added == 0)
                return KEYTIER_OK;
            continue;
        }
        e = kt_mig_batch(r, migration_id, todo, n, &applied);
        if (e != KEYTIER_OK)
            return e;
        moved += applied;
        e = kt_mig_progress(r, migration_id, p, t0, moved, &decile);
        if (e != KEYTIER_OK)
            return e;
        if (fn != NULL && fn(arg, p) != 0) {
            *paused = true; /* the next run continues */
            return KEYTIER_OK;
        }
    }
}

/* A finished recovery of a whole DEP: the lost DEP holds nothing any more,
 * it is disabled and leaves the cache, with a record naming its
 * replacement. */
static keytier_err kt_mig_recovered(struct kt_mig_run *r)
{
    keytier_ctx *ctx = r->ctx;
    const char *lost = r->m.scope + 4;
    keytier_err e =
        kt_store_dep_set_state(ctx->store, lost, KEYTIER_DEP_DISABLED);
    (void)kt_avail_uncache(ctx, KT_INVAL_DEP, lost);
    struct kt_dep_rec *old = e == KEYTIER_OK ? malloc(sizeof *old) : NULL;
    if (e == KEYTIER_OK && old == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    if (e == KEYTIER_OK)
        e = kt_store_dep_get(ctx->store, lost, old);
    if (e == KEYTIER_OK) {
        json_object *f = json_object_new_object();
        if (f != NULL) {
            json_object_object_add(f, "MigrationId",
                                   json_object_new_string(r->m.migration_id));
            json_object_object_add(f, "ReplacedBy",
                                   json_object_new_string(r->m.target_dep));
        }
        e = kt_lc_audit(ctx, "DEP disabled after recovery", old, f);
    }
    if (old != NULL)
        kt_wipe(old, sizeof *old);
    free(old);
    return e;
}

/* No item left: the migration is finished in the store (a recovered DEP
 * disabled), p its final state, and a "Migration completed" record. */
static keytier_err kt_mig_complete(struct kt_mig_run *r,
                                   const char *migration_id,
                                   keytier_migration *p, bool *finished)
{
    keytier_ctx *ctx = r->ctx;
    keytier_err e = kt_store_mig_finish(ctx->store, migration_id,
                                        r->m.target_dep, finished);
    if (e != KEYTIER_OK || !*finished) /* finished by another process */
        return e;
    if (strcmp(r->m.operation, "recover") == 0 &&
        strncmp(r->m.scope, "dep:", 4) == 0) {
        e = kt_mig_recovered(r);
        if (e != KEYTIER_OK)
            return e;
    }
    e = kt_store_mig_get(ctx->store, migration_id, &r->m);
    if (e != KEYTIER_OK)
        return e;
    double rate = p->rate;
    kt_mig_fill(&r->m, p);
    p->rate = rate;
    p->eta_seconds = 0;
    return kt_lc_audit(ctx, "Migration completed", r->target, kt_mig_fields(p));
}

/* A run of migration_id: its record, request, depth and the target's DEP
 * key (not for a finished migration: r->m.state 1).  kt_mig_run_free
 * frees it, also after a failure. */
static keytier_err kt_mig_open(struct kt_mig_run *r, keytier_ctx *ctx,
                               const char *migration_id)
{
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    keytier_err e = kt_store_mig_get(ctx->store, migration_id, &r->m);
    if (e != KEYTIER_OK || r->m.state == 1)
        return e;
    keytier_internal_op op;
    if (!kt_internal_op_lookup(r->m.operation, &op))
        return kt_err(KEYTIER_E_FORMAT, "migration %s: operation '%s' unknown",
                      migration_id, r->m.operation);
    r->req = (keytier_request){KEYTIER_REQUEST_INTERNAL, op, r->m.migration_id,
                               NULL};
    const struct kt_workload_cfg *w =
        kt_config_workload(&ctx->cfg, r->m.workload);
    if (w == NULL)
        return kt_err(KEYTIER_E_CONFIG, "unknown workload '%s'", r->m.workload);
    r->target = malloc(sizeof *r->target);
    if (r->target == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    r->depth = kt_shape_depth(w->shape);
    return kt_mig_target_open(r);
}

KEYTIER_API keytier_err keytier_migrate_run(keytier_ctx *ctx,
                                            const char *migration_id,
                                            keytier_progress_fn fn, void *arg,
                                            keytier_migration *out)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(migration_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_migrate_run");
    struct kt_mig_run r;
    keytier_migration p;
    struct kt_mig_todo *todo = NULL;
    bool paused = false, finished = false;
    keytier_err e = kt_mig_open(&r, ctx, migration_id);
    kt_mig_fill(&r.m, &p);
    if (e != KEYTIER_OK)
        goto out;
    if (r.m.state == 1)
        goto report;
    todo = calloc(KT_MIG_BATCH, sizeof *todo);
    e = todo ? kt_mig_batches(&r, migration_id, todo, &p, fn, arg, &paused)
             : kt_err(KEYTIER_E_NOMEM, NULL);
    if (e != KEYTIER_OK)
        goto out;
    if (paused)
        goto report;
    e = kt_mig_complete(&r, migration_id, &p, &finished);
    if (e != KEYTIER_OK)
        goto out;
    if (fn != NULL)
        (void)fn(arg, &p);
report:
    if (out != NULL)
        *out = p;
out:
    kt_mig_run_free(&r);
    if (todo != NULL)
        kt_wipe(todo, KT_MIG_BATCH * sizeof *todo);
    free(todo);
    return e;
}

static keytier_err kt_target_check(keytier_ctx *ctx, const char *tenant,
                                   const char *workload, const char *dep_id,
                                   struct kt_dep_rec *d)
{
    keytier_err e = kt_store_dep_get(ctx->store, dep_id, d);
    if (e != KEYTIER_OK)
        return e;
    if (strcmp(d->tenant, tenant) != 0)
        return kt_err(KEYTIER_E_WRONG_TENANT,
                      "DEP %s does not belong to tenant %s", dep_id, tenant);
    if (strcmp(d->workload, workload) != 0)
        return kt_err(KEYTIER_E_ARGS, "DEP %s is for workload %s, not %s",
                      dep_id, d->workload, workload);
    if (d->state != KEYTIER_DEP_REGISTERED && d->state != KEYTIER_DEP_MIGRATING)
        return kt_err(KEYTIER_E_DEP_STATE,
                      "DEP %s is not registered (state %d): nothing can be "
                      "assigned to it",
                      dep_id, d->state);
    return KEYTIER_OK;
}

/* Refuses an assignment out of or into a DEP whose customer revoked it
 * (KEYTIER_E_REVOKED), before anything is recorded; an outage does not
 * refuse (keytier_migrate_run checks again, and then needs the keys). */
static keytier_err kt_assign_not_revoked(keytier_ctx *ctx,
                                         const struct kt_dep_rec *d,
                                         const keytier_request *req)
{
    kt_secret *key = NULL;
    keytier_err e =
        kt_dep_key_read(ctx, d, req, KT_FALLBACK_OP_REWRAP, NULL, &key);
    kt_secret_free(key);
    if (e == KEYTIER_E_UNAVAILABLE) {
        kt_err_clear();
        e = KEYTIER_OK;
    }
    return e;
}

static keytier_err kt_mig_record(keytier_ctx *ctx, const struct kt_dep_rec *d,
                                 const char *scope, const char *operation,
                                 keytier_migration *out)
{
    struct kt_mig_rec m;
    uint8_t id[KT_UUID_BYTES];
    size_t total = 0;
    memset(&m, 0, sizeof m);
    if (!kt_uuid_new(id))
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    kt_uuid_format(id, m.migration_id);
    kt_strlcpy(m.tenant, d->tenant, sizeof m.tenant);
    kt_strlcpy(m.workload, d->workload, sizeof m.workload);
    kt_strlcpy(m.target_dep, d->dep_id, sizeof m.target_dep);
    kt_strlcpy(m.scope, scope, sizeof m.scope);
    kt_strlcpy(m.operation, operation, sizeof m.operation);
    m.created = kt_lc_clock();
    keytier_err e = kt_store_mig_create(ctx->store, &m, &total);
    if (e != KEYTIER_OK)
        return e;
    m.total = total;
    keytier_migration p;
    kt_mig_fill(&m, &p);
    e = kt_lc_audit(ctx,
                    strcmp(operation, "recover") == 0 ? "DEP recovery started"
                                                      : "DEP assigned",
                    d, kt_mig_fields(&p));
    if (out != NULL)
        *out = p;
    return e;
}

/* A named site under a TIK moves only with its TIK. */
static keytier_err kt_assign_site_alone(const struct kt_key_rec *rec,
                                        const char *name)
{
    if (rec->tik_id[0] == '\0')
        return KEYTIER_OK;
    return kt_err(KEYTIER_E_ARGS,
                  "site %s is under tenant intermediate key %s: sites under "
                  "a TIK move with it; assign the tenant's whole workload (no "
                  "name)",
                  name, rec->tik_id);
}

KEYTIER_API keytier_err keytier_assign(keytier_ctx *ctx, const char *tenant,
                                       const char *workload, const char *name,
                                       const char *dep_id,
                                       keytier_migration *out)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX) ||
        (name != NULL && !kt_text_ok(name, KEYTIER_NAME_MAX)) ||
        !kt_text_ok(dep_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_assign");
    struct kt_dep_rec *d = malloc(sizeof *d);
    struct kt_dep_rec *src = NULL;
    struct kt_key_rec rec;
    char scope[KEYTIER_NAME_MAX + 8];
    const keytier_request req = {KEYTIER_REQUEST_INTERNAL,
                                 KEYTIER_INTERNAL_ASSIGN, NULL, NULL};
    memset(&rec, 0, sizeof rec);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_target_check(ctx, tenant, workload, dep_id, d);
    if (e == KEYTIER_OK)
        e = kt_assign_not_revoked(ctx, d, &req);
    if (e != KEYTIER_OK)
        goto out;
    if (name != NULL) {
        e = kt_store_key_get_by_name(ctx->store, tenant, workload, name, &rec);
        if (e == KEYTIER_E_NOT_FOUND) {
            /* Nothing written yet: whatever comes is under the DEP from the
             * first byte. */
            keytier_key *dk = NULL;
            kt_err_clear();
            e = keytier_dep_key_open(ctx, &req, tenant, dep_id, &dk);
            if (e == KEYTIER_OK)
                e = keytier_key_create(dk, name, NULL);
            keytier_key_close(dk);
            if (e != KEYTIER_OK)
                goto out;
            json_object *f = json_object_new_object();
            if (f != NULL)
                json_object_object_add(f, "Scope",
                                       json_object_new_string(name));
            e = kt_lc_audit(ctx, "DEP assigned", d, f);
            if (out != NULL) {
                struct kt_mig_rec m;
                memset(&m, 0, sizeof m);
                kt_strlcpy(m.tenant, tenant, sizeof m.tenant);
                kt_strlcpy(m.workload, workload, sizeof m.workload);
                kt_strlcpy(m.target_dep, dep_id, sizeof m.target_dep);
                snprintf(m.scope, sizeof m.scope, "name:%s", name);
                kt_strlcpy(m.operation, "migrate", sizeof m.operation);
                m.state = 1;
                kt_mig_fill(&m, out);
            }
            goto out;
        }
        if (e == KEYTIER_OK)
            e = kt_assign_site_alone(&rec, name);
        if (e != KEYTIER_OK)
            goto out;
        if (strcmp(rec.dep_id, dep_id) != 0) {
            /* Out of a revoked DEP: refused now, nothing recorded. */
            src = malloc(sizeof *src);
            e = src ? kt_store_dep_get(ctx->store, rec.dep_id, src)
                    : kt_err(KEYTIER_E_NOMEM, NULL);
            if (e == KEYTIER_OK)
                e = kt_assign_not_revoked(ctx, src, &req);
            if (e != KEYTIER_OK)
                goto out;
        }
        snprintf(scope, sizeof scope, "name:%s", name);
    } else {
        kt_strlcpy(scope, "all", sizeof scope);
    }
    e = kt_mig_record(ctx, d, scope, "migrate", out);
out:
    kt_wipe(&rec, sizeof rec);
    if (src != NULL)
        kt_wipe(src, sizeof *src);
    free(src);
    free(d);
    return e;
}

KEYTIER_API keytier_err keytier_dep_recover(
    keytier_ctx *ctx, const char *tenant, const char *old_dep_id,
    const char *uri_a, const char *uri_b, keytier_dep_info *new_dep,
    keytier_migration *mig)
{
    return keytier_dep_recover_approved(ctx, NULL, tenant, old_dep_id, uri_a,
                                        uri_b, new_dep, mig);
}

KEYTIER_API keytier_err keytier_dep_recover_approved(
    keytier_ctx *ctx, const char *approval_id, const char *tenant,
    const char *old_dep_id, const char *uri_a, const char *uri_b,
    keytier_dep_info *new_dep, keytier_migration *mig)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(old_dep_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_recover");
    keytier_err ge = kt_approval_gate(ctx, KEYTIER_APPROVAL_RECOVER, tenant,
                                      old_dep_id, approval_id, "recovery");
    if (ge != KEYTIER_OK)
        return ge;
    struct kt_dep_rec *old = malloc(sizeof *old);
    struct kt_dep_rec *nd = malloc(sizeof *nd);
    keytier_dep_info info;
    char scope[KEYTIER_ID_SIZE + 8];
    keytier_err e;
    if (old == NULL || nd == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto out;
    }
    e = kt_store_dep_get(ctx->store, old_dep_id, old);
    if (e == KEYTIER_OK && strcmp(old->tenant, tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "DEP %s does not belong to tenant %s", old_dep_id, tenant);
    if (e == KEYTIER_OK && old->state == KEYTIER_DEP_PURGED)
        e = kt_err(KEYTIER_E_PURGED, "DEP %s was purged", old_dep_id);
    if (e != KEYTIER_OK)
        goto out;
    /* The new DEP takes over the old one's name: to the tenant it is the
     * same policy with new customer keys. */
    const struct kt_dep_create_args a = {
        tenant,    old->workload, old->region[0] != '\0' ? old->region : NULL,
        uri_a,     uri_b,         old->name[0] != '\0' ? old->name : NULL,
        old_dep_id};
    e = kt_dep_create(ctx, &a, &info);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_store_dep_get(ctx->store, info.dep_id, nd);
    if (e != KEYTIER_OK)
        goto out;
    snprintf(scope, sizeof scope, "dep:%s", old_dep_id);
    e = kt_mig_record(ctx, nd, scope, "recover", mig);
    if (e != KEYTIER_OK)
        goto out;
    if (new_dep != NULL)
        e = keytier_dep_show(ctx, tenant, info.dep_id, new_dep);
out:
    free(old);
    free(nd);
    return e;
}

KEYTIER_API keytier_err keytier_migration_get(keytier_ctx *ctx,
                                              const char *tenant,
                                              const char *migration_id,
                                              keytier_migration *out)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(migration_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_migration_get");
    struct kt_mig_rec m;
    keytier_err e = kt_store_mig_get(ctx->store, migration_id, &m);
    if (e == KEYTIER_OK && strcmp(m.tenant, tenant) != 0)
        e = kt_err(KEYTIER_E_WRONG_TENANT,
                   "migration %s does not belong to tenant %s", migration_id,
                   tenant);
    if (e == KEYTIER_OK)
        kt_mig_fill(&m, out);
    return e;
}

KEYTIER_API keytier_err keytier_migration_list(keytier_ctx *ctx,
                                               const char *tenant,
                                               keytier_migration **out,
                                               size_t *count)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || count == NULL ||
        !kt_text_ok(tenant, KEYTIER_TENANT_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_migration_list");
    struct kt_mig_rec *recs = NULL;
    size_t n = 0;
    keytier_err e = kt_store_mig_list(ctx->store, tenant, &recs, &n);
    if (e != KEYTIER_OK)
        return e;
    keytier_migration *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL) {
        free(recs);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    for (size_t i = 0; i < n; i++)
        kt_mig_fill(&recs[i], &list[i]);
    free(recs);
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

/* ---- background runs ---------------------------------------------------- */

struct keytier_migrator {
    keytier_ctx *ctx;
    char id[KEYTIER_ID_SIZE];
    keytier_progress_fn fn;
    void *arg;
    pthread_t thread;
    atomic_bool stop;
    keytier_err result;
    char detail[512];
    keytier_migration progress;
};

static int kt_migrator_progress(void *arg, const keytier_migration *p)
{
    keytier_migrator *m = arg;
    if (m->fn != NULL && m->fn(m->arg, p) != 0)
        return 1;
    return atomic_load(&m->stop) ? 1 : 0;
}

static void *kt_migrator_main(void *arg)
{
    keytier_migrator *m = arg;
    m->result = keytier_migrate_run(m->ctx, m->id, kt_migrator_progress, m,
                                    &m->progress);
    /* The error detail is per thread: carried over to the waiter. */
    if (m->result != KEYTIER_OK) {
        const char *d = keytier_last_error_detail();
        size_t n = strlen(keytier_strerror(m->result));
        if (strncmp(d, keytier_strerror(m->result), n) == 0 && d[n] == ':')
            d += n + 2; /* kt_err puts the message back */
        kt_strlcpy(m->detail, d, sizeof m->detail);
    }
    return NULL;
}

KEYTIER_API keytier_err keytier_migrate_start(keytier_ctx *ctx,
                                              const char *migration_id,
                                              keytier_progress_fn fn, void *arg,
                                              keytier_migrator **out)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL ||
        !kt_text_ok(migration_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_migrate_start");
    keytier_migrator *m = calloc(1, sizeof *m);
    if (m == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    m->ctx = ctx;
    kt_strlcpy(m->id, migration_id, sizeof m->id);
    m->fn = fn;
    m->arg = arg;
    atomic_init(&m->stop, false);
    if (pthread_create(&m->thread, NULL, kt_migrator_main, m) != 0) {
        free(m);
        return kt_err(KEYTIER_E_INTERNAL, "cannot start a migration thread");
    }
    *out = m;
    return KEYTIER_OK;
}

KEYTIER_API void keytier_migrate_stop(keytier_migrator *m)
{
    if (m != NULL)
        atomic_store(&m->stop, true);
}

KEYTIER_API keytier_err keytier_migrate_wait(keytier_migrator *m,
                                             keytier_migration *out)
{
    kt_err_clear();
    if (m == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_migrate_wait");
    pthread_join(m->thread, NULL);
    keytier_err e = m->result;
    if (e != KEYTIER_OK)
        e = kt_err(e, "%s", m->detail);
    else if (out != NULL)
        *out = m->progress;
    free(m);
    return e;
}

/* ---- claimed batches (keytier worker, lifecycle/worker.c) --------------- */

/* A worker's batch in the run: its claim, when the lease was last moved,
 * and what the batch did. */
struct kt_mig_claimed {
    struct kt_worker *w;
    struct kt_claim c;
    uint64_t renewed_ns;
    size_t n, applied, lost, taken_over;
};

/* Moves the lease on once a third of it has passed since it was last set:
 * a batch that waits for a token keeps its claim. */
static keytier_err kt_mig_keep_lease(struct kt_mig_run *r,
                                     struct kt_mig_claimed *b)
{
    uint64_t third = (uint64_t)b->w->lease_ms * 1000000u / 3;
    if (kt_now_ns() - b->renewed_ns < third)
        return KEYTIER_OK;
    size_t held = 0;
    b->c.until_ms = kt_worker_now_ms() + b->w->lease_ms;
    b->renewed_ns = kt_now_ns();
    return kt_store_mig_renew(r->ctx->store, r->m.migration_id, b->c.worker,
                              b->c.until_ms, &held);
}

/* The claimed items rewrapped and applied where the claim is still this
 * worker's; after a failure its claims are released (another worker takes
 * them at once). */
static keytier_err kt_mig_claimed_batch(struct kt_mig_run *r,
                                        struct kt_mig_todo *todo,
                                        struct kt_mig_claimed *b)
{
    const char *id = r->m.migration_id;
    keytier_err e = KEYTIER_OK;
    r->n_u = 0;
    for (size_t i = 0; i < b->n && e == KEYTIER_OK; i++) {
        e = kt_mig_item(r, &todo[i]);
        if (e == KEYTIER_OK)
            e = kt_mig_keep_lease(r, b);
    }
    if (e == KEYTIER_OK)
        e = kt_store_mig_apply_claimed(r->ctx->store, id, b->c.worker, r->u,
                                       r->n_u, &b->applied, &b->lost);
    if (e != KEYTIER_OK) {
        /* keeps e's detail: the release's own failure leaves the claims
         * to run out */
        char detail[512];
        const char *d = keytier_last_error_detail();
        size_t ml = strlen(keytier_strerror(e));
        if (strncmp(d, keytier_strerror(e), ml) == 0 && d[ml] == ':')
            d += ml + 2; /* kt_err puts the message back */
        kt_strlcpy(detail, d, sizeof detail);
        if (kt_store_mig_release(r->ctx->store, id, b->c.worker, NULL) !=
            KEYTIER_OK)
            kt_log_event(r->ctx->log, KT_LOG_WARNING,
                         "claims not released: they run out with their lease",
                         id);
        return kt_err(e, "%s", detail);
    }
    for (size_t i = 0; i < r->n_u; i++)
        if (r->u[i].item && !r->u[i].gone)
            (void)kt_avail_uncache(r->ctx, KT_INVAL_KEY, r->u[i].key_id);
    return KEYTIER_OK;
}

/* The event of a batch, with the migration's progress as stored. */
static void kt_mig_batch_event(struct kt_mig_run *r,
                               const struct kt_mig_claimed *b,
                               const keytier_migration *p)
{
    keytier_worker_event ev = {.what = "migration batch",
                               .tenant = r->m.tenant,
                               .id = r->m.migration_id,
                               .claimed = b->n,
                               .moved = b->applied,
                               .lost = b->lost,
                               .taken_over = b->taken_over,
                               .done = p->done,
                               .total = p->total,
                               .err = KEYTIER_OK,
                               .detail = ""};
    char detail[160];
    if (b->lost > 0) {
        snprintf(detail, sizeof detail,
                 "%zu of %zu claimed items were taken over by another worker "
                 "and not written",
                 b->lost, b->n);
        ev.err = KEYTIER_E_LEASE_LOST;
        ev.detail = detail;
    }
    kt_worker_emit(b->w, &ev);
}

/* Nothing left to claim: new keys of the scope join in (*more), or, with
 * no item left to do, the migration is finished (once, by one worker). */
static keytier_err kt_mig_work_end(struct kt_mig_run *r, struct kt_worker *w,
                                   keytier_migration *p, bool *more)
{
    uint64_t undone = 0, claimed = 0;
    size_t added = 0;
    bool finished = false;
    *more = false;
    keytier_err e = kt_store_mig_undone(r->ctx->store, r->m.migration_id,
                                        kt_worker_now_ms(), &undone, &claimed);
    if (e != KEYTIER_OK || undone > 0) /* held by other workers */
        return e;
    if (strncmp(r->m.scope, "name:", 5) != 0) {
        e = kt_store_mig_add(r->ctx->store, &r->m, &added);
        if (e != KEYTIER_OK || added > 0) {
            *more = added > 0;
            return e;
        }
    }
    e = kt_mig_complete(r, r->m.migration_id, p, &finished);
    if (e == KEYTIER_OK && finished) {
        w->report->migrations_finished++;
        keytier_worker_event ev = {.what = "migration completed",
                                   .tenant = r->m.tenant,
                                   .id = r->m.migration_id,
                                   .done = p->done,
                                   .total = p->total,
                                   .detail = ""};
        kt_worker_emit(w, &ev);
    }
    return e;
}

/* Claims and runs batches until none is left to claim or w asks to stop. */
static keytier_err kt_mig_work_loop(struct kt_mig_run *r, struct kt_worker *w,
                                    struct kt_mig_todo *todo,
                                    keytier_migration *p)
{
    const keytier_worker_opts *o = w->opts;
    uint64_t t0 = kt_now_ns(), moved = 0;
    int decile = (int)(p->percent / 10);
    for (;;) {
        if (o->stop != NULL && o->stop(o->arg)) {
            w->report->stopped = 1;
            return KEYTIER_OK;
        }
        struct kt_mig_claimed b = {.w = w, .renewed_ns = kt_now_ns()};
        b.c.worker = o->worker_id;
        b.c.now_ms = kt_worker_now_ms();
        b.c.until_ms = b.c.now_ms + w->lease_ms;
        keytier_err e =
            kt_store_mig_claim(r->ctx->store, r->m.migration_id, &b.c, w->batch,
                               todo, &b.n, &b.taken_over);
        if (e != KEYTIER_OK)
            return e;
        if (b.n == 0) {
            bool more = false;
            e = kt_mig_work_end(r, w, p, &more);
            if (e != KEYTIER_OK || !more)
                return e;
            continue;
        }
        e = kt_mig_claimed_batch(r, todo, &b);
        if (e != KEYTIER_OK)
            return e;
        moved += b.applied;
        w->report->batches++;
        w->report->moved += b.applied;
        w->report->lost += b.lost;
        w->report->taken_over += b.taken_over;
        e = kt_mig_progress(r, r->m.migration_id, p, t0, moved, &decile);
        kt_mig_batch_event(r, &b, p);
        if (e != KEYTIER_OK)
            return e;
    }
}

keytier_err kt_mig_work(keytier_ctx *ctx, const char *migration_id,
                        struct kt_worker *w)
{
    struct kt_mig_run r;
    keytier_migration p;
    struct kt_mig_todo *todo = NULL;
    keytier_err e = kt_mig_open(&r, ctx, migration_id);
    kt_mig_fill(&r.m, &p);
    if (e == KEYTIER_OK && r.m.state != 1) {
        todo = calloc(w->batch, sizeof *todo);
        e = todo ? kt_mig_work_loop(&r, w, todo, &p)
                 : kt_err(KEYTIER_E_NOMEM, NULL);
    }
    kt_mig_run_free(&r);
    if (todo != NULL)
        kt_wipe(todo, w->batch * sizeof *todo);
    free(todo);
    return e;
}
