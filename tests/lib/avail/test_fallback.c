/*
 * The fallback rule on real SoftHSM2 tokens, in process: cache first (a
 * cached read makes no token call), revocation of both customer keys in
 * each way DESIGN.md §2 names (key destroyed, CKA_UNWRAP turned off, PIN
 * changed) refuses user requests with "access revoked" and lets internal
 * operations through the availability key with an audit record, until the
 * availability key is destroyed too; the files workload falls back only
 * for "recover".  Outages (hung and vanished tokens) are in tests/outage.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <json-c/json.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "audit.h"
#include "kt_lib.h"
#include "state.h"
#include "testenv.h"

static struct testenv T;
static keytier_ctx *ctx;
static char audit_path[400];
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-user-1", NULL};
static const keytier_request index_op = {
    KEYTIER_REQUEST_INTERNAL, KEYTIER_INTERNAL_INDEX, "req-index-1", NULL};
static const keytier_request recover_op = {
    KEYTIER_REQUEST_INTERNAL, KEYTIER_INTERNAL_RECOVER, "req-recover-1", NULL};

#define URI_A testenv_uri("VaultA", "rootA")
#define URI_B testenv_uri("VaultB", "rootB")

static void write_conf(const char *extra)
{
    char lines[2048];

    snprintf(lines, sizeof lines,
             "avail.audit_log = %s\navail.call_deadline_ms = 20000\n"
             "avail.hedge_ms = 5000\navail.cache_ttl_ms = 300000\n"
             "workload.SharePoint.availability_key = aes256\n%s",
             audit_path, extra ? extra : "");
    testenv_write_conf(&T, lines);
}

static void setup(void)
{
    testenv_setup(&T);
    snprintf(audit_path, sizeof audit_path, "%s/audit.jsonl", T.dir);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    /* SoftHSM2 has no RSA-OAEP with SHA-256: AES availability keys */
    write_conf(NULL);
    ctx = testenv_ctx(&T);
}

static void teardown(void)
{
    keytier_ctx_close(ctx);
    ctx = NULL;
    testenv_teardown(&T);
}

static void assert_err(keytier_err got, keytier_err want, const char *needle)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
    if (needle)
        ck_assert_msg(strstr(keytier_last_error_detail(), needle) != NULL,
                      "detail '%s' lacks '%s'", keytier_last_error_detail(),
                      needle);
}

static keytier_avail_stats stats(void)
{
    keytier_avail_stats s;

    assert_err(keytier_avail_stats_get(ctx, &s), KEYTIER_OK, NULL);
    return s;
}

/* The audit log's records, parsed; returns the count. */
static int audit_records(json_object *recs[], int max)
{
    FILE *f = fopen(audit_path, "r");
    char line[8192];
    int n = 0;

    if (!f)
        return 0;
    while (n < max && fgets(line, sizeof line, f)) {
        recs[n] = json_tokener_parse(line);
        ck_assert_ptr_nonnull(recs[n]);
        n++;
    }
    fclose(f);
    return n;
}

static void audit_free(json_object *recs[], int n)
{
    for (int i = 0; i < n; i++)
        json_object_put(recs[i]);
}

static const char *field(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        return "";
    return json_object_get_string(v);
}

/* Counts records of an activity, returning the last one in *last (not
 * owned by the caller beyond recs). */
static int count_activity(json_object *recs[], int n, const char *activity,
                          json_object **last)
{
    int c = 0;

    for (int i = 0; i < n; i++)
        if (!strcmp(field(recs[i], "Activity"), activity)) {
            c++;
            if (last)
                *last = recs[i];
        }
    return c;
}

static void assert_key_error_class(json_object *rec, const char *cls)
{
    json_object *errs;

    ck_assert(json_object_object_get_ex(rec, "CustomerKeyErrors", &errs));
    ck_assert_int_eq((int)json_object_array_length(errs), 2);
    ck_assert_str_eq(field(json_object_array_get_idx(errs, 0), "Key"), "A");
    ck_assert_str_eq(field(json_object_array_get_idx(errs, 1), "Key"), "B");
    for (int i = 0; i < 2; i++)
        ck_assert_str_eq(field(json_object_array_get_idx(errs, i), "Class"),
                         cls);
}

/* The class the record gives customer key i (0: A, 1: B). */
static const char *key_error_class(json_object *rec, int i)
{
    json_object *errs;

    ck_assert(json_object_object_get_ex(rec, "CustomerKeyErrors", &errs));
    ck_assert_int_eq((int)json_object_array_length(errs), 2);
    return field(json_object_array_get_idx(errs, i), "Class");
}

static void assert_audit_intact(void)
{
    uint64_t bad = 0, n = 0;

    assert_err(keytier_audit_verify(audit_path, &bad, &n), KEYTIER_OK, NULL);
}

/* ---- raw PKCS#11 on the test tokens (the customer's own actions) ------ */

struct raw {
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE s;
};

static void raw_open(const char *token, const char *pin, struct raw *r)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;

    r->fl = p11_kit_module_load(T.softhsm_module, 0);
    ck_assert_ptr_nonnull(r->fl);
    ck_assert_int_eq(p11_kit_module_initialize(r->fl), CKR_OK);
    ck_assert_int_eq(r->fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        size_t l = strlen(token);
        ck_assert_int_eq(r->fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, token, l) != 0 || ti.label[l] != ' ')
            continue;
        ck_assert_int_eq(
            r->fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                 NULL, NULL, &r->s),
            CKR_OK);
        CK_RV rv =
            r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
        ck_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
        return;
    }
    ck_abort_msg("token %s not found", token);
}

static void raw_close(struct raw *r)
{
    r->fl->C_CloseSession(r->s);
    p11_kit_module_finalize(r->fl);
    p11_kit_module_release(r->fl);
}

/* The customer turns CKA_UNWRAP off on its root. */
static void root_unwrap_off(const char *token, const char *label)
{
    struct raw r;
    CK_ATTRIBUTE find[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE set[] = {{CKA_UNWRAP, &no, sizeof no}};
    CK_OBJECT_HANDLE h;
    CK_ULONG n = 0;

    raw_open(token, "1234", &r);
    ck_assert_int_eq(r.fl->C_FindObjectsInit(r.s, find, 1), CKR_OK);
    ck_assert_int_eq(r.fl->C_FindObjects(r.s, &h, 1, &n), CKR_OK);
    r.fl->C_FindObjectsFinal(r.s);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(r.fl->C_SetAttributeValue(r.s, h, set, 1), CKR_OK);
    raw_close(&r);
}

/* The customer changes the user PIN of its token. */
static void token_pin_change(const char *token)
{
    struct raw r;

    raw_open(token, "1234", &r);
    ck_assert_int_eq(
        r.fl->C_SetPIN(r.s, (CK_UTF8CHAR *)"1234", 4, (CK_UTF8CHAR *)"9999", 4),
        CKR_OK);
    raw_close(&r);
}

/* Destroys every object of the token with the CKA_ID the URI names (the
 * availability key, and its public half for RSA). */
static void destroy_by_uri_id(const char *token, const char *uri)
{
    P11KitUri *u = p11_kit_uri_new();
    CK_ATTRIBUTE *id;
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG n = 0;
    struct raw r;

    ck_assert_int_eq(p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, u),
                     P11_KIT_URI_OK);
    id = p11_kit_uri_get_attribute(u, CKA_ID);
    ck_assert_ptr_nonnull(id);
    raw_open(token, "1234", &r);
    ck_assert_int_eq(r.fl->C_FindObjectsInit(r.s, id, 1), CKR_OK);
    ck_assert_int_eq(r.fl->C_FindObjects(r.s, objs, 8, &n), CKR_OK);
    r.fl->C_FindObjectsFinal(r.s);
    ck_assert_uint_gt(n, 0);
    for (CK_ULONG i = 0; i < n; i++)
        ck_assert_int_eq(r.fl->C_DestroyObject(r.s, objs[i]), CKR_OK);
    raw_close(&r);
    p11_kit_uri_free(u);
}

/* Takes token's SoftHSM2 directory out of the token directory: to a
 * library that initialises the module afterwards the token is not present,
 * an outage ("system") rather than a revocation. */
static void token_hide(const char *token)
{
    char cmd[1400];

    snprintf(cmd, sizeof cmd,
             "set -e; cd %s; mkdir hidden-%s; "
             "d=$(dirname $(grep -l -a %s softhsm/*/token.object)); "
             "mv \"$d\" hidden-%s/",
             T.dir, token, token, token);
    ck_assert_int_eq(system(cmd), 0);
}

static keytier_err open_dep(const keytier_request *req, const char *dep_id)
{
    keytier_key *k = NULL;
    keytier_err e = keytier_dep_key_open(ctx, req, "org-1", dep_id, &k);

    if (e == KEYTIER_OK)
        ck_assert_ptr_nonnull(k);
    else
        ck_assert_ptr_null(k); /* no key, no plaintext */
    keytier_key_close(k);
    return e;
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(cached_read_makes_no_token_call)
{
    keytier_dep_info d;
    keytier_avail_stats s0, s1, s2;
    size_t n;

    json_object *recs[8], *rec = NULL;
    int nrec;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    /* the DEP's creation is in the audit log */
    nrec = audit_records(recs, 8);
    ck_assert_int_eq(count_activity(recs, nrec, "DEP created", &rec), 1);
    ck_assert_str_eq(field(rec, "DataEncryptionPolicyId"), d.dep_id);
    ck_assert_str_eq(field(rec, "PolicyId"), d.policy_id);
    ck_assert_str_eq(field(rec, "OrganizationId"), "org-1");
    ck_assert_str_eq(field(rec, "Workload"), "Exchange");
    audit_free(recs, nrec);
    s0 = stats();
    assert_err(open_dep(&user, d.dep_id), KEYTIER_OK, NULL);
    s1 = stats();
    ck_assert_uint_ge(s1.token_reads, s0.token_reads + 1);
    ck_assert_uint_eq(s1.cache_misses, s0.cache_misses + 1);
    for (int i = 0; i < 5; i++)
        assert_err(open_dep(&user, d.dep_id), KEYTIER_OK, NULL);
    s2 = stats();
    ck_assert_uint_eq(s2.token_reads, s1.token_reads); /* no token call */
    ck_assert_uint_eq(s2.cache_hits, s1.cache_hits + 5);
    ck_assert_uint_eq(s2.cache_entries, 1);
    ck_assert_uint_eq(s2.fallbacks, 0);

    /* revoking a root through the API empties the cache at once */
    assert_err(
        keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_ROOT, URI_B, &n),
        KEYTIER_OK, NULL);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(stats().cache_entries, 0);
    assert_err(open_dep(&user, d.dep_id), KEYTIER_OK, NULL);
    ck_assert_uint_gt(stats().token_reads, s2.token_reads);
    assert_err(
        keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_TENANT, "org-1", &n),
        KEYTIER_OK, NULL);
    ck_assert_uint_eq(n, 1);
    assert_err(keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_DEP, NULL, &n),
               KEYTIER_E_ARGS, NULL);
}
END_TEST

START_TEST(request_must_name_its_kind)
{
    keytier_dep_info d;
    keytier_request bad_kind = {(keytier_request_kind)7, KEYTIER_INTERNAL_NONE,
                                "r", NULL};
    keytier_request no_op = {KEYTIER_REQUEST_INTERNAL, KEYTIER_INTERNAL_NONE,
                             "r", NULL};
    keytier_request unknown_op = {KEYTIER_REQUEST_INTERNAL,
                                  (keytier_internal_op)99, "r", NULL};
    keytier_request user_op = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_INDEX,
                               "r", NULL};

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    /* once cached, a hit must refuse them too */
    assert_err(open_dep(&user, d.dep_id), KEYTIER_OK, NULL);
    assert_err(open_dep(&bad_kind, d.dep_id), KEYTIER_E_ARGS, "kind");
    assert_err(open_dep(&no_op, d.dep_id), KEYTIER_E_ARGS,
               "an internal request must name its operation, one of the set "
               "(keytier_internal_op), not 0");
    assert_err(open_dep(&unknown_op, d.dep_id), KEYTIER_E_ARGS, "not 99");
    assert_err(open_dep(&user_op, d.dep_id), KEYTIER_E_ARGS,
               "a user request names no internal operation");
}
END_TEST

/* Revoked: both customer keys answer "denied".  A user read fails, an
 * internal read goes through the availability key, audited. */
static void check_revoked(const keytier_dep_info *d, const char *why)
{
    json_object *recs[64], *rec = NULL;
    int n;

    assert_err(open_dep(&user, d->dep_id), KEYTIER_E_REVOKED, why);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "[A]"));
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "[B]"));
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", NULL), 0);
    ck_assert_int_eq(
        count_activity(recs, n, "Request denied: customer keys revoked", &rec),
        1);
    ck_assert_str_eq(field(rec, "RequestKind"), "user");
    ck_assert_str_eq(field(rec, "RequestId"), "req-user-1");
    ck_assert_str_eq(field(rec, "DataEncryptionPolicyId"), d->dep_id);
    assert_key_error_class(rec, "denied");
    audit_free(recs, n);

    assert_err(open_dep(&index_op, d->dep_id), KEYTIER_OK, NULL);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(rec, "RecordType"), "CustomerKeyServiceEncryption");
    ck_assert_str_eq(field(rec, "RequestKind"), "internal");
    ck_assert_str_eq(field(rec, "Operation"), "index");
    ck_assert_str_eq(field(rec, "RequestId"), "req-index-1");
    ck_assert_str_eq(field(rec, "OrganizationId"), "org-1");
    ck_assert_str_eq(field(rec, "Workload"), d->workload);
    ck_assert_str_eq(field(rec, "DataEncryptionPolicyId"), d->dep_id);
    ck_assert_str_eq(field(rec, "PolicyId"), d->policy_id);
    assert_key_error_class(rec, "denied");
    audit_free(recs, n);
    ck_assert_uint_eq(stats().fallbacks, 1);
    ck_assert_uint_eq(stats().cache_entries, 0); /* never cached */
    assert_audit_intact();
}

START_TEST(revoked_roots_destroyed)
{
    keytier_dep_info d;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    testenv_destroy(&T, "VaultA", "rootA");
    testenv_destroy(&T, "VaultB", "rootB");
    check_revoked(&d, "root key not found");
    /* the availability key destroyed too: nothing reads the DEP key */
    destroy_by_uri_id("Service", d.root_uri[KEYTIER_ROOT_AVAIL]);
    assert_err(open_dep(&index_op, d.dep_id), KEYTIER_E_REVOKED,
               "availability key");
    assert_err(open_dep(&recover_op, d.dep_id), KEYTIER_E_REVOKED,
               "availability key");
    ck_assert_uint_eq(stats().fallbacks, 1);
}
END_TEST

/* The customer replaces both roots with new keys under the same URIs: the
 * blob the DEP stored no longer unwraps. SoftHSM2 2.6 answers that with
 * CKR_GENERAL_ERROR, which must still count as a revocation, never as an
 * outage that lets a user read through the availability key. */
START_TEST(revoked_roots_replaced)
{
    keytier_dep_info d;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    testenv_destroy(&T, "VaultA", "rootA");
    testenv_destroy(&T, "VaultB", "rootB");
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    check_revoked(&d, "refused the wrapped copy");
}
END_TEST

START_TEST(revoked_unwrap_turned_off)
{
    keytier_dep_info d;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    root_unwrap_off("VaultA", "rootA");
    root_unwrap_off("VaultB", "rootB");
    check_revoked(&d, "[A]");
}
END_TEST

START_TEST(revoked_pin_changed)
{
    keytier_dep_info d;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    /* the library's login must be a fresh one: close and reopen */
    keytier_ctx_close(ctx);
    ctx = NULL;
    token_pin_change("VaultA");
    token_pin_change("VaultB");
    ctx = testenv_ctx(&T);
    check_revoked(&d, "[A]");
}
END_TEST

/* A refused PIN is not offered again: each retry would spend the customer's
 * PIN retry counter until its PIN locked for everyone. Reads after a PIN
 * change reach C_Login once per token, not once per read. */
START_TEST(refused_pin_not_retried)
{
    keytier_dep_info d;
    char log_path[450], line[1024], extra[512];

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    keytier_ctx_close(ctx);
    ctx = NULL;
    token_pin_change("VaultA");
    token_pin_change("VaultB");
    snprintf(log_path, sizeof log_path, "%s/lib.log", T.dir);
    snprintf(extra, sizeof extra, "log_level = debug\nlog_file = %s\n",
             log_path);
    write_conf(extra);
    ctx = testenv_ctx(&T);
    for (int i = 0; i < 5; i++)
        assert_err(open_dep(&user, d.dep_id), KEYTIER_E_REVOKED, NULL);

    FILE *f = fopen(log_path, "r");
    int refused = 0;
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, "call=C_Login ") && strstr(line, "CKR_PIN_INCORRECT"))
            refused++;
    fclose(f);
    /* one refused login per customer token, however many reads */
    ck_assert_int_eq(refused, 2);
}
END_TEST

/* The files shape: no outage fallback by default; the availability key
 * only for the internal operation "recover", through the approvals gate
 * (here `approval.required = no`: it runs, and says so in the log). */
START_TEST(files_workload_falls_back_for_recover_only)
{
    keytier_dep_info d;
    json_object *recs[64], *rec = NULL;
    int n;

    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    testenv_destroy(&T, "VaultA", "rootA");
    testenv_destroy(&T, "VaultB", "rootB");
    assert_err(open_dep(&user, d.dep_id), KEYTIER_E_REVOKED, NULL);
    assert_err(open_dep(&index_op, d.dep_id), KEYTIER_E_REVOKED, NULL);
    assert_err(open_dep(&recover_op, d.dep_id), KEYTIER_OK, NULL);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(rec, "Operation"), "recover");
    ck_assert_str_eq(field(rec, "Workload"), "SharePoint");
    ck_assert_str_eq(field(rec, "ApprovalId"), "");
    ck_assert_int_eq(
        count_activity(recs, n, "Privileged operation without approval", &rec),
        1);
    ck_assert_str_eq(field(rec, "Operation"), "files-availability-read");
    ck_assert_str_eq(field(rec, "OrganizationId"), "org-1");
    ck_assert_str_eq(field(rec, "Scope"), d.dep_id);
    audit_free(recs, n);

    /* Outage fallback switched on for SharePoint is for outages: the
     * service's other operations still never override a revocation
     * there, and neither does a user. */
    keytier_ctx_close(ctx);
    write_conf("avail.outage_fallback.SharePoint = yes\n");
    ctx = testenv_ctx(&T);
    assert_err(open_dep(&index_op, d.dep_id), KEYTIER_E_REVOKED, NULL);
    assert_err(open_dep(&user, d.dep_id), KEYTIER_E_REVOKED, NULL);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", NULL), 1);
    audit_free(recs, n);
    assert_audit_intact();
}
END_TEST

/* With approvals required (the default), a files-workload read through
 * the availability key is refused before the key is touched unless the
 * request brings a live approval: no fallback record, the refusal counted
 * and audited as a revocation.  A mail-shape read needs none. */
START_TEST(files_workload_fallback_needs_an_approval)
{
    keytier_dep_info d, m;
    keytier_request with_id = recover_op;
    json_object *recs[64];
    size_t n_dropped = 0;
    int n;

    keytier_ctx_close(ctx);
    write_conf("approval.required = yes\n");
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_create(ctx, "org-1", "SharePoint", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &m),
               KEYTIER_OK, NULL);
    /* the customer keys answer: no approval is asked for */
    assert_err(open_dep(&recover_op, d.dep_id), KEYTIER_OK, NULL);
    assert_err(keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_TENANT, "org-1",
                                        &n_dropped),
               KEYTIER_OK, NULL);
    ck_assert_uint_eq(n_dropped, 1);
    testenv_destroy(&T, "VaultA", "rootA");
    testenv_destroy(&T, "VaultB", "rootB");
    keytier_avail_stats s0 = stats();
    assert_err(open_dep(&recover_op, d.dep_id), KEYTIER_E_APPROVAL_REQUIRED,
               "a files-workload read through the availability key of org-1 "
               "needs an approval: keytier approval request --op "
               "files-availability-read --tenant org-1 --scope");
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), d.dep_id));
    with_id.approval_id = "no-such-approval";
    assert_err(open_dep(&with_id, d.dep_id), KEYTIER_E_NOT_FOUND, NULL);
    keytier_avail_stats s1 = stats();
    ck_assert_uint_eq(s1.fallbacks, s0.fallbacks);
    ck_assert_uint_eq(s1.denied, s0.denied + 2);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", NULL), 0);
    ck_assert_int_eq(
        count_activity(recs, n, "Request denied: customer keys revoked", NULL),
        2);
    audit_free(recs, n);
    /* the mail shape: no approval for the service's own recovery */
    assert_err(open_dep(&recover_op, m.dep_id), KEYTIER_OK, NULL);
    ck_assert_uint_eq(stats().fallbacks, s0.fallbacks + 1);
    assert_audit_intact();
}
END_TEST

START_TEST(config_errors_name_the_key)
{
    keytier_ctx *c2 = NULL;

    write_conf("avail.hedge_ms = soon\n");
    assert_err(keytier_ctx_open(T.conf, &c2), KEYTIER_E_CONFIG,
               "avail.hedge_ms");
    write_conf("avail.outage_fallback.SharePoint = maybe\n");
    assert_err(keytier_ctx_open(T.conf, &c2), KEYTIER_E_CONFIG,
               "avail.outage_fallback.SharePoint");
    write_conf("avail.cache_alert_after_ms = 90000\n");
    assert_err(keytier_ctx_open(T.conf, &c2), KEYTIER_E_CONFIG,
               "avail.cache_alert_after_ms (90000) must be less than "
               "avail.cache_refresh_ahead_ms (60000, ttl/5 by default)");
    write_conf("avail.hedge_ms = 10\navail.hedge_ms = 20\n");
    assert_err(keytier_ctx_open(T.conf, &c2), KEYTIER_E_CONFIG,
               "avail.hedge_ms: set again (first on line");
    write_conf("avail.nonsense = 1\n");
    assert_err(keytier_ctx_open(T.conf, &c2), KEYTIER_E_CONFIG,
               "avail.nonsense");
    ck_assert_ptr_null(c2);
}
END_TEST

/* Customer key A's token is absent (an outage) while the customer destroyed
 * root B (a revocation): a user read is refused as revoked and never served
 * through the availability key, even on a workload that falls back on
 * outages; an internal read still falls back, audited with both classes. */
START_TEST(one_denied_one_down_user_refused)
{
    keytier_dep_info d;
    json_object *recs[64], *rec = NULL;
    int n;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    keytier_ctx_close(ctx);
    ctx = NULL;
    testenv_destroy(&T, "VaultB", "rootB");
    token_hide("VaultA");
    ctx = testenv_ctx(&T);

    assert_err(open_dep(&user, d.dep_id), KEYTIER_E_REVOKED, "[B]");
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", NULL), 0);
    ck_assert_int_eq(
        count_activity(recs, n, "Request denied: customer keys revoked", &rec),
        1);
    ck_assert_str_eq(field(rec, "RequestKind"), "user");
    ck_assert_str_eq(key_error_class(rec, 0), "system");
    ck_assert_str_eq(key_error_class(rec, 1), "denied");
    audit_free(recs, n);
    ck_assert_uint_eq(stats().fallbacks, 0);
    ck_assert_uint_eq(stats().denied, 1);

    assert_err(open_dep(&index_op, d.dep_id), KEYTIER_OK, NULL);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(rec, "RequestKind"), "internal");
    ck_assert_str_eq(key_error_class(rec, 0), "system");
    ck_assert_str_eq(key_error_class(rec, 1), "denied");
    audit_free(recs, n);
    ck_assert_uint_eq(stats().fallbacks, 1);
    assert_audit_intact();
}
END_TEST

/* No unaudited use of the availability key: when the fallback record
 * cannot be written (the audit log cannot grow), the read fails and no key
 * leaves the library; once the log can grow again the same read succeeds
 * with its record. */
/* A fallback read of DEP dep while no file may grow past the audit log's
 * size: refused with KEYTIER_E_AUDIT, the detail holding want. */
static void fallback_refused_unwritable(const char *dep, const char *want)
{
    struct stat st;
    struct rlimit lim;
    keytier_key *k = NULL;

    /* A write past RLIMIT_FSIZE fails with EFBIG (and SIGXFSZ, ignored). */
    ck_assert_int_eq(stat(audit_path, &st), 0);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &lim), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {(rlim_t)st.st_size, lim.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    keytier_err e = keytier_dep_key_open(ctx, &index_op, "org-1", dep, &k);
    /* the limit lifted before any check: the test runner writes files */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ck_assert_ptr_null(k);
    keytier_key_close(k);
    assert_err(e, KEYTIER_E_AUDIT, want);
}

START_TEST(fallback_without_audit_record_refused)
{
    keytier_dep_info d;
    json_object *recs[64];
    int n;

    assert_err(keytier_dep_create(ctx, "org-1", "Exchange", URI_A, URI_B, &d),
               KEYTIER_OK, NULL);
    testenv_destroy(&T, "VaultA", "rootA");
    testenv_destroy(&T, "VaultB", "rootB");
    /* The record's global index cannot be taken (the store cannot grow
     * either; a PostgreSQL store grows on its server, so there the store
     * refuses the counter's update): no record, no fallback. */
    if (testenv_is_pg(&T))
        testenv_sql_refuse(&T, "no_index", "BEFORE UPDATE", "audit_counter",
                           NULL, "index refused");
    fallback_refused_unwritable(d.dep_id, "no global index for the record");
    if (testenv_is_pg(&T))
        testenv_sql_allow(&T, "no_index", "audit_counter");
    /* The line itself cannot be written (records without an index, as
     * before nodes): the same. */
    kt_audit_set_node(ctx->avail->audit, NULL, NULL, NULL);
    fallback_refused_unwritable(d.dep_id, "cannot write audit log");
    ck_assert_uint_eq(stats().fallbacks, 0);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", NULL), 0);
    audit_free(recs, n);

    assert_err(open_dep(&index_op, d.dep_id), KEYTIER_OK, NULL);
    n = audit_records(recs, 64);
    ck_assert_int_eq(
        count_activity(recs, n, "Fallback to availability key", NULL), 1);
    audit_free(recs, n);
    ck_assert_uint_eq(stats().fallbacks, 1);
    assert_audit_intact();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fallback");
    TCase *tc = tcase_create("fallback");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, cached_read_makes_no_token_call);
    tcase_add_test(tc, request_must_name_its_kind);
    tcase_add_test(tc, revoked_roots_destroyed);
    tcase_add_test(tc, revoked_unwrap_turned_off);
    tcase_add_test(tc, revoked_pin_changed);
    tcase_add_test(tc, revoked_roots_replaced);
    tcase_add_test(tc, refused_pin_not_retried);
    tcase_add_test(tc, files_workload_falls_back_for_recover_only);
    tcase_add_test(tc, files_workload_fallback_needs_an_approval);
    tcase_add_test(tc, config_errors_name_the_key);
    tcase_add_test(tc, one_denied_one_down_user_refused);
    tcase_add_test(tc, fallback_without_audit_record_refused);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
