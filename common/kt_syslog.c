#include "kt_syslog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* syslog(3)'s facility daemon and the severities err, warning, info and
 * debug (RFC 5424 §6.2.1). */
#define KT_SYSLOG_DAEMON (3 << 3)
static const int kt_syslog_severity[] = {3, 4, 6, 7};

/* Connects s's socket to its address; errno on failure. */
static bool kt_syslog_connect(struct kt_syslog *s)
{
    if (s->sock < 0)
        s->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return s->sock >= 0 && connect(s->sock, (const struct sockaddr *)&s->addr,
                                   sizeof s->addr) == 0;
}

bool kt_syslog_open(struct kt_syslog *s, const char *path)
{
    if (path == NULL)
        path = KT_SYSLOG_SOCKET;
    memset(s, 0, sizeof *s);
    s->sock = -1;
    s->addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof s->addr.sun_path) {
        errno = ENAMETOOLONG;
        return false;
    }
    memcpy(s->addr.sun_path, path, strlen(path) + 1);
    if (kt_syslog_connect(s))
        return true;
    int e = errno;
    kt_syslog_close(s);
    errno = e;
    return false;
}

void kt_syslog_send(struct kt_syslog *s, unsigned level, const char *ident,
                    const char *text)
{
    size_t nsev = sizeof kt_syslog_severity / sizeof kt_syslog_severity[0];
    int sev = kt_syslog_severity[level < nsev ? level : nsev - 1];
    char rec[KT_SYSLOG_RECORD_MAX];
    int n = snprintf(rec, sizeof rec, "<%d>%s[%ld]: %s", KT_SYSLOG_DAEMON | sev,
                     ident, (long)getpid(), text);
    if (n < 0 || s->sock < 0)
        return;
    size_t len = (size_t)n < sizeof rec ? (size_t)n : sizeof rec - 1;
    if (send(s->sock, rec, len, MSG_NOSIGNAL) < 0 && kt_syslog_connect(s))
        (void)send(s->sock, rec, len, MSG_NOSIGNAL);
}

void kt_syslog_close(struct kt_syslog *s)
{
    if (s->sock >= 0)
        close(s->sock);
    s->sock = -1;
}
