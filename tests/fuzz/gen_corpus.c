/* Writes the seed corpora of the envelope, stream, libconfig and approval
 * fuzz targets (tests/fuzz/corpus/NAME): real outputs of the library
 * (envelopes keytier_seal and keytier_seal_stream wrote, the example
 * configuration, keys OpenSSL made), then edited. Run from the source
 * tree after a build:
 *   build/tests/fuzz/fuzz-gen-corpus tests/fuzz/corpus
 * Inputs that found bugs are added by hand and kept (never regenerated). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "fuzz_env.h"

static const char *root;
static char prefix[16]; /* before every seed's name */

struct buf {
    uint8_t b[1 << 20];
    size_t n;
};

static struct buf B;

static void reset(void)
{
    B.n = 0;
}

static void put(const void *p, size_t n)
{
    if (B.n + n > sizeof B.b)
        abort();
    memcpy(B.b + B.n, p, n);
    B.n += n;
}

static void put8(uint8_t v)
{
    put(&v, 1);
}

static void putbe(uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        put8((uint8_t)(v >> (8 * i)));
}

static void puts_(const char *s)
{
    put(s, strlen(s));
}

static void save(const char *target, const char *fmt, ...)
{
    char name[128], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/%s/%s%s", root, target, prefix, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(B.b, 1, B.n, f) != B.n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- envelopes ---------------------------------------------------------- */

static uint8_t pt[1 << 18];

static size_t seal(size_t n, uint8_t *env, size_t cap)
{
    size_t len = 0;
    if (keytier_seal(fe_key_get(), FE_AAD, FE_AAD_LEN, pt, n, env, cap, &len) !=
        KEYTIER_OK)
        abort();
    return len;
}

/* Raw envelopes for mode byte m: real ones, then each header field and
 * the chunk layout edited. */
static void raw_envelopes(const char *target, uint8_t m, size_t big)
{
    snprintf(prefix, sizeof prefix, "m%u-", m);
    static uint8_t env[1 << 19];
    const size_t sizes[] = {0, 1, 255, 256, 257, 700, big};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = seal(sizes[i], env, sizeof env);
        reset();
        put8(m);
        put(env, len);
        save(target, "sealed-%zu", sizes[i]);
    }
    size_t len = seal(700, env, sizeof env); /* 3 chunks: 256 256 188 */
    const size_t hl = 88 + strlen(FE_TENANT), piece = 256 + 16;
    static const struct {
        const char *name;
        size_t at;
        uint8_t x;
    } flips[] = {{"magic", 0, 1},
                 {"version", 4, 1},
                 {"alg", 5, 2},
                 {"flags", 6, 1},
                 {"chunk-small", 9, 1},
                 {"chunk-big", 7, 0x10},
                 {"tenant-len", 11, 0xff},
                 {"tenant", 12, 1},
                 {"dep-id", 17, 1},
                 {"key-id", 33, 1},
                 {"nonce", 49, 1},
                 {"commit", 61, 1},
                 {"ct", 100, 1},
                 {"tag", 93 + 256 + 15, 1}};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        reset();
        put8(m);
        put(env, len);
        B.b[1 + flips[i].at] ^= flips[i].x;
        save(target, "edit-%s", flips[i].name);
    }
    const struct {
        const char *name;
        size_t cut;
    } cuts[] = {{"header-only", hl},          {"in-header", hl - 20},
                {"after-chunk0", hl + piece}, {"in-tag", hl + piece + 8},
                {"in-final", len - 10},       {"no-tenant", 11}};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        reset();
        put8(m);
        put(env, cuts[i].cut);
        save(target, "cut-%s", cuts[i].name);
    }
    reset();
    put8(m);
    put(env, len);
    put("appended", 8);
    save(target, "appended");
    reset(); /* chunks 0 and 1 swapped */
    put8(m);
    put(env, hl);
    put(env + hl + piece, piece);
    put(env + hl, piece);
    put(env + hl + 2 * piece, len - hl - 2 * piece);
    save(target, "swapped");
    reset(); /* chunk 1 dropped */
    put8(m);
    put(env, hl + piece);
    put(env + hl + 2 * piece, len - hl - 2 * piece);
    save(target, "dropped");
    reset(); /* chunk 0 repeated */
    put8(m);
    put(env, hl + piece);
    put(env + hl, len - hl);
    save(target, "repeated");
}

/* A built-envelope description (fuzz_env.h): header flags, fields, the
 * plaintext length, the edits, the plaintext. */
static void built(uint8_t m, uint8_t hflags, const char *head, uint32_t chunk,
                  uint8_t tenant_len, uint32_t pt_len, const uint8_t (*ops)[3],
                  size_t n_ops)
{
    const keytier_key *k = fe_key_get();
    reset();
    put8(m);
    put8(hflags);
    put(head, 7);
    putbe(chunk, 4);
    put8(tenant_len);
    for (uint8_t i = 0; i < tenant_len; i++)
        put8('a' + i % 26);
    put(k->dep_id_bin, 16);
    put(k->key_id_bin, 16);
    put("nonce-nonce!", 12);
    put(k->commit, 32);
    putbe(pt_len, 3);
    put8((uint8_t)n_ops);
    for (size_t i = 0; i < n_ops; i++)
        put(ops[i], 3);
    puts_("plaintext of a built envelope");
}

static void built_envelopes(const char *target, uint8_t m, uint32_t pt_len)
{
    snprintf(prefix, sizeof prefix, "m%u-", m);
    const uint8_t all = 0x3f;
    static const char good[] = "KTEV\1\1\0";
    built(m, all, good, 0, 0, pt_len, NULL, 0);
    save(target, "built-valid");
    built(m, all & ~FE_REAL_DEP_ID, good, 0, 0, pt_len, NULL, 0);
    save(target, "built-other-dep");
    built(m, all & ~FE_REAL_CHUNK, good, 16u << 20, 0, pt_len, NULL, 0);
    save(target, "built-chunk-16m");
    built(m, all & ~FE_REAL_CHUNK, good, 255, 0, pt_len, NULL, 0);
    save(target, "built-chunk-255");
    built(m, all & ~FE_REAL_PREFIX, "KTEV\2\1\0", 0, 0, pt_len, NULL, 0);
    save(target, "built-version-2");
    built(m, all & ~FE_REAL_PREFIX, "KTEV\1\1\1", 0, 0, pt_len, NULL, 0);
    save(target, "built-flags");
    built(m, all & ~FE_REAL_TENANT, good, 0, 128, pt_len, NULL, 0);
    save(target, "built-tenant-128");
    built(m, all & ~FE_REAL_TENANT, good, 0, 129, pt_len, NULL, 0);
    save(target, "built-tenant-129");
    built(m, all & ~FE_REAL_KEY_ID, good, 0, 0, pt_len, NULL, 0);
    save(target, "built-key-id");
    built(m, all & ~FE_REAL_COMMIT, good, 0, 0, pt_len, NULL, 0);
    save(target, "built-commit");
    static const char *ops[] = {"swap",  "drop", "dup",    "index",
                                "final", "cut",  "append", "flip"};
    for (uint8_t op = 0; op < FE_N_OPS; op++) {
        const uint8_t e[1][3] = {{op, 1, op == FE_CUT ? 200 : 2}};
        built(m, all, good, 0, 0, pt_len, e, 1);
        save(target, "built-op-%s", ops[op]);
    }
    const uint8_t last[2][3] = {{FE_DROP, 255, 0}, {FE_WRONG_FINAL, 0, 0}};
    built(m, all, good, 0, 0, pt_len, last, 2);
    save(target, "built-ops-2");
}

static void envelopes(void)
{
    for (size_t i = 0; i < sizeof pt; i++)
        pt[i] = (uint8_t)(i * 7 + 3);
    raw_envelopes("envelope", 0, 3000);
    built_envelopes("envelope", 1, 1000);
    /* stream: mode 0 (raw), 1 (built: several pipeline slots of 256-byte
     * chunks, 69632 bytes each), 2 (sealed by keytier_seal_stream);
     * threads in bits 2-3 */
    raw_envelopes("stream", 0, 3000);
    raw_envelopes("stream", 6, 100000);    /* 2 threads: several slots */
    built_envelopes("stream", 13, 200000); /* 4 threads */
    built_envelopes("stream", 1, 700);
    prefix[0] = '\0';
    const size_t seal_sizes[] = {0, 1, 255, 256, 1000, 5000};
    for (size_t i = 0; i < sizeof seal_sizes / sizeof seal_sizes[0]; i++) {
        reset();
        put8(i % 2 ? 2 : 11); /* 1 or 3 threads */
        put8((uint8_t)i);     /* chunk size 256 + 16 i */
        put(pt, seal_sizes[i]);
        save("stream", "seal-%zu", seal_sizes[i]);
    }
}

/* ---- library configuration ---------------------------------------------- */

static void conf_seed(const char *name, const char *text, const void *pin,
                      size_t pin_len)
{
    reset();
    puts_(text);
    if (pin != NULL) {
        puts_("\n%%pin\n");
        put(pin, pin_len);
    }
    save("libconfig", "%s", name);
}

static void configs(const char *example)
{
    FILE *f = fopen(example, "rb");
    static char ex[1 << 16];
    size_t n = f ? fread(ex, 1, sizeof ex - 1, f) : 0;
    if (f == NULL || n == 0)
        abort();
    fclose(f);
    ex[n] = '\0';
    /* the example with its PINs moved to the target's directory */
    static char text[1 << 16];
    char *at = strstr(ex, "file:/etc/keytier/service.pin");
    if (at == NULL)
        abort();
    snprintf(text, sizeof text, "%.*sfile:@DIR@/pin%s", (int)(at - ex), ex,
             at + strlen("file:/etc/keytier/service.pin"));
    conf_seed("example", text, "1234\n", 5);
    conf_seed("example-crlf-pin", text, "1234\r\nmore", 10);
    conf_seed("example-nul-pin", text,
              "12\0"
              "34\n",
              5);
    conf_seed("example-empty-pin", text, "\n", 1);
    static char longpin[300];
    memset(longpin, '7', sizeof longpin);
    conf_seed("example-long-pin", text, longpin, 257);
    conf_seed("example-pin-256", text, longpin, 256);
    static const struct {
        const char *name, *text;
    } small[] = {
        {"pins", "pin.A = file:@DIR@/pin\npin.B = env:HOME\n"
                 "pin.C = value:secret-pin-123456\npin.D = file:@DIR@/none\n"},
        {"pin-bad", "pin.A = value:secret-pin-123456\npin.B = nothing\n"},
        {"pin-label-long", "pin.0123456789012345678901234567890123 = env:X\n"},
        {"approvers",
         "approval.approver = alice sha256:"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
         "approval.approver = bob   sha256:"
         "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n"},
        {"approver-twice",
         "approval.approver = alice sha256:"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
         "approval.approver = alice sha256:"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"},
        {"approver-upper", "approval.approver = alice sha256:"
                           "0123456789ABCDEF0123456789abcdef0123456789abcdef"
                           "0123456789abcdef\n"},
        {"avail-storm", "avail.cache_ttl_ms = 10000\n"
                        "avail.cache_refresh_ahead_ms = 6000\n"},
        {"avail-alert", "avail.cache_ttl_ms = 600000\n"
                        "avail.cache_refresh_ahead_ms = 5000\n"
                        "avail.cache_alert_after_ms = 4000\n"},
        {"avail-derived", "avail.cache_ttl_ms = 60000\n"},
        {"avail-no-cache", "avail.cache_ttl_ms = 0\n"},
        {"workloads", "workload.Files.shape = files\n"
                      "workload.Files.availability_key = rsa2048\n"
                      "workload.Files.dep_limit = 3\n"
                      "avail.outage_fallback.Files = yes\n"},
        {"twice", "dep_limit = 5\ndep_limit = 6\n"},
        {"ranges", "envelope_chunk_size = 255\nstream_threads = 9\n"},
        {"remote", "remote = unix:path=@DIR@/sock\nmodule = @DIR@/m.so\n"
                   "service_token = pkcs11:token=svc\n"},
        {"service-token-bad", "service_token = token=svc\n"},
        {"comments", "# c\n  \nstore = @DIR@/db # not a comment?\n"
                     "log_level = debug\t# trailing\n"},
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        conf_seed(small[i].name, small[i].text, "4321\n", 5);
}

/* ---- approvals ---------------------------------------------------------- */

static void fields(uint8_t op, const char *tenant, const char *scope)
{
    put8(op);
    put8(1);
    putbe(1700000000, 8);
    putbe(1700003600, 8);
    const char *f[] = {"6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e",
                       tenant,
                       scope,
                       "incident 42: restore the mailbox",
                       "carol",
                       "alice",
                       "sha256:0123456789abcdef0123456789abcdef0123456789ab"
                       "cdef0123456789abcdef"};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        put8((uint8_t)strlen(f[i]));
        puts_(f[i]);
    }
}

static char approval_name[64];

/* An approval input up to the edit (the caller appends raw parts), its
 * name in approval_name. */
static void approval_seed(uint8_t flags, uint8_t op, uint8_t edit_field,
                          const char *fmt, ...)
{
    reset();
    put8(flags);
    fields(op, "org-1", op == 2 ? "*" : "dep-1");
    put8(edit_field);
    put8(0x41);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(approval_name, sizeof approval_name, fmt, ap);
    va_end(ap);
}

static void spki_of(EVP_PKEY *k, uint8_t *out, size_t *len)
{
    uint8_t *p = out;
    int n = i2d_PUBKEY(k, &p);
    if (n <= 0)
        abort();
    *len = (size_t)n;
}

static void put_raw(const uint8_t *p, size_t n)
{
    putbe(n, 2);
    put(p, n);
}

static void approvals(void)
{
    for (uint8_t key = 0; key < 2; key++)
        for (uint8_t op = 1; op <= 7; op++) {
            approval_seed(key, op, 255, "signed-%s-op%u", key ? "rsa" : "ec",
                          op);
            save("approval", "%s", approval_name);
        }
    static const char *fnames[] = {
        "id",         "tenant",   "scope",        "justification",
        "requester",  "approver", "approver-key", "op",
        "single-use", "created",  "expires"};
    for (uint8_t f = 0; f < 11; f++) {
        approval_seed(0, 1, f, "edited-%s", fnames[f]);
        save("approval", "%s", approval_name);
    }
    approval_seed(8, 3, 255, "store");
    save("approval", "%s", approval_name);
    static const char *cols[] = {
        "id",        "op",        "tenant",     "scope",
        "just",      "requester", "single-use", "created",
        "expires",   "state",     "approver",   "approver-key",
        "signature", "granted",   "used",       "expiry-seen"};
    static const char *types[] = {"int", "text", "blob", "null"};
    for (uint8_t c = 0; c < 16; c++) {
        uint8_t t = (uint8_t)(c % 4);
        approval_seed(8 | 16 | (c % 2), 1, 255, "store-edit-%s-%s", cols[c],
                      types[t]);
        put8(c);
        put8(t);
        put_raw((const uint8_t *)"org-1\0hidden", 12);
        save("approval", "%s", approval_name);
    }
    EVP_PKEY *ks[] = {EVP_EC_gen("P-256"), EVP_EC_gen("P-384"),
                      EVP_RSA_gen(1024), EVP_RSA_gen(2048)};
    static const char *kn[] = {"p256", "p384", "rsa1024", "rsa2048"};
    uint8_t spki[2048];
    size_t len;
    for (int i = 0; i < 4; i++) {
        spki_of(ks[i], spki, &len);
        approval_seed(4, 1, 255, "spki-%s", kn[i]);
        put_raw(spki, len);
        save("approval", "%s", approval_name);
        if (i == 0) {
            approval_seed(4, 1, 255, "spki-p256-trailing");
            spki[len] = 0;
            put_raw(spki, len + 1);
            save("approval", "%s", approval_name);
            approval_seed(4, 1, 255, "spki-p256-cut");
            put_raw(spki, len - 3);
            save("approval", "%s", approval_name);
        }
        EVP_PKEY_free(ks[i]);
    }
    static uint8_t zeros[512];
    const size_t sig_lens[] = {0, 64, 63, 256, 512};
    for (size_t i = 0; i < sizeof sig_lens / sizeof sig_lens[0]; i++) {
        approval_seed(2 | (sig_lens[i] == 256), 1, 255, "sig-zero-%zu",
                      sig_lens[i]);
        put_raw(zeros, sig_lens[i]);
        save("approval", "%s", approval_name);
    }
}

/* Points as tokens return CKA_EC_POINT: a real P-256 key's, as a DER
 * OCTET STRING and bare, then edited. */
static void points(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    uint8_t pt65[65];
    size_t n = 0;
    if (k == NULL ||
        EVP_PKEY_get_octet_string_param(k, "encoded-pub-key", pt65, sizeof pt65,
                                        &n) != 1 ||
        n != 65)
        abort();
    uint8_t v[67] = {0x04, 65};
    memcpy(v + 2, pt65, 65);
    const struct {
        const char *name;
        const uint8_t *p;
        size_t n;
        int flip; /* byte to change, or -1 */
    } s[] = {{"der", v, 67, -1},          {"bare", pt65, 65, -1},
             {"off-curve", pt65, 65, 64}, {"der-bad-len", v, 67, 1},
             {"compressed", pt65, 33, 0}, {"x-only", pt65, 65, 1}};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        approval_seed(32, 1, 255, "point-%s", s[i].name);
        uint8_t b[67];
        memcpy(b, s[i].p, s[i].n);
        if (s[i].flip >= 0)
            b[s[i].flip] ^= (uint8_t)(s[i].flip == 0 ? 6 : 1);
        put_raw(b, s[i].n);
        save("approval", "%s", approval_name);
    }
    EVP_PKEY_free(k);
}

/* ---- PIN files (the CLI's and the library's readers) -------------------- */

static void pin_files(void)
{
    static const struct {
        const char *name, *text;
        size_t n;
    } s[] = {{"lf", "1234\n", 5},
             {"bare", "1234", 4},
             {"crlf", "1234\r\n", 6},
             {"cr-inside", "12\r34\n", 6},
             {"nul",
              "12\0"
              "34\n",
              6},
             {"empty", "", 0},
             {"empty-line", "\n1234\n", 6},
             {"two-lines", "1234\n5678\n", 10}};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        reset();
        put(s[i].text, s[i].n);
        save("clipin", "%s", s[i].name);
    }
    const size_t lens[] = {254, 255, 256, 257, 300};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (int nl = 0; nl < 2; nl++) {
            reset();
            for (size_t j = 0; j < lens[i]; j++)
                put8((uint8_t)('0' + j % 10));
            if (nl)
                put8('\n');
            save("clipin", "len-%zu%s", lens[i], nl ? "-lf" : "");
        }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CORPUS-DIR EXAMPLE-CONF\n", argv[0]);
        return 2;
    }
    root = argv[1];
    envelopes();
    configs(argv[2]);
    approvals();
    points();
    pin_files();
    return 0;
}
