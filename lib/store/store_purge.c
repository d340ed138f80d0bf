/*
 * A tenant's purge: every row that holds or leads to its key material, in
 * every family (rolls, wrapped copies, migrations, tier keys), goes in one
 * transaction, and its DEPs stay as PURGED rows without copies.
 */
#include "store_stmt.h"

/* Run in this order (children before the rows they reference); the tier
 * keys' row count is the purge's result. */
static const char *const kt_purge_sql[] = {
    "DELETE FROM dep_roll WHERE dep_id IN "
    "(SELECT dep_id FROM deps WHERE tenant = ?1)",
    "DELETE FROM dep_roots WHERE dep_id IN "
    "(SELECT dep_id FROM deps WHERE tenant = ?1)",
    "DELETE FROM migration_items WHERE migration_id IN "
    "(SELECT migration_id FROM migrations WHERE tenant = ?1)",
    "DELETE FROM migrations WHERE tenant = ?1",
    "DELETE FROM tier_keys WHERE tenant = ?1",
    "UPDATE deps SET state = ?2 WHERE tenant = ?1",
};
#define KT_PURGE_TIER_KEYS 4
#define KT_PURGE_DEPS      5

keytier_err kt_store_tenant_purge(struct kt_store *st, const char *tenant,
                                  size_t *keys)
{
    const char *t[] = {tenant};
    const int64_t purged = KEYTIER_DEP_PURGED;
    pthread_mutex_lock(&st->mu);
    /* Deleted pages are overwritten with zeros, and the WAL is emptied
     * afterwards: the wrapped copies leave the file, not just the index. */
    keytier_err e = kt_db_exec(st, "purge", "PRAGMA secure_delete = ON");
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
        kt_db_exec(st, "purge", "PRAGMA wal_checkpoint(TRUNCATE)") !=
            KEYTIER_OK)
        kt_err_clear();
    goto out;
fail:
    kt_db_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}
