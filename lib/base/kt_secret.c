/* Secret buffers: the only home of key material and PINs. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "kt_base.h"

struct kt_secret {
    size_t len; /* visible length */
    size_t cap; /* allocated bytes, all wiped on free */
    unsigned char data[];
};

kt_secret *kt_secret_new(size_t len)
{
    size_t total;
    if (!kt_size_add(sizeof(struct kt_secret), len, &total))
        return NULL;
    kt_secret *s = OPENSSL_zalloc(total);
    if (s == NULL)
        return NULL;
    s->len = len;
    s->cap = len;
    return s;
}

kt_secret *kt_secret_from(const void *src, size_t len)
{
    kt_secret *s = kt_secret_new(len);
    if (s != NULL && len > 0)
        memcpy(s->data, src, len); /* len is the allocation size */
    return s;
}

kt_secret *kt_secret_random(size_t len)
{
    kt_secret *s = kt_secret_new(len);
    if (s == NULL)
        return NULL;
    if (len > 0 && RAND_priv_bytes(s->data, (int)len) != 1) {
        kt_secret_free(s);
        return NULL;
    }
    return s;
}

kt_secret *kt_secret_dup(const kt_secret *s)
{
    return s ? kt_secret_from(s->data, s->len) : NULL;
}

void kt_secret_free(kt_secret *s)
{
    if (s == NULL)
        return;
    OPENSSL_clear_free(s, sizeof(struct kt_secret) + s->cap);
}

unsigned char *kt_secret_data(kt_secret *s)
{
    return s->data;
}

const unsigned char *kt_secret_cdata(const kt_secret *s)
{
    return s->data;
}

size_t kt_secret_len(const kt_secret *s)
{
    return s->len;
}

void kt_secret_truncate(kt_secret *s, size_t len)
{
    if (len < s->len)
        s->len = len;
}

bool kt_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
