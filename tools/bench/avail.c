/*
 * bench-avail: availability benchmarks (BENCHMARKS.md "Availability").
 *
 *   tools/bench/avail.sh BUILD_DIR      (serves the vaults, runs this)
 *
 * Environment from tests/outage/outage.sh: vault tokens A and B behind two
 * `p11-kit server` processes (KT_OUTAGE_ADDR_A/B, KT_OUTAGE_PID_A/B), the
 * service token in a local SoftHSM2 (SOFTHSM2_MODULE), a scratch directory
 * (KT_OUTAGE_DIR).  Measures
 *   1. cold DEP-key reads (cache off), p50/p99: both vaults healthy, A hung
 *      (SIGSTOP), both hung (the availability key after the deadline);
 *   2. cached reads per second on 1 and 2 threads through the public API:
 *      keytier_dep_key_open (DEP key) and keytier_key_open (a mailbox key
 *      under it), each open followed by keytier_key_close; the statistics
 *      (keytier_avail_stats_get) prove that no read reached a token.
 *      Wall-clock rate and the rate per CPU-second of the reading threads
 *      (CLOCK_THREAD_CPUTIME_ID), which holds on a busy machine.
 */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "bench.h"
#include "keytier.h"

const char *bench_prog = "bench-avail";

#define HEDGE_MS    50
#define DEADLINE_MS 1000

static const char *addr_a, *addr_b, *top, *softhsm_module, *client_module;
static pid_t pid_a, pid_b;
static char conf[600];
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "bench", NULL};

/* Signals the server and its per-connection children, by PID. */
static void server_signal(pid_t pid, int sig)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t kids[64];
    int n = 0;

    while (d && (e = readdir(d)) && n < 64) {
        char path[300], buf[512];
        FILE *f;
        long ppid = -1;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        if (fgets(buf, sizeof buf, f)) {
            char *rp = strrchr(buf, ')');
            if (rp)
                sscanf(rp + 2, "%*c %ld", &ppid);
        }
        fclose(f);
        if (ppid == (long)pid)
            kids[n++] = (pid_t)atol(e->d_name);
    }
    if (d)
        closedir(d);
    kill(pid, sig);
    for (int i = 0; i < n; i++)
        kill(kids[i], sig);
}

static void root_create(const char *address, const char *token,
                        const char *label)
{
    CK_FUNCTION_LIST *fl;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CK_SESSION_HANDLE s = 0;
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BYTE exp[] = {1, 0, 1};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_MODULUS_BITS, &bits, sizeof bits},
        {CKA_PUBLIC_EXPONENT, exp, sizeof exp},
        {CKA_WRAP, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_UNWRAP, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE hp, hq;
    bool found = false;

    setenv("P11_KIT_SERVER_ADDRESS", address, 1);
    fl = p11_kit_module_load(client_module, 0);
    unsetenv("P11_KIT_SERVER_ADDRESS");
    if (!fl || p11_kit_module_initialize(fl) != CKR_OK ||
        fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        bench_die("cannot reach %s", address);
    for (CK_ULONG i = 0; i < n && !found; i++) {
        CK_TOKEN_INFO ti;
        if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
            memcmp(ti.label, token, strlen(token)) != 0)
            continue;
        found = fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                  NULL, NULL, &s) == CKR_OK;
    }
    if (!found ||
        fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4) != CKR_OK ||
        fl->C_GenerateKeyPair(s, &mech, pub, 5, priv, 6, &hp, &hq) != CKR_OK)
        bench_die("cannot make root %s in %s", label, token);
    fl->C_CloseSession(s);
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
}

static keytier_ctx *ctx_open(const char *extra)
{
    FILE *f = fopen(conf, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    keytier_ctx *ctx;

    if (!f)
        bench_die("cannot write %s", conf);
    fprintf(
        f,
        "remote = %s\nremote = %s\nmodule = %s\n"
        "service_token = pkcs11:token=Service\nstore = %s/bench.db\n"
        "pin.VaultA = value:1234\npin.VaultB = value:1234\n"
        "pin.Service = value:1234\nallow_oaep_sha1 = yes\nlog_level = error\n"
        "avail.audit_log = %s/bench-audit.jsonl\n"
        "avail.call_deadline_ms = %d\navail.hedge_ms = %d\n%s\n",
        addr_a, addr_b, softhsm_module, top, top, DEADLINE_MS, HEDGE_MS, extra);
    fclose(f);
    BENCH_CHECK(keytier_ctx_open(conf, &ctx));
    return ctx;
}

static void cold(keytier_ctx *ctx, const char *dep, const char *what, int n)
{
    double *ms = malloc(sizeof(double) * (size_t)n);
    keytier_avail_stats s0, s1;

    BENCH_CHECK(keytier_avail_stats_get(ctx, &s0));
    for (int i = 0; i < n; i++) {
        keytier_key *k;
        double t = bench_now();
        BENCH_CHECK(keytier_dep_key_open(ctx, &user, "org-1", dep, &k));
        ms[i] = (bench_now() - t) * 1e3;
        keytier_key_close(k);
    }
    BENCH_CHECK(keytier_avail_stats_get(ctx, &s1));
    printf("| cold DEP-key read, %s | %d | %.2f | %.2f | %llu |\n", what, n,
           bench_percentile(ms, (size_t)n, 0.50),
           bench_percentile(ms, (size_t)n, 0.99),
           (unsigned long long)(s1.fallbacks - s0.fallbacks));
    free(ms);
}

struct hit_arg {
    keytier_ctx *ctx;
    keytier_key *parent; /* tier reads: the DEP key */
    const char *dep, *key_id;
    double seconds;
    uint64_t done;
    double cpu; /* seconds of CPU of the reading thread */
};

static void *api_hits(void *p)
{
    struct hit_arg *a = p;
    double end = bench_now() + a->seconds, c0 = bench_cpu_thread();

    while (bench_now() < end)
        for (int i = 0; i < 100; i++) {
            keytier_key *k;
            BENCH_CHECK(
                keytier_dep_key_open(a->ctx, &user, "org-1", a->dep, &k));
            keytier_key_close(k);
            a->done++;
        }
    a->cpu = bench_cpu_thread() - c0;
    return NULL;
}

static void *tier_hits(void *p)
{
    struct hit_arg *a = p;
    double end = bench_now() + a->seconds, c0 = bench_cpu_thread();

    while (bench_now() < end)
        for (int i = 0; i < 100; i++) {
            keytier_key *k;
            BENCH_CHECK(keytier_key_open(a->parent, a->key_id, &k));
            keytier_key_close(k);
            a->done++;
        }
    a->cpu = bench_cpu_thread() - c0;
    return NULL;
}

static void rate(const char *what, void *(*fn)(void *), struct hit_arg *tmpl,
                 int threads)
{
    pthread_t th[2];
    struct hit_arg a[2];
    uint64_t total = 0;
    double cpu = 0;

    for (int i = 0; i < threads; i++) {
        a[i] = *tmpl;
        pthread_create(&th[i], NULL, fn, &a[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += a[i].done;
        cpu += a[i].cpu;
    }
    printf("| %s, %d thread%s | %.0f | %.0f |\n", what, threads,
           threads > 1 ? "s" : "", (double)total / tmpl->seconds,
           cpu > 0 ? (double)total / cpu : 0.0);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);

    if (!v || !*v)
        bench_die("%s is not set (run tools/bench/avail.sh)", name);
    return v;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    keytier_ctx *ctx;
    keytier_dep_info d;
    struct hit_arg h = {.seconds = 3};

    signal(SIGPIPE, SIG_IGN);
    addr_a = env("KT_OUTAGE_ADDR_A");
    addr_b = env("KT_OUTAGE_ADDR_B");
    pid_a = (pid_t)atol(env("KT_OUTAGE_PID_A"));
    pid_b = (pid_t)atol(env("KT_OUTAGE_PID_B"));
    top = env("KT_OUTAGE_DIR");
    softhsm_module = env("SOFTHSM2_MODULE");
    client_module = env("P11KIT_CLIENT_MODULE");
    snprintf(conf, sizeof conf, "%s/bench.conf", top);
    root_create(addr_a, "VaultA", "benchA");
    root_create(addr_b, "VaultB", "benchB");

    printf("hedge %d ms, deadline %d ms, %ld cores\n\n", HEDGE_MS, DEADLINE_MS,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("| case | reads | p50 ms | p99 ms | fallbacks "
           "|\n|---|---|---|---|---|\n");
    ctx = ctx_open("avail.cache_ttl_ms = 0");
    BENCH_CHECK(keytier_dep_create(ctx, "org-1", "Exchange",
                                   "pkcs11:token=VaultA;object=benchA",
                                   "pkcs11:token=VaultB;object=benchB", &d));
    cold(ctx, d.dep_id, "both vaults healthy", n);
    server_signal(pid_a, SIGSTOP);
    cold(ctx, d.dep_id, "vault A hung (SIGSTOP)", n);
    server_signal(pid_b, SIGSTOP);
    cold(ctx, d.dep_id, "both vaults hung", n / 4);
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    keytier_ctx_close(ctx);

    printf("\n| cached read | reads/s (wall) | reads per CPU-second "
           "|\n|---|---|---|\n");
    ctx = ctx_open("avail.cache_ttl_ms = 3600000");
    h.ctx = ctx;
    h.dep = d.dep_id;
    {
        keytier_key *dk;
        char mailbox[KEYTIER_ID_SIZE];
        keytier_avail_stats s0, s1;
        /* The first read fills the cache; every read timed below is a hit. */
        BENCH_CHECK(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk));
        BENCH_CHECK(keytier_avail_stats_get(ctx, &s0));
        rate("keytier_dep_key_open, cache hit", api_hits, &h, 1);
        rate("keytier_dep_key_open, cache hit", api_hits, &h, 2);
        BENCH_CHECK(keytier_avail_stats_get(ctx, &s1));
        if (s1.token_reads != s0.token_reads)
            bench_die("cached DEP-key reads reached a token");
        BENCH_CHECK(keytier_key_create(dk, "bench-mailbox", mailbox));
        h.parent = dk;
        h.key_id = mailbox;
        BENCH_CHECK(keytier_avail_stats_get(ctx, &s0));
        rate("keytier_key_open (mailbox key), cache hit", tier_hits, &h, 1);
        rate("keytier_key_open (mailbox key), cache hit", tier_hits, &h, 2);
        BENCH_CHECK(keytier_avail_stats_get(ctx, &s1));
        /* every read but the first was a hit: no token read at all */
        if (s1.token_reads != s0.token_reads)
            bench_die("cached tier reads reached a token");
        keytier_key_close(dk);
    }
    keytier_ctx_close(ctx);
    return 0;
}
