#include "kt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kt_config_defaults(struct kt_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(cfg->token_dir, sizeof(cfg->token_dir), "%s/keytier", xdg);
    else if (home != NULL && home[0] != '\0')
        snprintf(cfg->token_dir, sizeof(cfg->token_dir),
                 "%s/.local/share/keytier", home);
    cfg->slots = 8;
    cfg->log_level = KT_LOG_WARNING;
    cfg->pin_min_length = 4;
    cfg->pin_max_length = 64;
    cfg->pin_max_retries = 10;
    cfg->pin_kdf_cost = 15;
    cfg->allow_core_dumps = false;
    cfg->secure_heap_size = 1u << 20;
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

static bool parse_ulong(const char *v, unsigned long min, unsigned long max,
                        unsigned long *out)
{
    char *end = NULL;
    if (!isdigit((unsigned char)v[0]))
        return false;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < min || x > max)
        return false;
    *out = x;
    return true;
}

#define BAD(...)                                                               \
    do {                                                                       \
        kt_log(KT_LOG_ERROR, __VA_ARGS__);                                     \
        rv = CKR_ARGUMENTS_BAD;                                                \
        goto out;                                                              \
    } while (0)

CK_RV kt_config_parse_file(struct kt_config *cfg, const char *path)
{
    CK_RV rv = CKR_OK;
    char line[PATH_MAX + 64];
    unsigned lineno = 0;
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        kt_log(KT_LOG_ERROR, "config %s: cannot open: %s", path,
               strerror(errno));
        return CKR_ARGUMENTS_BAD;
    }
    while (fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(fp))
            BAD("config %s:%u: line too long", path, lineno);
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL)
            BAD("config %s:%u: expected 'key = value'", path, lineno);
        *eq = '\0';
        char *key = trim(s);
        char *val = trim(eq + 1);
        unsigned long x = 0;
        if (strcmp(key, "token_dir") == 0) {
            if (val[0] != '/' || strlen(val) >= sizeof(cfg->token_dir) - 64)
                BAD("config %s:%u: token_dir: need an absolute path", path,
                    lineno);
            snprintf(cfg->token_dir, sizeof(cfg->token_dir), "%s", val);
        } else if (strcmp(key, "slots") == 0) {
            if (!parse_ulong(val, 1, 1024, &x))
                BAD("config %s:%u: slots: need 1..1024", path, lineno);
            cfg->slots = x;
        } else if (strcmp(key, "log_level") == 0) {
            if (strcmp(val, "error") == 0)
                cfg->log_level = KT_LOG_ERROR;
            else if (strcmp(val, "warning") == 0)
                cfg->log_level = KT_LOG_WARNING;
            else if (strcmp(val, "info") == 0)
                cfg->log_level = KT_LOG_INFO;
            else if (strcmp(val, "debug") == 0)
                cfg->log_level = KT_LOG_DEBUG;
            else
                BAD("config %s:%u: log_level: need error, warning, info or "
                    "debug",
                    path, lineno);
        } else if (strcmp(key, "log_file") == 0) {
            if (val[0] != '/' || strlen(val) >= sizeof(cfg->log_file))
                BAD("config %s:%u: log_file: need an absolute path", path,
                    lineno);
            snprintf(cfg->log_file, sizeof(cfg->log_file), "%s", val);
        } else if (strcmp(key, "pin_min_length") == 0) {
            if (!parse_ulong(val, 1, 255, &x))
                BAD("config %s:%u: pin_min_length: need 1..255", path, lineno);
            cfg->pin_min_length = x;
        } else if (strcmp(key, "pin_max_length") == 0) {
            if (!parse_ulong(val, 1, 255, &x))
                BAD("config %s:%u: pin_max_length: need 1..255", path, lineno);
            cfg->pin_max_length = x;
        } else if (strcmp(key, "pin_max_retries") == 0) {
            if (!parse_ulong(val, 1, 1000, &x))
                BAD("config %s:%u: pin_max_retries: need 1..1000", path,
                    lineno);
            cfg->pin_max_retries = x;
        } else if (strcmp(key, "pin_kdf_cost") == 0) {
            if (!parse_ulong(val, 10, 22, &x))
                BAD("config %s:%u: pin_kdf_cost: need 10..22", path, lineno);
            cfg->pin_kdf_cost = (unsigned)x;
        } else if (strcmp(key, "legacy_mechanisms") == 0) {
            if (strcmp(val, "yes") == 0)
                cfg->legacy_mechanisms = true;
            else if (strcmp(val, "no") == 0)
                cfg->legacy_mechanisms = false;
            else
                BAD("config %s:%u: legacy_mechanisms: need yes or no", path,
                    lineno);
        } else if (strcmp(key, "allow_core_dumps") == 0) {
            if (strcmp(val, "yes") == 0)
                cfg->allow_core_dumps = true;
            else if (strcmp(val, "no") == 0)
                cfg->allow_core_dumps = false;
            else
                BAD("config %s:%u: allow_core_dumps: need yes or no", path,
                    lineno);
        } else if (strcmp(key, "secure_heap_size") == 0) {
            if (!parse_ulong(val, 1ul << 16, 1ul << 30, &x) ||
                (x & (x - 1)) != 0)
                BAD("config %s:%u: secure_heap_size: need a power of two "
                    "from 65536 to 1073741824",
                    path, lineno);
            cfg->secure_heap_size = x;
        } else {
            BAD("config %s:%u: unknown key '%s'", path, lineno, key);
        }
    }
    if (ferror(fp))
        BAD("config %s: read error", path);
    if (cfg->pin_min_length > cfg->pin_max_length)
        BAD("config %s: pin_min_length exceeds pin_max_length", path);
out:
    fclose(fp);
    return rv;
}

CK_RV kt_config_load(struct kt_config *cfg)
{
    kt_config_defaults(cfg);
    const char *path = getenv("KEYTIER_CONF");
    if (path != NULL && path[0] != '\0') {
        CK_RV rv = kt_config_parse_file(cfg, path);
        if (rv != CKR_OK)
            return rv;
    }
    if (cfg->token_dir[0] == '\0') {
        kt_log(KT_LOG_ERROR, "no token_dir: set KEYTIER_CONF, XDG_DATA_HOME "
                             "or HOME");
        return CKR_ARGUMENTS_BAD;
    }
    return CKR_OK;
}
