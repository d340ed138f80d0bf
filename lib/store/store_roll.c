/*
 * Rolls in the store: the pending copy of one slot's wrapped DEP key waits
 * in dep_roll (the DEP ROLLING) until it has been read back; then one
 * transaction moves it into dep_roots (commit) or drops it (abort), and the
 * DEP is REGISTERED again.
 */
#include <string.h>

#include "store_stmt.h"

static keytier_err kt_roll_put(struct kt_store *st, const char *dep_id,
                               int slot, const struct kt_root_rec *pending,
                               int64_t now)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "roll",
                 "INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, "
                 "started, ident) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON "
                 "CONFLICT (dep_id) DO UPDATE SET slot = excluded.slot, uri "
                 "= excluded.uri, mech = excluded.mech, wrapped = "
                 "excluded.wrapped, started = excluded.started, ident = "
                 "excluded.ident");
    kt_stmt_bind_text(&s, 1, dep_id);
    kt_stmt_bind_int(&s, 2, slot);
    kt_stmt_bind_text(&s, 3, pending->uri);
    kt_stmt_bind_text(&s, 4, pending->mech);
    kt_stmt_bind_blob(&s, 5, pending->wrapped, pending->wrapped_len);
    kt_stmt_bind_int64(&s, 6, now);
    kt_stmt_bind_text(&s, 7, pending->ident[0] != '\0' ? pending->ident : NULL);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

/* REGISTERED -> ROLLING while the other slot's key is other_uri: what
 * the caller checked is still so, inside the transaction. */
static keytier_err kt_roll_mark(struct kt_store *st, const char *dep_id,
                                int slot, const char *other_uri)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "roll",
                 "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND state = ?3 "
                 "AND EXISTS (SELECT 1 FROM dep_roots r WHERE r.dep_id = ?1 "
                 "AND r.slot = ?4 AND r.uri = ?5)");
    kt_stmt_bind_text(&s, 1, dep_id);
    kt_stmt_bind_int(&s, 2, KEYTIER_DEP_ROLLING);
    kt_stmt_bind_int(&s, 3, KEYTIER_DEP_REGISTERED);
    kt_stmt_bind_int(&s, 4, 1 - slot);
    kt_stmt_bind_text(&s, 5, other_uri);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    if (e == KEYTIER_OK && kt_db_changes(st) != 1)
        e = kt_err(KEYTIER_E_DEP_STATE,
                   "DEP %s changed while this roll was being checked: another "
                   "roll began, or its other customer key is no longer %s; "
                   "nothing was changed, roll again",
                   dep_id, other_uri);
    return e;
}

keytier_err kt_store_roll_begin(struct kt_store *st, const char *dep_id,
                                int slot, const struct kt_root_rec *pending,
                                const char *other_uri, int64_t now)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_roll_mark(st, dep_id, slot, other_uri);
    if (e == KEYTIER_OK)
        e = kt_roll_put(st, dep_id, slot, pending, now);
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

keytier_err kt_store_roll_get(struct kt_store *st, const char *dep_id,
                              int *slot, struct kt_root_rec *out,
                              int64_t *started)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(
        &s, st, "read roll",
        "SELECT slot, uri, mech, wrapped, ident, started FROM dep_roll "
        "WHERE dep_id = ?1");
    kt_stmt_bind_text(&s, 1, dep_id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        memset(out, 0, sizeof *out);
        *slot = kt_stmt_col_int(&s, 0);
        kt_stmt_col_text(&s, 1, out->uri, sizeof out->uri);
        kt_stmt_col_text(&s, 2, out->mech, sizeof out->mech);
        kt_stmt_col_text(&s, 4, out->ident, sizeof out->ident);
        if (started != NULL)
            *started = kt_stmt_col_int64(&s, 5);
        bool fits = kt_stmt_col_blob(&s, 3, out->wrapped, sizeof out->wrapped,
                                     &out->wrapped_len);
        e = kt_stmt_err(&s);
        if (e == KEYTIER_OK && !fits)
            e = kt_err(KEYTIER_E_FORMAT, "DEP %s: pending copy", dep_id);
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "DEP %s has no roll pending", dep_id);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* Moves the pending copy into its slot of dep_roots. */
static keytier_err kt_roll_commit(struct kt_store *st, const char *dep_id)
{
    const char *t[] = {dep_id};
    keytier_err e =
        kt_db_run(st, "roll",
                  "UPDATE dep_roots SET (uri, mech, wrapped, ident) = "
                  "(SELECT uri, mech, wrapped, ident FROM dep_roll r WHERE "
                  "r.dep_id = dep_roots.dep_id) WHERE dep_id = ?1 AND "
                  "slot = (SELECT slot FROM dep_roll WHERE dep_id = ?1)",
                  t, 1, NULL);
    if (e == KEYTIER_OK && kt_db_changes(st) != 1)
        e = kt_err(KEYTIER_E_NOT_FOUND, "DEP %s has no roll pending", dep_id);
    /* cached copies name the old root */
    if (e == KEYTIER_OK)
        e = kt_inval_add(st, KT_INVAL_DEP, dep_id, "roll");
    return e;
}

keytier_err kt_store_roll_end(struct kt_store *st, const char *dep_id,
                              bool commit)
{
    const char *t[] = {dep_id};
    const int64_t registered = KEYTIER_DEP_REGISTERED;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    if (commit)
        e = kt_roll_commit(st, dep_id);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "roll", "DELETE FROM dep_roll WHERE dep_id = ?1", t,
                      1, NULL);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "roll",
                      "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND "
                      "state = 2",
                      t, 1, &registered);
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

keytier_err kt_store_roll_claim(struct kt_store *st, const char *dep_id,
                                int64_t started, int64_t now, bool *claimed)
{
    struct kt_stmt s;
    /* One conditional UPDATE, atomic alone on both engines (PostgreSQL
     * checks the condition again on the row it locked). */
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "claim roll",
                 "UPDATE dep_roll SET started = ?3 WHERE dep_id = ?1 AND "
                 "started = ?2 AND ?3 > ?2");
    kt_stmt_bind_text(&s, 1, dep_id);
    kt_stmt_bind_int64(&s, 2, started);
    kt_stmt_bind_int64(&s, 3, now);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    *claimed = e == KEYTIER_OK && kt_db_changes(st) == 1;
    pthread_mutex_unlock(&st->mu);
    return e;
}
