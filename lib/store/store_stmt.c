/*
 * The checked statement of the store (store_stmt.h): every engine result
 * is looked at, and the first failure of a statement becomes its
 * KEYTIER_E_STORE (KEYTIER_E_STORE_UNAVAILABLE for a lost PostgreSQL
 * connection) with the SQL and the engine's message.  The SQLite engine is
 * here; each entry hands a PostgreSQL store to store_pg.c.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

static void kt_stmt_fail(struct kt_stmt *s, int rc, const char *how,
                         const char *msg)
{
    kt_stmt_fail_code(s, KEYTIER_E_STORE, rc, how, msg);
}

void kt_stmt_prep(struct kt_stmt *s, struct kt_store *st, const char *what,
                  const char *sql)
{
    *s = (struct kt_stmt){.st = st, .sql = sql, .what = what, .slot = -1};
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
    size_t i;
    for (i = 0; i < KT_STMT_CACHE && st->cache[i].sql != NULL; i++)
        if (st->cache[i].sql == sql) {
            s->q = st->cache[i].q;
            if (st->pg != NULL)
                kt_pg_prep(s, (int)i);
            return;
        }
    if (st->pg != NULL) {
        if (i < KT_STMT_CACHE)
            st->cache[i].sql = sql;
        kt_pg_prep(s, i < KT_STMT_CACHE ? (int)i : -1);
        return;
    }
    int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &s->q, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(s->q);
        s->q = NULL;
        kt_stmt_fail(s, sqlite3_extended_errcode(st->db), "",
                     sqlite3_errmsg(st->db));
        return;
    }
    if (i < KT_STMT_CACHE) {
        st->cache[i].sql = sql;
        st->cache[i].q = s->q;
    }
}

/* The result of a bind: SQLITE_RANGE for a parameter the SQL does not
 * have, SQLITE_TOOBIG, SQLITE_NOMEM, SQLITE_MISUSE. */
static void kt_stmt_bound(struct kt_stmt *s, int i, int rc)
{
    if (rc == SQLITE_OK)
        return;
    char how[48];
    snprintf(how, sizeof how, "binding ?%d: ", i);
    kt_stmt_fail(s, rc, how, sqlite3_errstr(rc));
}

void kt_stmt_bind_text(struct kt_stmt *s, int i, const char *text)
{
    if (s->err != KEYTIER_OK)
        return;
    if (s->st->pg != NULL) {
        kt_pg_bind_text(s, i, text);
        return;
    }
    kt_stmt_bound(s, i,
                  text != NULL
                      ? sqlite3_bind_text(s->q, i, text, -1, SQLITE_STATIC)
                      : sqlite3_bind_null(s->q, i));
}

void kt_stmt_bind_int(struct kt_stmt *s, int i, int v)
{
    if (s->err == KEYTIER_OK && s->st->pg != NULL)
        kt_pg_bind_int64(s, i, v);
    else if (s->err == KEYTIER_OK)
        kt_stmt_bound(s, i, sqlite3_bind_int(s->q, i, v));
}

void kt_stmt_bind_int64(struct kt_stmt *s, int i, int64_t v)
{
    if (s->err == KEYTIER_OK && s->st->pg != NULL)
        kt_pg_bind_int64(s, i, v);
    else if (s->err == KEYTIER_OK)
        kt_stmt_bound(s, i, sqlite3_bind_int64(s->q, i, (sqlite3_int64)v));
}

void kt_stmt_bind_blob(struct kt_stmt *s, int i, const void *p, size_t n)
{
    if (s->err != KEYTIER_OK)
        return;
    if (s->st->pg != NULL) {
        kt_pg_bind_blob(s, i, p, n);
        return;
    }
    kt_stmt_bound(s, i,
                  n > INT_MAX
                      ? SQLITE_TOOBIG
                      : sqlite3_bind_blob(s->q, i, p, (int)n, SQLITE_STATIC));
}

keytier_err kt_stmt_step(struct kt_stmt *s, bool *row)
{
    *row = false;
    if (s->err != KEYTIER_OK)
        return s->err;
    if (s->st->pg != NULL)
        return kt_pg_step(s, row);
    int rc = sqlite3_step(s->q);
    if (rc == SQLITE_ROW) {
        *row = true;
        return KEYTIER_OK;
    }
    if (rc == SQLITE_DONE)
        return KEYTIER_OK;
    sqlite3 *db = sqlite3_db_handle(s->q);
    int ext = sqlite3_extended_errcode(db);
    kt_stmt_fail(s, (ext & 0xff) == (rc & 0xff) ? ext : rc, "",
                 sqlite3_errmsg(db));
    return s->err;
}

keytier_err kt_stmt_exec(struct kt_stmt *s)
{
    bool row;
    keytier_err e = kt_stmt_step(s, &row);
    if (e == KEYTIER_OK && row)
        kt_stmt_fail(s, SQLITE_MISUSE, "", "returned a row");
    return s->err;
}

keytier_err kt_stmt_err(const struct kt_stmt *s)
{
    return s->err;
}

int kt_stmt_rc(const struct kt_stmt *s)
{
    return s->rc;
}

/* A column of the current row, or a failure recorded. */
static bool kt_stmt_col_ok(struct kt_stmt *s, int col)
{
    if (s->err != KEYTIER_OK)
        return false;
    if (col >= 0 && col < sqlite3_data_count(s->q))
        return true;
    char how[48];
    snprintf(how, sizeof how, "reading column %d: ", col);
    kt_stmt_fail(s, SQLITE_RANGE, how, "no such column in the row");
    return false;
}

/* A value SQLite could not give (NULL for a non-NULL column): out of
 * memory converting it. */
static void kt_stmt_col_nomem(struct kt_stmt *s, int col)
{
    char how[48];
    snprintf(how, sizeof how, "reading column %d: ", col);
    kt_stmt_fail(s, SQLITE_NOMEM, how, sqlite3_errstr(SQLITE_NOMEM));
}

int kt_stmt_col_int(struct kt_stmt *s, int col)
{
    if (s->st->pg != NULL)
        return (int)kt_pg_col_int64(s, col);
    return kt_stmt_col_ok(s, col) ? sqlite3_column_int(s->q, col) : 0;
}

int64_t kt_stmt_col_int64(struct kt_stmt *s, int col)
{
    if (s->st->pg != NULL)
        return kt_pg_col_int64(s, col);
    return kt_stmt_col_ok(s, col) ? sqlite3_column_int64(s->q, col) : 0;
}

bool kt_stmt_col_null(struct kt_stmt *s, int col)
{
    int len;
    if (s->st->pg != NULL)
        return s->err == KEYTIER_OK && kt_pg_col(s, col, &len) == NULL &&
               s->err == KEYTIER_OK;
    return kt_stmt_col_ok(s, col) &&
           sqlite3_column_type(s->q, col) == SQLITE_NULL;
}

void kt_stmt_col_text(struct kt_stmt *s, int col, char *dst, size_t cap)
{
    const unsigned char *t = NULL;
    int len;
    if (s->st->pg != NULL)
        t = (const unsigned char *)kt_pg_col(s, col, &len);
    else if (kt_stmt_col_ok(s, col)) {
        t = sqlite3_column_text(s->q, col);
        if (t == NULL && sqlite3_column_type(s->q, col) != SQLITE_NULL)
            kt_stmt_col_nomem(s, col);
    }
    kt_strlcpy(dst, t ? (const char *)t : "", cap);
}

bool kt_stmt_col_blob(struct kt_stmt *s, int col, uint8_t *dst, size_t cap,
                      size_t *len)
{
    if (s->st->pg != NULL)
        return kt_pg_col_blob(s, col, dst, cap, len);
    if (!kt_stmt_col_ok(s, col))
        return false;
    const void *p = sqlite3_column_blob(s->q, col);
    int n = sqlite3_column_bytes(s->q, col);
    if (p == NULL && n > 0) {
        kt_stmt_col_nomem(s, col);
        return false;
    }
    struct kt_rd rd;
    kt_rd_init(&rd, p, n > 0 ? (size_t)n : 0);
    if (n < 0 || !kt_rd_copy(&rd, dst, cap, (size_t)n))
        return false;
    *len = (size_t)n;
    return true;
}

void kt_stmt_done(struct kt_stmt *s)
{
    if (s->st->pg != NULL) {
        kt_pg_done(s);
        return;
    }
    if (s->q == NULL)
        return;
    struct kt_store *st = s->st;
    for (size_t i = 0; i < KT_STMT_CACHE && st->cache[i].sql != NULL; i++)
        if (st->cache[i].q == s->q) {
            /* reset repeats the last step's result, recorded already;
             * clear_bindings cannot fail */
            (void)sqlite3_reset(s->q);
            (void)sqlite3_clear_bindings(s->q);
            s->q = NULL;
            return;
        }
    (void)sqlite3_finalize(s->q); /* cache full: not kept */
    s->q = NULL;
}

keytier_err kt_stmt_collect(struct kt_stmt *s, size_t elem_size, size_t grow,
                            keytier_err (*row)(struct kt_stmt *, void *),
                            void **out, size_t *count)
{
    void *list = NULL;
    size_t n = 0, cap = 0;
    bool more;
    keytier_err e;
    while ((e = kt_stmt_step(s, &more)) == KEYTIER_OK && more) {
        if (!kt_array_reserve(&list, &cap, n, elem_size, grow)) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        e = row(s, (char *)list + n * elem_size);
        if (e != KEYTIER_OK)
            break;
        n++;
    }
    kt_stmt_done(s);
    if (e != KEYTIER_OK) {
        free(list);
        return e;
    }
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

/* ---- the connection ---------------------------------------------------- */

keytier_err kt_db_fail(struct kt_store *st, const char *what)
{
    if (st->pg != NULL)
        return kt_err(KEYTIER_E_STORE, "%s: PostgreSQL store", what);
    return kt_err(KEYTIER_E_STORE, "%s: %s", what, sqlite3_errmsg(st->db));
}

keytier_err kt_db_exec(struct kt_store *st, const char *what, const char *sql)
{
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
    if (st->pg != NULL)
        return kt_pg_exec(st, what, sql);
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return kt_db_fail(st, what);
    return KEYTIER_OK;
}

keytier_err kt_db_pragma(struct kt_store *st, const char *what, const char *sql)
{
    return st->pg != NULL ? KEYTIER_OK : kt_db_exec(st, what, sql);
}

/* On PostgreSQL, one advisory lock taken at the start (store_pg.c): the
 * same one-writer-at-a-time as BEGIN IMMEDIATE on SQLite. */
keytier_err kt_db_begin(struct kt_store *st)
{
    if (st->pg != NULL) {
        atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
        return kt_pg_begin(st, true);
    }
    return kt_db_exec(st, "begin", "BEGIN IMMEDIATE");
}

keytier_err kt_db_begin_rows(struct kt_store *st)
{
    if (st->pg != NULL) {
        atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
        return kt_pg_begin(st, false);
    }
    return kt_db_begin(st);
}

keytier_err kt_db_commit(struct kt_store *st)
{
    if (st->pg != NULL) {
        atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
        keytier_err pe = kt_pg_commit(st);
        if (pe != KEYTIER_OK)
            kt_pg_rollback(st);
        return pe;
    }
    keytier_err e = kt_db_exec(st, "commit", "COMMIT");
    if (e != KEYTIER_OK)
        kt_db_rollback(st);
    return e;
}

void kt_db_rollback(struct kt_store *st)
{
    /* Fails only when no transaction is open any more (SQLite rolled it
     * back itself): the caller's error is the one to report. */
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
    if (st->pg != NULL)
        kt_pg_rollback(st);
    else
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

int64_t kt_db_changes(struct kt_store *st)
{
    if (st->pg != NULL)
        return kt_pg_changes(st);
    return sqlite3_changes(st->db);
}

keytier_err kt_db_run(struct kt_store *st, const char *what, const char *sql,
                      const char *const *texts, size_t n, const int64_t *num)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, what, sql);
    for (size_t i = 0; i < n; i++)
        kt_stmt_bind_text(&s, (int)i + 1, texts[i]);
    if (num != NULL)
        kt_stmt_bind_int64(&s, (int)n + 1, *num);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}
