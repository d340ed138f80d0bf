/* Key tiers: mail and files shapes, create/open/list, status, and every
 * error: depth, duplicate name, wrong parent, wrong tenant, disabled DEP,
 * and stored wrapped keys that were altered or moved. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testenv.h"

static struct testenv T;
static keytier_ctx *ctx;
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-1", NULL};
static keytier_dep_info mail1, mail2, files1, other;

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
    assert_err(
        keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &mail1),
        KEYTIER_OK);
    assert_err(
        keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &mail2),
        KEYTIER_OK);
    assert_err(
        keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &files1),
        KEYTIER_OK);
    assert_err(
        keytier_dep_create(ctx, "org-2", "Exchange", URI_A, URI_B, &other),
        KEYTIER_OK);
}

static void teardown(void)
{
    keytier_ctx_close(ctx);
    testenv_teardown(&T);
}

static keytier_key *dep_key(const keytier_dep_info *d)
{
    keytier_key *k = NULL;
    assert_err(keytier_dep_key_open(ctx, &user, d->tenant, d->dep_id, &k),
               KEYTIER_OK);
    return k;
}

static void sql(const char *stmt)
{
    testenv_sql(&T, stmt);
}

START_TEST(mail_shape)
{
    keytier_key *d = dep_key(&mail1);
    keytier_key_info info;
    keytier_key_get_info(d, &info);
    ck_assert_uint_eq(info.level, 0);
    ck_assert_str_eq(info.key_id, mail1.dep_id);

    char alice[KEYTIER_ID_SIZE], bob[KEYTIER_ID_SIZE];
    assert_err(keytier_key_create(d, "alice@contoso", alice), KEYTIER_OK);
    assert_err(keytier_key_create(d, "bob@contoso", bob), KEYTIER_OK);
    /* Names of mailboxes are unique per tenant and workload, across DEPs. */
    assert_err(keytier_key_create(d, "alice@contoso", NULL), KEYTIER_E_EXISTS);
    keytier_key *d2 = dep_key(&mail2);
    assert_err(keytier_key_create(d2, "alice@contoso", NULL), KEYTIER_E_EXISTS);
    /* Another tenant may use the name. */
    keytier_key *o = dep_key(&other);
    assert_err(keytier_key_create(o, "alice@contoso", NULL), KEYTIER_OK);

    keytier_key *m;
    assert_err(keytier_key_open(d, alice, &m), KEYTIER_OK);
    keytier_key_get_info(m, &info);
    ck_assert_uint_eq(info.level, 1);
    ck_assert_str_eq(info.name, "alice@contoso");
    ck_assert_str_eq(info.parent_id, mail1.dep_id);
    ck_assert_str_eq(info.dep_id, mail1.dep_id);
    ck_assert_str_eq(info.tenant, "org-1");
    /* The mail shape stops at mailboxes: items are sealed, not keyed. */
    assert_err(keytier_key_create(m, "folder", NULL), KEYTIER_E_DEPTH);

    /* The same key, three ways. */
    uint8_t env[512], pt[64];
    size_t el, pl;
    assert_err(keytier_seal(m, "i1", 2, "hello", 5, env, sizeof env, &el),
               KEYTIER_OK);
    keytier_key *m2, *m3;
    assert_err(keytier_key_open_path(ctx, &user, "org-1", alice, &m2),
               KEYTIER_OK);
    assert_err(keytier_key_open_name(ctx, &user, "org-1", "Exchange",
                                     "alice@contoso", &m3),
               KEYTIER_OK);
    assert_err(keytier_open(m2, "i1", 2, env, el, pt, sizeof pt, &pl),
               KEYTIER_OK);
    ck_assert_mem_eq(pt, "hello", 5);
    assert_err(keytier_open(m3, "i1", 2, env, el, pt, sizeof pt, &pl),
               KEYTIER_OK);
    /* Bob's key does not open Alice's items. */
    keytier_key *b;
    assert_err(keytier_key_open(d, bob, &b), KEYTIER_OK);
    assert_err(keytier_open(b, "i1", 2, env, el, pt, sizeof pt, &pl),
               KEYTIER_E_WRONG_KEY);

    /* Wrong parent: Alice is under mail1's DEP key, not mail2's. */
    assert_err(keytier_key_open(d2, alice, &m), KEYTIER_E_WRONG_PARENT);
    /* Wrong tenant. */
    assert_err(keytier_key_open(o, alice, &m), KEYTIER_E_WRONG_TENANT);
    assert_err(keytier_key_open_path(ctx, &user, "org-2", alice, &m),
               KEYTIER_E_WRONG_TENANT);
    assert_err(keytier_key_open_name(ctx, &user, "org-3", "Exchange",
                                     "alice@contoso", &m),
               KEYTIER_E_NOT_FOUND);
    assert_err(keytier_key_open(d, "00000000-0000-4000-8000-000000000000", &m),
               KEYTIER_E_NOT_FOUND);

    keytier_key_info *list;
    size_t n;
    assert_err(keytier_key_list(ctx, "org-1", mail1.dep_id, &list, &n),
               KEYTIER_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0].key_id, alice);
    ck_assert_str_eq(list[1].key_id, bob);
    ck_assert_str_eq(list[1].name, "bob@contoso");
    keytier_key_list_free(list);
    assert_err(keytier_key_list(ctx, "org-2", mail1.dep_id, &list, &n),
               KEYTIER_OK);
    ck_assert_uint_eq(n, 0);
    keytier_key_list_free(list);

    /* A DEP key cannot seal. */
    assert_err(keytier_seal(d, NULL, 0, "x", 1, env, sizeof env, &el),
               KEYTIER_E_ARGS);

    keytier_key_close(b);
    keytier_key_close(m2);
    keytier_key_close(m3);
    keytier_key_close(m);
    keytier_key_close(o);
    keytier_key_close(d2);
    keytier_key_close(d);
}
END_TEST

START_TEST(files_shape)
{
    keytier_key *d = dep_key(&files1);
    char s1[KEYTIER_ID_SIZE], s2[KEYTIER_ID_SIZE], b1[KEYTIER_ID_SIZE];
    keytier_key *site1, *site2, *blob, *blob2;
    assert_err(keytier_key_create(d, "sites/hr", s1), KEYTIER_OK);
    assert_err(keytier_key_create(d, "sites/eng", s2), KEYTIER_OK);
    assert_err(keytier_key_open(d, s1, &site1), KEYTIER_OK);
    assert_err(keytier_key_open(d, s2, &site2), KEYTIER_OK);
    assert_err(keytier_key_create(site1, "blob-0001", b1), KEYTIER_OK);
    /* Blob names need not be unique: ids are. */
    assert_err(keytier_key_create(site1, "blob-0001", NULL), KEYTIER_OK);
    assert_err(keytier_key_open(site1, b1, &blob), KEYTIER_OK);
    keytier_key_info info;
    keytier_key_get_info(blob, &info);
    ck_assert_uint_eq(info.level, 3); /* DEP -> TIK -> site -> blob */
    ck_assert_str_eq(info.parent_id, s1);
    assert_err(keytier_key_create(blob, "deeper", NULL), KEYTIER_E_DEPTH);

    /* Open the blob key from its id alone: chain DEP -> TIK -> site ->
     * blob. */
    assert_err(keytier_key_open_path(ctx, &user, "org-1", b1, &blob2),
               KEYTIER_OK);
    uint8_t env[512], pt[64];
    size_t el, pl;
    assert_err(
        keytier_seal(blob, NULL, 0, "blob data", 9, env, sizeof env, &el),
        KEYTIER_OK);
    assert_err(keytier_open(blob2, NULL, 0, env, el, pt, sizeof pt, &pl),
               KEYTIER_OK);
    ck_assert_mem_eq(pt, "blob data", 9);
    keytier_key_close(blob2);

    /* The blob is under site 1, not site 2, nor directly under the DEP. */
    assert_err(keytier_key_open(site2, b1, &blob2), KEYTIER_E_WRONG_PARENT);
    assert_err(keytier_key_open(d, b1, &blob2), KEYTIER_E_WRONG_PARENT);

    /* Move the stored blob key under site 2 in the store: it no longer
     * opens (its AAD names site 1). */
    char stmt[256];
    snprintf(stmt, sizeof stmt,
             "UPDATE tier_keys SET parent_id = '%s' WHERE key_id = '%s'", s2,
             b1);
    sql(stmt);
    assert_err(keytier_key_open(site2, b1, &blob2), KEYTIER_E_AUTH);
    assert_err(keytier_key_open_path(ctx, &user, "org-1", b1, &blob2),
               KEYTIER_E_AUTH);

    keytier_key_close(blob);
    keytier_key_close(site1);
    keytier_key_close(site2);
    keytier_key_close(d);
}
END_TEST

START_TEST(moved_to_other_tenant)
{
    keytier_key *d = dep_key(&mail1);
    char alice[KEYTIER_ID_SIZE];
    assert_err(keytier_key_create(d, "alice", alice), KEYTIER_OK);
    keytier_key_close(d);
    /* Re-home Alice's wrapped key under org-2's DEP. */
    char stmt[512];
    snprintf(stmt, sizeof stmt,
             "UPDATE tier_keys SET tenant = 'org-2', dep_id = '%s', "
             "parent_id = '%s' WHERE key_id = '%s'",
             other.dep_id, other.dep_id, alice);
    sql(stmt);
    keytier_key *o = dep_key(&other), *m;
    assert_err(keytier_key_open(o, alice, &m), KEYTIER_E_AUTH);
    assert_err(keytier_key_open_path(ctx, &user, "org-2", alice, &m),
               KEYTIER_E_AUTH);
    keytier_key_close(o);
}
END_TEST

static const char wrapped_q[] =
    "SELECT wrapped FROM tier_keys WHERE key_id = ?1";
static const char wrapped_set[] =
    "UPDATE tier_keys SET wrapped = ?2 WHERE key_id = ?1";

START_TEST(wrapped_key_tamper)
{
    /* Every single byte of a stored wrapped tier key (nonce, ciphertext,
     * tag) flipped: the key does not open. */
    keytier_key *d = dep_key(&mail1), *m;
    char alice[KEYTIER_ID_SIZE];
    assert_err(keytier_key_create(d, "alice", alice), KEYTIER_OK);
    char stmt[512];
    for (int i = 0; i < 60; i++) {
        /* Read, flip one byte, write back. */
        uint8_t w[60];
        ck_assert_uint_eq(testenv_sql_blob(&T, wrapped_q, alice, w, sizeof w),
                          60);
        w[i] ^= 0x01;
        testenv_sql_bind(&T, wrapped_set, alice, w, 60);

        m = NULL;
        assert_err(keytier_key_open(d, alice, &m), KEYTIER_E_AUTH);
        ck_assert_ptr_null(m);

        /* Restore. */
        w[i] ^= 0x01;
        testenv_sql_bind(&T, wrapped_set, alice, w, 60);
        assert_err(keytier_key_open(d, alice, &m), KEYTIER_OK);
        keytier_key_close(m);
    }
    /* A truncated wrapped key. */
    snprintf(stmt, sizeof stmt,
             "UPDATE tier_keys SET wrapped = substr(wrapped, 1, 59) WHERE "
             "key_id = '%s'",
             alice);
    sql(stmt);
    assert_err(keytier_key_open(d, alice, &m), KEYTIER_E_AUTH);
    keytier_key_close(d);
}
END_TEST

START_TEST(status_and_disabled_dep)
{
    keytier_status st;
    assert_err(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st),
               KEYTIER_OK);
    ck_assert_int_eq(st.encrypted, 0);
    ck_assert_str_eq(st.dep_id, "");

    keytier_key *d = dep_key(&mail1), *m;
    char alice[KEYTIER_ID_SIZE];
    assert_err(keytier_key_create(d, "alice", alice), KEYTIER_OK);
    assert_err(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st),
               KEYTIER_OK);
    ck_assert_int_eq(st.encrypted, 1);
    ck_assert_str_eq(st.dep_id, mail1.dep_id);
    ck_assert_str_eq(st.policy_id, mail1.policy_id);
    ck_assert_str_eq(st.key_id, alice);
    ck_assert_int_eq(st.dep_state, KEYTIER_DEP_REGISTERED);
    ck_assert_str_eq(st.dep_name, ""); /* created without a name */
    /* A named DEP's name comes with the status. */
    keytier_dep_info named;
    char bob[KEYTIER_ID_SIZE];
    assert_err(keytier_dep_create_named(ctx, "org-1", "Exchange", URI_A, URI_B,
                                        "Mail EU", &named),
               KEYTIER_OK);
    keytier_key *nd = dep_key(&named);
    assert_err(keytier_key_create(nd, "bob", bob), KEYTIER_OK);
    keytier_key_close(nd);
    assert_err(keytier_status_get(ctx, "org-1", "Exchange", "bob", &st),
               KEYTIER_OK);
    ck_assert_str_eq(st.dep_id, named.dep_id);
    ck_assert_str_eq(st.dep_name, "Mail EU");
    /* Per tenant and workload. */
    assert_err(keytier_status_get(ctx, "org-2", "Exchange", "alice", &st),
               KEYTIER_OK);
    ck_assert_int_eq(st.encrypted, 0);
    assert_err(keytier_status_get(ctx, "org-1", "SharePoint", "alice", &st),
               KEYTIER_OK);
    ck_assert_int_eq(st.encrypted, 0);

    /* A disabled DEP takes no new keys; existing ones still open. */
    assert_err(keytier_dep_disable(ctx, "org-1", mail1.dep_id), KEYTIER_OK);
    assert_err(keytier_key_create(d, "carol", NULL), KEYTIER_E_DEP_DISABLED);
    assert_err(keytier_key_open(d, alice, &m), KEYTIER_OK);
    keytier_key_close(m);
    assert_err(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st),
               KEYTIER_OK);
    ck_assert_int_eq(st.dep_state, KEYTIER_DEP_DISABLED);
    assert_err(keytier_status_get(ctx, "org-1", "Exchange", "", &st),
               KEYTIER_E_ARGS);
    keytier_key_close(d);
}
END_TEST

START_TEST(dep_copy_moved_between_deps)
{
    /* Swap customer key A's wrapped copies of two DEPs (same root): each
     * unwraps fine in the token but belongs to the other DEP; with B gone
     * the DEP key cannot be read. */
    char stmt[1024];
    snprintf(stmt, sizeof stmt,
             "UPDATE dep_roots SET wrapped = (SELECT wrapped FROM dep_roots "
             "WHERE dep_id = '%s' AND slot = 0) WHERE dep_id = '%s' AND "
             "slot = 0",
             mail2.dep_id, mail1.dep_id);
    sql(stmt);
    testenv_destroy(&T, "VaultB", "rootB");
    keytier_key *k;
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", mail1.dep_id, &k),
               KEYTIER_E_REVOKED);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "[A] authentication failed"));
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "does not belong to DEP"));
    /* mail2 itself still opens through A. */
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", mail2.dep_id, &k),
               KEYTIER_OK);
    keytier_key_close(k);
}
END_TEST

START_TEST(dep_copy_tamper)
{
    /* Every byte of customer key A's stored copy flipped, B's token not in
     * the configuration: no DEP key. */
    keytier_ctx_close(ctx);
    testenv_write_conf(&T, "pin.Other = value:0");
    ctx = testenv_ctx(&T);
    testenv_destroy(&T, "VaultB", "rootB");
    uint8_t w[64];
    size_t n = testenv_sql_blob(&T,
                                "SELECT wrapped FROM dep_roots WHERE "
                                "dep_id = ?1 AND slot = 0",
                                mail1.dep_id, w, sizeof w);
    ck_assert_uint_eq(n, 40); /* RFC 5649 of 32 bytes */
    for (size_t i = 0; i <= n; i++) {
        if (i < n)
            w[i] ^= 0x80;
        testenv_sql_bind(&T,
                         "UPDATE dep_roots SET wrapped = ?2 WHERE dep_id = "
                         "?1 AND slot = 0",
                         mail1.dep_id, w, n);
        keytier_key *k = NULL;
        keytier_err e =
            keytier_dep_key_open(ctx, &user, "org-1", mail1.dep_id, &k);
        if (i < n) {
            assert_err(e, KEYTIER_E_REVOKED);
            ck_assert_ptr_null(k);
            ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(),
                                         "[A] token operation "
                                         "failed"));
            w[i] ^= 0x80;
        } else {
            assert_err(e, KEYTIER_OK); /* restored: opens again */
            keytier_key_close(k);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tier");
    TCase *tc = tcase_create("tier");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, mail_shape);
    tcase_add_test(tc, files_shape);
    tcase_add_test(tc, moved_to_other_tenant);
    tcase_add_test(tc, wrapped_key_tamper);
    tcase_add_test(tc, status_and_disabled_dep);
    tcase_add_test(tc, dep_copy_moved_between_deps);
    tcase_add_test(tc, dep_copy_tamper);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
