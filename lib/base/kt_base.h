/*
 * kt_base.h - the base layer of libkeytier: secret buffers, bounded
 * reader/writer, constant-time compare, logger and the error table access.
 * Everything above lib/base/ uses these instead of raw memcpy, memcmp and
 * fprintf.
 */
#ifndef KT_BASE_H
#define KT_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keytier.h"
#include "nodiscard.h"
#include "wipe.h"

#define KT_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- errors (kt_error.c) ---------------------------------------------- */

/* Records the detail of an error for keytier_last_error_detail() and returns
 * err, so that `return kt_err(KEYTIER_E_X, "...", ...)` reads naturally.
 * The text must name objects (URIs, ids) and reasons, never secrets. */
keytier_err kt_err(keytier_err err, const char *fmt, ...) KT_PRINTF(2, 3);
/* Like kt_err, keeping the detail already recorded (by a deeper call) after
 * the new text: "<message>: <new text> (<previous detail>)". */
keytier_err kt_err_context(keytier_err err, const char *fmt, ...)
    KT_PRINTF(2, 3);
/* Clears this thread's detail (called on entry of every public function). */
void kt_err_clear(void);
/* Puts back a detail saved from keytier_last_error_detail() (for work that
 * must not disturb the caller's error, such as an audit anchor update). */
void kt_err_restore(const char *saved);

/* ---- secret buffers (kt_secret.c) ------------------------------------- */

/* Key material and PINs live only in this type.  It is opaque so that no
 * code (in particular the logger) can format it; the bytes are reached
 * through kt_secret_data() for cryptographic calls only and are wiped with
 * OPENSSL_cleanse when the buffer is freed. */
typedef struct kt_secret kt_secret;

KT_NODISCARD kt_secret *kt_secret_new(size_t len); /* zero-filled */
KT_NODISCARD kt_secret *kt_secret_from(const void *src, size_t len);
KT_NODISCARD kt_secret *kt_secret_random(size_t len); /* RAND_priv_bytes */
KT_NODISCARD kt_secret *kt_secret_dup(const kt_secret *s);
void kt_secret_free(kt_secret *s); /* NULL-safe; wipes */
unsigned char *kt_secret_data(kt_secret *s);
const unsigned char *kt_secret_cdata(const kt_secret *s);
size_t kt_secret_len(const kt_secret *s);
/* Shortens the visible length (the wipe still covers the allocation). */
void kt_secret_truncate(kt_secret *s, size_t len);

/* Wipes a stack or heap temporary: kt_wipe (wipe.h). */

/* ---- constant-time compare -------------------------------------------- */

/* True when the n bytes are equal; time depends on n only (CRYPTO_memcmp).
 * For MACs, tags, commitments, key check values. */
KT_NODISCARD bool kt_ct_equal(const void *a, const void *b, size_t n);

/* ---- sizes ------------------------------------------------------------- */

/* Overflow-checked arithmetic: false when the result does not fit. */
static inline KT_NODISCARD bool kt_size_add(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline KT_NODISCARD bool kt_size_mul(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* ---- bounded reader (kt_buf.c) ---------------------------------------- */

/* A cursor over untrusted bytes.  Every read checks the remaining length
 * before it advances; a failed read leaves the cursor where it was.
 * Integers are big-endian. */
struct kt_rd {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

void kt_rd_init(struct kt_rd *rd, const void *buf, size_t len);
size_t kt_rd_remaining(const struct kt_rd *rd);
KT_NODISCARD bool kt_rd_u8(struct kt_rd *rd, uint8_t *v);
KT_NODISCARD bool kt_rd_u16(struct kt_rd *rd, uint16_t *v);
KT_NODISCARD bool kt_rd_u32(struct kt_rd *rd, uint32_t *v);
KT_NODISCARD bool kt_rd_u64(struct kt_rd *rd, uint64_t *v);
/* A view of the next n bytes (no copy). */
KT_NODISCARD bool kt_rd_view(struct kt_rd *rd, size_t n, const uint8_t **p);
/* Copies the next n bytes into dst of capacity cap (fails if n > cap). */
KT_NODISCARD bool kt_rd_copy(struct kt_rd *rd, void *dst, size_t cap, size_t n);
/* Reads a u8 length then that many bytes as a view. */
KT_NODISCARD bool kt_rd_lv8(struct kt_rd *rd, const uint8_t **p, size_t *n);

/* ---- bounded writer (kt_buf.c) ---------------------------------------- */

/* A cursor over a fixed-capacity output.  Writes that would not fit fail
 * and set a sticky error, so a sequence can be checked once at the end
 * with kt_wr_ok(). */
struct kt_wr {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool failed;
};

void kt_wr_init(struct kt_wr *wr, void *buf, size_t cap);
bool kt_wr_u8(struct kt_wr *wr, uint8_t v);
bool kt_wr_u16(struct kt_wr *wr, uint16_t v);
bool kt_wr_u32(struct kt_wr *wr, uint32_t v);
bool kt_wr_u64(struct kt_wr *wr, uint64_t v);
bool kt_wr_bytes(struct kt_wr *wr, const void *p, size_t n);
/* u8 length then the bytes (fails if n > 255). */
bool kt_wr_lv8(struct kt_wr *wr, const void *p, size_t n);
/* Reserves n bytes and returns where to fill them, or NULL. */
uint8_t *kt_wr_reserve(struct kt_wr *wr, size_t n);
KT_NODISCARD bool kt_wr_ok(const struct kt_wr *wr);

/* ---- logger (kt_log.c) ------------------------------------------------ */

enum kt_log_level {
    KT_LOG_ERROR = 0,
    KT_LOG_WARNING = 1,
    KT_LOG_INFO = 2,
    KT_LOG_DEBUG = 3,
};

typedef struct kt_log kt_log;

/* path NULL logs to stderr.  Thread-safe; one line per record. */
KT_NODISCARD keytier_err kt_log_open(const char *path, enum kt_log_level level,
                                     kt_log **out);
/* Records to the system logger: datagrams "<PRI>keytier[PID]: LEVEL TEXT"
 * (facility daemon) on the unix socket socket_path (NULL: /dev/log, which
 * journald and rsyslog serve). KEYTIER_E_CONFIG when the socket cannot be
 * reached now; later a lost logger costs records, never the operation. */
KT_NODISCARD keytier_err kt_log_open_syslog(const char *socket_path,
                                            enum kt_log_level level,
                                            kt_log **out);
void kt_log_close(kt_log *log);
bool kt_log_enabled(const kt_log *log, enum kt_log_level level);
/* Parses "error" | "warning" | "info" | "debug". */
KT_NODISCARD bool kt_log_level_parse(const char *s, enum kt_log_level *out);

/* A token call: its name, result (a CK_RV, with its text) and latency.
 * Never its arguments (DEBUG level). */
void kt_log_call(kt_log *log, const char *call, unsigned long rv,
                 const char *rv_text, uint64_t latency_ns);
/* An event: a fixed text and the subject it concerns (an id or URI).  There
 * is deliberately no printf-style entry point: nothing can hand the logger
 * a secret to format.  `event` must be a string literal. */
#define kt_log_event(log, level, event, subject)                               \
    kt_log_event_((log), (level), "" event "", (subject))
void kt_log_event_(kt_log *log, enum kt_log_level level, const char *event,
                   const char *subject);

/* Monotonic clock in nanoseconds (for latencies). */
uint64_t kt_now_ns(void);
/* Wall clock in milliseconds since the epoch (times other processes and
 * nodes compare: published counters). */
int64_t kt_wall_ms(void);

/* Makes room for one more element in a growing array of elem-byte items
 * holding n (capacity *cap, doubled from first): false, array untouched,
 * when memory runs out or the size would overflow. */
KT_NODISCARD bool kt_array_reserve(void **arr, size_t *cap, size_t n,
                                   size_t elem, size_t first);

#endif /* KT_BASE_H */
