/* Attacks on the token files by someone who can write them but knows no
 * PIN: public objects edited or injected and served to sessions that are
 * not logged in, the database rolled back to an older copy, a retry
 * counter reset after a lockout, an old PIN record put back after a PIN
 * change.
 *
 * The files are edited the way an attacker would: bytes replaced in place
 * (the same edit works on keytier's SQLite file and on SoftHSM2's object
 * files), rows written with sqlite3, files copied back from a backup. */
#include "sec.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sqlite3.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char msg[] = "pay 1000000 to the attacker";

static void restart(void)
{
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
}

static CK_SESSION_HANDLE public_session(const char *label)
{
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(kt_test_token_slot(label),
                        CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
    return s;
}

static CK_ULONG find(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                     const char *label, CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, t, N(t)));
    CK(P->C_FindObjects(s, h, 4, &n));
    CK(P->C_FindObjectsFinal(s));
    if (n > 0 && out != NULL)
        *out = h[0];
    return n;
}

static bool log_has(const char *needle)
{
    return kt_test_is_softhsm() || kt_test_log_contains(needle);
}

/* ---- file edits ------------------------------------------------------- */

static const unsigned char *rep_from, *rep_to;
static size_t rep_len;
static int rep_count;

static int replace_cb(const char *path, const struct stat *sb, int type,
                      struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || sb->st_size <= 0)
        return 0;
    FILE *fp = fopen(path, "r+b");
    if (fp == NULL)
        return 0;
    size_t len = (size_t)sb->st_size;
    unsigned char *b = malloc(len);
    bool changed = false;
    if (b != NULL && fread(b, 1, len, fp) == len) {
        for (size_t i = 0; i + rep_len <= len; i++) {
            if (memcmp(b + i, rep_from, rep_len) == 0) {
                memcpy(b + i, rep_to, rep_len);
                rep_count++;
                changed = true;
            }
        }
        if (changed) {
            rewind(fp);
            ck_assert_uint_eq(fwrite(b, 1, len, fp), len);
        }
    }
    free(b);
    fclose(fp);
    return 0;
}

/* Replaces every occurrence of from by to (same length) in every file of
 * the token directory; returns how many were replaced. */
static int token_files_replace(const void *from, const void *to, size_t len)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/tokens", kt_test_dir);
    rep_from = from;
    rep_to = to;
    rep_len = len;
    rep_count = 0;
    ck_assert_int_eq(nftw(dir, replace_cb, 16, FTW_PHYS), 0);
    return rep_count;
}

static void db_exec(const char *sql)
{
    char db[512];
    sqlite3 *h;
    char *err = NULL;
    kt_test_token_db_path(db, sizeof(db));
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(h, sql, NULL, NULL, &err) == SQLITE_OK, "%s",
                  err != NULL ? err : "");
    sqlite3_close(h);
}

static void backup_tokens(const char *name)
{
    ck_assert_int_eq(
        kt_test_sh("cp -a '%s/tokens' '%s/%s'", kt_test_dir, kt_test_dir, name),
        0);
}

/* ---- 1. a public RSA key's modulus replaced --------------------------- */

static void *attr_value(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                        CK_ATTRIBUTE_TYPE type, CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK(P->C_GetAttributeValue(s, h, &a, 1));
    a.pValue = malloc(a.ulValueLen);
    CK(P->C_GetAttributeValue(s, h, &a, 1));
    *len = a.ulValueLen;
    return a.pValue;
}

/* The attacker's own RSA key of the same size: its modulus, and its
 * signature (PKCS#1 v1.5, SHA-256) over msg. */
static void attacker_rsa(size_t n_len, unsigned char *n, unsigned char *sig,
                         size_t *sig_len)
{
    EVP_PKEY *k = EVP_RSA_gen((unsigned)(n_len * 8));
    ck_assert_ptr_nonnull(k);
    BIGNUM *bn = NULL;
    ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &bn) == 1);
    ck_assert_int_eq(BN_bn2binpad(bn, n, (int)n_len), (int)n_len);
    BN_free(bn);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    ck_assert(EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, k) == 1);
    ck_assert(EVP_DigestSign(c, sig, sig_len, (const unsigned char *)msg,
                             strlen(msg)) == 1);
    EVP_MD_CTX_free(c);
    EVP_PKEY_free(k);
}

START_TEST(test_public_key_modulus_replaced)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("sigtoken");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {0x01, 0x00, 0x01};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    const char *label = "release-signing";
    CK_ATTRIBUTE pt[] = {
        {CKA_MODULUS_BITS, &bits, sizeof(bits)},
        {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &no, 1},
        {CKA_VERIFY, &yes, 1},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, 1},
                         {CKA_SIGN, &yes, 1},
                         {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE pub, priv;
    CK(P->C_GenerateKeyPair(s, &gen, pt, N(pt), vt, N(vt), &pub, &priv));
    CK_ULONG n_len = 0;
    unsigned char *n = attr_value(s, pub, CKA_MODULUS, &n_len);
    ck_assert_uint_eq(n_len, 256);
    CK(P->C_Finalize(NULL));

    unsigned char evil_n[256], sig[512];
    size_t sig_len = sizeof(sig);
    attacker_rsa(n_len, evil_n, sig, &sig_len);
    if (token_files_replace(n, evil_n, n_len) == 0) {
        free(n);
        SEC_NA("the modulus is not stored in plain in the token files");
        return;
    }
    free(n);

    CK(P->C_Initialize(NULL));
    s = public_session("sigtoken");
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    bool accepted = false;
    if (find(s, CKO_PUBLIC_KEY, label, &h) > 0) {
        CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
        if (P->C_VerifyInit(s, &m, h) == CKR_OK)
            accepted = P->C_Verify(s, (CK_BYTE_PTR)msg, strlen(msg), sig,
                                   sig_len) == CKR_OK;
    }
    SEC_REFUSED(!accepted, "public key's CKA_MODULUS replaced in the token "
                           "files; the attacker's signature verified in a "
                           "session that is not logged in");
    ck_assert(log_has("refused: integrity check failed"));
}
END_TEST

/* ---- 2. a public data object edited, a row injected -------------------- */

static const char genuine[] = "https://updates.example/genuine-0123";
static const char forged[] = "https://updates.evil.example/fake-01";

static void public_data(CK_SESSION_HANDLE s, const char *label,
                        const char *value)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &no, 1},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)value, strlen(value)},
    };
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
}

/* The value of the public data object labelled label, as served to s
 * (false if it is not found). */
static bool data_value(CK_SESSION_HANDLE s, const char *label, char *out,
                       size_t len)
{
    CK_OBJECT_HANDLE h;
    if (find(s, CKO_DATA, label, &h) == 0)
        return false;
    CK_ATTRIBUTE a = {CKA_VALUE, out, len - 1};
    if (P->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
        return false;
    out[a.ulValueLen] = '\0';
    return true;
}

START_TEST(test_public_data_edited)
{
    ck_assert_uint_eq(sizeof(genuine), sizeof(forged));
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("datatok"));
    public_data(s, "update-url", genuine);
    CK(P->C_Finalize(NULL));
    if (token_files_replace(genuine, forged, strlen(genuine)) == 0) {
        SEC_NA("the value is not stored in plain in the token files");
        return;
    }
    CK(P->C_Initialize(NULL));
    s = public_session("datatok");
    char v[128];
    bool served =
        data_value(s, "update-url", v, sizeof(v)) && strcmp(v, forged) == 0;
    SEC_REFUSED(!served, "public data object's CKA_VALUE edited in the token "
                         "files and served before login");
    ck_assert(log_has("refused: integrity check failed"));
}
END_TEST

/* keytier: the row whose attributes hold `label`, copied as a new row
 * (next id and generation, its MAC copied as it is) with the label
 * replaced by `as` (same length). */
static void inject_row(const char *label, const char *as)
{
    char db[512];
    sqlite3 *h;
    sqlite3_stmt *st, *ins;
    kt_test_token_db_path(db, sizeof(db));
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "SELECT id, attrs, mac, (SELECT "
                                        "max(gen) FROM objects) FROM objects",
                                        -1, &st, NULL),
                     SQLITE_OK);
    bool done = false;
    while (!done && sqlite3_step(st) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        unsigned char *b = malloc(len);
        memcpy(b, sqlite3_column_blob(st, 1), len);
        unsigned char *at = memmem(b, len, label, strlen(label));
        if (at != NULL) {
            memcpy(at, as, strlen(as));
            ck_assert_int_eq(sqlite3_prepare_v2(h,
                                                "INSERT INTO objects(id, gen, "
                                                "attrs, mac) VALUES (?,?,?,?)",
                                                -1, &ins, NULL),
                             SQLITE_OK);
            sqlite3_bind_int64(ins, 1, sqlite3_column_int64(st, 0) + 1);
            sqlite3_bind_int64(ins, 2, sqlite3_column_int64(st, 3) + 1);
            sqlite3_bind_blob(ins, 3, b, (int)len, SQLITE_TRANSIENT);
            sqlite3_bind_blob(ins, 4, sqlite3_column_blob(st, 2),
                              sqlite3_column_bytes(st, 2), SQLITE_TRANSIENT);
            ck_assert_int_eq(sqlite3_step(ins), SQLITE_DONE);
            sqlite3_finalize(ins);
            done = true;
        }
        free(b);
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    ck_assert(done);
}

/* A copy of a genuine public object with another label, as a new row (its
 * MAC copied too: the attacker has no key to make one) or, on SoftHSM2, as
 * a new object file. */
START_TEST(test_public_row_injected)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("injtok"));
    public_data(s, "genuine-label", genuine);
    CK(P->C_Finalize(NULL));
    if (kt_test_is_softhsm()) {
        /* The object's file, copied under a new name, label changed. */
        char cmd[600], file[512] = "";
        snprintf(cmd, sizeof(cmd),
                 "grep -l 'genuine-label' %s/tokens/*/*.object | head -1",
                 kt_test_dir);
        FILE *fp = popen(cmd, "r");
        ck_assert_ptr_nonnull(fp);
        if (fgets(file, sizeof(file), fp) == NULL)
            file[0] = '\0';
        pclose(fp);
        file[strcspn(file, "\n")] = '\0';
        if (file[0] == '\0') {
            SEC_NA("the label is not stored in plain in an object file");
            return;
        }
        ck_assert_int_eq(
            kt_test_sh("d=$(dirname '%s'); "
                       "sed 's/genuine-label/injected-lbl!/' '%s' > "
                       "\"$d/0badc0de-0000-4000-8000-00000000feed.object\"",
                       file, file),
            0);
    } else {
        inject_row("genuine-label", "injected-lbl!");
    }
    CK(P->C_Initialize(NULL));
    s = public_session("injtok");
    char v[128];
    bool served = data_value(s, "injected-lbl!", v, sizeof(v));
    SEC_REFUSED(!served, "a public object injected into the token files and "
                         "served before login");
}
END_TEST

/* ---- 3. the database alone rolled back -------------------------------- */

/* A public data object "revoked-cert" is destroyed after a backup; the
 * backup of the database (SoftHSM2: the object's file) is put back. */
START_TEST(test_database_rolled_back)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("rbtok"));
    public_data(s, "revoked-cert", genuine);
    public_data(s, "bystander", genuine);
    CK(P->C_Finalize(NULL));
    backup_tokens("backup");
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("rbtok"));
    CK_OBJECT_HANDLE h;
    ck_assert_uint_eq(find(s, CKO_DATA, "revoked-cert", &h), 1);
    CK(P->C_DestroyObject(s, h));
    CK(P->C_Finalize(NULL));
    if (kt_test_is_softhsm()) {
        /* No single database: every file the backup has and the token
         * lost comes back. */
        ck_assert_int_eq(kt_test_sh("cp -an '%s/backup/.' '%s/tokens/'",
                                    kt_test_dir, kt_test_dir),
                         0);
    } else {
        char db[512];
        kt_test_token_db_path(db, sizeof(db));
        const char *name = strrchr(db, '/') + 1;
        ck_assert_int_eq(kt_test_sh("rm -f '%s-wal' '%s-shm'; cp "
                                    "'%s/backup/%s' '%s'",
                                    db, db, kt_test_dir, name, db),
                         0);
    }
    CK(P->C_Initialize(NULL));
    s = public_session("rbtok");
    bool back = find(s, CKO_DATA, "revoked-cert", NULL) > 0;
    CK_RV login =
        P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
    if (login == CKR_OK)
        back = back || find(s, CKO_DATA, "revoked-cert", NULL) > 0;
    SEC_REFUSED(!back, "token database rolled back to an older copy: a "
                       "destroyed object is served again");
    if (!kt_test_is_softhsm()) {
        ck_assert_uint_eq(login, CKR_DEVICE_ERROR);
        ck_assert(log_has("the database was rolled back"));
        ck_assert(log_has("recorded in its .seq file"));
    }
}
END_TEST

/* ---- 4. the retry counter reset after a lockout ----------------------- */

START_TEST(test_pin_counter_reset_after_lockout)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("locktok");
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    CK_RV rv = CKR_OK;
    for (int i = 0; i < 12 && rv != CKR_PIN_LOCKED; i++)
        rv = P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9);
    if (rv != CKR_PIN_LOCKED) {
        SEC_NA("no PIN lockout after 12 wrong PINs");
        return;
    }
    RV(CKR_PIN_LOCKED,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    /* The attacker resets the counter in the file, in a running process's
     * view (another process) and for the next one. */
    db_exec("UPDATE pins SET failures = 0");
    rv = P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
    bool unlocked = rv == CKR_OK;
    if (unlocked)
        CK(P->C_Logout(s));
    restart();
    s = public_session("locktok");
    rv = P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
    unlocked = unlocked || rv == CKR_OK;
    SEC_REFUSED(!unlocked, "PIN retry counter reset in the token database "
                           "after a lockout; the locked PIN logged in");
    ck_assert(log_has("PIN records do not match the object manifest"));
}
END_TEST

/* ---- 5. an old PIN record put back after C_SetPIN ---------------------- */

START_TEST(test_old_pin_record_restored)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("pintok"));
    CK(P->C_Finalize(NULL));
    backup_tokens("before-change");
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("pintok"));
    CK(P->C_SetPIN(s, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN),
                   (CK_UTF8CHAR_PTR) "new-user-pin", 12));
    /* A key made after the change, which the old PIN must never reach. */
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, true, false, "after-change");
    (void)k;
    CK(P->C_Finalize(NULL));
    if (kt_test_is_softhsm()) {
        /* SoftHSM2 keeps the PIN-wrapped token key in token.object. */
        ck_assert_int_eq(
            kt_test_sh("cd '%s/before-change' && for f in */token.object; "
                       "do cp \"$f\" \"%s/tokens/$f\"; done",
                       kt_test_dir, kt_test_dir),
            0);
    } else {
        char db[512], sql[1200];
        kt_test_token_db_path(db, sizeof(db));
        const char *name = strrchr(db, '/') + 1;
        snprintf(sql, sizeof(sql),
                 "ATTACH '%s/before-change/%s' AS old; DELETE FROM main.pins; "
                 "INSERT INTO main.pins SELECT * FROM old.pins;",
                 kt_test_dir, name);
        db_exec(sql);
    }
    CK(P->C_Initialize(NULL));
    s = public_session("pintok");
    bool used = false;
    if (P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)) ==
            CKR_OK &&
        find(s, CKO_SECRET_KEY, "after-change", &k) == 1) {
        unsigned char in[16] = {1}, out[16];
        CK_ULONG ol = sizeof(out);
        CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
        used = P->C_EncryptInit(s, &m, k) == CKR_OK &&
               P->C_Encrypt(s, in, 16, out, &ol) == CKR_OK;
    }
    SEC_REFUSED(!used, "the PIN record from before C_SetPIN put back; the old "
                       "PIN used a key made after the change");
    ck_assert(log_has("PIN records do not match the object manifest"));
}
END_TEST

static Suite *store_suite(void)
{
    Suite *su = suite_create("security-store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, kt_test_setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_public_key_modulus_replaced);
    tcase_add_test(tc, test_public_data_edited);
    tcase_add_test(tc, test_public_row_injected);
    tcase_add_test(tc, test_database_rolled_back);
    tcase_add_test(tc, test_pin_counter_reset_after_lockout);
    tcase_add_test(tc, test_old_pin_record_restored);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(store_suite)
