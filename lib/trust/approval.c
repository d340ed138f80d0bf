/*
 * Approvals of privileged operations (docs/DESIGN.md §2 "Approvals";
 * keytier.h block "approvals").
 *
 * Trust root: the configuration's `approval.approver = NAME sha256:HEX`
 * lines.  The store holds approvers' public keys and the requests with
 * their grants, but whoever can write the store can write anything there,
 * so nothing in it is believed: a stored key counts only when its SHA-256
 * is the one pinned for that name, and a grant only when its signature,
 * made in the approver's own token over every field of the request,
 * verifies under that key.  Everything is checked again at every use.
 *
 * The signed message is the domain-separation prefix, then each field as a
 * 4-byte big-endian length and its bytes, in this order: id, operation
 * name, tenant, scope, justification, requester, single-use ("1"/"0"),
 * created, expires (decimal seconds), approver, approver key fingerprint.
 * Lengths make the encoding unambiguous; the prefix keeps the signature
 * from meaning anything in another protocol the key may serve.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "audit.h"
#include "trust.h"

#define KT_APPROVAL_DOMAIN "keytier approval v1"
#define KT_APPROVAL_MSG_MAX                                                    \
    (sizeof KT_APPROVAL_DOMAIN + 11 * 4 + KEYTIER_ID_SIZE + 32 +               \
     KEYTIER_TENANT_MAX + KEYTIER_APPROVAL_SCOPE + KEYTIER_JUSTIFICATION_MAX + \
     2 * KEYTIER_APPROVER_MAX + 1 + 2 * 20 + KEYTIER_FINGERPRINT_SIZE)

static int64_t kt_approval_time(void)
{
    return (int64_t)time(NULL);
}

int64_t (*kt_approval_clock)(void) = kt_approval_time;

static const char *const kt_op_names[] = {
    [KEYTIER_APPROVAL_RECOVER] = "recover",
    [KEYTIER_APPROVAL_PURGE] = "purge",
    [KEYTIER_APPROVAL_SERVICE_KEY_DESTROY] = "service-key-destroy",
    [KEYTIER_APPROVAL_SERVICE_KEY_REPLACE] = "service-key-replace",
    [KEYTIER_APPROVAL_FILES_AVAIL_READ] = "files-availability-read",
    [KEYTIER_APPROVAL_CHANGE_APPROVERS] = "change-approvers",
    [KEYTIER_APPROVAL_FILES_OFFBOARD] = "files-offboard",
};
#define KT_N_OPS (sizeof kt_op_names / sizeof kt_op_names[0])

KEYTIER_API const char *keytier_approval_op_name(keytier_approval_op op)
{
    return (unsigned)op < KT_N_OPS ? kt_op_names[op] : NULL;
}

KEYTIER_API keytier_err keytier_approval_op_parse(const char *name,
                                                  keytier_approval_op *out)
{
    kt_err_clear();
    for (size_t i = 1; name != NULL && out != NULL && i < KT_N_OPS; i++)
        if (!strcmp(name, kt_op_names[i])) {
            *out = (keytier_approval_op)i;
            return KEYTIER_OK;
        }
    return kt_err(KEYTIER_E_ARGS,
                  "operation '%s': one of recover, purge, "
                  "service-key-destroy, service-key-replace, "
                  "files-availability-read, change-approvers, files-offboard",
                  name ? name : "");
}

/* ---- approvers: pinned name and fingerprint, key from the store ------- */

static void kt_fpr_format(const uint8_t fpr[32],
                          char out[KEYTIER_FINGERPRINT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[fpr[i] >> 4];
        out[8 + 2 * i] = hex[fpr[i] & 15];
    }
    out[71] = '\0';
}

KEYTIER_API keytier_err keytier_approver_fingerprint(
    const void *spki, size_t len, char out[KEYTIER_FINGERPRINT_SIZE])
{
    kt_err_clear();
    uint8_t fpr[32];
    if (spki == NULL || len == 0 || out == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_approver_fingerprint");
    if (EVP_Digest(spki, len, fpr, NULL, EVP_sha256(), NULL) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "SHA-256");
    kt_fpr_format(fpr, out);
    return KEYTIER_OK;
}

/* An ECDSA P-256 or RSA >= 2048 public key from a DER SPKI. */
static keytier_err kt_spki_parse(const uint8_t *spki, size_t len,
                                 const char *name, EVP_PKEY **out)
{
    const unsigned char *p = spki;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    char group[32] = "";
    bool ok = pk != NULL && p == spki + len;
    if (ok && EVP_PKEY_is_a(pk, "EC"))
        ok = EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME,
                                            group, sizeof group, NULL) == 1 &&
             !strcmp(group, SN_X9_62_prime256v1);
    else if (ok)
        ok = EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) >= 2048;
    if (!ok) {
        EVP_PKEY_free(pk);
        return kt_err(KEYTIER_E_FORMAT,
                      "approver %s: the public key must be a DER "
                      "SubjectPublicKeyInfo of an ECDSA P-256 key or an RSA "
                      "key of 2048 bits or more",
                      name);
    }
    *out = pk;
    return KEYTIER_OK;
}

static const struct kt_approver_pin *kt_pin_of(const keytier_ctx *ctx,
                                               const char *name)
{
    for (size_t i = 0; i < ctx->cfg.n_approvers; i++)
        if (!strcmp(ctx->cfg.approvers[i].name, name))
            return &ctx->cfg.approvers[i];
    return NULL;
}

/*
 * The key of approver `name`: pinned in the configuration, stored, and the
 * stored key's SHA-256 equal to the pin.  A key put into the store by hand
 * fails here, whatever the row says.
 */
static keytier_err kt_approver_key(keytier_ctx *ctx, const char *name,
                                   uint8_t spki[KT_SPKI_MAX], size_t *len,
                                   char fpr_text[KEYTIER_FINGERPRINT_SIZE])
{
    const struct kt_approver_pin *pin = kt_pin_of(ctx, name);
    if (pin == NULL)
        return kt_err(KEYTIER_E_APPROVER,
                      "%s is not pinned in the configuration: add "
                      "`approval.approver = %s sha256:HEX`",
                      name, name);
    uint8_t fpr[32];
    keytier_err e = kt_store_approver_get(ctx->store, name, spki, len);
    if (e != KEYTIER_OK)
        return e;
    if (EVP_Digest(spki, *len, fpr, NULL, EVP_sha256(), NULL) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "SHA-256");
    if (!kt_ct_equal(fpr, pin->fpr, sizeof fpr))
        return kt_err(KEYTIER_E_APPROVER,
                      "approver %s: the key in the store is not the one the "
                      "configuration pins",
                      name);
    if (fpr_text != NULL)
        kt_fpr_format(fpr, fpr_text);
    return KEYTIER_OK;
}

/* The requester may not approve: by name, nor through another name pinned
 * with the same key. */
static keytier_err kt_not_self(keytier_ctx *ctx, const char *requester,
                               const char *approver)
{
    const struct kt_approver_pin *a = kt_pin_of(ctx, approver);
    const struct kt_approver_pin *r = kt_pin_of(ctx, requester);
    if (!strcmp(requester, approver) ||
        (a != NULL && r != NULL && kt_ct_equal(a->fpr, r->fpr, 32)))
        return kt_err(KEYTIER_E_APPROVAL_SELF,
                      "%s requested this approval: another approver must "
                      "grant it",
                      requester);
    return KEYTIER_OK;
}

/* ---- the signed message ----------------------------------------------- */

static bool kt_msg_put(uint8_t *msg, size_t *at, const char *field)
{
    size_t n = strlen(field);
    if (*at + 4 + n > KT_APPROVAL_MSG_MAX)
        return false;
    msg[(*at)++] = (uint8_t)(n >> 24);
    msg[(*at)++] = (uint8_t)(n >> 16);
    msg[(*at)++] = (uint8_t)(n >> 8);
    msg[(*at)++] = (uint8_t)n;
    memcpy(msg + *at, field, n);
    *at += n;
    return true;
}

/* SHA-256 of the canonical encoding of a (approver fields included). */
static keytier_err kt_approval_digest(const keytier_approval_info *a,
                                      uint8_t digest[32])
{
    uint8_t msg[KT_APPROVAL_MSG_MAX];
    char created[24], expires[24];
    const char *op = keytier_approval_op_name(a->op);
    size_t at = sizeof KT_APPROVAL_DOMAIN; /* with its NUL */
    memcpy(msg, KT_APPROVAL_DOMAIN, at);
    snprintf(created, sizeof created, "%" PRId64, a->created);
    snprintf(expires, sizeof expires, "%" PRId64, a->expires);
    const char *fields[] = {a->id,
                            op ? op : "",
                            a->tenant,
                            a->scope,
                            a->justification,
                            a->requester,
                            a->single_use ? "1" : "0",
                            created,
                            expires,
                            a->approver,
                            a->approver_key};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!kt_msg_put(msg, &at, fields[i]))
            return kt_err(KEYTIER_E_INTERNAL, "approval message");
    if (EVP_Digest(msg, at, digest, NULL, EVP_sha256(), NULL) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "SHA-256");
    return KEYTIER_OK;
}

/* ECDSA signatures come from PKCS#11 as r || s; OpenSSL verifies DER. */
static int kt_ecdsa_der(const uint8_t *sig, size_t len, uint8_t **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(len / 2), NULL);
    BIGNUM *s = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
    int n = -1;
    if (es != NULL && r != NULL && s != NULL && len == 64 &&
        ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es */
        *der = NULL;
        n = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n;
}

/* Does sig verify over digest under pk (ECDSA P-256, or RSA-PSS SHA-256
 * with a 32-byte salt)? */
static bool kt_sig_ok(EVP_PKEY *pk, const uint8_t digest[32],
                      const uint8_t *sig, size_t sig_len)
{
    bool rsa = EVP_PKEY_is_a(pk, "RSA");
    uint8_t *der = NULL;
    int der_len = rsa ? 0 : kt_ecdsa_der(sig, sig_len, &der);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pk, NULL);
    bool ok = pc != NULL && (rsa || der_len > 0) &&
              EVP_PKEY_verify_init(pc) == 1 &&
              EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1;
    if (ok && rsa)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) == 1;
    if (ok)
        ok = rsa ? EVP_PKEY_verify(pc, sig, sig_len, digest, 32) == 1
                 : EVP_PKEY_verify(pc, der, (size_t)der_len, digest, 32) == 1;
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(pc);
    return ok;
}

keytier_err kt_grant_sig_check(const uint8_t *spki, size_t len,
                               const struct kt_approval_rec *r)
{
    const keytier_approval_info *a = &r->info;
    EVP_PKEY *pk = NULL;
    uint8_t digest[32];
    keytier_err e = kt_spki_parse(spki, len, a->approver, &pk);
    if (e == KEYTIER_OK)
        e = kt_approval_digest(a, digest);
    if (e == KEYTIER_OK && !kt_sig_ok(pk, digest, r->sig, r->sig_len))
        e = kt_err(KEYTIER_E_APPROVAL_INVALID,
                   "approval %s: the signature of %s does not verify over "
                   "the stored request",
                   a->id, a->approver);
    EVP_PKEY_free(pk);
    return e;
}

/*
 * Everything a grant claims, checked from the configuration and the
 * signature alone: the approver pinned and registered with the key the
 * grant names, not the requester, and the signature over every field.
 */
static keytier_err kt_grant_verify(keytier_ctx *ctx,
                                   const struct kt_approval_rec *r)
{
    const keytier_approval_info *a = &r->info;
    char fpr[KEYTIER_FINGERPRINT_SIZE];
    uint8_t spki[KT_SPKI_MAX];
    size_t len = 0;
    keytier_err e = kt_approver_key(ctx, a->approver, spki, &len, fpr);
    if (e != KEYTIER_OK)
        return e;
    if (strcmp(fpr, a->approver_key) != 0)
        return kt_err(KEYTIER_E_APPROVAL_INVALID,
                      "approval %s names a key %s is not pinned with", a->id,
                      a->approver);
    e = kt_not_self(ctx, a->requester, a->approver);
    return e != KEYTIER_OK ? e : kt_grant_sig_check(spki, len, r);
}

/* ---- audit records ---------------------------------------------------- */

static void kt_json_str(json_object *o, const char *k, const char *v)
{
    if (v != NULL && v[0] != '\0')
        json_object_object_add(o, k, json_object_new_string(v));
}

/* One record naming the approval; `by` (may be NULL) who acted.  Never a
 * PIN nor a signature. */
static keytier_err kt_approval_audit(keytier_ctx *ctx, const char *activity,
                                     const keytier_approval_info *a,
                                     const char *by, const char *reason)
{
    char path[4096];
    kt_audit *log = NULL;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    kt_json_str(o, "ApprovalId", a->id);
    kt_json_str(o, "Operation", keytier_approval_op_name(a->op));
    kt_json_str(o, "OrganizationId", a->tenant);
    kt_json_str(o, "Scope", a->scope);
    kt_json_str(o, "Justification", a->justification);
    kt_json_str(o, "Requester", a->requester);
    kt_json_str(o, "Approver", a->approver);
    kt_json_str(o, "ApproverKey", a->approver_key);
    json_object_object_add(o, "Expires", json_object_new_int64(a->expires));
    json_object_object_add(o, "SingleUse",
                           json_object_new_boolean(a->single_use));
    kt_json_str(o, "By", by);
    kt_json_str(o, "Reason", reason);
    /* keytier_audit_log_path clears the thread's error: keep ours. */
    keytier_err e = keytier_audit_log_path(ctx, path, sizeof path);
    if (e == KEYTIER_OK)
        e = kt_audit_open(path, &log);
    if (e != KEYTIER_OK) {
        json_object_put(o);
        return e;
    }
    kt_audit_anchor_attach(ctx, log);
    e = kt_audit_append(log, activity, o, NULL);
    kt_audit_close(log);
    return e;
}

/* The record of a step that brought a to `state` (request, grant, use),
 * written after the step is stored: when it cannot be written the step is
 * taken back, so the audit log names every step there was.  Returns the
 * audit's error. */
static keytier_err kt_approval_step_audit(keytier_ctx *ctx,
                                          const char *activity,
                                          const keytier_approval_info *a,
                                          int state, const char *by)
{
    keytier_err e = kt_approval_audit(ctx, activity, a, by, NULL);
    if (e == KEYTIER_OK)
        return KEYTIER_OK;
    char saved[KT_TJOB_DETAIL * 2];
    snprintf(saved, sizeof saved, "%s", keytier_last_error_detail());
    if (kt_store_approval_undo(ctx->store, a->id, state) != KEYTIER_OK)
        kt_log_event(ctx->log, KT_LOG_ERROR,
                     "approval step without its audit record not undone",
                     a->id);
    kt_err_restore(saved);
    return kt_err_context(e, "%s of %s taken back: its audit record", activity,
                          a->id);
}

/* The state a reader sees: requested or granted past expiry is expired.
 * The first time an expiry is seen, it is audited. */
static keytier_err kt_approval_seen(keytier_ctx *ctx, struct kt_approval_rec *r,
                                    int64_t now)
{
    keytier_approval_info *a = &r->info;
    if (a->state > KEYTIER_APPROVAL_GRANTED || now < a->expires)
        return KEYTIER_OK;
    a->state = KEYTIER_APPROVAL_EXPIRED;
    bool first = false;
    keytier_err e = kt_store_approval_expiry_seen(ctx->store, a->id, &first);
    if (e == KEYTIER_OK && first)
        e = kt_approval_audit(ctx, "Approval expired", a, NULL, NULL);
    return e;
}

/* ---- request, grant, list, revoke ------------------------------------- */

/* Printable text of 1..max bytes: no control characters reach the log. */
static bool kt_printable(const char *s, size_t max)
{
    if (!kt_text_ok(s, max))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

static keytier_err kt_request_args(keytier_ctx *ctx, keytier_approval_op op,
                                   const char *tenant, const char *scope,
                                   const char *justification,
                                   const char *requester, int64_t ttl)
{
    if (keytier_approval_op_name(op) == NULL)
        return kt_err(KEYTIER_E_ARGS, "approval operation %d unknown", (int)op);
    if (!kt_printable(tenant, KEYTIER_TENANT_MAX))
        return kt_err(KEYTIER_E_ARGS, "tenant: 1 to %d printable bytes",
                      KEYTIER_TENANT_MAX);
    if (!kt_printable(scope, KEYTIER_APPROVAL_SCOPE))
        return kt_err(KEYTIER_E_ARGS,
                      "scope: 1 to %d printable bytes (a DEP id, a key "
                      "label, an approver, or *)",
                      KEYTIER_APPROVAL_SCOPE);
    if (op == KEYTIER_APPROVAL_PURGE && strcmp(scope, KEYTIER_APPROVAL_ANY))
        return kt_err(KEYTIER_E_ARGS, "a purge is tenant-wide: scope *");
    if (!kt_printable(justification, KEYTIER_JUSTIFICATION_MAX))
        return kt_err(KEYTIER_E_ARGS,
                      "justification required: 1 to %d printable bytes",
                      KEYTIER_JUSTIFICATION_MAX);
    if (!kt_printable(requester, KEYTIER_APPROVER_MAX))
        return kt_err(KEYTIER_E_ARGS, "requester: 1 to %d printable bytes",
                      KEYTIER_APPROVER_MAX);
    if (ttl < 1 || ttl > (int64_t)ctx->cfg.approval_max_ttl)
        return kt_err(KEYTIER_E_ARGS,
                      "expiry of %" PRId64 " s: at most approval.max_ttl = "
                      "%u s from now",
                      ttl, ctx->cfg.approval_max_ttl);
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_approval_request(
    keytier_ctx *ctx, keytier_approval_op op, const char *tenant,
    const char *scope, const char *justification, const char *requester,
    int64_t ttl_seconds, int single_use, keytier_approval_info *out)
{
    kt_err_clear();
    if (ctx == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_approval_request");
    keytier_err e = kt_request_args(ctx, op, tenant, scope, justification,
                                    requester, ttl_seconds);
    if (e != KEYTIER_OK)
        return e;
    struct kt_approval_rec r;
    memset(&r, 0, sizeof r);
    keytier_approval_info *a = &r.info;
    uint8_t id[KT_UUID_BYTES];
    if (!kt_uuid_new(id))
        return kt_err(KEYTIER_E_CRYPTO, "approval id");
    kt_uuid_format(id, a->id);
    a->op = op;
    a->state = KEYTIER_APPROVAL_REQUESTED;
    kt_strlcpy(a->tenant, tenant, sizeof a->tenant);
    kt_strlcpy(a->scope, scope, sizeof a->scope);
    kt_strlcpy(a->justification, justification, sizeof a->justification);
    kt_strlcpy(a->requester, requester, sizeof a->requester);
    a->single_use = single_use != 0;
    a->created = kt_approval_clock();
    a->expires = a->created + ttl_seconds;
    e = kt_store_approval_insert(ctx->store, &r);
    if (e == KEYTIER_OK)
        e = kt_approval_step_audit(ctx, "Approval requested", a,
                                   KEYTIER_APPROVAL_REQUESTED, requester);
    if (e == KEYTIER_OK && out != NULL)
        *out = *a;
    return e;
}

KEYTIER_API keytier_err keytier_approval_get(keytier_ctx *ctx,
                                             const char *approval_id,
                                             keytier_approval_info *out)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(approval_id, KEYTIER_ID_SIZE - 1) ||
        out == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_approval_get");
    struct kt_approval_rec r;
    keytier_err e = kt_store_approval_get(ctx->store, approval_id, &r);
    if (e == KEYTIER_OK)
        e = kt_approval_seen(ctx, &r, kt_approval_clock());
    if (e == KEYTIER_OK)
        *out = r.info;
    return e;
}

/* Why an approval in its state cannot be used (KEYTIER_OK: granted). */
static keytier_err kt_state_refusal(const keytier_approval_info *a)
{
    switch (a->state) {
    case KEYTIER_APPROVAL_EXPIRED:
        return kt_err(KEYTIER_E_APPROVAL_EXPIRED,
                      "approval %s expired: request a new one", a->id);
    case KEYTIER_APPROVAL_REVOKED:
        return kt_err(KEYTIER_E_APPROVAL_REVOKED, "approval %s was revoked",
                      a->id);
    case KEYTIER_APPROVAL_USED:
        return kt_err(KEYTIER_E_APPROVAL_USED,
                      "approval %s was single-use and is used: request a "
                      "new one",
                      a->id);
    case KEYTIER_APPROVAL_REQUESTED:
        return kt_err(KEYTIER_E_APPROVAL_PENDING,
                      "approval %s is not granted yet: an approver runs "
                      "keytier approval grant %s",
                      a->id, a->id);
    case KEYTIER_APPROVAL_GRANTED:
        return KEYTIER_OK;
    default:
        /* No state the library writes: the row was edited. */
        return kt_err(KEYTIER_E_APPROVAL_INVALID,
                      "approval %s has an unknown state %d", a->id,
                      (int)a->state);
    }
}

KEYTIER_API keytier_err keytier_approval_grant(
    keytier_ctx *ctx, const char *approval_id, const char *approver,
    const char *key_uri, const char *pin, keytier_approval_info *out)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(approval_id, KEYTIER_ID_SIZE - 1) ||
        !kt_printable(approver, KEYTIER_APPROVER_MAX) || key_uri == NULL ||
        pin == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_approval_grant: approval id, "
                                      "approver, key URI and PIN required");
    struct kt_approval_rec r;
    uint8_t digest[32], spki[KT_SPKI_MAX];
    size_t spki_len = 0;
    keytier_err e = kt_store_approval_get(ctx->store, approval_id, &r);
    if (e == KEYTIER_OK)
        e = kt_approval_seen(ctx, &r, kt_approval_clock());
    keytier_approval_info *a = &r.info;
    if (e == KEYTIER_OK && a->state == KEYTIER_APPROVAL_GRANTED)
        e = kt_err(KEYTIER_E_EXISTS, "approval %s is granted already", a->id);
    if (e == KEYTIER_OK && a->state != KEYTIER_APPROVAL_REQUESTED)
        e = kt_state_refusal(a);
    if (e == KEYTIER_OK)
        e = kt_not_self(ctx, a->requester, approver);
    if (e == KEYTIER_OK)
        e = kt_approver_key(ctx, approver, spki, &spki_len, a->approver_key);
    if (e == KEYTIER_OK) {
        kt_strlcpy(a->approver, approver, sizeof a->approver);
        e = kt_approval_digest(a, digest);
    }
    if (e == KEYTIER_OK)
        e = kt_approval_sign(ctx, key_uri, pin, digest, r.sig, &r.sig_len);
    /* The token's key must be the approver's: checked before storing. */
    if (e == KEYTIER_OK && (e = kt_grant_verify(ctx, &r)) != KEYTIER_OK)
        e = kt_err_context(e, "the key %s signed with", key_uri);
    bool applied = false;
    if (e == KEYTIER_OK) {
        a->granted = kt_approval_clock();
        e = kt_store_approval_grant(ctx->store, &r, &applied);
    }
    if (e == KEYTIER_OK && !applied)
        e = kt_err(KEYTIER_E_EXISTS, "approval %s changed state meanwhile",
                   a->id);
    if (e == KEYTIER_OK) {
        a->state = KEYTIER_APPROVAL_GRANTED;
        e = kt_approval_step_audit(ctx, "Approval granted", a,
                                   KEYTIER_APPROVAL_GRANTED, approver);
    }
    if (e == KEYTIER_OK && out != NULL)
        *out = *a;
    return e;
}

KEYTIER_API keytier_err keytier_approval_list(keytier_ctx *ctx,
                                              const char *tenant,
                                              keytier_approval_info **out,
                                              size_t *count)
{
    kt_err_clear();
    if (ctx == NULL || out == NULL || count == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_approval_list");
    *out = NULL;
    *count = 0;
    struct kt_approval_rec *recs = NULL;
    size_t n = 0;
    keytier_err e = kt_store_approval_list(ctx->store, tenant, &recs, &n);
    if (e != KEYTIER_OK)
        return e;
    keytier_approval_info *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL)
        e = kt_err(KEYTIER_E_NOMEM, NULL);
    int64_t now = kt_approval_clock();
    for (size_t i = 0; e == KEYTIER_OK && i < n; i++) {
        e = kt_approval_seen(ctx, &recs[i], now);
        list[i] = recs[i].info;
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

KEYTIER_API void keytier_approval_list_free(keytier_approval_info *list)
{
    free(list);
}

KEYTIER_API keytier_err keytier_approval_revoke(keytier_ctx *ctx,
                                                const char *approval_id,
                                                const char *by,
                                                const char *reason)
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(approval_id, KEYTIER_ID_SIZE - 1) ||
        !kt_printable(by, KEYTIER_APPROVER_MAX) ||
        (reason != NULL && !kt_printable(reason, KEYTIER_JUSTIFICATION_MAX)))
        return kt_err(KEYTIER_E_ARGS, "keytier_approval_revoke: approval id "
                                      "and who revokes required");
    struct kt_approval_rec r;
    keytier_err e = kt_store_approval_get(ctx->store, approval_id, &r);
    if (e == KEYTIER_OK)
        e = kt_approval_seen(ctx, &r, kt_approval_clock());
    /* A pending or expired approval may be revoked too: it says so for
     * good. */
    if (e == KEYTIER_OK && (r.info.state == KEYTIER_APPROVAL_USED ||
                            r.info.state == KEYTIER_APPROVAL_REVOKED))
        e = kt_state_refusal(&r.info);
    bool applied = false;
    if (e == KEYTIER_OK)
        e = kt_store_approval_set_state(ctx->store, approval_id,
                                        KEYTIER_APPROVAL_REVOKED, &applied);
    if (e == KEYTIER_OK && !applied)
        e = kt_err(KEYTIER_E_APPROVAL_USED,
                   "approval %s was used or revoked meanwhile", approval_id);
    if (e == KEYTIER_OK)
        e = kt_approval_audit(ctx, "Approval revoked", &r.info, by, reason);
    return e;
}

/* ---- use -------------------------------------------------------------- */

static keytier_err kt_scope_check(const keytier_approval_info *a,
                                  keytier_approval_op op, const char *tenant,
                                  const char *scope)
{
    if (a->op != op)
        return kt_err(KEYTIER_E_APPROVAL_SCOPE, "approval %s is for %s, not %s",
                      a->id, keytier_approval_op_name(a->op),
                      keytier_approval_op_name(op));
    if (strcmp(a->tenant, tenant) != 0)
        return kt_err(KEYTIER_E_APPROVAL_SCOPE,
                      "approval %s is for tenant %s, not %s", a->id, a->tenant,
                      tenant);
    if (strcmp(a->scope, KEYTIER_APPROVAL_ANY) != 0 &&
        strcmp(a->scope, scope) != 0)
        return kt_err(KEYTIER_E_APPROVAL_SCOPE, "approval %s covers %s, not %s",
                      a->id, a->scope, scope);
    return KEYTIER_OK;
}

KEYTIER_API keytier_err keytier_approval_consume(keytier_ctx *ctx,
                                                 keytier_approval_op op,
                                                 const char *tenant,
                                                 const char *scope,
                                                 const char *approval_id)
{
    kt_err_clear();
    if (ctx == NULL || keytier_approval_op_name(op) == NULL || tenant == NULL ||
        scope == NULL)
        return kt_err(KEYTIER_E_ARGS, "keytier_approval_consume");
    if (approval_id == NULL)
        return kt_err(KEYTIER_E_APPROVAL_REQUIRED, "%s of %s needs an approval",
                      keytier_approval_op_name(op), tenant);
    if (!kt_text_ok(approval_id, KEYTIER_ID_SIZE - 1))
        return kt_err(KEYTIER_E_NOT_FOUND, "no approval %.40s", approval_id);
    struct kt_approval_rec r;
    keytier_approval_info *a = &r.info;
    int64_t now = kt_approval_clock();
    keytier_err e = kt_store_approval_get(ctx->store, approval_id, &r);
    if (e == KEYTIER_OK)
        e = kt_approval_seen(ctx, &r, now);
    if (e == KEYTIER_OK)
        e = kt_state_refusal(a);
    if (e == KEYTIER_OK)
        e = kt_scope_check(a, op, tenant, scope);
    if (e == KEYTIER_OK)
        e = kt_grant_verify(ctx, &r);
    bool applied = true;
    if (e == KEYTIER_OK && a->single_use)
        e = kt_store_approval_use(ctx->store, &r, now, &applied);
    if (e == KEYTIER_OK && !applied)
        e = kt_err(KEYTIER_E_APPROVAL_USED,
                   "approval %s was used by another operation first (or "
                   "changed meanwhile)",
                   a->id);
    if (e == KEYTIER_OK && a->single_use) {
        a->used = now;
        e = kt_approval_step_audit(ctx, "Approval used", a,
                                   KEYTIER_APPROVAL_USED, NULL);
    } else if (e == KEYTIER_OK) {
        a->used = now;
        e = kt_approval_audit(ctx, "Approval used", a, NULL, NULL);
    }
    return e;
}

keytier_err kt_approval_gate(keytier_ctx *ctx, keytier_approval_op op,
                             const char *tenant, const char *scope,
                             const char *approval_id, const char *what)
{
    if (approval_id != NULL || ctx->cfg.approval_required) {
        keytier_err e =
            keytier_approval_consume(ctx, op, tenant, scope, approval_id);
        if (e == KEYTIER_E_APPROVAL_REQUIRED)
            return kt_err(e,
                          "%s of %s needs an approval: keytier approval "
                          "request --op %s --tenant %s --scope %s, granted by "
                          "an approver, then --approval ID",
                          what, tenant, keytier_approval_op_name(op), tenant,
                          scope);
        return kt_err_context(e, "%s of %s", what, tenant);
    }
    keytier_approval_info a;
    memset(&a, 0, sizeof a);
    a.op = op;
    kt_strlcpy(a.tenant, tenant, sizeof a.tenant);
    kt_strlcpy(a.scope, scope, sizeof a.scope);
    return kt_approval_audit(ctx, "Privileged operation without approval", &a,
                             NULL, "approval.required = no");
}

/* ---- approvers -------------------------------------------------------- */

KEYTIER_API keytier_err keytier_approver_register(keytier_ctx *ctx,
                                                  const char *name,
                                                  const void *spki, size_t len,
                                                  const char *approval_id)
{
    kt_err_clear();
    if (ctx == NULL || !kt_printable(name, KEYTIER_APPROVER_MAX) ||
        spki == NULL || len == 0 || len > KT_SPKI_MAX)
        return kt_err(KEYTIER_E_ARGS,
                      "keytier_approver_register: a name and "
                      "a public key of at most %d bytes",
                      KT_SPKI_MAX);
    EVP_PKEY *pk = NULL;
    keytier_err e = kt_spki_parse(spki, len, name, &pk);
    EVP_PKEY_free(pk);
    if (e != KEYTIER_OK)
        return e;
    const struct kt_approver_pin *pin = kt_pin_of(ctx, name);
    uint8_t fpr[32];
    if (EVP_Digest(spki, len, fpr, NULL, EVP_sha256(), NULL) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "SHA-256");
    char text[KEYTIER_FINGERPRINT_SIZE];
    kt_fpr_format(fpr, text);
    if (pin == NULL || !kt_ct_equal(pin->fpr, fpr, sizeof fpr))
        return kt_err(KEYTIER_E_APPROVER,
                      "%s: pin this key first: `approval.approver = %s %s` "
                      "in the configuration",
                      name, name, text);
    /* The first approvers come from the configuration alone; after that a
     * change to the list is itself a privileged operation. */
    size_t have = 0;
    e = kt_store_approver_count(ctx->store, &have);
    if (e == KEYTIER_OK && have > 0)
        e = kt_approval_gate(ctx, KEYTIER_APPROVAL_CHANGE_APPROVERS,
                             KEYTIER_APPROVAL_ANY, name, approval_id,
                             "registering an approver");
    if (e == KEYTIER_OK)
        e = kt_store_approver_put(ctx->store, name, spki, len,
                                  kt_approval_clock());
    if (e == KEYTIER_OK) {
        keytier_approval_info a;
        memset(&a, 0, sizeof a);
        a.op = KEYTIER_APPROVAL_CHANGE_APPROVERS;
        kt_strlcpy(a.tenant, KEYTIER_APPROVAL_ANY, sizeof a.tenant);
        kt_strlcpy(a.scope, name, sizeof a.scope);
        kt_strlcpy(a.approver_key, text, sizeof a.approver_key);
        if (approval_id != NULL)
            kt_strlcpy(a.id, approval_id, sizeof a.id);
        e = kt_approval_audit(ctx, "Approver registered", &a, name, NULL);
    }
    return e;
}
