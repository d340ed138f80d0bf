/* util.c: UUIDs, HKDF (RFC 5869 vector), text checks, bounded copies. */
#include <check.h>
#include <string.h>

#include "kt_lib.h"
#include "testenv.h"

START_TEST(uuid_roundtrip)
{
    uint8_t a[KT_UUID_BYTES], b[KT_UUID_BYTES];
    char s[KEYTIER_ID_SIZE];
    ck_assert(kt_uuid_new(a));
    kt_uuid_format(a, s);
    ck_assert_uint_eq(strlen(s), 36);
    ck_assert_int_eq(s[14], '4'); /* version 4 */
    ck_assert(strchr("89ab", s[19]) != NULL);
    ck_assert(kt_uuid_parse(s, b));
    ck_assert_mem_eq(a, b, KT_UUID_BYTES);
    ck_assert(kt_uuid_parse("00112233-4455-6677-8899-AABBCCDDEEFF", b));
    ck_assert_uint_eq(b[15], 0xff);
    ck_assert(!kt_uuid_parse("00112233-4455-6677-8899-aabbccddeef", b));
    ck_assert(!kt_uuid_parse("00112233-4455-6677-8899-aabbccddeeff0", b));
    ck_assert(!kt_uuid_parse("0011223344-55-6677-8899-aabbccddeeff", b));
    ck_assert(!kt_uuid_parse("00112233-4455-6677-8899-aabbccddeegf", b));
    ck_assert(!kt_uuid_parse(NULL, b));
}
END_TEST

START_TEST(hkdf_rfc5869_case3)
{
    /* RFC 5869 A.3: SHA-256, empty salt, empty info. */
    uint8_t ikm[22], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    static const uint8_t want[42] = {
        0x8d, 0xa4, 0xe7, 0x75, 0xa5, 0x63, 0xc1, 0x8f, 0x71, 0x5f, 0x80,
        0x2a, 0x06, 0x3c, 0x5a, 0x31, 0xb8, 0xa1, 0x1f, 0x5c, 0x5e, 0xe1,
        0x87, 0x9e, 0xc3, 0x45, 0x4e, 0x5f, 0x3c, 0x73, 0x8d, 0x2d, 0x9d,
        0x20, 0x13, 0x95, 0xfa, 0xa4, 0xb6, 0x1a, 0x96, 0xc8};
    kt_secret *k = kt_secret_from(ikm, sizeof ikm);
    ck_assert(kt_hkdf(k, "", 0, okm, sizeof okm));
    ck_assert_mem_eq(okm, want, sizeof want);
    uint8_t other[42];
    ck_assert(kt_hkdf(k, "x", 1, other, sizeof other));
    ck_assert(memcmp(okm, other, sizeof okm) != 0);
    kt_secret_free(k);
    ck_assert_ptr_nonnull(kt_aes256gcm());
}
END_TEST

START_TEST(text_and_copies)
{
    ck_assert(kt_text_ok("a", 1));
    ck_assert(!kt_text_ok("ab", 1));
    ck_assert(!kt_text_ok("", 5));
    ck_assert(!kt_text_ok(NULL, 5));
    char buf[4];
    kt_strlcpy(buf, "abcdef", sizeof buf);
    ck_assert_str_eq(buf, "abc");
    kt_strlcpy(buf, "x", sizeof buf);
    ck_assert_str_eq(buf, "x");
    enum kt_wrap_mech m;
    ck_assert(kt_wrap_mech_parse("rsa-oaep-sha256", &m));
    ck_assert_int_eq(m, KT_WRAP_RSA_OAEP_SHA256);
    ck_assert_str_eq(kt_wrap_mech_name(KT_WRAP_AES_KWP), "aes-key-wrap-pad");
    ck_assert(!kt_wrap_mech_parse("rsa-pkcs1", &m));
    ck_assert_uint_eq(kt_shape_depth(KT_SHAPE_MAIL), 1);
    ck_assert_uint_eq(kt_shape_depth(KT_SHAPE_FILES), 3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_add_test(tc, uuid_roundtrip);
    tcase_add_test(tc, hkdf_rfc5869_case3);
    tcase_add_test(tc, text_and_copies);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
