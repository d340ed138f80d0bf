/* Seeds of the template, mech and unwrap fuzz targets (gen_seeds.c runs
 * this): inputs in each target's layout, whose keys, blobs, ciphertexts
 * and signatures the module itself made with the targets' fixed keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "fuzz_module.h"
#include "gen.h"

static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                     0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char x25519_oid[] = {0x06, 0x03, 0x2b, 0x65, 0x6e};
static CK_BBOOL yes = CK_TRUE;

#define CHECK(call)                                                            \
    do {                                                                       \
        CK_RV rv_ = (call);                                                    \
        if (rv_ != CKR_OK) {                                                   \
            fprintf(stderr, "fuzz seeds: %s: 0x%lx\n", #call,                  \
                    (unsigned long)rv_);                                       \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* ---- template ---------------------------------------------------------- */

static void attr(struct fz_out *o, CK_ATTRIBUTE_TYPE type, unsigned flag,
                 const void *v, size_t len)
{
    fz_put_u32(o, (uint32_t)type);
    fz_put_u8(o, flag);
    fz_put_str(o, v, len);
}

static void attr_ulong(struct fz_out *o, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    attr(o, type, 0, &v, sizeof(v));
}

static void attr_bool(struct fz_out *o, CK_ATTRIBUTE_TYPE type, bool v)
{
    CK_BBOOL b = v;
    attr(o, type, 0, &b, 1);
}

static void head(struct fz_out *o, unsigned op, unsigned sel)
{
    o->n = 0;
    fz_put_u8(o, op);
    fz_put_u8(o, sel);
}

static void aes_attrs(struct fz_out *o, bool token)
{
    attr_ulong(o, CKA_CLASS, CKO_SECRET_KEY);
    attr_ulong(o, CKA_KEY_TYPE, CKK_AES);
    attr(o, CKA_VALUE, 0, fz_aes128, 16);
    attr_bool(o, CKA_TOKEN, token);
    attr_bool(o, CKA_ENCRYPT, true);
}

static void rsa_attrs(struct fz_out *o, bool priv)
{
    static const CK_ATTRIBUTE_TYPE parts[8] = {
        CKA_MODULUS,    CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,    CKA_PRIME_2,         CKA_EXPONENT_1,
        CKA_EXPONENT_2, CKA_COEFFICIENT};
    attr_ulong(o, CKA_CLASS, priv ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY);
    attr_ulong(o, CKA_KEY_TYPE, CKK_RSA);
    for (int i = 0; i < (priv ? 8 : 2); i++) {
        CK_ULONG len;
        const unsigned char *v = fz_rsa_part(parts[i], &len);
        attr(o, parts[i], 0, v, len);
    }
}

/* A P-256 public point as CKA_EC_POINT holds it (DER OCTET STRING). */
static CK_ULONG ec_point(struct fz_env *e, unsigned char *out,
                         CK_OBJECT_HANDLE *priv, bool x25519)
{
    CK_MECHANISM m = {
        x25519 ? CKM_EC_MONTGOMERY_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub_t[] = {{CKA_EC_PARAMS,
                             (void *)(x25519 ? x25519_oid : p256),
                             x25519 ? sizeof(x25519_oid) : sizeof(p256)}};
    CK_ATTRIBUTE priv_t[] = {{CKA_DERIVE, &yes, 1}, {CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE hpub;
    CHECK(
        e->p->C_GenerateKeyPair(e->keep, &m, pub_t, 1, priv_t, 2, &hpub, priv));
    CK_ATTRIBUTE q = {CKA_EC_POINT, out, 200};
    CHECK(e->p->C_GetAttributeValue(e->keep, hpub, &q, 1));
    return q.ulValueLen;
}

static void template_creates(struct fz_env *e, const char *d)
{
    struct fz_out o;
    head(&o, 0, 0);
    aes_attrs(&o, false);
    fz_write(d, "create-aes", &o);
    head(&o, 0, 0);
    aes_attrs(&o, true);
    attr(&o, CKA_LABEL, 0, "token", 5);
    fz_write(d, "create-aes-token", &o);
    head(&o, 0, 0);
    attr_ulong(&o, CKA_CLASS, CKO_DATA);
    attr_bool(&o, CKA_PRIVATE, false);
    attr(&o, CKA_APPLICATION, 0, "app", 3);
    attr(&o, CKA_VALUE, 0, "value", 5);
    fz_write(d, "create-data", &o);
    head(&o, 0, 0);
    rsa_attrs(&o, false);
    attr_bool(&o, CKA_VERIFY, true);
    fz_write(d, "create-rsa-public", &o);
    head(&o, 0, 0);
    rsa_attrs(&o, true);
    attr_bool(&o, CKA_SIGN, true);
    fz_write(d, "create-rsa-private", &o);
    unsigned char pt[200];
    CK_OBJECT_HANDLE priv;
    CK_ULONG pl = ec_point(e, pt, &priv, false);
    head(&o, 0, 0);
    attr_ulong(&o, CKA_CLASS, CKO_PUBLIC_KEY);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_EC);
    attr(&o, CKA_EC_PARAMS, 0, p256, sizeof(p256));
    attr(&o, CKA_EC_POINT, 0, pt, pl);
    fz_write(d, "create-ec-public", &o);
}

/* A wrap key whose CKA_WRAP_TEMPLATE is a nested template. */
static void template_nested(const char *d)
{
    struct fz_out o, inner = {.n = 0};
    attr_ulong(&inner, CKA_CLASS, CKO_SECRET_KEY);
    attr_ulong(&inner, CKA_KEY_TYPE, CKK_AES);
    attr_bool(&inner, CKA_EXTRACTABLE, true);
    head(&o, 0, 0);
    attr_ulong(&o, CKA_CLASS, CKO_SECRET_KEY);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_AES);
    attr(&o, CKA_VALUE, 0, fz_aes256, 32);
    attr_bool(&o, CKA_WRAP, true);
    attr_bool(&o, CKA_UNWRAP, true);
    attr(&o, CKA_WRAP_TEMPLATE, 0, inner.b, inner.n);
    attr(&o, CKA_UNWRAP_TEMPLATE, 0, inner.b, inner.n);
    fz_write(d, "create-wrap-template", &o);
    /* The same with an array length that is no multiple of the struct. */
    head(&o, 0, 0);
    attr_ulong(&o, CKA_CLASS, CKO_SECRET_KEY);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_AES);
    attr(&o, CKA_VALUE, 0, fz_aes256, 32);
    attr_bool(&o, CKA_WRAP, true);
    attr(&o, CKA_WRAP_TEMPLATE, 3 << 1, inner.b, inner.n);
    fz_write(d, "create-wrap-template-odd", &o);
}

/* CK_BBOOL of 0 and 8 bytes, CK_ULONG of 3, a NULL value with a length. */
static void template_odd(const char *d)
{
    struct fz_out o;
    unsigned char eight[8] = {1};
    head(&o, 0, 0);
    attr_ulong(&o, CKA_CLASS, CKO_SECRET_KEY);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_AES);
    attr(&o, CKA_VALUE, 0, fz_aes128, 16);
    attr(&o, CKA_TOKEN, 0, eight, 0);
    attr(&o, CKA_ENCRYPT, 0, eight, 8);
    fz_write(d, "create-bool-lengths", &o);
    head(&o, 0, 0);
    attr(&o, CKA_CLASS, 0, "\x04\x00\x00", 3);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_AES);
    attr(&o, CKA_VALUE, 0, fz_aes128, 16);
    fz_write(d, "create-ulong-3", &o);
    head(&o, 0, 0);
    aes_attrs(&o, false);
    attr(&o, CKA_LABEL, 1, NULL, 0);
    o.b[o.n - 2] = 0x10; /* ulValueLen 16 with pValue NULL */
    fz_write(d, "create-null-value", &o);
}

static void template_others(const char *d)
{
    struct fz_out o;
    head(&o, 1, 0);
    attr_ulong(&o, CKA_CLASS, CKO_SECRET_KEY);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_AES);
    attr_bool(&o, CKA_ENCRYPT, true);
    fz_write(d, "unwrap-aes", &o);
    head(&o, 1, 1);
    attr_ulong(&o, CKA_CLASS, CKO_PRIVATE_KEY);
    attr_ulong(&o, CKA_KEY_TYPE, CKK_RSA);
    attr_bool(&o, CKA_SIGN, true);
    fz_write(d, "unwrap-rsa", &o);
    head(&o, 1, 1);
    attr_ulong(&o, CKA_CLASS, CKO_PRIVATE_KEY);
    attr_bool(&o, CKA_TOKEN, true);
    fz_write(d, "unwrap-rsa-token", &o);
    for (unsigned sel = 0; sel < 4; sel++) {
        char name[32];
        head(&o, 2, sel);
        attr(&o, CKA_LABEL, 0, "renamed", 7);
        if (sel == 2)
            attr(&o, CKA_VALUE, 0, "new value", 9);
        else if (sel != 3)
            attr_bool(&o, CKA_SENSITIVE, true);
        snprintf(name, sizeof(name), "set-%u", sel);
        fz_write(d, name, &o);
        head(&o, 3, sel);
        attr(&o, CKA_LABEL, 0, "copy", 4);
        attr_bool(&o, CKA_TOKEN, sel % 2 == 0);
        snprintf(name, sizeof(name), "copy-%u", sel);
        fz_write(d, name, &o);
    }
    head(&o, 2, 0);
    attr_bool(&o, CKA_DESTROYABLE, false);
    fz_write(d, "set-not-destroyable", &o);
    head(&o, 3, 0);
    attr_bool(&o, CKA_TOKEN, true);
    attr_bool(&o, CKA_DESTROYABLE, false);
    fz_write(d, "copy-token-not-destroyable", &o);
}

void gen_template(struct fz_env *e, const char *d)
{
    template_creates(e, d);
    template_nested(d);
    template_odd(d);
    template_others(d);
}

/* ---- mech -------------------------------------------------------------- */

/* The operation's result under the module (encrypt or sign). */
static CK_ULONG module_op(struct fz_env *e, CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                          bool sign, const void *in, CK_ULONG len,
                          unsigned char *out)
{
    CK_ULONG out_len = 1024;
    if (sign) {
        CHECK(e->p->C_SignInit(e->s, m, k));
        CHECK(e->p->C_Sign(e->s, (CK_BYTE_PTR)in, len, out, &out_len));
    } else {
        CHECK(e->p->C_EncryptInit(e->s, m, k));
        CHECK(e->p->C_Encrypt(e->s, (CK_BYTE_PTR)in, len, out, &out_len));
    }
    return out_len;
}

static void mech_gcm(struct fz_env *e, const char *d, CK_OBJECT_HANDLE aes)
{
    static const unsigned char iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const char msg[] = "fuzz gcm plaintext";
    struct fz_out o;
    unsigned char ct[1024];
    CK_GCM_PARAMS g = {(CK_BYTE_PTR)iv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
    CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof(g)};
    CK_ULONG cl = module_op(e, &m, aes, false, msg, sizeof(msg), ct);
    const unsigned hows[4] = {0, 1, 6, 7};
    const char *const names[4] = {"gcm-encrypt", "gcm-decrypt",
                                  "gcm-v240-encrypt", "gcm-v240-decrypt"};
    for (int i = 0; i < 4; i++) {
        head(&o, 0, hows[i]);
        fz_put_str(&o, iv, 12);
        fz_put_u32(&o, 96);
        fz_put_str(&o, "aad", 3);
        fz_put_u32(&o, 128);
        if (hows[i] & 1)
            fz_put(&o, ct, cl);
        else
            fz_put(&o, msg, sizeof(msg));
        fz_write(d, names[i], &o);
    }
    head(&o, 0, 4);
    fz_put_str(&o, iv, 1);
    fz_put_u32(&o, 8);
    fz_put_str(&o, NULL, 0);
    fz_put_u32(&o, 96);
    fz_put_u8(&o, 40);
    fz_put(&o, msg, 5);
    fz_write(d, "gcm-short-iv-len-from-input", &o);
}

static void mech_oaep(struct fz_env *e, const char *d, CK_OBJECT_HANDLE pub)
{
    static const char msg[] = "fuzz oaep";
    struct fz_out o;
    unsigned char ct[1024];
    CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256,
                                 CKZ_DATA_SPECIFIED, (void *)"label", 5};
    CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
    CK_ULONG cl = module_op(e, &m, pub, false, msg, sizeof(msg), ct);
    for (int back = 0; back < 2; back++) {
        head(&o, 1, (unsigned)back);
        fz_put_u32(&o, CKM_SHA256);
        fz_put_u32(&o, CKG_MGF1_SHA256);
        fz_put_u32(&o, CKZ_DATA_SPECIFIED);
        fz_put_str(&o, "label", 5);
        if (back)
            fz_put(&o, ct, cl);
        else
            fz_put(&o, msg, sizeof(msg));
        fz_write(d, back ? "oaep-decrypt" : "oaep-encrypt", &o);
    }
    head(&o, 1, 0);
    fz_put_u32(&o, CKM_SHA_1);
    fz_put_u32(&o, CKG_MGF1_SHA1);
    fz_put_u32(&o, CKZ_DATA_SPECIFIED);
    fz_put_str(&o, NULL, 0);
    fz_put(&o, msg, sizeof(msg));
    fz_write(d, "oaep-sha1-no-label", &o);
}

static void mech_pss(struct fz_env *e, const char *d, CK_OBJECT_HANDLE priv)
{
    unsigned char msg[256], sig[1024];
    struct fz_out o;
    memset(msg, 0x61, sizeof(msg));
    CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &p, sizeof(p)};
    CK_ULONG sl = module_op(e, &m, priv, true, msg, sizeof(msg), sig);
    for (unsigned sel = 2; sel < 4; sel++)
        for (unsigned back = 0; back < 2; back++) {
            char name[32];
            head(&o, sel, back);
            fz_put_u32(&o, CKM_SHA256);
            fz_put_u32(&o, CKG_MGF1_SHA256);
            fz_put_u32(&o, 32);
            /* CKM_RSA_PKCS_PSS signs a hash; verify: message | sig */
            fz_put(&o, msg, sel == 2 && !back ? 32 : sizeof(msg));
            if (back && sel == 3)
                fz_put(&o, sig, sl);
            snprintf(name, sizeof(name), "pss-%s-%s",
                     sel == 2 ? "raw" : "sha256", back ? "verify" : "sign");
            fz_write(d, name, &o);
        }
}

static void mech_ctr(const char *d)
{
    static const unsigned bits[3] = {128, 32, 1};
    struct fz_out o;
    unsigned char cb[16];
    for (int i = 0; i < 3; i++) {
        /* the counter's bits zero, but for 1 bit: its last value */
        memset(cb, 0xff, sizeof(cb));
        if (bits[i] > 1)
            memset(cb + 16 - bits[i] / 8, 0, bits[i] / 8);
        char name[32];
        head(&o, 4, (unsigned)i & 1);
        fz_put_u32(&o, bits[i]);
        fz_put(&o, cb, 16);
        fz_put(&o, "counter mode data, more than one block", 38);
        snprintf(name, sizeof(name), "ctr-%u", bits[i]);
        fz_write(d, name, &o);
    }
}

static void hkdf_seed(const char *d, const char *name, unsigned sel,
                      unsigned ext, unsigned salt_type, unsigned salt_key,
                      unsigned value_len)
{
    struct fz_out o;
    head(&o, sel, 0);
    fz_put_u8(&o, ext & 1);
    fz_put_u8(&o, (ext >> 1) & 1);
    fz_put_u32(&o, CKM_SHA256);
    fz_put_u32(&o, salt_type);
    fz_put_str(&o, "salt", salt_type == CKF_HKDF_SALT_DATA ? 4 : 0);
    fz_put_u8(&o, salt_key);
    fz_put_u32(&o, 0);
    fz_put_str(&o, "info", 4);
    fz_put_u16(&o, value_len);
    fz_write(d, name, &o);
}

static void mech_hkdf(const char *d)
{
    hkdf_seed(d, "hkdf-both-salt-data", 5, 3, CKF_HKDF_SALT_DATA, 0, 32);
    hkdf_seed(d, "hkdf-salt-key", 5, 3, CKF_HKDF_SALT_KEY, 1, 16);
    hkdf_seed(d, "hkdf-extract-only", 5, 1, CKF_HKDF_SALT_NULL, 0, 0);
    hkdf_seed(d, "hkdf-expand-only", 5, 2, CKF_HKDF_SALT_NULL, 0, 64);
    hkdf_seed(d, "hkdf-data", 6, 3, CKF_HKDF_SALT_DATA, 0, 48);
}

static void ecdh_seed(const char *d, const char *name, unsigned sel,
                      CK_ULONG kdf, const void *pt, size_t pl, bool aes)
{
    struct fz_out o;
    head(&o, sel, 0);
    fz_put_u32(&o, (uint32_t)kdf);
    fz_put_str(&o, "shared", kdf == CKD_NULL ? 0 : 6);
    fz_put_str(&o, pt, pl);
    fz_put_u16(&o, aes ? 32 : 20);
    fz_put_u8(&o, aes);
    fz_write(d, name, &o);
}

static void mech_ecdh(struct fz_env *e, const char *d)
{
    unsigned char pt[200];
    CK_OBJECT_HANDLE priv;
    CK_ULONG pl = ec_point(e, pt, &priv, false);
    ecdh_seed(d, "ecdh-null-der", 7, CKD_NULL, pt, pl, true);
    ecdh_seed(d, "ecdh-null-raw", 7, CKD_NULL, pt + 2, pl - 2, false);
    ecdh_seed(d, "ecdh-sha256-kdf", 7, CKD_SHA256_KDF, pt + 2, pl - 2, true);
    pl = ec_point(e, pt, &priv, true);
    ecdh_seed(d, "x25519-null", 8, CKD_NULL, pt, pl, true);
    ecdh_seed(d, "x25519-sha1-kdf", 8, CKD_SHA1_KDF, pt, pl, false);
}

void gen_mech(struct fz_env *e, const char *d)
{
    CK_ATTRIBUTE crypt[] = {{CKA_ENCRYPT, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    CK_OBJECT_HANDLE aes = fz_aes(e->keep, fz_aes256, 32, crypt, 2);
    CK_ATTRIBUTE pub[] = {{CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE priv[] = {{CKA_SIGN, &yes, 1}};
    mech_gcm(e, d, aes);
    mech_oaep(e, d, fz_rsa_public(e->keep, pub, 1));
    mech_pss(e, d, fz_rsa_private(e->keep, priv, 1));
    mech_ctr(d);
    mech_hkdf(d);
    mech_ecdh(e, d);
}

/* ---- unwrap ------------------------------------------------------------ */

struct wrapping {
    CK_OBJECT_HANDLE aes128, aes256, rsa_pub;
};

/* The module wraps key k; the seed: mech, tgt, parameters, blob. */
static void wrap_seed(struct fz_env *e, const char *d, const char *name,
                      unsigned sel, unsigned tgt, CK_OBJECT_HANDLE wk,
                      CK_OBJECT_HANDLE k)
{
    static const CK_MECHANISM_TYPE mechs[6] = {
        CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD,
        CKM_AES_GCM,      CKM_RSA_PKCS_OAEP,    CKM_RSA_PKCS_OAEP};
    unsigned char iv[12] = {0}, blob[4096];
    CK_GCM_PARAMS g = {iv, 12, 96, NULL, 0, 128};
    CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256,
                                 CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM m = {mechs[sel], NULL, 0};
    if (sel == 3) {
        m.pParameter = &g;
        m.ulParameterLen = sizeof(g);
    } else if (sel >= 4) {
        m.pParameter = &p;
        m.ulParameterLen = sizeof(p);
    }
    CK_ULONG bl = sizeof(blob);
    CHECK(e->p->C_WrapKey(e->keep, &m, wk, k, blob, &bl));
    struct fz_out o;
    head(&o, sel, tgt);
    if (sel == 3) {
        fz_put_str(&o, iv, 12);
        fz_put_u32(&o, 128);
    } else if (sel == 4) {
        fz_put_u32(&o, CKM_SHA256);
        fz_put_u32(&o, CKG_MGF1_SHA256);
        fz_put_str(&o, NULL, 0);
    }
    fz_put(&o, blob, bl);
    fz_write(d, name, &o);
}

static void unwrap_blobs(struct fz_env *e, const char *d,
                         const struct wrapping *w)
{
    CK_ATTRIBUTE ext[] = {{CKA_EXTRACTABLE, &yes, 1}, {CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE rext[] = {{CKA_EXTRACTABLE, &yes, 1}, {CKA_SIGN, &yes, 1}};
    CK_OBJECT_HANDLE a128 = fz_aes(e->keep, fz_aes128, 16, ext, 2);
    CK_OBJECT_HANDLE a256 = fz_aes(e->keep, fz_aes256, 32, ext, 2);
    CK_OBJECT_HANDLE rsa = fz_rsa_private(e->keep, rext, 2);
    unsigned char pt[200];
    CK_OBJECT_HANDLE ec;
    (void)ec_point(e, pt, &ec, false);
    wrap_seed(e, d, "kw-aes128", 0, 0, w->aes256, a128);
    wrap_seed(e, d, "kw-aes128-under-128", 0, 4, w->aes128, a128);
    wrap_seed(e, d, "kwp-aes256", 1, 0, w->aes256, a256);
    wrap_seed(e, d, "kwp-rsa", 1, 2 | 4, w->aes128, rsa);
    wrap_seed(e, d, "kwp-rsa-typed-token", 1, 3 | 4 | 8, w->aes128, rsa);
    wrap_seed(e, d, "kwp-ec", 1, 2, w->aes256, ec);
    wrap_seed(e, d, "pad-rsa", 2, 2, w->aes256, rsa);
    wrap_seed(e, d, "pad-aes128", 2, 0, w->aes256, a128);
    wrap_seed(e, d, "gcm-aes128", 3, 0, w->aes256, a128);
    wrap_seed(e, d, "gcm-rsa", 3, 2, w->aes256, rsa);
    wrap_seed(e, d, "gcm-ec", 3, 2 | 4, w->aes128, ec);
    wrap_seed(e, d, "oaep-aes128", 4, 0, w->rsa_pub, a128);
    wrap_seed(e, d, "oaep-aes256-as-generic", 4, 1, w->rsa_pub, a256);
    wrap_seed(e, d, "rsa-pkcs-refused", 5, 0, w->rsa_pub, a128);
}

/* PrivateKeyInfo DER of keys OpenSSL makes, for the decoders (sel 6). */
static void pkcs8_seed(const char *d, const char *name, EVP_PKEY *k,
                       unsigned tgt, size_t cut, size_t pad)
{
    unsigned char *der = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k);
    int len = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    if (len <= 0)
        exit(1);
    struct fz_out o;
    head(&o, 6, tgt);
    fz_put(&o, der, (size_t)len - cut);
    for (size_t i = 0; i < pad; i++)
        fz_put_u8(&o, 0);
    fz_write(d, name, &o);
    OPENSSL_free(der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(k);
}

static void unwrap_pkcs8(const char *d)
{
    size_t len;
    const unsigned char *p = fz_rsa_der(&len);
    pkcs8_seed(d, "der-rsa", d2i_AutoPrivateKey(NULL, &p, (long)len), 0, 0, 0);
    pkcs8_seed(d, "der-ec-p256", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
               0, 0, 0);
    pkcs8_seed(d, "der-ec-p384-padded",
               EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), 16, 0, 5);
    pkcs8_seed(d, "der-ed25519", EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), 0, 0,
               0);
    pkcs8_seed(d, "der-x25519", EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), 0, 0,
               0);
    pkcs8_seed(d, "der-ed448", EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), 0, 0, 0);
    pkcs8_seed(d, "der-ec-truncated",
               EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), 0, 9, 0);
}

void gen_unwrap(struct fz_env *e, const char *d)
{
    CK_ATTRIBUTE wrap[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    CK_ATTRIBUTE rwrap[] = {{CKA_WRAP, &yes, 1}};
    struct wrapping w = {
        fz_aes(e->keep, fz_aes128, 16, wrap, 2),
        fz_aes(e->keep, fz_aes256, 32, wrap, 2),
        fz_rsa_public(e->keep, rwrap, 1),
    };
    unwrap_blobs(e, d, &w);
    unwrap_pkcs8(d);
}
