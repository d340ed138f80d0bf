/*
 * keytier audit list | verify: the library's audit log (JSON lines with a
 * hash chain, DESIGN.md §2 "Audit").
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
    OPT_LOG = 256,
    OPT_SINCE,
    OPT_ACTIVITY,
    OPT_DEP,
    OPT_CHAIN_ONLY,
    OPT_DIR,
    OPT_FILE,
};

/* Files a verify of every node's chain may be given (--file, repeated). */
#define AUDIT_FILES_MAX 64

#define AUDIT_PATH_MAX 4096

/* --log FILE, else the log the configuration names. */
static int audit_path(struct cli *cli, const char *log, char *out)
{
    if (log != NULL) {
        snprintf(out, AUDIT_PATH_MAX, "%s", log);
        return CLI_OK;
    }
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_err e = keytier_audit_log_path(ctx, out, AUDIT_PATH_MAX);
    return e == KEYTIER_OK ? CLI_OK : cli_fail_lib(cli, e);
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static void audit_print(json_object *rec)
{
    const char *t = jstr(rec, "CreationTime"), *a = jstr(rec, "Activity");
    const char *dep = jstr(rec, "DataEncryptionPolicyId");
    const char *org = jstr(rec, "OrganizationId");
    const char *rid = jstr(rec, "RequestId");
    const char *kind = jstr(rec, "RequestKind");
    const char *op = jstr(rec, "Operation");
    printf("%s  %s", t ? t : "-", a ? a : "-");
    if (org)
        printf("  tenant=%s", org);
    if (dep)
        printf("  dep=%s", dep);
    if (kind)
        printf("  kind=%s%s%s", kind, op ? "/" : "", op ? op : "");
    if (rid)
        printf("  request=%s", rid);
    json_object *errs;
    if (json_object_object_get_ex(rec, "CustomerKeyErrors", &errs) &&
        json_object_is_type(errs, json_type_array)) {
        size_t n = json_object_array_length(errs);
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(errs, i);
            const char *k = jstr(e, "Key"), *err = jstr(e, "Error");
            const char *cls = jstr(e, "Class");
            printf("  %s=%s(%s)", k ? k : "?", err ? err : "?",
                   cls ? cls : "?");
        }
    }
    putchar('\n');
}

/* What audit list shows: records from a time on, of one activity, of one
 * DEP (NULL: any). */
struct audit_filter {
    const char *since, *activity, *dep;
};

static bool audit_keep(const struct audit_filter *flt, json_object *rec)
{
    const char *t = jstr(rec, "CreationTime");
    const char *a = jstr(rec, "Activity");
    const char *d = jstr(rec, "DataEncryptionPolicyId");
    /* ISO 8601 UTC times of one format order as text. */
    return (flt->since == NULL || (t != NULL && strcmp(t, flt->since) >= 0)) &&
           (flt->activity == NULL ||
            (a != NULL && !strcmp(a, flt->activity))) &&
           (flt->dep == NULL || (d != NULL && !strcmp(d, flt->dep)));
}

/* Line lineno as cli_read_line gave it (n): a record, or why it is not. */
static int audit_list_line(struct cli *cli, const char *path, const char *line,
                           long n, uint64_t lineno, json_object **rec)
{
    if (n == -1)
        return cli_error(cli, KEYTIER_E_IO,
                         "cannot read audit log %s at line %" PRIu64 ": %s",
                         path, lineno, strerror(errno));
    if (n == -2)
        return cli_error(cli, KEYTIER_E_AUDIT_TAMPERED,
                         "audit log %s: line %" PRIu64
                         " is longer than a record can be (%u bytes) (run "
                         "keytier audit verify)",
                         path, lineno, KEYTIER_AUDIT_LINE_MAX);
    *rec = json_tokener_parse(line);
    if (*rec == NULL || !json_object_is_type(*rec, json_type_object)) {
        json_object_put(*rec);
        *rec = NULL;
        return cli_error(cli, KEYTIER_E_AUDIT_TAMPERED,
                         "audit log %s: line %" PRIu64 " is not a JSON object "
                         "(run keytier audit verify)",
                         path, lineno);
    }
    return CLI_OK;
}

/* The records of the log at path that flt keeps, each line read with the
 * bound of a record. */
static int audit_list_file(struct cli *cli, const char *path,
                           const struct audit_filter *flt)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return cli_error(cli, KEYTIER_E_IO, "cannot read audit log %s: %s",
                         path, strerror(errno));
    char *line = malloc(KEYTIER_AUDIT_LINE_MAX + 1);
    if (line == NULL) {
        fclose(f);
        return cli_error(cli, KEYTIER_E_NOMEM, "out of memory");
    }
    uint64_t lineno = 0, shown = 0;
    long n;
    int rc = CLI_OK;
    while (rc == CLI_OK &&
           (n = cli_read_line(f, line, KEYTIER_AUDIT_LINE_MAX)) != 0) {
        json_object *rec = NULL;
        rc = audit_list_line(cli, path, line, n, ++lineno, &rec);
        if (rc == CLI_OK && audit_keep(flt, rec)) {
            shown++;
            if (cli->json) /* the record exactly as stored */
                fputs(line, stdout);
            else
                audit_print(rec);
        }
        json_object_put(rec);
    }
    free(line);
    fclose(f);
    if (rc == CLI_OK && !cli->json)
        fprintf(stderr, "%" PRIu64 " of %" PRIu64 " records shown (%s)\n",
                shown, lineno, path);
    return rc;
}

static int cmd_audit_list(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"log", required_argument, NULL, OPT_LOG},
        {"since", required_argument, NULL, OPT_SINCE},
        {"activity", required_argument, NULL, OPT_ACTIVITY},
        {"dep", required_argument, NULL, OPT_DEP},
        {0},
    };
    const char *log = NULL;
    struct audit_filter flt = {NULL, NULL, NULL};
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_LOG:
            log = optarg;
            break;
        case OPT_SINCE:
            flt.since = optarg;
            break;
        case OPT_ACTIVITY:
            flt.activity = optarg;
            break;
        case OPT_DEP:
            flt.dep = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    char path[AUDIT_PATH_MAX];
    int rc = audit_path(cli, log, path);
    return rc != CLI_OK ? rc : audit_list_file(cli, path, &flt);
}

/* --chain-only: the hash chain of a file alone (a copy, no token). */
static int audit_verify_chain(struct cli *cli, const char *path)
{
    uint64_t bad = 0, records = 0;
    keytier_err e = keytier_audit_verify(path, &bad, &records);
    if (e != KEYTIER_OK && e != KEYTIER_E_AUDIT_TAMPERED)
        return cli_fail_lib(cli, e); /* an empty file too: exit 11 */
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "log", path);
        json_object_object_add(o, "intact",
                               json_object_new_boolean(e == KEYTIER_OK));
        json_object_object_add(o, "records",
                               json_object_new_int64((int64_t)records));
        json_object_object_add(o, "tail_checked", json_object_new_boolean(0));
        if (e != KEYTIER_OK) {
            json_object_object_add(o, "bad_line",
                                   json_object_new_int64((int64_t)bad));
            cli_json_str(o, "reason", keytier_last_error_detail());
        }
        cli_json_put(o);
    }
    if (e != KEYTIER_OK) {
        fprintf(stderr, "keytier %s: %s: line %" PRIu64 ": %s [%s]\n",
                cli->name, path, bad, keytier_last_error_detail(),
                keytier_error_name(e));
        return CLI_TAMPERED;
    }
    if (!cli->json)
        printf("audit log %s: %" PRIu64 " records, hash chain intact; tail "
               "NOT checked (--chain-only: removed newest records and a "
               "recomputed chain need the anchor)\n",
               path, records);
    return CLI_OK;
}

/* What verify found in the log at PATH as a JSON object. */
static json_object *audit_verify_json(const char *path, keytier_err e,
                                      const keytier_audit_report *rep,
                                      const char *reason)
{
    json_object *o = json_object_new_object();
    if (o != NULL) {
        cli_json_str(o, "log", path);
        cli_json_str(o, "log_id", rep->log_id[0] ? rep->log_id : NULL);
        json_object_object_add(
            o, "intact",
            json_object_new_boolean(e != KEYTIER_E_AUDIT_TAMPERED));
        json_object_object_add(o, "records",
                               json_object_new_int64((int64_t)rep->records));
        json_object_object_add(o, "tail_checked", json_object_new_boolean(1));
        json_object_object_add(
            o, "anchored_seq",
            json_object_new_int64((int64_t)rep->anchored_seq));
        json_object_object_add(o, "unanchored",
                               json_object_new_int64((int64_t)rep->unanchored));
        if (e != KEYTIER_OK) {
            json_object_object_add(
                o, "bad_line", json_object_new_int64((int64_t)rep->bad_line));
            cli_json_str(o, "reason", reason);
        }
    }
    return o;
}

/* What verify found in the log at PATH (E from
 * keytier_audit_verify_anchored, its report REP) as text (and as JSON
 * when json), and the exit code that says it; what is a suffix of the
 * intact line. */
static int audit_verify_report(struct cli *cli, const char *path, keytier_err e,
                               const keytier_audit_report *rep, bool json,
                               const char *what, const char *what_reason)
{
    const char *reason =
        what_reason ? what_reason : keytier_last_error_detail();
    if (cli->json && json)
        cli_json_put(audit_verify_json(path, e, rep, reason));
    if (e == KEYTIER_E_AUDIT_TAMPERED) {
        if (rep->bad_line > 0)
            fprintf(stderr, "keytier %s: %s: line %" PRIu64 ": %s [%s]\n",
                    cli->name, path, rep->bad_line, reason,
                    keytier_error_name(e));
        else
            fprintf(stderr, "keytier %s: %s: %s [%s]\n", cli->name, path,
                    reason, keytier_error_name(e));
        return CLI_TAMPERED;
    }
    if (e == KEYTIER_E_AUDIT_UNANCHORED) {
        fprintf(stderr,
                "keytier %s: %" PRIu64 " of %" PRIu64 " records unanchored: "
                "%s [%s]\n",
                cli->name, rep->unanchored, rep->records, reason,
                keytier_error_name(e));
        return CLI_UNANCHORED;
    }
    if (!cli->json)
        printf("audit log %s: %" PRIu64 " records, hash chain intact, "
               "anchored at record %" PRIu64 "%s\n",
               path, rep->records, rep->anchored_seq, what);
    return CLI_OK;
}

/* The exit code of the worse of two verdicts (0, 9, 8). */
static int audit_worse(int a, int b)
{
    if (a == CLI_TAMPERED || b == CLI_TAMPERED)
        return CLI_TAMPERED;
    return a == CLI_UNANCHORED || b == CLI_UNANCHORED ? CLI_UNANCHORED : CLI_OK;
}

/* Each chain's verdict as one line (several chains: naming its node and
 * indices), then, for several, what holds across them. */
static int audit_chains_text(struct cli *cli,
                             const keytier_audit_chains_report *r)
{
    int rc = CLI_OK;
    for (size_t i = 0; i < r->n_chains; i++) {
        const keytier_audit_chain *c = &r->chains[i];
        char what[256] = "";
        if (r->n_chains > 1)
            snprintf(what, sizeof what,
                     " (node %s, global indices %" PRIu64 "..%" PRIu64 ")",
                     c->node[0] ? c->node : "-", c->first_index, c->last_index);
        if (c->result != KEYTIER_OK && c->result != KEYTIER_E_AUDIT_TAMPERED &&
            c->result != KEYTIER_E_AUDIT_UNANCHORED) {
            fprintf(stderr, "keytier %s: %s: %s [%s]\n", cli->name, c->path,
                    c->reason, keytier_error_name(c->result));
            continue; /* the worst verdict is an alteration (8) */
        }
        rc = audit_worse(rc, audit_verify_report(cli, c->path, c->result,
                                                 &c->report, false, what,
                                                 c->reason));
    }
    if (r->n_chains > 1 && !cli->json)
        printf("%zu chains: %" PRIu64 " records, %" PRIu64
               " with a global index, the last index taken %" PRIu64
               ", %" PRIu64 " unused (appends that did not finish)\n",
               r->n_chains, r->records, r->indexed, r->highest_index, r->gaps);
    return rc;
}

static void audit_chains_json(const keytier_audit_chains_report *r,
                              keytier_err e)
{
    json_object *o, *arr = json_object_new_array();
    for (size_t i = 0; arr && i < r->n_chains; i++) {
        const keytier_audit_chain *c = &r->chains[i];
        json_object *one =
            audit_verify_json(c->path, c->result, &c->report, c->reason);
        cli_json_str(one, "node", c->node[0] ? c->node : NULL);
        json_object_object_add(one, "first_index",
                               json_object_new_int64((int64_t)c->first_index));
        json_object_object_add(one, "last_index",
                               json_object_new_int64((int64_t)c->last_index));
        json_object_array_add(arr, one);
    }
    if (r->n_chains == 1) { /* one chain: the object of a log alone */
        o = json_object_get(json_object_array_get_idx(arr, 0));
    } else {
        o = json_object_new_object();
        json_object_object_add(
            o, "intact",
            json_object_new_boolean(e != KEYTIER_E_AUDIT_TAMPERED));
        json_object_object_add(o, "records",
                               json_object_new_int64((int64_t)r->records));
    }
    if (r->n_chains > 1)
        json_object_object_add(o, "chains", arr);
    else
        json_object_put(arr);
    json_object_object_add(o, "indexed",
                           json_object_new_int64((int64_t)r->indexed));
    json_object_object_add(o, "highest_index",
                           json_object_new_int64((int64_t)r->highest_index));
    json_object_object_add(o, "gaps", json_object_new_int64((int64_t)r->gaps));
    cli_json_put(o);
}

/* Every node's chain the store knows (keytier_audit_verify_chains). */
static int audit_verify_chains(struct cli *cli, const char *dir,
                               const char *const *files, size_t n_files)
{
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_audit_chains_report r;
    keytier_err e = keytier_audit_verify_chains(ctx, dir, files, n_files, &r);
    /* A chain left unchecked (the token or the store failed), and none
     * found altered: that error, as for one log. */
    if (r.n_chains == 0 || (e != KEYTIER_OK && e != KEYTIER_E_AUDIT_TAMPERED &&
                            e != KEYTIER_E_AUDIT_UNANCHORED)) {
        keytier_audit_chains_report_free(&r);
        return cli_fail_lib(cli, e);
    }
    if (cli->json)
        audit_chains_json(&r, e);
    rc = audit_chains_text(cli, &r);
    keytier_audit_chains_report_free(&r);
    return rc;
}

static int cmd_audit_verify(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"log", required_argument, NULL, OPT_LOG},
        {"chain-only", no_argument, NULL, OPT_CHAIN_ONLY},
        {"dir", required_argument, NULL, OPT_DIR},
        {"file", required_argument, NULL, OPT_FILE},
        {0},
    };
    const char *log = NULL, *dir = NULL, *files[AUDIT_FILES_MAX];
    size_t n_files = 0;
    bool chain_only = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c == OPT_LOG)
            log = optarg;
        else if (c == OPT_CHAIN_ONLY)
            chain_only = true;
        else if (c == OPT_DIR)
            dir = optarg;
        else if (c == OPT_FILE && n_files < AUDIT_FILES_MAX)
            files[n_files++] = optarg;
        else if (c == OPT_FILE)
            return cli_usage_error(cli, "more than %d --file", AUDIT_FILES_MAX);
        else
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (chain_only && log == NULL)
        return cli_usage_error(cli, "--chain-only needs --log FILE");
    if (log != NULL && (dir != NULL || n_files > 0))
        return cli_usage_error(cli, "--log FILE checks one log: without "
                                    "--dir and --file");
    if (log == NULL)
        return audit_verify_chains(cli, dir, files, n_files);
    char path[AUDIT_PATH_MAX];
    int rc = audit_path(cli, log, path);
    if (rc != CLI_OK)
        return rc;
    if (chain_only)
        return audit_verify_chain(cli, path);
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_audit_report rep;
    keytier_err e = keytier_audit_verify_anchored(ctx, path, &rep);
    if (e != KEYTIER_OK && e != KEYTIER_E_AUDIT_TAMPERED &&
        e != KEYTIER_E_AUDIT_UNANCHORED)
        return cli_fail_lib(cli, e); /* empty (11), or the anchor could not
                                        be checked */
    return audit_verify_report(cli, path, e, &rep, true, "", NULL);
}

const struct cli_cmd cli_audit_cmds[] = {
    {"audit", "list", "show audit records",
     "usage: keytier audit list [--since TIME] [--activity A] [--dep ID]\n"
     "                          [--log FILE]\n"
     "\n"
     "Records of the audit log (default: the one the configuration names,\n"
     "`keytier help configuration`), oldest first, filtered by\n"
     "  --since TIME    CreationTime at or after TIME (UTC ISO 8601, e.g.\n"
     "                  2026-11-23 or 2026-11-23T16:00:00Z)\n"
     "  --activity A    e.g. \"Fallback to availability key\", \"DEP "
     "created\",\n"
     "                  \"Request denied: customer keys revoked\"\n"
     "  --dep ID        records about this DEP\n"
     "JSON lines: the records as stored (Seq, CreationTime, Id, RecordType,\n"
     "Activity, Workload, OrganizationId, DataEncryptionPolicyId, PolicyId,\n"
     "RequestId, RequestKind, Operation, CustomerKeyErrors, PrevHash, Hash).\n",
     cmd_audit_list},
    {"audit", "verify", "check the audit log's hash chain and anchor",
     "usage: keytier audit verify [--dir DIR] [--file FILE]...\n"
     "       keytier audit verify --log FILE [--chain-only]\n"
     "\n"
     "Without --log: every node's chain the store knows (each node writes\n"
     "its own log, `node` and avail.audit_log in the configuration; every\n"
     "record carries its Node and a GlobalIndex taken from the store).\n"
     "Each chain's file is the --file holding its log, else DIR/its file\n"
     "name, else where its node wrote it; each is checked as below, then\n"
     "across chains: every record of a chain is of its node, indices rise\n"
     "within a chain, none is in two chains or above what the store gave\n"
     "the chain; a chain the store knows with no file is altered (8).\n"
     "Unused indices (an append that died or failed after taking one) are\n"
     "counted, not errors.  One line per chain, then a summary.\n"
     "\n"
     "Checks that every record is as written and chained to the one before,\n"
     "and that the log reaches its anchor: the newest record's Seq and Hash\n"
     "as the library recorded them in its store after each append, MACed\n"
     "by the service token (key \"keytier-audit-anchor\"), and that the\n"
     "service token's register of anchored logs agrees (every log anchored\n"
     "once keeps its anchor, and its path).  Needs the configuration\n"
     "(service token and store); --log FILE checks another file (a copy)\n"
     "against the anchor of the log it is a copy of (by the Id of its first\n"
     "record): a copy shorter than that anchor is altered (8), an empty one\n"
     "is empty (11).\n"
     "  --chain-only    the hash chain of --log FILE alone, without the\n"
     "                  configuration or the token: removed newest records\n"
     "                  and a chain recomputed from scratch are NOT detected;\n"
     "                  an empty file is empty (11), never intact\n"
     "Exit codes:\n"
     "  0  intact, every record anchored\n"
     "  8  altered: names the first edited, removed, reordered or forged\n"
     "     line, \"records N+1..M removed from the end\", the anchored line\n"
     "     of a recomputed chain, an anchor that fails its MAC, an anchor\n"
     "     removed from the store (\"the anchor of log L was removed\"), or\n"
     "     another log (or none) where the token registered one\n"
     "  9  chain intact, but the newest records are after the anchor (the\n"
     "     service token was unreachable when they were written, or a crash\n"
     "     came between append and anchor), or the log was never anchored;\n"
     "     appends anchor them only along a chain they verified from the\n"
     "     last anchor, never a log with records and no anchor\n"
     "  11 empty: the file holds no record, nothing was verified\n"
     "  6  the anchor could not be checked: the service token or its\n"
     "     anchor key not found\n"
     "  1  the anchor could not be checked: other token or store errors\n"
     "JSON: {log, log_id, intact, records, tail_checked, anchored_seq,\n"
     "unanchored, bad_line, reason}; without --log also node, first_index,\n"
     "last_index, and chains (one such object per chain), indexed,\n"
     "highest_index, gaps (several chains: {intact, records, chains, ...})\n",
     cmd_audit_verify},
    {0},
};
