/* The public API as an application sees it: linked against the shared
 * libkeytier with only lib/include on the include path (so keytier.h
 * needs no PKCS#11 or OpenSSL header), and only keytier_* exported. */
#include <check.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keytier.h"

#ifdef CK_RV
#error "keytier.h must not expose PKCS#11 types"
#endif
#ifdef OPENSSL_VERSION_NUMBER
#error "keytier.h must not expose OpenSSL types"
#endif

START_TEST(errors_through_the_shared_library)
{
    ck_assert_str_eq(keytier_strerror(KEYTIER_E_SAME_TOKEN),
                     "customer keys are in the same token");
    ck_assert_str_eq(keytier_error_name(KEYTIER_E_DEP_LIMIT),
                     "KEYTIER_E_DEP_LIMIT");
    keytier_ctx *ctx = NULL;
    ck_assert_int_eq(keytier_ctx_open("/nonexistent/keytier.conf", &ctx),
                     KEYTIER_E_CONFIG);
    ck_assert_ptr_nonnull(
        strstr(keytier_last_error_detail(), "/nonexistent/keytier.conf"));
    ck_assert_int_eq(keytier_seal(NULL, NULL, 0, "", 0, NULL, 0, NULL),
                     KEYTIER_E_ARGS);
}
END_TEST

START_TEST(only_keytier_symbols_exported)
{
    char cmd[1024];
    const char *lib = getenv("KT_LIBKEYTIER");
    ck_assert_ptr_nonnull(lib);
    snprintf(cmd, sizeof cmd,
             "nm -D --defined-only '%s' | awk '{print $3}' | "
             "grep -v '^keytier_' | grep -c .",
             lib);
    FILE *p = popen(cmd, "r");
    char out[32] = "";
    ck_assert_ptr_nonnull(fgets(out, sizeof out, p));
    pclose(p);
    ck_assert_str_eq(out, "0\n");
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(dlsym(h, "keytier_dep_create"));
    ck_assert_ptr_null(dlsym(h, "kt_dep_key_read"));
    ck_assert_ptr_null(dlsym(h, "kt_p11_unwrap_key"));
    dlclose(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("public");
    TCase *tc = tcase_create("public");
    tcase_add_test(tc, errors_through_the_shared_library);
    tcase_add_test(tc, only_keytier_symbols_exported);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
