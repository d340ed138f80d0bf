/*
 * keytier.h - public API of libkeytier.
 *
 * libkeytier encrypts tenant data under a data encryption policy (DEP) whose
 * key is wrapped by two customer root keys held in two different PKCS#11
 * tokens and by a service-held availability key (docs/DESIGN.md §2).
 *
 * Conventions
 *  - Every function returns a keytier_err; KEYTIER_OK is 0.  On failure,
 *    keytier_strerror() gives the fixed message of the code and
 *    keytier_last_error_detail() a sentence (per thread) naming the object
 *    and the reason, e.g. the key URI that turned out extractable.  Neither
 *    ever contains key material or a PIN.
 *  - Types are opaque; objects returned through an out pointer are released
 *    with the matching *_free / *_close function.  No PKCS#11 or OpenSSL
 *    type appears here.
 *  - A keytier_ctx may be shared by many threads.  Opened keys
 *    (keytier_key) may be used by many threads for sealing and opening.
 */
#ifndef KEYTIER_H
#define KEYTIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KEYTIER_API        __attribute__((visibility("default")))
#define KEYTIER_MUST_CHECK __attribute__((warn_unused_result))
#else
#define KEYTIER_API
#define KEYTIER_MUST_CHECK
#endif

/*
 * The error table: the only list of errors of the library.  Each row gives
 * the enum name, its value and its message; the enum, keytier_strerror()
 * and keytier_error_name() are all generated from it.  Values are stable
 * (they may be stored or sent over the wire): append, never renumber.
 */
#define KEYTIER_ERROR_TABLE(X)                                                 \
    X(KEYTIER_OK, 0, "success")                                                \
    X(KEYTIER_E_ARGS, 1, "invalid argument")                                   \
    X(KEYTIER_E_NOMEM, 2, "out of memory")                                     \
    X(KEYTIER_E_CONFIG, 3, "invalid configuration")                            \
    X(KEYTIER_E_MODULE, 4, "PKCS#11 module could not be loaded")               \
    X(KEYTIER_E_URI, 5, "malformed PKCS#11 URI")                               \
    X(KEYTIER_E_TOKEN_NOT_FOUND, 6, "no configured token matches")             \
    X(KEYTIER_E_TOKEN_AMBIGUOUS, 7, "several tokens match")                    \
    X(KEYTIER_E_KEY_NOT_FOUND, 8, "root key not found")                        \
    X(KEYTIER_E_KEY_AMBIGUOUS, 9, "several keys match")                        \
    X(KEYTIER_E_KEY_EXTRACTABLE, 10, "root key is extractable")                \
    X(KEYTIER_E_KEY_USAGE, 11, "root key may not wrap or unwrap")              \
    X(KEYTIER_E_KEY_TYPE, 12, "unsupported root key type")                     \
    X(KEYTIER_E_SAME_TOKEN, 13, "customer keys are in the same token")         \
    X(KEYTIER_E_MECHANISM, 14, "token does not support the wrap mechanism")    \
    X(KEYTIER_E_PIN, 15, "PIN unavailable")                                    \
    X(KEYTIER_E_LOGIN, 16, "token login failed")                               \
    X(KEYTIER_E_TOKEN, 17, "token operation failed")                           \
    X(KEYTIER_E_DEP_LIMIT, 18, "too many DEPs for this tenant and workload")   \
    X(KEYTIER_E_DEP_NOT_FOUND, 19, "DEP not found")                            \
    X(KEYTIER_E_DEP_DISABLED, 20, "DEP is disabled")                           \
    X(KEYTIER_E_WRONG_TENANT, 21, "object belongs to another tenant")          \
    X(KEYTIER_E_NOT_FOUND, 22, "key not found")                                \
    X(KEYTIER_E_WRONG_PARENT, 23, "key is not under this parent")              \
    X(KEYTIER_E_DEPTH, 24, "key tier depth exceeded")                          \
    X(KEYTIER_E_EXISTS, 25, "already exists")                                  \
    X(KEYTIER_E_AUTH, 26, "authentication failed: data altered or wrong key")  \
    X(KEYTIER_E_COMMITMENT, 27, "key commitment mismatch")                     \
    X(KEYTIER_E_FORMAT, 28, "malformed envelope or record")                    \
    X(KEYTIER_E_VERSION, 29, "unsupported format version")                     \
    X(KEYTIER_E_WRONG_KEY, 30, "envelope was sealed under another key")        \
    X(KEYTIER_E_TRUNCATED, 31, "stream truncated")                             \
    X(KEYTIER_E_IO, 32, "input/output error")                                  \
    X(KEYTIER_E_STORE, 33, "store error")                                      \
    X(KEYTIER_E_STORE_VERSION, 34, "store schema is newer than this library")  \
    X(KEYTIER_E_CRYPTO, 35, "cryptographic library failure")                   \
    X(KEYTIER_E_UNWRAP, 36, "no customer key could unwrap the DEP key")        \
    X(KEYTIER_E_BUFFER, 37, "output buffer too small")                         \
    X(KEYTIER_E_INTERNAL, 38, "internal error")                                \
    X(KEYTIER_E_KEY_ROLE, 39,                                                  \
      "key has another role: it cannot be a customer key")                     \
    /* 40..49: availability */                                                 \
    X(KEYTIER_E_REVOKED, 40, "access revoked: the customer keys refused")      \
    X(KEYTIER_E_UNAVAILABLE, 41, "customer keys unavailable")                  \
    X(KEYTIER_E_AUDIT, 42, "audit log could not be written")                   \
    X(KEYTIER_E_AUDIT_TAMPERED, 43, "audit log altered")                       \
    X(KEYTIER_E_AUDIT_UNANCHORED, 44,                                          \
      "audit log intact, but its newest records are not anchored")             \
    X(KEYTIER_E_AUDIT_EMPTY, 45, "audit log empty: nothing verified")          \
    /* 60..69: lifecycle */                                                    \
    X(KEYTIER_E_PURGED, 60, "tenant purged: its keys were destroyed")          \
    X(KEYTIER_E_DEP_STATE, 61, "DEP state does not allow this operation")      \
    X(KEYTIER_E_RETIRED, 62,                                                   \
      "secret key retired: secrets protected under it cannot be opened")       \
    /* 70..79: approvals of privileged operations */                           \
    X(KEYTIER_E_APPROVAL_REQUIRED, 70,                                         \
      "this operation needs a live approval (--approval ID)")                  \
    X(KEYTIER_E_APPROVAL_EXPIRED, 71, "approval expired")                      \
    X(KEYTIER_E_APPROVAL_INVALID, 72,                                          \
      "approval does not verify: altered, or not signed by its approver")      \
    X(KEYTIER_E_APPROVAL_SELF, 73,                                             \
      "an approver may not grant their own request")                           \
    X(KEYTIER_E_APPROVAL_SCOPE, 74,                                            \
      "approval is for another operation, tenant or scope")                    \
    X(KEYTIER_E_APPROVAL_USED, 75, "single-use approval already used")         \
    X(KEYTIER_E_APPROVAL_REVOKED, 76, "approval revoked")                      \
    X(KEYTIER_E_APPROVAL_PENDING, 77, "approval not granted yet")              \
    X(KEYTIER_E_APPROVER, 78,                                                  \
      "not an approver: name and key fingerprint must be pinned in the "       \
      "configuration")                                                         \
    /* 80..84: files workload: regions, tenant intermediate keys, offboard */  \
    X(KEYTIER_E_DEP_REGION, 80,                                                \
      "the tenant already has a files DEP in this region")                     \
    X(KEYTIER_E_OFFBOARDED, 81,                                                \
      "DEP offboarded: the tenant's files keys are service-managed")           \
    /* 82, 85..86: the PostgreSQL store */                                     \
    X(KEYTIER_E_STORE_UNAVAILABLE, 82,                                         \
      "store unreachable: the connection to PostgreSQL was lost or refused")   \
    /* 83..84: operations (keytier stats, keytier health) */                   \
    X(KEYTIER_E_OPS_COUNTERS, 83,                                              \
      "published counters unreadable: a node_stats row is not the counters "   \
      "this library writes")                                                   \
    /* 87..89: workers (keytier worker): claims under a lease */               \
    X(KEYTIER_E_LEASE_LOST, 87,                                                \
      "claim lost: another worker took the batch over after its lease ran "    \
      "out; nothing of it was written")                                        \
    /* 90..92: audit across nodes */                                           \
    X(KEYTIER_E_AUDIT_NODE, 90,                                                \
      "audit log is another node's chain: give each node its own "             \
      "avail.audit_log")

#define KEYTIER_ERROR_ENUM_(name, value, msg) name = value,
typedef enum keytier_err {
    KEYTIER_ERROR_TABLE(KEYTIER_ERROR_ENUM_)
} keytier_err;
#undef KEYTIER_ERROR_ENUM_

/* Fixed message of an error code ("unknown error" for values not in the
 * table).  Never NULL. */
KEYTIER_API const char *keytier_strerror(keytier_err err);
/* Symbolic name of an error code ("KEYTIER_E_AUTH"); never NULL. */
KEYTIER_API const char *keytier_error_name(keytier_err err);
/* Detail of the last error returned to this thread: the message followed by
 * the object and reason ("root key is extractable: pkcs11:token=A;object=r").
 * Valid until the thread's next libkeytier call.  Never NULL. */
KEYTIER_API const char *keytier_last_error_detail(void);
/* Version of the loaded libkeytier ("0.1.0", meson.build's project
 * version).  Never NULL. */
KEYTIER_API const char *keytier_version(void);

/* ======================================================================
 * Context
 * ====================================================================== */

typedef struct keytier_ctx keytier_ctx;

/*
 * Opens a context from a configuration file (format: hsm-config/
 * keytier-lib.conf.example).  config_path NULL uses $KEYTIER_LIB_CONF,
 * else the per-user $XDG_CONFIG_HOME/keytier/keytier-lib.conf
 * (~/.config/keytier/keytier-lib.conf) if it exists, else the system-wide
 * SYSCONFDIR/keytier/keytier-lib.conf (/etc/keytier/keytier-lib.conf in
 * packages) if it exists, and without any the embedded default (no
 * modules, store at $XDG_DATA_HOME/keytier/keytier.db or
 * ~/.local/share/keytier/keytier.db).
 * Loads the configured PKCS#11 modules (p11-kit) and opens the store.
 * Errors: KEYTIER_E_CONFIG (file, line and key named in the detail),
 * KEYTIER_E_MODULE, KEYTIER_E_STORE, KEYTIER_E_STORE_VERSION.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_ctx_open(const char *config_path, keytier_ctx **out);
/* The configuration file keytier_ctx_open(NULL, ...) reads, in the order
 * above, copied to buf (len bytes): 1; 0 when there is none (the embedded
 * default) or the path does not fit. */
KEYTIER_API int keytier_config_default(char *buf, size_t len);
/* Closes sessions, finalizes modules, closes the store.  NULL-safe. */
KEYTIER_API void keytier_ctx_close(keytier_ctx *ctx);

/* ======================================================================
 * Requests
 * ====================================================================== */

typedef enum keytier_request_kind {
    KEYTIER_REQUEST_USER = 0,     /* on behalf of a user */
    KEYTIER_REQUEST_INTERNAL = 1, /* the service's own, see `operation` */
} keytier_request_kind;

/*
 * The internal operations: a fixed set (docs/DESIGN.md §2 "Reading a DEP
 * key"), never a caller's free text.  Whether each may read through the
 * availability key is decided per workload shape by the fallback rule
 * (lib/avail/fallback_rule.c, `keytier help fallback`):
 *
 *   operation        mail shape (Exchange)       files shape (SharePoint)
 *   move, index,     when the workload falls     never
 *   malware-scan,    back on outages (default
 *   ediscovery, dlp  yes), also after revocation
 *   recover          always                      always, with a live
 *                                                approval
 *   roll, assign,    never: the library's own re-encryption, a lasting
 *   migrate          copy that must not undo a revocation (not a name
 *                    keytier_internal_op_parse takes)
 *
 * A user read of the files shape through the availability key (an outage,
 * with avail.outage_fallback.W = yes) also needs a live approval.  The
 * names (keytier_internal_op_name) are the CLI's `--internal` values and
 * the "Operation" field of audit records.
 */
typedef enum keytier_internal_op {
    KEYTIER_INTERNAL_NONE = 0,         /* a user request names none */
    KEYTIER_INTERNAL_MOVE = 1,         /* "move": a mailbox move */
    KEYTIER_INTERNAL_INDEX = 2,        /* "index": search indexing */
    KEYTIER_INTERNAL_MALWARE_SCAN = 3, /* "malware-scan" */
    KEYTIER_INTERNAL_EDISCOVERY = 4,   /* "ediscovery" */
    KEYTIER_INTERNAL_DLP = 5,          /* "dlp": data loss prevention */
    KEYTIER_INTERNAL_RECOVER = 6,      /* "recover": recovery of data */
    KEYTIER_INTERNAL_ROLL = 7,         /* "roll": the library's own */
    KEYTIER_INTERNAL_ASSIGN = 8,       /* "assign": the library's own */
    KEYTIER_INTERNAL_MIGRATE = 9,      /* "migrate": the library's own */
} keytier_internal_op;

/* The name of an operation ("move", "index", ...), NULL for NONE and for a
 * value outside the enumeration. */
KEYTIER_API const char *keytier_internal_op_name(keytier_internal_op op);
/* The operation a name stands for; the library's own (roll, assign,
 * migrate) are not a caller's to name.  KEYTIER_E_ARGS, the detail
 * listing the valid names, for any other text. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_internal_op_parse(const char *name, keytier_internal_op *out);

/* Who asks: every operation that needs a DEP key carries one.  A user
 * request has operation KEYTIER_INTERNAL_NONE; an internal request names
 * one of the set above (else KEYTIER_E_ARGS).  The operation's name and
 * `request_id` (may be NULL: a new UUID) are copied into audit records.
 * `approval_id` (may be NULL) is the live approval
 * (KEYTIER_APPROVAL_FILES_AVAIL_READ, tenant, scope the DEP id) a read of
 * the files shape needs before it may use the availability key; the
 * read then consumes it, and its fallback record names it.  Without one
 * such a read fails with KEYTIER_E_APPROVAL_REQUIRED (or the approval's
 * own error, keytier_approval_consume), unless `approval.required = no`. */
typedef struct keytier_request {
    keytier_request_kind kind;
    keytier_internal_op operation;
    const char *request_id;
    const char *approval_id;
} keytier_request;

/* ======================================================================
 * Data encryption policies (DEPs)
 * ====================================================================== */

#define KEYTIER_ID_SIZE      37  /* a UUID in text form and its NUL */
#define KEYTIER_TENANT_MAX   128 /* bytes of a tenant (organisation) id */
#define KEYTIER_WORKLOAD_MAX 64
#define KEYTIER_NAME_MAX     255 /* mailbox / site / blob names */
#define KEYTIER_DEP_NAME_MAX 64  /* a DEP's human name, in bytes */
#define KEYTIER_URI_MAX      1024
#define KEYTIER_NODE_MAX     64 /* bytes of a node name (`node = NAME`) */

typedef enum keytier_dep_state {
    KEYTIER_DEP_REGISTERING = 0,
    KEYTIER_DEP_REGISTERED = 1,
    KEYTIER_DEP_ROLLING = 2,
    KEYTIER_DEP_MIGRATING = 3,
    KEYTIER_DEP_DISABLED = 4,
    KEYTIER_DEP_PURGED = 5,
    /* files shape: the tenant's keys moved to a service-managed key
     * (keytier_files_offboard); the DEP key is no longer used */
    KEYTIER_DEP_OFFBOARDED = 6,
} keytier_dep_state;

/* A files DEP belongs to a tenant and a region (geography): one files DEP
 * per tenant, workload and region that is not disabled, purged or
 * offboarded.  Region names: 1 to KEYTIER_REGION_MAX bytes of [a-z0-9-].
 * A files DEP created without a region, and every files DEP of a store
 * made before regions, is in KEYTIER_REGION_DEFAULT.  DEPs of the mail
 * shape have no region (""). */
#define KEYTIER_REGION_MAX     32
#define KEYTIER_REGION_DEFAULT "default"

/* Root slots of a DEP.  KEYTIER_ROOT_MANAGED is no slot of a DEP: it names
 * the service-managed key of an offboarded files DEP in purge reports. */
enum {
    KEYTIER_ROOT_A = 0,
    KEYTIER_ROOT_B = 1,
    KEYTIER_ROOT_AVAIL = 2,
    KEYTIER_ROOT_MANAGED = 3
};

typedef struct keytier_dep_info {
    char dep_id[KEYTIER_ID_SIZE];
    char policy_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    keytier_dep_state state;
    int64_t created; /* seconds since the epoch, UTC */
    /* Per root (KEYTIER_ROOT_*): its PKCS#11 URI and the mechanism its
     * wrapped copy of the DEP key was made with ("aes-key-wrap-pad",
     * "rsa-oaep-sha256", "rsa-oaep-sha1"). */
    char root_uri[3][KEYTIER_URI_MAX];
    char wrap_mech[3][32];
    /* The human name given at creation; "" when the DEP has none. */
    char name[KEYTIER_DEP_NAME_MAX + 1];
    /* ---- files shape: region and tenant intermediate key ---- */
    /* The region of a files DEP ("" for the mail shape). */
    char region[KEYTIER_REGION_MAX + 1];
    /* The id of the DEP's tenant intermediate key (the oldest, when a
     * migration brought others); "" for the mail shape and for files DEPs
     * made before tenant intermediate keys. */
    char tik_id[KEYTIER_ID_SIZE];
} keytier_dep_info;

/*
 * Creates a DEP for a tenant and workload from two customer root keys named
 * by PKCS#11 URIs.  The roots must be in two different tokens, sensitive,
 * non-extractable, allowed to wrap and unwrap, AES-256 (wrap: RFC 5649) or
 * RSA >= 2048 (wrap: OAEP SHA-256), and be customer keys: not in the
 * service token, not made by keytier (labels beginning "keytier-"), not a
 * DEP's availability key (KEYTIER_E_KEY_ROLE).  An availability key is
 * generated in the service token, a random DEP key is wrapped by all three
 * roots (each wrap verified by an unwrap), and only the wrapped copies are
 * stored, each with the identity of its key (token, class, CKA_ID,
 * CKA_LABEL): the DEP is stored registering and becomes registered once
 * each stored copy was unwrapped and checked again.  Disabled DEPs count
 * toward the per-tenant, per-workload limit.
 * Errors: KEYTIER_E_SAME_TOKEN, KEYTIER_E_KEY_NOT_FOUND,
 * KEYTIER_E_KEY_EXTRACTABLE (also: not sensitive), KEYTIER_E_KEY_USAGE,
 * KEYTIER_E_KEY_TYPE, KEYTIER_E_KEY_ROLE, KEYTIER_E_MECHANISM,
 * KEYTIER_E_DEP_LIMIT, KEYTIER_E_TOKEN_NOT_FOUND,
 * KEYTIER_E_URI, KEYTIER_E_LOGIN, KEYTIER_E_PIN, KEYTIER_E_CONFIG (unknown
 * workload), KEYTIER_E_ARGS, KEYTIER_E_AUDIT (its "DEP created" record
 * could not be written: the DEP is removed again).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_dep_create(
    keytier_ctx *ctx, const char *tenant, const char *workload,
    const char *root_uri_a, const char *root_uri_b, keytier_dep_info *out);
/* keytier_dep_create with a human name for the DEP (NULL: none).  The name
 * is at most KEYTIER_DEP_NAME_MAX bytes of printable UTF-8 (no control
 * characters) and not empty; otherwise KEYTIER_E_ARGS (detail names the
 * problem) before anything is created.  Names need not be unique. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_dep_create_named(
    keytier_ctx *ctx, const char *tenant, const char *workload,
    const char *root_uri_a, const char *root_uri_b, const char *name,
    keytier_dep_info *out);
/*
 * keytier_dep_create_named for a files DEP in a region (docs/DESIGN.md §2
 * "Limits").  region NULL: KEYTIER_REGION_DEFAULT for the files shape,
 * none for the mail shape; a region for a mail-shape workload is
 * KEYTIER_E_ARGS.  A files DEP also gets its tenant intermediate key (TIK)
 * at creation, stored wrapped by the DEP key in the same store
 * transaction as the DEP; sites are created under it.  A second files DEP
 * of the tenant and workload in the same region (one not disabled, purged
 * or offboarded) is refused with KEYTIER_E_DEP_REGION before any token
 * work, and again in the transaction that inserts.  keytier_dep_create and
 * keytier_dep_create_named are this function with region NULL.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_dep_create_in_region(
    keytier_ctx *ctx, const char *tenant, const char *workload,
    const char *region, const char *root_uri_a, const char *root_uri_b,
    const char *name, keytier_dep_info *out);
/* A DEP by its id.  tenant NULL: any tenant's (DEP ids are UUIDs, unique
 * across tenants); otherwise the DEP must be that tenant's.
 * KEYTIER_E_DEP_NOT_FOUND, KEYTIER_E_WRONG_TENANT. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_dep_show(keytier_ctx *ctx, const char *tenant, const char *dep_id,
                 keytier_dep_info *out);
/* The tenant's DEPs (tenant NULL: every tenant's; workload NULL: all
 * workloads), oldest first; free the array with keytier_dep_list_free. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_dep_list(keytier_ctx *ctx, const char *tenant, const char *workload,
                 keytier_dep_info **out, size_t *count);
KEYTIER_API void keytier_dep_list_free(keytier_dep_info *list);
/* A disabled DEP accepts no new keys; data under it stays readable. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_dep_disable(keytier_ctx *ctx, const char *tenant, const char *dep_id);

/* ======================================================================
 * Key tiers
 *
 * Level 0 is the DEP key.  The workload's shape says how deep keys go:
 * mail: DEP key -> mailbox key (level 1) -> items; files: DEP key ->
 * tenant intermediate key (TIK, level 1, named after the DEP's region) ->
 * site key (2) -> blob key (3) -> blob.  Every key below the DEP key is
 * stored only wrapped (AES-256-GCM) by its parent, with tenant, DEP,
 * parent, key id, level and name bound as associated data; keys below a
 * TIK bind the TIK's id in the DEP's place, so that moving a TIK to
 * another DEP (recovery, migration) or to a service-managed key
 * (offboarding) rewraps the TIK alone.  keytier_key_create on a files DEP
 * key creates the site under the DEP's TIK.  Files DEPs of stores made
 * before TIKs keep their sites at level 1 (DEP key -> site -> blob).
 * ====================================================================== */

typedef struct keytier_key keytier_key;

typedef struct keytier_key_info {
    char key_id[KEYTIER_ID_SIZE];
    char parent_id[KEYTIER_ID_SIZE]; /* the DEP id for level-1 keys */
    char dep_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char name[KEYTIER_NAME_MAX + 1];
    unsigned level;
    int64_t created;
} keytier_key_info;

/* Opens the DEP key (level 0) of a DEP: the only path to a root key.
 * A key in the context's cache (avail.cache_ttl_ms) is served without a
 * store read or a token call, to its own tenant only; other processes'
 * changes to the DEP reach the cache within about 2 x avail.cache_sync_ms.
 * Errors: KEYTIER_E_DEP_NOT_FOUND, KEYTIER_E_WRONG_TENANT, KEYTIER_E_UNWRAP
 * (detail: both customer keys' errors), KEYTIER_E_AUTH (a wrapped copy that
 * unwraps to another key), KEYTIER_E_REVOKED and KEYTIER_E_UNAVAILABLE (the
 * fallback rule refuses), KEYTIER_E_ARGS (a request outside the rules of
 * keytier_request), and for a files-shape read through the availability
 * key the errors of keytier_approval_consume.  KEYTIER_E_PURGED for a purged
 * DEP.  A DEP a dead process left rolling or registering is settled first
 * (docs/DESIGN.md "DEPs"); one still registering gives KEYTIER_E_DEP_STATE. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_dep_key_open(keytier_ctx *ctx, const keytier_request *req,
                     const char *tenant, const char *dep_id, keytier_key **out);
/*
 * Creates a key one level below `parent` (the names of mailboxes and
 * sites are unique per tenant and workload).  On a files DEP key the site
 * is created under the DEP's tenant intermediate key (level 2), as under
 * the TIK itself (keytier_tik_open); keytier_key_open on the DEP key opens
 * it again.  out_id may be NULL.  Errors: KEYTIER_E_DEPTH,
 * KEYTIER_E_EXISTS, KEYTIER_E_DEP_DISABLED (also: a DEP key of an
 * offboarded DEP), KEYTIER_E_DEP_STATE (the DEP is registering).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_key_create(
    keytier_key *parent, const char *name, char out_id[KEYTIER_ID_SIZE]);
/* Opens a key directly under `parent`.  Keys down to level
 * avail.cache_tier_levels are cached like DEP keys; a cached key is served
 * only under the parent, tenant and DEP it was opened under (otherwise the
 * store is read and the same errors come).  KEYTIER_E_NOT_FOUND,
 * KEYTIER_E_WRONG_PARENT, KEYTIER_E_WRONG_TENANT, KEYTIER_E_AUTH (stored key
 * altered or moved). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_key_open(keytier_key *parent,
                                                            const char *key_id,
                                                            keytier_key **out);
/* Opens any key of a tenant by id, unwrapping the chain from its DEP key.
 * A key gone with its tenant's purge: KEYTIER_E_PURGED (not
 * KEYTIER_E_NOT_FOUND). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_key_open_path(
    keytier_ctx *ctx, const keytier_request *req, const char *tenant,
    const char *key_id, keytier_key **out);
/* Opens a mailbox or site key by name (a site under a TIK, level 2, as
 * well as a mailbox or an older site at level 1); KEYTIER_E_PURGED when
 * the tenant was purged (every DEP of the workload), KEYTIER_E_NOT_FOUND
 * for a name it never had. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_key_open_name(
    keytier_ctx *ctx, const keytier_request *req, const char *tenant,
    const char *workload, const char *name, keytier_key **out);
KEYTIER_API void keytier_key_close(keytier_key *key); /* wipes; NULL-safe */
KEYTIER_API void keytier_key_get_info(const keytier_key *key,
                                      keytier_key_info *out);
/* Children of `parent_id` (a DEP id or a key id) of a tenant, oldest first;
 * free with keytier_key_list_free. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_key_list(keytier_ctx *ctx, const char *tenant, const char *parent_id,
                 keytier_key_info **out, size_t *count);
KEYTIER_API void keytier_key_list_free(keytier_key_info *list);

/* ======================================================================
 * Status of a mailbox or site (a named key)
 * ====================================================================== */

typedef struct keytier_status {
    int encrypted; /* 1 when the name has a key under a DEP */
    char dep_id[KEYTIER_ID_SIZE];
    char policy_id[KEYTIER_ID_SIZE];
    char key_id[KEYTIER_ID_SIZE];
    keytier_dep_state dep_state;
    /* The DEP's name given at creation; "" when it has none. */
    char dep_name[KEYTIER_DEP_NAME_MAX + 1];
    /* ---- purge (keytier_status_get) ---- */
    /* 1 when the tenant was purged: its keys were destroyed, no key of this
     * name is left, and whatever was encrypted under it is crypto-shredded
     * (encrypted is then 0 and dep_state KEYTIER_DEP_PURGED). */
    int purged;
    /* ---- files shape: region and who holds the keys ---- */
    /* The region of the site's DEP ("" for the mail shape). */
    char region[KEYTIER_REGION_MAX + 1];
    /* 1: the tenant was offboarded (keytier_files_offboard): the site's
     * keys are under a service-managed key, not the customer keys. */
    int service_managed;
} keytier_status;

KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_status_get(keytier_ctx *ctx, const char *tenant, const char *workload,
                   const char *name, keytier_status *out);

/* ======================================================================
 * Health of a DEP's root keys
 * ====================================================================== */

/* What a probe of one root key found. */
typedef enum keytier_key_health {
    /* customer key: its wrapped copy unwraps to the DEP key; availability
     * key: present in the service token */
    KEYTIER_KEY_REACHABLE = 0,
    /* the token answers and the key refuses (CKA_UNWRAP off, PIN refused
     * or locked, the copy refused: the "denied" class of the fallback
     * rule) */
    KEYTIER_KEY_REFUSED = 1,
    /* the token answers and holds no such key */
    KEYTIER_KEY_DESTROYED = 2,
    /* the token is absent, hung past the deadline or failing (the "system"
     * class) */
    KEYTIER_KEY_UNREACHABLE = 3,
} keytier_key_health;

typedef struct keytier_health {
    keytier_key_health key[3]; /* per KEYTIER_ROOT_* */
    keytier_err err[3];        /* the probe's error; KEYTIER_OK: reachable */
    char detail[3][512];       /* the probe's error detail; "" when none */
} keytier_health;

/*
 * Probes each root of a DEP now, with avail.call_deadline_ms per key:
 * customer keys A and B by unwrapping their copies (the key is checked
 * against the DEP and wiped, never used), the availability key by finding
 * it in the service token (never used: its presence only).  Not audited,
 * never cached.  tenant NULL: any tenant's DEP.  Errors:
 * KEYTIER_E_DEP_NOT_FOUND, KEYTIER_E_WRONG_TENANT, KEYTIER_E_PURGED (the
 * DEP's keys were destroyed: nothing to probe), KEYTIER_E_ARGS.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_dep_health(keytier_ctx *ctx, const char *tenant, const char *dep_id,
                   keytier_health *out);
/* "reachable", "refused", "destroyed", "unreachable"; for the availability
 * key (slot KEYTIER_ROOT_AVAIL) "present" and "missing" for reachable and
 * destroyed.  Never NULL. */
KEYTIER_API const char *keytier_key_health_name(keytier_key_health h, int slot);

/* ======================================================================
 * Envelopes (format: lib/envelope/ENVELOPE.md)
 *
 * Data is sealed under a key of level >= 1.  `aad` is the caller's context
 * (e.g. an item id), bound to every chunk and not stored: the same bytes
 * must be given to open.
 * ====================================================================== */

/* Largest envelope keytier_seal can produce for pt_len bytes under key. */
KEYTIER_API size_t keytier_seal_bound(const keytier_key *key, size_t pt_len);
/* KEYTIER_E_BUFFER when out_cap < keytier_seal_bound; KEYTIER_E_ARGS for
 * a level-0 (DEP) key. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_seal(keytier_key *key, const void *aad, size_t aad_len, const void *pt,
             size_t pt_len, void *out, size_t out_cap, size_t *out_len);
/* Authenticates everything before returning plaintext; on any error the
 * output is wiped.  out_cap >= env_len is always enough.  Errors:
 * KEYTIER_E_FORMAT, KEYTIER_E_VERSION, KEYTIER_E_WRONG_KEY,
 * KEYTIER_E_COMMITMENT, KEYTIER_E_AUTH (also for data appended after the
 * final chunk), KEYTIER_E_TRUNCATED, KEYTIER_E_BUFFER. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_open(keytier_key *key, const void *aad, size_t aad_len, const void *env,
             size_t env_len, void *out, size_t out_cap, size_t *out_len);
/* Streams from in_fd to out_fd until end of input.  Both stream calls
 * run a reader and a writer thread beside the caller's for the duration
 * of the call, and the cryptography on the caller's thread plus up to
 * stream_threads - 1 helpers (configuration; started only once read
 * slots queue up), with about 6 MiB of buffers (6 x the chunk size when
 * that is larger).  A regular file shorter than one slot (1 MiB) is done
 * on the caller's thread alone.  Each chunk goes through as soon as it is
 * complete, so a slow pipe or socket is not held back; a non-blocking
 * in_fd is waited on (poll).  The helper threads block all signals and
 * the caller's thread blocks SIGPIPE while it writes: a closed output
 * pipe gives KEYTIER_E_IO ("write: Broken pipe"), never SIGPIPE.  Read and
 * write failures give KEYTIER_E_IO naming the call and errno's text.  The
 * output is the same whatever the number of threads. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_seal_stream(
    keytier_key *key, const void *aad, size_t aad_len, int in_fd, int out_fd);
/* Writes each chunk only after it authenticated.  A stream that ends
 * without its final chunk gives KEYTIER_E_TRUNCATED after the chunks
 * before have been written: the caller must discard the output of a
 * failed call. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_open_stream(
    keytier_key *key, const void *aad, size_t aad_len, int in_fd, int out_fd);
/* Reads the tenant and key id an envelope (or stream prefix) names, to
 * find the key to open it with. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_envelope_peek(
    const void *env, size_t env_len, char tenant[KEYTIER_TENANT_MAX + 1],
    char key_id[KEYTIER_ID_SIZE]);

/* ==== availability: fallback, cache, audit =================== */

/* The longest line of the audit log, its newline included: a longer line
 * is not a record, and readers stop at this many bytes. */
#define KEYTIER_AUDIT_LINE_MAX (64u * 1024u)

/*
 * Checks the audit log at path (DESIGN.md §2 "Audit"): every line must be
 * exactly as written and carry the hash of the line before it.  Returns
 * KEYTIER_OK, KEYTIER_E_AUDIT_EMPTY when the file holds no record (nothing
 * verified), or KEYTIER_E_AUDIT_TAMPERED with *bad_line the 1-based number
 * of the first line that was edited, removed (the line after the gap),
 * reordered or forged, and the reason in keytier_last_error_detail(); or
 * KEYTIER_E_IO.  *records (may be NULL) gets the number of intact records
 * before the first bad line.  The chain alone: a cut tail or a chain
 * recomputed from scratch passes (keytier_audit_verify_anchored below).
 */
KEYTIER_API keytier_err keytier_audit_verify(const char *path,
                                             uint64_t *bad_line,
                                             uint64_t *records);

/* What keytier_audit_verify_anchored found. */
typedef struct keytier_audit_report {
    uint64_t records;      /* intact records (the whole log when intact) */
    uint64_t bad_line;     /* 1-based first bad line; 0 when none */
    uint64_t anchored_seq; /* the anchored record (0: no anchor checked) */
    uint64_t unanchored;   /* intact records after the anchored one */
    char log_id[KEYTIER_ID_SIZE]; /* the Id of line 1 ("" if unreadable) */
} keytier_audit_report;

/*
 * The audit log's chain AND its keyed anchor (the head recorded in the
 * store after each append, MACed by the service token's
 * "keytier-audit-anchor" key): path (NULL: the context's log; another
 * path: a copy, checked against the anchor of the log whose first record it
 * holds) must reach the anchored record with the anchored Hash, the
 * anchor's MAC must verify on the service token, and the service token's
 * register of anchored logs must agree (a registered log keeps its anchor
 * row and its path).  Returns
 *   KEYTIER_OK                   chain intact, every record anchored;
 *   KEYTIER_E_AUDIT_UNANCHORED   chain intact up to and including the
 *                                anchored record, out->unanchored records
 *                                after it (the service token was
 *                                unreachable, or a crash came between an
 *                                append and its anchor; all records when
 *                                the log has no anchor);
 *   KEYTIER_E_AUDIT_TAMPERED     out->bad_line names the first bad line: an
 *                                edited/removed/reordered/forged line, the
 *                                first missing line of a cut tail ("records
 *                                N+1..M removed from the end"), the
 *                                anchored line of a rewritten chain, line 1
 *                                of a log replacing the one anchored at this
 *                                path (or in the store's or the service
 *                                token's record of it), line 1 of an empty
 *                                file where a log was registered; bad_line
 *                                0 when the anchor itself fails its MAC or
 *                                was removed from the store;
 *   KEYTIER_E_AUDIT_EMPTY        the file holds no record and no log was
 *                                anchored at its path: nothing verified;
 *   KEYTIER_E_CONFIG (no service_token), token errors (KEYTIER_E_TOKEN,
 *   KEYTIER_E_TOKEN_NOT_FOUND, KEYTIER_E_LOGIN, KEYTIER_E_KEY_NOT_FOUND:
 *   the anchor could not be checked), KEYTIER_E_STORE, KEYTIER_E_IO.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_audit_verify_anchored(
    keytier_ctx *ctx, const char *path, keytier_audit_report *out);

/* One node's chain as keytier_audit_verify_chains found it. */
typedef struct keytier_audit_chain {
    char node[KEYTIER_NODE_MAX + 1];
    char log_id[KEYTIER_ID_SIZE];
    char path[4096];      /* the file checked */
    uint64_t first_index; /* its records' global indices (0: none) */
    uint64_t last_index;
    keytier_err result; /* this chain's verdict (as verify_anchored) */
    keytier_audit_report report;
    char reason[512]; /* the detail of a verdict other than KEYTIER_OK */
} keytier_audit_chain;

typedef struct keytier_audit_chains_report {
    keytier_audit_chain *chains; /* in the order of their first index */
    size_t n_chains;
    uint64_t records;       /* intact records of every chain */
    uint64_t indexed;       /* of which carry a global index */
    uint64_t highest_index; /* the store's last index taken */
    uint64_t gaps; /* indices taken for no record (appends that failed or
                      died between taking the index and their write) */
} keytier_audit_chains_report;

/*
 * Every node's audit chain the store knows (DESIGN.md §2 "Audit across
 * nodes"): each as keytier_audit_verify_anchored, then across them: every
 * record of a chain carries its node's name and a global index strictly
 * above the one before it, no index is in two chains, none above what
 * the store handed that chain.  A chain's file is found as `files` lists
 * it (by the Id of its first record), else as `dir`/its file name, else
 * at the path its node wrote; a chain the store knows with no file is
 * KEYTIER_E_AUDIT_TAMPERED (deleted), and so is a listed file holding
 * global indices that no chain of the store owns.  With no chain known
 * (logs written before nodes) the context's own log is checked.  Returns
 * the worst verdict: KEYTIER_E_AUDIT_TAMPERED, then any error that left a
 * chain unchecked, then KEYTIER_E_AUDIT_UNANCHORED, else KEYTIER_OK; the
 * detail names the chain.  Free out with keytier_audit_chains_report_free.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_audit_verify_chains(
    keytier_ctx *ctx, const char *dir, const char *const *files, size_t n_files,
    keytier_audit_chains_report *out);
KEYTIER_API void
keytier_audit_chains_report_free(keytier_audit_chains_report *r);

typedef struct keytier_ctx keytier_ctx; /* (also declared above) */

/*
 * Counters of a context's availability machinery (DESIGN.md §2), since the
 * context was opened.  token_reads counts root-key reads sent to a token
 * (customer and availability keys, refreshes included): a read served by
 * the cache adds a cache hit and no token read.
 */
typedef struct keytier_avail_stats {
    uint64_t cache_hits, cache_misses;
    uint64_t cache_refreshes, cache_refresh_failures, cache_alerts;
    uint64_t cache_entries, cache_locked_pages;
    uint64_t fallbacks;   /* reads served through the availability key */
    uint64_t denied;      /* requests refused: customer keys revoked */
    uint64_t unavailable; /* requests refused: outage, no fallback allowed */
    uint64_t token_reads; /* root-key reads that reached a worker */
    uint64_t timeouts;    /* root-key reads past their deadline */
    /* Entries wiped by invalidations (this
     * process's changes, and rows other processes recorded); syncs that
     * read the store's invalidation rows (avail.cache_sync_ms), rows of
     * other contexts applied, and syncs that failed (retried; while the last
     * good sync is older than twice the interval, hits sync first). */
    uint64_t cache_invalidations;
    uint64_t cache_syncs, cache_sync_rows, cache_sync_failures;
    /* Cached DEP keys whose alert (keytier_alert) has fired and that no
     * refresh has renewed since, and that have not expired: a gauge. */
    uint64_t cache_alerts_active;
} keytier_avail_stats;

KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_avail_stats_get(keytier_ctx *ctx, keytier_avail_stats *out);

/*
 * The cache alert: no refresh of a cached DEP key with the customer keys
 * has succeeded avail.cache_alert_after_ms after it became due
 * (avail.cache_refresh_ahead_ms before expiry; failing_ms counts from
 * then), and the entry expires in expires_in_ms.  The same event is
 * written to the audit log.  Called on the cache's thread; the strings are
 * valid during the call only.
 */
typedef struct keytier_alert {
    const char *tenant;
    const char *dep_id;
    uint64_t failing_ms;
    uint64_t expires_in_ms;
    const char *last_error; /* "timeout", "CKR_DEVICE_ERROR", ... */
} keytier_alert;
typedef void (*keytier_alert_fn)(void *arg, const keytier_alert *alert);

/* Sets (fn NULL: clears) the alert callback of ctx. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_alert_callback_set(keytier_ctx *ctx, keytier_alert_fn fn, void *arg);

typedef enum keytier_invalidate_scope {
    KEYTIER_INVALIDATE_ROOT = 0,   /* value: a root key URI (revoked) */
    KEYTIER_INVALIDATE_DEP = 1,    /* value: a DEP id (changed) */
    KEYTIER_INVALIDATE_TENANT = 2, /* value: a tenant id (purged) */
    KEYTIER_INVALIDATE_ALL = 3,    /* value ignored */
} keytier_invalidate_scope;

/* Wipes at once every cached key under the given root, DEP or tenant
 * (DEP keys and the tier keys below them); *count (may be NULL) gets the
 * number of entries wiped here.  The invalidation is also recorded in the
 * store, so every other context sharing it drops the same keys within
 * avail.cache_sync_ms.  Errors: KEYTIER_E_ARGS, KEYTIER_E_STORE (wiped
 * here, not recorded for the others). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_cache_invalidate(keytier_ctx *ctx, keytier_invalidate_scope scope,
                         const char *value, size_t *count);

/* ==== end availability ================================================== */

/* ==== administration: tokens and root keys ==============================
 * What the keytier command line needs to prepare tokens; a service that
 * only encrypts needs none of it.
 *
 * Each call loads the PKCS#11 module at module_path with p11-kit (any
 * module: keytier's, SoftHSM2, ...; "remote:unix:path=SOCKET" reaches a
 * token served by `p11-kit server`), works on it and releases it; no context or
 * store is needed.  PINs are taken from the caller's NUL-terminated strings,
 * copied into buffers that are wiped after use, and never logged or put in
 * error text.  Token failures name the call and its CKR_ code in
 * keytier_last_error_detail().
 */

#define KEYTIER_LABEL_MAX 32 /* bytes of a token or object label */

typedef struct keytier_token_info {
    unsigned long slot;                /* slot ID, valid in this process only */
    int initialized;                   /* CKF_TOKEN_INITIALIZED */
    int user_pin_set;                  /* CKF_USER_PIN_INITIALIZED */
    int pin_locked;                    /* CKF_USER_PIN_LOCKED */
    char label[KEYTIER_LABEL_MAX + 1]; /* trimmed */
    char manufacturer[33];
    char model[17];
    char serial[17];
    char uri[KEYTIER_URI_MAX]; /* token URI (RFC 7512) */
} keytier_token_info;

/* Every slot of the module that has a token, initialised or not, in slot
 * order.  Free with keytier_token_list_free.  KEYTIER_E_MODULE. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_token_list(
    const char *module_path, keytier_token_info **out, size_t *count);
KEYTIER_API void keytier_token_list_free(keytier_token_info *list);

/*
 * Initialises the token of the module's first free slot (one whose token
 * is not initialised) as `label` with so_pin, then sets the user PIN as the
 * security officer (C_InitToken, C_Login(SO), C_InitPIN).  out may be NULL.
 * Errors: KEYTIER_E_EXISTS (an initialised token already has this label),
 * KEYTIER_E_TOKEN_NOT_FOUND (no free slot), KEYTIER_E_TOKEN (a token call
 * failed, e.g. CKR_PIN_LEN_RANGE), KEYTIER_E_ARGS, KEYTIER_E_MODULE.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_token_init(
    const char *module_path, const char *label, const char *so_pin,
    const char *user_pin, keytier_token_info *out);

typedef enum keytier_root_type {
    KEYTIER_ROOT_TYPE_AES256 = 0,
    KEYTIER_ROOT_TYPE_RSA2048 = 1,
    KEYTIER_ROOT_TYPE_RSA3072 = 2,
    KEYTIER_ROOT_TYPE_RSA4096 = 3,
} keytier_root_type;

/*
 * Generates a root key in the initialised token labelled token_label,
 * logged in as user: AES-256 (CKA_WRAP/CKA_UNWRAP) or an RSA key pair
 * (public: CKA_WRAP; private: CKA_UNWRAP), always CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, never extractable, with CKA_LABEL key_label and a random
 * 16-byte CKA_ID.  Writes the key's PKCS#11 URI (token label and serial,
 * object label, id, type) to uri, usable with keytier_dep_create.
 * Errors: KEYTIER_E_TOKEN_NOT_FOUND, KEYTIER_E_EXISTS (a key with this
 * label exists), KEYTIER_E_LOGIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED named
 * in the detail), KEYTIER_E_TOKEN (CKR_MECHANISM_INVALID, ...),
 * KEYTIER_E_ARGS, KEYTIER_E_MODULE.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_root_generate(
    const char *module_path, const char *token_label, const char *user_pin,
    const char *key_label, keytier_root_type type, char uri[KEYTIER_URI_MAX]);

/*
 * Destroys every object labelled key_label in token token_label (the key,
 * or both halves of an RSA pair): the customer revoking a root.  DEPs
 * whose customer keys are both gone refuse user reads ("access revoked").
 * *destroyed (may be NULL) gets the number of objects destroyed.
 * Errors: KEYTIER_E_KEY_NOT_FOUND, KEYTIER_E_TOKEN_NOT_FOUND,
 * KEYTIER_E_LOGIN, KEYTIER_E_TOKEN, KEYTIER_E_ARGS, KEYTIER_E_MODULE.
 * Without a context it cannot tell the service token: a service's tools
 * use keytier_root_destroy_approved, which asks for an approval there.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_root_destroy(
    const char *module_path, const char *token_label, const char *user_pin,
    const char *key_label, size_t *destroyed);

/* The audit log the context writes (avail.audit_log, default: the store
 * path + ".audit.jsonl"), for `keytier audit list/verify`.
 * KEYTIER_E_BUFFER when cap is too small. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_audit_log_path(keytier_ctx *ctx, char *out, size_t cap);

/* ==== end administration ================================================ */

/* ==== lifecycle: roll, purge, assign/migrate, recover, secrets ==========
 * (docs/DESIGN.md §2 "Lifecycle").  Every event below writes an audit
 * record to the context's audit log.
 */

/*
 * Rolls customer key `slot` (KEYTIER_ROOT_A or KEYTIER_ROOT_B) of a DEP to
 * a new version of the root: a distinct key object named by new_root_uri
 * (e.g. the same label with a new CKA_ID).  The DEP key is read (internal
 * operation "roll") through the customer keys ONLY - never the cache nor
 * the availability key, so a roll cannot undo a revocation - wrapped under
 * the new root and stored beside the old copy (DEP state ROLLING); once
 * the stored new copy has been unwrapped by the token and matched, one
 * store transaction replaces the old copy.  No data and no tier key is
 * touched.  out may be NULL.
 * Errors: KEYTIER_E_REVOKED (the customer denied its keys: destroyed,
 * CKA_UNWRAP off, login refused...; the detail names the DEP and both
 * keys' errors), KEYTIER_E_UNAVAILABLE (neither customer key answers: roll
 * again later), KEYTIER_E_KEY_EXTRACTABLE, KEYTIER_E_KEY_USAGE (cannot wrap or
 * unwrap), KEYTIER_E_KEY_TYPE, KEYTIER_E_KEY_ROLE (not a customer key, as
 * keytier_dep_create), KEYTIER_E_SAME_TOKEN (in the other customer
 * key's token), KEYTIER_E_KEY_NOT_FOUND, KEYTIER_E_EXISTS (already this
 * key), KEYTIER_E_DEP_STATE (disabled, purged or migrating DEP),
 * KEYTIER_E_MECHANISM, KEYTIER_E_DEP_NOT_FOUND, KEYTIER_E_WRONG_TENANT,
 * KEYTIER_E_AUDIT (its record could not be written: the old copy is put
 * back).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_dep_roll(keytier_ctx *ctx, const char *tenant, const char *dep_id,
                 int slot, const char *new_root_uri, keytier_dep_info *out);

#define KEYTIER_PURGE_CUSTOMER_KEYS 1u /* also destroy the customer roots */
/* Decide everything and report it, change nothing (no approval needed). */
#define KEYTIER_PURGE_DRY_RUN 2u

typedef struct keytier_purge_report {
    size_t deps;                    /* DEPs purged by this call */
    size_t avail_keys_destroyed;    /* availability key objects */
    size_t customer_keys_destroyed; /* customer root objects */
    size_t tier_keys_deleted;
    size_t cache_entries_wiped;
    /* service-managed keys of offboarded files DEPs destroyed */
    size_t managed_keys_destroyed;
} keytier_purge_report;

/*
 * Purges a tenant that leaves (crypto-shredding): destroys the availability
 * key of each of its DEPs in the service token, with
 * KEYTIER_PURGE_CUSTOMER_KEYS also its customer roots (the configuration
 * must hold those tokens' PINs), wipes its cached keys, then deletes every
 * wrapped DEP-key copy and tier key of the tenant from the store (secure
 * delete) and marks its DEPs PURGED.  Afterwards nothing of the tenant
 * opens, for any request kind, in this process or another: opening a DEP
 * key gives KEYTIER_E_PURGED, a tier key KEYTIER_E_NOT_FOUND.  Keys the
 * caller still holds open (keytier_key) are the caller's to close.
 * Safe to run again after a failure (keys already gone are not counted).
 * A key that something else still uses is kept, never destroyed
 * (keytier_tenant_purge_detailed says which and why).  out may be NULL. Errors:
 * KEYTIER_E_TOKEN, KEYTIER_E_LOGIN, KEYTIER_E_PIN, KEYTIER_E_TOKEN_NOT_FOUND
 * (nothing changed in the store). Needs an approval: this is
 * keytier_tenant_purge_approved without one (KEYTIER_E_APPROVAL_REQUIRED unless
 * `approval.required = no`).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_tenant_purge(keytier_ctx *ctx, const char *tenant, unsigned flags,
                     keytier_purge_report *out);

/* What a purge did, or would do (KEYTIER_PURGE_DRY_RUN), with one key. */
typedef enum keytier_purge_action {
    KEYTIER_PURGE_DESTROYED = 0,     /* destroyed by this call */
    KEYTIER_PURGE_KEPT = 1,          /* kept: something else uses it (reason) */
    KEYTIER_PURGE_GONE = 2,          /* not in its token any more */
    KEYTIER_PURGE_WOULD_DESTROY = 3, /* dry run: would be destroyed */
} keytier_purge_action;

/* "destroyed", "kept", "already gone", "would be destroyed": the words of
 * the purge's audit records and of the CLI. */
KEYTIER_API const char *keytier_purge_action_name(keytier_purge_action a);

typedef struct keytier_purge_key {
    char dep_id[KEYTIER_ID_SIZE]; /* the purged DEP that names the key */
    int slot;                     /* KEYTIER_ROOT_A, _B, _AVAIL or _MANAGED */
    char uri[KEYTIER_URI_MAX];    /* as the DEP names it, without query */
    keytier_purge_action action;
    /* KEYTIER_PURGE_KEPT: who else uses it ("customer key A of DEP ID
     * (tenant T)", "root of keyset N"); otherwise "". */
    char reason[512];
} keytier_purge_key;

typedef struct keytier_purge_detail {
    keytier_purge_report report; /* the counts, as keytier_tenant_purge */
    size_t keys_kept;            /* entries with KEYTIER_PURGE_KEPT */
    keytier_purge_key *keys;     /* each distinct key once, in DEP order */
    size_t n_keys;
} keytier_purge_detail;

/*
 * keytier_tenant_purge_approved with the fate of every key.  A purge never
 * destroys a key that a DEP of another tenant (not purged), a pending roll
 * or a keyset of service secrets still names: keys are compared by what
 * their URI resolves to (token and object identity, recorded with each
 * DEP root, and looked up here for roots stored before), so another
 * spelling of the same key's URI is the same key.
 * Such a key is kept, listed with KEYTIER_PURGE_KEPT and its reason, and
 * named in the tenant's "Tenant purged" audit records (field "Keys", each
 * key's URI, role, action and reason); each DEP that kept it gets a "Key
 * kept at purge" record.  flags may add KEYTIER_PURGE_DRY_RUN: every key
 * is looked up and its fate decided, nothing is destroyed, wiped, written
 * or audited, and no approval is consumed.  Free *out with
 * keytier_purge_detail_free (also after an error: keys already decided
 * are listed).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_tenant_purge_detailed(
    keytier_ctx *ctx, const char *approval_id, const char *tenant,
    unsigned flags, keytier_purge_detail *out);
KEYTIER_API void keytier_purge_detail_free(keytier_purge_detail *d);

/* Progress of a migration (assign / recover). */
typedef struct keytier_migration {
    char migration_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    char target_dep_id[KEYTIER_ID_SIZE];
    char scope[KEYTIER_NAME_MAX + 8]; /* "all", "name:NAME", "dep:ID" */
    char operation[32];               /* "migrate" or "recover" */
    int finished;
    uint64_t done, total; /* mailbox / site keys */
    double percent;       /* 100 * done / total (100 when total is 0) */
    double rate;          /* keys per second in this run (0 if unknown) */
    double eta_seconds;   /* time left at that rate (-1 if unknown) */
} keytier_migration;

/*
 * Assigns DEP dep_id to mailbox/site `name` of the tenant's workload, or
 * (name NULL) to all of them.  A name without a key yet gets its key under
 * the DEP at once (out->total 0, finished).  Otherwise a migration is
 * recorded (state of the DEP: MIGRATING) with one item per level-1 key not
 * yet under the DEP; keytier_migrate_run does the rewrapping.  A revoked
 * DEP is neither left nor entered: the target's customer keys (and for a
 * named mailbox, its current DEP's) are asked first.
 * Errors: KEYTIER_E_DEP_NOT_FOUND, KEYTIER_E_WRONG_TENANT, KEYTIER_E_ARGS
 * (DEP of another workload), KEYTIER_E_DEP_STATE (disabled/purged/rolling),
 * KEYTIER_E_REVOKED (the customer denied the target's or the mailbox's
 * DEP keys; nothing recorded).  An outage of those keys does not refuse
 * the assignment; the run then needs them.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_assign(keytier_ctx *ctx, const char *tenant, const char *workload,
               const char *name, const char *dep_id, keytier_migration *out);

/* Called after every batch; returning non-zero stops the run (resumable). */
typedef int (*keytier_progress_fn)(void *arg, const keytier_migration *p);

/*
 * Runs (or resumes) a migration until it is finished or fn asks to stop:
 * every key is unwrapped under its current DEP key and rewrapped under the
 * target's (for the files shape, with the keys below it, whose ids bind the
 * DEP), in batches, each batch one store transaction that also marks its
 * items done - a process killed at any point loses no key and wraps none
 * twice; the next run continues.  Readers keep working throughout: a key is
 * always complete under exactly one DEP.  DEP keys are read as the
 * internal operation named by the migration, through the customer keys
 * only (a move out of or into a revoked DEP would undo the revocation:
 * KEYTIER_E_REVOKED; both down: KEYTIER_E_UNAVAILABLE, run again later),
 * except the OLD DEP keys of a "recover" migration, which may come through
 * the availability key (audited).  out (may be NULL) gets the final
 * progress.  Errors: KEYTIER_E_NOT_FOUND (migration), errors reading DEP
 * keys (KEYTIER_E_REVOKED, KEYTIER_E_UNAVAILABLE, ...).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_migrate_run(keytier_ctx *ctx, const char *migration_id,
                    keytier_progress_fn fn, void *arg, keytier_migration *out);
/*
 * The same in the background: a thread of the library runs the migration
 * (fn, if not NULL, is called on that thread).  keytier_migrate_stop asks
 * it to stop after the current batch; keytier_migrate_wait joins it, gives
 * its result and final progress (out may be NULL) and frees m.  ctx must
 * stay open until then.
 */
typedef struct keytier_migrator keytier_migrator;
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_migrate_start(keytier_ctx *ctx, const char *migration_id,
                      keytier_progress_fn fn, void *arg, keytier_migrator **m);
KEYTIER_API void keytier_migrate_stop(keytier_migrator *m);
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_migrate_wait(keytier_migrator *m, keytier_migration *out);
/* Progress as stored (rate and eta unknown). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_migration_get(keytier_ctx *ctx, const char *tenant,
                      const char *migration_id, keytier_migration *out);
/* The tenant's migrations, oldest first; free with free(). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_migration_list(keytier_ctx *ctx, const char *tenant,
                       keytier_migration **out, size_t *count);

/*
 * Recovery when both customer keys of DEP old_dep_id are lost: creates a
 * new DEP for the same tenant and workload from two new customer keys
 * (checked as keytier_dep_create does), with the old DEP's name, and
 * records a migration (operation "recover") of every key under the old
 * DEP; run it with keytier_migrate_run.  The old DEP key is then read
 * through the availability key (audited fallback); when the migration
 * finishes the old DEP is disabled.  new_dep and mig may be NULL.
 * This is the only lifecycle operation that uses the availability key for
 * a DEP whose customer keys fail.  "Lost" (tokens deleted, vault gone for
 * good: system errors) is its purpose.  It also goes through when the
 * customer DELIBERATELY revoked the keys (denied errors): recovery is an
 * explicit service operation, audited ("DEP recovery started", one
 * fallback record per old DEP read naming both customer-key errors, "DEP
 * disabled after recovery"), and the new DEP's keys are the customer's
 * own new ones - the caller must only start it on the customer's request.
 * A plain keytier_assign / keytier_dep_roll never does this.
 * Needs an approval: this is keytier_dep_recover_approved without one
 * (KEYTIER_E_APPROVAL_REQUIRED unless `approval.required = no`).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_dep_recover(
    keytier_ctx *ctx, const char *tenant, const char *old_dep_id,
    const char *root_uri_a, const char *root_uri_b, keytier_dep_info *new_dep,
    keytier_migration *mig);

/*
 * Secrets with rollover, for small service secrets (connected-account
 * credentials...).  A keyset has one current key and archived older keys,
 * each AES-256, stored only wrapped by a root key (AES: RFC 5649; RSA:
 * OAEP SHA-256).  Protect uses the current key; the protected form names
 * the keyset and key version:
 *   "KTS1" | u8 name length | name | u32 version (big-endian) |
 *   12-byte nonce | AES-256-GCM ciphertext | 16-byte tag
 * with everything before the ciphertext, then the caller's aad, as GCM AAD.
 * Rollover is automatic: at each protect or unprotect, and for every
 * keyset at each keytier_keyset_rollover_due (a timer), a current key
 * older than rollover_after seconds is archived and a new one made.  Archived
 * keys older than retire_after seconds (since archiving) are retired: their
 * wrapped copy is deleted, and unprotecting a secret still under one fails
 * with KEYTIER_E_RETIRED (the documented error: protect it again before
 * retire_after).  0 disables either.
 */
typedef struct keytier_keyset_info {
    char name[129];
    char root_uri[KEYTIER_URI_MAX];
    uint32_t current_version;
    int64_t current_created;
    int64_t rollover_after, retire_after;
} keytier_keyset_info;

KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_keyset_create(keytier_ctx *ctx, const char *name, const char *root_uri,
                      int64_t rollover_after, int64_t retire_after);
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_keyset_get(
    keytier_ctx *ctx, const char *name, keytier_keyset_info *out);
/* Rolls over now (whatever the age); *version (may be NULL): the new one. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_keyset_rollover(keytier_ctx *ctx, const char *name, uint32_t *version);
/* Automatic rollover and retirement by age, as protect does. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_keyset_maintain(
    keytier_ctx *ctx, const char *name, int *rolled, size_t *retired);

/*
 * Scheduled rollover of every keyset, without a protect call: for a timer
 * (`keytier secret rollover --due`, hsm-config/keytier-rollover.timer).
 * Each keyset whose current key is at least rollover_after seconds old is
 * rolled over; its archived versions archived at least retire_after
 * seconds ago are retired (wrapped copy deleted; secrets under them then
 * fail with KEYTIER_E_RETIRED).  The store does not know which secrets
 * exist, so retirement goes by age alone: protect a secret again within
 * retire_after of its key's archiving.  Each rollover and retirement is an
 * audit record.  Safe to run at once from several processes sharing the
 * store: each due rollover happens once (the store refuses a second new
 * version of the same current key), each version retires once.
 *
 * With dry_run nothing changes: items and counts say what would happen.
 * A keyset that fails does not stop the others; the call returns the first
 * failure (detail naming the keyset) after all were tried.  each (may be
 * NULL) is called once per keyset, in name order; report (may be NULL)
 * gets the totals.
 */
typedef struct keytier_keyset_due {
    const char *name;
    uint32_t version;   /* current version after the call (dry run: now) */
    int rolled;         /* 1: rolled over (dry run: due for rollover) */
    size_t retired;     /* versions retired (dry run: due to retire) */
    keytier_err err;    /* KEYTIER_OK, or this keyset's failure */
    const char *detail; /* err's detail; "" when KEYTIER_OK */
} keytier_keyset_due;

typedef struct keytier_keyset_due_report {
    size_t keysets; /* keysets examined */
    size_t rolled;  /* keysets rolled over (dry run: due) */
    size_t retired; /* key versions retired (dry run: due) */
    size_t failed;  /* keysets whose rollover or retirement failed */
} keytier_keyset_due_report;

KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_keyset_rollover_due(
    keytier_ctx *ctx, int dry_run, keytier_keyset_due_report *report,
    void (*each)(void *arg, const keytier_keyset_due *item), void *arg);
/*
 * Workers (`keytier worker`, docs/DESIGN.md "Workers"): processes on one or
 * several nodes sharing a store run the lifecycle work of every tenant -
 * migrations (assign, recover), DEPs a dead process left rolling or
 * registering, keysets due for rollover.  A worker claims a batch of a
 * migration's items under a lease (worker.lease_ms) in one short
 * transaction, rewraps it, and commits it in one transaction that moves
 * the keys and marks the items done only where the claim is still its
 * own; a batch whose claim another worker took over after the lease ran
 * out is not written (KEYTIER_E_LEASE_LOST in its event).  A dead worker's
 * claims are taken over once its lease has run out.  Progress (done,
 * total) is kept with the items, visible to every process.
 */
#define KEYTIER_WORKER_ID_MAX 128

typedef struct keytier_worker_event {
    /* "migration batch", "migration completed", "migration failed",
     * "DEP settled", "DEP settle failed", "keysets" */
    const char *what;
    const char *tenant;     /* "" when not one tenant's */
    const char *id;         /* migration or DEP id, "" for keysets */
    size_t claimed;         /* items claimed by this batch */
    size_t moved;           /* items written by it */
    size_t lost;            /* items whose claim was taken over */
    size_t taken_over;      /* items claimed after another's lease ran out */
    uint64_t done, total;   /* the migration's progress after the batch */
    size_t rolled, retired; /* "keysets": rollovers, versions retired */
    keytier_err err;        /* KEYTIER_OK, or this step's failure */
    const char *detail;     /* err's detail; "" when KEYTIER_OK */
} keytier_worker_event;

typedef struct keytier_worker_opts {
    const char *worker_id; /* keytier_worker_id; unique among workers */
    size_t batch;          /* items per claim; 0: worker.batch */
    uint32_t lease_ms;     /* 0: worker.lease_ms */
    /* Asked between batches (may be NULL): non-zero stops the pass; the
     * current batch is finished or its claims released first. */
    int (*stop)(void *arg);
    /* Called after each step (may be NULL). */
    void (*each)(void *arg, const keytier_worker_event *ev);
    void *arg;
} keytier_worker_opts;

typedef struct keytier_worker_report {
    size_t batches, moved, lost, taken_over;
    size_t migrations_finished; /* finished by this worker */
    size_t deps_settled;        /* dead rolls / registrations it settled */
    size_t keysets_rolled, versions_retired;
    size_t failed; /* steps that failed (each in an event) */
    int stopped;   /* opts->stop asked to stop */
} keytier_worker_report;

/* A worker id: this node's name (gethostname), the process id and a
 * random part ("node:pid:hex").  KEYTIER_E_BUFFER when cap is too small. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_worker_id(char *out,
                                                             size_t cap);
/* The configured worker.batch, worker.lease_ms and worker.poll_ms. */
KEYTIER_API void keytier_worker_defaults(keytier_ctx *ctx, size_t *batch,
                                         uint32_t *lease_ms, uint32_t *poll_ms);
/*
 * One pass over the runnable work of every tenant: DEPs left rolling or
 * registering by a dead process settled (kt_dep_settle; a live change is
 * left alone), keysets due rolled over (keytier_keyset_rollover_due), then
 * each unfinished migration in batches until none of its items is left to
 * claim; the worker that finds no item left finishes it (once, audited as
 * keytier_migrate_run does).  A step that fails does not stop the others:
 * its event carries the error, the pass returns the first failure after
 * all were tried.  report may be NULL.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_worker_pass(keytier_ctx *ctx, const keytier_worker_opts *opts,
                    keytier_worker_report *report);

/* *out is malloc'd (free with keytier_secret_free). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_secret_protect(
    keytier_ctx *ctx, const char *keyset, const void *aad, size_t aad_len,
    const void *pt, size_t pt_len, uint8_t **out, size_t *out_len);
/* Errors: KEYTIER_E_RETIRED, KEYTIER_E_NOT_FOUND (no such keyset or
 * version), KEYTIER_E_FORMAT, KEYTIER_E_AUTH (altered, or other aad). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_secret_unprotect(
    keytier_ctx *ctx, const char *keyset, const void *aad, size_t aad_len,
    const void *env, size_t env_len, uint8_t **out, size_t *out_len);
/* Wipes and frees a buffer from protect/unprotect; NULL-safe. */
KEYTIER_API void keytier_secret_free(uint8_t *buf, size_t len);

/* ==== end lifecycle ===================================================== */

/* ==== approvals of privileged operations (Lockbox) =====================
 * (docs/DESIGN.md §2 "Approvals").  Recovery, purge, destroying or
 * replacing a key in the service token, a files-workload read through the
 * availability key and registering an approver each need a live approval:
 * a request (operation, tenant, scope, justification, requester, expiry at
 * most approval.max_ttl seconds away) signed, in a PKCS#11 token they
 * hold, by an approver other than the requester.  Approvers are a name
 * and a key fingerprint pinned in the configuration
 * (`approval.approver = NAME sha256:HEX`) plus the public key registered
 * in the store; a key that is not pinned never counts, so nobody with only
 * the store, the command line or the service token can make an approval.
 * Every request, grant, use, expiry and revocation is an audit record
 * naming the approval; a request, grant or single use whose record cannot
 * be written is taken back (KEYTIER_E_AUDIT).
 */

typedef enum keytier_approval_op {
    KEYTIER_APPROVAL_RECOVER = 1,             /* keytier_dep_recover */
    KEYTIER_APPROVAL_PURGE = 2,               /* keytier_tenant_purge */
    KEYTIER_APPROVAL_SERVICE_KEY_DESTROY = 3, /* a key in the service token */
    KEYTIER_APPROVAL_SERVICE_KEY_REPLACE = 4,
    KEYTIER_APPROVAL_FILES_AVAIL_READ = 5, /* files: availability-key read */
    KEYTIER_APPROVAL_CHANGE_APPROVERS = 6, /* keytier_approver_register */
    KEYTIER_APPROVAL_FILES_OFFBOARD = 7,   /* keytier_files_offboard */
} keytier_approval_op;

typedef enum keytier_approval_state {
    KEYTIER_APPROVAL_REQUESTED = 0,
    KEYTIER_APPROVAL_GRANTED = 1,
    KEYTIER_APPROVAL_USED = 2, /* single-use, consumed */
    KEYTIER_APPROVAL_REVOKED = 3,
    KEYTIER_APPROVAL_EXPIRED = 4, /* requested or granted, past expiry */
} keytier_approval_state;

#define KEYTIER_APPROVER_MAX      64  /* bytes of a requester or approver */
#define KEYTIER_APPROVAL_SCOPE    128 /* bytes of a scope */
#define KEYTIER_JUSTIFICATION_MAX 512 /* bytes of a justification */
#define KEYTIER_FINGERPRINT_SIZE  72  /* "sha256:" + 64 hex digits + NUL */
/* The tenant of operations on the service itself (service keys,
 * approvers), and the scope of an approval that covers every scope of its
 * operation and tenant. */
#define KEYTIER_APPROVAL_ANY "*"

typedef struct keytier_approval_info {
    char id[KEYTIER_ID_SIZE];
    keytier_approval_op op;
    keytier_approval_state state;
    char tenant[KEYTIER_TENANT_MAX + 1];
    char scope[KEYTIER_APPROVAL_SCOPE + 1];
    char justification[KEYTIER_JUSTIFICATION_MAX + 1];
    char requester[KEYTIER_APPROVER_MAX + 1];
    char approver[KEYTIER_APPROVER_MAX + 1]; /* "" until granted */
    char approver_key[KEYTIER_FINGERPRINT_SIZE];
    int single_use;
    int64_t created, expires, granted, used; /* UTC seconds; 0: not yet */
} keytier_approval_info;

/* "recover", "purge", "service-key-destroy", "service-key-replace",
 * "files-availability-read", "change-approvers", "files-offboard"; NULL
 * for other values. */
KEYTIER_API const char *keytier_approval_op_name(keytier_approval_op op);
/* The operation of a name above; KEYTIER_E_ARGS (detail: the names). */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_approval_op_parse(const char *name, keytier_approval_op *out);
/* "sha256:" and the hex SHA-256 of a DER SubjectPublicKeyInfo: what
 * `approval.approver` pins. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_approver_fingerprint(
    const void *spki, size_t len, char out[KEYTIER_FINGERPRINT_SIZE]);

/*
 * Makes an approver's key pair in their token (token_uri: a PKCS#11 URI of
 * a token reachable through the configured modules, logged in with pin):
 * ECDSA P-256, the private key a sensitive, never extractable token object
 * that may only sign, both halves labelled `label`.  spki (capacity *len,
 * 1024 bytes suffice) gets the DER SubjectPublicKeyInfo to pin and
 * register, key_uri the private key's URI for keytier_approval_grant.
 * Errors: KEYTIER_E_EXISTS (the label is taken), KEYTIER_E_LOGIN,
 * KEYTIER_E_TOKEN_NOT_FOUND, KEYTIER_E_TOKEN, KEYTIER_E_BUFFER.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_approver_keygen(
    keytier_ctx *ctx, const char *token_uri, const char *pin, const char *label,
    uint8_t *spki, size_t *len, char key_uri[KEYTIER_URI_MAX]);

/*
 * Registers approver `name`'s public key (DER SubjectPublicKeyInfo: ECDSA
 * P-256, or RSA of 2048 bits or more, used with PSS) in the store.  Its
 * fingerprint must be pinned for that name in the configuration
 * (KEYTIER_E_APPROVER otherwise).  Once any approver is registered, a
 * registration also needs a live approval for
 * KEYTIER_APPROVAL_CHANGE_APPROVERS of tenant "*" and scope `name`
 * (approval_id; NULL: KEYTIER_E_APPROVAL_REQUIRED).  Errors:
 * KEYTIER_E_FORMAT (not a supported public key), KEYTIER_E_APPROVER,
 * the approval errors of keytier_approval_consume.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_approver_register(keytier_ctx *ctx, const char *name, const void *spki,
                          size_t len, const char *approval_id);

/*
 * Records a request.  tenant: the tenant's id, or "*" for the service-wide
 * operations (service keys, change approvers); scope: what the operation
 * touches (recover, files read: the DEP id; service keys: the key label;
 * change approvers: the approver's name; "*": all of them, the only scope
 * of purge).  justification: 1 to KEYTIER_JUSTIFICATION_MAX bytes, no
 * control characters; requester: 1 to KEYTIER_APPROVER_MAX bytes.
 * ttl_seconds: 1 to approval.max_ttl (default 8 hours).  single_use: the
 * approval serves one operation only.  out may be NULL.
 * Errors: KEYTIER_E_ARGS (the detail names the field and the limit).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_approval_request(
    keytier_ctx *ctx, keytier_approval_op op, const char *tenant,
    const char *scope, const char *justification, const char *requester,
    int64_t ttl_seconds, int single_use, keytier_approval_info *out);

/*
 * Grants a request as approver `approver`: the private key key_uri names
 * (PKCS#11 URI of a token reachable through the configured modules,
 * logged in with pin) signs the request's canonical encoding (ECDSA P-256
 * or RSA-PSS over SHA-256); the signature is checked against the
 * approver's registered, pinned key before it is stored.  out may be NULL.
 * Errors: KEYTIER_E_NOT_FOUND (no such request), KEYTIER_E_APPROVER,
 * KEYTIER_E_APPROVAL_SELF (the requester, or the requester's key),
 * KEYTIER_E_APPROVAL_EXPIRED, KEYTIER_E_APPROVAL_REVOKED,
 * KEYTIER_E_EXISTS (granted already), KEYTIER_E_APPROVAL_INVALID (the
 * token's key is not the approver's), token errors (KEYTIER_E_LOGIN,
 * KEYTIER_E_KEY_NOT_FOUND, KEYTIER_E_TOKEN_NOT_FOUND, ...).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_approval_grant(
    keytier_ctx *ctx, const char *approval_id, const char *approver,
    const char *key_uri, const char *pin, keytier_approval_info *out);

/* Approvals of a tenant (NULL: all), oldest first; free with
 * keytier_approval_list_free.  An approval seen past its expiry for the
 * first time is written to the audit log as expired. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_approval_list(keytier_ctx *ctx, const char *tenant,
                      keytier_approval_info **out, size_t *count);
KEYTIER_API void keytier_approval_list_free(keytier_approval_info *list);
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_approval_get(
    keytier_ctx *ctx, const char *approval_id, keytier_approval_info *out);

/* Revokes a requested or granted approval; `by` names who revokes.
 * KEYTIER_E_NOT_FOUND, KEYTIER_E_APPROVAL_USED, KEYTIER_E_APPROVAL_REVOKED. */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_approval_revoke(keytier_ctx *ctx, const char *approval_id,
                        const char *by, const char *reason);

/*
 * Uses approval_id for operation op on tenant and scope: verifies it again
 * (the signature over every field, the approver still pinned and
 * registered and not the requester, not expired, not revoked, operation,
 * tenant and scope matching) and marks a single-use approval used in the
 * same store statement that checks it is unused, so of two concurrent uses
 * exactly one succeeds.  Audited.  The privileged functions below call it;
 * a service may gate its own operations with it.
 * Errors: KEYTIER_E_APPROVAL_REQUIRED (approval_id NULL),
 * KEYTIER_E_NOT_FOUND, KEYTIER_E_APPROVAL_PENDING,
 * KEYTIER_E_APPROVAL_EXPIRED, KEYTIER_E_APPROVAL_REVOKED,
 * KEYTIER_E_APPROVAL_USED, KEYTIER_E_APPROVAL_SCOPE,
 * KEYTIER_E_APPROVAL_INVALID, KEYTIER_E_APPROVAL_SELF, KEYTIER_E_APPROVER.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_approval_consume(
    keytier_ctx *ctx, keytier_approval_op op, const char *tenant,
    const char *scope, const char *approval_id);

/*
 * The privileged operations with their approval: keytier_dep_recover,
 * keytier_tenant_purge and keytier_root_destroy above are these with
 * approval_id NULL.  Each first consumes the approval (op RECOVER with
 * scope old_dep_id; PURGE with scope "*"; SERVICE_KEY_DESTROY with tenant
 * "*" and scope key_label, only when token_label is the configured
 * service token's).  Without an approval they fail with
 * KEYTIER_E_APPROVAL_REQUIRED unless the configuration says
 * `approval.required = no` (then an audit record says the operation ran
 * unapproved).  A consumed single-use approval stays used when the
 * operation then fails.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_dep_recover_approved(
    keytier_ctx *ctx, const char *approval_id, const char *tenant,
    const char *old_dep_id, const char *root_uri_a, const char *root_uri_b,
    keytier_dep_info *new_dep, keytier_migration *mig);
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_tenant_purge_approved(
    keytier_ctx *ctx, const char *approval_id, const char *tenant,
    unsigned flags, keytier_purge_report *out);
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_root_destroy_approved(
    keytier_ctx *ctx, const char *approval_id, const char *module_path,
    const char *token_label, const char *user_pin, const char *key_label,
    size_t *destroyed);

/* ==== end approvals ===================================================== */

/* ==== files workload: tenant intermediate keys, offboarding ============
 * (docs/DESIGN.md §2 "Lifecycle: Offboard").
 */

/*
 * Opens the tenant intermediate key of the tenant's files DEP in `region`
 * (NULL: KEYTIER_REGION_DEFAULT): the DEP that is not disabled or purged,
 * its TIK read through the DEP key (req as keytier_dep_key_open), or
 * after offboarding through the service-managed key.  Sites are created
 * under it with keytier_key_create.  Errors: KEYTIER_E_DEP_NOT_FOUND (no
 * such DEP, or one made before TIKs), KEYTIER_E_ARGS (not a files-shape
 * workload), the errors of keytier_dep_key_open.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_tik_open(
    keytier_ctx *ctx, const keytier_request *req, const char *tenant,
    const char *workload, const char *region, keytier_key **out);

/* What an offboarding did (keytier_files_offboard). */
typedef struct keytier_offboard_report {
    char dep_id[KEYTIER_ID_SIZE];
    char region[KEYTIER_REGION_MAX + 1];
    /* The service-managed key in the service token (label
     * "keytier-managed-" and the DEP id). */
    char managed_uri[KEYTIER_URI_MAX];
    size_t tiks; /* TIKs re-protected under it */
    int resumed; /* 1: an offboarding left unfinished was completed */
} keytier_offboard_report;

/*
 * Offboards the tenant's files DEP in `region` (NULL: the default region)
 * of `workload` to service-managed keys: (1) a journal row is written;
 * (2) an AES-256 key is generated in the service token with the root
 * template and the label "keytier-managed-<DEP id>" (or, on a rerun, the
 * one generated before is found), checked for that role; (3) each TIK of
 * the DEP is read through the DEP key (customer keys only: the internal
 * operation "migrate", never the availability key) and stored wrapped by
 * the service-managed key, each copy read back; (4) the DEP becomes
 * KEYTIER_DEP_OFFBOARDED.  Each step is one store transaction and an
 * audit record ("Offboard started", "Offboard step", "Offboard
 * completed"); a call after a crash at any point finishes the same
 * offboarding (it needs no new approval: the journal holds the one used).
 * Afterwards sites and blobs open and are created through the
 * service-managed key (keytier_key_open_name, keytier_key_open_path,
 * keytier_tik_open), the customer keys are never used again (they may be
 * destroyed), and keytier_dep_key_open of the DEP fails with
 * KEYTIER_E_OFFBOARDED.  A purge of the tenant destroys the service-
 * managed key.  Needs a live approval KEYTIER_APPROVAL_FILES_OFFBOARD for
 * the tenant with scope the DEP id (or "*"): KEYTIER_E_APPROVAL_REQUIRED
 * without one, unless `approval.required = no`.  out may be NULL.
 * Errors: KEYTIER_E_DEP_NOT_FOUND (no files DEP in the region),
 * KEYTIER_E_ARGS (not a files workload, bad region),
 * KEYTIER_E_OFFBOARDED (already offboarded), KEYTIER_E_DEP_STATE (a
 * rolling or migrating DEP, or one made before TIKs), KEYTIER_E_REVOKED /
 * KEYTIER_E_UNAVAILABLE (the customer keys refuse or do not answer: nothing is
 * re-protected), KEYTIER_E_CONFIG (no service token), token errors, the
 * approval errors.
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err keytier_files_offboard(
    keytier_ctx *ctx, const char *approval_id, const char *tenant,
    const char *workload, const char *region, keytier_offboard_report *out);

/* ==== end files workload ================================================ */

/* ==== operations: published counters and health ========================
 * docs/DESIGN.md §2 "Operations".  `keytier stats` and `keytier health`
 * run in processes of their own: each context with a cache publishes its
 * counters to the store (table node_stats) every avail.stats_publish_ms
 * from the cache's thread, and withdraws them at its close. */

/* The classes a failed token call is counted under (common/ckr.c's classes,
 * with the deadline's own outcome apart). */
typedef enum keytier_error_class {
    KEYTIER_CLASS_TIMEOUT = 0, /* no answer within the call deadline, or not
                                  asked: the token's calls are hung */
    KEYTIER_CLASS_SYSTEM = 1,  /* the token failed or is gone (outage) */
    KEYTIER_CLASS_DENIED = 2,  /* the key or PIN refused (revocation) */
} keytier_error_class;
#define KEYTIER_CLASS_COUNT 3
/* "timeout", "system", "denied"; "unknown" otherwise.  Never NULL. */
KEYTIER_API const char *keytier_error_class_name(keytier_error_class c);

/* Buckets of the token latency histogram.  keytier_latency_bounds_us
 * gives their upper bounds in microseconds (rising); a call slower than
 * the last bound is counted in calls only (the +Inf bucket). */
#define KEYTIER_LATENCY_BUCKETS 12
KEYTIER_API const uint64_t *keytier_latency_bounds_us(void);

#define KEYTIER_OPS_TOKEN_MAX 64 /* bytes of a token name in the counters */

/* One token's root-key reads in one process: every unwrap of a DEP key's
 * stored copy sent to it (customer or availability key, cache refreshes
 * included) that returned, and the reads whose caller stopped waiting at
 * the deadline (errors[KEYTIER_CLASS_TIMEOUT]; such a call is counted
 * again in calls when it returns late). */
typedef struct keytier_token_stats {
    char token[KEYTIER_OPS_TOKEN_MAX + 1]; /* the URIs' token= value */
    uint64_t calls;
    uint64_t errors[KEYTIER_CLASS_COUNT];
    uint64_t latency_sum_us;
    /* calls of at most keytier_latency_bounds_us()[i] (cumulative) */
    uint64_t latency_bucket[KEYTIER_LATENCY_BUCKETS];
} keytier_token_stats;

/* One publishing context's counters as it last wrote them. */
typedef struct keytier_node_stats {
    char node[KEYTIER_NODE_MAX + 1]; /* its `node` (default: host name) */
    int64_t pid;
    int64_t updated_ms;  /* when written, ms since the epoch (its clock) */
    int64_t interval_ms; /* its avail.stats_publish_ms */
    int64_t age_ms;      /* how old the figures are (this process's clock) */
    /* not written for three intervals and a second: the process is hung or
     * died without its close (a clean close withdraws the row) */
    int stale;
    keytier_avail_stats avail;
    keytier_token_stats *tokens;
    size_t n_tokens;
} keytier_node_stats;

/*
 * Every published row of the store, by node and process id.  Rows not
 * written for a day are deleted by the next publisher.  Free with
 * keytier_node_stats_free.  Errors: KEYTIER_E_STORE,
 * KEYTIER_E_STORE_UNAVAILABLE, KEYTIER_E_OPS_COUNTERS (a row that is not
 * the counters this library writes).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_node_stats_list(keytier_ctx *ctx, keytier_node_stats **out, size_t *n);
KEYTIER_API void keytier_node_stats_free(keytier_node_stats *stats, size_t n);

/* What a token is to the context (bits of keytier_token_probe.roles). */
#define KEYTIER_TOKEN_ROLE_CUSTOMER   1u /* holds a DEP's key A or B */
#define KEYTIER_TOKEN_ROLE_AVAIL      2u /* holds a DEP's availability key */
#define KEYTIER_TOKEN_ROLE_SERVICE    4u /* `service_token`: audit anchors */
#define KEYTIER_TOKEN_ROLE_CONFIGURED 8u /* a `pin.LABEL` names it */

/* One token probed: found among the modules, a session opened and logged
 * in (with its configured PIN), within avail.call_deadline_ms. */
typedef struct keytier_token_probe {
    char token[KEYTIER_OPS_TOKEN_MAX + 1];
    unsigned roles;
    size_t deps; /* DEPs (not purged) with a root in it */
    int reachable;
    uint64_t latency_us;
    /* when not reachable: the outcome's name ("timeout",
     * "CKR_DEVICE_ERROR", "unreachable", "CKR_PIN_INCORRECT", ...), its
     * class and the error detail */
    char error[32];
    keytier_error_class error_class;
    char detail[512];
} keytier_token_probe;

typedef enum keytier_ops_status {
    KEYTIER_OPS_HEALTHY = 0,
    KEYTIER_OPS_DEGRADED = 1, /* served, with less margin (see below) */
    KEYTIER_OPS_CRITICAL = 2, /* some requests fail, or evidence is lost */
} keytier_ops_status;

#define KEYTIER_OPS_REASONS 16

typedef struct keytier_ops_health {
    keytier_ops_status status;
    /* every token a DEP not purged names, the service token and the
     * tokens with a configured PIN, by name */
    keytier_token_probe *tokens;
    size_t n_tokens;
    /* the store: a query of its schema version, timed */
    int store_reachable;
    int store_schema;
    char store_engine[16]; /* "sqlite", "postgresql" */
    uint64_t store_latency_us;
    /* this context's audit log: keytier_audit_verify_anchored's verdict
     * and report, its detail when not KEYTIER_OK */
    keytier_err audit;
    keytier_audit_report audit_report;
    char audit_detail[512];
    /* DEPs not purged; those with no root's token reachable (every read
     * of theirs fails); those with a customer token unreachable */
    size_t deps, deps_dark, deps_degraded;
    /* the published counters: rows, stale rows, active cache alerts */
    size_t nodes, nodes_stale;
    uint64_t cache_alerts_active;
    /* why the status is not healthy, worst first, one line each */
    char reasons[KEYTIER_OPS_REASONS][256];
    size_t n_reasons;
} keytier_ops_health;

/*
 * Probes the tokens, the store and the audit log now and reads the
 * published counters.  Critical: the store does not answer, the audit log
 * is altered (KEYTIER_E_AUDIT_TAMPERED), or a DEP has no token reachable.
 * Degraded: a token is unreachable (reads fall back, or use the other
 * customer key), the audit log's newest records are not anchored or it
 * could not be checked, a cache alert is active, a publisher's counters
 * are stale.  Healthy otherwise.  Each token costs at most one
 * avail.call_deadline_ms (a token known hung answers at once).  Never
 * audited.  Free with keytier_ops_health_free.  Errors: KEYTIER_E_ARGS,
 * KEYTIER_E_NOMEM (the probes' failures are in *out, not the result).
 */
KEYTIER_API KEYTIER_MUST_CHECK keytier_err
keytier_ops_health_check(keytier_ctx *ctx, keytier_ops_health *out);
KEYTIER_API void keytier_ops_health_free(keytier_ops_health *h);

/* ==== end operations ==================================================== */

#ifdef __cplusplus
}
#endif
#endif /* KEYTIER_H */
