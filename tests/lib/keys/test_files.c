/* The files shape: the tenant intermediate key (TIK) between the DEP key
 * and the sites (levels, where keytier_key_create puts a site, the AAD
 * that binds a site to its TIK and a TIK to its DEP), regions (one files
 * DEP per tenant and region, sites per region, status and info), and a
 * store made before TIKs and regions that keeps working. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testenv.h"

static struct testenv T;
static keytier_ctx *ctx;
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-1", NULL};

#define URI_A testenv_uri("VaultA", "rootA")
#define URI_B testenv_uri("VaultB", "rootB")

static void assert_err(keytier_err got, keytier_err want)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
}

static void setup(void)
{
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    testenv_write_conf(&T, "workload.SharePoint.availability_key = aes256");
    ctx = testenv_ctx(&T);
}

static void teardown(void)
{
    keytier_ctx_close(ctx);
    testenv_teardown(&T);
}

static void sql(const char *stmt)
{
    testenv_sql(&T, stmt);
}

static void dep_in(const char *tenant, const char *region, keytier_dep_info *d)
{
    assert_err(keytier_dep_create_in_region(ctx, tenant, "SharePoint", region,
                                            URI_A, URI_B, NULL, d),
               KEYTIER_OK);
}

/* Seals `text` under a new blob of site (opened by name). */
static void write_blob(const char *tenant, const char *site, const char *text,
                       char blob_id[KEYTIER_ID_SIZE], uint8_t *env,
                       size_t *env_len)
{
    keytier_key *s = NULL, *b = NULL;
    assert_err(
        keytier_key_open_name(ctx, &user, tenant, "SharePoint", site, &s),
        KEYTIER_OK);
    assert_err(keytier_key_create(s, "blob", blob_id), KEYTIER_OK);
    assert_err(keytier_key_open(s, blob_id, &b), KEYTIER_OK);
    assert_err(keytier_seal(b, "ctx", 3, text, strlen(text), env, 256, env_len),
               KEYTIER_OK);
    keytier_key_close(b);
    keytier_key_close(s);
}

static void read_blob(const char *tenant, const char *blob_id,
                      const uint8_t *env, size_t env_len, const char *text)
{
    keytier_key *b = NULL;
    uint8_t out[256];
    size_t n = 0;
    assert_err(keytier_key_open_path(ctx, &user, tenant, blob_id, &b),
               KEYTIER_OK);
    assert_err(keytier_open(b, "ctx", 3, env, env_len, out, sizeof out, &n),
               KEYTIER_OK);
    ck_assert_uint_eq(n, strlen(text));
    ck_assert_mem_eq(out, text, n);
    keytier_key_close(b);
}

START_TEST(tik_levels)
{
    keytier_dep_info d;
    dep_in("org-1", NULL, &d);
    ck_assert_str_eq(d.region, KEYTIER_REGION_DEFAULT);
    ck_assert_uint_eq(strlen(d.tik_id), 36);
    /* The DEP key's one child is the TIK (level 1, named by its region). */
    keytier_key_info *kids = NULL;
    size_t n = 0;
    assert_err(keytier_key_list(ctx, "org-1", d.dep_id, &kids, &n), KEYTIER_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(kids[0].key_id, d.tik_id);
    ck_assert_uint_eq(kids[0].level, 1);
    ck_assert_str_eq(kids[0].name, KEYTIER_REGION_DEFAULT);
    keytier_key_list_free(kids);

    /* A site asked of the DEP key goes under the TIK (level 2), and the
     * DEP key still opens it. */
    keytier_key *dk = NULL, *site = NULL, *tik = NULL, *blob = NULL;
    char sid[KEYTIER_ID_SIZE], bid[KEYTIER_ID_SIZE];
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk),
               KEYTIER_OK);
    assert_err(keytier_key_create(dk, "sites/hr", sid), KEYTIER_OK);
    assert_err(keytier_key_open(dk, sid, &site), KEYTIER_OK);
    keytier_key_info info;
    keytier_key_get_info(site, &info);
    ck_assert_uint_eq(info.level, 2);
    ck_assert_str_eq(info.parent_id, d.tik_id);
    ck_assert_str_eq(info.dep_id, d.dep_id);
    assert_err(keytier_key_create(site, "blob", bid), KEYTIER_OK);
    assert_err(keytier_key_open(site, bid, &blob), KEYTIER_OK);
    keytier_key_get_info(blob, &info);
    ck_assert_uint_eq(info.level, 3);
    assert_err(keytier_key_create(blob, "deeper", NULL), KEYTIER_E_DEPTH);
    /* The TIK opened directly makes sites too; names stay unique per
     * tenant and workload. */
    assert_err(keytier_tik_open(ctx, &user, "org-1", "SharePoint", NULL, &tik),
               KEYTIER_OK);
    keytier_key_get_info(tik, &info);
    ck_assert_str_eq(info.key_id, d.tik_id);
    ck_assert_uint_eq(info.level, 1);
    assert_err(keytier_key_create(tik, "sites/hr", NULL), KEYTIER_E_EXISTS);
    assert_err(keytier_key_create(dk, "sites/hr", NULL), KEYTIER_E_EXISTS);
    assert_err(keytier_key_create(tik, "sites/eng", NULL), KEYTIER_OK);
    /* By name: the site under the TIK. */
    keytier_key *byname = NULL;
    assert_err(keytier_key_open_name(ctx, &user, "org-1", "SharePoint",
                                     "sites/eng", &byname),
               KEYTIER_OK);
    keytier_key_get_info(byname, &info);
    ck_assert_uint_eq(info.level, 2);
    keytier_status st;
    assert_err(keytier_status_get(ctx, "org-1", "SharePoint", "sites/hr", &st),
               KEYTIER_OK);
    ck_assert_int_eq(st.encrypted, 1);
    ck_assert_str_eq(st.key_id, sid);
    ck_assert_str_eq(st.region, KEYTIER_REGION_DEFAULT);
    ck_assert_int_eq(st.service_managed, 0);
    /* The mail shape has no TIK and no region. */
    keytier_dep_info m;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &m),
               KEYTIER_OK);
    ck_assert_str_eq(m.region, "");
    ck_assert_str_eq(m.tik_id, "");
    assert_err(keytier_tik_open(ctx, &user, "org-1", "Exchange", NULL, &tik),
               KEYTIER_E_ARGS);
    keytier_key_close(byname);
    keytier_key_close(tik);
    keytier_key_close(blob);
    keytier_key_close(site);
    keytier_key_close(dk);
}
END_TEST

/* Attack: a site key's row moved under another tenant intermediate key
 * (parent, TIK and DEP columns rewritten) does not open: its AAD names
 * the TIK it was made under.  A TIK moved to another DEP fails the same
 * way (its AAD names its DEP). */
START_TEST(site_moved_to_other_tik_fails)
{
    keytier_dep_info eu, us;
    dep_in("org-1", "eu", &eu);
    dep_in("org-1", "us", &us);
    char bid[KEYTIER_ID_SIZE];
    uint8_t env[256];
    size_t el;
    keytier_key *tik = NULL, *k = NULL;
    assert_err(keytier_tik_open(ctx, &user, "org-1", "SharePoint", "eu", &tik),
               KEYTIER_OK);
    assert_err(keytier_key_create(tik, "site-eu", NULL), KEYTIER_OK);
    keytier_key_close(tik);
    write_blob("org-1", "site-eu", "secret", bid, env, &el);
    read_blob("org-1", bid, env, el, "secret");
    char q[1024];
    snprintf(q, sizeof q,
             "UPDATE tier_keys SET parent_id = '%s', tik_id = '%s', dep_id = "
             "'%s' WHERE name = 'site-eu'; UPDATE tier_keys SET tik_id = "
             "'%s', dep_id = '%s' WHERE key_id = '%s'",
             us.tik_id, us.tik_id, us.dep_id, us.tik_id, us.dep_id, bid);
    sql(q);
    keytier_ctx_close(ctx); /* no cached key helps */
    ctx = testenv_ctx(&T);
    assert_err(
        keytier_key_open_name(ctx, &user, "org-1", "SharePoint", "site-eu", &k),
        KEYTIER_E_AUTH);
    assert_err(keytier_key_open_path(ctx, &user, "org-1", bid, &k),
               KEYTIER_E_AUTH);
    /* Back where it was, it opens again: the key itself is intact. */
    snprintf(q, sizeof q,
             "UPDATE tier_keys SET parent_id = '%s', tik_id = '%s', dep_id = "
             "'%s' WHERE name = 'site-eu'; UPDATE tier_keys SET tik_id = "
             "'%s', dep_id = '%s' WHERE key_id = '%s'",
             eu.tik_id, eu.tik_id, eu.dep_id, eu.tik_id, eu.dep_id, bid);
    sql(q);
    read_blob("org-1", bid, env, el, "secret");
    /* The eu TIK moved under the us DEP. */
    snprintf(q, sizeof q,
             "UPDATE tier_keys SET parent_id = '%s', dep_id = '%s' WHERE "
             "key_id = '%s'",
             us.dep_id, us.dep_id, eu.tik_id);
    sql(q);
    keytier_ctx_close(ctx);
    ctx = testenv_ctx(&T);
    assert_err(keytier_key_open_path(ctx, &user, "org-1", bid, &k),
               KEYTIER_E_AUTH);
}
END_TEST

START_TEST(one_files_dep_per_region)
{
    keytier_dep_info d1, d2, d3, x;
    dep_in("org-1", "eu", &d1);
    ck_assert_str_eq(d1.region, "eu");
    /* Same tenant and region: refused before any token work, naming the
     * DEP that holds the region. */
    assert_err(keytier_dep_create_in_region(ctx, "org-1", "SharePoint", "eu",
                                            URI_A, URI_B, NULL, &x),
               KEYTIER_E_DEP_REGION);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), d1.dep_id));
    /* Another region, another tenant: accepted. */
    dep_in("org-1", "us", &d2);
    dep_in("org-2", "eu", &d3);
    /* The default region is a region like the others. */
    dep_in("org-1", NULL, &x);
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &x),
               KEYTIER_E_DEP_REGION);
    assert_err(keytier_dep_create_in_region(ctx, "org-1", "SharePoint",
                                            KEYTIER_REGION_DEFAULT, URI_A,
                                            URI_B, NULL, &x),
               KEYTIER_E_DEP_REGION);
    /* A disabled DEP frees its region. */
    assert_err(keytier_dep_disable(ctx, "org-1", d1.dep_id), KEYTIER_OK);
    dep_in("org-1", "eu", &x);
    /* Region names and shapes. */
    assert_err(keytier_dep_create_in_region(ctx, "org-1", "SharePoint", "EU",
                                            URI_A, URI_B, NULL, &x),
               KEYTIER_E_ARGS);
    assert_err(keytier_dep_create_in_region(ctx, "org-1", "SharePoint", "",
                                            URI_A, URI_B, NULL, &x),
               KEYTIER_E_ARGS);
    assert_err(keytier_dep_create_in_region(ctx, "org-1", "Exchange", "eu",
                                            URI_A, URI_B, NULL, &x),
               KEYTIER_E_ARGS);
    /* Mail DEPs have no region rule. */
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &x),
               KEYTIER_OK);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &x),
               KEYTIER_OK);
    /* dep list carries the regions. */
    keytier_dep_info *list = NULL;
    size_t n = 0;
    assert_err(keytier_dep_list(ctx, "org-1", "SharePoint", &list, &n),
               KEYTIER_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(list[0].region, "eu");
    ck_assert_str_eq(list[1].region, "us");
    ck_assert_str_eq(list[2].region, KEYTIER_REGION_DEFAULT);
    ck_assert_str_eq(list[3].region, "eu");
    keytier_dep_list_free(list);
}
END_TEST

START_TEST(sites_per_region)
{
    keytier_dep_info eu, us;
    dep_in("org-1", "eu", &eu);
    dep_in("org-1", "us", &us);
    keytier_key *tik = NULL;
    assert_err(keytier_tik_open(ctx, &user, "org-1", "SharePoint", "eu", &tik),
               KEYTIER_OK);
    assert_err(keytier_key_create(tik, "paris", NULL), KEYTIER_OK);
    keytier_key_close(tik);
    assert_err(keytier_tik_open(ctx, &user, "org-1", "SharePoint", "us", &tik),
               KEYTIER_OK);
    assert_err(keytier_key_create(tik, "boston", NULL), KEYTIER_OK);
    /* A site name is the tenant's: not twice, whatever the region. */
    assert_err(keytier_key_create(tik, "paris", NULL), KEYTIER_E_EXISTS);
    keytier_key_close(tik);
    assert_err(keytier_tik_open(ctx, &user, "org-1", "SharePoint", "ap", &tik),
               KEYTIER_E_DEP_NOT_FOUND);
    keytier_status st;
    assert_err(keytier_status_get(ctx, "org-1", "SharePoint", "paris", &st),
               KEYTIER_OK);
    ck_assert_str_eq(st.region, "eu");
    ck_assert_str_eq(st.dep_id, eu.dep_id);
    assert_err(keytier_status_get(ctx, "org-1", "SharePoint", "boston", &st),
               KEYTIER_OK);
    ck_assert_str_eq(st.region, "us");
    ck_assert_str_eq(st.dep_id, us.dep_id);
    char b1[KEYTIER_ID_SIZE], b2[KEYTIER_ID_SIZE];
    uint8_t e1[256], e2[256];
    size_t l1, l2;
    write_blob("org-1", "paris", "bonjour", b1, e1, &l1);
    write_blob("org-1", "boston", "hello", b2, e2, &l2);
    read_blob("org-1", b1, e1, l1, "bonjour");
    read_blob("org-1", b2, e2, l2, "hello");
}
END_TEST

/* A store of schema 8: a files DEP without a TIK or a region, its sites
 * at level 1 (DEP key -> site -> blob).  After the migration to 9 its
 * data opens, new sites go where the old ones are, it is in the default
 * region, and that region is taken. */
START_TEST(older_store_keeps_working)
{
    keytier_dep_info d, x;
    dep_in("org-1", NULL, &d);
    /* The DEP as an older library left it: no TIK. */
    sql("DELETE FROM tier_keys");
    char bid[KEYTIER_ID_SIZE];
    uint8_t env[256];
    size_t el;
    keytier_key *dk = NULL, *site = NULL;
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk),
               KEYTIER_OK);
    assert_err(keytier_key_create(dk, "old-site", NULL), KEYTIER_OK);
    write_blob("org-1", "old-site", "old data", bid, env, &el);
    keytier_key_close(dk);
    keytier_ctx_close(ctx);
    sql("DROP INDEX migration_items_claim; ALTER TABLE migration_items DROP "
        "COLUMN lease_until; ALTER TABLE migration_items DROP COLUMN "
        "claimed_by; "
        "DROP TABLE managed_tiks; DROP TABLE offboards; DROP INDEX "
        "deps_region; ALTER TABLE deps DROP COLUMN region; DROP INDEX "
        "tier_keys_named; DROP INDEX tier_keys_tik; ALTER TABLE tier_keys "
        "DROP COLUMN tik_id; CREATE UNIQUE INDEX tier_keys_top_name ON "
        "tier_keys(tenant, workload, name) WHERE level = 1");
    /* the schema version where each engine keeps it */
    sql(testenv_is_pg(&T) ? "UPDATE kt_schema SET version = 8"
                          : "PRAGMA user_version = 8");
    ctx = testenv_ctx(&T);
    read_blob("org-1", bid, env, el, "old data");
    assert_err(keytier_key_open_name(ctx, &user, "org-1", "SharePoint",
                                     "old-site", &site),
               KEYTIER_OK);
    keytier_key_info info;
    keytier_key_get_info(site, &info);
    ck_assert_uint_eq(info.level, 1);
    /* two levels, as before */
    char b2[KEYTIER_ID_SIZE];
    keytier_key *blob = NULL;
    assert_err(keytier_key_create(site, "b", b2), KEYTIER_OK);
    assert_err(keytier_key_open(site, b2, &blob), KEYTIER_OK);
    assert_err(keytier_key_create(blob, "deeper", NULL), KEYTIER_E_DEPTH);
    keytier_key_close(blob);
    keytier_key_close(site);
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk),
               KEYTIER_OK);
    assert_err(keytier_key_create(dk, "new-site", NULL), KEYTIER_OK);
    assert_err(keytier_key_create(dk, "old-site", NULL), KEYTIER_E_EXISTS);
    keytier_key_close(dk);
    keytier_status st;
    assert_err(keytier_status_get(ctx, "org-1", "SharePoint", "new-site", &st),
               KEYTIER_OK);
    ck_assert_str_eq(st.region, KEYTIER_REGION_DEFAULT);
    assert_err(keytier_dep_show(ctx, "org-1", d.dep_id, &x), KEYTIER_OK);
    ck_assert_str_eq(x.region, KEYTIER_REGION_DEFAULT);
    ck_assert_str_eq(x.tik_id, "");
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &x),
               KEYTIER_E_DEP_REGION);
    keytier_key *tik = NULL;
    assert_err(keytier_tik_open(ctx, &user, "org-1", "SharePoint", NULL, &tik),
               KEYTIER_E_DEP_NOT_FOUND);
    /* Its sites are under the DEP key: no offboarding, nothing made. */
    assert_err(
        keytier_files_offboard(ctx, NULL, "org-1", "SharePoint", NULL, NULL),
        KEYTIER_E_DEP_STATE);
    ck_assert_int_eq(
        testenv_sql_int(&T, "SELECT count(*) FROM offboards", NULL), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("files");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tik_levels);
    tcase_add_test(tc, site_moved_to_other_tik_fails);
    tcase_add_test(tc, one_files_dep_per_region);
    tcase_add_test(tc, sites_per_region);
    tcase_add_test(tc, older_store_keeps_working);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
