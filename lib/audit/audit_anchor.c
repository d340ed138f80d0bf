/*
 * The keyed anchor of the audit log's head (audit.h "Anchor").
 *
 * After every append the head (log id, Seq, Hash) is MACed with an
 * HMAC-SHA-256 key that lives in the service token (non-extractable,
 * sensitive, label "keytier-audit-anchor", generated on first use under the
 * append lock) and stored in the library's store.  Whoever can write the
 * log file can cut its tail or recompute every hash, but cannot make the
 * stored anchor agree: verify finds the anchored record missing or
 * different, or the anchor's MAC wrong.  Whoever can also write the store
 * cannot make an append anchor a rewritten log: the anchor moves only
 * along a chain the writer verified from the last anchor it can prove, a
 * log with records and no anchor row is never anchored, and the service
 * token's register of anchored logs shows a removed anchor or a replaced
 * log to verify.
 *
 * The token call runs on the availability pool with the call deadline, so
 * a hung or absent service token delays an append by at most that and
 * never loses the record: the anchor lags, and verify reports the records
 * after it as unanchored (not as tampering).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "call_pool.h"
#include "kt_lib.h"
#include "p11call.h"

#define KT_ANCHOR_LABEL  "keytier-audit-anchor"
#define KT_ANCHOR_DOMAIN "keytier-audit-anchor-v1"
#define KT_ANCHOR_MSG    160
#define KT_ANCHOR_DETAIL 512

/* The MACed text: a domain tag, then the log id, Seq and Hash on lines of
 * their own (none of them can hold a newline). */
static size_t kt_anchor_msg(const char *log_id, uint64_t seq, const char *hash,
                            char out[KT_ANCHOR_MSG])
{
    int n = snprintf(out, KT_ANCHOR_MSG, "%s\n%s\n%" PRIu64 "\n%s\n",
                     KT_ANCHOR_DOMAIN, log_id, seq, hash);

    return n > 0 && n < KT_ANCHOR_MSG ? (size_t)n : 0;
}

/* Generates the anchor key in session s: it signs and verifies (HMAC),
 * nothing else - every other usage is stated false, since a token's
 * defaults may add them - and never leaves the token. */
static keytier_err kt_anchor_key_new(struct kt_token *tok, CK_SESSION_HANDLE s,
                                     CK_OBJECT_HANDLE *key, CK_RV *rv)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG len = 32;
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &len, sizeof len},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_DERIVE, &no, sizeof no},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_DECRYPT, &no, sizeof no},
        {CKA_WRAP, &no, sizeof no},
        {CKA_UNWRAP, &no, sizeof no},
        {CKA_LABEL, KT_ANCHOR_LABEL, sizeof KT_ANCHOR_LABEL - 1},
    };
    *rv = kt_p11_generate_key(tok, s, &mech, t, sizeof t / sizeof t[0], key);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN,
                      "service token '%s': generating the audit anchor "
                      "key: %s",
                      tok->label, kt_p11_rv_text(*rv));
    return KEYTIER_OK;
}

/* The anchor key of the service token, in session s; generated when
 * absent and create is set. */
static keytier_err kt_anchor_key(struct kt_token *tok, CK_SESSION_HANDLE s,
                                 bool create, CK_OBJECT_HANDLE *key, CK_RV *rv)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, sign = CK_FALSE;
    CK_ULONG count = 0;
    CK_OBJECT_HANDLE found[2];
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_LABEL, KT_ANCHOR_LABEL, sizeof KT_ANCHOR_LABEL - 1},
    };
    CK_ATTRIBUTE check[] = {
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_SIGN, &sign, sizeof sign},
    };

    *rv = kt_p11_find_objects(tok, s, find, sizeof find / sizeof find[0], found,
                              2, &count);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN,
                      "service token '%s': finding the audit anchor key: %s",
                      tok->label, kt_p11_rv_text(*rv));
    if (count > 1)
        return kt_err(KEYTIER_E_KEY_AMBIGUOUS,
                      "service token '%s': several audit anchor keys "
                      "labelled " KT_ANCHOR_LABEL,
                      tok->label);
    if (count == 0 && !create)
        return kt_err(KEYTIER_E_KEY_NOT_FOUND,
                      "service token '%s' has no audit anchor key "
                      "(" KT_ANCHOR_LABEL ")",
                      tok->label);
    if (count == 0)
        return kt_anchor_key_new(tok, s, key, rv);
    /* A key someone else made must be as safe as ours. */
    *rv = kt_p11_get_attributes(tok, s, found[0], check,
                                sizeof check / sizeof check[0]);
    if (*rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN,
                      "service token '%s': reading the audit anchor key: %s",
                      tok->label, kt_p11_rv_text(*rv));
    if (!sensitive || extractable)
        return kt_err(KEYTIER_E_KEY_EXTRACTABLE,
                      "service token '%s': the audit anchor key is "
                      "extractable or not sensitive",
                      tok->label);
    if (!sign)
        return kt_err(KEYTIER_E_KEY_USAGE,
                      "service token '%s': the audit anchor key may not sign",
                      tok->label);
    *key = found[0];
    return KEYTIER_OK;
}

/* HMAC-SHA-256 of msg by the service token's anchor key (on this thread). */
static keytier_err kt_anchor_mac_here(keytier_ctx *ctx, bool create,
                                      const char *msg, size_t len,
                                      uint8_t mac[KT_ANCHOR_MAC_SIZE],
                                      CK_RV *rv)
{
    struct kt_token *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG mlen = KT_ANCHOR_MAC_SIZE;
    keytier_err e;

    *rv = CKR_OK;
    e = kt_token_find(ctx, ctx->cfg.service_token, &tok);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "service token %s", ctx->cfg.service_token);
    e = kt_session_get(tok, &s, rv);
    if (e != KEYTIER_OK)
        return e;
    e = kt_anchor_key(tok, s, create, &key, rv);
    if (e == KEYTIER_OK) {
        *rv = kt_p11_sign(tok, s, &mech, key, (const uint8_t *)msg,
                          (CK_ULONG)len, mac, &mlen);
        if (*rv == CKR_OK && mlen != KT_ANCHOR_MAC_SIZE)
            *rv = CKR_FUNCTION_FAILED;
        if (*rv != CKR_OK)
            e = kt_err(KEYTIER_E_TOKEN,
                       "service token '%s': HMAC of the audit anchor: %s",
                       tok->label, kt_p11_rv_text(*rv));
    }
    kt_session_put(tok, s, *rv);
    return e;
}

/* ---- the same on a pool worker, with the call deadline ---------------- */

/* The MAC as a token job (kt_tjob): everything it reads is its own copy. */
struct kt_mac_job {
    struct kt_tjob base;
    bool create;
    char msg[KT_ANCHOR_MSG];
    size_t len;
    uint8_t mac[KT_ANCHOR_MAC_SIZE];
};

static keytier_err kt_mac_work(struct kt_tjob *tj)
{
    struct kt_mac_job *j = (struct kt_mac_job *)tj;

    return kt_anchor_mac_here(tj->ctx, j->create, j->msg, j->len, j->mac,
                              &tj->rv);
}

static void kt_mac_cleanup(struct kt_tjob *tj)
{
    struct kt_mac_job *j = (struct kt_mac_job *)tj;

    OPENSSL_cleanse(j->mac, sizeof j->mac);
}

static keytier_err kt_anchor_mac(keytier_ctx *ctx, bool create,
                                 const char *log_id, uint64_t seq,
                                 const char *hash,
                                 uint8_t mac[KT_ANCHOR_MAC_SIZE])
{
    struct kt_mac_job *j;
    char name[KT_CKR_NAME_MAX];
    keytier_err e = KEYTIER_OK;
    CK_RV rv;

    if (ctx->cfg.service_token == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "no service_token configured: the audit log cannot "
                      "be anchored");
    j = kt_tjob_new(ctx, sizeof *j, kt_mac_work);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit anchor");
    j->base.cleanup = kt_mac_cleanup;
    j->create = create;
    j->len = kt_anchor_msg(log_id, seq, hash, j->msg);
    if (j->len == 0) {
        kt_tjob_put(&j->base);
        return kt_err(KEYTIER_E_INTERNAL, "audit anchor message");
    }
    rv = kt_tjob_start(&j->base, "audit anchor HMAC", ctx->cfg.service_token,
                       ctx->cfg.avail.call_deadline_ms);
    if (!j->base.taken)
        e = kt_err(KEYTIER_E_TOKEN,
                   "service token %s: audit anchor HMAC: %s (deadline "
                   "%u ms)",
                   ctx->cfg.service_token, kt_ckr_name(rv, name),
                   ctx->cfg.avail.call_deadline_ms);
    else if (j->base.err != KEYTIER_OK && j->base.detail[0] == '\0')
        e = kt_err(KEYTIER_E_TOKEN, "service token %s: audit anchor HMAC: %s",
                   ctx->cfg.service_token, kt_ckr_name(rv, name));
    else if (j->base.err != KEYTIER_OK) {
        kt_err_restore(j->base.detail);
        e = j->base.err;
    } else
        memcpy(mac, j->mac, KT_ANCHOR_MAC_SIZE);
    kt_tjob_put(&j->base);
    return e;
}

/* ---- the register of anchored logs, in the service token ----------- */

/*
 * One private, unmodifiable data object per log ever anchored: application
 * KT_ANCHOR_LABEL, label KT_ANCHOR_LOG_LABEL and the log id, value the log's
 * real path.  Written before the log's first anchor row, read by verify:
 * the store alone can then neither lose a log's anchor nor start another
 * log at its path unseen.  Creating or removing one needs the token's PIN.
 */
#define KT_ANCHOR_LOG_LABEL "keytier-audit-log:"
#define KT_ANCHOR_REG_MAX   256 /* logs ever anchored with this token */

enum kt_reg_op { KT_REG_ADD, KT_REG_FIND_ID, KT_REG_FIND_PATH };

struct kt_reg_job {
    struct kt_tjob base;
    enum kt_reg_op op;
    char label[sizeof KT_ANCHOR_LOG_LABEL + KEYTIER_ID_SIZE];
    char path[KT_ANCHOR_PATH_MAX];
    bool found;
    char other[KEYTIER_ID_SIZE]; /* FIND_PATH: the log registered there */
};

/* The registered log of object h, if it is one: its id (from the label)
 * and whether its path is path. */
static KT_NODISCARD CK_RV kt_reg_read(struct kt_token *tok, CK_SESSION_HANDLE s,
                                      CK_OBJECT_HANDLE h, const char *path,
                                      char id[KEYTIER_ID_SIZE], bool *at_path)
{
    char label[sizeof KT_ANCHOR_LOG_LABEL + KEYTIER_ID_SIZE];
    char value[KT_ANCHOR_PATH_MAX];
    CK_ATTRIBUTE t[] = {
        {CKA_LABEL, label, sizeof label - 1},
        {CKA_VALUE, value, sizeof value - 1},
    };
    size_t pre = sizeof KT_ANCHOR_LOG_LABEL - 1;
    CK_RV rv = kt_p11_get_attributes(tok, s, h, t, 2);

    *at_path = false;
    id[0] = '\0';
    if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID)
        return CKR_OK; /* not an entry of ours */
    if (rv != CKR_OK)
        return rv;
    label[t[0].ulValueLen] = '\0';
    value[t[1].ulValueLen] = '\0';
    if (strncmp(label, KT_ANCHOR_LOG_LABEL, pre) != 0 ||
        strlen(label + pre) >= KEYTIER_ID_SIZE)
        return CKR_OK;
    memcpy(id, label + pre, strlen(label + pre) + 1);
    *at_path = strcmp(value, path) == 0;
    return CKR_OK;
}

static keytier_err kt_reg_work(struct kt_tjob *tj)
{
    struct kt_reg_job *j = (struct kt_reg_job *)tj;
    keytier_ctx *ctx = tj->ctx;
    struct kt_token *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_HANDLE *found = NULL, obj;
    CK_ULONG count = 0;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_APPLICATION, KT_ANCHOR_LABEL, sizeof KT_ANCHOR_LABEL - 1},
        {CKA_LABEL, j->label, strlen(j->label)},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_MODIFIABLE, &no, sizeof no},
        {CKA_VALUE, j->path, strlen(j->path)},
    };
    keytier_err e = kt_token_find(ctx, ctx->cfg.service_token, &tok);

    if (e != KEYTIER_OK)
        return kt_err_context(e, "service token %s", ctx->cfg.service_token);
    e = kt_session_get(tok, &s, &tj->rv);
    if (e != KEYTIER_OK)
        return e;
    if (!(found = calloc(KT_ANCHOR_REG_MAX, sizeof *found))) {
        kt_session_put(tok, s, CKR_OK);
        return kt_err(KEYTIER_E_NOMEM, "audit log register");
    }
    /* By id: class, application and label; by path: every entry. */
    tj->rv = kt_p11_find_objects(tok, s, t, j->op == KT_REG_FIND_PATH ? 2 : 3,
                                 found, KT_ANCHOR_REG_MAX, &count);
    for (CK_ULONG i = 0; tj->rv == CKR_OK && j->op == KT_REG_FIND_PATH &&
                         i < count && !j->found;
         i++) {
        char id[KEYTIER_ID_SIZE];
        bool at_path = false;
        tj->rv = kt_reg_read(tok, s, found[i], j->path, id, &at_path);
        if (at_path && strcmp(j->label + sizeof KT_ANCHOR_LOG_LABEL - 1, id)) {
            j->found = true;
            memcpy(j->other, id, sizeof j->other);
        }
    }
    if (tj->rv == CKR_OK && j->op != KT_REG_FIND_PATH)
        j->found = count > 0;
    if (tj->rv == CKR_OK && j->op == KT_REG_ADD && !j->found)
        tj->rv = kt_p11_create_object(tok, s, t, sizeof t / sizeof t[0], &obj);
    if (tj->rv != CKR_OK)
        e = kt_err(KEYTIER_E_TOKEN,
                   "service token '%s': the register of audit logs: %s",
                   tok->label, kt_p11_rv_text(tj->rv));
    kt_session_put(tok, s, tj->rv);
    free(found);
    return e;
}

/* Runs op for log_id (at path) on the pool with the call deadline; found
 * and other (KEYTIER_ID_SIZE bytes) may be NULL. */
static keytier_err kt_anchor_register(keytier_ctx *ctx, enum kt_reg_op op,
                                      const char *log_id, const char *path,
                                      bool *found, char *other)
{
    struct kt_reg_job *j;
    char name[KT_CKR_NAME_MAX];
    keytier_err e = KEYTIER_OK;
    CK_RV rv;

    j = kt_tjob_new(ctx, sizeof *j, kt_reg_work);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit log register");
    j->op = op;
    snprintf(j->label, sizeof j->label, "%s%s", KT_ANCHOR_LOG_LABEL, log_id);
    kt_strlcpy(j->path, path ? path : "", sizeof j->path);
    rv = kt_tjob_start(&j->base, "audit log register", ctx->cfg.service_token,
                       ctx->cfg.avail.call_deadline_ms);
    if (!j->base.taken)
        e = kt_err(KEYTIER_E_TOKEN,
                   "service token %s: the register of audit logs: %s "
                   "(deadline %u ms)",
                   ctx->cfg.service_token, kt_ckr_name(rv, name),
                   ctx->cfg.avail.call_deadline_ms);
    else if (j->base.err != KEYTIER_OK) {
        kt_err_restore(j->base.detail);
        e = j->base.err;
    } else {
        if (found)
            *found = j->found;
        if (other)
            memcpy(other, j->other, KEYTIER_ID_SIZE);
    }
    kt_tjob_put(&j->base);
    return e;
}

/* ---- the append hook -------------------------------------------------- */

/*
 * Per log handle, under its append lock.  last: the anchor this handle
 * wrote or whose MAC it checked.  The chain memory: the head (chain_seq,
 * chain_hash) of log chain_log this handle has proved to follow `last`
 * (or, from_start, to follow record 1, which it wrote itself), so that an
 * append of this handle after its own costs one link and no read.
 */
struct kt_anchor_state {
    keytier_ctx *ctx;
    bool known;
    struct kt_anchor_rec last;
    bool chained, from_start;
    char chain_log[KEYTIER_ID_SIZE];
    uint64_t chain_seq;
    char chain_hash[KT_AUDIT_HASH_HEX + 1];
};

static bool kt_anchor_same(const struct kt_anchor_rec *x,
                           const struct kt_anchor_rec *y)
{
    return !strcmp(x->log_id, y->log_id) && x->seq == y->seq &&
           !strcmp(x->hash, y->hash) &&
           !CRYPTO_memcmp(x->mac, y->mac, sizeof x->mac);
}

/*
 * May the anchor move from old to the new head h?  Only along a chain this
 * handle has proved: old must be the token's (its MAC, unless this handle
 * wrote or checked it) and the new head must follow it, record by record
 * (the one new link when this handle proved the rest, else every line
 * after the anchored record read back and re-hashed).  Otherwise the file
 * was cut or rewritten under the anchor, which stays where it is as the
 * evidence verify will name.
 */
static keytier_err kt_anchor_may_move(struct kt_anchor_state *st, kt_audit *a,
                                      const kt_audit_head *h,
                                      const struct kt_anchor_rec *old,
                                      bool follows)
{
    uint8_t mac[KT_ANCHOR_MAC_SIZE];
    bool proven = st->known && kt_anchor_same(&st->last, old);
    keytier_err e;

    if (old->seq >= h->seq)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "audit log %s: the new record %" PRIu64
                      " is not past the anchored record %" PRIu64
                      ": records were removed",
                      h->path, h->seq, old->seq);
    /* Anchors only move forward: an older one than this handle wrote or
     * checked is a row restored from a saved copy. */
    if (st->known && !strcmp(st->last.log_id, old->log_id) &&
        old->seq < st->last.seq)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "the audit anchor of %s moved back from record %" PRIu64
                      " to record %" PRIu64 ": an older anchor row was "
                      "restored",
                      h->path, st->last.seq, old->seq);
    if (!proven) {
        e = kt_anchor_mac(st->ctx, true, old->log_id, old->seq, old->hash, mac);
        if (e != KEYTIER_OK)
            return e;
        if (CRYPTO_memcmp(mac, old->mac, sizeof mac) != 0)
            return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                          "the audit anchor of %s fails its MAC: the anchor "
                          "was altered",
                          h->path);
        st->known = true;
        st->last = *old;
    }
    if (proven && follows && !st->from_start)
        return KEYTIER_OK; /* the chain from old to h's predecessor */
    if (old->seq + 1 == h->seq) {
        if (strcmp(h->prev_hash, old->hash) != 0)
            return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                          "audit log %s: record %" PRIu64
                          " is not the anchored one: the log was rewritten",
                          h->path, old->seq);
        return KEYTIER_OK;
    }
    return kt_audit_chain_since(a, old->seq, old->hash);
}

/*
 * May a log without an anchor row get its first one?  Only a log this
 * handle began (it wrote record 1, and every record since follows it):
 * a log with records and no anchor row otherwise lost its anchor (rows
 * deleted) or was never anchored, and anchoring it now would vouch for
 * whatever the file holds.
 */
static keytier_err kt_anchor_may_begin(struct kt_anchor_state *st,
                                       const kt_audit_head *h, bool follows)
{
    bool found = false;

    if (h->seq == 1 || (follows && st->from_start))
        return KEYTIER_OK;
    /* Only to say why: refused whatever the token answers. */
    if (kt_anchor_register(st->ctx, KT_REG_FIND_ID, h->log_id, h->path, &found,
                           NULL) != KEYTIER_OK)
        found = false;
    return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                  "audit log %s (log %s) has %" PRIu64
                  " records and no anchor row%s: not anchored, so that an "
                  "append never vouches for a rewritten log",
                  h->path, h->log_id, h->seq,
                  found ? " though the service token registered it: the "
                          "anchor was removed from the store"
                        : "");
}

static void kt_anchor_lags(keytier_ctx *ctx, keytier_err e)
{
    if (e == KEYTIER_E_STORE)
        kt_log_event(ctx->log, KT_LOG_WARNING,
                     "audit anchor lags: store unreachable",
                     keytier_last_error_detail());
    else
        kt_log_event(ctx->log, KT_LOG_WARNING,
                     "audit anchor lags: service token unreachable",
                     keytier_last_error_detail());
}

/* Whether the anchor may move to h (store row found) or begin at it (no
 * row: *begin set); KEYTIER_E_AUDIT_TAMPERED refuses it, other errors make
 * it lag.  old is scratch space. */
static keytier_err kt_anchor_decide(struct kt_anchor_state *st, kt_audit *a,
                                    const kt_audit_head *h, bool follows,
                                    struct kt_anchor_rec *old, bool *begin)
{
    keytier_ctx *ctx = st->ctx;
    keytier_err e = kt_store_anchor_get(ctx->store, h->log_id, old);

    *begin = false;
    if (e == KEYTIER_OK)
        return kt_anchor_may_move(st, a, h, old, follows);
    if (e != KEYTIER_E_NOT_FOUND)
        return e;
    *begin = true;
    e = kt_anchor_may_begin(st, h, follows);
    if (e == KEYTIER_OK && kt_store_anchor_other(ctx->store, h->path, h->log_id,
                                                 old) == KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "audit log replaced: another log was anchored at "
                     "its path",
                     h->path);
    return e;
}

/* The new head h, proved: remembered, registered (before a log's first
 * anchor), MACed and stored as the anchor. */
static void kt_anchor_write(struct kt_anchor_state *st, const kt_audit_head *h,
                            bool begin, struct kt_anchor_rec *rec)
{
    keytier_ctx *ctx = st->ctx;
    bool applied = false;
    keytier_err e;

    /* Remembered, so a lagging anchor catches up without a read back. */
    st->chained = true;
    st->from_start = begin;
    kt_strlcpy(st->chain_log, h->log_id, sizeof st->chain_log);
    st->chain_seq = h->seq;
    memcpy(st->chain_hash, h->hash, sizeof st->chain_hash);
    kt_strlcpy(rec->log_id, h->log_id, sizeof rec->log_id);
    kt_strlcpy(rec->path, h->path, sizeof rec->path);
    kt_strlcpy(rec->hash, h->hash, sizeof rec->hash);
    rec->seq = h->seq;
    rec->updated = (int64_t)time(NULL);
    /* A log is registered once, before its first anchor row: a failure
     * makes the anchor lag, and the next append tries again. */
    e = begin ? kt_anchor_register(ctx, KT_REG_ADD, h->log_id, h->path, NULL,
                                   NULL)
              : KEYTIER_OK;
    if (e == KEYTIER_OK)
        e = kt_anchor_mac(ctx, true, rec->log_id, rec->seq, rec->hash,
                          rec->mac);
    if (e == KEYTIER_OK)
        e = kt_store_anchor_put(ctx->store, rec, &applied);
    if (e != KEYTIER_OK) {
        kt_anchor_lags(ctx, e);
    } else if (applied) {
        st->known = true;
        st->last = *rec;
        st->from_start = false;
    } else {
        /* Another writer anchored this Seq or later under our lock: the
         * file is shorter than it was (verify will name it). */
        st->known = false;
        st->chained = false;
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "audit log behind its anchor: records removed", h->path);
    }
}

static void kt_anchor_hook(void *arg, kt_audit *a, const kt_audit_head *h)
{
    struct kt_anchor_state *st = arg;
    keytier_ctx *ctx = st->ctx;
    char saved[KT_ANCHOR_DETAIL];
    struct kt_anchor_rec *rec = NULL, *old = NULL;
    bool begin = false, follows;
    keytier_err e;

    /* The append succeeded: whatever happens here leaves the caller's
     * error detail as it was. */
    snprintf(saved, sizeof saved, "%s", keytier_last_error_detail());
    /* Does the new record follow the head this handle proved? */
    follows = h != NULL && st->chained && !strcmp(st->chain_log, h->log_id) &&
              st->chain_seq + 1 == h->seq &&
              !strcmp(st->chain_hash, h->prev_hash);
    st->chained = false; /* proved again below, or not at all */
    if (h == NULL) {
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "audit anchor not updated: log identity unreadable",
                     keytier_last_error_detail());
        goto out;
    }
    rec = calloc(1, sizeof *rec);
    old = calloc(1, sizeof *old);
    if (rec == NULL || old == NULL) {
        kt_log_event(ctx->log, KT_LOG_ERROR, "audit anchor not updated",
                     "out of memory");
        goto out;
    }
    e = kt_anchor_decide(st, a, h, follows, old, &begin);
    if (e == KEYTIER_E_AUDIT_TAMPERED)
        /* The anchor stays, and so does what this handle knows of it: a
         * restored older row is refused at every append. */
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "audit anchor refused: the log diverged from it",
                     keytier_last_error_detail());
    else if (e != KEYTIER_OK)
        kt_anchor_lags(ctx, e); /* the record stands, the anchor lags */
    else
        kt_anchor_write(st, h, begin, rec);
out:
    free(old);
    free(rec);
    kt_err_restore(saved);
}

static void kt_anchor_state_free(void *arg)
{
    free(arg);
}

void kt_audit_anchor_attach(keytier_ctx *ctx, kt_audit *a)
{
    struct kt_anchor_state *st;

    kt_audit_node_attach(ctx, a);
    if (ctx->cfg.service_token == NULL || ctx->store == NULL ||
        ctx->avail == NULL)
        return;
    st = calloc(1, sizeof *st);
    if (st == NULL) {
        kt_log_event(ctx->log, KT_LOG_ERROR, "audit anchor not attached",
                     "out of memory");
        return;
    }
    st->ctx = ctx;
    kt_audit_set_anchor(a, kt_anchor_hook, st, kt_anchor_state_free);
}

/* ---- verify ----------------------------------------------------------- */

/* Whether anc carries the service token's MAC (*authentic); an error only
 * when the token cannot say. */
static keytier_err kt_anchor_authentic(keytier_ctx *ctx,
                                       const struct kt_anchor_rec *anc,
                                       bool *authentic)
{
    uint8_t mac[KT_ANCHOR_MAC_SIZE];
    keytier_err e =
        kt_anchor_mac(ctx, false, anc->log_id, anc->seq, anc->hash, mac);
    if (e == KEYTIER_OK)
        *authentic = CRYPTO_memcmp(mac, anc->mac, sizeof mac) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return e;
}

/* Another log anchored at this path (real): this file replaced it (a log
 * deleted or cut to nothing and started again, or rewritten from its
 * first record).  A copy elsewhere is checked by its own anchor.
 * KEYTIER_OK when no other log is anchored there. */
static keytier_err kt_anchor_replaced(keytier_ctx *ctx, const char *path,
                                      const char *real,
                                      keytier_audit_report *rep,
                                      struct kt_anchor_rec *anc)
{
    bool authentic = false;
    keytier_err e = kt_store_anchor_other(ctx->store, real, rep->log_id, anc);
    if (e == KEYTIER_E_NOT_FOUND)
        return KEYTIER_OK;
    if (e != KEYTIER_OK)
        return e;
    e = kt_anchor_authentic(ctx, anc, &authentic);
    if (e != KEYTIER_OK)
        return e;
    if (!authentic)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "the audit anchor of log %s at %s fails its MAC: the "
                      "anchor was altered",
                      anc->log_id, path);
    rep->bad_line = 1;
    return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                  "%s is not the log anchored at this path (log %s, "
                  "records 1..%" PRIu64
                  "): replaced, or rewritten from its first record",
                  path, anc->log_id, anc->seq);
}

/* The log as scanned against its authentic anchor: records removed from
 * the end, a chain rewritten at or before the anchor, or records after it
 * (unanchored). */
static keytier_err kt_anchor_compare(const char *path,
                                     const kt_audit_scan_result *scan,
                                     const struct kt_anchor_rec *anc,
                                     keytier_audit_report *rep)
{
    rep->anchored_seq = anc->seq;
    if (scan->records < anc->seq) {
        rep->bad_line = scan->records + 1;
        if (scan->records + 1 == anc->seq)
            return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                          "record %" PRIu64 " removed from the end: the log "
                          "ends at line %" PRIu64 ", its anchor is at record "
                          "%" PRIu64,
                          anc->seq, scan->records, anc->seq);
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "records %" PRIu64 "..%" PRIu64
                      " removed from the end: the log ends at line %" PRIu64
                      ", its anchor is at record %" PRIu64,
                      scan->records + 1, anc->seq, scan->records, anc->seq);
    }
    if (strcmp(scan->at_hash, anc->hash) != 0) {
        rep->bad_line = anc->seq;
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "line %" PRIu64 " is not the anchored record %" PRIu64
                      ": the chain was rewritten at or before it",
                      anc->seq, anc->seq);
    }
    rep->unanchored = scan->records - anc->seq;
    if (rep->unanchored == 1)
        return kt_err(KEYTIER_E_AUDIT_UNANCHORED,
                      "%s: record %" PRIu64
                      " is after the anchor (record %" PRIu64 ")",
                      path, scan->records, anc->seq);
    if (rep->unanchored > 1)
        return kt_err(KEYTIER_E_AUDIT_UNANCHORED,
                      "%s: records %" PRIu64 "..%" PRIu64
                      " are after the anchor (record %" PRIu64 ")",
                      path, anc->seq + 1, scan->records, anc->seq);
    return KEYTIER_OK;
}

/* The log's chain scanned up to its anchor (anc->seq 0: none), then
 * judged: unanchored without one, else against the anchor once the token
 * vouches for it. */
static keytier_err kt_anchor_check_log(keytier_ctx *ctx, const char *path,
                                       const struct kt_anchor_rec *anc,
                                       keytier_audit_report *rep)
{
    kt_audit_scan_result scan = {.at_seq = anc->seq};
    bool authentic = false;
    keytier_err e = kt_audit_scan(path, &scan);
    rep->records = scan.records;
    rep->bad_line = scan.bad_line;
    if (e != KEYTIER_OK)
        return e; /* the chain itself is broken: that line is named */
    if (anc->seq == 0) {
        rep->unanchored = scan.records;
        return kt_err(KEYTIER_E_AUDIT_UNANCHORED,
                      "%s: no anchor for this log (%" PRIu64
                      " records unanchored; appends do not anchor a log "
                      "that has records and no anchor)",
                      path, scan.records);
    }
    /* The anchor must be the token's before it may accuse the file. */
    e = kt_anchor_authentic(ctx, anc, &authentic);
    if (e != KEYTIER_OK)
        return e;
    if (!authentic)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "the audit anchor of %s (record %" PRIu64
                      ") fails its MAC: the anchor was altered",
                      path, anc->seq);
    return kt_anchor_compare(path, &scan, anc, rep);
}

/* The service token's register against the file: another log registered
 * at this path (the file replaced it, or emptied it), or this log
 * registered while the store has no anchor for it (the row removed). */
static keytier_err kt_anchor_registered(keytier_ctx *ctx, const char *path,
                                        const char *real,
                                        keytier_audit_report *rep, bool has_row)
{
    char other[KEYTIER_ID_SIZE];
    bool found = false;
    keytier_err e = kt_anchor_register(ctx, KT_REG_FIND_PATH, rep->log_id, real,
                                       &found, other);
    if (e != KEYTIER_OK)
        return e;
    if (found) {
        rep->bad_line = 1;
        if (!rep->log_id[0])
            return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                          "%s is empty, but the service token registered log "
                          "%s at this path: the log was emptied or deleted",
                          path, other);
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "%s is not the log anchored at this path (the service "
                      "token registered log %s there): replaced, or "
                      "rewritten from its first record",
                      path, other);
    }
    if (has_row || !rep->log_id[0])
        return KEYTIER_OK;
    e = kt_anchor_register(ctx, KT_REG_FIND_ID, rep->log_id, real, &found,
                           NULL);
    if (e == KEYTIER_OK && found)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "the anchor of log %s was removed: the service token "
                      "registered the log as anchored, the store has no "
                      "anchor for it",
                      rep->log_id);
    return e;
}

static keytier_err kt_anchor_verify(keytier_ctx *ctx, const char *path,
                                    keytier_audit_report *rep)
{
    char real[PATH_MAX];
    struct kt_anchor_rec *anc = calloc(1, sizeof *anc);
    keytier_err e, found;

    if (anc == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit anchor");
    if (realpath(path, real) == NULL) {
        e = kt_err(KEYTIER_E_IO, "cannot open audit log %s: %s", path,
                   strerror(errno));
        goto out;
    }
    /* The anchor is read before the log: appends only move the file ahead
     * of it, never behind. */
    e = kt_audit_log_id(path, rep->log_id);
    if (e == KEYTIER_E_AUDIT_TAMPERED) {
        rep->bad_line = 1;
        goto out;
    }
    if (e != KEYTIER_OK && e != KEYTIER_E_NOT_FOUND)
        goto out;
    e = kt_anchor_replaced(ctx, path, real, rep, anc);
    if (e != KEYTIER_OK)
        goto out;
    found = rep->log_id[0] ? kt_store_anchor_get(ctx->store, rep->log_id, anc)
                           : KEYTIER_E_NOT_FOUND; /* an empty log */
    if (found != KEYTIER_OK && found != KEYTIER_E_NOT_FOUND) {
        e = found;
        goto out;
    }
    e = kt_anchor_registered(ctx, path, real, rep, found == KEYTIER_OK);
    if (e != KEYTIER_OK)
        goto out;
    if (!rep->log_id[0]) {
        /* No record, no identity: nothing to vouch for. */
        e = kt_err(KEYTIER_E_AUDIT_EMPTY, "%s holds no record", path);
        goto out;
    }
    if (found == KEYTIER_E_NOT_FOUND)
        anc->seq = 0; /* no anchor at all */
    e = kt_anchor_check_log(ctx, path, anc, rep);
out:
    free(anc);
    return e;
}

KEYTIER_API keytier_err keytier_audit_verify_anchored(keytier_ctx *ctx,
                                                      const char *path,
                                                      keytier_audit_report *out)
{
    char own[4096];

    kt_err_clear();
    if (ctx == NULL || out == NULL)
        return kt_err(KEYTIER_E_ARGS, "audit verify: context missing");
    memset(out, 0, sizeof *out);
    if (path == NULL) {
        keytier_err e = keytier_audit_log_path(ctx, own, sizeof own);
        if (e != KEYTIER_OK)
            return e;
        path = own;
    }
    if (ctx->cfg.service_token == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "no service_token configured: the audit log's anchor "
                      "cannot be checked (verify the chain alone)");
    return kt_anchor_verify(ctx, path, out);
}
