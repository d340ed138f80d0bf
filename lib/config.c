/*
 * Configuration of a libkeytier context (format and every key:
 * hsm-config/keytier-lib.conf.example).  `key = value` lines, `#` starts a
 * comment (at the start of a line or after whitespace).  Unknown keys and
 * bad values are errors naming the file, line and key - never a silent
 * default.  PIN values are never echoed in errors.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt_lib.h"
#include "stream.h"

#define KT_DEFAULT_DEP_LIMIT  50
#define KT_DEFAULT_CHUNK_SIZE 65536
#define KT_MIN_CHUNK_SIZE     256
#define KT_MAX_CHUNK_SIZE     (16u << 20)

static const struct kt_workload_cfg kt_default_workloads[] = {
    {"Exchange", KT_SHAPE_MAIL, KT_AVAIL_AES256, 0},
    {"SharePoint", KT_SHAPE_FILES, KT_AVAIL_RSA2048, 0},
    {"M365DataAtRestEncryption", KT_SHAPE_MAIL, KT_AVAIL_AES256, 0},
};

/* Transform workers of a stream by default: one per online CPU, at most
 * 4 (past that the reader and writer copies bound a stream anyway). */
static unsigned kt_default_stream_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
}

static void kt_config_defaults(struct kt_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = KT_LOG_WARNING;
    cfg->dep_limit = KT_DEFAULT_DEP_LIMIT;
    cfg->chunk_size = KT_DEFAULT_CHUNK_SIZE;
    cfg->stream_threads = kt_default_stream_threads();
    kt_avail_config_defaults(&cfg->avail);
    for (size_t i = 0;
         i < sizeof kt_default_workloads / sizeof kt_default_workloads[0]; i++)
        cfg->workloads[cfg->n_workloads++] = kt_default_workloads[i];
}

static char *kt_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool kt_parse_uint(const char *v, unsigned long min, unsigned long max,
                          unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)*v))
        return false;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < min || x > max)
        return false;
    *out = x;
    return true;
}

static bool kt_parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1")) {
        *out = true;
        return true;
    }
    if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0")) {
        *out = false;
        return true;
    }
    return false;
}

static struct kt_workload_cfg *kt_workload_get(struct kt_config *cfg,
                                               const char *name, bool create)
{
    for (size_t i = 0; i < cfg->n_workloads; i++)
        if (!strcmp(cfg->workloads[i].name, name))
            return &cfg->workloads[i];
    if (!create || cfg->n_workloads == KT_MAX_WORKLOADS ||
        !kt_text_ok(name, KEYTIER_WORKLOAD_MAX))
        return NULL;
    struct kt_workload_cfg *w = &cfg->workloads[cfg->n_workloads++];
    kt_strlcpy(w->name, name, sizeof w->name);
    w->shape = KT_SHAPE_MAIL;
    w->avail = KT_AVAIL_AES256;
    return w;
}

#define KT_BAD(...) kt_err(KEYTIER_E_CONFIG, __VA_ARGS__)

static keytier_err kt_set_pin(struct kt_config *cfg, const char *where,
                              const char *label, const char *v)
{
    if (!kt_text_ok(label, 32))
        return KT_BAD("%s: key 'pin.%s': token labels have 1..32 bytes", where,
                      label);
    if (kt_config_pin(cfg, label) != NULL)
        return KT_BAD("%s: key 'pin.%s': set twice", where, label);
    if (cfg->n_pins == KT_MAX_PINS)
        return KT_BAD("%s: key 'pin.%s': more than %d PINs", where, label,
                      KT_MAX_PINS);
    struct kt_pin_cfg *p = &cfg->pins[cfg->n_pins];
    memset(p, 0, sizeof *p);
    kt_strlcpy(p->label, label, sizeof p->label);
    if (!strncmp(v, "env:", 4) && v[4]) {
        p->kind = KT_PIN_ENV;
        p->where = strdup(v + 4);
    } else if (!strncmp(v, "file:", 5) && v[5]) {
        p->kind = KT_PIN_FILE;
        p->where = strdup(v + 5);
    } else if (!strncmp(v, "value:", 6) && v[6]) {
        p->kind = KT_PIN_VALUE;
        p->value = kt_secret_from(v + 6, strlen(v + 6));
        if (p->value == NULL)
            return kt_err(KEYTIER_E_NOMEM, NULL);
        cfg->n_pins++;
        return KEYTIER_OK;
    } else {
        return KT_BAD("%s: key 'pin.%s': expected env:NAME, file:PATH or "
                      "value:PIN",
                      where, label);
    }
    if (p->where == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    cfg->n_pins++;
    return KEYTIER_OK;
}

static keytier_err kt_set_workload(struct kt_config *cfg, const char *where,
                                   const char *key, const char *v)
{
    /* key is "workload.<name>.<field>" */
    const char *name = key + strlen("workload.");
    const char *dot = strrchr(name, '.');
    char wname[KEYTIER_WORKLOAD_MAX + 1];
    if (dot == NULL || dot == name ||
        (size_t)(dot - name) > KEYTIER_WORKLOAD_MAX)
        return KT_BAD("%s: key '%s': expected workload.NAME.FIELD", where, key);
    memcpy(wname, name, (size_t)(dot - name)); /* bounded just above */
    wname[dot - name] = '\0';
    const char *field = dot + 1;
    struct kt_workload_cfg *w = kt_workload_get(cfg, wname, true);
    if (w == NULL)
        return KT_BAD("%s: key '%s': too many workloads", where, key);
    unsigned long n;
    if (!strcmp(field, "shape")) {
        if (!strcmp(v, "mail"))
            w->shape = KT_SHAPE_MAIL;
        else if (!strcmp(v, "files"))
            w->shape = KT_SHAPE_FILES;
        else
            return KT_BAD("%s: key '%s': expected mail or files", where, key);
    } else if (!strcmp(field, "availability_key")) {
        if (!strcmp(v, "aes256"))
            w->avail = KT_AVAIL_AES256;
        else if (!strcmp(v, "rsa2048"))
            w->avail = KT_AVAIL_RSA2048;
        else
            return KT_BAD("%s: key '%s': expected aes256 or rsa2048", where,
                          key);
    } else if (!strcmp(field, "dep_limit")) {
        if (!kt_parse_uint(v, 1, 100000, &n))
            return KT_BAD("%s: key '%s': expected 1..100000", where, key);
        w->dep_limit = (unsigned)n;
    } else {
        return KT_BAD("%s: unknown key '%s'", where, key);
    }
    return KEYTIER_OK;
}

static keytier_err kt_set_path(char **dst, const char *where, const char *key,
                               const char *v)
{
    if (*dst != NULL)
        return KT_BAD("%s: key '%s': set twice", where, key);
    *dst = strdup(v);
    return *dst ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
}

static keytier_err kt_config_line(struct kt_config *cfg, const char *where,
                                  const char *key, const char *v)
{
    unsigned long n;
    if (!strncmp(key, "pin.", 4))
        return kt_set_pin(cfg, where, key + 4, v);
    if (!strncmp(key, "workload.", 9))
        return kt_set_workload(cfg, where, key, v);
    /* `remote = unix:path=...` is a token served by a
     * `p11-kit server`, reached through p11-kit-client.so (token.c). */
    if (!strcmp(key, "module") || !strcmp(key, "remote")) {
        if (cfg->n_modules == KT_MAX_MODULES)
            return KT_BAD("%s: key '%s': more than %d modules", where, key,
                          KT_MAX_MODULES);
        if (key[0] == 'r' && strncmp(v, "unix:path=", 10) != 0)
            return KT_BAD("%s: key 'remote': expected unix:path=SOCKET", where);
        if (key[0] == 'r') {
            size_t len = strlen(v) + sizeof KT_REMOTE_PREFIX;
            cfg->modules[cfg->n_modules] = malloc(len);
            if (cfg->modules[cfg->n_modules] != NULL)
                snprintf(cfg->modules[cfg->n_modules], len, "%s%s",
                         KT_REMOTE_PREFIX, v);
        } else {
            cfg->modules[cfg->n_modules] = strdup(v);
        }
        if (cfg->modules[cfg->n_modules] == NULL)
            return kt_err(KEYTIER_E_NOMEM, NULL);
        cfg->n_modules++;
        return KEYTIER_OK;
    }
    if (!strcmp(key, "service_token")) {
        if (strncmp(v, "pkcs11:", 7) != 0)
            return KT_BAD("%s: key 'service_token': expected a pkcs11: URI",
                          where);
        return kt_set_path(&cfg->service_token, where, key, v);
    }
    if (!strcmp(key, "store"))
        return kt_set_path(&cfg->store_path, where, key, v);
    if (!strcmp(key, "log_file"))
        return kt_set_path(&cfg->log_file, where, key, v);
    if (!strcmp(key, "log_level")) {
        if (!kt_log_level_parse(v, &cfg->log_level))
            return KT_BAD("%s: key 'log_level': expected error, warning, "
                          "info or debug",
                          where);
        return KEYTIER_OK;
    }
    if (!strcmp(key, "dep_limit")) {
        if (!kt_parse_uint(v, 1, 100000, &n))
            return KT_BAD("%s: key 'dep_limit': expected 1..100000", where);
        cfg->dep_limit = (unsigned)n;
        return KEYTIER_OK;
    }
    if (!strcmp(key, "allow_oaep_sha1")) {
        if (!kt_parse_bool(v, &cfg->allow_oaep_sha1))
            return KT_BAD("%s: key 'allow_oaep_sha1': expected yes or no",
                          where);
        return KEYTIER_OK;
    }
    if (!strcmp(key, "envelope_chunk_size")) {
        if (!kt_parse_uint(v, KT_MIN_CHUNK_SIZE, KT_MAX_CHUNK_SIZE, &n))
            return KT_BAD("%s: key 'envelope_chunk_size': expected %u..%u",
                          where, KT_MIN_CHUNK_SIZE, KT_MAX_CHUNK_SIZE);
        cfg->chunk_size = (uint32_t)n;
        return KEYTIER_OK;
    }
    if (!strcmp(key, "stream_threads")) {
        if (!kt_parse_uint(v, 1, KT_STREAM_WORKERS_MAX, &n))
            return KT_BAD("%s: key 'stream_threads': expected 1..%u", where,
                          KT_STREAM_WORKERS_MAX);
        cfg->stream_threads = (unsigned)n;
        return KEYTIER_OK;
    }
    if (!strncmp(key, "avail.", 6))
        return kt_avail_config_set(&cfg->avail, where, key + 6, v);
    return KT_BAD("%s: unknown key '%s'", where, key);
}

static keytier_err kt_default_store(struct kt_config *cfg)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    char buf[4096];
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/keytier/keytier.db", xdg);
    else if (home && *home)
        snprintf(buf, sizeof buf, "%s/.local/share/keytier/keytier.db", home);
    else
        return KT_BAD("no store configured and neither XDG_DATA_HOME nor "
                      "HOME is set");
    cfg->store_path = strdup(buf);
    return cfg->store_path ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
}

keytier_err kt_config_load(const char *path, struct kt_config *cfg)
{
    kt_config_defaults(cfg);
    keytier_err e = KEYTIER_OK;
    if (path != NULL) {
        FILE *f = fopen(path, "re");
        if (f == NULL)
            return KT_BAD("cannot open %s: %s", path, strerror(errno));
        char line[KT_CONFIG_LINE];
        unsigned lineno = 0;
        while (e == KEYTIER_OK && fgets(line, sizeof line, f)) {
            lineno++;
            char where[512];
            snprintf(where, sizeof where, "%s:%u", path, lineno);
            if (strchr(line, '\n') == NULL && !feof(f)) {
                e = KT_BAD("%s: line longer than %d bytes", where,
                           KT_CONFIG_LINE - 2);
                break;
            }
            /* A comment starts at '#' at the line start or after a blank. */
            for (char *h = line; (h = strchr(h, '#')) != NULL; h++)
                if (h == line || isspace((unsigned char)h[-1])) {
                    *h = '\0';
                    break;
                }
            char *s = kt_trim(line);
            if (*s == '\0')
                continue;
            char *eq = strchr(s, '=');
            if (eq == NULL) {
                e = KT_BAD("%s: expected key = value", where);
                break;
            }
            *eq = '\0';
            char *key = kt_trim(s), *val = kt_trim(eq + 1);
            if (*val == '\0') {
                e = KT_BAD("%s: key '%s': empty value", where, key);
                break;
            }
            e = kt_config_line(cfg, where, key, val);
        }
        kt_wipe(line, sizeof line); /* may have held a PIN */
        fclose(f);
    }
    if (e == KEYTIER_OK && cfg->store_path == NULL)
        e = kt_default_store(cfg);
    if (e != KEYTIER_OK)
        kt_config_free(cfg);
    return e;
}

void kt_config_free(struct kt_config *cfg)
{
    for (size_t i = 0; i < cfg->n_modules; i++)
        free(cfg->modules[i]);
    for (size_t i = 0; i < cfg->n_pins; i++) {
        free(cfg->pins[i].where);
        kt_secret_free(cfg->pins[i].value);
    }
    free(cfg->service_token);
    free(cfg->store_path);
    free(cfg->log_file);
    kt_avail_config_free(&cfg->avail);
    memset(cfg, 0, sizeof *cfg);
}

const struct kt_workload_cfg *kt_config_workload(const struct kt_config *cfg,
                                                 const char *name)
{
    for (size_t i = 0; i < cfg->n_workloads; i++)
        if (!strcmp(cfg->workloads[i].name, name))
            return &cfg->workloads[i];
    return NULL;
}

const struct kt_pin_cfg *kt_config_pin(const struct kt_config *cfg,
                                       const char *label)
{
    for (size_t i = 0; i < cfg->n_pins; i++)
        if (!strcmp(cfg->pins[i].label, label))
            return &cfg->pins[i];
    return NULL;
}

keytier_err kt_pin_read(const struct kt_pin_cfg *pin, kt_secret **out)
{
    if (pin->kind == KT_PIN_VALUE) {
        *out = kt_secret_dup(pin->value);
        return *out ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
    }
    if (pin->kind == KT_PIN_ENV) {
        const char *v = getenv(pin->where);
        if (v == NULL || *v == '\0')
            return kt_err(KEYTIER_E_PIN,
                          "PIN of token '%s': environment variable %s is not "
                          "set",
                          pin->label, pin->where);
        *out = kt_secret_from(v, strlen(v));
        return *out ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
    }
    /* File: the first line, without its newline. */
    FILE *f = fopen(pin->where, "re");
    if (f == NULL)
        return kt_err(KEYTIER_E_PIN, "PIN of token '%s': cannot read %s: %s",
                      pin->label, pin->where, strerror(errno));
    char buf[257];
    keytier_err e = KEYTIER_OK;
    if (fgets(buf, sizeof buf, f) == NULL) {
        e = kt_err(KEYTIER_E_PIN, "PIN of token '%s': %s is empty", pin->label,
                   pin->where);
    } else {
        size_t n = strcspn(buf, "\r\n");
        if (n == 0)
            e = kt_err(KEYTIER_E_PIN, "PIN of token '%s': %s is empty",
                       pin->label, pin->where);
        else if ((*out = kt_secret_from(buf, n)) == NULL)
            e = kt_err(KEYTIER_E_NOMEM, NULL);
    }
    kt_wipe(buf, sizeof buf);
    fclose(f);
    return e;
}
