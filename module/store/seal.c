#include <stdlib.h>
#include <string.h>

#include "ossl/ossl.h"
#include "store.h"

/* Format 3: the record MAC, manifest and .seq keys are derived from the
 * token's integrity key (<serial>.key), not from the master key. */
static const char mac_label[] = "keytier object mac key v3";
static const char rec_label[] = "keytier object v2";
static const char man_key_label[] = "keytier object manifest key v3";
static const char seq_key_label[] = "keytier seq key v3";
static const char term_label[] = "keytier manifest term v1";
static const char man_label[] = "keytier object manifest v3";
static const char pins_label[] = "keytier pin records v3";

static void derive_key(const unsigned char ik[32], const char *label,
                       size_t label_len, unsigned char out[32])
{
    if (kt_ossl_hmac256(ik, 32, label, label_len, NULL, 0, NULL, 0, out) !=
        CKR_OK)
        memset(out, 0, 32);
}

CK_RV kt_seal_keys(const unsigned char ik[32], unsigned char mac[32],
                   unsigned char manifest[32], unsigned char seq[32])
{
    CK_RV rv = kt_ossl_hmac256(ik, 32, mac_label, sizeof(mac_label), NULL, 0,
                               NULL, 0, mac);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac256(ik, 32, man_key_label, sizeof(man_key_label), NULL,
                             0, NULL, 0, manifest);
    if (rv == CKR_OK)
        rv = kt_ossl_hmac256(ik, 32, seq_key_label, sizeof(seq_key_label), NULL,
                             0, NULL, 0, seq);
    if (rv != CKR_OK) {
        kt_wipe(mac, 32);
        kt_wipe(manifest, 32);
        kt_wipe(seq, 32);
    }
    return rv;
}

void kt_seal_mac_key(const unsigned char ik[32], unsigned char out[32])
{
    derive_key(ik, mac_label, sizeof(mac_label), out);
}

void kt_seal_seq_key(const unsigned char ik[32], unsigned char out[32])
{
    derive_key(ik, seq_key_label, sizeof(seq_key_label), out);
}

/* Sealed in the store: secret key material, and the value of private data
 * objects (applications keep secrets there too). */
static bool sealed_attr(CK_OBJECT_CLASS cls, bool priv, CK_ATTRIBUTE_TYPE type)
{
    if (kt_schema_secret(cls, type))
        return true;
    return priv && cls == CKO_DATA && type == CKA_VALUE;
}

static void aad_of(int64_t id, CK_ATTRIBUTE_TYPE type, unsigned char aad[16])
{
    kt_store_put_le64(aad, (uint64_t)id);
    kt_store_put_le64(aad + 8, (uint64_t)type);
}

static void idgen_of(int64_t id, int64_t gen, unsigned char out[16])
{
    kt_store_put_le64(out, (uint64_t)id);
    kt_store_put_le64(out + 8, (uint64_t)gen);
}

/* The generation is bound in: an older authentic copy of a record carries
 * an older generation, and the manifest (below) names the current one. */
CK_RV kt_seal_record_mac(const unsigned char mac_key[32], int64_t id,
                         int64_t gen, const unsigned char *blob, size_t len,
                         unsigned char out[32])
{
    unsigned char ig[16];
    idgen_of(id, gen, ig);
    return kt_ossl_hmac256(mac_key, 32, rec_label, sizeof(rec_label), ig,
                           sizeof(ig), blob, len, out);
}

void kt_seal_manifest_key(const unsigned char ik[32], unsigned char out[32])
{
    derive_key(ik, man_key_label, sizeof(man_key_label), out);
}

/* Everything a PIN record holds, the retry counter included, in a fixed
 * layout: a reset counter or an older record changes the digest. */
static size_t pin_encode(const struct kt_pin *p, unsigned char *b)
{
    size_t o = 0;
    b[o++] = p->present ? 1 : 0;
    if (!p->present)
        return o;
    memcpy(b + o, p->salt, sizeof(p->salt));
    o += sizeof(p->salt);
    kt_store_put_le64(b + o, p->cost);
    o += 8;
    memcpy(b + o, p->verifier, sizeof(p->verifier));
    o += sizeof(p->verifier);
    memcpy(b + o, p->priv, sizeof(p->priv));
    o += sizeof(p->priv);
    memcpy(b + o, p->pub, sizeof(p->pub));
    o += sizeof(p->pub);
    memcpy(b + o, p->box, sizeof(p->box));
    o += sizeof(p->box);
    memcpy(b + o, p->bind, sizeof(p->bind));
    o += sizeof(p->bind);
    kt_store_put_le64(b + o, (uint64_t)p->failures);
    o += 8;
    return o;
}

CK_RV kt_seal_pins_digest(const unsigned char man_key[32],
                          const struct kt_pin pins[2], unsigned char out[32])
{
    unsigned char so[sizeof(struct kt_pin) + 32];
    unsigned char user[sizeof(struct kt_pin) + 32];
    size_t sl = pin_encode(&pins[KT_PIN_SO], so);
    size_t ul = pin_encode(&pins[KT_PIN_USER], user);
    CK_RV rv = kt_ossl_hmac256(man_key, 32, pins_label, sizeof(pins_label), so,
                               sl, user, ul, out);
    kt_wipe(so, sizeof(so));
    kt_wipe(user, sizeof(user));
    return rv;
}

CK_RV kt_seal_manifest_term(const unsigned char man_key[32], int64_t id,
                            int64_t gen, const unsigned char *mac,
                            size_t mac_len, unsigned char out[32])
{
    unsigned char ig[16];
    idgen_of(id, gen, ig);
    return kt_ossl_hmac256(man_key, 32, term_label, sizeof(term_label), ig,
                           sizeof(ig), mac, mac_len, out);
}

static KT_NODISCARD CK_RV manifest_mac(const unsigned char man_key[32],
                                       const struct kt_manifest *m,
                                       unsigned char out[32])
{
    unsigned char cc[16], ap[64];
    kt_store_put_le64(cc, (uint64_t)m->count);
    kt_store_put_le64(cc + 8, (uint64_t)m->ctr);
    memcpy(ap, m->acc, 32);
    memcpy(ap + 32, m->pins, 32);
    return kt_ossl_hmac256(man_key, 32, man_label, sizeof(man_label), cc,
                           sizeof(cc), ap, sizeof(ap), out);
}

CK_RV kt_seal_manifest_sign(const unsigned char man_key[32],
                            struct kt_manifest *m)
{
    return manifest_mac(man_key, m, m->mac);
}

CK_RV kt_seal_manifest_check(const unsigned char man_key[32],
                             const struct kt_manifest *m)
{
    unsigned char want[32];
    CK_RV rv = m->present ? manifest_mac(man_key, m, want) : CKR_DATA_INVALID;
    if (rv == CKR_OK && kt_ossl_memcmp(want, m->mac, 32) != 0)
        rv = CKR_DATA_INVALID;
    kt_wipe(want, sizeof(want));
    return rv;
}

bool kt_seal_needs_mk(CK_OBJECT_CLASS cls, const kt_attrs *plain)
{
    bool priv = kt_attrs_get_bool(plain, CKA_PRIVATE, true);
    for (size_t i = 0; i < plain->n; i++)
        if (sealed_attr(cls, priv, plain->v[i].type))
            return true;
    return false;
}

CK_RV kt_seal_object(const unsigned char mk[32], int64_t id,
                     CK_OBJECT_CLASS cls, const kt_attrs *plain,
                     unsigned char **blob, size_t *len)
{
    kt_attrs sealed;
    CK_RV rv = CKR_OK;
    bool priv = kt_attrs_get_bool(plain, CKA_PRIVATE, true);
    kt_attrs_init(&sealed);
    for (size_t i = 0; i < plain->n && rv == CKR_OK; i++) {
        const CK_ATTRIBUTE *a = &plain->v[i];
        if (!sealed_attr(cls, priv, a->type)) {
            rv = kt_attrs_set(&sealed, a->type, a->pValue, a->ulValueLen);
            continue;
        }
        unsigned char aad[16];
        size_t sl = a->ulValueLen + KT_SEAL_OVERHEAD;
        unsigned char *s = malloc(sl);
        if (s == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        aad_of(id, a->type, aad);
        rv = kt_ossl_seal(mk, aad, sizeof(aad), a->pValue, a->ulValueLen, s);
        if (rv == CKR_OK)
            rv = kt_attrs_set(&sealed, a->type, s, sl);
        free(s);
    }
    if (rv == CKR_OK)
        rv = kt_attrs_serialize(&sealed, blob, len);
    kt_attrs_clear(&sealed);
    return rv;
}

CK_RV kt_seal_verify(const unsigned char mac_key[32], int64_t id, int64_t gen,
                     const unsigned char *blob, size_t len,
                     const unsigned char *mac)
{
    unsigned char want[32];
    CK_RV rv = kt_seal_record_mac(mac_key, id, gen, blob, len, want);
    if (rv == CKR_OK && kt_ossl_memcmp(want, mac, 32) != 0)
        rv = CKR_DATA_INVALID;
    kt_wipe(want, sizeof(want));
    return rv;
}

CK_RV kt_seal_open_attrs(const unsigned char mk[32], int64_t id,
                         CK_OBJECT_CLASS cls, kt_attrs *attrs)
{
    bool priv = kt_attrs_get_bool(attrs, CKA_PRIVATE, true);
    for (size_t i = 0; i < attrs->n; i++) {
        CK_ATTRIBUTE *a = &attrs->v[i];
        if (!sealed_attr(cls, priv, a->type))
            continue;
        if (a->ulValueLen < KT_SEAL_OVERHEAD)
            return CKR_DATA_INVALID;
        unsigned char aad[16];
        size_t pl = a->ulValueLen - KT_SEAL_OVERHEAD;
        unsigned char *p = kt_secure_alloc(pl ? pl : 1);
        if (p == NULL)
            return CKR_HOST_MEMORY;
        aad_of(id, a->type, aad);
        CK_RV rv =
            kt_ossl_open(mk, aad, sizeof(aad), a->pValue, a->ulValueLen, p);
        if (rv != CKR_OK) {
            kt_free_secret(p, pl ? pl : 1);
            return rv == CKR_HOST_MEMORY ? rv : CKR_DATA_INVALID;
        }
        kt_free_secret(a->pValue, a->ulValueLen);
        a->pValue = p;
        a->ulValueLen = pl;
    }
    return CKR_OK;
}
