/* Attacks on keytier's token files that need its file format: run against
 * keytier only, with the module's own store code (linked in) doing the
 * attacker's cryptography.
 *
 * - offline: a former holder of the user PIN who kept a copy of the file
 *   opens the master key from the old PIN record and tries to unseal a key
 *   created after C_SetPIN;
 * - an attacker who can write the whole token directory replaces
 *   <serial>.key with a key of their own and makes the database (every
 *   record MAC, the manifest) and <serial>.seq authentic under it. */
#include "sec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "kt.h"
#include "ossl/ossl.h"
#include "store/store.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void read_serial(sqlite3 *h, char serial[KT_SERIAL_LEN])
{
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "SELECT v FROM meta WHERE k = "
                                        "'serial'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_bytes(st, 0), KT_SERIAL_LEN);
    memcpy(serial, sqlite3_column_text(st, 0), KT_SERIAL_LEN);
    sqlite3_finalize(st);
}

static CK_ULONG find(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                     const char *label)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, t, N(t)));
    CK(P->C_FindObjects(s, h, 4, &n));
    CK(P->C_FindObjectsFinal(s));
    return n;
}

static void setup(void)
{
    kt_test_setup();
    ck_assert_int_eq(kt_ossl_init(false), CKR_OK);
}

/* ---- the offline attack with an old PIN and an old copy of the file -- */

START_TEST(test_offline_old_pin_record)
{
    static const unsigned char secret[32] = "KEY-CREATED-AFTER-THE-PIN-CHANGE";
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("offline"));
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    ck_assert_int_eq(kt_test_sh("cp '%s' '%s/old-copy.db'", db, kt_test_dir),
                     0);
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("offline"));
    CK(P->C_SetPIN(s, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN),
                   (CK_UTF8CHAR_PTR) "new-user-pin", 12));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    const char *label = "after-change";
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, (void *)secret, sizeof(secret)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_SENSITIVE, &yes, 1},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    CK(P->C_Finalize(NULL));

    /* The old record and the old PIN give the old master key. */
    char old[400], serial[KT_SERIAL_LEN];
    struct kt_pin pins[2];
    unsigned char mk[32];
    sqlite3 *oh, *nh;
    snprintf(old, sizeof(old), "%s/old-copy.db", kt_test_dir);
    ck_assert_int_eq(sqlite3_open(old, &oh), SQLITE_OK);
    read_serial(oh, serial);
    ck_assert_int_eq(kt_store_read_pins(oh, old, pins), CKR_OK);
    sqlite3_close(oh);
    ck_assert_int_eq(kt_pin_open(&pins[KT_PIN_USER],
                                 (const unsigned char *)USER_PIN,
                                 strlen(USER_PIN), mk, KT_PIN_USER, serial),
                     CKR_OK);

    /* ... tried on every row of the current file. */
    bool opened = false;
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_open(db, &nh), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(nh, "SELECT id, attrs FROM objects", -1, &st, NULL),
        SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        kt_attrs a;
        CK_OBJECT_CLASS c = 0;
        kt_attrs_init(&a);
        rows++;
        if (kt_attrs_parse(&a, sqlite3_column_blob(st, 1),
                           (size_t)sqlite3_column_bytes(st, 1)) == CKR_OK &&
            kt_attrs_get_ulong(&a, CKA_CLASS, &c) == CKR_OK &&
            kt_seal_open_attrs(mk, sqlite3_column_int64(st, 0), c, &a) ==
                CKR_OK) {
            const CK_ATTRIBUTE *v = kt_attrs_find(&a, CKA_VALUE);
            opened = opened || (v != NULL && v->ulValueLen == sizeof(secret) &&
                                memcmp(v->pValue, secret, 32) == 0);
        }
        kt_attrs_clear(&a);
    }
    sqlite3_finalize(st);
    ck_assert_int_eq(rows, 1);
    /* and the old PIN against the current records */
    struct kt_pin now[2];
    unsigned char mk2[32];
    ck_assert_int_eq(kt_store_read_pins(nh, db, now), CKR_OK);
    sqlite3_close(nh);
    bool old_pin_opens =
        kt_pin_open(&now[KT_PIN_USER], (const unsigned char *)USER_PIN,
                    strlen(USER_PIN), mk2, KT_PIN_USER, serial) == CKR_OK;
    SEC_REFUSED(!opened && !old_pin_opens,
                "old PIN + the PIN record of an old copy of the file opened "
                "a key created after C_SetPIN");
    kt_wipe(mk, sizeof(mk));
    kt_wipe(mk2, sizeof(mk2));
}
END_TEST

/* ---- .key replaced, everything re-MACed with it ---------------------- */

static const char genuine[] = "https://updates.example/genuine-0123";
static const char forged[] = "https://updates.evil.example/fake-01";

/* The attacker's rewrite: a new integrity key, every row's record MAC, the
 * manifest (terms, PIN records, counter) and .seq made under it, and a
 * public object's value forged on the way. */
static void remac_with_own_key(const char *db)
{
    unsigned char ik[32], mac_key[32], man_key[32], seq_key[32];
    char serial[KT_SERIAL_LEN], base[512], key[600];
    struct kt_manifest m;
    struct kt_pin pins[2];
    sqlite3 *h;
    sqlite3_stmt *st, *up;
    memset(&m, 0, sizeof(m));
    memset(ik, 0xa5, sizeof(ik));
    kt_seal_mac_key(ik, mac_key);
    kt_seal_manifest_key(ik, man_key);
    kt_seal_seq_key(ik, seq_key);
    snprintf(base, sizeof(base), "%.*s", (int)strlen(db) - 3, db);
    snprintf(key, sizeof(key), "%s.key", base);
    FILE *fp = fopen(key, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(ik, 1, 32, fp), 32);
    fclose(fp);

    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    read_serial(h, serial);
    ck_assert_int_eq(sqlite3_exec(h, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h, "SELECT id, gen, attrs FROM objects",
                                        -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "UPDATE objects SET attrs = ?, mac "
                                        "= ? WHERE id = ?",
                                        -1, &up, NULL),
                     SQLITE_OK);
    bool forged_one = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int64_t gen = sqlite3_column_int64(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        unsigned char *b = malloc(len), mac[32], term[32];
        memcpy(b, sqlite3_column_blob(st, 2), len);
        unsigned char *at = memmem(b, len, genuine, strlen(genuine));
        if (at != NULL) {
            memcpy(at, forged, strlen(forged));
            forged_one = true;
        }
        ck_assert_int_eq(kt_seal_record_mac(mac_key, id, gen, b, len, mac),
                         CKR_OK);
        ck_assert_int_eq(kt_seal_manifest_term(man_key, id, gen, mac, 32, term),
                         CKR_OK);
        for (int i = 0; i < 32; i++)
            m.acc[i] ^= term[i];
        m.count++;
        sqlite3_bind_blob(up, 1, b, (int)len, SQLITE_TRANSIENT);
        sqlite3_bind_blob(up, 2, mac, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 3, id);
        ck_assert_int_eq(sqlite3_step(up), SQLITE_DONE);
        sqlite3_reset(up);
        free(b);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    ck_assert(forged_one);
    ck_assert_int_eq(kt_store_read_pins(h, db, pins), CKR_OK);
    ck_assert_int_eq(kt_seal_pins_digest(man_key, pins, m.pins), CKR_OK);
    m.present = true;
    m.ctr = 1000;
    ck_assert_int_eq(kt_seal_manifest_sign(man_key, &m), CKR_OK);
    unsigned char row[112];
    for (int i = 0; i < 8; i++) {
        row[i] = (unsigned char)((uint64_t)m.count >> (8 * i));
        row[8 + i] = (unsigned char)((uint64_t)m.ctr >> (8 * i));
    }
    memcpy(row + 16, m.acc, 32);
    memcpy(row + 48, m.pins, 32);
    memcpy(row + 80, m.mac, 32);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "UPDATE meta SET v = ? WHERE k = "
                                        "'manifest'",
                                        -1, &up, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(up, 1, row, sizeof(row), SQLITE_TRANSIENT);
    ck_assert_int_eq(sqlite3_step(up), SQLITE_DONE);
    ck_assert_int_eq(sqlite3_changes(h), 1);
    sqlite3_finalize(up);
    ck_assert_int_eq(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    ck_assert_int_eq(kt_seq_advance(base, -1, seq_key, serial, m.ctr, true),
                     CKR_OK);
}

START_TEST(test_key_replaced_and_database_remaced)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("remac"));
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &no, 1},
        {CKA_LABEL, "update-url", 10},
        {CKA_VALUE, (void *)genuine, strlen(genuine)},
    };
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    (void)kt_test_aes_key(s, 32, true, false, "root");
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    remac_with_own_key(db);

    CK(P->C_Initialize(NULL));
    CK(P->C_OpenSession(kt_test_token_slot("remac"),
                        CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
    /* Before any login the rewritten file is authentic under the new key:
     * the forged public object is served (SECURITY.md: an attacker who can
     * write the whole token directory). */
    ck_assert_uint_eq(find(s, CKO_DATA, "update-url"), 1);
    CK_RV rv =
        P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
    SEC_REFUSED(rv != CKR_OK,
                "<serial>.key replaced and the database and .seq made "
                "authentic under it; the user logged in to the forged token");
    ck_assert_uint_eq(rv, CKR_DEVICE_ERROR);
    ck_assert(kt_test_log_contains("does not belong to its master key"));
}
END_TEST

/* ---- a role's public key substituted before the other role's PIN change */

static void put_manifest(sqlite3 *h, const struct kt_manifest *m)
{
    unsigned char row[112];
    sqlite3_stmt *up;
    for (int i = 0; i < 8; i++) {
        row[i] = (unsigned char)((uint64_t)m->count >> (8 * i));
        row[8 + i] = (unsigned char)((uint64_t)m->ctr >> (8 * i));
    }
    memcpy(row + 16, m->acc, 32);
    memcpy(row + 48, m->pins, 32);
    memcpy(row + 80, m->mac, 32);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "UPDATE meta SET v = ? WHERE k = "
                                        "'manifest'",
                                        -1, &up, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(up, 1, row, sizeof(row), SQLITE_TRANSIENT);
    ck_assert_int_eq(sqlite3_step(up), SQLITE_DONE);
    sqlite3_finalize(up);
}

/* An attacker who can read <serial>.key and write the directory puts a
 * public key of their own in the user's PIN record (the manifest and .seq
 * made authentic again), then waits for the SO to change the SO PIN: the
 * new master key is boxed to every role's public key. */
START_TEST(test_public_key_substituted)
{
    static const unsigned char secret[32] = "ROOT-KEY-MATERIAL-0123456789abcd";
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("subst");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, (void *)secret, sizeof(secret)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_SENSITIVE, &yes, 1},
                        {CKA_LABEL, "root", 4}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, N(t), &h));
    CK(P->C_Finalize(NULL));

    char db[512], base[512], key[600], serial[KT_SERIAL_LEN];
    unsigned char ik[32], man_key[32], seq_key[32], priv[32], pub[32];
    kt_test_token_db_path(db, sizeof(db));
    snprintf(base, sizeof(base), "%.*s", (int)strlen(db) - 3, db);
    snprintf(key, sizeof(key), "%s.key", base);
    FILE *fp = fopen(key, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fread(ik, 1, 32, fp), 32);
    fclose(fp);
    kt_seal_manifest_key(ik, man_key);
    kt_seal_seq_key(ik, seq_key);
    ck_assert_int_eq(kt_ossl_x25519_keygen(priv, pub), CKR_OK);
    sqlite3 *dh;
    sqlite3_stmt *st;
    struct kt_pin pins[2];
    ck_assert_int_eq(sqlite3_open(db, &dh), SQLITE_OK);
    read_serial(dh, serial);
    ck_assert_int_eq(sqlite3_prepare_v2(dh,
                                        "UPDATE pins SET pub = ? WHERE who = "
                                        "1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(st, 1, pub, 32, SQLITE_TRANSIENT);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    ck_assert_int_eq(kt_store_read_pins(dh, db, pins), CKR_OK);
    struct kt_manifest m;
    memset(&m, 0, sizeof(m));
    ck_assert_int_eq(
        sqlite3_prepare_v2(dh, "SELECT v FROM meta WHERE k = 'manifest'", -1,
                           &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_bytes(st, 0), 112);
    const unsigned char *row = sqlite3_column_blob(st, 0);
    for (int i = 0; i < 8; i++) {
        m.count |= (int64_t)row[i] << (8 * i);
        m.ctr |= (int64_t)row[8 + i] << (8 * i);
    }
    memcpy(m.acc, row + 16, 32);
    sqlite3_finalize(st);
    m.present = true;
    m.ctr++;
    ck_assert_int_eq(kt_seal_pins_digest(man_key, pins, m.pins), CKR_OK);
    ck_assert_int_eq(kt_seal_manifest_sign(man_key, &m), CKR_OK);
    put_manifest(dh, &m);
    sqlite3_close(dh);
    ck_assert_int_eq(kt_seq_advance(base, -1, seq_key, serial, m.ctr, true),
                     CKR_OK);

    /* The SO changes the SO PIN. */
    CK(P->C_Initialize(NULL));
    CK(P->C_OpenSession(kt_test_token_slot("subst"),
                        CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
    CK(P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK_RV rv = P->C_SetPIN(s, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN),
                           (CK_UTF8CHAR_PTR) "new-so-pin", 10);
    CK(P->C_Finalize(NULL));

    /* The attacker opens the user's box with their private key. */
    bool got = false;
    unsigned char mk[32];
    ck_assert_int_eq(sqlite3_open(db, &dh), SQLITE_OK);
    ck_assert_int_eq(kt_store_read_pins(dh, db, pins), CKR_OK);
    if (kt_pin_open_box(&pins[KT_PIN_USER], priv, mk, KT_PIN_USER, serial) ==
        CKR_OK) {
        ck_assert_int_eq(sqlite3_prepare_v2(dh, "SELECT id, attrs FROM objects",
                                            -1, &st, NULL),
                         SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            kt_attrs a;
            kt_attrs_init(&a);
            if (kt_attrs_parse(&a, sqlite3_column_blob(st, 1),
                               (size_t)sqlite3_column_bytes(st, 1)) == CKR_OK &&
                kt_seal_open_attrs(mk, sqlite3_column_int64(st, 0),
                                   CKO_SECRET_KEY, &a) == CKR_OK) {
                const CK_ATTRIBUTE *v = kt_attrs_find(&a, CKA_VALUE);
                got = got || (v != NULL && v->ulValueLen == 32 &&
                              memcmp(v->pValue, secret, 32) == 0);
            }
            kt_attrs_clear(&a);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(dh);
    SEC_REFUSED(!got, "a public key of the attacker's put in the user's PIN "
                      "record received the master key of the next PIN "
                      "change");
    ck_assert_uint_eq(rv, CKR_DEVICE_ERROR);
    ck_assert(kt_test_log_contains("is not bound to the master key"));
    kt_wipe(mk, sizeof(mk));
    kt_wipe(priv, sizeof(priv));
    kt_wipe(ik, sizeof(ik));
}
END_TEST

static Suite *offline_suite(void)
{
    Suite *su = suite_create("security-store-offline");
    TCase *tc = tcase_create("store-offline");
    tcase_add_checked_fixture(tc, setup, kt_test_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_offline_old_pin_record);
    tcase_add_test(tc, test_key_replaced_and_database_remaced);
    tcase_add_test(tc, test_public_key_substituted);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(offline_suite)
