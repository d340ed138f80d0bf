/*
 * Wrap and unwrap under a resolved root key (root.c), and the wrap
 * mechanisms recorded with each wrapped copy.  A key to wrap enters the
 * token as a session object that is destroyed after; an unwrapped key is
 * read out of one the same way.
 */
#include <string.h>

#include "ckr_class.h"
#include "p11call.h"

static const char *const kt_mech_names[] = {
    [KT_WRAP_AES_KWP] = "aes-key-wrap-pad",
    [KT_WRAP_RSA_OAEP_SHA256] = "rsa-oaep-sha256",
    [KT_WRAP_RSA_OAEP_SHA1] = "rsa-oaep-sha1",
};

const char *kt_wrap_mech_name(enum kt_wrap_mech m)
{
    return kt_mech_names[m];
}

bool kt_wrap_mech_parse(const char *s, enum kt_wrap_mech *m)
{
    for (size_t i = 0; i < sizeof kt_mech_names / sizeof kt_mech_names[0]; i++)
        if (!strcmp(s, kt_mech_names[i])) {
            *m = (enum kt_wrap_mech)i;
            return true;
        }
    return false;
}

static void kt_mech_fill(enum kt_wrap_mech m, CK_MECHANISM *mech,
                         CK_RSA_PKCS_OAEP_PARAMS *oaep)
{
    memset(oaep, 0, sizeof *oaep);
    oaep->source = CKZ_DATA_SPECIFIED;
    switch (m) {
    case KT_WRAP_AES_KWP:
        /* RFC 5649, 0x210A as SoftHSM2 and pkcs11-tool use it. */
        *mech = (CK_MECHANISM){CKM_AES_KEY_WRAP_PAD, NULL, 0};
        return;
    case KT_WRAP_RSA_OAEP_SHA256:
        oaep->hashAlg = CKM_SHA256;
        oaep->mgf = CKG_MGF1_SHA256;
        break;
    case KT_WRAP_RSA_OAEP_SHA1:
        oaep->hashAlg = CKM_SHA_1;
        oaep->mgf = CKG_MGF1_SHA1;
        break;
    }
    *mech = (CK_MECHANISM){CKM_RSA_PKCS_OAEP, oaep, sizeof *oaep};
}

keytier_err kt_root_wrap(const struct kt_root *root, CK_SESSION_HANDLE s,
                         enum kt_wrap_mech m, const kt_secret *key,
                         uint8_t *out, size_t *out_len, CK_RV *rvp)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &no, sizeof no},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_VALUE, (void *)kt_secret_cdata(key), kt_secret_len(key)},
    };
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_MECHANISM mech;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    keytier_err e = KEYTIER_OK;
    CK_RV rv = kt_p11_create_object(root->tok, s, tmpl, 6, &obj);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_CreateObject: %s",
                   root->tok->label, kt_p11_rv_text(rv));
        goto out;
    }
    kt_mech_fill(m, &mech, &oaep);
    CK_ULONG len = *out_len;
    rv = kt_p11_wrap_key(root->tok, s, &mech, root->pub, obj, out, &len);
    if (rv != CKR_OK) {
        e = kt_err(rv == CKR_MECHANISM_INVALID ||
                           rv == CKR_MECHANISM_PARAM_INVALID ||
                           rv == CKR_ARGUMENTS_BAD
                       ? KEYTIER_E_MECHANISM
                       : KEYTIER_E_TOKEN,
                   "token '%s': C_WrapKey with %s: %s", root->tok->label,
                   kt_wrap_mech_name(m), kt_p11_rv_text(rv));
        goto out;
    }
    *out_len = len;
out:
    if (obj != CK_INVALID_HANDLE)
        KT_IGNORE_RESULT(kt_p11_destroy_object(root->tok, s, obj));
    *rvp = rv;
    return e;
}

keytier_err kt_root_unwrap(const struct kt_root *root, CK_SESSION_HANDLE s,
                           enum kt_wrap_mech m, const uint8_t *wrapped,
                           size_t wrapped_len, kt_secret **out, CK_RV *rvp)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &no, sizeof no},         {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
    };
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_MECHANISM mech;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    kt_secret *val = NULL;
    keytier_err e = KEYTIER_OK;
    kt_mech_fill(m, &mech, &oaep);
    CK_RV rv = kt_p11_unwrap_key(root->tok, s, &mech, root->key, wrapped,
                                 wrapped_len, tmpl, 5, &obj);
    /* The token has just found the key and read its attributes on this
     * session: what a failure of the unwrap itself means is the table's
     * (common/ckr.c, in_unwrap). */
    if (kt_ckr_unwrap_outcome(rv) == KT_CKR_BLOB_REFUSED) {
        e = kt_err(KEYTIER_E_TOKEN,
                   "token '%s': C_UnwrapKey: %s: the key refused the wrapped "
                   "copy",
                   root->tok->label, kt_p11_rv_text(rv));
        rv = KT_CKR_BLOB_REFUSED;
        goto out;
    }
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': C_UnwrapKey: %s",
                   root->tok->label, kt_p11_rv_text(rv));
        goto out;
    }
    val = kt_secret_new(64);
    if (val == NULL) {
        e = kt_err(KEYTIER_E_NOMEM, NULL);
        goto out;
    }
    CK_ATTRIBUTE va[] = {{CKA_VALUE, kt_secret_data(val), 64}};
    rv = kt_p11_get_attributes(root->tok, s, obj, va, 1);
    if (rv != CKR_OK) {
        e = kt_err(KEYTIER_E_TOKEN, "token '%s': reading unwrapped key: %s",
                   root->tok->label, kt_p11_rv_text(rv));
        goto out;
    }
    if (va[0].ulValueLen != KT_KEY_SIZE) {
        e = kt_err(KEYTIER_E_AUTH, "token '%s': unwrapped key has %lu bytes",
                   root->tok->label, (unsigned long)va[0].ulValueLen);
        goto out;
    }
    kt_secret_truncate(val, KT_KEY_SIZE);
    *out = val;
    val = NULL;
out:
    if (obj != CK_INVALID_HANDLE)
        KT_IGNORE_RESULT(kt_p11_destroy_object(root->tok, s, obj));
    kt_secret_free(val);
    *rvp = rv;
    return e;
}
