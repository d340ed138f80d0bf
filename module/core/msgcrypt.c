/* Message-based encryption and decryption (PKCS#11 3.0 §5.15-5.16) with
 * CKM_AES_GCM: one operation per direction per session (C_Message*Init ...
 * C_Message*Final), each message with its own CK_GCM_MESSAGE_PARAMS (IV,
 * tag). The IV is the caller's (CKG_NO_GENERATE, as for C_Encrypt with GCM)
 * or the module's: CKG_GENERATE / CKG_GENERATE_RANDOM fill the bits after
 * ulIvFixedBits with random bytes, returned through pIv, drawn only when a
 * message is encrypted (not for a length query or a short buffer). A
 * message in parts is decrypted once its last part came with its tag: no
 * plaintext leaves before the tag is checked. A failed call ends the
 * message, never the operation. Guarded by the session's lock. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "pkcs11v3.h"

/* Bound of one message (and of its AAD): below OpenSSL's int lengths and
 * the size_t sums here; GCM itself allows 2^36 - 32 bytes. */
#define MSG_MAX ((size_t)1 << 30)

struct kt_msg {
    CK_OBJECT_HANDLE key;
    unsigned char key_val[32];
    size_t key_len;
    /* A message in parts (Begin, Next ...): the cipher keyed with its IV
     * and fed its AAD; decryption holds the ciphertext until the last
     * part. */
    kt_cipher *c;
    unsigned char *buf;
    size_t buf_len, buf_cap;
};

static void message_end(struct kt_msg *m)
{
    kt_ossl_cipher_free(m->c);
    m->c = NULL;
    kt_free_secret(m->buf, m->buf_cap);
    m->buf = NULL;
    m->buf_len = m->buf_cap = 0;
}

void kt_msg_release(struct kt_session *s, bool enc)
{
    struct kt_msg *m = s->msg[enc ? 0 : 1];
    if (m == NULL)
        return;
    message_end(m);
    kt_free_secret(m, sizeof(*m));
    s->msg[enc ? 0 : 1] = NULL;
}

CK_RV kt_msg_init(struct kt_session *s, bool enc, const CK_MECHANISM *mech,
                  CK_OBJECT_HANDLE key)
{
    const struct kt_mech *mt = kt_mech_find(CKM_AES_GCM);
    if (mech->mechanism != CKM_AES_GCM || mt == NULL)
        return CKR_MECHANISM_INVALID;
    /* The parameters are each message's. */
    if (mech->pParameter != NULL || mech->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    struct kt_key k;
    memset(&k, 0, sizeof(k));
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&s->lock);
    if (s->msg[enc ? 0 : 1] != NULL) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    rv = kt_key_snapshot(s->token, key, enc ? CKA_ENCRYPT : CKA_DECRYPT, &k);
    if (rv == CKR_OK)
        rv = kt_op_check_key(mt, &k);
    if (rv == CKR_OK &&
        (k.value == NULL ||
         (k.value_len != 16 && k.value_len != 24 && k.value_len != 32)))
        rv = CKR_KEY_SIZE_RANGE;
    if (rv != CKR_OK)
        goto out;
    struct kt_msg *m = kt_secure_alloc(sizeof(*m));
    if (m == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    memset(m, 0, sizeof(*m));
    m->key = key;
    m->key_len = k.value_len;
    memcpy(m->key_val, k.value, k.value_len);
    s->msg[enc ? 0 : 1] = m;
out:
    pthread_mutex_unlock(&s->lock);
    kt_key_clear(&k);
    return rv;
}

/* One message's CK_GCM_MESSAGE_PARAMS: IV of 1-256 bytes, tag of 96-128
 * bits, and for encryption an IV generator the module offers. */
static KT_NODISCARD CK_RV msg_params(const void *param, CK_ULONG len, bool enc,
                                     CK_GCM_MESSAGE_PARAMS **out)
{
    CK_GCM_MESSAGE_PARAMS *p = (CK_GCM_MESSAGE_PARAMS *)param;
    if (p == NULL || len != sizeof(*p) || p->pIv == NULL || p->ulIvLen < 1 ||
        p->ulIvLen > 256 || p->pTag == NULL || p->ulTagBits < 96 ||
        p->ulTagBits > 128 || p->ulTagBits % 8 != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    if (enc && p->ivGenerator != CKG_NO_GENERATE &&
        ((p->ivGenerator != CKG_GENERATE &&
          p->ivGenerator != CKG_GENERATE_RANDOM) ||
         p->ulIvFixedBits % 8 != 0 || p->ulIvFixedBits >= p->ulIvLen * 8))
        return CKR_MECHANISM_PARAM_INVALID;
    *out = p;
    return CKR_OK;
}

/* Keys the cipher for one message: the module's IV bits drawn first (into
 * the caller's pIv), then the AAD. */
static KT_NODISCARD CK_RV message_start(struct kt_msg *m, bool enc,
                                        CK_GCM_MESSAGE_PARAMS *p,
                                        const unsigned char *aad,
                                        CK_ULONG aad_len, kt_cipher **c)
{
    CK_RV rv = CKR_OK;
    if (aad_len > MSG_MAX)
        return CKR_ARGUMENTS_BAD;
    if (enc && p->ivGenerator != CKG_NO_GENERATE) {
        size_t fixed = p->ulIvFixedBits / 8;
        rv = kt_ossl_random(p->pIv + fixed, p->ulIvLen - fixed);
    }
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_new(c, KT_AES_GCM, m->key_val, m->key_len, p->pIv,
                                p->ulIvLen, enc, false);
    if (rv == CKR_OK && aad_len > 0)
        rv = kt_ossl_cipher_aad(*c, aad, aad_len);
    return rv;
}

/* The whole of a message through the cipher into out (which holds len
 * bytes): encryption returns the tag in p->pTag, decryption checks it
 * (CKR_ENCRYPTED_DATA_INVALID, nothing written). */
static KT_NODISCARD CK_RV message_finish(kt_cipher *c, bool enc,
                                         CK_GCM_MESSAGE_PARAMS *p,
                                         const unsigned char *in, size_t len,
                                         unsigned char *out)
{
    size_t cap = len + 16, n = 0, f = 0;
    unsigned char *tmp = kt_secure_alloc(cap);
    size_t tag_len = p->ulTagBits / 8;
    if (tmp == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = enc ? CKR_OK : kt_ossl_cipher_set_tag(c, p->pTag, tag_len);
    if (rv == CKR_OK && len > 0)
        rv = kt_ossl_cipher_update(c, in, len, tmp, &n);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_final(c, tmp + n, &f);
    if (rv == CKR_OK && enc)
        rv = kt_ossl_cipher_get_tag(c, p->pTag, tag_len);
    if (rv == CKR_OK && n + f != len)
        rv = CKR_GENERAL_ERROR;
    if (rv == CKR_OK && len > 0)
        memcpy(out, tmp, len);
    kt_free_secret(tmp, cap);
    return rv;
}

static KT_NODISCARD CK_RV out_room(unsigned char *out, CK_ULONG *out_len,
                                   size_t need, bool *done, bool enc)
{
    if (need > MSG_MAX)
        return enc ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
    *done = out == NULL || *out_len < need;
    CK_RV rv = out == NULL || *out_len >= need ? CKR_OK : CKR_BUFFER_TOO_SMALL;
    *out_len = need;
    return rv;
}

CK_RV kt_msg_oneshot(struct kt_session *s, bool enc, const void *param,
                     CK_ULONG param_len, const unsigned char *aad,
                     CK_ULONG aad_len, const unsigned char *in, CK_ULONG in_len,
                     unsigned char *out, CK_ULONG *out_len)
{
    CK_GCM_MESSAGE_PARAMS *p = NULL;
    kt_cipher *c = NULL;
    bool done = false;
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_msg *m = s->msg[enc ? 0 : 1];
    if (m == NULL)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else if (m->c != NULL)
        rv = CKR_OPERATION_ACTIVE; /* a message in parts is under way */
    else
        rv = msg_params(param, param_len, enc, &p);
    if (rv == CKR_OK)
        rv = out_room(out, out_len, in_len, &done, enc);
    if (rv == CKR_OK && !done)
        rv = message_start(m, enc, p, aad, aad_len, &c);
    if (rv == CKR_OK && !done)
        rv = message_finish(c, enc, p, in, in_len, out);
    kt_ossl_cipher_free(c);
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV kt_msg_begin(struct kt_session *s, bool enc, const void *param,
                   CK_ULONG param_len, const unsigned char *aad,
                   CK_ULONG aad_len)
{
    CK_GCM_MESSAGE_PARAMS *p = NULL;
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_msg *m = s->msg[enc ? 0 : 1];
    if (m == NULL)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else if (m->c != NULL)
        rv = CKR_OPERATION_ACTIVE;
    else
        rv = msg_params(param, param_len, enc, &p);
    if (rv == CKR_OK)
        rv = message_start(m, enc, p, aad, aad_len, &m->c);
    if (rv != CKR_OK && m != NULL && rv != CKR_OPERATION_ACTIVE)
        message_end(m);
    pthread_mutex_unlock(&s->lock);
    return rv;
}

/* Decryption holds each part until the last (with the tag) comes. */
static KT_NODISCARD CK_RV hold(struct kt_msg *m, const unsigned char *in,
                               size_t len)
{
    if (len > MSG_MAX || m->buf_len + len > MSG_MAX)
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (m->buf_len + len > m->buf_cap) {
        size_t cap = m->buf_cap ? m->buf_cap : 256;
        while (cap < m->buf_len + len)
            cap *= 2;
        /* Ciphertext: ordinary memory (kt_free_secret frees either). */
        unsigned char *b = malloc(cap);
        if (b == NULL)
            return CKR_HOST_MEMORY;
        if (m->buf_len > 0)
            memcpy(b, m->buf, m->buf_len);
        kt_free_secret(m->buf, m->buf_cap);
        m->buf = b;
        m->buf_cap = cap;
    }
    if (len > 0)
        memcpy(m->buf + m->buf_len, in, len);
    m->buf_len += len;
    return CKR_OK;
}

static KT_NODISCARD CK_RV next_part(struct kt_msg *m, bool enc,
                                    CK_GCM_MESSAGE_PARAMS *p,
                                    const unsigned char *in, CK_ULONG in_len,
                                    unsigned char *out, CK_ULONG *out_len,
                                    bool last, bool *done)
{
    if (!enc && !last) {
        *out_len = 0;
        return out == NULL ? CKR_OK : hold(m, in, in_len);
    }
    size_t need = enc ? in_len : m->buf_len + in_len;
    CK_RV rv = out_room(out, out_len, need, done, enc);
    if (rv != CKR_OK || *done)
        return rv;
    if (enc && !last) {
        size_t cap = (size_t)in_len + 16, n = 0;
        unsigned char *tmp = malloc(cap);
        rv = tmp == NULL ? CKR_HOST_MEMORY : CKR_OK;
        if (rv == CKR_OK && in_len > 0)
            rv = kt_ossl_cipher_update(m->c, in, in_len, tmp, &n);
        if (rv == CKR_OK && n != in_len)
            rv = CKR_GENERAL_ERROR; /* GCM returns what it is given */
        if (rv == CKR_OK && in_len > 0)
            memcpy(out, tmp, in_len);
        free(tmp);
        return rv;
    }
    if (!enc) {
        rv = hold(m, in, in_len);
        in = m->buf;
        in_len = m->buf_len;
    }
    return rv == CKR_OK ? message_finish(m->c, enc, p, in, in_len, out) : rv;
}

CK_RV kt_msg_next(struct kt_session *s, bool enc, const void *param,
                  CK_ULONG param_len, const unsigned char *in, CK_ULONG in_len,
                  unsigned char *out, CK_ULONG *out_len, CK_FLAGS flags)
{
    CK_GCM_MESSAGE_PARAMS *p = NULL;
    bool last = (flags & CKF_END_OF_MESSAGE) != 0, done = false;
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_msg *m = s->msg[enc ? 0 : 1];
    if (m == NULL || m->c == NULL) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    rv = msg_params(param, param_len, false, &p);
    if (rv == CKR_OK)
        rv = next_part(m, enc, p, in, in_len, out, out_len, last, &done);
    /* The message ends with its last part, or with an error (a short
     * buffer and a length query excepted). */
    if ((rv == CKR_OK && last && !done) ||
        (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL))
        message_end(m);
out:
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV kt_msg_final(struct kt_session *s, bool enc)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&s->lock);
    if (s->msg[enc ? 0 : 1] == NULL)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else
        kt_msg_release(s, enc);
    pthread_mutex_unlock(&s->lock);
    return rv;
}
