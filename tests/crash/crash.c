/* The crash trials' ack log and runner (crash.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"

uint64_t crash_rng_next(struct crash_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

unsigned crash_rng_below(struct crash_rng *r, unsigned n)
{
    return (unsigned)(crash_rng_next(r) % n);
}

static const char *const kind_names[] = {"try", "ok", "landed", "check"};

static bool crash_entry_parse(char *line, struct crash_entry *e)
{
    for (int k = CRASH_TRY; k <= CRASH_CHECK; k++) {
        size_t l = strlen(kind_names[k]);
        if (strncmp(line, kind_names[k], l) == 0 &&
            (line[l] == ' ' || line[l] == '\0')) {
            e->kind = (enum crash_kind)k;
            snprintf(e->text, sizeof e->text, "%s",
                     line[l] ? line + l + 1 : "");
            return true;
        }
    }
    return false;
}

bool crash_log_read(const char *path, struct crash_log *log)
{
    char line[512];
    size_t cap = 0;
    log->e = NULL;
    log->n = 0;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT;
    while (fgets(line, sizeof line, f) != NULL) {
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\n')
            break; /* a torn last line: never acknowledged */
        line[l - 1] = '\0';
        if (log->n == cap) {
            cap = cap ? 2 * cap : 256;
            struct crash_entry *e = realloc(log->e, cap * sizeof *e);
            if (e == NULL)
                break;
            log->e = e;
        }
        if (crash_entry_parse(line, &log->e[log->n]))
            log->n++;
    }
    bool ok = !ferror(f);
    fclose(f);
    return ok;
}

void crash_log_free(struct crash_log *log)
{
    free(log->e);
    log->e = NULL;
    log->n = 0;
}

const char *crash_log_inflight(const struct crash_log *log)
{
    size_t i = log->n;
    while (i > 0 && log->e[i - 1].kind != CRASH_CHECK)
        i--;
    const char *t = NULL;
    for (; i < log->n; i++) {
        if (log->e[i].kind == CRASH_TRY)
            t = log->e[i].text;
        else if (log->e[i].kind == CRASH_OK && t && !strcmp(t, log->e[i].text))
            t = NULL;
    }
    return t;
}

int crash_log_open(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    off_t end = lseek(fd, 0, SEEK_END), keep = end;
    char c;
    while (keep > 0 && pread(fd, &c, 1, keep - 1) == 1 && c != '\n')
        keep--;
    if (keep != end && (ftruncate(fd, keep) != 0 || fdatasync(fd) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

void crash_log_put(int fd, enum crash_kind kind, bool sync, const char *fmt,
                   ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s ", kind_names[kind]);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof line - 1) {
        fprintf(stderr, "crash: ack line too long: %s\n", line);
        _exit(90);
    }
    line[n++] = '\n';
    if (write(fd, line, (size_t)n) != n || (sync && fdatasync(fd) != 0)) {
        fprintf(stderr, "crash: cannot write the ack log: %s\n",
                strerror(errno));
        _exit(90);
    }
}

void crash_result_print(const struct crash_result *r)
{
    printf("acks %lu checked %lu new %lu tries %u inflight %u landed %u\n",
           r->acks, r->checked, r->new_acks, r->tries, r->inflight, r->landed);
    fflush(stdout);
}

unsigned crash_trials(unsigned dflt)
{
    const char *v = getenv("KT_CRASH_TRIALS");
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

uint64_t crash_seed(void)
{
    const char *v = getenv("KT_CRASH_SEED");
    if (v && *v)
        return strtoull(v, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct crash_rng r = {(uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                          (uint64_t)getpid()};
    return crash_rng_next(&r);
}

/* /proc/self/exe MODE DIR [SEED], stdout to out_fd (-1: inherited). */
static pid_t crash_spawn(const char *mode, const char *dir, const char *seed,
                         int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0)
            _exit(126);
        execl("/proc/self/exe", "test-crash", mode, dir, seed, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static uint64_t crash_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Starts the driver and SIGKILLs it delay_ms later; false (reported) when
 * it ended by itself: a driver only ends by the kill. */
static bool crash_kill_driver(const struct crash_area *a, uint64_t seed,
                              unsigned delay_ms)
{
    char mode[64], s[32];
    snprintf(mode, sizeof mode, "drive-%s", a->name);
    snprintf(s, sizeof s, "0x%016" PRIx64, seed);
    pid_t pid = crash_spawn(mode, a->dir, s, -1);
    if (pid < 0)
        return false;
    struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        return true;
    fprintf(stderr, "crash %s: the driver ended by itself (%s %d)\n", a->name,
            WIFEXITED(st) ? "exit status" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return false;
}

/* Runs the checker in a fresh process; its one line of results into r. */
static bool crash_check(const struct crash_area *a, struct crash_result *r)
{
    char mode[64], line[256] = "";
    int p[2];
    snprintf(mode, sizeof mode, "check-%s", a->name);
    if (pipe(p) != 0)
        return false;
    pid_t pid = crash_spawn(mode, a->dir, NULL, p[1]);
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    bool got = f != NULL && fgets(line, sizeof line, f) != NULL;
    if (f != NULL)
        fclose(f);
    else
        close(p[0]);
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "crash %s: the check failed (%s %d)\n", a->name,
                pid > 0 && WIFEXITED(st) ? "exit status" : "signal",
                pid > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return false;
    }
    return got && sscanf(line,
                         "acks %lu checked %lu new %lu tries %u "
                         "inflight %u landed %u",
                         &r->acks, &r->checked, &r->new_acks, &r->tries,
                         &r->inflight, &r->landed) == 6;
}

struct crash_figures {
    unsigned trials, startup, inflight, landed;
    unsigned long acks, checked;
};

/* "KIND: word n, word n, ..." over the log's lines of that kind. */
static void crash_tally_print(const struct crash_area *a,
                              const struct crash_log *log, enum crash_kind k,
                              const char *title)
{
    char words[16][16];
    unsigned long n[16] = {0};
    size_t nw = 0;
    for (size_t i = 0; i < log->n; i++) {
        char w[16] = "";
        size_t j = 0;
        if (log->e[i].kind != k || sscanf(log->e[i].text, "%15s", w) != 1)
            continue;
        while (j < nw && strcmp(words[j], w) != 0)
            j++;
        if (j == nw && nw < 16)
            memcpy(words[nw++], w, sizeof w);
        n[j] += j < nw;
    }
    printf("crash %s: %s:", a->name, title);
    for (size_t j = 0; j < nw; j++)
        printf("%s %s %lu", j ? "," : "", words[j], n[j]);
    printf("%s\n", nw ? "" : " none");
}

static void crash_figures_print(const struct crash_area *a,
                                const struct crash_figures *f, uint64_t seed)
{
    char path[512];
    struct crash_log log;
    snprintf(path, sizeof path, "%s/acks", a->dir);
    if (crash_log_read(path, &log)) {
        crash_tally_print(a, &log, CRASH_OK, "acknowledged writes by kind");
        crash_tally_print(a, &log, CRASH_LANDED,
                          "writes in flight at a kill found done");
        crash_log_free(&log);
    }
    printf("crash %s: %u trials (seed 0x%016" PRIx64 "): %u killed before "
           "their first write, %u inside a write call (%u of those found "
           "done, %u not), %u between writes\n",
           a->name, f->trials, seed, f->startup, f->inflight, f->landed,
           f->inflight - f->landed, f->trials - f->startup - f->inflight);
    printf("crash %s: %lu acknowledged writes, %lu checks of an "
           "acknowledged write, lost: 0\n",
           a->name, f->acks, f->checked);
    fflush(stdout);
}

/* Mostly over the workload, one trial in five in the start-up (loading
 * the module, opening the store, logging in). */
static unsigned crash_delay(const struct crash_area *a, struct crash_rng *rng)
{
    if (crash_rng_below(rng, 5) == 0)
        return crash_rng_below(rng, a->startup_ms);
    return a->startup_ms + crash_rng_below(rng, a->span_ms);
}

bool crash_control(const struct crash_area *a, const char *fake)
{
    char path[512];
    struct crash_result r;
    snprintf(path, sizeof path, "%s/acks", a->dir);
    int fd = crash_log_open(path);
    if (fd < 0)
        return false;
    off_t size = lseek(fd, 0, SEEK_END);
    printf("crash %s: control: a fabricated acknowledgement \"%s\" must fail "
           "the check\n",
           a->name, fake);
    fflush(stdout);
    crash_log_put(fd, CRASH_OK, true, "%s", fake);
    bool failed = !crash_check(a, &r);
    bool restored = ftruncate(fd, size) == 0;
    close(fd);
    printf("crash %s: control: %s\n", a->name,
           failed ? "the check failed, as it must" : "THE CHECK PASSED");
    return failed && restored;
}

unsigned crash_run(const struct crash_area *a, unsigned trials, uint64_t seed)
{
    struct crash_rng rng = {seed};
    struct crash_figures f = {0};
    uint64_t t0 = crash_now_ms();
    printf("crash %s: %u trials, seed 0x%016" PRIx64 " (KT_CRASH_SEED)\n",
           a->name, trials, seed);
    for (unsigned i = 1; i <= trials; i++) {
        uint64_t dseed = crash_rng_next(&rng);
        unsigned delay = crash_delay(a, &rng);
        struct crash_result r = {0};
        if (!crash_kill_driver(a, dseed, delay) || !crash_check(a, &r)) {
            printf("crash %s: trial %u of %u FAILED (killed after %u ms); "
                   "to reproduce: KT_CRASH_SEED=0x%016" PRIx64
                   " KT_CRASH_TRIALS=%u meson test -C build crash-%s\n",
                   a->name, i, trials, delay, seed, i, a->name);
            fflush(stdout);
            return i;
        }
        f.trials++;
        f.startup += r.tries == 0;
        f.inflight += r.inflight;
        f.landed += r.landed;
        f.acks = r.acks;
        f.checked += r.checked;
        printf("trial %u: killed after %u ms, %u writes started, %lu "
               "acknowledged, %s; %lu acknowledged writes checked\n",
               i, delay, r.tries, r.new_acks,
               !r.inflight ? "none in flight"
               : r.landed  ? "the one in flight done"
                           : "the one in flight not done",
               r.checked);
        fflush(stdout);
    }
    crash_figures_print(a, &f, seed);
    printf("crash %s: %.1f s\n", a->name,
           (double)(crash_now_ms() - t0) / 1000.0);
    return 0;
}
