/* A count of calls still running on worker threads (kt_calls.h). */
#include <errno.h>
#include <time.h>

#include "kt_calls.h"

void kt_calls_init(kt_calls *c, void (*last)(void *arg), void *arg)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &attr);
    pthread_condattr_destroy(&attr);
    c->n = 0;
    c->closing = false;
    c->last = last;
    c->arg = arg;
}

void kt_calls_destroy(kt_calls *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

void kt_calls_hold(kt_calls *c)
{
    pthread_mutex_lock(&c->mu);
    c->n++;
    pthread_mutex_unlock(&c->mu);
}

void kt_calls_release(kt_calls *c)
{
    void (*last)(void *arg) = c->last;
    void *arg = c->arg;
    bool finish;

    pthread_mutex_lock(&c->mu);
    finish = --c->n == 0 && c->closing;
    if (c->n == 0)
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (finish)
        last(arg);
}

void kt_deadline_ts(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The earlier of until and a short slice from now, as a timespec. */
static void kt_calls_slice(struct timespec *ts, const struct timespec *until)
{
    kt_deadline_ts(ts, 20);
    if (ts->tv_sec > until->tv_sec ||
        (ts->tv_sec == until->tv_sec && ts->tv_nsec > until->tv_nsec))
        *ts = *until;
}

bool kt_calls_drain(kt_calls *c, unsigned ms, unsigned (*late)(void *arg),
                    void (*hung_cb)(void *arg))
{
    struct timespec until, ts;
    bool hung;

    kt_deadline_ts(&until, ms);
    for (;;) {
        /* Asked without the lock: late() takes its owner's locks. */
        unsigned left = late ? late(c->arg) : 0;
        pthread_mutex_lock(&c->mu);
        if (c->n == 0 || c->n <= left)
            break;
        /* In slices when some calls are late: one that becomes late while
         * we wait is not waited for either. */
        if (late)
            kt_calls_slice(&ts, &until);
        else
            ts = until;
        int r = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        if (r == ETIMEDOUT && ts.tv_sec == until.tv_sec &&
            ts.tv_nsec == until.tv_nsec)
            break;
        pthread_mutex_unlock(&c->mu);
    }
    hung = c->n > 0;
    if (hung)
        hung_cb(c->arg);
    c->closing = hung;
    pthread_mutex_unlock(&c->mu);
    return !hung;
}
