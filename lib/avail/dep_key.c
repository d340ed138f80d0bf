/*
 * Where a DEP key is unwrapped: kt_dep_key_unwrap_slot is the one place
 * where libkeytier uses a root key after a DEP is created (one wrapped
 * copy, under customer key A, B or the availability key, checked against
 * the DEP's check value), and kt_dep_key_unwrap_copy the one unwrap of a
 * DEP key under a root, also for the probe of a copy just made.  Which
 * copy is tried, when, and whether the availability key may be used is
 * the read path's road (lib/avail/read.c) and the fallback rule
 * (lib/avail/fallback_rule.c).  Nothing here calls either of them.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "ckr_class.h"
#include "p11call.h"

bool kt_dep_check_value(const kt_secret *dep_key, const struct kt_dep_rec *dep,
                        uint8_t out[KT_CHECK_SIZE])
{
    /* Binds the DEP key to its tenant and DEP id: a wrapped copy moved from
     * another DEP (even one under the same root) unwraps to a key whose
     * check value does not match. */
    uint8_t info[64 + KEYTIER_TENANT_MAX + KEYTIER_ID_SIZE];
    struct kt_wr wr;
    kt_wr_init(&wr, info, sizeof info);
    kt_wr_bytes(&wr, "keytier dep key check v1", 24);
    kt_wr_lv8(&wr, dep->tenant, strlen(dep->tenant));
    kt_wr_lv8(&wr, dep->dep_id, strlen(dep->dep_id));
    return kt_wr_ok(&wr) && kt_hkdf(dep_key, info, wr.len, out, KT_CHECK_SIZE);
}

keytier_err kt_dep_key_unwrap_copy(const struct kt_root *root,
                                   CK_SESSION_HANDLE s, enum kt_wrap_mech mech,
                                   const uint8_t *wrapped, size_t wrapped_len,
                                   kt_secret **out, CK_RV *rv)
{
    return kt_root_unwrap(root, s, mech, wrapped, wrapped_len, out, rv);
}

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
    keytier_err e =
        kt_root_resolve(ctx, names[slot], r->uri, false, &root, &s, rv);
    if (e != KEYTIER_OK)
        return e;
    e = kt_dep_key_unwrap_copy(&root, s, mech, r->wrapped, r->wrapped_len, &key,
                               rv);
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

/* kt_dep_key_unwrap_slot as a token job owning a copy of the DEP. */
struct kt_unwrap_job {
    struct kt_tjob base;
    struct kt_dep_rec dep;
    int slot;
    kt_secret *key;
};

static keytier_err kt_unwrap_job_run(struct kt_tjob *tj)
{
    struct kt_unwrap_job *j = (struct kt_unwrap_job *)tj;
    return kt_dep_key_unwrap_slot(tj->ctx, &j->dep, j->slot, &j->key, &tj->rv);
}

static void kt_unwrap_job_cleanup(struct kt_tjob *tj)
{
    struct kt_unwrap_job *j = (struct kt_unwrap_job *)tj;
    kt_secret_free(j->key);
    kt_wipe(&j->dep, sizeof j->dep);
}

keytier_err kt_dep_key_unwrap_slot_bounded(keytier_ctx *ctx,
                                           const struct kt_dep_rec *dep,
                                           int slot, kt_secret **out, CK_RV *rv,
                                           unsigned deadline_ms)
{
    static const char *const names[] = {"customer key A", "customer key B",
                                        "availability key"};
    struct kt_unwrap_job *j = kt_tjob_new(ctx, sizeof *j, kt_unwrap_job_run);
    *rv = CKR_OK;
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->base.cleanup = kt_unwrap_job_cleanup;
    j->dep = *dep;
    j->slot = slot;
    keytier_err e =
        kt_tjob_run(&j->base, names[slot], dep->roots[slot].uri, deadline_ms);
    if (j->base.taken) {
        *rv = j->base.rv;
        if (e == KEYTIER_OK) {
            *out = j->key;
            j->key = NULL;
        }
    } else {
        *rv = KT_CKR_TIMEOUT;
    }
    kt_tjob_put(&j->base);
    return e;
}
