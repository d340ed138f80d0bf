/* Attacks on private-key wrap and unwrap (SECURITY.md, "Private-key
 * export"): a tampered blob that would plant a key of the attacker's
 * making, a non-extractable key wrapped anyway, wrap-then-decrypt of a
 * private key, a private key's blob unwrapped as a readable secret key,
 * and an unwrapped key posing as one that never left the token. An attack
 * succeeds only if an object appears, or the private key is recovered (the
 * recovered bytes parse, with OpenSSL, as the target's key). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sec.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY, c_priv = CKO_PRIVATE_KEY;
static CK_KEY_TYPE k_ec = CKK_EC, k_generic = CKK_GENERIC_SECRET;
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("privkeys");
    s = kt_test_user_session(slot);
}

/* A setup step the attack needs: on SoftHSM2 a missing feature makes the
 * attack not applicable; on keytier it must work. */
#define SETUP(call)                                                            \
    do {                                                                       \
        CK_RV setup_rv_ = (call);                                              \
        if (setup_rv_ != CKR_OK) {                                             \
            if (kt_test_is_softhsm()) {                                        \
                char why_[200];                                                \
                snprintf(why_, sizeof(why_), "%s: 0x%lx", #call,               \
                         (unsigned long)setup_rv_);                            \
                SEC_NA(why_);                                                  \
                return;                                                        \
            }                                                                  \
            ck_abort_msg("%s failed: 0x%lx", #call, (unsigned long)setup_rv_); \
        }                                                                      \
    } while (0)

/* A P-256 pair; the private half sensitive, extractable as asked (NULL:
 * the template leaves CKA_EXTRACTABLE out). */
static CK_RV ec_pair(const CK_BBOOL *extractable, CK_OBJECT_HANDLE *pub,
                     CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                         {CKA_TOKEN, &no, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_SIGN, &yes, 1},
                         {CKA_SENSITIVE, &yes, 1},
                         {CKA_TOKEN, &no, 1},
                         {CKA_EXTRACTABLE, (void *)extractable, 1}};
    return P->C_GenerateKeyPair(s, &m, pt, N(pt), vt,
                                extractable != NULL ? 4 : 3, pub, priv);
}

static CK_RV gen_aes(CK_ULONG len, const CK_ATTRIBUTE *u, CK_ULONG n,
                     CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[12] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                          {CKA_TOKEN, &no, 1}};
    CK_ULONG k = 2;
    for (CK_ULONG i = 0; i < n && k < N(t); i++)
        t[k++] = u[i];
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    return P->C_GenerateKey(s, &m, t, k, out);
}

static CK_ULONG count_objects(void)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, h, N(h), &n));
    CK(P->C_FindObjectsFinal(s));
    return n;
}

/* The attacker's proof: the bytes are a PrivateKeyInfo of the target pair
 * (its public point, read from the public half, matches). */
static bool recovered(CK_OBJECT_HANDLE pub, const unsigned char *v, size_t len)
{
    const unsigned char *p = v;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    EVP_PKEY *k = p8 != NULL ? EVP_PKCS82PKEY(p8) : NULL;
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (k == NULL)
        return false;
    unsigned char point[200], mine[200];
    CK_ATTRIBUTE a = {CKA_EC_POINT, point, sizeof(point)};
    size_t ml = 0;
    bool same = P->C_GetAttributeValue(s, pub, &a, 1) == CKR_OK &&
                EVP_PKEY_get_octet_string_param(k, "encoded-pub-key", mine,
                                                sizeof(mine), &ml) == 1 &&
                a.ulValueLen == ml + 2 && memcmp(point + 2, mine, ml) == 0;
    EVP_PKEY_free(k);
    return same;
}

/* ---- tampered blobs --------------------------------------------------- */

/* Every single-bit change of a wrapped private key (RFC 5649; and GCM,
 * its IV included, on keytier) is refused and makes no object: nobody
 * plants a key by editing a blob. */
START_TEST(test_tampered_blob_makes_no_object)
{
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    CK_OBJECT_HANDLE wk, pub, priv, u;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &wk));
    SETUP(ec_pair(&yes, &pub, &priv));
    unsigned char iv[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM mechs[] = {{CKM_AES_KEY_WRAP_PAD, NULL, 0},
                            {CKM_AES_GCM, &gcm, sizeof(gcm)}};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_priv, sizeof(c_priv)},
                        {CKA_KEY_TYPE, &k_ec, sizeof(k_ec)},
                        {CKA_TOKEN, &no, 1}};
    CK_ULONG before = count_objects(), accepted = 0, tried = 0;
    for (size_t i = 0; i < N(mechs); i++) {
        unsigned char blob[512];
        CK_ULONG bl = sizeof(blob);
        memset(iv, 0, sizeof(iv));
        if (P->C_WrapKey(s, &mechs[i], wk, priv, blob, &bl) != CKR_OK)
            continue; /* SoftHSM2: no GCM wrapping */
        /* the untouched blob comes in: the attack below can succeed */
        SETUP(P->C_UnwrapKey(s, &mechs[i], wk, blob, bl, t, N(t), &u));
        CK(P->C_DestroyObject(s, u));
        size_t span = bl + (i == 1 ? sizeof(iv) : 0);
        for (size_t pos = 0; pos < span; pos++) {
            unsigned char *b = pos < bl ? &blob[pos] : &iv[pos - bl];
            *b ^= (unsigned char)(1u << (pos % 8));
            u = CK_INVALID_HANDLE;
            if (P->C_UnwrapKey(s, &mechs[i], wk, blob, bl, t, N(t), &u) ==
                CKR_OK)
                accepted++;
            *b ^= (unsigned char)(1u << (pos % 8));
            tried++;
        }
        /* and cut short */
        if (P->C_UnwrapKey(s, &mechs[i], wk, blob, bl - 8, t, N(t), &u) ==
            CKR_OK)
            accepted++;
    }
    ck_assert_uint_ge(tried, 64);
    SEC_REFUSED(accepted == 0 && count_objects() == before,
                "a tampered private-key blob unwraps into an object");
}
END_TEST

/* ---- non-extractable keys --------------------------------------------- */

/* A private key made non-extractable (or with no CKA_EXTRACTABLE in its
 * template) leaves under no wrap mechanism, and cannot be made extractable
 * first. */
START_TEST(test_wrap_unextractable)
{
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    CK_OBJECT_HANDLE wk, pub, fixed, dflt;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &wk));
    SETUP(ec_pair(&no, &pub, &fixed));
    SETUP(ec_pair(NULL, &pub, &dflt));
    unsigned char iv[16] = {0}, gcm_iv[12] = {0};
    CK_GCM_PARAMS gcm = {gcm_iv, sizeof(gcm_iv), 96, NULL, 0, 128};
    CK_MECHANISM mechs[] = {{CKM_AES_KEY_WRAP_KWP, NULL, 0},
                            {CKM_AES_KEY_WRAP_PAD, NULL, 0},
                            {CKM_AES_KEY_WRAP, NULL, 0},
                            {CKM_AES_GCM, &gcm, sizeof(gcm)},
                            {CKM_AES_CBC_PAD, iv, sizeof(iv)}};
    CK_OBJECT_HANDLE targets[] = {fixed, dflt};
    CK_ATTRIBUTE up = {CKA_EXTRACTABLE, &yes, 1};
    int wrapped = 0;
    for (size_t t = 0; t < N(targets); t++) {
        if (P->C_SetAttributeValue(s, targets[t], &up, 1) == CKR_OK)
            wrapped++;
        for (size_t i = 0; i < N(mechs); i++) {
            unsigned char blob[512];
            CK_ULONG bl = sizeof(blob);
            memset(gcm_iv, 0, sizeof(gcm_iv));
            CK_RV rv = P->C_WrapKey(s, &mechs[i], wk, targets[t], blob, &bl);
            if (rv == CKR_OK)
                wrapped++;
            else if (!kt_test_is_softhsm() && t == 0)
                ck_assert_uint_eq(rv, CKR_KEY_UNEXTRACTABLE);
        }
    }
    SEC_REFUSED(wrapped == 0, "a non-extractable private key is wrapped");
}
END_TEST

/* ---- wrap-then-decrypt ------------------------------------------------- */

/* Wrap-then-decrypt of a sensitive, extractable private key: under a key
 * given both roles by its template, one with no usage attributes, or a
 * wrap key given CKA_DECRYPT afterwards. True when the PrivateKeyInfo
 * comes out in the clear. */
static bool private_wrap_then_decrypt(CK_OBJECT_HANDLE pub,
                                      CK_OBJECT_HANDLE priv)
{
    CK_ATTRIBUTE both[] = {{CKA_WRAP, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1}};
    CK_OBJECT_HANDLE keys[3], k;
    size_t nkeys = 0;
    if (gen_aes(32, both, N(both), &k) == CKR_OK)
        keys[nkeys++] = k;
    if (gen_aes(32, NULL, 0, &k) == CKR_OK)
        keys[nkeys++] = k;
    if (gen_aes(32, wrap_only, N(wrap_only), &k) == CKR_OK) {
        keys[nkeys++] = k;
        CK_ATTRIBUTE dec = {CKA_DECRYPT, &yes, 1};
        (void)P->C_SetAttributeValue(s, k, &dec, 1);
    }
    CK_MECHANISM mechs[] = {{CKM_AES_KEY_WRAP_PAD, NULL, 0},
                            {CKM_AES_KEY_WRAP_KWP, NULL, 0}};
    for (size_t j = 0; j < nkeys; j++) {
        for (size_t i = 0; i < N(mechs); i++) {
            unsigned char w[512], p[512];
            CK_ULONG wl = sizeof(w), pl = sizeof(p);
            if (P->C_WrapKey(s, &mechs[i], keys[j], priv, w, &wl) != CKR_OK)
                continue;
            if (P->C_DecryptInit(s, &mechs[i], keys[j]) == CKR_OK &&
                P->C_Decrypt(s, w, wl, p, &pl) == CKR_OK &&
                recovered(pub, p, pl))
                return true;
        }
    }
    return false;
}

/* Without legacy_mechanisms no key has both roles: not by its template,
 * not afterwards, and a wrap-only key does not decrypt its blob. */
START_TEST(test_private_wrap_then_decrypt)
{
    CK_OBJECT_HANDLE pub, priv;
    SETUP(ec_pair(&yes, &pub, &priv));
    SEC_REFUSED(!private_wrap_then_decrypt(pub, priv),
                "a private key wrapped, then the blob decrypted with the "
                "wrapping key");
}
END_TEST

/* The control: with legacy_mechanisms = yes one key may hold both roles,
 * and the same attack recovers the key (so the test above can fail). */
START_TEST(test_private_wrap_then_decrypt_with_legacy)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("keytier's legacy_mechanisms switch");
        return;
    }
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("privkeys"));
    CK_OBJECT_HANDLE pub, priv;
    SETUP(ec_pair(&yes, &pub, &priv));
    ck_assert_msg(private_wrap_then_decrypt(pub, priv),
                  "the attack finds nothing even with legacy_mechanisms");
}
END_TEST

/* A private key's blob unwrapped as a generic secret key that is neither
 * sensitive nor non-extractable: its CKA_VALUE would be the PrivateKeyInfo
 * (class confusion; it gets past an unwrapping key's CKA_UNWRAP_TEMPLATE
 * that admits only readable secret keys). */
START_TEST(test_private_blob_as_secret)
{
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    CK_OBJECT_HANDLE wk, pub, priv, u = CK_INVALID_HANDLE;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &wk));
    SETUP(ec_pair(&yes, &pub, &priv));
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char blob[512], v[512];
    CK_ULONG bl = sizeof(blob);
    SETUP(P->C_WrapKey(s, &m, wk, priv, blob, &bl));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_generic, sizeof(k_generic)},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_TOKEN, &no, 1}};
    CK_RV rv = P->C_UnwrapKey(s, &m, wk, blob, bl, t, N(t), &u);
    CK_ATTRIBUTE a = {CKA_VALUE, v, sizeof(v)};
    bool read = rv == CKR_OK && P->C_GetAttributeValue(s, u, &a, 1) == CKR_OK &&
                recovered(pub, v, a.ulValueLen);
    SEC_REFUSED(!read, "a private key's blob unwrapped as a readable "
                       "generic secret");
    if (!kt_test_is_softhsm())
        ck_assert_uint_eq(rv, CKR_WRAPPED_KEY_INVALID);
}
END_TEST

/* ---- unwrapped keys are not "never extracted" ------------------------ */

/* An unwrapped private key has been outside the token: its
 * CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE and CKA_LOCAL are false
 * whatever its template asks, and cannot be set afterwards, so it cannot
 * pass for a key generated in the token and never exported. */
START_TEST(test_unwrapped_poses_as_never_extracted)
{
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    CK_OBJECT_HANDLE wk, pub, priv, u;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &wk));
    SETUP(ec_pair(&yes, &pub, &priv));
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char blob[512];
    CK_ULONG bl = sizeof(blob);
    SETUP(P->C_WrapKey(s, &m, wk, priv, blob, &bl));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_priv, sizeof(c_priv)},
                        {CKA_KEY_TYPE, &k_ec, sizeof(k_ec)},
                        {CKA_SENSITIVE, &yes, 1},
                        {CKA_EXTRACTABLE, &no, 1},
                        {CKA_TOKEN, &no, 1},
                        {CKA_NEVER_EXTRACTABLE, &yes, 1}};
    int posed = 0;
    /* asking for it in the template */
    for (CK_ATTRIBUTE_TYPE ty = 0; ty < 3; ty++) {
        t[5].type = ty == 0   ? CKA_NEVER_EXTRACTABLE
                    : ty == 1 ? CKA_ALWAYS_SENSITIVE
                              : CKA_LOCAL;
        if (P->C_UnwrapKey(s, &m, wk, blob, bl, t, N(t), &u) == CKR_OK) {
            CK_BBOOL b = CK_FALSE;
            CK_ATTRIBUTE q = {t[5].type, &b, 1};
            if (P->C_GetAttributeValue(s, u, &q, 1) == CKR_OK && b)
                posed++;
        }
    }
    /* reading what a plain unwrap gives, then setting it */
    SETUP(P->C_UnwrapKey(s, &m, wk, blob, bl, t, 5, &u));
    CK_ATTRIBUTE_TYPE types[] = {CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE,
                                 CKA_LOCAL};
    for (size_t i = 0; i < N(types); i++) {
        CK_BBOOL b = CK_TRUE;
        CK_ATTRIBUTE q = {types[i], &b, 1};
        if (P->C_GetAttributeValue(s, u, &q, 1) != CKR_OK || b)
            posed++;
        CK_ATTRIBUTE set = {types[i], &yes, 1};
        if (P->C_SetAttributeValue(s, u, &set, 1) == CKR_OK)
            posed++;
    }
    SEC_REFUSED(posed == 0, "an unwrapped private key reads as never "
                            "extractable, always sensitive or local");
}
END_TEST

static Suite *privkeys_suite(void)
{
    Suite *su = suite_create("privkeys");
    TCase *tc = tcase_create("privkeys");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_tampered_blob_makes_no_object);
    tcase_add_test(tc, test_wrap_unextractable);
    tcase_add_test(tc, test_private_wrap_then_decrypt);
    tcase_add_test(tc, test_private_wrap_then_decrypt_with_legacy);
    tcase_add_test(tc, test_private_blob_as_secret);
    tcase_add_test(tc, test_unwrapped_poses_as_never_extracted);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(privkeys_suite)
