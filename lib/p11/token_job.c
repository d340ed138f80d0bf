/*
 * Token work with a deadline: every token call of the library (DEP key
 * reads and their hedged pair, DEP creation, roll, purge, keyset keys,
 * administration, the audit anchor's MAC) runs as a job on the context's
 * call pool and its caller waits at most a deadline.  PKCS#11 calls cannot be
 * cancelled, so a late job keeps running on its worker: it owns everything
 * it touches (its struct, copies of keys and URIs), holds the context
 * (kt_calls_hold), and undoes a success nobody took (undo hook).  The
 * caller's reference and the pool's are counted; the last one frees.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call_pool.h"
#include "ckr_class.h"
#include "kt_lib.h"

void *kt_tjob_new(keytier_ctx *ctx, size_t size,
                  keytier_err (*run)(struct kt_tjob *job))
{
    struct kt_tjob *j;

    if (size < sizeof *j)
        return NULL;
    j = calloc(1, size);
    if (j == NULL)
        return NULL;
    j->ctx = ctx;
    j->run = run;
    atomic_init(&j->refs, 1);
    kt_calls_hold(&ctx->calls);
    return j;
}

void kt_tjob_put(struct kt_tjob *j)
{
    keytier_ctx *ctx;

    if (j == NULL || atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    ctx = j->ctx;
    if (j->cleanup)
        j->cleanup(j);
    free(j);
    kt_calls_release(&ctx->calls); /* may end a closed context */
}

/* Runs the work and keeps its error and detail in the job (the detail is
 * thread-local: the worker's is not the caller's). */
static KT_NODISCARD CK_RV kt_tjob_call_run(void *p)
{
    struct kt_tjob *j = p;

    kt_err_clear();
    j->rv = CKR_OK;
    j->err = j->run(j);
    if (j->err != KEYTIER_OK)
        snprintf(j->detail, sizeof j->detail, "%s",
                 keytier_last_error_detail());
    return j->err == KEYTIER_OK ? CKR_OK : kt_ckr_from_err(j->err, j->rv);
}

static void kt_tjob_call_accept(void *p, CK_RV rv)
{
    struct kt_tjob *j = p;

    (void)rv;
    j->taken = true;
}

static void kt_tjob_call_discard(void *p, CK_RV rv)
{
    struct kt_tjob *j = p;

    (void)rv;
    if (j->err == KEYTIER_OK && j->undo)
        j->undo(j);
}

static void kt_tjob_call_release(void *p)
{
    kt_tjob_put(p);
}

void kt_tjob_call(struct kt_tjob *j, const char *what, const char *uri,
                  kt_call *call)
{
    atomic_fetch_add(&j->refs, 1); /* the pool's, dropped by release */
    *call = (kt_call){.name = what,
                      .token = kt_uri_token_id(uri),
                      .run = kt_tjob_call_run,
                      .accept = kt_tjob_call_accept,
                      .discard = kt_tjob_call_discard,
                      .release = kt_tjob_call_release,
                      .ctx = j};
}

CK_RV kt_tjob_start(struct kt_tjob *j, const char *what, const char *uri,
                    unsigned deadline_ms)
{
    keytier_ctx *ctx = j->ctx;
    kt_call call;
    CK_RV rv;

    if (kt_pool_on_worker() || ctx->pool == NULL) {
        /* Already on a worker (bounded by its own caller): inline. */
        rv = kt_tjob_call_run(j);
        j->taken = true;
        return rv;
    }
    kt_tjob_call(j, what, uri, &call);
    return kt_pool_run(ctx->pool, &call, deadline_ms);
}

keytier_err kt_tjob_run(struct kt_tjob *j, const char *what, const char *uri,
                        unsigned deadline_ms)
{
    char name[KT_CKR_NAME_MAX];
    CK_RV rv = kt_tjob_start(j, what, uri, deadline_ms);

    if (!j->taken) {
        if (rv == KT_CKR_TOKEN_HUNG)
            return kt_err(KEYTIER_E_UNAVAILABLE,
                          "%s %s: its token has calls hung past their "
                          "deadline; not asked again until they return",
                          what, uri);
        if (rv == KT_CKR_TIMEOUT || rv == KT_CKR_NOT_STARTED)
            return kt_err(KEYTIER_E_UNAVAILABLE,
                          "%s %s: the token did not answer within %u ms", what,
                          uri, deadline_ms);
        return kt_err(KEYTIER_E_NOMEM, "%s %s: %s", what, uri,
                      kt_ckr_name(rv, name));
    }
    if (j->err != KEYTIER_OK) {
        /* The detail reads "<message>: <text>"; kt_err adds the message
         * again on this thread. */
        const char *d = j->detail;
        const char *m = keytier_strerror(j->err);
        size_t ml = strlen(m);
        if (!strncmp(d, m, ml) && d[ml] == ':' && d[ml + 1] == ' ')
            d += ml + 2;
        return kt_err(j->err, "%s", d);
    }
    return KEYTIER_OK;
}

/* FNV-1a of the URI's "token=" attribute: the pool only compares them. */
uint64_t kt_uri_token_id(const char *uri)
{
    const char *t = strstr(uri, "token=");
    uint64_t h = 1469598103934665603ull;
    size_t n;

    if (!t)
        t = uri;
    n = strcspn(t, ";?");
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)t[i];
        h *= 1099511628211ull;
    }
    return h;
}

bool kt_uri_token_attr(const char *uri, char *raw, size_t raw_cap, char *name,
                       size_t cap)
{
    const char *t = uri, *v;
    size_t n = 0, len;

    if (strncmp(uri, "pkcs11:", 7))
        return false;
    for (t = uri + 7; strncmp(t, "token=", 6);) {
        t += strcspn(t, ";?");
        if (*t != ';')
            return false;
        t++;
    }
    v = t + 6;
    len = strcspn(v, ";?");
    if (raw && raw_cap) {
        size_t k = len < raw_cap - 1 ? len : raw_cap - 1;
        memcpy(raw, v, k);
        raw[k] = '\0';
    }
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned x;
        if (v[i] == '%' && i + 2 < len + 1 &&
            sscanf(v + i + 1, "%2x", &x) == 1) {
            name[n++] = (char)x;
            i += 2;
        } else {
            name[n++] = v[i];
        }
    }
    if (cap)
        name[n] = '\0';
    return true;
}

/* ---- a job on one root key ------------------------------------------- */

static keytier_err kt_root_job_work(struct kt_tjob *tj)
{
    struct kt_root_job *j = (struct kt_root_job *)tj;
    struct kt_root root;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;

    memset(&root, 0, sizeof root);
    keytier_err e =
        kt_root_resolve(tj->ctx, j->what, j->uri, j->for_wrap, &root, &s, &rv);
    if (e == KEYTIER_OK) {
        if (j->op)
            e = j->op(j, &root, s, &rv);
        kt_session_put(root.tok, s, rv);
    }
    tj->rv = rv;
    return e;
}

void *kt_root_job_new(keytier_ctx *ctx, size_t size, const char *what,
                      const char *uri, bool for_wrap,
                      keytier_err (*op)(struct kt_root_job *job,
                                        const struct kt_root *root,
                                        CK_SESSION_HANDLE s, CK_RV *rv))
{
    struct kt_root_job *j;

    if (size < sizeof *j || strlen(uri) >= sizeof j->uri)
        return NULL;
    j = kt_tjob_new(ctx, size, kt_root_job_work);
    if (j == NULL)
        return NULL;
    j->what = what;
    kt_strlcpy(j->uri, uri, sizeof j->uri);
    j->for_wrap = for_wrap;
    j->op = op;
    return j;
}

keytier_err kt_root_job_run(struct kt_root_job *j, unsigned deadline_ms)
{
    return kt_tjob_run(&j->base, j->what, j->uri, deadline_ms);
}
