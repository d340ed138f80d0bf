/*
 * DEPs in the store: the deps table and each DEP's three wrapped copies of
 * its key in dep_roots (slot KEYTIER_ROOT_A, _B, _AVAIL).
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

static keytier_err kt_dep_count_locked(struct kt_store *st, const char *tenant,
                                       const char *workload, unsigned *count)
{
    struct kt_stmt s;
    bool row;
    kt_stmt_prep(&s, st, "count DEPs",
                 "SELECT count(*) FROM deps WHERE tenant = ?1 AND "
                 "workload = ?2 AND state != ?3");
    kt_stmt_bind_text(&s, 1, tenant);
    kt_stmt_bind_text(&s, 2, workload);
    kt_stmt_bind_int(&s, 3, KEYTIER_DEP_PURGED);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        *count = (unsigned)kt_stmt_col_int(&s, 0);
    else if (e == KEYTIER_OK)
        e = kt_err(KEYTIER_E_STORE, "count DEPs: no row");
    if (e == KEYTIER_OK)
        e = kt_stmt_err(&s);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_dep_count(struct kt_store *st, const char *tenant,
                               const char *workload, unsigned *count)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_dep_count_locked(st, tenant, workload, count);
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_dep_insert_row(struct kt_store *st,
                                     const struct kt_dep_rec *dep)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "insert DEP",
                 "INSERT INTO deps(dep_id, policy_id, tenant, "
                 "workload, state, created, key_check, name, region) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    kt_stmt_bind_text(&s, 1, dep->dep_id);
    kt_stmt_bind_text(&s, 2, dep->policy_id);
    kt_stmt_bind_text(&s, 3, dep->tenant);
    kt_stmt_bind_text(&s, 4, dep->workload);
    kt_stmt_bind_int(&s, 5, dep->state);
    kt_stmt_bind_int64(&s, 6, dep->created);
    kt_stmt_bind_blob(&s, 7, dep->check, sizeof dep->check);
    /* "": the DEP has no name (NULL) */
    kt_stmt_bind_text(&s, 8, dep->name[0] != '\0' ? dep->name : NULL);
    kt_stmt_bind_text(&s, 9, dep->region[0] != '\0' ? dep->region : NULL);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

static keytier_err kt_dep_insert_root(struct kt_store *st, const char *dep_id,
                                      int slot, const struct kt_root_rec *r)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "insert DEP root",
                 "INSERT INTO dep_roots(dep_id, slot, uri, "
                 "mech, wrapped, ident) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    kt_stmt_bind_text(&s, 1, dep_id);
    kt_stmt_bind_int(&s, 2, slot);
    kt_stmt_bind_text(&s, 3, r->uri);
    kt_stmt_bind_text(&s, 4, r->mech);
    kt_stmt_bind_blob(&s, 5, r->wrapped, r->wrapped_len);
    kt_stmt_bind_text(&s, 6, r->ident[0] != '\0' ? r->ident : NULL);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

/* The tenant's DEP of the workload in region (NULL in the store: the
 * default region) whose state is not in the excluded ones, newest first,
 * leaving out skip; "" when none.  The caller holds st->mu. */
static keytier_err kt_dep_region_locked(struct kt_store *st, const char *tenant,
                                        const char *workload,
                                        const char *region, const char *skip,
                                        bool offboarded_too,
                                        char dep_id[KEYTIER_ID_SIZE])
{
    struct kt_stmt s;
    bool row;
    dep_id[0] = '\0';
    kt_stmt_prep(&s, st, "DEP of a region",
                 "SELECT dep_id FROM deps WHERE tenant = ?1 AND workload = ?2 "
                 "AND COALESCE(region, ?6) = ?3 AND state NOT IN (?4, ?5, ?7) "
                 "AND (?8 IS NULL OR dep_id != ?8) "
                 "ORDER BY created DESC, rowid DESC LIMIT 1");
    kt_stmt_bind_text(&s, 1, tenant);
    kt_stmt_bind_text(&s, 2, workload);
    kt_stmt_bind_text(&s, 3,
                      region[0] != '\0' ? region : KEYTIER_REGION_DEFAULT);
    kt_stmt_bind_int(&s, 4, KEYTIER_DEP_DISABLED);
    kt_stmt_bind_int(&s, 5, KEYTIER_DEP_PURGED);
    kt_stmt_bind_text(&s, 6, KEYTIER_REGION_DEFAULT);
    kt_stmt_bind_int(
        &s, 7, offboarded_too ? KEYTIER_DEP_PURGED : KEYTIER_DEP_OFFBOARDED);
    kt_stmt_bind_text(&s, 8, skip);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        kt_stmt_col_text(&s, 0, dep_id, KEYTIER_ID_SIZE);
    if (e == KEYTIER_OK)
        e = kt_stmt_err(&s);
    kt_stmt_done(&s);
    return e;
}

keytier_err kt_store_dep_in_region(struct kt_store *st, const char *tenant,
                                   const char *workload, const char *region,
                                   const char *skip,
                                   char dep_id[KEYTIER_ID_SIZE])
{
    pthread_mutex_lock(&st->mu);
    keytier_err e =
        kt_dep_region_locked(st, tenant, workload, region, skip, false, dep_id);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_of_region(struct kt_store *st, const char *tenant,
                                   const char *workload, const char *region,
                                   char dep_id[KEYTIER_ID_SIZE])
{
    pthread_mutex_lock(&st->mu);
    keytier_err e =
        kt_dep_region_locked(st, tenant, workload, region, NULL, true, dep_id);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* The checks of an insert inside its transaction: the DEP limit, and for
 * a files DEP (region or tik given) one DEP per region. */
static keytier_err kt_dep_insert_checks(struct kt_store *st,
                                        const struct kt_dep_rec *dep,
                                        unsigned limit, bool files,
                                        const char *replaces)
{
    unsigned count = 0;
    keytier_err e = kt_dep_count_locked(st, dep->tenant, dep->workload, &count);
    if (e != KEYTIER_OK)
        return e;
    if (count >= limit)
        return kt_err(KEYTIER_E_DEP_LIMIT,
                      "tenant %s already has %u DEPs for workload %s (limit "
                      "%u)",
                      dep->tenant, count, dep->workload, limit);
    if (!files)
        return KEYTIER_OK;
    char other[KEYTIER_ID_SIZE];
    e = kt_dep_region_locked(st, dep->tenant, dep->workload, dep->region,
                             replaces, false, other);
    if (e == KEYTIER_OK && other[0] != '\0')
        e = kt_err(KEYTIER_E_DEP_REGION,
                   "tenant %s already has files DEP %s for workload %s in "
                   "region %s; one files DEP per tenant and region (disable "
                   "or offboard it first, or choose another region)",
                   dep->tenant, other, dep->workload,
                   dep->region[0] ? dep->region : KEYTIER_REGION_DEFAULT);
    return e;
}

keytier_err kt_store_dep_insert(struct kt_store *st,
                                const struct kt_dep_rec *dep, unsigned limit)
{
    return kt_store_dep_insert_files(st, dep, limit, NULL, NULL);
}

keytier_err kt_store_dep_insert_files(struct kt_store *st,
                                      const struct kt_dep_rec *dep,
                                      unsigned limit,
                                      const struct kt_key_rec *tik,
                                      const char *replaces)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_dep_insert_checks(st, dep, limit,
                             tik != NULL || dep->region[0] != '\0', replaces);
    if (e == KEYTIER_OK)
        e = kt_dep_insert_row(st, dep);
    for (int slot = 0; slot < 3 && e == KEYTIER_OK; slot++)
        e = kt_dep_insert_root(st, dep->dep_id, slot, &dep->roots[slot]);
    if (e != KEYTIER_OK)
        goto fail;
    if (tik != NULL && (e = kt_key_insert_locked(st, tik)) != KEYTIER_OK)
        goto fail;
    e = kt_db_commit(st);
    goto out;
fail:
    kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

#define KT_DEP_COLS                                                            \
    "dep_id, policy_id, tenant, workload, state, created, key_check, name, "   \
    "region"

/* The wrapped copies of d into d->roots: all three, or none for a purged
 * DEP (it keeps its row without them). */
static keytier_err kt_dep_roots(struct kt_store *st, struct kt_dep_rec *d)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "read DEP roots",
                 "SELECT slot, uri, mech, wrapped, ident FROM dep_roots "
                 "WHERE dep_id = ?1");
    kt_stmt_bind_text(&s, 1, d->dep_id);
    unsigned seen = 0;
    bool row;
    keytier_err e;
    while ((e = kt_stmt_step(&s, &row)) == KEYTIER_OK && row) {
        int slot = kt_stmt_col_int(&s, 0);
        if (slot < 0 || slot > 2) {
            e = kt_err(KEYTIER_E_FORMAT, "DEP %s: bad root slot", d->dep_id);
            break;
        }
        struct kt_root_rec *rr = &d->roots[slot];
        kt_stmt_col_text(&s, 1, rr->uri, sizeof rr->uri);
        kt_stmt_col_text(&s, 2, rr->mech, sizeof rr->mech);
        kt_stmt_col_text(&s, 4, rr->ident, sizeof rr->ident); /* NULL: "" */
        if (!kt_stmt_col_blob(&s, 3, rr->wrapped, sizeof rr->wrapped,
                              &rr->wrapped_len)) {
            e = kt_stmt_err(&s) != KEYTIER_OK
                    ? kt_stmt_err(&s)
                    : kt_err(KEYTIER_E_FORMAT, "DEP %s: wrapped copy too large",
                             d->dep_id);
            break;
        }
        if ((e = kt_stmt_err(&s)) != KEYTIER_OK)
            break;
        seen |= 1u << slot;
    }
    kt_stmt_done(&s);
    if (e == KEYTIER_OK && seen != 7 &&
        !(seen == 0 && d->state == KEYTIER_DEP_PURGED))
        e = kt_err(KEYTIER_E_FORMAT, "DEP %s: missing wrapped copies",
                   d->dep_id);
    return e;
}

/* One row of KT_DEP_COLS, with its wrapped copies read by a second
 * statement. */
static keytier_err kt_dep_row(struct kt_store *st, struct kt_stmt *s,
                              struct kt_dep_rec *d)
{
    memset(d, 0, sizeof *d);
    kt_stmt_col_text(s, 0, d->dep_id, sizeof d->dep_id);
    kt_stmt_col_text(s, 1, d->policy_id, sizeof d->policy_id);
    kt_stmt_col_text(s, 2, d->tenant, sizeof d->tenant);
    kt_stmt_col_text(s, 3, d->workload, sizeof d->workload);
    d->state = kt_stmt_col_int(s, 4);
    d->created = kt_stmt_col_int64(s, 5);
    size_t n;
    bool check = kt_stmt_col_blob(s, 6, d->check, sizeof d->check, &n) &&
                 n == sizeof d->check;
    kt_stmt_col_text(s, 7, d->name, sizeof d->name);     /* NULL: "" */
    kt_stmt_col_text(s, 8, d->region, sizeof d->region); /* NULL: "" */
    if (kt_stmt_err(s) != KEYTIER_OK)
        return kt_stmt_err(s);
    if (!check)
        return kt_err(KEYTIER_E_FORMAT, "DEP %s: bad key check value",
                      d->dep_id);
    return kt_dep_roots(st, d);
}

keytier_err kt_store_dep_get(struct kt_store *st, const char *dep_id,
                             struct kt_dep_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read DEP",
                 "SELECT " KT_DEP_COLS " FROM deps WHERE dep_id = ?1");
    kt_stmt_bind_text(&s, 1, dep_id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        e = kt_dep_row(st, &s, out);
    else if (e == KEYTIER_OK)
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND, "%s", dep_id);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* kt_dep_row into the kt_dep_rec at p (kt_stmt_collect). */
static keytier_err kt_dep_row_any(struct kt_stmt *s, void *p)
{
    return kt_dep_row(s->st, s, p);
}

keytier_err kt_store_dep_list(struct kt_store *st, const char *tenant,
                              const char *workload, struct kt_dep_rec **out,
                              size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list DEPs",
                 "SELECT " KT_DEP_COLS " FROM deps "
                 "WHERE (?1 IS NULL OR tenant = ?1) "
                 "AND (?2 IS NULL OR workload = ?2) "
                 "ORDER BY created, rowid");
    kt_stmt_bind_text(&s, 1, tenant);
    kt_stmt_bind_text(&s, 2, workload);
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 8, kt_dep_row_any, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}

keytier_err kt_store_dep_state(struct kt_store *st, const char *dep_id,
                               int *state)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read DEP state",
                 "SELECT state FROM deps WHERE dep_id = ?1");
    kt_stmt_bind_text(&s, 1, dep_id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        *state = kt_stmt_col_int(&s, 0);
        e = kt_stmt_err(&s);
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND, "%s", dep_id);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_set_state(struct kt_store *st, const char *dep_id,
                                   int state)
{
    const char *t[] = {dep_id};
    const int64_t v = state;
    pthread_mutex_lock(&st->mu);
    /* The state change and its cache invalidation commit together. */
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_db_run(st, "update DEP",
                  "UPDATE deps SET state = ?2 WHERE dep_id = ?1", t, 1, &v);
    if (e == KEYTIER_OK && kt_db_changes(st) == 0)
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND, "%s", dep_id);
    if (e == KEYTIER_OK)
        e = kt_inval_add(st, KT_INVAL_DEP, dep_id,
                         state == KEYTIER_DEP_DISABLED ? "disable" : "state");
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

/* ---- registration ------------------------------------------------------ */

keytier_err kt_store_dep_registered(struct kt_store *st, const char *dep_id,
                                    bool *done)
{
    const char *t[] = {dep_id};
    const int64_t registered = KEYTIER_DEP_REGISTERED;
    pthread_mutex_lock(&st->mu);
    /* REGISTERING is 0: only a DEP still registering moves. */
    keytier_err e =
        kt_db_run(st, "register DEP",
                  "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND state = 0",
                  t, 1, &registered);
    *done = e == KEYTIER_OK && kt_db_changes(st) == 1;
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_unregister(struct kt_store *st, const char *dep_id)
{
    const char *t[] = {dep_id};
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    /* a registering DEP has no key but its TIK (files shape) */
    e = kt_db_run(st, "remove DEP",
                  "DELETE FROM tier_keys WHERE dep_id = (SELECT dep_id FROM "
                  "deps WHERE dep_id = ?1 AND state = 0)",
                  t, 1, NULL);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "remove DEP",
                      "DELETE FROM dep_roots WHERE dep_id = (SELECT dep_id "
                      "FROM deps WHERE dep_id = ?1 AND state = 0)",
                      t, 1, NULL);
    if (e == KEYTIER_OK)
        e = kt_db_run(st, "remove DEP",
                      "DELETE FROM deps WHERE dep_id = ?1 AND state = 0", t, 1,
                      NULL);
    if (e != KEYTIER_OK) {
        kt_db_rollback(st);
        goto out;
    }
    e = kt_db_commit(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}
