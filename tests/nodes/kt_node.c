/*
 * One node of the multi-node tests (tests/nodes/test_nodes.c): a
 * long-running process holding one keytier context (its cache, its sync
 * with the store, its own audit chain), taking one command a line on
 * stdin and answering one line on stdout, through the public API only.
 *
 *   create TENANT URI_A URI_B   ok DEP_ID
 *   read TENANT DEP_ID          ok hit|miss   (a user's read of the DEP key)
 *   destroy MODULE TOKEN LABEL  ok COUNT      (the customer revoking a key)
 *   count TENANT WORKLOAD       ok N          (DEPs of the tenant)
 *   stats                       ok HITS MISSES SYNCS SYNC_ROWS INVALIDATIONS
 *   quit
 *
 * A failure answers `err KEYTIER_E_NAME detail`.  The configuration is
 * argv[1]; the PIN of `destroy` is the test tokens' user PIN.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keytier.h"

#define NODE_LINE_MAX 4096
#define NODE_ARGS     4
#define NODE_PIN      "1234"

static void node_err(keytier_err e)
{
    printf("err %s %s\n", keytier_error_name(e), keytier_last_error_detail());
}

static void node_create(keytier_ctx *ctx, char **arg, int n)
{
    keytier_dep_info info;
    keytier_err e = n == 3 ? keytier_dep_create(ctx, arg[0], "Exchange", arg[1],
                                                arg[2], &info)
                           : KEYTIER_E_ARGS;
    if (e == KEYTIER_OK)
        printf("ok %s\n", info.dep_id);
    else
        node_err(e);
}

static void node_read(keytier_ctx *ctx, char **arg, int n)
{
    keytier_request req = {.kind = KEYTIER_REQUEST_USER};
    keytier_avail_stats before, after;
    keytier_key *key = NULL;
    keytier_err e =
        n == 2 ? keytier_avail_stats_get(ctx, &before) : KEYTIER_E_ARGS;
    if (e == KEYTIER_OK)
        e = keytier_dep_key_open(ctx, &req, arg[0], arg[1], &key);
    keytier_key_close(key);
    if (e == KEYTIER_OK)
        e = keytier_avail_stats_get(ctx, &after);
    if (e == KEYTIER_OK)
        printf("ok %s\n",
               after.cache_hits > before.cache_hits ? "hit" : "miss");
    else
        node_err(e);
}

static void node_destroy(char **arg, int n)
{
    size_t destroyed = 0;
    keytier_err e = n == 3 ? keytier_root_destroy(arg[0], arg[1], NODE_PIN,
                                                  arg[2], &destroyed)
                           : KEYTIER_E_ARGS;
    if (e == KEYTIER_OK)
        printf("ok %zu\n", destroyed);
    else
        node_err(e);
}

static void node_count(keytier_ctx *ctx, char **arg, int n)
{
    keytier_dep_info *list = NULL;
    size_t count = 0;
    keytier_err e = n == 2
                        ? keytier_dep_list(ctx, arg[0], arg[1], &list, &count)
                        : KEYTIER_E_ARGS;
    keytier_dep_list_free(list);
    if (e == KEYTIER_OK)
        printf("ok %zu\n", count);
    else
        node_err(e);
}

static void node_stats(keytier_ctx *ctx)
{
    keytier_avail_stats s;
    keytier_err e = keytier_avail_stats_get(ctx, &s);
    if (e == KEYTIER_OK)
        printf("ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
               "\n",
               s.cache_hits, s.cache_misses, s.cache_syncs, s.cache_sync_rows,
               s.cache_invalidations);
    else
        node_err(e);
}

/* Runs one command line; false for quit. */
static bool node_command(keytier_ctx *ctx, char *line)
{
    char *save = NULL, *cmd = strtok_r(line, " \n", &save), *arg[NODE_ARGS];
    int n = 0;
    while (n < NODE_ARGS && (arg[n] = strtok_r(NULL, " \n", &save)) != NULL)
        n++;
    if (cmd == NULL || !strcmp(cmd, "quit"))
        return false;
    if (!strcmp(cmd, "create"))
        node_create(ctx, arg, n);
    else if (!strcmp(cmd, "read"))
        node_read(ctx, arg, n);
    else if (!strcmp(cmd, "destroy"))
        node_destroy(arg, n);
    else if (!strcmp(cmd, "count"))
        node_count(ctx, arg, n);
    else if (!strcmp(cmd, "stats"))
        node_stats(ctx);
    else
        printf("err KEYTIER_E_ARGS unknown command %s\n", cmd);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv)
{
    keytier_ctx *ctx = NULL;
    char *line = malloc(NODE_LINE_MAX);
    if (argc != 2 || line == NULL) {
        fprintf(stderr, "usage: kt-node CONFIG\n");
        free(line);
        return 2;
    }
    keytier_err e = keytier_ctx_open(argv[1], &ctx);
    if (e != KEYTIER_OK) {
        node_err(e);
        free(line);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, NODE_LINE_MAX, stdin) != NULL && node_command(ctx, line))
        ;
    keytier_ctx_close(ctx);
    free(line);
    return 0;
}
