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

keytier_err kt_store_mig_todo(struct kt_store *st, const char *id, size_t max,
                              struct kt_mig_todo *out, size_t *n)
{
    struct kt_stmt s;
    bool row = false;
    keytier_err e = KEYTIER_OK;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    /* The items to do with their keys, in one read (a deleted key comes
     * back with NULL columns). */
    kt_stmt_prep(
        &s, st, "migration items",
        "SELECT k.key_id, k.tenant, k.workload, k.dep_id, "
        "k.parent_id, k.level, k.name, k.created, k.wrapped, "
        "k.tik_id, i.key_id FROM migration_items i LEFT JOIN tier_keys k ON "
        "k.key_id = i.key_id WHERE i.migration_id = ?1 AND "
        "i.done = 0 LIMIT ?2");
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_int64(&s, 2, (int64_t)max);
    while (*n < max && (e = kt_stmt_step(&s, &row)) == KEYTIER_OK && row) {
        struct kt_mig_todo *t = &out[*n];
        memset(t, 0, sizeof *t);
        kt_stmt_col_text(&s, 10, t->key_id, sizeof t->key_id);
        t->gone = kt_stmt_col_null(&s, 0);
        e = t->gone ? kt_stmt_err(&s) : kt_key_row(&s, &t->rec);
        if (e != KEYTIER_OK)
            break;
        (*n)++;
    }
    kt_stmt_done(&s);
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
                              "UPDATE migration_items SET done = 1 WHERE "
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

/* The rows of a batch, inside the caller's transaction. */
static keytier_err kt_mig_apply_rows(struct kt_store *st, const char *id,
                                     const struct kt_mig_update *u, size_t n,
                                     size_t *applied)
{
    bool skip = false;
    for (size_t i = 0; i < n; i++) {
        if (u[i].item)
            skip = false;
        if (skip)
            continue;
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

keytier_err kt_store_mig_apply(struct kt_store *st, const char *id,
                               const struct kt_mig_update *u, size_t n,
                               size_t *applied)
{
    const char *t[] = {id};
    *applied = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_mig_apply_rows(st, id, u, n, applied);
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
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_finish(struct kt_store *st, const char *id,
                                const char *target_dep)
{
    const char *t[] = {id};
    const char *d[] = {target_dep};
    const int64_t done = 1, registered = KEYTIER_DEP_REGISTERED;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "finish migration",
                      "UPDATE migrations SET state = ?2 WHERE "
                      "migration_id = ?1",
                      t, 1, &done);
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
