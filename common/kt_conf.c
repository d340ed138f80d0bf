#include "kt_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static bool
fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && err_len > 0)
        vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return false;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static bool parse_ulong(const char *v, unsigned long *out)
{
    char *end = NULL;
    if (!isdigit((unsigned char)v[0]))
        return false;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = x;
    return true;
}

static bool store_uint(void *field, size_t size, unsigned long x)
{
    switch (size) {
    case 1:
        if (x > UINT8_MAX)
            return false;
        *(uint8_t *)field = (uint8_t)x;
        return true;
    case 2:
        if (x > UINT16_MAX)
            return false;
        *(uint16_t *)field = (uint16_t)x;
        return true;
    case 4:
        if (x > UINT32_MAX)
            return false;
        *(uint32_t *)field = (uint32_t)x;
        return true;
    case 8:
        *(uint64_t *)field = (uint64_t)x;
        return true;
    default:
        return false;
    }
}

/* "a, b or c" into buf. */
static void word_list(const struct kt_conf_word *w, char *buf, size_t len)
{
    size_t n = 0;
    while (w[n].word != NULL)
        n++;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s",
                 i == 0 ? "" : (i + 1 == n ? " or " : ", "), w[i].word);
    }
}

bool kt_conf_set(const struct kt_conf_key *key, void *dst, const char *value,
                 const char *where, char *err, size_t err_len)
{
    void *field = (char *)dst + key->offset;
    unsigned long x = 0;
    switch (key->type) {
    case KT_CONF_UINT:
        if (!parse_ulong(value, &x) || x < key->min || x > key->max ||
            !store_uint(field, key->size, x))
            return fail(err, err_len,
                        "config %s: %s: need a whole number from %lu to %lu, "
                        "not '%s'",
                        where, key->name, key->min, key->max, value);
        return true;
    case KT_CONF_POW2:
        if (!parse_ulong(value, &x) || x < key->min || x > key->max ||
            (x & (x - 1)) != 0 || !store_uint(field, key->size, x))
            return fail(err, err_len,
                        "config %s: %s: need a power of two from %lu to %lu, "
                        "not '%s'",
                        where, key->name, key->min, key->max, value);
        return true;
    case KT_CONF_BOOL:
        if (key->size != sizeof(bool) ||
            (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0))
            return fail(err, err_len, "config %s: %s: need yes or no, not '%s'",
                        where, key->name, value);
        *(bool *)field = strcmp(value, "yes") == 0;
        return true;
    case KT_CONF_WORD:
        for (const struct kt_conf_word *w = key->words;
             w != NULL && w->word != NULL; w++)
            if (strcmp(value, w->word) == 0 && key->size == sizeof(int)) {
                *(int *)field = w->value;
                return true;
            }
        {
            char words[512];
            word_list(key->words, words, sizeof(words));
            return fail(err, err_len, "config %s: %s: need %s, not '%s'", where,
                        key->name, words, value);
        }
    case KT_CONF_PATH:
        if (value[0] != '/' || strlen(value) > key->max ||
            strlen(value) >= key->size)
            return fail(err, err_len,
                        "config %s: %s: need an absolute path (starting with "
                        "/) of at most %lu bytes, not '%s'",
                        where, key->name, key->max, value);
        memcpy(field, value, strlen(value) + 1);
        return true;
    }
    return fail(err, err_len, "config %s: %s: unknown key type", where,
                key->name);
}

bool kt_conf_defaults(const struct kt_conf_key *keys, size_t n, void *dst,
                      char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i].dflt != NULL &&
            !kt_conf_set(&keys[i], dst, keys[i].dflt, "default", err, err_len))
            return false;
    return true;
}

static const struct kt_conf_key *find(const struct kt_conf_key *keys, size_t n,
                                      const char *name, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0) {
            *at = i;
            return &keys[i];
        }
    return NULL;
}

static bool unknown(const struct kt_conf_key *keys, size_t n, const char *where,
                    const char *key, char *err, size_t err_len)
{
    char names[1024];
    names[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(names);
        snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                 keys[i].name);
    }
    return fail(err, err_len,
                "config %s: unknown key '%s': remove the line or use one of "
                "%s",
                where, key, names);
}

bool kt_conf_parse_file(const struct kt_conf_key *keys, size_t n, void *dst,
                        const char *path, unsigned *lines, char *err,
                        size_t err_len)
{
    unsigned own[64];
    if (lines == NULL) {
        if (n > sizeof(own) / sizeof(own[0]))
            return fail(err, err_len, "config %s: too many keys", path);
        lines = own;
    }
    memset(lines, 0, n * sizeof(*lines));
    FILE *fp = fopen(path, "re");
    if (fp == NULL)
        return fail(err, err_len, "config %s: cannot open: %s", path,
                    strerror(errno));
    bool ok = true;
    char line[KT_CONF_LINE_MAX];
    char where[KT_CONF_LINE_MAX];
    unsigned lineno = 0;
    while (ok && fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        if (strchr(line, '\n') == NULL && !feof(fp)) {
            ok = fail(err, err_len,
                      "config %s: line longer than %d bytes: shorten it", where,
                      KT_CONF_LINE_MAX - 2);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            ok = fail(err, err_len,
                      "config %s: '%s' is not a setting: write 'key = value'",
                      where, s);
            break;
        }
        *eq = '\0';
        char *name = trim(s);
        char *value = trim(eq + 1);
        size_t at = 0;
        const struct kt_conf_key *key = find(keys, n, name, &at);
        if (key == NULL) {
            ok = unknown(keys, n, where, name, err, err_len);
        } else if (lines[at] != 0) {
            ok = fail(err, err_len,
                      "config %s: %s: set again (first on line %u): keep "
                      "one of the two lines",
                      where, name, lines[at]);
        } else {
            ok = kt_conf_set(key, dst, value, where, err, err_len);
            lines[at] = lineno;
        }
    }
    if (ok && ferror(fp))
        ok = fail(err, err_len, "config %s: read error", path);
    fclose(fp);
    return ok;
}
