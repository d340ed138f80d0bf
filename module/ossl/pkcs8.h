/* PKCS#8 PrivateKeyInfo (RFC 5208) of the token's private keys: what
 * C_WrapKey encrypts and C_UnwrapKey decrypts for RSA and EC keys. Only
 * OpenSSL's encoders and decoders touch the DER; any key type OpenSSL
 * knows passes through unchanged, and the caller decides which it takes. */
#ifndef KT_OSSL_PKCS8_H
#define KT_OSSL_PKCS8_H

#include <stdbool.h>
#include <stddef.h>
#include <p11-kit/pkcs11.h>
#include <openssl/evp.h>

#include "ossl.h" /* KT_NODISCARD */

/* The PrivateKeyInfo DER of a private key, in a buffer from alloc (the
 * caller's secure allocator; the caller wipes and frees it).
 * CKR_KEY_NOT_WRAPPABLE for a key without its private half or one OpenSSL
 * cannot encode. */
KT_NODISCARD CK_RV kt_ossl_pkcs8_encode(const EVP_PKEY *key,
                                        void *(*alloc)(size_t),
                                        unsigned char **der, size_t *len);

/* The private key a PrivateKeyInfo DER holds, made in the module's library
 * context: exactly one unencrypted PrivateKeyInfo, no trailing bytes, with
 * its private half; CKR_WRAPPED_KEY_INVALID otherwise. */
KT_NODISCARD CK_RV kt_ossl_pkcs8_decode(const unsigned char *der, size_t len,
                                        EVP_PKEY **out);

/* The length of the DER SEQUENCE (header and contents) at the start of p,
 * as OpenSSL's ASN.1 parser reads its header; 0 when p starts with no
 * definite-length SEQUENCE that fits in len. */
size_t kt_ossl_der_seq_len(const unsigned char *p, size_t len);

/* Is p, all len bytes of it, a PrivateKeyInfo? The header is read first,
 * so a value that is none costs no decoder. */
bool kt_ossl_is_pkcs8(const unsigned char *p, size_t len);

/* The key's security strength in bits (SP 800-57 Part 1 table 2 as OpenSSL
 * computes it: RSA-2048 112, RSA-3072 128, RSA-4096 152, an EC key half its
 * order's bits), 0 when unknown. */
unsigned kt_ossl_key_strength(const EVP_PKEY *key);

#endif
