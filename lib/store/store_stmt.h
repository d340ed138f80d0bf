/*
 * store_stmt.h - the inside of the store (store.h): the connection, its
 * statement cache, transactions, and the checked statement that every
 * store_<family>.c file uses instead of calling an engine directly.  Two
 * engines sit behind it: SQLite (store_stmt.c, store_open.c) and
 * PostgreSQL (store_pg.c, when st->pg is set); the family files' SQL is
 * the same for both (?N parameters, standard SQL), and the SQLite result
 * codes (SQLITE_CONSTRAINT_UNIQUE, ...) are the codes of both.
 *
 * A struct kt_stmt keeps the first failure of its statement (prepare, bind,
 * step or column read) as a KEYTIER_E_STORE naming what was being done,
 * SQLite's message and the SQL text - never a bound value - and every later
 * call on it does nothing, so a failed bind stops the step that would have
 * run without it and the step reports the bind's failure.
 *
 *     struct kt_stmt s;
 *     kt_stmt_prep(&s, st, "read DEP state", "SELECT state ... ?1");
 *     kt_stmt_bind_text(&s, 1, dep_id);
 *     bool row;
 *     keytier_err e = kt_stmt_step(&s, &row);
 *     if (e == KEYTIER_OK && row)
 *         *state = kt_stmt_col_int(&s, 0);
 *     kt_stmt_done(&s);
 *
 * Everything here runs with st->mu held.
 */
#ifndef KT_STORE_STMT_H
#define KT_STORE_STMT_H

#include <pthread.h>
#include <stdatomic.h>

#include <sqlite3.h>

#include "kt_lib.h"

/* Statements kept prepared per store: more than the store's distinct SQL
 * texts (about 50), so that none is prepared again on every call. */
#define KT_STMT_CACHE 80
/* The most parameters a statement of the store has (?1..?16). */
#define KT_STMT_MAXP 16

struct kt_pg; /* store_pg.c */

struct kt_store {
    sqlite3 *db;
    struct kt_pg *pg;   /* the PostgreSQL engine when set, db unused */
    pthread_mutex_t mu; /* one connection, statements grouped per call */
    /* Prepared statements, keyed by their SQL text's address (every query
     * is a literal), reused under mu. */
    struct {
        const char *sql;
        sqlite3_stmt *q;
    } cache[KT_STMT_CACHE];
    atomic_uint_fast64_t ops; /* statements run (kt_store_ops) */
    /* This connection's mark on the invalidation rows it writes, so that
     * its own context skips them (it invalidated at once). */
    char origin[33];
};

struct kt_stmt {
    struct kt_store *st;
    sqlite3_stmt *q; /* NULL when the prepare failed */
    const char *sql;
    const char *what; /* "insert DEP": the start of every error text */
    keytier_err err;  /* the first failure, KEYTIER_OK while none */
    int rc;           /* its extended SQLite code (SQLITE_OK: none) */
    /* PostgreSQL: the cache slot (-1: none), the parameters, the result
     * and its current row. */
    int slot, np, row, nrows;
    const char *pv[KT_STMT_MAXP];
    int plen[KT_STMT_MAXP], pfmt[KT_STMT_MAXP];
    unsigned ptype[KT_STMT_MAXP];
    char pnum[KT_STMT_MAXP][24];
    void *res;
};

/* Takes sql's cached statement (or prepares and caches it).  sql must be a
 * string literal: its address is the cache key. */
void kt_stmt_prep(struct kt_stmt *s, struct kt_store *st, const char *what,
                  const char *sql);
/* Parameter i (1-based).  text NULL binds SQL NULL.  Values are bound
 * SQLITE_STATIC: they must outlive the statement's last step. */
void kt_stmt_bind_text(struct kt_stmt *s, int i, const char *text);
void kt_stmt_bind_int(struct kt_stmt *s, int i, int v);
void kt_stmt_bind_int64(struct kt_stmt *s, int i, int64_t v);
void kt_stmt_bind_blob(struct kt_stmt *s, int i, const void *p, size_t n);

/* KEYTIER_OK with *row true (a row to read) or false (no more rows), or
 * the statement's first failure. */
KT_NODISCARD keytier_err kt_stmt_step(struct kt_stmt *s, bool *row);
/* Runs a statement that returns no row to its end. */
KT_NODISCARD keytier_err kt_stmt_exec(struct kt_stmt *s);
/* The failure so far (reads record theirs: check after reading a row). */
KT_NODISCARD keytier_err kt_stmt_err(const struct kt_stmt *s);
/* The extended SQLite code of the failure (SQLITE_CONSTRAINT_UNIQUE, ...),
 * SQLITE_OK when there was none. */
int kt_stmt_rc(const struct kt_stmt *s);

/* Columns of the current row (0-based).  A column the row does not have,
 * or a value SQLite cannot convert (out of memory), is a failure. */
int kt_stmt_col_int(struct kt_stmt *s, int col);
int64_t kt_stmt_col_int64(struct kt_stmt *s, int col);
bool kt_stmt_col_null(struct kt_stmt *s, int col);
/* Copies text into dst (NULL: "", truncated to cap - 1 bytes). */
void kt_stmt_col_text(struct kt_stmt *s, int col, char *dst, size_t cap);
/* Copies a blob into dst; false (not a statement failure: the caller says
 * what the row means) when it is larger than cap. */
KT_NODISCARD bool kt_stmt_col_blob(struct kt_stmt *s, int col, uint8_t *dst,
                                   size_t cap, size_t *len);

/* Gives the statement back to the cache (reset, bindings cleared) or
 * finalizes it when the cache was full.  The failure it may repeat is the
 * one already recorded. */
void kt_stmt_done(struct kt_stmt *s);

/* Steps s to its end, reading each row with row into a new element of a
 * malloc'd array of elem_size-byte items (grown from grow), and finishes s
 * (kt_stmt_done).  On success *out is the array (NULL when no row came,
 * the caller frees it) and *count its length; on any failure the array is
 * freed and *out and *count are left as they were. */
KT_NODISCARD keytier_err kt_stmt_collect(
    struct kt_stmt *s, size_t elem_size, size_t grow,
    keytier_err (*row)(struct kt_stmt *, void *), void **out, size_t *count);

/* ---- the connection ---------------------------------------------------- */

/* KEYTIER_E_STORE "what: SQLite's message" for a call outside a statement. */
KT_NODISCARD keytier_err kt_db_fail(struct kt_store *st, const char *what);
/* Runs SQL without parameters (PRAGMAs, transaction control). */
KT_NODISCARD keytier_err kt_db_exec(struct kt_store *st, const char *what,
                                    const char *sql);
/* BEGIN IMMEDIATE: the write lock is taken before the first read, so a
 * check and the write that depends on it see the same state. */
KT_NODISCARD keytier_err kt_db_begin(struct kt_store *st);
/* A transaction whose statements lock the rows they change or select
 * `FOR UPDATE` and nothing more: on PostgreSQL without kt_db_begin's
 * store-wide lock, so that several of them run at once on every node (the
 * claims of migration items, store_claim.c); on SQLite kt_db_begin. */
KT_NODISCARD keytier_err kt_db_begin_rows(struct kt_store *st);
/* COMMIT, rolling back when the commit fails. */
KT_NODISCARD keytier_err kt_db_commit(struct kt_store *st);
void kt_db_rollback(struct kt_store *st);
/* Rows changed by the last INSERT, UPDATE or DELETE. */
int64_t kt_db_changes(struct kt_store *st);
/* Prepares sql, binds ?1..?n to texts (NULL: SQL NULL) and, when num is not
 * NULL, ?n+1 to *num, and runs it to its end. */
KT_NODISCARD keytier_err kt_db_run(struct kt_store *st, const char *what,
                                   const char *sql, const char *const *texts,
                                   size_t n, const int64_t *num);

/* SQLite's settings (PRAGMA): nothing on PostgreSQL. */
KT_NODISCARD keytier_err kt_db_pragma(struct kt_store *st, const char *what,
                                      const char *sql);
/* The channel of cache invalidations on PostgreSQL (LISTEN/NOTIFY). */
#define KT_PG_INVAL_CHANNEL "keytier_inval"
/* The SQL of the store's engine where the dialects differ. */
#define KT_DIALECT(st, sqlite_sql, pg_sql)                                     \
    ((st)->pg != NULL ? (pg_sql) : (sqlite_sql))
/* Records the first failure of s with its keytier code (both engines):
 * later ones are consequences of it. */
static inline void kt_stmt_fail_code(struct kt_stmt *s, keytier_err code,
                                     int rc, const char *how, const char *msg)
{
    if (s->err != KEYTIER_OK)
        return;
    s->rc = rc;
    s->err = kt_err(code, "%s: %s%s [%s]", s->what, how, msg, s->sql);
}

/* ---- the PostgreSQL engine (store_pg.c) -------------------------------- */

bool kt_store_is_pg(const char *where);
KT_NODISCARD keytier_err kt_pg_open(struct kt_store *st, const char *conninfo,
                                    const char *password_file);
void kt_pg_close(struct kt_store *st);
void kt_pg_prep(struct kt_stmt *s, int slot);
void kt_pg_bind_text(struct kt_stmt *s, int i, const char *text);
void kt_pg_bind_int64(struct kt_stmt *s, int i, int64_t v);
void kt_pg_bind_blob(struct kt_stmt *s, int i, const void *p, size_t n);
KT_NODISCARD keytier_err kt_pg_step(struct kt_stmt *s, bool *row);
const char *kt_pg_col(struct kt_stmt *s, int col, int *len);
int64_t kt_pg_col_int64(struct kt_stmt *s, int col);
KT_NODISCARD bool kt_pg_col_blob(struct kt_stmt *s, int col, uint8_t *dst,
                                 size_t cap, size_t *len);
void kt_pg_done(struct kt_stmt *s);
KT_NODISCARD keytier_err kt_pg_exec(struct kt_store *st, const char *what,
                                    const char *sql);
KT_NODISCARD keytier_err kt_pg_begin(struct kt_store *st, bool store_lock);
KT_NODISCARD keytier_err kt_pg_commit(struct kt_store *st);
void kt_pg_rollback(struct kt_store *st);
int64_t kt_pg_changes(struct kt_store *st);
char *kt_pg_ddl(const char *ddl);
const char *kt_pg_ddl_extra(int v);
int kt_pg_version(struct kt_store *st, bool create);
KT_NODISCARD keytier_err kt_pg_set_version(struct kt_store *st, int v);

/* ---- rows shared between families -------------------------------------- */

/* A migration item and its key as stored now (store_mig.c): the key's
 * KT_KEY_COLS (NULL when it was deleted), then the item's key id. */
#define KT_MIG_TODO_COLS                                                       \
    "k.key_id, k.tenant, k.workload, k.dep_id, k.parent_id, k.level, "         \
    "k.name, k.created, k.wrapped, k.tik_id, i.key_id FROM migration_items "   \
    "i LEFT JOIN tier_keys k ON k.key_id = i.key_id"
/* Steps s (selecting KT_MIG_TODO_COLS) into out, at most max rows, *n
 * counting them, and finishes s. */
KT_NODISCARD keytier_err kt_mig_todo_rows(struct kt_stmt *s, size_t max,
                                          struct kt_mig_todo *out, size_t *n);

/* The columns KT_KEY_COLS of tier_keys into k (store_key.c). */
#define KT_KEY_COLS                                                            \
    "key_id, tenant, workload, dep_id, parent_id, level, name, created, "      \
    "wrapped, tik_id"
/* A named key (mailbox, site): level 1 without a TIK, or a TIK's child. */
#define KT_SQL_NAMED "((tik_id IS NULL AND level = 1) OR parent_id = tik_id)"
KT_NODISCARD keytier_err kt_key_row(struct kt_stmt *s, struct kt_key_rec *k);
/* kt_store_key_insert inside the caller's lock (and transaction). */
KT_NODISCARD keytier_err kt_key_insert_locked(struct kt_store *st,
                                              const struct kt_key_rec *k);
/* Appends an invalidation row inside the caller's transaction
 * (store_inval.c). */
KT_NODISCARD keytier_err kt_inval_add(struct kt_store *st, int scope,
                                      const char *value, const char *reason);

#endif /* KT_STORE_STMT_H */
