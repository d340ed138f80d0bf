/*
 * keytier worker: a long-running process that runs the lifecycle work of
 * every tenant (migrations, rolls a dead process left, keysets due), with
 * any number of other workers on the same store (keytier_worker_pass,
 * docs/DESIGN.md "Workers").
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

enum {
    OPT_ONCE = 256,
    OPT_BATCH,
    OPT_LEASE,
    OPT_POLL,
    OPT_ID,
};

/* The signal that asked the worker to stop (0: none yet). */
static volatile sig_atomic_t worker_signal;

static void worker_on_signal(int sig)
{
    worker_signal = sig;
}

static int worker_stop(void *arg)
{
    (void)arg;
    return worker_signal != 0;
}

struct worker_run {
    struct cli *cli;
    const char *id;
};

static json_object *worker_event_json(const char *id,
                                      const keytier_worker_event *ev)
{
    json_object *o = json_object_new_object();
    cli_json_str(o, "worker", id);
    cli_json_str(o, "event", ev->what);
    cli_json_str(o, "tenant", ev->tenant);
    cli_json_str(o, "id", ev->id);
    json_object_object_add(o, "claimed",
                           json_object_new_int64((int64_t)ev->claimed));
    json_object_object_add(o, "moved",
                           json_object_new_int64((int64_t)ev->moved));
    json_object_object_add(o, "lost", json_object_new_int64((int64_t)ev->lost));
    json_object_object_add(o, "taken_over",
                           json_object_new_int64((int64_t)ev->taken_over));
    json_object_object_add(o, "done", json_object_new_int64((int64_t)ev->done));
    json_object_object_add(o, "total",
                           json_object_new_int64((int64_t)ev->total));
    json_object_object_add(o, "rolled",
                           json_object_new_int64((int64_t)ev->rolled));
    json_object_object_add(o, "retired",
                           json_object_new_int64((int64_t)ev->retired));
    if (ev->err != KEYTIER_OK) {
        cli_json_str(o, "error", keytier_error_name(ev->err));
        cli_json_str(o, "detail", ev->detail);
    }
    return o;
}

/* One line per step: stdout, or a JSON line with --json. */
static void worker_event(void *arg, const keytier_worker_event *ev)
{
    struct worker_run *w = arg;
    if (w->cli->json) {
        cli_json_put(worker_event_json(w->id, ev));
    } else if (!strcmp(ev->what, "migration batch")) {
        printf("worker %s: migration %s (tenant %s): %zu claimed (%zu taken "
               "over), %zu moved, %zu lost; %llu/%llu done\n",
               w->id, ev->id, ev->tenant, ev->claimed, ev->taken_over,
               ev->moved, ev->lost, (unsigned long long)ev->done,
               (unsigned long long)ev->total);
    } else if (!strcmp(ev->what, "keysets")) {
        printf("worker %s: keysets: %zu rolled over, %zu versions retired\n",
               w->id, ev->rolled, ev->retired);
    } else {
        printf("worker %s: %s %s%s%s\n", w->id, ev->what, ev->id,
               ev->tenant[0] ? " of tenant " : "", ev->tenant);
    }
    if (ev->err != KEYTIER_OK)
        fprintf(stderr, "keytier worker %s: %s %s: %s [%s]\n", w->id, ev->what,
                ev->id, ev->detail, keytier_error_name(ev->err));
    fflush(stdout);
}

/* Sleeps ms milliseconds, or less when a stop signal comes. */
static void worker_pause(uint32_t ms)
{
    while (ms > 0 && !worker_signal) {
        uint32_t step = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int worker_num(struct cli *cli, const char *opt, const char *arg,
                      unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg == '\0' || *arg == '-' || *end != '\0' || errno != 0 || v < lo ||
        v > hi)
        return cli_usage_error(cli, "%s: a number from %lu to %lu, not '%s'",
                               opt, lo, hi, arg);
    *out = v;
    return CLI_OK;
}

struct worker_args {
    bool once;
    const char *id;
    unsigned long batch, lease_ms, poll_ms; /* 0: the configuration's */
};

static int worker_parse(struct cli *cli, int argc, char **argv,
                        struct worker_args *a)
{
    static const struct option opts[] = {
        {"once", no_argument, NULL, OPT_ONCE},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"lease-ms", required_argument, NULL, OPT_LEASE},
        {"poll-ms", required_argument, NULL, OPT_POLL},
        {"id", required_argument, NULL, OPT_ID},
        {0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c == OPT_ONCE)
            a->once = true;
        else if (c == OPT_ID)
            a->id = optarg;
        else if (c == OPT_BATCH)
            rc = worker_num(cli, "--batch", optarg, 1, 100000, &a->batch);
        else if (c == OPT_LEASE)
            rc = worker_num(cli, "--lease-ms", optarg, 1000, 86400000,
                            &a->lease_ms);
        else if (c == OPT_POLL)
            rc = worker_num(cli, "--poll-ms", optarg, 10, 3600000, &a->poll_ms);
        else
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
    }
    if (rc == CLI_OK && optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    return rc;
}

static void worker_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = worker_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static int cmd_worker(struct cli *cli, int argc, char **argv)
{
    struct worker_args a = {0};
    int rc = worker_parse(cli, argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    worker_signals();
    keytier_ctx *ctx;
    rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    char id[KEYTIER_WORKER_ID_MAX + 1];
    keytier_err e = a.id ? KEYTIER_OK : keytier_worker_id(id, sizeof id);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    size_t batch;
    uint32_t lease, poll;
    keytier_worker_defaults(ctx, &batch, &lease, &poll);
    struct worker_run run = {cli, a.id ? a.id : id};
    keytier_worker_opts o = {run.id,
                             a.batch ? a.batch : batch,
                             a.lease_ms ? (uint32_t)a.lease_ms : lease,
                             worker_stop,
                             worker_event,
                             &run};
    if (!cli->json)
        fprintf(stderr,
                "keytier worker %s: started (batch %zu, lease %u ms, poll %lu "
                "ms)\n",
                run.id, o.batch, o.lease_ms, a.poll_ms ? a.poll_ms : poll);
    for (;;) {
        keytier_worker_report rep;
        e = keytier_worker_pass(ctx, &o, &rep);
        if (a.once || worker_signal)
            break;
        worker_pause(a.poll_ms ? (uint32_t)a.poll_ms : poll);
        if (worker_signal)
            break;
    }
    if (!cli->json)
        fprintf(stderr, "keytier worker %s: %s\n", run.id,
                worker_signal ? "stopped by a signal, claims released"
                              : "pass done");
    /* A stop signal ends the worker cleanly whatever its last pass did:
     * each failure was reported as it happened. */
    if (worker_signal || e == KEYTIER_OK)
        return CLI_OK;
    return cli_fail_lib(cli, e);
}

const struct cli_cmd cli_worker_cmds[] = {
    {"worker", NULL, "run the lifecycle work of every tenant, with others",
     "usage: keytier worker [--once] [--batch N] [--lease-ms N] [--poll-ms N]\n"
     "                      [--id ID]\n"
     "\n"
     "Runs until SIGTERM or SIGINT the lifecycle work of every tenant in\n"
     "the store: migrations (assign, recover) in batches, DEPs a dead\n"
     "process left rolling or registering, keysets due for rollover. Any\n"
     "number of workers, on this machine or others sharing the store, may\n"
     "run at once: each claims a batch of a migration's keys under a lease\n"
     "and writes it only while the claim is still its own; a worker that\n"
     "dies has its claims taken over by another once the lease has run out.\n"
     "No key is rewrapped twice or lost. Progress is in the store: `keytier\n"
     "migrate --tenant T --status` shows it from any machine.\n"
     "\n"
     "  --once        one pass over the work, then exit (its exit code is\n"
     "                the first failure's)\n"
     "  --batch N     keys claimed at once (default: worker.batch, 256)\n"
     "  --lease-ms N  how long a claim stays this worker's (default:\n"
     "                worker.lease_ms, 30000); keep it well above a batch's\n"
     "                time\n"
     "  --poll-ms N   pause when nothing is runnable (default:\n"
     "                worker.poll_ms, 5000)\n"
     "  --id ID       the worker's id (default: host:pid:random)\n"
     "\n"
     "SIGTERM or SIGINT: the current batch is finished (or its claims\n"
     "released, so another worker takes them at once), then exit 0.\n"
     "Text: one line per batch on stdout (claimed, taken over, moved, lost,\n"
     "done/total); a batch whose claim was taken over writes nothing and\n"
     "says so [KEYTIER_E_LEASE_LOST]; failures on stderr.\n"
     "JSON: one line per step: {worker, event, tenant, id, claimed, moved,\n"
     "lost, taken_over, done, total, rolled, retired[, error, detail]}.\n",
     cmd_worker},
    {0},
};
