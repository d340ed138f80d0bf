/*
 * Migrations in the store: a migration row (its counters kept with it) and
 * one migration_items row per level-1 key to move to the target DEP.  A
 * batch moves keys and marks their items done in one transaction.
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

/* Adds to migration m every level-1 key of its tenant and workload that is
 * not under its target DEP, restricted to one name or one source DEP. */
static keytier_err kt_mig_add_locked(struct kt_store *st,
                                     const struct kt_mig_rec *m, size_t *added)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "migration items",
                 "INSERT INTO migration_items(migration_id, key_id) "
                 "SELECT ?1, key_id FROM tier_keys WHERE tenant = ?2 AND "
                 "workload = ?3 AND level = 1 AND dep_id != ?4 AND "
                 "(?5 IS NULL OR name = ?5) AND (?6 IS NULL OR dep_id = ?6) "
                 "ON CONFLICT (migration_id, key_id) DO NOTHING");
    kt_stmt_bind_text(&s, 1, m->migration_id);
    kt_stmt_bind_text(&s, 2, m->tenant);
    kt_stmt_bind_text(&s, 3, m->workload);
    kt_stmt_bind_text(&s, 4, m->target_dep);
    kt_stmt_bind_text(&s, 5,
                      !strncmp(m->scope, "name:", 5) ? m->scope + 5 : NULL);
    kt_stmt_bind_text(&s, 6,
                      !strncmp(m->scope, "dep:", 4) ? m->scope + 4 : NULL);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    if (e != KEYTIER_OK)
        return e;
    *added = (size_t)kt_db_changes(st);
    if (*added == 0)
        return KEYTIER_OK;
    /* The counters move with the items, so progress is one row read. */
    const char *t[] = {m->migration_id};
    const int64_t n = (int64_t)*added;
    return kt_db_run(st, "migration items",
                     "UPDATE migrations SET total = total + ?2 WHERE "
                     "migration_id = ?1",
                     t, 1, &n);
}

static keytier_err kt_mig_insert(struct kt_store *st,
                                 const struct kt_mig_rec *m)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "create migration",
                 "INSERT INTO migrations(migration_id, tenant, workload, "
                 "target_dep, scope, operation, state, created) VALUES "
                 "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    kt_stmt_bind_text(&s, 1, m->migration_id);
    kt_stmt_bind_text(&s, 2, m->tenant);
    kt_stmt_bind_text(&s, 3, m->workload);
    kt_stmt_bind_text(&s, 4, m->target_dep);
    kt_stmt_bind_text(&s, 5, m->scope);
    kt_stmt_bind_text(&s, 6, m->operation);
    kt_stmt_bind_int(&s, 7, m->state);
    kt_stmt_bind_int64(&s, 8, m->created);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_mig_create(struct kt_store *st, const struct kt_mig_rec *m,
                                size_t *total)
{
    const char *t[] = {m->target_dep};
    const int64_t migrating = KEYTIER_DEP_MIGRATING;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_mig_insert(st, m);
    if (e == KEYTIER_OK)
        e = kt_mig_add_locked(st, m, total);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "create migration",
                      "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND "
                      "state = 1",
                      t, 1, &migrating);
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_db_commit(st);
    goto out;
fail:
    kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_add(struct kt_store *st, const struct kt_mig_rec *m,
                             size_t *added)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_mig_add_locked(st, m, added);
        if (e == KEYTIER_OK)
            e = kt_db_commit(st);
        else
            kt_db_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

#define KT_MIG_COLS                                                            \
    "m.migration_id, m.tenant, m.workload, m.target_dep, m.scope, "            \
    "m.operation, m.state, m.created, m.total, m.done"

static keytier_err kt_mig_row(struct kt_stmt *s, struct kt_mig_rec *m)
{
    memset(m, 0, sizeof *m);
    kt_stmt_col_text(s, 0, m->migration_id, sizeof m->migration_id);
    kt_stmt_col_text(s, 1, m->tenant, sizeof m->tenant);
    kt_stmt_col_text(s, 2, m->workload, sizeof m->workload);
    kt_stmt_col_text(s, 3, m->target_dep, sizeof m->target_dep);
    kt_stmt_col_text(s, 4, m->scope, sizeof m->scope);
    kt_stmt_col_text(s, 5, m->operation, sizeof m->operation);
    m->state = kt_stmt_col_int(s, 6);
    m->created = kt_stmt_col_int64(s, 7);
    m->total = (uint64_t)kt_stmt_col_int64(s, 8);
    m->done = (uint64_t)kt_stmt_col_int64(s, 9);
    return kt_stmt_err(s);
}

keytier_err kt_store_mig_get(struct kt_store *st, const char *id,
                             struct kt_mig_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read migration",
                 "SELECT " KT_MIG_COLS " FROM migrations m WHERE "
                 "m.migration_id = ?1");
    kt_stmt_bind_text(&s, 1, id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        e = kt_mig_row(&s, out);
    else if (e == KEYTIER_OK)
        e = kt_err(KEYTIER_E_NOT_FOUND, "migration %s", id);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* kt_mig_row into the kt_mig_rec at p (kt_stmt_collect). */
static keytier_err kt_mig_row_any(struct kt_stmt *s, void *p)
{
    return kt_mig_row(s, p);
}

keytier_err kt_store_mig_list(struct kt_store *st, const char *tenant,
                              struct kt_mig_rec **out, size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list migrations",
                 "SELECT " KT_MIG_COLS " FROM migrations m WHERE "
                 "m.tenant = ?1 ORDER BY m.created, m.rowid");
    kt_stmt_bind_text(&s, 1, tenant);
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 4, kt_mig_row_any, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}

keytier_err kt_store_mig_runnable(struct kt_store *st, struct kt_mig_rec **out,
                                  size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list migrations",
                 "SELECT " KT_MIG_COLS " FROM migrations m WHERE "
                 "m.state = 0 ORDER BY m.created, m.migration_id");
    void *list = NULL;
    *count = 0;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 4, kt_mig_row_any, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}

keytier_err kt_mig_todo_rows(struct kt_stmt *s, size_t max,
                             struct kt_mig_todo *out, size_t *n)
{
    bool row = false;
    keytier_err e = KEYTIER_OK;
    while (*n < max && (e = kt_stmt_step(s, &row)) == KEYTIER_OK && row) {
        struct kt_mig_todo *t = &out[*n];
        memset(t, 0, sizeof *t);
        kt_stmt_col_text(s, 10, t->key_id, sizeof t->key_id);
        t->gone = kt_stmt_col_null(s, 0);
        e = t->gone ? kt_stmt_err(s) : kt_key_row(s, &t->rec);
        if (e != KEYTIER_OK)
            break;
        (*n)++;
    }
    kt_stmt_done(s);
    return e;
}

keytier_err kt_store_mig_todo(struct kt_store *st, const char *id, size_t max,
                              struct kt_mig_todo *out, size_t *n)
{
    struct kt_stmt s;
    keytier_err e;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    /* The items to do with their keys, in one read (a deleted key comes
     * back with NULL columns). */
    kt_stmt_prep(&s, st, "migration items",
                 "SELECT " KT_MIG_TODO_COLS " WHERE i.migration_id = ?1 AND "
                 "i.done = 0 LIMIT ?2");
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_int64(&s, 2, (int64_t)max);
    e = kt_mig_todo_rows(&s, max, out, n);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* Moves one key of a batch; *moved false when another run moved it since
 * it was read (its row no longer names old_dep). */
static keytier_err kt_mig_move_key(struct kt_store *st,
                                   const struct kt_mig_update *u, bool *moved)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "migrate key",
                 "UPDATE tier_keys SET dep_id = ?2, parent_id = ?3, "
                 "wrapped = ?4 WHERE key_id = ?1 AND dep_id = ?5");
    kt_stmt_bind_text(&s, 1, u->key_id);
    kt_stmt_bind_text(&s, 2, u->dep_id);
    kt_stmt_bind_text(&s, 3, u->parent_id);
    kt_stmt_bind_blob(&s, 4, u->wrapped, sizeof u->wrapped);
    kt_stmt_bind_text(&s, 5, u->old_dep);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    *moved = e == KEYTIER_OK && kt_db_changes(st) > 0;
    return e;
}

/* Marks the item of a level-1 key done (counted in *applied the first
 * time) and invalidates the caches of a key that moved: cached copies
 * would open under the old parent. */
static keytier_err kt_mig_item_done(struct kt_store *st, const char *id,
                                    const struct kt_mig_update *u,
                                    size_t *applied)
{
    const char *t[] = {id, u->key_id};
    keytier_err e = kt_db_run(st, "migrate key",
                              "UPDATE migration_items SET done = 1, "
                              "claimed_by = NULL, lease_until = NULL WHERE "
                              "migration_id = ?1 AND key_id = ?2 AND done = 0",
                              t, 2, NULL);
    if (e != KEYTIER_OK)
        return e;
    if (kt_db_changes(st) == 1)
        (*applied)++;
    if (u->gone)
        return KEYTIER_OK;
    return kt_inval_add(st, KT_INVAL_KEY, u->key_id, "migrate");
}

/* Whether worker still holds the claim of item key_id (not done, claimed
 * by no one else since).  Inside the applying transaction; PostgreSQL:
 * SELECT ... FOR UPDATE, so that no claim moves before the commit. */
static keytier_err kt_mig_claim_held(struct kt_store *st, const char *id,
                                     const char *key_id, const char *worker,
                                     bool *held)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "check claim",
                 KT_DIALECT(st,
                            "SELECT 1 FROM migration_items WHERE "
                            "migration_id = ?1 AND key_id = ?2 AND "
                            "claimed_by = ?3 AND done = 0",
                            "SELECT 1 FROM migration_items WHERE "
                            "migration_id = ?1 AND key_id = ?2 AND "
                            "claimed_by = ?3 AND done = 0 FOR UPDATE"));
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_text(&s, 2, key_id);
    kt_stmt_bind_text(&s, 3, worker);
    keytier_err e = kt_stmt_step(&s, held);
    kt_stmt_done(&s);
    return e;
}

/* The rows of a batch, inside the caller's transaction.  With a worker,
 * an item whose claim it no longer holds is skipped with its subtree and
 * counted in *lost: another worker took it over. */
static keytier_err kt_mig_apply_rows(struct kt_store *st, const char *id,
                                     const char *worker,
                                     const struct kt_mig_update *u, size_t n,
                                     size_t *applied, size_t *lost)
{
    bool skip = false;
    for (size_t i = 0; i < n; i++) {
        if (u[i].item)
            skip = false;
        if (skip)
            continue;
        if (u[i].item && worker != NULL) {
            bool held = false;
            keytier_err e =
                kt_mig_claim_held(st, id, u[i].key_id, worker, &held);
            if (e != KEYTIER_OK)
                return e;
            if (!held) {
                (*lost)++;
                skip = true;
                continue;
            }
        }
        /* gone: the key was deleted since the item was listed */
        if (!u[i].gone) {
            bool moved;
            keytier_err e = kt_mig_move_key(st, &u[i], &moved);
            if (e != KEYTIER_OK)
                return e;
            if (!moved) {
                /* Moved by another run since we read it: its subtree is
                 * left alone and the item stays to do. */
                skip = u[i].item;
                continue;
            }
        }
        if (u[i].item) {
            keytier_err e = kt_mig_item_done(st, id, &u[i], applied);
            if (e != KEYTIER_OK)
                return e;
        }
    }
    return KEYTIER_OK;
}

/* The claims worker still holds in migration id and did not complete
 * (a key another run moved first) are let go. */
static keytier_err kt_mig_release_locked(struct kt_store *st, const char *id,
                                         const char *worker, size_t *released)
{
    const char *t[] = {id, worker};
    keytier_err e = kt_db_run(st, "release claims",
                              "UPDATE migration_items SET claimed_by = NULL, "
                              "lease_until = NULL WHERE migration_id = ?1 AND "
                              "claimed_by = ?2 AND done = 0",
                              t, 2, NULL);
    if (e == KEYTIER_OK && released != NULL)
        *released = (size_t)kt_db_changes(st);
    return e;
}

keytier_err kt_store_mig_apply(struct kt_store *st, const char *id,
                               const struct kt_mig_update *u, size_t n,
                               size_t *applied)
{
    size_t lost = 0;
    return kt_store_mig_apply_claimed(st, id, NULL, u, n, applied, &lost);
}

keytier_err kt_store_mig_apply_claimed(struct kt_store *st, const char *id,
                                       const char *worker,
                                       const struct kt_mig_update *u, size_t n,
                                       size_t *applied, size_t *lost)
{
    const char *t[] = {id};
    *applied = 0;
    *lost = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_mig_apply_rows(st, id, worker, u, n, applied, lost);
    if (e == KEYTIER_OK && worker != NULL)
        e = kt_mig_release_locked(st, id, worker, NULL);
    if (e == KEYTIER_OK && *applied > 0) {
        const int64_t done = (int64_t)*applied;
        e = kt_db_run(st, "migrate key",
                      "UPDATE migrations SET done = done + ?2 WHERE "
                      "migration_id = ?1",
                      t, 1, &done);
    }
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_db_commit(st);
    goto out;
fail:
    kt_db_rollback(st);
    *applied = 0;
    *lost = 0;
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_finish(struct kt_store *st, const char *id,
                                const char *target_dep, bool *finished)
{
    const char *t[] = {id};
    const char *d[] = {target_dep};
    const int64_t done = 1, registered = KEYTIER_DEP_REGISTERED;
    *finished = false;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    /* Once, and only with no item left to do: of several workers that
     * find nothing to claim, one finishes it. */
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "finish migration",
                      "UPDATE migrations SET state = ?2 WHERE "
                      "migration_id = ?1 AND state = 0 AND NOT EXISTS "
                      "(SELECT 1 FROM migration_items i WHERE "
                      "i.migration_id = ?1 AND i.done = 0)",
                      t, 1, &done);
    if (e == KEYTIER_OK)
        *finished = kt_db_changes(st) == 1;
    /* The target leaves `migrating` once no other migration to it runs. */
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "finish migration",
                      "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND "
                      "state = 3 AND NOT EXISTS (SELECT 1 FROM migrations "
                      "WHERE target_dep = ?1 AND state = 0)",
                      d, 1, &registered);
    if (e == KEYTIER_OK)
        e = kt_db_commit(st);
    else
        kt_db_rollback(st);
    pthread_mutex_unlock(&st->mu);
    return e;
}
