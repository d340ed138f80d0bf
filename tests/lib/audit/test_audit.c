/*
 * The audit log: record fields, the hash chain against edited, removed,
 * swapped and forged lines (verify names the first bad line), repair of a
 * record cut by a crash, and appends from many threads and processes.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "audit.h"

static char dir[256];
static char logpath[300];

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof dir, "%s/kt-audit-XXXXXX", tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(logpath, sizeof logpath, "%s/audit.log", dir);
}

static void teardown(void)
{
    char cmd[300];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const kt_audit_request req_user = {
    .workload = "Exchange",
    .org_id = "org-1",
    .dep_id = "11111111-2222-4333-8444-555555555555",
    .policy_id = "66666666-7777-4888-9999-aaaaaaaaaaaa",
    .request_id = "req-42",
    .kind = "user",
};

static const kt_audit_key_error errs_system[2] = {
    {"A", "pkcs11:token=vault-a;object=root?pin-value=PIN-not-logged",
     KT_CKR_TIMEOUT},
    {"B", "pkcs11:token=vault-b;object=root", CKR_DEVICE_REMOVED},
};

/* Reads the whole file as lines; returns the count. */
static int read_lines(const char *path, char lines[][4096], int max)
{
    FILE *f = fopen(path, "r");
    int n = 0;

    ck_assert_ptr_nonnull(f);
    while (n < max && fgets(lines[n], 4096, f))
        n++;
    fclose(f);
    return n;
}

static void write_lines(const char *path, char lines[][4096], int n)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++)
        fputs(lines[i], f);
    fclose(f);
}

static void make_log(int records)
{
    kt_audit *a;

    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    for (int i = 0; i < records; i++) {
        if (i % 3 == 0)
            ck_assert_int_eq(kt_audit_fallback(a, &req_user, errs_system),
                             KEYTIER_OK);
        else if (i % 3 == 1)
            ck_assert_int_eq(kt_audit_dep_created(a, &req_user), KEYTIER_OK);
        else
            ck_assert_int_eq(kt_audit_cache_alert(a, "org-1", "dep-1",
                                                  "dep:dep-1", 1500, 500),
                             KEYTIER_OK);
    }
    kt_audit_close(a);
}

static const char *str_field(json_object *o, const char *key)
{
    json_object *v;

    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no %s", key);
    ck_assert(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

START_TEST(test_fallback_record_fields)
{
    char lines[4][4096];
    json_object *rec, *errs, *e;
    const char *t;
    kt_audit *a;
    uint64_t bad, n, seq = 0;
    kt_audit_request internal = req_user;

    internal.kind = "internal";
    internal.operation = "index";
    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    ck_assert_int_eq(kt_audit_fallback(a, &req_user, errs_system), KEYTIER_OK);
    ck_assert_int_eq(kt_audit_denied(a, &internal, errs_system), KEYTIER_OK);
    ck_assert_int_eq(kt_audit_append(a, "Key rolled", NULL, &seq), KEYTIER_OK);
    ck_assert_uint_eq(seq, 3);
    kt_audit_close(a);
    ck_assert_int_eq(read_lines(logpath, lines, 4), 3);

    rec = json_tokener_parse(lines[0]);
    ck_assert_ptr_nonnull(rec);
    t = str_field(rec, "CreationTime");
    /* UTC ISO 8601: 2026-11-23T15:30:00.123Z */
    ck_assert_int_eq(strlen(t), 24);
    ck_assert(t[4] == '-' && t[7] == '-' && t[10] == 'T' && t[13] == ':' &&
              t[16] == ':' && t[19] == '.' && t[23] == 'Z');
    t = str_field(rec, "Id");
    ck_assert_int_eq(strlen(t), 36);
    ck_assert(t[8] == '-' && t[14] == '4');
    ck_assert_str_eq(str_field(rec, "RecordType"),
                     "CustomerKeyServiceEncryption");
    ck_assert_str_eq(str_field(rec, "Activity"),
                     "Fallback to availability key");
    ck_assert_str_eq(str_field(rec, "Workload"), "Exchange");
    ck_assert_str_eq(str_field(rec, "OrganizationId"), "org-1");
    ck_assert_str_eq(str_field(rec, "DataEncryptionPolicyId"),
                     "11111111-2222-4333-8444-555555555555");
    ck_assert_str_eq(str_field(rec, "PolicyId"),
                     "66666666-7777-4888-9999-aaaaaaaaaaaa");
    ck_assert_str_eq(str_field(rec, "RequestId"), "req-42");
    ck_assert_str_eq(str_field(rec, "RequestKind"), "user");
    ck_assert(!json_object_object_get_ex(rec, "Operation", NULL));
    ck_assert(json_object_object_get_ex(rec, "CustomerKeyErrors", &errs));
    ck_assert_int_eq((int)json_object_array_length(errs), 2);
    e = json_object_array_get_idx(errs, 0);
    ck_assert_str_eq(str_field(e, "Key"), "A");
    /* the query part (a PIN could be there) is not logged */
    ck_assert_str_eq(str_field(e, "Uri"), "pkcs11:token=vault-a;object=root");
    ck_assert_str_eq(str_field(e, "Error"), "timeout");
    ck_assert_str_eq(str_field(e, "Class"), "system");
    e = json_object_array_get_idx(errs, 1);
    ck_assert_str_eq(str_field(e, "Key"), "B");
    ck_assert_str_eq(str_field(e, "Error"), "CKR_DEVICE_REMOVED");
    ck_assert_str_eq(str_field(e, "Class"), "system");
    ck_assert_str_eq(str_field(rec, "PrevHash"),
                     "0000000000000000000000000000000000000000000000000000000"
                     "000000000");
    json_object_put(rec);
    ck_assert_ptr_null(strstr(lines[0], "PIN-not-logged"));

    rec = json_tokener_parse(lines[1]);
    ck_assert_str_eq(str_field(rec, "Activity"),
                     "Request denied: customer keys revoked");
    ck_assert_str_eq(str_field(rec, "RequestKind"), "internal");
    ck_assert_str_eq(str_field(rec, "Operation"), "index");
    json_object_put(rec);

    ck_assert_int_eq(kt_audit_verify(logpath, &bad, &n), KEYTIER_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(keytier_audit_verify(logpath, &bad, &n), KEYTIER_OK);
}
END_TEST

START_TEST(test_reserved_fields_refused)
{
    kt_audit *a;
    json_object *o = json_object_new_object();

    json_object_object_add(o, "Hash", json_object_new_string("x"));
    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    ck_assert_int_eq(kt_audit_append(a, "x", o, NULL), KEYTIER_E_ARGS);
    o = json_object_new_object();
    json_object_object_add(o, "Seq", json_object_new_int(9));
    ck_assert_int_eq(kt_audit_append(a, "x", o, NULL), KEYTIER_E_ARGS);
    ck_assert_int_eq(kt_audit_append(a, NULL, NULL, NULL), KEYTIER_E_ARGS);
    kt_audit_close(a);
}
END_TEST

/* Verifies the tampered copy and checks the named line. */
static void expect_bad(char lines[][4096], int n, uint64_t want)
{
    char copy[320];
    uint64_t bad = 0, good = 0;
    char needle[32];

    snprintf(copy, sizeof copy, "%s/copy.log", dir);
    write_lines(copy, lines, n);
    ck_assert_int_eq(kt_audit_verify(copy, &bad, &good),
                     KEYTIER_E_AUDIT_TAMPERED);
    ck_assert_uint_eq(bad, want);
    ck_assert_uint_eq(good, want - 1);
    snprintf(needle, sizeof needle, "line %llu ", (unsigned long long)want);
    ck_assert_msg(strstr(keytier_last_error_detail(), needle), "detail: %s",
                  keytier_last_error_detail());
}

static char orig[8][4096], work[8][4096];

static int load(void)
{
    int n;

    make_log(6);
    n = read_lines(logpath, orig, 8);
    ck_assert_int_eq(n, 6);
    memcpy(work, orig, sizeof orig);
    return n;
}

START_TEST(test_verify_edit)
{
    int n = load();
    char *p = strstr(work[2], "org-1");

    ck_assert_ptr_nonnull(p);
    p[4] = '2'; /* org-1 -> org-2 */
    expect_bad(work, n, 3);
}
END_TEST

START_TEST(test_verify_edit_whitespace)
{
    int n = load();
    char *p = strstr(work[3], "\"Activity\":");

    memmove(p + 12, p + 11, strlen(p + 11) + 1);
    p[11] = ' ';
    expect_bad(work, n, 4);
}
END_TEST

/* An attacker who edits a line and recomputes its own hash still breaks
 * the link to the next line. */
START_TEST(test_verify_edit_rehashed)
{
    int n = load();
    json_object *rec = json_tokener_parse(work[2]);
    char hash[65];
    unsigned char md[32];
    unsigned int len;
    const char *text;
    size_t tlen;

    json_object_object_del(rec, "Hash");
    json_object_object_add(rec, "OrganizationId",
                           json_object_new_string("org-evil"));
    text = json_object_to_json_string_length(
        rec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &tlen);
    ck_assert(EVP_Digest(text, tlen, md, &len, EVP_sha256(), NULL));
    for (int i = 0; i < 32; i++)
        sprintf(hash + 2 * i, "%02x", md[i]);
    json_object_object_add(rec, "Hash", json_object_new_string(hash));
    snprintf(work[2], 4096, "%s\n",
             json_object_to_json_string_ext(
                 rec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(rec);
    expect_bad(work, n, 4);
}
END_TEST

START_TEST(test_verify_delete)
{
    int n = load();

    memmove(work[2], work[3], sizeof work[0] * (size_t)(n - 3));
    expect_bad(work, n - 1, 3);
}
END_TEST

/* The forger with the file: recomputes PrevHash and Hash of every line
 * from `from` on (from > 0), exactly as the writer would. */
static void rechain(char lines[][4096], int n, int from)
{
    const int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    json_object *o = json_tokener_parse(lines[from - 1]), *h;
    char prev[65];

    ck_assert(o && json_object_object_get_ex(o, "Hash", &h));
    snprintf(prev, sizeof prev, "%s", json_object_get_string(h));
    json_object_put(o);
    for (int i = from; i < n; i++) {
        unsigned char md[32];
        unsigned int mdlen;
        size_t tlen;
        o = json_tokener_parse(lines[i]);
        ck_assert_ptr_nonnull(o);
        json_object_object_del(o, "Hash");
        json_object_object_add(o, "PrevHash", json_object_new_string(prev));
        const char *text = json_object_to_json_string_length(o, flags, &tlen);
        ck_assert(EVP_Digest(text, tlen, md, &mdlen, EVP_sha256(), NULL));
        for (int k = 0; k < 32; k++)
            sprintf(prev + 2 * k, "%02x", md[k]);
        json_object_object_add(o, "Hash", json_object_new_string(prev));
        snprintf(lines[i], 4096, "%s\n",
                 json_object_to_json_string_ext(o, flags));
        json_object_put(o);
    }
}

/* A record removed from the middle and the chain after it recomputed:
 * every hash and link holds, but the sequence has a gap, which verify
 * names at the line where it is. */
START_TEST(test_verify_delete_rechained)
{
    int n = load();

    memmove(work[2], work[3], sizeof work[0] * (size_t)(n - 3));
    rechain(work, n - 1, 2);
    expect_bad(work, n - 1, 3);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "has sequence 4, expected 3"));
}
END_TEST

START_TEST(test_verify_delete_first)
{
    int n = load();

    memmove(work[0], work[1], sizeof work[0] * (size_t)(n - 1));
    expect_bad(work, n - 1, 1);
}
END_TEST

START_TEST(test_verify_swap)
{
    int n = load();

    memcpy(work[1], orig[2], sizeof work[0]);
    memcpy(work[2], orig[1], sizeof work[0]);
    expect_bad(work, n, 2);
}
END_TEST

START_TEST(test_verify_append_replayed)
{
    int n = load();

    memcpy(work[n], orig[1], sizeof work[0]);
    expect_bad(work, n + 1, 7);
}
END_TEST

START_TEST(test_verify_append_forged)
{
    int n = load();

    snprintf(work[n], 4096,
             "{\"Seq\":7,\"Activity\":\"DEP created\",\"PrevHash\":\"%.64s\","
             "\"Hash\":\"%064d\"}\n",
             strstr(orig[n - 1], "\"Hash\":\"") + 8, 0);
    expect_bad(work, n + 1, 7);
}
END_TEST

START_TEST(test_verify_truncated_line)
{
    int n = load();

    work[n - 1][strlen(work[n - 1]) - 1] = '\0';
    expect_bad(work, n, 6);
    work[n - 1][20] = '\0';
    expect_bad(work, n, 6);
}
END_TEST

START_TEST(test_verify_empty_and_missing)
{
    uint64_t bad, n;
    kt_audit *a;

    ck_assert_int_eq(kt_audit_verify(logpath, &bad, &n), KEYTIER_E_IO);
    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    kt_audit_close(a);
    /* No record: nothing verified, never "intact". */
    ck_assert_int_eq(kt_audit_verify(logpath, &bad, &n), KEYTIER_E_AUDIT_EMPTY);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(bad, 0);
}
END_TEST

/* A crash during an append leaves a partial line that was never reported
 * written: the next append cuts it and continues the chain. */
START_TEST(test_partial_tail_repaired)
{
    kt_audit *a;
    uint64_t bad, n, seq;
    int fd;

    make_log(3);
    fd = open(logpath, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "{\"Seq\":4,\"Creat", 15), 15);
    close(fd);
    ck_assert_int_eq(kt_audit_verify(logpath, &bad, &n),
                     KEYTIER_E_AUDIT_TAMPERED);
    ck_assert_uint_eq(bad, 4);
    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    ck_assert_int_eq(kt_audit_append(a, "after crash", NULL, &seq), KEYTIER_OK);
    ck_assert_uint_eq(seq, 4);
    kt_audit_close(a);
    ck_assert_int_eq(kt_audit_verify(logpath, &bad, &n), KEYTIER_OK);
    ck_assert_uint_eq(n, 4);
}
END_TEST

START_TEST(test_garbage_tail_refused)
{
    kt_audit *a;
    int fd;

    make_log(2);
    fd = open(logpath, O_WRONLY | O_APPEND);
    ck_assert_int_eq(write(fd, "not a record\n", 13), 13);
    close(fd);
    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    ck_assert_int_eq(kt_audit_append(a, "x", NULL, NULL),
                     KEYTIER_E_AUDIT_TAMPERED);
    kt_audit_close(a);
}
END_TEST

#define THREADS    4
#define PER_THREAD 40
#define PROCS      3

static void *append_main(void *p)
{
    kt_audit *a = p;

    for (int i = 0; i < PER_THREAD; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "Writer", json_object_new_int(getpid()));
        ck_assert_int_eq(kt_audit_append(a, "concurrent", o, NULL), KEYTIER_OK);
    }
    return NULL;
}

static void append_threads(void)
{
    kt_audit *a;
    pthread_t th[THREADS];

    ck_assert_int_eq(kt_audit_open(logpath, &a), KEYTIER_OK);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, append_main, a), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    kt_audit_close(a);
}

START_TEST(test_concurrent_threads_and_processes)
{
    pid_t pids[PROCS];
    uint64_t bad, n;
    FILE *f;
    char line[4096];
    int count = 0;

    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            append_threads();
            _exit(0);
        }
    }
    append_threads();
    for (int p = 0; p < PROCS; p++) {
        int status;
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    ck_assert_int_eq(kt_audit_verify(logpath, &bad, &n), KEYTIER_OK);
    ck_assert_uint_eq(n, (PROCS + 1) * THREADS * PER_THREAD);
    /* every record is whole: one JSON object per line */
    f = fopen(logpath, "r");
    while (fgets(line, sizeof line, f)) {
        json_object *o = json_tokener_parse(line);
        ck_assert_ptr_nonnull(o);
        json_object_put(o);
        count++;
    }
    fclose(f);
    ck_assert_int_eq(count, (PROCS + 1) * THREADS * PER_THREAD);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("audit");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fallback_record_fields);
    tcase_add_test(tc, test_reserved_fields_refused);
    tcase_add_test(tc, test_verify_edit);
    tcase_add_test(tc, test_verify_edit_whitespace);
    tcase_add_test(tc, test_verify_edit_rehashed);
    tcase_add_test(tc, test_verify_delete_rechained);
    tcase_add_test(tc, test_verify_delete);
    tcase_add_test(tc, test_verify_delete_first);
    tcase_add_test(tc, test_verify_swap);
    tcase_add_test(tc, test_verify_append_replayed);
    tcase_add_test(tc, test_verify_append_forged);
    tcase_add_test(tc, test_verify_truncated_line);
    tcase_add_test(tc, test_verify_empty_and_missing);
    tcase_add_test(tc, test_partial_tail_repaired);
    tcase_add_test(tc, test_garbage_tail_refused);
    tcase_add_test(tc, test_concurrent_threads_and_processes);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
