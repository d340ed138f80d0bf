/*
 * The call pool with real blocking calls: a "gated" call blocks in read(2)
 * on a pipe until the test writes to it, as a token call blocks on a
 * stopped server.  (Real stopped p11-kit servers are in tests/outage.)
 * Nothing here asserts a duration: only outcomes and the order of events.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "call_pool.h"
#include "testenv.h"

typedef struct stats {
    atomic_int runs, accepts, discards, releases;
    atomic_int discard_ok; /* discards of a successful result */
    _Atomic CK_RV last_accept;
    sem_t released, started;
} stats;

typedef struct tctx {
    stats *st;
    int gate; /* fd to read one byte from before answering, or -1 */
    CK_RV result;
    atomic_int *done; /* set when run returns, if not NULL */
    atomic_int *seen; /* run stores *peek here, if not NULL */
    atomic_int *peek;
} tctx;

static int gate_fd[2];

static void gate_setup(void)
{
    ck_assert_int_eq(pipe(gate_fd), 0);
}

static void gate_open(int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(write(gate_fd[1], "x", 1), 1);
}

static void stats_init(stats *st)
{
    atomic_init(&st->runs, 0);
    atomic_init(&st->accepts, 0);
    atomic_init(&st->discards, 0);
    atomic_init(&st->releases, 0);
    atomic_init(&st->discard_ok, 0);
    sem_init(&st->released, 0, 0);
    sem_init(&st->started, 0, 0);
}

/* Waits (bounded) for n more releases; a liveness bound, not a timing test. */
static void wait_sem(sem_t *sem, int n)
{
    for (int i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 20;
        int r;
        while ((r = sem_timedwait(sem, &ts)) != 0 && errno == EINTR)
            ;
        ck_assert_msg(r == 0, "event did not happen");
    }
}

static CK_RV t_run(void *p)
{
    tctx *c = p;
    char b;

    atomic_fetch_add(&c->st->runs, 1);
    sem_post(&c->st->started);
    if (c->gate >= 0)
        ck_assert_int_eq(read(c->gate, &b, 1), 1);
    if (c->seen)
        atomic_store(c->seen, atomic_load(c->peek));
    if (c->done)
        atomic_store(c->done, 1);
    return c->result;
}

static void t_accept(void *p, CK_RV rv)
{
    tctx *c = p;

    c->st->last_accept = rv;
    atomic_fetch_add(&c->st->accepts, 1);
}

static void t_discard(void *p, CK_RV rv)
{
    tctx *c = p;

    atomic_fetch_add(&c->st->discards, 1);
    if (rv == CKR_OK)
        atomic_fetch_add(&c->st->discard_ok, 1);
}

static void t_release(void *p)
{
    tctx *c = p;
    stats *st = c->st;

    free(c);
    atomic_fetch_add(&st->releases, 1);
    sem_post(&st->released);
}

static kt_call mk(stats *st, uint64_t token, int gated, CK_RV result)
{
    tctx *c = calloc(1, sizeof *c);

    ck_assert_ptr_nonnull(c);
    c->st = st;
    c->gate = gated ? gate_fd[0] : -1;
    c->result = result;
    return (kt_call){.name = "test",
                     .token = token,
                     .run = t_run,
                     .accept = t_accept,
                     .discard = t_discard,
                     .release = t_release,
                     .ctx = c};
}

static kt_pool *mkpool(unsigned max_workers, unsigned per_token)
{
    kt_pool_config cfg = {.max_workers = max_workers, .per_token = per_token};
    kt_pool *p = kt_pool_new(&cfg);

    ck_assert_ptr_nonnull(p);
    return p;
}

START_TEST(test_bad_config)
{
    kt_pool_config zero_workers = {0, 1}, zero_per_token = {4, 0};

    ck_assert_ptr_null(kt_pool_new(&zero_workers));
    ck_assert_ptr_null(kt_pool_new(&zero_per_token));
    ck_assert_ptr_null(kt_pool_new(NULL));
}
END_TEST

START_TEST(test_run_returns_result)
{
    kt_pool *pool = mkpool(2, 1);
    stats st;
    kt_call c;

    stats_init(&st);
    c = mk(&st, 1, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 10000), CKR_OK);
    c = mk(&st, 1, 0, CKR_PIN_INCORRECT);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 10000), CKR_PIN_INCORRECT);
    ck_assert_uint_eq(st.last_accept, CKR_PIN_INCORRECT);
    ck_assert_int_eq(st.runs, 2);
    ck_assert_int_eq(st.accepts, 2);
    ck_assert_int_eq(st.discards, 0);
    ck_assert_int_eq(st.releases, 2);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_timeout_late_result_discarded)
{
    kt_pool *pool = mkpool(2, 2);
    stats st;
    kt_call c;

    gate_setup();
    stats_init(&st);
    c = mk(&st, 7, 1, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 50), KT_CKR_TIMEOUT);
    ck_assert_int_eq(kt_ckr_classify(KT_CKR_TIMEOUT), KT_CKR_CLASS_SYSTEM);
    ck_assert_uint_eq(kt_pool_hung(pool, 7), 1);
    ck_assert_int_eq(st.accepts, 0);
    /* the token answers late: its success is undone, never delivered */
    gate_open(1);
    wait_sem(&st.released, 1);
    ck_assert_int_eq(st.discard_ok, 1);
    ck_assert_int_eq(st.accepts, 0);
    ck_assert_uint_eq(kt_pool_hung(pool, 7), 0);
    kt_pool_free(pool);
}
END_TEST

/* A posted call (module scans) runs without a waiter; the
 * worker hands its result to accept, then releases it; it counts toward
 * its token's running calls like any other, and is never discarded. */
static _Thread_local int on_worker_seen;

static CK_RV t_run_worker(void *p)
{
    on_worker_seen = kt_pool_on_worker() ? 1 : -1;
    return t_run(p);
}

static void t_accept_worker(void *p, CK_RV rv)
{
    tctx *c = p;

    ck_assert_int_eq(on_worker_seen, 1); /* same thread as run */
    t_accept(c, rv);
}

static CK_RV t_run_slow(void *p)
{
    CK_RV rv = t_run(p);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};

    nanosleep(&ts, NULL);
    return rv;
}

/* A worker still returning from a call that nobody abandoned (the context's
 * close job, say) is waited for and joined: once kt_pool_free returns no
 * worker of the pool is left to tear down its thread state (OpenSSL's)
 * while a process that exits right after runs its exit handlers (CI saw a
 * double free in OPENSSL_cleanup from exactly that). */
START_TEST(test_free_joins_returning_worker)
{
    kt_pool *pool = mkpool(2, 1);
    stats st;
    kt_call c;

    stats_init(&st);
    c = mk(&st, 5, 0, CKR_OK);
    c.run = t_run_slow;
    ck_assert_uint_eq(kt_pool_post(pool, &c), CKR_OK);
    wait_sem(&st.started, 1);
    int during = testenv_thread_count(); /* the worker, inside its call */
    kt_pool_free(pool);
    ck_assert_int_eq(st.releases, 1);
    ck_assert_int_eq(testenv_thread_count(), during - 1);
}
END_TEST

START_TEST(test_post_runs_without_waiter)
{
    kt_pool *pool = mkpool(2, 1);
    stats st;
    kt_call c;

    gate_setup();
    stats_init(&st);
    ck_assert(!kt_pool_on_worker());
    c = mk(&st, 3, 1, CKR_DEVICE_ERROR);
    c.run = t_run_worker;
    c.accept = t_accept_worker;
    ck_assert_uint_eq(kt_pool_post(pool, &c), CKR_OK);
    wait_sem(&st.started, 1);
    ck_assert_int_eq(st.accepts, 0);
    /* its token's one slot is taken: a call of it waits in the queue */
    c = mk(&st, 3, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 50), KT_CKR_TIMEOUT);
    gate_open(1);
    wait_sem(&st.released, 2);
    ck_assert_int_eq(st.accepts, 1);
    ck_assert_uint_eq(st.last_accept, CKR_DEVICE_ERROR);
    ck_assert_int_eq(st.discards, 0);
    ck_assert_int_eq(st.runs, 1);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hung_token_bounded)
{
    kt_pool *pool = mkpool(3, 2);
    stats st, other;
    kt_call c;

    gate_setup();
    stats_init(&st);
    stats_init(&other);
    for (int i = 0; i < 2; i++) {
        c = mk(&st, 1, 1, CKR_OK);
        /* long enough for a worker to take the call on a loaded machine:
         * a call that times out still queued is not a hung one */
        ck_assert_uint_eq(kt_pool_run(pool, &c, 500), KT_CKR_TIMEOUT);
    }
    ck_assert_uint_eq(kt_pool_hung(pool, 1), 2);
    /* token 1 has per_token hung calls: refused without a worker */
    c = mk(&st, 1, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 10000), KT_CKR_TOKEN_HUNG);
    ck_assert_int_eq(st.runs, 2);
    ck_assert_int_eq(st.releases, 1);
    /* another token still gets a worker */
    c = mk(&other, 2, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 10000), CKR_OK);
    ck_assert_int_eq(other.runs, 1);
    /* the token recovers: hung calls finish, token 1 is usable again */
    gate_open(2);
    wait_sem(&st.released, 3);
    ck_assert_uint_eq(kt_pool_hung(pool, 1), 0);
    ck_assert_int_eq(st.discard_ok, 2);
    c = mk(&st, 1, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 10000), CKR_OK);
    kt_pool_free(pool);
}
END_TEST

typedef struct bg_run {
    kt_pool *pool;
    kt_call call;
    unsigned deadline_ms;
    CK_RV rv;
} bg_run;

static void *bg_main(void *p)
{
    bg_run *b = p;

    b->rv = kt_pool_run(b->pool, &b->call, b->deadline_ms);
    return NULL;
}

START_TEST(test_queued_past_deadline_never_runs)
{
    kt_pool *pool = mkpool(4, 1);
    stats st, queued;
    bg_run bg;
    pthread_t th;
    kt_call c;

    gate_setup();
    stats_init(&st);
    stats_init(&queued);
    bg = (bg_run){
        .pool = pool, .call = mk(&st, 5, 1, CKR_OK), .deadline_ms = 60000};
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &bg), 0);
    wait_sem(&st.started, 1);
    /* token 5's only slot is busy: this call waits in the queue, its
     * deadline passes there and it is dropped without ever running */
    c = mk(&queued, 5, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 30), KT_CKR_TIMEOUT);
    ck_assert_int_eq(queued.runs, 0);
    ck_assert_int_eq(queued.discards, 0);
    ck_assert_int_eq(queued.releases, 1);
    ck_assert_uint_eq(kt_pool_hung(pool, 5), 0);
    gate_open(1);
    pthread_join(th, NULL);
    ck_assert_uint_eq(bg.rv, CKR_OK);
    ck_assert_int_eq(st.accepts, 1);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hedge_first_answers)
{
    kt_pool *pool = mkpool(4, 2);
    stats a, b;
    kt_call calls[2];
    CK_RV rv[2];
    int winner;

    stats_init(&a);
    stats_init(&b);
    calls[0] = mk(&a, 1, 0, CKR_OK);
    calls[1] = mk(&b, 2, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_hedge(pool, calls, 3600000, 10000, &winner, rv),
                      CKR_OK);
    ck_assert_int_eq(winner, 0);
    ck_assert_uint_eq(rv[1], KT_CKR_NOT_STARTED);
    ck_assert_int_eq(a.accepts, 1);
    ck_assert_int_eq(b.runs, 0);
    ck_assert_int_eq(b.releases, 1);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hedge_first_hung_second_wins)
{
    kt_pool *pool = mkpool(4, 2);
    stats a, b;
    kt_call calls[2];
    CK_RV rv[2];
    int winner;

    gate_setup();
    stats_init(&a);
    stats_init(&b);
    calls[0] = mk(&a, 1, 1, CKR_OK);
    calls[1] = mk(&b, 2, 0, CKR_OK);
    ck_assert_uint_eq(kt_pool_hedge(pool, calls, 20, 60000, &winner, rv),
                      CKR_OK);
    ck_assert_int_eq(winner, 1);
    ck_assert_int_eq(b.accepts, 1);
    ck_assert_int_eq(a.accepts, 0);
    /* the loser answers later: discarded, never accepted */
    gate_open(1);
    wait_sem(&a.released, 1);
    ck_assert_int_eq(a.discard_ok, 1);
    ck_assert_int_eq(a.accepts, 0);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hedge_failure_starts_second_at_once)
{
    kt_pool *pool = mkpool(4, 2);
    stats a, b;
    kt_call calls[2];
    CK_RV rv[2];
    int winner;
    atomic_int a_done = 0, b_saw_a_done = 0;

    stats_init(&a);
    stats_init(&b);
    calls[0] = mk(&a, 1, 0, CKR_DEVICE_ERROR);
    calls[1] = mk(&b, 2, 0, CKR_OK);
    ((tctx *)calls[0].ctx)->done = &a_done;
    ((tctx *)calls[1].ctx)->seen = &b_saw_a_done;
    ((tctx *)calls[1].ctx)->peek = &a_done;
    /* an hour of hedge offset: B can only have started because A failed */
    ck_assert_uint_eq(kt_pool_hedge(pool, calls, 3600000, 60000, &winner, rv),
                      CKR_OK);
    ck_assert_int_eq(winner, 1);
    ck_assert_uint_eq(rv[0], CKR_DEVICE_ERROR);
    ck_assert_int_eq(b_saw_a_done, 1);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hedge_both_fail)
{
    kt_pool *pool = mkpool(4, 2);
    stats a, b;
    kt_call calls[2];
    CK_RV rv[2];
    int winner;

    stats_init(&a);
    stats_init(&b);
    calls[0] = mk(&a, 1, 0, CKR_PIN_INCORRECT);
    calls[1] = mk(&b, 2, 0, CKR_KEY_HANDLE_INVALID);
    ck_assert_uint_eq(kt_pool_hedge(pool, calls, 10, 60000, &winner, rv),
                      CKR_PIN_INCORRECT);
    ck_assert_int_eq(winner, -1);
    ck_assert_uint_eq(rv[0], CKR_PIN_INCORRECT);
    ck_assert_uint_eq(rv[1], CKR_KEY_HANDLE_INVALID);
    ck_assert_int_eq(a.releases + b.releases, 2);
    ck_assert_int_eq(a.discards + b.discards, 0);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hedge_both_hung)
{
    kt_pool *pool = mkpool(4, 2);
    stats st;
    kt_call calls[2];
    CK_RV rv[2];
    int winner;

    gate_setup();
    stats_init(&st);
    calls[0] = mk(&st, 1, 1, CKR_OK);
    calls[1] = mk(&st, 2, 1, CKR_OK);
    ck_assert_uint_eq(kt_pool_hedge(pool, calls, 10, 40, &winner, rv),
                      KT_CKR_TIMEOUT);
    ck_assert_int_eq(winner, -1);
    ck_assert_uint_eq(rv[0], KT_CKR_TIMEOUT);
    ck_assert_uint_eq(rv[1], KT_CKR_TIMEOUT);
    ck_assert_uint_eq(kt_pool_hung(pool, 1), 1);
    ck_assert_uint_eq(kt_pool_hung(pool, 2), 1);
    gate_open(2);
    wait_sem(&st.released, 2);
    ck_assert_int_eq(st.discard_ok, 2);
    ck_assert_int_eq(st.accepts, 0);
    kt_pool_free(pool);
}
END_TEST

START_TEST(test_hedge_both_succeed_loser_discarded)
{
    kt_pool *pool = mkpool(4, 2);
    stats a, b;
    kt_call calls[2];
    CK_RV rv[2];
    int winner;
    int b_gate[2];

    gate_setup();
    ck_assert_int_eq(pipe(b_gate), 0);
    stats_init(&a);
    stats_init(&b);
    calls[0] = mk(&a, 1, 1, CKR_OK);
    calls[1] = mk(&b, 2, 1, CKR_OK);
    ((tctx *)calls[1].ctx)->gate = b_gate[0];
    ck_assert_int_eq(write(b_gate[1], "x", 1), 1);
    ck_assert_uint_eq(kt_pool_hedge(pool, calls, 0, 60000, &winner, rv),
                      CKR_OK);
    ck_assert_int_eq(winner, 1);
    gate_open(1);
    wait_sem(&a.released, 1);
    ck_assert_int_eq(a.discard_ok, 1);
    ck_assert_int_eq(a.accepts + b.discards, 0);
    ck_assert_int_eq(b.accepts, 1);
    kt_pool_free(pool);
}
END_TEST

/* A write to a dead peer (what p11-kit-client does when its server died)
 * raises SIGPIPE on the worker: the process must survive and the call fail
 * with its own error. */
static CK_RV write_dead_pipe(void *p)
{
    int fd[2];
    ssize_t w;

    (void)p;
    ck_assert_int_eq(pipe(fd), 0);
    close(fd[0]);
    w = write(fd[1], "x", 1);
    close(fd[1]);
    return w < 0 && errno == EPIPE ? CKR_DEVICE_REMOVED : CKR_OK;
}

START_TEST(test_sigpipe_on_worker)
{
    kt_pool *pool = mkpool(2, 1);
    kt_call c = {.name = "dead peer", .token = 1, .run = write_dead_pipe};

    ck_assert_uint_eq(kt_pool_run(pool, &c, 60000), CKR_DEVICE_REMOVED);
    ck_assert_uint_eq(kt_pool_run(pool, &c, 60000), CKR_DEVICE_REMOVED);
    kt_pool_free(pool);
}
END_TEST

typedef struct many_arg {
    kt_pool *pool;
    stats *st;
    int id;
} many_arg;

static void *many_main(void *p)
{
    many_arg *m = p;

    for (int i = 0; i < 500; i++) {
        kt_call c =
            mk(m->st, (uint64_t)(i % 3), 0, i % 2 ? CKR_OK : CKR_DEVICE_ERROR);
        CK_RV rv = kt_pool_run(m->pool, &c, 60000);
        ck_assert_uint_eq(rv, i % 2 ? CKR_OK : CKR_DEVICE_ERROR);
    }
    return NULL;
}

START_TEST(test_many_threads)
{
    kt_pool *pool = mkpool(3, 2);
    stats st;
    pthread_t th[6];
    many_arg args[6];

    stats_init(&st);
    for (int i = 0; i < 6; i++) {
        args[i] = (many_arg){pool, &st, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, many_main, &args[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(st.runs, 3000);
    ck_assert_int_eq(st.accepts, 3000);
    ck_assert_int_eq(st.releases, 3000);
    ck_assert_int_eq(st.discards, 0);
    kt_pool_free(pool);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("call_pool");
    TCase *tc = tcase_create("pool");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bad_config);
    tcase_add_test(tc, test_run_returns_result);
    tcase_add_test(tc, test_timeout_late_result_discarded);
    tcase_add_test(tc, test_hung_token_bounded);
    tcase_add_test(tc, test_queued_past_deadline_never_runs);
    tcase_add_test(tc, test_hedge_first_answers);
    tcase_add_test(tc, test_hedge_first_hung_second_wins);
    tcase_add_test(tc, test_hedge_failure_starts_second_at_once);
    tcase_add_test(tc, test_hedge_both_fail);
    tcase_add_test(tc, test_hedge_both_hung);
    tcase_add_test(tc, test_hedge_both_succeed_loser_discarded);
    tcase_add_test(tc, test_many_threads);
    tcase_add_test(tc, test_sigpipe_on_worker);
    tcase_add_test(tc, test_post_runs_without_waiter);
    tcase_add_test(tc, test_free_joins_returning_worker);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
