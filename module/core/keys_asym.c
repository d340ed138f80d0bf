/* C_GenerateKeyPair and C_DeriveKey (CKM_ECDH1_DERIVE,
 * CKM_ECDH1_COFACTOR_DERIVE, CKM_DH_PKCS_DERIVE) behind p11_keys.c:
 * the asymmetric counterparts of keys.c. Key material is made with no lock
 * held; both halves of a pair are stored, or neither. */
#include "kt_asym.h"

#include <stdlib.h>
#include <string.h>

/* CKA_CLASS and CKA_KEY_TYPE of one half: given values must agree. */
static KT_NODISCARD CK_RV force_ulong(kt_attrs *a, CK_ATTRIBUTE_TYPE type,
                                      CK_ULONG want)
{
    CK_ULONG x = 0;
    if (kt_attrs_has(a, type)) {
        CK_RV rv = kt_attrs_get_ulong(a, type, &x);
        if (rv != CKR_OK)
            return rv;
        if (x != want)
            return CKR_TEMPLATE_INCONSISTENT;
    }
    return kt_attrs_set_ulong(a, type, want);
}

CK_RV kt_keys_generate_pair(struct kt_session *s, const CK_MECHANISM *mech,
                            const CK_ATTRIBUTE *pub_t, CK_ULONG pub_n,
                            const CK_ATTRIBUTE *priv_t, CK_ULONG priv_n,
                            CK_OBJECT_HANDLE *pub_h, CK_OBJECT_HANDLE *priv_h)
{
    /* GnuTLS 3.7 (Debian 12's p11tool and certtool --generate-privkey
     * ed25519) asks for an Ed25519 pair with the signature mechanism
     * CKM_EDDSA: served as the Edwards generator it means, which the new
     * keys name as their CKA_KEY_GEN_MECHANISM. */
    CK_MECHANISM edwards = {CKM_EC_EDWARDS_KEY_PAIR_GEN, mech->pParameter,
                            mech->ulParameterLen};
    if (mech->mechanism == CKM_EDDSA)
        mech = &edwards;
    const struct kt_mech *m = kt_mech_find(mech->mechanism);
    kt_attrs pub, priv;
    CK_KEY_TYPE kt;
    CK_RV rv;

    if (m == NULL || !(m->info.flags & CKF_GENERATE_KEY_PAIR))
        return CKR_MECHANISM_INVALID;
    kt = m->key_types[0];
    kt_attrs_init(&pub);
    kt_attrs_init(&priv);
    rv = kt_attrs_from_template(&pub, pub_t, pub_n);
    if (rv == CKR_OK)
        rv = kt_attrs_from_template(&priv, priv_t, priv_n);
    if (rv == CKR_OK)
        rv = force_ulong(&pub, CKA_CLASS, CKO_PUBLIC_KEY);
    if (rv == CKR_OK)
        rv = force_ulong(&priv, CKA_CLASS, CKO_PRIVATE_KEY);
    if (rv == CKR_OK)
        rv = force_ulong(&pub, CKA_KEY_TYPE, kt);
    if (rv == CKR_OK)
        rv = force_ulong(&priv, CKA_KEY_TYPE, kt);
    /* The material and every attribute derived from it join the templates
     * before the schema completes and checks them as generated objects. */
    if (rv == CKR_OK)
        rv = kt_asym_generate_pair(mech, &pub, &priv);
    if (rv == CKR_OK)
        rv = kt_object_create(s, &pub, KT_CREATE_GENERATE, NULL, mech, pub_h);
    if (rv == CKR_OK) {
        rv = kt_object_create(s, &priv, KT_CREATE_GENERATE, NULL, mech, priv_h);
        if (rv != CKR_OK) {
            /* Neither half survives a failure of the other (whatever the
             * public template said about CKA_DESTROYABLE). */
            if (kt_token_destroy_object(s->token, *pub_h) != CKR_OK)
                kt_log(KT_LOG_ERROR, "C_GenerateKeyPair: cannot remove the "
                                     "public half of a failed pair");
            *pub_h = CK_INVALID_HANDLE;
        }
    }
    kt_attrs_clear(&pub);
    kt_attrs_clear(&priv);
    return rv;
}

CK_RV kt_keys_derive(struct kt_session *s, const CK_MECHANISM *mech,
                     CK_OBJECT_HANDLE base, const CK_ATTRIBUTE *t, CK_ULONG n,
                     CK_OBJECT_HANDLE *out)
{
    const struct kt_mech *m = kt_mech_find(mech->mechanism);
    struct kt_key k;
    kt_attrs a;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG len = 0;
    unsigned char *secret = NULL;
    size_t secret_len = 0;
    CK_RV rv;

    if (m == NULL || !(m->info.flags & CKF_DERIVE) ||
        (mech->mechanism != CKM_ECDH1_DERIVE &&
         mech->mechanism != CKM_ECDH1_COFACTOR_DERIVE &&
         mech->mechanism != CKM_DH_PKCS_DERIVE))
        return CKR_MECHANISM_INVALID;
    memset(&k, 0, sizeof(k));
    kt_attrs_init(&k.attrs);
    kt_attrs_init(&a);
    rv = kt_attrs_from_template(&a, t, n);
    /* The base key's CKA_DERIVE_TEMPLATE is forced before the checks, so
     * they see the attributes the key will have. */
    if (rv == CKR_OK)
        rv = kt_key_snapshot(s->token, base, CKA_DERIVE, &k);
    if (rv == CKR_OK)
        rv = kt_keys_apply_template(&k, CKA_DERIVE_TEMPLATE, &a);
    if (rv == CKR_OK && kt_keys_public_to_private(&k, &a))
        rv = s->token->login == CKU_USER ? CKR_TEMPLATE_INCONSISTENT
                                         : CKR_USER_NOT_LOGGED_IN;
    if (rv != CKR_OK)
        goto out;
    if (kt_attrs_has(&a, CKA_CLASS)) {
        rv = kt_attrs_get_ulong(&a, CKA_CLASS, &cls);
        if (rv == CKR_OK && cls != CKO_SECRET_KEY)
            rv = CKR_TEMPLATE_INCONSISTENT;
    }
    if (rv == CKR_OK && kt_attrs_has(&a, CKA_KEY_TYPE))
        rv = kt_attrs_get_ulong(&a, CKA_KEY_TYPE, &kt);
    if (rv == CKR_OK && kt != CKK_AES && kt != CKK_GENERIC_SECRET)
        rv = CKR_TEMPLATE_INCONSISTENT;
    if (rv == CKR_OK && kt_attrs_has(&a, CKA_VALUE_LEN))
        rv = kt_attrs_get_ulong(&a, CKA_VALUE_LEN, &len);
    /* An AES key needs its length; a generic secret takes all of Z (or,
     * through a KDF, the hash's length). */
    if (rv == CKR_OK && kt == CKK_AES && len == 0)
        rv = CKR_TEMPLATE_INCOMPLETE;
    if (rv == CKR_OK && kt_attrs_has(&a, CKA_VALUE))
        rv = CKR_TEMPLATE_INCONSISTENT;
    if (rv != CKR_OK)
        goto out;
    rv = kt_op_check_key(m, &k);
    if (rv == CKR_OK)
        rv = kt_asym_ecdh(mech, &k, len, &secret, &secret_len);
    if (rv != CKR_OK)
        goto out;
    rv = kt_attrs_set_ulong(&a, CKA_CLASS, cls);
    if (rv == CKR_OK)
        rv = kt_attrs_set_ulong(&a, CKA_KEY_TYPE, kt);
    /* CKA_VALUE_LEN is the token's to set on a derived key. */
    kt_attrs_remove(&a, CKA_VALUE_LEN);
    if (rv == CKR_OK)
        rv = kt_attrs_set(&a, CKA_VALUE, secret, secret_len);
    if (rv == CKR_OK)
        rv = kt_object_create(s, &a, KT_CREATE_DERIVE, NULL, NULL, out);
out:
    kt_free_secret(secret, secret_len);
    kt_key_clear(&k);
    kt_attrs_clear(&a);
    return rv;
}
