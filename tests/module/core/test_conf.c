/* The configuration: the table-driven reader (common/kt_conf.c) and the
 * module's table of keys (module/core/config.c). Every key's bounds, a
 * repeat of every key, unknown keys, the messages, and the example file. */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt.h"
#include "kt_conf.h"

static char conf_path[64];

static void write_conf(const char *text)
{
    snprintf(conf_path, sizeof(conf_path), "/tmp/kt-conf-XXXXXX");
    int fd = mkstemp(conf_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The module's parser on text: the result, with cfg from the defaults. */
static CK_RV module_parse(const char *text, struct kt_config *cfg)
{
    write_conf(text);
    kt_config_defaults(cfg);
    CK_RV rv = kt_config_parse_file(cfg, conf_path);
    unlink(conf_path);
    return rv;
}

static CK_RV module_parse_kv(const char *key, const char *value,
                             struct kt_config *cfg)
{
    char text[PATH_MAX + 128];
    snprintf(text, sizeof(text), "%s = %s\n", key, value);
    return module_parse(text, cfg);
}

/* The engine on text with the module's table: the message in err. */
static bool engine_parse(const char *text, char *err, size_t err_len)
{
    size_t n = 0;
    const struct kt_conf_key *keys = kt_config_table(&n);
    struct kt_config cfg;
    kt_config_defaults(&cfg);
    write_conf(text);
    bool ok = kt_conf_parse_file(keys, n, &cfg, conf_path, NULL, err, err_len);
    unlink(conf_path);
    return ok;
}

#define ck_assert_has(hay, needle)                                             \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not in '%s'",         \
                  (needle), (hay))

/* Whole-number keys: the lowest and highest value are taken and stored,
 * one below and one above are refused. */
START_TEST(test_number_bounds)
{
    static const struct {
        const char *key;
        unsigned long min, max;
        size_t offset;
    } keys[] = {
        {"slots", 1, 1024, offsetof(struct kt_config, slots)},
        {"pin_min_length", 1, 255, offsetof(struct kt_config, pin_min_length)},
        {"pin_max_length", 1, 255, offsetof(struct kt_config, pin_max_length)},
        {"pin_max_retries", 1, 1000,
         offsetof(struct kt_config, pin_max_retries)},
        {"pin_kdf_cost", 10, 22, offsetof(struct kt_config, pin_kdf_cost)},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        struct kt_config c;
        char v[32];
        unsigned long bounds[2] = {keys[i].min, keys[i].max};
        for (int b = 0; b < 2; b++) {
            /* pin_min_length may not exceed pin_max_length (64 by default):
             * its highest value is tried with pin_max_length at 255. */
            char text[128];
            snprintf(text, sizeof(text), "%s = %lu\n%s", keys[i].key, bounds[b],
                     strcmp(keys[i].key, "pin_min_length") == 0
                         ? "pin_max_length = 255\n"
                         : "");
            if (strcmp(keys[i].key, "pin_max_length") == 0 && b == 0)
                snprintf(text, sizeof(text),
                         "pin_max_length = 1\npin_min_length = 1\n");
            ck_assert_msg(module_parse(text, &c) == CKR_OK, "refused: %s",
                          text);
            unsigned long got = 0;
            const char *field = (const char *)&c + keys[i].offset;
            if (strcmp(keys[i].key, "pin_kdf_cost") == 0)
                got = *(const unsigned *)(const void *)field;
            else
                got = *(const CK_ULONG *)(const void *)field;
            ck_assert_uint_eq(got, bounds[b]);
        }
        snprintf(v, sizeof(v), "%lu", keys[i].min - 1);
        ck_assert_msg(module_parse_kv(keys[i].key, v, &c) == CKR_ARGUMENTS_BAD,
                      "accepted %s = %s", keys[i].key, v);
        snprintf(v, sizeof(v), "%lu", keys[i].max + 1);
        ck_assert_msg(module_parse_kv(keys[i].key, v, &c) == CKR_ARGUMENTS_BAD,
                      "accepted %s = %s", keys[i].key, v);
        const char *bad[] = {"",    "-1",   "+5",  " 5x",
                             "5 5", "0x10", "1e3", "99999999999999999999999"};
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
            ck_assert_msg(module_parse_kv(keys[i].key, bad[j], &c) ==
                              CKR_ARGUMENTS_BAD,
                          "accepted %s = '%s'", keys[i].key, bad[j]);
    }
}
END_TEST

START_TEST(test_pow2_bounds)
{
    struct kt_config c;
    ck_assert_int_eq(module_parse_kv("secure_heap_size", "65536", &c), CKR_OK);
    ck_assert_uint_eq(c.secure_heap_size, 65536);
    ck_assert_int_eq(module_parse_kv("secure_heap_size", "1073741824", &c),
                     CKR_OK);
    ck_assert_uint_eq(c.secure_heap_size, 1ul << 30);
    const char *bad[] = {"32768", "2147483648", "65537", "1048575", "0", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(module_parse_kv("secure_heap_size", bad[i], &c) ==
                          CKR_ARGUMENTS_BAD,
                      "accepted secure_heap_size = '%s'", bad[i]);
    char err[KT_CONF_ERR_MAX];
    ck_assert(!engine_parse("secure_heap_size = 65537\n", err, sizeof(err)));
    ck_assert_has(err, ":1: secure_heap_size: need a power of two from "
                       "65536 to 1073741824, not '65537'");
}
END_TEST

START_TEST(test_word_and_bool_values)
{
    struct kt_config c;
    static const struct {
        const char *word;
        enum kt_log_level level;
    } levels[] = {{"error", KT_LOG_ERROR},
                  {"warning", KT_LOG_WARNING},
                  {"info", KT_LOG_INFO},
                  {"debug", KT_LOG_DEBUG}};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(module_parse_kv("log_level", levels[i].word, &c),
                         CKR_OK);
        ck_assert_int_eq(c.log_level, levels[i].level);
    }
    const char *bad_words[] = {"Error", "warn", "", "debug2"};
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(module_parse_kv("log_level", bad_words[i], &c),
                         CKR_ARGUMENTS_BAD);
    const char *bools[] = {"legacy_mechanisms", "allow_core_dumps"};
    for (size_t i = 0; i < 2; i++) {
        size_t off = i == 0 ? offsetof(struct kt_config, legacy_mechanisms)
                            : offsetof(struct kt_config, allow_core_dumps);
        ck_assert_int_eq(module_parse_kv(bools[i], "yes", &c), CKR_OK);
        ck_assert(*((const bool *)((const char *)&c + off)));
        ck_assert_int_eq(module_parse_kv(bools[i], "no", &c), CKR_OK);
        ck_assert(!*((const bool *)((const char *)&c + off)));
        const char *bad[] = {"YES", "1", "true", "", "no no"};
        for (size_t j = 0; j < 5; j++)
            ck_assert_msg(module_parse_kv(bools[i], bad[j], &c) ==
                              CKR_ARGUMENTS_BAD,
                          "accepted %s = '%s'", bools[i], bad[j]);
    }
    char err[KT_CONF_ERR_MAX];
    ck_assert(!engine_parse("\nlog_level = loud\n", err, sizeof(err)));
    ck_assert_has(err, ":2: log_level: need error, warning, info or debug, "
                       "not 'loud'");
    ck_assert(!engine_parse("allow_core_dumps = maybe\n", err, sizeof(err)));
    ck_assert_has(err, ":1: allow_core_dumps: need yes or no, not 'maybe'");
}
END_TEST

START_TEST(test_path_bounds)
{
    struct kt_config c;
    /* token_dir keeps 64 bytes for a token's file names. */
    static char longest[PATH_MAX + 2];
    static const struct {
        const char *key;
        size_t max;
        size_t offset;
    } keys[] = {
        {"token_dir", PATH_MAX - 65, offsetof(struct kt_config, token_dir)},
        {"log_file", PATH_MAX - 1, offsetof(struct kt_config, log_file)},
    };
    for (size_t i = 0; i < 2; i++) {
        memset(longest, 'a', keys[i].max);
        longest[0] = '/';
        longest[keys[i].max] = '\0';
        ck_assert_int_eq(module_parse_kv(keys[i].key, longest, &c), CKR_OK);
        ck_assert_str_eq((const char *)&c + keys[i].offset, longest);
        longest[keys[i].max] = 'a';
        longest[keys[i].max + 1] = '\0';
        ck_assert_int_eq(module_parse_kv(keys[i].key, longest, &c),
                         CKR_ARGUMENTS_BAD);
        ck_assert_int_eq(module_parse_kv(keys[i].key, "relative/dir", &c),
                         CKR_ARGUMENTS_BAD);
        ck_assert_int_eq(module_parse_kv(keys[i].key, "", &c),
                         CKR_ARGUMENTS_BAD);
    }
    char err[KT_CONF_ERR_MAX];
    ck_assert(!engine_parse("token_dir = rel\n", err, sizeof(err)));
    ck_assert_has(err, ":1: token_dir: need an absolute path (starting with "
                       "/) of at most 4031 bytes, not 'rel'");
}
END_TEST

/* Every key of the table refuses a second line, even with the same value,
 * and the message names both lines. */
START_TEST(test_repeat_every_key)
{
    size_t n = 0;
    const struct kt_conf_key *keys = kt_config_table(&n);
    ck_assert_uint_eq(n, 13);
    for (size_t i = 0; i < n; i++) {
        const char *v = keys[i].dflt != NULL    ? keys[i].dflt
                        : keys[i].words != NULL ? keys[i].words[0].word
                                                : "/tmp/x";
        /* log_syslog_socket goes with log_target = syslog only */
        bool sock = strcmp(keys[i].name, "log_syslog_socket") == 0;
        const char *pre = sock ? "log_target = syslog\n" : "";
        char text[256], want[128], err[KT_CONF_ERR_MAX];
        struct kt_config c;
        snprintf(text, sizeof(text), "%s%s = %s\n", pre, keys[i].name, v);
        ck_assert_msg(module_parse(text, &c) == CKR_OK, "once: %s", text);
        snprintf(text, sizeof(text), "%s%s = %s\n# between\n%s = %s\n", pre,
                 keys[i].name, v, keys[i].name, v);
        ck_assert_msg(module_parse(text, &c) == CKR_ARGUMENTS_BAD, "twice: %s",
                      text);
        ck_assert(!engine_parse(text, err, sizeof(err)));
        snprintf(want, sizeof(want),
                 ":%d: %s: set again (first on line %d): keep one of the two "
                 "lines",
                 3 + sock, keys[i].name, 1 + sock);
        ck_assert_has(err, want);
    }
}
END_TEST

START_TEST(test_unknown_keys_and_lines)
{
    char err[KT_CONF_ERR_MAX];
    struct kt_config c;
    const char *unknown[] = {"what = 1\n", "Slots = 2\n", "slots.x = 2\n",
                             "token-dir = /x\n", "= 3\n"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_msg(module_parse(unknown[i], &c) == CKR_ARGUMENTS_BAD,
                      "accepted: %s", unknown[i]);
    ck_assert(!engine_parse("slots = 2\n\n  what = 1 # x\n", err, sizeof(err)));
    ck_assert_has(err, ":3: unknown key 'what': remove the line or use one "
                       "of token_dir, slots, log_level, log_file, "
                       "pin_min_length, pin_max_length, pin_max_retries, "
                       "pin_kdf_cost, legacy_mechanisms, allow_core_dumps, "
                       "secure_heap_size, log_target, log_syslog_socket");
    ck_assert(!engine_parse("slots 2\n", err, sizeof(err)));
    ck_assert_has(err, ":1: 'slots 2' is not a setting: write 'key = value'");
    /* A line longer than the reader's buffer. */
    static char text[KT_CONF_LINE_MAX + 16];
    memset(text, ' ', sizeof(text) - 2);
    memcpy(text, "slots = 2", 9);
    text[sizeof(text) - 2] = '\n';
    text[sizeof(text) - 1] = '\0';
    ck_assert(!engine_parse(text, err, sizeof(err)));
    ck_assert_has(err, ":1: line longer than 4158 bytes");
    ck_assert_int_eq(module_parse(text, &c), CKR_ARGUMENTS_BAD);
    /* Comments, blank lines and spaces around '=' are not settings. */
    ck_assert_int_eq(module_parse("# only a comment\n\n   \n\tslots\t=\t7  # "
                                  "seven\n",
                                  &c),
                     CKR_OK);
    ck_assert_uint_eq(c.slots, 7);
}
END_TEST

/* Checks between keys name where each value came from. */
START_TEST(test_pin_lengths_cross_check)
{
    struct kt_config c;
    ck_assert_int_eq(module_parse("pin_min_length = 65\n", &c),
                     CKR_ARGUMENTS_BAD);
    ck_assert_int_eq(module_parse("pin_max_length = 3\n", &c),
                     CKR_ARGUMENTS_BAD);
    ck_assert_int_eq(module_parse("pin_max_length = 4\n", &c), CKR_OK);
    ck_assert_int_eq(
        module_parse("pin_min_length = 8\npin_max_length = 8\n", &c), CKR_OK);
}
END_TEST

/* The engine stores into fields of every width it supports, and refuses a
 * value its field cannot hold even inside the table's range. */
START_TEST(test_engine_field_widths)
{
    struct widths {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
    } w;
    static const struct kt_conf_key keys[] = {
        {"u8", KT_CONF_UINT, 0, 300, NULL, "7", offsetof(struct widths, u8),
         sizeof(uint8_t)},
        {"u16", KT_CONF_UINT, 0, 70000, NULL, "8", offsetof(struct widths, u16),
         sizeof(uint16_t)},
        {"u32", KT_CONF_UINT, 0, 5000000000ul, NULL, "9",
         offsetof(struct widths, u32), sizeof(uint32_t)},
        {"u64", KT_CONF_UINT, 0, ULONG_MAX, NULL, "10",
         offsetof(struct widths, u64), sizeof(uint64_t)},
    };
    char err[KT_CONF_ERR_MAX];
    memset(&w, 0xff, sizeof(w));
    ck_assert(kt_conf_defaults(keys, 4, &w, err, sizeof(err)));
    ck_assert_uint_eq(w.u8, 7);
    ck_assert_uint_eq(w.u16, 8);
    ck_assert_uint_eq(w.u32, 9);
    ck_assert_uint_eq(w.u64, 10);
    ck_assert(kt_conf_set(&keys[0], &w, "255", "t", err, sizeof(err)));
    ck_assert_uint_eq(w.u8, 255);
    ck_assert(!kt_conf_set(&keys[0], &w, "256", "t", err, sizeof(err)));
    ck_assert(kt_conf_set(&keys[1], &w, "65535", "t", err, sizeof(err)));
    ck_assert(!kt_conf_set(&keys[1], &w, "65536", "t", err, sizeof(err)));
    ck_assert(kt_conf_set(&keys[2], &w, "4294967295", "t", err, sizeof(err)));
    ck_assert(!kt_conf_set(&keys[2], &w, "4294967296", "t", err, sizeof(err)));
    ck_assert(kt_conf_set(&keys[3], &w, "18446744073709551615", "t", err,
                          sizeof(err)));
    ck_assert_uint_eq(w.u64, UINT64_MAX);
    ck_assert(!kt_conf_set(&keys[3], &w, "18446744073709551616", "t", err,
                           sizeof(err)));
    /* lines[] tells which keys the file set, and where. */
    unsigned lines[4];
    write_conf("\nu16 = 3\n# c\nu64 = 4\n");
    ck_assert(
        kt_conf_parse_file(keys, 4, &w, conf_path, lines, err, sizeof(err)));
    unlink(conf_path);
    ck_assert_uint_eq(lines[0], 0);
    ck_assert_uint_eq(lines[1], 2);
    ck_assert_uint_eq(lines[2], 0);
    ck_assert_uint_eq(lines[3], 4);
    /* A default that breaks its own key is a table error. */
    static const struct kt_conf_key broken = {"b",
                                              KT_CONF_UINT,
                                              1,
                                              5,
                                              NULL,
                                              "6",
                                              offsetof(struct widths, u8),
                                              sizeof(uint8_t)};
    ck_assert(!kt_conf_defaults(&broken, 1, &w, err, sizeof(err)));
    ck_assert_has(err, "config default: b: need a whole number from 1 to 5, "
                       "not '6'");
    ck_assert(!kt_conf_parse_file(keys, 4, &w, "/nonexistent/k.conf", NULL, err,
                                  sizeof(err)));
    ck_assert_has(err, "config /nonexistent/k.conf: cannot open");
}
END_TEST

/* The module's defaults are its table's, and the table's defaults pass
 * their own keys' rules. */
START_TEST(test_defaults)
{
    size_t n = 0;
    const struct kt_conf_key *keys = kt_config_table(&n);
    struct kt_config c;
    char err[KT_CONF_ERR_MAX];
    memset(&c, 0, sizeof(c));
    ck_assert_msg(kt_conf_defaults(keys, n, &c, err, sizeof(err)), "%s", err);
    setenv("XDG_DATA_HOME", "/xdg", 1);
    kt_config_defaults(&c);
    ck_assert_str_eq(c.token_dir, "/xdg/keytier");
    ck_assert_uint_eq(c.slots, 8);
    ck_assert_int_eq(c.log_level, KT_LOG_WARNING);
    ck_assert_str_eq(c.log_file, "");
    ck_assert_uint_eq(c.pin_min_length, 4);
    ck_assert_uint_eq(c.pin_max_length, 64);
    ck_assert_uint_eq(c.pin_max_retries, 10);
    ck_assert_uint_eq(c.pin_kdf_cost, 15);
    ck_assert(!c.legacy_mechanisms);
    ck_assert(!c.allow_core_dumps);
    ck_assert_uint_eq(c.secure_heap_size, 1u << 20);
}
END_TEST

/* log_target: stderr, file (needs log_file, its default with one),
 * syslog (log_syslog_socket, a path that fits a socket address); the
 * combinations that contradict each other are refused, naming the keys. */
START_TEST(test_log_target)
{
    struct kt_config c;
    ck_assert_int_eq(module_parse("log_target = syslog\n"
                                  "log_syslog_socket = /run/l.sock\n",
                                  &c),
                     CKR_OK);
    ck_assert_int_eq(c.log_target, KT_LOG_TO_SYSLOG);
    ck_assert_str_eq(c.log_syslog_socket, "/run/l.sock");
    ck_assert_int_eq(module_parse("log_target = syslog\n", &c), CKR_OK);
    ck_assert_str_eq(c.log_syslog_socket, "");
    ck_assert_int_eq(module_parse("log_target = file\nlog_file = /tmp/l\n", &c),
                     CKR_OK);
    ck_assert_int_eq(module_parse("log_target = stderr\n", &c), CKR_OK);
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"log_target = syslog\nlog_file = /tmp/l\n",
         "log_file is set but log_target = syslog: remove one of them"},
        {"log_target = stderr\nlog_file = /tmp/l\n",
         "log_file is set but log_target = stderr"},
        {"log_target = file\n", "log_target = file needs log_file = PATH"},
        {"log_syslog_socket = /s\n",
         "log_syslog_socket applies to log_target = syslog only (log_target "
         "is stderr)"},
        {"log_file = /tmp/l\nlog_syslog_socket = /s\n",
         "log_syslog_socket applies to log_target = syslog only (log_target "
         "is file)"},
    };
    char log[] = "/tmp/kt-conf-log-XXXXXX";
    int fd = mkstemp(log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kt_log_open(KT_LOG_ERROR, log);
        ck_assert_msg(module_parse(bad[i].text, &c) == CKR_ARGUMENTS_BAD,
                      "accepted: %s", bad[i].text);
        kt_log_open(KT_LOG_ERROR, "/dev/null");
        char got[1024] = "";
        FILE *fp = fopen(log, "r");
        ck_assert_ptr_nonnull(fp);
        size_t n = fread(got, 1, sizeof(got) - 1, fp);
        got[n] = '\0';
        fclose(fp);
        ck_assert_int_eq(truncate(log, 0), 0);
        ck_assert_has(got, bad[i].why);
    }
    unlink(log);
    /* a socket address holds 107 bytes of path and its NUL */
    static char path[200];
    memset(path, 'a', 107);
    path[0] = '/';
    char text[300];
    snprintf(text, sizeof(text),
             "log_target = syslog\nlog_syslog_socket = %s\n", path);
    ck_assert_int_eq(module_parse(text, &c), CKR_OK);
    ck_assert_str_eq(c.log_syslog_socket, path);
    path[107] = 'a';
    snprintf(text, sizeof(text),
             "log_target = syslog\nlog_syslog_socket = %s\n", path);
    ck_assert_int_eq(module_parse(text, &c), CKR_ARGUMENTS_BAD);
    ck_assert_int_eq(module_parse("log_target = journal\n", &c),
                     CKR_ARGUMENTS_BAD);
}
END_TEST

/* hsm-config/keytier.conf.example parses and shows the defaults. */
START_TEST(test_example_file)
{
    const char *root = getenv("KT_SOURCE_ROOT");
    ck_assert_msg(root != NULL, "KT_SOURCE_ROOT not set");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/hsm-config/keytier.conf.example", root);
    struct kt_config c, d;
    kt_config_defaults(&c);
    kt_config_defaults(&d);
    ck_assert_int_eq(kt_config_parse_file(&c, path), CKR_OK);
    ck_assert_str_eq(c.token_dir, "/var/lib/keytier/tokens");
    snprintf(d.token_dir, sizeof(d.token_dir), "%s", c.token_dir);
    ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *su = suite_create("conf");
    TCase *tc = tcase_create("conf");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_number_bounds);
    tcase_add_test(tc, test_pow2_bounds);
    tcase_add_test(tc, test_word_and_bool_values);
    tcase_add_test(tc, test_path_bounds);
    tcase_add_test(tc, test_repeat_every_key);
    tcase_add_test(tc, test_unknown_keys_and_lines);
    tcase_add_test(tc, test_pin_lengths_cross_check);
    tcase_add_test(tc, test_engine_field_widths);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_example_file);
    tcase_add_test(tc, test_log_target);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    kt_log_open(KT_LOG_ERROR, "/dev/null");
    SRunner *sr = srunner_create(conf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
