/* Fuzz target: wrapped-key blobs and the PKCS#8 they carry. C_UnwrapKey
 * through the module's function list with fixed wrapping keys (so the
 * seeds, wrapped by the module, open), for secret-key and private-key
 * templates; and the module's PKCS#8 reading directly (kt_asym_from_pkcs8,
 * kt_asym_is_pkcs8, kt_ossl_pkcs8_decode, kt_ossl_der_seq_len).
 *
 * Input:
 *   mech u8   modulo 7: 0 CKM_AES_KEY_WRAP, 1 CKM_AES_KEY_WRAP_KWP,
 *             2 CKM_AES_KEY_WRAP_PAD, 3 CKM_AES_GCM, 4 CKM_RSA_PKCS_OAEP,
 *             5 CKM_RSA_PKCS, 6 the PKCS#8 decoders alone
 *   tgt  u8   bits 0-1: the template: 0 AES key, 1 generic secret,
 *             2 private key (type from the blob), 3 RSA private key;
 *             bit 2: unwrap with the AES-128 key (else AES-256); bit 3:
 *             CKA_TOKEN true; bit 4 (decoders): zero-padded
 *   GCM  iv str (u16 length, bytes), ulTagBits u32
 *   OAEP hashAlg u32, mgf u32, source data str
 *   the rest: the wrapped blob (or the DER for the decoders) */
#include <stdlib.h>
#include <string.h>

#include "fuzz_module.h"
#include "kt.h"
#include "kt_asym.h"
#include "ossl/pkcs8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    unsigned gen;
    CK_OBJECT_HANDLE aes128, aes256, rsa;
} k;

static void keys(struct fz_env *e)
{
    if (k.gen == e->gen)
        return;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE wrap[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    k.aes128 = fz_aes(e->keep, fz_aes128, 16, wrap, 2);
    k.aes256 = fz_aes(e->keep, fz_aes256, 32, wrap, 2);
    CK_ATTRIBUTE unwrap[] = {{CKA_UNWRAP, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    k.rsa = fz_rsa_private(e->keep, unwrap, 2);
    k.gen = e->gen;
}

static void decoders(const uint8_t *d, size_t len, bool zero_padded)
{
    kt_attrs a;
    unsigned strength = 0;
    kt_attrs_init(&a);
    if (fz_trace("kt_asym_from_pkcs8",
                 kt_asym_from_pkcs8(d, len, zero_padded, &a, &strength)) ==
            CKR_OK &&
        !kt_attrs_has(&a, CKA_KEY_TYPE))
        abort(); /* a decoded key always names its type */
    kt_attrs_clear(&a);
    EVP_PKEY *key = NULL;
    if (kt_ossl_pkcs8_decode(d, len, &key) == CKR_OK) {
        (void)kt_ossl_key_strength(key);
        EVP_PKEY_free(key);
        if (kt_ossl_der_seq_len(d, len) != len)
            abort(); /* a whole PrivateKeyInfo is one SEQUENCE */
    }
    (void)kt_asym_is_pkcs8(d, len);
}

static CK_ULONG template_of(unsigned tgt, CK_ATTRIBUTE *t, CK_OBJECT_CLASS *cls,
                            CK_KEY_TYPE *kt, CK_BBOOL *tok, CK_BBOOL *yes)
{
    static const CK_KEY_TYPE types[4] = {CKK_AES, CKK_GENERIC_SECRET, 0,
                                         CKK_RSA};
    CK_ULONG n = 0;
    *cls = (tgt & 3) >= 2 ? CKO_PRIVATE_KEY : CKO_SECRET_KEY;
    *kt = types[tgt & 3];
    *tok = (tgt & 8) ? CK_TRUE : CK_FALSE;
    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, cls, sizeof(*cls)};
    if ((tgt & 3) != 2)
        t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, kt, sizeof(*kt)};
    t[n++] = (CK_ATTRIBUTE){CKA_TOKEN, tok, 1};
    t[n++] = (CK_ATTRIBUTE){(tgt & 3) >= 2 ? CKA_SIGN : CKA_ENCRYPT, yes, 1};
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const CK_MECHANISM_TYPE mechs[6] = {
        CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD,
        CKM_AES_GCM,      CKM_RSA_PKCS_OAEP,    CKM_RSA_PKCS};
    struct fz_env *e = fz_env();
    keys(e);
    struct fz_in in = {data, size};
    unsigned sel = fz_u8(&in) % 7, tgt = fz_u8(&in);
    if (sel == 6) {
        decoders(in.p, in.n, tgt & 16);
        return 0;
    }
    CK_MECHANISM m = {mechs[sel], NULL, 0};
    CK_GCM_PARAMS gcm = {0};
    CK_RSA_PKCS_OAEP_PARAMS oaep = {0};
    if (sel == 3) {
        gcm.pIv = (CK_BYTE_PTR)fz_str(&in, &gcm.ulIvLen);
        gcm.ulIvBits = gcm.ulIvLen * 8;
        gcm.ulTagBits = fz_u32(&in);
        m.pParameter = &gcm;
        m.ulParameterLen = sizeof(gcm);
    } else if (sel == 4) {
        oaep.hashAlg = fz_u32(&in);
        oaep.mgf = fz_u32(&in);
        oaep.source = CKZ_DATA_SPECIFIED;
        oaep.pSourceData = (void *)fz_str(&in, &oaep.ulSourceDataLen);
        m.pParameter = &oaep;
        m.ulParameterLen = sizeof(oaep);
    }
    CK_OBJECT_HANDLE wk = sel >= 4 ? k.rsa : (tgt & 4) ? k.aes128 : k.aes256;
    CK_ATTRIBUTE t[4];
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
    CK_BBOOL tok, yes = CK_TRUE;
    CK_ULONG n = template_of(tgt, t, &cls, &kt, &tok, &yes);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    if (fz_trace("C_UnwrapKey",
                 e->p->C_UnwrapKey(e->s, &m, wk, (CK_BYTE_PTR)in.p, in.n, t, n,
                                   &h)) == CKR_OK)
        fz_destroy(h);
    return 0;
}
