/* lib/lifecycle/secrets.c: keysets with automatic rollover and retirement, on a
 * SoftHSM2 root and on a root in keytier's module.  The library's clock
 * (kt_lc_clock) is moved by the test: ages are data, not waiting. */
#include <stdlib.h>

#include "kt_lib.h"
#include "lctest.h"

static struct testenv T;
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

static void setup(void)
{
    testenv_setup(&T);
    fake_now = 1700000000;
    kt_lc_clock = fake_clock;
}

static void teardown(void)
{
    testenv_teardown(&T);
}

struct sealed {
    uint8_t *env;
    size_t len;
    char msg[32];
};

static void protect(keytier_ctx *ctx, struct sealed *s, const char *msg)
{
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    assert_ok(keytier_secret_protect(ctx, "connected-accounts", "acct", 4, msg,
                                     strlen(msg), &s->env, &s->len));
}

static keytier_err unprotect(keytier_ctx *ctx, const struct sealed *s)
{
    uint8_t *out = NULL;
    size_t n = 0;
    keytier_err e = keytier_secret_unprotect(ctx, "connected-accounts", "acct",
                                             4, s->env, s->len, &out, &n);
    if (e == KEYTIER_OK) {
        ck_assert_uint_eq(n, strlen(s->msg));
        ck_assert_mem_eq(out, s->msg, n);
        keytier_secret_free(out, n);
    }
    return e;
}

static void rollover_case(const char *root_uri)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    struct sealed s[5];
    keytier_keyset_info info;
    /* Roll over after 100 s, retire archived keys 1000 s after. */
    assert_ok(
        keytier_keyset_create(ctx, "connected-accounts", root_uri, 100, 1000));
    assert_err(
        keytier_keyset_create(ctx, "connected-accounts", root_uri, 100, 1000),
        KEYTIER_E_EXISTS);
    protect(ctx, &s[0], "password-0");
    for (int i = 1; i <= 3; i++) {
        fake_now += 100; /* the current key is now old enough */
        protect(ctx, &s[i],
                i == 1   ? "password-1"
                : i == 2 ? "password-2"
                         : "password-3");
    }
    assert_ok(keytier_keyset_get(ctx, "connected-accounts", &info));
    ck_assert_uint_eq(info.current_version, 4);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset rollover\""), 3);
    /* Protected three rollovers ago: still opens, as do the others. */
    for (int i = 0; i <= 3; i++)
        assert_ok(unprotect(ctx, &s[i]));
    /* Tampering, other context, other keyset, garbage. */
    s[0].env[s[0].len - 1] ^= 1;
    assert_err(unprotect(ctx, &s[0]), KEYTIER_E_AUTH);
    s[0].env[s[0].len - 1] ^= 1;
    uint8_t *out = NULL;
    size_t n = 0;
    assert_err(keytier_secret_unprotect(ctx, "connected-accounts", "other", 5,
                                        s[0].env, s[0].len, &out, &n),
               KEYTIER_E_AUTH);
    assert_err(keytier_secret_unprotect(ctx, "other-set", "acct", 4, s[0].env,
                                        s[0].len, &out, &n),
               KEYTIER_E_WRONG_KEY);
    assert_err(keytier_secret_unprotect(ctx, "connected-accounts", "acct", 4,
                                        "KTEV garbage", 12, &out, &n),
               KEYTIER_E_FORMAT);
    assert_err(
        keytier_secret_protect(ctx, "no-such-set", NULL, 0, "x", 1, &out, &n),
        KEYTIER_E_NOT_FOUND);

    /* Key 1 was archived at t0+100; 1000 s later it retires. */
    fake_now += 1000 - 200 - 1;
    assert_ok(unprotect(ctx, &s[0])); /* 999 s: not yet */
    fake_now += 1;
    assert_err(unprotect(ctx, &s[0]), KEYTIER_E_RETIRED);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "version 1"));
    assert_ok(unprotect(ctx, &s[1]));
    assert_ok(unprotect(ctx, &s[3]));
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset key retired\""), 1);
    /* Retired in the store: no wrapped copy left. */
    ck_assert_int_eq(testenv_sql_int(&T,
                                     "SELECT length(wrapped) FROM keyset_keys "
                                     "WHERE version = 1 AND name = ?1",
                                     "connected-accounts"),
                     0);
    /* A fresh context sees the same. */
    keytier_ctx_close(ctx);
    ctx = testenv_ctx(&T);
    assert_err(unprotect(ctx, &s[0]), KEYTIER_E_RETIRED);
    assert_ok(unprotect(ctx, &s[2]));
    /* Key 4 is 800 s old by now: using the keyset rolled it to 5. */
    assert_ok(keytier_keyset_get(ctx, "connected-accounts", &info));
    ck_assert_uint_eq(info.current_version, 5);
    /* A forced rollover. */
    uint32_t v = 0;
    assert_ok(keytier_keyset_rollover(ctx, "connected-accounts", &v));
    ck_assert_uint_eq(v, 6);
    keytier_ctx_close(ctx);
    for (int i = 0; i <= 3; i++)
        keytier_secret_free(s[i].env, s[i].len);
}

START_TEST(rollover_softhsm2)
{
    testenv_root_aes(&T, "VaultC", "S1", 0);
    testenv_write_conf(&T, NULL);
    rollover_case(testenv_uri("VaultC", "S1"));
}
END_TEST

START_TEST(rollover_keytier_rsa)
{
    testenv_keytier_token(&T, "KtVault");
    testenv_root_rsa(&T, "KtVault", "S1", 0);
    testenv_write_conf(&T, NULL);
    rollover_case(testenv_uri("KtVault", "S1"));
}
END_TEST

START_TEST(keyset_root_refused)
{
    testenv_root_aes(&T, "VaultC", "Ext", ROOT_EXTRACTABLE);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    assert_err(
        keytier_keyset_create(ctx, "k", testenv_uri("VaultC", "Ext"), 100, 100),
        KEYTIER_E_KEY_EXTRACTABLE);
    assert_err(keytier_keyset_create(ctx, "k", testenv_uri("VaultC", "None"),
                                     100, 100),
               KEYTIER_E_KEY_NOT_FOUND);
    assert_err(
        keytier_keyset_create(ctx, "k", testenv_uri("VaultC", "None"), -1, 100),
        KEYTIER_E_ARGS);
    keytier_ctx_close(ctx);
}
END_TEST

/* What keytier_keyset_rollover_due reported, keyset by keyset. */
struct due_seen {
    int n;
    char names[4][16];
    int rolled[4];
    size_t retired[4];
    keytier_err err[4];
};

static void due_each(void *arg, const keytier_keyset_due *d)
{
    struct due_seen *seen = arg;
    ck_assert_int_lt(seen->n, 4);
    snprintf(seen->names[seen->n], sizeof seen->names[0], "%s", d->name);
    seen->rolled[seen->n] = d->rolled;
    seen->retired[seen->n] = d->retired;
    seen->err[seen->n] = d->err;
    ck_assert(d->err != KEYTIER_OK || d->detail[0] == '\0');
    seen->n++;
}

static void due_run(keytier_ctx *ctx, int dry, size_t rolled, size_t retired)
{
    keytier_keyset_due_report r;
    struct due_seen seen = {0};
    assert_ok(keytier_keyset_rollover_due(ctx, dry, &r, due_each, &seen));
    ck_assert_uint_eq(r.keysets, 3);
    ck_assert_int_eq(seen.n, 3);
    ck_assert_str_eq(seen.names[0], "a"); /* in name order */
    ck_assert_str_eq(seen.names[2], "c");
    ck_assert_uint_eq(r.rolled, rolled);
    ck_assert_uint_eq(r.retired, retired);
    ck_assert_uint_eq(r.failed, 0);
}

static uint32_t ks_version(keytier_ctx *ctx, const char *name)
{
    keytier_keyset_info info;
    assert_ok(keytier_keyset_get(ctx, name, &info));
    return info.current_version;
}

static long long wrapped_len(uint32_t version)
{
    char q[128];
    snprintf(q, sizeof q,
             "SELECT length(wrapped) FROM keyset_keys WHERE name = ?1 AND "
             "version = %u",
             (unsigned)version);
    return testenv_sql_int(&T, q, "a");
}

/* Scheduled rollover: keysets roll over and retire by age with no protect
 * call; a dry run changes nothing; a second run finds nothing due. */
START_TEST(rollover_due_without_protect)
{
    testenv_root_aes(&T, "VaultC", "S1", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    const char *root = testenv_uri("VaultC", "S1");
    assert_ok(keytier_keyset_create(ctx, "a", root, 100, 1000));
    assert_ok(keytier_keyset_create(ctx, "b", root, 0, 0)); /* never */
    assert_ok(keytier_keyset_create(ctx, "c", root, 50, 0));
    uint8_t *env = NULL, *out = NULL;
    size_t env_len = 0, n = 0;
    assert_ok(
        keytier_secret_protect(ctx, "a", NULL, 0, "pw", 2, &env, &env_len));
    due_run(ctx, 0, 0, 0); /* nothing is due yet */
    fake_now += 100;
    due_run(ctx, 1, 2, 0); /* a and c are due: the dry run says so... */
    ck_assert_uint_eq(ks_version(ctx, "a"), 1); /* ...and changes nothing */
    ck_assert_uint_eq(ks_version(ctx, "c"), 1);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset rollover\""), 0);
    due_run(ctx, 0, 2, 0);
    ck_assert_uint_eq(ks_version(ctx, "a"), 2);
    ck_assert_uint_eq(ks_version(ctx, "b"), 1);
    ck_assert_uint_eq(ks_version(ctx, "c"), 2);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset rollover\""), 2);
    due_run(ctx, 0, 0, 0); /* idempotent */
    /* The secret under archived version 1 still opens. */
    assert_ok(
        keytier_secret_unprotect(ctx, "a", NULL, 0, env, env_len, &out, &n));
    keytier_secret_free(out, n);
    /* 1099 s: a and c roll again; version 1 (archived at 100) not yet. */
    fake_now += 999;
    due_run(ctx, 0, 2, 0);
    ck_assert_int_gt(wrapped_len(1), 0);
    fake_now += 1;
    due_run(ctx, 1, 0, 1); /* version 1 is due to retire */
    ck_assert_int_gt(wrapped_len(1), 0);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset key retired\""), 0);
    due_run(ctx, 0, 0, 1);
    ck_assert_int_eq(wrapped_len(1), 0);
    ck_assert_int_gt(wrapped_len(2), 0);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset key retired\""), 1);
    assert_err(
        keytier_secret_unprotect(ctx, "a", NULL, 0, env, env_len, &out, &n),
        KEYTIER_E_RETIRED);
    due_run(ctx, 0, 0, 0);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Keyset key retired\""), 1);
    keytier_secret_free(env, env_len);
    keytier_ctx_close(ctx);
}
END_TEST

/* A keyset whose root is gone fails alone: the others still roll over,
 * and the call reports the failure naming the keyset. */
START_TEST(rollover_due_one_fails)
{
    testenv_root_aes(&T, "VaultC", "S1", 0);
    testenv_root_aes(&T, "VaultC", "S2", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    assert_ok(
        keytier_keyset_create(ctx, "a", testenv_uri("VaultC", "S2"), 10, 0));
    assert_ok(
        keytier_keyset_create(ctx, "b", testenv_uri("VaultC", "S1"), 10, 0));
    testenv_destroy(&T, "VaultC", "S2");
    fake_now += 10;
    keytier_keyset_due_report r;
    struct due_seen seen = {0};
    assert_err(keytier_keyset_rollover_due(ctx, 0, &r, due_each, &seen),
               KEYTIER_E_KEY_NOT_FOUND);
    ck_assert_ptr_eq(
        strstr(keytier_last_error_detail(), "root key not found: keyset a: "),
        keytier_last_error_detail());
    ck_assert_int_eq(seen.n, 2);
    ck_assert_int_eq(seen.err[0], KEYTIER_E_KEY_NOT_FOUND);
    ck_assert_int_eq(seen.err[1], KEYTIER_OK);
    ck_assert_uint_eq(r.keysets, 2);
    ck_assert_uint_eq(r.rolled, 1);
    ck_assert_uint_eq(r.failed, 1);
    ck_assert_uint_eq(ks_version(ctx, "a"), 1);
    ck_assert_uint_eq(ks_version(ctx, "b"), 2);
    assert_err(keytier_keyset_rollover_due(NULL, 0, &r, NULL, NULL),
               KEYTIER_E_ARGS);
    keytier_ctx_close(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("secrets");
    TCase *tc = tcase_create("secrets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rollover_softhsm2);
    tcase_add_test(tc, rollover_keytier_rsa);
    tcase_add_test(tc, keyset_root_refused);
    tcase_add_test(tc, rollover_due_without_protect);
    tcase_add_test(tc, rollover_due_one_fails);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
