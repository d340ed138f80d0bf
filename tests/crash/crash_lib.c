/*
 * Crash trials on libkeytier: its SQLite store, the audit log and the
 * service token (keytier's module), written by a driver that is SIGKILLed
 * at a random moment.  Acknowledged writes (tests/crash/crash.h):
 *   migset M1 M2            the migration tenant's two DEPs (set-up)
 *   dep TENANT ID           a DEP created (try: "dep TENANT")
 *   tier TENANT NAME DEP    a mailbox key created under DEP
 *   env TENANT NAME         data sealed under it, in DIR/env/NAME
 *   roll DEP SLOT LABEL     customer key SLOT rolled to root LABEL
 *   assign MIG TARGET       the migration tenant assigned to TARGET
 *   batch MIG DONE          a batch of MIG done, DONE keys moved
 *   migrated MIG TARGET     MIG finished
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "crash.h"
#include "crash_area.h"
#include "keytier.h"

#define MAX_DEPS 16384
#define MAX_KEYS 65536

struct ldep {
    char id[KEYTIER_ID_SIZE], tenant[24];
    char root[2][8]; /* the last acknowledged root label per slot */
    unsigned rolls;  /* acknowledged or landed */
};
struct lkey {
    char tenant[24], name[24], dep[KEYTIER_ID_SIZE];
    bool env;
};
struct lmodel {
    struct ldep d[MAX_DEPS];
    size_t nd;
    struct lkey k[MAX_KEYS];
    size_t nk;
    char m[2][KEYTIER_ID_SIZE]; /* the migration tenant's DEPs */
    char mig[KEYTIER_ID_SIZE], mig_target[KEYTIER_ID_SIZE];
    bool mig_done;
    unsigned long batch_done;
    unsigned next, acks, new_acks, tries;
    long records;    /* audit records at the last check */
    long unanchored; /* of those, after the anchor */
};

static const keytier_request user_req = {KEYTIER_REQUEST_USER,
                                         KEYTIER_INTERNAL_NONE, NULL, NULL};

static struct ldep *dep_find(struct lmodel *m, const char *id)
{
    for (size_t i = 0; i < m->nd; i++)
        if (strcmp(m->d[i].id, id) == 0)
            return &m->d[i];
    return NULL;
}

static struct lkey *key_find(struct lmodel *m, const char *name)
{
    for (size_t i = 0; i < m->nk; i++)
        if (strcmp(m->k[i].name, name) == 0)
            return &m->k[i];
    return NULL;
}

static bool apply_mig(struct lmodel *m, const char *text)
{
    char a[KEYTIER_ID_SIZE], b[KEYTIER_ID_SIZE];
    unsigned long done;
    if (sscanf(text, "migset %36s %36s", a, b) == 2) {
        memcpy(m->m[0], a, sizeof a);
        memcpy(m->m[1], b, sizeof b);
    } else if (sscanf(text, "assign %36s %36s", a, b) == 2) {
        memcpy(m->mig, a, sizeof a);
        memcpy(m->mig_target, b, sizeof b);
        m->mig_done = false;
        m->batch_done = 0;
    } else if (sscanf(text, "batch %36s %lu", a, &done) == 2) {
        m->batch_done = strcmp(a, m->mig) == 0 ? done : m->batch_done;
    } else if (sscanf(text, "migrated %36s", a) == 1) {
        m->mig_done = m->mig_done || strcmp(a, m->mig) == 0;
    } else {
        return false;
    }
    return true;
}

/* Applies one acknowledged or landed write to the model. */
static bool model_apply(struct lmodel *m, const char *text)
{
    struct ldep d = {0};
    struct lkey k = {0};
    unsigned slot;
    char label[8];
    if (sscanf(text, "dep %23s %36s", d.tenant, d.id) == 2) {
        if (dep_find(m, d.id) || m->nd == MAX_DEPS)
            return false;
        m->d[m->nd++] = d;
    } else if (sscanf(text, "tier %23s %23s %36s", k.tenant, k.name, k.dep) ==
               3) {
        if (key_find(m, k.name) || m->nk == MAX_KEYS)
            return false;
        m->k[m->nk++] = k;
    } else if (sscanf(text, "env %23s %23s", k.tenant, k.name) == 2) {
        struct lkey *f = key_find(m, k.name);
        if (f == NULL && strcmp(k.tenant, CRASH_MIG_TENANT) == 0 &&
            m->nk < MAX_KEYS)
            f = &m->k[m->nk++]; /* a key of the migration tenant */
        if (f == NULL)
            return false;
        memcpy(f->tenant, k.tenant, sizeof k.tenant);
        memcpy(f->name, k.name, sizeof k.name);
        f->env = true;
    } else if (sscanf(text, "roll %36s %u %7s", d.id, &slot, label) == 3) {
        struct ldep *f = dep_find(m, d.id);
        if (f == NULL || slot > 1)
            return false;
        memcpy(f->root[slot], label, sizeof label);
        f->rolls++;
    } else {
        return apply_mig(m, text);
    }
    return true;
}

static bool model_load(const struct crash_log *log, struct lmodel *m)
{
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < log->n; i++) {
        const struct crash_entry *e = &log->e[i];
        if (e->kind == CRASH_CHECK) {
            m->new_acks = 0;
            m->tries = 0;
            if (sscanf(e->text, "%ld %ld", &m->records, &m->unanchored) != 2)
                m->records = m->unanchored = 0;
        }
        m->tries += e->kind == CRASH_TRY;
        m->next++; /* names are never reused */
        if (e->kind != CRASH_OK && e->kind != CRASH_LANDED)
            continue;
        m->acks += e->kind == CRASH_OK;
        m->new_acks += e->kind == CRASH_OK;
        if (!model_apply(m, e->text)) {
            fprintf(stderr, "crash lib: ack log line %zu does not apply: %s\n",
                    i + 1, e->text);
            return false;
        }
    }
    return true;
}

static void msg_of(const char *name, char out[64])
{
    snprintf(out, 64, "crash-trial data sealed under %s", name);
}

static keytier_err lib_fail(const char *what, keytier_err e)
{
    fprintf(stderr, "crash lib: %s: %s (%s)\n", what, keytier_error_name(e),
            keytier_last_error_detail());
    return e;
}

static keytier_ctx *lib_open(const char *dir)
{
    char conf[512];
    keytier_ctx *ctx = NULL;
    snprintf(conf, sizeof conf, "%s/keytier-lib.conf", dir);
    keytier_err e = keytier_ctx_open(conf, &ctx);
    if (e != KEYTIER_OK) {
        (void)lib_fail("keytier_ctx_open", e);
        return NULL;
    }
    return ctx;
}

static void root_uri(int slot, const char *label, char out[128])
{
    snprintf(out, 128, "pkcs11:token=%s;object=%s", slot ? "KtB" : "KtA",
             label);
}

/* The envelope file, complete or absent: temp file, fsync, rename. */
static bool env_write(const char *dir, const char *name, const void *p,
                      size_t n)
{
    char tmp[600], path[600];
    snprintf(tmp, sizeof tmp, "%s/env/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/env/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, p, n) == (ssize_t)n && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    ok = ok && rename(tmp, path) == 0;
    snprintf(tmp, sizeof tmp, "%s/env", dir);
    fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok = ok && fd >= 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Seals the name's data under its key into DIR/env/NAME. */
static keytier_err env_seal(keytier_ctx *ctx, const char *dir,
                            const char *tenant, const char *name)
{
    keytier_key *k = NULL;
    char msg[64];
    uint8_t env[1024];
    size_t n = 0;
    msg_of(name, msg);
    keytier_err e =
        keytier_key_open_name(ctx, &user_req, tenant, "Exchange", name, &k);
    if (e == KEYTIER_OK)
        e = keytier_seal(k, name, strlen(name), msg, strlen(msg), env,
                         sizeof env, &n);
    keytier_key_close(k);
    if (e == KEYTIER_OK && !env_write(dir, name, env, n))
        e = KEYTIER_E_IO;
    return e;
}

struct drive {
    keytier_ctx *ctx;
    const char *dir;
    struct lmodel *m;
    struct crash_rng rng;
    int log;
};

static keytier_err drive_dep(struct drive *d)
{
    char tenant[24], a[128], b[128];
    keytier_dep_info info;
    /* at most 30 acknowledged DEPs a tenant: under the limit of 50 */
    snprintf(tenant, sizeof tenant, "org-%zu", d->m->nd / 30);
    root_uri(0, "A1", a);
    root_uri(1, "B1", b);
    crash_log_put(d->log, CRASH_TRY, false, "dep %s", tenant);
    keytier_err e = keytier_dep_create(d->ctx, tenant, "Exchange", a, b, &info);
    if (e != KEYTIER_OK)
        return lib_fail("keytier_dep_create", e);
    crash_log_put(d->log, CRASH_OK, true, "dep %s %s", tenant, info.dep_id);
    char text[256];
    snprintf(text, sizeof text, "dep %s %s", tenant, info.dep_id);
    (void)model_apply(d->m, text);
    return KEYTIER_OK;
}

/* A mailbox key under an acknowledged DEP, then data sealed under it. */
static keytier_err drive_tier(struct drive *d, const struct ldep *dep)
{
    char name[24], text[256];
    keytier_key *dk = NULL;
    snprintf(name, sizeof name, "m%06u", d->m->next++);
    snprintf(text, sizeof text, "tier %s %s %s", dep->tenant, name, dep->id);
    crash_log_put(d->log, CRASH_TRY, false, "%s", text);
    keytier_err e =
        keytier_dep_key_open(d->ctx, &user_req, dep->tenant, dep->id, &dk);
    if (e == KEYTIER_OK)
        e = keytier_key_create(dk, name, NULL);
    keytier_key_close(dk);
    if (e != KEYTIER_OK)
        return lib_fail(text, e);
    crash_log_put(d->log, CRASH_OK, true, "%s", text);
    (void)model_apply(d->m, text);
    snprintf(text, sizeof text, "env %s %s", dep->tenant, name);
    crash_log_put(d->log, CRASH_TRY, false, "%s", text);
    e = env_seal(d->ctx, d->dir, dep->tenant, name);
    if (e != KEYTIER_OK)
        return lib_fail(text, e);
    crash_log_put(d->log, CRASH_OK, true, "%s", text);
    (void)model_apply(d->m, text);
    return KEYTIER_OK;
}

/* Customer key `slot` of the DEP rolled to another of its token's roots;
 * a DEP still rolling after a kill is left to settle. */
static keytier_err drive_roll(struct drive *d, const struct ldep *dep)
{
    keytier_dep_info info;
    char uri[128], text[256];
    int slot = (int)crash_rng_below(&d->rng, 2);
    keytier_err e = keytier_dep_show(d->ctx, dep->tenant, dep->id, &info);
    if (e != KEYTIER_OK)
        return lib_fail("keytier_dep_show", e);
    if (info.state != KEYTIER_DEP_REGISTERED)
        return KEYTIER_OK;
    const char *cur = strstr(info.root_uri[slot], "object=");
    char label[4] = {slot ? 'B' : 'A', '1', '\0', '\0'};
    do
        label[1] = (char)('1' + crash_rng_below(&d->rng, 3));
    while (cur != NULL && strncmp(cur + 7, label, 2) == 0);
    root_uri(slot, label, uri);
    snprintf(text, sizeof text, "roll %s %d %s", dep->id, slot, label);
    crash_log_put(d->log, CRASH_TRY, false, "%s", text);
    e = keytier_dep_roll(d->ctx, dep->tenant, dep->id, slot, uri, NULL);
    if (e == KEYTIER_E_DEP_STATE)
        return KEYTIER_OK; /* another roll not settled yet */
    if (e != KEYTIER_OK)
        return lib_fail(text, e);
    crash_log_put(d->log, CRASH_OK, true, "%s", text);
    (void)model_apply(d->m, text);
    return KEYTIER_OK;
}

static int batch_ack(void *arg, const keytier_migration *p)
{
    struct drive *d = arg;
    if (!p->finished)
        crash_log_put(d->log, CRASH_OK, true, "batch %s %llu", p->migration_id,
                      (unsigned long long)p->done);
    return 0;
}

/* The migration tenant assigned to its other DEP, or the unfinished
 * migration resumed, batch by batch. */
static keytier_err drive_mig(struct drive *d)
{
    struct lmodel *m = d->m;
    keytier_migration p;
    char text[256];
    keytier_err e;
    if (m->mig[0] == '\0' || m->mig_done) {
        const char *to =
            m->mig[0] && !strcmp(m->mig_target, m->m[1]) ? m->m[0] : m->m[1];
        crash_log_put(d->log, CRASH_TRY, false, "assign %s", to);
        e = keytier_assign(d->ctx, CRASH_MIG_TENANT, "Exchange", NULL, to, &p);
        if (e != KEYTIER_OK)
            return lib_fail("keytier_assign", e);
        snprintf(text, sizeof text, "assign %s %s", p.migration_id, to);
        crash_log_put(d->log, CRASH_OK, true, "%s", text);
        (void)model_apply(m, text);
    }
    snprintf(text, sizeof text, "migrated %s %s", m->mig, m->mig_target);
    crash_log_put(d->log, CRASH_TRY, false, "%s", text);
    e = keytier_migrate_run(d->ctx, m->mig, batch_ack, d, &p);
    if (e != KEYTIER_OK || !p.finished)
        return lib_fail("keytier_migrate_run", e);
    crash_log_put(d->log, CRASH_OK, true, "%s", text);
    (void)model_apply(m, text);
    return KEYTIER_OK;
}

static keytier_err drive_one(struct drive *d)
{
    struct lmodel *m = d->m;
    unsigned r = crash_rng_below(&d->rng, 100);
    const struct ldep *dep =
        m->nd ? &m->d[crash_rng_below(&d->rng, (unsigned)m->nd)] : NULL;
    if (r < 10)
        return drive_mig(d);
    if (dep == NULL || r < 35)
        return drive_dep(d);
    if (r < 75)
        return drive_tier(d, dep);
    keytier_err e = drive_roll(d, dep);
    return e == KEYTIER_E_EXISTS ? KEYTIER_OK : e;
}

int crash_lib_drive(const char *dir, uint64_t seed)
{
    char path[512];
    static struct lmodel m;
    struct crash_log log;
    struct drive d = {.dir = dir, .m = &m, .rng = {seed}};
    snprintf(path, sizeof path, "%s/acks", dir);
    if (!crash_log_read(path, &log) || !model_load(&log, &m))
        return 2;
    m.next = (unsigned)log.n + 1;
    crash_log_free(&log);
    d.log = crash_log_open(path);
    if (d.log < 0 || (d.ctx = lib_open(dir)) == NULL)
        return 2;
    for (;;)
        if (drive_one(&d) != KEYTIER_OK)
            _exit(3);
}

struct check {
    keytier_ctx *ctx;
    const char *dir;
    struct lmodel *m;
    const char *inflight;
    const struct crash_log *log;
    struct crash_result *r;
    int fd; /* the ack log, for "landed" lines */
};

/* A label the root of `slot` may have: the acknowledged one, or one a
 * roll tried after it (a roll in flight may have landed, and one the kill
 * left pending may settle either way later). */
static bool root_allowed(const struct check *c, const struct ldep *d, int slot,
                         const char *uri)
{
    const char *o = strstr(uri, "object=");
    if (o == NULL)
        return false;
    o += 7;
    if (d->root[slot][0] ? strcmp(o, d->root[slot]) == 0
                         : strcmp(o, slot ? "B1" : "A1") == 0)
        return true;
    char want[160];
    snprintf(want, sizeof want, "roll %s %d %s", d->id, slot, o);
    for (size_t i = 0; i < c->log->n; i++)
        if (c->log->e[i].kind == CRASH_TRY && !strcmp(c->log->e[i].text, want))
            return true;
    return false;
}

/* An acknowledged DEP: its key opens for a user through the customer
 * keys, its roots are the acknowledged ones (or a later try's). */
static bool check_dep(struct check *c, struct ldep *d)
{
    keytier_key *k = NULL;
    keytier_dep_info info;
    keytier_err e =
        keytier_dep_key_open(c->ctx, &user_req, d->tenant, d->id, &k);
    keytier_key_close(k);
    if (e == KEYTIER_OK)
        e = keytier_dep_show(c->ctx, d->tenant, d->id, &info);
    if (e != KEYTIER_OK)
        return lib_fail(d->id, e) == KEYTIER_OK;
    for (int slot = 0; slot < 2; slot++) {
        if (!root_allowed(c, d, slot, info.root_uri[slot])) {
            fprintf(stderr,
                    "crash lib: DEP %s: root %d is %s, acknowledged "
                    "%s\n",
                    d->id, slot, info.root_uri[slot], d->root[slot]);
            return false;
        }
        char text[256];
        snprintf(text, sizeof text, "roll %s %d %s", d->id, slot,
                 strstr(info.root_uri[slot], "object=") + 7);
        if (c->inflight && !strcmp(c->inflight, text) &&
            strcmp(d->root[slot], text + strlen(text) - 2) != 0) {
            crash_log_put(c->fd, CRASH_LANDED, false, "%s", text);
            c->r->landed = 1;
        }
    }
    c->r->checked++;
    return true;
}

/* A key (acknowledged, or the one in flight) opens by name under its
 * DEP; its data, when acknowledged, opens to what was sealed. */
static bool check_key(struct check *c, const struct lkey *k)
{
    keytier_key *key = NULL;
    keytier_key_info info;
    char path[600], msg[64];
    uint8_t env[1024], out[1024];
    size_t n = 0, got = 0;
    keytier_err e = keytier_key_open_name(c->ctx, &user_req, k->tenant,
                                          "Exchange", k->name, &key);
    if (e != KEYTIER_OK)
        return lib_fail(k->name, e) == KEYTIER_OK;
    keytier_key_get_info(key, &info);
    bool ok = !k->dep[0] || strcmp(info.dep_id, k->dep) == 0;
    if (ok && k->env) {
        snprintf(path, sizeof path, "%s/env/%s", c->dir, k->name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd >= 0 ? (size_t)read(fd, env, sizeof env) : 0;
        if (fd >= 0)
            close(fd);
        msg_of(k->name, msg);
        e = keytier_open(key, k->name, strlen(k->name), env, n, out, sizeof out,
                         &got);
        ok = e == KEYTIER_OK && got == strlen(msg) && !memcmp(out, msg, got);
    }
    keytier_key_close(key);
    if (!ok)
        fprintf(stderr,
                "crash lib: key %s: DEP %s (acknowledged %s), data "
                "%s\n",
                k->name, info.dep_id, k->dep, keytier_error_name(e));
    c->r->checked += ok ? 1u + k->env : 0;
    return ok;
}

/* The key in flight: there (landed, recorded) or not there at all. */
static bool check_inflight_key(struct check *c)
{
    struct lkey k = {0};
    if (!c->inflight || sscanf(c->inflight, "tier %23s %23s %36s", k.tenant,
                               k.name, k.dep) != 3)
        return true;
    keytier_key *key = NULL;
    keytier_err e = keytier_key_open_name(c->ctx, &user_req, k.tenant,
                                          "Exchange", k.name, &key);
    keytier_key_close(key);
    if (e == KEYTIER_E_NOT_FOUND)
        return true;
    if (!check_key(c, &k))
        return false;
    crash_log_put(c->fd, CRASH_LANDED, false, "%s", c->inflight);
    c->r->landed = 1;
    return model_apply(c->m, c->inflight);
}

/* A DEP that is in no acknowledgement: registering (refused until a
 * later read settles it) or complete (then recorded as landed). */
static bool check_unknown_dep(struct check *c, const keytier_dep_info *d)
{
    keytier_key *k = NULL;
    char text[256];
    keytier_err e =
        keytier_dep_key_open(c->ctx, &user_req, d->tenant, d->dep_id, &k);
    keytier_key_close(k);
    if (e == KEYTIER_E_DEP_STATE && d->state == KEYTIER_DEP_REGISTERING)
        return true;
    if (e != KEYTIER_OK)
        return lib_fail(d->dep_id, e) == KEYTIER_OK;
    snprintf(text, sizeof text, "dep %s %s", d->tenant, d->dep_id);
    crash_log_put(c->fd, CRASH_LANDED, false, "%s", text);
    c->r->landed |=
        c->inflight && !strncmp(c->inflight, text, strlen(c->inflight));
    return model_apply(c->m, text);
}

/* Every acknowledged DEP (and the migration tenant's two) checked; every
 * other DEP in the store registering or complete. */
static bool check_deps(struct check *c)
{
    keytier_dep_info *list = NULL;
    size_t n = 0, nd = c->m->nd;
    bool ok = true;
    for (size_t i = 0; ok && i < nd; i++)
        ok = check_dep(c, &c->m->d[i]);
    for (int i = 0; ok && i < 2; i++) {
        keytier_key *k = NULL;
        keytier_err e = keytier_dep_key_open(c->ctx, &user_req,
                                             CRASH_MIG_TENANT, c->m->m[i], &k);
        keytier_key_close(k);
        ok = e == KEYTIER_OK || lib_fail(c->m->m[i], e) == KEYTIER_OK;
    }
    keytier_err e = keytier_dep_list(c->ctx, NULL, NULL, &list, &n);
    if (ok && e != KEYTIER_OK)
        ok = lib_fail("keytier_dep_list", e) == KEYTIER_OK;
    for (size_t i = 0; ok && i < n; i++)
        if (dep_find(c->m, list[i].dep_id) == NULL &&
            strcmp(list[i].tenant, CRASH_MIG_TENANT) != 0)
            ok = check_unknown_dep(c, &list[i]);
    keytier_dep_list_free(list);
    return ok;
}

static long long sql_int(sqlite3 *db, const char *q, const char *a1,
                         const char *a2)
{
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        return -2;
    sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
    if (a2)
        sqlite3_bind_text(st, 2, a2, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* No key lost, each under one of the two DEPs, and the migration before
 * or after each batch: its items done are exactly the keys it moved. */
static bool check_mig_store(struct check *c, sqlite3 *db)
{
    const struct lmodel *m = c->m;
    long long all = sql_int(db,
                            "SELECT count(*) FROM tier_keys WHERE tenant = "
                            "?1 AND level = 1",
                            CRASH_MIG_TENANT, NULL);
    long long under = sql_int(db,
                              "SELECT count(*) FROM tier_keys WHERE level = 1 "
                              "AND dep_id IN (?1, ?2)",
                              m->m[0], m->m[1]);
    if (all != CRASH_MIG_KEYS || under != CRASH_MIG_KEYS) {
        fprintf(stderr, "crash lib: %lld keys of %s, %lld under its DEPs\n",
                all, CRASH_MIG_TENANT, under);
        return false;
    }
    if (!m->mig[0])
        return true;
    long long items = sql_int(db,
                              "SELECT count(*) FROM migration_items WHERE "
                              "migration_id = ?1 AND done = 1",
                              m->mig, NULL);
    long long moved = sql_int(db,
                              "SELECT count(*) FROM migration_items i JOIN "
                              "tier_keys k ON k.key_id = i.key_id WHERE "
                              "i.migration_id = ?1 AND k.dep_id = ?2",
                              m->mig, m->mig_target);
    long long done = sql_int(db,
                             "SELECT done FROM migrations WHERE migration_id "
                             "= ?1",
                             m->mig, NULL);
    long long state = sql_int(db,
                              "SELECT state FROM migrations WHERE "
                              "migration_id = ?1",
                              m->mig, NULL);
    if (items != moved || done != items || done < (long long)m->batch_done ||
        (m->mig_done && (state != 1 || done != CRASH_MIG_KEYS))) {
        fprintf(stderr,
                "crash lib: migration %s: %lld items done, %lld "
                "keys moved, counter %lld, state %lld; acknowledged "
                "%lu done%s\n",
                m->mig, items, moved, done, state, m->batch_done,
                m->mig_done ? ", finished" : "");
        return false;
    }
    c->r->checked += m->mig_done ? 1 : m->batch_done > 0;
    return true;
}

static bool sql_text(sqlite3 *db, const char *q, const char *a1, char *out,
                     size_t cap)
{
    sqlite3_stmt *st;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return true;
}

/* An assignment or a run in flight: landed (recorded) or not; an
 * unacknowledged migration any other way is a failure. */
static bool check_mig_inflight(struct check *c, sqlite3 *db)
{
    char last[KEYTIER_ID_SIZE], target[KEYTIER_ID_SIZE], text[256];
    sql_text(db,
             "SELECT migration_id FROM migrations WHERE tenant = ?1 ORDER BY "
             "created DESC, rowid DESC LIMIT 1",
             CRASH_MIG_TENANT, last, sizeof last);
    sql_text(db, "SELECT target_dep FROM migrations WHERE migration_id = ?1",
             last, target, sizeof target);
    if (last[0] && strcmp(last, c->m->mig) != 0) {
        snprintf(text, sizeof text, "assign %s", target);
        if (!c->inflight || strcmp(c->inflight, text) != 0) {
            fprintf(stderr,
                    "crash lib: migration %s was never acknowledged "
                    "(in flight: %s)\n",
                    last, c->inflight ? c->inflight : "none");
            return false;
        }
        snprintf(text, sizeof text, "assign %s %s", last, target);
        crash_log_put(c->fd, CRASH_LANDED, false, "%s", text);
        c->r->landed = 1;
        return model_apply(c->m, text);
    }
    snprintf(text, sizeof text, "migrated %s %s", c->m->mig, c->m->mig_target);
    if (c->m->mig[0] && !c->m->mig_done && c->inflight &&
        !strcmp(c->inflight, text) &&
        sql_int(db, "SELECT state FROM migrations WHERE migration_id = ?1",
                c->m->mig, NULL) == 1) {
        crash_log_put(c->fd, CRASH_LANDED, false, "%s", text);
        c->r->landed = 1;
        return model_apply(c->m, text);
    }
    return true;
}

static bool check_mig(struct check *c)
{
    char path[600];
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/store/keytier.db", c->dir);
    bool ok =
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK;
    sqlite3_busy_timeout(db, 10000);
    ok = ok && check_mig_inflight(c, db) && check_mig_store(c, db);
    sqlite3_close(db);
    return ok;
}

/* The records the DEP's writes make: its creation ("DEP created", or
 * "DEP registration finished" when a later read finished it) and one per
 * roll ("Customer key rolled", or "... roll resumed"). */
static bool check_audit_records(struct check *c, const char *path)
{
    static char line[KEYTIER_AUDIT_LINE_MAX];
    static unsigned made[MAX_DEPS], rolled[MAX_DEPS];
    memset(made, 0, sizeof made);
    memset(rolled, 0, sizeof rolled);
    FILE *f = fopen(path, "re");
    while (f && fgets(line, sizeof line, f)) {
        bool m = strstr(line, "\"DEP created\"") ||
                 strstr(line, "\"DEP registration finished\"");
        bool r = strstr(line, "\"Customer key rolled\"") ||
                 strstr(line, "\"Customer key roll resumed\"");
        for (size_t i = 0; (m || r) && i < c->m->nd; i++)
            if (strstr(line, c->m->d[i].id) != NULL) {
                made[i] += m;
                rolled[i] += r;
            }
    }
    if (f)
        fclose(f);
    for (size_t i = 0; i < c->m->nd; i++)
        if (!made[i] || rolled[i] < c->m->d[i].rolls) {
            fprintf(stderr,
                    "crash lib: DEP %s: %u creation records, %u roll "
                    "records for %u rolls\n",
                    c->m->d[i].id, made[i], rolled[i], c->m->d[i].rolls);
            return false;
        }
    return true;
}

/* The chain verifies, never shrinks, reaches its anchor, and holds the
 * records of the acknowledged writes. */
static bool check_audit(struct check *c, long *records, long *unanchored)
{
    char path[4096];
    uint64_t bad = 0, n = 0;
    keytier_err e = keytier_audit_log_path(c->ctx, path, sizeof path);
    if (e == KEYTIER_OK)
        e = keytier_audit_verify(path, &bad, &n);
    if (e != KEYTIER_OK || (long)n < c->m->records) {
        fprintf(stderr,
                "crash lib: audit log: %s at line %llu, %llu records "
                "(%ld at the last check): %s\n",
                keytier_error_name(e), (unsigned long long)bad,
                (unsigned long long)n, c->m->records,
                keytier_last_error_detail());
        return false;
    }
    *records = (long)n;
    /* A kill between an append and its anchor leaves that record
     * unanchored, until an append completes and anchors the new head: each
     * trial adds at most one. */
    keytier_audit_report rep;
    e = keytier_audit_verify_anchored(c->ctx, NULL, &rep);
    if (e != KEYTIER_OK && (e != KEYTIER_E_AUDIT_UNANCHORED ||
                            (long)rep.unanchored > c->m->unanchored + 1)) {
        fprintf(stderr,
                "crash lib: audit anchor: %s, %llu unanchored (%ld "
                "at the last check): %s\n",
                keytier_error_name(e), (unsigned long long)rep.unanchored,
                c->m->unanchored, keytier_last_error_detail());
        return false;
    }
    *unanchored = e == KEYTIER_OK ? 0 : (long)rep.unanchored;
    return check_audit_records(c, path);
}

static bool check_all(struct check *c, long *records, long *unanchored)
{
    keytier_avail_stats st;
    bool ok = check_deps(c) && check_inflight_key(c) && check_mig(c);
    for (size_t i = 0; ok && i < c->m->nk; i++)
        ok = check_key(c, &c->m->k[i]);
    ok = ok && check_audit(c, records, unanchored);
    if (ok && (keytier_avail_stats_get(c->ctx, &st) != KEYTIER_OK ||
               st.fallbacks != 0)) {
        fprintf(stderr, "crash lib: a read fell back to the availability "
                        "key: a customer key's copy is missing\n");
        ok = false;
    }
    return ok;
}

int crash_lib_check(const char *dir)
{
    char path[512];
    static struct lmodel m;
    struct crash_log log;
    struct crash_result r = {0};
    long records = 0, unanchored = 0;
    snprintf(path, sizeof path, "%s/acks", dir);
    if (!crash_log_read(path, &log) || !model_load(&log, &m))
        return 2;
    struct check c = {.dir = dir,
                      .m = &m,
                      .log = &log,
                      .r = &r,
                      .inflight = crash_log_inflight(&log)};
    r.acks = m.acks;
    r.new_acks = m.new_acks;
    r.tries = m.tries;
    r.inflight = c.inflight != NULL;
    c.fd = crash_log_open(path);
    if (c.fd < 0 || (c.ctx = lib_open(dir)) == NULL)
        return 2;
    if (!check_all(&c, &records, &unanchored)) {
        fprintf(stderr, "crash lib: check failed (%zu log lines)\n", log.n);
        return 1;
    }
    keytier_ctx_close(c.ctx);
    crash_log_put(c.fd, CRASH_CHECK, true, "%ld %ld", records, unanchored);
    crash_log_free(&log);
    crash_result_print(&r);
    return 0;
}

int crash_lib_seal_migration_data(const char *dir)
{
    char path[512], name[24];
    snprintf(path, sizeof path, "%s/acks", dir);
    int fd = crash_log_open(path);
    keytier_ctx *ctx = fd >= 0 ? lib_open(dir) : NULL;
    if (ctx == NULL)
        return 2;
    for (int i = 0; i < CRASH_MIG_KEYS; i += 30) {
        snprintf(name, sizeof name, "mig-%03d", i);
        if (env_seal(ctx, dir, CRASH_MIG_TENANT, name) != KEYTIER_OK)
            return 1;
        crash_log_put(fd, CRASH_OK, true, "env %s %s", CRASH_MIG_TENANT, name);
    }
    keytier_ctx_close(ctx);
    crash_log_put(fd, CRASH_CHECK, true, "0 0");
    close(fd);
    return 0;
}
