/*
 * The audit log (DESIGN.md §2 "Audit"): append-only JSON lines, each
 * carrying the SHA-256 of the previous record so that an edited, removed,
 * reordered or forged line breaks the chain at a line verify can name.
 *
 * A line is the json-c serialisation (plain, no spaces) of an object whose
 * keys are, in order: Seq, CreationTime, Id, Node and GlobalIndex (a
 * handle with an index hook, kt_audit_set_node), RecordType, Activity,
 * the event's fields, PrevHash and Hash.  Hash is the hex SHA-256 of the same
 * serialisation without the Hash key; PrevHash is the previous line's Hash
 * (64 zeros for the first line).  Appends take an exclusive flock (and a
 * mutex, as flock does not exclude threads sharing a descriptor) around
 * reading the last hash and writing, and fdatasync before reporting success.
 *
 * Anchor (audit_anchor.c; SECURITY.md "The audit log").  The chain alone
 * cannot show a cut tail, and whoever can write the file can recompute
 * every hash.  So after each append, still under the lock, the anchor
 * hook records the head (log id = the Id of record 1, Seq, Hash) in the
 * store, MACed (HMAC-SHA-256) by the service token's non-extractable key
 * "keytier-audit-anchor".  The record is on disk before the hook runs and
 * the hook cannot fail the append: with the service token unreachable (its
 * call has the pool's deadline) or after a crash between append and
 * anchor, the anchor lags and keytier_audit_verify_anchored reports the
 * records after it as unanchored (KEYTIER_E_AUDIT_UNANCHORED), not as
 * tampering.  The anchor never moves backwards, and only along a chain the
 * hook verified from the last anchor it can prove (kt_audit_chain_since
 * when the hook has not seen the records since); a log with records and
 * no anchor row is never anchored unless this handle began it.
 */
#ifndef KT_AUDIT_H
#define KT_AUDIT_H

#include <stdint.h>

#include <json-c/json.h>

#include "ckr_class.h"
#include "kt_base.h"

#define KT_AUDIT_RECORD_TYPE "CustomerKeyServiceEncryption"
#define KT_AUDIT_FALLBACK    "Fallback to availability key"
#define KT_AUDIT_DENIED      "Request denied: customer keys revoked"
#define KT_AUDIT_DEP_CREATED "DEP created"
/* A creation taken back after its "DEP created" record (keys/dep_state.c) */
#define KT_AUDIT_DEP_UNDONE  "DEP creation undone"
#define KT_AUDIT_CACHE_ALERT "Cache refresh failing"
#define KT_AUDIT_HASH_HEX    64
#define KT_AUDIT_ID_SIZE     37 /* a record Id (UUID text) and its NUL */

/* The head of a log after an append: what an anchor records. */
typedef struct kt_audit_head {
    const char *path;                      /* the log as opened */
    char log_id[KT_AUDIT_ID_SIZE];         /* Id of the log's first record */
    uint64_t seq;                          /* Seq of the newest record */
    char hash[KT_AUDIT_HASH_HEX + 1];      /* its Hash */
    char prev_hash[KT_AUDIT_HASH_HEX + 1]; /* its PrevHash */
} kt_audit_head;

/*
 * Called after every successful append, under the append lock (flock and
 * mutex), so calls follow the order of the records.  head is NULL when the
 * log's identity could not be read (the error is in the thread's detail).
 * The record is already on disk: the hook cannot fail the append.
 */
typedef struct kt_audit kt_audit;
typedef void (*kt_audit_anchor_fn)(void *arg, kt_audit *audit,
                                   const kt_audit_head *head);

/*
 * Audit across nodes (DESIGN.md §2 "Audit across nodes"): each node writes
 * its own log, a chain, and every record carries the node's name (Node)
 * and a global index (GlobalIndex) taken from the store under the append
 * lock before the line is written.  The hook takes it for the record of
 * log log_id (the Id of its first record; the record's own for a new log)
 * at path: KEYTIER_OK with *index, or the error that stops the append.
 */
typedef keytier_err (*kt_audit_index_fn)(void *arg, const char *log_id,
                                         const char *node, const char *path,
                                         uint64_t *index);
typedef struct kt_audit_node_fields {
    char node[KEYTIER_NODE_MAX + 1];
    uint64_t index; /* 0: none */
} kt_audit_node_fields;

/* Opens (creating 0600 if needed) the log at path for appending. */
KT_NODISCARD keytier_err kt_audit_open(const char *path, kt_audit **out);
void kt_audit_close(kt_audit *audit);
/* Sets (fn NULL: clears) the anchor hook of a handle; release (may be
 * NULL) frees arg when the hook is replaced or the handle closed. */
void kt_audit_set_anchor(kt_audit *audit, kt_audit_anchor_fn fn, void *arg,
                         void (*release)(void *arg));
/* Sets (node NULL: clears) the node whose chain the handle writes and the
 * hook that takes each record's global index; arg stays the caller's. */
void kt_audit_set_node(kt_audit *audit, const char *node, kt_audit_index_fn fn,
                       void *arg);
/* From inside an anchor hook only (append lock held): that the file's
 * record seq has this Hash and every line after it, up to the record just
 * appended, follows the chain (each line bounded, re-hashed, in sequence).
 * KEYTIER_E_AUDIT_TAMPERED (what broke in the detail), KEYTIER_E_AUDIT or
 * KEYTIER_E_NOMEM. */
KT_NODISCARD keytier_err kt_audit_chain_since(kt_audit *audit, uint64_t seq,
                                              const char *hash);
/* The identity of the log at path: the Id of its first record.
 * KEYTIER_E_NOT_FOUND (empty log), KEYTIER_E_AUDIT_TAMPERED (line 1 is not
 * a record with an Id), KEYTIER_E_IO. */
KT_NODISCARD keytier_err kt_audit_log_id(const char *path,
                                         char out[KT_AUDIT_ID_SIZE]);

/*
 * Appends one record: the standard fields are added around fields (a JSON
 * object; ownership is taken, even on failure; NULL for none).  Returns once
 * the line is on disk.  *seq_out (if not NULL) gets the record's Seq.
 */
KT_NODISCARD keytier_err kt_audit_append(kt_audit *audit, const char *activity,
                                         json_object *fields,
                                         uint64_t *seq_out);

/* The request a record is about (DESIGN.md §2 fallback record fields). */
typedef struct kt_audit_request {
    const char *workload; /* Exchange, SharePoint, ... */
    const char *org_id;   /* organisation (tenant) id */
    const char *dep_id;
    const char *policy_id;
    const char *request_id;
    const char *kind;        /* "user" or "internal" */
    const char *operation;   /* internal operation (index, ...), or NULL */
    const char *approval_id; /* the approval a read used, or NULL */
} kt_audit_request;

/* One customer key's failure: which key ("A"/"B"), its URI (without any
 * query part: no PIN ever reaches the log) and the outcome. */
typedef struct kt_audit_key_error {
    const char *key;
    const char *uri;
    CK_RV rv;
} kt_audit_key_error;

/* Adds the fields naming a DEP, in this order and each only when not NULL:
 * Workload, OrganizationId (the tenant), DataEncryptionPolicyId and
 * PolicyId.  Every record about a DEP carries them under these keys. */
void kt_audit_add_dep_fields(json_object *o, const char *workload,
                             const char *tenant, const char *dep_id,
                             const char *policy_id);

KT_NODISCARD keytier_err kt_audit_fallback(kt_audit *audit,
                                           const kt_audit_request *req,
                                           const kt_audit_key_error errs[2]);
KT_NODISCARD keytier_err kt_audit_denied(kt_audit *audit,
                                         const kt_audit_request *req,
                                         const kt_audit_key_error errs[2]);
KT_NODISCARD keytier_err kt_audit_dep_created(kt_audit *audit,
                                              const kt_audit_request *req);
/* The cache could not refresh entry for failing_ms; it expires in
 * expires_in_ms unless a refresh succeeds. */
KT_NODISCARD keytier_err kt_audit_cache_alert(
    kt_audit *audit, const char *org_id, const char *dep_id, const char *entry,
    uint64_t failing_ms, uint64_t expires_in_ms);

/*
 * Checks every line of the log at path.  KEYTIER_OK when the chain is
 * intact; KEYTIER_E_AUDIT_EMPTY when the file holds no record (nothing was
 * verified); otherwise KEYTIER_E_AUDIT_TAMPERED with *bad_line the 1-based
 * number of the first bad line (and the reason in the error detail), or
 * KEYTIER_E_IO.  *records gets the number of good records (may be NULL).
 */
KT_NODISCARD keytier_err kt_audit_verify(const char *path, uint64_t *bad_line,
                                         uint64_t *records);

/* kt_audit_verify, also returning the head's Hash and the Hash of record
 * at_seq (set at_seq before the call; at_hash stays "" when the intact
 * records do not reach it). */
typedef struct kt_audit_scan_result {
    uint64_t at_seq;
    bool collect; /* set before the call: fill indices (free it after) */
    uint64_t records, bad_line;
    char at_hash[KT_AUDIT_HASH_HEX + 1];
    char head_hash[KT_AUDIT_HASH_HEX + 1];
    /* The chain's node and the global indices of its records (none: node
     * "" and indexed 0), checked as one node's chain (kt_audit_scan_node). */
    char node[KEYTIER_NODE_MAX + 1];
    uint64_t indexed, first_index, last_index;
    uint64_t *indices; /* collect: each indexed record's, in order */
    size_t cap_indices;
} kt_audit_scan_result;
KT_NODISCARD keytier_err kt_audit_scan(const char *path,
                                       kt_audit_scan_result *r);

#endif
