/*
 * store.h - the metadata store behind libkeytier: DEPs with their wrapped
 * DEP-key copies, and tier keys wrapped by their parents.  Roots are never
 * here.  The interface is small so that a PostgreSQL implementation can sit
 * beside the SQLite one: store_stmt.c and one store_<family>.c per table
 * family (docs/DESIGN.md §2 Store).
 *
 * Every function that changes several rows does it in one transaction; a
 * failed call leaves the old state.
 */
#ifndef KT_STORE_H
#define KT_STORE_H

#include "kt_base.h"

#define KT_WRAPPED_MAX       1024 /* RSA-8192 OAEP output fits */
#define KT_TIER_WRAPPED_SIZE 60   /* nonce 12 + key 32 + tag 16 */

struct kt_store;

struct kt_root_rec {
    char uri[KEYTIER_URI_MAX];
    char mech[32];
    uint8_t wrapped[KT_WRAPPED_MAX];
    size_t wrapped_len;
    /* What uri resolved to when the copy was made (kt_root_identity): the
     * key compared across DEPs whatever URI names it; "" (NULL in the
     * store) for copies made before identities were recorded. */
    char ident[KEYTIER_URI_MAX];
};

struct kt_dep_rec {
    char dep_id[KEYTIER_ID_SIZE];
    char policy_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    int state; /* keytier_dep_state */
    int64_t created;
    uint8_t check[32];           /* DEP key check value */
    struct kt_root_rec roots[3]; /* KEYTIER_ROOT_A, _B, _AVAIL */
    /* "" (stored as NULL): the DEP has no name. */
    char name[KEYTIER_DEP_NAME_MAX + 1];
    /* "" (NULL): no region (mail), or a files DEP made before regions
     * (the default region). */
    char region[KEYTIER_REGION_MAX + 1];
};

struct kt_key_rec {
    char key_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    char dep_id[KEYTIER_ID_SIZE];
    char parent_id[KEYTIER_ID_SIZE]; /* DEP id for level 1 */
    char name[KEYTIER_NAME_MAX + 1];
    unsigned level;
    int64_t created;
    uint8_t wrapped[KT_TIER_WRAPPED_SIZE];
    /* The tenant intermediate key: its own id for a TIK, the TIK above it
     * for a site or blob key, "" (NULL) for keys under no TIK. */
    char tik_id[KEYTIER_ID_SIZE];
};

/* Opens (creating and migrating as needed) the store at path; parent
 * directories are created 0700, the file 0600. */
/* path: a SQLite file, or a PostgreSQL connection string (postgresql://,
 * postgres:// or libpq's key=value form) without a password, which comes
 * from password_file (NULL: none; a 0600 file of the caller) or libpq's
 * PGPASSWORD or PGPASSFILE. */
KT_NODISCARD keytier_err kt_store_open(const char *path, struct kt_store **out);
KT_NODISCARD keytier_err kt_store_open_with(const char *path,
                                            const char *password_file,
                                            struct kt_store **out);
void kt_store_close(struct kt_store *st);
/* Notifications of cache invalidations from every node (PostgreSQL:
 * LISTEN on a connection of its own; the rows are still read by
 * kt_store_inval_read).  *out is NULL on SQLite: nothing to listen to. */
struct kt_store_listener;
KT_NODISCARD keytier_err kt_store_listen_open(struct kt_store *st,
                                              struct kt_store_listener **out);
/* Waits up to ms; true when invalidations may have been recorded since
 * the last call (a notification came, or the connection was lost and
 * made again), so the caller syncs at once.  A lost connection is made
 * again here. */
bool kt_store_listen_wait(struct kt_store_listener *l, unsigned ms);
void kt_store_listen_close(struct kt_store_listener *l);
/* The schema version of an open store (for tests of migrations). */
int kt_store_schema_version(struct kt_store *st);
int kt_store_schema_latest(void);

/* Inserts a DEP and its three wrapped copies in one transaction, refusing
 * (KEYTIER_E_DEP_LIMIT) when the tenant already has `limit` DEPs for the
 * workload - checked inside the transaction, so several processes cannot
 * exceed it together. */
KT_NODISCARD keytier_err kt_store_dep_insert(struct kt_store *st,
                                             const struct kt_dep_rec *dep,
                                             unsigned limit);
/* kt_store_dep_insert for a files DEP: also refuses (KEYTIER_E_DEP_REGION)
 * when the tenant has another DEP for the workload in dep->region ("":
 * KEYTIER_REGION_DEFAULT) that is not disabled, purged or offboarded,
 * leaving out `replaces` (NULL: none; recovery), and inserts tik (NULL:
 * none), the DEP's tenant intermediate key, in the same transaction. */
KT_NODISCARD keytier_err kt_store_dep_insert_files(struct kt_store *st,
                                                   const struct kt_dep_rec *dep,
                                                   unsigned limit,
                                                   const struct kt_key_rec *tik,
                                                   const char *replaces);
/* The tenant's DEP of the workload in region that is in use (not
 * disabled, purged or offboarded; leaving out skip, may be NULL) into
 * dep_id, "" when none. */
KT_NODISCARD keytier_err kt_store_dep_in_region(
    struct kt_store *st, const char *tenant, const char *workload,
    const char *region, const char *skip, char dep_id[KEYTIER_ID_SIZE]);
/* The newest DEP of the workload in region that is not disabled or
 * purged (offboarded ones included) into dep_id, "" when none. */
KT_NODISCARD keytier_err kt_store_dep_of_region(struct kt_store *st,
                                                const char *tenant,
                                                const char *workload,
                                                const char *region,
                                                char dep_id[KEYTIER_ID_SIZE]);
KT_NODISCARD keytier_err kt_store_dep_count(struct kt_store *st,
                                            const char *tenant,
                                            const char *workload,
                                            unsigned *count);
/* KEYTIER_E_DEP_NOT_FOUND */
KT_NODISCARD keytier_err kt_store_dep_get(struct kt_store *st,
                                          const char *dep_id,
                                          struct kt_dep_rec *out);
/* tenant and workload may be NULL (any).  *out is malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_dep_list(struct kt_store *st,
                                           const char *tenant,
                                           const char *workload,
                                           struct kt_dep_rec **out,
                                           size_t *count);
/* The state alone (KEYTIER_E_DEP_NOT_FOUND). */
KT_NODISCARD keytier_err kt_store_dep_state(struct kt_store *st,
                                            const char *dep_id, int *state);
KT_NODISCARD keytier_err kt_store_dep_set_state(struct kt_store *st,
                                                const char *dep_id, int state);
/* A DEP's registration (keys/dep_state.c): inserted REGISTERING, then
 * REGISTERED once every stored copy unwrapped to the key (*done: false when
 * the DEP was not registering any more, another process finished it), or
 * removed with its copies when a copy failed (only while registering). */
KT_NODISCARD keytier_err kt_store_dep_registered(struct kt_store *st,
                                                 const char *dep_id,
                                                 bool *done);
KT_NODISCARD keytier_err kt_store_dep_unregister(struct kt_store *st,
                                                 const char *dep_id);
/* The tenant was purged (store_purge.c): it has DEPs (of workload, NULL:
 * any) and every one of them is PURGED. */
KT_NODISCARD keytier_err kt_store_tenant_purged(struct kt_store *st,
                                                const char *tenant,
                                                const char *workload,
                                                bool *purged);

/* KEYTIER_E_EXISTS when a level-1 name is taken for the tenant and
 * workload. */
KT_NODISCARD keytier_err kt_store_key_insert(struct kt_store *st,
                                             const struct kt_key_rec *key);
/* KEYTIER_E_NOT_FOUND */
KT_NODISCARD keytier_err kt_store_key_get(struct kt_store *st,
                                          const char *key_id,
                                          struct kt_key_rec *out);
KT_NODISCARD keytier_err kt_store_key_get_by_name(struct kt_store *st,
                                                  const char *tenant,
                                                  const char *workload,
                                                  const char *name,
                                                  struct kt_key_rec *out);
/* The TIKs of a DEP, oldest first; *out is malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_tik_list(struct kt_store *st,
                                           const char *dep_id,
                                           struct kt_key_rec **out,
                                           size_t *count);
/* Children of parent_id; *out is malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_key_list(struct kt_store *st,
                                           const char *tenant,
                                           const char *parent_id,
                                           struct kt_key_rec **out,
                                           size_t *count);

/* ==== lifecycle: rolls, migrations, purge, keysets (lib/lifecycle/:
 * lifecycle.c, migrate.c, secrets.c) ==================================== */

/* A roll: the new copy of slot's wrapped DEP key waits in dep_roll (state
 * ROLLING) until it has been read back; then one transaction moves it into
 * dep_roots (commit) or drops it (abort), back to REGISTERED.  Begins only
 * while the DEP is REGISTERED and the other slot's customer key is still
 * other_uri, the key the caller checked the new one against (two
 * different tokens): KEYTIER_E_DEP_STATE otherwise, nothing written, so
 * that rolls of one DEP by several processes at once cannot put both
 * customer keys in one token. */
KT_NODISCARD keytier_err kt_store_roll_begin(struct kt_store *st,
                                             const char *dep_id, int slot,
                                             const struct kt_root_rec *pending,
                                             const char *other_uri,
                                             int64_t now);
/* The pending copy and, when started is not NULL, when the roll stored it
 * (the clock the roll gave kt_store_roll_begin). */
KT_NODISCARD keytier_err kt_store_roll_get(struct kt_store *st,
                                           const char *dep_id, int *slot,
                                           struct kt_root_rec *out,
                                           int64_t *started);
KT_NODISCARD keytier_err kt_store_roll_end(struct kt_store *st,
                                           const char *dep_id, bool commit);
/* Claims a roll that kt_store_roll_get read as started at `started` for
 * the caller's settlement, moving its start to now: *claimed true for the
 * one process whose claim moved it (any other finds it started since and
 * leaves it to the claimer until that one is dead in turn). */
KT_NODISCARD keytier_err kt_store_roll_claim(struct kt_store *st,
                                             const char *dep_id,
                                             int64_t started, int64_t now,
                                             bool *claimed);
/* Who else names a key: a root of a DEP that is not purged, or the pending
 * copy of a roll, whose identity is ident or (copies stored before
 * identities) whose URI is uri, leaving out the DEPs of skip_tenant (NULL:
 * none) and, with only_slot >= 0, every slot but that one. */
struct kt_root_ref {
    char dep_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    int slot;     /* KEYTIER_ROOT_A, _B, _AVAIL */
    bool pending; /* the new copy of a roll not finished */
};
/* The first cap references into out, their number in *n. */
KT_NODISCARD keytier_err kt_store_root_refs(struct kt_store *st,
                                            const char *ident, const char *uri,
                                            const char *skip_tenant,
                                            int only_slot,
                                            struct kt_root_ref *out, size_t cap,
                                            size_t *n);
/* Roots of DEPs not purged (leaving out skip_tenant's) stored before
 * identities were recorded (ident NULL): *out malloc'd (free()). */
struct kt_root_legacy {
    struct kt_root_ref ref;
    char uri[KEYTIER_URI_MAX];
};
KT_NODISCARD keytier_err kt_store_root_legacy(struct kt_store *st,
                                              const char *skip_tenant,
                                              struct kt_root_legacy **out,
                                              size_t *n);
/* Records the identity of such a root (only while it has none). */
KT_NODISCARD keytier_err kt_store_root_ident_set(struct kt_store *st,
                                                 const char *dep_id, int slot,
                                                 const char *ident);
/* The name of a keyset whose root is uri into name (cap bytes), "" if
 * none. */
KT_NODISCARD keytier_err kt_store_keyset_by_root(struct kt_store *st,
                                                 const char *uri, char *name,
                                                 size_t cap);
/* Deletes every wrapped copy and tier key of the tenant and marks its DEPs
 * PURGED, in one transaction (secure_delete, WAL truncated after). */
KT_NODISCARD keytier_err kt_store_tenant_purge(struct kt_store *st,
                                               const char *tenant,
                                               size_t *keys);

struct kt_mig_rec {
    char migration_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char workload[KEYTIER_WORKLOAD_MAX + 1];
    char target_dep[KEYTIER_ID_SIZE];
    char scope[KEYTIER_NAME_MAX + 8]; /* "all", "name:N", "dep:ID" */
    char operation[32];               /* "migrate" or "recover" */
    int state;                        /* 0 running, 1 done */
    int64_t created;
    uint64_t total, done;
};

/* One row change of a migration batch.  `item` marks a level-1 key (its
 * migration item is marked done with it); the rows after it up to the next
 * item are its subtree.  `gone`: the key no longer exists. */
struct kt_mig_update {
    char key_id[KEYTIER_ID_SIZE];
    char old_dep[KEYTIER_ID_SIZE];
    char dep_id[KEYTIER_ID_SIZE];
    char parent_id[KEYTIER_ID_SIZE];
    uint8_t wrapped[KT_TIER_WRAPPED_SIZE];
    bool item, gone;
};

KT_NODISCARD keytier_err kt_store_mig_create(struct kt_store *st,
                                             const struct kt_mig_rec *m,
                                             size_t *total);
KT_NODISCARD keytier_err kt_store_mig_add(struct kt_store *st,
                                          const struct kt_mig_rec *m,
                                          size_t *added);
KT_NODISCARD keytier_err kt_store_mig_get(struct kt_store *st, const char *id,
                                          struct kt_mig_rec *out);
KT_NODISCARD keytier_err kt_store_mig_list(struct kt_store *st,
                                           const char *tenant,
                                           struct kt_mig_rec **out,
                                           size_t *count);
/* An item still to do and its key as stored now (gone: deleted since). */
struct kt_mig_todo {
    char key_id[KEYTIER_ID_SIZE];
    bool gone;
    struct kt_key_rec rec;
};
KT_NODISCARD keytier_err kt_store_mig_todo(struct kt_store *st, const char *id,
                                           size_t max, struct kt_mig_todo *out,
                                           size_t *n);
/* Applies a batch in one transaction; a row whose dep_id is no longer
 * old_dep is skipped with its subtree (its item stays to do). */
KT_NODISCARD keytier_err kt_store_mig_apply(struct kt_store *st, const char *id,
                                            const struct kt_mig_update *u,
                                            size_t n, size_t *applied);
/* Like kt_store_mig_apply for a worker's claimed batch (store_claim.c):
 * an item is applied only while worker still holds its claim; the others
 * are counted in *lost (taken over: nothing of them is written).  The
 * claims left (keys moved by another run) are released. */
KT_NODISCARD keytier_err kt_store_mig_apply_claimed(
    struct kt_store *st, const char *id, const char *worker,
    const struct kt_mig_update *u, size_t n, size_t *applied, size_t *lost);
/* Marks the migration finished, once and only when no item is left to do
 * (*finished: by this call); the target leaves `migrating` when no other
 * migration to it runs. */
KT_NODISCARD keytier_err kt_store_mig_finish(struct kt_store *st,
                                             const char *id,
                                             const char *target_dep,
                                             bool *finished);
/* The unfinished migrations of every tenant, oldest first; *out is
 * malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_mig_runnable(struct kt_store *st,
                                               struct kt_mig_rec **out,
                                               size_t *count);

/* ---- claims under a lease (store_claim.c, keytier worker) ------------
 * A worker claims up to max items of a migration that are not done and
 * not claimed, or whose lease ran out (lease_until <= now_ms), in one
 * transaction: they are its own until until_ms.  out gets the items this
 * call claimed, with their keys; *taken_over counts those whose earlier claim
 * had expired.  Times are milliseconds since the epoch (the workers' clocks,
 * which must agree to well within a lease). */
struct kt_claim {
    const char *worker;
    int64_t now_ms, until_ms;
};
KT_NODISCARD keytier_err kt_store_mig_claim(struct kt_store *st, const char *id,
                                            const struct kt_claim *c,
                                            size_t max, struct kt_mig_todo *out,
                                            size_t *n, size_t *taken_over);
/* Moves the lease of worker's claims in migration id to until_ms; *held:
 * the items it still holds. */
KT_NODISCARD keytier_err kt_store_mig_renew(struct kt_store *st, const char *id,
                                            const char *worker,
                                            int64_t until_ms, size_t *held);
/* Clears worker's claims in migration id (another worker may take them at
 * once); *released may be NULL. */
KT_NODISCARD keytier_err kt_store_mig_release(struct kt_store *st,
                                              const char *id,
                                              const char *worker,
                                              size_t *released);
/* Items of migration id not done: *undone; of those claimed under a live
 * lease: *claimed. */
KT_NODISCARD keytier_err kt_store_mig_undone(struct kt_store *st,
                                             const char *id, int64_t now_ms,
                                             uint64_t *undone,
                                             uint64_t *claimed);
/* The DEPs of every tenant left registering or rolling (a change under
 * way, or one a dead process left: kt_dep_settle tells them apart), at
 * most max ids of KEYTIER_ID_SIZE bytes into ids. */
KT_NODISCARD keytier_err kt_store_dep_unsettled(struct kt_store *st,
                                                char (*ids)[KEYTIER_ID_SIZE],
                                                size_t max, size_t *n);

#define KT_KEYSET_NAME_MAX 128

struct kt_keyset_rec {
    char name[KT_KEYSET_NAME_MAX + 1];
    char root_uri[KEYTIER_URI_MAX];
    int64_t rollover_after, retire_after; /* seconds */
    int64_t created;
};

struct kt_ks_key_rec {
    char name[KT_KEYSET_NAME_MAX + 1];
    uint32_t version;
    char mech[32];
    uint8_t wrapped[KT_WRAPPED_MAX];
    size_t wrapped_len; /* 0 once retired */
    int64_t created, archived;
    int state; /* 0 current, 1 archived, 2 retired */
};

KT_NODISCARD keytier_err
kt_store_keyset_insert(struct kt_store *st, const struct kt_keyset_rec *ks,
                       const struct kt_ks_key_rec *first);
KT_NODISCARD keytier_err kt_store_keyset_get(struct kt_store *st,
                                             const char *name,
                                             struct kt_keyset_rec *out);
KT_NODISCARD keytier_err kt_store_ks_key_get(struct kt_store *st,
                                             const char *name, uint32_t version,
                                             struct kt_ks_key_rec *out);
/* Archives `current` and inserts `next` as current; KEYTIER_E_EXISTS when
 * `current` was not current any more. */
KT_NODISCARD keytier_err kt_store_ks_rollover(struct kt_store *st,
                                              uint32_t current,
                                              const struct kt_ks_key_rec *next,
                                              int64_t now);
KT_NODISCARD keytier_err kt_store_ks_retire(struct kt_store *st,
                                            const char *name,
                                            int64_t archived_before,
                                            uint32_t *versions, size_t max,
                                            size_t *n);
/* Every keyset, by name; *out is malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_keyset_list(struct kt_store *st,
                                              struct kt_keyset_rec **out,
                                              size_t *count);
/* How many archived versions of keyset `name` kt_store_ks_retire would
 * retire now (for dry runs). */
KT_NODISCARD keytier_err kt_store_ks_retire_count(struct kt_store *st,
                                                  const char *name,
                                                  int64_t archived_before,
                                                  size_t *n);

/* ---- offboarding (lib/lifecycle/offboard.c) ----
 * The journal of an offboarding (one row per DEP, its step moving 0 ->
 * 3, each step in one transaction with what it did) and the TIKs it
 * re-protected under the service-managed key. */
enum kt_offboard_step {
    KT_OFFBOARD_STARTED = 0,   /* journal written: managed_id chosen */
    KT_OFFBOARD_KEY_READY = 1, /* the service-managed key exists: uri */
    KT_OFFBOARD_PROTECTED = 2, /* every TIK in managed_tiks */
    KT_OFFBOARD_DONE = 3,      /* the DEP is OFFBOARDED */
};
struct kt_offboard_rec {
    char dep_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    int step;                         /* enum kt_offboard_step */
    char managed_id[KEYTIER_ID_SIZE]; /* the key's CKA_ID (a UUID) */
    char approval[KEYTIER_ID_SIZE];   /* "" (NULL): none was needed */
    char uri[KEYTIER_URI_MAX];        /* from KEY_READY on */
    char ident[KEYTIER_URI_MAX];
    int64_t started, updated;
};
struct kt_managed_rec {
    char tik_id[KEYTIER_ID_SIZE];
    char dep_id[KEYTIER_ID_SIZE];
    char tenant[KEYTIER_TENANT_MAX + 1];
    char uri[KEYTIER_URI_MAX];
    char mech[32];
    uint8_t wrapped[KT_WRAPPED_MAX];
    size_t wrapped_len;
    int64_t created;
};
/* KEYTIER_E_NOT_FOUND when the DEP was never offboarded. */
KT_NODISCARD keytier_err kt_store_offboard_get(struct kt_store *st,
                                               const char *dep_id,
                                               struct kt_offboard_rec *out);
/* Inserts the journal at STARTED (KEYTIER_E_EXISTS: one is there). */
KT_NODISCARD keytier_err
kt_store_offboard_begin(struct kt_store *st, const struct kt_offboard_rec *r);
/* STARTED -> KEY_READY with the key's uri and identity. */
KT_NODISCARD keytier_err kt_store_offboard_key(struct kt_store *st,
                                               const char *dep_id,
                                               const char *uri,
                                               const char *ident, int64_t now);
/* KEY_READY -> PROTECTED with the n re-protected TIKs, in one
 * transaction. */
KT_NODISCARD keytier_err kt_store_offboard_protect(
    struct kt_store *st, const char *dep_id, const struct kt_managed_rec *m,
    size_t n, int64_t now);
/* PROTECTED -> DONE and the DEP OFFBOARDED, with its cache invalidation,
 * in one transaction. */
KT_NODISCARD keytier_err kt_store_offboard_finish(struct kt_store *st,
                                                  const char *dep_id,
                                                  int64_t now);
/* KEYTIER_E_NOT_FOUND when the TIK has no service-managed copy. */
KT_NODISCARD keytier_err kt_store_managed_get(struct kt_store *st,
                                              const char *tik_id,
                                              struct kt_managed_rec *out);
/* ==== end lifecycle ==================================================== */

/* ==== cache invalidations ====================================
 * Every change that makes a cached key wrong (DEP state change, roll,
 * purge, a tier key moved to another DEP, a revocation seen by a reader)
 * appends a row (seq, scope, value, reason) - in the same transaction as
 * the change when the store makes it - and every context applies rows it
 * has not seen (seq > its last) to its cache (lib/avail/inval.c). */
enum kt_inval_scope {
    KT_INVAL_DEP = 1,    /* value: DEP id (its key and every key under it) */
    KT_INVAL_TENANT = 2, /* value: tenant */
    KT_INVAL_ROOT = 3,   /* value: root key URI */
    KT_INVAL_KEY = 4,    /* value: tier key id (it and the keys below) */
    KT_INVAL_ALL = 5,    /* value: "" */
};

struct kt_inval_rec {
    int64_t seq;
    int scope; /* enum kt_inval_scope */
    char value[KEYTIER_URI_MAX];
    bool own; /* written through this store handle */
};

/* Appends one row in a transaction of its own. */
KT_NODISCARD keytier_err kt_store_inval_publish(struct kt_store *st, int scope,
                                                const char *value,
                                                const char *reason);
/* The highest seq ever given (0 when none): where a new reader starts. */
KT_NODISCARD keytier_err kt_store_inval_head(struct kt_store *st, int64_t *seq);
/* Up to max rows with seq > after, in seq order.  *gap: rows after `after`
 * were pruned before this reader saw them (it must drop everything). */
KT_NODISCARD keytier_err kt_store_inval_read(struct kt_store *st, int64_t after,
                                             struct kt_inval_rec *out,
                                             size_t max, size_t *n, bool *gap);
/* Deletes rows created before `before` (seconds since the epoch). */
KT_NODISCARD keytier_err kt_store_inval_prune(struct kt_store *st,
                                              int64_t before);
/* The DEPs whose copies a root key wraps; *ids is malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_inval_root_deps(struct kt_store *st,
                                                  const char *uri,
                                                  char (**ids)[KEYTIER_ID_SIZE],
                                                  size_t *n);
/* Statements run on this store so far (tests: a cache hit reads nothing). */
uint64_t kt_store_ops(struct kt_store *st);
/* ==== end cache invalidations ========================================== */

/* ==== audit anchors (lib/audit/audit_anchor.c) =====================
 * The head of an audit log (its Seq and Hash) as last anchored, with the
 * service token's HMAC over it (audit.h). */
#define KT_ANCHOR_MAC_SIZE 32 /* HMAC-SHA-256 */
#define KT_ANCHOR_PATH_MAX 4096

struct kt_anchor_rec {
    char log_id[KEYTIER_ID_SIZE];  /* the Id of the log's first record */
    char path[KT_ANCHOR_PATH_MAX]; /* the log's real path when anchored */
    uint64_t seq;
    char hash[65]; /* hex SHA-256: the Hash of record seq */
    uint8_t mac[KT_ANCHOR_MAC_SIZE];
    int64_t updated; /* seconds since the epoch */
};

/* Sets the anchor of a->log_id unless the stored one is at a Seq >= a->seq
 * (*applied false then): anchors never move backwards. */
KT_NODISCARD keytier_err kt_store_anchor_put(struct kt_store *st,
                                             const struct kt_anchor_rec *a,
                                             bool *applied);
/* KEYTIER_E_NOT_FOUND when the log has no anchor. */
KT_NODISCARD keytier_err kt_store_anchor_get(struct kt_store *st,
                                             const char *log_id,
                                             struct kt_anchor_rec *out);
/* The newest anchor of a log other than log_id ("": any) recorded at this
 * path (KEYTIER_E_NOT_FOUND). */
KT_NODISCARD keytier_err kt_store_anchor_other(struct kt_store *st,
                                               const char *path,
                                               const char *log_id,
                                               struct kt_anchor_rec *out);

/* A node's audit chain (schema 10): the log (the Id of its first record)
 * a node writes, where, and the global indices it was given. */
struct kt_chain_rec {
    char log_id[KEYTIER_ID_SIZE];
    char node[KEYTIER_NODE_MAX + 1];
    char path[KT_ANCHOR_PATH_MAX];
    uint64_t first_index, last_index;
};

/* Takes the next global audit index for a record of chain log_id of node
 * at path, in one transaction that also records the chain (created with
 * its first index, else its last index moved): *index gets it.
 * KEYTIER_E_AUDIT_NODE when log_id is another node's chain (nothing
 * taken). */
KT_NODISCARD keytier_err kt_store_audit_index_take(struct kt_store *st,
                                                   const char *log_id,
                                                   const char *node,
                                                   const char *path,
                                                   uint64_t *index);
/* Every chain, in the order of their first index (*out to free), and the
 * last index taken (*highest). */
KT_NODISCARD keytier_err kt_store_audit_chains(struct kt_store *st,
                                               struct kt_chain_rec **out,
                                               size_t *n, uint64_t *highest);
/* ==== end audit anchors ================================================= */

/* ==== operations: published counters, the tokens DEPs use (schema 12) ====
 * store_ops.c */

/* Most bytes of one context's published counters (a JSON object). */
#define KT_NODE_STATS_MAX 16384

/* One context's published counters: a row of node_stats. */
struct kt_node_stats_rec {
    char origin[33]; /* the publishing context's store origin */
    char node[KEYTIER_NODE_MAX + 1];
    int64_t pid;
    int64_t updated_ms;  /* when written, ms since the epoch */
    int64_t interval_ms; /* the publisher's avail.stats_publish_ms */
    char counters[KT_NODE_STATS_MAX];
};

/* Writes (inserts or replaces) this store origin's row, and deletes the
 * rows of any origin not written since prune_before_ms. */
KT_NODISCARD keytier_err kt_store_node_stats_put(struct kt_store *st,
                                                 const char *node, int64_t pid,
                                                 int64_t interval_ms,
                                                 const char *counters,
                                                 int64_t prune_before_ms);
/* Deletes this store origin's row (a context's close). */
KT_NODISCARD keytier_err kt_store_node_stats_drop(struct kt_store *st);
/* Every row, by node and process id (*out to free; NULL when none). */
KT_NODISCARD keytier_err kt_store_node_stats_list(
    struct kt_store *st, struct kt_node_stats_rec **out, size_t *n);

/* One root of a DEP not purged: its DEP, slot (KEYTIER_ROOT_*) and URI. */
struct kt_dep_root_ref {
    char dep_id[KEYTIER_ID_SIZE];
    int slot;
    char uri[KEYTIER_URI_MAX];
};
/* Every root of every DEP not purged, by DEP and slot (*out to free). */
KT_NODISCARD keytier_err kt_store_dep_root_refs(struct kt_store *st,
                                                struct kt_dep_root_ref **out,
                                                size_t *n);
/* ==== end operations ==================================================== */

/* ==== approvals (lib/trust/approval.c) ==================================
 * Approvers' public keys and approval requests with their grants.  Nothing
 * here is trusted: approval.c checks every key against the configuration's
 * pins and every grant's signature whenever one is used. */
#define KT_SPKI_MAX         1024 /* RSA-4096 SubjectPublicKeyInfo fits */
#define KT_APPROVAL_SIG_MAX 512

struct kt_approval_rec {
    keytier_approval_info info; /* state as stored (never EXPIRED) */
    uint8_t sig[KT_APPROVAL_SIG_MAX];
    size_t sig_len;
    bool expiry_seen;
};

KT_NODISCARD keytier_err kt_store_approver_put(struct kt_store *st,
                                               const char *name,
                                               const uint8_t *spki, size_t len,
                                               int64_t added);
/* KEYTIER_E_APPROVER when name has no key in the store. */
KT_NODISCARD keytier_err kt_store_approver_get(struct kt_store *st,
                                               const char *name,
                                               uint8_t spki[KT_SPKI_MAX],
                                               size_t *len);
KT_NODISCARD keytier_err kt_store_approver_count(struct kt_store *st,
                                                 size_t *count);
KT_NODISCARD keytier_err
kt_store_approval_insert(struct kt_store *st, const struct kt_approval_rec *r);
/* KEYTIER_E_NOT_FOUND */
KT_NODISCARD keytier_err kt_store_approval_get(struct kt_store *st,
                                               const char *id,
                                               struct kt_approval_rec *out);
/* tenant NULL: all.  *out is malloc'd (free()). */
KT_NODISCARD keytier_err kt_store_approval_list(struct kt_store *st,
                                                const char *tenant,
                                                struct kt_approval_rec **out,
                                                size_t *count);
/* Stores the grant of a request still REQUESTED (*applied false when it
 * was not). */
KT_NODISCARD keytier_err kt_store_approval_grant(
    struct kt_store *st, const struct kt_approval_rec *r, bool *applied);
/* Marks r used, in one statement that also requires every field to be
 * what r holds (as verified) and the state GRANTED: *applied false when
 * another use came first or the row changed. */
KT_NODISCARD keytier_err kt_store_approval_use(struct kt_store *st,
                                               const struct kt_approval_rec *r,
                                               int64_t now, bool *applied);
/* Sets the state to `state` if it is one of REQUESTED or GRANTED. */
KT_NODISCARD keytier_err kt_store_approval_set_state(struct kt_store *st,
                                                     const char *id, int state,
                                                     bool *applied);
/* Takes back the step that brought id to `state` (REQUESTED: the request
 * goes; GRANTED: requested again, without approver or signature; USED:
 * granted again), only while id is in that state: for a step whose audit
 * record could not be written. */
KT_NODISCARD keytier_err kt_store_approval_undo(struct kt_store *st,
                                                const char *id, int state);
/* Marks the expiry of id seen: *first true for the one call that did. */
KT_NODISCARD keytier_err kt_store_approval_expiry_seen(struct kt_store *st,
                                                       const char *id,
                                                       bool *first);
/* ==== end approvals ===================================================== */

#endif /* KT_STORE_H */
