/*
 * keytier dep roll | assign | migrate | recover | purge | secret ...:
 * the key lifecycle (docs/DESIGN.md §2 "Lifecycle").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum {
    OPT_TENANT = 256,
    OPT_WORKLOAD,
    OPT_KEY,
    OPT_NEW_KEY,
    OPT_MAILBOX,
    OPT_SITE,
    OPT_ALL,
    OPT_DEP,
    OPT_RUN,
    OPT_STATUS,
    OPT_KEY_A,
    OPT_KEY_B,
    OPT_DESTROY,
    OPT_YES,
    OPT_KEYSET,
    OPT_ROOT,
    OPT_ROLLOVER,
    OPT_RETIRE,
    OPT_CONTEXT,
    OPT_APPROVAL,
    OPT_DRY_RUN,
    OPT_DUE,
};

#define UNKNOWN_OPT(cli, argv)                                                 \
    cli_usage_error(cli, "unknown option %s", argv[optind - 1])

static int no_args(struct cli *cli, int argc, char **argv)
{
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    return CLI_OK;
}

/* ---- dep roll ------------------------------------------------------- */

static int cmd_dep_roll(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"key", required_argument, NULL, OPT_KEY},
        {"new-key", required_argument, NULL, OPT_NEW_KEY},
        {0},
    };
    const char *tenant = NULL, *key = NULL, *uri = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_NEW_KEY:
            uri = optarg;
            break;
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    if (!tenant || !key || !uri)
        return cli_usage_error(cli,
                               "--tenant, --key and --new-key are required");
    int slot = !strcmp(key, "a")   ? KEYTIER_ROOT_A
               : !strcmp(key, "b") ? KEYTIER_ROOT_B
                                   : -1;
    if (slot < 0)
        return cli_usage_error(cli, "--key is a or b, not '%s'", key);
    if (optind + 1 != argc)
        return cli_usage_error(cli, "one DEP id expected");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_dep_info d;
    keytier_err e = keytier_dep_roll(ctx, tenant, argv[optind], slot, uri, &d);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "dep_id", d.dep_id);
        cli_json_str(o, "policy_id", d.policy_id);
        cli_json_str(o, "key", key);
        cli_json_str(o, "uri", d.root_uri[slot]);
        cli_json_str(o, "wrap", d.wrap_mech[slot]);
        cli_json_str(o, "state", cli_dep_state_name(d.state));
        cli_json_put(o);
    } else {
        printf("DEP %s: customer key %s rolled to %s (%s)\n", d.dep_id,
               slot ? "B" : "A", d.root_uri[slot], d.wrap_mech[slot]);
    }
    return CLI_OK;
}

/* ---- migrations ------------------------------------------------------- */

static json_object *mig_json(const keytier_migration *m)
{
    json_object *o = json_object_new_object();
    cli_json_str(o, "migration_id", m->migration_id);
    cli_json_str(o, "tenant", m->tenant);
    cli_json_str(o, "workload", m->workload);
    cli_json_str(o, "target_dep_id", m->target_dep_id);
    cli_json_str(o, "scope", m->scope);
    cli_json_str(o, "operation", m->operation);
    json_object_object_add(o, "finished", json_object_new_boolean(m->finished));
    json_object_object_add(o, "done", json_object_new_int64((int64_t)m->done));
    json_object_object_add(o, "total",
                           json_object_new_int64((int64_t)m->total));
    json_object_object_add(o, "percent", json_object_new_double(m->percent));
    json_object_object_add(o, "rate", json_object_new_double(m->rate));
    json_object_object_add(o, "eta_seconds",
                           json_object_new_double(m->eta_seconds));
    return o;
}

static void mig_print(const keytier_migration *m)
{
    printf("migration %s (%s, %s)\n  target DEP %s\n  progress   %llu/%llu "
           "(%.1f%%)%s\n",
           m->migration_id, m->operation, m->scope, m->target_dep_id,
           (unsigned long long)m->done, (unsigned long long)m->total,
           m->percent, m->finished ? " finished" : "");
}

struct progress {
    struct cli *cli;
    bool tty;
    bool printed_final; /* --json: the finished line is out */
};

static int on_progress(void *arg, const keytier_migration *p)
{
    struct progress *pr = arg;
    if (pr->cli->json) {
        /* JSON lines: one per batch; the last one has finished: true. */
        cli_json_put(mig_json(p));
        fflush(stdout);
        pr->printed_final = p->finished;
    } else if (pr->tty) {
        char eta[32] = "?";
        if (p->eta_seconds >= 0)
            snprintf(eta, sizeof eta, "%.0fs", p->eta_seconds);
        int bar = (int)(p->percent / 5);
        fprintf(stderr, "\r[%-20.*s] %5.1f%% %llu/%llu %.0f keys/s, %s left ",
                bar, "####################", p->percent,
                (unsigned long long)p->done, (unsigned long long)p->total,
                p->rate, eta);
    }
    return 0;
}

static int run_migration(struct cli *cli, keytier_ctx *ctx, const char *id)
{
    struct progress pr = {cli, !cli->json && isatty(STDERR_FILENO), false};
    keytier_migration m;
    keytier_err e = keytier_migrate_run(ctx, id, on_progress, &pr, &m);
    if (pr.tty)
        fputc('\n', stderr);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        if (!pr.printed_final)
            cli_json_put(mig_json(&m));
    } else {
        printf("migration %s finished: %llu/%llu keys under DEP %s "
               "(%.0f keys/s)\n",
               m.migration_id, (unsigned long long)m.done,
               (unsigned long long)m.total, m.target_dep_id, m.rate);
    }
    return CLI_OK;
}

static int cmd_assign(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"mailbox", required_argument, NULL, OPT_MAILBOX},
        {"site", required_argument, NULL, OPT_SITE},
        {"all", no_argument, NULL, OPT_ALL},
        {"dep", required_argument, NULL, OPT_DEP},
        {"run", no_argument, NULL, OPT_RUN},
        {0},
    };
    const char *tenant = NULL, *workload = NULL, *name = NULL, *dep = NULL;
    bool all = false, run = false, site = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_WORKLOAD:
            workload = optarg;
            break;
        case OPT_MAILBOX:
            name = optarg;
            break;
        case OPT_SITE:
            name = optarg;
            site = true;
            break;
        case OPT_ALL:
            all = true;
            break;
        case OPT_DEP:
            dep = optarg;
            break;
        case OPT_RUN:
            run = true;
            break;
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    int rc = no_args(cli, argc, argv);
    if (rc != CLI_OK)
        return rc;
    if (!tenant || !dep || (name == NULL) == !all)
        return cli_usage_error(cli, "--tenant, --dep and one of --mailbox, "
                                    "--site or --all are required");
    if (workload == NULL)
        workload = site ? "SharePoint" : "Exchange";
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_migration m;
    keytier_err e = keytier_assign(ctx, tenant, workload, name, dep, &m);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json)
        cli_json_put(mig_json(&m));
    else if (m.migration_id[0] == '\0')
        printf("%s assigned to DEP %s (no data yet: a new key under it)\n",
               name, dep);
    else
        mig_print(&m);
    if (run && m.migration_id[0] != '\0')
        return run_migration(cli, ctx, m.migration_id);
    return CLI_OK;
}

static int cmd_migrate(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"status", no_argument, NULL, OPT_STATUS},
        {0},
    };
    const char *tenant = NULL;
    bool status = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_STATUS:
            status = true;
            break;
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    if (tenant == NULL || optind + 1 < argc)
        return cli_usage_error(cli, "--tenant and at most one migration id");
    const char *only = optind < argc ? argv[optind] : NULL;
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_migration *list = NULL;
    size_t n = 0;
    keytier_err e = keytier_migration_list(ctx, tenant, &list, &n);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    size_t matched = 0;
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        if (only && strcmp(only, list[i].migration_id) != 0)
            continue;
        matched++;
        if (status) {
            if (cli->json)
                cli_json_put(mig_json(&list[i]));
            else
                mig_print(&list[i]);
        } else if (!list[i].finished) {
            rc = run_migration(cli, ctx, list[i].migration_id);
        }
    }
    free(list);
    if (rc == CLI_OK && only && matched == 0)
        return cli_error(cli, KEYTIER_E_NOT_FOUND,
                         "no migration %s for tenant %s", only, tenant);
    return rc;
}

static int cmd_recover(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"key-a", required_argument, NULL, OPT_KEY_A},
        {"key-b", required_argument, NULL, OPT_KEY_B},
        {"approval", required_argument, NULL, OPT_APPROVAL},
        {0},
    };
    const char *tenant = NULL, *a = NULL, *b = NULL, *approval = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_KEY_A:
            a = optarg;
            break;
        case OPT_KEY_B:
            b = optarg;
            break;
        case OPT_APPROVAL:
            approval = optarg;
            break;
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    if (!tenant || !a || !b || optind + 1 != argc)
        return cli_usage_error(cli, "--tenant, --key-a, --key-b and the lost "
                                    "DEP's id are required");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_dep_info d;
    keytier_migration m;
    keytier_err e = keytier_dep_recover_approved(ctx, approval, tenant,
                                                 argv[optind], a, b, &d, &m);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = mig_json(&m);
        cli_json_str(o, "old_dep_id", argv[optind]);
        cli_json_str(o, "new_dep_id", d.dep_id);
        cli_json_str(o, "new_policy_id", d.policy_id);
        cli_json_put(o);
    } else {
        printf("new DEP %s (policy %s) replaces %s\n", d.dep_id, d.policy_id,
               argv[optind]);
    }
    return run_migration(cli, ctx, m.migration_id);
}

static const char *const purge_roles[] = {"customer key A", "customer key B",
                                          "availability key"};

static void purge_print_json(const char *tenant, bool dry,
                             const keytier_purge_detail *d)
{
    const keytier_purge_report *r = &d->report;
    json_object *o = json_object_new_object();
    cli_json_str(o, "tenant", tenant);
    json_object_object_add(o, "dry_run", json_object_new_boolean(dry));
    json_object_object_add(o, "deps", json_object_new_int64((int64_t)r->deps));
    json_object_object_add(
        o, "availability_keys_destroyed",
        json_object_new_int64((int64_t)r->avail_keys_destroyed));
    json_object_object_add(
        o, "customer_keys_destroyed",
        json_object_new_int64((int64_t)r->customer_keys_destroyed));
    json_object_object_add(o, "keys_kept",
                           json_object_new_int64((int64_t)d->keys_kept));
    json_object_object_add(
        o, "tier_keys_deleted",
        json_object_new_int64((int64_t)r->tier_keys_deleted));
    json_object_object_add(
        o, "cache_entries_wiped",
        json_object_new_int64((int64_t)r->cache_entries_wiped));
    json_object *keys = json_object_new_array();
    for (size_t i = 0; i < d->n_keys; i++) {
        const keytier_purge_key *k = &d->keys[i];
        json_object *j = json_object_new_object();
        cli_json_str(j, "dep_id", k->dep_id);
        cli_json_str(j, "role", purge_roles[k->slot]);
        cli_json_str(j, "uri", k->uri);
        cli_json_str(j, "action", keytier_purge_action_name(k->action));
        if (k->action == KEYTIER_PURGE_KEPT)
            cli_json_str(j, "kept_because", k->reason);
        json_object_array_add(keys, j);
    }
    json_object_object_add(o, "keys", keys);
    cli_json_put(o);
}

static void purge_print_text(const char *tenant, bool dry,
                             const keytier_purge_detail *d)
{
    const keytier_purge_report *r = &d->report;
    for (size_t i = 0; i < d->n_keys; i++) {
        const keytier_purge_key *k = &d->keys[i];
        printf("%s %s: %s", purge_roles[k->slot], k->uri,
               keytier_purge_action_name(k->action));
        if (k->action == KEYTIER_PURGE_KEPT)
            printf(", still used: %s", k->reason);
        printf("\n");
    }
    if (dry) {
        printf("dry run: tenant %s not purged: %zu DEP(s); nothing was "
               "changed\n",
               tenant, r->deps);
        return;
    }
    printf("tenant %s purged: %zu DEP(s), %zu availability key object(s) "
           "and %zu customer key object(s) destroyed, %zu kept (still used), "
           "%zu tier key(s) deleted\n",
           tenant, r->deps, r->avail_keys_destroyed, r->customer_keys_destroyed,
           d->keys_kept, r->tier_keys_deleted);
}

static int cmd_purge(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"destroy-customer-keys", no_argument, NULL, OPT_DESTROY},
        {"yes", no_argument, NULL, OPT_YES},
        {"approval", required_argument, NULL, OPT_APPROVAL},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {0},
    };
    const char *tenant = NULL, *approval = NULL;
    bool destroy = false, yes = false, dry = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_DESTROY:
            destroy = true;
            break;
        case OPT_YES:
            yes = true;
            break;
        case OPT_APPROVAL:
            approval = optarg;
            break;
        case OPT_DRY_RUN:
            dry = true;
            break;
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    int rc = no_args(cli, argc, argv);
    if (rc != CLI_OK)
        return rc;
    if (tenant == NULL)
        return cli_usage_error(cli, "--tenant is required");
    if (!yes && !dry)
        return cli_usage_error(cli,
                               "purge destroys tenant %s's keys for good: "
                               "confirm with --yes",
                               tenant);
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_purge_detail d;
    unsigned flags = (destroy ? KEYTIER_PURGE_CUSTOMER_KEYS : 0) |
                     (dry ? KEYTIER_PURGE_DRY_RUN : 0);
    keytier_err e =
        keytier_tenant_purge_detailed(ctx, approval, tenant, flags, &d);
    if (e != KEYTIER_OK) {
        /* What was decided before the stop, then the error. */
        for (size_t i = 0; i < d.n_keys && !cli->json; i++)
            fprintf(stderr, "%s %s: %s\n", purge_roles[d.keys[i].slot],
                    d.keys[i].uri, keytier_purge_action_name(d.keys[i].action));
        keytier_purge_detail_free(&d);
        return cli_fail_lib(cli, e);
    }
    if (cli->json)
        purge_print_json(tenant, dry, &d);
    else
        purge_print_text(tenant, dry, &d);
    keytier_purge_detail_free(&d);
    return CLI_OK;
}

/* ---- secrets ---------------------------------------------------------- */

#define SECRET_MAX (1u << 20)

static int read_all(struct cli *cli, const char *path, uint8_t **out,
                    size_t *len)
{
    int fd, rc = cli_in_open(cli, path, &fd);
    if (rc != CLI_OK)
        return rc;
    uint8_t *buf = malloc(SECRET_MAX + 1);
    size_t n = 0;
    ssize_t r = 1;
    while (buf != NULL && n <= SECRET_MAX &&
           (r = read(fd, buf + n, SECRET_MAX + 1 - n)) > 0)
        n += (size_t)r;
    if (fd != STDIN_FILENO)
        close(fd);
    if (buf == NULL || r < 0 || n > SECRET_MAX) {
        free(buf);
        return cli_error(cli, r < 0 ? KEYTIER_E_IO : KEYTIER_E_ARGS,
                         "input %s: %s", path ? path : "(stdin)",
                         r < 0 ? "read error" : "larger than 1 MiB");
    }
    *out = buf;
    *len = n;
    return CLI_OK;
}

static int write_out(struct cli *cli, const char *path, const uint8_t *p,
                     size_t n)
{
    struct cli_out o;
    int rc = cli_out_open(cli, &o, path);
    if (rc != CLI_OK)
        return rc;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(o.fd, p + off, n - off);
        if (w <= 0) {
            cli_out_abort(&o);
            return cli_error(cli, KEYTIER_E_IO, "cannot write %s",
                             path ? path : "(stdout)");
        }
        off += (size_t)w;
    }
    return cli_out_commit(cli, &o);
}

static int cmd_secret_create(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"keyset", required_argument, NULL, OPT_KEYSET},
        {"root", required_argument, NULL, OPT_ROOT},
        {"rollover-after", required_argument, NULL, OPT_ROLLOVER},
        {"retire-after", required_argument, NULL, OPT_RETIRE},
        {0},
    };
    const char *name = NULL, *root = NULL;
    long long roll = 90LL * 86400, retire = 365LL * 86400;
    char *end;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_KEYSET:
            name = optarg;
            break;
        case OPT_ROOT:
            root = optarg;
            break;
        case OPT_ROLLOVER:
        case OPT_RETIRE: {
            long long v = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 0)
                return cli_usage_error(cli, "%s: seconds expected, not '%s'",
                                       argv[optind - 1], optarg);
            if (c == OPT_ROLLOVER)
                roll = v;
            else
                retire = v;
            break;
        }
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    int rc = no_args(cli, argc, argv);
    if (rc != CLI_OK)
        return rc;
    if (!name || !root)
        return cli_usage_error(cli, "--keyset and --root are required");
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_err e = keytier_keyset_create(ctx, name, root, roll, retire);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "keyset", name);
        cli_json_str(o, "root", root);
        json_object_object_add(o, "current_version", json_object_new_int(1));
        json_object_object_add(o, "rollover_after",
                               json_object_new_int64(roll));
        json_object_object_add(o, "retire_after",
                               json_object_new_int64(retire));
        cli_json_put(o);
    } else {
        printf("keyset %s created under %s (rollover after %llds, retire "
               "after %llds)\n",
               name, root, roll, retire);
    }
    return CLI_OK;
}

static int cmd_secret_show(struct cli *cli, int argc, char **argv,
                           bool rollover)
{
    static const struct option opts[] = {
        {"keyset", required_argument, NULL, OPT_KEYSET},
        {0},
    };
    const char *name = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c != OPT_KEYSET)
            return UNKNOWN_OPT(cli, argv);
        name = optarg;
    }
    int rc = no_args(cli, argc, argv);
    if (rc != CLI_OK)
        return rc;
    if (!name)
        return cli_usage_error(cli, "--keyset is required");
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_err e = KEYTIER_OK;
    if (rollover)
        e = keytier_keyset_rollover(ctx, name, NULL);
    keytier_keyset_info ki;
    if (e == KEYTIER_OK)
        e = keytier_keyset_get(ctx, name, &ki);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "keyset", ki.name);
        cli_json_str(o, "root", ki.root_uri);
        json_object_object_add(o, "current_version",
                               json_object_new_int64(ki.current_version));
        json_object_object_add(o, "current_created",
                               json_object_new_int64(ki.current_created));
        json_object_object_add(o, "rollover_after",
                               json_object_new_int64(ki.rollover_after));
        json_object_object_add(o, "retire_after",
                               json_object_new_int64(ki.retire_after));
        cli_json_put(o);
    } else {
        printf("keyset %s\n  root      %s\n  current   version %u\n"
               "  rollover  after %llds\n  retire    after %llds\n",
               ki.name, ki.root_uri, (unsigned)ki.current_version,
               (long long)ki.rollover_after, (long long)ki.retire_after);
    }
    return CLI_OK;
}

static int cmd_secret_info(struct cli *cli, int argc, char **argv)
{
    return cmd_secret_show(cli, argc, argv, false);
}

/* One keyset of `secret rollover --due`: a JSON item or a text line. */
struct due_out {
    struct cli *cli;
    bool dry;
    json_object *items;
};

static void due_item(void *arg, const keytier_keyset_due *d)
{
    struct due_out *o = arg;
    if (o->cli->json) {
        json_object *j = json_object_new_object();
        cli_json_str(j, "keyset", d->name);
        json_object_object_add(j, "version", json_object_new_int64(d->version));
        json_object_object_add(j, "rolled", json_object_new_boolean(d->rolled));
        json_object_object_add(j, "retired",
                               json_object_new_int64((int64_t)d->retired));
        if (d->err != KEYTIER_OK) {
            cli_json_str(j, "error", keytier_error_name(d->err));
            cli_json_str(j, "message", d->detail);
        }
        json_object_array_add(o->items, j);
    } else if (d->err != KEYTIER_OK) {
        printf("keyset %s: failed: %s [%s]\n", d->name, d->detail,
               keytier_error_name(d->err));
    } else {
        printf("keyset %s: version %u current%s; %zu archived version%s %s\n",
               d->name, (unsigned)d->version,
               !d->rolled ? ""
               : o->dry   ? ", rollover due"
                          : " (rolled over)",
               d->retired, d->retired == 1 ? "" : "s",
               o->dry ? "due to retire" : "retired");
    }
}

static int secret_rollover_due(struct cli *cli, bool dry)
{
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    struct due_out o = {cli, dry, json_object_new_array()};
    keytier_keyset_due_report r;
    keytier_err e = keytier_keyset_rollover_due(ctx, dry, &r, due_item, &o);
    if (e != KEYTIER_OK) {
        json_object_put(o.items);
        return cli_fail_lib(cli, e);
    }
    if (cli->json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "dry_run", json_object_new_boolean(dry));
        json_object_object_add(j, "keysets",
                               json_object_new_int64((int64_t)r.keysets));
        json_object_object_add(j, "rolled",
                               json_object_new_int64((int64_t)r.rolled));
        json_object_object_add(j, "retired",
                               json_object_new_int64((int64_t)r.retired));
        json_object_object_add(j, "items", o.items);
        cli_json_put(j);
        return CLI_OK;
    }
    json_object_put(o.items);
    printf("%s%zu keyset%s: %zu %s over, %zu archived version%s %s\n",
           dry ? "dry run, nothing changed: " : "", r.keysets,
           r.keysets == 1 ? "" : "s", r.rolled, dry ? "due to roll" : "rolled",
           r.retired, r.retired == 1 ? "" : "s",
           dry ? "due to retire" : "retired");
    return CLI_OK;
}

static int cmd_secret_rollover(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"keyset", required_argument, NULL, OPT_KEYSET},
        {"due", no_argument, NULL, OPT_DUE},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {0},
    };
    bool due = false, dry = false, keyset = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c == OPT_DUE)
            due = true;
        else if (c == OPT_DRY_RUN)
            dry = true;
        else if (c == OPT_KEYSET)
            keyset = true;
        else
            return UNKNOWN_OPT(cli, argv);
    }
    if (!due) {
        if (dry)
            return cli_usage_error(cli, "--dry-run goes with --due");
        optind = 0; /* parsed again, as secret show */
        return cmd_secret_show(cli, argc, argv, true);
    }
    if (keyset)
        return cli_usage_error(cli, "--due and --keyset exclude each other");
    int rc = no_args(cli, argc, argv);
    return rc != CLI_OK ? rc : secret_rollover_due(cli, dry);
}

static int cmd_secret_crypt(struct cli *cli, int argc, char **argv,
                            bool protect)
{
    static const struct option opts[] = {
        {"keyset", required_argument, NULL, OPT_KEYSET},
        {"context", required_argument, NULL, OPT_CONTEXT},
        {0},
    };
    const char *name = NULL, *context = "", *in = NULL, *outp = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "i:o:", opts)) != -1) {
        switch (c) {
        case OPT_KEYSET:
            name = optarg;
            break;
        case OPT_CONTEXT:
            context = optarg;
            break;
        case 'i':
            in = optarg;
            break;
        case 'o':
            outp = optarg;
            break;
        default:
            return UNKNOWN_OPT(cli, argv);
        }
    }
    int rc = no_args(cli, argc, argv);
    if (rc != CLI_OK)
        return rc;
    if (!name)
        return cli_usage_error(cli, "--keyset is required");
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    uint8_t *data = NULL, *res = NULL;
    size_t len = 0, res_len = 0;
    rc = read_all(cli, in, &data, &len);
    if (rc != CLI_OK)
        return rc;
    keytier_err e =
        protect ? keytier_secret_protect(ctx, name, context, strlen(context),
                                         data, len, &res, &res_len)
                : keytier_secret_unprotect(ctx, name, context, strlen(context),
                                           data, len, &res, &res_len);
    keytier_secret_free(data, len);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    rc = write_out(cli, outp, res, res_len);
    keytier_secret_free(res, res_len);
    return rc;
}

static int cmd_secret_protect(struct cli *cli, int argc, char **argv)
{
    return cmd_secret_crypt(cli, argc, argv, true);
}

static int cmd_secret_unprotect(struct cli *cli, int argc, char **argv)
{
    return cmd_secret_crypt(cli, argc, argv, false);
}

#define MIG_JSON_HELP                                                          \
    "JSON: {migration_id, tenant, workload, target_dep_id, scope, "            \
    "operation,\nfinished, done, total, percent, rate, eta_seconds}\n"

const struct cli_cmd cli_lifecycle_cmds[] = {
    {"dep", "roll", "rewrap a DEP key under a new version of a customer key",
     "usage: keytier dep roll --tenant T --key a|b --new-key URI ID\n"
     "\n"
     "Rolls customer key A or B of DEP ID to a new root key (a new key "
     "object,\n"
     "e.g. a new CKA_ID, named by URI): the DEP key is wrapped under it, the\n"
     "new copy read back through the token, then it replaces the old copy in\n"
     "one store transaction. No data is re-encrypted. Refused for a key that\n"
     "is extractable, cannot wrap/unwrap, or sits in the other customer key's\n"
     "token. The DEP key is read through the customer keys only, never the\n"
     "availability key: after the customer revoked both keys the roll is\n"
     "refused (exit 4), during an outage of both it fails (exit 5).\n"
     "JSON: {dep_id, policy_id, key, uri, wrap, state}\n",
     cmd_dep_roll},
    {"assign", NULL, "assign a DEP to a mailbox, site or all of a tenant's",
     "usage: keytier assign --tenant T --dep ID (--mailbox M | --site S | "
     "--all)\n"
     "                      [--workload W] [--run]\n"
     "\n"
     "Assigns DEP ID. A mailbox or site without a key gets one under the DEP\n"
     "at once; existing keys are recorded as a migration (see migrate), run\n"
     "now with --run. The workload defaults to Exchange (SharePoint with\n"
     "--site). DEP keys are read through customer keys only: assigning out of\n"
     "or into a DEP whose customer revoked its keys is refused (exit "
     "4).\n" MIG_JSON_HELP,
     cmd_assign},
    {"migrate", NULL, "run (or resume) a tenant's migrations",
     "usage: keytier migrate --tenant T [--status] [ID]\n"
     "\n"
     "Runs every unfinished migration of the tenant (or only ID) until done,\n"
     "with a progress bar on a terminal. Resumable: after a crash or kill,\n"
     "run it again. --status prints progress without running.\n"
     "JSON lines, one per batch and a last one with finished: "
     "true;\n" MIG_JSON_HELP,
     cmd_migrate},
    {"recover", NULL, "replace a DEP whose customer keys are both lost",
     "usage: keytier recover --tenant T --key-a URI --key-b URI\n"
     "                       --approval APPROVAL ID\n"
     "\n"
     "Creates a new DEP from two new customer keys and migrates every key of\n"
     "DEP ID to it, reading the old DEP key through the availability key\n"
     "(internal operation 'recover', audited). The old DEP is then disabled.\n"
     "The one lifecycle command that uses the availability key: meant for\n"
     "customer keys that are lost; run it after a deliberate revocation only\n"
     "at the customer's request. Needs a live approval for operation\n"
     "recover of tenant T and scope ID (see 'keytier approval --help').\n"
     "JSON: the migration document plus old_dep_id, new_dep_id, "
     "new_policy_id,\nthen the migration's progress lines.\n",
     cmd_recover},
    {"purge", NULL, "destroy a leaving tenant's keys (crypto-shredding)",
     "usage: keytier purge --tenant T --yes --approval APPROVAL\n"
     "                     [--destroy-customer-keys]\n"
     "       keytier purge --tenant T --dry-run [--destroy-customer-keys]\n"
     "\n"
     "Destroys the availability keys of the tenant's DEPs, with\n"
     "--destroy-customer-keys also its customer root keys (their tokens'\n"
     "PINs must be configured), wipes cached keys and deletes every wrapped\n"
     "key of the tenant from the store. Afterwards nothing of the tenant\n"
     "decrypts. Safe to run again. Needs a live approval for operation\n"
     "purge of tenant T, scope * (see 'keytier approval --help').\n"
     "A key that a DEP of another tenant, a roll under way or a keyset\n"
     "still uses is never destroyed: it is kept, and the output and the\n"
     "audit record say which key and why. Each key is compared by what its\n"
     "URI resolves to (token and object), not by the URI's text.\n"
     "--dry-run lists what would be destroyed or kept and changes nothing\n"
     "(no approval needed, no --yes).\n"
     "Text: one line per key (role, URI, destroyed | kept, still used: WHO |\n"
     "already gone | would be destroyed), then the counts.\n"
     "JSON: {tenant, dry_run, deps, availability_keys_destroyed,\n"
     "customer_keys_destroyed, keys_kept, tier_keys_deleted,\n"
     "cache_entries_wiped, keys: [{dep_id, role, uri, action,\n"
     "kept_because}]}\n",
     cmd_purge},
    {"secret", "create", "create a keyset for service secrets",
     "usage: keytier secret create --keyset N --root URI\n"
     "                             [--rollover-after SECS] [--retire-after "
     "SECS]\n"
     "\n"
     "A keyset of AES-256 keys wrapped by root URI. Its current key rolls\n"
     "over automatically once older than --rollover-after (default 90 days);\n"
     "archived keys retire --retire-after (default 365 days) after archiving,\n"
     "and secrets still under them then fail with KEYTIER_E_RETIRED. 0\n"
     "disables either.\n"
     "JSON: {keyset, root, current_version, rollover_after, retire_after}\n",
     cmd_secret_create},
    {"secret", "protect", "protect a small secret with a keyset",
     "usage: keytier secret protect --keyset N [--context C] [-i FILE] [-o "
     "FILE]\n"
     "\n"
     "Encrypts up to 1 MiB under the keyset's current key (rolling it over\n"
     "first when due). --context is bound to it and must be given again.\n",
     cmd_secret_protect},
    {"secret", "unprotect", "open a protected secret",
     "usage: keytier secret unprotect --keyset N [--context C] [-i FILE] [-o "
     "FILE]\n"
     "\n"
     "Opens a secret under whichever key version it names. A retired\n"
     "version fails with KEYTIER_E_RETIRED (exit 1).\n",
     cmd_secret_unprotect},
    {"secret", "rollover", "roll a keyset over now, or every one due",
     "usage: keytier secret rollover --keyset N\n"
     "       keytier secret rollover --due [--dry-run]\n"
     "\n"
     "--keyset N: archives the current key of N and makes a new one.\n"
     "JSON: as secret show.\n"
     "\n"
     "--due: scheduled rollover, without any protect call: every keyset\n"
     "whose current key is --rollover-after old is rolled over, and its\n"
     "archived keys archived --retire-after ago are retired (secrets still\n"
     "under them then fail with KEYTIER_E_RETIRED: protect them again\n"
     "before). Each rollover and retirement is an audit record. Safe to run\n"
     "from several machines at once: a due key is rolled over once. Meant\n"
     "for a timer: hsm-config/keytier-rollover.timer and .service.\n"
     "--dry-run says what is due and changes nothing. A keyset that fails\n"
     "does not stop the others; the exit code is the first failure's.\n"
     "Text: one line per keyset, then the counts.\n"
     "JSON: {dry_run, keysets, rolled, retired, items: [{keyset, version,\n"
     "rolled, retired}]}\n",
     cmd_secret_rollover},
    {"secret", "show", "show a keyset",
     "usage: keytier secret show --keyset N\n"
     "\n"
     "JSON: {keyset, root, current_version, current_created, "
     "rollover_after,\nretire_after}\n",
     cmd_secret_info},
    {0},
};
