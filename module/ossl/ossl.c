#include "ossl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

/* The module's own OpenSSL library context, with the default provider
 * only. The host's default context may hold any provider its configuration
 * loads, pkcs11-provider among them: a key built or an algorithm fetched
 * there could be served by a provider that calls back into this module
 * (C_SignInit -> EVP_PKEY_fromdata -> pkcs11-provider -> C_CreateObject).
 * Every fetch and every key of the module names this context. */
static OSSL_LIB_CTX *libctx;
static OSSL_PROVIDER *default_prov;

/* Algorithms fetched once at C_Initialize: fetching per call costs more than
 * the AES work of a key wrap. Row = enum kt_cipher_mode, column = key size
 * (AES: 16, 24, 32 bytes; DES and DES3: one size). */
static EVP_CIPHER *ciphers[KT_CIPHER_MODES][3];
static EVP_MD *mds[KT_MD_COUNT];
static EVP_MAC *hmac_alg;
static EVP_MAC *cmac_alg;
static EVP_KDF *scrypt_alg;
static EVP_KDF *hkdf_alg;
static OSSL_PROVIDER *legacy_prov;

static const char *const cipher_names[KT_CIPHER_MODES][3] = {
    {"AES-128-ECB", "AES-192-ECB", "AES-256-ECB"},
    {"AES-128-CBC", "AES-192-CBC", "AES-256-CBC"},
    {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM"},
    {"AES-128-WRAP", "AES-192-WRAP", "AES-256-WRAP"},
    {"AES-128-WRAP-PAD", "AES-192-WRAP-PAD", "AES-256-WRAP-PAD"},
    {"AES-128-CTR", "AES-192-CTR", "AES-256-CTR"},
    {"DES-ECB", NULL, NULL},
    {"DES-CBC", NULL, NULL},
    {"DES-EDE3-ECB", NULL, NULL},
    {"DES-EDE3-CBC", NULL, NULL},
};
static const char *const md_names[KT_MD_COUNT] = {
    "SHA256",   "SHA384",   "SHA512",   "SHA1",     "SHA224",
    "SHA3-224", "SHA3-256", "SHA3-384", "SHA3-512", "MD5",
};
static const size_t md_sizes[KT_MD_COUNT] = {32, 48, 64, 20, 28,
                                             28, 32, 48, 64, 16};

static bool des_mode(int mode)
{
    return mode == KT_DES_ECB || mode == KT_DES_CBC;
}

static bool block_mode(enum kt_cipher_mode mode)
{
    return mode == KT_AES_ECB || mode == KT_AES_CBC || des_mode(mode) ||
           mode == KT_DES3_ECB || mode == KT_DES3_CBC;
}

/* The column of ciphers[mode] for a key of key_len bytes, or -1. */
static int cipher_col(enum kt_cipher_mode mode, size_t key_len)
{
    if (des_mode(mode))
        return key_len == 8 ? 0 : -1;
    if (mode == KT_DES3_ECB || mode == KT_DES3_CBC)
        return key_len == 24 ? 0 : -1;
    return key_len == 16 ? 0 : key_len == 24 ? 1 : key_len == 32 ? 2 : -1;
}

OSSL_LIB_CTX *kt_ossl_libctx(void)
{
    return libctx;
}

/* Run by OPENSSL_cleanup at process exit, before OpenSSL frees its own
 * state: the context would otherwise outlive it (its random generators are
 * held from secure-heap memory, which leak checkers cannot see into). */
static void libctx_exit(void)
{
    kt_ossl_fini();
    OSSL_PROVIDER_unload(default_prov);
    default_prov = NULL;
    OSSL_LIB_CTX_free(libctx);
    libctx = NULL;
}

static bool libctx_init(void)
{
    static bool exit_registered;
    if (libctx != NULL)
        return true;
    /* OSSL_LIB_CTX_new() reads no configuration file: no provider the
     * host's openssl.cnf names is ever loaded here. */
    libctx = OSSL_LIB_CTX_new();
    if (libctx == NULL)
        return false;
    default_prov = OSSL_PROVIDER_load(libctx, "default");
    if (default_prov == NULL) {
        OSSL_LIB_CTX_free(libctx);
        libctx = NULL;
        return false;
    }
    if (!exit_registered)
        exit_registered = OPENSSL_atexit(libctx_exit) == 1;
    return true;
}

/* Single DES lives in OpenSSL 3's legacy provider: it is loaded into the
 * module's context only when legacy_mechanisms = yes asks for DES. */
static bool fetch_ciphers(bool legacy)
{
    if (legacy && legacy_prov == NULL &&
        (legacy_prov = OSSL_PROVIDER_load(libctx, "legacy")) == NULL)
        return false;
    for (int m = 0; m < KT_CIPHER_MODES; m++)
        for (int k = 0; k < 3; k++) {
            if (cipher_names[m][k] == NULL || ciphers[m][k] != NULL ||
                (des_mode(m) && !legacy))
                continue;
            ciphers[m][k] = EVP_CIPHER_fetch(libctx, cipher_names[m][k], NULL);
            if (ciphers[m][k] == NULL)
                return false;
        }
    return true;
}

CK_RV kt_ossl_init(bool legacy)
{
    if (!libctx_init() || !fetch_ciphers(legacy))
        return CKR_GENERAL_ERROR;
    for (int i = 0; i < KT_MD_COUNT; i++)
        if (mds[i] == NULL &&
            (mds[i] = EVP_MD_fetch(libctx, md_names[i], NULL)) == NULL)
            return CKR_GENERAL_ERROR;
    if (hmac_alg == NULL &&
        (hmac_alg = EVP_MAC_fetch(libctx, OSSL_MAC_NAME_HMAC, NULL)) == NULL)
        return CKR_GENERAL_ERROR;
    if (cmac_alg == NULL &&
        (cmac_alg = EVP_MAC_fetch(libctx, OSSL_MAC_NAME_CMAC, NULL)) == NULL)
        return CKR_GENERAL_ERROR;
    if (scrypt_alg == NULL && (scrypt_alg = EVP_KDF_fetch(
                                   libctx, OSSL_KDF_NAME_SCRYPT, NULL)) == NULL)
        return CKR_GENERAL_ERROR;
    if (hkdf_alg == NULL &&
        (hkdf_alg = EVP_KDF_fetch(libctx, OSSL_KDF_NAME_HKDF, NULL)) == NULL)
        return CKR_GENERAL_ERROR;
    return CKR_OK;
}

void kt_ossl_fini(void)
{
    for (int m = 0; m < KT_CIPHER_MODES; m++)
        for (int k = 0; k < 3; k++) {
            EVP_CIPHER_free(ciphers[m][k]);
            ciphers[m][k] = NULL;
        }
    for (int i = 0; i < KT_MD_COUNT; i++) {
        EVP_MD_free(mds[i]);
        mds[i] = NULL;
    }
    EVP_MAC_free(hmac_alg);
    hmac_alg = NULL;
    EVP_MAC_free(cmac_alg);
    cmac_alg = NULL;
    EVP_KDF_free(scrypt_alg);
    scrypt_alg = NULL;
    EVP_KDF_free(hkdf_alg);
    hkdf_alg = NULL;
    OSSL_PROVIDER_unload(legacy_prov);
    legacy_prov = NULL;
    /* The library context and its default provider stay for the life of
     * the process (the module is linked -z nodelete, as libcrypto is;
     * libctx_exit frees them at exit) and serve the next C_Initialize.
     * OpenSSL 3.0 keeps per-thread state of a context (its random generators)
     * in every thread that used it and frees it when that thread ends
     * (OPENSSL_thread_stop): a context freed here would be freed again, from a
     * host thread that outlives C_Finalize. */
}

CK_RV kt_ossl_random(unsigned char *buf, size_t len)
{
    if (len == 0)
        return CKR_OK;
    if (len > INT32_MAX || RAND_bytes_ex(libctx, buf, len, 0) != 1)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

void kt_ossl_seed(const unsigned char *buf, size_t len)
{
    /* Mixed into the context's primary generator as additional input. */
    EVP_RAND_CTX *drbg = RAND_get0_primary(libctx);
    if (len > 0 && drbg != NULL)
        KT_IGNORE_RESULT(EVP_RAND_reseed(drbg, 0, NULL, 0, buf, len));
}

void kt_ossl_cleanse(void *p, size_t len)
{
    if (p != NULL && len > 0)
        OPENSSL_cleanse(p, len);
}

int kt_ossl_memcmp(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len);
}

enum kt_secure_heap kt_ossl_secure_heap_init(size_t size)
{
    if (CRYPTO_secure_malloc_initialized())
        return KT_SECURE_HEAP_HOST;
    /* 16 bytes: the smallest block (an AES-128 key). */
    ERR_set_mark();
    int r = CRYPTO_secure_malloc_init(size, 16);
    ERR_pop_to_mark();
    return r == 1   ? KT_SECURE_HEAP_LOCKED
           : r == 2 ? KT_SECURE_HEAP_UNLOCKED
                    : KT_SECURE_HEAP_NONE;
}

void *kt_ossl_secure_malloc(size_t len)
{
    /* Without a secure heap OpenSSL would hand out ordinary memory from its
     * own allocator: the caller's fallback decides instead. */
    if (!CRYPTO_secure_malloc_initialized())
        return NULL;
    /* No file and line: a full heap raises no error on the queue. */
    return CRYPTO_secure_malloc(len, NULL, 0);
}

bool kt_ossl_secure_allocated(const void *p)
{
    /* A range check, no lock (OpenSSL 3.0). */
    return CRYPTO_secure_allocated(p) != 0;
}

size_t kt_ossl_secure_used(void)
{
    return CRYPTO_secure_used();
}

void kt_ossl_secure_clear_free(void *p, size_t len)
{
    OPENSSL_secure_clear_free(p, len);
}

/* ---- ciphers -------------------------------------------------------- */

struct kt_cipher {
    EVP_CIPHER_CTX *ctx;
    enum kt_cipher_mode mode;
    size_t key_len;
    bool encrypt;
    bool pad;
    bool iv_given;
};

CK_RV kt_ossl_cipher_new(kt_cipher **out, enum kt_cipher_mode mode,
                         const unsigned char *key, size_t key_len,
                         const unsigned char *iv, size_t iv_len, bool encrypt,
                         bool pad)
{
    int k = cipher_col(mode, key_len);
    if (k < 0)
        return CKR_KEY_SIZE_RANGE;
    if (ciphers[mode][k] == NULL)
        return CKR_MECHANISM_INVALID;
    kt_cipher *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CKR_HOST_MEMORY;
    c->mode = mode;
    c->key_len = key_len;
    c->encrypt = encrypt;
    c->pad = pad;
    c->iv_given = iv != NULL;
    c->ctx = EVP_CIPHER_CTX_new();
    if (c->ctx == NULL)
        goto fail;
    EVP_CIPHER_CTX_set_flags(c->ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_CipherInit_ex2(c->ctx, ciphers[mode][k], NULL, NULL,
                           encrypt ? 1 : 0, NULL) != 1)
        goto fail;
    if (mode == KT_AES_GCM) {
        OSSL_PARAM p[2] = {
            OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &iv_len),
            OSSL_PARAM_construct_end()};
        if (EVP_CIPHER_CTX_set_params(c->ctx, p) != 1)
            goto fail;
    } else if (iv != NULL &&
               (size_t)EVP_CIPHER_CTX_get_iv_length(c->ctx) != iv_len) {
        goto fail;
    }
    if (EVP_CipherInit_ex2(c->ctx, NULL, key, iv, encrypt ? 1 : 0, NULL) != 1)
        goto fail;
    if (block_mode(mode))
        EVP_CIPHER_CTX_set_padding(c->ctx, pad ? 1 : 0);
    *out = c;
    return CKR_OK;
fail:
    kt_ossl_cipher_free(c);
    return CKR_FUNCTION_FAILED;
}

CK_RV kt_ossl_cipher_reuse(kt_cipher **cp, enum kt_cipher_mode mode,
                           const unsigned char *key, size_t key_len,
                           bool encrypt, bool pad)
{
    kt_cipher *c = *cp;
    /* A context keyed with an explicit IV keeps it: not reused. */
    if (c != NULL && mode != KT_AES_GCM && c->mode == mode &&
        c->key_len == key_len && c->encrypt == encrypt && c->pad == pad &&
        !c->iv_given) {
        /* No algorithm: the provider context and the algorithm reference
         * stay, only the key schedule is redone. */
        if (EVP_CipherInit_ex2(c->ctx, NULL, key, NULL, encrypt ? 1 : 0,
                               NULL) == 1 &&
            (!block_mode(mode) ||
             EVP_CIPHER_CTX_set_padding(c->ctx, pad ? 1 : 0) == 1))
            return CKR_OK;
        kt_ossl_cipher_free(c);
        *cp = NULL;
        return CKR_FUNCTION_FAILED;
    }
    kt_ossl_cipher_free(c);
    *cp = NULL;
    return kt_ossl_cipher_new(cp, mode, key, key_len, NULL, 0, encrypt, pad);
}

CK_RV kt_ossl_cipher_aad(kt_cipher *c, const unsigned char *aad, size_t len)
{
    int outl = 0;
    if (len == 0)
        return CKR_OK;
    if (len > INT32_MAX ||
        EVP_CipherUpdate(c->ctx, NULL, &outl, aad, (int)len) != 1)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

CK_RV kt_ossl_cipher_update(kt_cipher *c, const unsigned char *in,
                            size_t in_len, unsigned char *out, size_t *out_len)
{
    int outl = 0;
    if (in_len > INT32_MAX - 64)
        return CKR_DATA_LEN_RANGE;
    if (EVP_CipherUpdate(c->ctx, out, &outl, in, (int)in_len) != 1)
        return (c->mode == KT_AES_WRAP || c->mode == KT_AES_WRAP_PAD) &&
                       !c->encrypt
                   ? CKR_ENCRYPTED_DATA_INVALID
                   : CKR_FUNCTION_FAILED;
    *out_len = (size_t)outl;
    return CKR_OK;
}

CK_RV kt_ossl_cipher_final(kt_cipher *c, unsigned char *out, size_t *out_len)
{
    int outl = 0;
    if (EVP_CipherFinal_ex(c->ctx, out, &outl) != 1)
        return c->encrypt ? CKR_FUNCTION_FAILED : CKR_ENCRYPTED_DATA_INVALID;
    *out_len = (size_t)outl;
    return CKR_OK;
}

CK_RV kt_ossl_cipher_get_tag(kt_cipher *c, unsigned char *tag, size_t len)
{
    if (EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_GET_TAG, (int)len, tag) != 1)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

CK_RV kt_ossl_cipher_set_tag(kt_cipher *c, const unsigned char *tag, size_t len)
{
    if (EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_SET_TAG, (int)len,
                            (void *)tag) != 1)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

void kt_ossl_cipher_free(kt_cipher *c)
{
    if (c == NULL)
        return;
    EVP_CIPHER_CTX_free(c->ctx);
    free(c);
}

CK_RV kt_ossl_seal(const unsigned char key[32], const unsigned char *aad,
                   size_t aad_len, const unsigned char *in, size_t in_len,
                   unsigned char *out)
{
    kt_cipher *c = NULL;
    size_t l1 = 0, l2 = 0;
    CK_RV nonce_rv = kt_ossl_random(out, 12), rv = nonce_rv;
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_new(&c, KT_AES_GCM, key, 32, out, 12, true, false);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_aad(c, aad, aad_len);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_update(c, in, in_len, out + 12, &l1);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_final(c, out + 12 + l1, &l2);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_get_tag(c, out + 12 + in_len, 16);
    kt_ossl_cipher_free(c);
    /* After the nonce, fixed and valid parameters: a failure is memory. */
    return rv == CKR_OK || nonce_rv != CKR_OK ? rv : CKR_HOST_MEMORY;
}

CK_RV kt_ossl_open(const unsigned char key[32], const unsigned char *aad,
                   size_t aad_len, const unsigned char *in, size_t in_len,
                   unsigned char *out)
{
    kt_cipher *c = NULL;
    size_t l1 = 0, l2 = 0;
    if (in_len < KT_SEAL_OVERHEAD)
        return CKR_ENCRYPTED_DATA_INVALID;
    size_t ct_len = in_len - KT_SEAL_OVERHEAD;
    CK_RV rv =
        kt_ossl_cipher_new(&c, KT_AES_GCM, key, 32, in, 12, false, false);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_aad(c, aad, aad_len);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_update(c, in + 12, ct_len, out, &l1);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_set_tag(c, in + 12 + ct_len, 16);
    /* Only the tag check judges the input. The steps before it have fixed,
     * valid parameters (a 32-byte key, a 12-byte nonce): OpenSSL fails them
     * only for want of memory, which is no verdict on the sealed data. */
    if (rv != CKR_OK)
        rv = CKR_HOST_MEMORY;
    else if (kt_ossl_cipher_final(c, out + l1, &l2) != CKR_OK)
        rv = CKR_ENCRYPTED_DATA_INVALID;
    if (rv != CKR_OK)
        OPENSSL_cleanse(out, ct_len);
    kt_ossl_cipher_free(c);
    return rv;
}

/* ---- digests and HMAC ----------------------------------------------- */

size_t kt_ossl_md_size(enum kt_md md)
{
    return md_sizes[md];
}

struct kt_digest {
    EVP_MD_CTX *ctx;
};

CK_RV kt_ossl_digest_new(kt_digest **out, enum kt_md md)
{
    kt_digest *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return CKR_HOST_MEMORY;
    d->ctx = EVP_MD_CTX_new();
    if (d->ctx == NULL || EVP_DigestInit_ex2(d->ctx, mds[md], NULL) != 1) {
        kt_ossl_digest_free(d);
        return CKR_FUNCTION_FAILED;
    }
    *out = d;
    return CKR_OK;
}

CK_RV kt_ossl_digest_update(kt_digest *d, const void *in, size_t len)
{
    return EVP_DigestUpdate(d->ctx, in, len) == 1 ? CKR_OK
                                                  : CKR_FUNCTION_FAILED;
}

CK_RV kt_ossl_digest_final(kt_digest *d, unsigned char *out)
{
    unsigned int l = 0;
    return EVP_DigestFinal_ex(d->ctx, out, &l) == 1 ? CKR_OK
                                                    : CKR_FUNCTION_FAILED;
}

void kt_ossl_digest_free(kt_digest *d)
{
    if (d == NULL)
        return;
    EVP_MD_CTX_free(d->ctx);
    free(d);
}

struct kt_hmac {
    EVP_MAC_CTX *ctx;
    size_t size;
};

CK_RV kt_ossl_hmac_new(kt_hmac **out, enum kt_md md, const unsigned char *key,
                       size_t key_len)
{
    kt_hmac *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return CKR_HOST_MEMORY;
    h->size = kt_ossl_md_size(md);
    h->ctx = EVP_MAC_CTX_new(hmac_alg);
    OSSL_PARAM p[2] = {OSSL_PARAM_construct_utf8_string(
                           OSSL_MAC_PARAM_DIGEST, (char *)md_names[md], 0),
                       OSSL_PARAM_construct_end()};
    /* HMAC with an empty key is legal; OpenSSL wants a non-NULL pointer. */
    static const unsigned char empty[1];
    if (h->ctx == NULL ||
        EVP_MAC_init(h->ctx, key_len ? key : empty, key_len, p) != 1) {
        kt_ossl_hmac_free(h);
        return CKR_FUNCTION_FAILED;
    }
    *out = h;
    return CKR_OK;
}

CK_RV kt_ossl_cmac_new(kt_hmac **out, bool des3, const unsigned char *key,
                       size_t key_len)
{
    const char *name = des3            ? "DES-EDE3-CBC"
                       : key_len == 16 ? "AES-128-CBC"
                       : key_len == 24 ? "AES-192-CBC"
                       : key_len == 32 ? "AES-256-CBC"
                                       : NULL;
    if (name == NULL || (des3 && key_len != 24))
        return CKR_KEY_SIZE_RANGE;
    kt_hmac *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return CKR_HOST_MEMORY;
    h->size = des3 ? 8 : 16;
    h->ctx = EVP_MAC_CTX_new(cmac_alg);
    OSSL_PARAM p[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER,
                                                        (char *)name, 0),
                       OSSL_PARAM_construct_end()};
    if (h->ctx == NULL || EVP_MAC_init(h->ctx, key, key_len, p) != 1) {
        kt_ossl_hmac_free(h);
        return CKR_FUNCTION_FAILED;
    }
    *out = h;
    return CKR_OK;
}

size_t kt_ossl_mac_size(const kt_hmac *h)
{
    return h->size;
}

CK_RV kt_ossl_hmac_update(kt_hmac *h, const void *in, size_t len)
{
    if (len == 0)
        return CKR_OK;
    return EVP_MAC_update(h->ctx, in, len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

CK_RV kt_ossl_hmac_final(kt_hmac *h, unsigned char *out)
{
    size_t l = 0;
    return EVP_MAC_final(h->ctx, out, &l, h->size) == 1 ? CKR_OK
                                                        : CKR_FUNCTION_FAILED;
}

void kt_ossl_hmac_free(kt_hmac *h)
{
    if (h == NULL)
        return;
    EVP_MAC_CTX_free(h->ctx);
    free(h);
}

CK_RV kt_ossl_hmac256(const unsigned char *key, size_t key_len, const void *p1,
                      size_t l1, const void *p2, size_t l2, const void *p3,
                      size_t l3, unsigned char out[32])
{
    kt_hmac *h = NULL;
    CK_RV rv = kt_ossl_hmac_new(&h, KT_MD_SHA256, key, key_len);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac_update(h, p1, l1);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac_update(h, p2, l2);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac_update(h, p3, l3);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac_final(h, out);
    kt_ossl_hmac_free(h);
    /* HMAC-SHA-256 takes any key and message: a failure is memory. */
    return rv == CKR_OK ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV kt_ossl_scrypt(const unsigned char *pin, size_t pin_len,
                     const unsigned char *salt, size_t salt_len, unsigned cost,
                     unsigned char *out, size_t out_len)
{
    if (cost < 1 || cost > 30)
        return CKR_ARGUMENTS_BAD;
    uint64_t n = (uint64_t)1 << cost;
    uint32_t r = 8, p = 1;
    uint64_t maxmem = 1024 * 1024 * 1024;
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(scrypt_alg);
    static const unsigned char empty[1];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_PASSWORD, (void *)(pin_len ? pin : empty), pin_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                          salt_len),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end()};
    /* The cost is checked above and r, p and maxmem are fixed: scrypt
     * fails only for want of memory (its table is 2^cost * 1 KiB). */
    CK_RV rv = CKR_OK;
    if (k == NULL || EVP_KDF_derive(k, out, out_len, params) != 1)
        rv = CKR_HOST_MEMORY;
    EVP_KDF_CTX_free(k);
    return rv;
}

void *kt_ossl_pkey_ref(void *pkey)
{
    if (pkey != NULL && EVP_PKEY_up_ref(pkey) != 1)
        return NULL;
    return pkey;
}

void kt_ossl_pkey_free(void *pkey)
{
    EVP_PKEY_free(pkey);
}

/* DES, DES2 and DES3 (PKCS#11 v2.40 §2.8): the first 3 bytes of ECB
 * encryption of a zero block, as for AES. */
static KT_NODISCARD CK_RV des_check_value(CK_KEY_TYPE kt,
                                          const unsigned char *key, size_t len,
                                          unsigned char *res)
{
    unsigned char k3[24], block[8] = {0};
    kt_cipher *c = NULL;
    size_t l = 0;
    enum kt_cipher_mode mode = kt == CKK_DES ? KT_DES_ECB : KT_DES3_ECB;
    if (kt == CKK_DES2 && len == 16) {
        memcpy(k3, key, 16);
        memcpy(k3 + 16, key, 8);
        key = k3;
        len = 24;
    }
    CK_RV rv = kt_ossl_cipher_new(&c, mode, key, len, NULL, 0, true, false);
    if (rv == CKR_OK)
        rv = kt_ossl_cipher_update(c, block, 8, res, &l);
    kt_ossl_cipher_free(c);
    OPENSSL_cleanse(k3, sizeof(k3));
    return rv;
}

CK_RV kt_ossl_check_value(CK_KEY_TYPE kt, const unsigned char *key, size_t len,
                          kt_cipher **reuse, unsigned char out[3])
{
    unsigned char block[64] = {0}, res[64];
    CK_RV rv = CKR_OK;
    if (kt == CKK_AES) {
        kt_cipher *c = NULL;
        size_t l = 0;
        rv = kt_ossl_cipher_reuse(reuse != NULL ? reuse : &c, KT_AES_ECB, key,
                                  len, true, false);
        if (reuse != NULL)
            c = *reuse;
        if (rv == CKR_OK)
            rv = kt_ossl_cipher_update(c, block, 16, res, &l);
        /* A kept context holds no key schedule of this key afterwards. */
        if (reuse != NULL && c != NULL &&
            (rv != CKR_OK || kt_ossl_cipher_reuse(reuse, KT_AES_ECB, block, len,
                                                  true, false) != CKR_OK)) {
            kt_ossl_cipher_free(*reuse);
            *reuse = NULL;
        }
        if (reuse == NULL)
            kt_ossl_cipher_free(c);
    } else if (kt == CKK_DES || kt == CKK_DES2 || kt == CKK_DES3) {
        rv = des_check_value(kt, key, len, res);
    } else {
        unsigned int l = 0;
        EVP_MD *sha1 = EVP_MD_fetch(libctx, "SHA1", NULL);
        if (sha1 == NULL || EVP_Digest(key, len, res, &l, sha1, NULL) != 1)
            rv = CKR_FUNCTION_FAILED;
        EVP_MD_free(sha1);
    }
    if (rv == CKR_OK)
        memcpy(out, res, 3);
    OPENSSL_cleanse(res, sizeof(res));
    return rv;
}

/* ---- X25519 and HKDF: the master key boxed to each PIN role --------- */

CK_RV kt_ossl_x25519_keygen(unsigned char priv[32], unsigned char pub[32])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, "X25519", NULL);
    EVP_PKEY *k = NULL;
    size_t pl = 32, ql = 32;
    /* No input to judge: a failure is memory (or the random generator, whose
     * own failures kt_ossl_random reports where they matter). */
    CK_RV rv = CKR_HOST_MEMORY;
    if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
        EVP_PKEY_generate(ctx, &k) == 1 &&
        EVP_PKEY_get_raw_private_key(k, priv, &pl) == 1 && pl == 32 &&
        EVP_PKEY_get_raw_public_key(k, pub, &ql) == 1 && ql == 32)
        rv = CKR_OK;
    if (rv != CKR_OK)
        OPENSSL_cleanse(priv, 32);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

CK_RV kt_ossl_x25519_public(const unsigned char priv[32], unsigned char pub[32])
{
    EVP_PKEY *k =
        EVP_PKEY_new_raw_private_key_ex(libctx, "X25519", NULL, priv, 32);
    size_t ql = 32;
    /* Every 32-byte string is an X25519 private key: a failure is memory. */
    CK_RV rv =
        k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &ql) == 1 && ql == 32
            ? CKR_OK
            : CKR_HOST_MEMORY;
    EVP_PKEY_free(k);
    return rv;
}

/* The failure just seen was OpenSSL refusing an all-zero shared secret (a
 * small-order peer: the only failure that judges the keys); any other
 * (allocations, whose error may not even be recorded) is memory. */
static bool small_order_refused(void)
{
    bool found = false;
    for (unsigned long e; (e = ERR_get_error()) != 0;)
        found = found || (ERR_GET_LIB(e) == ERR_LIB_PROV &&
                          ERR_GET_REASON(e) == PROV_R_FAILED_DURING_DERIVATION);
    return found;
}

CK_RV kt_ossl_x25519(const unsigned char priv[32], const unsigned char peer[32],
                     unsigned char shared[32])
{
    EVP_PKEY *k =
        EVP_PKEY_new_raw_private_key_ex(libctx, "X25519", NULL, priv, 32);
    EVP_PKEY *p =
        EVP_PKEY_new_raw_public_key_ex(libctx, "X25519", NULL, peer, 32);
    EVP_PKEY_CTX *ctx =
        k != NULL ? EVP_PKEY_CTX_new_from_pkey(libctx, k, NULL) : NULL;
    size_t len = 32;
    CK_RV rv = CKR_HOST_MEMORY;
    ERR_clear_error();
    if (ctx != NULL && p != NULL && EVP_PKEY_derive_init(ctx) == 1 &&
        EVP_PKEY_derive_set_peer(ctx, p) == 1 &&
        EVP_PKEY_derive(ctx, shared, &len) == 1 && len == 32)
        rv = CKR_OK;
    else if (small_order_refused())
        rv = CKR_DATA_INVALID;
    ERR_clear_error();
    if (rv != CKR_OK)
        OPENSSL_cleanse(shared, 32);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(p);
    EVP_PKEY_free(k);
    return rv;
}

CK_RV kt_ossl_hkdf256(const unsigned char *ikm, size_t ikm_len,
                      const unsigned char *salt, size_t salt_len,
                      const unsigned char *info, size_t info_len,
                      unsigned char *out, size_t out_len)
{
    EVP_KDF *alg = EVP_KDF_fetch(libctx, OSSL_KDF_NAME_HKDF, NULL);
    EVP_KDF_CTX *k = alg != NULL ? EVP_KDF_CTX_new(alg) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm,
                                          ikm_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                          salt_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                          info_len),
        OSSL_PARAM_construct_end(),
    };
    /* SHA-256 and 32-byte keys: HKDF fails only for want of memory. */
    CK_RV rv = k != NULL && EVP_KDF_derive(k, out, out_len, params) == 1
                   ? CKR_OK
                   : CKR_HOST_MEMORY;
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(alg);
    return rv;
}

CK_RV kt_ossl_hkdf(enum kt_md md, enum kt_hkdf_mode mode,
                   const unsigned char *ikm, size_t ikm_len,
                   const unsigned char *salt, size_t salt_len,
                   const unsigned char *info, size_t info_len,
                   unsigned char *out, size_t out_len)
{
    static const unsigned char empty[1];
    int m = mode == KT_HKDF_EXTRACT  ? EVP_KDF_HKDF_MODE_EXTRACT_ONLY
            : mode == KT_HKDF_EXPAND ? EVP_KDF_HKDF_MODE_EXPAND_ONLY
                                     : EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(hkdf_alg);
    OSSL_PARAM params[6];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                   (char *)md_names[md], 0);
    params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &m);
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_KEY, (void *)(ikm_len ? ikm : empty), ikm_len);
    /* No salt: RFC 5869 uses hLen zero bytes, as OpenSSL does. */
    if (salt_len > 0)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                        (void *)salt, salt_len);
    if (info_len > 0)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                        (void *)info, info_len);
    params[n] = OSSL_PARAM_construct_end();
    CK_RV rv = k != NULL && EVP_KDF_derive(k, out, out_len, params) == 1
                   ? CKR_OK
                   : CKR_FUNCTION_FAILED;
    EVP_KDF_CTX_free(k);
    return rv;
}

void kt_ossl_des_parity(unsigned char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char b = key[i] & 0xfe;
        key[i] = b | (unsigned char)(__builtin_parity(b) ^ 1);
    }
}
