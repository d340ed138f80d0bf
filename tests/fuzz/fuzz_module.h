/* The module in-process for the fuzz targets that drive it through its
 * function list (template, mech, unwrap) and for the seed generator: one
 * token per process in a mkdtemp directory (removed at exit), the PIN KDF at
 * the fast cost the tests use, a user login kept by a session of its own,
 * and the fixed keys whose values the seeds depend on. */
#ifndef KT_FUZZ_MODULE_H
#define KT_FUZZ_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11v3.h"

#define FZ_SO_PIN   "fuzz-so-pin"
#define FZ_USER_PIN "fuzz-user-pin"

struct fz_env {
    CK_FUNCTION_LIST_PTR p;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE keep; /* holds the login and the fixture's keys */
    CK_SESSION_HANDLE s;    /* the fuzzed calls' session */
    /* Moves whenever the token was re-initialised: the targets make their
     * keys again. */
    unsigned gen;
};

/* Starts the module once (aborts if it cannot: no input could run). */
struct fz_env *fz_env(void);
/* Destroys an object a fuzzed call made. One that refuses (CKA_DESTROYABLE
 * false) goes with its session (a session object) or with a
 * re-initialisation of the token (a token object), so no state grows. */
void fz_destroy(CK_OBJECT_HANDLE h);
/* Creates an object in session s (aborts on failure: the fixture is
 * broken, not the input). */
CK_OBJECT_HANDLE fz_create(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n);

/* The fixed key values: AES keys made with these values by the targets and
 * the seed generator alike, so wrapped seeds open. */
extern const unsigned char fz_aes128[16];
extern const unsigned char fz_aes256[32];
/* The fixed RSA-2048 key as a private key object (extra: more attributes,
 * e.g. CKA_UNWRAP) and as a public key object. */
CK_OBJECT_HANDLE fz_rsa_private(CK_SESSION_HANDLE s, CK_ATTRIBUTE *extra,
                                CK_ULONG n);
CK_OBJECT_HANDLE fz_rsa_public(CK_SESSION_HANDLE s, CK_ATTRIBUTE *extra,
                               CK_ULONG n);
/* The RSA key as PKCS#8 DER. */
const unsigned char *fz_rsa_der(size_t *len);
/* One of the RSA key's parts (CKA_MODULUS ... CKA_COEFFICIENT). */
const unsigned char *fz_rsa_part(CK_ATTRIBUTE_TYPE type, CK_ULONG *len);
/* An AES key of the fixed value (16 or 32 bytes) with the role attributes
 * given (CKA_WRAP/CKA_UNWRAP or CKA_ENCRYPT/CKA_DECRYPT, ...). */
CK_OBJECT_HANDLE fz_aes(CK_SESSION_HANDLE s, const unsigned char *value,
                        CK_ULONG len, CK_ATTRIBUTE *extra, CK_ULONG n);

/* With KT_FUZZ_TRACE set, prints what a call answered (to see how deep a
 * seed reaches); returns rv. */
CK_RV fz_trace(const char *what, CK_RV rv);

/* Reading the fuzz input: a missing byte reads as 0; byte strings are
 * clamped to what is left, so no value ever points past the input. */
struct fz_in {
    const uint8_t *p;
    size_t n;
};
static inline uint8_t fz_u8(struct fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}
static inline uint16_t fz_u16(struct fz_in *in)
{
    uint16_t v = fz_u8(in);
    return (uint16_t)(v | (uint16_t)fz_u8(in) << 8);
}
static inline uint32_t fz_u32(struct fz_in *in)
{
    uint32_t v = fz_u16(in);
    return v | (uint32_t)fz_u16(in) << 16;
}
/* Up to want bytes; *got says how many. */
static inline const uint8_t *fz_bytes(struct fz_in *in, size_t want,
                                      size_t *got)
{
    const uint8_t *p = in->p;
    *got = want < in->n ? want : in->n;
    in->p += *got;
    in->n -= *got;
    return p;
}
/* A length-prefixed byte string: u16 length, then the bytes. */
static inline const uint8_t *fz_str(struct fz_in *in, CK_ULONG *len)
{
    size_t got;
    const uint8_t *p = fz_bytes(in, fz_u16(in), &got);
    *len = got;
    return p;
}

/* Writing seeds in the same layout (the generator). */
struct fz_out {
    uint8_t b[16384];
    size_t n;
};
void fz_put_u8(struct fz_out *o, unsigned v);
void fz_put_u16(struct fz_out *o, unsigned v);
void fz_put_u32(struct fz_out *o, uint32_t v);
void fz_put(struct fz_out *o, const void *p, size_t len);
void fz_put_str(struct fz_out *o, const void *p, size_t len);
/* Writes dir/name (aborts on failure). */
void fz_write(const char *dir, const char *name, const struct fz_out *o);

#endif
