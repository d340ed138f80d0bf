/* Envelopes: round trips, the key commitment, and tamper tests - every
 * single byte of an envelope flipped, truncation at every length, chunks
 * dropped, repeated, swapped, data appended - for the buffer and the
 * streaming API.  Chunks are 256 bytes here so envelopes have several. */
#include <check.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testenv.h"

#define CHUNK 256
#define HDR   (88 + 5) /* tenant "org-1" */
#define FULL  (CHUNK + 16)

static struct testenv T;
static keytier_ctx *ctx;
static keytier_key *dep, *mbx, *mbx2;
static const keytier_request user = {KEYTIER_REQUEST_USER,
                                     KEYTIER_INTERNAL_NONE, "req-1", NULL};

static void assert_err(keytier_err got, keytier_err want)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
}

static void assert_detail(const char *want)
{
    ck_assert_msg(strstr(keytier_last_error_detail(), want) != NULL,
                  "detail '%s' lacks '%s'", keytier_last_error_detail(), want);
}

/* The configuration's stream_threads line ("" for the default). */
static const char *threads_conf = "";

static void setup(void)
{
    char conf[128];
    testenv_setup(&T);
    testenv_root_aes(&T, "VaultA", "rootA", 0);
    testenv_root_aes(&T, "VaultB", "rootB", 0);
    snprintf(conf, sizeof conf, "envelope_chunk_size = 256\n%s", threads_conf);
    testenv_write_conf(&T, conf);
    ctx = testenv_ctx(&T);
    keytier_dep_info d;
    assert_err(keytier_dep_create(ctx, "org-1", "Exchange",
                                  testenv_uri("VaultA", "rootA"),
                                  testenv_uri("VaultB", "rootB"), &d),
               KEYTIER_OK);
    assert_err(keytier_dep_key_open(ctx, &user, "org-1", d.dep_id, &dep),
               KEYTIER_OK);
    char id[KEYTIER_ID_SIZE], id2[KEYTIER_ID_SIZE];
    assert_err(keytier_key_create(dep, "alice", id), KEYTIER_OK);
    assert_err(keytier_key_create(dep, "bob", id2), KEYTIER_OK);
    assert_err(keytier_key_open(dep, id, &mbx), KEYTIER_OK);
    assert_err(keytier_key_open(dep, id2, &mbx2), KEYTIER_OK);
}

static void setup_1_thread(void)
{
    threads_conf = "stream_threads = 1";
    setup();
}

static void setup_4_threads(void)
{
    threads_conf = "stream_threads = 4";
    setup();
}

static void teardown(void)
{
    keytier_key_close(mbx);
    keytier_key_close(mbx2);
    keytier_key_close(dep);
    keytier_ctx_close(ctx);
    testenv_teardown(&T);
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + 3);
    return p;
}

/* Seals n bytes; returns the envelope (malloc) and its length. */
static uint8_t *seal(keytier_key *k, size_t n, size_t *len)
{
    uint8_t *pt = pattern(n);
    size_t cap = keytier_seal_bound(k, n);
    uint8_t *env = malloc(cap);
    assert_err(keytier_seal(k, "ctx", 3, pt, n, env, cap, len), KEYTIER_OK);
    ck_assert_uint_le(*len, cap);
    free(pt);
    return env;
}

/* Opens and asserts the error; on failure the output must hold no
 * plaintext (untouched 0xAA, or wiped to 0). */
static void open_expect(const uint8_t *env, size_t len, keytier_err want,
                        size_t pt_len)
{
    size_t cap = len + 16;
    uint8_t *out = malloc(cap);
    memset(out, 0xAA, cap);
    size_t n = 0;
    keytier_err e = keytier_open(mbx, "ctx", 3, env, len, out, cap, &n);
    assert_err(e, want);
    if (want == KEYTIER_OK) {
        uint8_t *pt = pattern(pt_len);
        ck_assert_uint_eq(n, pt_len);
        ck_assert_mem_eq(out, pt, pt_len);
        free(pt);
    } else {
        bool untouched = true, wiped = true;
        for (size_t i = 0; i < cap; i++) {
            untouched &= out[i] == 0xAA;
            wiped &= out[i] == 0;
        }
        ck_assert_msg(untouched || wiped, "output holds data after %s",
                      keytier_error_name(e));
    }
    free(out);
}

START_TEST(round_trips)
{
    static const size_t sizes[] = {0, 1, 255, 256, 257, 511, 512, 1000, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len;
        uint8_t *env = seal(mbx, sizes[i], &len);
        ck_assert_uint_eq(len, HDR + sizes[i] + 16 * (sizes[i] / CHUNK + 1));
        open_expect(env, len, KEYTIER_OK, sizes[i]);
        char tenant[KEYTIER_TENANT_MAX + 1], kid[KEYTIER_ID_SIZE];
        assert_err(keytier_envelope_peek(env, len, tenant, kid), KEYTIER_OK);
        keytier_key_info info;
        keytier_key_get_info(mbx, &info);
        ck_assert_str_eq(tenant, "org-1");
        ck_assert_str_eq(kid, info.key_id);
        free(env);
    }
}
END_TEST

START_TEST(errors)
{
    size_t len, n;
    uint8_t *env = seal(mbx, 600, &len);
    uint8_t out[1024];
    /* Another caller context. */
    assert_err(keytier_open(mbx, "ctY", 3, env, len, out, sizeof out, &n),
               KEYTIER_E_AUTH);
    assert_err(keytier_open(mbx, NULL, 0, env, len, out, sizeof out, &n),
               KEYTIER_E_AUTH);
    /* Another key. */
    assert_err(keytier_open(mbx2, "ctx", 3, env, len, out, sizeof out, &n),
               KEYTIER_E_WRONG_KEY);
    /* Output too small: refused before anything is decrypted. */
    assert_err(keytier_open(mbx, "ctx", 3, env, len, out, 599, &n),
               KEYTIER_E_BUFFER);
    assert_err(keytier_seal(mbx, NULL, 0, out, 10, env, 10, &n),
               KEYTIER_E_BUFFER);
    assert_err(keytier_seal(NULL, NULL, 0, out, 10, env, len, &n),
               KEYTIER_E_ARGS);
    assert_err(keytier_open(mbx, NULL, 5, env, len, out, sizeof out, &n),
               KEYTIER_E_ARGS);
    /* Not an envelope / future version. */
    assert_err(keytier_open(mbx, NULL, 0, "hello", 5, out, sizeof out, &n),
               KEYTIER_E_FORMAT);
    char tenant[KEYTIER_TENANT_MAX + 1], kid[KEYTIER_ID_SIZE];
    assert_err(keytier_envelope_peek("KTEV", 4, tenant, kid), KEYTIER_E_FORMAT);
    env[4] = 2;
    assert_err(keytier_envelope_peek(env, len, tenant, kid), KEYTIER_E_VERSION);
    free(env);
}
END_TEST

/* The exact error for a flip at byte i of an envelope of `len` bytes whose
 * header is HDR bytes. */
static keytier_err expected_flip(const uint8_t *env, size_t len, size_t i)
{
    if (i < 4)
        return KEYTIER_E_FORMAT; /* magic */
    if (i == 4)
        return KEYTIER_E_VERSION;
    if (i == 5 || i == 6)
        return KEYTIER_E_FORMAT; /* algorithm, flags */
    if (i >= 7 && i < 11) {
        uint32_t c = (uint32_t)env[7] << 24 | (uint32_t)env[8] << 16 |
                     (uint32_t)env[9] << 8 | env[10];
        if (c < 256 || c > (16u << 20))
            return KEYTIER_E_FORMAT;
        size_t rest = (len - HDR) % (c + 16);
        return rest < 16 ? KEYTIER_E_TRUNCATED : KEYTIER_E_AUTH;
    }
    if (i == 11) /* tenant length: out of range, or another tenant */
        return env[11] == 0 || env[11] > 128 ? KEYTIER_E_FORMAT
                                             : KEYTIER_E_WRONG_KEY;
    if (i < 12 + 5)
        return KEYTIER_E_WRONG_KEY; /* tenant */
    /* lifecycle: the DEP id (the DEP at sealing time) is not compared with
     * the key's current DEP (migrations); it is authenticated as AAD. */
    if (i < 12 + 5 + 16)
        return KEYTIER_E_AUTH;
    if (i < 12 + 5 + 32)
        return KEYTIER_E_WRONG_KEY; /* key id */
    if (i < 12 + 5 + 32 + 12)
        return KEYTIER_E_AUTH; /* nonce */
    if (i < HDR)
        return KEYTIER_E_COMMITMENT;
    return KEYTIER_E_AUTH; /* ciphertext, tags, chunk boundaries */
}

START_TEST(flip_every_byte)
{
    size_t len;
    uint8_t *env = seal(mbx, 600, &len); /* 3 chunks: 256, 256, 88 */
    ck_assert_uint_eq(len, HDR + 600 + 48);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            env[i] ^= (uint8_t)(1u << bit);
            open_expect(env, len, expected_flip(env, len, i), 0);
            env[i] ^= (uint8_t)(1u << bit);
        }
    }
    open_expect(env, len, KEYTIER_OK, 600);
    free(env);
}
END_TEST

START_TEST(truncate_every_length)
{
    size_t len;
    uint8_t *env = seal(mbx, 600, &len);
    for (size_t l = 0; l < len; l++) {
        keytier_err want;
        if (l < HDR)
            want = KEYTIER_E_FORMAT;
        else if ((l - HDR) % FULL < 16)
            want = KEYTIER_E_TRUNCATED; /* at or just past a boundary */
        else
            want = KEYTIER_E_AUTH; /* a shortened chunk taken as final */
        open_expect(env, l, want, 0);
    }
    free(env);
}
END_TEST

START_TEST(chunks_dropped_repeated_swapped_appended)
{
    size_t len;
    uint8_t *sealed = seal(mbx, 700, &len); /* chunks 256, 256, 188 */
    static uint8_t env[HDR + 3 * FULL], buf[HDR + 6 * FULL];
    ck_assert_uint_eq(len, HDR + 2 * FULL + 188 + 16);
    memcpy(env, sealed, len);
    free(sealed);
    const uint8_t *c0 = env + HDR, *c1 = c0 + FULL, *c2 = c1 + FULL;
    size_t last = len - HDR - 2 * FULL;
    /* Drop chunk 1. */
    memcpy(buf, env, HDR + FULL);
    memcpy(buf + HDR + FULL, c2, last);
    open_expect(buf, HDR + FULL + last, KEYTIER_E_AUTH, 0);
    /* Drop the final chunk: ends on a boundary. */
    open_expect(env, HDR + 2 * FULL, KEYTIER_E_TRUNCATED, 0);
    /* Repeat chunk 0. */
    memcpy(buf, env, HDR + FULL);
    memcpy(buf + HDR + FULL, c0, FULL);
    memcpy(buf + HDR + 2 * FULL, c1, FULL);
    memcpy(buf + HDR + 3 * FULL, c2, last);
    open_expect(buf, len + FULL, KEYTIER_E_AUTH, 0);
    /* Swap chunks 0 and 1. */
    memcpy(buf, env, HDR);
    memcpy(buf + HDR, c1, FULL);
    memcpy(buf + HDR + FULL, c0, FULL);
    memcpy(buf + HDR + 2 * FULL, c2, last);
    open_expect(buf, len, KEYTIER_E_AUTH, 0);
    /* Append bytes after the final chunk. */
    memcpy(buf, env, len);
    for (size_t extra = 1; extra <= FULL + 1; extra += 17) {
        memset(buf + len, 0, extra);
        /* The boundaries shift: the last piece is a bad final chunk, or
         * too short to be one. */
        open_expect(buf, len + extra,
                    (len + extra - HDR) % FULL < 16 ? KEYTIER_E_TRUNCATED
                                                    : KEYTIER_E_AUTH,
                    0);
    }
    /* Append a whole copy of the final chunk. */
    memcpy(buf + len, c2, last);
    open_expect(buf, len + last, KEYTIER_E_AUTH, 0);
    /* Splice the header of another envelope (other nonce) onto this body. */
    size_t len2;
    uint8_t *env2 = seal(mbx, 700, &len2);
    memcpy(buf, env2, HDR);
    memcpy(buf + HDR, env + HDR, len - HDR);
    open_expect(buf, len, KEYTIER_E_AUTH, 0);
    free(env2);
}
END_TEST

/* ---- streams ------------------------------------------------------------ */

static int tmpfile_with(const uint8_t *p, size_t n)
{
    char path[400];
    snprintf(path, sizeof path, "%s/s-XXXXXX", T.dir);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static uint8_t *slurp(int fd, size_t *n)
{
    off_t end = lseek(fd, 0, SEEK_END);
    uint8_t *p = malloc((size_t)end + 1);
    lseek(fd, 0, SEEK_SET);
    ck_assert_int_eq(read(fd, p, (size_t)end), end);
    *n = (size_t)end;
    return p;
}

static uint8_t *seal_stream(size_t n, size_t *len)
{
    uint8_t *pt = pattern(n);
    int in = tmpfile_with(pt, n), out = tmpfile_with(NULL, 0);
    assert_err(keytier_seal_stream(mbx, "ctx", 3, in, out), KEYTIER_OK);
    uint8_t *env = slurp(out, len);
    close(in);
    close(out);
    free(pt);
    return env;
}

/* Opens a stream; returns the plaintext bytes released. */
static size_t open_stream_expect(const uint8_t *env, size_t len,
                                 keytier_err want)
{
    int in = tmpfile_with(env, len), out = tmpfile_with(NULL, 0);
    assert_err(keytier_open_stream(mbx, "ctx", 3, in, out), want);
    size_t n;
    uint8_t *pt = slurp(out, &n);
    uint8_t *ref = pattern(n);
    /* Whatever was released is authentic plaintext, in order. */
    ck_assert_mem_eq(pt, ref, n);
    free(ref);
    free(pt);
    close(in);
    close(out);
    return n;
}

START_TEST(stream_round_trips_and_buffer_compat)
{
    static const size_t sizes[] = {0, 1, 255, 256, 257, 512, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len;
        uint8_t *env = seal_stream(sizes[i], &len);
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_OK), sizes[i]);
        /* One format: the buffer API opens a sealed stream and back. */
        open_expect(env, len, KEYTIER_OK, sizes[i]);
        free(env);
        env = seal(mbx, sizes[i], &len);
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_OK), sizes[i]);
        free(env);
    }
}
END_TEST

START_TEST(stream_tamper)
{
    size_t len;
    uint8_t *env = seal_stream(700, &len);
    /* Truncated at a chunk boundary: the two full chunks were authentic
     * and released, then the missing final chunk is reported. */
    ck_assert_uint_eq(
        open_stream_expect(env, HDR + 2 * FULL, KEYTIER_E_TRUNCATED), 512);
    ck_assert_uint_eq(open_stream_expect(env, HDR, KEYTIER_E_TRUNCATED), 0);
    ck_assert_uint_eq(
        open_stream_expect(env, HDR + FULL + 5, KEYTIER_E_TRUNCATED), 256);
    /* Cut inside the final chunk: the shortened chunk fails. */
    ck_assert_uint_eq(open_stream_expect(env, len - 1, KEYTIER_E_AUTH), 512);
    ck_assert_uint_eq(open_stream_expect(env, 10, KEYTIER_E_FORMAT), 0);
    /* A chunk dropped / repeated. */
    uint8_t *buf = malloc(len + FULL);
    memcpy(buf, env, HDR + FULL);
    memcpy(buf + HDR + FULL, env + HDR + 2 * FULL, len - HDR - 2 * FULL);
    ck_assert_uint_eq(open_stream_expect(buf, len - FULL, KEYTIER_E_AUTH), 256);
    memcpy(buf, env, HDR + FULL);
    memcpy(buf + HDR + FULL, env + HDR, len - HDR);
    ck_assert_uint_eq(open_stream_expect(buf, len + FULL, KEYTIER_E_AUTH), 256);
    /* Appended data. */
    memcpy(buf, env, len);
    memset(buf + len, 'x', 7);
    open_stream_expect(buf, len + 7, KEYTIER_E_AUTH);
    /* Every single byte flipped: an error, and never an unauthenticated
     * chunk released (checked in open_stream_expect). */
    for (size_t i = 0; i < len; i++) {
        env[i] ^= 0x01;
        int in = tmpfile_with(env, len), out = tmpfile_with(NULL, 0);
        keytier_err e = keytier_open_stream(mbx, "ctx", 3, in, out);
        ck_assert_msg(e == expected_flip(env, len, i),
                      "byte %zu: got %s want %s", i, keytier_error_name(e),
                      keytier_error_name(expected_flip(env, len, i)));
        size_t n;
        uint8_t *pt = slurp(out, &n);
        uint8_t *ref = pattern(n);
        ck_assert_mem_eq(pt, ref, n);
        /* Only chunks before the flipped one can have been released. */
        if (i >= HDR)
            ck_assert_uint_le(n, (i - HDR) / FULL * CHUNK);
        else
            ck_assert_uint_eq(n, 0);
        free(pt);
        free(ref);
        close(in);
        close(out);
        env[i] ^= 0x01;
    }
    free(buf);
    free(env);
}
END_TEST

struct feeder {
    int fd;
    const uint8_t *p;
    size_t n;
};

static void *feed(void *arg)
{
    /* Writes in odd-sized pieces so reads come back short. */
    struct feeder *f = arg;
    size_t off = 0, piece = 1;
    while (off < f->n) {
        size_t k = piece < f->n - off ? piece : f->n - off;
        ssize_t w = write(f->fd, f->p + off, k);
        if (w <= 0)
            break;
        off += (size_t)w;
        piece = piece * 3 % 1000 + 1;
    }
    close(f->fd);
    return NULL;
}

/* Pipes give short reads (and, non-blocking, EAGAIN): the chunking must
 * not depend on them.  The
 * pipeline hands over whole chunks as they complete and carries a partial
 * one to the next slot: 3000 bytes fit one slot, the second size spans
 * several (SLOT below). */
static void pipes_round_trip(size_t n)
{
    size_t len;
    uint8_t *pt = pattern(n);
    int in[2], mid = tmpfile_with(NULL, 0);
    ck_assert_int_eq(pipe(in), 0);
    /* Non-blocking input: EAGAIN is waited out, not an error. */
    ck_assert_int_eq(fcntl(in[0], F_SETFL, O_NONBLOCK), 0);
    struct feeder f = {in[1], pt, n};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, feed, &f), 0);
    assert_err(keytier_seal_stream(mbx, "ctx", 3, in[0], mid), KEYTIER_OK);
    pthread_join(th, NULL);
    close(in[0]);
    uint8_t *env = slurp(mid, &len);
    close(mid);
    ck_assert_uint_eq(len, HDR + n + 16 * (n / CHUNK + 1));
    open_expect(env, len, KEYTIER_OK, n);

    int in2[2], out = tmpfile_with(NULL, 0);
    ck_assert_int_eq(pipe(in2), 0);
    ck_assert_int_eq(fcntl(in2[0], F_SETFL, O_NONBLOCK), 0);
    struct feeder g = {in2[1], env, len};
    ck_assert_int_eq(pthread_create(&th, NULL, feed, &g), 0);
    assert_err(keytier_open_stream(mbx, "ctx", 3, in2[0], out), KEYTIER_OK);
    pthread_join(th, NULL);
    close(in2[0]);
    size_t got;
    uint8_t *back = slurp(out, &got);
    close(out);
    ck_assert_uint_eq(got, n);
    ck_assert_mem_eq(back, pt, n);
    free(back);
    free(env);
    free(pt);
}

START_TEST(streams_over_pipes)
{
    pipes_round_trip(3000);
    pipes_round_trip(3 * 256 * CHUNK + 77);
}
END_TEST

START_TEST(stream_errors)
{
    assert_err(keytier_seal_stream(mbx, NULL, 0, -1, 1), KEYTIER_E_ARGS);
    assert_err(keytier_open_stream(dep, NULL, 0, 0, 1), KEYTIER_E_ARGS);
    int fd = open("/dev/null", O_RDONLY);
    assert_err(keytier_seal_stream(mbx, NULL, 0, fd, fd), KEYTIER_E_IO);
    assert_detail("write: Bad file descriptor");
    close(fd);
}
END_TEST

/* ---- the streaming pipeline (lib/envelope/stream.c)
 * ------------------------------- Streams go through slots of several chunks:
 * at this chunk size a slot holds 256 chunks (lib/envelope/envelope.c
 * KT_SLOT_CHUNKS) and the ring has 6 slots (lib/envelope/stream.c).  The sizes
 * below sit on and around those edges. */
#define SLOT_CHUNKS 256
#define SLOT        (SLOT_CHUNKS * CHUNK)

static size_t env_len_for(size_t n)
{
    return HDR + n + 16 * (n / CHUNK + 1);
}

START_TEST(stream_multi_slot_round_trips)
{
    static const size_t sizes[] = {
        SLOT - 1,             /* one slot, final chunk short */
        SLOT,                 /* the empty final chunk alone in slot 2 */
        SLOT + 1,             /* */
        6 * SLOT,             /* the ring wraps exactly */
        5 * SLOT + 3 * CHUNK, /* ends on a chunk boundary inside a slot */
        7 * SLOT + 1000,      /* */
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len;
        uint8_t *env = seal_stream(sizes[i], &len);
        ck_assert_uint_eq(len, env_len_for(sizes[i]));
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_OK), sizes[i]);
        open_expect(env, len, KEYTIER_OK, sizes[i]);
        free(env);
        env = seal(mbx, sizes[i], &len);
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_OK), sizes[i]);
        free(env);
    }
}
END_TEST

START_TEST(stream_multi_slot_tamper)
{
    /* 1281 chunks: 5 full slots and the final chunk in a sixth.  Every
     * failure releases exactly the chunks before the bad or missing one,
     * in whichever slot it lies. */
    size_t n = 5 * SLOT + 1000, len;
    uint8_t *env = seal_stream(n, &len);
    size_t chunks = n / CHUNK + 1;
    uint8_t *buf = malloc(len + FULL);
    static const size_t flips[] = {0, 255, 256, 700, 1023, 1024, 1280};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        size_t at = HDR + flips[i] * FULL + 17;
        env[at] ^= 0x80;
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_E_AUTH),
                          flips[i] * CHUNK);
        env[at] ^= 0x80;
        /* The tag of the chunk. */
        at = flips[i] + 1 == chunks ? len - 1 : HDR + flips[i] * FULL + CHUNK;
        env[at] ^= 0x01;
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_E_AUTH),
                          flips[i] * CHUNK);
        env[at] ^= 0x01;
    }
    /* Cut on a slot boundary, on a chunk boundary inside a slot, inside a
     * tag: the final chunk is missing. */
    ck_assert_uint_eq(open_stream_expect(env, HDR + 4 * SLOT_CHUNKS * FULL,
                                         KEYTIER_E_TRUNCATED),
                      4 * SLOT);
    ck_assert_uint_eq(
        open_stream_expect(env, HDR + 1100 * FULL, KEYTIER_E_TRUNCATED),
        1100 * CHUNK);
    ck_assert_uint_eq(
        open_stream_expect(env, HDR + 1100 * FULL + 9, KEYTIER_E_TRUNCATED),
        1100 * CHUNK);
    /* Cut inside a chunk: taken as the final chunk, which fails. */
    ck_assert_uint_eq(
        open_stream_expect(env, HDR + 600 * FULL + 100, KEYTIER_E_AUTH),
        600 * CHUNK);
    /* Chunk 600 dropped; chunks 800 and 801 swapped. */
    memcpy(buf, env, HDR + 600 * FULL);
    memcpy(buf + HDR + 600 * FULL, env + HDR + 601 * FULL,
           len - HDR - 601 * FULL);
    ck_assert_uint_eq(open_stream_expect(buf, len - FULL, KEYTIER_E_AUTH),
                      600 * CHUNK);
    memcpy(buf, env, len);
    memcpy(buf + HDR + 800 * FULL, env + HDR + 801 * FULL, FULL);
    memcpy(buf + HDR + 801 * FULL, env + HDR + 800 * FULL, FULL);
    ck_assert_uint_eq(open_stream_expect(buf, len, KEYTIER_E_AUTH),
                      800 * CHUNK);
    /* Data appended after the final chunk. */
    memcpy(buf, env, len);
    memset(buf + len, 'x', FULL);
    ck_assert_uint_eq(open_stream_expect(buf, len + FULL, KEYTIER_E_AUTH),
                      (chunks - 1) * CHUNK);
    free(buf);
    free(env);
}
END_TEST

/* With several transform workers slots finish out of order: a later slot's
 * failure may be known first, yet the result is the first failure in
 * stream order, with its own detail, and nothing after it is released. */
START_TEST(stream_first_failure_in_stream_order)
{
    size_t n = 6 * SLOT, len;
    uint8_t *env = seal_stream(n, &len);
    env[HDR + 300 * FULL + 5] ^= 0x04;  /* slot 1 */
    env[HDR + 1200 * FULL + 5] ^= 0x04; /* slot 4 */
    for (int round = 0; round < 10; round++) {
        ck_assert_uint_eq(open_stream_expect(env, len, KEYTIER_E_AUTH),
                          300 * CHUNK);
        assert_detail("chunk 300 ");
    }
    /* A later slot cut short (a missing final chunk) does not hide an
     * earlier bad chunk either. */
    ck_assert_uint_eq(
        open_stream_expect(env, HDR + 1100 * FULL, KEYTIER_E_AUTH),
        300 * CHUNK);
    assert_detail("chunk 300 ");
    free(env);
}
END_TEST

/* A seal or open running on its own thread, so the test can drive both
 * ends of its pipes. */
struct stream_call {
    bool open;
    int in, out;
    keytier_err e;
    char detail[256];
};

static void *stream_call_main(void *arg)
{
    struct stream_call *c = arg;
    c->e = c->open ? keytier_open_stream(mbx, "ctx", 3, c->in, c->out)
                   : keytier_seal_stream(mbx, "ctx", 3, c->in, c->out);
    snprintf(c->detail, sizeof c->detail, "%s", keytier_last_error_detail());
    return NULL;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        ck_assert_int_gt(w, 0);
        p += w;
        n -= (size_t)w;
    }
}

static void read_exact(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        ck_assert_int_gt(r, 0);
        p += r;
        n -= (size_t)r;
    }
}

START_TEST(stream_releases_each_chunk_when_complete)
{
    /* An interactive producer: it sends one chunk and waits for its output
     * before sending more.  The pipeline must not wait for a full slot
     * (that would hang until the test's timeout). */
    uint8_t *pt = pattern(CHUNK + 100), env[HDR + 2 * FULL];
    int in[2], out[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    struct stream_call c = {false, in[0], out[1], KEYTIER_E_INTERNAL, ""};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stream_call_main, &c), 0);
    write_all(in[1], pt, CHUNK);
    read_exact(out[0], env, HDR + FULL); /* header and chunk 0 */
    write_all(in[1], pt + CHUNK, 100);
    close(in[1]);
    read_exact(out[0], env + HDR + FULL, 100 + 16);
    pthread_join(th, NULL);
    assert_err(c.e, KEYTIER_OK);
    close(in[0]);
    close(out[1]);
    close(out[0]);
    size_t env_len = HDR + FULL + 100 + 16;
    open_expect(env, env_len, KEYTIER_OK, CHUNK + 100);

    /* The same when opening: chunk 0's plaintext comes out before the
     * rest of the envelope goes in. */
    uint8_t back[CHUNK + 100];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    struct stream_call d = {true, in[0], out[1], KEYTIER_E_INTERNAL, ""};
    ck_assert_int_eq(pthread_create(&th, NULL, stream_call_main, &d), 0);
    write_all(in[1], env, HDR + FULL);
    read_exact(out[0], back, CHUNK);
    write_all(in[1], env + HDR + FULL, env_len - HDR - FULL);
    close(in[1]);
    read_exact(out[0], back + CHUNK, 100);
    pthread_join(th, NULL);
    assert_err(d.e, KEYTIER_OK);
    ck_assert_mem_eq(back, pt, CHUNK + 100);
    close(in[0]);
    close(out[1]);
    close(out[0]);
    free(pt);
}
END_TEST

START_TEST(stream_failure_does_not_wait_for_input)
{
    /* A producer that stalls without closing: once a chunk fails, the
     * call returns (the reader must not keep waiting for input). */
    size_t len;
    uint8_t *env = seal_stream(3 * CHUNK, &len);
    env[HDR + FULL + 3] ^= 0x01; /* chunk 1 */
    int in[2], out = tmpfile_with(NULL, 0);
    ck_assert_int_eq(pipe(in), 0);
    write_all(in[1], env, HDR + 2 * FULL);
    assert_err(keytier_open_stream(mbx, "ctx", 3, in[0], out), KEYTIER_E_AUTH);
    assert_detail("chunk 1 of the stream");
    size_t n;
    uint8_t *pt = slurp(out, &n), *ref = pattern(CHUNK);
    ck_assert_uint_eq(n, CHUNK); /* chunk 0, authentic */
    ck_assert_mem_eq(pt, ref, CHUNK);
    free(pt);
    free(ref);
    close(out);
    close(in[0]);
    close(in[1]);

    /* Sealing into a pipe nobody reads any more, from a stalled producer:
     * EPIPE, reported at once, and no SIGPIPE kills the process. */
    int pout[2];
    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(pout), 0);
    close(pout[0]);
    write_all(in[1], env, CHUNK);
    assert_err(keytier_seal_stream(mbx, "ctx", 3, in[0], pout[1]),
               KEYTIER_E_IO);
    assert_detail("write: Broken pipe");
    close(in[0]);
    close(in[1]);
    close(pout[1]);
    free(env);
}
END_TEST

START_TEST(stream_read_errors)
{
    /* The first read, on the reader thread, fails. */
    int d = open(T.dir, O_RDONLY | O_DIRECTORY), out = tmpfile_with(NULL, 0);
    ck_assert_int_ge(d, 0);
    assert_err(keytier_seal_stream(mbx, "ctx", 3, d, out), KEYTIER_E_IO);
    assert_detail("read: Is a directory");
    assert_err(keytier_open_stream(mbx, "ctx", 3, d, out), KEYTIER_E_IO);
    assert_detail("read: Is a directory");
    close(d);
    close(out);

    /* A read fails in mid-stream, after 2 chunks and part of a third: a
     * stream socket whose peer closed with data it had not read gives
     * ECONNRESET once the data sent before is consumed. */
    size_t len;
    uint8_t *env = seal_stream(5 * CHUNK, &len);
    for (int open_it = 0; open_it <= 1; open_it++) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        if (open_it) {
            write_all(sv[1], env, HDR + 2 * FULL + 40);
        } else {
            uint8_t *pt = pattern(2 * CHUNK + 40);
            write_all(sv[1], pt, 2 * CHUNK + 40);
            free(pt);
        }
        write_all(sv[0], (const uint8_t *)"x", 1); /* unread by sv[1] */
        close(sv[1]);
        out = tmpfile_with(NULL, 0);
        keytier_err e = open_it
                            ? keytier_open_stream(mbx, "ctx", 3, sv[0], out)
                            : keytier_seal_stream(mbx, "ctx", 3, sv[0], out);
        assert_err(e, KEYTIER_E_IO);
        assert_detail("read: Connection reset by peer");
        /* The complete chunks before the failure went through. */
        size_t n;
        uint8_t *got = slurp(out, &n);
        if (open_it) {
            uint8_t *ref = pattern(2 * CHUNK);
            ck_assert_uint_eq(n, 2 * CHUNK);
            ck_assert_mem_eq(got, ref, n);
            free(ref);
        } else {
            ck_assert_uint_eq(n, HDR + 2 * FULL);
        }
        free(got);
        close(out);
        close(sv[0]);
    }
    free(env);
}
END_TEST

struct drain {
    int fd;
    size_t stop_after, got;
};

/* Reads stop_after bytes, then closes its end: the writer side then gets
 * EPIPE in mid-stream. */
static void *drain_main(void *arg)
{
    struct drain *d = arg;
    uint8_t buf[4096];
    while (d->got < d->stop_after) {
        size_t want = d->stop_after - d->got;
        ssize_t r = read(d->fd, buf, want < sizeof buf ? want : sizeof buf);
        if (r <= 0)
            break;
        d->got += (size_t)r;
    }
    close(d->fd);
    return NULL;
}

START_TEST(stream_write_errors)
{
    /* A full disk. */
    size_t n = 3 * SLOT + 5, len;
    uint8_t *pt = pattern(n), *env = seal_stream(n, &len);
    int full = open("/dev/full", O_WRONLY);
    ck_assert_int_ge(full, 0);
    int in = tmpfile_with(pt, n);
    assert_err(keytier_seal_stream(mbx, "ctx", 3, in, full), KEYTIER_E_IO);
    assert_detail("write: No space left on device");
    close(in);
    in = tmpfile_with(env, len);
    assert_err(keytier_open_stream(mbx, "ctx", 3, in, full), KEYTIER_E_IO);
    assert_detail("write: No space left on device");
    close(in);
    close(full);

    /* The reader of the output goes away after 100000 bytes, several
     * slots into the stream: EPIPE, with SIGPIPE at its default action
     * (which would kill the test). */
    signal(SIGPIPE, SIG_DFL);
    for (int open_it = 0; open_it <= 1; open_it++) {
        int p[2];
        ck_assert_int_eq(pipe(p), 0);
        struct drain dr = {p[0], 100000, 0};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, drain_main, &dr), 0);
        in = open_it ? tmpfile_with(env, len) : tmpfile_with(pt, n);
        keytier_err e = open_it ? keytier_open_stream(mbx, "ctx", 3, in, p[1])
                                : keytier_seal_stream(mbx, "ctx", 3, in, p[1]);
        assert_err(e, KEYTIER_E_IO);
        assert_detail("write: Broken pipe");
        pthread_join(th, NULL);
        ck_assert_uint_eq(dr.got, 100000);
        close(in);
        close(p[1]);
    }
    free(pt);
    free(env);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("envelope");
    TCase *tc = tcase_create("envelope");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, round_trips);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, flip_every_byte);
    tcase_add_test(tc, truncate_every_length);
    tcase_add_test(tc, chunks_dropped_repeated_swapped_appended);
    tcase_add_test(tc, stream_round_trips_and_buffer_compat);
    tcase_add_test(tc, stream_tamper);
    tcase_add_test(tc, stream_errors);
    tcase_add_test(tc, streams_over_pipes);
    tcase_add_test(tc, stream_multi_slot_round_trips);
    tcase_add_test(tc, stream_multi_slot_tamper);
    tcase_add_test(tc, stream_releases_each_chunk_when_complete);
    tcase_add_test(tc, stream_failure_does_not_wait_for_input);
    tcase_add_test(tc, stream_read_errors);
    tcase_add_test(tc, stream_write_errors);
    tcase_add_test(tc, stream_first_failure_in_stream_order);
    suite_add_tcase(s, tc);
    /* The streaming pipeline with one transform worker and with more than
     * this machine has cores (slots transformed out of order). */
    static const struct {
        const char *name;
        void (*setup)(void);
    } threads[] = {{"stream-1-thread", setup_1_thread},
                   {"stream-4-threads", setup_4_threads}};
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        TCase *t = tcase_create(threads[i].name);
        tcase_set_timeout(t, 120);
        tcase_add_checked_fixture(t, threads[i].setup, teardown);
        tcase_add_test(t, stream_multi_slot_round_trips);
        tcase_add_test(t, stream_multi_slot_tamper);
        tcase_add_test(t, stream_first_failure_in_stream_order);
        tcase_add_test(t, streams_over_pipes);
        tcase_add_test(t, stream_releases_each_chunk_when_complete);
        tcase_add_test(t, stream_write_errors);
        suite_add_tcase(s, t);
    }
    return testenv_run(s);
}
