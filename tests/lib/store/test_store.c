/* The SQLite store: schema migrations, a newer schema refused, multi-row
 * changes atomic, the DEP limit and inserts safe across processes. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kt_lib.h"
#include "testenv.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/kt-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sub/dir/k.db", dir);
}

static void teardown(void)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

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

static void dep_rec(struct kt_dep_rec *d, int n, const char *tenant)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dep_id, sizeof d->dep_id, "00000000-0000-4000-8000-%012d", n);
    snprintf(d->policy_id, sizeof d->policy_id, "11111111-0000-4000-8000-%012d",
             n);
    snprintf(d->tenant, sizeof d->tenant, "%s", tenant);
    snprintf(d->workload, sizeof d->workload, "Exchange");
    d->state = KEYTIER_DEP_REGISTERED;
    d->created = 1000 + n;
    for (int i = 0; i < 3; i++) {
        snprintf(d->roots[i].uri, sizeof d->roots[i].uri,
                 "pkcs11:token=T%d;object=r", i);
        snprintf(d->roots[i].mech, sizeof d->roots[i].mech, "aes-key-wrap-pad");
        d->roots[i].wrapped_len = 40;
        memset(d->roots[i].wrapped, i + 1, 40);
    }
}

/* Takes a store back to before version 8 (the roots' key identities), as
 * older releases wrote it. */
/* Undoes schema 11 (claims of migration items under a lease). */
#define BEFORE_11                                                              \
    "DROP INDEX migration_items_claim; ALTER TABLE migration_items DROP "      \
    "COLUMN lease_until; ALTER TABLE migration_items DROP COLUMN claimed_by; "
/* Undoes schema 10 (audit across nodes: the global index, node chains). */
#define BEFORE_10 "DROP TABLE audit_chains; DROP TABLE audit_counter; "
/* Undoes schema 9 (the files workload: regions, TIKs, offboarding). */
#define BEFORE_9                                                               \
    "DROP TABLE managed_tiks; DROP TABLE offboards; DROP INDEX deps_region; "  \
    "ALTER TABLE deps DROP COLUMN region; DROP INDEX tier_keys_named; "        \
    "DROP INDEX tier_keys_tik; ALTER TABLE tier_keys DROP COLUMN tik_id; "     \
    "CREATE UNIQUE INDEX tier_keys_top_name ON tier_keys(tenant, workload, "   \
    "name) WHERE level = 1; "
#define BEFORE_8                                                               \
    BEFORE_11 BEFORE_10 BEFORE_9                                               \
        "DROP INDEX dep_roots_ident; ALTER TABLE dep_roots DROP COLUMN "       \
        "ident; "                                                              \
        "ALTER TABLE dep_roll DROP COLUMN ident; "

START_TEST(fresh_store_is_latest_wal_0600)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), kt_store_schema_latest());
    ck_assert_int_eq(kt_store_schema_latest(), 12); /* 11 -> 12 */
    kt_store_close(st);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    char d2[160];
    snprintf(d2, sizeof d2, "%s/sub/dir", dir);
    ck_assert_int_eq(stat(d2, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0700);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_journal_mode() "
                             "WHERE journal_mode = 'wal'"),
                     1);
    /* Reopening does not migrate again. */
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), 12);
    kt_store_close(st);
}
END_TEST

START_TEST(migrates_version_1)
{
    /* A version-1 store (as written by the first release): migrating adds
     * the DEP-counting index and keeps the data. */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_dep_rec d;
    dep_rec(&d, 1, "org-1");
    ck_assert_int_eq(kt_store_dep_insert(st, &d, 50), KEYTIER_OK);
    kt_store_close(st);
    sql(BEFORE_8 "DROP INDEX deps_tenant_workload; ALTER TABLE deps DROP "
                 "COLUMN name; "
                 "PRAGMA user_version = 1");
    ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                             "'deps_tenant_workload'"),
                     0);
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), 12);
    struct kt_dep_rec got;
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &got), KEYTIER_OK);
    ck_assert_mem_eq(&got, &d, sizeof got);
    kt_store_close(st);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                             "'deps_tenant_workload'"),
                     1);
}
END_TEST

START_TEST(migrates_version_3_names_null)
{
    /* A version-3 store (before DEP names): migrating adds the name column,
     * NULL for the DEPs already there, read back as no name. */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_dep_rec d;
    dep_rec(&d, 1, "org-1");
    ck_assert_int_eq(kt_store_dep_insert(st, &d, 50), KEYTIER_OK);
    kt_store_close(st);
    sql(BEFORE_8 "ALTER TABLE deps DROP COLUMN name; PRAGMA user_version = 3");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), 12);
    struct kt_dep_rec got, named;
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.name, "");
    ck_assert_mem_eq(&got, &d, sizeof got);
    dep_rec(&named, 2, "org-1");
    snprintf(named.name, sizeof named.name, "Contoso mail \u00e9t\u00e9");
    ck_assert_int_eq(kt_store_dep_insert(st, &named, 50), KEYTIER_OK);
    ck_assert_int_eq(kt_store_dep_get(st, named.dep_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.name, "Contoso mail \u00e9t\u00e9");
    kt_store_close(st);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM deps WHERE name IS NULL"),
                     1);
}
END_TEST

START_TEST(migrates_version_4_invalidations)
{
    /* A version-4 store (before cache invalidations): migrating adds the
     * table; the first row gets seq 1 and a reader starting at the head
     * (0) sees it without a gap. */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    kt_store_close(st);
    sql(BEFORE_8 "DROP TABLE cache_invalidations; PRAGMA user_version = 4");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), 12);
    int64_t head = -1;
    ck_assert_int_eq(kt_store_inval_head(st, &head), KEYTIER_OK);
    ck_assert_int_eq(head, 0);
    ck_assert_int_eq(kt_store_inval_publish(st, KT_INVAL_DEP, "dep-x", "t"),
                     KEYTIER_OK);
    struct kt_inval_rec r[4];
    size_t n = 0;
    bool gap = true;
    ck_assert_int_eq(kt_store_inval_read(st, head, r, 4, &n, &gap), KEYTIER_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(!gap);
    ck_assert_int_eq(r[0].seq, 1);
    ck_assert_int_eq(r[0].scope, KT_INVAL_DEP);
    ck_assert_str_eq(r[0].value, "dep-x");
    /* pruned before a reader saw it: the reader is told */
    ck_assert_int_eq(kt_store_inval_publish(st, KT_INVAL_TENANT, "org", "t"),
                     KEYTIER_OK);
    ck_assert_int_eq(kt_store_inval_prune(st, INT64_MAX), KEYTIER_OK);
    ck_assert_int_eq(kt_store_inval_publish(st, KT_INVAL_KEY, "k", "t"),
                     KEYTIER_OK);
    ck_assert_int_eq(kt_store_inval_read(st, 1, r, 4, &n, &gap), KEYTIER_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(r[0].seq, 3);
    ck_assert(gap);
    ck_assert_int_eq(kt_store_inval_head(st, &head), KEYTIER_OK);
    ck_assert_int_eq(head, 3);
    kt_store_close(st);
}
END_TEST

START_TEST(migrates_version_7_idents_null)
{
    /* A version-7 store (before key identities): its roots read back
     * without one; new roots keep theirs, and a key is found by either. */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_dep_rec d, e, got;
    dep_rec(&d, 1, "org-1");
    ck_assert_int_eq(kt_store_dep_insert(st, &d, 50), KEYTIER_OK);
    kt_store_close(st);
    sql(BEFORE_8 "PRAGMA user_version = 7");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), 12);
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &got), KEYTIER_OK);
    ck_assert_mem_eq(&got, &d, sizeof got);
    dep_rec(&e, 2, "org-2");
    snprintf(e.roots[0].uri, sizeof e.roots[0].uri, "pkcs11:token=T0;id=%%01");
    snprintf(e.roots[0].ident, sizeof e.roots[0].ident,
             "pkcs11:token=T0;object=r;type=secret-key");
    ck_assert_int_eq(kt_store_dep_insert(st, &e, 50), KEYTIER_OK);
    ck_assert_int_eq(kt_store_dep_get(st, e.dep_id, &got), KEYTIER_OK);
    ck_assert_str_eq(got.roots[0].ident, e.roots[0].ident);
    struct kt_root_ref refs[4];
    size_t n = 0;
    /* By URI (the old row) and by identity (the new one), org-1 left out
     * when asked. */
    ck_assert_int_eq(kt_store_root_refs(st, e.roots[0].ident, d.roots[0].uri,
                                        NULL, -1, refs, 4, &n),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(refs[0].tenant, "org-1");
    ck_assert_str_eq(refs[1].dep_id, e.dep_id);
    ck_assert_int_eq(kt_store_root_refs(st, e.roots[0].ident, d.roots[0].uri,
                                        "org-1", KEYTIER_ROOT_A, refs, 4, &n),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(refs[0].slot, KEYTIER_ROOT_A);
    ck_assert(!refs[0].pending);
    ck_assert_int_eq(kt_store_root_refs(st, e.roots[0].ident, d.roots[0].uri,
                                        NULL, KEYTIER_ROOT_AVAIL, refs, 4, &n),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 0);
    kt_store_close(st);
}
END_TEST

START_TEST(migrates_version_10_items_unclaimed)
{
    /* A version-10 store with a migration under way: its items come
     * through unclaimed, free for the first worker to claim. */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_dep_rec d;
    dep_rec(&d, 1, "org-1");
    ck_assert_int_eq(kt_store_dep_insert(st, &d, 50), KEYTIER_OK);
    kt_store_close(st);
    sql(BEFORE_11 "INSERT INTO migrations(migration_id, tenant, workload, "
                  "target_dep, scope, operation, state, created, total) "
                  "VALUES ('m1', 'org-1', 'Exchange', "
                  "'00000000-0000-4000-8000-000000000001', 'all', 'migrate', "
                  "0, 1, 1); INSERT INTO migration_items(migration_id, "
                  "key_id) VALUES ('m1', 'k1'); PRAGMA user_version = 10");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_schema_version(st), 12);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM migration_items WHERE "
                             "claimed_by IS NULL AND lease_until IS NULL"),
                     1);
    struct kt_mig_todo todo[2];
    struct kt_claim c = {"w", 1000, 2000};
    size_t n = 0, taken = 0;
    ck_assert_int_eq(kt_store_mig_claim(st, "m1", &c, 2, todo, &n, &taken),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(todo[0].gone); /* no such key: nothing to move */
    kt_store_close(st);
}
END_TEST

START_TEST(newer_schema_refused)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    kt_store_close(st);
    sql("PRAGMA user_version = 99");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_E_STORE_VERSION);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(),
                                 "schema version 99, this library knows up "
                                 "to 12"));
}
END_TEST

START_TEST(multi_row_changes_are_atomic)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_dep_rec d, e;
    dep_rec(&d, 1, "org-1");
    ck_assert_int_eq(kt_store_dep_insert(st, &d, 50), KEYTIER_OK);
    /* Same policy id: the DEP row fails, none of its copies stay. */
    dep_rec(&e, 2, "org-1");
    strcpy(e.policy_id, d.policy_id);
    ck_assert_int_eq(kt_store_dep_insert(st, &e, 50), KEYTIER_E_STORE);
    ck_assert_int_eq(kt_store_dep_get(st, e.dep_id, &e),
                     KEYTIER_E_DEP_NOT_FOUND);
    kt_store_close(st);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM dep_roots"), 3);
    /* A failing root insert (slot constraint via a trigger) rolls back the
     * DEP row too. */
    sql("CREATE TRIGGER boom BEFORE INSERT ON dep_roots WHEN NEW.slot = 2 "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    dep_rec(&e, 3, "org-1");
    ck_assert_int_eq(kt_store_dep_insert(st, &e, 50), KEYTIER_E_STORE);
    kt_store_close(st);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM deps"), 1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM dep_roots"), 3);
    /* A DEP missing a copy is refused when read. */
    sql("DROP TRIGGER boom; DELETE FROM dep_roots WHERE slot = 1");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_dep_get(st, d.dep_id, &e), KEYTIER_E_FORMAT);
    ck_assert_int_eq(kt_store_dep_set_state(st, "nope", 1),
                     KEYTIER_E_DEP_NOT_FOUND);
    kt_store_close(st);
}
END_TEST

/* Processes opening one store at once, fresh (all race to create the
 * schema and switch it to WAL) and existing (a closing connection may be
 * checkpointing): every open succeeds.  SQLite answers the WAL switch
 * with SQLITE_BUSY without waiting when two openers deadlock on it; the
 * audit-anchor suite met that once as "cannot enable WAL: database is
 * locked". */
START_TEST(processes_open_one_store_at_once)
{
    enum { PROCS = 16, ROUNDS = 20, OPENS = 3 };
    for (int round = 0; round < ROUNDS; round++) {
        char fresh[200];
        int gate[2];
        pid_t pids[PROCS];
        snprintf(fresh, sizeof fresh, "%s/race-%d/k.db", dir, round);
        ck_assert_int_eq(pipe(gate), 0);
        for (int p = 0; p < PROCS; p++) {
            pids[p] = fork();
            ck_assert_int_ge(pids[p], 0);
            if (pids[p] == 0) {
                char b;
                close(gate[1]);
                if (read(gate[0], &b, 1) != 0) /* EOF: all start together */
                    _exit(3);
                for (int i = 0; i < OPENS; i++) {
                    struct kt_store *cs;
                    if (kt_store_open(fresh, &cs) != KEYTIER_OK) {
                        fprintf(stderr, "open %d: %s\n", i,
                                keytier_last_error_detail());
                        _exit(1);
                    }
                    kt_store_close(cs);
                }
                _exit(0);
            }
        }
        close(gate[0]);
        close(gate[1]);
        for (int p = 0; p < PROCS; p++) {
            int status;
            ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "round %d: process %d failed to open the store",
                          round, p);
        }
    }
}
END_TEST

START_TEST(processes_share_the_store)
{
    /* 4 processes each try to add 10 DEPs for one tenant (limit 25) and 50
     * tier keys: exactly 25 DEPs and all 200 keys end up stored. */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_dep_rec kd;
    dep_rec(&kd, 999, "org-k"); /* the keys' DEP (foreign key) */
    ck_assert_int_eq(kt_store_dep_insert(st, &kd, 50), KEYTIER_OK);
    kt_store_close(st);
    pid_t pids[4];
    for (int p = 0; p < 4; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            struct kt_store *cs;
            int bad = 0, limited = 0;
            if (kt_store_open(path, &cs) != KEYTIER_OK)
                _exit(100);
            for (int i = 0; i < 10; i++) {
                struct kt_dep_rec d;
                dep_rec(&d, p * 100 + i, "org-1");
                keytier_err e = kt_store_dep_insert(cs, &d, 25);
                if (e == KEYTIER_E_DEP_LIMIT)
                    limited++;
                else if (e != KEYTIER_OK) {
                    fprintf(stderr, "dep insert: %s\n",
                            keytier_last_error_detail());
                    bad++;
                }
            }
            for (int i = 0; i < 50; i++) {
                struct kt_key_rec k;
                memset(&k, 0, sizeof k);
                snprintf(k.key_id, sizeof k.key_id,
                         "22222222-0000-4000-8000-%012d", p * 1000 + i);
                strcpy(k.tenant, "org-k");
                strcpy(k.workload, "Exchange");
                snprintf(k.dep_id, sizeof k.dep_id,
                         "00000000-0000-4000-8000-%012d", 999);
                strcpy(k.parent_id, k.dep_id);
                snprintf(k.name, sizeof k.name, "mbx-%d-%d", p, i);
                k.level = 1;
                if (kt_store_key_insert(cs, &k) != KEYTIER_OK) {
                    fprintf(stderr, "key insert: %s\n",
                            keytier_last_error_detail());
                    bad++;
                }
            }
            kt_store_close(cs);
            _exit(bad ? 1 : 0);
        }
    }
    for (int p = 0; p < 4; p++) {
        int status;
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }
    ck_assert_int_eq(sql_int("SELECT count(*) FROM deps"), 26);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM dep_roots"), 78);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM tier_keys"), 200);
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    unsigned n;
    ck_assert_int_eq(kt_store_dep_count(st, "org-1", "Exchange", &n),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 25);
    struct kt_key_rec *list;
    size_t cnt;
    ck_assert_int_eq(kt_store_key_list(st, "org-k",
                                       "00000000-0000-4000-8000-000000000999",
                                       &list, &cnt),
                     KEYTIER_OK);
    ck_assert_uint_eq(cnt, 200);
    free(list);
    kt_store_close(st);
}
END_TEST

START_TEST(killed_mid_write_keeps_whole_deps)
{
    /* A process inserting DEPs (four rows each) is SIGKILLed at a random
     * moment, several times: the store is intact and every DEP has all
     * three copies (no half-written DEP). */
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    kt_store_close(st);
    for (int round = 0; round < 4; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            struct kt_store *cs;
            if (kt_store_open(path, &cs) != KEYTIER_OK)
                _exit(100);
            for (int i = 0;; i++) {
                struct kt_dep_rec d;
                dep_rec(&d, round * 1000000 + i, "org-1");
                if (kt_store_dep_insert(cs, &d, 100000) != KEYTIER_OK)
                    _exit(101);
            }
        }
        struct timespec ts = {0, (80 + 37 * round) * 1000000L};
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status));
        ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
        kt_store_close(st);
        ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_integrity_check "
                                 "WHERE integrity_check != 'ok'"),
                         0);
        ck_assert_int_eq(sql_int("SELECT count(*) FROM deps d WHERE "
                                 "(SELECT count(*) FROM dep_roots r WHERE "
                                 "r.dep_id = d.dep_id) != 3"),
                         0);
        ck_assert_int_eq(sql_int("SELECT count(*) FROM dep_roots r WHERE "
                                 "NOT EXISTS (SELECT 1 FROM deps d WHERE "
                                 "d.dep_id = r.dep_id)"),
                         0);
    }
    ck_assert_int_gt(sql_int("SELECT count(*) FROM deps"), 0);
}
END_TEST

/* An audit log's anchor only moves forward (a log cut back and
 * appended to again keeps the evidence), and is found by log id or path. */
START_TEST(audit_anchor_never_moves_back)
{
    struct kt_store *st;
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    struct kt_anchor_rec a, got;
    bool applied = false;
    memset(&a, 0, sizeof a);
    snprintf(a.log_id, sizeof a.log_id, "aaaaaaaa-0000-4000-8000-000000000001");
    snprintf(a.path, sizeof a.path, "/var/log/k.audit.jsonl");
    memset(a.hash, 'c', 64);
    memset(a.mac, 7, sizeof a.mac);
    a.seq = 3;
    a.updated = 100;
    ck_assert_int_eq(kt_store_anchor_get(st, a.log_id, &got),
                     KEYTIER_E_NOT_FOUND);
    ck_assert_int_eq(kt_store_anchor_put(st, &a, &applied), KEYTIER_OK);
    ck_assert(applied);
    a.seq = 2; /* behind: refused */
    a.hash[0] = 'd';
    ck_assert_int_eq(kt_store_anchor_put(st, &a, &applied), KEYTIER_OK);
    ck_assert(!applied);
    a.seq = 3; /* same record, other hash: refused too */
    ck_assert_int_eq(kt_store_anchor_put(st, &a, &applied), KEYTIER_OK);
    ck_assert(!applied);
    ck_assert_int_eq(kt_store_anchor_get(st, a.log_id, &got), KEYTIER_OK);
    ck_assert_uint_eq(got.seq, 3);
    ck_assert_int_eq(got.hash[0], 'c');
    ck_assert_mem_eq(got.mac, a.mac, sizeof a.mac);
    a.seq = 4; /* ahead: taken */
    ck_assert_int_eq(kt_store_anchor_put(st, &a, &applied), KEYTIER_OK);
    ck_assert(applied);
    ck_assert_int_eq(kt_store_anchor_other(st, a.path, "", &got), KEYTIER_OK);
    ck_assert_str_eq(got.log_id, a.log_id);
    ck_assert_uint_eq(got.seq, 4);
    ck_assert_int_eq(kt_store_anchor_other(st, a.path, a.log_id, &got),
                     KEYTIER_E_NOT_FOUND);
    ck_assert_int_eq(kt_store_anchor_other(st, "/elsewhere", "", &got),
                     KEYTIER_E_NOT_FOUND);
    kt_store_close(st);
    /* A row of another shape is refused, not trusted. */
    sql("UPDATE audit_anchors SET mac = x'00'");
    ck_assert_int_eq(kt_store_open(path, &st), KEYTIER_OK);
    ck_assert_int_eq(kt_store_anchor_get(st, a.log_id, &got),
                     KEYTIER_E_AUDIT_TAMPERED);
    kt_store_close(st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fresh_store_is_latest_wal_0600);
    tcase_add_test(tc, migrates_version_1);
    tcase_add_test(tc, migrates_version_3_names_null);
    tcase_add_test(tc, migrates_version_4_invalidations);
    tcase_add_test(tc, migrates_version_7_idents_null);
    tcase_add_test(tc, migrates_version_10_items_unclaimed);
    tcase_add_test(tc, newer_schema_refused);
    tcase_add_test(tc, multi_row_changes_are_atomic);
    tcase_add_test(tc, processes_share_the_store);
    tcase_add_test(tc, processes_open_one_store_at_once);
    tcase_add_test(tc, killed_mid_write_keeps_whole_deps);
    tcase_add_test(tc, audit_anchor_never_moves_back);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
