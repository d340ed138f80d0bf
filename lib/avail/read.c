/*
 * The read path of a DEP key (docs/DESIGN.md §2 "Reading a DEP key"), the
 * one road from a DEP to its key, kt_dep_key_read:
 *
 *   cache hit -> done, no token call (never for a rewrap, whose tokens must
 *   answer now);
 *   customer key A or B (random) on a pool worker with a deadline; the other
 *   one hedged after hedge_ms (or at once when the first fails); first
 *   success wins and is cached;
 *   both failed -> each failure classified (ckr_class.c) and the verdict of
 *   the fallback rule (fallback_rule.c, the only place it is decided)
 *   carried out: the availability key with a fallback record, or a refusal
 *   with a denied record; on the files shape the approval the rule asks
 *   for is used first (trust/'s gate, given to this layer by the opener),
 *   and the fallback record names it.
 *   A key obtained through the availability key is never cached: every
 *   such read is audited, and the customer keys are asked again next time.
 *
 * Each copy is unwrapped by dep_key.c; the cache's refresh comes here too.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "fallback_rule.h"
#include "kt_lib.h"
#include "state.h"

#define KT_DETAIL_MAX KT_TJOB_DETAIL

/* A workload's shape for the rule: files when configured so, else mail
 * (the shape of a workload named for the first time). */
static kt_fallback_shape kt_avail_shape(keytier_ctx *ctx, const char *workload)
{
    const struct kt_workload_cfg *w = kt_config_workload(&ctx->cfg, workload);

    return w && w->shape == KT_SHAPE_FILES ? KT_FALLBACK_FILES
                                           : KT_FALLBACK_MAIL;
}

/* Outage fallback for a workload: its override, else on for the mail
 * shape and off for the files shape (DESIGN.md §2). */
static bool kt_avail_outage_fallback(keytier_ctx *ctx, const char *workload)
{
    const struct kt_avail_cfg *c = &ctx->cfg.avail;

    for (size_t i = 0; i < c->n_overrides; i++)
        if (!strcmp(c->overrides[i].workload, workload))
            return c->overrides[i].outage_fallback;
    return kt_avail_shape(ctx, workload) == KT_FALLBACK_MAIL;
}

/* ---- one root-key read on a worker ------------------------------------ */

/* What the caller gets back from a slot read. */
struct kt_slot_result {
    kt_secret *key;
    keytier_err err;
    CK_RV rv; /* the CK_RV the failure stands for (kt_ckr_from_err) */
    char detail[KT_DETAIL_MAX];
};

/* One wrapped copy unwrapped on the pool: a token job (kt_tjob) that owns
 * a copy of the DEP, as a late job outlives the caller. */
struct kt_slot_job {
    struct kt_tjob base;
    struct kt_avail *av;
    struct kt_dep_rec dep;
    int slot;
    kt_secret *key; /* the result; wiped with the job unless taken */
};

static keytier_err kt_slot_work(struct kt_tjob *tj)
{
    struct kt_slot_job *j = (struct kt_slot_job *)tj;

    /* av lives as long as the context (kt_avail_free), which the job
     * holds until its last reference goes. */
    atomic_fetch_add(&j->av->token_reads, 1);
    uint64_t t0 = kt_now_ns();
    keytier_err e =
        kt_dep_key_unwrap_slot(tj->ctx, &j->dep, j->slot, &j->key, &tj->rv);
    kt_avail_count_call(j->av, j->dep.roots[j->slot].uri,
                        kt_ckr_from_err(e, tj->rv), kt_now_ns() - t0);
    return e;
}

static void kt_slot_cleanup(struct kt_tjob *tj)
{
    struct kt_slot_job *j = (struct kt_slot_job *)tj;

    /* A late or losing unwrap: its key is wiped, never used. */
    kt_secret_free(j->key);
    kt_wipe(&j->dep, sizeof j->dep);
}

static const char *const kt_slot_names[] = {"unwrap A", "unwrap B",
                                            "unwrap availability"};

/* A slot job and its pool call; NULL on allocation failure. */
static struct kt_slot_job *kt_slot_job_new(struct kt_avail *av,
                                           const struct kt_dep_rec *dep,
                                           int slot, kt_call *call)
{
    struct kt_slot_job *j = kt_tjob_new(av->ctx, sizeof *j, kt_slot_work);

    if (!j)
        return NULL;
    j->base.cleanup = kt_slot_cleanup;
    j->av = av;
    j->dep = *dep;
    j->slot = slot;
    kt_tjob_call(&j->base, kt_slot_names[slot], dep->roots[slot].uri, call);
    return j;
}

/* Moves a slot job's outcome into r (when the caller took it) and drops the
 * caller's reference.  A job not taken leaves r as it was. */
static void kt_slot_take(struct kt_slot_job *j, struct kt_slot_result *r)
{
    if (j->base.taken) {
        r->err = j->base.err;
        r->rv = kt_ckr_from_err(j->base.err, j->base.rv);
        snprintf(r->detail, sizeof r->detail, "%s",
                 r->err != KEYTIER_OK ? j->base.detail : "");
        r->key = j->key;
        j->key = NULL;
    }
    kt_tjob_put(&j->base);
}

/* Hedged read with the two customer keys (no fallback).  On success *key
 * and the winning slot; otherwise res[KEYTIER_ROOT_A/B] hold both failures
 * with their CK_RV (timeouts included). */
static keytier_err kt_avail_customer_read(struct kt_avail *av,
                                          const struct kt_dep_rec *dep,
                                          kt_secret **key,
                                          struct kt_slot_result res[2])
{
    unsigned char coin = 0;
    int order[2];
    kt_call calls[2];
    struct kt_slot_job *jobs[2];
    CK_RV rv[2], hedged;
    int winner = -1;

    memset(res, 0, 2 * sizeof *res);
    if (RAND_bytes(&coin, 1) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    order[0] = coin & 1 ? KEYTIER_ROOT_B : KEYTIER_ROOT_A;
    order[1] = order[0] == KEYTIER_ROOT_A ? KEYTIER_ROOT_B : KEYTIER_ROOT_A;
    for (int i = 0; i < 2; i++) {
        /* rv stays KT_CKR_NOT_STARTED unless the call is taken */
        res[order[i]].rv = KT_CKR_NOT_STARTED;
        res[order[i]].err = KEYTIER_E_UNAVAILABLE;
    }
    jobs[0] = kt_slot_job_new(av, dep, order[0], &calls[0]);
    jobs[1] = jobs[0] ? kt_slot_job_new(av, dep, order[1], &calls[1]) : NULL;
    if (!jobs[1]) {
        if (jobs[0]) {
            calls[0].release(calls[0].ctx);
            kt_tjob_put(&jobs[0]->base);
        }
        return kt_err(KEYTIER_E_NOMEM, "DEP %s", dep->dep_id);
    }
    hedged = kt_pool_hedge(av->pool, calls, av->cfg->hedge_ms,
                           av->cfg->call_deadline_ms, &winner, rv);
    for (int i = 0; i < 2; i++)
        kt_slot_take(jobs[i], &res[order[i]]);
    if (hedged == CKR_OK) {
        *key = res[order[winner]].key;
        res[order[winner]].key = NULL;
        return KEYTIER_OK;
    }
    for (int i = 0; i < 2; i++) {
        struct kt_slot_result *r = &res[order[i]];
        /* A leg not taken (timed out, never started, refused as hung)
         * carries the pool's code instead of the token's. */
        if (r->rv == KT_CKR_NOT_STARTED || rv[i] == KT_CKR_TIMEOUT ||
            rv[i] == KT_CKR_TOKEN_HUNG) {
            r->rv = rv[i];
            char name[KT_CKR_NAME_MAX];
            /* A URI too long for the detail is cut, and the cut shown. */
            if (snprintf(r->detail, sizeof r->detail, "%s %s: %s",
                         order[i] == KEYTIER_ROOT_A ? "customer key A"
                                                    : "customer key B",
                         dep->roots[order[i]].uri,
                         kt_ckr_name(rv[i], name)) >= (int)sizeof r->detail)
                memcpy(r->detail + sizeof r->detail - 4, "...", 4);
        }
        if (rv[i] == KT_CKR_TIMEOUT)
            atomic_fetch_add(&av->timeouts, 1);
        if (rv[i] == KT_CKR_TIMEOUT || rv[i] == KT_CKR_TOKEN_HUNG)
            kt_avail_count_timeout(av, dep->roots[order[i]].uri);
    }
    return KEYTIER_E_UNWRAP;
}

/* ---- the cache's refresh --------------------------------------------- */

CK_RV kt_avail_refresh(void *arg, const char *id, const char *dep_id,
                       unsigned char *out, size_t *out_len)
{
    struct kt_avail *av = arg;
    struct kt_dep_rec *dep = malloc(sizeof *dep);
    struct kt_slot_result res[2];
    kt_secret *key = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;

    (void)id;
    if (!dep)
        return CKR_HOST_MEMORY;
    if (kt_store_dep_get(av->ctx->store, dep_id, dep) != KEYTIER_OK) {
        /* The DEP is gone from the store: nothing to serve. */
        free(dep);
        return KT_CKR_NO_MATCH;
    }
    keytier_err e = kt_avail_customer_read(av, dep, &key, res);
    if (e == KEYTIER_OK) {
        if (kt_secret_len(key) <= KT_CACHE_KEY_MAX) {
            memcpy(out, kt_secret_cdata(key), kt_secret_len(key));
            *out_len = kt_secret_len(key);
            rv = CKR_OK;
        }
        kt_secret_free(key);
    } else if (e == KEYTIER_E_UNWRAP) {
        kt_fallback_in in = {
            .kind = KT_FALLBACK_REFRESH,
            .key_a = kt_fallback_key_state(res[KEYTIER_ROOT_A].rv),
            .key_b = kt_fallback_key_state(res[KEYTIER_ROOT_B].rv),
        };
        /* The cache evicts on a "denied" code and keeps the entry (and
         * retries) on a "system" one: hand it the code of the verdict. */
        bool revoked = kt_fallback_decide(&in) == KT_FALLBACK_DENY_REVOKED;
        rv = res[KEYTIER_ROOT_A].rv;
        if (revoked && in.key_a != KT_FALLBACK_KEY_DENIED)
            rv = res[KEYTIER_ROOT_B].rv;
        /* and every other process drops it too */
        if (revoked && kt_store_inval_publish(av->ctx->store, KT_INVAL_DEP,
                                              dep_id, "revoked") != KEYTIER_OK)
            kt_log_event(av->ctx->log, KT_LOG_ERROR,
                         "revocation not published to other processes", dep_id);
    }
    kt_secret_free(res[0].key);
    kt_secret_free(res[1].key);
    free(dep);
    return rv;
}

/* ---- the read path ---------------------------------------------------- */

static void kt_avail_key_errors(const struct kt_dep_rec *dep,
                                const struct kt_slot_result res[2],
                                kt_audit_key_error errs[2])
{
    errs[0] = (kt_audit_key_error){"A", dep->roots[KEYTIER_ROOT_A].uri,
                                   res[KEYTIER_ROOT_A].rv};
    errs[1] = (kt_audit_key_error){"B", dep->roots[KEYTIER_ROOT_B].uri,
                                   res[KEYTIER_ROOT_B].rv};
}

/* One read between its steps: the request, both customer keys' outcomes,
 * the rule's input, and the audit record's fields. */
struct kt_read {
    keytier_ctx *ctx;
    struct kt_avail *av;
    const struct kt_dep_rec *dep;
    const keytier_request *req;
    bool rewrap; /* the caller asked for KT_FALLBACK_OP_REWRAP */
    struct kt_slot_result res[2];
    kt_fallback_in in;
    kt_audit_key_error errs[2];
    kt_audit_request areq;
    char req_id[40];
};

/* A read names who asks and why: a user no operation, an internal
 * request one of the fixed set; a rewrap is always the service's own. */
static keytier_err kt_read_check(const struct kt_read *r)
{
    const keytier_request *req = r->req;
    bool named = req && keytier_internal_op_name(req->operation) != NULL;

    /* lifecycle: a purged tenant's DEP has no copies and no roots left. */
    if (r->dep->state == KEYTIER_DEP_PURGED)
        return kt_err(KEYTIER_E_PURGED, "DEP %s of tenant %s was purged",
                      r->dep->dep_id, r->dep->tenant);
    if (r->rewrap) {
        if (!req || req->kind != KEYTIER_REQUEST_INTERNAL || !named)
            return kt_err(KEYTIER_E_ARGS,
                          "a read for a rewrap is an internal request "
                          "naming its operation");
    } else {
        if (!req || (req->kind != KEYTIER_REQUEST_USER &&
                     req->kind != KEYTIER_REQUEST_INTERNAL))
            return kt_err(KEYTIER_E_ARGS, "a request must say its kind");
        if (req->kind == KEYTIER_REQUEST_INTERNAL && !named)
            return kt_err(KEYTIER_E_ARGS,
                          "an internal request must name its operation, one "
                          "of the set (keytier_internal_op), not %d",
                          (int)req->operation);
        if (req->kind == KEYTIER_REQUEST_USER &&
            req->operation != KEYTIER_INTERNAL_NONE)
            return kt_err(KEYTIER_E_ARGS,
                          "a user request names no internal operation");
    }
    if (req->approval_id && !kt_text_ok(req->approval_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "approval id: at most %d bytes",
                      KEYTIER_ID_SIZE - 1);
    if (!r->av)
        return kt_err(KEYTIER_E_INTERNAL, "availability state not open");
    return KEYTIER_OK;
}

/* The cache's one lookup of this read: done here unless the caller has
 * done it already (fill), never for a rewrap.  True on a hit. */
static bool kt_read_cached(struct kt_read *r, const char *cache_id,
                           const struct kt_avail_fill *fill, kt_secret **out,
                           keytier_err *e)
{
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len;

    if (fill || r->rewrap ||
        !kt_avail_cache_hit(r->ctx, cache_id, buf, sizeof buf, &len, NULL, 0,
                            NULL, NULL, true))
        return false;
    *out = kt_secret_from(buf, len);
    kt_wipe(buf, sizeof buf);
    *e = *out ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, "DEP key");
    return true;
}

/* A customer key unwrapped it: into the cache when the caller fills it
 * (a rewrap neither looks the cache up nor fills it). */
static void kt_read_fill(const struct kt_read *r, const char *cache_id,
                         const struct kt_avail_fill *fill, const kt_secret *key)
{
    const struct kt_dep_rec *dep = r->dep;

    if (!r->av->cache || !fill || r->rewrap)
        return;
    kt_cache_tags tags = {
        .org_id = dep->tenant,
        .dep_id = dep->dep_id,
        .roots = {dep->roots[0].uri, dep->roots[1].uri, dep->roots[2].uri},
        .aux = fill->aux,
        .aux_len = fill->aux_len,
        .epoch = &fill->epoch,
    };
    if (kt_cache_put(r->av->cache, cache_id, &tags, kt_secret_cdata(key),
                     kt_secret_len(key)) != KEYTIER_OK)
        kt_log_event(r->ctx->log, KT_LOG_WARNING, "DEP key not cached",
                     dep->dep_id);
}

/* Both customer keys failed: the rule's input, and the audit record's
 * fields should the verdict need one. */
static keytier_err kt_read_failed(struct kt_read *r, kt_fallback_op op)
{
    const keytier_request *req = r->req;
    const struct kt_dep_rec *dep = r->dep;
    bool internal = req->kind == KEYTIER_REQUEST_INTERNAL;

    r->in = (kt_fallback_in){
        .kind = internal ? KT_FALLBACK_INTERNAL : KT_FALLBACK_USER,
        .op = internal ? op : KT_FALLBACK_OP_READ,
        .internal = internal ? req->operation : KEYTIER_INTERNAL_NONE,
        .shape = kt_avail_shape(r->ctx, dep->workload),
        .outage_fallback = kt_avail_outage_fallback(r->ctx, dep->workload),
        .approved = false,
        .key_a = kt_fallback_key_state(r->res[KEYTIER_ROOT_A].rv),
        .key_b = kt_fallback_key_state(r->res[KEYTIER_ROOT_B].rv),
        .avail = KT_FALLBACK_AVAIL_UNTRIED,
    };
    if (!req->request_id || !req->request_id[0]) {
        uint8_t rid[KT_UUID_BYTES];
        if (!kt_uuid_new(rid))
            return kt_err(KEYTIER_E_CRYPTO, "request id");
        kt_uuid_format(rid, r->req_id);
    } else {
        snprintf(r->req_id, sizeof r->req_id, "%s", req->request_id);
    }
    r->areq = (kt_audit_request){
        .workload = dep->workload,
        .org_id = dep->tenant,
        .dep_id = dep->dep_id,
        .policy_id = dep->policy_id,
        .request_id =
            req->request_id && req->request_id[0] ? req->request_id : r->req_id,
        .kind = internal ? "internal" : "user",
        .operation = internal ? keytier_internal_op_name(req->operation) : NULL,
    };
    kt_avail_key_errors(dep, r->res, r->errs);
    return KEYTIER_OK;
}

/* A refused read is counted; a revoked one is audited as denied. */
static void kt_read_count_refusal(struct kt_read *r, kt_fallback_verdict v)
{
    if (v != KT_FALLBACK_DENY_REVOKED) {
        atomic_fetch_add(&r->av->unavailable, 1);
        return;
    }
    atomic_fetch_add(&r->av->denied, 1);
    if (kt_audit_denied(r->av->audit, &r->areq, r->errs) != KEYTIER_OK)
        kt_log_event(r->ctx->log, KT_LOG_ERROR,
                     "audit record of a denied request not written",
                     r->dep->dep_id);
}

/* The verdict is a refusal, before the availability key: counted, audited
 * when revoked, and explained with both customer keys' errors. */
static keytier_err kt_read_refuse(struct kt_read *r, kt_fallback_verdict v)
{
    const struct kt_dep_rec *dep = r->dep;
    const char *a = r->res[KEYTIER_ROOT_A].detail;
    const char *b = r->res[KEYTIER_ROOT_B].detail;

    kt_read_count_refusal(r, v);
    if (r->rewrap && v == KT_FALLBACK_DENY_REVOKED)
        return kt_err(KEYTIER_E_REVOKED,
                      "DEP %s: the customer revoked its keys; %s refused (it "
                      "never uses the availability key): [A] %s; [B] %s",
                      dep->dep_id, r->areq.operation, a, b);
    if (r->rewrap)
        return kt_err(KEYTIER_E_UNAVAILABLE,
                      "DEP %s: %s needs a customer key and neither answers "
                      "(retry when one does): [A] %s; [B] %s",
                      dep->dep_id, r->areq.operation, a, b);
    if (v == KT_FALLBACK_DENY_REVOKED)
        return kt_err(KEYTIER_E_REVOKED, "DEP %s: [A] %s; [B] %s", dep->dep_id,
                      a, b);
    return kt_err(KEYTIER_E_UNAVAILABLE,
                  "DEP %s (workload %s, no outage fallback): [A] %s; [B] %s",
                  dep->dep_id, dep->workload, a, b);
}

/* The verdict is the availability key: unwrapped on the pool, audited as
 * a fallback before the key is handed out (no unaudited use of it), never
 * cached.  If it fails, the rule decides again. */
static keytier_err kt_read_avail(struct kt_read *r, kt_secret **out)
{
    struct kt_avail *av = r->av;
    const struct kt_dep_rec *dep = r->dep;
    struct kt_slot_result res;
    struct kt_slot_job *job;
    kt_call call;
    CK_RV rv;
    keytier_err e;

    memset(&res, 0, sizeof res);
    res.err = KEYTIER_E_UNAVAILABLE;
    job = kt_slot_job_new(av, dep, KEYTIER_ROOT_AVAIL, &call);
    if (!job)
        return kt_err(KEYTIER_E_NOMEM, "DEP %s", dep->dep_id);
    rv = kt_pool_run(av->pool, &call, av->cfg->call_deadline_ms);
    kt_slot_take(job, &res);
    if (rv != CKR_OK) {
        char name[KT_CKR_NAME_MAX];
        kt_fallback_verdict v;
        if (rv == KT_CKR_TIMEOUT)
            atomic_fetch_add(&av->timeouts, 1);
        if (rv == KT_CKR_TIMEOUT || rv == KT_CKR_TOKEN_HUNG)
            kt_avail_count_timeout(av, dep->roots[KEYTIER_ROOT_AVAIL].uri);
        r->in.avail = KT_FALLBACK_AVAIL_FAILED;
        v = kt_fallback_decide(&r->in);
        if (v == KT_FALLBACK_DENY_REVOKED) {
            atomic_fetch_add(&av->denied, 1);
            if (kt_audit_denied(av->audit, &r->areq, r->errs) != KEYTIER_OK)
                kt_log_event(r->ctx->log, KT_LOG_ERROR,
                             "audit record of a denied request not written",
                             dep->dep_id);
        }
        kt_secret_free(res.key);
        return kt_err(v == KT_FALLBACK_DENY_REVOKED ? KEYTIER_E_REVOKED
                                                    : KEYTIER_E_UNAVAILABLE,
                      "DEP %s: [A] %s; [B] %s; availability key: %s",
                      dep->dep_id, r->res[KEYTIER_ROOT_A].detail,
                      r->res[KEYTIER_ROOT_B].detail,
                      res.detail[0] ? res.detail : kt_ckr_name(rv, name));
    }
    e = kt_audit_fallback(av->audit, &r->areq, r->errs);
    if (e != KEYTIER_OK) {
        kt_secret_free(res.key);
        return e;
    }
    atomic_fetch_add(&av->fallbacks, 1);
    if (av->cache)
        kt_cache_count_fallback(av->cache);
    kt_log_event(r->ctx->log, KT_LOG_WARNING, "fallback to availability key",
                 dep->dep_id);
    *out = res.key;
    return KEYTIER_OK;
}

/* The rule asks for an approval (files shape): the request's is used
 * through trust/'s gate - for this operation, the DEP's tenant and the DEP
 * as scope - before the availability key is touched, and the fallback
 * record names it.  Refused: counted (and audited when revoked) with the
 * gate's error. */
static keytier_err kt_read_approve(struct kt_read *r, kt_fallback_verdict *v)
{
    const struct kt_dep_rec *dep = r->dep;
    kt_avail_gate_fn gate = r->av->gate;
    keytier_err e;

    e = gate ? gate(r->ctx, KEYTIER_APPROVAL_FILES_AVAIL_READ, dep->tenant,
                    dep->dep_id, r->req->approval_id,
                    "a files-workload read through the availability key")
             : kt_err(KEYTIER_E_APPROVAL_REQUIRED,
                      "DEP %s: no approvals in this context", dep->dep_id);
    if (e != KEYTIER_OK) {
        /* the gate's detail is the caller's answer, whatever the audit
         * record of the refusal leaves behind */
        char saved[KT_DETAIL_MAX * 2];
        snprintf(saved, sizeof saved, "%s", keytier_last_error_detail());
        kt_read_count_refusal(r, kt_fallback_revocation_seen(&r->in)
                                     ? KT_FALLBACK_DENY_REVOKED
                                     : KT_FALLBACK_DENY_UNAVAILABLE);
        kt_err_restore(saved);
        return e;
    }
    r->in.approved = true;
    r->areq.approval_id = r->req->approval_id;
    *v = kt_fallback_decide(&r->in);
    return KEYTIER_OK;
}

/* Both customer keys failed: the rule's verdict carried out. */
static keytier_err kt_read_decide(struct kt_read *r, kt_fallback_op op,
                                  kt_secret **out)
{
    kt_fallback_verdict v;
    keytier_err e = kt_read_failed(r, op);

    if (e != KEYTIER_OK)
        return e;
    v = kt_fallback_decide(&r->in);
    /* A revocation seen here empties the caches of every process (whether
     * or not this request may fall back). */
    if (kt_fallback_revocation_seen(&r->in))
        kt_avail_publish(r->ctx, KT_INVAL_DEP, r->dep->dep_id, "revoked");
    if (v == KT_FALLBACK_NEED_APPROVAL) {
        e = kt_read_approve(r, &v);
        if (e != KEYTIER_OK)
            return e;
    }
    if (v != KT_FALLBACK_USE_AVAIL)
        return kt_read_refuse(r, v);
    return kt_read_avail(r, out);
}

keytier_err kt_dep_key_read(keytier_ctx *ctx, const struct kt_dep_rec *dep,
                            const keytier_request *req, kt_fallback_op op,
                            const struct kt_avail_fill *fill, kt_secret **out)
{
    struct kt_read read = {.ctx = ctx,
                           .av = ctx->avail,
                           .dep = dep,
                           .req = req,
                           .rewrap = op == KT_FALLBACK_OP_REWRAP};
    struct kt_read *r = &read;
    char cache_id[KT_AVAIL_CACHE_ID];
    kt_secret *key = NULL;
    struct kt_dep_rec *fresh = NULL;
    keytier_err e;

    *out = NULL;
    e = kt_read_check(r);
    /* lifecycle: a registration or roll a dead process left half done */
    if (e == KEYTIER_OK)
        e = kt_dep_settle(ctx, dep, &fresh, NULL);
    if (e != KEYTIER_OK)
        goto out;
    if (fresh)
        r->dep = dep = fresh;
    kt_avail_cache_id(cache_id, "dep:", dep->dep_id);
    if (kt_read_cached(r, cache_id, fill, out, &e))
        goto out;
    e = kt_avail_customer_read(r->av, dep, &key, r->res);
    if (e == KEYTIER_OK) {
        kt_read_fill(r, cache_id, fill, key);
        *out = key;
    } else if (e == KEYTIER_E_UNWRAP) {
        e = kt_read_decide(r, op, out);
    }
out:
    kt_secret_free(r->res[0].key);
    kt_secret_free(r->res[1].key);
    if (fresh) {
        kt_wipe(fresh, sizeof *fresh);
        free(fresh);
    }
    return e;
}
