/* lib/lifecycle/lifecycle.c and purge.c: rolling customer roots (AES and
 * RSA, keytier's module and SoftHSM2) and purging a tenant, on real
 * tokens. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "kt_lib.h" /* ctx->store: a roll interrupted by a crash */
#include "lctest.h"

static struct testenv T;

static void setup(void)
{
    testenv_setup(&T);
}

static void teardown(void)
{
    testenv_teardown(&T);
}

static const char *const MSG = "mail item written before the lifecycle event";

/* ---- roll ------------------------------------------------------------- */

/* Creates a DEP (A, B), a mailbox with one sealed item, rolls `slot` to
 * new_uri and checks data, store and audit. */
static void roll_case(const char *uri_a, const char *uri_b, int slot,
                      const char *new_uri, const char *expect_mech)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info dep, after;
    keytier_key *dk = NULL;
    uint8_t env[1024], before[2048];
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange", uri_a, uri_b, &dep));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", dep.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    size_t n = lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env, sizeof env);
    long long items =
        testenv_sql_int(&T, "SELECT count(*) FROM tier_keys", NULL);
    /* The tier key's stored bytes must not change in a roll. */
    static const char alice_q[] =
        "SELECT wrapped FROM tier_keys WHERE name = 'alice'";
    size_t blen = testenv_sql_blob(&T, alice_q, NULL, before, sizeof before);

    assert_ok(
        keytier_dep_roll(ctx, "org-1", dep.dep_id, slot, new_uri, &after));
    ck_assert_str_eq(after.root_uri[slot], new_uri);
    ck_assert_str_eq(after.root_uri[1 - slot], dep.root_uri[1 - slot]);
    ck_assert_str_eq(after.wrap_mech[slot], expect_mech);
    ck_assert_int_eq(after.state, KEYTIER_DEP_REGISTERED);
    /* Data written before the roll reads back after it. */
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));

    /* The store holds only the new copy: one row per slot, the new URI,
     * nothing pending; the tier keys are untouched byte for byte. */
    ck_assert_int_eq(testenv_sql_int(&T,
                                     "SELECT count(*) FROM dep_roots WHERE "
                                     "dep_id = ?1",
                                     dep.dep_id),
                     3);
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     0);
    ck_assert_int_eq(
        testenv_sql_int(&T, "SELECT count(*) FROM dep_roots WHERE uri = ?1",
                        dep.root_uri[slot]),
        0);
    ck_assert_int_eq(
        testenv_sql_int(&T, "SELECT count(*) FROM tier_keys", NULL), items);
    uint8_t now[2048];
    ck_assert_uint_eq(testenv_sql_blob(&T, alice_q, NULL, now, sizeof now),
                      blen);
    ck_assert_mem_eq(now, before, blen);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Customer key rolled\""), 1);
    char apath[4096];
    uint64_t bad = 0;
    assert_ok(keytier_audit_log_path(ctx, apath, sizeof apath));
    assert_ok(keytier_audit_verify(apath, &bad, NULL));
    keytier_ctx_close(ctx);
}

/* The new copy alone opens the data: the other customer key and the old
 * version are destroyed, the read goes through the new version. */
static void read_through_new_only(const char *token_old, const char *old_label,
                                  const char *token_other,
                                  const char *other_label)
{
    testenv_destroy(&T, token_old, old_label);
    testenv_destroy(&T, token_other, other_label);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_key *k = NULL;
    assert_ok(
        keytier_key_open_name(ctx, &lc_user, "org-1", "Exchange", "alice", &k));
    keytier_key_close(k);
    keytier_avail_stats s;
    assert_ok(keytier_avail_stats_get(ctx, &s));
    ck_assert_uint_eq(s.fallbacks, 0);
    keytier_ctx_close(ctx);
}

START_TEST(roll_aes_softhsm2)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_write_conf(&T, NULL);
    roll_case(testenv_uri("VaultA", "A1"), testenv_uri("VaultB", "B1"),
              KEYTIER_ROOT_A, testenv_uri("VaultA", "A2"), "aes-key-wrap-pad");
    read_through_new_only("VaultA", "A1", "VaultB", "B1");
}
END_TEST

START_TEST(roll_aes_keytier)
{
    testenv_keytier_token(&T, "KtVault");
    testenv_root_aes(&T, "KtVault", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "KtVault", "B2", 0);
    testenv_write_conf(&T, NULL);
    roll_case(testenv_uri("VaultA", "A1"), testenv_uri("KtVault", "B1"),
              KEYTIER_ROOT_B, testenv_uri("KtVault", "B2"), "aes-key-wrap-pad");
    read_through_new_only("KtVault", "B1", "VaultA", "A1");
}
END_TEST

START_TEST(roll_rsa_keytier)
{
    testenv_keytier_token(&T, "KtVault");
    testenv_root_rsa(&T, "KtVault", "R1", 0);
    testenv_root_rsa(&T, "KtVault", "R2", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_write_conf(&T, NULL);
    roll_case(testenv_uri("KtVault", "R1"), testenv_uri("VaultB", "B1"),
              KEYTIER_ROOT_A, testenv_uri("KtVault", "R2"), "rsa-oaep-sha256");
    read_through_new_only("KtVault", "R1", "VaultB", "B1");
}
END_TEST

/* SoftHSM2 2.6 does RSA-OAEP with SHA-1 only: with allow_oaep_sha1 the
 * new copy is made and read back with SHA-1, and recorded so. */
START_TEST(roll_rsa_softhsm2)
{
    testenv_root_rsa(&T, "VaultA", "R1", 0);
    testenv_root_rsa(&T, "VaultA", "R2", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_write_conf(&T, "allow_oaep_sha1 = yes");
    roll_case(testenv_uri("VaultA", "R1"), testenv_uri("VaultB", "B1"),
              KEYTIER_ROOT_A, testenv_uri("VaultA", "R2"), "rsa-oaep-sha1");
    read_through_new_only("VaultA", "R1", "VaultB", "B1");
}
END_TEST

/* Bad new versions are refused with their error and change nothing. */
START_TEST(roll_refused)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "Ext", ROOT_EXTRACTABLE);
    testenv_root_aes(&T, "VaultA", "NoUnwrap", ROOT_NO_UNWRAP);
    testenv_root_aes(&T, "VaultB", "InB", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info dep;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &dep));
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "Ext"), NULL),
               KEYTIER_E_KEY_EXTRACTABLE);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "Ext"));
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "NoUnwrap"), NULL),
               KEYTIER_E_KEY_USAGE);
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultB", "InB"), NULL),
               KEYTIER_E_SAME_TOKEN);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "VaultB"));
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "Missing"), NULL),
               KEYTIER_E_KEY_NOT_FOUND);
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "A1"), NULL),
               KEYTIER_E_EXISTS);
    assert_err(keytier_dep_roll(ctx, "org-2", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "A2"), NULL),
               KEYTIER_E_WRONG_TENANT);
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_AVAIL,
                                testenv_uri("VaultA", "A2"), NULL),
               KEYTIER_E_ARGS);
    /* Nothing changed. */
    keytier_dep_info now;
    assert_ok(keytier_dep_show(ctx, "org-1", dep.dep_id, &now));
    ck_assert_str_eq(now.root_uri[0], dep.root_uri[0]);
    ck_assert_int_eq(now.state, KEYTIER_DEP_REGISTERED);
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     0);
    assert_ok(keytier_dep_disable(ctx, "org-1", dep.dep_id));
    testenv_root_aes(&T, "VaultA", "A2", 0);
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "A2"), NULL),
               KEYTIER_E_DEP_STATE);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Customer key rolled\""), 0);
    keytier_ctx_close(ctx);
}
END_TEST

/* Security review: a roll must not resurrect a revoked DEP.  The customer
 * revokes both customer keys (`how`); rolling A to a fresh key would, through
 * the availability key, rewrap the DEP key under a key that works and users
 * would read again.  It is refused (KEYTIER_E_REVOKED, naming the DEP and
 * both keys' errors), nothing in the store changes, no availability key is
 * used, and users stay revoked. */
static void roll_revoked_case(enum lc_revoke how)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info dep, now;
    keytier_key *dk = NULL;
    uint8_t env[1024];
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &dep));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", dep.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    size_t n = lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env, sizeof env);
    static const char roots_q[] =
        "SELECT slot, uri, mech, wrapped FROM dep_roots WHERE dep_id = ?1 "
        "ORDER BY slot";
    static const char tier_q[] =
        "SELECT dep_id, wrapped FROM tier_keys WHERE name = 'alice'";
    char *roots_before = testenv_sql_rows(&T, roots_q, dep.dep_id, 4);
    char *tier_before = testenv_sql_rows(&T, tier_q, NULL, 2);
    ck_assert_ptr_nonnull(strstr(roots_before, "A1"));
    keytier_ctx_close(ctx);

    lc_revoke_root(&T, how, "VaultA", "A1");
    lc_revoke_root(&T, how, "VaultB", "B1");
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                                testenv_uri("VaultA", "A2"), &now),
               KEYTIER_E_REVOKED);
    const char *detail = keytier_last_error_detail();
    ck_assert_msg(strstr(detail, dep.dep_id) && strstr(detail, "[A] ") &&
                      strstr(detail, "[B] ") &&
                      strstr(detail, testenv_uri("VaultA", "A1")) &&
                      strstr(detail, testenv_uri("VaultB", "B1")),
                  "%s", detail);

    /* Nothing changed: the old wrapped copies byte for byte, nothing
     * pending, the DEP still registered, no roll record, no fallback. */
    char *roots_after = testenv_sql_rows(&T, roots_q, dep.dep_id, 4);
    char *tier_after = testenv_sql_rows(&T, tier_q, NULL, 2);
    ck_assert_str_eq(roots_after, roots_before);
    ck_assert_str_eq(tier_after, tier_before);
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     0);
    assert_ok(keytier_dep_show(ctx, "org-1", dep.dep_id, &now));
    ck_assert_int_eq(now.state, KEYTIER_DEP_REGISTERED);
    ck_assert_str_eq(now.root_uri[KEYTIER_ROOT_A],
                     dep.root_uri[KEYTIER_ROOT_A]);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Customer key rolled\""), 0);
    ck_assert_int_eq(lc_audit_count(ctx, "Fallback to availability key"), 0);
    ck_assert_int_ge(lc_audit_count(ctx, "\"Operation\":\"roll\""), 1);

    /* Users are still revoked. */
    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG),
        KEYTIER_E_REVOKED);
    keytier_avail_stats st;
    assert_ok(keytier_avail_stats_get(ctx, &st));
    ck_assert_uint_eq(st.fallbacks, 0);
    char apath[4096];
    uint64_t bad = 0;
    assert_ok(keytier_audit_log_path(ctx, apath, sizeof apath));
    assert_ok(keytier_audit_verify(apath, &bad, NULL));
    free(roots_before);
    free(roots_after);
    free(tier_before);
    free(tier_after);
    keytier_ctx_close(ctx);
}

START_TEST(roll_revoked_roots_destroyed)
{
    roll_revoked_case(LC_DESTROY);
}
END_TEST

START_TEST(roll_revoked_unwrap_off)
{
    roll_revoked_case(LC_UNWRAP_OFF);
}
END_TEST

/* A roll interrupted after storing its new copy (process killed before the
 * read-back): the DEP shows `rolling`, readers keep using the old copies,
 * and the next roll drops the untrusted pending copy and completes. */
START_TEST(roll_interrupted)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A2", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info dep, now;
    keytier_key *dk = NULL;
    uint8_t env[1024];
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &dep));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", dep.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    size_t n = lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env, sizeof env);
    struct kt_root_rec junk;
    memset(&junk, 0, sizeof junk);
    snprintf(junk.uri, sizeof junk.uri, "%s", testenv_uri("VaultA", "A2"));
    snprintf(junk.mech, sizeof junk.mech, "aes-key-wrap-pad");
    junk.wrapped_len = 40;
    memset(junk.wrapped, 0xA5, junk.wrapped_len);
    assert_ok(kt_store_roll_begin(ctx->store, dep.dep_id, KEYTIER_ROOT_A, &junk,
                                  dep.root_uri[KEYTIER_ROOT_B], 1));
    assert_ok(keytier_dep_show(ctx, "org-1", dep.dep_id, &now));
    ck_assert_int_eq(now.state, KEYTIER_DEP_ROLLING);
    ck_assert_str_eq(now.root_uri[0], dep.root_uri[0]); /* old copy kept */
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    assert_ok(keytier_dep_roll(ctx, "org-1", dep.dep_id, KEYTIER_ROOT_A,
                               testenv_uri("VaultA", "A2"), &now));
    ck_assert_int_eq(now.state, KEYTIER_DEP_REGISTERED);
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     0);
    keytier_ctx_close(ctx);
    read_through_new_only("VaultA", "A1", "VaultB", "B1");
}
END_TEST

/* ---- purge ------------------------------------------------------------ */

/* The customer's own action on a SoftHSM2 root: CKA_UNWRAP turned off
 * (off) or the objects labelled `label` counted. */
static CK_ULONG softhsm_root(const char *token, const char *label, bool off)
{
    CK_FUNCTION_LIST *fl = p11_kit_module_load(T.softhsm_module, 0);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, count = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    ck_assert_ptr_nonnull(fl);
    ck_assert_int_eq(p11_kit_module_initialize(fl), CKR_OK);
    ck_assert_int_eq(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n && s == CK_INVALID_HANDLE; i++) {
        CK_TOKEN_INFO ti;
        size_t l = strlen(token);
        ck_assert_int_eq(fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, token, l) == 0 && ti.label[l] == ' ')
            ck_assert_int_eq(
                fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                  NULL, NULL, &s),
                CKR_OK);
    }
    ck_assert(s != CK_INVALID_HANDLE);
    CK_RV rv = fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4);
    ck_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
    CK_ATTRIBUTE find[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h[4];
    ck_assert_int_eq(fl->C_FindObjectsInit(s, find, 1), CKR_OK);
    ck_assert_int_eq(fl->C_FindObjects(s, h, 4, &count), CKR_OK);
    fl->C_FindObjectsFinal(s);
    if (off) {
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE set[] = {{CKA_UNWRAP, &no, sizeof no}};
        ck_assert_uint_eq(count, 1);
        ck_assert_int_eq(fl->C_SetAttributeValue(s, h[0], set, 1), CKR_OK);
    }
    fl->C_CloseSession(s);
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
    return count;
}

/* In a fresh process: every read of org-1 fails as purged, org-2's item
 * opens.  Exit status 0 when so. */
static void fresh_process_check(const uint8_t *env1, size_t n1,
                                const uint8_t *env2, size_t n2)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        keytier_ctx *ctx = NULL;
        if (keytier_ctx_open(T.conf, &ctx) != KEYTIER_OK)
            _exit(10);
        keytier_key *k = NULL;
        if (lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env1, n1,
                    MSG) != KEYTIER_E_PURGED)
            _exit(11);
        if (lc_open(ctx, &lc_index, "org-1", "Exchange", "alice", env1, n1,
                    MSG) != KEYTIER_E_PURGED)
            _exit(12);
        keytier_dep_info *l = NULL;
        size_t c = 0;
        if (keytier_dep_list(ctx, "org-1", NULL, &l, &c) != KEYTIER_OK ||
            c != 1)
            _exit(13);
        if (keytier_dep_key_open(ctx, &lc_index, "org-1", l[0].dep_id, &k) !=
            KEYTIER_E_PURGED)
            _exit(14);
        keytier_dep_list_free(l);
        if (lc_open(ctx, &lc_user, "org-2", "Exchange", "bob", env2, n2,
                    "org-2 stays") != KEYTIER_OK)
            _exit(15);
        keytier_ctx_close(ctx);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "fresh process check failed (status %d)", status);
}

START_TEST(purge_tenant)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultA", "A9", 0);
    testenv_root_aes(&T, "VaultB", "B9", 0);
    /* The cache is on: purge must empty it. */
    testenv_write_conf(&T, "avail.cache_ttl_ms = 600000");
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-2", "Exchange",
                                 testenv_uri("VaultA", "A9"),
                                 testenv_uri("VaultB", "B9"), &d2));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-2", d2.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "bob", NULL));
    keytier_key_close(dk);
    uint8_t env1[1024], env2[1024];
    size_t n1 =
        lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env1, sizeof env1);
    size_t n2 = lc_seal(ctx, "org-2", "Exchange", "bob", "org-2 stays", env2,
                        sizeof env2);
    keytier_ctx_close(ctx);
    /* The metadata as it was before the purge, byte for byte. */
    char snap[sizeof T.store];
    testenv_store_copy(&T, snap, sizeof snap);

    ctx = testenv_ctx(&T);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env1, n1, MSG));
    keytier_avail_stats s;
    assert_ok(keytier_avail_stats_get(ctx, &s));
    ck_assert_uint_ge(s.cache_entries, 1);
    /* The customer had already turned one root off: destroyed all the
     * same. */
    softhsm_root("VaultB", "B1", true);
    keytier_purge_report rep;
    assert_ok(
        keytier_tenant_purge(ctx, "org-1", KEYTIER_PURGE_CUSTOMER_KEYS, &rep));
    ck_assert_uint_eq(softhsm_root("VaultA", "A1", false), 0);
    ck_assert_uint_eq(softhsm_root("VaultB", "B1", false), 0);
    ck_assert_uint_eq(softhsm_root("VaultA", "A9", false), 1);
    ck_assert_uint_eq(rep.deps, 1);
    ck_assert_uint_eq(rep.avail_keys_destroyed, 1);
    ck_assert_uint_eq(rep.customer_keys_destroyed, 2);
    ck_assert_uint_eq(rep.tier_keys_deleted, 1);
    ck_assert_uint_ge(rep.cache_entries_wiped, 1);

    /* This process: nothing of org-1 opens, whatever the request kind,
     * and the error says the tenant was purged. */
    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env1, n1, MSG),
        KEYTIER_E_PURGED);
    assert_err(
        lc_open(ctx, &lc_index, "org-1", "Exchange", "alice", env1, n1, MSG),
        KEYTIER_E_PURGED);
    assert_err(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk),
               KEYTIER_E_PURGED);
    keytier_request recover = {KEYTIER_REQUEST_INTERNAL,
                               KEYTIER_INTERNAL_RECOVER, "r", NULL};
    assert_err(keytier_dep_key_open(ctx, &recover, "org-1", d1.dep_id, &dk),
               KEYTIER_E_PURGED);
    keytier_dep_info now;
    assert_ok(keytier_dep_show(ctx, "org-1", d1.dep_id, &now));
    ck_assert_int_eq(now.state, KEYTIER_DEP_PURGED);
    ck_assert_int_eq(testenv_sql_int(&T,
                                     "SELECT count(*) FROM dep_roots WHERE "
                                     "dep_id = ?1",
                                     d1.dep_id),
                     0);
    /* The other tenant is untouched. */
    assert_ok(lc_open(ctx, &lc_user, "org-2", "Exchange", "bob", env2, n2,
                      "org-2 stays"));
    /* Audited, chain intact; a second purge finds nothing left. */
    ck_assert_int_eq(lc_audit_count(ctx, "\"Tenant purged\""), 1);
    char apath[4096];
    assert_ok(keytier_audit_log_path(ctx, apath, sizeof apath));
    uint64_t bad = 0;
    assert_ok(keytier_audit_verify(apath, &bad, NULL));
    assert_ok(keytier_tenant_purge(ctx, "org-1", 0, &rep));
    ck_assert_uint_eq(rep.deps, 0);
    keytier_ctx_close(ctx);

    /* A fresh process. */
    fresh_process_check(env1, n1, env2, n2);

    /* Even the old metadata restored: the envelope written before the
     * purge does not open, for a user or an internal request (the roots
     * that could unwrap its DEP key are gone). */
    snprintf(T.store, sizeof T.store, "%s", snap);
    testenv_write_conf(&T, NULL);
    ctx = testenv_ctx(&T);
    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env1, n1, MSG),
        KEYTIER_E_REVOKED);
    assert_err(
        lc_open(ctx, &lc_index, "org-1", "Exchange", "alice", env1, n1, MSG),
        KEYTIER_E_REVOKED);
    assert_err(
        lc_open(ctx, &recover, "org-1", "Exchange", "alice", env1, n1, MSG),
        KEYTIER_E_REVOKED);
    keytier_ctx_close(ctx);
}
END_TEST

/* Without the customer keys: the store alone shreds the tenant. */
START_TEST(purge_keeps_customer_keys)
{
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1;
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    keytier_purge_report rep;
    assert_ok(keytier_tenant_purge(ctx, "org-1", 0, &rep));
    ck_assert_uint_eq(rep.avail_keys_destroyed, 1);
    ck_assert_uint_eq(rep.customer_keys_destroyed, 0);
    assert_err(
        keytier_key_open_name(ctx, &lc_user, "org-1", "Exchange", "alice", &dk),
        KEYTIER_E_PURGED);
    assert_err(keytier_dep_key_open(ctx, &lc_user, "org-1", d1.dep_id, &dk),
               KEYTIER_E_PURGED);
    /* The customer's roots are still there for the customer. */
    testenv_destroy(&T, "VaultA", "A1");
    keytier_ctx_close(ctx);
}
END_TEST

/* org-1 and org-2 share root A1, named by two URIs (by id, by label);
 * org-2's roots are stored as before identities were recorded.  org-1's
 * purge keeps A1 for org-2, destroys the rest, and its dry run changes
 * nothing. */
START_TEST(purge_keeps_shared_key)
{
    static const char by_id[] = "pkcs11:token=VaultA;id=%41%31";
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_root_aes(&T, "VaultB", "B2", 0);
    testenv_write_conf(&T, NULL);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d1, d2;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange", by_id,
                                 testenv_uri("VaultB", "B1"), &d1));
    assert_ok(keytier_dep_create(ctx, "org-2", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B2"), &d2));
    /* One key, whatever its URI. */
    ck_assert_int_eq(
        testenv_sql_int(&T,
                        "SELECT count(DISTINCT ident) FROM dep_roots "
                        "WHERE slot = 0",
                        NULL),
        1);
    char sql[200];
    snprintf(sql, sizeof sql,
             "UPDATE dep_roots SET ident = NULL WHERE dep_id = '%s'",
             d2.dep_id);
    testenv_sql(&T, sql);
    static const char legacy_q[] =
        "SELECT count(*) FROM dep_roots WHERE ident IS NULL AND dep_id = ?1";

    keytier_purge_detail det;
    assert_ok(keytier_tenant_purge_detailed(
        ctx, NULL, "org-1", KEYTIER_PURGE_CUSTOMER_KEYS | KEYTIER_PURGE_DRY_RUN,
        &det));
    ck_assert_uint_eq(det.n_keys, 3);
    ck_assert_int_eq(det.keys[0].action, KEYTIER_PURGE_KEPT);
    ck_assert_int_eq(det.keys[1].action, KEYTIER_PURGE_WOULD_DESTROY);
    ck_assert_int_eq(det.keys[2].action, KEYTIER_PURGE_WOULD_DESTROY);
    keytier_purge_detail_free(&det);
    ck_assert_uint_eq(softhsm_root("VaultB", "B1", false), 1);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Tenant purged\""), 0);
    ck_assert_int_eq(testenv_sql_int(&T, legacy_q, d2.dep_id), 3);
    keytier_dep_info now;
    assert_ok(keytier_dep_show(ctx, "org-1", d1.dep_id, &now));
    ck_assert_int_eq(now.state, KEYTIER_DEP_REGISTERED);

    assert_ok(keytier_tenant_purge_detailed(ctx, NULL, "org-1",
                                            KEYTIER_PURGE_CUSTOMER_KEYS, &det));
    ck_assert_uint_eq(det.keys_kept, 1);
    ck_assert_str_eq(det.keys[0].uri, by_id);
    ck_assert_int_eq(det.keys[0].slot, KEYTIER_ROOT_A);
    ck_assert_int_eq(det.keys[0].action, KEYTIER_PURGE_KEPT);
    char why[256];
    snprintf(why, sizeof why, "customer key A of DEP %s (tenant org-2)",
             d2.dep_id);
    ck_assert_str_eq(det.keys[0].reason, why);
    ck_assert_int_eq(det.keys[1].action, KEYTIER_PURGE_DESTROYED);
    ck_assert_int_eq(det.keys[2].action, KEYTIER_PURGE_DESTROYED);
    ck_assert_uint_eq(det.report.customer_keys_destroyed, 1);
    ck_assert_uint_eq(det.report.avail_keys_destroyed, 1);
    keytier_purge_detail_free(&det);
    ck_assert_uint_eq(softhsm_root("VaultA", "A1", false), 1);
    ck_assert_uint_eq(softhsm_root("VaultB", "B1", false), 0);
    /* What the purge looked up of org-2's roots is recorded. */
    ck_assert_int_eq(testenv_sql_int(&T, legacy_q, d2.dep_id), 0);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Key kept at purge\""), 1);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Action\":\"kept\""), 1);
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-2", d2.dep_id, &dk));
    keytier_key_close(dk);
    keytier_ctx_close(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc = tcase_create("roll");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, roll_aes_softhsm2);
    tcase_add_test(tc, roll_aes_keytier);
    tcase_add_test(tc, roll_rsa_keytier);
    tcase_add_test(tc, roll_rsa_softhsm2);
    tcase_add_test(tc, roll_refused);
    tcase_add_test(tc, roll_interrupted);
    tcase_add_test(tc, roll_revoked_roots_destroyed);
    tcase_add_test(tc, roll_revoked_unwrap_off);
    suite_add_tcase(s, tc);
    tc = tcase_create("purge");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, purge_tenant);
    tcase_add_test(tc, purge_keeps_customer_keys);
    tcase_add_test(tc, purge_keeps_shared_key);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
