/* DEPs on real SoftHSM2 tokens: create, show, list, disable, every error,
 * and reading the DEP key through either customer key. */
#include <check.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "kt_lib.h"
#include "p11call.h"
#include "testenv.h"

static struct testenv T;
static keytier_ctx *ctx;
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-1", NULL};

static void setup(void)
{
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    testenv_write_conf(&T, NULL);
    ctx = testenv_ctx(&T);
}

static void teardown(void)
{
    keytier_ctx_close(ctx);
    ctx = NULL;
    testenv_teardown(&T);
}

#define URI_A testenv_uri("VaultA", "rootA")
#define URI_B testenv_uri("VaultB", "rootB")

static void assert_err(keytier_err got, keytier_err want, const char *needle)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
    if (needle)
        ck_assert_msg(strstr(keytier_last_error_detail(), needle) != NULL,
                      "detail '%s' lacks '%s'", keytier_last_error_detail(),
                      needle);
}

/* A failed creation destroys the availability key it made even once its
 * handle is stale: a token error closes the session (kt_session_put), the
 * last one of the service token logs the application out, and keytier's
 * module then invalidates every handle of a private object for good
 * (PKCS#11 v2.40 §5.6 C_Logout).  Destroyed by that handle alone, the key
 * stayed in the service token, an orphan nothing names. */
START_TEST(avail_key_destroyed_after_logout)
{
    testenv_keytier_token(&T, "KService");
    T.service = "KService";
    testenv_write_conf(&T, NULL);
    keytier_ctx *c = testenv_ctx(&T);
    struct kt_root root;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    uint8_t id[KT_UUID_BYTES];
    char text[KEYTIER_ID_SIZE], label[64], *uri = NULL;
    ck_assert(kt_uuid_new(id));
    kt_uuid_format(id, text);
    snprintf(label, sizeof label, "keytier-avail-%s", text);
    ck_assert_int_eq(
        kt_avail_generate(c, KT_AVAIL_AES256, id, label, &root, &s, &uri),
        KEYTIER_OK);
    free(uri);
    CK_OBJECT_HANDLE stale = root.key;
    /* every session of the service token closed, this one after a token
     * error: the application is logged out */
    for (;;) {
        CK_SESSION_HANDLE idle = CK_INVALID_HANDLE;
        pthread_mutex_lock(&root.tok->mu);
        if (root.tok->n_idle > 0)
            idle = root.tok->idle[--root.tok->n_idle];
        pthread_mutex_unlock(&root.tok->mu);
        if (idle == CK_INVALID_HANDLE)
            break;
        kt_session_put(root.tok, idle, CKR_DEVICE_ERROR);
    }
    kt_session_put(root.tok, s, CKR_DEVICE_ERROR);
    ck_assert_int_eq(kt_session_get(root.tok, &s, &rv), KEYTIER_OK);
    ck_assert_int_eq(kt_p11_destroy_object(root.tok, s, stale),
                     CKR_OBJECT_HANDLE_INVALID);
    ck_assert_int_eq(kt_avail_destroy(&root, s, id, label), CKR_OK);
    kt_session_put(root.tok, s, CKR_OK);
    keytier_ctx_close(c);
    ck_assert_int_eq(testenv_count(&T, "KService", label), 0);
}
END_TEST

START_TEST(create_show_list_disable)
{
    keytier_dep_info d, s;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    ck_assert_int_eq(strlen(d.dep_id), 36);
    ck_assert_int_eq(strlen(d.policy_id), 36);
    ck_assert_str_ne(d.dep_id, d.policy_id);
    ck_assert_str_eq(d.tenant, "org-1");
    ck_assert_str_eq(d.workload, "Exchange");
    ck_assert_int_eq(d.state, KEYTIER_DEP_REGISTERED);
    ck_assert_str_eq(d.root_uri[KEYTIER_ROOT_A], URI_A);
    ck_assert_str_eq(d.root_uri[KEYTIER_ROOT_B], URI_B);
    ck_assert_ptr_nonnull(
        strstr(d.root_uri[KEYTIER_ROOT_AVAIL], "token=Service"));
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(d.wrap_mech[i], "aes-key-wrap-pad");

    assert_err(keytier_dep_show(ctx, "org-1", d.dep_id, &s), KEYTIER_OK, NULL);
    ck_assert_mem_eq(&s, &d, sizeof s);

    keytier_dep_info d2;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d2),
               KEYTIER_OK, NULL);
    keytier_dep_info *list;
    size_t n;
    assert_err(keytier_dep_list(ctx, "org-1", NULL, &list, &n), KEYTIER_OK,
               NULL);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0].dep_id, d.dep_id);
    ck_assert_str_eq(list[1].dep_id, d2.dep_id);
    keytier_dep_list_free(list);
    assert_err(keytier_dep_list(ctx, "org-1", "SharePoint", &list, &n),
               KEYTIER_OK, NULL);
    ck_assert_uint_eq(n, 0);
    keytier_dep_list_free(list);
    assert_err(keytier_dep_list(ctx, "org-2", NULL, &list, &n), KEYTIER_OK,
               NULL);
    ck_assert_uint_eq(n, 0);
    keytier_dep_list_free(list);

    assert_err(keytier_dep_disable(ctx, "org-1", d.dep_id), KEYTIER_OK, NULL);
    assert_err(keytier_dep_show(ctx, "org-1", d.dep_id, &s), KEYTIER_OK, NULL);
    ck_assert_int_eq(s.state, KEYTIER_DEP_DISABLED);

    /* Wrong tenant and unknown DEP. */
    assert_err(keytier_dep_show(ctx, "org-2", d.dep_id, &s),
               KEYTIER_E_WRONG_TENANT, d.dep_id);
    assert_err(keytier_dep_disable(ctx, "org-2", d2.dep_id),
               KEYTIER_E_WRONG_TENANT, NULL);
    assert_err(keytier_dep_show(ctx, "org-1",
                                "00000000-0000-4000-8000-000000000000", &s),
               KEYTIER_E_DEP_NOT_FOUND, "00000000-0000-4000-8000-000000000000");
    assert_err(keytier_dep_disable(ctx, "org-1",
                                   "00000000-0000-4000-8000-000000000000"),
               KEYTIER_E_DEP_NOT_FOUND, NULL);
}
END_TEST

static size_t dep_count(const char *tenant)
{
    keytier_dep_info *list;
    size_t n;
    assert_err(keytier_dep_list(ctx, tenant, NULL, &list, &n), KEYTIER_OK,
               NULL);
    keytier_dep_list_free(list);
    return n;
}

START_TEST(named_deps_and_any_tenant)
{
    keytier_dep_info d, d2, u, s;
    /* 64 bytes of UTF-8 (two-byte letters included) is the limit. */
    char name64[KEYTIER_DEP_NAME_MAX + 2];
    memset(name64, 'n', KEYTIER_DEP_NAME_MAX);
    memcpy(name64, "Contoso \xc3\xa9t\xc3\xa9 ", 14);
    name64[KEYTIER_DEP_NAME_MAX] = '\0';
    assert_err(keytier_dep_create_named(ctx, "org-1", "Exchange", URI_A, URI_B,
                                        name64, &d),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(d.name, name64);
    assert_err(keytier_dep_create_named(ctx, "org-2", "Exchange", URI_A, URI_B,
                                        "Fabrikam mail", &d2),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(d2.name, "Fabrikam mail");
    /* The name-less forms: NULL name and the old call. */
    assert_err(keytier_dep_create_named(ctx, "org-2", "Exchange", URI_A, URI_B,
                                        NULL, &u),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(u.name, "");
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A, URI_B, &u),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(u.name, "");

    /* Show: with the owner, without a tenant, and the wrong tenant. */
    assert_err(keytier_dep_show(ctx, "org-1", d.dep_id, &s), KEYTIER_OK, NULL);
    ck_assert_mem_eq(&s, &d, sizeof s);
    assert_err(keytier_dep_show(ctx, NULL, d.dep_id, &s), KEYTIER_OK, NULL);
    ck_assert_mem_eq(&s, &d, sizeof s);
    assert_err(keytier_dep_show(ctx, NULL, d2.dep_id, &s), KEYTIER_OK, NULL);
    ck_assert_mem_eq(&s, &d2, sizeof s);
    assert_err(keytier_dep_show(ctx, "org-2", d.dep_id, &s),
               KEYTIER_E_WRONG_TENANT, NULL);
    char want[160];
    snprintf(want, sizeof want,
             "object belongs to another tenant: DEP %s does not belong to "
             "tenant org-2",
             d.dep_id);
    ck_assert_str_eq(keytier_last_error_detail(), want);
    assert_err(
        keytier_dep_show(ctx, NULL, "00000000-0000-4000-8000-000000000000", &s),
        KEYTIER_E_DEP_NOT_FOUND, NULL);
    ck_assert_str_eq(keytier_last_error_detail(),
                     "DEP not found: 00000000-0000-4000-8000-000000000000");

    /* List: every tenant's, oldest first, names included. */
    keytier_dep_info *list;
    size_t n;
    assert_err(keytier_dep_list(ctx, NULL, NULL, &list, &n), KEYTIER_OK, NULL);
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(&list[0], &d, sizeof d);
    ck_assert_mem_eq(&list[1], &d2, sizeof d2);
    ck_assert_str_eq(list[2].tenant, "org-2");
    ck_assert_str_eq(list[3].name, "");
    keytier_dep_list_free(list);
    assert_err(keytier_dep_list(ctx, NULL, "SharePoint", &list, &n), KEYTIER_OK,
               NULL);
    ck_assert_uint_eq(n, 0);
    keytier_dep_list_free(list);
    ck_assert_uint_eq(dep_count("org-1"), 1);
    ck_assert_uint_eq(dep_count("org-2"), 3);
}
END_TEST

START_TEST(bad_names_refused_nothing_stored)
{
    keytier_dep_info d;
    char name65[KEYTIER_DEP_NAME_MAX + 2];
    memset(name65, 'n', KEYTIER_DEP_NAME_MAX + 1);
    name65[KEYTIER_DEP_NAME_MAX + 1] = '\0';
    static const struct {
        const char *name, *detail;
    } bad[] = {
        {"", "invalid argument: DEP name is empty"},
        {"line\nbreak",
         "invalid argument: DEP name contains control character U+000A (at "
         "byte 5)"},
        {"tab\there",
         "invalid argument: DEP name contains control character U+0009 (at "
         "byte 4)"},
        {"del\x7f", "invalid argument: DEP name contains control character "
                    "U+007F (at byte 4)"},
        {"c1 \xc2\x9b", "invalid argument: DEP name contains control "
                        "character U+009B (at byte 4)"},
        {"bad \xff", "invalid argument: DEP name is not valid UTF-8 (at byte "
                     "5)"},
        {"cut \xc3", "invalid argument: DEP name is not valid UTF-8 (at byte "
                     "5)"},
        {"overlong \xc0\xaf", "invalid argument: DEP name is not valid UTF-8 "
                              "(at byte 10)"},
        {"surrogate \xed\xa0\x80", "invalid argument: DEP name is not valid "
                                   "UTF-8 (at byte 11)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_err(keytier_dep_create_named(ctx, "org-1", "Exchange", URI_A,
                                            URI_B, bad[i].name, &d),
                   KEYTIER_E_ARGS, NULL);
        ck_assert_str_eq(keytier_last_error_detail(), bad[i].detail);
    }
    assert_err(keytier_dep_create_named(ctx, "org-1", "Exchange", URI_A, URI_B,
                                        name65, &d),
               KEYTIER_E_ARGS, NULL);
    ck_assert_str_eq(keytier_last_error_detail(),
                     "invalid argument: DEP name is 65 bytes long, at most 64 "
                     "allowed");
    ck_assert_uint_eq(dep_count("org-1"), 0);
}
END_TEST

START_TEST(dep_key_reads_through_either_customer_key)
{
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    keytier_key *k;
    char mbx[KEYTIER_ID_SIZE];
    /* Several opens: the random first pick must not matter. */
    for (int i = 0; i < 6; i++) {
        assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
                   KEYTIER_OK, NULL);
        if (i == 0)
            assert_err(keytier_key_create(k, "alice", mbx), KEYTIER_OK, NULL);
        keytier_key *m;
        assert_err(keytier_key_open(k, mbx, &m), KEYTIER_OK, NULL);
        keytier_key_close(m);
        keytier_key_close(k);
    }
    assert_err(keytier_dep_key_open(ctx, &user, "org-2", d.dep_id, &k),
               KEYTIER_E_WRONG_TENANT, NULL);

    /* Root A destroyed: B alone serves. */
    testenv_destroy(&T, "VaultA", "rootA");
    for (int i = 0; i < 4; i++) {
        assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
                   KEYTIER_OK, NULL);
        keytier_key_close(k);
    }
    /* Both gone: a clear error naming both. */
    testenv_destroy(&T, "VaultB", "rootB");
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
               KEYTIER_E_REVOKED, "[A] root key not found");
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "[B] root key not found"));
}
END_TEST

START_TEST(same_token_refused)
{
    testenv_root_aes(&T, "VaultA", "rootA2", 0);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultA", "rootA2"), &d),
               KEYTIER_E_SAME_TOKEN, "both in token 'VaultA'");
}
END_TEST

START_TEST(extractable_root_refused)
{
    testenv_root_aes(&T, "VaultB", "leaky", ROOT_EXTRACTABLE);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "leaky"), &d),
               KEYTIER_E_KEY_EXTRACTABLE,
               "customer key B pkcs11:token=VaultB;object=leaky");
}
END_TEST

/* A key whose value C_GetAttributeValue gives out is as good as
 * extractable. */
START_TEST(not_sensitive_root_refused)
{
    testenv_root_aes(&T, "VaultB", "readable", ROOT_NOT_SENSITIVE);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "readable"), &d),
               KEYTIER_E_KEY_EXTRACTABLE,
               "customer key B pkcs11:token=VaultB;object=readable: "
               "CKA_SENSITIVE is false");
}
END_TEST

/* Keys with another role: in the service token, made by keytier (an
 * availability key, however its URI is spelt), labelled as keytier's. */
START_TEST(customer_key_roles_refused)
{
    keytier_dep_info d, x;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    testenv_root_aes(&T, "Service", "svc-root", 0);
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A,
                                  testenv_uri("Service", "svc-root"), &x),
               KEYTIER_E_KEY_ROLE,
               "customer key B pkcs11:token=Service;object=svc-root: it is in "
               "the service token 'Service'");
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A,
                                  d.root_uri[KEYTIER_ROOT_AVAIL], &x),
               KEYTIER_E_KEY_ROLE, "it is an availability key of keytier");
    char alt[256];
    snprintf(alt, sizeof alt, "pkcs11:token=Service;object=keytier-avail-%s",
             d.dep_id);
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", alt, URI_B, &x),
               KEYTIER_E_KEY_ROLE, "customer key A");
    testenv_root_aes(&T, "VaultB", "keytier-avail-forged", 0);
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A,
                                  testenv_uri("VaultB", "keytier-avail-forged"),
                                  &x),
               KEYTIER_E_KEY_ROLE, "label 'keytier-avail-forged'");
    testenv_root_aes(&T, "VaultB", "keytier-x", 0);
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A,
                                  testenv_uri("VaultB", "keytier-x"), &x),
               KEYTIER_E_KEY_ROLE, "it is one of keytier's own keys");
    keytier_dep_info *l = NULL;
    size_t n = 9;
    assert_err(keytier_dep_list(ctx, "org-2", NULL, &l, &n), KEYTIER_OK, NULL);
    ck_assert_uint_eq(n, 0);
    keytier_dep_list_free(l);
}
END_TEST

START_TEST(root_usage_refused)
{
    testenv_root_aes(&T, "VaultB", "nounwrap", ROOT_NO_UNWRAP);
    testenv_root_aes(&T, "VaultB", "nowrap", ROOT_NO_WRAP);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "nounwrap"), &d),
               KEYTIER_E_KEY_USAGE, "CKA_UNWRAP is false");
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "nowrap"), &d),
               KEYTIER_E_KEY_USAGE, "CKA_WRAP is false");
}
END_TEST

START_TEST(root_type_refused)
{
    testenv_root_aes(&T, "VaultB", "aes128", ROOT_SMALL);
    testenv_root_rsa(&T, "VaultB", "rsa1024", ROOT_SMALL);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "aes128"), &d),
               KEYTIER_E_KEY_TYPE, "aes128: AES roots are 256-bit");
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "rsa1024"), &d),
               KEYTIER_E_KEY_TYPE, "rsa1024: RSA roots are 2048 bits or more");
    /* A URI naming the public half only. */
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  "pkcs11:token=VaultB;object=rsa1024;"
                                  "type=public",
                                  &d),
               KEYTIER_E_KEY_TYPE, "roots are AES secret keys or RSA private");
    /* A URI matching several keys. */
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_KEY_AMBIGUOUS, "several keys match");
}
END_TEST

START_TEST(missing_key_and_token_refused)
{
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "nosuch"), &d),
               KEYTIER_E_KEY_NOT_FOUND,
               "customer key B pkcs11:token=VaultB;object=nosuch: no such key "
               "in token 'VaultB'");
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultZ", "rootB"), &d),
               KEYTIER_E_TOKEN_NOT_FOUND,
               "customer key B pkcs11:token=VaultZ;object=rootB");
    assert_err(
        keytier_dep_create(ctx, "org-1", "Exchange", "http://x", URI_B, &d),
        KEYTIER_E_URI, "customer key A http://x");
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  "pkcs11:token=VaultA;object=rootA;"
                                  "pin-value=1234",
                                  URI_B, &d),
               KEYTIER_E_URI, "pin-value/pin-source refused");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "1234"));
    assert_err(keytier_dep_create(ctx, "org-1", "Mail2", URI_A, URI_B, &d),
               KEYTIER_E_CONFIG, "unknown workload 'Mail2'");
    assert_err(keytier_dep_create(ctx, "", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_ARGS, NULL);
    assert_err(keytier_dep_create(NULL, "o", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_ARGS, NULL);
    /* Nothing was stored by the failures. */
    keytier_dep_info *list;
    size_t n;
    assert_err(keytier_dep_list(ctx, "org-1", NULL, &list, &n), KEYTIER_OK,
               NULL);
    ck_assert_uint_eq(n, 0);
    keytier_dep_list_free(list);
}
END_TEST

START_TEST(dep_limit)
{
    keytier_ctx_close(ctx);
    testenv_write_conf(&T, "dep_limit = 3\nworkload.Exchange.dep_limit = 2");
    ctx = testenv_ctx(&T);
    keytier_dep_info d;
    for (int i = 0; i < 2; i++)
        assert_err(
            keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
            KEYTIER_OK, NULL);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_DEP_LIMIT,
               "tenant org-1 already has 2 DEPs for workload Exchange (limit "
               "2)");
    /* Per tenant and workload: others are unaffected. */
    assert_err(keytier_dep_create(ctx, "org-2", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    for (int i = 0; i < 3; i++)
        assert_err(keytier_dep_create(ctx, "org-1", "M365DataAtRestEncryption",
                                      URI_A, URI_B, &d),
                   KEYTIER_OK, NULL);
    assert_err(keytier_dep_create(ctx, "org-1", "M365DataAtRestEncryption",
                                  URI_A, URI_B, &d),
               KEYTIER_E_DEP_LIMIT, "(limit 3)");
}
END_TEST

START_TEST(default_limit_is_50)
{
    keytier_dep_info d;
    for (int i = 0; i < 50; i++)
        assert_err(
            keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
            KEYTIER_OK, NULL);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_DEP_LIMIT, "(limit 50)");
}
END_TEST

START_TEST(rsa_roots)
{
    /* SoftHSM2 2.6 does RSA-OAEP with SHA-1 only: a DEP needing SHA-256 is
     * refused naming the key and token; allow_oaep_sha1 accepts SHA-1 and
     * records it with the wrapped copy. */
    testenv_root_rsa(&T, "VaultB", "rsaB", 0);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "rsaB"), &d),
               KEYTIER_E_MECHANISM,
               "customer key B pkcs11:token=VaultB;object=rsaB: token "
               "'VaultB' refuses RSA-OAEP with SHA-256 (allow_oaep_sha1 = yes "
               "accepts SHA-1)");
    keytier_ctx_close(ctx);
    testenv_write_conf(&T, "allow_oaep_sha1 = yes");
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A,
                                  testenv_uri("VaultB", "rsaB"), &d),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(d.wrap_mech[KEYTIER_ROOT_A], "aes-key-wrap-pad");
    ck_assert_str_eq(d.wrap_mech[KEYTIER_ROOT_B], "rsa-oaep-sha1");
    /* The files workload's availability key is RSA-2048 by default. */
    keytier_dep_info f;
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A,
                                  testenv_uri("VaultB", "rsaB"), &f),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(f.wrap_mech[KEYTIER_ROOT_AVAIL], "rsa-oaep-sha1");
    ck_assert_ptr_nonnull(
        strstr(f.root_uri[KEYTIER_ROOT_AVAIL], "type=private"));
    /* Read through the RSA root alone. */
    testenv_destroy(&T, "VaultA", "rootA");
    keytier_key *k;
    for (int i = 0; i < 3; i++) {
        assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
                   KEYTIER_OK, NULL);
        keytier_key_close(k);
    }
    /* A small RSA key or a public-key-only wrap path is refused. */
    testenv_root_rsa(&T, "VaultC", "rsaX", ROOT_EXTRACTABLE);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_B,
                                  testenv_uri("VaultC", "rsaX"), &d),
               KEYTIER_E_KEY_EXTRACTABLE, "rsaX");
}
END_TEST

START_TEST(files_availability_without_sha1)
{
    /* Default files workload: RSA-2048 availability key; SoftHSM2 as the
     * service token cannot do OAEP-SHA-256, so creation is refused and the
     * generated key is destroyed (nothing stored). */
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &d),
               KEYTIER_E_MECHANISM, "availability key pkcs11:");
    keytier_dep_info *list;
    size_t n;
    assert_err(keytier_dep_list(ctx, "org-1", NULL, &list, &n), KEYTIER_OK,
               NULL);
    ck_assert_uint_eq(n, 0);
    keytier_dep_list_free(list);
    /* Configurable: an AES availability key for the files workload. */
    keytier_ctx_close(ctx);
    testenv_write_conf(&T, "workload.SharePoint.availability_key = aes256");
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    ck_assert_str_eq(d.wrap_mech[KEYTIER_ROOT_AVAIL], "aes-key-wrap-pad");
}
END_TEST

START_TEST(pin_sources)
{
    /* VaultB's PIN comes from an environment variable: unset it. */
    keytier_dep_info d;
    unsetenv("KT_TEST_PIN_B");
    keytier_ctx_close(ctx);
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_PIN,
               "PIN of token 'VaultB': environment variable KT_TEST_PIN_B is "
               "not set");
    setenv("KT_TEST_PIN_B", "9999", 1);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_LOGIN, "token 'VaultB': C_Login");
    ck_assert_ptr_null(strstr(keytier_last_error_detail(), "9999"));
    setenv("KT_TEST_PIN_B", "1234", 1);
}
END_TEST

START_TEST(bad_arguments)
{
    keytier_dep_info d, *list;
    keytier_key *k = NULL;
    keytier_key_info *kl;
    keytier_status st;
    size_t n;
    char big[300];
    memset(big, 't', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_err(keytier_dep_create(ctx, big, "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_ARGS, "keytier_dep_create");
    assert_err(keytier_dep_create(ctx, "o", "Exchange", URI_A, NULL, &d),
               KEYTIER_E_ARGS, NULL);
    assert_err(keytier_dep_create(ctx, "o", "Exchange", URI_A, URI_B, NULL),
               KEYTIER_E_ARGS, NULL);
    assert_err(keytier_dep_show(ctx, "o", NULL, &d), KEYTIER_E_ARGS, NULL);
    assert_err(keytier_dep_show(NULL, "o", "x", &d), KEYTIER_E_ARGS, NULL);
    assert_err(keytier_dep_list(ctx, "o", NULL, NULL, &n), KEYTIER_E_ARGS,
               NULL);
    assert_err(keytier_dep_list(ctx, big, NULL, &list, &n), KEYTIER_E_ARGS,
               NULL);
    assert_err(keytier_dep_disable(ctx, "", "x"), KEYTIER_E_ARGS, NULL);
    assert_err(keytier_dep_key_open(ctx, NULL, "o", "x", &k), KEYTIER_E_ARGS,
               NULL);
    assert_err(keytier_dep_key_open(ctx, &user, "o", "x", NULL), KEYTIER_E_ARGS,
               NULL);
    assert_err(keytier_dep_key_open(ctx, &user, "o", "x", &k),
               KEYTIER_E_DEP_NOT_FOUND, NULL);
    assert_err(keytier_key_create(NULL, "n", NULL), KEYTIER_E_ARGS, NULL);
    assert_err(keytier_key_open(NULL, "x", &k), KEYTIER_E_ARGS, NULL);
    assert_err(keytier_key_open_path(ctx, &user, "o", "", &k), KEYTIER_E_ARGS,
               NULL);
    assert_err(keytier_key_open_path(ctx, &user, "o", "nope", &k),
               KEYTIER_E_NOT_FOUND, NULL);
    assert_err(keytier_key_open_name(ctx, &user, "o", NULL, "n", &k),
               KEYTIER_E_ARGS, NULL);
    assert_err(keytier_key_list(ctx, "o", NULL, &kl, &n), KEYTIER_E_ARGS, NULL);
    assert_err(keytier_status_get(ctx, "o", "Exchange", "n", NULL),
               KEYTIER_E_ARGS, NULL);
    assert_err(keytier_status_get(NULL, "o", "Exchange", "n", &st),
               KEYTIER_E_ARGS, NULL);
    ck_assert_ptr_null(k);
    ck_assert_uint_eq(keytier_seal_bound(NULL, 1), SIZE_MAX);
    keytier_key_close(NULL);
    keytier_key_get_info(NULL, NULL);
    keytier_dep_list_free(NULL);
    keytier_key_list_free(NULL);
}
END_TEST

START_TEST(service_token_missing)
{
    keytier_ctx_close(ctx);
    testenv_write_conf(&T, NULL);
    /* Point the service token at a token that does not exist. */
    FILE *f = fopen(T.conf, "r");
    char text[4096];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *p = strstr(text, "token=Service");
    ck_assert_ptr_nonnull(p);
    memcpy(p, "token=Servic2", 13);
    f = fopen(T.conf, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    fputs(text, f);
    fclose(f);
    ctx = testenv_ctx(&T);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_E_TOKEN_NOT_FOUND, "service token pkcs11:token=Servic2");
}
END_TEST

START_TEST(calls_logged_without_arguments_sessions_reused)
{
    /* At debug level every token call is logged by name, result and
     * latency; lines have no room for arguments, and sessions are reused
     * (one C_OpenSession per token however many reads). */
    char log[400], extra[512];
    snprintf(log, sizeof log, "%s/lib.log", T.dir);
    snprintf(extra, sizeof extra, "log_level = debug\nlog_file = %s", log);
    keytier_ctx_close(ctx);
    testenv_write_conf(&T, extra);
    ctx = testenv_ctx(&T);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    for (int i = 0; i < 8; i++) {
        keytier_key *k;
        assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &k),
                   KEYTIER_OK, NULL);
        keytier_key_close(k);
    }
    keytier_ctx_close(ctx);
    ctx = NULL;
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int opens = 0, unwraps = 0, logins = 0, events = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64], text[128], level[16];
        unsigned long rv;
        double us;
        if (strstr(line, " call=") != NULL) {
            ck_assert_msg(sscanf(line,
                                 "%*s keytier %15s call=%63s rv=0x%lx "
                                 "(%127[^)]) latency_us=%lf",
                                 level, name, &rv, text, &us) == 5,
                          "unexpected log line: %s", line);
            ck_assert_str_eq(level, "debug");
            ck_assert_ptr_null(strstr(line, "pin"));
            opens += strcmp(name, "C_OpenSession") == 0;
            unwraps += strcmp(name, "C_UnwrapKey") == 0;
            logins += strcmp(name, "C_Login") == 0;
        } else {
            ck_assert_ptr_nonnull(strstr(line, "info DEP created: "));
            events++;
        }
    }
    fclose(f);
    ck_assert_int_eq(events, 1);
    ck_assert_int_eq(opens, 3); /* VaultA, VaultB, Service */
    ck_assert_int_eq(logins, 3);
    ck_assert_int_ge(unwraps, 3 + 8); /* 3 wrap proofs + 8 reads */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dep");
    TCase *tc = tcase_create("dep");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, create_show_list_disable);
    tcase_add_test(tc, named_deps_and_any_tenant);
    tcase_add_test(tc, bad_names_refused_nothing_stored);
    tcase_add_test(tc, dep_key_reads_through_either_customer_key);
    tcase_add_test(tc, same_token_refused);
    tcase_add_test(tc, extractable_root_refused);
    tcase_add_test(tc, not_sensitive_root_refused);
    tcase_add_test(tc, customer_key_roles_refused);
    tcase_add_test(tc, root_usage_refused);
    tcase_add_test(tc, missing_key_and_token_refused);
    tcase_add_test(tc, root_type_refused);
    tcase_add_test(tc, dep_limit);
    tcase_add_test(tc, default_limit_is_50);
    tcase_add_test(tc, rsa_roots);
    tcase_add_test(tc, files_availability_without_sha1);
    tcase_add_test(tc, pin_sources);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, service_token_missing);
    tcase_add_test(tc, avail_key_destroyed_after_logout);
    tcase_add_test(tc, calls_logged_without_arguments_sessions_reused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
