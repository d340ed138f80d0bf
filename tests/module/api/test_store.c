/* Storage: persistence across C_Finalize and processes, two processes on
 * one token, a writer killed with SIGKILL, file modes, and tampering with
 * the database file. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"

static CK_ULONG find_label(CK_SESSION_HANDLE s, const char *label,
                           CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, &t, 1));
    CK(P->C_FindObjects(s, h, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    if (out != NULL && n > 0)
        *out = h[0];
    return n;
}

static void encrypt_block(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k,
                          unsigned char out[16])
{
    unsigned char in[16] = {7};
    CK_ULONG ol = 16;
    CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
    CK(P->C_EncryptInit(s, &m, k));
    CK(P->C_Encrypt(s, in, 16, out, &ol));
}

START_TEST(test_objects_survive_finalize_and_process)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("persist");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, true, false, "durable");
    (void)kt_test_aes_key(s, 32, false, false, "ephemeral");
    unsigned char c1[16], c2[16];
    encrypt_block(s, k, c1);
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    slot = kt_test_token_slot("persist");
    s = kt_test_user_session(slot);
    ck_assert_uint_eq(find_label(s, "durable", &k), 1);
    ck_assert_uint_eq(find_label(s, "ephemeral", NULL), 0);
    encrypt_block(s, k, c2);
    ck_assert_mem_eq(c1, c2, 16);
    CK(P->C_Finalize(NULL));
    /* a new process */
    pid_t pid = fork();
    if (pid == 0) {
        int code = 0;
        CK_OBJECT_HANDLE ck;
        unsigned char c3[16];
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(20);
        CK_SESSION_HANDLE cs =
            kt_test_user_session(kt_test_token_slot("persist"));
        if (find_label(cs, "durable", &ck) != 1)
            code = 21;
        else {
            encrypt_block(cs, ck, c3);
            code = memcmp(c1, c3, 16) == 0 ? 0 : 22;
        }
        P->C_Finalize(NULL);
        _exit(code);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* files are private */
    char db[512];
    struct stat sb;
    kt_test_token_db_path(db, sizeof(db));
    ck_assert_int_eq(stat(db, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/tokens", kt_test_dir);
    ck_assert_int_eq(
        kt_test_sh("test -z \"$(find %s -type f -perm /077)\"", dir), 0);
}
END_TEST

/* Two processes on one token see each other's objects, changes and
 * deletions. */
START_TEST(test_two_processes_see_each_other)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("shared");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE stable = kt_test_aes_key(s, 16, true, false, "stable");
    int to_child[2], to_parent[2];
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_parent), 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        int code = 0;
        close(to_child[1]);
        close(to_parent[0]);
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(30);
        CK_SESSION_HANDLE cs =
            kt_test_user_session(kt_test_token_slot("shared"));
        (void)kt_test_aes_key(cs, 16, true, false, "from-child");
        if (write(to_parent[1], "1", 1) != 1 || read(to_child[0], &c, 1) != 1)
            _exit(31);
        /* the parent made one, renamed mine */
        if (find_label(cs, "from-parent", NULL) != 1)
            code = 32;
        if (find_label(cs, "renamed-by-parent", NULL) != 1)
            code = 33;
        CK_OBJECT_HANDLE h;
        if (find_label(cs, "from-parent", &h) == 1 &&
            P->C_DestroyObject(cs, h) != CKR_OK)
            code = 34;
        if (write(to_parent[1], "2", 1) != 1)
            code = 35;
        P->C_Finalize(NULL);
        _exit(code);
    }
    close(to_child[0]);
    close(to_parent[1]);
    char c;
    ck_assert_int_eq(read(to_parent[0], &c, 1), 1);
    CK_OBJECT_HANDLE h;
    ck_assert_uint_eq(find_label(s, "from-child", &h), 1);
    CK_ATTRIBUTE l = {CKA_LABEL, "renamed-by-parent", 17};
    CK(P->C_SetAttributeValue(s, h, &l, 1));
    (void)kt_test_aes_key(s, 16, true, false, "from-parent");
    ck_assert_int_eq(write(to_child[1], "go", 1), 1);
    ck_assert_int_eq(read(to_parent[0], &c, 1), 1);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_uint_eq(find_label(s, "from-parent", NULL), 0);
    ck_assert_uint_eq(find_label(s, "renamed-by-parent", NULL), 1);
    /* only changed rows were reloaded: an untouched object keeps its
     * handle */
    CK_OBJECT_HANDLE again;
    ck_assert_uint_eq(find_label(s, "stable", &again), 1);
    ck_assert_uint_eq(again, stable);
}
END_TEST

/* A writer killed with SIGKILL in the middle of writes: every object it
 * was told about (CKR_OK returned, then reported over a pipe) is there. */
START_TEST(test_sigkill_during_writes_keeps_acknowledged_objects)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("crash");
    CK(P->C_Finalize(NULL));
    (void)slot;
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(40);
        CK_SESSION_HANDLE cs =
            kt_test_user_session(kt_test_token_slot("crash"));
        for (unsigned i = 0;; i++) {
            char label[32];
            snprintf(label, sizeof(label), "k%06u", i);
            (void)kt_test_aes_key(cs, 32, true, false, label);
            if (write(fds[1], label, 7) != 7)
                _exit(41);
        }
    }
    close(fds[1]);
    char labels[2000][8];
    size_t n = 0;
    while (n < 40 && read(fds[0], labels[n], 7) == 7)
        labels[n++][7] = '\0';
    kill(pid, SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFSIGNALED(st));
    /* what was written to the pipe before the kill was acknowledged */
    while (n < 2000 && read(fds[0], labels[n], 7) == 7)
        labels[n++][7] = '\0';
    close(fds[0]);
    ck_assert_uint_ge(n, 40);
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_token_slot("crash"));
    for (size_t i = 0; i < n; i++) {
        CK_OBJECT_HANDLE h;
        ck_assert_msg(find_label(s, labels[i], &h) == 1, "%s lost", labels[i]);
        unsigned char c[16];
        encrypt_block(s, h, c);
    }
}
END_TEST

static void db_exec(const char *db, const char *sql)
{
    sqlite3 *h;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(h, sql, NULL, NULL, &err) == SQLITE_OK, "%s",
                  err ? err : "");
    sqlite3_close(h);
}

/* Flips CKA_EXTRACTABLE (type 0x162) to TRUE in the stored record of the
 * object labelled "root": u32 count, then u64 type, u32 len, value. */
static void flip_extractable(const char *db)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(h, "SELECT id, attrs FROM objects", -1, &st, NULL),
        SQLITE_OK);
    bool done = false;
    while (!done && sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_int64 id = sqlite3_column_int64(st, 0);
        int len = sqlite3_column_bytes(st, 1);
        unsigned char *b = malloc(len);
        memcpy(b, sqlite3_column_blob(st, 1), len);
        if (memmem(b, len, "root", 4) == NULL) {
            free(b);
            continue;
        }
        size_t off = 4;
        while (off + 12 <= (size_t)len) {
            unsigned long type = 0, vl = 0;
            for (int i = 0; i < 8; i++)
                type |= (unsigned long)b[off + i] << (8 * i);
            for (int i = 0; i < 4; i++)
                vl |= (unsigned long)b[off + 8 + i] << (8 * i);
            if (type == CKA_EXTRACTABLE && vl == 1) {
                ck_assert_int_eq(b[off + 12], 0);
                b[off + 12] = 1;
                done = true;
            }
            off += 12 + vl;
        }
        sqlite3_stmt *up;
        ck_assert_int_eq(sqlite3_prepare_v2(h,
                                            "UPDATE objects SET attrs = ? "
                                            "WHERE id = ?",
                                            -1, &up, NULL),
                         SQLITE_OK);
        sqlite3_bind_blob(up, 1, b, len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 2, id);
        ck_assert_int_eq(sqlite3_step(up), SQLITE_DONE);
        sqlite3_finalize(up);
        free(b);
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    ck_assert(done);
}

START_TEST(test_tampered_object_refused)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("tamper");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    (void)kt_test_aes_key(s, 32, true, false, "root");
    (void)kt_test_aes_key(s, 32, true, false, "bystander");
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    flip_extractable(db);
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("tamper"));
    ck_assert_uint_eq(find_label(s, "root", NULL), 0);
    ck_assert_uint_eq(find_label(s, "bystander", NULL), 1);
    ck_assert(kt_test_log_contains("refused: integrity check failed"));
    ck_assert(kt_test_log_contains(db));
    CK(P->C_Finalize(NULL));
    /* the file is left as it was: refused, not repaired */
    sqlite3 *h;
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(h, "SELECT count(*) FROM objects", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    sqlite3_close(h);
}
END_TEST

/* A change made by another process while this one is logged in is checked
 * when it is reloaded. */
START_TEST(test_tamper_noticed_while_logged_in)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("tamper2");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    (void)kt_test_aes_key(s, 32, true, false, "root");
    ck_assert_uint_eq(find_label(s, "root", NULL), 1);
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    flip_extractable(db);
    ck_assert_uint_eq(find_label(s, "root", NULL), 0);
    ck_assert(kt_test_log_contains("refused: integrity check failed"));
}
END_TEST

START_TEST(test_damaged_database_refused)
{
    CK(P->C_Initialize(NULL));
    (void)kt_test_new_token("victim");
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    /* wrong format marker */
    db_exec(db, "UPDATE meta SET v = 'something-else' WHERE k = 'format'");
    CK(P->C_Initialize(NULL));
    CK_ULONG n = 0;
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 1); /* the free slot only */
    ck_assert(kt_test_log_contains("refused: not a keytier token database"));
    ck_assert(kt_test_log_contains(db));
    CK(P->C_Finalize(NULL));
    /* garbage file */
    ck_assert_int_eq(kt_test_sh("head -c 4096 /dev/urandom > '%s'; rm -f "
                                "'%s-wal' '%s-shm'",
                                db, db, db),
                     0);
    struct stat before, after;
    ck_assert_int_eq(stat(db, &before), 0);
    CK(P->C_Initialize(NULL));
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 1);
    CK(P->C_Finalize(NULL));
    ck_assert_int_eq(stat(db, &after), 0);
    ck_assert_int_eq(before.st_size, after.st_size);
    ck_assert_int_eq(before.st_mtime, after.st_mtime);
}
END_TEST

START_TEST(test_secrets_not_in_file)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("sealed");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    static const unsigned char marker[32] = "KEYMATERIAL-MUST-NOT-APPEAR-0123";
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_VALUE, (void *)marker, 32},
                        {CKA_TOKEN, &yes, 1}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, 4, &h));
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    ck_assert_int_ne(kt_test_sh("cat '%s'* | grep -q KEYMATERIAL-MUST", db), 0);
    ck_assert_int_ne(kt_test_sh("cat '%s'* | grep -q '%s'", db, USER_PIN), 0);
}
END_TEST

/* ---- the object manifest: rollback, re-insertion, removal ------------ */

#define MANIFEST_MISMATCH                                                      \
    "object set does not match its manifest: a record was rolled back, "       \
    "removed or re-inserted"

struct saved_row {
    sqlite3_int64 id, gen;
    void *attrs, *mac;
    int alen, mlen;
};

/* The row whose (plaintext) attributes contain label. */
static void save_row(const char *db, const char *label, struct saved_row *r)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    bool found = false;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "SELECT id, gen, attrs, mac FROM "
                                        "objects",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (!found && sqlite3_step(st) == SQLITE_ROW) {
        const void *a = sqlite3_column_blob(st, 2);
        int al = sqlite3_column_bytes(st, 2);
        if (memmem(a, (size_t)al, label, strlen(label)) == NULL)
            continue;
        r->id = sqlite3_column_int64(st, 0);
        r->gen = sqlite3_column_int64(st, 1);
        r->alen = al;
        r->attrs = malloc((size_t)al);
        memcpy(r->attrs, a, (size_t)al);
        r->mlen = sqlite3_column_bytes(st, 3);
        r->mac = malloc((size_t)r->mlen);
        memcpy(r->mac, sqlite3_column_blob(st, 3), (size_t)r->mlen);
        found = true;
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    ck_assert_msg(found, "no row for %s", label);
}

/* Writes a saved row back as it was (replacing a newer one, or re-inserting
 * a deleted one). */
static void put_row(const char *db, struct saved_row *r)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "INSERT OR REPLACE INTO objects(id, "
                                        "gen, attrs, mac) VALUES (?,?,?,?)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, r->id);
    sqlite3_bind_int64(st, 2, r->gen);
    sqlite3_bind_blob(st, 3, r->attrs, r->alen, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, r->mac, r->mlen, SQLITE_TRANSIENT);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
    free(r->attrs);
    free(r->mac);
}

static sqlite3_int64 row_gen(const char *db, sqlite3_int64 id)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(h,
                                        "SELECT gen FROM objects WHERE id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_int64 gen =
        sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return gen;
}

/* One log line names both the file and the reason. */
static bool log_line_has(const char *a, const char *b)
{
    FILE *fp = fopen(kt_test_log, "r");
    char line[4096];
    bool found = false;
    if (fp == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    fclose(fp);
    return found;
}

static CK_ULONG count_extractable(CK_SESSION_HANDLE s)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t = {CKA_EXTRACTABLE, &yes, sizeof(yes)};
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    CK(P->C_FindObjectsInit(s, &t, 1));
    CK(P->C_FindObjects(s, h, 8, &n));
    CK(P->C_FindObjectsFinal(s));
    return n;
}

/* A token refused whole (its object set does not match the manifest):
 * the login is refused too, and nothing is found. */
static CK_SESSION_HANDLE refused_session(const char *label)
{
    CK_SESSION_HANDLE s;
    CK(P->C_OpenSession(kt_test_token_slot(label),
                        CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
    RV(CKR_DEVICE_ERROR,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    return s;
}

/* An older authentic copy of a record (from while the key was still
 * extractable) written back over the current one: each record still has a
 * valid MAC, the set does not match its manifest. */
START_TEST(test_rolled_back_record_refused)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("rollback");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, true, true, "was-exportable");
    (void)kt_test_aes_key(s, 32, true, false, "bystander");
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    struct saved_row old;
    save_row(db, "was-exportable", &old);
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE a = {CKA_EXTRACTABLE, &no, sizeof(no)};
    CK(P->C_SetAttributeValue(s, k, &a, 1));
    ck_assert_uint_eq(count_extractable(s), 0);
    CK(P->C_Finalize(NULL));
    sqlite3_int64 id = old.id, gen = old.gen;
    ck_assert_int_gt(row_gen(db, id), gen);
    put_row(db, &old);
    CK(P->C_Initialize(NULL));
    s = refused_session("rollback");
    ck_assert_uint_eq(find_label(s, "was-exportable", NULL), 0);
    ck_assert_uint_eq(count_extractable(s), 0);
    ck_assert_uint_eq(find_label(s, "bystander", NULL), 0);
    ck_assert(log_line_has(db, MANIFEST_MISMATCH));
    /* caught by the manifest: the old record itself is authentic */
    ck_assert(!kt_test_log_contains("integrity check failed"));
    CK(P->C_Finalize(NULL));
    /* refused, not repaired: the file is left as it was */
    ck_assert_int_eq(row_gen(db, id), gen);
}
END_TEST

/* A destroyed object's row re-inserted from a backup. */
START_TEST(test_reinserted_record_refused)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("reinsert");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE k = kt_test_aes_key(s, 32, true, true, "destroyed-root");
    (void)kt_test_aes_key(s, 32, true, false, "bystander");
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    struct saved_row old;
    save_row(db, "destroyed-root", &old);
    CK(P->C_DestroyObject(s, k));
    CK(P->C_Finalize(NULL));
    ck_assert_int_eq(row_gen(db, old.id), -1);
    put_row(db, &old);
    CK(P->C_Initialize(NULL));
    s = refused_session("reinsert");
    ck_assert_uint_eq(find_label(s, "destroyed-root", NULL), 0);
    ck_assert_uint_eq(find_label(s, "bystander", NULL), 0);
    ck_assert(log_line_has(db, MANIFEST_MISMATCH));
    ck_assert(!kt_test_log_contains("integrity check failed"));
}
END_TEST

/* A row deleted outside the token. */
START_TEST(test_removed_record_detected)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("removed");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    (void)kt_test_aes_key(s, 32, true, false, "vanishes");
    (void)kt_test_aes_key(s, 32, true, false, "bystander");
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    struct saved_row old;
    save_row(db, "vanishes", &old);
    free(old.attrs);
    free(old.mac);
    sqlite3 *h;
    char sql[96];
    snprintf(sql, sizeof(sql), "DELETE FROM objects WHERE id = %lld",
             (long long)old.id);
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    CK(P->C_Initialize(NULL));
    s = refused_session("removed");
    ck_assert_uint_eq(find_label(s, "bystander", NULL), 0);
    ck_assert(log_line_has(db, MANIFEST_MISMATCH));
    CK(P->C_Finalize(NULL));
    ck_assert_int_eq(row_gen(db, old.id), -1);
}
END_TEST

/* Another process creating, changing and destroying objects at the same
 * time is not taken for tampering: each reload reads rows and manifest in
 * one snapshot. */
START_TEST(test_concurrent_writer_not_flagged)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("busy");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    (void)kt_test_aes_key(s, 16, true, false, "before");
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(go[1]);
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(40);
        CK_SESSION_HANDLE cs = kt_test_user_session(kt_test_token_slot("busy"));
        if (read(go[0], &c, 1) != 1)
            _exit(41);
        for (int i = 0; i < 30; i++) {
            char l[32];
            snprintf(l, sizeof(l), "child-%d", i);
            CK_OBJECT_HANDLE h = kt_test_aes_key(cs, 16, true, false, l);
            if (i % 3 == 0 && P->C_DestroyObject(cs, h) != CKR_OK)
                _exit(42);
            if (i % 3 == 1) {
                snprintf(l, sizeof(l), "child-renamed-%d", i);
                CK_ATTRIBUTE a = {CKA_LABEL, l, strlen(l)};
                if (P->C_SetAttributeValue(cs, h, &a, 1) != CKR_OK)
                    _exit(43);
            }
            (void)find_label(cs, "parent-0", NULL);
        }
        P->C_Finalize(NULL);
        _exit(0);
    }
    close(go[0]);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    for (int i = 0; i < 30; i++) {
        char l[32];
        snprintf(l, sizeof(l), "parent-%d", i);
        CK_OBJECT_HANDLE h = kt_test_aes_key(s, 16, true, false, l);
        if (i % 3 == 0)
            CK(P->C_DestroyObject(s, h));
        (void)find_label(s, "child-1", NULL);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_uint_eq(find_label(s, "before", NULL), 1);
    ck_assert_uint_eq(find_label(s, "child-renamed-1", NULL), 1);
    ck_assert_uint_eq(find_label(s, "child-2", NULL), 1);
    ck_assert_uint_eq(find_label(s, "child-0", NULL), 0);
    ck_assert_uint_eq(find_label(s, "parent-1", NULL), 1);
    ck_assert(!kt_test_log_contains("manifest"));
    /* and a fresh load (every record, the whole set) agrees */
    CK(P->C_Finalize(NULL));
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("busy"));
    ck_assert_uint_eq(find_label(s, "child-renamed-28", NULL), 1);
    ck_assert_uint_eq(find_label(s, "parent-29", NULL), 1);
    ck_assert(!kt_test_log_contains("manifest"));
}
END_TEST

/* A format 1 file (no manifest) is refused, not upgraded: creating the
 * manifest over whatever rows it holds would bless a rolled-back set. */
START_TEST(test_format1_refused)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("old"));
    (void)kt_test_aes_key(s, 16, true, false, "k");
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    db_exec(db, "UPDATE meta SET v = 'keytier-token-1' WHERE k = 'format'; "
                "DELETE FROM meta WHERE k = 'manifest'");
    CK(P->C_Initialize(NULL));
    CK_ULONG n = 0;
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 1); /* the free slot only */
    ck_assert(log_line_has(db, "refused: format keytier-token-1 has no "
                               "object manifest"));
}
END_TEST

/* A format 2 file (integrity keyed from the master key, checked only after
 * a login) is refused, not upgraded. */
START_TEST(test_format2_refused)
{
    CK(P->C_Initialize(NULL));
    (void)kt_test_new_token("older");
    CK(P->C_Finalize(NULL));
    char db[512];
    kt_test_token_db_path(db, sizeof(db));
    db_exec(db, "UPDATE meta SET v = 'keytier-token-2' WHERE k = 'format'");
    CK(P->C_Initialize(NULL));
    CK_ULONG n = 0;
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 1); /* the free slot only */
    ck_assert(log_line_has(db, "refused: format keytier-token-2"));
}
END_TEST

/* The files beside the database: <serial>.key missing refuses the token
 * (not listed); <serial>.seq missing or not authentic refuses its objects
 * and its login. Neither is recreated. */
START_TEST(test_key_and_seq_files_required)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("files"));
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_LABEL, "public", 6}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, 4, &h));
    CK(P->C_Finalize(NULL));
    char db[512], base[512];
    kt_test_token_db_path(db, sizeof(db));
    snprintf(base, sizeof(base), "%.*s", (int)strlen(db) - 3, db);
    ck_assert_int_eq(
        kt_test_sh("test -f '%s.key' && test -f '%s.seq'", base, base), 0);
    /* .key gone */
    ck_assert_int_eq(kt_test_sh("mv '%s.key' '%s.key.saved'", base, base), 0);
    CK(P->C_Initialize(NULL));
    CK_ULONG n = 0;
    CK(P->C_GetSlotList(CK_TRUE, NULL, &n));
    ck_assert_uint_eq(n, 1);
    ck_assert(log_line_has(".key missing", "never recreated"));
    CK(P->C_Finalize(NULL));
    ck_assert_int_ne(kt_test_sh("test -e '%s.key'", base), 0);
    ck_assert_int_eq(kt_test_sh("mv '%s.key.saved' '%s.key'", base, base), 0);
    /* .seq gone, then forged */
    for (int round = 0; round < 2; round++) {
        if (round == 0) {
            ck_assert_int_eq(
                kt_test_sh("mv '%s.seq' '%s.seq.saved'", base, base), 0);
        } else {
            /* the saved one with the counter of both its slots changed */
            char path[600];
            unsigned char b[128];
            snprintf(path, sizeof(path), "%s.seq.saved", base);
            FILE *fp = fopen(path, "rb");
            ck_assert_ptr_nonnull(fp);
            size_t bl = fread(b, 1, sizeof(b), fp);
            fclose(fp);
            ck_assert_uint_eq(bl, 96);
            b[8] ^= 0xff;
            b[48 + 8] ^= 0xff;
            snprintf(path, sizeof(path), "%s.seq", base);
            fp = fopen(path, "wb");
            ck_assert_ptr_nonnull(fp);
            ck_assert_uint_eq(fwrite(b, 1, bl, fp), bl);
            fclose(fp);
        }
        CK(P->C_Initialize(NULL));
        CK(P->C_OpenSession(kt_test_token_slot("files"),
                            CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                            &s));
        ck_assert_uint_eq(find_label(s, "public", NULL), 0);
        RV(CKR_DEVICE_ERROR, P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN,
                                        strlen(USER_PIN)));
        ck_assert(log_line_has(db, round == 0 ? "(.seq) is missing"
                                              : "(.seq) is not authentic"));
        CK(P->C_Finalize(NULL));
        if (round == 0)
            ck_assert_int_ne(kt_test_sh("test -e '%s.seq'", base), 0);
    }
    /* the genuine one back: the token is whole again */
    ck_assert_int_eq(kt_test_sh("mv '%s.seq.saved' '%s.seq'", base, base), 0);
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("files"));
    ck_assert_uint_eq(find_label(s, "public", NULL), 1);
    CK(P->C_Finalize(NULL));
    /* A raise torn by a power cut damages one slot of .seq: the other slot
     * still holds an authentic counter, the token opens and the next write
     * raises the counter again. */
    for (int slot = 0; slot < 2; slot++) {
        char path[600];
        snprintf(path, sizeof(path), "%s.seq", base);
        FILE *fp = fopen(path, "r+b");
        ck_assert_ptr_nonnull(fp);
        ck_assert_int_eq(fseek(fp, slot * 48 + 20, SEEK_SET), 0);
        ck_assert_int_eq(fputc(0x5a, fp), 0x5a);
        fclose(fp);
        CK(P->C_Initialize(NULL));
        s = kt_test_user_session(kt_test_token_slot("files"));
        ck_assert_uint_eq(find_label(s, "public", NULL), 1);
        (void)kt_test_aes_key(s, 32, true, false, slot ? "torn1" : "torn0");
        CK(P->C_Finalize(NULL));
    }
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("files"));
    ck_assert_uint_eq(find_label(s, "torn1", NULL), 1);
}
END_TEST

/* A crash between a commit and the .seq update leaves the database ahead
 * of .seq: accepted, and .seq catches up at the next write. */
START_TEST(test_database_ahead_of_seq_accepted)
{
    CK(P->C_Initialize(NULL));
    CK_SESSION_HANDLE s = kt_test_user_session(kt_test_new_token("ahead"));
    CK(P->C_Finalize(NULL));
    char db[512], base[512];
    kt_test_token_db_path(db, sizeof(db));
    snprintf(base, sizeof(base), "%.*s", (int)strlen(db) - 3, db);
    ck_assert_int_eq(kt_test_sh("cp '%s.seq' '%s/old.seq'", base, kt_test_dir),
                     0);
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("ahead"));
    (void)kt_test_aes_key(s, 32, true, false, "k");
    CK(P->C_Finalize(NULL));
    ck_assert_int_ne(
        kt_test_sh("cmp -s '%s.seq' '%s/old.seq'", base, kt_test_dir), 0);
    ck_assert_int_eq(kt_test_sh("cp '%s/old.seq' '%s.seq'", kt_test_dir, base),
                     0);
    CK(P->C_Initialize(NULL));
    s = kt_test_user_session(kt_test_token_slot("ahead"));
    ck_assert_uint_eq(find_label(s, "k", NULL), 1);
    (void)kt_test_aes_key(s, 32, true, false, "k2");
    ck_assert(!kt_test_log_contains("refused"));
    ck_assert_int_ne(
        kt_test_sh("cmp -s '%s.seq' '%s/old.seq'", base, kt_test_dir), 0);
}
END_TEST

/* A PIN change makes a new master key and reseals every object under it:
 * a process logged in meanwhile holds a master key that no longer opens
 * anything; it is logged out, and logs in again with the new PIN. */
START_TEST(test_pin_change_in_another_process)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("rekey");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_HANDLE k1 = kt_test_aes_key(s, 32, true, false, "k1");
    unsigned char c1[16], c2[16];
    encrypt_block(s, k1, c1);
    pid_t pid = fork();
    if (pid == 0) {
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(50);
        CK_SESSION_HANDLE cs =
            kt_test_user_session(kt_test_token_slot("rekey"));
        if (P->C_SetPIN(cs, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN),
                        (CK_UTF8CHAR_PTR) "changed-pin", 11) != CKR_OK)
            _exit(51);
        (void)kt_test_aes_key(cs, 32, true, false, "k2");
        P->C_Finalize(NULL);
        _exit(0);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    /* A key made now, before this process has read the change, would be
     * sealed under the old master key: the write notices the PIN change,
     * reloads, and is refused (logged out). */
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_TOKEN, &yes, 1},
                         {CKA_ENCRYPT, &yes, 1},
                         {CKA_LABEL, "stale", 5}};
    CK_MECHANISM gm = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE stale;
    RV(CKR_USER_NOT_LOGGED_IN, P->C_GenerateKey(s, &gm, gt, 4, &stale));
    ck_assert_uint_eq(find_label(s, "k1", NULL), 0);
    ck_assert(kt_test_log_contains("a PIN was changed in another process"));
    CK_SESSION_INFO si;
    CK(P->C_GetSessionInfo(s, &si));
    ck_assert_uint_eq(si.state, CKS_RW_PUBLIC_SESSION);
    RV(CKR_PIN_INCORRECT,
       P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "changed-pin", 11));
    CK_OBJECT_HANDLE k2;
    ck_assert_uint_eq(find_label(s, "k1", &k1), 1);
    ck_assert_uint_eq(find_label(s, "k2", &k2), 1);
    encrypt_block(s, k1, c2);
    ck_assert_mem_eq(c1, c2, 16);
    encrypt_block(s, k2, c2);
    ck_assert(!kt_test_log_contains("integrity check failed"));
    ck_assert(!kt_test_log_contains("manifest"));
}
END_TEST

/* A re-initialisation by another process writes a new <serial>.key: this
 * process notices the new file at its next reload and reads the new, empty
 * token under it (nothing refused). */
START_TEST(test_reinit_in_another_process)
{
    CK(P->C_Initialize(NULL));
    CK_SLOT_ID slot = kt_test_new_token("before-reinit");
    CK_SESSION_HANDLE s = kt_test_user_session(slot);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_LABEL, "old-public", 10}};
    CK_OBJECT_HANDLE h;
    CK(P->C_CreateObject(s, t, 4, &h));
    CK(P->C_CloseSession(s));
    pid_t pid = fork();
    if (pid == 0) {
        CK_UTF8CHAR lbl[32];
        memset(lbl, ' ', sizeof(lbl));
        memcpy(lbl, "after-reinit", 12);
        if (P->C_Initialize(NULL) != CKR_OK)
            _exit(60);
        CK_RV rv = P->C_InitToken(kt_test_token_slot("before-reinit"),
                                  (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), lbl);
        P->C_Finalize(NULL);
        _exit(rv == CKR_OK ? 0 : 61);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    CK(P->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &s));
    ck_assert_uint_eq(find_label(s, "old-public", NULL), 0);
    ck_assert(kt_test_log_contains("new integrity key; reloaded"));
    CK(P->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK(P->C_InitPIN(s, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK(P->C_Logout(s));
    CK(P->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    (void)kt_test_aes_key(s, 32, true, false, "new");
    ck_assert_uint_eq(find_label(s, "new", NULL), 1);
    ck_assert(!kt_test_log_contains("refused"));
}
END_TEST

static Suite *store_suite(void)
{
    Suite *su = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, kt_test_setup, kt_test_teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_objects_survive_finalize_and_process);
    tcase_add_test(tc, test_two_processes_see_each_other);
    tcase_add_test(tc, test_sigkill_during_writes_keeps_acknowledged_objects);
    tcase_add_test(tc, test_tampered_object_refused);
    tcase_add_test(tc, test_tamper_noticed_while_logged_in);
    tcase_add_test(tc, test_damaged_database_refused);
    tcase_add_test(tc, test_secrets_not_in_file);
    tcase_add_test(tc, test_rolled_back_record_refused);
    tcase_add_test(tc, test_reinserted_record_refused);
    tcase_add_test(tc, test_removed_record_detected);
    tcase_add_test(tc, test_concurrent_writer_not_flagged);
    tcase_add_test(tc, test_format1_refused);
    tcase_add_test(tc, test_pin_change_in_another_process);
    tcase_add_test(tc, test_format2_refused);
    tcase_add_test(tc, test_key_and_seq_files_required);
    tcase_add_test(tc, test_database_ahead_of_seq_accepted);
    tcase_add_test(tc, test_reinit_in_another_process);
    suite_add_tcase(su, tc);
    return su;
}

KT_TEST_MAIN(store_suite)
