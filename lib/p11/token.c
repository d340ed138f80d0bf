/*
 * Modules, tokens and sessions; root-key resolution, wrap and unwrap.
 * Modules are loaded and URIs (RFC 7512) parsed with p11-kit; every C_*
 * call goes through p11call.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "call_pool.h"
#include "ckr_class.h"
#include "p11call.h"
#include "p11str.h"

#define KT_MAX_SLOTS 64

/* ---- modules -------------------------------------------------------------
 */

/*
 * A token behind `p11-kit server`.  p11-kit-client.so reads
 * P11_KIT_SERVER_ADDRESS in each C_GetFunctionList and returns a new
 * function list each time, so several servers can be reached from one
 * process by loading it once per address with the variable set.  The
 * variable is changed under a lock and restored; other threads reading the
 * environment at that moment could see it (contexts are opened at start).
 */
#include "kt_avail_config.h" /* KT_P11KIT_CLIENT_MODULE */
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
static CK_RV kt_module_start(keytier_ctx *ctx, struct kt_module *mod)
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

static CK_RV kt_scan_job_run(void *p)
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

/*
 * Starts a scan of every module that is neither hung nor being scanned
 * already, in parallel, and waits for them at most the call deadline.  A
 * module whose scan is still running then is marked hung: it is not asked
 * again until its late calls return.  Never called with tokens_mu held.
 */
static void kt_tokens_scan(keytier_ctx *ctx)
{
    uint64_t until =
        kt_now_ns() + (uint64_t)kt_call_deadline_ms(ctx) * 1000000u;

    for (size_t m = 0; m < ctx->n_modules; m++) {
        struct kt_module *mod = &ctx->modules[m];
        pthread_mutex_lock(&mod->mu);
        if (!mod->hung && !mod->scanning)
            mod->scanning = kt_scan_post(ctx, mod);
        pthread_mutex_unlock(&mod->mu);
    }
    for (size_t m = 0; m < ctx->n_modules; m++) {
        struct kt_module *mod = &ctx->modules[m];
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        pthread_mutex_lock(&mod->mu);
        /* A module that never answered yet (its first start, e.g. slow
         * under load, or a vault frozen since open) may hold the token
         * looked for: waited for again, at most the deadline.  One that
         * answered before and hangs now is skipped: its tokens are known. */
        while (mod->scanning && (!mod->hung || !mod->ready) &&
               kt_now_ns() < until)
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
            (void)kt_p11_close_session(tok, tok->idle[k]);
        tok->n_idle = 0;
    }
    for (size_t i = 0; i < ctx->n_modules; i++) {
        struct kt_module *mod = &ctx->modules[i];
        if (mod->initialized)
            (void)kt_p11_finalize(ctx, mod);
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

static keytier_err kt_uri_parse(const char *uri, P11KitUri **out)
{
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    int r =
        p11_kit_uri_parse(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN_AND_MODULE, u);
    if (r != P11_KIT_URI_OK) {
        p11_kit_uri_free(u);
        return kt_err(KEYTIER_E_URI, "%s: %s", uri, p11_kit_uri_message(r));
    }
    /* URIs are stored and shown: a PIN in one would leak. */
    if (p11_kit_uri_get_pin_value(u) || p11_kit_uri_get_pin_source(u)) {
        p11_kit_uri_free(u);
        return kt_err(KEYTIER_E_URI,
                      "PINs are configured per token (pin.LABEL), not in "
                      "URIs: pin-value/pin-source refused");
    }
    *out = u;
    return KEYTIER_OK;
}

static unsigned kt_token_match_known(keytier_ctx *ctx, P11KitUri *u,
                                     struct kt_token **found)
{
    unsigned matches = 0;

    pthread_mutex_lock(&ctx->tokens_mu);
    for (size_t i = 0; i < ctx->n_tokens; i++) {
        struct kt_token *t = ctx->tokens[i];
        if (p11_kit_uri_match_module_info(u, &t->mod->info) &&
            p11_kit_uri_match_token_info(u, &t->info)) {
            *found = t;
            matches++;
        }
    }
    pthread_mutex_unlock(&ctx->tokens_mu);
    return matches;
}

/* The modules that did not answer their last scan (hung past the
 * deadline, or failed to start), as text; false if every module answers. */
static bool kt_modules_down(keytier_ctx *ctx, char *out, size_t cap)
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

static keytier_err kt_token_match(keytier_ctx *ctx, P11KitUri *u,
                                  const char *uri, struct kt_token **out)
{
    struct kt_token *found = NULL;
    unsigned matches = kt_token_match_known(ctx, u, &found);
    char down[512];

    if (matches == 0) {
        kt_tokens_scan(ctx); /* a token may have been added */
        matches = kt_token_match_known(ctx, u, &found);
    }
    if (matches == 0 && kt_modules_down(ctx, down, sizeof down))
        /* It may be in a module that does not answer: an outage, not a
         * wrong URI. */
        return kt_err(KEYTIER_E_UNAVAILABLE,
                      "%s: no token that answers matches; not answering: %s",
                      uri, down);
    if (matches == 0)
        return kt_err(KEYTIER_E_TOKEN_NOT_FOUND, "%s", uri);
    if (matches > 1)
        return kt_err(KEYTIER_E_TOKEN_AMBIGUOUS,
                      "%s matches %u tokens; name the token", uri, matches);
    *out = found;
    return KEYTIER_OK;
}

keytier_err kt_uri_check(const char *what, const char *uri)
{
    P11KitUri *u;
    keytier_err e = kt_uri_parse(uri, &u);
    if (e == KEYTIER_E_URI && strstr(keytier_last_error_detail(), "PINs"))
        return kt_err(KEYTIER_E_URI,
                      "%s: PINs are configured per token (pin.LABEL), not in "
                      "URIs: pin-value/pin-source refused",
                      what); /* the URI is not echoed: it holds a PIN */
    if (e != KEYTIER_OK)
        return kt_err_context(e, "%s %s", what, uri);
    p11_kit_uri_free(u);
    return KEYTIER_OK;
}

keytier_err kt_token_find(keytier_ctx *ctx, const char *uri,
                          struct kt_token **out)
{
    P11KitUri *u;
    keytier_err e = kt_uri_parse(uri, &u);
    if (e != KEYTIER_OK)
        return e;
    e = kt_token_match(ctx, u, uri, out);
    p11_kit_uri_free(u);
    return e;
}

bool kt_token_same(const struct kt_token *a, const struct kt_token *b)
{
    return a == b ||
           (!memcmp(a->info.manufacturerID, b->info.manufacturerID,
                    sizeof a->info.manufacturerID) &&
            !memcmp(a->info.model, b->info.model, sizeof a->info.model) &&
            !memcmp(a->info.serialNumber, b->info.serialNumber,
                    sizeof a->info.serialNumber) &&
            !memcmp(a->info.label, b->info.label, sizeof a->info.label));
}

/* ---- sessions ------------------------------------------------------------
 */

static bool kt_rv_refuses_pin(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ||
           rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID ||
           rv == CKR_PIN_LEN_RANGE;
}

/* C_Login with the configured PIN unless the token already refused exactly
 * this PIN: then its earlier answer stands and the token is not asked. */
static CK_RV kt_login_once(struct kt_token *tok, CK_SESSION_HANDLE s,
                           kt_secret *pin)
{
    pthread_mutex_lock(&tok->mu);
    bool refused = tok->refused_pin != NULL &&
                   kt_secret_len(tok->refused_pin) == kt_secret_len(pin) &&
                   kt_ct_equal(kt_secret_cdata(tok->refused_pin),
                               kt_secret_cdata(pin), kt_secret_len(pin));
    CK_RV rv = tok->refused_rv;
    pthread_mutex_unlock(&tok->mu);
    if (refused)
        return rv;

    rv = kt_p11_login(tok, s, pin);
    pthread_mutex_lock(&tok->mu);
    if (kt_rv_refuses_pin(rv)) {
        kt_secret_free(tok->refused_pin);
        tok->refused_pin = kt_secret_dup(pin); /* NULL on OOM: asks again */
        tok->refused_rv = rv;
    } else if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        kt_secret_free(tok->refused_pin);
        tok->refused_pin = NULL;
    }
    pthread_mutex_unlock(&tok->mu);
    return rv;
}

keytier_err kt_session_get(struct kt_token *tok, CK_SESSION_HANDLE *out,
                           CK_RV *rvp)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&tok->mu);
    if (tok->n_idle > 0) {
        *out = tok->idle[--tok->n_idle];
        pthread_mutex_unlock(&tok->mu);
        *rvp = CKR_OK;
        return KEYTIER_OK;
    }
    pthread_mutex_unlock(&tok->mu);

    CK_SESSION_HANDLE s;
    rv = kt_p11_open_session(tok, &s);
    *rvp = rv;
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_OpenSession: %s",
                      tok->label, kt_p11_rv_text(rv));
    /* Login is shared by all sessions of the application (PKCS#11 v2.40
     * §5.6), so a new session of a token we already logged in to answers
     * CKR_USER_ALREADY_LOGGED_IN. */
    const struct kt_pin_cfg *pc = kt_config_pin(&tok->ctx->cfg, tok->label);
    if (pc != NULL) {
        kt_secret *pin = NULL;
        keytier_err e = kt_pin_read(pc, &pin);
        if (e != KEYTIER_OK) {
            (void)kt_p11_close_session(tok, s);
            return e;
        }
        rv = kt_login_once(tok, s, pin);
        kt_secret_free(pin);
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
            *rvp = rv;
            (void)kt_p11_close_session(tok, s);
            return kt_err(KEYTIER_E_LOGIN, "token '%s': C_Login: %s",
                          tok->label, kt_p11_rv_text(rv));
        }
    }
    *out = s;
    return KEYTIER_OK;
}

static bool kt_rv_breaks_session(CK_RV rv)
{
    switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_OPERATION_ACTIVE:
        return true;
    default:
        return false;
    }
}

void kt_session_put(struct kt_token *tok, CK_SESSION_HANDLE s, CK_RV rv)
{
    if (s == CK_INVALID_HANDLE)
        return;
    if (!kt_rv_breaks_session(rv)) {
        pthread_mutex_lock(&tok->mu);
        if (tok->n_idle == tok->cap_idle) {
            size_t ncap = tok->cap_idle ? tok->cap_idle * 2 : 4;
            CK_SESSION_HANDLE *ni = reallocarray(tok->idle, ncap, sizeof *ni);
            if (ni != NULL) {
                tok->idle = ni;
                tok->cap_idle = ncap;
            }
        }
        if (tok->n_idle < tok->cap_idle) {
            tok->idle[tok->n_idle++] = s;
            pthread_mutex_unlock(&tok->mu);
            return;
        }
        pthread_mutex_unlock(&tok->mu);
    }
    (void)kt_p11_close_session(tok, s);
}

/* ---- wrap mechanisms ----------------------------------------------------
 */

static const char *const kt_mech_names[] = {
    [KT_WRAP_AES_KWP] = "aes-key-wrap-pad",
    [KT_WRAP_RSA_OAEP_SHA256] = "rsa-oaep-sha256",
    [KT_WRAP_RSA_OAEP_SHA1] = "rsa-oaep-sha1",
};

const char *kt_wrap_mech_name(enum kt_wrap_mech m)
{
    return kt_mech_names[m];
}

bool kt_wrap_mech_parse(const char *s, enum kt_wrap_mech *m)
{
    for (size_t i = 0; i < sizeof kt_mech_names / sizeof kt_mech_names[0]; i++)
        if (!strcmp(s, kt_mech_names[i])) {
            *m = (enum kt_wrap_mech)i;
            return true;
        }
    return false;
}

static void kt_mech_fill(enum kt_wrap_mech m, CK_MECHANISM *mech,
                         CK_RSA_PKCS_OAEP_PARAMS *oaep)
{
    memset(oaep, 0, sizeof *oaep);
    oaep->source = CKZ_DATA_SPECIFIED;
    switch (m) {
    case KT_WRAP_AES_KWP:
        /* RFC 5649, 0x210A as SoftHSM2 and pkcs11-tool use it. */
        *mech = (CK_MECHANISM){CKM_AES_KEY_WRAP_PAD, NULL, 0};
        return;
    case KT_WRAP_RSA_OAEP_SHA256:
        oaep->hashAlg = CKM_SHA256;
        oaep->mgf = CKG_MGF1_SHA256;
        break;
    case KT_WRAP_RSA_OAEP_SHA1:
        oaep->hashAlg = CKM_SHA_1;
        oaep->mgf = CKG_MGF1_SHA1;
        break;
    }
    *mech = (CK_MECHANISM){CKM_RSA_PKCS_OAEP, oaep, sizeof *oaep};
}

/* ---- root keys ------------------------------------------------------------
 */

static keytier_err kt_find_one(struct kt_token *tok, CK_SESSION_HANDLE s,
                               CK_ATTRIBUTE *tmpl, CK_ULONG n,
                               CK_OBJECT_HANDLE *out, CK_ULONG *count,
                               CK_RV *rv)
{
    CK_OBJECT_HANDLE objs[2];
    *count = 0;
    *rv = kt_p11_find_objects(tok, s, tmpl, n, objs, 2, count);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': find objects: %s",
                      tok->label, kt_p11_rv_text(*rv));
    if (*count >= 1)
        *out = objs[0];
    return KEYTIER_OK;
}

static keytier_err kt_key_not_found(struct kt_token *tok, const char *what,
                                    const char *uri)
{
    bool pin = kt_config_pin(&tok->ctx->cfg, tok->label) != NULL;
    return kt_err(KEYTIER_E_KEY_NOT_FOUND, "%s %s: no such key in token '%s'%s",
                  what, uri, tok->label,
                  pin ? ""
                      : " (no PIN configured for this token: private "
                        "keys are invisible)");
}

keytier_err kt_root_resolve(keytier_ctx *ctx, const char *what, const char *uri,
                            bool for_wrap, struct kt_root *out,
                            CK_SESSION_HANDLE *sp, CK_RV *rvp)
{
    P11KitUri *u = NULL;
    struct kt_token *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    keytier_err e = kt_uri_parse(uri, &u);
    if (e != KEYTIER_OK)
        return e;
    e = kt_token_match(ctx, u, uri, &tok);
    if (e != KEYTIER_OK) {
        e = kt_err_context(e, "%s %s", what, uri);
        goto out;
    }
    e = kt_session_get(tok, &s, &rv);
    if (e != KEYTIER_OK)
        goto out;

    /* The URI's object attributes (object=, id=, type=) plus, when it has
     * no type, each key class that can unwrap in turn. */
    CK_ULONG n_uri = 0;
    CK_ATTRIBUTE *uattrs = p11_kit_uri_get_attributes(u, &n_uri);
    CK_ATTRIBUTE tmpl[8];
    CK_ULONG n = 0;
    bool has_class = false;
    for (CK_ULONG i = 0; i < n_uri && n < 6; i++) {
        tmpl[n++] = uattrs[i];
        has_class |= uattrs[i].type == CKA_CLASS;
    }
    static const CK_OBJECT_CLASS classes[] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY};
    CK_OBJECT_CLASS cls = 0;
    CK_ULONG count = 0;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    for (size_t c = 0; c < 2; c++) {
        CK_ULONG nn = n;
        if (!has_class) {
            cls = classes[c];
            tmpl[nn++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof cls};
        }
        e = kt_find_one(tok, s, tmpl, nn, &key, &count, &rv);
        if (e != KEYTIER_OK || count > 0 || has_class)
            break;
    }
    if (e != KEYTIER_OK)
        goto out;
    if (count == 0) {
        e = kt_key_not_found(tok, what, uri);
        goto out;
    }
    if (count > 1) {
        e = kt_err(KEYTIER_E_KEY_AMBIGUOUS, "%s %s: several keys match", what,
                   uri);
        goto out;
    }

    out->tok = tok;
    out->key = key;
    out->pub = key;
    if (!for_wrap) {
        /* Reading: the copy's mechanism is recorded and the token enforces
         * CKA_UNWRAP at C_UnwrapKey; no attribute round trip. */
        out->type = 0;
        goto out;
    }
    CK_OBJECT_CLASS oclass = 0;
    CK_KEY_TYPE ktype = 0;
    CK_BBOOL extractable = CK_TRUE, unwrap = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &oclass, sizeof oclass},
        {CKA_KEY_TYPE, &ktype, sizeof ktype},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_UNWRAP, &unwrap, sizeof unwrap},
    };
    /* Class and type first: other classes may lack the usage attributes. */
    rv = kt_p11_get_attributes(tok, s, key, a, 2);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what, uri,
                   kt_p11_rv_text(rv));
        goto out;
    }
    out->type = ktype;
    if (!(oclass == CKO_SECRET_KEY && ktype == CKK_AES) &&
        !(oclass == CKO_PRIVATE_KEY && ktype == CKK_RSA)) {
        e = kt_err(KEYTIER_E_KEY_TYPE,
                   "%s %s: roots are AES secret keys or RSA private keys", what,
                   uri);
        goto out;
    }
    rv = kt_p11_get_attributes(tok, s, key, a + 2, 2);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what, uri,
                   kt_p11_rv_text(rv));
        goto out;
    }
    if (extractable) {
        e = kt_err(KEYTIER_E_KEY_EXTRACTABLE,
                   "%s %s: CKA_EXTRACTABLE is true; a root must never leave "
                   "its token",
                   what, uri);
        goto out;
    }
    if (!unwrap) {
        e = kt_err(KEYTIER_E_KEY_USAGE, "%s %s: CKA_UNWRAP is false", what,
                   uri);
        goto out;
    }
    if (oclass == CKO_SECRET_KEY) {
        CK_BBOOL wrap = CK_FALSE;
        CK_ULONG len = 0;
        CK_ATTRIBUTE w[] = {{CKA_WRAP, &wrap, sizeof wrap},
                            {CKA_VALUE_LEN, &len, sizeof len}};
        rv = kt_p11_get_attributes(tok, s, key, w, 2);
        if (rv != CKR_OK) {
            e = kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what,
                       uri, kt_p11_rv_text(rv));
        } else if (!wrap) {
            e = kt_err(KEYTIER_E_KEY_USAGE, "%s %s: CKA_WRAP is false", what,
                       uri);
        } else if (len != 32) {
            e = kt_err(KEYTIER_E_KEY_TYPE, "%s %s: AES roots are 256-bit", what,
                       uri);
        }
        goto out;
    }
    /* RSA: wrapping is done by the public key object with the same CKA_ID
     * (PKCS#11 pairs keys by CKA_ID). */
    uint8_t id[256];
    CK_ULONG modlen = 0;
    CK_ATTRIBUTE ia[] = {{CKA_ID, id, sizeof id}, {CKA_MODULUS, NULL, 0}};
    rv = kt_p11_get_attributes(tok, s, key, ia, 2);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what, uri,
                   kt_p11_rv_text(rv));
        goto out;
    }
    modlen = ia[1].ulValueLen;
    if (modlen == CK_UNAVAILABLE_INFORMATION || modlen < 256) {
        e = kt_err(KEYTIER_E_KEY_TYPE, "%s %s: RSA roots are 2048 bits or more",
                   what, uri);
        goto out;
    }
    CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE rsa = CKK_RSA;
    CK_ATTRIBUTE pt[] = {{CKA_CLASS, &pubc, sizeof pubc},
                         {CKA_KEY_TYPE, &rsa, sizeof rsa},
                         {CKA_ID, id, ia[0].ulValueLen}};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    e = kt_find_one(tok, s, pt, 3, &pub, &count, &rv);
    if (e != KEYTIER_OK)
        goto out;
    if (count != 1) {
        e = kt_err(count ? KEYTIER_E_KEY_AMBIGUOUS : KEYTIER_E_KEY_NOT_FOUND,
                   "%s %s: %s public key with the private key's CKA_ID", what,
                   uri, count ? "more than one" : "no");
        goto out;
    }
    CK_BBOOL pwrap = CK_FALSE;
    CK_ATTRIBUTE pw[] = {{CKA_WRAP, &pwrap, sizeof pwrap}};
    rv = kt_p11_get_attributes(tok, s, pub, pw, 1);
    if (rv != CKR_OK || !pwrap) {
        e = kt_err(KEYTIER_E_KEY_USAGE, "%s %s: its public key cannot wrap",
                   what, uri);
        goto out;
    }
    out->pub = pub;
out:
    /* The token's own code (e.g. CKR_PIN_INCORRECT from the
     * login) lets the fallback rule tell a revocation from an outage. */
    if (rvp)
        *rvp = e == KEYTIER_OK ? CKR_OK : rv;
    if (e == KEYTIER_OK) {
        *sp = s;
    } else if (tok != NULL) {
        kt_session_put(tok, s, rv);
    }
    p11_kit_uri_free(u);
    return e;
}

keytier_err kt_root_wrap(const struct kt_root *root, CK_SESSION_HANDLE s,
                         enum kt_wrap_mech m, const kt_secret *key,
                         uint8_t *out, size_t *out_len, CK_RV *rvp)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &no, sizeof no},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_VALUE, (void *)kt_secret_cdata(key), kt_secret_len(key)},
    };
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_MECHANISM mech;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    keytier_err e = KEYTIER_OK;
    CK_RV rv = kt_p11_create_object(root->tok, s, tmpl, 6, &obj);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_CreateObject: %s",
                   root->tok->label, kt_p11_rv_text(rv));
        goto out;
    }
    kt_mech_fill(m, &mech, &oaep);
    CK_ULONG len = *out_len;
    rv = kt_p11_wrap_key(root->tok, s, &mech, root->pub, obj, out, &len);
    if (rv != CKR_OK) {
        e = kt_err(rv == CKR_MECHANISM_INVALID ||
                           rv == CKR_MECHANISM_PARAM_INVALID ||
                           rv == CKR_ARGUMENTS_BAD
                       ? KEYTIER_E_MECHANISM
                       : KEYTIER_E_TOKEN,
                   "token '%s': C_WrapKey with %s: %s", root->tok->label,
                   kt_wrap_mech_name(m), kt_p11_rv_text(rv));
        goto out;
    }
    *out_len = len;
out:
    if (obj != CK_INVALID_HANDLE)
        (void)kt_p11_destroy_object(root->tok, s, obj);
    *rvp = rv;
    return e;
}

keytier_err kt_root_unwrap(const struct kt_root *root, CK_SESSION_HANDLE s,
                           enum kt_wrap_mech m, const uint8_t *wrapped,
                           size_t wrapped_len, kt_secret **out, CK_RV *rvp)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &no, sizeof no},         {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
    };
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_MECHANISM mech;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    kt_secret *val = NULL;
    keytier_err e = KEYTIER_OK;
    kt_mech_fill(m, &mech, &oaep);
    CK_RV rv = kt_p11_unwrap_key(root->tok, s, &mech, root->key, wrapped,
                                 wrapped_len, tmpl, 5, &obj);
    /* The token has just found the key and read its attributes on this
     * session: what a failure of the unwrap itself means is the table's
     * (common/ckr.c, in_unwrap). */
    if (kt_ckr_unwrap_outcome(rv) == KT_CKR_BLOB_REFUSED) {
        e = kt_err(KEYTIER_E_TOKEN,
                   "token '%s': C_UnwrapKey: %s: the key refused the wrapped "
                   "copy",
                   root->tok->label, kt_p11_rv_text(rv));
        rv = KT_CKR_BLOB_REFUSED;
        goto out;
    }
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_UnwrapKey: %s",
                   root->tok->label, kt_p11_rv_text(rv));
        goto out;
    }
    val = kt_secret_new(64);
    if (val == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto out;
    }
    CK_ATTRIBUTE va[] = {{CKA_VALUE, kt_secret_data(val), 64}};
    rv = kt_p11_get_attributes(root->tok, s, obj, va, 1);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': reading unwrapped key: %s",
                   root->tok->label, kt_p11_rv_text(rv));
        goto out;
    }
    if (va[0].ulValueLen != KT_KEY_SIZE) {
        e = kt_err(KEYTIER_E_AUTH, "token '%s': unwrapped key has %lu bytes",
                   root->tok->label, (unsigned long)va[0].ulValueLen);
        goto out;
    }
    kt_secret_truncate(val, KT_KEY_SIZE);
    *out = val;
    val = NULL;
out:
    if (obj != CK_INVALID_HANDLE)
        (void)kt_p11_destroy_object(root->tok, s, obj);
    kt_secret_free(val);
    *rvp = rv;
    return e;
}

/* ---- root keys ------------------------------------------------------------
 */

/* The one template for root keys keytier creates (availability keys, and
 * customer roots made with `keytier token keygen`): a token object that
 * never leaves the token (private, sensitive, not extractable) and does
 * nothing but wrap and unwrap. rsa_bits 0 makes an AES-256 key (RFC 5649
 * both ways); otherwise an RSA pair with e = 65537 whose public half wraps
 * and private half unwraps (OAEP). */
CK_RV kt_root_keygen(struct kt_token *tok, CK_SESSION_HANDLE s,
                     CK_ULONG rsa_bits, const char *label, const uint8_t *id,
                     size_t id_len, CK_OBJECT_HANDLE *key,
                     CK_OBJECT_HANDLE *pub)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY, pcls = CKO_PUBLIC_KEY,
                    qcls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE aes = CKK_AES, rsa = CKK_RSA;
    CK_ULONG len = 32, bits = rsa_bits;
    CK_BYTE exp[] = {1, 0, 1};
    size_t ll = strlen(label);
    if (rsa_bits == 0) {
        CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
        CK_ATTRIBUTE t[] = {
            {CKA_CLASS, &cls, sizeof cls},
            {CKA_KEY_TYPE, &aes, sizeof aes},
            {CKA_VALUE_LEN, &len, sizeof len},
            {CKA_TOKEN, &yes, sizeof yes},
            {CKA_PRIVATE, &yes, sizeof yes},
            {CKA_SENSITIVE, &yes, sizeof yes},
            {CKA_EXTRACTABLE, &no, sizeof no},
            {CKA_WRAP, &yes, sizeof yes},
            {CKA_UNWRAP, &yes, sizeof yes},
            {CKA_ENCRYPT, &no, sizeof no},
            {CKA_DECRYPT, &no, sizeof no},
            {CKA_ID, (void *)id, id_len},
            {CKA_LABEL, (void *)label, ll},
        };
        CK_RV rv =
            kt_p11_generate_key(tok, s, &mech, t, sizeof t / sizeof t[0], key);
        *pub = *key;
        return rv;
    }
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {
        {CKA_CLASS, &pcls, sizeof pcls},
        {CKA_KEY_TYPE, &rsa, sizeof rsa},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_MODULUS_BITS, &bits, sizeof bits},
        {CKA_PUBLIC_EXPONENT, exp, sizeof exp},
        {CKA_WRAP, &yes, sizeof yes},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_VERIFY, &no, sizeof no},
        {CKA_ID, (void *)id, id_len},
        {CKA_LABEL, (void *)label, ll},
    };
    CK_ATTRIBUTE qt[] = {
        {CKA_CLASS, &qcls, sizeof qcls},   {CKA_KEY_TYPE, &rsa, sizeof rsa},
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_UNWRAP, &yes, sizeof yes},    {CKA_DECRYPT, &no, sizeof no},
        {CKA_SIGN, &no, sizeof no},        {CKA_ID, (void *)id, id_len},
        {CKA_LABEL, (void *)label, ll},
    };
    return kt_p11_generate_key_pair(tok, s, &mech, pt, sizeof pt / sizeof pt[0],
                                    qt, sizeof qt / sizeof qt[0], pub, key);
}

/* ---- availability keys -------------------------------------------------- */

keytier_err kt_avail_generate(keytier_ctx *ctx, enum kt_avail_type type,
                              const uint8_t id[KT_UUID_BYTES],
                              const char *label, struct kt_root *out,
                              CK_SESSION_HANDLE *sp, char **uri_out)
{
    struct kt_token *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    P11KitUri *u = NULL;
    keytier_err e;
    if (ctx->cfg.service_token == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "no service_token configured for availability keys");
    e = kt_token_find(ctx, ctx->cfg.service_token, &tok);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "service token %s", ctx->cfg.service_token);
    e = kt_session_get(tok, &s, &rv);
    if (e != KEYTIER_OK)
        return e;

    memset(out, 0, sizeof *out);
    out->tok = tok;
    out->type = type == KT_AVAIL_AES256 ? CKK_AES : CKK_RSA;
    rv = kt_root_keygen(tok, s, type == KT_AVAIL_AES256 ? 0 : 2048, label, id,
                        KT_UUID_BYTES, &out->key, &out->pub);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN,
                   "service token '%s': generating the availability key: %s",
                   tok->label, kt_p11_rv_text(rv));
        goto fail;
    }
    /* Its URI: the service token's identity, the id and the type. */
    u = p11_kit_uri_new();
    if (u == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto fail_destroy;
    }
    *p11_kit_uri_get_token_info(u) = tok->info;
    CK_OBJECT_CLASS ucls =
        type == KT_AVAIL_AES256 ? CKO_SECRET_KEY : CKO_PRIVATE_KEY;
    CK_ATTRIBUTE ua[] = {{CKA_CLASS, &ucls, sizeof ucls},
                         {CKA_ID, (void *)id, KT_UUID_BYTES}};
    char *str = NULL;
    if (p11_kit_uri_set_attribute(u, &ua[0]) != P11_KIT_URI_OK ||
        p11_kit_uri_set_attribute(u, &ua[1]) != P11_KIT_URI_OK ||
        p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &str) !=
            P11_KIT_URI_OK) {
        e = kt_err(KEYTIER_E_INTERNAL, "formatting availability key URI");
        goto fail_destroy;
    }
    p11_kit_uri_free(u);
    *uri_out = str;
    *sp = s;
    return KEYTIER_OK;
fail_destroy:
    p11_kit_uri_free(u);
    kt_avail_destroy(out, s);
fail:
    kt_session_put(tok, s, rv);
    return e;
}

void kt_avail_destroy(struct kt_root *root, CK_SESSION_HANDLE s)
{
    if (root->key != CK_INVALID_HANDLE)
        (void)kt_p11_destroy_object(root->tok, s, root->key);
    if (root->pub != CK_INVALID_HANDLE && root->pub != root->key)
        (void)kt_p11_destroy_object(root->tok, s, root->pub);
    root->key = root->pub = CK_INVALID_HANDLE;
}
