/* Key management behind C_GenerateKey, C_WrapKey and C_UnwrapKey. The key
 * material is a snapshot taken under the token lock (the wrapping key's is
 * kept in the session, see kt_session_key); the cryptography runs with only
 * the session's own lock held. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "kt_asym.h"

#define KT_WRAPPED_MAX (64u * 1024)
#define KT_GCM_WRAP_IV 12

/* AES-GCM as a wrap mechanism. An IV used twice under one key gives away
 * the XOR of the two wrapped keys (and GCM's authentication key), so
 * C_WrapKey never takes one from the caller: the caller passes a zeroed
 * 12-byte pIv buffer, the module puts a fresh random IV into a copy of the
 * parameters (gcm_wrap_params points it at iv) and, once the key is
 * wrapped, returns it in that buffer (PKCS#11 lets a token return the IV
 * it generated through the mechanism parameter). The tag is always 128
 * bits; C_UnwrapKey takes the IV the wrap returned. */
struct gcm_wrap {
    unsigned char *caller_iv; /* NULL: not a GCM wrap */
    unsigned char iv[KT_GCM_WRAP_IV];
    union {
        CK_GCM_PARAMS full;
        struct kt_gcm_params_v240 v240;
    } params;
    CK_MECHANISM mech;
};

static KT_NODISCARD CK_RV gcm_module_iv(const CK_MECHANISM *mech, bool unwrap,
                                        struct gcm_wrap *g)
{
    const void *p = mech->pParameter;
    CK_ULONG pl = mech->ulParameterLen;
    CK_BYTE_PTR iv;
    CK_ULONG iv_len, tag_bits;
    if (p != NULL && pl == sizeof(CK_GCM_PARAMS)) {
        const CK_GCM_PARAMS *x = p;
        if (x->ulIvBits != 0 && x->ulIvBits != 8 * KT_GCM_WRAP_IV)
            return CKR_MECHANISM_PARAM_INVALID;
        iv = x->pIv, iv_len = x->ulIvLen, tag_bits = x->ulTagBits;
        g->params.full = *x;
        g->params.full.pIv = g->iv;
    } else if (p != NULL && pl == sizeof(struct kt_gcm_params_v240)) {
        const struct kt_gcm_params_v240 *x = p;
        iv = x->pIv, iv_len = x->ulIvLen, tag_bits = x->ulTagBits;
        g->params.v240 = *x;
        g->params.v240.pIv = g->iv;
    } else {
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (iv == NULL || iv_len != KT_GCM_WRAP_IV || tag_bits != 128)
        return CKR_MECHANISM_PARAM_INVALID;
    if (unwrap)
        return CKR_OK;
    /* Any non-zero byte is an IV the caller chose. */
    unsigned char any = 0;
    for (size_t i = 0; i < KT_GCM_WRAP_IV; i++)
        any |= iv[i];
    if (any != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    g->caller_iv = iv;
    g->mech = (CK_MECHANISM){CKM_AES_GCM, &g->params, pl};
    return CKR_OK;
}

/* With legacy_mechanisms = yes a wrap also takes GCM parameters of the
 * caller's choosing, IV included, as C_Encrypt does (other tokens do, and
 * OpenSC's p11test wraps so); a zeroed 12-byte IV still gets the module's. */
static KT_NODISCARD CK_RV gcm_wrap_params(const CK_MECHANISM *mech, bool unwrap,
                                          struct gcm_wrap *g)
{
    CK_RV rv = gcm_module_iv(mech, unwrap, g);
    if (rv == CKR_MECHANISM_PARAM_INVALID && kt_schema_legacy()) {
        g->caller_iv = NULL;
        return CKR_OK;
    }
    return rv;
}

/* Security strength in bits of a secret key's value (SP 800-57 Part 1
 * table 2): an AES key its size; another secret key its size up to 256
 * (HMAC keys beyond the hash's block add nothing). */
static size_t key_strength(CK_KEY_TYPE type, size_t value_len)
{
    size_t bits = value_len * 8;
    if (type == CKK_AES)
        return bits;
    return bits < 256 ? bits : 256;
}

/* A secret wrapping key at least as strong as the key it wraps (STRENGTH
 * bits; AES-256 is the strongest there is, so it wraps any key); RSA keys
 * (2048 bits at least, the module minimum) may wrap any secret key, see
 * SECURITY.md. With legacy_mechanisms = yes any key wraps any other, as in
 * other tokens. */
static bool strong_enough(const struct kt_key *wk, size_t strength)
{
    if (wk->cls != CKO_SECRET_KEY || kt_schema_legacy())
        return true;
    return wk->value_len * 8 >= (strength < 256 ? strength : 256);
}

static bool wrap_strong_enough(const struct kt_key *wk, CK_KEY_TYPE type,
                               size_t value_len)
{
    return strong_enough(wk, key_strength(type, value_len));
}

/* The mechanisms a private key leaves and comes in under, as its PKCS#8
 * PrivateKeyInfo: the authenticated AES wraps (RFC 5649 under both its
 * names, GCM). With legacy_mechanisms = yes every mechanism that wraps a
 * secret key, as other tokens allow (a PrivateKeyInfo of a length the
 * mechanism cannot take is then CKR_KEY_NOT_WRAPPABLE, see kt_keys_wrap). */
static bool private_key_mech(CK_MECHANISM_TYPE type)
{
    if (kt_schema_legacy())
        return true;
    return type == CKM_AES_KEY_WRAP_KWP || type == CKM_AES_KEY_WRAP_PAD ||
           type == CKM_AES_GCM;
}

static KT_NODISCARD CK_RV map_wrapping_error(CK_RV rv, bool unwrap)
{
    switch (rv) {
    case CKR_KEY_HANDLE_INVALID:
        return unwrap ? CKR_UNWRAPPING_KEY_HANDLE_INVALID
                      : CKR_WRAPPING_KEY_HANDLE_INVALID;
    case CKR_KEY_TYPE_INCONSISTENT:
        return unwrap ? CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT
                      : CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
    case CKR_KEY_SIZE_RANGE:
        return unwrap ? CKR_UNWRAPPING_KEY_SIZE_RANGE
                      : CKR_WRAPPING_KEY_SIZE_RANGE;
    default:
        return rv;
    }
}

/* Checks and operation setup for the wrapping/unwrapping key, from the
 * session's cached snapshot (s->lock held: *k stays valid while it is). */
static KT_NODISCARD CK_RV wrap_op_start(struct kt_session *s,
                                        const CK_MECHANISM *mech,
                                        CK_OBJECT_HANDLE h, bool unwrap,
                                        struct kt_op *op,
                                        const struct kt_key **k)
{
    const struct kt_mech *m = kt_mech_find(mech->mechanism);
    if (m == NULL || m->ops == NULL ||
        !(kt_mech_flags(m) & (unwrap ? CKF_UNWRAP : CKF_WRAP)))
        return CKR_MECHANISM_INVALID;
    CK_RV rv = kt_session_key(s, h, unwrap ? CKA_UNWRAP : CKA_WRAP, k);
    if (rv != CKR_OK)
        return map_wrapping_error(rv, unwrap);
    rv = kt_op_check_key(m, *k);
    if (rv != CKR_OK)
        return map_wrapping_error(rv, unwrap);
    memset(op, 0, sizeof(*op));
    op->mech = m;
    op->kind = unwrap ? KT_OP_DECRYPT : KT_OP_ENCRYPT;
    op->cipher_slot = &s->wrap_ciphers[unwrap];
    rv = m->ops->init(op, mech, *k);
    if (rv != CKR_OK) {
        memset(op, 0, sizeof(*op));
        return map_wrapping_error(rv, unwrap);
    }
    op->active = true;
    return CKR_OK;
}

/* PKCS#11 v2.40 §4.9: a key leaves only if extractable, under a trusted
 * key if it asks for one, and if it matches the wrapping key's
 * CKA_WRAP_TEMPLATE; a private key only under the mechanisms above; and
 * only under a key at least as strong (a private key's strength is checked
 * once it is encoded, wrap_plain). */
static KT_NODISCARD CK_RV check_wrappable(const struct kt_key *k,
                                          const struct kt_key *wk,
                                          CK_MECHANISM_TYPE mech)
{
    bool priv = k->cls == CKO_PRIVATE_KEY;
    if (!priv && (k->cls != CKO_SECRET_KEY || k->value == NULL))
        return CKR_KEY_NOT_WRAPPABLE;
    if (!kt_attrs_get_bool(&k->attrs, CKA_EXTRACTABLE, false))
        return CKR_KEY_UNEXTRACTABLE;
    if (kt_attrs_get_bool(&k->attrs, CKA_WRAP_WITH_TRUSTED, false) &&
        !kt_attrs_get_bool(&wk->attrs, CKA_TRUSTED, false))
        return CKR_KEY_NOT_WRAPPABLE;
    const CK_ATTRIBUTE *wt = kt_attrs_find(&wk->attrs, CKA_WRAP_TEMPLATE);
    if (wt != NULL) {
        kt_attrs tmpl;
        kt_attrs_init(&tmpl);
        CK_RV rv = kt_attrs_parse(&tmpl, wt->pValue, wt->ulValueLen);
        bool ok = rv == CKR_OK && kt_attrs_match(&k->attrs, &tmpl);
        kt_attrs_clear(&tmpl);
        if (!ok)
            return CKR_KEY_NOT_WRAPPABLE;
    }
    if (priv)
        return private_key_mech(mech) ? CKR_OK : CKR_KEY_NOT_WRAPPABLE;
    if (!wrap_strong_enough(wk, k->type, k->value_len))
        return CKR_WRAPPING_KEY_SIZE_RANGE;
    return CKR_OK;
}

bool kt_keys_public_to_private(const struct kt_key *k, const kt_attrs *a)
{
    /* Public token keys are sealed until login and made only after one; a
     * public key (CKO_PUBLIC_KEY) wraps for its private half's holder, as
     * any imported recipient key does; CKA_TRUSTED is the SO's word. */
    bool unauthenticated = k->cls != CKO_PUBLIC_KEY &&
                           !kt_attrs_get_bool(&k->attrs, CKA_PRIVATE, true) &&
                           !kt_attrs_get_bool(&k->attrs, CKA_TOKEN, false) &&
                           !kt_attrs_get_bool(&k->attrs, CKA_TRUSTED, false);
    /* CKA_PRIVATE's default: true for secret and private keys (a template
     * without CKA_CLASS makes a secret key here), false for the rest. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    if (kt_attrs_get_ulong(a, CKA_CLASS, &cls) != CKR_OK)
        cls = CKO_SECRET_KEY;
    bool dflt = cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY;
    return unauthenticated && kt_attrs_get_bool(a, CKA_PRIVATE, dflt);
}

/* RFC 3394 (CKM_AES_KEY_WRAP) takes multiples of 8 bytes: PKCS#11 v2.40
 * §2.14.3 pads a key of another length with zeros. *der (secure heap, len
 * bytes) is replaced by the padded copy. */
static KT_NODISCARD CK_RV zero_pad8(unsigned char **der, size_t *len)
{
    size_t n = (*len + 7) / 8 * 8;
    if (n == *len)
        return CKR_OK;
    unsigned char *p = kt_secure_alloc(n);
    if (p == NULL)
        return CKR_HOST_MEMORY;
    memcpy(p, *der, *len);
    memset(p + *len, 0, n - *len);
    kt_free_secret(*der, *len);
    *der = p;
    *len = n;
    return CKR_OK;
}

/* What the wrap encrypts: a secret key's value, or a private key's
 * PrivateKeyInfo (*owned, secure heap, freed by the caller with
 * kt_free_secret). */
static KT_NODISCARD CK_RV wrap_plain(const struct kt_key *k,
                                     const struct kt_key *wk,
                                     CK_MECHANISM_TYPE mech,
                                     const unsigned char **plain,
                                     size_t *plain_len, unsigned char **owned)
{
    *owned = NULL;
    if (k->cls != CKO_PRIVATE_KEY) {
        *plain = k->value;
        *plain_len = k->value_len;
        return CKR_OK;
    }
    unsigned strength = 0;
    CK_RV rv = kt_asym_to_pkcs8(k, owned, plain_len, &strength);
    if (rv == CKR_OK && mech == CKM_AES_KEY_WRAP)
        rv = zero_pad8(owned, plain_len);
    if (rv != CKR_OK)
        return rv;
    *plain = *owned;
    return strong_enough(wk, strength) ? CKR_OK : CKR_WRAPPING_KEY_SIZE_RANGE;
}

/* A GCM wrap with the module's IV (g->caller_iv set): the IV is drawn
 * only for a wrap that writes a blob, since a length query or a short
 * buffer neither uses nor returns one. The operation set up with the
 * zeroed IV is set up again with it. *done: answered (length, short). */
static KT_NODISCARD CK_RV gcm_draw_iv(struct kt_session *s,
                                      const CK_MECHANISM *mech,
                                      CK_OBJECT_HANDLE wrapping,
                                      struct gcm_wrap *g, size_t plain_len,
                                      struct kt_op *op, unsigned char *out,
                                      CK_ULONG *out_len, bool *done)
{
    const struct kt_key *wk = NULL;
    CK_RV rv = kt_out_check(out, out_len, plain_len + 16, done);
    if (*done)
        return rv;
    rv = kt_ossl_random(g->iv, sizeof(g->iv));
    if (rv != CKR_OK)
        return rv;
    kt_op_release(op);
    return wrap_op_start(s, mech, wrapping, false, op, &wk);
}

CK_RV kt_keys_wrap(struct kt_session *s, const CK_MECHANISM *mech,
                   CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                   unsigned char *out, CK_ULONG *out_len)
{
    const struct kt_key *wk = NULL;
    struct kt_key k;
    struct kt_op op;
    struct gcm_wrap g;
    const unsigned char *plain = NULL;
    unsigned char *owned = NULL;
    size_t plain_len = 0;
    bool done = false;
    memset(&k, 0, sizeof(k));
    kt_attrs_init(&k.attrs);
    memset(&op, 0, sizeof(op));
    memset(&g, 0, sizeof(g));
    CK_RV rv = CKR_OK;
    if (mech->mechanism == CKM_AES_GCM) {
        rv = gcm_wrap_params(mech, false, &g);
        if (rv != CKR_OK)
            return rv;
        if (g.caller_iv != NULL)
            mech = &g.mech;
    }
    pthread_mutex_lock(&s->lock);
    rv = wrap_op_start(s, mech, wrapping, false, &op, &wk);
    if (rv == CKR_OK)
        rv = kt_key_snapshot(s->token, key, 0, &k);
    if (rv == CKR_OK)
        rv = check_wrappable(&k, wk, mech->mechanism);
    if (rv == CKR_OK && kt_keys_public_to_private(wk, &k.attrs))
        rv = CKR_KEY_NOT_WRAPPABLE; /* a public key never wraps a private one */
    if (rv == CKR_OK)
        rv = wrap_plain(&k, wk, mech->mechanism, &plain, &plain_len, &owned);
    if (rv == CKR_OK && g.caller_iv != NULL)
        rv = gcm_draw_iv(s, mech, wrapping, &g, plain_len, &op, out, out_len,
                         &done);
    if (rv != CKR_OK || done)
        goto out;
    rv = op.mech->ops->oneshot(&op, plain, plain_len, out, out_len);
    if (rv == CKR_DATA_LEN_RANGE)
        rv = k.cls == CKO_PRIVATE_KEY ? CKR_KEY_NOT_WRAPPABLE
                                      : CKR_KEY_SIZE_RANGE;
    /* The IV is returned with the blob it protects. */
    if (rv == CKR_OK && g.caller_iv != NULL && out != NULL)
        memcpy(g.caller_iv, g.iv, sizeof(g.iv));
out:
    kt_op_release(&op);
    pthread_mutex_unlock(&s->lock);
    kt_free_secret(owned, plain_len);
    kt_key_clear(&k);
    return rv;
}

/* PKCS#11 v2.40 §4.9 CKA_UNWRAP_TEMPLATE / CKA_DERIVE_TEMPLATE: its
 * attributes are forced on the new key; a template that contradicts them is
 * inconsistent. */
CK_RV kt_keys_apply_template(const struct kt_key *k, CK_ATTRIBUTE_TYPE which,
                             kt_attrs *a)
{
    const CK_ATTRIBUTE *ut = kt_attrs_find(&k->attrs, which);
    if (ut == NULL)
        return CKR_OK;
    kt_attrs tmpl;
    kt_attrs_init(&tmpl);
    CK_RV rv = kt_attrs_parse(&tmpl, ut->pValue, ut->ulValueLen);
    for (size_t i = 0; rv == CKR_OK && i < tmpl.n; i++) {
        const CK_ATTRIBUTE *have = kt_attrs_find(a, tmpl.v[i].type);
        if (have != NULL && !kt_attr_equal(have, &tmpl.v[i]))
            rv = CKR_TEMPLATE_INCONSISTENT;
        else if (have == NULL)
            rv = kt_attrs_set(a, tmpl.v[i].type, tmpl.v[i].pValue,
                              tmpl.v[i].ulValueLen);
    }
    kt_attrs_clear(&tmpl);
    return rv;
}

/* The new key's attributes: the caller's template under the unwrapping
 * key's CKA_UNWRAP_TEMPLATE, a secret key whose value only the unwrap
 * gives, or a private key (*cls) under a mechanism that carries one. */
static KT_NODISCARD CK_RV unwrap_template(const struct kt_key *uk,
                                          CK_MECHANISM_TYPE mech,
                                          const CK_ATTRIBUTE *t, CK_ULONG n,
                                          kt_attrs *a, CK_OBJECT_CLASS *cls)
{
    CK_RV rv = kt_attrs_from_template(a, t, n);
    if (rv == CKR_OK)
        rv = kt_keys_apply_template(uk, CKA_UNWRAP_TEMPLATE, a);
    if (rv != CKR_OK)
        return rv;
    if (kt_attrs_has(a, CKA_VALUE))
        return CKR_TEMPLATE_INCONSISTENT;
    rv = kt_attrs_get_ulong(a, CKA_CLASS, cls);
    if (rv != CKR_OK)
        return rv;
    if (*cls == CKO_PRIVATE_KEY)
        return private_key_mech(mech) ? CKR_OK : CKR_MECHANISM_INVALID;
    return *cls == CKO_SECRET_KEY ? CKR_OK : CKR_TEMPLATE_INCONSISTENT;
}

/* A private key's PrivateKeyInfo (plain, wiped and freed here) joins the
 * template; CKR_UNWRAPPING_KEY_SIZE_RANGE for a key stronger than the
 * unwrapping key, before any object is made. */
static KT_NODISCARD CK_RV unwrap_private(const struct kt_key *uk,
                                         CK_MECHANISM_TYPE mech,
                                         unsigned char *plain, size_t len,
                                         size_t cap, kt_attrs *a)
{
    unsigned strength = 0;
    CK_RV rv =
        kt_asym_from_pkcs8(plain, len, mech == CKM_AES_KEY_WRAP, a, &strength);
    kt_free_secret(plain, cap);
    if (rv == CKR_OK && !strong_enough(uk, strength))
        rv = CKR_UNWRAPPING_KEY_SIZE_RANGE;
    return rv;
}

/* Whether the unwrapping key UK is strong enough for a value of LEN bytes
 * of the key type template A names. An AES value of a size AES does not
 * have is a bad blob, left to the schema. */
static bool unwrap_strong_enough(const struct kt_key *uk, const kt_attrs *a,
                                 CK_ULONG len)
{
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    if (kt_attrs_get_ulong(a, CKA_KEY_TYPE, &type) != CKR_OK)
        type = CKK_GENERIC_SECRET;
    if (type == CKK_AES && len != 16 && len != 24 && len != 32)
        return true;
    return wrap_strong_enough(uk, type, len);
}

CK_RV kt_keys_unwrap(struct kt_session *s, const CK_MECHANISM *mech,
                     CK_OBJECT_HANDLE unwrapping, const unsigned char *wrapped,
                     CK_ULONG len, const CK_ATTRIBUTE *t, CK_ULONG n,
                     CK_OBJECT_HANDLE *out)
{
    const struct kt_key *uk = NULL;
    struct kt_op op;
    kt_attrs a;
    unsigned char *plain = NULL;
    CK_ULONG plain_len = len + 16;
    CK_OBJECT_CLASS cls = 0;
    kt_attrs_init(&a);
    memset(&op, 0, sizeof(op));
    /* No wrapped secret key is anywhere near this size; it also bounds the
     * buffer below. */
    if (len > KT_WRAPPED_MAX)
        return CKR_WRAPPED_KEY_LEN_RANGE;
    if (mech->mechanism == CKM_AES_GCM) {
        struct gcm_wrap g;
        CK_RV prv = gcm_wrap_params(mech, true, &g);
        if (prv != CKR_OK)
            return prv;
    }
    pthread_mutex_lock(&s->lock);
    CK_RV rv = wrap_op_start(s, mech, unwrapping, true, &op, &uk);
    if (rv == CKR_OK)
        rv = unwrap_template(uk, mech->mechanism, t, n, &a, &cls);
    if (rv == CKR_OK && kt_keys_public_to_private(uk, &a))
        rv = s->token->login == CKU_USER ? CKR_TEMPLATE_INCONSISTENT
                                         : CKR_USER_NOT_LOGGED_IN;
    if (rv != CKR_OK)
        goto out;
    plain = kt_secure_alloc(plain_len);
    if (plain == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    rv = op.mech->ops->oneshot(&op, wrapped, len, plain, &plain_len);
    if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_DATA_INVALID)
        rv = CKR_WRAPPED_KEY_INVALID;
    else if (rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
        rv = CKR_WRAPPED_KEY_LEN_RANGE;
    if (rv != CKR_OK)
        goto out;
    if (plain_len == 0) {
        rv = CKR_WRAPPED_KEY_INVALID;
        goto out;
    }
    if (cls == CKO_PRIVATE_KEY) {
        rv =
            unwrap_private(uk, mech->mechanism, plain, plain_len, len + 16, &a);
        plain = NULL;
    } else if (kt_asym_is_pkcs8(plain, plain_len)) {
        /* A private key's PrivateKeyInfo never becomes a secret key's
         * value, which a template may leave readable (class confusion). */
        rv = CKR_WRAPPED_KEY_INVALID;
    } else if (!unwrap_strong_enough(uk, &a, plain_len)) {
        /* A key stronger than the unwrapping key never comes in under it
         * (the decrypted value is wiped below, no object is made). */
        rv = CKR_UNWRAPPING_KEY_SIZE_RANGE;
    } else {
        /* The plaintext block (secure heap) becomes the value: no copy. */
        rv = kt_attrs_set_take(&a, CKA_VALUE, plain, plain_len);
        plain = NULL;
    }
    if (rv != CKR_OK)
        goto out;
    rv = kt_object_create(s, &a, KT_CREATE_UNWRAP, NULL, NULL, out);
    /* A decrypted value of the wrong size for the key type, or a private
     * key that fails the checks of an imported one or is of a size the
     * module refuses, is a bad blob, not a bad template. */
    if (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_KEY_SIZE_RANGE)
        rv = CKR_WRAPPED_KEY_INVALID;
out:
    kt_free_secret(plain, len + 16);
    kt_op_release(&op);
    pthread_mutex_unlock(&s->lock);
    kt_attrs_clear(&a);
    return rv;
}

CK_RV kt_keys_generate(struct kt_session *s, const CK_MECHANISM *mech,
                       const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    kt_attrs a;
    kt_attrs_init(&a);
    const struct kt_mech *m = kt_mech_find(mech->mechanism);
    if (m == NULL || m->generate == NULL || !(m->info.flags & CKF_GENERATE))
        return CKR_MECHANISM_INVALID;
    if (mech->pParameter != NULL || mech->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    CK_RV rv = kt_attrs_from_template(&a, t, n);
    if (rv != CKR_OK)
        return rv;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = m->key_types[0];
    CK_ULONG x = 0;
    if (kt_attrs_has(&a, CKA_CLASS)) {
        rv = kt_attrs_get_ulong(&a, CKA_CLASS, &x);
        if (rv == CKR_OK && x != cls)
            rv = CKR_TEMPLATE_INCONSISTENT;
    }
    if (rv == CKR_OK && kt_attrs_has(&a, CKA_KEY_TYPE)) {
        rv = kt_attrs_get_ulong(&a, CKA_KEY_TYPE, &x);
        if (rv == CKR_OK && x != kt)
            rv = CKR_TEMPLATE_INCONSISTENT;
    }
    if (rv == CKR_OK && kt_attrs_has(&a, CKA_VALUE))
        rv = CKR_TEMPLATE_INCONSISTENT;
    /* A DES key's length is the mechanism's: the template need not say. */
    if (rv == CKR_OK && kt_mech_fixed_len(m->type) != 0 &&
        !kt_attrs_has(&a, CKA_VALUE_LEN))
        rv = kt_attrs_set_ulong(&a, CKA_VALUE_LEN, kt_mech_fixed_len(m->type));
    if (rv == CKR_OK)
        rv = kt_attrs_set_ulong(&a, CKA_CLASS, cls);
    if (rv == CKR_OK)
        rv = kt_attrs_set_ulong(&a, CKA_KEY_TYPE, kt);
    if (rv == CKR_OK)
        rv = kt_object_create(s, &a, KT_CREATE_GENERATE, m, mech, out);
    kt_attrs_clear(&a);
    return rv;
}
