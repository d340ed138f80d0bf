/*
 * Cache invalidations in the store (store.h): rows (seq, scope, value,
 * reason) appended by every change that makes a cached key wrong, in the
 * same transaction as the change when the store makes it, and read by
 * every context in seq order.
 */
#include <stdlib.h>
#include <time.h>

#include "store_stmt.h"

keytier_err kt_inval_add(struct kt_store *st, int scope, const char *value,
                         const char *reason)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "record cache invalidation",
                 "INSERT INTO cache_invalidations(scope, value, reason, "
                 "created, origin) VALUES (?1, ?2, ?3, ?4, ?5)");
    kt_stmt_bind_int(&s, 1, scope);
    kt_stmt_bind_text(&s, 2, value);
    kt_stmt_bind_text(&s, 3, reason);
    kt_stmt_bind_int64(&s, 4, (int64_t)time(NULL));
    kt_stmt_bind_text(&s, 5, st->origin);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_inval_publish(struct kt_store *st, int scope,
                                   const char *value, const char *reason)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_inval_add(st, scope, value, reason);
        if (e == KEYTIER_OK)
            e = kt_db_commit(st);
        else
            kt_db_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_head(struct kt_store *st, int64_t *seq)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    *seq = 0;
    /* The last seq given, kept when its row is pruned (on PostgreSQL
     * in a table of its own: store_pg.c, kt_pg_ddl_extra). */
    kt_stmt_prep(&s, st, "cache invalidations",
                 KT_DIALECT(st,
                            "SELECT coalesce((SELECT seq FROM sqlite_sequence "
                            "WHERE name = 'cache_invalidations'), 0)",
                            "SELECT seq FROM kt_inval_head"));
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        *seq = kt_stmt_col_int64(&s, 0);
        e = kt_stmt_err(&s);
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_STORE, "cache invalidations: no head row");
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_read(struct kt_store *st, int64_t after,
                                struct kt_inval_rec *out, size_t max, size_t *n,
                                bool *gap)
{
    struct kt_stmt s;
    bool row;
    keytier_err e = KEYTIER_OK;
    *n = 0;
    *gap = false;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "cache invalidations",
                 "SELECT seq, scope, value, origin = ?3 FROM "
                 "cache_invalidations WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    kt_stmt_bind_int64(&s, 1, after);
    kt_stmt_bind_int64(&s, 2, (int64_t)max);
    kt_stmt_bind_text(&s, 3, st->origin);
    while (*n < max && (e = kt_stmt_step(&s, &row)) == KEYTIER_OK && row) {
        struct kt_inval_rec *r = &out[*n];
        r->seq = kt_stmt_col_int64(&s, 0);
        r->scope = kt_stmt_col_int(&s, 1);
        kt_stmt_col_text(&s, 2, r->value, sizeof r->value);
        r->own = kt_stmt_col_int(&s, 3) != 0;
        if ((e = kt_stmt_err(&s)) != KEYTIER_OK)
            break;
        /* Seqs come one after the other (AUTOINCREMENT, rolled-back
         * inserts give theirs back): a hole is a pruned row. */
        if (r->seq != (*n ? out[*n - 1].seq : after) + 1)
            *gap = true;
        (*n)++;
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_prune(struct kt_store *st, int64_t before)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_db_run(st, "prune cache invalidations",
                      "DELETE FROM cache_invalidations WHERE created < ?1",
                      NULL, 0, &before);
        if (e == KEYTIER_OK)
            e = kt_db_commit(st);
        else
            kt_db_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* A DEP id column into the char[KEYTIER_ID_SIZE] at p. */
static keytier_err kt_dep_id_row(struct kt_stmt *s, void *p)
{
    kt_stmt_col_text(s, 0, p, KEYTIER_ID_SIZE);
    return kt_stmt_err(s);
}

keytier_err kt_store_inval_root_deps(struct kt_store *st, const char *uri,
                                     char (**ids)[KEYTIER_ID_SIZE], size_t *n)
{
    struct kt_stmt s;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "DEPs of a root",
                 "SELECT DISTINCT dep_id FROM dep_roots WHERE uri = ?1");
    kt_stmt_bind_text(&s, 1, uri);
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **ids, 8, kt_dep_id_row, &list, n);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *ids = list;
    return e;
}
