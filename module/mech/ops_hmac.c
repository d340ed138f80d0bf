/* MACs for sign/verify: HMAC on every hash of the module (SHA-1, SHA-2,
 * SHA-3, and MD5 with legacy_mechanisms = yes), CMAC under AES and (legacy)
 * DES3, each also as _GENERAL: the MAC cut to CK_MAC_GENERAL_PARAMS bytes. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"

struct hmac_ctx {
    kt_hmac *h;
    size_t full; /* the MAC's own length */
    size_t len;  /* the length signed and verified (_GENERAL: shorter) */
};

static const struct mac_row {
    CK_MECHANISM_TYPE mech;
    CK_MECHANISM_TYPE general;
    enum kt_md md;
} hmacs[] = {
    {CKM_SHA_1_HMAC, CKM_SHA_1_HMAC_GENERAL, KT_MD_SHA1},
    {CKM_SHA224_HMAC, CKM_SHA224_HMAC_GENERAL, KT_MD_SHA224},
    {CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL, KT_MD_SHA256},
    {CKM_SHA384_HMAC, CKM_SHA384_HMAC_GENERAL, KT_MD_SHA384},
    {CKM_SHA512_HMAC, CKM_SHA512_HMAC_GENERAL, KT_MD_SHA512},
    {CKM_SHA3_224_HMAC, CKM_SHA3_224_HMAC_GENERAL, KT_MD_SHA3_224},
    {CKM_SHA3_256_HMAC, CKM_SHA3_256_HMAC_GENERAL, KT_MD_SHA3_256},
    {CKM_SHA3_384_HMAC, CKM_SHA3_384_HMAC_GENERAL, KT_MD_SHA3_384},
    {CKM_SHA3_512_HMAC, CKM_SHA3_512_HMAC_GENERAL, KT_MD_SHA3_512},
    {CKM_MD5_HMAC, CKM_MD5_HMAC_GENERAL, KT_MD_MD5},
};

static bool is_general(CK_MECHANISM_TYPE m)
{
    for (size_t i = 0; i < sizeof(hmacs) / sizeof(hmacs[0]); i++)
        if (hmacs[i].general == m)
            return true;
    return m == CKM_AES_CMAC_GENERAL || m == CKM_DES3_CMAC_GENERAL;
}

/* The MAC context for mechanism m under key k. */
static KT_NODISCARD CK_RV mac_new(CK_MECHANISM_TYPE m, const struct kt_key *k,
                                  kt_hmac **h)
{
    for (size_t i = 0; i < sizeof(hmacs) / sizeof(hmacs[0]); i++)
        if (hmacs[i].mech == m || hmacs[i].general == m)
            return kt_ossl_hmac_new(h, hmacs[i].md, k->value, k->value_len);
    if (m == CKM_AES_CMAC || m == CKM_AES_CMAC_GENERAL)
        return kt_ossl_cmac_new(h, false, k->value, k->value_len);
    if (m != CKM_DES3_CMAC && m != CKM_DES3_CMAC_GENERAL)
        return CKR_MECHANISM_INVALID;
    /* DES3: a two-key (CKK_DES2) key is K1 K2 K1 */
    unsigned char key[24];
    if (k->value_len != 16 && k->value_len != 24)
        return CKR_KEY_SIZE_RANGE;
    memcpy(key, k->value, k->value_len);
    if (k->value_len == 16)
        memcpy(key + 16, k->value, 8);
    CK_RV rv = kt_ossl_cmac_new(h, true, key, sizeof(key));
    kt_wipe(key, sizeof(key));
    return rv;
}

/* CMAC computes the block cipher under the key on inputs the caller
 * steers: a key of the wrap role (SECURITY.md, Mechanism policy and key
 * roles) does not MAC with it unless legacy_mechanisms = yes, as it does
 * not derive with *_ENCRYPT_DATA. */
static bool cmac_on_wrap_key(CK_MECHANISM_TYPE m, const struct kt_key *k)
{
    bool cmac = m == CKM_AES_CMAC || m == CKM_AES_CMAC_GENERAL ||
                m == CKM_DES3_CMAC || m == CKM_DES3_CMAC_GENERAL;
    return cmac && !kt_schema_legacy() &&
           (kt_attrs_get_bool(&k->attrs, CKA_WRAP, false) ||
            kt_attrs_get_bool(&k->attrs, CKA_UNWRAP, false));
}

static KT_NODISCARD CK_RV hmac_init(struct kt_op *op, const CK_MECHANISM *m,
                                    const struct kt_key *key)
{
    bool general = is_general(m->mechanism);
    CK_ULONG want = 0;
    if (general) {
        if (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_ULONG))
            return CKR_MECHANISM_PARAM_INVALID;
        memcpy(&want, m->pParameter, sizeof(want));
    } else if (m->pParameter != NULL || m->ulParameterLen != 0) {
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (key->value == NULL)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (cmac_on_wrap_key(m->mechanism, key))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    struct hmac_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = mac_new(m->mechanism, key, &c->h);
    if (rv != CKR_OK) {
        free(c);
        return rv;
    }
    c->full = kt_ossl_mac_size(c->h);
    c->len = general ? want : c->full;
    /* _GENERAL: 1 to the MAC's length (PKCS#11 3.0 §2.1 CK_MAC_GENERAL_
     * PARAMS) */
    if (c->len < 1 || c->len > c->full) {
        kt_ossl_hmac_free(c->h);
        free(c);
        return CKR_MECHANISM_PARAM_INVALID;
    }
    op->ctx = c;
    return CKR_OK;
}

/* The whole MAC into out (c->full bytes of room). */
static KT_NODISCARD CK_RV mac_final_full(struct hmac_ctx *c, unsigned char *out)
{
    return kt_ossl_hmac_final(c->h, out);
}

static KT_NODISCARD CK_RV hmac_oneshot(struct kt_op *op,
                                       const unsigned char *in, size_t in_len,
                                       unsigned char *out, CK_ULONG *out_len)
{
    struct hmac_ctx *c = op->ctx;
    unsigned char mac[64];
    bool done = false;
    CK_RV rv = kt_out_check(out, out_len, c->len, &done);
    if (done)
        return rv;
    rv = kt_ossl_hmac_update(c->h, in, in_len);
    if (rv == CKR_OK)
        rv = mac_final_full(c, mac);
    if (rv == CKR_OK) {
        memcpy(out, mac, c->len);
        *out_len = c->len;
    }
    kt_wipe(mac, sizeof(mac));
    return rv;
}

static KT_NODISCARD CK_RV hmac_update(struct kt_op *op, const unsigned char *in,
                                      size_t in_len, unsigned char *out,
                                      CK_ULONG *out_len)
{
    (void)out;
    (void)out_len;
    struct hmac_ctx *c = op->ctx;
    return kt_ossl_hmac_update(c->h, in, in_len);
}

static KT_NODISCARD CK_RV hmac_final(struct kt_op *op, unsigned char **out,
                                     size_t *out_len)
{
    struct hmac_ctx *c = op->ctx;
    unsigned char *buf = malloc(c->full);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = mac_final_full(c, buf);
    if (rv != CKR_OK) {
        free(buf);
        return rv;
    }
    *out = buf;
    *out_len = c->len;
    return CKR_OK;
}

static size_t hmac_final_len(struct kt_op *op)
{
    struct hmac_ctx *c = op->ctx;
    return c->len;
}

static KT_NODISCARD CK_RV hmac_verify_final(struct kt_op *op,
                                            const unsigned char *sig,
                                            size_t sig_len)
{
    struct hmac_ctx *c = op->ctx;
    unsigned char mac[64];
    size_t n = c->len;
    if (sig_len != n)
        return CKR_SIGNATURE_LEN_RANGE;
    CK_RV rv = mac_final_full(c, mac);
    if (rv == CKR_OK && kt_ossl_memcmp(mac, sig, n) != 0)
        rv = CKR_SIGNATURE_INVALID;
    kt_wipe(mac, sizeof(mac));
    return rv;
}

static KT_NODISCARD CK_RV hmac_verify(struct kt_op *op,
                                      const unsigned char *data, size_t len,
                                      const unsigned char *sig, size_t sig_len)
{
    struct hmac_ctx *c = op->ctx;
    if (sig_len != c->len)
        return CKR_SIGNATURE_LEN_RANGE;
    CK_RV rv = kt_ossl_hmac_update(c->h, data, len);
    if (rv != CKR_OK)
        return rv;
    return hmac_verify_final(op, sig, sig_len);
}

static void hmac_free(struct kt_op *op)
{
    struct hmac_ctx *c = op->ctx;
    if (c == NULL)
        return;
    kt_ossl_hmac_free(c->h);
    free(c);
    op->ctx = NULL;
}

const struct kt_mech_ops kt_ops_hmac = {
    .init = hmac_init,
    .oneshot = hmac_oneshot,
    .update = hmac_update,
    .final = hmac_final,
    .final_len = hmac_final_len,
    .verify = hmac_verify,
    .verify_final = hmac_verify_final,
    .free = hmac_free,
};
