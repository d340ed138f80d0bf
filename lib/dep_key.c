/*
 * Reading a DEP key: THE single place where libkeytier uses root keys
 * after a DEP is created.  Customer key A or B is picked at random, then
 * the other (shared/DESIGN.md §2, the fallback rule, steps 1-2).  The
 * availability fallback, hedging, deadlines and the cache (lib-avail) plug
 * in here.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "p11call.h"

keytier_err kt_dep_key_unwrap_slot(keytier_ctx *ctx,
                                   const struct kt_dep_rec *dep, int slot,
                                   kt_secret **out, CK_RV *rv)
{
    static const char *const names[] = {"customer key A", "customer key B",
                                        "availability key"};
    const struct kt_root_rec *r = &dep->roots[slot];
    struct kt_root root;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    kt_secret *key = NULL;
    enum kt_wrap_mech mech;
    uint8_t check[KT_CHECK_SIZE];
    *rv = CKR_OK;
    if (!kt_wrap_mech_parse(r->mech, &mech))
        return kt_err(KEYTIER_E_FORMAT, "DEP %s: unknown wrap mechanism '%s'",
                      dep->dep_id, r->mech);
    memset(&root, 0, sizeof root);
    keytier_err e = kt_root_resolve(ctx, names[slot], r->uri, false, &root, &s);
    if (e != KEYTIER_OK)
        return e;
    e = kt_root_unwrap(&root, s, mech, r->wrapped, r->wrapped_len, &key, rv);
    kt_session_put(root.tok, s, *rv);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "%s %s", names[slot], r->uri);
    if (!kt_dep_check_value(key, dep, check)) {
        kt_secret_free(key);
        return kt_err(KEYTIER_E_CRYPTO, "deriving the DEP key check value");
    }
    if (!kt_ct_equal(check, dep->check, KT_CHECK_SIZE)) {
        kt_secret_free(key);
        return kt_err(KEYTIER_E_AUTH,
                      "%s %s: the wrapped copy does not belong to DEP %s",
                      names[slot], r->uri, dep->dep_id);
    }
    *out = key;
    return KEYTIER_OK;
}

keytier_err kt_dep_key_read(keytier_ctx *ctx, const struct kt_dep_rec *dep,
                            const keytier_request *req, kt_secret **out)
{
    (void)req; /* request kind and id: used by the fallback rule (step 3) */
    unsigned char coin = 0;
    if (RAND_bytes(&coin, 1) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    int first = coin & 1 ? KEYTIER_ROOT_B : KEYTIER_ROOT_A;
    int order[2] = {first,
                    first == KEYTIER_ROOT_A ? KEYTIER_ROOT_B : KEYTIER_ROOT_A};
    char why[2][384];
    CK_RV rv[2];
    for (int i = 0; i < 2; i++) {
        keytier_err e = kt_dep_key_unwrap_slot(ctx, dep, order[i], out, &rv[i]);
        if (e == KEYTIER_OK)
            return KEYTIER_OK;
        snprintf(why[order[i]], sizeof why[0], "%s",
                 keytier_last_error_detail());
    }
    return kt_err(KEYTIER_E_UNWRAP, "DEP %s: [A] %s; [B] %s", dep->dep_id,
                  why[KEYTIER_ROOT_A], why[KEYTIER_ROOT_B]);
}
