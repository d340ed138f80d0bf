/* RSA and EC keys in the token: the operations of the asymmetric
 * mechanisms, key pair generation, completion of imported keys and
 * certificates, and ECDH. */
#ifndef KT_ASYM_H
#define KT_ASYM_H

#include "kt.h"

/* Sign/verify/encrypt/decrypt (and through them wrap/unwrap) of every
 * RSA and EC mechanism of the table. */
extern const struct kt_mech_ops kt_ops_asym;

/* C_GenerateKeyPair: pub and priv are templates completed by
 * kt_schema_create (KT_CREATE_GENERATE); adds the key material and every
 * derived public attribute (CKA_MODULUS, CKA_EC_POINT, CKA_PUBLIC_KEY_INFO
 * ... on both halves) and a shared CKA_ID when none was given. */
KT_NODISCARD CK_RV kt_asym_generate_pair(const CK_MECHANISM *m, kt_attrs *pub,
                                         kt_attrs *priv);

/* C_CreateObject / C_UnwrapKey of an RSA or EC key, or a certificate:
 * checks the components (CKR_ATTRIBUTE_VALUE_INVALID,
 * CKR_TEMPLATE_INCOMPLETE, CKR_TEMPLATE_INCONSISTENT) and adds what the
 * token maintains (CKA_MODULUS_BITS, CKA_PUBLIC_KEY_INFO, canonical
 * CKA_EC_PARAMS; for X.509 certificates CKA_SUBJECT/ISSUER/SERIAL_NUMBER
 * when absent, and a check that given ones match). Other objects: CKR_OK. */
KT_NODISCARD CK_RV kt_asym_complete(kt_attrs *a);

/* CKM_ECDH1_DERIVE with CKD_NULL: the shared secret, truncated to len
 * bytes when len is not 0 (CKA_VALUE_LEN of the new key). */
KT_NODISCARD CK_RV kt_asym_ecdh(const CK_MECHANISM *m,
                                const struct kt_key *base, size_t len,
                                unsigned char **secret, size_t *secret_len);

/* C_WrapKey of a private key: its PKCS#8 PrivateKeyInfo (DER, from
 * kt_secure_alloc: the caller frees it with kt_free_secret) and the key's
 * security strength in bits. CKR_KEY_NOT_WRAPPABLE for a key that is no
 * private key of a type the module parses. */
KT_NODISCARD CK_RV kt_asym_to_pkcs8(const struct kt_key *k, unsigned char **der,
                                    size_t *len, unsigned *strength);
/* C_UnwrapKey of a private key: the key in a PrivateKeyInfo (followed by
 * up to 7 zero bytes when zero_padded) joins the template a (CKA_KEY_TYPE,
 * the private and public values, CKA_PUBLIC_KEY_INFO), for
 * kt_object_create to check as an imported key.
 * CKR_WRAPPED_KEY_INVALID for a blob that is no PrivateKeyInfo of a key type
 * the module keeps; CKR_TEMPLATE_INCONSISTENT when the template names
 * another key type or any of the key's values. *strength as above. */
KT_NODISCARD CK_RV kt_asym_from_pkcs8(const unsigned char *der, size_t len,
                                      bool zero_padded, kt_attrs *a,
                                      unsigned *strength);

/* Is p a PKCS#8 PrivateKeyInfo? C_UnwrapKey of a secret key refuses one:
 * a private key's blob never comes in as a secret key whose value could
 * then be read. */
bool kt_asym_is_pkcs8(const unsigned char *p, size_t len);

/* Behind C_GenerateKeyPair and C_DeriveKey (keys_asym.c). */
KT_NODISCARD CK_RV kt_keys_generate_pair(
    struct kt_session *s, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_t,
    CK_ULONG pub_n, const CK_ATTRIBUTE *priv_t, CK_ULONG priv_n,
    CK_OBJECT_HANDLE *pub_h, CK_OBJECT_HANDLE *priv_h);
KT_NODISCARD CK_RV kt_keys_derive(struct kt_session *s,
                                  const CK_MECHANISM *mech,
                                  CK_OBJECT_HANDLE base, const CK_ATTRIBUTE *t,
                                  CK_ULONG n, CK_OBJECT_HANDLE *out);

#endif
