/*
 * keytier_ops_health_check (keytier.h, docs/DESIGN.md §2 "Operations"):
 * every token the context depends on probed on the call pool within the
 * call deadline, the store asked its schema version, the audit log
 * verified with its anchor, the published counters read; then the verdict
 * from what was found.  Here because it spans the areas (p11, store,
 * audit, avail).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckr_class.h"
#include "kt_lib.h"
#include "token.h"

/* A token to probe, beside its keytier_token_probe: how its URIs name it
 * (the token= text as written, percent-encoding kept). */
struct kt_probe_tok {
    char raw[KEYTIER_URI_MAX];
};

/* Probe job: the token found and a logged-in session opened. */
struct kt_probe_job {
    struct kt_tjob base;
    char uri[KEYTIER_URI_MAX + 16]; /* "pkcs11:token=" and the raw text */
};

static keytier_err kt_probe_work(struct kt_tjob *tj)
{
    struct kt_probe_job *j = (struct kt_probe_job *)tj;
    struct kt_token *tok;
    CK_SESSION_HANDLE s;
    keytier_err e = kt_token_find(tj->ctx, j->uri, &tok);

    if (e == KEYTIER_OK) {
        e = kt_session_get(tok, &s, &tj->rv);
        if (e == KEYTIER_OK)
            kt_session_put(tok, s, CKR_OK);
    }
    return e;
}

/* Probes one token; fills reachable, latency and the failure. */
static void kt_probe_one(keytier_ctx *ctx, const char *raw,
                         keytier_token_probe *p)
{
    char name[KT_CKR_NAME_MAX];
    unsigned deadline = kt_call_deadline_ms(ctx);
    struct kt_probe_job *j = kt_tjob_new(ctx, sizeof *j, kt_probe_work);
    CK_RV rv = CKR_HOST_MEMORY;
    uint64_t t0 = kt_now_ns();

    if (j) {
        snprintf(j->uri, sizeof j->uri, "pkcs11:token=%s", raw);
        rv = kt_tjob_start(&j->base, "probe", j->uri, deadline);
        if (j->base.taken && j->base.err != KEYTIER_OK)
            snprintf(p->detail, sizeof p->detail, "%s", j->base.detail);
        /* Not found while a module hangs: it may be that module's token,
         * which did not answer its scan within the deadline. */
        if (j->base.taken &&
            (j->base.err == KEYTIER_E_TOKEN_NOT_FOUND ||
             j->base.err == KEYTIER_E_UNAVAILABLE) &&
            kt_tokens_hung_calls(ctx) > 0)
            rv = KT_CKR_TIMEOUT;
        kt_tjob_put(&j->base);
    }
    p->latency_us = (kt_now_ns() - t0) / 1000;
    p->reachable = rv == CKR_OK;
    if (p->reachable)
        return;
    snprintf(p->error, sizeof p->error, "%s", kt_ckr_name(rv, name));
    if (rv == KT_CKR_TIMEOUT || rv == KT_CKR_TOKEN_HUNG ||
        rv == KT_CKR_NOT_STARTED) {
        p->error_class = KEYTIER_CLASS_TIMEOUT;
        if (!p->detail[0])
            snprintf(p->detail, sizeof p->detail,
                     "token '%s' did not answer within %u ms", p->token,
                     deadline);
    } else {
        p->error_class = kt_ckr_classify(rv) == KT_CKR_CLASS_DENIED
                             ? KEYTIER_CLASS_DENIED
                             : KEYTIER_CLASS_SYSTEM;
    }
}

/* The entry of the token a URI names, added when new (with role), else
 * given role too; NULL when the URI names no token or memory runs out. */
static struct kt_probe_tok *kt_probe_add(keytier_ops_health *h,
                                         struct kt_probe_tok **toks,
                                         const char *uri, unsigned role)
{
    char raw[KEYTIER_URI_MAX], name[KEYTIER_OPS_TOKEN_MAX + 1];

    if (!uri || !kt_uri_token_attr(uri, raw, sizeof raw, name, sizeof name))
        return NULL;
    for (size_t i = 0; i < h->n_tokens; i++)
        if (!strcmp(h->tokens[i].token, name)) {
            h->tokens[i].roles |= role;
            return &(*toks)[i];
        }
    keytier_token_probe *np =
        realloc(h->tokens, (h->n_tokens + 1) * sizeof *np);
    if (np)
        h->tokens = np;
    struct kt_probe_tok *nt =
        np ? realloc(*toks, (h->n_tokens + 1) * sizeof *nt) : NULL;
    if (!nt)
        return NULL;
    *toks = nt;
    memset(&np[h->n_tokens], 0, sizeof *np);
    kt_strlcpy(np[h->n_tokens].token, name, sizeof np->token);
    np[h->n_tokens].roles = role;
    kt_strlcpy(nt[h->n_tokens].raw, raw, sizeof nt->raw);
    return &nt[h->n_tokens++];
}

/* The URI "pkcs11:token=LABEL" of a configured PIN's label, encoded. */
static void kt_label_uri(const char *label, char *out, size_t cap)
{
    size_t n = snprintf(out, cap, "pkcs11:token=");
    for (const unsigned char *c = (const unsigned char *)label;
         *c && n + 4 < cap; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || strchr("-._~", *c))
            out[n++] = (char)*c;
        else
            n += snprintf(out + n, cap - n, "%%%02X", *c);
    }
    out[n] = '\0';
}

static void kt_reason(keytier_ops_health *h, keytier_ops_status st,
                      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kt_reason(keytier_ops_health *h, keytier_ops_status st,
                      const char *fmt, ...)
{
    va_list ap;
    if (st > h->status)
        h->status = st;
    if (h->n_reasons == KEYTIER_OPS_REASONS)
        return;
    va_start(ap, fmt);
    vsnprintf(h->reasons[h->n_reasons++], sizeof h->reasons[0], fmt, ap);
    va_end(ap);
}

/* The store asked its schema version, timed. */
static void kt_health_store(keytier_ctx *ctx, keytier_ops_health *h)
{
    uint64_t t0 = kt_now_ns();

    h->store_schema = kt_store_schema_version(ctx->store);
    h->store_latency_us = (kt_now_ns() - t0) / 1000;
    h->store_reachable = h->store_schema >= 0;
    kt_strlcpy(h->store_engine,
               kt_config_store_is_pg(ctx->cfg.store_path) ? "postgresql"
                                                          : "sqlite",
               sizeof h->store_engine);
    if (!h->store_reachable)
        kt_reason(h, KEYTIER_OPS_CRITICAL, "store (%s) unreachable: %s",
                  h->store_engine, keytier_last_error_detail());
}

/* Every token the context depends on, probed; *refs the DEPs' roots and
 * *at the index of each one's token (-1: its URI names none). */
static keytier_err kt_health_tokens(keytier_ctx *ctx, keytier_ops_health *h,
                                    struct kt_dep_root_ref **refs, size_t *nref,
                                    long **at)
{
    struct kt_probe_tok *toks = NULL;
    char uri[KEYTIER_URI_MAX];
    keytier_err e = KEYTIER_OK;

    if (h->store_reachable &&
        kt_store_dep_root_refs(ctx->store, refs, nref) != KEYTIER_OK)
        kt_reason(h, KEYTIER_OPS_DEGRADED,
                  "the DEPs' root keys could not be listed: %s",
                  keytier_last_error_detail());
    *at = calloc(*nref ? *nref : 1, sizeof **at);
    if (!*at)
        return kt_err(KEYTIER_E_NOMEM, "health");
    for (size_t i = 0; i < *nref; i++) {
        unsigned role = (*refs)[i].slot == KEYTIER_ROOT_AVAIL
                            ? KEYTIER_TOKEN_ROLE_AVAIL
                            : KEYTIER_TOKEN_ROLE_CUSTOMER;
        struct kt_probe_tok *t = kt_probe_add(h, &toks, (*refs)[i].uri, role);
        (*at)[i] = t ? (long)(t - toks) : -1;
    }
    kt_probe_add(h, &toks, ctx->cfg.service_token, KEYTIER_TOKEN_ROLE_SERVICE);
    for (size_t i = 0; i < ctx->cfg.n_pins; i++) {
        kt_label_uri(ctx->cfg.pins[i].label, uri, sizeof uri);
        kt_probe_add(h, &toks, uri, KEYTIER_TOKEN_ROLE_CONFIGURED);
    }
    for (size_t i = 0; i < *nref; i++) {
        bool again = (*at)[i] < 0;
        for (size_t k = i; !again && k-- > 0 &&
                           !strcmp((*refs)[k].dep_id, (*refs)[i].dep_id);)
            again = (*at)[k] == (*at)[i];
        if (!again)
            h->tokens[(*at)[i]].deps++;
    }
    for (size_t i = 0; i < h->n_tokens; i++)
        kt_probe_one(ctx, toks[i].raw, &h->tokens[i]);
    free(toks);
    return e;
}

/* Per DEP (its roots are consecutive in refs): none of its tokens answered
 * (critical: its reads fail), or a customer token did not (degraded). */
static void kt_health_deps(keytier_ops_health *h,
                           const struct kt_dep_root_ref *refs, size_t n,
                           const long *at)
{
    for (size_t i = 0; i < n;) {
        size_t k = i;
        bool any = false, customer_down = false;
        for (; k < n && !strcmp(refs[k].dep_id, refs[i].dep_id); k++) {
            bool up = at[k] >= 0 && h->tokens[at[k]].reachable;
            any |= up;
            customer_down |= !up && refs[k].slot != KEYTIER_ROOT_AVAIL;
        }
        h->deps++;
        if (!any && h->deps_dark++ < 4)
            kt_reason(h, KEYTIER_OPS_CRITICAL,
                      "DEP %s: no token of its keys answers: its reads fail",
                      refs[i].dep_id);
        else if (customer_down)
            h->deps_degraded++;
        i = k;
    }
}

/* The context's audit log with its anchor. */
static void kt_health_audit(keytier_ctx *ctx, keytier_ops_health *h)
{
    h->audit = keytier_audit_verify_anchored(ctx, NULL, &h->audit_report);
    if (h->audit == KEYTIER_OK || h->audit == KEYTIER_E_AUDIT_EMPTY)
        return;
    kt_strlcpy(h->audit_detail, keytier_last_error_detail(),
               sizeof h->audit_detail);
    if (h->audit == KEYTIER_E_AUDIT_TAMPERED)
        kt_reason(h, KEYTIER_OPS_CRITICAL, "audit log altered at line %llu: %s",
                  (unsigned long long)h->audit_report.bad_line,
                  h->audit_detail);
    else if (h->audit == KEYTIER_E_AUDIT_UNANCHORED)
        kt_reason(h, KEYTIER_OPS_DEGRADED,
                  "audit log intact, %llu newest records not anchored",
                  (unsigned long long)h->audit_report.unanchored);
    else
        kt_reason(h, KEYTIER_OPS_DEGRADED, "audit log not checked: %s [%s]",
                  h->audit_detail, keytier_error_name(h->audit));
}

/* The published counters: stale publishers, active cache alerts. */
static void kt_health_nodes(keytier_ctx *ctx, keytier_ops_health *h)
{
    keytier_node_stats *ns = NULL;
    size_t n = 0;

    if (!h->store_reachable)
        return;
    if (keytier_node_stats_list(ctx, &ns, &n) != KEYTIER_OK) {
        kt_reason(h, KEYTIER_OPS_DEGRADED, "published counters unread: %s",
                  keytier_last_error_detail());
        return;
    }
    h->nodes = n;
    for (size_t i = 0; i < n; i++) {
        h->cache_alerts_active += ns[i].avail.cache_alerts_active;
        if (ns[i].stale && h->nodes_stale++ < 4)
            kt_reason(h, KEYTIER_OPS_DEGRADED,
                      "node %s, process %lld: counters %lld s old "
                      "(published every %lld ms): hung or killed",
                      ns[i].node, (long long)ns[i].pid,
                      (long long)(ns[i].age_ms / 1000),
                      (long long)ns[i].interval_ms);
    }
    if (h->cache_alerts_active)
        kt_reason(h, KEYTIER_OPS_DEGRADED,
                  "%llu cached DEP keys alerted: their refresh fails",
                  (unsigned long long)h->cache_alerts_active);
    keytier_node_stats_free(ns, n);
}

static void kt_health_token_reasons(keytier_ops_health *h)
{
    for (size_t i = 0; i < h->n_tokens; i++) {
        const keytier_token_probe *p = &h->tokens[i];
        if (!p->reachable)
            kt_reason(h, KEYTIER_OPS_DEGRADED,
                      "token '%s' unreachable (%s, %s)", p->token, p->error,
                      keytier_error_class_name(p->error_class));
    }
}

KEYTIER_API keytier_err keytier_ops_health_check(keytier_ctx *ctx,
                                                 keytier_ops_health *out)
{
    struct kt_dep_root_ref *refs = NULL;
    size_t nref = 0;
    long *at = NULL;

    kt_err_clear();
    if (!ctx || !out)
        return kt_err(KEYTIER_E_ARGS, "health: context or output missing");
    memset(out, 0, sizeof *out);
    kt_health_store(ctx, out);
    keytier_err e = kt_health_tokens(ctx, out, &refs, &nref, &at);
    if (e == KEYTIER_OK) {
        kt_health_deps(out, refs, nref, at);
        kt_health_audit(ctx, out);
        kt_health_token_reasons(out);
        kt_health_nodes(ctx, out);
    }
    free(refs);
    free(at);
    if (e != KEYTIER_OK)
        keytier_ops_health_free(out);
    kt_err_clear();
    return e;
}

KEYTIER_API void keytier_ops_health_free(keytier_ops_health *h)
{
    if (!h)
        return;
    free(h->tokens);
    h->tokens = NULL;
    h->n_tokens = 0;
}
