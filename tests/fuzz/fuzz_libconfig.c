/* Fuzz target: the library's configuration file (kt_config_load:
 * config.c's table read by common/kt_conf.c, then avail_rules.c) and the
 * PIN files it names (kt_pin_read). The input is the file's text, then,
 * after a line "%%pin", the content of a PIN file; "@DIR@" in the text
 * stands for the private temporary directory both files are written to
 * (mode 0600), so `pin.L = file:@DIR@/pin` reaches the PIN file. Nothing
 * outside that directory is opened: a PIN file elsewhere is not read.
 * Properties: a configuration that loads keeps every key in its range and
 * the rules between the avail.* keys; every PIN source is complete; a PIN
 * read from a file is exactly its first line, without the line end, and
 * a first line that is empty, holds a NUL or is longer than a PIN can be
 * is refused; no value:PIN appears in an error's detail. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt_lib.h"
#include "input_file.h"

#define PIN_SEP  "\n%%pin\n"
#define PIN_MAX  256 /* kt_pin_read's longest PIN */
#define DIR_MARK "@DIR@"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* The text with every DIR_MARK replaced by dir (malloc'd, *len). */
static char *expand(const uint8_t *p, size_t n, size_t *len)
{
    size_t dl = strlen(dir), ml = strlen(DIR_MARK);
    char *out = malloc(n * (dl / ml + 1) + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= ml && memcmp(p + i, DIR_MARK, ml) == 0) {
            memcpy(out + o, dir, dl);
            o += dl;
            i += ml;
        } else {
            out[o++] = (char)p[i++];
        }
    }
    out[o] = '\0'; /* for the searches of check_detail */
    *len = o;
    return out;
}

static void check_avail(const struct kt_avail_cfg *a)
{
    if (a->cache_ttl_ms == 0 || a->cache_refresh_ahead_ms == 0)
        return;
    uint64_t hedge =
        a->hedge_ms < a->call_deadline_ms ? a->hedge_ms : a->call_deadline_ms;
    if (a->cache_refresh_ahead_ms * 2 > a->cache_ttl_ms ||
        a->cache_ttl_ms - a->cache_refresh_ahead_ms < KT_CACHE_REFRESH_MIN_MS ||
        a->cache_alert_after_ms >= a->cache_refresh_ahead_ms ||
        a->cache_refresh_ahead_ms - a->cache_alert_after_ms <=
            hedge + a->call_deadline_ms ||
        a->cache_retry_ms < KT_CACHE_RETRY_MIN_MS)
        abort(); /* a cache setting the rules refuse was accepted */
}

static void check_loaded(const struct kt_config *c)
{
    if (c->chunk_size < 256 || c->chunk_size > (16u << 20) ||
        c->stream_threads < 1 || c->stream_threads > 8 ||
        c->n_modules > KT_MAX_MODULES || c->n_pins > KT_MAX_PINS ||
        c->n_workloads > KT_MAX_WORKLOADS ||
        c->n_approvers > KT_MAX_APPROVERS || c->store_path == NULL ||
        c->approval_max_ttl < 60 || c->approval_max_ttl > 7 * 86400 ||
        c->dep_limit < 1 || c->dep_limit > 100000 ||
        (c->service_token && strncmp(c->service_token, "pkcs11:", 7)))
        abort();
    for (size_t i = 0; i < c->n_modules; i++)
        if (c->modules[i] == NULL || c->modules[i][0] == '\0')
            abort();
    for (size_t i = 0; i < c->n_pins; i++) {
        const struct kt_pin_cfg *p = &c->pins[i];
        size_t ll = strnlen(p->label, sizeof p->label);
        if (ll == 0 || ll > 32 ||
            (p->kind == KT_PIN_VALUE ? p->value == NULL
                                     : p->where == NULL || !*p->where))
            abort();
    }
    for (size_t i = 0; i < c->n_approvers; i++) {
        size_t nl = strnlen(c->approvers[i].name, KEYTIER_APPROVER_MAX + 1);
        if (nl == 0 || nl > KEYTIER_APPROVER_MAX ||
            strchr(c->approvers[i].name, ' ') != NULL)
            abort();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->approvers[i].name, c->approvers[j].name))
                abort(); /* pinned twice */
    }
    for (size_t i = 0; i < c->n_workloads; i++)
        if (c->workloads[i].name[0] == '\0')
            abort();
    check_avail(&c->avail);
    char *log = kt_config_audit_log(c);
    if (log == NULL)
        abort();
    free(log);
}

/* A PIN file's verdict, read independently: its first line (*n bytes at
 * *line) or false when it must be refused. */
static bool pin_expected(const uint8_t *p, size_t n, const uint8_t **line,
                         size_t *len)
{
    size_t l = 0;
    while (l < n && p[l] != '\n' && p[l] != '\r')
        l++;
    *line = p;
    *len = l;
    return l > 0 && l <= PIN_MAX && memchr(p, '\0', l) == NULL;
}

static void check_pins(const struct kt_config *c, const uint8_t *pin,
                       size_t pin_len, bool have_pin)
{
    char own[96];
    snprintf(own, sizeof own, "%s/pin", dir);
    for (size_t i = 0; i < c->n_pins; i++) {
        const struct kt_pin_cfg *p = &c->pins[i];
        if (p->kind == KT_PIN_FILE && strcmp(p->where, own) != 0)
            continue; /* outside the directory: never opened */
        kt_secret *s = NULL;
        keytier_err e = kt_pin_read(p, &s);
        if (p->kind == KT_PIN_FILE) {
            const uint8_t *line;
            size_t len;
            bool ok = have_pin && pin_expected(pin, pin_len, &line, &len);
            if ((e == KEYTIER_OK) != ok ||
                (ok && (kt_secret_len(s) != len ||
                        memcmp(kt_secret_cdata(s), line, len) != 0)))
                abort(); /* not the file's first line */
        } else if (e == KEYTIER_OK && kt_secret_len(s) == 0) {
            abort();
        }
        kt_secret_free(s);
    }
}

/* Whether v is the value of a pin.LABEL setting (a "value:" elsewhere,
 * in another setting or in a key, is no PIN). */
static bool on_pin_line(const char *text, const char *v)
{
    const char *line = v;
    while (line > text && line[-1] != '\n' && line[-1] != '\r')
        line--;
    line += strspn(line, " \t");
    if (strncmp(line, "pin.", 4) != 0)
        return false;
    line += 4 + strcspn(line + 4, " \t=\r\n"); /* the label */
    line += strspn(line, " \t");
    if (*line != '=')
        return false;
    line++;
    return line + strspn(line, " \t") == v; /* pin.LABEL = value: */
}

/* No pin.L = value:PIN (of 12 bytes or more, found once in the text)
 * appears in the error's detail. */
static void check_detail(const char *text, size_t len)
{
    const char *detail = keytier_last_error_detail();
    if (detail == NULL || memchr(text, '\0', len) != NULL)
        return;
    for (const char *v = strstr(text, "value:"); v;
         v = strstr(v + 1, "value:")) {
        size_t n = strcspn(v + 6, "\r\n");
        if (n < 12 || n > 200 || !on_pin_line(text, v))
            continue;
        char pin[201];
        memcpy(pin, v + 6, n);
        pin[n] = '\0';
        /* the PIN's only occurrence in the text (else the detail may
         * quote it from another setting's value) */
        if (strstr(text, pin) == v + 6 && strstr(v + 6 + n, pin) == NULL &&
            strstr(detail, pin) != NULL)
            abort(); /* a PIN in an error message */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        strcpy(dir, "/tmp/kt-fuzz-libconfig-XXXXXX");
        if (mkdtemp(dir) == NULL)
            abort();
    }
    const uint8_t *sep = memmem(data, size, PIN_SEP, strlen(PIN_SEP));
    size_t text_len = sep ? (size_t)(sep - data) : size, len;
    const uint8_t *pin = sep ? sep + strlen(PIN_SEP) : NULL;
    size_t pin_len = sep ? size - (size_t)(pin - data) : 0;
    char *text = expand(data, text_len, &len);
    char conf[96], pin_path[96];
    snprintf(conf, sizeof conf, "%s/keytier-lib.conf", dir);
    snprintf(pin_path, sizeof pin_path, "%s/pin", dir);
    fz_write_file(conf, text, len);
    unlink(pin_path);
    if (pin != NULL)
        fz_write_file(pin_path, pin, pin_len);
    struct kt_config cfg;
    keytier_err e = kt_config_load(conf, &cfg);
    if (e == KEYTIER_OK) {
        check_loaded(&cfg);
        check_pins(&cfg, pin, pin_len, pin != NULL);
        kt_config_free(&cfg);
    } else if (e != KEYTIER_E_CONFIG && e != KEYTIER_E_NOMEM) {
        abort();
    } else {
        check_detail(text, len);
    }
    free(text);
    return 0;
}
