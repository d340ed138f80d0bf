/* C_InitToken against other processes (module/README.md, Locks).
 *
 * Every process that has at least one session on a token holds flock
 * LOCK_SH on `<serial>.lock` in token_dir, taken when its session count on
 * the token goes from 0 to 1 and released when it goes back to 0: no system
 * call on the other session opens and closes, none on any other call.
 * C_InitToken on an initialised token takes LOCK_EX | LOCK_NB on its own
 * open file description for its whole duration, so it fails with
 * CKR_SESSION_EXISTS while another process has a session, and a session
 * opened meanwhile waits for it to end.
 *
 * The lock only binds processes that honour it. A re-initialisation that
 * bypassed it (lock file removed, a file system without flock) is caught by
 * the token's epoch (a random meta value C_InitToken rewrites): a process
 * that notices a new epoch at a synchronisation with the store closes its
 * sessions on the token, which logs it out and drops its objects. Every
 * call with a session synchronises at most once per KT_REINIT_CHECK_MS
 * (kt_token_sync_due: a coarse clock read from the vDSO and an atomic, no
 * system call), so an operation under way that never consults the store
 * (C_EncryptUpdate) still ends within that time. */
#include "kt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* How often a call on a session looks for other processes' commits (and
 * so for a re-initialisation) when nothing else made it read the store. */
#define KT_REINIT_CHECK_MS 1000
/* How long a session open waits for another process's C_InitToken. */
#define KT_REINIT_WAIT_MS 30000

/* `<dir>/<serial>.lock` beside `<dir>/<serial>.db`. */
static bool lock_path(const struct kt_token *t, char *out, size_t len)
{
    size_t l = strlen(t->path);
    if (l < 3 || strcmp(t->path + l - 3, ".db") != 0 || l + 3 > len)
        return false;
    snprintf(out, len, "%.*s.lock", (int)(l - 3), t->path);
    return true;
}

static int lock_open(const struct kt_token *t)
{
    char path[PATH_MAX + 8];
    if (!lock_path(t, path, sizeof(path)))
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    /* A read-only token directory: flock works on a read-only descriptor
     * of a lock file made earlier. */
    if (fd < 0 && (errno == EACCES || errno == EROFS))
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        kt_log(KT_LOG_WARNING,
               "token %s: cannot open lock file %s: %s; other processes' "
               "C_InitToken is then caught only by the token epoch",
               t->path, path, strerror(errno));
    return fd;
}

CK_RV kt_tokenlock_shared(struct kt_token *t)
{
    if (t->lock_fd >= 0)
        return CKR_OK;
    int fd = lock_open(t);
    if (fd < 0)
        return CKR_OK;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return KT_CKR_RETRY;
        kt_log(KT_LOG_WARNING,
               "token %s: flock: %s; other processes' C_InitToken is then "
               "caught only by the token epoch",
               t->path, strerror(e));
        return CKR_OK;
    }
    t->lock_fd = fd;
    return CKR_OK;
}

CK_RV kt_tokenlock_wait(const struct kt_token *t)
{
    int fd = lock_open(t);
    if (fd < 0)
        return CKR_OK;
    CK_RV rv = CKR_DEVICE_ERROR;
    for (int waited = 0; waited < KT_REINIT_WAIT_MS; waited += 10) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
            rv = CKR_OK;
            break;
        }
        if (errno != EWOULDBLOCK) {
            rv = CKR_OK; /* no flock here: nothing to wait for */
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* Only a probe: the caller takes its own lock under kt_g.lock. */
    close(fd);
    if (rv != CKR_OK)
        kt_log(KT_LOG_ERROR,
               "token %s: another process has been re-initialising it for "
               "%d s; session refused",
               t->path, KT_REINIT_WAIT_MS / 1000);
    return rv;
}

void kt_tokenlock_release(struct kt_token *t)
{
    /* close, never LOCK_UN: a fork child sharing this open file description
     * must not drop the lock of a parent still holding sessions (and the
     * parent's close does not drop the child's either). */
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    t->lock_fd = -1;
}

void kt_tokenlock_forget(struct kt_token *t)
{
    kt_tokenlock_release(t);
}

CK_RV kt_tokenlock_init_token(struct kt_token *t, const char *dir,
                              const unsigned char *so_pin, CK_ULONG len,
                              const unsigned char *label)
{
    int fd = -1;
    if (t->initialized) {
        fd = lock_open(t);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                close(fd);
                kt_log(KT_LOG_WARNING,
                       "token %s: C_InitToken refused: another process has "
                       "sessions on it",
                       t->path);
                return CKR_SESSION_EXISTS;
            }
            kt_log(KT_LOG_WARNING,
                   "token %s: flock: %s; re-initialised without the lock "
                   "(other processes notice the new epoch)",
                   t->path, strerror(e));
        }
    }
    CK_RV rv = kt_token_init(t, dir, so_pin, len, label);
    if (fd >= 0)
        close(fd);
    return rv;
}

bool kt_token_sync_due(struct kt_token *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    long long next =
        atomic_load_explicit(&t->next_check_ms, memory_order_relaxed);
    if (now < next)
        return false;
    /* One caller per period does the check. */
    return atomic_compare_exchange_strong(&t->next_check_ms, &next,
                                          now + KT_REINIT_CHECK_MS);
}

CK_RV kt_token_reinit_seen(struct kt_token *t)
{
    pthread_mutex_lock(&kt_g.lock);
    bool had = t->session_count > 0;
    pthread_mutex_unlock(&kt_g.lock);
    kt_log(KT_LOG_WARNING,
           "token %s was re-initialised by another process: its sessions "
           "here are closed and its objects dropped",
           t->path);
    CK_RV rv = kt_session_close_all(t->slot_id);
    (void)rv;
    return had ? CKR_SESSION_CLOSED : CKR_OK;
}
