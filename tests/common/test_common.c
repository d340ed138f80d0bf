/*
 * common/: blank-padded PKCS#11 strings and wiping.  (The CK_RV table is
 * tested with the classes it decides on: tests/lib/base/test_ckr_class.c.)
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "p11str.h"
#include "wipe.h"

START_TEST(pad_fills_with_blanks_and_cuts)
{
    CK_UTF8CHAR label[32];
    CK_UTF8CHAR small[4];

    memset(label, 0, sizeof label);
    kt_p11str_pad(label, "VaultA", sizeof label);
    ck_assert_int_eq(memcmp(label, "VaultA", 6), 0);
    for (size_t i = 6; i < sizeof label; i++)
        ck_assert_int_eq(label[i], ' ');
    /* no NUL is written: the field is exactly n bytes */
    memset(small, 'x', sizeof small);
    kt_p11str_pad(small, "keytier", sizeof small);
    ck_assert_int_eq(memcmp(small, "keyt", 4), 0);
    kt_p11str_pad(small, "", sizeof small);
    ck_assert_int_eq(memcmp(small, "    ", 4), 0);
}
END_TEST

START_TEST(trim_drops_trailing_blanks_and_nuls)
{
    CK_UTF8CHAR label[32];
    char out[33];

    kt_p11str_pad(label, "Vault A", sizeof label);
    kt_p11str_trim(out, label, sizeof label);
    ck_assert_str_eq(out, "Vault A"); /* inner blank kept */
    memset(label, 0, sizeof label);
    memcpy(label, "svc  ", 5);
    kt_p11str_trim(out, label, sizeof label);
    ck_assert_str_eq(out, "svc");
    memset(label, ' ', sizeof label);
    kt_p11str_trim(out, label, sizeof label);
    ck_assert_str_eq(out, "");
    memset(label, 'a', sizeof label);
    kt_p11str_trim(out, label, sizeof label);
    ck_assert_uint_eq(strlen(out), 32);
}
END_TEST

START_TEST(wipe_zeroes)
{
    unsigned char buf[64];

    memset(buf, 0xa5, sizeof buf);
    kt_wipe(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_int_eq(buf[i], 0);
    kt_wipe(NULL, 16); /* NULL is allowed */
    kt_wipe(buf, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("common");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, pad_fills_with_blanks_and_cuts);
    tcase_add_test(tc, trim_drops_trailing_blanks_and_nuls);
    tcase_add_test(tc, wipe_zeroes);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
