/* PKCS#8 PrivateKeyInfo through OpenSSL's encoders and decoders (see
 * pkcs8.h). The DER is written to and read from OpenSSL's secure heap where
 * it is the module's; OpenSSL wipes its own intermediate copies (the
 * PrivateKeyInfo's key octets, the private numbers) when it frees them. */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1

#include "pkcs8.h"

#include <limits.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>

CK_RV kt_ossl_pkcs8_encode(const EVP_PKEY *key, void *(*alloc)(size_t),
                           unsigned char **der, size_t *len)
{
    /* The key's own library context (the module's) chooses the encoder. */
    OSSL_ENCODER_CTX *ctx = OSSL_ENCODER_CTX_new_for_pkey(
        key, OSSL_KEYMGMT_SELECT_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
    BIO *bio = BIO_new(BIO_s_secmem());
    BUF_MEM *mem = NULL;
    CK_RV rv = CKR_KEY_NOT_WRAPPABLE;

    *der = NULL;
    *len = 0;
    if (bio == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (ctx == NULL || OSSL_ENCODER_CTX_get_num_encoders(ctx) == 0 ||
        !OSSL_ENCODER_to_bio(ctx, bio) || BIO_get_mem_ptr(bio, &mem) <= 0 ||
        mem == NULL || mem->length == 0)
        goto out;
    *der = alloc(mem->length);
    if (*der == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    memcpy(*der, mem->data, mem->length);
    *len = mem->length;
    rv = CKR_OK;
out:
    ERR_clear_error();
    BIO_free(bio); /* a secure-memory BIO wipes its buffer */
    OSSL_ENCODER_CTX_free(ctx);
    return rv;
}

CK_RV kt_ossl_pkcs8_decode(const unsigned char *der, size_t len, EVP_PKEY **out)
{
    EVP_PKEY *key = NULL;
    const unsigned char *p = der;
    size_t left = len;
    /* "PrivateKeyInfo" alone: an EncryptedPrivateKeyInfo would ask for a
     * passphrase, and a bare RSAPrivateKey or ECPrivateKey is not what the
     * wrap mechanisms carry. */
    OSSL_DECODER_CTX *ctx = OSSL_DECODER_CTX_new_for_pkey(
        &key, "DER", "PrivateKeyInfo", NULL, OSSL_KEYMGMT_SELECT_KEYPAIR,
        kt_ossl_libctx(), NULL);
    CK_RV rv = CKR_WRAPPED_KEY_INVALID;

    *out = NULL;
    if (ctx == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (OSSL_DECODER_CTX_get_num_decoders(ctx) == 0) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    if (!OSSL_DECODER_from_data(ctx, &p, &left) || key == NULL || left != 0)
        goto out;
    *out = key;
    key = NULL;
    rv = CKR_OK;
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    OSSL_DECODER_CTX_free(ctx);
    return rv;
}

size_t kt_ossl_der_seq_len(const unsigned char *p, size_t len)
{
    const unsigned char *q = p;
    long body = 0;
    int tag = 0, cls = 0;
    /* Most secret key values fail on the first byte, before the parser
     * (whose errors would go on the thread's error queue). */
    if (len < 2 || len > LONG_MAX ||
        p[0] != (V_ASN1_CONSTRUCTED | V_ASN1_SEQUENCE))
        return 0;
    int r = ASN1_get_object(&q, &body, &tag, &cls, (long)len);
    if ((r & 0x80) != 0 || r != V_ASN1_CONSTRUCTED || tag != V_ASN1_SEQUENCE ||
        cls != V_ASN1_UNIVERSAL) {
        ERR_clear_error();
        return 0;
    }
    size_t hdr = (size_t)(q - p);
    return (size_t)body <= len - hdr ? hdr + (size_t)body : 0;
}

bool kt_ossl_is_pkcs8(const unsigned char *p, size_t len)
{
    EVP_PKEY *key = NULL;
    if (kt_ossl_der_seq_len(p, len) != len)
        return false;
    if (kt_ossl_pkcs8_decode(p, len, &key) != CKR_OK)
        return false;
    EVP_PKEY_free(key);
    return true;
}

unsigned kt_ossl_key_strength(const EVP_PKEY *key)
{
    int bits = EVP_PKEY_get_security_bits(key);
    return bits > 0 ? (unsigned)bits : 0;
}
