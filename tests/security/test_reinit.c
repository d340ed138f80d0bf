/* Attacks through C_InitToken on a token another process is using. Each
 * test forks a second process (before either initialises the module) that
 * logs in, keeps a token key and an encryption under way, and answers the
 * test process's questions through a pipe; the test process then
 * re-initialises the token. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sec.h"

#define OLD_LABEL "reinit"
#define NEW_LABEL "renewed"
#define KEY_LABEL "old-key"

static CK_SLOT_ID slot;

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID sl = kt_test_new_token(OLD_LABEL);
    (void)sl;
    CK(P->C_Finalize(NULL));
}

/* ---- the other process ------------------------------------------------ */

struct other {
    pid_t pid;
    int cmd; /* test -> other */
    int res; /* other -> test */
};

static CK_SESSION_HANDLE s1, s2;
static const unsigned char block[16] = "sixteen bytes...";

static void put(int fd, char c)
{
    while (write(fd, &c, 1) < 0 && errno == EINTR)
        ;
}

static char get(int fd)
{
    char c = 0;
    ssize_t r;
    while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
        ;
    return r == 1 ? c : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool find_slot(const char *label, CK_SLOT_ID *out)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_UTF8CHAR want[32];
    memset(want, ' ', sizeof(want));
    memcpy(want, label, strlen(label));
    if (P->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return false;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (P->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            (ti.flags & CKF_TOKEN_INITIALIZED) &&
            memcmp(ti.label, want, 32) == 0) {
            *out = slots[i];
            return true;
        }
    }
    return false;
}

static CK_ULONG count_keys(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE q[] = {{CKA_LABEL, (void *)KEY_LABEL, strlen(KEY_LABEL)}};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    if (P->C_FindObjectsInit(s, q, 1) != CKR_OK)
        return 99;
    if (P->C_FindObjects(s, h, 4, &n) != CKR_OK)
        n = 99;
    (void)P->C_FindObjectsFinal(s);
    return n;
}

static CK_RV encrypt_more(void)
{
    unsigned char out[32];
    CK_ULONG n = sizeof(out);
    return P->C_EncryptUpdate(s1, (CK_BYTE_PTR)block, sizeof(block), out, &n);
}

/* Logged in on the token, a public token AES key, an encryption under way
 * on s1 and a second session s2. */
static bool other_start(CK_SLOT_ID *sl)
{
    if (P->C_Initialize(NULL) != CKR_OK || !find_slot(OLD_LABEL, sl))
        return false;
    if (P->C_OpenSession(*sl, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                         &s1) != CKR_OK ||
        P->C_OpenSession(*sl, CKF_SERIAL_SESSION, NULL, NULL, &s2) != CKR_OK ||
        P->C_Login(s1, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)) !=
            CKR_OK)
        return false;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    unsigned char value[32];
    memset(value, 0x77, sizeof(value));
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, value, sizeof(value)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)KEY_LABEL, strlen(KEY_LABEL)},
    };
    CK_OBJECT_HANDLE k;
    unsigned char iv[16] = {0};
    CK_MECHANISM cbc = {CKM_AES_CBC, iv, sizeof(iv)};
    return P->C_CreateObject(s1, t, sizeof(t) / sizeof(t[0]), &k) == CKR_OK &&
           P->C_EncryptInit(s1, &cbc, k) == CKR_OK && encrypt_more() == CKR_OK;
}

/* Still logged in, the key still found, the encryption still going. */
static bool other_intact(void)
{
    CK_SESSION_INFO si;
    return P->C_GetSessionInfo(s1, &si) == CKR_OK &&
           si.state == CKS_RW_USER_FUNCTIONS && count_keys(s2) == 1 &&
           encrypt_more() == CKR_OK;
}

/* A new session sees the new token: its label, no old key, no user PIN. */
static bool other_sees_new_token(void)
{
    CK_SLOT_ID sl;
    CK_SESSION_HANDLE s;
    if (!find_slot(NEW_LABEL, &sl) ||
        P->C_OpenSession(sl, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return false;
    CK_SESSION_INFO si;
    bool ok = P->C_GetSessionInfo(s, &si) == CKR_OK &&
              si.state == CKS_RO_PUBLIC_SESSION && count_keys(s) == 0 &&
              P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN,
                         strlen(USER_PIN)) == CKR_USER_PIN_NOT_INITIALIZED;
    (void)P->C_CloseSession(s);
    return ok;
}

/* The encryption under way ends (within the module's re-check period) and
 * the old sessions are gone. */
static bool other_encryption_ended(void)
{
    CK_RV rv = CKR_OK;
    for (int i = 0; i < 50 && rv == CKR_OK; i++) {
        rv = encrypt_more();
        if (rv == CKR_OK)
            sleep_ms(100);
    }
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

static bool other_sessions_closed(void)
{
    CK_SESSION_INFO si;
    return P->C_GetSessionInfo(s1, &si) == CKR_SESSION_HANDLE_INVALID &&
           P->C_GetSessionInfo(s2, &si) == CKR_SESSION_HANDLE_INVALID;
}

/* A first session opened while the token's lock is held exclusively (a
 * re-initialisation under way) waits for it, then opens. */
static bool other_open_waits(CK_SLOT_ID sl)
{
    struct timespec a, b;
    CK_SESSION_HANDLE s;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CK_RV rv = P->C_OpenSession(sl, CKF_SERIAL_SESSION, NULL, NULL, &s);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    if (rv == CKR_OK)
        (void)P->C_CloseSession(s);
    return rv == CKR_OK && ms >= 900;
}

/* A fork child of the other process uses the module on its own (its
 * inherited state dropped) and exits: the other process's lock must
 * survive it. */
static bool other_fork_child_uses_token(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        CK_SLOT_ID sl;
        CK_SESSION_HANDLE s;
        bool ok =
            P->C_Initialize(NULL) == CKR_OK && find_slot(OLD_LABEL, &sl) &&
            P->C_OpenSession(sl, CKF_SERIAL_SESSION, NULL, NULL, &s) ==
                CKR_OK &&
            P->C_CloseSession(s) == CKR_OK && P->C_Finalize(NULL) == CKR_OK;
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void other_main(int cmd, int res)
{
    CK_SLOT_ID sl = 0;
    put(res, other_start(&sl) ? 'R' : 'E');
    for (;;) {
        char c = get(cmd);
        switch (c) {
        case 'C':
            put(res, other_intact() ? '1' : '0');
            break;
        case 'Q':
            (void)P->C_CloseAllSessions(sl);
            put(res, 'D');
            break;
        case 'N':
            put(res, other_sees_new_token() ? '1' : '0');
            break;
        case 'O':
            put(res, other_open_waits(sl) ? '1' : '0');
            break;
        case 'F':
            put(res, other_fork_child_uses_token() ? '1' : '0');
            break;
        case 'U':
            put(res, other_encryption_ended() ? '1' : '0');
            put(res, other_sessions_closed() ? '1' : '0');
            put(res, other_sees_new_token() ? '1' : '0');
            break;
        default:
            (void)P->C_Finalize(NULL);
            _exit(0);
        }
    }
}

/* Forked before this process initialises the module again. */
static struct other other_spawn(void)
{
    int a[2], b[2];
    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    struct other o;
    o.pid = fork();
    ck_assert_int_ge(o.pid, 0);
    if (o.pid == 0) {
        close(a[1]);
        close(b[0]);
        other_main(a[0], b[1]);
        _exit(0);
    }
    close(a[0]);
    close(b[1]);
    o.cmd = a[1];
    o.res = b[0];
    ck_assert_msg(get(o.res) == 'R', "the other process could not start");
    return o;
}

static void other_end(struct other *o)
{
    put(o->cmd, 'X');
    int st = 0;
    waitpid(o->pid, &st, 0);
    close(o->cmd);
    close(o->res);
}

static char ask(struct other *o, char c)
{
    put(o->cmd, c);
    return get(o->res);
}

static CK_RV init_token(const char *label)
{
    CK_UTF8CHAR lbl[32];
    memset(lbl, ' ', sizeof(lbl));
    memcpy(lbl, label, strlen(label));
    return P->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), lbl);
}

/* C_InitToken while another process has a logged-in session with a key and
 * an encryption under way: refused with CKR_SESSION_EXISTS, and the other
 * process keeps its login, key and operation. Once it closes its sessions,
 * the re-initialisation goes through and it sees the new token. */
START_TEST(test_init_token_refused_while_other_process_has_sessions)
{
    struct other o = other_spawn();
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot(OLD_LABEL);
    CK_RV rv = init_token(NEW_LABEL);
    SEC_REFUSED(rv == CKR_SESSION_EXISTS,
                "C_InitToken succeeded while another process had a "
                "logged-in session on the token");
    SEC_REFUSED(ask(&o, 'C') == '1',
                "the other process lost its login, its key or its "
                "encryption under way to a C_InitToken");
    ck_assert_int_eq(ask(&o, 'Q'), 'D');
    if (rv != CKR_OK)
        CK(init_token(NEW_LABEL));
    char seen = ask(&o, 'N');
    if (kt_test_is_softhsm())
        printf("softhsm2: after the other process closed its sessions and "
               "the token was re-initialised, it %s the new token\n",
               seen == '1' ? "sees" : "does not see");
    else
        ck_assert_msg(seen == '1', "the other process does not see the new "
                                   "token (label, no old key, no user PIN)");
    other_end(&o);
}
END_TEST

/* The lock bypassed (its file deleted: the other process still holds its
 * lock on the old inode), the re-initialisation goes through; the other
 * process must notice the new token at its next synchronisation: its
 * sessions are closed, its encryption under way on a key of the destroyed
 * token ends, and it sees the new token. */
START_TEST(test_reinit_with_lock_bypassed_closes_other_sessions)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("SoftHSM2 has no cross-process lock to bypass (the refusal "
               "itself is test_init_token_refused_while_other_process_has_"
               "sessions)");
        return;
    }
    struct other o = other_spawn();
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot(OLD_LABEL);
    kt_test_sh("rm -f '%s'/tokens/*.lock", kt_test_dir);
    CK(init_token(NEW_LABEL));
    put(o.cmd, 'U');
    char ended = get(o.res), closed = get(o.res), seen = get(o.res);
    SEC_REFUSED(ended == '1',
                "an encryption under way in another process, on a key of the "
                "token that was re-initialised, kept returning data");
    SEC_REFUSED(closed == '1', "the other process's sessions on the "
                               "re-initialised token stayed open");
    ck_assert_msg(seen == '1', "the other process does not see the new token "
                               "(label, no old key, no user PIN)");
    ck_assert(kt_test_log_contains("re-initialised by another process"));
    other_end(&o);
}
END_TEST

/* A session opened in another process while a re-initialisation holds the
 * lock waits for it to end (it never sees a token half re-initialised). */
START_TEST(test_session_open_waits_for_reinit)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("SoftHSM2 keeps no lock file");
        return;
    }
    struct other o = other_spawn();
    ck_assert_int_eq(ask(&o, 'Q'), 'D');
    char pattern[300];
    snprintf(pattern, sizeof(pattern), "%s/tokens/*.lock", kt_test_dir);
    glob_t g;
    ck_assert_int_eq(glob(pattern, 0, NULL, &g), 0);
    ck_assert_uint_eq(g.gl_pathc, 1);
    int fd = open(g.gl_pathv[0], O_RDWR | O_CLOEXEC);
    globfree(&g);
    ck_assert_int_ge(fd, 0);
    /* What C_InitToken holds while it runs. */
    ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    put(o.cmd, 'O');
    sleep_ms(1500);
    close(fd);
    ck_assert_msg(get(o.res) == '1', "the session did not wait for the "
                                     "re-initialisation to end");
    other_end(&o);
}
END_TEST

/* The other process forks a child that uses the token and exits: the
 * child must not take the parent's lock with it (it closes the inherited
 * descriptor, never LOCK_UN), so C_InitToken is still refused. */
START_TEST(test_fork_child_keeps_other_process_lock)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("SoftHSM2 has no cross-process lock (see "
               "test_init_token_refused_while_other_process_has_sessions)");
        return;
    }
    struct other o = other_spawn();
    ck_assert_int_eq(ask(&o, 'F'), '1');
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot(OLD_LABEL);
    SEC_REFUSED(init_token(NEW_LABEL) == CKR_SESSION_EXISTS,
                "C_InitToken succeeded after a fork child of the process "
                "holding sessions exited (the child released the lock)");
    ck_assert_int_eq(ask(&o, 'C'), '1');
    other_end(&o);
}
END_TEST

/* The lock file: 0600, in token_dir, named after the serial. */
START_TEST(test_lock_file_mode)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("SoftHSM2 keeps no lock file");
        return;
    }
    struct other o = other_spawn();
    ck_assert_int_eq(
        kt_test_sh("test \"$(stat -c %%a '%s'/tokens/*.lock)\" = 600",
                   kt_test_dir),
        0);
    other_end(&o);
}
END_TEST

static Suite *reinit_suite(void)
{
    Suite *su = suite_create("sec-reinit");
    TCase *tc = tcase_create("reinit");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc,
                   test_init_token_refused_while_other_process_has_sessions);
    tcase_add_test(tc, test_reinit_with_lock_bypassed_closes_other_sessions);
    tcase_add_test(tc, test_lock_file_mode);
    tcase_add_test(tc, test_session_open_waits_for_reinit);
    tcase_add_test(tc, test_fork_child_keeps_other_process_lock);
    suite_add_tcase(su, tc);
    return su;
}
KT_TEST_MAIN(reinit_suite)
