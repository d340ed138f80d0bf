#include "kt.h"

#include <stdlib.h>

/* Handles are counters, never pointers, never reused within a process: a
 * stale handle can only miss, never alias a newer object. */
struct handle_counter {
    _Alignas(KT_CACHE_LINE) atomic_ulong next;
};
static struct handle_counter counters[KT_SHARDS];

CK_ULONG kt_handle_next_in(unsigned shard)
{
    shard %= KT_SHARDS;
    /* Counter values start at 1: no handle is 0 (CK_INVALID_HANDLE). */
    CK_ULONG n = atomic_fetch_add_explicit(&counters[shard].next, 1,
                                           memory_order_relaxed) +
                 1;
    return n * KT_SHARDS + shard;
}

CK_ULONG kt_handle_next(void)
{
    return kt_handle_next_in(0);
}

void kt_hmap_init(kt_hmap *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->n = 0;
}

void kt_hmap_free(kt_hmap *m)
{
    free(m->keys);
    free(m->vals);
    kt_hmap_init(m);
}

static size_t slot_of(CK_ULONG key, size_t cap)
{
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static KT_NODISCARD CK_RV hmap_grow(kt_hmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    CK_ULONG *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return CKR_HOST_MEMORY;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == 0)
            continue;
        size_t j = slot_of(m->keys[i], cap);
        while (keys[j] != 0)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return CKR_OK;
}

CK_RV kt_hmap_put(kt_hmap *m, CK_ULONG key, void *val)
{
    if (key == 0)
        return CKR_GENERAL_ERROR;
    if ((m->n + 1) * 2 > m->cap) {
        CK_RV rv = hmap_grow(m);
        if (rv != CKR_OK)
            return rv;
    }
    size_t j = slot_of(key, m->cap);
    while (m->keys[j] != 0 && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == 0)
        m->n++;
    m->keys[j] = key;
    m->vals[j] = val;
    return CKR_OK;
}

void *kt_hmap_get(const kt_hmap *m, CK_ULONG key)
{
    if (m->cap == 0 || key == 0)
        return NULL;
    size_t j = slot_of(key, m->cap);
    while (m->keys[j] != 0) {
        if (m->keys[j] == key)
            return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

void *kt_hmap_del(kt_hmap *m, CK_ULONG key)
{
    if (m->cap == 0 || key == 0)
        return NULL;
    size_t j = slot_of(key, m->cap);
    while (m->keys[j] != key) {
        if (m->keys[j] == 0)
            return NULL;
        j = (j + 1) & (m->cap - 1);
    }
    void *val = m->vals[j];
    m->keys[j] = 0;
    m->vals[j] = NULL;
    m->n--;
    /* Backward-shift deletion keeps probe chains intact without
     * tombstones. */
    size_t i = j;
    for (;;) {
        i = (i + 1) & (m->cap - 1);
        if (m->keys[i] == 0)
            break;
        size_t home = slot_of(m->keys[i], m->cap);
        bool movable =
            (j <= i) ? (home <= j || home > i) : (home <= j && home > i);
        if (movable) {
            m->keys[j] = m->keys[i];
            m->vals[j] = m->vals[i];
            m->keys[i] = 0;
            m->vals[i] = NULL;
            j = i;
        }
    }
    return val;
}

bool kt_hmap_iter(const kt_hmap *m, size_t *pos, CK_ULONG *key, void **val)
{
    while (*pos < m->cap) {
        size_t i = (*pos)++;
        if (m->keys[i] != 0) {
            if (key != NULL)
                *key = m->keys[i];
            *val = m->vals[i];
            return true;
        }
    }
    return false;
}
