/* The library context: configuration, logger, modules, store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kt_lib.h"
#include "trust.h"

#ifndef KT_SYSTEM_LIB_CONF
#define KT_SYSTEM_LIB_CONF "/etc/keytier/keytier-lib.conf"
#endif

/* The context's part of the end, after its tokens' (kt_ctx_drain, maybe
 * on the worker of the last late token job): the availability state, the
 * logger, the configuration (PIN sources), ctx. */
static void kt_ctx_free_rest(keytier_ctx *ctx)
{
    kt_avail_free(ctx);
    kt_log_close(ctx->log);
    kt_config_free(&ctx->cfg);
    free(ctx);
}

KEYTIER_API int keytier_config_default(char *buf, size_t len)
{
    const char *env = getenv("KEYTIER_LIB_CONF");
    if (buf == NULL || len == 0)
        return 0;
    if (env != NULL && *env != '\0')
        return (size_t)snprintf(buf, len, "%s", env) < len;
    return kt_config_default_path(KT_SYSTEM_LIB_CONF, buf, len) ? 1 : 0;
}

KEYTIER_API keytier_err keytier_ctx_open(const char *config_path,
                                         keytier_ctx **out)
{
    kt_err_clear();
    if (out == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_ctx_open");
    char dflt[4096];
    if (config_path == NULL && keytier_config_default(dflt, sizeof dflt))
        config_path = dflt;
    keytier_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_config_load(config_path, &ctx->cfg);
    if (e != KEYTIER_OK) {
        free(ctx);
        return e;
    }
    if (ctx->cfg.log_target == KT_LOG_TO_SYSLOG)
        e = kt_log_open_syslog(ctx->cfg.log_syslog_socket, ctx->cfg.log_level,
                               &ctx->log);
    else
        e = kt_log_open(ctx->cfg.log_file, ctx->cfg.log_level, &ctx->log);
    if (e != KEYTIER_OK) {
        kt_config_free(&ctx->cfg);
        free(ctx);
        return e;
    }
    kt_ctx_init_calls(ctx, kt_ctx_free_rest);
    /* Starts every module on the pool and waits at most the call deadline:
     * a vault that does not answer is left to come back on its own. */
    e = kt_tokens_load(ctx);
    if (e == KEYTIER_OK)
        e = kt_store_open_with(ctx->cfg.store_path,
                               ctx->cfg.store_password_file, &ctx->store);
    if (e == KEYTIER_OK)
        e = kt_avail_open(ctx); /* Cache, audit log */
    if (e != KEYTIER_OK) {
        keytier_ctx_close(ctx);
        return e;
    }
    /* The read path sits below trust/: files-shape reads through the
     * availability key reach the approvals through this. */
    kt_avail_set_gate(ctx, kt_approval_gate);
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
