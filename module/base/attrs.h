/* Attribute arrays: the one type every object, template and stored record
 * uses. Values are owned copies, wiped on free. */
#ifndef KT_ATTRS_H
#define KT_ATTRS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <p11-kit/pkcs11.h>

#include "ossl/ossl.h" /* KT_NODISCARD */

typedef struct kt_attrs {
    CK_ATTRIBUTE *v;
    size_t n;
    size_t cap;
    /* Non-zero: v and every value share one block of this many bytes
     * (kt_attrs_copy into an empty array makes one); a change first gives
     * each value its own allocation again. */
    size_t packed;
} kt_attrs;

/* Nested templates (CKA_WRAP_TEMPLATE...) are held in their serialized form
 * (kt_attrs_serialize), so an attribute value is always a flat byte string. */
bool kt_attr_is_template(CK_ATTRIBUTE_TYPE type);

void kt_attrs_init(kt_attrs *a);
void kt_attrs_clear(kt_attrs *a);
CK_ATTRIBUTE *kt_attrs_find(const kt_attrs *a, CK_ATTRIBUTE_TYPE type);
bool kt_attrs_has(const kt_attrs *a, CK_ATTRIBUTE_TYPE type);
/* Missing -> dflt; a present bool of the wrong size reads as dflt too (the
 * schema rejects those at create time). */
bool kt_attrs_get_bool(const kt_attrs *a, CK_ATTRIBUTE_TYPE type, bool dflt);
/* CKR_TEMPLATE_INCOMPLETE when absent, CKR_ATTRIBUTE_VALUE_INVALID when the
 * length is not a CK_ULONG. */
KT_NODISCARD CK_RV kt_attrs_get_ulong(const kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                      CK_ULONG *out);
KT_NODISCARD CK_RV kt_attrs_set(kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                const void *value, CK_ULONG len);
KT_NODISCARD CK_RV kt_attrs_set_bool(kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                     bool value);
KT_NODISCARD CK_RV kt_attrs_set_ulong(kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                      CK_ULONG value);
void kt_attrs_remove(kt_attrs *a, CK_ATTRIBUTE_TYPE type);
/* Into an empty dst: one allocation for the array and every value but key
 * material (its own block in the secure heap). */
KT_NODISCARD CK_RV kt_attrs_copy(kt_attrs *dst, const kt_attrs *src);
/* Into an empty dst like kt_attrs_copy, and src is left empty: key material
 * already in the secure heap moves over instead of being copied (no second
 * secure allocation on the C_UnwrapKey / C_GenerateKey paths). On failure
 * src may have lost key material values (out of memory). */
KT_NODISCARD CK_RV kt_attrs_move(kt_attrs *dst, kt_attrs *src);
/* Adds an attribute the array takes ownership of (a kt_secure_alloc or
 * malloc block, freed with kt_free_secret; also on failure).
 * CKR_TEMPLATE_INCONSISTENT if the type is present. */
KT_NODISCARD CK_RV kt_attrs_set_take(kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                     void *value, CK_ULONG len);
/* Every attribute of tmpl is present in a with an equal value. */
bool kt_attrs_match(const kt_attrs *a, const kt_attrs *tmpl);
bool kt_attr_equal(const CK_ATTRIBUTE *x, const CK_ATTRIBUTE *y);

/* Caller template -> owned array. Validates pointers and lengths
 * (CKR_ARGUMENTS_BAD / CKR_ATTRIBUTE_VALUE_INVALID), converts nested
 * templates, and rejects a type given twice with different values
 * (CKR_TEMPLATE_INCONSISTENT). */
KT_NODISCARD CK_RV kt_attrs_from_template(kt_attrs *a, const CK_ATTRIBUTE *t,
                                          CK_ULONG n);

/* Stored form: u32 count, then per attribute u64 type, u32 length, bytes
 * (little endian). The parser checks every length before it advances. */
KT_NODISCARD CK_RV kt_attrs_serialize(const kt_attrs *a, unsigned char **out,
                                      size_t *out_len);
KT_NODISCARD CK_RV kt_attrs_parse(kt_attrs *a, const unsigned char *in,
                                  size_t len);

/* Copy one internal value out to a caller CK_ATTRIBUTE following
 * C_GetAttributeValue rules (length query, CKR_BUFFER_TOO_SMALL, nested
 * template arrays). */
KT_NODISCARD CK_RV kt_attr_export(const CK_ATTRIBUTE *internal,
                                  CK_ATTRIBUTE *out);

/* An immutable, reference-counted copy of an object's attributes: key
 * snapshots share it instead of copying attributes on every operation. */
struct kt_shared_attrs {
    atomic_int refs;
    kt_attrs attrs;
};
void kt_shared_attrs_unref(struct kt_shared_attrs *sa);

#endif
