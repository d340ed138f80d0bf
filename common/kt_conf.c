#include "kt_conf.h"

#include "kt_file.h"
#include "wipe.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static bool has_star(const struct kt_conf_key *key)
{
    return strchr(key->name, '*') != NULL;
}

static enum kt_conf_rc empty(const char *where, const char *name, char *err,
                             size_t err_len)
{
    fail(err, err_len,
         "config %s: %s: empty value: write one after '=' or remove the line",
         where, name);
    return KT_CONF_INVALID;
}

static enum kt_conf_rc no_memory(const char *where, const char *name, char *err,
                                 size_t err_len)
{
    fail(err, err_len, "config %s: %s: out of memory", where, name);
    return KT_CONF_NOMEM;
}

static enum kt_conf_rc store_str(const struct kt_conf_key *key, void *field,
                                 const char *value, const char *where,
                                 const char *name, char *err, size_t err_len)
{
    if (value[0] == '\0')
        return empty(where, name, err, err_len);
    if (key->size != sizeof(char *) || strlen(value) > key->max) {
        fail(err, err_len, "config %s: %s: need at most %lu bytes", where, name,
             key->max);
        return KT_CONF_INVALID;
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return no_memory(where, name, err, err_len);
    char **slot = field;
    free(*slot);
    *slot = copy;
    return KT_CONF_OK;
}

static enum kt_conf_rc store_custom(const struct kt_conf_key *key, void *field,
                                    const char *part, const char *value,
                                    const char *where, const char *name,
                                    char *err, size_t err_len)
{
    if (value[0] == '\0')
        return empty(where, name, err, err_len);
    if (key->set == NULL) {
        fail(err, err_len, "config %s: %s: no set function", where, name);
        return KT_CONF_INVALID;
    }
    char why[512] = "";
    enum kt_conf_rc rc = key->set(field, part, value, why, sizeof(why));
    if (rc == KT_CONF_NOMEM)
        return no_memory(where, name, err, err_len);
    if (rc != KT_CONF_OK)
        fail(err, err_len, "config %s: %s: %s", where, name, why);
    return rc;
}

/* Checks value against key and stores it in base (dst, or the record of a
 * "*" key); name is the key as written in the file. */
static enum kt_conf_rc store(const struct kt_conf_key *key, void *base,
                             const char *part, const char *name,
                             const char *value, const char *where, char *err,
                             size_t err_len)
{
    void *field = (char *)base + key->offset;
    unsigned long x = 0;
    switch (key->type) {
    case KT_CONF_UINT:
        if (!parse_ulong(value, &x) || x < key->min || x > key->max ||
            !store_uint(field, key->size, x))
            break;
        return KT_CONF_OK;
    case KT_CONF_POW2:
        if (!parse_ulong(value, &x) || x < key->min || x > key->max ||
            (x & (x - 1)) != 0 || !store_uint(field, key->size, x))
            break;
        return KT_CONF_OK;
    case KT_CONF_BOOL:
        if (key->size != sizeof(bool) ||
            (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0))
            break;
        *(bool *)field = strcmp(value, "yes") == 0;
        return KT_CONF_OK;
    case KT_CONF_WORD:
        for (const struct kt_conf_word *w = key->words;
             w != NULL && w->word != NULL; w++)
            if (strcmp(value, w->word) == 0 && key->size == sizeof(int)) {
                *(int *)field = w->value;
                return KT_CONF_OK;
            }
        break;
    case KT_CONF_PATH:
        if (value[0] != '/' || strlen(value) > key->max ||
            strlen(value) >= key->size)
            break;
        memcpy(field, value, strlen(value) + 1);
        return KT_CONF_OK;
    case KT_CONF_STR:
        return store_str(key, field, value, where, name, err, err_len);
    case KT_CONF_CUSTOM:
        return store_custom(key, field, part, value, where, name, err, err_len);
    default:
        fail(err, err_len, "config %s: %s: unknown key type", where, name);
        return KT_CONF_INVALID;
    }
    char words[512];
    switch (key->type) {
    case KT_CONF_UINT:
        fail(err, err_len,
             "config %s: %s: need a whole number from %lu to %lu, not '%s'",
             where, name, key->min, key->max, value);
        break;
    case KT_CONF_POW2:
        fail(err, err_len,
             "config %s: %s: need a power of two from %lu to %lu, not '%s'",
             where, name, key->min, key->max, value);
        break;
    case KT_CONF_BOOL:
        fail(err, err_len, "config %s: %s: need yes or no, not '%s'", where,
             name, value);
        break;
    case KT_CONF_WORD:
        word_list(key->words, words, sizeof(words));
        fail(err, err_len, "config %s: %s: need %s, not '%s'", where, name,
             words, value);
        break;
    default:
        fail(err, err_len,
             "config %s: %s: need an absolute path (starting with /) of at "
             "most %lu bytes, not '%s'",
             where, name, key->max, value);
        break;
    }
    return KT_CONF_INVALID;
}

bool kt_conf_set(const struct kt_conf_key *key, void *dst, const char *value,
                 const char *where, char *err, size_t err_len)
{
    if (has_star(key))
        return fail(err, err_len, "config %s: %s: names a family of keys",
                    where, key->name);
    return store(key, dst, NULL, key->name, value, where, err, err_len) ==
           KT_CONF_OK;
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

/* Whether name is of the family pattern (one "*"); the part the "*" stands
 * for, which is never empty, goes to part (part_len bytes, enough for any
 * line). */
static bool family(const char *pattern, const char *name, char *part,
                   size_t part_len)
{
    const char *star = strchr(pattern, '*');
    size_t head = (size_t)(star - pattern);
    size_t tail = strlen(star + 1);
    size_t len = strlen(name);
    if (len <= head + tail || strncmp(name, pattern, head) != 0 ||
        strcmp(name + len - tail, star + 1) != 0 ||
        len - head - tail >= part_len)
        return false;
    memcpy(part, name + head, len - head - tail);
    part[len - head - tail] = '\0';
    return true;
}

/* The key named name: its own row first, else the first family it is of
 * (its "*" part in part). */
static const struct kt_conf_key *find(const struct kt_conf_key *keys, size_t n,
                                      const char *name, size_t *at, char *part,
                                      size_t part_len)
{
    for (size_t i = 0; i < n; i++)
        if (!has_star(&keys[i]) && strcmp(keys[i].name, name) == 0) {
            *at = i;
            return &keys[i];
        }
    for (size_t i = 0; i < n; i++)
        if (has_star(&keys[i]) && family(keys[i].name, name, part, part_len)) {
            *at = i;
            return &keys[i];
        }
    return NULL;
}

/* Length of name's group ("avail." of "avail.hedge_ms"), 0 if none. */
static size_t group_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot == NULL ? 0 : (size_t)(dot - name) + 1;
}

static bool same_group(const char *a, const char *b)
{
    size_t g = group_len(a);
    return g != 0 && g == group_len(b) && strncmp(a, b, g) == 0;
}

/* The keys to offer instead of an unknown one: those of its group when
 * there are any ("avail.x": every "avail." key), else every key, a group
 * shown once as "group.*". */
static void offer(const struct kt_conf_key *keys, size_t n, const char *key,
                  char *names, size_t len)
{
    bool in_group = false;
    for (size_t i = 0; i < n && !in_group; i++)
        in_group = same_group(keys[i].name, key);
    names[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t g = group_len(keys[i].name), used = strlen(names);
        const char *sep = used == 0 ? "" : ", ";
        if (in_group) {
            if (same_group(keys[i].name, key))
                snprintf(names + used, len - used, "%s%s", sep, keys[i].name);
            continue;
        }
        bool shown = false;
        for (size_t j = 0; j < i && !shown; j++)
            shown = same_group(keys[j].name, keys[i].name);
        if (g == 0)
            snprintf(names + used, len - used, "%s%s", sep, keys[i].name);
        else if (!shown)
            snprintf(names + used, len - used, "%s%.*s*", sep, (int)g,
                     keys[i].name);
    }
}

static enum kt_conf_rc unknown(const struct kt_conf_key *keys, size_t n,
                               const char *where, const char *key, char *err,
                               size_t err_len)
{
    char names[2048];
    offer(keys, n, key, names, sizeof(names));
    fail(err, err_len,
         "config %s: unknown key '%s': remove the line or use one of %s", where,
         key, names);
    return KT_CONF_INVALID;
}

/* The full names of "*" keys met so far, with their lines. */
struct seen {
    char **names;
    unsigned *lines;
    size_t n, cap;
};

static unsigned seen_line(const struct seen *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return s->lines[i];
    return 0;
}

static bool seen_add(struct seen *s, const char *name, unsigned line)
{
    if (s->n == s->cap) {
        size_t cap = s->cap == 0 ? 8 : 2 * s->cap;
        char **names = realloc(s->names, cap * sizeof(*names));
        if (names == NULL)
            return false;
        s->names = names;
        unsigned *lines = realloc(s->lines, cap * sizeof(*lines));
        if (lines == NULL)
            return false;
        s->lines = lines;
        s->cap = cap;
    }
    s->names[s->n] = strdup(name);
    if (s->names[s->n] == NULL)
        return false;
    s->lines[s->n++] = line;
    return true;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    free(s->lines);
}

/* Where the reader is: the file, its line, the lines keys were set on. */
struct reader {
    const struct kt_conf_file *file;
    void *dst;
    unsigned *lines;
    struct seen seen;
    unsigned lineno;
    char where[KT_CONF_LINE_MAX];
    char part[KT_CONF_LINE_MAX];
};

/* One "name = value" setting of line r->lineno. */
static enum kt_conf_rc setting(struct reader *r, const char *name,
                               const char *value, char *err, size_t err_len)
{
    const struct kt_conf_file *f = r->file;
    size_t at = 0;
    const struct kt_conf_key *key =
        find(f->keys, f->n, name, &at, r->part, sizeof(r->part));
    if (key == NULL)
        return unknown(f->keys, f->n, r->where, name, err, err_len);
    bool star = has_star(key);
    unsigned first = star ? seen_line(&r->seen, name) : r->lines[at];
    if (first != 0 && key->repeat != KT_CONF_LIST) {
        fail(err, err_len,
             "config %s: %s: set again (first on line %u): keep one of the "
             "two lines",
             r->where, name, first);
        return KT_CONF_INVALID;
    }
    void *base = r->dst;
    if (star) {
        char why[512] = "";
        base = key->record == NULL
                   ? NULL
                   : key->record(r->dst, r->part, why, sizeof(why));
        if (base == NULL) {
            fail(err, err_len, "config %s: %s: %s", r->where, name,
                 why[0] != '\0' ? why : "no record for it");
            return KT_CONF_INVALID;
        }
        if (first == 0 && !seen_add(&r->seen, name, r->lineno))
            return no_memory(r->where, name, err, err_len);
    }
    if (r->lines[at] == 0)
        r->lines[at] = r->lineno;
    return store(key, base, star ? r->part : NULL, name, value, r->where, err,
                 err_len);
}

/* Cuts line at its comment, if any. */
static void cut_comment(char *line, bool after_blank)
{
    for (char *h = line; (h = strchr(h, '#')) != NULL; h++)
        if (!after_blank || h == line || isspace((unsigned char)h[-1])) {
            *h = '\0';
            return;
        }
}

/* One line of the file (its newline included). */
static enum kt_conf_rc line_of(struct reader *r, char *line, char *err,
                               size_t err_len)
{
    cut_comment(line, r->file->comment_after_blank);
    char *s = trim(line);
    if (*s == '\0')
        return KT_CONF_OK;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        if (r->file->secret_lines)
            fail(err, err_len, "config %s: not a setting: write 'key = value'",
                 r->where);
        else
            fail(err, err_len,
                 "config %s: '%s' is not a setting: write 'key = value'",
                 r->where, s);
        return KT_CONF_INVALID;
    }
    *eq = '\0';
    return setting(r, trim(s), trim(eq + 1), err, err_len);
}

enum kt_conf_rc kt_conf_read(const struct kt_conf_file *file, void *dst,
                             FILE *fp, const char *name, unsigned *lines,
                             char *err, size_t err_len)
{
    struct reader *r = calloc(1, sizeof(*r));
    unsigned *own = lines == NULL ? calloc(file->n + 1, sizeof(*own)) : NULL;
    if (r == NULL || (lines == NULL && own == NULL)) {
        free(r);
        free(own);
        fail(err, err_len, "config %s: out of memory", name);
        return KT_CONF_NOMEM;
    }
    r->file = file;
    r->dst = dst;
    r->lines = lines != NULL ? lines : own;
    memset(r->lines, 0, file->n * sizeof(*r->lines));
    enum kt_conf_rc rc = KT_CONF_OK;
    char line[KT_CONF_LINE_MAX];
    while (rc == KT_CONF_OK && fgets(line, sizeof(line), fp) != NULL) {
        r->lineno++;
        snprintf(r->where, sizeof(r->where), "%s:%u", name, r->lineno);
        if (strchr(line, '\n') == NULL && !feof(fp)) {
            fail(err, err_len,
                 "config %s: line longer than %d bytes: shorten it", r->where,
                 KT_CONF_LINE_MAX - 2);
            rc = KT_CONF_INVALID;
            break;
        }
        rc = line_of(r, line, err, err_len);
    }
    if (rc == KT_CONF_OK && ferror(fp)) {
        fail(err, err_len, "config %s: read error", name);
        rc = KT_CONF_INVALID;
    }
    /* the lines may have held secrets (PINs) */
    kt_wipe(line, sizeof(line));
    kt_wipe(r->part, sizeof(r->part));
    seen_free(&r->seen);
    free(r);
    free(own);
    return rc;
}

bool kt_conf_parse_file(const struct kt_conf_key *keys, size_t n, void *dst,
                        const char *path, unsigned *lines, char *err,
                        size_t err_len)
{
    if (lines != NULL)
        memset(lines, 0, n * sizeof(*lines));
    /* believed only if nobody but its owner can change it */
    int fd = kt_file_open_trusted(path, KT_FILE_CONFIG, "config", err, err_len);
    if (fd < 0)
        return false;
    FILE *fp = fdopen(fd, "r");
    if (fp == NULL) {
        int e = errno;
        close(fd);
        return fail(err, err_len, "config %s: cannot open: %s", path,
                    strerror(e));
    }
    const struct kt_conf_file file = {.keys = keys, .n = n};
    enum kt_conf_rc rc =
        kt_conf_read(&file, dst, fp, path, lines, err, err_len);
    fclose(fp);
    return rc == KT_CONF_OK;
}
