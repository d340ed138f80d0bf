/*
 * PINs for token commands: an environment variable, a file (first line),
 * the command line (accepted for scripts with a warning, as softhsm2-util
 * does, and wiped from argv), or a prompt without echo on the terminal.
 * A PIN is never printed, logged or put in an error message; its buffer
 * is wiped when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "kt_file.h"

#define CLI_PIN_MAX 256

void cli_pin_free(char *pin)
{
    if (pin == NULL)
        return;
    explicit_bzero(pin, CLI_PIN_MAX);
    free(pin);
}

/* Cuts the line end; refuses empty PINs and PINs with a NUL inside. */
static bool cli_pin_finish(char *buf, size_t n)
{
    if (memchr(buf, '\0', n) != NULL)
        return false;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    return n > 0;
}

static char *cli_pin_read_file(struct cli *cli, const char *path,
                               const char *what, int *rc)
{
    char *buf = calloc(1, CLI_PIN_MAX);
    if (buf == NULL)
        return NULL;
    /* nobody but its owner may read or change a PIN file */
    char err[KT_FILE_ERR_MAX];
    int fd =
        kt_file_open_trusted(path, KT_FILE_SECRET, "PIN file", err, sizeof err);
    if (fd < 0) {
        *rc = cli_error(cli, KEYTIER_E_IO, "%s: %s", what, err);
        cli_pin_free(buf);
        return NULL;
    }
    ssize_t n = read(fd, buf, CLI_PIN_MAX - 1);
    if (n < 0) {
        *rc = cli_error(cli, KEYTIER_E_IO, "%s: cannot read PIN file %s: %s",
                        what, path, strerror(errno));
        close(fd);
        cli_pin_free(buf);
        return NULL;
    }
    /* The first line ends at a line feed or carriage return, as the
     * library reads PIN files; one longer than a PIN is refused, not cut */
    size_t len = 0;
    while (len < (size_t)n && buf[len] != '\n' && buf[len] != '\r')
        len++;
    char next = '\n';
    if (len == CLI_PIN_MAX - 1 && read(fd, &next, 1) != 1)
        next = '\n';
    close(fd);
    if (next != '\n' && next != '\r') {
        *rc = cli_error(cli, KEYTIER_E_ARGS,
                        "%s: the first line of PIN file %s is longer than a "
                        "PIN (%d bytes)",
                        what, path, CLI_PIN_MAX - 1);
        cli_pin_free(buf);
        return NULL;
    }
    if (!cli_pin_finish(buf, len)) {
        *rc = cli_error(cli, KEYTIER_E_ARGS, "%s: PIN file %s holds no PIN",
                        what, path);
        cli_pin_free(buf);
        return NULL;
    }
    return buf;
}

static char *cli_pin_prompt_once(const char *prompt)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return NULL;
    struct termios old, quiet;
    bool restore = tcgetattr(fd, &old) == 0;
    /* TCSANOW, not TCSAFLUSH: PINs typed ahead (or piped by a script
     * through a pty) must not be thrown away. */
    if (restore) {
        quiet = old;
        quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        (void)tcsetattr(fd, TCSANOW, &quiet);
    }
    (void)!write(fd, prompt, strlen(prompt));
    char *buf = calloc(1, CLI_PIN_MAX);
    ssize_t n = buf ? read(fd, buf, CLI_PIN_MAX - 1) : -1;
    if (restore)
        (void)tcsetattr(fd, TCSANOW, &old);
    (void)!write(fd, "\n", 1);
    close(fd);
    if (n <= 0 || !cli_pin_finish(buf, (size_t)n)) {
        cli_pin_free(buf);
        return NULL;
    }
    return buf;
}

char *cli_pin_get(struct cli *cli, const struct cli_pin_src *src,
                  const char *what, bool confirm, int *rc)
{
    *rc = CLI_USAGE;
    int sources =
        (src->env != NULL) + (src->file != NULL) + (src->value != NULL);
    if (sources > 1) {
        cli_usage_error(cli, "%s: give one PIN source", what);
        return NULL;
    }
    if (src->env != NULL) {
        const char *v = getenv(src->env);
        if (v == NULL || *v == '\0') {
            cli_error(cli, KEYTIER_E_ARGS,
                      "%s: environment variable %s is not set or empty", what,
                      src->env);
            return NULL;
        }
        char *buf = calloc(1, CLI_PIN_MAX);
        if (buf == NULL || strlen(v) >= CLI_PIN_MAX) {
            cli_error(cli, KEYTIER_E_ARGS, "%s: PIN in %s is too long", what,
                      src->env);
            cli_pin_free(buf);
            return NULL;
        }
        memcpy(buf, v, strlen(v));
        return buf;
    }
    if (src->file != NULL)
        return cli_pin_read_file(cli, src->file, what, rc);
    if (src->value != NULL) {
        size_t n = strlen(src->value);
        char *buf = calloc(1, CLI_PIN_MAX);
        if (buf == NULL || n == 0 || n >= CLI_PIN_MAX) {
            cli_error(cli, KEYTIER_E_ARGS, "%s: empty or too long", what);
            cli_pin_free(buf);
            return NULL;
        }
        memcpy(buf, src->value, n);
        /* Hide it from later readers of /proc/PID/cmdline. */
        explicit_bzero(src->value, n);
        fprintf(stderr,
                "keytier %s: warning: a %s on the command line is visible to "
                "other users of this machine; prefer --pin-env or --pin-file\n",
                cli->name, what);
        return buf;
    }
    if (!isatty(STDIN_FILENO)) {
        cli_error(cli, KEYTIER_E_ARGS,
                  "%s needed: not on a terminal, use --%s-env VAR or "
                  "--%s-file FILE",
                  what, strcmp(what, "SO PIN") ? "pin" : "so-pin",
                  strcmp(what, "SO PIN") ? "pin" : "so-pin");
        return NULL;
    }
    char prompt[64];
    snprintf(prompt, sizeof prompt, "%s: ", what);
    char *pin = cli_pin_prompt_once(prompt);
    if (pin == NULL) {
        cli_error(cli, KEYTIER_E_ARGS, "%s: nothing read from the terminal",
                  what);
        return NULL;
    }
    if (confirm) {
        snprintf(prompt, sizeof prompt, "%s (again): ", what);
        char *again = cli_pin_prompt_once(prompt);
        bool same = again != NULL && !strcmp(pin, again);
        cli_pin_free(again);
        if (!same) {
            cli_pin_free(pin);
            cli_error(cli, KEYTIER_E_ARGS, "%s: the two entries differ", what);
            return NULL;
        }
    }
    return pin;
}
