/* PIN records: the master key wrapped under a key derived from the PIN with
 * scrypt, and a verifier MAC from the same derivation. */
#include <string.h>

#include "../ossl/ossl.h"
#include "store.h"

static const char verifier_label[] = "keytier pin verifier v1";
static const char wrap_aad[] = "keytier master key v1";

/* role byte | token serial: bound into the verifier and the wrap AAD. */
static void binding(int role, const char serial[KT_SERIAL_LEN],
                    unsigned char out[1 + KT_SERIAL_LEN])
{
    out[0] = (unsigned char)role;
    memcpy(out + 1, serial, KT_SERIAL_LEN);
}

static CK_RV derive(const struct kt_pin *p, const unsigned char *pin,
                    CK_ULONG len, const unsigned char bind[1 + KT_SERIAL_LEN],
                    unsigned char kek[32], unsigned char verifier[32])
{
    unsigned char k[64];
    CK_RV rv = kt_ossl_scrypt(pin, len, p->salt, sizeof(p->salt), p->cost, k,
                              sizeof(k));
    if (rv == CKR_OK) {
        memcpy(kek, k, 32);
        rv = kt_ossl_hmac256(k + 32, 32, verifier_label, sizeof(verifier_label),
                             bind, 1 + KT_SERIAL_LEN, NULL, 0, verifier);
    }
    kt_wipe(k, sizeof(k));
    return rv;
}

static void wrap_aad_of(const unsigned char bind[1 + KT_SERIAL_LEN],
                        unsigned char out[sizeof(wrap_aad) + 1 + KT_SERIAL_LEN])
{
    memcpy(out, wrap_aad, sizeof(wrap_aad));
    memcpy(out + sizeof(wrap_aad), bind, 1 + KT_SERIAL_LEN);
}

CK_RV kt_pin_make(struct kt_pin *p, const unsigned char *pin, CK_ULONG len,
                  unsigned cost, const unsigned char mk[32], int role,
                  const char serial[KT_SERIAL_LEN])
{
    unsigned char kek[32], bind[1 + KT_SERIAL_LEN];
    unsigned char aad[sizeof(wrap_aad) + 1 + KT_SERIAL_LEN];
    binding(role, serial, bind);
    wrap_aad_of(bind, aad);
    memset(p, 0, sizeof(*p));
    p->cost = cost;
    CK_RV rv = kt_ossl_random(p->salt, sizeof(p->salt));
    if (rv == CKR_OK)
        rv = derive(p, pin, len, bind, kek, p->verifier);
    if (rv == CKR_OK)
        rv = kt_ossl_seal(kek, aad, sizeof(aad), mk, 32, p->wrapped);
    if (rv == CKR_OK)
        p->present = true;
    kt_wipe(kek, sizeof(kek));
    return rv;
}

CK_RV kt_pin_open(const struct kt_pin *p, const unsigned char *pin,
                  CK_ULONG len, unsigned char mk[32], int role,
                  const char serial[KT_SERIAL_LEN])
{
    unsigned char kek[32], verifier[32], bind[1 + KT_SERIAL_LEN];
    unsigned char aad[sizeof(wrap_aad) + 1 + KT_SERIAL_LEN];
    binding(role, serial, bind);
    wrap_aad_of(bind, aad);
    CK_RV rv = derive(p, pin, len, bind, kek, verifier);
    if (rv != CKR_OK)
        goto out;
    /* Constant-time: the verifier never tells how much of it matched. */
    if (kt_ossl_memcmp(verifier, p->verifier, sizeof(verifier)) != 0) {
        rv = CKR_PIN_INCORRECT;
        goto out;
    }
    rv =
        kt_ossl_open(kek, aad, sizeof(aad), p->wrapped, sizeof(p->wrapped), mk);
    if (rv != CKR_OK)
        rv = CKR_DEVICE_ERROR; /* logged with the file by the caller */
out:
    kt_wipe(kek, sizeof(kek));
    kt_wipe(verifier, sizeof(verifier));
    return rv;
}
