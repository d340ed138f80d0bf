/*
 * The fallback rule against real vault outages (run by outage.sh, which
 * serves vault tokens A and B from two `p11-kit server` processes and
 * passes their addresses and PIDs).  Through the public API only:
 *
 *   A frozen (SIGSTOP): user reads succeed through B, no fallback record;
 *   A and B frozen: a user read succeeds through the availability key after
 *     the deadline, with exactly one fallback record, fields checked one by
 *     one; thawed (SIGCONT): the customer keys serve again, no new record;
 *   the cache: a read within the TTL makes no token call; with both vaults
 *     frozen the refresh fails and the alert fires while the entry is still
 *     served; thawed, the refresh succeeds; revocation through the API
 *     empties the cache at once;
 *   roots destroyed on both vaults: user read "access revoked", internal
 *     read (index) through the availability key, audited; availability key
 *     destroyed too: the internal read fails;
 *   A and B killed (SIGKILL): user read through the availability key;
 *   the cache thread stalled (in the alert callback, vaults frozen): a
 *   purge by another context still reaches this context's next hit, which
 *   syncs the store's invalidations itself.
 *
 * Deadlines (every token call has one, docs/DESIGN.md §2):
 *   a context opened while A is frozen opens, reads through B, refuses a
 *   DEP on A with KEYTIER_E_UNAVAILABLE, and uses A again once thawed;
 *   opened while both are frozen it falls back with one audit record;
 *   DEP creation with a frozen vault fails naming it and leaves no DEP and
 *   no availability key; a DEP on healthy vaults reads through a customer
 *   key while an unrelated vault is frozen (and a lookup is stuck on it);
 *   keytier_ctx_close returns with calls hung on a frozen vault; the
 *   health of a DEP's roots names a frozen vault's key unreachable.
 *
 * Durations are printed for the log, never asserted.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <semaphore.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>
#include <sqlite3.h>

#include "keytier.h"

#define DEADLINE_MS 1000
#define HEDGE_MS    200

static const char *addr_a, *addr_b, *top_dir, *softhsm_module, *client_module;
static pid_t pid_a, pid_b;
static char dir[512], conf[600], audit_path[600];
static keytier_ctx *ctx;

/* ---- the vault servers ------------------------------------------------ */

/* Signals the server and each of its per-connection children, by PID.
 * The children are listed first: once the server is killed they belong to
 * init and can no longer be told apart. */
static void server_signal(pid_t pid, int sig)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t kids[64];
    int n = 0;

    while (d && (e = readdir(d)) && n < 64) {
        char path[300], buf[512];
        FILE *f;
        long ppid = -1;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof buf, f)) {
            /* pid (comm) state ppid ...; comm may hold spaces */
            char *rp = strrchr(buf, ')');
            if (rp)
                sscanf(rp + 2, "%*c %ld", &ppid);
        }
        fclose(f);
        if (ppid == (long)pid)
            kids[n++] = (pid_t)atol(e->d_name);
    }
    if (d)
        closedir(d);
    kill(pid, sig); /* first, so that it forks no new child */
    for (int i = 0; i < n; i++)
        kill(kids[i], sig);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- raw PKCS#11: what the customer (or the service admin) does ------- */

struct raw {
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE s;
};

static void raw_open(const char *address, const char *token, struct raw *r)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;

    if (address) {
        setenv("P11_KIT_SERVER_ADDRESS", address, 1);
        r->fl = p11_kit_module_load(client_module, 0);
        unsetenv("P11_KIT_SERVER_ADDRESS");
    } else {
        r->fl = p11_kit_module_load(softhsm_module, 0);
    }
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
        CK_RV rv = r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)"1234", 4);
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

/* A customer root: RSA-2048, the private key never extractable and able
 * to unwrap, the public key able to wrap.  (RSA because p11-kit's RPC
 * carries RSA-OAEP but not the AES key-wrap mechanisms.) */
static void root_create(const char *address, const char *token,
                        const char *label)
{
    struct raw r;
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BYTE exp[] = {1, 0, 1};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_MODULUS_BITS, &bits, sizeof bits},
        {CKA_PUBLIC_EXPONENT, exp, sizeof exp},
        {CKA_WRAP, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)label, strlen(label)},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_UNWRAP, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE hp, hq;

    raw_open(address, token, &r);
    ck_assert_int_eq(
        r.fl->C_GenerateKeyPair(r.s, &mech, pub, 6, priv, 7, &hp, &hq), CKR_OK);
    raw_close(&r);
}

/* Destroys the objects matching one attribute. */
static void destroy_where(const char *address, const char *token,
                          CK_ATTRIBUTE *match)
{
    struct raw r;
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG n = 0;

    raw_open(address, token, &r);
    ck_assert_int_eq(r.fl->C_FindObjectsInit(r.s, match, 1), CKR_OK);
    ck_assert_int_eq(r.fl->C_FindObjects(r.s, objs, 8, &n), CKR_OK);
    r.fl->C_FindObjectsFinal(r.s);
    ck_assert_uint_gt(n, 0);
    for (CK_ULONG i = 0; i < n; i++)
        ck_assert_int_eq(r.fl->C_DestroyObject(r.s, objs[i]), CKR_OK);
    raw_close(&r);
}

static void root_destroy(const char *address, const char *token,
                         const char *label)
{
    CK_ATTRIBUTE m = {CKA_LABEL, (void *)label, strlen(label)};

    destroy_where(address, token, &m);
}

static void avail_destroy(const char *uri)
{
    P11KitUri *u = p11_kit_uri_new();

    ck_assert_int_eq(p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, u),
                     P11_KIT_URI_OK);
    destroy_where(NULL, "Service", p11_kit_uri_get_attribute(u, CKA_ID));
    p11_kit_uri_free(u);
}

/* ---- library context -------------------------------------------------- */

static const char *uri(const char *token, const char *label)
{
    static char buf[4][128];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "pkcs11:token=%s;object=%s", token, label);
    return buf[i];
}

static void ctx_open(const char *extra)
{
    FILE *f = fopen(conf, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    keytier_err e;

    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "remote = %s\nremote = %s\nmodule = %s\n"
            "service_token = pkcs11:token=Service\nstore = %s/store.db\n"
            "pin.VaultA = value:1234\npin.VaultB = value:1234\n"
            "pin.Service = value:1234\npin.VaultL = value:1234\n"
            "log_level = warning\napproval.required = no\n"
            /* SoftHSM2 does RSA-OAEP with SHA-1 only */
            "allow_oaep_sha1 = yes\n"
            "avail.audit_log = %s\navail.call_deadline_ms = %d\n"
            "avail.hedge_ms = %d\navail.per_token = 4\n%s\n",
            addr_a, addr_b, softhsm_module, dir, audit_path, DEADLINE_MS,
            HEDGE_MS, extra);
    fclose(f);
    e = keytier_ctx_open(conf, &ctx);
    ck_assert_msg(e == KEYTIER_OK, "keytier_ctx_open: %s",
                  keytier_last_error_detail());
}

/* Set by a test whose process must end with vault A still
 * frozen (the next setup thaws it): see close_with_a_frozen_vault. */
static bool keep_a_frozen;

static void setup(void)
{
    /* a test that failed may have left a vault frozen */
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    keep_a_frozen = false;
    snprintf(dir, sizeof dir, "%s/case-XXXXXX", top_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/keytier-lib.conf", dir);
    snprintf(audit_path, sizeof audit_path, "%s/audit.jsonl", dir);
}

static void teardown(void)
{
    if (!keep_a_frozen)
        server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    keytier_ctx_close(ctx);
    ctx = NULL;
}

static keytier_avail_stats stats(void)
{
    keytier_avail_stats s;

    ck_assert_int_eq(keytier_avail_stats_get(ctx, &s), KEYTIER_OK);
    return s;
}

static keytier_err read_dep(const keytier_request *req, const char *dep_id,
                            double *ms)
{
    keytier_key *k = NULL;
    double t0 = now_ms();
    keytier_err e = keytier_dep_key_open(ctx, req, "org-1", dep_id, &k);

    if (ms)
        *ms = now_ms() - t0;
    if (e == KEYTIER_OK)
        ck_assert_ptr_nonnull(k);
    else
        ck_assert_ptr_null(k);
    keytier_key_close(k);
    return e;
}

static void assert_ok(keytier_err e)
{
    ck_assert_msg(e == KEYTIER_OK, "%s: %s", keytier_error_name(e),
                  keytier_last_error_detail());
}

/* ---- audit log -------------------------------------------------------- */

static int audit_count(const char *activity, json_object **last)
{
    FILE *f = fopen(audit_path, "r");
    char line[8192];
    int n = 0;

    if (last)
        *last = NULL;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        json_object *o = json_tokener_parse(line), *a;
        ck_assert_ptr_nonnull(o);
        if (json_object_object_get_ex(o, "Activity", &a) &&
            !strcmp(json_object_get_string(a), activity)) {
            n++;
            if (last) {
                json_object_put(*last);
                *last = json_object_get(o);
            }
        }
        json_object_put(o);
    }
    fclose(f);
    return n;
}

static const char *field(json_object *o, const char *key)
{
    json_object *v;

    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no field %s", key);
    return json_object_get_string(v);
}

static json_object *key_error(json_object *rec, int i)
{
    json_object *errs;

    ck_assert(json_object_object_get_ex(rec, "CustomerKeyErrors", &errs));
    ck_assert_int_eq((int)json_object_array_length(errs), 2);
    return json_object_array_get_idx(errs, i);
}

static void assert_audit_intact(void)
{
    uint64_t bad = 0, n = 0;

    ck_assert_msg(keytier_audit_verify(audit_path, &bad, &n) == KEYTIER_OK,
                  "%s", keytier_last_error_detail());
}

/* ---- scenarios -------------------------------------------------------- */

static const keytier_request user = {
    KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE, "req-outage-1", NULL};
static const keytier_request index_op = {
    KEYTIER_REQUEST_INTERNAL, KEYTIER_INTERNAL_INDEX, "req-index-1", NULL};

static void dep_create(const char *la, const char *lb, keytier_dep_info *d)
{
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange", uri("VaultA", la),
                                 uri("VaultB", lb), d));
}

START_TEST(healthy_then_cached)
{
    keytier_dep_info d;
    keytier_avail_stats s1, s2;
    double ms;

    ctx_open("avail.cache_ttl_ms = 60000\navail.cache_refresh_ahead_ms = 0");
    dep_create("rootA", "rootB", &d);
    assert_ok(read_dep(&user, d.dep_id, &ms));
    fprintf(stderr, "healthy cold read: %.1f ms\n", ms);
    s1 = stats();
    ck_assert_uint_ge(s1.token_reads, 1);
    assert_ok(read_dep(&user, d.dep_id, &ms));
    fprintf(stderr, "cached read: %.3f ms\n", ms);
    s2 = stats();
    ck_assert_uint_eq(s2.token_reads, s1.token_reads);
    ck_assert_uint_eq(s2.cache_hits, s1.cache_hits + 1);
    ck_assert_uint_eq(s2.fallbacks, 0);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
}
END_TEST

START_TEST(vault_a_frozen_b_answers)
{
    keytier_dep_info d;
    double ms;

    ctx_open("avail.cache_ttl_ms = 0");
    dep_create("rootA", "rootB", &d);
    server_signal(pid_a, SIGSTOP);
    /* more reads than avail.per_token: once A has that many hung calls it
     * is refused at once and B answers without waiting for the hedge */
    for (int i = 0; i < 10; i++) {
        assert_ok(read_dep(&user, d.dep_id, &ms));
        fprintf(stderr, "A frozen, read %d: %.1f ms (hedge %d ms)\n", i, ms,
                HEDGE_MS);
    }
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    ck_assert_uint_eq(stats().fallbacks, 0);
    server_signal(pid_a, SIGCONT);
}
END_TEST

START_TEST(both_frozen_availability_key_then_thawed)
{
    keytier_dep_info d;
    json_object *rec;
    const char *t;
    double ms;

    ctx_open("avail.cache_ttl_ms = 0");
    dep_create("rootA", "rootB", &d);
    server_signal(pid_a, SIGSTOP);
    server_signal(pid_b, SIGSTOP);
    assert_ok(read_dep(&user, d.dep_id, &ms));
    fprintf(stderr, "A and B frozen: %.1f ms (deadline %d ms)\n", ms,
            DEADLINE_MS);
    ck_assert_int_eq(audit_count("Fallback to availability key", &rec), 1);
    /* the fallback record, field by field (DESIGN.md §2 "Audit") */
    t = field(rec, "CreationTime");
    ck_assert_int_eq(strlen(t), 24);
    ck_assert(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    ck_assert_int_eq(strlen(field(rec, "Id")), 36);
    ck_assert_str_eq(field(rec, "RecordType"), "CustomerKeyServiceEncryption");
    ck_assert_str_eq(field(rec, "Activity"), "Fallback to availability key");
    ck_assert_str_eq(field(rec, "Workload"), "Exchange");
    ck_assert_str_eq(field(rec, "OrganizationId"), "org-1");
    ck_assert_str_eq(field(rec, "DataEncryptionPolicyId"), d.dep_id);
    ck_assert_str_eq(field(rec, "PolicyId"), d.policy_id);
    ck_assert_str_eq(field(rec, "RequestId"), "req-outage-1");
    ck_assert_str_eq(field(rec, "RequestKind"), "user");
    ck_assert(!json_object_object_get_ex(rec, "Operation", NULL));
    ck_assert_str_eq(field(key_error(rec, 0), "Key"), "A");
    ck_assert_str_eq(field(key_error(rec, 0), "Uri"),
                     "pkcs11:token=VaultA;object=rootA");
    ck_assert_str_eq(field(key_error(rec, 0), "Error"), "timeout");
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "system");
    ck_assert_str_eq(field(key_error(rec, 1), "Key"), "B");
    ck_assert_str_eq(field(key_error(rec, 1), "Uri"),
                     "pkcs11:token=VaultB;object=rootB");
    ck_assert_str_eq(field(key_error(rec, 1), "Error"), "timeout");
    ck_assert_str_eq(field(key_error(rec, 1), "Class"), "system");
    json_object_put(rec);
    ck_assert_uint_eq(stats().fallbacks, 1);
    ck_assert_uint_ge(stats().timeouts, 2);

    /* the vaults come back: the customer keys serve again */
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    assert_ok(read_dep(&user, d.dep_id, &ms));
    fprintf(stderr, "thawed: %.1f ms\n", ms);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 1);
    ck_assert_uint_eq(stats().fallbacks, 1);
    assert_audit_intact();
}
END_TEST

/* The files shape does not fall back on an outage, except for the
 * internal operation "recover". */
START_TEST(files_workload_outage)
{
    keytier_dep_info d;
    json_object *rec;
    const keytier_request recover = {KEYTIER_REQUEST_INTERNAL,
                                     KEYTIER_INTERNAL_RECOVER, "req-recover-1",
                                     NULL};

    ctx_open("avail.cache_ttl_ms = 0");
    assert_ok(keytier_dep_create(ctx, "org-1", "SharePoint",
                                 uri("VaultA", "rootA"), uri("VaultB", "rootB"),
                                 &d));
    server_signal(pid_a, SIGSTOP);
    server_signal(pid_b, SIGSTOP);
    ck_assert_int_eq(read_dep(&user, d.dep_id, NULL), KEYTIER_E_UNAVAILABLE);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "no outage fallback"));
    ck_assert_int_eq(read_dep(&index_op, d.dep_id, NULL),
                     KEYTIER_E_UNAVAILABLE);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    assert_ok(read_dep(&recover, d.dep_id, NULL));
    ck_assert_int_eq(audit_count("Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(rec, "Workload"), "SharePoint");
    ck_assert_str_eq(field(rec, "Operation"), "recover");
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "system");
    json_object_put(rec);
    ck_assert_uint_eq(stats().unavailable, 2);
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    assert_audit_intact();
}
END_TEST

static sem_t alert_sem;
static keytier_alert alert_seen;
static char alert_dep[64];

static void on_alert(void *arg, const keytier_alert *a)
{
    (void)arg;
    alert_seen = *a;
    snprintf(alert_dep, sizeof alert_dep, "%s", a->dep_id ? a->dep_id : "");
    alert_seen.dep_id = alert_dep;
    alert_seen.tenant = NULL;
    alert_seen.last_error = NULL;
    sem_post(&alert_sem);
}

static void wait_sem(sem_t *s)
{
    struct timespec ts;
    int r;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    while ((r = sem_timedwait(s, &ts)) != 0 && errno == EINTR)
        ;
    ck_assert_msg(r == 0, "the event did not come");
}

START_TEST(cache_refresh_alert_while_vaults_down)
{
    keytier_dep_info d;
    keytier_avail_stats s1, s2;
    json_object *rec;
    size_t n;

    sem_init(&alert_sem, 0, 0);
    /* refresh due 4 s after the read, the alert 1 s later, expiry at 8 s:
     * the alert's clock starts when the refresh became due, so it comes
     * at the latest when the attempt under way ends (one hedged pair of
     * deadlines, 1.2 s), 1.8 s before expiry */
    ctx_open("avail.cache_ttl_ms = 8000\navail.cache_refresh_ahead_ms = 4000\n"
             "avail.cache_retry_ms = 100\navail.cache_alert_after_ms = 1000");
    ck_assert_int_eq(keytier_alert_callback_set(ctx, on_alert, NULL),
                     KEYTIER_OK);
    dep_create("rootA", "rootB", &d);
    assert_ok(read_dep(&user, d.dep_id, NULL));
    server_signal(pid_a, SIGSTOP);
    server_signal(pid_b, SIGSTOP);
    wait_sem(&alert_sem);
    /* the alert comes before expiry: the entry is still served, with no
     * token call and no fallback */
    s1 = stats();
    assert_ok(read_dep(&user, d.dep_id, NULL));
    s2 = stats();
    ck_assert_uint_eq(s2.cache_hits, s1.cache_hits + 1);
    ck_assert_uint_eq(s2.token_reads, s1.token_reads);
    ck_assert_uint_eq(s2.fallbacks, 0);
    ck_assert_uint_gt(alert_seen.expires_in_ms, 0);
    ck_assert_uint_ge(alert_seen.failing_ms, 1000);
    ck_assert_uint_ge(alert_seen.expires_in_ms,
                      4000 - 1000 - (HEDGE_MS + DEADLINE_MS));
    ck_assert_str_eq(alert_dep, d.dep_id);
    ck_assert_uint_eq(s2.cache_alerts, 1);
    ck_assert_int_eq(audit_count("Cache refresh failing", &rec), 1);
    ck_assert_str_eq(field(rec, "DataEncryptionPolicyId"), d.dep_id);
    ck_assert_str_eq(field(rec, "OrganizationId"), "org-1");
    json_object_put(rec);
    fprintf(stderr, "alert: failing %llu ms, expires in %llu ms\n",
            (unsigned long long)alert_seen.failing_ms,
            (unsigned long long)alert_seen.expires_in_ms);

    /* thawed: a refresh succeeds (bounded wait for it) */
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    for (int i = 0; i < 300 && stats().cache_refreshes == 0; i++)
        usleep(100000);
    ck_assert_uint_ge(stats().cache_refreshes, 1);
    ck_assert_uint_eq(stats().cache_entries, 1);

    /* revoked through the API: the cache empties at once */
    ck_assert_int_eq(keytier_cache_invalidate(ctx, KEYTIER_INVALIDATE_ROOT,
                                              uri("VaultA", "rootA"), &n),
                     KEYTIER_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(stats().cache_entries, 0);
    s1 = stats();
    assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_uint_gt(stats().token_reads, s1.token_reads);
    assert_audit_intact();
}
END_TEST

/* An alert callback that holds the cache thread until told. */
static sem_t stall_sem, release_sem;

static void on_alert_stall(void *arg, const keytier_alert *a)
{
    (void)arg;
    (void)a;
    sem_post(&stall_sem);
    while (sem_wait(&release_sem) != 0 && errno == EINTR)
        ;
}

START_TEST(stalled_cache_thread_hit_syncs_itself)
{
    keytier_dep_info d;
    keytier_ctx *other = NULL;
    keytier_avail_stats s1, s2;
    keytier_purge_report rep;

    sem_init(&stall_sem, 0, 0);
    sem_init(&release_sem, 0, 0);
    ctx_open("avail.cache_ttl_ms = 14000\navail.cache_refresh_ahead_ms = 7000\n"
             "avail.cache_retry_ms = 100\navail.cache_alert_after_ms = 500\n"
             "avail.cache_sync_ms = 50");
    ck_assert_int_eq(keytier_alert_callback_set(ctx, on_alert_stall, NULL),
                     KEYTIER_OK);
    dep_create("rootA", "rootB", &d);
    assert_ok(read_dep(&user, d.dep_id, NULL));
    /* frozen vaults: refreshing fails until the alert, whose callback
     * keeps the cache thread (and with it the periodic sync) stopped */
    server_signal(pid_a, SIGSTOP);
    server_signal(pid_b, SIGSTOP);
    wait_sem(&stall_sem);
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    /* still served from the cache */
    s1 = stats();
    assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_uint_eq(stats().cache_hits, s1.cache_hits + 1);

    /* another context (its own store handle and cache) purges the tenant */
    ck_assert_int_eq(keytier_ctx_open(conf, &other), KEYTIER_OK);
    assert_ok(keytier_tenant_purge(other, "org-1", 0, &rep));
    ck_assert_uint_eq(rep.deps, 1);
    keytier_ctx_close(other);
    /* more than twice the sync interval with the thread still stopped
     * (a wait that only makes the thread certainly late) */
    usleep(300 * 1000);
    s1 = stats();
    ck_assert_int_eq(read_dep(&user, d.dep_id, NULL), KEYTIER_E_PURGED);
    s2 = stats();
    ck_assert_uint_gt(s2.cache_syncs, s1.cache_syncs); /* the hit synced */
    ck_assert_uint_ge(s2.cache_sync_rows, s1.cache_sync_rows + 1);
    ck_assert_uint_eq(s2.cache_hits, s1.cache_hits);
    ck_assert_uint_eq(s2.cache_entries, 0);
    sem_post(&release_sem);
}
END_TEST

/* A revocation during an outage reaches the cache: the background refresh
 * of an entry gets "system" from vault A (frozen) and "denied" from vault B
 * (root destroyed).  The entry is evicted at once instead of being served
 * until it expires, and the next user read is refused as revoked. */
START_TEST(refresh_one_down_one_revoked_evicts)
{
    keytier_dep_info d;
    keytier_avail_stats s1;

    root_create(addr_a, "VaultA", "rfA");
    root_create(addr_b, "VaultB", "rfB");
    /* the first refresh 8 s after the read; the entry lives 16 s */
    ctx_open("avail.cache_ttl_ms = 16000\navail.cache_refresh_ahead_ms = 8000\n"
             "avail.cache_retry_ms = 100\navail.cache_alert_after_ms = 5000");
    dep_create("rfA", "rfB", &d);
    assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_uint_eq(stats().cache_entries, 1);
    root_destroy(addr_b, "VaultB", "rfB");
    server_signal(pid_a, SIGSTOP);
    /* bounded well inside the TTL: an entry kept until expiry fails */
    for (int i = 0; i < 120 && stats().cache_entries != 0; i++)
        usleep(100000);
    ck_assert_uint_eq(stats().cache_entries, 0);
    ck_assert_uint_ge(stats().cache_refresh_failures, 1);
    s1 = stats();
    ck_assert_int_eq(read_dep(&user, d.dep_id, NULL), KEYTIER_E_REVOKED);
    ck_assert_uint_eq(stats().cache_hits, s1.cache_hits);
    ck_assert_uint_eq(stats().fallbacks, 0);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    server_signal(pid_a, SIGCONT);
    assert_audit_intact();
}
END_TEST

START_TEST(revoked_on_both_vaults)
{
    keytier_dep_info d;
    json_object *rec;

    root_create(addr_a, "VaultA", "revA");
    root_create(addr_b, "VaultB", "revB");
    ctx_open("avail.cache_ttl_ms = 0");
    dep_create("revA", "revB", &d);
    assert_ok(read_dep(&user, d.dep_id, NULL));
    root_destroy(addr_a, "VaultA", "revA");
    root_destroy(addr_b, "VaultB", "revB");

    ck_assert_int_eq(read_dep(&user, d.dep_id, NULL), KEYTIER_E_REVOKED);
    ck_assert_str_eq(keytier_strerror(KEYTIER_E_REVOKED),
                     "access revoked: the customer keys refused");
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    ck_assert_int_eq(audit_count("Request denied: customer keys revoked", &rec),
                     1);
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "denied");
    ck_assert_str_eq(field(key_error(rec, 1), "Class"), "denied");
    json_object_put(rec);

    assert_ok(read_dep(&index_op, d.dep_id, NULL));
    ck_assert_int_eq(audit_count("Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(rec, "RequestKind"), "internal");
    ck_assert_str_eq(field(rec, "Operation"), "index");
    ck_assert_str_eq(field(rec, "RequestId"), "req-index-1");
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "denied");
    json_object_put(rec);

    avail_destroy(d.root_uri[KEYTIER_ROOT_AVAIL]);
    ck_assert_int_eq(read_dep(&index_op, d.dep_id, NULL), KEYTIER_E_REVOKED);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 1);
    assert_audit_intact();
}
END_TEST

/* Last: the vault servers do not come back. */
START_TEST(both_killed_availability_key)
{
    keytier_dep_info d;
    json_object *rec;
    double ms;

    ctx_open("avail.cache_ttl_ms = 0");
    dep_create("rootA", "rootB", &d);
    server_signal(pid_a, SIGKILL);
    server_signal(pid_b, SIGKILL);
    assert_ok(read_dep(&user, d.dep_id, &ms));
    fprintf(stderr, "A and B killed: %.1f ms\n", ms);
    ck_assert_int_eq(audit_count("Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "system");
    ck_assert_str_eq(field(key_error(rec, 1), "Class"), "system");
    fprintf(stderr, "errors: A %s, B %s\n", field(key_error(rec, 0), "Error"),
            field(key_error(rec, 1), "Error"));
    json_object_put(rec);

    /* a service (re)started while both vaults are gone still opens and
     * serves through the availability key */
    keytier_ctx_close(ctx);
    ctx = NULL;
    ctx_open("avail.cache_ttl_ms = 0");
    assert_ok(read_dep(&user, d.dep_id, &ms));
    fprintf(stderr, "restarted with A and B gone: %.1f ms\n", ms);
    ck_assert_int_eq(audit_count("Fallback to availability key", &rec), 2);
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "system");
    ck_assert_str_eq(field(key_error(rec, 1), "Class"), "system");
    json_object_put(rec);
    assert_audit_intact();
}
END_TEST

/* ---- a frozen vault never hangs the library ------------ */

#define ADMIN_DEADLINE "avail.admin_deadline_ms = 3000\n"

/* Objects the service token holds (availability keys and their halves). */
static CK_ULONG service_objects(void)
{
    struct raw r;
    CK_OBJECT_HANDLE objs[256];
    CK_ULONG n = 0;

    raw_open(NULL, "Service", &r);
    ck_assert_int_eq(r.fl->C_FindObjectsInit(r.s, NULL, 0), CKR_OK);
    ck_assert_int_eq(r.fl->C_FindObjects(r.s, objs, 256, &n), CKR_OK);
    r.fl->C_FindObjectsFinal(r.s);
    raw_close(&r);
    return n;
}

static size_t dep_count(void)
{
    keytier_dep_info *l = NULL;
    size_t n = 0;

    assert_ok(keytier_dep_list(ctx, "org-1", NULL, &l, &n));
    keytier_dep_list_free(l);
    return n;
}

static void assert_detail_has(const char *what)
{
    ck_assert_msg(strstr(keytier_last_error_detail(), what) != NULL,
                  "'%s' not in: %s", what, keytier_last_error_detail());
}

/* DEP creation with one vault frozen: KEYTIER_E_UNAVAILABLE naming it,
 * and nothing left behind (no DEP, no availability key). */
static void assert_create_unavailable(const char *token, const char *what)
{
    keytier_dep_info d;
    size_t deps = dep_count();
    CK_ULONG objs = service_objects();

    ck_assert_int_eq(keytier_dep_create(ctx, "org-1", "Exchange",
                                        uri("VaultA", "rootA"),
                                        uri("VaultB", "rootB"), &d),
                     KEYTIER_E_UNAVAILABLE);
    fprintf(stderr, "create with %s frozen: %s\n", token,
            keytier_last_error_detail());
    assert_detail_has(what);
    assert_detail_has(token);
    ck_assert_uint_eq(dep_count(), deps);
    ck_assert_uint_eq(service_objects(), objs);
}

/* After SIGCONT the vault's late calls return and it serves again: a DEP
 * on A and B can be created (bounded wait for the late calls). */
static void wait_create_ok(keytier_dep_info *d)
{
    keytier_err e = KEYTIER_E_UNAVAILABLE;

    for (int i = 0; i < 100 && e == KEYTIER_E_UNAVAILABLE; i++) {
        e = keytier_dep_create(ctx, "org-1", "Exchange", uri("VaultA", "rootA"),
                               uri("VaultB", "rootB"), d);
        if (e == KEYTIER_E_UNAVAILABLE)
            usleep(100000);
    }
    assert_ok(e);
}

START_TEST(open_with_a_frozen)
{
    keytier_dep_info d, d2;

    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d);
    keytier_ctx_close(ctx);
    ctx = NULL;

    /* a service starting while vault A is frozen: C_Initialize of A's
     * module never returns */
    server_signal(pid_a, SIGSTOP);
    double t0 = now_ms();
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    fprintf(stderr, "open with A frozen: %.1f ms (deadline %d ms)\n",
            now_ms() - t0, DEADLINE_MS);
    for (int i = 0; i < 4; i++)
        assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    ck_assert_uint_eq(stats().fallbacks, 0);
    assert_create_unavailable("VaultA", "customer key A");

    /* thawed: A's late start returns and A serves again, alone */
    server_signal(pid_a, SIGCONT);
    wait_create_ok(&d2);
    server_signal(pid_b, SIGSTOP);
    assert_ok(read_dep(&user, d2.dep_id, NULL));
    assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    ck_assert_uint_eq(stats().fallbacks, 0);
    server_signal(pid_b, SIGCONT);
    assert_audit_intact();
}
END_TEST

START_TEST(open_with_both_frozen)
{
    keytier_dep_info d;
    json_object *rec;
    uint64_t before;

    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d);
    keytier_ctx_close(ctx);
    ctx = NULL;

    server_signal(pid_a, SIGSTOP);
    server_signal(pid_b, SIGSTOP);
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_int_eq(audit_count("Fallback to availability key", &rec), 1);
    ck_assert_str_eq(field(rec, "DataEncryptionPolicyId"), d.dep_id);
    ck_assert_str_eq(field(rec, "RequestId"), "req-outage-1");
    ck_assert_str_eq(field(key_error(rec, 0), "Class"), "system");
    ck_assert_str_eq(field(key_error(rec, 1), "Class"), "system");
    fprintf(stderr, "opened with A and B frozen: errors A %s, B %s\n",
            field(key_error(rec, 0), "Error"),
            field(key_error(rec, 1), "Error"));
    json_object_put(rec);
    ck_assert_uint_eq(stats().fallbacks, 1);

    /* thawed: the customer keys serve again (bounded wait for the late
     * module starts), and then no read falls back */
    server_signal(pid_a, SIGCONT);
    server_signal(pid_b, SIGCONT);
    before = stats().fallbacks + 1;
    for (int i = 0; i < 100 && stats().fallbacks != before; i++) {
        before = stats().fallbacks;
        assert_ok(read_dep(&user, d.dep_id, NULL));
        if (stats().fallbacks != before)
            usleep(100000);
    }
    ck_assert_uint_eq(stats().fallbacks, before);
    before = stats().fallbacks;
    assert_ok(read_dep(&user, d.dep_id, NULL));
    ck_assert_uint_eq(stats().fallbacks, before);
    assert_audit_intact();
}
END_TEST

START_TEST(create_with_a_frozen_vault)
{
    keytier_dep_info d;

    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d); /* both tokens known, sessions idle */
    server_signal(pid_a, SIGSTOP);
    assert_create_unavailable("VaultA", "customer key A");
    server_signal(pid_a, SIGCONT);
    /* B frozen: A answers first, B fails before the availability key */
    server_signal(pid_b, SIGSTOP);
    assert_create_unavailable("VaultB", "customer key B");
    server_signal(pid_b, SIGCONT);
    wait_create_ok(&d);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
}
END_TEST

/* A roll during an outage (DESIGN.md §2 "Roll"; the DEP key is read
 * through the customer keys only).  B frozen: rolling A reads through A
 * and succeeds.  A frozen: rolling A reads through B, then the wrap under
 * the new root on A misses the administration deadline: the roll fails
 * naming A and changes nothing (root, state; reads go on through B with no
 * fallback).  Thawed, the same roll succeeds and the new root serves
 * alone. */
static keytier_err roll_a(const char *dep_id, const char *label,
                          keytier_dep_info *after)
{
    return keytier_dep_roll(ctx, "org-1", dep_id, KEYTIER_ROOT_A,
                            uri("VaultA", label), after);
}

START_TEST(roll_with_a_frozen_vault)
{
    keytier_dep_info d, after, shown;
    keytier_err e = KEYTIER_E_UNAVAILABLE;

    root_create(addr_a, "VaultA", "rootA2");
    root_create(addr_a, "VaultA", "rootA3");
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d);

    server_signal(pid_b, SIGSTOP);
    assert_ok(roll_a(d.dep_id, "rootA2", &after));
    ck_assert_str_eq(after.root_uri[KEYTIER_ROOT_A], uri("VaultA", "rootA2"));
    server_signal(pid_b, SIGCONT);

    server_signal(pid_a, SIGSTOP);
    ck_assert_int_eq(roll_a(d.dep_id, "rootA3", &after), KEYTIER_E_UNAVAILABLE);
    fprintf(stderr, "roll with VaultA frozen: %s\n",
            keytier_last_error_detail());
    assert_detail_has("VaultA");
    assert_ok(keytier_dep_show(ctx, "org-1", d.dep_id, &shown));
    ck_assert_str_eq(shown.root_uri[KEYTIER_ROOT_A], uri("VaultA", "rootA2"));
    ck_assert_int_eq(shown.state, after.state);
    assert_ok(read_dep(&user, d.dep_id, NULL)); /* through B */
    ck_assert_uint_eq(stats().fallbacks, 0);
    server_signal(pid_a, SIGCONT);

    /* thawed: bounded wait for A's late calls, then the roll goes through */
    for (int i = 0; i < 100 && e == KEYTIER_E_UNAVAILABLE; i++) {
        e = roll_a(d.dep_id, "rootA3", &after);
        if (e == KEYTIER_E_UNAVAILABLE)
            usleep(100000);
    }
    assert_ok(e);
    ck_assert_str_eq(after.root_uri[KEYTIER_ROOT_A], uri("VaultA", "rootA3"));
    server_signal(pid_b, SIGSTOP);
    assert_ok(read_dep(&user, d.dep_id, NULL)); /* through A's new root */
    server_signal(pid_b, SIGCONT);
    ck_assert_uint_eq(stats().fallbacks, 0);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    ck_assert_int_eq(audit_count("Customer key rolled", NULL), 2);
}
END_TEST

/* A `dep roll` killed mid-way, for real: a child process rolls A to a new
 * root while this one watches the store and SIGKILLs it the moment the
 * DEP shows rolling (its new copy stored, not yet read back; retried with
 * another root when the roll was quicker).  A read right after leaves the
 * roll alone (it could be another process's, still running) and reads
 * through the old copies; once the roll is older than its remaining
 * steps' deadlines the next read proves the pending copy and commits it,
 * audited, and the new root alone opens the DEP key. */
static int store_state(sqlite3_stmt *st)
{
    int v = -1;

    sqlite3_reset(st);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    return v;
}

static void roll_child(const char *dep_id, const char *label)
{
    keytier_ctx *c = NULL;

    if (keytier_ctx_open(conf, &c) != KEYTIER_OK)
        _exit(2);
    _exit(keytier_dep_roll(c, "org-1", dep_id, KEYTIER_ROOT_A,
                           uri("VaultA", label), NULL) == KEYTIER_OK
              ? 0
              : 1);
}

/* Rolls in a child until one is killed while the DEP is rolling; the new
 * root's label of that roll into label. */
static void roll_killed(const char *dep_id, char label[16])
{
    char path[700];
    sqlite3 *db;
    sqlite3_stmt *st;
    bool caught = false;

    snprintf(path, sizeof path, "%s/store.db", dir);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT state FROM deps WHERE "
                                        "dep_id = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, dep_id, -1, SQLITE_TRANSIENT);
    for (int i = 0; i < 10 && !caught; i++) {
        int status;
        snprintf(label, 16, "rootK%d", i);
        root_create(addr_a, "VaultA", label);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            roll_child(dep_id, label);
        while (store_state(st) != KEYTIER_DEP_ROLLING &&
               waitpid(pid, &status, WNOHANG) == 0)
            ;
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        caught = store_state(st) == KEYTIER_DEP_ROLLING;
        fprintf(stderr, "roll %d: %s\n", i,
                caught ? "killed while rolling" : "finished first");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    ck_assert_msg(caught, "no roll was caught rolling");
}

START_TEST(roll_killed_resumed_by_next_read)
{
    keytier_dep_info d, shown;
    char label[16];

    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d);
    keytier_ctx_close(ctx);
    ctx = NULL;
    roll_killed(d.dep_id, label);
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    assert_ok(keytier_dep_show(ctx, "org-1", d.dep_id, &shown));
    ck_assert_int_eq(shown.state, KEYTIER_DEP_ROLLING);
    const char *before = shown.root_uri[KEYTIER_ROOT_A];
    ck_assert_str_ne(before, uri("VaultA", label));
    assert_ok(read_dep(&user, d.dep_id, NULL)); /* the roll may be alive */
    assert_ok(keytier_dep_show(ctx, "org-1", d.dep_id, &shown));
    ck_assert_int_eq(shown.state, KEYTIER_DEP_ROLLING);
    /* 2 steps x 3 s admin deadline + 1 s: the roll is dead */
    sleep(8);
    assert_ok(read_dep(&user, d.dep_id, NULL));
    assert_ok(keytier_dep_show(ctx, "org-1", d.dep_id, &shown));
    ck_assert_int_eq(shown.state, KEYTIER_DEP_REGISTERED);
    ck_assert_str_eq(shown.root_uri[KEYTIER_ROOT_A], uri("VaultA", label));
    ck_assert_int_eq(audit_count("Customer key roll resumed", NULL), 1);
    server_signal(pid_b, SIGSTOP);
    assert_ok(read_dep(&user, d.dep_id, NULL)); /* through the new root */
    server_signal(pid_b, SIGCONT);
    ck_assert_uint_eq(stats().fallbacks, 0);
}
END_TEST

START_TEST(healthy_dep_while_unrelated_vault_frozen)
{
    keytier_dep_info d, dl;
    keytier_avail_stats s1;

    root_create(NULL, "VaultL", "rootL");
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d);
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 uri("VaultL", "rootL"), uri("VaultB", "rootB"),
                                 &dl));
    server_signal(pid_a, SIGSTOP);
    /* a URI that matches no known token makes a scan of every module: the
     * one of A hangs (past the deadline it is reported, not waited for) */
    ck_assert_int_eq(keytier_dep_create(ctx, "org-1", "Exchange",
                                        uri("Nowhere", "x"),
                                        uri("VaultB", "rootB"), &d),
                     KEYTIER_E_UNAVAILABLE);
    assert_detail_has("Nowhere");
    /* cold reads of the DEP on L and B: through a customer key */
    s1 = stats();
    for (int i = 0; i < 4; i++)
        assert_ok(read_dep(&user, dl.dep_id, NULL));
    ck_assert_uint_ge(stats().token_reads, s1.token_reads + 4);
    ck_assert_uint_eq(stats().fallbacks, 0);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
    server_signal(pid_a, SIGCONT);
}
END_TEST

START_TEST(close_with_a_frozen_vault)
{
    keytier_dep_info d;
    double t0;

    /* nothing in flight, but idle sessions on A: closing them and
     * C_Finalize are token calls too */
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    dep_create("rootA", "rootB", &d);
    for (int i = 0; i < 4; i++)
        assert_ok(read_dep(&user, d.dep_id, NULL));
    server_signal(pid_a, SIGSTOP);
    t0 = now_ms();
    keytier_ctx_close(ctx);
    ctx = NULL;
    fprintf(stderr, "close with idle sessions on frozen A: %.1f ms\n",
            now_ms() - t0);
    server_signal(pid_a, SIGCONT);

    /* calls hung on A: a creation leaves one; reads may leave more */
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    server_signal(pid_a, SIGSTOP);
    assert_create_unavailable("VaultA", "customer key A");
    for (int i = 0; i < 4; i++)
        assert_ok(read_dep(&user, d.dep_id, NULL));
    t0 = now_ms();
    keytier_ctx_close(ctx); /* returns; the late calls free the rest */
    ctx = NULL;
    fprintf(stderr, "close with calls hung on A: %.1f ms\n", now_ms() - t0);

    /* and a context whose module start is still hung */
    ctx_open("avail.cache_ttl_ms = 0\n" ADMIN_DEADLINE);
    keytier_ctx_close(ctx);
    ctx = NULL;
    /* Vault A stays frozen until this process has exited: a late call
     * that returned while the process exits would run into modules that
     * exit handlers are tearing down (libkeytier cannot order that; a call
     * still blocked at exit is harmless). */
    keep_a_frozen = true;
}
END_TEST

/* The CLI's token commands (keytier_token_list & co.) on a frozen vault
 * reached through p11-kit-client.so: KEYTIER_E_UNAVAILABLE naming the
 * module after avail.admin_deadline_ms (their default, 30 s: they read no
 * library configuration). */
START_TEST(token_commands_with_a_frozen_vault)
{
    keytier_token_info *list = NULL;
    size_t n = 0;

    setenv("P11_KIT_SERVER_ADDRESS", addr_a, 1);
    assert_ok(keytier_token_list(client_module, &list, &n));
    ck_assert_uint_ge(n, 1);
    keytier_token_list_free(list);
    list = NULL;
    server_signal(pid_a, SIGSTOP);
    ck_assert_int_eq(keytier_token_list(client_module, &list, &n),
                     KEYTIER_E_UNAVAILABLE);
    ck_assert_ptr_null(list);
    assert_detail_has(client_module);
    unsetenv("P11_KIT_SERVER_ADDRESS");
    keep_a_frozen = true; /* see close_with_a_frozen_vault */
}
END_TEST

/* The health of a DEP's roots as `keytier status` shows it
 * (keytier_dep_health): customer key A on a frozen vault is unreachable
 * (within the call deadline, not hung), B destroyed while its vault
 * answers, the availability key missing; thawed, A is reachable again.  A
 * probe never uses the availability key and writes no audit record. */
START_TEST(health_with_a_frozen_vault)
{
    keytier_dep_info d;
    keytier_health h;
    keytier_err e;
    double t0;

    root_create(addr_a, "VaultA", "rootHA");
    root_create(addr_b, "VaultB", "rootHB");
    ctx_open("avail.cache_ttl_ms = 0");
    dep_create("rootHA", "rootHB", &d);
    root_destroy(addr_b, "VaultB", "rootHB");
    avail_destroy(d.root_uri[KEYTIER_ROOT_AVAIL]);
    server_signal(pid_a, SIGSTOP);
    t0 = now_ms();
    assert_ok(keytier_dep_health(ctx, "org-1", d.dep_id, &h));
    fprintf(stderr, "health with VaultA frozen: %.1f ms\n", now_ms() - t0);
    ck_assert_msg(h.key[KEYTIER_ROOT_A] == KEYTIER_KEY_UNREACHABLE,
                  "A: %s (%s)", keytier_key_health_name(h.key[0], 0),
                  h.detail[0]);
    ck_assert_int_eq(h.key[KEYTIER_ROOT_B], KEYTIER_KEY_DESTROYED);
    ck_assert_str_eq(
        keytier_key_health_name(h.key[KEYTIER_ROOT_AVAIL], KEYTIER_ROOT_AVAIL),
        "missing");
    ck_assert_ptr_nonnull(strstr(h.detail[KEYTIER_ROOT_A], "VaultA"));
    server_signal(pid_a, SIGCONT);
    /* thawed: bounded wait for A's late call, then A answers again */
    e = KEYTIER_OK;
    for (int i = 0; i < 100; i++) {
        e = keytier_dep_health(ctx, "org-1", d.dep_id, &h);
        if (e != KEYTIER_OK || h.key[KEYTIER_ROOT_A] == KEYTIER_KEY_REACHABLE)
            break;
        usleep(100000);
    }
    assert_ok(e);
    ck_assert_int_eq(h.key[KEYTIER_ROOT_A], KEYTIER_KEY_REACHABLE);
    ck_assert_uint_eq(stats().fallbacks, 0);
    ck_assert_int_eq(audit_count("Fallback to availability key", NULL), 0);
}
END_TEST

static void once(void)
{
    root_create(addr_a, "VaultA", "rootA");
    root_create(addr_b, "VaultB", "rootB");
}

static const char *env(const char *name)
{
    const char *v = getenv(name);

    if (!v || !*v) {
        fprintf(stderr, "%s is not set (run through outage.sh)\n", name);
        exit(EXIT_FAILURE);
    }
    return v;
}

int main(void)
{
    Suite *s = suite_create("outage");
    TCase *rev = tcase_create("revocation");
    TCase *tc = tcase_create("outage");
    SRunner *sr;
    int failed;

    /* p11-kit-client writes to the server socket: a killed server must
     * give CKR_DEVICE_REMOVED, not end this process. */
    signal(SIGPIPE, SIG_IGN);
    addr_a = env("KT_OUTAGE_ADDR_A");
    addr_b = env("KT_OUTAGE_ADDR_B");
    pid_a = (pid_t)atol(env("KT_OUTAGE_PID_A"));
    pid_b = (pid_t)atol(env("KT_OUTAGE_PID_B"));
    top_dir = env("KT_OUTAGE_DIR");
    softhsm_module = env("SOFTHSM2_MODULE");
    client_module = env("P11KIT_CLIENT_MODULE");

    /* Revocations during outages, first and in a case of their own (each
     * makes its own roots), so that tools/mutate.sh can run them alone
     * (outage@revocation, CK_RUN_CASE). */
    tcase_add_checked_fixture(rev, setup, teardown);
    tcase_set_timeout(rev, 120);
    tcase_add_test(rev, revoked_on_both_vaults);
    tcase_add_test(rev, refresh_one_down_one_revoked_evicts);
    suite_add_tcase(s, rev);
    tcase_add_unchecked_fixture(tc, once, NULL);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, healthy_then_cached);
    tcase_add_test(tc, vault_a_frozen_b_answers);
    tcase_add_test(tc, both_frozen_availability_key_then_thawed);
    tcase_add_test(tc, roll_with_a_frozen_vault);
    tcase_add_test(tc, files_workload_outage);
    tcase_add_test(tc, cache_refresh_alert_while_vaults_down);
    tcase_add_test(tc, open_with_a_frozen);
    tcase_add_test(tc, open_with_both_frozen);
    tcase_add_test(tc, create_with_a_frozen_vault);
    tcase_add_test(tc, healthy_dep_while_unrelated_vault_frozen);
    tcase_add_test(tc, close_with_a_frozen_vault);
    tcase_add_test(tc, token_commands_with_a_frozen_vault);
    tcase_add_test(tc, stalled_cache_thread_hit_syncs_itself);
    tcase_add_test(tc, health_with_a_frozen_vault);
    tcase_add_test(tc, roll_killed_resumed_by_next_read);
    tcase_add_test(tc, both_killed_availability_key); /* last: kills */
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
