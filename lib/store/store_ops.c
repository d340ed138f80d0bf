/*
 * Operations (store.h, schema 12): the counters each context publishes
 * (node_stats, written by its cache's thread, read by `keytier stats` and
 * `keytier health` in other processes), and the roots of the DEPs in use,
 * whose tokens `keytier health` probes.
 */
#include <stdlib.h>
#include <string.h>


#include "store_stmt.h"

keytier_err kt_store_node_stats_put(struct kt_store *st, const char *node,
                                    int64_t pid, int64_t interval_ms,
                                    const char *counters,
                                    int64_t prune_before_ms)
{
    struct kt_stmt s;
    int64_t now = kt_wall_ms();
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e == KEYTIER_OK) {
        kt_stmt_prep(&s, st, "publish counters",
                     "INSERT INTO node_stats(origin, node, pid, updated, "
                     "interval_ms, counters) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                     "ON CONFLICT (origin) DO UPDATE SET node = ?2, pid = ?3, "
                     "updated = ?4, interval_ms = ?5, counters = ?6");
        kt_stmt_bind_text(&s, 1, st->origin);
        kt_stmt_bind_text(&s, 2, node);
        kt_stmt_bind_int64(&s, 3, pid);
        kt_stmt_bind_int64(&s, 4, now);
        kt_stmt_bind_int64(&s, 5, interval_ms);
        kt_stmt_bind_text(&s, 6, counters);
        e = kt_stmt_exec(&s);
        kt_stmt_done(&s);
        if (e == KEYTIER_OK)
            e = kt_db_run(st, "prune published counters",
                          "DELETE FROM node_stats WHERE updated < ?1", NULL, 0,
                          &prune_before_ms);
        if (e == KEYTIER_OK)
            e = kt_db_commit(st);
        else
            kt_db_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_node_stats_drop(struct kt_store *st)
{
    const char *origin[] = {st->origin};
    pthread_mutex_lock(&st->mu);
    keytier_err e =
        kt_db_run(st, "withdraw published counters",
                  "DELETE FROM node_stats WHERE origin = ?1", origin, 1, NULL);
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_node_stats_row(struct kt_stmt *s, void *p)
{
    struct kt_node_stats_rec *r = p;
    kt_stmt_col_text(s, 0, r->origin, sizeof r->origin);
    kt_stmt_col_text(s, 1, r->node, sizeof r->node);
    r->pid = kt_stmt_col_int64(s, 2);
    r->updated_ms = kt_stmt_col_int64(s, 3);
    r->interval_ms = kt_stmt_col_int64(s, 4);
    kt_stmt_col_text(s, 5, r->counters, sizeof r->counters);
    return kt_stmt_err(s);
}

/* Every row of sql (its ?1 bound to arg when sql has one) read with row
 * into a new array of elem-byte items (*out, to free; NULL when none). */
static keytier_err kt_ops_list(struct kt_store *st, const char *what,
                               const char *sql, int arg, size_t elem,
                               keytier_err (*row)(struct kt_stmt *, void *),
                               void **out, size_t *n)
{
    struct kt_stmt s;
    void *rows = NULL;
    size_t count = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, what, sql);
    if (strstr(sql, "?1"))
        kt_stmt_bind_int(&s, 1, arg);
    keytier_err e = kt_stmt_collect(&s, elem, 4, row, &rows, &count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK) {
        *out = rows;
        *n = count;
    }
    return e;
}

keytier_err kt_store_node_stats_list(struct kt_store *st,
                                     struct kt_node_stats_rec **out, size_t *n)
{
    return kt_ops_list(st, "published counters",
                       "SELECT origin, node, pid, updated, interval_ms, "
                       "counters FROM node_stats ORDER BY node, pid, origin",
                       0, sizeof **out, kt_node_stats_row, (void **)out, n);
}

static keytier_err kt_root_ref_row(struct kt_stmt *s, void *p)
{
    struct kt_dep_root_ref *r = p;
    kt_stmt_col_text(s, 0, r->dep_id, sizeof r->dep_id);
    r->slot = kt_stmt_col_int(s, 1);
    kt_stmt_col_text(s, 2, r->uri, sizeof r->uri);
    return kt_stmt_err(s);
}

keytier_err kt_store_dep_root_refs(struct kt_store *st,
                                   struct kt_dep_root_ref **out, size_t *n)
{
    return kt_ops_list(st, "roots of the DEPs",
                       "SELECT r.dep_id, r.slot, r.uri FROM dep_roots r "
                       "JOIN deps d ON d.dep_id = r.dep_id WHERE d.state <> ?1 "
                       "ORDER BY r.dep_id, r.slot",
                       KEYTIER_DEP_PURGED, sizeof **out, kt_root_ref_row,
                       (void **)out, n);
}
