/* Fuzz target: the stored attribute format (kt_attrs_parse), which reads
 * records from a token database an attacker may have edited. Property:
 * whatever parses serializes back to the same bytes; nested templates
 * export without reading outside their buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attrs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kt_attrs a;
    kt_attrs_init(&a);
    if (kt_attrs_parse(&a, data, size) != CKR_OK)
        return 0;
    unsigned char *out = NULL;
    size_t out_len = 0;
    if (kt_attrs_serialize(&a, &out, &out_len) != CKR_OK)
        abort();
    if (out_len != size || memcmp(out, data, size) != 0)
        abort();
    free(out);
    for (size_t i = 0; i < a.n; i++) {
        CK_ATTRIBUTE q = {a.v[i].type, NULL, 0};
        CK_RV rv = kt_attr_export(&a.v[i], &q);
        if (rv != CKR_OK || q.ulValueLen > (1u << 20) * 64)
            continue;
        void *buf = malloc(q.ulValueLen + 1);
        q.pValue = buf;
        if (kt_attr_is_template(a.v[i].type)) {
            /* second step of the two-step query: empty inner entries */
            CK_ATTRIBUTE *inner = buf;
            for (size_t j = 0; j < q.ulValueLen / sizeof(CK_ATTRIBUTE); j++)
                inner[j].pValue = NULL;
        }
        /* The length the query gave is enough for a plain value; a
         * template's entries may each answer on their own. */
        rv = kt_attr_export(&a.v[i], &q);
        if (rv != CKR_OK && !kt_attr_is_template(a.v[i].type))
            abort();
        free(buf);
    }
    kt_attrs_clear(&a);
    return 0;
}
