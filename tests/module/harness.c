#include "harness.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

CK_FUNCTION_LIST_PTR P;
char kt_test_dir[256];
char kt_test_log[300];
static void *module_handle;

bool kt_test_is_softhsm(void)
{
    const char *m = getenv("KT_MODULE");
    return m != NULL && strstr(m, "softhsm") != NULL;
}

void kt_test_write_config(const char *extra)
{
    char path[300];
    FILE *fp;
    if (kt_test_is_softhsm()) {
        snprintf(path, sizeof(path), "%s/softhsm2.conf", kt_test_dir);
        fp = fopen(path, "w");
        ck_assert_ptr_nonnull(fp);
        fprintf(fp,
                "directories.tokendir = %s/tokens\nobjectstore.backend = "
                "file\nlog.level = ERROR\n",
                kt_test_dir);
        fclose(fp);
        setenv("SOFTHSM2_CONF", path, 1);
        return;
    }
    snprintf(path, sizeof(path), "%s/keytier.conf", kt_test_dir);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    /* A key may be given once: one that extra sets is left out of the
     * base lines (a comment keeps the line numbers); log_target in extra
     * replaces the base's log_file. */
    char base[5][400];
    snprintf(base[0], sizeof(base[0]), "token_dir = %s/tokens", kt_test_dir);
    snprintf(base[1], sizeof(base[1]), "log_file = %s", kt_test_log);
    snprintf(base[2], sizeof(base[2]), "pin_kdf_cost = 10");
    snprintf(base[3], sizeof(base[3]), "pin_max_retries = 3");
    snprintf(base[4], sizeof(base[4]), "log_level = info");
    for (size_t i = 0; i < 5; i++) {
        size_t klen = strcspn(base[i], " ");
        bool given = false;
        for (const char *l = extra; l != NULL && *l != '\0';) {
            if (strncmp(l, base[i], klen) == 0 &&
                (l[klen] == ' ' || l[klen] == '='))
                given = true;
            if (i == 1 && strncmp(l, "log_target", 10) == 0)
                given = true;
            l = strchr(l, '\n');
            l = l != NULL ? l + 1 : NULL;
        }
        fprintf(fp, "%s%s\n", given ? "# set below: " : "", base[i]);
    }
    fputs(extra != NULL ? extra : "", fp);
    fclose(fp);
    setenv("KEYTIER_CONF", path, 1);
}

void kt_test_setup(void)
{
    kt_test_setup_with(NULL);
}

void kt_test_setup_with(const char *extra)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(kt_test_dir, sizeof(kt_test_dir), "%s/kt-module-XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(kt_test_dir));
    snprintf(kt_test_log, sizeof(kt_test_log), "%s/module.log", kt_test_dir);
    char tokens[300];
    snprintf(tokens, sizeof(tokens), "%s/tokens", kt_test_dir);
    ck_assert_int_eq(mkdir(tokens, 0700), 0);
    kt_test_write_config(extra);
    const char *mod = getenv("KT_MODULE");
    ck_assert_msg(mod != NULL, "KT_MODULE not set");
    module_handle = dlopen(mod, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(module_handle != NULL, "dlopen: %s", dlerror());
    CK_C_GetFunctionList gfl =
        (CK_C_GetFunctionList)dlsym(module_handle, "C_GetFunctionList");
    ck_assert_ptr_nonnull(gfl);
    CK(gfl(&P));
}

void kt_test_teardown(void)
{
    if (P != NULL)
        P->C_Finalize(NULL);
    /* The module stays mapped: libcheck runs each test in its own
     * process. */
    kt_test_sh("rm -rf '%s'", kt_test_dir);
}

int kt_test_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

CK_SLOT_ID kt_test_free_slot(void)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK(P->C_GetSlotList(CK_TRUE, slots, &n));
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK(P->C_GetTokenInfo(slots[i], &ti));
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            return slots[i];
    }
    ck_abort_msg("no free slot");
    return 0;
}

static void pad_label(CK_UTF8CHAR out[32], const char *label)
{
    memset(out, ' ', 32);
    memcpy(out, label, strlen(label));
}

CK_SLOT_ID kt_test_token_slot(const char *label)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_UTF8CHAR want[32];
    pad_label(want, label);
    CK(P->C_GetSlotList(CK_TRUE, slots, &n));
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK(P->C_GetTokenInfo(slots[i], &ti));
        if ((ti.flags & CKF_TOKEN_INITIALIZED) &&
            memcmp(ti.label, want, 32) == 0)
            return slots[i];
    }
    ck_abort_msg("no token %s", label);
    return 0;
}

CK_SLOT_ID kt_test_new_token(const char *label)
{
    CK_UTF8CHAR lbl[32];
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot = kt_test_free_slot();
    pad_label(lbl, label);
    CK(P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), lbl));
    if (kt_test_is_softhsm())
        slot = kt_test_token_slot(label); /* SoftHSM2 moves the token */
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    CK(P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK(P->C_InitPIN(s, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Logout(s));
    CK(P->C_CloseSession(s));
    return slot;
}

CK_SESSION_HANDLE kt_test_user_session(CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    CK_RV rv =
        P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
    ck_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
    return s;
}

/* A key has one role: encrypt/decrypt or wrap/unwrap (SECURITY.md). */
static CK_OBJECT_HANDLE aes_key(CK_SESSION_HANDLE s, CK_ULONG len, bool token,
                                bool extractable, const char *label, bool wrap)
{
    CK_BBOOL tok = token, ext = extractable, sens = !extractable;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &tok, sizeof(tok)},
        {CKA_EXTRACTABLE, &ext, sizeof(ext)},
        {CKA_SENSITIVE, &sens, sizeof(sens)},
        {wrap ? CKA_WRAP : CKA_ENCRYPT, &yes, sizeof(yes)},
        {wrap ? CKA_UNWRAP : CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    CK(P->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]), &k));
    return k;
}

CK_OBJECT_HANDLE kt_test_aes_key(CK_SESSION_HANDLE s, CK_ULONG len, bool token,
                                 bool extractable, const char *label)
{
    return aes_key(s, len, token, extractable, label, false);
}

CK_OBJECT_HANDLE kt_test_wrap_key(CK_SESSION_HANDLE s, CK_ULONG len, bool token,
                                  bool extractable, const char *label)
{
    return aes_key(s, len, token, extractable, label, true);
}

bool kt_test_log_contains(const char *needle)
{
    FILE *fp = fopen(kt_test_log, "r");
    char line[2048];
    bool found = false;
    if (fp == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

void kt_test_token_db_path(char *out, size_t len)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "ls %s/tokens/*.db", kt_test_dir);
    FILE *fp = popen(cmd, "r");
    ck_assert_ptr_nonnull(fp);
    ck_assert_ptr_nonnull(fgets(out, (int)len, fp));
    out[strcspn(out, "\n")] = '\0';
    pclose(fp);
}
