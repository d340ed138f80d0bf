/* Fuzz target: what the store reads from a token's files besides the
 * attribute records of fuzz_attrs: the PIN records (kt_store_read_pins,
 * then kt_pin_open, kt_pin_check_bind, kt_seal_pins_digest), the object rows
 * as a load reads them (kt_store_changes; each row's record MAC and manifest
 * term, its attributes parsed and their sealed values opened:
 * kt_seal_verify, kt_seal_manifest_term, kt_seal_open_attrs), the manifest
 * (kt_seal_manifest_check), the meta table (kt_store_open,
 * kt_store_read_meta, kt_store_read_epoch), <serial>.seq (kt_seq_read,
 * kt_seq_advance) and <serial>.key (kt_keyfile_read). The keys are fixed
 * (fuzz_pin.h), so the seeds, made with them, authenticate and open.
 *
 * Input: section u8 (modulo FZ_SECTIONS), then
 *   FZ_SEC_DB    pins: u8 count (modulo 4) rows of 9 values (who, salt,
 *                cost, verifier, priv, pub, box, bind, failures); objects:
 *                u8 count (modulo 8) rows of 4 (id, gen, attrs, mac);
 *                deleted: u8 count (modulo 4) rows of 2 (id, gen); the
 *                manifest value (a NULL value: no row); the PIN tried:
 *                role u8, PIN str
 *   FZ_SEC_META  u8 count (modulo 8) rows of 2 (k, v)
 *   FZ_SEC_SEQ, FZ_SEC_KEY   the rest: the file
 * A value: tag u8 (FZ_NULL, FZ_INT + 8 bytes, FZ_BLOB or FZ_TEXT + str,
 * FZ_REAL + 8 bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_module.h"
#include "fuzz_pin.h"
#include "ossl/ossl.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    char dir[256], base[320], path[330];
    sqlite3 *db;
    unsigned char ik[32], mk[32];
    struct kt_store_keys keys;
    unsigned char seq_key[32];
} fx;

static void cleanup(void)
{
    char p[400];
    static const char *const ext[] = {".db",  ".db-wal", ".db-shm",
                                      ".seq", ".key",    ".key.new"};
    if (fx.db != NULL)
        kt_store_close(fx.db);
    fx.db = NULL;
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", fx.base, ext[i]);
        unlink(p);
    }
    kt_ossl_fini();
    kt_log_close();
    snprintf(p, sizeof(p), "%s/module.log", fx.dir);
    unlink(p);
    rmdir(fx.dir);
}

static void exec_sql(const char *sql)
{
    if (sqlite3_exec(fx.db, sql, NULL, NULL, NULL) != SQLITE_OK)
        abort();
}

/* A token database made by the store (its schema and first rows). */
static void init(void)
{
    struct stat st;
    const char *tmp = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fx.dir, sizeof(fx.dir), "%s/kt-fuzz-pin-XXXXXX", tmp);
    if (mkdtemp(fx.dir) == NULL)
        abort();
    snprintf(fx.base, sizeof(fx.base), "%s/%s", fx.dir, FZ_SERIAL);
    snprintf(fx.path, sizeof(fx.path), "%s.db", fx.base);
    char log[300];
    snprintf(log, sizeof(log), "%s/module.log", fx.dir);
    kt_log_open(KT_LOG_ERROR, getenv("KT_FUZZ_TRACE") ? NULL : log);
    if (kt_ossl_init(false) != CKR_OK)
        abort();
    atexit(cleanup);
    memset(fx.ik, FZ_IK_BYTE, 32);
    memset(fx.mk, FZ_MK_BYTE, 32);
    kt_seal_mac_key(fx.ik, fx.keys.mac);
    kt_seal_manifest_key(fx.ik, fx.keys.manifest);
    kt_seal_seq_key(fx.ik, fx.seq_key);
    struct kt_pin so;
    if (kt_pin_make(&so, (const unsigned char *)"so", 2, 10, KT_PIN_SO,
                    FZ_SERIAL) != CKR_OK ||
        kt_pin_box(&so, fx.mk, KT_PIN_SO, FZ_SERIAL, fx.ik) != CKR_OK ||
        kt_store_create(fx.path, FZ_LABEL, FZ_SERIAL, &so, &fx.keys, &fx.db) !=
            CKR_OK)
        abort();
    exec_sql("PRAGMA synchronous=OFF");
}

static void bind_value(sqlite3_stmt *st, int i, struct fz_in *in)
{
    CK_ULONG len;
    const uint8_t *p;
    uint64_t v = 0;
    double d;
    size_t got = 0;
    const uint8_t *src;
    switch (fz_u8(in) % 5) {
    case FZ_INT:
        src = fz_bytes(in, 8, &got);
        memcpy(&v, src, got);
        sqlite3_bind_int64(st, i, (sqlite3_int64)v);
        break;
    case FZ_BLOB:
        p = fz_str(in, &len);
        sqlite3_bind_blob(st, i, p, (int)len, SQLITE_TRANSIENT);
        break;
    case FZ_TEXT:
        p = fz_str(in, &len);
        sqlite3_bind_text(st, i, (const char *)p, (int)len, SQLITE_TRANSIENT);
        break;
    case FZ_REAL:
        src = fz_bytes(in, 8, &got);
        memcpy(&v, src, got);
        memcpy(&d, &v, sizeof(d));
        sqlite3_bind_double(st, i, d);
        break;
    default:
        sqlite3_bind_null(st, i);
        break;
    }
}

/* count rows of cols values each; a row the table refuses is left out. */
static void insert_rows(struct fz_in *in, const char *sql, int cols,
                        unsigned count)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(fx.db, sql, -1, &st, NULL) != SQLITE_OK)
        abort();
    for (unsigned r = 0; r < count; r++) {
        for (int c = 1; c <= cols; c++)
            bind_value(st, c, in);
        (void)sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
}

static void base_meta(void)
{
    exec_sql("DELETE FROM meta WHERE k <> 'manifest';"
             "INSERT INTO meta(k, v) VALUES ('format', '" KT_STORE_FORMAT
             "'), ('gen', 0), ('label', '" FZ_LABEL "'), ('serial', '" FZ_SERIAL
             "'), ('epoch', '" FZ_EPOCH "')");
}

/* A row as tokensync.c takes it: record MAC, term, attributes, sealed
 * values opened with the master key. */
static CK_RV on_row(void *ctx, int64_t id, int64_t gen,
                    const unsigned char *blob, size_t len,
                    const unsigned char *mac, size_t mac_len)
{
    (void)ctx;
    unsigned char term[32];
    if (mac_len == 32)
        fz_trace("kt_seal_verify",
                 kt_seal_verify(fx.keys.mac, id, gen, blob, len, mac));
    /* A term is a MAC over whatever the row holds. */
    if (kt_seal_manifest_term(fx.keys.manifest, id, gen, mac, mac_len, term) !=
        CKR_OK)
        abort();
    kt_attrs a;
    CK_OBJECT_CLASS cls;
    kt_attrs_init(&a);
    if (kt_attrs_parse(&a, blob, len) == CKR_OK &&
        kt_attrs_get_ulong(&a, CKA_CLASS, &cls) == CKR_OK)
        fz_trace("kt_seal_open_attrs", kt_seal_open_attrs(fx.mk, id, cls, &a));
    kt_attrs_clear(&a);
    return CKR_OK;
}

static void on_del(void *ctx, int64_t id)
{
    (void)ctx;
    (void)id;
}

static void try_pin(const struct kt_pin pins[2], struct fz_in *in)
{
    int role = fz_u8(in) & 1;
    CK_ULONG len;
    const uint8_t *pin = fz_str(in, &len);
    const struct kt_pin *p = &pins[role];
    unsigned char mk[32];
    /* A cost above the tests' fast setting makes one input take seconds:
     * the range itself is kt_store_read_pins' check, run above. */
    if (!p->present || p->cost > 12)
        return;
    if (fz_trace("kt_pin_open",
                 kt_pin_open(p, pin, len, mk, role, FZ_SERIAL)) == CKR_OK)
        fz_trace("kt_pin_check_bind",
                 kt_pin_check_bind(p, mk, role, FZ_SERIAL, fx.ik));
    kt_wipe(mk, sizeof(mk));
}

static void section_db(struct fz_in *in)
{
    base_meta();
    exec_sql("BEGIN; DELETE FROM pins; DELETE FROM objects; DELETE FROM "
             "deleted; DELETE FROM meta WHERE k = 'manifest'");
    insert_rows(in,
                "INSERT OR REPLACE INTO pins(who, salt, cost, verifier, priv, "
                "pub, box, bind, failures) VALUES (?,?,?,?,?,?,?,?,?)",
                9, fz_u8(in) % 4);
    insert_rows(in,
                "INSERT OR REPLACE INTO objects(id, gen, attrs, mac) VALUES "
                "(?,?,?,?)",
                4, fz_u8(in) % 8);
    insert_rows(in, "INSERT OR REPLACE INTO deleted(id, gen) VALUES (?,?)", 2,
                fz_u8(in) % 4);
    insert_rows(in, "INSERT INTO meta(k, v) VALUES ('manifest', ?)", 1, 1);
    exec_sql("COMMIT");
    struct kt_pin pins[2];
    struct kt_manifest man;
    int64_t max_gen = 0;
    CK_RV rv = fz_trace("kt_store_changes",
                        kt_store_changes(fx.db, fx.path, 0, on_row, on_del,
                                         NULL, &max_gen, pins, &man));
    if (rv != CKR_OK)
        return;
    if (!pins[KT_PIN_SO].present)
        abort(); /* a token without an SO record is refused */
    unsigned char digest[32];
    fz_trace("kt_seal_manifest_check",
             kt_seal_manifest_check(fx.keys.manifest, &man));
    if (kt_seal_pins_digest(fx.keys.manifest, pins, digest) != CKR_OK)
        abort();
    try_pin(pins, in);
    kt_wipe(pins, sizeof(pins));
}

static void section_meta(struct fz_in *in)
{
    exec_sql("BEGIN; DELETE FROM meta WHERE k <> 'manifest'");
    insert_rows(in, "INSERT OR REPLACE INTO meta(k, v) VALUES (?,?)", 2,
                fz_u8(in) % 8);
    exec_sql("COMMIT");
    sqlite3 *db = NULL;
    if (fz_trace("kt_store_open", kt_store_open(fx.path, &db)) == CKR_OK) {
        char label[KT_LABEL_LEN], serial[KT_SERIAL_LEN], epoch[KT_EPOCH_LEN];
        fz_trace("kt_store_read_meta",
                 kt_store_read_meta(db, fx.path, label, serial));
        KT_IGNORE_RESULT(kt_store_read_epoch(db, epoch));
        kt_store_close(db);
    }
    base_meta();
}

static void write_file(const char *ext, const uint8_t *p, size_t n)
{
    char path[400];
    snprintf(path, sizeof(path), "%s%s", fx.base, ext);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(p, 1, n, fp) != n || fclose(fp) != 0)
        abort();
}

static void section_seq(struct fz_in *in)
{
    int64_t ctr = -1, again = -1;
    const char *why = NULL;
    write_file(".seq", in->p, in->n);
    bool ok =
        fz_trace("kt_seq_read", kt_seq_read(fx.base, fx.seq_key, FZ_SERIAL,
                                            &ctr, &why)) == CKR_OK;
    if (!ok && why == NULL)
        abort(); /* a refusal says why */
    if (!ok || ctr == INT64_MAX)
        return;
    /* Raised in place: the next read gives the new counter. */
    if (kt_seq_advance(fx.base, -1, fx.seq_key, FZ_SERIAL, ctr + 1, false) !=
            CKR_OK ||
        kt_seq_read(fx.base, fx.seq_key, FZ_SERIAL, &again, &why) != CKR_OK ||
        again != ctr + 1)
        abort();
}

static void section_key(struct fz_in *in)
{
    unsigned char ik[32];
    int fd = -1;
    uint64_t ino = 0;
    write_file(".key", in->p, in->n);
    CK_RV rv =
        fz_trace("kt_keyfile_read", kt_keyfile_read(fx.base, ik, &fd, &ino));
    if ((rv == CKR_OK) != (in->n == 32))
        abort(); /* exactly a 32-byte file is a key */
    if (rv == CKR_OK && (ino == 0 || memcmp(ik, in->p, 32) != 0))
        abort();
    if (fd >= 0)
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fx.db == NULL)
        init();
    struct fz_in in = {data, size};
    switch (fz_u8(&in) % FZ_SECTIONS) {
    case FZ_SEC_DB:
        section_db(&in);
        break;
    case FZ_SEC_META:
        section_meta(&in);
        break;
    case FZ_SEC_SEQ:
        section_seq(&in);
        break;
    default:
        section_key(&in);
        break;
    }
    return 0;
}
