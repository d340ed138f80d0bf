/* PIN records. Each role has an X25519 key pair: the private key is sealed
 * under a key derived from the PIN with scrypt (with a verifier MAC from the
 * same derivation), and the master key is stored once per role, boxed to
 * that role's public key (ephemeral X25519, HKDF-SHA-256, AES-256-GCM). A
 * PIN change can then give the master key to the other role without knowing
 * its PIN, and an old record (an old private key) opens only the old box. */
#include <string.h>

#include "ossl/ossl.h"
#include "store.h"

static const char verifier_label[] = "keytier pin verifier v1";
static const char priv_aad[] = "keytier pin private key v3";
static const char box_label[] = "keytier master key box v3";
static const char bind_key_label[] = "keytier pin binding key v3";
static const char bind_label[] = "keytier pin public key v3";

#define BIND_LEN (1 + KT_SERIAL_LEN)

/* role byte | token serial: bound into the verifier, the sealed private
 * key, the box and the binding. */
static void binding(int role, const char serial[KT_SERIAL_LEN],
                    unsigned char out[BIND_LEN])
{
    out[0] = (unsigned char)role;
    memcpy(out + 1, serial, KT_SERIAL_LEN);
}

static void aad_of(const char *label, size_t label_len,
                   const unsigned char bind[BIND_LEN], unsigned char *out)
{
    memcpy(out, label, label_len);
    memcpy(out + label_len, bind, BIND_LEN);
}

static KT_NODISCARD CK_RV derive(const struct kt_pin *p,
                                 const unsigned char *pin, CK_ULONG len,
                                 const unsigned char bind[BIND_LEN],
                                 unsigned char kek[32],
                                 unsigned char verifier[32])
{
    unsigned char k[64];
    CK_RV rv = kt_ossl_scrypt(pin, len, p->salt, sizeof(p->salt), p->cost, k,
                              sizeof(k));
    if (rv == CKR_OK) {
        memcpy(kek, k, 32);
        rv = kt_ossl_hmac256(k + 32, 32, verifier_label, sizeof(verifier_label),
                             bind, BIND_LEN, NULL, 0, verifier);
    }
    kt_wipe(k, sizeof(k));
    return rv;
}

/* The box key: HKDF(X25519 shared secret; salt: ephemeral | recipient
 * public key; info: label | role | serial). */
static KT_NODISCARD CK_RV box_key(const unsigned char shared[32],
                                  const unsigned char eph_pub[32],
                                  const unsigned char pub[32],
                                  const unsigned char bind[BIND_LEN],
                                  unsigned char key[32])
{
    unsigned char salt[64], info[sizeof(box_label) + BIND_LEN];
    memcpy(salt, eph_pub, 32);
    memcpy(salt + 32, pub, 32);
    aad_of(box_label, sizeof(box_label), bind, info);
    return kt_ossl_hkdf256(shared, 32, salt, sizeof(salt), info, sizeof(info),
                           key, 32);
}

CK_RV kt_pin_make(struct kt_pin *p, const unsigned char *pin, CK_ULONG len,
                  unsigned cost, int role, const char serial[KT_SERIAL_LEN])
{
    unsigned char kek[32], priv[32], bind[BIND_LEN];
    unsigned char aad[sizeof(priv_aad) + BIND_LEN];
    binding(role, serial, bind);
    aad_of(priv_aad, sizeof(priv_aad), bind, aad);
    memset(p, 0, sizeof(*p));
    p->cost = cost;
    CK_RV rv = kt_ossl_random(p->salt, sizeof(p->salt));
    if (rv == CKR_OK)
        rv = derive(p, pin, len, bind, kek, p->verifier);
    if (rv == CKR_OK)
        rv = kt_ossl_x25519_keygen(priv, p->pub);
    if (rv == CKR_OK)
        rv = kt_ossl_seal(kek, aad, sizeof(aad), priv, 32, p->priv);
    if (rv == CKR_OK)
        p->present = true;
    kt_wipe(kek, sizeof(kek));
    kt_wipe(priv, sizeof(priv));
    return rv;
}

static KT_NODISCARD CK_RV bind_mac(const struct kt_pin *p,
                                   const unsigned char mk[32], int role,
                                   const char serial[KT_SERIAL_LEN],
                                   const unsigned char ik[32],
                                   unsigned char out[32])
{
    unsigned char k[32], b[BIND_LEN], msg[BIND_LEN + 64];
    binding(role, serial, b);
    memcpy(msg, b, BIND_LEN);
    memcpy(msg + BIND_LEN, p->pub, 32);
    memcpy(msg + BIND_LEN + 32, ik, 32);
    CK_RV rv = kt_ossl_hmac256(mk, 32, bind_key_label, sizeof(bind_key_label),
                               NULL, 0, NULL, 0, k);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac256(k, 32, bind_label, sizeof(bind_label), msg,
                             sizeof(msg), NULL, 0, out);
    kt_wipe(k, sizeof(k));
    kt_wipe(msg, sizeof(msg));
    return rv;
}

CK_RV kt_pin_check_bind(const struct kt_pin *p, const unsigned char mk[32],
                        int role, const char serial[KT_SERIAL_LEN],
                        const unsigned char ik[32])
{
    unsigned char want[32];
    CK_RV rv = bind_mac(p, mk, role, serial, ik, want);
    if (rv == CKR_OK && kt_ossl_memcmp(want, p->bind, 32) != 0)
        rv = CKR_DATA_INVALID;
    kt_wipe(want, sizeof(want));
    return rv;
}

CK_RV kt_pin_box(struct kt_pin *p, const unsigned char mk[32], int role,
                 const char serial[KT_SERIAL_LEN], const unsigned char ik[32])
{
    unsigned char eph[32], shared[32], key[32], bind[BIND_LEN];
    unsigned char aad[sizeof(box_label) + BIND_LEN];
    binding(role, serial, bind);
    aad_of(box_label, sizeof(box_label), bind, aad);
    CK_RV rv = kt_ossl_x25519_keygen(eph, p->box);
    if (rv == CKR_OK)
        rv = kt_ossl_x25519(eph, p->pub, shared);
    if (rv == CKR_OK)
        rv = box_key(shared, p->box, p->pub, bind, key);
    if (rv == CKR_OK)
        rv = kt_ossl_seal(key, aad, sizeof(aad), mk, 32, p->box + 32);
    if (rv == CKR_OK)
        rv = bind_mac(p, mk, role, serial, ik, p->bind);
    kt_wipe(eph, sizeof(eph));
    kt_wipe(shared, sizeof(shared));
    kt_wipe(key, sizeof(key));
    return rv;
}

/* A verdict on the record (a box or sealed key that does not open, a
 * small-order key), as opposed to a failure to compute one (memory). */
static bool damaged(CK_RV rv)
{
    return rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_DATA_INVALID ||
           rv == CKR_DEVICE_ERROR;
}

CK_RV kt_pin_open_box(const struct kt_pin *p, const unsigned char priv[32],
                      unsigned char mk[32], int role,
                      const char serial[KT_SERIAL_LEN])
{
    unsigned char shared[32], key[32], bind[BIND_LEN];
    unsigned char aad[sizeof(box_label) + BIND_LEN];
    binding(role, serial, bind);
    aad_of(box_label, sizeof(box_label), bind, aad);
    CK_RV rv = kt_ossl_x25519(priv, p->box, shared);
    if (rv == CKR_OK)
        rv = box_key(shared, p->box, p->pub, bind, key);
    if (rv == CKR_OK)
        rv = kt_ossl_open(key, aad, sizeof(aad), p->box + 32,
                          sizeof(p->box) - 32, mk);
    kt_wipe(shared, sizeof(shared));
    kt_wipe(key, sizeof(key));
    return damaged(rv) ? CKR_DEVICE_ERROR : rv;
}

CK_RV kt_pin_open(const struct kt_pin *p, const unsigned char *pin,
                  CK_ULONG len, unsigned char mk[32], int role,
                  const char serial[KT_SERIAL_LEN])
{
    unsigned char kek[32], verifier[32], priv[32], pub[32], bind[BIND_LEN];
    unsigned char aad[sizeof(priv_aad) + BIND_LEN];
    binding(role, serial, bind);
    aad_of(priv_aad, sizeof(priv_aad), bind, aad);
    CK_RV rv = derive(p, pin, len, bind, kek, verifier);
    if (rv != CKR_OK)
        goto out;
    /* Constant-time: the verifier never tells how much of it matched. */
    if (kt_ossl_memcmp(verifier, p->verifier, sizeof(verifier)) != 0) {
        rv = CKR_PIN_INCORRECT;
        goto out;
    }
    /* Damaged records give CKR_DEVICE_ERROR, logged with the file by the
     * caller; a failure to allocate stays CKR_HOST_MEMORY (the record is
     * not judged). The public key must be the private key's: the box is
     * opened with the pair the record names. */
    rv = kt_ossl_open(kek, aad, sizeof(aad), p->priv, sizeof(p->priv), priv);
    if (rv == CKR_OK)
        rv = kt_ossl_x25519_public(priv, pub);
    if (rv == CKR_OK && kt_ossl_memcmp(pub, p->pub, 32) != 0)
        rv = CKR_DEVICE_ERROR;
    if (rv == CKR_OK)
        rv = kt_pin_open_box(p, priv, mk, role, serial);
    if (damaged(rv))
        rv = CKR_DEVICE_ERROR;
    else if (rv != CKR_OK)
        rv = CKR_HOST_MEMORY;
out:
    kt_wipe(kek, sizeof(kek));
    kt_wipe(verifier, sizeof(verifier));
    kt_wipe(priv, sizeof(priv));
    return rv;
}
