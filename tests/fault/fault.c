/* The fault scenarios' driver (fault.h). One point: the token directory
 * put back to the old state's files, the module initialised and prepared
 * unarmed, the operation run with the nth call of one kind failing, the
 * module finalised and initialised again unarmed, and what it shows
 * compared with the old and the new state. With AddressSanitizer each
 * point ends with a leak check of its own, so a leak names its point. */
#include "fault.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define FS_LEAK_CHECK()  (__lsan_do_recoverable_leak_check() != 0)
#define FS_LEAKS_CHECKED true
#else
#define FS_LEAK_CHECK()  false
#define FS_LEAKS_CHECKED false
#endif

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* OpenSSL's secure heap (which the module sets up) is an mmap'd arena,
 * which LeakSanitizer does not scan: what only it points to (OpenSSL's
 * DRBG cipher contexts) would be reported by a check made while the
 * process runs. It is a root, as it is for the program: registered here. */
static void register_secure_heap(void)
{
#if defined(__SANITIZE_ADDRESS__)
    static bool done;
    void *p = OPENSSL_secure_malloc(16);
    unsigned long at = (unsigned long)p, lo, hi;
    FILE *fp = fopen("/proc/self/maps", "r");
    char line[512];
    while (!done && p != NULL && CRYPTO_secure_allocated(p) && fp != NULL &&
           fgets(line, sizeof(line), fp) != NULL) {
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= at && at < hi) {
            __lsan_register_root_region((void *)lo, hi - lo);
            done = true;
        }
    }
    if (fp != NULL)
        fclose(fp);
    OPENSSL_secure_free(p);
#endif
}

static const enum kt_fault_kind fs_kinds[] = {KT_FAULT_ALLOC, KT_FAULT_SQLITE,
                                              KT_FAULT_WRITE, KT_FAULT_FSYNC};

static void path_in(char *out, size_t len, const char *dir, const char *name)
{
    int w = snprintf(out, len, "%s/%s/%s", kt_test_dir, dir, name);
    ck_assert(w > 0 && (size_t)w < len);
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    ck_assert_msg(in >= 0, "open %s", from);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_msg(out >= 0, "open %s", to);
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof(buf))) > 0)
        ck_assert(write(out, buf, (size_t)r) == r);
    ck_assert(r == 0);
    close(in);
    ck_assert(close(out) == 0);
}

/* Every file of dir `from` copied into dir `to` (both under the test
 * directory), after the files of `to` are removed. */
static void copy_dir(const char *from, const char *to)
{
    char a[600], b[600];
    path_in(a, sizeof(a), to, "");
    mkdir(a, 0700);
    DIR *d = opendir(a);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        path_in(b, sizeof(b), to, e->d_name);
        ck_assert_msg(unlink(b) == 0, "unlink %s", b);
    }
    closedir(d);
    path_in(a, sizeof(a), from, "");
    d = opendir(a);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        path_in(a, sizeof(a), from, e->d_name);
        path_in(b, sizeof(b), to, e->d_name);
        copy_file(a, b);
    }
    closedir(d);
}

static void pad(CK_UTF8CHAR out[32], const char *s)
{
    memset(out, ' ', 32);
    memcpy(out, s, strlen(s));
}

CK_SLOT_ID fs_token_slot(void)
{
    return kt_test_token_slot(FS_LABEL);
}

CK_SESSION_HANDLE fs_session(CK_USER_TYPE who)
{
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(fs_token_slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION,
                        NULL, NULL, &s));
    const char *pin = who == CKU_SO ? SO_PIN : USER_PIN;
    if (who == CKU_SO || who == CKU_USER)
        CK(P->C_Login(s, who, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    return s;
}

CK_OBJECT_HANDLE fs_find(CK_SESSION_HANDLE s, const char *label)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, &t, 1));
    CK(P->C_FindObjects(s, h, 2, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_le(n, 1);
    return n == 1 ? h[0] : CK_INVALID_HANDLE;
}

static unsigned long long fnv(unsigned long long h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* An object as the digest of every attribute it lets be read. */
static unsigned long long object_digest(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    static const CK_ATTRIBUTE_TYPE types[] = {
        CKA_CLASS,
        CKA_KEY_TYPE,
        CKA_LABEL,
        CKA_ID,
        CKA_TOKEN,
        CKA_PRIVATE,
        CKA_MODIFIABLE,
        CKA_VALUE,
        CKA_VALUE_LEN,
        CKA_ENCRYPT,
        CKA_DECRYPT,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_SIGN,
        CKA_VERIFY,
        CKA_EXTRACTABLE,
        CKA_SENSITIVE,
        CKA_MODULUS,
        CKA_PUBLIC_EXPONENT,
        CKA_CHECK_VALUE,
        CKA_PRIVATE_EXPONENT,
        CKA_APPLICATION,
    };
    unsigned long long h = 0xcbf29ce484222325ULL;
    char label[32] = "";
    CK_ATTRIBUTE la = {CKA_LABEL, label, sizeof(label) - 1};
    /* A key C_GenerateKey makes has a new value every run: its value
     * attributes are left out (FS_GENERATED_LABEL). */
    bool random = P->C_GetAttributeValue(s, o, &la, 1) == CKR_OK &&
                  la.ulValueLen == strlen(FS_GENERATED_LABEL) &&
                  memcmp(label, FS_GENERATED_LABEL, la.ulValueLen) == 0;
    for (size_t i = 0; i < N(types); i++) {
        if (random && (types[i] == CKA_VALUE || types[i] == CKA_CHECK_VALUE))
            continue;
        unsigned char buf[1024];
        CK_ATTRIBUTE a = {types[i], buf, sizeof(buf)};
        CK_RV rv = P->C_GetAttributeValue(s, o, &a, 1);
        h = fnv(h, &types[i], sizeof(types[i]));
        h = fnv(h, &rv, sizeof(rv));
        if (rv == CKR_OK)
            h = fnv(h, buf, a.ulValueLen);
    }
    return h;
}

static int cmp_ull(const void *a, const void *b)
{
    unsigned long long x = *(const unsigned long long *)a;
    unsigned long long y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

/* Which of the role's two PINs opens it: 1 the first, 2 the second, 0
 * neither; a login answer that is not about the PIN is kept as the
 * refusal. The user stays logged in on s. */
static int which_pin(CK_SESSION_HANDLE s, CK_USER_TYPE who, const char *pin1,
                     const char *pin2, CK_RV *refusal)
{
    const char *pins[] = {pin1, pin2};
    for (int i = 0; i < 2; i++) {
        CK_RV rv =
            P->C_Login(s, who, (CK_UTF8CHAR_PTR)pins[i], strlen(pins[i]));
        if (rv == CKR_OK) {
            if (who == CKU_SO)
                CK(P->C_Logout(s));
            return i + 1;
        }
        if (rv != CKR_PIN_INCORRECT && rv != CKR_USER_PIN_NOT_INITIALIZED &&
            *refusal == CKR_OK)
            *refusal = rv;
        if (rv == CKR_USER_PIN_NOT_INITIALIZED)
            break;
    }
    return 0;
}

static void read_state(struct fs_state *st)
{
    memset(st, 0, sizeof(*st));
    CK_SLOT_ID slots[16];
    CK_ULONG n = N(slots);
    CK(P->C_GetSlotList(CK_TRUE, slots, &n));
    CK_UTF8CHAR want[32];
    pad(want, FS_LABEL);
    CK_SLOT_ID slot = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK(P->C_GetTokenInfo(slots[i], &ti));
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        ck_assert_msg(!st->present, "two initialised tokens");
        st->present = true;
        slot = slots[i];
        memcpy(st->label, ti.label, sizeof(st->label));
        st->flags = ti.flags & ~(CK_FLAGS)CKF_LOGIN_REQUIRED;
    }
    if (!st->present)
        return;
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    st->so_pin = which_pin(s, CKU_SO, SO_PIN, FS_NEW_SO_PIN, &st->refusal);
    st->user_pin =
        which_pin(s, CKU_USER, USER_PIN, FS_NEW_USER_PIN, &st->refusal);
    CK_OBJECT_HANDLE h[FS_MAX_OBJECTS + 1];
    CK_ULONG nh = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, h, N(h), &nh));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_le(nh, FS_MAX_OBJECTS);
    st->nobj = nh;
    for (CK_ULONG i = 0; i < nh; i++)
        st->obj[i] = object_digest(s, h[i]);
    qsort(st->obj, st->nobj, sizeof(st->obj[0]), cmp_ull);
    CK(P->C_CloseSession(s));
}

static bool state_eq(const struct fs_state *a, const struct fs_state *b)
{
    return a->present == b->present &&
           memcmp(a->label, b->label, sizeof(a->label)) == 0 &&
           a->flags == b->flags && a->so_pin == b->so_pin &&
           a->user_pin == b->user_pin && a->refusal == b->refusal &&
           a->nobj == b->nobj &&
           memcmp(a->obj, b->obj, a->nobj * sizeof(a->obj[0])) == 0;
}

static void print_state(const char *what, const struct fs_state *st)
{
    printf("    %s: %s label '%.32s' flags 0x%lx so_pin %d user_pin %d "
           "refusal 0x%lx objects %zu\n",
           what, st->present ? "token" : "no token", st->label,
           (unsigned long)st->flags, st->so_pin, st->user_pin,
           (unsigned long)st->refusal, st->nobj);
}

/* The state a reopened module shows. */
static void reopen_state(struct fs_state *st)
{
    CK(P->C_Initialize(NULL));
    read_state(st);
    CK(P->C_Finalize(NULL));
}

static void restore_old(struct fs_ctx *ctx, const struct fs_scenario *sc)
{
    copy_dir("tokens.old", "tokens");
    ck_assert(truncate(kt_test_log, 0) == 0 || access(kt_test_log, F_OK) != 0);
    CK(P->C_Initialize(NULL));
    register_secure_heap();
    memset(ctx, 0, sizeof(*ctx));
    sc->prep(ctx);
}

static void print_log(void)
{
    FILE *fp = fopen(kt_test_log, "r");
    char line[2048];
    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL)
        printf("      log: %s", line);
    if (fp != NULL)
        fclose(fp);
}

struct fs_tally {
    unsigned long points, errors, recovered, err_new, charged, mixed, leaks,
        unfired, imprecise;
};

bool fs_log_names_damage(void)
{
    return kt_test_log_contains("damaged") || kt_test_log_contains("refused");
}

/* sc->precise, an allocation failing (fault.h): the answer and the log. */
static bool alloc_answer_precise(CK_RV rv, bool logged_damage)
{
    return !logged_damage &&
           (rv == CKR_OK || rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY ||
            rv == CKR_DEVICE_ERROR);
}

/* st is old or new but for one try charged to the role sc checks. */
static bool only_charged(const struct fs_scenario *sc,
                         const struct fs_state *st,
                         const struct fs_state *old_st,
                         const struct fs_state *new_st)
{
    struct fs_state x = *st;
    if (sc->charges == 0 || !(x.flags & sc->charges))
        return false;
    x.flags &= ~sc->charges;
    return state_eq(&x, old_st) || state_eq(&x, new_st);
}

static void print_mixed(const struct fs_scenario *sc, enum kt_fault_kind kind,
                        unsigned long n, CK_RV rv, const struct fs_state *st,
                        const struct fs_state *old_st,
                        const struct fs_state *new_st)
{
    printf("  %s %s #%lu: rv 0x%lx, neither the old nor the new state\n",
           sc->name, kt_fault_kind_name(kind), n, (unsigned long)rv);
    print_state("got", st);
    print_state("old", old_st);
    print_state("new", new_st);
    print_log();
}

/* One point: the nth call of kind fails. */
static void run_point(const struct fs_scenario *sc, enum kt_fault_kind kind,
                      unsigned long n, const struct fs_state *old_st,
                      const struct fs_state *new_st, struct fs_tally *t)
{
    struct fs_ctx ctx;
    struct fs_state st;
    restore_old(&ctx, sc);
    kt_fault_arm(kind, n);
    CK_RV rv = sc->op(&ctx);
    kt_fault_disarm();
    bool fired = kt_fault_fired();
    bool damage = fs_log_names_damage();
    CK(P->C_Finalize(NULL));
    reopen_state(&st);
    t->points++;
    bool is_old = state_eq(&st, old_st), is_new = state_eq(&st, new_st);
    if (sc->precise && fired && kind == KT_FAULT_ALLOC &&
        (!alloc_answer_precise(rv, damage) ||
         (rv == CKR_HOST_MEMORY && !is_old && !is_new))) {
        if (t->imprecise++ < 3) {
            printf("  %s alloc #%lu: rv 0x%lx%s%s\n", sc->name, n,
                   (unsigned long)rv, damage ? ", logged as damage" : "",
                   !is_old && !is_new ? ", state changed (a try charged?)"
                                      : "");
            print_log();
        }
    }
    if (!fired) {
        /* SQLite's page writes depend on its WAL's state and OpenSSL's
         * allocations on its caches: a run may make fewer calls than the
         * counting run did. Counted apart; a kind none of whose points
         * is reached fails (fs_run). */
        t->unfired++;
        printf("  %s %s #%lu: not reached (%lu calls)\n", sc->name,
               kt_fault_kind_name(kind), n, kt_fault_count(kind));
    }
    if (fired && rv != CKR_OK)
        t->errors++;
    if (fired && rv != CKR_OK && is_new && !is_old)
        t->err_new++;
    if (fired && rv == CKR_OK && is_new)
        t->recovered++;
    if (!is_old && !is_new && only_charged(sc, &st, old_st, new_st)) {
        t->charged++;
    } else if ((!is_old && !is_new) || (rv == CKR_OK && !is_new)) {
        /* The first few in full: the rest are usually the same. */
        if (t->mixed++ < 3)
            print_mixed(sc, kind, n, rv, &st, old_st, new_st);
    }
    if (FS_LEAK_CHECK()) {
        t->leaks++;
        printf("  %s %s #%lu: leak (report above)\n", sc->name,
               kt_fault_kind_name(kind), n);
    }
}

/* The old state saved and read; the operation run once unarmed, counting
 * every kind, and the new state read. */
static void count_points(const struct fs_scenario *sc, struct fs_state *old_st,
                         struct fs_state *new_st, unsigned long counts[])
{
    struct fs_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    /* Every point syncs its writes tens of times; on tmpfs that is free,
     * and what a failed call leaves does not depend on the disk. */
    if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    sc->setup(&ctx);
    CK(P->C_Finalize(NULL));
    copy_dir("tokens", "tokens.old");
    reopen_state(old_st);
    /* Once unarmed first: the first run in a process makes OpenSSL's
     * lazily built tables, which later runs find made. */
    restore_old(&ctx, sc);
    CK(sc->op(&ctx));
    CK(P->C_Finalize(NULL));
    restore_old(&ctx, sc);
    kt_fault_arm(KT_FAULT_ALLOC, 0);
    CK_RV rv = sc->op(&ctx);
    kt_fault_disarm();
    ck_assert_msg(rv == CKR_OK, "%s unarmed: 0x%lx", sc->name,
                  (unsigned long)rv);
    for (size_t k = 0; k < N(fs_kinds); k++)
        counts[k] = kt_fault_count(fs_kinds[k]);
    CK(P->C_Finalize(NULL));
    reopen_state(new_st);
}

/* Every point of the small kinds; of allocations, with no stride given,
 * at most about FS_ALLOC_POINTS spread over all of them (fault.h). */
static unsigned long step_of(enum kt_fault_kind kind, unsigned long count,
                             unsigned long stride)
{
    if (kind != KT_FAULT_ALLOC)
        return 1;
    if (stride > 0)
        return stride;
    return count > FS_ALLOC_POINTS
               ? (count + FS_ALLOC_POINTS - 1) / FS_ALLOC_POINTS
               : 1;
}

void fs_run(const struct fs_scenario *sc, unsigned long stride)
{
    struct fs_state old_st, new_st;
    unsigned long counts[N(fs_kinds)];
    count_points(sc, &old_st, &new_st, counts);
    bool bad = FS_LEAK_CHECK();
    for (size_t k = 0; k < N(fs_kinds); k++) {
        struct fs_tally t = {0};
        unsigned long step = step_of(fs_kinds[k], counts[k], stride);
        for (unsigned long n = 1; n <= counts[k]; n += step)
            run_point(sc, fs_kinds[k], n, &old_st, &new_st, &t);
        printf("fault: %-15s %-6s calls %4lu, injected %4lu (every %lu, "
               "%lu not reached), errors %4lu (new state %lu), recovered %lu, "
               "try charged %lu, mixed %lu, imprecise %lu, leaks %s%lu\n",
               sc->name, kt_fault_kind_name(fs_kinds[k]), counts[k],
               t.points - t.unfired, step, t.unfired, t.errors, t.err_new,
               t.recovered, t.charged, t.mixed, t.imprecise,
               FS_LEAKS_CHECKED ? "" : "unchecked ", t.leaks);
        fflush(stdout);
        bad = bad || t.mixed > 0 || t.leaks > 0 || t.imprecise > 0 ||
              (t.points > 0 && t.unfired == t.points);
    }
    kt_test_teardown();
    ck_assert_msg(!bad,
                  "%s: a mixed state, an imprecise answer, a leak or an "
                  "unfired point",
                  sc->name);
}
