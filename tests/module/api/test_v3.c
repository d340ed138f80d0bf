/* PKCS#11 3.0: C_GetInterfaceList / C_GetInterface as an application finds
 * them (dlsym on the module), the "PKCS 11" interface in versions 3.0 and
 * 2.40, C_GetInfo per interface, and the 3.0 list's functions: message
 * encryption with AES-GCM checked against OpenSSL. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "harness.h"
#include "pkcs11v3.h"

static CK_C_GetInterfaceList get_list;
static CK_C_GetInterface get_iface;

static void setup(void)
{
    kt_test_setup();
    void *h = dlopen(getenv("KT_MODULE"), RTLD_NOW | RTLD_LOCAL);
    ck_assert_ptr_nonnull(h);
    get_list = (CK_C_GetInterfaceList)dlsym(h, "C_GetInterfaceList");
    get_iface = (CK_C_GetInterface)dlsym(h, "C_GetInterface");
    ck_assert_msg(get_list != NULL && get_iface != NULL,
                  "C_GetInterfaceList / C_GetInterface not exported");
    CK(P->C_Initialize(NULL));
}

static const CK_VERSION *version_of(const CK_INTERFACE *i)
{
    return (const CK_VERSION *)i->pFunctionList;
}

/* The 3.0 list, from C_GetInterface("PKCS 11", 3.0). */
static CK_FUNCTION_LIST_3_0_PTR list_3_0(void)
{
    CK_VERSION v = {3, 0};
    CK_INTERFACE_PTR i = NULL;
    CK(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v, &i, 0));
    return i->pFunctionList;
}

START_TEST(test_interface_list)
{
    CK_ULONG n = 0;
    /* Like C_GetFunctionList: before C_Initialize too. */
    CK(P->C_Finalize(NULL));
    RV(CKR_ARGUMENTS_BAD, get_list(NULL, NULL));
    CK(get_list(NULL, &n));
    ck_assert_uint_eq(n, 2);
    CK_INTERFACE list[4];
    CK_ULONG small = 1;
    RV(CKR_BUFFER_TOO_SMALL, get_list(list, &small));
    ck_assert_uint_eq(small, 2);
    n = 4;
    CK(get_list(list, &n));
    ck_assert_uint_eq(n, 2);
    bool v30 = false, v240 = false;
    for (CK_ULONG i = 0; i < n; i++) {
        ck_assert_str_eq((const char *)list[i].pInterfaceName, "PKCS 11");
        ck_assert_uint_eq(list[i].flags, 0); /* not fork safe */
        const CK_VERSION *v = version_of(&list[i]);
        v30 |= v->major == 3 && v->minor == 0;
        v240 |= v->major == 2 && v->minor == 40;
    }
    ck_assert(v30 && v240);
}
END_TEST

START_TEST(test_get_interface)
{
    CK_INTERFACE_PTR i = NULL;
    RV(CKR_ARGUMENTS_BAD, get_iface(NULL, NULL, NULL, 0));
    /* No name, no version: the default, 3.0. */
    CK(get_iface(NULL, NULL, &i, 0));
    ck_assert_str_eq((const char *)i->pInterfaceName, "PKCS 11");
    ck_assert_uint_eq(version_of(i)->major, 3);
    ck_assert_uint_eq(version_of(i)->minor, 0);
    CK(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &i, 0));
    ck_assert_uint_eq(version_of(i)->major, 3);
    /* 2.40: the list C_GetFunctionList returns. */
    CK_VERSION v240 = {2, 40};
    CK(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &i, 0));
    ck_assert_ptr_eq(i->pFunctionList, P);
    CK(get_iface(NULL, &v240, &i, 0));
    ck_assert_ptr_eq(i->pFunctionList, P);
    /* No such name, version or flags. */
    CK_INTERFACE_PTR none = NULL;
    RV(CKR_ARGUMENTS_BAD,
       get_iface((CK_UTF8CHAR_PTR) "Vendor X", NULL, &none, 0));
    RV(CKR_ARGUMENTS_BAD, get_iface((CK_UTF8CHAR_PTR) "PKCS", NULL, &none, 0));
    CK_VERSION v31 = {3, 1};
    RV(CKR_ARGUMENTS_BAD,
       get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v31, &none, 0));
    RV(CKR_ARGUMENTS_BAD, get_iface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &none,
                                    CKF_INTERFACE_FORK_SAFE));
    ck_assert_ptr_null(none);
}
END_TEST

START_TEST(test_info_per_interface)
{
    CK_FUNCTION_LIST_3_0_PTR f = list_3_0();
    ck_assert_uint_eq(f->version.major, 3);
    ck_assert_uint_eq(f->version.minor, 0);
    ck_assert_uint_eq(P->version.major, 2);
    ck_assert_uint_eq(P->version.minor, 40);
    /* One module behind both lists. */
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED, f->C_Initialize(NULL));
    CK(f->C_Finalize(NULL));
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, P->C_Finalize(NULL));
    CK(f->C_Initialize(NULL));
    CK_INFO info;
    CK(f->C_GetInfo(&info));
    ck_assert_uint_eq(info.cryptokiVersion.major, 3);
    ck_assert_uint_eq(info.cryptokiVersion.minor, 0);
    /* A 2.40 caller is told 2.40. */
    CK(P->C_GetInfo(&info));
    ck_assert_uint_eq(info.cryptokiVersion.major, 2);
    ck_assert_uint_eq(info.cryptokiVersion.minor, 40);
    /* The 3.0 list leads back to the 2.40 one. */
    CK_FUNCTION_LIST_PTR back = NULL;
    CK(f->C_GetFunctionList(&back));
    ck_assert_ptr_eq(back, P);
}
END_TEST

START_TEST(test_login_user)
{
    CK_FUNCTION_LIST_3_0_PTR f = list_3_0();
    CK_SLOT_ID slot = kt_test_new_token("v3");
    CK_SESSION_HANDLE s;
    CK(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    CK_UTF8CHAR_PTR pin = (CK_UTF8CHAR_PTR)USER_PIN;
    CK_ULONG pin_len = strlen(USER_PIN);
    /* This token has no user names. */
    RV(CKR_ARGUMENTS_BAD,
       f->C_LoginUser(s, CKU_USER, pin, pin_len, (CK_UTF8CHAR_PTR) "alice", 5));
    RV(CKR_ARGUMENTS_BAD, f->C_LoginUser(s, CKU_USER, pin, pin_len, NULL, 5));
    RV(CKR_PIN_INCORRECT,
       f->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9, NULL, 0));
    RV(CKR_SESSION_HANDLE_INVALID,
       f->C_LoginUser(s + 1000, CKU_USER, pin, pin_len, NULL, 0));
    RV(CKR_USER_TYPE_INVALID, f->C_LoginUser(s, 7, pin, pin_len, NULL, 0));
    CK(f->C_LoginUser(s, CKU_USER, pin, pin_len, NULL, 0));
    CK_SESSION_INFO si;
    CK(f->C_GetSessionInfo(s, &si));
    ck_assert_uint_eq(si.state, CKS_RW_USER_FUNCTIONS);
    RV(CKR_USER_ALREADY_LOGGED_IN,
       f->C_LoginUser(s, CKU_USER, pin, pin_len, (CK_UTF8CHAR_PTR) "", 0));
    CK(f->C_Logout(s));
    /* An empty name is no name. */
    CK(f->C_LoginUser(s, CKU_USER, pin, pin_len, (CK_UTF8CHAR_PTR) "", 0));
    CK(f->C_Logout(s));
    CK(f->C_LoginUser(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), NULL,
                      0));
    CK(f->C_GetSessionInfo(s, &si));
    ck_assert_uint_eq(si.state, CKS_RW_SO_FUNCTIONS);
}
END_TEST

START_TEST(test_session_cancel)
{
    CK_FUNCTION_LIST_3_0_PTR f = list_3_0();
    CK_SLOT_ID slot = kt_test_new_token("v3");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, false, false, "c");
    CK_BYTE iv[16] = {0};
    CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    CK_BYTE data[32] = {1}, out[64];
    CK_ULONG out_len;

    /* Nothing active: nothing to cancel. */
    CK(f->C_SessionCancel(s, CKF_ENCRYPT | CKF_DECRYPT | CKF_DIGEST | CKF_SIGN |
                                 CKF_VERIFY | CKF_FIND_OBJECTS |
                                 CKF_MESSAGE_ENCRYPT | CKF_SIGN_RECOVER));
    RV(CKR_SESSION_HANDLE_INVALID, f->C_SessionCancel(s + 1000, CKF_ENCRYPT));

    CK(f->C_EncryptInit(s, &cbc, k));
    CK(f->C_DecryptInit(s, &cbc, k));
    CK(f->C_DigestInit(s, &sha));
    CK(f->C_FindObjectsInit(s, NULL, 0));
    CK(f->C_SessionCancel(s, CKF_ENCRYPT | CKF_FIND_OBJECTS));
    out_len = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED,
       f->C_Encrypt(s, data, sizeof(data), out, &out_len));
    CK_OBJECT_HANDLE found[4];
    CK_ULONG nf;
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_FindObjects(s, found, 4, &nf));
    /* The others go on. */
    CK(f->C_DigestUpdate(s, data, sizeof(data)));
    CK(f->C_DecryptUpdate(s, out, 0, out, &out_len));
    /* A cancelled operation may be started again. */
    CK(f->C_EncryptInit(s, &cbc, k));
    CK(f->C_SessionCancel(s, CKF_DIGEST | CKF_DECRYPT | CKF_ENCRYPT));
    out_len = sizeof(out);
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_DigestFinal(s, out, &out_len));
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_DecryptFinal(s, out, &out_len));
    CK(f->C_DigestInit(s, &sha));
    CK(f->C_FindObjectsInit(s, NULL, 0));
    CK(f->C_FindObjectsFinal(s));
}
END_TEST

static const unsigned char key32[32] = "message key for AES-256-GCM ok!";

/* An AES-256 key of a known value that may encrypt (use CKA_ENCRYPT) or
 * decrypt (CKA_DECRYPT), not both. */
static CK_OBJECT_HANDLE gcm_key(CK_SESSION_HANDLE s, CK_ATTRIBUTE_TYPE use)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)key32, 32},
        {use, &yes, 1},
        {use == CKA_ENCRYPT ? CKA_DECRYPT : CKA_ENCRYPT, &no, 1}};
    CK_OBJECT_HANDLE k;
    CK(P->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]), &k));
    return k;
}

/* AES-256-GCM with OpenSSL: the independent implementation. */
static void ossl_gcm(bool enc, const unsigned char *iv, int iv_len,
                     const unsigned char *aad, int aad_len,
                     const unsigned char *in, int len, unsigned char *out,
                     unsigned char *tag, int tag_len, bool *ok)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CIPHER *g = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    int n = 0, f = 0;
    bool r =
        EVP_CipherInit_ex2(c, g, NULL, NULL, enc, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, iv_len, NULL) == 1 &&
        EVP_CipherInit_ex2(c, NULL, key32, iv, enc, NULL) == 1 &&
        (aad_len == 0 || EVP_CipherUpdate(c, NULL, &n, aad, aad_len)) &&
        EVP_CipherUpdate(c, out, &n, in, len) == 1 &&
        (enc ||
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, tag_len, tag) == 1) &&
        EVP_CipherFinal_ex(c, out + n, &f) == 1 &&
        (!enc ||
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, tag_len, tag) == 1);
    *ok = r && n + f == len;
    EVP_CIPHER_free(g);
    EVP_CIPHER_CTX_free(c);
}

/* Single-part messages: ciphertext and tag as OpenSSL's, both ways; the
 * module's IV bits; a bad tag. */
START_TEST(test_message_gcm_single_part)
{
    CK_FUNCTION_LIST_3_0_PTR f = list_3_0();
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("v3"));
    CK_OBJECT_HANDLE ek = gcm_key(s, CKA_ENCRYPT);
    CK_OBJECT_HANDLE dk = gcm_key(s, CKA_DECRYPT);
    CK_MECHANISM gcm = {CKM_AES_GCM, NULL, 0};
    CK_MECHANISM_INFO mi;
    CK(f->C_GetMechanismInfo(kt_test_token_slot("v3"), CKM_AES_GCM, &mi));
    ck_assert(mi.flags & CKF_MESSAGE_ENCRYPT);
    ck_assert(mi.flags & CKF_MESSAGE_DECRYPT);
    CK(f->C_MessageEncryptInit(s, &gcm, ek));
    CK(f->C_MessageDecryptInit(s, &gcm, dk));
    unsigned char pt[45] = "three messages under one key, each its IV";
    unsigned char aad[20] = "header";
    for (int i = 0; i < 3; i++) {
        unsigned char iv[12] = {0xca, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        unsigned char tag[16], ct[64], back[64], want[64], wtag[16];
        CK_GCM_MESSAGE_PARAMS p = {iv, 12, 16, CKG_GENERATE_RANDOM, tag, 128};
        CK_ULONG n = 0;
        /* A length query draws no IV. */
        CK(f->C_EncryptMessage(s, &p, sizeof(p), aad, sizeof(aad), pt,
                               sizeof(pt), NULL, &n));
        ck_assert_uint_eq(n, sizeof(pt));
        ck_assert_uint_eq(iv[2] | iv[5] | iv[11], 0);
        n = 3;
        RV(CKR_BUFFER_TOO_SMALL,
           f->C_EncryptMessage(s, &p, sizeof(p), aad, sizeof(aad), pt,
                               sizeof(pt), ct, &n));
        n = sizeof(ct);
        CK(f->C_EncryptMessage(s, &p, sizeof(p), aad, sizeof(aad), pt,
                               sizeof(pt), ct, &n));
        ck_assert_uint_eq(n, sizeof(pt));
        /* The fixed bits stay; the rest is the module's. */
        ck_assert(iv[0] == 0xca && iv[1] == 0xfe);
        bool ok;
        ossl_gcm(true, iv, 12, aad, sizeof(aad), pt, sizeof(pt), want, wtag, 16,
                 &ok);
        ck_assert(ok);
        ck_assert(memcmp(ct, want, sizeof(pt)) == 0);
        ck_assert(memcmp(tag, wtag, 16) == 0);
        CK_GCM_MESSAGE_PARAMS d = {iv, 12, 0, CKG_NO_GENERATE, tag, 128};
        n = sizeof(back);
        CK(f->C_DecryptMessage(s, &d, sizeof(d), aad, sizeof(aad), ct,
                               sizeof(pt), back, &n));
        ck_assert_uint_eq(n, sizeof(pt));
        ck_assert(memcmp(back, pt, n) == 0);
        tag[3] ^= 1;
        n = sizeof(back);
        RV(CKR_ENCRYPTED_DATA_INVALID,
           f->C_DecryptMessage(s, &d, sizeof(d), aad, sizeof(aad), ct,
                               sizeof(pt), back, &n));
    }
    /* OpenSSL's message, a caller IV of 16 bytes and a 96-bit tag. */
    unsigned char iv16[16] = "sixteen byte iv", ct[64], tag[12], back[64];
    bool ok;
    ossl_gcm(true, iv16, 16, NULL, 0, pt, sizeof(pt), ct, tag, 12, &ok);
    ck_assert(ok);
    CK_GCM_MESSAGE_PARAMS d = {iv16, 16, 0, CKG_NO_GENERATE, tag, 96};
    CK_ULONG n = sizeof(back);
    CK(f->C_DecryptMessage(s, &d, sizeof(d), NULL, 0, ct, sizeof(pt), back,
                           &n));
    ck_assert(memcmp(back, pt, sizeof(pt)) == 0);
    CK(f->C_MessageEncryptFinal(s));
    CK(f->C_MessageDecryptFinal(s));
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_MessageEncryptFinal(s));
}
END_TEST

/* A message in parts equals the single-part one; decryption returns
 * nothing before the last part's tag checks. */
START_TEST(test_message_gcm_parts)
{
    CK_FUNCTION_LIST_3_0_PTR f = list_3_0();
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("v3"));
    CK_OBJECT_HANDLE ek = gcm_key(s, CKA_ENCRYPT);
    CK_OBJECT_HANDLE dk = gcm_key(s, CKA_DECRYPT);
    CK_MECHANISM gcm = {CKM_AES_GCM, NULL, 0};
    unsigned char pt[40] = "a message in three parts of some length";
    unsigned char iv[12] = "caller's iv", tag[16], ct[64], want[64], wtag[16];
    CK_GCM_MESSAGE_PARAMS p = {iv, 12, 0, CKG_NO_GENERATE, tag, 128};
    CK(f->C_MessageEncryptInit(s, &gcm, ek));
    CK(f->C_EncryptMessageBegin(s, &p, sizeof(p), (CK_BYTE_PTR) "aad", 3));
    RV(CKR_OPERATION_ACTIVE,
       f->C_EncryptMessageBegin(s, &p, sizeof(p), (CK_BYTE_PTR) "aad", 3));
    CK_ULONG n = 0, off = 0;
    CK(f->C_EncryptMessageNext(s, &p, sizeof(p), pt, 7, NULL, &n, 0));
    ck_assert_uint_eq(n, 7);
    n = sizeof(ct);
    CK(f->C_EncryptMessageNext(s, &p, sizeof(p), pt, 7, ct, &n, 0));
    off += n;
    n = sizeof(ct) - off;
    CK(f->C_EncryptMessageNext(s, &p, sizeof(p), pt + 7, 20, ct + off, &n, 0));
    off += n;
    n = sizeof(ct) - off;
    CK(f->C_EncryptMessageNext(s, &p, sizeof(p), pt + 27, 13, ct + off, &n,
                               CKF_END_OF_MESSAGE));
    off += n;
    ck_assert_uint_eq(off, sizeof(pt));
    bool ok;
    ossl_gcm(true, iv, 12, (const unsigned char *)"aad", 3, pt, sizeof(pt),
             want, wtag, 16, &ok);
    ck_assert(ok && memcmp(ct, want, sizeof(pt)) == 0);
    ck_assert(memcmp(tag, wtag, 16) == 0);
    /* The message ended with its last part. */
    n = sizeof(ct);
    RV(CKR_OPERATION_NOT_INITIALIZED,
       f->C_EncryptMessageNext(s, &p, sizeof(p), pt, 1, ct, &n, 0));

    unsigned char back[64];
    CK(f->C_MessageDecryptInit(s, &gcm, dk));
    CK(f->C_DecryptMessageBegin(s, &p, sizeof(p), (CK_BYTE_PTR) "aad", 3));
    n = sizeof(back);
    CK(f->C_DecryptMessageNext(s, &p, sizeof(p), ct, 30, back, &n, 0));
    ck_assert_uint_eq(n, 0); /* held until the tag checks */
    n = 5;
    RV(CKR_BUFFER_TOO_SMALL,
       f->C_DecryptMessageNext(s, &p, sizeof(p), ct + 30, 10, back, &n,
                               CKF_END_OF_MESSAGE));
    ck_assert_uint_eq(n, sizeof(pt));
    n = sizeof(back);
    CK(f->C_DecryptMessageNext(s, &p, sizeof(p), ct + 30, 10, back, &n,
                               CKF_END_OF_MESSAGE));
    ck_assert_uint_eq(n, sizeof(pt));
    ck_assert(memcmp(back, pt, n) == 0);
    /* A bad tag: nothing comes out, the message ends, the operation
     * stays. */
    tag[0] ^= 0x80;
    CK(f->C_DecryptMessageBegin(s, &p, sizeof(p), (CK_BYTE_PTR) "aad", 3));
    memset(back, 0, sizeof(back));
    n = sizeof(back);
    RV(CKR_ENCRYPTED_DATA_INVALID,
       f->C_DecryptMessageNext(s, &p, sizeof(p), ct, sizeof(pt), back, &n,
                               CKF_END_OF_MESSAGE));
    ck_assert_uint_eq(back[0] | back[7] | back[39], 0);
    CK(f->C_DecryptMessageBegin(s, &p, sizeof(p), NULL, 0));
    /* C_SessionCancel ends the operation. */
    CK(f->C_SessionCancel(s, CKF_MESSAGE_DECRYPT));
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_MessageDecryptFinal(s));
}
END_TEST

/* The exact return codes of bad calls; message signatures are not
 * offered. */
START_TEST(test_message_errors)
{
    CK_FUNCTION_LIST_3_0_PTR f = list_3_0();
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("v3"));
    CK_OBJECT_HANDLE ek = gcm_key(s, CKA_ENCRYPT);
    CK_OBJECT_HANDLE dk = gcm_key(s, CKA_DECRYPT);
    CK_BYTE iv[12] = {0}, tag[16], buf[64] = {0};
    CK_GCM_MESSAGE_PARAMS gp = {iv, sizeof(iv), 0, CKG_NO_GENERATE, tag, 128};
    CK_MECHANISM gcm = {CKM_AES_GCM, NULL, 0};
    CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, 16};
    CK_MECHANISM gcm_p = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_ULONG n = sizeof(buf);
    RV(CKR_OPERATION_NOT_INITIALIZED,
       f->C_EncryptMessage(s, &gp, sizeof(gp), NULL, 0, buf, 16, buf, &n));
    RV(CKR_OPERATION_NOT_INITIALIZED,
       f->C_EncryptMessageBegin(s, &gp, sizeof(gp), NULL, 0));
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_MessageDecryptFinal(s));
    RV(CKR_ARGUMENTS_BAD, f->C_MessageEncryptInit(s, NULL, ek));
    RV(CKR_MECHANISM_INVALID, f->C_MessageEncryptInit(s, &cbc, ek));
    RV(CKR_MECHANISM_PARAM_INVALID, f->C_MessageEncryptInit(s, &gcm_p, ek));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_MessageEncryptInit(s, &gcm, dk));
    RV(CKR_KEY_HANDLE_INVALID, f->C_MessageEncryptInit(s, &gcm, 77777));
    RV(CKR_SESSION_HANDLE_INVALID, f->C_MessageEncryptInit(s + 1000, &gcm, ek));
    CK(f->C_MessageEncryptInit(s, &gcm, ek));
    RV(CKR_OPERATION_ACTIVE, f->C_MessageEncryptInit(s, &gcm, ek));
    RV(CKR_ARGUMENTS_BAD,
       f->C_EncryptMessage(s, &gp, sizeof(gp), NULL, 0, buf, 16, buf, NULL));
    RV(CKR_ARGUMENTS_BAD,
       f->C_EncryptMessage(s, &gp, sizeof(gp), NULL, 4, buf, 16, buf, &n));
    RV(CKR_MECHANISM_PARAM_INVALID,
       f->C_EncryptMessage(s, NULL, 0, NULL, 0, buf, 16, buf, &n));
    RV(CKR_MECHANISM_PARAM_INVALID,
       f->C_EncryptMessage(s, &gp, sizeof(gp) - 1, NULL, 0, buf, 16, buf, &n));
    CK_GCM_MESSAGE_PARAMS bad = gp;
    bad.ulTagBits = 64;
    RV(CKR_MECHANISM_PARAM_INVALID,
       f->C_EncryptMessage(s, &bad, sizeof(bad), NULL, 0, buf, 16, buf, &n));
    bad = gp;
    bad.ivGenerator = CKG_GENERATE_COUNTER_XOR;
    RV(CKR_MECHANISM_PARAM_INVALID,
       f->C_EncryptMessage(s, &bad, sizeof(bad), NULL, 0, buf, 16, buf, &n));
    bad = gp;
    bad.ivGenerator = CKG_GENERATE_RANDOM;
    bad.ulIvFixedBits = 96; /* nothing left to generate */
    RV(CKR_MECHANISM_PARAM_INVALID,
       f->C_EncryptMessage(s, &bad, sizeof(bad), NULL, 0, buf, 16, buf, &n));
    bad = gp;
    bad.pTag = NULL;
    RV(CKR_MECHANISM_PARAM_INVALID,
       f->C_EncryptMessage(s, &bad, sizeof(bad), NULL, 0, buf, 16, buf, &n));
    /* A message longer than the module's bound (1 GiB), never read. */
    n = 0;
    RV(CKR_DATA_LEN_RANGE, f->C_EncryptMessage(s, &gp, sizeof(gp), NULL, 0, buf,
                                               (CK_ULONG)1 << 31, NULL, &n));
    /* Errors end no operation. */
    n = sizeof(buf);
    CK(f->C_EncryptMessage(s, &gp, sizeof(gp), NULL, 0, buf, 16, buf, &n));
    RV(CKR_OPERATION_NOT_INITIALIZED,
       f->C_EncryptMessageNext(s, &gp, sizeof(gp), buf, 16, buf, &n, 0));
    CK(f->C_EncryptMessageBegin(s, &gp, sizeof(gp), NULL, 0));
    RV(CKR_OPERATION_ACTIVE,
       f->C_EncryptMessage(s, &gp, sizeof(gp), NULL, 0, buf, 16, buf, &n));
    RV(CKR_ARGUMENTS_BAD,
       f->C_EncryptMessageNext(s, &gp, sizeof(gp), buf, 16, buf, &n, 0x8));
    CK(f->C_MessageEncryptFinal(s));

    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK_RV nf = CKR_FUNCTION_NOT_SUPPORTED;
    RV(nf, f->C_MessageSignInit(s, &hmac, ek));
    RV(nf, f->C_SignMessage(s, NULL, 0, buf, 16, buf, &n));
    RV(nf, f->C_SignMessageBegin(s, NULL, 0));
    RV(nf, f->C_SignMessageNext(s, NULL, 0, buf, 16, buf, &n));
    RV(nf, f->C_MessageSignFinal(s));
    RV(nf, f->C_MessageVerifyInit(s, &hmac, ek));
    RV(nf, f->C_VerifyMessage(s, NULL, 0, buf, 16, buf, 32));
    RV(nf, f->C_VerifyMessageBegin(s, NULL, 0));
    RV(nf, f->C_VerifyMessageNext(s, NULL, 0, buf, 16, buf, 32));
    RV(nf, f->C_MessageVerifyFinal(s));
    RV(CKR_SESSION_HANDLE_INVALID, f->C_MessageVerifyFinal(s + 1000));
}
END_TEST

static Suite *v3_suite(void)
{
    Suite *su = suite_create("v3");
    TCase *tc = tcase_create("v3");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_interface_list);
    tcase_add_test(tc, test_get_interface);
    tcase_add_test(tc, test_info_per_interface);
    tcase_add_test(tc, test_login_user);
    tcase_add_test(tc, test_session_cancel);
    tcase_add_test(tc, test_message_gcm_single_part);
    tcase_add_test(tc, test_message_gcm_parts);
    tcase_add_test(tc, test_message_errors);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(v3_suite)
