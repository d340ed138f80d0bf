/* C_DeriveKey from a secret base key: HKDF (CKM_HKDF_DERIVE, CKM_HKDF_DATA,
 * RFC 5869) and the *_ENCRYPT_DATA derivations (AES, and DES/DES3 with
 * legacy_mechanisms = yes), whose new key is the encryption of the
 * mechanism's data under the base key. keys_asym.c derives from key
 * pairs; C_DeriveKey picks by mechanism (kt_derive_symmetric). */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"

#define KT_DERIVE_DATA_MAX 4096

bool kt_derive_symmetric(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_HKDF_DERIVE:
    case CKM_HKDF_DATA:
    case CKM_AES_ECB_ENCRYPT_DATA:
    case CKM_AES_CBC_ENCRYPT_DATA:
    case CKM_DES_ECB_ENCRYPT_DATA:
    case CKM_DES_CBC_ENCRYPT_DATA:
    case CKM_DES3_ECB_ENCRYPT_DATA:
    case CKM_DES3_CBC_ENCRYPT_DATA:
        return true;
    default:
        return false;
    }
}

/* The result of a derivation, in the secure heap. */
struct derived {
    unsigned char *v;
    size_t len;
    size_t cap;
};

/* ---- *_ENCRYPT_DATA --------------------------------------------------- */

/* The cipher mechanism, its IV (CBC) and the data of an _ENCRYPT_DATA
 * mechanism's parameter. */
static KT_NODISCARD CK_RV encrypt_data_params(const CK_MECHANISM *mech,
                                              CK_MECHANISM *cipher,
                                              const unsigned char **data,
                                              size_t *len, size_t *block)
{
    const void *p = mech->pParameter;
    CK_ULONG pl = mech->ulParameterLen;
    CK_MECHANISM_TYPE m = mech->mechanism;
    bool aes = m == CKM_AES_ECB_ENCRYPT_DATA || m == CKM_AES_CBC_ENCRYPT_DATA;
    bool cbc = m == CKM_AES_CBC_ENCRYPT_DATA || m == CKM_DES_CBC_ENCRYPT_DATA ||
               m == CKM_DES3_CBC_ENCRYPT_DATA;
    *block = aes ? 16 : 8;
    *cipher = (CK_MECHANISM){0, NULL, 0};
    if (!cbc) {
        if (p == NULL || pl != sizeof(CK_KEY_DERIVATION_STRING_DATA))
            return CKR_MECHANISM_PARAM_INVALID;
        const CK_KEY_DERIVATION_STRING_DATA *d = p;
        *data = d->pData, *len = d->ulLen;
        cipher->mechanism = aes                             ? CKM_AES_ECB
                            : m == CKM_DES_ECB_ENCRYPT_DATA ? CKM_DES_ECB
                                                            : CKM_DES3_ECB;
    } else if (aes) {
        if (p == NULL || pl != sizeof(CK_AES_CBC_ENCRYPT_DATA_PARAMS))
            return CKR_MECHANISM_PARAM_INVALID;
        CK_AES_CBC_ENCRYPT_DATA_PARAMS *d = (void *)p;
        *data = d->pData, *len = d->length;
        *cipher = (CK_MECHANISM){CKM_AES_CBC, d->iv, 16};
    } else {
        if (p == NULL || pl != sizeof(CK_DES_CBC_ENCRYPT_DATA_PARAMS))
            return CKR_MECHANISM_PARAM_INVALID;
        CK_DES_CBC_ENCRYPT_DATA_PARAMS *d = (void *)p;
        *data = d->pData, *len = d->length;
        cipher->mechanism =
            m == CKM_DES_CBC_ENCRYPT_DATA ? CKM_DES_CBC : CKM_DES3_CBC;
        cipher->pParameter = d->iv;
        cipher->ulParameterLen = 8;
    }
    /* Whole blocks (no padding mechanism underneath), bounded. */
    if (*data == NULL || *len == 0 || *len % *block != 0 ||
        *len > KT_DERIVE_DATA_MAX)
        return CKR_MECHANISM_PARAM_INVALID;
    return CKR_OK;
}

/* E_K(data) is an encryption oracle under the base key: a key that wraps
 * would encrypt chosen blocks, i.e. forge what it unwraps, so a key of
 * the wrap role never derives this way (unless legacy_mechanisms = yes:
 * SECURITY.md, Mechanism policy and key roles). */
static KT_NODISCARD CK_RV encrypt_data(const CK_MECHANISM *mech,
                                       const struct kt_key *k,
                                       struct derived *out)
{
    CK_MECHANISM cm;
    const unsigned char *data = NULL;
    size_t len = 0, block = 0;
    if (!kt_schema_legacy() &&
        (kt_attrs_get_bool(&k->attrs, CKA_WRAP, false) ||
         kt_attrs_get_bool(&k->attrs, CKA_UNWRAP, false)))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    CK_RV rv = encrypt_data_params(mech, &cm, &data, &len, &block);
    if (rv != CKR_OK)
        return rv;
    const struct kt_mech *m = kt_mech_find(cm.mechanism);
    if (m == NULL || m->ops == NULL)
        return CKR_MECHANISM_INVALID;
    struct kt_op op;
    memset(&op, 0, sizeof(op));
    op.mech = m;
    op.kind = KT_OP_ENCRYPT;
    rv = m->ops->init(&op, &cm, k);
    if (rv != CKR_OK)
        return rv;
    out->v = kt_secure_alloc(len + 16);
    out->cap = len + 16;
    CK_ULONG ol = len + 16;
    rv = out->v == NULL ? CKR_HOST_MEMORY
                        : m->ops->oneshot(&op, data, len, out->v, &ol);
    out->len = ol;
    kt_op_release(&op);
    return rv;
}

/* ---- HKDF ------------------------------------------------------------ */

static bool hkdf_md(CK_MECHANISM_TYPE m, enum kt_md *md)
{
    static const struct {
        CK_MECHANISM_TYPE m;
        enum kt_md md;
    } rows[] = {
        {CKM_SHA_1, KT_MD_SHA1},        {CKM_SHA224, KT_MD_SHA224},
        {CKM_SHA256, KT_MD_SHA256},     {CKM_SHA384, KT_MD_SHA384},
        {CKM_SHA512, KT_MD_SHA512},     {CKM_SHA3_224, KT_MD_SHA3_224},
        {CKM_SHA3_256, KT_MD_SHA3_256}, {CKM_SHA3_384, KT_MD_SHA3_384},
        {CKM_SHA3_512, KT_MD_SHA3_512},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].m == m) {
            *md = rows[i].md;
            return true;
        }
    return false;
}

/* CKF_HKDF_SALT_KEY: the salt is another secret key's value. */
static KT_NODISCARD CK_RV salt_key(struct kt_session *s, CK_OBJECT_HANDLE h,
                                   struct kt_key *sk)
{
    CK_RV rv = kt_key_snapshot(s->token, h, 0, sk);
    if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID)
        return CKR_MECHANISM_PARAM_INVALID;
    if (rv != CKR_OK)
        return rv;
    if (sk->cls != CKO_SECRET_KEY || sk->value == NULL ||
        (sk->type != CKK_GENERIC_SECRET && sk->type != CKK_HKDF))
        return CKR_MECHANISM_PARAM_INVALID;
    return CKR_OK;
}

/* want: CKA_VALUE_LEN of the template (0: not given). */
static KT_NODISCARD CK_RV hkdf(struct kt_session *s, const CK_MECHANISM *mech,
                               const struct kt_key *k, CK_ULONG want,
                               struct derived *out)
{
    if (mech->pParameter == NULL ||
        mech->ulParameterLen != sizeof(CK_HKDF_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    const CK_HKDF_PARAMS *p = mech->pParameter;
    enum kt_md md;
    if ((!p->bExtract && !p->bExpand) || !hkdf_md(p->prfHashMechanism, &md) ||
        (p->ulInfoLen > 0 && p->pInfo == NULL) ||
        p->ulInfoLen > KT_DERIVE_DATA_MAX)
        return CKR_MECHANISM_PARAM_INVALID;
    size_t hlen = kt_ossl_md_size(md);
    struct kt_key sk;
    memset(&sk, 0, sizeof(sk));
    kt_attrs_init(&sk.attrs);
    const unsigned char *salt = NULL;
    size_t salt_len = 0;
    CK_RV rv = CKR_OK;
    if (p->bExtract) {
        if (p->ulSaltType == CKF_HKDF_SALT_DATA) {
            if (p->pSalt == NULL || p->ulSaltLen == 0)
                return CKR_MECHANISM_PARAM_INVALID;
            salt = p->pSalt, salt_len = p->ulSaltLen;
        } else if (p->ulSaltType == CKF_HKDF_SALT_KEY) {
            rv = salt_key(s, p->hSaltKey, &sk);
            salt = sk.value, salt_len = sk.value_len;
        } else if (p->ulSaltType != CKF_HKDF_SALT_NULL) {
            return CKR_MECHANISM_PARAM_INVALID;
        }
    }
    /* Extract only: the PRK, hLen bytes. Expanding: the length asked, at
     * most 255 hLen (RFC 5869 §2.3). */
    size_t len = p->bExpand ? want : hlen;
    if (rv == CKR_OK && p->bExpand && want == 0)
        rv = CKR_TEMPLATE_INCOMPLETE;
    else if (rv == CKR_OK && !p->bExpand && want != 0 && want != hlen)
        rv = CKR_TEMPLATE_INCONSISTENT;
    else if (rv == CKR_OK && len > 255 * hlen)
        rv = CKR_KEY_SIZE_RANGE;
    if (rv == CKR_OK) {
        out->v = kt_secure_alloc(len);
        out->len = out->cap = len;
        rv = out->v == NULL ? CKR_HOST_MEMORY : CKR_OK;
    }
    if (rv == CKR_OK)
        rv = kt_ossl_hkdf(md,
                          !p->bExpand    ? KT_HKDF_EXTRACT
                          : !p->bExtract ? KT_HKDF_EXPAND
                                         : KT_HKDF_BOTH,
                          k->value, k->value_len, salt, salt_len, p->pInfo,
                          p->bExpand ? p->ulInfoLen : 0, out->v, len);
    kt_key_clear(&sk);
    return rv;
}

/* ---- the new object --------------------------------------------------- */

/* The class (*cls), and the length asked (*want, CKA_VALUE_LEN, taken out
 * of the template: the token sets it) of the derived object. */
static KT_NODISCARD CK_RV derived_template(CK_MECHANISM_TYPE m, kt_attrs *a,
                                           CK_OBJECT_CLASS *cls, CK_ULONG *want)
{
    CK_OBJECT_CLASS need = m == CKM_HKDF_DATA ? CKO_DATA : CKO_SECRET_KEY;
    CK_RV rv = CKR_OK;
    *cls = need;
    *want = 0;
    if (kt_attrs_has(a, CKA_CLASS)) {
        rv = kt_attrs_get_ulong(a, CKA_CLASS, cls);
        if (rv == CKR_OK && *cls != need)
            rv = CKR_TEMPLATE_INCONSISTENT;
    }
    if (rv == CKR_OK && kt_attrs_has(a, CKA_VALUE))
        rv = CKR_TEMPLATE_INCONSISTENT;
    if (rv == CKR_OK && kt_attrs_has(a, CKA_VALUE_LEN)) {
        rv = kt_attrs_get_ulong(a, CKA_VALUE_LEN, want);
        if (rv == CKR_OK && *want == 0)
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        kt_attrs_remove(a, CKA_VALUE_LEN);
    }
    if (rv == CKR_OK)
        rv = kt_attrs_set_ulong(a, CKA_CLASS, need);
    if (rv == CKR_OK && need == CKO_SECRET_KEY &&
        !kt_attrs_has(a, CKA_KEY_TYPE))
        rv = kt_attrs_set_ulong(a, CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    if (rv == CKR_OK && need == CKO_DATA && kt_attrs_has(a, CKA_KEY_TYPE))
        rv = CKR_TEMPLATE_INCONSISTENT;
    return rv;
}

/* PKCS#11 3.0 §4.10 (and the HKDF section): a derived key is always
 * sensitive (never extractable) only if its base key was and it is. */
static enum kt_create_how derived_how(const struct kt_key *base)
{
    unsigned how = KT_CREATE_DERIVE;
    if (kt_attrs_get_bool(&base->attrs, CKA_ALWAYS_SENSITIVE, false))
        how |= KT_DERIVE_BASE_ALWAYS_SENSITIVE;
    if (kt_attrs_get_bool(&base->attrs, CKA_NEVER_EXTRACTABLE, false))
        how |= KT_DERIVE_BASE_NEVER_EXTRACTABLE;
    return (enum kt_create_how)how;
}

/* These derivations are deterministic: the same base key and parameters
 * give the same value, so a caller who may derive at all can derive it a
 * second time as an extractable key, or as an encrypt/decrypt key, and
 * undo whatever the first one wrapped. A key-encryption key never comes
 * out of them (unless legacy_mechanisms = yes): SECURITY.md, Mechanism
 * policy and key roles. */
static bool derives_wrap_key(const kt_attrs *a)
{
    return !kt_schema_legacy() && (kt_attrs_get_bool(a, CKA_WRAP, false) ||
                                   kt_attrs_get_bool(a, CKA_UNWRAP, false));
}

CK_RV kt_keys_derive_sym(struct kt_session *s, const CK_MECHANISM *mech,
                         CK_OBJECT_HANDLE base, const CK_ATTRIBUTE *t,
                         CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    const struct kt_mech *m = kt_mech_find(mech->mechanism);
    struct kt_key k;
    struct derived d = {NULL, 0, 0};
    kt_attrs a;
    CK_OBJECT_CLASS cls;
    CK_ULONG want = 0;
    if (m == NULL || !(m->info.flags & CKF_DERIVE))
        return CKR_MECHANISM_INVALID;
    memset(&k, 0, sizeof(k));
    kt_attrs_init(&k.attrs);
    kt_attrs_init(&a);
    CK_RV rv = kt_attrs_from_template(&a, t, n);
    if (rv == CKR_OK)
        rv = kt_key_snapshot(s->token, base, CKA_DERIVE, &k);
    if (rv == CKR_OK && (k.cls != CKO_SECRET_KEY || k.value == NULL))
        rv = CKR_KEY_TYPE_INCONSISTENT;
    if (rv == CKR_OK)
        rv = kt_op_check_key(m, &k);
    if (rv == CKR_OK)
        rv = kt_keys_apply_template(&k, CKA_DERIVE_TEMPLATE, &a);
    if (rv == CKR_OK)
        rv = derived_template(mech->mechanism, &a, &cls, &want);
    /* A public session key derives no private object (keys.c). */
    if (rv == CKR_OK && kt_keys_public_to_private(&k, &a))
        rv = s->token->login == CKU_USER ? CKR_TEMPLATE_INCONSISTENT
                                         : CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK && derives_wrap_key(&a))
        rv = CKR_TEMPLATE_INCONSISTENT;
    if (rv != CKR_OK)
        goto out;
    if (mech->mechanism == CKM_HKDF_DERIVE || mech->mechanism == CKM_HKDF_DATA)
        rv = hkdf(s, mech, &k, want, &d);
    else
        rv = encrypt_data(mech, &k, &d);
    /* _ENCRYPT_DATA: the leading CKA_VALUE_LEN bytes, if asked. */
    if (rv == CKR_OK && want > d.len)
        rv = CKR_TEMPLATE_INCONSISTENT;
    if (rv == CKR_OK)
        rv = kt_attrs_set(&a, CKA_VALUE, d.v, want != 0 ? want : d.len);
    if (rv == CKR_OK)
        rv = kt_object_create(
            s, &a, cls == CKO_DATA ? KT_CREATE_OBJECT : derived_how(&k), NULL,
            NULL, out);
out:
    kt_free_secret(d.v, d.cap);
    kt_key_clear(&k);
    kt_attrs_clear(&a);
    return rv;
}
