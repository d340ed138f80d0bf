/* Digests: SHA-1, SHA-2, SHA-3 and (legacy_mechanisms = yes) MD5. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"

struct digest_ctx {
    enum kt_md md;
    kt_digest *d;
};

static enum kt_md md_of(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_SHA_1:
        return KT_MD_SHA1;
    case CKM_SHA224:
        return KT_MD_SHA224;
    case CKM_SHA256:
        return KT_MD_SHA256;
    case CKM_SHA384:
        return KT_MD_SHA384;
    case CKM_SHA3_224:
        return KT_MD_SHA3_224;
    case CKM_SHA3_256:
        return KT_MD_SHA3_256;
    case CKM_SHA3_384:
        return KT_MD_SHA3_384;
    case CKM_SHA3_512:
        return KT_MD_SHA3_512;
    case CKM_MD5:
        return KT_MD_MD5;
    default:
        return KT_MD_SHA512;
    }
}

static KT_NODISCARD CK_RV digest_init(struct kt_op *op, const CK_MECHANISM *m,
                                      const struct kt_key *key)
{
    (void)key;
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    struct digest_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CKR_HOST_MEMORY;
    c->md = md_of(m->mechanism);
    CK_RV rv = kt_ossl_digest_new(&c->d, c->md);
    if (rv != CKR_OK) {
        free(c);
        return rv;
    }
    op->ctx = c;
    return CKR_OK;
}

static KT_NODISCARD CK_RV digest_oneshot(struct kt_op *op,
                                         const unsigned char *in, size_t in_len,
                                         unsigned char *out, CK_ULONG *out_len)
{
    struct digest_ctx *c = op->ctx;
    bool done = false;
    CK_RV rv = kt_out_check(out, out_len, kt_ossl_md_size(c->md), &done);
    if (done)
        return rv;
    rv = kt_ossl_digest_update(c->d, in, in_len);
    if (rv == CKR_OK)
        rv = kt_ossl_digest_final(c->d, out);
    if (rv == CKR_OK)
        *out_len = kt_ossl_md_size(c->md);
    return rv;
}

static KT_NODISCARD CK_RV digest_update(struct kt_op *op,
                                        const unsigned char *in, size_t in_len,
                                        unsigned char *out, CK_ULONG *out_len)
{
    (void)out;
    (void)out_len;
    struct digest_ctx *c = op->ctx;
    return kt_ossl_digest_update(c->d, in, in_len);
}

static KT_NODISCARD CK_RV digest_final(struct kt_op *op, unsigned char **out,
                                       size_t *out_len)
{
    struct digest_ctx *c = op->ctx;
    size_t n = kt_ossl_md_size(c->md);
    unsigned char *buf = malloc(n);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = kt_ossl_digest_final(c->d, buf);
    if (rv != CKR_OK) {
        free(buf);
        return rv;
    }
    *out = buf;
    *out_len = n;
    return CKR_OK;
}

static size_t digest_final_len(struct kt_op *op)
{
    struct digest_ctx *c = op->ctx;
    return kt_ossl_md_size(c->md);
}

static void digest_free(struct kt_op *op)
{
    struct digest_ctx *c = op->ctx;
    if (c == NULL)
        return;
    kt_ossl_digest_free(c->d);
    free(c);
    op->ctx = NULL;
}

const struct kt_mech_ops kt_ops_digest = {
    .init = digest_init,
    .oneshot = digest_oneshot,
    .update = digest_update,
    .final = digest_final,
    .final_len = digest_final_len,
    .free = digest_free,
};
