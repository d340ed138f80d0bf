#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kt_file.h"
#include "ossl/ossl.h"

static KT_NODISCARD CK_RV db_fail(sqlite3 *db, const char *what)
{
    kt_log(KT_LOG_ERROR, "store %s: %s: %s", sqlite3_db_filename(db, "main"),
           what, sqlite3_errmsg(db));
    return CKR_DEVICE_ERROR;
}

static KT_NODISCARD CK_RV exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        kt_log(KT_LOG_ERROR, "store %s: %s", sqlite3_db_filename(db, "main"),
               err != NULL ? err : "error");
        sqlite3_free(err);
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

/* Ends a transaction whose outcome is already decided (a read is over, or a
 * failed write is rolled back): exec logs a failure, the caller's answer
 * stands. */
static void end_tx(sqlite3 *db, const char *sql)
{
    CK_RV rv = exec(db, sql);
    /* A COMMIT or ROLLBACK that failed (SQLite out of memory) can leave the
     * transaction open, and every later BEGIN of this connection would
     * fail: rolled back until it is closed. */
    for (int i = 0; i < 3 && !sqlite3_get_autocommit(db); i++)
        rv = exec(db, "ROLLBACK");
    (void)rv;
}

static KT_NODISCARD CK_RV configure(sqlite3 *db)
{
    sqlite3_busy_timeout(db, 10000);
    /* WAL: readers never block the writer; synchronous=FULL: a commit that
     * returned is on disk (an object whose create returned CKR_OK survives
     * a power cut). */
    CK_RV rv = exec(db, "PRAGMA journal_mode=WAL");
    if (rv == CKR_OK)
        rv = exec(db, "PRAGMA synchronous=FULL");
    if (rv == CKR_OK)
        rv = exec(db, "PRAGMA secure_delete=ON");
    return rv;
}

static KT_NODISCARD CK_RV bind_pin(sqlite3_stmt *st, int which,
                                   const struct kt_pin *p)
{
    if (sqlite3_bind_int(st, 1, which) != SQLITE_OK ||
        sqlite3_bind_blob(st, 2, p->salt, sizeof(p->salt), SQLITE_STATIC) !=
            SQLITE_OK ||
        sqlite3_bind_int(st, 3, (int)p->cost) != SQLITE_OK ||
        sqlite3_bind_blob(st, 4, p->verifier, sizeof(p->verifier),
                          SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(st, 5, p->priv, sizeof(p->priv), SQLITE_STATIC) !=
            SQLITE_OK ||
        sqlite3_bind_blob(st, 6, p->pub, sizeof(p->pub), SQLITE_STATIC) !=
            SQLITE_OK ||
        sqlite3_bind_blob(st, 7, p->box, sizeof(p->box), SQLITE_STATIC) !=
            SQLITE_OK ||
        sqlite3_bind_blob(st, 8, p->bind, sizeof(p->bind), SQLITE_STATIC) !=
            SQLITE_OK ||
        sqlite3_bind_int64(st, 9, (sqlite3_int64)p->failures) != SQLITE_OK)
        return CKR_DEVICE_ERROR;
    return CKR_OK;
}

static KT_NODISCARD CK_RV put_pin(sqlite3 *db, int which,
                                  const struct kt_pin *p)
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    if (!p->present) {
        char sql[64];
        snprintf(sql, sizeof(sql), "DELETE FROM pins WHERE who = %d", which);
        return exec(db, sql);
    }
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO pins(who, salt, cost, "
                           "verifier, priv, pub, box, bind, failures) VALUES "
                           "(?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, "prepare pin");
    rv = bind_pin(st, which, p);
    if (rv == CKR_OK && sqlite3_step(st) != SQLITE_DONE)
        rv = db_fail(db, "write pin");
    sqlite3_finalize(st);
    return rv;
}

static KT_NODISCARD CK_RV put_meta(sqlite3 *db, const char *k, const char *v,
                                   int len)
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(k, v) VALUES(?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, "prepare meta");
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v, len, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rv = db_fail(db, "write meta");
    sqlite3_finalize(st);
    return rv;
}

/* The manifest row: count, write counter, acc, pins, MAC (112 bytes). */
#define MANIFEST_LEN 112

/* A new random epoch (C_InitToken), inside the caller's transaction. */
static KT_NODISCARD CK_RV put_epoch(sqlite3 *db)
{
    unsigned char r[KT_EPOCH_LEN / 2];
    char hex[KT_EPOCH_LEN + 1];
    CK_RV rv = kt_ossl_random(r, sizeof(r));
    if (rv != CKR_OK)
        return rv;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    return put_meta(db, "epoch", hex, KT_EPOCH_LEN);
}

static KT_NODISCARD CK_RV read_manifest(sqlite3 *db, struct kt_manifest *m)
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    memset(m, 0, sizeof(*m));
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'manifest'", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(db, "read manifest");
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB &&
        sqlite3_column_bytes(st, 0) == MANIFEST_LEN) {
        const unsigned char *b = sqlite3_column_blob(st, 0);
        m->count = (int64_t)kt_store_get_le64(b);
        m->ctr = (int64_t)kt_store_get_le64(b + 8);
        memcpy(m->acc, b + 16, 32);
        memcpy(m->pins, b + 48, 32);
        memcpy(m->mac, b + 80, 32);
        m->present = true;
    } else if (r != SQLITE_ROW && r != SQLITE_DONE) {
        rv = db_fail(db, "read manifest");
    }
    sqlite3_finalize(st);
    return rv;
}

/* replace: the row exists (an object write); otherwise it is created. */
static KT_NODISCARD CK_RV write_manifest(sqlite3 *db,
                                         const struct kt_manifest *m,
                                         bool replace)
{
    sqlite3_stmt *st = NULL;
    unsigned char b[MANIFEST_LEN];
    CK_RV rv = CKR_OK;
    kt_store_put_le64(b, (uint64_t)m->count);
    kt_store_put_le64(b + 8, (uint64_t)m->ctr);
    memcpy(b + 16, m->acc, 32);
    memcpy(b + 48, m->pins, 32);
    memcpy(b + 80, m->mac, 32);
    /* An UPDATE in place: cheaper than REPLACE's delete and insert. */
    if (sqlite3_prepare_v2(db,
                           replace ? "UPDATE meta SET v = ? WHERE k = "
                                     "'manifest'"
                                   : "INSERT OR REPLACE INTO meta(k, v) "
                                     "VALUES ('manifest', ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, "prepare manifest");
    sqlite3_bind_blob(st, 1, b, sizeof(b), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE ||
        (replace && sqlite3_changes(db) != 1))
        rv = db_fail(db, "write manifest");
    sqlite3_finalize(st);
    return rv;
}

/* A manifest with no object (the counter continues from `ctr`) naming
 * the PIN records pins. */
static KT_NODISCARD CK_RV new_manifest(sqlite3 *db,
                                       const unsigned char man_key[32],
                                       int64_t ctr, const struct kt_pin pins[2],
                                       struct kt_manifest *out)
{
    struct kt_manifest m;
    memset(&m, 0, sizeof(m));
    m.present = true;
    m.ctr = ctr;
    CK_RV rv = kt_seal_pins_digest(man_key, pins, m.pins);
    if (rv == CKR_OK)
        rv = kt_seal_manifest_sign(man_key, &m);
    if (rv == CKR_OK)
        rv = write_manifest(db, &m, false);
    if (rv == CKR_OK && out != NULL)
        *out = m;
    return rv;
}

/* Inside a write transaction: the stored manifest, authentic and not
 * behind what the writer has seen committed. This never signs a set
 * someone else changed or rolled back. */
static KT_NODISCARD CK_RV manifest_current(sqlite3 *db,
                                           const struct kt_store_keys *k,
                                           struct kt_manifest *m)
{
    CK_RV rv = read_manifest(db, m);
    if (rv != CKR_OK)
        return rv;
    const char *why = NULL;
    rv = kt_seal_manifest_check(k->manifest, m);
    if (rv == CKR_HOST_MEMORY)
        return rv; /* not checked: no verdict */
    if (rv != CKR_OK)
        why = "object manifest missing or not authentic";
    else if (m->ctr < k->min_ctr)
        why = "object manifest went back to an older write";
    if (why != NULL) {
        kt_log(KT_LOG_ERROR, "token %s: %s; write refused",
               sqlite3_db_filename(db, "main"), why);
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

/* Inside an object write transaction, before anything is written: the PIN
 * records are still those the writer last read (their digest in the
 * manifest, authenticated by manifest_apply). Otherwise another process
 * changed a PIN, perhaps with a new master key the writer does not hold:
 * KT_CKR_RETRY, the writer reloads first. */
static KT_NODISCARD CK_RV pins_unchanged(sqlite3 *db,
                                         const struct kt_store_keys *k)
{
    struct kt_manifest m;
    if (!k->check_pins)
        return CKR_OK;
    CK_RV rv = read_manifest(db, &m);
    if (rv == CKR_OK && m.present && memcmp(m.pins, k->pins, 32) != 0)
        rv = KT_CKR_RETRY;
    return rv;
}

/* Inside an object write transaction: acc ^= old ^ new, count += delta,
 * counter + 1, new MAC. */
static KT_NODISCARD CK_RV manifest_apply(sqlite3 *db,
                                         const struct kt_store_keys *k,
                                         const unsigned char *old_term,
                                         const unsigned char *new_term,
                                         int64_t delta, struct kt_manifest *out)
{
    struct kt_manifest m;
    CK_RV rv = manifest_current(db, k, &m);
    if (rv != CKR_OK)
        return rv;
    for (int i = 0; i < 32; i++) {
        if (old_term != NULL)
            m.acc[i] ^= old_term[i];
        if (new_term != NULL)
            m.acc[i] ^= new_term[i];
    }
    m.count += delta;
    m.ctr++;
    rv = kt_seal_manifest_sign(k->manifest, &m);
    if (rv == CKR_OK)
        rv = write_manifest(db, &m, true);
    if (rv == CKR_OK)
        *out = m;
    return rv;
}

/* The current row's generation and MAC; CKR_OBJECT_HANDLE_INVALID if gone
 * (or, with expect_gen >= 0, not at that generation). */
static KT_NODISCARD CK_RV row_term(sqlite3 *db, const unsigned char man_key[32],
                                   int64_t id, int64_t expect_gen,
                                   unsigned char term[32])
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    if (sqlite3_prepare_v2(db, "SELECT gen, mac FROM objects WHERE id = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(db, "read object");
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        int64_t gen = sqlite3_column_int64(st, 0);
        if (expect_gen >= 0 && gen != expect_gen)
            rv = CKR_OBJECT_HANDLE_INVALID;
        else
            rv = kt_seal_manifest_term(
                man_key, id, gen, sqlite3_column_blob(st, 1),
                (size_t)sqlite3_column_bytes(st, 1), term);
    } else if (r == SQLITE_DONE) {
        rv = CKR_OBJECT_HANDLE_INVALID;
    } else {
        rv = db_fail(db, "read object");
    }
    sqlite3_finalize(st);
    return rv;
}

/* The empty file of a new store, durable: it exists with mode 0600 before
 * SQLite opens it (SQLite gives its -wal and -shm files the same mode),
 * and its directory entry survives a power cut. */
static KT_NODISCARD CK_RV create_file(const char *path)
{
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0 && !kt_file_private(fd)) {
        close(fd);
        unlink(path);
        fd = -1;
    }
    if (fd < 0) {
        kt_log(KT_LOG_ERROR, "store %s: cannot create: %s", path,
               strerror(errno));
        return CKR_DEVICE_ERROR;
    }
    if (fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return CKR_DEVICE_ERROR;
    }
    close(fd);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0)
                kt_log(KT_LOG_WARNING, "token_dir %s: fsync failed", dir);
            close(dfd);
        }
    }
    return CKR_OK;
}

/* The tables of a new store and its first rows (label, serial, SO PIN,
 * epoch, manifest), in one transaction. */
static KT_NODISCARD CK_RV create_schema(sqlite3 *db, const char *label,
                                        const char *serial,
                                        const struct kt_pin *so,
                                        const struct kt_store_keys *k)
{
    char lbl[KT_LABEL_LEN + 1], ser[KT_SERIAL_LEN + 1];
    memcpy(lbl, label, KT_LABEL_LEN);
    lbl[KT_LABEL_LEN] = '\0';
    memcpy(ser, serial, KT_SERIAL_LEN);
    ser[KT_SERIAL_LEN] = '\0';
    CK_RV rv = configure(db);
    if (rv == CKR_OK)
        rv = exec(db,
                  "BEGIN IMMEDIATE;"
                  "CREATE TABLE meta(k TEXT PRIMARY KEY, v NOT NULL);"
                  "CREATE TABLE pins(who INTEGER PRIMARY KEY, salt BLOB NOT "
                  "NULL, cost INTEGER NOT NULL, verifier BLOB NOT NULL, "
                  "priv BLOB NOT NULL, pub BLOB NOT NULL, box BLOB NOT NULL, "
                  "bind BLOB NOT NULL, failures INTEGER NOT NULL);"
                  "CREATE TABLE objects(id INTEGER PRIMARY KEY, gen INTEGER "
                  "NOT NULL, attrs BLOB NOT NULL, mac BLOB NOT NULL);"
                  "CREATE INDEX objects_gen ON objects(gen);"
                  "CREATE TABLE deleted(id INTEGER PRIMARY KEY, gen INTEGER "
                  "NOT NULL);"
                  "INSERT INTO meta(k, v) VALUES ('format', '" KT_STORE_FORMAT
                  "'), ('gen', 0);");
    if (rv == CKR_OK)
        rv = put_meta(db, "label", lbl, KT_LABEL_LEN);
    if (rv == CKR_OK)
        rv = put_meta(db, "serial", ser, KT_SERIAL_LEN);
    struct kt_pin pins[2];
    memset(pins, 0, sizeof(pins));
    pins[KT_PIN_SO] = *so;
    if (rv == CKR_OK)
        rv = put_pin(db, KT_PIN_SO, so);
    if (rv == CKR_OK)
        rv = put_epoch(db);
    if (rv == CKR_OK)
        rv = new_manifest(db, k->manifest, 0, pins, NULL);
    kt_wipe(pins, sizeof(pins));
    if (rv == CKR_OK)
        rv = exec(db, "COMMIT");
    return rv;
}

CK_RV kt_store_create(const char *path, const char *label, const char *serial,
                      const struct kt_pin *so, const struct kt_store_keys *k,
                      sqlite3 **out)
{
    sqlite3 *db = NULL;
    CK_RV rv = create_file(path);
    if (rv != CKR_OK)
        return rv;
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        kt_log(KT_LOG_ERROR, "store %s: cannot open new database", path);
        sqlite3_close(db);
        unlink(path);
        return CKR_DEVICE_ERROR;
    }
    rv = create_schema(db, label, serial, so, k);
    if (rv != CKR_OK) {
        sqlite3_close(db);
        unlink(path);
        return rv;
    }
    *out = db;
    return CKR_OK;
}

CK_RV kt_store_open(const char *path, sqlite3 **out)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        kt_log(KT_LOG_ERROR, "token %s refused: cannot open: %s", path,
               db != NULL ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return CKR_DEVICE_ERROR;
    }
    sqlite3_busy_timeout(db, 10000);
    const char *fmt = NULL;
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'format'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) == SQLITE_TEXT)
        fmt = (const char *)sqlite3_column_text(st, 0);
    if (fmt != NULL && strcmp(fmt, "keytier-token-1") == 0) {
        kt_log(KT_LOG_ERROR,
               "token %s refused: format keytier-token-1 has no object "
               "manifest; this module reads " KT_STORE_FORMAT
               " (re-create the token)",
               path);
        rv = CKR_DEVICE_ERROR;
    } else if (fmt != NULL && strcmp(fmt, "keytier-token-2") == 0) {
        kt_log(KT_LOG_ERROR,
               "token %s refused: format keytier-token-2 checks its objects "
               "only after a login and has no integrity key file; this "
               "module reads " KT_STORE_FORMAT " (re-create the token)",
               path);
        rv = CKR_DEVICE_ERROR;
    } else if (fmt == NULL || strcmp(fmt, KT_STORE_FORMAT) != 0) {
        kt_log(KT_LOG_ERROR,
               "token %s refused: not a keytier token database or damaged "
               "(%s)",
               path, sqlite3_errmsg(db));
        rv = CKR_DEVICE_ERROR;
    }
    sqlite3_finalize(st);
    if (rv == CKR_OK)
        rv = configure(db);
    if (rv != CKR_OK) {
        sqlite3_close(db);
        return rv;
    }
    *out = db;
    return CKR_OK;
}

void kt_store_close(sqlite3 *db)
{
    sqlite3_close_v2(db);
}

static bool read_text(sqlite3 *db, const char *k, char *out, size_t len)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW &&
            sqlite3_column_type(st, 0) == SQLITE_TEXT &&
            (size_t)sqlite3_column_bytes(st, 0) == len) {
            memcpy(out, sqlite3_column_text(st, 0), len);
            ok = true;
        }
    }
    sqlite3_finalize(st);
    return ok;
}

CK_RV kt_store_read_meta(sqlite3 *db, const char *path,
                         char label[KT_LABEL_LEN], char serial[KT_SERIAL_LEN])
{
    if (!read_text(db, "label", label, KT_LABEL_LEN) ||
        !read_text(db, "serial", serial, KT_SERIAL_LEN)) {
        kt_log(KT_LOG_ERROR, "token %s refused: label or serial damaged", path);
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

CK_RV kt_store_read_epoch(sqlite3 *db, char epoch[KT_EPOCH_LEN])
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    memset(epoch, 0, KT_EPOCH_LEN);
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'epoch'", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(db, "read epoch");
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT &&
        sqlite3_column_bytes(st, 0) == KT_EPOCH_LEN)
        memcpy(epoch, sqlite3_column_text(st, 0), KT_EPOCH_LEN);
    else if (r != SQLITE_ROW && r != SQLITE_DONE)
        rv = db_fail(db, "read epoch");
    sqlite3_finalize(st);
    return rv;
}

CK_RV kt_store_read_pins(sqlite3 *db, const char *path, struct kt_pin pins[2])
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    memset(pins, 0, 2 * sizeof(pins[0]));
    if (sqlite3_prepare_v2(db,
                           "SELECT who, salt, cost, verifier, priv, pub, box, "
                           "bind, failures FROM pins",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, "read pins");
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int who = sqlite3_column_int(st, 0);
        if (who != KT_PIN_SO && who != KT_PIN_USER)
            goto bad;
        struct kt_pin *p = &pins[who];
        if ((size_t)sqlite3_column_bytes(st, 1) != sizeof(p->salt) ||
            (size_t)sqlite3_column_bytes(st, 3) != sizeof(p->verifier) ||
            (size_t)sqlite3_column_bytes(st, 4) != sizeof(p->priv) ||
            (size_t)sqlite3_column_bytes(st, 5) != sizeof(p->pub) ||
            (size_t)sqlite3_column_bytes(st, 6) != sizeof(p->box) ||
            (size_t)sqlite3_column_bytes(st, 7) != sizeof(p->bind))
            goto bad;
        memcpy(p->salt, sqlite3_column_blob(st, 1), sizeof(p->salt));
        p->cost = (unsigned)sqlite3_column_int(st, 2);
        memcpy(p->verifier, sqlite3_column_blob(st, 3), sizeof(p->verifier));
        memcpy(p->priv, sqlite3_column_blob(st, 4), sizeof(p->priv));
        memcpy(p->pub, sqlite3_column_blob(st, 5), sizeof(p->pub));
        memcpy(p->box, sqlite3_column_blob(st, 6), sizeof(p->box));
        memcpy(p->bind, sqlite3_column_blob(st, 7), sizeof(p->bind));
        sqlite3_int64 f = sqlite3_column_int64(st, 8);
        if (p->cost < 1 || p->cost > 30 || f < 0)
            goto bad;
        p->failures = (CK_ULONG)f;
        p->present = true;
    }
    if (r != SQLITE_DONE)
        rv = db_fail(db, "read pins");
    else if (!pins[KT_PIN_SO].present)
        goto bad;
    sqlite3_finalize(st);
    return rv;
bad:
    sqlite3_finalize(st);
    kt_log(KT_LOG_ERROR, "token %s refused: PIN records damaged", path);
    return CKR_DEVICE_ERROR;
}

CK_RV kt_store_data_version(sqlite3 *db, sqlite3_stmt **cache, int64_t *v)
{
    CK_RV rv = CKR_OK;
    if (*cache == NULL &&
        sqlite3_prepare_v3(db, "PRAGMA data_version", -1,
                           SQLITE_PREPARE_PERSISTENT, cache, NULL) != SQLITE_OK)
        return db_fail(db, "data_version");
    if (sqlite3_step(*cache) != SQLITE_ROW)
        rv = db_fail(db, "data_version");
    else
        *v = sqlite3_column_int64(*cache, 0);
    sqlite3_reset(*cache);
    return rv;
}

CK_RV kt_store_changes(sqlite3 *db, const char *path, int64_t since,
                       kt_store_row_fn row, kt_store_del_fn del, void *ctx,
                       int64_t *max_gen, struct kt_pin pins[2],
                       struct kt_manifest *man)
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = CKR_OK;
    int r;
    /* One read transaction so objects and deletions are one snapshot. */
    rv = exec(db, "BEGIN");
    if (rv != CKR_OK)
        return rv;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, gen, attrs, mac FROM objects WHERE "
                           "gen > ? ORDER BY gen",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = db_fail(db, "read objects");
        goto out;
    }
    sqlite3_bind_int64(st, 1, since);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int64_t gen = sqlite3_column_int64(st, 1);
        const void *blob = sqlite3_column_blob(st, 2);
        size_t blen = (size_t)sqlite3_column_bytes(st, 2);
        const void *mac = sqlite3_column_blob(st, 3);
        size_t mlen = (size_t)sqlite3_column_bytes(st, 3);
        if (gen > *max_gen)
            *max_gen = gen;
        rv = row(ctx, id, gen, blob, blen, mac, mlen);
        if (rv != CKR_OK)
            goto out;
    }
    if (r != SQLITE_DONE) {
        rv = db_fail(db, "read objects");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* A row in objects is live whatever the tombstones say (a destroyed
     * record put back is then loaded, and caught by the manifest). */
    if (sqlite3_prepare_v2(db,
                           "SELECT id, gen FROM deleted WHERE gen > ? AND id "
                           "NOT IN (SELECT id FROM objects)",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = db_fail(db, "read deletions");
        goto out;
    }
    sqlite3_bind_int64(st, 1, since);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t gen = sqlite3_column_int64(st, 1);
        if (gen > *max_gen)
            *max_gen = gen;
        del(ctx, sqlite3_column_int64(st, 0));
    }
    if (r != SQLITE_DONE)
        rv = db_fail(db, "read deletions");
    if (rv == CKR_OK)
        rv = read_manifest(db, man);
    if (rv == CKR_OK)
        rv = kt_store_read_pins(db, path, pins);
out:
    sqlite3_finalize(st);
    end_tx(db, "COMMIT");
    return rv;
}

static KT_NODISCARD CK_RV next_gen(sqlite3 *db, int64_t *gen)
{
    sqlite3_stmt *st = NULL;
    CK_RV rv = exec(db, "UPDATE meta SET v = v + 1 WHERE k = 'gen'");
    if (rv != CKR_OK)
        return rv;
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'gen'", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        rv = db_fail(db, "read gen");
    else
        *gen = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rv;
}

CK_RV kt_store_put_object(sqlite3 *db, const struct kt_store_keys *k,
                          int64_t id, const unsigned char *blob, size_t len,
                          bool must_be_new, int64_t expect_gen,
                          struct kt_store_written *w)
{
    sqlite3_stmt *st = NULL;
    int64_t gen = 0;
    unsigned char old_term[32];
    CK_RV rv = exec(db, "BEGIN IMMEDIATE");
    if (rv != CKR_OK)
        return rv;
    rv = pins_unchanged(db, k);
    if (rv != CKR_OK)
        goto out;
    if (!must_be_new) {
        rv = row_term(db, k->manifest, id, expect_gen, old_term);
        if (rv == CKR_OBJECT_HANDLE_INVALID)
            rv = KT_CKR_RETRY; /* changed or destroyed by another process */
        if (rv != CKR_OK)
            goto out;
    }
    rv = next_gen(db, &gen);
    if (rv == CKR_OK)
        rv = kt_seal_record_mac(k->mac, id, gen, blob, len, w->mac);
    if (rv == CKR_OK)
        rv = kt_seal_manifest_term(k->manifest, id, gen, w->mac, 32, w->term);
    if (rv != CKR_OK)
        goto out;
    if (sqlite3_prepare_v2(db,
                           must_be_new
                               ? "INSERT INTO objects(id, gen, attrs, mac) "
                                 "VALUES (?,?,?,?)"
                               : "UPDATE objects SET gen = ?2, attrs = ?3, "
                                 "mac = ?4 WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = db_fail(db, "prepare object");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, gen);
    sqlite3_bind_blob(st, 3, blob, (int)len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, w->mac, 32, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_CONSTRAINT)
        rv = CKR_FUNCTION_FAILED; /* id collision: caller retries */
    else if (r != SQLITE_DONE)
        rv = db_fail(db, "write object");
    sqlite3_finalize(st);
    if (rv == CKR_OK)
        rv = manifest_apply(db, k, must_be_new ? NULL : old_term, w->term,
                            must_be_new ? 1 : 0, &w->man);
    if (rv == CKR_OK)
        rv = exec(db, "COMMIT");
    if (rv == CKR_OK)
        w->gen = gen;
out:
    if (rv != CKR_OK)
        end_tx(db, "ROLLBACK");
    return rv;
}

CK_RV kt_store_update_object(sqlite3 *db, const struct kt_store_keys *k,
                             int64_t id, kt_store_update_fn fn, void *ctx,
                             struct kt_store_written *w)
{
    sqlite3_stmt *st = NULL;
    unsigned char *nb = NULL;
    size_t nl = 0;
    unsigned char old_term[32];
    int64_t gen = 0;
    CK_RV rv = exec(db, "BEGIN IMMEDIATE");
    if (rv != CKR_OK)
        return rv;
    rv = pins_unchanged(db, k);
    if (rv != CKR_OK)
        goto out;
    if (sqlite3_prepare_v2(db,
                           "SELECT gen, attrs, mac FROM objects WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = db_fail(db, "read object");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        rv = CKR_OBJECT_HANDLE_INVALID;
        goto out;
    }
    if (r != SQLITE_ROW) {
        rv = db_fail(db, "read object");
        goto out;
    }
    int64_t old_gen = sqlite3_column_int64(st, 0);
    const unsigned char *old_mac = sqlite3_column_blob(st, 2);
    size_t old_mac_len = (size_t)sqlite3_column_bytes(st, 2);
    rv = kt_seal_manifest_term(k->manifest, id, old_gen, old_mac, old_mac_len,
                               old_term);
    if (rv == CKR_OK)
        rv = fn(ctx, old_gen, sqlite3_column_blob(st, 1),
                (size_t)sqlite3_column_bytes(st, 1), old_mac, old_mac_len, &nb,
                &nl);
    sqlite3_finalize(st);
    st = NULL;
    if (rv != CKR_OK)
        goto out;
    rv = next_gen(db, &gen);
    if (rv == CKR_OK)
        rv = kt_seal_record_mac(k->mac, id, gen, nb, nl, w->mac);
    if (rv == CKR_OK)
        rv = kt_seal_manifest_term(k->manifest, id, gen, w->mac, 32, w->term);
    if (rv != CKR_OK)
        goto out;
    if (sqlite3_prepare_v2(db,
                           "UPDATE objects SET gen = ?2, attrs = ?3, mac = ?4 "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = db_fail(db, "prepare object");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, gen);
    sqlite3_bind_blob(st, 3, nb, (int)nl, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, w->mac, 32, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rv = db_fail(db, "write object");
    sqlite3_finalize(st);
    st = NULL;
    if (rv == CKR_OK)
        rv = manifest_apply(db, k, old_term, w->term, 0, &w->man);
    if (rv == CKR_OK)
        rv = exec(db, "COMMIT");
    if (rv == CKR_OK) {
        w->gen = gen;
        free(nb);
        return CKR_OK;
    }
out:
    sqlite3_finalize(st);
    free(nb);
    end_tx(db, "ROLLBACK");
    return rv;
}

CK_RV kt_store_delete_object(sqlite3 *db, const struct kt_store_keys *k,
                             int64_t id, struct kt_store_written *w)
{
    sqlite3_stmt *st = NULL;
    int64_t gen = 0;
    unsigned char old_term[32];
    CK_RV rv = exec(db, "BEGIN IMMEDIATE");
    if (rv != CKR_OK)
        return rv;
    rv = pins_unchanged(db, k);
    if (rv != CKR_OK)
        goto out;
    rv = row_term(db, k->manifest, id, -1, old_term);
    bool present = rv == CKR_OK;
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        rv = CKR_OK; /* already gone (another process): nothing to remove */
    if (rv == CKR_OK)
        rv = next_gen(db, &gen);
    if (rv != CKR_OK)
        goto out;
    if (sqlite3_prepare_v2(db, "DELETE FROM objects WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK) {
        rv = db_fail(db, "prepare delete");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rv = db_fail(db, "delete object");
    sqlite3_finalize(st);
    st = NULL;
    if (rv == CKR_OK &&
        sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO deleted(id, gen) VALUES "
                           "(?,?)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, gen);
        if (sqlite3_step(st) != SQLITE_DONE)
            rv = db_fail(db, "record deletion");
    } else if (rv == CKR_OK) {
        rv = db_fail(db, "prepare deletion");
    }
    sqlite3_finalize(st);
    if (rv == CKR_OK)
        rv = present ? manifest_apply(db, k, old_term, NULL, -1, &w->man)
                     : manifest_current(db, k, &w->man);
    if (rv == CKR_OK)
        rv = exec(db, "COMMIT");
    if (rv == CKR_OK)
        w->gen = gen;
out:
    if (rv != CKR_OK)
        end_tx(db, "ROLLBACK");
    return rv;
}

CK_RV kt_store_reinit(sqlite3 *db, const char *label, const struct kt_pin *so,
                      const struct kt_store_keys *k, struct kt_manifest *man)
{
    struct kt_manifest old;
    struct kt_pin pins[2];
    char lbl[KT_LABEL_LEN + 1];
    int64_t gen = 0;
    memcpy(lbl, label, KT_LABEL_LEN);
    lbl[KT_LABEL_LEN] = '\0';
    memset(pins, 0, sizeof(pins));
    pins[KT_PIN_SO] = *so;
    CK_RV rv = exec(db, "BEGIN IMMEDIATE");
    if (rv != CKR_OK)
        return rv;
    rv = next_gen(db, &gen);
    if (rv == CKR_OK) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT OR REPLACE INTO deleted(id, gen) SELECT id, %lld "
                 "FROM objects; DELETE FROM objects; DELETE FROM pins",
                 (long long)gen);
        rv = exec(db, sql);
    }
    if (rv == CKR_OK)
        rv = put_meta(db, "label", lbl, KT_LABEL_LEN);
    if (rv == CKR_OK)
        rv = put_pin(db, KT_PIN_SO, so);
    if (rv == CKR_OK)
        rv = put_epoch(db);
    /* The counter keeps increasing (running processes compare it); the
     * new integrity key makes every older manifest invalid anyway. */
    if (rv == CKR_OK)
        rv = read_manifest(db, &old);
    if (rv == CKR_OK)
        rv = new_manifest(db, k->manifest, old.present ? old.ctr + 1 : 0, pins,
                          man);
    if (rv == CKR_OK)
        rv = exec(db, "COMMIT");
    if (rv != CKR_OK)
        end_tx(db, "ROLLBACK");
    kt_wipe(pins, sizeof(pins));
    return rv;
}

/* One object row resealed from old_mk to new_mk: every sealed attribute
 * opened and sealed again, a new generation, record MAC and term. The row
 * must authenticate first (a damaged record cannot be carried over). */
static KT_NODISCARD CK_RV reseal_row(sqlite3 *db, const struct kt_store_keys *k,
                                     const struct kt_store_reseal *r,
                                     int64_t id, unsigned char acc[32])
{
    sqlite3_stmt *st = NULL;
    kt_attrs plain;
    unsigned char *nb = NULL, mac[32], term[32];
    size_t nl = 0;
    int64_t gen = 0;
    CK_OBJECT_CLASS cls = 0;
    kt_attrs_init(&plain);
    CK_RV rv = CKR_OK;
    if (sqlite3_prepare_v2(db,
                           "SELECT gen, attrs, mac FROM objects WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, "read object");
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(db, "read object");
    }
    const unsigned char *blob = sqlite3_column_blob(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    rv = sqlite3_column_bytes(st, 2) == 32
             ? kt_seal_verify(k->mac, id, sqlite3_column_int64(st, 0), blob,
                              len, sqlite3_column_blob(st, 2))
             : CKR_DATA_INVALID;
    if (rv == CKR_OK)
        rv = kt_attrs_parse(&plain, blob, len);
    if (rv == CKR_OK)
        rv = kt_attrs_get_ulong(&plain, CKA_CLASS, &cls);
    if (rv == CKR_OK)
        rv = kt_seal_open_attrs(r->old_mk, id, cls, &plain);
    sqlite3_finalize(st);
    st = NULL;
    if (rv != CKR_OK && rv != CKR_HOST_MEMORY) {
        kt_log(KT_LOG_ERROR,
               "token %s: object %lld does not authenticate; the master key "
               "is not changed",
               sqlite3_db_filename(db, "main"), (long long)id);
        rv = CKR_DEVICE_ERROR;
    }
    if (rv == CKR_OK)
        rv = kt_seal_object(r->new_mk, id, cls, &plain, &nb, &nl);
    kt_attrs_clear(&plain);
    if (rv == CKR_OK)
        rv = next_gen(db, &gen);
    if (rv == CKR_OK)
        rv = kt_seal_record_mac(k->mac, id, gen, nb, nl, mac);
    if (rv == CKR_OK)
        rv = kt_seal_manifest_term(k->manifest, id, gen, mac, 32, term);
    if (rv == CKR_OK &&
        sqlite3_prepare_v2(db,
                           "UPDATE objects SET gen = ?2, attrs = ?3, mac = ?4 "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        rv = db_fail(db, "prepare object");
    if (rv == CKR_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, gen);
        sqlite3_bind_blob(st, 3, nb, (int)nl, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, mac, 32, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rv = db_fail(db, "write object");
    }
    sqlite3_finalize(st);
    free(nb);
    if (rv == CKR_OK)
        for (int i = 0; i < 32; i++)
            acc[i] ^= term[i];
    return rv;
}

static KT_NODISCARD CK_RV reseal_all(sqlite3 *db, const struct kt_store_keys *k,
                                     const struct kt_store_reseal *r,
                                     struct kt_manifest *m)
{
    sqlite3_stmt *st = NULL;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    CK_RV rv = CKR_OK;
    int res;
    /* The ids first: rows are rewritten after the scan, not during it. */
    if (sqlite3_prepare_v2(db, "SELECT id FROM objects", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db, "read objects");
    while ((res = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *ni = realloc(ids, cap * sizeof(*ni));
            if (ni == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            ids = ni;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    if (rv == CKR_OK && res != SQLITE_DONE)
        rv = db_fail(db, "read objects");
    sqlite3_finalize(st);
    /* Every row is rewritten: the set is summed again from scratch. */
    memset(m->acc, 0, sizeof(m->acc));
    for (size_t i = 0; i < n && rv == CKR_OK; i++)
        rv = reseal_row(db, k, r, ids[i], m->acc);
    if (rv == CKR_OK && (int64_t)n != m->count) {
        kt_log(KT_LOG_ERROR,
               "token %s: object set does not match its manifest; the master "
               "key is not changed",
               sqlite3_db_filename(db, "main"));
        rv = CKR_DEVICE_ERROR;
    }
    free(ids);
    return rv;
}

CK_RV kt_store_pins_update(sqlite3 *db, const struct kt_store_keys *k,
                           kt_pins_fn fn, void *ctx,
                           const struct kt_store_reseal *reseal,
                           struct kt_pin out[2], struct kt_manifest *man)
{
    struct kt_manifest m;
    struct kt_pin pins[2], before[2];
    unsigned char digest[32];
    const char *path = sqlite3_db_filename(db, "main");
    CK_RV rv = exec(db, "BEGIN IMMEDIATE");
    if (rv != CKR_OK)
        return rv;
    rv = manifest_current(db, k, &m);
    if (rv == CKR_OK)
        rv = kt_store_read_pins(db, path, pins);
    if (rv == CKR_OK)
        rv = kt_seal_pins_digest(k->manifest, pins, digest);
    if (rv == CKR_OK && kt_ossl_memcmp(digest, m.pins, 32) != 0) {
        kt_log(KT_LOG_ERROR,
               "token %s: PIN records do not match the object manifest (a "
               "record or a retry counter was changed outside the token); "
               "refused",
               path);
        rv = CKR_DEVICE_ERROR;
    }
    if (rv != CKR_OK)
        goto out;
    memcpy(before, pins, sizeof(pins));
    rv = fn(ctx, pins);
    if (rv != CKR_OK)
        goto out;
    if (reseal != NULL)
        rv = reseal_all(db, k, reseal, &m);
    for (int w = 0; w < 2 && rv == CKR_OK; w++)
        if (memcmp(&before[w], &pins[w], sizeof(pins[w])) != 0)
            rv = put_pin(db, w, &pins[w]);
    if (rv == CKR_OK)
        rv = kt_seal_pins_digest(k->manifest, pins, m.pins);
    if (rv == CKR_OK) {
        m.ctr++;
        rv = kt_seal_manifest_sign(k->manifest, &m);
    }
    if (rv == CKR_OK)
        rv = write_manifest(db, &m, true);
    if (rv == CKR_OK)
        rv = exec(db, "COMMIT");
    if (rv == CKR_OK) {
        *man = m;
        memcpy(out, pins, sizeof(pins));
    }
out:
    if (rv != CKR_OK)
        end_tx(db, "ROLLBACK");
    if (rv == KT_CKR_NO_CHANGE)
        rv = CKR_OK;
    kt_wipe(pins, sizeof(pins));
    kt_wipe(before, sizeof(before));
    return rv;
}

void kt_store_data_version_free(sqlite3_stmt *cache)
{
    sqlite3_finalize(cache);
}
