/*
 * A context's counters beyond this process (docs/DESIGN.md §2
 * "Operations"): each token's root-key reads (calls, latency histogram,
 * errors by class), and the publication of these and the availability
 * counters to the store's node_stats by the cache's thread, which
 * `keytier stats` and `keytier health` read from other processes.
 */
#include <json-c/json.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt_lib.h"
#include "state.h"

/* Upper bounds of the latency buckets: 1 ms to 5 s. */
static const uint64_t kt_latency_bounds[KEYTIER_LATENCY_BUCKETS] = {
    1000,   2500,   5000,   10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000};

static const char *const kt_class_names[KEYTIER_CLASS_COUNT] = {
    "timeout", "system", "denied"};

/* The availability counters, as named in the published JSON. */
static const struct {
    const char *name;
    size_t off;
} kt_avail_fields[] = {
#define F(x)                                                                   \
    {                                                                          \
#x, offsetof(keytier_avail_stats, x)                                   \
    }
    F(cache_hits),
    F(cache_misses),
    F(cache_refreshes),
    F(cache_refresh_failures),
    F(cache_alerts),
    F(cache_entries),
    F(cache_locked_pages),
    F(fallbacks),
    F(denied),
    F(unavailable),
    F(token_reads),
    F(timeouts),
    F(cache_invalidations),
    F(cache_syncs),
    F(cache_sync_rows),
    F(cache_sync_failures),
    F(cache_alerts_active),
#undef F
};
#define KT_N_AVAIL_FIELDS (sizeof kt_avail_fields / sizeof kt_avail_fields[0])

/* Rows not written for this long are deleted by the next publisher. */
#define KT_STATS_PRUNE_MS (24 * 3600 * 1000LL)

KEYTIER_API const uint64_t *keytier_latency_bounds_us(void)
{
    return kt_latency_bounds;
}

KEYTIER_API const char *keytier_error_class_name(keytier_error_class c)
{
    return (unsigned)c < KEYTIER_CLASS_COUNT ? kt_class_names[c] : "unknown";
}

/* ---- counting ---------------------------------------------------------- */

/* The row of uri's token (under tok_mu); the last row when the table is
 * full. */
static struct kt_tok_stat *kt_tok_row(struct kt_avail *av, const char *uri)
{
    char name[KEYTIER_OPS_TOKEN_MAX + 1];

    if (!kt_uri_token_attr(uri, NULL, 0, name, sizeof name))
        kt_strlcpy(name, "(any)", sizeof name);
    for (size_t i = 0; i < av->n_tok; i++)
        if (!strcmp(av->tok[i].token, name))
            return &av->tok[i];
    if (av->n_tok == KT_TOK_STATS_MAX) {
        kt_strlcpy(av->tok[KT_TOK_STATS_MAX - 1].token, "other",
                   sizeof av->tok[0].token);
        return &av->tok[KT_TOK_STATS_MAX - 1];
    }
    struct kt_tok_stat *t = &av->tok[av->n_tok++];
    memset(t, 0, sizeof *t);
    kt_strlcpy(t->token, name, sizeof t->token);
    return t;
}

static keytier_error_class kt_rv_class(CK_RV rv)
{
    if (rv == KT_CKR_TIMEOUT || rv == KT_CKR_TOKEN_HUNG ||
        rv == KT_CKR_NOT_STARTED)
        return KEYTIER_CLASS_TIMEOUT;
    return kt_ckr_classify(rv) == KT_CKR_CLASS_DENIED ? KEYTIER_CLASS_DENIED
                                                      : KEYTIER_CLASS_SYSTEM;
}

void kt_avail_count_call(struct kt_avail *av, const char *uri, CK_RV rv,
                         uint64_t ns)
{
    uint64_t us = ns / 1000;

    if (!av->tok)
        return;
    pthread_mutex_lock(&av->tok_mu);
    struct kt_tok_stat *t = kt_tok_row(av, uri);
    t->calls++;
    t->latency_sum_us += us;
    for (unsigned i = 0; i < KEYTIER_LATENCY_BUCKETS; i++)
        t->bucket[i] += us <= kt_latency_bounds[i];
    if (rv != CKR_OK)
        t->errors[kt_rv_class(rv)]++;
    pthread_mutex_unlock(&av->tok_mu);
}

void kt_avail_count_timeout(struct kt_avail *av, const char *uri)
{
    if (!av->tok)
        return;
    pthread_mutex_lock(&av->tok_mu);
    kt_tok_row(av, uri)->errors[KEYTIER_CLASS_TIMEOUT]++;
    pthread_mutex_unlock(&av->tok_mu);
}

void kt_avail_stats_fill(struct kt_avail *av, keytier_avail_stats *out)
{
    kt_cache_stats cs = {0};

    if (av->cache)
        kt_cache_get_stats(av->cache, &cs);
    *out = (keytier_avail_stats){
        .cache_hits = cs.hits,
        .cache_misses = cs.misses,
        .cache_refreshes = cs.refreshes,
        .cache_refresh_failures = cs.refresh_failures,
        .cache_alerts = cs.alerts,
        .cache_entries = cs.entries,
        .cache_locked_pages = cs.locked_pages,
        .fallbacks = atomic_load(&av->fallbacks),
        .denied = atomic_load(&av->denied),
        .unavailable = atomic_load(&av->unavailable),
        .token_reads = atomic_load(&av->token_reads),
        .timeouts = atomic_load(&av->timeouts),
        .cache_invalidations = cs.invalidations,
        .cache_syncs = atomic_load(&av->syncs),
        .cache_sync_rows = atomic_load(&av->sync_applied),
        .cache_sync_failures = atomic_load(&av->sync_failures),
        .cache_alerts_active = cs.alerts_active,
    };
}

/* ---- publishing -------------------------------------------------------- */

static json_object *kt_tok_json(const struct kt_tok_stat *t)
{
    json_object *o = json_object_new_object();
    json_object *err = json_object_new_object();
    json_object *b = json_object_new_array();

    json_object_object_add(o, "token", json_object_new_string(t->token));
    json_object_object_add(o, "calls", json_object_new_uint64(t->calls));
    for (unsigned c = 0; c < KEYTIER_CLASS_COUNT; c++)
        json_object_object_add(err, kt_class_names[c],
                               json_object_new_uint64(t->errors[c]));
    json_object_object_add(o, "errors", err);
    json_object_object_add(o, "latency_sum_us",
                           json_object_new_uint64(t->latency_sum_us));
    for (unsigned i = 0; i < KEYTIER_LATENCY_BUCKETS; i++)
        json_object_array_add(b, json_object_new_uint64(t->bucket[i]));
    json_object_object_add(o, "latency_buckets", b);
    return o;
}

/* The published document: {"avail": {...}, "tokens": [...]}. */
static json_object *kt_stats_json(struct kt_avail *av)
{
    keytier_avail_stats s;
    json_object *o = json_object_new_object();
    json_object *a = json_object_new_object();
    json_object *toks = json_object_new_array();

    kt_avail_stats_fill(av, &s);
    for (size_t i = 0; i < KT_N_AVAIL_FIELDS; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s + kt_avail_fields[i].off, sizeof v);
        json_object_object_add(a, kt_avail_fields[i].name,
                               json_object_new_uint64(v));
    }
    json_object_object_add(o, "avail", a);
    pthread_mutex_lock(&av->tok_mu);
    for (size_t i = 0; i < av->n_tok; i++)
        json_object_array_add(toks, kt_tok_json(&av->tok[i]));
    pthread_mutex_unlock(&av->tok_mu);
    json_object_object_add(o, "tokens", toks);
    return o;
}

void kt_avail_publish_due(struct kt_avail *av)
{
    uint64_t now = kt_avail_now_ms();
    keytier_ctx *ctx = av->ctx;

    if (!av->cfg->stats_publish_ms ||
        now - av->last_publish_ms < av->cfg->stats_publish_ms)
        return;
    av->last_publish_ms = now;
    json_object *o = kt_stats_json(av);
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    keytier_err e =
        text && strlen(text) < KT_NODE_STATS_MAX
            ? kt_store_node_stats_put(
                  ctx->store, ctx->cfg.node ? ctx->cfg.node : "",
                  (int64_t)getpid(), (int64_t)av->cfg->stats_publish_ms, text,
                  kt_wall_ms() - KT_STATS_PRUNE_MS)
            : kt_err(KEYTIER_E_NOMEM, "counters too large to publish");
    json_object_put(o);
    if (e == KEYTIER_OK)
        av->published = true;
    else
        kt_log_event(ctx->log, KT_LOG_WARNING, "counters not published",
                     keytier_last_error_detail());
}

void kt_avail_unpublish(struct kt_avail *av)
{
    if (av->published && kt_store_node_stats_drop(av->ctx->store) != KEYTIER_OK)
        kt_log_event(av->ctx->log, KT_LOG_WARNING,
                     "published counters not withdrawn",
                     keytier_last_error_detail());
    av->published = false;
}

/* ---- reading what every publisher wrote -------------------------------- */

static bool kt_json_u64(json_object *o, const char *key, uint64_t *v)
{
    json_object *f;
    if (!json_object_object_get_ex(o, key, &f) ||
        !json_object_is_type(f, json_type_int))
        return false;
    *v = json_object_get_uint64(f);
    return true;
}

static bool kt_tok_parse(json_object *o, keytier_token_stats *t)
{
    json_object *name, *err, *b;

    if (!json_object_object_get_ex(o, "token", &name) ||
        !json_object_is_type(name, json_type_string) ||
        !json_object_object_get_ex(o, "errors", &err) ||
        !json_object_object_get_ex(o, "latency_buckets", &b) ||
        !json_object_is_type(b, json_type_array) ||
        json_object_array_length(b) != KEYTIER_LATENCY_BUCKETS ||
        !kt_json_u64(o, "calls", &t->calls) ||
        !kt_json_u64(o, "latency_sum_us", &t->latency_sum_us))
        return false;
    kt_strlcpy(t->token, json_object_get_string(name), sizeof t->token);
    for (unsigned c = 0; c < KEYTIER_CLASS_COUNT; c++)
        if (!kt_json_u64(err, kt_class_names[c], &t->errors[c]))
            return false;
    for (unsigned i = 0; i < KEYTIER_LATENCY_BUCKETS; i++) {
        json_object *v = json_object_array_get_idx(b, i);
        if (!json_object_is_type(v, json_type_int))
            return false;
        t->latency_bucket[i] = json_object_get_uint64(v);
    }
    return true;
}

/* One row's counters into out; false when they are not ours. */
static bool kt_node_parse(const char *text, keytier_node_stats *out)
{
    json_object *o = json_tokener_parse(text), *a, *toks;
    bool ok = o && json_object_object_get_ex(o, "avail", &a) &&
              json_object_object_get_ex(o, "tokens", &toks) &&
              json_object_is_type(toks, json_type_array);

    for (size_t i = 0; ok && i < KT_N_AVAIL_FIELDS; i++) {
        uint64_t v = 0;
        ok = kt_json_u64(a, kt_avail_fields[i].name, &v);
        memcpy((char *)&out->avail + kt_avail_fields[i].off, &v, sizeof v);
    }
    size_t n = ok ? json_object_array_length(toks) : 0;
    if (n) {
        out->tokens = calloc(n, sizeof *out->tokens);
        ok = out->tokens != NULL;
    }
    for (size_t i = 0; ok && i < n; i++)
        ok = kt_tok_parse(json_object_array_get_idx(toks, i), &out->tokens[i]);
    out->n_tokens = ok ? n : 0;
    json_object_put(o);
    return ok;
}

KEYTIER_API keytier_err keytier_node_stats_list(keytier_ctx *ctx,
                                                keytier_node_stats **out,
                                                size_t *n)
{
    struct kt_node_stats_rec *rows = NULL;
    size_t count = 0;
    keytier_node_stats *list = NULL;
    int64_t now = kt_wall_ms();

    kt_err_clear();
    if (!ctx || !out || !n)
        return kt_err(KEYTIER_E_ARGS, "node stats: context or output missing");
    keytier_err e = kt_store_node_stats_list(ctx->store, &rows, &count);
    if (e == KEYTIER_OK && count && !(list = calloc(count, sizeof *list)))
        e = kt_err(KEYTIER_E_NOMEM, "node stats");
    for (size_t i = 0; e == KEYTIER_OK && i < count; i++) {
        keytier_node_stats *s = &list[i];
        kt_strlcpy(s->node, rows[i].node, sizeof s->node);
        s->pid = rows[i].pid;
        s->updated_ms = rows[i].updated_ms;
        s->interval_ms = rows[i].interval_ms;
        s->age_ms = now - s->updated_ms;
        s->stale = s->age_ms > 3 * s->interval_ms + 1000;
        if (!kt_node_parse(rows[i].counters, s))
            e = kt_err(KEYTIER_E_OPS_COUNTERS, "node %s, process %lld",
                       rows[i].node, (long long)rows[i].pid);
    }
    free(rows);
    if (e != KEYTIER_OK) {
        keytier_node_stats_free(list, count);
        return e;
    }
    *out = list;
    *n = count;
    return KEYTIER_OK;
}

KEYTIER_API void keytier_node_stats_free(keytier_node_stats *stats, size_t n)
{
    if (!stats)
        return;
    for (size_t i = 0; i < n; i++)
        free(stats[i].tokens);
    free(stats);
}
