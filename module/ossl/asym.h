/*
 * Thin OpenSSL 3 wrappers for the asymmetric families of the token: RSA and
 * EC key generation, conversion between PKCS#11 attribute values and
 * EVP_PKEYs, signatures, RSA encryption (PKCS#1 v1.5, OAEP) and ECDH.
 *
 * Everything here speaks PKCS#11 (CK_RV, CK_MECHANISM) on one side and
 * EVP_PKEY on the other; nothing here knows about sessions, objects or the
 * store. An EVP_PKEY built here is immutable after construction and may be
 * used by many threads at once (each operation gets its own context), which
 * is what lets the core cache one per object and run crypto without a lock.
 */
#ifndef KT_OSSL_ASYM_H
#define KT_OSSL_ASYM_H

#include <stddef.h>
#include <p11-kit/pkcs11.h>
#include <openssl/evp.h>

#include "ossl.h" /* KT_NODISCARD */

#define KT_RSA_MIN_BITS 2048
#define KT_RSA_MAX_BITS 4096
/* The smallest RSA modulus with legacy_mechanisms = yes (what
 * google/pkcs11test and OpenSC's p11test generate). */
#define KT_RSA_LEGACY_MIN_BITS 1024
#define KT_EC_MIN_BITS         256
#define KT_EC_MAX_BITS         521
/* Edwards and Montgomery curves: 255 (Ed25519, X25519) and 448 bits, the
 * sizes PKCS#11 tools give for them. */
#define KT_ECX_MIN_BITS 255
#define KT_ECX_MAX_BITS 448

#include "pkcs11v3.h" /* 3.0 mechanism and key type names */

/* CK_EDDSA_PARAMS (PKCS#11 3.0 §2.3.14), under a name of our own. */
struct kt_eddsa_params {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
};

/* The smallest RSA modulus accepted for generation, import and use:
 * KT_RSA_MIN_BITS, or KT_RSA_LEGACY_MIN_BITS once legacy is set (by
 * kt_schema_legacy_set, at C_Initialize). */
void kt_ossl_rsa_legacy_set(int on);
CK_ULONG kt_ossl_rsa_min_bits(void);
/* MD5_RSA_PKCS is refused unless legacy is set (the mechanism table hides
 * it too). */
int kt_ossl_asym_legacy(void);

/* A heap buffer that is wiped when freed (key components, shared secrets). */
typedef struct kt_ossl_buf {
    unsigned char *data;
    size_t len;
} kt_ossl_buf;

void kt_ossl_buf_free(kt_ossl_buf *buf);

/*
 * RSA components as big-endian unsigned integers, the form of CKA_MODULUS,
 * CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1 ... A NULL data
 * pointer means "absent".
 */
typedef struct kt_rsa_parts {
    kt_ossl_buf n, e, d, p, q, dp, dq, qinv;
} kt_rsa_parts;

void kt_rsa_parts_free(kt_rsa_parts *parts);

/*
 * EC components: params is the DER of CKA_EC_PARAMS as the token stores it
 * (always the named-curve OID), point is CKA_EC_POINT (a DER OCTET STRING
 * around the uncompressed point), value is CKA_VALUE of the private key
 * (big-endian, padded to the order's length).
 *
 * The same struct carries CKK_EC_EDWARDS and CKK_EC_MONTGOMERY keys
 * (PKCS#11 3.0 §2.3.6-2.3.8): params the RFC 8410 OID, point a DER OCTET
 * STRING around the raw public key (32, 57, 32 or 56 bytes for Ed25519,
 * Ed448, X25519, X448; the raw key alone is accepted on import), value the
 * raw private key (RFC 8032 / RFC 7748 bytes). kt_ossl_ec_export and
 * kt_ossl_ec_import are the EVP_PKEY <-> attributes conversions of all
 * three key types.
 */
typedef struct kt_ec_parts {
    kt_ossl_buf params, point, value;
} kt_ec_parts;

void kt_ec_parts_free(kt_ec_parts *parts);

/*
 * DSA components: p, q, g (CKA_PRIME, CKA_SUBPRIME, CKA_BASE) and value
 * (CKA_VALUE: y of a public key, x of a private key), big-endian. DSA is
 * offered with legacy_mechanisms = yes only (FIPS 186-5 no longer approves
 * DSA signatures): p of 1024 to 3072 bits, q of 160, 224 or 256.
 */
#define KT_DSA_MIN_BITS 1024
#define KT_DSA_MAX_BITS 3072
typedef struct kt_dsa_parts {
    kt_ossl_buf p, q, g, value;
} kt_dsa_parts;

void kt_dsa_parts_free(kt_dsa_parts *parts);

/* A DSA key pair on the domain p, q, g (value unused):
 * CKR_ATTRIBUTE_VALUE_INVALID for a domain OpenSSL refuses,
 * CKR_KEY_SIZE_RANGE for sizes outside the ones above. */
KT_NODISCARD CK_RV kt_ossl_dsa_generate(const kt_dsa_parts *domain,
                                        EVP_PKEY **out);
/* with_private: value is x (the private object's CKA_VALUE), else y. */
KT_NODISCARD CK_RV kt_ossl_dsa_export(const EVP_PKEY *key, int with_private,
                                      kt_dsa_parts *out);
/* Private: p, q, g, x (y computed); public: p, q, g, y. */
KT_NODISCARD CK_RV kt_ossl_dsa_import(const kt_dsa_parts *parts, int is_private,
                                      EVP_PKEY **out);

/*
 * PKCS#3 Diffie-Hellman keys (CKK_DH) in the same struct: p and g
 * (CKA_PRIME, CKA_BASE; q unused), value y or x. With legacy_mechanisms =
 * yes only, p of 1024 to 8192 bits.
 */
#define KT_DH_MIN_BITS 1024
#define KT_DH_MAX_BITS 8192
KT_NODISCARD CK_RV kt_ossl_dh_generate(const kt_dsa_parts *domain,
                                       EVP_PKEY **out);
KT_NODISCARD CK_RV kt_ossl_dh_export(const EVP_PKEY *key, int with_private,
                                     kt_dsa_parts *out);
KT_NODISCARD CK_RV kt_ossl_dh_import(const kt_dsa_parts *parts, int is_private,
                                     EVP_PKEY **out);
/* CKM_DH_PKCS_DERIVE (the parameter is the peer's y): Z, as long as p,
 * cut to its first len bytes when len is not 0. */
KT_NODISCARD CK_RV kt_ossl_dh_derive(EVP_PKEY *priv, const CK_MECHANISM *mech,
                                     size_t len, kt_ossl_buf *secret);

/* Key generation. bits in [kt_ossl_rsa_min_bits(), 4096] and a multiple of 8;
 * exponent odd and
 * >= 3 (NULL/0 means 65537). */
KT_NODISCARD CK_RV kt_ossl_rsa_generate(CK_ULONG bits, const unsigned char *exp,
                                        size_t exp_len, EVP_PKEY **out);

/* params: CKA_EC_PARAMS as the caller sent it (named-curve OID DER, or a DER
 * PrintableString with a curve name, as some tools send). Weierstrass
 * curves (P-256/384/521, secp256k1, brainpoolP256r1/384r1/512r1) give an
 * EC key, edwards25519/448 an Ed25519/Ed448 key, curve25519/448 an
 * X25519/X448 key (kt_ossl_key_type tells which). */
KT_NODISCARD CK_RV kt_ossl_ec_generate(const unsigned char *params,
                                       size_t params_len, EVP_PKEY **out);

/* Canonical CKA_EC_PARAMS (OID DER; RFC 8410 OIDs for the Edwards and
 * Montgomery curves) for what a caller sent, or CKR_CURVE_NOT_SUPPORTED /
 * CKR_ATTRIBUTE_VALUE_INVALID. */
KT_NODISCARD CK_RV kt_ossl_ec_params_canon(const unsigned char *params,
                                           size_t params_len,
                                           kt_ossl_buf *canon);
/* The key type a curve makes: CKK_EC, CKK_EC_EDWARDS or CKK_EC_MONTGOMERY
 * (errors as kt_ossl_ec_params_canon). */
KT_NODISCARD CK_RV kt_ossl_ec_params_key_type(const unsigned char *params,
                                              size_t params_len,
                                              CK_KEY_TYPE *type);

/* Components out of a key: with_private selects whether the private parts
 * are exported too (only for storing them sealed). */
KT_NODISCARD CK_RV kt_ossl_rsa_export(const EVP_PKEY *key, int with_private,
                                      kt_rsa_parts *out);
KT_NODISCARD CK_RV kt_ossl_ec_export(const EVP_PKEY *key, int with_private,
                                     kt_ec_parts *out);

/* Keys from components. RSA private: n, e, d required; p, q, dp, dq, qinv
 * all or none. RSA public: n, e. EC private: params, value (point optional,
 * computed when absent). EC public: params, point (DER OCTET STRING or the
 * raw point). Bad values give CKR_ATTRIBUTE_VALUE_INVALID (or
 * CKR_CURVE_NOT_SUPPORTED, CKR_TEMPLATE_INCOMPLETE). */
KT_NODISCARD CK_RV kt_ossl_rsa_import(const kt_rsa_parts *parts, int is_private,
                                      EVP_PKEY **out);
KT_NODISCARD CK_RV kt_ossl_ec_import(const kt_ec_parts *parts, int is_private,
                                     EVP_PKEY **out);

/* CKA_PUBLIC_KEY_INFO: DER SubjectPublicKeyInfo of the key's public half. */
KT_NODISCARD CK_RV kt_ossl_spki(const EVP_PKEY *key, kt_ossl_buf *out);

/* A CKA_ID for a key pair generated without one: SHA-1 of the modulus
 * (RSA) or of the encoded public point (EC), as NSS and OpenSC make it. */
#define KT_KEY_ID_LEN 20
KT_NODISCARD CK_RV kt_ossl_key_id(const EVP_PKEY *key,
                                  unsigned char id[KT_KEY_ID_LEN]);

/* An X.509 certificate (CKA_VALUE of a CKC_X_509 object): the DER of its
 * subject and issuer names and of its serial number INTEGER, as
 * CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER hold them.
 * CKR_ATTRIBUTE_VALUE_INVALID unless der is exactly one certificate. */
typedef struct kt_cert_fields {
    kt_ossl_buf subject, issuer, serial;
} kt_cert_fields;
KT_NODISCARD CK_RV kt_ossl_cert_fields(const unsigned char *der, size_t len,
                                       kt_cert_fields *out);
void kt_cert_fields_free(kt_cert_fields *f);

/* References on a parsed key (the cache hands them to operations). Keys
 * holding private parts are wiped by OpenSSL when the last reference goes. */
EVP_PKEY *kt_ossl_key_ref(EVP_PKEY *key);
void kt_ossl_key_unref(EVP_PKEY *key);
/* Does the key hold its private half? */
int kt_ossl_key_is_private(const EVP_PKEY *key);

/* CKK_RSA, CKK_EC, CKK_EC_EDWARDS, CKK_EC_MONTGOMERY, CKK_DSA, CKK_DH, or
 * CKK_VENDOR_DEFINED for anything else. */
CK_KEY_TYPE kt_ossl_key_type(const EVP_PKEY *key);
/* RSA modulus bits, EC order bits (253/456/253/448 for the Edwards and
 * Montgomery keys, as OpenSSL counts them). */
CK_ULONG kt_ossl_key_bits(const EVP_PKEY *key);

/* Operations. One kt_asym_op per C_*Init; freed by the caller when the
 * operation ends (successfully or not). */
typedef enum kt_asym_mode {
    KT_ASYM_SIGN,
    KT_ASYM_VERIFY,
    KT_ASYM_ENCRYPT,
    KT_ASYM_DECRYPT,
} kt_asym_mode;

typedef struct kt_asym_op kt_asym_op;

/* Is mech one of the asymmetric mechanisms handled here, and for which key
 * type (CKK_RSA / CKK_EC / CKK_EC_EDWARDS)? */
int kt_ossl_asym_mech_known(CK_MECHANISM_TYPE mech, CK_KEY_TYPE *key_type);
/* Does the mechanism allow C_SignUpdate/C_VerifyUpdate? */
int kt_ossl_asym_mech_multipart(CK_MECHANISM_TYPE mech);

/* A parsed key with its facts (type, size, private half) and the
 * initialised operation contexts later operations duplicate: what the
 * token caches per key object. Thread-safe; takes a reference on pkey. */
typedef struct kt_asym_key kt_asym_key;
KT_NODISCARD CK_RV kt_ossl_asym_key_new(EVP_PKEY *pkey, kt_asym_key **out);
void kt_ossl_asym_key_free(kt_asym_key *k);
EVP_PKEY *kt_ossl_asym_key_pkey(const kt_asym_key *k);
/* kt_ossl_asym_init on a cached key. */
KT_NODISCARD CK_RV kt_ossl_asym_init_key(const CK_MECHANISM *mech,
                                         kt_asym_key *key, kt_asym_mode mode,
                                         kt_asym_op **out);

/* Validates the mechanism and its parameter against the key and mode:
 * CKR_MECHANISM_INVALID, CKR_MECHANISM_PARAM_INVALID,
 * CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_SIZE_RANGE. Takes a reference on key. */
KT_NODISCARD CK_RV kt_ossl_asym_init(const CK_MECHANISM *mech, EVP_PKEY *key,
                                     kt_asym_mode mode, kt_asym_op **out);
void kt_ossl_asym_free(kt_asym_op *op);

/* Exact signature length for sign/verify; maximum output length for
 * encrypt/decrypt. */
size_t kt_ossl_asym_out_len(const kt_asym_op *op);

/* Single-part sign/verify (the whole message, or for CKM_RSA_PKCS,
 * CKM_RSA_PKCS_PSS and CKM_ECDSA the already hashed input). sig must hold
 * kt_ossl_asym_out_len() bytes; *sig_len receives the length written. */
KT_NODISCARD CK_RV kt_ossl_asym_sign(kt_asym_op *op, const unsigned char *data,
                                     size_t len, unsigned char *sig,
                                     size_t *sig_len);
/* CKR_OK, CKR_SIGNATURE_INVALID or CKR_SIGNATURE_LEN_RANGE. */
KT_NODISCARD CK_RV kt_ossl_asym_verify(kt_asym_op *op,
                                       const unsigned char *data, size_t len,
                                       const unsigned char *sig,
                                       size_t sig_len);

/* Multi-part forms (hashing mechanisms only). */
KT_NODISCARD CK_RV kt_ossl_asym_update(kt_asym_op *op,
                                       const unsigned char *data, size_t len);
KT_NODISCARD CK_RV kt_ossl_asym_sign_final(kt_asym_op *op, unsigned char *sig,
                                           size_t *sig_len);
KT_NODISCARD CK_RV kt_ossl_asym_verify_final(kt_asym_op *op,
                                             const unsigned char *sig,
                                             size_t sig_len);

/* RSA encryption. Encrypt: out must hold kt_ossl_asym_out_len() bytes;
 * CKR_DATA_LEN_RANGE when the input is too long. Decrypt: *out_len is the
 * capacity of out on entry (CKR_BUFFER_TOO_SMALL with the needed length in
 * *out_len, nothing written, when short); CKR_ENCRYPTED_DATA_LEN_RANGE for a
 * wrong input length, CKR_ENCRYPTED_DATA_INVALID for bad padding (nothing
 * written to out in either case). */
KT_NODISCARD CK_RV kt_ossl_asym_encrypt(kt_asym_op *op, const unsigned char *in,
                                        size_t in_len, unsigned char *out,
                                        size_t *out_len);
KT_NODISCARD CK_RV kt_ossl_asym_decrypt(kt_asym_op *op, const unsigned char *in,
                                        size_t in_len, unsigned char *out,
                                        size_t *out_len);

/* CKM_ECDH1_DERIVE / CKM_ECDH1_COFACTOR_DERIVE (CK_ECDH1_DERIVE_PARAMS)
 * between an EC private key and the peer point (raw or as a DER OCTET
 * STRING), or CKM_ECDH1_DERIVE between an X25519/X448 private key and the
 * peer's raw public key. With CKD_NULL (no shared data) the secret is Z
 * (the x coordinate, or the X25519/X448 output), cut to its first len
 * bytes when len is not 0 (CKR_TEMPLATE_INCONSISTENT when len exceeds Z).
 * With CKD_SHA1_KDF, CKD_SHA224/256/384/512_KDF the secret is len bytes
 * (the hash length when len is 0) of the ANSI X9.63 KDF over Z and the
 * shared data. */
KT_NODISCARD CK_RV kt_ossl_ecdh_derive(EVP_PKEY *priv, const CK_MECHANISM *mech,
                                       size_t len, kt_ossl_buf *secret);

#endif
