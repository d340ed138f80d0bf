/* The mechanism table and the operation interface.
 *
 * Adding a mechanism family (e.g. RSA, ECDSA) = one ops file implementing
 * struct kt_mech_ops + rows in the table of mech.c. The C_* layer does the
 * PKCS#11 bookkeeping (sessions, handles, key usage attributes, allowed
 * mechanisms, operation lifetime); ops do only the mechanism's own work. */
#ifndef KT_MECH_H
#define KT_MECH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <p11-kit/pkcs11.h>

#include "attrs.h"

/* PKCS#11 v2.40 as first published: CK_GCM_PARAMS without ulIvBits. Some
 * applications still pass this layout; it is recognised by its size. */
struct kt_gcm_params_v240 {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
};

enum kt_op_kind {
    KT_OP_ENCRYPT,
    KT_OP_DECRYPT,
    KT_OP_SIGN,
    KT_OP_VERIFY,
    KT_OP_DIGEST,
    KT_OP_KIND_MAX,
};

/* A snapshot of a key taken under the token lock when an operation starts:
 * the operation then runs with no lock held. `attrs` holds every attribute
 * including unsealed secret ones (asymmetric ops build their EVP_PKEY from
 * it); `value` points into attrs at CKA_VALUE when present. */
struct kt_token;

/* A per-object cache of mechanism-family state (e.g. a parsed key with its
 * facts and initialised EVP_PKEY_CTX templates). Embed it as the first
 * member of your own struct; `destroy` frees that struct when the last
 * reference goes. The object holds one reference; every key snapshot
 * holds one while its operation runs. */
struct kt_cache {
    atomic_int refs;
    void (*destroy)(struct kt_cache *c);
};
struct kt_cache *kt_cache_ref(struct kt_cache *c);
void kt_cache_unref(struct kt_cache *c);

struct kt_key {
    /* The object the key was read from (token NULL: a key made for one
     * operation only). keep_cache hands a family cache built from the key
     * to that object (the core's kt_object_set_cache: the mechanisms below
     * the core reach the object index only through it); it takes one
     * reference. */
    struct kt_token *token;
    void (*keep_cache)(struct kt_token *t, CK_OBJECT_HANDLE h,
                       struct kt_cache *cache);
    CK_OBJECT_HANDLE handle;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE type;
    kt_attrs attrs;
    const unsigned char *value;
    size_t value_len;
    /* attrs is read-only: it may be a view of the object's shared copy
     * (struct kt_shared_attrs), released by kt_key_clear. */
    void *shared;
    /* The object's family cache (a reference of our own, dropped by
     * kt_key_clear), or NULL: see kt_object_set_cache(). */
    struct kt_cache *cache;
    /* The object's cached parsed key (EVP_PKEY *, a reference of our own,
     * dropped by kt_key_clear), or NULL. */
    void *pkey;
};
void kt_key_clear(struct kt_key *k);

struct kt_mech;
struct kt_cipher;

struct kt_op {
    const struct kt_mech *mech;
    enum kt_op_kind kind;
    bool active;
    bool multi; /* an Update ran: single-part calls are refused */
    /* A single-part call asked for the length (or had too small a buffer):
     * the operation goes on single-part; Update/Final calls are refused. */
    bool single;
    void *ctx; /* owned by the ops; freed by ops->free */
    /* Result of a Final kept across CKR_BUFFER_TOO_SMALL retries. */
    unsigned char *stash;
    size_t stash_len;
    bool stashed;
    CK_OBJECT_HANDLE key;
    /* CKA_ALWAYS_AUTHENTICATE: the key may not be used until
     * C_Login(CKU_CONTEXT_SPECIFIC) succeeds for this operation. */
    bool need_auth;
    /* A cipher context the caller keeps between operations (guarded by its
     * session's lock), for ops that can re-key one; NULL: a fresh one. */
    struct kt_cipher **cipher_slot;
};

/* Output conventions (PKCS#11 v2.40 §5.2): out == NULL asks the length;
 * *out_len too small gives CKR_BUFFER_TOO_SMALL with the length needed and
 * leaves the operation as it was. Ops that cannot know the exact length
 * before the work may return an upper bound. */
struct kt_mech_ops {
    /* Parameter and key checks; creates op->ctx. */
    CK_RV(*init)
    (struct kt_op *op, const CK_MECHANISM *m, const struct kt_key *key);
    /* Encrypt/decrypt single part; sign single part (out = signature);
     * digest single part. */
    CK_RV(*oneshot)
    (struct kt_op *op, const unsigned char *in, size_t in_len,
     unsigned char *out, CK_ULONG *out_len);
    /* Encrypt/decrypt update (output), sign/verify/digest update
     * (out == NULL and out_len == NULL). */
    CK_RV(*update)
    (struct kt_op *op, const unsigned char *in, size_t in_len,
     unsigned char *out, CK_ULONG *out_len);
    /* Final computed once into op->stash by the helper kt_op_final(). */
    CK_RV (*final)(struct kt_op *op, unsigned char **out, size_t *out_len);
    /* Upper bound of the final output (for length queries). */
    size_t (*final_len)(struct kt_op *op);
    CK_RV(*verify)
    (struct kt_op *op, const unsigned char *data, size_t len,
     const unsigned char *sig, size_t sig_len);
    CK_RV(*verify_final)
    (struct kt_op *op, const unsigned char *sig, size_t sig_len);
    void (*free)(struct kt_op *op);
};

struct kt_mech {
    CK_MECHANISM_TYPE type;
    const char *name;
    CK_MECHANISM_INFO info;
    CK_KEY_TYPE key_types[4];
    size_t n_key_types;
    const struct kt_mech_ops *ops;
    /* Key generation (CKF_GENERATE): fills CKA_VALUE etc. into a template
     * already completed by the schema. */
    CK_RV (*generate)(const CK_MECHANISM *m, kt_attrs *key);
    /* Only with legacy_mechanisms = yes (DES, DES3, MD5): otherwise absent
     * from the list and unknown to kt_mech_find. */
    bool legacy;
};

/* NULL for a mechanism the module does not offer under its configuration
 * (a legacy one with legacy_mechanisms = no). */
const struct kt_mech *kt_mech_find(CK_MECHANISM_TYPE type);
/* The mechanism's flags under the module configuration: CKF_UNWRAP is
 * withdrawn from unauthenticated unwrap mechanisms unless
 * legacy_mechanisms = yes. C_GetMechanismInfo and C_UnwrapKey use it. */
CK_FLAGS kt_mech_flags(const struct kt_mech *m);
/* CK_MECHANISM_INFO under the module configuration (kt_mech_flags, and
 * the smallest RSA modulus legacy_mechanisms allows). */
void kt_mech_info(const struct kt_mech *m, CK_MECHANISM_INFO *info);
/* Whether the configuration offers the mechanism: the legacy-only ones
 * need legacy_mechanisms = yes. kt_mech_find answers NULL for the others;
 * C_GetMechanismList skips them. */
bool kt_mech_offered(const struct kt_mech *m);
size_t kt_mech_count(void);
const struct kt_mech *kt_mech_at(size_t i);
bool kt_mech_key_type_ok(const struct kt_mech *m, CK_KEY_TYPE kt);

/* Helpers every ops file uses. */
void kt_op_release(struct kt_op *op);
/* Runs ops->final once, then answers per the output conventions. */
KT_NODISCARD CK_RV kt_op_final(struct kt_op *op, unsigned char *out,
                               CK_ULONG *out_len);
/* Answers a length query / too-small buffer for a known result size;
 * returns CKR_OK when the caller's buffer fits and work must proceed,
 * or sets *done. */
KT_NODISCARD CK_RV kt_out_check(unsigned char *out, CK_ULONG *out_len,
                                size_t need, bool *done);

/* Ops families of the core (ops_aes.c: also DES/DES3; ops_hmac.c: HMAC
 * and CMAC; ops_digest.c). */
extern const struct kt_mech_ops kt_ops_aes;
extern const struct kt_mech_ops kt_ops_hmac;
extern const struct kt_mech_ops kt_ops_digest;
KT_NODISCARD CK_RV kt_gen_secret(const CK_MECHANISM *m, kt_attrs *key);
/* The one key length (bytes) of a DES key generation mechanism, else 0. */
size_t kt_mech_fixed_len(CK_MECHANISM_TYPE m);

#endif
