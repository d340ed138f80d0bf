/* The module in-process for the fuzz targets (fuzz_module.h). */
#include "fuzz_module.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "fuzz_rsa_key.h"

const unsigned char fz_aes128[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
                                     0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
                                     0x0c, 0x0d, 0x0e, 0x0f};
const unsigned char fz_aes256[32] = {
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a,
    0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,
    0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f};

static struct fz_env env;
static char dir[256];

#define CHECK(call)                                                            \
    do {                                                                       \
        CK_RV rv_ = (call);                                                    \
        if (rv_ != CKR_OK) {                                                   \
            fprintf(stderr, "fuzz fixture: %s: 0x%lx\n", #call,                \
                    (unsigned long)rv_);                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void cleanup(void)
{
    if (env.p != NULL)
        env.p->C_Finalize(NULL);
    env.p = NULL;
    if (dir[0] != '\0')
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A directory on tmpfs when there is one: token writes sync. */
static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
        access("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm";
    snprintf(dir, sizeof(dir), "%s/kt-fuzz-XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    char path[300];
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/tokens", dir);
    if (mkdir(path, 0700) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/keytier.conf", dir);
    FILE *fp = fopen(path, "w");
    if (fp == NULL)
        abort();
    fprintf(fp,
            "token_dir = %s/tokens\nlog_file = %s/module.log\nlog_level = "
            "error\npin_kdf_cost = 10\npin_max_retries = 100\n",
            dir, dir);
    fclose(fp);
    setenv("KEYTIER_CONF", path, 1);
}

static void open_sessions(void)
{
    CK_FUNCTION_LIST_PTR p = env.p;
    CK_FLAGS rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    CHECK(p->C_OpenSession(env.slot, rw, NULL, NULL, &env.keep));
    CHECK(p->C_Login(env.keep, CKU_USER, (CK_UTF8CHAR_PTR)FZ_USER_PIN,
                     strlen(FZ_USER_PIN)));
    CHECK(p->C_OpenSession(env.slot, rw, NULL, NULL, &env.s));
}

/* C_InitToken (new or again), the user PIN, the two sessions. */
static void init_token(void)
{
    CK_FUNCTION_LIST_PTR p = env.p;
    CK_UTF8CHAR label[32];
    CK_SESSION_HANDLE s;
    memset(label, ' ', sizeof(label));
    memcpy(label, "fuzz", 4);
    CHECK(p->C_InitToken(env.slot, (CK_UTF8CHAR_PTR)FZ_SO_PIN,
                         strlen(FZ_SO_PIN), label));
    CHECK(p->C_OpenSession(env.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                           NULL, &s));
    CHECK(p->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)FZ_SO_PIN, strlen(FZ_SO_PIN)));
    CHECK(p->C_InitPIN(s, (CK_UTF8CHAR_PTR)FZ_USER_PIN, strlen(FZ_USER_PIN)));
    CHECK(p->C_Logout(s));
    CHECK(p->C_CloseSession(s));
    open_sessions();
    env.gen++;
}

/* LeakSanitizer does not read OpenSSL's secure heap (a mapping of its own),
 * where the module keeps its tokens and sessions: what only they point to
 * (object maps, cipher contexts) would read as leaked each time libFuzzer
 * checks an input for leaks. The heap becomes a root region. (Defined by
 * the sanitizer runtimes; NULL in a build without one.) */
void __lsan_register_root_region(const void *p, size_t size)
    __attribute__((weak));

static void secure_heap_is_root(void)
{
    if (__lsan_register_root_region == NULL ||
        !CRYPTO_secure_malloc_initialized())
        return;
    void *probe = OPENSSL_secure_malloc(1);
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)probe & ~(pg - 1), hi = lo + pg;
    /* Within the arena, CRYPTO_secure_allocated answers for any address. */
    while (CRYPTO_secure_allocated((void *)(lo - 1)))
        lo -= pg;
    while (CRYPTO_secure_allocated((void *)hi))
        hi += pg;
    OPENSSL_secure_free(probe);
    __lsan_register_root_region((void *)lo, hi - lo);
}

struct fz_env *fz_env(void)
{
    if (env.p != NULL)
        return &env;
    make_dir();
    atexit(cleanup);
    CHECK(C_GetFunctionList(&env.p));
    CHECK(env.p->C_Initialize(NULL));
    secure_heap_is_root();
    CK_SLOT_ID slots[8];
    CK_ULONG n = 8;
    CHECK(env.p->C_GetSlotList(CK_TRUE, slots, &n));
    if (n == 0)
        abort();
    env.slot = slots[0];
    init_token();
    return &env;
}

static bool is_token(CK_OBJECT_HANDLE h)
{
    CK_BBOOL tok = CK_FALSE;
    CK_ATTRIBUTE a = {CKA_TOKEN, &tok, sizeof(tok)};
    return env.p->C_GetAttributeValue(env.s, h, &a, 1) == CKR_OK && tok;
}

void fz_destroy(CK_OBJECT_HANDLE h)
{
    CK_FUNCTION_LIST_PTR p = env.p;
    if (h == CK_INVALID_HANDLE || p->C_DestroyObject(env.s, h) == CKR_OK)
        return;
    if (!is_token(h)) {
        /* A session object that may not be destroyed ends with its
         * session; the login stays with the keeper session. */
        CHECK(p->C_CloseSession(env.s));
        CHECK(p->C_OpenSession(env.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                               NULL, NULL, &env.s));
        return;
    }
    CHECK(p->C_CloseAllSessions(env.slot));
    init_token();
}

CK_OBJECT_HANDLE fz_create(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CHECK(env.p->C_CreateObject(s, t, n, &h));
    return h;
}

static CK_OBJECT_HANDLE create_with(CK_SESSION_HANDLE s, CK_ATTRIBUTE *base,
                                    CK_ULONG nb, CK_ATTRIBUTE *extra,
                                    CK_ULONG n)
{
    CK_ATTRIBUTE t[32];
    if (nb + n > 32)
        abort();
    memcpy(t, base, nb * sizeof(*t));
    if (n > 0)
        memcpy(t + nb, extra, n * sizeof(*t));
    return fz_create(s, t, nb + n);
}

CK_OBJECT_HANDLE fz_aes(CK_SESSION_HANDLE s, const unsigned char *value,
                        CK_ULONG len, CK_ATTRIBUTE *extra, CK_ULONG n)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE base[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)value, len},
    };
    return create_with(s, base, 3, extra, n);
}

/* The RSA key's parts, big-endian, from the fixed PKCS#8. */
static struct rsa_parts {
    unsigned char v[8][512];
    CK_ULONG len[8];
} rsa;
static const char *const rsa_names[8] = {
    OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
    OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
    OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
static const CK_ATTRIBUTE_TYPE rsa_types[8] = {
    CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
    CKA_PRIME_2, CKA_EXPONENT_1,      CKA_EXPONENT_2,       CKA_COEFFICIENT};

static void rsa_load(void)
{
    if (rsa.len[0] != 0)
        return;
    const unsigned char *d = fz_rsa_pkcs8;
    EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &d, sizeof(fz_rsa_pkcs8));
    if (k == NULL)
        abort();
    for (int i = 0; i < 8; i++) {
        BIGNUM *bn = NULL;
        if (!EVP_PKEY_get_bn_param(k, rsa_names[i], &bn))
            abort();
        rsa.len[i] = (CK_ULONG)BN_bn2bin(bn, rsa.v[i]);
        BN_free(bn);
    }
    EVP_PKEY_free(k);
}

static CK_OBJECT_HANDLE rsa_object(CK_SESSION_HANDLE s, bool priv,
                                   CK_ATTRIBUTE *extra, CK_ULONG n)
{
    CK_OBJECT_CLASS cls = priv ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE base[10] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
    };
    rsa_load();
    CK_ULONG nb = 2;
    for (int i = 0; i < (priv ? 8 : 2); i++)
        base[nb++] = (CK_ATTRIBUTE){rsa_types[i], rsa.v[i], rsa.len[i]};
    return create_with(s, base, nb, extra, n);
}

const unsigned char *fz_rsa_der(size_t *len)
{
    *len = sizeof(fz_rsa_pkcs8);
    return fz_rsa_pkcs8;
}

const unsigned char *fz_rsa_part(CK_ATTRIBUTE_TYPE type, CK_ULONG *len)
{
    rsa_load();
    for (int i = 0; i < 8; i++)
        if (rsa_types[i] == type) {
            *len = rsa.len[i];
            return rsa.v[i];
        }
    abort();
}

CK_OBJECT_HANDLE fz_rsa_private(CK_SESSION_HANDLE s, CK_ATTRIBUTE *extra,
                                CK_ULONG n)
{
    return rsa_object(s, true, extra, n);
}

CK_OBJECT_HANDLE fz_rsa_public(CK_SESSION_HANDLE s, CK_ATTRIBUTE *extra,
                               CK_ULONG n)
{
    return rsa_object(s, false, extra, n);
}

CK_RV fz_trace(const char *what, CK_RV rv)
{
    static int on = -1;
    if (on < 0)
        on = getenv("KT_FUZZ_TRACE") != NULL;
    if (on)
        fprintf(stderr, "%s: 0x%lx\n", what, (unsigned long)rv);
    return rv;
}

void fz_put(struct fz_out *o, const void *p, size_t len)
{
    if (o->n + len > sizeof(o->b))
        abort();
    memcpy(o->b + o->n, p, len);
    o->n += len;
}

void fz_put_u8(struct fz_out *o, unsigned v)
{
    uint8_t b = (uint8_t)v;
    fz_put(o, &b, 1);
}

void fz_put_u16(struct fz_out *o, unsigned v)
{
    fz_put_u8(o, v & 0xff);
    fz_put_u8(o, (v >> 8) & 0xff);
}

void fz_put_u32(struct fz_out *o, uint32_t v)
{
    fz_put_u16(o, v & 0xffff);
    fz_put_u16(o, v >> 16);
}

void fz_put_str(struct fz_out *o, const void *p, size_t len)
{
    fz_put_u16(o, (unsigned)len);
    fz_put(o, p, len);
}

void fz_write(const char *d, const char *name, const struct fz_out *o)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", d, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(o->b, 1, o->n, fp) != o->n || fclose(fp) != 0) {
        fprintf(stderr, "fuzz seeds: cannot write %s\n", path);
        abort();
    }
}
