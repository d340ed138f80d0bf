/*
 * Configuration of a libkeytier context (format and every key:
 * hsm-config/keytier-lib.conf.example): the library's keys, one table row
 * each, read by common/kt_conf.c, then the checks between keys.  `#`
 * starts a comment at the start of a line or after a blank, so that values
 * may hold `#`.  Every key but the list keys `module` and `remote` refuses
 * a second line; unknown keys and bad values are errors naming the file,
 * line and key, never a silent default.  PIN values are never echoed in
 * errors and the lines that held them are wiped.  What the rest of the
 * library reads from a context's configuration at run time (the deadlines,
 * the audit log's path) is answered here too.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kt_conf.h"
#include "kt_file.h"
#include "kt_lib.h"
#include "stream.h"

#define FIELD(f)                                                               \
    offsetof(struct kt_config, f), sizeof(((struct kt_config *)0)->f)
#define WORKLOAD(f)                                                            \
    offsetof(struct kt_workload_cfg, f),                                       \
        sizeof(((struct kt_workload_cfg *)0)->f)
#define OVERRIDE(f)                                                            \
    offsetof(struct kt_avail_override, f),                                     \
        sizeof(((struct kt_avail_override *)0)->f)

/* Longest text value (store, log_file, avail.audit_log, service_token). */
#define KT_CONF_TEXT_MAX 4095

static const struct kt_workload_cfg kt_default_workloads[] = {
    {"Exchange", KT_SHAPE_MAIL, KT_AVAIL_AES256, 0},
    {"SharePoint", KT_SHAPE_FILES, KT_AVAIL_RSA2048, 0},
    {"M365DataAtRestEncryption", KT_SHAPE_MAIL, KT_AVAIL_AES256, 0},
};

static const struct kt_conf_word kt_log_targets[] = {
    {"stderr", KT_LOG_TO_STDERR},
    {"file", KT_LOG_TO_FILE},
    {"syslog", KT_LOG_TO_SYSLOG},
    {NULL, 0},
};

static const struct kt_conf_word kt_log_levels[] = {
    {"error", KT_LOG_ERROR},
    {"warning", KT_LOG_WARNING},
    {"info", KT_LOG_INFO},
    {"debug", KT_LOG_DEBUG},
    {NULL, 0},
};

static const struct kt_conf_word kt_shapes[] = {
    {"mail", KT_SHAPE_MAIL},
    {"files", KT_SHAPE_FILES},
    {NULL, 0},
};

static const struct kt_conf_word kt_avail_types[] = {
    {"aes256", KT_AVAIL_AES256},
    {"rsa2048", KT_AVAIL_RSA2048},
    {NULL, 0},
};

/* ---- list keys: each line adds one module -------------------------- */

static enum kt_conf_rc kt_add_module(struct kt_config *cfg, const char *prefix,
                                     const char *v, char *why, size_t why_len)
{
    if (cfg->n_modules == KT_MAX_MODULES) {
        snprintf(why, why_len,
                 "more than %d module and remote lines: remove some",
                 KT_MAX_MODULES);
        return KT_CONF_INVALID;
    }
    size_t len = strlen(prefix) + strlen(v) + 1;
    char *m = malloc(len);
    if (m == NULL)
        return KT_CONF_NOMEM;
    snprintf(m, len, "%s%s", prefix, v);
    cfg->modules[cfg->n_modules++] = m;
    return KT_CONF_OK;
}

static enum kt_conf_rc kt_set_module(void *field, const char *part,
                                     const char *v, char *why, size_t why_len)
{
    (void)part;
    return kt_add_module(field, "", v, why, why_len);
}

/* `remote = unix:path=...` is a token served by a `p11-kit server`,
 * reached through p11-kit-client.so (p11/module.c). */
static enum kt_conf_rc kt_set_remote(void *field, const char *part,
                                     const char *v, char *why, size_t why_len)
{
    (void)part;
    if (strncmp(v, "unix:path=", 10) != 0 || v[10] == '\0') {
        snprintf(why, why_len, "need unix:path=SOCKET");
        return KT_CONF_INVALID;
    }
    return kt_add_module(field, KT_REMOTE_PREFIX, v, why, why_len);
}

static enum kt_conf_rc kt_set_service_token(void *field, const char *part,
                                            const char *v, char *why,
                                            size_t why_len)
{
    (void)part;
    if (strncmp(v, "pkcs11:", 7) != 0 || strlen(v) > KT_CONF_TEXT_MAX) {
        snprintf(why, why_len,
                 "need a pkcs11: URI naming a token, of at most %d bytes",
                 KT_CONF_TEXT_MAX);
        return KT_CONF_INVALID;
    }
    char **uri = field;
    free(*uri);
    *uri = strdup(v);
    return *uri != NULL ? KT_CONF_OK : KT_CONF_NOMEM;
}

/* `node = NAME`: this process's name in the audit records it writes and
 * its chain's row in the store (DESIGN.md §2 "Audit across nodes"). */
static enum kt_conf_rc kt_set_node(void *field, const char *part, const char *v,
                                   char *why, size_t why_len)
{
    (void)part;
    if (!kt_node_name_ok(v)) {
        snprintf(why, why_len,
                 "a node name has 1 to %d bytes of A-Z a-z 0-9 . _ -",
                 KEYTIER_NODE_MAX);
        return KT_CONF_INVALID;
    }
    char **node = field;
    free(*node);
    *node = strdup(v);
    return *node != NULL ? KT_CONF_OK : KT_CONF_NOMEM;
}

/* ---- pin.LABEL ------------------------------------------------------ */

static void *kt_pin_record(void *dst, const char *label, char *why,
                           size_t why_len)
{
    struct kt_config *cfg = dst;
    if (!kt_text_ok(label, 32)) {
        snprintf(why, why_len, "a token label has 1 to 32 bytes");
        return NULL;
    }
    if (cfg->n_pins == KT_MAX_PINS) {
        snprintf(why, why_len, "more than %d PINs: remove some", KT_MAX_PINS);
        return NULL;
    }
    struct kt_pin_cfg *p = &cfg->pins[cfg->n_pins++];
    memset(p, 0, sizeof *p);
    kt_strlcpy(p->label, label, sizeof p->label);
    return p;
}

/* The value is the PIN's source; it is never quoted (it may be the PIN). */
static enum kt_conf_rc kt_set_pin(void *field, const char *label, const char *v,
                                  char *why, size_t why_len)
{
    (void)label;
    struct kt_pin_cfg *p = field;
    if (!strncmp(v, "env:", 4) && v[4]) {
        p->kind = KT_PIN_ENV;
        p->where = strdup(v + 4);
    } else if (!strncmp(v, "file:", 5) && v[5]) {
        p->kind = KT_PIN_FILE;
        p->where = strdup(v + 5);
    } else if (!strncmp(v, "value:", 6) && v[6]) {
        p->kind = KT_PIN_VALUE;
        p->value = kt_secret_from(v + 6, strlen(v + 6));
        return p->value != NULL ? KT_CONF_OK : KT_CONF_NOMEM;
    } else {
        snprintf(why, why_len, "need env:NAME, file:PATH or value:PIN");
        return KT_CONF_INVALID;
    }
    return p->where != NULL ? KT_CONF_OK : KT_CONF_NOMEM;
}

/* ---- workload.NAME.FIELD and avail.outage_fallback.WORKLOAD ---------- */

/* A workload named for the first time starts as shape mail with an
 * aes256 availability key. */
static void *kt_workload_record(void *dst, const char *name, char *why,
                                size_t why_len)
{
    struct kt_config *cfg = dst;
    for (size_t i = 0; i < cfg->n_workloads; i++)
        if (!strcmp(cfg->workloads[i].name, name))
            return &cfg->workloads[i];
    if (!kt_text_ok(name, KEYTIER_WORKLOAD_MAX)) {
        snprintf(why, why_len, "a workload name has 1 to %d bytes",
                 KEYTIER_WORKLOAD_MAX);
        return NULL;
    }
    if (cfg->n_workloads == KT_MAX_WORKLOADS) {
        snprintf(why, why_len, "more than %d workloads", KT_MAX_WORKLOADS);
        return NULL;
    }
    struct kt_workload_cfg *w = &cfg->workloads[cfg->n_workloads++];
    memset(w, 0, sizeof *w);
    kt_strlcpy(w->name, name, sizeof w->name);
    w->shape = KT_SHAPE_MAIL;
    w->avail = KT_AVAIL_AES256;
    return w;
}

static void *kt_override_record(void *dst, const char *name, char *why,
                                size_t why_len)
{
    struct kt_avail_cfg *c = &((struct kt_config *)dst)->avail;
    for (size_t i = 0; i < c->n_overrides; i++)
        if (!strcmp(c->overrides[i].workload, name))
            return &c->overrides[i];
    if (!kt_text_ok(name, KEYTIER_WORKLOAD_MAX)) {
        snprintf(why, why_len, "a workload name has 1 to %d bytes",
                 KEYTIER_WORKLOAD_MAX);
        return NULL;
    }
    if (c->n_overrides == KT_AVAIL_MAX_OVERRIDES) {
        snprintf(why, why_len, "more than %d workloads",
                 KT_AVAIL_MAX_OVERRIDES);
        return NULL;
    }
    struct kt_avail_override *o = &c->overrides[c->n_overrides++];
    memset(o, 0, sizeof *o);
    kt_strlcpy(o->workload, name, sizeof o->workload);
    return o;
}

/* ---- approval.approver: each line pins one approver ---------------- */

static int kt_hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* `NAME sha256:HEX`: the name may not hold blanks; the 64 hex digits are
 * lower case, as keytier_approver_fingerprint prints them. */
static enum kt_conf_rc kt_set_approver(void *field, const char *part,
                                       const char *v, char *why, size_t why_len)
{
    (void)part;
    struct kt_config *cfg = field;
    const char *sp = strchr(v, ' ');
    size_t name_len = sp ? (size_t)(sp - v) : 0;
    const char *hex = sp ? sp + 1 : "";
    while (*hex == ' ')
        hex++;
    if (name_len == 0 || name_len > KEYTIER_APPROVER_MAX ||
        strncmp(hex, "sha256:", 7) != 0 || strlen(hex + 7) != 64) {
        snprintf(why, why_len,
                 "need NAME sha256:HEX (a name of 1 to %d bytes, then the 64 "
                 "hex digits `keytier approval fingerprint` prints)",
                 KEYTIER_APPROVER_MAX);
        return KT_CONF_INVALID;
    }
    if (cfg->n_approvers == KT_MAX_APPROVERS) {
        snprintf(why, why_len, "more than %d approvers: remove some",
                 KT_MAX_APPROVERS);
        return KT_CONF_INVALID;
    }
    struct kt_approver_pin *a = &cfg->approvers[cfg->n_approvers];
    memset(a, 0, sizeof *a);
    for (size_t i = 0; i < 32; i++) {
        int hi = kt_hex_nibble(hex[7 + 2 * i]);
        int lo = kt_hex_nibble(hex[8 + 2 * i]);
        if (hi < 0 || lo < 0) {
            snprintf(why, why_len,
                     "the fingerprint has 64 lower-case hex "
                     "digits after sha256:");
            return KT_CONF_INVALID;
        }
        a->fpr[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(a->name, v, name_len);
    for (size_t i = 0; i < cfg->n_approvers; i++)
        if (!strcmp(cfg->approvers[i].name, a->name)) {
            snprintf(why, why_len, "approver %s is pinned twice", a->name);
            return KT_CONF_INVALID;
        }
    cfg->n_approvers++;
    return KT_CONF_OK;
}

/* ---- the table ------------------------------------------------------ */

/* Rows the code reaches by index: the avail.* keys with a default, which
 * kt_avail_config_defaults applies on its own. */
enum {
    KEY_AVAIL_FIRST = 14,
    KEY_CACHE_TTL = KEY_AVAIL_FIRST + 5, /* then refresh_ahead, retry, alert */
    KEY_AVAIL_END = 27,
    KEY_LOG_TARGET = 32, /* then log_syslog_socket */
    KT_LIB_KEYS = 39,
};

/* Every key may be given once, but the list keys module and remote
 * (KT_CONF_LIST): each of their lines adds one module, in file order.
 * stream_threads has no fixed default (one per online CPU, at most 4:
 * past that the reader and writer copies bound a stream anyway); store's
 * default depends on the environment (kt_default_store). */
static const struct kt_conf_key kt_lib_keys[KT_LIB_KEYS] = {
    {"module", KT_CONF_CUSTOM, .offset = 0, .size = sizeof(struct kt_config),
     .repeat = KT_CONF_LIST, .set = kt_set_module},
    {"remote", KT_CONF_CUSTOM, .offset = 0, .size = sizeof(struct kt_config),
     .repeat = KT_CONF_LIST, .set = kt_set_remote},
    {"service_token", KT_CONF_CUSTOM, 0, 0, NULL, NULL, FIELD(service_token),
     .set = kt_set_service_token},
    {"store", KT_CONF_STR, 1, KT_CONF_TEXT_MAX, NULL, NULL, FIELD(store_path)},
    {"log_file", KT_CONF_STR, 1, KT_CONF_TEXT_MAX, NULL, NULL, FIELD(log_file)},
    {"log_level", KT_CONF_WORD, 0, 0, kt_log_levels, "warning",
     FIELD(log_level)},
    {"dep_limit", KT_CONF_UINT, 1, 100000, NULL, "50", FIELD(dep_limit)},
    {"allow_oaep_sha1", KT_CONF_BOOL, 0, 0, NULL, "no", FIELD(allow_oaep_sha1)},
    {"envelope_chunk_size", KT_CONF_UINT, 256, 16u << 20, NULL, "65536",
     FIELD(chunk_size)},
    {"stream_threads", KT_CONF_UINT, 1, KT_STREAM_WORKERS_MAX, NULL, NULL,
     FIELD(stream_threads)},
    {"pin.*", KT_CONF_CUSTOM, .offset = 0, .size = sizeof(struct kt_pin_cfg),
     .record = kt_pin_record, .set = kt_set_pin},
    {"workload.*.shape", KT_CONF_WORD, 0, 0, kt_shapes, NULL, WORKLOAD(shape),
     .record = kt_workload_record},
    {"workload.*.availability_key", KT_CONF_WORD, 0, 0, kt_avail_types, NULL,
     WORKLOAD(avail), .record = kt_workload_record},
    {"workload.*.dep_limit", KT_CONF_UINT, 1, 100000, NULL, NULL,
     WORKLOAD(dep_limit), .record = kt_workload_record},
    [KEY_AVAIL_FIRST] = {"avail.call_deadline_ms", KT_CONF_UINT, 1, 3600000,
                         NULL, "2000", FIELD(avail.call_deadline_ms)},
    {"avail.admin_deadline_ms", KT_CONF_UINT, 1, 3600000, NULL, "30000",
     FIELD(avail.admin_deadline_ms)},
    {"avail.hedge_ms", KT_CONF_UINT, 0, 3600000, NULL, "150",
     FIELD(avail.hedge_ms)},
    {"avail.workers", KT_CONF_UINT, 1, 1024, NULL, "32", FIELD(avail.workers)},
    {"avail.per_token", KT_CONF_UINT, 1, 1024, NULL, "4",
     FIELD(avail.per_token)},
    {"avail.cache_ttl_ms", KT_CONF_UINT, 0, 86400000, NULL, "300000",
     FIELD(avail.cache_ttl_ms)},
    {"avail.cache_refresh_ahead_ms", KT_CONF_UINT, 0, 86400000, NULL, "60000",
     FIELD(avail.cache_refresh_ahead_ms)},
    {"avail.cache_retry_ms", KT_CONF_UINT, KT_CACHE_RETRY_MIN_MS, 86400000,
     NULL, "5000", FIELD(avail.cache_retry_ms)},
    {"avail.cache_alert_after_ms", KT_CONF_UINT, 0, 86400000, NULL, "30000",
     FIELD(avail.cache_alert_after_ms)},
    {"avail.cache_max_entries", KT_CONF_UINT, 1, 10000000, NULL, "10000",
     FIELD(avail.cache_max_entries)},
    {"avail.cache_tier_levels", KT_CONF_UINT, 0, 8, NULL, "1",
     FIELD(avail.cache_tier_levels)},
    {"avail.cache_sync_ms", KT_CONF_UINT, 0, 3600000, NULL, "200",
     FIELD(avail.cache_sync_ms)},
    {"avail.stats_publish_ms", KT_CONF_UINT, 0, 3600000, NULL, "10000",
     FIELD(avail.stats_publish_ms)},
    [KEY_AVAIL_END] = {"avail.audit_log", KT_CONF_STR, 1, KT_CONF_TEXT_MAX,
                       NULL, NULL, FIELD(avail.audit_log)},
    {"avail.outage_fallback.*", KT_CONF_BOOL, 0, 0, NULL, NULL,
     OVERRIDE(outage_fallback), .record = kt_override_record},
    {"approval.approver", KT_CONF_CUSTOM, .offset = 0,
     .size = sizeof(struct kt_config), .repeat = KT_CONF_LIST,
     .set = kt_set_approver},
    {"approval.max_ttl", KT_CONF_UINT, 60, 7 * 86400, NULL, "28800",
     FIELD(approval_max_ttl)},
    {"approval.required", KT_CONF_BOOL, 0, 0, NULL, "yes",
     FIELD(approval_required)},
    [KEY_LOG_TARGET] = {"log_target", KT_CONF_WORD, 0, 0, kt_log_targets, NULL,
                        FIELD(log_target)},
    {"log_syslog_socket", KT_CONF_STR, 1, KT_CONF_TEXT_MAX, NULL, NULL,
     FIELD(log_syslog_socket)},
    {"node", KT_CONF_CUSTOM, 0, 0, NULL, NULL, FIELD(node), .set = kt_set_node},
    {"store.password_file", KT_CONF_STR, 1, KT_CONF_TEXT_MAX, NULL, NULL,
     FIELD(store_password_file)},
    {"worker.batch", KT_CONF_UINT, 1, 100000, NULL, "256", FIELD(worker.batch)},
    {"worker.lease_ms", KT_CONF_UINT, 1000, 86400000, NULL, "30000",
     FIELD(worker.lease_ms)},
    {"worker.poll_ms", KT_CONF_UINT, 10, 3600000, NULL, "5000",
     FIELD(worker.poll_ms)},
};

static const struct kt_conf_file kt_lib_file = {
    .keys = kt_lib_keys,
    .n = KT_LIB_KEYS,
    .comment_after_blank = true,
    .secret_lines = true,
};

const struct kt_conf_key *kt_config_table(size_t *n)
{
    *n = KT_LIB_KEYS;
    return kt_lib_keys;
}

void kt_avail_config_defaults(struct kt_avail_cfg *c)
{
    struct kt_config tmp;
    char err[KT_CONF_ERR_MAX];
    memset(&tmp, 0, sizeof tmp);
    /* A default that broke its own key would also fail every
     * kt_config_load with the message (and the table_defaults test): the
     * rows before it are applied either way. */
    bool table_ok = kt_conf_defaults(&kt_lib_keys[KEY_AVAIL_FIRST],
                                     KEY_AVAIL_END - KEY_AVAIL_FIRST, &tmp, err,
                                     sizeof err);
    (void)table_ok;
    *c = tmp.avail;
}

void kt_avail_config_free(struct kt_avail_cfg *c)
{
    free(c->audit_log);
    c->audit_log = NULL;
}

static keytier_err kt_config_defaults(struct kt_config *cfg)
{
    char err[KT_CONF_ERR_MAX];
    memset(cfg, 0, sizeof *cfg);
    if (!kt_conf_defaults(kt_lib_keys, KT_LIB_KEYS, cfg, err, sizeof err))
        return kt_err(KEYTIER_E_CONFIG, "%s", err);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->stream_threads = cpus < 1 ? 1 : cpus > 4 ? 4 : (unsigned)cpus;
    for (size_t i = 0;
         i < sizeof kt_default_workloads / sizeof kt_default_workloads[0]; i++)
        cfg->workloads[cfg->n_workloads++] = kt_default_workloads[i];
    return KEYTIER_OK;
}

/* ---- checks between keys -------------------------------------------- */

bool kt_node_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KEYTIER_NODE_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

/* The host name, when `node` is not set: one node per host by default. */
static keytier_err kt_default_node(struct kt_config *cfg)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !kt_node_name_ok(host))
        return kt_err(KEYTIER_E_CONFIG,
                      "no node configured and the host name '%s' is no node "
                      "name (1 to %d bytes of A-Z a-z 0-9 . _ -): set "
                      "node = NAME",
                      host, KEYTIER_NODE_MAX);
    cfg->node = strdup(host);
    return cfg->node ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
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
        return kt_err(KEYTIER_E_CONFIG,
                      "no store configured and neither XDG_DATA_HOME nor "
                      "HOME is set");
    cfg->store_path = strdup(buf);
    return cfg->store_path ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
}

bool kt_config_store_is_pg(const char *where)
{
    if (!strncmp(where, "postgresql://", 13) ||
        !strncmp(where, "postgres://", 11))
        return true;
    /* libpq's key=value form: a first word "key=", never a path */
    size_t n = strspn(where, "abcdefghijklmnopqrstuvwxyz_");
    return n > 0 && where[n] == '=';
}

/* A PostgreSQL store is shared by nodes that each keep their own audit
 * log, so its path cannot follow the store's.  (A password in the
 * connection string, and store.password_file beside a SQLite file, are
 * refused when the store opens: store_open.c, store_pg.c.) */
static keytier_err kt_config_store_check(const struct kt_config *cfg)
{
    if (kt_config_store_is_pg(cfg->store_path) && cfg->avail.audit_log == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "store is a PostgreSQL database: set avail.audit_log "
                      "= PATH (this node's audit log file)");
    return KEYTIER_OK;
}

bool kt_config_default_path(const char *system_path, char *buf, size_t len)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n = -1;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(buf, len, "%s/keytier/keytier-lib.conf", xdg);
    else if (home != NULL && home[0] != '\0')
        n = snprintf(buf, len, "%s/.config/keytier/keytier-lib.conf", home);
    if (n > 0 && (size_t)n < len && access(buf, F_OK) == 0)
        return true;
    if (system_path == NULL || access(system_path, F_OK) != 0)
        return false;
    n = snprintf(buf, len, "%s", system_path);
    return n > 0 && (size_t)n < len;
}

/* A configuration that names the modules to load and the PINs to use is
 * believed only if nobody but its owner can change it, and, when it holds
 * a PIN itself (pin.LABEL = value:...), read it. */
static keytier_err kt_config_read(const char *path, struct kt_config *cfg,
                                  struct kt_avail_set *set)
{
    unsigned lines[KT_LIB_KEYS] = {0};
    char err[KT_CONF_ERR_MAX];
    int fd =
        kt_file_open_trusted(path, KT_FILE_CONFIG, "config", err, sizeof err);
    if (fd < 0)
        return kt_err(KEYTIER_E_CONFIG, "%s", err);
    struct stat st;
    FILE *f = fstat(fd, &st) == 0 ? fdopen(fd, "r") : NULL;
    if (f == NULL) {
        int e = errno;
        close(fd);
        return kt_err(KEYTIER_E_CONFIG, "config %s: %s", path, strerror(e));
    }
    /* stdio's buffer is ours, so that the PINs it may hold are wiped */
    char iobuf[4096];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    enum kt_conf_rc rc =
        kt_conf_read(&kt_lib_file, cfg, f, path, lines, err, sizeof err);
    fclose(f);
    kt_wipe(iobuf, sizeof iobuf);
    if (rc == KT_CONF_NOMEM)
        return kt_err(KEYTIER_E_NOMEM, "%s", err);
    if (rc != KT_CONF_OK)
        return kt_err(KEYTIER_E_CONFIG, "%s", err);
    *set = (struct kt_avail_set){
        .ttl = lines[KEY_CACHE_TTL] != 0,
        .refresh_ahead = lines[KEY_CACHE_TTL + 1] != 0,
        .retry = lines[KEY_CACHE_TTL + 2] != 0,
        .alert_after = lines[KEY_CACHE_TTL + 3] != 0,
    };
    for (size_t i = 0; i < cfg->n_pins; i++)
        if (cfg->pins[i].kind == KT_PIN_VALUE && (st.st_mode & 044) != 0)
            return kt_err(KEYTIER_E_CONFIG,
                          "config %s holds the PIN of token '%s' "
                          "(pin.%s = value:...) but is readable by %s "
                          "(mode %04o): run chmod go-rwx %s, or give the "
                          "PIN as file:PATH or env:NAME",
                          path, cfg->pins[i].label, cfg->pins[i].label,
                          (st.st_mode & 004) ? "others" : "its group",
                          (unsigned)(st.st_mode & 07777), path);
    return KEYTIER_OK;
}

/* log_target against log_file and log_syslog_socket; settles the default
 * (the file if one is named, else stderr). */
static keytier_err kt_log_target_settle(struct kt_config *cfg)
{
    static const char *const names[] = {"", "stderr", "file", "syslog"};
    enum kt_log_target t = cfg->log_target;
    if (t == KT_LOG_TO_DEFAULT)
        t = cfg->log_file != NULL ? KT_LOG_TO_FILE : KT_LOG_TO_STDERR;
    if (t == KT_LOG_TO_FILE && cfg->log_file == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "log_target = file needs log_file = PATH");
    if (t != KT_LOG_TO_FILE && cfg->log_file != NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "log_file is set but log_target = %s: remove one of "
                      "them",
                      names[t]);
    if (t != KT_LOG_TO_SYSLOG && cfg->log_syslog_socket != NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "log_syslog_socket applies to log_target = syslog "
                      "only (log_target is %s)",
                      names[t]);
    cfg->log_target = t;
    return KEYTIER_OK;
}

keytier_err kt_config_load(const char *path, struct kt_config *cfg)
{
    struct kt_avail_set set = {0};
    keytier_err e = kt_config_defaults(cfg);
    if (e == KEYTIER_OK && path != NULL)
        e = kt_config_read(path, cfg, &set);
    if (e == KEYTIER_OK)
        e = kt_log_target_settle(cfg);
    if (e == KEYTIER_OK)
        e = kt_avail_config_settle(&cfg->avail, &set);
    if (e == KEYTIER_OK && cfg->store_path == NULL)
        e = kt_default_store(cfg);
    if (e == KEYTIER_OK && cfg->node == NULL)
        e = kt_default_node(cfg);
    if (e == KEYTIER_OK)
        e = kt_config_store_check(cfg);
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
    free(cfg->node);
    free(cfg->store_path);
    free(cfg->store_password_file);
    free(cfg->log_file);
    free(cfg->log_syslog_socket);
    kt_avail_config_free(&cfg->avail);
    memset(cfg, 0, sizeof *cfg);
}

unsigned kt_call_deadline_ms(const keytier_ctx *ctx)
{
    return ctx->cfg.avail.call_deadline_ms;
}

unsigned kt_admin_deadline_ms(const keytier_ctx *ctx)
{
    return ctx->cfg.avail.admin_deadline_ms;
}

char *kt_config_audit_log(const struct kt_config *cfg)
{
    if (cfg->avail.audit_log != NULL)
        return strdup(cfg->avail.audit_log);
    size_t n = strlen(cfg->store_path) + sizeof ".audit.jsonl";
    char *path = malloc(n);
    if (path != NULL)
        snprintf(path, n, "%s.audit.jsonl", cfg->store_path);
    return path;
}

KEYTIER_API keytier_err keytier_audit_log_path(keytier_ctx *ctx, char *out,
                                               size_t cap)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || cap == 0)
        return kt_err(KEYTIER_E_ARGS, "keytier_audit_log_path");
    char *path = kt_config_audit_log(&ctx->cfg);
    if (path == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit log path");
    int n = snprintf(out, cap, "%s", path);
    free(path);
    if (n < 0 || (size_t)n >= cap)
        return kt_err(KEYTIER_E_BUFFER, "audit log path");
    return KEYTIER_OK;
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

/* The longest PIN a PIN file may hold. */
#define KT_PIN_FILE_MAX 256

/* Reads the first line of f, without its line end, into buf (cap bytes);
 * returns its length, cap when it does not fit. NUL bytes are kept, so
 * that the caller sees them. */
static size_t kt_pin_line(FILE *f, char *buf, size_t cap)
{
    size_t n = 0;
    int ch;
    while (n < cap && (ch = getc(f)) != EOF && ch != '\n' && ch != '\r')
        buf[n++] = (char)ch;
    return n;
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
    /* File: the first line, without its newline; nobody but its owner may
     * read or change it. */
    char err[KT_FILE_ERR_MAX];
    int fd = kt_file_open_trusted(pin->where, KT_FILE_SECRET, "PIN file", err,
                                  sizeof err);
    if (fd < 0)
        return kt_err(KEYTIER_E_PIN, "PIN of token '%s': %s", pin->label, err);
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        int e = errno;
        close(fd);
        return kt_err(KEYTIER_E_PIN, "PIN of token '%s': cannot read %s: %s",
                      pin->label, pin->where, strerror(e));
    }
    char iobuf[512];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    char buf[KT_PIN_FILE_MAX + 1];
    size_t n = kt_pin_line(f, buf, sizeof buf);
    keytier_err e = KEYTIER_OK;
    if (n == 0)
        e = kt_err(KEYTIER_E_PIN, "PIN of token '%s': %s is empty", pin->label,
                   pin->where);
    else if (n > KT_PIN_FILE_MAX)
        e = kt_err(KEYTIER_E_PIN,
                   "PIN of token '%s': the first line of %s is longer than "
                   "a PIN (%d bytes): put the PIN alone on it",
                   pin->label, pin->where, KT_PIN_FILE_MAX);
    else if (memchr(buf, '\0', n) != NULL)
        e = kt_err(KEYTIER_E_PIN,
                   "PIN of token '%s': the first line of %s holds a NUL "
                   "byte: write the PIN as text",
                   pin->label, pin->where);
    else if ((*out = kt_secret_from(buf, n)) == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    kt_wipe(buf, sizeof buf);
    fclose(f);
    kt_wipe(iobuf, sizeof iobuf);
    return e;
}
