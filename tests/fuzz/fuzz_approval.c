/* Fuzz target: approvals as the library decodes them from bytes it does
 * not trust: the approver's public key (DER SubjectPublicKeyInfo from the
 * store, as `keytier approval register --pubkey FILE` put it there), the
 * grant's signature blob and the approval row read back from the store
 * (kt_store_approval_get / _list, every column as the row holds it), and
 * the check of the signature over the canonical encoding of the fields
 * (kt_grant_sig_check). The first byte's bits choose:
 *   1: the target's RSA-2048 key signs (RSA-PSS), else its ECDSA P-256 key;
 *   2: the signature bytes come from the input instead;
 *   4: the public key bytes come from the input instead;
 *   8: the grant goes through the store (insert, grant, read back);
 *  16: then one column of the row is overwritten with an input value of
 *      an input type (integer, text, blob, NULL), as someone with write
 *      access to the store could;
 *  32: input bytes are the CKA_EC_POINT an approver's token returned at
 *      `keytier approval keygen` (kt_approver_point_spki).
 * The fields follow, then an edit of one field after signing.
 * Properties: a grant the target signed verifies, and stops verifying
 * when any field's canonical encoding changes; a row read back holds
 * bounded, terminated strings and a signature of at most its size, and
 * is the row written when nobody edited it; an edited row verifies only
 * if every signed field decodes to what was signed; a token's point
 * becomes a public key the approval check accepts, holding that point. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "store_stmt.h"
#include "trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    F_RSA = 1,
    F_RAW_SIG = 2,
    F_RAW_SPKI = 4,
    F_STORE = 8,
    F_EDIT = 16,
    F_POINT = 32
};

static EVP_PKEY *keys[2];
static uint8_t spkis[2][KT_SPKI_MAX];
static size_t spki_lens[2];
static struct kt_store *store;

static void init(void)
{
    if (store != NULL)
        return;
    keys[0] = EVP_EC_gen("P-256");
    keys[1] = EVP_RSA_gen(2048);
    for (int i = 0; i < 2; i++) {
        uint8_t *p = spkis[i];
        int n = keys[i] ? i2d_PUBKEY(keys[i], &p) : -1;
        if (n <= 0)
            abort();
        spki_lens[i] = (size_t)n;
    }
    char dir[] = "/tmp/kt-fuzz-approval-XXXXXX", path[64];
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof path, "%s/store.db", dir);
    if (kt_store_open(path, &store) != KEYTIER_OK)
        abort();
}

struct in {
    const uint8_t *p;
    size_t n, at;
};

static uint8_t u8(struct in *in)
{
    return in->at < in->n ? in->p[in->at++] : 0;
}

static int64_t i64(struct in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | u8(in);
    return (int64_t)v;
}

/* A length byte, then that many bytes (as much as cap - 1 holds). */
static void str(struct in *in, char *dst, size_t cap)
{
    size_t n = u8(in);
    memset(dst, 0, cap);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = u8(in);
        if (i + 1 < cap)
            dst[i] = (char)c;
    }
}

/* The signed message, read from approval.c's encoding independently:
 * the domain with its NUL, then each field as a 32-bit big-endian length
 * and its bytes. */
static size_t canonical(const keytier_approval_info *a, uint8_t *m)
{
    static const char dom[] = "keytier approval v1";
    char c[24], e[24];
    const char *op = keytier_approval_op_name(a->op);
    snprintf(c, sizeof c, "%lld", (long long)a->created);
    snprintf(e, sizeof e, "%lld", (long long)a->expires);
    const char *f[] = {a->id,
                       op ? op : "",
                       a->tenant,
                       a->scope,
                       a->justification,
                       a->requester,
                       a->single_use ? "1" : "0",
                       c,
                       e,
                       a->approver,
                       a->approver_key};
    size_t at = sizeof dom;
    memcpy(m, dom, at);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        size_t n = strlen(f[i]);
        for (int b = 3; b >= 0; b--)
            m[at++] = (uint8_t)(n >> (8 * b));
        memcpy(m + at, f[i], n);
        at += n;
    }
    return at;
}

#define MSG_MAX 4096

static bool same_fields(const keytier_approval_info *a,
                        const keytier_approval_info *b)
{
    static uint8_t ma[MSG_MAX], mb[MSG_MAX];
    size_t la = canonical(a, ma), lb = canonical(b, mb);
    return la == lb && memcmp(ma, mb, la) == 0;
}

/* Signs r's canonical encoding with key k: r || s for ECDSA (as PKCS#11
 * gives it), RSA-PSS SHA-256 with a 32-byte salt. */
static void sign(int k, struct kt_approval_rec *r)
{
    static uint8_t m[MSG_MAX];
    uint8_t d[32], der[128];
    size_t n = canonical(&r->info, m), dl = sizeof der;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(keys[k], NULL);
    if (EVP_Digest(m, n, d, NULL, EVP_sha256(), NULL) != 1 || pc == NULL ||
        EVP_PKEY_sign_init(pc) != 1 ||
        EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) != 1)
        abort();
    if (k == 1) {
        r->sig_len = sizeof r->sig;
        if (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) != 1 ||
            EVP_PKEY_sign(pc, r->sig, &r->sig_len, d, 32) != 1)
            abort();
    } else {
        const uint8_t *p = der;
        if (EVP_PKEY_sign(pc, der, &dl, d, 32) != 1)
            abort();
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        const BIGNUM *br, *bs;
        ECDSA_SIG_get0(es, &br, &bs);
        if (BN_bn2binpad(br, r->sig, 32) != 32 ||
            BN_bn2binpad(bs, r->sig + 32, 32) != 32)
            abort();
        r->sig_len = 64;
        ECDSA_SIG_free(es);
    }
    EVP_PKEY_CTX_free(pc);
}

/* Changes field f (0 .. 10) of a after signing. */
static void edit(keytier_approval_info *a, uint8_t f, uint8_t v)
{
    char *s[] = {a->id,        a->tenant,   a->scope,       a->justification,
                 a->requester, a->approver, a->approver_key};
    size_t cap[] = {sizeof a->id,          sizeof a->tenant,
                    sizeof a->scope,       sizeof a->justification,
                    sizeof a->requester,   sizeof a->approver,
                    sizeof a->approver_key};
    if (f < 7) {
        size_t n = strlen(s[f]);
        if (n == 0)
            s[f][0] = (char)(v | 1);
        else if (n + 1 < cap[f] && v & 1)
            s[f][n] = (char)(v | 1); /* appended */
        else
            s[f][n - 1] ^= (char)(v | 1);
    } else if (f == 7) {
        a->op = (keytier_approval_op)((int)a->op ^ (v | 1));
    } else if (f == 8) {
        a->single_use = !a->single_use;
    } else if (f == 9) {
        a->created = (int64_t)((uint64_t)a->created + (v | 1u));
    } else if (f == 10) {
        a->expires = (int64_t)((uint64_t)a->expires - (v | 1u));
    }
}

static void fields(struct in *in, keytier_approval_info *a)
{
    memset(a, 0, sizeof *a);
    a->op = (keytier_approval_op)u8(in);
    a->single_use = u8(in) & 1;
    a->created = i64(in);
    a->expires = i64(in);
    str(in, a->id, sizeof a->id);
    str(in, a->tenant, sizeof a->tenant);
    str(in, a->scope, sizeof a->scope);
    str(in, a->justification, sizeof a->justification);
    str(in, a->requester, sizeof a->requester);
    str(in, a->approver, sizeof a->approver);
    str(in, a->approver_key, sizeof a->approver_key);
}

static void raw_bytes(struct in *in, uint8_t *dst, size_t cap, size_t *len)
{
    size_t n = (size_t)u8(in) << 8 | u8(in);
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = u8(in);
        if (i < cap)
            dst[(*len)++] = c;
    }
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_row(const struct kt_approval_rec *r)
{
    const keytier_approval_info *a = &r->info;
    if (!terminated(a->id, sizeof a->id) ||
        !terminated(a->tenant, sizeof a->tenant) ||
        !terminated(a->scope, sizeof a->scope) ||
        !terminated(a->justification, sizeof a->justification) ||
        !terminated(a->requester, sizeof a->requester) ||
        !terminated(a->approver, sizeof a->approver) ||
        !terminated(a->approver_key, sizeof a->approver_key) ||
        r->sig_len > sizeof r->sig)
        abort();
}

/* Overwrites column col of every approval row with a value from in. */
static void raw_edit(struct in *in)
{
    static const char *cols[] = {
        "id",         "op",           "tenant",    "scope",   "justification",
        "requester",  "single_use",   "created",   "expires", "state",
        "approver",   "approver_key", "signature", "granted", "used",
        "expiry_seen"};
    uint8_t col = u8(in) % 16, type = u8(in) % 4, buf[1100];
    size_t len = 0;
    raw_bytes(in, buf, sizeof buf, &len);
    char sql[96];
    snprintf(sql, sizeof sql, "UPDATE approvals SET %s = ?1", cols[col]);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(store->db, sql, -1, &q, NULL) != SQLITE_OK)
        abort();
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 8; i++)
        v = v << 8 | buf[i];
    if (type == 0)
        sqlite3_bind_int64(q, 1, (sqlite3_int64)v);
    else if (type == 1)
        sqlite3_bind_text(q, 1, (const char *)buf, (int)len, SQLITE_STATIC);
    else if (type == 2)
        sqlite3_bind_blob(q, 1, buf, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 1);
    sqlite3_step(q); /* NOT NULL and key constraints may refuse it */
    sqlite3_finalize(q);
}

/* The grant through the store: written, perhaps edited, read back. */
static void via_store(struct in *in, uint8_t flags, const uint8_t *spki,
                      size_t spki_len, const struct kt_approval_rec *r,
                      keytier_err direct)
{
    struct kt_approval_rec back;
    bool applied = false;
    if (sqlite3_exec(store->db, "DELETE FROM approvals", NULL, NULL, NULL) !=
            SQLITE_OK ||
        kt_store_approval_insert(store, r) != KEYTIER_OK ||
        kt_store_approval_grant(store, r, &applied) != KEYTIER_OK || !applied)
        abort();
    if (flags & F_EDIT)
        raw_edit(in);
    struct kt_approval_rec *list = NULL;
    size_t n = 0;
    if (kt_store_approval_list(store, NULL, &list, &n) == KEYTIER_OK)
        for (size_t i = 0; i < n; i++)
            check_row(&list[i]);
    free(list);
    keytier_err e = kt_store_approval_get(store, r->info.id, &back);
    if (e == KEYTIER_E_NOT_FOUND && (flags & F_EDIT))
        return; /* the id was edited */
    if (e != KEYTIER_OK)
        abort();
    check_row(&back);
    keytier_err v = kt_grant_sig_check(spki, spki_len, &back);
    if (!(flags & F_EDIT) &&
        (!same_fields(&back.info, &r->info) || back.sig_len != r->sig_len ||
         memcmp(back.sig, r->sig, r->sig_len) != 0 || v != direct))
        abort(); /* the row read back is not the row written */
    if ((flags & F_EDIT) && v == KEYTIER_OK && direct == KEYTIER_OK &&
        !same_fields(&back.info, &r->info))
        abort(); /* an edited row verified */
}

/* A point from a token: its public key holds the point, and the
 * approval check parses it. */
static void token_point(struct in *in, const struct kt_approval_rec *r)
{
    uint8_t v[80], spki[KT_SPKI_MAX], enc[80];
    size_t len, spki_len = 0, enc_len = 0;
    raw_bytes(in, v, sizeof v, &len);
    if (kt_approver_point_spki(v, len, spki, &spki_len) != KEYTIER_OK)
        return;
    const uint8_t *p = spki, *point = len == 67 ? v + 2 : v;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
    if (pk == NULL || p != spki + spki_len ||
        EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", enc, sizeof enc,
                                        &enc_len) != 1 ||
        enc_len != 65 || memcmp(enc, point, 65) != 0)
        abort(); /* not the token's point */
    EVP_PKEY_free(pk);
    if (kt_grant_sig_check(spki, spki_len, r) == KEYTIER_E_FORMAT)
        abort(); /* a key keygen made that registration would refuse */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    struct in in = {data, size, 0};
    uint8_t flags = u8(&in), spki_raw[KT_SPKI_MAX];
    int k = flags & F_RSA ? 1 : 0;
    struct kt_approval_rec r;
    memset(&r, 0, sizeof r);
    fields(&in, &r.info);
    r.info.state = KEYTIER_APPROVAL_REQUESTED;
    uint8_t f = u8(&in), v = u8(&in);
    keytier_approval_info signed_info = r.info;
    sign(k, &r);
    edit(&r.info, f, v);
    const uint8_t *spki = spkis[k];
    size_t spki_len = spki_lens[k];
    if (flags & F_RAW_SIG)
        raw_bytes(&in, r.sig, sizeof r.sig, &r.sig_len);
    if (flags & F_RAW_SPKI) {
        raw_bytes(&in, spki_raw, sizeof spki_raw, &spki_len);
        spki = spki_raw;
    }
    keytier_err e = kt_grant_sig_check(spki, spki_len, &r);
    if (e != KEYTIER_OK && e != KEYTIER_E_FORMAT &&
        e != KEYTIER_E_APPROVAL_INVALID)
        abort();
    if (!(flags & (F_RAW_SIG | F_RAW_SPKI)) &&
        (e == KEYTIER_OK) != same_fields(&r.info, &signed_info)) {
        fprintf(stderr, "signed grant: %s\n", keytier_error_name(e));
        abort(); /* verified after an edit, or refused without one */
    }
    if (flags & F_POINT)
        token_point(&in, &r);
    if (flags & F_STORE)
        via_store(&in, flags, spki, spki_len, &r, e);
    return 0;
}
