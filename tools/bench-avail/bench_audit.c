/*
 * bench-audit: audit-log appends per second without and with the keyed
 * anchor (BENCHMARKS.md "Audit log anchor").
 *
 *   tools/bench-avail/audit.sh [BUILD_DIR] [records per round]
 *
 *   bench-audit CONF RECORDS ROUNDS
 * CONF is a library configuration whose service_token is on keytier's
 * module.  Rounds alternate: RECORDS appends to a log without the anchor
 * hook (the append as before: build, write, fdatasync), then RECORDS to a
 * log with it (plus one HMAC on the service token through the call pool
 * and one SQLite upsert per record).  Wall time and process CPU time
 * (getrusage: every thread, pool workers included) per record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "kt_lib.h"

#define DIE(...)                                                               \
    do {                                                                       \
        fprintf(stderr, "bench-audit: " __VA_ARGS__);                          \
        fprintf(stderr, "\n");                                                 \
        exit(1);                                                               \
    } while (0)

static double wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Appends n records to path; adds the seconds spent to *w and *c. */
static void run(keytier_ctx *ctx, const char *path, bool anchor, int n,
                double *w, double *c)
{
    kt_audit *a;
    double w0, c0;

    if (kt_audit_open(path, &a) != KEYTIER_OK)
        DIE("%s", keytier_last_error_detail());
    if (anchor)
        kt_audit_anchor_attach(ctx, a);
    w0 = wall();
    c0 = cpu();
    for (int i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "OrganizationId",
                               json_object_new_string("org-bench"));
        json_object_object_add(o, "RequestId",
                               json_object_new_string("bench-request"));
        if (kt_audit_append(a, "Bench", o, NULL) != KEYTIER_OK)
            DIE("append: %s", keytier_last_error_detail());
    }
    *w += wall() - w0;
    *c += cpu() - c0;
    kt_audit_close(a);
}

int main(int argc, char **argv)
{
    keytier_ctx *ctx;
    char plain[4200], anchored[4200];
    double w[2] = {0, 0}, c[2] = {0, 0};
    int n, rounds;

    if (argc != 4 || (n = atoi(argv[2])) <= 0 || (rounds = atoi(argv[3])) <= 0)
        DIE("usage: bench-audit CONF RECORDS ROUNDS");
    if (keytier_ctx_open(argv[1], &ctx) != KEYTIER_OK)
        DIE("%s", keytier_last_error_detail());
    snprintf(plain, sizeof plain, "%s.plain.jsonl", ctx->cfg.store_path);
    snprintf(anchored, sizeof anchored, "%s.anchored.jsonl",
             ctx->cfg.store_path);
    /* Warm up: the anchor key is generated, sessions opened. */
    run(ctx, anchored, true, 1, &w[1], &c[1]);
    w[1] = c[1] = 0;
    for (int r = 0; r < rounds; r++) {
        run(ctx, plain, false, n, &w[0], &c[0]);
        run(ctx, anchored, true, n, &w[1], &c[1]);
    }
    keytier_audit_report rep;
    keytier_err e = keytier_audit_verify_anchored(ctx, anchored, &rep);
    if (e != KEYTIER_OK)
        DIE("anchored log: %s", keytier_last_error_detail());
    printf("records per case: %d (%d rounds of %d, alternating)\n", n * rounds,
           rounds, n);
    printf("| append | records/s (wall) | wall us/record | CPU us/record |\n");
    printf("|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        double per = (double)n * rounds;
        printf("| %s | %.0f | %.1f | %.1f |\n",
               k ? "with anchor (HMAC on the service token + store upsert)"
                 : "without anchor (before)",
               per / w[k], w[k] / per * 1e6, c[k] / per * 1e6);
    }
    printf("anchored log verified: %llu records, anchored at %llu\n",
           (unsigned long long)rep.records,
           (unsigned long long)rep.anchored_seq);
    keytier_ctx_close(ctx);
    return 0;
}
