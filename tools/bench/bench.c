/* Helpers shared by the benchmark drivers (bench.h). */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

void bench_die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", bench_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double bench_clock(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_now(void)
{
    return bench_clock(CLOCK_MONOTONIC);
}

double bench_cpu_process(void)
{
    return bench_clock(CLOCK_PROCESS_CPUTIME_ID);
}

double bench_cpu_thread(void)
{
    return bench_clock(CLOCK_THREAD_CPUTIME_ID);
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double bench_percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

double bench_median(double *v, size_t n)
{
    return bench_percentile(v, n, 0.5);
}

void bench_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        bench_die("cannot write %s", path);
}

CK_FUNCTION_LIST *bench_module_load(const char *path)
{
    CK_FUNCTION_LIST *fl = p11_kit_module_load(path, 0);

    if (fl == NULL || p11_kit_module_initialize(fl) != CKR_OK)
        bench_die("cannot load %s", path);
    return fl;
}

void bench_module_unload(CK_FUNCTION_LIST *fl)
{
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
}
