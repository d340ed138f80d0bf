/*
 * The key cache through the public API, on real SoftHSM2 tokens
 * (docs/DESIGN.md §2 "Cache"): a hit of keytier_dep_key_open / keytier_key_open
 * reads neither the store nor a token, refuses exactly as the slow path
 * does (wrong tenant, wrong parent), and every change that makes a cached
 * key wrong drops it - in the process that made the change at once, and in
 * another process (this binary run again as a child with its own context)
 * after its next sync of the store's invalidation rows.  Waits poll a
 * counter with a generous upper bound; nothing asserts timing.
 */
#include <check.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kt_lib.h"
#include "testenv.h"

extern char **environ;

static struct testenv T;
static keytier_ctx *ctx;
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-c-1", NULL};

#define URI_A testenv_uri("VaultA", "rootA")
#define URI_B testenv_uri("VaultB", "rootB")

static void write_conf(const char *extra)
{
    char lines[2048];

    snprintf(lines, sizeof lines,
             "avail.audit_log = %s/audit.jsonl\n"
             "avail.call_deadline_ms = 20000\navail.hedge_ms = 5000\n"
             "avail.cache_ttl_ms = 600000\n"
             "workload.SharePoint.availability_key = aes256\n%s",
             T.dir, extra ? extra : "");
    testenv_write_conf(&T, lines);
}

static void setup(void)
{
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    write_conf("avail.cache_sync_ms = 50\n");
    ctx = testenv_ctx(&T);
}

static void teardown(void)
{
    keytier_ctx_close(ctx);
    ctx = NULL;
    testenv_teardown(&T);
}

static void assert_err(keytier_err got, keytier_err want)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
}

static keytier_avail_stats stats(void)
{
    keytier_avail_stats s;

    assert_err(keytier_avail_stats_get(ctx, &s), KEYTIER_OK);
    return s;
}

static keytier_key *dep_open(const char *tenant, const char *dep_id)
{
    keytier_key *k = NULL;

    assert_err(keytier_dep_key_open(ctx, &user, tenant, dep_id, &k),
               KEYTIER_OK);
    return k;
}

static keytier_key *key_open(keytier_key *parent, const char *key_id)
{
    keytier_key *k = NULL;

    assert_err(keytier_key_open(parent, key_id, &k), KEYTIER_OK);
    return k;
}

/* A DEP of org-1 (Exchange) with one mailbox key; both opened once so the
 * cache holds them. */
static void dep_with_mailbox(keytier_dep_info *d, char mailbox[KEYTIER_ID_SIZE])
{
    keytier_key *dk, *mk;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, d),
               KEYTIER_OK);
    dk = dep_open("org-1", d->dep_id);
    assert_err(keytier_key_create(dk, "alice", mailbox), KEYTIER_OK);
    mk = key_open(dk, mailbox);
    keytier_key_close(mk);
    keytier_key_close(dk);
    ck_assert_uint_eq(stats().cache_entries, 2);
}

/* ---- another process: this binary as "child CONF ACTION ARGS..." ----- */

static int child_main(int argc, char **argv)
{
    keytier_ctx *c = NULL;
    keytier_key *k = NULL;
    keytier_err e;
    const char *action = argv[3], *tenant = argv[4], *id = argv[5];

    if (argc < 6)
        return 100;
    e = keytier_ctx_open(argv[2], &c);
    if (e != KEYTIER_OK)
        return 100 + (int)e;
    if (!strcmp(action, "disable")) {
        e = keytier_dep_disable(c, tenant, id);
    } else if (!strcmp(action, "purge")) {
        e = keytier_tenant_purge(c, tenant, 0, NULL);
    } else if (!strcmp(action, "roll") && argc > 6) {
        e = keytier_dep_roll(c, tenant, id, KEYTIER_ROOT_A, argv[6], NULL);
    } else if (!strcmp(action, "read")) {
        e = keytier_dep_key_open(c, &user, tenant, id, &k);
        keytier_key_close(k);
    } else if (!strcmp(action, "assign") && argc > 7) {
        keytier_migration m;
        e = keytier_assign(c, tenant, "Exchange", argv[6], id, &m);
        if (e == KEYTIER_OK && !m.finished)
            e = keytier_migrate_run(c, m.migration_id, NULL, NULL, NULL);
        (void)argv[7];
    } else {
        e = KEYTIER_E_ARGS;
    }
    if (e != KEYTIER_OK)
        fprintf(stderr, "child %s: %s\n", action, keytier_last_error_detail());
    keytier_ctx_close(c);
    return (int)e;
}

/* Runs the child to completion; its exit status is a keytier_err. */
static keytier_err child(const char *action, const char *tenant, const char *id,
                         const char *extra)
{
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *argv[] = {self,           "child",        T.conf,
                    (char *)action, (char *)tenant, (char *)id,
                    (char *)extra,  (char *)"x",    NULL};
    pid_t pid;
    int status = 0;

    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    ck_assert_int_eq(posix_spawn(&pid, self, NULL, NULL, argv, environ), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return (keytier_err)WEXITSTATUS(status);
}

/* Polls (10 ms steps, at most 60 s) until this context has applied
 * `rows` more invalidation rows than `base` and holds `entries`. */
static void wait_synced(uint64_t base, uint64_t rows, uint64_t entries)
{
    struct timespec ts = {0, 10 * 1000 * 1000};
    keytier_avail_stats s = stats();

    for (int i = 0; i < 6000 && (s.cache_sync_rows < base + rows ||
                                 s.cache_entries != entries);
         i++) {
        nanosleep(&ts, NULL);
        s = stats();
    }
    ck_assert_uint_ge(s.cache_sync_rows, base + rows);
    ck_assert_uint_eq(s.cache_entries, entries);
}

/* ---- refresh bounded ------------------------------------------------- */

/* The configuration that stormed the vaults: only the TTL set, 60 s.  The
 * refresh keys' defaults follow it (refresh_ahead 12 s, alert after 6 s,
 * retry 3 s), so a long-lived process that reads for a few seconds makes
 * one token read and no refresh (before, refresh_ahead stayed 60 s = the
 * TTL and the cache thread re-unwrapped without pause). */
START_TEST(ttl_alone_refreshes_bounded)
{
    keytier_dep_info d;
    keytier_avail_stats s;
    char lines[sizeof T.dir + 256];
    struct timespec ts = {0, 100 * 1000 * 1000};

    keytier_ctx_close(ctx);
    snprintf(lines, sizeof lines,
             "avail.audit_log = %s/audit.jsonl\n"
             "avail.cache_ttl_ms = 60000\n"
             "workload.SharePoint.availability_key = aes256\n",
             T.dir);
    testenv_write_conf(&T, lines);
    ctx = testenv_ctx(&T);
    ck_assert_uint_eq(ctx->cfg.avail.cache_refresh_ahead_ms, 12000);
    ck_assert_uint_eq(ctx->cfg.avail.cache_alert_after_ms, 6000);
    ck_assert_uint_eq(ctx->cfg.avail.cache_retry_ms, 3000);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK);
    for (int i = 0; i < 30; i++) {
        keytier_key_close(dep_open("org-1", d.dep_id));
        nanosleep(&ts, NULL);
    }
    s = stats();
    ck_assert_uint_eq(s.token_reads, 1);
    ck_assert_uint_eq(s.cache_refreshes, 0);
    ck_assert_uint_eq(s.cache_refresh_failures, 0);
    ck_assert_uint_eq(s.cache_hits, 29);
}
END_TEST

/* ---- hits ------------------------------------------------------------- */

START_TEST(hit_reads_no_store_and_no_token)
{
    keytier_dep_info d;
    char mailbox[KEYTIER_ID_SIZE];
    keytier_key *dk, *mk, *slow;
    keytier_key_info a, b;
    keytier_avail_stats s0, s1;
    uint64_t ops0;
    unsigned char env[512], pt[64];
    size_t env_len, pt_len;

    /* no sync thread reading the store behind our back */
    keytier_ctx_close(ctx);
    write_conf("avail.cache_sync_ms = 0\n");
    ctx = testenv_ctx(&T);
    dep_with_mailbox(&d, mailbox);
    s0 = stats();
    ops0 = kt_store_ops(ctx->store);
    for (int i = 0; i < 50; i++) {
        dk = dep_open("org-1", d.dep_id);
        mk = key_open(dk, mailbox);
        keytier_key_close(mk);
        keytier_key_close(dk);
    }
    s1 = stats();
    ck_assert_uint_eq(kt_store_ops(ctx->store), ops0); /* no store read */
    ck_assert_uint_eq(s1.token_reads, s0.token_reads); /* no token call */
    ck_assert_uint_eq(s1.cache_hits, s0.cache_hits + 100);
    ck_assert_uint_eq(s1.cache_misses, s0.cache_misses);

    /* what a hit gives is what the slow path gives */
    dk = dep_open("org-1", d.dep_id);
    mk = key_open(dk, mailbox);
    keytier_key_get_info(dk, &a);
    ck_assert_str_eq(a.dep_id, d.dep_id);
    ck_assert_str_eq(a.tenant, "org-1");
    ck_assert_uint_eq(a.level, 0);
    ck_assert_int_eq(a.created, d.created);
    assert_err(
        keytier_seal(mk, "item-1", 6, "hello", 5, env, sizeof env, &env_len),
        KEYTIER_OK);
    assert_err(
        keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_ALL, NULL, NULL),
        KEYTIER_OK);
    ops0 = kt_store_ops(ctx->store);
    slow = key_open(dk, mailbox); /* a miss: store and parent key */
    ck_assert_uint_gt(kt_store_ops(ctx->store), ops0);
    keytier_key_get_info(mk, &a);
    keytier_key_get_info(slow, &b);
    ck_assert_mem_eq(&a, &b, sizeof a);
    assert_err(
        keytier_open(slow, "item-1", 6, env, env_len, pt, sizeof pt, &pt_len),
        KEYTIER_OK);
    ck_assert_uint_eq(pt_len, 5);
    ck_assert_mem_eq(pt, "hello", 5);
    keytier_key_close(slow);
    keytier_key_close(mk);
    keytier_key_close(dk);
}
END_TEST

START_TEST(hit_wrong_tenant_refused_like_slow_path)
{
    keytier_dep_info d;
    char mailbox[KEYTIER_ID_SIZE], hit_detail[512];
    keytier_key *k = NULL;
    keytier_avail_stats s0;

    dep_with_mailbox(&d, mailbox);
    s0 = stats();
    assert_err(keytier_dep_key_open(ctx, &user, "org-2", d.dep_id, &k),
               KEYTIER_E_WRONG_TENANT);
    ck_assert_ptr_null(k);
    snprintf(hit_detail, sizeof hit_detail, "%s", keytier_last_error_detail());
    ck_assert_uint_eq(stats().cache_hits, s0.cache_hits); /* not served */
    ck_assert_uint_eq(stats().cache_entries, 2);          /* still cached */
    /* the same error with nothing cached */
    assert_err(
        keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_ALL, NULL, NULL),
        KEYTIER_OK);
    assert_err(keytier_dep_key_open(ctx, &user, "org-2", d.dep_id, &k),
               KEYTIER_E_WRONG_TENANT);
    ck_assert_str_eq(keytier_last_error_detail(), hit_detail);
}
END_TEST

START_TEST(tier_hit_wrong_parent_refused_like_slow_path)
{
    keytier_dep_info d, d2, o;
    char mailbox[KEYTIER_ID_SIZE], hit_detail[512];
    keytier_key *d2k, *ok, *k = NULL;
    keytier_avail_stats s0;

    dep_with_mailbox(&d, mailbox);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d2),
               KEYTIER_OK);
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A, URI_B, &o),
               KEYTIER_OK);
    d2k = dep_open("org-1", d2.dep_id);
    ok = dep_open("org-2", o.dep_id);
    s0 = stats();
    /* the mailbox is cached under d: another DEP as parent is refused */
    assert_err(keytier_key_open(d2k, mailbox, &k), KEYTIER_E_WRONG_PARENT);
    ck_assert_ptr_null(k);
    snprintf(hit_detail, sizeof hit_detail, "%s", keytier_last_error_detail());
    assert_err(keytier_key_open(ok, mailbox, &k), KEYTIER_E_WRONG_TENANT);
    ck_assert_uint_eq(stats().cache_hits, s0.cache_hits);
    /* and the same with nothing cached */
    assert_err(
        keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_TENANT, "org-1", NULL),
        KEYTIER_OK);
    assert_err(keytier_key_open(d2k, mailbox, &k), KEYTIER_E_WRONG_PARENT);
    ck_assert_str_eq(keytier_last_error_detail(), hit_detail);
    keytier_key_close(d2k);
    keytier_key_close(ok);
}
END_TEST

START_TEST(tier_levels_configurable)
{
    keytier_dep_info d;
    char site[KEYTIER_ID_SIZE], blob[KEYTIER_ID_SIZE];
    keytier_key *dk, *sk, *bk;

    /* files shape: TIK (level 1), site (level 2) and blob (level 3) keys */
    keytier_ctx_close(ctx);
    write_conf("avail.cache_tier_levels = 3\n");
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &d),
               KEYTIER_OK);
    dk = dep_open("org-1", d.dep_id);
    assert_err(keytier_key_create(dk, "site-1", site), KEYTIER_OK);
    sk = key_open(dk, site);
    assert_err(keytier_key_create(sk, "blob-1", blob), KEYTIER_OK);
    bk = key_open(sk, blob);
    keytier_key_close(bk);
    ck_assert_uint_eq(stats().cache_entries, 4);
    /* the site key's invalidation takes the blob key below it */
    ck_assert_uint_eq(kt_avail_uncache(ctx, KT_INVAL_KEY, site), 2);
    keytier_key_close(sk);
    keytier_key_close(dk);

    /* 0: DEP keys only */
    keytier_ctx_close(ctx);
    write_conf("avail.cache_tier_levels = 0\n");
    ctx = testenv_ctx(&T);
    dk = dep_open("org-1", d.dep_id);
    sk = key_open(dk, site);
    keytier_key_close(sk);
    ck_assert_uint_eq(stats().cache_entries, 1);
    keytier_key_close(dk);

    /* out of range */
    keytier_ctx_close(ctx);
    ctx = NULL;
    write_conf("avail.cache_tier_levels = 9\n");
    assert_err(keytier_ctx_open(T.conf, &ctx), KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "avail.cache_tier_levels"));
    write_conf("avail.cache_sync_ms = soon\n");
    assert_err(keytier_ctx_open(T.conf, &ctx), KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "avail.cache_sync_ms"));
    ck_assert_ptr_null(ctx);
}
END_TEST

/* ---- invalidation in the same process ---------------------------------- */

START_TEST(same_process_changes_invalidate_at_once)
{
    keytier_dep_info d, d2;
    char mailbox[KEYTIER_ID_SIZE];
    keytier_key *dk, *k = NULL;
    keytier_migration m;
    keytier_avail_stats s0;

    /* disable: the DEP key and the tier keys under it */
    dep_with_mailbox(&d, mailbox);
    assert_err(keytier_dep_disable(ctx, "org-1", d.dep_id), KEYTIER_OK);
    ck_assert_uint_eq(stats().cache_entries, 0);
    s0 = stats();
    dk = dep_open("org-1", d.dep_id); /* disabled DEPs still read */
    ck_assert_uint_gt(stats().token_reads, s0.token_reads);
    keytier_key_close(dk);

    /* roll */
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d2),
               KEYTIER_OK);
    dk = dep_open("org-1", d2.dep_id);
    keytier_key_close(dk);
    testenv_root_aes(&T, "VaultA", "rootA2", 0);
    ck_assert_uint_eq(stats().cache_entries, 2); /* d and d2 */
    assert_err(keytier_dep_roll(ctx, "org-1", d2.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "rootA2"), NULL),
               KEYTIER_OK);
    ck_assert_uint_eq(stats().cache_entries, 1); /* d2 gone */
    s0 = stats();
    dk = dep_open("org-1", d2.dep_id);
    ck_assert_uint_gt(stats().token_reads, s0.token_reads);
    keytier_key_close(dk);
    ck_assert_uint_eq(kt_avail_uncache(ctx, KT_INVAL_DEP, d2.dep_id), 1);

    /* a mailbox moved to another DEP: its entry goes, the old parent is
     * refused as the slow path refuses it */
    dk = dep_open("org-1", d.dep_id);
    keytier_key_close(key_open(dk, mailbox));
    ck_assert_uint_eq(stats().cache_entries, 2);
    assert_err(keytier_assign(ctx, "org-1", "Exchange", "alice", d2.dep_id, &m),
               KEYTIER_OK);
    assert_err(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, NULL),
               KEYTIER_OK);
    assert_err(keytier_key_open(dk, mailbox, &k), KEYTIER_E_WRONG_PARENT);
    keytier_key_close(dk);

    /* purge: nothing of the tenant opens any more */
    dk = dep_open("org-1", d2.dep_id);
    keytier_key_close(key_open(dk, mailbox));
    ck_assert_uint_ge(stats().cache_entries, 2);
    assert_err(keytier_tenant_purge(ctx, "org-1", 0, NULL), KEYTIER_OK);
    ck_assert_uint_eq(stats().cache_entries, 0);
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d2.dep_id, &k),
               KEYTIER_E_PURGED);
    assert_err(keytier_key_open(dk, mailbox, &k), KEYTIER_E_NOT_FOUND);
    ck_assert_ptr_null(k);
    keytier_key_close(dk);
}
END_TEST

/* ---- invalidation from another process --------------------------------- */

START_TEST(other_process_disable_roll_assign)
{
    keytier_dep_info d, d2;
    char mailbox[KEYTIER_ID_SIZE];
    keytier_key *dk, *k = NULL;
    keytier_avail_stats s0;

    dep_with_mailbox(&d, mailbox);
    /* disable by another process: the next read is a miss */
    s0 = stats();
    assert_err(child("disable", "org-1", d.dep_id, ""), KEYTIER_OK);
    wait_synced(s0.cache_sync_rows, 1, 0);
    s0 = stats();
    dk = dep_open("org-1", d.dep_id);
    ck_assert_uint_gt(stats().token_reads, s0.token_reads);
    keytier_key_close(key_open(dk, mailbox));
    keytier_key_close(dk);

    /* roll by another process */
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d2),
               KEYTIER_OK);
    dk = dep_open("org-1", d2.dep_id);
    keytier_key_close(dk);
    ck_assert_uint_eq(stats().cache_entries, 3);
    testenv_root_aes(&T, "VaultA", "rootA2", 0);
    s0 = stats();
    assert_err(
        child("roll", "org-1", d2.dep_id, testenv_uri("VaultA", "rootA2")),
        KEYTIER_OK);
    wait_synced(s0.cache_sync_rows, 1, 2);

    /* the mailbox moved to d2 by another process: the old parent (a handle
     * this process still holds) is refused after the sync */
    dk = dep_open("org-1", d.dep_id);
    keytier_key_close(key_open(dk, mailbox));
    s0 = stats();
    assert_err(child("assign", "org-1", d2.dep_id, "alice"), KEYTIER_OK);
    wait_synced(s0.cache_sync_rows, 1, 1); /* the mailbox went */
    assert_err(keytier_key_open(dk, mailbox, &k), KEYTIER_E_WRONG_PARENT);
    ck_assert_ptr_null(k);
    keytier_key_close(dk);
}
END_TEST

START_TEST(other_process_purge_refused_after_sync)
{
    keytier_dep_info d;
    char mailbox[KEYTIER_ID_SIZE];
    keytier_key *dk, *k = NULL;
    keytier_avail_stats s0;

    dep_with_mailbox(&d, mailbox);
    dk = dep_open("org-1", d.dep_id);
    s0 = stats();
    assert_err(child("purge", "org-1", d.dep_id, ""), KEYTIER_OK);
    wait_synced(s0.cache_sync_rows, 1, 0);
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
               KEYTIER_E_PURGED);
    assert_err(keytier_key_open(dk, mailbox, &k), KEYTIER_E_NOT_FOUND);
    ck_assert_ptr_null(k);
    keytier_key_close(dk);
}
END_TEST

START_TEST(other_process_revocation_published)
{
    keytier_dep_info d;
    char mailbox[KEYTIER_ID_SIZE];
    keytier_key *k = NULL;
    keytier_avail_stats s0;

    dep_with_mailbox(&d, mailbox);
    /* the customer destroys both roots; this process still serves its
     * cached key until someone notices */
    testenv_destroy(&T, "VaultA", "rootA");
    testenv_destroy(&T, "VaultB", "rootB");
    k = dep_open("org-1", d.dep_id);
    keytier_key_close(k);
    k = NULL;
    /* another process reads, is denied, and publishes it */
    s0 = stats();
    assert_err(child("read", "org-1", d.dep_id, ""), KEYTIER_E_REVOKED);
    wait_synced(s0.cache_sync_rows, 1, 0);
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
               KEYTIER_E_REVOKED);
    ck_assert_ptr_null(k);
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;
    SRunner *sr;
    int failed;

    if (argc > 1 && !strcmp(argv[1], "child"))
        return child_main(argc, argv);
    s = suite_create("cache-api");
    tc = tcase_create("cache-api");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, ttl_alone_refreshes_bounded);
    tcase_add_test(tc, hit_reads_no_store_and_no_token);
    tcase_add_test(tc, hit_wrong_tenant_refused_like_slow_path);
    tcase_add_test(tc, tier_hit_wrong_parent_refused_like_slow_path);
    tcase_add_test(tc, tier_levels_configurable);
    tcase_add_test(tc, same_process_changes_invalidate_at_once);
    tcase_add_test(tc, other_process_disable_roll_assign);
    tcase_add_test(tc, other_process_purge_refused_after_sync);
    tcase_add_test(tc, other_process_revocation_published);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
