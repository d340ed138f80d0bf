/* The PostgreSQL store: its configuration (a password never in the
 * connection string, a password file only 0600), and, when KT_TEST_PG
 * names a server (tests/pg.sh), the limits under nodes creating at once,
 * a lost connection classified and reconnected, and a transaction cut by
 * the loss leaving nothing. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kt_lib.h"
#include "store.h"
#include "store_stmt.h"
#include "testenv.h"

static struct testenv T;

static void setup(void)
{
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
}

static void teardown(void)
{
    testenv_teardown(&T);
}

#define URI_A testenv_uri("VaultA", "rootA")
#define URI_B testenv_uri("VaultB", "rootB")

static void assert_err(keytier_err got, keytier_err want, const char *needle)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
    if (needle)
        ck_assert_msg(strstr(keytier_last_error_detail(), needle) != NULL,
                      "detail '%s' lacks '%s'", keytier_last_error_detail(),
                      needle);
}

/* A configuration whose store is `store` plus `extra` lines (the tokens'
 * part from testenv), opened: the error of keytier_ctx_open. */
static keytier_err open_with(const char *store, const char *extra)
{
    char lines[1024];
    snprintf(lines, sizeof lines, "avail.audit_log = %s/audit.jsonl\n%s", T.dir,
             extra ? extra : "");
    char saved[sizeof T.store], want[sizeof T.store];
    snprintf(want, sizeof want, "%s", store); /* store may be T.store */
    memcpy(saved, T.store, sizeof saved);
    memcpy(T.store, want, sizeof want);
    testenv_write_conf(&T, lines);
    memcpy(T.store, saved, sizeof saved);
    keytier_ctx *ctx = NULL;
    keytier_err e = keytier_ctx_open(T.conf, &ctx);
    keytier_ctx_close(ctx);
    return e;
}

START_TEST(password_in_conninfo_refused)
{
    /* URI and key=value forms; the password is never repeated back. */
    assert_err(open_with("postgresql://kt:Sekr1tPw@localhost/kt", NULL),
               KEYTIER_E_CONFIG, "store.password_file");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "Sekr1tPw"));
    assert_err(open_with("host=/nonexistent dbname=kt password=Sekr1tPw", NULL),
               KEYTIER_E_CONFIG, "PGPASSWORD");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "Sekr1tPw"));
}
END_TEST

START_TEST(password_file_checked)
{
    char pw[400], extra[512];
    snprintf(pw, sizeof pw, "%s/pgpass", T.dir);
    FILE *f = fopen(pw, "w");
    ck_assert_ptr_nonnull(f);
    fputs("Sekr1tPw\n", f);
    fclose(f);
    chmod(pw, 0644);
    snprintf(extra, sizeof extra, "store.password_file = %s\n", pw);
    assert_err(open_with("postgresql://kt@localhost/kt", extra),
               KEYTIER_E_CONFIG, "store.password_file");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "Sekr1tPw"));
    /* for a SQLite store the key is a mistake, named */
    if (!testenv_is_pg(&T))
        assert_err(open_with(T.store, extra), KEYTIER_E_CONFIG,
                   "store.password_file is for a PostgreSQL store");
    /* a server that is not there: classified, and still no password */
    chmod(pw, 0600);
    assert_err(open_with("host=/nonexistent/sock dbname=kt", extra),
               KEYTIER_E_STORE_UNAVAILABLE, "cannot connect");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "Sekr1tPw"));
}
END_TEST

/* ---- on a server (KT_TEST_PG) ------------------------------------------ */

/* Ends every other session on this test's database, as a server restart
 * or a network cut would. */
static void cut_connections(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "psql -qAt '%s' -c \"SELECT count(pg_terminate_backend(pid)) "
             "FROM pg_stat_activity WHERE datname = '%s' AND pid <> "
             "pg_backend_pid()\" >/dev/null",
             getenv("KT_TEST_PG"), T.pg_db);
    ck_assert_int_eq(system(cmd), 0);
}

static size_t count_deps(keytier_ctx *ctx, const char *tenant)
{
    keytier_dep_info *list;
    size_t n;
    assert_err(keytier_dep_list(ctx, tenant, NULL, &list, &n), KEYTIER_OK,
               NULL);
    keytier_dep_list_free(list);
    return n;
}

/* Several processes (each its own connection: a node) create DEPs at
 * once past the limit: exactly the limit is stored. */
START_TEST(dep_limit_under_concurrent_nodes)
{
    enum { PRE = 46, RACERS = 8, LIMIT = 50 };
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d;
    for (int i = 0; i < PRE; i++)
        assert_err(
            keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
            KEYTIER_OK, NULL);
    keytier_ctx_close(ctx);
    int go[2];
    char lock[400];
    snprintf(lock, sizeof lock, "%s/warm.lock", T.dir);
    ck_assert_int_eq(pipe(go), 0);
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            /* Logged in to the tokens one racer at a time (SoftHSM2's
             * file tokens refuse logins racing across processes): the
             * race below is the store's alone. */
            keytier_ctx *c = NULL;
            char tenant[32];
            snprintf(tenant, sizeof tenant, "warm-%d", i);
            int lk = open(lock, O_RDWR | O_CREAT, 0600);
            if (lk < 0 || flock(lk, LOCK_EX) != 0 ||
                keytier_ctx_open(T.conf, &c) != KEYTIER_OK ||
                keytier_dep_create(c, tenant, "Exchange", URI_A, URI_B, &d) !=
                    KEYTIER_OK)
                _exit(3);
            close(lk);
            char b;
            close(go[1]);
            if (read(go[0], &b, 1) != 0) /* released by the close */
                _exit(3);
            keytier_err e =
                keytier_dep_create(c, "org-1", "Exchange", URI_A, URI_B, &d);
            if (e != KEYTIER_OK && e != KEYTIER_E_DEP_LIMIT)
                fprintf(stderr, "racer: %s\n", keytier_last_error_detail());
            keytier_ctx_close(c);
            _exit(e == KEYTIER_OK ? 0 : e == KEYTIER_E_DEP_LIMIT ? 1 : 2);
        }
    }
    close(go[0]);
    /* every racer has warmed up when the lock is free and they all wait */
    for (int i = 0; i < 100; i++) {
        keytier_ctx *c = testenv_ctx(&T);
        size_t warm = 0;
        for (int r = 0; r < RACERS; r++) {
            char tenant[32];
            snprintf(tenant, sizeof tenant, "warm-%d", r);
            warm += count_deps(c, tenant);
        }
        keytier_ctx_close(c);
        if (warm == RACERS)
            break;
        usleep(100000);
    }
    close(go[1]);
    int made = 0, refused = 0;
    for (int i = 0; i < RACERS; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status));
        made += WEXITSTATUS(status) == 0;
        refused += WEXITSTATUS(status) == 1;
    }
    ck_assert_int_eq(made, LIMIT - PRE);
    ck_assert_int_eq(refused, RACERS - (LIMIT - PRE));
    ctx = testenv_ctx(&T);
    ck_assert_uint_eq(count_deps(ctx, "org-1"), LIMIT);
    keytier_ctx_close(ctx);
}
END_TEST

/* A lost connection is KEYTIER_E_STORE_UNAVAILABLE, and the next call
 * connects again. */
START_TEST(lost_connection_classified_then_reconnected)
{
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, s;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    cut_connections();
    assert_err(keytier_dep_show(ctx, "org-1", d.dep_id, &s),
               KEYTIER_E_STORE_UNAVAILABLE, "the next call connects again");
    assert_err(keytier_dep_show(ctx, "org-1", d.dep_id, &s), KEYTIER_OK, NULL);
    ck_assert_str_eq(s.dep_id, d.dep_id);
    keytier_ctx_close(ctx);
}
END_TEST

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An invalidation on one node evicts the key cached on another at the
 * notification, not at the next periodic sync: the periodic one runs at
 * open and then every 60 s, so without the notification the eviction
 * would come a minute later.  The delay measured is printed (BENCHMARKS.md). */
START_TEST(invalidation_notified_to_other_node)
{
    enum { SYNC_MS = 60000 };
    testenv_write_conf(&T, "avail.cache_ttl_ms = 600000\n"
                           "avail.cache_sync_ms = 60000");
    keytier_ctx *a = testenv_ctx(&T), *b = testenv_ctx(&T);
    const keytier_request user = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE,
                                  "req-1", NULL};
    keytier_dep_info d;
    keytier_key *k = NULL;
    assert_err(keytier_dep_create(a, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    assert_err(keytier_dep_key_open(b, &user, "org-1", d.dep_id, &k),
               KEYTIER_OK, NULL);
    keytier_key_close(k);
    keytier_avail_stats s0, s;
    assert_err(keytier_avail_stats_get(b, &s0), KEYTIER_OK, NULL);
    ck_assert_uint_eq(s0.cache_entries, 1);
    uint64_t t0 = now_ms();
    assert_err(
        keytier_cache_invalidate(a, KEYTIER_INVALIDATE_DEP, d.dep_id, NULL),
        KEYTIER_OK, NULL);
    do {
        usleep(1000);
        assert_err(keytier_avail_stats_get(b, &s), KEYTIER_OK, NULL);
    } while (s.cache_invalidations == s0.cache_invalidations &&
             now_ms() - t0 < 2 * SYNC_MS);
    uint64_t delay = now_ms() - t0;
    fprintf(stderr, "invalidation to eviction on another node: %llu ms\n",
            (unsigned long long)delay);
    ck_assert_uint_eq(s.cache_entries, 0);
    ck_assert_uint_lt(delay, SYNC_MS / 2);
    keytier_ctx_close(b);
    keytier_ctx_close(a);
}
END_TEST

static int64_t approvers_named(struct kt_store *st, const char *name)
{
    struct kt_stmt s;
    bool row;
    int64_t n = -1;
    kt_stmt_prep(&s, st, "count",
                 "SELECT count(*) FROM approvers WHERE "
                 "name = ?1");
    kt_stmt_bind_text(&s, 1, name);
    if (kt_stmt_step(&s, &row) == KEYTIER_OK && row)
        n = kt_stmt_col_int64(&s, 0);
    kt_stmt_done(&s);
    return n;
}

static keytier_err add_approver(struct kt_store *st, const char *name)
{
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "add",
                 "INSERT INTO approvers(name, spki, added) "
                 "VALUES (?1, ?2, ?3)");
    kt_stmt_bind_text(&s, 1, name);
    kt_stmt_bind_blob(&s, 2, "spki", 4);
    kt_stmt_bind_int64(&s, 3, 1);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    return e;
}

/* A transaction cut by the loss commits nothing, and no statement of it
 * runs on the new connection. */
START_TEST(cut_transaction_leaves_nothing)
{
    struct kt_store *st = NULL;
    assert_err(kt_store_open(T.store, &st), KEYTIER_OK, NULL);
    pthread_mutex_lock(&st->mu);
    assert_err(kt_db_begin(st), KEYTIER_OK, NULL);
    assert_err(add_approver(st, "ann"), KEYTIER_OK, NULL);
    cut_connections();
    assert_err(add_approver(st, "bob"), KEYTIER_E_STORE_UNAVAILABLE,
               "PostgreSQL");
    kt_db_rollback(st);
    /* the next call connects again; neither row is there */
    ck_assert_int_eq(approvers_named(st, "ann"), 0);
    ck_assert_int_eq(approvers_named(st, "bob"), 0);
    pthread_mutex_unlock(&st->mu);
    kt_store_close(st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib-store-pg");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, password_in_conninfo_refused);
    tcase_add_test(tc, password_file_checked);
    suite_add_tcase(s, tc);
    if (getenv("KT_TEST_PG") != NULL) {
        tc = tcase_create("server");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, dep_limit_under_concurrent_nodes);
        tcase_add_test(tc, lost_connection_classified_then_reconnected);
        tcase_add_test(tc, cut_transaction_leaves_nothing);
        tcase_add_test(tc, invalidation_notified_to_other_node);
        suite_add_tcase(s, tc);
    }
    return testenv_run(s);
}
