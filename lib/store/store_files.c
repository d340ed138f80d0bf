/*
 * The files workload's offboarding in the store: the journal (offboards,
 * one row per DEP whose step only moves forward) and the TIKs it
 * re-protected under a service-managed key (managed_tiks).  Each step is
 * one transaction with what it did, so a crash leaves the journal and the
 * rows in step (lib/lifecycle/offboard.c resumes from the step).
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

#define KT_OFFBOARD_COLS                                                       \
    "dep_id, tenant, step, managed_id, approval, uri, ident, started, "        \
    "updated"

keytier_err kt_store_offboard_get(struct kt_store *st, const char *dep_id,
                                  struct kt_offboard_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read offboarding",
                 "SELECT " KT_OFFBOARD_COLS " FROM offboards WHERE "
                 "dep_id = ?1");
    kt_stmt_bind_text(&s, 1, dep_id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        memset(out, 0, sizeof *out);
        kt_stmt_col_text(&s, 0, out->dep_id, sizeof out->dep_id);
        kt_stmt_col_text(&s, 1, out->tenant, sizeof out->tenant);
        out->step = kt_stmt_col_int(&s, 2);
        kt_stmt_col_text(&s, 3, out->managed_id, sizeof out->managed_id);
        kt_stmt_col_text(&s, 4, out->approval, sizeof out->approval);
        kt_stmt_col_text(&s, 5, out->uri, sizeof out->uri);
        kt_stmt_col_text(&s, 6, out->ident, sizeof out->ident);
        out->started = kt_stmt_col_int64(&s, 7);
        out->updated = kt_stmt_col_int64(&s, 8);
        e = kt_stmt_err(&s);
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "no offboarding of DEP %s", dep_id);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_offboard_begin(struct kt_store *st,
                                    const struct kt_offboard_rec *r)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "begin offboarding",
                 "INSERT INTO offboards(" KT_OFFBOARD_COLS ") VALUES "
                 "(?1, ?2, 0, ?3, ?4, NULL, NULL, ?5, ?5)");
    kt_stmt_bind_text(&s, 1, r->dep_id);
    kt_stmt_bind_text(&s, 2, r->tenant);
    kt_stmt_bind_text(&s, 3, r->managed_id);
    kt_stmt_bind_text(&s, 4, r->approval[0] != '\0' ? r->approval : NULL);
    kt_stmt_bind_int64(&s, 5, r->started);
    keytier_err e = kt_stmt_exec(&s);
    if (kt_stmt_rc(&s) == SQLITE_CONSTRAINT_PRIMARYKEY)
        e = kt_err(KEYTIER_E_EXISTS, "DEP %s is being offboarded already",
                   r->dep_id);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* Moves the journal of dep_id from step `from` to from + 1 (inside the
 * caller's transaction); KEYTIER_E_DEP_STATE when it was elsewhere. */
static keytier_err kt_offboard_advance(struct kt_store *st, const char *dep_id,
                                       int from, int64_t now)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "offboarding step",
                 "UPDATE offboards SET step = ?2 + 1, updated = ?3 WHERE "
                 "dep_id = ?1 AND step = ?2");
    kt_stmt_bind_text(&s, 1, dep_id);
    kt_stmt_bind_int(&s, 2, from);
    kt_stmt_bind_int64(&s, 3, now);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    if (e == KEYTIER_OK && kt_db_changes(st) != 1)
        e = kt_err(KEYTIER_E_DEP_STATE,
                   "offboarding of DEP %s is not at step %d (another run "
                   "moved it on)",
                   dep_id, from);
    return e;
}

keytier_err kt_store_offboard_key(struct kt_store *st, const char *dep_id,
                                  const char *uri, const char *ident,
                                  int64_t now)
{
    const char *t[] = {dep_id, uri, ident};
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_offboard_advance(st, dep_id, KT_OFFBOARD_STARTED, now);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "offboarding key",
                      "UPDATE offboards SET uri = ?2, ident = ?3 WHERE "
                      "dep_id = ?1",
                      t, 3, NULL);
    if (e == KEYTIER_OK)
        e = kt_db_commit(st);
    else
        kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_managed_insert(struct kt_store *st,
                                     const struct kt_managed_rec *m)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "re-protected TIK",
                 "INSERT INTO managed_tiks(tik_id, dep_id, tenant, uri, "
                 "mech, wrapped, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                 "?7) ON CONFLICT (tik_id) DO UPDATE SET dep_id = "
                 "excluded.dep_id, tenant = excluded.tenant, uri = "
                 "excluded.uri, mech = excluded.mech, wrapped = "
                 "excluded.wrapped, created = excluded.created");
    kt_stmt_bind_text(&s, 1, m->tik_id);
    kt_stmt_bind_text(&s, 2, m->dep_id);
    kt_stmt_bind_text(&s, 3, m->tenant);
    kt_stmt_bind_text(&s, 4, m->uri);
    kt_stmt_bind_text(&s, 5, m->mech);
    kt_stmt_bind_blob(&s, 6, m->wrapped, m->wrapped_len);
    kt_stmt_bind_int64(&s, 7, m->created);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_offboard_protect(struct kt_store *st, const char *dep_id,
                                      const struct kt_managed_rec *m, size_t n,
                                      int64_t now)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_offboard_advance(st, dep_id, KT_OFFBOARD_KEY_READY, now);
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++)
        e = kt_managed_insert(st, &m[i]);
    if (e == KEYTIER_OK)
        e = kt_db_commit(st);
    else
        kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_offboard_finish(struct kt_store *st, const char *dep_id,
                                     int64_t now)
{
    const char *t[] = {dep_id};
    const int64_t v = KEYTIER_DEP_OFFBOARDED;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_offboard_advance(st, dep_id, KT_OFFBOARD_PROTECTED, now);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "offboard DEP",
                      "UPDATE deps SET state = ?2 WHERE dep_id = ?1", t, 1, &v);
    if (e == KEYTIER_OK)
        e = kt_inval_add(st, KT_INVAL_DEP, dep_id, "offboard");
    if (e == KEYTIER_OK)
        e = kt_db_commit(st);
    else
        kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_managed_get(struct kt_store *st, const char *tik_id,
                                 struct kt_managed_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read re-protected TIK",
                 "SELECT tik_id, dep_id, tenant, uri, mech, wrapped, created "
                 "FROM managed_tiks WHERE tik_id = ?1");
    kt_stmt_bind_text(&s, 1, tik_id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        memset(out, 0, sizeof *out);
        kt_stmt_col_text(&s, 0, out->tik_id, sizeof out->tik_id);
        kt_stmt_col_text(&s, 1, out->dep_id, sizeof out->dep_id);
        kt_stmt_col_text(&s, 2, out->tenant, sizeof out->tenant);
        kt_stmt_col_text(&s, 3, out->uri, sizeof out->uri);
        kt_stmt_col_text(&s, 4, out->mech, sizeof out->mech);
        bool fits = kt_stmt_col_blob(&s, 5, out->wrapped, sizeof out->wrapped,
                                     &out->wrapped_len);
        out->created = kt_stmt_col_int64(&s, 6);
        e = kt_stmt_err(&s);
        if (e == KEYTIER_OK && !fits)
            e = kt_err(KEYTIER_E_FORMAT, "TIK %s: wrapped copy too large",
                       tik_id);
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "TIK %s has no service-managed copy",
                   tik_id);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}
