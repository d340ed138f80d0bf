/* Thin OpenSSL wrappers: the only code of the module that calls OpenSSL. */
#ifndef KT_OSSL_H
#define KT_OSSL_H

#include <stdbool.h>
#include <stddef.h>
#include <p11-kit/pkcs11.h>

#include "nodiscard.h"

/* legacy: the legacy provider joins the module's context too (single DES,
 * for legacy_mechanisms = yes); CKR_GENERAL_ERROR when it cannot load. */
KT_NODISCARD CK_RV kt_ossl_init(bool legacy);
void kt_ossl_fini(void);
/* The module's private library context (the default provider, and the
 * legacy provider with legacy_mechanisms = yes), for every
 * fetch and every key the module makes; NULL before kt_ossl_init. */
struct ossl_lib_ctx_st *kt_ossl_libctx(void);

KT_NODISCARD CK_RV kt_ossl_random(unsigned char *buf, size_t len);
void kt_ossl_seed(const unsigned char *buf, size_t len);
void kt_ossl_cleanse(void *p, size_t len);
int kt_ossl_memcmp(const void *a, const void *b, size_t len);

/* OpenSSL's secure heap (process-wide: the host's when it made one). */
enum kt_secure_heap {
    KT_SECURE_HEAP_NONE,     /* could not be made */
    KT_SECURE_HEAP_LOCKED,   /* made here, mlock'ed, excluded from dumps */
    KT_SECURE_HEAP_UNLOCKED, /* made here, mlock or madvise failed */
    KT_SECURE_HEAP_HOST,     /* the host process's own */
};
enum kt_secure_heap kt_ossl_secure_heap_init(size_t size);
/* NULL when the secure heap is missing or full (nothing left on the error
 * queue). */
void *kt_ossl_secure_malloc(size_t len);
bool kt_ossl_secure_allocated(const void *p);
/* Bytes of the secure heap in use, by anyone in the process. */
size_t kt_ossl_secure_used(void);
/* p from kt_ossl_secure_malloc: cleared and freed. */
void kt_ossl_secure_clear_free(void *p, size_t len);

enum kt_cipher_mode {
    KT_AES_ECB,
    KT_AES_CBC,
    KT_AES_GCM,
    KT_AES_WRAP,     /* RFC 3394 */
    KT_AES_WRAP_PAD, /* RFC 5649 */
    KT_AES_CTR,      /* iv: the 16-byte counter block */
    KT_DES_ECB,      /* 8-byte keys (legacy provider) */
    KT_DES_CBC,
    KT_DES3_ECB, /* 24-byte keys (a two-key DES2 key given as K1 K2 K1) */
    KT_DES3_CBC,
    KT_CIPHER_MODES,
};
typedef struct kt_cipher kt_cipher;
/* pad: PKCS#7 padding for ECB/CBC. iv may be NULL for the wrap modes'
 * default IVs. */
KT_NODISCARD CK_RV kt_ossl_cipher_new(kt_cipher **c, enum kt_cipher_mode mode,
                                      const unsigned char *key, size_t key_len,
                                      const unsigned char *iv, size_t iv_len,
                                      bool encrypt, bool pad);
/* *c re-keyed if it is a context of this mode, key size, direction and
 * padding made without an explicit IV: no allocation and no reference on
 * the shared algorithm object (a session repeating an operation); replaced
 * with a new context otherwise. Not for GCM. *c stays the caller's (NULL
 * after a failure). */
KT_NODISCARD CK_RV kt_ossl_cipher_reuse(kt_cipher **c, enum kt_cipher_mode mode,
                                        const unsigned char *key,
                                        size_t key_len, bool encrypt, bool pad);
KT_NODISCARD CK_RV kt_ossl_cipher_aad(kt_cipher *c, const unsigned char *aad,
                                      size_t len);
/* out must hold in_len + 16 (block modes) / in_len + 8 (wrap). */
KT_NODISCARD CK_RV kt_ossl_cipher_update(kt_cipher *c, const unsigned char *in,
                                         size_t in_len, unsigned char *out,
                                         size_t *out_len);
/* CKR_ENCRYPTED_DATA_INVALID when padding or a tag does not check. */
KT_NODISCARD CK_RV kt_ossl_cipher_final(kt_cipher *c, unsigned char *out,
                                        size_t *out_len);
KT_NODISCARD CK_RV kt_ossl_cipher_get_tag(kt_cipher *c, unsigned char *tag,
                                          size_t len);
KT_NODISCARD CK_RV kt_ossl_cipher_set_tag(kt_cipher *c,
                                          const unsigned char *tag, size_t len);
void kt_ossl_cipher_free(kt_cipher *c);

/* AES-256-GCM sealing of stored secrets: out = nonce(12) | ct | tag(16).
 * kt_ossl_open: CKR_ENCRYPTED_DATA_INVALID only when the input does not
 * authenticate; CKR_HOST_MEMORY when OpenSSL could not allocate. */
#define KT_SEAL_OVERHEAD 28
KT_NODISCARD CK_RV kt_ossl_seal(const unsigned char key[32],
                                const unsigned char *aad, size_t aad_len,
                                const unsigned char *in, size_t in_len,
                                unsigned char *out);
KT_NODISCARD CK_RV kt_ossl_open(const unsigned char key[32],
                                const unsigned char *aad, size_t aad_len,
                                const unsigned char *in, size_t in_len,
                                unsigned char *out);

enum kt_md {
    KT_MD_SHA256,
    KT_MD_SHA384,
    KT_MD_SHA512,
    KT_MD_SHA1,
    KT_MD_SHA224,
    KT_MD_SHA3_224,
    KT_MD_SHA3_256,
    KT_MD_SHA3_384,
    KT_MD_SHA3_512,
    KT_MD_MD5,
    KT_MD_COUNT,
};
size_t kt_ossl_md_size(enum kt_md md);

typedef struct kt_digest kt_digest;
KT_NODISCARD CK_RV kt_ossl_digest_new(kt_digest **d, enum kt_md md);
KT_NODISCARD CK_RV kt_ossl_digest_update(kt_digest *d, const void *in,
                                         size_t len);
KT_NODISCARD CK_RV kt_ossl_digest_final(kt_digest *d, unsigned char *out);
void kt_ossl_digest_free(kt_digest *d);

typedef struct kt_hmac kt_hmac;
KT_NODISCARD CK_RV kt_ossl_hmac_new(kt_hmac **h, enum kt_md md,
                                    const unsigned char *key, size_t key_len);
/* CMAC (SP 800-38B) under AES (16, 24 or 32-byte keys) or, des3, under
 * three-key DES3 (24-byte keys); the same context type as HMAC. */
KT_NODISCARD CK_RV kt_ossl_cmac_new(kt_hmac **h, bool des3,
                                    const unsigned char *key, size_t key_len);
/* The full MAC length of the context. */
size_t kt_ossl_mac_size(const kt_hmac *h);
KT_NODISCARD CK_RV kt_ossl_hmac_update(kt_hmac *h, const void *in, size_t len);
KT_NODISCARD CK_RV kt_ossl_hmac_final(kt_hmac *h, unsigned char *out);
void kt_ossl_hmac_free(kt_hmac *h);
/* One-shot HMAC-SHA-256 over the concatenation of up to 3 parts. */
KT_NODISCARD CK_RV kt_ossl_hmac256(const unsigned char *key, size_t key_len,
                                   const void *p1, size_t l1, const void *p2,
                                   size_t l2, const void *p3, size_t l3,
                                   unsigned char out[32]);

/* CKA_CHECK_VALUE of a secret key (PKCS#11 v2.40 §2.8 / §2.3.1): AES: the
 * first 3 bytes of AES-ECB(key, zero block); others: of SHA-1(key). */
/* reuse: a context kept by the caller for the AES case (re-keyed with
 * zeros afterwards), or NULL. */
KT_NODISCARD CK_RV kt_ossl_check_value(CK_KEY_TYPE kt, const unsigned char *key,
                                       size_t len, kt_cipher **reuse,
                                       unsigned char out[3]);

/* Reference counting of cached EVP_PKEYs (void * outside ossl/). */
void *kt_ossl_pkey_ref(void *pkey);
void kt_ossl_pkey_free(void *pkey);

/* scrypt with N = 2^cost, r = 8, p = 1. */
KT_NODISCARD CK_RV kt_ossl_scrypt(const unsigned char *pin, size_t pin_len,
                                  const unsigned char *salt, size_t salt_len,
                                  unsigned cost, unsigned char *out,
                                  size_t out_len);

/* X25519 key pairs (raw 32-byte keys) and the shared secret; CKR_DATA_
 * INVALID on a peer key of small order. HKDF-SHA-256 (RFC 5869). The
 * record primitives (these, kt_ossl_hmac256, kt_ossl_scrypt) answer
 * CKR_HOST_MEMORY when OpenSSL could not allocate. Used only
 * when a PIN changes or a role logs in, so the algorithms are fetched per
 * call. */
KT_NODISCARD CK_RV kt_ossl_x25519_keygen(unsigned char priv[32],
                                         unsigned char pub[32]);
KT_NODISCARD CK_RV kt_ossl_x25519_public(const unsigned char priv[32],
                                         unsigned char pub[32]);
KT_NODISCARD CK_RV kt_ossl_x25519(const unsigned char priv[32],
                                  const unsigned char peer[32],
                                  unsigned char shared[32]);
KT_NODISCARD CK_RV kt_ossl_hkdf256(const unsigned char *ikm, size_t ikm_len,
                                   const unsigned char *salt, size_t salt_len,
                                   const unsigned char *info, size_t info_len,
                                   unsigned char *out, size_t out_len);

/* HKDF (RFC 5869) on hash md: extract and expand (out_len bytes), extract
 * only (out_len = the hash size: the PRK) or expand only (ikm = the PRK). */
enum kt_hkdf_mode { KT_HKDF_BOTH, KT_HKDF_EXTRACT, KT_HKDF_EXPAND };
KT_NODISCARD CK_RV kt_ossl_hkdf(enum kt_md md, enum kt_hkdf_mode mode,
                                const unsigned char *ikm, size_t ikm_len,
                                const unsigned char *salt, size_t salt_len,
                                const unsigned char *info, size_t info_len,
                                unsigned char *out, size_t out_len);
/* Sets the odd parity bit of every byte of a DES key (FIPS 46-3). */
void kt_ossl_des_parity(unsigned char *key, size_t len);

#endif
