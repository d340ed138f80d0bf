/* A count of calls still running on worker threads (kt_calls.h). */
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

bool kt_calls_drain(kt_calls *c, unsigned ms, void (*hung_cb)(void *arg))
{
    struct timespec ts;
    bool hung;

    kt_deadline_ts(&ts, ms);
    pthread_mutex_lock(&c->mu);
    while (c->n > 0 && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0)
        ;
    hung = c->n > 0;
    if (hung)
        hung_cb(c->arg);
    c->closing = hung;
    pthread_mutex_unlock(&c->mu);
    return !hung;
}
