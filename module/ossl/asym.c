/*
 * Asymmetric primitives over OpenSSL 3 EVP (see asym.h). Only non-deprecated
 * OpenSSL 3 interfaces: EVP_PKEY with OSSL_PARAM for key material, EVP
 * signature/asym-cipher/derive contexts for operations.
 */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1

#include "asym.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/dh.h>
#include <openssl/kdf.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define KT_RSA_MAX_BYTES (KT_RSA_MAX_BITS / 8)
/* Largest DER ECDSA-Sig-Value for P-521: SEQUENCE of two 67-byte INTEGERs. */
#define KT_ECDSA_DER_MAX  160
#define KT_PKCS1_OVERHEAD 11

/*
 * Key management is fetched by the algorithms' OIDs, which are provider
 * names without a legacy NID: a host application that made an ENGINE the
 * default for RSA/EC (openssl -engine pkcs11 does, for libp11) would
 * otherwise get that engine's EVP_PKEY_METHOD, which cannot import
 * (EVP_PKEY_fromdata) or generate provider keys.
 */
#define KT_ALG_RSA "1.2.840.113549.1.1.1" /* rsaEncryption */
#define KT_ALG_EC  "1.2.840.10045.2.1"    /* id-ecPublicKey */
#define KT_ALG_DSA "1.2.840.10040.4.1"    /* id-dsa */
#define KT_ALG_DH  "1.2.840.113549.1.3.1" /* dhKeyAgreement (PKCS#3) */

void kt_ossl_buf_free(kt_ossl_buf *buf)
{
    if (buf == NULL)
        return;
    OPENSSL_clear_free(buf->data, buf->len);
    buf->data = NULL;
    buf->len = 0;
}

void kt_rsa_parts_free(kt_rsa_parts *parts)
{
    kt_ossl_buf_free(&parts->n);
    kt_ossl_buf_free(&parts->e);
    kt_ossl_buf_free(&parts->d);
    kt_ossl_buf_free(&parts->p);
    kt_ossl_buf_free(&parts->q);
    kt_ossl_buf_free(&parts->dp);
    kt_ossl_buf_free(&parts->dq);
    kt_ossl_buf_free(&parts->qinv);
}

void kt_dsa_parts_free(kt_dsa_parts *parts)
{
    kt_ossl_buf_free(&parts->p);
    kt_ossl_buf_free(&parts->q);
    kt_ossl_buf_free(&parts->g);
    kt_ossl_buf_free(&parts->value);
}

void kt_ec_parts_free(kt_ec_parts *parts)
{
    kt_ossl_buf_free(&parts->params);
    kt_ossl_buf_free(&parts->point);
    kt_ossl_buf_free(&parts->value);
}

/* ---- hashes ---------------------------------------------------------- */

static const char *hash_name(CK_MECHANISM_TYPE hash)
{
    switch (hash) {
    case CKM_SHA_1:
        return "SHA1";
    case CKM_SHA224:
        return "SHA224";
    case CKM_SHA256:
        return "SHA256";
    case CKM_SHA384:
        return "SHA384";
    case CKM_SHA512:
        return "SHA512";
    case CKM_SHA3_224:
        return "SHA3-224";
    case CKM_SHA3_256:
        return "SHA3-256";
    case CKM_SHA3_384:
        return "SHA3-384";
    case CKM_SHA3_512:
        return "SHA3-512";
    case CKM_MD5:
        return "MD5";
    default:
        return NULL;
    }
}

/* The raw PSS signature's hash, fetched from the module's context. */
static int pss_set_md(EVP_PKEY_CTX *ctx, const char *name)
{
    EVP_MD *md = EVP_MD_fetch(kt_ossl_libctx(), name, NULL);
    int r = md != NULL ? EVP_PKEY_CTX_set_signature_md(ctx, md) : 0;
    EVP_MD_free(md);
    return r;
}

static size_t hash_len(CK_MECHANISM_TYPE hash)
{
    switch (hash) {
    case CKM_SHA_1:
        return 20;
    case CKM_SHA224:
        return 28;
    case CKM_SHA256:
        return 32;
    case CKM_SHA384:
        return 48;
    case CKM_SHA512:
        return 64;
    default:
        return 0;
    }
}

/* The hash CKG_MGF1_<x> uses, or 0 for an unknown generator. */
static CK_MECHANISM_TYPE mgf_hash(CK_RSA_PKCS_MGF_TYPE mgf)
{
    switch (mgf) {
    case CKG_MGF1_SHA1:
        return CKM_SHA_1;
    case CKG_MGF1_SHA224:
        return CKM_SHA224;
    case CKG_MGF1_SHA256:
        return CKM_SHA256;
    case CKG_MGF1_SHA384:
        return CKM_SHA384;
    case CKG_MGF1_SHA512:
        return CKM_SHA512;
    default:
        return 0;
    }
}

/* ---- mechanism table ------------------------------------------------- */

enum {
    M_SIGN = 1 << KT_ASYM_SIGN,
    M_VERIFY = 1 << KT_ASYM_VERIFY,
    M_ENCRYPT = 1 << KT_ASYM_ENCRYPT,
    M_DECRYPT = 1 << KT_ASYM_DECRYPT,
    M_SV = M_SIGN | M_VERIFY,
    M_ED = M_ENCRYPT | M_DECRYPT,
};

enum asym_pad { PAD_NONE, PAD_PKCS1, PAD_PSS, PAD_OAEP, PAD_RAW, PAD_EDDSA };

struct asym_mech {
    CK_MECHANISM_TYPE mech;
    CK_KEY_TYPE key_type;
    CK_MECHANISM_TYPE hash; /* hashing mechanisms; 0 for raw input */
    enum asym_pad pad;
    unsigned modes;
};

static const struct asym_mech asym_mechs[] = {
    {CKM_RSA_PKCS, CKK_RSA, 0, PAD_PKCS1, M_SV | M_ED},
    /* Raw RSA: what libp11's engine asks for when OpenSSL pads itself
     * (TLS 1.3 RSA-PSS through its RSA_METHOD), and raw encryption. */
    {CKM_RSA_X_509, CKK_RSA, 0, PAD_RAW, M_SV | M_ED},
    /* legacy_mechanisms = yes only (asym_check) */
    {CKM_MD5_RSA_PKCS, CKK_RSA, CKM_MD5, PAD_PKCS1, M_SV},
    {CKM_SHA3_224_RSA_PKCS, CKK_RSA, CKM_SHA3_224, PAD_PKCS1, M_SV},
    {CKM_SHA3_256_RSA_PKCS, CKK_RSA, CKM_SHA3_256, PAD_PKCS1, M_SV},
    {CKM_SHA3_384_RSA_PKCS, CKK_RSA, CKM_SHA3_384, PAD_PKCS1, M_SV},
    {CKM_SHA3_512_RSA_PKCS, CKK_RSA, CKM_SHA3_512, PAD_PKCS1, M_SV},
    {CKM_SHA1_RSA_PKCS, CKK_RSA, CKM_SHA_1, PAD_PKCS1, M_SV},
    {CKM_SHA224_RSA_PKCS, CKK_RSA, CKM_SHA224, PAD_PKCS1, M_SV},
    {CKM_SHA256_RSA_PKCS, CKK_RSA, CKM_SHA256, PAD_PKCS1, M_SV},
    {CKM_SHA384_RSA_PKCS, CKK_RSA, CKM_SHA384, PAD_PKCS1, M_SV},
    {CKM_SHA512_RSA_PKCS, CKK_RSA, CKM_SHA512, PAD_PKCS1, M_SV},
    {CKM_RSA_PKCS_PSS, CKK_RSA, 0, PAD_PSS, M_SV},
    {CKM_SHA1_RSA_PKCS_PSS, CKK_RSA, CKM_SHA_1, PAD_PSS, M_SV},
    {CKM_SHA224_RSA_PKCS_PSS, CKK_RSA, CKM_SHA224, PAD_PSS, M_SV},
    {CKM_SHA256_RSA_PKCS_PSS, CKK_RSA, CKM_SHA256, PAD_PSS, M_SV},
    {CKM_SHA384_RSA_PKCS_PSS, CKK_RSA, CKM_SHA384, PAD_PSS, M_SV},
    {CKM_SHA512_RSA_PKCS_PSS, CKK_RSA, CKM_SHA512, PAD_PSS, M_SV},
    {CKM_RSA_PKCS_OAEP, CKK_RSA, 0, PAD_OAEP, M_ED},
    {CKM_ECDSA, CKK_EC, 0, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA1, CKK_EC, CKM_SHA_1, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA224, CKK_EC, CKM_SHA224, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA256, CKK_EC, CKM_SHA256, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA384, CKK_EC, CKM_SHA384, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA512, CKK_EC, CKM_SHA512, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA3_224, CKK_EC, CKM_SHA3_224, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA3_256, CKK_EC, CKM_SHA3_256, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA3_384, CKK_EC, CKM_SHA3_384, PAD_NONE, M_SV},
    {CKM_ECDSA_SHA3_512, CKK_EC, CKM_SHA3_512, PAD_NONE, M_SV},
    /* Pure Ed25519 / Ed448 (RFC 8032). */
    {CKM_EDDSA, CKK_EC_EDWARDS, 0, PAD_EDDSA, M_SV},
    /* DSA (r || s like ECDSA): legacy_mechanisms = yes only */
    {CKM_DSA, CKK_DSA, 0, PAD_NONE, M_SV},
    {CKM_DSA_SHA1, CKK_DSA, CKM_SHA_1, PAD_NONE, M_SV},
    {CKM_DSA_SHA224, CKK_DSA, CKM_SHA224, PAD_NONE, M_SV},
    {CKM_DSA_SHA256, CKK_DSA, CKM_SHA256, PAD_NONE, M_SV},
    {CKM_DSA_SHA384, CKK_DSA, CKM_SHA384, PAD_NONE, M_SV},
    {CKM_DSA_SHA512, CKK_DSA, CKM_SHA512, PAD_NONE, M_SV},
};

static int dsa_size_ok(const EVP_PKEY *key, size_t *half);

static const struct asym_mech *mech_find(CK_MECHANISM_TYPE mech)
{
    for (size_t i = 0; i < sizeof(asym_mechs) / sizeof(asym_mechs[0]); i++)
        if (asym_mechs[i].mech == mech)
            return &asym_mechs[i];
    return NULL;
}

int kt_ossl_asym_mech_known(CK_MECHANISM_TYPE mech, CK_KEY_TYPE *key_type)
{
    const struct asym_mech *m = mech_find(mech);
    if (m == NULL)
        return 0;
    if (key_type != NULL)
        *key_type = m->key_type;
    return 1;
}

int kt_ossl_asym_mech_multipart(CK_MECHANISM_TYPE mech)
{
    const struct asym_mech *m = mech_find(mech);
    return m != NULL && m->hash != 0;
}

/* ---- curves ---------------------------------------------------------- */

/* The curves the token offers. len is the field size in bytes (EC: the
 * length of each coordinate and of the private value) or the raw key
 * length (Edwards, Montgomery). alg names the Edwards and Montgomery key
 * management by OID (see KT_ALG_RSA); p11 is the PKCS#11 3.0 curve name
 * (PrintableString) of those curves. */
struct curve {
    int nid;
    CK_KEY_TYPE type;
    size_t len;
    const char *alg;
    const char *p11;
};

static const struct curve curves[] = {
    {NID_X9_62_prime256v1, CKK_EC, 32, NULL, NULL},
    {NID_secp384r1, CKK_EC, 48, NULL, NULL},
    {NID_secp521r1, CKK_EC, 66, NULL, NULL},
    {NID_secp256k1, CKK_EC, 32, NULL, NULL},
    {NID_brainpoolP256r1, CKK_EC, 32, NULL, NULL},
    {NID_brainpoolP384r1, CKK_EC, 48, NULL, NULL},
    {NID_brainpoolP512r1, CKK_EC, 64, NULL, NULL},
    {NID_ED25519, CKK_EC_EDWARDS, 32, "1.3.101.112", "edwards25519"},
    {NID_ED448, CKK_EC_EDWARDS, 57, "1.3.101.113", "edwards448"},
    {NID_X25519, CKK_EC_MONTGOMERY, 32, "1.3.101.110", "curve25519"},
    {NID_X448, CKK_EC_MONTGOMERY, 56, "1.3.101.111", "curve448"},
};
/* Largest encoded public value: an uncompressed P-521 point. */
#define KT_POINT_MAX (1 + 2 * 66)

static const struct curve *curve_of(int nid)
{
    for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
        if (curves[i].nid == nid)
            return &curves[i];
    return NULL;
}

static int ec_nid_supported(int nid)
{
    return curve_of(nid) != NULL;
}

/* ---- key facts ------------------------------------------------------- */

/* The Edwards or Montgomery curve of a key, or NULL. */
static const struct curve *ecx_curve(const EVP_PKEY *key)
{
    static const struct {
        const char *name;
        int nid;
    } ecx[] = {{"ED25519", NID_ED25519},
               {"ED448", NID_ED448},
               {"X25519", NID_X25519},
               {"X448", NID_X448}};
    for (size_t i = 0; i < sizeof(ecx) / sizeof(ecx[0]); i++)
        if (EVP_PKEY_is_a(key, ecx[i].name))
            return curve_of(ecx[i].nid);
    return NULL;
}

CK_KEY_TYPE kt_ossl_key_type(const EVP_PKEY *key)
{
    const struct curve *c;

    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        return CKK_RSA;
    case EVP_PKEY_EC:
        return CKK_EC;
    case EVP_PKEY_DSA:
        return CKK_DSA;
    case EVP_PKEY_DH:
        return CKK_DH;
    default:
        c = ecx_curve(key);
        return c != NULL ? c->type : CKK_VENDOR_DEFINED;
    }
}

CK_ULONG kt_ossl_key_bits(const EVP_PKEY *key)
{
    int bits = EVP_PKEY_get_bits(key);
    return bits > 0 ? (CK_ULONG)bits : 0;
}

/* Does the key hold its private half? OpenSSL only notices at the first
 * sign/decrypt; PKCS#11 wants the answer at C_*Init. */
static int key_has_private(const EVP_PKEY *key)
{
    BIGNUM *bn = NULL;
    CK_KEY_TYPE type = kt_ossl_key_type(key);
    size_t len = 0;
    int ok;

    if (type == CKK_EC_EDWARDS || type == CKK_EC_MONTGOMERY) {
        /* Their private key is an octet string, not a number. */
        ok = EVP_PKEY_get_raw_private_key(key, NULL, &len) == 1 && len > 0;
        ERR_clear_error();
        return ok;
    }
    ok = EVP_PKEY_get_bn_param(
        key, type == CKK_RSA ? OSSL_PKEY_PARAM_RSA_D : OSSL_PKEY_PARAM_PRIV_KEY,
        &bn);
    BN_clear_free(bn);
    ERR_clear_error();
    return ok;
}

int kt_ossl_key_is_private(const EVP_PKEY *key)
{
    return key_has_private(key);
}

EVP_PKEY *kt_ossl_key_ref(EVP_PKEY *key)
{
    return key != NULL && EVP_PKEY_up_ref(key) ? key : NULL;
}

void kt_ossl_key_unref(EVP_PKEY *key)
{
    EVP_PKEY_free(key);
}

/* ---- legacy sizes ---------------------------------------------------- */

static atomic_int legacy_on;

void kt_ossl_rsa_legacy_set(int on)
{
    atomic_store(&legacy_on, on != 0);
}

int kt_ossl_asym_legacy(void)
{
    return atomic_load(&legacy_on);
}

CK_ULONG kt_ossl_rsa_min_bits(void)
{
    return kt_ossl_asym_legacy() ? KT_RSA_LEGACY_MIN_BITS : KT_RSA_MIN_BITS;
}

/* ---- EC parameters --------------------------------------------------- */

/* A curve name as users write it: "prime256v1", "secp384r1", "P-521",
 * "brainpoolP256r1", and the PKCS#11 3.0 names "edwards25519" ... */
static int ec_nid_from_name(const char *name)
{
    int nid;

    for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
        if (curves[i].p11 != NULL && strcmp(curves[i].p11, name) == 0)
            return curves[i].nid;
    nid = EC_curve_nist2nid(name);
    if (nid == NID_undef)
        nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = OBJ_ln2nid(name);
    return nid;
}

/* Encodings of Ed25519 and X25519 that tools send besides RFC 8410's: the
 * OIDs GnuPG gave them (pkcs11-tool before 0.24), and pkcs11-tool 0.23's
 * "curve25519" PrintableString, whose length octet says 11 for its ten
 * characters. Matched whole, byte for byte. */
static int ec_nid_alias(const unsigned char *params, size_t len)
{
    static const struct {
        unsigned char der[12];
        size_t len;
        int nid;
    } alias[] = {
        {{0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01},
         11,
         NID_ED25519},
        {{0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05,
          0x01},
         12,
         NID_X25519},
        {{0x13, 0x0b, 'c', 'u', 'r', 'v', 'e', '2', '5', '5', '1', '9'},
         12,
         NID_X25519},
    };
    for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++)
        if (len == alias[i].len && memcmp(params, alias[i].der, len) == 0)
            return alias[i].nid;
    return NID_undef;
}

/* The curve named by a DER PrintableString. */
static KT_NODISCARD CK_RV ec_params_name(const unsigned char *params,
                                         size_t len, int *nid)
{
    const unsigned char *p = params;
    ASN1_STRING *str = d2i_ASN1_PRINTABLESTRING(NULL, &p, (long)len);
    char name[64];
    int n;
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    if (str == NULL || p != params + len)
        goto out;
    n = ASN1_STRING_length(str);
    if (n <= 0 || (size_t)n >= sizeof(name))
        goto out;
    memcpy(name, ASN1_STRING_get0_data(str), (size_t)n);
    name[n] = '\0';
    *nid = ec_nid_from_name(name);
    rv = CKR_OK;
out:
    ASN1_STRING_free(str);
    return rv;
}

/*
 * CKA_EC_PARAMS: PKCS#11 v2.40 §2.3.3 allows ecParameters, namedCurve or
 * implicitlyCA; the token supports named curves only. PKCS#11 v3.0 adds a
 * PrintableString with the curve name, which some tools send (and which
 * v3.0 gives for the Edwards and Montgomery curves).
 */
static KT_NODISCARD CK_RV ec_params_nid(const unsigned char *params, size_t len,
                                        int *nid)
{
    const unsigned char *p = params;
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    if (params == NULL || len < 2 || len > 256)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *nid = ec_nid_alias(params, len);
    if (*nid != NID_undef)
        return CKR_OK;
    if (params[0] == V_ASN1_OBJECT) {
        ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)len);
        if (obj != NULL && p == params + len) {
            *nid = OBJ_obj2nid(obj);
            rv = CKR_OK;
        }
        ASN1_OBJECT_free(obj);
    } else if (params[0] == V_ASN1_PRINTABLESTRING) {
        rv = ec_params_name(params, len, nid);
    } else if (params[0] == (V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED)) {
        /* Explicit curve parameters: well formed, but not offered. */
        return CKR_CURVE_NOT_SUPPORTED;
    }
    ERR_clear_error();
    if (rv != CKR_OK)
        return rv;
    return ec_nid_supported(*nid) ? CKR_OK : CKR_CURVE_NOT_SUPPORTED;
}

static KT_NODISCARD CK_RV ec_params_der(int nid, kt_ossl_buf *out)
{
    ASN1_OBJECT *obj = OBJ_nid2obj(nid);
    unsigned char *der = NULL;
    int len;

    if (obj == NULL)
        return CKR_GENERAL_ERROR;
    len = i2d_ASN1_OBJECT(obj, &der);
    if (len <= 0)
        return CKR_HOST_MEMORY;
    out->data = der;
    out->len = (size_t)len;
    return CKR_OK;
}

CK_RV kt_ossl_ec_params_canon(const unsigned char *params, size_t params_len,
                              kt_ossl_buf *canon)
{
    int nid;
    CK_RV rv = ec_params_nid(params, params_len, &nid);
    if (rv != CKR_OK)
        return rv;
    return ec_params_der(nid, canon);
}

CK_RV kt_ossl_ec_params_key_type(const unsigned char *params, size_t params_len,
                                 CK_KEY_TYPE *type)
{
    int nid;
    CK_RV rv = ec_params_nid(params, params_len, &nid);
    if (rv == CKR_OK)
        *type = curve_of(nid)->type;
    return rv;
}

static int ec_key_nid(const EVP_PKEY *key)
{
    char name[64];
    size_t len = 0;
    const struct curve *c = ecx_curve(key);

    if (c != NULL)
        return c->nid;
    if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name,
                                        sizeof(name), &len))
        return NID_undef;
    return ec_nid_from_name(name);
}

/* ---- generation ------------------------------------------------------ */

CK_RV kt_ossl_rsa_generate(CK_ULONG bits, const unsigned char *exp,
                           size_t exp_len, EVP_PKEY **out)
{
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *e = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;

    *out = NULL;
    if (bits < kt_ossl_rsa_min_bits() || bits > KT_RSA_MAX_BITS ||
        bits % 8 != 0)
        return CKR_KEY_SIZE_RANGE;
    if (exp != NULL && exp_len > 0) {
        if (exp_len > 8)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        e = BN_bin2bn(exp, (int)exp_len, NULL);
    } else {
        e = BN_new();
        if (e != NULL && !BN_set_word(e, RSA_F4)) {
            BN_free(e);
            e = NULL;
        }
    }
    if (e == NULL)
        return CKR_HOST_MEMORY;
    if (!BN_is_odd(e) || BN_cmp(e, BN_value_one()) <= 0 || BN_num_bits(e) < 2) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(kt_ossl_libctx(), KT_ALG_RSA, NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) <= 0 ||
        EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) <= 0 ||
        EVP_PKEY_generate(ctx, out) <= 0)
        goto out;
    rv = CKR_OK;
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    BN_free(e);
    return rv;
}

CK_RV kt_ossl_ec_generate(const unsigned char *params, size_t params_len,
                          EVP_PKEY **out)
{
    EVP_PKEY_CTX *ctx = NULL;
    const struct curve *c;
    int nid;
    CK_RV rv;

    *out = NULL;
    rv = ec_params_nid(params, params_len, &nid);
    if (rv != CKR_OK)
        return rv;
    rv = CKR_GENERAL_ERROR;
    c = curve_of(nid);
    ctx = EVP_PKEY_CTX_new_from_name(kt_ossl_libctx(),
                                     c->alg != NULL ? c->alg : KT_ALG_EC, NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
        (c->alg == NULL &&
         EVP_PKEY_CTX_set_group_name(ctx, OBJ_nid2sn(nid)) <= 0) ||
        EVP_PKEY_generate(ctx, out) <= 0)
        goto out;
    rv = CKR_OK;
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

/* ---- export ---------------------------------------------------------- */

static KT_NODISCARD CK_RV bn_param(const EVP_PKEY *key, const char *name,
                                   kt_ossl_buf *out, int required)
{
    BIGNUM *bn = NULL;
    CK_RV rv = CKR_OK;
    int len;

    if (!EVP_PKEY_get_bn_param(key, name, &bn)) {
        ERR_clear_error();
        return required ? CKR_GENERAL_ERROR : CKR_OK;
    }
    len = BN_num_bytes(bn);
    out->len = (size_t)(len > 0 ? len : 1);
    out->data = OPENSSL_zalloc(out->len);
    if (out->data == NULL)
        rv = CKR_HOST_MEMORY;
    else if (BN_bn2binpad(bn, out->data, (int)out->len) < 0)
        rv = CKR_GENERAL_ERROR;
    BN_clear_free(bn);
    if (rv != CKR_OK)
        kt_ossl_buf_free(out);
    return rv;
}

CK_RV kt_ossl_rsa_export(const EVP_PKEY *key, int with_private,
                         kt_rsa_parts *out)
{
    CK_RV rv;

    memset(out, 0, sizeof(*out));
    if (kt_ossl_key_type(key) != CKK_RSA)
        return CKR_KEY_TYPE_INCONSISTENT;
    if ((rv = bn_param(key, OSSL_PKEY_PARAM_RSA_N, &out->n, 1)) != CKR_OK ||
        (rv = bn_param(key, OSSL_PKEY_PARAM_RSA_E, &out->e, 1)) != CKR_OK)
        goto out;
    if (!with_private)
        return CKR_OK;
    if ((rv = bn_param(key, OSSL_PKEY_PARAM_RSA_D, &out->d, 1)) != CKR_OK)
        goto out;
    /* CRT values are absent for keys imported from n, e, d only. */
    if ((rv = bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR1, &out->p, 0)) !=
            CKR_OK ||
        (rv = bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR2, &out->q, 0)) !=
            CKR_OK ||
        (rv = bn_param(key, OSSL_PKEY_PARAM_RSA_EXPONENT1, &out->dp, 0)) !=
            CKR_OK ||
        (rv = bn_param(key, OSSL_PKEY_PARAM_RSA_EXPONENT2, &out->dq, 0)) !=
            CKR_OK ||
        (rv = bn_param(key, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &out->qinv, 0)) !=
            CKR_OK)
        goto out;
    return CKR_OK;
out:
    kt_rsa_parts_free(out);
    return rv;
}

/* CKA_EC_POINT is the DER encoding of an OCTET STRING holding the point
 * (PKCS#11 v2.40 §2.3.3). */
static KT_NODISCARD CK_RV ec_point_der(const unsigned char *pt, size_t len,
                                       kt_ossl_buf *out)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int der_len;
    CK_RV rv = CKR_HOST_MEMORY;

    if (os == NULL || !ASN1_OCTET_STRING_set(os, pt, (int)len))
        goto out;
    der_len = i2d_ASN1_OCTET_STRING(os, &der);
    if (der_len <= 0)
        goto out;
    out->data = der;
    out->len = (size_t)der_len;
    rv = CKR_OK;
out:
    ASN1_OCTET_STRING_free(os);
    return rv;
}

static size_t ec_field_len(int nid)
{
    const struct curve *c = curve_of(nid);
    return c != NULL ? c->len : 0;
}

/* The raw private key of an Edwards or Montgomery key. */
static KT_NODISCARD CK_RV ecx_private(const EVP_PKEY *key, size_t len,
                                      kt_ossl_buf *out)
{
    size_t got = len;

    out->data = OPENSSL_zalloc(len);
    if (out->data == NULL)
        return CKR_HOST_MEMORY;
    if (EVP_PKEY_get_raw_private_key(key, out->data, &got) != 1 || got != len) {
        OPENSSL_clear_free(out->data, len);
        out->data = NULL;
        return CKR_GENERAL_ERROR;
    }
    out->len = len;
    return CKR_OK;
}

/* EC private value, big-endian, padded to the field length. */
static KT_NODISCARD CK_RV ec_private(const EVP_PKEY *key, size_t flen,
                                     kt_ossl_buf *out)
{
    BIGNUM *priv = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (!EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &priv))
        return rv;
    out->data = OPENSSL_zalloc(flen);
    if (out->data == NULL) {
        rv = CKR_HOST_MEMORY;
    } else {
        out->len = flen;
        if (BN_bn2binpad(priv, out->data, (int)flen) >= 0)
            rv = CKR_OK;
    }
    BN_clear_free(priv);
    return rv;
}

CK_RV kt_ossl_ec_export(const EVP_PKEY *key, int with_private, kt_ec_parts *out)
{
    unsigned char pt[KT_POINT_MAX];
    size_t pt_len = 0;
    CK_KEY_TYPE type = kt_ossl_key_type(key);
    int nid;
    CK_RV rv;

    memset(out, 0, sizeof(*out));
    if (type != CKK_EC && type != CKK_EC_EDWARDS && type != CKK_EC_MONTGOMERY)
        return CKR_KEY_TYPE_INCONSISTENT;
    nid = ec_key_nid(key);
    if (!ec_nid_supported(nid))
        return CKR_CURVE_NOT_SUPPORTED;
    if ((rv = ec_params_der(nid, &out->params)) != CKR_OK)
        goto out;
    /* The uncompressed point (EC) or the raw public key (the others). */
    if (!EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                         sizeof(pt), &pt_len)) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    if ((rv = ec_point_der(pt, pt_len, &out->point)) != CKR_OK)
        goto out;
    if (with_private)
        rv = type == CKK_EC ? ec_private(key, ec_field_len(nid), &out->value)
                            : ecx_private(key, ec_field_len(nid), &out->value);
out:
    ERR_clear_error();
    if (rv != CKR_OK)
        kt_ec_parts_free(out);
    return rv;
}

/* ---- import ---------------------------------------------------------- */

static int present(const kt_ossl_buf *b)
{
    return b->data != NULL && b->len > 0;
}

/* Pushes a big-endian integer; the BIGNUM is remembered in bns[] so the
 * caller can wipe and free it after EVP_PKEY_fromdata copied it. */
static int push_bn(OSSL_PARAM_BLD *bld, const char *name, const kt_ossl_buf *b,
                   BIGNUM **slot)
{
    if (b->len > INT32_MAX)
        return 0;
    *slot = BN_secure_new();
    if (*slot == NULL || BN_bin2bn(b->data, (int)b->len, *slot) == NULL)
        return 0;
    return OSSL_PARAM_BLD_push_BN(bld, name, *slot);
}

static KT_NODISCARD CK_RV fromdata(const char *type, int selection,
                                   OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    if (params == NULL)
        goto out;
    rv = CKR_ATTRIBUTE_VALUE_INVALID;
    ctx = EVP_PKEY_CTX_new_from_name(kt_ossl_libctx(), type, NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, out, selection, params) <= 0)
        goto out;
    rv = CKR_OK;
out:
    OSSL_PARAM_free(params); /* secure (BN_secure_new) parts are wiped */
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

CK_RV kt_ossl_rsa_import(const kt_rsa_parts *parts, int is_private,
                         EVP_PKEY **out)
{
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *bns[8] = {NULL};
    int crt;
    CK_ULONG bits;
    CK_RV rv = CKR_HOST_MEMORY;

    *out = NULL;
    if (!present(&parts->n) || !present(&parts->e) ||
        (is_private && !present(&parts->d)))
        return CKR_TEMPLATE_INCOMPLETE;
    crt = present(&parts->p) + present(&parts->q) + present(&parts->dp) +
          present(&parts->dq) + present(&parts->qinv);
    if (is_private && crt != 0 && crt != 5)
        return CKR_TEMPLATE_INCOMPLETE;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        !push_bn(bld, OSSL_PKEY_PARAM_RSA_N, &parts->n, &bns[0]) ||
        !push_bn(bld, OSSL_PKEY_PARAM_RSA_E, &parts->e, &bns[1]))
        goto out;
    if (is_private) {
        if (!push_bn(bld, OSSL_PKEY_PARAM_RSA_D, &parts->d, &bns[2]))
            goto out;
        if (crt == 5 &&
            (!push_bn(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, &parts->p, &bns[3]) ||
             !push_bn(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, &parts->q, &bns[4]) ||
             !push_bn(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, &parts->dp,
                      &bns[5]) ||
             !push_bn(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, &parts->dq,
                      &bns[6]) ||
             !push_bn(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &parts->qinv,
                      &bns[7])))
            goto out;
    }
    rv =
        fromdata(KT_ALG_RSA,
                 is_private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, bld, out);
    if (rv != CKR_OK)
        goto out;
    bits = kt_ossl_key_bits(*out);
    if (bits < kt_ossl_rsa_min_bits() || bits > KT_RSA_MAX_BITS ||
        !BN_is_odd(bns[1]) || BN_is_one(bns[1])) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        EVP_PKEY_free(*out);
        *out = NULL;
    }
out:
    ERR_clear_error();
    for (size_t i = 0; i < sizeof(bns) / sizeof(bns[0]); i++)
        BN_clear_free(bns[i]);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

/* DSA and DH keys are both finite-field (FFC) keys: the same domain numbers
 * and the same OpenSSL parameters. One implementation serves both, so a fix
 * to one family cannot miss the other; what differs is in struct ffc. */
struct ffc {
    const char *alg;  /* OpenSSL algorithm name */
    CK_KEY_TYPE type; /* what an exported key must be */
    int has_q;        /* q belongs to the domain (DSA), not to DH's */
    int (*size_ok)(const EVP_PKEY *key);
    /* the private value x in range; bns[0..3] hold p, q, g, x */
    int (*x_ok)(BIGNUM *const *bns);
};

static int dsa_domain_ok(const EVP_PKEY *key)
{
    size_t half;

    return dsa_size_ok(key, &half);
}

/* DSA: x in (0, q). */
static int dsa_x_ok(BIGNUM *const *bns)
{
    return !BN_is_zero(bns[3]) && !BN_is_negative(bns[3]) &&
           BN_cmp(bns[3], bns[1]) < 0;
}

static int dh_size_ok(const EVP_PKEY *key)
{
    int bits = EVP_PKEY_get_bits(key);
    return bits >= KT_DH_MIN_BITS && bits <= KT_DH_MAX_BITS;
}

/* DH (PKCS#3): 1 < x and x shorter than p, as DH has no q to bound it. */
static int dh_x_ok(BIGNUM *const *bns)
{
    return BN_cmp(bns[3], BN_value_one()) > 0 &&
           BN_num_bits(bns[3]) < BN_num_bits(bns[0]);
}

static const struct ffc ffc_dsa = {KT_ALG_DSA, CKK_DSA, 1, dsa_domain_ok,
                                   dsa_x_ok};
static const struct ffc ffc_dh = {KT_ALG_DH, CKK_DH, 0, dh_size_ok, dh_x_ok};

/* All the domain numbers of the family are given. */
static int ffc_domain_present(const struct ffc *f, const kt_dsa_parts *d)
{
    return present(&d->p) && (!f->has_q || present(&d->q)) && present(&d->g);
}

/* p, (q,) g pushed for a key or domain; bns[0..2] keep the numbers, bns[1]
 * stays NULL when the family has no q. */
static int push_domain(OSSL_PARAM_BLD *bld, const struct ffc *f,
                       const kt_dsa_parts *d, BIGNUM **bns)
{
    return push_bn(bld, OSSL_PKEY_PARAM_FFC_P, &d->p, &bns[0]) &&
           (!f->has_q || push_bn(bld, OSSL_PKEY_PARAM_FFC_Q, &d->q, &bns[1])) &&
           push_bn(bld, OSSL_PKEY_PARAM_FFC_G, &d->g, &bns[2]);
}

static KT_NODISCARD CK_RV ffc_generate(const struct ffc *f,
                                       const kt_dsa_parts *domain,
                                       EVP_PKEY **out)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bns[3] = {NULL};
    EVP_PKEY *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    *out = NULL;
    if (!ffc_domain_present(f, domain))
        rv = CKR_TEMPLATE_INCOMPLETE;
    else if (bld != NULL && push_domain(bld, f, domain, bns))
        rv = fromdata(f->alg, EVP_PKEY_KEY_PARAMETERS, bld, &params);
    if (rv == CKR_OK && !f->size_ok(params))
        rv = CKR_KEY_SIZE_RANGE;
    if (rv == CKR_OK) {
        ctx = EVP_PKEY_CTX_new_from_pkey(kt_ossl_libctx(), params, NULL);
        if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
            EVP_PKEY_generate(ctx, out) <= 0)
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
    }
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(params);
    for (size_t i = 0; i < 3; i++)
        BN_free(bns[i]);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

static KT_NODISCARD CK_RV ffc_export(const struct ffc *f, const EVP_PKEY *key,
                                     int with_private, kt_dsa_parts *out)
{
    CK_RV rv = CKR_OK;

    memset(out, 0, sizeof(*out));
    if (kt_ossl_key_type(key) != f->type)
        return CKR_KEY_TYPE_INCONSISTENT;
    if ((rv = bn_param(key, OSSL_PKEY_PARAM_FFC_P, &out->p, 1)) != CKR_OK ||
        (f->has_q &&
         (rv = bn_param(key, OSSL_PKEY_PARAM_FFC_Q, &out->q, 1)) != CKR_OK) ||
        (rv = bn_param(key, OSSL_PKEY_PARAM_FFC_G, &out->g, 1)) != CKR_OK ||
        (rv = bn_param(key,
                       with_private ? OSSL_PKEY_PARAM_PRIV_KEY
                                    : OSSL_PKEY_PARAM_PUB_KEY,
                       &out->value, 1)) != CKR_OK)
        kt_dsa_parts_free(out);
    return rv;
}

/* y = g^x mod p of a private key given without it, once x is in range. */
static KT_NODISCARD CK_RV ffc_public(const struct ffc *f, BIGNUM **bns,
                                     BIGNUM **y)
{
    BN_CTX *bc = BN_CTX_new_ex(kt_ossl_libctx());
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    *y = BN_new();
    if (bc == NULL || *y == NULL) {
        rv = CKR_HOST_MEMORY;
    } else if (f->x_ok(bns)) {
        BN_set_flags(bns[3], BN_FLG_CONSTTIME);
        if (BN_mod_exp(*y, bns[2], bns[3], bns[0], bc))
            rv = CKR_OK;
    }
    BN_CTX_free(bc);
    return rv;
}

static KT_NODISCARD CK_RV ffc_import(const struct ffc *f,
                                     const kt_dsa_parts *parts, int is_private,
                                     EVP_PKEY **out)
{
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *bns[4] = {NULL}, *y = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    *out = NULL;
    if (!ffc_domain_present(f, parts) || !present(&parts->value))
        return CKR_TEMPLATE_INCOMPLETE;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !push_domain(bld, f, parts, bns) ||
        !push_bn(bld,
                 is_private ? OSSL_PKEY_PARAM_PRIV_KEY
                            : OSSL_PKEY_PARAM_PUB_KEY,
                 &parts->value, &bns[3]))
        goto out;
    if (is_private) {
        rv = ffc_public(f, bns, &y);
        if (rv != CKR_OK)
            goto out;
        rv = CKR_HOST_MEMORY;
        if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PUB_KEY, y))
            goto out;
    }
    rv = fromdata(f->alg, is_private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                  bld, out);
    if (rv == CKR_OK && !f->size_ok(*out)) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        EVP_PKEY_free(*out);
        *out = NULL;
    }
out:
    ERR_clear_error();
    for (size_t i = 0; i < 4; i++)
        BN_clear_free(bns[i]);
    BN_free(y);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

CK_RV kt_ossl_dsa_generate(const kt_dsa_parts *domain, EVP_PKEY **out)
{
    return ffc_generate(&ffc_dsa, domain, out);
}

CK_RV kt_ossl_dsa_export(const EVP_PKEY *key, int with_private,
                         kt_dsa_parts *out)
{
    return ffc_export(&ffc_dsa, key, with_private, out);
}

CK_RV kt_ossl_dsa_import(const kt_dsa_parts *parts, int is_private,
                         EVP_PKEY **out)
{
    return ffc_import(&ffc_dsa, parts, is_private, out);
}

/* The raw point inside CKA_EC_POINT. A DER OCTET STRING is what the spec
 * says; some applications send the bare point, accepted when the lengths
 * make the reading unambiguous. */
static KT_NODISCARD CK_RV ec_point_raw(const kt_ossl_buf *in, size_t flen,
                                       unsigned char *pt, size_t *pt_len)
{
    const unsigned char *p = in->data;
    ASN1_OCTET_STRING *os;
    size_t want = 1 + 2 * flen;

    os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)in->len);
    if (os != NULL && p == in->data + in->len &&
        (size_t)ASN1_STRING_length(os) == want) {
        memcpy(pt, ASN1_STRING_get0_data(os), want);
        *pt_len = want;
        ASN1_OCTET_STRING_free(os);
        return CKR_OK;
    }
    ASN1_OCTET_STRING_free(os);
    ERR_clear_error();
    if (in->len == want && in->data[0] == POINT_CONVERSION_UNCOMPRESSED) {
        memcpy(pt, in->data, want);
        *pt_len = want;
        return CKR_OK;
    }
    return CKR_ATTRIBUTE_VALUE_INVALID;
}

/* Q = d*G for an EC private key imported without its public point. */
static KT_NODISCARD CK_RV ec_public_from_private(int nid, const BIGNUM *d,
                                                 unsigned char *pt,
                                                 size_t *pt_len, size_t cap)
{
    EC_GROUP *group = EC_GROUP_new_by_curve_name(nid);
    EC_POINT *q = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    if (group == NULL || (q = EC_POINT_new(group)) == NULL)
        goto out;
    rv = CKR_ATTRIBUTE_VALUE_INVALID;
    if (BN_is_zero(d) || BN_is_negative(d) ||
        BN_cmp(d, EC_GROUP_get0_order(group)) >= 0)
        goto out;
    if (!EC_POINT_mul(group, q, d, NULL, NULL, NULL))
        goto out;
    *pt_len = EC_POINT_point2oct(group, q, POINT_CONVERSION_UNCOMPRESSED, pt,
                                 cap, NULL);
    if (*pt_len == 0)
        goto out;
    rv = CKR_OK;
out:
    EC_POINT_free(q);
    EC_GROUP_free(group);
    return rv;
}

/* The raw public key inside CKA_EC_POINT of an Edwards or Montgomery key:
 * the DER OCTET STRING of PKCS#11 3.0, or the raw key alone (what
 * CK_ECDH1_DERIVE_PARAMS carries, and what some applications store). The
 * two differ in length, so the reading is never ambiguous. */
static KT_NODISCARD CK_RV ecx_point_raw(const kt_ossl_buf *in, size_t klen,
                                        const unsigned char **raw)
{
    if (in->len == klen) {
        *raw = in->data;
        return CKR_OK;
    }
    if (in->len == klen + 2 && in->data[0] == V_ASN1_OCTET_STRING &&
        in->data[1] == klen) {
        *raw = in->data + 2;
        return CKR_OK;
    }
    return CKR_ATTRIBUTE_VALUE_INVALID;
}

/* Ed25519, Ed448, X25519, X448 keys from their raw values; a private key
 * given with its public key must match it. */
static KT_NODISCARD CK_RV ecx_import(const struct curve *c,
                                     const kt_ec_parts *parts, int is_private,
                                     EVP_PKEY **out)
{
    const unsigned char *raw = NULL;
    unsigned char pub[64];
    size_t pub_len = sizeof(pub);
    CK_RV rv;

    if (present(&parts->point)) {
        rv = ecx_point_raw(&parts->point, c->len, &raw);
        if (rv != CKR_OK)
            return rv;
    }
    if (!is_private) {
        *out = EVP_PKEY_new_raw_public_key_ex(kt_ossl_libctx(), c->alg, NULL,
                                              raw, c->len);
        ERR_clear_error();
        return *out != NULL ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if (parts->value.len != c->len)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *out = EVP_PKEY_new_raw_private_key_ex(kt_ossl_libctx(), c->alg, NULL,
                                           parts->value.data, c->len);
    ERR_clear_error();
    if (*out == NULL)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (raw != NULL && (EVP_PKEY_get_raw_public_key(*out, pub, &pub_len) != 1 ||
                        pub_len != c->len || memcmp(pub, raw, c->len) != 0)) {
        EVP_PKEY_free(*out);
        *out = NULL;
        ERR_clear_error();
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

CK_RV kt_ossl_ec_import(const kt_ec_parts *parts, int is_private,
                        EVP_PKEY **out)
{
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *d = NULL;
    unsigned char pt[KT_POINT_MAX];
    size_t pt_len = 0, flen;
    int nid;
    CK_RV rv;

    *out = NULL;
    if (!present(&parts->params) ||
        (is_private ? !present(&parts->value) : !present(&parts->point)))
        return CKR_TEMPLATE_INCOMPLETE;
    rv = ec_params_nid(parts->params.data, parts->params.len, &nid);
    if (rv != CKR_OK)
        return rv;
    if (curve_of(nid)->type != CKK_EC)
        return ecx_import(curve_of(nid), parts, is_private, out);
    flen = ec_field_len(nid);
    rv = CKR_HOST_MEMORY;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_utf8_string(
                           bld, OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid), 0))
        goto out;
    if (is_private) {
        if (parts->value.len > flen) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
        if (!push_bn(bld, OSSL_PKEY_PARAM_PRIV_KEY, &parts->value, &d))
            goto out;
        rv = ec_public_from_private(nid, d, pt, &pt_len, sizeof(pt));
        if (rv != CKR_OK)
            goto out;
        if (present(&parts->point)) {
            unsigned char given[sizeof(pt)];
            size_t given_len = 0;
            rv = ec_point_raw(&parts->point, flen, given, &given_len);
            if (rv == CKR_OK &&
                (given_len != pt_len || memcmp(given, pt, pt_len) != 0))
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
            if (rv != CKR_OK)
                goto out;
        }
    } else {
        rv = ec_point_raw(&parts->point, flen, pt, &pt_len);
        if (rv != CKR_OK)
            goto out;
    }
    rv = CKR_HOST_MEMORY;
    if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                          pt_len))
        goto out;
    rv =
        fromdata(KT_ALG_EC, is_private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                 bld, out);
out:
    ERR_clear_error();
    BN_clear_free(d);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

CK_RV kt_ossl_spki(const EVP_PKEY *key, kt_ossl_buf *out)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(key, &der);

    if (len <= 0) {
        ERR_clear_error();
        return CKR_GENERAL_ERROR;
    }
    out->data = der;
    out->len = (size_t)len;
    return CKR_OK;
}

CK_RV kt_ossl_key_id(const EVP_PKEY *key, unsigned char id[KT_KEY_ID_LEN])
{
    unsigned char buf[KT_POINT_MAX];
    size_t len = 0;
    kt_rsa_parts rsa;
    kt_ossl_buf y = {NULL, 0};
    unsigned int md_len = KT_KEY_ID_LEN;
    EVP_MD *sha1 = EVP_MD_fetch(kt_ossl_libctx(), "SHA1", NULL);
    int ok;

    switch (kt_ossl_key_type(key)) {
    case CKK_RSA:
        if (kt_ossl_rsa_export(key, 0, &rsa) != CKR_OK) {
            EVP_MD_free(sha1);
            return CKR_GENERAL_ERROR;
        }
        ok = sha1 != NULL &&
             EVP_Digest(rsa.n.data, rsa.n.len, id, &md_len, sha1, NULL);
        kt_rsa_parts_free(&rsa);
        break;
    case CKK_DSA:
    case CKK_DH:
        /* y, as the public key's CKA_VALUE holds it */
        ok = bn_param(key, OSSL_PKEY_PARAM_PUB_KEY, &y, 1) == CKR_OK &&
             sha1 != NULL && EVP_Digest(y.data, y.len, id, &md_len, sha1, NULL);
        kt_ossl_buf_free(&y);
        break;
    case CKK_EC:
    case CKK_EC_EDWARDS:
    case CKK_EC_MONTGOMERY:
        /* the uncompressed point, or the raw public key */
        ok = EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, buf,
                                             sizeof(buf), &len) &&
             sha1 != NULL && EVP_Digest(buf, len, id, &md_len, sha1, NULL);
        break;
    default:
        ok = -1;
    }
    EVP_MD_free(sha1);
    ERR_clear_error();
    return ok < 0 ? CKR_KEY_TYPE_INCONSISTENT : ok ? CKR_OK : CKR_GENERAL_ERROR;
}

/* ---- certificates ---------------------------------------------------- */

void kt_cert_fields_free(kt_cert_fields *f)
{
    OPENSSL_free(f->subject.data);
    OPENSSL_free(f->issuer.data);
    OPENSSL_free(f->serial.data);
    memset(f, 0, sizeof(*f));
}

CK_RV kt_ossl_cert_fields(const unsigned char *der, size_t len,
                          kt_cert_fields *out)
{
    const unsigned char *p = der;
    X509 *x = NULL;
    int n1, n2, n3;
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    memset(out, 0, sizeof(*out));
    if (der == NULL || len == 0 || len > LONG_MAX)
        return rv;
    x = X509_new_ex(kt_ossl_libctx(), NULL);
    if (x == NULL || d2i_X509(&x, &p, (long)len) == NULL || p != der + len)
        goto out;
    rv = CKR_HOST_MEMORY;
    /* With a NULL output pointer i2d allocates, and allocates nothing when
     * it fails. */
    n1 = i2d_X509_NAME(X509_get_subject_name(x), &out->subject.data);
    n2 = i2d_X509_NAME(X509_get_issuer_name(x), &out->issuer.data);
    n3 = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &out->serial.data);
    if (n1 <= 0 || n2 <= 0 || n3 <= 0) {
        kt_cert_fields_free(out);
        goto out;
    }
    out->subject.len = (size_t)n1;
    out->issuer.len = (size_t)n2;
    out->serial.len = (size_t)n3;
    rv = CKR_OK;
out:
    ERR_clear_error();
    X509_free(x);
    return rv;
}

/* ---- operations ------------------------------------------------------ */

struct kt_asym_op {
    const struct asym_mech *m;
    kt_asym_mode mode;
    EVP_PKEY *key;
    EVP_PKEY_CTX *pctx; /* raw sign/verify, encrypt/decrypt; owned */
    EVP_MD_CTX *mctx;   /* hashing sign/verify (owns its pkey ctx) */
    size_t out_len;     /* signature length, or maximum cipher output */
    size_t max_in;      /* raw input limit (0: any) */
    size_t exact_in;    /* raw input must be exactly this long (0: any) */
    size_t ec_half;     /* ECDSA: bytes of r and of s */
    /* EdDSA reads the message twice (RFC 8032 §5.1.6): C_SignUpdate /
     * C_VerifyUpdate gather it here for the final call. */
    unsigned char *msg;
    size_t msg_len, msg_cap;
};

/* The most an EdDSA operation gathers through its update calls. */
#define KT_EDDSA_MSG_MAX ((size_t)64 << 20)

static KT_NODISCARD CK_RV check_pss(const struct asym_mech *m,
                                    const CK_MECHANISM *mech,
                                    const EVP_PKEY *key,
                                    CK_RSA_PKCS_PSS_PARAMS *pss)
{
    size_t em_len, h_len;

    if (mech->pParameter == NULL ||
        mech->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    memcpy(pss, mech->pParameter, sizeof(*pss));
    h_len = hash_len(pss->hashAlg);
    /* The hashing variants name their hash; the parameter must agree, and
     * the mask generator must use the same hash. */
    if (h_len == 0 || (m->hash != 0 && pss->hashAlg != m->hash) ||
        mgf_hash(pss->mgf) != pss->hashAlg)
        return CKR_MECHANISM_PARAM_INVALID;
    /* RFC 8017 §9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits-1)/8) */
    em_len = (kt_ossl_key_bits(key) - 1 + 7) / 8;
    if (pss->sLen > em_len || em_len < h_len + 2 ||
        pss->sLen > em_len - h_len - 2)
        return CKR_MECHANISM_PARAM_INVALID;
    return CKR_OK;
}

static KT_NODISCARD CK_RV check_oaep(const CK_MECHANISM *mech,
                                     CK_RSA_PKCS_OAEP_PARAMS *oaep)
{
    /* No parameter at all means RFC 8017's defaults (SHA-1, MGF1-SHA-1, no
     * label): pkcs11-tool 0.23 --wrap/--unwrap sends none. */
    if (mech->pParameter == NULL && mech->ulParameterLen == 0) {
        memset(oaep, 0, sizeof(*oaep));
        oaep->hashAlg = CKM_SHA_1;
        oaep->mgf = CKG_MGF1_SHA1;
        return CKR_OK;
    }
    if (mech->pParameter == NULL ||
        mech->ulParameterLen != sizeof(CK_RSA_PKCS_OAEP_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    memcpy(oaep, mech->pParameter, sizeof(*oaep));
    if (hash_len(oaep->hashAlg) == 0 || mgf_hash(oaep->mgf) != oaep->hashAlg)
        return CKR_MECHANISM_PARAM_INVALID;
    /* PKCS#11 v2.40 §2.1.8: CKZ_DATA_SPECIFIED is the only source; a zero
     * source with no data (an empty label) is what pkcs11-tool sends. */
    if (oaep->source == CKZ_DATA_SPECIFIED) {
        if (oaep->pSourceData == NULL && oaep->ulSourceDataLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
    } else if (oaep->source != 0 || oaep->pSourceData != NULL ||
               oaep->ulSourceDataLen != 0) {
        return CKR_MECHANISM_PARAM_INVALID;
    }
    return CKR_OK;
}

static KT_NODISCARD CK_RV set_rsa_padding(kt_asym_op *op, EVP_PKEY_CTX *ctx,
                                          const CK_MECHANISM *mech, size_t k)
{
    const struct asym_mech *m = op->m;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    CK_RV rv;

    switch (m->pad) {
    case PAD_RAW:
        if (mech->pParameter != NULL || mech->ulParameterLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) <= 0)
            return CKR_GENERAL_ERROR;
        op->max_in = k;
        return CKR_OK;
    case PAD_PKCS1:
        if (mech->pParameter != NULL || mech->ulParameterLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
            return CKR_GENERAL_ERROR;
        if (m->hash == 0)
            op->max_in = k - KT_PKCS1_OVERHEAD;
        return CKR_OK;
    case PAD_PSS:
        rv = check_pss(m, mech, op->key, &pss);
        if (rv != CKR_OK)
            return rv;
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
            (m->hash == 0 && pss_set_md(ctx, hash_name(pss.hashAlg)) <= 0) ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, hash_name(pss.hashAlg),
                                              NULL) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)pss.sLen) <= 0)
            return CKR_GENERAL_ERROR;
        if (m->hash == 0)
            op->exact_in = hash_len(pss.hashAlg);
        return CKR_OK;
    case PAD_OAEP:
        rv = check_oaep(mech, &oaep);
        if (rv != CKR_OK)
            return rv;
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, hash_name(oaep.hashAlg),
                                              NULL) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, hash_name(oaep.hashAlg),
                                              NULL) <= 0)
            return CKR_GENERAL_ERROR;
        if (oaep.ulSourceDataLen > 0) {
            /* set0 takes ownership of the label copy. */
            void *label =
                OPENSSL_memdup(oaep.pSourceData, oaep.ulSourceDataLen);
            if (label == NULL)
                return CKR_HOST_MEMORY;
            if (EVP_PKEY_CTX_set0_rsa_oaep_label(
                    ctx, label, (int)oaep.ulSourceDataLen) <= 0) {
                OPENSSL_free(label);
                return CKR_GENERAL_ERROR;
            }
        }
        if (k < 2 * hash_len(oaep.hashAlg) + 2)
            return CKR_KEY_SIZE_RANGE;
        op->max_in = k - 2 * hash_len(oaep.hashAlg) - 2;
        return CKR_OK;
    default:
        return CKR_GENERAL_ERROR;
    }
}

/* A parsed key with the facts every C_*Init needs and, per mechanism and
 * mode without a parameter, one initialised EVP_PKEY_CTX that operations
 * duplicate: no provider fetch or key inspection per operation. The
 * templates are filled on first use; the lock guards them only. */
#define KT_ASYM_TMPL_MAX 12
struct kt_asym_key {
    EVP_PKEY *pkey;
    CK_KEY_TYPE type;
    CK_ULONG bits;
    int has_private;
    int size_ok; /* RSA size in range, or a supported curve */
    size_t half; /* ECDSA / DSA: bytes of r and of s */
    pthread_mutex_t lock;
    struct asym_tmpl {
        CK_MECHANISM_TYPE mech;
        kt_asym_mode mode;
        EVP_PKEY_CTX *ctx;
        size_t max_in, exact_in;
    } tmpl[KT_ASYM_TMPL_MAX];
    size_t n_tmpl;
};

/* DSA: p of KT_DSA_MIN_BITS to KT_DSA_MAX_BITS, q of 160, 224 or 256
 * bits (FIPS 186-4 §4.2); the bytes of q in *half. */
static int dsa_size_ok(const EVP_PKEY *key, size_t *half)
{
    BIGNUM *q = NULL;
    int pbits = EVP_PKEY_get_bits(key), qbits = 0;

    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_FFC_Q, &q))
        qbits = BN_num_bits(q);
    BN_free(q);
    ERR_clear_error();
    *half = ((size_t)qbits + 7) / 8;
    return pbits >= KT_DSA_MIN_BITS && pbits <= KT_DSA_MAX_BITS &&
           (qbits == 160 || qbits == 224 || qbits == 256);
}

CK_RV kt_ossl_asym_key_new(EVP_PKEY *pkey, kt_asym_key **out)
{
    kt_asym_key *k;

    *out = NULL;
    if (pkey == NULL)
        return CKR_ARGUMENTS_BAD;
    k = OPENSSL_zalloc(sizeof(*k));
    if (k == NULL)
        return CKR_HOST_MEMORY;
    if (!EVP_PKEY_up_ref(pkey) || pthread_mutex_init(&k->lock, NULL) != 0) {
        OPENSSL_free(k);
        return CKR_GENERAL_ERROR;
    }
    k->pkey = pkey;
    k->type = kt_ossl_key_type(pkey);
    k->bits = kt_ossl_key_bits(pkey);
    k->has_private = key_has_private(pkey);
    if (k->type == CKK_RSA)
        k->size_ok =
            k->bits >= kt_ossl_rsa_min_bits() && k->bits <= KT_RSA_MAX_BITS;
    else if (k->type == CKK_EC || k->type == CKK_EC_EDWARDS ||
             k->type == CKK_EC_MONTGOMERY)
        k->size_ok = ec_nid_supported(ec_key_nid(pkey));
    else if (k->type == CKK_DSA)
        k->size_ok = dsa_size_ok(pkey, &k->half);
    if (k->type != CKK_DSA)
        k->half = (k->bits + 7) / 8;
    ERR_clear_error();
    *out = k;
    return CKR_OK;
}

void kt_ossl_asym_key_free(kt_asym_key *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n_tmpl; i++)
        EVP_PKEY_CTX_free(k->tmpl[i].ctx);
    pthread_mutex_destroy(&k->lock);
    EVP_PKEY_free(k->pkey);
    OPENSSL_clear_free(k, sizeof(*k));
}

EVP_PKEY *kt_ossl_asym_key_pkey(const kt_asym_key *k)
{
    return k->pkey;
}

/* Operations duplicate a template only for mechanisms without parameter:
 * a parameter (PSS, OAEP label) may differ from one operation to the next.
 */
static struct asym_tmpl *tmpl_find(kt_asym_key *k, CK_MECHANISM_TYPE mech,
                                   kt_asym_mode mode)
{
    for (size_t i = 0; i < k->n_tmpl; i++)
        if (k->tmpl[i].mech == mech && k->tmpl[i].mode == mode)
            return &k->tmpl[i];
    return NULL;
}

static void tmpl_add(kt_asym_key *k, const kt_asym_op *op,
                     CK_MECHANISM_TYPE mech)
{
    EVP_PKEY_CTX *dup = NULL;

    pthread_mutex_lock(&k->lock);
    if (k->n_tmpl < KT_ASYM_TMPL_MAX && tmpl_find(k, mech, op->mode) == NULL &&
        (dup = EVP_PKEY_CTX_dup(op->pctx)) != NULL) {
        struct asym_tmpl *t = &k->tmpl[k->n_tmpl++];
        t->mech = mech;
        t->mode = op->mode;
        t->ctx = dup;
        t->max_in = op->max_in;
        t->exact_in = op->exact_in;
    }
    pthread_mutex_unlock(&k->lock);
    ERR_clear_error();
}

/* The operation's context from a template; 0 when there is none. */
static int tmpl_use(kt_asym_key *k, kt_asym_op *op, CK_MECHANISM_TYPE mech)
{
    struct asym_tmpl *t;

    pthread_mutex_lock(&k->lock);
    t = tmpl_find(k, mech, op->mode);
    if (t != NULL && (op->pctx = EVP_PKEY_CTX_dup(t->ctx)) != NULL) {
        op->max_in = t->max_in;
        op->exact_in = t->exact_in;
    }
    pthread_mutex_unlock(&k->lock);
    return op->pctx != NULL;
}

CK_RV kt_ossl_asym_init(const CK_MECHANISM *mech, EVP_PKEY *key,
                        kt_asym_mode mode, kt_asym_op **out)
{
    kt_asym_key *k = NULL;
    CK_RV rv;

    *out = NULL;
    if (mech == NULL || key == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = kt_ossl_asym_key_new(key, &k);
    if (rv == CKR_OK)
        rv = kt_ossl_asym_init_key(mech, k, mode, out);
    kt_ossl_asym_key_free(k);
    return rv;
}

/* CK_EDDSA_PARAMS: none, or pure EdDSA spelt out (no prehash, no
 * context). Ed25519ph/ctx and Ed448ph need OpenSSL 3.2's instances; an
 * Ed448 context is not passed by OpenSSL 3.0's provider. */
static KT_NODISCARD CK_RV eddsa_params(const CK_MECHANISM *mech)
{
    struct kt_eddsa_params p;

    if (mech->pParameter == NULL && mech->ulParameterLen == 0)
        return CKR_OK;
    if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(p))
        return CKR_MECHANISM_PARAM_INVALID;
    memcpy(&p, mech->pParameter, sizeof(p));
    if (p.phFlag != CK_FALSE || p.ulContextDataLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    return CKR_OK;
}

/* Whether MECH may run in MODE on key KF; its table row in *out. */
static KT_NODISCARD CK_RV asym_check(const CK_MECHANISM *mech,
                                     const kt_asym_key *kf, kt_asym_mode mode,
                                     const struct asym_mech **out)
{
    const struct asym_mech *m = mech_find(mech->mechanism);

    if (m == NULL || !(m->modes & (1u << mode)))
        return CKR_MECHANISM_INVALID;
    /* MD5 and DSA: legacy_mechanisms = yes only */
    if ((m->hash == CKM_MD5 || m->key_type == CKK_DSA) &&
        !kt_ossl_asym_legacy())
        return CKR_MECHANISM_INVALID;
    if (kf->type != m->key_type)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (!kf->size_ok)
        return CKR_KEY_SIZE_RANGE;
    if ((mode == KT_ASYM_SIGN || mode == KT_ASYM_DECRYPT) && !kf->has_private)
        return CKR_KEY_TYPE_INCONSISTENT;
    if ((m->key_type == CKK_EC || m->key_type == CKK_DSA) &&
        m->pad == PAD_NONE &&
        (mech->pParameter != NULL || mech->ulParameterLen != 0))
        return CKR_MECHANISM_PARAM_INVALID;
    if (m->pad == PAD_EDDSA && eddsa_params(mech) != CKR_OK)
        return CKR_MECHANISM_PARAM_INVALID;
    *out = m;
    return CKR_OK;
}

/* A new operation of mechanism M on KEY (a reference taken), its output
 * length from the key's size in bytes, K. */
static KT_NODISCARD CK_RV asym_op_new(const struct asym_mech *m,
                                      kt_asym_mode mode, EVP_PKEY *key,
                                      size_t k, kt_asym_op **out)
{
    kt_asym_op *op = OPENSSL_zalloc(sizeof(*op));

    if (op == NULL)
        return CKR_HOST_MEMORY;
    op->m = m;
    op->mode = mode;
    if (!EVP_PKEY_up_ref(key)) {
        OPENSSL_free(op);
        return CKR_GENERAL_ERROR;
    }
    op->key = key;
    if (m->key_type == CKK_EC || m->key_type == CKK_DSA) {
        op->ec_half = k;
        op->out_len = 2 * k;
    } else if (m->key_type == CKK_EC_EDWARDS) {
        op->out_len = 2 * k; /* R || S: 64 (Ed25519) or 114 (Ed448) */
    } else {
        op->out_len = k;
    }
    *out = op;
    return CKR_OK;
}

/* The OpenSSL context of OP for its mode: a digest-and-sign context for a
 * mechanism that hashes, a bare key context otherwise (in *ctx either
 * way, owned by OP). */
static KT_NODISCARD CK_RV asym_ctx_init(kt_asym_op *op, EVP_PKEY_CTX **ctx)
{
    const char *md;
    int r;

    if (op->m->pad == PAD_EDDSA) {
        /* EdDSA signs the message itself: a digest-sign context without a
         * digest, used once. */
        op->mctx = EVP_MD_CTX_new();
        if (op->mctx == NULL)
            return CKR_HOST_MEMORY;
        r = op->mode == KT_ASYM_SIGN
                ? EVP_DigestSignInit_ex(op->mctx, ctx, NULL, kt_ossl_libctx(),
                                        NULL, op->key, NULL)
                : EVP_DigestVerifyInit_ex(op->mctx, ctx, NULL, kt_ossl_libctx(),
                                          NULL, op->key, NULL);
        return r <= 0 ? CKR_GENERAL_ERROR : CKR_OK;
    }
    if (op->m->hash != 0) {
        md = hash_name(op->m->hash);
        op->mctx = EVP_MD_CTX_new();
        if (op->mctx == NULL)
            return CKR_HOST_MEMORY;
        r = op->mode == KT_ASYM_SIGN
                ? EVP_DigestSignInit_ex(op->mctx, ctx, md, kt_ossl_libctx(),
                                        NULL, op->key, NULL)
                : EVP_DigestVerifyInit_ex(op->mctx, ctx, md, kt_ossl_libctx(),
                                          NULL, op->key, NULL);
        return r <= 0 ? CKR_GENERAL_ERROR : CKR_OK;
    }
    op->pctx = *ctx =
        EVP_PKEY_CTX_new_from_pkey(kt_ossl_libctx(), op->key, NULL);
    if (*ctx == NULL)
        return CKR_GENERAL_ERROR;
    switch (op->mode) {
    case KT_ASYM_SIGN:
        r = EVP_PKEY_sign_init(*ctx);
        break;
    case KT_ASYM_VERIFY:
        r = EVP_PKEY_verify_init(*ctx);
        break;
    case KT_ASYM_ENCRYPT:
        r = EVP_PKEY_encrypt_init(*ctx);
        break;
    default:
        r = EVP_PKEY_decrypt_init(*ctx);
        break;
    }
    /* e.g. signing or decrypting with a public-only key */
    return r <= 0 ? CKR_KEY_TYPE_INCONSISTENT : CKR_OK;
}

CK_RV kt_ossl_asym_init_key(const CK_MECHANISM *mech, kt_asym_key *kf,
                            kt_asym_mode mode, kt_asym_op **out)
{
    EVP_PKEY *key = kf != NULL ? kf->pkey : NULL;
    int cacheable;
    const struct asym_mech *m = NULL;
    kt_asym_op *op = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t k;
    CK_RV rv;

    *out = NULL;
    if (mech == NULL || key == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = asym_check(mech, kf, mode, &m);
    if (rv != CKR_OK)
        return rv;
    k = kf->type == CKK_EC || kf->type == CKK_DSA ? kf->half
                                                  : (kf->bits + 7) / 8;
    rv = asym_op_new(m, mode, key, k, &op);
    if (rv != CKR_OK)
        return rv;

    cacheable = m->hash == 0 && m->pad != PAD_EDDSA &&
                mech->pParameter == NULL && mech->ulParameterLen == 0;
    if (cacheable && tmpl_use(kf, op, mech->mechanism)) {
        *out = op;
        return CKR_OK;
    }
    rv = asym_ctx_init(op, &ctx);
    if (rv != CKR_OK)
        goto out;
    if (m->key_type == CKK_RSA) {
        rv = set_rsa_padding(op, ctx, mech, k);
        if (rv != CKR_OK)
            goto out;
    }
    if (cacheable)
        tmpl_add(kf, op, mech->mechanism);
    *out = op;
    op = NULL;
    rv = CKR_OK;
out:
    ERR_clear_error();
    kt_ossl_asym_free(op);
    return rv;
}

void kt_ossl_asym_free(kt_asym_op *op)
{
    if (op == NULL)
        return;
    EVP_MD_CTX_free(op->mctx);
    EVP_PKEY_CTX_free(op->pctx);
    EVP_PKEY_free(op->key);
    OPENSSL_free(op->msg);
    OPENSSL_clear_free(op, sizeof(*op));
}

size_t kt_ossl_asym_out_len(const kt_asym_op *op)
{
    return op->out_len;
}

/* ECDSA-Sig-Value DER -> r || s, each left-padded to half bytes
 * (PKCS#11 v2.40 §2.3.1). */
static KT_NODISCARD CK_RV ecdsa_der_to_raw(const unsigned char *der,
                                           size_t der_len, size_t half,
                                           unsigned char *out)
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    const BIGNUM *r, *s;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (sig == NULL)
        return rv;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, out, (int)half) == (int)half &&
        BN_bn2binpad(s, out + half, (int)half) == (int)half)
        rv = CKR_OK;
    ECDSA_SIG_free(sig);
    return rv;
}

static KT_NODISCARD CK_RV ecdsa_raw_to_der(const unsigned char *raw,
                                           size_t half, unsigned char *der,
                                           size_t *der_len)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL);
    BIGNUM *s = BN_bin2bn(raw + half, (int)half, NULL);
    unsigned char *p = der;
    CK_RV rv = CKR_HOST_MEMORY;
    int len;

    if (sig == NULL || r == NULL || s == NULL)
        goto out;
    ECDSA_SIG_set0(sig, r, s);
    r = s = NULL;
    len = i2d_ECDSA_SIG(sig, NULL);
    if (len <= 0 || (size_t)len > KT_ECDSA_DER_MAX) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    *der_len = (size_t)i2d_ECDSA_SIG(sig, &p);
    rv = CKR_OK;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return rv;
}

static KT_NODISCARD CK_RV check_mode(const kt_asym_op *op, kt_asym_mode mode)
{
    return op != NULL && op->mode == mode ? CKR_OK
                                          : CKR_OPERATION_NOT_INITIALIZED;
}

static KT_NODISCARD CK_RV check_raw_input(const kt_asym_op *op, size_t len)
{
    if ((op->exact_in && len != op->exact_in) ||
        (op->max_in && len > op->max_in) || len == 0)
        return CKR_DATA_LEN_RANGE;
    return CKR_OK;
}

/* Writes the final signature: DER from OpenSSL for ECDSA becomes r||s. */
static KT_NODISCARD CK_RV finish_sig(const kt_asym_op *op,
                                     const unsigned char *tmp, size_t tmp_len,
                                     unsigned char *sig, size_t *sig_len)
{
    /* DSA-Sig-Value has the form of ECDSA-Sig-Value (two INTEGERs) */
    if (op->m->key_type == CKK_EC || op->m->key_type == CKK_DSA) {
        CK_RV rv = ecdsa_der_to_raw(tmp, tmp_len, op->ec_half, sig);
        if (rv != CKR_OK)
            return rv;
        *sig_len = 2 * op->ec_half;
        return CKR_OK;
    }
    if (tmp_len != op->out_len)
        return CKR_GENERAL_ERROR;
    memcpy(sig, tmp, tmp_len);
    *sig_len = tmp_len;
    return CKR_OK;
}

/* CKM_RSA_X_509 input shorter than the modulus is a big-endian integer:
 * left-padded with zeros to k bytes (PKCS#11 v2.40 §2.1.7). */
static KT_NODISCARD CK_RV raw_block(const kt_asym_op *op,
                                    const unsigned char *data, size_t len,
                                    unsigned char *block)
{
    if (len > op->out_len)
        return CKR_DATA_LEN_RANGE;
    memset(block, 0, op->out_len - len);
    memcpy(block + op->out_len - len, data, len);
    return CKR_OK;
}

/* EdDSA over the whole message, in one call (RFC 8032 reads the message
 * twice, so OpenSSL has no update for it: multi-part operations gather
 * the message first). */
static KT_NODISCARD CK_RV eddsa_sign(kt_asym_op *op, const unsigned char *data,
                                     size_t len, unsigned char *sig,
                                     size_t *sig_len)
{
    size_t n = op->out_len;

    if (EVP_DigestSign(op->mctx, sig, &n, data, len) <= 0 || n != op->out_len) {
        ERR_clear_error();
        return CKR_FUNCTION_FAILED;
    }
    *sig_len = n;
    return CKR_OK;
}

static KT_NODISCARD CK_RV eddsa_verify(kt_asym_op *op,
                                       const unsigned char *data, size_t len,
                                       const unsigned char *sig, size_t sig_len)
{
    if (sig_len != op->out_len)
        return CKR_SIGNATURE_LEN_RANGE;
    if (EVP_DigestVerify(op->mctx, sig, sig_len, data, len) != 1) {
        ERR_clear_error();
        return CKR_SIGNATURE_INVALID;
    }
    return CKR_OK;
}

CK_RV kt_ossl_asym_sign(kt_asym_op *op, const unsigned char *data, size_t len,
                        unsigned char *sig, size_t *sig_len)
{
    unsigned char block[KT_RSA_MAX_BYTES];
    unsigned char tmp[KT_RSA_MAX_BYTES > KT_ECDSA_DER_MAX ? KT_RSA_MAX_BYTES
                                                          : KT_ECDSA_DER_MAX];
    size_t tmp_len = sizeof(tmp);
    CK_RV rv = check_mode(op, KT_ASYM_SIGN);

    if (rv != CKR_OK)
        return rv;
    if (op->m->pad == PAD_EDDSA)
        return eddsa_sign(op, data, len, sig, sig_len);
    if (op->mctx != NULL) {
        rv = kt_ossl_asym_update(op, data, len);
        return rv != CKR_OK ? rv : kt_ossl_asym_sign_final(op, sig, sig_len);
    }
    rv = check_raw_input(op, len);
    if (rv != CKR_OK)
        return rv;
    if (op->m->pad == PAD_RAW) {
        rv = raw_block(op, data, len, block);
        data = block;
        len = op->out_len;
    }
    if (rv == CKR_OK &&
        EVP_PKEY_sign(op->pctx, tmp, &tmp_len, data, len) <= 0) {
        ERR_clear_error();
        /* Raw RSA input that is not below the modulus. */
        rv = op->m->pad == PAD_RAW ? CKR_DATA_INVALID : CKR_FUNCTION_FAILED;
    }
    if (rv == CKR_OK)
        rv = finish_sig(op, tmp, tmp_len, sig, sig_len);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    OPENSSL_cleanse(block, sizeof(block));
    return rv;
}

/* Appends to the message of a multi-part EdDSA operation
 * (CKR_DATA_LEN_RANGE past KT_EDDSA_MSG_MAX). */
static KT_NODISCARD CK_RV eddsa_gather(kt_asym_op *op,
                                       const unsigned char *data, size_t len)
{
    size_t cap = op->msg_cap;
    unsigned char *p;

    if (len > KT_EDDSA_MSG_MAX - op->msg_len)
        return CKR_DATA_LEN_RANGE;
    if (op->msg_len + len > cap) {
        cap = cap == 0 ? 256 : cap;
        while (cap < op->msg_len + len)
            cap *= 2;
        p = OPENSSL_realloc(op->msg, cap);
        if (p == NULL)
            return CKR_HOST_MEMORY;
        op->msg = p;
        op->msg_cap = cap;
    }
    if (len > 0)
        memcpy(op->msg + op->msg_len, data, len);
    op->msg_len += len;
    return CKR_OK;
}

CK_RV kt_ossl_asym_update(kt_asym_op *op, const unsigned char *data, size_t len)
{
    int r;

    if (op == NULL || (op->mode != KT_ASYM_SIGN && op->mode != KT_ASYM_VERIFY))
        return CKR_OPERATION_NOT_INITIALIZED;
    if (op->m->pad == PAD_EDDSA)
        return eddsa_gather(op, data, len);
    if (op->mctx == NULL)
        return CKR_FUNCTION_NOT_SUPPORTED;
    if (len == 0)
        return CKR_OK;
    r = op->mode == KT_ASYM_SIGN ? EVP_DigestSignUpdate(op->mctx, data, len)
                                 : EVP_DigestVerifyUpdate(op->mctx, data, len);
    if (r <= 0) {
        ERR_clear_error();
        return CKR_FUNCTION_FAILED;
    }
    return CKR_OK;
}

CK_RV kt_ossl_asym_sign_final(kt_asym_op *op, unsigned char *sig,
                              size_t *sig_len)
{
    unsigned char tmp[KT_RSA_MAX_BYTES > KT_ECDSA_DER_MAX ? KT_RSA_MAX_BYTES
                                                          : KT_ECDSA_DER_MAX];
    size_t tmp_len = sizeof(tmp);
    CK_RV rv = check_mode(op, KT_ASYM_SIGN);

    if (rv != CKR_OK)
        return rv;
    if (op->m->pad == PAD_EDDSA)
        return eddsa_sign(op, op->msg, op->msg_len, sig, sig_len);
    if (op->mctx == NULL)
        return CKR_FUNCTION_NOT_SUPPORTED;
    if (EVP_DigestSignFinal(op->mctx, tmp, &tmp_len) <= 0) {
        ERR_clear_error();
        return CKR_FUNCTION_FAILED;
    }
    rv = finish_sig(op, tmp, tmp_len, sig, sig_len);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return rv;
}

/* The signature in the form OpenSSL verifies (DER for ECDSA). */
static KT_NODISCARD CK_RV prepare_sig(const kt_asym_op *op,
                                      const unsigned char *sig, size_t sig_len,
                                      unsigned char *der, size_t *der_len,
                                      const unsigned char **use,
                                      size_t *use_len)
{
    if (sig_len != op->out_len)
        return CKR_SIGNATURE_LEN_RANGE;
    if (op->m->key_type == CKK_EC || op->m->key_type == CKK_DSA) {
        CK_RV rv = ecdsa_raw_to_der(sig, op->ec_half, der, der_len);
        if (rv != CKR_OK)
            return rv;
        *use = der;
        *use_len = *der_len;
    } else {
        *use = sig;
        *use_len = sig_len;
    }
    return CKR_OK;
}

CK_RV kt_ossl_asym_verify(kt_asym_op *op, const unsigned char *data, size_t len,
                          const unsigned char *sig, size_t sig_len)
{
    unsigned char block[KT_RSA_MAX_BYTES];
    unsigned char der[KT_ECDSA_DER_MAX];
    size_t der_len = 0, use_len = 0;
    const unsigned char *use = NULL;
    CK_RV rv = check_mode(op, KT_ASYM_VERIFY);

    if (rv != CKR_OK)
        return rv;
    if (op->m->pad == PAD_EDDSA)
        return eddsa_verify(op, data, len, sig, sig_len);
    if (op->mctx != NULL) {
        rv = kt_ossl_asym_update(op, data, len);
        return rv != CKR_OK ? rv : kt_ossl_asym_verify_final(op, sig, sig_len);
    }
    rv = check_raw_input(op, len);
    if (rv != CKR_OK)
        return rv;
    rv = prepare_sig(op, sig, sig_len, der, &der_len, &use, &use_len);
    if (rv != CKR_OK)
        return rv;
    if (op->m->pad == PAD_RAW) {
        rv = raw_block(op, data, len, block);
        data = block;
        len = op->out_len;
    }
    if (rv == CKR_OK &&
        EVP_PKEY_verify(op->pctx, use, use_len, data, len) != 1) {
        ERR_clear_error();
        rv = CKR_SIGNATURE_INVALID;
    }
    return rv;
}

CK_RV kt_ossl_asym_verify_final(kt_asym_op *op, const unsigned char *sig,
                                size_t sig_len)
{
    unsigned char der[KT_ECDSA_DER_MAX];
    size_t der_len = 0, use_len = 0;
    const unsigned char *use = NULL;
    CK_RV rv = check_mode(op, KT_ASYM_VERIFY);

    if (rv != CKR_OK)
        return rv;
    if (op->m->pad == PAD_EDDSA)
        return eddsa_verify(op, op->msg, op->msg_len, sig, sig_len);
    if (op->mctx == NULL)
        return CKR_FUNCTION_NOT_SUPPORTED;
    rv = prepare_sig(op, sig, sig_len, der, &der_len, &use, &use_len);
    if (rv != CKR_OK)
        return rv;
    if (EVP_DigestVerifyFinal(op->mctx, use, use_len) != 1) {
        ERR_clear_error();
        return CKR_SIGNATURE_INVALID;
    }
    return CKR_OK;
}

/* CKM_RSA_X_509 encryption: the input, a big-endian integer, left-padded
 * to the modulus length; CKR_DATA_INVALID when it is not below n. */
static KT_NODISCARD CK_RV raw_encrypt(kt_asym_op *op, const unsigned char *in,
                                      size_t in_len, unsigned char *out,
                                      size_t *out_len)
{
    unsigned char block[KT_RSA_MAX_BYTES];
    size_t len = op->out_len;
    CK_RV rv = raw_block(op, in, in_len, block);

    if (rv == CKR_OK &&
        EVP_PKEY_encrypt(op->pctx, out, &len, block, op->out_len) <= 0) {
        ERR_clear_error();
        rv = CKR_DATA_INVALID;
    }
    if (rv == CKR_OK)
        *out_len = len;
    OPENSSL_cleanse(block, sizeof(block));
    return rv;
}

CK_RV kt_ossl_asym_encrypt(kt_asym_op *op, const unsigned char *in,
                           size_t in_len, unsigned char *out, size_t *out_len)
{
    size_t len = op != NULL ? op->out_len : 0;
    CK_RV rv = check_mode(op, KT_ASYM_ENCRYPT);

    if (rv != CKR_OK)
        return rv;
    if (in_len > op->max_in)
        return CKR_DATA_LEN_RANGE;
    if (op->m->pad == PAD_RAW)
        return raw_encrypt(op, in, in_len, out, out_len);
    if (EVP_PKEY_encrypt(op->pctx, out, &len, in, in_len) <= 0) {
        ERR_clear_error();
        return CKR_FUNCTION_FAILED;
    }
    *out_len = len;
    return CKR_OK;
}

CK_RV kt_ossl_asym_decrypt(kt_asym_op *op, const unsigned char *in,
                           size_t in_len, unsigned char *out, size_t *out_len)
{
    /* OpenSSL may write into the output before it has checked the padding;
     * decrypt into a wiped scratch buffer, copy only what authenticated. */
    unsigned char tmp[KT_RSA_MAX_BYTES];
    size_t len = sizeof(tmp);
    CK_RV rv = check_mode(op, KT_ASYM_DECRYPT);

    if (rv != CKR_OK)
        return rv;
    if (in_len != op->out_len)
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (EVP_PKEY_decrypt(op->pctx, tmp, &len, in, in_len) <= 0) {
        ERR_clear_error();
        rv = CKR_ENCRYPTED_DATA_INVALID;
        goto out;
    }
    if (len > *out_len) {
        *out_len = len;
        rv = CKR_BUFFER_TOO_SMALL;
        goto out;
    }
    memcpy(out, tmp, len);
    *out_len = len;
out:
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return rv;
}

/* ---- Diffie-Hellman (PKCS#3) ------------------------------------------ */

/* DH keys share the FFC code with DSA (struct ffc); p and g only. */
CK_RV kt_ossl_dh_generate(const kt_dsa_parts *domain, EVP_PKEY **out)
{
    return ffc_generate(&ffc_dh, domain, out);
}

CK_RV kt_ossl_dh_export(const EVP_PKEY *key, int with_private,
                        kt_dsa_parts *out)
{
    return ffc_export(&ffc_dh, key, with_private, out);
}

CK_RV kt_ossl_dh_import(const kt_dsa_parts *parts, int is_private,
                        EVP_PKEY **out)
{
    return ffc_import(&ffc_dh, parts, is_private, out);
}

/* Z with the peer's y, padded to the length of p (PKCS#3). */
static KT_NODISCARD CK_RV dh_z(EVP_PKEY *priv, EVP_PKEY *peer, kt_ossl_buf *z)
{
    EVP_PKEY_CTX *ctx =
        EVP_PKEY_CTX_new_from_pkey(kt_ossl_libctx(), priv, NULL);
    size_t len = 0;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_dh_pad(ctx, 1) <= 0)
        goto out;
    /* the peer's y must lie in [2, p - 2] */
    rv = CKR_MECHANISM_PARAM_INVALID;
    if (EVP_PKEY_derive_set_peer(ctx, peer) <= 0 ||
        EVP_PKEY_derive(ctx, NULL, &len) <= 0 || len == 0)
        goto out;
    rv = CKR_HOST_MEMORY;
    z->data = OPENSSL_malloc(len);
    if (z->data == NULL)
        goto out;
    z->len = len;
    rv = CKR_MECHANISM_PARAM_INVALID;
    if (EVP_PKEY_derive(ctx, z->data, &z->len) <= 0)
        kt_ossl_buf_free(z);
    else
        rv = CKR_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

/* forward: CKD_NULL's cut of Z (ECDH below) */
static KT_NODISCARD CK_RV ecdh_cut(kt_ossl_buf *z, size_t len,
                                   kt_ossl_buf *out);

CK_RV kt_ossl_dh_derive(EVP_PKEY *priv, const CK_MECHANISM *mech, size_t len,
                        kt_ossl_buf *secret)
{
    kt_dsa_parts pp;
    EVP_PKEY *peer = NULL;
    kt_ossl_buf z = {NULL, 0};
    CK_RV rv;

    memset(secret, 0, sizeof(*secret));
    if (mech == NULL || mech->mechanism != CKM_DH_PKCS_DERIVE ||
        !kt_ossl_asym_legacy())
        return CKR_MECHANISM_INVALID;
    if (mech->pParameter == NULL || mech->ulParameterLen == 0)
        return CKR_MECHANISM_PARAM_INVALID;
    rv = kt_ossl_dh_export(priv, 0, &pp);
    if (rv != CKR_OK)
        return rv;
    kt_ossl_buf_free(&pp.value);
    pp.value.data = mech->pParameter;
    pp.value.len = mech->ulParameterLen;
    rv = kt_ossl_dh_import(&pp, 0, &peer);
    pp.value.data = NULL;
    pp.value.len = 0;
    kt_dsa_parts_free(&pp);
    if (rv != CKR_OK)
        rv = CKR_MECHANISM_PARAM_INVALID;
    if (rv == CKR_OK)
        rv = dh_z(priv, peer, &z);
    if (rv == CKR_OK)
        rv = ecdh_cut(&z, len, secret);
    ERR_clear_error();
    kt_ossl_buf_free(&z);
    EVP_PKEY_free(peer);
    return rv;
}

/* ---- ECDH ------------------------------------------------------------ */

/* Longest secret a KDF gives (CKA_VALUE_LEN of the derived key). */
#define KT_ECDH_MAX_LEN 512

/* The hash of an ANSI X9.63 KDF, or 0. */
static CK_MECHANISM_TYPE kdf_hash(CK_ULONG kdf)
{
    switch (kdf) {
    case CKD_SHA1_KDF:
        return CKM_SHA_1;
    case CKD_SHA224_KDF:
        return CKM_SHA224;
    case CKD_SHA256_KDF:
        return CKM_SHA256;
    case CKD_SHA384_KDF:
        return CKM_SHA384;
    case CKD_SHA512_KDF:
        return CKM_SHA512;
    default:
        return 0;
    }
}

/* CK_ECDH1_DERIVE_PARAMS (PKCS#11 v2.40 §2.3.10): CKD_NULL takes no shared
 * data; the cofactor variant is for EC keys only. */
static KT_NODISCARD CK_RV ecdh_params(const CK_MECHANISM *mech,
                                      CK_KEY_TYPE type,
                                      CK_ECDH1_DERIVE_PARAMS *prm)
{
    if (mech->mechanism != CKM_ECDH1_DERIVE &&
        mech->mechanism != CKM_ECDH1_COFACTOR_DERIVE)
        return CKR_MECHANISM_INVALID;
    if (mech->pParameter == NULL ||
        mech->ulParameterLen != sizeof(CK_ECDH1_DERIVE_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    memcpy(prm, mech->pParameter, sizeof(*prm));
    if (prm->pPublicData == NULL || prm->ulPublicDataLen == 0)
        return CKR_MECHANISM_PARAM_INVALID;
    if (prm->kdf == CKD_NULL) {
        if (prm->pSharedData != NULL || prm->ulSharedDataLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
    } else if (kdf_hash(prm->kdf) == 0 ||
               (prm->pSharedData == NULL && prm->ulSharedDataLen != 0)) {
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (type == CKK_EC ||
        (type == CKK_EC_MONTGOMERY && mech->mechanism == CKM_ECDH1_DERIVE))
        return CKR_OK;
    return CKR_KEY_TYPE_INCONSISTENT;
}

/* The peer's public key on the curve of ours. */
static KT_NODISCARD CK_RV ecdh_peer(EVP_PKEY *priv,
                                    const CK_ECDH1_DERIVE_PARAMS *prm,
                                    EVP_PKEY **peer)
{
    kt_ec_parts pp = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    CK_RV rv = kt_ossl_ec_export(priv, 0, &pp);

    if (rv != CKR_OK)
        return rv;
    kt_ossl_buf_free(&pp.point);
    pp.point.data = prm->pPublicData;
    pp.point.len = prm->ulPublicDataLen;
    rv = kt_ossl_ec_import(&pp, 0, peer);
    pp.point.data = NULL;
    pp.point.len = 0;
    kt_ec_parts_free(&pp);
    return rv == CKR_OK ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
}

/* Z: the x coordinate of the shared point, or the X25519/X448 output. */
static KT_NODISCARD CK_RV ecdh_z(EVP_PKEY *priv, EVP_PKEY *peer, int cofactor,
                                 kt_ossl_buf *z)
{
    EVP_PKEY_CTX *ctx =
        EVP_PKEY_CTX_new_from_pkey(kt_ossl_libctx(), priv, NULL);
    size_t len = 0;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 ||
        (cofactor && EVP_PKEY_CTX_set_ecdh_cofactor_mode(ctx, 1) <= 0))
        goto out;
    rv = CKR_MECHANISM_PARAM_INVALID;
    if (EVP_PKEY_derive_set_peer(ctx, peer) <= 0 ||
        EVP_PKEY_derive(ctx, NULL, &len) <= 0 || len == 0)
        goto out;
    z->data = OPENSSL_malloc(len);
    if (z->data == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    z->len = len;
    /* X25519/X448 refuse a low-order peer key (an all-zero result). */
    if (EVP_PKEY_derive(ctx, z->data, &z->len) <= 0) {
        kt_ossl_buf_free(z);
        goto out;
    }
    rv = CKR_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

/* ANSI X9.63 KDF (OpenSSL's X963KDF) over Z and the shared data. */
static KT_NODISCARD CK_RV ecdh_x963(CK_MECHANISM_TYPE hash,
                                    const kt_ossl_buf *z,
                                    const CK_ECDH1_DERIVE_PARAMS *prm,
                                    size_t len, kt_ossl_buf *out)
{
    EVP_KDF *kdf = EVP_KDF_fetch(kt_ossl_libctx(), "X963KDF", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[4];
    size_t n = 0;
    CK_RV rv = CKR_GENERAL_ERROR;

    p[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                              (char *)hash_name(hash), 0);
    p[n++] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z->data, z->len);
    if (prm->ulSharedDataLen > 0)
        p[n++] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_INFO, prm->pSharedData, prm->ulSharedDataLen);
    p[n] = OSSL_PARAM_construct_end();
    if (kctx == NULL)
        goto out;
    out->data = OPENSSL_zalloc(len);
    if (out->data == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    out->len = len;
    if (EVP_KDF_derive(kctx, out->data, len, p) <= 0) {
        kt_ossl_buf_free(out);
        goto out;
    }
    rv = CKR_OK;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rv;
}

/* CKD_NULL: the first len bytes of Z (all of it for len 0). */
static KT_NODISCARD CK_RV ecdh_cut(kt_ossl_buf *z, size_t len, kt_ossl_buf *out)
{
    if (len > z->len)
        return CKR_TEMPLATE_INCONSISTENT;
    if (len != 0 && len < z->len)
        OPENSSL_cleanse(z->data + len, z->len - len);
    /* The tail is wiped already; the free wipes the first len bytes. */
    *out = *z;
    if (len != 0)
        out->len = len;
    z->data = NULL;
    z->len = 0;
    return CKR_OK;
}

CK_RV kt_ossl_ecdh_derive(EVP_PKEY *priv, const CK_MECHANISM *mech, size_t len,
                          kt_ossl_buf *secret)
{
    CK_ECDH1_DERIVE_PARAMS prm;
    EVP_PKEY *peer = NULL;
    kt_ossl_buf z = {NULL, 0};
    CK_MECHANISM_TYPE hash;
    CK_RV rv;

    memset(secret, 0, sizeof(*secret));
    if (mech == NULL)
        return CKR_MECHANISM_INVALID;
    rv = ecdh_params(mech, kt_ossl_key_type(priv), &prm);
    if (rv == CKR_OK)
        rv = ecdh_peer(priv, &prm, &peer);
    if (rv == CKR_OK)
        rv = ecdh_z(priv, peer, mech->mechanism == CKM_ECDH1_COFACTOR_DERIVE,
                    &z);
    if (rv == CKR_OK && prm.kdf == CKD_NULL) {
        rv = ecdh_cut(&z, len, secret);
    } else if (rv == CKR_OK) {
        hash = kdf_hash(prm.kdf);
        if (len > KT_ECDH_MAX_LEN)
            rv = CKR_TEMPLATE_INCONSISTENT;
        else
            rv = ecdh_x963(hash, &z, &prm, len != 0 ? len : hash_len(hash),
                           secret);
    }
    ERR_clear_error();
    kt_ossl_buf_free(&z);
    EVP_PKEY_free(peer);
    return rv;
}
