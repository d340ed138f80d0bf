/*
 * A tenant's purge: every row that holds or leads to its key material, in
 * every family (rolls, wrapped copies, migrations, tier keys), goes in one
 * transaction, and its DEPs stay as PURGED rows without copies.  Before
 * it, who else names a key (kt_store_root_refs), so that the purge of one
 * tenant never destroys a key another still uses.
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

keytier_err kt_store_root_refs(struct kt_store *st, const char *ident,
                               const char *uri, const char *skip_tenant,
                               int only_slot, struct kt_root_ref *out,
                               size_t cap, size_t *n)
{
    struct kt_stmt s;
    bool row;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    /* Purged DEPs keep no roots; a roll's pending copy is a reference too
     * (it becomes the DEP's root when the roll ends). */
    kt_stmt_prep(&s, st, "key references",
                 "SELECT r.dep_id, d.tenant, r.slot, r.pending FROM ("
                 "  SELECT dep_id, slot, uri, ident, 0 AS pending FROM "
                 "  dep_roots UNION ALL SELECT dep_id, slot, uri, ident, 1 "
                 "  FROM dep_roll) r JOIN deps d ON d.dep_id = r.dep_id "
                 "WHERE d.state != ?4 AND ((?1 IS NOT NULL AND r.ident = ?1) "
                 "OR r.uri = ?2) AND (?3 IS NULL OR d.tenant != ?3) AND "
                 "(?5 < 0 OR r.slot = ?5) "
                 "ORDER BY d.tenant, r.dep_id, r.slot, r.pending");
    kt_stmt_bind_text(&s, 1, ident != NULL && ident[0] != '\0' ? ident : NULL);
    kt_stmt_bind_text(&s, 2, uri);
    kt_stmt_bind_text(&s, 3, skip_tenant);
    kt_stmt_bind_int(&s, 4, KEYTIER_DEP_PURGED);
    kt_stmt_bind_int(&s, 5, only_slot);
    keytier_err e;
    while ((e = kt_stmt_step(&s, &row)) == KEYTIER_OK && row) {
        if (*n < cap) {
            struct kt_root_ref *r = &out[*n];
            kt_stmt_col_text(&s, 0, r->dep_id, sizeof r->dep_id);
            kt_stmt_col_text(&s, 1, r->tenant, sizeof r->tenant);
            r->slot = kt_stmt_col_int(&s, 2);
            r->pending = kt_stmt_col_int(&s, 3) != 0;
        }
        (*n)++;
        if ((e = kt_stmt_err(&s)) != KEYTIER_OK)
            break;
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_root_legacy(struct kt_store *st, const char *skip_tenant,
                                 struct kt_root_legacy **out, size_t *n)
{
    struct kt_stmt s;
    bool row;
    size_t cap = 0;
    struct kt_root_legacy *list = NULL;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "roots without identity",
                 "SELECT r.dep_id, d.tenant, r.slot, r.uri FROM dep_roots r "
                 "JOIN deps d ON d.dep_id = r.dep_id WHERE r.ident IS NULL "
                 "AND d.state != ?2 AND (?1 IS NULL OR d.tenant != ?1) "
                 "ORDER BY d.tenant, r.dep_id, r.slot");
    kt_stmt_bind_text(&s, 1, skip_tenant);
    kt_stmt_bind_int(&s, 2, KEYTIER_DEP_PURGED);
    keytier_err e;
    while ((e = kt_stmt_step(&s, &row)) == KEYTIER_OK && row) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            struct kt_root_legacy *nl = realloc(list, nc * sizeof *nl);
            if (nl == NULL) {
                e = kt_err(KEYTIER_E_NOMEM, NULL);
                break;
            }
            list = nl;
            cap = nc;
        }
        struct kt_root_legacy *l = &list[*n];
        memset(l, 0, sizeof *l);
        kt_stmt_col_text(&s, 0, l->ref.dep_id, sizeof l->ref.dep_id);
        kt_stmt_col_text(&s, 1, l->ref.tenant, sizeof l->ref.tenant);
        l->ref.slot = kt_stmt_col_int(&s, 2);
        kt_stmt_col_text(&s, 3, l->uri, sizeof l->uri);
        (*n)++;
        if ((e = kt_stmt_err(&s)) != KEYTIER_OK)
            break;
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    if (e != KEYTIER_OK) {
        free(list);
        *n = 0;
        return e;
    }
    *out = list;
    return KEYTIER_OK;
}

keytier_err kt_store_root_ident_set(struct kt_store *st, const char *dep_id,
                                    int slot, const char *ident)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "record a root's identity",
                 "UPDATE dep_roots SET ident = ?3 WHERE dep_id = ?1 AND "
                 "slot = ?2 AND ident IS NULL");
    kt_stmt_bind_text(&s, 1, dep_id);
    kt_stmt_bind_int(&s, 2, slot);
    kt_stmt_bind_text(&s, 3, ident);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* Run in this order (children before the rows they reference); the tier
 * keys' row count is the purge's result. */
static const char *const kt_purge_sql[] = {
    "DELETE FROM dep_roll WHERE dep_id IN "
    "(SELECT dep_id FROM deps WHERE tenant = ?1)",
    "DELETE FROM dep_roots WHERE dep_id IN "
    "(SELECT dep_id FROM deps WHERE tenant = ?1)",
    "DELETE FROM managed_tiks WHERE tenant = ?1",
    "DELETE FROM migration_items WHERE migration_id IN "
    "(SELECT migration_id FROM migrations WHERE tenant = ?1)",
    "DELETE FROM migrations WHERE tenant = ?1",
    "DELETE FROM tier_keys WHERE tenant = ?1",
    "UPDATE deps SET state = ?2 WHERE tenant = ?1",
};
#define KT_PURGE_TIER_KEYS 5
#define KT_PURGE_DEPS      6

keytier_err kt_store_tenant_purge(struct kt_store *st, const char *tenant,
                                  size_t *keys)
{
    const char *t[] = {tenant};
    const int64_t purged = KEYTIER_DEP_PURGED;
    pthread_mutex_lock(&st->mu);
    /* Deleted pages are overwritten with zeros, and the WAL is emptied
     * afterwards: the wrapped copies leave the file, not just the index. */
    keytier_err e = kt_db_pragma(st, "purge", "PRAGMA secure_delete = ON");
    if (e == KEYTIER_OK)
        e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    *keys = 0;
    for (size_t i = 0; i < sizeof kt_purge_sql / sizeof kt_purge_sql[0]; i++) {
        e = kt_db_run(st, "purge", kt_purge_sql[i], t, 1,
                      i == KT_PURGE_DEPS ? &purged : NULL);
        if (e != KEYTIER_OK)
            goto fail;
        if (i == KT_PURGE_TIER_KEYS)
            *keys = (size_t)kt_db_changes(st);
    }
    e = kt_inval_add(st, KT_INVAL_TENANT, tenant, "purge");
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_db_commit(st);
    /* Best effort: the rows are gone from the database either way; a
     * reader holding the WAL only delays its truncation. */
    if (e == KEYTIER_OK &&
        kt_db_pragma(st, "purge", "PRAGMA wal_checkpoint(TRUNCATE)") !=
            KEYTIER_OK)
        kt_err_clear();
    goto out;
fail:
    kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_tenant_purged(struct kt_store *st, const char *tenant,
                                   const char *workload, bool *purged)
{
    struct kt_stmt s;
    bool row;
    *purged = false;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "tenant purged",
                 "SELECT count(*), coalesce(sum(CASE WHEN state = ?3 THEN 1 "
                 "ELSE 0 END), 0) FROM deps "
                 "WHERE tenant = ?1 AND (?2 IS NULL OR workload = ?2)");
    kt_stmt_bind_text(&s, 1, tenant);
    kt_stmt_bind_text(&s, 2, workload);
    kt_stmt_bind_int(&s, 3, KEYTIER_DEP_PURGED);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        int64_t all = kt_stmt_col_int64(&s, 0);
        *purged = all > 0 && kt_stmt_col_int64(&s, 1) == all;
        e = kt_stmt_err(&s);
    }
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}
