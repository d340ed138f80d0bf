/*
 * Secrets with rollover (docs/DESIGN.md §2 "Lifecycle"): keysets of
 * AES-256 keys wrapped by a root key, one current and archived older ones,
 * automatic rollover by age and retirement of old keys.  Format of a
 * protected secret: keytier.h, block "lifecycle".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kt_lib.h"
#include "secrets.h"

#define KT_SEC_MAX     (1u << 20) /* secrets are small */
#define KT_SEC_RETIRES 64

static keytier_err kt_ks_audit(keytier_ctx *ctx, const char *activity,
                               const char *name, uint32_t version)
{
    json_object *f = json_object_new_object();
    if (f != NULL) {
        json_object_object_add(f, "Keyset", json_object_new_string(name));
        json_object_object_add(f, "KeyVersion",
                               json_object_new_int64((int64_t)version));
    }
    return kt_lc_audit(ctx, activity, NULL, f);
}

/* Keyset keys are made and opened on the call pool.  The
 * job owns a copy of the key record; a late one is simply dropped (a
 * wrap leaves nothing in the token). */
struct kt_ks_job {
    struct kt_root_job rj;
    struct kt_ks_key_rec k;
    kt_secret *key; /* the opened key */
};

static void kt_ks_job_cleanup(struct kt_tjob *tj)
{
    struct kt_ks_job *j = (struct kt_ks_job *)tj;
    kt_secret_free(j->key);
    kt_wipe(&j->k, sizeof j->k);
}

/* Makes a new random key wrapped by the keyset's root (in a job). */
static keytier_err kt_ks_key_wrap(struct kt_root_job *rj,
                                  const struct kt_root *rootp,
                                  CK_SESSION_HANDLE s, CK_RV *rvp)
{
    struct kt_ks_job *j = (struct kt_ks_job *)rj;
    keytier_ctx *ctx = rj->base.ctx;
    const char *root_uri = rj->uri;
    struct kt_ks_key_rec *k = &j->k;
    struct kt_root root = *rootp;
    CK_RV rv = CKR_OK;
    keytier_err e = KEYTIER_OK;
    kt_secret *key = kt_secret_random(KT_KEY_SIZE);
    if (key == NULL) {
        e = kt_err(KEYTIER_E_CRYPTO, "random generation failed");
        goto out;
    }
    enum kt_wrap_mech m = root.type == CKK_AES       ? KT_WRAP_AES_KWP
                          : ctx->cfg.allow_oaep_sha1 ? KT_WRAP_RSA_OAEP_SHA1
                                                     : KT_WRAP_RSA_OAEP_SHA256;
    size_t len = sizeof k->wrapped;
    e = kt_root_wrap(&root, s, m, key, k->wrapped, &len, &rv);
    if (e != KEYTIER_OK) {
        e = kt_err_context(e, "keyset root %s", root_uri);
        goto out;
    }
    k->wrapped_len = len;
    kt_strlcpy(k->mech, kt_wrap_mech_name(m), sizeof k->mech);
    k->created = kt_lc_clock();
out:
    *rvp = rv;
    kt_secret_free(key);
    return e;
}

static keytier_err kt_ks_key_new(keytier_ctx *ctx, const char *root_uri,
                                 struct kt_ks_key_rec *k)
{
    struct kt_ks_job *j = kt_root_job_new(ctx, sizeof *j, "keyset root",
                                          root_uri, true, kt_ks_key_wrap);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->rj.base.cleanup = kt_ks_job_cleanup;
    j->k = *k;
    keytier_err e = kt_root_job_run(&j->rj, kt_admin_deadline_ms(ctx));
    if (e == KEYTIER_OK)
        *k = j->k;
    kt_tjob_put(&j->rj.base);
    return e;
}

static keytier_err kt_ks_key_unwrap(struct kt_root_job *rj,
                                    const struct kt_root *root,
                                    CK_SESSION_HANDLE s, CK_RV *rv)
{
    struct kt_ks_job *j = (struct kt_ks_job *)rj;
    enum kt_wrap_mech m;
    if (!kt_wrap_mech_parse(j->k.mech, &m))
        return kt_err(KEYTIER_E_FORMAT, "unknown mechanism '%s'", j->k.mech);
    return kt_root_unwrap(root, s, m, j->k.wrapped, j->k.wrapped_len, &j->key,
                          rv);
}

static keytier_err kt_ks_key_open(keytier_ctx *ctx,
                                  const struct kt_keyset_rec *ks,
                                  const struct kt_ks_key_rec *k,
                                  kt_secret **out)
{
    enum kt_wrap_mech m;
    if (k->state == 2 || k->wrapped_len == 0)
        return kt_err(KEYTIER_E_RETIRED,
                      "keyset %s key version %u was retired; protect the "
                      "secret again before keys retire",
                      ks->name, (unsigned)k->version);
    if (!kt_wrap_mech_parse(k->mech, &m))
        return kt_err(KEYTIER_E_FORMAT, "keyset %s: unknown mechanism '%s'",
                      ks->name, k->mech);
    (void)m;
    struct kt_ks_job *j = kt_root_job_new(
        ctx, sizeof *j, "keyset root", ks->root_uri, false, kt_ks_key_unwrap);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->rj.base.cleanup = kt_ks_job_cleanup;
    j->k = *k;
    keytier_err e = kt_root_job_run(&j->rj, kt_admin_deadline_ms(ctx));
    if (e == KEYTIER_OK) {
        *out = j->key;
        j->key = NULL;
    }
    kt_tjob_put(&j->rj.base);
    if (e != KEYTIER_OK)
        return kt_err_context(e, "keyset %s key version %u", ks->name,
                              (unsigned)k->version);
    if (kt_secret_len(*out) != KT_KEY_SIZE) {
        kt_secret_free(*out);
        *out = NULL;
        return kt_err(KEYTIER_E_FORMAT, "keyset %s key version %u: length",
                      ks->name, (unsigned)k->version);
    }
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_keyset_create(keytier_ctx *ctx,
                                              const char *name,
                                              const char *root_uri,
                                              int64_t rollover_after,
                                              int64_t retire_after)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(name, KT_KEYSET_NAME_MAX) ||
        !kt_text_ok(root_uri, KEYTIER_URI_MAX - 1) || rollover_after < 0 ||
        retire_after < 0)
        return kt_err(KEYTIER_E_ARGS, "keytier_keyset_create");
    keytier_err e = kt_uri_check("keyset root", root_uri);
    if (e != KEYTIER_OK)
        return e;
    struct kt_keyset_rec ks;
    struct kt_ks_key_rec *k = calloc(1, sizeof *k);
    if (k == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    memset(&ks, 0, sizeof ks);
    kt_strlcpy(ks.name, name, sizeof ks.name);
    kt_strlcpy(ks.root_uri, root_uri, sizeof ks.root_uri);
    ks.rollover_after = rollover_after;
    ks.retire_after = retire_after;
    ks.created = kt_lc_clock();
    kt_strlcpy(k->name, name, sizeof k->name);
    k->version = 1;
    e = kt_ks_key_new(ctx, root_uri, k);
    if (e == KEYTIER_OK)
        e = kt_store_keyset_insert(ctx->store, &ks, k);
    if (e == KEYTIER_OK)
        e = kt_ks_audit(ctx, "Keyset created", name, 1);
    free(k);
    return e;
}

/* Archives version `from` of keyset ks and makes version from + 1 current;
 * KEYTIER_E_EXISTS when `from` is no longer current (another caller rolled
 * it: one rollover, not two). */
static keytier_err kt_ks_roll(keytier_ctx *ctx, const struct kt_keyset_rec *ks,
                              uint32_t from)
{
    struct kt_ks_key_rec *next = calloc(1, sizeof *next);
    if (next == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    kt_strlcpy(next->name, ks->name, sizeof next->name);
    next->version = from + 1;
    keytier_err e = kt_ks_key_new(ctx, ks->root_uri, next);
    if (e == KEYTIER_OK)
        e = kt_store_ks_rollover(ctx->store, from, next, kt_lc_clock());
    if (e == KEYTIER_OK)
        e = kt_ks_audit(ctx, "Keyset rollover", ks->name, next->version);
    free(next);
    return e;
}

KEYTIER_API keytier_err keytier_keyset_rollover(keytier_ctx *ctx,
                                                const char *name,
                                                uint32_t *version)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(name, KT_KEYSET_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_keyset_rollover");
    struct kt_keyset_rec ks;
    struct kt_ks_key_rec *cur = calloc(1, sizeof *cur);
    if (cur == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_store_keyset_get(ctx->store, name, &ks);
    if (e == KEYTIER_OK)
        e = kt_store_ks_key_get(ctx->store, name, 0, cur);
    if (e == KEYTIER_OK)
        e = kt_ks_roll(ctx, &ks, cur->version);
    if (e == KEYTIER_OK && version != NULL)
        *version = cur->version + 1;
    free(cur);
    return e;
}

/* Rollover and retirement by age of keyset ks at `now`; with dry_run only
 * counted.  d->rolled, d->retired and d->version say what happened. */
static keytier_err kt_ks_maintain(keytier_ctx *ctx,
                                  const struct kt_keyset_rec *ks, int64_t now,
                                  bool dry_run, keytier_keyset_due *d)
{
    uint32_t versions[KT_SEC_RETIRES];
    struct kt_ks_key_rec *cur = calloc(1, sizeof *cur);
    if (cur == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_store_ks_key_get(ctx->store, ks->name, 0, cur);
    if (e == KEYTIER_OK)
        d->version = cur->version;
    if (e == KEYTIER_OK && ks->rollover_after > 0 &&
        now - cur->created >= ks->rollover_after) {
        /* From the version judged due, not whatever is current by now:
         * a second process that judged the same key due rolls nothing. */
        e = dry_run ? KEYTIER_OK : kt_ks_roll(ctx, ks, cur->version);
        if (e == KEYTIER_E_EXISTS) { /* another process rolled it */
            kt_err_clear();
            e = KEYTIER_OK;
        } else if (e == KEYTIER_OK) {
            d->rolled = 1;
            d->version = dry_run ? cur->version : cur->version + 1;
        }
    }
    free(cur);
    if (e != KEYTIER_OK || ks->retire_after <= 0)
        return e;
    /* A rollover by this dry run would archive the current key now: it
     * retires only when retire_after is 0, which disables retirement. */
    if (dry_run)
        return kt_store_ks_retire_count(ctx->store, ks->name,
                                        now - ks->retire_after, &d->retired);
    e = kt_store_ks_retire(ctx->store, ks->name, now - ks->retire_after,
                           versions, KT_SEC_RETIRES, &d->retired);
    for (size_t i = 0; i < d->retired && i < KT_SEC_RETIRES && e == KEYTIER_OK;
         i++)
        e = kt_ks_audit(ctx, "Keyset key retired", ks->name, versions[i]);
    return e;
}

KEYTIER_API keytier_err keytier_keyset_maintain(keytier_ctx *ctx,
                                                const char *name, int *rolled,
                                                size_t *retired)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(name, KT_KEYSET_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_keyset_maintain");
    struct kt_keyset_rec ks;
    keytier_keyset_due d;
    memset(&d, 0, sizeof d);
    keytier_err e = kt_store_keyset_get(ctx->store, name, &ks);
    if (e == KEYTIER_OK)
        e = kt_ks_maintain(ctx, &ks, kt_lc_clock(), false, &d);
    if (rolled != NULL)
        *rolled = d.rolled;
    if (retired != NULL)
        *retired = d.retired;
    return e;
}

KEYTIER_API keytier_err keytier_keyset_rollover_due(
    keytier_ctx *ctx, int dry_run, keytier_keyset_due_report *report,
    void (*each)(void *arg, const keytier_keyset_due *item), void *arg)
{
    kt_err_clear();
    if (report != NULL)
        memset(report, 0, sizeof *report);
    if (ctx == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_keyset_rollover_due");
    struct kt_keyset_rec *list = NULL;
    size_t n = 0;
    keytier_err first = KEYTIER_OK;
    char first_detail[512] = "";
    keytier_err e = kt_store_keyset_list(ctx->store, &list, &n);
    if (e != KEYTIER_OK)
        return e;
    /* One clock reading: every keyset is judged at the same instant. */
    int64_t now = kt_lc_clock();
    for (size_t i = 0; i < n; i++) {
        keytier_keyset_due d;
        memset(&d, 0, sizeof d);
        d.name = list[i].name;
        kt_err_clear();
        d.err = kt_ks_maintain(ctx, &list[i], now, dry_run != 0, &d);
        d.detail = d.err == KEYTIER_OK ? "" : keytier_last_error_detail();
        if (d.err != KEYTIER_OK && first == KEYTIER_OK) {
            /* "keyset N: " goes after the message, not before it. */
            const char *msg = keytier_strerror(d.err), *p = d.detail;
            size_t ml = strlen(msg);
            if (strncmp(p, msg, ml) == 0 && p[ml] == ':' && p[ml + 1] == ' ')
                p += ml + 2;
            first = d.err;
            snprintf(first_detail, sizeof first_detail, "keyset %s: %s", d.name,
                     p);
        }
        if (report != NULL) {
            report->keysets++;
            report->rolled += (size_t)d.rolled;
            report->retired += d.retired;
            report->failed += d.err != KEYTIER_OK;
        }
        if (each != NULL)
            each(arg, &d);
    }
    free(list);
    kt_err_clear();
    return first == KEYTIER_OK ? KEYTIER_OK : kt_err(first, "%s", first_detail);
}

KEYTIER_API keytier_err keytier_keyset_get(keytier_ctx *ctx, const char *name,
                                           keytier_keyset_info *out)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || !kt_text_ok(name, KT_KEYSET_NAME_MAX))
        return kt_err(KEYTIER_E_ARGS, "keytier_keyset_get");
    struct kt_keyset_rec ks;
    struct kt_ks_key_rec *cur = calloc(1, sizeof *cur);
    if (cur == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_store_keyset_get(ctx->store, name, &ks);
    if (e == KEYTIER_OK)
        e = kt_store_ks_key_get(ctx->store, name, 0, cur);
    if (e == KEYTIER_OK) {
        memset(out, 0, sizeof *out);
        kt_strlcpy(out->name, ks.name, sizeof out->name);
        kt_strlcpy(out->root_uri, ks.root_uri, sizeof out->root_uri);
        out->current_version = cur->version;
        out->current_created = cur->created;
        out->rollover_after = ks.rollover_after;
        out->retire_after = ks.retire_after;
    }
    free(cur);
    return e;
}

/* Header of a protected secret: magic, name, version, nonce. */
static bool kt_sec_header(struct kt_wr *wr, const char *name, uint32_t version,
                          const uint8_t nonce[KT_SEC_NONCE])
{
    kt_wr_bytes(wr, KT_SEC_MAGIC, 4);
    kt_wr_lv8(wr, name, strlen(name));
    kt_wr_u32(wr, version);
    kt_wr_bytes(wr, nonce, KT_SEC_NONCE);
    return kt_wr_ok(wr);
}

static keytier_err kt_sec_gcm(const kt_secret *key, int enc, const uint8_t *hdr,
                              size_t hdr_len, const void *aad, size_t aad_len,
                              const uint8_t *in, size_t in_len, uint8_t *out,
                              uint8_t tag[KT_SEC_TAG])
{
    const uint8_t *nonce = hdr + hdr_len - KT_SEC_NONCE;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n;
    keytier_err e = KEYTIER_OK;
    if (c == NULL ||
        EVP_CipherInit_ex2(c, kt_aes256gcm(), kt_secret_cdata(key), nonce, enc,
                           NULL) != 1 ||
        EVP_CipherUpdate(c, NULL, &n, hdr, (int)hdr_len) != 1 ||
        (aad_len > 0 &&
         EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1) ||
        (!enc &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, KT_SEC_TAG, tag) != 1) ||
        (in_len > 0 && EVP_CipherUpdate(c, out, &n, in, (int)in_len) != 1)) {
        e = kt_err(KEYTIER_E_CRYPTO, "AES-GCM");
        goto out;
    }
    if (EVP_CipherFinal_ex(c, out + in_len, &n) != 1) {
        kt_wipe(out, in_len);
        e = enc ? kt_err(KEYTIER_E_CRYPTO, "AES-GCM")
                : kt_err(KEYTIER_E_AUTH,
                         "protected secret altered or opened with other aad");
        goto out;
    }
    if (enc &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, KT_SEC_TAG, tag) != 1)
        e = kt_err(KEYTIER_E_CRYPTO, "AES-GCM");
out:
    EVP_CIPHER_CTX_free(c);
    return e;
}

KEYTIER_API void keytier_secret_free(uint8_t *buf, size_t len)
{
    if (buf != NULL) {
        kt_wipe(buf, len);
        free(buf);
    }
}

KEYTIER_API keytier_err keytier_secret_protect(keytier_ctx *ctx,
                                               const char *keyset,
                                               const void *aad, size_t aad_len,
                                               const void *pt, size_t pt_len,
                                               uint8_t **out, size_t *out_len)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || out_len == NULL ||
        !kt_text_ok(keyset, KT_KEYSET_NAME_MAX) || (pt == NULL && pt_len) ||
        (aad == NULL && aad_len) || pt_len > KT_SEC_MAX || aad_len > KT_SEC_MAX)
        return kt_err(KEYTIER_E_ARGS, "keytier_secret_protect");
    struct kt_keyset_rec ks;
    struct kt_ks_key_rec *cur = calloc(1, sizeof *cur);
    kt_secret *key = NULL;
    uint8_t *buf = NULL;
    keytier_err e;
    if (cur == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    /* Rollover and retirement by age happen here, as secrets are used. */
    e = keytier_keyset_maintain(ctx, keyset, NULL, NULL);
    if (e == KEYTIER_OK)
        e = kt_store_keyset_get(ctx->store, keyset, &ks);
    if (e == KEYTIER_OK)
        e = kt_store_ks_key_get(ctx->store, keyset, 0, cur);
    if (e == KEYTIER_OK)
        e = kt_ks_key_open(ctx, &ks, cur, &key);
    if (e != KEYTIER_OK)
        goto out;
    size_t hdr_max = 4 + 1 + strlen(keyset) + 4 + KT_SEC_NONCE;
    size_t total = hdr_max + pt_len + KT_SEC_TAG;
    buf = malloc(total);
    if (buf == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto out;
    }
    uint8_t nonce[KT_SEC_NONCE];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        e = kt_err(KEYTIER_E_CRYPTO, "random generation failed");
        goto out;
    }
    struct kt_wr wr;
    kt_wr_init(&wr, buf, hdr_max);
    if (!kt_sec_header(&wr, keyset, cur->version, nonce)) {
        e = kt_err(KEYTIER_E_INTERNAL, "secret header");
        goto out;
    }
    e = kt_sec_gcm(key, 1, buf, wr.len, aad, aad_len, pt, pt_len, buf + wr.len,
                   buf + wr.len + pt_len);
    if (e != KEYTIER_OK)
        goto out;
    *out = buf;
    *out_len = total;
    buf = NULL;
out:
    free(buf);
    kt_secret_free(key);
    free(cur);
    return e;
}

bool kt_sec_parse(const void *env, size_t env_len,
                  char name[KT_KEYSET_NAME_MAX + 1], uint32_t *version,
                  size_t *hdr_len)
{
    struct kt_rd rd;
    uint8_t magic[4], name_len;
    kt_rd_init(&rd, env, env_len);
    if (!kt_rd_copy(&rd, magic, sizeof magic, 4) ||
        memcmp(magic, KT_SEC_MAGIC, 4) != 0 || !kt_rd_u8(&rd, &name_len) ||
        !kt_rd_copy(&rd, name, KT_KEYSET_NAME_MAX, name_len) ||
        !kt_rd_u32(&rd, version) || *version == 0 ||
        env_len - rd.pos < KT_SEC_NONCE + KT_SEC_TAG)
        return false;
    name[name_len] = '\0';
    *hdr_len = rd.pos + KT_SEC_NONCE;
    return true;
}

KEYTIER_API keytier_err keytier_secret_unprotect(
    keytier_ctx *ctx, const char *keyset, const void *aad, size_t aad_len,
    const void *env, size_t env_len, uint8_t **out, size_t *out_len)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || out_len == NULL || env == NULL ||
        !kt_text_ok(keyset, KT_KEYSET_NAME_MAX) || (aad == NULL && aad_len) ||
        aad_len > KT_SEC_MAX)
        return kt_err(KEYTIER_E_ARGS, "keytier_secret_unprotect");
    char name[KT_KEYSET_NAME_MAX + 1];
    uint32_t version;
    size_t hdr_len;
    if (!kt_sec_parse(env, env_len, name, &version, &hdr_len))
        return kt_err(KEYTIER_E_FORMAT, "not a protected secret");
    if (strcmp(name, keyset) != 0)
        return kt_err(KEYTIER_E_WRONG_KEY,
                      "secret was protected under keyset %s, not %s", name,
                      keyset);
    size_t ct_len = env_len - hdr_len - KT_SEC_TAG;
    struct kt_keyset_rec ks;
    struct kt_ks_key_rec *k = calloc(1, sizeof *k);
    kt_secret *key = NULL;
    uint8_t *buf = NULL, tag[KT_SEC_TAG];
    if (k == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    /* Retirement by age applies before any key is used. */
    keytier_err e = keytier_keyset_maintain(ctx, keyset, NULL, NULL);
    if (e == KEYTIER_OK)
        e = kt_store_keyset_get(ctx->store, keyset, &ks);
    if (e == KEYTIER_OK)
        e = kt_store_ks_key_get(ctx->store, keyset, version, k);
    if (e == KEYTIER_OK)
        e = kt_ks_key_open(ctx, &ks, k, &key);
    if (e != KEYTIER_OK)
        goto out;
    buf = malloc(ct_len + 1);
    if (buf == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto out;
    }
    memcpy(tag, (const uint8_t *)env + hdr_len + ct_len, KT_SEC_TAG);
    e = kt_sec_gcm(key, 0, env, hdr_len, aad, aad_len,
                   (const uint8_t *)env + hdr_len, ct_len, buf, tag);
    if (e != KEYTIER_OK)
        goto out;
    *out = buf;
    *out_len = ct_len;
    buf = NULL;
out:
    keytier_secret_free(buf, ct_len + 1);
    kt_secret_free(key);
    free(k);
    return e;
}
