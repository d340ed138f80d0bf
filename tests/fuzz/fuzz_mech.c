/* Fuzz target: mechanism parameters, through the module's function list
 * with real keys (made once per token, fuzz_module.h): the parameter struct
 * is built from the input's scalar fields, its pointers point into the
 * input, and the matching C_*Init is followed by one operation call (or
 * C_DeriveKey, whose key is destroyed again).
 *
 * Input:
 *   sel  u8   mechanism, modulo 9: 0 CKM_AES_GCM, 1 CKM_RSA_PKCS_OAEP,
 *             2 CKM_RSA_PKCS_PSS, 3 CKM_SHA256_RSA_PKCS_PSS, 4 CKM_AES_CTR,
 *             5 CKM_HKDF_DERIVE, 6 CKM_HKDF_DATA, 7 CKM_ECDH1_DERIVE on a
 *             P-256 key, 8 CKM_ECDH1_DERIVE on an X25519 key
 *   how  u8   bit 0: decrypt/verify instead of encrypt/sign; bits 1-2: 0
 *             ulParameterLen the struct's size, 1 pParameter NULL, 2 the
 *             next u8 as ulParameterLen (the buffer is larger), 3 the
 *             struct's size less one CK_ULONG (GCM: the v2.40 layout)
 *   the struct's fields (str = u16 length and bytes; length 0 is a NULL
 *   pointer):
 *     GCM   iv str, ulIvBits u32, aad str, ulTagBits u32
 *     OAEP  hashAlg u32, mgf u32, source u32, pSourceData str
 *     PSS   hashAlg u32, mgf u32, sLen u32
 *     CTR   ulCounterBits u32, cb 16 bytes
 *     HKDF  bExtract u8, bExpand u8, prfHashMechanism u32, ulSaltType u32,
 *           salt str, hSaltKey: u8 (0 the u32 that follows, 1 a generic
 *           secret, 2 the base key, 3 the AES key) and u32, info str,
 *           CKA_VALUE_LEN u16 (0: left out)
 *     ECDH  kdf u32, shared data str, public data str, CKA_VALUE_LEN u16
 *           (0: left out), key type u8 (odd: CKK_AES)
 *   the rest: the data of the operation call */
#include <stdlib.h>
#include <string.h>

#include "fuzz_module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A pointer field and its length: NULL when empty. */
static CK_BYTE_PTR ptr_str(struct fz_in *in, CK_ULONG *len)
{
    const uint8_t *p = fz_str(in, len);
    return *len == 0 ? NULL : (CK_BYTE_PTR)p;
}

static struct {
    unsigned gen;
    CK_OBJECT_HANDLE aes, rsa_priv, rsa_pub, hkdf, salt, ec, x25519;
} k;

static CK_OBJECT_HANDLE generic_secret(struct fz_env *e, unsigned char fill)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE;
    unsigned char v[32];
    memset(v, fill, sizeof(v));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, v, sizeof(v)},
                        {CKA_DERIVE, &yes, 1}};
    return fz_create(e->keep, t, 4);
}

static CK_OBJECT_HANDLE ec_pair(struct fz_env *e, CK_MECHANISM_TYPE gen,
                                const unsigned char *params, CK_ULONG len)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM m = {gen, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_EC_PARAMS, (void *)params, len},
                          {CKA_TOKEN, &no, 1}};
    CK_ATTRIBUTE priv[] = {{CKA_DERIVE, &yes, 1}, {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE hpub, hpriv;
    if (e->p->C_GenerateKeyPair(e->keep, &m, pub, 2, priv, 2, &hpub, &hpriv) !=
        CKR_OK)
        abort();
    return hpriv;
}

static void keys(struct fz_env *e)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char x25519[] = {0x06, 0x03, 0x2b, 0x65, 0x6e};
    if (k.gen == e->gen)
        return;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE crypt[] = {{CKA_ENCRYPT, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    k.aes = fz_aes(e->keep, fz_aes256, 32, crypt, 2);
    CK_ATTRIBUTE priv[] = {{CKA_DECRYPT, &yes, 1}, {CKA_SIGN, &yes, 1}};
    k.rsa_priv = fz_rsa_private(e->keep, priv, 2);
    CK_ATTRIBUTE pub[] = {{CKA_ENCRYPT, &yes, 1}, {CKA_VERIFY, &yes, 1}};
    k.rsa_pub = fz_rsa_public(e->keep, pub, 2);
    k.hkdf = generic_secret(e, 0x11);
    k.salt = generic_secret(e, 0x22);
    k.ec = ec_pair(e, CKM_EC_KEY_PAIR_GEN, p256, sizeof(p256));
    k.x25519 =
        ec_pair(e, CKM_EC_MONTGOMERY_KEY_PAIR_GEN, x25519, sizeof(x25519));
    k.gen = e->gen;
}

/* The parameter buffer: any struct, and room for a length that lies. */
union param {
    CK_GCM_PARAMS gcm;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_AES_CTR_PARAMS ctr;
    CK_HKDF_PARAMS hkdf;
    CK_ECDH1_DERIVE_PARAMS ecdh;
    unsigned char raw[256];
};

struct call {
    CK_MECHANISM m;
    union param prm;
    CK_ULONG size;      /* the struct's own size */
    CK_ULONG value_len; /* derive: CKA_VALUE_LEN, 0 for none */
    bool aes;           /* derive: CKK_AES */
};

static void fields_gcm(struct fz_in *in, struct call *c)
{
    CK_GCM_PARAMS *g = &c->prm.gcm;
    g->pIv = ptr_str(in, &g->ulIvLen);
    g->ulIvBits = fz_u32(in);
    g->pAAD = ptr_str(in, &g->ulAADLen);
    g->ulTagBits = fz_u32(in);
    c->size = sizeof(*g);
}

/* The v2.40 CK_GCM_PARAMS: no ulIvBits. */
static void gcm_v240(struct call *c)
{
    CK_GCM_PARAMS g = c->prm.gcm;
    struct {
        CK_BYTE_PTR pIv;
        CK_ULONG ulIvLen;
        CK_BYTE_PTR pAAD;
        CK_ULONG ulAADLen;
        CK_ULONG ulTagBits;
    } old = {g.pIv, g.ulIvLen, g.pAAD, g.ulAADLen, g.ulTagBits};
    memset(&c->prm, 0, sizeof(c->prm));
    memcpy(c->prm.raw, &old, sizeof(old));
}

static void fields_hkdf(struct fz_in *in, struct call *c)
{
    CK_HKDF_PARAMS *h = &c->prm.hkdf;
    h->bExtract = fz_u8(in);
    h->bExpand = fz_u8(in);
    h->prfHashMechanism = fz_u32(in);
    h->ulSaltType = fz_u32(in);
    h->pSalt = ptr_str(in, &h->ulSaltLen);
    unsigned which = fz_u8(in) % 4;
    CK_OBJECT_HANDLE raw = fz_u32(in);
    const CK_OBJECT_HANDLE pick[4] = {raw, k.salt, k.hkdf, k.aes};
    h->hSaltKey = pick[which];
    h->pInfo = ptr_str(in, &h->ulInfoLen);
    c->value_len = fz_u16(in);
    c->size = sizeof(*h);
}

static void fields_ecdh(struct fz_in *in, struct call *c)
{
    CK_ECDH1_DERIVE_PARAMS *d = &c->prm.ecdh;
    d->kdf = fz_u32(in);
    d->pSharedData = ptr_str(in, &d->ulSharedDataLen);
    d->pPublicData = ptr_str(in, &d->ulPublicDataLen);
    c->value_len = fz_u16(in);
    c->aes = fz_u8(in) & 1;
    c->size = sizeof(*d);
}

static void fields(struct fz_in *in, unsigned sel, struct call *c)
{
    static const CK_MECHANISM_TYPE mechs[9] = {
        CKM_AES_GCM,      CKM_RSA_PKCS_OAEP,
        CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS,
        CKM_AES_CTR,      CKM_HKDF_DERIVE,
        CKM_HKDF_DATA,    CKM_ECDH1_DERIVE,
        CKM_ECDH1_DERIVE};
    c->m.mechanism = mechs[sel];
    switch (sel) {
    case 0:
        fields_gcm(in, c);
        break;
    case 1:
        c->prm.oaep.hashAlg = fz_u32(in);
        c->prm.oaep.mgf = fz_u32(in);
        c->prm.oaep.source = fz_u32(in);
        c->prm.oaep.pSourceData = ptr_str(in, &c->prm.oaep.ulSourceDataLen);
        c->size = sizeof(c->prm.oaep);
        break;
    case 2:
    case 3:
        c->prm.pss.hashAlg = fz_u32(in);
        c->prm.pss.mgf = fz_u32(in);
        c->prm.pss.sLen = fz_u32(in);
        c->size = sizeof(c->prm.pss);
        break;
    case 4: {
        size_t got = 0;
        c->prm.ctr.ulCounterBits = fz_u32(in);
        const uint8_t *src = fz_bytes(in, 16, &got);
        memcpy(c->prm.ctr.cb, src, got);
        c->size = sizeof(c->prm.ctr);
        break;
    }
    case 5:
    case 6:
        fields_hkdf(in, c);
        break;
    default:
        fields_ecdh(in, c);
        break;
    }
}

static void param_len(struct fz_in *in, unsigned how, struct call *c)
{
    c->m.pParameter = &c->prm;
    c->m.ulParameterLen = c->size;
    switch ((how >> 1) & 3) {
    case 1:
        c->m.pParameter = NULL;
        c->m.ulParameterLen = 0;
        break;
    case 2:
        c->m.ulParameterLen = fz_u8(in);
        break;
    case 3:
        if (c->m.mechanism == CKM_AES_GCM)
            gcm_v240(c);
        c->m.ulParameterLen = c->size - sizeof(CK_ULONG);
        break;
    default:
        break;
    }
}

static void derive(struct fz_env *e, CK_OBJECT_HANDLE base, struct call *c)
{
    CK_OBJECT_CLASS cls =
        c->m.mechanism == CKM_HKDF_DATA ? CKO_DATA : CKO_SECRET_KEY;
    CK_KEY_TYPE kt = c->aes ? CKK_AES : CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE t[4] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &no, 1}};
    CK_ULONG n = 2;
    if (cls == CKO_SECRET_KEY)
        t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &kt, sizeof(kt)};
    if (c->value_len != 0)
        t[n++] =
            (CK_ATTRIBUTE){CKA_VALUE_LEN, &c->value_len, sizeof(c->value_len)};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    if (fz_trace("C_DeriveKey",
                 e->p->C_DeriveKey(e->s, &c->m, base, t, n, &h)) == CKR_OK)
        fz_destroy(h);
}

/* One operation with the data; a call that leaves its operation active
 * (a short buffer) ends with the session. */
static void operate(struct fz_env *e, unsigned sel, bool back, struct call *c,
                    const uint8_t *d, CK_ULONG len)
{
    CK_FUNCTION_LIST_PTR p = e->p;
    unsigned char *out = malloc(len + 1024);
    CK_ULONG out_len = len + 1024;
    CK_RV rv = CKR_OK;
    CK_BYTE_PTR in = (CK_BYTE_PTR)d;
    if (out == NULL)
        abort();
    if (sel == 2 || sel == 3) {
        if (!back && fz_trace("C_SignInit",
                              p->C_SignInit(e->s, &c->m, k.rsa_priv)) == CKR_OK)
            rv = p->C_Sign(e->s, in, len, out, &out_len);
        if (back && fz_trace("C_VerifyInit",
                             p->C_VerifyInit(e->s, &c->m, k.rsa_pub)) == CKR_OK)
            rv = p->C_Verify(e->s, in, len / 2, in + len / 2, len - len / 2);
    } else {
        CK_OBJECT_HANDLE key =
            sel == 1 ? (back ? k.rsa_priv : k.rsa_pub) : k.aes;
        if (!back && fz_trace("C_EncryptInit",
                              p->C_EncryptInit(e->s, &c->m, key)) == CKR_OK)
            rv = p->C_Encrypt(e->s, in, len, out, &out_len);
        if (back && fz_trace("C_DecryptInit",
                             p->C_DecryptInit(e->s, &c->m, key)) == CKR_OK)
            rv = p->C_Decrypt(e->s, in, len, out, &out_len);
    }
    free(out);
    if (fz_trace("operation", rv) == CKR_BUFFER_TOO_SMALL)
        abort(); /* the buffer is larger than any output */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_env *e = fz_env();
    keys(e);
    struct fz_in in = {data, size};
    unsigned sel = fz_u8(&in) % 9, how = fz_u8(&in);
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    fields(&in, sel, c);
    param_len(&in, how, c);
    if (sel == 5 || sel == 6)
        derive(e, k.hkdf, c);
    else if (sel == 7 || sel == 8)
        derive(e, sel == 7 ? k.ec : k.x25519, c);
    else
        operate(e, sel, how & 1, c, in.p, in.n);
    free(c);
    return 0;
}
