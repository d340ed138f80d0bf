/* Many threads, many sessions: operations on independent sessions run
 * concurrently and give the same results as alone (CKF_OS_LOCKING_OK). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define THREADS 4
#define ROUNDS  150

static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE root;

static void *worker(void *arg)
{
    long id = (long)arg;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                         &s) != CKR_OK)
        return (void *)1;
    for (int i = 0; i < ROUNDS; i++) {
        char label[32];
        snprintf(label, sizeof(label), "t%ld-%d", id, i);
        CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, label);
        unsigned char w[64], c1[16], c2[16], in[16] = {(unsigned char)i};
        CK_ULONG wl = sizeof(w), l1 = 16, l2 = 16;
        CK_OBJECT_HANDLE back;
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_KEY_TYPE, &kt, sizeof(kt)},
                            {CKA_TOKEN, &no, 1},
                            {CKA_ENCRYPT, &yes, 1}};
        if (P->C_WrapKey(s, &wm, root, dek, w, &wl) != CKR_OK ||
            P->C_UnwrapKey(s, &wm, root, w, wl, t, 4, &back) != CKR_OK ||
            P->C_EncryptInit(s, &ecb, dek) != CKR_OK ||
            P->C_Encrypt(s, in, 16, c1, &l1) != CKR_OK ||
            P->C_EncryptInit(s, &ecb, back) != CKR_OK ||
            P->C_Encrypt(s, in, 16, c2, &l2) != CKR_OK ||
            memcmp(c1, c2, 16) != 0)
            return (void *)2;
        CK_ATTRIBUTE q = {CKA_LABEL, label, strlen(label)};
        CK_OBJECT_HANDLE found[4];
        CK_ULONG n = 0;
        if (P->C_FindObjectsInit(s, &q, 1) != CKR_OK ||
            P->C_FindObjects(s, found, 4, &n) != CKR_OK ||
            P->C_FindObjectsFinal(s) != CKR_OK || n != 1 || found[0] != dek)
            return (void *)3;
        if (P->C_DestroyObject(s, dek) != CKR_OK ||
            P->C_DestroyObject(s, back) != CKR_OK)
            return (void *)4;
        if (i % 50 == 0) {
            /* a durable object now and then, and a short-lived session */
            CK_OBJECT_HANDLE tk = kt_test_aes_key(s, 16, true, false, label);
            CK_SESSION_HANDLE extra;
            if (P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL,
                                 &extra) != CKR_OK ||
                P->C_CloseSession(extra) != CKR_OK ||
                P->C_DestroyObject(s, tk) != CKR_OK)
                return (void *)5;
        }
    }
    return P->C_CloseSession(s) == CKR_OK ? NULL : (void *)6;
}

START_TEST(test_concurrent_sessions)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    CK(P->C_Initialize(&args));
    slot = kt_test_new_token("threads");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    root = kt_test_wrap_key(s, 32, true, false, "root");
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        ck_assert_int_eq(pthread_join(th[i], &r), 0);
        ck_assert_msg(r == NULL, "worker %d failed at step %ld", i, (long)r);
    }
    CK_TOKEN_INFO ti;
    CK(P->C_GetTokenInfo(slot, &ti));
    ck_assert_uint_eq(ti.ulSessionCount, 1);
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, h, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1); /* the root only */
}
END_TEST

static CK_OBJECT_HANDLE shared_key;

static void *renamer(void *arg)
{
    (void)arg;
    CK_SESSION_HANDLE s;
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                         &s) != CKR_OK)
        return (void *)1;
    for (int i = 0; i < 300; i++) {
        char label[16];
        snprintf(label, sizeof(label), "name-%d", i);
        CK_ATTRIBUTE l = {CKA_LABEL, label, strlen(label)};
        CK_RV rv = P->C_SetAttributeValue(s, shared_key, &l, 1);
        if (rv != CKR_OK) {
            fprintf(stderr, "rename: 0x%lx\n", (unsigned long)rv);
            return (void *)2;
        }
    }
    return NULL;
}

/* Changes made concurrently on the same object are never lost: a rename
 * racing with CKA_EXTRACTABLE=FALSE must not bring the old value back (in
 * this process, and through the store from another one). */
START_TEST(test_concurrent_set_attribute_no_lost_update)
{
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("cas");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    shared_key = kt_test_aes_key(s, 32, true, true, "name");
    pid_t pid = fork();
    if (pid == 0) {
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(60);
        CK_SESSION_HANDLE cs = kt_test_user_session(kt_test_token_slot("cas"));
        CK_OBJECT_CLASS kc = CKO_SECRET_KEY;
        CK_ATTRIBUTE q = {CKA_CLASS, &kc, sizeof(kc)};
        CK_ULONG n = 0;
        if (P->C_FindObjectsInit(cs, &q, 1) != CKR_OK ||
            P->C_FindObjects(cs, &shared_key, 1, &n) != CKR_OK || n != 1)
            _exit(61);
        CK_RV rv = P->C_FindObjectsFinal(cs);
        slot = kt_test_token_slot("cas");
        _exit(rv == CKR_OK && renamer(NULL) == NULL ? 0 : 62);
    }
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, renamer, NULL), 0);
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE ext = {CKA_EXTRACTABLE, &no, 1};
    CK_ATTRIBUTE sens = {CKA_SENSITIVE, &yes, 1};
    for (int i = 0; i < 20; i++) {
        CK(P->C_SetAttributeValue(s, shared_key, &ext, 1));
        CK(P->C_SetAttributeValue(s, shared_key, &sens, 1));
    }
    void *r;
    ck_assert_int_eq(pthread_join(th, &r), 0);
    ck_assert_ptr_null(r);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x",
                  st);
    CK_BBOOL e = 1, se = 0;
    CK_ATTRIBUTE g[] = {{CKA_EXTRACTABLE, &e, 1}, {CKA_SENSITIVE, &se, 1}};
    CK(P->C_GetAttributeValue(s, shared_key, g, 2));
    ck_assert(!e && se);
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("cas"));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE q = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE h;
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, &q, 1));
    CK(P->C_FindObjects(s, &h, 1, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1);
    e = 1, se = 0;
    CK(P->C_GetAttributeValue(s, h, g, 2));
    ck_assert(!e && se);
}
END_TEST

static CK_RV guess_rv[16];

static void *guesser(void *arg)
{
    long i = (long)arg;
    CK_SESSION_HANDLE s;
    if (P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return (void *)1;
    guess_rv[i] = P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9);
    return NULL;
}

/* Parallel wrong guesses (threads here, processes alike: the try is charged
 * in the store before the PIN is checked) never get more than
 * pin_max_retries (3 in the harness config) attempts. */
START_TEST(test_parallel_guesses_respect_lockout)
{
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("guesses");
    CK_SESSION_HANDLE keep;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &keep));
    pthread_t th[16];
    for (long i = 0; i < 16; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, guesser, (void *)i), 0);
    for (int i = 0; i < 16; i++) {
        void *r;
        ck_assert_int_eq(pthread_join(th[i], &r), 0);
        ck_assert_ptr_null(r);
    }
    int incorrect = 0, locked = 0;
    for (int i = 0; i < 16; i++) {
        if (guess_rv[i] == CKR_PIN_INCORRECT)
            incorrect++;
        else if (guess_rv[i] == CKR_PIN_LOCKED)
            locked++;
    }
    ck_assert_int_eq(incorrect, 3);
    ck_assert_int_eq(locked, 13);
    RV(CKR_PIN_LOCKED,
       P->C_Login(keep, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
}
END_TEST

/* ---- session objects in shards -------------------------------------- */

#define CHURN_THREADS  6
#define CHURN_SESSIONS 3 /* per thread: 18 sessions share the 16 shards */
#define CHURN_ROUNDS   120
#define CHURN_HANDLES  (CHURN_ROUNDS * 3 + CHURN_SESSIONS)

struct churn {
    long id;
    unsigned char blob[64];
    CK_ULONG blob_len;
    CK_OBJECT_HANDLE handles[CHURN_HANDLES]; /* every handle it was given */
    size_t n;
    int failed_at;
    CK_RV rv;
};

static CK_RV churn_gen(CK_SESSION_HANDLE s, const char *label,
                       CK_OBJECT_HANDLE *out)
{
    CK_ULONG len = 16;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_PRIVATE, &yes, 1},
                        {CKA_ENCRYPT, &yes, 1},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    return P->C_GenerateKey(s, &m, t, 5, out);
}

static CK_RV churn_unwrap(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek,
                          const unsigned char *blob, CK_ULONG len,
                          const char *label, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_ENCRYPT, &yes, 1},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    return P->C_UnwrapKey(s, &wm, kek, (unsigned char *)blob, len, t, 5, out);
}

static CK_RV churn_count(CK_SESSION_HANDLE s, const char *label, CK_ULONG *n)
{
    CK_ATTRIBUTE q = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE found[CHURN_HANDLES];
    CK_RV rv = P->C_FindObjectsInit(s, &q, 1);
    if (rv == CKR_OK)
        rv = P->C_FindObjects(s, found, CHURN_HANDLES, n);
    CK_RV rv2 = P->C_FindObjectsFinal(s);
    return rv != CKR_OK ? rv : rv2;
}

#define CHURN_CHECK(step, call)                                                \
    do {                                                                       \
        CK_RV r_ = (call);                                                     \
        if (r_ != CKR_OK) {                                                    \
            c->failed_at = (step);                                             \
            c->rv = r_;                                                        \
            return c;                                                          \
        }                                                                      \
    } while (0)

/* Creates (unwrap and generate) and destroys session objects on several
 * sessions while the other threads do the same; every object stays
 * findable (by label, across shards) until destroyed. */
static void *churner(void *arg)
{
    struct churn *c = arg;
    CK_SESSION_HANDLE ss[CHURN_SESSIONS];
    CK_OBJECT_HANDLE live[CHURN_ROUNDS];
    size_t n_live = 0;
    char label[32];
    snprintf(label, sizeof(label), "churn-%ld", c->id);
    for (int i = 0; i < CHURN_SESSIONS; i++) {
        CHURN_CHECK(
            1, P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ss[i]));
        c->handles[c->n++] = ss[i];
    }
    for (int i = 0; i < CHURN_ROUNDS; i++) {
        CK_SESSION_HANDLE s = ss[i % CHURN_SESSIONS];
        CK_OBJECT_HANDLE a, b;
        CHURN_CHECK(2, churn_unwrap(s, root, c->blob, c->blob_len, label, &a));
        CHURN_CHECK(3, churn_gen(s, label, &b));
        c->handles[c->n++] = a;
        c->handles[c->n++] = b;
        /* One of the two lives on; the other goes at once, from another
         * session than the one that made it. */
        CHURN_CHECK(
            4, P->C_DestroyObject(ss[(i + 1) % CHURN_SESSIONS], i % 2 ? a : b));
        live[n_live++] = i % 2 ? b : a;
        if (i % 10 == 9) {
            CK_ULONG n = 0;
            CHURN_CHECK(5, churn_count(s, label, &n));
            if (n != n_live) {
                c->failed_at = 6;
                return c;
            }
        }
    }
    /* Closing a session takes exactly its own objects with it. */
    CHURN_CHECK(7, P->C_CloseSession(ss[0]));
    size_t kept = 0;
    for (size_t i = 0; i < n_live; i++) {
        CK_ULONG len = 0;
        CK_ATTRIBUTE q = {CKA_VALUE_LEN, NULL, 0};
        CK_RV rv = P->C_GetAttributeValue(ss[1], live[i], &q, 1);
        (void)len;
        /* live[i] was made by ss[i % 3]: ss[0]'s objects are gone. */
        CK_RV want =
            i % CHURN_SESSIONS == 0 ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
        if (rv != want) {
            c->failed_at = 8;
            c->rv = rv;
            return c;
        }
        kept += rv == CKR_OK;
    }
    CK_ULONG n = 0;
    CHURN_CHECK(9, churn_count(ss[1], label, &n));
    if (n != kept) {
        c->failed_at = 10;
        return c;
    }
    for (int i = 1; i < CHURN_SESSIONS; i++)
        CHURN_CHECK(11, P->C_CloseSession(ss[i]));
    return NULL;
}

static int handle_cmp(const void *a, const void *b)
{
    CK_ULONG x = *(const CK_ULONG *)a, y = *(const CK_ULONG *)b;
    return x < y ? -1 : x > y;
}

/* Session objects are made in the shard of their session, without the
 * token lock: many threads creating, finding and destroying them on
 * sessions that share shards lose no object, keep no object of a closed
 * session, and never get a handle twice (objects and sessions alike). */
START_TEST(test_session_object_churn_handles_unique)
{
    static struct churn c[CHURN_THREADS];
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("churn");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    root = kt_test_wrap_key(s, 32, true, false, "root");
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    pthread_t th[CHURN_THREADS];
    memset(c, 0, sizeof(c));
    for (long i = 0; i < CHURN_THREADS; i++) {
        c[i].id = i;
        c[i].blob_len = sizeof(c[i].blob);
        CK(P->C_WrapKey(s, &wm, root, dek, c[i].blob, &c[i].blob_len));
    }
    for (long i = 0; i < CHURN_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, churner, &c[i]), 0);
    for (int i = 0; i < CHURN_THREADS; i++) {
        void *r;
        ck_assert_int_eq(pthread_join(th[i], &r), 0);
        ck_assert_msg(r == NULL, "thread %d failed at step %d (0x%lx)", i,
                      c[i].failed_at, (unsigned long)c[i].rv);
    }
    static CK_ULONG all[CHURN_THREADS * CHURN_HANDLES + 3];
    size_t n = 0;
    all[n++] = s;
    all[n++] = root;
    all[n++] = dek;
    for (int i = 0; i < CHURN_THREADS; i++) {
        ck_assert_uint_eq(c[i].n, CHURN_ROUNDS * 2 + CHURN_SESSIONS);
        for (size_t k = 0; k < c[i].n; k++)
            all[n++] = c[i].handles[k];
    }
    qsort(all, n, sizeof(all[0]), handle_cmp);
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(all[i] != all[i - 1], "handle %lu given twice",
                      (unsigned long)all[i]);
    /* Only the root and the dek are left, and new handles are new. */
    CK_OBJECT_HANDLE h[4], more;
    CK_ULONG found = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, h, 4, &found));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(found, 2);
    CK(churn_gen(s, "after", &more));
    ck_assert(bsearch(&more, all, n, sizeof(all[0]), handle_cmp) == NULL);
}
END_TEST

/* The session keeps its wrapping key's snapshot between calls; a change
 * made through another session must still take effect on the next call. */
START_TEST(test_cached_wrapping_key_follows_changes)
{
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("cache");
    CK_SESSION_HANDLE a = kt_test_user_session(slot), b;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &b));
    root = kt_test_wrap_key(a, 32, true, false, "root");
    CK_OBJECT_HANDLE kek = kt_test_wrap_key(b, 32, false, false, "kek");
    CK_OBJECT_HANDLE dek = kt_test_aes_key(a, 32, false, true, "dek");
    CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char w[64], w2[64];
    CK_ULONG wl = sizeof(w), wl2 = sizeof(w2);
    CK_OBJECT_HANDLE out;
    CK(P->C_WrapKey(a, &wm, root, dek, w, &wl));
    CK(P->C_WrapKey(a, &wm, kek, dek, w2, &wl2));
    CK(churn_unwrap(a, root, w, wl, "x", &out));
    /* CKA_UNWRAP turned off from session b. */
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE off = {CKA_UNWRAP, &no, 1};
    CK(P->C_SetAttributeValue(b, root, &off, 1));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, churn_unwrap(a, root, w, wl, "x", &out));
    /* CKA_WRAP likewise, after a successful wrap cached the key. */
    wl = sizeof(w);
    CK(P->C_WrapKey(a, &wm, kek, dek, w, &wl));
    CK_ATTRIBUTE woff = {CKA_WRAP, &no, 1};
    CK(P->C_SetAttributeValue(b, kek, &woff, 1));
    wl = sizeof(w);
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_WrapKey(a, &wm, kek, dek, w, &wl));
    /* A session key destroyed by its own session. */
    RV(CKR_OK, churn_unwrap(a, kek, w2, wl2, "y", &out));
    CK(P->C_DestroyObject(b, kek));
    RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID,
       churn_unwrap(a, kek, w2, wl2, "y", &out));
    /* Its owner's session closed. */
    CK_OBJECT_HANDLE kek2 = kt_test_wrap_key(b, 32, false, false, "kek2");
    wl2 = sizeof(w2);
    CK(P->C_WrapKey(a, &wm, kek2, dek, w2, &wl2));
    CK(churn_unwrap(a, kek2, w2, wl2, "z", &out));
    CK(P->C_CloseSession(b));
    RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID,
       churn_unwrap(a, kek2, w2, wl2, "z", &out));
    /* Logout: the private root is not usable, and its old handle never
     * comes back (private token objects get new handles). */
    CK_ATTRIBUTE on = {CKA_UNWRAP, (CK_BBOOL[]){CK_TRUE}, 1};
    CK(P->C_SetAttributeValue(a, root, &on, 1));
    wl = sizeof(w);
    CK(P->C_WrapKey(a, &wm, root, dek, w, &wl));
    CK(churn_unwrap(a, root, w, wl, "r", &out));
    CK(P->C_Logout(a));
    RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID,
       churn_unwrap(a, root, w, wl, "r", &out));
    CK(P->C_Login(a, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID,
       churn_unwrap(a, root, w, wl, "r", &out));
}
END_TEST

static atomic_int made;
static atomic_bool stop;
static CK_RV refused_rv;

/* Private session objects, made until told to stop: each either succeeds
 * or, once the user is logged out, gets CKR_USER_NOT_LOGGED_IN. */
static void *private_maker(void *arg)
{
    CK_SESSION_HANDLE s = *(CK_SESSION_HANDLE *)arg;
    while (!atomic_load(&stop)) {
        CK_OBJECT_HANDLE h;
        CK_RV rv = churn_gen(s, "private", &h);
        if (rv == CKR_OK) {
            atomic_fetch_add(&made, 1);
            continue;
        }
        refused_rv = rv;
        return rv == CKR_USER_NOT_LOGGED_IN ? NULL : (void *)1;
    }
    return NULL;
}

/* A private session object created (under its shard's lock only) while
 * another thread logs out is either destroyed by the logout or refused:
 * none survives to be seen after the next login. */
START_TEST(test_logout_leaves_no_private_session_object)
{
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("logout");
    CK_SESSION_HANDLE a = kt_test_user_session(slot), b;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &b));
    atomic_store(&made, 0);
    atomic_store(&stop, false);
    refused_rv = CKR_OK;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, private_maker, &b), 0);
    while (atomic_load(&made) < 50)
        sched_yield();
    CK(P->C_Logout(a));
    atomic_store(&stop, true);
    void *r;
    ck_assert_int_eq(pthread_join(th, &r), 0);
    ck_assert_ptr_null(r);
    CK(P->C_Login(a, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK_ULONG n = 1;
    CK(churn_count(a, "private", &n));
    ck_assert_uint_eq(n, 0);
    /* The maker either saw the logout or stopped first. */
    ck_assert(refused_rv == CKR_OK || refused_rv == CKR_USER_NOT_LOGGED_IN);
}
END_TEST

static Suite *threads_suite(void)
{
    Suite *su = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, kt_test_setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_concurrent_sessions);
    tcase_add_test(tc, test_parallel_guesses_respect_lockout);
    tcase_add_test(tc, test_concurrent_set_attribute_no_lost_update);
    tcase_add_test(tc, test_session_object_churn_handles_unique);
    tcase_add_test(tc, test_cached_wrapping_key_follows_changes);
    tcase_add_test(tc, test_logout_leaves_no_private_session_object);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(threads_suite)
