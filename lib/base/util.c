/* Small helpers: UUIDs, HKDF, argument checks. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "kt_lib.h"

bool kt_uuid_new(uint8_t out[KT_UUID_BYTES])
{
    if (RAND_bytes(out, KT_UUID_BYTES) != 1)
        return false;
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40); /* RFC 4122 §4.4: v4 */
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
    return true;
}

void kt_uuid_format(const uint8_t in[KT_UUID_BYTES], char out[KEYTIER_ID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < KT_UUID_BYTES; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[in[i] >> 4];
        out[o++] = hex[in[i] & 15];
    }
    out[o] = '\0';
}

static int kt_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool kt_uuid_parse(const char *s, uint8_t out[KT_UUID_BYTES])
{
    if (s == NULL || strlen(s) != KEYTIER_ID_SIZE - 1)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < KEYTIER_ID_SIZE - 1;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
            i++;
            continue;
        }
        int hi = kt_hexval(s[i]), lo = kt_hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return o == KT_UUID_BYTES;
}

/* Algorithms are fetched once per process (an implicit fetch per call
 * costs more than the operation on small inputs). */
static EVP_KDF *kt_hkdf_alg;
static EVP_CIPHER *kt_gcm_alg;
static pthread_once_t kt_algs_once = PTHREAD_ONCE_INIT;

static void kt_algs_fetch(void)
{
    kt_hkdf_alg = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
    kt_gcm_alg = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

const EVP_CIPHER *kt_aes256gcm(void)
{
    pthread_once(&kt_algs_once, kt_algs_fetch);
    return kt_gcm_alg;
}

bool kt_hkdf(const kt_secret *ikm, const void *info, size_t info_len,
             uint8_t *out, size_t out_len)
{
    pthread_once(&kt_algs_once, kt_algs_fetch);
    EVP_KDF_CTX *kctx = kt_hkdf_alg ? EVP_KDF_CTX_new(kt_hkdf_alg) : NULL;
    bool ok = false;
    if (kctx == NULL)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                          (void *)kt_secret_cdata(ikm),
                                          kt_secret_len(ikm)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                          info_len),
        OSSL_PARAM_construct_end(),
    };
    ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
out:
    EVP_KDF_CTX_free(kctx);
    return ok;
}

bool kt_text_ok(const char *s, size_t max)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, max + 1);
    return n >= 1 && n <= max;
}

void kt_strlcpy(char *dst, const char *src, size_t cap)
{
    if (cap == 0)
        return;
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n); /* n < cap */
    dst[n] = '\0';
}
