/* The library context: configuration, logger, modules, store. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "call_pool.h"
#include "kt_lib.h"

/* Everything a token job may touch: modules, tokens and their sessions,
 * the logger and the configuration (PIN sources).  Runs once no token job
 * is left and the modules are finalized (kt_ctx_finish). */
static void kt_ctx_free(keytier_ctx *ctx)
{
    kt_tokens_free(ctx);
    kt_avail_free(ctx);
    kt_log_close(ctx->log);
    kt_config_free(&ctx->cfg);
    pthread_cond_destroy(&ctx->calls_cv);
    pthread_mutex_destroy(&ctx->calls_mu);
    free(ctx);
}

/* Token calls, then memory: on the caller's thread or on the worker of
 * the last late job. */
static void kt_ctx_finish(keytier_ctx *ctx)
{
    kt_tokens_finalize(ctx);
    kt_ctx_free(ctx);
}

void kt_ctx_hold(keytier_ctx *ctx)
{
    pthread_mutex_lock(&ctx->calls_mu);
    ctx->calls++;
    pthread_mutex_unlock(&ctx->calls_mu);
}

void kt_ctx_release(keytier_ctx *ctx)
{
    bool finish;

    pthread_mutex_lock(&ctx->calls_mu);
    finish = --ctx->calls == 0 && ctx->closing;
    if (ctx->calls == 0)
        pthread_cond_broadcast(&ctx->calls_cv);
    pthread_mutex_unlock(&ctx->calls_mu);
    if (finish)
        kt_ctx_finish(ctx);
}

unsigned kt_call_deadline_ms(const keytier_ctx *ctx)
{
    return ctx->cfg.avail.call_deadline_ms;
}

unsigned kt_admin_deadline_ms(const keytier_ctx *ctx)
{
    return ctx->cfg.avail.admin_deadline_ms;
}

static void kt_deadline_ts(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The last step of a close: closing idle sessions and C_Finalize are token
 * calls too (a frozen vault hangs them), so they run on a worker while the
 * closing thread waits at most the call deadline.  If they end in time
 * the closing thread frees the memory itself, after the pool's idle
 * workers (this one included) have left: a process that exits right after
 * close then races no thread of ours.  Otherwise the worker frees it.  The
 * wait object is shared and counted. */
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

static CK_RV kt_finish_job_run(void *p)
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

/* Runs kt_ctx_finish with its token calls on a worker, waiting for them at
 * most the call deadline.  False if that could not be started (then
 * nothing was done). */
static bool kt_ctx_finish_bounded(keytier_ctx *ctx)
{
    struct kt_finish_wait *w = calloc(1, sizeof *w);
    struct kt_finish_job *j = calloc(1, sizeof *j);
    pthread_condattr_t attr;
    struct timespec ts;
    bool done;

    if (w == NULL || j == NULL || ctx->pool == NULL) {
        free(w);
        free(j);
        return false;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&w->refs, 2);
    j->ctx = ctx;
    j->w = w;
    kt_deadline_ts(&ts, kt_call_deadline_ms(ctx));
    kt_call call = {.name = "close",
                    .token = (uint64_t)(uintptr_t)ctx,
                    .run = kt_finish_job_run,
                    .release = kt_finish_job_release,
                    .ctx = j};
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

/*
 * PKCS#11 calls cannot be cancelled: a call past its deadline keeps its
 * worker until the token answers, and uses the modules, tokens, sessions,
 * logger and PIN configuration of the context.  Close gives such calls one
 * more call deadline; if some are still hung it returns anyway and the last
 * of them frees those (kt_ctx_release).  Otherwise the context is freed on
 * a worker (closing sessions and C_Finalize are token calls) and close
 * waits for that at most one more call deadline.  A token that never
 * answers keeps the context (and a worker thread) until the process exits:
 * a deliberate, bounded leak (one context's modules, tokens and log),
 * logged, in exchange for a close that never hangs.
 *
 * A process that exits while such a call is returning races with the exit
 * handlers of p11-kit and the modules (which tear down what the returning
 * call still uses); nothing here can order that.  Exiting while the call
 * is still blocked is harmless.
 */
void kt_ctx_drain(keytier_ctx *ctx)
{
    struct timespec ts;
    unsigned hung;

    kt_deadline_ts(&ts, kt_call_deadline_ms(ctx));
    pthread_mutex_lock(&ctx->calls_mu);
    while (ctx->calls > 0 &&
           pthread_cond_timedwait(&ctx->calls_cv, &ctx->calls_mu, &ts) == 0)
        ;
    hung = ctx->calls;
    if (hung > 0)
        /* Logged under the lock: once it is released, ctx belongs to the
         * hung calls and the last one may free it at once. */
        kt_log_event(ctx->log, KT_LOG_WARNING,
                     "context closed with token calls hung past their "
                     "deadline; its modules and tokens are released when "
                     "they return",
                     "close");
    ctx->closing = hung > 0;
    pthread_mutex_unlock(&ctx->calls_mu);
    if (hung == 0 && !kt_ctx_finish_bounded(ctx))
        kt_ctx_finish(ctx);
}

/* The mutex, condition and pool every context needs before its modules
 * are loaded (shared with the administration contexts of admin.c). */
void kt_ctx_init_calls(keytier_ctx *ctx)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&ctx->calls_mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->calls_cv, &attr);
    pthread_condattr_destroy(&attr);
}

KEYTIER_API keytier_err keytier_ctx_open(const char *config_path,
                                         keytier_ctx **out)
{
    kt_err_clear();
    if (out == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_ctx_open");
    if (config_path == NULL) {
        const char *env = getenv("KEYTIER_LIB_CONF");
        if (env != NULL && *env != '\0')
            config_path = env;
    }
    keytier_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_config_load(config_path, &ctx->cfg);
    if (e != KEYTIER_OK) {
        free(ctx);
        return e;
    }
    e = kt_log_open(ctx->cfg.log_file, ctx->cfg.log_level, &ctx->log);
    if (e != KEYTIER_OK) {
        kt_config_free(&ctx->cfg);
        free(ctx);
        return e;
    }
    kt_ctx_init_calls(ctx);
    /* Starts every module on the pool and waits at most the call deadline:
     * a vault that does not answer is left to come back on its own. */
    e = kt_tokens_load(ctx);
    if (e == KEYTIER_OK)
        e = kt_store_open(ctx->cfg.store_path, &ctx->store);
    if (e == KEYTIER_OK)
        e = kt_avail_open(ctx); /* Cache, audit log */
    if (e != KEYTIER_OK) {
        keytier_ctx_close(ctx);
        return e;
    }
    *out = ctx;
    return KEYTIER_OK;
}

KEYTIER_API void keytier_ctx_close(keytier_ctx *ctx)
{
    if (ctx == NULL)
        return;
    kt_avail_close(ctx); /* First, it uses tokens and store */
    kt_store_close(ctx->store);
    ctx->store = NULL;
    kt_ctx_drain(ctx); /* Never waits for a hung token */
}
