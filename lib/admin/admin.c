/*
 * Token administration for the keytier command line (keytier.h block
 * "administration"): list tokens, initialise one, generate a root key.
 *
 * Each entry point builds a private context that holds just the one module
 * (loaded by kt_tokens_load, i.e. p11-kit) and a logger; no store and no
 * availability machinery, because preparing a token must work before any
 * library configuration exists.  Every C_* call goes through p11call.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <p11-kit/uri.h>

#include "ckr.h"
#include "p11str.h"
#include "p11call.h"

#define KT_ADMIN_MAX_SLOTS 64
#define KT_ROOT_ID_BYTES   16

static const char *kt_admin_rv(CK_RV rv, char buf[KT_CKR_NAME_MAX])
{
    return kt_ckr_name(rv, buf);
}

/* The command's part of the end of its context, after the tokens'
 * (kt_ctx_drain): no store and no availability state were made. */
static void kt_admin_free_rest(keytier_ctx *ctx)
{
    kt_log_close(ctx->log);
    kt_config_free(&ctx->cfg);
    free(ctx);
}

static void kt_admin_close(keytier_ctx *ctx)
{
    if (ctx == NULL)
        return;
    kt_ctx_drain(ctx); /* Never waits for a hung module */
}

/* The module answered its start (C_Initialize, C_GetInfo) in time; a
 * module that answered with an error is reported by the call that needs
 * it. */
static keytier_err kt_admin_ready(keytier_ctx *ctx)
{
    struct kt_module *mod = &ctx->modules[0];

    pthread_mutex_lock(&mod->mu);
    bool hung = mod->hung;
    pthread_mutex_unlock(&mod->mu);
    if (hung)
        return kt_err(KEYTIER_E_UNAVAILABLE, "%s: no answer within %u ms",
                      mod->path, kt_admin_deadline_ms(ctx));
    return KEYTIER_OK;
}

static keytier_err kt_admin_open(const char *module_path, keytier_ctx **out)
{
    if (!kt_text_ok(module_path, 4096))
        return kt_err(KEYTIER_E_ARGS, "module path");
    keytier_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    ctx->cfg.modules[0] = strdup(module_path);
    if (ctx->cfg.modules[0] == NULL) {
        free(ctx);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    ctx->cfg.n_modules = 1;
    /* The module starts on the pool; a module that does not
     * answer within the administration deadline is reported, not waited
     * for. */
    kt_avail_config_defaults(&ctx->cfg.avail);
    ctx->cfg.avail.call_deadline_ms = ctx->cfg.avail.admin_deadline_ms;
    keytier_err e = kt_log_open(NULL, KT_LOG_WARNING, &ctx->log);
    if (e != KEYTIER_OK) {
        free(ctx->cfg.modules[0]);
        free(ctx);
        return e;
    }
    kt_ctx_init_calls(ctx, kt_admin_free_rest);
    e = kt_tokens_load(ctx);
    if (e == KEYTIER_OK)
        e = kt_admin_ready(ctx);
    /* closing waits for late calls only the usual call deadline */
    struct kt_avail_cfg defaults;
    kt_avail_config_defaults(&defaults);
    ctx->cfg.avail.call_deadline_ms = defaults.call_deadline_ms;
    if (e != KEYTIER_OK) {
        kt_admin_close(ctx);
        return e;
    }
    *out = ctx;
    return KEYTIER_OK;
}

/* Token URI: manufacturer, model, serial, label (RFC 7512). */
static keytier_err kt_admin_token_uri(const CK_TOKEN_INFO *ti,
                                      char out[KEYTIER_URI_MAX])
{
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    *p11_kit_uri_get_token_info(u) = *ti;
    char *s = NULL;
    int r = p11_kit_uri_format(u, P11_KIT_URI_FOR_TOKEN, &s);
    p11_kit_uri_free(u);
    if (r != P11_KIT_URI_OK || strlen(s) >= KEYTIER_URI_MAX) {
        free(s);
        return kt_err(KEYTIER_E_URI, "cannot format the token's URI");
    }
    kt_strlcpy(out, s, KEYTIER_URI_MAX);
    free(s);
    return KEYTIER_OK;
}

static keytier_err kt_admin_info(unsigned long slot, const CK_TOKEN_INFO *ti,
                                 keytier_token_info *out)
{
    memset(out, 0, sizeof *out);
    out->slot = slot;
    out->initialized = (ti->flags & CKF_TOKEN_INITIALIZED) != 0;
    out->user_pin_set = (ti->flags & CKF_USER_PIN_INITIALIZED) != 0;
    out->pin_locked = (ti->flags & CKF_USER_PIN_LOCKED) != 0;
    kt_p11str_trim(out->label, ti->label, sizeof ti->label);
    kt_p11str_trim(out->manufacturer, ti->manufacturerID,
                   sizeof ti->manufacturerID);
    kt_p11str_trim(out->model, ti->model, sizeof ti->model);
    kt_p11str_trim(out->serial, ti->serialNumber, sizeof ti->serialNumber);
    if (!out->initialized)
        return KEYTIER_OK; /* a free slot's token has no name yet */
    return kt_admin_token_uri(ti, out->uri);
}

/* Slots with a token present, and their token infos. */
static keytier_err kt_admin_slots(keytier_ctx *ctx, CK_SLOT_ID *slots,
                                  CK_TOKEN_INFO *infos, CK_ULONG *n)
{
    struct kt_module *mod = &ctx->modules[0];
    char nb[KT_CKR_NAME_MAX];
    *n = KT_ADMIN_MAX_SLOTS;
    CK_RV rv = kt_p11_get_slot_list(ctx, mod, slots, n);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "%s: C_GetSlotList: %s", mod->path,
                      kt_admin_rv(rv, nb));
    for (CK_ULONG i = 0; i < *n; i++) {
        rv = kt_p11_get_token_info(ctx, mod, slots[i], &infos[i]);
        if (rv != CKR_OK)
            return kt_err(KEYTIER_E_TOKEN, "%s: slot %lu: C_GetTokenInfo: %s",
                          mod->path, (unsigned long)slots[i],
                          kt_admin_rv(rv, nb));
    }
    return KEYTIER_OK;
}

/* ---- each command's token work is one job -------------
 * on the command's private context (kt_admin_open), run with
 * avail.admin_deadline_ms: a module that stops answering makes the command
 * fail with KEYTIER_E_UNAVAILABLE instead of hanging.  The job owns copies
 * of the labels and PINs (wiped); a late one finishes on its worker and
 * frees the context (kt_ctx_drain). */
struct kt_admin_job {
    struct kt_tjob base;
    const char *module_path; /* the context's: lives as long as the job */
    char token_label[KEYTIER_LABEL_MAX + 1];
    char key_label[KEYTIER_NAME_MAX + 1];
    kt_secret *so, *user;
    keytier_root_type type;
    bool want_info;
    /* outputs */
    keytier_token_info info;
    keytier_token_info *list;
    size_t count;
    char uri[KEYTIER_URI_MAX];
    size_t destroyed;
};

static void kt_admin_job_cleanup(struct kt_tjob *tj)
{
    struct kt_admin_job *j = (struct kt_admin_job *)tj;
    kt_secret_free(j->so);
    kt_secret_free(j->user);
    free(j->list);
}

/* Opens the command's context and a job for run, or fails. */
static keytier_err kt_admin_job_begin(const char *module_path,
                                      keytier_err (*run)(struct kt_tjob *),
                                      struct kt_admin_job **out)
{
    keytier_ctx *ctx = NULL;
    keytier_err e = kt_admin_open(module_path, &ctx);
    if (e != KEYTIER_OK)
        return e;
    struct kt_admin_job *j = kt_tjob_new(ctx, sizeof *j, run);
    if (j == NULL) {
        kt_admin_close(ctx);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    j->base.cleanup = kt_admin_job_cleanup;
    j->module_path = ctx->cfg.modules[0];
    *out = j;
    return KEYTIER_OK;
}

/* Runs the job; the caller reads its outputs if e is KEYTIER_OK, then
 * calls kt_admin_job_end. */
static keytier_err kt_admin_job_run(struct kt_admin_job *j)
{
    return kt_tjob_run(&j->base, "module", j->module_path,
                       kt_admin_deadline_ms(j->base.ctx));
}

static void kt_admin_job_end(struct kt_admin_job *j)
{
    keytier_ctx *ctx = j->base.ctx;
    kt_tjob_put(&j->base);
    kt_admin_close(ctx);
}

static keytier_err kt_admin_list_run(struct kt_tjob *tj)
{
    struct kt_admin_job *j = (struct kt_admin_job *)tj;
    CK_SLOT_ID slots[KT_ADMIN_MAX_SLOTS];
    CK_TOKEN_INFO infos[KT_ADMIN_MAX_SLOTS];
    CK_ULONG n = 0;
    keytier_err e = kt_admin_slots(tj->ctx, slots, infos, &n);
    if (e != KEYTIER_OK)
        return e;
    keytier_token_info *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    for (CK_ULONG i = 0; i < n && e == KEYTIER_OK; i++)
        e = kt_admin_info(slots[i], &infos[i], &list[i]);
    if (e != KEYTIER_OK) {
        free(list);
        return e;
    }
    j->list = list;
    j->count = n;
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_token_list(const char *module_path,
                                           keytier_token_info **out,
                                           size_t *count)
{
    kt_err_clear();
    if (out == NULL || count == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_token_list");
    *out = NULL;
    *count = 0;
    struct kt_admin_job *j = NULL;
    keytier_err e = kt_admin_job_begin(module_path, kt_admin_list_run, &j);
    if (e != KEYTIER_OK)
        return e;
    e = kt_admin_job_run(j);
    if (e == KEYTIER_OK) {
        *out = j->list;
        *count = j->count;
        j->list = NULL;
    }
    kt_admin_job_end(j);
    return e;
}

KEYTIER_API void keytier_token_list_free(keytier_token_info *list)
{
    free(list);
}

static bool kt_admin_label_ok(const char *label)
{
    return kt_text_ok(label, KEYTIER_LABEL_MAX);
}

static keytier_err kt_admin_init_run(struct kt_tjob *tj)
{
    struct kt_admin_job *j = (struct kt_admin_job *)tj;
    keytier_ctx *ctx = tj->ctx;
    const char *label = j->token_label, *module_path = j->module_path;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    struct kt_token tok = {0};
    char nb[KT_CKR_NAME_MAX];
    CK_RV rv = CKR_OK;
    CK_SLOT_ID slots[KT_ADMIN_MAX_SLOTS];
    CK_TOKEN_INFO infos[KT_ADMIN_MAX_SLOTS];
    CK_ULONG n = 0;
    keytier_err e = kt_admin_slots(ctx, slots, infos, &n);
    if (e != KEYTIER_OK)
        goto out;
    CK_ULONG free_slot = n;
    for (CK_ULONG i = 0; i < n; i++) {
        char have[KEYTIER_LABEL_MAX + 1];
        kt_p11str_trim(have, infos[i].label, sizeof infos[i].label);
        if ((infos[i].flags & CKF_TOKEN_INITIALIZED) && !strcmp(have, label)) {
            e = kt_err(KEYTIER_E_EXISTS, "token '%s' already exists in %s",
                       label, module_path);
            goto out;
        }
        if (!(infos[i].flags & CKF_TOKEN_INITIALIZED) && free_slot == n)
            free_slot = i;
    }
    if (free_slot == n) {
        e = kt_err(KEYTIER_E_TOKEN_NOT_FOUND,
                   "%s has no free slot (every token is initialised)",
                   module_path);
        goto out;
    }

    CK_UTF8CHAR padded[32];
    kt_p11str_pad(padded, label, sizeof padded);
    tok.ctx = ctx;
    tok.mod = &ctx->modules[0];
    tok.slot = slots[free_slot];
    kt_strlcpy(tok.label, label, sizeof tok.label);
    rv = kt_p11_init_token(ctx, tok.mod, tok.slot, j->so, padded);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_InitToken: %s", label,
                   kt_admin_rv(rv, nb));
        goto out;
    }
    /* PKCS#11 v2.40 §5.6: the user PIN is set by the SO in an R/W session. */
    rv = kt_p11_open_session(&tok, &s);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_OpenSession: %s", label,
                   kt_admin_rv(rv, nb));
        goto out;
    }
    rv = kt_p11_login_as(&tok, s, CKU_SO, j->so);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_LOGIN, "token '%s': C_Login (SO): %s", label,
                   kt_admin_rv(rv, nb));
        goto out;
    }
    rv = kt_p11_init_pin(&tok, s, j->user);
    KT_IGNORE_RESULT(kt_p11_logout(&tok, s));
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_InitPIN: %s", label,
                   kt_admin_rv(rv, nb));
        goto out;
    }
    if (j->want_info) {
        CK_TOKEN_INFO ti;
        rv = kt_p11_get_token_info(ctx, tok.mod, tok.slot, &ti);
        if (rv != CKR_OK) {
            e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_GetTokenInfo: %s", label,
                       kt_admin_rv(rv, nb));
            goto out;
        }
        e = kt_admin_info(tok.slot, &ti, &j->info);
    }
out:
    if (s != CK_INVALID_HANDLE)
        KT_IGNORE_RESULT(kt_p11_close_session(&tok, s));
    return e;
}

KEYTIER_API keytier_err keytier_token_init(const char *module_path,
                                           const char *label,
                                           const char *so_pin,
                                           const char *user_pin,
                                           keytier_token_info *out)
{
    kt_err_clear();
    if (!kt_admin_label_ok(label))
        return kt_err(KEYTIER_E_ARGS, "token label: 1 to %d bytes required",
                      KEYTIER_LABEL_MAX);
    if (so_pin == NULL || user_pin == NULL)
        return kt_err(KEYTIER_E_ARGS, "token '%s': PINs required", label);
    struct kt_admin_job *j = NULL;
    keytier_err e = kt_admin_job_begin(module_path, kt_admin_init_run, &j);
    if (e != KEYTIER_OK)
        return e;
    kt_strlcpy(j->token_label, label, sizeof j->token_label);
    j->want_info = out != NULL;
    j->so = kt_secret_from(so_pin, strlen(so_pin));
    j->user = kt_secret_from(user_pin, strlen(user_pin));
    if (j->so == NULL || j->user == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    else
        e = kt_admin_job_run(j);
    if (e == KEYTIER_OK && out != NULL)
        *out = j->info;
    kt_admin_job_end(j);
    return e;
}

static keytier_err kt_admin_generate(struct kt_token *tok, CK_SESSION_HANDLE s,
                                     keytier_root_type type, const char *label,
                                     const uint8_t *id, size_t id_len,
                                     CK_OBJECT_CLASS *cls)
{
    static const CK_ULONG bits[] = {
        [KEYTIER_ROOT_TYPE_AES256] = 0,
        [KEYTIER_ROOT_TYPE_RSA2048] = 2048,
        [KEYTIER_ROOT_TYPE_RSA3072] = 3072,
        [KEYTIER_ROOT_TYPE_RSA4096] = 4096,
    };
    char nb[KT_CKR_NAME_MAX];
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
    CK_RV rv =
        kt_root_keygen(tok, s, bits[type], label, id, id_len, &key, &pub);
    *cls = bits[type] == 0 ? CKO_SECRET_KEY : CKO_PRIVATE_KEY;
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': %s: %s", tok->label,
                      bits[type] == 0 ? "C_GenerateKey" : "C_GenerateKeyPair",
                      kt_admin_rv(rv, nb));
    return KEYTIER_OK;
}

/* A logged-in user session on the initialised token labelled token_label. */
struct kt_admin_user {
    struct kt_token tok;
    CK_TOKEN_INFO info;
    CK_SESSION_HANDLE s;
    bool logged_in;
};

static void kt_admin_user_end(struct kt_admin_user *u)
{
    if (u->logged_in)
        KT_IGNORE_RESULT(kt_p11_logout(&u->tok, u->s));
    if (u->s != CK_INVALID_HANDLE)
        KT_IGNORE_RESULT(kt_p11_close_session(&u->tok, u->s));
}

static keytier_err kt_admin_user_begin(keytier_ctx *ctx,
                                       const char *module_path,
                                       const char *token_label,
                                       const kt_secret *pin,
                                       struct kt_admin_user *u)
{
    memset(u, 0, sizeof *u);
    u->s = CK_INVALID_HANDLE;
    char nb[KT_CKR_NAME_MAX];
    CK_SLOT_ID slots[KT_ADMIN_MAX_SLOTS];
    CK_TOKEN_INFO infos[KT_ADMIN_MAX_SLOTS];
    CK_ULONG n = 0, found = 0, at = 0;
    keytier_err e = kt_admin_slots(ctx, slots, infos, &n);
    if (e != KEYTIER_OK)
        goto fail;
    for (CK_ULONG i = 0; i < n; i++) {
        char have[KEYTIER_LABEL_MAX + 1];
        kt_p11str_trim(have, infos[i].label, sizeof infos[i].label);
        if ((infos[i].flags & CKF_TOKEN_INITIALIZED) &&
            !strcmp(have, token_label)) {
            found++;
            at = i;
        }
    }
    if (found != 1) {
        e = kt_err(found ? KEYTIER_E_TOKEN_AMBIGUOUS
                         : KEYTIER_E_TOKEN_NOT_FOUND,
                   "token '%s' in %s%s", token_label, module_path,
                   found ? ": several tokens have this label" : "");
        goto fail;
    }
    u->info = infos[at];
    u->tok.ctx = ctx;
    u->tok.mod = &ctx->modules[0];
    u->tok.slot = slots[at];
    kt_strlcpy(u->tok.label, token_label, sizeof u->tok.label);
    CK_RV rv = kt_p11_open_session(&u->tok, &u->s);
    if (rv != CKR_OK) {
        u->s = CK_INVALID_HANDLE;
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_OpenSession: %s",
                   token_label, kt_admin_rv(rv, nb));
        goto fail;
    }
    rv = kt_p11_login_as(&u->tok, u->s, CKU_USER, pin);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        e = kt_err(KEYTIER_E_LOGIN, "token '%s': C_Login: %s", token_label,
                   kt_admin_rv(rv, nb));
        goto fail;
    }
    u->logged_in = rv == CKR_OK;
    return KEYTIER_OK;
fail:
    kt_admin_user_end(u);
    return e;
}

static keytier_err kt_admin_args(const char *token_label, const char *key_label,
                                 const char *user_pin)
{
    if (!kt_admin_label_ok(token_label))
        return kt_err(KEYTIER_E_ARGS, "token label: 1 to %d bytes required",
                      KEYTIER_LABEL_MAX);
    if (!kt_text_ok(key_label, KEYTIER_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "key label: 1 to %d bytes required",
                      KEYTIER_NAME_MAX);
    if (user_pin == NULL)
        return kt_err(KEYTIER_E_ARGS, "token '%s': user PIN required",
                      token_label);
    return KEYTIER_OK;
}

/* Objects labelled key_label (any class), up to max. */
static keytier_err kt_admin_find_label(struct kt_admin_user *u,
                                       const char *key_label,
                                       CK_OBJECT_HANDLE *out, CK_ULONG max,
                                       CK_ULONG *count)
{
    char nb[KT_CKR_NAME_MAX];
    CK_ATTRIBUTE lt[] = {{CKA_LABEL, (void *)key_label, strlen(key_label)}};
    CK_RV rv = kt_p11_find_objects(&u->tok, u->s, lt, 1, out, max, count);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_FindObjects: %s",
                      u->tok.label, kt_admin_rv(rv, nb));
    return KEYTIER_OK;
}

static keytier_err kt_admin_generate_run(struct kt_tjob *tj)
{
    struct kt_admin_job *j = (struct kt_admin_job *)tj;
    const char *token_label = j->token_label, *key_label = j->key_label;
    struct kt_admin_user u;
    keytier_err e =
        kt_admin_user_begin(tj->ctx, j->module_path, token_label, j->user, &u);
    if (e != KEYTIER_OK)
        return e;
    CK_OBJECT_HANDLE h;
    CK_ULONG count = 0;
    e = kt_admin_find_label(&u, key_label, &h, 1, &count);
    if (e == KEYTIER_OK && count > 0)
        e = kt_err(KEYTIER_E_EXISTS, "token '%s' already has a key '%s'",
                   token_label, key_label);
    uint8_t id[KT_ROOT_ID_BYTES];
    if (e == KEYTIER_OK && RAND_bytes(id, sizeof id) != 1)
        e = kt_err(KEYTIER_E_CRYPTO, "RAND_bytes");
    CK_OBJECT_CLASS cls = 0;
    if (e == KEYTIER_OK)
        e = kt_admin_generate(&u.tok, u.s, j->type, key_label, id, sizeof id,
                              &cls);
    if (e == KEYTIER_OK)
        e = kt_object_uri(&u.info, key_label, id, sizeof id, cls, j->uri);
    kt_admin_user_end(&u);
    return e;
}

KEYTIER_API keytier_err keytier_root_generate(
    const char *module_path, const char *token_label, const char *user_pin,
    const char *key_label, keytier_root_type type, char uri[KEYTIER_URI_MAX])
{
    kt_err_clear();
    keytier_err e = kt_admin_args(token_label, key_label, user_pin);
    if (e != KEYTIER_OK)
        return e;
    if (uri == NULL || type < KEYTIER_ROOT_TYPE_AES256 ||
        type > KEYTIER_ROOT_TYPE_RSA4096)
        return kt_err(KEYTIER_E_ARGS, "keytier_root_generate");
    struct kt_admin_job *j = NULL;
    e = kt_admin_job_begin(module_path, kt_admin_generate_run, &j);
    if (e != KEYTIER_OK)
        return e;
    kt_strlcpy(j->token_label, token_label, sizeof j->token_label);
    kt_strlcpy(j->key_label, key_label, sizeof j->key_label);
    j->type = type;
    j->user = kt_secret_from(user_pin, strlen(user_pin));
    e = j->user == NULL ? kt_err(KEYTIER_E_NOMEM, NULL) : kt_admin_job_run(j);
    if (e == KEYTIER_OK)
        kt_strlcpy(uri, j->uri, KEYTIER_URI_MAX);
    kt_admin_job_end(j);
    return e;
}

static keytier_err kt_admin_destroy_run(struct kt_tjob *tj)
{
    struct kt_admin_job *j = (struct kt_admin_job *)tj;
    const char *token_label = j->token_label, *key_label = j->key_label;
    struct kt_admin_user u;
    keytier_err e =
        kt_admin_user_begin(tj->ctx, j->module_path, token_label, j->user, &u);
    if (e != KEYTIER_OK)
        return e;
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG count = 0;
    char nb[KT_CKR_NAME_MAX];
    e = kt_admin_find_label(&u, key_label, objs, 8, &count);
    if (e == KEYTIER_OK && count == 0)
        e = kt_err(KEYTIER_E_KEY_NOT_FOUND, "token '%s' has no key '%s'",
                   token_label, key_label);
    for (CK_ULONG i = 0; e == KEYTIER_OK && i < count; i++) {
        CK_RV rv = kt_p11_destroy_object(&u.tok, u.s, objs[i]);
        if (rv != CKR_OK)
            e = kt_err(KEYTIER_E_TOKEN,
                       "token '%s' key '%s': "
                       "C_DestroyObject: %s",
                       token_label, key_label, kt_admin_rv(rv, nb));
        else
            j->destroyed++;
    }
    kt_admin_user_end(&u);
    return e;
}

KEYTIER_API keytier_err keytier_root_destroy(const char *module_path,
                                             const char *token_label,
                                             const char *user_pin,
                                             const char *key_label,
                                             size_t *destroyed)
{
    kt_err_clear();
    keytier_err e = kt_admin_args(token_label, key_label, user_pin);
    if (e != KEYTIER_OK)
        return e;
    struct kt_admin_job *j = NULL;
    e = kt_admin_job_begin(module_path, kt_admin_destroy_run, &j);
    if (e != KEYTIER_OK)
        return e;
    kt_strlcpy(j->token_label, token_label, sizeof j->token_label);
    kt_strlcpy(j->key_label, key_label, sizeof j->key_label);
    j->user = kt_secret_from(user_pin, strlen(user_pin));
    e = j->user == NULL ? kt_err(KEYTIER_E_NOMEM, NULL) : kt_admin_job_run(j);
    /* destroyed counts what was done, also when a later destroy failed */
    if (destroyed != NULL)
        *destroyed = j->base.taken ? j->destroyed : 0;
    kt_admin_job_end(j);
    return e;
}
