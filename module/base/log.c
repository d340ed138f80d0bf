#include "kt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckr.h"
#include "kt_file.h"
#include "kt_syslog.h"
#include "ossl/ossl.h"

/* The logger only takes a format and values: secrets are never passed to
 * it (keys and PINs have no printable form in this module). */
static enum kt_log_level log_level = KT_LOG_WARNING;
static FILE *log_fp;
/* log_target = syslog: the logger's socket (sock -1: not in use). */
static struct kt_syslog log_syslog = {.sock = -1};
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* The secure heap exists (made here or by the host); the smallest size it
 * last refused (0: none since a block went back); running out was
 * reported. */
static atomic_bool secure_heap;
static atomic_size_t secure_full;
static atomic_bool secure_full_warned;
static bool secure_made_here;
/* How much of a heap made here the module's key material may take: the
 * rest stays for OpenSSL itself, whose DRBG reseeds and private-key
 * numbers also come from the secure heap and fail (RAND_bytes, signing)
 * when it is full. 0: no limit (the host's heap, its size unknown). */
static size_t secure_budget;

/* Small secure blocks (at most KT_SLOT bytes: secret key values, unwrap
 * buffers) come from slots of one block of a heap made here, taken at
 * kt_secure_init and kept with the heap, without OpenSSL's global lock:
 * threads that unwrap and destroy keys would otherwise queue on it (three
 * acquisitions per key). A slot is claimed and released with one atomic
 * on its group's word (64 slots a group, each group on its own cache
 * line; a thread starts at a group of its own) and wiped whole before it
 * is released. */
#define KT_SLOT        64
#define KT_SLOT_GROUPS 16
struct slot_group {
    _Alignas(KT_CACHE_LINE) _Atomic uint64_t taken; /* bit i: slot i */
};
static struct slot_group slot_groups[KT_SLOT_GROUPS];
static unsigned char *slot_base;
static unsigned slot_ngroups;
static atomic_uint slot_next_group;
static _Thread_local unsigned slot_home = UINT_MAX;

/* A sixteenth of the heap, at most KT_SLOT_GROUPS groups. */
static void slots_init(size_t heap)
{
    size_t group = (size_t)KT_SLOT * 64;
    size_t n = heap / 16 / group;
    if (n > KT_SLOT_GROUPS)
        n = KT_SLOT_GROUPS;
    if (n == 0)
        return;
    void *p = kt_ossl_secure_malloc(n * group);
    if (p == NULL)
        return;
    slot_base = p;
    slot_ngroups = (unsigned)n;
}

static void *slot_alloc(void)
{
    unsigned n = slot_ngroups;
    if (n == 0)
        return NULL;
    if (slot_home >= n)
        slot_home = atomic_fetch_add_explicit(&slot_next_group, 1,
                                              memory_order_relaxed) %
                    n;
    for (unsigned k = 0; k < n; k++) {
        unsigned g = (slot_home + k) % n;
        _Atomic uint64_t *w = &slot_groups[g].taken;
        uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
        while (cur != UINT64_MAX) {
            unsigned bit = (unsigned)__builtin_ctzll(~cur);
            if (atomic_compare_exchange_weak_explicit(
                    w, &cur, cur | (UINT64_C(1) << bit), memory_order_acquire,
                    memory_order_relaxed))
                return slot_base + ((size_t)g * 64 + bit) * KT_SLOT;
        }
    }
    return NULL;
}

/* p is a slot: wiped whole and released. */
static bool slot_free(void *p)
{
    const unsigned char *q = p;
    size_t span = (size_t)slot_ngroups * 64 * KT_SLOT;
    if (slot_base == NULL || q < slot_base || q >= slot_base + span)
        return false;
    size_t i = (size_t)(q - slot_base) / KT_SLOT;
    kt_ossl_cleanse(slot_base + i * KT_SLOT, KT_SLOT);
    atomic_fetch_and_explicit(&slot_groups[i / 64].taken,
                              ~(UINT64_C(1) << (i % 64)), memory_order_release);
    return true;
}

void kt_free_secret(void *p, size_t len)
{
    if (p == NULL || slot_free(p))
        return;
    if (kt_ossl_secure_allocated(p)) {
        kt_ossl_secure_clear_free(p, len);
        if (atomic_load_explicit(&secure_full, memory_order_relaxed) != 0)
            atomic_store(&secure_full, 0);
        return;
    }
    kt_ossl_cleanse(p, len);
    free(p);
}

/* OpenSSL documents CRYPTO_secure_malloc_init as not thread-safe: its
 * flag and lock are plain variables that every secure allocation of the
 * process reads (OpenSSL's DRBG allocates there on each new thread, in
 * any module or library). So the heap is made when the module is loaded
 * (kt_secure_make, from core/module.c's constructor), before any
 * C_Initialize, not while another module's C_Initialize may run on a
 * host's parallel workers; C_Initialize only reports it (kt_secure_init). */
static enum kt_secure_heap secure_kind;
static size_t secure_size;
static bool secure_tried;
static bool secure_reported;
static bool secure_first_refused;

void kt_secure_make(size_t size)
{
    if (secure_tried)
        return;
    secure_tried = true;
    secure_size = size;
    secure_kind = kt_ossl_secure_heap_init(size);
    if (secure_kind == KT_SECURE_HEAP_NONE)
        return;
    secure_made_here = secure_kind != KT_SECURE_HEAP_HOST;
    secure_budget = secure_made_here ? size / 2 : 0;
    atomic_store(&secure_heap, true);
    /* OpenSSL's secure heap is a buddy allocator: with nothing allocated,
     * every small allocation splits the whole arena down to its size and
     * every free merges it back (some 16 levels each way, under its global
     * lock). One smallest block held for good keeps a free buddy at every
     * level, so the per-call allocations of C_UnwrapKey take one list
     * entry and merge nothing. */
    if (secure_made_here && kt_ossl_secure_malloc(1) == NULL)
        secure_first_refused = true;
    if (secure_made_here)
        slots_init(size);
}

static void secure_report(size_t size)
{
    if (secure_first_refused)
        kt_log(KT_LOG_WARNING, "secure heap: cannot reserve its first block");
    switch (secure_kind) {
    case KT_SECURE_HEAP_NONE:
        kt_log(KT_LOG_WARNING,
               "secure heap of %zu bytes not available: key material is "
               "kept in ordinary memory",
               secure_size);
        return;
    case KT_SECURE_HEAP_UNLOCKED:
        kt_log(KT_LOG_WARNING,
               "secure heap of %zu bytes could not be locked in memory or "
               "excluded from core dumps (RLIMIT_MEMLOCK?): key material "
               "may reach swap",
               secure_size);
        break;
    case KT_SECURE_HEAP_HOST:
        kt_log(KT_LOG_INFO, "using the host process's secure heap");
        return;
    case KT_SECURE_HEAP_LOCKED:
        kt_log(KT_LOG_INFO, "secure heap of %zu bytes for key material",
               secure_size);
        break;
    }
    if (size != secure_size)
        kt_log(KT_LOG_WARNING,
               "secure_heap_size = %zu is not in effect: the heap of %zu "
               "bytes was made when the module was loaded (KEYTIER_CONF as "
               "it was then); the new size applies from the next start of "
               "the process",
               size, secure_size);
}

void kt_secure_init(size_t size)
{
    kt_secure_make(size); /* made at load unless the loader skipped it */
    if (!secure_reported) {
        secure_reported = true;
        secure_report(size);
    }
}

void *kt_secure_alloc(size_t len)
{
    if (len == 0)
        len = 1;
    if (len <= KT_SLOT) {
        void *slot = slot_alloc();
        if (slot != NULL)
            return slot;
    }
    /* A full heap is not asked again until a block goes back: each failed
     * try costs a walk of its free lists under its global lock. */
    size_t refused = atomic_load_explicit(&secure_full, memory_order_relaxed);
    if ((refused == 0 || len < refused) &&
        (secure_budget == 0 || kt_ossl_secure_used() + len <= secure_budget)) {
        void *p = kt_ossl_secure_malloc(len);
        if (p != NULL)
            return p;
        if (atomic_load(&secure_heap))
            atomic_store(&secure_full, len);
    } else if (refused == 0 || len < refused) {
        atomic_store(&secure_full, len); /* over the budget: as if full */
    }
    if (atomic_load(&secure_heap) &&
        !atomic_exchange(&secure_full_warned, true))
        kt_log(KT_LOG_WARNING,
               "secure heap full: key material now also goes to ordinary "
               "memory (raise secure_heap_size)");
    /* Blocks of a cache line or more are aligned to one (the token
     * structure needs it); smaller ones need malloc's alignment only. */
    if (len < KT_CACHE_LINE)
        return malloc(len);
    size_t n = (len + KT_CACHE_LINE - 1) & ~(size_t)(KT_CACHE_LINE - 1);
    return aligned_alloc(KT_CACHE_LINE, n);
}

/* Opens the file at path, 0600 whatever the umask (a log names tokens and
 * objects); on failure says why on stderr, which then takes the records. */
static void log_open_file(const char *path)
{
    int fd = kt_file_open_append(path);
    log_fp = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (log_fp == NULL && fd >= 0)
        close(fd);
    if (log_fp == NULL)
        fprintf(stderr, "keytier: warning: cannot open log file %s: %s\n", path,
                strerror(errno));
}

/* Connects to the system logger at path (NULL: /dev/log); on failure says
 * why on stderr, which then takes the records. */
static void log_open_syslog(const char *path)
{
    if (kt_syslog_open(&log_syslog, path))
        return;
    fprintf(stderr,
            "keytier: warning: log_target = syslog: cannot reach %s: %s (is "
            "the system logger running? set log_syslog_socket, or log to a "
            "file with log_file); logging to stderr\n",
            path != NULL ? path : KT_SYSLOG_SOCKET, strerror(errno));
}

static void log_drop_locked(void)
{
    if (log_fp != NULL && log_fp != stderr)
        fclose(log_fp);
    log_fp = NULL;
    kt_syslog_close(&log_syslog);
}

void kt_log_open(enum kt_log_level level, const char *file)
{
    pthread_mutex_lock(&log_lock);
    log_level = level;
    log_drop_locked();
    if (file != NULL && file[0] != '\0')
        log_open_file(file);
    pthread_mutex_unlock(&log_lock);
}

void kt_log_open_config(const struct kt_config *cfg)
{
    if (cfg->log_target != KT_LOG_TO_SYSLOG) {
        kt_log_open(cfg->log_level, cfg->log_file);
        return;
    }
    const char *sock = cfg->log_syslog_socket;
    pthread_mutex_lock(&log_lock);
    log_level = cfg->log_level;
    log_drop_locked();
    log_open_syslog(sock[0] != '\0' ? sock : NULL);
    pthread_mutex_unlock(&log_lock);
}

void kt_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    log_drop_locked();
    log_level = KT_LOG_WARNING;
    pthread_mutex_unlock(&log_lock);
}

void kt_log(enum kt_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_lock(&log_lock);
    if (log_syslog.sock >= 0) {
        char rec[KT_SYSLOG_RECORD_MAX];
        snprintf(rec, sizeof(rec), "%s: %s", level_names[level], msg);
        kt_syslog_send(&log_syslog, (unsigned)level, "keytier-pkcs11", rec);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    FILE *fp = log_fp != NULL ? log_fp : stderr;
    fprintf(fp, "%s keytier-pkcs11[%ld]: %s: %s\n", when, (long)getpid(),
            level_names[level], msg);
    fflush(fp);
    pthread_mutex_unlock(&log_lock);
}

CK_RV kt_trace(const char *fn, CK_RV rv)
{
    if (log_level >= KT_LOG_DEBUG)
        kt_log(KT_LOG_DEBUG, "%s -> %s", fn, kt_rv_name(rv));
    return rv;
}

const char *kt_rv_name(CK_RV rv)
{
    const kt_ckr_row *row = kt_ckr_find(rv);

    return row ? row->name : "CKR_(unknown)";
}
