/* Objects and their attribute rules (PKCS#11 v2.40 §4, §5.7), search,
 * visibility, and the non-extractable matrix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static CK_SLOT_ID slot;
static CK_SESSION_HANDLE s;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_data = CKO_DATA, c_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE k_aes = CKK_AES, k_gen = CKK_GENERIC_SECRET, k_rsa = CKK_RSA;
static unsigned char key32[32] = {1, 2, 3, 4, 5, 6, 7, 8};

static void setup(void)
{
    kt_test_setup();
    CK(P->C_Initialize(NULL));
    slot = kt_test_new_token("objects");
    s = kt_test_user_session(slot);
}

#define N(t) (sizeof(t) / sizeof((t)[0]))

static CK_ULONG count_label(CK_SESSION_HANDLE sess, const char *label)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[16];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(sess, &t, 1));
    CK(P->C_FindObjects(sess, h, 16, &n));
    CK(P->C_FindObjectsFinal(sess));
    return n;
}

START_TEST(test_create_and_get_data_object)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                        {CKA_LABEL, "data", 4},
                        {CKA_APPLICATION, "app", 3},
                        {CKA_VALUE, "hello", 5}};
    CK_OBJECT_HANDLE h, h2;
    CK(P->C_CreateObject(s, t, N(t), &h));
    CK(P->C_CreateObject(s, t, N(t), &h2));
    ck_assert_uint_ne(h, h2);
    ck_assert_uint_ne(h, CK_INVALID_HANDLE);
    /* length query, then values */
    CK_ATTRIBUTE g[] = {{CKA_LABEL, NULL, 0}, {CKA_VALUE, NULL, 0}};
    CK(P->C_GetAttributeValue(s, h, g, 2));
    ck_assert_uint_eq(g[0].ulValueLen, 4);
    ck_assert_uint_eq(g[1].ulValueLen, 5);
    char lbl[8], val[8];
    g[0].pValue = lbl;
    g[1].pValue = val;
    CK(P->C_GetAttributeValue(s, h, g, 2));
    ck_assert_mem_eq(lbl, "data", 4);
    ck_assert_mem_eq(val, "hello", 5);
    /* every attribute processed; failures marked individually */
    char small[2];
    CK_BBOOL priv = 9;
    CK_ATTRIBUTE g2[] = {{CKA_VALUE, small, sizeof(small)},
                         {0x7fff1234UL, val, sizeof(val)},
                         {CKA_PRIVATE, &priv, 1},
                         {CKA_ENCRYPT, val, sizeof(val)}};
    /* several failures: the first one is reported (§5.7 lets the token pick) */
    RV(CKR_BUFFER_TOO_SMALL, P->C_GetAttributeValue(s, h, g2, 4));
    ck_assert_uint_eq(g2[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    ck_assert_uint_eq(g2[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    ck_assert_uint_eq(g2[2].ulValueLen, 1);
    ck_assert_int_eq(priv, CK_FALSE);
    ck_assert_uint_eq(g2[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CK_ATTRIBUTE g3 = {0x7fff1234UL, NULL, 0};
    RV(CKR_ATTRIBUTE_TYPE_INVALID, P->C_GetAttributeValue(s, h, &g3, 1));
    CK_ATTRIBUTE g4 = {CKA_VALUE, small, sizeof(small)};
    RV(CKR_BUFFER_TOO_SMALL, P->C_GetAttributeValue(s, h, &g4, 1));
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetAttributeValue(s, 0x7777777, g, 2));
    RV(CKR_ARGUMENTS_BAD, P->C_GetAttributeValue(s, h, NULL, 2));
    RV(CKR_SESSION_HANDLE_INVALID, P->C_GetAttributeValue(0x7777777, h, g, 2));
    CK_ULONG size = 0;
    CK(P->C_GetObjectSize(s, h, &size));
    ck_assert_uint_gt(size, 9);
    RV(CKR_ARGUMENTS_BAD, P->C_GetObjectSize(s, h, NULL));
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetObjectSize(s, 0x7777777, &size));
    CK(P->C_DestroyObject(s, h));
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_DestroyObject(s, h));
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetAttributeValue(s, h, g, 2));
}
END_TEST

START_TEST(test_create_template_errors)
{
    CK_OBJECT_HANDLE h;
    CK_ATTRIBUTE no_class[] = {{CKA_LABEL, "x", 1}};
    RV(CKR_TEMPLATE_INCOMPLETE, P->C_CreateObject(s, no_class, 1, &h));
    CK_ATTRIBUTE no_value[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                               {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)}};
    RV(CKR_TEMPLATE_INCOMPLETE, P->C_CreateObject(s, no_value, 2, &h));
    CK_ATTRIBUTE no_type[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                              {CKA_VALUE, key32, 32}};
    RV(CKR_TEMPLATE_INCOMPLETE, P->C_CreateObject(s, no_type, 2, &h));
    CK_ATTRIBUTE conflict[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                               {CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa)},
                               {CKA_VALUE, key32, 32}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, conflict, 3, &h));
    CK_ATTRIBUTE unknown[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                              {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                              {CKA_VALUE, key32, 32},
                              {0x7fff1234UL, "x", 1}};
    RV(CKR_ATTRIBUTE_TYPE_INVALID, P->C_CreateObject(s, unknown, 4, &h));
    CK_ATTRIBUTE ro[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 32},
                         {CKA_LOCAL, &yes, 1}};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_CreateObject(s, ro, 4, &h));
    ro[3].type = CKA_ALWAYS_SENSITIVE;
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_CreateObject(s, ro, 4, &h));
    ro[3].type = CKA_TRUSTED; /* the user may not set it */
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_CreateObject(s, ro, 4, &h));
    CK_ULONG bad_bool = 1;
    CK_ATTRIBUTE badlen[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                             {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                             {CKA_VALUE, key32, 32},
                             {CKA_ENCRYPT, &bad_bool, sizeof(bad_bool)}};
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, badlen, 4, &h));
    CK_ATTRIBUTE aes15[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                            {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                            {CKA_VALUE, key32, 15}};
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, aes15, 3, &h));
    CK_ULONG wrong_len = 16;
    CK_ATTRIBUTE vlen[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                           {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                           {CKA_VALUE, key32, 32},
                           {CKA_VALUE_LEN, &wrong_len, sizeof(wrong_len)}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, vlen, 4, &h));
    CK_ATTRIBUTE dup[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                          {CKA_LABEL, "a", 1},
                          {CKA_LABEL, "b", 1}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, dup, 3, &h));
    CK_ATTRIBUTE data_enc[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                               {CKA_ENCRYPT, &yes, 1}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, data_enc, 2, &h));
    CK_ATTRIBUTE nullval[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                              {CKA_LABEL, NULL, 5}};
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_CreateObject(s, nullval, 2, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_CreateObject(s, NULL, 2, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_CreateObject(s, no_class, 1, NULL));
    RV(CKR_SESSION_HANDLE_INVALID,
       P->C_CreateObject(0x7777777, no_class, 1, &h));
}
END_TEST

START_TEST(test_session_state_for_objects)
{
    CK_SESSION_HANDLE ro;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    CK_ATTRIBUTE tok[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                          {CKA_TOKEN, &yes, 1},
                          {CKA_LABEL, "tok", 3}};
    CK_OBJECT_HANDLE h, hs;
    RV(CKR_SESSION_READ_ONLY, P->C_CreateObject(ro, tok, 3, &h));
    CK(P->C_CreateObject(s, tok, 3, &h));
    RV(CKR_SESSION_READ_ONLY, P->C_DestroyObject(ro, h));
    CK_ATTRIBUTE lbl = {CKA_LABEL, "new", 3};
    RV(CKR_SESSION_READ_ONLY, P->C_SetAttributeValue(ro, h, &lbl, 1));
    /* session objects may be made in a read-only session */
    CK(P->C_CreateObject(ro, tok, 1, &hs));
    CK(P->C_Logout(s));
    /* private objects need the user */
    CK_ATTRIBUTE priv[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                           {CKA_PRIVATE, &yes, 1}};
    RV(CKR_USER_NOT_LOGGED_IN, P->C_CreateObject(s, priv, 2, &h));
    CK_ATTRIBUTE g = {CKA_LABEL, NULL, 0};
    CK(P->C_GetAttributeValue(s, h, &g, 1)); /* public token object */
    /* copied without a login, into a session object or (a public object
     * that seals nothing) another token object; changed only with one */
    CK_ATTRIBUTE to_session = {CKA_TOKEN, &no, 1};
    CK_OBJECT_HANDLE hc;
    CK(P->C_CopyObject(s, h, &to_session, 1, &hc));
    RV(CKR_USER_NOT_LOGGED_IN, P->C_SetAttributeValue(s, h, &lbl, 1));
    CK(P->C_CopyObject(s, h, NULL, 0, &hc));
    CK(P->C_DestroyObject(s, hc));
    /* session objects vanish with their session */
    CK(P->C_CloseSession(ro));
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetAttributeValue(s, hs, &g, 1));
}
END_TEST

START_TEST(test_private_objects_invisible_until_login)
{
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, true, false, "secret-key");
    CK_ATTRIBUTE pub[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                          {CKA_PRIVATE, &no, 1},
                          {CKA_LABEL, "secret-key", 10}};
    CK_OBJECT_HANDLE d;
    CK(P->C_CreateObject(s, pub, 3, &d));
    ck_assert_uint_eq(count_label(s, "secret-key"), 2);
    CK(P->C_Logout(s));
    ck_assert_uint_eq(count_label(s, "secret-key"), 1);
    CK_ATTRIBUTE g = {CKA_LABEL, NULL, 0};
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetAttributeValue(s, k, &g, 1));
    unsigned char iv[16] = {0};
    CK_MECHANISM m = {CKM_AES_CBC, iv, 16};
    RV(CKR_KEY_HANDLE_INVALID, P->C_EncryptInit(s, &m, k));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    /* §5.6: handles to private objects stay invalid after a new login */
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetAttributeValue(s, k, &g, 1));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE q[] = {{CKA_LABEL, "secret-key", 10},
                        {CKA_CLASS, &cls, sizeof(cls)}};
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, q, 2));
    CK(P->C_FindObjects(s, found, 2, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_ne(found[0], k);
    CK(P->C_GetAttributeValue(s, found[0], &g, 1));
    CK(P->C_EncryptInit(s, &m, found[0]));
    /* private session objects are destroyed by the logout */
    CK_OBJECT_HANDLE sk = kt_test_aes_key(s, 16, false, false, "sess");
    CK_ATTRIBUTE pd[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                         {CKA_PRIVATE, &no, 1}};
    CK_OBJECT_HANDLE pub_sess;
    CK(P->C_CreateObject(s, pd, 2, &pub_sess));
    CK(P->C_Logout(s));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    ck_assert_uint_eq(count_label(s, "sess"), 0);
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_GetAttributeValue(s, sk, &g, 1));
    CK(P->C_GetAttributeValue(s, pub_sess, &g, 1));
}
END_TEST

START_TEST(test_generate_key_rules)
{
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG l32 = 32, l20 = 20;
    CK_OBJECT_HANDLE h;
    CK_ATTRIBUTE none[] = {{CKA_LABEL, "k", 1}};
    RV(CKR_TEMPLATE_INCOMPLETE, P->C_GenerateKey(s, &m, none, 1, &h));
    CK_ATTRIBUTE bad[] = {{CKA_VALUE_LEN, &l20, sizeof(l20)}};
    RV(CKR_ATTRIBUTE_VALUE_INVALID, P->C_GenerateKey(s, &m, bad, 1, &h));
    CK_ATTRIBUTE kt[] = {{CKA_VALUE_LEN, &l32, sizeof(l32)},
                         {CKA_KEY_TYPE, &k_gen, sizeof(k_gen)}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_GenerateKey(s, &m, kt, 2, &h));
    CK_ATTRIBUTE cls[] = {{CKA_VALUE_LEN, &l32, sizeof(l32)},
                          {CKA_CLASS, &c_data, sizeof(c_data)}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_GenerateKey(s, &m, cls, 2, &h));
    CK_ATTRIBUTE val[] = {{CKA_VALUE_LEN, &l32, sizeof(l32)},
                          {CKA_VALUE, key32, 32}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_GenerateKey(s, &m, val, 2, &h));
    CK_MECHANISM bogus = {CKM_SHA256, NULL, 0};
    CK_ATTRIBUTE ok[] = {{CKA_VALUE_LEN, &l32, sizeof(l32)}};
    RV(CKR_MECHANISM_INVALID, P->C_GenerateKey(s, &bogus, ok, 1, &h));
    CK_MECHANISM withparam = {CKM_AES_KEY_GEN, key32, 4};
    RV(CKR_MECHANISM_PARAM_INVALID, P->C_GenerateKey(s, &withparam, ok, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateKey(s, NULL, ok, 1, &h));
    RV(CKR_ARGUMENTS_BAD, P->C_GenerateKey(s, &m, ok, 1, NULL));
    CK_ULONG lens[] = {16, 24, 32};
    for (int i = 0; i < 3; i++) {
        CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &lens[i], sizeof(CK_ULONG)}};
        CK(P->C_GenerateKey(s, &m, t, 1, &h));
        CK_ULONG vl = 0, mech = 0;
        CK_KEY_TYPE type = 0;
        CK_BBOOL local = 0, asens = 0, nextr = 0, sens = 0, extr = 1;
        CK_ATTRIBUTE g[] = {{CKA_VALUE_LEN, &vl, sizeof(vl)},
                            {CKA_KEY_TYPE, &type, sizeof(type)},
                            {CKA_LOCAL, &local, 1},
                            {CKA_KEY_GEN_MECHANISM, &mech, sizeof(mech)},
                            {CKA_ALWAYS_SENSITIVE, &asens, 1},
                            {CKA_NEVER_EXTRACTABLE, &nextr, 1},
                            {CKA_SENSITIVE, &sens, 1},
                            {CKA_EXTRACTABLE, &extr, 1}};
        CK(P->C_GetAttributeValue(s, h, g, N(g)));
        ck_assert_uint_eq(vl, lens[i]);
        ck_assert_uint_eq(type, CKK_AES);
        ck_assert_uint_eq(mech, CKM_AES_KEY_GEN);
        ck_assert(local && asens && nextr && sens && !extr);
    }
    CK_MECHANISM gm = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_ULONG l48 = 48;
    CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &l48, sizeof(l48)},
                         {CKA_EXTRACTABLE, &yes, 1},
                         {CKA_SENSITIVE, &no, 1}};
    CK(P->C_GenerateKey(s, &gm, gt, 3, &h));
    unsigned char v[48];
    CK_ATTRIBUTE gv = {CKA_VALUE, v, sizeof(v)};
    CK(P->C_GetAttributeValue(s, h, &gv, 1));
    ck_assert_uint_eq(gv.ulValueLen, 48);
    CK_KEY_TYPE type = 0;
    CK_ATTRIBUTE gk = {CKA_KEY_TYPE, &type, sizeof(type)};
    CK(P->C_GetAttributeValue(s, h, &gk, 1));
    ck_assert_uint_eq(type, CKK_GENERIC_SECRET);
}
END_TEST

START_TEST(test_set_attribute_rules)
{
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, false, true, "mutable");
    CK_ATTRIBUTE lbl = {CKA_LABEL, "renamed", 7};
    CK(P->C_SetAttributeValue(s, k, &lbl, 1));
    ck_assert_uint_eq(count_label(s, "renamed"), 1);
    CK_ATTRIBUTE cls = {CKA_CLASS, &c_data, sizeof(c_data)};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &cls, 1));
    CK_ATTRIBUTE val = {CKA_VALUE, key32, 32};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &val, 1));
    CK_ATTRIBUTE local = {CKA_LOCAL, &no, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &local, 1));
    CK_ATTRIBUTE unknown = {0x7fff1234UL, "x", 1};
    RV(CKR_ATTRIBUTE_TYPE_INVALID, P->C_SetAttributeValue(s, k, &unknown, 1));
    CK_ATTRIBUTE trusted = {CKA_TRUSTED, &yes, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &trusted, 1));
    /* SENSITIVE false -> true only; EXTRACTABLE true -> false only */
    CK_ATTRIBUTE sens_on = {CKA_SENSITIVE, &yes, 1};
    CK(P->C_SetAttributeValue(s, k, &sens_on, 1));
    CK_ATTRIBUTE sens_off = {CKA_SENSITIVE, &no, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &sens_off, 1));
    CK_BBOOL asens = 1;
    CK_ATTRIBUTE g = {CKA_ALWAYS_SENSITIVE, &asens, 1};
    CK(P->C_GetAttributeValue(s, k, &g, 1));
    ck_assert_int_eq(asens, CK_FALSE); /* it was readable once */
    CK_ATTRIBUTE ext_off = {CKA_EXTRACTABLE, &no, 1};
    CK(P->C_SetAttributeValue(s, k, &ext_off, 1));
    CK_ATTRIBUTE ext_on = {CKA_EXTRACTABLE, &yes, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &ext_on, 1));
    CK_ATTRIBUTE wwt_on = {CKA_WRAP_WITH_TRUSTED, &yes, 1};
    CK(P->C_SetAttributeValue(s, k, &wwt_on, 1));
    CK_ATTRIBUTE wwt_off = {CKA_WRAP_WITH_TRUSTED, &no, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &wwt_off, 1));
    /* a failed change leaves the object as it was */
    CK_ATTRIBUTE mixed[] = {{CKA_LABEL, "half", 4}, {CKA_SENSITIVE, &no, 1}};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, mixed, 2));
    ck_assert_uint_eq(count_label(s, "half"), 0);
    /* CKA_MODIFIABLE = FALSE */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                        {CKA_MODIFIABLE, &no, 1}};
    CK_OBJECT_HANDLE d;
    CK(P->C_CreateObject(s, t, 2, &d));
    RV(CKR_ACTION_PROHIBITED, P->C_SetAttributeValue(s, d, &lbl, 1));
    RV(CKR_ARGUMENTS_BAD, P->C_SetAttributeValue(s, d, NULL, 1));
    RV(CKR_OBJECT_HANDLE_INVALID,
       P->C_SetAttributeValue(s, 0x7777777, &lbl, 1));
}
END_TEST

START_TEST(test_copy_and_destroy_rules)
{
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, false, true, "orig");
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "copy", 4}, {CKA_TOKEN, &yes, 1}};
    CK_OBJECT_HANDLE c;
    CK(P->C_CopyObject(s, k, t, 2, &c));
    ck_assert_uint_eq(count_label(s, "copy"), 1);
    unsigned char v1[32], v2[32];
    CK_ATTRIBUTE g1 = {CKA_VALUE, v1, 32}, g2 = {CKA_VALUE, v2, 32};
    CK(P->C_GetAttributeValue(s, k, &g1, 1));
    CK(P->C_GetAttributeValue(s, c, &g2, 1));
    ck_assert_mem_eq(v1, v2, 32);
    CK_ATTRIBUTE cls = {CKA_CLASS, &c_data, sizeof(c_data)};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_CopyObject(s, k, &cls, 1, &c));
    RV(CKR_OBJECT_HANDLE_INVALID, P->C_CopyObject(s, 0x7777777, t, 1, &c));
    RV(CKR_ARGUMENTS_BAD, P->C_CopyObject(s, k, t, 1, NULL));
    /* COPYABLE / DESTROYABLE */
    CK_ATTRIBUTE nc[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                         {CKA_COPYABLE, &no, 1},
                         {CKA_DESTROYABLE, &no, 1}};
    CK_OBJECT_HANDLE d;
    CK(P->C_CreateObject(s, nc, 3, &d));
    RV(CKR_ACTION_PROHIBITED, P->C_CopyObject(s, d, NULL, 0, &c));
    RV(CKR_ACTION_PROHIBITED, P->C_DestroyObject(s, d));
    CK_ATTRIBUTE copy_on = {CKA_COPYABLE, &yes, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, d, &copy_on, 1));
}
END_TEST

START_TEST(test_find_objects)
{
    CK_OBJECT_HANDLE hs[5], got[8];
    for (int i = 0; i < 5; i++) {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                            {CKA_LABEL, "many", 4},
                            {CKA_TOKEN, i % 2 ? &yes : &no, 1}};
        CK(P->C_CreateObject(s, t, 3, &hs[i]));
    }
    CK_ATTRIBUTE q = {CKA_LABEL, "many", 4};
    CK_ULONG n = 0, total = 0;
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_FindObjects(s, got, 8, &n));
    RV(CKR_OPERATION_NOT_INITIALIZED, P->C_FindObjectsFinal(s));
    CK(P->C_FindObjectsInit(s, &q, 1));
    RV(CKR_OPERATION_ACTIVE, P->C_FindObjectsInit(s, &q, 1));
    RV(CKR_ARGUMENTS_BAD, P->C_FindObjects(s, got, 2, NULL));
    do {
        CK(P->C_FindObjects(s, got + total, 2, &n));
        ck_assert_uint_le(n, 2);
        total += n;
    } while (n > 0);
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(total, 5);
    /* empty template: everything visible */
    CK(P->C_FindObjectsInit(s, NULL, 0));
    CK(P->C_FindObjects(s, got, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 5);
    CK_ATTRIBUTE q2[] = {{CKA_LABEL, "many", 4}, {CKA_TOKEN, &yes, 1}};
    CK(P->C_FindObjectsInit(s, q2, 2));
    CK(P->C_FindObjects(s, got, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 2);
    /* a secret value is never a search key of a sensitive object */
    CK_ATTRIBUTE kt[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 32}};
    CK_OBJECT_HANDLE k;
    CK(P->C_CreateObject(s, kt, 3, &k));
    CK_ATTRIBUTE qv = {CKA_VALUE, key32, 32};
    CK(P->C_FindObjectsInit(s, &qv, 1));
    CK(P->C_FindObjects(s, got, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 0);
}
END_TEST

/* The label index follows creation, renames, copies and destruction. */
START_TEST(test_find_by_label_index)
{
    CK_OBJECT_HANDLE h[40];
    char label[16];
    for (int i = 0; i < 40; i++) {
        snprintf(label, sizeof(label), "idx-%d", i % 4);
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_data, sizeof(c_data)},
                            {CKA_LABEL, label, strlen(label)},
                            {CKA_TOKEN, i % 3 ? &no : &yes, 1}};
        CK(P->C_CreateObject(s, t, 3, &h[i]));
    }
    ck_assert_uint_eq(count_label(s, "idx-1"), 10);
    ck_assert_uint_eq(count_label(s, "idx-"), 0);
    for (int i = 1; i < 40; i += 4)
        if (i % 8 == 1)
            CK(P->C_DestroyObject(s, h[i]));
    ck_assert_uint_eq(count_label(s, "idx-1"), 5);
    CK_ATTRIBUTE rn = {CKA_LABEL, "idx-moved", 9};
    CK(P->C_SetAttributeValue(s, h[2], &rn, 1));
    CK(P->C_SetAttributeValue(s, h[3], &rn, 1));
    ck_assert_uint_eq(count_label(s, "idx-2"), 9);
    ck_assert_uint_eq(count_label(s, "idx-moved"), 2);
    CK_OBJECT_HANDLE c;
    CK(P->C_CopyObject(s, h[0], &rn, 1, &c));
    ck_assert_uint_eq(count_label(s, "idx-moved"), 3);
    ck_assert_uint_eq(count_label(s, "idx-0"), 10);
    CK_ATTRIBUTE both[] = {{CKA_LABEL, "idx-0", 5}, {CKA_TOKEN, &yes, 1}};
    CK_OBJECT_HANDLE got[16];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, both, 2));
    CK(P->C_FindObjects(s, got, 16, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 4);
    /* persisted objects are indexed when loaded again */
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("objects"));
    ck_assert_uint_eq(count_label(s, "idx-0"), 4);
    ck_assert_uint_eq(count_label(s, "idx-moved"), 2);
}
END_TEST

/* ---- the non-extractable matrix ----------------------------------------- */

static const CK_MECHANISM_TYPE wrap_mechs[] = {
    CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP,
    CKM_AES_CBC_PAD, CKM_AES_GCM};

static CK_MECHANISM mech_for(CK_MECHANISM_TYPE t)
{
    static unsigned char iv[16];
    static CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
    CK_MECHANISM m = {t, NULL, 0};
    /* A GCM wrap returns its IV here; each wrap starts from zeros. */
    memset(iv, 0, sizeof(iv));
    if (t == CKM_AES_CBC_PAD) {
        m.pParameter = iv;
        m.ulParameterLen = 16;
    } else if (t == CKM_AES_GCM) {
        m.pParameter = &gp;
        m.ulParameterLen = sizeof(gp);
    }
    return m;
}

static CK_OBJECT_HANDLE matrix_key(bool sensitive, bool extractable, bool token)
{
    CK_BBOOL sens = sensitive, ext = extractable, tok = token;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                        {CKA_VALUE, key32, 32},
                        {CKA_SENSITIVE, &sens, 1},
                        {CKA_EXTRACTABLE, &ext, 1},
                        {CKA_TOKEN, &tok, 1}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    return h;
}

START_TEST(test_non_extractable_matrix)
{
    CK_OBJECT_HANDLE kek = kt_test_wrap_key(s, 32, true, false, "kek");
    for (int token = 0; token < 2; token++) {
        CK_OBJECT_HANDLE ne = matrix_key(false, false, token);
        CK_OBJECT_HANDLE se = matrix_key(true, true, token);
        CK_OBJECT_HANDLE both = matrix_key(true, false, token);
        CK_OBJECT_HANDLE keys[] = {ne, se, both};
        for (int i = 0; i < 3; i++) {
            unsigned char v[32];
            CK_ATTRIBUTE g = {CKA_VALUE, v, sizeof(v)};
            RV(CKR_ATTRIBUTE_SENSITIVE,
               P->C_GetAttributeValue(s, keys[i], &g, 1));
            ck_assert_uint_eq(g.ulValueLen, CK_UNAVAILABLE_INFORMATION);
            CK_ATTRIBUTE gq = {CKA_VALUE, NULL, 0};
            RV(CKR_ATTRIBUTE_SENSITIVE,
               P->C_GetAttributeValue(s, keys[i], &gq, 1));
            /* no attribute change makes it readable */
            CK_ATTRIBUTE mk[] = {{CKA_SENSITIVE, &no, 1},
                                 {CKA_EXTRACTABLE, &yes, 1}};
            for (int j = 0; j < 2; j++) {
                CK_BBOOL cur = 0;
                CK_ATTRIBUTE gc = {mk[j].type, &cur, 1};
                CK(P->C_GetAttributeValue(s, keys[i], &gc, 1));
                bool already = (j == 0) ? !cur : cur;
                if (!already)
                    RV(CKR_ATTRIBUTE_READ_ONLY,
                       P->C_SetAttributeValue(s, keys[i], &mk[j], 1));
                /* nor a copy */
                CK_OBJECT_HANDLE c;
                if (!already)
                    RV(CKR_ATTRIBUTE_READ_ONLY,
                       P->C_CopyObject(s, keys[i], &mk[j], 1, &c));
            }
            RV(CKR_ATTRIBUTE_SENSITIVE,
               P->C_GetAttributeValue(s, keys[i], &g, 1));
            /* digesting is reading */
            CK_MECHANISM dm = {CKM_SHA256, NULL, 0};
            CK(P->C_DigestInit(s, &dm));
            RV(CKR_KEY_INDIGESTIBLE, P->C_DigestKey(s, keys[i]));
        }
        /* no wrapping mechanism lets a non-extractable key out */
        for (size_t m = 0; m < N(wrap_mechs); m++) {
            CK_MECHANISM mech = mech_for(wrap_mechs[m]);
            unsigned char out[128];
            CK_ULONG ol = sizeof(out);
            RV(CKR_KEY_UNEXTRACTABLE,
               P->C_WrapKey(s, &mech, kek, ne, out, &ol));
            ol = sizeof(out);
            RV(CKR_KEY_UNEXTRACTABLE,
               P->C_WrapKey(s, &mech, kek, both, out, &ol));
            ol = 0;
            RV(CKR_KEY_UNEXTRACTABLE,
               P->C_WrapKey(s, &mech, kek, ne, NULL, &ol));
            /* a sensitive but extractable key may leave wrapped (§4.9) */
            ol = sizeof(out);
            CK(P->C_WrapKey(s, &mech, kek, se, out, &ol));
        }
    }
}
END_TEST

START_TEST(test_wrap_with_trusted_and_wrap_template)
{
    /* the SO makes a public, trusted wrapping key */
    CK_SESSION_HANDLE so;
    CK(P->C_Logout(s));
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &so));
    CK(P->C_Login(so, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK_ATTRIBUTE tt[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 32},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_PRIVATE, &no, 1},
                         {CKA_TRUSTED, &yes, 1},
                         {CKA_WRAP, &yes, 1},
                         {CKA_LABEL, "trusted", 7}};
    CK_OBJECT_HANDLE trusted;
    CK(P->C_CreateObject(so, tt, N(tt), &trusted));
    CK(P->C_Logout(so));
    CK(P->C_CloseSession(so));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK_OBJECT_HANDLE plain = kt_test_wrap_key(s, 32, false, false, "plain");
    CK_BBOOL ext = CK_TRUE;
    CK_ATTRIBUTE kt[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 16},
                         {CKA_EXTRACTABLE, &ext, 1},
                         {CKA_WRAP_WITH_TRUSTED, &yes, 1}};
    CK_OBJECT_HANDLE k;
    CK(P->C_CreateObject(s, kt, N(kt), &k));
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char out[64];
    CK_ULONG ol = sizeof(out);
    RV(CKR_KEY_NOT_WRAPPABLE, P->C_WrapKey(s, &m, plain, k, out, &ol));
    ol = sizeof(out);
    CK(P->C_WrapKey(s, &m, trusted, k, out, &ol));
    /* CKA_WRAP_TEMPLATE: only keys whose CKA_ID is "ok" */
    CK_ATTRIBUTE wt[] = {{CKA_ID, "ok", 2}};
    CK_ATTRIBUTE wk[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 32},
                         {CKA_WRAP, &yes, 1},
                         {CKA_WRAP_TEMPLATE, wt, sizeof(wt)}};
    CK_OBJECT_HANDLE tmpl_kek;
    CK(P->C_CreateObject(s, wk, N(wk), &tmpl_kek));
    CK_ATTRIBUTE e1[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 16},
                         {CKA_EXTRACTABLE, &ext, 1},
                         {CKA_ID, "no", 2}};
    CK_OBJECT_HANDLE k_no, k_ok;
    CK(P->C_CreateObject(s, e1, N(e1), &k_no));
    e1[4].pValue = "ok";
    CK(P->C_CreateObject(s, e1, N(e1), &k_ok));
    ol = sizeof(out);
    RV(CKR_KEY_NOT_WRAPPABLE, P->C_WrapKey(s, &m, tmpl_kek, k_no, out, &ol));
    ol = sizeof(out);
    CK(P->C_WrapKey(s, &m, tmpl_kek, k_ok, out, &ol));
    /* the template reads back in two steps */
    CK_ATTRIBUTE g = {CKA_WRAP_TEMPLATE, NULL, 0};
    CK(P->C_GetAttributeValue(s, tmpl_kek, &g, 1));
    ck_assert_uint_eq(g.ulValueLen, sizeof(CK_ATTRIBUTE));
    CK_ATTRIBUTE inner = {CKA_ID, NULL, 0};
    g.pValue = &inner;
    CK(P->C_GetAttributeValue(s, tmpl_kek, &g, 1));
    ck_assert_uint_eq(inner.ulValueLen, 2);
    char id[2];
    inner.pValue = id;
    CK(P->C_GetAttributeValue(s, tmpl_kek, &g, 1));
    ck_assert_mem_eq(id, "ok", 2);
}
END_TEST

START_TEST(test_unwrap_template_enforced)
{
    CK_ATTRIBUTE ut[] = {{CKA_EXTRACTABLE, &no, 1}, {CKA_SENSITIVE, &yes, 1}};
    CK_ATTRIBUTE uk[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 32},
                         {CKA_UNWRAP, &yes, 1},
                         {CKA_UNWRAP_TEMPLATE, ut, sizeof(ut)}};
    CK_OBJECT_HANDLE kek, dek, back;
    CK(P->C_CreateObject(s, uk, N(uk), &kek));
    dek = kt_test_aes_key(s, 32, false, true, "dek");
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char w[64];
    CK_ULONG wl = sizeof(w);
    CK(P->C_WrapKey(s, &m, kek, dek, w, &wl));
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                        {CKA_EXTRACTABLE, &yes, 1}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_UnwrapKey(s, &m, kek, w, wl, t, 3, &back));
    CK(P->C_UnwrapKey(s, &m, kek, w, wl, t, 2, &back));
    CK_BBOOL ext = 1, sens = 0;
    CK_ATTRIBUTE g[] = {{CKA_EXTRACTABLE, &ext, 1}, {CKA_SENSITIVE, &sens, 1}};
    CK(P->C_GetAttributeValue(s, back, g, 2));
    ck_assert(!ext && sens);
    /* template requirements of unwrap */
    CK_ATTRIBUTE noclass[] = {{CKA_KEY_TYPE, &k_aes, sizeof(k_aes)}};
    RV(CKR_TEMPLATE_INCOMPLETE,
       P->C_UnwrapKey(s, &m, kek, w, wl, noclass, 1, &back));
    CK_ULONG wrong = 16;
    CK_ATTRIBUTE badlen[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                             {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                             {CKA_VALUE_LEN, &wrong, sizeof(wrong)}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_UnwrapKey(s, &m, kek, w, wl, badlen, 3, &back));
    RV(CKR_WRAPPED_KEY_LEN_RANGE,
       P->C_UnwrapKey(s, &m, kek, w, 12, t, 2, &back));
    /* an absurd length is refused before anything is read or allocated */
    RV(CKR_WRAPPED_KEY_LEN_RANGE,
       P->C_UnwrapKey(s, &m, kek, w, (CK_ULONG)-8, t, 2, &back));
    RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID,
       P->C_UnwrapKey(s, &m, 0x7777777, w, wl, t, 2, &back));
    RV(CKR_ARGUMENTS_BAD, P->C_UnwrapKey(s, &m, kek, NULL, wl, t, 2, &back));
    RV(CKR_ARGUMENTS_BAD, P->C_UnwrapKey(s, &m, kek, w, wl, t, 2, NULL));
}
END_TEST

START_TEST(test_key_usage_and_allowed_mechanisms)
{
    CK_MECHANISM_TYPE allowed[] = {CKM_AES_GCM};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                        {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                        {CKA_VALUE, key32, 32},
                        {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)},
                        {CKA_WRAP, &no, 1},
                        {CKA_DECRYPT, &no, 1}};
    CK_OBJECT_HANDLE k, dek = kt_test_aes_key(s, 16, false, true, "dek");
    CK_OBJECT_HANDLE kek = kt_test_wrap_key(s, 16, false, true, "kek");
    CK(P->C_CreateObject(s, t, N(t), &k));
    unsigned char iv[16] = {0};
    CK_MECHANISM cbc = {CKM_AES_CBC, iv, 16};
    RV(CKR_MECHANISM_INVALID, P->C_EncryptInit(s, &cbc, k));
    CK_GCM_PARAMS gp = {iv, 12, 96, NULL, 0, 128};
    CK_MECHANISM gcm = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK(P->C_EncryptInit(s, &gcm, k));
    RV(CKR_OPERATION_ACTIVE, P->C_EncryptInit(s, &gcm, k));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_DecryptInit(s, &gcm, k));
    unsigned char out[64];
    CK_ULONG ol = sizeof(out);
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_WrapKey(s, &gcm, k, dek, out, &ol));
    CK_MECHANISM_TYPE got[4];
    CK_ATTRIBUTE g = {CKA_ALLOWED_MECHANISMS, got, sizeof(got)};
    CK(P->C_GetAttributeValue(s, k, &g, 1));
    ck_assert_uint_eq(g.ulValueLen, sizeof(CK_MECHANISM_TYPE));
    ck_assert_uint_eq(got[0], CKM_AES_GCM);
    /* handle and type errors of the key functions */
    RV(CKR_KEY_HANDLE_INVALID, P->C_DecryptInit(s, &cbc, 0x7777777));
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &c_data, sizeof(c_data)}};
    CK_OBJECT_HANDLE d;
    CK(P->C_CreateObject(s, dt, 1, &d));
    RV(CKR_KEY_HANDLE_INVALID, P->C_DecryptInit(s, &cbc, d));
    CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
    RV(CKR_KEY_TYPE_INCONSISTENT, P->C_SignInit(s, &hm, dek));
    CK_MECHANISM wp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    ol = sizeof(out);
    RV(CKR_WRAPPING_KEY_HANDLE_INVALID,
       P->C_WrapKey(s, &wp, 0x7777777, dek, out, &ol));
    RV(CKR_KEY_HANDLE_INVALID, P->C_WrapKey(s, &wp, kek, 0x7777777, out, &ol));
    CK_ULONG l = 32;
    CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &l, sizeof(l)}, {CKA_WRAP, &yes, 1}};
    CK_MECHANISM gm = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE gk;
    CK(P->C_GenerateKey(s, &gm, gt, 2, &gk));
    RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
       P->C_WrapKey(s, &wp, gk, dek, out, &ol));
    CK_MECHANISM bad = {CKM_SHA256, NULL, 0};
    RV(CKR_MECHANISM_INVALID, P->C_WrapKey(s, &bad, dek, dek, out, &ol));
    RV(CKR_ARGUMENTS_BAD, P->C_WrapKey(s, NULL, dek, dek, out, &ol));
    RV(CKR_ARGUMENTS_BAD, P->C_WrapKey(s, &wp, dek, dek, out, NULL));
}
END_TEST

static bool get_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE g = {type, &v, 1};
    CK(P->C_GetAttributeValue(s, h, &g, 1));
    return v != CK_FALSE;
}

/* A secret key wraps/unwraps or encrypts/decrypts, never both; the usage
 * attributes a template leaves out follow the role it asks for. */
START_TEST(test_key_roles)
{
    /* keytier's policy (SECURITY.md); SoftHSM2 has its own */
    if (kt_test_is_softhsm())
        return;
    CK_ULONG l = 32;
    CK_MECHANISM gm = {CKM_AES_KEY_GEN, NULL, 0};
    struct {
        CK_ATTRIBUTE_TYPE ask;
        bool wrap;
    } rows[] = {{0, false},
                {CKA_ENCRYPT, false},
                {CKA_DECRYPT, false},
                {CKA_WRAP, true},
                {CKA_UNWRAP, true}};
    for (size_t i = 0; i < N(rows); i++) {
        CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &l, sizeof(l)},
                            {rows[i].ask, &yes, 1}};
        CK_OBJECT_HANDLE k;
        CK(P->C_GenerateKey(s, &gm, t, rows[i].ask ? 2 : 1, &k));
        bool w = rows[i].wrap;
        ck_assert_msg(get_bool(k, CKA_WRAP) == w, "row %zu", i);
        ck_assert_msg(get_bool(k, CKA_UNWRAP) == w, "row %zu", i);
        ck_assert_msg(get_bool(k, CKA_ENCRYPT) == !w, "row %zu", i);
        ck_assert_msg(get_bool(k, CKA_DECRYPT) == !w, "row %zu", i);
        ck_assert_msg(get_bool(k, CKA_SIGN) == !w, "row %zu", i);
        ck_assert_msg(get_bool(k, CKA_VERIFY) == !w, "row %zu", i);
        ck_assert(!get_bool(k, CKA_DERIVE));
        /* switching the other role on is refused; the key is unchanged */
        CK_ATTRIBUTE on = {w ? CKA_DECRYPT : CKA_UNWRAP, &yes, 1};
        RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &on, 1));
        ck_assert(!get_bool(k, on.type));
        CK_OBJECT_HANDLE c;
        RV(CKR_TEMPLATE_INCONSISTENT, P->C_CopyObject(s, k, &on, 1, &c));
        /* the own role may be switched off, and on again */
        CK_ATTRIBUTE off = {w ? CKA_WRAP : CKA_ENCRYPT, &no, 1};
        CK(P->C_SetAttributeValue(s, k, &off, 1));
        off.pValue = &yes;
        CK(P->C_SetAttributeValue(s, k, &off, 1));
        CK(P->C_CopyObject(s, k, NULL, 0, &c));
    }
    /* a template asking for both */
    CK_ATTRIBUTE both[] = {{CKA_VALUE_LEN, &l, sizeof(l)},
                           {CKA_UNWRAP, &yes, 1},
                           {CKA_ENCRYPT, &yes, 1}};
    CK_OBJECT_HANDLE k;
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_GenerateKey(s, &gm, both, 3, &k));
    CK_ATTRIBUTE cboth[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                            {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                            {CKA_VALUE, key32, 32},
                            {CKA_WRAP, &yes, 1},
                            {CKA_DECRYPT, &yes, 1}};
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CreateObject(s, cboth, N(cboth), &k));
    /* C_UnwrapKey: its template, and a CKA_UNWRAP_TEMPLATE forcing both */
    CK_OBJECT_HANDLE kek = kt_test_wrap_key(s, 32, false, false, "kek");
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    unsigned char w[64];
    CK_ULONG wl = sizeof(w);
    CK(P->C_WrapKey(s, &m, kek, dek, w, &wl));
    CK_ATTRIBUTE ut[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_WRAP, &yes, 1},
                         {CKA_DECRYPT, &yes, 1}};
    RV(CKR_TEMPLATE_INCONSISTENT,
       P->C_UnwrapKey(s, &m, kek, w, wl, ut, N(ut), &k));
    CK_ATTRIBUTE forced[] = {{CKA_WRAP, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    CK_ATTRIBUTE fk[] = {{CKA_CLASS, &c_secret, sizeof(c_secret)},
                         {CKA_KEY_TYPE, &k_aes, sizeof(k_aes)},
                         {CKA_VALUE, key32, 32},
                         {CKA_UNWRAP, &yes, 1},
                         {CKA_UNWRAP_TEMPLATE, forced, sizeof(forced)}};
    CK_OBJECT_HANDLE f;
    CK(P->C_CreateObject(s, fk, N(fk), &f));
    unsigned char w2[64];
    CK_ULONG wl2 = sizeof(w2);
    CK(P->C_WrapKey(s, &m, f, dek, w2, &wl2));
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_UnwrapKey(s, &m, f, w2, wl2, ut, 2, &k));
    /* an unwrapped key defaults to encrypt/decrypt */
    CK(P->C_UnwrapKey(s, &m, kek, w, wl, ut, 2, &k));
    ck_assert(get_bool(k, CKA_DECRYPT) && !get_bool(k, CKA_UNWRAP));
    /* RSA keys are not concerned */
    CK_MECHANISM rg = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                         {CKA_WRAP, &yes, 1},
                         {CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_UNWRAP, &yes, 1}, {CKA_DECRYPT, &yes, 1}};
    CK_OBJECT_HANDLE pub, priv;
    CK(P->C_GenerateKeyPair(s, &rg, pt, N(pt), vt, N(vt), &pub, &priv));
}
END_TEST

/* legacy_mechanisms = yes permits both roles and keeps the old defaults;
 * a key stored with both serves neither once it is off again, until one
 * role is switched off. */
START_TEST(test_key_roles_legacy_and_stored)
{
    /* keytier's policy (SECURITY.md); SoftHSM2 has its own */
    if (kt_test_is_softhsm())
        return;
    CK(P->C_Finalize(NULL));
    kt_test_write_config("legacy_mechanisms = yes\n");
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("objects"));
    CK_ULONG l = 32;
    CK_MECHANISM gm = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &l, sizeof(l)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_LABEL, "dual", 4}};
    CK_OBJECT_HANDLE k;
    CK(P->C_GenerateKey(s, &gm, t, N(t), &k));
    ck_assert(get_bool(k, CKA_WRAP) && get_bool(k, CKA_UNWRAP) &&
              get_bool(k, CKA_ENCRYPT) && get_bool(k, CKA_DECRYPT));
    CK_OBJECT_HANDLE dek = kt_test_aes_key(s, 32, false, true, "dek");
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    unsigned char w[64];
    CK_ULONG wl = sizeof(w);
    CK(P->C_WrapKey(s, &m, k, dek, w, &wl));
    CK(P->C_EncryptInit(s, &ecb, k));
    CK(P->C_EncryptFinal(s, NULL, &wl));
    CK(P->C_Finalize(NULL));
    kt_test_write_config(NULL);
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("objects"));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE q[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "dual", 4}};
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, q, N(q)));
    CK(P->C_FindObjects(s, &k, 1, &n));
    CK(P->C_FindObjectsFinal(s));
    ck_assert_uint_eq(n, 1);
    dek = kt_test_aes_key(s, 32, false, true, "dek");
    wl = sizeof(w);
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_WrapKey(s, &m, k, dek, w, &wl));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_EncryptInit(s, &ecb, k));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_DecryptInit(s, &ecb, k));
    /* relabelled, still refused; a role switched off: the other works */
    CK_ATTRIBUTE lbl = {CKA_LABEL, "dual2", 5};
    CK(P->C_SetAttributeValue(s, k, &lbl, 1));
    CK_ATTRIBUTE on = {CKA_WRAP, &yes, 1};
    RV(CKR_ATTRIBUTE_READ_ONLY, P->C_SetAttributeValue(s, k, &on, 1));
    CK_OBJECT_HANDLE c;
    RV(CKR_TEMPLATE_INCONSISTENT, P->C_CopyObject(s, k, NULL, 0, &c));
    CK_ATTRIBUTE off[] = {{CKA_ENCRYPT, &no, 1}, {CKA_DECRYPT, &no, 1}};
    CK(P->C_SetAttributeValue(s, k, off, 2));
    wl = sizeof(w);
    CK(P->C_WrapKey(s, &m, k, dek, w, &wl));
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, P->C_EncryptInit(s, &ecb, k));
}
END_TEST

static Suite *objects_suite(void)
{
    Suite *su = suite_create("objects");
    TCase *tc = tcase_create("objects");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_create_and_get_data_object);
    tcase_add_test(tc, test_create_template_errors);
    tcase_add_test(tc, test_session_state_for_objects);
    tcase_add_test(tc, test_private_objects_invisible_until_login);
    tcase_add_test(tc, test_generate_key_rules);
    tcase_add_test(tc, test_set_attribute_rules);
    tcase_add_test(tc, test_copy_and_destroy_rules);
    tcase_add_test(tc, test_find_objects);
    tcase_add_test(tc, test_find_by_label_index);
    tcase_add_test(tc, test_non_extractable_matrix);
    tcase_add_test(tc, test_wrap_with_trusted_and_wrap_template);
    tcase_add_test(tc, test_unwrap_template_enforced);
    tcase_add_test(tc, test_key_usage_and_allowed_mechanisms);
    tcase_add_test(tc, test_key_roles);
    tcase_add_test(tc, test_key_roles_legacy_and_stored);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(objects_suite)
