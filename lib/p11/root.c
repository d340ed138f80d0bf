/*
 * Root keys: resolved from an RFC 7512 URI in a session of their token,
 * with the checks that make a key usable as a root (class and type, size,
 * not extractable, may unwrap, and wrap when it is to wrap); generated from
 * keytier's one root template; the availability keys of the service token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "p11call.h"
#include "token.h"

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

/* The key a root URI names: its object attributes (object=, id=, type=)
 * plus, when it has no type, each key class that can unwrap in turn. */
static keytier_err kt_root_find(struct kt_token *tok, CK_SESSION_HANDLE s,
                                P11KitUri *u, const char *what, const char *uri,
                                CK_OBJECT_HANDLE *key, CK_RV *rv)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY};
    CK_ULONG n_uri = 0;
    CK_ATTRIBUTE *uattrs = p11_kit_uri_get_attributes(u, &n_uri);
    CK_ATTRIBUTE tmpl[8];
    CK_ULONG n = 0;
    bool has_class = false;
    CK_OBJECT_CLASS cls = 0;
    CK_ULONG count = 0;
    keytier_err e = KEYTIER_OK;

    for (CK_ULONG i = 0; i < n_uri && n < 6; i++) {
        tmpl[n++] = uattrs[i];
        has_class |= uattrs[i].type == CKA_CLASS;
    }
    for (size_t c = 0; c < 2; c++) {
        CK_ULONG nn = n;
        if (!has_class) {
            cls = classes[c];
            tmpl[nn++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof cls};
        }
        e = kt_find_one(tok, s, tmpl, nn, key, &count, rv);
        if (e != KEYTIER_OK || count > 0 || has_class)
            break;
    }
    if (e != KEYTIER_OK)
        return e;
    if (count == 0)
        return kt_key_not_found(tok, what, uri);
    if (count > 1)
        return kt_err(KEYTIER_E_KEY_AMBIGUOUS, "%s %s: several keys match",
                      what, uri);
    return KEYTIER_OK;
}

/* An AES root wraps as well as unwraps, and is 256-bit. */
static keytier_err kt_root_check_aes(struct kt_token *tok, CK_SESSION_HANDLE s,
                                     CK_OBJECT_HANDLE key, const char *what,
                                     const char *uri, CK_RV *rv)
{
    CK_BBOOL wrap = CK_FALSE;
    CK_ULONG len = 0;
    CK_ATTRIBUTE w[] = {{CKA_WRAP, &wrap, sizeof wrap},
                        {CKA_VALUE_LEN, &len, sizeof len}};

    *rv = kt_p11_get_attributes(tok, s, key, w, 2);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what,
                      uri, kt_p11_rv_text(*rv));
    if (!wrap)
        return kt_err(KEYTIER_E_KEY_USAGE, "%s %s: CKA_WRAP is false", what,
                      uri);
    if (len != 32)
        return kt_err(KEYTIER_E_KEY_TYPE, "%s %s: AES roots are 256-bit", what,
                      uri);
    return KEYTIER_OK;
}

/* An RSA root is 2048 bits or more, and wrapping is done by the public key
 * object with the same CKA_ID (PKCS#11 pairs keys by CKA_ID), which must
 * be allowed to wrap: *pubp receives it. */
static keytier_err kt_root_rsa_pub(struct kt_token *tok, CK_SESSION_HANDLE s,
                                   CK_OBJECT_HANDLE key, const char *what,
                                   const char *uri, CK_OBJECT_HANDLE *pubp,
                                   CK_RV *rv)
{
    uint8_t id[256];
    CK_ULONG modlen = 0, count = 0;
    CK_ATTRIBUTE ia[] = {{CKA_ID, id, sizeof id}, {CKA_MODULUS, NULL, 0}};

    *rv = kt_p11_get_attributes(tok, s, key, ia, 2);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what,
                      uri, kt_p11_rv_text(*rv));
    modlen = ia[1].ulValueLen;
    if (modlen == CK_UNAVAILABLE_INFORMATION || modlen < 256)
        return kt_err(KEYTIER_E_KEY_TYPE,
                      "%s %s: RSA roots are 2048 bits or more", what, uri);
    CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE rsa = CKK_RSA;
    CK_ATTRIBUTE pt[] = {{CKA_CLASS, &pubc, sizeof pubc},
                         {CKA_KEY_TYPE, &rsa, sizeof rsa},
                         {CKA_ID, id, ia[0].ulValueLen}};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    keytier_err e = kt_find_one(tok, s, pt, 3, &pub, &count, rv);
    if (e != KEYTIER_OK)
        return e;
    if (count != 1)
        return kt_err(count ? KEYTIER_E_KEY_AMBIGUOUS : KEYTIER_E_KEY_NOT_FOUND,
                      "%s %s: %s public key with the private key's CKA_ID",
                      what, uri, count ? "more than one" : "no");
    CK_BBOOL pwrap = CK_FALSE;
    CK_ATTRIBUTE pw[] = {{CKA_WRAP, &pwrap, sizeof pwrap}};
    *rv = kt_p11_get_attributes(tok, s, pub, pw, 1);
    if (*rv != CKR_OK || !pwrap)
        return kt_err(KEYTIER_E_KEY_USAGE, "%s %s: its public key cannot wrap",
                      what, uri);
    *pubp = pub;
    return KEYTIER_OK;
}

/* A root that will wrap: an AES secret key or an RSA private key, never
 * extractable, allowed to unwrap, and able to wrap (itself for AES, its
 * public key for RSA: out->pub).  Sets out->type. */
static keytier_err kt_root_check_wrap(struct kt_root *out, CK_SESSION_HANDLE s,
                                      const char *what, const char *uri,
                                      CK_RV *rv)
{
    CK_OBJECT_CLASS oclass = 0;
    CK_KEY_TYPE ktype = 0;
    CK_BBOOL extractable = CK_TRUE, unwrap = CK_FALSE, sensitive = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &oclass, sizeof oclass},
        {CKA_KEY_TYPE, &ktype, sizeof ktype},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_UNWRAP, &unwrap, sizeof unwrap},
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
    };

    /* Class and type first: other classes may lack the usage attributes. */
    *rv = kt_p11_get_attributes(out->tok, s, out->key, a, 2);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what,
                      uri, kt_p11_rv_text(*rv));
    out->type = ktype;
    if (!(oclass == CKO_SECRET_KEY && ktype == CKK_AES) &&
        !(oclass == CKO_PRIVATE_KEY && ktype == CKK_RSA))
        return kt_err(KEYTIER_E_KEY_TYPE,
                      "%s %s: roots are AES secret keys or RSA private keys",
                      what, uri);
    *rv = kt_p11_get_attributes(out->tok, s, out->key, a + 2, 3);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "%s %s: C_GetAttributeValue: %s", what,
                      uri, kt_p11_rv_text(*rv));
    if (extractable)
        return kt_err(KEYTIER_E_KEY_EXTRACTABLE,
                      "%s %s: CKA_EXTRACTABLE is true; a root must never leave "
                      "its token",
                      what, uri);
    /* A key that is not sensitive gives its value to C_GetAttributeValue:
     * as good as extractable. */
    if (!sensitive)
        return kt_err(KEYTIER_E_KEY_EXTRACTABLE,
                      "%s %s: CKA_SENSITIVE is false; a root's value must "
                      "never be readable: make a sensitive key",
                      what, uri);
    if (!unwrap)
        return kt_err(KEYTIER_E_KEY_USAGE, "%s %s: CKA_UNWRAP is false", what,
                      uri);
    if (oclass == CKO_SECRET_KEY)
        return kt_root_check_aes(out->tok, s, out->key, what, uri, rv);
    return kt_root_rsa_pub(out->tok, s, out->key, what, uri, &out->pub, rv);
}

keytier_err kt_root_resolve(keytier_ctx *ctx, const char *what, const char *uri,
                            bool for_wrap, struct kt_root *out,
                            CK_SESSION_HANDLE *sp, CK_RV *rvp)
{
    P11KitUri *u = NULL;
    struct kt_token *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
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
    if (e == KEYTIER_OK)
        e = kt_root_find(tok, s, u, what, uri, &key, &rv);
    if (e != KEYTIER_OK)
        goto out;
    out->tok = tok;
    out->key = key;
    out->pub = key;
    /* Reading: the copy's mechanism is recorded and the token enforces
     * CKA_UNWRAP at C_UnwrapKey; no attribute round trip. */
    out->type = 0;
    if (for_wrap)
        e = kt_root_check_wrap(out, s, what, uri, &rv);
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

/* ---- key roles ---------------------------------------------------------- */

/* Labels of the keys keytier makes for itself (availability keys
 * "keytier-avail-<DEP>", the audit anchor key "keytier-audit-anchor"). */
#define KT_OWN_LABEL_PREFIX   "keytier-"
#define KT_AVAIL_LABEL_PREFIX "keytier-avail-"

/* Whether tok is the token the configuration's service_token names: the
 * same match kt_token_find makes with that URI. */
static bool kt_token_is_service(keytier_ctx *ctx, const struct kt_token *tok)
{
    if (ctx->cfg.service_token == NULL)
        return false;
    P11KitUri *u = p11_kit_uri_new();
    bool is = u != NULL &&
              p11_kit_uri_parse(ctx->cfg.service_token, P11_KIT_URI_FOR_TOKEN,
                                u) == P11_KIT_URI_OK &&
              p11_kit_uri_match_token_info(u, &tok->info) == 1;
    p11_kit_uri_free(u);
    return is;
}

keytier_err kt_root_identity(const struct kt_root *root, CK_SESSION_HANDLE s,
                             char ident[KEYTIER_URI_MAX],
                             char label[KT_KEY_LABEL_MAX + 1], CK_RV *rv)
{
    CK_OBJECT_CLASS cls = 0;
    uint8_t id[KT_KEY_LABEL_MAX];
    char lab[KT_KEY_LABEL_MAX];
    CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_ID, id, sizeof id},
                        {CKA_LABEL, lab, sizeof lab}};
    *rv = kt_p11_get_attributes(root->tok, s, root->key, a, 3);
    if (*rv == CKR_BUFFER_TOO_SMALL)
        return kt_err(KEYTIER_E_KEY_TYPE,
                      "token '%s': a root's CKA_ID or CKA_LABEL is longer "
                      "than %d bytes",
                      root->tok->label, KT_KEY_LABEL_MAX);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_GetAttributeValue: %s",
                      root->tok->label, kt_p11_rv_text(*rv));
    /* An attribute the key does not have reads as unavailable: empty. */
    for (size_t i = 1; i < 3; i++)
        if (a[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            a[i].ulValueLen = 0;
    memcpy(label, lab, a[2].ulValueLen);
    label[a[2].ulValueLen] = '\0';
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    *p11_kit_uri_get_token_info(u) = root->tok->info;
    int r = p11_kit_uri_set_attribute(u, &a[0]);
    for (size_t i = 1; i < 3 && r == P11_KIT_URI_OK; i++)
        if (a[i].ulValueLen > 0)
            r = p11_kit_uri_set_attribute(u, &a[i]);
    char *str = NULL;
    if (r == P11_KIT_URI_OK)
        r = p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &str);
    p11_kit_uri_free(u);
    keytier_err e = KEYTIER_OK;
    if (r != P11_KIT_URI_OK || strlen(str) >= KEYTIER_URI_MAX)
        e = kt_err(KEYTIER_E_INTERNAL,
                   "token '%s': a key's identity does not "
                   "fit in a URI",
                   root->tok->label);
    else
        kt_strlcpy(ident, str, KEYTIER_URI_MAX);
    free(str);
    return e;
}

keytier_err kt_root_check_customer(keytier_ctx *ctx, const struct kt_root *root,
                                   CK_SESSION_HANDLE s, const char *what,
                                   const char *uri, char ident[KEYTIER_URI_MAX],
                                   CK_RV *rv)
{
    char label[KT_KEY_LABEL_MAX + 1];
    keytier_err e = kt_root_identity(root, s, ident, label, rv);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "%s %s", what, uri);
    if (!strncmp(label, KT_AVAIL_LABEL_PREFIX, strlen(KT_AVAIL_LABEL_PREFIX)))
        return kt_err(KEYTIER_E_KEY_ROLE,
                      "%s %s: it is an availability key of keytier (label "
                      "'%s'), held by the service for a DEP; a customer key "
                      "is the customer's own key in the customer's token",
                      what, uri, label);
    if (!strncmp(label, KT_OWN_LABEL_PREFIX, strlen(KT_OWN_LABEL_PREFIX)))
        return kt_err(KEYTIER_E_KEY_ROLE,
                      "%s %s: it is one of keytier's own keys (label '%s'; "
                      "labels beginning \"" KT_OWN_LABEL_PREFIX
                      "\" are keytier's); a customer key is the customer's own "
                      "key in the customer's token",
                      what, uri, label);
    if (kt_token_is_service(ctx, root->tok))
        return kt_err(KEYTIER_E_KEY_ROLE,
                      "%s %s: it is in the service token '%s', which holds "
                      "keytier's own keys (availability, audit anchor); a "
                      "customer key lives in a token the customer controls",
                      what, uri, root->tok->label);
    return KEYTIER_OK;
}

keytier_err kt_root_check_service(keytier_ctx *ctx, const struct kt_root *root,
                                  CK_SESSION_HANDLE s, const char *what,
                                  const char *uri, const char *label,
                                  char ident[KEYTIER_URI_MAX], CK_RV *rv)
{
    char have[KT_KEY_LABEL_MAX + 1];
    keytier_err e = kt_root_identity(root, s, ident, have, rv);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "%s %s", what, uri);
    if (!kt_token_is_service(ctx, root->tok))
        return kt_err(KEYTIER_E_KEY_ROLE,
                      "%s %s: it is in token '%s', not in the service token: "
                      "only a key keytier generated in the service token may "
                      "hold service-managed keys",
                      what, uri, root->tok->label);
    if (strcmp(have, label) != 0)
        return kt_err(KEYTIER_E_KEY_ROLE,
                      "%s %s: its label is '%s', not '%s': it is not the key "
                      "keytier generated for this role",
                      what, uri, have, label);
    return KEYTIER_OK;
}

/* ---- generated roots ---------------------------------------------------- */

/* The one template for root keys keytier creates (availability keys, and
 * customer roots made with `keytier token keygen`): a token object that
 * never leaves the token (private, sensitive, not extractable) and does
 * nothing but wrap and unwrap: every other usage is stated false, since a
 * token's defaults may switch it on (SoftHSM2 gives an AES key sign and
 * verify). rsa_bits 0 makes an AES-256 key (RFC 5649
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
            {CKA_SIGN, &no, sizeof no},
            {CKA_VERIFY, &no, sizeof no},
            {CKA_DERIVE, &no, sizeof no},
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
        {CKA_SIGN, &no, sizeof no},        {CKA_DERIVE, &no, sizeof no},
        {CKA_ID, (void *)id, id_len},      {CKA_LABEL, (void *)label, ll},
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
        /* a generation that failed after it stored the key */
        KT_IGNORE_RESULT(kt_avail_destroy(out, s, id, label));
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
    KT_IGNORE_RESULT(kt_avail_destroy(out, s, id, label));
fail:
    kt_session_put(tok, s, rv);
    return e;
}

CK_RV kt_avail_destroy(struct kt_root *root, CK_SESSION_HANDLE s,
                       const uint8_t id[KT_UUID_BYTES], const char *label)
{
    if (root->key != CK_INVALID_HANDLE)
        KT_IGNORE_RESULT(kt_p11_destroy_object(root->tok, s, root->key));
    if (root->pub != CK_INVALID_HANDLE && root->pub != root->key)
        KT_IGNORE_RESULT(kt_p11_destroy_object(root->tok, s, root->pub));
    root->key = root->pub = CK_INVALID_HANDLE;
    /* A handle may be stale: handles of private objects are invalid for
     * good once the application was logged out (PKCS#11 v2.40 §5.6
     * C_Logout), which closing its last session does, as a token error
     * makes kt_session_put do.  What the token still holds under the key's
     * CKA_ID and label (both halves of an RSA pair at most) goes too. */
    CK_ATTRIBUTE t[] = {{CKA_ID, (void *)id, KT_UUID_BYTES},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE objs[4];
    CK_ULONG n = 0;
    CK_RV rv = kt_p11_find_objects(root->tok, s, t, 2, objs, 4, &n);
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
        rv = kt_p11_destroy_object(root->tok, s, objs[i]);
    return rv;
}
