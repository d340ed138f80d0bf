/* Claims of migration items under a lease (store/store_claim.c, keytier
 * worker), on the store itself (testenv's: a SQLite file, or a PostgreSQL
 * database with KT_TEST_PG, where claims take row locks only): claimers
 * in several processes never hold the same item and lose none, an
 * expired lease is taken over, a worker whose claim was taken over writes
 * nothing, released claims are free at once, a renewed lease is kept, and
 * a migration is finished once and only with nothing left to do. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt_lib.h"
#include "testenv.h"

#define N_KEYS   120
#define CLAIMERS 4
#define T0       1000000000000LL /* a clock, in ms: leases are data here */

static struct testenv T;
static struct kt_store *st;
static struct kt_mig_rec mig;

static void dep_rec(struct kt_dep_rec *d, int n)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dep_id, sizeof d->dep_id, "00000000-0000-4000-8000-%012d",
             n % 1000);
    snprintf(d->policy_id, sizeof d->policy_id, "11111111-0000-4000-8000-%012d",
             n);
    snprintf(d->tenant, sizeof d->tenant, "acme");
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

static void key_id(int i, char out[KEYTIER_ID_SIZE])
{
    snprintf(out, KEYTIER_ID_SIZE, "22222222-0000-4000-8000-%012d", i);
}

static void setup(void)
{
    testenv_setup(&T);
    ck_assert_int_eq(kt_store_open(T.store, &st), KEYTIER_OK);
    struct kt_dep_rec d;
    for (int n = 1; n <= 2; n++) {
        dep_rec(&d, n);
        ck_assert_int_eq(kt_store_dep_insert(st, &d, 50), KEYTIER_OK);
    }
    dep_rec(&d, 1);
    for (int i = 0; i < N_KEYS; i++) {
        struct kt_key_rec k;
        memset(&k, 0, sizeof k);
        key_id(i, k.key_id);
        snprintf(k.tenant, sizeof k.tenant, "acme");
        snprintf(k.workload, sizeof k.workload, "Exchange");
        snprintf(k.dep_id, sizeof k.dep_id, "%s", d.dep_id);
        snprintf(k.parent_id, sizeof k.parent_id, "%s", d.dep_id);
        snprintf(k.name, sizeof k.name, "m%d", i);
        k.level = 1;
        k.created = 1;
        memset(k.wrapped, 0x11, sizeof k.wrapped);
        ck_assert_int_eq(kt_store_key_insert(st, &k), KEYTIER_OK);
    }
    memset(&mig, 0, sizeof mig);
    snprintf(mig.migration_id, sizeof mig.migration_id,
             "33333333-0000-4000-8000-000000000001");
    snprintf(mig.tenant, sizeof mig.tenant, "acme");
    snprintf(mig.workload, sizeof mig.workload, "Exchange");
    dep_rec(&d, 2);
    snprintf(mig.target_dep, sizeof mig.target_dep, "%s", d.dep_id);
    snprintf(mig.scope, sizeof mig.scope, "all");
    snprintf(mig.operation, sizeof mig.operation, "migrate");
    size_t total = 0;
    ck_assert_int_eq(kt_store_mig_create(st, &mig, &total), KEYTIER_OK);
    ck_assert_uint_eq(total, N_KEYS);
}

static void teardown(void)
{
    kt_store_close(st);
    testenv_teardown(&T);
}

/* Claims up to max items for worker at now (lease: lease_ms). */
static size_t claim(struct kt_store *s, const char *worker, int64_t now,
                    int64_t lease_ms, size_t max, struct kt_mig_todo *todo,
                    size_t *taken)
{
    struct kt_claim c = {worker, now, now + lease_ms};
    size_t n = 0, t = 0;
    ck_assert_int_eq(
        kt_store_mig_claim(s, mig.migration_id, &c, max, todo, &n, &t),
        KEYTIER_OK);
    if (taken != NULL)
        *taken = t;
    return n;
}

/* The updates that move the claimed items to the target, their wrapped
 * bytes all `mark`. */
static void updates(const struct kt_mig_todo *todo, size_t n, uint8_t mark,
                    struct kt_mig_update *u)
{
    for (size_t i = 0; i < n; i++) {
        memset(&u[i], 0, sizeof u[i]);
        u[i].item = true;
        kt_strlcpy(u[i].key_id, todo[i].key_id, sizeof u[i].key_id);
        kt_strlcpy(u[i].old_dep, todo[i].rec.dep_id, sizeof u[i].old_dep);
        kt_strlcpy(u[i].dep_id, mig.target_dep, sizeof u[i].dep_id);
        kt_strlcpy(u[i].parent_id, mig.target_dep, sizeof u[i].parent_id);
        memset(u[i].wrapped, mark, sizeof u[i].wrapped);
    }
}

static uint64_t done_count(void)
{
    struct kt_mig_rec m;
    ck_assert_int_eq(kt_store_mig_get(st, mig.migration_id, &m), KEYTIER_OK);
    return m.done;
}

/* Claims in a child process until nothing is left, applying each batch
 * and writing each key id it applied on fd (none may be lost: nothing
 * expires). */
static void claimer(const char *worker, int fd)
{
    struct kt_store *s;
    struct kt_mig_todo todo[3];
    struct kt_mig_update u[3];
    if (kt_store_open(T.store, &s) != KEYTIER_OK)
        _exit(2);
    for (;;) {
        struct kt_claim c = {worker, T0, T0 + 3600000};
        size_t n = 0, t = 0, applied = 0, lost = 0;
        if (kt_store_mig_claim(s, mig.migration_id, &c, 3, todo, &n, &t) !=
            KEYTIER_OK)
            _exit(3);
        if (n == 0)
            break;
        updates(todo, n, 0xcc, u);
        if (kt_store_mig_apply_claimed(s, mig.migration_id, worker, u, n,
                                       &applied, &lost) != KEYTIER_OK ||
            applied != n || lost != 0)
            _exit(5);
        for (size_t i = 0; i < n; i++)
            if (write(fd, todo[i].key_id, KEYTIER_ID_SIZE) != KEYTIER_ID_SIZE)
                _exit(4);
    }
    kt_store_close(s);
    _exit(0);
}

START_TEST(claimers_never_share_an_item_and_lose_none)
{
    int fds[CLAIMERS][2];
    pid_t pid[CLAIMERS];
    for (int w = 0; w < CLAIMERS; w++) {
        char worker[32];
        snprintf(worker, sizeof worker, "node-%d:%d:w", w, w + 1);
        ck_assert_int_eq(pipe(fds[w]), 0);
        pid[w] = fork();
        ck_assert_int_ge(pid[w], 0);
        if (pid[w] == 0) {
            for (int o = 0; o < w; o++)
                close(fds[o][0]);
            close(fds[w][0]);
            claimer(worker, fds[w][1]);
        }
        close(fds[w][1]);
    }
    int seen[N_KEYS] = {0}, by[CLAIMERS] = {0}, total = 0;
    for (int w = 0; w < CLAIMERS; w++) {
        char id[KEYTIER_ID_SIZE];
        while (read(fds[w][0], id, sizeof id) == (ssize_t)sizeof id) {
            int i = atoi(id + 24);
            ck_assert_int_lt(i, N_KEYS);
            seen[i]++;
            by[w]++;
        }
        close(fds[w][0]);
        int status;
        ck_assert_int_eq(waitpid(pid[w], &status, 0), pid[w]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "claimer %d failed", w);
    }
    for (int i = 0; i < N_KEYS; i++)
        ck_assert_msg(seen[i] == 1, "key %d claimed %d times", i, seen[i]);
    for (int w = 0; w < CLAIMERS; w++)
        total += by[w];
    ck_assert_int_eq(total, N_KEYS);
    ck_assert_uint_eq(done_count(), N_KEYS);
}
END_TEST

START_TEST(live_claims_are_skipped_expired_taken_over)
{
    struct kt_mig_todo todo[N_KEYS];
    size_t taken = 0;
    ck_assert_uint_eq(claim(st, "a", T0, 1000, 10, todo, &taken), 10);
    ck_assert_uint_eq(taken, 0);
    /* Within a's lease, b gets the other keys only. */
    ck_assert_uint_eq(claim(st, "b", T0 + 999, 60000, N_KEYS, todo, &taken),
                      N_KEYS - 10);
    ck_assert_uint_eq(taken, 0);
    ck_assert_uint_eq(claim(st, "c", T0 + 999, 60000, N_KEYS, todo, NULL), 0);
    /* a's lease ran out: c takes over exactly a's ten. */
    ck_assert_uint_eq(claim(st, "c", T0 + 1000, 60000, N_KEYS, todo, &taken),
                      10);
    ck_assert_uint_eq(taken, 10);
    uint64_t undone = 0, claimed = 0;
    ck_assert_int_eq(
        kt_store_mig_undone(st, mig.migration_id, T0 + 1000, &undone, &claimed),
        KEYTIER_OK);
    ck_assert_uint_eq(undone, N_KEYS);
    ck_assert_uint_eq(claimed, N_KEYS);
}
END_TEST

START_TEST(late_commit_of_a_lost_claim_writes_nothing)
{
    struct kt_mig_todo ta[5], tb[5];
    struct kt_mig_update ua[5], ub[5];
    size_t applied = 0, lost = 0;
    ck_assert_uint_eq(claim(st, "a", T0, 1000, 5, ta, NULL), 5);
    updates(ta, 5, 0xaa, ua);
    /* a stalls past its lease; b takes its items over */
    ck_assert_uint_eq(claim(st, "b", T0 + 2000, 60000, 5, tb, NULL), 5);
    updates(tb, 5, 0xbb, ub);
    /* a's late commit, before b's: nothing of it is written */
    ck_assert_int_eq(kt_store_mig_apply_claimed(st, mig.migration_id, "a", ua,
                                                5, &applied, &lost),
                     KEYTIER_OK);
    ck_assert_uint_eq(applied, 0);
    ck_assert_uint_eq(lost, 5);
    ck_assert_uint_eq(done_count(), 0);
    struct kt_key_rec k;
    ck_assert_int_eq(kt_store_key_get(st, ta[0].key_id, &k), KEYTIER_OK);
    ck_assert_str_ne(k.dep_id, mig.target_dep);
    ck_assert_uint_eq(k.wrapped[0], 0x11);
    /* b commits its batch */
    ck_assert_int_eq(kt_store_mig_apply_claimed(st, mig.migration_id, "b", ub,
                                                5, &applied, &lost),
                     KEYTIER_OK);
    ck_assert_uint_eq(applied, 5);
    ck_assert_uint_eq(lost, 0);
    /* a's commit again, after b's: still nothing, b's bytes stay */
    ck_assert_int_eq(kt_store_mig_apply_claimed(st, mig.migration_id, "a", ua,
                                                5, &applied, &lost),
                     KEYTIER_OK);
    ck_assert_uint_eq(applied, 0);
    ck_assert_uint_eq(lost, 5);
    ck_assert_uint_eq(done_count(), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(kt_store_key_get(st, tb[i].key_id, &k), KEYTIER_OK);
        ck_assert_str_eq(k.dep_id, mig.target_dep);
        ck_assert_uint_eq(k.wrapped[0], 0xbb);
    }
}
END_TEST

START_TEST(an_unexpired_claim_still_commits)
{
    /* A claim no one took over is still its worker's own. */
    struct kt_mig_todo t[4];
    struct kt_mig_update u[4];
    size_t applied = 0, lost = 0;
    ck_assert_uint_eq(claim(st, "a", T0, 1000, 4, t, NULL), 4);
    updates(t, 4, 0xaa, u);
    ck_assert_int_eq(kt_store_mig_apply_claimed(st, mig.migration_id, "a", u, 4,
                                                &applied, &lost),
                     KEYTIER_OK);
    ck_assert_uint_eq(applied, 4);
    ck_assert_uint_eq(lost, 0);
    ck_assert_uint_eq(done_count(), 4);
    /* done items are never claimed again, whatever the clock */
    struct kt_mig_todo all[N_KEYS];
    ck_assert_uint_eq(claim(st, "b", T0 + 999999, 1000, N_KEYS, all, NULL),
                      N_KEYS - 4);
    for (size_t i = 0; i < N_KEYS - 4; i++)
        for (int j = 0; j < 4; j++)
            ck_assert_str_ne(all[i].key_id, t[j].key_id);
}
END_TEST

START_TEST(released_claims_are_free_at_once)
{
    struct kt_mig_todo t[N_KEYS];
    size_t released = 0, taken = 0;
    ck_assert_uint_eq(claim(st, "a", T0, 60000, 8, t, NULL), 8);
    ck_assert_int_eq(kt_store_mig_release(st, mig.migration_id, "a", &released),
                     KEYTIER_OK);
    ck_assert_uint_eq(released, 8);
    ck_assert_uint_eq(claim(st, "b", T0 + 1, 60000, N_KEYS, t, &taken), N_KEYS);
    ck_assert_uint_eq(taken, 0);
}
END_TEST

START_TEST(renewed_lease_is_kept)
{
    struct kt_mig_todo t[N_KEYS];
    size_t held = 0;
    ck_assert_uint_eq(claim(st, "a", T0, 1000, 6, t, NULL), 6);
    ck_assert_int_eq(
        kt_store_mig_renew(st, mig.migration_id, "a", T0 + 5000, &held),
        KEYTIER_OK);
    ck_assert_uint_eq(held, 6);
    ck_assert_uint_eq(claim(st, "b", T0 + 4999, 60000, N_KEYS, t, NULL),
                      N_KEYS - 6);
    ck_assert_uint_eq(claim(st, "c", T0 + 5000, 60000, N_KEYS, t, NULL), 6);
    /* a renews after c took over: it holds nothing any more */
    ck_assert_int_eq(
        kt_store_mig_renew(st, mig.migration_id, "a", T0 + 9000, &held),
        KEYTIER_OK);
    ck_assert_uint_eq(held, 0);
}
END_TEST

START_TEST(finished_once_and_only_when_all_done)
{
    struct kt_mig_todo t[N_KEYS];
    struct kt_mig_update u[N_KEYS];
    size_t applied = 0, lost = 0;
    bool finished = true;
    ck_assert_uint_eq(claim(st, "a", T0, 60000, N_KEYS - 1, t, NULL),
                      N_KEYS - 1);
    updates(t, N_KEYS - 1, 0xaa, u);
    ck_assert_int_eq(kt_store_mig_apply_claimed(st, mig.migration_id, "a", u,
                                                N_KEYS - 1, &applied, &lost),
                     KEYTIER_OK);
    ck_assert_int_eq(
        kt_store_mig_finish(st, mig.migration_id, mig.target_dep, &finished),
        KEYTIER_OK);
    ck_assert(!finished); /* one item left */
    ck_assert_uint_eq(claim(st, "b", T0, 60000, N_KEYS, t, NULL), 1);
    updates(t, 1, 0xbb, u);
    ck_assert_int_eq(kt_store_mig_apply_claimed(st, mig.migration_id, "b", u, 1,
                                                &applied, &lost),
                     KEYTIER_OK);
    ck_assert_uint_eq(done_count(), N_KEYS);
    ck_assert_int_eq(
        kt_store_mig_finish(st, mig.migration_id, mig.target_dep, &finished),
        KEYTIER_OK);
    ck_assert(finished);
    ck_assert_int_eq(
        kt_store_mig_finish(st, mig.migration_id, mig.target_dep, &finished),
        KEYTIER_OK);
    ck_assert(!finished); /* a second worker finds it finished */
    struct kt_mig_rec *list = NULL;
    size_t n = 9;
    ck_assert_int_eq(kt_store_mig_runnable(st, &list, &n), KEYTIER_OK);
    ck_assert_uint_eq(n, 0);
    free(list);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("claims");
    TCase *tc = tcase_create("claims");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, claimers_never_share_an_item_and_lose_none);
    tcase_add_test(tc, live_claims_are_skipped_expired_taken_over);
    tcase_add_test(tc, late_commit_of_a_lost_claim_writes_nothing);
    tcase_add_test(tc, an_unexpired_claim_still_commits);
    tcase_add_test(tc, released_claims_are_free_at_once);
    tcase_add_test(tc, renewed_lease_is_kept);
    tcase_add_test(tc, finished_once_and_only_when_all_done);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
