/* Fuzz target: PKCS#11 templates as C_CreateObject, C_UnwrapKey,
 * C_SetAttributeValue and C_CopyObject take them, through the module's
 * function list, on a logged-in token (fuzz_module.h). Every object a call
 * makes is destroyed again.
 *
 * Input:
 *   op   u8   0 C_CreateObject, 1 C_UnwrapKey, 2 C_SetAttributeValue,
 *             3 C_CopyObject (modulo 4)
 *   sel  u8   C_UnwrapKey: the blob (modulo 2: an AES-128 key, the RSA key
 *             as PKCS#8, both wrapped by the module with AES-KWP under
 *             fz_aes256); set/copy: the object (modulo 4: session AES key,
 *             token AES key, session data object, session RSA public key)
 *   then attributes to the end of the input (at most 48):
 *   type u32
 *   flag u8   bit 0: pValue NULL (ulValueLen is len as given); bits 1-3:
 *             bytes added to an array attribute's ulValueLen
 *   len  u16  value length: the value is the next len bytes (fewer where
 *             the input ends: ulValueLen never passes the buffer); for an
 *             attribute with CKF_ARRAY_ATTRIBUTE the bytes are a template of
 *             the same form (two levels at most), so pValue is always a
 *             real CK_ATTRIBUTE array */
#include <stdlib.h>
#include <string.h>

#include "fuzz_module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ATTRS  48
#define MAX_NESTED 16

struct tmpl {
    CK_ATTRIBUTE v[MAX_ATTRS];
    CK_ULONG n;
    /* Nested arrays, with room for the extra bytes of odd lengths. */
    CK_ATTRIBUTE inner[MAX_ATTRS][MAX_NESTED + 1];
    struct tmpl *deeper; /* level 2 of one nested template */
};

static CK_ULONG decode(struct fz_in *in, CK_ATTRIBUTE *v, CK_ULONG max,
                       struct tmpl *t, int depth);

static void decode_array(CK_ATTRIBUTE *a, const uint8_t *p, size_t len,
                         unsigned extra, struct tmpl *t, CK_ULONG i, int depth)
{
    struct fz_in sub = {p, len};
    CK_ATTRIBUTE *arr = t->inner[i];
    memset(arr, 0, sizeof(t->inner[i]));
    CK_ULONG n = decode(&sub, arr, MAX_NESTED, t, depth + 1);
    a->pValue = arr;
    a->ulValueLen = n * sizeof(CK_ATTRIBUTE) + extra;
}

/* Attributes from in, at most max; nested arrays go to t's space. */
static CK_ULONG decode(struct fz_in *in, CK_ATTRIBUTE *v, CK_ULONG max,
                       struct tmpl *t, int depth)
{
    CK_ULONG n = 0;
    while (in->n > 0 && n < max) {
        CK_ATTRIBUTE *a = &v[n];
        a->type = fz_u32(in);
        unsigned flag = fz_u8(in);
        uint16_t want = fz_u16(in);
        size_t got = 0;
        const uint8_t *p = fz_bytes(in, want, &got);
        if (flag & 1) {
            a->pValue = NULL;
            a->ulValueLen = want;
        } else if ((a->type & CKF_ARRAY_ATTRIBUTE) && depth == 0) {
            decode_array(a, p, got, (flag >> 1) & 7, t, n, depth);
        } else if ((a->type & CKF_ARRAY_ATTRIBUTE) && depth == 1 &&
                   t->deeper != NULL && t->deeper->n == 0) {
            /* One template two levels down. */
            struct tmpl *d = t->deeper;
            d->n = 1;
            decode_array(a, p, got, (flag >> 1) & 7, d, 0, depth);
        } else if (a->type & CKF_ARRAY_ATTRIBUTE) {
            a->pValue = NULL; /* deeper: an empty array */
            a->ulValueLen = 0;
        } else {
            a->pValue = (void *)p;
            a->ulValueLen = got;
        }
        n++;
    }
    return n;
}

static struct {
    unsigned gen;
    CK_OBJECT_HANDLE wrap;
    unsigned char blob[2][2048];
    CK_ULONG blob_len[2];
} fx;

static void wrap_one(struct fz_env *e, CK_OBJECT_HANDLE k, int i)
{
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
    fx.blob_len[i] = sizeof(fx.blob[i]);
    if (e->p->C_WrapKey(e->keep, &m, fx.wrap, k, fx.blob[i], &fx.blob_len[i]) !=
        CKR_OK)
        abort();
    if (e->p->C_DestroyObject(e->keep, k) != CKR_OK)
        abort();
}

/* The unwrapping key and the two blobs it opens, made by the module. */
static void fixture(struct fz_env *e)
{
    if (fx.gen == e->gen)
        return;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE wrap[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    fx.wrap = fz_aes(e->keep, fz_aes256, 32, wrap, 2);
    CK_ATTRIBUTE ext[] = {{CKA_EXTRACTABLE, &yes, 1}, {CKA_ENCRYPT, &yes, 1}};
    wrap_one(e, fz_aes(e->keep, fz_aes128, 16, ext, 2), 0);
    CK_ATTRIBUTE rext[] = {{CKA_EXTRACTABLE, &yes, 1}, {CKA_SIGN, &yes, 1}};
    wrap_one(e, fz_rsa_private(e->keep, rext, 2), 1);
    fx.gen = e->gen;
}

/* The object C_SetAttributeValue and C_CopyObject start from. */
static CK_OBJECT_HANDLE base_object(struct fz_env *e, unsigned sel)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS data = CKO_DATA;
    static const char label[] = "fuzz";
    switch (sel % 4) {
    case 0:
    case 1: {
        CK_ATTRIBUTE t[] = {{CKA_TOKEN, sel % 4 == 1 ? &yes : &no, 1},
                            {CKA_EXTRACTABLE, &yes, 1},
                            {CKA_SENSITIVE, &no, 1},
                            {CKA_ENCRYPT, &yes, 1},
                            {CKA_LABEL, (void *)label, 4}};
        return fz_aes(e->s, fz_aes128, 16, t, 5);
    }
    case 2: {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &data, sizeof(data)},
                            {CKA_PRIVATE, &no, 1},
                            {CKA_LABEL, (void *)label, 4},
                            {CKA_APPLICATION, (void *)label, 4},
                            {CKA_VALUE, (void *)label, 4}};
        return fz_create(e->s, t, 5);
    }
    default: {
        CK_ATTRIBUTE t[] = {{CKA_VERIFY, &yes, 1}, {CKA_ENCRYPT, &yes, 1}};
        return fz_rsa_public(e->s, t, 2);
    }
    }
}

static void run(struct fz_env *e, unsigned op, unsigned sel, struct tmpl *t)
{
    CK_FUNCTION_LIST_PTR p = e->p;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE, base;
    switch (op % 4) {
    case 0:
        if (fz_trace("C_CreateObject",
                     p->C_CreateObject(e->s, t->v, t->n, &h)) != CKR_OK)
            h = CK_INVALID_HANDLE;
        break;
    case 1: {
        CK_MECHANISM m = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
        if (fz_trace("C_UnwrapKey",
                     p->C_UnwrapKey(e->s, &m, fx.wrap, fx.blob[sel % 2],
                                    fx.blob_len[sel % 2], t->v, t->n, &h)) !=
            CKR_OK)
            h = CK_INVALID_HANDLE;
        break;
    }
    case 2:
        base = base_object(e, sel);
        fz_trace("C_SetAttributeValue",
                 p->C_SetAttributeValue(e->s, base, t->v, t->n));
        fz_destroy(base);
        break;
    default:
        base = base_object(e, sel);
        if (fz_trace("C_CopyObject",
                     p->C_CopyObject(e->s, base, t->v, t->n, &h)) != CKR_OK)
            h = CK_INVALID_HANDLE;
        fz_destroy(base);
        break;
    }
    fz_destroy(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_env *e = fz_env();
    fixture(e);
    struct fz_in in = {data, size};
    unsigned op = fz_u8(&in), sel = fz_u8(&in);
    struct tmpl *t = calloc(2, sizeof(*t));
    if (t == NULL)
        abort();
    t->deeper = &t[1];
    t->n = decode(&in, t->v, MAX_ATTRS, t, 0);
    run(e, op, sel, t);
    free(t);
    return 0;
}
