/*
 * bench-lib: libkeytier benchmarks (BENCHMARKS.md, "Library" and "Streaming").
 *
 *   bench-lib SOFTHSM2_MODULE KEYTIER_MODULE [mailbox-keys]
 *   env: KT_BENCH_PARTS=12345 (subset to run), KT_BENCH_CHUNK=bytes
 *        (envelope_chunk_size for the stream, default 65536),
 *        KT_BENCH_STREAM_THREADS=n (stream_threads; default: the
 *        library's, one per online CPU up to 4),
 *        KT_BENCH_ROUNDS=n (rounds of part 2, default 5)
 *
 * Builds its own world in a temp dir: customer key A on a SoftHSM2 token,
 * customer key B and the availability key on keytier's module, then
 * measures
 *   1. open-and-decrypt of a 4 KiB item with the keys already unwrapped, vs
 *      raw OpenSSL AES-256-GCM decryption of 4 KiB in the same run;
 *   2. streaming encryption and decryption of 1 GiB, file -> file
 *      (ext4 in /tmp, both in the page cache, the output file rewritten),
 *      file -> new file, pipe -> pipe and file -> /dev/null, wall clock,
 *      vs `openssl speed -evp aes-256-gcm` at 16 KiB run by this program
 *      back to back in each of 5 rounds (medians);
 *   3. opening an item whose DEP key must first be unwrapped by a token
 *      (p50/p99; both tokens, SoftHSM2 alone, keytier alone);
 *   4. creating N (default 100000) mailbox keys, then opening random ones;
 *   5. DEP-key reads, p50/p99: cold (cache off: the DEP read from the store
 *      and unwrapped by keytier's module) and cached (a cache hit), beside
 *      the same unwrap straight through PKCS#11 on keytier's module and on
 *      SoftHSM2; KT_BENCH_READS=n reads per figure (default 5000).
 *   env KT_BENCH_STORE: the store (a PostgreSQL conninfo) instead of a
 *   SQLite file in the temp dir (tools/bench/dep_read.sh runs both).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <p11-kit/p11-kit.h>

#include "bench.h"
#include "keytier.h"

const char *bench_prog = "bench-lib";

static char dir[64], conf[128], softhsm_mod[512], keytier_mod[512];
static const keytier_request req = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE,
                                    "bench", NULL};

/* ---- world setup through PKCS#11 --------------------------------------- */

static CK_SESSION_HANDLE open_token(CK_FUNCTION_LIST *fl, const char *label)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CK_UTF8CHAR lab[32];
    memset(lab, ' ', 32);
    memcpy(lab, label, strlen(label));
    if (fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        bench_die("C_GetSlotList");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK_SESSION_HANDLE s;
        if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
            memcmp(ti.label, lab, 32) != 0)
            continue;
        if (fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                              NULL, NULL, &s) != CKR_OK)
            bench_die("C_OpenSession");
        CK_RV rv = fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4);
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
            bench_die("C_Login %s", label);
        return s;
    }
    bench_die("token %s not found", label);
}

static void keytier_token(const char *label)
{
    CK_FUNCTION_LIST *fl = bench_module_load(keytier_mod);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CK_UTF8CHAR lab[32];
    memset(lab, ' ', 32);
    memcpy(lab, label, strlen(label));
    fl->C_GetSlotList(CK_TRUE, slots, &n);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        fl->C_GetTokenInfo(slots[i], &ti);
        if (ti.flags & CKF_TOKEN_INITIALIZED)
            continue;
        if (fl->C_InitToken(slots[i], (CK_UTF8CHAR *)"5678", 4, lab) != CKR_OK)
            bench_die("C_InitToken");
        break;
    }
    n = 16;
    fl->C_GetSlotList(CK_TRUE, slots, &n);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK_SESSION_HANDLE s;
        fl->C_GetTokenInfo(slots[i], &ti);
        if (memcmp(ti.label, lab, 32) != 0)
            continue;
        fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                          NULL, &s);
        if (fl->C_Login(s, CKU_SO, (CK_UTF8CHAR *)"5678", 4) != CKR_OK ||
            fl->C_InitPIN(s, (CK_UTF8CHAR *)"1234", 4) != CKR_OK)
            bench_die("C_InitPIN");
        fl->C_CloseSession(s);
    }
    bench_module_unload(fl);
}

static void aes_root(const char *module, const char *token, const char *label)
{
    CK_FUNCTION_LIST *fl = bench_module_load(module);
    CK_SESSION_HANDLE s = open_token(fl, token);
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_VALUE_LEN, &len, sizeof len},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &yes, 1},
        {CKA_SENSITIVE, &yes, 1},
        {CKA_EXTRACTABLE, &no, 1},
        {CKA_WRAP, &yes, 1},
        {CKA_UNWRAP, &yes, 1},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE h;
    if (fl->C_GenerateKey(s, &mech, t, 8, &h) != CKR_OK)
        bench_die("C_GenerateKey %s", label);
    fl->C_CloseSession(s);
    bench_module_unload(fl);
}

/* The store line(s): a SQLite file in the bench's dir, or the store
 * KT_BENCH_STORE names (a PostgreSQL conninfo, tools/bench/dep_read.sh)
 * with the audit log in the bench's dir. */
static void write_store(FILE *f)
{
    const char *store = getenv("KT_BENCH_STORE");
    if (store == NULL)
        fprintf(f, "store = %s/store.db\n", dir);
    else
        fprintf(f, "store = %s\navail.audit_log = %s/audit.jsonl\n", store,
                dir);
}

/* cache: the DEP-key cache on (the library's defaults) or off. */
static void write_conf(int softhsm, int keytier, int cache)
{
    FILE *f = fopen(conf, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    if (f == NULL)
        bench_die("cannot write %s", conf);
    if (softhsm)
        fprintf(f, "module = %s\n", softhsm_mod);
    if (keytier)
        fprintf(f, "module = %s\n", keytier_mod);
    fprintf(f, "service_token = pkcs11:token=KService\n"
               "pin.VaultA = value:1234\npin.KVaultB = value:1234\n"
               "pin.KService = value:1234\n");
    write_store(f);
    if (!cache) /* every DEP-key read goes to a token */
        fprintf(f, "avail.cache_ttl_ms = 0\n");
    if (getenv("KT_BENCH_CHUNK"))
        fprintf(f, "envelope_chunk_size = %s\n", getenv("KT_BENCH_CHUNK"));
    if (getenv("KT_BENCH_STREAM_THREADS"))
        fprintf(f, "stream_threads = %s\n", getenv("KT_BENCH_STREAM_THREADS"));
    fclose(f);
}

static void setup(void)
{
    char cmd[1024];
    snprintf(dir, sizeof dir, "/tmp/kt-bench-lib-XXXXXX");
    if (mkdtemp(dir) == NULL)
        bench_die("mkdtemp");
    snprintf(conf, sizeof conf, "%s/lib.conf", dir);
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/sh %s/kt && printf 'directories.tokendir = %s/sh\\n"
             "objectstore.backend = file\\nlog.level = ERROR\\n' > %s/sh.conf"
             " && printf 'token_dir = %s/kt\\npin_kdf_cost = 10\\n"
             "log_level = error\\n' > %s/kt.conf",
             dir, dir, dir, dir, dir, dir);
    if (system(cmd) != 0)
        bench_die("%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/sh.conf", dir);
    setenv("SOFTHSM2_CONF", cmd, 1);
    snprintf(cmd, sizeof cmd, "%s/kt.conf", dir);
    setenv("KEYTIER_CONF", cmd, 1);
    if (system("softhsm2-util --init-token --free --label VaultA --pin 1234 "
               "--so-pin 5678 >/dev/null") != 0)
        bench_die("softhsm2-util");
    keytier_token("KVaultB");
    keytier_token("KService");
    aes_root(softhsm_mod, "VaultA", "rootA");
    aes_root(keytier_mod, "KVaultB", "rootB");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench-lib: could not remove %s\n", dir);
}

/* ---- 1. 4 KiB open-and-decrypt vs raw OpenSSL ------------------------- */

#define ITEM 4096

static double bench_raw_gcm(int iters)
{
    static uint8_t key[32], iv[12], aad[16], ct[ITEM], pt[ITEM], tag[16];
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n;
    RAND_bytes(key, 32);
    RAND_bytes(pt, ITEM);
    EVP_EncryptInit_ex2(x, c, key, iv, NULL);
    EVP_EncryptUpdate(x, NULL, &n, aad, 16);
    EVP_EncryptUpdate(x, ct, &n, pt, ITEM);
    EVP_EncryptFinal_ex(x, ct + ITEM, &n);
    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, tag);
    EVP_CIPHER_CTX_free(x);
    x = EVP_CIPHER_CTX_new();
    EVP_DecryptInit_ex2(x, c, key, NULL, NULL);
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        EVP_DecryptInit_ex2(x, NULL, NULL, iv, NULL);
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, tag);
        EVP_DecryptUpdate(x, NULL, &n, aad, 16);
        EVP_DecryptUpdate(x, pt, &n, ct, ITEM);
        if (EVP_DecryptFinal_ex(x, pt + ITEM, &n) != 1)
            bench_die("raw GCM tag");
    }
    double t = bench_now() - t0;
    EVP_CIPHER_CTX_free(x);
    EVP_CIPHER_free(c);
    return t / iters;
}

static double bench_item_open(keytier_key *mbx, int iters)
{
    static uint8_t pt[ITEM], env[ITEM + 256], out[ITEM + 256];
    size_t el, ol;
    RAND_bytes(pt, ITEM);
    BENCH_CHECK(
        keytier_seal(mbx, "item-0001", 9, pt, ITEM, env, sizeof env, &el));
    double t0 = bench_now();
    for (int i = 0; i < iters; i++)
        BENCH_CHECK(
            keytier_open(mbx, "item-0001", 9, env, el, out, sizeof out, &ol));
    return (bench_now() - t0) / iters;
}

static double bench_item_open_mbx(keytier_key *dep, const char *mbx_id,
                                  int iters)
{
    /* Mailbox key unwrapped from the store under the open DEP key, then the
     * item opened: the per-item cost without a mailbox-key cache. */
    static uint8_t pt[ITEM], env[ITEM + 256], out[ITEM + 256];
    size_t el, ol;
    keytier_key *m;
    BENCH_CHECK(keytier_key_open(dep, mbx_id, &m));
    BENCH_CHECK(keytier_seal(m, "i", 1, pt, ITEM, env, sizeof env, &el));
    keytier_key_close(m);
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        BENCH_CHECK(keytier_key_open(dep, mbx_id, &m));
        BENCH_CHECK(keytier_open(m, "i", 1, env, el, out, sizeof out, &ol));
        keytier_key_close(m);
    }
    return (bench_now() - t0) / iters;
}

/* ---- 2. streaming 1 GiB ------------------------------------------------- */

static double openssl_speed_16k(void)
{
    FILE *p = popen(
        "openssl speed -evp aes-256-gcm -bytes 16384 -seconds 3 2>/dev/null",
        "r");
    char line[512];
    double v = 0;
    while (p && fgets(line, sizeof line, p))
        if (strncmp(line, "AES-256-GCM", 11) == 0) {
            /* one column (16384 bytes), in kB/s ("k") per user CPU second */
            char *last = strrchr(line, ' ');
            if (last)
                v = strtod(last + 1, NULL) * 1000.0;
        }
    if (p)
        pclose(p);
    if (v <= 0)
        bench_die("could not run openssl speed");
    return v; /* bytes/s */
}

static bool part(int n)
{
    const char *p = getenv("KT_BENCH_PARTS"); /* e.g. "12": only those */
    return p == NULL || strchr(p, '0' + n) != NULL;
}

#define STREAM_TOTAL ((size_t)1 << 30)
#define PIPE_IO      (1 << 20)

/* A new file in the bench's temp dir (ext4 here), unlinked at once: its
 * pages live in the page cache and are dropped when it is closed. */
static int file_new(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/stream-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        bench_die("mkstemp");
    unlink(path);
    return fd;
}

/* A 1 GiB input file in the page cache: written, then synced once so its
 * pages are clean (as a file read before) and no write-back runs during
 * the measurements. */
static int file_filled(size_t total)
{
    int fd = file_new();
    static uint8_t buf[1 << 20];
    for (size_t off = 0; off < total; off += sizeof buf) {
        memset(buf, (int)(off >> 20), sizeof buf);
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            bench_die("write");
    }
    if (fdatasync(fd) != 0)
        bench_die("fdatasync");
    return fd;
}

/* This VM returns freed guest memory to the host (free page reporting,
 * on its kernel command line), and page-cache memory taken afresh costs
 * far more than memory a file just freed: the first 1 GiB output file
 * after a while ran at 3-4x the CPU of one written right after another
 * file was deleted, whichever direction, and touching anonymous memory
 * first did not help.  That is the VM, not the stream, so each file ->
 * file run is preceded (untimed) by writing and deleting a scratch file of
 * the output's size, for both directions alike. */
static void page_cache_warm(size_t n)
{
    static uint8_t b[1 << 20];
    int fd = file_new();
    for (size_t o = 0; o < n; o += sizeof b)
        if (write(fd, b, sizeof b) != (ssize_t)sizeof b)
            bench_die("write");
    close(fd);
}

/* Pipe ends of a producer / consumer thread, as a service streaming from
 * and to sockets would see: the producer write()s the input file's bytes
 * into a pipe, the consumer read()s and discards what comes out. */
struct pipe_end {
    int fd, src;
    size_t n;
};

static void *pipe_produce(void *arg)
{
    struct pipe_end *pe = arg;
    static uint8_t buf[PIPE_IO];
    size_t off = 0;
    while (off < pe->n) {
        ssize_t r = pread(pe->src, buf, sizeof buf, (off_t)off);
        if (r <= 0)
            break;
        for (ssize_t w, o = 0; o < r; o += w)
            if ((w = write(pe->fd, buf + o, (size_t)(r - o))) <= 0)
                bench_die("pipe write");
        off += (size_t)r;
    }
    close(pe->fd);
    return NULL;
}

static void *pipe_consume(void *arg)
{
    struct pipe_end *pe = arg;
    static uint8_t buf[PIPE_IO];
    ssize_t r;
    while ((r = read(pe->fd, buf, sizeof buf)) > 0)
        pe->n += (size_t)r;
    return NULL;
}

/* IO_FILE_NEW: a new file, its pages allocated during the run;
 * IO_FILE_OVER: an existing file of the output's size, rewritten from
 * offset 0 (its pages already in the page cache). */
enum io_kind { IO_FILE_NEW, IO_FILE_OVER, IO_PIPE, IO_NULL };

struct io_fig {
    double wall, cpu; /* bytes per second of wall time / of CPU time */
};

/* One stream of `total` plaintext bytes from `src` (a file at offset 0).
 * IO_FILE_NEW: src -> a new file (*dst, kept for the caller if dst);
 * IO_FILE_OVER: src -> *dst from offset 0; IO_PIPE: pipe (fed from src)
 * -> pipe (drained); IO_NULL: src -> /dev/null.  The rate counts the
 * plaintext bytes. */
static struct io_fig run_stream(keytier_key *k, bool seal, int src,
                                enum io_kind kind, size_t total, int *dst)
{
    int in = src, out, pin[2] = {-1, -1}, pout[2] = {-1, -1};
    pthread_t tp, tc;
    struct pipe_end prod = {-1, src, 0}, cons = {-1, -1, 0};
    off_t src_size = lseek(src, 0, SEEK_END);
    lseek(src, 0, SEEK_SET);
    if (kind == IO_FILE_NEW) {
        out = file_new();
    } else if (kind == IO_FILE_OVER) {
        out = *dst;
        if (lseek(out, 0, SEEK_SET) != 0)
            bench_die("lseek");
    } else if (kind == IO_NULL) {
        out = open("/dev/null", O_WRONLY);
    } else {
        if (pipe(pin) != 0 || pipe(pout) != 0)
            bench_die("pipe");
        in = pin[0];
        out = pout[1];
        prod.fd = pin[1];
        prod.n = (size_t)src_size;
        cons.fd = pout[0];
    }
    if (out < 0)
        bench_die("output");
    if (kind == IO_FILE_NEW)
        page_cache_warm(total + total / 8);
    double t0 = bench_now(), c0 = bench_cpu_process();
    if (kind == IO_PIPE) {
        pthread_create(&tp, NULL, pipe_produce, &prod);
        pthread_create(&tc, NULL, pipe_consume, &cons);
    }
    BENCH_CHECK(seal ? keytier_seal_stream(k, "blob", 4, in, out)
                     : keytier_open_stream(k, "blob", 4, in, out));
    if (kind == IO_PIPE) {
        close(out);
        pthread_join(tp, NULL);
        pthread_join(tc, NULL);
    }
    double t = bench_now() - t0, c = bench_cpu_process() - c0;
    if (kind == IO_PIPE)
        close(pin[0]), close(pout[0]);
    else if (kind == IO_FILE_NEW && dst != NULL)
        *dst = out;
    else if (kind != IO_FILE_OVER)
        close(out);
    /* Clean pages: no write-back of this output while the next run is
     * timed. */
    if ((kind == IO_FILE_NEW || kind == IO_FILE_OVER) && dst != NULL &&
        fdatasync(*dst) != 0)
        bench_die("fdatasync");
    return (struct io_fig){(double)total / t, (double)total / c};
}

/* Fixed cost of one stream call: 4 KiB file -> file, the output reused
 * (truncated) between calls; microseconds per call, median of 2000. */
static double small_stream_us(keytier_key *k)
{
    enum { N = 2000 };
    static uint8_t b[4096];
    static double lat[N];
    int in = file_new(), out = file_new();
    if (write(in, b, sizeof b) != (ssize_t)sizeof b)
        bench_die("write");
    for (int i = 0; i < N; i++) {
        lseek(in, 0, SEEK_SET);
        if (ftruncate(out, 0) != 0 || lseek(out, 0, SEEK_SET) != 0)
            bench_die("ftruncate");
        double t0 = bench_now();
        BENCH_CHECK(keytier_seal_stream(k, "blob", 4, in, out));
        lat[i] = bench_now() - t0;
    }
    close(in);
    close(out);
    return bench_percentile(lat, N, 0.5) * 1e6;
}

enum { ROUNDS_MAX = 15 };

/* Per round, bytes per second: openssl speed, seal and open file -> file
 * (wall and CPU), seal file -> new file, pipe -> pipe both ways, seal to
 * /dev/null; and the ratios of the two file -> file figures to openssl. */
struct stream_figs {
    size_t rounds;
    double ossl[ROUNDS_MAX], ratio[ROUNDS_MAX], ratio_open[ROUNDS_MAX];
    double sw[ROUNDS_MAX], sc[ROUNDS_MAX], ow[ROUNDS_MAX], oc[ROUNDS_MAX],
        fw[ROUNDS_MAX], pw[ROUNDS_MAX], nw[ROUNDS_MAX], opw[ROUNDS_MAX];
    double small; /* us per call of one small stream */
};

/* One round of every stream figure, into index R of F. */
static void stream_round(keytier_key *mbx, int pt, int *env, int *back,
                         struct stream_figs *f, int r)
{
    /* Back to back in each round, so both see the same machine. */
    f->ossl[r] = openssl_speed_16k();
    struct io_fig s =
        run_stream(mbx, true, pt, IO_FILE_OVER, STREAM_TOTAL, env);
    f->sw[r] = s.wall;
    f->sc[r] = s.cpu;
    struct io_fig o =
        run_stream(mbx, false, *env, IO_FILE_OVER, STREAM_TOTAL, back);
    f->ow[r] = o.wall;
    f->oc[r] = o.cpu;
    f->fw[r] = run_stream(mbx, true, pt, IO_FILE_NEW, STREAM_TOTAL, NULL).wall;
    f->opw[r] = run_stream(mbx, false, *env, IO_PIPE, STREAM_TOTAL, NULL).wall;
    f->pw[r] = run_stream(mbx, true, pt, IO_PIPE, STREAM_TOTAL, NULL).wall;
    f->nw[r] = run_stream(mbx, true, pt, IO_NULL, STREAM_TOTAL, NULL).wall;
    f->ratio[r] = f->sw[r] / f->ossl[r];
    f->ratio_open[r] = f->ow[r] / f->ossl[r];
    fprintf(stderr,
            "round %d: openssl %.0f MB/s; seal file->file %.0f MB/s "
            "(%.2fx), open file->file %.0f (%.2fx), seal file->new file "
            "%.0f, seal pipe->pipe %.0f, open pipe->pipe %.0f, seal "
            "file->/dev/null %.0f\n",
            r + 1, f->ossl[r] / 1e6, f->sw[r] / 1e6, f->ratio[r],
            f->ow[r] / 1e6, f->ratio_open[r], f->fw[r] / 1e6, f->pw[r] / 1e6,
            f->opw[r] / 1e6, f->nw[r] / 1e6);
}

/* The medians of F as rows of the BENCHMARKS.md table (each array sorted
 * in place). */
static void stream_print(struct stream_figs *f)
{
    size_t nr = f->rounds;
    double ossl = bench_median(f->ossl, nr);
    const char *chunk = getenv("KT_BENCH_CHUNK");
    const char *cs = chunk ? chunk : "65536";
    printf("| `openssl speed -evp aes-256-gcm -bytes 16384` (per user CPU "
           "second), median of %d | %.0f MB/s |\n",
           (int)nr, ossl / 1e6);
    printf("| streaming encryption of 1 GiB, file -> file (page cache, output "
           "file rewritten), %s-byte chunks, wall clock, median | %.0f MB/s "
           "|\n",
           cs, bench_median(f->sw, nr) / 1e6);
    printf("| ratio to openssl speed, median of the %d per-round ratios "
           "(target >= 0.85) | **%.2fx** |\n",
           (int)nr, bench_median(f->ratio, nr));
    printf("| same, CPU time of all threads (user+sys): per CPU second | %.0f "
           "MB/s (%.2fx) |\n",
           bench_median(f->sc, nr) / 1e6, bench_median(f->sc, nr) / ossl);
    printf("| streaming decryption of 1 GiB, file -> file (rewritten), wall "
           "clock, median | %.0f MB/s (%.2fx) |\n",
           bench_median(f->ow, nr) / 1e6, bench_median(f->ratio_open, nr));
    printf("| same, per CPU second | %.0f MB/s |\n",
           bench_median(f->oc, nr) / 1e6);
    printf("| streaming encryption, file -> new file (page-cache pages "
           "allocated during the run), wall, median | %.0f MB/s (%.2fx) |\n",
           bench_median(f->fw, nr) / 1e6, bench_median(f->fw, nr) / ossl);
    printf("| streaming encryption, pipe -> pipe (producer and consumer "
           "threads in the same process), wall, median | %.0f MB/s (%.2fx) "
           "|\n",
           bench_median(f->pw, nr) / 1e6, bench_median(f->pw, nr) / ossl);
    printf("| streaming decryption, pipe -> pipe, wall, median | %.0f MB/s "
           "(%.2fx) |\n",
           bench_median(f->opw, nr) / 1e6, bench_median(f->opw, nr) / ossl);
    printf("| streaming encryption, file -> /dev/null, wall, median | %.0f "
           "MB/s (%.2fx) |\n",
           bench_median(f->nw, nr) / 1e6, bench_median(f->nw, nr) / ossl);
    printf("| one small stream: 4 KiB file -> file, median of 2000 calls | "
           "%.1f us/call |\n",
           f->small);
}

static void bench_streams(keytier_key *mbx)
{
    static struct stream_figs f;
    const char *rs = getenv("KT_BENCH_ROUNDS"); /* default 5 */
    int rounds = rs ? atoi(rs) : 5;
    if (rounds < 1 || rounds > ROUNDS_MAX)
        bench_die("KT_BENCH_ROUNDS: 1 .. %d", ROUNDS_MAX);
    f.rounds = (size_t)rounds;
    f.small = small_stream_us(mbx);
    int pt = file_filled(STREAM_TOTAL), env = -1, back = -1;
    /* Untimed: the envelope file and the plaintext file the file -> file
     * runs rewrite (a new seal has the same size, nonce aside). */
    run_stream(mbx, true, pt, IO_FILE_NEW, STREAM_TOTAL, &env);
    run_stream(mbx, false, env, IO_FILE_NEW, STREAM_TOTAL, &back);
    for (int r = 0; r < rounds; r++)
        stream_round(mbx, pt, &env, &back, &f, r);
    close(pt);
    close(env);
    close(back);
    stream_print(&f);
}

/* ---- 3. item open with the DEP key unwrapped by a token ---------------- */

static void bench_cold(const char *what, const char *mbx_id, int iters)
{
    static uint8_t pt[ITEM], env[ITEM + 256], out[ITEM + 256];
    keytier_ctx *ctx;
    keytier_key *k;
    size_t el, ol;
    double *lat = calloc((size_t)iters, sizeof *lat);
    BENCH_CHECK(keytier_ctx_open(conf, &ctx));
    BENCH_CHECK(keytier_key_open_path(ctx, &req, "org-1", mbx_id, &k));
    BENCH_CHECK(keytier_seal(k, "i", 1, pt, ITEM, env, sizeof env, &el));
    keytier_key_close(k);
    for (int i = 0; i < iters; i++) {
        double t0 = bench_now();
        BENCH_CHECK(keytier_key_open_path(ctx, &req, "org-1", mbx_id, &k));
        BENCH_CHECK(keytier_open(k, "i", 1, env, el, out, sizeof out, &ol));
        lat[i] = bench_now() - t0;
        keytier_key_close(k);
    }
    printf("| item open, DEP key unwrapped by the token (%s) | p50 %.3f ms, "
           "p99 %.3f ms (n=%d) |\n",
           what, bench_percentile(lat, (size_t)iters, 0.5) * 1e3,
           bench_percentile(lat, (size_t)iters, 0.99) * 1e3, iters);
    keytier_ctx_close(ctx);
    free(lat);
}

/* ---- 5. DEP-key reads, cold and cached, beside the token's unwrap ----- */

static const char *store_name(void)
{
    return getenv("KT_BENCH_STORE") != NULL ? "PostgreSQL" : "SQLite";
}

static void latency_row(const char *what, double *lat, int n)
{
    printf("| %s | p50 %.2f us, p99 %.2f us (n=%d) |\n", what,
           bench_percentile(lat, (size_t)n, 0.5) * 1e6,
           bench_percentile(lat, (size_t)n, 0.99) * 1e6, n);
}

/* keytier_dep_key_open, timed read by read (keytier_key_close after each,
 * untimed), on a context of keytier's module only (root B on KVaultB).
 * Cold: the cache off, every read reads the DEP from the store and has the
 * token unwrap it.  Cached: the cache on, a first read fills it; no timed
 * read may reach a token (keytier_avail_stats_get). */
static void bench_dep_read(const char *dep_id, int cache, int iters)
{
    keytier_ctx *ctx;
    keytier_key *k;
    keytier_avail_stats s0, s1;
    char what[160];
    double *lat = calloc((size_t)iters, sizeof *lat);
    write_conf(0, 1, cache);
    BENCH_CHECK(keytier_ctx_open(conf, &ctx));
    BENCH_CHECK(keytier_dep_key_open(ctx, &req, "org-1", dep_id, &k));
    keytier_key_close(k);
    BENCH_CHECK(keytier_avail_stats_get(ctx, &s0));
    for (int i = 0; i < iters; i++) {
        double t0 = bench_now();
        BENCH_CHECK(keytier_dep_key_open(ctx, &req, "org-1", dep_id, &k));
        lat[i] = bench_now() - t0;
        keytier_key_close(k);
    }
    BENCH_CHECK(keytier_avail_stats_get(ctx, &s1));
    uint64_t reads = s1.token_reads - s0.token_reads;
    if (cache ? reads != 0 : reads < (uint64_t)iters)
        bench_die("%d %s reads made %llu token reads", iters,
                  cache ? "cached" : "cold", (unsigned long long)reads);
    snprintf(what, sizeof what, "DEP-key read, %s, %s store",
             cache ? "cached (cache hit)"
                   : "cold (store read + unwrap by keytier's module)",
             store_name());
    latency_row(what, lat, iters);
    keytier_ctx_close(ctx);
    free(lat);
}

static CK_OBJECT_HANDLE find_key(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
                                 const char *label)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    if (fl->C_FindObjectsInit(s, t, 2) != CKR_OK ||
        fl->C_FindObjects(s, &h, 1, &n) != CKR_OK || n != 1 ||
        fl->C_FindObjectsFinal(s) != CKR_OK)
        bench_die("key %s not found", label);
    return h;
}

/* The token's part of a cold read straight through PKCS#11, as the library
 * asks it (lib/p11/wrap.c, kt_root_unwrap): C_UnwrapKey of a 40-byte
 * RFC 5649 blob under the AES root into an extractable session key,
 * C_GetAttributeValue(CKA_VALUE), C_DestroyObject. */
static void bench_raw_unwrap(const char *what, const char *module,
                             const char *token, const char *root, int iters)
{
    CK_FUNCTION_LIST *fl = bench_module_load(module);
    CK_SESSION_HANDLE s = open_token(fl, token);
    CK_OBJECT_HANDLE rk = find_key(fl, s, root), key;
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32, blen = 64;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &len, sizeof len},
                         {CKA_EXTRACTABLE, &yes, sizeof yes}};
    CK_ATTRIBUTE ut[] = {
        {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &no, sizeof no},         {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
    };
    uint8_t blob[64], val[64];
    double *lat = calloc((size_t)iters, sizeof *lat);
    if (fl->C_GenerateKey(s, &gen, gt, 2, &key) != CKR_OK ||
        fl->C_WrapKey(s, &wrap, rk, key, blob, &blen) != CKR_OK)
        bench_die("%s: cannot wrap a key under %s", what, root);
    fl->C_DestroyObject(s, key);
    for (int i = 0; i < iters; i++) {
        CK_ATTRIBUTE va = {CKA_VALUE, val, sizeof val};
        double t0 = bench_now();
        if (fl->C_UnwrapKey(s, &wrap, rk, blob, blen, ut, 5, &key) != CKR_OK ||
            fl->C_GetAttributeValue(s, key, &va, 1) != CKR_OK ||
            va.ulValueLen != 32 || fl->C_DestroyObject(s, key) != CKR_OK)
            bench_die("%s: raw unwrap failed", what);
        lat[i] = bench_now() - t0;
    }
    latency_row(what, lat, iters);
    fl->C_CloseSession(s);
    bench_module_unload(fl);
    free(lat);
}

/* 5: the raw unwraps on both tokens, then cold and cached DEP-key reads. */
static void bench_dep_reads(const char *dep_id)
{
    const char *r = getenv("KT_BENCH_READS"); /* default 5000 */
    int n = r != NULL && atoi(r) > 0 ? atoi(r) : 5000;
    bench_raw_unwrap("raw C_UnwrapKey + CKA_VALUE + destroy, keytier's module",
                     keytier_mod, "KVaultB", "rootB", n);
    bench_raw_unwrap("raw C_UnwrapKey + CKA_VALUE + destroy, SoftHSM2",
                     softhsm_mod, "VaultA", "rootA", n);
    bench_dep_read(dep_id, 0, n);
    bench_dep_read(dep_id, 1, n);
}

/* 1: alternate rounds so both see the same machine state; best round. */
static void bench_items(keytier_key *dep, keytier_key *mbx, const char *mbx_id)
{
    double raw = 1e9, ours = 1e9, mb = 1e9;
    for (int r = 0; r < 5; r++) {
        double a = bench_raw_gcm(100000), b = bench_item_open(mbx, 100000);
        raw = a < raw ? a : raw;
        ours = b < ours ? b : ours;
    }
    for (int r = 0; r < 3; r++) {
        double c = bench_item_open_mbx(dep, mbx_id, 20000);
        mb = c < mb ? c : mb;
    }
    printf("| 4 KiB item open-and-decrypt, keys unwrapped | %.2f us/item "
           "(%.0f MB/s) |\n",
           ours * 1e6, ITEM / ours / 1e6);
    printf("| raw OpenSSL AES-256-GCM decrypt of 4 KiB, same run | %.2f "
           "us/item (%.0f MB/s) |\n",
           raw * 1e6, ITEM / raw / 1e6);
    printf("| ratio libkeytier / raw (target >= 0.8) | **%.2fx** |\n",
           raw / ours);
    printf("| 4 KiB item open incl. mailbox-key unwrap from the store under "
           "an open DEP key | %.2f us/item |\n",
           mb * 1e6);
}

/* 4: NKEYS mailbox keys created, then random ones opened. */
static void bench_mailbox_keys(keytier_key *dep, long nkeys)
{
    char(*ids)[KEYTIER_ID_SIZE] = calloc((size_t)nkeys, KEYTIER_ID_SIZE);
    double t0 = bench_now();
    for (long i = 0; i < nkeys; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%06ld@contoso", i);
        BENCH_CHECK(keytier_key_create(dep, name, ids[i]));
    }
    double tc = bench_now() - t0;
    printf("| create %ld mailbox keys (wrap + SQLite insert each) | %.0f "
           "keys/s (%.1f s) |\n",
           nkeys, (double)nkeys / tc, tc);
    int nopen = 20000;
    double *lat = calloc((size_t)nopen, sizeof *lat);
    t0 = bench_now();
    for (int i = 0; i < nopen; i++) {
        uint32_t r;
        RAND_bytes((uint8_t *)&r, sizeof r);
        keytier_key *k;
        double s = bench_now();
        BENCH_CHECK(keytier_key_open(dep, ids[r % (uint32_t)nkeys], &k));
        lat[i] = bench_now() - s;
        keytier_key_close(k);
    }
    double to = bench_now() - t0;
    printf("| open a random one of the %ld (DEP key open) | %.0f opens/s, p50 "
           "%.1f us, p99 %.1f us |\n",
           nkeys, nopen / to, bench_percentile(lat, (size_t)nopen, 0.5) * 1e6,
           bench_percentile(lat, (size_t)nopen, 0.99) * 1e6);
    free(lat);
    free(ids);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        bench_die(
            "usage: bench-lib SOFTHSM2_MODULE KEYTIER_MODULE [mailbox-keys]");
    if (realpath(argv[1], softhsm_mod) == NULL ||
        realpath(argv[2], keytier_mod) == NULL)
        bench_die("module path");
    long nkeys = argc > 3 ? atol(argv[3]) : 100000;
    setup();
    write_conf(1, 1, 0);
    keytier_ctx *ctx;
    keytier_dep_info d;
    keytier_key *dep, *mbx;
    char mbx_id[KEYTIER_ID_SIZE];
    BENCH_CHECK(keytier_ctx_open(conf, &ctx));
    BENCH_CHECK(keytier_dep_create(ctx, "org-1", "Exchange",
                                   "pkcs11:token=VaultA;object=rootA",
                                   "pkcs11:token=KVaultB;object=rootB", &d));
    BENCH_CHECK(keytier_dep_key_open(ctx, &req, "org-1", d.dep_id, &dep));
    BENCH_CHECK(keytier_key_create(dep, "bench-mailbox", mbx_id));
    BENCH_CHECK(keytier_key_open(dep, mbx_id, &mbx));

    printf("| benchmark | result |\n|---|---|\n");
    if (part(1))
        bench_items(dep, mbx, mbx_id);
    if (part(2))
        bench_streams(mbx);
    if (part(4))
        bench_mailbox_keys(dep, nkeys);
    keytier_key_close(mbx);
    keytier_key_close(dep);
    keytier_ctx_close(ctx);

    if (part(5))
        bench_dep_reads(d.dep_id);
    if (part(3)) {
        bench_cold("A on SoftHSM2 or B on keytier, random", mbx_id, 300);
        write_conf(1, 0, 0);
        bench_cold("SoftHSM2 only", mbx_id, 300);
        write_conf(0, 1, 0);
        bench_cold("keytier module only", mbx_id, 300);
    }
    teardown();
    return 0;
}
