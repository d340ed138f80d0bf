/* Unit tests of lib/base: error table, secret buffers, bounded reader and
 * writer, constant-time compare, logger, count of running calls. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kt_base.h"
#include "kt_calls.h"
#include "testenv.h"

START_TEST(error_table_is_complete)
{
    /* Every row has a distinct value, a name equal to its enum spelling and
     * a non-empty message. */
#define ROW(n, v, m)                                                           \
    ck_assert_int_eq(n, v);                                                    \
    ck_assert_str_eq(keytier_error_name(n), #n);                               \
    ck_assert_str_eq(keytier_strerror(n), m);                                  \
    ck_assert_int_gt((int)strlen(m), 0);
    KEYTIER_ERROR_TABLE(ROW)
#undef ROW
    ck_assert_str_eq(keytier_strerror((keytier_err)9999), "unknown error");
    ck_assert_str_eq(keytier_error_name((keytier_err)9999),
                     "KEYTIER_E_UNKNOWN");
}
END_TEST

START_TEST(error_detail_names_object)
{
    kt_err_clear();
    ck_assert_str_eq(keytier_last_error_detail(), "");
    keytier_err e =
        kt_err(KEYTIER_E_KEY_EXTRACTABLE, "key %s", "pkcs11:object=r");
    ck_assert_int_eq(e, KEYTIER_E_KEY_EXTRACTABLE);
    ck_assert_str_eq(keytier_last_error_detail(),
                     "root key is extractable: key pkcs11:object=r");
    kt_err(KEYTIER_E_NOMEM, NULL);
    ck_assert_str_eq(keytier_last_error_detail(), "out of memory");
    /* Context keeps the deeper detail, without repeating the message. */
    kt_err(KEYTIER_E_URI, "bad:x: no scheme");
    kt_err_context(KEYTIER_E_URI, "customer key A %s", "bad:x");
    ck_assert_str_eq(keytier_last_error_detail(),
                     "malformed PKCS#11 URI: customer key A bad:x (bad:x: no "
                     "scheme)");
    kt_err(KEYTIER_E_TOKEN, "C_UnwrapKey: failed");
    kt_err_context(KEYTIER_E_UNWRAP, "DEP d");
    ck_assert_str_eq(keytier_last_error_detail(),
                     "no customer key could unwrap the DEP key: DEP d (token "
                     "operation failed: C_UnwrapKey: failed)");
    kt_err_clear();
    kt_err_context(KEYTIER_E_IO, "x");
    ck_assert_str_eq(keytier_last_error_detail(), "input/output error: x");
}
END_TEST

START_TEST(secret_roundtrip)
{
    kt_secret *s = kt_secret_from("abcdef", 6);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(kt_secret_len(s), 6);
    ck_assert_mem_eq(kt_secret_cdata(s), "abcdef", 6);
    kt_secret *d = kt_secret_dup(s);
    ck_assert_mem_eq(kt_secret_cdata(d), "abcdef", 6);
    kt_secret_truncate(d, 2);
    ck_assert_uint_eq(kt_secret_len(d), 2);
    kt_secret_free(d);
    kt_secret_free(s);
    kt_secret_free(NULL);

    kt_secret *z = kt_secret_new(32);
    static const unsigned char zero[32];
    ck_assert_mem_eq(kt_secret_cdata(z), zero, 32);
    kt_secret_free(z);

    kt_secret *r1 = kt_secret_random(32), *r2 = kt_secret_random(32);
    ck_assert(!kt_ct_equal(kt_secret_cdata(r1), kt_secret_cdata(r2), 32));
    kt_secret_free(r1);
    kt_secret_free(r2);
    ck_assert_ptr_null(kt_secret_new(SIZE_MAX));
}
END_TEST

START_TEST(ct_equal)
{
    ck_assert(kt_ct_equal("abc", "abc", 3));
    ck_assert(!kt_ct_equal("abc", "abd", 3));
    ck_assert(kt_ct_equal("abc", "abd", 2));
}
END_TEST

START_TEST(reader_bounds)
{
    const uint8_t b[] = {1, 0, 2, 0, 0, 0, 3, 2, 'h', 'i', 9};
    struct kt_rd rd;
    kt_rd_init(&rd, b, sizeof b);
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    const uint8_t *p;
    size_t n;
    ck_assert(kt_rd_u8(&rd, &u8));
    ck_assert_uint_eq(u8, 1);
    ck_assert(kt_rd_u16(&rd, &u16));
    ck_assert_uint_eq(u16, 2);
    ck_assert(kt_rd_u32(&rd, &u32));
    ck_assert_uint_eq(u32, 3);
    ck_assert(kt_rd_lv8(&rd, &p, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(p, "hi", 2);
    ck_assert_uint_eq(kt_rd_remaining(&rd), 1);
    /* Reads past the end fail and do not move the cursor. */
    ck_assert(!kt_rd_u16(&rd, &u16));
    ck_assert(!kt_rd_u64(&rd, &u64));
    ck_assert(!kt_rd_view(&rd, SIZE_MAX, &p));
    ck_assert_uint_eq(kt_rd_remaining(&rd), 1);
    uint8_t dst[4];
    ck_assert(!kt_rd_copy(&rd, dst, 0, 1)); /* larger than destination */
    ck_assert(kt_rd_copy(&rd, dst, sizeof dst, 1));
    ck_assert_uint_eq(dst[0], 9);
    ck_assert_uint_eq(kt_rd_remaining(&rd), 0);

    /* A length prefix larger than what remains is refused whole. */
    const uint8_t bad[] = {200, 'x'};
    kt_rd_init(&rd, bad, sizeof bad);
    ck_assert(!kt_rd_lv8(&rd, &p, &n));
    ck_assert_uint_eq(kt_rd_remaining(&rd), 2);

    const uint8_t be64[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    kt_rd_init(&rd, be64, sizeof be64);
    ck_assert(kt_rd_u64(&rd, &u64));
    ck_assert_uint_eq(u64, 0x0102030405060708ull);
}
END_TEST

START_TEST(writer_bounds)
{
    uint8_t buf[8];
    struct kt_wr wr;
    kt_wr_init(&wr, buf, sizeof buf);
    ck_assert(kt_wr_u16(&wr, 0x0102));
    ck_assert(kt_wr_lv8(&wr, "abc", 3));
    ck_assert(kt_wr_ok(&wr));
    ck_assert_uint_eq(wr.len, 6);
    ck_assert_mem_eq(buf,
                     "\x01\x02\x03"
                     "abc",
                     6);
    ck_assert(!kt_wr_u32(&wr, 7)); /* does not fit */
    ck_assert(!kt_wr_ok(&wr));
    ck_assert(!kt_wr_u8(&wr, 1)); /* sticky even if it would fit */
    ck_assert_uint_eq(wr.len, 6);

    kt_wr_init(&wr, buf, sizeof buf);
    ck_assert_ptr_null(kt_wr_reserve(&wr, SIZE_MAX));
    ck_assert(!kt_wr_ok(&wr));

    static uint8_t big[300];
    uint8_t out[400];
    kt_wr_init(&wr, out, sizeof out);
    ck_assert(!kt_wr_lv8(&wr, big, sizeof big));
    ck_assert(!kt_wr_ok(&wr));

    size_t s;
    ck_assert(!kt_size_add(SIZE_MAX, 1, &s));
    ck_assert(kt_size_add(1, 2, &s));
    ck_assert_uint_eq(s, 3);
    ck_assert(!kt_size_mul(SIZE_MAX, 2, &s));
}
END_TEST

START_TEST(logger_writes_calls_and_events)
{
    char dir[] = "/tmp/kt-log-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/log", dir);
    kt_log *log;
    ck_assert_int_eq(kt_log_open(path, KT_LOG_DEBUG, &log), KEYTIER_OK);
    kt_log_call(log, "C_UnwrapKey", 0x30, "CKR_DEVICE_ERROR", 1500);
    kt_log_event(log, KT_LOG_INFO, "DEP created", "dep-1");
    kt_log_close(log);
    ck_assert_int_eq(kt_log_open(path, KT_LOG_ERROR, &log), KEYTIER_OK);
    kt_log_event(log, KT_LOG_INFO, "not written", "x");
    kt_log_close(log);

    FILE *f = fopen(path, "r");
    char line[512];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_ptr_nonnull(
        strstr(line, "debug call=C_UnwrapKey rv=0x00000030 (CKR_DEVICE_ERROR) "
                     "latency_us=1.5"));
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_ptr_nonnull(strstr(line, "info DEP created: dep-1"));
    ck_assert_ptr_null(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
    rmdir(dir);

    ck_assert_int_eq(kt_log_open("/nonexistent/dir/log", KT_LOG_ERROR, &log),
                     KEYTIER_E_CONFIG);
    enum kt_log_level l;
    ck_assert(kt_log_level_parse("warning", &l));
    ck_assert_int_eq(l, KT_LOG_WARNING);
    ck_assert(!kt_log_level_parse("loud", &l));
}
END_TEST

/* A unix datagram socket standing in for /dev/log. */
static int syslog_server(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void syslog_expect(int fd, const char *want)
{
    char rec[2048];
    ssize_t n = recv(fd, rec, sizeof rec - 1, 0);
    ck_assert_msg(n > 0, "no syslog record (want '%s')", want);
    rec[n] = 0;
    ck_assert_str_eq(rec, want);
}

/* log_target = syslog: RFC 3164 records "<PRI>keytier[PID]: LEVEL TEXT"
 * (facility daemon) on the socket, levels filtered as for a file, and a
 * logger that restarted (its socket made anew) gets the next record. */
START_TEST(logger_syslog_datagrams)
{
    char dir[] = "/tmp/kt-syslog-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], want[512];
    snprintf(path, sizeof path, "%s/log", dir);
    kt_log *log;
    ck_assert_int_eq(kt_log_open_syslog(path, KT_LOG_INFO, &log),
                     KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), path));
    int srv = syslog_server(path);
    ck_assert_int_eq(kt_log_open_syslog(path, KT_LOG_INFO, &log), KEYTIER_OK);
    kt_log_call(log, "C_UnwrapKey", 0x30, "CKR_DEVICE_ERROR", 1500);
    kt_log_event(log, KT_LOG_INFO, "DEP created", "dep-1");
    snprintf(want, sizeof want, "<30>keytier[%ld]: info DEP created: dep-1",
             (long)getpid());
    syslog_expect(srv, want); /* the debug call was not sent */
    kt_log_event(log, KT_LOG_ERROR, "store unreachable", NULL);
    snprintf(want, sizeof want, "<27>keytier[%ld]: error store unreachable",
             (long)getpid());
    syslog_expect(srv, want);
    close(srv);
    srv = syslog_server(path);
    kt_log_event(log, KT_LOG_WARNING, "token slow", "pkcs11:token=A");
    snprintf(want, sizeof want,
             "<28>keytier[%ld]: warning token slow: pkcs11:token=A",
             (long)getpid());
    syslog_expect(srv, want);
    kt_log_close(log);
    close(srv);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(array_reserve_grows_and_refuses_overflow)
{
    int *a = NULL;
    size_t cap = 0, n = 0;
    for (int i = 0; i < 100; i++) {
        ck_assert(kt_array_reserve((void **)&a, &cap, n, sizeof *a, 4));
        ck_assert_uint_gt(cap, n);
        a[n++] = i;
    }
    ck_assert_uint_eq(cap, 128); /* 4 doubled five times */
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(a[i], i);
    /* a size that would overflow: refused, array and capacity untouched */
    size_t huge = SIZE_MAX / 2 + 1;
    size_t c2 = huge;
    int *keep = a;
    ck_assert(!kt_array_reserve((void **)&a, &c2, huge, sizeof *a, 4));
    ck_assert_ptr_eq(a, keep);
    ck_assert_uint_eq(c2, huge);
    free(a);
}
END_TEST

/* What the owner of a kt_calls saw of its callbacks. */
struct calls_owner {
    kt_calls calls;
    int last;
    int hung;
};

static void owner_last(void *arg)
{
    struct calls_owner *o = arg;
    o->last++;
    kt_calls_destroy(&o->calls); /* as an owner's end does */
}

static void owner_hung(void *arg)
{
    struct calls_owner *o = arg;
    o->hung++;
}

START_TEST(calls_drain_with_none_running_returns_at_once)
{
    struct calls_owner o = {0};
    kt_calls_init(&o.calls, owner_last, &o);
    kt_calls_hold(&o.calls);
    kt_calls_release(&o.calls); /* no owner left yet: nothing more */
    uint64_t t0 = kt_now_ns();
    ck_assert(kt_calls_drain(&o.calls, 5000, NULL, owner_hung));
    ck_assert_uint_lt(kt_now_ns() - t0, 1000000000u);
    ck_assert_int_eq(o.hung, 0);
    ck_assert_int_eq(o.last, 0);
    kt_calls_destroy(&o.calls);
}
END_TEST

static void *release_later(void *arg)
{
    struct calls_owner *o = arg;
    usleep(50 * 1000);
    kt_calls_release(&o->calls);
    return NULL;
}

START_TEST(calls_drain_waits_for_a_call_that_ends_in_time)
{
    struct calls_owner o = {0};
    pthread_t t;
    kt_calls_init(&o.calls, owner_last, &o);
    kt_calls_hold(&o.calls);
    ck_assert_int_eq(pthread_create(&t, NULL, release_later, &o), 0);
    uint64_t t0 = kt_now_ns();
    ck_assert(kt_calls_drain(&o.calls, 10000, NULL, owner_hung));
    ck_assert_uint_lt(kt_now_ns() - t0, 5000000000u);
    pthread_join(t, NULL);
    ck_assert_int_eq(o.hung, 0);
    ck_assert_int_eq(o.last, 0); /* the owner ends itself */
    kt_calls_destroy(&o.calls);
}
END_TEST

START_TEST(calls_drain_leaves_the_end_to_the_last_call)
{
    struct calls_owner o = {0};
    kt_calls_init(&o.calls, owner_last, &o);
    kt_calls_hold(&o.calls);
    kt_calls_hold(&o.calls);
    uint64_t t0 = kt_now_ns();
    ck_assert(!kt_calls_drain(&o.calls, 50, NULL, owner_hung));
    ck_assert_uint_ge(kt_now_ns() - t0, 50000000u);
    ck_assert_int_eq(o.hung, 1);
    ck_assert_int_eq(o.last, 0);
    kt_calls_release(&o.calls);
    ck_assert_int_eq(o.last, 0); /* one call still running */
    kt_calls_release(&o.calls);
    ck_assert_int_eq(o.last, 1);
    ck_assert_int_eq(o.hung, 1);
}
END_TEST

/* Calls the owner knows hung (late) are not waited for: with every call
 * running late, the drain returns at once and leaves the end to them; a
 * call that becomes late while the drain waits ends the wait too. */
static unsigned owner_late_n;

static unsigned owner_late(void *arg)
{
    (void)arg;
    return __atomic_load_n(&owner_late_n, __ATOMIC_SEQ_CST);
}

static void *late_later(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    __atomic_store_n(&owner_late_n, 2, __ATOMIC_SEQ_CST);
    return NULL;
}

START_TEST(calls_drain_does_not_wait_for_late_calls)
{
    struct calls_owner o = {0};
    pthread_t t;
    kt_calls_init(&o.calls, owner_last, &o);
    kt_calls_hold(&o.calls);
    kt_calls_hold(&o.calls);
    owner_late_n = 2;
    uint64_t t0 = kt_now_ns();
    ck_assert(!kt_calls_drain(&o.calls, 60000, owner_late, owner_hung));
    ck_assert_uint_lt(kt_now_ns() - t0, 30000000000u);
    ck_assert_int_eq(o.hung, 1);
    kt_calls_release(&o.calls);
    kt_calls_release(&o.calls);
    ck_assert_int_eq(o.last, 1);

    /* one of two late at first: waited for until the other is late too */
    o = (struct calls_owner){0};
    kt_calls_init(&o.calls, owner_last, &o);
    kt_calls_hold(&o.calls);
    kt_calls_hold(&o.calls);
    owner_late_n = 1;
    ck_assert_int_eq(pthread_create(&t, NULL, late_later, NULL), 0);
    t0 = kt_now_ns();
    ck_assert(!kt_calls_drain(&o.calls, 60000, owner_late, owner_hung));
    ck_assert_uint_ge(kt_now_ns() - t0, 100000000u);
    ck_assert_uint_lt(kt_now_ns() - t0, 30000000000u);
    pthread_join(t, NULL);
    ck_assert_int_eq(o.hung, 1);
    kt_calls_release(&o.calls);
    kt_calls_release(&o.calls);
    ck_assert_int_eq(o.last, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("base");
    TCase *tc = tcase_create("base");
    tcase_add_test(tc, error_table_is_complete);
    tcase_add_test(tc, error_detail_names_object);
    tcase_add_test(tc, secret_roundtrip);
    tcase_add_test(tc, ct_equal);
    tcase_add_test(tc, reader_bounds);
    tcase_add_test(tc, writer_bounds);
    tcase_add_test(tc, logger_writes_calls_and_events);
    tcase_add_test(tc, logger_syslog_datagrams);
    tcase_add_test(tc, array_reserve_grows_and_refuses_overflow);
    tcase_add_test(tc, calls_drain_with_none_running_returns_at_once);
    tcase_add_test(tc, calls_drain_waits_for_a_call_that_ends_in_time);
    tcase_add_test(tc, calls_drain_leaves_the_end_to_the_last_call);
    tcase_add_test(tc, calls_drain_does_not_wait_for_late_calls);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
