/*
 * The SQLite store's file and schema: opening (directories 0700, file 0600,
 * WAL, busy timeout, foreign keys), closing, and the schema versions.
 *
 * WAL journal (readers never block the writer), a busy timeout so several
 * processes can share one file, and BEGIN IMMEDIATE for every change so a
 * check and the write that depends on it (the DEP limit) see the same
 * state.  synchronous=NORMAL: in WAL mode a crash keeps the database
 * consistent (old or new state); a power loss may drop the last commits.
 *
 * The schema is versioned with PRAGMA user_version; kt_migrations[i] moves
 * version i to i+1 and runs inside the same transaction as the version bump.
 * The tables of each family are read and written in store_<family>.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "kt_file.h"
#include "store_stmt.h"

#define KT_BUSY_TIMEOUT_MS 10000

static const char *const kt_migrations[] = {
    /* 0 -> 1: DEPs, their wrapped copies, tier keys. */
    "CREATE TABLE deps ("
    "  dep_id TEXT PRIMARY KEY,"
    "  policy_id TEXT NOT NULL UNIQUE,"
    "  tenant TEXT NOT NULL,"
    "  workload TEXT NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  key_check BLOB NOT NULL);"
    "CREATE TABLE dep_roots ("
    "  dep_id TEXT NOT NULL REFERENCES deps(dep_id),"
    "  slot INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 2),"
    "  uri TEXT NOT NULL,"
    "  mech TEXT NOT NULL,"
    "  wrapped BLOB NOT NULL,"
    "  PRIMARY KEY (dep_id, slot));"
    "CREATE TABLE tier_keys ("
    "  key_id TEXT PRIMARY KEY,"
    "  tenant TEXT NOT NULL,"
    "  workload TEXT NOT NULL,"
    "  dep_id TEXT NOT NULL REFERENCES deps(dep_id),"
    "  parent_id TEXT NOT NULL,"
    "  level INTEGER NOT NULL CHECK (level >= 1),"
    "  name TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  wrapped BLOB NOT NULL);"
    "CREATE INDEX tier_keys_parent ON tier_keys(tenant, parent_id);"
    "CREATE UNIQUE INDEX tier_keys_top_name ON tier_keys(tenant, workload, "
    "  name) WHERE level = 1;",
    /* 1 -> 2: counting a tenant's DEPs per workload (the DEP limit) without
     * a scan. */
    "CREATE INDEX deps_tenant_workload ON deps(tenant, workload, created);",
    /* 2 -> 3: the pending copy of a roll, migrations with
     * per-key progress, keysets of service secrets. */
    "CREATE TABLE IF NOT EXISTS dep_roll ("
    "  dep_id TEXT PRIMARY KEY REFERENCES deps(dep_id),"
    "  slot INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 1),"
    "  uri TEXT NOT NULL,"
    "  mech TEXT NOT NULL,"
    "  wrapped BLOB NOT NULL,"
    "  started INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS migrations ("
    "  migration_id TEXT PRIMARY KEY,"
    "  tenant TEXT NOT NULL,"
    "  workload TEXT NOT NULL,"
    "  target_dep TEXT NOT NULL REFERENCES deps(dep_id),"
    "  scope TEXT NOT NULL,"
    "  operation TEXT NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  total INTEGER NOT NULL DEFAULT 0," /* items, kept with them */
    "  done INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS migration_items ("
    "  migration_id TEXT NOT NULL REFERENCES migrations(migration_id),"
    "  key_id TEXT NOT NULL,"
    "  done INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (migration_id, key_id));"
    "CREATE INDEX IF NOT EXISTS migration_items_todo ON "
    "migration_items(migration_id, done);"
    "CREATE INDEX IF NOT EXISTS tier_keys_dep ON tier_keys(dep_id, level);"
    "CREATE TABLE IF NOT EXISTS keysets ("
    "  name TEXT PRIMARY KEY,"
    "  root_uri TEXT NOT NULL,"
    "  rollover_after INTEGER NOT NULL,"
    "  retire_after INTEGER NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS keyset_keys ("
    "  name TEXT NOT NULL REFERENCES keysets(name),"
    "  version INTEGER NOT NULL,"
    "  mech TEXT NOT NULL,"
    "  wrapped BLOB NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  archived INTEGER,"
    "  state INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version));",
    /* 3 -> 4: a DEP's optional human name; NULL for older DEPs. */
    "ALTER TABLE deps ADD COLUMN name TEXT;",
    /* 4 -> 5: changes that make cached keys wrong, for the
     * caches of every process (store.h "cache invalidations").
     * AUTOINCREMENT: a seq is never given twice, even after pruning. */
    "CREATE TABLE IF NOT EXISTS cache_invalidations ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  scope INTEGER NOT NULL CHECK (scope BETWEEN 1 AND 5),"
    "  value TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  origin TEXT NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS cache_invalidations_created ON "
    "cache_invalidations(created);",
    /* 5 -> 6: the keyed anchor of each audit log's head (its
     * Seq and Hash, MACed by the service token), outside the log file. */
    "CREATE TABLE IF NOT EXISTS audit_anchors ("
    "  log_id TEXT PRIMARY KEY,"
    "  path TEXT NOT NULL,"
    "  seq INTEGER NOT NULL CHECK (seq >= 1),"
    "  hash TEXT NOT NULL,"
    "  mac BLOB NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS audit_anchors_path ON audit_anchors(path, "
    "  updated);",
    /* 6 -> 7: approvers' public keys and approvals of privileged
     * operations (store.h "approvals"); a row proves nothing by itself: a
     * key counts only when the configuration pins it, an approval only
     * when its signature verifies. */
    "CREATE TABLE IF NOT EXISTS approvers ("
    "  name TEXT PRIMARY KEY,"
    "  spki BLOB NOT NULL,"
    "  added INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS approvals ("
    "  id TEXT PRIMARY KEY,"
    "  op INTEGER NOT NULL,"
    "  tenant TEXT NOT NULL,"
    "  scope TEXT NOT NULL,"
    "  justification TEXT NOT NULL,"
    "  requester TEXT NOT NULL,"
    "  single_use INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  approver TEXT,"
    "  approver_key TEXT,"
    "  signature BLOB,"
    "  granted INTEGER,"
    "  used INTEGER,"
    "  expiry_seen INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS approvals_tenant ON approvals(tenant, "
    "  created);",
    /* 7 -> 8: the identity of each root's key (token, class, CKA_ID,
     * CKA_LABEL as a URI), so that a purge and a registration compare keys
     * whatever URI names them; NULL for copies made before. */
    "ALTER TABLE dep_roots ADD COLUMN ident TEXT;"
    "ALTER TABLE dep_roll ADD COLUMN ident TEXT;"
    "CREATE INDEX IF NOT EXISTS dep_roots_ident ON dep_roots(ident);",
    /* 8 -> 9: the files workload.  A files DEP's region (NULL: the
     * default region for files DEPs made before, none for mail); a tier
     * key's tenant intermediate key (tik_id: its own id for a TIK, the
     * TIK above it for sites and blobs, NULL for mail keys and older
     * files keys); the named keys (mailboxes, sites) are level 1 without
     * a TIK or the children of a TIK, and their names stay unique per
     * tenant and workload.  TIKs re-protected under a service-managed key
     * (offboarding) and the offboarding's journal. */
    "ALTER TABLE deps ADD COLUMN region TEXT;"
    "CREATE INDEX IF NOT EXISTS deps_region ON deps(tenant, workload, "
    "  region);"
    "ALTER TABLE tier_keys ADD COLUMN tik_id TEXT;"
    "DROP INDEX IF EXISTS tier_keys_top_name;"
    "CREATE UNIQUE INDEX IF NOT EXISTS tier_keys_named ON tier_keys(tenant, "
    "  workload, name) WHERE (tik_id IS NULL AND level = 1) OR "
    "  parent_id = tik_id;"
    "CREATE INDEX IF NOT EXISTS tier_keys_tik ON tier_keys(dep_id) WHERE "
    "  tik_id = key_id;"
    "CREATE TABLE IF NOT EXISTS offboards ("
    "  dep_id TEXT PRIMARY KEY REFERENCES deps(dep_id),"
    "  tenant TEXT NOT NULL,"
    "  step INTEGER NOT NULL CHECK (step BETWEEN 0 AND 3),"
    "  managed_id TEXT NOT NULL,"
    "  approval TEXT,"
    "  uri TEXT,"
    "  ident TEXT,"
    "  started INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS managed_tiks ("
    "  tik_id TEXT PRIMARY KEY,"
    "  dep_id TEXT NOT NULL REFERENCES deps(dep_id),"
    "  tenant TEXT NOT NULL,"
    "  uri TEXT NOT NULL,"
    "  mech TEXT NOT NULL,"
    "  wrapped BLOB NOT NULL,"
    "  created INTEGER NOT NULL);",
    /* 9 -> 10: audit across nodes.  One counter hands out the global
     * index every audit record carries; a row per node chain (a log, by
     * the Id of its first record) with its node and the indices it was
     * given, so that verify knows every chain there is and which indices
     * each may hold. */
    "CREATE TABLE IF NOT EXISTS audit_counter ("
    "  name TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL);"
    "INSERT INTO audit_counter (name, value) VALUES ('global', 0) "
    "  ON CONFLICT (name) DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS audit_chains ("
    "  log_id TEXT PRIMARY KEY,"
    "  node TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  first_index INTEGER NOT NULL,"
    "  last_index INTEGER NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS audit_chains_node ON audit_chains(node);",
    /* 10 -> 11: claims of migration items under a lease (keytier worker):
     * the worker holding an item's claim (NULL: none) and until when, in
     * milliseconds since the epoch; an item whose lease ran out may be
     * claimed by another worker. */
    "ALTER TABLE migration_items ADD COLUMN claimed_by TEXT;"
    "ALTER TABLE migration_items ADD COLUMN lease_until INTEGER;"
    "CREATE INDEX IF NOT EXISTS migration_items_claim ON "
    "  migration_items(migration_id, done, lease_until);",
    /* 11 -> 12: each process's published counters (keytier stats): a row
     * per context that publishes (its store origin), with its node, its
     * process id, when it last wrote (milliseconds since the epoch), its
     * publishing interval and its counters as a JSON object. */
    "CREATE TABLE IF NOT EXISTS node_stats ("
    "  origin TEXT PRIMARY KEY,"
    "  node TEXT NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL,"
    "  interval_ms INTEGER NOT NULL,"
    "  counters TEXT NOT NULL);",
};

#define KT_SCHEMA_LATEST ((int)(sizeof kt_migrations / sizeof kt_migrations[0]))

int kt_store_schema_latest(void)
{
    return KT_SCHEMA_LATEST;
}

/* PRAGMA user_version, -1 when it cannot be read.  Prepared afresh each
 * time: it runs once per open, and a migration changes the schema under
 * it. */
static int kt_user_version(struct kt_store *st)
{
    if (st->pg != NULL)
        return kt_pg_version(st, false);
    sqlite3_stmt *q = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW && sqlite3_data_count(q) == 1)
        v = sqlite3_column_int(q, 0);
    (void)sqlite3_finalize(q); /* repeats the failure seen above */
    return v;
}

int kt_store_schema_version(struct kt_store *st)
{
    pthread_mutex_lock(&st->mu);
    int v = kt_user_version(st);
    pthread_mutex_unlock(&st->mu);
    return v;
}

/* Runs migration v -> v+1 and records version v+1: the SQLite DDL, on
 * PostgreSQL translated (store_pg.c) with what it needs beyond it. */
static keytier_err kt_migrate_one(struct kt_store *st, int v)
{
    if (st->pg == NULL) {
        char bump[64];
        keytier_err e = kt_db_exec(st, "migration", kt_migrations[v]);
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        return e != KEYTIER_OK ? e : kt_db_exec(st, "migration", bump);
    }
    char *ddl = kt_pg_ddl(kt_migrations[v]);
    if (ddl == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    keytier_err e = kt_db_exec(st, "migration", ddl);
    free(ddl);
    const char *extra = kt_pg_ddl_extra(v);
    if (e == KEYTIER_OK && extra != NULL)
        e = kt_db_exec(st, "migration", extra);
    return e != KEYTIER_OK ? e : kt_pg_set_version(st, v + 1);
}

/* Several processes may open a fresh store at once: the migration runs in
 * one transaction (on PostgreSQL under the transactions' advisory lock,
 * its version table created there), and the version is read inside it. */
static keytier_err kt_migrate(struct kt_store *st, const char *path)
{
    /* A store already at this version (the common case) needs no write
     * lock: versions only rise, so a version read outside a transaction
     * that is the latest stays the latest.  Taking the lock anyway would
     * queue every process that opens the store behind the writers (on
     * PostgreSQL a store-wide lock), and fail it after the lock timeout
     * while long batches run. */
    if (kt_user_version(st) == KT_SCHEMA_LATEST)
        return KEYTIER_OK;
    keytier_err e = kt_db_begin(st);
    if (e != KEYTIER_OK)
        return e;
    int v = st->pg != NULL ? kt_pg_version(st, true)
                           : kt_user_version(st); /* inside the write lock */
    if (v < 0) {
        e = kt_db_fail(st, path);
        goto fail;
    }
    if (v > KT_SCHEMA_LATEST) {
        e = kt_err(KEYTIER_E_STORE_VERSION,
                   "%s has schema version %d, this library knows up to %d",
                   path, v, KT_SCHEMA_LATEST);
        goto fail;
    }
    for (; v < KT_SCHEMA_LATEST; v++) {
        e = kt_migrate_one(st, v);
        if (e != KEYTIER_OK)
            goto fail;
    }
    return kt_db_commit(st);
fail:
    kt_db_rollback(st);
    return e;
}

/* Creates the parent directories of path (0700). */
static keytier_err kt_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf)
        return kt_err(KEYTIER_E_CONFIG, "store path too long");
    kt_strlcpy(buf, path, sizeof buf);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (!kt_dir_create_private(buf))
            return kt_err(KEYTIER_E_STORE, "cannot create %s: %s", buf,
                          strerror(errno));
        *p = '/';
    }
    return KEYTIER_OK;
}

/*
 * Puts the file in WAL mode (a no-op when it is already).  The switch needs
 * the file to itself, and when several processes open a fresh store at
 * once SQLite may answer SQLITE_BUSY at once, without the busy handler,
 * since waiting could deadlock two openers that both hold a shared lock.
 * So a busy answer is retried after a short pause, up to the busy timeout.
 * journal_mode returns the mode in force: WAL must really be on.
 */
static bool kt_enable_wal(struct kt_store *st)
{
    uint64_t until = kt_now_ns() + (uint64_t)KT_BUSY_TIMEOUT_MS * 1000000u;
    for (;;) {
        sqlite3_stmt *q = NULL;
        int rc =
            sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &q, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(q);
        const unsigned char *mode =
            rc == SQLITE_ROW && sqlite3_data_count(q) == 1
                ? sqlite3_column_text(q, 0)
                : NULL;
        bool wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
        (void)sqlite3_finalize(q); /* repeats rc */
        if (wal)
            return true;
        if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) ||
            kt_now_ns() >= until)
            return false;
        /* 1-4 ms, varied so that the openers do not retry in step */
        struct timespec pause = {0, (long)(1000000 + kt_now_ns() % 3000000)};
        nanosleep(&pause, NULL);
    }
}

/* A fresh store handle with its random origin mark (store_stmt.h). */
static keytier_err kt_store_new(struct kt_store **out)
{
    struct kt_store *st = calloc(1, sizeof *st);
    if (st == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    uint8_t origin[16];
    if (RAND_bytes(origin, sizeof origin) != 1) {
        free(st);
        return kt_err(KEYTIER_E_CRYPTO, "random generation failed");
    }
    for (size_t i = 0; i < sizeof origin; i++)
        snprintf(st->origin + 2 * i, 3, "%02x", origin[i]);
    pthread_mutex_init(&st->mu, NULL);
    *out = st;
    return KEYTIER_OK;
}

/* A PostgreSQL store: the connection, then the schema. */
static keytier_err kt_store_open_pg(const char *conninfo,
                                    const char *password_file,
                                    struct kt_store **out)
{
    struct kt_store *st = NULL;
    keytier_err e = kt_store_new(&st);
    if (e != KEYTIER_OK)
        return e;
    e = kt_pg_open(st, conninfo, password_file);
    if (e == KEYTIER_OK)
        e = kt_migrate(st, "PostgreSQL store");
    if (e != KEYTIER_OK) {
        kt_store_close(st);
        return e;
    }
    *out = st;
    return KEYTIER_OK;
}

keytier_err kt_store_open(const char *path, struct kt_store **out)
{
    return kt_store_open_with(path, NULL, out);
}

keytier_err kt_store_open_with(const char *path, const char *password_file,
                               struct kt_store **out)
{
    if (kt_store_is_pg(path))
        return kt_store_open_pg(path, password_file, out);
    if (password_file != NULL)
        return kt_err(KEYTIER_E_CONFIG,
                      "store.password_file is for a PostgreSQL store; the "
                      "store %s is a SQLite file: remove the key",
                      path);
    keytier_err e = kt_mkdirs(path);
    if (e != KEYTIER_OK)
        return e;
    /* 0600 whatever the umask; SQLite gives its -wal and -shm files the
     * mode of the database */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || !kt_file_private(fd)) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return kt_err(KEYTIER_E_STORE, "cannot open %s: %s", path,
                      strerror(err));
    }
    close(fd);

    struct kt_store *st = NULL;
    e = kt_store_new(&st);
    if (e != KEYTIER_OK)
        return e;
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        e = kt_err(KEYTIER_E_STORE, "cannot open %s: %s", path,
                   st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    if (sqlite3_busy_timeout(st->db, KT_BUSY_TIMEOUT_MS) != SQLITE_OK) {
        e = kt_db_fail(st, path);
        goto fail;
    }
    if (!kt_enable_wal(st)) {
        e = kt_db_fail(st, "cannot enable WAL");
        goto fail;
    }
    e = kt_db_exec(st, path,
                   "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON");
    if (e == KEYTIER_OK)
        e = kt_migrate(st, path);
    if (e != KEYTIER_OK)
        goto fail;
    *out = st;
    return KEYTIER_OK;
fail:
    kt_store_close(st);
    return e;
}

void kt_store_close(struct kt_store *st)
{
    if (st == NULL)
        return;
    kt_pg_close(st);
    /* Finalizing repeats a statement's last failure, reported already. */
    for (size_t i = 0; i < KT_STMT_CACHE; i++)
        (void)sqlite3_finalize(st->cache[i].q);
    /* Busy only with a statement left unfinalized, and all are above. */
    (void)sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

uint64_t kt_store_ops(struct kt_store *st)
{
    return atomic_load(&st->ops);
}
