/*
 * Data encryption policies: create, show, list, disable
 * (docs/DESIGN.md §2).  Creating a DEP is the only time the library
 * wraps with root keys; reading a DEP key is lib/avail/read.c, unwrapping
 * one (also the probe of a copy just made) lib/avail/dep_key.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>

#include "p11call.h"

static void kt_dep_info_fill(const struct kt_dep_rec *d, keytier_dep_info *o)
{
    memset(o, 0, sizeof *o);
    kt_strlcpy(o->dep_id, d->dep_id, sizeof o->dep_id);
    kt_strlcpy(o->policy_id, d->policy_id, sizeof o->policy_id);
    kt_strlcpy(o->tenant, d->tenant, sizeof o->tenant);
    kt_strlcpy(o->workload, d->workload, sizeof o->workload);
    o->state = (keytier_dep_state)d->state;
    o->created = d->created;
    for (int i = 0; i < 3; i++) {
        kt_strlcpy(o->root_uri[i], d->roots[i].uri, sizeof o->root_uri[i]);
        kt_strlcpy(o->wrap_mech[i], d->roots[i].mech, sizeof o->wrap_mech[i]);
    }
    kt_strlcpy(o->name, d->name, sizeof o->name);
}

/* The files shape's part of a DEP's info: its region and its (oldest)
 * TIK. */
static keytier_err kt_dep_info_files(keytier_ctx *ctx,
                                     const struct kt_dep_rec *d,
                                     keytier_dep_info *o)
{
    struct kt_key_rec *tiks = NULL;
    size_t n = 0;
    kt_strlcpy(o->region, kt_dep_region(ctx, d), sizeof o->region);
    if (o->region[0] == '\0')
        return KEYTIER_OK;
    keytier_err e = kt_store_tik_list(ctx->store, d->dep_id, &tiks, &n);
    if (e == KEYTIER_OK && n > 0)
        kt_strlcpy(o->tik_id, tiks[0].key_id, sizeof o->tik_id);
    if (tiks != NULL)
        kt_wipe(tiks, n * sizeof *tiks);
    free(tiks);
    return e;
}

/* A region name: 1 to KEYTIER_REGION_MAX bytes of [a-z0-9-]. */
static keytier_err kt_region_check(const char *region)
{
    size_t len = strlen(region);
    if (len == 0 || len > KEYTIER_REGION_MAX)
        return kt_err(KEYTIER_E_ARGS,
                      "region name is %zu bytes long: 1 to %d allowed", len,
                      KEYTIER_REGION_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = region[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return kt_err(KEYTIER_E_ARGS,
                          "region name: byte %zu is not one of a-z, 0-9, '-'",
                          i + 1);
    }
    return KEYTIER_OK;
}

/* A DEP name is shown in listings and terminals: at most
 * KEYTIER_DEP_NAME_MAX bytes of valid UTF-8 (OpenSSL's decoder refuses
 * overlong and truncated sequences) without control characters (C0, DEL,
 * C1), surrogates or code points beyond U+10FFFF.  The detail never echoes
 * the name: it may be what a terminal must not see. */
static keytier_err kt_dep_name_check(const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return kt_err(KEYTIER_E_ARGS, "DEP name is empty");
    if (len > KEYTIER_DEP_NAME_MAX)
        return kt_err(KEYTIER_E_ARGS,
                      "DEP name is %zu bytes long, at most %d allowed", len,
                      KEYTIER_DEP_NAME_MAX);
    const unsigned char *p = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        unsigned long c;
        int n = UTF8_getc(p + i, (int)(len - i), &c);
        if (n <= 0 || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
            return kt_err(KEYTIER_E_ARGS,
                          "DEP name is not valid UTF-8 (at byte %zu)", i + 1);
        if (c < 0x20 || (c >= 0x7F && c <= 0x9F))
            return kt_err(KEYTIER_E_ARGS,
                          "DEP name contains control character U+%04lX "
                          "(at byte %zu)",
                          c, i + 1);
        i += (size_t)n;
    }
    return KEYTIER_OK;
}

/* Wraps the DEP key with a root and proves the copy by unwrapping it: the
 * probe that tells whether the token really supports the mechanism.  RSA
 * roots use OAEP SHA-256; SHA-1 only when allow_oaep_sha1 is set and the
 * token refused SHA-256 (SoftHSM2 2.6 accepts SHA-1 only). */
static keytier_err kt_wrap_verified(keytier_ctx *ctx, const char *what,
                                    const char *uri, const struct kt_root *root,
                                    CK_SESSION_HANDLE s, const kt_secret *key,
                                    struct kt_root_rec *rec, CK_RV *rv)
{
    enum kt_wrap_mech mechs[2];
    size_t n = 0;
    if (root->type == CKK_AES) {
        mechs[n++] = KT_WRAP_AES_KWP;
    } else {
        mechs[n++] = KT_WRAP_RSA_OAEP_SHA256;
        if (ctx->cfg.allow_oaep_sha1)
            mechs[n++] = KT_WRAP_RSA_OAEP_SHA1;
    }
    keytier_err e = KEYTIER_E_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        size_t len = sizeof rec->wrapped;
        kt_secret *back = NULL;
        e = kt_root_wrap(root, s, mechs[i], key, rec->wrapped, &len, rv);
        if (e == KEYTIER_OK) {
            e = kt_dep_key_unwrap_copy(root, s, mechs[i], rec->wrapped, len,
                                       &back, rv);
            if (e == KEYTIER_OK &&
                !kt_ct_equal(kt_secret_cdata(back), kt_secret_cdata(key),
                             KT_KEY_SIZE))
                e = kt_err(KEYTIER_E_TOKEN,
                           "%s %s: token '%s' unwrapped a different key", what,
                           uri, root->tok->label);
            else if (e == KEYTIER_E_TOKEN &&
                     (*rv == CKR_MECHANISM_INVALID ||
                      *rv == CKR_MECHANISM_PARAM_INVALID ||
                      *rv == CKR_ARGUMENTS_BAD))
                e = KEYTIER_E_MECHANISM;
            kt_secret_free(back);
        }
        if (e == KEYTIER_OK) {
            rec->wrapped_len = len;
            kt_strlcpy(rec->mech, kt_wrap_mech_name(mechs[i]),
                       sizeof rec->mech);
            kt_strlcpy(rec->uri, uri, sizeof rec->uri);
            return KEYTIER_OK;
        }
        if (e != KEYTIER_E_MECHANISM)
            return kt_err_context(e, "%s %s", what, uri);
    }
    if (root->type == CKK_RSA)
        return kt_err(KEYTIER_E_MECHANISM,
                      "%s %s: token '%s' refuses RSA-OAEP with SHA-256%s", what,
                      uri, root->tok->label,
                      ctx->cfg.allow_oaep_sha1
                          ? " and with SHA-1"
                          : " (allow_oaep_sha1 = yes accepts SHA-1)");
    return kt_err(KEYTIER_E_MECHANISM,
                  "%s %s: token '%s' refuses AES key wrap with padding "
                  "(RFC 5649)",
                  what, uri, root->tok->label);
}

/* ---- DEP creation's token work, on the call pool --------
 * Each step runs as a job with avail.admin_deadline_ms (token_job.c).  A
 * job owns copies of what it uses: when its token hangs the caller fails
 * with KEYTIER_E_UNAVAILABLE naming the key, and the late job finishes on
 * its worker, undoing what it made (the availability key) itself. */

/* A customer root: find it, check its attributes and that it is a
 * customer key (kt_root_check_customer: the identity goes into rec), wrap
 * the DEP key and unwrap it back (kt_wrap_verified).  Leaves nothing in
 * the token. */
struct kt_wrap_job {
    struct kt_tjob base;
    const char *what; /* static */
    char uri[KEYTIER_URI_MAX];
    kt_secret *key;
    struct kt_root_rec rec;
};

static keytier_err kt_wrap_job_run(struct kt_tjob *tj)
{
    struct kt_wrap_job *j = (struct kt_wrap_job *)tj;
    struct kt_root root;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    memset(&root, 0, sizeof root);
    keytier_err e =
        kt_root_resolve(tj->ctx, j->what, j->uri, true, &root, &s, &rv);
    if (e == KEYTIER_OK) {
        e = kt_root_check_customer(tj->ctx, &root, s, j->what, j->uri,
                                   j->rec.ident, &rv);
        if (e == KEYTIER_OK)
            e = kt_wrap_verified(tj->ctx, j->what, j->uri, &root, s, j->key,
                                 &j->rec, &rv);
        kt_session_put(root.tok, s, rv);
    }
    tj->rv = rv;
    return e;
}

static void kt_wrap_job_cleanup(struct kt_tjob *tj)
{
    struct kt_wrap_job *j = (struct kt_wrap_job *)tj;
    kt_secret_free(j->key);
}

static keytier_err kt_dep_wrap_customer(keytier_ctx *ctx, const char *what,
                                        const char *uri, const kt_secret *key,
                                        struct kt_root_rec *rec)
{
    struct kt_wrap_job *j = kt_tjob_new(ctx, sizeof *j, kt_wrap_job_run);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->base.cleanup = kt_wrap_job_cleanup;
    j->what = what;
    kt_strlcpy(j->uri, uri, sizeof j->uri);
    j->key = kt_secret_dup(key);
    keytier_err e = j->key == NULL ? kt_err(KEYTIER_E_NOMEM, NULL)
                                   : kt_tjob_run(&j->base, what, uri,
                                                 kt_admin_deadline_ms(ctx));
    if (e == KEYTIER_OK)
        *rec = j->rec;
    kt_tjob_put(&j->base);
    return e;
}

/* The availability key: generated in the service token, then the DEP key
 * wrapped with it and read back.  A late success is destroyed (undo). */
struct kt_avail_job {
    struct kt_tjob base;
    enum kt_avail_type type;
    uint8_t id[KT_UUID_BYTES];
    char label[64];
    kt_secret *key;
    struct kt_root root;
    char uri[KEYTIER_URI_MAX];
    struct kt_root_rec rec;
};

/* Destroys a generated availability key (CKA_ID id, label label) in a
 * session of its own, found again if its handles went stale; false when
 * it may still be there. */
static bool kt_avail_job_destroy(keytier_ctx *ctx, struct kt_root *root,
                                 const uint8_t id[KT_UUID_BYTES],
                                 const char *label)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    bool gone = false;
    if (kt_session_get(root->tok, &s, &rv) == KEYTIER_OK) {
        rv = kt_avail_destroy(root, s, id, label);
        gone = rv == CKR_OK;
        kt_session_put(root->tok, s, rv);
    }
    if (!gone)
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "availability key of a failed DEP creation not "
                     "destroyed",
                     label);
    return gone;
}

static keytier_err kt_avail_job_run(struct kt_tjob *tj)
{
    struct kt_avail_job *j = (struct kt_avail_job *)tj;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    char *uri = NULL;
    keytier_err e = kt_avail_generate(tj->ctx, j->type, j->id, j->label,
                                      &j->root, &s, &uri);
    if (e != KEYTIER_OK)
        return e;
    if (strlen(uri) >= sizeof j->uri)
        e = kt_err(KEYTIER_E_INTERNAL, "availability key URI too long");
    else
        kt_strlcpy(j->uri, uri, sizeof j->uri);
    free(uri);
    if (e == KEYTIER_OK)
        e = kt_wrap_verified(tj->ctx, "availability key", j->uri, &j->root, s,
                             j->key, &j->rec, &rv);
    char label[KT_KEY_LABEL_MAX + 1];
    if (e == KEYTIER_OK)
        e = kt_root_identity(&j->root, s, j->rec.ident, label, &rv);
    if (e != KEYTIER_OK)
        KT_IGNORE_RESULT(kt_avail_destroy(&j->root, s, j->id, j->label));
    kt_session_put(j->root.tok, s, rv);
    tj->rv = rv;
    return e;
}

static void kt_avail_job_undo(struct kt_tjob *tj)
{
    struct kt_avail_job *j = (struct kt_avail_job *)tj;
    KT_IGNORE_RESULT(kt_avail_job_destroy(tj->ctx, &j->root, j->id, j->label));
}

static void kt_avail_job_cleanup(struct kt_tjob *tj)
{
    struct kt_avail_job *j = (struct kt_avail_job *)tj;
    kt_secret_free(j->key);
}

/* Destroys the availability key of a DEP that was not stored. */
struct kt_destroy_job {
    struct kt_tjob base;
    struct kt_root root;
    uint8_t id[KT_UUID_BYTES];
    char label[64];
};

static keytier_err kt_destroy_job_run(struct kt_tjob *tj)
{
    struct kt_destroy_job *j = (struct kt_destroy_job *)tj;
    if (!kt_avail_job_destroy(tj->ctx, &j->root, j->id, j->label))
        return kt_err(KEYTIER_E_TOKEN, "availability key %s not destroyed",
                      j->label);
    return KEYTIER_OK;
}

/* The label of a DEP's availability key. */
static void kt_avail_label(char label[64], const char *dep_id)
{
    snprintf(label, 64, "keytier-avail-%s", dep_id);
}

static void kt_dep_avail_rollback(keytier_ctx *ctx, const struct kt_root *root,
                                  const uint8_t dep_id[KT_UUID_BYTES],
                                  const char *dep_id_text)
{
    struct kt_destroy_job *j = kt_tjob_new(ctx, sizeof *j, kt_destroy_job_run);
    if (j == NULL) {
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "availability key of a failed DEP creation not "
                     "destroyed",
                     dep_id_text);
        return;
    }
    j->root = *root;
    memcpy(j->id, dep_id, sizeof j->id);
    kt_avail_label(j->label, dep_id_text);
    /* A late job still destroys it when the token answers. */
    if (kt_tjob_run(&j->base, "service token", ctx->cfg.service_token,
                    kt_admin_deadline_ms(ctx)) != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_WARNING,
                     "availability key of a failed DEP creation: destroy "
                     "failed or still pending",
                     dep_id_text);
    kt_tjob_put(&j->base);
}

KEYTIER_API keytier_err keytier_dep_create(keytier_ctx *ctx, const char *tenant,
                                           const char *workload,
                                           const char *uri_a, const char *uri_b,
                                           keytier_dep_info *out)
{
    return keytier_dep_create_in_region(ctx, tenant, workload, NULL, uri_a,
                                        uri_b, NULL, out);
}

KEYTIER_API keytier_err keytier_dep_create_named(
    keytier_ctx *ctx, const char *tenant, const char *workload,
    const char *uri_a, const char *uri_b, const char *name,
    keytier_dep_info *out)
{
    return keytier_dep_create_in_region(ctx, tenant, workload, NULL, uri_a,
                                        uri_b, name, out);
}

KEYTIER_API keytier_err keytier_dep_create_in_region(
    keytier_ctx *ctx, const char *tenant, const char *workload,
    const char *region, const char *uri_a, const char *uri_b, const char *name,
    keytier_dep_info *out)
{
    const struct kt_dep_create_args a = {tenant, workload, region, uri_a,
                                         uri_b,  name,     NULL};
    return kt_dep_create(ctx, &a, out);
}

/* The arguments of a creation, the DEP name, the workload (*w) and the
 * customer keys' URIs (no PIN in them). */
static keytier_err kt_dep_create_check(keytier_ctx *ctx, const char *tenant,
                                       const char *workload, const char *uri_a,
                                       const char *uri_b, const char *name,
                                       const char *region,
                                       keytier_dep_info *out,
                                       const struct kt_workload_cfg **w)
{
    if (ctx == NULL || out == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX) ||
        !kt_text_ok(uri_a, KEYTIER_URI_MAX - 1) ||
        !kt_text_ok(uri_b, KEYTIER_URI_MAX - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_create");
    if (name != NULL) {
        keytier_err ne = kt_dep_name_check(name);
        if (ne != KEYTIER_OK)
            return ne;
    }
    *w = kt_config_workload(&ctx->cfg, workload);
    if (*w == NULL)
        return kt_err(KEYTIER_E_CONFIG, "unknown workload '%s'", workload);
    if (region != NULL && (*w)->shape != KT_SHAPE_FILES)
        return kt_err(KEYTIER_E_ARGS,
                      "workload %s has the mail shape: regions are for files "
                      "DEPs",
                      workload);
    if (region != NULL) {
        keytier_err re = kt_region_check(region);
        if (re != KEYTIER_OK)
            return re;
    }
    keytier_err e = kt_uri_check("customer key A", uri_a);
    if (e == KEYTIER_OK)
        e = kt_uri_check("customer key B", uri_b);
    return e;
}

/* Before any token work: the tenant is under its DEP limit for the
 * workload (checked again in the store transaction that inserts), and the
 * two customer keys are in two different tokens, the most basic promise
 * of a DEP. */
static keytier_err kt_dep_create_precheck(keytier_ctx *ctx,
                                          const struct kt_dep_create_args *a,
                                          const struct kt_dep_rec *dep,
                                          unsigned limit)
{
    const char *tenant = a->tenant, *workload = a->workload;
    const char *uri_a = a->uri_a, *uri_b = a->uri_b;
    unsigned count;
    char other[KEYTIER_ID_SIZE];
    keytier_err e = kt_store_dep_count(ctx->store, tenant, workload, &count);
    if (e != KEYTIER_OK)
        return e;
    if (count >= limit)
        return kt_err(KEYTIER_E_DEP_LIMIT,
                      "tenant %s already has %u DEPs for workload %s (limit "
                      "%u)",
                      tenant, count, workload, limit);
    if (dep->region[0] != '\0') {
        e = kt_store_dep_in_region(ctx->store, tenant, workload, dep->region,
                                   a->replaces, other);
        if (e != KEYTIER_OK)
            return e;
        if (other[0] != '\0')
            return kt_err(KEYTIER_E_DEP_REGION,
                          "tenant %s already has files DEP %s for workload %s "
                          "in region %s; one files DEP per tenant and region "
                          "(disable or offboard it first, or choose another "
                          "region)",
                          tenant, other, workload, dep->region);
    }
    struct kt_token *ta, *tb;
    e = kt_token_find(ctx, uri_a, &ta);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "customer key A %s", uri_a);
    e = kt_token_find(ctx, uri_b, &tb);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "customer key B %s", uri_b);
    if (kt_token_same(ta, tb))
        return kt_err(KEYTIER_E_SAME_TOKEN,
                      "customer keys %s and %s are both in token '%s'", uri_a,
                      uri_b, ta->label);
    return KEYTIER_OK;
}

/* What the token cannot tell: a customer key (identity ident, named by
 * uri) is no DEP's availability key, whatever URI that DEP names it by. */
keytier_err kt_dep_customer_role(keytier_ctx *ctx, const char *what,
                                 const char *uri, const char *ident)
{
    struct kt_root_ref ref;
    size_t n = 0;
    keytier_err e = kt_store_root_refs(ctx->store, ident, uri, NULL,
                                       KEYTIER_ROOT_AVAIL, &ref, 1, &n);
    if (e == KEYTIER_OK && n > 0)
        e = kt_err(KEYTIER_E_KEY_ROLE,
                   "%s %s: it is the availability key of DEP %s, which the "
                   "service holds; a customer key is the customer's own key "
                   "in the customer's token",
                   what, uri, ref.dep_id);
    return e;
}

/* A new DEP's record (ids, tenant, workload, name, state) and its key. */
static keytier_err kt_dep_create_rec(const char *tenant, const char *workload,
                                     const char *name, struct kt_dep_rec *dep,
                                     uint8_t dep_id[KT_UUID_BYTES],
                                     kt_secret **key)
{
    uint8_t policy_id[KT_UUID_BYTES];
    *key = kt_secret_random(KT_KEY_SIZE);
    if (*key == NULL || !kt_uuid_new(dep_id) || !kt_uuid_new(policy_id))
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    kt_uuid_format(dep_id, dep->dep_id);
    kt_uuid_format(policy_id, dep->policy_id);
    kt_strlcpy(dep->tenant, tenant, sizeof dep->tenant);
    kt_strlcpy(dep->workload, workload, sizeof dep->workload);
    if (name != NULL)
        kt_strlcpy(dep->name, name, sizeof dep->name);
    dep->state = KEYTIER_DEP_REGISTERED;
    dep->created = (int64_t)time(NULL);
    return KEYTIER_OK;
}

/* The availability key generated in the service token and the DEP key
 * wrapped with it, on the pool; on success *root is the new key (destroyed
 * by the caller if the DEP is not stored) and the DEP holds its copy. */
static keytier_err kt_dep_wrap_avail(keytier_ctx *ctx,
                                     const struct kt_workload_cfg *w,
                                     struct kt_dep_rec *dep,
                                     const uint8_t dep_id[KT_UUID_BYTES],
                                     const kt_secret *key, struct kt_root *root)
{
    if (ctx->cfg.service_token == NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "no service_token configured for availability keys");
    struct kt_avail_job *aj = kt_tjob_new(ctx, sizeof *aj, kt_avail_job_run);
    if (aj == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    aj->base.undo = kt_avail_job_undo;
    aj->base.cleanup = kt_avail_job_cleanup;
    aj->type = w->avail;
    memcpy(aj->id, dep_id, sizeof aj->id);
    kt_avail_label(aj->label, dep->dep_id);
    aj->key = kt_secret_dup(key);
    keytier_err e = aj->key == NULL ? kt_err(KEYTIER_E_NOMEM, NULL)
                                    : kt_tjob_run(&aj->base, "service token",
                                                  ctx->cfg.service_token,
                                                  kt_admin_deadline_ms(ctx));
    if (e == KEYTIER_OK) {
        *root = aj->root;
        dep->roots[KEYTIER_ROOT_AVAIL] = aj->rec;
    }
    kt_tjob_put(&aj->base);
    return e;
}

/* A files DEP's tenant intermediate key: a random key at level 1 under
 * the DEP key, named after the region, its own TIK (tik_id = key_id). */
static keytier_err kt_dep_tik(const struct kt_dep_rec *dep,
                              const kt_secret *dep_key, struct kt_key_rec *tik)
{
    uint8_t id[KT_UUID_BYTES];
    kt_secret *key = kt_secret_random(KT_KEY_SIZE);
    keytier_err e = KEYTIER_OK;
    if (key == NULL || !kt_uuid_new(id))
        e = kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    if (e == KEYTIER_OK) {
        memset(tik, 0, sizeof *tik);
        kt_uuid_format(id, tik->key_id);
        kt_strlcpy(tik->tik_id, tik->key_id, sizeof tik->tik_id);
        kt_strlcpy(tik->tenant, dep->tenant, sizeof tik->tenant);
        kt_strlcpy(tik->workload, dep->workload, sizeof tik->workload);
        kt_strlcpy(tik->dep_id, dep->dep_id, sizeof tik->dep_id);
        kt_strlcpy(tik->parent_id, dep->dep_id, sizeof tik->parent_id);
        kt_strlcpy(tik->name, dep->region, sizeof tik->name);
        tik->level = 1;
        tik->created = dep->created;
        e = kt_tier_gcm(dep_key, tik, key, 1);
    }
    kt_secret_free(key);
    return e;
}

/* The roots' copies of a new DEP's key: customer keys A and B (each on
 * the pool with the administration deadline: a vault that does not
 * answer fails the creation, naming the key, before the availability key
 * exists), their roles, then the availability key (*avail_made). */
static keytier_err
kt_dep_create_roots(keytier_ctx *ctx, const struct kt_dep_create_args *a,
                    const struct kt_workload_cfg *w, struct kt_dep_rec *dep,
                    const uint8_t dep_id[KT_UUID_BYTES], const kt_secret *key,
                    struct kt_root *avail_root, bool *avail_made)
{
    keytier_err e = kt_dep_wrap_customer(ctx, "customer key A", a->uri_a, key,
                                         &dep->roots[KEYTIER_ROOT_A]);
    if (e == KEYTIER_OK)
        e = kt_dep_wrap_customer(ctx, "customer key B", a->uri_b, key,
                                 &dep->roots[KEYTIER_ROOT_B]);
    if (e == KEYTIER_OK)
        e = kt_dep_customer_role(ctx, "customer key A", a->uri_a,
                                 dep->roots[KEYTIER_ROOT_A].ident);
    if (e == KEYTIER_OK)
        e = kt_dep_customer_role(ctx, "customer key B", a->uri_b,
                                 dep->roots[KEYTIER_ROOT_B].ident);
    if (e == KEYTIER_OK) {
        e = kt_dep_wrap_avail(ctx, w, dep, dep_id, key, avail_root);
        *avail_made = e == KEYTIER_OK;
    }
    if (e == KEYTIER_OK && !kt_dep_check_value(key, dep, dep->check))
        e = kt_err(KEYTIER_E_CRYPTO, "deriving the DEP key check value");
    return e;
}

/* Stores a new DEP (a files DEP with its TIK, in one transaction);
 * *kept: a failed one stayed in the store (kt_dep_store). */
static keytier_err
kt_dep_create_store(keytier_ctx *ctx, const struct kt_dep_create_args *a,
                    const struct kt_workload_cfg *w, struct kt_dep_rec *dep,
                    const kt_secret *key, unsigned limit, bool *kept)
{
    /* registering, then proven (dep_state.c) */
    if (w->shape != KT_SHAPE_FILES)
        return kt_dep_store(ctx, dep, limit, NULL, NULL, kept);
    struct kt_key_rec tik;
    keytier_err e = kt_dep_tik(dep, key, &tik);
    if (e == KEYTIER_OK)
        e = kt_dep_store(ctx, dep, limit, &tik, a->replaces, kept);
    kt_wipe(&tik, sizeof tik);
    return e;
}

keytier_err kt_dep_create(keytier_ctx *ctx, const struct kt_dep_create_args *a,
                          keytier_dep_info *out)
{
    kt_err_clear();
    const struct kt_workload_cfg *w = NULL;
    keytier_err e = kt_dep_create_check(ctx, a->tenant, a->workload, a->uri_a,
                                        a->uri_b, a->name, a->region, out, &w);
    if (e != KEYTIER_OK)
        return e;
    unsigned limit = w->dep_limit ? w->dep_limit : ctx->cfg.dep_limit;
    struct kt_dep_rec *dep = calloc(1, sizeof *dep);
    kt_secret *key = NULL;
    struct kt_root avail_root;
    bool avail_made = false;
    uint8_t dep_id[KT_UUID_BYTES];
    memset(&avail_root, 0, sizeof avail_root);
    if (dep == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    if (w->shape == KT_SHAPE_FILES)
        kt_strlcpy(dep->region, a->region ? a->region : KEYTIER_REGION_DEFAULT,
                   sizeof dep->region);
    e = kt_dep_create_precheck(ctx, a, dep, limit);
    if (e == KEYTIER_OK)
        e = kt_dep_create_rec(a->tenant, a->workload, a->name, dep, dep_id,
                              &key);
    if (e == KEYTIER_OK)
        e = kt_dep_create_roots(ctx, a, w, dep, dep_id, key, &avail_root,
                                &avail_made);
    bool kept = false;
    if (e == KEYTIER_OK)
        e = kt_dep_create_store(ctx, a, w, dep, key, limit, &kept);
    if (kept) /* left registering: the next read finishes it */
        avail_made = false;
    if (e == KEYTIER_OK) {
        avail_made = false; /* kept: the DEP now owns it */
        kt_dep_info_fill(dep, out);
        e = kt_dep_info_files(ctx, dep, out);
        kt_log_event(ctx->log, KT_LOG_INFO, "DEP created", dep->dep_id);
    }
    /* The "DEP created" record was written before the DEP was registered
     * (kt_dep_store): a DEP that serves keys always has one. */
    if (avail_made)
        kt_dep_avail_rollback(ctx, &avail_root, dep_id, dep->dep_id);
    kt_secret_free(key);
    kt_wipe(dep, sizeof *dep);
    free(dep);
    return e;
}

static keytier_err kt_dep_get_tenant(keytier_ctx *ctx, const char *tenant,
                                     const char *dep_id, struct kt_dep_rec *d)
{
    keytier_err e = kt_store_dep_get(ctx->store, dep_id, d);
    if (e != KEYTIER_OK)
        return e;
    if (tenant != NULL && strcmp(d->tenant, tenant) != 0)
        return kt_err(KEYTIER_E_WRONG_TENANT,
                      "DEP %s does not belong to tenant %s", dep_id, tenant);
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_dep_show(keytier_ctx *ctx, const char *tenant,
                                         const char *dep_id,
                                         keytier_dep_info *out)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL ||
        (tenant != NULL && !kt_text_ok(tenant, KEYTIER_TENANT_MAX)) ||
        !kt_text_ok(dep_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_show");
    struct kt_dep_rec *d = malloc(sizeof *d);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_dep_get_tenant(ctx, tenant, dep_id, d);
    if (e == KEYTIER_OK) {
        kt_dep_info_fill(d, out);
        e = kt_dep_info_files(ctx, d, out);
    }
    free(d);
    return e;
}

KEYTIER_API keytier_err keytier_dep_list(keytier_ctx *ctx, const char *tenant,
                                         const char *workload,
                                         keytier_dep_info **out, size_t *count)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || count == NULL ||
        (tenant != NULL && !kt_text_ok(tenant, KEYTIER_TENANT_MAX)) ||
        (workload != NULL && !kt_text_ok(workload, KEYTIER_WORKLOAD_MAX)))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_list");
    struct kt_dep_rec *recs = NULL;
    size_t n = 0;
    keytier_err e = kt_store_dep_list(ctx->store, tenant, workload, &recs, &n);
    if (e != KEYTIER_OK)
        return e;
    keytier_dep_info *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL) {
        free(recs);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++) {
        kt_dep_info_fill(&recs[i], &list[i]);
        e = kt_dep_info_files(ctx, &recs[i], &list[i]);
    }
    free(recs);
    if (e != KEYTIER_OK) {
        free(list);
        return e;
    }
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

KEYTIER_API void keytier_dep_list_free(keytier_dep_info *list)
{
    free(list);
}

KEYTIER_API keytier_err keytier_dep_disable(keytier_ctx *ctx,
                                            const char *tenant,
                                            const char *dep_id)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        !kt_text_ok(dep_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_ARGS, "keytier_dep_disable");
    struct kt_dep_rec *d = malloc(sizeof *d);
    if (d == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_dep_get_tenant(ctx, tenant, dep_id, d);
    /* files: an offboarded DEP's keys are service-managed; disabling it
     * would send its reads back to the customer keys */
    if (e == KEYTIER_OK && d->state == KEYTIER_DEP_OFFBOARDED)
        e = kt_err(KEYTIER_E_OFFBOARDED,
                   "DEP %s was offboarded: it takes no new keys under its "
                   "DEP key already, and its sites stay service-managed",
                   dep_id);
    free(d);
    if (e != KEYTIER_OK)
        return e;
    e = kt_store_dep_set_state(ctx->store, dep_id, KEYTIER_DEP_DISABLED);
    /* Here at once; the store recorded it for the others. */
    (void)kt_avail_uncache(ctx, KT_INVAL_DEP, dep_id);
    if (e == KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_INFO, "DEP disabled", dep_id);
    return e;
}
