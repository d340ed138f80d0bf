/*
 * Tier keys in the store: the tier_keys table, each key wrapped by its
 * parent (the DEP key for level 1, the key above it otherwise), and the
 * tenant intermediate keys (TIKs) of files DEPs.
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

keytier_err kt_key_insert_locked(struct kt_store *st,
                                 const struct kt_key_rec *k)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "insert key",
                 "INSERT INTO tier_keys(" KT_KEY_COLS ") VALUES "
                 "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    kt_stmt_bind_text(&s, 1, k->key_id);
    kt_stmt_bind_text(&s, 2, k->tenant);
    kt_stmt_bind_text(&s, 3, k->workload);
    kt_stmt_bind_text(&s, 4, k->dep_id);
    kt_stmt_bind_text(&s, 5, k->parent_id);
    kt_stmt_bind_int(&s, 6, (int)k->level);
    kt_stmt_bind_text(&s, 7, k->name);
    kt_stmt_bind_int64(&s, 8, k->created);
    kt_stmt_bind_blob(&s, 9, k->wrapped, sizeof k->wrapped);
    kt_stmt_bind_text(&s, 10, k->tik_id[0] != '\0' ? k->tik_id : NULL);
    keytier_err e = kt_stmt_exec(&s);
    if (kt_stmt_rc(&s) == SQLITE_CONSTRAINT_UNIQUE ||
        kt_stmt_rc(&s) == SQLITE_CONSTRAINT_PRIMARYKEY)
        e = kt_err(KEYTIER_E_EXISTS, "tenant %s already has '%s' in %s",
                   k->tenant, k->name, k->workload);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_key_insert(struct kt_store *st, const struct kt_key_rec *k)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_key_insert_locked(st, k);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_key_row(struct kt_stmt *s, struct kt_key_rec *k)
{
    memset(k, 0, sizeof *k);
    kt_stmt_col_text(s, 0, k->key_id, sizeof k->key_id);
    kt_stmt_col_text(s, 1, k->tenant, sizeof k->tenant);
    kt_stmt_col_text(s, 2, k->workload, sizeof k->workload);
    kt_stmt_col_text(s, 3, k->dep_id, sizeof k->dep_id);
    kt_stmt_col_text(s, 4, k->parent_id, sizeof k->parent_id);
    k->level = (unsigned)kt_stmt_col_int(s, 5);
    kt_stmt_col_text(s, 6, k->name, sizeof k->name);
    k->created = kt_stmt_col_int64(s, 7);
    kt_stmt_col_text(s, 9, k->tik_id, sizeof k->tik_id); /* NULL: "" */
    size_t n;
    bool fits = kt_stmt_col_blob(s, 8, k->wrapped, sizeof k->wrapped, &n) &&
                n == sizeof k->wrapped;
    if (kt_stmt_err(s) != KEYTIER_OK)
        return kt_stmt_err(s);
    if (!fits)
        return kt_err(KEYTIER_E_AUTH, "key %s: wrapped key has wrong length",
                      k->key_id);
    return KEYTIER_OK;
}

/* One key by up to three text parameters (b, c NULL: the SQL has fewer);
 * `what` names it when it is not there. */
static keytier_err kt_key_get_one(struct kt_store *st, const char *sql,
                                  const char *a, const char *b, const char *c,
                                  const char *what, struct kt_key_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read key", sql);
    kt_stmt_bind_text(&s, 1, a);
    if (b)
        kt_stmt_bind_text(&s, 2, b);
    if (c)
        kt_stmt_bind_text(&s, 3, c);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        e = kt_key_row(&s, out);
    else if (e == KEYTIER_OK)
        e = kt_err(KEYTIER_E_NOT_FOUND, "%s", what);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_key_get(struct kt_store *st, const char *key_id,
                             struct kt_key_rec *out)
{
    return kt_key_get_one(
        st, "SELECT " KT_KEY_COLS " FROM tier_keys WHERE key_id = ?1", key_id,
        NULL, NULL, key_id, out);
}

keytier_err kt_store_key_get_by_name(struct kt_store *st, const char *tenant,
                                     const char *workload, const char *name,
                                     struct kt_key_rec *out)
{
    return kt_key_get_one(
        st,
        "SELECT " KT_KEY_COLS " FROM tier_keys WHERE "
        "tenant = ?1 AND workload = ?2 AND name = ?3 AND " KT_SQL_NAMED,
        tenant, workload, name, name, out);
}

/* kt_key_row into the kt_key_rec at p (kt_stmt_collect). */
static keytier_err kt_key_row_any(struct kt_stmt *s, void *p)
{
    return kt_key_row(s, p);
}

keytier_err kt_store_key_list(struct kt_store *st, const char *tenant,
                              const char *parent_id, struct kt_key_rec **out,
                              size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list keys",
                 "SELECT " KT_KEY_COLS " FROM tier_keys WHERE "
                 "tenant = ?1 AND parent_id = ?2 "
                 "ORDER BY created, rowid");
    kt_stmt_bind_text(&s, 1, tenant);
    kt_stmt_bind_text(&s, 2, parent_id);
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 16, kt_key_row_any, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}

keytier_err kt_store_tik_list(struct kt_store *st, const char *dep_id,
                              struct kt_key_rec **out, size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list TIKs",
                 "SELECT " KT_KEY_COLS " FROM tier_keys WHERE "
                 "dep_id = ?1 AND tik_id = key_id ORDER BY created, rowid");
    kt_stmt_bind_text(&s, 1, dep_id);
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 4, kt_key_row_any, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}
