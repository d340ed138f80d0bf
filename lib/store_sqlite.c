/*
 * SQLite implementation of store.h.
 *
 * WAL journal (readers never block the writer), a busy timeout so several
 * processes can share one file, and BEGIN IMMEDIATE for every change so a
 * check and the write that depends on it (the DEP limit) see the same
 * state.  synchronous=NORMAL: in WAL mode a crash keeps the database
 * consistent (old or new state); a power loss may drop the last commits.
 *
 * The schema is versioned with PRAGMA user_version; kt_migrations[i] moves
 * version i to i+1 and runs inside the same transaction as the version bump.
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

#include <stdatomic.h>

#include <openssl/rand.h>
#include <sqlite3.h>

#include "kt_lib.h"

#define KT_BUSY_TIMEOUT_MS 10000

#define KT_STMT_CACHE 40 /* 33 statements with the anchors */

struct kt_store {
    sqlite3 *db;
    pthread_mutex_t mu; /* one connection, statements grouped per call */
    /* Prepared statements, keyed by their SQL text's address (every query
     * is a literal), reused under mu. */
    struct {
        const char *sql;
        sqlite3_stmt *q;
    } cache[KT_STMT_CACHE];
    atomic_uint_fast64_t ops; /* statements run (kt_store_ops) */
    /* This connection's mark on the invalidation rows it
     * writes, so that its context skips them (it invalidated at once). */
    char origin[33];
};

/* Prepares sql once per store; later calls return the same statement,
 * reset.  Release with kt_done (never sqlite3_finalize). */
static int kt_prep(struct kt_store *st, const char *sql, sqlite3_stmt **q)
{
    size_t i;
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
    for (i = 0; i < KT_STMT_CACHE && st->cache[i].sql != NULL; i++)
        if (st->cache[i].sql == sql) {
            *q = st->cache[i].q;
            return SQLITE_OK;
        }
    int rc =
        sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, q, NULL);
    if (rc == SQLITE_OK && i < KT_STMT_CACHE) {
        st->cache[i].sql = sql;
        st->cache[i].q = *q;
    }
    return rc;
}

static void kt_done(struct kt_store *st, sqlite3_stmt *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < KT_STMT_CACHE && st->cache[i].sql != NULL; i++)
        if (st->cache[i].q == q) {
            sqlite3_reset(q);
            sqlite3_clear_bindings(q);
            return;
        }
    sqlite3_finalize(q); /* cache full: not kept */
}

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
    /* 2 -> 3 (lifecycle): the pending copy of a roll, migrations with
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
    /* 3 -> 4 (cli): a DEP's optional human name; NULL for older DEPs. */
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
};

#define KT_SCHEMA_LATEST ((int)(sizeof kt_migrations / sizeof kt_migrations[0]))

int kt_store_schema_latest(void)
{
    return KT_SCHEMA_LATEST;
}

static keytier_err kt_store_fail(struct kt_store *st, const char *what)
{
    return kt_err(KEYTIER_E_STORE, "%s: %s", what, sqlite3_errmsg(st->db));
}

static int kt_exec(struct kt_store *st, const char *sql)
{
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
    return sqlite3_exec(st->db, sql, NULL, NULL, NULL);
}

static keytier_err kt_begin(struct kt_store *st)
{
    if (kt_exec(st, "BEGIN IMMEDIATE") != SQLITE_OK)
        return kt_store_fail(st, "begin");
    return KEYTIER_OK;
}

static keytier_err kt_commit(struct kt_store *st)
{
    if (kt_exec(st, "COMMIT") != SQLITE_OK) {
        keytier_err e = kt_store_fail(st, "commit");
        kt_exec(st, "ROLLBACK");
        return e;
    }
    return KEYTIER_OK;
}

static void kt_rollback(struct kt_store *st)
{
    kt_exec(st, "ROLLBACK");
}

static int kt_user_version(struct kt_store *st)
{
    sqlite3_stmt *q;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

int kt_store_schema_version(struct kt_store *st)
{
    pthread_mutex_lock(&st->mu);
    int v = kt_user_version(st);
    pthread_mutex_unlock(&st->mu);
    return v;
}

static keytier_err kt_migrate(struct kt_store *st, const char *path)
{
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        return e;
    int v = kt_user_version(st); /* read inside the write lock */
    if (v < 0) {
        e = kt_store_fail(st, path);
        goto fail;
    }
    if (v > KT_SCHEMA_LATEST) {
        e = kt_err(KEYTIER_E_STORE_VERSION,
                   "%s has schema version %d, this library knows up to %d",
                   path, v, KT_SCHEMA_LATEST);
        goto fail;
    }
    for (; v < KT_SCHEMA_LATEST; v++) {
        char bump[64];
        if (kt_exec(st, kt_migrations[v]) != SQLITE_OK) {
            e = kt_store_fail(st, "migration");
            goto fail;
        }
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (kt_exec(st, bump) != SQLITE_OK) {
            e = kt_store_fail(st, "migration");
            goto fail;
        }
    }
    return kt_commit(st);
fail:
    kt_rollback(st);
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
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
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
            rc == SQLITE_ROW ? sqlite3_column_text(q, 0) : NULL;
        bool wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
        sqlite3_finalize(q);
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

keytier_err kt_store_open(const char *path, struct kt_store **out)
{
    keytier_err e = kt_mkdirs(path);
    if (e != KEYTIER_OK)
        return e;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return kt_err(KEYTIER_E_STORE, "cannot open %s: %s", path,
                      strerror(errno));
    close(fd);

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
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        e = kt_err(KEYTIER_E_STORE, "cannot open %s: %s", path,
                   st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, KT_BUSY_TIMEOUT_MS);
    if (!kt_enable_wal(st)) {
        e = kt_store_fail(st, "cannot enable WAL");
        goto fail;
    }
    if (kt_exec(st, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON") !=
        SQLITE_OK) {
        e = kt_store_fail(st, path);
        goto fail;
    }
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
    for (size_t i = 0; i < KT_STMT_CACHE; i++)
        sqlite3_finalize(st->cache[i].q);
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

/* ---- helpers ------------------------------------------------------------ */

static keytier_err kt_inval_add_locked(struct kt_store *st, int scope,
                                       const char *value, const char *reason);

static void kt_col_text(sqlite3_stmt *q, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    kt_strlcpy(dst, t ? (const char *)t : "", cap);
}

/* Copies a blob column into dst, false if it does not fit exactly/at most. */
static bool kt_col_blob(sqlite3_stmt *q, int col, uint8_t *dst, size_t cap,
                        size_t *len)
{
    int n = sqlite3_column_bytes(q, col);
    const void *p = sqlite3_column_blob(q, col);
    struct kt_rd rd;
    kt_rd_init(&rd, p, n > 0 ? (size_t)n : 0);
    if (n < 0 || !kt_rd_copy(&rd, dst, cap, (size_t)n))
        return false;
    *len = (size_t)n;
    return true;
}

/* ---- DEPs --------------------------------------------------------------- */

static keytier_err kt_dep_count_locked(struct kt_store *st, const char *tenant,
                                       const char *workload, unsigned *count)
{
    sqlite3_stmt *q;
    if (kt_prep(st,
                "SELECT count(*) FROM deps WHERE tenant = ?1 AND "
                "workload = ?2 AND state != ?3",
                &q) != SQLITE_OK)
        return kt_store_fail(st, "count DEPs");
    sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, workload, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, KEYTIER_DEP_PURGED);
    keytier_err e = KEYTIER_OK;
    if (sqlite3_step(q) == SQLITE_ROW)
        *count = (unsigned)sqlite3_column_int(q, 0);
    else
        e = kt_store_fail(st, "count DEPs");
    kt_done(st, q);
    return e;
}

keytier_err kt_store_dep_count(struct kt_store *st, const char *tenant,
                               const char *workload, unsigned *count)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_dep_count_locked(st, tenant, workload, count);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_insert(struct kt_store *st,
                                const struct kt_dep_rec *dep, unsigned limit)
{
    sqlite3_stmt *q = NULL;
    unsigned count = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    e = kt_dep_count_locked(st, dep->tenant, dep->workload, &count);
    if (e != KEYTIER_OK)
        goto fail;
    if (count >= limit) {
        e = kt_err(KEYTIER_E_DEP_LIMIT,
                   "tenant %s already has %u DEPs for workload %s (limit %u)",
                   dep->tenant, count, dep->workload, limit);
        goto fail;
    }
    if (kt_prep(st,
                "INSERT INTO deps(dep_id, policy_id, tenant, "
                "workload, state, created, key_check, name) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "insert DEP");
        goto fail;
    }
    sqlite3_bind_text(q, 1, dep->dep_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, dep->policy_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, dep->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, dep->workload, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 5, dep->state);
    sqlite3_bind_int64(q, 6, dep->created);
    sqlite3_bind_blob(q, 7, dep->check, sizeof dep->check, SQLITE_STATIC);
    if (dep->name[0] != '\0')
        sqlite3_bind_text(q, 8, dep->name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 8); /* no name */
    if (sqlite3_step(q) != SQLITE_DONE) {
        e = kt_store_fail(st, "insert DEP");
        goto fail;
    }
    kt_done(st, q);
    q = NULL;
    for (int slot = 0; slot < 3; slot++) {
        const struct kt_root_rec *r = &dep->roots[slot];
        if (kt_prep(st,
                    "INSERT INTO dep_roots(dep_id, slot, uri, "
                    "mech, wrapped) VALUES (?1, ?2, ?3, ?4, ?5)",
                    &q) != SQLITE_OK) {
            e = kt_store_fail(st, "insert DEP root");
            goto fail;
        }
        sqlite3_bind_text(q, 1, dep->dep_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 2, slot);
        sqlite3_bind_text(q, 3, r->uri, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, r->mech, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 5, r->wrapped, (int)r->wrapped_len, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) {
            e = kt_store_fail(st, "insert DEP root");
            goto fail;
        }
        kt_done(st, q);
        q = NULL;
    }
    e = kt_commit(st);
    goto out;
fail:
    kt_done(st, q);
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

#define KT_DEP_COLS                                                            \
    "dep_id, policy_id, tenant, workload, state, created, key_check, name"

static keytier_err kt_dep_row(struct kt_store *st, sqlite3_stmt *q,
                              struct kt_dep_rec *d)
{
    memset(d, 0, sizeof *d);
    kt_col_text(q, 0, d->dep_id, sizeof d->dep_id);
    kt_col_text(q, 1, d->policy_id, sizeof d->policy_id);
    kt_col_text(q, 2, d->tenant, sizeof d->tenant);
    kt_col_text(q, 3, d->workload, sizeof d->workload);
    d->state = sqlite3_column_int(q, 4);
    d->created = sqlite3_column_int64(q, 5);
    size_t n;
    if (!kt_col_blob(q, 6, d->check, sizeof d->check, &n) ||
        n != sizeof d->check)
        return kt_err(KEYTIER_E_FORMAT, "DEP %s: bad key check value",
                      d->dep_id);
    kt_col_text(q, 7, d->name, sizeof d->name); /* NULL: "" */

    sqlite3_stmt *r;
    if (kt_prep(st,
                "SELECT slot, uri, mech, wrapped FROM dep_roots "
                "WHERE dep_id = ?1",
                &r) != SQLITE_OK)
        return kt_store_fail(st, "read DEP roots");
    sqlite3_bind_text(r, 1, d->dep_id, -1, SQLITE_STATIC);
    unsigned seen = 0;
    keytier_err e = KEYTIER_OK;
    int rc;
    while ((rc = sqlite3_step(r)) == SQLITE_ROW) {
        int slot = sqlite3_column_int(r, 0);
        if (slot < 0 || slot > 2) {
            e = kt_err(KEYTIER_E_FORMAT, "DEP %s: bad root slot", d->dep_id);
            break;
        }
        struct kt_root_rec *rr = &d->roots[slot];
        kt_col_text(r, 1, rr->uri, sizeof rr->uri);
        kt_col_text(r, 2, rr->mech, sizeof rr->mech);
        if (!kt_col_blob(r, 3, rr->wrapped, sizeof rr->wrapped,
                         &rr->wrapped_len)) {
            e = kt_err(KEYTIER_E_FORMAT, "DEP %s: wrapped copy too large",
                       d->dep_id);
            break;
        }
        seen |= 1u << slot;
    }
    if (e == KEYTIER_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = kt_store_fail(st, "read DEP roots");
    /* lifecycle: a purged DEP keeps its row, without wrapped copies. */
    if (e == KEYTIER_OK && seen != 7 &&
        !(seen == 0 && d->state == KEYTIER_DEP_PURGED))
        e = kt_err(KEYTIER_E_FORMAT, "DEP %s: missing wrapped copies",
                   d->dep_id);
    kt_done(st, r);
    return e;
}

keytier_err kt_store_dep_get(struct kt_store *st, const char *dep_id,
                             struct kt_dep_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st, "SELECT " KT_DEP_COLS " FROM deps WHERE dep_id = ?1", &q) !=
        SQLITE_OK) {
        e = kt_store_fail(st, "read DEP");
        goto out;
    }
    sqlite3_bind_text(q, 1, dep_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        e = kt_dep_row(st, q, out);
    else if (rc == SQLITE_DONE)
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND, "%s", dep_id);
    else
        e = kt_store_fail(st, "read DEP");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_list(struct kt_store *st, const char *tenant,
                              const char *workload, struct kt_dep_rec **out,
                              size_t *count)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    struct kt_dep_rec *list = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT " KT_DEP_COLS " FROM deps "
                "WHERE (?1 IS NULL OR tenant = ?1) "
                "AND (?2 IS NULL OR workload = ?2) "
                "ORDER BY created, rowid",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "list DEPs");
        goto out;
    }
    if (tenant)
        sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
    if (workload)
        sqlite3_bind_text(q, 2, workload, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (!kt_array_reserve((void **)&list, &cap, n, sizeof *list, 8)) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        e = kt_dep_row(st, q, &list[n]);
        if (e != KEYTIER_OK)
            break;
        n++;
    }
    if (e == KEYTIER_OK && rc != SQLITE_DONE)
        e = kt_store_fail(st, "list DEPs");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    if (e != KEYTIER_OK) {
        free(list);
        return e;
    }
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

keytier_err kt_store_dep_state(struct kt_store *st, const char *dep_id,
                               int *state)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st, "SELECT state FROM deps WHERE dep_id = ?1", &q) !=
        SQLITE_OK) {
        e = kt_store_fail(st, "read DEP state");
        goto out;
    }
    sqlite3_bind_text(q, 1, dep_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *state = sqlite3_column_int(q, 0);
        e = KEYTIER_OK;
    } else if (rc == SQLITE_DONE) {
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND, "%s", dep_id);
    } else {
        e = kt_store_fail(st, "read DEP state");
    }
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_dep_set_state(struct kt_store *st, const char *dep_id,
                                   int state)
{
    sqlite3_stmt *q;
    pthread_mutex_lock(&st->mu);
    /* The state change and its cache invalidation commit
     * together. */
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    if (kt_prep(st, "UPDATE deps SET state = ?2 WHERE dep_id = ?1", &q) !=
        SQLITE_OK) {
        e = kt_store_fail(st, "update DEP");
        goto fail;
    }
    sqlite3_bind_text(q, 1, dep_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, state);
    if (sqlite3_step(q) != SQLITE_DONE)
        e = kt_store_fail(st, "update DEP");
    else if (sqlite3_changes(st->db) == 0)
        e = kt_err(KEYTIER_E_DEP_NOT_FOUND, "%s", dep_id);
    else
        e = KEYTIER_OK;
    kt_done(st, q);
    if (e == KEYTIER_OK)
        e = kt_inval_add_locked(st, KT_INVAL_DEP, dep_id,
                                state == KEYTIER_DEP_DISABLED ? "disable"
                                                              : "state");
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* ---- tier keys ---------------------------------------------------------- */

#define KT_KEY_COLS                                                            \
    "key_id, tenant, workload, dep_id, parent_id, level, name, created, "      \
    "wrapped"

keytier_err kt_store_key_insert(struct kt_store *st, const struct kt_key_rec *k)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "INSERT INTO tier_keys(" KT_KEY_COLS ") VALUES "
                "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "insert key");
        goto out;
    }
    sqlite3_bind_text(q, 1, k->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, k->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, k->workload, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, k->dep_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, k->parent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 6, (int)k->level);
    sqlite3_bind_text(q, 7, k->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 8, k->created);
    sqlite3_bind_blob(q, 9, k->wrapped, sizeof k->wrapped, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        e = KEYTIER_OK;
    else if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE ||
             sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
        e = kt_err(KEYTIER_E_EXISTS, "tenant %s already has '%s' in %s",
                   k->tenant, k->name, k->workload);
    else
        e = kt_store_fail(st, "insert key");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_key_row(sqlite3_stmt *q, struct kt_key_rec *k)
{
    memset(k, 0, sizeof *k);
    kt_col_text(q, 0, k->key_id, sizeof k->key_id);
    kt_col_text(q, 1, k->tenant, sizeof k->tenant);
    kt_col_text(q, 2, k->workload, sizeof k->workload);
    kt_col_text(q, 3, k->dep_id, sizeof k->dep_id);
    kt_col_text(q, 4, k->parent_id, sizeof k->parent_id);
    k->level = (unsigned)sqlite3_column_int(q, 5);
    kt_col_text(q, 6, k->name, sizeof k->name);
    k->created = sqlite3_column_int64(q, 7);
    size_t n;
    if (!kt_col_blob(q, 8, k->wrapped, sizeof k->wrapped, &n) ||
        n != sizeof k->wrapped)
        return kt_err(KEYTIER_E_AUTH, "key %s: wrapped key has wrong length",
                      k->key_id);
    return KEYTIER_OK;
}

static keytier_err kt_key_get_one(struct kt_store *st, const char *sql,
                                  const char *a, const char *b, const char *c,
                                  const char *what, struct kt_key_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st, sql, &q) != SQLITE_OK) {
        e = kt_store_fail(st, "read key");
        goto out;
    }
    sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(q, 2, b, -1, SQLITE_STATIC);
    if (c)
        sqlite3_bind_text(q, 3, c, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        e = kt_key_row(q, out);
    else if (rc == SQLITE_DONE)
        e = kt_err(KEYTIER_E_NOT_FOUND, "%s", what);
    else
        e = kt_store_fail(st, "read key");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_key_get(struct kt_store *st, const char *key_id,
                             struct kt_key_rec *out)
{
    return kt_key_get_one(
        st, "SELECT " KT_KEY_COLS " FROM tier_keys WHERE key_id = ?1", key_id,
        NULL, NULL, key_id, out);
}

keytier_err kt_store_key_get_by_name(struct kt_store *st, const char *tenant,
                                     const char *workload, const char *name,
                                     struct kt_key_rec *out)
{
    return kt_key_get_one(st,
                          "SELECT " KT_KEY_COLS " FROM tier_keys WHERE "
                          "tenant = ?1 AND workload = ?2 AND name = ?3 AND "
                          "level = 1",
                          tenant, workload, name, name, out);
}

keytier_err kt_store_key_list(struct kt_store *st, const char *tenant,
                              const char *parent_id, struct kt_key_rec **out,
                              size_t *count)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    struct kt_key_rec *list = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT " KT_KEY_COLS " FROM tier_keys WHERE "
                "tenant = ?1 AND parent_id = ?2 "
                "ORDER BY created, rowid",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "list keys");
        goto out;
    }
    sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, parent_id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (!kt_array_reserve((void **)&list, &cap, n, sizeof *list, 16)) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        e = kt_key_row(q, &list[n]);
        if (e != KEYTIER_OK)
            break;
        n++;
    }
    if (e == KEYTIER_OK && rc != SQLITE_DONE)
        e = kt_store_fail(st, "list keys");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    if (e != KEYTIER_OK) {
        free(list);
        return e;
    }
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

/* ==== lifecycle: rolls, migrations, purge, keysets ====================== */

/* Runs one statement with text binds (NULL: bind NULL) to completion. */
static keytier_err kt_run(struct kt_store *st, const char *sql,
                          const char *const *texts, size_t n, int64_t i1,
                          const char *what)
{
    sqlite3_stmt *q;
    if (kt_prep(st, sql, &q) != SQLITE_OK)
        return kt_store_fail(st, what);
    for (size_t i = 0; i < n; i++)
        if (texts[i])
            sqlite3_bind_text(q, (int)i + 1, texts[i], -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(q) > (int)n)
        sqlite3_bind_int64(q, (int)n + 1, i1);
    int rc = sqlite3_step(q);
    kt_done(st, q);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return kt_store_fail(st, what);
    return KEYTIER_OK;
}

keytier_err kt_store_roll_begin(struct kt_store *st, const char *dep_id,
                                int slot, const struct kt_root_rec *pending,
                                int64_t now)
{
    sqlite3_stmt *q = NULL;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    if (kt_prep(st,
                "INSERT OR REPLACE INTO dep_roll(dep_id, slot, uri, mech, "
                "wrapped, started) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "roll");
        goto fail;
    }
    sqlite3_bind_text(q, 1, dep_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, slot);
    sqlite3_bind_text(q, 3, pending->uri, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, pending->mech, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 5, pending->wrapped, (int)pending->wrapped_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, now);
    int rc = sqlite3_step(q);
    kt_done(st, q);
    if (rc != SQLITE_DONE) {
        e = kt_store_fail(st, "roll");
        goto fail;
    }
    const char *t[] = {dep_id};
    e = kt_run(st, "UPDATE deps SET state = ?2 WHERE dep_id = ?1", t, 1,
               KEYTIER_DEP_ROLLING, "roll");
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_roll_get(struct kt_store *st, const char *dep_id,
                              int *slot, struct kt_root_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT slot, uri, mech, wrapped FROM dep_roll WHERE "
                "dep_id = ?1",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "read roll");
        goto out;
    }
    sqlite3_bind_text(q, 1, dep_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        *slot = sqlite3_column_int(q, 0);
        kt_col_text(q, 1, out->uri, sizeof out->uri);
        kt_col_text(q, 2, out->mech, sizeof out->mech);
        e = kt_col_blob(q, 3, out->wrapped, sizeof out->wrapped,
                        &out->wrapped_len)
                ? KEYTIER_OK
                : kt_err(KEYTIER_E_FORMAT, "DEP %s: pending copy", dep_id);
    } else if (rc == SQLITE_DONE) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "DEP %s has no roll pending", dep_id);
    } else {
        e = kt_store_fail(st, "read roll");
    }
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_roll_end(struct kt_store *st, const char *dep_id,
                              bool commit)
{
    const char *t[] = {dep_id};
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    if (commit) {
        e = kt_run(st,
                   "UPDATE dep_roots SET (uri, mech, wrapped) = "
                   "(SELECT uri, mech, wrapped FROM dep_roll r WHERE "
                   "r.dep_id = dep_roots.dep_id) WHERE dep_id = ?1 AND "
                   "slot = (SELECT slot FROM dep_roll WHERE dep_id = ?1)",
                   t, 1, 0, "roll");
        if (e == KEYTIER_OK && sqlite3_changes(st->db) != 1)
            e = kt_err(KEYTIER_E_NOT_FOUND, "DEP %s has no roll pending",
                       dep_id);
        /* Cached copies name the old root */
        if (e == KEYTIER_OK)
            e = kt_inval_add_locked(st, KT_INVAL_DEP, dep_id, "roll");
        if (e != KEYTIER_OK)
            goto fail;
    }
    e = kt_run(st, "DELETE FROM dep_roll WHERE dep_id = ?1", t, 1, 0, "roll");
    if (e == KEYTIER_OK)
        e = kt_run(st,
                   "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND "
                   "state = 2",
                   t, 1, KEYTIER_DEP_REGISTERED, "roll");
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_tenant_purge(struct kt_store *st, const char *tenant,
                                  size_t *keys)
{
    const char *t[] = {tenant};
    pthread_mutex_lock(&st->mu);
    /* Deleted pages are overwritten with zeros, and the WAL is emptied
     * afterwards: the wrapped copies leave the file, not just the index. */
    keytier_err e = kt_exec(st, "PRAGMA secure_delete = ON") == SQLITE_OK
                        ? kt_begin(st)
                        : kt_store_fail(st, "purge");
    if (e != KEYTIER_OK)
        goto out;
    static const char *const sql[] = {
        "DELETE FROM dep_roll WHERE dep_id IN "
        "(SELECT dep_id FROM deps WHERE tenant = ?1)",
        "DELETE FROM dep_roots WHERE dep_id IN "
        "(SELECT dep_id FROM deps WHERE tenant = ?1)",
        "DELETE FROM migration_items WHERE migration_id IN "
        "(SELECT migration_id FROM migrations WHERE tenant = ?1)",
        "DELETE FROM migrations WHERE tenant = ?1",
        "DELETE FROM tier_keys WHERE tenant = ?1",
        "UPDATE deps SET state = ?2 WHERE tenant = ?1",
    };
    *keys = 0;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        e = kt_run(st, sql[i], t, 1, KEYTIER_DEP_PURGED, "purge");
        if (e != KEYTIER_OK)
            goto fail;
        if (i == 4)
            *keys = (size_t)sqlite3_changes(st->db);
    }
    e = kt_inval_add_locked(st, KT_INVAL_TENANT, tenant, "purge");
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    if (e == KEYTIER_OK)
        kt_exec(st, "PRAGMA wal_checkpoint(TRUNCATE)");
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* ---- migrations ---- */

/* Adds to migration m every level-1 key of its tenant and workload that is
 * not under its target DEP, restricted to one name or one source DEP. */
static keytier_err kt_mig_add_locked(struct kt_store *st,
                                     const struct kt_mig_rec *m, size_t *added)
{
    sqlite3_stmt *q;
    if (kt_prep(st,
                "INSERT OR IGNORE INTO migration_items(migration_id, key_id) "
                "SELECT ?1, key_id FROM tier_keys WHERE tenant = ?2 AND "
                "workload = ?3 AND level = 1 AND dep_id != ?4 AND "
                "(?5 IS NULL OR name = ?5) AND (?6 IS NULL OR dep_id = ?6)",
                &q) != SQLITE_OK)
        return kt_store_fail(st, "migration items");
    sqlite3_bind_text(q, 1, m->migration_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, m->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, m->workload, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, m->target_dep, -1, SQLITE_STATIC);
    if (!strncmp(m->scope, "name:", 5))
        sqlite3_bind_text(q, 5, m->scope + 5, -1, SQLITE_STATIC);
    if (!strncmp(m->scope, "dep:", 4))
        sqlite3_bind_text(q, 6, m->scope + 4, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    kt_done(st, q);
    if (rc != SQLITE_DONE)
        return kt_store_fail(st, "migration items");
    *added = (size_t)sqlite3_changes(st->db);
    if (*added == 0)
        return KEYTIER_OK;
    /* The counters move with the items, so progress is one row read. */
    const char *t[] = {m->migration_id};
    return kt_run(st,
                  "UPDATE migrations SET total = total + ?2 WHERE "
                  "migration_id = ?1",
                  t, 1, (int64_t)*added, "migration items");
}

keytier_err kt_store_mig_create(struct kt_store *st, const struct kt_mig_rec *m,
                                size_t *total)
{
    sqlite3_stmt *q;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    if (kt_prep(st,
                "INSERT INTO migrations(migration_id, tenant, workload, "
                "target_dep, scope, operation, state, created) VALUES "
                "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "create migration");
        goto fail;
    }
    sqlite3_bind_text(q, 1, m->migration_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, m->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, m->workload, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, m->target_dep, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, m->scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, m->operation, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 7, m->state);
    sqlite3_bind_int64(q, 8, m->created);
    int rc = sqlite3_step(q);
    kt_done(st, q);
    if (rc != SQLITE_DONE) {
        e = kt_store_fail(st, "create migration");
        goto fail;
    }
    e = kt_mig_add_locked(st, m, total);
    if (e != KEYTIER_OK)
        goto fail;
    const char *t[] = {m->target_dep};
    e = kt_run(st, "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND state = 1",
               t, 1, KEYTIER_DEP_MIGRATING, "create migration");
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_add(struct kt_store *st, const struct kt_mig_rec *m,
                             size_t *added)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_mig_add_locked(st, m, added);
        if (e == KEYTIER_OK)
            e = kt_commit(st);
        else
            kt_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

#define KT_MIG_COLS                                                            \
    "m.migration_id, m.tenant, m.workload, m.target_dep, m.scope, "            \
    "m.operation, m.state, m.created, m.total, m.done"

static void kt_mig_row(sqlite3_stmt *q, struct kt_mig_rec *m)
{
    memset(m, 0, sizeof *m);
    kt_col_text(q, 0, m->migration_id, sizeof m->migration_id);
    kt_col_text(q, 1, m->tenant, sizeof m->tenant);
    kt_col_text(q, 2, m->workload, sizeof m->workload);
    kt_col_text(q, 3, m->target_dep, sizeof m->target_dep);
    kt_col_text(q, 4, m->scope, sizeof m->scope);
    kt_col_text(q, 5, m->operation, sizeof m->operation);
    m->state = sqlite3_column_int(q, 6);
    m->created = sqlite3_column_int64(q, 7);
    m->total = (uint64_t)sqlite3_column_int64(q, 8);
    m->done = (uint64_t)sqlite3_column_int64(q, 9);
}

keytier_err kt_store_mig_get(struct kt_store *st, const char *id,
                             struct kt_mig_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT " KT_MIG_COLS " FROM migrations m WHERE "
                "m.migration_id = ?1",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "read migration");
        goto out;
    }
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        kt_mig_row(q, out);
        e = KEYTIER_OK;
    } else if (rc == SQLITE_DONE) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "migration %s", id);
    } else {
        e = kt_store_fail(st, "read migration");
    }
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_list(struct kt_store *st, const char *tenant,
                              struct kt_mig_rec **out, size_t *count)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    struct kt_mig_rec *list = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT " KT_MIG_COLS " FROM migrations m WHERE "
                "m.tenant = ?1 ORDER BY m.created, m.rowid",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "list migrations");
        goto out;
    }
    sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (!kt_array_reserve((void **)&list, &cap, n, sizeof *list, 4)) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        kt_mig_row(q, &list[n++]);
    }
    if (e == KEYTIER_OK && rc != SQLITE_DONE)
        e = kt_store_fail(st, "list migrations");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    if (e != KEYTIER_OK) {
        free(list);
        return e;
    }
    *out = list;
    *count = n;
    return KEYTIER_OK;
}

keytier_err kt_store_mig_todo(struct kt_store *st, const char *id, size_t max,
                              struct kt_mig_todo *out, size_t *n)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    /* The items to do with their keys, in one read (a deleted key comes
     * back with NULL columns). */
    if (kt_prep(st,
                "SELECT k.key_id, k.tenant, k.workload, k.dep_id, "
                "k.parent_id, k.level, k.name, k.created, k.wrapped, "
                "i.key_id FROM migration_items i LEFT JOIN tier_keys k ON "
                "k.key_id = i.key_id WHERE i.migration_id = ?1 AND "
                "i.done = 0 LIMIT ?2",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "migration items");
        goto out;
    }
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)max);
    int rc = SQLITE_DONE;
    while (*n < max && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct kt_mig_todo *t = &out[*n];
        memset(t, 0, sizeof *t);
        kt_col_text(q, 9, t->key_id, sizeof t->key_id);
        t->gone = sqlite3_column_type(q, 0) == SQLITE_NULL;
        if (!t->gone) {
            e = kt_key_row(q, &t->rec);
            if (e != KEYTIER_OK)
                break;
        }
        (*n)++;
    }
    if (e == KEYTIER_OK && *n < max && rc != SQLITE_DONE)
        e = kt_store_fail(st, "migration items");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_apply(struct kt_store *st, const char *id,
                               const struct kt_mig_update *u, size_t n,
                               size_t *applied)
{
    sqlite3_stmt *q = NULL;
    bool skip = false;
    *applied = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (u[i].item)
            skip = false;
        if (skip)
            continue;
        if (u[i].gone) {
            /* The key was deleted since the item was listed. */
        } else {
            if (kt_prep(st,
                        "UPDATE tier_keys SET dep_id = ?2, parent_id = ?3, "
                        "wrapped = ?4 WHERE key_id = ?1 AND dep_id = ?5",
                        &q) != SQLITE_OK) {
                e = kt_store_fail(st, "migrate key");
                goto fail;
            }
            sqlite3_bind_text(q, 1, u[i].key_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, u[i].dep_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 3, u[i].parent_id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(q, 4, u[i].wrapped, sizeof u[i].wrapped,
                              SQLITE_STATIC);
            sqlite3_bind_text(q, 5, u[i].old_dep, -1, SQLITE_STATIC);
            int rc = sqlite3_step(q);
            kt_done(st, q);
            if (rc != SQLITE_DONE) {
                e = kt_store_fail(st, "migrate key");
                goto fail;
            }
            if (sqlite3_changes(st->db) == 0) {
                /* Moved by another run since we read it: its subtree is
                 * left alone and the item stays to do. */
                skip = u[i].item;
                continue;
            }
        }
        if (u[i].item) {
            const char *t[] = {id, u[i].key_id};
            e = kt_run(st,
                       "UPDATE migration_items SET done = 1 WHERE "
                       "migration_id = ?1 AND key_id = ?2 AND done = 0",
                       t, 2, 0, "migrate key");
            if (e != KEYTIER_OK)
                goto fail;
            if (sqlite3_changes(st->db) == 1)
                (*applied)++;
            /* The key (and those below it) moved to another
             * DEP: cached copies would open under the old parent. */
            if (!u[i].gone) {
                e = kt_inval_add_locked(st, KT_INVAL_KEY, u[i].key_id,
                                        "migrate");
                if (e != KEYTIER_OK)
                    goto fail;
            }
        }
    }
    if (*applied > 0) {
        const char *t[] = {id};
        e = kt_run(st,
                   "UPDATE migrations SET done = done + ?2 WHERE "
                   "migration_id = ?1",
                   t, 1, (int64_t)*applied, "migrate key");
        if (e != KEYTIER_OK)
            goto fail;
    }
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
    *applied = 0;
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_mig_finish(struct kt_store *st, const char *id,
                                const char *target_dep)
{
    const char *t[] = {id};
    const char *d[] = {target_dep};
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e == KEYTIER_OK)
        e = kt_run(st,
                   "UPDATE migrations SET state = ?2 WHERE "
                   "migration_id = ?1",
                   t, 1, 1, "finish migration");
    /* The target leaves `migrating` once no other migration to it runs. */
    if (e == KEYTIER_OK)
        e = kt_run(st,
                   "UPDATE deps SET state = ?2 WHERE dep_id = ?1 AND "
                   "state = 3 AND NOT EXISTS (SELECT 1 FROM migrations WHERE "
                   "target_dep = ?1 AND state = 0)",
                   d, 1, KEYTIER_DEP_REGISTERED, "finish migration");
    if (e == KEYTIER_OK)
        e = kt_commit(st);
    else
        kt_rollback(st);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* ---- keysets ---- */

static keytier_err kt_store_ks_key_insert_locked(struct kt_store *st,
                                                 const struct kt_ks_key_rec *k)
{
    sqlite3_stmt *q;
    if (kt_prep(st,
                "INSERT INTO keyset_keys(name, version, mech, wrapped, "
                "created, archived, state) VALUES (?1, ?2, ?3, ?4, ?5, NULL, "
                "0)",
                &q) != SQLITE_OK)
        return kt_store_fail(st, "keyset key");
    sqlite3_bind_text(q, 1, k->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, k->version);
    sqlite3_bind_text(q, 3, k->mech, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 4, k->wrapped, (int)k->wrapped_len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, k->created);
    int rc = sqlite3_step(q);
    kt_done(st, q);
    if (rc != SQLITE_DONE)
        return kt_store_fail(st, "keyset key");
    return KEYTIER_OK;
}

keytier_err kt_store_keyset_insert(struct kt_store *st,
                                   const struct kt_keyset_rec *ks,
                                   const struct kt_ks_key_rec *first)
{
    sqlite3_stmt *q;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    if (kt_prep(st,
                "INSERT INTO keysets(name, root_uri, rollover_after, "
                "retire_after, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "create keyset");
        goto fail;
    }
    sqlite3_bind_text(q, 1, ks->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, ks->root_uri, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, ks->rollover_after);
    sqlite3_bind_int64(q, 4, ks->retire_after);
    sqlite3_bind_int64(q, 5, ks->created);
    int rc = sqlite3_step(q);
    bool dup = rc != SQLITE_DONE &&
               sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_PRIMARYKEY;
    kt_done(st, q);
    if (rc != SQLITE_DONE) {
        e = dup ? kt_err(KEYTIER_E_EXISTS, "keyset %s", ks->name)
                : kt_store_fail(st, "create keyset");
        goto fail;
    }
    e = kt_store_ks_key_insert_locked(st, first);
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_keyset_get(struct kt_store *st, const char *name,
                                struct kt_keyset_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT name, root_uri, rollover_after, retire_after, created "
                "FROM keysets WHERE name = ?1",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "read keyset");
        goto out;
    }
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        kt_col_text(q, 0, out->name, sizeof out->name);
        kt_col_text(q, 1, out->root_uri, sizeof out->root_uri);
        out->rollover_after = sqlite3_column_int64(q, 2);
        out->retire_after = sqlite3_column_int64(q, 3);
        out->created = sqlite3_column_int64(q, 4);
        e = KEYTIER_OK;
    } else if (rc == SQLITE_DONE) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "keyset %s", name);
    } else {
        e = kt_store_fail(st, "read keyset");
    }
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* version 0: the current key. */
keytier_err kt_store_ks_key_get(struct kt_store *st, const char *name,
                                uint32_t version, struct kt_ks_key_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT name, version, mech, wrapped, created, "
                "coalesce(archived, 0), state FROM keyset_keys WHERE "
                "name = ?1 AND ((?2 = 0 AND state = 0) OR version = ?2)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "read keyset key");
        goto out;
    }
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, version);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        kt_col_text(q, 0, out->name, sizeof out->name);
        out->version = (uint32_t)sqlite3_column_int64(q, 1);
        kt_col_text(q, 2, out->mech, sizeof out->mech);
        out->created = sqlite3_column_int64(q, 4);
        out->archived = sqlite3_column_int64(q, 5);
        out->state = sqlite3_column_int(q, 6);
        e = kt_col_blob(q, 3, out->wrapped, sizeof out->wrapped,
                        &out->wrapped_len)
                ? KEYTIER_OK
                : kt_err(KEYTIER_E_FORMAT, "keyset %s: wrapped key", name);
    } else if (rc == SQLITE_DONE) {
        e = kt_err(KEYTIER_E_NOT_FOUND, "keyset %s has no key version %u", name,
                   (unsigned)version);
    } else {
        e = kt_store_fail(st, "read keyset key");
    }
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_ks_rollover(struct kt_store *st, uint32_t current,
                                 const struct kt_ks_key_rec *next, int64_t now)
{
    const char *t[] = {next->name};
    char cur[16];
    snprintf(cur, sizeof cur, "%u", (unsigned)current);
    const char *t2[] = {next->name, cur};
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e != KEYTIER_OK)
        goto out;
    /* Only if `current` is still current: two processes rolling at once
     * make one new version, not two. */
    e = kt_run(st,
               "UPDATE keyset_keys SET state = 1, archived = ?3 WHERE "
               "name = ?1 AND version = CAST(?2 AS INTEGER) AND state = 0",
               t2, 2, now, "keyset rollover");
    if (e != KEYTIER_OK)
        goto fail;
    if (sqlite3_changes(st->db) != 1) {
        e = kt_err(KEYTIER_E_EXISTS, "keyset %s was rolled over already",
                   next->name);
        goto fail;
    }
    (void)t;
    e = kt_store_ks_key_insert_locked(st, next);
    if (e != KEYTIER_OK)
        goto fail;
    e = kt_commit(st);
    goto out;
fail:
    kt_rollback(st);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_ks_retire(struct kt_store *st, const char *name,
                               int64_t archived_before, uint32_t *versions,
                               size_t max, size_t *n)
{
    sqlite3_stmt *q;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_exec(st, "PRAGMA secure_delete = ON") == SQLITE_OK
                        ? kt_begin(st)
                        : kt_store_fail(st, "retire");
    if (e != KEYTIER_OK)
        goto out;
    /* Retired keys lose their wrapped copy: nothing can open under them. */
    if (kt_prep(st,
                "UPDATE keyset_keys SET state = 2, wrapped = x'' WHERE "
                "name = ?1 AND state = 1 AND archived <= ?2 RETURNING version",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "retire");
        goto fail;
    }
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, archived_before);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (*n < max)
            versions[(*n)++] = (uint32_t)sqlite3_column_int64(q, 0);
    kt_done(st, q);
    if (rc != SQLITE_DONE) {
        e = kt_store_fail(st, "retire");
        goto fail;
    }
    e = kt_commit(st);
    if (e == KEYTIER_OK && *n > 0)
        kt_exec(st, "PRAGMA wal_checkpoint(TRUNCATE)");
    goto out;
fail:
    kt_rollback(st);
    *n = 0;
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}
/* ==== end lifecycle ===================================================== */

/* ==== cache invalidations ================================== */

static keytier_err kt_inval_add_locked(struct kt_store *st, int scope,
                                       const char *value, const char *reason)
{
    sqlite3_stmt *q;
    if (kt_prep(st,
                "INSERT INTO cache_invalidations(scope, value, reason, "
                "created, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
                &q) != SQLITE_OK)
        return kt_store_fail(st, "record cache invalidation");
    sqlite3_bind_int(q, 1, scope);
    sqlite3_bind_text(q, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
    sqlite3_bind_text(q, 5, st->origin, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    kt_done(st, q);
    if (rc != SQLITE_DONE)
        return kt_store_fail(st, "record cache invalidation");
    return KEYTIER_OK;
}

keytier_err kt_store_inval_publish(struct kt_store *st, int scope,
                                   const char *value, const char *reason)
{
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_inval_add_locked(st, scope, value, reason);
        if (e == KEYTIER_OK)
            e = kt_commit(st);
        else
            kt_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_head(struct kt_store *st, int64_t *seq)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    pthread_mutex_lock(&st->mu);
    *seq = 0;
    if (kt_prep(st,
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE "
                "name = 'cache_invalidations'), 0)",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "cache invalidations");
        goto out;
    }
    if (sqlite3_step(q) == SQLITE_ROW)
        *seq = sqlite3_column_int64(q, 0);
    else
        e = kt_store_fail(st, "cache invalidations");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_read(struct kt_store *st, int64_t after,
                                struct kt_inval_rec *out, size_t max, size_t *n,
                                bool *gap)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    int rc = SQLITE_DONE;
    *n = 0;
    *gap = false;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT seq, scope, value, origin = ?3 FROM "
                "cache_invalidations WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "cache invalidations");
        goto out;
    }
    sqlite3_bind_int64(q, 1, after);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)max);
    sqlite3_bind_text(q, 3, st->origin, -1, SQLITE_STATIC);
    while (*n < max && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct kt_inval_rec *r = &out[*n];
        r->seq = sqlite3_column_int64(q, 0);
        r->scope = sqlite3_column_int(q, 1);
        kt_col_text(q, 2, r->value, sizeof r->value);
        r->own = sqlite3_column_int(q, 3) != 0;
        /* Seqs come one after the other (AUTOINCREMENT, rolled-back
         * inserts give theirs back): a hole is a pruned row. */
        if (r->seq != (*n ? out[*n - 1].seq : after) + 1)
            *gap = true;
        (*n)++;
    }
    if (*n < max && rc != SQLITE_DONE)
        e = kt_store_fail(st, "cache invalidations");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_prune(struct kt_store *st, int64_t before)
{
    const char *none[] = {NULL};
    pthread_mutex_lock(&st->mu);
    keytier_err e = kt_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_run(st, "DELETE FROM cache_invalidations WHERE created < ?1",
                   none, 0, before, "prune cache invalidations");
        if (e == KEYTIER_OK)
            e = kt_commit(st);
        else
            kt_rollback(st);
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_inval_root_deps(struct kt_store *st, const char *uri,
                                     char (**ids)[KEYTIER_ID_SIZE], size_t *n)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    char(*list)[KEYTIER_ID_SIZE] = NULL;
    size_t cap = 0;
    int rc;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st, "SELECT DISTINCT dep_id FROM dep_roots WHERE uri = ?1",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "DEPs of a root");
        goto out;
    }
    sqlite3_bind_text(q, 1, uri, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (!kt_array_reserve((void **)&list, &cap, *n, sizeof *list, 8)) {
            e = kt_err(KEYTIER_E_NOMEM, NULL);
            break;
        }
        kt_col_text(q, 0, list[*n], sizeof list[*n]);
        (*n)++;
    }
    if (e == KEYTIER_OK && rc != SQLITE_DONE)
        e = kt_store_fail(st, "DEPs of a root");
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    if (e != KEYTIER_OK) {
        free(list);
        *n = 0;
        return e;
    }
    *ids = list;
    return KEYTIER_OK;
}

uint64_t kt_store_ops(struct kt_store *st)
{
    return atomic_load(&st->ops);
}
/* ==== end cache invalidations ========================================== */

/* ==== audit anchors ========================================= */

keytier_err kt_store_anchor_put(struct kt_store *st,
                                const struct kt_anchor_rec *a, bool *applied)
{
    sqlite3_stmt *q;
    keytier_err e = KEYTIER_OK;
    *applied = false;
    pthread_mutex_lock(&st->mu);
    /* One statement, one transaction.  Never backwards: an anchor at or
     * past this Seq stays (a log cut back and appended to again must keep
     * the evidence of what it had). */
    if (kt_prep(st,
                "INSERT INTO audit_anchors (log_id, path, seq, hash, mac, "
                "updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                "ON CONFLICT (log_id) DO UPDATE SET path = excluded.path, "
                "seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, "
                "updated = excluded.updated WHERE excluded.seq > "
                "audit_anchors.seq",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "audit anchor");
        goto out;
    }
    sqlite3_bind_text(q, 1, a->log_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, a->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)a->seq);
    sqlite3_bind_text(q, 4, a->hash, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 5, a->mac, KT_ANCHOR_MAC_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, a->updated);
    if (sqlite3_step(q) != SQLITE_DONE)
        e = kt_store_fail(st, "audit anchor");
    else
        *applied = sqlite3_changes(st->db) > 0;
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_anchor_read(struct kt_store *st, sqlite3_stmt *q,
                                  struct kt_anchor_rec *out, const char *what)
{
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return kt_err(KEYTIER_E_NOT_FOUND, "no audit anchor for %s", what);
    if (rc != SQLITE_ROW)
        return kt_store_fail(st, "audit anchor");
    memset(out, 0, sizeof *out);
    kt_col_text(q, 0, out->log_id, sizeof out->log_id);
    kt_col_text(q, 1, out->path, sizeof out->path);
    sqlite3_int64 seq = sqlite3_column_int64(q, 2);
    kt_col_text(q, 3, out->hash, sizeof out->hash);
    out->updated = sqlite3_column_int64(q, 5);
    /* A row of another shape is not an anchor: refused like a bad MAC. */
    if (seq < 1 || sqlite3_column_bytes(q, 4) != KT_ANCHOR_MAC_SIZE)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "audit anchor of log %s is malformed", out->log_id);
    out->seq = (uint64_t)seq;
    memcpy(out->mac, sqlite3_column_blob(q, 4), KT_ANCHOR_MAC_SIZE);
    return KEYTIER_OK;
}

keytier_err kt_store_anchor_get(struct kt_store *st, const char *log_id,
                                struct kt_anchor_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT log_id, path, seq, hash, mac, updated FROM "
                "audit_anchors WHERE log_id = ?1",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "audit anchor");
        goto out;
    }
    sqlite3_bind_text(q, 1, log_id, -1, SQLITE_STATIC);
    e = kt_anchor_read(st, q, out, log_id);
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_anchor_other(struct kt_store *st, const char *path,
                                  const char *log_id, struct kt_anchor_rec *out)
{
    sqlite3_stmt *q;
    keytier_err e;
    pthread_mutex_lock(&st->mu);
    if (kt_prep(st,
                "SELECT log_id, path, seq, hash, mac, updated FROM "
                "audit_anchors WHERE path = ?1 AND log_id != ?2 ORDER BY "
                "updated DESC, rowid DESC LIMIT 1",
                &q) != SQLITE_OK) {
        e = kt_store_fail(st, "audit anchor");
        goto out;
    }
    sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, log_id, -1, SQLITE_STATIC);
    e = kt_anchor_read(st, q, out, path);
    kt_done(st, q);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}
/* ==== end audit anchors ================================================== */
