/*
 * Destroying a key in the service token is a privileged operation
 * (docs/DESIGN.md §2 "Approvals"): the availability keys and the audit
 * anchor key live there, and losing them loses every tenant's outage
 * fallback or the log's proof.  keytier_root_destroy itself has no
 * configuration; this entry point knows the service token from the
 * context and asks for an approval before any key there is destroyed.
 */
#include <string.h>

#include <p11-kit/uri.h>

#include "p11str.h"
#include "trust.h"

/* Is token_label the configured service token?  The service token is
 * named by the label of its URI; a URI without one could be any token, so
 * every destroy is taken as touching it. */
static bool kt_is_service_token(keytier_ctx *ctx, const char *token_label)
{
    if (ctx->cfg.service_token == NULL)
        return false;
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL ||
        p11_kit_uri_parse(ctx->cfg.service_token, P11_KIT_URI_FOR_TOKEN, u) !=
            P11_KIT_URI_OK) {
        p11_kit_uri_free(u);
        return true;
    }
    const CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
    char label[KEYTIER_LABEL_MAX + 1];
    kt_p11str_trim(label, ti->label, sizeof ti->label);
    p11_kit_uri_free(u);
    return label[0] == '\0' || !strcmp(label, token_label);
}

KEYTIER_API keytier_err keytier_root_destroy_approved(
    keytier_ctx *ctx, const char *approval_id, const char *module_path,
    const char *token_label, const char *user_pin, const char *key_label,
    size_t *destroyed)
{
    kt_err_clear();
    if (destroyed != NULL)
        *destroyed = 0;
    if (ctx == NULL || !kt_text_ok(token_label, KEYTIER_LABEL_MAX) ||
        !kt_text_ok(key_label, KEYTIER_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_root_destroy_approved");
    if (kt_is_service_token(ctx, token_label)) {
        keytier_err e = kt_approval_gate(
            ctx, KEYTIER_APPROVAL_SERVICE_KEY_DESTROY, KEYTIER_APPROVAL_ANY,
            key_label, approval_id, "destroying a key in the service token");
        if (e != KEYTIER_OK)
            return e;
    }
    return keytier_root_destroy(module_path, token_label, user_pin, key_label,
                                destroyed);
}
