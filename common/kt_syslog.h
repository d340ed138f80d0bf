/* Records to the system logger: unix datagrams to its socket (/dev/log,
 * where journald and rsyslog listen), one record each, in the form of
 * RFC 3164 without the time stamp the logger adds: "<PRI>IDENT[PID]: TEXT".
 * Shared by the module's and the library's loggers; it formats nothing of
 * its own, so what reaches it is what they chose to print. */
#ifndef KT_COMMON_SYSLOG_H
#define KT_COMMON_SYSLOG_H

#include <stdbool.h>
#include <sys/un.h>

#define KT_SYSLOG_SOCKET "/dev/log"

/* The longest record sent; longer text is cut. */
#define KT_SYSLOG_RECORD_MAX 1280

struct kt_syslog {
    int sock; /* the datagram socket, or -1 */
    struct sockaddr_un addr;
};

/* Connects s to the logger at path (NULL: KT_SYSLOG_SOCKET). false with
 * errno set (ENAMETOOLONG: path does not fit a socket address), and s
 * then holds no socket. */
bool kt_syslog_open(struct kt_syslog *s, const char *path);

/* Sends one record with facility daemon and the severity of level, the
 * loggers' common order 0 error, 1 warning, 2 info, 3 debug. A logger
 * that restarted is reconnected once; a record it cannot take is lost
 * (logging never fails the caller's operation). */
void kt_syslog_send(struct kt_syslog *s, unsigned level, const char *ident,
                    const char *text);

void kt_syslog_close(struct kt_syslog *s);

#endif
