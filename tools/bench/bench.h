/*
 * The helpers every benchmark driver of tools/bench/ shares: fatal errors,
 * clocks, percentiles, small files, PKCS#11 modules through p11-kit.
 * Drivers use only public interfaces (the PKCS#11 API and keytier.h), so
 * what they measure is what an application gets.
 */
#ifndef KT_BENCH_H
#define KT_BENCH_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

/* The driver's name, for error messages ("bench-lib"). */
extern const char *bench_prog;

/* Prints "PROG: message" and exits 1. */
void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* A keytier call that must succeed: dies naming the call and the
 * library's detail otherwise. */
#define BENCH_CHECK(call)                                                      \
    do {                                                                       \
        keytier_err e_ = (call);                                               \
        if (e_ != KEYTIER_OK)                                                  \
            bench_die("%s: %s", #call, keytier_last_error_detail());           \
    } while (0)

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);
/* CPU seconds (user + system) of the whole process / the calling thread. */
double bench_cpu_process(void);
double bench_cpu_thread(void);

/* The p-quantile (0..1) of v[0..n), n > 0; sorts v. */
double bench_percentile(double *v, size_t n, double p);
/* bench_percentile(v, n, 0.5): for an even n the upper of the two middle
 * values. */
double bench_median(double *v, size_t n);

/* Writes text to path (created or truncated); dies on failure. */
void bench_write_file(const char *path, const char *text);

/* Loads and initialises a PKCS#11 module with p11-kit (unmanaged), or
 * dies; bench_module_unload finalises and releases it. */
CK_FUNCTION_LIST *bench_module_load(const char *path);
void bench_module_unload(CK_FUNCTION_LIST *fl);

#endif
