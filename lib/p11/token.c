/*
 * Tokens: the one token an RFC 7512 URI names, among those the module
 * scans found (a scan again when none matches), and the refusal of URIs
 * that carry a PIN.  URIs are parsed with p11-kit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "p11call.h"
#include "token.h"

keytier_err kt_uri_parse(const char *uri, P11KitUri **out)
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

keytier_err kt_token_match(keytier_ctx *ctx, P11KitUri *u, const char *uri,
                           struct kt_token **out)
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
    P11KitUri *u = NULL;
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
    P11KitUri *u = NULL;
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

/* The URI of an object the library made: the token's label and serial
 * (enough to name one token), the object's label, id and class. */
keytier_err kt_object_uri(const CK_TOKEN_INFO *ti, const char *label,
                          const uint8_t *id, size_t id_len, CK_OBJECT_CLASS cls,
                          char out[KEYTIER_URI_MAX])
{
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    CK_TOKEN_INFO *uti = p11_kit_uri_get_token_info(u);
    memset(uti, 0, sizeof *uti); /* p11-kit leaves out fields not set */
    memcpy(uti->label, ti->label, sizeof uti->label);
    memcpy(uti->serialNumber, ti->serialNumber, sizeof uti->serialNumber);
    CK_ATTRIBUTE attrs[] = {
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)id, id_len},
        {CKA_CLASS, &cls, sizeof cls},
    };
    int r = P11_KIT_URI_OK;
    for (size_t i = 0; i < 3 && r == P11_KIT_URI_OK; i++)
        r = p11_kit_uri_set_attribute(u, &attrs[i]);
    char *s = NULL;
    if (r == P11_KIT_URI_OK)
        r = p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s);
    p11_kit_uri_free(u);
    if (r != P11_KIT_URI_OK || strlen(s) >= KEYTIER_URI_MAX) {
        free(s);
        return kt_err(KEYTIER_E_URI, "cannot format the URI of key '%s'",
                      label);
    }
    kt_strlcpy(out, s, KEYTIER_URI_MAX);
    free(s);
    return KEYTIER_OK;
}
