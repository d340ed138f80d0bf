/* Configuration: the documented example parses, every key's errors name
 * file, line and key, PINs never show in errors, PIN sources, defaults. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt_lib.h"
#include "testenv.h"

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
    struct kt_config cfg;
    ck_assert_int_eq(kt_config_load(ex, &cfg), KEYTIER_OK);
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

START_TEST(errors_name_file_line_key)
{
    char want[400];
    snprintf(want, sizeof want, "%s:2: unknown key 'colour'", path);
    expect_bad("store = /x\ncolour = blue\n", want);
    snprintf(want, sizeof want, "%s:1: expected key = value", path);
    expect_bad("just words\n", want);
    expect_bad("store =\n", "key 'store': empty value");
    expect_bad("store = /a\nstore = /b\n", "key 'store': set twice");
    expect_bad("log_level = loud\n", "key 'log_level'");
    expect_bad("dep_limit = 0\n", "key 'dep_limit': expected 1..100000");
    expect_bad("dep_limit = 12x\n", "key 'dep_limit'");
    expect_bad("dep_limit = -1\n", "key 'dep_limit'");
    expect_bad("allow_oaep_sha1 = maybe\n", "key 'allow_oaep_sha1'");
    expect_bad("envelope_chunk_size = 100\n", "key 'envelope_chunk_size'");
    expect_bad("stream_threads = 0\n", "key 'stream_threads': expected 1..8");
    expect_bad("stream_threads = 9\n", "key 'stream_threads': expected 1..8");
    expect_bad("service_token = VaultA\n", "key 'service_token'");
    expect_bad("workload.X.shape = round\n", "key 'workload.X.shape'");
    expect_bad("workload.X.availability_key = ec\n",
               "key 'workload.X.availability_key'");
    expect_bad("workload.X.colour = red\n", "unknown key 'workload.X.colour'");
    expect_bad("workload.shape = mail\n", "expected workload.NAME.FIELD");
    expect_bad("pin.A = s3cret\n", "key 'pin.A': expected env:NAME");
    expect_bad("pin.A = value:s3cret\npin.A = value:s3cret\n",
               "key 'pin.A': set twice");
    expect_bad("pin.A = value:s3cret\nbogus = 1\n", "unknown key 'bogus'");
    expect_bad("pin.0123456789012345678901234567890123 = value:s3cret\n",
               "1..32 bytes");
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

START_TEST(pin_sources)
{
    char pinfile[400], text[1024];
    snprintf(pinfile, sizeof pinfile, "%s/pin", dir);
    FILE *f = fopen(pinfile, "w");
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
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "cannot read"));
    f = fopen(pinfile, "w");
    fclose(f);
    ck_assert_int_eq(kt_pin_read(kt_config_pin(&cfg, "F"), &pin),
                     KEYTIER_E_PIN);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "is empty"));
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

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, example_parses);
    tcase_add_test(tc, errors_name_file_line_key);
    tcase_add_test(tc, comments_and_defaults);
    tcase_add_test(tc, pin_sources);
    tcase_add_test(tc, ctx_open_errors);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
