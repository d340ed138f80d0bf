/* lib/lifecycle/offboard.c and the files shape's tenant intermediate keys
 * through the lifecycle: offboarding a region to a service-managed key
 * (its approval, the data still readable once both customer keys are
 * destroyed, new sites, the audit records, a run stopped after each step
 * and resumed, purge afterwards), and roll and recovery of a files DEP
 * with data written before and read after. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kt_lib.h"
#include "lctest.h"

static struct testenv T;

#define FILES_CONF                                                             \
    "workload.Files.shape = files\n"                                           \
    "workload.Files.availability_key = aes256\n"

static void setup(void)
{
    testenv_setup(&T);
    kt_offboard_stop_after = -1;
}

static void teardown(void)
{
    testenv_teardown(&T);
}

static void roots(const char *a, const char *b)
{
    testenv_root_aes(&T, "VaultA", a, 0);
    testenv_root_aes(&T, "VaultB", b, 0);
}

static void dep_in(keytier_ctx *ctx, const char *region, const char *a,
                   const char *b, keytier_dep_info *d)
{
    char ua[256], ub[256];
    snprintf(ua, sizeof ua, "%s", testenv_uri("VaultA", a));
    snprintf(ub, sizeof ub, "%s", testenv_uri("VaultB", b));
    assert_ok(keytier_dep_create_in_region(ctx, "org-1", "Files", region, ua,
                                           ub, NULL, d));
}

/* A site in region and one sealed blob under it: its id and envelope. */
struct blob {
    char id[KEYTIER_ID_SIZE];
    uint8_t env[256];
    size_t len;
    char text[32];
};

static void write_site(keytier_ctx *ctx, const char *region, const char *site,
                       struct blob *b)
{
    keytier_key *tik = NULL, *s = NULL, *k = NULL;
    char sid[KEYTIER_ID_SIZE];
    assert_ok(keytier_tik_open(ctx, &lc_user, "org-1", "Files", region, &tik));
    assert_ok(keytier_key_create(tik, site, sid));
    assert_ok(keytier_key_open(tik, sid, &s));
    assert_ok(keytier_key_create(s, "blob", b->id));
    assert_ok(keytier_key_open(s, b->id, &k));
    snprintf(b->text, sizeof b->text, "data of %s", site);
    assert_ok(keytier_seal(k, "ctx", 3, b->text, strlen(b->text), b->env,
                           sizeof b->env, &b->len));
    keytier_key_close(k);
    keytier_key_close(s);
    keytier_key_close(tik);
}

static keytier_err read_blob(keytier_ctx *ctx, const struct blob *b)
{
    keytier_key *k = NULL;
    uint8_t out[256];
    size_t n = 0;
    keytier_err e = keytier_key_open_path(ctx, &lc_user, "org-1", b->id, &k);
    if (e == KEYTIER_OK)
        e = keytier_open(k, "ctx", 3, b->env, b->len, out, sizeof out, &n);
    keytier_key_close(k);
    if (e == KEYTIER_OK) {
        ck_assert_uint_eq(n, strlen(b->text));
        ck_assert_mem_eq(out, b->text, n);
    }
    return e;
}

static char *audit_log(keytier_ctx *ctx)
{
    char path[4096];
    assert_ok(keytier_audit_log_path(ctx, path, sizeof path));
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Without an approval an offboarding does not start: nothing changes. */
START_TEST(offboard_needs_approval)
{
    roots("A1", "B1");
    testenv_write_conf(&T, FILES_CONF "approval.required = yes\n");
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d;
    dep_in(ctx, "eu", "A1", "B1", &d);
    assert_err(keytier_files_offboard(ctx, NULL, "org-1", "Files", "eu", NULL),
               KEYTIER_E_APPROVAL_REQUIRED);
    assert_err(keytier_files_offboard(ctx,
                                      "4a0c1f52-0000-4000-8000-000000000000",
                                      "org-1", "Files", "eu", NULL),
               KEYTIER_E_NOT_FOUND);
    ck_assert_int_eq(
        testenv_sql_int(&T, "SELECT count(*) FROM offboards", NULL), 0);
    assert_ok(keytier_dep_show(ctx, "org-1", d.dep_id, &d));
    ck_assert_int_eq(d.state, KEYTIER_DEP_REGISTERED);
    keytier_ctx_close(ctx);
}
END_TEST

/* Two regions; one offboarded, both of its customer keys destroyed: its
 * data still opens, new sites and blobs are made, the other region is
 * untouched, the DEP key is not used (and says why), status tells. */
START_TEST(offboard_then_customer_keys_destroyed)
{
    roots("A1", "B1");
    roots("A2", "B2");
    testenv_write_conf(&T, FILES_CONF);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info eu, us;
    dep_in(ctx, "eu", "A1", "B1", &eu);
    dep_in(ctx, "us", "A2", "B2", &us);
    struct blob b_eu, b_us, b_new;
    write_site(ctx, "eu", "paris", &b_eu);
    write_site(ctx, "us", "boston", &b_us);
    keytier_offboard_report r;
    assert_ok(keytier_files_offboard(ctx, NULL, "org-1", "Files", "eu", &r));
    ck_assert_str_eq(r.dep_id, eu.dep_id);
    ck_assert_str_eq(r.region, "eu");
    ck_assert_uint_eq(r.tiks, 1);
    ck_assert_int_eq(r.resumed, 0);
    ck_assert_ptr_nonnull(strstr(r.managed_uri, "keytier-managed-"));
    /* Done is done. */
    assert_err(keytier_files_offboard(ctx, NULL, "org-1", "Files", "eu", NULL),
               KEYTIER_E_OFFBOARDED);
    /* No customer key is left to roll: a roll is refused, naming why. */
    assert_err(keytier_dep_roll(ctx, "org-1", eu.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "A2"), NULL),
               KEYTIER_E_DEP_STATE);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "offboarded: its data is under"));
    keytier_ctx_close(ctx);
    testenv_destroy(&T, "VaultA", "A1");
    testenv_destroy(&T, "VaultB", "B1");
    ctx = testenv_ctx(&T);
    assert_ok(read_blob(ctx, &b_eu));
    assert_ok(read_blob(ctx, &b_us));
    write_site(ctx, "eu", "lyon", &b_new);
    assert_ok(read_blob(ctx, &b_new));
    keytier_key *dk = NULL;
    assert_err(keytier_dep_key_open(ctx, &lc_user, "org-1", eu.dep_id, &dk),
               KEYTIER_E_OFFBOARDED);
    keytier_status st;
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "paris", &st));
    ck_assert_int_eq(st.service_managed, 1);
    ck_assert_int_eq(st.dep_state, KEYTIER_DEP_OFFBOARDED);
    ck_assert_str_eq(st.region, "eu");
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "lyon", &st));
    ck_assert_int_eq(st.service_managed, 1);
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "boston", &st));
    ck_assert_int_eq(st.service_managed, 0);
    /* The audit trail: start, each step, completion. */
    const char *log = audit_log(ctx);
    ck_assert_uint_eq(count(log, "\"Offboard started\""), 1);
    ck_assert_uint_eq(count(log, "\"Offboard step\""), 2);
    ck_assert_uint_eq(count(log, "\"Offboard completed\""), 1);
    /* An offboarded DEP is not disabled back to its customer keys. */
    assert_err(keytier_dep_disable(ctx, "org-1", eu.dep_id),
               KEYTIER_E_OFFBOARDED);
    /* Attack: the copies pointed at another key of the service token
     * (us's availability key) or at a customer key: refused for the key's
     * role before any unwrap. */
    char q[2048];
    snprintf(q, sizeof q, "UPDATE managed_tiks SET uri = '%s'",
             us.root_uri[KEYTIER_ROOT_AVAIL]);
    testenv_sql(&T, q);
    assert_err(read_blob(ctx, &b_eu), KEYTIER_E_KEY_ROLE);
    snprintf(q, sizeof q, "UPDATE managed_tiks SET uri = '%s'",
             testenv_uri("VaultA", "A2"));
    testenv_sql(&T, q);
    assert_err(read_blob(ctx, &b_eu), KEYTIER_E_KEY_ROLE);
    snprintf(q, sizeof q, "UPDATE managed_tiks SET uri = '%s'", r.managed_uri);
    testenv_sql(&T, q);
    assert_ok(read_blob(ctx, &b_eu));
    /* The region is free for a new customer-keyed DEP. */
    keytier_dep_info eu2;
    dep_in(ctx, "eu", "A2", "B2", &eu2);
    keytier_ctx_close(ctx);
}
END_TEST

/* A run stopped right after each step (as a crash there) leaves the
 * journal at that step; the next run finishes without a new approval and
 * the data opens through the service-managed key. */
START_TEST(offboard_resumes_after_each_step)
{
    roots("A1", "B1");
    testenv_write_conf(&T, FILES_CONF);
    keytier_ctx *ctx = testenv_ctx(&T);
    static const char *const regions[] = {"r0", "r1", "r2"};
    for (int step = 0; step < 3; step++) {
        keytier_dep_info d;
        struct blob b;
        char site[16];
        dep_in(ctx, regions[step], "A1", "B1", &d);
        snprintf(site, sizeof site, "site-%d", step);
        write_site(ctx, regions[step], site, &b);
        kt_offboard_stop_after = step;
        assert_err(keytier_files_offboard(ctx, NULL, "org-1", "Files",
                                          regions[step], NULL),
                   KEYTIER_E_INTERNAL);
        kt_offboard_stop_after = -1;
        ck_assert_int_eq(testenv_sql_int(&T,
                                         "SELECT step FROM offboards WHERE "
                                         "dep_id = ?1",
                                         d.dep_id),
                         step + 1);
        ck_assert_int_eq(
            testenv_sql_int(&T, "SELECT state FROM deps WHERE dep_id = ?1",
                            d.dep_id),
            step == 2 ? KEYTIER_DEP_OFFBOARDED : KEYTIER_DEP_REGISTERED);
        /* Readable at every point. */
        assert_ok(read_blob(ctx, &b));
        keytier_offboard_report r;
        keytier_err e = keytier_files_offboard(ctx, NULL, "org-1", "Files",
                                               regions[step], &r);
        if (step == 2) {
            assert_err(e, KEYTIER_E_OFFBOARDED); /* it had finished */
        } else {
            assert_ok(e);
            ck_assert_int_eq(r.resumed, 1);
        }
        ck_assert_int_eq(
            testenv_sql_int(&T,
                            "SELECT count(*) FROM managed_tiks WHERE "
                            "dep_id = ?1",
                            d.dep_id),
            1);
        assert_ok(read_blob(ctx, &b));
    }
    const char *log = audit_log(ctx);
    ck_assert_uint_eq(count(log, "\"Offboard resumed\""), 2);
    ck_assert_uint_eq(count(log, "\"Offboard completed\""), 3);
    /* one service-managed key per DEP, never two */
    keytier_ctx_close(ctx);
    testenv_destroy(&T, "VaultA", "A1");
    testenv_destroy(&T, "VaultB", "B1");
    ctx = testenv_ctx(&T);
    keytier_key *tik = NULL;
    for (int step = 0; step < 3; step++) {
        assert_ok(keytier_tik_open(ctx, &lc_user, "org-1", "Files",
                                   regions[step], &tik));
        keytier_key_close(tik);
    }
    keytier_ctx_close(ctx);
}
END_TEST

/* A purge of an offboarded tenant destroys its service-managed key:
 * nothing of it opens afterwards. */
START_TEST(purge_after_offboard)
{
    roots("A1", "B1");
    testenv_write_conf(&T, FILES_CONF);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d;
    struct blob b;
    dep_in(ctx, "eu", "A1", "B1", &d);
    write_site(ctx, "eu", "paris", &b);
    keytier_offboard_report r;
    assert_ok(keytier_files_offboard(ctx, NULL, "org-1", "Files", "eu", &r));
    keytier_purge_report pr;
    assert_ok(keytier_tenant_purge(ctx, "org-1", 0, &pr));
    ck_assert_uint_eq(pr.managed_keys_destroyed, 1);
    ck_assert_uint_eq(pr.avail_keys_destroyed, 1);
    /* crypto-shredded, and said so: never "not found" */
    assert_err(read_blob(ctx, &b), KEYTIER_E_PURGED);
    ck_assert_int_eq(
        testenv_sql_int(&T, "SELECT count(*) FROM managed_tiks", NULL), 0);
    /* The key is gone from the service token: a purge again finds it
     * gone, and so does the token itself. */
    size_t destroyed = 9;
    char label[64];
    snprintf(label, sizeof label, "keytier-managed-%s", d.dep_id);
    assert_err(keytier_root_destroy(T.softhsm_module, "Service", "1234", label,
                                    &destroyed),
               KEYTIER_E_KEY_NOT_FOUND);
    const char *log = audit_log(ctx);
    ck_assert_ptr_nonnull(strstr(log, "\"Tenant purged\""));
    keytier_ctx_close(ctx);
}
END_TEST

/* Roll: the DEP key is rewrapped under the new root; the TIK stays under
 * the same DEP key.  Recover: the new DEP takes the old one's TIK, one
 * key rewrapped, the sites and blobs unchanged. */
START_TEST(roll_and_recover_with_tik)
{
    roots("A1", "B1");
    roots("A2", "B2");
    testenv_root_aes(&T, "VaultA", "A1v2", 0);
    testenv_write_conf(&T, FILES_CONF);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, nd;
    struct blob b1, b2;
    dep_in(ctx, "eu", "A1", "B1", &d);
    write_site(ctx, "eu", "paris", &b1);
    char ua[256];
    snprintf(ua, sizeof ua, "%s", testenv_uri("VaultA", "A1v2"));
    assert_ok(
        keytier_dep_roll(ctx, "org-1", d.dep_id, KEYTIER_ROOT_A, ua, NULL));
    testenv_destroy(&T, "VaultA", "A1");
    assert_ok(read_blob(ctx, &b1));
    write_site(ctx, "eu", "lyon", &b2);
    char *before = testenv_sql_rows(
        &T, "SELECT wrapped FROM tier_keys WHERE level > 1 ORDER BY key_id",
        NULL, 1);
    /* Both customer keys lost: recovery into new keys, same region. */
    testenv_destroy(&T, "VaultA", "A1v2");
    testenv_destroy(&T, "VaultB", "B1");
    keytier_migration m;
    char ub[256];
    snprintf(ua, sizeof ua, "%s", testenv_uri("VaultA", "A2"));
    snprintf(ub, sizeof ub, "%s", testenv_uri("VaultB", "B2"));
    assert_ok(keytier_dep_recover(ctx, "org-1", d.dep_id, ua, ub, &nd, &m));
    ck_assert_str_eq(nd.region, "eu");
    ck_assert_uint_eq(m.total, 1); /* the TIK */
    assert_ok(keytier_migrate_run(ctx, m.migration_id, NULL, NULL, &m));
    ck_assert(m.finished);
    char *after = testenv_sql_rows(
        &T, "SELECT wrapped FROM tier_keys WHERE level > 1 ORDER BY key_id",
        NULL, 1);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    assert_ok(read_blob(ctx, &b1));
    assert_ok(read_blob(ctx, &b2));
    keytier_status st;
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "paris", &st));
    ck_assert_str_eq(st.dep_id, nd.dep_id);
    assert_ok(keytier_dep_show(ctx, "org-1", d.dep_id, &d));
    ck_assert_int_eq(d.state, KEYTIER_DEP_DISABLED);
    /* New sites of the region go under the recovered DEP. */
    struct blob b3;
    write_site(ctx, "eu", "nice", &b3);
    assert_ok(keytier_status_get(ctx, "org-1", "Files", "nice", &st));
    ck_assert_str_eq(st.dep_id, nd.dep_id);
    keytier_ctx_close(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offboard");
    TCase *tc = tcase_create("offboard");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, offboard_needs_approval);
    tcase_add_test(tc, offboard_then_customer_keys_destroyed);
    tcase_add_test(tc, offboard_resumes_after_each_step);
    tcase_add_test(tc, purge_after_offboard);
    tcase_add_test(tc, roll_and_recover_with_tik);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
