/*
 * The streaming pipeline (lib/envelope/stream.c) on its own, with a transform
 * that copies units and checks their position: several transform workers, slots
 * finished out of order, the first failure in stream order.  Files in a private
 * temp dir; the only waits are the transform's own sleeps, which make slots
 * queue up and finish out of order (nothing here asserts a duration).
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keytier.h"
#include "stream.h"
#include "testenv.h"

#define UNIT       100
#define SLOT_UNITS 4

struct tstate {
    /* units whose transform fails (UINT64_MAX: none) */
    uint64_t fail_a, fail_b;
    uint64_t slow_seq;        /* this slot's transform sleeps longer */
    atomic_uint workers_seen; /* bit per worker index */
    atomic_int bad_position;  /* a slot's first_unit or content was wrong */
    atomic_int slots;
    atomic_int max_threads; /* most threads of the process seen in fn */
};

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Unit i holds the bytes of i, little-endian, repeated. */
static void unit_fill(uint8_t *p, uint64_t i)
{
    for (size_t k = 0; k < UNIT; k++)
        p[k] = (uint8_t)(i >> (8 * (k % 8)));
}

static keytier_err t_copy(void *arg, unsigned worker, struct kt_stream_slot *sl,
                          bool *last)
{
    struct tstate *t = arg;
    size_t n = sl->len / UNIT;
    uint8_t want[UNIT];

    atomic_fetch_or(&t->workers_seen, 1u << worker);
    atomic_fetch_add(&t->slots, 1);
    int threads = testenv_thread_count();
    if (threads > atomic_load(&t->max_threads))
        atomic_store(&t->max_threads, threads);
    if (sl->first_unit != sl->seq * SLOT_UNITS)
        atomic_store(&t->bad_position, 1); /* a file fills every slot */
    nap_ms(sl->seq == t->slow_seq ? 60 : 2);
    for (size_t j = 0; j < n; j++) {
        uint64_t idx = sl->first_unit + j;
        unit_fill(want, idx);
        if (memcmp(sl->buf + j * UNIT, want, UNIT) != 0)
            atomic_store(&t->bad_position, 1);
        if (idx == t->fail_a || idx == t->fail_b) {
            sl->iov[0] = (struct iovec){sl->buf, j * UNIT};
            sl->iov_n = j > 0;
            return kt_err(KEYTIER_E_AUTH, "unit %llu", (unsigned long long)idx);
        }
    }
    sl->iov[0] = (struct iovec){sl->buf, sl->len};
    sl->iov_n = sl->len > 0;
    *last = sl->eof;
    return KEYTIER_OK;
}

static char dir[] = "/tmp/kt-stream-XXXXXX";

static int file_tmp(void)
{
    char path[64];
    snprintf(path, sizeof path, "%s/f-XXXXXX", dir);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    return fd;
}

/* A file of n units, at offset 0. */
static int input_units(uint64_t n)
{
    int fd = file_tmp();
    uint8_t u[UNIT];
    for (uint64_t i = 0; i < n; i++) {
        unit_fill(u, i);
        ck_assert_int_eq(write(fd, u, UNIT), UNIT);
    }
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Runs the pipeline from n units with `workers` workers; returns its
 * result and the bytes it wrote (checked to be units 0, 1, 2 ... in
 * order). */
static keytier_err run_fds(struct tstate *t, int in, int out, unsigned workers)
{
    struct kt_stream_cfg cfg = {.in_fd = in,
                                .out_fd = out,
                                .unit = UNIT,
                                .read_size = SLOT_UNITS * UNIT,
                                .aux_size = 0,
                                .iov_max = 1,
                                .workers = workers,
                                .fn = t_copy,
                                .arg = t};
    return kt_stream_run(&cfg);
}

static keytier_err run(struct tstate *t, uint64_t n, unsigned workers,
                       size_t *written)
{
    int in = input_units(n), out = file_tmp();
    keytier_err e = run_fds(t, in, out, workers);
    off_t end = lseek(out, 0, SEEK_END);
    ck_assert_int_ge(end, 0);
    ck_assert_int_eq(end % UNIT, 0);
    uint8_t got[UNIT], want[UNIT];
    for (off_t off = 0; off < end; off += UNIT) {
        ck_assert_int_eq(pread(out, got, UNIT, off), UNIT);
        unit_fill(want, (uint64_t)(off / UNIT));
        ck_assert_mem_eq(got, want, UNIT);
    }
    close(in);
    close(out);
    *written = (size_t)end;
    return e;
}

static void tstate_init(struct tstate *t)
{
    t->fail_a = t->fail_b = UINT64_MAX;
    t->slow_seq = UINT64_MAX;
    atomic_init(&t->workers_seen, 0);
    atomic_init(&t->bad_position, 0);
    atomic_init(&t->slots, 0);
    atomic_init(&t->max_threads, 0);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    rmdir(dir);
    strcpy(dir, "/tmp/kt-stream-XXXXXX");
}

START_TEST(in_order_with_several_workers)
{
    struct tstate t;
    size_t w;

    tstate_init(&t);
    /* 64 slots and the empty one that carries the end of input */
    ck_assert_int_eq(run(&t, 64 * SLOT_UNITS, 3, &w), KEYTIER_OK);
    ck_assert_uint_eq(w, 64 * SLOT_UNITS * UNIT);
    ck_assert_int_eq(t.bad_position, 0);
    ck_assert_int_eq(t.slots, 65);
    /* helpers started as slots queued up behind the slow transform */
    ck_assert_uint_gt(__builtin_popcount(t.workers_seen), 1);
    ck_assert_uint_eq(t.workers_seen & ~7u, 0); /* never past workers - 1 */
}
END_TEST

START_TEST(one_worker_is_the_callers)
{
    struct tstate t;
    size_t w;

    tstate_init(&t);
    ck_assert_int_eq(run(&t, 10 * SLOT_UNITS + 3, 1, &w), KEYTIER_OK);
    ck_assert_uint_eq(w, (10 * SLOT_UNITS + 3) * UNIT);
    ck_assert_uint_eq(t.workers_seen, 1);
    ck_assert_int_eq(t.bad_position, 0);
}
END_TEST

/* Slot 10 fails late (its transform sleeps), slot 12 fails early: the
 * result is slot 10's failure, with its detail, and the output ends with
 * the units slot 10 released before its bad unit. */
START_TEST(first_failure_in_stream_order)
{
    for (unsigned workers = 1; workers <= 4; workers++) {
        struct tstate t;
        size_t w;

        tstate_init(&t);
        t.fail_a = 10 * SLOT_UNITS + 2;
        t.fail_b = 12 * SLOT_UNITS + 1;
        t.slow_seq = 10;
        ck_assert_int_eq(run(&t, 40 * SLOT_UNITS, workers, &w), KEYTIER_E_AUTH);
        ck_assert_str_eq(keytier_last_error_detail(),
                         "authentication failed: data altered or wrong key: "
                         "unit 42");
        ck_assert_uint_eq(w, (10 * SLOT_UNITS + 2) * UNIT);
        ck_assert_int_eq(t.bad_position, 0);
    }
}
END_TEST

/* A failure in the first slot, before any helper: nothing is written. */
START_TEST(failure_in_first_unit_writes_nothing)
{
    struct tstate t;
    size_t w;

    tstate_init(&t);
    t.fail_a = 0;
    ck_assert_int_eq(run(&t, 20 * SLOT_UNITS, 4, &w), KEYTIER_E_AUTH);
    ck_assert_uint_eq(w, 0);
}
END_TEST

START_TEST(workers_clamped)
{
    struct tstate t;
    size_t w;

    tstate_init(&t);
    ck_assert_int_eq(run(&t, 30 * SLOT_UNITS, 1000, &w), KEYTIER_OK);
    ck_assert_uint_eq(w, 30 * SLOT_UNITS * UNIT);
    ck_assert_uint_eq(t.workers_seen >> KT_STREAM_WORKERS_MAX, 0);
    tstate_init(&t);
    ck_assert_int_eq(run(&t, 3, 0, &w), KEYTIER_OK); /* 0: one worker */
    ck_assert_uint_eq(t.workers_seen, 1);
}
END_TEST

/* A regular file shorter than a slot is read, transformed and written on
 * the caller's thread, with no helper thread at all; a longer one goes
 * through the pipeline (reader and writer threads). */
START_TEST(small_file_without_threads)
{
    struct tstate t;
    size_t w;

    /* 1, or 2 with a sanitizer's own thread */
    int base = testenv_thread_count();
    tstate_init(&t);
    ck_assert_int_eq(run(&t, SLOT_UNITS - 1, 4, &w), KEYTIER_OK);
    ck_assert_uint_eq(w, (SLOT_UNITS - 1) * UNIT);
    ck_assert_int_eq(t.slots, 1); /* ended by its end of input */
    ck_assert_int_eq(t.max_threads, base);
    ck_assert_int_eq(t.bad_position, 0);
    tstate_init(&t);
    ck_assert_int_eq(run(&t, 0, 4, &w), KEYTIER_OK); /* empty */
    ck_assert_uint_eq(w, 0);
    ck_assert_int_eq(t.max_threads, base);
    /* Exactly one slot: its end of input comes in a second, empty slot,
     * as through the pipeline, which takes it. */
    tstate_init(&t);
    ck_assert_int_eq(run(&t, SLOT_UNITS, 4, &w), KEYTIER_OK);
    ck_assert_uint_eq(w, SLOT_UNITS * UNIT);
    ck_assert_int_eq(t.slots, 2);
    ck_assert_int_ge(t.max_threads, base + 2);
}
END_TEST

/* The small path starts at the file's offset (as after an envelope
 * header), releases what the transform released before a failure, and
 * leaves the input offset at the end of what it read. */
START_TEST(small_file_offset_and_failure)
{
    struct tstate t;
    int in = file_tmp(), out = file_tmp();
    uint8_t u[UNIT];

    ck_assert_int_eq(write(in, "junk-before", 11), 11);
    for (uint64_t i = 0; i < 3; i++) {
        unit_fill(u, i);
        ck_assert_int_eq(write(in, u, UNIT), UNIT);
    }
    ck_assert_int_eq(lseek(in, 11, SEEK_SET), 11);
    tstate_init(&t);
    ck_assert_int_eq(run_fds(&t, in, out, 2), KEYTIER_OK);
    ck_assert_int_eq(lseek(in, 0, SEEK_CUR), 11 + 3 * UNIT);
    ck_assert_int_eq(lseek(out, 0, SEEK_END), 3 * UNIT);
    ck_assert_int_eq(t.bad_position, 0);

    ck_assert_int_eq(lseek(in, 11, SEEK_SET), 11);
    ck_assert_int_eq(ftruncate(out, 0), 0);
    ck_assert_int_eq(lseek(out, 0, SEEK_SET), 0);
    tstate_init(&t);
    t.fail_a = 2;
    ck_assert_int_eq(run_fds(&t, in, out, 2), KEYTIER_E_AUTH);
    ck_assert_int_eq(lseek(out, 0, SEEK_END), 2 * UNIT);
    close(in);
    close(out);
}
END_TEST

/* Output to a pipe whose reader has gone: EPIPE as an error, no SIGPIPE
 * delivered (the test process would die of it) nor left pending. */
START_TEST(small_file_to_closed_pipe)
{
    struct tstate t;
    int in = input_units(2), p[2], base = testenv_thread_count();
    sigset_t pending;

    ck_assert_int_eq(pipe(p), 0);
    close(p[0]);
    tstate_init(&t);
    ck_assert_int_eq(run_fds(&t, in, p[1], 2), KEYTIER_E_IO);
    ck_assert_str_eq(keytier_last_error_detail(),
                     "input/output error: write: Broken pipe");
    ck_assert_int_eq(t.max_threads, base);
    ck_assert_int_eq(sigpending(&pending), 0);
    ck_assert(!sigismember(&pending, SIGPIPE));
    close(in);
    close(p[1]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("stream");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, in_order_with_several_workers);
    tcase_add_test(tc, one_worker_is_the_callers);
    tcase_add_test(tc, first_failure_in_stream_order);
    tcase_add_test(tc, failure_in_first_unit_writes_nothing);
    tcase_add_test(tc, workers_clamped);
    tcase_add_test(tc, small_file_without_threads);
    tcase_add_test(tc, small_file_offset_and_failure);
    tcase_add_test(tc, small_file_to_closed_pipe);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
