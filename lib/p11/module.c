/*
 * Modules: loaded with p11-kit (or its RPC client for `remote =`), started
 * and their slots scanned on the call pool, one job at a time per module,
 * so that a module that hangs never blocks the caller or the lookups of
 * other tokens; their unload (kt_tokens_finalize, kt_tokens_free).  Every
 * C_* call goes through p11call.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

#include "call_pool.h"
#include "kt_avail_config.h" /* KT_P11KIT_CLIENT_MODULE */
#include "p11call.h"
#include "p11str.h"
#include "token.h"

#define KT_MAX_SLOTS 64

/*
 * A token behind `p11-kit server`.  p11-kit-client.so reads
 * P11_KIT_SERVER_ADDRESS in each C_GetFunctionList and returns a new
 * function list each time, so several servers can be reached from one
 * process by loading it once per address with the variable set.  The
 * variable is changed under a lock and restored; other threads reading the
 * environment at that moment could see it (contexts are opened at start).
 */
static pthread_mutex_t kt_remote_mu = PTHREAD_MUTEX_INITIALIZER;

static CK_FUNCTION_LIST *kt_remote_load(const char *address)
{
    CK_FUNCTION_LIST *fl;
    const char *old = getenv("P11_KIT_SERVER_ADDRESS");
    char *saved = old ? strdup(old) : NULL;

    if (old && !saved)
        return NULL;
    pthread_mutex_lock(&kt_remote_mu);
    setenv("P11_KIT_SERVER_ADDRESS", address, 1);
    fl = p11_kit_module_load(KT_P11KIT_CLIENT_MODULE, 0);
    if (saved)
        setenv("P11_KIT_SERVER_ADDRESS", saved, 1);
    else
        unsetenv("P11_KIT_SERVER_ADDRESS");
    pthread_mutex_unlock(&kt_remote_mu);
    free(saved);
    return fl;
}

/* Starts a loaded module (C_Initialize, C_GetInfo).  Only its scan job
 * calls this (module->scanning), on a worker.  A module that cannot
 * initialise now (a remote vault that is down) is not fatal: the context
 * opens without its tokens and the next lookup that finds no token tries
 * again. */
static KT_NODISCARD CK_RV kt_module_start(keytier_ctx *ctx,
                                          struct kt_module *mod)
{
    CK_RV rv;

    if (mod->ready)
        return CKR_OK;
    if (!mod->initialized) {
        rv = kt_p11_initialize(ctx, mod);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
            kt_log_event(ctx->log, KT_LOG_WARNING,
                         "module failed to initialise; will retry", mod->path);
            return rv;
        }
        mod->initialized = rv == CKR_OK;
    }
    rv = kt_p11_get_info(ctx, mod, &mod->info);
    if (rv != CKR_OK)
        kt_log_event(ctx->log, KT_LOG_WARNING,
                     "module C_GetInfo failed; will retry", mod->path);
    return rv;
}

/* Adds a token under tokens_mu unless another scan added it meanwhile. */
static void kt_token_add(keytier_ctx *ctx, struct kt_module *mod,
                         CK_SLOT_ID slot, const CK_TOKEN_INFO *info)
{
    pthread_mutex_lock(&ctx->tokens_mu);
    for (size_t t = 0; t < ctx->n_tokens; t++)
        if (ctx->tokens[t]->mod == mod && ctx->tokens[t]->slot == slot)
            goto out;
    if (ctx->n_tokens == ctx->cap_tokens) {
        size_t ncap = ctx->cap_tokens ? ctx->cap_tokens * 2 : 8;
        struct kt_token **nt = reallocarray(ctx->tokens, ncap, sizeof *nt);
        if (nt == NULL)
            goto out; /* not found this time; the next scan tries again */
        ctx->tokens = nt;
        ctx->cap_tokens = ncap;
    }
    struct kt_token *tok = calloc(1, sizeof *tok);
    if (tok == NULL)
        goto out;
    tok->ctx = ctx;
    tok->mod = mod;
    tok->slot = slot;
    tok->info = *info;
    kt_p11str_trim(tok->label, info->label, sizeof info->label);
    pthread_mutex_init(&tok->mu, NULL);
    ctx->tokens[ctx->n_tokens++] = tok;
out:
    pthread_mutex_unlock(&ctx->tokens_mu);
}

static bool kt_token_known(keytier_ctx *ctx, struct kt_module *mod,
                           CK_SLOT_ID slot)
{
    bool known = false;

    pthread_mutex_lock(&ctx->tokens_mu);
    for (size_t t = 0; t < ctx->n_tokens && !known; t++)
        known = ctx->tokens[t]->mod == mod && ctx->tokens[t]->slot == slot;
    pthread_mutex_unlock(&ctx->tokens_mu);
    return known;
}

/* One module's start and slot scan, on a worker.  Token
 * calls are made without any lock held; tokens_mu is taken only to add
 * what was found, so a hung module never blocks lookups of other tokens. */
static void kt_module_scan(keytier_ctx *ctx, struct kt_module *mod)
{
    CK_SLOT_ID slots[KT_MAX_SLOTS];
    CK_ULONG n = KT_MAX_SLOTS;
    CK_RV rv = kt_module_start(ctx, mod);

    if (rv == CKR_OK) {
        pthread_mutex_lock(&mod->mu);
        mod->ready = true;
        pthread_mutex_unlock(&mod->mu);
        rv = kt_p11_get_slot_list(ctx, mod, slots, &n);
    }
    for (CK_ULONG i = 0; rv == CKR_OK && i < n && i < KT_MAX_SLOTS; i++) {
        CK_TOKEN_INFO info;
        if (kt_token_known(ctx, mod, slots[i]) ||
            kt_p11_get_token_info(ctx, mod, slots[i], &info) != CKR_OK ||
            !(info.flags & CKF_TOKEN_INITIALIZED))
            continue;
        kt_token_add(ctx, mod, slots[i], &info);
    }
    pthread_mutex_lock(&mod->mu);
    if (mod->hung)
        kt_log_event(ctx->log, KT_LOG_WARNING,
                     "module answers again after missing its deadline",
                     mod->path);
    mod->scanning = false;
    mod->hung = false;
    mod->last_rv = rv;
    pthread_cond_broadcast(&mod->cv);
    pthread_mutex_unlock(&mod->mu);
}

struct kt_scan_job {
    keytier_ctx *ctx;
    struct kt_module *mod;
};

static KT_NODISCARD CK_RV kt_scan_job_run(void *p)
{
    struct kt_scan_job *j = p;

    kt_module_scan(j->ctx, j->mod);
    return CKR_OK;
}

static void kt_scan_job_release(void *p)
{
    struct kt_scan_job *j = p;
    keytier_ctx *ctx = j->ctx;

    free(j);
    kt_calls_release(&ctx->calls); /* may end a closed context */
}

/* Posts a scan of mod.  Under mod->mu.  False if it could not start. */
static bool kt_scan_post(keytier_ctx *ctx, struct kt_module *mod)
{
    struct kt_scan_job *j = calloc(1, sizeof *j);

    if (j == NULL || ctx->pool == NULL) {
        free(j);
        return false;
    }
    j->ctx = ctx;
    j->mod = mod;
    kt_calls_hold(&ctx->calls);
    kt_call call = {.name = "module scan",
                    .token = (uint64_t)(uintptr_t)mod,
                    .run = kt_scan_job_run,
                    .release = kt_scan_job_release,
                    .ctx = j};
    return kt_pool_post(ctx->pool, &call) == CKR_OK;
}

/* A scan is waited for at most one call deadline in all, from when it was
 * posted, however many lookups wait for it: a process that met a frozen
 * vault at its start (a CLI command opening its context) does not wait
 * for it again at its read. */
void kt_tokens_scan(keytier_ctx *ctx)
{
    uint64_t deadline_ns = (uint64_t)kt_call_deadline_ms(ctx) * 1000000u;

    for (size_t m = 0; m < ctx->n_modules; m++) {
        struct kt_module *mod = &ctx->modules[m];
        pthread_mutex_lock(&mod->mu);
        if (!mod->hung && !mod->scanning) {
            mod->scan_until = kt_now_ns() + deadline_ns;
            mod->scanning = kt_scan_post(ctx, mod);
        }
        pthread_mutex_unlock(&mod->mu);
    }
    for (size_t m = 0; m < ctx->n_modules; m++) {
        struct kt_module *mod = &ctx->modules[m];
        pthread_mutex_lock(&mod->mu);
        uint64_t until = mod->scan_until;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        /* Waited for until its own deadline: a module that never answered
         * yet (slow under load, or a vault frozen since open) may hold the
         * token looked for.  Once that passed it is skipped until it
         * answers: a lookup then fails at once, an outage ("system"). */
        while (mod->scanning && kt_now_ns() < until)
            pthread_cond_timedwait(&mod->cv, &mod->mu, &ts);
        if (mod->scanning && !mod->hung) {
            mod->hung = true;
            kt_log_event(ctx->log, KT_LOG_WARNING,
                         "module did not answer within the deadline; "
                         "skipped until it does",
                         mod->path);
        }
        pthread_mutex_unlock(&mod->mu);
    }
}

unsigned kt_tokens_hung_calls(keytier_ctx *ctx)
{
    unsigned n = 0;

    for (size_t m = 0; m < ctx->n_modules; m++) {
        struct kt_module *mod = &ctx->modules[m];
        pthread_mutex_lock(&mod->mu);
        n += mod->hung && mod->scanning;
        pthread_mutex_unlock(&mod->mu);
    }
    return n;
}

keytier_err kt_tokens_load(keytier_ctx *ctx)
{
    kt_pool_config pc = {.max_workers = ctx->cfg.avail.workers,
                         .per_token = ctx->cfg.avail.per_token,
                         .free_wait_ms = kt_call_deadline_ms(ctx)};
    pthread_condattr_t attr;

    pthread_mutex_init(&ctx->tokens_mu, NULL);
    ctx->pool = kt_pool_new(&pc);
    if (ctx->pool == NULL)
        return kt_err(KEYTIER_E_NOMEM, "call pool");
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    for (size_t i = 0; i < ctx->cfg.n_modules; i++) {
        struct kt_module *mod = &ctx->modules[ctx->n_modules];
        const char *path = ctx->cfg.modules[i];
        memset(mod, 0, sizeof *mod);
        /* A module that cannot even be loaded is a configuration error. */
        if (!strncmp(path, KT_REMOTE_PREFIX, strlen(KT_REMOTE_PREFIX)))
            mod->fl = kt_remote_load(path + strlen(KT_REMOTE_PREFIX));
        else
            mod->fl = p11_kit_module_load(path, 0);
        if (mod->fl == NULL) {
            pthread_condattr_destroy(&attr);
            return kt_err(KEYTIER_E_MODULE, "%s: %s", path,
                          p11_kit_message() ? p11_kit_message() : "");
        }
        mod->path = ctx->cfg.modules[i];
        pthread_mutex_init(&mod->mu, NULL);
        pthread_cond_init(&mod->cv, &attr);
        ctx->n_modules++;
    }
    pthread_condattr_destroy(&attr);
    /* C_Initialize of a frozen vault never returns; every
     * module starts on the pool and open waits at most the call deadline
     * (kt_tokens_scan). */
    kt_tokens_scan(ctx);
    return KEYTIER_OK;
}

static void kt_token_free(struct kt_token *tok)
{
    free(tok->idle);
    kt_secret_free(tok->refused_pin);
    pthread_mutex_destroy(&tok->mu);
    free(tok);
}

/* The token calls of an unload: idle sessions closed, modules finalized
 * and released.  Once no token job is left (kt_ctx_drain). */
void kt_tokens_finalize(keytier_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_tokens; i++) {
        struct kt_token *tok = ctx->tokens[i];
        for (size_t k = 0; k < tok->n_idle; k++)
            KT_IGNORE_RESULT(kt_p11_close_session(tok, tok->idle[k]));
        tok->n_idle = 0;
    }
    for (size_t i = 0; i < ctx->n_modules; i++) {
        struct kt_module *mod = &ctx->modules[i];
        if (mod->initialized)
            KT_IGNORE_RESULT(kt_p11_finalize(ctx, mod));
        mod->initialized = false;
        p11_kit_module_release(mod->fl);
        mod->fl = NULL;
    }
}

/* The memory of an unload, after kt_tokens_finalize; frees the pool. */
void kt_tokens_free(keytier_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_tokens; i++)
        kt_token_free(ctx->tokens[i]);
    free(ctx->tokens);
    ctx->tokens = NULL;
    ctx->n_tokens = 0;
    for (size_t i = 0; i < ctx->n_modules; i++) {
        struct kt_module *mod = &ctx->modules[i];
        pthread_cond_destroy(&mod->cv);
        pthread_mutex_destroy(&mod->mu);
    }
    ctx->n_modules = 0;
    kt_pool_free(ctx->pool); /* its hung workers hold it until they exit */
    ctx->pool = NULL;
    pthread_mutex_destroy(&ctx->tokens_mu);
}

bool kt_modules_down(keytier_ctx *ctx, char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t m = 0; m < ctx->n_modules; m++) {
        struct kt_module *mod = &ctx->modules[m];
        char why[96];
        pthread_mutex_lock(&mod->mu);
        bool down = mod->hung || !mod->ready || mod->last_rv != CKR_OK;
        if (mod->hung)
            snprintf(why, sizeof why, "no answer within %u ms",
                     kt_call_deadline_ms(ctx));
        else
            snprintf(why, sizeof why, "%s", kt_p11_rv_text(mod->last_rv));
        pthread_mutex_unlock(&mod->mu);
        if (!down || len >= cap)
            continue;
        int n = snprintf(out + len, cap - len, "%s%s (%s)", len ? ", " : "",
                         mod->path, why);
        if (n > 0)
            len += (size_t)n;
    }
    return len > 0;
}
