/* Configuration: the documented examples parse, every key of the table
 * (config.c) refuses a repeat but the list keys, every number's bounds,
 * unknown keys, errors name file, line and key, PINs never show in errors,
 * PIN sources, defaults. */
#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt_conf.h"
#include "kt_lib.h"
#include "testenv.h"

#define KT_HEX64                                                               \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KT_HEX64_UPPER                                                         \
    "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[] = "/tmp/kt-conf-XXXXXX";
static char path[300];

static void setup(void)
{
    strcpy(dir, "/tmp/kt-conf-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.conf", dir);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_conf(const char *text)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    fputs(text, f);
    fclose(f);
}

static void expect_bad(const char *text, const char *needle)
{
    struct kt_config cfg;
    write_conf(text);
    keytier_err e = kt_config_load(path, &cfg);
    ck_assert_msg(e == KEYTIER_E_CONFIG, "'%s' gave %s", text,
                  keytier_error_name(e));
    ck_assert_msg(strstr(keytier_last_error_detail(), needle) != NULL,
                  "detail '%s' lacks '%s'", keytier_last_error_detail(),
                  needle);
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "s3cret"));
}

START_TEST(example_parses)
{
    char ex[512];
    const char *root = getenv("KT_SOURCE_ROOT");
    ck_assert_ptr_nonnull(root);
    snprintf(ex, sizeof ex, "%s/hsm-config/keytier-lib.conf.example", root);
    /* installed as the operator would: it holds a PIN (value:), so 0600 */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "install -m 600 '%s' '%s'", ex, path);
    ck_assert_int_eq(system(cmd), 0);
    struct kt_config cfg;
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_uint_eq(cfg.n_modules, 2);
    ck_assert_str_eq(cfg.service_token, "pkcs11:token=keytier-service");
    ck_assert_str_eq(cfg.store_path, "/var/lib/keytier/keytier.db");
    ck_assert_uint_eq(cfg.n_pins, 3);
    ck_assert_int_eq(cfg.pins[0].kind, KT_PIN_FILE);
    ck_assert_int_eq(cfg.pins[1].kind, KT_PIN_ENV);
    ck_assert_int_eq(cfg.pins[2].kind, KT_PIN_VALUE);
    ck_assert_int_eq(cfg.log_level, KT_LOG_WARNING);
    ck_assert_uint_eq(cfg.dep_limit, 50);
    ck_assert(!cfg.allow_oaep_sha1);
    ck_assert_uint_eq(cfg.chunk_size, 65536);
    const struct kt_workload_cfg *w = kt_config_workload(&cfg, "Teams");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->shape, KT_SHAPE_MAIL);
    ck_assert_uint_eq(w->dep_limit, 10);
    w = kt_config_workload(&cfg, "SharePoint");
    ck_assert_int_eq(w->shape, KT_SHAPE_FILES);
    ck_assert_int_eq(w->avail, KT_AVAIL_RSA2048);
    ck_assert_ptr_null(kt_config_workload(&cfg, "Nope"));
    kt_config_free(&cfg);
}
END_TEST

/* hsm-config/keytier-cli.conf.example, as the CLI reads it. */
START_TEST(cli_example_parses)
{
    char ex[512];
    const char *root = getenv("KT_SOURCE_ROOT");
    ck_assert_ptr_nonnull(root);
    snprintf(ex, sizeof ex, "%s/hsm-config/keytier-cli.conf.example", root);
    struct kt_config cfg;
    ck_assert_msg(kt_config_load(ex, &cfg) == KEYTIER_OK, "%s",
                  keytier_last_error_detail());
    ck_assert_uint_eq(cfg.n_modules, 3);
    ck_assert_str_eq(cfg.modules[0],
                     KT_REMOTE_PREFIX "unix:path=/run/keytier/vault-a.sock");
    ck_assert_str_eq(cfg.modules[1],
                     KT_REMOTE_PREFIX "unix:path=/run/keytier/vault-b.sock");
    ck_assert_str_eq(cfg.modules[2],
                     "/usr/lib/x86_64-linux-gnu/pkcs11/keytier-pkcs11.so");
    ck_assert_str_eq(cfg.service_token, "pkcs11:token=keytier-service");
    ck_assert_uint_eq(cfg.n_pins, 3);
    ck_assert_int_eq(kt_config_pin(&cfg, "keytier-service")->kind, KT_PIN_ENV);
    ck_assert(cfg.allow_oaep_sha1);
    ck_assert_uint_eq(cfg.avail.call_deadline_ms, 2000);
    ck_assert_uint_eq(cfg.avail.hedge_ms, 150);
    ck_assert_uint_eq(cfg.avail.cache_ttl_ms, 300000);
    ck_assert_str_eq(cfg.avail.audit_log, "/var/log/keytier/audit.jsonl");
    ck_assert_uint_eq(cfg.avail.n_overrides, 0);
    const struct kt_workload_cfg *w = kt_config_workload(&cfg, "Files");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->shape, KT_SHAPE_FILES);
    ck_assert_int_eq(w->avail, KT_AVAIL_AES256);
    kt_config_free(&cfg);
}
END_TEST

/* The name a key of the table is written under ("*" as W) and a value it
 * takes. */
static const char *sample(const struct kt_conf_key *k, char *name, size_t len)
{
    const char *star = strchr(k->name, '*');
    if (star != NULL)
        snprintf(name, len, "%.*sW%s", (int)(star - k->name), k->name,
                 star + 1);
    else
        snprintf(name, len, "%s", k->name);
    switch (k->type) {
    case KT_CONF_UINT:
        return k->dflt != NULL ? k->dflt : "1";
    case KT_CONF_BOOL:
        return "yes";
    case KT_CONF_WORD:
        return k->words[0].word;
    case KT_CONF_STR:
        return "/x";
    default:
        break;
    }
    if (!strcmp(k->name, "module"))
        return "/m.so";
    if (!strcmp(k->name, "remote"))
        return "unix:path=/s";
    if (!strcmp(k->name, "service_token"))
        return "pkcs11:token=S";
    if (!strcmp(k->name, "node"))
        return "node-1";
    if (!strcmp(k->name, "approval.approver"))
        return "alice sha256:" KT_HEX64;
    ck_assert_str_eq(k->name, "pin.*");
    return "value:s3cret";
}

/* Every key refuses a second line (even with the same value, even in a
 * family: workload.W.shape twice), naming both lines and the fix; only
 * module and remote are list keys, whose lines add up in order. */
START_TEST(repeat_every_key)
{
    size_t n = 0;
    const struct kt_conf_key *keys = kt_config_table(&n);
    ck_assert_uint_eq(n, 39);
    for (size_t i = 0; i < n; i++) {
        char name[128], text[512], want[512];
        const char *v = sample(&keys[i], name, sizeof name);
        struct kt_config cfg;
        /* log_syslog_socket goes with log_target = syslog only */
        const char *with = strcmp(name, "log_syslog_socket") == 0
                               ? "log_target = syslog\n"
                               : "";
        snprintf(text, sizeof text, "%s = %s\n%s", name, v, with);
        write_conf(text);
        ck_assert_msg(kt_config_load(path, &cfg) == KEYTIER_OK, "once: %s: %s",
                      text, keytier_last_error_detail());
        kt_config_free(&cfg);
        snprintf(text, sizeof text, "%s = %s\n# between\n%s = %s\n", name, v,
                 name, v);
        bool list = !strcmp(keys[i].name, "module") ||
                    !strcmp(keys[i].name, "remote") ||
                    !strcmp(keys[i].name, "approval.approver");
        ck_assert_int_eq(keys[i].repeat, list ? KT_CONF_LIST : KT_CONF_ONCE);
        if (!strcmp(keys[i].name, "approval.approver")) {
            /* A list of approvers, each pinned once. */
            snprintf(want, sizeof want,
                     "%s:3: approval.approver: approver alice is pinned twice",
                     path);
            expect_bad(text, want);
            continue;
        }
        if (list) {
            write_conf(text);
            ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
            ck_assert_uint_eq(cfg.n_modules, 2);
            kt_config_free(&cfg);
            continue;
        }
        snprintf(want, sizeof want,
                 "%s:3: %s: set again (first on line 1): keep one of the two "
                 "lines",
                 path, name);
        expect_bad(text, want);
    }
}
END_TEST

/* approval.approver pins a name and a key fingerprint: both checked. */
START_TEST(approvers_pinned)
{
    struct kt_config cfg;
    write_conf("approval.approver = alice sha256:" KT_HEX64 "\n"
               "approval.approver = bob  sha256:" KT_HEX64 "\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_uint_eq(cfg.n_approvers, 2);
    ck_assert_str_eq(cfg.approvers[1].name, "bob");
    ck_assert_uint_eq(cfg.approvers[1].fpr[31], 0xef);
    ck_assert(cfg.approval_required);
    ck_assert_uint_eq(cfg.approval_max_ttl, 28800);
    kt_config_free(&cfg);
    char want[512];
    static const char *const bad[] = {
        "approval.approver = alice\n",
        "approval.approver = alice sha1:" KT_HEX64 "\n",
        "approval.approver = alice sha256:" KT_HEX64 "0\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(want, sizeof want,
                 "%s:1: approval.approver: need NAME sha256:HEX (a name of 1 "
                 "to 64 bytes, then the 64 hex digits `keytier approval "
                 "fingerprint` prints)",
                 path);
        expect_bad(bad[i], want);
    }
    snprintf(want, sizeof want,
             "%s:1: approval.approver: the fingerprint has 64 lower-case hex "
             "digits after sha256:",
             path);
    expect_bad("approval.approver = alice sha256:" KT_HEX64_UPPER "\n", want);
}
END_TEST

START_TEST(list_keys_add_up)
{
    struct kt_config cfg;
    write_conf("remote = unix:path=/a\nmodule = /b.so\nremote = unix:path=/c\n"
               "module = /b.so\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_uint_eq(cfg.n_modules, 4);
    ck_assert_str_eq(cfg.modules[0], KT_REMOTE_PREFIX "unix:path=/a");
    ck_assert_str_eq(cfg.modules[1], "/b.so");
    ck_assert_str_eq(cfg.modules[2], KT_REMOTE_PREFIX "unix:path=/c");
    ck_assert_str_eq(cfg.modules[3], "/b.so");
    kt_config_free(&cfg);
    char text[1024] = "";
    for (int i = 0; i < KT_MAX_MODULES; i++)
        strcat(text, i % 2 ? "module = /m.so\n" : "remote = unix:path=/s\n");
    write_conf(text);
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_uint_eq(cfg.n_modules, KT_MAX_MODULES);
    kt_config_free(&cfg);
    strcat(text, "module = /m.so\n");
    char want[400];
    snprintf(want, sizeof want,
             "%s:17: module: more than 16 module and remote lines: remove "
             "some",
             path);
    expect_bad(text, want);
    /* the fields of one workload are keys of their own */
    write_conf("workload.W.shape = files\nworkload.W.dep_limit = 3\n"
               "avail.outage_fallback.W = yes\navail.outage_fallback.V = no\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_int_eq(kt_config_workload(&cfg, "W")->shape, KT_SHAPE_FILES);
    ck_assert_uint_eq(kt_config_workload(&cfg, "W")->dep_limit, 3);
    ck_assert_uint_eq(cfg.avail.n_overrides, 2);
    ck_assert(cfg.avail.overrides[0].outage_fallback);
    ck_assert(!cfg.avail.overrides[1].outage_fallback);
    kt_config_free(&cfg);
}
END_TEST

/* Each whole-number key takes its lowest and highest value and refuses one
 * below and one above. */
START_TEST(number_bounds)
{
    size_t n = 0;
    const struct kt_conf_key *keys = kt_config_table(&n);
    size_t tried = 0;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].type != KT_CONF_UINT)
            continue;
        tried++;
        char name[128], text[512], want[512];
        (void)sample(&keys[i], name, sizeof name);
        unsigned long bound[2] = {keys[i].min, keys[i].max};
        for (int b = 0; b < 2; b++) {
            struct kt_config cfg;
            /* A bound of a key that the cache's rules tie to others is
             * read with the cache off (those rules: cache_rules). */
            bool tied = !strcmp(name, "avail.call_deadline_ms") ||
                        !strcmp(name, "avail.cache_refresh_ahead_ms") ||
                        !strcmp(name, "avail.cache_alert_after_ms");
            snprintf(text, sizeof text, "%s = %lu\n%s", name, bound[b],
                     tied ? "avail.cache_ttl_ms = 0\n" : "");
            write_conf(text);
            ck_assert_msg(kt_config_load(path, &cfg) == KEYTIER_OK, "%s: %s",
                          text, keytier_last_error_detail());
            const char *base = (const char *)&cfg;
            if (keys[i].record != NULL)
                base = (const char *)kt_config_workload(&cfg, "W");
            uint64_t got = 0;
            if (keys[i].size == sizeof(uint64_t))
                memcpy(&got, base + keys[i].offset, sizeof got);
            else {
                ck_assert_uint_eq(keys[i].size, sizeof(uint32_t));
                uint32_t u;
                memcpy(&u, base + keys[i].offset, sizeof u);
                got = u;
            }
            ck_assert_uint_eq(got, bound[b]);
            kt_config_free(&cfg);
        }
        unsigned long out[2] = {keys[i].min - 1, keys[i].max + 1};
        for (int b = keys[i].min == 0 ? 1 : 0; b < 2; b++) {
            snprintf(text, sizeof text, "%s = %lu\n", name, out[b]);
            snprintf(want, sizeof want,
                     "%s:1: %s: need a whole number from %lu to %lu, not "
                     "'%lu'",
                     path, name, keys[i].min, keys[i].max, out[b]);
            expect_bad(text, want);
        }
    }
    ck_assert_uint_eq(tried, 21);
}
END_TEST

/* The rules between the cache keys (config/avail_rules.c): each refusal
 * names the keys, their values and the rule; the refresh keys the file
 * leaves unset follow its TTL. */
static void expect_cache(const char *text, uint64_t ttl, uint64_t ahead,
                         uint64_t retry, uint64_t alert)
{
    struct kt_config cfg;
    write_conf(text);
    ck_assert_msg(kt_config_load(path, &cfg) == KEYTIER_OK, "%s: %s", text,
                  keytier_last_error_detail());
    ck_assert_uint_eq(cfg.avail.cache_ttl_ms, ttl);
    ck_assert_uint_eq(cfg.avail.cache_refresh_ahead_ms, ahead);
    ck_assert_uint_eq(cfg.avail.cache_retry_ms, retry);
    ck_assert_uint_eq(cfg.avail.cache_alert_after_ms, alert);
    kt_config_free(&cfg);
}

START_TEST(cache_rules)
{
    /* the refresh storm: refresh_ahead = ttl, refreshed without pause */
    expect_bad("avail.cache_ttl_ms = 60000\n"
               "avail.cache_refresh_ahead_ms = 60000\n",
               "avail.cache_refresh_ahead_ms (60000) must be at most half "
               "of avail.cache_ttl_ms (60000)");
    /* just above half: more unwraps than no refresh */
    expect_bad("avail.cache_ttl_ms = 60000\n"
               "avail.cache_refresh_ahead_ms = 30001\n",
               "set it to at most 30000, or to 0 for no refresh");
    /* the default refresh_ahead with a short TTL */
    expect_bad("avail.cache_ttl_ms = 100000\n"
               "avail.cache_refresh_ahead_ms = 60000\n",
               "avail.cache_refresh_ahead_ms (60000) must be at most half");
    expect_bad("avail.cache_refresh_ahead_ms = 200000\n",
               "avail.cache_refresh_ahead_ms (200000) must be at most half "
               "of avail.cache_ttl_ms (300000, default)");
    /* an entry refreshed more than once a second */
    expect_bad("avail.cache_ttl_ms = 1800\n"
               "avail.cache_refresh_ahead_ms = 900\n",
               "avail.cache_ttl_ms (1800) minus "
               "avail.cache_refresh_ahead_ms (900) must be at least 1000 ms");
    /* the alert can never fire before expiry */
    expect_bad("avail.cache_refresh_ahead_ms = 60000\n"
               "avail.cache_alert_after_ms = 60000\n",
               "avail.cache_alert_after_ms (60000) must be less than "
               "avail.cache_refresh_ahead_ms (60000)");
    expect_bad("avail.cache_alert_after_ms = 90000\n",
               "avail.cache_alert_after_ms (90000) must be less than "
               "avail.cache_refresh_ahead_ms (60000, ttl/5 by default)");
    /* the alert may be held by an attempt until past expiry:
     * 60000 - 58000 <= min(150, 2000) + 2000 */
    expect_bad("avail.cache_alert_after_ms = 58000\n",
               "avail.cache_refresh_ahead_ms (60000, ttl/5 by default) minus "
               "avail.cache_alert_after_ms (58000) must exceed one refresh "
               "attempt, min(avail.hedge_ms, avail.call_deadline_ms) + "
               "avail.call_deadline_ms (2150 ms)");
    expect_bad("avail.call_deadline_ms = 20000\navail.hedge_ms = 20000\n",
               "must exceed one refresh attempt, min(avail.hedge_ms, "
               "avail.call_deadline_ms) + avail.call_deadline_ms (40000 ms)");
    /* a TTL alone whose derived refresh keys break that rule: named as
     * derived */
    expect_bad("avail.cache_ttl_ms = 10000\n",
               "avail.cache_refresh_ahead_ms (2000, ttl/5 by default) minus "
               "avail.cache_alert_after_ms (1000, refresh_ahead/2 by "
               "default)");
    /* a failing refresh is never retried in a loop */
    expect_bad("avail.cache_retry_ms = 99\n",
               "avail.cache_retry_ms: need a whole number from 100");

    /* defaults, and defaults that follow the TTL */
    expect_cache("", 300000, 60000, 5000, 30000);
    expect_cache("avail.cache_ttl_ms = 60000\n", 60000, 12000, 3000, 6000);
    expect_cache("avail.cache_ttl_ms = 600000\n", 600000, 120000, 5000, 60000);
    expect_cache("avail.cache_ttl_ms = 60000\n"
                 "avail.cache_refresh_ahead_ms = 30000\n",
                 60000, 30000, 5000, 15000);
    expect_cache("avail.cache_ttl_ms = 60000\navail.cache_retry_ms = 200\n"
                 "avail.cache_alert_after_ms = 1000\n",
                 60000, 12000, 200, 1000);
    /* no refresh, or no cache: nothing to storm */
    expect_cache("avail.cache_ttl_ms = 60000\n"
                 "avail.cache_refresh_ahead_ms = 0\n",
                 60000, 0, 5000, 0);
    expect_cache("avail.cache_ttl_ms = 0\n"
                 "avail.cache_refresh_ahead_ms = 60000\n",
                 0, 60000, 5000, 30000);
}
END_TEST

START_TEST(unknown_keys)
{
    char want[1024];
    snprintf(want, sizeof want,
             "%s:1: unknown key 'bogus': remove the line or use one of "
             "module, remote, service_token, store, log_file, log_level, "
             "dep_limit, allow_oaep_sha1, envelope_chunk_size, "
             "stream_threads, pin.*, workload.*, avail.*",
             path);
    expect_bad("bogus = 1\n", want);
    expect_bad("avail.nonsense = 1\n",
               "unknown key 'avail.nonsense': remove the line or use one of "
               "avail.call_deadline_ms, avail.admin_deadline_ms, "
               "avail.hedge_ms, avail.workers, avail.per_token, "
               "avail.cache_ttl_ms, avail.cache_refresh_ahead_ms, "
               "avail.cache_retry_ms, avail.cache_alert_after_ms, "
               "avail.cache_max_entries, avail.cache_tier_levels, "
               "avail.cache_sync_ms, avail.stats_publish_ms, "
               "avail.audit_log, avail.outage_fallback.*");
    expect_bad("Store = /x\n", "unknown key 'Store'");
    expect_bad("pin. = value:s3cret\n", "unknown key 'pin.'");
    expect_bad("workload..shape = mail\n", "unknown key 'workload..shape'");
    expect_bad("avail.outage_fallback. = yes\n",
               "unknown key 'avail.outage_fallback.'");
    expect_bad("modules = /m.so\n", "unknown key 'modules'");
}
END_TEST

/* The table's defaults pass their own keys and are what a context without
 * a file gets; the avail.* defaults come from the same rows. */
START_TEST(table_defaults)
{
    size_t n = 0;
    const struct kt_conf_key *keys = kt_config_table(&n);
    struct kt_config cfg;
    char err[KT_CONF_ERR_MAX];
    memset(&cfg, 0, sizeof cfg);
    ck_assert_msg(kt_conf_defaults(keys, n, &cfg, err, sizeof err), "%s", err);
    kt_config_free(&cfg);
    for (size_t i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(keys[i].name);
        if (strchr(keys[i].name, '*') != NULL)
            ck_assert_ptr_nonnull(keys[i].record);
    }
    setenv("HOME", "/home/u", 1);
    ck_assert_int_eq(kt_config_load(NULL, &cfg), KEYTIER_OK);
    unsetenv("HOME");
    ck_assert_int_eq(cfg.log_level, KT_LOG_WARNING);
    ck_assert_ptr_null(cfg.log_file);
    ck_assert_ptr_null(cfg.service_token);
    ck_assert_uint_eq(cfg.dep_limit, 50);
    ck_assert(!cfg.allow_oaep_sha1);
    ck_assert_uint_eq(cfg.chunk_size, 65536);
    ck_assert_uint_ge(cfg.stream_threads, 1);
    ck_assert_uint_le(cfg.stream_threads, 4);
    ck_assert_uint_eq(cfg.n_workloads, 3);
    ck_assert_int_eq(kt_config_workload(&cfg, "SharePoint")->avail,
                     KT_AVAIL_RSA2048);
    const struct kt_avail_cfg *a = &cfg.avail;
    ck_assert_uint_eq(a->call_deadline_ms, 2000);
    ck_assert_uint_eq(a->admin_deadline_ms, 30000);
    ck_assert_uint_eq(a->hedge_ms, 150);
    ck_assert_uint_eq(a->workers, 32);
    ck_assert_uint_eq(a->per_token, 4);
    ck_assert_uint_eq(a->cache_ttl_ms, 300000);
    ck_assert_uint_eq(a->cache_refresh_ahead_ms, 60000);
    ck_assert_uint_eq(a->cache_retry_ms, 5000);
    ck_assert_uint_eq(a->cache_alert_after_ms, 30000);
    ck_assert_uint_eq(a->cache_max_entries, 10000);
    ck_assert_uint_eq(a->cache_tier_levels, 1);
    ck_assert_uint_eq(a->cache_sync_ms, 200);
    ck_assert_uint_eq(a->stats_publish_ms, 10000);
    ck_assert_ptr_null(a->audit_log);
    struct kt_avail_cfg alone;
    kt_avail_config_defaults(&alone);
    ck_assert_int_eq(memcmp(&alone, a, sizeof alone), 0);
    kt_config_free(&cfg);
}
END_TEST

START_TEST(errors_name_file_line_key)
{
    char want[400];
    snprintf(want, sizeof want, "%s:2: unknown key 'colour'", path);
    expect_bad("store = /x\ncolour = blue\n", want);
    snprintf(want, sizeof want, "%s:1: not a setting: write 'key = value'",
             path);
    expect_bad("just words\n", want);
    expect_bad("store =\n", ":1: store: empty value: write one after '=' or "
                            "remove the line");
    snprintf(want, sizeof want,
             "%s:2: store: set again (first on line 1): keep one of the two "
             "lines",
             path);
    expect_bad("store = /a\nstore = /b\n", want);
    expect_bad("log_level = loud\n",
               ":1: log_level: need error, warning, info or debug, not "
               "'loud'");
    expect_bad("dep_limit = 0\n",
               "dep_limit: need a whole number from 1 to 100000, not '0'");
    expect_bad("dep_limit = 12x\n", "dep_limit: need a whole number");
    expect_bad("dep_limit = -1\n", "dep_limit: need a whole number");
    expect_bad("allow_oaep_sha1 = maybe\n",
               "allow_oaep_sha1: need yes or no, not 'maybe'");
    expect_bad("allow_oaep_sha1 = true\n",
               "allow_oaep_sha1: need yes or no, not 'true'");
    expect_bad("envelope_chunk_size = 100\n",
               "envelope_chunk_size: need a whole number from 256 to "
               "16777216, not '100'");
    expect_bad("stream_threads = 0\n",
               "stream_threads: need a whole number from 1 to 8, not '0'");
    expect_bad("stream_threads = 9\n",
               "stream_threads: need a whole number from 1 to 8, not '9'");
    expect_bad("service_token = VaultA\n",
               "service_token: need a pkcs11: URI naming a token");
    expect_bad("remote = tcp:vault:1234\n", "remote: need unix:path=SOCKET");
    expect_bad("workload.X.shape = round\n",
               "workload.X.shape: need mail or files, not 'round'");
    expect_bad("workload.X.availability_key = ec\n",
               "workload.X.availability_key: need aes256 or rsa2048, not "
               "'ec'");
    expect_bad("workload.X.colour = red\n",
               "unknown key 'workload.X.colour': remove the line or use one "
               "of workload.*.shape, workload.*.availability_key, "
               "workload.*.dep_limit");
    expect_bad("workload.shape = mail\n", "unknown key 'workload.shape'");
    expect_bad("pin.A = s3cret\n",
               "pin.A: need env:NAME, file:PATH or value:PIN");
    snprintf(want, sizeof want,
             "%s:3: pin.A: set again (first on line 1): keep one of the two "
             "lines",
             path);
    expect_bad("pin.A = value:s3cret\npin.B = env:X\npin.A = value:s3cret\n",
               want);
    expect_bad("pin.A = value:s3cret\nbogus = 1\n", "unknown key 'bogus'");
    expect_bad("pin.0123456789012345678901234567890123 = value:s3cret\n",
               "a token label has 1 to 32 bytes");
    /* a line that is not a setting may hold a PIN: it is not quoted */
    expect_bad("pin.A value:s3cret\n", ":1: not a setting");
    struct kt_config cfg;
    snprintf(want, sizeof want, "%s/missing.conf", dir);
    ck_assert_int_eq(kt_config_load(want, &cfg), KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "cannot open"));
}
END_TEST

START_TEST(comments_and_defaults)
{
    struct kt_config cfg;
    write_conf("# comment\n\n  store = /p#q   # trailing comment\n"
               "pin.My Token = value:a#b\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_str_eq(cfg.store_path, "/p#q");
    ck_assert_str_eq(cfg.pins[0].label, "My Token");
    kt_secret *pin;
    ck_assert_int_eq(kt_pin_read(&cfg.pins[0], &pin), KEYTIER_OK);
    ck_assert_uint_eq(kt_secret_len(pin), 3);
    ck_assert_mem_eq(kt_secret_cdata(pin), "a#b", 3);
    kt_secret_free(pin);
    kt_config_free(&cfg);

    setenv("XDG_DATA_HOME", "/xdg", 1);
    ck_assert_int_eq(kt_config_load(NULL, &cfg), KEYTIER_OK);
    ck_assert_str_eq(cfg.store_path, "/xdg/keytier/keytier.db");
    ck_assert_uint_eq(cfg.n_modules, 0);
    ck_assert_uint_eq(cfg.dep_limit, 50);
    kt_config_free(&cfg);
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", "/home/u", 1);
    ck_assert_int_eq(kt_config_load(NULL, &cfg), KEYTIER_OK);
    ck_assert_str_eq(cfg.store_path, "/home/u/.local/share/keytier/keytier.db");
    kt_config_free(&cfg);
    unsetenv("HOME");
    ck_assert_int_eq(kt_config_load(NULL, &cfg), KEYTIER_E_CONFIG);
}
END_TEST

/* Writes n bytes to path, readable by its owner only (a PIN file). */
static void write_secret(const char *file, const void *p, size_t n)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

START_TEST(pin_sources)
{
    char pinfile[400], text[1024];
    snprintf(pinfile, sizeof pinfile, "%s/pin", dir);
    FILE *f = fopen(pinfile, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    fputs("4321\n", f);
    fclose(f);
    snprintf(text, sizeof text,
             "pin.F = file:%s\npin.E = env:KT_CONF_TEST_PIN\n"
             "pin.M = file:%s/none\n",
             pinfile, dir);
    write_conf(text);
    struct kt_config cfg;
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    kt_secret *pin;
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "F"), &pin), KEYTIER_OK);
    ck_assert_mem_eq(kt_secret_cdata(pin), "4321", 4);
    ck_assert_uint_eq(kt_secret_len(pin), 4);
    kt_secret_free(pin);
    unsetenv("KT_CONF_TEST_PIN");
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "E"), &pin),
                     KEYTIER_E_PIN);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "KT_CONF_TEST_PIN is not set"));
    setenv("KT_CONF_TEST_PIN", "8765", 1);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "E"), &pin), KEYTIER_OK);
    ck_assert_mem_eq(kt_secret_cdata(pin), "8765", 4);
    kt_secret_free(pin);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "M"), &pin),
                     KEYTIER_E_PIN);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "cannot open"));
    f = fopen(pinfile, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    fclose(f);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "F"), &pin),
                     KEYTIER_E_PIN);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "is empty"));
    /* A NUL would cut the PIN short, a line past 256 bytes would be cut:
     * both refused, not read as another PIN than the file holds. */
    static const char nul[] = "12\0"
                              "34\n";
    write_secret(pinfile, nul, sizeof nul - 1);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "F"), &pin),
                     KEYTIER_E_PIN);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "NUL byte"));
    char longpin[258];
    memset(longpin, '7', sizeof longpin);
    write_secret(pinfile, longpin, 257);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "F"), &pin),
                     KEYTIER_E_PIN);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "longer than"));
    longpin[256] = '\r';
    write_secret(pinfile, longpin, 258);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "F"), &pin), KEYTIER_OK);
    ck_assert_uint_eq(kt_secret_len(pin), 256);
    kt_secret_free(pin);
    kt_config_free(&cfg);
}
END_TEST

START_TEST(ctx_open_errors)
{
    keytier_ctx *ctx = NULL;
    char text[512];
    snprintf(text, sizeof text,
             "module = %s/no-such-module.so\nstore = %s/db\n", dir, dir);
    write_conf(text);
    ck_assert_int_eq(keytier_ctx_open(path, &ctx), KEYTIER_E_MODULE);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "no-such-module.so"));
    ck_assert_ptr_null(ctx);
    write_conf("store = /proc/forbidden/x/keytier.db\n");
    ck_assert_int_eq(keytier_ctx_open(path, &ctx), KEYTIER_E_STORE);
    ck_assert_int_eq(keytier_ctx_open(path, NULL), KEYTIER_E_ARGS);
    snprintf(text, sizeof text, "store = %s/db\nlog_file = %s/no/dir/log\n",
             dir, dir);
    write_conf(text);
    ck_assert_int_eq(keytier_ctx_open(path, &ctx), KEYTIER_E_CONFIG);
    /* $KEYTIER_LIB_CONF names the file when no path is given. */
    snprintf(text, sizeof text, "store = %s/db\n", dir);
    write_conf(text);
    setenv("KEYTIER_LIB_CONF", path, 1);
    ck_assert_int_eq(keytier_ctx_open(NULL, &ctx), KEYTIER_OK);
    keytier_ctx_close(ctx);
    snprintf(text, sizeof text, "%s/db", dir);
    ck_assert_int_eq(access(text, F_OK), 0);
    unsetenv("KEYTIER_LIB_CONF");
    keytier_ctx_close(NULL);
}
END_TEST

/* log_target: stderr, file (needs log_file), syslog (log_syslog_socket
 * only with it); a file named without log_target is the file. */
START_TEST(log_targets)
{
    struct kt_config cfg;
    write_conf("log_file = /tmp/l\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_int_eq(cfg.log_target, KT_LOG_TO_FILE);
    kt_config_free(&cfg);
    write_conf("# nothing\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_int_eq(cfg.log_target, KT_LOG_TO_STDERR);
    kt_config_free(&cfg);
    write_conf("log_target = syslog\nlog_syslog_socket = /run/l.sock\n");
    ck_assert_int_eq(kt_config_load(path, &cfg), KEYTIER_OK);
    ck_assert_int_eq(cfg.log_target, KT_LOG_TO_SYSLOG);
    ck_assert_str_eq(cfg.log_syslog_socket, "/run/l.sock");
    kt_config_free(&cfg);
    expect_bad("log_target = file\n", "log_target = file needs log_file");
    expect_bad("log_target = syslog\nlog_file = /tmp/l\n",
               "log_file is set but log_target = syslog");
    expect_bad("log_syslog_socket = /s\n",
               "log_syslog_socket applies to log_target = syslog only");
    expect_bad("log_target = journal\n", "log_target");
}
END_TEST

/* With no file named: the per-user file (XDG_CONFIG_HOME, else
 * ~/.config) before the system-wide one, each only if it exists. */
START_TEST(default_paths)
{
    char buf[400], sys[320], user[320], cmd[800];
    snprintf(sys, sizeof sys, "%s/etc-keytier-lib.conf", dir);
    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", dir, 1);
    ck_assert(!kt_config_default_path(sys, buf, sizeof buf));
    ck_assert(!kt_config_default_path(NULL, buf, sizeof buf));
    write_conf("# system\n");
    ck_assert_int_eq(rename(path, sys), 0);
    ck_assert(kt_config_default_path(sys, buf, sizeof buf));
    ck_assert_str_eq(buf, sys);
    snprintf(user, sizeof user, "%s/.config/keytier/keytier-lib.conf", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/.config/keytier && touch %s", dir,
             user);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(kt_config_default_path(sys, buf, sizeof buf));
    ck_assert_str_eq(buf, user);
    /* XDG_CONFIG_HOME replaces ~/.config: there is no file under it. */
    setenv("XDG_CONFIG_HOME", sys, 1);
    ck_assert(kt_config_default_path(sys, buf, sizeof buf));
    ck_assert_str_eq(buf, sys);
    snprintf(cmd, sizeof cmd, "%s/.config", dir);
    setenv("XDG_CONFIG_HOME", cmd, 1);
    ck_assert(kt_config_default_path(sys, buf, sizeof buf));
    ck_assert_str_eq(buf, user);
    /* A path that does not fit is no path. */
    ck_assert(!kt_config_default_path(sys, buf, 10));
    /* keytier_ctx_open(NULL) reads the per-user file. */
    char text[512];
    snprintf(text, sizeof text, "store = %s/user.db\n", dir);
    FILE *f = fopen(user, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    unsetenv("KEYTIER_LIB_CONF");
    keytier_ctx *ctx = NULL;
    ck_assert_int_eq(keytier_ctx_open(NULL, &ctx), KEYTIER_OK);
    keytier_ctx_close(ctx);
    snprintf(text, sizeof text, "%s/user.db", dir);
    ck_assert_int_eq(access(text, F_OK), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, example_parses);
    tcase_add_test(tc, default_paths);
    tcase_add_test(tc, log_targets);
    tcase_add_test(tc, approvers_pinned);
    tcase_add_test(tc, cli_example_parses);
    tcase_add_test(tc, repeat_every_key);
    tcase_add_test(tc, list_keys_add_up);
    tcase_add_test(tc, number_bounds);
    tcase_add_test(tc, unknown_keys);
    tcase_add_test(tc, table_defaults);
    tcase_add_test(tc, errors_name_file_line_key);
    tcase_add_test(tc, comments_and_defaults);
    tcase_add_test(tc, pin_sources);
    tcase_add_test(tc, ctx_open_errors);
    tcase_add_test(tc, cache_rules);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
