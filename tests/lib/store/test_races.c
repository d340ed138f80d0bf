/*
 * Limits that must hold when several processes (each its own connection,
 * as nodes are) change one tenant at once, on testenv's store (a SQLite
 * file, or a PostgreSQL database with KT_TEST_PG): one files DEP per
 * tenant, workload and region (checked again in the inserting
 * transaction), and a DEP's two customer keys in two different tokens
 * when its keys A and B are rolled into one token at once (a roll begins
 * only while the other slot's key is the one it was checked against).
 * Each racer logs in to the tokens first, one at a time, then all start
 * together: the race is the store's alone.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt_lib.h"
#include "testenv.h"

#define RACERS 6

static struct testenv T;
static char dep_id[KEYTIER_ID_SIZE];

static void setup(void)
{
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    for (int i = 0; i < RACERS; i++) {
        char label[16];
        snprintf(label, sizeof label, "c%d", i);
        testenv_root_aes(&T, "VaultC", label, 0);
    }
    testenv_write_conf(&T, "approval.required = no\n"
                           "workload.SharePoint.availability_key = aes256\n");
}

static void teardown(void)
{
    testenv_teardown(&T);
}

#define URI_A testenv_uri("VaultA", "rootA")
#define URI_B testenv_uri("VaultB", "rootB")

/* Racer i's key in VaultC. */
static const char *uri_c(int i)
{
    char label[16];
    snprintf(label, sizeof label, "c%d", i);
    return testenv_uri("VaultC", label);
}

/* Opens racer i's context and logs it in to every token (a DEP of its
 * own tenant each through VaultA, VaultB and VaultC), under a lock shared
 * by the racers. */
static bool warm(keytier_ctx **c, int i)
{
    char lock[400], tenant[32];
    keytier_dep_info d;
    snprintf(lock, sizeof lock, "%s/warm.lock", T.dir);
    snprintf(tenant, sizeof tenant, "warm-%d", i);
    int lk = open(lock, O_RDWR | O_CREAT, 0600);
    bool ok = lk >= 0 && flock(lk, LOCK_EX) == 0 &&
              keytier_ctx_open(T.conf, c) == KEYTIER_OK &&
              keytier_dep_create(*c, tenant, "Exchange", URI_A, uri_c(i), &d) ==
                  KEYTIER_OK &&
              keytier_dep_create(*c, tenant, "Exchange", URI_B, uri_c(i), &d) ==
                  KEYTIER_OK;
    if (lk >= 0)
        close(lk);
    return ok;
}

/* Starts RACERS processes that warm up, wait for the start and run
 * race(ctx, i); each exits 0 on KEYTIER_OK, 1 on `refused`, 2 otherwise.
 * counts[0] and counts[1] get how many did the first two. */
static void run_racers(keytier_err (*race)(keytier_ctx *, int),
                       keytier_err refused, int counts[2])
{
    int go[2];
    pid_t pids[RACERS];
    ck_assert_int_eq(pipe(go), 0);
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] != 0)
            continue;
        keytier_ctx *c = NULL;
        char b;
        close(go[1]);
        if (!warm(&c, i) || read(go[0], &b, 1) != 0) /* released: close */
            _exit(3);
        keytier_err e = race(c, i);
        if (e != KEYTIER_OK && e != refused)
            fprintf(stderr, "racer %d: %s %s\n", i, keytier_error_name(e),
                    keytier_last_error_detail());
        keytier_ctx_close(c);
        _exit(e == KEYTIER_OK ? 0 : e == refused ? 1 : 2);
    }
    close(go[0]);
    /* every racer warm: its DEPs exist */
    keytier_ctx *ctx = testenv_ctx(&T);
    for (int tries = 0; tries < 300; tries++) {
        size_t warm_deps = 0;
        for (int r = 0; r < RACERS; r++) {
            char tenant[32];
            keytier_dep_info *list = NULL;
            size_t n = 0;
            snprintf(tenant, sizeof tenant, "warm-%d", r);
            ck_assert_int_eq(keytier_dep_list(ctx, tenant, NULL, &list, &n),
                             KEYTIER_OK);
            keytier_dep_list_free(list);
            warm_deps += n;
        }
        if (warm_deps == 2 * RACERS)
            break;
        usleep(100000);
    }
    keytier_ctx_close(ctx);
    close(go[1]); /* all start */
    counts[0] = counts[1] = 0;
    for (int i = 0; i < RACERS; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) <= 1,
                      "racer %d failed (status %d)", i, status);
        counts[WEXITSTATUS(status)]++;
    }
}

static keytier_err create_in_eu(keytier_ctx *c, int i)
{
    keytier_dep_info d;
    (void)i;
    return keytier_dep_create_in_region(c, "org-1", "SharePoint", "eu", URI_A,
                                        URI_B, NULL, &d);
}

START_TEST(one_files_dep_per_region_under_racing_processes)
{
    int counts[2];
    run_racers(create_in_eu, KEYTIER_E_DEP_REGION, counts);
    ck_assert_int_eq(counts[0], 1);
    ck_assert_int_eq(counts[1], RACERS - 1);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info *list = NULL;
    size_t n = 0;
    ck_assert_int_eq(keytier_dep_list(ctx, "org-1", "SharePoint", &list, &n),
                     KEYTIER_OK);
    keytier_dep_list_free(list);
    ck_assert_uint_eq(n, 1);
    keytier_ctx_close(ctx);
}
END_TEST

/* Racer i rolls key A (even i) or B (odd i) of the DEP to its key in
 * VaultC: each roll alone keeps two tokens.  Refused either way: the DEP
 * changed under it (KEYTIER_E_DEP_STATE) or, checked after another roll
 * ended, the other key is in VaultC already (KEYTIER_E_SAME_TOKEN). */
static keytier_err roll_into_c(keytier_ctx *c, int i)
{
    keytier_err e = keytier_dep_roll(c, "org-1", dep_id,
                                     i % 2 ? KEYTIER_ROOT_B : KEYTIER_ROOT_A,
                                     uri_c(i), NULL);
    return e == KEYTIER_E_SAME_TOKEN ? KEYTIER_E_DEP_STATE : e;
}

/* "pkcs11:token=T;..." -> T, into out. */
static void token_of(const char *uri, char *out, size_t cap)
{
    const char *t = strstr(uri, "token=");
    ck_assert_ptr_nonnull(t);
    t += 6;
    size_t n = strcspn(t, ";?");
    ck_assert_uint_lt(n, cap);
    memcpy(out, t, n);
    out[n] = '\0';
}

START_TEST(two_tokens_under_racing_rolls)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d;
    ck_assert_int_eq(
        keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
        KEYTIER_OK);
    kt_strlcpy(dep_id, d.dep_id, sizeof dep_id);
    keytier_ctx_close(ctx);
    int counts[2];
    run_racers(roll_into_c, KEYTIER_E_DEP_STATE, counts);
    ck_assert_int_ge(counts[0], 1);
    ctx = testenv_ctx(&T);
    ck_assert_int_eq(keytier_dep_show(ctx, "org-1", dep_id, &d), KEYTIER_OK);
    keytier_ctx_close(ctx);
    char ta[64], tb[64];
    token_of(d.root_uri[KEYTIER_ROOT_A], ta, sizeof ta);
    token_of(d.root_uri[KEYTIER_ROOT_B], tb, sizeof tb);
    fprintf(stderr, "%d rolls made, %d refused: A in %s, B in %s\n", counts[0],
            counts[1], ta, tb);
    ck_assert_int_eq(d.state, KEYTIER_DEP_REGISTERED);
    ck_assert_str_ne(ta, tb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("races");
    TCase *tc = tcase_create("races");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, one_files_dep_per_region_under_racing_processes);
    tcase_add_test(tc, two_tokens_under_racing_rolls);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
