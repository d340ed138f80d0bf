/*
 * The PostgreSQL engine of the store (store_stmt.h), through libpq: the
 * connection and its reconnection, statements prepared once per
 * connection (named after their slot in the statement cache, ?N rewritten
 * to $N), parameters in text form but BLOBs in binary, results in text
 * form (bytea decoded, booleans read as 0/1), transactions serialised by
 * one advisory lock (docs/DESIGN.md, "Store"), and the schema translated
 * from the SQLite DDL with its version in a table.
 *
 * PostgreSQL's failures become the SQLite codes the family files compare
 * (SQLITE_CONSTRAINT_UNIQUE, ...), so that their SQL and checks stay the
 * same on both engines.  A lost connection is KEYTIER_E_STORE_UNAVAILABLE;
 * the next call outside a transaction connects again.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "kt_file.h"
#include "store_stmt.h"

/* Taken by every transaction of kt_db_begin: writers run one at a time on
 * every node, as BEGIN IMMEDIATE makes them on one SQLite file (claims,
 * kt_db_begin_rows, lock their rows instead).  The
 * number is "keytier" in ASCII. */
#define KT_PG_TX_LOCK "7020644312278386"
/* How long a transaction waits for the lock, as SQLite's busy timeout. */
#define KT_PG_LOCK_TIMEOUT    "10s"
#define KT_PG_CONNECT_TIMEOUT "10"

/* OIDs of the parameter types (pg_type.h is not installed with libpq). */
enum { KT_PG_BYTEA = 17, KT_PG_INT8 = 20, KT_PG_TEXT = 25 };

struct kt_pg {
    PGconn *conn;
    bool in_tx; /* between kt_db_begin and its commit or rollback */
    /* Slot i of the statement cache is prepared as "kt<i>" on conn. */
    bool prepared[KT_STMT_CACHE];
    int64_t changes; /* rows of the last INSERT, UPDATE or DELETE */
};

bool kt_store_is_pg(const char *where)
{
    return kt_config_store_is_pg(where);
}

/* ---- failures ------------------------------------------------------------ */

/* The first line of libpq's message (never a bound value: the DETAIL line,
 * which may quote one, is left out). */
static void kt_pg_msg(const char *msg, char *out, size_t cap)
{
    kt_strlcpy(out, msg && *msg ? msg : "no message", cap);
    out[strcspn(out, "\r\n")] = '\0';
}

/* The SQLite code the family files compare for a PostgreSQL SQLSTATE. */
static int kt_pg_rc(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state == NULL)
        return SQLITE_IOERR; /* no answer from the server */
    if (!strcmp(state, "23505")) {
        const char *c = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
        size_t n = c ? strlen(c) : 0;
        return n > 5 && !strcmp(c + n - 5, "_pkey")
                   ? SQLITE_CONSTRAINT_PRIMARYKEY
                   : SQLITE_CONSTRAINT_UNIQUE;
    }
    if (!strcmp(state, "23503"))
        return SQLITE_CONSTRAINT_FOREIGNKEY;
    if (!strcmp(state, "23514"))
        return SQLITE_CONSTRAINT_CHECK;
    if (!strcmp(state, "23502"))
        return SQLITE_CONSTRAINT_NOTNULL;
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") ||
        !strcmp(state, "55P03"))
        return SQLITE_BUSY;
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P0", 4))
        return SQLITE_IOERR;
    return SQLITE_ERROR;
}

/* A failure of the connection itself (lost, refused, server shut down):
 * the store is unavailable, not wrong. */
static bool kt_pg_lost(const struct kt_store *st, int rc)
{
    return rc == SQLITE_IOERR || PQstatus(st->pg->conn) != CONNECTION_OK;
}

/* The server's primary message, else libpq's (a lost connection). */
static void kt_pg_why(const struct kt_store *st, const PGresult *r, char *msg,
                      size_t cap)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    kt_pg_msg(m ? m : PQerrorMessage(st->pg->conn), msg, cap);
}

static keytier_err kt_pg_fail(struct kt_store *st, const PGresult *r,
                              const char *what)
{
    char msg[256];
    kt_pg_why(st, r, msg, sizeof msg);
    if (kt_pg_lost(st, kt_pg_rc(r)))
        return kt_err(KEYTIER_E_STORE_UNAVAILABLE,
                      "%s: PostgreSQL: %s (the next call connects again)", what,
                      msg);
    return kt_err(KEYTIER_E_STORE, "%s: PostgreSQL: %s", what, msg);
}

static void kt_pg_stmt_fail(struct kt_stmt *s, const PGresult *r)
{
    char msg[256];
    kt_pg_why(s->st, r, msg, sizeof msg);
    int rc = kt_pg_rc(r);
    bool lost = kt_pg_lost(s->st, rc);
    if (lost)
        kt_strlcpy(msg + strlen(msg), " (the next call connects again)",
                   sizeof msg - strlen(msg));
    kt_stmt_fail_code(s, lost ? KEYTIER_E_STORE_UNAVAILABLE : KEYTIER_E_STORE,
                      rc, "PostgreSQL: ", msg);
}

/* ---- the connection ------------------------------------------------------ */

/* Settings of every new session (also after a reconnection). */
static bool kt_pg_session(struct kt_pg *pg)
{
    PGresult *r = PQexec(pg->conn, "SET lock_timeout = '" KT_PG_LOCK_TIMEOUT
                                   "'; SET client_min_messages = warning");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    memset(pg->prepared, 0, sizeof pg->prepared);
    return ok;
}

/* Connects again after a loss, outside a transaction only: statements of a
 * transaction cut by the loss must fail, not run on a new session. */
static bool kt_pg_ensure(struct kt_store *st)
{
    struct kt_pg *pg = st->pg;
    if (PQstatus(pg->conn) == CONNECTION_OK)
        return true;
    if (pg->in_tx)
        return false;
    PQreset(pg->conn);
    return PQstatus(pg->conn) == CONNECTION_OK && kt_pg_session(pg);
}

/* The password of store.password_file: its first line, in a secret. */
static keytier_err kt_pg_password(const char *path, kt_secret **out)
{
    char err[KT_FILE_ERR_MAX];
    int fd = kt_file_open_trusted(path, KT_FILE_SECRET, "store password file",
                                  err, sizeof err);
    if (fd < 0)
        return kt_err(KEYTIER_E_CONFIG, "store.password_file: %s", err);
    kt_secret *buf = kt_secret_new(1024);
    if (buf == NULL) {
        close(fd);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    char *p = (char *)kt_secret_data(buf);
    ssize_t n = read(fd, p, kt_secret_len(buf) - 1);
    int rerr = errno;
    close(fd);
    size_t len = n > 0 ? strcspn(p, "\r\n") : 0;
    bool full = n == (ssize_t)kt_secret_len(buf) - 1 && len == (size_t)n;
    if (n < 0 || len == 0 || full) {
        kt_secret_free(buf);
        return n < 0 ? kt_err(KEYTIER_E_CONFIG, "store.password_file %s: %s",
                              path, strerror(rerr))
                     : kt_err(KEYTIER_E_CONFIG,
                              "store.password_file %s: put the password "
                              "alone on the first line (1 to 1022 bytes)",
                              path);
    }
    p[len] = '\0';
    *out = buf;
    return KEYTIER_OK;
}

/* Refuses a connection string that carries a password: it would be in
 * the configuration and in every error that quotes the store. */
static keytier_err kt_pg_check_conninfo(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        keytier_err e = kt_err(KEYTIER_E_CONFIG,
                               "store: not a PostgreSQL connection string: %s",
                               err ? err : "out of memory");
        PQfreemem(err);
        return e;
    }
    bool pw = false;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (!strcmp(o->keyword, "password") && o->val != NULL)
            pw = true;
    PQconninfoFree(opts);
    if (pw)
        return kt_err(KEYTIER_E_CONFIG,
                      "store: the PostgreSQL connection string holds a "
                      "password: remove it and put it in "
                      "store.password_file (mode 0600) or PGPASSWORD or "
                      "PGPASSFILE");
    return KEYTIER_OK;
}

keytier_err kt_pg_open(struct kt_store *st, const char *conninfo,
                       const char *password_file)
{
    keytier_err e = kt_pg_check_conninfo(conninfo);
    if (e != KEYTIER_OK)
        return e;
    kt_secret *pw = NULL;
    if (password_file != NULL &&
        (e = kt_pg_password(password_file, &pw)) != KEYTIER_OK)
        return e;
    st->pg = calloc(1, sizeof *st->pg);
    if (st->pg == NULL) {
        kt_secret_free(pw);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    /* Defaults first: what the connection string says overrides them. */
    const char *keys[] = {"connect_timeout", "fallback_application_name",
                          "password", "dbname", NULL};
    const char *vals[] = {KT_PG_CONNECT_TIMEOUT, "keytier",
                          pw ? (const char *)kt_secret_cdata(pw) : NULL,
                          conninfo, NULL};
    if (pw == NULL) {
        keys[2] = "dbname";
        vals[2] = conninfo;
        keys[3] = vals[3] = NULL;
    }
    st->pg->conn = PQconnectdbParams(keys, vals, 1);
    kt_secret_free(pw);
    if (st->pg->conn == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    if (PQstatus(st->pg->conn) != CONNECTION_OK) {
        char msg[256];
        kt_pg_msg(PQerrorMessage(st->pg->conn), msg, sizeof msg);
        return kt_err(KEYTIER_E_STORE_UNAVAILABLE,
                      "cannot connect to the PostgreSQL store: %s", msg);
    }
    if (!kt_pg_session(st->pg))
        return kt_pg_fail(st, NULL, "PostgreSQL session settings");
    return KEYTIER_OK;
}

void kt_pg_close(struct kt_store *st)
{
    if (st->pg == NULL)
        return;
    PQfinish(st->pg->conn);
    free(st->pg);
    st->pg = NULL;
}

/* ---- statements ---------------------------------------------------------- */

void kt_pg_prep(struct kt_stmt *s, int slot)
{
    s->slot = slot;
    if (!kt_pg_ensure(s->st))
        kt_pg_stmt_fail(s, NULL);
}

static void kt_pg_bind(struct kt_stmt *s, int i, const char *val, int len,
                       bool bin, unsigned type)
{
    if (i < 1 || i > KT_STMT_MAXP) {
        kt_stmt_fail_code(s, KEYTIER_E_STORE, SQLITE_RANGE,
                          "binding: ", "parameter number out of range");
        return;
    }
    s->pv[i - 1] = val;
    s->plen[i - 1] = len;
    s->pfmt[i - 1] = bin ? 1 : 0;
    s->ptype[i - 1] = type; /* also for NULL: "?1 IS NULL" alone has none */
    if (i > s->np)
        s->np = i;
}

void kt_pg_bind_int64(struct kt_stmt *s, int i, int64_t v)
{
    if (i < 1 || i > KT_STMT_MAXP) {
        kt_pg_bind(s, i, NULL, 0, false, 0);
        return;
    }
    snprintf(s->pnum[i - 1], sizeof s->pnum[i - 1], "%lld", (long long)v);
    kt_pg_bind(s, i, s->pnum[i - 1], 0, false, KT_PG_INT8);
}

void kt_pg_bind_text(struct kt_stmt *s, int i, const char *text)
{
    kt_pg_bind(s, i, text, 0, false, KT_PG_TEXT);
}

void kt_pg_bind_blob(struct kt_stmt *s, int i, const void *p, size_t n)
{
    if (n > INT32_MAX) {
        kt_stmt_fail_code(s, KEYTIER_E_STORE, SQLITE_TOOBIG,
                          "binding: ", "value too large");
        return;
    }
    /* a zero-length value must not read as SQL NULL */
    kt_pg_bind(s, i, p ? p : "", (int)n, true, KT_PG_BYTEA);
}

/* sql with ?N written $N (outside quoted text), malloc'd. */
static char *kt_pg_dollars(const char *sql)
{
    char *out = malloc(strlen(sql) + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    char quote = 0;
    for (const char *p = sql; *p; p++) {
        if (quote == 0 && (*p == '\'' || *p == '"'))
            quote = *p;
        else if (quote != 0 && *p == quote)
            quote = 0;
        *o++ =
            quote == 0 && *p == '?' && isdigit((unsigned char)p[1]) ? '$' : *p;
    }
    *o = '\0';
    return out;
}

/* Prepares s's SQL on this connection when its slot has not been yet;
 * *name is the statement's name ("" for one kept in no slot). */
static bool kt_pg_prepare(struct kt_stmt *s, char *name, size_t cap)
{
    struct kt_pg *pg = s->st->pg;
    if (s->slot >= 0)
        snprintf(name, cap, "kt%d", s->slot);
    else
        name[0] = '\0';
    if (s->slot >= 0 && pg->prepared[s->slot])
        return true;
    char *sql = kt_pg_dollars(s->sql);
    if (sql == NULL) {
        kt_stmt_fail_code(s, KEYTIER_E_NOMEM, SQLITE_NOMEM, "", "no memory");
        return false;
    }
    PGresult *r = PQprepare(pg->conn, name, sql, s->np, s->ptype);
    free(sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        kt_pg_stmt_fail(s, r);
    else if (s->slot >= 0)
        pg->prepared[s->slot] = true;
    PQclear(r);
    return ok;
}

keytier_err kt_pg_step(struct kt_stmt *s, bool *row)
{
    *row = false;
    if (s->err != KEYTIER_OK)
        return s->err;
    if (s->res != NULL) {
        *row = ++s->row < s->nrows;
        return KEYTIER_OK;
    }
    char name[16];
    if (!kt_pg_prepare(s, name, sizeof name))
        return s->err;
    PGresult *r = PQexecPrepared(s->st->pg->conn, name, s->np, s->pv, s->plen,
                                 s->pfmt, 0);
    ExecStatusType status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        kt_pg_stmt_fail(s, r);
        PQclear(r);
        return s->err;
    }
    s->res = r;
    s->row = 0;
    s->nrows = PQntuples(r);
    if (status == PGRES_COMMAND_OK)
        s->st->pg->changes = strtoll(PQcmdTuples(r), NULL, 10);
    *row = s->nrows > 0;
    return KEYTIER_OK;
}

/* The text of a column of the current row, NULL for SQL NULL; a failure
 * recorded for a column the row does not have. */
const char *kt_pg_col(struct kt_stmt *s, int col, int *len)
{
    *len = 0;
    if (s->err != KEYTIER_OK)
        return NULL;
    PGresult *r = s->res;
    if (r == NULL || s->row >= s->nrows || col < 0 || col >= PQnfields(r)) {
        char how[48];
        snprintf(how, sizeof how, "reading column %d: ", col);
        kt_stmt_fail_code(s, KEYTIER_E_STORE, SQLITE_RANGE, how,
                          "no such column in the row");
        return NULL;
    }
    if (PQgetisnull(r, s->row, col))
        return NULL;
    *len = PQgetlength(r, s->row, col);
    return PQgetvalue(r, s->row, col);
}

int64_t kt_pg_col_int64(struct kt_stmt *s, int col)
{
    int len;
    const char *v = kt_pg_col(s, col, &len);
    if (v == NULL)
        return 0;
    if (!strcmp(v, "t") || !strcmp(v, "f")) /* a comparison's boolean */
        return v[0] == 't';
    return strtoll(v, NULL, 10);
}

bool kt_pg_col_blob(struct kt_stmt *s, int col, uint8_t *dst, size_t cap,
                    size_t *len)
{
    int n;
    const char *v = kt_pg_col(s, col, &n);
    size_t raw_len = 0;
    unsigned char *raw =
        v ? PQunescapeBytea((const unsigned char *)v, &raw_len) : NULL;
    if (v != NULL && raw == NULL) {
        kt_stmt_fail_code(s, KEYTIER_E_NOMEM, SQLITE_NOMEM, "", "no memory");
        return false;
    }
    bool ok = s->err == KEYTIER_OK && raw_len <= cap;
    if (ok) {
        if (raw_len > 0)
            memcpy(dst, raw, raw_len);
        *len = raw_len;
    }
    PQfreemem(raw);
    return ok;
}

void kt_pg_done(struct kt_stmt *s)
{
    PQclear(s->res);
    s->res = NULL;
}

/* ---- the connection's commands ------------------------------------------- */

keytier_err kt_pg_exec(struct kt_store *st, const char *what, const char *sql)
{
    if (!kt_pg_ensure(st))
        return kt_pg_fail(st, NULL, what);
    PGresult *r = PQexec(st->pg->conn, sql);
    ExecStatusType status = PQresultStatus(r);
    keytier_err e = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                        ? KEYTIER_OK
                        : kt_pg_fail(st, r, what);
    PQclear(r);
    return e;
}

keytier_err kt_pg_begin(struct kt_store *st, bool store_lock)
{
    keytier_err e = kt_pg_exec(
        st, "begin",
        store_lock ? "BEGIN ISOLATION LEVEL READ COMMITTED; "
                     "SELECT pg_advisory_xact_lock(" KT_PG_TX_LOCK ")"
                   : "BEGIN ISOLATION LEVEL READ COMMITTED");
    if (e != KEYTIER_OK) {
        PQclear(PQexec(st->pg->conn, "ROLLBACK"));
        return e;
    }
    st->pg->in_tx = true;
    return KEYTIER_OK;
}

keytier_err kt_pg_commit(struct kt_store *st)
{
    PGresult *r = PQexec(st->pg->conn, "COMMIT");
    keytier_err e = KEYTIER_OK;
    /* COMMIT of a transaction a failure aborted answers ROLLBACK */
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        e = kt_pg_fail(st, r, "commit");
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
        e = kt_err(KEYTIER_E_STORE, "commit: PostgreSQL rolled the "
                                    "transaction back after a failure");
    PQclear(r);
    st->pg->in_tx = false;
    return e;
}

void kt_pg_rollback(struct kt_store *st)
{
    if (PQstatus(st->pg->conn) == CONNECTION_OK)
        PQclear(PQexec(st->pg->conn, "ROLLBACK"));
    st->pg->in_tx = false;
}

int64_t kt_pg_changes(struct kt_store *st)
{
    return st->pg->changes;
}

/* ---- the schema ---------------------------------------------------------- */

/* The PostgreSQL form of SQLite DDL: INTEGER is BIGINT (64-bit values),
 * BLOB is BYTEA, AUTOINCREMENT an identity.  malloc'd. */
char *kt_pg_ddl(const char *ddl)
{
    static const struct {
        const char *from, *to;
    } words[] = {
        {"INTEGER PRIMARY KEY AUTOINCREMENT",
         "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"},
        {"INTEGER", "BIGINT"},
        {"BLOB", "BYTEA"},
    };
    size_t cap = strlen(ddl) * 2 + 64;
    char *out = malloc(cap), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = ddl; *p;) {
        size_t i, n = 0;
        for (i = 0; i < sizeof words / sizeof words[0]; i++) {
            n = strlen(words[i].from);
            if (!strncmp(p, words[i].from, n) &&
                (p == ddl || !isalnum((unsigned char)p[-1])) &&
                !isalnum((unsigned char)p[n]) && p[n] != '_')
                break;
        }
        if (i < sizeof words / sizeof words[0]) {
            size_t m = strlen(words[i].to);
            memcpy(o, words[i].to, m);
            o += m;
            p += n;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* Seqs of cache invalidations as SQLite's AUTOINCREMENT gives them and
 * more: one after the other in commit order (the head row is locked until
 * the inserting transaction ends, and a rollback gives its seq back), the
 * last one kept when its row is pruned; and each insert NOTIFYs every
 * listening node when its transaction commits. */
static const char kt_pg_inval_ddl[] =
    "CREATE TABLE kt_inval_head (one BIGINT PRIMARY KEY CHECK (one = 1), "
    "  seq BIGINT NOT NULL);"
    "INSERT INTO kt_inval_head VALUES (1, 0);"
    "CREATE FUNCTION kt_inval_seq() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "  UPDATE kt_inval_head SET seq = seq + 1 RETURNING seq INTO NEW.seq; "
    "  PERFORM pg_notify('" KT_PG_INVAL_CHANNEL "', NEW.seq::text); "
    "  RETURN NEW; "
    "END $$;"
    "CREATE TRIGGER kt_inval_seq BEFORE INSERT ON cache_invalidations "
    "  FOR EACH ROW EXECUTE FUNCTION kt_inval_seq();";

/* What PostgreSQL needs beyond the translated DDL of migration v -> v+1:
 * the insertion order SQLite keeps as rowid, which the family files use
 * to order rows created in the same second. */
const char *kt_pg_ddl_extra(int v)
{
    switch (v) {
    case 0:
        return "ALTER TABLE deps ADD COLUMN rowid BIGINT GENERATED ALWAYS "
               "AS IDENTITY; ALTER TABLE tier_keys ADD COLUMN rowid BIGINT "
               "GENERATED ALWAYS AS IDENTITY;";
    case 2:
        return "ALTER TABLE migrations ADD COLUMN rowid BIGINT GENERATED "
               "ALWAYS AS IDENTITY;";
    case 4:
        return kt_pg_inval_ddl;
    case 5:
        return "ALTER TABLE audit_anchors ADD COLUMN rowid BIGINT GENERATED "
               "ALWAYS AS IDENTITY;";
    case 6:
        return "ALTER TABLE approvals ADD COLUMN rowid BIGINT GENERATED "
               "ALWAYS AS IDENTITY;";
    default:
        return NULL;
    }
}

/* The schema version, in a one-row table (created under the transaction's
 * lock when missing); -1 when it cannot be read. */
int kt_pg_version(struct kt_store *st, bool create)
{
    if (create &&
        kt_pg_exec(st, "schema version",
                   "CREATE TABLE IF NOT EXISTS kt_schema (one BIGINT "
                   "PRIMARY KEY CHECK (one = 1), version BIGINT NOT NULL); "
                   "INSERT INTO kt_schema VALUES (1, 0) ON CONFLICT (one) "
                   "DO NOTHING") != KEYTIER_OK)
        return -1;
    PGresult *r = PQexec(st->pg->conn, "SELECT version FROM kt_schema");
    int v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                ? atoi(PQgetvalue(r, 0, 0))
                : -1;
    PQclear(r);
    return v;
}

keytier_err kt_pg_set_version(struct kt_store *st, int v)
{
    char sql[64];
    snprintf(sql, sizeof sql, "UPDATE kt_schema SET version = %d", v);
    return kt_pg_exec(st, "migration", sql);
}

/* ---- notifications of cache invalidations -------------------------------- */

struct kt_store_listener {
    PGconn *conn; /* a session of its own, LISTENing */
};

/* LISTEN on l's connection; false when it is not up. */
static bool kt_pg_listen(struct kt_store_listener *l)
{
    if (PQstatus(l->conn) != CONNECTION_OK)
        return false;
    PGresult *r = PQexec(l->conn, "LISTEN " KT_PG_INVAL_CHANNEL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

keytier_err kt_store_listen_open(struct kt_store *st,
                                 struct kt_store_listener **out)
{
    *out = NULL;
    if (st->pg == NULL)
        return KEYTIER_OK; /* SQLite: one machine, the sync alone */
    /* The store connection's settings as libpq resolved them (with the
     * password it used, which stays in libpq's memory). */
    PQconninfoOption *opts = PQconninfo(st->pg->conn);
    if (opts == NULL)
        return kt_err(KEYTIER_E_NOMEM, NULL);
    const char *keys[64], *vals[64];
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL && n < 63; o++)
        if (o->val != NULL && *o->val != '\0') {
            keys[n] = o->keyword;
            vals[n++] = o->val;
        }
    keys[n] = vals[n] = NULL;
    struct kt_store_listener *l = calloc(1, sizeof *l);
    if (l != NULL)
        l->conn = PQconnectdbParams(keys, vals, 0);
    PQconninfoFree(opts);
    if (l == NULL || l->conn == NULL) {
        free(l);
        return kt_err(KEYTIER_E_NOMEM, NULL);
    }
    /* Not up yet is not a failure: kt_store_listen_wait connects again,
     * and the sync bound holds meanwhile. */
    (void)kt_pg_listen(l);
    *out = l;
    return KEYTIER_OK;
}

bool kt_store_listen_wait(struct kt_store_listener *l, unsigned ms)
{
    if (PQstatus(l->conn) != CONNECTION_OK) {
        PQreset(l->conn);
        if (kt_pg_listen(l))
            return true; /* notifications may have been missed */
        struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        return false;
    }
    struct pollfd p = {.fd = PQsocket(l->conn), .events = POLLIN};
    if (poll(&p, 1, (int)ms) <= 0)
        return false;
    if (!PQconsumeInput(l->conn))
        return true; /* lost: sync now, connect again next time */
    bool got = false;
    PGnotify *n;
    while ((n = PQnotifies(l->conn)) != NULL) {
        got = true;
        PQfreemem(n);
    }
    return got;
}

void kt_store_listen_close(struct kt_store_listener *l)
{
    if (l == NULL)
        return;
    PQfinish(l->conn);
    free(l);
}
