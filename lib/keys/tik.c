/*
 * Tenant intermediate keys (TIKs) of the files shape: the key of a TIK of
 * an offboarded DEP, unwrapped from its service-managed copy
 * (docs/DESIGN.md §2 "Lifecycle: Offboard").  The copy is made by
 * lib/lifecycle/offboard.c; here it is only unwrapped, on the call pool,
 * by a key that must still be the one keytier generated for the role: in
 * the service token, labelled "keytier-managed-" and the DEP id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kt_lib.h"

struct kt_managed_job {
    struct kt_root_job rj;
    struct kt_managed_rec m;
    char label[64];
    kt_secret *key;
};

static keytier_err kt_managed_unwrap(struct kt_root_job *rj,
                                     const struct kt_root *root,
                                     CK_SESSION_HANDLE s, CK_RV *rv)
{
    struct kt_managed_job *j = (struct kt_managed_job *)rj;
    char ident[KEYTIER_URI_MAX];
    enum kt_wrap_mech m;
    if (!kt_wrap_mech_parse(j->m.mech, &m))
        return kt_err(KEYTIER_E_FORMAT, "TIK %s: unknown mechanism '%s'",
                      j->m.tik_id, j->m.mech);
    keytier_err e =
        kt_root_check_service(rj->base.ctx, root, s, "service-managed key",
                              rj->uri, j->label, ident, rv);
    if (e == KEYTIER_OK)
        e = kt_root_unwrap(root, s, m, j->m.wrapped, j->m.wrapped_len, &j->key,
                           rv);
    return e;
}

static void kt_managed_job_cleanup(struct kt_tjob *tj)
{
    struct kt_managed_job *j = (struct kt_managed_job *)tj;
    kt_secret_free(j->key);
    kt_wipe(&j->m, sizeof j->m);
}

keytier_err kt_tik_managed_key(keytier_ctx *ctx, const struct kt_key_rec *r,
                               kt_secret **out)
{
    struct kt_managed_rec *m = malloc(sizeof *m);
    kt_secret *key = NULL;
    keytier_err e = m ? kt_store_managed_get(ctx->store, r->key_id, m)
                      : kt_err(KEYTIER_E_NOMEM, NULL);
    if (e == KEYTIER_OK &&
        (strcmp(m->dep_id, r->dep_id) != 0 || strcmp(m->tenant, r->tenant)))
        e = kt_err(KEYTIER_E_AUTH,
                   "the service-managed copy of TIK %s names another DEP or "
                   "tenant",
                   r->key_id);
    struct kt_managed_job *j =
        e == KEYTIER_OK ? kt_root_job_new(ctx, sizeof *j, "service-managed key",
                                          m->uri, false, kt_managed_unwrap)
                        : NULL;
    if (e == KEYTIER_OK && j == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    if (e == KEYTIER_OK) {
        j->rj.base.cleanup = kt_managed_job_cleanup;
        j->m = *m;
        snprintf(j->label, sizeof j->label, "keytier-managed-%s", r->dep_id);
        e = kt_root_job_run(&j->rj, kt_admin_deadline_ms(ctx));
        if (e == KEYTIER_OK) {
            key = j->key;
            j->key = NULL;
        }
        kt_tjob_put(&j->rj.base);
    }
    if (m != NULL)
        kt_wipe(m, sizeof *m);
    free(m);
    if (e == KEYTIER_OK && kt_secret_len(key) != KT_KEY_SIZE)
        e = kt_err(KEYTIER_E_AUTH, "TIK %s: service-managed copy has %zu bytes",
                   r->key_id, kt_secret_len(key));
    if (e != KEYTIER_OK) {
        kt_secret_free(key);
        return e;
    }
    *out = key;
    return KEYTIER_OK;
}
