/*
 * stream.h - a three-stage pipeline between two file descriptors, for the
 * streaming envelope API (envelope.c).
 *
 * A reader thread fills slots from in_fd, transform workers (the caller's
 * thread, and up to workers-1 helper threads started once slots queue up)
 * transform slots in place (encrypt, or decrypt and authenticate), a
 * writer thread drains them to out_fd; a bounded ring of slots lets the
 * stages overlap, so the two copies through the kernel (read, write) run
 * beside the cryptography instead of after it, and on a machine with
 * cores to spare the cryptography of several slots runs at once.  The
 * pipeline knows nothing of the format: the transform says which bytes of
 * a slot to write (iovecs) and when the stream is complete; each slot
 * carries the number of units before it, so a slot's work never depends
 * on the slot before it.
 *
 * Ordering guarantees the envelope rules rely on:
 *   - slots are written strictly in input order (they may be transformed
 *     out of order, by different workers), and the writer takes a slot
 *     only after its transform returned, so nothing the transform has not
 *     released (its iovecs) is ever written; nothing of a slot after a
 *     failed one (or after the last one) is written;
 *   - the result is the first failure in stream order: a read error after
 *     n bytes of a slot reaches the transform with those n bytes (complete
 *     pieces before it are processed first), a transform error stops the
 *     stream after the iovecs it released, a write error stops it at once;
 *   - a slot goes on as soon as it holds whole units and the input has
 *     nothing more ready (a slow pipe): each chunk is processed and
 *     written once it is complete, not when a whole slot has arrived;
 *   - after a failure the reader stops even when blocked on a slow pipe or
 *     socket (it waits in poll() together with a wake-up eventfd), so a
 *     failed call returns without waiting for more input.
 * The helper threads run with every signal blocked: a write to a pipe
 * whose reader has gone gives EPIPE (KEYTIER_E_IO) instead of a SIGPIPE
 * that would kill the caller's process.
 *
 * A regular file whose rest is shorter than a slot skips the pipeline: it
 * is read, transformed (worker 0) and written on the caller's thread with
 * SIGPIPE blocked for the write, with the same results and guarantees.
 */
#ifndef KT_STREAM_H
#define KT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kt_base.h"

/* Transform threads of a stream, the caller's included. */
#define KT_STREAM_WORKERS_MAX 8

struct kt_stream_slot {
    uint64_t seq;        /* 0, 1, 2 ... in stream order */
    uint64_t first_unit; /* whole units in the slots before this one */
    uint8_t *buf;        /* in: bytes read from in_fd */
    size_t len;     /* in: bytes read: whole units unless eof or read_errno */
    bool eof;       /* in: end of input was reached after len bytes */
    int read_errno; /* in: nonzero when reading failed after len bytes */
    uint8_t *aux;   /* scratch of aux_size bytes for the transform (tags) */
    struct iovec *iov; /* out: what the writer writes, iov_max entries */
    size_t iov_n;      /* out */
};

/* Called once for every slot, on transform worker `worker` (0 is the
 * caller's thread; 0 .. workers-1), possibly for several slots at once on
 * different workers: state it keeps per worker is indexed by worker, and
 * a slot's position comes from seq and first_unit.  Fills iov/iov_n with
 * what may be written, sets *last when this slot completes the stream and
 * returns KEYTIER_OK, or returns an error (its detail recorded with
 * kt_err, on that worker's thread) after which only the iovecs already set
 * are written.  When the slot has eof set it must either set *last or
 * fail. */
typedef keytier_err (*kt_stream_fn)(void *arg, unsigned worker,
                                    struct kt_stream_slot *slot, bool *last);

struct kt_stream_cfg {
    int in_fd, out_fd;
    size_t unit;      /* the transform consumes whole units (chunks) */
    size_t read_size; /* bytes read into each slot, a multiple of unit */
    size_t aux_size;  /* per-slot scratch */
    size_t iov_max;   /* per-slot iovecs */
    unsigned workers; /* transform threads, 1 .. KT_STREAM_WORKERS_MAX */
    kt_stream_fn fn;
    void *arg;
};

/* Runs the stream to its end.  Returns KEYTIER_OK when the transform
 * marked a slot last and everything released was written; otherwise the
 * first failure in stream order (KEYTIER_E_IO "read: ..." / "write: ...",
 * the transform's error, KEYTIER_E_NOMEM), its detail on the caller's
 * thread whichever worker met it.  Slot buffers are wiped before they are
 * freed. */
KT_NODISCARD keytier_err kt_stream_run(const struct kt_stream_cfg *cfg);

#endif
