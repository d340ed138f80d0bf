/*
 * bench-lifecycle: key lifecycle figures (BENCHMARKS.md, "Lifecycle").
 *
 *   bench-lifecycle KEYTIER_MODULE SOFTHSM2_MODULE [mailbox-keys] [rolls]
 *
 * Builds its own world in a temp dir through the public API only: tokens
 * and roots made with keytier_token_init / keytier_root_generate (customer
 * key A on SoftHSM2, B and the service token on keytier's module), then
 *   1. migration: N (default 100000) mailbox keys under DEP 1 assigned to
 *      DEP 2 and migrated in one keytier_migrate_run: keys/s;
 *   2. roll: customer key A rolled R times (default 20) to fresh roots on
 *      SoftHSM2, then customer key B R times on keytier's module:
 *      p50 / max per roll (wrap, store, read-back through the token, swap).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "keytier.h"

const char *bench_prog = "bench-lifecycle";

static char dir[200];

static void roll_series(keytier_ctx *ctx, const char *module, const char *token,
                        const char *dep, int slot, int n, const char *what)
{
    double *t = calloc((size_t)n, sizeof *t);
    if (t == NULL)
        bench_die("out of memory");
    for (int i = 0; i < n; i++) {
        char label[32], uri[KEYTIER_URI_MAX];
        snprintf(label, sizeof label, "roll-%c-%d", slot ? 'b' : 'a', i);
        BENCH_CHECK(keytier_root_generate(module, token, "1234", label,
                                          KEYTIER_ROOT_TYPE_AES256, uri));
        double t0 = bench_now();
        BENCH_CHECK(keytier_dep_roll(ctx, "org-bench", dep, slot, uri, NULL));
        t[i] = bench_now() - t0;
    }
    double p50 = bench_percentile(t, (size_t)n, 0.5); /* sorts t */
    printf("roll %-34s  %d rolls  p50 %7.2f ms  max %7.2f ms\n", what, n,
           p50 * 1e3, t[n - 1] * 1e3);
    free(t);
}

static int migrate_progress(void *arg, const keytier_migration *p)
{
    (void)p;
    (*(unsigned *)arg)++;
    return 0;
}

/* The temp dir and the token configurations of keytier's module and
 * SoftHSM2 in it (KEYTIER_CONF, SOFTHSM2_CONF). */
static void make_dir(void)
{
    char path[320], text[2048];
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0' || strlen(tmp) > 150)
        tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/kt-bench-lc-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL)
        bench_die("mkdtemp");
    snprintf(path, sizeof path, "%s/keytier.conf", dir);
    snprintf(text, sizeof text,
             "token_dir = %s/kt\nslots = 8\npin_kdf_cost = 10\n"
             "log_level = error\n",
             dir);
    bench_write_file(path, text);
    setenv("KEYTIER_CONF", path, 1);
    snprintf(path, sizeof path, "%s/softhsm2.conf", dir);
    snprintf(text, sizeof text,
             "directories.tokendir = %s/sh\nobjectstore.backend = file\n"
             "log.level = ERROR\n",
             dir);
    bench_write_file(path, text);
    setenv("SOFTHSM2_CONF", path, 1);
    snprintf(text, sizeof text, "mkdir -p %s/sh", dir);
    if (system(text) != 0)
        bench_die("mkdir");
}

/* Tokens, two roots on each vault, the library opened on them and two
 * DEPs, D1 and D2, one on each pair of roots. */
static keytier_ctx *open_world(const char *kt_mod, const char *sh_mod,
                               keytier_dep_info *d1, keytier_dep_info *d2)
{
    char path[320], text[2048];
    BENCH_CHECK(keytier_token_init(sh_mod, "VaultA", "5678", "1234", NULL));
    BENCH_CHECK(keytier_token_init(kt_mod, "VaultB", "5678", "1234", NULL));
    BENCH_CHECK(keytier_token_init(kt_mod, "Service", "5678", "1234", NULL));
    char a1[KEYTIER_URI_MAX], b1[KEYTIER_URI_MAX], a2[KEYTIER_URI_MAX],
        b2[KEYTIER_URI_MAX];
    BENCH_CHECK(keytier_root_generate(sh_mod, "VaultA", "1234", "a1",
                                      KEYTIER_ROOT_TYPE_AES256, a1));
    BENCH_CHECK(keytier_root_generate(kt_mod, "VaultB", "1234", "b1",
                                      KEYTIER_ROOT_TYPE_AES256, b1));
    BENCH_CHECK(keytier_root_generate(sh_mod, "VaultA", "1234", "a2",
                                      KEYTIER_ROOT_TYPE_AES256, a2));
    BENCH_CHECK(keytier_root_generate(kt_mod, "VaultB", "1234", "b2",
                                      KEYTIER_ROOT_TYPE_AES256, b2));
    snprintf(path, sizeof path, "%s/lib.conf", dir);
    snprintf(text, sizeof text,
             "module = %s\nmodule = %s\nservice_token = pkcs11:token=Service\n"
             "store = %s/store/keytier.db\npin.VaultA = value:1234\n"
             "pin.VaultB = value:1234\npin.Service = value:1234\n"
             "log_level = error\n",
             sh_mod, kt_mod, dir);
    bench_write_file(path, text);
    keytier_ctx *ctx = NULL;
    BENCH_CHECK(keytier_ctx_open(path, &ctx));
    BENCH_CHECK(keytier_dep_create(ctx, "org-bench", "Exchange", a1, b1, d1));
    BENCH_CHECK(keytier_dep_create(ctx, "org-bench", "Exchange", a2, b2, d2));
    return ctx;
}

/* N mailbox keys created under DEP1, then assigned to DEP2 and migrated in
 * one keytier_migrate_run. */
static void migrate_series(keytier_ctx *ctx, const char *dep1, const char *dep2,
                           long n_keys)
{
    const keytier_request req = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE,
                                 "bench", NULL};
    keytier_key *dk = NULL;
    BENCH_CHECK(keytier_dep_key_open(ctx, &req, "org-bench", dep1, &dk));
    double t0 = bench_now();
    for (long i = 0; i < n_keys; i++) {
        char name[32];
        snprintf(name, sizeof name, "mbx-%07ld", i);
        BENCH_CHECK(keytier_key_create(dk, name, NULL));
    }
    double t_create = bench_now() - t0;
    keytier_key_close(dk);

    keytier_migration m;
    unsigned batches = 0;
    BENCH_CHECK(keytier_assign(ctx, "org-bench", "Exchange", NULL, dep2, &m));
    t0 = bench_now();
    BENCH_CHECK(keytier_migrate_run(ctx, m.migration_id, migrate_progress,
                                    &batches, &m));
    double t_mig = bench_now() - t0;
    if (!m.finished || m.done != (uint64_t)n_keys)
        bench_die("migration incomplete: %llu/%ld", (unsigned long long)m.done,
                  n_keys);
    printf("mailbox keys created          %ld in %.2f s  (%.0f keys/s)\n",
           n_keys, t_create, (double)n_keys / t_create);
    printf("migration to a new DEP        %ld keys in %.2f s  (%.0f keys/s, "
           "%u batches, each one store transaction)\n",
           n_keys, t_mig, (double)n_keys / t_mig, batches);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        bench_die("usage: bench-lifecycle KEYTIER_MODULE SOFTHSM2_MODULE "
                  "[mailbox-keys] [rolls]");
    char kt_mod[512], sh_mod[512], text[2048];
    if (realpath(argv[1], kt_mod) == NULL || realpath(argv[2], sh_mod) == NULL)
        bench_die("module path");
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) == 3)
        printf("load average at start         %.2f %.2f %.2f\n", load[0],
               load[1], load[2]);
    long n_keys = argc > 3 ? atol(argv[3]) : 100000;
    int rolls = argc > 4 ? atoi(argv[4]) : 20;
    if (n_keys < 1 || rolls < 1)
        bench_die("counts must be positive");
    make_dir();
    keytier_dep_info d1, d2;
    keytier_ctx *ctx = open_world(kt_mod, sh_mod, &d1, &d2);
    migrate_series(ctx, d1.dep_id, d2.dep_id, n_keys);
    roll_series(ctx, sh_mod, "VaultA", d2.dep_id, KEYTIER_ROOT_A, rolls,
                "key A (AES, SoftHSM2)");
    roll_series(ctx, kt_mod, "VaultB", d2.dep_id, KEYTIER_ROOT_B, rolls,
                "key B (AES, keytier module)");
    keytier_ctx_close(ctx);
    snprintf(text, sizeof text, "rm -rf %s", dir);
    if (system(text) != 0)
        bench_die("cleanup");
    return 0;
}
