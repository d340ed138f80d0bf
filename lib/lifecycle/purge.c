/*
 * Purging a tenant (docs/DESIGN.md §2 "Lifecycle"): its availability keys
 * and, when asked, its customer keys are destroyed, then its wrapped
 * copies and tier keys leave the store.  A purge never destroys a key that
 * anything else still names - a DEP of another tenant (by the identity of
 * the key, whatever URI names it), a roll under way, a keyset of service
 * secrets: such a key is kept, and the report and the audit records say
 * which and why.  A dry run decides the same way and changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "p11call.h"
#include "trust.h"

static const char *const kt_purge_roles[] = {"customer key A", "customer key B",
                                             "availability key",
                                             "service-managed key"};

/* The references kept per key, to name them in the audit records. */
#define KT_PURGE_REFS 8

/* The plan: each distinct key once, with what was found of it. */
struct kt_purge_ent {
    keytier_purge_key k;
    char ident[KEYTIER_URI_MAX];
    struct kt_root_ref refs[KT_PURGE_REFS];
    size_t n_refs;
};

/* ---- the token side, on the call pool (admin deadline) --------------- */

/* Finds the key uri names: first as a root (which also finds an RSA
 * root's public half), then, for a key the customer already disabled
 * (CKA_UNWRAP off...), as any key (an RSA public half that can only wrap
 * then stays). */
static keytier_err kt_purge_resolve(keytier_ctx *ctx, const char *what,
                                    const char *uri, struct kt_root *root,
                                    CK_SESSION_HANDLE *s, CK_RV *rv)
{
    memset(root, 0, sizeof *root);
    keytier_err e = kt_root_resolve(ctx, what, uri, true, root, s, rv);
    if (e == KEYTIER_E_KEY_USAGE || e == KEYTIER_E_KEY_EXTRACTABLE ||
        e == KEYTIER_E_KEY_TYPE) {
        memset(root, 0, sizeof *root);
        e = kt_root_resolve(ctx, what, uri, false, root, s, rv);
    }
    return e;
}

/* Looks a key up (destroy false: found, and its identity) or destroys it
 * (destroy true), the key found having to be the one looked up before
 * (ident): a key that is gone counts as gone, so a purge can run again. */
struct kt_purge_job {
    struct kt_tjob base;
    const char *what; /* static */
    char uri[KEYTIER_URI_MAX];
    bool destroy;
    char ident[KEYTIER_URI_MAX]; /* out when looking up, in when destroying */
    bool found;
};

static keytier_err kt_purge_job_run(struct kt_tjob *tj)
{
    struct kt_purge_job *j = (struct kt_purge_job *)tj;
    struct kt_root root;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    char ident[KEYTIER_URI_MAX], label[KT_KEY_LABEL_MAX + 1];
    keytier_err e = kt_purge_resolve(tj->ctx, j->what, j->uri, &root, &s, &rv);
    if (e == KEYTIER_E_KEY_NOT_FOUND) {
        kt_err_clear();
        return KEYTIER_OK;
    }
    if (e != KEYTIER_OK)
        return e;
    e = kt_root_identity(&root, s, ident, label, &rv);
    if (e == KEYTIER_OK && !j->destroy) {
        j->found = true;
        kt_strlcpy(j->ident, ident, sizeof j->ident);
    } else if (e == KEYTIER_OK && strcmp(ident, j->ident) != 0) {
        e = kt_err(KEYTIER_E_KEY_AMBIGUOUS,
                   "%s %s: names another key than when it was checked; not "
                   "destroyed",
                   j->what, j->uri);
    } else if (e == KEYTIER_OK) {
        rv = kt_p11_destroy_object(root.tok, s, root.key);
        if (rv == CKR_OK && root.pub != root.key)
            rv = kt_p11_destroy_object(root.tok, s, root.pub);
        if (rv != CKR_OK)
            e = kt_err(KEYTIER_E_TOKEN, "%s %s: C_DestroyObject: %s", j->what,
                       j->uri, kt_p11_rv_text(rv));
        j->found = rv == CKR_OK;
    }
    kt_session_put(root.tok, s, rv);
    tj->rv = rv;
    return e;
}

/* A late destroy still happens when the token answers, and the purge can
 * be run again. */
static keytier_err kt_purge_key_job(keytier_ctx *ctx, const char *what,
                                    const char *uri, bool destroy,
                                    char ident[KEYTIER_URI_MAX], bool *found)
{
    struct kt_purge_job *j = kt_tjob_new(ctx, sizeof *j, kt_purge_job_run);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->what = what;
    kt_strlcpy(j->uri, uri, sizeof j->uri);
    j->destroy = destroy;
    if (destroy)
        kt_strlcpy(j->ident, ident, sizeof j->ident);
    keytier_err e = kt_tjob_run(&j->base, what, uri, kt_admin_deadline_ms(ctx));
    if (e == KEYTIER_OK) {
        *found = j->found;
        if (!destroy)
            kt_strlcpy(ident, j->ident, KEYTIER_URI_MAX);
    }
    kt_tjob_put(&j->base);
    return e;
}

/* ---- deciding ----------------------------------------------------------- */

/* A purge under way: the plan (each distinct key once, idx: the entry of
 * each DEP's slot) and the other tenants' roots stored before identities
 * were recorded, each looked up at most once (leg_state). */
struct kt_purge {
    keytier_ctx *ctx;
    const char *tenant;
    bool dry;
    struct kt_purge_ent *plan;
    size_t n_plan;
    size_t *idx;
    struct kt_root_legacy *leg;
    size_t n_leg;
    char (*leg_ident)[KEYTIER_URI_MAX];
    unsigned char
        *leg_state; /* 0 not looked up, 1 identity known, 2 not ours */
    keytier_purge_detail *d;
};

/* The identity of legacy root i, looked up only when its token is the
 * token of the key named by uri (no other can be the same key); a root
 * whose token is not here or whose key is gone is not that key.  Recorded
 * in the store, but by a dry run. */
static keytier_err kt_purge_legacy_ident(struct kt_purge *p, size_t i,
                                         const char *uri)
{
    struct kt_root_legacy *l = &p->leg[i];
    struct kt_token *mine, *theirs;
    if (kt_token_find(p->ctx, l->uri, &theirs) != KEYTIER_OK) {
        kt_err_clear();
        p->leg_state[i] = 2; /* no token here: none of the purge's keys */
        return KEYTIER_OK;
    }
    if (kt_token_find(p->ctx, uri, &mine) != KEYTIER_OK ||
        !kt_token_same(mine, theirs)) {
        kt_err_clear();
        return KEYTIER_OK; /* looked at again for a key of another token */
    }
    bool found = false;
    keytier_err e = kt_purge_key_job(p->ctx, kt_purge_roles[l->ref.slot],
                                     l->uri, false, p->leg_ident[i], &found);
    if (e != KEYTIER_OK)
        return kt_err_context(e,
                              "DEP %s (tenant %s), stored before key "
                              "identities: its %s could not be looked up, so "
                              "the key it may share is not destroyed",
                              l->ref.dep_id, l->ref.tenant,
                              kt_purge_roles[l->ref.slot]);
    p->leg_state[i] = found ? 1 : 2;
    if (found && !p->dry)
        e = kt_store_root_ident_set(p->ctx->store, l->ref.dep_id, l->ref.slot,
                                    p->leg_ident[i]);
    return e;
}

/* Other tenants' legacy roots that name the key of ent, into its refs. */
static keytier_err kt_purge_legacy_refs(struct kt_purge *p, const char *uri,
                                        struct kt_purge_ent *ent)
{
    for (size_t i = 0; i < p->n_leg; i++) {
        if (p->leg_state[i] == 0) {
            keytier_err e = kt_purge_legacy_ident(p, i, uri);
            if (e != KEYTIER_OK)
                return e;
        }
        if (p->leg_state[i] != 1 || strcmp(p->leg_ident[i], ent->ident) != 0 ||
            !strcmp(p->leg[i].uri, uri))
            continue; /* the same URI is kt_store_root_refs's already */
        if (ent->n_refs < KT_PURGE_REFS)
            ent->refs[ent->n_refs] = p->leg[i].ref;
        ent->n_refs++;
    }
    return KEYTIER_OK;
}

/* Who else names the key of ent (named by uri, as stored): DEPs of other
 * tenants (not purged) and their rolls, by identity or URI, and keysets by
 * URI.  Fills the reason and the references; true if anything does. */
static keytier_err kt_purge_others(struct kt_purge *p, const char *uri,
                                   struct kt_purge_ent *ent, bool *used)
{
    char keyset[KEYTIER_NAME_MAX + 1];
    keytier_err e =
        kt_store_root_refs(p->ctx->store, ent->ident, uri, p->tenant, -1,
                           ent->refs, KT_PURGE_REFS, &ent->n_refs);
    if (e == KEYTIER_OK)
        e = kt_purge_legacy_refs(p, uri, ent);
    if (e == KEYTIER_OK)
        e = kt_store_keyset_by_root(p->ctx->store, uri, keyset, sizeof keyset);
    if (e != KEYTIER_OK)
        return e;
    char *r = ent->k.reason;
    size_t cap = sizeof ent->k.reason;
    if (ent->n_refs > 0) {
        const struct kt_root_ref *f = &ent->refs[0];
        int w = snprintf(r, cap, "%s%s of DEP %s (tenant %s)",
                         f->pending ? "the new copy (roll under way) of " : "",
                         kt_purge_roles[f->slot], f->dep_id, f->tenant);
        if (ent->n_refs > 1 && w > 0 && (size_t)w < cap)
            snprintf(r + w, cap - (size_t)w, " and %zu more DEP root(s)",
                     ent->n_refs - 1);
    } else if (keyset[0] != '\0') {
        snprintf(r, cap, "root of keyset %s", keyset);
    }
    *used = ent->n_refs > 0 || keyset[0] != '\0';
    return KEYTIER_OK;
}

/* The index of the plan entry for uri (or, once resolved, ident). */
static size_t kt_purge_find(const struct kt_purge *p, const char *uri,
                            const char *ident)
{
    for (size_t i = 0; i < p->n_plan; i++)
        if (!strcmp(p->plan[i].k.uri, uri) ||
            (ident != NULL && ident[0] != '\0' &&
             !strcmp(p->plan[i].ident, ident)))
            return i;
    return p->n_plan;
}

/* Carries out what was decided for a key no one else uses: destroyed,
 * unless a dry run. */
static keytier_err kt_purge_destroy(struct kt_purge *p, const char *uri,
                                    struct kt_purge_ent *ent)
{
    bool found = false;
    if (p->dry) {
        ent->k.action = KEYTIER_PURGE_WOULD_DESTROY;
        return KEYTIER_OK;
    }
    keytier_err e = kt_purge_key_job(p->ctx, kt_purge_roles[ent->k.slot], uri,
                                     true, ent->ident, &found);
    if (e != KEYTIER_OK)
        return e;
    ent->k.action = found ? KEYTIER_PURGE_DESTROYED : KEYTIER_PURGE_GONE;
    if (found && ent->k.slot == KEYTIER_ROOT_AVAIL)
        p->d->report.avail_keys_destroyed++;
    else if (found && ent->k.slot == KEYTIER_ROOT_MANAGED)
        p->d->report.managed_keys_destroyed++;
    else if (found)
        p->d->report.customer_keys_destroyed++;
    return KEYTIER_OK;
}

/* Decides (and, unless dry, carries out) the fate of one key of a DEP;
 * *idx receives its plan entry. */
static keytier_err kt_purge_key(struct kt_purge *p,
                                const struct kt_dep_rec *dep, int slot,
                                size_t *idx)
{
    const char *uri = dep->roots[slot].uri;
    char shown[KEYTIER_URI_MAX];
    kt_strlcpy(shown, uri, sizeof shown);
    shown[strcspn(shown, "?")] = '\0'; /* where a PIN could be */
    *idx = kt_purge_find(p, shown, NULL);
    if (*idx < p->n_plan)
        return KEYTIER_OK;
    struct kt_purge_ent *ent = &p->plan[p->n_plan];
    memset(ent, 0, sizeof *ent);
    kt_strlcpy(ent->k.dep_id, dep->dep_id, sizeof ent->k.dep_id);
    ent->k.slot = slot;
    kt_strlcpy(ent->k.uri, shown, sizeof ent->k.uri);
    bool found = false, used = false;
    keytier_err e = kt_purge_key_job(p->ctx, kt_purge_roles[slot], uri, false,
                                     ent->ident, &found);
    if (e != KEYTIER_OK)
        return e;
    /* Another URI of a key already in the plan. */
    size_t same = found ? kt_purge_find(p, "", ent->ident) : p->n_plan;
    if (same < p->n_plan) {
        *idx = same;
        return KEYTIER_OK;
    }
    *idx = p->n_plan++;
    if (!found) {
        ent->k.action = KEYTIER_PURGE_GONE;
        return KEYTIER_OK;
    }
    e = kt_purge_others(p, uri, ent, &used);
    if (e != KEYTIER_OK || !used)
        return e != KEYTIER_OK ? e : kt_purge_destroy(p, uri, ent);
    ent->k.action = KEYTIER_PURGE_KEPT;
    p->d->keys_kept++;
    kt_log_event(p->ctx->log, KT_LOG_WARNING, "purge: key kept, still in use",
                 dep->dep_id);
    return KEYTIER_OK;
}

/* The service-managed key of an offboarded (or half offboarded) files DEP:
 * the journal's, or the one its label names when a run died before
 * recording it; decided like the roots. */
static keytier_err kt_purge_managed(struct kt_purge *p,
                                    const struct kt_dep_rec *dep)
{
    struct kt_offboard_rec j;
    char uri[KEYTIER_URI_MAX];
    keytier_err e = kt_store_offboard_get(p->ctx->store, dep->dep_id, &j);
    if (e == KEYTIER_E_NOT_FOUND) {
        kt_err_clear();
        return KEYTIER_OK;
    }
    if (e != KEYTIER_OK)
        return e;
    if (j.uri[0] != '\0')
        kt_strlcpy(uri, j.uri, sizeof uri);
    else
        snprintf(uri, sizeof uri,
                 "%s;object=keytier-managed-%s;type=secret-key",
                 p->ctx->cfg.service_token ? p->ctx->cfg.service_token : "",
                 dep->dep_id);
    struct kt_purge_ent *ent = &p->plan[p->n_plan];
    memset(ent, 0, sizeof *ent);
    kt_strlcpy(ent->k.dep_id, dep->dep_id, sizeof ent->k.dep_id);
    ent->k.slot = KEYTIER_ROOT_MANAGED;
    kt_strlcpy(ent->k.uri, uri, sizeof ent->k.uri);
    bool found = false, used = false;
    e = kt_purge_key_job(p->ctx, kt_purge_roles[KEYTIER_ROOT_MANAGED], uri,
                         false, ent->ident, &found);
    if (e != KEYTIER_OK)
        return e;
    p->n_plan++;
    if (!found) {
        ent->k.action = KEYTIER_PURGE_GONE;
        return KEYTIER_OK;
    }
    e = kt_purge_others(p, uri, ent, &used);
    if (e != KEYTIER_OK || !used)
        return e != KEYTIER_OK ? e : kt_purge_destroy(p, uri, ent);
    ent->k.action = KEYTIER_PURGE_KEPT;
    p->d->keys_kept++;
    return KEYTIER_OK;
}

/* ---- audit -------------------------------------------------------------- */

KEYTIER_API const char *keytier_purge_action_name(keytier_purge_action a)
{
    switch (a) {
    case KEYTIER_PURGE_DESTROYED:
        return "destroyed";
    case KEYTIER_PURGE_KEPT:
        return "kept";
    case KEYTIER_PURGE_GONE:
        return "already gone";
    case KEYTIER_PURGE_WOULD_DESTROY:
        break;
    }
    return "would be destroyed";
}

/* The "Tenant purged" record of one DEP: every key it named, what became
 * of it and why. */
static keytier_err kt_purge_audit_dep(keytier_ctx *ctx,
                                      const struct kt_dep_rec *dep,
                                      unsigned flags,
                                      const struct kt_purge_ent *plan,
                                      const size_t idx[3])
{
    json_object *f = json_object_new_object();
    json_object *keys = json_object_new_array();
    if (f == NULL || keys == NULL) {
        json_object_put(f);
        json_object_put(keys);
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    }
    const char *avail = dep->roots[KEYTIER_ROOT_AVAIL].uri;
    json_object_object_add(
        f, "AvailabilityKeyUri",
        json_object_new_string_len(avail, (int)strcspn(avail, "?")));
    bool customer = (flags & KEYTIER_PURGE_CUSTOMER_KEYS) != 0;
    bool all = customer;
    for (int slot = 0; slot < 3; slot++) {
        if (slot != KEYTIER_ROOT_AVAIL && !customer)
            continue;
        const struct kt_purge_ent *ent = &plan[idx[slot]];
        if (slot != KEYTIER_ROOT_AVAIL && ent->k.action == KEYTIER_PURGE_KEPT)
            all = false;
        json_object *k = json_object_new_object();
        if (k == NULL)
            continue;
        const char *uri = dep->roots[slot].uri;
        json_object_object_add(k, "Role",
                               json_object_new_string(kt_purge_roles[slot]));
        json_object_object_add(
            k, "Uri", json_object_new_string_len(uri, (int)strcspn(uri, "?")));
        json_object_object_add(
            k, "Action",
            json_object_new_string(keytier_purge_action_name(ent->k.action)));
        if (ent->k.action == KEYTIER_PURGE_KEPT)
            json_object_object_add(k, "KeptBecause",
                                   json_object_new_string(ent->k.reason));
        json_object_array_add(keys, k);
    }
    /* True only when every customer key was destroyed or already gone. */
    json_object_object_add(f, "CustomerKeysDestroyed",
                           json_object_new_boolean(all));
    json_object_object_add(f, "Keys", keys);
    return kt_lc_audit(ctx, "Tenant purged", dep, f);
}

/* A "Key kept at purge" record on each DEP that kept a key alive, so that
 * its tenant's trail shows the attempt. */
static keytier_err kt_purge_audit_kept(keytier_ctx *ctx, const char *tenant,
                                       const struct kt_purge_ent *ent)
{
    keytier_err e = KEYTIER_OK;
    struct kt_dep_rec *other = malloc(sizeof *other);
    if (other == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    for (size_t i = 0; i < ent->n_refs && i < KT_PURGE_REFS; i++) {
        const struct kt_root_ref *r = &ent->refs[i];
        keytier_err ge = kt_store_dep_get(ctx->store, r->dep_id, other);
        json_object *f = ge == KEYTIER_OK ? json_object_new_object() : NULL;
        if (f != NULL) {
            json_object_object_add(f, "PurgedTenant",
                                   json_object_new_string(tenant));
            json_object_object_add(
                f, "Role", json_object_new_string(kt_purge_roles[r->slot]));
            json_object_object_add(f, "KeyUri",
                                   json_object_new_string(ent->k.uri));
            ge = kt_lc_audit(ctx, "Key kept at purge", other, f);
        }
        if (ge != KEYTIER_OK && e == KEYTIER_OK)
            e = ge;
    }
    kt_wipe(other, sizeof *other);
    free(other);
    return e;
}

static keytier_err kt_purge_audit(struct kt_purge *p, unsigned flags,
                                  const struct kt_dep_rec *deps, size_t n)
{
    keytier_err e = KEYTIER_OK;
    for (size_t i = 0; i < n; i++) {
        if (deps[i].state == KEYTIER_DEP_PURGED)
            continue;
        keytier_err ae = kt_purge_audit_dep(p->ctx, &deps[i], flags, p->plan,
                                            &p->idx[3 * i]);
        if (ae != KEYTIER_OK && e == KEYTIER_OK)
            e = ae;
    }
    for (size_t i = 0; i < p->n_plan; i++) {
        if (p->plan[i].k.action != KEYTIER_PURGE_KEPT)
            continue;
        keytier_err ae = kt_purge_audit_kept(p->ctx, p->tenant, &p->plan[i]);
        if (ae != KEYTIER_OK && e == KEYTIER_OK)
            e = ae;
    }
    return e;
}

/* ---- the purge ---------------------------------------------------------- */

/* The keys of every DEP not purged yet, decided in DEP order. */
static keytier_err kt_purge_keys(struct kt_purge *p, unsigned flags,
                                 const struct kt_dep_rec *deps, size_t n)
{
    keytier_err e = KEYTIER_OK;
    for (size_t i = 0; i < n && e == KEYTIER_OK; i++) {
        if (deps[i].state == KEYTIER_DEP_PURGED)
            continue;
        p->d->report.deps++;
        for (int slot = 0; slot < 3 && e == KEYTIER_OK; slot++) {
            if (slot != KEYTIER_ROOT_AVAIL &&
                !(flags & KEYTIER_PURGE_CUSTOMER_KEYS))
                continue;
            e = kt_purge_key(p, &deps[i], slot, &p->idx[3 * i + (size_t)slot]);
        }
        if (e == KEYTIER_OK)
            e = kt_purge_managed(p, &deps[i]);
    }
    return e;
}

/* The plan and the other tenants' roots without identity, for n DEPs. */
static keytier_err kt_purge_new(struct kt_purge *p, size_t n)
{
    p->plan = calloc(4 * n + 1, sizeof *p->plan); /* 3 roots, managed key */
    p->idx = calloc(3 * n + 1, sizeof *p->idx);
    if (p->plan == NULL || p->idx == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e =
        kt_store_root_legacy(p->ctx->store, p->tenant, &p->leg, &p->n_leg);
    if (e != KEYTIER_OK)
        return e;
    p->leg_ident = calloc(p->n_leg + 1, sizeof *p->leg_ident);
    p->leg_state = calloc(p->n_leg + 1, 1);
    if (p->leg_ident == NULL || p->leg_state == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    return KEYTIER_OK;
}

/* The plan's keys into d (each distinct key once); frees the rest. */
static keytier_err kt_purge_end(struct kt_purge *p)
{
    keytier_purge_detail *d = p->d;
    keytier_err e = KEYTIER_OK;
    d->keys = calloc(p->n_plan ? p->n_plan : 1, sizeof *d->keys);
    if (d->keys == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    for (size_t i = 0; d->keys != NULL && i < p->n_plan; i++)
        d->keys[i] = p->plan[i].k;
    d->n_keys = d->keys != NULL ? p->n_plan : 0;
    free(p->plan);
    free(p->idx);
    free(p->leg);
    free(p->leg_ident);
    free(p->leg_state);
    return e;
}

/* Roots first, store after: the store keeps the URIs until every root is
 * gone, so a purge that fails half-way can be run again. */
static keytier_err kt_purge_run(keytier_ctx *ctx, const char *tenant,
                                unsigned flags, keytier_purge_detail *d)
{
    struct kt_purge p = {.ctx = ctx, .tenant = tenant, .d = d};
    p.dry = (flags & KEYTIER_PURGE_DRY_RUN) != 0;
    struct kt_dep_rec *deps = NULL;
    size_t n = 0;
    keytier_err e = kt_store_dep_list(ctx->store, tenant, NULL, &deps, &n);
    if (e == KEYTIER_OK)
        e = kt_purge_new(&p, n);
    if (e != KEYTIER_OK)
        goto out;
    /* Whatever the cache holds of the tenant goes first. */
    if (!p.dry)
        d->report.cache_entries_wiped =
            kt_avail_uncache(ctx, KT_INVAL_TENANT, tenant);
    e = kt_purge_keys(&p, flags, deps, n);
    if (e != KEYTIER_OK)
        e = kt_err_context(e, "purge of tenant %s stopped (run it again)",
                           tenant);
    if (e != KEYTIER_OK || p.dry)
        goto out;
    e = kt_store_tenant_purge(ctx->store, tenant, &d->report.tier_keys_deleted);
    if (e != KEYTIER_OK)
        goto out;
    /* A read that started before the store change may have cached again. */
    d->report.cache_entries_wiped +=
        kt_avail_uncache(ctx, KT_INVAL_TENANT, tenant);
    kt_log_event(ctx->log, KT_LOG_WARNING, "tenant purged", tenant);
    e = kt_purge_audit(&p, flags, deps, n);
out:;
    keytier_err fe = kt_purge_end(&p);
    if (e == KEYTIER_OK)
        e = fe;
    if (deps != NULL)
        kt_wipe(deps, n * sizeof *deps);
    free(deps);
    return e;
}

KEYTIER_API keytier_err keytier_tenant_purge_detailed(keytier_ctx *ctx,
                                                      const char *approval_id,
                                                      const char *tenant,
                                                      unsigned flags,
                                                      keytier_purge_detail *out)
{
    kt_err_clear();
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (ctx == NULL || out == NULL || !kt_text_ok(tenant, KEYTIER_TENANT_MAX) ||
        (flags &
         ~(unsigned)(KEYTIER_PURGE_CUSTOMER_KEYS | KEYTIER_PURGE_DRY_RUN)) != 0)
        return kt_err(KEYTIER_E_ARGS, "keytier_tenant_purge");
    /* A dry run changes nothing: no approval is spent on it. */
    if (!(flags & KEYTIER_PURGE_DRY_RUN)) {
        keytier_err ge =
            kt_approval_gate(ctx, KEYTIER_APPROVAL_PURGE, tenant,
                             KEYTIER_APPROVAL_ANY, approval_id, "purge");
        if (ge != KEYTIER_OK)
            return ge;
    }
    return kt_purge_run(ctx, tenant, flags, out);
}

KEYTIER_API void keytier_purge_detail_free(keytier_purge_detail *d)
{
    if (d == NULL)
        return;
    free(d->keys);
    d->keys = NULL;
    d->n_keys = 0;
}

KEYTIER_API keytier_err keytier_tenant_purge(keytier_ctx *ctx,
                                             const char *tenant, unsigned flags,
                                             keytier_purge_report *out)
{
    return keytier_tenant_purge_approved(ctx, NULL, tenant, flags, out);
}

KEYTIER_API keytier_err keytier_tenant_purge_approved(keytier_ctx *ctx,
                                                      const char *approval_id,
                                                      const char *tenant,
                                                      unsigned flags,
                                                      keytier_purge_report *out)
{
    keytier_purge_detail d;
    keytier_err e =
        keytier_tenant_purge_detailed(ctx, approval_id, tenant, flags, &d);
    if (e == KEYTIER_OK && out != NULL)
        *out = d.report;
    keytier_purge_detail_free(&d);
    return e;
}
