/*
 * The end of a context's token side.  PKCS#11 calls cannot be cancelled: a
 * call past its deadline keeps its worker until the token answers, and
 * uses the modules, tokens, sessions, logger and PIN configuration of the
 * context.  The context counts such calls (ctx->calls, kt_lib.h); its end
 * does not wait for the starts and scans of modules marked hung
 * (kt_tokens_hung_calls: a CLI command that met a frozen vault exits
 * without waiting for it again) and gives the others one more call
 * deadline; if some are still running it returns anyway and the
 * last of them ends the context (closing sessions, C_Finalize, then the
 * memory).  Otherwise those token calls run on a
 * worker and the end waits for them at most one more call deadline.  A
 * token that never answers keeps the context (and a worker thread) until
 * the process exits: a deliberate, bounded leak (one context's modules,
 * tokens and log), logged, in exchange for a close that never hangs.
 *
 * A process that exits while such a call is returning races with the exit
 * handlers of p11-kit and the modules (which tear down what the returning
 * call still uses); nothing here can order that.  Exiting while the call
 * is still blocked is harmless.
 *
 * What the opener made besides the tokens (the availability state, the
 * log, the configuration, ctx itself) is freed through the free_rest it
 * gave to kt_ctx_init_calls: this layer never names its caller.
 */
#include <stdlib.h>
#include <time.h>

#include "call_pool.h"
#include "kt_lib.h"
#include "token.h"

/* The memory, once no token job is left and the modules are finalized. */
static void kt_ctx_free(keytier_ctx *ctx)
{
    kt_tokens_free(ctx);
    kt_calls_destroy(&ctx->calls);
    ctx->free_rest(ctx);
}

/* Token calls, then memory: on the caller's thread or on the worker of
 * the last late job (kt_calls_release). */
static void kt_ctx_finish(void *arg)
{
    keytier_ctx *ctx = arg;

    kt_tokens_finalize(ctx);
    kt_ctx_free(ctx);
}

/* Under the count's lock, while ctx is still the closer's. */
static void kt_ctx_hung(void *arg)
{
    keytier_ctx *ctx = arg;

    kt_log_event(ctx->log, KT_LOG_WARNING,
                 "context closed with token calls hung past their "
                 "deadline; its modules and tokens are released when "
                 "they return",
                 "close");
}

void kt_ctx_init_calls(keytier_ctx *ctx, void (*free_rest)(keytier_ctx *ctx))
{
    kt_calls_init(&ctx->calls, kt_ctx_finish, ctx);
    ctx->free_rest = free_rest;
}

/* The wait object of a bounded finish: shared by the closer and the
 * worker, counted; whichever learns it is the last frees the context. */
struct kt_finish_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;    /* the token calls ended; the closer frees */
    bool gave_up; /* the closer left; the worker frees */
    atomic_uint refs;
};

struct kt_finish_job {
    keytier_ctx *ctx;
    struct kt_finish_wait *w;
};

static void kt_finish_wait_put(struct kt_finish_wait *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static KT_NODISCARD CK_RV kt_finish_job_run(void *p)
{
    struct kt_finish_job *j = p;
    bool free_here;

    kt_tokens_finalize(j->ctx);
    pthread_mutex_lock(&j->w->mu);
    free_here = j->w->gave_up;
    j->w->done = !free_here;
    pthread_cond_broadcast(&j->w->cv);
    pthread_mutex_unlock(&j->w->mu);
    if (free_here)
        kt_ctx_free(j->ctx); /* releases the pool this worker belongs to */
    j->ctx = NULL;
    return CKR_OK;
}

static void kt_finish_job_release(void *p)
{
    struct kt_finish_job *j = p;

    kt_finish_wait_put(j->w);
    free(j);
}

/* A wait shared by the closer and the job (two references), or NULL. */
static struct kt_finish_wait *kt_finish_wait_new(void)
{
    struct kt_finish_wait *w = calloc(1, sizeof *w);
    pthread_condattr_t attr;

    if (w == NULL)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&w->refs, 2);
    return w;
}

/*
 * The last step of a close: closing idle sessions and C_Finalize are token
 * calls too (a frozen vault hangs them), so they run on a worker while the
 * closing thread waits at most the call deadline.  If they end in time
 * the closing thread frees the memory itself, after the pool's idle
 * workers (this one included) have left: a process that exits right after
 * close then races no thread of ours.  Otherwise the worker frees it.
 * False if that could not be started (then nothing was done).
 */
static bool kt_ctx_finish_bounded(keytier_ctx *ctx)
{
    struct kt_finish_wait *w = NULL;
    struct kt_finish_job *j = calloc(1, sizeof *j);
    struct timespec ts;
    bool done;

    if (j == NULL || ctx->pool == NULL || (w = kt_finish_wait_new()) == NULL) {
        free(j);
        return false;
    }
    j->ctx = ctx;
    j->w = w;
    kt_call call = {.name = "close",
                    .token = (uint64_t)(uintptr_t)ctx,
                    .run = kt_finish_job_run,
                    .release = kt_finish_job_release,
                    .ctx = j};
    kt_deadline_ts(&ts, kt_call_deadline_ms(ctx));
    if (kt_pool_post(ctx->pool, &call) != CKR_OK) {
        /* refused: the job was released (its reference to w with it) */
        kt_finish_wait_put(w);
        return false;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
        ;
    done = w->done;
    w->gave_up = !done;
    pthread_mutex_unlock(&w->mu);
    kt_finish_wait_put(w);
    if (done)
        kt_ctx_free(ctx); /* ctx is the worker's otherwise */
    return true;
}

static unsigned kt_ctx_late(void *arg)
{
    return kt_tokens_hung_calls(arg);
}

void kt_ctx_drain(keytier_ctx *ctx)
{
    if (!kt_calls_drain(&ctx->calls, kt_call_deadline_ms(ctx), kt_ctx_late,
                        kt_ctx_hung))
        return; /* ctx belongs to the hung calls now */
    if (!kt_ctx_finish_bounded(ctx))
        kt_ctx_finish(ctx);
}
