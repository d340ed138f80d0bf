/*
 * The fallback rule (lib/avail/fallback_rule.c) on every combination of its
 * inputs: request kind, operation, the workload's outage fallback, the two
 * customer keys' states and the availability key's state.  The expected
 * verdicts are written here as a decision table of their own (first
 * matching row wins, ANY matches every value), independently of the code;
 * every combination is compared with it, and every row of the table must
 * decide at least one combination (no dead row hides a missing case).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "ckr_class.h"
#include "fallback_rule.h"

#define ANY (-1)

typedef struct row {
    int kind, op, fb, a, b, avail;
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
    UT = KT_FALLBACK_KEY_UNTRIED,
    OK = KT_FALLBACK_KEY_OK,
    SY = KT_FALLBACK_KEY_SYSTEM,
    DN = KT_FALLBACK_KEY_DENIED,
};
enum { AU = KT_FALLBACK_AVAIL_UNTRIED, AF = KT_FALLBACK_AVAIL_FAILED };

static const row expected[] = {
    /* kind op   fb   A    B    avail */
    /* a customer key unwrapped: nothing else matters */
    {ANY, ANY, ANY, OK, ANY, ANY, KT_FALLBACK_SERVE},
    {ANY, ANY, ANY, ANY, OK, ANY, KT_FALLBACK_SERVE},
    /* one customer key still to ask */
    {ANY, ANY, ANY, UT, ANY, ANY, KT_FALLBACK_TRY_NEXT},
    {ANY, ANY, ANY, ANY, UT, ANY, KT_FALLBACK_TRY_NEXT},
    /* a user: only when both are down, and the workload allows it */
    {U, ANY, 1, SY, SY, AU, KT_FALLBACK_USE_AVAIL},
    /* internal: recover always, other reads when the workload allows it,
     * never a rewrap (roll, assign, migrate) */
    {I, RC, ANY, ANY, ANY, AU, KT_FALLBACK_USE_AVAIL},
    {I, RD, 1, ANY, ANY, AU, KT_FALLBACK_USE_AVAIL},
    /* everything else is refused; revoked when a customer denied */
    {ANY, ANY, ANY, DN, ANY, ANY, KT_FALLBACK_DENY_REVOKED},
    {ANY, ANY, ANY, ANY, DN, ANY, KT_FALLBACK_DENY_REVOKED},
    {ANY, ANY, ANY, ANY, ANY, ANY, KT_FALLBACK_DENY_UNAVAILABLE},
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
            m(r->fb, in->outage_fallback) && m(r->a, (int)in->key_a) &&
            m(r->b, (int)in->key_b) && m(r->avail, (int)in->avail))
            return r;
    }
    return NULL;
}

START_TEST(every_combination_matches_the_table)
{
    bool used[N_ROWS] = {false};
    unsigned n = 0;

    for (int kind = U; kind <= R; kind++)
        for (int op = RD; op <= RW; op++)
            for (int fb = 0; fb <= 1; fb++)
                for (int a = UT; a <= DN; a++)
                    for (int b = UT; b <= DN; b++)
                        for (int av = AU; av <= AF; av++) {
                            kt_fallback_in in = {
                                .kind = (kt_fallback_kind)kind,
                                .op = (kt_fallback_op)op,
                                .outage_fallback = fb,
                                .key_a = (kt_fallback_key)a,
                                .key_b = (kt_fallback_key)b,
                                .avail = (kt_fallback_avail)av,
                            };
                            const row *r = lookup(&in);
                            kt_fallback_verdict got = kt_fallback_decide(&in);
                            ck_assert_ptr_nonnull(r);
                            used[r - expected] = true;
                            ck_assert_msg(
                                got == r->want,
                                "kind %d op %d fallback %d A %d B %d avail "
                                "%d: got %s, want %s (row %td)",
                                kind, op, fb, a, b, av,
                                kt_fallback_verdict_name(got),
                                kt_fallback_verdict_name(r->want),
                                r - expected);
                            ck_assert_int_eq(kt_fallback_revocation_seen(&in),
                                             a == DN || b == DN);
                            n++;
                        }
    ck_assert_uint_eq(n, 3 * 3 * 2 * 4 * 4 * 2);
    for (size_t i = 0; i < N_ROWS; i++)
        ck_assert_msg(used[i], "row %zu decides no combination", i);
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
