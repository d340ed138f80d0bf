/* Integration on real tokens of two implementations: customer key A on
 * SoftHSM2, customer key B and the availability key on keytier's own
 * module.  Data written with both tokens configured reads back through B
 * alone (SoftHSM2 removed from the configuration) and through A alone
 * (keytier's module removed), and data written through one side alone
 * reads back through the other. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testenv.h"

static struct testenv T;
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-1", NULL};

static void assert_err(keytier_err got, keytier_err want)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
}

static void setup(void)
{
    testenv_setup(&T);
    testenv_keytier_token(&T, "KVaultB");
    testenv_keytier_token(&T, "KService");
    T.service = "KService";
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "KVaultB", "rootB", 0);
}

static void teardown(void)
{
    testenv_teardown(&T);
}

/* Seals `text` for item `item` in mailbox `mbx` (created if absent). */
static size_t write_item(keytier_ctx *ctx, const char *dep_id, const char *mbx,
                         const char *item, const char *text, uint8_t *env,
                         size_t cap)
{
    keytier_key *k = NULL;
    keytier_status st;
    assert_err(keytier_status_get(ctx, "org-1", "Exchange", mbx, &st),
               KEYTIER_OK);
    if (!st.encrypted) {
        keytier_key *d;
        assert_err(keytier_dep_key_open(ctx, &user, "org-1", dep_id, &d),
                   KEYTIER_OK);
        assert_err(keytier_key_create(d, mbx, NULL), KEYTIER_OK);
        keytier_key_close(d);
    }
    assert_err(keytier_key_open_name(ctx, &user, "org-1", "Exchange", mbx, &k),
               KEYTIER_OK);
    size_t len;
    assert_err(
        keytier_seal(k, item, strlen(item), text, strlen(text), env, cap, &len),
        KEYTIER_OK);
    keytier_key_close(k);
    return len;
}

static void read_item(keytier_ctx *ctx, const uint8_t *env, size_t len,
                      const char *item, const char *text)
{
    char tenant[KEYTIER_TENANT_MAX + 1], kid[KEYTIER_ID_SIZE];
    assert_err(keytier_envelope_peek(env, len, tenant, kid), KEYTIER_OK);
    keytier_key *k;
    assert_err(keytier_key_open_path(ctx, &user, tenant, kid, &k), KEYTIER_OK);
    char out[256];
    size_t n;
    assert_err(
        keytier_open(k, item, strlen(item), env, len, out, sizeof out, &n),
        KEYTIER_OK);
    ck_assert_uint_eq(n, strlen(text));
    ck_assert_mem_eq(out, text, n);
    keytier_key_close(k);
}

static keytier_ctx *ctx_mods(int mods)
{
    testenv_write_conf_mods(&T, mods, NULL);
    return testenv_ctx(&T);
}

START_TEST(a_on_softhsm_b_on_keytier_aes)
{
    keytier_ctx *ctx = ctx_mods(MOD_SOFTHSM | MOD_KEYTIER);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("VaultA", "rootA"),
                                  testenv_uri("KVaultB", "rootB"), &d),
               KEYTIER_OK);
    ck_assert_ptr_nonnull(
        strstr(d.root_uri[KEYTIER_ROOT_AVAIL], "token=KService"));
    ck_assert_ptr_nonnull(
        strstr(d.root_uri[KEYTIER_ROOT_AVAIL], "manufacturer=keytier"));
    uint8_t e1[512], e2[512], e3[512];
    size_t l1 = write_item(ctx, d.dep_id, "alice", "item-1", "written by both",
                           e1, sizeof e1);
    keytier_ctx_close(ctx);

    /* B alone: SoftHSM2 (A's token) is not in the configuration. */
    ctx = ctx_mods(MOD_KEYTIER);
    for (int i = 0; i < 4; i++) /* whichever key is picked first */
        read_item(ctx, e1, l1, "item-1", "written by both");
    size_t l2 = write_item(ctx, d.dep_id, "bob", "item-2",
                           "written through B alone", e2, sizeof e2);
    keytier_ctx_close(ctx);

    /* A alone: keytier's module (B's token) is not in the configuration. */
    ctx = ctx_mods(MOD_SOFTHSM);
    for (int i = 0; i < 4; i++) {
        read_item(ctx, e1, l1, "item-1", "written by both");
        read_item(ctx, e2, l2, "item-2", "written through B alone");
    }
    size_t l3 = write_item(ctx, d.dep_id, "carol", "item-3",
                           "written through A alone", e3, sizeof e3);
    keytier_ctx_close(ctx);

    /* And back through B alone. */
    ctx = ctx_mods(MOD_KEYTIER);
    read_item(ctx, e3, l3, "item-3", "written through A alone");
    read_item(ctx, e2, l2, "item-2", "written through B alone");
    keytier_ctx_close(ctx);

    /* Neither customer token configured, nor the service token: an outage
     * (system errors) with no availability key reachable either. */
    testenv_write_conf_mods(&T, 0, NULL);
    ctx = testenv_ctx(&T);
    keytier_key *k;
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
               KEYTIER_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "[A] no configured token matches"));
    keytier_ctx_close(ctx);
}
END_TEST

START_TEST(keytier_refuses_extractable_and_same_token)
{
    testenv_root_aes(&T, "KVaultB", "leaky", ROOT_EXTRACTABLE);
    testenv_root_aes(&T, "KVaultB", "rootB2", 0);
    keytier_ctx *ctx = ctx_mods(MOD_SOFTHSM | MOD_KEYTIER);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("VaultA", "rootA"),
                                  testenv_uri("KVaultB", "leaky"), &d),
               KEYTIER_E_KEY_EXTRACTABLE);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("KVaultB", "rootB2"),
                                  testenv_uri("KVaultB", "rootB"), &d),
               KEYTIER_E_SAME_TOKEN);
    keytier_ctx_close(ctx);
}
END_TEST

START_TEST(rsa_roots_on_keytier)
{
    /* RSA roots: B is an RSA-2048 key pair on keytier's module, which does
     * OAEP with SHA-256; the files workload's availability key is RSA-2048
     * on the keytier service token.  Blobs written with both tokens read
     * back through the RSA root alone. */
    testenv_root_rsa(&T, "KVaultB", "rsaB", 0);
    keytier_ctx *ctx = ctx_mods(MOD_SOFTHSM | MOD_KEYTIER);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint",
                                  testenv_uri("VaultA", "rootA"),
                                  testenv_uri("KVaultB", "rsaB"), &d),
               KEYTIER_OK);
    ck_assert_str_eq(d.wrap_mech[KEYTIER_ROOT_A], "aes-key-wrap-pad");
    ck_assert_str_eq(d.wrap_mech[KEYTIER_ROOT_B], "rsa-oaep-sha256");
    ck_assert_str_eq(d.wrap_mech[KEYTIER_ROOT_AVAIL], "rsa-oaep-sha256");
    ck_assert_ptr_nonnull(
        strstr(d.root_uri[KEYTIER_ROOT_AVAIL], "type=private"));
    keytier_key *dk, *site, *blob;
    char site_id[KEYTIER_ID_SIZE], blob_id[KEYTIER_ID_SIZE];
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk),
               KEYTIER_OK);
    assert_err(keytier_key_create(dk, "sites/finance", site_id), KEYTIER_OK);
    assert_err(keytier_key_open(dk, site_id, &site), KEYTIER_OK);
    assert_err(keytier_key_create(site, "q3.xlsx", blob_id), KEYTIER_OK);
    assert_err(keytier_key_open(site, blob_id, &blob), KEYTIER_OK);
    uint8_t env[256];
    size_t el;
    assert_err(keytier_seal(blob, "q3", 2, "figures", 7, env, sizeof env, &el),
               KEYTIER_OK);
    keytier_key_close(blob);
    keytier_key_close(site);
    keytier_key_close(dk);
    keytier_ctx_close(ctx);

    ctx = ctx_mods(MOD_KEYTIER); /* A's SoftHSM2 token gone */
    for (int i = 0; i < 3; i++)
        read_item(ctx, env, el, "q3", "figures");
    keytier_ctx_close(ctx);
    ctx = ctx_mods(MOD_SOFTHSM); /* the RSA root's token gone */
    read_item(ctx, env, el, "q3", "figures");
    keytier_ctx_close(ctx);
}
END_TEST

struct worker {
    keytier_ctx *ctx;
    const char *key_id;
    int ok;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    keytier_request req = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE,
                           "thread", NULL};
    for (int i = 0; i < 15; i++) {
        keytier_key *k;
        if (keytier_key_open_path(w->ctx, &req, "org-1", w->key_id, &k) !=
            KEYTIER_OK)
            return NULL;
        uint8_t env[256], out[64];
        size_t el, ol;
        keytier_err e =
            keytier_seal(k, NULL, 0, "abc", 3, env, sizeof env, &el);
        if (e == KEYTIER_OK)
            e = keytier_open(k, NULL, 0, env, el, out, sizeof out, &ol);
        keytier_key_close(k);
        if (e != KEYTIER_OK || ol != 3 || memcmp(out, "abc", 3) != 0)
            return NULL;
    }
    w->ok = 1;
    return NULL;
}

START_TEST(threads_share_one_context)
{
    /* Sessions are pooled per token and shared by threads: 4 threads each
     * unwrap the DEP key (on both tokens, in random order) 15 times. */
    keytier_ctx *ctx = ctx_mods(MOD_SOFTHSM | MOD_KEYTIER);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("VaultA", "rootA"),
                                  testenv_uri("KVaultB", "rootB"), &d),
               KEYTIER_OK);
    keytier_key *dk;
    char mbx[KEYTIER_ID_SIZE];
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dk),
               KEYTIER_OK);
    assert_err(keytier_key_create(dk, "shared", mbx), KEYTIER_OK);
    keytier_key_close(dk);
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ctx, mbx, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].ok, 1);
    }
    keytier_ctx_close(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration");
    TCase *tc = tcase_create("integration");
    tcase_set_timeout(tc, 200);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_on_softhsm_b_on_keytier_aes);
    tcase_add_test(tc, keytier_refuses_extractable_and_same_token);
    tcase_add_test(tc, threads_share_one_context);
    tcase_add_test(tc, rsa_roots_on_keytier);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
