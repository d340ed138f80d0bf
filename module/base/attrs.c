#include "attrs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kt.h"
#include "ossl/ossl.h"

#define KT_ATTRS_MAX_COUNT 4096u
#define KT_ATTR_MAX_LEN    (1u << 20)

bool kt_attr_is_template(CK_ATTRIBUTE_TYPE type)
{
    return type == CKA_WRAP_TEMPLATE || type == CKA_UNWRAP_TEMPLATE ||
           type == CKA_DERIVE_TEMPLATE;
}

void kt_attrs_init(kt_attrs *a)
{
    a->v = NULL;
    a->n = 0;
    a->cap = 0;
    a->packed = 0;
}

/* Key material (the values the store seals: secret key and private key
 * components, the value of private data objects) lives in the secure heap
 * (kt_secure_alloc), decided by the array's own CKA_CLASS. A value set
 * before the class is known starts in ordinary memory; objects and key
 * snapshots are always made by kt_attrs_copy, which then moves it. */
/* What decides it, read once per array: its class (if it has one) and,
 * for data objects, CKA_PRIVATE. */
struct secret_rule {
    bool known;
    CK_OBJECT_CLASS cls;
    bool private_data;
};

static struct secret_rule secret_rule_of(const kt_attrs *a)
{
    struct secret_rule r = {false, 0, false};
    r.known = kt_attrs_get_ulong(a, CKA_CLASS, &r.cls) == CKR_OK;
    r.private_data =
        r.known && r.cls == CKO_DATA && kt_attrs_get_bool(a, CKA_PRIVATE, true);
    return r;
}

static bool rule_secret(const struct secret_rule *r, CK_ATTRIBUTE_TYPE type)
{
    if (!r->known)
        return false;
    if (r->cls == CKO_SECRET_KEY || r->cls == CKO_DATA)
        return type == CKA_VALUE &&
               (r->cls == CKO_SECRET_KEY || r->private_data);
    return r->cls == CKO_PRIVATE_KEY && kt_schema_secret(r->cls, type);
}

static bool attr_is_secret(const kt_attrs *a, CK_ATTRIBUTE_TYPE type)
{
    if (type != CKA_VALUE && !kt_schema_secret(CKO_PRIVATE_KEY, type))
        return false;
    struct secret_rule r = secret_rule_of(a);
    return rule_secret(&r, type);
}

static void *value_alloc(const kt_attrs *a, CK_ATTRIBUTE_TYPE type, size_t len)
{
    return attr_is_secret(a, type) ? kt_secure_alloc(len) : malloc(len);
}

/* A value of a packed array that has its own allocation (secure heap). */
static bool outside_block(const kt_attrs *a, const void *p)
{
    const unsigned char *b = (const unsigned char *)a->v;
    const unsigned char *q = p;
    return q != NULL && (q < b || q >= b + a->packed);
}

void kt_attrs_clear(kt_attrs *a)
{
    if (a->packed != 0) {
        for (size_t i = 0; i < a->n; i++)
            if (outside_block(a, a->v[i].pValue))
                kt_free_secret(a->v[i].pValue, a->v[i].ulValueLen);
        kt_free_secret(a->v, a->packed);
    } else {
        for (size_t i = 0; i < a->n; i++)
            kt_free_secret(a->v[i].pValue, a->v[i].ulValueLen);
        free(a->v);
    }
    kt_attrs_init(a);
}

/* Values in a packed block start at multiples of this (the alignment
 * malloc gives: CKA_ALLOWED_MECHANISMS is read as an array). */
#define KT_PACK_ALIGN 16u

static size_t pack_round(size_t n)
{
    return (n + KT_PACK_ALIGN - 1) & ~(size_t)(KT_PACK_ALIGN - 1);
}

/* A packed array back to one allocation per value (before a change). */
static KT_NODISCARD CK_RV attrs_unpack(kt_attrs *a)
{
    if (a->packed == 0)
        return CKR_OK;
    kt_attrs plain;
    kt_attrs_init(&plain);
    size_t cap = a->n > 16 ? a->n : 16;
    plain.v = malloc(cap * sizeof(*plain.v));
    if (plain.v == NULL)
        return CKR_HOST_MEMORY;
    plain.cap = cap;
    for (size_t i = 0; i < a->n; i++) {
        plain.v[i] = a->v[i];
        plain.v[i].pValue = NULL;
        if (a->v[i].ulValueLen > 0) {
            plain.v[i].pValue =
                value_alloc(a, a->v[i].type, a->v[i].ulValueLen);
            if (plain.v[i].pValue == NULL) {
                kt_attrs_clear(&plain);
                return CKR_HOST_MEMORY;
            }
            memcpy(plain.v[i].pValue, a->v[i].pValue, a->v[i].ulValueLen);
        }
        plain.n = i + 1;
    }
    kt_attrs_clear(a);
    *a = plain;
    return CKR_OK;
}

CK_ATTRIBUTE *kt_attrs_find(const kt_attrs *a, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].type == type)
            return &a->v[i];
    return NULL;
}

bool kt_attrs_has(const kt_attrs *a, CK_ATTRIBUTE_TYPE type)
{
    return kt_attrs_find(a, type) != NULL;
}

bool kt_attrs_get_bool(const kt_attrs *a, CK_ATTRIBUTE_TYPE type, bool dflt)
{
    const CK_ATTRIBUTE *at = kt_attrs_find(a, type);
    if (at == NULL || at->ulValueLen != sizeof(CK_BBOOL))
        return dflt;
    return *(const CK_BBOOL *)at->pValue != CK_FALSE;
}

CK_RV kt_attrs_get_ulong(const kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                         CK_ULONG *out)
{
    const CK_ATTRIBUTE *at = kt_attrs_find(a, type);
    if (at == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (at->ulValueLen != sizeof(CK_ULONG))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    memcpy(out, at->pValue, sizeof(CK_ULONG));
    return CKR_OK;
}

CK_RV kt_attrs_set(kt_attrs *a, CK_ATTRIBUTE_TYPE type, const void *value,
                   CK_ULONG len)
{
    void *copy = NULL;
    if (len > 0) {
        copy = value_alloc(a, type, len);
        if (copy == NULL)
            return CKR_HOST_MEMORY;
        /* Before any unpacking: value may point into a itself. */
        memcpy(copy, value, len);
    }
    CK_RV rv = attrs_unpack(a);
    if (rv != CKR_OK) {
        kt_free_secret(copy, len);
        return rv;
    }
    CK_ATTRIBUTE *at = kt_attrs_find(a, type);
    if (at != NULL) {
        kt_free_secret(at->pValue, at->ulValueLen);
        at->pValue = copy;
        at->ulValueLen = len;
        return CKR_OK;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        CK_ATTRIBUTE *nv = realloc(a->v, cap * sizeof(*nv));
        if (nv == NULL) {
            kt_free_secret(copy, len);
            return CKR_HOST_MEMORY;
        }
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n].type = type;
    a->v[a->n].pValue = copy;
    a->v[a->n].ulValueLen = len;
    a->n++;
    return CKR_OK;
}

CK_RV kt_attrs_set_bool(kt_attrs *a, CK_ATTRIBUTE_TYPE type, bool value)
{
    CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
    return kt_attrs_set(a, type, &b, sizeof(b));
}

CK_RV kt_attrs_set_ulong(kt_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG value)
{
    return kt_attrs_set(a, type, &value, sizeof(value));
}

void kt_attrs_remove(kt_attrs *a, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].type != type)
            continue;
        if (a->packed != 0) {
            /* In place: wiped, and the entry leaves the array. */
            if (outside_block(a, a->v[i].pValue))
                kt_free_secret(a->v[i].pValue, a->v[i].ulValueLen);
            else
                kt_wipe(a->v[i].pValue, a->v[i].ulValueLen);
            a->v[i] = a->v[a->n - 1];
            a->n--;
            return;
        }
        kt_free_secret(a->v[i].pValue, a->v[i].ulValueLen);
        a->v[i] = a->v[a->n - 1];
        a->n--;
        return;
    }
}

/* Into an empty dst, one block for the array and the values but key
 * material, which gets its own secure block; steal: src is cleared
 * afterwards, and key material already in the secure heap (in its own
 * allocation) moves over instead of being copied. */
static KT_NODISCARD CK_RV attrs_pack(kt_attrs *dst, kt_attrs *src, bool steal)
{
    {
        /* Into an empty array: no duplicate lookups, and one allocation
         * for the array and the values (objects, key snapshots: fewer
         * allocations and pages per object). */
        struct secret_rule rule = secret_rule_of(src);
        size_t total = pack_round(src->n * sizeof(CK_ATTRIBUTE));
        for (size_t i = 0; i < src->n; i++)
            if (!rule_secret(&rule, src->v[i].type))
                total += pack_round(src->v[i].ulValueLen);
        unsigned char *block = malloc(total);
        if (block == NULL)
            return CKR_HOST_MEMORY;
        kt_attrs_clear(dst);
        CK_ATTRIBUTE *v = (CK_ATTRIBUTE *)(void *)block;
        size_t off = pack_round(src->n * sizeof(CK_ATTRIBUTE));
        for (size_t i = 0; i < src->n; i++) {
            v[i] = src->v[i];
            v[i].pValue = NULL;
            if (src->v[i].ulValueLen == 0)
                continue;
            if (rule_secret(&rule, src->v[i].type)) {
                /* Key material: its own block in the secure heap. */
                if (steal && src->packed == 0 &&
                    kt_ossl_secure_allocated(src->v[i].pValue)) {
                    v[i].pValue = src->v[i].pValue;
                    src->v[i].pValue = NULL;
                    src->v[i].ulValueLen = 0;
                    continue;
                }
                v[i].pValue = kt_secure_alloc(src->v[i].ulValueLen);
                if (v[i].pValue == NULL) {
                    kt_attrs tmp = {v, i, src->n, total};
                    kt_attrs_clear(&tmp);
                    return CKR_HOST_MEMORY;
                }
            } else {
                v[i].pValue = block + off;
                off += pack_round(src->v[i].ulValueLen);
            }
            memcpy(v[i].pValue, src->v[i].pValue, src->v[i].ulValueLen);
        }
        /* Padding between values is wiped with the block on free. */
        dst->v = v;
        dst->n = src->n;
        dst->cap = src->n;
        dst->packed = total;
        return CKR_OK;
    }
}

CK_RV kt_attrs_copy(kt_attrs *dst, const kt_attrs *src)
{
    if (dst->n == 0 && src->n > 0)
        return attrs_pack(dst, (kt_attrs *)src, false);
    for (size_t i = 0; i < src->n; i++) {
        CK_RV rv = kt_attrs_set(dst, src->v[i].type, src->v[i].pValue,
                                src->v[i].ulValueLen);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

CK_RV kt_attrs_move(kt_attrs *dst, kt_attrs *src)
{
    CK_RV rv = CKR_OK;
    if (src->n > 0)
        rv = attrs_pack(dst, src, true);
    if (rv == CKR_OK)
        kt_attrs_clear(src);
    return rv;
}

CK_RV kt_attrs_set_take(kt_attrs *a, CK_ATTRIBUTE_TYPE type, void *value,
                        CK_ULONG len)
{
    CK_RV rv = attrs_unpack(a);
    if (rv == CKR_OK && kt_attrs_has(a, type))
        rv = CKR_TEMPLATE_INCONSISTENT;
    if (rv == CKR_OK && a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        CK_ATTRIBUTE *nv = realloc(a->v, cap * sizeof(*nv));
        if (nv == NULL) {
            rv = CKR_HOST_MEMORY;
        } else {
            a->v = nv;
            a->cap = cap;
        }
    }
    if (rv != CKR_OK) {
        kt_free_secret(value, len);
        return rv;
    }
    a->v[a->n].type = type;
    a->v[a->n].pValue = value;
    a->v[a->n].ulValueLen = len;
    a->n++;
    return CKR_OK;
}

bool kt_attr_equal(const CK_ATTRIBUTE *x, const CK_ATTRIBUTE *y)
{
    if (x->ulValueLen != y->ulValueLen)
        return false;
    if (x->ulValueLen == 0)
        return true;
    /* Booleans compare by truth, not by byte. */
    if (x->ulValueLen == sizeof(CK_BBOOL) &&
        kt_schema_kind(x->type) == KT_KIND_BOOL)
        return (*(CK_BBOOL *)x->pValue != 0) == (*(CK_BBOOL *)y->pValue != 0);
    return memcmp(x->pValue, y->pValue, x->ulValueLen) == 0;
}

bool kt_attrs_match(const kt_attrs *a, const kt_attrs *tmpl)
{
    for (size_t i = 0; i < tmpl->n; i++) {
        const CK_ATTRIBUTE *have = kt_attrs_find(a, tmpl->v[i].type);
        if (have == NULL || !kt_attr_equal(have, &tmpl->v[i]))
            return false;
    }
    return true;
}

static KT_NODISCARD CK_RV attrs_add_template(kt_attrs *a, const CK_ATTRIBUTE *t,
                                             CK_ULONG n, int depth)
{
    CK_RV rv = CKR_OK;
    if (n > 0 && t == NULL)
        return CKR_ARGUMENTS_BAD;
    if (n > KT_ATTRS_MAX_COUNT)
        return CKR_ARGUMENTS_BAD;
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *at = &t[i];
        if (at->ulValueLen > 0 && at->pValue == NULL)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        if (at->ulValueLen > KT_ATTR_MAX_LEN)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        if (kt_attr_is_template(at->type)) {
            if (depth > 0 || at->ulValueLen % sizeof(CK_ATTRIBUTE) != 0)
                return CKR_ATTRIBUTE_VALUE_INVALID;
            kt_attrs inner;
            unsigned char *ser = NULL;
            size_t ser_len = 0;
            kt_attrs_init(&inner);
            rv = attrs_add_template(&inner, at->pValue,
                                    at->ulValueLen / sizeof(CK_ATTRIBUTE),
                                    depth + 1);
            if (rv == CKR_OK)
                rv = kt_attrs_serialize(&inner, &ser, &ser_len);
            kt_attrs_clear(&inner);
            if (rv == CKR_OK) {
                const CK_ATTRIBUTE *prev = kt_attrs_find(a, at->type);
                CK_ATTRIBUTE cand = {at->type, ser, ser_len};
                if (prev != NULL && !kt_attr_equal(prev, &cand))
                    rv = CKR_TEMPLATE_INCONSISTENT;
                else
                    rv = kt_attrs_set(a, at->type, ser, ser_len);
            }
            free(ser);
            if (rv != CKR_OK)
                return rv;
            continue;
        }
        const CK_ATTRIBUTE *prev = kt_attrs_find(a, at->type);
        if (prev != NULL) {
            if (!kt_attr_equal(prev, at))
                return CKR_TEMPLATE_INCONSISTENT;
            continue;
        }
        rv = kt_attrs_set(a, at->type, at->pValue, at->ulValueLen);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

CK_RV kt_attrs_from_template(kt_attrs *a, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = attrs_add_template(a, t, n, 0);
    if (rv != CKR_OK)
        kt_attrs_clear(a);
    return rv;
}

static void put_le(unsigned char *p, uint64_t v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

CK_RV kt_attrs_serialize(const kt_attrs *a, unsigned char **out,
                         size_t *out_len)
{
    size_t len = 4;
    for (size_t i = 0; i < a->n; i++)
        len += 12 + a->v[i].ulValueLen;
    unsigned char *buf = malloc(len);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    unsigned char *p = buf;
    put_le(p, a->n, 4);
    p += 4;
    for (size_t i = 0; i < a->n; i++) {
        put_le(p, a->v[i].type, 8);
        put_le(p + 8, a->v[i].ulValueLen, 4);
        p += 12;
        if (a->v[i].ulValueLen > 0)
            memcpy(p, a->v[i].pValue, a->v[i].ulValueLen);
        p += a->v[i].ulValueLen;
    }
    *out = buf;
    *out_len = len;
    return CKR_OK;
}

CK_RV kt_attrs_parse(kt_attrs *a, const unsigned char *in, size_t len)
{
    CK_RV rv = CKR_OK;
    size_t off = 0;
    if (len < 4)
        return CKR_DATA_INVALID;
    uint64_t count = get_le(in, 4);
    off = 4;
    if (count > KT_ATTRS_MAX_COUNT)
        return CKR_DATA_INVALID;
    for (uint64_t i = 0; i < count; i++) {
        if (len - off < 12) {
            rv = CKR_DATA_INVALID;
            goto out;
        }
        CK_ATTRIBUTE_TYPE type = (CK_ATTRIBUTE_TYPE)get_le(in + off, 8);
        uint64_t vlen = get_le(in + off + 8, 4);
        off += 12;
        if (vlen > len - off || vlen > KT_ATTR_MAX_LEN ||
            kt_attrs_has(a, type)) {
            rv = CKR_DATA_INVALID;
            goto out;
        }
        rv = kt_attrs_set(a, type, in + off, (CK_ULONG)vlen);
        if (rv != CKR_OK)
            goto out;
        off += vlen;
    }
    if (off != len)
        rv = CKR_DATA_INVALID;
out:
    if (rv != CKR_OK)
        kt_attrs_clear(a);
    return rv;
}

static KT_NODISCARD CK_RV export_template(const CK_ATTRIBUTE *internal,
                                          CK_ATTRIBUTE *out)
{
    kt_attrs inner;
    CK_RV rv;
    kt_attrs_init(&inner);
    rv = kt_attrs_parse(&inner, internal->pValue, internal->ulValueLen);
    if (rv != CKR_OK)
        return CKR_GENERAL_ERROR;
    CK_ULONG need = inner.n * sizeof(CK_ATTRIBUTE);
    if (out->pValue == NULL) {
        out->ulValueLen = need;
        goto done;
    }
    if (out->ulValueLen < need) {
        out->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        rv = CKR_BUFFER_TOO_SMALL;
        goto done;
    }
    /* Two-step query of a nested template (PKCS#11 v2.40 §5.7): the caller
     * supplies an array whose entries it fills on a second call. */
    CK_ATTRIBUTE *dst = out->pValue;
    for (size_t i = 0; i < inner.n; i++) {
        dst[i].type = inner.v[i].type;
        CK_RV r = kt_attr_export(&inner.v[i], &dst[i]);
        if (r != CKR_OK)
            rv = r;
    }
    out->ulValueLen = need;
done:
    kt_attrs_clear(&inner);
    return rv;
}

CK_RV kt_attr_export(const CK_ATTRIBUTE *internal, CK_ATTRIBUTE *out)
{
    if (kt_attr_is_template(internal->type))
        return export_template(internal, out);
    if (out->pValue == NULL) {
        out->ulValueLen = internal->ulValueLen;
        return CKR_OK;
    }
    if (out->ulValueLen < internal->ulValueLen) {
        out->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (internal->ulValueLen > 0)
        memcpy(out->pValue, internal->pValue, internal->ulValueLen);
    out->ulValueLen = internal->ulValueLen;
    return CKR_OK;
}

void kt_shared_attrs_unref(struct kt_shared_attrs *sa)
{
    if (sa != NULL && atomic_fetch_sub(&sa->refs, 1) == 1) {
        kt_attrs_clear(&sa->attrs);
        free(sa);
    }
}
