/*
 * kt_lib.h - internal types of libkeytier shared by its source files.
 * Only p11call.c calls C_* functions; everything else reaches tokens
 * through kt_p11_* (p11call.h) and the token files of p11/.
 */
#ifndef KT_LIB_H
#define KT_LIB_H

#include <pthread.h>
#include <stdatomic.h>

#include <p11-kit/pkcs11.h>

#include "kt_base.h"
#include "kt_calls.h"
#include "store.h"
#include "avail.h"

#define KT_KEY_SIZE   32 /* DEP and tier keys: AES-256 */
#define KT_UUID_BYTES 16
#define KT_CHECK_SIZE 32 /* DEP key check value */

/* ---- configuration (config.c) ----------------------------------------- */

enum kt_shape { KT_SHAPE_MAIL = 0, KT_SHAPE_FILES = 1 };
enum kt_avail_type { KT_AVAIL_AES256 = 0, KT_AVAIL_RSA2048 = 1 };

struct kt_workload_cfg {
    char name[KEYTIER_WORKLOAD_MAX + 1];
    enum kt_shape shape;
    enum kt_avail_type avail;
    unsigned dep_limit; /* 0: the global dep_limit */
};

enum kt_pin_kind { KT_PIN_ENV, KT_PIN_FILE, KT_PIN_VALUE };

struct kt_pin_cfg {
    char label[33]; /* token label, as in CK_TOKEN_INFO, trimmed */
    enum kt_pin_kind kind;
    char *where;      /* env var name or file path (not secret) */
    kt_secret *value; /* KT_PIN_VALUE only */
};

#define KT_MAX_MODULES   16
#define KT_MAX_PINS      32
#define KT_MAX_WORKLOADS 16
#define KT_MAX_APPROVERS 16

/* approval.approver: an approver's name and the SHA-256 of their public
 * key, the trust root of approvals (lib/trust/approval.c). */
struct kt_approver_pin {
    char name[KEYTIER_APPROVER_MAX + 1];
    uint8_t fpr[32];
};

/* A `remote = ADDRESS` line is kept in `modules` as this prefix
 * followed by the address. */
#define KT_REMOTE_PREFIX "remote:"

/* log_target: where the library's log goes. */
enum kt_log_target {
    KT_LOG_TO_DEFAULT = 0, /* not in the file: log_file if given, or stderr */
    KT_LOG_TO_STDERR = 1,
    KT_LOG_TO_FILE = 2,
    KT_LOG_TO_SYSLOG = 3,
};

struct kt_config {
    char *modules[KT_MAX_MODULES];
    size_t n_modules;
    char *service_token; /* PKCS#11 URI naming a token */
    char *node;          /* this node's name (default: the host name) */
    char *store_path;    /* a SQLite file or a PostgreSQL connection string */
    char *store_password_file; /* store.password_file (PostgreSQL) */
    char *log_file;
    enum kt_log_level log_level;
    enum kt_log_target log_target; /* KT_LOG_TO_DEFAULT: log_file or stderr */
    char *log_syslog_socket;       /* NULL: /dev/log */
    unsigned dep_limit;
    bool allow_oaep_sha1;
    uint32_t chunk_size;
    unsigned stream_threads; /* transform workers of a stream (stream.h) */
    struct kt_pin_cfg pins[KT_MAX_PINS];
    size_t n_pins;
    struct kt_workload_cfg workloads[KT_MAX_WORKLOADS];
    size_t n_workloads;
    struct kt_avail_cfg avail; /* avail.* keys */
    struct kt_approver_pin approvers[KT_MAX_APPROVERS];
    size_t n_approvers;
    unsigned approval_max_ttl; /* seconds */
    bool approval_required;
    struct {
        unsigned batch;    /* items a worker claims at once */
        unsigned lease_ms; /* how long a claim is its worker's own */
        unsigned poll_ms;  /* a worker's pause when nothing is runnable */
    } worker;
};

KT_NODISCARD keytier_err kt_config_load(const char *path,
                                        struct kt_config *cfg);
/* The configuration file read when none is named (keytier_ctx_open with
 * NULL and no $KEYTIER_LIB_CONF): the per-user file
 * $XDG_CONFIG_HOME/keytier/keytier-lib.conf (~/.config without
 * XDG_CONFIG_HOME) if it exists, else system_path if it exists. Writes it
 * to buf and returns true; false when neither exists (the built-in
 * defaults) or the path does not fit. */
bool kt_config_default_path(const char *system_path, char *buf, size_t len);
/* The library's keys (config.c), for tests: n receives their number. */
struct kt_conf_key;
const struct kt_conf_key *kt_config_table(size_t *n);
void kt_config_free(struct kt_config *cfg);
/* Whether s is a node name: 1..KEYTIER_NODE_MAX bytes of A-Z a-z 0-9 . _ -
 * (the `node` key). */
KT_NODISCARD bool kt_node_name_ok(const char *s);
/* Whether a store setting names a PostgreSQL database (postgresql://,
 * postgres://, libpq's key=value form) rather than a SQLite file. */
bool kt_config_store_is_pg(const char *where);
/* The audit log's path: avail.audit_log, or the store's path and
 * ".audit.jsonl". Returns a string to free, or NULL (out of memory). */
char *kt_config_audit_log(const struct kt_config *cfg);
const struct kt_workload_cfg *kt_config_workload(const struct kt_config *cfg,
                                                 const char *name);
const struct kt_pin_cfg *kt_config_pin(const struct kt_config *cfg,
                                       const char *label);
/* Reads a PIN from its source into a fresh secret (never logs it). */
KT_NODISCARD keytier_err kt_pin_read(const struct kt_pin_cfg *pin,
                                     kt_secret **out);

/* ---- modules, tokens, sessions, roots (p11/) -------------------------- */

/*
 * A module is started (C_Initialize, C_GetInfo) and its slots
 * scanned by one job at a time, on the call pool, never under tokens_mu.
 * A scan that misses its deadline marks the module hung: later lookups
 * skip it instead of waiting, until the late call returns (the job then
 * clears the mark and adds what it found).
 */
struct kt_module {
    char *path;
    CK_FUNCTION_LIST *fl;
    CK_INFO info;       /* written by the scan job before ready */
    pthread_mutex_t mu; /* guards the state below */
    pthread_cond_t cv;  /* a scan finished (CLOCK_MONOTONIC) */
    bool initialized;   /* we called C_Initialize and must finalize */
    bool ready;         /* initialised and C_GetInfo answered */
    bool scanning;      /* a start/scan job is under way */
    bool hung;          /* that job missed a deadline: skip the module */
    CK_RV last_rv;      /* why it is not ready (for error details) */
    /* The scan job's deadline (kt_now_ns): waited for until then only. */
    uint64_t scan_until;
};

struct kt_token {
    keytier_ctx *ctx;
    struct kt_module *mod;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
    char label[33]; /* trimmed copy of info.label */
    pthread_mutex_t mu;
    CK_SESSION_HANDLE *idle; /* idle sessions, reused */
    size_t n_idle, cap_idle;
    /* The configured PIN this token last refused and the code it gave. A
     * refused PIN is never offered again (every retry would spend the
     * customer's PIN retry counter until the PIN locks for everyone); a
     * changed PIN source is tried again. Guarded by mu. */
    kt_secret *refused_pin;
    CK_RV refused_rv;
};

struct keytier_ctx {
    struct kt_config cfg;
    kt_log *log;
    struct kt_module modules[KT_MAX_MODULES];
    size_t n_modules;
    pthread_mutex_t tokens_mu;
    struct kt_token **tokens; /* stable pointers, freed at close */
    size_t n_tokens, cap_tokens;
    struct kt_store *store;
    struct kt_avail *avail; /* Cache, audit */
    /* Every token call of the context runs on this pool with
     * a deadline.  A call that missed its deadline still runs on its
     * worker and holds the context (calls, kt_calls_hold): close waits a
     * bounded time for them, then leaves the last one to free what they
     * use (modules, tokens, sessions, log, config; p11/unload.c). */
    struct kt_pool *pool;
    kt_calls calls;
    /* The opener's part of the end, after the tokens' (ctx/ctx.c,
     * admin/admin.c): frees what it made, and ctx. */
    void (*free_rest)(keytier_ctx *ctx);
};

/* ---- context lifetime and token work with a deadline (p11/unload.c,
 * token_job.c) ------------------------------------------ */

/* Initialises the count of running calls (before kt_tokens_load, which
 * makes the pool); free_rest is the opener's part of the end. */
void kt_ctx_init_calls(keytier_ctx *ctx, void (*free_rest)(keytier_ctx *ctx));
/* Waits at most the call deadline for token jobs still running, then
 * closes the sessions, finalizes the modules and frees the tokens and the
 * rest (free_rest) now, or, when some are hung, leaves that to the last of
 * them.  Store and availability state must be closed already. */
void kt_ctx_drain(keytier_ctx *ctx);

/* Deadlines: reads and lookups, and administration (lib/avail/avail.h;
 * config.c). */
unsigned kt_call_deadline_ms(const keytier_ctx *ctx);
unsigned kt_admin_deadline_ms(const keytier_ctx *ctx);

#define KT_TJOB_DETAIL 512

/*
 * Token work that runs on the pool with a deadline.  A job is a struct
 * whose first member is struct kt_tjob, made by kt_tjob_new; everything
 * run touches must be inside it (copies, never the caller's stack), as a
 * late job outlives its caller.
 */
struct kt_tjob {
    keytier_ctx *ctx;
    /* on a worker: the token work; its error and detail are carried back */
    keytier_err (*run)(struct kt_tjob *job);
    /* optional: the job succeeded after its caller left: undo it (destroy
     * a key it generated) */
    void (*undo)(struct kt_tjob *job);
    /* optional: frees what the job owns (wipes secrets), at the end */
    void (*cleanup)(struct kt_tjob *job);
    keytier_err err;
    CK_RV rv; /* the token's CK_RV behind err, if any */
    char detail[KT_TJOB_DETAIL];
    bool taken; /* the caller has the result (written on its thread) */
    atomic_uint refs;
};

/* A zeroed job of size bytes (>= sizeof(struct kt_tjob)), or NULL. */
KT_NODISCARD void *kt_tjob_new(keytier_ctx *ctx, size_t size,
                               keytier_err (*run)(struct kt_tjob *job));
/*
 * Runs job on the context's pool and waits at most deadline_ms.  Returns
 * the job's error (with its detail, on this thread), or
 * KEYTIER_E_UNAVAILABLE naming `what` and `uri` when the token did not
 * answer in time or has too many calls hung already.  job->taken says
 * whether its outputs may be read.  The caller still calls kt_tjob_put.
 * On a pool worker the job runs inline.
 */
KT_NODISCARD keytier_err kt_tjob_run(struct kt_tjob *job, const char *what,
                                     const char *uri, unsigned deadline_ms);
/*
 * The same without turning the outcome into an error: returns the pool's
 * CK_RV (kt_pool_run: the job's own, or KT_CKR_TIMEOUT, KT_CKR_TOKEN_HUNG,
 * CKR_HOST_MEMORY).  job->taken says whether job->err, rv, detail and the
 * job's outputs may be read; detail is then the worker's whole error
 * detail (kt_err_restore takes it).
 */
KT_NODISCARD CK_RV kt_tjob_start(struct kt_tjob *job, const char *what,
                                 const char *uri, unsigned deadline_ms);
struct kt_call;
/* The pool call that runs job (for kt_pool_hedge): holds a reference for
 * the pool, which the call's release drops.  The caller keeps its own. */
void kt_tjob_call(struct kt_tjob *job, const char *what, const char *uri,
                  struct kt_call *call);
void kt_tjob_put(struct kt_tjob *job);
/* The pool's identity of the token a URI names (its token= part). */
uint64_t kt_uri_token_id(const char *uri);
/* The token= attribute of a PKCS#11 URI: its text as written into raw
 * (may be NULL) and its percent-decoded value into name (both cut to
 * their capacity); false when the URI has none. */
bool kt_uri_token_attr(const char *uri, char *raw, size_t raw_cap, char *name,
                       size_t cap);

struct kt_root;
/* A job on one root key: kt_root_resolve(uri, for_wrap) on a worker, then
 * op (if any) in the root's session, which is returned to its token
 * after.  Site structs embed it first and add their copies. */
struct kt_root_job {
    struct kt_tjob base;
    const char *what; /* static: "customer key A", "keyset root" */
    char uri[KEYTIER_URI_MAX];
    bool for_wrap;
    keytier_err (*op)(struct kt_root_job *job, const struct kt_root *root,
                      CK_SESSION_HANDLE s, CK_RV *rv);
};
KT_NODISCARD void *kt_root_job_new(
    keytier_ctx *ctx, size_t size, const char *what, const char *uri,
    bool for_wrap,
    keytier_err (*op)(struct kt_root_job *job, const struct kt_root *root,
                      CK_SESSION_HANDLE s, CK_RV *rv));
/* kt_tjob_run for a root job: names its key and URI. */
KT_NODISCARD keytier_err kt_root_job_run(struct kt_root_job *job,
                                         unsigned deadline_ms);

/* A resolved root key. */
struct kt_root {
    struct kt_token *tok;
    CK_OBJECT_HANDLE key; /* the secret key, or the RSA private key */
    CK_OBJECT_HANDLE pub; /* wrapping object: the key itself, or RSA public */
    CK_KEY_TYPE type;     /* CKK_AES or CKK_RSA */
};

KT_NODISCARD keytier_err kt_tokens_load(keytier_ctx *ctx);
/* An unload in two steps (kt_ctx_drain): the token calls
 * (close idle sessions, C_Finalize, release the modules), then the memory
 * (and the call pool). */
void kt_tokens_finalize(keytier_ctx *ctx);
void kt_tokens_free(keytier_ctx *ctx);
/* Parses a URI once to refuse malformed ones and ones carrying a PIN
 * (whose text must then never be echoed). */
KT_NODISCARD keytier_err kt_uri_check(const char *what, const char *uri);
/* Finds the single token a URI names (rescanning slots once if none). */
/* The URI of an object the library made (token label and serial, object
 * label, id, class). */
KT_NODISCARD keytier_err kt_object_uri(const CK_TOKEN_INFO *ti,
                                       const char *label, const uint8_t *id,
                                       size_t id_len, CK_OBJECT_CLASS cls,
                                       char out[KEYTIER_URI_MAX]);
KT_NODISCARD keytier_err kt_token_find(keytier_ctx *ctx, const char *uri,
                                       struct kt_token **out);
KT_NODISCARD keytier_err kt_session_get(struct kt_token *tok,
                                        CK_SESSION_HANDLE *out, CK_RV *rv);
/* Returns a session to the pool, or closes it if `rv` says it is broken. */
void kt_session_put(struct kt_token *tok, CK_SESSION_HANDLE s, CK_RV rv);
/* Two tokens are the same token (manufacturer, model, serial, label). */
bool kt_token_same(const struct kt_token *a, const struct kt_token *b);

/* Wrap mechanisms recorded with each wrapped copy. */
enum kt_wrap_mech {
    KT_WRAP_AES_KWP = 0,
    KT_WRAP_RSA_OAEP_SHA256 = 1,
    KT_WRAP_RSA_OAEP_SHA1 = 2,
};
const char *kt_wrap_mech_name(enum kt_wrap_mech m);
KT_NODISCARD bool kt_wrap_mech_parse(const char *s, enum kt_wrap_mech *m);

/* Generates a root key from keytier's one root template (root.c). */
KT_NODISCARD CK_RV kt_root_keygen(struct kt_token *tok, CK_SESSION_HANDLE s,
                                  CK_ULONG rsa_bits, const char *label,
                                  const uint8_t *id, size_t id_len,
                                  CK_OBJECT_HANDLE *key, CK_OBJECT_HANDLE *pub);
/* Resolves a root-key URI in session s of its token and checks that the key
 * can unwrap (and, when for_wrap, wrap, and is sensitive and not
 * extractable).  `what`
 * ("customer key A") names it in errors. */
KT_NODISCARD keytier_err kt_root_resolve(keytier_ctx *ctx, const char *what,
                                         const char *uri, bool for_wrap,
                                         struct kt_root *out,
                                         CK_SESSION_HANDLE *s, CK_RV *rv);
/* The longest CKA_ID and CKA_LABEL of a root the library reads. */
#define KT_KEY_LABEL_MAX 256
/* The identity of a resolved key, whatever URI named it: its token
 * (manufacturer, model, serial, label), class, CKA_ID and CKA_LABEL, as a
 * PKCS#11 URI (what DEP roots record to compare keys); label receives its
 * CKA_LABEL. */
KT_NODISCARD keytier_err kt_root_identity(const struct kt_root *root,
                                          CK_SESSION_HANDLE s,
                                          char ident[KEYTIER_URI_MAX],
                                          char label[KT_KEY_LABEL_MAX + 1],
                                          CK_RV *rv);
/* A resolved root may be a customer key: not labelled as one of keytier's
 * own keys ("keytier-..."), not in the service token (KEYTIER_E_KEY_ROLE,
 * naming the key, its role and the fix).  Fills ident (kt_root_identity).
 * The attribute checks are kt_root_resolve's (for_wrap). */
KT_NODISCARD keytier_err kt_root_check_customer(
    keytier_ctx *ctx, const struct kt_root *root, CK_SESSION_HANDLE s,
    const char *what, const char *uri, char ident[KEYTIER_URI_MAX], CK_RV *rv);
/* Wraps key with root (in session s); out/out_len: capacity in, length out. */
KT_NODISCARD keytier_err kt_root_wrap(const struct kt_root *root,
                                      CK_SESSION_HANDLE s,
                                      enum kt_wrap_mech mech,
                                      const kt_secret *key, uint8_t *out,
                                      size_t *out_len, CK_RV *rv);
/* Unwraps a wrapped copy into a secret. */
KT_NODISCARD keytier_err kt_root_unwrap(
    const struct kt_root *root, CK_SESSION_HANDLE s, enum kt_wrap_mech mech,
    const uint8_t *wrapped, size_t wrapped_len, kt_secret **out, CK_RV *rv);
/* Generates an availability key in the service token; returns its URI and
 * the resolved root. */
KT_NODISCARD keytier_err kt_avail_generate(
    keytier_ctx *ctx, enum kt_avail_type type, const uint8_t id[KT_UUID_BYTES],
    const char *label, struct kt_root *out, CK_SESSION_HANDLE *s, char **uri);
/* A key the library generated in the service token for a role (the
 * service-managed key of an offboarded files DEP): in the service token,
 * labelled exactly `label` (KEYTIER_E_KEY_ROLE otherwise).  Fills ident. */
KT_NODISCARD keytier_err kt_root_check_service(
    keytier_ctx *ctx, const struct kt_root *root, CK_SESSION_HANDLE s,
    const char *what, const char *uri, const char *label,
    char ident[KEYTIER_URI_MAX], CK_RV *rv);
/* Destroys an availability key (rollback of a failed create): its objects
 * by handle, then any object still found under its CKA_ID id and label
 * (a handle does not survive a logout).  CKR_OK when none is left. */
KT_NODISCARD CK_RV kt_avail_destroy(struct kt_root *root, CK_SESSION_HANDLE s,
                                    const uint8_t id[KT_UUID_BYTES],
                                    const char *label);

/* ---- ids, KDF (util.c) ------------------------------------------------ */

KT_NODISCARD bool kt_uuid_new(uint8_t out[KT_UUID_BYTES]);
void kt_uuid_format(const uint8_t in[KT_UUID_BYTES], char out[KEYTIER_ID_SIZE]);
KT_NODISCARD bool kt_uuid_parse(const char *s, uint8_t out[KT_UUID_BYTES]);
/* AES-256-GCM, fetched once per process (NULL if unavailable). */
const struct evp_cipher_st *kt_aes256gcm(void);
/* HKDF-SHA-256 (OpenSSL EVP_KDF) with an empty salt. */
KT_NODISCARD bool kt_hkdf(const kt_secret *ikm, const void *info,
                          size_t info_len, uint8_t *out, size_t out_len);
/* Checks a text argument: non-NULL, 1..max bytes, no NUL inside. */
KT_NODISCARD bool kt_text_ok(const char *s, size_t max);
/* Copies a string into a fixed field (truncates, always terminates). */
void kt_strlcpy(char *dst, const char *src, size_t cap);

/* ---- DEP keys (dep_key.c; read through kt_dep_key_read, avail.h) ------ */

/* The DEP key check value: binds a DEP key to its tenant and DEP id. */
KT_NODISCARD bool kt_dep_check_value(const kt_secret *dep_key,
                                     const struct kt_dep_rec *dep,
                                     uint8_t out[KT_CHECK_SIZE]);

/* Unwraps a wrapped copy of a DEP key with a resolved root (in session s),
 * unchecked: the one unwrap of a DEP key under a root, beneath
 * kt_dep_key_unwrap_slot and the probe of a copy just made (keys/dep.c). */
KT_NODISCARD keytier_err kt_dep_key_unwrap_copy(
    const struct kt_root *root, CK_SESSION_HANDLE s, enum kt_wrap_mech mech,
    const uint8_t *wrapped, size_t wrapped_len, kt_secret **out, CK_RV *rv);
/* Unwraps one copy (slot KEYTIER_ROOT_A/B/AVAIL) and checks it. */
KT_NODISCARD keytier_err kt_dep_key_unwrap_slot(keytier_ctx *ctx,
                                                const struct kt_dep_rec *dep,
                                                int slot, kt_secret **out,
                                                CK_RV *rv);
/* The same on the call pool, waiting at most deadline_ms
 * (KEYTIER_E_UNAVAILABLE naming the key when its token does not answer). */
KT_NODISCARD keytier_err kt_dep_key_unwrap_slot_bounded(
    keytier_ctx *ctx, const struct kt_dep_rec *dep, int slot, kt_secret **out,
    CK_RV *rv, unsigned deadline_ms);

/* ---- DEPs (keys/dep.c) ------------------------------------------------ */

/* A customer key (identity ident, named by uri) is no DEP's availability
 * key, by identity or by URI (KEYTIER_E_KEY_ROLE naming the DEP): the
 * store's half of the customer-key role, after kt_root_check_customer. */
KT_NODISCARD keytier_err kt_dep_customer_role(keytier_ctx *ctx,
                                              const char *what, const char *uri,
                                              const char *ident);

/* ---- DEP states (keys/dep_state.c) ------------------------------------ */

/* Stores a new DEP (its three copies made and each probed) REGISTERING,
 * with its TIK for the files shape (tik NULL: none; replaces: the DEP a
 * recovery replaces, as kt_store_dep_insert_files takes it), proves every
 * stored copy by an unwrap, writes its "DEP created" record and marks it
 * REGISTERED (a failed update tried once more).  On an error the DEP (and
 * its TIK) is removed again, after a "DEP creation undone" record when
 * its "DEP created" record was written, and the caller destroys the
 * availability key it made, unless *kept: the DEP stayed in the store
 * (registering, for the next read of its key to finish) and owns it. */
KT_NODISCARD keytier_err kt_dep_store(keytier_ctx *ctx, struct kt_dep_rec *dep,
                                      unsigned limit,
                                      const struct kt_key_rec *tik,
                                      const char *replaces, bool *kept);
/* A key `what` not found (e KEYTIER_E_NOT_FOUND) of a purged tenant
 * (every DEP of its workload, NULL: any, PURGED) is KEYTIER_E_PURGED;
 * any other e comes back as it is, with its detail. */
KT_NODISCARD keytier_err kt_key_purged(keytier_ctx *ctx, keytier_err e,
                                       const char *tenant, const char *workload,
                                       const char *what);

/* What a DEP is created from (keys/dep.c): region NULL is the default
 * region for the files shape; replaces (NULL: none) is the DEP a recovery
 * replaces, left out of the one-DEP-per-region rule. */
struct kt_dep_create_args {
    const char *tenant, *workload, *region, *uri_a, *uri_b, *name;
    const char *replaces;
};
KT_NODISCARD keytier_err kt_dep_create(keytier_ctx *ctx,
                                       const struct kt_dep_create_args *a,
                                       keytier_dep_info *out);

/* ---- tier keys (tier.c) ----------------------------------------------- */

struct kt_cipher_pool;

struct keytier_key {
    keytier_ctx *ctx;
    keytier_key_info info;
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    uint8_t key_id_bin[KT_UUID_BYTES];
    uint8_t dep_id_bin[KT_UUID_BYTES];
    unsigned max_level; /* deepest level of the workload's shape */
    /* files shape: the tenant intermediate key this key is (its own id) or
     * is under; "" for the DEP key and keys under no TIK */
    char tik_id[KEYTIER_ID_SIZE];
    bool files;         /* the workload has the files shape */
    kt_secret *key;     /* the key itself (wraps children) */
    kt_secret *enc_key; /* envelope encryption key (HKDF) */
    uint8_t commit[32]; /* envelope key commitment (HKDF) */
    struct kt_cipher_pool *pool;
};

unsigned kt_shape_depth(enum kt_shape shape);

/* What a cache hit needs besides the key bytes to rebuild a
 * keytier_key without the store, kept as the entry's aux. */
struct kt_key_aux {
    keytier_key_info info;
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    uint8_t key_id_bin[KT_UUID_BYTES];
    uint8_t dep_id_bin[KT_UUID_BYTES];
    unsigned max_level;
    char tik_id[KEYTIER_ID_SIZE];
    bool files;
};

/* A key handle for record r (ids and level as stored, checked by the
 * caller) holding *key (taken, also on failure); its envelope keys are
 * derived.  (tier.c; keys/tik.c opens service-managed TIKs with it) */
KT_NODISCARD keytier_err kt_key_handle(keytier_ctx *ctx,
                                       const struct kt_key_rec *r,
                                       kt_secret **key, bool files,
                                       unsigned max_level, keytier_key **out);
/* The key of TIK record r from its service-managed copy (an offboarded
 * DEP), unwrapped on the call pool (keys/tik.c). */
KT_NODISCARD keytier_err kt_tik_managed_key(keytier_ctx *ctx,
                                            const struct kt_key_rec *r,
                                            kt_secret **out);
/* The name of a files DEP's region as shown: its own, or the default for
 * one stored without ("" for the mail shape) (tier.c). */
const char *kt_dep_region(keytier_ctx *ctx, const struct kt_dep_rec *d);

/* ---- envelopes (envelope.c) ------------------------------------------- */

KT_NODISCARD keytier_err kt_envelope_key_init(keytier_key *key);
/* The same from derived keys kept in the cache (no HKDF). */
KT_NODISCARD keytier_err kt_envelope_key_restore(keytier_key *key,
                                                 const uint8_t *enc_key,
                                                 const uint8_t *commit);
void kt_envelope_key_free(keytier_key *key);

/* ---- lifecycle (lifecycle.c, migrate.c, secrets.c) -------------------- */

/* Wraps (enc) `key` into r->wrapped under kek with r's ids as AAD, or
 * unwraps r->wrapped into `key` (KT_KEY_SIZE + 16 bytes of room). */
KT_NODISCARD keytier_err kt_tier_gcm(const kt_secret *kek, struct kt_key_rec *r,
                                     kt_secret *key, int enc);
/* Appends a lifecycle audit record to the context's audit log. */
struct json_object;
KT_NODISCARD keytier_err kt_lc_audit(keytier_ctx *ctx, const char *activity,
                                     const struct kt_dep_rec *dep,
                                     struct json_object *fields);
/* Tests of offboarding (lifecycle/offboard.c): a run stops with
 * KEYTIER_E_INTERNAL right after finishing this step (enum
 * kt_offboard_step), as a crash there would; -1: never. */
extern int kt_offboard_stop_after;
/* Seconds since the epoch; tests of rollover may move it (internal). */
extern int64_t (*kt_lc_clock)(void);

#endif /* KT_LIB_H */
