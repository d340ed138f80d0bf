/* The attribute policy, one row per attribute (PKCS#11 v2.40 §4, tables
 * 14-20 and their footnotes), checked on every create, copy and modify. */
#include "kt.h"

#include <string.h>

#include "ossl/asym.h" /* CKK_EC_MONTGOMERY, kt_ossl_rsa_legacy_set */

/* Object classes a row applies to. */
#define C_DATA   (1u << 0)
#define C_CERT   (1u << 1)
#define C_PUB    (1u << 2)
#define C_PRIV   (1u << 3)
#define C_SECRET (1u << 4)
#define C_KEY    (C_PUB | C_PRIV | C_SECRET)
#define C_ALL    (C_DATA | C_CERT | C_KEY)

/* Policy flags. */
#define F_CREATE     (1u << 0)  /* may be given when the object is made */
#define F_MODIFY     (1u << 1)  /* C_SetAttributeValue may change it */
#define F_REQUIRED   (1u << 2)  /* C_CreateObject must give it */
#define F_TOKEN      (1u << 3)  /* maintained by the token only */
#define F_SECRET     (1u << 4)  /* sealed, never leaves a sensitive key */
#define F_UP_ONLY    (1u << 5)  /* may only go CK_FALSE -> CK_TRUE */
#define F_DOWN_ONLY  (1u << 6)  /* may only go CK_TRUE -> CK_FALSE */
#define F_SO_TRUE    (1u << 7)  /* only the SO may set it to CK_TRUE */
#define F_COPY       (1u << 8)  /* C_CopyObject may change it */
#define F_GEN_NEED   (1u << 9)  /* C_GenerateKey must be given it */
#define F_NOT_CREATE (1u << 10) /* C_CreateObject may only repeat it */

/* Defaults added when absent. */
enum dflt { D_NONE, D_FALSE, D_TRUE, D_EMPTY, D_PRIVATE };

struct kt_attr_rule {
    CK_ATTRIBUTE_TYPE type;
    enum kt_kind kind;
    unsigned classes;
    unsigned flags;
    enum dflt dflt;
};

#define CM (F_CREATE | F_MODIFY)
static const struct kt_attr_rule rules[] = {
    /* Common to all objects */
    {CKA_CLASS, KT_KIND_ULONG, C_ALL, F_CREATE | F_REQUIRED, D_NONE},
    {CKA_TOKEN, KT_KIND_BOOL, C_ALL, F_CREATE | F_COPY, D_FALSE},
    {CKA_PRIVATE, KT_KIND_BOOL, C_ALL, F_CREATE | F_COPY, D_PRIVATE},
    {CKA_MODIFIABLE, KT_KIND_BOOL, C_ALL, F_CREATE | F_COPY | F_DOWN_ONLY,
     D_TRUE},
    {CKA_COPYABLE, KT_KIND_BOOL, C_ALL, CM | F_DOWN_ONLY, D_TRUE},
    {CKA_DESTROYABLE, KT_KIND_BOOL, C_ALL, CM | F_DOWN_ONLY, D_TRUE},
    {CKA_LABEL, KT_KIND_BYTES, C_ALL, CM, D_EMPTY},
    /* Data objects */
    {CKA_APPLICATION, KT_KIND_BYTES, C_DATA, CM, D_EMPTY},
    {CKA_OBJECT_ID, KT_KIND_BYTES, C_DATA, CM, D_EMPTY},
    {CKA_VALUE, KT_KIND_BYTES, C_DATA | C_CERT, CM, D_EMPTY},
    /* Keys */
    {CKA_KEY_TYPE, KT_KIND_ULONG, C_KEY, F_CREATE | F_REQUIRED, D_NONE},
    {CKA_ID, KT_KIND_BYTES, C_KEY | C_CERT, CM, D_EMPTY},
    {CKA_START_DATE, KT_KIND_DATE, C_KEY | C_CERT, CM, D_EMPTY},
    {CKA_END_DATE, KT_KIND_DATE, C_KEY | C_CERT, CM, D_EMPTY},
    {CKA_DERIVE, KT_KIND_BOOL, C_KEY, CM, D_FALSE},
    {CKA_LOCAL, KT_KIND_BOOL, C_KEY, F_TOKEN, D_NONE},
    {CKA_KEY_GEN_MECHANISM, KT_KIND_ULONG, C_KEY, F_TOKEN, D_NONE},
    {CKA_ALLOWED_MECHANISMS, KT_KIND_MECHS, C_KEY, F_CREATE, D_NONE},
    /* Secret and private keys */
    {CKA_SENSITIVE, KT_KIND_BOOL, C_SECRET | C_PRIV, CM | F_UP_ONLY, D_TRUE},
    {CKA_EXTRACTABLE, KT_KIND_BOOL, C_SECRET | C_PRIV, CM | F_DOWN_ONLY,
     D_FALSE},
    {CKA_ALWAYS_SENSITIVE, KT_KIND_BOOL, C_SECRET | C_PRIV, F_TOKEN, D_NONE},
    {CKA_NEVER_EXTRACTABLE, KT_KIND_BOOL, C_SECRET | C_PRIV, F_TOKEN, D_NONE},
    {CKA_WRAP_WITH_TRUSTED, KT_KIND_BOOL, C_SECRET | C_PRIV, CM | F_UP_ONLY,
     D_FALSE},
    {CKA_UNWRAP_TEMPLATE, KT_KIND_TEMPLATE, C_SECRET | C_PRIV, F_CREATE,
     D_NONE},
    {CKA_DECRYPT, KT_KIND_BOOL, C_SECRET | C_PRIV, CM, D_TRUE},
    {CKA_SIGN, KT_KIND_BOOL, C_SECRET | C_PRIV, CM, D_TRUE},
    {CKA_UNWRAP, KT_KIND_BOOL, C_SECRET | C_PRIV, CM, D_TRUE},
    /* Secret and public keys */
    {CKA_ENCRYPT, KT_KIND_BOOL, C_SECRET | C_PUB, CM, D_TRUE},
    {CKA_VERIFY, KT_KIND_BOOL, C_SECRET | C_PUB, CM, D_TRUE},
    {CKA_WRAP, KT_KIND_BOOL, C_SECRET | C_PUB, CM, D_TRUE},
    {CKA_TRUSTED, KT_KIND_BOOL, C_SECRET | C_PUB | C_CERT, CM | F_SO_TRUE,
     D_FALSE},
    {CKA_WRAP_TEMPLATE, KT_KIND_TEMPLATE, C_SECRET | C_PUB, F_CREATE, D_NONE},
    /* Secret keys */
    /* May be given at creation; it must then match (checked with the
     * value). */
    {CKA_CHECK_VALUE, KT_KIND_BYTES, C_SECRET, F_CREATE, D_NONE},
    {CKA_VALUE_LEN, KT_KIND_ULONG, C_SECRET,
     F_CREATE | F_NOT_CREATE | F_GEN_NEED, D_NONE},
    {CKA_DERIVE_TEMPLATE, KT_KIND_TEMPLATE, C_KEY, F_CREATE, D_NONE},
    /* --- asymmetric keys and certificates: PKCS#11 v2.40
     * §4.6 (certificates), §4.8-4.9 (public/private keys). The key
     * material itself is checked and completed by kt_asym_complete(). */
    {CKA_SUBJECT, KT_KIND_BYTES, C_PUB | C_PRIV | C_CERT, CM, D_EMPTY},
    {CKA_PUBLIC_KEY_INFO, KT_KIND_BYTES, C_PUB | C_PRIV, F_CREATE, D_NONE},
    {CKA_SIGN_RECOVER, KT_KIND_BOOL, C_PRIV, CM, D_FALSE},
    {CKA_VERIFY_RECOVER, KT_KIND_BOOL, C_PUB, CM, D_FALSE},
    {CKA_ALWAYS_AUTHENTICATE, KT_KIND_BOOL, C_PRIV, F_CREATE, D_FALSE},
    {CKA_CERTIFICATE_TYPE, KT_KIND_ULONG, C_CERT, F_CREATE | F_REQUIRED,
     D_NONE},
    {CKA_ISSUER, KT_KIND_BYTES, C_CERT, CM, D_EMPTY},
    {CKA_SERIAL_NUMBER, KT_KIND_BYTES, C_CERT, CM, D_EMPTY},
    {CKA_CERTIFICATE_CATEGORY, KT_KIND_ULONG, C_CERT, F_CREATE, D_NONE},
    {CKA_URL, KT_KIND_BYTES, C_CERT, F_CREATE, D_NONE},
    {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, KT_KIND_BYTES, C_CERT, F_CREATE, D_NONE},
    {CKA_HASH_OF_ISSUER_PUBLIC_KEY, KT_KIND_BYTES, C_CERT, F_CREATE, D_NONE},
    {CKA_JAVA_MIDP_SECURITY_DOMAIN, KT_KIND_ULONG, C_CERT, F_CREATE, D_NONE},
    {CKA_NAME_HASH_ALGORITHM, KT_KIND_ULONG, C_CERT, F_CREATE, D_NONE},
    /* --- end asymmetric keys and certificates */
};
#undef CM

/* CKA_VALUE of a secret key is the one secret attribute of the core;
 * private-key components are added with the asymmetric key types. */
static const CK_ATTRIBUTE_TYPE secret_private_attrs[] = {
    CKA_VALUE,      CKA_PRIVATE_EXPONENT, CKA_PRIME_1,     CKA_PRIME_2,
    CKA_EXPONENT_1, CKA_EXPONENT_2,       CKA_COEFFICIENT,
};

static unsigned class_bit(CK_OBJECT_CLASS cls)
{
    switch (cls) {
    case CKO_DATA:
        return C_DATA;
    case CKO_CERTIFICATE:
        return C_CERT;
    case CKO_PUBLIC_KEY:
        return C_PUB;
    case CKO_PRIVATE_KEY:
        return C_PRIV;
    case CKO_SECRET_KEY:
        return C_SECRET;
    default:
        return 0;
    }
}

static const struct kt_attr_rule *rule_of(CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        if (rules[i].type == type)
            return &rules[i];
    return NULL;
}

/* Key-type specific attributes that have no row above (CKA_VALUE of keys,
 * RSA/EC components) are accepted for the key types that define them. */
static bool key_attr_valid(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                           CK_ATTRIBUTE_TYPE type)
{
    if (cls == CKO_SECRET_KEY)
        return type == CKA_VALUE;
    if (kt == CKK_RSA) {
        if (type == CKA_MODULUS || type == CKA_PUBLIC_EXPONENT)
            return true;
        if (cls == CKO_PUBLIC_KEY)
            return type == CKA_MODULUS_BITS;
        return type == CKA_PRIVATE_EXPONENT || type == CKA_PRIME_1 ||
               type == CKA_PRIME_2 || type == CKA_EXPONENT_1 ||
               type == CKA_EXPONENT_2 || type == CKA_COEFFICIENT;
    }
    if (kt == CKK_DSA)
        return type == CKA_PRIME || type == CKA_SUBPRIME || type == CKA_BASE ||
               type == CKA_VALUE;
    if (kt == CKK_DH)
        return type == CKA_PRIME || type == CKA_BASE || type == CKA_VALUE;
    if (kt == CKK_EC || kt == CKK_EC_EDWARDS || kt == CKK_EC_MONTGOMERY) {
        if (type == CKA_EC_PARAMS)
            return true;
        return cls == CKO_PUBLIC_KEY ? type == CKA_EC_POINT : type == CKA_VALUE;
    }
    return false;
}

enum kt_kind kt_schema_kind(CK_ATTRIBUTE_TYPE type)
{
    const struct kt_attr_rule *r = rule_of(type);
    return r != NULL ? r->kind : KT_KIND_BYTES;
}

bool kt_schema_valid(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                     CK_ATTRIBUTE_TYPE type)
{
    const struct kt_attr_rule *r = rule_of(type);
    unsigned bit = class_bit(cls);
    if (r != NULL && (r->classes & bit) != 0)
        return true;
    if ((bit & C_KEY) != 0)
        return key_attr_valid(cls, kt, type);
    return false;
}

bool kt_schema_secret(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type)
{
    if (cls == CKO_SECRET_KEY)
        return type == CKA_VALUE;
    if (cls != CKO_PRIVATE_KEY)
        return false;
    for (size_t i = 0;
         i < sizeof(secret_private_attrs) / sizeof(secret_private_attrs[0]);
         i++)
        if (secret_private_attrs[i] == type)
            return true;
    return false;
}

/* ---- key roles ----------------------------------------------------------
 * A secret key either wraps and unwraps keys or encrypts and decrypts data,
 * never both: a key with both roles decrypts what it wrapped (the
 * wrap-then-decrypt attack), and encrypts chosen data that it then unwraps
 * as a key of the caller's choosing. Only legacy_mechanisms = yes permits
 * both (and then keeps the defaults of earlier versions: every usage
 * attribute true). RSA and EC keys are not concerned: a private key that
 * unwraps with OAEP has no other oracle to offer. */

static atomic_bool legacy;

void kt_schema_legacy_set(bool on)
{
    atomic_store(&legacy, on);
    /* RSA keys below 2048 bits and MD5 with RSA (ossl/asym.c) */
    kt_ossl_rsa_legacy_set(on);
}

bool kt_schema_legacy(void)
{
    return atomic_load(&legacy);
}

static bool roles_legacy(void)
{
    return kt_schema_legacy();
}

static bool role_wrap(const kt_attrs *a)
{
    return kt_attrs_get_bool(a, CKA_WRAP, false) ||
           kt_attrs_get_bool(a, CKA_UNWRAP, false);
}

static bool role_crypt(const kt_attrs *a)
{
    return kt_attrs_get_bool(a, CKA_ENCRYPT, false) ||
           kt_attrs_get_bool(a, CKA_DECRYPT, false);
}

static bool is_secret_key(const kt_attrs *a)
{
    CK_OBJECT_CLASS cls = 0;
    return kt_attrs_get_ulong(a, CKA_CLASS, &cls) == CKR_OK &&
           cls == CKO_SECRET_KEY;
}

bool kt_schema_roles_combined(const kt_attrs *a)
{
    return !roles_legacy() && is_secret_key(a) && role_wrap(a) && role_crypt(a);
}

CK_RV kt_schema_roles_template(const kt_attrs *a, bool *ask_wrap)
{
    *ask_wrap = role_wrap(a);
    if (!roles_legacy() && *ask_wrap && role_crypt(a))
        return CKR_TEMPLATE_INCONSISTENT;
    return CKR_OK;
}

CK_RV kt_schema_roles_changed(const kt_attrs *result, const kt_attrs *changes,
                              bool copying)
{
    if (!kt_schema_roles_combined(result))
        return CKR_OK;
    /* A copy is a new object: it may not carry both roles, whatever the
     * original holds. */
    if (copying)
        return CKR_TEMPLATE_INCONSISTENT;
    /* A key stored with both roles before this rule may still be relabelled
     * or have a role switched off; a change that switches a role on is what
     * is refused. PKCS#11 v2.40 answers a change the token does not permit
     * on an otherwise modifiable attribute with CKR_ATTRIBUTE_READ_ONLY
     * (CKA_SENSITIVE, CKA_EXTRACTABLE: "becomes a read only attribute"). */
    static const CK_ATTRIBUTE_TYPE usage[] = {CKA_WRAP, CKA_UNWRAP, CKA_ENCRYPT,
                                              CKA_DECRYPT};
    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++)
        if (kt_attrs_get_bool(changes, usage[i], false))
            return CKR_ATTRIBUTE_READ_ONLY;
    return CKR_OK;
}

/* The default of a usage attribute of a secret key whose template asked
 * for the wrap role (ask_wrap) or not. A wrap key also defaults to no
 * CKA_SIGN / CKA_VERIFY: it does nothing but wrap unless asked. */
static enum dflt role_default(const struct kt_attr_rule *r, bool ask_wrap)
{
    if (roles_legacy())
        return r->dflt;
    switch (r->type) {
    case CKA_WRAP:
    case CKA_UNWRAP:
        return ask_wrap ? D_TRUE : D_FALSE;
    case CKA_ENCRYPT:
    case CKA_DECRYPT:
    case CKA_SIGN:
    case CKA_VERIFY:
        return ask_wrap ? D_FALSE : r->dflt;
    default:
        return r->dflt;
    }
}

static bool key_type_fits(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
    switch (kt) {
    case CKK_AES:
    case CKK_GENERIC_SECRET:
    case CKK_SHA256_HMAC:
    case CKK_SHA384_HMAC:
    case CKK_SHA512_HMAC:
    /* --- symmetric key types */
    case CKK_SHA_1_HMAC:
    case CKK_SHA224_HMAC:
    case CKK_SHA3_224_HMAC:
    case CKK_SHA3_256_HMAC:
    case CKK_SHA3_384_HMAC:
    case CKK_SHA3_512_HMAC:
    case CKK_MD5_HMAC:
    case CKK_HKDF:
        return cls == CKO_SECRET_KEY;
    case CKK_DES:
    case CKK_DES2:
    case CKK_DES3:
        return cls == CKO_SECRET_KEY && kt_schema_legacy();
    /* --- end symmetric key types */
    case CKK_RSA:
    case CKK_EC:
    case CKK_EC_EDWARDS:
    case CKK_EC_MONTGOMERY:
        return cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY;
    case CKK_DSA: /* legacy_mechanisms = yes only */
    case CKK_DH:
        return kt_schema_legacy() &&
               (cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY);
    default:
        return false;
    }
}

static KT_NODISCARD CK_RV check_kind(const struct kt_attr_rule *r,
                                     const CK_ATTRIBUTE *a)
{
    switch (r->kind) {
    case KT_KIND_BOOL:
        return a->ulValueLen == sizeof(CK_BBOOL) ? CKR_OK
                                                 : CKR_ATTRIBUTE_VALUE_INVALID;
    case KT_KIND_ULONG:
        return a->ulValueLen == sizeof(CK_ULONG) ? CKR_OK
                                                 : CKR_ATTRIBUTE_VALUE_INVALID;
    case KT_KIND_DATE:
        return a->ulValueLen == 0 || a->ulValueLen == sizeof(CK_DATE)
                   ? CKR_OK
                   : CKR_ATTRIBUTE_VALUE_INVALID;
    case KT_KIND_MECHS:
        return a->ulValueLen % sizeof(CK_MECHANISM_TYPE) == 0
                   ? CKR_OK
                   : CKR_ATTRIBUTE_VALUE_INVALID;
    default:
        return CKR_OK;
    }
}

CK_RV kt_schema_check_value(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                            const kt_attrs *a)
{
    if (cls != CKO_SECRET_KEY)
        return CKR_OK;
    const CK_ATTRIBUTE *v = kt_attrs_find(a, CKA_VALUE);
    if (v == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (kt == CKK_AES && v->ulValueLen != 16 && v->ulValueLen != 24 &&
        v->ulValueLen != 32)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if ((kt == CKK_DES && v->ulValueLen != 8) ||
        (kt == CKK_DES2 && v->ulValueLen != 16) ||
        (kt == CKK_DES3 && v->ulValueLen != 24))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (v->ulValueLen == 0)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    CK_ULONG vl = 0;
    const CK_ATTRIBUTE *l = kt_attrs_find(a, CKA_VALUE_LEN);
    if (l != NULL) {
        memcpy(&vl, l->pValue, sizeof(vl));
        if (vl != v->ulValueLen)
            return CKR_TEMPLATE_INCONSISTENT;
    }
    return CKR_OK;
}

/* Every attribute of a creation template: allowed for the class and key
 * type, of the right size, not one the token maintains, and set only by
 * the SO where only the SO may. */
static KT_NODISCARD CK_RV check_template(const kt_attrs *a, CK_OBJECT_CLASS cls,
                                         CK_KEY_TYPE kt, bool is_so)
{
    CK_RV rv;

    for (size_t i = 0; i < a->n; i++) {
        const CK_ATTRIBUTE *at = &a->v[i];
        const struct kt_attr_rule *r = rule_of(at->type);
        if (!kt_schema_valid(cls, kt, at->type))
            return r != NULL || kt_schema_secret(cls, at->type) ||
                           at->type == CKA_VALUE
                       ? CKR_TEMPLATE_INCONSISTENT
                       : CKR_ATTRIBUTE_TYPE_INVALID;
        if (r == NULL)
            continue;
        rv = check_kind(r, at);
        if (rv != CKR_OK)
            return rv;
        if ((r->flags & F_TOKEN) != 0)
            return CKR_ATTRIBUTE_READ_ONLY;
        if ((r->flags & F_SO_TRUE) != 0 && !is_so &&
            kt_attrs_get_bool(a, at->type, false))
            return CKR_ATTRIBUTE_READ_ONLY;
    }
    return CKR_OK;
}

/* The defaults of the attributes of class BIT the template leaves out; a
 * secret key's usage attributes follow its role (ASK_WRAP). */
static KT_NODISCARD CK_RV set_defaults(kt_attrs *a, CK_OBJECT_CLASS cls,
                                       unsigned bit, bool ask_wrap)
{
    CK_RV rv;

    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const struct kt_attr_rule *r = &rules[i];
        if ((r->classes & bit) == 0 || kt_attrs_has(a, r->type))
            continue;
        enum dflt d = bit == C_SECRET ? role_default(r, ask_wrap) : r->dflt;
        switch (d) {
        case D_FALSE:
            rv = kt_attrs_set_bool(a, r->type, false);
            break;
        case D_TRUE:
            rv = kt_attrs_set_bool(a, r->type, true);
            break;
        case D_EMPTY:
            rv = kt_attrs_set(a, r->type, NULL, 0);
            break;
        case D_PRIVATE:
            rv = kt_attrs_set_bool(
                a, r->type, cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY);
            break;
        default:
            rv = CKR_OK;
        }
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

/* Token-maintained attributes of a key (PKCS#11 v2.40 §4.8-4.10). */
static KT_NODISCARD CK_RV set_key_origin(kt_attrs *a, unsigned bit,
                                         enum kt_create_how how,
                                         CK_MECHANISM_TYPE keygen_mech)
{
    enum kt_create_how kind = (enum kt_create_how)(how & KT_CREATE_HOW_MASK);
    bool generated = kind == KT_CREATE_GENERATE;
    bool derived = kind == KT_CREATE_DERIVE;
    CK_RV rv = kt_attrs_set_bool(a, CKA_LOCAL, generated);
    if (rv == CKR_OK)
        rv = kt_attrs_set_ulong(a, CKA_KEY_GEN_MECHANISM,
                                generated ? keygen_mech
                                          : CK_UNAVAILABLE_INFORMATION);
    if (rv == CKR_OK && (bit & (C_SECRET | C_PRIV)) != 0) {
        bool sens = kt_attrs_get_bool(a, CKA_SENSITIVE, true);
        bool extr = kt_attrs_get_bool(a, CKA_EXTRACTABLE, false);
        bool base_as = derived && (how & KT_DERIVE_BASE_ALWAYS_SENSITIVE);
        bool base_ne = derived && (how & KT_DERIVE_BASE_NEVER_EXTRACTABLE);
        rv = kt_attrs_set_bool(a, CKA_ALWAYS_SENSITIVE,
                               (generated || base_as) && sens);
        if (rv == CKR_OK)
            rv = kt_attrs_set_bool(a, CKA_NEVER_EXTRACTABLE,
                                   (generated || base_ne) && !extr);
    }
    return rv;
}

CK_RV kt_schema_create(kt_attrs *a, enum kt_create_how how,
                       CK_MECHANISM_TYPE keygen_mech, bool is_so)
{
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
    CK_RV rv = kt_attrs_get_ulong(a, CKA_CLASS, &cls);
    if (rv != CKR_OK)
        return rv;
    unsigned bit = class_bit(cls);
    if (bit == 0)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if ((bit & C_KEY) != 0) {
        rv = kt_attrs_get_ulong(a, CKA_KEY_TYPE, &kt);
        if (rv != CKR_OK)
            return rv;
        if (!key_type_fits(cls, kt))
            return CKR_TEMPLATE_INCONSISTENT;
    }
    rv = check_template(a, cls, kt, is_so);
    if (rv != CKR_OK)
        return rv;
    /* Key roles (kt_schema_roles_*): a secret key's template asks for at
     * most one role, and the usage attributes it leaves out follow it. */
    bool ask_wrap = false;
    if (bit == C_SECRET) {
        rv = kt_schema_roles_template(a, &ask_wrap);
        if (rv != CKR_OK)
            return rv;
    }
    if (how == KT_CREATE_GENERATE)
        for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
            if ((rules[i].flags & F_GEN_NEED) && (rules[i].classes & bit) &&
                !kt_attrs_has(a, rules[i].type))
                return CKR_TEMPLATE_INCOMPLETE;
    rv = set_defaults(a, cls, bit, ask_wrap);
    if (rv != CKR_OK || (bit & C_KEY) == 0)
        return rv;
    return set_key_origin(a, bit, how, keygen_mech);
}

CK_RV kt_schema_modify(const kt_attrs *obj, const CK_ATTRIBUTE *change,
                       bool copying, bool is_so)
{
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
    if (kt_attrs_get_ulong(obj, CKA_CLASS, &cls) != CKR_OK)
        return CKR_GENERAL_ERROR;
    if (kt_attrs_get_ulong(obj, CKA_KEY_TYPE, &kt) != CKR_OK)
        kt = CK_UNAVAILABLE_INFORMATION;
    const struct kt_attr_rule *r = rule_of(change->type);
    if (!kt_schema_valid(cls, kt, change->type))
        return CKR_ATTRIBUTE_TYPE_INVALID;
    const CK_ATTRIBUTE *cur = kt_attrs_find(obj, change->type);
    if (r == NULL || (r->classes & class_bit(cls)) == 0) {
        /* Key material: never changed after creation. */
        return CKR_ATTRIBUTE_READ_ONLY;
    }
    CK_RV rv = check_kind(r, change);
    if (rv != CKR_OK)
        return rv;
    if (cur != NULL && kt_attr_equal(cur, change))
        return CKR_OK;
    bool allowed =
        (r->flags & F_MODIFY) != 0 || (copying && (r->flags & F_COPY) != 0);
    if (!allowed)
        return CKR_ATTRIBUTE_READ_ONLY;
    if (r->kind == KT_KIND_BOOL) {
        bool now = cur != NULL && *(CK_BBOOL *)cur->pValue != CK_FALSE;
        bool want = *(CK_BBOOL *)change->pValue != CK_FALSE;
        if ((r->flags & F_UP_ONLY) && now && !want)
            return CKR_ATTRIBUTE_READ_ONLY;
        if ((r->flags & F_DOWN_ONLY) && !now && want)
            return CKR_ATTRIBUTE_READ_ONLY;
        if ((r->flags & F_SO_TRUE) && want && !is_so)
            return CKR_ATTRIBUTE_READ_ONLY;
        /* A copy never makes key material public: any session could use
         * a public copy of a private key without login. */
        if (change->type == CKA_PRIVATE && now && !want &&
            (cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY))
            return CKR_ATTRIBUTE_READ_ONLY;
    }
    return CKR_OK;
}
