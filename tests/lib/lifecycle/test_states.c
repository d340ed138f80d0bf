/* DEP states that tell the truth (docs/DESIGN.md §2 "Lifecycle"): a
 * registration or roll a killed process left half done is settled by the
 * next read of the DEP key, the health of each root key as probed now, and
 * reads and status of a purged tenant's data say it was purged.  The
 * half-done states are the store rows such a process leaves, written here
 * through a second connection to the store file. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "lctest.h"

static struct testenv T;

static void setup(void)
{
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "A1", 0);
    testenv_root_aes(&T, "VaultB", "B1", 0);
    testenv_write_conf(&T, NULL);
}

static void teardown(void)
{
    testenv_teardown(&T);
}

static const char *const MSG = "written before the process was killed";

/* A DEP (A1, B1) of org-1 with mailbox alice and one item sealed in env. */
static size_t dep_with_data(keytier_ctx *ctx, keytier_dep_info *d, uint8_t *env,
                            size_t cap)
{
    keytier_key *dk = NULL;
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), d));
    ck_assert_int_eq(d->state, KEYTIER_DEP_REGISTERED);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d->dep_id, &dk));
    assert_ok(keytier_key_create(dk, "alice", NULL));
    keytier_key_close(dk);
    return lc_seal(ctx, "org-1", "Exchange", "alice", MSG, env, cap);
}

static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
    char q[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    testenv_sql(&T, q);
}

/* A pending copy of slot A under A2 that is 40 random bytes (no copy of
 * the DEP's key), its roll started at `started`. */
static void pending_random(const char *dep_id, long long started)
{
    uint8_t junk[40];
    char q[512];
    FILE *f = fopen("/dev/urandom", "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
    snprintf(q, sizeof q,
             "INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, started) "
             "VALUES (?1, 0, '%s', 'aes-key-wrap-pad', ?2, %lld)",
             testenv_uri("VaultA", "A2"), started);
    testenv_sql_bind(&T, q, dep_id, junk, sizeof junk);
}

static keytier_dep_state state_of(keytier_ctx *ctx, const char *dep_id,
                                  keytier_dep_info *out)
{
    assert_ok(keytier_dep_show(ctx, "org-1", dep_id, out));
    return out->state;
}

static void detail_has(const char *needle)
{
    ck_assert_msg(strstr(keytier_last_error_detail(), needle) != NULL,
                  "detail '%s' lacks '%s'", keytier_last_error_detail(),
                  needle);
}

/* ---- registering ------------------------------------------------------ */

/* A creation killed after storing its copies and before proving them: the
 * DEP stays registering and serves no key while its creation may still
 * run; once that is past, the next read proves the three copies and the
 * DEP is registered, audited. */
START_TEST(registering_refused_then_finished)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    keytier_key *dk = NULL, *k = NULL;
    uint8_t env[1024];
    size_t n = dep_with_data(ctx, &d, env, sizeof env);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", d.dep_id, &dk));
    sql("UPDATE deps SET state = 0, created = %lld WHERE dep_id = '%s'",
        (long long)time(NULL), d.dep_id);
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERING);
    /* no key is made under it, not even through a handle opened before */
    assert_err(keytier_key_create(dk, "bob", NULL), KEYTIER_E_DEP_STATE);
    keytier_key_close(dk);
    assert_err(keytier_dep_key_open(ctx, &lc_user, "org-1", d.dep_id, &k),
               KEYTIER_E_DEP_STATE);
    detail_has("registering");
    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG),
        KEYTIER_E_DEP_STATE);
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERING);
    ck_assert_int_eq(lc_audit_count(ctx, "\"DEP registration finished\""), 0);

    /* the creating process is long gone */
    sql("UPDATE deps SET created = 1 WHERE dep_id = '%s'", d.dep_id);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERED);
    ck_assert_int_eq(lc_audit_count(ctx, "\"DEP registration finished\""), 1);
    keytier_ctx_close(ctx);
}
END_TEST

/* The same, but a copy no longer proves (its availability key is gone):
 * the DEP stays registering and serves nothing, naming the copy. */
START_TEST(registering_unprovable_stays_refused)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    keytier_key *k = NULL;
    uint8_t env[1024];
    char label[64];
    size_t n = dep_with_data(ctx, &d, env, sizeof env);
    keytier_ctx_close(ctx);
    snprintf(label, sizeof label, "keytier-avail-%s", d.dep_id);
    testenv_destroy(&T, "Service", label);
    sql("UPDATE deps SET state = 0, created = 1 WHERE dep_id = '%s'", d.dep_id);
    ctx = testenv_ctx(&T);
    assert_err(keytier_dep_key_open(ctx, &lc_user, "org-1", d.dep_id, &k),
               KEYTIER_E_DEP_STATE);
    detail_has("availability key");
    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG),
        KEYTIER_E_DEP_STATE);
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERING);
    keytier_ctx_close(ctx);
}
END_TEST

/* ---- a creation undone after its record ----------------------------- */

/* The DEP id of the audit log's record `from_end` lines before its last
 * (0: the last) and its Activity; "" when there is no such line. */
static void audit_nth_last(keytier_ctx *ctx, int from_end,
                           char dep[KEYTIER_ID_SIZE], char *activity,
                           size_t cap, char *reason, size_t rcap)
{
    char path[4096], line[8192], lines[3][8192];
    int n = 0;
    assert_ok(keytier_audit_log_path(ctx, path, sizeof path));
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        snprintf(lines[n++ % 3], sizeof lines[0], "%s", line);
    fclose(f);
    ck_assert_int_gt(n, from_end);
    const char *l = lines[(n - 1 - from_end) % 3];
    const char *fields[3] = {"\"DataEncryptionPolicyId\":\"", "\"Activity\":\"",
                             "\"Reason\":\""};
    char *outs[3] = {dep, activity, reason};
    size_t caps[3] = {KEYTIER_ID_SIZE, cap, rcap};
    for (int i = 0; i < 3; i++) {
        const char *v = strstr(l, fields[i]);
        size_t len = 0;
        if (v != NULL) {
            v += strlen(fields[i]);
            len = strcspn(v, "\"");
        }
        snprintf(outs[i], caps[i], "%.*s", (int)len, v ? v : "");
    }
}

/* The last two records: "DEP created" and right after it "DEP creation
 * undone" of the same DEP, whose id goes to dep, with a reason naming
 * `why`. */
static void assert_undone_records(keytier_ctx *ctx, char dep[KEYTIER_ID_SIZE],
                                  const char *why)
{
    char other[KEYTIER_ID_SIZE], act[64], reason[1024];
    audit_nth_last(ctx, 1, dep, act, sizeof act, reason, sizeof reason);
    ck_assert_str_eq(act, "DEP created");
    ck_assert_uint_eq(strlen(dep), KEYTIER_ID_SIZE - 1);
    audit_nth_last(ctx, 0, other, act, sizeof act, reason, sizeof reason);
    ck_assert_str_eq(act, "DEP creation undone");
    ck_assert_str_eq(other, dep);
    ck_assert_msg(strstr(reason, why) != NULL, "reason '%s' lacks '%s'", reason,
                  why);
}

/* The store refuses to mark a new DEP registered (both tries) after its
 * "DEP created" record is durable: the creation is undone, and the log
 * says so right after that record, naming the DEP and why; no DEP row and
 * no availability key are left.  Without the undo record the log would
 * name a DEP that does not exist; without the undo, the store and the
 * service token would keep a DEP the caller was told failed. */
START_TEST(creation_undone_after_its_record)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d;
    keytier_audit_report rep;
    char dep[KEYTIER_ID_SIZE], label[64];
    testenv_sql_refuse(&T, "no_register", "BEFORE UPDATE OF state", "deps",
                       "NEW.state = 1", "registration refused");
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("VaultA", "A1"),
                                  testenv_uri("VaultB", "B1"), &d),
               KEYTIER_E_STORE);
    detail_has("registration refused");
    detail_has("undone");
    assert_undone_records(ctx, dep, "registration refused");
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM deps", NULL), 0);
    ck_assert_int_eq(
        testenv_sql_int(&T, "SELECT count(*) FROM dep_roots", NULL), 0);
    snprintf(label, sizeof label, "keytier-avail-%s", dep);
    ck_assert_int_eq(testenv_count(&T, "Service", label), 0);
    assert_ok(keytier_audit_verify_anchored(ctx, NULL, &rep));
    /* the store takes registrations again: the next creation is whole */
    testenv_sql_allow(&T, "no_register", "deps");
    assert_ok(keytier_dep_create(ctx, "org-1", "Exchange",
                                 testenv_uri("VaultA", "A1"),
                                 testenv_uri("VaultB", "B1"), &d));
    ck_assert_int_eq(d.state, KEYTIER_DEP_REGISTERED);
    keytier_ctx_close(ctx);
}
END_TEST

/* The same, and the store refuses the drop too: the DEP stays registering
 * with its availability key (the log already says undone, then the next
 * read of its key, once the creation is dead, finishes the registration
 * and records that last), never registered without a record and never
 * without the key its copy is under. */
START_TEST(creation_undo_refused_left_registering)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    keytier_key *dk = NULL;
    char dep[KEYTIER_ID_SIZE], label[64];
    testenv_sql_refuse(&T, "no_register", "BEFORE UPDATE OF state", "deps",
                       "NEW.state = 1", "registration refused");
    testenv_sql_refuse(&T, "no_drop", "BEFORE DELETE", "deps", NULL,
                       "drop refused");
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("VaultA", "A1"),
                                  testenv_uri("VaultB", "B1"), &d),
               KEYTIER_E_STORE);
    detail_has("left registering");
    assert_undone_records(ctx, dep, "registration refused");
    ck_assert_int_eq(state_of(ctx, dep, &now), KEYTIER_DEP_REGISTERING);
    snprintf(label, sizeof label, "keytier-avail-%s", dep);
    ck_assert_int_eq(testenv_count(&T, "Service", label), 1);
    testenv_sql_allow(&T, "no_register", "deps");
    testenv_sql_allow(&T, "no_drop", "deps");
    sql("UPDATE deps SET "
        "created = 1 WHERE dep_id = '%s'",
        dep);
    assert_ok(keytier_dep_key_open(ctx, &lc_user, "org-1", dep, &dk));
    keytier_key_close(dk);
    ck_assert_int_eq(state_of(ctx, dep, &now), KEYTIER_DEP_REGISTERED);
    ck_assert_int_eq(lc_audit_count(ctx, "\"DEP registration finished\""), 1);
    keytier_ctx_close(ctx);
}
END_TEST

/* ---- rolling ---------------------------------------------------------- */

/* A roll of A to A2 killed after storing its pending copy and before
 * reading it back: the rows are made from a real roll (the new copy under
 * A2 moved back into dep_roll, the old one restored).  The next read, in a
 * fresh process, proves the pending copy and commits it: the DEP is
 * registered under A2, which alone opens the data afterwards. */
START_TEST(roll_dead_resumed_by_next_read)
{
    testenv_root_aes(&T, "VaultA", "A2", 0);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    uint8_t env[1024];
    size_t n = dep_with_data(ctx, &d, env, sizeof env);
    /* slot A's row before the roll, kept in a table of the store's own */
    sql("CREATE TABLE old_root AS SELECT uri, mech, wrapped, ident FROM "
        "dep_roots WHERE dep_id = '%s' AND slot = 0",
        d.dep_id);
    assert_ok(keytier_dep_roll(ctx, "org-1", d.dep_id, KEYTIER_ROOT_A,
                               testenv_uri("VaultA", "A2"), NULL));
    keytier_ctx_close(ctx);
    sql("INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, ident, "
        "started) SELECT dep_id, 0, uri, mech, wrapped, ident, 1 FROM "
        "dep_roots WHERE dep_id = '%s' AND slot = 0;"
        "UPDATE dep_roots SET uri = (SELECT uri FROM old_root), mech = "
        "(SELECT mech FROM old_root), wrapped = (SELECT wrapped FROM "
        "old_root), ident = (SELECT ident FROM old_root) WHERE dep_id = '%s' "
        "AND slot = 0;"
        "UPDATE deps SET state = 2 WHERE dep_id = '%s'; DROP TABLE old_root",
        d.dep_id, d.dep_id, d.dep_id);

    ctx = testenv_ctx(&T);
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_ROLLING);
    ck_assert_str_eq(now.root_uri[0], testenv_uri("VaultA", "A1"));
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERED);
    ck_assert_str_eq(now.root_uri[0], testenv_uri("VaultA", "A2"));
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     0);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Customer key roll resumed\""), 1);
    keytier_ctx_close(ctx);

    /* A1 and B1 gone: the data opens through the committed copy alone */
    testenv_destroy(&T, "VaultA", "A1");
    testenv_destroy(&T, "VaultB", "B1");
    ctx = testenv_ctx(&T);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    keytier_avail_stats s;
    assert_ok(keytier_avail_stats_get(ctx, &s));
    ck_assert_uint_eq(s.fallbacks, 0);
    keytier_ctx_close(ctx);
}
END_TEST

/* A pending copy that does not prove (not a copy of this DEP's key): the
 * dead roll is rolled back, the old copy kept, audited with the reason. */
START_TEST(roll_dead_unprovable_rolled_back)
{
    testenv_root_aes(&T, "VaultA", "A2", 0);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    uint8_t env[1024];
    size_t n = dep_with_data(ctx, &d, env, sizeof env);
    keytier_ctx_close(ctx);
    pending_random(d.dep_id, 1);
    sql("UPDATE deps SET state = 2 WHERE dep_id = '%s'", d.dep_id);
    ctx = testenv_ctx(&T);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERED);
    ck_assert_str_eq(now.root_uri[0], testenv_uri("VaultA", "A1"));
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     0);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Customer key roll rolled back\""),
                     1);
    ck_assert_int_eq(lc_audit_count(ctx, "\"Reason\""), 1);
    keytier_ctx_close(ctx);
}
END_TEST

/* A roll that started a moment ago may still be running in another
 * process: reads go on through the current copies and leave it alone. */
START_TEST(roll_live_left_alone)
{
    testenv_root_aes(&T, "VaultA", "A2", 0);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    uint8_t env[1024];
    size_t n = dep_with_data(ctx, &d, env, sizeof env);
    keytier_ctx_close(ctx);
    pending_random(d.dep_id, (long long)time(NULL));
    sql("UPDATE deps SET state = 2 WHERE dep_id = '%s'", d.dep_id);
    ctx = testenv_ctx(&T);
    assert_ok(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG));
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_ROLLING);
    ck_assert_int_eq(testenv_sql_int(&T, "SELECT count(*) FROM dep_roll", NULL),
                     1);
    ck_assert_int_eq(lc_audit_count(ctx, "Customer key roll"), 0);
    keytier_ctx_close(ctx);
}
END_TEST

/* ---- health ----------------------------------------------------------- */

static void health_is(keytier_ctx *ctx, const char *dep_id,
                      keytier_key_health a, keytier_key_health b,
                      keytier_key_health avail)
{
    keytier_health h;
    assert_ok(keytier_dep_health(ctx, "org-1", dep_id, &h));
    const keytier_key_health want[3] = {a, b, avail};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(h.key[i] == want[i], "root %d: %s, want %s (%s)", i,
                      keytier_key_health_name(h.key[i], i),
                      keytier_key_health_name(want[i], i), h.detail[i]);
}

/* Each root as it is: all reachable; then A destroyed, B refused
 * (CKA_UNWRAP turned off by the customer) and the availability key
 * destroyed, while the DEP's state still says registered. */
START_TEST(health_destroyed_refused_missing)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, now;
    uint8_t env[1024];
    char label[64];
    keytier_health h;
    (void)dep_with_data(ctx, &d, env, sizeof env);
    health_is(ctx, d.dep_id, KEYTIER_KEY_REACHABLE, KEYTIER_KEY_REACHABLE,
              KEYTIER_KEY_REACHABLE);
    ck_assert_str_eq(keytier_key_health_name(KEYTIER_KEY_REACHABLE, 0),
                     "reachable");
    ck_assert_str_eq(keytier_key_health_name(KEYTIER_KEY_REACHABLE, 2),
                     "present");
    keytier_ctx_close(ctx);
    testenv_destroy(&T, "VaultA", "A1");
    lc_unwrap_off(T.softhsm_module, "VaultB", "B1");
    snprintf(label, sizeof label, "keytier-avail-%s", d.dep_id);
    testenv_destroy(&T, "Service", label);
    ctx = testenv_ctx(&T);
    health_is(ctx, d.dep_id, KEYTIER_KEY_DESTROYED, KEYTIER_KEY_REFUSED,
              KEYTIER_KEY_DESTROYED);
    assert_ok(keytier_dep_health(ctx, NULL, d.dep_id, &h));
    ck_assert_int_eq(h.err[0], KEYTIER_E_KEY_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(h.detail[0], "customer key A"));
    ck_assert_ptr_nonnull(strstr(h.detail[1], "customer key B"));
    ck_assert_str_eq(keytier_key_health_name(h.key[2], 2), "missing");
    ck_assert_int_eq(state_of(ctx, d.dep_id, &now), KEYTIER_DEP_REGISTERED);
    /* a probe is no read: nothing audited, no fallback */
    ck_assert_int_eq(lc_audit_count(ctx, "Fallback"), 0);
    assert_err(keytier_dep_health(ctx, "org-2", d.dep_id, &h),
               KEYTIER_E_WRONG_TENANT);
    assert_err(keytier_dep_health(ctx, NULL, "nope", &h),
               KEYTIER_E_DEP_NOT_FOUND);
    assert_err(keytier_dep_health(NULL, NULL, d.dep_id, &h), KEYTIER_E_ARGS);
    keytier_ctx_close(ctx);
}
END_TEST

/* ---- purged ----------------------------------------------------------- */

/* After a purge every read of the tenant's data and its status say it was
 * purged, never "not found" or "not encrypted"; a tenant that was not
 * purged still gets "not found" for a name it never had. */
START_TEST(purged_reads_and_status_say_purged)
{
    testenv_root_aes(&T, "VaultA", "A9", 0);
    testenv_root_aes(&T, "VaultB", "B9", 0);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_dep_info d, d2;
    keytier_key *k = NULL;
    keytier_key_info ki;
    keytier_status st;
    keytier_health h;
    uint8_t env[1024];
    size_t n = dep_with_data(ctx, &d, env, sizeof env);
    assert_ok(
        keytier_key_open_name(ctx, &lc_user, "org-1", "Exchange", "alice", &k));
    keytier_key_get_info(k, &ki);
    keytier_key_close(k);
    assert_ok(keytier_dep_create(ctx, "org-2", "Exchange",
                                 testenv_uri("VaultA", "A9"),
                                 testenv_uri("VaultB", "B9"), &d2));
    keytier_purge_report rep;
    assert_ok(keytier_tenant_purge(ctx, "org-1", 0, &rep));

    assert_err(
        lc_open(ctx, &lc_user, "org-1", "Exchange", "alice", env, n, MSG),
        KEYTIER_E_PURGED);
    detail_has("crypto-shredded");
    assert_err(keytier_key_open_path(ctx, &lc_user, "org-1", ki.key_id, &k),
               KEYTIER_E_PURGED);
    assert_err(keytier_dep_key_open(ctx, &lc_user, "org-1", d.dep_id, &k),
               KEYTIER_E_PURGED);
    assert_err(keytier_dep_health(ctx, "org-1", d.dep_id, &h),
               KEYTIER_E_PURGED);
    detail_has("crypto-shredded");
    assert_ok(keytier_status_get(ctx, "org-1", "Exchange", "alice", &st));
    ck_assert_int_eq(st.purged, 1);
    ck_assert_int_eq(st.encrypted, 0);
    ck_assert_int_eq(st.dep_state, KEYTIER_DEP_PURGED);

    /* the other tenant: a name it never had is not found, not purged */
    assert_err(
        keytier_key_open_name(ctx, &lc_user, "org-2", "Exchange", "zed", &k),
        KEYTIER_E_NOT_FOUND);
    assert_ok(keytier_status_get(ctx, "org-2", "Exchange", "zed", &st));
    ck_assert_int_eq(st.purged, 0);
    ck_assert_int_eq(st.encrypted, 0);
    keytier_ctx_close(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("states");
    TCase *tc = tcase_create("states");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, registering_refused_then_finished);
    tcase_add_test(tc, registering_unprovable_stays_refused);
    tcase_add_test(tc, creation_undone_after_its_record);
    tcase_add_test(tc, creation_undo_refused_left_registering);
    tcase_add_test(tc, roll_dead_resumed_by_next_read);
    tcase_add_test(tc, roll_dead_unprovable_rolled_back);
    tcase_add_test(tc, roll_live_left_alone);
    tcase_add_test(tc, health_destroyed_refused_missing);
    tcase_add_test(tc, purged_reads_and_status_say_purged);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
