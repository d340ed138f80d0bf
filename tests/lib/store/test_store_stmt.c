/* The store's checked statement (lib/store/store_stmt.h): a failed prepare,
 * bind, step or column read is reported with the SQL and SQLite's message and
 * stops the statement; and in every table family a write that fails part
 * way leaves the old state. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_stmt.h"
#include "testenv.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/kt-stmt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/k.db", dir);
}

static void teardown(void)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Runs SQL on a connection of its own (the store's stays open). */
static void sql(const char *stmt)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(db, stmt, NULL, NULL, &err) == SQLITE_OK, "%s",
                  err ? err : "");
    sqlite3_close(db);
}

static int sql_int(const char *q)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int v = -1;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void detail_has(const char *want)
{
    ck_assert_msg(strstr(keytier_last_error_detail(), want) != NULL,
                  "'%s' not in '%s'", want, keytier_last_error_detail());
}

static void dep_rec(struct kt_dep_rec *d, int n)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dep_id, sizeof d->dep_id, "00000000-0000-4000-8000-%012d", n);
    snprintf(d->policy_id, sizeof d->policy_id, "11111111-0000-4000-8000-%012d",
             n);
    strcpy(d->tenant, "org-1");
    strcpy(d->workload, "Exchange");
    d->state = KEYTIER_DEP_REGISTERED;
    d->created = 1000 + n;
    for (int i = 0; i < 3; i++) {
        snprintf(d->roots[i].uri, sizeof d->roots[i].uri,
                 "pkcs11:token=T%d;object=r", i);
        strcpy(d->roots[i].mech, "aes-key-wrap-pad");
        d->roots[i].wrapped_len = 40;
        memset(d->roots[i].wrapped, i + 1, 40);
    }
}

static void key_rec(struct kt_key_rec *k, int n, const char *dep_id,
                    const char *name)
{
    memset(k, 0, sizeof *k);
    snprintf(k->key_id, sizeof k->key_id, "22222222-0000-4000-8000-%012d", n);
    strcpy(k->tenant, "org-1");
    strcpy(k->workload, "Exchange");
    strcpy(k->dep_id, dep_id);
    strcpy(k->parent_id, dep_id);
    snprintf(k->name, sizeof k->name, "%s", name);
    k->level = 1;
    k->created = 2000 + n;
    memset(k->wrapped, n, sizeof k->wrapped);
}

static struct kt_store *open_with_dep(struct kt_dep_rec *d)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    dep_rec(d, 1);
    ck_assert_int_eq(kt_store_dep_insert(st, d, 10), KEYTIER_OK);
    return st;
}

/* One literal, so that the second use takes the cached statement. */
static const char kt_test_inval_sql[] =
    "INSERT INTO cache_invalidations(scope, value, reason, created, origin) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";

static keytier_err inval_insert(struct kt_store *st, const char *value,
                                int extra)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "test insert", kt_test_inval_sql);
    kt_stmt_bind_int(&s, 1, KT_INVAL_DEP);
    kt_stmt_bind_text(&s, 2, value);
    kt_stmt_bind_text(&s, 3, "test");
    if (extra > 0)
        kt_stmt_bind_int(&s, extra, 1);
    kt_stmt_bind_int64(&s, 4, 1);
    kt_stmt_bind_text(&s, 5, "o");
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

START_TEST(failed_bind_stops_the_step)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    /* ?9 does not exist: the binds after it and the step do not run, and
     * the value bound before it is not in the message. */
    ck_assert_int_eq(inval_insert(st, "s3cret-value", 9), KEYTIER_E_STORE);
    detail_has("test insert: binding ?9: column index out of range");
    detail_has("[INSERT INTO cache_invalidations(scope, value, reason, ");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "s3cret"));
    int64_t head = -1;
    ck_assert_int_eq(kt_store_inval_head(st, &head), KEYTIER_OK);
    ck_assert_int_eq(head, 0);
    /* The cached statement comes back reset, its bindings cleared. */
    ck_assert_int_eq(inval_insert(st, "v", 0), KEYTIER_OK);
    ck_assert_int_eq(kt_store_inval_head(st, &head), KEYTIER_OK);
    ck_assert_int_eq(head, 1);
    kt_store_close(st);
}
END_TEST

START_TEST(bind_failure_codes)
{
    struct kt_store *st;
    struct kt_stmt s;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    kt_stmt_prep(&s, st, "probe", "SELECT ?1");
    kt_stmt_bind_text(&s, 0, "x"); /* parameters count from 1 */
    ck_assert_int_eq(kt_stmt_err(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_RANGE);
    bool row = true;
    ck_assert_int_eq(kt_stmt_step(&s, &row), KEYTIER_E_STORE);
    ck_assert(!row);
    kt_stmt_done(&s);
    /* kt_db_run binds exactly what it is given: a number for a statement
     * without a second parameter is a failure, not ignored. */
    const char *t[] = {"x"};
    const int64_t one = 1;
    ck_assert_int_eq(kt_db_run(st, "probe run",
                               "DELETE FROM keysets WHERE name = ?1", t, 1,
                               &one),
                     KEYTIER_E_STORE);
    detail_has("probe run: binding ?2: column index out of range");
    kt_store_close(st);
}
END_TEST

START_TEST(constraint_failures_are_precise)
{
    struct kt_dep_rec d;
    struct kt_store *st = open_with_dep(&d);
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "test anchor",
                 "INSERT INTO audit_anchors(log_id, path, seq, hash, mac, "
                 "updated) VALUES ('l', 'p', ?1, 'h', x'00', 0)");
    kt_stmt_bind_int64(&s, 1, 0);
    ck_assert_int_eq(kt_stmt_exec(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_CONSTRAINT_CHECK);
    detail_has("test anchor: CHECK constraint failed: seq >= 1 [INSERT INTO "
               "audit_anchors(");
    kt_stmt_done(&s);

    kt_stmt_prep(&s, st, "test roll",
                 "INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, "
                 "started) VALUES (?1, 0, 'u', 'm', x'00', 0)");
    kt_stmt_bind_text(&s, 1, "no-such-dep");
    ck_assert_int_eq(kt_stmt_exec(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_CONSTRAINT_FOREIGNKEY);
    detail_has("test roll: FOREIGN KEY constraint failed");
    kt_stmt_done(&s);

    kt_stmt_prep(&s, st, "test dep",
                 "INSERT INTO deps(dep_id, policy_id, tenant, workload, "
                 "state, created, key_check) VALUES ('x', ?1, 't', 'w', 1, 0, "
                 "x'00')");
    kt_stmt_bind_text(&s, 1, d.policy_id);
    ck_assert_int_eq(kt_stmt_exec(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_CONSTRAINT_UNIQUE);
    detail_has("UNIQUE constraint failed: deps.policy_id");
    kt_stmt_done(&s);
    kt_store_close(st);
}
END_TEST

START_TEST(prepare_failure_names_the_sql)
{
    struct kt_store *st;
    struct kt_stmt s;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    uint64_t ops = kt_store_ops(st);
    kt_stmt_prep(&s, st, "probe", "SELECT x FROM nowhere WHERE y = ?1");
    ck_assert_uint_eq(kt_store_ops(st), ops + 1);
    ck_assert_int_eq(kt_stmt_err(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_ERROR);
    ck_assert_str_eq(keytier_last_error_detail(),
                     "store error: probe: no such table: nowhere "
                     "[SELECT x FROM nowhere WHERE y = ?1]");
    kt_stmt_bind_text(&s, 1, "x"); /* does nothing, keeps the first error */
    bool row;
    ck_assert_int_eq(kt_stmt_step(&s, &row), KEYTIER_E_STORE);
    detail_has("no such table: nowhere");
    kt_stmt_done(&s);
    kt_store_close(st);
}
END_TEST

START_TEST(column_reads_are_checked)
{
    struct kt_store *st;
    struct kt_stmt s;
    bool row;
    char text[8];
    uint8_t blob[2];
    size_t len = 0;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    kt_stmt_prep(&s, st, "probe", "SELECT 7, NULL, 'abcdefghij', x'010203'");
    ck_assert_int_eq(kt_stmt_step(&s, &row), KEYTIER_OK);
    ck_assert(row);
    ck_assert_int_eq(kt_stmt_col_int(&s, 0), 7);
    ck_assert(kt_stmt_col_null(&s, 1));
    kt_stmt_col_text(&s, 1, text, sizeof text);
    ck_assert_str_eq(text, "");
    kt_stmt_col_text(&s, 2, text, sizeof text);
    ck_assert_str_eq(text, "abcdefg");
    /* too large for dst: the caller's format error, not a store failure */
    ck_assert(!kt_stmt_col_blob(&s, 3, blob, sizeof blob, &len));
    ck_assert_int_eq(kt_stmt_err(&s), KEYTIER_OK);
    ck_assert_int_eq(kt_stmt_col_int64(&s, 4), 0);
    ck_assert_int_eq(kt_stmt_err(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_RANGE);
    detail_has("probe: reading column 4: no such column in the row");
    kt_stmt_done(&s);
    /* No row, no columns. */
    kt_stmt_prep(&s, st, "probe2", "SELECT 1 WHERE 0");
    ck_assert_int_eq(kt_stmt_step(&s, &row), KEYTIER_OK);
    ck_assert(!row);
    ck_assert_int_eq(kt_stmt_col_int(&s, 0), 0);
    ck_assert_int_eq(kt_stmt_err(&s), KEYTIER_E_STORE);
    kt_stmt_done(&s);
    /* A statement run for its effect must not return rows. */
    kt_stmt_prep(&s, st, "probe3", "SELECT 1");
    ck_assert_int_eq(kt_stmt_exec(&s), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_stmt_rc(&s), SQLITE_MISUSE);
    detail_has("probe3: returned a row [SELECT 1]");
    kt_stmt_done(&s);
    kt_store_close(st);
}
END_TEST

/* ---- a failed write leaves the old state, family by family ------------- */

START_TEST(dep_state_kept_when_its_invalidation_fails)
{
    struct kt_dep_rec d;
    struct kt_store *st = open_with_dep(&d);
    sql("CREATE TRIGGER boom BEFORE INSERT ON cache_invalidations BEGIN "
        "SELECT RAISE(ABORT, 'boom'); END");
    ck_assert_int_eq(kt_store_dep_set_state(st, d.dep_id, KEYTIER_DEP_DISABLED),
                     KEYTIER_E_STORE);
    detail_has("record cache invalidation: boom");
    int state = -1;
    ck_assert_int_eq(kt_store_dep_state(st, d.dep_id, &state), KEYTIER_OK);
    ck_assert_int_eq(state, KEYTIER_DEP_REGISTERED);
    kt_store_close(st);
}
END_TEST

START_TEST(key_insert_taken_name_keeps_the_first)
{
    struct kt_dep_rec d;
    struct kt_store *st = open_with_dep(&d);
    struct kt_key_rec k, k2, got;
    key_rec(&k, 1, d.dep_id, "mbx");
    ck_assert_int_eq(kt_store_key_insert(st, &k), KEYTIER_OK);
    key_rec(&k2, 2, d.dep_id, "mbx");
    ck_assert_int_eq(kt_store_key_insert(st, &k2), KEYTIER_E_EXISTS);
    detail_has("tenant org-1 already has 'mbx' in Exchange");
    ck_assert_int_eq(kt_store_key_get(st, k2.key_id, &got),
                     KEYTIER_E_NOT_FOUND);
    ck_assert_int_eq(
        kt_store_key_get_by_name(st, "org-1", "Exchange", "mbx", &got),
        KEYTIER_OK);
    ck_assert_str_eq(got.key_id, k.key_id);
    ck_assert_mem_eq(got.wrapped, k.wrapped, sizeof k.wrapped);
    /* A parent that is not a DEP: refused, not stored. */
    key_rec(&k2, 3, "no-such-dep", "other");
    ck_assert_int_eq(kt_store_key_insert(st, &k2), KEYTIER_E_STORE);
    detail_has("FOREIGN KEY constraint failed");
    ck_assert_int_eq(kt_store_key_get(st, k2.key_id, &got),
                     KEYTIER_E_NOT_FOUND);
    kt_store_close(st);
}
END_TEST

START_TEST(roll_failures_keep_the_old_copies)
{
    struct kt_dep_rec d, got;
    struct kt_store *st = open_with_dep(&d);
    struct kt_root_rec pending = d.roots[0];
    strcpy(pending.uri, "pkcs11:token=T0;object=new");
    /* The pending copy is stored but the state change fails: neither. */
    sql("CREATE TRIGGER boom BEFORE UPDATE ON deps BEGIN "
        "SELECT RAISE(ABORT, 'boom'); END");
    ck_assert_int_eq(
        kt_store_roll_begin(st, d.dep_id, 0, &pending, d.roots[1].uri, 5),
        KEYTIER_E_STORE);
    detail_has("roll: boom");
    int slot;
    struct kt_root_rec r;
    ck_assert_int_eq(kt_store_roll_get(st, d.dep_id, &slot, &r, NULL),
                     KEYTIER_E_NOT_FOUND);
    sql("DROP TRIGGER boom");
    ck_assert_int_eq(
        kt_store_roll_begin(st, d.dep_id, 0, &pending, d.roots[1].uri, 5),
        KEYTIER_OK);
    /* The commit's invalidation fails: the old copy stays, the roll is
     * still pending. */
    sql("CREATE TRIGGER boom BEFORE INSERT ON cache_invalidations BEGIN "
        "SELECT RAISE(ABORT, 'boom'); END");
    ck_assert_int_eq(kt_store_roll_end(st, d.dep_id, true), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.roots[0].uri, d.roots[0].uri);
    ck_assert_int_eq(got.state, KEYTIER_DEP_ROLLING);
    ck_assert_int_eq(kt_store_roll_get(st, d.dep_id, &slot, &r, NULL),
                     KEYTIER_OK);
    ck_assert_str_eq(r.uri, pending.uri);
    sql("DROP TRIGGER boom");
    ck_assert_int_eq(kt_store_roll_end(st, d.dep_id, true), KEYTIER_OK);
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.roots[0].uri, pending.uri);
    ck_assert_int_eq(got.state, KEYTIER_DEP_REGISTERED);
    kt_store_close(st);
}
END_TEST

START_TEST(purge_failure_keeps_every_row)
{
    struct kt_dep_rec d, got;
    struct kt_store *st = open_with_dep(&d);
    struct kt_key_rec k, kg;
    key_rec(&k, 1, d.dep_id, "mbx");
    ck_assert_int_eq(kt_store_key_insert(st, &k), KEYTIER_OK);
    /* The last step (the DEPs marked purged) fails. */
    sql("CREATE TRIGGER boom BEFORE UPDATE ON deps BEGIN "
        "SELECT RAISE(ABORT, 'boom'); END");
    size_t keys;
    ck_assert_int_eq(kt_store_tenant_purge(st, "org-1", &keys),
                     KEYTIER_E_STORE);
    detail_has("purge: boom");
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &got), KEYTIER_OK);
    ck_assert_int_eq(got.state, KEYTIER_DEP_REGISTERED);
    ck_assert_mem_eq(got.roots[2].wrapped, d.roots[2].wrapped, 40);
    ck_assert_int_eq(kt_store_key_get(st, k.key_id, &kg), KEYTIER_OK);
    sql("DROP TRIGGER boom");
    ck_assert_int_eq(kt_store_tenant_purge(st, "org-1", &keys), KEYTIER_OK);
    ck_assert_uint_eq(keys, 1);
    ck_assert_int_eq(kt_store_key_get(st, k.key_id, &kg), KEYTIER_E_NOT_FOUND);
    kt_store_close(st);
}
END_TEST

static void mig_rec(struct kt_mig_rec *m, const char *target)
{
    memset(m, 0, sizeof *m);
    strcpy(m->migration_id, "33333333-0000-4000-8000-000000000001");
    strcpy(m->tenant, "org-1");
    strcpy(m->workload, "Exchange");
    strcpy(m->target_dep, target);
    strcpy(m->scope, "all");
    strcpy(m->operation, "migrate");
    m->created = 7;
}

static void mig_update(struct kt_mig_update *u, const struct kt_key_rec *k,
                       const char *to)
{
    memset(u, 0, sizeof *u);
    strcpy(u->key_id, k->key_id);
    strcpy(u->old_dep, k->dep_id);
    strcpy(u->dep_id, to);
    strcpy(u->parent_id, to);
    memset(u->wrapped, 0xee, sizeof u->wrapped);
    u->item = true;
}

START_TEST(migration_failures_move_nothing)
{
    struct kt_dep_rec d, d2;
    struct kt_store *st = open_with_dep(&d);
    dep_rec(&d2, 2);
    ck_assert_int_eq(kt_store_dep_insert(st, &d2, 10), KEYTIER_OK);
    struct kt_key_rec k1, k2, got;
    key_rec(&k1, 1, d.dep_id, "a");
    key_rec(&k2, 2, d.dep_id, "b");
    ck_assert_int_eq(kt_store_key_insert(st, &k1), KEYTIER_OK);
    ck_assert_int_eq(kt_store_key_insert(st, &k2), KEYTIER_OK);
    struct kt_mig_rec m, mg;
    size_t total = 0, applied = 9;
    /* A target that is not a DEP: no migration, no items. */
    mig_rec(&m, "no-such-dep");
    ck_assert_int_eq(kt_store_mig_create(st, &m, &total), KEYTIER_E_STORE);
    detail_has("create migration: FOREIGN KEY constraint failed");
    ck_assert_int_eq(kt_store_mig_get(st, m.migration_id, &mg),
                     KEYTIER_E_NOT_FOUND);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM migration_items"), 0);
    mig_rec(&m, d2.dep_id);
    ck_assert_int_eq(kt_store_mig_create(st, &m, &total), KEYTIER_OK);
    ck_assert_uint_eq(total, 2);
    /* The second key's move fails: the first stays where it was. */
    char trig[300];
    snprintf(trig, sizeof trig,
             "CREATE TRIGGER boom BEFORE UPDATE ON tier_keys WHEN "
             "OLD.key_id = '%s' BEGIN SELECT RAISE(ABORT, 'boom'); END",
             k2.key_id);
    sql(trig);
    struct kt_mig_update u[2];
    mig_update(&u[0], &k1, d2.dep_id);
    mig_update(&u[1], &k2, d2.dep_id);
    ck_assert_int_eq(kt_store_mig_apply(st, m.migration_id, u, 2, &applied),
                     KEYTIER_E_STORE);
    detail_has("migrate key: boom");
    ck_assert_uint_eq(applied, 0);
    ck_assert_int_eq(kt_store_key_get(st, k1.key_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.dep_id, d.dep_id);
    ck_assert_mem_eq(got.wrapped, k1.wrapped, sizeof k1.wrapped);
    ck_assert_int_eq(kt_store_mig_get(st, m.migration_id, &mg), KEYTIER_OK);
    ck_assert_uint_eq(mg.done, 0);
    struct kt_mig_todo todo[4];
    size_t n = 0;
    ck_assert_int_eq(kt_store_mig_todo(st, m.migration_id, 4, todo, &n),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 2);
    sql("DROP TRIGGER boom");
    ck_assert_int_eq(kt_store_mig_apply(st, m.migration_id, u, 2, &applied),
                     KEYTIER_OK);
    ck_assert_uint_eq(applied, 2);
    ck_assert_int_eq(kt_store_key_get(st, k1.key_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.dep_id, d2.dep_id);
    kt_store_close(st);
}
END_TEST

static void ks_key(struct kt_ks_key_rec *k, const char *name, uint32_t v)
{
    memset(k, 0, sizeof *k);
    snprintf(k->name, sizeof k->name, "%s", name);
    k->version = v;
    strcpy(k->mech, "aes-key-wrap-pad");
    k->wrapped_len = 40;
    memset(k->wrapped, (int)v, 40);
    k->created = 100 + v;
}

START_TEST(keyset_failures_keep_the_current_key)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_keyset_rec ks, kg;
    struct kt_ks_key_rec k, next, got;
    memset(&ks, 0, sizeof ks);
    strcpy(ks.name, "svc");
    strcpy(ks.root_uri, "pkcs11:token=S;object=r");
    ks.rollover_after = 10;
    ks.retire_after = 20;
    /* Its first key names another keyset: neither row stays. */
    ks_key(&k, "other", 1);
    ck_assert_int_eq(kt_store_keyset_insert(st, &ks, &k), KEYTIER_E_STORE);
    detail_has("keyset key: FOREIGN KEY constraint failed");
    ck_assert_int_eq(kt_store_keyset_get(st, "svc", &kg), KEYTIER_E_NOT_FOUND);
    ks_key(&k, "svc", 1);
    ck_assert_int_eq(kt_store_keyset_insert(st, &ks, &k), KEYTIER_OK);
    ck_assert_int_eq(kt_store_keyset_insert(st, &ks, &k), KEYTIER_E_EXISTS);
    /* The next version's row fails (a version taken): version 1 stays
     * current, not archived. */
    ks_key(&next, "svc", 1);
    ck_assert_int_eq(kt_store_ks_rollover(st, 1, &next, 50), KEYTIER_E_STORE);
    detail_has("UNIQUE constraint failed: keyset_keys.name, "
               "keyset_keys.version");
    ck_assert_int_eq(kt_store_ks_key_get(st, "svc", 0, &got), KEYTIER_OK);
    ck_assert_uint_eq(got.version, 1);
    ck_assert_int_eq(got.state, 0);
    ck_assert_int_eq(got.archived, 0);
    ks_key(&next, "svc", 2);
    ck_assert_int_eq(kt_store_ks_rollover(st, 1, &next, 50), KEYTIER_OK);
    ck_assert_int_eq(kt_store_ks_rollover(st, 1, &next, 50), KEYTIER_E_EXISTS);
    /* A retire that fails keeps the archived copy. */
    sql("CREATE TRIGGER boom BEFORE UPDATE ON keyset_keys BEGIN "
        "SELECT RAISE(ABORT, 'boom'); END");
    uint32_t versions[4];
    size_t n = 9;
    ck_assert_int_eq(kt_store_ks_retire(st, "svc", 60, versions, 4, &n),
                     KEYTIER_E_STORE);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kt_store_ks_key_get(st, "svc", 1, &got), KEYTIER_OK);
    ck_assert_int_eq(got.state, 1);
    ck_assert_uint_eq(got.wrapped_len, 40);
    kt_store_close(st);
}
END_TEST

START_TEST(invalidation_and_anchor_failures_write_nothing)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_inval_publish(st, 9, "x", "t"), KEYTIER_E_STORE);
    detail_has("record cache invalidation: CHECK constraint failed");
    int64_t head = -1;
    ck_assert_int_eq(kt_store_inval_head(st, &head), KEYTIER_OK);
    ck_assert_int_eq(head, 0);
    struct kt_anchor_rec a, got;
    bool applied = true;
    memset(&a, 0, sizeof a);
    strcpy(a.log_id, "aaaaaaaa-0000-4000-8000-000000000001");
    strcpy(a.path, "/var/log/k.audit.jsonl");
    memset(a.hash, 'c', 64);
    a.seq = 0; /* records count from 1 */
    ck_assert_int_eq(kt_store_anchor_put(st, &a, &applied), KEYTIER_E_STORE);
    ck_assert(!applied);
    detail_has("audit anchor: CHECK constraint failed: seq >= 1");
    ck_assert_int_eq(kt_store_anchor_get(st, a.log_id, &got),
                     KEYTIER_E_NOT_FOUND);
    kt_store_close(st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store-stmt");
    TCase *tc = tcase_create("stmt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, failed_bind_stops_the_step);
    tcase_add_test(tc, bind_failure_codes);
    tcase_add_test(tc, constraint_failures_are_precise);
    tcase_add_test(tc, prepare_failure_names_the_sql);
    tcase_add_test(tc, column_reads_are_checked);
    suite_add_tcase(s, tc);
    TCase *fam = tcase_create("families");
    tcase_set_timeout(fam, 30);
    tcase_add_checked_fixture(fam, setup, teardown);
    tcase_add_test(fam, dep_state_kept_when_its_invalidation_fails);
    tcase_add_test(fam, key_insert_taken_name_keeps_the_first);
    tcase_add_test(fam, roll_failures_keep_the_old_copies);
    tcase_add_test(fam, purge_failure_keeps_every_row);
    tcase_add_test(fam, migration_failures_move_nothing);
    tcase_add_test(fam, keyset_failures_keep_the_current_key);
    tcase_add_test(fam, invalidation_and_anchor_failures_write_nothing);
    suite_add_tcase(s, fam);
    return testenv_run(s);
}
