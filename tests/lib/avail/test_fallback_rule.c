/*
 * The fallback rule (lib/avail/fallback_rule.c) on every combination of its
 * inputs: request kind, the caller's use of the key, the internal operation
 * (every value of the set, and one outside it), the workload's shape and
 * outage fallback, whether an approval was used, the two customer keys'
 * states and the availability key's state.  The expected verdicts are
 * written here as a decision table of their own (first matching row wins,
 * ANY matches every value), independently of the code; every combination
 * is compared with it, and every row of the table must decide at least one
 * combination (no dead row hides a missing case).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckr_class.h"
#include "fallback_rule.h"

#define ANY (-1)

typedef struct row {
    int kind, op, iop, shape, fb, appr, a, b, avail;
    kt_fallback_verdict want;
} row;

enum {
    U = KT_FALLBACK_USER,
    I = KT_FALLBACK_INTERNAL,
    R = KT_FALLBACK_REFRESH
};
enum {
    RD = KT_FALLBACK_OP_READ,
    RC = KT_FALLBACK_OP_RECOVER,
    RW = KT_FALLBACK_OP_REWRAP,
};
enum {
    NONE = KEYTIER_INTERNAL_NONE,
    MOVE = KEYTIER_INTERNAL_MOVE,
    INDEX = KEYTIER_INTERNAL_INDEX,
    SCAN = KEYTIER_INTERNAL_MALWARE_SCAN,
    EDISC = KEYTIER_INTERNAL_EDISCOVERY,
    DLP = KEYTIER_INTERNAL_DLP,
    REC = KEYTIER_INTERNAL_RECOVER,
    LAST = KEYTIER_INTERNAL_MIGRATE,
    OUTSIDE = LAST + 1, /* a value outside the set */
};
enum { MAIL = KT_FALLBACK_MAIL, FILES = KT_FALLBACK_FILES };
enum {
    UT = KT_FALLBACK_KEY_UNTRIED,
    OK = KT_FALLBACK_KEY_OK,
    SY = KT_FALLBACK_KEY_SYSTEM,
    DN = KT_FALLBACK_KEY_DENIED,
};
enum { AU = KT_FALLBACK_AVAIL_UNTRIED, AF = KT_FALLBACK_AVAIL_FAILED };

#define SERVE    KT_FALLBACK_SERVE
#define NEXT     KT_FALLBACK_TRY_NEXT
#define AVAIL    KT_FALLBACK_USE_AVAIL
#define APPROVAL KT_FALLBACK_NEED_APPROVAL
#define REVOKED  KT_FALLBACK_DENY_REVOKED
#define UNAVAIL  KT_FALLBACK_DENY_UNAVAILABLE

static const row expected[] = {
    /* kind op  iop  shape fb appr A  B    avail */
    /* a customer key unwrapped: nothing else matters */
    {ANY, ANY, ANY, ANY, ANY, ANY, OK, ANY, ANY, SERVE},
    {ANY, ANY, ANY, ANY, ANY, ANY, ANY, OK, ANY, SERVE},
    /* one customer key still to ask */
    {ANY, ANY, ANY, ANY, ANY, ANY, UT, ANY, ANY, NEXT},
    {ANY, ANY, ANY, ANY, ANY, ANY, ANY, UT, ANY, NEXT},
    /* the availability key failed too */
    {ANY, ANY, ANY, ANY, ANY, ANY, DN, ANY, AF, REVOKED},
    {ANY, ANY, ANY, ANY, ANY, ANY, ANY, DN, AF, REVOKED},
    {ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, AF, UNAVAIL},
    /* a user: only when both are down and the workload falls back on
     * outages; the files shape only once an approval was used */
    {U, ANY, ANY, MAIL, 1, ANY, SY, SY, AU, AVAIL},
    {U, ANY, ANY, FILES, 1, 1, SY, SY, AU, AVAIL},
    {U, ANY, ANY, FILES, 1, 0, SY, SY, AU, APPROVAL},
    /* keytier_dep_recover's migration: approved at its entry point */
    {I, RC, ANY, ANY, ANY, ANY, ANY, ANY, AU, AVAIL},
    /* a request's recovery: whatever the workload and error class; the
     * files shape once an approval was used */
    {I, RD, REC, MAIL, ANY, ANY, ANY, ANY, AU, AVAIL},
    {I, RD, REC, FILES, ANY, 1, ANY, ANY, AU, AVAIL},
    {I, RD, REC, FILES, ANY, 0, ANY, ANY, AU, APPROVAL},
    /* the service's processing on the mail shape, when it falls back on
     * outages: revocation included */
    {I, RD, MOVE, MAIL, 1, ANY, ANY, ANY, AU, AVAIL},
    {I, RD, INDEX, MAIL, 1, ANY, ANY, ANY, AU, AVAIL},
    {I, RD, SCAN, MAIL, 1, ANY, ANY, ANY, AU, AVAIL},
    {I, RD, EDISC, MAIL, 1, ANY, ANY, ANY, AU, AVAIL},
    {I, RD, DLP, MAIL, 1, ANY, ANY, ANY, AU, AVAIL},
    /* everything else is refused: the service's processing on the files
     * shape, the library's own operations (roll, assign, migrate), no or
     * an unknown operation, a rewrap, a refresh; revoked when a customer
     * key denied */
    {ANY, ANY, ANY, ANY, ANY, ANY, DN, ANY, ANY, REVOKED},
    {ANY, ANY, ANY, ANY, ANY, ANY, ANY, DN, ANY, REVOKED},
    {ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, UNAVAIL},
};
#define N_ROWS (sizeof expected / sizeof expected[0])

static bool m(int want, int got)
{
    return want == ANY || want == got;
}

static const row *lookup(const kt_fallback_in *in)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        const row *r = &expected[i];
        if (m(r->kind, (int)in->kind) && m(r->op, (int)in->op) &&
            m(r->iop, (int)in->internal) && m(r->shape, (int)in->shape) &&
            m(r->fb, in->outage_fallback) && m(r->appr, in->approved) &&
            m(r->a, (int)in->key_a) && m(r->b, (int)in->key_b) &&
            m(r->avail, (int)in->avail))
            return r;
    }
    return NULL;
}

/* One combination against the table; marks the row that decided it. */
static void check_one(const kt_fallback_in *in, bool used[N_ROWS])
{
    const row *r = lookup(in);
    kt_fallback_verdict got = kt_fallback_decide(in);

    ck_assert_ptr_nonnull(r);
    used[r - expected] = true;
    ck_assert_msg(got == r->want,
                  "kind %d op %d internal %d shape %d fallback %d approved "
                  "%d A %d B %d avail %d: got %s, want %s (row %td)",
                  (int)in->kind, (int)in->op, (int)in->internal, (int)in->shape,
                  (int)in->outage_fallback, (int)in->approved, (int)in->key_a,
                  (int)in->key_b, (int)in->avail, kt_fallback_verdict_name(got),
                  kt_fallback_verdict_name(r->want), r - expected);
    ck_assert_int_eq(kt_fallback_revocation_seen(in),
                     in->key_a == KT_FALLBACK_KEY_DENIED ||
                         in->key_b == KT_FALLBACK_KEY_DENIED);
}

START_TEST(every_combination_matches_the_table)
{
    bool used[N_ROWS] = {false};
    unsigned n = 0;

    for (int kind = U; kind <= R; kind++)
        for (int op = RD; op <= RW; op++)
            for (int iop = NONE; iop <= OUTSIDE; iop++)
                for (int sh = MAIL; sh <= FILES; sh++)
                    for (int fb = 0; fb <= 1; fb++)
                        for (int ap = 0; ap <= 1; ap++)
                            for (int a = UT; a <= DN; a++)
                                for (int b = UT; b <= DN; b++)
                                    for (int av = AU; av <= AF; av++) {
                                        kt_fallback_in in = {
                                            .kind = (kt_fallback_kind)kind,
                                            .op = (kt_fallback_op)op,
                                            .internal =
                                                (keytier_internal_op)iop,
                                            .shape = (kt_fallback_shape)sh,
                                            .outage_fallback = fb,
                                            .approved = ap,
                                            .key_a = (kt_fallback_key)a,
                                            .key_b = (kt_fallback_key)b,
                                            .avail = (kt_fallback_avail)av,
                                        };
                                        check_one(&in, used);
                                        n++;
                                    }
    ck_assert_uint_eq(n, 3 * 3 * (OUTSIDE + 1) * 2 * 2 * 2 * 4 * 4 * 2);
    for (size_t i = 0; i < N_ROWS; i++)
        ck_assert_msg(used[i], "row %zu decides no combination", i);
}
END_TEST

/* Outage fallback switched on for a files workload is about outages: with
 * both customer keys revoked, indexing (or any of the service's
 * processing) is refused there, approval or not, while the same request
 * on the mail shape reads through the availability key. */
START_TEST(files_revocation_is_not_overridden_by_outage_fallback)
{
    kt_fallback_in in = {.kind = KT_FALLBACK_INTERNAL,
                         .op = KT_FALLBACK_OP_READ,
                         .internal = KEYTIER_INTERNAL_INDEX,
                         .shape = KT_FALLBACK_FILES,
                         .outage_fallback = true,
                         .approved = true,
                         .key_a = KT_FALLBACK_KEY_DENIED,
                         .key_b = KT_FALLBACK_KEY_DENIED};

    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_REVOKED);
    in.key_a = in.key_b = KT_FALLBACK_KEY_SYSTEM;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_UNAVAILABLE);
    in.shape = KT_FALLBACK_MAIL;
    in.approved = false;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_USE_AVAIL);
    in.key_a = in.key_b = KT_FALLBACK_KEY_DENIED;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_USE_AVAIL);
    /* a recovery on the files shape: only once approved */
    in.shape = KT_FALLBACK_FILES;
    in.internal = KEYTIER_INTERNAL_RECOVER;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_NEED_APPROVAL);
    in.approved = true;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_USE_AVAIL);
}
END_TEST

/* The one table of names: each operation of the set and its name both
 * ways; the library's own are known to it but not a caller's to name;
 * anything else is an argument error listing the valid names. */
START_TEST(internal_operation_names)
{
    static const struct {
        keytier_internal_op op;
        const char *name;
        bool callers;
    } set[] = {
        {KEYTIER_INTERNAL_MOVE, "move", true},
        {KEYTIER_INTERNAL_INDEX, "index", true},
        {KEYTIER_INTERNAL_MALWARE_SCAN, "malware-scan", true},
        {KEYTIER_INTERNAL_EDISCOVERY, "ediscovery", true},
        {KEYTIER_INTERNAL_DLP, "dlp", true},
        {KEYTIER_INTERNAL_RECOVER, "recover", true},
        {KEYTIER_INTERNAL_ROLL, "roll", false},
        {KEYTIER_INTERNAL_ASSIGN, "assign", false},
        {KEYTIER_INTERNAL_MIGRATE, "migrate", false},
    };
    static const char *const bad[] = {"foo",  "",          "Index", "index ",
                                      "none", "recover\n", NULL};
    const char *valid = "one of move, index, malware-scan, ediscovery, dlp, "
                        "recover";
    keytier_internal_op op;

    ck_assert_uint_eq(sizeof set / sizeof set[0], LAST);
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        ck_assert_str_eq(keytier_internal_op_name(set[i].op), set[i].name);
        op = KEYTIER_INTERNAL_NONE;
        ck_assert(kt_internal_op_lookup(set[i].name, &op));
        ck_assert_int_eq(op, set[i].op);
        ck_assert_int_eq(kt_internal_op_own(set[i].op), !set[i].callers);
        op = KEYTIER_INTERNAL_NONE;
        if (set[i].callers) {
            ck_assert_int_eq(keytier_internal_op_parse(set[i].name, &op),
                             KEYTIER_OK);
            ck_assert_int_eq(op, set[i].op);
        } else {
            ck_assert_int_eq(keytier_internal_op_parse(set[i].name, &op),
                             KEYTIER_E_ARGS);
            ck_assert_int_eq(op, KEYTIER_INTERNAL_NONE);
            ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), valid));
        }
    }
    ck_assert_ptr_null(keytier_internal_op_name(KEYTIER_INTERNAL_NONE));
    ck_assert_ptr_null(keytier_internal_op_name((keytier_internal_op)OUTSIDE));
    ck_assert_ptr_null(keytier_internal_op_name((keytier_internal_op)-1));
    ck_assert(!kt_internal_op_own(KEYTIER_INTERNAL_NONE));
    ck_assert(!kt_internal_op_own((keytier_internal_op)OUTSIDE));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        op = KEYTIER_INTERNAL_NONE;
        ck_assert(!kt_internal_op_lookup(bad[i], &op));
        ck_assert_int_eq(keytier_internal_op_parse(bad[i], &op),
                         KEYTIER_E_ARGS);
        ck_assert_int_eq(op, KEYTIER_INTERNAL_NONE);
        ck_assert_ptr_nonnull(strstr(keytier_last_error_detail(), valid));
    }
    ck_assert_int_eq(keytier_internal_op_parse("index", NULL), KEYTIER_E_ARGS);
    ck_assert_int_eq(keytier_internal_op_parse("foo", &op), KEYTIER_E_ARGS);
    ck_assert_str_eq(keytier_last_error_detail(),
                     "invalid argument: internal operation 'foo': one of "
                     "move, index, malware-scan, ediscovery, dlp, recover");
}
END_TEST

/* One customer key refused while the other is down: a user must be
 * refused as revoked, in either order, even on a workload that falls back
 * on outages (a revoked tenant's user must never read through the
 * availability key). */
START_TEST(user_one_denied_one_down_is_revoked)
{
    kt_fallback_in in = {.kind = KT_FALLBACK_USER,
                         .outage_fallback = true,
                         .key_a = KT_FALLBACK_KEY_SYSTEM,
                         .key_b = KT_FALLBACK_KEY_DENIED};

    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_REVOKED);
    in.key_a = KT_FALLBACK_KEY_DENIED;
    in.key_b = KT_FALLBACK_KEY_SYSTEM;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_REVOKED);
    in.key_b = KT_FALLBACK_KEY_DENIED;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_REVOKED);
    /* both down: the availability key */
    in.key_a = in.key_b = KT_FALLBACK_KEY_SYSTEM;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_USE_AVAIL);
}
END_TEST

/* A background refresh never falls back: it evicts when a key is denied
 * (whatever the other says) and keeps its entry on an outage. */
START_TEST(refresh_one_denied_one_down_evicts)
{
    kt_fallback_in in = {.kind = KT_FALLBACK_REFRESH,
                         .outage_fallback = true,
                         .key_a = KT_FALLBACK_KEY_SYSTEM,
                         .key_b = KT_FALLBACK_KEY_DENIED};

    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_REVOKED);
    in.key_a = KT_FALLBACK_KEY_DENIED;
    in.key_b = KT_FALLBACK_KEY_SYSTEM;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_REVOKED);
    in.key_a = in.key_b = KT_FALLBACK_KEY_SYSTEM;
    ck_assert_int_eq(kt_fallback_decide(&in), KT_FALLBACK_DENY_UNAVAILABLE);
}
END_TEST

/* The key states come from the CK_RV class table. */
START_TEST(key_state_follows_the_class_table)
{
    ck_assert_int_eq(kt_fallback_key_state(CKR_OK), KT_FALLBACK_KEY_OK);
    ck_assert_int_eq(kt_fallback_key_state(CKR_PIN_INCORRECT),
                     KT_FALLBACK_KEY_DENIED);
    ck_assert_int_eq(kt_fallback_key_state(KT_CKR_BLOB_REFUSED),
                     KT_FALLBACK_KEY_DENIED);
    ck_assert_int_eq(kt_fallback_key_state(CKR_DEVICE_ERROR),
                     KT_FALLBACK_KEY_SYSTEM);
    ck_assert_int_eq(kt_fallback_key_state(KT_CKR_TIMEOUT),
                     KT_FALLBACK_KEY_SYSTEM);
    ck_assert_int_eq(kt_fallback_key_state(KT_CKR_NOT_STARTED),
                     KT_FALLBACK_KEY_SYSTEM);
    /* unknown codes are outages, never revocations */
    ck_assert_int_eq(kt_fallback_key_state(CKR_VENDOR_DEFINED | 0x77UL),
                     KT_FALLBACK_KEY_SYSTEM);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fallback_rule");
    TCase *tc = tcase_create("rule");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, every_combination_matches_the_table);
    tcase_add_test(tc, files_revocation_is_not_overridden_by_outage_fallback);
    tcase_add_test(tc, internal_operation_names);
    tcase_add_test(tc, user_one_denied_one_down_is_revoked);
    tcase_add_test(tc, refresh_one_denied_one_down_evicts);
    tcase_add_test(tc, key_state_follows_the_class_table);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
