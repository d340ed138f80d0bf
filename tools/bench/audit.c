/*
 * bench-audit: the cost of the audit log's keyed anchor, through the
 * public API (BENCHMARKS.md "Availability").
 *
 *   tools/bench/audit.sh [BUILD_DIR] [records per round] [rounds]
 *
 *   bench-audit PLAIN_CONF ANCHORED_CONF ROOT_URI RECORDS ROUNDS
 * Two contexts on keytier's module, each with its own store and audit log:
 * PLAIN_CONF without service_token (appends are not anchored),
 * ANCHORED_CONF with it (after every append: one HMAC on the service token
 * through the call pool and one store upsert).  Each context has a keyset
 * under ROOT_URI; the timed operation is keytier_keyset_rollover, the
 * cheapest public call that writes exactly one audit record (one AES key
 * made and wrapped by the root, one store transaction, one append).
 * Rounds alternate RECORDS rollovers in each context; the difference
 * between the two is the anchor.  Wall time and process CPU time (every
 * thread, pool workers included) per record.  Both logs are verified at
 * the end, the anchored one with its anchor.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "keytier.h"

const char *bench_prog = "bench-audit";

/* n rollovers of keyset "bench"; adds the seconds spent to *w and *c. */
static void run(keytier_ctx *ctx, int n, double *w, double *c)
{
    double w0 = bench_now(), c0 = bench_cpu_process();

    for (int i = 0; i < n; i++)
        BENCH_CHECK(keytier_keyset_rollover(ctx, "bench", NULL));
    *w += bench_now() - w0;
    *c += bench_cpu_process() - c0;
}

int main(int argc, char **argv)
{
    keytier_ctx *ctx[2];
    double w[2] = {0, 0}, c[2] = {0, 0};
    int n, rounds;

    if (argc != 6 || (n = atoi(argv[4])) <= 0 || (rounds = atoi(argv[5])) <= 0)
        bench_die("usage: bench-audit PLAIN_CONF ANCHORED_CONF ROOT_URI "
                  "RECORDS ROUNDS");
    for (int k = 0; k < 2; k++) {
        BENCH_CHECK(keytier_ctx_open(argv[1 + k], &ctx[k]));
        BENCH_CHECK(keytier_keyset_create(ctx[k], "bench", argv[3], 0, 0));
        /* Warm up: sessions opened, the anchor key generated. */
        run(ctx[k], 1, &w[k], &c[k]);
        w[k] = c[k] = 0;
    }
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++)
            run(ctx[k], n, &w[k], &c[k]);

    char path[4200];
    uint64_t bad = 0, records = 0;
    BENCH_CHECK(keytier_audit_log_path(ctx[0], path, sizeof path));
    BENCH_CHECK(keytier_audit_verify(path, &bad, &records));
    keytier_audit_report rep;
    BENCH_CHECK(keytier_audit_verify_anchored(ctx[1], NULL, &rep));

    double per = (double)n * rounds;
    printf("records per case: %d (%d rounds of %d, alternating)\n", n * rounds,
           rounds, n);
    printf("| keyset rollover (one audit record each) | records/s (wall) | "
           "wall us/record | CPU us/record |\n|---|---|---|---|\n");
    for (int k = 0; k < 2; k++)
        printf("| %s | %.0f | %.1f | %.1f |\n",
               k ? "with anchor (HMAC on the service token + store upsert)"
                 : "without anchor (no service_token)",
               per / w[k], w[k] / per * 1e6, c[k] / per * 1e6);
    printf("| the anchor (difference) | | %.1f | %.1f |\n",
           (w[1] - w[0]) / per * 1e6, (c[1] - c[0]) / per * 1e6);
    printf("plain log verified: %llu records; anchored log verified: %llu "
           "records, anchored at %llu\n",
           (unsigned long long)records, (unsigned long long)rep.records,
           (unsigned long long)rep.anchored_seq);
    keytier_ctx_close(ctx[0]);
    keytier_ctx_close(ctx[1]);
    return 0;
}
