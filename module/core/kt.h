/* keytier-pkcs11 internals shared by every file of the module. */
#ifndef KT_H
#define KT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <p11-kit/pkcs11.h>

#include "attrs.h"
#include "wipe.h"

#include "pkcs11v3.h" /* 3.0 mechanism and key type names */

#define KT_PRINTF(f, a) __attribute__((format(printf, f, a)))

#define KT_LABEL_LEN      32
#define KT_SERIAL_LEN     16
#define KT_MASTER_KEY_LEN 32
#define KT_EPOCH_LEN      32 /* meta 'epoch': hex of 16 random bytes */
#define KT_NO_LOGIN       ((CK_USER_TYPE)CK_UNAVAILABLE_INFORMATION)
/* Internal only, never returned by a C_* function: the object changed
 * since it was read; read it again and retry. */
#define KT_CKR_RETRY ((CK_RV)(CKR_VENDOR_DEFINED | 0x4b540001UL))

/* ---- secrets (base/log.c; kt_wipe: common/wipe.h; kt_nodump_* in
 * core/nodump.c) ------------------------------------------------------- */
/* Wiped and freed; from kt_secure_alloc or malloc alike. */
void kt_free_secret(void *p, size_t len);
/* Memory for key material: OpenSSL's secure heap (locked, left out of core
 * dumps), or, once that is full, ordinary memory with one logged warning.
 * Blocks of KT_CACHE_LINE bytes or more are aligned to it. Free with
 * kt_free_secret. */
void *kt_secure_alloc(size_t len);
/* At load (core/module.c's constructor): the secure heap of this size
 * unless the process already has one (it is process-wide: the host's is
 * used then); once per process. */
void kt_secure_make(size_t size);
/* C_Initialize: the heap made at load (made here if it was not) logged
 * once, and a secure_heap_size that differs from it named. */
void kt_secure_init(size_t size);
/* allow_core_dumps = no: the process is non-dumpable while any token of the
 * module is logged in. kt_nodump_token (token lock held for writing) follows
 * one token's login state; kt_nodump_reset restores the process's earlier
 * value (C_Finalize, and a fork child that dropped its state). */
struct kt_token;
void kt_nodump_token(struct kt_token *t, bool logged_in);
void kt_nodump_reset(bool fork_child);

/* ---- log (log.c) ---------------------------------------------------- */
enum kt_log_level { KT_LOG_ERROR, KT_LOG_WARNING, KT_LOG_INFO, KT_LOG_DEBUG };
void kt_log(enum kt_log_level level, const char *fmt, ...) KT_PRINTF(2, 3);
/* Logs at level to file (NULL or "": stderr); a file that cannot be
 * opened is reported on stderr, which then takes the records. */
void kt_log_open(enum kt_log_level level, const char *file);
struct kt_config;
/* Opens the log cfg names at its level: the system logger (log_target =
 * syslog; one that cannot be reached is reported on stderr, which then
 * takes the records) or kt_log_open with its log_file. */
void kt_log_open_config(const struct kt_config *cfg);
void kt_log_close(void);
const char *kt_rv_name(CK_RV rv);

/* ---- config (config.c) ---------------------------------------------- */
/* Where the log goes; DEFAULT (not set) becomes FILE with a log_file,
 * else STDERR. */
enum kt_log_target {
    KT_LOG_TO_DEFAULT,
    KT_LOG_TO_STDERR,
    KT_LOG_TO_FILE,
    KT_LOG_TO_SYSLOG,
};
struct kt_config {
    char token_dir[PATH_MAX];
    CK_ULONG slots;
    enum kt_log_level log_level;
    char log_file[PATH_MAX];
    enum kt_log_target log_target;
    /* log_target = syslog: the logger's socket ("": /dev/log); a path that
     * fits a unix socket address */
    char log_syslog_socket[108];
    CK_ULONG pin_min_length;
    CK_ULONG pin_max_length;
    CK_ULONG pin_max_retries;
    unsigned pin_kdf_cost;
    /* Unauthenticated unwrap mechanisms (CBC-PAD, RSA PKCS#1 v1.5) and
     * secret keys that both wrap and encrypt: off by default, they are
     * oracles (SECURITY.md, Mechanism policy and key roles). */
    bool legacy_mechanisms;
    /* yes: the process stays dumpable while logged in (cipher key
     * schedules inside OpenSSL contexts then reach a core). */
    bool allow_core_dumps;
    size_t secure_heap_size; /* bytes, a power of two */
};
/* Reads the configuration file (kt_config_path; the defaults without
 * one). Every key is a row of one table (kt_config_table, read by
 * common/kt_conf.c): a bad value, an unknown key or a key given twice is
 * refused with CKR_ARGUMENTS_BAD and one logged message naming the file,
 * the line, the key and the fix. With no token_dir (none in the file, no
 * XDG_DATA_HOME or HOME) it succeeds with token_dir empty: no slots. */
KT_NODISCARD CK_RV kt_config_load(struct kt_config *cfg);
/* With no token_dir: says so at level info (once the log is open). */
void kt_config_log_no_dir(const struct kt_config *cfg);
/* kt_config_load from path (NULL: the defaults alone). */
KT_NODISCARD CK_RV kt_config_load_from(struct kt_config *cfg, const char *path);
/* The file to read: env ($KEYTIER_CONF) if set and not empty, else
 * system_path if it exists, else NULL. */
const char *kt_config_pick(const char *env, const char *system_path);
/* kt_config_pick($KEYTIER_CONF, the system-wide file, KT_SYSTEM_CONF:
 * SYSCONFDIR/keytier/keytier.conf). */
const char *kt_config_path(void);
KT_NODISCARD CK_RV kt_config_parse_file(struct kt_config *cfg,
                                        const char *path);
void kt_config_defaults(struct kt_config *cfg);
/* secure_heap_size as the configuration file sets it now, without
 * logging (the module's load, before its log is open); the default if the
 * file does not parse (C_Initialize then fails and says why). */
size_t kt_config_heap_size(void);
struct kt_conf_key;
const struct kt_conf_key *kt_config_table(size_t *n);

/* ---- handles (handles.c): counters never reused, looked up in a hash -- */
/* Tables that threads write concurrently (sessions, session objects) are
 * split into shards, each with its own lock on its own cache line. */
#define KT_SHARDS     16
#define KT_CACHE_LINE 64
typedef struct kt_hmap {
    CK_ULONG *keys; /* 0 = empty */
    void **vals;
    size_t cap;
    size_t n;
} kt_hmap;
/* A new handle h with h % KT_SHARDS == shard: each shard counts on its own
 * cache line, so sessions of different shards share no counter. Never
 * reused (the shards' values are disjoint, each counter only grows). */
CK_ULONG kt_handle_next_in(unsigned shard);
/* For objects not owned by a session (token objects): shard 0. */
CK_ULONG kt_handle_next(void);
static inline unsigned kt_handle_shard(CK_ULONG h)
{
    return (unsigned)(h % KT_SHARDS);
}
/* A pause in a short wait on another core (no system call). */
static inline void kt_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}
void kt_hmap_init(kt_hmap *m);
void kt_hmap_free(kt_hmap *m);
KT_NODISCARD CK_RV kt_hmap_put(kt_hmap *m, CK_ULONG key, void *val);
void *kt_hmap_get(const kt_hmap *m, CK_ULONG key);
void *kt_hmap_del(kt_hmap *m, CK_ULONG key);
/* Iterate: for (size_t i = 0; kt_hmap_iter(m, &i, &k, &v);) */
bool kt_hmap_iter(const kt_hmap *m, size_t *pos, CK_ULONG *key, void **val);

/* ---- schema (schema.c): the per-class attribute policy table -------- */
enum kt_kind {
    KT_KIND_BYTES,
    KT_KIND_BOOL,
    KT_KIND_ULONG,
    KT_KIND_DATE,
    KT_KIND_TEMPLATE,
    KT_KIND_MECHS,
};
enum kt_kind kt_schema_kind(CK_ATTRIBUTE_TYPE type);
/* The attribute is valid for objects of this class / key type. */
bool kt_schema_valid(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                     CK_ATTRIBUTE_TYPE type);
/* The value is sealed in the store and never leaves a sensitive or
 * non-extractable object. */
bool kt_schema_secret(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type);
/* legacy_mechanisms (config): the mechanism and key-role policy of the
 * module (kt_mech_flags, key roles) reads it here, set by C_Initialize. */
void kt_schema_legacy_set(bool on);
bool kt_schema_legacy(void);

enum kt_create_how {
    KT_CREATE_OBJECT,   /* C_CreateObject */
    KT_CREATE_GENERATE, /* C_GenerateKey / C_GenerateKeyPair */
    KT_CREATE_UNWRAP,   /* C_UnwrapKey */
    KT_CREATE_DERIVE,   /* C_DeriveKey */
    /* Or'ed into KT_CREATE_DERIVE: the base key is CKA_ALWAYS_SENSITIVE /
     * CKA_NEVER_EXTRACTABLE, which the derived key inherits (PKCS#11
     * v2.40 §4.10) if it is sensitive / not extractable itself. */
    KT_DERIVE_BASE_ALWAYS_SENSITIVE = 0x10,
    KT_DERIVE_BASE_NEVER_EXTRACTABLE = 0x20,
};
#define KT_CREATE_HOW_MASK 0x0f
/* Checks a template for a new object and completes it with defaults and
 * token-maintained attributes. `keygen_mech` is the generating mechanism
 * (CK_UNAVAILABLE_INFORMATION unless generated). is_so: the SO is the
 * logged-in user (CKA_TRUSTED). */
KT_NODISCARD CK_RV kt_schema_create(kt_attrs *a, enum kt_create_how how,
                                    CK_MECHANISM_TYPE keygen_mech, bool is_so);
/* Checks one C_SetAttributeValue / C_CopyObject change against the current
 * object. */
KT_NODISCARD CK_RV kt_schema_modify(const kt_attrs *obj,
                                    const CK_ATTRIBUTE *change, bool copying,
                                    bool is_so);
/* Key roles of secret keys (schema.c): wrap/unwrap and encrypt/decrypt are
 * never combined unless legacy_mechanisms = yes.
 * The attributes give a secret key both roles (and legacy is off). */
bool kt_schema_roles_combined(const kt_attrs *a);
/* A new secret key's template: CKR_TEMPLATE_INCONSISTENT if it asks for
 * both roles; *ask_wrap: it asks for the wrap role. */
KT_NODISCARD CK_RV kt_schema_roles_template(const kt_attrs *a, bool *ask_wrap);
/* After C_SetAttributeValue (copying false) or C_CopyObject applied
 * changes to result: CKR_ATTRIBUTE_READ_ONLY / CKR_TEMPLATE_INCONSISTENT
 * when the result would combine the roles. */
KT_NODISCARD CK_RV kt_schema_roles_changed(const kt_attrs *result,
                                           const kt_attrs *changes,
                                           bool copying);
/* Value checks for key material per key type (lengths). */
KT_NODISCARD CK_RV kt_schema_check_value(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                                         const kt_attrs *a);

/* ---- objects (object.c) --------------------------------------------- */
struct kt_token;

struct kt_object {
    CK_OBJECT_HANDLE handle;
    int64_t id;                /* store row id; 0 for session objects */
    CK_SESSION_HANDLE session; /* owner of a session object */
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE key_type; /* CK_UNAVAILABLE_INFORMATION if not a key */
    bool token;
    bool private_;
    /* Token objects: the MAC over the stored record has been checked with the
     * master key, and secret attributes hold plaintext. */
    bool verified;
    bool unsealed;
    kt_attrs attrs;
    /* Token objects: the stored record as read, kept to re-verify and to
     * reseal after logout. */
    unsigned char *blob;
    size_t blob_len;
    unsigned char mac[32];
    uint64_t gen;
    /* Token objects: the object's term in the manifest (computed with the
     * MAC check), and whether its record failed that check (kept, hidden,
     * so the manifest still accounts for it). */
    unsigned char term[32];
    bool has_term;
    bool refused;
    /* Cached from attrs (kt_object_refresh): CKA_SENSITIVE or not
     * CKA_EXTRACTABLE on a secret or private key. */
    bool sensitive;
    /* Label index (objindex.c): objects whose labels hash alike, doubly
     * linked so removal is O(1). */
    CK_ULONG label_hash;
    struct kt_object *label_prev;
    struct kt_object *label_next;
    /* Shared copy of attrs for key snapshots; dropped (under the write
     * lock) whenever attrs change. */
    _Atomic(struct kt_shared_attrs *) shared;
    /* Parsed key of asymmetric ops (an EVP_PKEY *, owned; see
     * kt_object_set_pkey). Dropped when the object changes or the secret
     * attributes are resealed at logout. */
    void *pkey;
    /* Family cache (see struct kt_cache in mech.h), dropped like pkey. */
    struct kt_cache *cache;
    /* Session objects: a key snapshot was taken of it (kt_key_snapshot,
     * under the token's `lock`), so a session may keep it cached and its
     * destruction sweeps the sessions (kt_session_forget_keys). */
    atomic_bool snapshotted;
};
void kt_object_free(struct kt_object *o);
/* Recomputes the cached fields (class, key type, token, private,
 * sensitive) from attrs. */
void kt_object_refresh(struct kt_object *o);
/* attrs changed (lock held for writing): drop the shared copy. */
void kt_object_attrs_changed(struct kt_object *o);
/* Builds a new object taking the attributes (attrs is left empty). */
KT_NODISCARD CK_RV kt_object_new_take(kt_attrs *attrs, struct kt_object **out);
/* Builds a new object from completed attributes. */
KT_NODISCARD CK_RV kt_object_new(const kt_attrs *attrs, struct kt_object **out);

/* ---- tokens (token.c objindex.c tokensync.c tokenseal.c tokenwrite.c
 *      tokeninit.c, login.c) ------------------------------------------- */
/* A PIN record (store/pin.c): the role's X25519 key pair, its private key
 * sealed (AES-256-GCM: nonce | ct | tag) under a key derived from the PIN
 * with scrypt, the verifier, the master key boxed to the public key
 * (ephemeral public key | sealed master key), and bind: a MAC under a key
 * derived from the master key over the role, serial, public key and the
 * token's integrity key. */
#define KT_PIN_SEALED_LEN (12 + 32 + 16)
struct kt_pin {
    bool present;
    unsigned char salt[16];
    unsigned cost;
    unsigned char verifier[32];
    unsigned char priv[KT_PIN_SEALED_LEN];
    unsigned char pub[32];
    unsigned char box[32 + 12 + KT_MASTER_KEY_LEN + 16];
    unsigned char bind[32];
    CK_ULONG failures;
};

/* The token-wide object manifest (DESIGN.md §1 Storage): count and acc =
 * XOR of kt_seal_manifest_term(id, gen, record mac) over the live object
 * rows, and a write counter, under one MAC; written in the transaction of
 * every object write. */
struct kt_manifest {
    bool present;
    int64_t count;
    int64_t ctr;
    unsigned char acc[32];
    /* kt_seal_pins_digest of both PIN records: every PIN write (a new
     * PIN, each charged try, each reset) rewrites the manifest. */
    unsigned char pins[32];
    unsigned char mac[32];
};

/* Keys a store write needs: the record MAC key and the manifest key (both
 * derived from the token's integrity key), and the lowest manifest write
 * counter the writer accepts to write over (a rolled-back file is never
 * written over: that would carry it past <serial>.seq). */
struct kt_store_keys {
    unsigned char mac[32];
    unsigned char manifest[32];
    int64_t min_ctr;
    /* Object writes: the digest of the PIN records the writer last read.
     * A PIN change in another process since (maybe a new master key) makes
     * the write return KT_CKR_RETRY: the writer reloads and seals again. */
    bool check_pins;
    unsigned char pins[32];
};

/* Session objects of a token, in the shard of the session that made them
 * (their handles are that shard's: kt_handle_shard(handle)). The shard's
 * lock guards its maps. Creating a session object takes only that lock,
 * never the token's `lock`, so sessions of different shards never wait on
 * or write to a common lock. Looking one up takes the token's `lock` (read)
 * and the shard's lock around the map access; changing or removing one
 * takes the token's `lock` for writing and then the shard's lock. An object
 * found under the token's `lock` stays valid until that lock is released. */
struct kt_obj_shard {
    _Alignas(KT_CACHE_LINE) pthread_mutex_t lock;
    kt_hmap objects; /* handle -> struct kt_object (session objects) */
    kt_hmap labels;  /* label hash -> first session object of a chain */
    /* Destroyed session objects not yet freed (waiting for lookups that
     * may hold them), chained through label_prev / label_next: a fork
     * child wipes them with the others (kt_token_fork_wipe_dying). */
    struct kt_object *dying;
};

struct kt_token {
    CK_SLOT_ID slot_id;
    bool initialized;
    char path[PATH_MAX];
    char label[KT_LABEL_LEN];
    char serial[KT_SERIAL_LEN];
    /* Serialises use of the database connection. Taken before `lock`,
     * never after it. */
    pthread_mutex_t dblock;
    struct sqlite3 *db;
    int64_t data_version;
    int64_t seen_gen;
    bool loaded;
    /* Guards objects, login state, master key and PIN records. Held only
     * for table work, never during cryptography or I/O. */
    pthread_rwlock_t lock;
    kt_hmap objects; /* handle -> token object (session objects: shards) */
    kt_hmap by_id;   /* store id -> struct kt_object */
    kt_hmap labels;  /* label hash -> first token object of a chain */
    struct sqlite3_stmt *dv_stmt; /* PRAGMA data_version, kept prepared */
    /* Written under `lock` (write); atomic so that a session-object
     * creation can check it under its shard's lock alone. */
    _Atomic CK_USER_TYPE login;
    unsigned char mk[KT_MASTER_KEY_LEN];
    /* From the integrity key (<serial>.key), read when the token is opened:
     * record MACs, the manifest (PIN records included) and <serial>.seq are
     * checked with these whether or not anyone is logged in. key_fd stays
     * open (flock serialises .seq updates); key_ino notices a new key
     * written by a re-initialisation in another process. */
    unsigned char ik[32];
    unsigned char mac_key[32];
    unsigned char man_key[32];
    unsigned char seq_key[32];
    int key_fd;
    uint64_t key_ino;
    /* The counter <serial>.seq held at the last reload (-1: missing or not
     * authentic, the token is refused), and the reason. */
    int64_t seq_ctr;
    const char *seq_why;
    /* The master key this process holds no longer opens: another process
     * changed a PIN (new master key); logged out at the next call. */
    bool mk_stale;
    bool mk_loaded;
    /* The manifest as last read or written (with the rows it covers), the
     * highest authentic write counter seen, and the verdict of the last
     * check: a token whose object set does not match is refused whole. */
    struct kt_manifest man;
    int64_t man_ctr_seen;
    bool man_dirty; /* rows or manifest reloaded since the last check */
    bool man_stale; /* our write followed another process's: wait for sync */
    bool man_refused;
    struct kt_pin pins[2]; /* [0] SO, [1] user */
    /* Under `lock`: a role whose right PIN was seen but whose retry counter
     * could not be reset (the write failed): the reset is retried before
     * the next try is charged, on the record with this salt. */
    bool reset_due[2];
    unsigned char reset_salt[2][16];
    /* Under dblock: a sync installed objects whose sealed attributes could
     * not be opened for want of memory; the next sync opens them. */
    bool unseal_due;
    /* Under kt_g.lock */
    bool busy; /* C_InitToken runs its KDF and writes with kt_g.lock free */
    CK_ULONG session_count;
    CK_ULONG rw_session_count;
    /* tokenlock.c. Under kt_g.lock: the descriptor holding flock LOCK_SH on
     * `<serial>.lock` while session_count > 0 (-1: none). */
    int lock_fd;
    /* Under dblock: the store's epoch as last read (C_InitToken draws a
     * new one), and that a sync found another one (the sessions are then
     * closed once dblock is released). */
    char epoch[KT_EPOCH_LEN];
    bool reinit_seen;
    /* Coarse monotonic ms after which a call on a session syncs. */
    atomic_llong next_check_ms;
    /* Under `lock`: this token's login keeps the process non-dumpable. */
    bool nodump;
    /* Bumped by kt_token_wrlock: every change under `lock` that can affect
     * an existing object's attributes or visibility, and the removal of a
     * token object, takes it that way. A session's cached key snapshot
     * (struct kt_session.key_cache) is valid while this has not moved.
     * Write acquisitions that change none of that take `lock` directly:
     * installing a parsed key or family cache (object.c) and waiting out
     * the lookups of a destroyed session object, whose destruction reaches
     * the snapshots through kt_session_forget_keys instead. */
    atomic_ulong objects_seq;
    struct kt_obj_shard shards[KT_SHARDS];
};

static inline void kt_token_wrlock(struct kt_token *t)
{
    pthread_rwlock_wrlock(&t->lock);
    atomic_fetch_add(&t->objects_seq, 1);
}

#define KT_PIN_SO   0
#define KT_PIN_USER 1

/* Visibility of an object to the application in its current login state. */
bool kt_token_visible(const struct kt_token *t, const struct kt_object *o);
/* Label index lookup (lock held): first object whose label hashes alike, 0
 * for an empty label (not indexed). */
CK_ULONG kt_label_hash(const void *label, size_t len);
/* Looks an object handle up (token lock held by the caller), visible
 * objects only / any object. */
struct kt_object *kt_token_object(struct kt_token *t, CK_OBJECT_HANDLE h);
struct kt_object *kt_token_get(struct kt_token *t, CK_OBJECT_HANDLE h);
KT_NODISCARD CK_RV kt_token_open(const char *path, CK_SLOT_ID slot,
                                 struct kt_token **out);
struct kt_token *kt_token_new_free(CK_SLOT_ID slot);
void kt_token_free(struct kt_token *t);
/* Notices other processes' commits (PRAGMA data_version) and reloads only
 * changed rows. A re-initialisation by another process (a new epoch) closes
 * this process's sessions on the token: CKR_SESSION_CLOSED if there were
 * any. No lock held by the caller. */
KT_NODISCARD CK_RV kt_token_sync(struct kt_token *t);

/* ---- C_InitToken against other processes (tokenlock.c) -------------- */
/* kt_g.lock held, session count going from 0 to 1: flock LOCK_SH on the
 * token's lock file. KT_CKR_RETRY while another process re-initialises it
 * (release kt_g.lock, kt_tokenlock_wait, try again). */
KT_NODISCARD CK_RV kt_tokenlock_shared(struct kt_token *t);
KT_NODISCARD CK_RV kt_tokenlock_wait(const struct kt_token *t);
/* kt_g.lock held, session count back to 0 (or C_Finalize): closes it. */
void kt_tokenlock_release(struct kt_token *t);
/* Fork child: closes the inherited descriptor (never LOCK_UN: the parent's
 * lock stays). */
void kt_tokenlock_forget(struct kt_token *t);
/* kt_token_init under LOCK_EX | LOCK_NB (CKR_SESSION_EXISTS while another
 * process holds sessions). */
KT_NODISCARD CK_RV kt_tokenlock_init_token(struct kt_token *t, const char *dir,
                                           const unsigned char *so_pin,
                                           CK_ULONG len,
                                           const unsigned char *label);
/* Whether this call should sync (at most once per period, no system
 * call). */
bool kt_token_sync_due(struct kt_token *t);
/* A sync found a new epoch: closes this process's sessions on t. */
KT_NODISCARD CK_RV kt_token_reinit_seen(struct kt_token *t);
KT_NODISCARD CK_RV kt_token_init(struct kt_token *t, const char *dir,
                                 const unsigned char *so_pin, CK_ULONG len,
                                 const unsigned char *label);
/* Inserts a completed object: token objects are sealed, MACed and committed
 * before they become visible. Takes ownership of o. A session object
 * (o->session set) belongs to owner and goes into its shard: refused with
 * CKR_SESSION_CLOSED once the owner is closing, and a private one with
 * CKR_USER_NOT_LOGGED_IN after a logout (both checked under the shard's
 * lock, which the close and the logout take after changing those). */
struct kt_session;
KT_NODISCARD CK_RV kt_token_add_object(struct kt_token *t,
                                       const struct kt_session *owner,
                                       struct kt_object *o,
                                       CK_OBJECT_HANDLE *handle);
/* Replaces the attributes of an object (after schema checks) if it is
 * still at generation expect_gen (compare-and-swap, in memory and in the
 * store); KT_CKR_RETRY otherwise. */
KT_NODISCARD CK_RV kt_token_update_object(struct kt_token *t,
                                          CK_OBJECT_HANDLE h,
                                          const kt_attrs *attrs,
                                          uint64_t expect_gen);
/* Changes a token object inside one store write transaction: change gets
 * the current attributes (from the store, verified and unsealed) and
 * edits them in place; the result is sealed, written and installed. */
typedef CK_RV (*kt_change_fn)(void *ctx, kt_attrs *attrs);
KT_NODISCARD CK_RV kt_token_modify_object(struct kt_token *t,
                                          CK_OBJECT_HANDLE h,
                                          kt_change_fn change, void *ctx);
KT_NODISCARD CK_RV kt_token_destroy_object(struct kt_token *t,
                                           CK_OBJECT_HANDLE h);
/* C_DestroyObject of a session object, without the store's lock and
 * without moving objects_seq: removed from its shard under the token's
 * `lock` (read) and the shard's lock, then freed (wiped) once no lookup can
 * still hold it. KT_CKR_RETRY if h is no session object (a token object:
 * kt_token_destroy_object). *snapshotted: a session may cache its
 * snapshot (the caller then calls kt_session_forget_keys). */
KT_NODISCARD CK_RV kt_token_destroy_session_object(struct kt_token *t,
                                                   CK_OBJECT_HANDLE h,
                                                   bool *snapshotted);
/* Fork child (single-threaded): frees (wipes) the session objects whose
 * destruction was under way in another thread of the parent. */
void kt_token_fork_wipe_dying(struct kt_token *t);
void kt_token_destroy_session_objects(struct kt_token *t, CK_SESSION_HANDLE s);
void kt_token_token_info(struct kt_token *t, CK_TOKEN_INFO *info);

/* CKU_CONTEXT_SPECIFIC (login.c, opstate.c) */
struct kt_session;
KT_NODISCARD CK_RV kt_login_context(struct kt_token *t,
                                    const unsigned char *pin, CK_ULONG len);
KT_NODISCARD CK_RV kt_op_context_login(struct kt_session *s,
                                       const unsigned char *pin, CK_ULONG len);
KT_NODISCARD CK_RV kt_login(struct kt_token *t, CK_USER_TYPE user,
                            const unsigned char *pin, CK_ULONG len);
void kt_logout(struct kt_token *t);
KT_NODISCARD CK_RV kt_login_init_pin(struct kt_token *t,
                                     const unsigned char *pin, CK_ULONG len);
KT_NODISCARD CK_RV kt_login_set_pin(struct kt_token *t, int which,
                                    const unsigned char *old_pin,
                                    CK_ULONG old_len,
                                    const unsigned char *new_pin,
                                    CK_ULONG new_len);
KT_NODISCARD CK_RV kt_login_check_pin_len(CK_ULONG len);
/* PIN records (store/pin.c). Each is bound to its role (KT_PIN_SO /
 * KT_PIN_USER) and to the token serial: a record moved to another role or
 * token does not open. kt_pin_make: a new key pair, its private key sealed
 * under the PIN (scrypt; no master key yet: kt_pin_box adds it). */
KT_NODISCARD CK_RV kt_pin_make(struct kt_pin *p, const unsigned char *pin,
                               CK_ULONG len, unsigned cost, int role,
                               const char serial[KT_SERIAL_LEN]);
/* Boxes mk to the record's public key and binds the public key and the
 * integrity key ik to mk (p->bind). */
KT_NODISCARD CK_RV kt_pin_box(struct kt_pin *p, const unsigned char mk[32],
                              int role, const char serial[KT_SERIAL_LEN],
                              const unsigned char ik[32]);
/* CKR_OK if p->bind was made with mk for this public key and ik. */
KT_NODISCARD CK_RV kt_pin_check_bind(const struct kt_pin *p,
                                     const unsigned char mk[32], int role,
                                     const char serial[KT_SERIAL_LEN],
                                     const unsigned char ik[32]);
/* Counter resets left due by a failed write, written now if they can be
 * (login.c; no lock held). */
void kt_login_retry_resets(struct kt_token *t);
/* PIN -> key -> private key -> box -> mk (no lock held): CKR_PIN_INCORRECT,
 * CKR_DEVICE_ERROR for a record that does not open, CKR_HOST_MEMORY when
 * memory ran out (the record is not judged). */
KT_NODISCARD CK_RV kt_pin_open(const struct kt_pin *p, const unsigned char *pin,
                               CK_ULONG len, unsigned char mk[32], int role,
                               const char serial[KT_SERIAL_LEN]);
KT_NODISCARD CK_RV kt_pin_open_box(const struct kt_pin *p,
                                   const unsigned char priv[32],
                                   unsigned char mk[32], int role,
                                   const char serial[KT_SERIAL_LEN]);
/* A PIN write (tokenwrite.c): kt_store_pins_update with the token's keys
 * under its database lock; the committed records and manifest are adopted and
 * <serial>.seq advanced. fn gets the stored records (authentic) to change;
 * with reseal (a struct kt_store_reseal), every object is resealed under a
 * new master key in the same transaction and the objects are reloaded. */
typedef CK_RV (*kt_pins_fn)(void *ctx, struct kt_pin pins[2]);
struct kt_store_reseal;
KT_NODISCARD CK_RV kt_token_pins_write(struct kt_token *t, kt_pins_fn fn,
                                       void *ctx,
                                       const struct kt_store_reseal *reseal);
/* The logged-in state of the token dropped (lock held for writing): the
 * master key wiped, private objects forgotten, secrets resealed. */
void kt_login_drop_locked(struct kt_token *t);
/* Checks a PIN, charging the retry counter first (login.c). */
KT_NODISCARD CK_RV kt_login_verify_pin(struct kt_token *t, int which,
                                       const unsigned char *pin, CK_ULONG len,
                                       unsigned char mk[32]);
/* With the master key loaded: check MACs and unseal (lock held for
 * writing). */
KT_NODISCARD CK_RV kt_token_unseal_all(struct kt_token *t);
void kt_token_reseal_all(struct kt_token *t);
/* With the master key loaded: verifies and unseals every token object not
 * yet unsealed, the cryptography outside the token lock (takes it). */
KT_NODISCARD CK_RV kt_token_unseal_pending(struct kt_token *t);
/* At logout (lock held for writing): private session objects are
 * destroyed, private token objects get new handles. */
void kt_token_forget_private(struct kt_token *t);
KT_NODISCARD CK_RV kt_object_unseal(struct kt_token *t, struct kt_object *o);

/* ---- sessions (session.c) ------------------------------------------- */
#include "mech.h"

struct kt_find {
    bool active;
    CK_OBJECT_HANDLE *handles;
    size_t n;
    size_t pos;
};

/* The last key a session wrapped or unwrapped with, kept while the token's
 * objects_seq has not moved: C_WrapKey / C_UnwrapKey with the same key then
 * take neither the token lock nor a reference shared with other threads.
 * Guarded by the session's lock; dropped at logout, when the key is
 * destroyed, and at close (kt_session_forget_keys). */
struct kt_key_cache {
    bool valid;
    CK_OBJECT_HANDLE handle;
    CK_ATTRIBUTE_TYPE usage;
    unsigned long seq;
    struct kt_key key;
};

struct kt_session {
    /* Sessions start on their own cache line: the lock and the reference
     * count every call writes never share one with another session (two
     * sessions opened one after the other would otherwise be neighbours). */
    _Alignas(KT_CACHE_LINE) CK_SESSION_HANDLE handle;
    struct kt_token *token;
    CK_SLOT_ID slot;
    CK_FLAGS flags;
    atomic_int refs;
    /* Set before the session's objects are destroyed at close. */
    atomic_bool closed;
    /* Guards this session's operation state; only this session's own calls
     * take it, so independent sessions never wait on each other. */
    pthread_mutex_t lock;
    struct kt_op ops[KT_OP_KIND_MAX];
    struct kt_find find;
    struct kt_key_cache key_cache;
    /* The handle key_cache may hold (0: none), published before the
     * snapshot is taken: kt_session_forget_keys skips, without taking
     * `lock`, the sessions that cannot hold the key it drops. */
    atomic_ulong cached_key;
    /* Cipher contexts kept for C_WrapKey [0] / C_UnwrapKey [1] with the
     * cached key, and for the check value of unwrapped AES keys (keyed
     * with zeros between uses); guarded by `lock`, dropped with key_cache. */
    struct kt_cipher *wrap_ciphers[2];
    struct kt_cipher *check_cipher;
    /* Message-based encryption [0] and decryption [1] (msgcrypt.c), or
     * NULL; guarded by `lock`. */
    struct kt_msg *msg[2];
};

KT_NODISCARD CK_RV kt_session_ref(CK_SESSION_HANDLE h, struct kt_session **out);
void kt_session_unref(struct kt_session *s);
/* The checks an entry point makes before it acts on a session, in the order
 * PKCS#11 callers see them: CKR_CRYPTOKI_NOT_INITIALIZED, then
 * CKR_ARGUMENTS_BAD when !args_ok, then CKR_SESSION_HANDLE_INVALID. Shared so
 * every entry point reports the same error for the same bad call. */
KT_NODISCARD CK_RV kt_session_enter(CK_SESSION_HANDLE h, bool args_ok,
                                    struct kt_session **s);
/* An entry point the module does not offer (dual-function, message-based
 * signing): the handle is still checked, so a bad one is reported as such
 * before CKR_FUNCTION_NOT_SUPPORTED; traced as fn. */
KT_NODISCARD CK_RV kt_not_offered(const char *fn, CK_SESSION_HANDLE h);
KT_NODISCARD CK_RV kt_session_open(CK_SLOT_ID slot, CK_FLAGS flags,
                                   CK_SESSION_HANDLE *out);
KT_NODISCARD CK_RV kt_session_close(CK_SESSION_HANDLE h);
KT_NODISCARD CK_RV kt_session_close_all(CK_SLOT_ID slot);
CK_STATE kt_session_state(const struct kt_session *s);
bool kt_session_rw(const struct kt_session *s);
void kt_session_reset_ops(struct kt_session *s);
/* C_SessionCancel: ends the operations named by mechanism flags
 * (CKF_ENCRYPT, CKF_DECRYPT, CKF_SIGN, CKF_VERIFY, CKF_DIGEST, and of
 * PKCS#11 3.0 CKF_FIND_OBJECTS, CKF_MESSAGE_ENCRYPT, CKF_MESSAGE_DECRYPT);
 * those not active are left as they are. */
void kt_session_cancel(struct kt_session *s, CK_FLAGS flags);

/* ---- message-based encryption (msgcrypt.c; PKCS#11 3.0 §5.15-5.16) --- */
/* CKM_AES_GCM, one operation per direction (enc: encrypt) per session;
 * param is a CK_GCM_MESSAGE_PARAMS per message. The session's lock is
 * taken inside; kt_msg_release: with it held (or the session unreachable). */
KT_NODISCARD CK_RV kt_msg_init(struct kt_session *s, bool enc,
                               const CK_MECHANISM *mech, CK_OBJECT_HANDLE key);
KT_NODISCARD CK_RV kt_msg_oneshot(struct kt_session *s, bool enc,
                                  const void *param, CK_ULONG param_len,
                                  const unsigned char *aad, CK_ULONG aad_len,
                                  const unsigned char *in, CK_ULONG in_len,
                                  unsigned char *out, CK_ULONG *out_len);
KT_NODISCARD CK_RV kt_msg_begin(struct kt_session *s, bool enc,
                                const void *param, CK_ULONG param_len,
                                const unsigned char *aad, CK_ULONG aad_len);
KT_NODISCARD CK_RV kt_msg_next(struct kt_session *s, bool enc,
                               const void *param, CK_ULONG param_len,
                               const unsigned char *in, CK_ULONG in_len,
                               unsigned char *out, CK_ULONG *out_len,
                               CK_FLAGS flags);
KT_NODISCARD CK_RV kt_msg_final(struct kt_session *s, bool enc);
void kt_msg_release(struct kt_session *s, bool enc);
/* The session's snapshot of key h for usage (see struct kt_key_cache),
 * taken again only when the token's objects changed; valid while the
 * session's lock (held by the caller) is. */
KT_NODISCARD CK_RV kt_session_key(struct kt_session *s, CK_OBJECT_HANDLE h,
                                  CK_ATTRIBUTE_TYPE usage,
                                  const struct kt_key **out);
/* Drops the cached key snapshots of token t's sessions: all of them (h =
 * 0) or those of object h. No token or session lock held by the caller. */
void kt_session_forget_keys(struct kt_token *t, CK_OBJECT_HANDLE h);
/* The cached key snapshot and kept cipher contexts, wiped and freed (the
 * session's lock held, or the session unreachable: fork child). */
void kt_session_drop_caches(struct kt_session *s);

/* ---- object operations behind the C_* object functions (object.c) ---- */
/* Completes (schema), generates (gen != NULL), checks and stores a new
 * object for session s. */
KT_NODISCARD CK_RV kt_object_create(struct kt_session *s, kt_attrs *attrs,
                                    enum kt_create_how how,
                                    const struct kt_mech *gen,
                                    const CK_MECHANISM *mech,
                                    CK_OBJECT_HANDLE *out);
KT_NODISCARD CK_RV kt_object_get(struct kt_session *s, CK_OBJECT_HANDLE h,
                                 CK_ATTRIBUTE *t, CK_ULONG n);
KT_NODISCARD CK_RV kt_object_set(struct kt_session *s, CK_OBJECT_HANDLE h,
                                 const CK_ATTRIBUTE *t, CK_ULONG n);
KT_NODISCARD CK_RV kt_object_copy(struct kt_session *s, CK_OBJECT_HANDLE h,
                                  const CK_ATTRIBUTE *t, CK_ULONG n,
                                  CK_OBJECT_HANDLE *out);
KT_NODISCARD CK_RV kt_object_destroy(struct kt_session *s, CK_OBJECT_HANDLE h);
KT_NODISCARD CK_RV kt_object_size(struct kt_session *s, CK_OBJECT_HANDLE h,
                                  CK_ULONG *size);
KT_NODISCARD CK_RV kt_find_init(struct kt_session *s, const CK_ATTRIBUTE *t,
                                CK_ULONG n);
/* Snapshot of a key for an operation: usage is the attribute that must be
 * CK_TRUE (CKA_ENCRYPT...), or 0. CKR_KEY_HANDLE_INVALID,
 * CKR_KEY_FUNCTION_NOT_PERMITTED, CKR_USER_NOT_LOGGED_IN. */
/* Caches a parsed key on the object (takes ownership of pkey, an EVP_PKEY
 * *, unless the object already has one or is gone: then pkey is freed). */
void kt_object_set_pkey(struct kt_token *t, CK_OBJECT_HANDLE h, void *pkey);
/* Installs a family cache on the object (takes the caller's reference;
 * dropped instead if the object already has one, is gone, or is sealed).
 * Caches are dropped whenever the object's attributes change and at
 * logout, like the cached EVP_PKEY. */
void kt_object_set_cache(struct kt_token *t, CK_OBJECT_HANDLE h,
                         struct kt_cache *cache);
KT_NODISCARD CK_RV kt_key_snapshot(struct kt_token *t, CK_OBJECT_HANDLE h,
                                   CK_ATTRIBUTE_TYPE usage, struct kt_key *key);

/* ---- session operation state (opstate.c) --------------------------- */
KT_NODISCARD CK_RV kt_op_begin(struct kt_session *s, enum kt_op_kind kind,
                               const CK_MECHANISM *mech, CK_OBJECT_HANDLE key);
KT_NODISCARD CK_RV kt_op_oneshot(struct kt_session *s, enum kt_op_kind kind,
                                 const unsigned char *in, CK_ULONG in_len,
                                 unsigned char *out, CK_ULONG *out_len);
KT_NODISCARD CK_RV kt_op_update(struct kt_session *s, enum kt_op_kind kind,
                                const unsigned char *in, CK_ULONG in_len,
                                unsigned char *out, CK_ULONG *out_len);
KT_NODISCARD CK_RV kt_op_finish(struct kt_session *s, enum kt_op_kind kind,
                                unsigned char *out, CK_ULONG *out_len);
/* The operation of this kind is active in the session. */
bool kt_op_active(struct kt_session *s, enum kt_op_kind kind);
/* Ends an operation after an error of the C_* layer (§5.2). */
void kt_op_abort(struct kt_session *s, enum kt_op_kind kind);
/* The session of a C_Encrypt/Decrypt/Sign/Verify/Digest(Update/Final)
 * call, referenced into *s. args_ok false (the C_* layer found an argument
 * bad): the session's operation of that kind ends (§5.2: a failed call
 * ends it) and the result is CKR_ARGUMENTS_BAD. */
KT_NODISCARD CK_RV kt_op_session(CK_SESSION_HANDLE h, enum kt_op_kind kind,
                                 bool args_ok, struct kt_session **s);
KT_NODISCARD CK_RV kt_op_verify_oneshot(struct kt_session *s,
                                        const unsigned char *data, CK_ULONG len,
                                        const unsigned char *sig,
                                        CK_ULONG sig_len);
KT_NODISCARD CK_RV kt_op_verify_finish(struct kt_session *s,
                                       const unsigned char *sig,
                                       CK_ULONG sig_len);
/* Checks a key against a mechanism row (type, size, allowed mechanisms). */
KT_NODISCARD CK_RV kt_op_check_key(const struct kt_mech *m,
                                   const struct kt_key *key);
KT_NODISCARD CK_RV kt_keys_wrap(struct kt_session *s, const CK_MECHANISM *mech,
                                CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                                unsigned char *out, CK_ULONG *out_len);
KT_NODISCARD CK_RV kt_keys_unwrap(struct kt_session *s,
                                  const CK_MECHANISM *mech,
                                  CK_OBJECT_HANDLE unwrapping,
                                  const unsigned char *wrapped, CK_ULONG len,
                                  const CK_ATTRIBUTE *t, CK_ULONG n,
                                  CK_OBJECT_HANDLE *out);
/* Forces the base/unwrapping key's CKA_UNWRAP_TEMPLATE or
 * CKA_DERIVE_TEMPLATE (which) on the new key's attributes a. */
/* C_DeriveKey from a secret key (derive.c): HKDF and *_ENCRYPT_DATA. */
bool kt_derive_symmetric(CK_MECHANISM_TYPE m);
KT_NODISCARD CK_RV kt_keys_derive_sym(struct kt_session *s,
                                      const CK_MECHANISM *mech,
                                      CK_OBJECT_HANDLE base,
                                      const CK_ATTRIBUTE *t, CK_ULONG n,
                                      CK_OBJECT_HANDLE *out);
KT_NODISCARD CK_RV kt_keys_apply_template(const struct kt_key *k,
                                          CK_ATTRIBUTE_TYPE which, kt_attrs *a);
/* Public session objects (any session makes and uses them without login)
 * never reach private ones: true when k is a public session secret or
 * private key, not CKA_TRUSTED, and the key a describes is private
 * (CKA_PRIVATE true or, for a new secret or private key, absent). What such
 * a key wraps, unwraps or derives, a session without login could unwrap or
 * derive again into a public key it can read: C_WrapKey refuses it
 * (CKR_KEY_NOT_WRAPPABLE), C_UnwrapKey and C_DeriveKey too
 * (CKR_TEMPLATE_INCONSISTENT). */
bool kt_keys_public_to_private(const struct kt_key *k, const kt_attrs *a);
KT_NODISCARD CK_RV kt_keys_generate(struct kt_session *s,
                                    const CK_MECHANISM *mech,
                                    const CK_ATTRIBUTE *t, CK_ULONG n,
                                    CK_OBJECT_HANDLE *out);

/* ---- the module (p11_general.c) ------------------------------------- */
struct kt_slot {
    CK_SLOT_ID id;
    struct kt_token *token;
};

/* One shard of the session table: a session lives in shard
 * kt_handle_shard(handle). Sessions are spread over the shards in turn, so
 * threads on different sessions take different locks on every call. */
struct kt_sess_shard {
    _Alignas(KT_CACHE_LINE) pthread_rwlock_t lock;
    kt_hmap sessions;
};

struct kt_module {
    pthread_mutex_t lock; /* slot and session tables */
    /* Set and cleared with every session shard locked for writing. */
    atomic_bool initialized;
    pid_t pid;
    struct kt_config cfg;
    struct kt_slot *slots;
    size_t n_slots;
    CK_SLOT_ID next_free_id;
    /* The session table has its own locks (one per shard) so that looking a
     * session up (every call) never waits on slot work; taken after `lock`,
     * never before, and in shard order when several are held. */
    struct kt_sess_shard sess[KT_SHARDS];
    atomic_uint sess_next_shard;
};
extern struct kt_module kt_g;

/* CKR_CRYPTOKI_NOT_INITIALIZED unless C_Initialize ran in this process. */
KT_NODISCARD CK_RV kt_check_init(void);
/* Slot lookup and the token directory scan (slots.c; kt_g.lock held). */
struct kt_token *kt_slot_token(CK_SLOT_ID id);
KT_NODISCARD CK_RV kt_slots_scan(void);
void kt_slots_free(void);
/* A new free slot after C_InitToken consumed the last one. */
KT_NODISCARD CK_RV kt_slots_add_free(void);

/* Trace of one entry point's result at debug level. */
KT_NODISCARD CK_RV kt_trace(const char *fn, CK_RV rv);

#endif
