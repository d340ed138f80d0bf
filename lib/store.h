/*
 * store.h - the metadata store behind libkeytier: DEPs with their wrapped
 * DEP-key copies, and tier keys wrapped by their parents.  Roots are never
 * here.  The interface is small so that a PostgreSQL implementation can sit
 * beside store_sqlite.c (shared/DESIGN.md §2 Store).
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
};

/* Opens (creating and migrating as needed) the store at path; parent
 * directories are created 0700, the file 0600. */
KT_MUST_CHECK keytier_err kt_store_open(const char *path,
                                        struct kt_store **out);
void kt_store_close(struct kt_store *st);
/* The schema version of an open store (for tests of migrations). */
int kt_store_schema_version(struct kt_store *st);
int kt_store_schema_latest(void);

/* Inserts a DEP and its three wrapped copies in one transaction, refusing
 * (KEYTIER_E_DEP_LIMIT) when the tenant already has `limit` DEPs for the
 * workload - checked inside the transaction, so several processes cannot
 * exceed it together. */
KT_MUST_CHECK keytier_err kt_store_dep_insert(struct kt_store *st,
                                              const struct kt_dep_rec *dep,
                                              unsigned limit);
KT_MUST_CHECK keytier_err kt_store_dep_count(struct kt_store *st,
                                             const char *tenant,
                                             const char *workload,
                                             unsigned *count);
/* KEYTIER_E_DEP_NOT_FOUND */
KT_MUST_CHECK keytier_err kt_store_dep_get(struct kt_store *st,
                                           const char *dep_id,
                                           struct kt_dep_rec *out);
/* workload may be NULL.  *out is malloc'd (free()). */
KT_MUST_CHECK keytier_err kt_store_dep_list(struct kt_store *st,
                                            const char *tenant,
                                            const char *workload,
                                            struct kt_dep_rec **out,
                                            size_t *count);
/* The state alone (KEYTIER_E_DEP_NOT_FOUND). */
KT_MUST_CHECK keytier_err kt_store_dep_state(struct kt_store *st,
                                             const char *dep_id, int *state);
KT_MUST_CHECK keytier_err kt_store_dep_set_state(struct kt_store *st,
                                                 const char *dep_id, int state);

/* KEYTIER_E_EXISTS when a level-1 name is taken for the tenant and
 * workload. */
KT_MUST_CHECK keytier_err kt_store_key_insert(struct kt_store *st,
                                              const struct kt_key_rec *key);
/* KEYTIER_E_NOT_FOUND */
KT_MUST_CHECK keytier_err kt_store_key_get(struct kt_store *st,
                                           const char *key_id,
                                           struct kt_key_rec *out);
KT_MUST_CHECK keytier_err kt_store_key_get_by_name(struct kt_store *st,
                                                   const char *tenant,
                                                   const char *workload,
                                                   const char *name,
                                                   struct kt_key_rec *out);
/* Children of parent_id; *out is malloc'd (free()). */
KT_MUST_CHECK keytier_err kt_store_key_list(struct kt_store *st,
                                            const char *tenant,
                                            const char *parent_id,
                                            struct kt_key_rec **out,
                                            size_t *count);

#endif /* KT_STORE_H */
