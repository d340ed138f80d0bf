/*
 * keytier dep create | list | show: data encryption policies.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

enum {
    OPT_TENANT = 256,
    OPT_WORKLOAD,
    OPT_KEY_A,
    OPT_KEY_B,
    OPT_NAME,
    OPT_REGION
};

static const char *const slot_names[3] = {"a", "b", "availability"};

static void time_iso(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

static json_object *dep_json(const keytier_dep_info *d)
{
    char when[32];
    time_iso(d->created, when);
    json_object *o = json_object_new_object();
    cli_json_str(o, "dep_id", d->dep_id);
    cli_json_str(o, "policy_id", d->policy_id);
    cli_json_str(o, "tenant", d->tenant);
    cli_json_str(o, "workload", d->workload);
    if (d->name[0] != '\0')
        cli_json_str(o, "name", d->name);
    else
        json_object_object_add(o, "name", NULL); /* null: no name */
    cli_json_str(o, "state", cli_dep_state_name(d->state));
    cli_json_str(o, "created", when);
    json_object *roots = json_object_new_object();
    for (int i = 0; i < 3; i++) {
        json_object *r = json_object_new_object();
        cli_json_str(r, "uri", d->root_uri[i]);
        cli_json_str(r, "wrap", d->wrap_mech[i]);
        json_object_object_add(roots, slot_names[i], r);
    }
    json_object_object_add(o, "roots", roots);
    /* files shape; null for the mail shape (and a DEP made before TIKs) */
    if (d->region[0] != '\0')
        cli_json_str(o, "region", d->region);
    else
        json_object_object_add(o, "region", NULL);
    if (d->tik_id[0] != '\0')
        cli_json_str(o, "tik_id", d->tik_id);
    else
        json_object_object_add(o, "tik_id", NULL);
    cli_json_str(o, "keys",
                 d->state == KEYTIER_DEP_OFFBOARDED ? "service-managed"
                                                    : "customer");
    return o;
}

static void dep_print(const keytier_dep_info *d)
{
    char when[32];
    time_iso(d->created, when);
    printf("DEP %s\n  name      %s\n  policy    %s\n  tenant    %s\n"
           "  workload  %s\n  state     %s\n  created   %s\n",
           d->dep_id, d->name[0] ? d->name : "(none)", d->policy_id, d->tenant,
           d->workload, cli_dep_state_name(d->state), when);
    static const char *const titles[3] = {"key A", "key B", "avail"};
    for (int i = 0; i < 3; i++)
        printf("  %-9s %s (%s)\n", titles[i], d->root_uri[i], d->wrap_mech[i]);
    if (d->region[0] != '\0')
        printf("  region    %s\n  TIK       %s\n  keys      %s\n", d->region,
               d->tik_id[0] ? d->tik_id : "(none: made before TIKs)",
               d->state == KEYTIER_DEP_OFFBOARDED ? "service-managed"
                                                  : "customer");
}

/* ---- health ----------------------------------------------------------- */

static const char *const health_titles[3] = {"customer key A", "customer key B",
                                             "availability key"};

static json_object *health_json(const keytier_health *h)
{
    json_object *o = json_object_new_object();
    for (int i = 0; i < 3; i++) {
        json_object *k = json_object_new_object();
        cli_json_str(k, "state", keytier_key_health_name(h->key[i], i));
        if (h->err[i] != KEYTIER_OK) {
            cli_json_str(k, "error", keytier_error_name(h->err[i]));
            cli_json_str(k, "detail", h->detail[i]);
        }
        json_object_object_add(o, slot_names[i], k);
    }
    return o;
}

int cli_health_show(struct cli *cli, keytier_ctx *ctx, const char *dep_id,
                    keytier_dep_state state, json_object *o, const char *indent)
{
    keytier_health h;
    if (state == KEYTIER_DEP_PURGED) {
        if (cli->json)
            json_object_object_add(o, "health", NULL);
        else
            printf("%spurged (crypto-shredded): no root key left\n", indent);
        return CLI_OK;
    }
    keytier_err e = keytier_dep_health(ctx, NULL, dep_id, &h);
    if (e != KEYTIER_OK)
        return cli_fail_lib_in(cli, e, "DEP %s", dep_id);
    if (cli->json) {
        json_object_object_add(o, "health", health_json(&h));
        return CLI_OK;
    }
    for (int i = 0; i < 3; i++) {
        printf("%s%-17s %s", indent, health_titles[i],
               keytier_key_health_name(h.key[i], i));
        if (h.err[i] != KEYTIER_OK)
            printf(" (%s)", h.detail[i]);
        putchar('\n');
    }
    return CLI_OK;
}

static int cmd_dep_create(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"key-a", required_argument, NULL, OPT_KEY_A},
        {"key-b", required_argument, NULL, OPT_KEY_B},
        {"name", required_argument, NULL, OPT_NAME},
        {"region", required_argument, NULL, OPT_REGION},
        {0},
    };
    const char *tenant = NULL, *workload = NULL, *a = NULL, *b = NULL;
    const char *name = NULL, *region = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_WORKLOAD:
            workload = optarg;
            break;
        case OPT_KEY_A:
            a = optarg;
            break;
        case OPT_KEY_B:
            b = optarg;
            break;
        case OPT_NAME:
            name = optarg;
            break;
        case OPT_REGION:
            region = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (!tenant || !workload || !a || !b)
        return cli_usage_error(
            cli, "--tenant, --workload, --key-a and --key-b are required");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_dep_info d;
    keytier_err e = keytier_dep_create_in_region(ctx, tenant, workload, region,
                                                 a, b, name, &d);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json)
        cli_json_put(dep_json(&d));
    else
        dep_print(&d);
    return CLI_OK;
}

static int cmd_dep_list(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {0},
    };
    const char *tenant = NULL, *workload = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_WORKLOAD:
            workload = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_dep_info *list = NULL;
    size_t n = 0;
    keytier_err e = keytier_dep_list(ctx, tenant, workload, &list, &n);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (!cli->json)
        printf("%-36s %-36s %-16s %-24s %-11s %-20s %-12s %s\n", "DEP",
               "POLICY", "TENANT", "WORKLOAD", "STATE", "CREATED", "REGION",
               "NAME");
    for (size_t i = 0; i < n; i++) {
        if (cli->json) {
            cli_json_put(dep_json(&list[i]));
            continue;
        }
        char when[32];
        time_iso(list[i].created, when);
        printf("%-36s %-36s %-16s %-24s %-11s %-20s %-12s %s\n", list[i].dep_id,
               list[i].policy_id, list[i].tenant, list[i].workload,
               cli_dep_state_name(list[i].state), when,
               list[i].region[0] ? list[i].region : "-",
               list[i].name[0] ? list[i].name : "-");
    }
    keytier_dep_list_free(list);
    return CLI_OK;
}

static int cmd_dep_show(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {0},
    };
    const char *tenant = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c != OPT_TENANT)
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        tenant = optarg;
    }
    if (optind + 1 != argc)
        return cli_usage_error(cli, "one DEP id expected");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_dep_info d;
    keytier_err e =
        keytier_dep_show(ctx, tenant, argv[optind], &d); /* NULL: any */
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    json_object *o = cli->json ? dep_json(&d) : NULL;
    if (!cli->json) {
        dep_print(&d);
        printf("  health\n");
    }
    rc = cli_health_show(cli, ctx, d.dep_id, d.state, o, "    ");
    if (rc == CLI_OK && o != NULL)
        cli_json_put(o);
    else
        json_object_put(o);
    return rc;
}

#define DEP_JSON_HELP                                                          \
    "JSON: {dep_id, policy_id, tenant, workload, name (null: none), state,\n"  \
    "created, roots: {a|b|availability: {uri, wrap}}, region and tik_id\n"     \
    "(files shape; null otherwise), keys (customer, or service-managed once\n" \
    "offboarded)}\n"

const struct cli_cmd cli_dep_cmds[] = {
    {"dep", "create", "create a DEP from two customer root keys",
     "usage: keytier dep create --tenant T --workload W --key-a URI --key-b "
     "URI\n"
     "                          [--name N] [--region R]\n"
     "\n"
     "Creates a data encryption policy for tenant T and workload W (Exchange,\n"
     "SharePoint, M365DataAtRestEncryption or one of the configuration). The\n"
     "two customer root keys, named by PKCS#11 URIs, must be in two different\n"
     "tokens, sensitive, non-extractable and allowed to wrap and unwrap, and\n"
     "be the customer's own keys: not in the service token, not labelled\n"
     "keytier-..., no DEP's availability key (otherwise KEYTIER_E_KEY_ROLE,\n"
     "exit 1). An availability key is generated in the service token; the\n"
     "DEP key is wrapped by all three. The tokens' PINs come from the\n"
     "configuration (pin.LABEL).\n"
     "--name gives the DEP a human name, shown by list and show: at most 64\n"
     "bytes of printable UTF-8, no control characters (exit 2 otherwise).\n"
     "Names need not be unique; the DEP id is what other commands take.\n"
     "A files-shape DEP (SharePoint, OneDrive) belongs to a region (--region:\n"
     "1 to 32 of a-z, 0-9, '-'; default \"default\") and gets its tenant\n"
     "intermediate key (TIK), under which its sites are made. One files DEP\n"
     "per tenant and region that is not disabled, purged or offboarded: a\n"
     "second is refused (KEYTIER_E_DEP_REGION). --region for a mail-shape\n"
     "workload is refused (exit 2).\n"
     "\n" DEP_JSON_HELP,
     cmd_dep_create},
    {"dep", "list", "list DEPs (every tenant's, or one tenant's)",
     "usage: keytier dep list [--tenant T] [--workload W]\n"
     "\n"
     "DEPs, oldest first: tenant T's with --tenant, every tenant's without;\n"
     "--workload W keeps that workload's. Columns: DEP, POLICY, TENANT,\n"
     "WORKLOAD, STATE, CREATED, REGION (files shape; - otherwise), NAME (-\n"
     "when the DEP has none).\n"
     "JSON lines, one per DEP: " DEP_JSON_HELP,
     cmd_dep_list},
    {"dep", "show", "show one DEP",
     "usage: keytier dep show [--tenant T] ID\n"
     "\n"
     "The DEP's ids, name, tenant, state and root keys with their wrap\n"
     "mechanisms. DEP ids are unique across tenants: without --tenant the id\n"
     "alone finds the DEP; with --tenant a DEP of another tenant is refused\n"
     "(KEYTIER_E_WRONG_TENANT).\n"
     "Then the health of each root key, probed now with the call deadline:\n"
     "a customer key is reachable (its copy unwraps), refused (the token\n"
     "answers and the key refuses: CKA_UNWRAP off, PIN refused), destroyed\n"
     "(no such key) or unreachable (token absent, hung, failing); the\n"
     "availability key is present or missing (or refused, unreachable).\n"
     "The keys are only probed: no data key is used. A purged DEP has none:\n"
     "purged (crypto-shredded).\n" DEP_JSON_HELP
     "plus health: {a|b|availability: {state, error, detail}} (error and\n"
     "detail when not reachable/present; health null when purged)\n",
     cmd_dep_show},
    {0},
};
