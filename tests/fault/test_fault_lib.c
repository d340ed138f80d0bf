/*
 * libkeytier under injected failures (common/kt_fault.h): each scenario is
 * one library call that changes state, run on real tokens of keytier's own
 * module (customer keys and the service token alike; SoftHSM2's C++ code is
 * not built to survive the allocation failures injected process-wide).
 *
 * For each kind (alloc, sqlite, write, fsync) the call is run once armed
 * with n = 0 to count its points P and to learn the new state; then for
 * points n spread over 1..P (every stride-th, at most KT_FAULT_MAX_POINTS
 * per kind, default 3 to keep the suite to minutes under ASan; a large
 * value runs every point, "sqlite:100000,write:100000" every point of
 * those kinds; KT_FAULT_POINTS=write:53,alloc:1025 runs exactly
 * those) the old state is restored from a snapshot of the store, the audit
 * log and the token directory, the nth call of that kind is made to fail,
 * and the state found by a fresh context must be exactly the old one or
 * exactly the new one:
 *   - the store's rows (random ids, wrapped blobs, signatures and times
 *     masked, so the new state of two runs compares equal), the service
 *     token's objects by label (the only token a call adds keys to or
 *     destroys them in), and every DEP key and tier key opening, with
 *     data sealed in the old state decrypting;
 *   - the audit log's chain intact and its anchor proving it (or lagging,
 *     which the design allows), and the records after the old end exactly
 *     those of the new state, or none for the old one;
 *   - the call returned a KEYTIER_E_* error, or succeeded with the new
 *     state (counted apart: a failure it recovered from);
 *   - no leak (__lsan_do_recoverable_leak_check after each point).
 * KT_FAULT_DEBUG prints each point's error and timings, and both states
 * when they differ.
 * The approved operation has a third state the design names: the approval
 * consumed and the operation not done ("a failed operation does not give
 * it back", docs/DESIGN.md §2 "Approvals").  A DEP creation has one too:
 * undone after its record ("DEP creation undone", docs/DESIGN.md §2
 * "Lifecycle"): store and tokens old, and after the old end exactly one
 * "DEP created" and right after it one "DEP creation undone" with a
 * reason, both of the same DEP, one the old state does not know.
 *
 * Usage: test_fault_lib SCENARIO (dep-create, dep-roll, migrate,
 * audit-append, approval-request, approval-grant, approval-use).
 */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <sqlite3.h>

#include "audit.h"
#include "avail.h"
#include "keytier.h"
#include "kt_fault.h"
#include "testenv.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define KT_HAVE_LSAN 1
#else
#define KT_HAVE_LSAN 0
#endif

#define TENANT   "fault-co"
#define WORKLOAD "Exchange"

/* ---- small helpers ----------------------------------------------------- */

static struct testenv env;

/* A growing text: the fingerprint of a state. */
struct text {
    char *s;
    size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        ck_assert_ptr_nonnull(t->s);
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void text_addn(struct text *t, const char *p, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        ck_assert_ptr_nonnull(t->s);
    }
    memcpy(t->s + t->len, p, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_free(struct text *t)
{
    free(t->s);
    memset(t, 0, sizeof *t);
}

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
}

#define assert_ok(call)                                                        \
    do {                                                                       \
        keytier_err e_ = (call);                                               \
        ck_assert_msg(e_ == KEYTIER_OK, "%s: %s (%s)", #call,                  \
                      keytier_error_name(e_), keytier_last_error_detail());    \
    } while (0)

static const keytier_request user_req = {
    KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE, "fault-req", NULL};

/* ---- the state: store rows, token objects, audit records ------------- */

/* Known UUIDs of the old state; others are made by the call (masked). */
static char **old_ids;
static size_t n_old_ids;

static bool is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool id_known(const char *s)
{
    for (size_t i = 0; i < n_old_ids; i++)
        if (memcmp(old_ids[i], s, 36) == 0)
            return true;
    return false;
}

/* Every UUID inside s not in the old state becomes "<new>"; with
 * remember, every UUID of s joins the old state's. */
static void mask_ids(const char *s, struct text *out, bool remember)
{
    size_t n = strlen(s), from = 0;
    for (size_t i = 0; i < n;) {
        if (i + 36 <= n && is_uuid(s + i, 36)) {
            text_addn(out, s + from, i - from);
            if (remember && !id_known(s + i)) {
                old_ids = realloc(old_ids, (n_old_ids + 1) * sizeof *old_ids);
                old_ids[n_old_ids++] = strndup(s + i, 36);
            }
            if (remember || id_known(s + i))
                text_addn(out, s + i, 36);
            else
                text_addn(out, "<new>", 5);
            i += 36;
            from = i;
        } else {
            i++;
        }
    }
    text_addn(out, s + from, n - from);
}

/* Columns whose values are random or clock readings in every run. */
static bool col_masked(const char *c)
{
    static const char *const m[] = {
        "wrapped", "key_check", "signature", "created", "expires",
        "granted", "used",      "started",   "updated", "added",
        "mac",     "ident",     NULL};
    for (int i = 0; m[i]; i++)
        if (strcmp(c, m[i]) == 0)
            return true;
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rows found, one text each, before masking and sorting. */
struct rows {
    char **r;
    size_t n;
};

static void rows_add(struct rows *rs, char *row)
{
    rs->r = realloc(rs->r, (rs->n + 1) * sizeof *rs->r);
    ck_assert_ptr_nonnull(rs->r);
    rs->r[rs->n++] = row;
}

/* Every row masked (ids made by the call, with learn: none, every id of
 * the rows becoming known), sorted, one a line. */
static void rows_out(struct rows *rs, struct text *out, bool learn)
{
    for (size_t i = 0; learn && i < rs->n; i++) {
        struct text seen = {0};
        mask_ids(rs->r[i], &seen, true);
        text_free(&seen);
    }
    for (size_t i = 0; i < rs->n; i++) {
        struct text m = {0};
        mask_ids(rs->r[i], &m, false);
        free(rs->r[i]);
        rs->r[i] = m.s ? m.s : strdup("");
    }
    qsort(rs->r, rs->n, sizeof *rs->r, cmp_str);
    for (size_t i = 0; i < rs->n; i++) {
        text_add(out, "%s\n", rs->r[i]);
        free(rs->r[i]);
    }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

/* A key's CKA_ID in a URI is the id of its DEP as 16 percent-encoded
 * bytes: written as the UUID it is, so that mask_ids knows it. */
static char *uuid_of_pct(const char *v)
{
    struct text t = {0};
    for (size_t i = 0; v[i];) {
        bool run = true;
        for (int k = 0; run && k < 16; k++)
            run = v[i + 3 * k] == '%' &&
                  isxdigit((unsigned char)v[i + 3 * k + 1]) &&
                  isxdigit((unsigned char)v[i + 3 * k + 2]);
        if (!run) {
            text_addn(&t, v + i++, 1);
            continue;
        }
        for (int k = 0; k < 16; k++)
            text_add(&t, "%s%c%c",
                     k == 4 || k == 6 || k == 8 || k == 10 ? "-" : "",
                     tolower((unsigned char)v[i + 3 * k + 1]),
                     tolower((unsigned char)v[i + 3 * k + 2]));
        i += 48;
    }
    return t.s ? t.s : strdup("");
}

/* The rows of table, masked columns as "*". */
static void fp_table(sqlite3 *db, const char *table, struct rows *rs)
{
    char q[128];
    sqlite3_stmt *st;
    snprintf(q, sizeof q, "SELECT * FROM %s", table);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        return; /* a table of a later schema: none */
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct text r = {0};
        text_add(&r, "%s", table);
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *name = sqlite3_column_name(st, c);
            const unsigned char *v = sqlite3_column_text(st, c);
            if (col_masked(name))
                text_add(&r, "|%s=%s", name,
                         sqlite3_column_type(st, c) == SQLITE_NULL ? "null"
                                                                   : "*");
            else
                text_add(&r, "|%s=%s", name, v ? (const char *)v : "null");
        }
        rows_add(rs, uuid_of_pct(r.s));
        free(r.s);
    }
    sqlite3_finalize(st);
}

static void fp_store(struct rows *out)
{
    static const char *const tables[] = {
        "deps",       "dep_roots",       "tier_keys", "dep_roll",
        "migrations", "migration_items", "approvers", "approvals",
        "keysets",    "keyset_keys",     "offboards", "managed_tiks",
        NULL};
    sqlite3 *db;
    ck_assert_int_eq(
        sqlite3_open_v2(env.store, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (int i = 0; tables[i]; i++)
        fp_table(db, tables[i], out);
    sqlite3_close(db);
}

/* The labels of the service token's objects (the context is closed: this
 * process loads the module for itself). */
static void fp_tokens(struct rows *out)
{
    CK_FUNCTION_LIST *fl = p11_kit_module_load(env.keytier_module, 0);
    ck_assert_ptr_nonnull(fl);
    ck_assert_int_eq(p11_kit_module_initialize(fl), CKR_OK);
    CK_SLOT_ID slots[16];
    CK_ULONG ns = 16;
    ck_assert_int_eq(fl->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
    for (CK_ULONG i = 0; i < ns; i++) {
        CK_TOKEN_INFO ti;
        CK_SESSION_HANDLE s;
        ck_assert_int_eq(fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        /* customer keys are made by the setup alone: the service token's
         * objects (availability keys, the anchor key, the victim of
         * approval-use) are the ones a call makes or destroys */
        if (!(ti.flags & CKF_TOKEN_INITIALIZED) ||
            memcmp(ti.label, "KService ", 9) != 0)
            continue;
        ck_assert_int_eq(
            fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s),
            CKR_OK);
        CK_RV rv = fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4);
        ck_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
        ck_assert_int_eq(fl->C_FindObjectsInit(s, NULL, 0), CKR_OK);
        CK_OBJECT_HANDLE h[64];
        CK_ULONG nh = 0;
        ck_assert_int_eq(fl->C_FindObjects(s, h, 64, &nh), CKR_OK);
        fl->C_FindObjectsFinal(s);
        for (CK_ULONG k = 0; k < nh; k++) {
            char label[256] = "";
            CK_OBJECT_CLASS cls = 0;
            CK_ATTRIBUTE a[] = {{CKA_LABEL, label, sizeof label - 1},
                                {CKA_CLASS, &cls, sizeof cls}};
            ck_assert_int_eq(fl->C_GetAttributeValue(s, h[k], a, 2), CKR_OK);
            label[a[0].ulValueLen] = '\0';
            struct text r = {0};
            text_add(&r, "token|%.32s|%lu|%s", (const char *)ti.label,
                     (unsigned long)cls, label);
            rows_add(out, r.s);
        }
        fl->C_CloseSession(s);
    }
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
}

static char audit_path[4096];

/* Whether the records after the first `skip` are exactly a creation
 * undone: "DEP created" and right after it "DEP creation undone" with a
 * Reason, both naming the same DEP, a new one (not of the old state). */
static bool audit_undone(size_t skip)
{
    FILE *f = fopen(audit_path, "r");
    char *line = NULL;
    size_t cap = 0, n = 0, got = 0;
    bool ok = true;
    char dep[2][KEYTIER_ID_SIZE] = {"", ""};
    static const char *const want[2] = {KT_AUDIT_DEP_CREATED,
                                        KT_AUDIT_DEP_UNDONE};
    ck_assert_ptr_nonnull(f);
    while (getline(&line, &cap, f) > 0) {
        if (n++ < skip)
            continue;
        if (got == 2) {
            ok = false;
            break;
        }
        json_object *o = json_tokener_parse(line), *v = NULL;
        ok = ok && o != NULL && json_object_object_get_ex(o, "Activity", &v) &&
             strcmp(json_object_get_string(v), want[got]) == 0 &&
             json_object_object_get_ex(o, "DataEncryptionPolicyId", &v) &&
             json_object_get_string_len(v) == KEYTIER_ID_SIZE - 1;
        if (ok)
            memcpy(dep[got], json_object_get_string(v), KEYTIER_ID_SIZE);
        if (ok && got == 1)
            ok = json_object_object_get_ex(o, "Reason", &v) &&
                 json_object_get_string_len(v) > 0;
        json_object_put(o);
        got++;
    }
    free(line);
    fclose(f);
    return ok && got == 2 && strcmp(dep[0], dep[1]) == 0 && !id_known(dep[0]);
}

/* The Activity of each audit record after the first `skip`, one a line. */
static void audit_tail(size_t skip, struct text *out, size_t *records)
{
    FILE *f = fopen(audit_path, "r");
    char *line = NULL;
    size_t cap = 0, n = 0;
    ck_assert_ptr_nonnull(f);
    while (getline(&line, &cap, f) > 0) {
        if (n++ < skip)
            continue;
        const char *a = strstr(line, "\"Activity\":\"");
        ck_assert_msg(a != NULL, "audit line %zu without Activity", n);
        a += strlen("\"Activity\":\"");
        const char *end = strchr(a, '"');
        ck_assert_ptr_nonnull(end);
        text_add(out, "%.*s\n", (int)(end - a), a);
    }
    free(line);
    fclose(f);
    if (records)
        *records = n;
}

/* ---- scenarios ---------------------------------------------------------- */

static char dep1[KEYTIER_ID_SIZE], dep2[KEYTIER_ID_SIZE];
static char mig_id[KEYTIER_ID_SIZE], approval_id[KEYTIER_ID_SIZE];
static uint8_t sealed[512];
static size_t sealed_len;
static const char *const secret_msg = "sealed before the fault";

static void make_dep(keytier_ctx *ctx, const char *a, const char *b,
                     char id[KEYTIER_ID_SIZE])
{
    keytier_dep_info info;
    assert_ok(keytier_dep_create(ctx, TENANT, WORKLOAD, testenv_uri("KA", a),
                                 testenv_uri("KB", b), &info));
    memcpy(id, info.dep_id, KEYTIER_ID_SIZE);
}

/* Mailboxes m1..m3 under dep1, m1 with data sealed under it. */
static void make_data(keytier_ctx *ctx)
{
    keytier_key *dk = NULL, *k = NULL;
    assert_ok(keytier_dep_key_open(ctx, &user_req, TENANT, dep1, &dk));
    for (int i = 1; i <= 3; i++) {
        char name[8];
        snprintf(name, sizeof name, "m%d", i);
        assert_ok(keytier_key_create(dk, name, NULL));
    }
    keytier_key_close(dk);
    assert_ok(
        keytier_key_open_name(ctx, &user_req, TENANT, WORKLOAD, "m1", &k));
    assert_ok(keytier_seal(k, "m1", 2, secret_msg, strlen(secret_msg), sealed,
                           sizeof sealed, &sealed_len));
    keytier_key_close(k);
}

static void setup_base(keytier_ctx *ctx)
{
    make_dep(ctx, "a1", "b1", dep1);
    make_data(ctx);
}

static keytier_err run_dep_create(keytier_ctx *ctx)
{
    keytier_dep_info info;
    return keytier_dep_create(ctx, TENANT, WORKLOAD, testenv_uri("KA", "a2"),
                              testenv_uri("KB", "b2"), &info);
}

static keytier_err run_dep_roll(keytier_ctx *ctx)
{
    keytier_dep_info info;
    return keytier_dep_roll(ctx, TENANT, dep1, KEYTIER_ROOT_A,
                            testenv_uri("KA", "a2"), &info);
}

static void setup_migrate(keytier_ctx *ctx)
{
    setup_base(ctx);
    make_dep(ctx, "a2", "b2", dep2);
    keytier_migration m;
    assert_ok(keytier_assign(ctx, TENANT, WORKLOAD, NULL, dep2, &m));
    memcpy(mig_id, m.migration_id, KEYTIER_ID_SIZE);
}

/* One batch, then pause: the migration stays open. */
static int one_batch(void *arg, const keytier_migration *p)
{
    (void)arg;
    (void)p;
    return 1;
}

static keytier_err run_migrate(keytier_ctx *ctx)
{
    keytier_migration m;
    return keytier_migrate_run(ctx, mig_id, one_batch, NULL, &m);
}

/* kt_audit_append itself, on a handle of its own with the anchor hook, as
 * lib/lifecycle and lib/trust append. */
static keytier_err run_audit_append(keytier_ctx *ctx)
{
    kt_audit *a = NULL;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return KEYTIER_E_NOMEM;
    json_object_object_add(o, "OrganizationId", json_object_new_string(TENANT));
    keytier_err e = kt_audit_open(audit_path, &a);
    if (e != KEYTIER_OK) {
        json_object_put(o);
        return e;
    }
    kt_audit_anchor_attach(ctx, a);
    e = kt_audit_append(a, "Fault test record", o, NULL);
    kt_audit_close(a);
    return e;
}

static uint8_t spki[1024];
static size_t spki_len;
static char approver_key[KEYTIER_URI_MAX];

/* alice's key pair in token Approver, pinned, registered; approvals
 * required from then on. */
static void setup_approver(keytier_ctx *ctx)
{
    char fpr[KEYTIER_FINGERPRINT_SIZE], extra[512];
    spki_len = sizeof spki;
    assert_ok(keytier_approver_keygen(ctx, "pkcs11:token=Approver", "1234",
                                      "alice", spki, &spki_len, approver_key));
    assert_ok(keytier_approver_fingerprint(spki, spki_len, fpr));
    snprintf(extra, sizeof extra,
             "approval.required = yes\napproval.approver = alice %s\n", fpr);
    testenv_write_conf_mods(&env, MOD_KEYTIER, extra);
}

static void setup_approval_base(keytier_ctx *ctx)
{
    setup_base(ctx);
    setup_approver(ctx);
}

static keytier_err run_approval_request(keytier_ctx *ctx)
{
    keytier_approval_info info;
    return keytier_approval_request(
        ctx, KEYTIER_APPROVAL_SERVICE_KEY_DESTROY, KEYTIER_APPROVAL_ANY,
        "victim", "retiring a test key", "ops", 3600, 1, &info);
}

static keytier_err run_approval_grant(keytier_ctx *ctx)
{
    keytier_approval_info info;
    return keytier_approval_grant(ctx, approval_id, "alice", approver_key,
                                  "1234", &info);
}

static keytier_err run_approval_use(keytier_ctx *ctx)
{
    size_t n = 0;
    return keytier_root_destroy_approved(ctx, approval_id, env.keytier_module,
                                         "KService", "1234", "victim", &n);
}

/* Setups that need a context on the final configuration: after
 * setup_approver rewrote it. */
static void setup_registered(keytier_ctx *ctx)
{
    assert_ok(keytier_approver_register(ctx, "alice", spki, spki_len, NULL));
}

static void setup_requested(keytier_ctx *ctx)
{
    keytier_approval_info info;
    setup_registered(ctx);
    assert_ok(keytier_approval_request(
        ctx, KEYTIER_APPROVAL_SERVICE_KEY_DESTROY, KEYTIER_APPROVAL_ANY,
        "victim", "retiring a test key", "ops", 3600, 1, &info));
    memcpy(approval_id, info.id, KEYTIER_ID_SIZE);
}

static void setup_granted(keytier_ctx *ctx)
{
    setup_requested(ctx);
    assert_ok(run_approval_grant(ctx));
}

struct scenario_def {
    const char *name;
    void (*setup)(keytier_ctx *ctx);
    void (*setup2)(keytier_ctx *ctx); /* on the rewritten configuration */
    keytier_err (*run)(keytier_ctx *ctx);
    bool consumed_state;
    bool undone_state; /* a DEP creation undone after its record */
};

static const struct scenario_def scenarios[] = {
    {"dep-create", setup_base, NULL, run_dep_create, false, true},
    {"dep-roll", setup_base, NULL, run_dep_roll, false, false},
    {"migrate", setup_migrate, NULL, run_migrate, false, false},
    {"audit-append", setup_base, NULL, run_audit_append, false, false},
    {"approval-request", setup_approval_base, setup_registered,
     run_approval_request, false, false},
    {"approval-grant", setup_approval_base, setup_requested, run_approval_grant,
     false, false},
    {"approval-use", setup_approval_base, setup_granted, run_approval_use, true,
     false},
};

static const struct scenario_def *cur;

/* ---- environment, snapshots ------------------------------------------- */

static void env_build(void)
{
    testenv_setup(&env);
    testenv_keytier_token(&env, "KA");
    testenv_keytier_token(&env, "KB");
    testenv_keytier_token(&env, "KService");
    testenv_keytier_token(&env, "Approver");
    env.service = "KService";
    testenv_root_aes(&env, "KA", "a1", 0);
    testenv_root_aes(&env, "KB", "b1", 0);
    testenv_root_aes(&env, "KA", "a2", 0);
    testenv_root_aes(&env, "KB", "b2", 0);
    testenv_root_aes(&env, "KService", "victim", 0);
    /* keytier's module alone, no cache: every read reaches a token */
    testenv_write_conf_mods(&env, MOD_KEYTIER, "");
    keytier_ctx *ctx = testenv_ctx(&env);
    assert_ok(keytier_audit_log_path(ctx, audit_path, sizeof audit_path));
    cur->setup(ctx);
    keytier_ctx_close(ctx);
    if (cur->setup2 != NULL) {
        ctx = testenv_ctx(&env);
        cur->setup2(ctx);
        keytier_ctx_close(ctx);
    }
    sh("cp -a %s/store %s/old-store && cp -a %s/kt-tokens %s/old-tokens",
       env.dir, env.dir, env.dir, env.dir);
}

static void env_restore(void)
{
    sh("rm -rf %s/store %s/kt-tokens && cp -a %s/old-store %s/store && "
       "cp -a %s/old-tokens %s/kt-tokens",
       env.dir, env.dir, env.dir, env.dir, env.dir, env.dir);
}

/* ---- checking a state --------------------------------------------------- */

struct state {
    struct text store, tokens, audit; /* audit: activities after old end */
    bool keys_ok;                     /* every key opens, the data too */
    bool undone;                      /* audit: a creation undone */
    bool audit_ok;                    /* chain intact, anchor proves it */
    char why[512];
};

static void state_free(struct state *s)
{
    text_free(&s->store);
    text_free(&s->tokens);
    text_free(&s->audit);
}

static size_t old_records;

/* Every registered DEP's key, every tier key, and the sealed data. */
static bool keys_open(keytier_ctx *ctx, char *why, size_t cap)
{
    keytier_dep_info *deps = NULL;
    size_t n = 0;
    keytier_err e = keytier_dep_list(ctx, TENANT, NULL, &deps, &n);
    for (size_t i = 0; e == KEYTIER_OK && i < n; i++) {
        keytier_key *k = NULL;
        e = keytier_dep_key_open(ctx, &user_req, TENANT, deps[i].dep_id, &k);
        if (e == KEYTIER_OK) {
            keytier_key_info *kids = NULL;
            size_t nk = 0;
            e = keytier_key_list(ctx, TENANT, deps[i].dep_id, &kids, &nk);
            for (size_t j = 0; e == KEYTIER_OK && j < nk; j++) {
                keytier_key *c = NULL;
                e = keytier_key_open(k, kids[j].key_id, &c);
                keytier_key_close(c);
            }
            keytier_key_list_free(kids);
        }
        keytier_key_close(k);
        if (e != KEYTIER_OK)
            snprintf(why, cap, "DEP %s: %s (%s)", deps[i].dep_id,
                     keytier_error_name(e), keytier_last_error_detail());
    }
    keytier_dep_list_free(deps);
    if (e != KEYTIER_OK)
        return false;
    keytier_key *k = NULL;
    uint8_t out[512];
    size_t len = 0;
    e = keytier_key_open_name(ctx, &user_req, TENANT, WORKLOAD, "m1", &k);
    if (e == KEYTIER_OK)
        e = keytier_open(k, "m1", 2, sealed, sealed_len, out, sizeof out, &len);
    keytier_key_close(k);
    if (e != KEYTIER_OK || len != strlen(secret_msg) ||
        memcmp(out, secret_msg, len) != 0) {
        snprintf(why, cap, "data sealed before: %s (%s)", keytier_error_name(e),
                 keytier_last_error_detail());
        return false;
    }
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void state_read(struct state *s)
{
    double t[6];
    t[0] = now_s();
    memset(s, 0, sizeof *s);
    struct rows rs = {0};
    bool learn = n_old_ids == 0; /* the first state read is the old one */
    fp_store(&rs);
    rows_out(&rs, &s->store, learn);
    t[1] = now_s();
    fp_tokens(&rs);
    rows_out(&rs, &s->tokens, learn);
    audit_tail(old_records, &s->audit, NULL);
    s->undone = !learn && audit_undone(old_records);
    t[2] = now_s();
    keytier_ctx *ctx = testenv_ctx(&env);
    t[3] = now_s();
    keytier_audit_report rep;
    keytier_err e = keytier_audit_verify_anchored(ctx, NULL, &rep);
    s->audit_ok = e == KEYTIER_OK || e == KEYTIER_E_AUDIT_UNANCHORED;
    if (!s->audit_ok)
        snprintf(s->why, sizeof s->why, "audit log: %s (%s)",
                 keytier_error_name(e), keytier_last_error_detail());
    t[4] = now_s();
    s->keys_ok = keys_open(ctx, s->why, sizeof s->why);
    t[5] = now_s();
    keytier_ctx_close(ctx);
    if (getenv("KT_FAULT_DEBUG") != NULL)
        fprintf(stderr,
                "store %.2f tokens %.2f open %.2f verify %.2f keys %.2f "
                "close %.2f\n",
                t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3], t[5] - t[4],
                now_s() - t[5]);
}

static bool text_eq(const struct text *a, const struct text *b)
{
    return strcmp(a->s ? a->s : "", b->s ? b->s : "") == 0;
}

enum verdict { V_OLD, V_NEW, V_CONSUMED, V_UNDONE, V_MIXED };

static struct state st_old, st_new;
static struct text consumed_audit; /* "Approval used" */

static enum verdict judge(struct state *s)
{
    if (!s->keys_ok || !s->audit_ok)
        return V_MIXED;
    bool tok_old = text_eq(&s->tokens, &st_old.tokens);
    bool tok_new = text_eq(&s->tokens, &st_new.tokens);
    bool st_o = text_eq(&s->store, &st_old.store);
    bool st_n = text_eq(&s->store, &st_new.store);
    if (st_o && tok_old && s->audit.len == 0)
        return V_OLD;
    if (st_n && tok_new && text_eq(&s->audit, &st_new.audit))
        return V_NEW;
    if (cur->consumed_state && st_n && tok_old &&
        text_eq(&s->audit, &consumed_audit))
        return V_CONSUMED;
    if (cur->undone_state && st_o && tok_old && s->undone)
        return V_UNDONE;
    if (getenv("KT_FAULT_DEBUG") != NULL) /* the states side by side */
        fprintf(stderr, "--- found\n%s%s--- new\n%s%s--- old\n%s%s", s->store.s,
                s->tokens.s, st_new.store.s, st_new.tokens.s, st_old.store.s,
                st_old.tokens.s);
    snprintf(s->why, sizeof s->why,
             "store %s, tokens %s, audit records after the old end: [%s]",
             st_o   ? "old"
             : st_n ? "new"
                    : "neither",
             tok_old   ? "old"
             : tok_new ? "new"
                       : "neither",
             s->audit.s ? s->audit.s : "");
    return V_MIXED;
}

/* ---- the run ------------------------------------------------------------ */

struct tally {
    unsigned long points, injected, errors, recovered, consumed, undone,
        not_reached, mixed, leaks;
};

static int leak_check(void)
{
#if KT_HAVE_LSAN
    return __lsan_do_recoverable_leak_check();
#else
    return 0;
#endif
}

/* One armed run from the old state; the state found afterwards. */
static keytier_err run_armed(enum kt_fault_kind kind, unsigned long n,
                             bool *fired, unsigned long counts[])
{
    double t0 = now_s();
    env_restore();
    double t1 = now_s();
    keytier_ctx *ctx = testenv_ctx(&env);
    double t2 = now_s();
    kt_fault_arm(kind, n);
    keytier_err e = cur->run(ctx);
    kt_fault_disarm();
    if (getenv("KT_FAULT_DEBUG") != NULL)
        fprintf(stderr, "restore %.2f open %.2f call %.2f: %s %s\n", t1 - t0,
                t2 - t1, now_s() - t2, keytier_error_name(e),
                e == KEYTIER_OK ? "" : keytier_last_error_detail());
    *fired = kt_fault_fired();
    for (int k = 0; counts != NULL && k < KT_FAULT_KINDS; k++)
        counts[k] = kt_fault_count((enum kt_fault_kind)k);
    keytier_ctx_close(ctx);
    return e;
}

static void point(enum kt_fault_kind kind, unsigned long n, struct tally *t)
{
    bool fired = false;
    double t0 = now_s();
    keytier_err e = run_armed(kind, n, &fired, NULL);
    double t1 = now_s();
    struct state s;
    state_read(&s);
    if (getenv("KT_FAULT_DEBUG") != NULL)
        fprintf(stderr, "%s %s #%lu: run %.2f s, check %.2f s\n", cur->name,
                kt_fault_kind_name(kind), n, t1 - t0, now_s() - t1);
    enum verdict v = judge(&s);
    t->points++;
    if (!fired) {
        /* another thread's count differed this time: no fault came */
        t->not_reached++;
    } else {
        t->injected++;
        if (e != KEYTIER_OK) {
            t->errors++;
            ck_assert_msg(strcmp(keytier_error_name(e), "unknown") != 0,
                          "%s %s #%lu: error %d is no KEYTIER_E_*", cur->name,
                          kt_fault_kind_name(kind), n, (int)e);
        }
    }
    if (e == KEYTIER_OK && v != V_NEW) {
        fprintf(stderr, "%s %s #%lu: succeeded without the new state: %s\n",
                cur->name, kt_fault_kind_name(kind), n, s.why);
        t->mixed++;
    } else if (v == V_MIXED) {
        fprintf(stderr, "%s %s #%lu (%s): mixed state: %s\n", cur->name,
                kt_fault_kind_name(kind), n, keytier_error_name(e), s.why);
        t->mixed++;
    } else if (e == KEYTIER_OK && fired) {
        t->recovered++;
    } else if (v == V_CONSUMED) {
        t->consumed++;
    } else if (v == V_UNDONE) {
        t->undone++;
    }
    state_free(&s);
    if (leak_check() != 0) {
        fprintf(stderr, "%s %s #%lu: leak (report above)\n", cur->name,
                kt_fault_kind_name(kind), n);
        t->leaks++;
    }
}

/* KT_FAULT_MAX_POINTS: N for every kind, or kind:N,... (e.g.
 * "alloc:40,sqlite:100000") with the default 3 for kinds not named. */
static unsigned long max_points(enum kt_fault_kind kind)
{
    const char *v = getenv("KT_FAULT_MAX_POINTS");
    if (v == NULL)
        return 3;
    if (isdigit((unsigned char)*v))
        return atol(v) > 0 ? (unsigned long)atol(v) : 3;
    const char *name = kt_fault_kind_name(kind);
    size_t len = strlen(name);
    for (const char *p = v; p != NULL && *p; p = strchr(p, ',')) {
        p += *p == ',';
        if (strncmp(p, name, len) == 0 && p[len] == ':' &&
            atol(p + len + 1) > 0)
            return (unsigned long)atol(p + len + 1);
    }
    return 3;
}

/* KT_FAULT_POINTS=kind:n,... (e.g. "write:53,alloc:1025"): exactly these
 * points of this kind, to reproduce one; else every stride-th. */
static bool chosen_points(enum kt_fault_kind kind, struct tally *t)
{
    const char *v = getenv("KT_FAULT_POINTS");
    if (v == NULL)
        return false;
    const char *name = kt_fault_kind_name(kind);
    size_t len = strlen(name);
    for (const char *p = v; p != NULL && *p; p = strchr(p, ',')) {
        p += *p == ',';
        if (strncmp(p, name, len) == 0 && p[len] == ':')
            point(kind, strtoul(p + len + 1, NULL, 10), t);
    }
    return true;
}

static void kind_run(enum kt_fault_kind kind, unsigned long total)
{
    struct tally t = {0};
    unsigned long stride = 1, max = max_points(kind);
    if (total > max)
        stride = (total + max - 1) / max;
    if (!chosen_points(kind, &t))
        for (unsigned long n = 1; n <= total; n += stride)
            point(kind, n, &t);
    printf("%-16s %-6s points %5lu stride %3lu injected %4lu errors %4lu "
           "recovered %3lu consumed %3lu undone %3lu not-reached %3lu mixed "
           "%lu leaks %lu\n",
           cur->name, kt_fault_kind_name(kind), total, stride, t.injected,
           t.errors, t.recovered, t.consumed, t.undone, t.not_reached, t.mixed,
           t.leaks);
    fflush(stdout);
    ck_assert_msg(t.mixed == 0, "%s %s: %lu points left a mixed state",
                  cur->name, kt_fault_kind_name(kind), t.mixed);
    ck_assert_msg(t.leaks == 0, "%s %s: %lu points leaked", cur->name,
                  kt_fault_kind_name(kind), t.leaks);
    ck_assert_msg(t.injected > 0 || t.points == 0, "%s %s: no fault injected",
                  cur->name, kt_fault_kind_name(kind));
}

/* The consumed state of approval-use: the approval used, the key kept. */
static void consumed_learn(void)
{
    text_add(&consumed_audit, "Approval used\n");
}

START_TEST(scenario)
{
    env_build();
    struct text all = {0};
    audit_tail(0, &all, &old_records);
    text_free(&all);
    /* the old state, as a fresh context finds it */
    state_read(&st_old);
    ck_assert_msg(st_old.keys_ok && st_old.audit_ok, "old state: %s",
                  st_old.why);
    /* the new state, and the points of each kind */
    unsigned long counts[KT_FAULT_KINDS];
    bool fired = false;
    keytier_err e = run_armed(KT_FAULT_ALLOC, 0, &fired, counts);
    ck_assert_msg(e == KEYTIER_OK, "%s unarmed: %s (%s)", cur->name,
                  keytier_error_name(e), keytier_last_error_detail());
    state_read(&st_new);
    ck_assert_msg(st_new.keys_ok && st_new.audit_ok, "new state: %s",
                  st_new.why);
    ck_assert_msg(!text_eq(&st_new.store, &st_old.store) ||
                      !text_eq(&st_new.tokens, &st_old.tokens) ||
                      st_new.audit.len > 0,
                  "%s changes nothing", cur->name);
    consumed_learn();
    ck_assert_int_eq(leak_check(), 0);
    for (int k = 0; k < KT_FAULT_KINDS; k++)
        kind_run((enum kt_fault_kind)k, counts[k]);
    state_free(&st_old);
    state_free(&st_new);
    text_free(&consumed_audit);
    testenv_teardown(&env);
}
END_TEST

int main(int argc, char **argv)
{
    for (size_t i = 0; argc == 2 && i < sizeof scenarios / sizeof *scenarios;
         i++)
        if (strcmp(argv[1], scenarios[i].name) == 0)
            cur = &scenarios[i];
    if (cur == NULL) {
        fprintf(stderr, "usage: %s SCENARIO\n", argv[0]);
        for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
            fprintf(stderr, "  %s\n", scenarios[i].name);
        return 2;
    }
    Suite *s = suite_create("fault-lib");
    TCase *tc = tcase_create(cur->name);
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, scenario);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
