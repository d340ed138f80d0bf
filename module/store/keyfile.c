/* The files beside a token database: <serial>.key (the integrity key) and
 * <serial>.seq (the highest committed manifest write counter). Both are
 * 0600, written to a temporary name, synced, renamed into place and the
 * directory synced, so a power cut leaves the old or the new file, never a
 * torn one. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ossl/ossl.h"

static const char seq_magic[8] = "KTSEQ3\n";
static const char seq_label[] = "keytier seq v3";
#define SEQ_LEN (8 + 8 + 32)

static void name(char *out, size_t len, const char *base, const char *ext)
{
    snprintf(out, len, "%s%s", base, ext);
}

static void sync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        kt_log(KT_LOG_WARNING, "token_dir %s: fsync failed", dir);
    if (dfd >= 0)
        close(dfd);
}

/* Writes len bytes to a new file (flags add O_EXCL or O_TRUNC), synced. */
static CK_RV write_file(const char *path, int flags, const void *buf,
                        size_t len)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
    if (fd < 0) {
        kt_log(KT_LOG_ERROR, "token file %s: cannot create: %s", path,
               strerror(errno));
        return CKR_DEVICE_ERROR;
    }
    /* O_TRUNC on a file left by a crash keeps its mode: set it again. */
    bool ok = fchmod(fd, 0600) == 0 && write(fd, buf, len) == (ssize_t)len &&
              fsync(fd) == 0;
    int err = errno;
    close(fd);
    if (!ok) {
        kt_log(KT_LOG_ERROR, "token file %s: cannot write: %s", path,
               strerror(err));
        unlink(path);
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

static CK_RV install(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        kt_log(KT_LOG_ERROR, "token file %s: cannot rename into place: %s",
               path, strerror(errno));
        unlink(tmp);
        return CKR_DEVICE_ERROR;
    }
    sync_dir_of(path);
    return CKR_OK;
}

CK_RV kt_keyfile_create(const char *base, unsigned char ik[32])
{
    char path[PATH_MAX + 8];
    name(path, sizeof(path), base, ".key");
    CK_RV rv = kt_ossl_random(ik, 32);
    if (rv == CKR_OK)
        rv = write_file(path, O_EXCL, ik, 32);
    if (rv == CKR_OK)
        sync_dir_of(path);
    return rv;
}

CK_RV kt_keyfile_prepare(const char *base, unsigned char ik[32])
{
    char tmp[PATH_MAX + 16];
    name(tmp, sizeof(tmp), base, ".key.new");
    CK_RV rv = kt_ossl_random(ik, 32);
    if (rv == CKR_OK)
        rv = write_file(tmp, O_TRUNC, ik, 32);
    return rv;
}

CK_RV kt_keyfile_install(const char *base)
{
    char tmp[PATH_MAX + 16], path[PATH_MAX + 8];
    name(tmp, sizeof(tmp), base, ".key.new");
    name(path, sizeof(path), base, ".key");
    return install(tmp, path);
}

void kt_keyfile_discard(const char *base)
{
    char tmp[PATH_MAX + 16];
    name(tmp, sizeof(tmp), base, ".key.new");
    unlink(tmp);
}

CK_RV kt_keyfile_read(const char *base, unsigned char ik[32], int *fd,
                      uint64_t *ino)
{
    char path[PATH_MAX + 8];
    struct stat st;
    name(path, sizeof(path), base, ".key");
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    const char *why = NULL;
    if (f < 0)
        why = errno == ENOENT ? "missing" : strerror(errno);
    else if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 32)
        why = "not a 32-byte file";
    else if (read(f, ik, 32) != 32)
        why = "cannot be read";
    if (why != NULL) {
        kt_log(KT_LOG_ERROR,
               "token %s.db refused: integrity key %s %s (it is never "
               "recreated: the token's objects could not be checked)",
               base, path, why);
        if (f >= 0)
            close(f);
        kt_wipe(ik, 32);
        return CKR_DEVICE_ERROR;
    }
    *fd = f;
    *ino = (uint64_t)st.st_ino;
    return CKR_OK;
}

uint64_t kt_keyfile_ino(const char *base)
{
    char path[PATH_MAX + 8];
    struct stat st;
    name(path, sizeof(path), base, ".key");
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static void put_le64(unsigned char *p, int64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((uint64_t)v >> (8 * i));
}

static int64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return (int64_t)v;
}

static CK_RV seq_mac(const unsigned char seq_key[32],
                     const char serial[KT_SERIAL_LEN],
                     const unsigned char ctr[8], unsigned char out[32])
{
    return kt_ossl_hmac256(seq_key, 32, seq_label, sizeof(seq_label), serial,
                           KT_SERIAL_LEN, ctr, 8, out);
}

CK_RV kt_seq_read(const char *base, const unsigned char seq_key[32],
                  const char serial[KT_SERIAL_LEN], int64_t *ctr,
                  const char **why)
{
    char path[PATH_MAX + 8];
    unsigned char b[SEQ_LEN + 1], want[32];
    name(path, sizeof(path), base, ".seq");
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) {
        *why = "its write counter file (.seq) is missing";
        return CKR_DATA_INVALID;
    }
    ssize_t n = read(f, b, sizeof(b));
    close(f);
    if (n != SEQ_LEN || memcmp(b, seq_magic, 8) != 0) {
        *why = "its write counter file (.seq) is damaged";
        return CKR_DATA_INVALID;
    }
    CK_RV rv = seq_mac(seq_key, serial, b + 8, want);
    if (rv == CKR_OK && kt_ossl_memcmp(want, b + 16, 32) != 0)
        rv = CKR_DATA_INVALID;
    if (rv != CKR_OK) {
        *why = "its write counter file (.seq) is not authentic";
        return CKR_DATA_INVALID;
    }
    *ctr = get_le64(b + 8);
    return CKR_OK;
}

CK_RV kt_seq_advance(const char *base, int lock_fd,
                     const unsigned char seq_key[32],
                     const char serial[KT_SERIAL_LEN], int64_t ctr, bool fresh)
{
    char path[PATH_MAX + 8], tmp[PATH_MAX + 16];
    unsigned char b[SEQ_LEN];
    int64_t cur = 0;
    const char *why = NULL;
    name(path, sizeof(path), base, ".seq");
    name(tmp, sizeof(tmp), base, ".seq.new");
    /* Read, compare and replace under one lock: two processes committing
     * counters 5 and 6 never leave 5 behind. */
    while (lock_fd >= 0 && flock(lock_fd, LOCK_EX) != 0 && errno == EINTR)
        ;
    CK_RV rv = CKR_OK;
    if (!fresh) {
        rv = kt_seq_read(base, seq_key, serial, &cur, &why);
        if (rv != CKR_OK)
            kt_log(KT_LOG_ERROR, "token %s.db: %s; not updated", base, why);
    }
    if (rv == CKR_OK && (fresh || ctr > cur)) {
        memcpy(b, seq_magic, 8);
        put_le64(b + 8, ctr);
        rv = seq_mac(seq_key, serial, b + 8, b + 16);
        if (rv == CKR_OK)
            rv = write_file(tmp, O_TRUNC, b, sizeof(b));
        if (rv == CKR_OK)
            rv = install(tmp, path);
    }
    if (lock_fd >= 0)
        flock(lock_fd, LOCK_UN);
    return rv;
}
