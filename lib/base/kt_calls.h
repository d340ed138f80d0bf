/*
 * kt_calls.h - a count of calls still running on worker threads.
 *
 * PKCS#11 calls cannot be cancelled: a call past its deadline keeps its
 * worker and what it uses until the token answers.  Whoever owns that
 * state counts such calls here, waits for them a bounded time when it
 * ends, and, if some are still running, leaves its end to the last of them
 * through the callback it gave at init (a lower layer never calls its
 * owner by name).
 */
#ifndef KT_CALLS_H
#define KT_CALLS_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "kt_base.h"

typedef struct kt_calls {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the count reached 0 (CLOCK_MONOTONIC) */
    unsigned n;
    bool closing; /* the owner left: the last release calls last */
    void (*last)(void *arg);
    void *arg;
} kt_calls;

/* last(arg) ends the owner once it left with calls still running. */
void kt_calls_init(kt_calls *c, void (*last)(void *arg), void *arg);
void kt_calls_destroy(kt_calls *c);
void kt_calls_hold(kt_calls *c);
/* May call last(arg), which may free c: touch nothing of the owner after. */
void kt_calls_release(kt_calls *c);
/*
 * Waits at most ms for the count to reach 0, and not at all for the calls
 * late(arg) counts (calls known hung: nobody needs to wait for them; late
 * may be NULL).  True when it did: the caller ends the owner itself.
 * False when calls are still running: hung(arg) is called (under the
 * lock, as the owner may be gone as soon as it is released; it may log,
 * nothing more) and the last of them calls last(arg); the caller must not
 * touch the owner any more.
 */
KT_NODISCARD bool kt_calls_drain(kt_calls *c, unsigned ms,
                                 unsigned (*late)(void *arg),
                                 void (*hung)(void *arg));

/* The CLOCK_MONOTONIC time ms from now, for a timed wait on a condition
 * made with that clock. */
void kt_deadline_ts(struct timespec *ts, unsigned ms);

#endif
