/* Logger: one line per record, "time level kind ...".  Token calls are
 * logged by name, result and latency only; events by a fixed text and a
 * subject.  There is no formatting entry point for arbitrary data. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kt_base.h"
#include "kt_file.h"
#include "kt_syslog.h"

struct kt_log {
    FILE *fp; /* NULL: syslog */
    bool owned;
    enum kt_log_level level;
    pthread_mutex_t mu;
    struct kt_syslog syslog; /* syslog: the logger's socket */
};

static const char *const kt_log_names[] = {"error", "warning", "info", "debug"};

bool kt_log_level_parse(const char *s, enum kt_log_level *out)
{
    for (size_t i = 0; i < sizeof kt_log_names / sizeof kt_log_names[0]; i++)
        if (strcmp(s, kt_log_names[i]) == 0) {
            *out = (enum kt_log_level)i;
            return true;
        }
    return false;
}

keytier_err kt_log_open(const char *path, enum kt_log_level level, kt_log **out)
{
    kt_log *log = calloc(1, sizeof *log);
    if (log == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    if (path != NULL) {
        /* 0600 whatever the umask: a log names tenants, keys and tokens */
        int fd = kt_file_open_append(path);
        log->fp = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (log->fp == NULL) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            free(log);
            return kt_err(KEYTIER_E_CONFIG, "log file %s: %s", path,
                          strerror(e));
        }
        log->owned = true;
    } else {
        log->fp = stderr;
    }
    log->level = level;
    log->syslog.sock = -1;
    pthread_mutex_init(&log->mu, NULL);
    *out = log;
    return KEYTIER_OK;
}

keytier_err kt_log_open_syslog(const char *socket_path, enum kt_log_level level,
                               kt_log **out)
{
    if (socket_path == NULL)
        socket_path = KT_SYSLOG_SOCKET;
    kt_log *log = calloc(1, sizeof *log);
    if (log == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    log->level = level;
    if (!kt_syslog_open(&log->syslog, socket_path)) {
        int e = errno;
        free(log);
        if (e == ENAMETOOLONG)
            return kt_err(KEYTIER_E_CONFIG,
                          "log_syslog_socket %s: longer than a socket path "
                          "may be",
                          socket_path);
        return kt_err(KEYTIER_E_CONFIG,
                      "log_target = syslog: cannot reach %s: %s (is the "
                      "system logger running? set log_syslog_socket, or "
                      "log to a file with log_file)",
                      socket_path, strerror(e));
    }
    pthread_mutex_init(&log->mu, NULL);
    *out = log;
    return KEYTIER_OK;
}

void kt_log_close(kt_log *log)
{
    if (log == NULL)
        return;
    if (log->owned)
        fclose(log->fp);
    kt_syslog_close(&log->syslog);
    pthread_mutex_destroy(&log->mu);
    free(log);
}

bool kt_log_enabled(const kt_log *log, enum kt_log_level level)
{
    return log != NULL && level <= log->level;
}

uint64_t kt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t kt_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void kt_log_stamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* One record: to the stream with a time stamp, or to syslog as
 * "<PRI>keytier[PID]: LEVEL TEXT" (the logger adds the time). A logger
 * that restarted is reconnected once; a record it cannot take is lost,
 * never the caller's operation. Called with log->mu held. */
static void kt_log_emit(kt_log *log, enum kt_log_level level, const char *text)
{
    if (log->fp != NULL) {
        char stamp[40];
        kt_log_stamp(stamp, sizeof stamp);
        fprintf(log->fp, "%s keytier %s %s\n", stamp, kt_log_names[level],
                text);
        fflush(log->fp);
        return;
    }
    char rec[KT_SYSLOG_RECORD_MAX];
    snprintf(rec, sizeof rec, "%s %s", kt_log_names[level], text);
    kt_syslog_send(&log->syslog, (unsigned)level, "keytier", rec);
}

void kt_log_call(kt_log *log, const char *call, unsigned long rv,
                 const char *rv_text, uint64_t latency_ns)
{
    enum kt_log_level lvl = KT_LOG_DEBUG;
    if (!kt_log_enabled(log, lvl))
        return;
    char text[256];
    snprintf(text, sizeof text, "call=%s rv=0x%08lx (%s) latency_us=%.1f", call,
             rv, rv_text ? rv_text : "", (double)latency_ns / 1000.0);
    pthread_mutex_lock(&log->mu);
    kt_log_emit(log, lvl, text);
    pthread_mutex_unlock(&log->mu);
}

void kt_log_event_(kt_log *log, enum kt_log_level level, const char *event,
                   const char *subject)
{
    if (!kt_log_enabled(log, level))
        return;
    char text[1024];
    snprintf(text, sizeof text, "%s%s%s", event, subject ? ": " : "",
             subject ? subject : "");
    pthread_mutex_lock(&log->mu);
    kt_log_emit(log, level, text);
    pthread_mutex_unlock(&log->mu);
}
