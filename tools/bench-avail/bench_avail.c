/*
 * bench-avail: availability benchmarks (BENCHMARKS.md "Availability").
 *
 *   tools/bench-avail/run.sh BUILD_DIR      (serves the vaults, runs this)
 *
 * Environment from tests/outage/outage.sh: vault tokens A and B behind two
 * `p11-kit server` processes (KT_OUTAGE_ADDR_A/B, KT_OUTAGE_PID_A/B), the
 * service token in a local SoftHSM2 (SOFTHSM2_MODULE), a scratch directory
 * (KT_OUTAGE_DIR).  Measures
 *   1. cold DEP-key reads (cache off), p50/p99: both vaults healthy, A hung
 *      (SIGSTOP), both hung (the availability key after the deadline);
 *   2. cached reads per second on 1 and 2 threads: the cache itself
 *      (kt_cache_get), the whole public keytier_dep_key_open (DEP key) and
 *      keytier_key_open (a mailbox key under it), each open followed by
 *      keytier_key_close.  Wall-clock rate and the rate per CPU-second of
 *      the reading threads (RUSAGE_THREAD), which holds on a busy machine.
 */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "cache.h"
#include "keytier.h"

#define HEDGE_MS    50
#define DEADLINE_MS 1000

static const char *addr_a, *addr_b, *top, *softhsm_module, *client_module;
static pid_t pid_a, pid_b;
static char conf[600];
static const keytier_request user = {KEYTIER_REQUEST_USER, NULL, "bench"};

#define DIE(...)                                                               \
    do {                                                                       \
        fprintf(stderr, "bench-avail: " __VA_ARGS__);                          \
        fprintf(stderr, "\n");                                                 \
        exit(1);                                                               \
    } while (0)
#define CHECK(call)                                                            \
    do {                                                                       \
        keytier_err e_ = (call);                                               \
        if (e_ != KEYTIER_OK)                                                  \
            DIE("%s: %s", #call, keytier_last_error_detail());                 \
    } while (0)

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    int i = (int)(p * (n - 1) + 0.5);

    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[i];
}

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
        DIE("cannot reach %s", address);
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
        DIE("cannot make root %s in %s", label, token);
    fl->C_CloseSession(s);
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
}

static keytier_ctx *ctx_open(const char *extra)
{
    FILE *f = fopen(conf, "w");
    keytier_ctx *ctx;

    if (!f)
        DIE("cannot write %s", conf);
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
    CHECK(keytier_ctx_open(conf, &ctx));
    return ctx;
}

static void cold(keytier_ctx *ctx, const char *dep, const char *what, int n)
{
    double *ms = malloc(sizeof(double) * (size_t)n);
    keytier_avail_stats s0, s1;

    CHECK(keytier_avail_stats_get(ctx, &s0));
    for (int i = 0; i < n; i++) {
        keytier_key *k;
        double t = now();
        CHECK(keytier_dep_key_open(ctx, &user, "org-1", dep, &k));
        ms[i] = (now() - t) * 1e3;
        keytier_key_close(k);
    }
    CHECK(keytier_avail_stats_get(ctx, &s1));
    printf("| cold DEP-key read, %s | %d | %.2f | %.2f | %llu |\n", what, n,
           pct(ms, n, 0.50), pct(ms, n, 0.99),
           (unsigned long long)(s1.fallbacks - s0.fallbacks));
    free(ms);
}

struct hit_arg {
    kt_cache *cache;
    keytier_ctx *ctx;
    keytier_key *parent; /* tier reads: the DEP key */
    const char *dep, *key_id;
    double seconds;
    uint64_t done;
    double cpu; /* seconds of CPU of the reading thread */
};

static double thread_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void *raw_hits(void *p)
{
    struct hit_arg *a = p;
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len;
    double end = now() + a->seconds, c0 = thread_cpu();

    while (now() < end)
        for (int i = 0; i < 1000; i++)
            if (kt_cache_get(a->cache, "dep:bench", buf, sizeof buf, &len))
                a->done++;
    a->cpu = thread_cpu() - c0;
    return NULL;
}

static void *api_hits(void *p)
{
    struct hit_arg *a = p;
    double end = now() + a->seconds, c0 = thread_cpu();

    while (now() < end)
        for (int i = 0; i < 100; i++) {
            keytier_key *k;
            CHECK(keytier_dep_key_open(a->ctx, &user, "org-1", a->dep, &k));
            keytier_key_close(k);
            a->done++;
        }
    a->cpu = thread_cpu() - c0;
    return NULL;
}

static void *tier_hits(void *p)
{
    struct hit_arg *a = p;
    double end = now() + a->seconds, c0 = thread_cpu();

    while (now() < end)
        for (int i = 0; i < 100; i++) {
            keytier_key *k;
            CHECK(keytier_key_open(a->parent, a->key_id, &k));
            keytier_key_close(k);
            a->done++;
        }
    a->cpu = thread_cpu() - c0;
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
        DIE("%s is not set (run tools/bench-avail/run.sh)", name);
    return v;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    keytier_ctx *ctx;
    keytier_dep_info d;
    kt_cache *cache;
    kt_cache_config cc = {.ttl_ms = 3600000, .max_entries = 16};
    kt_cache_tags tags = {"org-1", "bench", {"a", "b", "c"}};
    unsigned char key[32] = {1};
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
    CHECK(keytier_dep_create(ctx, "org-1", "Exchange",
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
    if (kt_cache_new(&cc, &cache) != KEYTIER_OK ||
        kt_cache_put(cache, "dep:bench", &tags, key, sizeof key) != KEYTIER_OK)
        DIE("cache");
    h.cache = cache;
    rate("kt_cache_get (the cache)", raw_hits, &h, 1);
    rate("kt_cache_get (the cache)", raw_hits, &h, 2);
    kt_cache_free(cache);
    ctx = ctx_open("avail.cache_ttl_ms = 3600000");
    h.ctx = ctx;
    h.dep = d.dep_id;
    rate("keytier_dep_key_open, cache hit", api_hits, &h, 1);
    rate("keytier_dep_key_open, cache hit", api_hits, &h, 2);
    {
        keytier_key *dk;
        char mailbox[KEYTIER_ID_SIZE];
        keytier_avail_stats s0, s1;
        CHECK(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk));
        CHECK(keytier_key_create(dk, "bench-mailbox", mailbox));
        h.parent = dk;
        h.key_id = mailbox;
        CHECK(keytier_avail_stats_get(ctx, &s0));
        rate("keytier_key_open (mailbox key), cache hit", tier_hits, &h, 1);
        rate("keytier_key_open (mailbox key), cache hit", tier_hits, &h, 2);
        CHECK(keytier_avail_stats_get(ctx, &s1));
        /* every read but the first was a hit: no token read at all */
        if (s1.token_reads != s0.token_reads)
            DIE("cached tier reads reached a token");
        keytier_key_close(dk);
    }
    keytier_ctx_close(ctx);
    return 0;
}
