/* Fault injection (kt_fault.h): libkt-fault.so, built with
 * -Dfault_injection=true only. One shared library holds the one counter
 * state of the process; the module, libkeytier and the CLI are linked with
 * ld --wrap so their calls land in the __wrap_* functions below, which call
 * the real ones (this library is not linked with --wrap). OpenSSL's and
 * SQLite's own allocations and SQLite's file I/O are counted through the
 * hooks those libraries offer, installed by the constructor. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

/* Everything this library defines is for the programs linked with it. */
#pragma GCC visibility push(default)

#include "kt_fault.h"

static atomic_bool armed;
static atomic_bool fired;
static atomic_ulong counts[KT_FAULT_KINDS];
static atomic_int target_kind;
static atomic_ulong target_n;

void kt_fault_arm(enum kt_fault_kind kind, unsigned long n)
{
    atomic_store(&armed, false);
    for (int k = 0; k < KT_FAULT_KINDS; k++)
        atomic_store(&counts[k], 0);
    atomic_store(&fired, false);
    atomic_store(&target_kind, (int)kind);
    atomic_store(&target_n, n);
    atomic_store(&armed, true);
}

void kt_fault_disarm(void)
{
    atomic_store(&armed, false);
}

unsigned long kt_fault_count(enum kt_fault_kind kind)
{
    return kind < KT_FAULT_KINDS ? atomic_load(&counts[kind]) : 0;
}

bool kt_fault_fired(void)
{
    return atomic_load(&fired);
}

const char *kt_fault_kind_name(enum kt_fault_kind kind)
{
    static const char *const names[KT_FAULT_KINDS] = {
        [KT_FAULT_ALLOC] = "alloc",
        [KT_FAULT_SQLITE] = "sqlite",
        [KT_FAULT_WRITE] = "write",
        [KT_FAULT_FSYNC] = "fsync",
    };
    return kind < KT_FAULT_KINDS ? names[kind] : "?";
}

/* Counts one call of kind; true when it is the one to fail. */
static bool fault_hit(enum kt_fault_kind kind)
{
    if (!atomic_load_explicit(&armed, memory_order_acquire))
        return false;
    unsigned long n = atomic_fetch_add(&counts[kind], 1) + 1;
    if ((int)kind != atomic_load(&target_kind) || n != atomic_load(&target_n))
        return false;
    atomic_store(&fired, true);
    return true;
}

#define FAIL_ALLOC_IF_HIT()                                                    \
    do {                                                                       \
        if (fault_hit(KT_FAULT_ALLOC)) {                                       \
            errno = ENOMEM;                                                    \
            return NULL;                                                       \
        }                                                                      \
    } while (0)

/* Declared here: they are called only through ld --wrap. */
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t count, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_reallocarray(void *p, size_t count, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ssize_t __wrap_write(int fd, const void *buf, size_t n);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t at);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int cnt);
int __wrap_ftruncate(int fd, off_t len);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_sqlite3_open_v2(const char *path, sqlite3 **db, int flags,
                           const char *vfs);
int __wrap_sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n,
                              sqlite3_stmt **st, const char **tail);
int __wrap_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n,
                              unsigned int flags, sqlite3_stmt **st,
                              const char **tail);
int __wrap_sqlite3_step(sqlite3_stmt *st);
int __wrap_sqlite3_exec(sqlite3 *db, const char *sql,
                        int (*cb)(void *, int, char **, char **), void *arg,
                        char **err);

void *__wrap_malloc(size_t n)
{
    FAIL_ALLOC_IF_HIT();
    return malloc(n);
}

void *__wrap_calloc(size_t count, size_t n)
{
    FAIL_ALLOC_IF_HIT();
    return calloc(count, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    FAIL_ALLOC_IF_HIT();
    return realloc(p, n);
}

void *__wrap_reallocarray(void *p, size_t count, size_t n)
{
    FAIL_ALLOC_IF_HIT();
    return reallocarray(p, count, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    FAIL_ALLOC_IF_HIT();
    return aligned_alloc(align, n);
}

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    if (fault_hit(KT_FAULT_ALLOC))
        return ENOMEM;
    return posix_memalign(out, align, n);
}

char *__wrap_strdup(const char *s)
{
    FAIL_ALLOC_IF_HIT();
    return strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    FAIL_ALLOC_IF_HIT();
    return strndup(s, n);
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
    if (fault_hit(KT_FAULT_ALLOC)) {
        errno = ENOMEM;
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(out, fmt, ap);
    va_end(ap);
    return r;
}

#define FAIL_IO_IF_HIT(kind)                                                   \
    do {                                                                       \
        if (fault_hit(kind)) {                                                 \
            errno = EIO;                                                       \
            return -1;                                                         \
        }                                                                      \
    } while (0)

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    FAIL_IO_IF_HIT(KT_FAULT_WRITE);
    return write(fd, buf, n);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t at)
{
    FAIL_IO_IF_HIT(KT_FAULT_WRITE);
    return pwrite(fd, buf, n, at);
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int cnt)
{
    FAIL_IO_IF_HIT(KT_FAULT_WRITE);
    return writev(fd, iov, cnt);
}

int __wrap_ftruncate(int fd, off_t len)
{
    FAIL_IO_IF_HIT(KT_FAULT_WRITE);
    return ftruncate(fd, len);
}

int __wrap_fsync(int fd)
{
    FAIL_IO_IF_HIT(KT_FAULT_FSYNC);
    return fsync(fd);
}

int __wrap_fdatasync(int fd)
{
    FAIL_IO_IF_HIT(KT_FAULT_FSYNC);
    return fdatasync(fd);
}

/* An injected SQLite failure: the call is not made. A failed open leaves
 * no handle (as SQLite's own failed open does not when it is out of
 * memory), a failed prepare no statement, a failed exec no message. */
int __wrap_sqlite3_open_v2(const char *path, sqlite3 **db, int flags,
                           const char *vfs)
{
    if (fault_hit(KT_FAULT_SQLITE)) {
        *db = NULL;
        return SQLITE_NOMEM;
    }
    return sqlite3_open_v2(path, db, flags, vfs);
}

int __wrap_sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n,
                              sqlite3_stmt **st, const char **tail)
{
    if (fault_hit(KT_FAULT_SQLITE)) {
        *st = NULL;
        return SQLITE_NOMEM;
    }
    return sqlite3_prepare_v2(db, sql, n, st, tail);
}

int __wrap_sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n,
                              unsigned int flags, sqlite3_stmt **st,
                              const char **tail)
{
    if (fault_hit(KT_FAULT_SQLITE)) {
        *st = NULL;
        return SQLITE_NOMEM;
    }
    return sqlite3_prepare_v3(db, sql, n, flags, st, tail);
}

int __wrap_sqlite3_step(sqlite3_stmt *st)
{
    if (fault_hit(KT_FAULT_SQLITE))
        return SQLITE_IOERR;
    return sqlite3_step(st);
}

int __wrap_sqlite3_exec(sqlite3 *db, const char *sql,
                        int (*cb)(void *, int, char **, char **), void *arg,
                        char **err)
{
    if (fault_hit(KT_FAULT_SQLITE)) {
        if (err != NULL)
            *err = NULL;
        return SQLITE_IOERR;
    }
    return sqlite3_exec(db, sql, cb, arg, err);
}

#pragma GCC visibility pop

/* OpenSSL's allocator (CRYPTO_set_mem_functions). */
static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    FAIL_ALLOC_IF_HIT();
    return malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    FAIL_ALLOC_IF_HIT();
    return realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* SQLite's allocator: its own default methods, counted. */
static sqlite3_mem_methods sqlite_mem;

static void *sqlite_malloc(int n)
{
    FAIL_ALLOC_IF_HIT();
    return sqlite_mem.xMalloc(n);
}

static void *sqlite_realloc(void *p, int n)
{
    FAIL_ALLOC_IF_HIT();
    return sqlite_mem.xRealloc(p, n);
}

/* The VFS shim: a file is the shim's header followed by the "unix" VFS's
 * own file, to which every method is passed on. */
struct shim_file {
    sqlite3_file base;
    sqlite3_file *real;
};

static sqlite3_vfs *unix_vfs;
static sqlite3_vfs shim_vfs;
static sqlite3_io_methods shim_io[3];

#define REAL(f) (((struct shim_file *)(f))->real)

static int shim_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}

static int shim_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 at)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, at);
}

static int shim_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 at)
{
    if (fault_hit(KT_FAULT_WRITE))
        return SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, at);
}

static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (fault_hit(KT_FAULT_WRITE))
        return SQLITE_IOERR_TRUNCATE;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int shim_sync(sqlite3_file *f, int flags)
{
    if (fault_hit(KT_FAULT_FSYNC))
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int shim_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int shim_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int shim_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int shim_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int shim_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int shim_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int shim_device_chars(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int shim_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
                        void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, out);
}

static int shim_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void shim_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int shim_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int shim_fetch(sqlite3_file *f, sqlite3_int64 at, int n, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), at, n, out);
}

static int shim_unfetch(sqlite3_file *f, sqlite3_int64 at, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), at, p);
}

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
                     int flags, int *out_flags)
{
    (void)vfs;
    struct shim_file *sf = (struct shim_file *)f;
    sf->real = (sqlite3_file *)(sf + 1);
    sf->base.pMethods = NULL;
    int rc = unix_vfs->xOpen(unix_vfs, name, sf->real, flags, out_flags);
    const sqlite3_io_methods *m = sf->real->pMethods;
    /* SQLite calls xClose on a file whose pMethods is set, even after a
     * failed open: mirror the real file's. */
    if (m != NULL)
        sf->base.pMethods = &shim_io[m->iVersion >= 3 ? 2 : m->iVersion - 1];
    return rc;
}

/* The shim's method tables, one per io_methods version the real file may
 * have (so SQLite sees exactly the real file's capabilities). */
static void shim_io_init(void)
{
    const sqlite3_io_methods v3 = {
        .iVersion = 3,
        .xClose = shim_close,
        .xRead = shim_read,
        .xWrite = shim_write,
        .xTruncate = shim_truncate,
        .xSync = shim_sync,
        .xFileSize = shim_file_size,
        .xLock = shim_lock,
        .xUnlock = shim_unlock,
        .xCheckReservedLock = shim_check_reserved,
        .xFileControl = shim_file_control,
        .xSectorSize = shim_sector_size,
        .xDeviceCharacteristics = shim_device_chars,
        .xShmMap = shim_shm_map,
        .xShmLock = shim_shm_lock,
        .xShmBarrier = shim_shm_barrier,
        .xShmUnmap = shim_shm_unmap,
        .xFetch = shim_fetch,
        .xUnfetch = shim_unfetch,
    };
    for (int v = 0; v < 3; v++) {
        shim_io[v] = v3;
        shim_io[v].iVersion = v + 1;
        if (v < 2) {
            shim_io[v].xFetch = NULL;
            shim_io[v].xUnfetch = NULL;
        }
        if (v < 1) {
            shim_io[v].xShmMap = NULL;
            shim_io[v].xShmLock = NULL;
            shim_io[v].xShmBarrier = NULL;
            shim_io[v].xShmUnmap = NULL;
        }
    }
}

/* The shim over "unix", made the default VFS. Its other methods are the
 * unix VFS's own: they read only mxPathname and pAppData of the VFS they
 * are given, both copied. */
static void shim_vfs_register(void)
{
    unix_vfs = sqlite3_vfs_find("unix");
    if (unix_vfs == NULL)
        return;
    shim_io_init();
    shim_vfs = *unix_vfs;
    shim_vfs.pNext = NULL;
    shim_vfs.zName = "kt-fault";
    shim_vfs.szOsFile = (int)sizeof(struct shim_file) + unix_vfs->szOsFile;
    shim_vfs.xOpen = shim_open;
    (void)sqlite3_vfs_register(&shim_vfs, 1);
}

/* Before main and before any code of ours runs. OpenSSL takes new memory
 * functions only before its first allocation, SQLite a new allocator only
 * before sqlite3_initialize (which registering the VFS runs): in a process
 * where either came first (a program that loads the module after using
 * OpenSSL), that library's allocations are simply not counted. */
__attribute__((constructor)) static void kt_fault_init(void)
{
    (void)CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_mem) == SQLITE_OK) {
        sqlite3_mem_methods m = sqlite_mem;
        m.xMalloc = sqlite_malloc;
        m.xRealloc = sqlite_realloc;
        (void)sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
    }
    shim_vfs_register();
}
