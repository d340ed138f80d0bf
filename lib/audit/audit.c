/*
 * The tamper-evident audit log (see audit.h for the line format).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "audit.h"
#include "kt_file.h"
#include "kt_lib.h"

/* json-c flags shared by writer and verifier: the hash covers exactly this
 * serialisation. */
#define KT_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
/* A record is small; anything longer is not ours. */
#define KT_AUDIT_LINE_MAX KEYTIER_AUDIT_LINE_MAX

static const char kt_audit_zero_hash[KT_AUDIT_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

static const char *const kt_audit_reserved[] = {
    "Seq",        "CreationTime", "Id",       "Node", "GlobalIndex",
    "RecordType", "Activity",     "PrevHash", "Hash",
};

struct kt_audit {
    pthread_mutex_t lock; /* flock does not exclude threads sharing fd */
    int fd;
    char *path;
    char *real_path; /* resolved once at open (anchors name it) */
    /* The tail as of our last append, valid while the size is unchanged. */
    bool tail_known;
    off_t tail_size;
    uint64_t tail_seq;
    char tail_hash[KT_AUDIT_HASH_HEX + 1];
    /* The log's identity (Id of its first record), for the file it was
     * read from. */
    bool id_known;
    dev_t id_dev;
    ino_t id_ino;
    char log_id[KT_AUDIT_ID_SIZE];
    /* Called after each append, under the lock (audit_anchor.c). */
    kt_audit_anchor_fn anchor;
    void *anchor_arg;
    void (*anchor_release)(void *arg);
    /* Takes each record's global index, under the lock, before its line
     * is written (audit_node.c); NULL: records without Node and index. */
    kt_audit_index_fn index;
    void *index_arg;
    char node[KEYTIER_NODE_MAX + 1];
};

static void kt_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool kt_sha256_hex(const char *data, size_t len,
                          char out[KT_AUDIT_HASH_HEX + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return false;
    kt_hex(md, sizeof md, out);
    return true;
}

static bool kt_is_hash_hex(const char *s)
{
    if (strlen(s) != KT_AUDIT_HASH_HEX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Random (version 4) UUID, RFC 4122 §4.4. */
static bool kt_uuid4(char out[37])
{
    unsigned char b[16];
    char h[33];

    if (RAND_bytes(b, sizeof b) != 1)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    kt_hex(b, sizeof b, h);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16,
             h + 20);
    return true;
}

/* UTC, ISO 8601 with milliseconds: 2026-11-23T15:30:00.123Z */
static void kt_utc_now(char out[32])
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ",
             (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
}

static keytier_err kt_fsync_dir(const char *path)
{
    char *dir = strdup(path);
    char *slash;
    int dfd;
    keytier_err err = KEYTIER_OK;

    if (!dir)
        return KEYTIER_E_NOMEM;
    slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        err = kt_err(KEYTIER_E_AUDIT, "cannot sync directory of %s", path);
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return err;
}

keytier_err kt_audit_open(const char *path, kt_audit **out)
{
    kt_audit *a;
    bool created = false;
    int fd;

    if (!path || !out)
        return kt_err(KEYTIER_E_ARGS, "audit log path missing");
    *out = NULL;
    fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        created = true;
        if (!kt_file_private(fd)) {
            int e = errno;
            close(fd);
            return kt_err(KEYTIER_E_AUDIT, "audit log %s: chmod 0600: %s", path,
                          strerror(e));
        }
    } else if (errno == EEXIST)
        fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return kt_err(KEYTIER_E_AUDIT, "cannot open audit log %s: %s", path,
                      strerror(errno));
    /* The new directory entry must survive a crash like the records. */
    if (created && kt_fsync_dir(path) != KEYTIER_OK) {
        close(fd);
        return KEYTIER_E_AUDIT;
    }
    a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path))) {
        free(a);
        close(fd);
        return kt_err(KEYTIER_E_NOMEM, "audit log %s", path);
    }
    a->real_path = realpath(path, NULL); /* NULL: anchors use path */
    pthread_mutex_init(&a->lock, NULL);
    a->fd = fd;
    *out = a;
    return KEYTIER_OK;
}

void kt_audit_set_anchor(kt_audit *a, kt_audit_anchor_fn fn, void *arg,
                         void (*release)(void *arg))
{
    pthread_mutex_lock(&a->lock);
    if (a->anchor_release)
        a->anchor_release(a->anchor_arg);
    a->anchor = fn;
    a->anchor_arg = arg;
    a->anchor_release = release;
    pthread_mutex_unlock(&a->lock);
}

void kt_audit_set_node(kt_audit *a, const char *node, kt_audit_index_fn fn,
                       void *arg)
{
    pthread_mutex_lock(&a->lock);
    kt_strlcpy(a->node, node ? node : "", sizeof a->node);
    a->index = node ? fn : NULL;
    a->index_arg = arg;
    pthread_mutex_unlock(&a->lock);
}

void kt_audit_close(kt_audit *a)
{
    if (!a)
        return;
    close(a->fd);
    if (a->anchor_release)
        a->anchor_release(a->anchor_arg);
    pthread_mutex_destroy(&a->lock);
    free(a->real_path);
    free(a->path);
    free(a);
}

/* Parses one line (no newline) into an object; NULL if it is not exactly
 * one JSON object. */
static json_object *kt_audit_parse(const char *line, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *obj;

    if (!tok)
        return NULL;
    obj = json_tokener_parse_ex(tok, line, (int)len);
    if (obj && (json_tokener_get_error(tok) != json_tokener_success ||
                json_tokener_get_parse_end(tok) != len ||
                !json_object_is_type(obj, json_type_object))) {
        json_object_put(obj);
        obj = NULL;
    }
    json_tokener_free(tok);
    return obj;
}

/* A record Id as kt_uuid4 writes it: 36 characters of hex and dashes. */
static bool kt_is_record_id(const char *s)
{
    if (strlen(s) != KT_AUDIT_ID_SIZE - 1)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
              *p == '-'))
            return false;
    return true;
}

/*
 * The log's identity: the Id of its first record (a random UUID covered by
 * that record's Hash).  KEYTIER_E_NOT_FOUND for an empty file.
 */
static keytier_err kt_audit_first_id(int fd, const char *path,
                                     char out[KT_AUDIT_ID_SIZE])
{
    char *buf = malloc(KT_AUDIT_LINE_MAX);
    ssize_t n = 0, r;
    char *nl = NULL;
    json_object *obj = NULL, *id;
    keytier_err err = KEYTIER_OK;

    if (!buf)
        return kt_err(KEYTIER_E_NOMEM, "audit log %s", path);
    /* Bounded: a record is at most KT_AUDIT_LINE_MAX bytes. */
    while (!nl && n < (ssize_t)KT_AUDIT_LINE_MAX &&
           (r = pread(fd, buf + n, KT_AUDIT_LINE_MAX - (size_t)n, n)) > 0) {
        nl = memchr(buf + n, '\n', (size_t)r);
        n += r;
    }
    if (n == 0) {
        err = kt_err(KEYTIER_E_NOT_FOUND, "audit log %s is empty", path);
        goto out;
    }
    if (!nl || !(obj = kt_audit_parse(buf, (size_t)(nl - buf))) ||
        !json_object_object_get_ex(obj, "Id", &id) ||
        !json_object_is_type(id, json_type_string) ||
        !kt_is_record_id(json_object_get_string(id))) {
        err = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                     "line 1 of %s is not an audit record with an Id", path);
        goto out;
    }
    memcpy(out, json_object_get_string(id), KT_AUDIT_ID_SIZE);
out:
    json_object_put(obj);
    free(buf);
    return err;
}

keytier_err kt_audit_log_id(const char *path, char out[KT_AUDIT_ID_SIZE])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    keytier_err err;

    if (fd < 0)
        return kt_err(KEYTIER_E_IO, "cannot open audit log %s: %s", path,
                      strerror(errno));
    err = kt_audit_first_id(fd, path, out);
    close(fd);
    return err;
}

/* The offsets of the last two newlines of buf[0..n) (-1: none). */
static void kt_audit_last_newlines(const char *buf, size_t n, off_t *nl,
                                   off_t *prev_nl)
{
    for (size_t i = n; i-- > 0;) {
        if (buf[i] != '\n')
            continue;
        if (*nl < 0)
            *nl = (off_t)i;
        else {
            *prev_nl = (off_t)i;
            return;
        }
    }
}

/* The last record (obj, NULL if its line did not parse) as the tail the
 * next append chains to: its Seq and Hash. */
static keytier_err kt_audit_tail_record(kt_audit *a, json_object *obj)
{
    json_object *seq, *hash;

    if (!obj || !json_object_object_get_ex(obj, "Seq", &seq) ||
        !json_object_object_get_ex(obj, "Hash", &hash) ||
        !json_object_is_type(seq, json_type_int) ||
        !json_object_is_type(hash, json_type_string) ||
        !kt_is_hash_hex(json_object_get_string(hash)))
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "last line of %s is not an audit record", a->path);
    a->tail_seq = (uint64_t)json_object_get_int64(seq);
    memcpy(a->tail_hash, json_object_get_string(hash), sizeof a->tail_hash);
    return KEYTIER_OK;
}

/*
 * Finds the last record of the file (under flock): its Seq and Hash.  A
 * trailing line without a newline is a record whose append never completed
 * (it was not reported written): it is cut off.
 */
static keytier_err kt_audit_read_tail(kt_audit *a, off_t *size)
{
    char *buf = NULL;
    size_t cap = 4096;
    keytier_err err = KEYTIER_OK;
    json_object *obj = NULL;

    for (;;) {
        off_t start, end = *size, nl = -1, prev_nl = -1;
        size_t n;

        if (end == 0) {
            a->tail_seq = 0;
            memcpy(a->tail_hash, kt_audit_zero_hash, sizeof a->tail_hash);
            goto out;
        }
        start = end > (off_t)cap ? end - (off_t)cap : 0;
        n = (size_t)(end - start);
        free(buf);
        buf = malloc(n + 1);
        if (!buf) {
            err = kt_err(KEYTIER_E_NOMEM, "audit log %s", a->path);
            goto out;
        }
        if (pread(a->fd, buf, n, start) != (ssize_t)n) {
            err = kt_err(KEYTIER_E_AUDIT, "cannot read audit log %s", a->path);
            goto out;
        }
        kt_audit_last_newlines(buf, n, &nl, &prev_nl);
        if (nl >= 0 && (size_t)nl != n - 1) {
            /* Partial last line: drop it (it was never acknowledged). */
            off_t keep = start + nl + 1;
            if (ftruncate(a->fd, keep) != 0) {
                err = kt_err(KEYTIER_E_AUDIT, "cannot repair audit log %s",
                             a->path);
                goto out;
            }
            *size = keep;
            continue;
        }
        if (nl < 0 && start == 0) {
            /* No complete line at all. */
            if (ftruncate(a->fd, 0) != 0) {
                err = kt_err(KEYTIER_E_AUDIT, "cannot repair audit log %s",
                             a->path);
                goto out;
            }
            *size = 0;
            continue;
        }
        if (prev_nl < 0 && start > 0) {
            if (cap >= KT_AUDIT_LINE_MAX) {
                err = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                             "last line of %s is too long", a->path);
                goto out;
            }
            cap *= 4;
            continue;
        }
        /* The last line is buf[prev_nl + 1 .. nl). */
        obj = kt_audit_parse(buf + prev_nl + 1, (size_t)(nl - prev_nl - 1));
        break;
    }
    err = kt_audit_tail_record(a, obj);
out:
    json_object_put(obj);
    free(buf);
    return err;
}

static keytier_err kt_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return KEYTIER_E_AUDIT;
        p += w;
        n -= (size_t)w;
    }
    return KEYTIER_OK;
}

/* Builds the line for the next record (seq, prev) around fields. */
static keytier_err kt_audit_build(const char *activity, json_object *fields,
                                  uint64_t seq, const char *prev,
                                  const kt_audit_node_fields *nd, char **line,
                                  size_t *len, const char id[KT_AUDIT_ID_SIZE])
{
    json_object *rec = json_object_new_object();
    char when[32], hash[KT_AUDIT_HASH_HEX + 1];
    const char *text;
    keytier_err err = KEYTIER_OK;

    *line = NULL;
    kt_utc_now(when);
    if (!rec) {
        err = kt_err(KEYTIER_E_NOMEM, "audit record");
        goto out;
    }
    json_object_object_add(rec, "Seq", json_object_new_int64((int64_t)seq));
    json_object_object_add(rec, "CreationTime", json_object_new_string(when));
    json_object_object_add(rec, "Id", json_object_new_string(id));
    if (nd) {
        json_object_object_add(rec, "Node", json_object_new_string(nd->node));
        json_object_object_add(rec, "GlobalIndex",
                               json_object_new_int64((int64_t)nd->index));
    }
    json_object_object_add(rec, "RecordType",
                           json_object_new_string(KT_AUDIT_RECORD_TYPE));
    json_object_object_add(rec, "Activity", json_object_new_string(activity));
    if (fields) {
        json_object_object_foreach(fields, key, val)
        {
            json_object_object_add(rec, key, json_object_get(val));
        }
    }
    json_object_object_add(rec, "PrevHash", json_object_new_string(prev));
    text = json_object_to_json_string_length(rec, KT_JSON_FLAGS, len);
    if (!text || !kt_sha256_hex(text, *len, hash)) {
        err = kt_err(KEYTIER_E_CRYPTO, "cannot hash an audit record");
        goto out;
    }
    json_object_object_add(rec, "Hash", json_object_new_string(hash));
    text = json_object_to_json_string_length(rec, KT_JSON_FLAGS, len);
    if (!text || !(*line = malloc(*len + 1))) {
        err = kt_err(KEYTIER_E_NOMEM, "audit record");
        goto out;
    }
    memcpy(*line, text, *len);
    (*line)[(*len)++] = '\n';
out:
    json_object_put(rec);
    return err;
}

static keytier_err kt_audit_check_line(const char *line, size_t len,
                                       uint64_t line_no, uint64_t want_seq,
                                       char prev[KT_AUDIT_HASH_HEX + 1],
                                       kt_audit_node_fields *nd);

/* The offset where the line of record seq starts, counted back from the
 * tail: the newline ending record seq - 1 (none for the first line). */
static keytier_err kt_audit_line_start(kt_audit *a, uint64_t seq, off_t *start)
{
    uint64_t back = a->tail_seq - seq + 2, seen = 0;
    off_t pos = a->tail_size;
    char buf[8192];

    while (pos > 0) {
        size_t n = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
        pos -= (off_t)n;
        if (pread(a->fd, buf, n, pos) != (ssize_t)n)
            return kt_err(KEYTIER_E_AUDIT, "cannot read audit log %s: %s",
                          a->path, strerror(errno));
        for (size_t i = n; i-- > 0;)
            if (buf[i] == '\n' && ++seen == back) {
                *start = pos + (off_t)i + 1;
                return KEYTIER_OK;
            }
    }
    if (seen + 1 == back) {
        *start = 0;
        return KEYTIER_OK;
    }
    return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                  "audit log %s has %llu lines, not the %llu records its "
                  "tail says",
                  a->path, (unsigned long long)seen,
                  (unsigned long long)a->tail_seq);
}

/* The line at *pos (at most KT_AUDIT_LINE_MAX bytes, before the tail) into
 * line, without its newline; *pos moves past it. */
static keytier_err kt_audit_pread_line(kt_audit *a, off_t *pos, uint64_t seq,
                                       char *line, size_t *len)
{
    size_t max = KT_AUDIT_LINE_MAX, n = 0;
    char *nl = NULL;

    if (a->tail_size - *pos < (off_t)max)
        max = (size_t)(a->tail_size - *pos);
    while (n < max && !nl) {
        ssize_t r = pread(a->fd, line + n, max - n, *pos + (off_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return kt_err(KEYTIER_E_AUDIT, "cannot read audit log %s: %s",
                          a->path, strerror(errno));
        if (r == 0)
            break;
        nl = memchr(line + n, '\n', (size_t)r);
        n += (size_t)r;
    }
    if (!nl)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "audit log %s: the line of record %llu is incomplete or "
                      "longer than a record can be",
                      a->path, (unsigned long long)seq);
    *len = (size_t)(nl - line);
    *pos += (off_t)*len + 1;
    return KEYTIER_OK;
}

/* Whether line (without its newline) is record seq with this Hash. */
static bool kt_audit_line_is(const char *line, size_t len, uint64_t seq,
                             const char *hash)
{
    json_object *obj = kt_audit_parse(line, len), *s, *h;
    bool ok = obj && json_object_object_get_ex(obj, "Seq", &s) &&
              json_object_object_get_ex(obj, "Hash", &h) &&
              json_object_is_type(s, json_type_int) &&
              json_object_get_int64(s) == (int64_t)seq &&
              json_object_is_type(h, json_type_string) &&
              strcmp(json_object_get_string(h), hash) == 0;

    json_object_put(obj);
    return ok;
}

keytier_err kt_audit_chain_since(kt_audit *a, uint64_t seq, const char *hash)
{
    char prev[KT_AUDIT_HASH_HEX + 1], *line;
    off_t pos = 0;
    size_t len = 0;
    keytier_err err;

    if (!a->tail_known || seq == 0 || seq > a->tail_seq)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "audit log %s has no record %llu", a->path,
                      (unsigned long long)seq);
    err = kt_audit_line_start(a, seq, &pos);
    if (err != KEYTIER_OK)
        return err;
    if (!(line = malloc(KT_AUDIT_LINE_MAX)))
        return kt_err(KEYTIER_E_NOMEM, "audit log %s: line buffer", a->path);
    err = kt_audit_pread_line(a, &pos, seq, line, &len);
    if (err == KEYTIER_OK && !kt_audit_line_is(line, len, seq, hash))
        err = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                     "audit log %s: record %llu is not the anchored one: the "
                     "log was rewritten",
                     a->path, (unsigned long long)seq);
    snprintf(prev, sizeof prev, "%s", hash);
    for (uint64_t s = seq + 1; err == KEYTIER_OK && s <= a->tail_seq; s++) {
        err = kt_audit_pread_line(a, &pos, s, line, &len);
        if (err == KEYTIER_OK)
            err = kt_audit_check_line(line, len, s, s, prev, NULL);
    }
    if (err == KEYTIER_OK &&
        (pos != a->tail_size || strcmp(prev, a->tail_hash) != 0))
        err = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                     "audit log %s: the chain from record %llu does not reach "
                     "the head",
                     a->path, (unsigned long long)seq);
    free(line);
    return err;
}

/*
 * Hands the new head to the anchor hook (still under the lock, so anchors
 * follow the order of the records).  The record is written whatever
 * happens here: a failed anchor only lags (audit.h).
 */
/* The identity of the log the record seq (with Id id) goes to: for the
 * first record its own Id, else the Id of line 1 (read again when the file
 * is another one than last time). */
static keytier_err kt_audit_know_id(kt_audit *a, const struct stat *st,
                                    uint64_t seq, const char *id)
{
    if (seq == 1) {
        memcpy(a->log_id, id, sizeof a->log_id);
        a->id_known = true;
    } else if (!a->id_known || a->id_dev != st->st_dev ||
               a->id_ino != st->st_ino) {
        a->id_known = false;
        keytier_err e = kt_audit_first_id(a->fd, a->path, a->log_id);
        if (e != KEYTIER_OK)
            return e;
        a->id_known = true;
    }
    a->id_dev = st->st_dev;
    a->id_ino = st->st_ino;
    return KEYTIER_OK;
}

static void kt_audit_anchor_head(kt_audit *a, const struct stat *st,
                                 const char *id, const char *prev)
{
    kt_audit_head head = {.path = a->real_path ? a->real_path : a->path,
                          .seq = a->tail_seq};

    if (kt_audit_know_id(a, st, a->tail_seq, id) != KEYTIER_OK) {
        a->anchor(a->anchor_arg, a, NULL); /* reports the error */
        return;
    }
    memcpy(head.log_id, a->log_id, sizeof head.log_id);
    memcpy(head.hash, a->tail_hash, sizeof head.hash);
    memcpy(head.prev_hash, prev, sizeof head.prev_hash);
    a->anchor(a->anchor_arg, a, &head);
}

/*
 * The record's global index, taken from the store (the index hook) for the
 * log it goes to, before its line is written: a crash or a failed write
 * after this leaves the index unused (a gap verify accepts), never an
 * index on two records.  Without the index the record is not written
 * (KEYTIER_E_AUDIT, or KEYTIER_E_AUDIT_NODE for another node's log).
 */
static keytier_err kt_audit_take_index(kt_audit *a, const struct stat *st,
                                       const char *id, kt_audit_node_fields *nd)
{
    if (!a->index)
        return KEYTIER_OK;
    keytier_err e = kt_audit_know_id(a, st, a->tail_seq + 1, id);
    if (e != KEYTIER_OK)
        return kt_err_context(KEYTIER_E_AUDIT, "audit log %s", a->path);
    kt_strlcpy(nd->node, a->node, sizeof nd->node);
    e = a->index(a->index_arg, a->log_id, a->node,
                 a->real_path ? a->real_path : a->path, &nd->index);
    if (e == KEYTIER_E_AUDIT_NODE)
        return e;
    if (e != KEYTIER_OK)
        return kt_err_context(KEYTIER_E_AUDIT,
                              "audit log %s: no global index for the record",
                              a->path);
    return KEYTIER_OK;
}

/* A line not written, or not synced: the caller hears the record was not
 * written and undoes or refuses what it was about, so the line (or what
 * part of it was written) goes too, back to the old end. */
static keytier_err kt_audit_cut(kt_audit *a, off_t size, const char *what)
{
    int saved = errno;
    if (ftruncate(a->fd, size) != 0)
        a->tail_known = false;
    return kt_err(KEYTIER_E_AUDIT, "cannot %s audit log %s: %s", what, a->path,
                  strerror(saved));
}

keytier_err kt_audit_append(kt_audit *a, const char *activity,
                            json_object *fields, uint64_t *seq_out)
{
    char *line = NULL, id[KT_AUDIT_ID_SIZE], prev[KT_AUDIT_HASH_HEX + 1];
    kt_audit_node_fields nd = {.index = 0};
    size_t len = 0;
    struct stat st;
    off_t size;
    keytier_err err = KEYTIER_OK;
    bool locked = false;

    if (!a || !activity ||
        (fields && !json_object_is_type(fields, json_type_object))) {
        json_object_put(fields);
        return kt_err(KEYTIER_E_ARGS, "audit record without activity");
    }
    for (size_t i = 0;
         fields && i < sizeof kt_audit_reserved / sizeof kt_audit_reserved[0];
         i++)
        if (json_object_object_get_ex(fields, kt_audit_reserved[i], NULL)) {
            json_object_put(fields);
            return kt_err(KEYTIER_E_ARGS, "audit field %s is reserved",
                          kt_audit_reserved[i]);
        }
    pthread_mutex_lock(&a->lock);
    if (flock(a->fd, LOCK_EX) != 0) {
        err = kt_err(KEYTIER_E_AUDIT, "cannot lock audit log %s", a->path);
        goto out;
    }
    locked = true;
    if (fstat(a->fd, &st) != 0) {
        err = kt_err(KEYTIER_E_AUDIT, "cannot stat audit log %s", a->path);
        goto out;
    }
    size = st.st_size;
    /* Another process may have appended since: then read its last hash. */
    if (!a->tail_known || a->tail_size != size) {
        a->tail_known = false;
        err = kt_audit_read_tail(a, &size);
        if (err != KEYTIER_OK)
            goto out;
    }
    if (!kt_uuid4(id)) {
        err = kt_err(KEYTIER_E_CRYPTO, "cannot make an audit record id");
        goto out;
    }
    err = kt_audit_take_index(a, &st, id, &nd);
    if (err == KEYTIER_OK)
        err = kt_audit_build(activity, fields, a->tail_seq + 1, a->tail_hash,
                             a->index ? &nd : NULL, &line, &len, id);
    if (err != KEYTIER_OK)
        goto out;
    if (kt_write_all(a->fd, line, len) != KEYTIER_OK) {
        err = kt_audit_cut(a, size, "write");
        goto out;
    }
    /* A record reported written must survive a crash. */
    if (fdatasync(a->fd) != 0) {
        err = kt_audit_cut(a, size, "sync");
        goto out;
    }
    memcpy(prev, a->tail_hash, sizeof prev);
    a->tail_seq++;
    /* The new tail hash is the Hash of the line just written. */
    memcpy(a->tail_hash, line + len - 1 - 2 - KT_AUDIT_HASH_HEX,
           KT_AUDIT_HASH_HEX);
    a->tail_size = size + (off_t)len;
    a->tail_known = true;
    if (seq_out)
        *seq_out = a->tail_seq;
    if (a->anchor)
        kt_audit_anchor_head(a, &st, id, prev);
out:
    if (locked)
        flock(a->fd, LOCK_UN);
    pthread_mutex_unlock(&a->lock);
    json_object_put(fields);
    free(line);
    return err;
}

static void kt_add_str(json_object *o, const char *key, const char *val)
{
    if (val)
        json_object_object_add(o, key, json_object_new_string(val));
}

void kt_audit_add_dep_fields(json_object *o, const char *workload,
                             const char *tenant, const char *dep_id,
                             const char *policy_id)
{
    kt_add_str(o, "Workload", workload);
    kt_add_str(o, "OrganizationId", tenant);
    kt_add_str(o, "DataEncryptionPolicyId", dep_id);
    kt_add_str(o, "PolicyId", policy_id);
}

static json_object *kt_audit_request_fields(const kt_audit_request *req)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    kt_audit_add_dep_fields(o, req->workload, req->org_id, req->dep_id,
                            req->policy_id);
    kt_add_str(o, "RequestId", req->request_id);
    kt_add_str(o, "RequestKind", req->kind);
    kt_add_str(o, "Operation", req->operation);
    kt_add_str(o, "ApprovalId", req->approval_id);
    return o;
}

/* "pkcs11:token=A;object=r" from a URI: the query part (where a PIN could
 * be) never reaches the log. */
static json_object *kt_audit_uri(const char *uri)
{
    size_t n = strcspn(uri ? uri : "", "?");

    return json_object_new_string_len(uri ? uri : "", (int)n);
}

static json_object *kt_audit_key_errors(const kt_audit_key_error errs[2])
{
    json_object *arr = json_object_new_array();
    char name[KT_CKR_NAME_MAX];

    for (int i = 0; arr && i < 2; i++) {
        json_object *e = json_object_new_object();
        if (!e)
            break;
        kt_add_str(e, "Key", errs[i].key);
        json_object_object_add(e, "Uri", kt_audit_uri(errs[i].uri));
        kt_add_str(e, "Error", kt_ckr_name(errs[i].rv, name));
        json_object_object_add(e, "Code",
                               json_object_new_int64((int64_t)errs[i].rv));
        kt_add_str(e, "Class", kt_ckr_class_name(kt_ckr_classify(errs[i].rv)));
        json_object_array_add(arr, e);
    }
    return arr;
}

static keytier_err kt_audit_keys_event(kt_audit *a, const char *activity,
                                       const kt_audit_request *req,
                                       const kt_audit_key_error errs[2])
{
    json_object *o = kt_audit_request_fields(req);

    if (!o)
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    json_object_object_add(o, "CustomerKeyErrors", kt_audit_key_errors(errs));
    return kt_audit_append(a, activity, o, NULL);
}

keytier_err kt_audit_fallback(kt_audit *a, const kt_audit_request *req,
                              const kt_audit_key_error errs[2])
{
    return kt_audit_keys_event(a, KT_AUDIT_FALLBACK, req, errs);
}

keytier_err kt_audit_denied(kt_audit *a, const kt_audit_request *req,
                            const kt_audit_key_error errs[2])
{
    return kt_audit_keys_event(a, KT_AUDIT_DENIED, req, errs);
}

keytier_err kt_audit_dep_created(kt_audit *a, const kt_audit_request *req)
{
    json_object *o = kt_audit_request_fields(req);

    if (!o)
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    return kt_audit_append(a, KT_AUDIT_DEP_CREATED, o, NULL);
}

keytier_err kt_audit_cache_alert(kt_audit *a, const char *org_id,
                                 const char *dep_id, const char *entry,
                                 uint64_t failing_ms, uint64_t expires_in_ms)
{
    json_object *o = json_object_new_object();

    if (!o)
        return kt_err(KEYTIER_E_NOMEM, "audit record");
    kt_add_str(o, "OrganizationId", org_id);
    kt_add_str(o, "DataEncryptionPolicyId", dep_id);
    kt_add_str(o, "CacheEntry", entry);
    json_object_object_add(o, "RefreshFailingMs",
                           json_object_new_int64((int64_t)failing_ms));
    json_object_object_add(o, "ExpiresInMs",
                           json_object_new_int64((int64_t)expires_in_ms));
    return kt_audit_append(a, KT_AUDIT_CACHE_ALERT, o, NULL);
}

/* The Node and GlobalIndex of a record (nd->index 0: it has neither, as
 * records written before nodes); a record with one and not the other, or
 * with a bad value, is not one keytier wrote. */
static keytier_err kt_audit_node_of(json_object *obj, uint64_t line_no,
                                    kt_audit_node_fields *nd)
{
    json_object *node, *idx;
    bool has_node = json_object_object_get_ex(obj, "Node", &node);
    bool has_idx = json_object_object_get_ex(obj, "GlobalIndex", &idx);

    nd->node[0] = '\0';
    nd->index = 0;
    if (!has_node && !has_idx)
        return KEYTIER_OK;
    if (!has_node || !has_idx || !json_object_is_type(node, json_type_string) ||
        !kt_node_name_ok(json_object_get_string(node)) ||
        !json_object_is_type(idx, json_type_int) ||
        json_object_get_int64(idx) < 1)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "line %llu has a bad Node or GlobalIndex",
                      (unsigned long long)line_no);
    kt_strlcpy(nd->node, json_object_get_string(node), sizeof nd->node);
    nd->index = (uint64_t)json_object_get_int64(idx);
    return KEYTIER_OK;
}

/* Checks one line (without its newline) against the chain so far; nd (may
 * be NULL) gets its Node and GlobalIndex. */
static keytier_err kt_audit_check_line(const char *line, size_t len,
                                       uint64_t line_no, uint64_t want_seq,
                                       char prev[KT_AUDIT_HASH_HEX + 1],
                                       kt_audit_node_fields *nd)
{
    json_object *obj = NULL, *seq, *hash, *prev_hash, *id;
    char want[KT_AUDIT_HASH_HEX + 1];
    const char *text;
    size_t tlen;
    keytier_err err = KEYTIER_E_AUDIT_TAMPERED;

    if (memchr(line, '\0', len) || !(obj = kt_audit_parse(line, len))) {
        kt_err(err, "line %llu is not a JSON object",
               (unsigned long long)line_no);
        goto out;
    }
    /* Any byte changed, even whitespace, shows: the writer's exact text. */
    text = json_object_to_json_string_length(obj, KT_JSON_FLAGS, &tlen);
    if (!text || tlen != len || memcmp(text, line, len) != 0) {
        kt_err(err, "line %llu was edited (not as written)",
               (unsigned long long)line_no);
        goto out;
    }
    if (!json_object_object_get_ex(obj, "Hash", &hash) ||
        !json_object_is_type(hash, json_type_string) ||
        !kt_is_hash_hex(json_object_get_string(hash)) ||
        !json_object_object_get_ex(obj, "PrevHash", &prev_hash) ||
        !json_object_is_type(prev_hash, json_type_string) ||
        !json_object_object_get_ex(obj, "Seq", &seq) ||
        !json_object_is_type(seq, json_type_int) ||
        /* the Id a log is known by (kt_audit_log_id): a record's own */
        !json_object_object_get_ex(obj, "Id", &id) ||
        !json_object_is_type(id, json_type_string) ||
        !kt_is_record_id(json_object_get_string(id))) {
        kt_err(err, "line %llu lacks Seq, Id, PrevHash or Hash",
               (unsigned long long)line_no);
        goto out;
    }
    memcpy(want, json_object_get_string(hash), sizeof want);
    json_object_object_del(obj, "Hash");
    text = json_object_to_json_string_length(obj, KT_JSON_FLAGS, &tlen);
    {
        char got[KT_AUDIT_HASH_HEX + 1];
        if (!text || !kt_sha256_hex(text, tlen, got) ||
            memcmp(got, want, KT_AUDIT_HASH_HEX) != 0) {
            kt_err(err, "line %llu was edited (hash mismatch)",
                   (unsigned long long)line_no);
            goto out;
        }
    }
    if (strcmp(json_object_get_string(prev_hash), prev) != 0) {
        kt_err(err,
               "line %llu does not follow the record before it (removed, "
               "reordered or forged line)",
               (unsigned long long)line_no);
        goto out;
    }
    if (json_object_get_int64(seq) < 0 ||
        (uint64_t)json_object_get_int64(seq) != want_seq) {
        kt_err(err, "line %llu has sequence %lld, expected %llu",
               (unsigned long long)line_no,
               (long long)json_object_get_int64(seq),
               (unsigned long long)want_seq);
        goto out;
    }
    if (nd && kt_audit_node_of(obj, line_no, nd) != KEYTIER_OK)
        goto out;
    memcpy(prev, want, KT_AUDIT_HASH_HEX + 1);
    err = KEYTIER_OK;
out:
    json_object_put(obj);
    return err;
}

/* One line of f, newline included, into buf (max bytes). Returns its
 * length; 0 at end of file; -1 on a read error (errno set); -2 when the line
 * is longer than max: a record never is, so nothing more of it is read. */
static ssize_t kt_audit_read_line(FILE *f, char *buf, size_t max)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF) {
        if (n == max)
            return -2;
        buf[n++] = (char)c;
        if (c == '\n')
            return (ssize_t)n;
    }
    return ferror(f) ? -1 : (ssize_t)n;
}

/* Checks the line the reader gave (n as kt_audit_read_line returns it). */
static keytier_err kt_audit_scan_line(const char *path, const char *line,
                                      ssize_t n, uint64_t line_no,
                                      char prev[KT_AUDIT_HASH_HEX + 1],
                                      kt_audit_node_fields *nd)
{
    if (n == -1)
        return kt_err(KEYTIER_E_IO, "cannot read audit log %s at line %llu: %s",
                      path, (unsigned long long)line_no, strerror(errno));
    if (n == -2)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "line %llu is longer than a record can be (%u bytes)",
                      (unsigned long long)line_no, KT_AUDIT_LINE_MAX);
    if (line[n - 1] != '\n')
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "line %llu is incomplete (no newline)",
                      (unsigned long long)line_no);
    if (memchr(line, '\0', (size_t)n) != NULL)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED, "line %llu holds a NUL byte",
                      (unsigned long long)line_no);
    return kt_audit_check_line(line, (size_t)n - 1, line_no, line_no, prev, nd);
}

/*
 * The rules of one node's chain (DESIGN.md §2 "Audit across nodes"): the
 * records carrying a global index are all of one node, each index above
 * the one before (the counter hands them out in order
 * and the chain's lock orders its appends).  A record of another node is
 * one copied from its chain.
 */
static keytier_err kt_audit_scan_node(kt_audit_scan_result *r,
                                      const kt_audit_node_fields *nd,
                                      uint64_t line_no)
{
    if (nd->index == 0)
        return KEYTIER_OK; /* written before nodes, or without a store: the
                              chain alone orders it */
    if (r->indexed > 0 && strcmp(nd->node, r->node) != 0)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "line %llu is a record of node %s in the chain of node "
                      "%s: copied from another node's chain",
                      (unsigned long long)line_no, nd->node, r->node);
    if (r->indexed > 0 && nd->index <= r->last_index)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "line %llu has global index %llu, not above the %llu "
                      "before it",
                      (unsigned long long)line_no,
                      (unsigned long long)nd->index,
                      (unsigned long long)r->last_index);
    if (r->indexed == 0) {
        kt_strlcpy(r->node, nd->node, sizeof r->node);
        r->first_index = nd->index;
    }
    if (r->collect) {
        if (!kt_array_reserve((void **)&r->indices, &r->cap_indices, r->indexed,
                              sizeof *r->indices, 64))
            return kt_err(KEYTIER_E_NOMEM, "audit log: global indices");
    }
    if (r->collect)
        r->indices[r->indexed] = nd->index;
    r->indexed++;
    r->last_index = nd->index;
    return KEYTIER_OK;
}

/* Reads the log with a bound on every line: a read or allocation failure
 * is an error, never taken for the end of the log. */
keytier_err kt_audit_scan(const char *path, kt_audit_scan_result *r)
{
    char prev[KT_AUDIT_HASH_HEX + 1];
    kt_audit_node_fields nd;
    uint64_t line_no = 0;
    keytier_err err = KEYTIER_OK;

    if (!path || !r)
        return kt_err(KEYTIER_E_ARGS, "audit verify: path missing");
    r->bad_line = 0;
    r->records = 0;
    r->at_hash[0] = '\0';
    r->node[0] = '\0';
    r->indexed = r->first_index = r->last_index = 0;
    r->indices = NULL;
    r->cap_indices = 0;
    char *line = malloc(KT_AUDIT_LINE_MAX);
    if (line == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit log %s: line buffer", path);
    FILE *f = fopen(path, "re");
    if (!f) {
        free(line);
        return kt_err(KEYTIER_E_IO, "cannot open audit log %s: %s", path,
                      strerror(errno));
    }
    memcpy(prev, kt_audit_zero_hash, sizeof prev);
    memcpy(r->head_hash, kt_audit_zero_hash, sizeof r->head_hash);
    for (;;) {
        ssize_t n = kt_audit_read_line(f, line, KT_AUDIT_LINE_MAX);
        if (n == 0)
            break;
        line_no++;
        err = kt_audit_scan_line(path, line, n, line_no, prev, &nd);
        if (err == KEYTIER_OK)
            err = kt_audit_scan_node(r, &nd, line_no);
        if (err != KEYTIER_OK) {
            r->bad_line = err == KEYTIER_E_AUDIT_TAMPERED ? line_no : 0;
            break;
        }
        r->records = line_no;
        memcpy(r->head_hash, prev, sizeof r->head_hash);
        if (line_no == r->at_seq)
            memcpy(r->at_hash, prev, sizeof r->at_hash);
    }
    free(line);
    fclose(f);
    return err;
}

keytier_err kt_audit_verify(const char *path, uint64_t *bad_line,
                            uint64_t *records)
{
    kt_audit_scan_result r = {.at_seq = 0};
    keytier_err err;

    if (!bad_line)
        return kt_err(KEYTIER_E_ARGS, "audit verify: path missing");
    *bad_line = 0;
    if (records)
        *records = 0;
    err = kt_audit_scan(path, &r);
    *bad_line = r.bad_line;
    if (records)
        *records = r.records;
    /* No record, nothing vouched for: an emptied copy is not "intact". */
    if (err == KEYTIER_OK && r.records == 0)
        return kt_err(KEYTIER_E_AUDIT_EMPTY, "%s holds no record", path);
    return err;
}

KEYTIER_API keytier_err keytier_audit_verify(const char *path,
                                             uint64_t *bad_line,
                                             uint64_t *records)
{
    kt_err_clear();
    return kt_audit_verify(path, bad_line, records);
}
