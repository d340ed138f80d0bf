/* Fault injection, built only with meson -Dfault_injection=true (the
 * option defines KT_FAULT_INJECTION for every target and builds the shared
 * library libkt-fault.so, which the module, libkeytier and the test
 * programs link so that the process has ONE counter state).
 *
 * Four kinds of call can be made to fail:
 *   KT_FAULT_ALLOC   malloc/calloc/realloc/strdup/strndup, and the
 *                    aligned_alloc/posix_memalign/reallocarray/asprintf the
 *                    code also calls, of our own code (ld --wrap on the
 *                    module, libkeytier and the CLI): NULL with ENOMEM,
 *                    OpenSSL's (CRYPTO_set_mem_functions, set in
 *                    libkt-fault's constructor) and SQLite's
 *                    (sqlite3_config(SQLITE_CONFIG_MALLOC), same place)
 *   KT_FAULT_SQLITE  sqlite3_open_v2, sqlite3_prepare_v2/_v3, sqlite3_step,
 *                    sqlite3_exec of our own code (ld --wrap): the call is
 *                    not made and returns SQLITE_IOERR (SQLITE_NOMEM for
 *                    prepare/open)
 *   KT_FAULT_WRITE   write/pwrite/writev/ftruncate of our own code (ld
 *                    --wrap) and SQLite's xWrite/xTruncate (a VFS shim
 *                    registered as the default VFS over "unix"): fails
 *                    with EIO / SQLITE_IOERR_WRITE (_TRUNCATE)
 *   KT_FAULT_FSYNC   fsync/fdatasync of our own code and SQLite's xSync
 *                    (the shim): fails with EIO / SQLITE_IOERR_FSYNC
 * Calls are counted from kt_fault_arm on, in every thread (an atomic
 * counter per kind). Unarmed, every call passes straight through (one
 * atomic load). Not counted: allocations inside other libraries that have
 * no allocator hook (json-c, libc's stdio, p11-kit), stdio writes (fprintf
 * to log files), and OpenSSL's allocations when OpenSSL had allocated
 * before libkt-fault's constructor ran (CRYPTO_set_mem_functions then
 * refuses). */
#ifndef KT_COMMON_FAULT_H
#define KT_COMMON_FAULT_H

#include <stdbool.h>

enum kt_fault_kind {
    KT_FAULT_ALLOC,
    KT_FAULT_SQLITE,
    KT_FAULT_WRITE,
    KT_FAULT_FSYNC,
    KT_FAULT_KINDS
};

/* Starts counting calls of every kind from zero and makes the nth call of
 * kind (1-based) fail, once; n = 0 only counts. */
void kt_fault_arm(enum kt_fault_kind kind, unsigned long n);

/* Stops failing and counting; the counts stay readable. */
void kt_fault_disarm(void);

/* Calls of kind seen since the last kt_fault_arm. */
unsigned long kt_fault_count(enum kt_fault_kind kind);

/* Whether the armed failure happened since the last kt_fault_arm. */
bool kt_fault_fired(void);

/* "alloc", "sqlite", "write", "fsync". */
const char *kt_fault_kind_name(enum kt_fault_kind kind);

#endif
