/* RSA and EC keys: mechanism operations over module/ossl/asym.c,
 * key pair generation, completion of imported keys and certificates, ECDH,
 * and the per-object cache of parsed keys that keeps per-call work to the
 * signature itself. */
#include "kt_asym.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/asym.h"
#include "ossl/pkcs8.h"

/* ---- keys from attributes -------------------------------------------- */

/* A non-owning view of an attribute's value (empty when absent). */
static kt_ossl_buf view(const kt_attrs *a, CK_ATTRIBUTE_TYPE type)
{
    const CK_ATTRIBUTE *at = kt_attrs_find(a, type);
    kt_ossl_buf b = {NULL, 0};
    if (at != NULL && at->ulValueLen > 0) {
        b.data = at->pValue;
        b.len = at->ulValueLen;
    }
    return b;
}

static KT_NODISCARD CK_RV key_build(CK_OBJECT_CLASS cls, CK_KEY_TYPE type,
                                    const kt_attrs *a, EVP_PKEY **out)
{
    bool priv = cls == CKO_PRIVATE_KEY;

    *out = NULL;
    if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (type == CKK_RSA) {
        kt_rsa_parts p = {
            .n = view(a, CKA_MODULUS),
            .e = view(a, CKA_PUBLIC_EXPONENT),
        };
        if (priv) {
            p.d = view(a, CKA_PRIVATE_EXPONENT);
            p.p = view(a, CKA_PRIME_1);
            p.q = view(a, CKA_PRIME_2);
            p.dp = view(a, CKA_EXPONENT_1);
            p.dq = view(a, CKA_EXPONENT_2);
            p.qinv = view(a, CKA_COEFFICIENT);
        }
        return kt_ossl_rsa_import(&p, priv, out);
    }
    if (type == CKK_EC) {
        kt_ec_parts p = {.params = view(a, CKA_EC_PARAMS)};
        if (priv)
            p.value = view(a, CKA_VALUE);
        else
            p.point = view(a, CKA_EC_POINT);
        return kt_ossl_ec_import(&p, priv, out);
    }
    return CKR_KEY_TYPE_INCONSISTENT;
}

/* The object's family cache: the parsed key with its facts and operation
 * templates (ossl/asym.c), built on first use after login and kept on the
 * object (kt_key.keep_cache) until it changes or the user logs out. */
struct asym_cache {
    struct kt_cache base; /* first: the core holds this */
    kt_asym_key *key;
};

static void asym_cache_destroy(struct kt_cache *c)
{
    struct asym_cache *a = (struct asym_cache *)c;
    kt_ossl_asym_key_free(a->key);
    free(a);
}

/* A referenced cache for the key snapshot; the caller drops it with
 * kt_cache_unref() once the operation holds what it needs. */
static KT_NODISCARD CK_RV key_get(const struct kt_key *k,
                                  struct asym_cache **out)
{
    struct asym_cache *c;
    EVP_PKEY *pkey = NULL;
    CK_RV rv;

    *out = NULL;
    if (k->cache != NULL && k->cache->destroy == asym_cache_destroy) {
        *out = (struct asym_cache *)kt_cache_ref(k->cache);
        return CKR_OK;
    }
    /* Built with no token lock held: parsing is the slow part. */
    rv = key_build(k->cls, k->type, &k->attrs, &pkey);
    if (rv != CKR_OK)
        return rv == CKR_TEMPLATE_INCOMPLETE ? CKR_KEY_TYPE_INCONSISTENT : rv;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        kt_ossl_key_unref(pkey);
        return CKR_HOST_MEMORY;
    }
    rv = kt_ossl_asym_key_new(pkey, &c->key);
    kt_ossl_key_unref(pkey);
    if (rv != CKR_OK) {
        free(c);
        return rv;
    }
    c->base.destroy = asym_cache_destroy;
    /* One reference for the caller, one for the object (if it takes it). */
    bool keep = k->token != NULL && k->keep_cache != NULL;
    atomic_init(&c->base.refs, keep ? 2 : 1);
    if (keep)
        k->keep_cache(k->token, k->handle, &c->base);
    *out = c;
    return CKR_OK;
}

/* ---- operations ------------------------------------------------------ */

struct asym_ctx {
    kt_asym_op *op;
};

static KT_NODISCARD CK_RV asym_init(struct kt_op *op, const CK_MECHANISM *m,
                                    const struct kt_key *key)
{
    kt_asym_mode mode;
    CK_OBJECT_CLASS want;
    struct asym_ctx *c;
    struct asym_cache *kc = NULL;
    CK_RV rv;

    switch (op->kind) {
    case KT_OP_SIGN:
        mode = KT_ASYM_SIGN, want = CKO_PRIVATE_KEY;
        break;
    case KT_OP_VERIFY:
        mode = KT_ASYM_VERIFY, want = CKO_PUBLIC_KEY;
        break;
    case KT_OP_ENCRYPT:
        mode = KT_ASYM_ENCRYPT, want = CKO_PUBLIC_KEY;
        break;
    case KT_OP_DECRYPT:
        mode = KT_ASYM_DECRYPT, want = CKO_PRIVATE_KEY;
        break;
    default:
        return CKR_MECHANISM_INVALID;
    }
    if (key->cls != want)
        return CKR_KEY_TYPE_INCONSISTENT;
    rv = key_get(key, &kc);
    if (rv != CKR_OK)
        return rv;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        kt_cache_unref(&kc->base);
        return CKR_HOST_MEMORY;
    }
    rv = kt_ossl_asym_init_key(m, kc->key, mode, &c->op);
    kt_cache_unref(&kc->base);
    if (rv != CKR_OK) {
        free(c);
        return rv;
    }
    op->ctx = c;
    return CKR_OK;
}

static KT_NODISCARD CK_RV asym_oneshot(struct kt_op *op,
                                       const unsigned char *in, size_t in_len,
                                       unsigned char *out, CK_ULONG *out_len)
{
    struct asym_ctx *c = op->ctx;
    size_t need = kt_ossl_asym_out_len(c->op), n = 0;
    bool done = false;
    CK_RV rv;

    if (op->kind == KT_OP_DECRYPT) {
        /* The plaintext length is known only after decryption: answer a
         * length query with the upper bound, and let a buffer smaller
         * than that but big enough succeed. */
        if (out == NULL) {
            *out_len = need;
            return CKR_OK;
        }
        n = *out_len;
        rv = kt_ossl_asym_decrypt(c->op, in, in_len, out, &n);
        if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
            *out_len = n;
        return rv;
    }
    rv = kt_out_check(out, out_len, need, &done);
    if (done)
        return rv;
    switch (op->kind) {
    case KT_OP_SIGN:
        rv = kt_ossl_asym_sign(c->op, in, in_len, out, &n);
        break;
    case KT_OP_ENCRYPT:
        rv = kt_ossl_asym_encrypt(c->op, in, in_len, out, &n);
        break;
    default:
        return CKR_OPERATION_NOT_INITIALIZED;
    }
    if (rv == CKR_OK)
        *out_len = n;
    return rv;
}

static KT_NODISCARD CK_RV asym_update(struct kt_op *op, const unsigned char *in,
                                      size_t in_len, unsigned char *out,
                                      CK_ULONG *out_len)
{
    struct asym_ctx *c = op->ctx;
    (void)out;
    (void)out_len;
    /* RSA encryption and the raw signature mechanisms are single-part
     * (PKCS#11 v2.40 §2.1 mechanism table). */
    if (op->kind != KT_OP_SIGN && op->kind != KT_OP_VERIFY)
        return CKR_FUNCTION_NOT_SUPPORTED;
    return kt_ossl_asym_update(c->op, in, in_len);
}

static KT_NODISCARD CK_RV asym_final(struct kt_op *op, unsigned char **out,
                                     size_t *out_len)
{
    struct asym_ctx *c = op->ctx;
    size_t need = kt_ossl_asym_out_len(c->op);
    unsigned char *buf;
    CK_RV rv;

    if (op->kind != KT_OP_SIGN)
        return CKR_FUNCTION_NOT_SUPPORTED;
    buf = malloc(need);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    rv = kt_ossl_asym_sign_final(c->op, buf, out_len);
    if (rv != CKR_OK) {
        free(buf);
        return rv;
    }
    *out = buf;
    return CKR_OK;
}

static size_t asym_final_len(struct kt_op *op)
{
    struct asym_ctx *c = op->ctx;
    return kt_ossl_asym_out_len(c->op);
}

static KT_NODISCARD CK_RV asym_verify(struct kt_op *op,
                                      const unsigned char *data, size_t len,
                                      const unsigned char *sig, size_t sig_len)
{
    struct asym_ctx *c = op->ctx;
    return kt_ossl_asym_verify(c->op, data, len, sig, sig_len);
}

static KT_NODISCARD CK_RV asym_verify_final(struct kt_op *op,
                                            const unsigned char *sig,
                                            size_t sig_len)
{
    struct asym_ctx *c = op->ctx;
    return kt_ossl_asym_verify_final(c->op, sig, sig_len);
}

static void asym_free(struct kt_op *op)
{
    struct asym_ctx *c = op->ctx;
    if (c == NULL)
        return;
    kt_ossl_asym_free(c->op);
    free(c);
    op->ctx = NULL;
}

const struct kt_mech_ops kt_ops_asym = {
    .init = asym_init,
    .oneshot = asym_oneshot,
    .update = asym_update,
    .final = asym_final,
    .final_len = asym_final_len,
    .verify = asym_verify,
    .verify_final = asym_verify_final,
    .free = asym_free,
};

/* ---- attributes the token computes ---------------------------------- */

/* Sets type to value, or when the template already holds it checks it is
 * the same (CKR_TEMPLATE_INCONSISTENT otherwise). */
static KT_NODISCARD CK_RV set_or_match(kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                       const kt_ossl_buf *v)
{
    const CK_ATTRIBUTE *cur = kt_attrs_find(a, type);
    if (cur != NULL && cur->ulValueLen > 0) {
        if (cur->ulValueLen != v->len ||
            memcmp(cur->pValue, v->data, v->len) != 0)
            return CKR_TEMPLATE_INCONSISTENT;
        return CKR_OK;
    }
    return kt_attrs_set(a, type, v->data, v->len);
}

static KT_NODISCARD CK_RV set_public_attrs(kt_attrs *a, const EVP_PKEY *key,
                                           CK_OBJECT_CLASS cls)
{
    kt_ossl_buf spki = {NULL, 0};
    CK_RV rv;

    if (kt_ossl_key_type(key) == CKK_RSA) {
        kt_rsa_parts p;
        rv = kt_ossl_rsa_export(key, 0, &p);
        if (rv != CKR_OK)
            return rv;
        /* Canonical big-endian forms (no leading zeros). */
        rv = kt_attrs_set(a, CKA_MODULUS, p.n.data, p.n.len);
        if (rv == CKR_OK)
            rv = kt_attrs_set(a, CKA_PUBLIC_EXPONENT, p.e.data, p.e.len);
        kt_rsa_parts_free(&p);
        if (rv == CKR_OK && cls == CKO_PUBLIC_KEY) {
            CK_ULONG bits = kt_ossl_key_bits(key);
            kt_ossl_buf b = {(unsigned char *)&bits, sizeof(bits)};
            rv = set_or_match(a, CKA_MODULUS_BITS, &b);
        }
    } else {
        kt_ec_parts p;
        rv = kt_ossl_ec_export(key, 0, &p);
        if (rv != CKR_OK)
            return rv;
        /* The canonical OID replaces a printable curve name. */
        rv = kt_attrs_set(a, CKA_EC_PARAMS, p.params.data, p.params.len);
        if (rv == CKR_OK && cls == CKO_PUBLIC_KEY)
            rv = kt_attrs_set(a, CKA_EC_POINT, p.point.data, p.point.len);
        kt_ec_parts_free(&p);
    }
    if (rv != CKR_OK)
        return rv;
    rv = kt_ossl_spki(key, &spki);
    if (rv == CKR_OK)
        rv = kt_attrs_set(a, CKA_PUBLIC_KEY_INFO, spki.data, spki.len);
    kt_ossl_buf_free(&spki);
    return rv;
}

static KT_NODISCARD CK_RV set_private_attrs(kt_attrs *a, const EVP_PKEY *key)
{
    CK_RV rv;

    if (kt_ossl_key_type(key) == CKK_RSA) {
        kt_rsa_parts p;
        rv = kt_ossl_rsa_export(key, 1, &p);
        if (rv != CKR_OK)
            return rv;
        rv = kt_attrs_set(a, CKA_PRIVATE_EXPONENT, p.d.data, p.d.len);
        if (rv == CKR_OK)
            rv = kt_attrs_set(a, CKA_PRIME_1, p.p.data, p.p.len);
        if (rv == CKR_OK)
            rv = kt_attrs_set(a, CKA_PRIME_2, p.q.data, p.q.len);
        if (rv == CKR_OK)
            rv = kt_attrs_set(a, CKA_EXPONENT_1, p.dp.data, p.dp.len);
        if (rv == CKR_OK)
            rv = kt_attrs_set(a, CKA_EXPONENT_2, p.dq.data, p.dq.len);
        if (rv == CKR_OK)
            rv = kt_attrs_set(a, CKA_COEFFICIENT, p.qinv.data, p.qinv.len);
        kt_rsa_parts_free(&p);
    } else {
        kt_ec_parts p;
        rv = kt_ossl_ec_export(key, 1, &p);
        if (rv != CKR_OK)
            return rv;
        rv = kt_attrs_set(a, CKA_VALUE, p.value.data, p.value.len);
        kt_ec_parts_free(&p);
    }
    return rv;
}

/* Both halves get the same CKA_ID: the one given for either, or one
 * computed from the public value. */
static KT_NODISCARD CK_RV share_id(kt_attrs *pub, kt_attrs *priv,
                                   const EVP_PKEY *key)
{
    kt_ossl_buf p = view(pub, CKA_ID), v = view(priv, CKA_ID);
    unsigned char id[KT_KEY_ID_LEN];
    CK_RV rv;

    if (p.len > 0 && v.len == 0)
        return kt_attrs_set(priv, CKA_ID, p.data, p.len);
    if (v.len > 0 && p.len == 0)
        return kt_attrs_set(pub, CKA_ID, v.data, v.len);
    if (p.len > 0)
        return CKR_OK;
    rv = kt_ossl_key_id(key, id);
    if (rv == CKR_OK)
        rv = kt_attrs_set(pub, CKA_ID, id, sizeof(id));
    if (rv == CKR_OK)
        rv = kt_attrs_set(priv, CKA_ID, id, sizeof(id));
    return rv;
}

/* The private template may not carry key material of its own. */
static bool has_material(const kt_attrs *a)
{
    static const CK_ATTRIBUTE_TYPE types[] = {
        CKA_MODULUS,    CKA_PRIVATE_EXPONENT, CKA_PRIME_1,     CKA_PRIME_2,
        CKA_EXPONENT_1, CKA_EXPONENT_2,       CKA_COEFFICIENT, CKA_VALUE,
        CKA_EC_POINT,   CKA_PUBLIC_KEY_INFO,
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (kt_attrs_has(a, types[i]))
            return true;
    return false;
}

/* When both templates name a curve, they name the same one. */
static KT_NODISCARD CK_RV same_curve(const kt_attrs *pub, const kt_attrs *priv)
{
    kt_ossl_buf a = view(pub, CKA_EC_PARAMS), b = view(priv, CKA_EC_PARAMS);
    kt_ossl_buf ca = {NULL, 0}, cb = {NULL, 0};
    CK_RV rv;

    if (a.len == 0 || b.len == 0)
        return CKR_OK;
    rv = kt_ossl_ec_params_canon(a.data, a.len, &ca);
    if (rv == CKR_OK)
        rv = kt_ossl_ec_params_canon(b.data, b.len, &cb);
    if (rv == CKR_OK &&
        (ca.len != cb.len || memcmp(ca.data, cb.data, ca.len) != 0))
        rv = CKR_TEMPLATE_INCONSISTENT;
    kt_ossl_buf_free(&ca);
    kt_ossl_buf_free(&cb);
    return rv == CKR_CURVE_NOT_SUPPORTED ? CKR_ATTRIBUTE_VALUE_INVALID : rv;
}

CK_RV kt_asym_generate_pair(const CK_MECHANISM *m, kt_attrs *pub,
                            kt_attrs *priv)
{
    EVP_PKEY *key = NULL;
    kt_ossl_buf exp, params;
    CK_ULONG bits = 0;
    CK_RV rv;

    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    if (has_material(priv) || kt_attrs_has(pub, CKA_MODULUS) ||
        kt_attrs_has(pub, CKA_EC_POINT) ||
        kt_attrs_has(pub, CKA_PUBLIC_KEY_INFO))
        return CKR_TEMPLATE_INCONSISTENT;
    switch (m->mechanism) {
    case CKM_RSA_PKCS_KEY_PAIR_GEN:
        rv = kt_attrs_get_ulong(pub, CKA_MODULUS_BITS, &bits);
        if (rv != CKR_OK)
            return rv;
        exp = view(pub, CKA_PUBLIC_EXPONENT);
        rv = kt_ossl_rsa_generate(bits, exp.data, exp.len, &key);
        break;
    case CKM_EC_KEY_PAIR_GEN:
        params = view(pub, CKA_EC_PARAMS);
        if (params.len == 0)
            params = view(priv, CKA_EC_PARAMS);
        if (params.len == 0)
            return CKR_TEMPLATE_INCOMPLETE;
        rv = same_curve(pub, priv);
        if (rv == CKR_OK)
            rv = kt_ossl_ec_generate(params.data, params.len, &key);
        if (rv == CKR_CURVE_NOT_SUPPORTED)
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    default:
        return CKR_MECHANISM_INVALID;
    }
    if (rv != CKR_OK)
        goto out;
    rv = set_public_attrs(pub, key, CKO_PUBLIC_KEY);
    if (rv == CKR_OK)
        rv = set_public_attrs(priv, key, CKO_PRIVATE_KEY);
    if (rv == CKR_OK)
        rv = set_private_attrs(priv, key);
    if (rv == CKR_OK)
        rv = share_id(pub, priv, key);
out:
    kt_ossl_key_unref(key);
    return rv;
}

/* ---- C_CreateObject of keys and certificates ------------------------ */

/* CKA_SERIAL_NUMBER is the DER INTEGER (PKCS#11 v2.40 §4.6.3). Java's
 * SunPKCS11 keystore passes only the INTEGER's content octets
 * (BigInteger.toByteArray()); those name the same serial, so they are
 * accepted and stored in the DER form the specification gives. */
static KT_NODISCARD CK_RV serial_match(kt_attrs *a, const kt_ossl_buf *der)
{
    const CK_ATTRIBUTE *cur = kt_attrs_find(a, CKA_SERIAL_NUMBER);
    size_t hdr = 0;
    if (der->len >= 2 && der->data[1] < 0x80)
        hdr = 2;
    else if (der->len >= 3 && der->data[1] == 0x81)
        hdr = 3;
    else if (der->len >= 4 && der->data[1] == 0x82)
        hdr = 4;
    if (cur != NULL && cur->ulValueLen > 0 && hdr > 0 &&
        cur->ulValueLen == der->len - hdr &&
        memcmp(cur->pValue, der->data + hdr, der->len - hdr) == 0)
        return kt_attrs_set(a, CKA_SERIAL_NUMBER, der->data, der->len);
    return set_or_match(a, CKA_SERIAL_NUMBER, der);
}

static KT_NODISCARD CK_RV complete_cert(kt_attrs *a)
{
    CK_CERTIFICATE_TYPE type = 0;
    kt_ossl_buf der = view(a, CKA_VALUE);
    kt_cert_fields f;
    CK_RV rv = kt_attrs_get_ulong(a, CKA_CERTIFICATE_TYPE, &type);

    if (rv != CKR_OK)
        return rv;
    if (type != CKC_X_509)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (der.len == 0)
        return CKR_TEMPLATE_INCOMPLETE;
    rv = kt_ossl_cert_fields(der.data, der.len, &f);
    if (rv != CKR_OK)
        return rv;
    rv = set_or_match(a, CKA_SUBJECT, &f.subject);
    if (rv == CKR_OK)
        rv = set_or_match(a, CKA_ISSUER, &f.issuer);
    if (rv == CKR_OK)
        rv = serial_match(a, &f.serial);
    kt_cert_fields_free(&f);
    return rv;
}

static KT_NODISCARD CK_RV sign_digest(EVP_PKEY *key, unsigned char *sig,
                                      size_t *sig_len)
{
    static const unsigned char digest[32] = "keytier pairwise consistency";
    CK_MECHANISM m = {
        kt_ossl_key_type(key) == CKK_RSA ? CKM_RSA_PKCS : CKM_ECDSA, NULL, 0};
    kt_asym_op *op = NULL;
    CK_RV rv = kt_ossl_asym_init(&m, key, KT_ASYM_SIGN, &op);

    if (rv == CKR_OK)
        rv = kt_ossl_asym_sign(op, digest, sizeof(digest), sig, sig_len);
    kt_ossl_asym_free(op);
    op = NULL;
    if (rv == CKR_OK)
        rv = kt_ossl_asym_init(&m, key, KT_ASYM_VERIFY, &op);
    if (rv == CKR_OK)
        rv = kt_ossl_asym_verify(op, digest, sizeof(digest), sig, *sig_len);
    kt_ossl_asym_free(op);
    return rv;
}

/* A private key whose parts do not belong together is refused at import
 * rather than producing wrong results later: it must sign and verify, and
 * an RSA key given with CRT values must sign as its n, e, d alone (OpenSSL
 * signs with the CRT values and never looks at d). */
static KT_NODISCARD CK_RV pairwise_check(EVP_PKEY *key, const kt_attrs *a)
{
    unsigned char sig[KT_RSA_MAX_BITS / 8 + 200], sig2[KT_RSA_MAX_BITS / 8];
    size_t len = 0, len2 = 0;
    EVP_PKEY *ned = NULL;
    CK_RV rv = sign_digest(key, sig, &len);

    if (rv == CKR_OK && kt_ossl_key_type(key) == CKK_RSA &&
        view(a, CKA_PRIME_1).len > 0) {
        kt_rsa_parts p = {
            .n = view(a, CKA_MODULUS),
            .e = view(a, CKA_PUBLIC_EXPONENT),
            .d = view(a, CKA_PRIVATE_EXPONENT),
        };
        rv = kt_ossl_rsa_import(&p, 1, &ned);
        if (rv == CKR_OK)
            rv = sign_digest(ned, sig2, &len2);
        /* PKCS#1 v1.5 signatures are deterministic */
        if (rv == CKR_OK && (len != len2 || memcmp(sig, sig2, len) != 0))
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        kt_ossl_key_unref(ned);
    }
    return rv == CKR_OK ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
}

CK_RV kt_asym_complete(kt_attrs *a)
{
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE type = 0;
    EVP_PKEY *key = NULL;
    CK_RV rv = kt_attrs_get_ulong(a, CKA_CLASS, &cls);

    if (rv != CKR_OK)
        return rv;
    if (cls == CKO_CERTIFICATE)
        return complete_cert(a);
    if (cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
        return CKR_OK;
    rv = kt_attrs_get_ulong(a, CKA_KEY_TYPE, &type);
    if (rv != CKR_OK)
        return rv;
    if (type != CKK_RSA && type != CKK_EC)
        return CKR_OK;
    /* PKCS#11 v2.40 §2.1.2: CKA_MODULUS_BITS is the token's to compute on
     * C_CreateObject (a consistent value is tolerated). */
    rv = key_build(cls, type, a, &key);
    if (rv == CKR_CURVE_NOT_SUPPORTED)
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
    if (rv == CKR_OK && cls == CKO_PRIVATE_KEY)
        rv = pairwise_check(key, a);
    if (rv == CKR_OK) {
        const CK_ATTRIBUTE *given = kt_attrs_find(a, CKA_PUBLIC_KEY_INFO);
        kt_ossl_buf spki = {NULL, 0};
        rv = kt_ossl_spki(key, &spki);
        if (rv == CKR_OK && given != NULL && given->ulValueLen > 0 &&
            (given->ulValueLen != spki.len ||
             memcmp(given->pValue, spki.data, spki.len) != 0))
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        kt_ossl_buf_free(&spki);
    }
    if (rv == CKR_OK)
        rv = set_public_attrs(a, key, cls);
    kt_ossl_key_unref(key);
    return rv;
}

/* ---- ECDH ------------------------------------------------------------ */

CK_RV kt_asym_ecdh(const CK_MECHANISM *m, const struct kt_key *base, size_t len,
                   unsigned char **secret, size_t *secret_len)
{
    kt_ossl_buf s = {NULL, 0};
    struct asym_cache *kc = NULL;
    CK_RV rv;

    *secret = NULL;
    *secret_len = 0;
    if (base->cls != CKO_PRIVATE_KEY || base->type != CKK_EC)
        return CKR_KEY_TYPE_INCONSISTENT;
    rv = key_get(base, &kc);
    if (rv != CKR_OK)
        return rv;
    rv = kt_ossl_ecdh_derive(kt_ossl_asym_key_pkey(kc->key), m, &s);
    kt_cache_unref(&kc->base);
    if (rv != CKR_OK)
        return rv;
    if (len > s.len) {
        kt_ossl_buf_free(&s);
        return CKR_TEMPLATE_INCONSISTENT;
    }
    /* A shorter key takes the leading bytes of Z (ANSI X9.63 order). */
    *secret_len = len != 0 ? len : s.len;
    *secret = malloc(*secret_len);
    if (*secret == NULL) {
        kt_ossl_buf_free(&s);
        return CKR_HOST_MEMORY;
    }
    memcpy(*secret, s.data, *secret_len);
    kt_ossl_buf_free(&s);
    return CKR_OK;
}

/* ---- PKCS#8: C_WrapKey and C_UnwrapKey of private keys -------------- */

/* Every key type key_build() parses and set_private_attrs() exports leaves
 * and comes in here unchanged: the DER is OpenSSL's (ossl/pkcs8.c). */
CK_RV kt_asym_to_pkcs8(const struct kt_key *k, unsigned char **der, size_t *len,
                       unsigned *strength)
{
    struct asym_cache *kc = NULL;
    CK_RV rv;

    *der = NULL;
    *len = 0;
    if (k->cls != CKO_PRIVATE_KEY)
        return CKR_KEY_NOT_WRAPPABLE;
    rv = key_get(k, &kc);
    if (rv != CKR_OK)
        return rv == CKR_HOST_MEMORY ? rv : CKR_KEY_NOT_WRAPPABLE;
    EVP_PKEY *pkey = kt_ossl_asym_key_pkey(kc->key);
    *strength = kt_ossl_key_strength(pkey);
    rv = kt_ossl_pkcs8_encode(pkey, kt_secure_alloc, der, len);
    kt_cache_unref(&kc->base);
    return rv;
}

/* Copies every attribute of from into a; one a already has must be the
 * same (the template agreeing with the blob), or the template is
 * inconsistent. */
static KT_NODISCARD CK_RV merge_material(kt_attrs *a, const kt_attrs *from)
{
    for (size_t i = 0; i < from->n; i++) {
        const CK_ATTRIBUTE *at = &from->v[i];
        const CK_ATTRIBUTE *have = kt_attrs_find(a, at->type);
        if (at->type == CKA_CLASS)
            continue;
        if (have != NULL) {
            if (!kt_attr_equal(have, at))
                return CKR_TEMPLATE_INCONSISTENT;
            continue;
        }
        CK_RV rv = kt_attrs_set(a, at->type, at->pValue, at->ulValueLen);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

CK_RV kt_asym_from_pkcs8(const unsigned char *der, size_t len, bool zero_padded,
                         kt_attrs *a, unsigned *strength)
{
    EVP_PKEY *key = NULL;
    kt_attrs m;
    CK_KEY_TYPE want = 0;
    /* RFC 3394 pads a key to a multiple of 8 bytes with zeros (PKCS#11
     * v2.40 §2.14.3): up to 7 zero bytes may follow the PrivateKeyInfo. */
    if (zero_padded) {
        size_t n = kt_ossl_der_seq_len(der, len);
        if (n == 0 || len - n >= 8)
            return CKR_WRAPPED_KEY_INVALID;
        for (size_t i = n; i < len; i++)
            if (der[i] != 0)
                return CKR_WRAPPED_KEY_INVALID;
        len = n;
    }
    CK_RV rv = kt_ossl_pkcs8_decode(der, len, &key);

    if (rv != CKR_OK)
        return rv;
    kt_attrs_init(&m);
    CK_KEY_TYPE type = kt_ossl_key_type(key);
    *strength = kt_ossl_key_strength(key);
    /* A key type the module does not keep is no key of this token. */
    if (type == CKK_VENDOR_DEFINED || !kt_ossl_key_is_private(key)) {
        rv = CKR_WRAPPED_KEY_INVALID;
        goto out;
    }
    if (kt_attrs_has(a, CKA_KEY_TYPE)) {
        rv = kt_attrs_get_ulong(a, CKA_KEY_TYPE, &want);
        if (rv == CKR_OK && want != type)
            rv = CKR_TEMPLATE_INCONSISTENT;
    } else {
        rv = kt_attrs_set_ulong(a, CKA_KEY_TYPE, type);
    }
    /* The class first: the private values then get secure blocks. */
    if (rv == CKR_OK)
        rv = kt_attrs_set_ulong(&m, CKA_CLASS, CKO_PRIVATE_KEY);
    if (rv == CKR_OK)
        rv = set_public_attrs(&m, key, CKO_PRIVATE_KEY);
    if (rv == CKR_OK)
        rv = set_private_attrs(&m, key);
    if (rv == CKR_OK)
        rv = merge_material(a, &m);
out:
    kt_attrs_clear(&m);
    kt_ossl_key_unref(key);
    return rv;
}

bool kt_asym_is_pkcs8(const unsigned char *p, size_t len)
{
    return kt_ossl_is_pkcs8(p, len);
}
