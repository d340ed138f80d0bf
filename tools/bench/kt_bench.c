/*
 * kt-bench: throughput of PKCS#11 modules, keytier beside SoftHSM2, in one
 * process and one invocation, through the PKCS#11 API only.
 *
 * Each module gets a fresh token in a private temp dir (KEYTIER_CONF and
 * SOFTHSM2_CONF are set to configs written there before the modules are
 * loaded), a non-extractable AES-256 token root, and then every benchmark
 * runs for --seconds (or --max-ops operations, whichever comes first).
 * Figures are operations per second; the performance targets
 * (BENCHMARKS.md) are printed as met / NOT met. The exit status says
 * whether every benchmark ran without a PKCS#11 error, never whether a
 * target was met.
 */
#include <errno.h>
#include <limits.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "bench.h"

const char *bench_prog = "kt-bench";

#define KT_BENCH_MODULES          2
#define KT_BENCH_MAX_FIND         4
#define KT_BENCH_THREADS_MAX      2
#define KT_BENCH_FILL_THREADS_MAX 64
#define KT_BENCH_AES_KEY_LEN      32
#define KT_BENCH_KWP_BLOB_LEN     40 /* RFC 5649 of 32 bytes: 32 + 8 */
#define KT_BENCH_GCM_DATA_LEN     4096
#define KT_BENCH_GCM_IV_LEN       12
#define KT_BENCH_GCM_TAG_BITS     128
#define KT_BENCH_RSA_BITS         2048
#define KT_BENCH_RSA_SIG_LEN      256
#define KT_BENCH_EC_SIG_LEN       64
#define KT_BENCH_DIGEST_LEN       32
#define KT_BENCH_LABEL_MAX        48
#define KT_BENCH_SO_PIN           "87654321"
#define KT_BENCH_USER_PIN         "12345678"
#define KT_BENCH_TOKEN_LABEL      "kt-bench"
#define KT_BENCH_ROOT_LABEL       "kt-bench-root"
#define KT_BENCH_OBJ_LABEL_FMT    "kt-bench-obj-%06lu"

/* The module columns, in print order. */
enum { KT_MOD_KEYTIER, KT_MOD_SOFTHSM2 };
static const char *const kt_bench_mod_names[KT_BENCH_MODULES] = {"keytier",
                                                                 "softhsm2"};

typedef struct kt_bench_opts {
    const char *paths[KT_BENCH_MODULES];
    double seconds;
    unsigned long max_ops;
    unsigned long find_sizes[KT_BENCH_MAX_FIND];
    size_t n_find_sizes;
    const char *dir;
    const char *only;
    const char *tsv;
    int kdf_cost;
    unsigned fill_threads;
    bool openssl_speed;
    bool keep;
} kt_bench_opts;

typedef struct kt_bench_mod {
    const char *name;
    const char *path;
    CK_FUNCTION_LIST *fl;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE sess;
    CK_OBJECT_HANDLE root;
    unsigned long n_objects; /* token objects made by the find benchmark */
    bool initialized;
    bool ready;
} kt_bench_mod;

/* One printed row; ops < 0 means not measured, with the reason in note. */
typedef struct kt_bench_row {
    char title[64];
    double ops[KT_BENCH_MODULES];
    char note[KT_BENCH_MODULES][48];
    double openssl; /* ops/s of `openssl speed` for the same primitive */
    double cpu_us[KT_BENCH_MODULES]; /* thread rows: CPU us per operation */
    bool used;
} kt_bench_row;

enum {
    ROW_LOGIN,
    ROW_KEYGEN,
    ROW_WRAP,
    ROW_UNWRAP,
    ROW_GCM,
    ROW_CREATE,
    ROW_FIND0,
    ROW_UNWRAP_T1 = ROW_FIND0 + KT_BENCH_MAX_FIND,
    ROW_UNWRAP_T2,
    ROW_RSA_SIGN,
    ROW_ECDSA_SIGN,
    ROW_OAEP_UNWRAP,
    ROW_COUNT
};

static kt_bench_row kt_rows[ROW_COUNT];
static bool kt_bench_errors;

static CK_BBOOL kt_true = CK_TRUE;
static CK_BBOOL kt_false = CK_FALSE;
static CK_OBJECT_CLASS kt_class_secret = CKO_SECRET_KEY;
static CK_OBJECT_CLASS kt_class_public = CKO_PUBLIC_KEY;
static CK_OBJECT_CLASS kt_class_private = CKO_PRIVATE_KEY;
static CK_KEY_TYPE kt_type_aes = CKK_AES;
static CK_ULONG kt_aes_len = KT_BENCH_AES_KEY_LEN;

/* DER of the named-curve OID prime256v1 (1.2.840.10045.3.1.7). */
static CK_BYTE kt_p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_BYTE kt_rsa_exponent[] = {0x01, 0x00, 0x01};

#define KT_ATTR(type, ptr, len)                                                \
    {                                                                          \
        (type), (void *)(ptr), (len)                                           \
    }
#define KT_ATTR_VAR(type, var)                                                 \
    {                                                                          \
        (type), (void *)&(var), sizeof(var)                                    \
    }
#define KT_NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    CK_RV rv;
    const char *name;
} kt_ckr_names[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_CANT_LOCK, "CKR_CANT_LOCK"},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
    {CKR_UNWRAPPING_KEY_HANDLE_INVALID, "CKR_UNWRAPPING_KEY_HANDLE_INVALID"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID"},
    {CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE"},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
};

static const char *kt_bench_rv_name(CK_RV rv)
{
    static _Thread_local char buf[32];
    size_t i;

    for (i = 0; i < KT_NELEMS(kt_ckr_names); i++) {
        if (kt_ckr_names[i].rv == rv)
            return kt_ckr_names[i].name;
    }
    snprintf(buf, sizeof(buf), "CKR_0x%lx", (unsigned long)rv);
    return buf;
}

/* Reports a failed call of module m and remembers that the run had one. */
static bool kt_bench_ck(const kt_bench_mod *m, const char *call, CK_RV rv)
{
    if (rv == CKR_OK)
        return true;
    fprintf(stderr, "kt-bench: %s: %s failed: %s\n", m->name, call,
            kt_bench_rv_name(rv));
    kt_bench_errors = true;
    return false;
}

#define KT_CK(m, call) kt_bench_ck((m), #call, (m)->fl->call)

static void kt_bench_progress(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void kt_bench_progress(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("kt-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static bool kt_bench_selected(const kt_bench_opts *o, const char *name)
{
    const char *p = o->only;
    size_t n = strlen(name);

    if (p == NULL)
        return true;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

static kt_bench_row *kt_bench_row_use(int row, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static kt_bench_row *kt_bench_row_use(int row, const char *fmt, ...)
{
    kt_bench_row *r = &kt_rows[row];
    va_list ap;

    if (!r->used) {
        va_start(ap, fmt);
        vsnprintf(r->title, sizeof(r->title), fmt, ap);
        va_end(ap);
        r->used = true;
        r->openssl = -1;
        for (int i = 0; i < KT_BENCH_MODULES; i++)
            r->ops[i] = -1;
    }
    return r;
}

static void kt_bench_row_set(int row, int mod, double ops, const char *note)
{
    kt_rows[row].ops[mod] = ops;
    snprintf(kt_rows[row].note[mod], sizeof(kt_rows[row].note[mod]), "%s",
             note ? note : "");
}

/* ---- files ---------------------------------------------------------- */

static int kt_bench_rm_cb(const char *path, const struct stat *st, int flag,
                          struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "kt-bench: cannot remove %s: %s\n", path,
                strerror(errno));
    return 0;
}

static bool kt_bench_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "kt-bench: cannot write %s: %s\n", path,
                strerror(errno));
        return false;
    }
    return true;
}

static const char *kt_bench_fs_name(const char *dir)
{
    static char buf[32];
    struct statfs sf;

    if (statfs(dir, &sf) != 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53UL:
        return "ext4";
    case 0x01021994UL:
        return "tmpfs (nothing reaches a disk: durable figures are not)";
    case 0x58465342UL:
        return "xfs";
    case 0x9123683EUL:
        return "btrfs";
    case 0x794c7630UL:
        return "overlayfs";
    default:
        snprintf(buf, sizeof(buf), "fs 0x%lx", (unsigned long)sf.f_type);
        return buf;
    }
}

/*
 * Writes both modules' configs under base and exports KEYTIER_CONF and
 * SOFTHSM2_CONF; must run before either module is loaded.
 */
static bool kt_bench_fmt(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf that reports truncation as failure. */
static bool kt_bench_fmt(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return len >= 0 && (size_t)len < n;
}

static bool kt_bench_write_configs(const char *base, int kdf_cost)
{
    char path[4096], dir[4096], text[8192];

    if (!kt_bench_fmt(dir, sizeof(dir), "%s/keytier", base) ||
        mkdir(dir, 0700) != 0 ||
        !kt_bench_fmt(text, sizeof(text),
                      "# written by kt-bench\n"
                      "token_dir = %s/tokens\n"
                      "slots = 4\n"
                      "log_level = error\n"
                      "log_file = %s/keytier.log\n"
                      "pin_kdf_cost = %d\n",
                      dir, dir, kdf_cost) ||
        !kt_bench_fmt(path, sizeof(path), "%s/keytier.conf", dir) ||
        !kt_bench_write_file(path, text) ||
        setenv("KEYTIER_CONF", path, 1) != 0)
        return false;

    /* Same settings as hsm-config/softhsm2.conf: the file backend. */
    return kt_bench_fmt(dir, sizeof(dir), "%s/softhsm2", base) &&
           mkdir(dir, 0700) == 0 &&
           kt_bench_fmt(path, sizeof(path), "%s/tokens", dir) &&
           mkdir(path, 0700) == 0 &&
           kt_bench_fmt(text, sizeof(text),
                        "directories.tokendir = %s/tokens\n"
                        "objectstore.backend = file\n"
                        "log.level = ERROR\n"
                        "slots.removable = false\n",
                        dir) &&
           kt_bench_fmt(path, sizeof(path), "%s/softhsm2.conf", dir) &&
           kt_bench_write_file(path, text) &&
           setenv("SOFTHSM2_CONF", path, 1) == 0;
}

/* ---- token setup ---------------------------------------------------- */

static void kt_bench_pad(CK_UTF8CHAR *dst, size_t n, const char *src)
{
    size_t len = strlen(src);

    memset(dst, ' ', n);
    memcpy(dst, src, len < n ? len : n);
}

/* Finds a slot whose token is (want_init) initialised, with label if set. */
static bool kt_bench_find_slot(kt_bench_mod *m, bool want_init,
                               const char *label, CK_SLOT_ID *out)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = KT_NELEMS(slots), i;
    CK_UTF8CHAR want[32];

    if (!KT_CK(m, C_GetSlotList(CK_TRUE, slots, &n)))
        return false;
    if (label)
        kt_bench_pad(want, sizeof(want), label);
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (!KT_CK(m, C_GetTokenInfo(slots[i], &ti)))
            return false;
        if (((ti.flags & CKF_TOKEN_INITIALIZED) != 0) != want_init)
            continue;
        if (label && memcmp(ti.label, want, sizeof(want)) != 0)
            continue;
        *out = slots[i];
        return true;
    }
    fprintf(stderr, "kt-bench: %s: no %s token%s%s\n", m->name,
            want_init ? "initialised" : "uninitialised",
            label ? " labelled " : "", label ? label : "");
    kt_bench_errors = true;
    return false;
}

static bool kt_bench_gen_root(kt_bench_mod *m)
{
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE t[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_secret),
        KT_ATTR_VAR(CKA_KEY_TYPE, kt_type_aes),
        KT_ATTR_VAR(CKA_VALUE_LEN, kt_aes_len),
        KT_ATTR_VAR(CKA_TOKEN, kt_true),
        KT_ATTR_VAR(CKA_PRIVATE, kt_true),
        KT_ATTR_VAR(CKA_SENSITIVE, kt_true),
        KT_ATTR_VAR(CKA_EXTRACTABLE, kt_false),
        KT_ATTR_VAR(CKA_WRAP, kt_true),
        KT_ATTR_VAR(CKA_UNWRAP, kt_true),
        KT_ATTR(CKA_LABEL, KT_BENCH_ROOT_LABEL, strlen(KT_BENCH_ROOT_LABEL)),
    };

    return KT_CK(m, C_GenerateKey(m->sess, &mech, t, KT_NELEMS(t), &m->root));
}

static bool kt_bench_setup(kt_bench_mod *m)
{
    CK_C_INITIALIZE_ARGS args;
    CK_UTF8CHAR label[32];
    CK_SLOT_ID free_slot;
    char abs[PATH_MAX];

    /* p11-kit resolves a relative path against its module directory. */
    if (realpath(m->path, abs) == NULL) {
        fprintf(stderr, "kt-bench: %s: %s: %s\n", m->name, m->path,
                strerror(errno));
        kt_bench_errors = true;
        return false;
    }
    m->fl = p11_kit_module_load(abs, P11_KIT_MODULE_UNMANAGED);
    if (m->fl == NULL) {
        fprintf(stderr, "kt-bench: %s: cannot load %s: %s\n", m->name, m->path,
                p11_kit_message());
        kt_bench_errors = true;
        return false;
    }
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    if (!KT_CK(m, C_Initialize(&args)))
        return false;
    m->initialized = true;

    kt_bench_pad(label, sizeof(label), KT_BENCH_TOKEN_LABEL);
    if (!kt_bench_find_slot(m, false, NULL, &free_slot) ||
        !KT_CK(m, C_InitToken(free_slot, (CK_UTF8CHAR *)KT_BENCH_SO_PIN,
                              strlen(KT_BENCH_SO_PIN), label)))
        return false;
    /* SoftHSM2 gives the new token a new slot ID: look it up again. */
    if (!kt_bench_find_slot(m, true, KT_BENCH_TOKEN_LABEL, &m->slot))
        return false;
    if (!KT_CK(m, C_OpenSession(m->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                NULL, NULL, &m->sess)) ||
        !KT_CK(m, C_Login(m->sess, CKU_SO, (CK_UTF8CHAR *)KT_BENCH_SO_PIN,
                          strlen(KT_BENCH_SO_PIN))) ||
        !KT_CK(m, C_InitPIN(m->sess, (CK_UTF8CHAR *)KT_BENCH_USER_PIN,
                            strlen(KT_BENCH_USER_PIN))) ||
        !KT_CK(m, C_Logout(m->sess)) ||
        !KT_CK(m, C_Login(m->sess, CKU_USER, (CK_UTF8CHAR *)KT_BENCH_USER_PIN,
                          strlen(KT_BENCH_USER_PIN))))
        return false;
    if (!kt_bench_gen_root(m))
        return false;
    m->ready = true;
    return true;
}

static void kt_bench_teardown(kt_bench_mod *m)
{
    if (m->fl == NULL)
        return;
    if (m->initialized)
        m->fl->C_Finalize(NULL);
    p11_kit_module_release(m->fl);
    m->fl = NULL;
}

static bool kt_bench_has_mech(kt_bench_mod *m, CK_MECHANISM_TYPE type,
                              CK_FLAGS need)
{
    CK_MECHANISM_INFO info;

    if (m->fl->C_GetMechanismInfo(m->slot, type, &info) != CKR_OK)
        return false;
    return (info.flags & need) == need;
}

/* ---- the timed loop ------------------------------------------------- */

/* One operation; i counts from 0. */
typedef bool (*kt_bench_op_fn)(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                               unsigned long i);

/*
 * Runs op until o->seconds have passed or o->max_ops operations are done
 * (at least one); returns ops/s, or -1 after a failed operation.
 */
static double kt_bench_loop(kt_bench_mod *m, CK_SESSION_HANDLE s,
                            kt_bench_op_fn op, void *ctx,
                            const kt_bench_opts *o, unsigned long *done)
{
    double start = bench_now(), elapsed;
    unsigned long i = 0;

    do {
        if (!op(m, s, ctx, i))
            return -1;
        i++;
        elapsed = bench_now() - start;
    } while (i < o->max_ops && elapsed < o->seconds);
    if (done)
        *done = i;
    return (double)i / elapsed;
}

/* Session objects an operation made, destroyed after the timed loop. */
typedef struct kt_bench_handles {
    CK_OBJECT_HANDLE *h;
    unsigned long n;
} kt_bench_handles;

static bool kt_bench_handles_alloc(kt_bench_handles *hs, const kt_bench_opts *o)
{
    hs->n = 0;
    hs->h = calloc(o->max_ops, sizeof(*hs->h));
    if (hs->h == NULL) {
        fprintf(stderr, "kt-bench: out of memory\n");
        kt_bench_errors = true;
    }
    return hs->h != NULL;
}

static bool kt_bench_handles_destroy(kt_bench_mod *m, CK_SESSION_HANDLE s,
                                     kt_bench_handles *hs)
{
    bool ok = true;

    for (unsigned long i = 0; i < hs->n && ok; i++)
        ok = KT_CK(m, C_DestroyObject(s, hs->h[i]));
    free(hs->h);
    hs->h = NULL;
    hs->n = 0;
    return ok;
}

/* ---- symmetric benchmarks ------------------------------------------- */

static bool kt_bench_session_aes(kt_bench_mod *m, CK_SESSION_HANDLE s,
                                 CK_OBJECT_HANDLE *out)
{
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE t[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_secret),
        KT_ATTR_VAR(CKA_KEY_TYPE, kt_type_aes),
        KT_ATTR_VAR(CKA_VALUE_LEN, kt_aes_len),
        KT_ATTR_VAR(CKA_TOKEN, kt_false),
        KT_ATTR_VAR(CKA_SENSITIVE, kt_true),
        KT_ATTR_VAR(CKA_EXTRACTABLE, kt_true),
        KT_ATTR_VAR(CKA_ENCRYPT, kt_true),
        KT_ATTR_VAR(CKA_DECRYPT, kt_true),
    };

    return KT_CK(m, C_GenerateKey(s, &mech, t, KT_NELEMS(t), out));
}

static bool kt_bench_op_keygen(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                               unsigned long i)
{
    kt_bench_handles *hs = ctx;

    if (!kt_bench_session_aes(m, s, &hs->h[i]))
        return false;
    hs->n = i + 1;
    return true;
}

typedef struct kt_bench_wrap_ctx {
    CK_OBJECT_HANDLE key;
    CK_BYTE blob[KT_BENCH_KWP_BLOB_LEN];
    CK_ULONG blob_len;
    kt_bench_handles hs;
} kt_bench_wrap_ctx;

static bool kt_bench_op_wrap(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                             unsigned long i)
{
    kt_bench_wrap_ctx *w = ctx;
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_BYTE out[KT_BENCH_KWP_BLOB_LEN + 16];
    CK_ULONG len = sizeof(out);

    (void)i;
    if (!KT_CK(m, C_WrapKey(s, &mech, m->root, w->key, out, &len)))
        return false;
    if (len != KT_BENCH_KWP_BLOB_LEN) {
        fprintf(stderr, "kt-bench: %s: RFC 5649 blob of %lu bytes\n", m->name,
                (unsigned long)len);
        kt_bench_errors = true;
        return false;
    }
    return true;
}

static bool kt_bench_unwrap_aes(kt_bench_mod *m, CK_SESSION_HANDLE s,
                                CK_MECHANISM *mech, CK_OBJECT_HANDLE kek,
                                CK_BYTE *blob, CK_ULONG blob_len,
                                CK_OBJECT_HANDLE *out)
{
    /* No CKA_VALUE_LEN: SoftHSM2 refuses it in an unwrap template. */
    CK_ATTRIBUTE t[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_secret),
        KT_ATTR_VAR(CKA_KEY_TYPE, kt_type_aes),
        KT_ATTR_VAR(CKA_TOKEN, kt_false),
        KT_ATTR_VAR(CKA_SENSITIVE, kt_true),
        KT_ATTR_VAR(CKA_EXTRACTABLE, kt_false),
        KT_ATTR_VAR(CKA_ENCRYPT, kt_true),
        KT_ATTR_VAR(CKA_DECRYPT, kt_true),
    };

    return KT_CK(
        m, C_UnwrapKey(s, mech, kek, blob, blob_len, t, KT_NELEMS(t), out));
}

static bool kt_bench_op_unwrap(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                               unsigned long i)
{
    kt_bench_wrap_ctx *w = ctx;
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};

    if (!kt_bench_unwrap_aes(m, s, &mech, m->root, w->blob, w->blob_len,
                             &w->hs.h[i]))
        return false;
    w->hs.n = i + 1;
    return true;
}

/*
 * Unwrap, then destroy the new key at once, as a long-running caller does:
 * object creation and destruction are timed with the unwrap, so the thread
 * rows show what sessions share when objects come and go.
 */
static bool kt_bench_op_unwrap_destroy(kt_bench_mod *m, CK_SESSION_HANDLE s,
                                       void *ctx, unsigned long i)
{
    kt_bench_wrap_ctx *w = ctx;
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;

    (void)i;
    return kt_bench_unwrap_aes(m, s, &mech, m->root, w->blob, w->blob_len,
                               &h) &&
           KT_CK(m, C_DestroyObject(s, h));
}

/* Makes an extractable session AES key and its RFC 5649 blob under root. */
static bool kt_bench_wrap_prepare(kt_bench_mod *m, kt_bench_wrap_ctx *w)
{
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};

    memset(w, 0, sizeof(*w));
    w->blob_len = sizeof(w->blob);
    return kt_bench_session_aes(m, m->sess, &w->key) &&
           KT_CK(m, C_WrapKey(m->sess, &mech, m->root, w->key, w->blob,
                              &w->blob_len));
}

typedef struct kt_bench_gcm_ctx {
    CK_OBJECT_HANDLE key;
    CK_BYTE in[KT_BENCH_GCM_DATA_LEN];
    CK_BYTE out[KT_BENCH_GCM_DATA_LEN + KT_BENCH_GCM_TAG_BITS / 8];
} kt_bench_gcm_ctx;

static bool kt_bench_op_gcm(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                            unsigned long i)
{
    kt_bench_gcm_ctx *g = ctx;
    CK_BYTE iv[KT_BENCH_GCM_IV_LEN] = {0};
    CK_GCM_PARAMS p;
    CK_MECHANISM mech = {CKM_AES_GCM, &p, sizeof(p)};
    CK_ULONG len = sizeof(g->out);

    /* A fresh IV per message, as GCM demands. */
    for (int b = 0; b < 8; b++)
        iv[KT_BENCH_GCM_IV_LEN - 1 - b] = (CK_BYTE)(i >> (8 * b));
    memset(&p, 0, sizeof(p));
    p.pIv = iv;
    p.ulIvLen = sizeof(iv);
    p.ulIvBits = sizeof(iv) * 8;
    p.ulTagBits = KT_BENCH_GCM_TAG_BITS;
    if (!KT_CK(m, C_EncryptInit(s, &mech, g->key)) ||
        !KT_CK(m, C_Encrypt(s, g->in, sizeof(g->in), g->out, &len)))
        return false;
    if (len != sizeof(g->out)) {
        fprintf(stderr, "kt-bench: %s: GCM output of %lu bytes\n", m->name,
                (unsigned long)len);
        kt_bench_errors = true;
        return false;
    }
    return true;
}

/* One user login and logout on the benchmark's session: the PIN KDF
 * (keytier: scrypt at --kdf-cost; SoftHSM2: its own PBKDF2), the retry
 * counter's store writes, and unsealing or resealing what logging in opens. */
static bool kt_bench_op_login(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                              unsigned long i)
{
    (void)ctx, (void)i;
    return KT_CK(m, C_Login(s, CKU_USER, (CK_UTF8CHAR *)KT_BENCH_USER_PIN,
                            strlen(KT_BENCH_USER_PIN))) &&
           KT_CK(m, C_Logout(s));
}

static void kt_bench_login(kt_bench_mod *m, int col, const kt_bench_opts *o)
{
    double r;

    if (!kt_bench_selected(o, "login"))
        return;
    kt_bench_row_use(ROW_LOGIN, "login + logout (user PIN)");
    kt_bench_progress("%s: login", m->name);
    if (!KT_CK(m, C_Logout(m->sess)))
        return;
    r = kt_bench_loop(m, m->sess, kt_bench_op_login, NULL, o, NULL);
    kt_bench_row_set(ROW_LOGIN, col, r, r < 0 ? "error" : NULL);
}

static void kt_bench_symmetric(kt_bench_mod *m, int col, const kt_bench_opts *o)
{
    kt_bench_handles hs;
    kt_bench_wrap_ctx w;
    double r;

    if (kt_bench_selected(o, "keygen")) {
        kt_bench_row_use(ROW_KEYGEN, "AES-256 keygen (session key)");
        kt_bench_progress("%s: keygen", m->name);
        if (kt_bench_handles_alloc(&hs, o)) {
            r = kt_bench_loop(m, m->sess, kt_bench_op_keygen, &hs, o, NULL);
            if (kt_bench_handles_destroy(m, m->sess, &hs))
                kt_bench_row_set(ROW_KEYGEN, col, r, r < 0 ? "error" : NULL);
        }
    }
    if (kt_bench_selected(o, "wrap") || kt_bench_selected(o, "unwrap")) {
        kt_bench_row_use(ROW_WRAP, "wrap AES-256, RFC 5649, token root");
        kt_bench_row_use(ROW_UNWRAP, "unwrap AES-256, RFC 5649, token root");
        kt_bench_progress("%s: wrap, unwrap", m->name);
        if (!kt_bench_has_mech(m, CKM_AES_KEY_WRAP_PAD,
                               CKF_WRAP | CKF_UNWRAP)) {
            kt_bench_row_set(ROW_WRAP, col, -1, "mechanism not listed");
            kt_bench_row_set(ROW_UNWRAP, col, -1, "mechanism not listed");
        } else if (kt_bench_wrap_prepare(m, &w)) {
            r = kt_bench_loop(m, m->sess, kt_bench_op_wrap, &w, o, NULL);
            kt_bench_row_set(ROW_WRAP, col, r, r < 0 ? "error" : NULL);
            if (kt_bench_handles_alloc(&w.hs, o)) {
                r = kt_bench_loop(m, m->sess, kt_bench_op_unwrap, &w, o, NULL);
                if (kt_bench_handles_destroy(m, m->sess, &w.hs))
                    kt_bench_row_set(ROW_UNWRAP, col, r,
                                     r < 0 ? "error" : NULL);
            }
            KT_CK(m, C_DestroyObject(m->sess, w.key));
        }
    }
    if (kt_bench_selected(o, "gcm")) {
        kt_bench_gcm_ctx *g = calloc(1, sizeof(*g));

        kt_bench_row_use(ROW_GCM, "AES-256-GCM encrypt 4 KiB");
        kt_bench_progress("%s: gcm", m->name);
        if (g == NULL) {
            kt_bench_errors = true;
        } else if (!kt_bench_has_mech(m, CKM_AES_GCM, CKF_ENCRYPT)) {
            kt_bench_row_set(ROW_GCM, col, -1, "mechanism not listed");
        } else if (kt_bench_session_aes(m, m->sess, &g->key)) {
            memset(g->in, 0x5a, sizeof(g->in));
            r = kt_bench_loop(m, m->sess, kt_bench_op_gcm, g, o, NULL);
            kt_bench_row_set(ROW_GCM, col, r, r < 0 ? "error" : NULL);
            KT_CK(m, C_DestroyObject(m->sess, g->key));
        }
        free(g);
    }
}

/* ---- token objects: durable creation and find by label -------------- */

static bool kt_bench_create_object(kt_bench_mod *m, CK_SESSION_HANDLE s,
                                   unsigned long n)
{
    char label[KT_BENCH_LABEL_MAX];
    CK_BYTE key[KT_BENCH_AES_KEY_LEN];
    CK_OBJECT_HANDLE h;
    int len = snprintf(label, sizeof(label), KT_BENCH_OBJ_LABEL_FMT, n);
    CK_ATTRIBUTE t[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_secret),
        KT_ATTR_VAR(CKA_KEY_TYPE, kt_type_aes),
        KT_ATTR_VAR(CKA_TOKEN, kt_true),
        KT_ATTR_VAR(CKA_PRIVATE, kt_true),
        KT_ATTR_VAR(CKA_SENSITIVE, kt_true),
        KT_ATTR_VAR(CKA_EXTRACTABLE, kt_false),
        KT_ATTR_VAR(CKA_ENCRYPT, kt_true),
        KT_ATTR(CKA_LABEL, label, (CK_ULONG)len),
        KT_ATTR(CKA_VALUE, key, sizeof(key)),
    };
    bool ok;

    /* The key bytes do not matter for the benchmark, only their size. */
    memset(key, (int)(n & 0xff), sizeof(key));
    ok = KT_CK(m, C_CreateObject(s, t, KT_NELEMS(t), &h));
    memset(key, 0, sizeof(key));
    return ok;
}

static bool kt_bench_op_create(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                               unsigned long i)
{
    (void)ctx;
    (void)i;
    if (!kt_bench_create_object(m, s, m->n_objects))
        return false;
    m->n_objects++;
    return true;
}

/* Filling the token up to a find-set size: untimed, on several sessions. */
typedef struct kt_bench_fill {
    kt_bench_mod *m;
    unsigned long next; /* taken with __atomic_fetch_add */
    unsigned long target;
    bool failed;
} kt_bench_fill;

static void *kt_bench_fill_main(void *arg)
{
    kt_bench_fill *f = arg;
    kt_bench_mod *m = f->m;
    CK_SESSION_HANDLE s;
    unsigned long n;

    if (!KT_CK(m, C_OpenSession(m->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                NULL, NULL, &s))) {
        __atomic_store_n(&f->failed, true, __ATOMIC_RELAXED);
        return NULL;
    }
    while (!__atomic_load_n(&f->failed, __ATOMIC_RELAXED)) {
        n = __atomic_fetch_add(&f->next, 1, __ATOMIC_RELAXED);
        if (n >= f->target)
            break;
        if (!kt_bench_create_object(m, s, n))
            __atomic_store_n(&f->failed, true, __ATOMIC_RELAXED);
    }
    KT_CK(m, C_CloseSession(s));
    return NULL;
}

/*
 * Creates token objects until the token holds `target`. SoftHSM2 spends
 * its creation time waiting for the file system, so several sessions fill
 * the token much faster than one; the order of labels does not matter.
 */
static bool kt_bench_populate(kt_bench_mod *m, unsigned long target,
                              unsigned threads)
{
    kt_bench_fill f = {m, m->n_objects, target, false};
    pthread_t tid[KT_BENCH_FILL_THREADS_MAX];
    unsigned started = 0;

    if (m->n_objects >= target)
        return true;
    kt_bench_progress("%s: fill token to %lu objects (%u sessions)", m->name,
                      target, threads);
    while (started < threads &&
           pthread_create(&tid[started], NULL, kt_bench_fill_main, &f) == 0)
        started++;
    if (started == 0)
        kt_bench_fill_main(&f);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (f.failed)
        return false;
    m->n_objects = target;
    return true;
}

typedef struct kt_bench_find_ctx {
    unsigned long n;
} kt_bench_find_ctx;

static bool kt_bench_op_find(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                             unsigned long i)
{
    kt_bench_find_ctx *f = ctx;
    char label[KT_BENCH_LABEL_MAX];
    /* Spread lookups over the whole set: a multiplier coprime to n. */
    unsigned long which = (i * 7919UL + 13UL) % f->n;
    int len = snprintf(label, sizeof(label), KT_BENCH_OBJ_LABEL_FMT, which);
    CK_ATTRIBUTE t[] = {KT_ATTR(CKA_LABEL, label, (CK_ULONG)len)};
    CK_OBJECT_HANDLE found[2];
    CK_ULONG nfound = 0;

    if (!KT_CK(m, C_FindObjectsInit(s, t, KT_NELEMS(t))))
        return false;
    if (!KT_CK(m, C_FindObjects(s, found, KT_NELEMS(found), &nfound))) {
        m->fl->C_FindObjectsFinal(s);
        return false;
    }
    if (!KT_CK(m, C_FindObjectsFinal(s)))
        return false;
    if (nfound != 1) {
        fprintf(stderr, "kt-bench: %s: label %s found %lu times\n", m->name,
                label, (unsigned long)nfound);
        kt_bench_errors = true;
        return false;
    }
    return true;
}

static void kt_bench_objects(kt_bench_mod *m, int col, const kt_bench_opts *o)
{
    bool want_find = kt_bench_selected(o, "find");
    kt_bench_opts co = *o;
    double r;

    if (kt_bench_selected(o, "create")) {
        /*
         * Durable creation, one session, timed like every other figure;
         * the objects made here count towards the first find set.
         */
        if (want_find && o->n_find_sizes && co.max_ops > o->find_sizes[0])
            co.max_ops = o->find_sizes[0];
        kt_bench_row_use(ROW_CREATE, "create token object (durable)");
        kt_bench_progress("%s: create token objects", m->name);
        r = kt_bench_loop(m, m->sess, kt_bench_op_create, NULL, &co, NULL);
        kt_bench_row_set(ROW_CREATE, col, r, r < 0 ? "error" : NULL);
        if (r < 0)
            return;
    }
    if (!want_find)
        return;
    for (size_t k = 0; k < o->n_find_sizes; k++) {
        kt_bench_find_ctx f = {o->find_sizes[k]};

        kt_bench_row_use(ROW_FIND0 + (int)k, "find by label among %lu", f.n);
        if (!kt_bench_populate(m, f.n, o->fill_threads))
            return;
        kt_bench_progress("%s: find among %lu", m->name, f.n);
        r = kt_bench_loop(m, m->sess, kt_bench_op_find, &f, o, NULL);
        kt_bench_row_set(ROW_FIND0 + (int)k, col, r, r < 0 ? "error" : NULL);
        if (r < 0)
            return;
    }
}

/* ---- unwrap on several threads -------------------------------------- */

typedef struct kt_bench_thread {
    kt_bench_mod *m;
    const kt_bench_opts *o;
    pthread_barrier_t *barrier;
    CK_SESSION_HANDLE sess;
    kt_bench_wrap_ctx w;
    double ops;
    unsigned long done;
    double cpu; /* CPU seconds this thread spent in its timed loop */
} kt_bench_thread;

static double kt_bench_thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *kt_bench_thread_main(void *arg)
{
    kt_bench_thread *t = arg;

    double cpu0;

    pthread_barrier_wait(t->barrier);
    cpu0 = kt_bench_thread_cpu();
    t->ops = kt_bench_loop(t->m, t->sess, kt_bench_op_unwrap_destroy, &t->w,
                           t->o, &t->done);
    t->cpu = kt_bench_thread_cpu() - cpu0;
    return NULL;
}

/*
 * Total unwrap-then-destroy ops/s of n threads, each on its own session
 * (every key is destroyed inside the timed loop). note gets the
 * CPU time per operation and how many cores were busy on average: with
 * flat CPU/op, a missing speed-up means the cores were taken (machine
 * load); busy cores well under n means threads waited (lock contention).
 */
static double kt_bench_unwrap_threads(kt_bench_mod *m, const kt_bench_opts *o,
                                      int n, char *note, size_t note_len,
                                      double *cpu_us)
{
    double wall0 = 0, wall, cpu = 0;
    unsigned long ops = 0;
    kt_bench_thread t[KT_BENCH_THREADS_MAX];
    pthread_t tid[KT_BENCH_THREADS_MAX];
    pthread_barrier_t barrier;
    kt_bench_wrap_ctx w;
    double total = 0;
    int started = 0, i;

    if (!kt_bench_wrap_prepare(m, &w))
        return -1;
    KT_CK(m, C_DestroyObject(m->sess, w.key));
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    memset(t, 0, sizeof(t));
    for (i = 0; i < n; i++) {
        t[i].m = m;
        t[i].o = o;
        t[i].barrier = &barrier;
        t[i].w = w;
        if (!KT_CK(m, C_OpenSession(m->slot, CKF_SERIAL_SESSION, NULL, NULL,
                                    &t[i].sess)))
            break;
    }
    if (i == n) {
        wall0 = bench_now();
        for (started = 0; started < n; started++) {
            if (pthread_create(&tid[started], NULL, kt_bench_thread_main,
                               &t[started]) != 0)
                break;
        }
        if (started < n) {
            /* Cannot happen short of resource exhaustion; unblock the rest. */
            fprintf(stderr, "kt-bench: cannot start threads\n");
            kt_bench_errors = true;
            for (i = started; i < n; i++)
                pthread_barrier_wait(&barrier);
        }
        for (i = 0; i < started; i++) {
            pthread_join(tid[i], NULL);
            total = (total < 0 || t[i].ops < 0) ? -1 : total + t[i].ops;
            cpu += t[i].cpu;
            ops += t[i].done;
        }
        wall = bench_now() - wall0;
        if (ops > 0 && wall > 0) {
            *cpu_us = cpu * 1e6 / (double)ops;
            snprintf(note, note_len, "CPU %.1f us/op, %.2f cores busy", *cpu_us,
                     cpu / wall);
        }
        if (started < n)
            total = -1;
    } else {
        total = -1;
    }
    for (i = 0; i < n; i++) {
        if (t[i].sess)
            KT_CK(m, C_CloseSession(t[i].sess));
    }
    pthread_barrier_destroy(&barrier);
    return total;
}

static void kt_bench_threads(kt_bench_mod *m, int col, const kt_bench_opts *o)
{
    char note[48] = "";
    double r;

    if (!kt_bench_selected(o, "threads"))
        return;
    kt_bench_row_use(ROW_UNWRAP_T1, "unwrap + destroy, 1 thread");
    kt_bench_row_use(ROW_UNWRAP_T2, "unwrap + destroy, 2 threads (total)");
    if (!kt_bench_has_mech(m, CKM_AES_KEY_WRAP_PAD, CKF_WRAP | CKF_UNWRAP)) {
        kt_bench_row_set(ROW_UNWRAP_T1, col, -1, "mechanism not listed");
        kt_bench_row_set(ROW_UNWRAP_T2, col, -1, "mechanism not listed");
        return;
    }
    kt_bench_progress("%s: unwrap on 1 and 2 threads", m->name);
    r = kt_bench_unwrap_threads(m, o, 1, note, sizeof(note),
                                &kt_rows[ROW_UNWRAP_T1].cpu_us[col]);
    kt_bench_row_set(ROW_UNWRAP_T1, col, r, r < 0 ? "error" : note);
    note[0] = '\0';
    r = kt_bench_unwrap_threads(m, o, 2, note, sizeof(note),
                                &kt_rows[ROW_UNWRAP_T2].cpu_us[col]);
    kt_bench_row_set(ROW_UNWRAP_T2, col, r, r < 0 ? "error" : note);
}

/* ---- RSA and EC ----------------------------------------------------- */

typedef struct kt_bench_sign_ctx {
    CK_MECHANISM mech;
    CK_OBJECT_HANDLE key;
    CK_ULONG sig_len;
    CK_BYTE data[KT_BENCH_DIGEST_LEN];
} kt_bench_sign_ctx;

static bool kt_bench_op_sign(kt_bench_mod *m, CK_SESSION_HANDLE s, void *ctx,
                             unsigned long i)
{
    kt_bench_sign_ctx *c = ctx;
    CK_BYTE sig[512];
    CK_ULONG len = sizeof(sig);

    c->data[0] = (CK_BYTE)i;
    if (!KT_CK(m, C_SignInit(s, &c->mech, c->key)) ||
        !KT_CK(m, C_Sign(s, c->data, sizeof(c->data), sig, &len)))
        return false;
    if (len != c->sig_len) {
        fprintf(stderr, "kt-bench: %s: signature of %lu bytes\n", m->name,
                (unsigned long)len);
        kt_bench_errors = true;
        return false;
    }
    return true;
}

static bool kt_bench_gen_rsa(kt_bench_mod *m, CK_OBJECT_HANDLE *pub,
                             CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = KT_BENCH_RSA_BITS;
    CK_ATTRIBUTE pt[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_public),
        KT_ATTR_VAR(CKA_TOKEN, kt_true),
        KT_ATTR_VAR(CKA_VERIFY, kt_true),
        KT_ATTR_VAR(CKA_WRAP, kt_true),
        KT_ATTR_VAR(CKA_ENCRYPT, kt_true),
        KT_ATTR_VAR(CKA_MODULUS_BITS, bits),
        KT_ATTR(CKA_PUBLIC_EXPONENT, kt_rsa_exponent, sizeof(kt_rsa_exponent)),
    };
    CK_ATTRIBUTE st[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_private),
        KT_ATTR_VAR(CKA_TOKEN, kt_true),
        KT_ATTR_VAR(CKA_PRIVATE, kt_true),
        KT_ATTR_VAR(CKA_SENSITIVE, kt_true),
        KT_ATTR_VAR(CKA_EXTRACTABLE, kt_false),
        KT_ATTR_VAR(CKA_SIGN, kt_true),
        KT_ATTR_VAR(CKA_UNWRAP, kt_true),
        KT_ATTR_VAR(CKA_DECRYPT, kt_true),
    };

    return KT_CK(m, C_GenerateKeyPair(m->sess, &mech, pt, KT_NELEMS(pt), st,
                                      KT_NELEMS(st), pub, priv));
}

static bool kt_bench_gen_ec(kt_bench_mod *m, CK_OBJECT_HANDLE *pub,
                            CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_public),
        KT_ATTR_VAR(CKA_TOKEN, kt_true),
        KT_ATTR_VAR(CKA_VERIFY, kt_true),
        KT_ATTR(CKA_EC_PARAMS, kt_p256_oid, sizeof(kt_p256_oid)),
    };
    CK_ATTRIBUTE st[] = {
        KT_ATTR_VAR(CKA_CLASS, kt_class_private),
        KT_ATTR_VAR(CKA_TOKEN, kt_true),
        KT_ATTR_VAR(CKA_PRIVATE, kt_true),
        KT_ATTR_VAR(CKA_SENSITIVE, kt_true),
        KT_ATTR_VAR(CKA_EXTRACTABLE, kt_false),
        KT_ATTR_VAR(CKA_SIGN, kt_true),
    };

    return KT_CK(m, C_GenerateKeyPair(m->sess, &mech, pt, KT_NELEMS(pt), st,
                                      KT_NELEMS(st), pub, priv));
}

typedef struct kt_bench_oaep_ctx {
    CK_RSA_PKCS_OAEP_PARAMS p;
    CK_MECHANISM mech;
    CK_OBJECT_HANDLE priv;
    CK_BYTE blob[KT_BENCH_RSA_SIG_LEN];
    CK_ULONG blob_len;
    kt_bench_handles hs;
} kt_bench_oaep_ctx;

static bool kt_bench_op_oaep_unwrap(kt_bench_mod *m, CK_SESSION_HANDLE s,
                                    void *ctx, unsigned long i)
{
    kt_bench_oaep_ctx *c = ctx;

    if (!kt_bench_unwrap_aes(m, s, &c->mech, c->priv, c->blob, c->blob_len,
                             &c->hs.h[i]))
        return false;
    c->hs.n = i + 1;
    return true;
}

/*
 * Wraps a session AES key under pub with OAEP SHA-256 or, where the module
 * refuses that (SoftHSM2 2.6 knows only SHA-1), SHA-1. Sets *hash_name.
 */
static bool kt_bench_oaep_prepare(kt_bench_mod *m, kt_bench_oaep_ctx *c,
                                  CK_OBJECT_HANDLE pub, const char **hash_name)
{
    static const struct {
        CK_MECHANISM_TYPE hash;
        CK_RSA_PKCS_MGF_TYPE mgf;
        const char *name;
    } hashes[] = {{CKM_SHA256, CKG_MGF1_SHA256, "OAEP SHA-256"},
                  {CKM_SHA_1, CKG_MGF1_SHA1, "OAEP SHA-1 (no SHA-256)"}};
    CK_OBJECT_HANDLE key;
    bool ok = false;

    if (!kt_bench_session_aes(m, m->sess, &key))
        return false;
    for (size_t k = 0; k < KT_NELEMS(hashes) && !ok; k++) {
        memset(&c->p, 0, sizeof(c->p));
        c->p.hashAlg = hashes[k].hash;
        c->p.mgf = hashes[k].mgf;
        c->p.source = CKZ_DATA_SPECIFIED;
        c->mech.mechanism = CKM_RSA_PKCS_OAEP;
        c->mech.pParameter = &c->p;
        c->mech.ulParameterLen = sizeof(c->p);
        c->blob_len = sizeof(c->blob);
        ok = m->fl->C_WrapKey(m->sess, &c->mech, pub, key, c->blob,
                              &c->blob_len) == CKR_OK;
        *hash_name = hashes[k].name;
    }
    if (!ok) {
        fprintf(stderr, "kt-bench: %s: C_WrapKey with OAEP failed\n", m->name);
        kt_bench_errors = true;
    }
    KT_CK(m, C_DestroyObject(m->sess, key));
    return ok;
}

static void kt_bench_asym(kt_bench_mod *m, int col, const kt_bench_opts *o)
{
    CK_OBJECT_HANDLE pub, priv;
    double r;

    if (kt_bench_selected(o, "rsa") || kt_bench_selected(o, "oaep")) {
        kt_bench_row_use(ROW_RSA_SIGN, "RSA-2048 sign SHA256-RSA-PKCS");
        kt_bench_row_use(ROW_OAEP_UNWRAP, "RSA-2048 OAEP unwrap AES-256");
        if (!kt_bench_has_mech(m, CKM_RSA_PKCS_KEY_PAIR_GEN,
                               CKF_GENERATE_KEY_PAIR)) {
            kt_bench_row_set(ROW_RSA_SIGN, col, -1, "no RSA keygen");
            kt_bench_row_set(ROW_OAEP_UNWRAP, col, -1, "no RSA keygen");
        } else if (kt_bench_gen_rsa(m, &pub, &priv)) {
            if (!kt_bench_selected(o, "rsa")) {
                /* not requested */
            } else if (!kt_bench_has_mech(m, CKM_SHA256_RSA_PKCS, CKF_SIGN)) {
                kt_bench_row_set(ROW_RSA_SIGN, col, -1, "mechanism not listed");
            } else {
                kt_bench_sign_ctx c = {{CKM_SHA256_RSA_PKCS, NULL, 0},
                                       priv,
                                       KT_BENCH_RSA_SIG_LEN,
                                       {0}};

                kt_bench_progress("%s: RSA-2048 sign", m->name);
                r = kt_bench_loop(m, m->sess, kt_bench_op_sign, &c, o, NULL);
                kt_bench_row_set(ROW_RSA_SIGN, col, r, r < 0 ? "error" : NULL);
            }
            if (!kt_bench_selected(o, "oaep")) {
                /* not requested */
            } else if (!kt_bench_has_mech(m, CKM_RSA_PKCS_OAEP,
                                          CKF_WRAP | CKF_UNWRAP)) {
                kt_bench_row_set(ROW_OAEP_UNWRAP, col, -1,
                                 "mechanism not listed");
            } else {
                kt_bench_oaep_ctx *c = calloc(1, sizeof(*c));
                const char *hash = "";

                kt_bench_progress("%s: RSA-2048 OAEP unwrap", m->name);
                if (c && kt_bench_oaep_prepare(m, c, pub, &hash) &&
                    kt_bench_handles_alloc(&c->hs, o)) {
                    c->priv = priv;
                    r = kt_bench_loop(m, m->sess, kt_bench_op_oaep_unwrap, c, o,
                                      NULL);
                    if (kt_bench_handles_destroy(m, m->sess, &c->hs))
                        kt_bench_row_set(ROW_OAEP_UNWRAP, col, r,
                                         r < 0 ? "error" : hash);
                }
                free(c);
            }
        }
    }
    if (kt_bench_selected(o, "ecdsa")) {
        kt_bench_row_use(ROW_ECDSA_SIGN, "ECDSA P-256 sign (CKM_ECDSA)");
        if (!kt_bench_has_mech(m, CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR) ||
            !kt_bench_has_mech(m, CKM_ECDSA, CKF_SIGN)) {
            kt_bench_row_set(ROW_ECDSA_SIGN, col, -1, "mechanism not listed");
        } else if (kt_bench_gen_ec(m, &pub, &priv)) {
            /*
             * CKM_ECDSA on a SHA-256 digest: SoftHSM2 lacks ECDSA_SHA256,
             * and it is the primitive `openssl speed ecdsap256` times.
             */
            kt_bench_sign_ctx c = {
                {CKM_ECDSA, NULL, 0}, priv, KT_BENCH_EC_SIG_LEN, {0}};

            kt_bench_progress("%s: ECDSA P-256 sign", m->name);
            r = kt_bench_loop(m, m->sess, kt_bench_op_sign, &c, o, NULL);
            kt_bench_row_set(ROW_ECDSA_SIGN, col, r, r < 0 ? "error" : NULL);
        }
    }
}

/*
 * `openssl speed` for the raw primitives, in its machine-readable form.
 * -elapsed: by default openssl speed divides by its user CPU time, which
 * on a busy machine flatters it against our wall-clock figures.
 */
static void kt_bench_openssl_speed(const kt_bench_opts *o)
{
    char cmd[128], line[256];
    unsigned idx, bits;
    double sign, verify;
    FILE *p;
    int secs = o->seconds < 1 ? 1 : (int)(o->seconds + 0.5);

    if (!kt_rows[ROW_RSA_SIGN].used && !kt_rows[ROW_ECDSA_SIGN].used)
        return;
    snprintf(cmd, sizeof(cmd),
             "openssl speed -elapsed -mr -seconds %d rsa2048 ecdsap256 "
             "2>/dev/null",
             secs);
    kt_bench_progress("%s", cmd);
    p = popen(cmd, "r");
    if (p == NULL)
        return;
    while (fgets(line, sizeof(line), p)) {
        if (sscanf(line, "+F2:%u:%u:%lf:%lf", &idx, &bits, &sign, &verify) ==
                4 &&
            bits == KT_BENCH_RSA_BITS)
            kt_rows[ROW_RSA_SIGN].openssl = sign;
        else if (sscanf(line, "+F4:%u:%u:%lf:%lf", &idx, &bits, &sign,
                        &verify) == 4 &&
                 bits == 256)
            kt_rows[ROW_ECDSA_SIGN].openssl = sign;
    }
    if (pclose(p) != 0)
        kt_bench_progress("openssl speed failed; no openssl column");
}

/* ---- report --------------------------------------------------------- */

static void kt_bench_fmt_ops(char *buf, size_t n, const kt_bench_row *r,
                             int col)
{
    if (r->ops[col] >= 0)
        snprintf(buf, n, "%.1f", r->ops[col]);
    else
        snprintf(buf, n, "n/a");
}

static void kt_bench_print_machine(const kt_bench_opts *o)
{
    struct utsname u;
    char line[256], model[160] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    time_t t = time(NULL);
    struct tm tm;

    while (f && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');

        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(model, sizeof(model), "%s", colon + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    uname(&u);
    gmtime_r(&t, &tm);
    strftime(line, sizeof(line), "%Y-%m-%d %H:%M UTC", &tm);
    printf("kt-bench %s on %s, %s %s, CPU %s x %ld\n", line, u.nodename,
           u.sysname, u.release, model, sysconf(_SC_NPROCESSORS_ONLN));
    printf("tokens in %s (%s); %.2f s or %lu ops per figure\n", o->dir,
           kt_bench_fs_name(o->dir), o->seconds, o->max_ops);
    f = fopen("/proc/loadavg", "r");
    if (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        printf("load average at start: %s\n", line);
    }
    if (f)
        fclose(f);
    for (int i = 0; i < KT_BENCH_MODULES; i++) {
        if (o->paths[i])
            printf("  %-9s %s\n", kt_bench_mod_names[i], o->paths[i]);
    }
}

static void kt_bench_print_table(const kt_bench_opts *o)
{
    char a[32], b[32], ratio[32];

    printf("\n%-40s %14s %14s %10s %10s\n", "ops/s", "keytier", "softhsm2",
           "k/s", "openssl");
    for (int i = 0; i < ROW_COUNT; i++) {
        const kt_bench_row *r = &kt_rows[i];
        char ossl[32] = "";

        if (!r->used)
            continue;
        kt_bench_fmt_ops(a, sizeof(a), r, KT_MOD_KEYTIER);
        kt_bench_fmt_ops(b, sizeof(b), r, KT_MOD_SOFTHSM2);
        if (r->ops[0] > 0 && r->ops[1] > 0)
            snprintf(ratio, sizeof(ratio), "%.2fx", r->ops[0] / r->ops[1]);
        else
            snprintf(ratio, sizeof(ratio), "-");
        if (r->openssl > 0)
            snprintf(ossl, sizeof(ossl), "%.1f", r->openssl);
        printf("%-40s %14s %14s %10s %10s\n", r->title, o->paths[0] ? a : "-",
               o->paths[1] ? b : "-", ratio, ossl);
        for (int c = 0; c < KT_BENCH_MODULES; c++) {
            if (r->note[c][0])
                printf("%-40s   %s: %s\n", "", kt_bench_mod_names[c],
                       r->note[c]);
        }
    }
}

/* Prints one target line: value against goal, met / NOT met / not measured. */
static void kt_bench_target(const char *what, double num, double den,
                            double goal, const char *unit)
{
    if (num <= 0 || den <= 0) {
        printf("  %-52s not measured\n", what);
        return;
    }
    printf("  %-52s %6.2f%s  %s\n", what, num / den, unit,
           num / den >= goal ? "met" : "NOT met");
}

static void kt_bench_print_targets(void)
{
    const kt_bench_row *r = kt_rows;
    int big = -1;

    printf("\ntargets\n");
    if (r[ROW_WRAP].used)
        kt_bench_target("wrap >= 3x SoftHSM2", r[ROW_WRAP].ops[0],
                        r[ROW_WRAP].ops[1], 3, "x");
    if (r[ROW_UNWRAP].used)
        kt_bench_target("unwrap >= 3x SoftHSM2", r[ROW_UNWRAP].ops[0],
                        r[ROW_UNWRAP].ops[1], 3, "x");
    for (int k = 0; k < KT_BENCH_MAX_FIND; k++) {
        if (r[ROW_FIND0 + k].used &&
            strcmp(r[ROW_FIND0 + k].title, "find by label among 10000") == 0)
            big = ROW_FIND0 + k;
    }
    if (big >= 0)
        kt_bench_target("find among 10000 >= 50x SoftHSM2", r[big].ops[0],
                        r[big].ops[1], 50, "x");
    else if (r[ROW_FIND0].used)
        printf("  %-52s not measured (--find-sizes 1000,10000)\n",
               "find among 10000 >= 50x SoftHSM2");
    if (r[ROW_CREATE].used)
        kt_bench_target("durable token-object creation >= SoftHSM2",
                        r[ROW_CREATE].ops[0], r[ROW_CREATE].ops[1], 1, "x");
    if (r[ROW_UNWRAP_T2].used) {
        kt_bench_target("keytier unwrap+destroy 2 threads >= 1.8x 1",
                        r[ROW_UNWRAP_T2].ops[0], r[ROW_UNWRAP_T1].ops[0], 1.8,
                        "x");
        if (r[ROW_UNWRAP_T2].ops[1] > 0 && r[ROW_UNWRAP_T1].ops[1] > 0)
            printf("  %-52s %6.2fx  (for comparison)\n",
                   "softhsm2 unwrap+destroy 2 threads / 1 thread",
                   r[ROW_UNWRAP_T2].ops[1] / r[ROW_UNWRAP_T1].ops[1]);
    }
    if (r[ROW_RSA_SIGN].used) {
        kt_bench_target("RSA-2048 sign >= SoftHSM2", r[ROW_RSA_SIGN].ops[0],
                        r[ROW_RSA_SIGN].ops[1], 1, "x");
        kt_bench_target("RSA-2048 sign within 15% of openssl speed",
                        r[ROW_RSA_SIGN].ops[0], r[ROW_RSA_SIGN].openssl, 0.85,
                        "x");
    }
    if (r[ROW_ECDSA_SIGN].used) {
        kt_bench_target("ECDSA P-256 sign >= SoftHSM2",
                        r[ROW_ECDSA_SIGN].ops[0], r[ROW_ECDSA_SIGN].ops[1], 1,
                        "x");
        kt_bench_target("ECDSA P-256 sign within 15% of openssl speed",
                        r[ROW_ECDSA_SIGN].ops[0], r[ROW_ECDSA_SIGN].openssl,
                        0.85, "x");
    }
    if (r[ROW_OAEP_UNWRAP].used)
        kt_bench_target("RSA-2048 OAEP unwrap >= SoftHSM2",
                        r[ROW_OAEP_UNWRAP].ops[0], r[ROW_OAEP_UNWRAP].ops[1], 1,
                        "x");
}

/* Tab-separated rows for scripts: row, module, ops/s (-1: not measured). */
static bool kt_bench_write_tsv(const kt_bench_opts *o)
{
    FILE *f = fopen(o->tsv, "w");

    if (f == NULL) {
        fprintf(stderr, "kt-bench: cannot write %s: %s\n", o->tsv,
                strerror(errno));
        return false;
    }
    for (int i = 0; i < ROW_COUNT; i++) {
        if (!kt_rows[i].used)
            continue;
        for (int c = 0; c < KT_BENCH_MODULES; c++) {
            if (o->paths[c])
                fprintf(f, "%s\t%s\t%.3f\n", kt_rows[i].title,
                        kt_bench_mod_names[c], kt_rows[i].ops[c]);
        }
        if (kt_rows[i].openssl > 0)
            fprintf(f, "%s\topenssl\t%.3f\n", kt_rows[i].title,
                    kt_rows[i].openssl);
    }
    return fclose(f) == 0;
}

/* ---- main ----------------------------------------------------------- */

static void kt_bench_usage(FILE *f)
{
    fprintf(
        f,
        "usage: kt-bench [--keytier PATH] [--softhsm2 PATH] [options]\n"
        "  --keytier PATH     keytier-pkcs11.so\n"
        "  --softhsm2 PATH    libsofthsm2.so (file backend)\n"
        "  --seconds S        time per figure (default 1)\n"
        "  --max-ops N        operations per figure at most (default "
        "200000)\n"
        "  --find-sizes LIST  token-object counts to find among "
        "(default 1000;\n"
        "                     1000,10000 with --dir /dev/shm: SoftHSM2 "
        "fills ~20/s on disk)\n"
        "  --only LIST        login,keygen,wrap,unwrap,gcm,create,find,threads,"
        "rsa,oaep,ecdsa\n"
        "  --dir DIR          where the temp token dirs go (default "
        "$TMPDIR or /tmp)\n"
        "  --kdf-cost N       keytier pin_kdf_cost (default 15)\n"
        "  --fill-threads N   sessions filling the find sets, untimed "
        "(default 8)\n"
        "  --no-openssl-speed do not run `openssl speed`\n"
        "  --tsv FILE         also write figures as TSV\n"
        "  --keep             keep the token dirs\n");
}

static bool kt_bench_parse_sizes(kt_bench_opts *o, const char *s)
{
    char *end;

    o->n_find_sizes = 0;
    while (*s != '\0') {
        unsigned long v;

        if (o->n_find_sizes == KT_BENCH_MAX_FIND)
            return false;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || v == 0 || v > 1000000 ||
            (o->n_find_sizes && v <= o->find_sizes[o->n_find_sizes - 1]))
            return false;
        o->find_sizes[o->n_find_sizes++] = v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return false;
    }
    return o->n_find_sizes > 0;
}

/* Every name in --only must be a benchmark: a typo must not pass silently. */
static bool kt_bench_check_only(const char *only)
{
    static const char *const names[] = {"login", "keygen", "wrap", "unwrap",
                                        "gcm",   "create", "find", "threads",
                                        "rsa",   "oaep",   "ecdsa"};
    const char *p = only;

    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        bool known = false;

        for (size_t i = 0; i < KT_NELEMS(names) && !known; i++)
            known = strlen(names[i]) == len && strncmp(p, names[i], len) == 0;
        if (!known) {
            fprintf(stderr, "kt-bench: unknown benchmark '%.*s' in --only\n",
                    (int)len, p);
            return false;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

/* The options' values when not given. */
static void kt_bench_defaults(kt_bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->seconds = 1.0;
    o->max_ops = 200000;
    /*
     * 10,000 is opt-in: SoftHSM2's file store creates ~20 objects/s on
     * ext4 here, so filling 10,000 takes minutes unless --dir is a tmpfs.
     */
    o->find_sizes[0] = 1000;
    o->n_find_sizes = 1;
    o->kdf_cost = 15;
    o->fill_threads = 8;
    o->openssl_speed = true;
    o->dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
}

/* The numeric options (--seconds, --max-ops, --kdf-cost, --fill-threads),
 * each within its range; C is the option's getopt value. */
static bool kt_bench_parse_number(kt_bench_opts *o, int c, const char *arg)
{
    char *end;

    switch (c) {
    case 't':
        o->seconds = strtod(arg, &end);
        if (*end != '\0' || !(o->seconds > 0 && o->seconds <= 600)) {
            fprintf(stderr, "kt-bench: bad --seconds %s\n", arg);
            return false;
        }
        return true;
    case 'n':
        o->max_ops = strtoul(arg, &end, 10);
        if (*end != '\0' || o->max_ops == 0 || o->max_ops > 10000000) {
            fprintf(stderr, "kt-bench: bad --max-ops %s\n", arg);
            return false;
        }
        return true;
    case 'c':
        o->kdf_cost = (int)strtol(arg, &end, 10);
        if (*end != '\0' || o->kdf_cost < 1 || o->kdf_cost > 30) {
            fprintf(stderr, "kt-bench: bad --kdf-cost %s\n", arg);
            return false;
        }
        return true;
    default: /* 'F' */
        o->fill_threads = (unsigned)strtoul(arg, &end, 10);
        if (*end != '\0' || o->fill_threads < 1 ||
            o->fill_threads > KT_BENCH_FILL_THREADS_MAX) {
            fprintf(stderr, "kt-bench: bad --fill-threads %s\n", arg);
            return false;
        }
        return true;
    }
}

static bool kt_bench_parse(kt_bench_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"keytier", required_argument, NULL, 'k'},
        {"softhsm2", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 't'},
        {"max-ops", required_argument, NULL, 'n'},
        {"find-sizes", required_argument, NULL, 'f'},
        {"only", required_argument, NULL, 'o'},
        {"dir", required_argument, NULL, 'd'},
        {"kdf-cost", required_argument, NULL, 'c'},
        {"fill-threads", required_argument, NULL, 'F'},
        {"no-openssl-speed", no_argument, NULL, 'N'},
        {"tsv", required_argument, NULL, 'T'},
        {"keep", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    kt_bench_defaults(o);
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->paths[KT_MOD_KEYTIER] = optarg;
            break;
        case 's':
            o->paths[KT_MOD_SOFTHSM2] = optarg;
            break;
        case 't':
        case 'n':
        case 'c':
        case 'F':
            if (!kt_bench_parse_number(o, c, optarg))
                return false;
            break;
        case 'f':
            if (!kt_bench_parse_sizes(o, optarg)) {
                fprintf(stderr,
                        "kt-bench: bad --find-sizes %s (increasing counts, "
                        "at most %d)\n",
                        optarg, KT_BENCH_MAX_FIND);
                return false;
            }
            break;
        case 'o':
            o->only = optarg;
            if (!kt_bench_check_only(optarg))
                return false;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 'N':
            o->openssl_speed = false;
            break;
        case 'T':
            o->tsv = optarg;
            break;
        case 'K':
            o->keep = true;
            break;
        case 'h':
            kt_bench_usage(stdout);
            exit(0);
        default:
            kt_bench_usage(stderr);
            return false;
        }
    }
    if (optind != argc || (!o->paths[0] && !o->paths[1])) {
        kt_bench_usage(stderr);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    kt_bench_opts o;
    kt_bench_mod mods[KT_BENCH_MODULES];
    char base[4096];
    int i;

    if (!kt_bench_parse(&o, argc, argv))
        return 2;
    if (!kt_bench_fmt(base, sizeof(base), "%s/kt-bench.XXXXXX", o.dir) ||
        mkdtemp(base) == NULL) {
        fprintf(stderr, "kt-bench: mkdtemp %s: %s\n", base, strerror(errno));
        return 1;
    }
    if (!kt_bench_write_configs(base, o.kdf_cost)) {
        fprintf(stderr, "kt-bench: cannot write configs in %s\n", base);
        return 1;
    }
    kt_bench_print_machine(&o);
    fflush(stdout);

    memset(mods, 0, sizeof(mods));
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        mods[i].name = kt_bench_mod_names[i];
        mods[i].path = o.paths[i];
        if (mods[i].path)
            kt_bench_setup(&mods[i]);
    }
    /*
     * One benchmark at a time across modules, so both are measured under
     * the same machine load.
     */
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        if (mods[i].ready)
            kt_bench_symmetric(&mods[i], i, &o);
    }
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        if (mods[i].ready)
            kt_bench_threads(&mods[i], i, &o);
    }
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        if (mods[i].ready)
            kt_bench_asym(&mods[i], i, &o);
    }
    /* Right after the module's RSA/EC figures, under the same load. */
    if (o.openssl_speed)
        kt_bench_openssl_speed(&o);
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        if (mods[i].ready)
            kt_bench_objects(&mods[i], i, &o);
    }
    /* Last: a logout invalidates the handles of private objects (the
     * root), which every other benchmark uses. */
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        if (mods[i].ready)
            kt_bench_login(&mods[i], i, &o);
    }
    for (i = 0; i < KT_BENCH_MODULES; i++)
        kt_bench_teardown(&mods[i]);

    kt_bench_print_table(&o);
    kt_bench_print_targets();
    if (o.tsv && !kt_bench_write_tsv(&o))
        kt_bench_errors = true;
    if (o.keep)
        printf("\ntoken dirs kept in %s\n", base);
    else
        nftw(base, kt_bench_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    for (i = 0; i < KT_BENCH_MODULES; i++) {
        if (o.paths[i] && !mods[i].ready)
            kt_bench_errors = true;
    }
    if (kt_bench_errors)
        fprintf(stderr, "kt-bench: some benchmarks failed (see above)\n");
    return kt_bench_errors ? 1 : 0;
}
