/* AES encrypt/decrypt (and through them wrap/unwrap): ECB, CBC, CBC-PAD,
 * GCM, key wrap RFC 3394 and key wrap with padding RFC 5649. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"

#define AES_BLOCK 16

struct aes_ctx {
    enum kt_cipher_mode mode;
    bool enc;
    bool pad;
    unsigned char key[32];
    size_t key_len;
    unsigned char *iv;
    size_t iv_len;
    unsigned char *aad;
    size_t aad_len;
    size_t tag_len;
    /* the caller's kept context (struct kt_op.cipher_slot), or NULL */
    kt_cipher **slot;
    /* multi-part state */
    kt_cipher *c;
    size_t held; /* input bytes not yet returned as output */
    /* buffered modes (wrap, GCM decrypt) keep all input until Final */
    unsigned char *buf;
    size_t buf_len;
    size_t buf_cap;
};

static bool buffered(const struct aes_ctx *c)
{
    return c->mode == KT_AES_WRAP || c->mode == KT_AES_WRAP_PAD ||
           (c->mode == KT_AES_GCM && !c->enc);
}

static KT_NODISCARD CK_RV dup_param(unsigned char **dst, size_t *dst_len,
                                    const void *src, size_t len)
{
    *dst_len = len;
    if (len == 0)
        return CKR_OK;
    if (src == NULL)
        return CKR_MECHANISM_PARAM_INVALID;
    *dst = malloc(len);
    if (*dst == NULL)
        return CKR_HOST_MEMORY;
    memcpy(*dst, src, len);
    return CKR_OK;
}

static KT_NODISCARD CK_RV parse_params(struct aes_ctx *c, const CK_MECHANISM *m)
{
    const void *p = m->pParameter;
    CK_ULONG pl = m->ulParameterLen;
    switch (m->mechanism) {
    case CKM_AES_ECB:
        return p == NULL && pl == 0 ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
    case CKM_AES_CBC:
    case CKM_AES_CBC_PAD:
        if (p == NULL || pl != AES_BLOCK)
            return CKR_MECHANISM_PARAM_INVALID;
        return dup_param(&c->iv, &c->iv_len, p, pl);
    case CKM_AES_KEY_WRAP:
        /* Optional alternative IV (RFC 3394 §2.2.3). */
        if (p == NULL && pl == 0)
            return CKR_OK;
        if (p == NULL || pl != 8)
            return CKR_MECHANISM_PARAM_INVALID;
        return dup_param(&c->iv, &c->iv_len, p, pl);
    case CKM_AES_KEY_WRAP_PAD:
    case CKM_AES_KEY_WRAP_KWP:
        if (p == NULL && pl == 0)
            return CKR_OK;
        if (p == NULL || pl != 4)
            return CKR_MECHANISM_PARAM_INVALID;
        return dup_param(&c->iv, &c->iv_len, p, pl);
    case CKM_AES_GCM: {
        const unsigned char *iv, *aad;
        CK_ULONG iv_len, aad_len, tag_bits;
        if (p != NULL && pl == sizeof(CK_GCM_PARAMS)) {
            const CK_GCM_PARAMS *g = p;
            iv = g->pIv, iv_len = g->ulIvLen, aad = g->pAAD;
            aad_len = g->ulAADLen, tag_bits = g->ulTagBits;
        } else if (p != NULL && pl == sizeof(struct kt_gcm_params_v240)) {
            const struct kt_gcm_params_v240 *g = p;
            iv = g->pIv, iv_len = g->ulIvLen, aad = g->pAAD;
            aad_len = g->ulAADLen, tag_bits = g->ulTagBits;
        } else {
            return CKR_MECHANISM_PARAM_INVALID;
        }
        if (iv_len < 1 || iv_len > 256 || iv == NULL || aad_len > (1u << 24) ||
            (aad_len > 0 && aad == NULL) || tag_bits < 96 || tag_bits > 128 ||
            tag_bits % 8 != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        c->tag_len = tag_bits / 8;
        CK_RV rv = dup_param(&c->iv, &c->iv_len, iv, iv_len);
        if (rv == CKR_OK)
            rv = dup_param(&c->aad, &c->aad_len, aad, aad_len);
        return rv;
    }
    default:
        return CKR_MECHANISM_INVALID;
    }
}

static void aes_free(struct kt_op *op)
{
    struct aes_ctx *c = op->ctx;
    if (c == NULL)
        return;
    kt_ossl_cipher_free(c->c);
    kt_free_secret(c->buf, c->buf_cap);
    free(c->iv);
    free(c->aad);
    kt_wipe(c, sizeof(*c));
    free(c);
    op->ctx = NULL;
}

static KT_NODISCARD CK_RV aes_init(struct kt_op *op, const CK_MECHANISM *m,
                                   const struct kt_key *key)
{
    if (key->value == NULL)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (key->value_len != 16 && key->value_len != 24 && key->value_len != 32)
        return CKR_KEY_SIZE_RANGE;
    /* Its copy of the key lives exactly as long as the OpenSSL cipher
     * context that holds the key's schedule in ordinary memory: like that
     * one, it is kept out of cores by the non-dumpable guard, not the
     * secure heap (which would cost C_WrapKey / C_UnwrapKey an allocation
     * under OpenSSL's global secure-heap lock per call). */
    struct aes_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CKR_HOST_MEMORY;
    op->ctx = c;
    c->enc = op->kind == KT_OP_ENCRYPT;
    c->slot = op->cipher_slot;
    memcpy(c->key, key->value, key->value_len);
    c->key_len = key->value_len;
    switch (m->mechanism) {
    case CKM_AES_ECB:
        c->mode = KT_AES_ECB;
        break;
    case CKM_AES_CBC:
        c->mode = KT_AES_CBC;
        break;
    case CKM_AES_CBC_PAD:
        c->mode = KT_AES_CBC;
        c->pad = true;
        break;
    case CKM_AES_GCM:
        c->mode = KT_AES_GCM;
        break;
    case CKM_AES_KEY_WRAP:
        c->mode = KT_AES_WRAP;
        break;
    default:
        c->mode = KT_AES_WRAP_PAD;
        break;
    }
    CK_RV rv = parse_params(c, m);
    if (rv != CKR_OK)
        aes_free(op);
    return rv;
}

/* Input length checks and the output size (exact unless *exact is false,
 * then an upper bound). */
static KT_NODISCARD CK_RV aes_need(const struct aes_ctx *c, size_t in_len,
                                   size_t *need, bool *exact)
{
    CK_RV bad = c->enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
    *exact = true;
    switch (c->mode) {
    case KT_AES_ECB:
    case KT_AES_CBC:
        if (c->pad && c->enc) {
            *need = (in_len / AES_BLOCK + 1) * AES_BLOCK;
            return CKR_OK;
        }
        if (in_len % AES_BLOCK != 0 || (c->pad && in_len == 0))
            return bad;
        *need = in_len;
        *exact = !c->pad;
        return CKR_OK;
    case KT_AES_GCM:
        if (c->enc) {
            *need = in_len + c->tag_len;
            return CKR_OK;
        }
        if (in_len < c->tag_len)
            return bad;
        *need = in_len - c->tag_len;
        return CKR_OK;
    case KT_AES_WRAP:
        if (c->enc) {
            if (in_len < 16 || in_len % 8 != 0)
                return bad;
            *need = in_len + 8;
            return CKR_OK;
        }
        if (in_len < 24 || in_len % 8 != 0)
            return bad;
        *need = in_len - 8;
        return CKR_OK;
    case KT_AES_WRAP_PAD:
        if (c->enc) {
            if (in_len == 0)
                return bad;
            *need = (in_len + 7) / 8 * 8 + 8;
            return CKR_OK;
        }
        if (in_len < 16 || in_len % 8 != 0)
            return bad;
        *need = in_len - 8;
        *exact = false;
        return CKR_OK;
    }
    return CKR_GENERAL_ERROR;
}

static KT_NODISCARD CK_RV aes_start(struct aes_ctx *c, kt_cipher **out)
{
    CK_RV rv = kt_ossl_cipher_new(out, c->mode, c->key, c->key_len, c->iv,
                                  c->iv_len, c->enc, c->pad);
    if (rv == CKR_OK && c->mode == KT_AES_GCM)
        rv = kt_ossl_cipher_aad(*out, c->aad, c->aad_len);
    if (rv != CKR_OK) {
        kt_ossl_cipher_free(*out);
        *out = NULL;
    }
    return rv;
}

/* The whole operation on `in`; out holds at least the aes_need bound. The
 * output is wiped when authentication or unpadding fails. */
static KT_NODISCARD CK_RV aes_run(struct aes_ctx *c, const unsigned char *in,
                                  size_t in_len, unsigned char *out,
                                  size_t *out_len)
{
    kt_cipher *k = NULL;
    size_t l1 = 0, l2 = 0, body = in_len;
    /* Key wrap without an alternative IV: the session's kept context. */
    bool kept = c->slot != NULL && c->iv == NULL &&
                (c->mode == KT_AES_WRAP || c->mode == KT_AES_WRAP_PAD);
    CK_RV rv = kept ? kt_ossl_cipher_reuse(c->slot, c->mode, c->key, c->key_len,
                                           c->enc, c->pad)
                    : aes_start(c, &k);
    if (rv != CKR_OK)
        return rv;
    if (kept)
        k = *c->slot;
    if (c->mode == KT_AES_GCM && !c->enc) {
        body = in_len - c->tag_len;
        rv = kt_ossl_cipher_set_tag(k, in + body, c->tag_len);
    }
    if (rv == CKR_OK && body > 0)
        rv = kt_ossl_cipher_update(k, in, body, out, &l1);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_final(k, out + l1, &l2);
    if (rv == CKR_OK && c->mode == KT_AES_GCM && c->enc)
        rv = kt_ossl_cipher_get_tag(k, out + l1 + l2, c->tag_len);
    if (rv == CKR_OK) {
        *out_len = l1 + l2 + (c->mode == KT_AES_GCM && c->enc ? c->tag_len : 0);
    } else {
        kt_wipe(out, l1);
        if (!c->enc && rv == CKR_FUNCTION_FAILED)
            rv = CKR_ENCRYPTED_DATA_INVALID;
    }
    if (!kept)
        kt_ossl_cipher_free(k);
    return rv;
}

static KT_NODISCARD CK_RV aes_oneshot(struct kt_op *op, const unsigned char *in,
                                      size_t in_len, unsigned char *out,
                                      CK_ULONG *out_len)
{
    struct aes_ctx *c = op->ctx;
    size_t need = 0, got = 0;
    bool exact = true;
    CK_RV rv = aes_need(c, in_len, &need, &exact);
    if (rv != CKR_OK)
        return rv;
    if (out == NULL) {
        *out_len = need;
        return CKR_OK;
    }
    if (*out_len >= need) {
        rv = aes_run(c, in, in_len, out, &got);
        if (rv == CKR_OK)
            *out_len = got;
        return rv;
    }
    if (exact) {
        *out_len = need;
        return CKR_BUFFER_TOO_SMALL;
    }
    /* The bound exceeds the buffer but the exact result may fit. */
    unsigned char *tmp = kt_secure_alloc(need + AES_BLOCK);
    if (tmp == NULL)
        return CKR_HOST_MEMORY;
    rv = aes_run(c, in, in_len, tmp, &got);
    if (rv == CKR_OK) {
        if (got <= *out_len)
            memcpy(out, tmp, got);
        else
            rv = CKR_BUFFER_TOO_SMALL;
        *out_len = got;
    }
    kt_free_secret(tmp, need + AES_BLOCK);
    return rv;
}

static KT_NODISCARD CK_RV aes_update(struct kt_op *op, const unsigned char *in,
                                     size_t in_len, unsigned char *out,
                                     CK_ULONG *out_len)
{
    struct aes_ctx *c = op->ctx;
    CK_RV rv;
    if (buffered(c)) {
        if (out == NULL) {
            *out_len = 0;
            return CKR_OK;
        }
        if (in_len > (1u << 26) || c->buf_len + in_len > (1u << 26))
            return c->enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
        if (c->buf_len + in_len > c->buf_cap) {
            size_t cap = (c->buf_len + in_len) * 2 + 64;
            unsigned char *nb = kt_secure_alloc(cap);
            if (nb == NULL)
                return CKR_HOST_MEMORY;
            if (c->buf_len > 0)
                memcpy(nb, c->buf, c->buf_len);
            kt_free_secret(c->buf, c->buf_cap);
            c->buf = nb;
            c->buf_cap = cap;
        }
        if (in_len > 0)
            memcpy(c->buf + c->buf_len, in, in_len);
        c->buf_len += in_len;
        *out_len = 0;
        return CKR_OK;
    }
    /* The exact output of this call (PKCS#11 v2.40 §5.2): a CBC-PAD
     * decryption holds back the last complete block, it may be padding. */
    size_t total = c->held + in_len, need;
    if (c->mode == KT_AES_GCM)
        need = in_len;
    else if (c->pad && !c->enc)
        need = total == 0 ? 0 : (total - 1) / AES_BLOCK * AES_BLOCK;
    else
        need = total / AES_BLOCK * AES_BLOCK;
    bool done = false;
    rv = kt_out_check(out, out_len, need, &done);
    if (done)
        return rv;
    if (c->c == NULL) {
        rv = aes_start(c, &c->c);
        if (rv != CKR_OK)
            return rv;
    }
    /* OpenSSL may use in_len + one block of room; a smaller caller buffer
     * gets the exact output through a temporary. */
    size_t got = 0;
    unsigned char *tmp = NULL;
    bool direct = c->mode == KT_AES_GCM || *out_len >= in_len + AES_BLOCK;
    if (!direct) {
        tmp = kt_secure_alloc(in_len + AES_BLOCK);
        if (tmp == NULL)
            return CKR_HOST_MEMORY;
    }
    rv = kt_ossl_cipher_update(c->c, in, in_len, direct ? out : tmp, &got);
    if (rv == CKR_OK && !direct) {
        if (got > *out_len)
            rv = CKR_GENERAL_ERROR; /* cannot happen: need was exact */
        else if (got > 0)
            memcpy(out, tmp, got);
    }
    kt_free_secret(tmp, in_len + AES_BLOCK);
    if (rv != CKR_OK)
        return rv;
    c->held = total - got;
    *out_len = got;
    return CKR_OK;
}

static size_t aes_final_len(struct kt_op *op)
{
    struct aes_ctx *c = op->ctx;
    size_t need = 0;
    bool exact = true;
    if (buffered(c))
        return aes_need(c, c->buf_len, &need, &exact) == CKR_OK ? need : 0;
    if (c->mode == KT_AES_GCM)
        return c->tag_len;
    return c->pad ? AES_BLOCK : 0;
}

static KT_NODISCARD CK_RV aes_final(struct kt_op *op, unsigned char **out,
                                    size_t *out_len)
{
    struct aes_ctx *c = op->ctx;
    size_t need = 0, got = 0, l = 0;
    bool exact = true;
    CK_RV rv;
    if (buffered(c)) {
        rv = aes_need(c, c->buf_len, &need, &exact);
        if (rv != CKR_OK)
            return rv;
        unsigned char *res = kt_secure_alloc(need + AES_BLOCK);
        if (res == NULL)
            return CKR_HOST_MEMORY;
        rv = aes_run(c, c->buf, c->buf_len, res, &got);
        if (rv != CKR_OK) {
            kt_free_secret(res, need + AES_BLOCK);
            return rv;
        }
        *out = res;
        *out_len = got;
        return CKR_OK;
    }
    if (c->mode != KT_AES_GCM) {
        if (c->pad ? (!c->enc && c->held != AES_BLOCK)
                   : c->held % AES_BLOCK != 0)
            return c->enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
    }
    if (c->c == NULL) {
        rv = aes_start(c, &c->c);
        if (rv != CKR_OK)
            return rv;
    }
    unsigned char *res = kt_secure_alloc(AES_BLOCK + 16);
    if (res == NULL)
        return CKR_HOST_MEMORY;
    rv = kt_ossl_cipher_final(c->c, res, &l);
    if (rv == CKR_OK && c->mode == KT_AES_GCM) {
        rv = kt_ossl_cipher_get_tag(c->c, res + l, c->tag_len);
        l += c->tag_len;
    }
    if (rv != CKR_OK) {
        kt_free_secret(res, AES_BLOCK + 16);
        return rv;
    }
    *out = res;
    *out_len = l;
    return CKR_OK;
}

const struct kt_mech_ops kt_ops_aes = {
    .init = aes_init,
    .oneshot = aes_oneshot,
    .update = aes_update,
    .final = aes_final,
    .final_len = aes_final_len,
    .free = aes_free,
};
