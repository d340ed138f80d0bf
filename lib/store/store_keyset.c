/*
 * Keysets in the store: a keyset of service secrets (keysets) and its key
 * versions (keyset_keys), each wrapped by the keyset's root key; one is
 * current, older ones are archived and then retired (their wrapped copy
 * erased).
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

static keytier_err kt_ks_key_insert_locked(struct kt_store *st,
                                           const struct kt_ks_key_rec *k)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "keyset key",
                 "INSERT INTO keyset_keys(name, version, mech, wrapped, "
                 "created, archived, state) VALUES (?1, ?2, ?3, ?4, ?5, NULL, "
                 "0)");
    kt_stmt_bind_text(&s, 1, k->name);
    kt_stmt_bind_int64(&s, 2, k->version);
    kt_stmt_bind_text(&s, 3, k->mech);
    kt_stmt_bind_blob(&s, 4, k->wrapped, k->wrapped_len);
    kt_stmt_bind_int64(&s, 5, k->created);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

static keytier_err kt_keyset_insert_row(struct kt_store *st,
                                        const struct kt_keyset_rec *ks)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "create keyset",
                 "INSERT INTO keysets(name, root_uri, rollover_after, "
                 "retire_after, created) VALUES (?1, ?2, ?3, ?4, ?5)");
    kt_stmt_bind_text(&s, 1, ks->name);
    kt_stmt_bind_text(&s, 2, ks->root_uri);
    kt_stmt_bind_int64(&s, 3, ks->rollover_after);
    kt_stmt_bind_int64(&s, 4, ks->retire_after);
    kt_stmt_bind_int64(&s, 5, ks->created);
    keytier_err e = kt_stmt_exec(&s);
    if (kt_stmt_rc(&s) == SQLITE_CONSTRAINT_PRIMARYKEY)
        e = kt_err(KEYTIER_E_EXISTS, "keyset %s", ks->name);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_keyset_insert(struct kt_store *st,
                                   const struct kt_keyset_rec *ks,
                                   const struct kt_ks_key_rec *first)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_keyset_insert_row(st, ks);
    if (e == KEYTIER_OK)
        e = kt_ks_key_insert_locked(st, first);
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

keytier_err kt_store_keyset_get(struct kt_store *st, const char *name,
                                struct kt_keyset_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read keyset",
                 "SELECT name, root_uri, rollover_after, retire_after, created "
                 "FROM keysets WHERE name = ?1");
    kt_stmt_bind_text(&s, 1, name);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        memset(out, 0, sizeof *out);
        kt_stmt_col_text(&s, 0, out->name, sizeof out->name);
        kt_stmt_col_text(&s, 1, out->root_uri, sizeof out->root_uri);
        out->rollover_after = kt_stmt_col_int64(&s, 2);
        out->retire_after = kt_stmt_col_int64(&s, 3);
        out->created = kt_stmt_col_int64(&s, 4);
        e = kt_stmt_err(&s);
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "keyset %s", name);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_ks_key_row(struct kt_stmt *s, const char *name,
                                 struct kt_ks_key_rec *out)
{
    memset(out, 0, sizeof *out);
    kt_stmt_col_text(s, 0, out->name, sizeof out->name);
    out->version = (uint32_t)kt_stmt_col_int64(s, 1);
    kt_stmt_col_text(s, 2, out->mech, sizeof out->mech);
    out->created = kt_stmt_col_int64(s, 4);
    out->archived = kt_stmt_col_int64(s, 5);
    out->state = kt_stmt_col_int(s, 6);
    bool fits = kt_stmt_col_blob(s, 3, out->wrapped, sizeof out->wrapped,
                                 &out->wrapped_len);
    if (kt_stmt_err(s) != KEYTIER_OK)
        return kt_stmt_err(s);
    if (!fits)
        return kt_err(KEYTIER_E_FORMAT, "keyset %s: wrapped key", name);
    return KEYTIER_OK;
}

/* version 0: the current key. */
keytier_err kt_store_ks_key_get(struct kt_store *st, const char *name,
                                uint32_t version, struct kt_ks_key_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read keyset key",
                 "SELECT name, version, mech, wrapped, created, "
                 "coalesce(archived, 0), state FROM keyset_keys WHERE "
                 "name = ?1 AND ((?2 = 0 AND state = 0) OR version = ?2)");
    kt_stmt_bind_text(&s, 1, name);
    kt_stmt_bind_int64(&s, 2, version);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        e = kt_ks_key_row(&s, name, out);
    else if (e == KEYTIER_OK)
        e = kt_err(KEYTIER_E_NOT_FOUND, "keyset %s has no key version %u", name,
                   (unsigned)version);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_ks_rollover(struct kt_store *st, uint32_t current,
                                 const struct kt_ks_key_rec *next, int64_t now)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    /* Only if `current` is still current: two processes rolling at once
     * make one new version, not two. */
    kt_stmt_prep(&s, st, "keyset rollover",
                 "UPDATE keyset_keys SET state = 1, archived = ?3 WHERE "
                 "name = ?1 AND version = ?2 AND state = 0");
    kt_stmt_bind_text(&s, 1, next->name);
    kt_stmt_bind_int64(&s, 2, current);
    kt_stmt_bind_int64(&s, 3, now);
    e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    if (e == KEYTIER_OK && kt_db_changes(st) != 1)
        e = kt_err(KEYTIER_E_EXISTS, "keyset %s was rolled over already",
                   next->name);
    if (e == KEYTIER_OK)
        e = kt_ks_key_insert_locked(st, next);
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

/* Retires the archived versions of a keyset (inside the caller's
 * transaction); *n of them are listed in versions (at most max). */
static keytier_err kt_ks_retire_rows(struct kt_store *st, const char *name,
                                     int64_t archived_before,
                                     uint32_t *versions, size_t max, size_t *n)
{
    struct kt_stmt s;
    bool row;
    keytier_err e;
    /* Retired keys lose their wrapped copy: nothing can open under them.
     * The empty value is bound (a literal x'' is a bit string on
     * PostgreSQL). */
    static const uint8_t none[1];
    kt_stmt_prep(&s, st, "retire",
                 "UPDATE keyset_keys SET state = 2, wrapped = ?3 WHERE "
                 "name = ?1 AND state = 1 AND archived <= ?2 RETURNING "
                 "version");
    kt_stmt_bind_text(&s, 1, name);
    kt_stmt_bind_int64(&s, 2, archived_before);
    kt_stmt_bind_blob(&s, 3, none, 0);
    while ((e = kt_stmt_step(&s, &row)) == KEYTIER_OK && row) {
        uint32_t v = (uint32_t)kt_stmt_col_int64(&s, 0);
        if ((e = kt_stmt_err(&s)) != KEYTIER_OK)
            break;
        if (*n < max)
            versions[(*n)++] = v;
    }
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_ks_retire(struct kt_store *st, const char *name,
                               int64_t archived_before, uint32_t *versions,
                               size_t max, size_t *n)
{
    *n = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_pragma(st, "retire", "PRAGMA secure_delete = ON");
    if (e == KEYTIER_OK)
        e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_ks_retire_rows(st, name, archived_before, versions, max, n);
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_db_commit(st);
    /* Best effort, as after a purge: the rows are gone either way. */
    if (e == KEYTIER_OK && *n > 0 &&
        kt_db_pragma(st, "retire", "PRAGMA wal_checkpoint(TRUNCATE)") !=
            KEYTIER_OK)
        kt_err_clear();
    goto out;
fail:
    kt_db_rollback(st);
    *n = 0;
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_keyset_by_root(struct kt_store *st, const char *uri,
                                    char *name, size_t cap)
{
    struct kt_stmt s;
    bool row;
    name[0] = '\0';
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "keyset by root",
                 "SELECT name FROM keysets WHERE root_uri = ?1 ORDER BY name "
                 "LIMIT 1");
    kt_stmt_bind_text(&s, 1, uri);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        kt_stmt_col_text(&s, 0, name, cap);
    if (e == KEYTIER_OK)
        e = kt_stmt_err(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* A row of kt_store_keyset_list into the kt_keyset_rec at p. */
static keytier_err kt_keyset_row(struct kt_stmt *s, void *p)
{
    struct kt_keyset_rec *ks = p;
    memset(ks, 0, sizeof *ks);
    kt_stmt_col_text(s, 0, ks->name, sizeof ks->name);
    kt_stmt_col_text(s, 1, ks->root_uri, sizeof ks->root_uri);
    ks->rollover_after = kt_stmt_col_int64(s, 2);
    ks->retire_after = kt_stmt_col_int64(s, 3);
    ks->created = kt_stmt_col_int64(s, 4);
    return kt_stmt_err(s);
}

keytier_err kt_store_keyset_list(struct kt_store *st,
                                 struct kt_keyset_rec **out, size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list keysets",
                 "SELECT name, root_uri, rollover_after, retire_after, created "
                 "FROM keysets ORDER BY name");
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 8, kt_keyset_row, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}

keytier_err kt_store_ks_retire_count(struct kt_store *st, const char *name,
                                     int64_t archived_before, size_t *n)
{
    struct kt_stmt s;
    bool row;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "count retirable keys",
                 "SELECT count(*) FROM keyset_keys WHERE name = ?1 AND "
                 "state = 1 AND archived <= ?2");
    kt_stmt_bind_text(&s, 1, name);
    kt_stmt_bind_int64(&s, 2, archived_before);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        *n = (size_t)kt_stmt_col_int64(&s, 0);
    if (e == KEYTIER_OK)
        e = kt_stmt_err(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}
