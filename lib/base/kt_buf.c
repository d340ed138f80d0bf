/* Bounded reader and writer: every length from outside is checked against
 * what remains before any byte moves. */
#include <string.h>

#include <stdlib.h>

#include "kt_base.h"

void kt_rd_init(struct kt_rd *rd, const void *buf, size_t len)
{
    rd->buf = buf;
    rd->len = buf ? len : 0;
    rd->pos = 0;
}

size_t kt_rd_remaining(const struct kt_rd *rd)
{
    return rd->len - rd->pos;
}

bool kt_rd_view(struct kt_rd *rd, size_t n, const uint8_t **p)
{
    if (n > kt_rd_remaining(rd))
        return false;
    /* An empty reader has no buffer (SQLite gives NULL for an empty blob):
     * no offset may be added to a null pointer. */
    *p = rd->buf != NULL ? rd->buf + rd->pos : rd->buf;
    rd->pos += n;
    return true;
}

static bool kt_rd_be(struct kt_rd *rd, size_t n, uint64_t *v)
{
    const uint8_t *p;
    if (!kt_rd_view(rd, n, &p))
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | p[i];
    *v = x;
    return true;
}

bool kt_rd_u8(struct kt_rd *rd, uint8_t *v)
{
    uint64_t x;
    if (!kt_rd_be(rd, 1, &x))
        return false;
    *v = (uint8_t)x;
    return true;
}

bool kt_rd_u16(struct kt_rd *rd, uint16_t *v)
{
    uint64_t x;
    if (!kt_rd_be(rd, 2, &x))
        return false;
    *v = (uint16_t)x;
    return true;
}

bool kt_rd_u32(struct kt_rd *rd, uint32_t *v)
{
    uint64_t x;
    if (!kt_rd_be(rd, 4, &x))
        return false;
    *v = (uint32_t)x;
    return true;
}

bool kt_rd_u64(struct kt_rd *rd, uint64_t *v)
{
    return kt_rd_be(rd, 8, v);
}

bool kt_rd_copy(struct kt_rd *rd, void *dst, size_t cap, size_t n)
{
    const uint8_t *p;
    if (n > cap)
        return false;
    if (!kt_rd_view(rd, n, &p))
        return false;
    if (n > 0)
        memcpy(dst, p, n);
    return true;
}

bool kt_rd_lv8(struct kt_rd *rd, const uint8_t **p, size_t *n)
{
    size_t save = rd->pos;
    uint8_t len;
    if (!kt_rd_u8(rd, &len))
        return false;
    if (!kt_rd_view(rd, len, p)) {
        rd->pos = save;
        return false;
    }
    *n = len;
    return true;
}

void kt_wr_init(struct kt_wr *wr, void *buf, size_t cap)
{
    wr->buf = buf;
    wr->cap = buf ? cap : 0;
    wr->len = 0;
    wr->failed = false;
}

uint8_t *kt_wr_reserve(struct kt_wr *wr, size_t n)
{
    if (wr->failed || n > wr->cap - wr->len) {
        wr->failed = true;
        return NULL;
    }
    uint8_t *p = wr->buf + wr->len;
    wr->len += n;
    return p;
}

static bool kt_wr_be(struct kt_wr *wr, size_t n, uint64_t v)
{
    uint8_t *p = kt_wr_reserve(wr, n);
    if (p == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return true;
}

bool kt_wr_u8(struct kt_wr *wr, uint8_t v)
{
    return kt_wr_be(wr, 1, v);
}

bool kt_wr_u16(struct kt_wr *wr, uint16_t v)
{
    return kt_wr_be(wr, 2, v);
}

bool kt_wr_u32(struct kt_wr *wr, uint32_t v)
{
    return kt_wr_be(wr, 4, v);
}

bool kt_wr_u64(struct kt_wr *wr, uint64_t v)
{
    return kt_wr_be(wr, 8, v);
}

bool kt_wr_bytes(struct kt_wr *wr, const void *src, size_t n)
{
    uint8_t *p = kt_wr_reserve(wr, n);
    if (p == NULL)
        return false;
    if (n > 0)
        memcpy(p, src, n);
    return true;
}

bool kt_wr_lv8(struct kt_wr *wr, const void *src, size_t n)
{
    if (n > UINT8_MAX) {
        wr->failed = true;
        return false;
    }
    return kt_wr_u8(wr, (uint8_t)n) && kt_wr_bytes(wr, src, n);
}

bool kt_wr_ok(const struct kt_wr *wr)
{
    return !wr->failed;
}

bool kt_array_reserve(void **arr, size_t *cap, size_t n, size_t elem,
                      size_t first)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : first;
    if (ncap < *cap)
        return false;
    void *na = reallocarray(*arr, ncap, elem);
    if (na == NULL)
        return false;
    *arr = na;
    *cap = ncap;
    return true;
}
