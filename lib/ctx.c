/* The library context: configuration, logger, modules, store. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "call_pool.h"
#include "kt_lib.h"

/* Everything a token job may touch: modules, tokens and their sessions,
 * the logger and the configuration (PIN sources).  Runs once no token job
 * is left, on the caller's thread or on the worker of the last late job. */
static void kt_ctx_finish(keytier_ctx *ctx)
{
    kt_tokens_unload(ctx);
    kt_avail_free(ctx);
    kt_log_close(ctx->log);
    kt_config_free(&ctx->cfg);
    pthread_cond_destroy(&ctx->calls_cv);
    pthread_mutex_destroy(&ctx->calls_mu);
    free(ctx);
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

/*
 * PKCS#11 calls cannot be cancelled: a call past its deadline keeps its
 * worker until the token answers, and uses the modules, tokens, sessions,
 * logger and PIN configuration of the context.  Close gives such calls one
 * more call deadline; if some are still hung it returns anyway and the last
 * of them frees those (kt_ctx_release).  A token that never answers keeps
 * them (and its worker thread) until the process exits: a deliberate,
 * bounded leak (one context's modules and tokens), logged, in exchange for
 * a close that never hangs.  The pool goes with the rest (kt_tokens_unload):
 * a late call on a worker may still post a module scan to it.
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

    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ms = kt_call_deadline_ms(ctx);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
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
    if (hung == 0)
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
        e = kt_avail_open(ctx); /* lib-avail: cache, audit log */
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
    kt_avail_close(ctx); /* lib-avail: first, it uses tokens and store */
    kt_store_close(ctx->store);
    ctx->store = NULL;
    kt_ctx_drain(ctx); /* lib-deadline: never waits for a hung token */
}
