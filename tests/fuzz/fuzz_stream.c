/* Fuzz target: the streaming form of envelopes (keytier_open_stream,
 * keytier_seal_stream; lib/envelope/stream.c): the header read from a
 * file descriptor, chunk pieces split by size across pipeline slots, the
 * final-chunk rule, truncation, reordering. The first byte picks the mode
 * (and, in bits 2-3, the transform threads, 1 .. 4):
 *   0: the rest is a stream as is;
 *   1: the rest describes an envelope fuzz_env.h builds under the known
 *      key (up to 512 KiB of plaintext: several pipeline slots) with
 *      chunk-sequence edits;
 *   2: the rest is plaintext sealed with keytier_seal_stream (chunk size
 *      from its first byte), then opened whole and cut.
 * Each stream is opened twice, from a regular file (read on the caller's
 * thread) and from a pipe fed by another thread (the pipeline).
 * Properties: both reads give the same result and write the same bytes;
 * a stream opens only as keytier_open opens the same bytes, to the same
 * plaintext; a built stream gives the result the builder predicts; a
 * failed open wrote only whole chunks of the plaintext, in order (a
 * prefix); what keytier_seal_stream writes opens to its input, and cut
 * anywhere fails. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_env.h"
#include "input_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
    int fd;
    const uint8_t *p;
    size_t n;
};

static void *feed_run(void *arg)
{
    struct feed *f = arg;
    size_t at = 0;
    while (at < f->n) {
        ssize_t w = write(f->fd, f->p + at, f->n - at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* the reader stopped early: EPIPE */
        at += (size_t)w;
    }
    close(f->fd);
    return NULL;
}

static int memfd_of(const uint8_t *p, size_t n)
{
    int fd = memfd_create("kt-fuzz-stream", MFD_CLOEXEC);
    fz_write_fd(fd, p, n);
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    return fd;
}

/* The bytes written to fd (malloc'd, *n long). */
static uint8_t *memfd_bytes(int fd, size_t *n)
{
    off_t end = lseek(fd, 0, SEEK_END);
    uint8_t *b = malloc(end > 0 ? (size_t)end : 1);
    if (end < 0 || pread(fd, b, (size_t)end, 0) != end)
        abort();
    *n = (size_t)end;
    close(fd);
    return b;
}

struct opened {
    keytier_err e;
    uint8_t *out;
    size_t n;
};

/* Opens env from a regular file (pipe false) or a pipe, into out. */
static struct opened stream_open(const uint8_t *env, size_t len, bool pipe_in)
{
    struct opened r;
    int out = memfd_create("kt-fuzz-out", MFD_CLOEXEC), in;
    pthread_t t;
    struct feed f = {-1, env, len};
    if (out < 0)
        abort();
    if (pipe_in) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            abort();
        in = p[0];
        f.fd = p[1];
        if (pthread_create(&t, NULL, feed_run, &f) != 0)
            abort();
    } else {
        in = memfd_of(env, len);
    }
    r.e = keytier_open_stream(fe_key_get(), FE_AAD, FE_AAD_LEN, in, out);
    close(in); /* a writer still blocked gets EPIPE */
    if (pipe_in)
        pthread_join(t, NULL);
    r.out = memfd_bytes(out, &r.n);
    return r;
}

/* Opens env both ways and by keytier_open; checks they agree. */
static struct opened open_all(const uint8_t *env, size_t len)
{
    struct opened a = stream_open(env, len, false);
    struct opened b = stream_open(env, len, true);
    if (a.e != b.e || a.n != b.n || memcmp(a.out, b.out, a.n) != 0) {
        fprintf(stderr, "file read: %s, %zu bytes; pipe: %s, %zu bytes\n",
                keytier_error_name(a.e), a.n, keytier_error_name(b.e), b.n);
        abort();
    }
    free(b.out);
    if (a.e != KEYTIER_OK && !fe_refusal(a.e))
        abort();
    uint8_t *buf = malloc(len + 1);
    size_t n = 0;
    keytier_err e =
        keytier_open(fe_key_get(), FE_AAD, FE_AAD_LEN, env, len, buf, len, &n);
    if ((e == KEYTIER_OK) != (a.e == KEYTIER_OK) ||
        (e == KEYTIER_OK && (n != a.n || memcmp(buf, a.out, n) != 0))) {
        fprintf(stderr, "buffer: %s; stream: %s\n", keytier_error_name(e),
                keytier_error_name(a.e));
        abort();
    }
    free(buf);
    return a;
}

/* A failed open released only whole chunks, a prefix of pt. */
static void check_prefix(const struct opened *o, const uint8_t *pt,
                         size_t pt_len, uint32_t chunk)
{
    if (o->e == KEYTIER_OK)
        return;
    if (o->n > pt_len || memcmp(o->out, pt, o->n) != 0 ||
        (chunk >= 256 && o->n % chunk != 0))
        abort();
}

static void mode_built(const uint8_t *data, size_t size)
{
    struct fe_built b;
    fe_build(data, size, 1 << 19, &b);
    struct opened o = open_all(b.env, b.len);
    if (!fe_agrees(&b, o.e)) {
        fprintf(stderr, "built stream: expected %s, got %s\n",
                keytier_error_name(b.expect), keytier_error_name(o.e));
        abort();
    }
    if (o.e == KEYTIER_OK && (o.n != b.pt_len || memcmp(o.out, b.pt, o.n)))
        abort();
    if (b.header_ok)
        check_prefix(&o, b.pt, b.pt_len, b.chunk);
    else if (o.n != 0)
        abort(); /* a refused header released nothing */
    free(o.out);
    fe_built_free(&b);
}

static void mode_seal(const uint8_t *data, size_t size)
{
    keytier_key *k = fe_key_get();
    uint32_t chunk = 256 + (size ? data[0] : 0) * 16;
    const uint8_t *pt = size ? data + 1 : data;
    size_t pt_len = size ? size - 1 : 0;
    k->ctx->cfg.chunk_size = chunk;
    int in = memfd_of(pt, pt_len);
    int out = memfd_create("kt-fuzz-sealed", MFD_CLOEXEC);
    if (keytier_seal_stream(k, FE_AAD, FE_AAD_LEN, in, out) != KEYTIER_OK)
        abort();
    close(in);
    size_t len;
    uint8_t *env = memfd_bytes(out, &len);
    k->ctx->cfg.chunk_size = 256;
    struct opened o = open_all(env, len);
    if (o.e != KEYTIER_OK || o.n != pt_len || memcmp(o.out, pt, pt_len) != 0)
        abort();
    free(o.out);
    size_t cut = pt_len ? (size_t)data[size - 1] * len / 256 : len / 2;
    o = open_all(env, cut); /* every cut fails */
    if (o.e == KEYTIER_OK)
        abort();
    check_prefix(&o, pt, pt_len, chunk);
    free(o.out);
    free(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    keytier_key *k = fe_key_get();
    signal(SIGPIPE, SIG_IGN); /* the feeder's write after a refusal */
    k->ctx->cfg.stream_threads = 1 + (data[0] >> 2 & 3);
    switch (data[0] % 3) {
    case 0: {
        struct opened o = open_all(data + 1, size - 1);
        free(o.out);
        break;
    }
    case 1:
        mode_built(data + 1, size - 1);
        break;
    default:
        mode_seal(data + 1, size - 1);
    }
    return 0;
}
