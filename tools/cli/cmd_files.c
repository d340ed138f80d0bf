/*
 * keytier offboard: a files tenant's region moved from its customer keys
 * to a service-managed key (docs/DESIGN.md §2 "Lifecycle: Offboard").
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { OPT_TENANT = 256, OPT_WORKLOAD, OPT_REGION, OPT_APPROVAL };

static int cmd_offboard(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"region", required_argument, NULL, OPT_REGION},
        {"approval", required_argument, NULL, OPT_APPROVAL},
        {0},
    };
    const char *tenant = NULL, *wl = "SharePoint", *region = NULL;
    const char *approval = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_WORKLOAD:
            wl = optarg;
            break;
        case OPT_REGION:
            region = optarg;
            break;
        case OPT_APPROVAL:
            approval = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (tenant == NULL)
        return cli_usage_error(cli, "--tenant is required");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_offboard_report r;
    keytier_err e =
        keytier_files_offboard(ctx, approval, tenant, wl, region, &r);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "tenant", tenant);
        cli_json_str(o, "workload", wl);
        cli_json_str(o, "region", r.region);
        cli_json_str(o, "dep_id", r.dep_id);
        cli_json_str(o, "state", "offboarded");
        cli_json_str(o, "keys", "service-managed");
        cli_json_str(o, "managed_key", r.managed_uri);
        json_object_object_add(o, "tiks",
                               json_object_new_int64((int64_t)r.tiks));
        json_object_object_add(o, "resumed",
                               json_object_new_boolean(r.resumed));
        cli_json_put(o);
    } else {
        printf("tenant %s, %s region %s: DEP %s offboarded%s; keys are "
               "service-managed (%s)\n",
               tenant, wl, r.region, r.dep_id,
               r.resumed ? " (an unfinished run completed)" : "",
               r.managed_uri);
    }
    return CLI_OK;
}

const struct cli_cmd cli_files_cmds[] = {
    {"offboard", NULL, "move a files tenant's region to service-managed keys",
     "usage: keytier offboard --tenant T [--region R] [--workload W]\n"
     "                        --approval ID\n"
     "\n"
     "The tenant's files DEP in region R (default: \"default\") of workload\n"
     "W (default SharePoint) leaves its customer keys: an AES-256 key is\n"
     "generated in the service token (label keytier-managed-DEP), the DEP's\n"
     "tenant intermediate key is read through the customer keys and stored\n"
     "wrapped by it, and the DEP becomes offboarded. Sites and blobs keep\n"
     "opening (and new ones are made with 'site create --region R'); the\n"
     "customer keys are not used again and may be destroyed. Each step is\n"
     "journaled and audited: run the same command again after a crash and\n"
     "it finishes (without a new approval). Needs a live approval for\n"
     "operation files-offboard of tenant T and scope the DEP id (exit 10\n"
     "without). 'keytier status' then shows the keys as service-managed.\n"
     "JSON: {tenant, workload, region, dep_id, state, keys, managed_key,\n"
     "tiks, resumed}\n",
     cmd_offboard},
    {0},
};
