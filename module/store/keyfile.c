/* The files beside a token database: <serial>.key (the integrity key) and
 * <serial>.seq (the highest committed manifest write counter). Both are
 * 0600 and created under a temporary name, synced, renamed into place and
 * the directory synced, so a power cut leaves the old or the new file, never
 * a torn one; the counter is then raised in place (see seq_slot). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ossl/ossl.h"

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
static KT_NODISCARD CK_RV write_file(const char *path, int flags,
                                     const void *buf, size_t len)
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

static KT_NODISCARD CK_RV install(const char *tmp, const char *path)
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

static KT_NODISCARD CK_RV seq_mac(const unsigned char seq_key[32],
                                  const char serial[KT_SERIAL_LEN],
                                  const unsigned char ctr[8],
                                  unsigned char out[32])
{
    return kt_ossl_hmac256(seq_key, 32, seq_label, sizeof(seq_label), serial,
                           KT_SERIAL_LEN, ctr, 8, out);
}

/* <serial>.seq holds two slots, each a whole counter record (magic, counter,
 * MAC). A raise rewrites, in place, the slot that does not hold the current
 * counter and syncs it: one fdatasync and no rename. A write torn by a power
 * cut damages only that slot, and the other still holds the counter before
 * it, which the database is at or ahead of. The counter is the larger of
 * the authentic slots. */
struct seq_slot {
    bool ok; /* authentic: ctr holds its counter */
    int64_t ctr;
};

/* One slot judged: CKR_OK with s->ok set or not (damaged: no magic, a MAC
 * that does not match, a counter beyond INT64_MAX), or CKR_HOST_MEMORY
 * when the MAC could not be computed (no verdict). */
static KT_NODISCARD CK_RV seq_slot(const unsigned char *b,
                                   const unsigned char seq_key[32],
                                   const char serial[KT_SERIAL_LEN],
                                   struct seq_slot *s)
{
    unsigned char want[32];
    s->ok = false;
    s->ctr = 0;
    if (memcmp(b, seq_magic, 8) != 0)
        return CKR_OK;
    CK_RV rv = seq_mac(seq_key, serial, b + 8, want);
    uint64_t v = kt_store_get_le64(b + 8);
    if (rv == CKR_OK && kt_ossl_memcmp(want, b + 16, 32) == 0 &&
        v <= INT64_MAX) {
        s->ok = true;
        s->ctr = (int64_t)v;
    }
    kt_wipe(want, sizeof(want));
    return rv;
}

/* Reads both slots from f: the counter and the slot holding it. */
static KT_NODISCARD CK_RV seq_read_fd(int f, const unsigned char seq_key[32],
                                      const char serial[KT_SERIAL_LEN],
                                      int64_t *ctr, int *slot, const char **why)
{
    unsigned char b[2 * SEQ_LEN + 1];
    ssize_t n = pread(f, b, sizeof(b), 0);
    if (n != 2 * SEQ_LEN) {
        *why = "its write counter file (.seq) is damaged";
        return CKR_DATA_INVALID;
    }
    struct seq_slot s[2];
    CK_RV rv = seq_slot(b, seq_key, serial, &s[0]);
    if (rv == CKR_OK)
        rv = seq_slot(b + SEQ_LEN, seq_key, serial, &s[1]);
    if (rv != CKR_OK) {
        *why = "its write counter file (.seq) could not be checked (out of "
               "memory)";
        return rv;
    }
    if (!s[0].ok && !s[1].ok) {
        *why = "its write counter file (.seq) is not authentic";
        return CKR_DATA_INVALID;
    }
    /* Only an authentic slot is ever chosen. */
    *slot = !s[0].ok || (s[1].ok && s[1].ctr > s[0].ctr) ? 1 : 0;
    *ctr = s[*slot].ctr;
    return CKR_OK;
}

static void seq_record(unsigned char b[SEQ_LEN], int64_t ctr)
{
    memcpy(b, seq_magic, 8);
    kt_store_put_le64(b + 8, (uint64_t)ctr);
}

CK_RV kt_seq_read(const char *base, const unsigned char seq_key[32],
                  const char serial[KT_SERIAL_LEN], int64_t *ctr,
                  const char **why)
{
    char path[PATH_MAX + 8];
    int slot = 0;
    name(path, sizeof(path), base, ".seq");
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) {
        *why = "its write counter file (.seq) is missing";
        return CKR_DATA_INVALID;
    }
    CK_RV rv = seq_read_fd(f, seq_key, serial, ctr, &slot, why);
    close(f);
    return rv;
}

/* A new file with the counter in both slots, renamed into place. */
static KT_NODISCARD CK_RV seq_create(const char *base,
                                     const unsigned char seq_key[32],
                                     const char serial[KT_SERIAL_LEN],
                                     int64_t ctr)
{
    char path[PATH_MAX + 8], tmp[PATH_MAX + 16];
    unsigned char b[2 * SEQ_LEN];
    name(path, sizeof(path), base, ".seq");
    name(tmp, sizeof(tmp), base, ".seq.new");
    seq_record(b, ctr);
    CK_RV rv = seq_mac(seq_key, serial, b + 8, b + 16);
    memcpy(b + SEQ_LEN, b, SEQ_LEN);
    if (rv == CKR_OK)
        rv = write_file(tmp, O_TRUNC, b, sizeof(b));
    if (rv == CKR_OK)
        rv = install(tmp, path);
    return rv;
}

/* Writes ctr into the slot that does not hold the current counter. */
static KT_NODISCARD CK_RV seq_raise(const char *base,
                                    const unsigned char seq_key[32],
                                    const char serial[KT_SERIAL_LEN],
                                    int64_t ctr)
{
    char path[PATH_MAX + 8];
    unsigned char b[SEQ_LEN];
    int64_t cur = 0;
    int slot = 0;
    const char *why = NULL;
    name(path, sizeof(path), base, ".seq");
    int f = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) {
        kt_log(KT_LOG_ERROR,
               "token %s.db: its write counter file (.seq) is "
               "missing; not updated",
               base);
        return CKR_DATA_INVALID;
    }
    CK_RV rv = seq_read_fd(f, seq_key, serial, &cur, &slot, &why);
    if (rv != CKR_OK)
        kt_log(KT_LOG_ERROR, "token %s.db: %s; not updated", base, why);
    if (rv == CKR_OK && ctr > cur) {
        seq_record(b, ctr);
        rv = seq_mac(seq_key, serial, b + 8, b + 16);
        off_t at = (off_t)(1 - slot) * SEQ_LEN;
        if (rv == CKR_OK &&
            (pwrite(f, b, sizeof(b), at) != (ssize_t)sizeof(b) ||
             fdatasync(f) != 0)) {
            kt_log(KT_LOG_ERROR, "token file %s: cannot write: %s", path,
                   strerror(errno));
            rv = CKR_DEVICE_ERROR;
        }
    }
    close(f);
    return rv;
}

CK_RV kt_seq_advance(const char *base, int lock_fd,
                     const unsigned char seq_key[32],
                     const char serial[KT_SERIAL_LEN], int64_t ctr, bool fresh)
{
    /* Read, compare and write under one lock: two processes committing
     * counters 5 and 6 never leave 5 behind. */
    while (lock_fd >= 0 && flock(lock_fd, LOCK_EX) != 0 && errno == EINTR)
        ;
    CK_RV rv = fresh ? seq_create(base, seq_key, serial, ctr)
                     : seq_raise(base, seq_key, serial, ctr);
    if (lock_fd >= 0)
        flock(lock_fd, LOCK_UN);
    return rv;
}
