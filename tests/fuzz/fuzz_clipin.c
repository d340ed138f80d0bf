/* Fuzz target: PIN files as the CLI reads them (--pin-file,
 * --so-pin-file: tools/cli/pin.c, linked here with the two error printers
 * it calls) and as the library reads them (pin.LABEL = file:PATH,
 * kt_pin_read). The input is the file, written 0600 to a private
 * temporary directory. Properties: each reader gives exactly the first
 * line (ended by a line feed, a carriage return or the end of the file)
 * or refuses one that is empty, holds a NUL byte or is longer than its
 * PIN buffer (255 bytes for the CLI, 256 for the library); so the two
 * readers never read different PINs from one file. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "input_file.h"
#include "kt_lib.h"

#define CLI_MAX 255 /* the CLI's longest PIN (CLI_PIN_MAX - 1) */
#define LIB_MAX 256 /* the library's (KT_PIN_FILE_MAX) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What pin.c calls of util.c: errors are only counted here. */
static int errors;

int cli_error(struct cli *cli, keytier_err e, const char *fmt, ...)
{
    (void)cli;
    (void)e;
    (void)fmt;
    errors++;
    return 2;
}

int cli_usage_error(struct cli *cli, const char *fmt, ...)
{
    (void)cli;
    (void)fmt;
    errors++;
    return 2;
}

/* The first line's length, or -1 when a reader of max bytes refuses it. */
static long expected(const uint8_t *p, size_t n, size_t max)
{
    size_t l = 0;
    while (l < n && p[l] != '\n' && p[l] != '\r')
        l++;
    if (l == 0 || l > max || memchr(p, '\0', l) != NULL)
        return -1;
    return (long)l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[64], path[96];
    if (dir[0] == '\0') {
        strcpy(dir, "/tmp/kt-fuzz-clipin-XXXXXX");
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(path, sizeof path, "%s/pin", dir);
    }
    fz_write_file(path, data, size);

    struct cli cli;
    memset(&cli, 0, sizeof cli);
    cli.name = "fuzz";
    struct cli_pin_src src = {.file = path};
    int rc = 0, before = errors;
    char *pin = cli_pin_get(&cli, &src, "PIN", false, &rc);
    long want = expected(data, size, CLI_MAX);
    if ((pin != NULL) != (want >= 0) || (pin == NULL && errors == before) ||
        (pin != NULL &&
         (strlen(pin) != (size_t)want || memcmp(pin, data, (size_t)want) != 0)))
        abort(); /* the CLI read another PIN than the first line */

    struct kt_pin_cfg cfg = {.label = "fuzz", .kind = KT_PIN_FILE};
    cfg.where = path;
    kt_secret *s = NULL;
    keytier_err e = kt_pin_read(&cfg, &s);
    long lib_want = expected(data, size, LIB_MAX);
    if ((e == KEYTIER_OK) != (lib_want >= 0) ||
        (e == KEYTIER_OK &&
         (kt_secret_len(s) != (size_t)lib_want ||
          memcmp(kt_secret_cdata(s), data, (size_t)lib_want) != 0)))
        abort(); /* the library read another PIN than the first line */
    if (pin != NULL && e == KEYTIER_OK &&
        (kt_secret_len(s) != strlen(pin) ||
         memcmp(kt_secret_cdata(s), pin, strlen(pin)) != 0))
        abort(); /* the two readers disagree */
    kt_secret_free(s);
    cli_pin_free(pin);
    return 0;
}
