/* The token database: one SQLite file per token (DESIGN.md §1). */
#ifndef KT_STORE_H
#define KT_STORE_H

#include <stdint.h>
#include <sqlite3.h>

#include "../kt.h"

/* Format 2 adds the generation to the record MAC and the object manifest
 * (meta 'manifest'). Format 1 files (pre-release, tests only) are refused,
 * not upgraded: an upgrade that creates a missing manifest over whatever
 * rows exist would let anyone who deletes the manifest roll records back. */
#define KT_STORE_FORMAT "keytier-token-2"

/* What an object write committed: the row's generation and record MAC, its
 * manifest term, and the manifest written with it. */
struct kt_store_written {
    int64_t gen;
    unsigned char mac[32];
    unsigned char term[32];
    struct kt_manifest man;
};

/* Creates a new token database (file 0600, WAL, synchronous=FULL) with an
 * empty object manifest under man_key and a new epoch. */
KT_NODISCARD CK_RV kt_store_create(const char *path, const char *label,
                                   const char *serial, const struct kt_pin *so,
                                   const unsigned char man_key[32],
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
KT_NODISCARD CK_RV kt_store_write_pin(sqlite3 *db, int which,
                                      const struct kt_pin *p);
KT_NODISCARD CK_RV kt_store_set_failures(sqlite3 *db, int which,
                                         CK_ULONG failures);
/* *cache keeps the prepared statement (finalize it before closing). */
/* Charges one try to a PIN counter before the PIN is checked, in one
 * transaction: CKR_PIN_LOCKED at the limit (nothing written),
 * CKR_USER_PIN_NOT_INITIALIZED without a record. *failures gets the stored
 * count after the call. */
KT_NODISCARD CK_RV kt_store_pin_charge(sqlite3 *db, int which, CK_ULONG max,
                                       CK_ULONG *failures);
KT_NODISCARD CK_RV kt_store_data_version(sqlite3 *db, sqlite3_stmt **cache,
                                         int64_t *v);

typedef CK_RV (*kt_store_row_fn)(void *ctx, int64_t id, int64_t gen,
                                 const unsigned char *blob, size_t len,
                                 const unsigned char *mac, size_t mac_len);
typedef void (*kt_store_del_fn)(void *ctx, int64_t id);
/* Rows changed after `since` (objects, then deletions), and the manifest,
 * in one snapshot. *max_gen gets the largest generation seen. */
KT_NODISCARD CK_RV kt_store_changes(sqlite3 *db, int64_t since,
                                    kt_store_row_fn row, kt_store_del_fn del,
                                    void *ctx, int64_t *max_gen,
                                    struct kt_manifest *man);
/* One transaction each, the row's record MAC (over its new generation) and
 * the manifest update included. A write on a token whose stored manifest is
 * missing or not authentic is refused (CKR_DEVICE_ERROR, logged): it would
 * otherwise sign a tampered object set. */
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
 * record, no user PIN, an empty manifest under the new man_key, a new
 * epoch. */
KT_NODISCARD CK_RV kt_store_reinit(sqlite3 *db, const char *label,
                                   const struct kt_pin *so,
                                   const unsigned char man_key[32]);

/* Sealing (seal.c): secret attributes under AES-256-GCM with the object id
 * and attribute type as AAD, the whole record (id, generation, blob) under
 * an HMAC, the set of records under the manifest. */
void kt_seal_mac_key(const unsigned char mk[32], unsigned char out[32]);
void kt_seal_manifest_key(const unsigned char mk[32], unsigned char out[32]);
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
