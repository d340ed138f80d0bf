/*
 * keytier's module and SoftHSM2 started on parallel threads, as libkeytier
 * starts the modules of a context (lib/p11/module.c): both loaded on one
 * thread, then C_Initialize of each on its own thread at the same moment.
 * OpenSSL's secure heap is process-wide and CRYPTO_secure_malloc_init is
 * not thread-safe; SoftHSM2's C_Initialize allocates from that heap (its
 * random generator) while a module that made the heap in C_Initialize would
 * be making it. The heap exists once per process, so each round is a new
 * process (this program run again with "round"); under ThreadSanitizer
 * (halt_on_error, tools/test.sh) a race ends the round with its report and
 * a non-zero status, which fails the test.
 *
 *   test_start_race            ROUNDS rounds (KT_START_ROUNDS, default 24)
 *   test_start_race round DIR  one round, configuration files in DIR
 */
#include <dlfcn.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <p11-kit/pkcs11.h>

extern char **environ;

struct starter {
    CK_FUNCTION_LIST *fl;
    const char *name;
    pthread_barrier_t *go;
    CK_RV rv;
};

static void *start_module(void *p)
{
    struct starter *s = p;
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    pthread_barrier_wait(s->go);
    s->rv = s->fl->C_Initialize(&args);
    return NULL;
}

/* Another user of OpenSSL's secure heap in the process (SoftHSM2's later
 * calls, a TLS library): secure blocks taken and given back until both
 * modules have started. Each block is written (zalloc) where the heap's
 * maker wrote its arena. */
struct hammer {
    pthread_barrier_t *go;
    atomic_bool *done;
};

static void *use_secure_heap(void *p)
{
    struct hammer *h = p;
    pthread_barrier_wait(h->go);
    while (!atomic_load(h->done)) {
        void *b = OPENSSL_secure_zalloc(32);
        OPENSSL_secure_clear_free(b, 32);
    }
    return NULL;
}

static CK_FUNCTION_LIST *load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "start-race: dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    CK_C_GetFunctionList gfl =
        (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    CK_FUNCTION_LIST *fl = NULL;
    if (gfl == NULL || gfl(&fl) != CKR_OK || fl == NULL) {
        fprintf(stderr, "start-race: %s: no function list\n", path);
        exit(2);
    }
    return fl;
}

/* One round: both loaded here, both started at once on two threads while
 * a third uses OpenSSL's secure heap. */
static int round_main(void)
{
    const char *paths[2] = {getenv("KT_MODULE"), getenv("SOFTHSM2_MODULE")};
    const char *names[2] = {"keytier", "SoftHSM2"};
    struct starter st[2];
    pthread_t th[3];
    pthread_barrier_t go;
    atomic_bool done = false;
    pthread_barrier_init(&go, NULL, 3);
    for (int i = 0; i < 2; i++)
        st[i] =
            (struct starter){.fl = load(paths[i]), .name = names[i], .go = &go};
    struct hammer h = {.go = &go, .done = &done};
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, start_module, &st[i]) != 0)
            return 2;
    if (pthread_create(&th[2], NULL, use_secure_heap, &h) != 0)
        return 2;
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (st[i].rv != CKR_OK) {
            fprintf(stderr, "start-race: %s C_Initialize: 0x%lx\n", st[i].name,
                    (unsigned long)st[i].rv);
            rc = 1;
        }
    }
    atomic_store(&done, true);
    pthread_join(th[2], NULL);
    for (int i = 0; i < 2; i++)
        if (st[i].rv == CKR_OK)
            st[i].fl->C_Finalize(NULL);
    pthread_barrier_destroy(&go);
    return rc;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "start-race: cannot write %s\n", path);
        exit(2);
    }
}

/* Configuration of both modules in a new temp dir, in the environment. */
static void configure(char *dir, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/kt-start-race-XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("start-race: mkdtemp");
        exit(2);
    }
    char path[512], text[1024];
    snprintf(path, sizeof path, "%s/keytier.conf", dir);
    snprintf(text, sizeof text, "token_dir = %s\npin_kdf_cost = 10\n", dir);
    write_file(path, text);
    setenv("KEYTIER_CONF", path, 1);
    snprintf(path, sizeof path, "%s/softhsm2.conf", dir);
    snprintf(text, sizeof text,
             "directories.tokendir = %s\nobjectstore.backend = file\n"
             "log.level = ERROR\n",
             dir);
    write_file(path, text);
    setenv("SOFTHSM2_CONF", path, 1);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int run_round(int n)
{
    char *argv[] = {"test_start_race", "round", NULL};
    pid_t pid;
    int status;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0 ||
        waitpid(pid, &status, 0) != pid) {
        perror("start-race: spawn");
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    fprintf(stderr,
            "start-race: round %d failed (%s %d): a data race between the "
            "two modules' starts is reported above\n",
            n, WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "round") == 0)
        return round_main();
    if (getenv("KT_MODULE") == NULL || getenv("SOFTHSM2_MODULE") == NULL) {
        fprintf(stderr, "start-race: KT_MODULE and SOFTHSM2_MODULE needed\n");
        return 2;
    }
    char dir[400];
    configure(dir, sizeof dir);
    const char *r = getenv("KT_START_ROUNDS");
    int rounds = r != NULL ? atoi(r) : 24;
    int failed = 0;
    for (int i = 0; i < rounds && !failed; i++)
        failed = run_round(i);
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "start-race: could not remove %s\n", dir);
    if (!failed)
        printf("start-race: %d rounds, no failure\n", rounds);
    return failed;
}
