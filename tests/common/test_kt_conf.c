/*
 * common/kt_conf.c on a small table of its own: list keys, families of
 * keys ("rec.*.n"), text and custom values, the two comment rules, lines
 * that may hold secrets, and the keys offered for an unknown one.  (The
 * module's and the library's tables are tested in tests/module/core/test_conf.c
 * and tests/lib/config/test_config.c.)
 */
#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt_conf.h"

struct rec {
    char name[8];
    unsigned n;
    bool on;
};

struct demo {
    char *name;
    char *items[4];
    size_t n_items;
    struct rec recs[2];
    size_t n_recs;
    unsigned a;
    bool secret_ok;
};

static enum kt_conf_rc add_item(void *field, const char *part, const char *v,
                                char *why, size_t why_len)
{
    struct demo *d = field;
    (void)part;
    if (d->n_items == 4) {
        snprintf(why, why_len, "more than 4 items");
        return KT_CONF_INVALID;
    }
    d->items[d->n_items] = strdup(v);
    if (d->items[d->n_items] == NULL)
        return KT_CONF_NOMEM;
    d->n_items++;
    return KT_CONF_OK;
}

static void *rec_record(void *dst, const char *part, char *why, size_t why_len)
{
    struct demo *d = dst;
    for (size_t i = 0; i < d->n_recs; i++)
        if (strcmp(d->recs[i].name, part) == 0)
            return &d->recs[i];
    if (d->n_recs == 2 || strlen(part) >= sizeof d->recs[0].name) {
        snprintf(why, why_len, "more than 2 records or a long name");
        return NULL;
    }
    snprintf(d->recs[d->n_recs].name, sizeof d->recs[0].name, "%s", part);
    return &d->recs[d->n_recs++];
}

/* Takes "ok:..." only; "oom" plays an allocation failure. */
static enum kt_conf_rc set_secret(void *field, const char *part, const char *v,
                                  char *why, size_t why_len)
{
    (void)part;
    if (strcmp(v, "oom") == 0)
        return KT_CONF_NOMEM;
    if (strncmp(v, "ok:", 3) != 0) {
        snprintf(why, why_len, "need ok:TEXT");
        return KT_CONF_INVALID;
    }
    *(bool *)field = true;
    return KT_CONF_OK;
}

#define F(f) offsetof(struct demo, f), sizeof(((struct demo *)0)->f)
#define R(f) offsetof(struct rec, f), sizeof(((struct rec *)0)->f)

enum { DEMO_KEYS = 6 };
static const struct kt_conf_key demo_keys[DEMO_KEYS] = {
    {"name", KT_CONF_STR, 1, 8, NULL, "dflt", F(name)},
    {"item", KT_CONF_CUSTOM, .offset = 0, .size = sizeof(struct demo),
     .repeat = KT_CONF_LIST, .set = add_item},
    {"rec.*.n", KT_CONF_UINT, 1, 9, NULL, NULL, R(n), .record = rec_record},
    {"rec.*.on", KT_CONF_BOOL, 0, 0, NULL, NULL, R(on), .record = rec_record},
    {"grp.a", KT_CONF_UINT, 0, 5, NULL, "0", F(a)},
    {"secret", KT_CONF_CUSTOM, 0, 0, NULL, NULL, F(secret_ok),
     .set = set_secret},
};

static const struct kt_conf_file demo_file = {
    .keys = demo_keys,
    .n = DEMO_KEYS,
    .comment_after_blank = true,
    .secret_lines = true,
};

static char err[KT_CONF_ERR_MAX];
static unsigned lines[DEMO_KEYS];

static void demo_free(struct demo *d)
{
    free(d->name);
    for (size_t i = 0; i < d->n_items; i++)
        free(d->items[i]);
    memset(d, 0, sizeof *d);
}

/* Reads text as file "t" into d (from the table's defaults). */
static enum kt_conf_rc demo_read(const struct kt_conf_file *file,
                                 const char *text, struct demo *d)
{
    memset(d, 0, sizeof *d);
    ck_assert(kt_conf_defaults(file->keys, file->n, d, err, sizeof err));
    FILE *fp = fmemopen((void *)text, strlen(text), "r");
    ck_assert_ptr_nonnull(fp);
    err[0] = '\0';
    enum kt_conf_rc rc = kt_conf_read(file, d, fp, "t", lines, err, sizeof err);
    fclose(fp);
    return rc;
}

#define ck_assert_has(hay, needle)                                             \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not in '%s'",         \
                  (needle), (hay))

/* A list key takes every line, in order, and its set function bounds
 * them; its first line is the one reported. */
START_TEST(list_key_accumulates)
{
    struct demo d;
    ck_assert_int_eq(demo_read(&demo_file,
                               "item = x\ngrp.a = 1\nitem = y\n"
                               "item = x\n",
                               &d),
                     KT_CONF_OK);
    ck_assert_uint_eq(d.n_items, 3);
    ck_assert_str_eq(d.items[0], "x");
    ck_assert_str_eq(d.items[1], "y");
    ck_assert_str_eq(d.items[2], "x");
    ck_assert_uint_eq(lines[1], 1);
    ck_assert_uint_eq(lines[4], 2);
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file,
                               "item = 1\nitem = 2\nitem = 3\n"
                               "item = 4\nitem = 5\n",
                               &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:5: item: more than 4 items");
    demo_free(&d);
    /* every other key refuses a second line, naming both */
    ck_assert_int_eq(demo_read(&demo_file, "grp.a = 1\n\ngrp.a = 1\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:3: grp.a: set again (first on line 1): "
                          "keep one of the two lines");
    demo_free(&d);
}
END_TEST

/* A family: each full name is a key of its own; the part names the record
 * the value goes to. */
START_TEST(family_keys)
{
    struct demo d;
    ck_assert_int_eq(demo_read(&demo_file,
                               "rec.x.n = 3\nrec.y.on = yes\nrec.x.on = no\n"
                               "rec.a.b.n = 9\n",
                               &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:4: rec.a.b.n: more than 2 records or a "
                          "long name");
    ck_assert_uint_eq(d.n_recs, 2);
    ck_assert_str_eq(d.recs[0].name, "x");
    ck_assert_uint_eq(d.recs[0].n, 3);
    ck_assert(!d.recs[0].on);
    ck_assert_str_eq(d.recs[1].name, "y");
    ck_assert(d.recs[1].on);
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "rec.a.b.n = 9\n", &d), KT_CONF_OK);
    ck_assert_str_eq(d.recs[0].name, "a.b");
    ck_assert_uint_eq(lines[2], 1);
    demo_free(&d);
    ck_assert_int_eq(
        demo_read(&demo_file, "rec.x.n = 3\nrec.y.n = 3\nrec.x.n = 3\n", &d),
        KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:3: rec.x.n: set again (first on line 1): "
                          "keep one of the two lines");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "rec.x.n = 10\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: rec.x.n: need a whole number from 1 "
                          "to 9, not '10'");
    demo_free(&d);
    /* the part is never empty */
    ck_assert_int_eq(demo_read(&demo_file, "rec..n = 3\n", &d),
                     KT_CONF_INVALID);
    ck_assert_has(err, "config t:1: unknown key 'rec..n'");
    demo_free(&d);
    /* a family key is no single key */
    ck_assert(!kt_conf_set(&demo_keys[2], &d, "3", "here", err, sizeof err));
    ck_assert_str_eq(err, "config here: rec.*.n: names a family of keys");
}
END_TEST

/* Text values: 1 to max bytes, a copy that replaces the default. */
START_TEST(text_values)
{
    struct demo d;
    ck_assert_int_eq(demo_read(&demo_file, "", &d), KT_CONF_OK);
    ck_assert_str_eq(d.name, "dflt");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "name = 12345678\n", &d),
                     KT_CONF_OK);
    ck_assert_str_eq(d.name, "12345678");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "name = 123456789\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: name: need at most 8 bytes");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "name =\n", &d), KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: name: empty value: write one after "
                          "'=' or remove the line");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "secret = \n", &d), KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: secret: empty value: write one after "
                          "'=' or remove the line");
    demo_free(&d);
}
END_TEST

/* A custom value is refused with its set function's reason, never quoted;
 * its allocation failure is KT_CONF_NOMEM. */
START_TEST(custom_values)
{
    struct demo d;
    ck_assert_int_eq(demo_read(&demo_file, "secret = ok:hunter2\n", &d),
                     KT_CONF_OK);
    ck_assert(d.secret_ok);
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "secret = hunter2\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: secret: need ok:TEXT");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "secret = oom\n", &d),
                     KT_CONF_NOMEM);
    ck_assert_str_eq(err, "config t:1: secret: out of memory");
    demo_free(&d);
}
END_TEST

/* "#" after a blank or at the start: a comment; inside a value: kept.
 * The module's rule (kt_conf_parse_file): "#" anywhere. */
START_TEST(comment_rules)
{
    struct demo d;
    ck_assert_int_eq(
        demo_read(&demo_file, "# c\nname = a#b\t# c\n  #name = x\n", &d),
        KT_CONF_OK);
    ck_assert_str_eq(d.name, "a#b");
    demo_free(&d);
    struct kt_conf_file anywhere = demo_file;
    anywhere.comment_after_blank = false;
    ck_assert_int_eq(demo_read(&anywhere, "name = a#b # c\n", &d), KT_CONF_OK);
    ck_assert_str_eq(d.name, "a");
    demo_free(&d);
    char path[] = "/tmp/kt-conf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *fp = fdopen(fd, "w");
    fputs("name = a#b\n", fp);
    fclose(fp);
    memset(&d, 0, sizeof d);
    ck_assert(kt_conf_parse_file(demo_keys, DEMO_KEYS, &d, path, NULL, err,
                                 sizeof err));
    unlink(path);
    ck_assert_str_eq(d.name, "a");
    demo_free(&d);
}
END_TEST

/* A line that is not a setting is quoted, unless lines may hold secrets. */
START_TEST(secret_lines)
{
    struct demo d;
    ck_assert_int_eq(demo_read(&demo_file, "\nsecret ok:hunter2\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:2: not a setting: write 'key = value'");
    demo_free(&d);
    struct kt_conf_file quoted = demo_file;
    quoted.secret_lines = false;
    ck_assert_int_eq(demo_read(&quoted, "secret ok:hunter2\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: 'secret ok:hunter2' is not a setting: "
                          "write 'key = value'");
    demo_free(&d);
}
END_TEST

/* An unknown key is answered with the keys of its group, or with every key
 * and each group once. */
START_TEST(unknown_keys_offer)
{
    struct demo d;
    ck_assert_int_eq(demo_read(&demo_file, "zzz = 1\n", &d), KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: unknown key 'zzz': remove the line or "
                          "use one of name, item, rec.*, grp.*, secret");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "grp.b = 1\n", &d), KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: unknown key 'grp.b': remove the line "
                          "or use one of grp.a");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "rec.x.q = 1\n", &d),
                     KT_CONF_INVALID);
    ck_assert_str_eq(err, "config t:1: unknown key 'rec.x.q': remove the "
                          "line or use one of rec.*.n, rec.*.on");
    demo_free(&d);
    ck_assert_int_eq(demo_read(&demo_file, "Name = x\n", &d), KT_CONF_INVALID);
    ck_assert_has(err, "unknown key 'Name'");
    demo_free(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kt_conf");
    TCase *tc = tcase_create("kt_conf");
    tcase_add_test(tc, list_key_accumulates);
    tcase_add_test(tc, family_keys);
    tcase_add_test(tc, text_values);
    tcase_add_test(tc, custom_values);
    tcase_add_test(tc, comment_rules);
    tcase_add_test(tc, secret_lines);
    tcase_add_test(tc, unknown_keys_offer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
