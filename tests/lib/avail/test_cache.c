/*
 * The key cache.  Time is an injected clock driven by the test, and the
 * maintenance pass is run by hand, so expiry, refresh-ahead and the alert
 * are checked at exact instants; one test runs the real background thread
 * and checks only the order of events (the alert comes while the entry is
 * still served).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

static uint64_t fake_now;
static CK_RV refresh_rv;
static int refresh_calls;
static uint64_t refresh_takes; /* the fake clock moves on during a refresh */
static kt_cache *the_cache;    /* for callbacks that act on the cache */
static int invalidate_in_refresh;
static int replace_in_refresh;
static char last_refresh_dep[64];

static const unsigned char K1[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char K2[32] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

static const kt_cache_tags tags1 = {
    .org_id = "org-1",
    .dep_id = "dep-1",
    .roots = {"pkcs11:token=A;object=root", "pkcs11:token=B;object=root",
              "pkcs11:token=svc;object=avail-1"},
};

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static CK_RV test_refresh(void *arg, const char *id, const char *dep_id,
                          unsigned char *out, size_t *len)
{
    (void)arg;
    (void)id;
    refresh_calls++;
    fake_now += refresh_takes;
    snprintf(last_refresh_dep, sizeof last_refresh_dep, "%s",
             dep_id ? dep_id : "");
    if (invalidate_in_refresh || replace_in_refresh)
        kt_cache_invalidate_root(the_cache, "pkcs11:token=A;object=root");
    if (replace_in_refresh)
        ck_assert_int_eq(
            kt_cache_put(the_cache, "dep:dep-1", &tags1, K1, sizeof K1),
            KEYTIER_OK);
    if (refresh_rv != CKR_OK)
        return refresh_rv;
    memcpy(out, K2, sizeof K2);
    *len = sizeof K2;
    return CKR_OK;
}

static int alerts_seen;
static kt_cache_alert last_alert;
static char last_alert_id[64], last_alert_dep[64];
static int alert_saw_hit;
static sem_t alert_sem;

static void test_alert(void *arg, const kt_cache_alert *a)
{
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len;

    (void)arg;
    alerts_seen++;
    last_alert = *a;
    snprintf(last_alert_id, sizeof last_alert_id, "%s", a->id);
    snprintf(last_alert_dep, sizeof last_alert_dep, "%s",
             a->dep_id ? a->dep_id : "");
    /* the entry must still be served when the alert fires */
    alert_saw_hit = kt_cache_get(the_cache, a->id, buf, sizeof buf, &len);
    sem_post(&alert_sem);
}

static kt_cache_config base_config(void)
{
    return (kt_cache_config){
        .ttl_ms = 1000,
        .refresh_ahead_ms = 300,
        .retry_ms = 50,
        .alert_after_ms = 100,
        .max_entries = 16,
        .refresh = test_refresh,
        .alert = test_alert,
        .clock = fake_clock,
    };
}

static kt_cache *mkcache(const kt_cache_config *cfg)
{
    kt_cache *c;

    ck_assert_int_eq(kt_cache_new(cfg, &c), KEYTIER_OK);
    the_cache = c;
    return c;
}

static void setup(void)
{
    fake_now = 0;
    refresh_rv = CKR_OK;
    refresh_calls = 0;
    refresh_takes = 0;
    alerts_seen = 0;
    alert_saw_hit = 0;
    invalidate_in_refresh = 0;
    replace_in_refresh = 0;
    sem_init(&alert_sem, 0, 0);
}

static bool get_is(kt_cache *c, const char *id, const unsigned char *want)
{
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len = 0;

    if (!kt_cache_get(c, id, buf, sizeof buf, &len))
        return false;
    ck_assert_uint_eq(len, 32);
    ck_assert(memcmp(buf, want, 32) == 0);
    return true;
}

START_TEST(test_config_errors)
{
    kt_cache_config cfg;
    kt_cache *c;

    cfg = base_config();
    cfg.ttl_ms = 0;
    ck_assert_int_eq(kt_cache_new(&cfg, &c), KEYTIER_E_CONFIG);
    cfg = base_config();
    cfg.refresh_ahead_ms = 2000;
    ck_assert_int_eq(kt_cache_new(&cfg, &c), KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "refresh_ahead"));
    cfg = base_config();
    cfg.alert_after_ms = 300;
    ck_assert_int_eq(kt_cache_new(&cfg, &c), KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), "alert window"));
    cfg = base_config();
    cfg.refresh = NULL;
    ck_assert_int_eq(kt_cache_new(&cfg, &c), KEYTIER_E_CONFIG);
    cfg = base_config();
    cfg.retry_ms = 0;
    ck_assert_int_eq(kt_cache_new(&cfg, &c), KEYTIER_E_CONFIG);
    cfg = base_config();
    cfg.max_entries = 0;
    ck_assert_int_eq(kt_cache_new(&cfg, &c), KEYTIER_E_CONFIG);
}
END_TEST

START_TEST(test_ttl_hit_miss)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);
    kt_cache_stats st;
    unsigned char small[8];
    size_t len;

    ck_assert(!get_is(c, "dep:dep-1", K1));
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 999;
    ck_assert(get_is(c, "dep:dep-1", K1));
    /* an output buffer too small gets nothing */
    ck_assert(!kt_cache_get(c, "dep:dep-1", small, sizeof small, &len));
    fake_now = 1000;
    ck_assert(!get_is(c, "dep:dep-1", K1));
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_uint_eq(st.misses, 3);
    ck_assert_uint_eq(st.evictions, 1);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.locked_pages + st.unlocked_pages, 1);
    ck_assert_int_eq(kt_cache_put(c, "x", &tags1, K1, KT_CACHE_KEY_MAX + 1),
                     KEYTIER_E_ARGS);
    kt_cache_count_fallback(c);
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.fallbacks, 1);
    kt_cache_free(c);
}
END_TEST

START_TEST(test_refresh_ahead_extends)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);
    kt_cache_stats st;

    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 699;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 0);
    fake_now = 700; /* refresh_ahead before expiry */
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 1);
    ck_assert_str_eq(last_refresh_dep, "dep-1");
    fake_now = 1500; /* past the first expiry, within the new TTL */
    ck_assert(get_is(c, "dep:dep-1", K2));
    fake_now = 1700;
    ck_assert(!get_is(c, "dep:dep-1", K2));
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.refreshes, 1);
    ck_assert_uint_eq(st.refresh_failures, 0);
    ck_assert_int_eq(alerts_seen, 0);
    kt_cache_free(c);
}
END_TEST

START_TEST(test_refresh_failing_alerts_before_expiry)
{
    char dir[] = "/tmp/kt-cache-XXXXXX", path[64], cmd[96];
    kt_cache_config cfg = base_config();
    kt_cache *c;
    kt_audit *audit;
    kt_cache_stats st;
    uint64_t bad, records;
    FILE *f;
    char line[4096];

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/audit.log", dir);
    ck_assert_int_eq(kt_audit_open(path, &audit), KEYTIER_OK);
    cfg.audit = audit;
    c = mkcache(&cfg);
    refresh_rv = KT_CKR_TIMEOUT; /* both customer vaults hung */
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 700;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 1);
    fake_now = 720; /* before the retry interval: no call */
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 1);
    fake_now = 750;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 2);
    ck_assert_int_eq(alerts_seen, 0); /* failing for 50 ms < 100 ms */
    fake_now = 800;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 3);
    ck_assert_int_eq(alerts_seen, 1);
    ck_assert_str_eq(last_alert_id, "dep:dep-1");
    ck_assert_str_eq(last_alert_dep, "dep-1");
    ck_assert_uint_eq(last_alert.failing_ms, 100);
    ck_assert_uint_eq(last_alert.expires_in_ms, 200);
    ck_assert_uint_eq(last_alert.last_error, KT_CKR_TIMEOUT);
    ck_assert_int_eq(alert_saw_hit, 1);
    fake_now = 850; /* once per failing streak */
    kt_cache_maintain(c);
    ck_assert_int_eq(alerts_seen, 1);
    fake_now = 999; /* still served with the old key */
    ck_assert(get_is(c, "dep:dep-1", K1));
    fake_now = 1000;
    kt_cache_maintain(c);
    ck_assert(!get_is(c, "dep:dep-1", K1));
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.alerts, 1);
    ck_assert_uint_eq(st.refresh_failures, 4);
    ck_assert_uint_eq(st.refreshes, 0);
    kt_cache_free(c);
    kt_audit_close(audit);

    /* the alert is in the audit log, chained */
    ck_assert_int_eq(kt_audit_verify(path, &bad, &records), KEYTIER_OK);
    ck_assert_uint_eq(records, 1);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    ck_assert_ptr_nonnull(
        strstr(line, "\"Activity\":\"Cache refresh failing\""));
    ck_assert_ptr_nonnull(strstr(line, "\"DataEncryptionPolicyId\":\"dep-1\""));
    ck_assert_ptr_nonnull(strstr(line, "\"OrganizationId\":\"org-1\""));
    ck_assert_ptr_nonnull(strstr(line, "\"ExpiresInMs\":200"));
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_refresh_recovers)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);

    refresh_rv = CKR_DEVICE_ERROR;
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 700;
    kt_cache_maintain(c);
    refresh_rv = CKR_OK; /* the vault is back */
    fake_now = 750;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 2);
    fake_now = 1700;
    ck_assert(get_is(c, "dep:dep-1", K2));
    fake_now = 1750;
    ck_assert(!get_is(c, "dep:dep-1", K2));
    ck_assert_int_eq(alerts_seen, 0);
    kt_cache_free(c);
}
END_TEST

START_TEST(test_refresh_denied_evicts)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);

    refresh_rv = CKR_KEY_HANDLE_INVALID; /* the root was destroyed */
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 700;
    kt_cache_maintain(c);
    ck_assert(!get_is(c, "dep:dep-1", K1));
    ck_assert_int_eq(alerts_seen, 0);
    kt_cache_free(c);
}
END_TEST

START_TEST(test_refresh_after_invalidation_dropped)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);

    invalidate_in_refresh = 1; /* revoked while the refresh was in flight */
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 700;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 1);
    ck_assert(!get_is(c, "dep:dep-1", K2));
    kt_cache_free(c);
}
END_TEST

/* Revoked while the refresh was in flight, and filled again by a read
 * through the customer keys after the revocation: the refresh's result,
 * read before the revocation, must not replace the new entry. */
START_TEST(test_refresh_after_invalidation_keeps_new_entry)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);

    replace_in_refresh = 1;
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 700;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 1);
    ck_assert(get_is(c, "dep:dep-1", K1));
    kt_cache_free(c);
}
END_TEST

START_TEST(test_invalidation)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);
    kt_cache_tags t2 = {
        "org-1",
        "dep-2",
        {"pkcs11:token=C", "pkcs11:token=D", "pkcs11:token=svc;object=a2"}};
    kt_cache_tags t3 = {
        "org-2",
        "dep-3",
        {"pkcs11:token=E", "pkcs11:token=F", "pkcs11:token=svc;object=a3"}};

    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1/mbx-1", &tags1, K2, 32),
                     KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-2", &t2, K1, 32), KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-3", &t3, K1, 32), KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-3/site", &t3, K2, 32),
                     KEYTIER_OK);
    /* revoking customer key B of dep-1 drops dep-1 and its intermediates */
    ck_assert_uint_eq(kt_cache_invalidate_root(c, "pkcs11:token=B;object=root"),
                      2);
    ck_assert(!get_is(c, "dep:dep-1", K1));
    ck_assert(!get_is(c, "dep:dep-1/mbx-1", K2));
    ck_assert(get_is(c, "dep:dep-2", K1));
    ck_assert_uint_eq(kt_cache_invalidate_dep(c, "dep-2"), 1);
    ck_assert(!get_is(c, "dep:dep-2", K1));
    ck_assert(get_is(c, "dep:dep-3", K1));
    ck_assert_uint_eq(kt_cache_invalidate_id(c, "dep:dep-3/site"), 1);
    ck_assert(get_is(c, "dep:dep-3", K1));
    ck_assert_uint_eq(kt_cache_invalidate_tenant(c, "org-2"), 1);
    ck_assert(!get_is(c, "dep:dep-3", K1));
    ck_assert_uint_eq(kt_cache_invalidate_tenant(c, "org-2"), 0);
    kt_cache_free(c);
}
END_TEST

START_TEST(test_max_entries_evicts_oldest)
{
    kt_cache_config cfg = base_config();
    kt_cache *c;
    kt_cache_stats st;

    cfg.max_entries = 2;
    c = mkcache(&cfg);
    ck_assert_int_eq(kt_cache_put(c, "a", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 10;
    ck_assert_int_eq(kt_cache_put(c, "b", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 20;
    ck_assert_int_eq(kt_cache_put(c, "c", &tags1, K1, 32), KEYTIER_OK);
    ck_assert(!get_is(c, "a", K1));
    ck_assert(get_is(c, "b", K1));
    ck_assert(get_is(c, "c", K1));
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(st.evictions, 1);
    /* replacing an entry does not evict another */
    ck_assert_int_eq(kt_cache_put(c, "c", &tags1, K2, 32), KEYTIER_OK);
    ck_assert(get_is(c, "b", K1));
    ck_assert(get_is(c, "c", K2));
    kt_cache_free(c);
}
END_TEST

/* Without permission to lock memory the cache still works (unlocked). */
START_TEST(test_works_without_mlock)
{
    struct rlimit zero = {0, 0};
    kt_cache_config cfg = base_config();
    kt_cache *c;
    kt_cache_stats st;

    if (geteuid() == 0) /* root may lock regardless of the limit */
        ck_assert_int_eq(setuid(65534), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &zero), 0);
    c = mkcache(&cfg);
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    ck_assert(get_is(c, "dep:dep-1", K1));
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.locked_pages, 0);
    ck_assert_uint_eq(st.unlocked_pages, 1);
    kt_cache_free(c);
}
END_TEST

/* The alert's clock starts when the refresh became due, not at the first
 * failure: attempts that each wait out a hung vault (200 ms here) return
 * their first failure at 900, and the next would end past the expiry at
 * 1000.  Counted from the first failure the alert never fires; counted
 * from 700 it fires at 900, with the entry still served. */
START_TEST(test_alert_clock_starts_when_refresh_due)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);

    refresh_rv = KT_CKR_TIMEOUT;
    refresh_takes = 200;
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 700;
    kt_cache_maintain(c);
    ck_assert_uint_eq(fake_now, 900);
    ck_assert_int_eq(refresh_calls, 1);
    ck_assert_int_eq(alerts_seen, 1);
    ck_assert_int_eq(alert_saw_hit, 1);
    ck_assert_uint_eq(last_alert.failing_ms, 200);
    ck_assert_uint_eq(last_alert.expires_in_ms, 100);
    ck_assert_uint_eq(last_alert.last_error, KT_CKR_TIMEOUT);
    kt_cache_free(c);
}
END_TEST

/* Refreshing that keeps failing is due again, then alerts, in each
 * window: after a success the next window has its own alert. */
START_TEST(test_alert_again_after_success)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);

    refresh_rv = KT_CKR_TIMEOUT;
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    fake_now = 800;
    kt_cache_maintain(c);
    ck_assert_int_eq(alerts_seen, 1);
    refresh_rv = CKR_OK;
    fake_now = 850;
    kt_cache_maintain(c); /* refreshed: expires at 1850 */
    ck_assert_int_eq(refresh_calls, 2);
    refresh_rv = KT_CKR_TIMEOUT;
    fake_now = 1549;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 2);
    fake_now = 1550;
    kt_cache_maintain(c);
    ck_assert_int_eq(alerts_seen, 1);
    fake_now = 1650;
    kt_cache_maintain(c);
    ck_assert_int_eq(alerts_seen, 2);
    ck_assert_uint_eq(last_alert.expires_in_ms, 200);
    kt_cache_free(c);
}
END_TEST

/* A failing refresh backs off: retry_ms doubled at each failure in a row,
 * at most refresh_ahead / 8.  Driven every millisecond through the whole
 * window, 10 attempts instead of 48 at a fixed 10 ms. */
START_TEST(test_failing_refresh_backs_off)
{
    kt_cache_config cfg = base_config();
    kt_cache *c;
    int calls_at[16], n = 0;

    cfg.refresh_ahead_ms = 480; /* cap 60 ms */
    cfg.retry_ms = 10;
    c = mkcache(&cfg);
    refresh_rv = KT_CKR_TIMEOUT;
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    for (fake_now = 0; fake_now < 1000; fake_now++) {
        int before = refresh_calls;
        kt_cache_maintain(c);
        if (refresh_calls != before && n < 16)
            calls_at[n++] = (int)fake_now;
    }
    ck_assert_int_eq(refresh_calls, 10);
    const int want[10] = {520, 530, 550, 590, 650, 710, 770, 830, 890, 950};
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(calls_at[i], want[i]);
    kt_cache_free(c);
}
END_TEST

START_TEST(test_background_thread_alerts)
{
    kt_cache_config cfg = base_config();
    kt_cache *c;
    struct timespec ts;

    cfg.clock = NULL; /* real monotonic time */
    cfg.background = true;
    cfg.ttl_ms = 3000;
    cfg.refresh_ahead_ms = 1500;
    cfg.retry_ms = 20;
    cfg.alert_after_ms = 100;
    refresh_rv = KT_CKR_TIMEOUT;
    c = mkcache(&cfg);
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    ck_assert_int_eq(sem_timedwait(&alert_sem, &ts), 0);
    ck_assert_int_eq(alert_saw_hit, 1);
    ck_assert_uint_gt(last_alert.expires_in_ms, 0);
    ck_assert_uint_ge(last_alert.failing_ms, 100);
    kt_cache_free(c);
}
END_TEST

typedef struct reader_arg {
    kt_cache *c;
    int hits;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *r = p;
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len;

    for (int i = 0; i < 20000; i++)
        if (kt_cache_get(r->c, i % 2 ? "dep:dep-1" : "dep:dep-2", buf,
                         sizeof buf, &len)) {
            ck_assert(memcmp(buf, K1, 32) == 0 || memcmp(buf, K2, 32) == 0);
            r->hits++;
        }
    return NULL;
}

START_TEST(test_concurrent_readers_and_writers)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);
    pthread_t th[3];
    reader_arg args[3];
    kt_cache_tags t2 = tags1;

    t2.dep_id = "dep-2";
    for (int i = 0; i < 3; i++) {
        args[i] = (reader_arg){c, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &args[i]),
                         0);
    }
    for (int i = 0; i < 2000; i++) {
        ck_assert_int_eq(
            kt_cache_put(c, "dep:dep-1", &tags1, i % 2 ? K1 : K2, 32),
            KEYTIER_OK);
        ck_assert_int_eq(kt_cache_put(c, "dep:dep-2", &t2, K1, 32), KEYTIER_OK);
        kt_cache_invalidate_dep(c, "dep-2");
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* Each thread counts in its own stripe; the stats add them all up. */
    kt_cache_stats st;
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.hits, args[0].hits + args[1].hits + args[2].hits);
    ck_assert_uint_eq(st.hits + st.misses, 3 * 20000);
    kt_cache_free(c);
}
END_TEST

static bool accept_org(const void *aux, const void *arg)
{
    return strcmp(aux, arg) == 0;
}

/* Tier entries (parent tags, no refresh), aux checked under the
 * lock, the epoch guard of fills, root invalidation reaching tier keys. */
START_TEST(test_tier_entries_aux_epoch)
{
    kt_cache_config cfg = base_config();
    kt_cache *c = mkcache(&cfg);
    char aux[16] = "org-1", out_aux[16];
    unsigned char buf[KT_CACHE_KEY_MAX];
    size_t len;
    kt_cache_tags site = {.org_id = "org-1",
                          .dep_id = "dep-1",
                          .parent_id = "dep:dep-1",
                          .aux = aux,
                          .aux_len = sizeof aux,
                          .no_refresh = true};
    kt_cache_tags blob = site;
    kt_cache_stats st;
    uint64_t epoch;

    blob.parent_id = "key:site";
    ck_assert_int_eq(kt_cache_put(c, "dep:dep-1", &tags1, K1, 32), KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "key:site", &site, K2, 32), KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "key:blob", &blob, K2, 32), KEYTIER_OK);
    /* the aux comes back only to a caller it accepts, exactly sized */
    ck_assert(kt_cache_lookup(c, "key:site", buf, sizeof buf, &len, out_aux,
                              sizeof out_aux, accept_org, "org-1", false));
    ck_assert_str_eq(out_aux, "org-1");
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert(!kt_cache_lookup(c, "key:site", buf, sizeof buf, &len, out_aux,
                               sizeof out_aux, accept_org, "org-2", false));
    ck_assert(!kt_cache_lookup(c, "key:site", buf, sizeof buf, &len, out_aux, 8,
                               NULL, NULL, false));
    kt_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.hits, 1); /* refused: neither hit nor miss */
    ck_assert_uint_eq(st.misses, 0);
    /* tier entries are not refreshed: they expire at the TTL */
    fake_now = 800;
    kt_cache_maintain(c);
    ck_assert_int_eq(refresh_calls, 1); /* the DEP key only */
    /* a root of the DEP takes the tier keys of its DEP too */
    ck_assert_uint_eq(kt_cache_invalidate_root(c, "pkcs11:token=A;object=root"),
                      3);
    /* a key takes the keys below it */
    ck_assert_int_eq(kt_cache_put(c, "key:site", &site, K2, 32), KEYTIER_OK);
    ck_assert_int_eq(kt_cache_put(c, "key:blob", &blob, K2, 32), KEYTIER_OK);
    ck_assert_uint_eq(kt_cache_invalidate_tree(c, "key:site"), 2);
    /* a fill that read before an invalidation is not kept */
    epoch = kt_cache_epoch(c);
    site.epoch = &epoch;
    kt_cache_invalidate_dep(c, "dep-9"); /* any invalidation */
    ck_assert_int_eq(kt_cache_put(c, "key:site", &site, K2, 32), KEYTIER_OK);
    ck_assert(!get_is(c, "key:site", K2));
    epoch = kt_cache_epoch(c);
    ck_assert_int_eq(kt_cache_put(c, "key:site", &site, K2, 32), KEYTIER_OK);
    ck_assert(get_is(c, "key:site", K2));
    kt_cache_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_ttl_hit_miss);
    tcase_add_test(tc, test_refresh_ahead_extends);
    tcase_add_test(tc, test_refresh_failing_alerts_before_expiry);
    tcase_add_test(tc, test_refresh_recovers);
    tcase_add_test(tc, test_refresh_denied_evicts);
    tcase_add_test(tc, test_refresh_after_invalidation_dropped);
    tcase_add_test(tc, test_refresh_after_invalidation_keeps_new_entry);
    tcase_add_test(tc, test_invalidation);
    tcase_add_test(tc, test_max_entries_evicts_oldest);
    tcase_add_test(tc, test_works_without_mlock);
    tcase_add_test(tc, test_background_thread_alerts);
    tcase_add_test(tc, test_alert_clock_starts_when_refresh_due);
    tcase_add_test(tc, test_alert_again_after_success);
    tcase_add_test(tc, test_failing_refresh_backs_off);
    tcase_add_test(tc, test_concurrent_readers_and_writers);
    tcase_add_test(tc, test_tier_entries_aux_epoch);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
