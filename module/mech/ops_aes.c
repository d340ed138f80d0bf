/* AES encrypt/decrypt (and through them wrap/unwrap): ECB, CBC, CBC-PAD,
 * CTR, GCM, key wrap RFC 3394 and key wrap with padding RFC 5649; and,
 * with legacy_mechanisms = yes, DES and DES3 ECB, CBC and CBC-PAD (the
 * same block-mode code with 8-byte blocks). */
#include "kt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"

#define AES_BLOCK 16 /* also the largest block: the slack of buffers */
#define DES_BLOCK 8

struct aes_ctx {
    enum kt_cipher_mode mode;
    size_t block;
    /* CTR: bytes the counter can still cover before it wraps within its
     * ulCounterBits (ctr_limited), a limit over the whole operation */
    bool ctr_limited;
    uint64_t ctr_left;
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

/* CK_AES_CTR_PARAMS (PKCS#11 3.0 §2.10.2): the counter is the low
 * ulCounterBits bits of the counter block. OpenSSL increments all 128
 * bits, which gives the same blocks as long as the counter does not wrap;
 * an operation that would wrap it is refused (the blocks after the wrap
 * would repeat key stream), as SoftHSM2 and NSS refuse it. */
static KT_NODISCARD CK_RV ctr_params(struct aes_ctx *c, const void *p,
                                     CK_ULONG pl)
{
    if (p == NULL || pl != sizeof(CK_AES_CTR_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    const CK_AES_CTR_PARAMS *cp = p;
    CK_ULONG bits = cp->ulCounterBits;
    if (bits < 1 || bits > 128)
        return CKR_MECHANISM_PARAM_INVALID;
    unsigned __int128 ctr = 0;
    for (int i = 0; i < AES_BLOCK; i++)
        ctr = ctr << 8 | cp->cb[i];
    unsigned __int128 mask = bits == 128 ? ~(unsigned __int128)0
                                         : ((unsigned __int128)1 << bits) - 1;
    /* blocks left = 2^bits - counter; the 128-bit case computed as
     * (mask - counter) + 1 without overflow */
    unsigned __int128 left = (mask - (ctr & mask)) + 1;
    c->ctr_limited = left != 0 && left < ((unsigned __int128)1 << 59);
    c->ctr_left = c->ctr_limited ? (uint64_t)left * AES_BLOCK : 0;
    return dup_param(&c->iv, &c->iv_len, cp->cb, AES_BLOCK);
}

static KT_NODISCARD CK_RV parse_params(struct aes_ctx *c, const CK_MECHANISM *m)
{
    const void *p = m->pParameter;
    CK_ULONG pl = m->ulParameterLen;
    switch (m->mechanism) {
    case CKM_AES_ECB:
    case CKM_DES_ECB:
    case CKM_DES3_ECB:
        return p == NULL && pl == 0 ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
    case CKM_AES_CBC:
    case CKM_AES_CBC_PAD:
    case CKM_DES_CBC:
    case CKM_DES_CBC_PAD:
    case CKM_DES3_CBC:
    case CKM_DES3_CBC_PAD:
        if (p == NULL || pl != c->block)
            return CKR_MECHANISM_PARAM_INVALID;
        return dup_param(&c->iv, &c->iv_len, p, pl);
    case CKM_AES_CTR:
        return ctr_params(c, p, pl);
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

/* The cipher mode of mechanism m, with padding (*pad); false: not ours. */
static bool mode_of(CK_MECHANISM_TYPE m, enum kt_cipher_mode *mode, bool *pad)
{
    static const struct {
        CK_MECHANISM_TYPE m;
        enum kt_cipher_mode mode;
        bool pad;
    } rows[] = {
        {CKM_AES_ECB, KT_AES_ECB, false},
        {CKM_AES_CBC, KT_AES_CBC, false},
        {CKM_AES_CBC_PAD, KT_AES_CBC, true},
        {CKM_AES_CTR, KT_AES_CTR, false},
        {CKM_AES_GCM, KT_AES_GCM, false},
        {CKM_AES_KEY_WRAP, KT_AES_WRAP, false},
        {CKM_AES_KEY_WRAP_PAD, KT_AES_WRAP_PAD, false},
        {CKM_AES_KEY_WRAP_KWP, KT_AES_WRAP_PAD, false},
        {CKM_DES_ECB, KT_DES_ECB, false},
        {CKM_DES_CBC, KT_DES_CBC, false},
        {CKM_DES_CBC_PAD, KT_DES_CBC, true},
        {CKM_DES3_ECB, KT_DES3_ECB, false},
        {CKM_DES3_CBC, KT_DES3_CBC, false},
        {CKM_DES3_CBC_PAD, KT_DES3_CBC, true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].m == m) {
            *mode = rows[i].mode;
            *pad = rows[i].pad;
            return true;
        }
    return false;
}

/* The key as the cipher takes it: AES 16, 24 or 32 bytes; DES 8; DES3 24,
 * a two-key (CKK_DES2) key given as K1 K2 K1. */
static KT_NODISCARD CK_RV cipher_key(struct aes_ctx *c, const struct kt_key *k)
{
    size_t l = k->value_len;
    if (c->mode == KT_DES_ECB || c->mode == KT_DES_CBC) {
        if (l != 8)
            return CKR_KEY_SIZE_RANGE;
    } else if (c->mode == KT_DES3_ECB || c->mode == KT_DES3_CBC) {
        if (l != 16 && l != 24)
            return CKR_KEY_SIZE_RANGE;
    } else if (l != 16 && l != 24 && l != 32) {
        return CKR_KEY_SIZE_RANGE;
    }
    memcpy(c->key, k->value, l);
    if (l == 16 && (c->mode == KT_DES3_ECB || c->mode == KT_DES3_CBC)) {
        memcpy(c->key + 16, k->value, 8);
        l = 24;
    }
    c->key_len = l;
    return CKR_OK;
}

static KT_NODISCARD CK_RV aes_init(struct kt_op *op, const CK_MECHANISM *m,
                                   const struct kt_key *key)
{
    enum kt_cipher_mode mode;
    bool pad;
    if (key->value == NULL)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (!mode_of(m->mechanism, &mode, &pad))
        return CKR_MECHANISM_INVALID;
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
    c->mode = mode;
    c->pad = pad;
    c->block = mode >= KT_DES_ECB ? DES_BLOCK : AES_BLOCK;
    CK_RV rv = cipher_key(c, key);
    if (rv == CKR_OK)
        rv = parse_params(c, m);
    if (rv != CKR_OK)
        aes_free(op);
    return rv;
}

/* CTR: n more bytes within the counter's range (and counted), or the
 * length error. */
static KT_NODISCARD CK_RV ctr_take(struct aes_ctx *c, size_t n, bool count)
{
    if (c->mode != KT_AES_CTR || !c->ctr_limited)
        return CKR_OK;
    if (n > c->ctr_left)
        return c->enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (count)
        c->ctr_left -= n;
    return CKR_OK;
}

/* Input length checks and the output size (exact unless *exact is false,
 * then an upper bound). */
static KT_NODISCARD CK_RV aes_need(struct aes_ctx *c, size_t in_len,
                                   size_t *need, bool *exact)
{
    CK_RV bad = c->enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
    *exact = true;
    switch (c->mode) {
    case KT_AES_ECB:
    case KT_AES_CBC:
    case KT_DES_ECB:
    case KT_DES_CBC:
    case KT_DES3_ECB:
    case KT_DES3_CBC:
        if (c->pad && c->enc) {
            *need = (in_len / c->block + 1) * c->block;
            return CKR_OK;
        }
        if (in_len % c->block != 0 || (c->pad && in_len == 0))
            return bad;
        *need = in_len;
        *exact = !c->pad;
        return CKR_OK;
    case KT_AES_CTR:
        *need = in_len;
        return ctr_take(c, in_len, false);
    case KT_CIPHER_MODES:
        break;
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
    bool stream = c->mode == KT_AES_GCM || c->mode == KT_AES_CTR;
    if (stream)
        need = in_len;
    else if (c->pad && !c->enc)
        need = total == 0 ? 0 : (total - 1) / c->block * c->block;
    else
        need = total / c->block * c->block;
    rv = ctr_take(c, in_len, false);
    if (rv != CKR_OK)
        return rv;
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
    bool direct = stream || *out_len >= in_len + AES_BLOCK;
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
    KT_IGNORE_RESULT(ctr_take(c, in_len, true));
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
    return c->pad ? c->block : 0;
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
    if (c->mode != KT_AES_GCM && c->mode != KT_AES_CTR) {
        if (c->pad ? (!c->enc && c->held != c->block) : c->held % c->block != 0)
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
