/* Attacks on key material in the memory of a process using the module: a
 * core dump (a crash report, `gcore`, an abort) is a file anyone who can
 * read it can search for keys. Each test forks a process that loads the
 * module, logs in, imports a known AES-256 key, wipes its own copies of the
 * bytes, and aborts with RLIMIT_CORE unlimited in a directory of its own;
 * the kernel writes `core` there (kernel.core_pattern is read first) and
 * the test searches it for the key bytes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "sec.h"

#define LABEL "memory"

/* The key the child imports; the parent keeps its copy to search with. */
static unsigned char key[32];

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token(LABEL);
    (void)slot;
    CK(P->C_Finalize(NULL));
    ck_assert_int_eq(RAND_bytes(key, sizeof(key)), 1);
}

/* NULL when cores land in files the test can search; otherwise why not. */
static const char *core_unsearchable(void)
{
    static char why[400];
    char pat[256] = "";
    FILE *fp = fopen("/proc/sys/kernel/core_pattern", "r");
    if (fp == NULL)
        return "cannot read /proc/sys/kernel/core_pattern";
    if (fgets(pat, sizeof(pat), fp) == NULL)
        pat[0] = '\0';
    fclose(fp);
    pat[strcspn(pat, "\n")] = '\0';
    if (pat[0] == '|') {
        snprintf(why, sizeof(why),
                 "kernel.core_pattern is a pipe (%s): cores go to that "
                 "program, not to a file this test can search",
                 pat);
        return why;
    }
    return NULL;
}

enum child_mode {
    KEY_IN_USE,   /* the key imported and used (C_Encrypt): cipher context */
    KEY_UNSEALED, /* the key imported and unsealed, no cipher context */
    CONTROL,      /* KEY_UNSEALED, and the bytes planted in ordinary memory */
};

static CK_SLOT_ID find_token(void)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_UTF8CHAR want[32];
    memset(want, ' ', sizeof(want));
    memcpy(want, LABEL, strlen(LABEL));
    if (P->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        _exit(3);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (P->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            memcmp(ti.label, want, 32) == 0)
            return slots[i];
    }
    _exit(3);
}

/* The child: never returns (aborts, or exits 3 when a call fails). */
static void child(enum child_mode mode)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) != 0)
        _exit(3);
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        _exit(3);
    CK_SESSION_HANDLE s;
    if (P->C_Initialize(NULL) != CKR_OK)
        _exit(3);
    CK_SLOT_ID slot = find_token();
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                         &s) != CKR_OK ||
        P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)) !=
            CKR_OK)
        _exit(3);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, key, sizeof(key)},      {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},   {CKA_DECRYPT, &yes, sizeof(yes)},
    };
    CK_OBJECT_HANDLE k;
    if (P->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]), &k) != CKR_OK)
        _exit(3);
    if (mode == CONTROL) {
        unsigned char *planted = malloc(sizeof(key));
        if (planted == NULL)
            _exit(3);
        memcpy(planted, key, sizeof(key));
        /* The compiler must not drop the copy as a dead store. */
        __asm__ volatile("" : : "r"(planted) : "memory");
    }
    /* Every copy of the bytes this process made is gone: what the core
     * holds is the module's. */
    OPENSSL_cleanse(key, sizeof(key));
    if (mode == KEY_IN_USE) {
        unsigned char in[16] = {0}, out[16];
        CK_ULONG n = sizeof(out);
        CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
        if (P->C_EncryptInit(s, &ecb, k) != CKR_OK ||
            P->C_Encrypt(s, in, sizeof(in), out, &n) != CKR_OK)
            _exit(3);
        /* A second operation stays initialised: a live cipher context. */
        if (P->C_EncryptInit(s, &ecb, k) != CKR_OK)
            _exit(3);
    }
    abort();
}

struct crash {
    bool core;      /* the kernel wrote a core file */
    bool found;     /* it holds the key bytes */
    size_t size;    /* its size */
    char path[400]; /* the child's directory */
};

static bool file_has_key(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY);
    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    *size = (size_t)st.st_size;
    bool found = false;
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        ck_assert(m != MAP_FAILED);
        found = memmem(m, (size_t)st.st_size, key, sizeof(key)) != NULL;
        munmap(m, (size_t)st.st_size);
    }
    close(fd);
    return found;
}

static struct crash crash_child(enum child_mode mode, const char *config)
{
    struct crash c;
    memset(&c, 0, sizeof(c));
    snprintf(c.path, sizeof(c.path), "%s/crash-%d", kt_test_dir, (int)mode);
    ck_assert_int_eq(mkdir(c.path, 0700), 0);
    kt_test_write_config(config);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (chdir(c.path) != 0)
            _exit(3);
        child(mode);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
                  "the child did not abort (status 0x%x: a PKCS#11 call "
                  "failed)",
                  st);
    DIR *d = opendir(c.path);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "core", 4) != 0)
            continue;
        char f[700];
        snprintf(f, sizeof(f), "%s/%s", c.path, e->d_name);
        c.core = true;
        c.found = c.found || file_has_key(f, &c.size);
        unlink(f);
    }
    closedir(d);
    return c;
}

static void report(const char *test, const struct crash *c)
{
    size_t n = strlen(test);
    if (n > 3 && strcmp(test + n - 3, "_fn") == 0)
        n -= 3;
    printf("%s: %.*s: core %s (%zu bytes), key bytes %s\n",
           kt_test_is_softhsm() ? "softhsm2" : "keytier", (int)n, test,
           c->core ? "written" : "not written", c->size,
           c->found ? "FOUND" : "not found");
    fflush(stdout);
}

/* Default configuration: a process logged in with a key in use aborts.
 * Either no core is written (non-dumpable while logged in) or it holds no
 * copy of the key. */
START_TEST(test_core_of_logged_in_process_holds_no_key)
{
    const char *why = core_unsearchable();
    if (why != NULL) {
        /* On keytier an unsearchable core is a failure, never a pass: the
         * property would go untested. */
        if (!kt_test_is_softhsm())
            ck_abort_msg("%s; set kernel.core_pattern = core to run this "
                         "test",
                         why);
        SEC_NA(why);
        return;
    }
    struct crash c = crash_child(KEY_IN_USE, NULL);
    report(__func__, &c);
    SEC_REFUSED(!c.found, "the core of a logged-in process that used an AES "
                          "key holds the key bytes");
}
END_TEST

/* allow_core_dumps = yes: the core is written; with the key unsealed but
 * no cipher context on it, the core still holds no copy of the key (key
 * material lives in the secure heap, left out of dumps). */
START_TEST(test_core_with_dumps_allowed_holds_no_unsealed_key)
{
    const char *why = core_unsearchable();
    if (why != NULL) {
        /* On keytier an unsearchable core is a failure, never a pass: the
         * property would go untested. */
        if (!kt_test_is_softhsm())
            ck_abort_msg("%s; set kernel.core_pattern = core to run this "
                         "test",
                         why);
        SEC_NA(why);
        return;
    }
    struct crash c = crash_child(KEY_UNSEALED, "allow_core_dumps = yes\n");
    report(__func__, &c);
    if (!kt_test_is_softhsm())
        ck_assert_msg(c.core, "allow_core_dumps = yes: no core was written");
    SEC_REFUSED(c.core && !c.found,
                "the core of a logged-in process holds an unsealed key "
                "(no cipher context on it)");
}
END_TEST

/* The control: the same child plants the bytes in ordinary heap memory;
 * the search must find them, or the tests above prove nothing. */
START_TEST(test_core_search_finds_planted_key)
{
    const char *why = core_unsearchable();
    if (why != NULL) {
        /* On keytier an unsearchable core is a failure, never a pass: the
         * property would go untested. */
        if (!kt_test_is_softhsm())
            ck_abort_msg("%s; set kernel.core_pattern = core to run this "
                         "test",
                         why);
        SEC_NA(why);
        return;
    }
    struct crash c = crash_child(CONTROL, "allow_core_dumps = yes\n");
    report(__func__, &c);
    ck_assert_msg(c.core, "no core was written");
    ck_assert_msg(c.found, "the key bytes planted in ordinary memory were not "
                           "found in the core: the search is broken");
}
END_TEST

/* The non-dumpable guard: on while a token is logged in, the process's
 * earlier value back at the last logout, at C_Finalize, and in a fork
 * child (which drops the parent's keys). */
START_TEST(test_dumpable_follows_login)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("SoftHSM2 does not change the process's dumpable flag");
        return;
    }
    ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_token_slot(LABEL);
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 ? 0 : 1);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "a fork child stays non-dumpable");
    CK(P->C_Logout(s));
    ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
    CK(P->C_Finalize(NULL));
    ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
    /* allow_core_dumps = yes leaves it alone. */
    kt_test_write_config("allow_core_dumps = yes\n");
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(slot);
    ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
    CK(P->C_Finalize(NULL));
}
END_TEST

static Suite *memory_suite(void)
{
    Suite *su = suite_create("sec-memory");
    TCase *tc = tcase_create("memory");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_core_of_logged_in_process_holds_no_key);
    tcase_add_test(tc, test_core_with_dumps_allowed_holds_no_unsealed_key);
    tcase_add_test(tc, test_core_search_finds_planted_key);
    tcase_add_test(tc, test_dumpable_follows_login);
    suite_add_tcase(su, tc);
    return su;
}
KT_TEST_MAIN(memory_suite)
