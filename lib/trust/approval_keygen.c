/*
 * An approver's key pair, made in the approver's own token: ECDSA P-256,
 * the private key sensitive, never extractable and allowed to sign only
 * (no decrypt, unwrap or derive), so that it serves approvals and nothing
 * else.  What leaves the token is the public key, as the DER
 * SubjectPublicKeyInfo the configuration pins by fingerprint, and the
 * private key's PKCS#11 URI for keytier_approval_grant.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "ckr.h"
#include "p11call.h"
#include "trust.h"

#define KT_APPROVER_ID_BYTES 16
#define KT_P256_POINT        65 /* 04 || X || Y */

/* DER of the OID prime256v1 (1.2.840.10045.3.1.7): CKA_EC_PARAMS. */
static const uint8_t kt_p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x03, 0x01, 0x07};

struct kt_keygen_job {
    struct kt_tjob base;
    char token_uri[KEYTIER_URI_MAX];
    char label[KEYTIER_LABEL_MAX + 1];
    kt_secret *pin;
    /* outputs */
    uint8_t spki[KT_SPKI_MAX];
    size_t spki_len;
    char key_uri[KEYTIER_URI_MAX];
};

static void kt_keygen_cleanup(struct kt_tjob *tj)
{
    struct kt_keygen_job *j = (struct kt_keygen_job *)tj;
    kt_secret_free(j->pin);
}

/* The uncompressed point of CKA_EC_POINT: a DER OCTET STRING as PKCS#11
 * v2.40 §2.3.3 says, or the bare point some tokens give. */
static const uint8_t *kt_ec_point(const uint8_t *v, size_t len)
{
    if (len == KT_P256_POINT + 2 && v[0] == 0x04 && v[1] == KT_P256_POINT &&
        v[2] == 0x04)
        return v + 2;
    if (len == KT_P256_POINT && v[0] == 0x04)
        return v;
    return NULL;
}

/* The DER SubjectPublicKeyInfo of a P-256 point. */
static keytier_err kt_p256_spki(const uint8_t *point, uint8_t *out,
                                size_t *out_len)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pk = NULL;
    bool ok = b != NULL && pc != NULL &&
              OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME,
                                              SN_X9_62_prime256v1, 0) == 1 &&
              OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY,
                                               point, KT_P256_POINT) == 1 &&
              (params = OSSL_PARAM_BLD_to_param(b)) != NULL &&
              EVP_PKEY_fromdata_init(pc) == 1 &&
              EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1;
    int n = ok ? i2d_PUBKEY(pk, NULL) : -1;
    if (n > 0 && (size_t)n <= KT_SPKI_MAX) {
        uint8_t *p = out;
        n = i2d_PUBKEY(pk, &p);
    }
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    if (n <= 0 || (size_t)n > KT_SPKI_MAX)
        return kt_err(KEYTIER_E_CRYPTO, "approver public key");
    *out_len = (size_t)n;
    return KEYTIER_OK;
}

keytier_err kt_approver_point_spki(const uint8_t *v, size_t len,
                                   uint8_t out[KT_SPKI_MAX], size_t *out_len)
{
    const uint8_t *p = kt_ec_point(v, len);
    if (p == NULL)
        return kt_err(KEYTIER_E_TOKEN,
                      "CKA_EC_POINT of %zu bytes: not an uncompressed P-256 "
                      "point",
                      len);
    return kt_p256_spki(p, out, out_len);
}

static keytier_err kt_keygen_here(struct kt_keygen_job *j, struct kt_token *tok,
                                  CK_SESSION_HANDLE s)
{
    char nb[KT_CKR_NAME_MAX];
    CK_ATTRIBUTE lt = {CKA_LABEL, j->label, strlen(j->label)};
    CK_OBJECT_HANDLE found;
    CK_ULONG count = 0;
    CK_RV rv = kt_p11_find_objects(tok, s, &lt, 1, &found, 1, &count);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_FindObjects: %s",
                      tok->label, kt_ckr_name(rv, nb));
    if (count > 0)
        return kt_err(KEYTIER_E_EXISTS, "token '%s' already has a key '%s'",
                      tok->label, j->label);
    uint8_t id[KT_APPROVER_ID_BYTES];
    if (RAND_bytes(id, sizeof id) != 1)
        return kt_err(KEYTIER_E_CRYPTO, "RAND_bytes");
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE pub_t[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_EC_PARAMS, (void *)kt_p256_oid, sizeof kt_p256_oid},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_WRAP, &no, sizeof no},
        {CKA_DERIVE, &no, sizeof no},
        {CKA_LABEL, j->label, strlen(j->label)},
        {CKA_ID, id, sizeof id},
    };
    CK_ATTRIBUTE priv_t[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},
        /* A token's defaults may allow more: each usage is said. */
        {CKA_DECRYPT, &no, sizeof no},
        {CKA_UNWRAP, &no, sizeof no},
        {CKA_DERIVE, &no, sizeof no},
        {CKA_LABEL, j->label, strlen(j->label)},
        {CKA_ID, id, sizeof id},
    };
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub, priv;
    rv = kt_p11_generate_key_pair(
        tok, s, &mech, pub_t, sizeof pub_t / sizeof pub_t[0], priv_t,
        sizeof priv_t / sizeof priv_t[0], &pub, &priv);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_GenerateKeyPair: %s",
                      tok->label, kt_ckr_name(rv, nb));
    uint8_t point[KT_P256_POINT + 8];
    CK_ATTRIBUTE pt = {CKA_EC_POINT, point, sizeof point};
    rv = kt_p11_get_attributes(tok, s, pub, &pt, 1);
    keytier_err e =
        rv != CKR_OK ? kt_err(KEYTIER_E_TOKEN, "token '%s': CKA_EC_POINT: %s",
                              tok->label, kt_ckr_name(rv, nb))
                     : kt_approver_point_spki(point, pt.ulValueLen, j->spki,
                                              &j->spki_len);
    if (e == KEYTIER_OK)
        e = kt_object_uri(&tok->info, j->label, id, KT_APPROVER_ID_BYTES,
                          CKO_PRIVATE_KEY, j->key_uri);
    if (e != KEYTIER_OK) {
        KT_IGNORE_RESULT(kt_p11_destroy_object(tok, s, priv));
        KT_IGNORE_RESULT(kt_p11_destroy_object(tok, s, pub));
    }
    return e;
}

static keytier_err kt_keygen_run(struct kt_tjob *tj)
{
    struct kt_keygen_job *j = (struct kt_keygen_job *)tj;
    char nb[KT_CKR_NAME_MAX];
    struct kt_token *tok;
    keytier_err e = kt_token_find(tj->ctx, j->token_uri, &tok);
    if (e != KEYTIER_OK)
        return e;
    CK_SESSION_HANDLE s;
    CK_RV rv = kt_p11_open_session(tok, &s);
    if (rv != CKR_OK)
        return kt_err(KEYTIER_E_TOKEN, "token '%s': C_OpenSession: %s",
                      tok->label, kt_ckr_name(rv, nb));
    rv = kt_p11_login_as(tok, s, CKU_USER, j->pin);
    bool logged_in = rv == CKR_OK;
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        e = kt_err(KEYTIER_E_LOGIN, "token '%s': C_Login: %s", tok->label,
                   kt_ckr_name(rv, nb));
    else
        e = kt_keygen_here(j, tok, s);
    if (logged_in)
        KT_IGNORE_RESULT(kt_p11_logout(tok, s));
    KT_IGNORE_RESULT(kt_p11_close_session(tok, s));
    return e;
}

KEYTIER_API keytier_err keytier_approver_keygen(
    keytier_ctx *ctx, const char *token_uri, const char *pin, const char *label,
    uint8_t *spki, size_t *len, char key_uri[KEYTIER_URI_MAX])
{
    kt_err_clear();
    if (ctx == NULL || !kt_text_ok(token_uri, KEYTIER_URI_MAX - 1) ||
        pin == NULL || !kt_text_ok(label, KEYTIER_LABEL_MAX) || spki == NULL ||
        len == NULL || key_uri == NULL)
        return kt_err(KEYTIER_E_ARGS,
                      "keytier_approver_keygen: token URI, "
                      "PIN, a label of 1 to %d bytes and "
                      "room for the key",
                      KEYTIER_LABEL_MAX);
    keytier_err e = kt_uri_check("approver token", token_uri);
    if (e != KEYTIER_OK)
        return e;
    struct kt_keygen_job *j = kt_tjob_new(ctx, sizeof *j, kt_keygen_run);
    if (j == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    j->base.cleanup = kt_keygen_cleanup;
    kt_strlcpy(j->token_uri, token_uri, sizeof j->token_uri);
    kt_strlcpy(j->label, label, sizeof j->label);
    j->pin = kt_secret_from(pin, strlen(pin));
    e = j->pin == NULL
            ? kt_err(KEYTIER_E_NOMEM, NULL)
            : kt_tjob_run(&j->base, "approver key generation", token_uri,
                          ctx->cfg.avail.admin_deadline_ms);
    if (e == KEYTIER_OK && j->spki_len > *len)
        e = kt_err(KEYTIER_E_BUFFER, "approver public key: %zu bytes",
                   j->spki_len);
    if (e == KEYTIER_OK) {
        memcpy(spki, j->spki, j->spki_len);
        *len = j->spki_len;
        kt_strlcpy(key_uri, j->key_uri, KEYTIER_URI_MAX);
    }
    kt_tjob_put(&j->base);
    return e;
}
