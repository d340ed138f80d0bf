/* Fuzz target: PKCS#11 URIs as the library takes them from configuration
 * and callers (kt_uri_parse, kt_uri_check). Properties: a URI that parses
 * carries no PIN; its formatted form parses again and names the same
 * token; a refused URI leaves an error detail. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(P11KitUri *u)
{
    char *text = NULL;
    if (p11_kit_uri_format(u, P11_KIT_URI_FOR_ANY, &text) != P11_KIT_URI_OK)
        return;
    P11KitUri *again = NULL;
    if (kt_uri_parse(text, &again) != KEYTIER_OK)
        abort(); /* what p11-kit formats, the library must take back */
    CK_TOKEN_INFO *a = p11_kit_uri_get_token_info(u);
    CK_TOKEN_INFO *b = p11_kit_uri_get_token_info(again);
    if (memcmp(a->label, b->label, sizeof a->label) != 0 ||
        memcmp(a->serialNumber, b->serialNumber, sizeof a->serialNumber) != 0)
        abort();
    p11_kit_uri_free(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *uri = malloc(size + 1);
    if (uri == NULL)
        return 0;
    memcpy(uri, data, size);
    uri[size] = '\0'; /* a NUL inside ends the string, as in C callers */
    P11KitUri *u = NULL;
    keytier_err e = kt_uri_parse(uri, &u);
    if (e == KEYTIER_OK) {
        if (p11_kit_uri_get_pin_value(u) || p11_kit_uri_get_pin_source(u))
            abort();
        check_round_trip(u);
        p11_kit_uri_free(u);
    } else if (e != KEYTIER_E_URI || keytier_last_error_detail()[0] == '\0') {
        abort();
    }
    keytier_err c = kt_uri_check("fuzz", uri);
    if ((c == KEYTIER_OK) != (e == KEYTIER_OK))
        abort();
    free(uri);
    return 0;
}
