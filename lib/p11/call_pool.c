/*
 * Worker pool for token calls with deadlines (see call_pool.h).  One mutex
 * guards the queue, the job states and the per-token counts; it is never
 * held across a token call.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/crypto.h>

#include "call_pool.h"
#include "kt_base.h"

enum kt_job_state { KT_JOB_QUEUED, KT_JOB_RUNNING, KT_JOB_DONE };

typedef struct kt_waiter {
    pthread_cond_t cond;
} kt_waiter;

typedef struct kt_tok {
    uint64_t token;
    unsigned running; /* calls of this token on a worker now */
    unsigned hung;    /* of those, abandoned by their caller */
    unsigned refs;    /* jobs (queued, running) that point here */
    struct kt_tok *next;
} kt_tok;

typedef struct kt_job {
    kt_call call;
    kt_tok *tok;
    enum kt_job_state state;
    bool abandoned; /* the caller left: the worker discards and releases */
    bool posted;    /* kt_pool_post: nobody waits; the worker takes it */
    CK_RV rv;
    kt_waiter *waiter; /* signalled when the job is done */
    struct kt_job *next;
} kt_job;

struct kt_pool {
    pthread_mutex_t lock;
    pthread_cond_t work; /* idle workers wait here */
    pthread_cond_t gone; /* a worker has left (kt_pool_free waits) */
    kt_pool_config config;
    kt_job *head, *tail; /* queued jobs, oldest first */
    kt_tok *toks;
    unsigned threads, idle;
    /* Workers are joinable: kt_pool_free joins those that leave while it
     * waits (their thread teardown included); later ones detach. */
    pthread_t *exited;
    unsigned n_exited;
    bool joined;
    unsigned refs; /* the owner + one per worker thread */
    bool stopping;
};

/* A condition whose timed waits use the monotonic clock. */
static void kt_waiter_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void kt_waiter_init(kt_waiter *w)
{
    kt_waiter_cond_init(&w->cond);
}

/* Waits on cond until signalled or the monotonic time until_ns. */
static void kt_cond_wait_until(kt_pool *pool, pthread_cond_t *cond,
                               uint64_t until_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(until_ns / 1000000000u),
                          .tv_nsec = (long)(until_ns % 1000000000u)};

    pthread_cond_timedwait(cond, &pool->lock, &ts);
}

static void kt_waiter_wait(kt_pool *pool, kt_waiter *w, uint64_t until_ns)
{
    kt_cond_wait_until(pool, &w->cond, until_ns);
}

static void kt_pool_destroy(kt_pool *pool)
{
    while (pool->toks) {
        kt_tok *t = pool->toks;
        pool->toks = t->next;
        free(t);
    }
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->gone);
    pthread_mutex_destroy(&pool->lock);
    free(pool->exited);
    free(pool);
}

/* Workers inside an abandoned call, all tokens.  Under lock. */
static unsigned kt_pool_hung_all(const kt_pool *pool)
{
    unsigned n = 0;

    for (const kt_tok *t = pool->toks; t; t = t->next)
        n += t->hung;
    return n;
}

static kt_tok *kt_tok_get(kt_pool *pool, uint64_t token)
{
    kt_tok *t;

    for (t = pool->toks; t; t = t->next)
        if (t->token == token)
            return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->token = token;
    t->next = pool->toks;
    pool->toks = t;
    return t;
}

static void kt_tok_put(kt_pool *pool, kt_tok *tok)
{
    kt_tok **pp;

    if (--tok->refs)
        return;
    for (pp = &pool->toks; *pp != tok; pp = &(*pp)->next)
        ;
    *pp = tok->next;
    free(tok);
}

/* The oldest queued job whose token has a free slot, unlinked. */
static kt_job *kt_queue_take(kt_pool *pool)
{
    kt_job *prev = NULL;

    for (kt_job *j = pool->head; j; prev = j, j = j->next) {
        if (j->tok->running >= pool->config.per_token)
            continue;
        if (prev)
            prev->next = j->next;
        else
            pool->head = j->next;
        if (pool->tail == j)
            pool->tail = prev;
        j->next = NULL;
        return j;
    }
    return NULL;
}

static void kt_queue_remove(kt_pool *pool, kt_job *job)
{
    kt_job *prev = NULL;

    for (kt_job *j = pool->head; j; prev = j, j = j->next) {
        if (j != job)
            continue;
        if (prev)
            prev->next = j->next;
        else
            pool->head = j->next;
        if (pool->tail == j)
            pool->tail = prev;
        j->next = NULL;
        return;
    }
}

static void kt_job_release(kt_job *job)
{
    if (job->call.release)
        job->call.release(job->call.ctx);
    free(job);
}

static void kt_job_discard(kt_job *job)
{
    if (job->call.discard)
        job->call.discard(job->call.ctx, job->rv);
    kt_job_release(job);
}

/* A token reached over a socket (p11-kit-client) whose server died makes
 * the next write raise SIGPIPE, which would kill the whole process: on a
 * worker it stays blocked (the call then fails with the token's error) and
 * is consumed after each call. */
static void kt_worker_block_sigpipe(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void kt_worker_drain_sigpipe(const sigset_t *set)
{
    struct timespec zero = {0, 0};
    sigset_t pending;

    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE))
        sigtimedwait(set, NULL, &zero);
}

/* Code that runs on a worker must not wait for another job of the pool
 * (all workers could end up waiting for jobs no worker is free to run). */
static _Thread_local kt_pool *kt_on_worker; /* the pool of this worker */

bool kt_pool_on_worker(void)
{
    return kt_on_worker != NULL;
}

static void kt_job_take(kt_job *job);

static void *kt_worker_main(void *arg)
{
    kt_pool *pool = arg;
    sigset_t pipe_set;
    bool last;

    kt_on_worker = pool;
    kt_worker_block_sigpipe(&pipe_set);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        kt_job *job = kt_queue_take(pool);

        if (!job) {
            if (pool->stopping)
                break;
            pool->idle++;
            pthread_cond_wait(&pool->work, &pool->lock);
            pool->idle--;
            continue;
        }
        job->state = KT_JOB_RUNNING;
        job->tok->running++;
        pthread_mutex_unlock(&pool->lock);

        CK_RV rv = job->call.run(job->call.ctx);
        kt_worker_drain_sigpipe(&pipe_set);

        pthread_mutex_lock(&pool->lock);
        job->rv = rv;
        job->state = KT_JOB_DONE;
        job->tok->running--;
        if (job->abandoned)
            job->tok->hung--;
        kt_tok_put(pool, job->tok);
        job->tok = NULL;
        if (job->abandoned) {
            /* The caller is gone: drop the late result here, unlocked, as
             * discard may make another call to the same token. */
            pthread_mutex_unlock(&pool->lock);
            kt_job_discard(job);
            pthread_mutex_lock(&pool->lock);
        } else if (job->posted) {
            /* Nobody waits: the worker hands the result over itself. */
            pthread_mutex_unlock(&pool->lock);
            kt_job_take(job);
            pthread_mutex_lock(&pool->lock);
        } else {
            pthread_cond_signal(&job->waiter->cond);
        }
        /* A slot of this token is free again: a queued job may run now. */
        if (pool->head && pool->idle)
            pthread_cond_signal(&pool->work);
    }
    /* OpenSSL's per-thread state (used by the calls: HKDF, the modules)
     * is freed here, not by the thread-exit destructor: that one may run
     * while the process exits and OPENSSL_cleanup frees the same state. */
    pthread_mutex_unlock(&pool->lock);
    OPENSSL_thread_stop();
    pthread_mutex_lock(&pool->lock);
    pool->threads--;
    if (pool->joined || pool->n_exited == pool->config.max_workers)
        pthread_detach(pthread_self());
    else
        pool->exited[pool->n_exited++] = pthread_self();
    pthread_cond_broadcast(&pool->gone);
    last = --pool->refs == 0;
    pthread_mutex_unlock(&pool->lock);
    if (last)
        kt_pool_destroy(pool);
    return NULL;
}

kt_pool *kt_pool_new(const kt_pool_config *config)
{
    kt_pool *pool;

    if (!config || config->max_workers == 0 || config->per_token == 0)
        return NULL;
    pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->exited = calloc(config->max_workers, sizeof *pool->exited);
    if (!pool->exited) {
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    kt_waiter_cond_init(&pool->gone);
    pool->config = *config;
    pool->refs = 1;
    return pool;
}

void kt_pool_free(kt_pool *pool)
{
    bool last;

    if (!pool)
        return;
    unsigned wait_ms =
        pool->config.free_wait_ms ? pool->config.free_wait_ms : 1000;
    uint64_t until = kt_now_ns() + (uint64_t)wait_ms * 1000000u;

    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    /* Idle workers leave at once, and a worker that is just returning
     * from a call (the one that ran the context's close job, say) a moment
     * later: wait for them and join them, so that their thread teardown
     * (OPENSSL_thread_stop, other libraries' thread-exit destructors) is
     * over before a process that exits right after runs its exit handlers;
     * OpenSSL's OPENSSL_cleanup frees the same per-thread state without a
     * lock, and the race shows as a double free or leaks.  Workers inside
     * an abandoned call may never return: they leave later, detached. */
    while (pool->threads > kt_pool_hung_all(pool) + (kt_on_worker == pool) &&
           kt_now_ns() < until)
        kt_cond_wait_until(pool, &pool->gone, until);
    unsigned n = pool->n_exited;
    pool->joined = true; /* exited[] is not written any more */
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(pool->exited[i], NULL);
    pthread_mutex_lock(&pool->lock);
    last = --pool->refs == 0;
    pthread_mutex_unlock(&pool->lock);
    if (last)
        kt_pool_destroy(pool);
}

/* Starts a worker if none is idle and the pool may grow.  Under lock. */
static void kt_pool_wake(kt_pool *pool)
{
    pthread_t thread;
    pthread_attr_t attr;

    if (pool->idle) {
        pthread_cond_signal(&pool->work);
        return;
    }
    if (pool->threads >= pool->config.max_workers)
        return; /* a busy worker takes the job when it finishes */
    pthread_attr_init(&attr);
    /* joinable: kt_pool_free joins or the worker detaches itself */
    if (pthread_create(&thread, &attr, kt_worker_main, pool) == 0) {
        pool->threads++;
        pool->refs++;
    }
    pthread_attr_destroy(&attr);
}

/*
 * Queues call for waiter.  Under lock.  On refusal returns NULL with *rv
 * set and has released the call's ctx.
 */
static kt_job *kt_job_submit(kt_pool *pool, const kt_call *call,
                             kt_waiter *waiter, CK_RV *rv)
{
    kt_tok *tok = kt_tok_get(pool, call->token);
    kt_job *job = NULL;

    *rv = CKR_HOST_MEMORY;
    if (tok && tok->hung >= pool->config.per_token)
        *rv = KT_CKR_TOKEN_HUNG;
    else if (tok)
        job = calloc(1, sizeof *job);
    if (!job) {
        if (tok && tok->refs == 0) {
            tok->refs = 1;
            kt_tok_put(pool, tok);
        }
        if (call->release)
            call->release(call->ctx);
        return NULL;
    }
    tok->refs++;
    job->call = *call;
    job->tok = tok;
    job->state = KT_JOB_QUEUED;
    job->waiter = waiter;
    if (pool->tail)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    kt_pool_wake(pool);
    return job;
}

/*
 * The caller gives up on job (deadline passed or the partner won).  Under
 * lock.  Returns true if the job was already done (the caller must then
 * discard it itself, outside the lock).
 */
static bool kt_job_abandon(kt_pool *pool, kt_job *job)
{
    switch (job->state) {
    case KT_JOB_DONE:
        return true;
    case KT_JOB_QUEUED:
        /* Never started: nothing to undo. */
        kt_queue_remove(pool, job);
        kt_tok_put(pool, job->tok);
        job->rv = KT_CKR_NOT_STARTED;
        return true;
    case KT_JOB_RUNNING:
        break;
    }
    job->abandoned = true;
    job->waiter = NULL;
    job->tok->hung++;
    return false;
}

/* Hands a finished job's result (job->rv, read before) to the caller.
 * Outside the lock. */
static void kt_job_take(kt_job *job)
{
    if (job->call.accept)
        job->call.accept(job->call.ctx, job->rv);
    kt_job_release(job);
}

CK_RV kt_pool_run(kt_pool *pool, const kt_call *call, unsigned deadline_ms)
{
    uint64_t deadline = kt_now_ns() + (uint64_t)deadline_ms * 1000000u;
    kt_waiter waiter;
    kt_job *job;
    CK_RV rv;
    bool done;

    kt_waiter_init(&waiter);
    pthread_mutex_lock(&pool->lock);
    job = kt_job_submit(pool, call, &waiter, &rv);
    if (!job) {
        pthread_mutex_unlock(&pool->lock);
        goto out;
    }
    while (job->state != KT_JOB_DONE && kt_now_ns() < deadline)
        kt_waiter_wait(pool, &waiter, deadline);
    done = job->state == KT_JOB_DONE;
    if (!done && kt_job_abandon(pool, job)) {
        /* Never started: release it without discarding anything. */
        pthread_mutex_unlock(&pool->lock);
        kt_job_release(job);
        rv = KT_CKR_TIMEOUT;
        goto out;
    }
    pthread_mutex_unlock(&pool->lock);
    rv = done ? job->rv : KT_CKR_TIMEOUT;
    if (done)
        kt_job_take(job);
out:
    pthread_cond_destroy(&waiter.cond);
    return rv;
}

typedef struct kt_leg {
    kt_job *job; /* NULL before start and after it is settled */
    uint64_t deadline;
    bool started, settled;
    CK_RV rv;
} kt_leg;

/* Settles a leg whose job is done or past its deadline.  Under lock; may
 * unlock around callbacks.  Returns true if it succeeded and was taken. */
static bool kt_leg_settle(kt_pool *pool, kt_leg *leg, bool take)
{
    kt_job *job = leg->job;
    bool done = job->state == KT_JOB_DONE;

    leg->job = NULL;
    leg->settled = true;
    if (!done) {
        /* Past its deadline (or lost the race): a queued job is released
         * now, a running one by its worker when the token answers. */
        if (kt_job_abandon(pool, job)) {
            pthread_mutex_unlock(&pool->lock);
            kt_job_release(job);
            pthread_mutex_lock(&pool->lock);
        }
        leg->rv = KT_CKR_TIMEOUT;
        return false;
    }
    leg->rv = job->rv;
    pthread_mutex_unlock(&pool->lock);
    if (take && job->rv == CKR_OK)
        kt_job_take(job);
    else if (job->rv == CKR_OK)
        kt_job_discard(job); /* a success nobody wants */
    else
        kt_job_take(job); /* a failure: the caller may want its details */
    pthread_mutex_lock(&pool->lock);
    return take && leg->rv == CKR_OK;
}

static void kt_leg_start(kt_pool *pool, kt_leg *leg, const kt_call *call,
                         kt_waiter *waiter, unsigned deadline_ms)
{
    leg->started = true;
    leg->deadline = kt_now_ns() + (uint64_t)deadline_ms * 1000000u;
    leg->job = kt_job_submit(pool, call, waiter, &leg->rv);
    if (!leg->job)
        leg->settled = true;
}

CK_RV kt_pool_hedge(kt_pool *pool, const kt_call calls[2], unsigned hedge_ms,
                    unsigned deadline_ms, int *winner, CK_RV rv[2])
{
    kt_leg leg[2] = {{.rv = KT_CKR_NOT_STARTED}, {.rv = KT_CKR_NOT_STARTED}};
    uint64_t hedge_at = kt_now_ns() + (uint64_t)hedge_ms * 1000000u;
    kt_waiter waiter;
    int won = -1;

    kt_waiter_init(&waiter);
    pthread_mutex_lock(&pool->lock);
    kt_leg_start(pool, &leg[0], &calls[0], &waiter, deadline_ms);
    for (;;) {
        uint64_t now = kt_now_ns(), wake = UINT64_MAX;

        for (int i = 0; i < 2 && won < 0; i++) {
            kt_leg *l = &leg[i];
            if (!l->job || (l->job->state != KT_JOB_DONE && now < l->deadline))
                continue;
            if (kt_leg_settle(pool, l, true))
                won = i;
        }
        if (won >= 0)
            break;
        /* calls[1] starts once calls[0] failed or the offset passed. */
        if (!leg[1].started && (leg[0].settled || now >= hedge_at)) {
            kt_leg_start(pool, &leg[1], &calls[1], &waiter, deadline_ms);
            continue;
        }
        if (leg[0].settled && leg[1].settled)
            break;
        if (!leg[1].started && hedge_at < wake)
            wake = hedge_at;
        for (int i = 0; i < 2; i++)
            if (leg[i].job && leg[i].deadline < wake)
                wake = leg[i].deadline;
        kt_waiter_wait(pool, &waiter, wake);
    }
    /* The loser: abandon it if pending, discard it if it succeeded too. */
    for (int i = 0; i < 2; i++)
        if (leg[i].job)
            kt_leg_settle(pool, &leg[i], false);
    pthread_mutex_unlock(&pool->lock);
    if (!leg[1].started && calls[1].release)
        calls[1].release(calls[1].ctx);
    pthread_cond_destroy(&waiter.cond);
    rv[0] = leg[0].rv;
    rv[1] = leg[1].rv;
    if (won >= 0) {
        *winner = won;
        return CKR_OK;
    }
    *winner = -1;
    return rv[0];
}

CK_RV kt_pool_post(kt_pool *pool, const kt_call *call)
{
    kt_job *job;
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&pool->lock);
    job = kt_job_submit(pool, call, NULL, &rv);
    if (job)
        job->posted = true;
    pthread_mutex_unlock(&pool->lock);
    return job ? CKR_OK : rv;
}

unsigned kt_pool_hung(kt_pool *pool, uint64_t token)
{
    unsigned n = 0;

    pthread_mutex_lock(&pool->lock);
    for (kt_tok *t = pool->toks; t; t = t->next)
        if (t->token == token)
            n = t->hung;
    pthread_mutex_unlock(&pool->lock);
    return n;
}
