/* Unit tests of the module internals: attribute arrays and their stored
 * form, the handle table, the config parser, the policy table, sealing and
 * PIN records. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt.h"
#include "ossl/ossl.h"
#include "store/store.h"

static void setup(void)
{
    ck_assert_int_eq(kt_ossl_init(false), CKR_OK);
    kt_g.cfg.pin_kdf_cost = 10;
}

static void teardown(void)
{
    kt_ossl_fini();
}

static void sample(kt_attrs *a)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    kt_attrs_init(a);
    ck_assert_int_eq(kt_attrs_set(a, CKA_CLASS, &cls, sizeof(cls)), CKR_OK);
    ck_assert_int_eq(kt_attrs_set(a, CKA_LABEL, "label", 5), CKR_OK);
    ck_assert_int_eq(kt_attrs_set_bool(a, CKA_TOKEN, true), CKR_OK);
    ck_assert_int_eq(kt_attrs_set(a, CKA_VALUE, "0123456789abcdef", 16),
                     CKR_OK);
    ck_assert_int_eq(kt_attrs_set(a, CKA_ID, NULL, 0), CKR_OK);
}

START_TEST(test_attrs_roundtrip_and_finders)
{
    kt_attrs a, b;
    unsigned char *buf;
    size_t len;
    sample(&a);
    ck_assert(kt_attrs_get_bool(&a, CKA_TOKEN, false));
    ck_assert(!kt_attrs_get_bool(&a, CKA_PRIVATE, false));
    CK_ULONG x = 0;
    ck_assert_int_eq(kt_attrs_get_ulong(&a, CKA_CLASS, &x), CKR_OK);
    ck_assert_uint_eq(x, CKO_SECRET_KEY);
    ck_assert_int_eq(kt_attrs_get_ulong(&a, CKA_KEY_TYPE, &x),
                     CKR_TEMPLATE_INCOMPLETE);
    ck_assert_int_eq(kt_attrs_get_ulong(&a, CKA_LABEL, &x),
                     CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_int_eq(kt_attrs_serialize(&a, &buf, &len), CKR_OK);
    kt_attrs_init(&b);
    ck_assert_int_eq(kt_attrs_parse(&b, buf, len), CKR_OK);
    ck_assert_uint_eq(b.n, a.n);
    ck_assert(kt_attrs_match(&b, &a) && kt_attrs_match(&a, &b));
    kt_attrs_remove(&b, CKA_LABEL);
    ck_assert(!kt_attrs_match(&b, &a));
    ck_assert(kt_attrs_match(&a, &b));
    kt_attrs_clear(&b);
    /* every truncation and every extension is refused */
    for (size_t cut = 0; cut < len; cut++) {
        kt_attrs_init(&b);
        ck_assert_int_eq(kt_attrs_parse(&b, buf, cut), CKR_DATA_INVALID);
        ck_assert_uint_eq(b.n, 0);
    }
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    ck_assert_int_eq(kt_attrs_parse(&b, longer, len + 1), CKR_DATA_INVALID);
    /* a length field pointing past the end, a huge count, a duplicate */
    longer[4 + 8] = 0xff;
    ck_assert_int_eq(kt_attrs_parse(&b, longer, len), CKR_DATA_INVALID);
    memcpy(longer, buf, len);
    longer[3] = 0x7f;
    ck_assert_int_eq(kt_attrs_parse(&b, longer, len), CKR_DATA_INVALID);
    free(longer);
    free(buf);
    kt_attrs dup;
    kt_attrs_init(&dup);
    ck_assert_int_eq(kt_attrs_set(&dup, CKA_LABEL, "a", 1), CKR_OK);
    ck_assert_int_eq(kt_attrs_serialize(&dup, &buf, &len), CKR_OK);
    unsigned char two[64];
    memcpy(two, buf, len);
    memcpy(two + len, buf + 4, len - 4);
    two[0] = 2;
    ck_assert_int_eq(kt_attrs_parse(&b, two, 2 * len - 4), CKR_DATA_INVALID);
    free(buf);
    kt_attrs_clear(&dup);
    kt_attrs_clear(&a);
}
END_TEST

START_TEST(test_attrs_from_template)
{
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE inner[] = {{CKA_ENCRYPT, &t, 1}};
    CK_ATTRIBUTE tmpl[] = {{CKA_LABEL, "x", 1},
                           {CKA_WRAP_TEMPLATE, inner, sizeof(inner)}};
    kt_attrs a;
    kt_attrs_init(&a);
    ck_assert_int_eq(kt_attrs_from_template(&a, tmpl, 2), CKR_OK);
    CK_ATTRIBUTE *w = kt_attrs_find(&a, CKA_WRAP_TEMPLATE);
    ck_assert_ptr_nonnull(w);
    kt_attrs parsed;
    kt_attrs_init(&parsed);
    ck_assert_int_eq(kt_attrs_parse(&parsed, w->pValue, w->ulValueLen), CKR_OK);
    ck_assert(kt_attrs_get_bool(&parsed, CKA_ENCRYPT, false));
    kt_attrs_clear(&parsed);
    kt_attrs_clear(&a);
    CK_ATTRIBUTE bad_nested[] = {{CKA_WRAP_TEMPLATE, inner, 5}};
    ck_assert_int_eq(kt_attrs_from_template(&a, bad_nested, 1),
                     CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE deep[] = {{CKA_UNWRAP_TEMPLATE, tmpl, sizeof(tmpl)}};
    ck_assert_int_eq(kt_attrs_from_template(&a, deep, 1),
                     CKR_ATTRIBUTE_VALUE_INVALID);
    ck_assert_int_eq(kt_attrs_from_template(&a, NULL, 1), CKR_ARGUMENTS_BAD);
    ck_assert_uint_eq(a.n, 0);
}
END_TEST

START_TEST(test_hmap)
{
    kt_hmap m;
    kt_hmap_init(&m);
    static int vals[10001];
    for (CK_ULONG k = 1; k <= 10000; k++)
        ck_assert_int_eq(kt_hmap_put(&m, k * 7919, &vals[k]), CKR_OK);
    ck_assert_uint_eq(m.n, 10000);
    for (CK_ULONG k = 2; k <= 10000; k += 2)
        ck_assert_ptr_eq(kt_hmap_del(&m, k * 7919), &vals[k]);
    ck_assert_ptr_null(kt_hmap_del(&m, 2 * 7919));
    for (CK_ULONG k = 1; k <= 10000; k++)
        ck_assert_ptr_eq(kt_hmap_get(&m, k * 7919),
                         k % 2 ? (void *)&vals[k] : NULL);
    size_t seen = 0;
    void *v;
    for (size_t i = 0; kt_hmap_iter(&m, &i, NULL, &v);)
        seen++;
    ck_assert_uint_eq(seen, 5000);
    ck_assert_int_ne(kt_hmap_put(&m, 0, NULL), CKR_OK);
    kt_hmap_free(&m);
    CK_ULONG a = kt_handle_next(), b = kt_handle_next();
    ck_assert_uint_gt(b, a);
}
END_TEST

/* A copy into an empty array is packed in one block; reading it, changing
 * it (which unpacks), removing from it and copying it again all keep every
 * value, and a self-referencing set is safe. */
START_TEST(test_attrs_packed_copy)
{
    kt_attrs a, p, q;
    sample(&a);
    CK_MECHANISM_TYPE mechs[3] = {CKM_AES_ECB, CKM_AES_GCM, CKM_SHA256};
    ck_assert_int_eq(
        kt_attrs_set(&a, CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)), CKR_OK);
    kt_attrs_init(&p);
    ck_assert_int_eq(kt_attrs_copy(&p, &a), CKR_OK);
    ck_assert_uint_ne(p.packed, 0);
    ck_assert_uint_eq(p.n, a.n);
    for (size_t i = 0; i < a.n; i++) {
        const CK_ATTRIBUTE *x = kt_attrs_find(&p, a.v[i].type);
        ck_assert_ptr_nonnull(x);
        ck_assert(kt_attr_equal(x, &a.v[i]));
        ck_assert(x->ulValueLen == 0 || x->pValue != a.v[i].pValue);
    }
    /* Arrays inside the block are aligned for their element type. */
    const CK_ATTRIBUTE *am = kt_attrs_find(&p, CKA_ALLOWED_MECHANISMS);
    ck_assert_uint_eq((uintptr_t)am->pValue % _Alignof(CK_MECHANISM_TYPE), 0);
    ck_assert_uint_eq(((const CK_MECHANISM_TYPE *)am->pValue)[2], CKM_SHA256);
    ck_assert(kt_attrs_match(&p, &a));
    /* Removing in place keeps it packed; setting unpacks. */
    kt_attrs_remove(&p, CKA_LABEL);
    ck_assert_uint_ne(p.packed, 0);
    ck_assert(!kt_attrs_has(&p, CKA_LABEL));
    const CK_ATTRIBUTE *v = kt_attrs_find(&p, CKA_VALUE);
    ck_assert_int_eq(kt_attrs_set(&p, CKA_LABEL, v->pValue, v->ulValueLen),
                     CKR_OK);
    ck_assert_uint_eq(p.packed, 0);
    const CK_ATTRIBUTE *l = kt_attrs_find(&p, CKA_LABEL);
    ck_assert_uint_eq(l->ulValueLen, 16);
    ck_assert_mem_eq(l->pValue, "0123456789abcdef", 16);
    ck_assert(kt_attrs_get_bool(&p, CKA_TOKEN, false));
    ck_assert_int_eq(kt_attrs_set_bool(&p, CKA_TOKEN, false), CKR_OK);
    ck_assert(!kt_attrs_get_bool(&p, CKA_TOKEN, true));
    /* A packed copy of a packed copy, and into a non-empty array. */
    kt_attrs_init(&q);
    ck_assert_int_eq(kt_attrs_copy(&q, &p), CKR_OK);
    ck_assert(kt_attrs_match(&q, &p) && kt_attrs_match(&p, &q));
    ck_assert_int_eq(kt_attrs_copy(&q, &a), CKR_OK);
    ck_assert_uint_eq(q.packed, 0);
    ck_assert(kt_attrs_match(&q, &a));
    /* The stored form of a packed array is the same as of the original. */
    kt_attrs r;
    kt_attrs_init(&r);
    ck_assert_int_eq(kt_attrs_copy(&r, &a), CKR_OK);
    unsigned char *s1 = NULL, *s2 = NULL;
    size_t l1 = 0, l2 = 0;
    ck_assert_int_eq(kt_attrs_serialize(&a, &s1, &l1), CKR_OK);
    ck_assert_int_eq(kt_attrs_serialize(&r, &s2, &l2), CKR_OK);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(s1, s2, l1);
    free(s1);
    free(s2);
    kt_attrs_clear(&r);
    kt_attrs_clear(&q);
    kt_attrs_clear(&p);
    kt_attrs_clear(&a);
    ck_assert_uint_eq(p.packed, 0);
    ck_assert_ptr_null(p.v);
}
END_TEST

/* Handles of each shard are that shard's, grow, and never meet another
 * shard's. */
START_TEST(test_handle_shards)
{
    CK_ULONG last[KT_SHARDS] = {0};
    static CK_ULONG seen[KT_SHARDS * 100];
    size_t n = 0;
    for (int round = 0; round < 100; round++)
        for (unsigned sh = 0; sh < KT_SHARDS; sh++) {
            CK_ULONG h = kt_handle_next_in(sh + KT_SHARDS * (unsigned)round);
            ck_assert_uint_ne(h, CK_INVALID_HANDLE);
            ck_assert_uint_eq(kt_handle_shard(h), sh);
            ck_assert_uint_gt(h, last[sh]);
            last[sh] = h;
            seen[n++] = h;
        }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            ck_assert_uint_ne(seen[i], seen[j]);
}
END_TEST

/* Small secure blocks come from the slots of one secure-heap block without
 * OpenSSL's lock: threads never get the same block twice at once, and a
 * block is wiped when it goes back. */
#define SLOT_THREADS 4
#define SLOT_HELD    300 /* per thread: more than the slots, some spill */

static void *slot_worker(void *arg)
{
    unsigned char id = (unsigned char)(uintptr_t)arg;
    static _Thread_local unsigned char *held[SLOT_HELD];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < SLOT_HELD; i++) {
            held[i] = kt_secure_alloc(48);
            if (held[i] == NULL)
                return (void *)1;
            memset(held[i], id, 48);
        }
        for (int i = 0; i < SLOT_HELD; i++) {
            for (int b = 0; b < 48; b++)
                if (held[i][b] != id)
                    return (void *)2; /* another thread wrote our block */
            kt_free_secret(held[i], 48);
        }
    }
    return NULL;
}

START_TEST(test_secure_slots)
{
    kt_secure_init(1u << 20);
    unsigned char *p = kt_secure_alloc(32);
    ck_assert_ptr_nonnull(p);
    ck_assert(kt_ossl_secure_allocated(p));
    ck_assert_uint_eq((uintptr_t)p % KT_CACHE_LINE, 0);
    memset(p, 0x5a, 32);
    kt_free_secret(p, 32);
    /* The slot stays mapped (it is the module's): wiped on release. */
    for (int i = 0; i < 32; i++)
        ck_assert_uint_eq(p[i], 0);
    pthread_t th[SLOT_THREADS];
    for (uintptr_t i = 0; i < SLOT_THREADS; i++)
        ck_assert_int_eq(
            pthread_create(&th[i], NULL, slot_worker, (void *)(i + 1)), 0);
    for (int i = 0; i < SLOT_THREADS; i++) {
        void *r;
        ck_assert_int_eq(pthread_join(th[i], &r), 0);
        ck_assert_ptr_null(r);
    }
}
END_TEST

static CK_RV parse_config(const char *text, struct kt_config *cfg)
{
    char path[] = "/tmp/kt-unit-conf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    kt_config_defaults(cfg);
    CK_RV rv = kt_config_parse_file(cfg, path);
    unlink(path);
    return rv;
}

/* The system-wide file is read only without $KEYTIER_CONF, and only if it
 * exists; with neither file nor home there is no token directory, and that
 * is no error (no slots). */
START_TEST(test_config_system_file)
{
    char path[] = "/tmp/kt-unit-sysconf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "token_dir = /srv/keytier\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ck_assert_str_eq(kt_config_pick("/env.conf", path), "/env.conf");
    ck_assert_str_eq(kt_config_pick("", path), path);
    ck_assert_str_eq(kt_config_pick(NULL, path), path);
    ck_assert_ptr_null(kt_config_pick(NULL, "/nonexistent/keytier.conf"));
    ck_assert_ptr_null(kt_config_pick("", NULL));
    struct kt_config c;
    unsetenv("XDG_DATA_HOME");
    unsetenv("HOME");
    ck_assert_int_eq(kt_config_load_from(&c, NULL), CKR_OK);
    ck_assert_str_eq(c.token_dir, "");
    ck_assert_int_eq(kt_config_load_from(&c, path), CKR_OK);
    ck_assert_str_eq(c.token_dir, "/srv/keytier");
    setenv("HOME", "/home/u", 1);
    ck_assert_int_eq(kt_config_load_from(&c, NULL), CKR_OK);
    ck_assert_str_eq(c.token_dir, "/home/u/.local/share/keytier");
    /* The file's token_dir wins over the per-user one. */
    ck_assert_int_eq(kt_config_load_from(&c, path), CKR_OK);
    ck_assert_str_eq(c.token_dir, "/srv/keytier");
    unlink(path);
}
END_TEST

START_TEST(test_config_parser)
{
    struct kt_config c;
    ck_assert_int_eq(parse_config("# comment\n\ntoken_dir = /x/y # tail\n"
                                  "slots=3\nlog_level = debug\n"
                                  "log_file = /tmp/l\npin_min_length = 6\n"
                                  "pin_max_length = 32\npin_max_retries = 5\n"
                                  "pin_kdf_cost = 12\n",
                                  &c),
                     CKR_OK);
    ck_assert_str_eq(c.token_dir, "/x/y");
    ck_assert_uint_eq(c.slots, 3);
    ck_assert_int_eq(c.log_level, KT_LOG_DEBUG);
    ck_assert_str_eq(c.log_file, "/tmp/l");
    ck_assert_uint_eq(c.pin_min_length, 6);
    ck_assert_uint_eq(c.pin_max_length, 32);
    ck_assert_uint_eq(c.pin_max_retries, 5);
    ck_assert_uint_eq(c.pin_kdf_cost, 12);
    ck_assert(!c.legacy_mechanisms); /* the default */
    ck_assert_int_eq(parse_config("legacy_mechanisms = yes\n", &c), CKR_OK);
    ck_assert(c.legacy_mechanisms);
    ck_assert_int_eq(parse_config("legacy_mechanisms=no\n", &c), CKR_OK);
    ck_assert(!c.legacy_mechanisms);
    /* Safe defaults: cores off while logged in, a 1 MiB secure heap. */
    ck_assert(!c.allow_core_dumps);
    ck_assert_uint_eq(c.secure_heap_size, 1u << 20);
    ck_assert_int_eq(parse_config("allow_core_dumps = yes\n"
                                  "secure_heap_size = 4194304\n",
                                  &c),
                     CKR_OK);
    ck_assert(c.allow_core_dumps);
    ck_assert_uint_eq(c.secure_heap_size, 4u << 20);
    const char *bad[] = {
        "legacy_mechanisms = 1\n",
        "legacy_mechanisms = YES\n",
        "legacy_mechanisms =\n",
        "nokey\n",
        "what = 1\n",
        "slots = 0\n",
        "slots = -1\n",
        "slots = 9x\n",
        "token_dir = rel\n",
        "log_level = x\n",
        "pin_kdf_cost = 9\n",
        "pin_max_retries = \n",
        "pin_min_length = 10\npin_max_length = 5\n",
        "log_file = x\n",
        "allow_core_dumps = maybe\n",
        "secure_heap_size = 100000\n",
        "secure_heap_size = 32768\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse_config(bad[i], &c) == CKR_ARGUMENTS_BAD,
                      "accepted: %s", bad[i]);
}
END_TEST

static void secret_key_attrs(kt_attrs *a)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    kt_attrs_init(a);
    ck_assert_int_eq(kt_attrs_set(a, CKA_CLASS, &cls, sizeof(cls)), CKR_OK);
    ck_assert_int_eq(kt_attrs_set(a, CKA_KEY_TYPE, &kt, sizeof(kt)), CKR_OK);
    ck_assert_int_eq(kt_attrs_set(a, CKA_VALUE, "0123456789abcdef", 16),
                     CKR_OK);
}

START_TEST(test_schema_table)
{
    kt_attrs a;
    secret_key_attrs(&a);
    ck_assert_int_eq(kt_schema_create(&a, KT_CREATE_OBJECT,
                                      CK_UNAVAILABLE_INFORMATION, false),
                     CKR_OK);
    /* defaults and token-maintained attributes */
    ck_assert(kt_attrs_get_bool(&a, CKA_SENSITIVE, false));
    ck_assert(!kt_attrs_get_bool(&a, CKA_EXTRACTABLE, true));
    ck_assert(!kt_attrs_get_bool(&a, CKA_LOCAL, true));
    ck_assert(!kt_attrs_get_bool(&a, CKA_ALWAYS_SENSITIVE, true));
    ck_assert(kt_attrs_get_bool(&a, CKA_PRIVATE, false));
    ck_assert(kt_schema_secret(CKO_SECRET_KEY, CKA_VALUE));
    ck_assert(!kt_schema_secret(CKO_DATA, CKA_VALUE));
    ck_assert(!kt_schema_secret(CKO_SECRET_KEY, CKA_LABEL));
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    struct {
        CK_ATTRIBUTE_TYPE type;
        CK_BBOOL *v;
        bool copying, so;
        CK_RV want;
    } rows[] = {
        {CKA_SENSITIVE, &f, false, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_SENSITIVE, &t, false, false, CKR_OK},
        {CKA_EXTRACTABLE, &t, false, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_EXTRACTABLE, &f, false, false, CKR_OK},
        {CKA_TOKEN, &t, false, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_TOKEN, &t, true, false, CKR_OK},
        /* a copy never makes key material public */
        {CKA_PRIVATE, &f, true, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_PRIVATE, &t, true, false, CKR_OK},
        {CKA_MODIFIABLE, &f, true, false, CKR_OK},
        {CKA_LOCAL, &t, true, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_TRUSTED, &t, false, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_TRUSTED, &t, false, true, CKR_OK},
        {CKA_ENCRYPT, &f, false, false, CKR_OK},
        {CKA_ALWAYS_SENSITIVE, &t, false, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_NEVER_EXTRACTABLE, &t, false, false, CKR_ATTRIBUTE_READ_ONLY},
        {CKA_APPLICATION, &t, false, false, CKR_ATTRIBUTE_TYPE_INVALID},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CK_ATTRIBUTE ch = {rows[i].type, rows[i].v, 1};
        ck_assert_msg(kt_schema_modify(&a, &ch, rows[i].copying, rows[i].so) ==
                          rows[i].want,
                      "row %zu", i);
    }
    CK_ATTRIBUTE v = {CKA_VALUE, "x", 1};
    ck_assert_int_eq(kt_schema_modify(&a, &v, false, false),
                     CKR_ATTRIBUTE_READ_ONLY);
    kt_attrs_clear(&a);
    /* generated keys: LOCAL and the ALWAYS/NEVER pair from the template */
    secret_key_attrs(&a);
    kt_attrs_remove(&a, CKA_VALUE);
    ck_assert_int_eq(
        kt_schema_create(&a, KT_CREATE_GENERATE, CKM_AES_KEY_GEN, false),
        CKR_TEMPLATE_INCOMPLETE); /* no CKA_VALUE_LEN */
    ck_assert_int_eq(kt_attrs_set_ulong(&a, CKA_VALUE_LEN, 16), CKR_OK);
    ck_assert_int_eq(kt_attrs_set_bool(&a, CKA_EXTRACTABLE, true), CKR_OK);
    ck_assert_int_eq(
        kt_schema_create(&a, KT_CREATE_GENERATE, CKM_AES_KEY_GEN, false),
        CKR_OK);
    ck_assert(kt_attrs_get_bool(&a, CKA_LOCAL, false));
    ck_assert(kt_attrs_get_bool(&a, CKA_ALWAYS_SENSITIVE, false));
    ck_assert(!kt_attrs_get_bool(&a, CKA_NEVER_EXTRACTABLE, true));
    kt_attrs_clear(&a);
}
END_TEST

/* Key roles: what a secret key's template asks for sets the usage defaults;
 * both roles are refused unless legacy_mechanisms = yes. */
START_TEST(test_schema_key_roles)
{
    struct {
        CK_ATTRIBUTE_TYPE ask;
        bool wrap;
    } rows[] = {
        {0, false},       {CKA_ENCRYPT, false}, {CKA_DECRYPT, false},
        {CKA_WRAP, true}, {CKA_UNWRAP, true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        kt_attrs a;
        secret_key_attrs(&a);
        if (rows[i].ask != 0)
            ck_assert_int_eq(kt_attrs_set_bool(&a, rows[i].ask, true), CKR_OK);
        ck_assert_int_eq(kt_schema_create(&a, KT_CREATE_OBJECT,
                                          CK_UNAVAILABLE_INFORMATION, false),
                         CKR_OK);
        bool w = rows[i].wrap;
        ck_assert_msg(kt_attrs_get_bool(&a, CKA_WRAP, !w) == w, "row %zu", i);
        ck_assert_msg(kt_attrs_get_bool(&a, CKA_UNWRAP, !w) == w, "row %zu", i);
        ck_assert_msg(kt_attrs_get_bool(&a, CKA_ENCRYPT, w) == !w, "row %zu",
                      i);
        ck_assert_msg(kt_attrs_get_bool(&a, CKA_DECRYPT, w) == !w, "row %zu",
                      i);
        /* a wrap key signs nothing unless asked; others keep CKA_SIGN */
        ck_assert_msg(kt_attrs_get_bool(&a, CKA_SIGN, w) == !w, "row %zu", i);
        ck_assert(!kt_schema_roles_combined(&a));
        /* switching the other role on is refused, off is fine */
        CK_BBOOL t = CK_TRUE, f = CK_FALSE;
        kt_attrs ch;
        kt_attrs_init(&ch);
        ck_assert_int_eq(
            kt_attrs_set_bool(&ch, w ? CKA_DECRYPT : CKA_UNWRAP, true), CKR_OK);
        ck_assert_int_eq(kt_attrs_set(&a, w ? CKA_DECRYPT : CKA_UNWRAP, &t, 1),
                         CKR_OK);
        ck_assert_int_eq(kt_schema_roles_changed(&a, &ch, false),
                         CKR_ATTRIBUTE_READ_ONLY);
        ck_assert_int_eq(kt_schema_roles_changed(&a, &ch, true),
                         CKR_TEMPLATE_INCONSISTENT);
        kt_attrs_clear(&ch);
        /* a key holding both (stored before the rule) may be relabelled */
        kt_attrs_init(&ch);
        ck_assert_int_eq(kt_attrs_set(&ch, CKA_LABEL, "x", 1), CKR_OK);
        ck_assert_int_eq(kt_schema_roles_changed(&a, &ch, false), CKR_OK);
        kt_attrs_clear(&ch);
        ck_assert_int_eq(kt_attrs_set(&a, w ? CKA_DECRYPT : CKA_UNWRAP, &f, 1),
                         CKR_OK);
        kt_attrs_clear(&a);
    }
    /* both asked */
    kt_attrs a;
    secret_key_attrs(&a);
    ck_assert_int_eq(kt_attrs_set_bool(&a, CKA_WRAP, true), CKR_OK);
    ck_assert_int_eq(kt_attrs_set_bool(&a, CKA_DECRYPT, true), CKR_OK);
    ck_assert_int_eq(
        kt_schema_create(&a, KT_CREATE_GENERATE, CKM_AES_KEY_GEN, false),
        CKR_TEMPLATE_INCONSISTENT);
    ck_assert(kt_schema_roles_combined(&a));
    /* legacy_mechanisms = yes: permitted, and every usage defaults on */
    kt_schema_legacy_set(true);
    ck_assert(!kt_schema_roles_combined(&a));
    ck_assert_int_eq(kt_schema_create(&a, KT_CREATE_OBJECT,
                                      CK_UNAVAILABLE_INFORMATION, false),
                     CKR_OK);
    ck_assert(kt_attrs_get_bool(&a, CKA_UNWRAP, false));
    ck_assert(kt_attrs_get_bool(&a, CKA_ENCRYPT, false));
    kt_schema_legacy_set(false);
    kt_attrs_clear(&a);
    /* RSA keys are not concerned */
    kt_attrs r;
    kt_attrs_init(&r);
    ck_assert_int_eq(kt_attrs_set_ulong(&r, CKA_CLASS, CKO_PRIVATE_KEY),
                     CKR_OK);
    ck_assert_int_eq(kt_attrs_set_bool(&r, CKA_UNWRAP, true), CKR_OK);
    ck_assert_int_eq(kt_attrs_set_bool(&r, CKA_DECRYPT, true), CKR_OK);
    ck_assert(!kt_schema_roles_combined(&r));
    kt_attrs_clear(&r);
}
END_TEST

START_TEST(test_seal_and_mac)
{
    unsigned char mk[32] = {1}, mac_key[32], mac[32];
    unsigned char *blob;
    size_t len;
    kt_attrs a;
    sample(&a);
    kt_seal_mac_key(mk, mac_key);
    ck_assert_int_eq(kt_seal_object(mk, 42, CKO_SECRET_KEY, &a, &blob, &len),
                     CKR_OK);
    ck_assert_int_eq(kt_seal_record_mac(mac_key, 42, 7, blob, len, mac),
                     CKR_OK);
    ck_assert_ptr_null(memmem(blob, len, "0123456789abcdef", 16));
    ck_assert_int_eq(kt_seal_verify(mac_key, 42, 7, blob, len, mac), CKR_OK);
    ck_assert_int_eq(kt_seal_verify(mac_key, 43, 7, blob, len, mac),
                     CKR_DATA_INVALID);
    /* the generation is bound in: an older copy does not pass as newer */
    ck_assert_int_eq(kt_seal_verify(mac_key, 42, 8, blob, len, mac),
                     CKR_DATA_INVALID);
    for (size_t i = 0; i < len; i++) {
        blob[i] ^= 0x01;
        ck_assert_int_eq(kt_seal_verify(mac_key, 42, 7, blob, len, mac),
                         CKR_DATA_INVALID);
        blob[i] ^= 0x01;
    }
    kt_attrs b;
    kt_attrs_init(&b);
    ck_assert_int_eq(kt_attrs_parse(&b, blob, len), CKR_OK);
    ck_assert_int_eq(kt_seal_open_attrs(mk, 42, CKO_SECRET_KEY, &b), CKR_OK);
    ck_assert(kt_attrs_match(&b, &a));
    kt_attrs_clear(&b);
    /* the sealed value is bound to its object id */
    kt_attrs_init(&b);
    ck_assert_int_eq(kt_attrs_parse(&b, blob, len), CKR_OK);
    ck_assert_int_eq(kt_seal_open_attrs(mk, 41, CKO_SECRET_KEY, &b),
                     CKR_DATA_INVALID);
    kt_attrs_clear(&b);
    free(blob);
    kt_attrs_clear(&a);
}
END_TEST

START_TEST(test_pin_records)
{
    unsigned char mk[32], out[32], ik[32], other_ik[32];
    const char serial[KT_SERIAL_LEN] = "0123456789abcdef";
    const char other[KT_SERIAL_LEN] = "fedcba9876543210";
    struct kt_pin p;
    memset(mk, 0x5a, sizeof(mk));
    memset(ik, 0x11, sizeof(ik));
    memset(other_ik, 0x12, sizeof(other_ik));
    ck_assert_int_eq(kt_pin_make(&p, (const unsigned char *)"1234", 4, 10,
                                 KT_PIN_USER, serial),
                     CKR_OK);
    ck_assert(p.present);
    ck_assert_int_eq(kt_pin_box(&p, mk, KT_PIN_USER, serial, ik), CKR_OK);
    ck_assert_int_eq(kt_pin_open(&p, (const unsigned char *)"1234", 4, out,
                                 KT_PIN_USER, serial),
                     CKR_OK);
    ck_assert_mem_eq(out, mk, 32);
    ck_assert_int_eq(kt_pin_open(&p, (const unsigned char *)"1235", 4, out,
                                 KT_PIN_USER, serial),
                     CKR_PIN_INCORRECT);
    ck_assert_int_eq(kt_pin_open(&p, (const unsigned char *)"123", 3, out,
                                 KT_PIN_USER, serial),
                     CKR_PIN_INCORRECT);
    /* bound to its role and token: a user record moved to the SO row, or to
     * another token, does not open */
    ck_assert_int_eq(kt_pin_open(&p, (const unsigned char *)"1234", 4, out,
                                 KT_PIN_SO, serial),
                     CKR_PIN_INCORRECT);
    ck_assert_int_eq(kt_pin_open(&p, (const unsigned char *)"1234", 4, out,
                                 KT_PIN_USER, other),
                     CKR_PIN_INCORRECT);
    /* the binding names the master key, the public key and the integrity
     * key */
    ck_assert_int_eq(kt_pin_check_bind(&p, mk, KT_PIN_USER, serial, ik),
                     CKR_OK);
    ck_assert_int_ne(kt_pin_check_bind(&p, mk, KT_PIN_USER, serial, other_ik),
                     CKR_OK);
    out[0] = mk[0] ^ 1;
    memcpy(out + 1, mk + 1, 31);
    ck_assert_int_ne(kt_pin_check_bind(&p, out, KT_PIN_USER, serial, ik),
                     CKR_OK);
    struct kt_pin q = p;
    q.pub[3] ^= 1;
    ck_assert_int_ne(kt_pin_check_bind(&q, mk, KT_PIN_USER, serial, ik),
                     CKR_OK);
    /* a damaged sealed private key or box is an error, never a wrong
     * master key */
    q = p;
    q.priv[20] ^= 1;
    ck_assert_int_eq(kt_pin_open(&q, (const unsigned char *)"1234", 4, out,
                                 KT_PIN_USER, serial),
                     CKR_DEVICE_ERROR);
    q = p;
    q.box[40] ^= 1;
    ck_assert_int_eq(kt_pin_open(&q, (const unsigned char *)"1234", 4, out,
                                 KT_PIN_USER, serial),
                     CKR_DEVICE_ERROR);
}
END_TEST

/* <serial>.seq: two slots of magic | counter | MAC. */
static void seq_put_slot(const char *path, int slot,
                         const unsigned char key[32],
                         const char serial[KT_SERIAL_LEN], uint64_t ctr,
                         bool good_mac)
{
    static const char label[] = "keytier seq v3";
    unsigned char b[48];
    memcpy(b, "KTSEQ3\n", 8);
    kt_store_put_le64(b + 8, ctr);
    ck_assert_int_eq(kt_ossl_hmac256(key, 32, label, sizeof(label), serial,
                                     KT_SERIAL_LEN, b + 8, 8, b + 16),
                     CKR_OK);
    if (!good_mac)
        b[30] ^= 1;
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, slot * 48, SEEK_SET), 0);
    ck_assert_uint_eq(fwrite(b, 1, sizeof(b), fp), sizeof(b));
    ck_assert_int_eq(fclose(fp), 0);
}

/* Only an authentic slot is ever read: a damaged slot beside one holding
 * any counter (a counter beyond INT64_MAX is damage too) never lends its
 * value, and with both damaged the file is refused. */
START_TEST(test_seq_slots)
{
    const char serial[KT_SERIAL_LEN] = "0123456789abcdef";
    unsigned char key[32];
    char dir[] = "/tmp/kt-seq-XXXXXX", base[64], path[80];
    const char *why = NULL;
    int64_t ctr = 0;
    memset(key, 0x33, sizeof(key));
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(base, sizeof(base), "%s/tok", dir);
    snprintf(path, sizeof(path), "%s.seq", base);
    ck_assert_int_eq(kt_seq_advance(base, -1, key, serial, 3, true), CKR_OK);
    ck_assert_int_eq(kt_seq_advance(base, -1, key, serial, 9, false), CKR_OK);
    ck_assert_int_eq(kt_seq_read(base, key, serial, &ctr, &why), CKR_OK);
    ck_assert_int_eq(ctr, 9);
    /* slot 0 damaged, slot 1 authentic with a small counter */
    for (int slot = 0; slot < 2; slot++) {
        seq_put_slot(path, slot, key, serial, 1, true);
        seq_put_slot(path, 1 - slot, key, serial, 7, false);
        ck_assert_int_eq(kt_seq_read(base, key, serial, &ctr, &why), CKR_OK);
        ck_assert_int_eq(ctr, 1);
        /* the next raise overwrites the damaged slot, the good one stays */
        ck_assert_int_eq(kt_seq_advance(base, -1, key, serial, 4, false),
                         CKR_OK);
        ck_assert_int_eq(kt_seq_read(base, key, serial, &ctr, &why), CKR_OK);
        ck_assert_int_eq(ctr, 4);
    }
    /* an authentic slot whose counter is not a counter (above INT64_MAX,
     * negative as int64_t, -1 among them) beside a damaged one */
    uint64_t huge[] = {UINT64_MAX, (uint64_t)INT64_MAX + 5};
    for (size_t i = 0; i < 2; i++) {
        seq_put_slot(path, 0, key, serial, 2, false);
        seq_put_slot(path, 1, key, serial, huge[i], true);
        why = NULL;
        ck_assert_int_eq(kt_seq_read(base, key, serial, &ctr, &why),
                         CKR_DATA_INVALID);
        ck_assert_ptr_nonnull(why);
        ck_assert_ptr_nonnull(strstr(why, "not authentic"));
        /* beside an authentic one: that one is the counter */
        seq_put_slot(path, 0, key, serial, 2, true);
        ck_assert_int_eq(kt_seq_read(base, key, serial, &ctr, &why), CKR_OK);
        ck_assert_int_eq(ctr, 2);
    }
    /* both damaged */
    seq_put_slot(path, 0, key, serial, 5, false);
    seq_put_slot(path, 1, key, serial, 6, false);
    ck_assert_int_eq(kt_seq_read(base, key, serial, &ctr, &why),
                     CKR_DATA_INVALID);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

struct dummy_cache {
    struct kt_cache c;
    int *destroyed;
};

static void dummy_destroy(struct kt_cache *c)
{
    struct dummy_cache *d = (struct dummy_cache *)c;
    (*d->destroyed)++;
    free(d);
}

static struct kt_cache *dummy_new(int *destroyed)
{
    struct dummy_cache *d = calloc(1, sizeof(*d));
    atomic_init(&d->c.refs, 1);
    d->c.destroy = dummy_destroy;
    d->destroyed = destroyed;
    return &d->c;
}

/* The per-object family cache: installed once, shared by key snapshots,
 * alive while an operation holds it after the object is gone. */
START_TEST(test_object_cache)
{
    struct kt_token *t = kt_token_new_free(0);
    kt_attrs a;
    secret_key_attrs(&a);
    ck_assert_int_eq(kt_attrs_set_bool(&a, CKA_PRIVATE, false), CKR_OK);
    struct kt_object *o;
    ck_assert_int_eq(kt_object_new(&a, &o), CKR_OK);
    kt_attrs_clear(&a);
    o->handle = kt_handle_next();
    ck_assert_int_eq(kt_hmap_put(&t->objects, o->handle, o), CKR_OK);
    int destroyed = 0;
    struct kt_cache *c1 = dummy_new(&destroyed);
    kt_object_set_cache(t, o->handle, c1);
    kt_object_set_cache(t, o->handle, dummy_new(&destroyed));
    ck_assert_int_eq(destroyed, 1); /* the second one was not installed */
    struct kt_key k;
    ck_assert_int_eq(kt_key_snapshot(t, o->handle, 0, &k), CKR_OK);
    ck_assert_ptr_eq(k.cache, c1);
    ck_assert_int_eq(atomic_load(&c1->refs), 2);
    ck_assert_uint_eq(k.value_len, 16);
    kt_object_set_cache(t, 0x7777777, dummy_new(&destroyed));
    ck_assert_int_eq(destroyed, 2);
    kt_token_free(t); /* drops the object's reference */
    ck_assert_int_eq(destroyed, 2);
    kt_key_clear(&k);
    ck_assert_int_eq(destroyed, 3);
}
END_TEST

static Suite *units_suite(void)
{
    Suite *su = suite_create("units");
    TCase *tc = tcase_create("units");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_attrs_roundtrip_and_finders);
    tcase_add_test(tc, test_attrs_from_template);
    tcase_add_test(tc, test_hmap);
    tcase_add_test(tc, test_attrs_packed_copy);
    tcase_add_test(tc, test_handle_shards);
    tcase_add_test(tc, test_config_parser);
    tcase_add_test(tc, test_config_system_file);
    tcase_add_test(tc, test_schema_key_roles);
    tcase_add_test(tc, test_schema_table);
    tcase_add_test(tc, test_seal_and_mac);
    tcase_add_test(tc, test_pin_records);
    tcase_add_test(tc, test_seq_slots);
    tcase_add_test(tc, test_object_cache);
    tcase_add_test(tc, test_secure_slots);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(units_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
