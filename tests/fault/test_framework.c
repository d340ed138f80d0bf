/* The fault framework itself (common/kt_fault.h): its hooks are in place
 * in a program linked with libkt-fault, every kind is counted through the
 * module, the armed call fails once and only it, and a disarmed framework
 * fails nothing. A scenario that counts nothing would pass vacuously; these
 * tests keep that from going unnoticed. */
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "harness.h"
#include "kt_fault.h"

START_TEST(test_hooks_installed)
{
    /* SQLite's default VFS is the shim; OpenSSL's and SQLite's allocators
     * are counted (the test program itself is not linked with --wrap). */
    ck_assert_str_eq(sqlite3_vfs_find(NULL)->zName, "kt-fault");
    kt_fault_arm(KT_FAULT_ALLOC, 0);
    OPENSSL_free(OPENSSL_malloc(16));
    sqlite3_free(sqlite3_malloc(16));
    kt_fault_disarm();
    ck_assert_uint_eq(kt_fault_count(KT_FAULT_ALLOC), 2);
    ck_assert(!kt_fault_fired());
}
END_TEST

START_TEST(test_armed_call_fails_once)
{
    kt_fault_arm(KT_FAULT_ALLOC, 2);
    void *a = OPENSSL_malloc(16);
    void *b = OPENSSL_malloc(16);
    void *c = OPENSSL_malloc(16);
    kt_fault_disarm();
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(c);
    ck_assert(kt_fault_fired());
    ck_assert_uint_eq(kt_fault_count(KT_FAULT_ALLOC), 3);
    OPENSSL_free(a);
    OPENSSL_free(c);
    /* Counting again starts from zero with nothing fired. */
    kt_fault_arm(KT_FAULT_ALLOC, 0);
    ck_assert_uint_eq(kt_fault_count(KT_FAULT_ALLOC), 0);
    ck_assert(!kt_fault_fired());
    kt_fault_disarm();
}
END_TEST

static const enum kt_fault_kind kinds[] = {KT_FAULT_ALLOC, KT_FAULT_SQLITE,
                                           KT_FAULT_WRITE, KT_FAULT_FSYNC};
static const char *const kind_names[] = {"alloc", "sqlite", "write", "fsync"};

/* Token creation reaches every kind through the module's wrapped calls and
 * SQLite's VFS. */
START_TEST(test_module_counted)
{
    kt_test_setup();
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        ck_assert_str_eq(kt_fault_kind_name(kinds[i]), kind_names[i]);
    kt_fault_arm(KT_FAULT_ALLOC, 0);
    CK(P->C_Initialize(NULL));
    (void)kt_test_new_token("counted");
    kt_fault_disarm();
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        ck_assert_msg(kt_fault_count(kinds[i]) > 0, "no %s call counted",
                      kt_fault_kind_name(kinds[i]));
    /* Disarmed, nothing is counted and nothing fails. */
    unsigned long writes = kt_fault_count(KT_FAULT_WRITE);
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_token_slot("counted"));
    (void)kt_test_aes_key(s, 32, true, false, "after");
    ck_assert_uint_eq(kt_fault_count(KT_FAULT_WRITE), writes);
    kt_test_teardown();
}
END_TEST

/* Each kind, armed at its first call in C_InitToken, fires; the first
 * SQLite call (the open), write and fsync of a new token cannot be done
 * without, so the call fails (a failed allocation may be recovered from). */
START_TEST(test_module_fails_where_armed)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_free_slot();
    CK_UTF8CHAR label[32];
    memset(label, ' ', sizeof(label));
    memcpy(label, "armed", 5);
    kt_fault_arm(kinds[_i], 1);
    CK_RV rv =
        P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label);
    kt_fault_disarm();
    ck_assert_msg(kt_fault_fired(), "%s: not fired",
                  kt_fault_kind_name(kinds[_i]));
    ck_assert_msg(kinds[_i] == KT_FAULT_ALLOC || rv != CKR_OK,
                  "%s: C_InitToken succeeded", kt_fault_kind_name(kinds[_i]));
    kt_test_teardown();
}
END_TEST

static Suite *framework_suite(void)
{
    Suite *s = suite_create("fault-framework");
    TCase *tc = tcase_create("framework");
    tcase_add_test(tc, test_hooks_installed);
    tcase_add_test(tc, test_armed_call_fails_once);
    tcase_add_test(tc, test_module_counted);
    tcase_add_loop_test(tc, test_module_fails_where_armed, 0,
                        (int)(sizeof(kinds) / sizeof(kinds[0])));
    suite_add_tcase(s, tc);
    return s;
}

KT_TEST_MAIN(framework_suite)
