/*
 * Claims of migration items under a lease (keytier worker, docs/DESIGN.md
 * "Workers"): a worker claims a batch of items in one short transaction,
 * rewraps it outside any transaction, and applies it with
 * kt_store_mig_apply_claimed, which writes an item only while the worker
 * still holds its claim.  A worker that dies leaves its claims to run out;
 * the next claimer takes them over.
 *
 * SQLite: every change runs under BEGIN IMMEDIATE (one writer at a time),
 * so the rows a claimer selects cannot be claimed by another before its
 * UPDATE.  PostgreSQL: a claim runs without the store-wide lock
 * (kt_db_begin_rows), its selections read `FOR UPDATE SKIP LOCKED`, so
 * claimers on every node run at once and each skips the rows another is
 * claiming instead of waiting for them; under READ COMMITTED a row another
 * claimer committed meanwhile is checked again as it is now (its new
 * lease leaves it out).  The claim check of store_mig.c locks its row
 * (`FOR UPDATE`): an item being written by its holder is skipped by a
 * claimer, and an item a claimer took over is seen as lost by its old
 * holder.
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

/* Steps s (its column 0 an id) into ids from *n on, up to max, and
 * finishes s. */
static keytier_err kt_stmt_ids(struct kt_stmt *s, char (*ids)[KEYTIER_ID_SIZE],
                               size_t max, size_t *n)
{
    bool row = false;
    keytier_err e = KEYTIER_OK;
    while (*n < max && (e = kt_stmt_step(s, &row)) == KEYTIER_OK && row) {
        kt_stmt_col_text(s, 0, ids[*n], KEYTIER_ID_SIZE);
        e = kt_stmt_err(s);
        if (e != KEYTIER_OK)
            break;
        (*n)++;
    }
    kt_stmt_done(s);
    return e;
}

/* Up to max - *n candidates of one kind into ids from *n on: expired
 * claims (a dead worker's batch, taken over first, oldest lease first)
 * or unclaimed items.  Both ranges of index migration_items_claim
 * (migration_id, done, lease_until; claimed_by and lease_until are set
 * and cleared together), so a scan stops after max rows however many
 * items the migration has. */
static keytier_err kt_mig_claim_range(struct kt_store *st, const char *id,
                                      int64_t now_ms, bool expired_ones,
                                      size_t max, char (*ids)[KEYTIER_ID_SIZE],
                                      bool *expired, size_t *n)
{
    struct kt_stmt s;
    size_t from = *n;
    if (expired_ones) {
        kt_stmt_prep(&s, st, "claim items",
                     KT_DIALECT(st,
                                "SELECT key_id FROM migration_items WHERE "
                                "migration_id = ?1 AND done = 0 AND "
                                "lease_until <= ?3 ORDER BY lease_until "
                                "LIMIT ?2",
                                "SELECT key_id FROM migration_items WHERE "
                                "migration_id = ?1 AND done = 0 AND "
                                "lease_until <= ?3 ORDER BY lease_until "
                                "LIMIT ?2 FOR UPDATE SKIP LOCKED"));
        kt_stmt_bind_int64(&s, 3, now_ms);
    } else {
        kt_stmt_prep(&s, st, "claim items",
                     KT_DIALECT(st,
                                "SELECT key_id FROM migration_items WHERE "
                                "migration_id = ?1 AND done = 0 AND "
                                "lease_until IS NULL LIMIT ?2",
                                "SELECT key_id FROM migration_items WHERE "
                                "migration_id = ?1 AND done = 0 AND "
                                "lease_until IS NULL LIMIT ?2 FOR UPDATE "
                                "SKIP LOCKED"));
    }
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_int64(&s, 2, (int64_t)(max - *n));
    keytier_err e = kt_stmt_ids(&s, ids, max, n);
    for (size_t i = from; i < *n; i++)
        expired[i] = expired_ones;
    return e;
}

/* The candidates of a claim: up to max items not done, first those whose
 * lease ran out, then unclaimed ones, into ids; expired[i] says the item
 * had a claim. */
static keytier_err kt_mig_claim_pick(struct kt_store *st, const char *id,
                                     int64_t now_ms, size_t max,
                                     char (*ids)[KEYTIER_ID_SIZE],
                                     bool *expired, size_t *n)
{
    *n = 0;
    keytier_err e =
        kt_mig_claim_range(st, id, now_ms, true, max, ids, expired, n);
    if (e == KEYTIER_OK && *n < max)
        e = kt_mig_claim_range(st, id, now_ms, false, max, ids, expired, n);
    return e;
}

/* Claims the picked items for c->worker until c->until_ms. */
static keytier_err kt_mig_claim_set(struct kt_store *st, const char *id,
                                    const struct kt_claim *c,
                                    char (*ids)[KEYTIER_ID_SIZE], size_t n)
{
    keytier_err e = KEYTIER_OK;
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++) {
        struct kt_stmt s;
        kt_stmt_prep(&s, st, "claim items",
                     "UPDATE migration_items SET claimed_by = ?3, "
                     "lease_until = ?4 WHERE migration_id = ?1 AND "
                     "key_id = ?2 AND done = 0");
        kt_stmt_bind_text(&s, 1, id);
        kt_stmt_bind_text(&s, 2, ids[i]);
        kt_stmt_bind_text(&s, 3, c->worker);
        kt_stmt_bind_int64(&s, 4, c->until_ms);
        e = kt_stmt_exec(&s);
        kt_stmt_done(&s);
    }
    return e;
}

/* The items just claimed, with their keys (out[i] for ids[i]). */
static keytier_err kt_mig_claimed_rows(struct kt_store *st, const char *id,
                                       char (*ids)[KEYTIER_ID_SIZE],
                                       size_t picked, struct kt_mig_todo *out,
                                       size_t *n)
{
    keytier_err e = KEYTIER_OK;
    *n = 0;
    for (size_t i = 0; i < picked && e == KEYTIER_OK; i++) {
        struct kt_stmt s;
        kt_stmt_prep(&s, st, "claim items",
                     "SELECT " KT_MIG_TODO_COLS " WHERE i.migration_id = ?1 "
                     "AND i.key_id = ?2");
        kt_stmt_bind_text(&s, 1, id);
        kt_stmt_bind_text(&s, 2, ids[i]);
        e = kt_mig_todo_rows(&s, *n + 1, out, n);
    }
    return e;
}

keytier_err kt_store_mig_claim(struct kt_store *st, const char *id,
                               const struct kt_claim *c, size_t max,
                               struct kt_mig_todo *out, size_t *n,
                               size_t *taken_over)
{
    char(*ids)[KEYTIER_ID_SIZE] = calloc(max ? max : 1, sizeof *ids);
    bool *expired = calloc(max ? max : 1, sizeof *expired);
    size_t picked = 0;
    *n = 0;
    *taken_over = 0;
    if (ids == NULL || expired == NULL) {
        free(ids);
        free(expired);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin_rows(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_mig_claim_pick(st, id, c->now_ms, max, ids, expired, &picked);
    if (e == KEYTIER_OK)
        e = kt_mig_claim_set(st, id, c, ids, picked);
    if (e == KEYTIER_OK)
        e = kt_mig_claimed_rows(st, id, ids, picked, out, n);
    if (e != KEYTIER_OK) {
        kt_db_rollback(st);
        *n = 0;
        goto out;
    }
    e = kt_db_commit(st);
    if (e != KEYTIER_OK) {
        *n = 0;
        goto out;
    }
    for (size_t i = 0; i < picked; i++)
        *taken_over += expired[i];
out:
    pthread_mutex_unlock(&st->mu);
    free(ids);
    free(expired);
    return e;
}

/* Runs sql (?1 the migration, ?2 the worker, ?3 *num when not NULL) on
 * the worker's claims in a transaction: *changed the items it changed
 * (0 on failure). */
static keytier_err kt_mig_claims_update(struct kt_store *st, const char *what,
                                        const char *sql, const char *id,
                                        const char *worker, const int64_t *num,
                                        size_t *changed)
{
    const char *t[] = {id, worker};
    size_t n = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, what, sql, t, 2, num);
    if (e == KEYTIER_OK) {
        n = (size_t)kt_db_changes(st);
        e = kt_db_commit(st);
    } else {
        kt_db_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    if (changed != NULL)
        *changed = e == KEYTIER_OK ? n : 0;
    return e;
}

keytier_err kt_store_mig_renew(struct kt_store *st, const char *id,
                               const char *worker, int64_t until_ms,
                               size_t *held)
{
    return kt_mig_claims_update(
        st, "renew lease",
        "UPDATE migration_items SET lease_until = ?3 WHERE "
        "migration_id = ?1 AND claimed_by = ?2 AND done = 0",
        id, worker, &until_ms, held);
}

keytier_err kt_store_mig_release(struct kt_store *st, const char *id,
                                 const char *worker, size_t *released)
{
    return kt_mig_claims_update(
        st, "release claims",
        "UPDATE migration_items SET claimed_by = NULL, lease_until = NULL "
        "WHERE migration_id = ?1 AND claimed_by = ?2 AND done = 0",
        id, worker, NULL, released);
}

keytier_err kt_store_mig_undone(struct kt_store *st, const char *id,
                                int64_t now_ms, uint64_t *undone,
                                uint64_t *claimed)
{
    struct kt_stmt s;
    bool row = false;
    *undone = *claimed = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "count migration items",
                 "SELECT COUNT(*), COALESCE(SUM(CASE WHEN claimed_by IS NOT "
                 "NULL AND lease_until > ?2 THEN 1 ELSE 0 END), 0) FROM "
                 "migration_items WHERE migration_id = ?1 AND done = 0");
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_int64(&s, 2, now_ms);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        *undone = (uint64_t)kt_stmt_col_int64(&s, 0);
        *claimed = (uint64_t)kt_stmt_col_int64(&s, 1);
        e = kt_stmt_err(&s);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_unsettled(struct kt_store *st,
                                   char (*ids)[KEYTIER_ID_SIZE], size_t max,
                                   size_t *n)
{
    struct kt_stmt s;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list unsettled DEPs",
                 "SELECT dep_id FROM deps WHERE state = ?1 OR state = ?2 "
                 "ORDER BY created, dep_id LIMIT ?3");
    kt_stmt_bind_int(&s, 1, KEYTIER_DEP_REGISTERING);
    kt_stmt_bind_int(&s, 2, KEYTIER_DEP_ROLLING);
    kt_stmt_bind_int64(&s, 3, (int64_t)max);
    keytier_err e = kt_stmt_ids(&s, ids, max, n);
    pthread_mutex_unlock(&st->mu);
    return e;
}
