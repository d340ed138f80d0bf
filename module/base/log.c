#include "kt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ossl/ossl.h"

/* The logger only takes a format and values: secrets are never passed to
 * it (keys and PINs have no printable form in this module). */
static enum kt_log_level log_level = KT_LOG_WARNING;
static FILE *log_fp;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void kt_wipe(void *p, size_t len)
{
    kt_ossl_cleanse(p, len);
}

/* The secure heap exists (made here or by the host); the smallest size it
 * last refused (0: none since a block went back); running out was
 * reported. */
static atomic_bool secure_heap;
static atomic_size_t secure_full;
static atomic_bool secure_full_warned;
static bool secure_made_here;

void kt_free_secret(void *p, size_t len)
{
    if (p == NULL)
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

void kt_secure_init(size_t size)
{
    if (secure_made_here)
        return; /* ours, from an earlier C_Initialize: it outlives them */
    enum kt_secure_heap h = kt_ossl_secure_heap_init(size);
    switch (h) {
    case KT_SECURE_HEAP_NONE:
        kt_log(KT_LOG_WARNING,
               "secure heap of %zu bytes not available: key material is "
               "kept in ordinary memory",
               size);
        return;
    case KT_SECURE_HEAP_UNLOCKED:
        kt_log(KT_LOG_WARNING,
               "secure heap of %zu bytes could not be locked in memory or "
               "excluded from core dumps (RLIMIT_MEMLOCK?): key material "
               "may reach swap",
               size);
        break;
    case KT_SECURE_HEAP_HOST:
        kt_log(KT_LOG_INFO, "using the host process's secure heap");
        break;
    case KT_SECURE_HEAP_LOCKED:
        kt_log(KT_LOG_INFO, "secure heap of %zu bytes for key material", size);
        break;
    }
    secure_made_here = h != KT_SECURE_HEAP_HOST;
    atomic_store(&secure_heap, true);
    /* OpenSSL's secure heap is a buddy allocator: with nothing allocated,
     * every small allocation splits the whole arena down to its size and
     * every free merges it back (some 16 levels each way, under its global
     * lock). One smallest block held for good keeps a free buddy at every
     * level, so the per-call allocations of C_UnwrapKey take one list
     * entry and merge nothing. */
    if (secure_made_here && kt_ossl_secure_malloc(1) == NULL)
        kt_log(KT_LOG_WARNING, "secure heap: cannot reserve its first block");
}

void *kt_secure_alloc(size_t len)
{
    if (len == 0)
        len = 1;
    /* A full heap is not asked again until a block goes back: each failed
     * try costs a walk of its free lists under its global lock. */
    size_t refused = atomic_load_explicit(&secure_full, memory_order_relaxed);
    if (refused == 0 || len < refused) {
        void *p = kt_ossl_secure_malloc(len);
        if (p != NULL)
            return p;
        if (atomic_load(&secure_heap))
            atomic_store(&secure_full, len);
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

void kt_log_open(enum kt_log_level level, const char *file)
{
    pthread_mutex_lock(&log_lock);
    log_level = level;
    if (log_fp != NULL && log_fp != stderr)
        fclose(log_fp);
    log_fp = NULL;
    if (file != NULL && file[0] != '\0') {
        log_fp = fopen(file, "ae");
        if (log_fp == NULL)
            fprintf(stderr, "keytier: warning: cannot open log file %s\n",
                    file);
    }
    pthread_mutex_unlock(&log_lock);
}

void kt_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fp != NULL && log_fp != stderr)
        fclose(log_fp);
    log_fp = NULL;
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

#define RV(x)                                                                  \
    {                                                                          \
        x, #x                                                                  \
    }
static const struct {
    CK_RV rv;
    const char *name;
} rv_names[] = {
    RV(CKR_OK),
    RV(CKR_CANCEL),
    RV(CKR_HOST_MEMORY),
    RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED),
    RV(CKR_ARGUMENTS_BAD),
    RV(CKR_NO_EVENT),
    RV(CKR_NEED_TO_CREATE_THREADS),
    RV(CKR_CANT_LOCK),
    RV(CKR_ATTRIBUTE_READ_ONLY),
    RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID),
    RV(CKR_ACTION_PROHIBITED),
    RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR),
    RV(CKR_DEVICE_MEMORY),
    RV(CKR_DEVICE_REMOVED),
    RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
    RV(CKR_FUNCTION_CANCELED),
    RV(CKR_FUNCTION_NOT_PARALLEL),
    RV(CKR_FUNCTION_NOT_SUPPORTED),
    RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE),
    RV(CKR_KEY_TYPE_INCONSISTENT),
    RV(CKR_KEY_NOT_NEEDED),
    RV(CKR_KEY_CHANGED),
    RV(CKR_KEY_NEEDED),
    RV(CKR_KEY_INDIGESTIBLE),
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV(CKR_KEY_NOT_WRAPPABLE),
    RV(CKR_KEY_UNEXTRACTABLE),
    RV(CKR_MECHANISM_INVALID),
    RV(CKR_MECHANISM_PARAM_INVALID),
    RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE),
    RV(CKR_OPERATION_NOT_INITIALIZED),
    RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE),
    RV(CKR_PIN_EXPIRED),
    RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED),
    RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SESSION_EXISTS),
    RV(CKR_SESSION_READ_ONLY_EXISTS),
    RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV(CKR_SIGNATURE_INVALID),
    RV(CKR_SIGNATURE_LEN_RANGE),
    RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT),
    RV(CKR_TOKEN_NOT_PRESENT),
    RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED),
    RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_USER_ALREADY_LOGGED_IN),
    RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED),
    RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_USER_TOO_MANY_TYPES),
    RV(CKR_WRAPPED_KEY_INVALID),
    RV(CKR_WRAPPED_KEY_LEN_RANGE),
    RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
    RV(CKR_WRAPPING_KEY_SIZE_RANGE),
    RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
    RV(CKR_RANDOM_NO_RNG),
    RV(CKR_DOMAIN_PARAMS_INVALID),
    RV(CKR_CURVE_NOT_SUPPORTED),
    RV(CKR_BUFFER_TOO_SMALL),
    RV(CKR_SAVED_STATE_INVALID),
    RV(CKR_INFORMATION_SENSITIVE),
    RV(CKR_STATE_UNSAVEABLE),
    RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    RV(CKR_MUTEX_BAD),
    RV(CKR_MUTEX_NOT_LOCKED),
    RV(CKR_FUNCTION_REJECTED),
};

const char *kt_rv_name(CK_RV rv)
{
    for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
        if (rv_names[i].rv == rv)
            return rv_names[i].name;
    return "CKR_(unknown)";
}
