/* Test harness for the module suite: the module under test comes from
 * KT_MODULE (keytier by default; SoftHSM2 where behaviour is standard). */
#ifndef KT_TEST_HARNESS_H
#define KT_TEST_HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <p11-kit/pkcs11.h>

#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif

#define SO_PIN   "so-secret"
#define USER_PIN "user-secret"

extern CK_FUNCTION_LIST_PTR P;
extern char kt_test_dir[256];
extern char kt_test_log[300];

/* Each test: a fresh temp dir with a config, the module loaded. */
void kt_test_setup(void);
/* kt_test_setup with extra configuration lines in place when the module is
 * loaded (keys read at load: secure_heap_size). */
void kt_test_setup_with(const char *extra);
void kt_test_teardown(void);
/* Writes the config with extra lines appended. */
void kt_test_write_config(const char *extra);
bool kt_test_is_softhsm(void);
/* C_Initialize + C_InitToken on the free slot + user PIN; returns the slot
 * of the new token. */
CK_SLOT_ID kt_test_new_token(const char *label);
/* Slot of the first initialised token, or of a token with this label. */
CK_SLOT_ID kt_test_token_slot(const char *label);
CK_SLOT_ID kt_test_free_slot(void);
/* RW session logged in as the user. */
CK_SESSION_HANDLE kt_test_user_session(CK_SLOT_ID slot);
/* An AES key for encrypt/decrypt (kt_test_aes_key) or wrap/unwrap
 * (kt_test_wrap_key): one key never has both roles. */
CK_OBJECT_HANDLE kt_test_aes_key(CK_SESSION_HANDLE s, CK_ULONG len, bool token,
                                 bool extractable, const char *label);
CK_OBJECT_HANDLE kt_test_wrap_key(CK_SESSION_HANDLE s, CK_ULONG len, bool token,
                                  bool extractable, const char *label);
bool kt_test_log_contains(const char *needle);
/* The path of the only token database (keytier: tokens/<serial>.db) in the
 * test's token directory. */
void kt_test_token_db_path(char *out, size_t len);
/* Runs a shell command (for tamper edits with sqlite3). */
int kt_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CK(call)                                                               \
    do {                                                                       \
        CK_RV ck_rv_ = (call);                                                 \
        ck_assert_msg(ck_rv_ == CKR_OK, "%s failed: 0x%lx", #call,             \
                      (unsigned long)ck_rv_);                                  \
    } while (0)
#define RV(expect, call)                                                       \
    do {                                                                       \
        CK_RV rv_ = (call);                                                    \
        ck_assert_msg(rv_ == (CK_RV)(expect), "%s: got 0x%lx want %s (0x%lx)", \
                      #call, (unsigned long)rv_, #expect,                      \
                      (unsigned long)(expect));                                \
    } while (0)

#define KT_TEST_MAIN(suite_fn)                                                 \
    int main(void)                                                             \
    {                                                                          \
        SRunner *sr = srunner_create(suite_fn());                              \
        srunner_run_all(sr, CK_NORMAL);                                        \
        int failed = srunner_ntests_failed(sr);                                \
        srunner_free(sr);                                                      \
        return failed == 0 ? 0 : 1;                                            \
    }
#endif
