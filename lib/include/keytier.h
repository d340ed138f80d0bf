/*
 * keytier.h - public API of libkeytier.
 *
 * libkeytier encrypts tenant data under a data encryption policy (DEP) whose
 * key is wrapped by two customer root keys held in two different PKCS#11
 * tokens and by a service-held availability key (shared/DESIGN.md §2).
 *
 * Conventions
 *  - Every function returns a keytier_err; KEYTIER_OK is 0.  On failure,
 *    keytier_strerror() gives the fixed message of the code and
 *    keytier_last_error_detail() a sentence (per thread) naming the object
 *    and the reason, e.g. the key URI that turned out extractable.  Neither
 *    ever contains key material or a PIN.
 *  - Types are opaque; objects returned through an out pointer are released
 *    with the matching *_free / *_close function.  No PKCS#11 or OpenSSL
 *    type appears here.
 *  - A keytier_ctx may be shared by many threads.  Opened keys
 *    (keytier_key) may be used by many threads for sealing and opening.
 */
#ifndef KEYTIER_H
#define KEYTIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KEYTIER_API         __attribute__((visibility("default")))
#define KEYTIER_MUST_CHECK  __attribute__((warn_unused_result))
#else
#define KEYTIER_API
#define KEYTIER_MUST_CHECK
#endif

/*
 * The error table: the only list of errors of the library.  Each row gives
 * the enum name, its value and its message; the enum, keytier_strerror()
 * and keytier_error_name() are all generated from it.  Values are stable
 * (they may be stored or sent over the wire): append, never renumber.
 */
#define KEYTIER_ERROR_TABLE(X)                                                 \
    X(KEYTIER_OK, 0, "success")                                                \
    X(KEYTIER_E_ARGS, 1, "invalid argument")                                   \
    X(KEYTIER_E_NOMEM, 2, "out of memory")                                     \
    X(KEYTIER_E_CONFIG, 3, "invalid configuration")                            \
    X(KEYTIER_E_MODULE, 4, "PKCS#11 module could not be loaded")               \
    X(KEYTIER_E_URI, 5, "malformed PKCS#11 URI")                               \
    X(KEYTIER_E_TOKEN_NOT_FOUND, 6, "no configured token matches")             \
    X(KEYTIER_E_TOKEN_AMBIGUOUS, 7, "several tokens match")                    \
    X(KEYTIER_E_KEY_NOT_FOUND, 8, "root key not found")                        \
    X(KEYTIER_E_KEY_AMBIGUOUS, 9, "several keys match")                        \
    X(KEYTIER_E_KEY_EXTRACTABLE, 10, "root key is extractable")                \
    X(KEYTIER_E_KEY_USAGE, 11, "root key may not wrap or unwrap")              \
    X(KEYTIER_E_KEY_TYPE, 12, "unsupported root key type")                     \
    X(KEYTIER_E_SAME_TOKEN, 13, "customer keys are in the same token")         \
    X(KEYTIER_E_MECHANISM, 14, "token does not support the wrap mechanism")    \
    X(KEYTIER_E_PIN, 15, "PIN unavailable")                                    \
    X(KEYTIER_E_LOGIN, 16, "token login failed")                               \
    X(KEYTIER_E_TOKEN, 17, "token operation failed")                           \
    X(KEYTIER_E_DEP_LIMIT, 18, "too many DEPs for this tenant and workload")   \
    X(KEYTIER_E_DEP_NOT_FOUND, 19, "DEP not found")                            \
    X(KEYTIER_E_DEP_DISABLED, 20, "DEP is disabled")                           \
    X(KEYTIER_E_WRONG_TENANT, 21, "object belongs to another tenant")          \
    X(KEYTIER_E_NOT_FOUND, 22, "key not found")                                \
    X(KEYTIER_E_WRONG_PARENT, 23, "key is not under this parent")              \
    X(KEYTIER_E_DEPTH, 24, "key tier depth exceeded")                          \
    X(KEYTIER_E_EXISTS, 25, "already exists")                                  \
    X(KEYTIER_E_AUTH, 26, "authentication failed: data altered or wrong key")  \
    X(KEYTIER_E_COMMITMENT, 27, "key commitment mismatch")                     \
    X(KEYTIER_E_FORMAT, 28, "malformed envelope or record")                    \
    X(KEYTIER_E_VERSION, 29, "unsupported format version")                     \
    X(KEYTIER_E_WRONG_KEY, 30, "envelope was sealed under another key")        \
    X(KEYTIER_E_TRUNCATED, 31, "stream truncated")                             \
    X(KEYTIER_E_TRAILING, 32, "data after the final chunk")                    \
    X(KEYTIER_E_IO, 33, "input/output error")                                  \
    X(KEYTIER_E_STORE, 34, "store error")                                      \
    X(KEYTIER_E_STORE_VERSION, 35, "store schema is newer than this library")  \
    X(KEYTIER_E_CRYPTO, 36, "cryptographic library failure")                   \
    X(KEYTIER_E_UNWRAP, 37, "no customer key could unwrap the DEP key")        \
    X(KEYTIER_E_BUFFER, 38, "output buffer too small")                         \
    X(KEYTIER_E_INTERNAL, 39, "internal error")                              \
    /* 40..49: availability (lib-avail) */                                     \
    X(KEYTIER_E_REVOKED, 40, "access revoked: the customer keys refused")      \
    X(KEYTIER_E_UNAVAILABLE, 41, "customer keys unavailable")                  \
    X(KEYTIER_E_AUDIT, 42, "audit log could not be written")                   \
    X(KEYTIER_E_AUDIT_TAMPERED, 43, "audit log altered")

#define KEYTIER_ERROR_ENUM_(name, value, msg) name = value,
typedef enum keytier_err {
    KEYTIER_ERROR_TABLE(KEYTIER_ERROR_ENUM_)
} keytier_err;
#undef KEYTIER_ERROR_ENUM_

/* Fixed message of an error code ("unknown error" for values not in the
 * table).  Never NULL. */
KEYTIER_API const char *keytier_strerror(keytier_err err);
/* Symbolic name of an error code ("KEYTIER_E_AUTH"); never NULL. */
KEYTIER_API const char *keytier_error_name(keytier_err err);
/* Detail of the last error returned to this thread: the message followed by
 * the object and reason ("root key is extractable: pkcs11:token=A;object=r").
 * Valid until the thread's next libkeytier call.  Never NULL. */
KEYTIER_API const char *keytier_last_error_detail(void);

/* ==== availability (lib-avail): fallback, cache, audit ===================
 * Kept in one block so lib-core and lib-avail edit different lines. */

/*
 * Checks the audit log at path (DESIGN.md §2 "Audit"): every line must be
 * exactly as written and carry the hash of the line before it.  Returns
 * KEYTIER_OK, or KEYTIER_E_AUDIT_TAMPERED with *bad_line the 1-based number
 * of the first line that was edited, removed (the line after the gap),
 * reordered or forged, and the reason in keytier_last_error_detail(); or
 * KEYTIER_E_IO.  *records (may be NULL) gets the number of intact records
 * before the first bad line.
 */
KEYTIER_API keytier_err keytier_audit_verify(const char *path,
                                             uint64_t *bad_line,
                                             uint64_t *records);

/* ==== end availability ================================================== */

#ifdef __cplusplus
}
#endif
#endif /* KEYTIER_H */
