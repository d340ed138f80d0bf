/* HMAC-SHA-2 sign/verify (CKM_SHA256/384/512_HMAC). */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"

struct hmac_ctx {
    enum kt_md md;
    kt_hmac *h;
};

static KT_NODISCARD CK_RV hmac_init(struct kt_op *op, const CK_MECHANISM *m,
                                    const struct kt_key *key)
{
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    if (key->value == NULL)
        return CKR_KEY_TYPE_INCONSISTENT;
    struct hmac_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CKR_HOST_MEMORY;
    c->md = m->mechanism == CKM_SHA256_HMAC   ? KT_MD_SHA256
            : m->mechanism == CKM_SHA384_HMAC ? KT_MD_SHA384
                                              : KT_MD_SHA512;
    CK_RV rv = kt_ossl_hmac_new(&c->h, c->md, key->value, key->value_len);
    if (rv != CKR_OK) {
        free(c);
        return rv;
    }
    op->ctx = c;
    return CKR_OK;
}

static KT_NODISCARD CK_RV hmac_oneshot(struct kt_op *op,
                                       const unsigned char *in, size_t in_len,
                                       unsigned char *out, CK_ULONG *out_len)
{
    struct hmac_ctx *c = op->ctx;
    bool done = false;
    CK_RV rv = kt_out_check(out, out_len, kt_ossl_md_size(c->md), &done);
    if (done)
        return rv;
    rv = kt_ossl_hmac_update(c->h, in, in_len);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac_final(c->h, out);
    if (rv == CKR_OK)
        *out_len = kt_ossl_md_size(c->md);
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
    size_t n = kt_ossl_md_size(c->md);
    unsigned char *buf = malloc(n);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = kt_ossl_hmac_final(c->h, buf);
    if (rv != CKR_OK) {
        free(buf);
        return rv;
    }
    *out = buf;
    *out_len = n;
    return CKR_OK;
}

static size_t hmac_final_len(struct kt_op *op)
{
    struct hmac_ctx *c = op->ctx;
    return kt_ossl_md_size(c->md);
}

static KT_NODISCARD CK_RV hmac_verify_final(struct kt_op *op,
                                            const unsigned char *sig,
                                            size_t sig_len)
{
    struct hmac_ctx *c = op->ctx;
    unsigned char mac[64];
    size_t n = kt_ossl_md_size(c->md);
    if (sig_len != n)
        return CKR_SIGNATURE_LEN_RANGE;
    CK_RV rv = kt_ossl_hmac_final(c->h, mac);
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
    if (sig_len != kt_ossl_md_size(c->md))
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
