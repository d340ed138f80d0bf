/* Seeds of the pin fuzz target (layout in fuzz_pin.c): PIN records, sealed
 * object rows, the manifest and <serial>.seq made by the store's own
 * functions with the target's fixed keys (fuzz_pin.h), then edited. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_pin.h"
#include "gen.h"
#include "store/store.h"

#define OK(call)                                                               \
    do {                                                                       \
        if ((call) != CKR_OK) {                                                \
            fprintf(stderr, "fuzz seeds: %s failed\n", #call);                 \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static void val_int(struct fz_out *o, int64_t v)
{
    unsigned char b[8];
    kt_store_put_le64(b, (uint64_t)v);
    fz_put_u8(o, FZ_INT);
    fz_put(o, b, 8);
}

static void val_blob(struct fz_out *o, const void *p, size_t len)
{
    fz_put_u8(o, FZ_BLOB);
    fz_put_str(o, p, len);
}

struct db {
    unsigned char ik[32], mk[32], mac_key[32], man_key[32];
    struct kt_pin pins[2];
    struct kt_manifest man;
    struct {
        unsigned char *blob;
        size_t len;
        unsigned char mac[32];
    } obj[2];
};

static void make_pin(struct db *db, int role, const char *pin)
{
    struct kt_pin *p = &db->pins[role];
    OK(kt_pin_make(p, (const unsigned char *)pin, strlen(pin), 10, role,
                   FZ_SERIAL));
    OK(kt_pin_box(p, db->mk, role, FZ_SERIAL, db->ik));
}

/* Object id i+1 at generation i+1: a sealed AES key, a public data
 * object; the manifest over both. */
static void make_objects(struct db *db)
{
    for (int i = 0; i < 2; i++) {
        kt_attrs a;
        kt_attrs_init(&a);
        CK_OBJECT_CLASS cls = i == 0 ? CKO_SECRET_KEY : CKO_DATA;
        OK(kt_attrs_set_ulong(&a, CKA_CLASS, cls));
        OK(kt_attrs_set_bool(&a, CKA_TOKEN, true));
        OK(kt_attrs_set_bool(&a, CKA_PRIVATE, i == 0));
        if (i == 0)
            OK(kt_attrs_set_ulong(&a, CKA_KEY_TYPE, CKK_AES));
        OK(kt_attrs_set(&a, CKA_VALUE, "0123456789abcdef", 16));
        OK(kt_seal_object(db->mk, i + 1, cls, &a, &db->obj[i].blob,
                          &db->obj[i].len));
        OK(kt_seal_record_mac(db->mac_key, i + 1, i + 1, db->obj[i].blob,
                              db->obj[i].len, db->obj[i].mac));
        unsigned char term[32];
        OK(kt_seal_manifest_term(db->man_key, i + 1, i + 1, db->obj[i].mac, 32,
                                 term));
        for (int j = 0; j < 32; j++)
            db->man.acc[j] ^= term[j];
        kt_attrs_clear(&a);
    }
    db->man.present = true;
    db->man.count = 2;
    db->man.ctr = 3;
    OK(kt_seal_pins_digest(db->man_key, db->pins, db->man.pins));
    OK(kt_seal_manifest_sign(db->man_key, &db->man));
}

static void put_pin_row(struct fz_out *o, int who, const struct kt_pin *p,
                        int64_t cost)
{
    val_int(o, who);
    val_blob(o, p->salt, sizeof(p->salt));
    val_int(o, cost);
    val_blob(o, p->verifier, sizeof(p->verifier));
    val_blob(o, p->priv, sizeof(p->priv));
    val_blob(o, p->pub, sizeof(p->pub));
    val_blob(o, p->box, sizeof(p->box));
    val_blob(o, p->bind, sizeof(p->bind));
    val_int(o, (int64_t)p->failures);
}

/* Edits of the valid database, one per seed. */
enum db_edit {
    E_NONE,
    E_NO_MANIFEST,
    E_SHORT_MANIFEST,
    E_COST_31,
    E_NO_SO,
    E_WHO_7,
    E_OBJECT_FLIPPED
};

static void db_seed(const struct db *db, const char *d, const char *name,
                    enum db_edit edit, int role, const char *pin)
{
    struct fz_out o = {.n = 0};
    fz_put_u8(&o, FZ_SEC_DB);
    fz_put_u8(&o, edit == E_NO_SO ? 1 : 2);
    if (edit != E_NO_SO)
        put_pin_row(&o, edit == E_WHO_7 ? 7 : KT_PIN_SO, &db->pins[KT_PIN_SO],
                    edit == E_COST_31 ? 31 : 10);
    put_pin_row(&o, KT_PIN_USER, &db->pins[KT_PIN_USER], 10);
    fz_put_u8(&o, 2);
    for (int i = 0; i < 2; i++) {
        unsigned char blob[1024];
        memcpy(blob, db->obj[i].blob, db->obj[i].len);
        if (edit == E_OBJECT_FLIPPED)
            blob[db->obj[i].len - 1] ^= 1;
        val_int(&o, i + 1);
        val_int(&o, i + 1);
        val_blob(&o, blob, db->obj[i].len);
        val_blob(&o, db->obj[i].mac, 32);
    }
    fz_put_u8(&o, 1); /* a deletion */
    val_int(&o, 9);
    val_int(&o, 2);
    unsigned char m[112];
    kt_store_put_le64(m, (uint64_t)db->man.count);
    kt_store_put_le64(m + 8, (uint64_t)db->man.ctr);
    memcpy(m + 16, db->man.acc, 32);
    memcpy(m + 48, db->man.pins, 32);
    memcpy(m + 80, db->man.mac, 32);
    if (edit == E_NO_MANIFEST)
        fz_put_u8(&o, FZ_NULL);
    else
        val_blob(&o, m, edit == E_SHORT_MANIFEST ? 100 : sizeof(m));
    fz_put_u8(&o, (unsigned)role);
    fz_put_str(&o, pin, strlen(pin));
    fz_write(d, name, &o);
}

static void gen_db(const char *d)
{
    struct db db;
    memset(&db, 0, sizeof(db));
    memset(db.ik, FZ_IK_BYTE, 32);
    memset(db.mk, FZ_MK_BYTE, 32);
    kt_seal_mac_key(db.ik, db.mac_key);
    kt_seal_manifest_key(db.ik, db.man_key);
    make_pin(&db, KT_PIN_SO, "so-pin");
    make_pin(&db, KT_PIN_USER, "user-pin");
    make_objects(&db);
    db_seed(&db, d, "db-user-login", E_NONE, KT_PIN_USER, "user-pin");
    db_seed(&db, d, "db-so-login", E_NONE, KT_PIN_SO, "so-pin");
    db_seed(&db, d, "db-wrong-pin", E_NONE, KT_PIN_USER, "wrong");
    db_seed(&db, d, "db-no-manifest", E_NO_MANIFEST, KT_PIN_USER, "user-pin");
    db_seed(&db, d, "db-short-manifest", E_SHORT_MANIFEST, KT_PIN_SO, "so-pin");
    db_seed(&db, d, "db-cost-31", E_COST_31, KT_PIN_USER, "user-pin");
    db_seed(&db, d, "db-no-so", E_NO_SO, KT_PIN_USER, "user-pin");
    db_seed(&db, d, "db-who-7", E_WHO_7, KT_PIN_USER, "user-pin");
    db_seed(&db, d, "db-object-flipped", E_OBJECT_FLIPPED, KT_PIN_USER,
            "user-pin");
    for (int i = 0; i < 2; i++)
        free(db.obj[i].blob);
}

static void meta_row(struct fz_out *o, const char *k, const char *v,
                     size_t vlen)
{
    fz_put_u8(o, FZ_TEXT);
    fz_put_str(o, k, strlen(k));
    fz_put_u8(o, FZ_TEXT);
    fz_put_str(o, v, vlen);
}

static void meta_seed(const char *d, const char *name, const char *format,
                      size_t label_len)
{
    struct fz_out o = {.n = 0};
    fz_put_u8(&o, FZ_SEC_META);
    fz_put_u8(&o, 4);
    meta_row(&o, "format", format, strlen(format));
    meta_row(&o, "label", FZ_LABEL, label_len);
    meta_row(&o, "serial", FZ_SERIAL, KT_SERIAL_LEN);
    meta_row(&o, "epoch", FZ_EPOCH, KT_EPOCH_LEN);
    fz_write(d, name, &o);
}

/* <serial>.seq as kt_seq_advance writes it, then edited. */
static void gen_seq(const char *d)
{
    char dir[] = "/tmp/kt-fuzz-seeds-XXXXXX", base[64], path[80];
    unsigned char ik[32], key[32], buf[256];
    if (mkdtemp(dir) == NULL)
        exit(1);
    snprintf(base, sizeof(base), "%s/%s", dir, FZ_SERIAL);
    snprintf(path, sizeof(path), "%s.seq", base);
    memset(ik, FZ_IK_BYTE, 32);
    kt_seal_seq_key(ik, key);
    OK(kt_seq_advance(base, -1, key, FZ_SERIAL, 7, true));
    OK(kt_seq_advance(base, -1, key, FZ_SERIAL, 8, false));
    FILE *fp = fopen(path, "rb");
    size_t n = fp != NULL ? fread(buf, 1, sizeof(buf), fp) : 0;
    if (fp != NULL)
        fclose(fp);
    unlink(path);
    rmdir(dir);
    struct fz_out o = {.n = 0};
    fz_put_u8(&o, FZ_SEC_SEQ);
    fz_put(&o, buf, n);
    fz_write(d, "seq-valid", &o);
    o.b[1 + n - 1] ^= 1; /* the newer slot's MAC */
    fz_write(d, "seq-slot-damaged", &o);
    o.b[1 + 20] ^= 1;
    fz_write(d, "seq-both-damaged", &o);
    o.n--;
    fz_write(d, "seq-short", &o);
}

void gen_pin(const char *d)
{
    gen_db(d);
    meta_seed(d, "meta-valid", KT_STORE_FORMAT, KT_LABEL_LEN);
    meta_seed(d, "meta-format-1", "keytier-token-1", KT_LABEL_LEN);
    meta_seed(d, "meta-format-2", "keytier-token-2", KT_LABEL_LEN);
    meta_seed(d, "meta-short-label", KT_STORE_FORMAT, 5);
    gen_seq(d);
    struct fz_out o = {.n = 0};
    fz_put_u8(&o, FZ_SEC_KEY);
    for (int i = 0; i < 32; i++)
        fz_put_u8(&o, FZ_IK_BYTE);
    fz_write(d, "key-valid", &o);
    o.n--;
    fz_write(d, "key-short", &o);
}
