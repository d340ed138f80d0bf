/* The token database: one SQLite file per token (DESIGN.md §1). */
#ifndef KT_STORE_H
#define KT_STORE_H

#include <stdint.h>
#include <sqlite3.h>

#include "kt.h"

/* Format 3 keys record MACs, the manifest and the PIN records with the
 * token's integrity key (<serial>.key, beside the database), checks every
 * load against it whether or not anyone is logged in, and keeps the highest
 * committed manifest counter in <serial>.seq. Format 1 and 2 files are
 * refused, not upgraded: an upgrade that creates what is missing (a
 * manifest, an integrity key) over whatever rows exist would bless a file
 * edited before the upgrade. */
/* Fixed-width integers in stored records and MAC inputs: little-endian. */
static inline void kt_store_put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t kt_store_get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define KT_STORE_FORMAT "keytier-token-3"

/* What an object write committed: the row's generation and record MAC, its
 * manifest term, and the manifest written with it. */
struct kt_store_written {
    int64_t gen;
    unsigned char mac[32];
    unsigned char term[32];
    struct kt_manifest man;
};

/* Creates a new token database (file 0600, WAL, synchronous=FULL) with the
 * SO's PIN record, a manifest (no object) under k and a new epoch. */
KT_NODISCARD CK_RV kt_store_create(const char *path, const char *label,
                                   const char *serial, const struct kt_pin *so,
                                   const struct kt_store_keys *k,
                                   sqlite3 **out);
/* Opens an existing database; a damaged or foreign file is refused with a
 * logged reason naming it. */
KT_NODISCARD CK_RV kt_store_open(const char *path, sqlite3 **out);
void kt_store_close(sqlite3 *db);
KT_NODISCARD CK_RV kt_store_read_meta(sqlite3 *db, const char *path,
                                      char label[KT_LABEL_LEN],
                                      char serial[KT_SERIAL_LEN]);
KT_NODISCARD CK_RV kt_store_read_pins(sqlite3 *db, const char *path,
                                      struct kt_pin pins[2]);
/* Every PIN write: one write transaction that checks the stored manifest
 * (authentic under k, its counter not below k->min_ctr) and that the PIN
 * records are the ones it names, lets fn change the records (fn returns
 * KT_CKR_NO_CHANGE to write nothing, or an error to roll back), then writes
 * the records and the manifest with its counter moved. With reseal, every
 * object row is also resealed from reseal->old_mk to reseal->new_mk (new
 * generation, record MAC and term) in the same transaction; a row that does
 * not authenticate or open refuses the whole change. out and *man get the
 * records and the manifest committed (man->present stays false when
 * nothing was written). CKR_DEVICE_ERROR (logged) when the records or the
 * manifest are not authentic. */
#define KT_CKR_NO_CHANGE ((CK_RV)(CKR_VENDOR_DEFINED | 0x4b540002UL))
struct kt_store_reseal {
    unsigned char old_mk[32];
    unsigned char new_mk[32];
};
KT_NODISCARD CK_RV kt_store_pins_update(sqlite3 *db,
                                        const struct kt_store_keys *k,
                                        kt_pins_fn fn, void *ctx,
                                        const struct kt_store_reseal *reseal,
                                        struct kt_pin out[2],
                                        struct kt_manifest *man);
/* *cache keeps the prepared statement (finalize it before closing). */
KT_NODISCARD CK_RV kt_store_data_version(sqlite3 *db, sqlite3_stmt **cache,
                                         int64_t *v);
/* Finalizes the statement kt_store_data_version kept (NULL: nothing). */
void kt_store_data_version_free(sqlite3_stmt *cache);

typedef CK_RV (*kt_store_row_fn)(void *ctx, int64_t id, int64_t gen,
                                 const unsigned char *blob, size_t len,
                                 const unsigned char *mac, size_t mac_len);
typedef void (*kt_store_del_fn)(void *ctx, int64_t id);
/* Rows changed after `since` (objects, then deletions), the PIN records
 * and the manifest, in one snapshot. *max_gen gets the largest generation
 * seen. */
KT_NODISCARD CK_RV kt_store_changes(sqlite3 *db, const char *path,
                                    int64_t since, kt_store_row_fn row,
                                    kt_store_del_fn del, void *ctx,
                                    int64_t *max_gen, struct kt_pin pins[2],
                                    struct kt_manifest *man);
/* One transaction each, the row's record MAC (over its new generation) and
 * the manifest update included. A write on a token whose stored manifest is
 * missing, not authentic or below k->min_ctr is refused (CKR_DEVICE_ERROR,
 * logged): it would otherwise sign a tampered or rolled-back object set. */
/* An update replaces the row only if it is still at expect_gen
 * (KT_CKR_RETRY otherwise). */
KT_NODISCARD CK_RV kt_store_put_object(sqlite3 *db,
                                       const struct kt_store_keys *k,
                                       int64_t id, const unsigned char *blob,
                                       size_t len, bool must_be_new,
                                       int64_t expect_gen,
                                       struct kt_store_written *w);
/* Read-modify-write of one row inside one write transaction: fn gets the
 * current row and produces its replacement, so a change is never made on a
 * stale copy (no lost update across processes). CKR_OBJECT_HANDLE_INVALID
 * if the row is gone. */
typedef CK_RV (*kt_store_update_fn)(void *ctx, int64_t gen,
                                    const unsigned char *blob, size_t len,
                                    const unsigned char *mac, size_t mac_len,
                                    unsigned char **new_blob, size_t *new_len);
KT_NODISCARD CK_RV kt_store_update_object(sqlite3 *db,
                                          const struct kt_store_keys *k,
                                          int64_t id, kt_store_update_fn fn,
                                          void *ctx,
                                          struct kt_store_written *w);
KT_NODISCARD CK_RV kt_store_delete_object(sqlite3 *db,
                                          const struct kt_store_keys *k,
                                          int64_t id,
                                          struct kt_store_written *w);
/* The token's epoch (meta 'epoch'): a random value written at creation and
 * by every re-initialisation, so running processes notice one. A file
 * without it reads as all zero bytes. */
KT_NODISCARD CK_RV kt_store_read_epoch(sqlite3 *db, char epoch[KT_EPOCH_LEN]);
/* C_InitToken on an existing token: every object gone, new label, new SO
 * record, no user PIN, an empty manifest under the new keys k (its counter
 * continues), a new epoch. *man gets the manifest committed. */
KT_NODISCARD CK_RV kt_store_reinit(sqlite3 *db, const char *label,
                                   const struct kt_pin *so,
                                   const struct kt_store_keys *k,
                                   struct kt_manifest *man);

/* The files beside <serial>.db (keyfile.c). <serial>.key: the integrity
 * key, 32 bytes, 0600. <serial>.seq: the highest committed manifest write
 * counter under a MAC (kt_seal_seq_key), replaced atomically, never moved
 * back. `base` is the database path without ".db". */
KT_NODISCARD CK_RV kt_keyfile_create(const char *base, unsigned char ik[32]);
/* Writes a new key to <base>.key.new (0600, synced); kt_keyfile_install
 * renames it over <base>.key and syncs the directory. */
KT_NODISCARD CK_RV kt_keyfile_prepare(const char *base, unsigned char ik[32]);
KT_NODISCARD CK_RV kt_keyfile_install(const char *base);
void kt_keyfile_discard(const char *base);
/* Reads the key; *fd gets the open file (kept: flock serialises .seq
 * updates across processes), *ino its inode to notice a replacement.
 * Missing or damaged: CKR_DEVICE_ERROR, logged. */
KT_NODISCARD CK_RV kt_keyfile_read(const char *base, unsigned char ik[32],
                                   int *fd, uint64_t *ino);
/* The inode <base>.key has now (0 if missing). */
uint64_t kt_keyfile_ino(const char *base);
/* CKR_OK with *ctr, or CKR_DATA_INVALID (missing, damaged or not authentic
 * under seq_key; *why says which). */
KT_NODISCARD CK_RV kt_seq_read(const char *base,
                               const unsigned char seq_key[32],
                               const char serial[KT_SERIAL_LEN], int64_t *ctr,
                               const char **why);
/* Raises <base>.seq to ctr (never lowers it), under flock(lock_fd). With
 * fresh, writes ctr whatever the file holds (a new token or a new key). */
KT_NODISCARD CK_RV kt_seq_advance(const char *base, int lock_fd,
                                  const unsigned char seq_key[32],
                                  const char serial[KT_SERIAL_LEN], int64_t ctr,
                                  bool fresh);

/* Sealing (seal.c): secret attributes under AES-256-GCM with the object id
 * and attribute type as AAD, the whole record (id, generation, blob) under
 * an HMAC, the set of records under the manifest. */
/* Keys derived from the integrity key ik. */
/* The three keys at once, for the module: CKR_HOST_MEMORY (keys wiped)
 * when one could not be computed; the single ones below leave zeros. */
KT_NODISCARD CK_RV kt_seal_keys(const unsigned char ik[32],
                                unsigned char mac[32],
                                unsigned char manifest[32],
                                unsigned char seq[32]);
void kt_seal_mac_key(const unsigned char ik[32], unsigned char out[32]);
void kt_seal_manifest_key(const unsigned char ik[32], unsigned char out[32]);
void kt_seal_seq_key(const unsigned char ik[32], unsigned char out[32]);
/* The manifest's pins field: a MAC over both PIN records, counters
 * included. */
KT_NODISCARD CK_RV kt_seal_pins_digest(const unsigned char man_key[32],
                                       const struct kt_pin pins[2],
                                       unsigned char out[32]);
/* Whether a record of these attributes holds anything sealed under the
 * master key (key material, a private data object's value): only such a
 * record needs a login to be written. */
bool kt_seal_needs_mk(CK_OBJECT_CLASS cls, const kt_attrs *plain);
KT_NODISCARD CK_RV kt_seal_object(const unsigned char mk[32], int64_t id,
                                  CK_OBJECT_CLASS cls, const kt_attrs *plain,
                                  unsigned char **blob, size_t *len);
KT_NODISCARD CK_RV kt_seal_record_mac(const unsigned char mac_key[32],
                                      int64_t id, int64_t gen,
                                      const unsigned char *blob, size_t len,
                                      unsigned char out[32]);
KT_NODISCARD CK_RV kt_seal_verify(const unsigned char mac_key[32], int64_t id,
                                  int64_t gen, const unsigned char *blob,
                                  size_t len, const unsigned char *mac);
/* A record's term in the manifest: PRF(man_key, id || gen || record mac). */
KT_NODISCARD CK_RV kt_seal_manifest_term(const unsigned char man_key[32],
                                         int64_t id, int64_t gen,
                                         const unsigned char *mac,
                                         size_t mac_len, unsigned char out[32]);
KT_NODISCARD CK_RV kt_seal_manifest_sign(const unsigned char man_key[32],
                                         struct kt_manifest *m);
/* CKR_DATA_INVALID if missing or its MAC does not verify. */
KT_NODISCARD CK_RV kt_seal_manifest_check(const unsigned char man_key[32],
                                          const struct kt_manifest *m);
/* Replaces sealed values in attrs by their plaintext. */
KT_NODISCARD CK_RV kt_seal_open_attrs(const unsigned char mk[32], int64_t id,
                                      CK_OBJECT_CLASS cls, kt_attrs *attrs);

#endif
