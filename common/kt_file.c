/* Owner-only files and the checks on files whose contents are believed
 * (kt_file.h). The umask can only take permission bits away, so creating
 * with 0600 / 0700 is never more open than that; the explicit fchmod /
 * chmod afterwards makes the result the same under any umask, and tightens
 * a file an older version (or a careless operator) left open. */
#include "kt_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KT_PRIVATE_FILE 0600
#define KT_PRIVATE_DIR  0700

bool kt_file_private(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    if ((st.st_mode & 07777) == KT_PRIVATE_FILE)
        return true;
    return fchmod(fd, KT_PRIVATE_FILE) == 0;
}

int kt_file_open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                  KT_PRIVATE_FILE);
    if (fd < 0)
        return -1;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (e != 0) {
        close(fd);
        errno = e;
        return -1;
    }
    if ((st.st_mode & 077) != 0 && fchmod(fd, KT_PRIVATE_FILE) != 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

bool kt_dir_create_private(const char *path)
{
    if (mkdir(path, KT_PRIVATE_DIR) != 0)
        return errno == EEXIST;
    return chmod(path, KT_PRIVATE_DIR) == 0;
}

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a pipe";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return "not a regular file";
}

bool kt_file_check_trusted(int fd, const char *path, enum kt_file_trust trust,
                           const char *what, char *err, size_t err_len)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, err_len, "%s %s: cannot stat: %s", what, path,
                 strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s %s is %s: name a regular file", what, path,
                 kind_of(st.st_mode));
        return false;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(err, err_len,
                 "%s %s belongs to uid %lu, neither this user (uid %lu) nor "
                 "root: another user could change it; chown it",
                 what, path, (unsigned long)st.st_uid,
                 (unsigned long)geteuid());
        return false;
    }
    if ((st.st_mode & 022) != 0) {
        snprintf(err, err_len,
                 "%s %s is writable by %s (mode %04o): run chmod go-w %s", what,
                 path, (st.st_mode & 002) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777), path);
        return false;
    }
    if (trust == KT_FILE_SECRET && (st.st_mode & 044) != 0) {
        snprintf(err, err_len,
                 "%s %s holds a secret but is readable by %s (mode %04o): "
                 "run chmod go-rwx %s",
                 what, path, (st.st_mode & 004) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777), path);
        return false;
    }
    return true;
}

int kt_file_open_trusted(const char *path, enum kt_file_trust trust,
                         const char *what, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, err_len, "%s %s: cannot open: %s", what, path,
                 strerror(errno));
        return -1;
    }
    if (!kt_file_check_trusted(fd, path, trust, what, err, err_len)) {
        close(fd);
        return -1;
    }
    /* O_NONBLOCK only kept a FIFO from blocking the open */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}
