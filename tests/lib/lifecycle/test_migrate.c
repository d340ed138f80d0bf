/* lib/lifecycle/migrate.c: assigning DEPs, resumable migration killed at random
 * points, the files shape, and recovery with both customer tokens deleted.
 *
 * The migrating process is this test binary run again ("migrate-child
 * CONF ID"), so that SIGKILL hits a real, separate process. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "lctest.h"

static struct testenv T;

static void setup(void)
{
    testenv_setup(&T);
}

static void teardown(void)
{
    testenv_teardown(&T);
}

#define N_KEYS  10000
#define N_ITEMS 100 /* mailboxes with a sealed item, read during migration */

/* The child paces itself so the parent can watch it between batches. */
static int child_pace(void *arg, const keytier_migration *p)
{
    (void)arg;
    (void)p;
    struct timespec ts = {0, 15 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return 0;
}

static int migrate_child(const char *conf, const char *id)
{
    keytier_ctx *ctx = NULL;
    if (keytier_ctx_open(conf, &ctx) != KEYTIER_OK)
        return 20;
    keytier_migration p;
    keytier_err e = keytier_migrate_run(ctx, id, child_pace, NULL, &p);
    keytier_ctx_close(ctx);
    return e == KEYTIER_OK && p.finished ? 0 : 21;
}

static pid_t spawn_child(const char *id)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test-lifecycle-migrate", "migrate-child",
              T.conf, id, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static unsigned rnd(unsigned n)
{
    unsigned v;
    ck_assert_int_eq(RAND_bytes((unsigned char *)&v, sizeof v), 1);
    return v % n;
}

/* Invariants that hold at every instant: all keys exist, each under
 * exactly one of the two DEPs, and an item is done iff its key moved. */
static void check_invariants(const char *dep1, const char *dep2,
                             const char *mig)
{
    long long total = testenv_sql_int(
        &T, "SELECT count(*) FROM tier_keys WHERE tenant = 'org-1'", NULL);
    long long under1 = testenv_sql_int(
        &T, "SELECT count(*) FROM tier_keys WHERE dep_id = ?1", dep1);
    long long under2 = testenv_sql_int(
        &T, "SELECT count(*) FROM tier_keys WHERE dep_id = ?1", dep2);
    long long done =
        testenv_sql_int(&T,
                        "SELECT count(*) FROM migration_items WHERE "
                        "migration_id = ?1 AND done = 1",
                        mig);
    ck_assert_int_eq(total, N_KEYS);
    ck_assert_int_eq(under1 + under2, N_KEYS);
    ck_assert_int_eq(done, under2);
    /* The progress counters move in the same transactions. */
    ck_assert_int_eq(testenv_sql_int(&T,
                                     "SELECT done FROM migrations WHERE "
                                     "migration_id = ?1",
                                     mig),
                     done);
    ck_assert_int_eq(testenv_sql_int(&T,
                                     "SELECT total FROM migrations WHERE "
                                     "migration_id = ?1",
                                     mig),
                     N_KEYS);
}

START_TEST(migrate_10000_killed_three_times)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_root_aes(&T, "VaultB", "B2", 0);
    testenv_write_conf(&T, "avail.cache_ttl_ms = 600000");
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A2"),
                                 testenv_uri("VaultB", "B2"), &d2));
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    char name[32];
    for (int i = 0; i < N_KEYS; i++) {
        snprintf(name, sizeof name, "mbx-%05d", i);
        assert_ok(keytier_key_create(dk, name, NULL));
    }
    keytier_key_close(dk);
    static uint8_t env[N_ITEMS][256];
    static size_t env_len[N_ITEMS];
    static char msg[N_ITEMS][48];
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(name, sizeof name, "mbx-%05d", i * (N_KEYS / N_ITEMS));
        snprintf(msg[i], sizeof msg[i], "item %d of %s", i, name);
        env_len[i] = lc_seal(ctx, "org-1", "Exchange", name, msg[i], env[i],
                             sizeof env[i]);
    }

    keytier_migration m;
    assert_ok(keytier_assign(ctx, "org-1", "Exchange", NULL, d2.dep_id, &m));
    ck_assert_uint_eq(m.total, N_KEYS);
    ck_assert_uint_eq(m.done, 0);
    keytier_dep_info st;
    assert_ok(keytier_dep_show(ctx, "org-1", d2.dep_id, &st));
    ck_assert_int_eq(st.state, KEYTIER_DEP_MIGRATING);

    unsigned reads = 0;
    uint64_t last_done = 0;
    for (int kill_no = 0; kill_no < 3; kill_no++) {
        /* A random point in the next third of what is left. */
        uint64_t left = N_KEYS - last_done;
        uint64_t target = last_done + left / 10 + rnd((unsigned)(left / 4));
        pid_t pid = spawn_child(m.migration_id);
        keytier_migration p;
        for (;;) {
            /* Reads while the other process migrates: all succeed. */
            unsigned i = rnd(N_ITEMS);
            snprintf(name, sizeof name, "mbx-%05u", i * (N_KEYS / N_ITEMS));
            assert_ok(lc_open(ctx, &lc_user, "org-1", "Exchange", name, env[i],
                              env_len[i], msg[i]));
            reads++;
            assert_ok(keytier_migration_get(ctx, "org-1", m.migration_id, &p));
            if (p.done >= target)
                break;
            int status;
            ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0,
                          "migration process ended before the kill point "
                          "(status %d)",
                          status);
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        check_invariants(d1.dep_id, d2.dep_id, m.migration_id);
        assert_ok(keytier_migration_get(ctx, "org-1", m.migration_id, &p));
        ck_assert(!p.finished);
        ck_assert_uint_ge(p.done, last_done);
        last_done = p.done;
    }

    /* The last run finishes it. */
    pid_t pid = spawn_child(m.migration_id);
    int status;
    for (;;) {
        unsigned i = rnd(N_ITEMS);
        snprintf(name, sizeof name, "mbx-%05u", i * (N_KEYS / N_ITEMS));
        assert_ok(lc_open(ctx, &lc_user, "org-1", "Exchange", name, env[i],
                          env_len[i], msg[i]));
        reads++;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        ck_assert_int_eq(w, 0);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "final migration run failed (status %d)", status);
    ck_assert_uint_gt(reads, 3);

    keytier_migration p;
    assert_ok(keytier_migration_get(ctx, "org-1", m.migration_id, &p));
    ck_assert(p.finished);
    ck_assert_uint_eq(p.done, N_KEYS);
    ck_assert_uint_eq(p.total, N_KEYS);
    ck_assert(p.percent == 100.0);
    check_invariants(d1.dep_id, d2.dep_id, m.migration_id);
    assert_ok(keytier_dep_show(ctx, "org-1", d2.dep_id, &st));
    ck_assert_int_eq(st.state, KEYTIER_DEP_REGISTERED);

    /* Every key opens under the new DEP key, none under the old. */
    keytier_key_info *list = NULL;
    size_t n = 0;
    assert_ok(keytier_key_list(ctx, "org-1", d1.dep_id, &list, &n));
    ck_assert_uint_eq(n, 0);
    keytier_key_list_free(list);
    assert_ok(keytier_key_list(ctx, "org-1", d2.dep_id, &list, &n));
    ck_assert_uint_eq(n, N_KEYS);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d2.dep_id, &dk));
    for (size_t i = 0; i < n; i++) {
        keytier_key *k = NULL;
        assert_ok(keytier_key_open(dk, list[i].key_id, &k));
        keytier_key_close(k);
    }
    keytier_key_close(dk);
    keytier_key_list_free(list);
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(name, sizeof name, "mbx-%05d", i * (N_KEYS / N_ITEMS));
        assert_ok(lc_open(ctx, &lc_user, "org-1", "Exchange", name, env[i],
                          env_len[i], msg[i]));
    }
    keytier_status s;
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "mbx-04242", &s));
    ck_assert_int_eq(s.encrypted, 1);
    ck_assert_str_eq(s.dep_id, d2.dep_id);
    ck_assert_str_eq(s.policy_id, d2.policy_id);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Migration completed\""), 1);
    ck_assert_int_ge(lc_audit_count(ctx, "\"Migration progress\""), 1);
    char apath[4096];
    uint64_t bad = 0;
    assert_ok(keytier_audit_log_path(ctx, apath, sizeof apath));
    assert_ok(keytier_audit_verify(apath, &bad, NULL));
    /* Running it again does nothing more. */
    assert_ok(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &p));
    ck_assert(p.finished);
    keytier_ctx_close(ctx);
}
END_TEST

/* The background API: reads go on in this thread while the library's
 * thread migrates; a stopped run resumes. */
START_TEST(migrate_in_background)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_root_aes(&T, "VaultB", "B2", 0);
    testenv_write_conf(&T, "avail.cache_ttl_ms = 600000");
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A2"),
                                 testenv_uri("VaultB", "B2"), &d2));
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    char name[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "mbx-%04d", i);
        assert_ok(keytier_key_create(dk, name, NULL));
    }
    keytier_key_close(dk);
    uint8_t env[256];
    size_t n = lc_seal(ctx, "org-1", "Exchange", "mbx-1999", "last one", env,
                       sizeof env);
    keytier_migration m, p;
    keytier_migrator *bg = NULL;
    assert_ok(keytier_assign(ctx, "org-1", "Exchange", NULL, d2.dep_id, &m));
    /* Stopped after its first batch: not finished, resumable. */
    assert_ok(keytier_migrate_start(ctx, m.migration_id, NULL, NULL, &bg));
    keytier_migrate_stop(bg);
    assert_ok(keytier_migrate_wait(bg, &p));
    ck_assert(!p.finished);
    ck_assert_uint_gt(p.done, 0);
    ck_assert_uint_lt(p.done, 2000);
    assert_ok(keytier_migrate_start(ctx, m.migration_id, NULL, NULL, &bg));
    unsigned reads = 0;
    do {
        assert_ok(lc_open(ctx, &lc_user, "org-1", "Exchange", "mbx-1999", env,
                          n, "last one"));
        reads++;
        assert_ok(keytier_migration_get(ctx, "org-1", m.migration_id, &p));
    } while (!p.finished);
    assert_ok(keytier_migrate_wait(bg, &p));
    ck_assert(p.finished);
    ck_assert_uint_eq(p.done, 2000);
    ck_assert_uint_gt(reads, 0);
    keytier_status s;
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "mbx-0000", &s));
    ck_assert_str_eq(s.dep_id, d2.dep_id);
    keytier_ctx_close(ctx);
}
END_TEST

/* Files shape: the sites and blob keys are under the DEP's tenant
 * intermediate key (TIK), which is the one item that moves: its sites and
 * blobs follow it unchanged; a name without a key gets one under the
 * assigned DEP at once.  The target DEP is in another region (one files
 * DEP per tenant and region). */
START_TEST(assign_files_shape_and_new_name)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_root_aes(&T, "VaultB", "B2", 0);
    testenv_write_conf(&T, "workload.Files.shape = files\n"
                           "workload.Files.availability_key = aes256");
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    assert_ok(keytier_dep_create(ctx, "org-1", "Files",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create_in_region(
        ctx, "org-1", "Files", "eu", testenv_uri("VaultA", "A2"),
        testenv_uri("VaultB", "B2"), NULL, &d2));
    keytier_key *dk = NULL, *site = NULL, *blob = NULL;
    char blob_ids[3][3][KEYTIER_ID_SIZE];
    uint8_t env[3][3][256];
    size_t env_len[3][3];
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    for (int s = 0; s < 3; s++) {
        char sname[16], site_id[KEYTIER_ID_SIZE];
        snprintf(sname, sizeof sname, "site-%d", s);
        assert_ok(keytier_key_create(dk, sname, site_id));
        assert_ok(keytier_key_open(dk, site_id, &site));
        for (int b = 0; b < 3; b++) {
            char bname[16];
            snprintf(bname, sizeof bname, "blob-%d", b);
            assert_ok(keytier_key_create(site, bname, blob_ids[s][b]));
            assert_ok(keytier_key_open(site, blob_ids[s][b], &blob));
            assert_ok(keytier_seal(blob, "ctx", 3, bname, strlen(bname),
                                   env[s][b], sizeof env[s][b],
                                   &env_len[s][b]));
            keytier_key_close(blob);
        }
        keytier_key_close(site);
    }
    keytier_key_close(dk);
    keytier_migration m;
    assert_ok(keytier_assign(ctx, "org-1", "Files", NULL, d2.dep_id, &m));
    ck_assert_uint_eq(m.total, 1); /* d1's TIK */
    /* A site deleted between assign and migrate is simply not there. */
    testenv_sql(&T, "DELETE FROM tier_keys WHERE parent_id IN (SELECT "
                    "key_id FROM tier_keys WHERE name = 'site-2'); "
                    "DELETE FROM tier_keys WHERE name = 'site-2'");
    /* The sites' wrapped bytes before: they must not change. */
    char *before = testenv_sql_rows(
        &T, "SELECT wrapped FROM tier_keys WHERE level > 1 ORDER BY key_id",
        NULL, 1);
    assert_ok(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m));
    ck_assert(m.finished);
    ck_assert_uint_eq(m.done, 1);
    /* 2 sites x (site + 3 blobs), d1's TIK and d2's own */
    ck_assert_int_eq(testenv_sql_int(&T,
                                     "SELECT count(*) FROM tier_keys WHERE "
                                     "dep_id = ?1",
                                     d2.dep_id),
                     10);
    char *after = testenv_sql_rows(
        &T, "SELECT wrapped FROM tier_keys WHERE level > 1 ORDER BY key_id",
        NULL, 1);
    ck_assert_str_eq(before, after); /* one key rewrapped: the TIK */
    free(before);
    free(after);
    for (int s = 0; s < 2; s++)
        for (int b = 0; b < 3; b++) {
            uint8_t out[64];
            size_t n = 0;
            char bname[16];
            snprintf(bname, sizeof bname, "blob-%d", b);
            assert_ok(keytier_key_open_path(ctx, &lc_user, "org-1",
                                            blob_ids[s][b], &blob));
            keytier_key_info info;
            keytier_key_get_info(blob, &info);
            ck_assert_str_eq(info.dep_id, d2.dep_id);
            assert_ok(keytier_open(blob, "ctx", 3, env[s][b], env_len[s][b],
                                   out, sizeof out, &n));
            ck_assert_uint_eq(n, strlen(bname));
            ck_assert_mem_eq(out, bname, n);
            keytier_key_close(blob);
        }
    /* A site with no data yet: encrypted under the DEP from the start. */
    keytier_status s;
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "site-new", &s));
    ck_assert_int_eq(s.encrypted, 0);
    assert_ok(keytier_assign(ctx, "org-1", "Files", "site-new", d1.dep_id, &m));
    ck_assert(m.finished);
    ck_assert_uint_eq(m.total, 0);
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "site-new", &s));
    ck_assert_int_eq(s.encrypted, 1);
    ck_assert_str_eq(s.dep_id, d1.dep_id);
    ck_assert_str_eq(s.policy_id, d1.policy_id);
    /* Errors: another tenant's DEP, a DEP of another workload, unknown. */
    assert_err(keytier_assign(ctx, "org-2", "Files", NULL, d2.dep_id, &m),
               KEYTIER_E_WRONG_TENANT);
    assert_err(keytier_assign(ctx, "org-1", "Exchange", NULL, d2.dep_id, &m),
               KEYTIER_E_ARGS);
    assert_err(keytier_assign(ctx, "org-1", "Files", NULL,
                              "00000000-0000-4000-8000-000000000000", &m),
               KEYTIER_E_DEP_NOT_FOUND);
    assert_ok(keytier_dep_disable(ctx, "org-1", d1.dep_id));
    assert_err(keytier_assign(ctx, "org-1", "Files", "site-0", d1.dep_id, &m),
               KEYTIER_E_DEP_STATE);
    assert_err(keytier_migrate_run(ctx, "00000000-0000-4000-8000-000000000000",
                                   NULL, NULL, &m),
               KEYTIER_E_NOT_FOUND);
    keytier_ctx_close(ctx);
}
END_TEST

START_TEST(recover_both_customer_tokens_deleted)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultC", "C1", 0);
    testenv_keytier_token(&T, "KtVault");
    testenv_root_aes(&T, "KtVault", "K1", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    assert_ok(keytier_dep_create_named(
        ctx, "org-1", "Exchange", testenv_uri("VaultA", "A1"),
        testenv_uri("VaultB", "B1"), "Mail EU", &d1));
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    uint8_t env[20][256];
    size_t env_len[20];
    char name[16], msg[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "mbx-%d", i);
        assert_ok(keytier_key_create(dk, name, NULL));
    }
    keytier_key_close(dk);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "mbx-%d", i);
        snprintf(msg, sizeof msg, "message %d", i);
        env_len[i] =
            lc_seal(ctx, "org-1", "Exchange", name, msg, env[i], sizeof env[i]);
    }
    keytier_ctx_close(ctx);

    /* Both customer tokens are gone for good. */
    ck_assert_int_eq(system("softhsm2-util --delete-token --token VaultA "
                            ">/dev/null"),
                     0);
    ck_assert_int_eq(system("softhsm2-util --delete-token --token VaultB "
                            ">/dev/null"),
                     0);
    ctx = testenv_ctx(&T);
    keytier_migration m;
    assert_ok(keytier_dep_recover(ctx, "org-1", d1.dep_id,
                                  testenv_uri("VaultC", "C1"),
                                  testenv_uri("KtVault", "K1"), &d2, &m));
    ck_assert_str_ne(d2.dep_id, d1.dep_id);
    /* The recovered DEP keeps the old one's name. */
    ck_assert_str_eq(d2.name, "Mail EU");
    ck_assert_str_eq(m.operation, "recover");
    ck_assert_uint_eq(m.total, 20);
    assert_ok(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m));
    ck_assert(m.finished);
    ck_assert_uint_eq(m.done, 20);
    /* All data readable under the new DEP, by users, through its customer
     * keys alone (no fallback for these reads). */
    keytier_avail_stats before, after;
    assert_ok(keytier_avail_stats_get(ctx, &before));
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "mbx-%d", i);
        snprintf(msg, sizeof msg, "message %d", i);
        assert_ok(lc_open(ctx, &lc_user, "org-1", "Exchange", name, env[i],
                          env_len[i], msg));
        keytier_status s;
        assert_ok(keytier_status_get(ctx, "org-1", "Exchange", name, &s));
        ck_assert_str_eq(s.dep_id, d2.dep_id);
    }
    assert_ok(keytier_avail_stats_get(ctx, &after));
    ck_assert_uint_eq(after.fallbacks, before.fallbacks);
    keytier_dep_info old;
    assert_ok(keytier_dep_show(ctx, "org-1", d1.dep_id, &old));
    ck_assert_int_eq(old.state, KEYTIER_DEP_DISABLED);
    /* The availability key covered the gap, audited as "recover". */
    ck_assert_int_ge(lc_audit_count(ctx, "\"Operation\":\"recover\""), 1);
    ck_assert_int_ge(lc_audit_count(ctx, "Fallback to availability key"), 1);
    ck_assert_int_eq(lc_audit_count(ctx, "\"DEP recovery started\""), 1);
    ck_assert_int_eq(lc_audit_count(ctx, "\"DEP disabled after recovery\""), 1);
    keytier_ctx_close(ctx);
}
END_TEST

/* Security review: assign/migrate must not undo a revocation.  The
 * customer revokes both customer keys of DEP d1 (`how`).  Moving a mailbox
 * out of d1 to the healthy d2 would read d1's key through the availability
 * key and rewrap the mailbox key under d2, where users read again; moving
 * one into d1 would put it under a revoked DEP.  Both are refused with
 * KEYTIER_E_REVOKED (at assign for a named mailbox, at run for "all"),
 * nothing moves, users stay revoked.  Recovery, the explicit audited
 * service operation, still takes d1's key through the availability key. */
static void assign_revoked_case(enum lc_revoke how)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_root_aes(&T, "VaultB", "B2", 0);
    testenv_root_aes(&T, "VaultC", "C3", 0);
    testenv_root_aes(&T, "VaultB", "B3", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2, d3;
    keytier_key *dk = NULL;
    static const char *const MSG = "written before the revocation";
    uint8_t env[1024], carol_env[1024];
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A2"),
                                 testenv_uri("VaultB", "B2"), &d2));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    assert_ok(keytier_key_create(dk, "bob", NULL));
    keytier_key_close(dk);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d2.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "carol", NULL));
    keytier_key_close(dk);
    size_t n = lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env, sizeof env);
    size_t cn = lc_seal(ctx, "org-1", "Exchange", "carol", MSG, carol_env,
                        sizeof carol_env);
    static const char tier_q[] =
        "SELECT name, dep_id, wrapped FROM tier_keys ORDER BY key_id";
    char *tier_before = testenv_sql_rows(&T, tier_q, NULL, 3);
    keytier_ctx_close(ctx);

    lc_revoke_root(&T, how, "VaultA", "A1");
    lc_revoke_root(&T, how, "VaultB", "B1");
    ctx = testenv_ctx(&T);
    keytier_migration m;
    keytier_migration *list = NULL;
    size_t count = 0;

    /* Out of the revoked DEP, one mailbox: refused, nothing recorded. */
    assert_err(keytier_assign(ctx, "org-1", "Exchange", "alice", d2.dep_id, &m),
               KEYTIER_E_REVOKED);
    ck_assert_msg(strstr(keytier_last_error_detail(), d1.dep_id) &&
                      strstr(keytier_last_error_detail(), "[A] ") &&
                      strstr(keytier_last_error_detail(), "[B] "),
                  "%s", keytier_last_error_detail());
    assert_ok(keytier_migration_list(ctx, "org-1", &list, &count));
    ck_assert_uint_eq(count, 0);
    free(list);
    /* Into the revoked DEP: an existing mailbox, and a new name. */
    assert_err(keytier_assign(ctx, "org-1", "Exchange", "carol", d1.dep_id, &m),
               KEYTIER_E_REVOKED);
    assert_err(keytier_assign(ctx, "org-1", "Exchange", "dave", d1.dep_id, &m),
               KEYTIER_E_REVOKED);
    ck_assert_int_eq(
        testenv_sql_int(&T,
                        "SELECT count(*) FROM tier_keys WHERE name = "
                        "'dave'",
                        NULL),
        0);
    /* Everything to the healthy DEP: recorded, but the run refuses to read
     * d1's key through the availability key. */
    assert_ok(keytier_assign(ctx, "org-1", "Exchange", NULL, d2.dep_id, &m));
    ck_assert_str_eq(m.operation, "migrate");
    assert_err(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m),
               KEYTIER_E_REVOKED);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), d1.dep_id));

    /* Nothing moved, byte for byte; no availability key used. */
    char *tier_after = testenv_sql_rows(&T, tier_q, NULL, 3);
    ck_assert_str_eq(tier_after, tier_before);
    keytier_status st;
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st));
    ck_assert_str_eq(st.dep_id, d1.dep_id);
    ck_assert_int_eq(lc_audit_count(ctx, "Fallback to availability key"), 0);
    keytier_avail_stats as;
    assert_ok(keytier_avail_stats_get(ctx, &as));
    ck_assert_uint_eq(as.fallbacks, 0);
    /* Users of d1 are still revoked; d2's users are not affected. */
    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG),
        KEYTIER_E_REVOKED);
    assert_ok(lc_open(ctx, &lc_user, "org-1", "Exchange", "carol", carol_env,
                      cn, MSG));

    /* Recovery (explicit, audited) may still move d1's keys. */
    assert_ok(keytier_dep_recover(ctx, "org-1", d1.dep_id,
                                  testenv_uri("VaultC", "C3"),
                                  testenv_uri("VaultB", "B3"), &d3, &m));
    assert_ok(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m));
    ck_assert(m.finished);
    ck_assert_uint_eq(m.done, 2);
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st));
    ck_assert_str_eq(st.dep_id, d3.dep_id);
    ck_assert_int_ge(lc_audit_count(ctx, "Fallback to availability key"), 1);
    char apath[4096];
    uint64_t bad = 0;
    assert_ok(keytier_audit_log_path(ctx, apath, sizeof apath));
    assert_ok(keytier_audit_verify(apath, &bad, NULL));
    free(tier_before);
    free(tier_after);
    keytier_ctx_close(ctx);
}

START_TEST(assign_revoked_roots_destroyed)
{
    assign_revoked_case(LC_DESTROY);
}
END_TEST

START_TEST(assign_revoked_unwrap_off)
{
    assign_revoked_case(LC_UNWRAP_OFF);
}
END_TEST

/* The target of a migration is read as a rewrap as well, recovery
 * included: a migration recorded while its target was healthy is refused
 * with KEYTIER_E_REVOKED once the customer revokes both of the target's
 * customer keys, although the target's availability key is healthy, and
 * nothing moves.  A run that read the target through the availability key
 * would put the keys under a DEP whose users are revoked. */
START_TEST(migrate_into_revoked_target_refused)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_root_aes(&T, "VaultB", "B2", 0);
    testenv_root_aes(&T, "VaultC", "C3", 0);
    testenv_root_aes(&T, "VaultB", "B3", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2, e1, e2;
    keytier_key *dk = NULL;
    keytier_migration m, rm;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A2"),
                                 testenv_uri("VaultB", "B2"), &d2));
    assert_ok(keytier_dep_create(ctx, "org-2", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &e1));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-2", e1.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "bob", NULL));
    keytier_key_close(dk);
    /* A plain migration into d2, and a recovery of e1 into e2 (C3, B3). */
    assert_ok(keytier_assign(ctx, "org-1", "Exchange", "alice", d2.dep_id, &m));
    assert_ok(keytier_dep_recover(ctx, "org-2", e1.dep_id,
                                  testenv_uri("VaultC", "C3"),
                                  testenv_uri("VaultB", "B3"), &e2, &rm));
    ck_assert_str_eq(rm.operation, "recover");
    static const char tier_q[] =
        "SELECT name, dep_id, wrapped FROM tier_keys ORDER BY key_id";
    char *tier_before = testenv_sql_rows(&T, tier_q, NULL, 3);
    keytier_ctx_close(ctx);

    lc_revoke_root(&T, LC_DESTROY, "VaultA", "A2");
    lc_revoke_root(&T, LC_DESTROY, "VaultB", "B2");
    lc_revoke_root(&T, LC_UNWRAP_OFF, "VaultC", "C3");
    lc_revoke_root(&T, LC_UNWRAP_OFF, "VaultB", "B3");
    ctx = testenv_ctx(&T);
    assert_err(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m),
               KEYTIER_E_REVOKED);
    ck_assert_msg(strstr(keytier_last_error_detail(), d2.dep_id) &&
                      strstr(keytier_last_error_detail(), "never uses the "
                                                          "availability key"),
                  "%s", keytier_last_error_detail());
    assert_err(keytier_migrate_run(ctx, rm.migration_id, NULL, NULL, &rm),
               KEYTIER_E_REVOKED);
    ck_assert_msg(strstr(keytier_last_error_detail(), e2.dep_id) &&
                      strstr(keytier_last_error_detail(), "recover refused"),
                  "%s", keytier_last_error_detail());

    /* Nothing moved, byte for byte; no availability key used. */
    char *tier_after = testenv_sql_rows(&T, tier_q, NULL, 3);
    ck_assert_str_eq(tier_after, tier_before);
    keytier_avail_stats as;
    assert_ok(keytier_avail_stats_get(ctx, &as));
    ck_assert_uint_eq(as.fallbacks, 0);
    ck_assert_uint_eq(as.denied, 2);
    ck_assert_int_eq(lc_audit_count(ctx, "Fallback to availability key"), 0);
    keytier_status st;
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st));
    ck_assert_str_eq(st.dep_id, d1.dep_id);
    assert_ok(keytier_status_get(ctx, "org-2", "Exchange", "bob", &st));
    ck_assert_str_eq(st.dep_id, e1.dep_id);
    free(tier_before);
    free(tier_after);
    keytier_ctx_close(ctx);
}
END_TEST

/* A plain migration needs the customer keys of the DEPs it reads: during
 * an outage of both (their token's module not configured: system errors)
 * the run is refused with KEYTIER_E_UNAVAILABLE, although the
 * availability key is reachable (user reads fall back to it), and nothing
 * moves; once the customer keys answer, the same migration completes. */
START_TEST(migrate_refused_in_customer_outage)
{
    testenv_keytier_token(&T, "KService");
    testenv_keytier_token(&T, "Kt1");
    testenv_keytier_token(&T, "Kt2");
    T.service = "KService";
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "Kt1", "K1", 0);
    testenv_root_aes(&T, "Kt2", "K2", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    keytier_key *dk = NULL;
    static const char *const MSG = "written before the outage";
    uint8_t env[1024];
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("Kt1", "K1"),
                                 testenv_uri("Kt2", "K2"), &d2));
    ck_assert_ptr_nonnull(
        strstr(d1.root_uri[KEYTIER_ROOT_AVAIL], "token=KService"));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    size_t n = lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env, sizeof env);
    static const char tier_q[] =
        "SELECT dep_id, wrapped FROM tier_keys WHERE name = 'alice'";
    char *tier_before = testenv_sql_rows(&T, tier_q, NULL, 2);
    keytier_ctx_close(ctx);

    /* SoftHSM2 (both customer keys of d1) is gone from the configuration. */
    testenv_write_conf_mods(&T, MOD_KEYTIER, NULL);
    ctx = testenv_ctx(&T);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    keytier_avail_stats st;
    assert_ok(keytier_avail_stats_get(ctx, &st));
    ck_assert_uint_eq(st.fallbacks, 1); /* the availability key answers */
    keytier_migration m;
    assert_ok(keytier_assign(ctx, "org-1", "Exchange", "alice", d2.dep_id, &m));
    assert_err(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m),
               KEYTIER_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), d1.dep_id));
    assert_ok(keytier_avail_stats_get(ctx, &st));
    ck_assert_uint_eq(st.fallbacks, 1);
    char *tier_after = testenv_sql_rows(&T, tier_q, NULL, 2);
    ck_assert_str_eq(tier_after, tier_before);
    keytier_ctx_close(ctx);

    /* The customer keys answer again: the same migration completes. */
    testenv_write_conf(&T, NULL);
    ctx = testenv_ctx(&T);
    assert_ok(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m));
    ck_assert(m.finished);
    ck_assert_uint_eq(m.done, 1);
    keytier_status ks;
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "alice", &ks));
    ck_assert_str_eq(ks.dep_id, d2.dep_id);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    free(tier_before);
    free(tier_after);
    keytier_ctx_close(ctx);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "migrate-child") == 0)
        return migrate_child(argv[2], argv[3]);
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("migrate");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, migrate_10000_killed_three_times);
    tcase_add_test(tc, migrate_in_background);
    tcase_add_test(tc, assign_files_shape_and_new_name);
    tcase_add_test(tc, recover_both_customer_tokens_deleted);
    tcase_add_test(tc, assign_revoked_roots_destroyed);
    tcase_add_test(tc, assign_revoked_unwrap_off);
    tcase_add_test(tc, migrate_into_revoked_target_refused);
    tcase_add_test(tc, migrate_refused_in_customer_outage);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
