/*
 * Offboarding a files tenant's region to service-managed keys
 * (docs/DESIGN.md §2 "Lifecycle: Offboard"): the region's TIKs are
 * re-protected under an AES-256 key keytier generates in the service
 * token (label "keytier-managed-" and the DEP id), and the DEP is retired
 * (KEYTIER_DEP_OFFBOARDED).  Sites and blobs keep their wrapped bytes:
 * below a TIK nothing names the DEP.
 *
 * Resumability: a journal row (store_files.c) moves STARTED -> KEY_READY
 * -> PROTECTED -> DONE, each step in one store transaction with what it
 * did, each with an audit record.  A crash anywhere leaves the journal at
 * the last step done; the next call does the rest: the key is found again
 * by its label (a key generated just before the crash is reused), the
 * TIKs are re-protected again (the copies replace any of a run that died
 * before its transaction), the DEP retired once.
 *
 * The TIKs are read through the DEP key as the internal operation
 * "migrate" with the fallback rule's "rewrap": the customer keys only,
 * never the availability key, so a revoked tenant cannot be offboarded
 * into readable keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kt_lib.h"
#include "trust.h"

int kt_offboard_stop_after = -1;

#define KT_MANAGED_LABEL "keytier-managed-"

struct kt_ob {
    keytier_ctx *ctx;
    struct kt_dep_rec *dep;
    struct kt_offboard_rec j;
    char label[64];
    char uri[KEYTIER_URI_MAX];
    size_t tiks;
};

static keytier_err kt_ob_audit(struct kt_ob *ob, const char *activity,
                               const char *step)
{
    json_object *f = json_object_new_object();
    if (f != NULL) {
        json_object_object_add(
            f, "Region",
            json_object_new_string(
                ob->dep->region[0] ? ob->dep->region : KEYTIER_REGION_DEFAULT));
        if (step != NULL)
            json_object_object_add(f, "Step", json_object_new_string(step));
        if (ob->j.uri[0] != '\0')
            json_object_object_add(f, "ServiceManagedKey",
                                   json_object_new_string(ob->j.uri));
        if (ob->j.approval[0] != '\0')
            json_object_object_add(f, "ApprovalId",
                                   json_object_new_string(ob->j.approval));
        json_object_object_add(f, "Tiks",
                               json_object_new_int64((int64_t)ob->tiks));
    }
    return kt_lc_audit(ob->ctx, activity, ob->dep, f);
}

/* ---- the service-managed key ------------------------------------------ */

/* Checks a resolved key for its role (root job op). */
struct kt_ob_check_job {
    struct kt_root_job rj;
    char label[64];
    char ident[KEYTIER_URI_MAX];
};

static keytier_err kt_ob_check(struct kt_root_job *rj,
                               const struct kt_root *root, CK_SESSION_HANDLE s,
                               CK_RV *rv)
{
    struct kt_ob_check_job *j = (struct kt_ob_check_job *)rj;
    if (root->type != CKK_AES)
        return kt_err(KEYTIER_E_KEY_ROLE,
                      "service-managed key %s is not an AES key", rj->uri);
    return kt_root_check_service(rj->base.ctx, root, s, "service-managed key",
                                 rj->uri, j->label, j->ident, rv);
}

static keytier_err kt_ob_key_find(struct kt_ob *ob, char ident[KEYTIER_URI_MAX])
{
    struct kt_ob_check_job *j = kt_root_job_new(
        ob->ctx, sizeof *j, "service-managed key", ob->uri, true, kt_ob_check);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    kt_strlcpy(j->label, ob->label, sizeof j->label);
    keytier_err e = kt_root_job_run(&j->rj, kt_admin_deadline_ms(ob->ctx));
    if (e == KEYTIER_OK)
        kt_strlcpy(ident, j->ident, KEYTIER_URI_MAX);
    kt_tjob_put(&j->rj.base);
    return e;
}

/* Generates it in the service token with the root template. */
struct kt_ob_gen_job {
    struct kt_tjob base;
    uint8_t id[KT_UUID_BYTES];
    char label[64];
};

static keytier_err kt_ob_gen_run(struct kt_tjob *tj)
{
    struct kt_ob_gen_job *j = (struct kt_ob_gen_job *)tj;
    struct kt_root root;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    char *uri = NULL;
    keytier_err e = kt_avail_generate(tj->ctx, KT_AVAIL_AES256, j->id, j->label,
                                      &root, &s, &uri);
    if (e == KEYTIER_OK)
        kt_session_put(root.tok, s, CKR_OK);
    free(uri);
    return e;
}

static keytier_err kt_ob_key_generate(struct kt_ob *ob)
{
    struct kt_ob_gen_job *j = kt_tjob_new(ob->ctx, sizeof *j, kt_ob_gen_run);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    if (!kt_uuid_parse(ob->j.managed_id, j->id)) {
        kt_tjob_put(&j->base);
        return kt_err(KEYTIER_E_FORMAT, "offboarding of DEP %s: key id %s",
                      ob->dep->dep_id, ob->j.managed_id);
    }
    kt_strlcpy(j->label, ob->label, sizeof j->label);
    keytier_err e =
        kt_tjob_run(&j->base, "service token", ob->ctx->cfg.service_token,
                    kt_admin_deadline_ms(ob->ctx));
    kt_tjob_put(&j->base);
    return e;
}

/* STARTED -> KEY_READY: the key found (a rerun) or generated. */
static keytier_err kt_ob_step_key(struct kt_ob *ob)
{
    char ident[KEYTIER_URI_MAX];
    keytier_err e = kt_ob_key_find(ob, ident);
    if (e == KEYTIER_E_KEY_NOT_FOUND) {
        kt_err_clear();
        e = kt_ob_key_generate(ob);
        if (e == KEYTIER_OK)
            e = kt_ob_key_find(ob, ident);
    }
    if (e == KEYTIER_OK)
        e = kt_store_offboard_key(ob->ctx->store, ob->dep->dep_id, ob->uri,
                                  ident, kt_lc_clock());
    if (e == KEYTIER_OK) {
        kt_strlcpy(ob->j.uri, ob->uri, sizeof ob->j.uri);
        e = kt_ob_audit(ob, "Offboard step", "service-managed key ready");
    }
    return e;
}

/* ---- the TIKs ----------------------------------------------------------- */

/* Wraps a TIK under the service-managed key and reads the copy back. */
struct kt_ob_wrap_job {
    struct kt_root_job rj;
    char label[64];
    kt_secret *tik;
    struct kt_managed_rec m;
};

static keytier_err kt_ob_wrap(struct kt_root_job *rj,
                              const struct kt_root *root, CK_SESSION_HANDLE s,
                              CK_RV *rv)
{
    struct kt_ob_wrap_job *j = (struct kt_ob_wrap_job *)rj;
    char ident[KEYTIER_URI_MAX];
    kt_secret *back = NULL;
    size_t len = sizeof j->m.wrapped;
    keytier_err e =
        kt_root_check_service(rj->base.ctx, root, s, "service-managed key",
                              rj->uri, j->label, ident, rv);
    if (e == KEYTIER_OK)
        e = kt_root_wrap(root, s, KT_WRAP_AES_KWP, j->tik, j->m.wrapped, &len,
                         rv);
    if (e == KEYTIER_OK)
        e = kt_root_unwrap(root, s, KT_WRAP_AES_KWP, j->m.wrapped, len, &back,
                           rv);
    if (e == KEYTIER_OK && (kt_secret_len(back) != KT_KEY_SIZE ||
                            !kt_ct_equal(kt_secret_cdata(back),
                                         kt_secret_cdata(j->tik), KT_KEY_SIZE)))
        e = kt_err(KEYTIER_E_TOKEN,
                   "service-managed key %s: the token unwrapped a different "
                   "key",
                   rj->uri);
    kt_secret_free(back);
    j->m.wrapped_len = len;
    return e;
}

static void kt_ob_wrap_cleanup(struct kt_tjob *tj)
{
    struct kt_ob_wrap_job *j = (struct kt_ob_wrap_job *)tj;
    kt_secret_free(j->tik);
    kt_wipe(&j->m, sizeof j->m);
}

static keytier_err kt_ob_wrap_tik(struct kt_ob *ob, const kt_secret *tik,
                                  struct kt_managed_rec *m)
{
    struct kt_ob_wrap_job *j = kt_root_job_new(
        ob->ctx, sizeof *j, "service-managed key", ob->j.uri, true, kt_ob_wrap);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->rj.base.cleanup = kt_ob_wrap_cleanup;
    kt_strlcpy(j->label, ob->label, sizeof j->label);
    j->tik = kt_secret_from(kt_secret_cdata(tik), KT_KEY_SIZE);
    keytier_err e =
        j->tik == NULL ? kt_err(KEYTIER_E_NOMEM, NULL)
                       : kt_root_job_run(&j->rj, kt_admin_deadline_ms(ob->ctx));
    if (e == KEYTIER_OK) {
        memcpy(m->wrapped, j->m.wrapped, j->m.wrapped_len);
        m->wrapped_len = j->m.wrapped_len;
    }
    kt_tjob_put(&j->rj.base);
    return e;
}

/* The n TIKs of the DEP re-protected into m (n entries). */
static keytier_err kt_ob_tiks(struct kt_ob *ob, const kt_secret *dep_key,
                              struct kt_key_rec *tiks, size_t n,
                              struct kt_managed_rec *m)
{
    kt_secret *tik = kt_secret_new(KT_KEY_SIZE + 16);
    keytier_err e = tik ? KEYTIER_OK : kt_err(KEYTIER_E_NOMEM, NULL);
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++) {
        e = kt_tier_gcm(dep_key, &tiks[i], tik, 0);
        if (e == KEYTIER_OK)
            e = kt_ob_wrap_tik(ob, tik, &m[i]);
        kt_strlcpy(m[i].tik_id, tiks[i].key_id, sizeof m[i].tik_id);
        kt_strlcpy(m[i].dep_id, ob->dep->dep_id, sizeof m[i].dep_id);
        kt_strlcpy(m[i].tenant, ob->dep->tenant, sizeof m[i].tenant);
        kt_strlcpy(m[i].uri, ob->j.uri, sizeof m[i].uri);
        kt_strlcpy(m[i].mech, kt_wrap_mech_name(KT_WRAP_AES_KWP),
                   sizeof m[i].mech);
        m[i].created = kt_lc_clock();
    }
    kt_secret_free(tik);
    return e;
}

/* KEY_READY -> PROTECTED: every TIK of the DEP under the managed key. */
static keytier_err kt_ob_step_protect(struct kt_ob *ob)
{
    const keytier_request req = {KEYTIER_REQUEST_INTERNAL,
                                 KEYTIER_INTERNAL_MIGRATE, NULL, NULL};
    struct kt_key_rec *tiks = NULL;
    struct kt_managed_rec *m = NULL;
    kt_secret *dep_key = NULL;
    size_t n = 0;
    keytier_err e =
        kt_store_tik_list(ob->ctx->store, ob->dep->dep_id, &tiks, &n);
    if (e == KEYTIER_OK && n == 0)
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND,
                   "files DEP %s has no tenant intermediate key (made before "
                   "TIKs): it cannot be offboarded",
                   ob->dep->dep_id);
    if (e == KEYTIER_OK && (m = calloc(n, sizeof *m)) == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    if (e == KEYTIER_OK)
        e = kt_dep_key_read(ob->ctx, ob->dep, &req, KT_FALLBACK_OP_REWRAP, NULL,
                            &dep_key);
    if (e == KEYTIER_OK)
        e = kt_ob_tiks(ob, dep_key, tiks, n, m);
    if (e == KEYTIER_OK)
        e = kt_store_offboard_protect(ob->ctx->store, ob->dep->dep_id, m, n,
                                      kt_lc_clock());
    ob->tiks = n;
    if (e == KEYTIER_OK)
        e = kt_ob_audit(ob, "Offboard step",
                        "tenant intermediate keys "
                        "re-protected");
    kt_secret_free(dep_key);
    if (m != NULL)
        kt_wipe(m, n * sizeof *m);
    free(m);
    if (tiks != NULL)
        kt_wipe(tiks, n * sizeof *tiks);
    free(tiks);
    return e;
}

/* PROTECTED -> DONE: the DEP retired, out of every cache. */
static keytier_err kt_ob_step_finish(struct kt_ob *ob)
{
    keytier_err e = kt_store_offboard_finish(ob->ctx->store, ob->dep->dep_id,
                                             kt_lc_clock());
    (void)kt_avail_uncache(ob->ctx, KT_INVAL_DEP, ob->dep->dep_id);
    if (e == KEYTIER_OK)
        e = kt_ob_audit(ob, "Offboard completed", "DEP retired");
    return e;
}

/* The steps left, from the journal's. */
static keytier_err kt_ob_run(struct kt_ob *ob)
{
    keytier_err e = KEYTIER_OK;
    while (e == KEYTIER_OK && ob->j.step < KT_OFFBOARD_DONE) {
        int step = ob->j.step;
        if (step == KT_OFFBOARD_STARTED)
            e = kt_ob_step_key(ob);
        else if (step == KT_OFFBOARD_KEY_READY)
            e = kt_ob_step_protect(ob);
        else
            e = kt_ob_step_finish(ob);
        if (e == KEYTIER_OK)
            e = kt_store_offboard_get(ob->ctx->store, ob->dep->dep_id, &ob->j);
        if (e == KEYTIER_OK && kt_offboard_stop_after == step)
            e = kt_err(KEYTIER_E_INTERNAL,
                       "offboarding stopped after step %d (test hook)", step);
    }
    return e;
}

/* The DEP to offboard: the tenant's files DEP of the region (offboarded
 * ones too, to say so). */
static keytier_err kt_ob_dep(keytier_ctx *ctx, const char *tenant,
                             const char *workload, const char *region,
                             struct kt_dep_rec *dep)
{
    const struct kt_workload_cfg *w = kt_config_workload(&ctx->cfg, workload);
    char dep_id[KEYTIER_ID_SIZE];
    if (w == NULL)
        return kt_err(KEYTIER_E_CONFIG, "unknown workload '%s'", workload);
    if (w->shape != KT_SHAPE_FILES)
        return kt_err(KEYTIER_E_ARGS,
                      "workload %s has the mail shape: offboarding is for "
                      "files workloads",
                      workload);
    keytier_err e =
        kt_store_dep_of_region(ctx->store, tenant, workload, region, dep_id);
    if (e == KEYTIER_OK && dep_id[0] == '\0')
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND,
                   "tenant %s has no files DEP for workload %s in region %s",
                   tenant, workload, region);
    if (e == KEYTIER_OK)
        e = kt_store_dep_get(ctx->store, dep_id, dep);
    return e;
}

/* A new offboarding: the DEP in a state to leave, the approval consumed,
 * the journal written. */
static keytier_err kt_ob_begin(struct kt_ob *ob, const char *approval_id)
{
    uint8_t id[KT_UUID_BYTES];
    struct kt_dep_rec *d = ob->dep;
    if (d->state == KEYTIER_DEP_ROLLING || d->state == KEYTIER_DEP_MIGRATING ||
        d->state == KEYTIER_DEP_REGISTERING)
        return kt_err(KEYTIER_E_DEP_STATE,
                      "DEP %s is busy (state %d): finish its roll or "
                      "migration, then offboard",
                      d->dep_id, d->state);
    struct kt_key_rec *tiks = NULL;
    size_t n = 0;
    keytier_err e = kt_store_tik_list(ob->ctx->store, d->dep_id, &tiks, &n);
    if (tiks != NULL)
        kt_wipe(tiks, n * sizeof *tiks);
    free(tiks);
    if (e == KEYTIER_OK && n == 0)
        e = kt_err(KEYTIER_E_DEP_STATE,
                   "files DEP %s was made before tenant intermediate keys: "
                   "its sites are under the DEP key itself and cannot be "
                   "offboarded (recover or assign them to a new DEP first)",
                   d->dep_id);
    if (e == KEYTIER_OK)
        e = kt_approval_gate(ob->ctx, KEYTIER_APPROVAL_FILES_OFFBOARD,
                             d->tenant, d->dep_id, approval_id,
                             "files offboarding");
    if (e != KEYTIER_OK)
        return e;
    memset(&ob->j, 0, sizeof ob->j);
    if (!kt_uuid_new(id))
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    kt_uuid_format(id, ob->j.managed_id);
    kt_strlcpy(ob->j.dep_id, d->dep_id, sizeof ob->j.dep_id);
    kt_strlcpy(ob->j.tenant, d->tenant, sizeof ob->j.tenant);
    if (approval_id != NULL)
        kt_strlcpy(ob->j.approval, approval_id, sizeof ob->j.approval);
    ob->j.started = ob->j.updated = kt_lc_clock();
    e = kt_store_offboard_begin(ob->ctx->store, &ob->j);
    if (e == KEYTIER_OK)
        e = kt_ob_audit(ob, "Offboard started", "journal written");
    return e;
}

static void kt_ob_report(const struct kt_ob *ob, const char *region,
                         bool resumed, keytier_offboard_report *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    kt_strlcpy(out->dep_id, ob->dep->dep_id, sizeof out->dep_id);
    kt_strlcpy(out->region, region, sizeof out->region);
    kt_strlcpy(out->managed_uri, ob->j.uri, sizeof out->managed_uri);
    out->tiks = ob->tiks;
    out->resumed = resumed;
}

KEYTIER_API keytier_err keytier_files_offboard(
    keytier_ctx *ctx, const char *approval_id, const char *tenant,
    const char *workload, const char *region, keytier_offboard_report *out)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX) ||
        (region != NULL && !kt_text_ok(region, KEYTIER_REGION_MAX)) ||
        (approval_id != NULL && !kt_text_ok(approval_id, KEYTIER_ID_SIZE - 1)))
        return kt_err(KEYTIER_E_ARGS, "keytier_files_offboard");
    if (ctx->cfg.service_token == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "no service_token configured: it holds the "
                      "service-managed key");
    const char *reg = region != NULL ? region : KEYTIER_REGION_DEFAULT;
    struct kt_ob ob;
    memset(&ob, 0, sizeof ob);
    ob.ctx = ctx;
    ob.dep = malloc(sizeof *ob.dep);
    if (ob.dep == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    bool resumed = false;
    keytier_err e = kt_ob_dep(ctx, tenant, workload, reg, ob.dep);
    if (e == KEYTIER_OK && ob.dep->state == KEYTIER_DEP_OFFBOARDED)
        e = kt_err(KEYTIER_E_OFFBOARDED,
                   "tenant %s's files DEP %s in region %s is offboarded "
                   "already",
                   tenant, ob.dep->dep_id, reg);
    if (e == KEYTIER_OK) {
        snprintf(ob.label, sizeof ob.label, KT_MANAGED_LABEL "%s",
                 ob.dep->dep_id);
        snprintf(ob.uri, sizeof ob.uri, "%s;object=%s;type=secret-key",
                 ctx->cfg.service_token, ob.label);
        e = kt_store_offboard_get(ctx->store, ob.dep->dep_id, &ob.j);
        resumed = e == KEYTIER_OK;
        if (e == KEYTIER_E_NOT_FOUND) {
            kt_err_clear();
            e = kt_ob_begin(&ob, approval_id);
        } else if (e == KEYTIER_OK) {
            e = kt_ob_audit(&ob, "Offboard resumed", NULL);
        }
    }
    if (e == KEYTIER_OK)
        e = kt_ob_run(&ob);
    if (e == KEYTIER_OK)
        kt_ob_report(&ob, reg, resumed, out);
    kt_wipe(ob.dep, sizeof *ob.dep);
    free(ob.dep);
    return e;
}
