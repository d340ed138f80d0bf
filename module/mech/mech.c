/* The mechanism table: C_GetMechanismList/Info are answered from it, and
 * every C_*Init looks its mechanism up here. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "kt_asym.h"
#include "ossl/asym.h" /* KT_RSA_* and KT_EC_* sizes */
#include "pkcs11v3.h"  /* CKF_MESSAGE_* */

#define AES_KEYS {CKK_AES}, 1
#define NO_KEYS  {0}, 0
#define CRYPT    (CKF_ENCRYPT | CKF_DECRYPT)
#define WRAPS    (CKF_WRAP | CKF_UNWRAP)
/* --- RSA and EC */
#define SIGNS    (CKF_SIGN | CKF_VERIFY)
#define RSA_KEYS {CKK_RSA}, 1
#define EC_KEYS  {CKK_EC}, 1
#define EC_FLAGS (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)
#define RSA_ROW(mech, flags)                                                   \
    {                                                                          \
        mech, #mech, {KT_RSA_MIN_BITS, KT_RSA_MAX_BITS, flags}, RSA_KEYS,      \
            &kt_ops_asym, NULL                                                 \
    }
#define EC_ROW(mech, flags, ops)                                               \
    {                                                                          \
        mech, #mech, {KT_EC_MIN_BITS, KT_EC_MAX_BITS, (flags) | EC_FLAGS},     \
            EC_KEYS, ops, NULL                                                 \
    }
/* DSA: legacy_mechanisms = yes only */
#define DSA_ROW(mech, flags, ops)                                              \
    {                                                                          \
        mech, #mech, {KT_DSA_MIN_BITS, KT_DSA_MAX_BITS, flags}, {CKK_DSA}, 1,  \
            ops, NULL, true                                                    \
    }
#define ECX_ROW(mech, flags, type, ops)                                        \
    {                                                                          \
        mech, #mech, {KT_ECX_MIN_BITS, KT_ECX_MAX_BITS, flags}, {type}, 1,     \
            ops, NULL                                                          \
    }
/* --- end RSA and EC */
/* --- symmetric */
#define DES_KEYS      {CKK_DES}, 1
#define DES3_KEYS     {CKK_DES2, CKK_DES3}, 2
#define DES2_KEY      {CKK_DES2}, 1
#define DES3_KEY      {CKK_DES3}, 1
#define HKDF_KEYS     {CKK_GENERIC_SECRET, CKK_HKDF}, 2
#define MD5_HMAC_KEYS {CKK_GENERIC_SECRET, CKK_MD5_HMAC}, 2
#define SYM_ROW(mech, min, max, flags, keys, ops)                              \
    {                                                                          \
        mech, #mech, {min, max, flags}, keys, ops, NULL, false                 \
    }
#define DIGEST_ROW(mech)                                                       \
    {                                                                          \
        mech, #mech, {0, 0, CKF_DIGEST}, NO_KEYS, &kt_ops_digest, NULL, false  \
    }
#define HMAC_ROW(mech, kt)                                                     \
    {                                                                          \
        mech, #mech, {1, 512, SIGNS}, {CKK_GENERIC_SECRET, kt}, 2,             \
            &kt_ops_hmac, NULL, false                                          \
    }
#define LEGACY_ROW(mech, min, max, flags, keys, ops, gen)                      \
    {                                                                          \
        mech, #mech, {min, max, flags}, keys, ops, gen, true                   \
    }
/* --- end symmetric */

static const struct kt_mech mechs[] = {
    {CKM_AES_KEY_GEN,
     "CKM_AES_KEY_GEN",
     {16, 32, CKF_GENERATE},
     AES_KEYS,
     NULL,
     kt_gen_secret},
    {CKM_GENERIC_SECRET_KEY_GEN,
     "CKM_GENERIC_SECRET_KEY_GEN",
     {8, 4096, CKF_GENERATE},
     {CKK_GENERIC_SECRET},
     1,
     NULL,
     kt_gen_secret},
    {CKM_AES_ECB, "CKM_AES_ECB", {16, 32, CRYPT}, AES_KEYS, &kt_ops_aes, NULL},
    {CKM_AES_CBC, "CKM_AES_CBC", {16, 32, CRYPT}, AES_KEYS, &kt_ops_aes, NULL},
    {CKM_AES_CBC_PAD,
     "CKM_AES_CBC_PAD",
     {16, 32, CRYPT | WRAPS},
     AES_KEYS,
     &kt_ops_aes,
     NULL},
    /* Message-based encryption too (PKCS#11 3.0, core/msgcrypt.c). */
    {CKM_AES_GCM,
     "CKM_AES_GCM",
     {16, 32, CRYPT | WRAPS | CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT},
     AES_KEYS,
     &kt_ops_aes,
     NULL},
    {CKM_AES_KEY_WRAP,
     "CKM_AES_KEY_WRAP",
     {16, 32, CRYPT | WRAPS},
     AES_KEYS,
     &kt_ops_aes,
     NULL},
    {CKM_AES_KEY_WRAP_PAD,
     "CKM_AES_KEY_WRAP_PAD",
     {16, 32, CRYPT | WRAPS},
     AES_KEYS,
     &kt_ops_aes,
     NULL},
    {CKM_AES_KEY_WRAP_KWP,
     "CKM_AES_KEY_WRAP_KWP",
     {16, 32, CRYPT | WRAPS},
     AES_KEYS,
     &kt_ops_aes,
     NULL},
    {CKM_SHA256,
     "CKM_SHA256",
     {0, 0, CKF_DIGEST},
     NO_KEYS,
     &kt_ops_digest,
     NULL},
    {CKM_SHA384,
     "CKM_SHA384",
     {0, 0, CKF_DIGEST},
     NO_KEYS,
     &kt_ops_digest,
     NULL},
    {CKM_SHA512,
     "CKM_SHA512",
     {0, 0, CKF_DIGEST},
     NO_KEYS,
     &kt_ops_digest,
     NULL},
    /* --- symmetric: AES-CTR, CMAC, SHA-1/224/SHA-3 digests and HMACs,
     * _GENERAL MACs, HKDF, *_ENCRYPT_DATA (derivations in core/derive.c),
     * and the legacy set (DES, DES3, MD5). Key sizes are bytes. */
    SYM_ROW(CKM_AES_CTR, 16, 32, CRYPT, AES_KEYS, &kt_ops_aes),
    SYM_ROW(CKM_AES_CMAC, 16, 32, SIGNS, AES_KEYS, &kt_ops_hmac),
    SYM_ROW(CKM_AES_CMAC_GENERAL, 16, 32, SIGNS, AES_KEYS, &kt_ops_hmac),
    SYM_ROW(CKM_AES_ECB_ENCRYPT_DATA, 16, 32, CKF_DERIVE, AES_KEYS, NULL),
    SYM_ROW(CKM_AES_CBC_ENCRYPT_DATA, 16, 32, CKF_DERIVE, AES_KEYS, NULL),
    DIGEST_ROW(CKM_SHA_1),
    DIGEST_ROW(CKM_SHA224),
    DIGEST_ROW(CKM_SHA3_224),
    DIGEST_ROW(CKM_SHA3_256),
    DIGEST_ROW(CKM_SHA3_384),
    DIGEST_ROW(CKM_SHA3_512),
    HMAC_ROW(CKM_SHA_1_HMAC, CKK_SHA_1_HMAC),
    HMAC_ROW(CKM_SHA_1_HMAC_GENERAL, CKK_SHA_1_HMAC),
    HMAC_ROW(CKM_SHA224_HMAC, CKK_SHA224_HMAC),
    HMAC_ROW(CKM_SHA224_HMAC_GENERAL, CKK_SHA224_HMAC),
    HMAC_ROW(CKM_SHA256_HMAC, CKK_SHA256_HMAC),
    HMAC_ROW(CKM_SHA256_HMAC_GENERAL, CKK_SHA256_HMAC),
    HMAC_ROW(CKM_SHA384_HMAC, CKK_SHA384_HMAC),
    HMAC_ROW(CKM_SHA384_HMAC_GENERAL, CKK_SHA384_HMAC),
    HMAC_ROW(CKM_SHA512_HMAC, CKK_SHA512_HMAC),
    HMAC_ROW(CKM_SHA512_HMAC_GENERAL, CKK_SHA512_HMAC),
    HMAC_ROW(CKM_SHA3_224_HMAC, CKK_SHA3_224_HMAC),
    HMAC_ROW(CKM_SHA3_224_HMAC_GENERAL, CKK_SHA3_224_HMAC),
    HMAC_ROW(CKM_SHA3_256_HMAC, CKK_SHA3_256_HMAC),
    HMAC_ROW(CKM_SHA3_256_HMAC_GENERAL, CKK_SHA3_256_HMAC),
    HMAC_ROW(CKM_SHA3_384_HMAC, CKK_SHA3_384_HMAC),
    HMAC_ROW(CKM_SHA3_384_HMAC_GENERAL, CKK_SHA3_384_HMAC),
    HMAC_ROW(CKM_SHA3_512_HMAC, CKK_SHA3_512_HMAC),
    HMAC_ROW(CKM_SHA3_512_HMAC_GENERAL, CKK_SHA3_512_HMAC),
    {CKM_HKDF_KEY_GEN,
     "CKM_HKDF_KEY_GEN",
     {1, 512, CKF_GENERATE},
     {CKK_HKDF},
     1,
     NULL,
     kt_gen_secret,
     false},
    SYM_ROW(CKM_HKDF_DERIVE, 1, 512, CKF_DERIVE, HKDF_KEYS, NULL),
    SYM_ROW(CKM_HKDF_DATA, 1, 512, CKF_DERIVE, HKDF_KEYS, NULL),
    /* legacy_mechanisms = yes only */
    LEGACY_ROW(CKM_DES_KEY_GEN, 8, 8, CKF_GENERATE, DES_KEYS, NULL,
               kt_gen_secret),
    LEGACY_ROW(CKM_DES2_KEY_GEN, 16, 16, CKF_GENERATE, DES2_KEY, NULL,
               kt_gen_secret),
    LEGACY_ROW(CKM_DES3_KEY_GEN, 24, 24, CKF_GENERATE, DES3_KEY, NULL,
               kt_gen_secret),
    LEGACY_ROW(CKM_DES_ECB, 8, 8, CRYPT, DES_KEYS, &kt_ops_aes, NULL),
    LEGACY_ROW(CKM_DES_CBC, 8, 8, CRYPT, DES_KEYS, &kt_ops_aes, NULL),
    LEGACY_ROW(CKM_DES_CBC_PAD, 8, 8, CRYPT, DES_KEYS, &kt_ops_aes, NULL),
    LEGACY_ROW(CKM_DES3_ECB, 16, 24, CRYPT | WRAPS, DES3_KEYS, &kt_ops_aes,
               NULL),
    LEGACY_ROW(CKM_DES3_CBC, 16, 24, CRYPT, DES3_KEYS, &kt_ops_aes, NULL),
    LEGACY_ROW(CKM_DES3_CBC_PAD, 16, 24, CRYPT, DES3_KEYS, &kt_ops_aes, NULL),
    LEGACY_ROW(CKM_DES3_CMAC, 16, 24, SIGNS, DES3_KEYS, &kt_ops_hmac, NULL),
    LEGACY_ROW(CKM_DES3_CMAC_GENERAL, 16, 24, SIGNS, DES3_KEYS, &kt_ops_hmac,
               NULL),
    LEGACY_ROW(CKM_DES_ECB_ENCRYPT_DATA, 8, 8, CKF_DERIVE, DES_KEYS, NULL,
               NULL),
    LEGACY_ROW(CKM_DES_CBC_ENCRYPT_DATA, 8, 8, CKF_DERIVE, DES_KEYS, NULL,
               NULL),
    LEGACY_ROW(CKM_DES3_ECB_ENCRYPT_DATA, 16, 24, CKF_DERIVE, DES3_KEYS, NULL,
               NULL),
    LEGACY_ROW(CKM_DES3_CBC_ENCRYPT_DATA, 16, 24, CKF_DERIVE, DES3_KEYS, NULL,
               NULL),
    LEGACY_ROW(CKM_MD5, 0, 0, CKF_DIGEST, NO_KEYS, &kt_ops_digest, NULL),
    LEGACY_ROW(CKM_MD5_HMAC, 1, 512, SIGNS, MD5_HMAC_KEYS, &kt_ops_hmac, NULL),
    LEGACY_ROW(CKM_MD5_HMAC_GENERAL, 1, 512, SIGNS, MD5_HMAC_KEYS, &kt_ops_hmac,
               NULL),
    /* --- end symmetric */
    /* --- RSA and EC (ops in ops_asym.c, pairs and ECDH in
     * keys_asym.c). Sizes are modulus bits and curve order bits. */
    {CKM_RSA_PKCS_KEY_PAIR_GEN,
     "CKM_RSA_PKCS_KEY_PAIR_GEN",
     {KT_RSA_MIN_BITS, KT_RSA_MAX_BITS, CKF_GENERATE_KEY_PAIR},
     RSA_KEYS,
     NULL,
     NULL},
    RSA_ROW(CKM_RSA_PKCS, SIGNS | CRYPT | WRAPS),
    RSA_ROW(CKM_RSA_X_509, SIGNS | CRYPT),
    {CKM_MD5_RSA_PKCS, /* legacy_mechanisms = yes only */
     "CKM_MD5_RSA_PKCS",
     {KT_RSA_MIN_BITS, KT_RSA_MAX_BITS, SIGNS},
     RSA_KEYS,
     &kt_ops_asym,
     NULL,
     true},
    RSA_ROW(CKM_SHA1_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA224_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA256_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA384_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA512_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA3_224_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA3_256_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA3_384_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA3_512_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_RSA_PKCS_PSS, SIGNS),
    RSA_ROW(CKM_SHA1_RSA_PKCS_PSS, SIGNS),
    RSA_ROW(CKM_SHA224_RSA_PKCS_PSS, SIGNS),
    RSA_ROW(CKM_SHA256_RSA_PKCS_PSS, SIGNS),
    RSA_ROW(CKM_SHA384_RSA_PKCS_PSS, SIGNS),
    RSA_ROW(CKM_SHA512_RSA_PKCS_PSS, SIGNS),
    RSA_ROW(CKM_RSA_PKCS_OAEP, CRYPT | WRAPS),
    {CKM_EC_KEY_PAIR_GEN,
     "CKM_EC_KEY_PAIR_GEN",
     {KT_EC_MIN_BITS, KT_EC_MAX_BITS, CKF_GENERATE_KEY_PAIR | EC_FLAGS},
     EC_KEYS,
     NULL,
     NULL},
    EC_ROW(CKM_ECDSA, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA1, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA224, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA256, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA384, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA512, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA3_224, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA3_256, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA3_384, SIGNS, &kt_ops_asym),
    EC_ROW(CKM_ECDSA_SHA3_512, SIGNS, &kt_ops_asym),
    /* ECDH on the EC curves and on X25519/X448 (Montgomery) keys */
    {CKM_ECDH1_DERIVE,
     "CKM_ECDH1_DERIVE",
     {KT_ECX_MIN_BITS, KT_EC_MAX_BITS, CKF_DERIVE | EC_FLAGS},
     {CKK_EC, CKK_EC_MONTGOMERY},
     2,
     NULL,
     NULL},
    EC_ROW(CKM_ECDH1_COFACTOR_DERIVE, CKF_DERIVE, NULL),
    ECX_ROW(CKM_EC_EDWARDS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, CKK_EC_EDWARDS,
            NULL),
    ECX_ROW(CKM_EDDSA, SIGNS, CKK_EC_EDWARDS, &kt_ops_asym),
    ECX_ROW(CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR,
            CKK_EC_MONTGOMERY, NULL),
    /* DSA: legacy_mechanisms = yes only */
    DSA_ROW(CKM_DSA_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, NULL),
    DSA_ROW(CKM_DSA, SIGNS, &kt_ops_asym),
    DSA_ROW(CKM_DSA_SHA1, SIGNS, &kt_ops_asym),
    DSA_ROW(CKM_DSA_SHA224, SIGNS, &kt_ops_asym),
    DSA_ROW(CKM_DSA_SHA256, SIGNS, &kt_ops_asym),
    DSA_ROW(CKM_DSA_SHA384, SIGNS, &kt_ops_asym),
    DSA_ROW(CKM_DSA_SHA512, SIGNS, &kt_ops_asym),
    /* PKCS#3 Diffie-Hellman: legacy_mechanisms = yes only */
    {CKM_DH_PKCS_KEY_PAIR_GEN,
     "CKM_DH_PKCS_KEY_PAIR_GEN",
     {KT_DH_MIN_BITS, KT_DH_MAX_BITS, CKF_GENERATE_KEY_PAIR},
     {CKK_DH},
     1,
     NULL,
     NULL,
     true},
    {CKM_DH_PKCS_DERIVE,
     "CKM_DH_PKCS_DERIVE",
     {KT_DH_MIN_BITS, KT_DH_MAX_BITS, CKF_DERIVE},
     {CKK_DH},
     1,
     NULL,
     NULL,
     true},
    /* --- end RSA and EC */
};

bool kt_mech_offered(const struct kt_mech *m)
{
    return kt_schema_legacy() || !m->legacy;
}

const struct kt_mech *kt_mech_find(CK_MECHANISM_TYPE type)
{
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
        if (mechs[i].type == type)
            return kt_mech_offered(&mechs[i]) ? &mechs[i] : NULL;
    return NULL;
}

void kt_mech_info(const struct kt_mech *m, CK_MECHANISM_INFO *info)
{
    *info = m->info;
    info->flags = kt_mech_flags(m);
    /* RSA keys below 2048 bits exist only with legacy_mechanisms = yes. */
    if (m->n_key_types > 0 && m->key_types[0] == CKK_RSA)
        info->ulMinKeySize = kt_ossl_rsa_min_bits();
}

/* Unwrapping with these answers whether a forged blob decrypts to valid
 * padding (CBC-PAD: a padding oracle; RSA PKCS#1 v1.5: Bleichenbacher's
 * oracle, and the raw private-key operation for a key allowed only to
 * unwrap). ECB has no unwrap here, and would be refused the same way. */
static bool unwrap_oracle(CK_MECHANISM_TYPE type)
{
    return type == CKM_AES_CBC_PAD || type == CKM_AES_ECB ||
           type == CKM_RSA_PKCS || type == CKM_DES_CBC_PAD ||
           type == CKM_DES3_CBC_PAD;
}

CK_FLAGS kt_mech_flags(const struct kt_mech *m)
{
    CK_FLAGS f = m->info.flags;
    if (!kt_schema_legacy() && unwrap_oracle(m->type))
        f &= ~(CK_FLAGS)CKF_UNWRAP;
    return f;
}

size_t kt_mech_count(void)
{
    return sizeof(mechs) / sizeof(mechs[0]);
}

const struct kt_mech *kt_mech_at(size_t i)
{
    return i < kt_mech_count() ? &mechs[i] : NULL;
}

bool kt_mech_key_type_ok(const struct kt_mech *m, CK_KEY_TYPE kt)
{
    for (size_t i = 0; i < m->n_key_types; i++)
        if (m->key_types[i] == kt)
            return true;
    return false;
}

struct kt_cache *kt_cache_ref(struct kt_cache *c)
{
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void kt_cache_unref(struct kt_cache *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        c->destroy(c);
}

void kt_key_clear(struct kt_key *k)
{
    kt_cache_unref(k->cache);
    k->cache = NULL;
    kt_ossl_pkey_free(k->pkey);
    k->pkey = NULL;
    if (k->shared != NULL) {
        kt_shared_attrs_unref(k->shared);
        k->shared = NULL;
        kt_attrs_init(&k->attrs);
    } else {
        kt_attrs_clear(&k->attrs);
    }
    k->value = NULL;
    k->value_len = 0;
}

void kt_op_release(struct kt_op *op)
{
    if (op->mech != NULL && op->mech->ops != NULL &&
        op->mech->ops->free != NULL)
        op->mech->ops->free(op);
    kt_free_secret(op->stash, op->stash_len);
    memset(op, 0, sizeof(*op));
}

CK_RV kt_out_check(unsigned char *out, CK_ULONG *out_len, size_t need,
                   bool *done)
{
    *done = true;
    if (out == NULL) {
        *out_len = need;
        return CKR_OK;
    }
    if (*out_len < need) {
        *out_len = need;
        return CKR_BUFFER_TOO_SMALL;
    }
    *done = false;
    return CKR_OK;
}

CK_RV kt_op_final(struct kt_op *op, unsigned char *out, CK_ULONG *out_len)
{
    if (!op->stashed) {
        if (out == NULL) {
            *out_len = op->mech->ops->final_len(op);
            return CKR_OK;
        }
        CK_RV rv = op->mech->ops->final(op, &op->stash, &op->stash_len);
        if (rv != CKR_OK)
            return rv;
        op->stashed = true;
    }
    bool done = false;
    CK_RV rv = kt_out_check(out, out_len, op->stash_len, &done);
    if (done)
        return rv;
    if (op->stash_len > 0)
        memcpy(out, op->stash, op->stash_len);
    *out_len = op->stash_len;
    return CKR_OK;
}

size_t kt_mech_fixed_len(CK_MECHANISM_TYPE m)
{
    return m == CKM_DES_KEY_GEN    ? 8
           : m == CKM_DES2_KEY_GEN ? 16
           : m == CKM_DES3_KEY_GEN ? 24
                                   : 0;
}

CK_RV kt_gen_secret(const CK_MECHANISM *m, kt_attrs *key)
{
    CK_ULONG len = 0;
    size_t fixed = kt_mech_fixed_len(m->mechanism);
    CK_RV rv = kt_attrs_get_ulong(key, CKA_VALUE_LEN, &len);
    if (rv != CKR_OK)
        return rv;
    if (m->mechanism == CKM_AES_KEY_GEN && len != 16 && len != 24 && len != 32)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    /* DES keys have their one size (C_GenerateKey fills it in) */
    if (fixed != 0 && len != fixed)
        return CKR_TEMPLATE_INCONSISTENT;
    if (len < 1 || len > 512)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    unsigned char buf[512];
    rv = kt_ossl_random(buf, len);
    /* DES: the low bit of each byte makes its parity odd (FIPS 46-3) */
    if (rv == CKR_OK && fixed != 0)
        kt_ossl_des_parity(buf, len);
    if (rv == CKR_OK)
        rv = kt_attrs_set(key, CKA_VALUE, buf, len);
    kt_wipe(buf, sizeof(buf));
    return rv;
}
