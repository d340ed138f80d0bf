/* Crash trials (tests/crash): a driver runs a write-heavy workload on real
 * stores and acknowledges every write that returned success in an ack log;
 * the runner SIGKILLs it at a random moment; a checker in a fresh process
 * verifies that every acknowledged write is there and nothing half-written
 * is visible.  The state carries over from trial to trial. */
#ifndef KT_CRASH_H
#define KT_CRASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: one 64-bit state, the same sequence for the same seed. */
struct crash_rng {
    uint64_t s;
};
uint64_t crash_rng_next(struct crash_rng *r);
/* A value in [0, n) (n > 0). */
unsigned crash_rng_below(struct crash_rng *r, unsigned n);

/*
 * The ack log: one line per event.  "try TEXT" is written (no sync) before
 * a write starts; "ok TEXT" is written and fdatasync'ed after it returned
 * success and before the next write starts: an acknowledged write.  The
 * checker adds "landed TEXT" for a write in flight at the kill that it
 * found done (it is state from then on, never acknowledged) and "check" at
 * the end of each check.  A line torn by the kill (no newline) is cut off
 * when the log is opened for writing.
 */
enum crash_kind { CRASH_TRY, CRASH_OK, CRASH_LANDED, CRASH_CHECK };
struct crash_entry {
    enum crash_kind kind;
    char text[480];
};
struct crash_log {
    struct crash_entry *e;
    size_t n;
};

/* Reads path (a missing file is an empty log); false on an I/O error. */
bool crash_log_read(const char *path, struct crash_log *log);
void crash_log_free(struct crash_log *log);
/* The write in flight at the kill: the text of a "try" after the last
 * "check" that no "ok" follows, or NULL. */
const char *crash_log_inflight(const struct crash_log *log);
/* Opens path for appending (created 0600), cutting a torn last line. */
int crash_log_open(const char *path);
/* Appends "KIND TEXT\n"; sync: fdatasync before returning.  Exits the
 * process (status 90) when the line cannot be written: an ack that is not
 * durable must never let the next write start. */
void crash_log_put(int fd, enum crash_kind kind, bool sync, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

/* What one check reports to the runner (one line on its stdout). */
struct crash_result {
    unsigned long acks;     /* acknowledged writes in the log so far */
    unsigned long checked;  /* acknowledged writes verified by this check */
    unsigned long new_acks; /* acknowledged in this trial */
    unsigned tries;         /* writes started in this trial */
    unsigned inflight;      /* 1: killed inside a write call */
    unsigned landed;        /* 1: that write was found done */
};
void crash_result_print(const struct crash_result *r);

/* One area of trials: the driver and checker run as
 * `/proc/self/exe drive-NAME DIR SEED` and `/proc/self/exe check-NAME DIR`. */
struct crash_area {
    const char *name;
    const char *dir;     /* the state, kept from trial to trial */
    unsigned startup_ms; /* kills in [0, startup_ms): start-up */
    unsigned span_ms;    /* the others in [startup_ms, +span_ms) */
};

/* Runs `trials` trials; prints one line per trial and the figures.
 * Returns 0 when every check passed, else the failing trial's number
 * (1-based), after printing how to reproduce it. */
unsigned crash_run(const struct crash_area *a, unsigned trials, uint64_t seed);

/* A control: with the acknowledgement `fake` (a write that never
 * happened) appended, the checker must fail; the line is removed again.
 * True when it failed. */
bool crash_control(const struct crash_area *a, const char *fake);

/* KT_CRASH_TRIALS or the default; KT_CRASH_SEED or a fresh seed. */
unsigned crash_trials(unsigned dflt);
uint64_t crash_seed(void);

#endif
