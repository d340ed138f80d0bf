#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "store.h"
#include "store_stmt.h"
#include "testenv.h"

static const char *const tokens[] = {"VaultA", "VaultB", "VaultC", "Service"};

static void run(const char *cmd)
{
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
}

void testenv_store_init(struct testenv *t)
{
    snprintf(t->store, sizeof t->store, "%s/store/keytier.db", t->dir);
    const char *pg = getenv("KT_TEST_PG");
    if (pg == NULL || *pg == '\0')
        return;
    const char *base = strrchr(t->dir, '-'); /* mkdtemp's random part */
    snprintf(t->pg_db, sizeof t->pg_db, "kt_%s", base ? base + 1 : "x");
    for (char *p = t->pg_db; *p; p++)
        if (!isalnum((unsigned char)*p))
            *p = '_';
        else
            *p = (char)tolower((unsigned char)*p);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "psql -qAt '%s' -c 'CREATE DATABASE %s' >/dev/null", pg, t->pg_db);
    run(cmd);
    snprintf(t->store, sizeof t->store, "%s dbname=%s", pg, t->pg_db);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/store", t->dir);
    run(cmd);
}

bool testenv_is_pg(const struct testenv *t)
{
    return t->pg_db[0] != '\0';
}

void testenv_setup(struct testenv *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "%s/kt-lib-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    const char *mod = getenv("SOFTHSM2_MODULE");
    snprintf(t->softhsm_module, sizeof t->softhsm_module, "%s",
             mod ? mod : "/usr/lib/softhsm/libsofthsm2.so");
    snprintf(t->softhsm_conf, sizeof t->softhsm_conf, "%s/softhsm2.conf",
             t->dir);
    snprintf(t->conf, sizeof t->conf, "%s/keytier-lib.conf", t->dir);
    t->service = "Service";
    const char *ktm = getenv("KT_MODULE");
    snprintf(t->keytier_module, sizeof t->keytier_module, "%s", ktm ? ktm : "");
    snprintf(t->keytier_conf, sizeof t->keytier_conf, "%s/keytier.conf",
             t->dir);
    testenv_store_init(t);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/softhsm", t->dir);
    run(cmd);
    FILE *f = fopen(t->softhsm_conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "directories.tokendir = %s/softhsm\nobjectstore.backend = file\n"
            "log.level = ERROR\n",
            t->dir);
    fclose(f);
    setenv("SOFTHSM2_CONF", t->softhsm_conf, 1);
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "softhsm2-util --init-token --free --label %s --pin 1234 "
                 "--so-pin 5678 >/dev/null",
                 tokens[i]);
        run(cmd);
    }
    char pinfile[320];
    snprintf(pinfile, sizeof pinfile, "%s/pin-a", t->dir);
    f = fopen(pinfile, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    fputs("1234\n", f);
    fclose(f);
    setenv("KT_TEST_PIN_B", "1234", 1);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void testenv_teardown(struct testenv *t)
{
    if (t->dir[0])
        nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    testenv_store_drop(t);
}

void testenv_store_drop(struct testenv *t)
{
    if (t->pg_db[0]) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "psql -qAt '%s' -c 'DROP DATABASE IF EXISTS %s WITH "
                 "(FORCE)' >/dev/null",
                 getenv("KT_TEST_PG"), t->pg_db);
        if (system(cmd) != 0)
            fprintf(stderr, "testenv: could not drop database %s\n", t->pg_db);
        if (t->pg_copy) {
            snprintf(cmd, sizeof cmd,
                     "psql -qAt '%s' -c 'DROP DATABASE IF EXISTS %s_copy "
                     "WITH (FORCE)' >/dev/null",
                     getenv("KT_TEST_PG"), t->pg_db);
            if (system(cmd) != 0)
                fprintf(stderr, "testenv: could not drop database %s_copy\n",
                        t->pg_db);
        }
        t->pg_db[0] = '\0';
    }
}

/* ---- SQL on the test's store ------------------------------------------- */

static struct kt_store *sql_open(const struct testenv *t)
{
    struct kt_store *st = NULL;
    keytier_err e = kt_store_open(t->store, &st);
    ck_assert_msg(e == KEYTIER_OK, "open store %s: %s", t->store,
                  keytier_last_error_detail());
    pthread_mutex_lock(&st->mu);
    return st;
}

static void sql_close(struct kt_store *st)
{
    pthread_mutex_unlock(&st->mu);
    kt_store_close(st);
}

void testenv_sql(const struct testenv *t, const char *sql)
{
    struct kt_store *st = sql_open(t);
    keytier_err e = kt_db_exec(st, "test SQL", sql);
    ck_assert_msg(e == KEYTIER_OK, "%s: %s", sql, keytier_last_error_detail());
    sql_close(st);
}

/* Prepares sql on st with ?1 bound to arg (when not NULL) and steps it
 * once; whether it gave a row. */
static bool sql_first(struct kt_stmt *s, struct kt_store *st, const char *sql,
                      const char *arg)
{
    bool row = false;
    kt_stmt_prep(s, st, "test SQL", sql);
    if (arg != NULL)
        kt_stmt_bind_text(s, 1, arg);
    keytier_err e = kt_stmt_step(s, &row);
    ck_assert_msg(e == KEYTIER_OK, "%s: %s", sql, keytier_last_error_detail());
    return row;
}

void testenv_sql_bind(const struct testenv *t, const char *sql, const char *arg,
                      const void *blob, size_t n)
{
    struct kt_store *st = sql_open(t);
    struct kt_stmt s;
    kt_stmt_prep(&s, st, "test SQL", sql);
    kt_stmt_bind_text(&s, 1, arg);
    if (blob != NULL)
        kt_stmt_bind_blob(&s, 2, blob, n);
    keytier_err e = kt_stmt_exec(&s);
    ck_assert_msg(e == KEYTIER_OK, "%s: %s", sql, keytier_last_error_detail());
    kt_stmt_done(&s);
    sql_close(st);
}

long long testenv_sql_int(const struct testenv *t, const char *sql,
                          const char *arg)
{
    struct kt_store *st = sql_open(t);
    struct kt_stmt s;
    long long v = -1;
    if (sql_first(&s, st, sql, arg))
        v = kt_stmt_col_int64(&s, 0);
    ck_assert_msg(kt_stmt_err(&s) == KEYTIER_OK, "%s: %s", sql,
                  keytier_last_error_detail());
    kt_stmt_done(&s);
    sql_close(st);
    return v;
}

char *testenv_sql_text(const struct testenv *t, const char *sql,
                       const char *arg)
{
    struct kt_store *st = sql_open(t);
    struct kt_stmt s;
    char buf[8192] = "";
    if (sql_first(&s, st, sql, arg))
        kt_stmt_col_text(&s, 0, buf, sizeof buf);
    ck_assert_msg(kt_stmt_err(&s) == KEYTIER_OK, "%s: %s", sql,
                  keytier_last_error_detail());
    ck_assert_msg(strlen(buf) < sizeof buf - 1, "%s: value too long", sql);
    kt_stmt_done(&s);
    sql_close(st);
    char *v = strdup(buf);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* A column's bytes into out: as they are when every one is printable,
 * else 'x' and their hex; the length written. */
static size_t col_repr(char *out, const uint8_t *v, size_t n)
{
    size_t i, len = 0;
    for (i = 0; i < n && isprint(v[i]); i++)
        ;
    if (i == n) {
        memcpy(out, v, n);
        out[n] = '\0';
        return n;
    }
    out[len++] = 'x';
    for (i = 0; i < n; i++)
        len += (size_t)sprintf(out + len, "%02x", v[i]);
    return len;
}

char *testenv_sql_rows(const struct testenv *t, const char *sql,
                       const char *arg, int ncols)
{
    struct kt_store *st = sql_open(t);
    struct kt_stmt s;
    uint8_t v[4096];
    size_t len = 0, cap = 1024, n;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    out[0] = '\0';
    for (bool row = sql_first(&s, st, sql, arg); row;) {
        for (int c = 0; c < ncols; c++) {
            ck_assert_msg(kt_stmt_col_blob(&s, c, v, sizeof v, &n),
                          "%s: column %d too long", sql, c);
            if (len + 2 * n + 4 > cap) {
                cap = 2 * (len + 2 * n + 4);
                out = realloc(out, cap);
                ck_assert_ptr_nonnull(out);
            }
            len += col_repr(out + len, v, n);
            len += (size_t)sprintf(out + len, c + 1 < ncols ? " " : "|");
        }
        ck_assert_msg(kt_stmt_step(&s, &row) == KEYTIER_OK, "%s: %s", sql,
                      keytier_last_error_detail());
    }
    ck_assert_msg(kt_stmt_err(&s) == KEYTIER_OK, "%s: %s", sql,
                  keytier_last_error_detail());
    kt_stmt_done(&s);
    sql_close(st);
    return out;
}

size_t testenv_sql_blob(const struct testenv *t, const char *sql,
                        const char *arg, void *buf, size_t cap)
{
    struct kt_store *st = sql_open(t);
    struct kt_stmt s;
    size_t n = 0;
    ck_assert_msg(sql_first(&s, st, sql, arg), "%s: no row", sql);
    ck_assert_msg(kt_stmt_col_blob(&s, 0, buf, cap, &n),
                  "%s: more than %zu bytes", sql, cap);
    ck_assert_msg(kt_stmt_err(&s) == KEYTIER_OK, "%s: %s", sql,
                  keytier_last_error_detail());
    kt_stmt_done(&s);
    sql_close(st);
    return n;
}

void testenv_sql_refuse(const struct testenv *t, const char *name,
                        const char *event, const char *table, const char *cond,
                        const char *msg)
{
    char when[512] = "", sql[2048];
    if (cond != NULL)
        snprintf(when, sizeof when, "WHEN (%s) ", cond);
    if (testenv_is_pg(t))
        snprintf(sql, sizeof sql,
                 "CREATE FUNCTION %s_fn() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$BEGIN RAISE EXCEPTION '%s'; END$$; CREATE TRIGGER %s %s ON "
                 "%s FOR EACH ROW %sEXECUTE FUNCTION %s_fn()",
                 name, msg, name, event, table, when, name);
    else
        snprintf(sql, sizeof sql,
                 "CREATE TRIGGER %s %s ON %s FOR EACH ROW %sBEGIN SELECT "
                 "RAISE(ABORT, '%s'); END",
                 name, event, table, when, msg);
    testenv_sql(t, sql);
}

void testenv_sql_allow(const struct testenv *t, const char *name,
                       const char *table)
{
    char sql[512];
    if (testenv_is_pg(t))
        snprintf(sql, sizeof sql,
                 "DROP TRIGGER %s ON %s; DROP FUNCTION %s_fn()", name, table,
                 name);
    else
        snprintf(sql, sizeof sql, "DROP TRIGGER %s", name);
    testenv_sql(t, sql);
}

void testenv_store_copy(struct testenv *t, char *out, size_t cap)
{
    char cmd[1024];
    if (testenv_is_pg(t)) {
        snprintf(cmd, sizeof cmd,
                 "psql -qAt '%s' -c 'CREATE DATABASE %s_copy TEMPLATE %s' "
                 ">/dev/null",
                 getenv("KT_TEST_PG"), t->pg_db, t->pg_db);
        run(cmd);
        t->pg_copy = true;
        snprintf(out, cap, "%s dbname=%s_copy", getenv("KT_TEST_PG"), t->pg_db);
        return;
    }
    snprintf(out, cap, "%.250s/store-copy.db", t->dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", t->store, out);
    run(cmd);
}

/* A raw PKCS#11 session on a SoftHSM2 token, for setting up roots. */
struct raw {
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE s;
};

static const char *module_of(struct testenv *t, const char *token)
{
    for (int i = 0; i < t->n_kt; i++)
        if (strcmp(t->kt_labels[i], token) == 0)
            return t->keytier_module;
    return t->softhsm_module;
}

static void raw_open(struct testenv *t, const char *token, struct raw *r)
{
    r->fl = p11_kit_module_load(module_of(t, token), 0);
    ck_assert_ptr_nonnull(r->fl);
    ck_assert_int_eq(p11_kit_module_initialize(r->fl), CKR_OK);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    ck_assert_int_eq(r->fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        ck_assert_int_eq(r->fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        size_t l = strlen(token);
        if (memcmp(ti.label, token, l) == 0 && ti.label[l] == ' ') {
            ck_assert_int_eq(r->fl->C_OpenSession(
                                 slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                 NULL, NULL, &r->s),
                             CKR_OK);
            CK_RV rv = r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)"1234", 4);
            ck_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
            return;
        }
    }
    ck_abort_msg("token %s not found", token);
}

static void raw_close(struct raw *r)
{
    r->fl->C_CloseSession(r->s);
    p11_kit_module_finalize(r->fl);
    p11_kit_module_release(r->fl);
}

void testenv_root_aes(struct testenv *t, const char *token, const char *label,
                      int flags)
{
    struct raw r;
    raw_open(t, token, &r);
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG len = (flags & ROOT_SMALL) ? 16 : 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BBOOL ext = (flags & ROOT_EXTRACTABLE) ? CK_TRUE : CK_FALSE;
    CK_BBOOL unw = (flags & ROOT_NO_UNWRAP) ? CK_FALSE : CK_TRUE;
    CK_BBOOL wr = (flags & ROOT_NO_WRAP) ? CK_FALSE : CK_TRUE;
    CK_BBOOL sens = (flags & ROOT_NOT_SENSITIVE) ? CK_FALSE : CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_VALUE_LEN, &len, sizeof len},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &sens, sizeof sens},
        {CKA_EXTRACTABLE, &ext, sizeof ext},
        {CKA_WRAP, &wr, sizeof wr},
        {CKA_UNWRAP, &unw, sizeof unw},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE h;
    ck_assert_int_eq(r.fl->C_GenerateKey(r.s, &mech, tmpl, 10, &h), CKR_OK);
    raw_close(&r);
}

void testenv_root_rsa(struct testenv *t, const char *token, const char *label,
                      int flags)
{
    struct raw r;
    raw_open(t, token, &r);
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = (flags & ROOT_SMALL) ? 1024 : 2048;
    CK_BYTE exp[] = {1, 0, 1};
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL ext = (flags & ROOT_EXTRACTABLE) ? CK_TRUE : CK_FALSE;
    CK_BBOOL unw = (flags & ROOT_NO_UNWRAP) ? CK_FALSE : CK_TRUE;
    CK_BBOOL wr = (flags & ROOT_NO_WRAP) ? CK_FALSE : CK_TRUE;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_MODULUS_BITS, &bits, sizeof bits},
        {CKA_PUBLIC_EXPONENT, exp, sizeof exp},
        {CKA_WRAP, &wr, sizeof wr},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)label, strlen(label)},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &ext, sizeof ext},
        {CKA_UNWRAP, &unw, sizeof unw},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE hp, hq;
    ck_assert_int_eq(
        r.fl->C_GenerateKeyPair(r.s, &mech, pub, 6, priv, 7, &hp, &hq), CKR_OK);
    raw_close(&r);
}

void testenv_destroy(struct testenv *t, const char *token, const char *label)
{
    struct raw r;
    raw_open(t, token, &r);
    CK_ATTRIBUTE tmpl[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG n = 0;
    ck_assert_int_eq(r.fl->C_FindObjectsInit(r.s, tmpl, 1), CKR_OK);
    ck_assert_int_eq(r.fl->C_FindObjects(r.s, objs, 8, &n), CKR_OK);
    r.fl->C_FindObjectsFinal(r.s);
    ck_assert_uint_gt(n, 0);
    for (CK_ULONG i = 0; i < n; i++)
        ck_assert_int_eq(r.fl->C_DestroyObject(r.s, objs[i]), CKR_OK);
    raw_close(&r);
}

int testenv_count(struct testenv *t, const char *token, const char *label)
{
    struct raw r;
    raw_open(t, token, &r);
    CK_ATTRIBUTE tmpl[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG n = 0;
    ck_assert_int_eq(r.fl->C_FindObjectsInit(r.s, tmpl, 1), CKR_OK);
    ck_assert_int_eq(r.fl->C_FindObjects(r.s, objs, 8, &n), CKR_OK);
    r.fl->C_FindObjectsFinal(r.s);
    raw_close(&r);
    return (int)n;
}

void testenv_keytier_token(struct testenv *t, const char *label)
{
    ck_assert_msg(t->keytier_module[0] != '\0', "KT_MODULE not set");
    ck_assert_int_lt(t->n_kt, 8);
    FILE *f = fopen(t->keytier_conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "token_dir = %s/kt-tokens\nslots = 8\npin_kdf_cost = 10\n"
            "log_level = error\n",
            t->dir);
    fclose(f);
    setenv("KEYTIER_CONF", t->keytier_conf, 1);

    CK_FUNCTION_LIST *fl = p11_kit_module_load(t->keytier_module, 0);
    ck_assert_ptr_nonnull(fl);
    ck_assert_int_eq(p11_kit_module_initialize(fl), CKR_OK);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    ck_assert_int_eq(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    CK_SLOT_ID slot = (CK_SLOT_ID)-1;
    for (CK_ULONG i = 0; i < n && slot == (CK_SLOT_ID)-1; i++) {
        CK_TOKEN_INFO ti;
        ck_assert_int_eq(fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            slot = slots[i];
    }
    ck_assert_msg(slot != (CK_SLOT_ID)-1, "no free keytier slot");
    CK_UTF8CHAR lab[32];
    memset(lab, ' ', sizeof lab);
    memcpy(lab, label, strlen(label));
    ck_assert_int_eq(fl->C_InitToken(slot, (CK_UTF8CHAR *)"5678", 4, lab),
                     CKR_OK);
    /* The slot list may change after C_InitToken: find it again. */
    n = 16;
    ck_assert_int_eq(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        ck_assert_int_eq(fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, lab, 32) == 0) {
            ck_assert_int_eq(
                fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                  NULL, NULL, &s),
                CKR_OK);
            break;
        }
    }
    ck_assert(s != CK_INVALID_HANDLE);
    ck_assert_int_eq(fl->C_Login(s, CKU_SO, (CK_UTF8CHAR *)"5678", 4), CKR_OK);
    ck_assert_int_eq(fl->C_InitPIN(s, (CK_UTF8CHAR *)"1234", 4), CKR_OK);
    fl->C_Logout(s);
    fl->C_CloseSession(s);
    p11_kit_module_finalize(fl);
    p11_kit_module_release(fl);
    snprintf(t->kt_labels[t->n_kt++], 33, "%s", label);
}

void testenv_write_conf(struct testenv *t, const char *extra)
{
    testenv_write_conf_mods(t, MOD_SOFTHSM | (t->n_kt ? MOD_KEYTIER : 0),
                            extra);
}

void testenv_write_conf_mods(struct testenv *t, int mods, const char *extra)
{
    FILE *f = fopen(t->conf, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# written by testenv\n");
    if (mods & MOD_SOFTHSM)
        fprintf(f, "module = %s\n", t->softhsm_module);
    if (mods & MOD_KEYTIER)
        fprintf(f, "module = %s\n", t->keytier_module);
    fprintf(f,
            "service_token = pkcs11:token=%s\n"
            "store = %s\n"
            "pin.VaultA = file:%s/pin-a\n"
            "pin.VaultB = env:KT_TEST_PIN_B\n"
            "pin.VaultC = value:1234\n"
            "pin.Service = value:1234\n",
            t->service, t->store, t->dir);
    /* A PostgreSQL store has no file to put the audit log beside. */
    if (testenv_is_pg(t) && (!extra || !strstr(extra, "avail.audit_log")))
        fprintf(f, "avail.audit_log = %s/store/keytier.db.audit.jsonl\n",
                t->dir);
    /* A key is set once: extra may choose its own log level. */
    if (!extra || !strstr(extra, "log_level"))
        fputs("log_level = warning\n", f);
    /* These tests read through the tokens every time, unless
     * they set the cache themselves (tests/lib/avail). */
    if (!extra || !strstr(extra, "avail.cache_ttl_ms"))
        fputs("avail.cache_ttl_ms = 0\n", f);
    /* Purge and recovery are tested here for what they do; their
     * approvals are the trust suite's (tests/trust). */
    if (!extra || !strstr(extra, "approval."))
        fputs("approval.required = no\n", f);
    for (int i = 0; i < t->n_kt; i++)
        fprintf(f, "pin.%s = value:1234\n", t->kt_labels[i]);
    fprintf(f, "%s\n", extra ? extra : "");
    fclose(f);
}

keytier_ctx *testenv_ctx(struct testenv *t)
{
    keytier_ctx *ctx = NULL;
    keytier_err e = keytier_ctx_open(t->conf, &ctx);
    ck_assert_msg(e == KEYTIER_OK, "keytier_ctx_open: %s",
                  keytier_last_error_detail());
    return ctx;
}

const char *testenv_uri(const char *token, const char *label)
{
    static _Thread_local char buf[4][256];
    static _Thread_local int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "pkcs11:token=%s;object=%s", token, label);
    return buf[i];
}

int testenv_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

int testenv_thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}
