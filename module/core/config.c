/* The module's configuration file ($KEYTIER_CONF, else the system-wide
 * KT_SYSTEM_CONF): its keys, one table row each; common/kt_conf.c reads
 * the file by this table. */
#include "kt.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "kt_conf.h"

#define FIELD(f)                                                               \
    offsetof(struct kt_config, f), sizeof(((struct kt_config *)0)->f)

static const struct kt_conf_word log_levels[] = {
    {"error", KT_LOG_ERROR},
    {"warning", KT_LOG_WARNING},
    {"info", KT_LOG_INFO},
    {"debug", KT_LOG_DEBUG},
    {NULL, 0},
};

static const struct kt_conf_word log_targets[] = {
    {"stderr", KT_LOG_TO_STDERR},
    {"file", KT_LOG_TO_FILE},
    {"syslog", KT_LOG_TO_SYSLOG},
    {NULL, 0},
};

/* Indexes of the keys checked against each other after the file. */
enum {
    KEY_PIN_MIN = 4,
    KEY_PIN_MAX = 5,
    KEY_LOG_TARGET = 11,
    KT_CONFIG_KEYS = 13,
};

#ifndef KT_SYSTEM_CONF
#define KT_SYSTEM_CONF "/etc/keytier/keytier.conf"
#endif

/* token_dir has no fixed default (XDG_DATA_HOME or HOME, see
 * kt_config_defaults) and leaves room for a token's file names; log_file
 * has none (stderr); log_target follows log_file unless set
 * (log_target_settle), log_syslog_socket fits a socket address. */
static const struct kt_conf_key kt_config_keys[KT_CONFIG_KEYS] = {
    {"token_dir", KT_CONF_PATH, 1, PATH_MAX - 65, NULL, NULL, FIELD(token_dir)},
    {"slots", KT_CONF_UINT, 1, 1024, NULL, "8", FIELD(slots)},
    {"log_level", KT_CONF_WORD, 0, 0, log_levels, "warning", FIELD(log_level)},
    {"log_file", KT_CONF_PATH, 1, PATH_MAX - 1, NULL, NULL, FIELD(log_file)},
    [KEY_PIN_MIN] = {"pin_min_length", KT_CONF_UINT, 1, 255, NULL, "4",
                     FIELD(pin_min_length)},
    [KEY_PIN_MAX] = {"pin_max_length", KT_CONF_UINT, 1, 255, NULL, "64",
                     FIELD(pin_max_length)},
    {"pin_max_retries", KT_CONF_UINT, 1, 1000, NULL, "10",
     FIELD(pin_max_retries)},
    {"pin_kdf_cost", KT_CONF_UINT, 10, 22, NULL, "15", FIELD(pin_kdf_cost)},
    {"legacy_mechanisms", KT_CONF_BOOL, 0, 0, NULL, "no",
     FIELD(legacy_mechanisms)},
    {"allow_core_dumps", KT_CONF_BOOL, 0, 0, NULL, "no",
     FIELD(allow_core_dumps)},
    {"secure_heap_size", KT_CONF_POW2, 1ul << 16, 1ul << 30, NULL, "1048576",
     FIELD(secure_heap_size)},
    [KEY_LOG_TARGET] = {"log_target", KT_CONF_WORD, 0, 0, log_targets, NULL,
                        FIELD(log_target)},
    {"log_syslog_socket", KT_CONF_PATH, 1,
     sizeof(((struct sockaddr_un *)0)->sun_path) - 1, NULL, NULL,
     FIELD(log_syslog_socket)},
};

void kt_config_defaults(struct kt_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char err[KT_CONF_ERR_MAX];
    /* The table's defaults are checked by the unit tests: a failure here
     * is a table error, and the zeroed field it leaves is logged. */
    if (!kt_conf_defaults(kt_config_keys, KT_CONFIG_KEYS, cfg, err,
                          sizeof(err)))
        kt_log(KT_LOG_ERROR, "%s", err);
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(cfg->token_dir, sizeof(cfg->token_dir), "%s/keytier", xdg);
    else if (home != NULL && home[0] != '\0')
        snprintf(cfg->token_dir, sizeof(cfg->token_dir),
                 "%s/.local/share/keytier", home);
}

const struct kt_conf_key *kt_config_table(size_t *n)
{
    *n = KT_CONFIG_KEYS;
    return kt_config_keys;
}

static void where(unsigned line, char *buf, size_t len)
{
    if (line != 0)
        snprintf(buf, len, "line %u", line);
    else
        snprintf(buf, len, "the default");
}

/* log_target against log_file and log_syslog_socket, as the library
 * checks them (not set: the file if one is named, else stderr). */
static KT_NODISCARD CK_RV log_target_settle(struct kt_config *cfg,
                                            const char *path)
{
    static const char *const names[] = {"", "stderr", "file", "syslog"};
    enum kt_log_target t = cfg->log_target;
    bool file = cfg->log_file[0] != '\0';
    if (t == KT_LOG_TO_DEFAULT)
        t = file ? KT_LOG_TO_FILE : KT_LOG_TO_STDERR;
    if (t == KT_LOG_TO_FILE && !file) {
        kt_log(KT_LOG_ERROR,
               "config %s: log_target = file needs log_file = "
               "PATH",
               path);
        return CKR_ARGUMENTS_BAD;
    }
    if (t != KT_LOG_TO_FILE && file) {
        kt_log(KT_LOG_ERROR,
               "config %s: log_file is set but log_target = %s: remove one "
               "of them",
               path, names[t]);
        return CKR_ARGUMENTS_BAD;
    }
    if (t != KT_LOG_TO_SYSLOG && cfg->log_syslog_socket[0] != '\0') {
        kt_log(KT_LOG_ERROR,
               "config %s: log_syslog_socket applies to log_target = syslog "
               "only (log_target is %s)",
               path, names[t]);
        return CKR_ARGUMENTS_BAD;
    }
    return CKR_OK;
}

CK_RV kt_config_parse_file(struct kt_config *cfg, const char *path)
{
    char err[KT_CONF_ERR_MAX];
    unsigned lines[KT_CONFIG_KEYS];
    if (!kt_conf_parse_file(kt_config_keys, KT_CONFIG_KEYS, cfg, path, lines,
                            err, sizeof(err))) {
        kt_log(KT_LOG_ERROR, "%s", err);
        return CKR_ARGUMENTS_BAD;
    }
    if (cfg->pin_min_length > cfg->pin_max_length) {
        char min_at[32], max_at[32];
        where(lines[KEY_PIN_MIN], min_at, sizeof(min_at));
        where(lines[KEY_PIN_MAX], max_at, sizeof(max_at));
        kt_log(KT_LOG_ERROR,
               "config %s: pin_min_length %lu (%s) exceeds pin_max_length "
               "%lu (%s): lower the one or raise the other",
               path, (unsigned long)cfg->pin_min_length, min_at,
               (unsigned long)cfg->pin_max_length, max_at);
        return CKR_ARGUMENTS_BAD;
    }
    return log_target_settle(cfg, path);
}

const char *kt_config_pick(const char *env, const char *system_path)
{
    if (env != NULL && env[0] != '\0')
        return env;
    /* A file that exists but cannot be read is the file's error, reported
     * by the parser; one that does not exist is no configuration. */
    if (system_path != NULL && access(system_path, F_OK) == 0)
        return system_path;
    return NULL;
}

const char *kt_config_path(void)
{
    return kt_config_pick(getenv("KEYTIER_CONF"), KT_SYSTEM_CONF);
}

CK_RV kt_config_load_from(struct kt_config *cfg, const char *path)
{
    kt_config_defaults(cfg);
    if (path != NULL) {
        CK_RV rv = kt_config_parse_file(cfg, path);
        if (rv != CKR_OK)
            return rv;
    }
    /* No token directory (a daemon with no home and no system-wide
     * file) is no error: no slots (kt_config_log_no_dir). */
    return CKR_OK;
}

void kt_config_log_no_dir(const struct kt_config *cfg)
{
    /* Info, not an error: every program that loads all p11-kit modules
     * would print it. */
    if (cfg->token_dir[0] == '\0')
        kt_log(KT_LOG_INFO,
               "no token_dir: no slots (set token_dir in %s or "
               "$KEYTIER_CONF, or XDG_DATA_HOME or HOME)",
               KT_SYSTEM_CONF);
}

CK_RV kt_config_load(struct kt_config *cfg)
{
    return kt_config_load_from(cfg, kt_config_path());
}

size_t kt_config_heap_size(void)
{
    struct kt_config cfg;
    kt_config_defaults(&cfg);
    size_t dflt = cfg.secure_heap_size;
    const char *path = kt_config_path();
    char err[KT_CONF_ERR_MAX];
    unsigned lines[KT_CONFIG_KEYS];
    if (path != NULL &&
        !kt_conf_parse_file(kt_config_keys, KT_CONFIG_KEYS, &cfg, path, lines,
                            err, sizeof(err)))
        return dflt; /* C_Initialize reports the file's error */
    return cfg.secure_heap_size;
}
