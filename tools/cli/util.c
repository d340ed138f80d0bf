/*
 * Shared helpers of the keytier CLI: the library context, errors and exit
 * codes, JSON output, option parsing, output files that appear only when
 * complete, and the progress bar.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_ctx(struct cli *cli, keytier_ctx **out)
{
    if (cli->ctx == NULL) {
        keytier_err e = keytier_ctx_open(cli->config, &cli->ctx);
        if (e != KEYTIER_OK)
            return cli_fail_lib(cli, e);
    }
    *out = cli->ctx;
    return CLI_OK;
}

/* The exit code of each error: the one table (documented in `keytier
 * --help`).  An error not listed exits CLI_ERROR; a new row is all a new
 * error needs. */
static const struct {
    keytier_err err;
    int code;
} exit_table[] = {
    {KEYTIER_OK, CLI_OK},
    {KEYTIER_E_ARGS, CLI_USAGE},
    {KEYTIER_E_AUTH, CLI_AUTH},
    {KEYTIER_E_COMMITMENT, CLI_AUTH},
    {KEYTIER_E_FORMAT, CLI_AUTH},
    {KEYTIER_E_VERSION, CLI_AUTH},
    {KEYTIER_E_WRONG_KEY, CLI_AUTH},
    {KEYTIER_E_TRUNCATED, CLI_AUTH},
    {KEYTIER_E_REVOKED, CLI_REVOKED},
    {KEYTIER_E_UNAVAILABLE, CLI_UNAVAILABLE},
    {KEYTIER_E_UNWRAP, CLI_UNAVAILABLE},
    {KEYTIER_E_DEP_NOT_FOUND, CLI_NOT_FOUND},
    {KEYTIER_E_NOT_FOUND, CLI_NOT_FOUND},
    {KEYTIER_E_TOKEN_NOT_FOUND, CLI_NOT_FOUND},
    {KEYTIER_E_KEY_NOT_FOUND, CLI_NOT_FOUND},
    {KEYTIER_E_IO, CLI_IO},
    {KEYTIER_E_AUDIT_TAMPERED, CLI_TAMPERED},
    {KEYTIER_E_AUDIT_UNANCHORED, CLI_UNANCHORED},
    {KEYTIER_E_AUDIT_EMPTY, CLI_EMPTY},
    {KEYTIER_E_APPROVAL_REQUIRED, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_EXPIRED, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_INVALID, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_SELF, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_SCOPE, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_USED, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_REVOKED, CLI_APPROVAL},
    {KEYTIER_E_APPROVAL_PENDING, CLI_APPROVAL},
    {KEYTIER_E_APPROVER, CLI_APPROVAL},
    /* The request conflicts with the current state. */
    {KEYTIER_E_EXISTS, CLI_CONFLICT},
    {KEYTIER_E_SAME_TOKEN, CLI_CONFLICT},
    {KEYTIER_E_DEP_STATE, CLI_CONFLICT},
    {KEYTIER_E_DEP_DISABLED, CLI_CONFLICT},
    {KEYTIER_E_DEP_REGION, CLI_CONFLICT},
    {KEYTIER_E_OFFBOARDED, CLI_CONFLICT},
    /* A configured or built-in limit is reached. */
    {KEYTIER_E_DEP_LIMIT, CLI_LIMIT},
    {KEYTIER_E_DEPTH, CLI_LIMIT},
    /* The tenant was purged: its data is crypto-shredded. */
    {KEYTIER_E_PURGED, CLI_PURGED},
    /* The store could not be reached: a script may retry the command. */
    {KEYTIER_E_STORE_UNAVAILABLE, CLI_STORE_DOWN},
};

int cli_exit_of(keytier_err e)
{
    for (size_t i = 0; i < sizeof exit_table / sizeof exit_table[0]; i++)
        if (exit_table[i].err == e)
            return exit_table[i].code;
    return CLI_ERROR;
}

static void cli_json_error(const char *cmd, const char *name,
                           const char *message, int code)
{
    json_object *o = json_object_new_object();
    json_object *err = json_object_new_object();
    cli_json_str(err, "command", cmd);
    cli_json_str(err, "name", name);
    cli_json_str(err, "message", message);
    json_object_object_add(err, "exit", json_object_new_int(code));
    json_object_object_add(o, "error", err);
    cli_json_put(o);
}

int cli_fail_lib(struct cli *cli, keytier_err e)
{
    int code = cli_exit_of(e);
    const char *detail = keytier_last_error_detail();
    if (detail == NULL || *detail == '\0')
        detail = keytier_strerror(e);
    fprintf(stderr, "keytier %s: %s [%s]\n", cli->name, detail,
            keytier_error_name(e));
    if (cli->json)
        cli_json_error(cli->name, keytier_error_name(e), detail, code);
    return code;
}

int cli_fail_lib_in(struct cli *cli, keytier_err e, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int code = cli_exit_of(e);
    const char *detail = keytier_last_error_detail();
    if (detail == NULL || *detail == '\0')
        detail = keytier_strerror(e);
    char msg[2048];
    snprintf(msg, sizeof msg, "%s: %s", what, detail);
    fprintf(stderr, "keytier %s: %s [%s]\n", cli->name, msg,
            keytier_error_name(e));
    if (cli->json)
        cli_json_error(cli->name, keytier_error_name(e), msg, code);
    return code;
}

int cli_error(struct cli *cli, keytier_err e, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int code = cli_exit_of(e);
    fprintf(stderr, "keytier%s%s: %s [%s]\n", cli->name ? " " : "",
            cli->name ? cli->name : "", msg, keytier_error_name(e));
    if (cli->json)
        cli_json_error(cli->name, keytier_error_name(e), msg, code);
    return code;
}

int cli_usage_error(struct cli *cli, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cli->name == NULL)
        return cli_error(cli, KEYTIER_E_ARGS, "%s (see keytier --help)", msg);
    return cli_error(cli, KEYTIER_E_ARGS, "%s (see 'keytier %s --help')", msg,
                     cli->name);
}

void cli_json_put(json_object *obj)
{
    puts(json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(obj);
}

void cli_json_str(json_object *obj, const char *key, const char *s)
{
    if (s != NULL)
        json_object_object_add(obj, key, json_object_new_string(s));
}

const char *cli_dep_state_name(keytier_dep_state st)
{
    switch (st) {
    case KEYTIER_DEP_REGISTERING:
        return "registering";
    case KEYTIER_DEP_REGISTERED:
        return "registered";
    case KEYTIER_DEP_ROLLING:
        return "rolling";
    case KEYTIER_DEP_MIGRATING:
        return "migrating";
    case KEYTIER_DEP_DISABLED:
        return "disabled";
    case KEYTIER_DEP_PURGED:
        return "purged";
    case KEYTIER_DEP_OFFBOARDED:
        return "offboarded";
    }
    return "unknown";
}

bool cli_uuid(char out[KEYTIER_ID_SIZE])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* RFC 9562 version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, KEYTIER_ID_SIZE,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
    return true;
}

int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    (void)cli;
    opterr = 0;
    return getopt_long(argc, argv, shortopts, longopts, NULL);
}

/* ---- files ------------------------------------------------------------- */

int cli_in_open(struct cli *cli, const char *path, int *fd)
{
    if (path == NULL || !strcmp(path, "-")) {
        *fd = STDIN_FILENO;
        return CLI_OK;
    }
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return cli_error(cli, KEYTIER_E_IO, "cannot open input %s: %s", path,
                         strerror(errno));
    return CLI_OK;
}

int cli_out_open(struct cli *cli, struct cli_out *o, const char *path)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (path == NULL || !strcmp(path, "-")) {
        o->fd = STDOUT_FILENO;
        return CLI_OK;
    }
    o->path = path;
    /* The temp file sits beside the target so the final rename is atomic
     * (same file system); it is hidden and removed on every failure. */
    char *dcopy = strdup(path), *bcopy = strdup(path);
    if (dcopy == NULL || bcopy == NULL ||
        asprintf(&o->tmp, "%s/.%s.keytier-XXXXXX", dirname(dcopy),
                 basename(bcopy)) < 0) {
        free(dcopy);
        free(bcopy);
        o->tmp = NULL;
        return cli_error(cli, KEYTIER_E_NOMEM, "out of memory");
    }
    free(dcopy);
    free(bcopy);
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        int err = errno;
        free(o->tmp);
        o->tmp = NULL;
        return cli_error(cli, KEYTIER_E_IO, "cannot write output %s: %s", path,
                         strerror(err));
    }
    return CLI_OK;
}

int cli_out_commit(struct cli *cli, struct cli_out *o)
{
    if (o->path == NULL) {
        if (fflush(stdout) != 0)
            return cli_error(cli, KEYTIER_E_IO,
                             "cannot write standard output: %s",
                             strerror(errno));
        return CLI_OK;
    }
    int rc = CLI_OK;
    if (fsync(o->fd) != 0 || close(o->fd) != 0) {
        rc = cli_error(cli, KEYTIER_E_IO, "cannot write output %s: %s", o->path,
                       strerror(errno));
        o->fd = -1;
        cli_out_abort(o);
        return rc;
    }
    o->fd = -1;
    if (rename(o->tmp, o->path) != 0) {
        rc = cli_error(cli, KEYTIER_E_IO, "cannot write output %s: %s", o->path,
                       strerror(errno));
        cli_out_abort(o);
        return rc;
    }
    free(o->tmp);
    o->tmp = NULL;
    return CLI_OK;
}

void cli_out_abort(struct cli_out *o)
{
    if (o->path != NULL && o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp != NULL) {
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
}

/* ---- progress ------------------------------------------------------------ */

struct cli_progress {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    int fd;
    off_t total;
    const char *what;
};

static void cli_progress_draw(struct cli_progress *p, off_t done)
{
    enum { WIDTH = 30 };
    int pct = p->total > 0 ? (int)(done * 100 / p->total) : 100;
    if (pct > 100)
        pct = 100;
    char bar[WIDTH + 1];
    int fill = pct * WIDTH / 100;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld MiB", p->what, bar, pct,
            (long long)(done >> 20), (long long)(p->total >> 20));
}

static void *cli_progress_main(void *arg)
{
    struct cli_progress *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        off_t done = lseek(p->fd, 0, SEEK_CUR);
        if (done >= 0)
            cli_progress_draw(p, done);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct cli_progress *cli_progress_start(struct cli *cli, int in_fd,
                                        const char *what)
{
    struct stat st;
    if (cli->json || !isatty(STDERR_FILENO) || fstat(in_fd, &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_size < (1 << 20))
        return NULL;
    struct cli_progress *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->fd = in_fd;
    p->total = st.st_size;
    p->what = what;
    if (pthread_create(&p->thread, NULL, cli_progress_main, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void cli_progress_stop(struct cli_progress *p, bool ok)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    if (ok)
        cli_progress_draw(p, p->total);
    fputc('\n', stderr);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

long cli_read_line(FILE *f, char *buf, size_t max)
{
    size_t n = 0;
    int c;
    buf[0] = '\0';
    while ((c = getc_unlocked(f)) != EOF) {
        if (n == max)
            return -2;
        buf[n++] = (char)c;
        buf[n] = '\0';
        if (c == '\n')
            return (long)n;
    }
    return ferror(f) ? -1 : (long)n;
}
