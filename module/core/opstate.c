/* Session operation state: one operation per kind per session, started by
 * C_*Init, ended per PKCS#11 v2.40 §5.2 (every result but
 * CKR_BUFFER_TOO_SMALL and a successful length query ends it: errors of the
 * C_* layer's argument checks, CKR_OPERATION_ACTIVE for a single-part call
 * during a multi-part operation or an Update/Final call after a single-part
 * call asked for the length (§5.2: the operation is one or the other), and
 * CKR_USER_NOT_LOGGED_IN for a pending context-specific login included, since
 * §5.8-5.12 say such a call "always terminates the active operation" with only
 * those two exceptions). */
#include "kt.h"

#include <string.h>

static const CK_FLAGS kind_flag[KT_OP_KIND_MAX] = {
    CKF_ENCRYPT, CKF_DECRYPT, CKF_SIGN, CKF_VERIFY, CKF_DIGEST,
};
static const CK_ATTRIBUTE_TYPE kind_usage[KT_OP_KIND_MAX] = {
    CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, 0,
};

CK_RV kt_op_check_key(const struct kt_mech *m, const struct kt_key *key)
{
    if (!kt_mech_key_type_ok(m, key->type))
        return CKR_KEY_TYPE_INCONSISTENT;
    if (key->cls == CKO_SECRET_KEY && key->value != NULL &&
        m->info.ulMaxKeySize > 0 &&
        (key->value_len < m->info.ulMinKeySize ||
         key->value_len > m->info.ulMaxKeySize))
        return CKR_KEY_SIZE_RANGE;
    const CK_ATTRIBUTE *am = kt_attrs_find(&key->attrs, CKA_ALLOWED_MECHANISMS);
    if (am != NULL) {
        const CK_MECHANISM_TYPE *list = am->pValue;
        size_t n = am->ulValueLen / sizeof(CK_MECHANISM_TYPE);
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++) {
            CK_MECHANISM_TYPE x;
            memcpy(&x, &list[i], sizeof(x));
            ok = x == m->type;
        }
        if (!ok)
            return CKR_MECHANISM_INVALID;
    }
    return CKR_OK;
}

CK_RV kt_op_begin(struct kt_session *s, enum kt_op_kind kind,
                  const CK_MECHANISM *mech, CK_OBJECT_HANDLE key)
{
    struct kt_key k;
    CK_RV rv = CKR_OK;
    memset(&k, 0, sizeof(k));
    const struct kt_mech *m = kt_mech_find(mech->mechanism);
    if (m == NULL || m->ops == NULL || !(m->info.flags & kind_flag[kind]))
        return CKR_MECHANISM_INVALID;
    pthread_mutex_lock(&s->lock);
    struct kt_op *op = &s->ops[kind];
    if (op->active) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    if (kind != KT_OP_DIGEST) {
        rv = kt_key_snapshot(s->token, key, kind_usage[kind], &k);
        if (rv == CKR_OK)
            rv = kt_op_check_key(m, &k);
        if (rv != CKR_OK)
            goto out;
    }
    memset(op, 0, sizeof(*op));
    op->mech = m;
    op->kind = kind;
    op->key = key;
    rv = m->ops->init(op, mech, &k);
    if (rv == CKR_OK)
        op->active = true;
    else
        memset(op, 0, sizeof(*op));
    /* PKCS#11 v2.40 §4.9 CKA_ALWAYS_AUTHENTICATE: each sign
     * or decrypt operation needs its own C_Login(CKU_CONTEXT_SPECIFIC). */
    if (rv == CKR_OK && (kind == KT_OP_SIGN || kind == KT_OP_DECRYPT))
        op->need_auth =
            kt_attrs_get_bool(&k.attrs, CKA_ALWAYS_AUTHENTICATE, false);
out:
    pthread_mutex_unlock(&s->lock);
    kt_key_clear(&k);
    return rv;
}

static bool op_continues(CK_RV rv, const unsigned char *out)
{
    return rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && out == NULL);
}

CK_RV kt_op_oneshot(struct kt_session *s, enum kt_op_kind kind,
                    const unsigned char *in, CK_ULONG in_len,
                    unsigned char *out, CK_ULONG *out_len)
{
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_op *op = &s->ops[kind];
    if (!op->active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else if (op->multi) {
        rv = CKR_OPERATION_ACTIVE;
        kt_op_release(op);
    } else if (op->need_auth && out != NULL) {
        rv = CKR_USER_NOT_LOGGED_IN; /* context login first */
        kt_op_release(op);
    } else {
        rv = op->mech->ops->oneshot(op, in, in_len, out, out_len);
        if (!op_continues(rv, out))
            kt_op_release(op);
        else
            op->single = true;
    }
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV kt_op_update(struct kt_session *s, enum kt_op_kind kind,
                   const unsigned char *in, CK_ULONG in_len, unsigned char *out,
                   CK_ULONG *out_len)
{
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_op *op = &s->ops[kind];
    if (!op->active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else if (op->single) {
        rv = CKR_OPERATION_ACTIVE; /* a single-part call is under way */
        kt_op_release(op);
    } else if (op->need_auth) {
        rv = CKR_USER_NOT_LOGGED_IN; /* context login first */
        kt_op_release(op);
    } else {
        op->multi = true;
        rv = op->mech->ops->update(op, in, in_len, out, out_len);
        if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
            kt_op_release(op);
    }
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV kt_op_finish(struct kt_session *s, enum kt_op_kind kind,
                   unsigned char *out, CK_ULONG *out_len)
{
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_op *op = &s->ops[kind];
    if (!op->active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else if (op->single) {
        rv = CKR_OPERATION_ACTIVE; /* a single-part call is under way */
        kt_op_release(op);
    } else if (op->need_auth && out != NULL) {
        rv = CKR_USER_NOT_LOGGED_IN; /* context login first */
        kt_op_release(op);
    } else {
        rv = kt_op_final(op, out, out_len);
        if (!op_continues(rv, out))
            kt_op_release(op);
    }
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV kt_op_verify_oneshot(struct kt_session *s, const unsigned char *data,
                           CK_ULONG len, const unsigned char *sig,
                           CK_ULONG sig_len)
{
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_op *op = &s->ops[KT_OP_VERIFY];
    if (!op->active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else if (op->multi) {
        rv = CKR_OPERATION_ACTIVE;
    } else {
        rv = op->mech->ops->verify(op, data, len, sig, sig_len);
        kt_op_release(op);
    }
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV kt_op_verify_finish(struct kt_session *s, const unsigned char *sig,
                          CK_ULONG sig_len)
{
    CK_RV rv;
    pthread_mutex_lock(&s->lock);
    struct kt_op *op = &s->ops[KT_OP_VERIFY];
    if (!op->active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else if (op->single) {
        rv = CKR_OPERATION_ACTIVE; /* a single-part call is under way */
        kt_op_release(op);
    } else {
        rv = op->mech->ops->verify_final(op, sig, sig_len);
        kt_op_release(op);
    }
    pthread_mutex_unlock(&s->lock);
    return rv;
}

void kt_op_abort(struct kt_session *s, enum kt_op_kind kind)
{
    pthread_mutex_lock(&s->lock);
    kt_op_release(&s->ops[kind]);
    pthread_mutex_unlock(&s->lock);
}

CK_RV kt_op_session(CK_SESSION_HANDLE h, enum kt_op_kind kind, bool args_ok,
                    struct kt_session **out)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK)
        rv = kt_session_ref(h, &s);
    if (!args_ok) {
        /* The call failed: it ends the operation it was part of. */
        if (rv == CKR_OK)
            kt_op_abort(s, kind);
        kt_session_unref(s);
        return rv == CKR_CRYPTOKI_NOT_INITIALIZED ? rv : CKR_ARGUMENTS_BAD;
    }
    if (rv == CKR_OK)
        *out = s;
    return rv;
}

bool kt_op_active(struct kt_session *s, enum kt_op_kind kind)
{
    pthread_mutex_lock(&s->lock);
    bool active = s->ops[kind].active;
    pthread_mutex_unlock(&s->lock);
    return active;
}

/* C_Login(CKU_CONTEXT_SPECIFIC): authorises the pending sign
 * or decrypt operation of a CKA_ALWAYS_AUTHENTICATE key. The PIN is checked
 * (and failures counted) with no session lock held. */
CK_RV kt_op_context_login(struct kt_session *s, const unsigned char *pin,
                          CK_ULONG len)
{
    CK_RV rv = CKR_OPERATION_NOT_INITIALIZED;
    pthread_mutex_lock(&s->lock);
    if ((s->ops[KT_OP_SIGN].active && s->ops[KT_OP_SIGN].need_auth) ||
        (s->ops[KT_OP_DECRYPT].active && s->ops[KT_OP_DECRYPT].need_auth))
        rv = CKR_OK;
    pthread_mutex_unlock(&s->lock);
    if (rv != CKR_OK)
        return rv;
    rv = kt_login_context(s->token, pin, len);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&s->lock);
    s->ops[KT_OP_SIGN].need_auth = false;
    s->ops[KT_OP_DECRYPT].need_auth = false;
    pthread_mutex_unlock(&s->lock);
    return CKR_OK;
}
