/*
 * keytier health and keytier stats: the operations view of a deployment
 * for monitoring (docs/DESIGN.md §2 "Operations").  health probes tokens,
 * store and audit log now and exits with a monitoring status; stats shows
 * the counters every publishing process wrote to the store, as text,
 * JSON or the Prometheus text format (written atomically with -o).
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* keytier health's exit codes (the monitoring plugins' convention). */
enum {
    HEALTH_OK = 0,
    HEALTH_DEGRADED = 1,
    HEALTH_CRITICAL = 2,
    HEALTH_UNKNOWN = 3,
};

static const char *const health_names[] = {"healthy", "degraded", "critical",
                                           "unknown"};

/* ---- keytier health ----------------------------------------------------- */

static void health_roles(unsigned roles, char *out, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } r[] = {{KEYTIER_TOKEN_ROLE_CUSTOMER, "customer"},
             {KEYTIER_TOKEN_ROLE_AVAIL, "availability"},
             {KEYTIER_TOKEN_ROLE_SERVICE, "service"},
             {KEYTIER_TOKEN_ROLE_CONFIGURED, "configured"}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (roles & r[i].bit)
            n += (size_t)snprintf(out + n, cap > n ? cap - n : 0, "%s%s",
                                  n ? "," : "", r[i].name);
}

static const char *health_audit_state(const keytier_ops_health *h)
{
    switch (h->audit) {
    case KEYTIER_OK:
        return "intact";
    case KEYTIER_E_AUDIT_EMPTY:
        return "empty";
    case KEYTIER_E_AUDIT_UNANCHORED:
        return "unanchored";
    case KEYTIER_E_AUDIT_TAMPERED:
        return "altered";
    default:
        return "unchecked";
    }
}

static json_object *health_token_json(const keytier_token_probe *p)
{
    char roles[64];
    json_object *o = json_object_new_object();
    health_roles(p->roles, roles, sizeof roles);
    cli_json_str(o, "token", p->token);
    cli_json_str(o, "roles", roles);
    json_object_object_add(o, "deps", json_object_new_int64((int64_t)p->deps));
    json_object_object_add(o, "reachable",
                           json_object_new_boolean(p->reachable));
    json_object_object_add(o, "latency_ms",
                           json_object_new_double(p->latency_us / 1000.0));
    if (!p->reachable) {
        cli_json_str(o, "error", p->error);
        cli_json_str(o, "class", keytier_error_class_name(p->error_class));
        cli_json_str(o, "detail", p->detail);
    }
    return o;
}

static json_object *health_json(const keytier_ops_health *h, int code)
{
    json_object *o = json_object_new_object(), *a, *t, *s, *d, *n, *r;
    cli_json_str(o, "status", health_names[code]);
    json_object_object_add(o, "exit", json_object_new_int(code));
    s = json_object_new_object();
    cli_json_str(s, "engine", h->store_engine);
    json_object_object_add(s, "reachable",
                           json_object_new_boolean(h->store_reachable));
    json_object_object_add(s, "schema", json_object_new_int(h->store_schema));
    json_object_object_add(
        s, "latency_ms", json_object_new_double(h->store_latency_us / 1000.0));
    json_object_object_add(o, "store", s);
    t = json_object_new_array();
    for (size_t i = 0; i < h->n_tokens; i++)
        json_object_array_add(t, health_token_json(&h->tokens[i]));
    json_object_object_add(o, "tokens", t);
    a = json_object_new_object();
    cli_json_str(a, "state", health_audit_state(h));
    cli_json_str(a, "result", keytier_error_name(h->audit));
    json_object_object_add(
        a, "records", json_object_new_int64((int64_t)h->audit_report.records));
    json_object_object_add(
        a, "unanchored",
        json_object_new_int64((int64_t)h->audit_report.unanchored));
    if (h->audit_detail[0])
        cli_json_str(a, "detail", h->audit_detail);
    json_object_object_add(o, "audit", a);
    d = json_object_new_object();
    json_object_object_add(d, "total", json_object_new_int64((int64_t)h->deps));
    json_object_object_add(d, "dark",
                           json_object_new_int64((int64_t)h->deps_dark));
    json_object_object_add(d, "degraded",
                           json_object_new_int64((int64_t)h->deps_degraded));
    json_object_object_add(o, "deps", d);
    n = json_object_new_object();
    json_object_object_add(n, "publishers",
                           json_object_new_int64((int64_t)h->nodes));
    json_object_object_add(n, "stale",
                           json_object_new_int64((int64_t)h->nodes_stale));
    json_object_object_add(
        n, "cache_alerts_active",
        json_object_new_int64((int64_t)h->cache_alerts_active));
    json_object_object_add(o, "counters", n);
    r = json_object_new_array();
    for (size_t i = 0; i < h->n_reasons; i++)
        json_object_array_add(r, json_object_new_string(h->reasons[i]));
    json_object_object_add(o, "reasons", r);
    return o;
}

static void health_text(const keytier_ops_health *h, int code)
{
    char roles[64];
    printf("status: %s\n", health_names[code]);
    printf("store: %s, %s, schema %d, %.1f ms\n", h->store_engine,
           h->store_reachable ? "reachable" : "UNREACHABLE", h->store_schema,
           h->store_latency_us / 1000.0);
    for (size_t i = 0; i < h->n_tokens; i++) {
        const keytier_token_probe *p = &h->tokens[i];
        health_roles(p->roles, roles, sizeof roles);
        printf("token %s (%s, %zu DEPs): ", p->token, roles, p->deps);
        if (p->reachable)
            printf("reachable, %.1f ms\n", p->latency_us / 1000.0);
        else
            printf("UNREACHABLE: %s (%s) after %.1f ms: %s\n", p->error,
                   keytier_error_class_name(p->error_class),
                   p->latency_us / 1000.0, p->detail);
    }
    printf("audit: %s, %llu records, %llu not anchored\n",
           health_audit_state(h), (unsigned long long)h->audit_report.records,
           (unsigned long long)h->audit_report.unanchored);
    printf("DEPs: %zu, %zu with no token reachable, %zu with a customer "
           "token unreachable\n",
           h->deps, h->deps_dark, h->deps_degraded);
    printf("published counters: %zu processes, %zu stale, %llu cache alerts "
           "active\n",
           h->nodes, h->nodes_stale,
           (unsigned long long)h->cache_alerts_active);
    for (size_t i = 0; i < h->n_reasons; i++)
        printf("%s %s\n", i ? "      " : "why:", h->reasons[i]);
}

/* The context could not be opened: the store is critical, anything else
 * (configuration, modules) unknown. */
static int health_open_failed(struct cli *cli, keytier_err e)
{
    int code = e == KEYTIER_E_STORE || e == KEYTIER_E_STORE_UNAVAILABLE ||
                       e == KEYTIER_E_STORE_VERSION
                   ? HEALTH_CRITICAL
                   : HEALTH_UNKNOWN;
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "status", health_names[code]);
        json_object_object_add(o, "exit", json_object_new_int(code));
        cli_json_str(o, "error", keytier_error_name(e));
        cli_json_str(o, "detail", keytier_last_error_detail());
        cli_json_put(o);
    } else {
        printf("status: %s\n", health_names[code]);
    }
    fprintf(stderr, "keytier health: %s: %s [%s]\n",
            code == HEALTH_CRITICAL ? "store unreachable"
                                    : "configuration unusable",
            keytier_last_error_detail(), keytier_error_name(e));
    return code;
}

static int cmd_health(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{0}};
    keytier_ops_health h;

    if (cli_getopt(cli, argc, argv, "", opts) != -1 || optind != argc) {
        fprintf(stderr,
                "keytier health: unexpected argument '%s' (see "
                "'keytier health --help') [KEYTIER_E_ARGS]\n",
                argv[optind < argc ? optind : argc - 1]);
        return HEALTH_UNKNOWN;
    }
    if (!cli->ctx) {
        keytier_err e = keytier_ctx_open(cli->config, &cli->ctx);
        if (e != KEYTIER_OK)
            return health_open_failed(cli, e);
    }
    keytier_err e = keytier_ops_health_check(cli->ctx, &h);
    if (e != KEYTIER_OK) {
        fprintf(stderr, "keytier health: %s [%s]\n",
                keytier_last_error_detail(), keytier_error_name(e));
        return HEALTH_UNKNOWN;
    }
    int code = (int)h.status;
    if (cli->json)
        cli_json_put(health_json(&h, code));
    else
        health_text(&h, code);
    keytier_ops_health_free(&h);
    return code;
}

/* ---- keytier stats ------------------------------------------------------ */

/* The availability counters: name in text and JSON, Prometheus type and
 * help. */
static const struct {
    const char *name;
    size_t off;
    bool gauge;
    const char *help;
} stats_fields[] = {
#define C(x, h)                                                                \
    {                                                                          \
#x, offsetof(keytier_avail_stats, x), false, h                         \
    }
#define G(x, h)                                                                \
    {                                                                          \
#x, offsetof(keytier_avail_stats, x), true, h                          \
    }
    C(cache_hits, "DEP and tier key reads served by the cache"),
    C(cache_misses, "key reads the cache could not serve"),
    C(cache_refreshes, "cached DEP keys renewed with the customer keys"),
    C(cache_refresh_failures, "cache refreshes that failed"),
    C(cache_alerts, "cache alerts fired: refresh failing, key expiring"),
    G(cache_entries, "keys in the cache"),
    G(cache_locked_pages, "memory pages of the cache locked in RAM"),
    C(fallbacks, "reads served through the availability key"),
    C(denied, "requests refused: the customer keys revoked"),
    C(unavailable, "requests refused: outage and no fallback allowed"),
    C(token_reads, "root-key reads sent to a token"),
    C(timeouts, "root-key reads past their deadline"),
    C(cache_invalidations, "cached keys wiped by invalidations"),
    C(cache_syncs, "reads of other processes' invalidations"),
    C(cache_sync_rows, "other processes' invalidations applied"),
    C(cache_sync_failures, "reads of invalidations that failed"),
    G(cache_alerts_active, "cached DEP keys alerted and not renewed"),
#undef C
#undef G
};
#define N_STATS_FIELDS (sizeof stats_fields / sizeof stats_fields[0])

static uint64_t stats_field(const keytier_node_stats *s, size_t i)
{
    uint64_t v;
    memcpy(&v, (const char *)&s->avail + stats_fields[i].off, sizeof v);
    return v;
}

static void stats_text(FILE *f, const keytier_node_stats *s, size_t n)
{
    if (n == 0)
        fputs("no published counters (avail.stats_publish_ms; a context "
              "publishes one interval after its open)\n",
              f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "node %s process %lld: %.1f s old (every %lld ms)%s\n",
                s[i].node, (long long)s[i].pid, s[i].age_ms / 1000.0,
                (long long)s[i].interval_ms, s[i].stale ? ", STALE" : "");
        for (size_t k = 0; k < N_STATS_FIELDS; k++)
            fprintf(f, "  %-24s %llu\n", stats_fields[k].name,
                    (unsigned long long)stats_field(&s[i], k));
        for (size_t t = 0; t < s[i].n_tokens; t++) {
            const keytier_token_stats *ts = &s[i].tokens[t];
            fprintf(f,
                    "  token %s: %llu calls, %.2f ms average; errors: "
                    "timeout %llu, system %llu, denied %llu\n",
                    ts->token, (unsigned long long)ts->calls,
                    ts->calls ? ts->latency_sum_us / 1000.0 / ts->calls : 0.0,
                    (unsigned long long)ts->errors[KEYTIER_CLASS_TIMEOUT],
                    (unsigned long long)ts->errors[KEYTIER_CLASS_SYSTEM],
                    (unsigned long long)ts->errors[KEYTIER_CLASS_DENIED]);
        }
    }
}

static json_object *stats_token_json(const keytier_token_stats *ts)
{
    const uint64_t *bounds = keytier_latency_bounds_us();
    json_object *o = json_object_new_object();
    json_object *e = json_object_new_object(), *b = json_object_new_array();
    cli_json_str(o, "token", ts->token);
    json_object_object_add(o, "calls", json_object_new_uint64(ts->calls));
    for (int c = 0; c < KEYTIER_CLASS_COUNT; c++)
        json_object_object_add(e, keytier_error_class_name(c),
                               json_object_new_uint64(ts->errors[c]));
    json_object_object_add(o, "errors", e);
    json_object_object_add(o, "latency_sum_us",
                           json_object_new_uint64(ts->latency_sum_us));
    for (int i = 0; i < KEYTIER_LATENCY_BUCKETS; i++) {
        json_object *k = json_object_new_object();
        json_object_object_add(k, "le_us", json_object_new_uint64(bounds[i]));
        json_object_object_add(k, "calls",
                               json_object_new_uint64(ts->latency_bucket[i]));
        json_object_array_add(b, k);
    }
    json_object_object_add(o, "latency_buckets", b);
    return o;
}

static json_object *stats_json(const keytier_node_stats *s, size_t n)
{
    json_object *doc = json_object_new_object(),
                *list = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_new_object(),
                    *a = json_object_new_object();
        json_object *t = json_object_new_array();
        cli_json_str(o, "node", s[i].node);
        json_object_object_add(o, "pid", json_object_new_int64(s[i].pid));
        json_object_object_add(o, "updated_ms",
                               json_object_new_int64(s[i].updated_ms));
        json_object_object_add(o, "age_ms", json_object_new_int64(s[i].age_ms));
        json_object_object_add(o, "interval_ms",
                               json_object_new_int64(s[i].interval_ms));
        json_object_object_add(o, "stale", json_object_new_boolean(s[i].stale));
        for (size_t k = 0; k < N_STATS_FIELDS; k++)
            json_object_object_add(
                a, stats_fields[k].name,
                json_object_new_uint64(stats_field(&s[i], k)));
        json_object_object_add(o, "counters", a);
        for (size_t k = 0; k < s[i].n_tokens; k++)
            json_object_array_add(t, stats_token_json(&s[i].tokens[k]));
        json_object_object_add(o, "tokens", t);
        json_object_array_add(list, o);
    }
    json_object_object_add(doc, "nodes", list);
    return doc;
}

/* ---- Prometheus text exposition format 0.0.4 ---------------------------- */

static void prom_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* {node="..",process=".."[,token=".."][,KEY="VAL"]} */
static void prom_labels(FILE *f, const keytier_node_stats *s, const char *token,
                        const char *key, const char *val)
{
    fputs("{node=\"", f);
    prom_value(f, s->node);
    fprintf(f, "\",process=\"%lld\"", (long long)s->pid);
    if (token) {
        fputs(",token=\"", f);
        prom_value(f, token);
        fputc('"', f);
    }
    if (key) {
        fprintf(f, ",%s=\"", key);
        prom_value(f, val);
        fputc('"', f);
    }
    fputc('}', f);
}

static void prom_head(FILE *f, const char *name, const char *type,
                      const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_avail(FILE *f, const keytier_node_stats *s, size_t n)
{
    char name[96];
    for (size_t k = 0; k < N_STATS_FIELDS; k++) {
        snprintf(name, sizeof name, "keytier_%s%s", stats_fields[k].name,
                 stats_fields[k].gauge ? "" : "_total");
        prom_head(f, name, stats_fields[k].gauge ? "gauge" : "counter",
                  stats_fields[k].help);
        for (size_t i = 0; i < n; i++) {
            fputs(name, f);
            prom_labels(f, &s[i], NULL, NULL, NULL);
            fprintf(f, " %llu\n", (unsigned long long)stats_field(&s[i], k));
        }
    }
    prom_head(f, "keytier_stats_age_seconds", "gauge",
              "how old the published counters are");
    for (size_t i = 0; i < n; i++) {
        fputs("keytier_stats_age_seconds", f);
        prom_labels(f, &s[i], NULL, NULL, NULL);
        fprintf(f, " %.3f\n", s[i].age_ms / 1000.0);
    }
}

static void prom_tokens(FILE *f, const keytier_node_stats *s, size_t n)
{
    prom_head(f, "keytier_token_calls_total", "counter",
              "root-key reads a token answered");
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < s[i].n_tokens; t++) {
            fputs("keytier_token_calls_total", f);
            prom_labels(f, &s[i], s[i].tokens[t].token, NULL, NULL);
            fprintf(f, " %llu\n", (unsigned long long)s[i].tokens[t].calls);
        }
    prom_head(f, "keytier_token_errors_total", "counter",
              "root-key reads failed, by class: timeout, system, denied");
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < s[i].n_tokens; t++)
            for (int c = 0; c < KEYTIER_CLASS_COUNT; c++) {
                fputs("keytier_token_errors_total", f);
                prom_labels(f, &s[i], s[i].tokens[t].token, "class",
                            keytier_error_class_name(c));
                fprintf(f, " %llu\n",
                        (unsigned long long)s[i].tokens[t].errors[c]);
            }
}

static void prom_latency(FILE *f, const keytier_node_stats *s, size_t n)
{
    const uint64_t *bounds = keytier_latency_bounds_us();
    const char *h = "keytier_token_latency_seconds";
    char le[32];
    prom_head(f, h, "histogram", "time of the root-key reads a token answered");
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < s[i].n_tokens; t++) {
            const keytier_token_stats *ts = &s[i].tokens[t];
            for (int b = 0; b <= KEYTIER_LATENCY_BUCKETS; b++) {
                if (b < KEYTIER_LATENCY_BUCKETS)
                    snprintf(le, sizeof le, "%g", bounds[b] / 1e6);
                else
                    snprintf(le, sizeof le, "+Inf");
                fprintf(f, "%s_bucket", h);
                prom_labels(f, &s[i], ts->token, "le", le);
                fprintf(f, " %llu\n",
                        (unsigned long long)(b < KEYTIER_LATENCY_BUCKETS
                                                 ? ts->latency_bucket[b]
                                                 : ts->calls));
            }
            fprintf(f, "%s_sum", h);
            prom_labels(f, &s[i], ts->token, NULL, NULL);
            fprintf(f, " %.6f\n", ts->latency_sum_us / 1e6);
            fprintf(f, "%s_count", h);
            prom_labels(f, &s[i], ts->token, NULL, NULL);
            fprintf(f, " %llu\n", (unsigned long long)ts->calls);
        }
}

/* ---- the command --------------------------------------------------------- */

enum { OPT_PROMETHEUS = 256 };

/* Writes len bytes to fd, whole. */
static bool stats_write(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* The output, whole, to FILE (temp file and rename) or stdout. */
static int stats_emit(struct cli *cli, const char *path, const char *buf,
                      size_t len)
{
    struct cli_out o;
    int rc = cli_out_open(cli, &o, path);
    if (rc != CLI_OK)
        return rc;
    if (!stats_write(o.fd, buf, len)) {
        int err = errno;
        cli_out_abort(&o);
        return cli_error(cli, KEYTIER_E_IO, "cannot write output %s: %s",
                         path ? path : "(standard output)", strerror(err));
    }
    return cli_out_commit(cli, &o);
}

static int cmd_stats(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"prometheus", no_argument, NULL, OPT_PROMETHEUS},
        {"output", required_argument, NULL, 'o'},
        {0},
    };
    bool prom = false;
    const char *path = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "o:", opts)) != -1) {
        if (c == OPT_PROMETHEUS)
            prom = true;
        else if (c == 'o')
            path = optarg;
        else
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (prom && cli->json)
        return cli_usage_error(cli, "--prometheus and --json exclude each "
                                    "other");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_node_stats *s = NULL;
    size_t n = 0;
    keytier_err e = keytier_node_stats_list(ctx, &s, &n);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        keytier_node_stats_free(s, n);
        return cli_error(cli, KEYTIER_E_NOMEM, "out of memory");
    }
    if (prom) {
        prom_avail(f, s, n);
        prom_tokens(f, s, n);
        prom_latency(f, s, n);
    } else if (cli->json) {
        json_object *o = stats_json(s, n);
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    } else {
        stats_text(f, s, n);
    }
    keytier_node_stats_free(s, n);
    rc = fclose(f) == 0 ? stats_emit(cli, path, buf, len)
                        : cli_error(cli, KEYTIER_E_NOMEM, "out of memory");
    free(buf);
    return rc;
}

const struct cli_cmd cli_ops_cmds[] = {
    {"health", NULL, "probe tokens, store and audit log (monitoring)",
     "usage: keytier health [--json]\n"
     "\n"
     "Checks now, for a monitoring system: every token a DEP uses, the\n"
     "service token and each token with a pin.LABEL (found, a session\n"
     "opened and logged in, within avail.call_deadline_ms each: a hung\n"
     "token shows as 'timeout', never hangs the check); the store (its\n"
     "schema version, timed); this node's audit log and its anchor (as\n"
     "`keytier audit verify`); the counters the service processes publish\n"
     "(`keytier stats`): stale ones, active cache alerts. Nothing is\n"
     "audited.\n"
     "\n"
     "Exit codes (the monitoring plugins' convention, not the other\n"
     "commands' table):\n"
     "  0  healthy\n"
     "  1  degraded: a token unreachable (reads use the other customer key\n"
     "     or the availability key where the rule allows), the audit log's\n"
     "     newest records not anchored or the log not checkable, a cache\n"
     "     alert active, a publishing process's counters stale (hung, or\n"
     "     killed)\n"
     "  2  critical: the store unreachable, the audit log altered, a DEP\n"
     "     none of whose tokens answers (its reads fail)\n"
     "  3  unknown: the configuration or the command line is unusable\n"
     "\n"
     "Text: `status: NAME`, a line for the store, each token, the audit\n"
     "log, the DEPs and the published counters, then `why:` lines, worst\n"
     "first. JSON: {status, exit, store {engine, reachable, schema,\n"
     "latency_ms}, tokens [{token, roles, deps, reachable, latency_ms[,\n"
     "error, class, detail]}], audit {state, result, records, unanchored[,\n"
     "detail]}, deps {total, dark, degraded}, counters {publishers, stale,\n"
     "cache_alerts_active}, reasons [...]}.\n",
     cmd_health},
    {"stats", NULL, "counters of every publishing process",
     "usage: keytier stats [--json | --prometheus] [-o | --output FILE]\n"
     "\n"
     "Shows the counters each process with a key cache writes to the store\n"
     "every avail.stats_publish_ms (default 10000; the first write one\n"
     "interval after its start, withdrawn at its clean close), one block\n"
     "per node and process: the availability counters (cache hits, misses,\n"
     "refreshes, alerts, fallbacks through the availability key, refusals,\n"
     "root-key reads and timeouts, invalidations) and per token its\n"
     "root-key reads, their latency and their errors by class (timeout,\n"
     "system, denied). A figure is at most one interval old while its\n"
     "process runs; older than three intervals and a second it is stale.\n"
     "\n"
     "  --json        {nodes: [{node, pid, updated_ms, age_ms, interval_ms,\n"
     "                stale, counters {...}, tokens [{token, calls, errors\n"
     "                {timeout, system, denied}, latency_sum_us,\n"
     "                latency_buckets [{le_us, calls}]}]}]}\n"
     "  --prometheus  the Prometheus text format 0.0.4: keytier_*_total\n"
     "                counters, gauges, keytier_token_latency_seconds\n"
     "                histogram; labels node, process, token, class\n"
     "  -o, --output FILE\n"
     "                write FILE whole: a temporary file beside it renamed\n"
     "                over it, so node_exporter's textfile collector never\n"
     "                reads half a file (e.g. -o /var/lib/prometheus/\n"
     "                node-exporter/keytier.prom from a timer)\n",
     cmd_stats},
    {0},
};
