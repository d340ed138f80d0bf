/*
 * keytier mailbox create | site create | status: the named keys of the
 * two shapes (mail: DEP key -> mailbox key -> items; files: DEP key ->
 * tenant intermediate key -> site key -> blob key -> blob) and whether a
 * name is encrypted, in which region, under whose keys.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum {
    OPT_TENANT = 256,
    OPT_DEP,
    OPT_MAILBOX,
    OPT_SITE,
    OPT_WORKLOAD,
    OPT_REQUEST_ID,
    OPT_REGION
};

/* A site made in a region: under the region's tenant intermediate key
 * (through the customer keys, or the service-managed key once the region
 * is offboarded). */
static int site_in_region(struct cli *cli, keytier_ctx *ctx,
                          const keytier_request *req, const char *tenant,
                          const char *wl, const char *region, const char *name,
                          char id[KEYTIER_ID_SIZE])
{
    keytier_key *tik = NULL;
    keytier_err e = keytier_tik_open(ctx, req, tenant, wl, region, &tik);
    if (e == KEYTIER_OK)
        e = keytier_key_create(tik, name, id);
    keytier_key_close(tik);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "kind", "site");
        cli_json_str(o, "tenant", tenant);
        cli_json_str(o, "name", name);
        cli_json_str(o, "key_id", id);
        cli_json_str(o, "region", region);
        cli_json_str(o, "workload", wl);
        cli_json_str(o, "request_id", req->request_id);
        cli_json_put(o);
    } else {
        printf("site '%s' created in region %s (%s, key %s)\n", name, region,
               wl, id);
    }
    return CLI_OK;
}

/* A mailbox or site under the DEP key of DEP dep (a site: under the
 * DEP's tenant intermediate key). */
static int tier_under_dep(struct cli *cli, keytier_ctx *ctx,
                          const keytier_request *req, const char *tenant,
                          const char *dep, const char *kind, const char *name)
{
    char id[KEYTIER_ID_SIZE];
    const char *rid = req->request_id;
    /* The built-in workloads have a fixed shape: a site under a mail DEP
     * (or a mailbox under a files DEP) would never be found by name. */
    keytier_dep_info info;
    keytier_err e = keytier_dep_show(ctx, tenant, dep, &info);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    bool mail_dep = !strcmp(info.workload, "Exchange") ||
                    !strcmp(info.workload, "M365DataAtRestEncryption");
    bool files_dep = !strcmp(info.workload, "SharePoint");
    if ((!strcmp(kind, "site") && mail_dep) ||
        (!strcmp(kind, "mailbox") && files_dep))
        return cli_usage_error(cli,
                               "DEP %s is for workload %s (%s shape): "
                               "use 'keytier %s create'",
                               dep, info.workload, mail_dep ? "mail" : "files",
                               mail_dep ? "mailbox" : "site");
    keytier_key *dk = NULL;
    e = keytier_dep_key_open(ctx, req, tenant, dep, &dk);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    e = keytier_key_create(dk, name, id);
    keytier_key_close(dk);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "kind", kind);
        cli_json_str(o, "tenant", tenant);
        cli_json_str(o, "name", name);
        cli_json_str(o, "key_id", id);
        cli_json_str(o, "dep_id", dep);
        cli_json_str(o, "workload", info.workload);
        cli_json_str(o, "request_id", rid);
        cli_json_put(o);
    } else {
        printf("%s '%s' created under DEP %s (%s, key %s)\n", kind, name, dep,
               info.workload, id);
    }
    return CLI_OK;
}

static int tier_create(struct cli *cli, int argc, char **argv, const char *kind)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"dep", required_argument, NULL, OPT_DEP},
        {"request-id", required_argument, NULL, OPT_REQUEST_ID},
        {"region", required_argument, NULL, OPT_REGION},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {0},
    };
    const char *tenant = NULL, *dep = NULL, *rid = NULL, *region = NULL;
    const char *wl = "SharePoint";
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_DEP:
            dep = optarg;
            break;
        case OPT_REQUEST_ID:
            rid = optarg;
            break;
        case OPT_REGION:
        case OPT_WORKLOAD:
            if (strcmp(kind, "site") != 0)
                return cli_usage_error(cli, "%s is for sites",
                                       argv[optind - 1]);
            *(c == OPT_REGION ? &region : &wl) = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (tenant == NULL || (dep == NULL) == (region == NULL))
        return cli_usage_error(cli, "--tenant and one of --dep%s are required",
                               strcmp(kind, "site") ? "" : " and --region");
    if (optind + 1 != argc)
        return cli_usage_error(cli, "one %s name expected", kind);
    const char *name = argv[optind];
    char uuid[KEYTIER_ID_SIZE];
    if (rid == NULL && cli_uuid(uuid))
        rid = uuid;
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    char id[KEYTIER_ID_SIZE];
    keytier_request req = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE, rid,
                           NULL};
    if (region != NULL)
        return site_in_region(cli, ctx, &req, tenant, wl, region, name, id);
    return tier_under_dep(cli, ctx, &req, tenant, dep, kind, name);
}

static int cmd_mailbox_create(struct cli *cli, int argc, char **argv)
{
    return tier_create(cli, argc, argv, "mailbox");
}

static int cmd_site_create(struct cli *cli, int argc, char **argv)
{
    return tier_create(cli, argc, argv, "site");
}

/* A DEP's state as status says it: a purged one is crypto-shredded. */
static const char *status_state_name(keytier_dep_state st)
{
    return st == KEYTIER_DEP_PURGED ? "purged (crypto-shredded)"
                                    : cli_dep_state_name(st);
}

/* Whose keys protect a DEP's data. */
static const char *keys_of(keytier_dep_state state)
{
    return state == KEYTIER_DEP_OFFBOARDED ? "service-managed" : "customer";
}

/* status --tenant alone: the tenant's DEPs, their states, regions and the
 * health of their root keys. */
static int status_tenant(struct cli *cli, keytier_ctx *ctx, const char *tenant,
                         const char *wl)
{
    keytier_dep_info *list = NULL;
    size_t n = 0;
    keytier_err e = keytier_dep_list(ctx, tenant, wl, &list, &n);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    json_object *o = json_object_new_object();
    json_object *deps = json_object_new_array();
    cli_json_str(o, "tenant", tenant);
    json_object_object_add(o, "deps", deps);
    if (!cli->json)
        printf("tenant %s: %zu DEP%s\n", tenant, n, n == 1 ? "" : "s");
    int rc = CLI_OK;
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        json_object *d = json_object_new_object();
        cli_json_str(d, "dep_id", list[i].dep_id);
        cli_json_str(d, "policy_id", list[i].policy_id);
        cli_json_str(d, "workload", list[i].workload);
        cli_json_str(d, "state", cli_dep_state_name(list[i].state));
        if (list[i].region[0] != '\0')
            cli_json_str(d, "region", list[i].region);
        else
            json_object_object_add(d, "region", NULL);
        cli_json_str(d, "keys", keys_of(list[i].state));
        json_object_array_add(deps, d);
        if (!cli->json && list[i].region[0] != '\0') /* files shape */
            printf("  %s (policy %s) %s region %s: %s, %s keys\n",
                   list[i].dep_id, list[i].policy_id, list[i].workload,
                   list[i].region, status_state_name(list[i].state),
                   keys_of(list[i].state));
        else if (!cli->json)
            printf("  %s (policy %s) %s: %s\n", list[i].dep_id,
                   list[i].policy_id, list[i].workload,
                   status_state_name(list[i].state));
        rc =
            cli_health_show(cli, ctx, list[i].dep_id, list[i].state, d, "    ");
    }
    if (rc == CLI_OK && cli->json)
        cli_json_put(o);
    else
        json_object_put(o);
    keytier_dep_list_free(list);
    return rc;
}

/* status --mailbox or --site, as JSON. */
static json_object *status_item_json(const keytier_status *st,
                                     const char *tenant, const char *kind,
                                     const char *name, const char *wl)
{
    json_object *o = json_object_new_object();
    cli_json_str(o, "tenant", tenant);
    cli_json_str(o, "kind", kind);
    cli_json_str(o, "name", name);
    cli_json_str(o, "workload", wl);
    /* purged data was encrypted: it stays ciphertext, under no key */
    json_object_object_add(
        o, "encrypted", json_object_new_boolean(st->encrypted || st->purged));
    cli_json_str(o, "state",
                 st->purged      ? "purged"
                 : st->encrypted ? "encrypted"
                                 : "not encrypted");
    json_object_object_add(o, "purged", json_object_new_boolean(st->purged));
    if (st->encrypted) {
        cli_json_str(o, "dep_id", st->dep_id);
        cli_json_str(o, "policy_id", st->policy_id);
        cli_json_str(o, "key_id", st->key_id);
        cli_json_str(o, "dep_state", cli_dep_state_name(st->dep_state));
        if (st->dep_name[0] != '\0')
            cli_json_str(o, "dep_name", st->dep_name);
        else
            json_object_object_add(o, "dep_name", NULL); /* no name */
        if (st->region[0] != '\0')
            cli_json_str(o, "region", st->region);
        else
            json_object_object_add(o, "region", NULL);
        cli_json_str(o, "keys",
                     st->service_managed ? "service-managed" : "customer");
    }
    return o;
}

/* status --mailbox or --site: the DEP a mailbox or site is encrypted
 * under, if any (KIND names which), and the health of its root keys. */
static int status_item(struct cli *cli, keytier_ctx *ctx, const char *tenant,
                       const char *kind, const char *name, const char *wl)
{
    keytier_status st;
    keytier_err e = keytier_status_get(ctx, tenant, wl, name, &st);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    json_object *o =
        cli->json ? status_item_json(&st, tenant, kind, name, wl) : NULL;
    if (cli->json) {
        /* below */
    } else if (st.purged) {
        printf("%s '%s' (%s): purged (crypto-shredded): tenant %s was "
               "purged and its keys destroyed\n",
               kind, name, wl, tenant);
    } else if (st.encrypted) {
        printf("%s '%s' (%s): encrypted under DEP %s%s%s%s (policy %s), "
               "DEP %s",
               kind, name, wl, st.dep_id, st.dep_name[0] ? " '" : "",
               st.dep_name, st.dep_name[0] ? "'" : "", st.policy_id,
               cli_dep_state_name(st.dep_state));
        if (st.region[0] != '\0') /* files shape */
            printf(", region %s, %s keys", st.region,
                   st.service_managed ? "service-managed" : "customer");
        printf("\n");
    } else {
        printf("%s '%s' (%s): not encrypted under a customer key\n", kind, name,
               wl);
    }
    int rc = CLI_OK;
    if (st.encrypted)
        rc = cli_health_show(cli, ctx, st.dep_id, st.dep_state, o, "  ");
    if (rc == CLI_OK && o != NULL)
        cli_json_put(o);
    else
        json_object_put(o);
    return rc;
}

static int cmd_status(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"mailbox", required_argument, NULL, OPT_MAILBOX},
        {"site", required_argument, NULL, OPT_SITE},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {0},
    };
    const char *tenant = NULL, *mailbox = NULL, *site = NULL, *wl = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_MAILBOX:
            mailbox = optarg;
            break;
        case OPT_SITE:
            site = optarg;
            break;
        case OPT_WORKLOAD:
            wl = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (tenant == NULL)
        return cli_usage_error(cli, "--tenant is required");
    if (mailbox != NULL && site != NULL)
        return cli_usage_error(cli, "--mailbox and --site exclude each other");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    if (mailbox == NULL && site == NULL)
        return status_tenant(cli, ctx, tenant, wl);
    if (wl == NULL)
        wl = mailbox ? "Exchange" : "SharePoint";
    return status_item(cli, ctx, tenant, mailbox ? "mailbox" : "site",
                       mailbox ? mailbox : site, wl);
}

const struct cli_cmd cli_tier_cmds[] = {
    {"mailbox", "create", "create a mailbox key under a DEP (mail shape)",
     "usage: keytier mailbox create --tenant T --dep ID [--request-id R] NAME\n"
     "\n"
     "Opens the DEP key (through a customer key, DESIGN.md fallback rule)\n"
     "and creates mailbox NAME's key under it; items are then encrypted\n"
     "under the mailbox key (keytier encrypt --mailbox NAME).\n"
     "JSON: {kind, tenant, name, key_id, dep_id, workload, request_id}\n",
     cmd_mailbox_create},
    {"site", "create", "create a site key under a DEP (files shape)",
     "usage: keytier site create --tenant T (--dep ID | --region R\n"
     "                           [--workload W]) [--request-id R] NAME\n"
     "\n"
     "Creates site NAME's key under the tenant intermediate key (TIK) of the\n"
     "files DEP (--dep), or of the tenant's files DEP in region R (--region;\n"
     "workload default SharePoint), also once that region is offboarded to\n"
     "service-managed keys. Each blob gets its own blob key under the site\n"
     "key (keytier encrypt --site NAME --blob B).\n"
     "JSON: {kind, tenant, name, key_id, dep_id or region, workload,\n"
     "request_id}\n",
     cmd_site_create},
    {"status", NULL, "is a mailbox or site encrypted, under which DEP",
     "usage: keytier status --tenant T [--mailbox M | --site S] [--workload "
     "W]\n"
     "\n"
     "With --mailbox or --site: whether the name is encrypted under a\n"
     "customer-key DEP, its DEP id, policy id and DEP state (workload\n"
     "default: Exchange for mailboxes, SharePoint for sites), or 'purged\n"
     "(crypto-shredded)' when the tenant was purged and its keys destroyed.\n"
     "Without: the tenant's DEPs and their states. Each DEP's root keys\n"
     "are probed now, as `keytier dep show` does: customer keys reachable,\n"
     "refused, destroyed or unreachable, the availability key present or\n"
     "missing.\n"
     "JSON: {tenant, kind, name, workload, encrypted, state (encrypted, not\n"
     "encrypted, purged), purged, dep_id, policy_id, key_id, dep_state,\n"
     "health} or {tenant, deps: [{dep_id, policy_id, workload, state,\n"
     "health}]}; health: {a|b|availability: {state, error, detail}}, null\n"
     "for a purged DEP. Both say the region of a files DEP and whose keys\n"
     "protect the data (keys: customer, or service-managed once the region\n"
     "was offboarded, 'keytier offboard'); JSON: region, keys.\n",
     cmd_status},
    {0},
};
