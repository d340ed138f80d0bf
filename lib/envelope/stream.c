/*
 * The streaming pipeline (stream.h): reader thread -> transform workers
 * (the caller's thread and helpers) -> writer thread, over a ring of
 * KT_STREAM_SLOTS slots.
 *
 * Why threads: an fd-to-fd stream pays a read() copy and a write() copy
 * besides the cryptography; done one after the other on one thread they
 * cost as much as the cryptography itself (BENCHMARKS.md, "Streaming").
 * Overlapped, the stream runs at the speed of the slowest stage, and with
 * two transform workers the cryptography is no longer that stage on a
 * machine with two cores or more.
 *
 * One mutex guards the counters (slots read, claimed by a worker, done in
 * order, written); a slot's fields are handed from stage to stage by
 * advancing a counter under the mutex, so each stage owns the slots
 * between its counter and the previous stage's.  Workers finish slots in
 * any order: each records its result in the slot's kt_stream_result, and
 * whoever finishes the oldest pending slot moves n_done over every
 * finished slot that follows (kt_stream_advance), stopping at the first
 * failure or the last slot.  Each stage waits on its own condition
 * variable, so a hand-over wakes only the stage that can use it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keytier.h"
#include "stream.h"

/* One slot being read, one being written, one per worker being
 * transformed (two workers on two cores), and slack so that a worker that
 * finishes early finds the next slot read. */
#define KT_STREAM_SLOTS 6

#define KT_STREAM_DETAIL 768 /* an error's detail, carried between threads */

/* A slot's transform, as its worker left it (read under the mutex). */
struct kt_stream_result {
    bool done; /* transformed, not yet passed by n_done */
    bool last;
    keytier_err err;
    char detail[KT_STREAM_DETAIL];
};

struct kt_stream;

struct kt_stream_helper {
    struct kt_stream *s;
    unsigned worker;
    pthread_t thread;
};

struct kt_stream {
    const struct kt_stream_cfg *cfg;
    struct kt_stream_slot slot[KT_STREAM_SLOTS];
    struct kt_stream_result res[KT_STREAM_SLOTS];
    size_t used[KT_STREAM_SLOTS]; /* bytes of each buffer ever filled */
    pthread_mutex_t mu;
    pthread_cond_t slot_free, slot_read, slot_done; /* wake each stage */
    uint64_t n_read, n_claimed, n_done, n_written;
    uint64_t end;    /* slots to write in all, once the transform knows */
    bool stop;       /* stop reading (and transforming): a failure, or done */
    int wake_fd;     /* eventfd, readable once stop is set */
    int write_errno; /* the writer's failure */
    keytier_err err; /* the transform's verdict, with its detail: */
    char detail[KT_STREAM_DETAIL];
    unsigned workers; /* transform workers allowed */
    struct kt_stream_helper helper[KT_STREAM_WORKERS_MAX - 1];
    unsigned n_helpers; /* started (and to be joined) */
    bool starting;      /* a worker is starting a helper */
};

/* Under mu: stops the reader (through the eventfd too) and every waiting
 * stage. */
static void kt_stream_stop_locked(struct kt_stream *s)
{
    uint64_t one = 1;
    s->stop = true;
    pthread_cond_broadcast(&s->slot_free);
    pthread_cond_broadcast(&s->slot_read);
    pthread_cond_broadcast(&s->slot_done);
    /* Wakes a reader blocked in poll(); the counter stays readable. */
    if (write(s->wake_fd, &one, sizeof one) < 0) {
        /* cannot fail short of EINVAL on a valid eventfd; the reader then
         * stops at its next read instead */
    }
}

static void kt_stream_stop(struct kt_stream *s)
{
    pthread_mutex_lock(&s->mu);
    kt_stream_stop_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* ---- reader ------------------------------------------------------------- */

/* Fills buf, which already holds *off bytes, up to n bytes.  Stops early
 * at end of input (*eof), on an error (*err = errno) and, once it holds a
 * whole unit, when the input has nothing more ready: a slow pipe or socket
 * gets each chunk through as soon as it is complete, as it did when chunks
 * were read one at a time, instead of waiting for a full slot.  Returns
 * false when the stream was stopped. */
static bool kt_stream_fill(struct kt_stream *s, uint8_t *buf, size_t n,
                           size_t *off, bool *eof, int *err)
{
    struct pollfd p[2] = {{s->cfg->in_fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}};
    *eof = false;
    *err = 0;
    while (*off < n) {
        /* Also waits for the stop, so that a failed stream does not hang on
         * a stalled pipe (a regular file polls readable at once). */
        int ready = poll(p, 2, *off >= s->cfg->unit ? 0 : -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            *err = errno;
            break;
        }
        if (p[1].revents != 0)
            return false;
        if (ready == 0)
            break; /* nothing more yet: hand over the whole units */
        ssize_t r = read(s->cfg->in_fd, buf + *off, n - *off);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue; /* EAGAIN: a non-blocking fd; poll() waits */
        if (r < 0) {
            *err = errno;
            break;
        }
        if (r == 0) {
            *eof = true;
            break;
        }
        *off += (size_t)r;
    }
    return true;
}

static void *kt_stream_reader(void *arg)
{
    struct kt_stream *s = arg;
    const uint8_t *carry_from = NULL; /* a partial unit, in the last slot */
    size_t carry = 0;
    uint64_t units = 0; /* whole units handed over so far */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->n_read - s->n_written == KT_STREAM_SLOTS && !s->stop)
            pthread_cond_wait(&s->slot_free, &s->mu);
        bool stop = s->stop;
        uint64_t seq = s->n_read;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        size_t i = seq % KT_STREAM_SLOTS, off = carry;
        struct kt_stream_slot *sl = &s->slot[i];
        /* The bytes past the last slot's len are the reader's: the
         * transform and the writer touch only [0, len). */
        if (carry > 0)
            memcpy(sl->buf, carry_from, carry);
        bool eof;
        int err;
        bool go =
            kt_stream_fill(s, sl->buf, s->cfg->read_size, &off, &eof, &err);
        if (off > s->used[i])
            s->used[i] = off;
        if (!go)
            break;
        size_t len = off;
        if (!eof && err == 0)
            len -= off % s->cfg->unit; /* whole units; the rest carries */
        carry = off - len;
        carry_from = sl->buf + len;
        sl->seq = seq;
        sl->first_unit = units;
        units += len / s->cfg->unit;
        sl->len = len;
        sl->eof = eof;
        sl->read_errno = err;
        pthread_mutex_lock(&s->mu);
        s->n_read++;
        pthread_cond_signal(&s->slot_read);
        pthread_mutex_unlock(&s->mu);
        if (eof || err != 0)
            break;
    }
    return NULL;
}

/* ---- writer ------------------------------------------------------------- */

static int kt_stream_writev(int fd, struct iovec *iov, size_t n)
{
    while (n > 0) {
        int cnt = n > IOV_MAX ? IOV_MAX : (int)n;
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        size_t left = (size_t)w;
        /* Skip what was written, including empty entries. */
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

static void *kt_stream_writer(void *arg)
{
    struct kt_stream *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->n_written == s->n_done && s->n_written != s->end)
            pthread_cond_wait(&s->slot_done, &s->mu);
        bool over = s->n_written == s->end;
        uint64_t seq = s->n_written;
        pthread_mutex_unlock(&s->mu);
        if (over)
            break;
        struct kt_stream_slot *sl = &s->slot[seq % KT_STREAM_SLOTS];
        int err = kt_stream_writev(s->cfg->out_fd, sl->iov, sl->iov_n);
        if (err != 0) {
            s->write_errno = err; /* read by the caller after the join */
            if (err == EPIPE) {
                /* SIGPIPE is blocked on this thread and pending on it;
                 * consume it rather than leave it to the thread's exit. */
                sigset_t pipe_set;
                struct timespec zero = {0, 0};
                sigemptyset(&pipe_set);
                sigaddset(&pipe_set, SIGPIPE);
                sigtimedwait(&pipe_set, NULL, &zero);
            }
            kt_stream_stop(s);
            break;
        }
        pthread_mutex_lock(&s->mu);
        s->n_written++;
        pthread_cond_signal(&s->slot_free);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* ---- the caller's side -------------------------------------------------- */

static keytier_err kt_stream_alloc(struct kt_stream *s)
{
    const struct kt_stream_cfg *c = s->cfg;
    for (size_t i = 0; i < KT_STREAM_SLOTS; i++) {
        struct kt_stream_slot *sl = &s->slot[i];
        sl->buf = malloc(c->read_size);
        sl->aux = malloc(c->aux_size > 0 ? c->aux_size : 1);
        sl->iov = calloc(c->iov_max, sizeof *sl->iov);
        if (sl->buf == NULL || sl->aux == NULL || sl->iov == NULL)
            return kt_err(KEYTIER_E_NOMEM, "stream buffers");
    }
    return KEYTIER_OK;
}

static void kt_stream_free(struct kt_stream *s)
{
    for (size_t i = 0; i < KT_STREAM_SLOTS; i++) {
        struct kt_stream_slot *sl = &s->slot[i];
        if (sl->buf != NULL)
            kt_wipe(sl->buf, s->used[i]); /* plaintext passed through */
        free(sl->buf);
        free(sl->aux);
        free(sl->iov);
    }
}

/* Under mu: moves n_done over the finished slots that follow it, in
 * stream order; the first failure or the last slot sets the end and stops
 * the other stages. */
static void kt_stream_advance(struct kt_stream *s)
{
    bool moved = false;
    while (s->end == UINT64_MAX && s->n_done < s->n_claimed) {
        struct kt_stream_result *r = &s->res[s->n_done % KT_STREAM_SLOTS];
        if (!r->done)
            break;
        r->done = false;
        s->n_done++;
        moved = true;
        if (r->err != KEYTIER_OK || r->last) {
            s->end = s->n_done;
            s->err = r->err;
            memcpy(s->detail, r->detail, sizeof s->detail);
            kt_stream_stop_locked(s);
        }
    }
    if (moved)
        pthread_cond_signal(&s->slot_done);
}

static void *kt_stream_helper_main(void *arg);

/* One slot through the transform, and the verdict on it: the transform's
 * error, else the read error that ended the slot, else a transform that
 * did not end a stream at its end of input. */
static keytier_err kt_stream_transform(const struct kt_stream_cfg *cfg,
                                       unsigned worker,
                                       struct kt_stream_slot *sl, bool *last)
{
    sl->iov_n = 0;
    keytier_err e = cfg->fn(cfg->arg, worker, sl, last);
    if (e == KEYTIER_OK && sl->read_errno != 0)
        e = kt_err(KEYTIER_E_IO, "read: %s", strerror(sl->read_errno));
    else if (e == KEYTIER_OK && sl->eof && !*last)
        e = kt_err(KEYTIER_E_INTERNAL, "stream transform");
    return e;
}

/* Starts one more transform worker (called by a worker that saw slots
 * queue up).  A helper that cannot start is no failure: the workers
 * already running carry on. */
static void kt_stream_grow(struct kt_stream *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->starting || s->stop || s->n_helpers + 1 >= s->workers) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->starting = true;
    struct kt_stream_helper *h = &s->helper[s->n_helpers];
    h->s = s;
    h->worker = s->n_helpers + 1;
    pthread_mutex_unlock(&s->mu);

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* as the reader and writer */
    int rc = pthread_create(&h->thread, NULL, kt_stream_helper_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    pthread_mutex_lock(&s->mu);
    s->starting = false;
    if (rc == 0)
        s->n_helpers++;
    else
        s->workers = s->n_helpers + 1;     /* do not try again */
    pthread_cond_broadcast(&s->slot_read); /* kt_stream_run may wait */
    pthread_mutex_unlock(&s->mu);
}

/* A transform worker: claims slots as the reader delivers them, in order,
 * and transforms each, until the stream is stopped (its end found, a
 * failure, or the writer failed). */
static void kt_stream_work(struct kt_stream *s, unsigned worker)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->n_claimed == s->n_read && !s->stop)
            pthread_cond_wait(&s->slot_read, &s->mu);
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        uint64_t seq = s->n_claimed++;
        /* Another slot is read and waits while this one is transformed:
         * the cryptography is the slowest stage; one more worker. */
        bool grow = s->n_read > s->n_claimed && !s->starting &&
                    s->n_helpers + 1 < s->workers;
        pthread_mutex_unlock(&s->mu);
        if (grow)
            kt_stream_grow(s);

        size_t i = seq % KT_STREAM_SLOTS;
        struct kt_stream_slot *sl = &s->slot[i];
        struct kt_stream_result *r = &s->res[i];
        bool last = false;
        keytier_err e = kt_stream_transform(s->cfg, worker, sl, &last);
        r->err = e;
        r->last = last;
        if (e != KEYTIER_OK)
            snprintf(r->detail, sizeof r->detail, "%s",
                     keytier_last_error_detail());

        pthread_mutex_lock(&s->mu);
        r->done = true;
        kt_stream_advance(s);
        pthread_mutex_unlock(&s->mu);
    }
}

static void *kt_stream_helper_main(void *arg)
{
    struct kt_stream_helper *h = arg;
    kt_stream_work(h->s, h->worker);
    return NULL;
}

/* ---- small files: no pipeline ------------------------------------------ */

/* Writes iov on the caller's thread with SIGPIPE blocked, as the writer
 * thread does: a closed output pipe gives EPIPE, not a signal that would
 * kill the caller's process.  0 or errno. */
static int kt_stream_write_here(int fd, struct iovec *iov, size_t n)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int err = kt_stream_writev(fd, iov, n);
    if (err == EPIPE && !sigismember(&old, SIGPIPE)) {
        /* ours, pending on this thread: consume it before unblocking */
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

/*
 * A regular file whose rest fits one slot with room to spare (most items;
 * a slot holding exactly read_size bytes is never the last one in the
 * pipeline, the end of input comes in the next) goes through one
 * buffer on the caller's thread: read to its end, transform, write; the
 * pipeline's threads, eventfd and ring would cost more than the work.
 * The result is what the pipeline would give.  Returns false, having
 * consumed nothing (a file that grew meanwhile is put back at its
 * offset), when the pipeline must run instead.
 */
static bool kt_stream_small(const struct kt_stream_cfg *cfg, keytier_err *out)
{
    struct stat st;
    off_t at = lseek(cfg->in_fd, 0, SEEK_CUR);
    if (at < 0 || fstat(cfg->in_fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size < at || (uint64_t)(st.st_size - at) >= cfg->read_size)
        return false;
    struct kt_stream_slot sl = {.eof = false};
    size_t cap = cfg->read_size, got = 0; /* full: it grew */
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return false; /* the pipeline reports the shortage */
    while (got < cap) {
        ssize_t r = read(cfg->in_fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sl.read_errno = errno;
            break;
        }
        if (r == 0) {
            sl.eof = true;
            break;
        }
        got += (size_t)r;
    }
    if (got == cap) { /* it grew: the pipeline takes it all */
        kt_wipe(buf, got);
        free(buf);
        if (lseek(cfg->in_fd, at, SEEK_SET) != at) {
            *out = kt_err(KEYTIER_E_IO, "seek: %s", strerror(errno));
            return true;
        }
        return false;
    }
    sl.buf = buf;
    sl.len = got; /* < read_size: ended by end of input or a read error */
    sl.aux = malloc(cfg->aux_size > 0 ? cfg->aux_size : 1);
    sl.iov = calloc(cfg->iov_max, sizeof *sl.iov);
    keytier_err e;
    if (sl.aux == NULL || sl.iov == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, "stream buffers");
    } else {
        bool last = false;
        e = kt_stream_transform(cfg, 0, &sl, &last);
        /* What the transform released is written even after its failure,
         * as the pipeline's writer does; a write error comes first. */
        int werr = kt_stream_write_here(cfg->out_fd, sl.iov, sl.iov_n);
        if (werr != 0)
            e = kt_err(KEYTIER_E_IO, "write: %s", strerror(werr));
    }
    kt_wipe(buf, got); /* plaintext passed through */
    free(buf);
    free(sl.aux);
    free(sl.iov);
    *out = e;
    return true;
}

/* ---- the pipeline -------------------------------------------------------- */

/* The stream's buffers, its eventfd and its lock and conditions
 * (*have_sync once they exist). */
static keytier_err kt_stream_setup(struct kt_stream *s, bool *have_sync)
{
    keytier_err e = kt_stream_alloc(s);
    if (e != KEYTIER_OK)
        return e;
    s->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (s->wake_fd < 0)
        return kt_err(KEYTIER_E_NOMEM, "eventfd: %s", strerror(errno));
    /* Doubles the kernel's read-ahead on a file (an advice: a pipe refuses
     * it with ESPIPE, which changes nothing). */
    (void)posix_fadvise(s->cfg->in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->slot_free, NULL);
    pthread_cond_init(&s->slot_read, NULL);
    pthread_cond_init(&s->slot_done, NULL);
    *have_sync = true;
    return KEYTIER_OK;
}

/* Starts the writer and the reader thread (*have_writer, *have_reader as
 * each starts).  If one cannot start, the stream is stopped with nothing
 * to write. */
static keytier_err kt_stream_start(struct kt_stream *s, pthread_t *reader,
                                   pthread_t *writer, bool *have_reader,
                                   bool *have_writer)
{
    /* The helpers inherit a mask blocking every signal: the caller's
     * handlers keep running on the caller's threads, and SIGPIPE from a
     * closed output pipe becomes EPIPE instead of killing the process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(writer, NULL, kt_stream_writer, s);
    *have_writer = rc == 0;
    if (rc == 0) {
        rc = pthread_create(reader, NULL, kt_stream_reader, s);
        *have_reader = rc == 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        return KEYTIER_OK;
    keytier_err e = kt_err(KEYTIER_E_NOMEM, "starting the stream threads: %s",
                           strerror(rc));
    pthread_mutex_lock(&s->mu);
    s->end = s->n_done; /* nothing to write: the writer ends */
    pthread_mutex_unlock(&s->mu);
    kt_stream_stop(s);
    return e;
}

/* Once the caller's worker has left: every helper, then the writer and
 * the reader joined; the stream's result, a write error first. */
static keytier_err kt_stream_finish(struct kt_stream *s, pthread_t reader,
                                    pthread_t writer)
{
    /* The caller's worker leaves once the stream is stopped: every helper
     * does too, and none starts any more (growing needs !stop) once the
     * one being started, if any, is counted. */
    pthread_mutex_lock(&s->mu);
    while (s->starting)
        pthread_cond_wait(&s->slot_read, &s->mu);
    unsigned helpers = s->n_helpers;
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < helpers; i++)
        pthread_join(s->helper[i].thread, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->end == UINT64_MAX)
        s->end = s->n_done; /* the writer failed: nothing more to write */
    keytier_err e = s->err;
    pthread_mutex_unlock(&s->mu);
    if (e != KEYTIER_OK)
        kt_err_restore(s->detail);
    /* After a failure the reader stops at once (on success it has already
     * ended with the last slot); the writer drains what was released. */
    kt_stream_stop(s);
    pthread_join(writer, NULL);
    pthread_join(reader, NULL);
    if (s->write_errno != 0)
        /* Written in stream order: an earlier position than any failure
         * the transform saw. */
        e = kt_err(KEYTIER_E_IO, "write: %s", strerror(s->write_errno));
    return e;
}

keytier_err kt_stream_run(const struct kt_stream_cfg *cfg)
{
    keytier_err small;
    if (kt_stream_small(cfg, &small))
        return small;

    struct kt_stream s = {.cfg = cfg,
                          .end = UINT64_MAX,
                          .wake_fd = -1,
                          .workers = cfg->workers == 0 ? 1
                                     : cfg->workers > KT_STREAM_WORKERS_MAX
                                         ? KT_STREAM_WORKERS_MAX
                                         : cfg->workers};
    int cancel_state = -1;
    pthread_t reader, writer;
    bool have_reader = false, have_writer = false, have_sync = false;
    keytier_err e = kt_stream_setup(&s, &have_sync);
    if (e != KEYTIER_OK)
        goto out;
    /* The helpers use this frame's memory: the caller's thread must not
     * be cancelled (pthread_cancel) in the waits below. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    e = kt_stream_start(&s, &reader, &writer, &have_reader, &have_writer);
    if (e != KEYTIER_OK)
        goto out;
    kt_stream_work(&s, 0);
    e = kt_stream_finish(&s, reader, writer);
    have_writer = false;
    have_reader = false;
out:
    if (have_writer)
        pthread_join(writer, NULL);
    if (have_reader)
        pthread_join(reader, NULL);
    if (have_sync) {
        pthread_cond_destroy(&s.slot_free);
        pthread_cond_destroy(&s.slot_read);
        pthread_cond_destroy(&s.slot_done);
        pthread_mutex_destroy(&s.mu);
    }
    if (s.wake_fd >= 0)
        close(s.wake_fd);
    kt_stream_free(&s);
    if (cancel_state != -1)
        pthread_setcancelstate(cancel_state, NULL);
    return e;
}
