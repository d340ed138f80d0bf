/*
 * The CK_RV table (common/ckr.c).  One test per expected class: the class
 * of each code the library decides on is written here independently of the
 * table, and every row the table does not class "system" (the class of an
 * unknown code) must have an expectation here.  Every name round-trips,
 * and every CK_RV p11-kit's pkcs11.h defines has its own name.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ckr_class.h"

typedef struct expect {
    CK_RV rv;
    kt_ckr_class cls;
} expect;

#define D(rv)                                                                  \
    {                                                                          \
        rv, KT_CKR_CLASS_DENIED                                                \
    }
#define S(rv)                                                                  \
    {                                                                          \
        rv, KT_CKR_CLASS_SYSTEM                                                \
    }

static const expect expected[] = {
    {CKR_OK, KT_CKR_CLASS_OK},
    /* denied: key destroyed or not found */
    D(CKR_OBJECT_HANDLE_INVALID),
    D(CKR_KEY_HANDLE_INVALID),
    D(KT_CKR_NO_MATCH),
    D(CKR_KEY_TYPE_INCONSISTENT),
    /* denied: CKA_UNWRAP off */
    D(CKR_KEY_FUNCTION_NOT_PERMITTED),
    /* denied: login refused */
    D(CKR_PIN_INCORRECT),
    D(CKR_PIN_INVALID),
    D(CKR_PIN_LEN_RANGE),
    D(CKR_PIN_EXPIRED),
    D(CKR_PIN_LOCKED),
    D(CKR_USER_PIN_NOT_INITIALIZED),
    /* denied: wrapped blob refused */
    D(CKR_WRAPPED_KEY_INVALID),
    D(CKR_WRAPPED_KEY_LEN_RANGE),
    D(CKR_ENCRYPTED_DATA_INVALID),
    D(CKR_ENCRYPTED_DATA_LEN_RANGE),
    D(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    D(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    D(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    D(KT_CKR_BLOB_REFUSED),
    D(CKR_DATA_INVALID),
    D(CKR_DATA_LEN_RANGE),
    /* denied: the customer restricted the root's mechanisms or templates */
    D(CKR_MECHANISM_INVALID),
    D(CKR_MECHANISM_PARAM_INVALID),
    D(CKR_TEMPLATE_INCONSISTENT),
    D(CKR_ACTION_PROHIBITED),
    D(CKR_ATTRIBUTE_SENSITIVE),
    D(CKR_KEY_UNEXTRACTABLE),
    /* system */
    S(CKR_DEVICE_ERROR),
    S(CKR_DEVICE_MEMORY),
    S(CKR_DEVICE_REMOVED),
    S(CKR_TOKEN_NOT_PRESENT),
    S(CKR_TOKEN_NOT_RECOGNIZED),
    S(CKR_SLOT_ID_INVALID),
    S(CKR_SESSION_HANDLE_INVALID),
    S(CKR_SESSION_CLOSED),
    S(CKR_SESSION_COUNT),
    S(CKR_USER_NOT_LOGGED_IN),
    S(CKR_GENERAL_ERROR),
    S(CKR_FUNCTION_FAILED),
    S(CKR_HOST_MEMORY),
    S(CKR_CRYPTOKI_NOT_INITIALIZED),
    S(CKR_FUNCTION_CANCELED),
    S(CKR_OPERATION_ACTIVE),
    S(KT_CKR_TIMEOUT),
    S(KT_CKR_UNREACHABLE),
    S(KT_CKR_TOKEN_HUNG),
    S(KT_CKR_NOT_STARTED),
};
#define N_EXPECTED (int)(sizeof expected / sizeof expected[0])

/* One test per row (tcase_add_loop_test runs each index separately). */
START_TEST(test_row)
{
    char buf[KT_CKR_NAME_MAX];
    const expect *e = &expected[_i];

    ck_assert_msg(kt_ckr_classify(e->rv) == e->cls, "%s: class %s, want %s",
                  kt_ckr_name(e->rv, buf),
                  kt_ckr_class_name(kt_ckr_classify(e->rv)),
                  kt_ckr_class_name(e->cls));
    /* every expected code has its own name, not the unknown-code form */
    ck_assert_msg(strncmp(kt_ckr_name(e->rv, buf), "CKR_0x", 6) != 0,
                  "row 0x%lx has no name", (unsigned long)e->rv);
}
END_TEST

START_TEST(test_table_matches_expectations)
{
    size_t n;
    const kt_ckr_row *rows = kt_ckr_rows(&n);

    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < N_EXPECTED; j++)
            if (expected[j].rv == rows[i].rv) {
                ck_assert_int_eq(expected[j].cls, rows[i].cls);
                found++;
            }
        /* a row classed "ok" or "denied" is a decision: it is expected */
        ck_assert_msg(found == 1 ||
                          (found == 0 && rows[i].cls == KT_CKR_CLASS_SYSTEM),
                      "row %s (%s) expected %d times", rows[i].name,
                      kt_ckr_class_name(rows[i].cls), found);
    }
    for (int j = 0; j < N_EXPECTED; j++)
        ck_assert_ptr_nonnull(kt_ckr_find(expected[j].rv));
}
END_TEST

/* Each row's name is its own: name -> row -> code -> the same name. */
START_TEST(test_names_round_trip)
{
    char buf[KT_CKR_NAME_MAX];
    size_t n;
    const kt_ckr_row *rows = kt_ckr_rows(&n);

    ck_assert_uint_ge(n, 90);
    for (size_t i = 0; i < n; i++) {
        const kt_ckr_row *by_name = NULL;
        for (size_t j = 0; j < n; j++)
            if (!strcmp(rows[j].name, rows[i].name)) {
                ck_assert_msg(by_name == NULL, "name %s twice", rows[i].name);
                by_name = &rows[j];
            }
        ck_assert_ptr_eq(by_name, &rows[i]);
        ck_assert_ptr_eq(kt_ckr_find(by_name->rv), &rows[i]);
        ck_assert_str_eq(kt_ckr_name(by_name->rv, buf), rows[i].name);
        ck_assert_uint_lt(strlen(rows[i].name), 40);
    }
}
END_TEST

/* Every CKR_ the p11-kit header defines has its own name in the table. */
START_TEST(test_header_codes_named)
{
    static const struct {
        CK_RV rv;
        const char *name;
    } header[] = {
#define X(c) {c, #c},
#include "ckr_header_list.h"
#undef X
    };
    char buf[KT_CKR_NAME_MAX];

    /* pkcs11.h v2.40 defines 95; the list is made from the header */
    ck_assert_uint_ge(sizeof header / sizeof header[0], 90);
    for (size_t i = 0; i < sizeof header / sizeof header[0]; i++)
        ck_assert_str_eq(kt_ckr_name(header[i].rv, buf), header[i].name);
}
END_TEST

/* A generic failure of C_UnwrapKey on a key just served is a refusal of
 * the blob (denied); the same codes elsewhere are outages. */
START_TEST(test_unwrap_outcome)
{
    size_t n;
    const kt_ckr_row *rows = kt_ckr_rows(&n);

    ck_assert_uint_eq(kt_ckr_unwrap_outcome(CKR_GENERAL_ERROR),
                      KT_CKR_BLOB_REFUSED);
    ck_assert_uint_eq(kt_ckr_unwrap_outcome(CKR_FUNCTION_FAILED),
                      KT_CKR_BLOB_REFUSED);
    ck_assert_int_eq(kt_ckr_classify(CKR_GENERAL_ERROR), KT_CKR_CLASS_SYSTEM);
    ck_assert_int_eq(kt_ckr_classify(kt_ckr_unwrap_outcome(CKR_GENERAL_ERROR)),
                     KT_CKR_CLASS_DENIED);
    for (size_t i = 0; i < n; i++)
        if (rows[i].rv != CKR_GENERAL_ERROR &&
            rows[i].rv != CKR_FUNCTION_FAILED)
            ck_assert_uint_eq(kt_ckr_unwrap_outcome(rows[i].rv), rows[i].rv);
    ck_assert_uint_eq(kt_ckr_unwrap_outcome(0x0fffffff), 0x0fffffff);
}
END_TEST

START_TEST(test_unknown_codes_are_system)
{
    char buf[KT_CKR_NAME_MAX];
    const CK_RV unknown[] = {CKR_VENDOR_DEFINED,    CKR_VENDOR_DEFINED | 0x1234,
                             KT_CKR_BASE | 0xff,    0x0fffffff,
                             CKR_SIGNATURE_INVALID, CKR_ARGUMENTS_BAD};

    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_int_eq(kt_ckr_classify(unknown[i]), KT_CKR_CLASS_SYSTEM);
    ck_assert_str_eq(kt_ckr_name(0x0fffffff, buf), "CKR_0x0fffffff");
    ck_assert_str_eq(kt_ckr_name(CKR_PIN_LOCKED, buf), "CKR_PIN_LOCKED");
    ck_assert_str_eq(kt_ckr_name(KT_CKR_TIMEOUT, buf), "timeout");
    ck_assert_str_eq(kt_ckr_class_name(KT_CKR_CLASS_DENIED), "denied");
    ck_assert_str_eq(kt_ckr_class_name(KT_CKR_CLASS_SYSTEM), "system");
}
END_TEST

/* Library-side failures map onto the table's classes. */
START_TEST(test_from_err)
{
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_OK, CKR_OK), CKR_OK);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_LOGIN, CKR_PIN_INCORRECT),
                      CKR_PIN_INCORRECT);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_KEY_NOT_FOUND, CKR_OK),
                      KT_CKR_NO_MATCH);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_KEY_USAGE, CKR_OK),
                      CKR_KEY_FUNCTION_NOT_PERMITTED);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_AUTH, CKR_OK),
                      CKR_WRAPPED_KEY_INVALID);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_TOKEN_NOT_FOUND, CKR_OK),
                      KT_CKR_UNREACHABLE);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_MODULE, CKR_OK),
                      KT_CKR_UNREACHABLE);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_UNAVAILABLE, CKR_OK),
                      KT_CKR_UNREACHABLE);
    ck_assert_uint_eq(kt_ckr_from_err(KEYTIER_E_STORE, CKR_OK),
                      CKR_GENERAL_ERROR);
    ck_assert_int_eq(kt_ckr_classify(kt_ckr_from_err(KEYTIER_E_KEY_USAGE, 0)),
                     KT_CKR_CLASS_DENIED);
    ck_assert_int_eq(kt_ckr_classify(kt_ckr_from_err(KEYTIER_E_PIN, 0)),
                     KT_CKR_CLASS_SYSTEM);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ckr_class");
    TCase *rows = tcase_create("rows");
    TCase *table = tcase_create("table");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(rows, test_row, 0, N_EXPECTED);
    tcase_add_test(table, test_table_matches_expectations);
    tcase_add_test(table, test_names_round_trip);
    tcase_add_test(table, test_header_codes_named);
    tcase_add_test(table, test_unwrap_outcome);
    tcase_add_test(table, test_unknown_codes_are_system);
    tcase_add_test(table, test_from_err);
    suite_add_tcase(s, rows);
    suite_add_tcase(s, table);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
