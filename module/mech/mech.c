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
#define HMAC_KEYS                                                              \
    {CKK_GENERIC_SECRET, CKK_SHA256_HMAC, CKK_SHA384_HMAC, CKK_SHA512_HMAC}, 4
#define NO_KEYS {0}, 0
#define CRYPT   (CKF_ENCRYPT | CKF_DECRYPT)
#define WRAPS   (CKF_WRAP | CKF_UNWRAP)
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
/* --- end RSA and EC */

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
    {CKM_SHA256_HMAC,
     "CKM_SHA256_HMAC",
     {1, 512, CKF_SIGN | CKF_VERIFY},
     HMAC_KEYS,
     &kt_ops_hmac,
     NULL},
    {CKM_SHA384_HMAC,
     "CKM_SHA384_HMAC",
     {1, 512, CKF_SIGN | CKF_VERIFY},
     HMAC_KEYS,
     &kt_ops_hmac,
     NULL},
    {CKM_SHA512_HMAC,
     "CKM_SHA512_HMAC",
     {1, 512, CKF_SIGN | CKF_VERIFY},
     HMAC_KEYS,
     &kt_ops_hmac,
     NULL},
    /* --- RSA and EC (ops in ops_asym.c, pairs and ECDH in
     * keys_asym.c). Sizes are modulus bits and curve order bits. */
    {CKM_RSA_PKCS_KEY_PAIR_GEN,
     "CKM_RSA_PKCS_KEY_PAIR_GEN",
     {KT_RSA_MIN_BITS, KT_RSA_MAX_BITS, CKF_GENERATE_KEY_PAIR},
     RSA_KEYS,
     NULL,
     NULL},
    RSA_ROW(CKM_RSA_PKCS, SIGNS | CRYPT | WRAPS),
    RSA_ROW(CKM_RSA_X_509, SIGNS),
    RSA_ROW(CKM_SHA1_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA224_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA256_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA384_RSA_PKCS, SIGNS),
    RSA_ROW(CKM_SHA512_RSA_PKCS, SIGNS),
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
    EC_ROW(CKM_ECDH1_DERIVE, CKF_DERIVE, NULL),
    /* --- end RSA and EC */
};

const struct kt_mech *kt_mech_find(CK_MECHANISM_TYPE type)
{
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
        if (mechs[i].type == type)
            return &mechs[i];
    return NULL;
}

/* Unwrapping with these answers whether a forged blob decrypts to valid
 * padding (CBC-PAD: a padding oracle; RSA PKCS#1 v1.5: Bleichenbacher's
 * oracle, and the raw private-key operation for a key allowed only to
 * unwrap). ECB has no unwrap here, and would be refused the same way. */
static bool unwrap_oracle(CK_MECHANISM_TYPE type)
{
    return type == CKM_AES_CBC_PAD || type == CKM_AES_ECB ||
           type == CKM_RSA_PKCS;
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

CK_RV kt_gen_secret(const CK_MECHANISM *m, kt_attrs *key)
{
    CK_ULONG len = 0;
    CK_RV rv = kt_attrs_get_ulong(key, CKA_VALUE_LEN, &len);
    if (rv != CKR_OK)
        return rv;
    if (m->mechanism == CKM_AES_KEY_GEN && len != 16 && len != 24 && len != 32)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (len < 1 || len > 512)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    unsigned char buf[512];
    rv = kt_ossl_random(buf, len);
    if (rv == CKR_OK)
        rv = kt_attrs_set(key, CKA_VALUE, buf, len);
    kt_wipe(buf, sizeof(buf));
    return rv;
}
