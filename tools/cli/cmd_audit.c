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

enum { OPT_LOG = 256, OPT_SINCE, OPT_ACTIVITY, OPT_DEP };

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

static int cmd_audit_list(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"log", required_argument, NULL, OPT_LOG},
        {"since", required_argument, NULL, OPT_SINCE},
        {"activity", required_argument, NULL, OPT_ACTIVITY},
        {"dep", required_argument, NULL, OPT_DEP},
        {0},
    };
    const char *log = NULL, *since = NULL, *activity = NULL, *dep = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_LOG:
            log = optarg;
            break;
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_ACTIVITY:
            activity = optarg;
            break;
        case OPT_DEP:
            dep = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    char path[AUDIT_PATH_MAX];
    int rc = audit_path(cli, log, path);
    if (rc != CLI_OK)
        return rc;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return cli_fail(cli, CLI_IO, "cannot read audit log %s: %s", path,
                        strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    uint64_t lineno = 0, shown = 0;
    rc = CLI_OK;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_object *rec = json_tokener_parse(line);
        if (rec == NULL || !json_object_is_type(rec, json_type_object)) {
            json_object_put(rec);
            rc = cli_fail(cli, CLI_TAMPERED,
                          "audit log %s: line %" PRIu64 " is not a JSON object "
                          "(run keytier audit verify)",
                          path, lineno);
            break;
        }
        const char *t = jstr(rec, "CreationTime");
        const char *a = jstr(rec, "Activity");
        const char *d = jstr(rec, "DataEncryptionPolicyId");
        /* ISO 8601 UTC times of one format order as text. */
        bool keep = (since == NULL || (t != NULL && strcmp(t, since) >= 0)) &&
                    (activity == NULL || (a != NULL && !strcmp(a, activity))) &&
                    (dep == NULL || (d != NULL && !strcmp(d, dep)));
        if (keep) {
            shown++;
            if (cli->json) /* the record exactly as stored */
                fputs(line, stdout);
            else
                audit_print(rec);
        }
        json_object_put(rec);
    }
    free(line);
    if (ferror(f) && rc == CLI_OK)
        rc = cli_fail(cli, CLI_IO, "cannot read audit log %s", path);
    fclose(f);
    if (rc == CLI_OK && !cli->json)
        fprintf(stderr, "%" PRIu64 " of %" PRIu64 " records shown (%s)\n",
                shown, lineno, path);
    return rc;
}

static int cmd_audit_verify(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"log", required_argument, NULL, OPT_LOG},
        {0},
    };
    const char *log = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c != OPT_LOG)
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        log = optarg;
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    char path[AUDIT_PATH_MAX];
    int rc = audit_path(cli, log, path);
    if (rc != CLI_OK)
        return rc;
    uint64_t bad = 0, records = 0;
    keytier_err e = keytier_audit_verify(path, &bad, &records);
    if (e != KEYTIER_OK) {
        if (e == KEYTIER_E_AUDIT_TAMPERED && cli->json) {
            json_object *o = json_object_new_object();
            cli_json_str(o, "log", path);
            json_object_object_add(o, "intact", json_object_new_boolean(0));
            json_object_object_add(o, "records",
                                   json_object_new_int64((int64_t)records));
            json_object_object_add(o, "bad_line",
                                   json_object_new_int64((int64_t)bad));
            cli_json_str(o, "reason", keytier_last_error_detail());
            cli_json_put(o);
            fprintf(stderr, "keytier %s: %s: line %" PRIu64 ": %s [%s]\n",
                    cli->name, path, bad, keytier_last_error_detail(),
                    keytier_error_name(e));
            return CLI_TAMPERED;
        }
        if (e == KEYTIER_E_AUDIT_TAMPERED) {
            fprintf(stderr, "keytier %s: %s: line %" PRIu64 ": %s [%s]\n",
                    cli->name, path, bad, keytier_last_error_detail(),
                    keytier_error_name(e));
            return CLI_TAMPERED;
        }
        return cli_fail_lib(cli, e);
    }
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "log", path);
        json_object_object_add(o, "intact", json_object_new_boolean(1));
        json_object_object_add(o, "records",
                               json_object_new_int64((int64_t)records));
        cli_json_put(o);
    } else {
        printf("audit log %s: %" PRIu64 " records, hash chain intact\n", path,
               records);
    }
    return CLI_OK;
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
    {"audit", "verify", "check the audit log's hash chain",
     "usage: keytier audit verify [--log FILE]\n"
     "\n"
     "Checks that every record is as written and chained to the one before;\n"
     "names the first edited, removed, reordered or forged line (exit 8).\n"
     "JSON: {log, intact, records, bad_line, reason}\n",
     cmd_audit_verify},
    {0},
};
