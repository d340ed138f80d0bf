/*
 * Crash trials (tests/crash/crash.h): `test-crash token` and `test-crash
 * lib` set up real stores, then run the trials (KT_CRASH_TRIALS, default
 * 100; KT_CRASH_SEED to repeat a run).  The same binary is the driver and
 * the checker (`test-crash drive-AREA DIR SEED`, `test-crash check-AREA
 * DIR`), so each runs in a fresh process.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crash.h"
#include "crash_area.h"
#include "testenv.h"

static struct testenv T;
static const char *area;

static void setup(void)
{
    testenv_setup(&T);
}

static void teardown(void)
{
    testenv_teardown(&T);
}

/* The trials, then the controls: each fabricated acknowledgement (of a
 * write that never happened) must make the check fail. */
static void run_trials(unsigned startup_ms, unsigned span_ms,
                       const char *const *controls)
{
    struct crash_area a = {area, T.dir, startup_ms, span_ms};
    unsigned failed = crash_run(&a, crash_trials(100), crash_seed());
    ck_assert_msg(failed == 0, "crash %s: trial %u failed", area, failed);
    for (size_t i = 0; controls[i] != NULL; i++)
        ck_assert_msg(crash_control(&a, controls[i]),
                      "crash %s: the check passed with \"%s\"", area,
                      controls[i]);
}

/* The module's token "Crash" (user PIN 1234, PIN number 0). */
START_TEST(token_trials)
{
    static const char *const controls[] = {
        "create 9999999", /* an object that was never made */
        "pin 999999",     /* a PIN never set */
        NULL,
    };
    testenv_keytier_token(&T, "Crash");
    run_trials(60, 500, controls);
}
END_TEST

/* The migration tenant: two DEPs and CRASH_MIG_KEYS mailboxes under the
 * first, every 30th with data. */
static void lib_migration_tenant(keytier_ctx *ctx, FILE *acks)
{
    keytier_dep_info m1, m2;
    keytier_key *dk = NULL;
    keytier_request user = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE, NULL,
                            NULL};
    ck_assert_int_eq(keytier_dep_create(ctx, CRASH_MIG_TENANT, "Exchange",
                                        testenv_uri("KtA", "A1"),
                                        testenv_uri("KtB", "B1"), &m1),
                     KEYTIER_OK);
    ck_assert_int_eq(keytier_dep_create(ctx, CRASH_MIG_TENANT, "Exchange",
                                        testenv_uri("KtA", "A2"),
                                        testenv_uri("KtB", "B2"), &m2),
                     KEYTIER_OK);
    fprintf(acks, "ok migset %s %s\n", m1.dep_id, m2.dep_id);
    ck_assert_int_eq(
        keytier_dep_key_open(ctx, &user, CRASH_MIG_TENANT, m1.dep_id, &dk),
        KEYTIER_OK);
    for (int i = 0; i < CRASH_MIG_KEYS; i++) {
        char name[24];
        snprintf(name, sizeof name, "mig-%03d", i);
        ck_assert_int_eq(keytier_key_create(dk, name, NULL), KEYTIER_OK);
    }
    keytier_key_close(dk);
}

/* Service token and both vaults on keytier's module; three roots a
 * vault to roll between. */
START_TEST(lib_trials)
{
    char path[600];
    testenv_keytier_token(&T, "KtA");
    testenv_keytier_token(&T, "KtB");
    testenv_keytier_token(&T, "KtService");
    T.service = "KtService";
    for (int i = 1; i <= 3; i++) {
        char a[4] = {'A', (char)('0' + i), 0}, b[4] = {'B', (char)('0' + i)};
        testenv_root_aes(&T, "KtA", a, 0);
        testenv_root_aes(&T, "KtB", b, 0);
    }
    testenv_write_conf_mods(&T, MOD_KEYTIER, "avail.admin_deadline_ms = 2000");
    snprintf(path, sizeof path, "%s/env", T.dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/acks", T.dir);
    FILE *acks = fopen(path, "w");
    ck_assert_ptr_nonnull(acks);
    keytier_ctx *ctx = testenv_ctx(&T);
    lib_migration_tenant(ctx, acks);
    keytier_ctx_close(ctx);
    ck_assert_int_eq(fclose(acks), 0);
    ck_assert_int_eq(crash_lib_seal_migration_data(T.dir), 0);
    static const char *const controls[] = {
        "dep org-0 00000000-0000-4000-8000-000000000000",
        "tier org-0 m9999999 00000000-0000-4000-8000-000000000000",
        NULL,
    };
    run_trials(150, 1200, controls);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "drive-token") == 0)
        return crash_token_drive(argv[2], strtoull(argv[3], NULL, 0));
    if (argc == 3 && strcmp(argv[1], "check-token") == 0)
        return crash_token_check(argv[2]);
    if (argc == 4 && strcmp(argv[1], "drive-lib") == 0)
        return crash_lib_drive(argv[2], strtoull(argv[3], NULL, 0));
    if (argc == 3 && strcmp(argv[1], "check-lib") == 0)
        return crash_lib_check(argv[2]);
    if (argc != 2 || (strcmp(argv[1], "token") && strcmp(argv[1], "lib"))) {
        fprintf(stderr, "usage: test-crash token|lib\n");
        return 2;
    }
    area = argv[1];
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create(area);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, strcmp(area, "token") ? lib_trials : token_trials);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
