/*
 * worker-items: the keys and data of the worker tests, through the public
 * API on the configuration of $KEYTIER_LIB_CONF (so on whatever store the
 * test environment named).
 *
 *   worker-items make TENANT WORKLOAD DEP N FILE
 *       creates mailbox keys m000000.. under DEP, one item sealed under
 *       each (its name as AAD), the items into FILE
 *   worker-items check TENANT WORKLOAD OLD_DEP NEW_DEP N FILE
 *       every key exactly once under NEW_DEP (none left under OLD_DEP, no
 *       name twice, N in all), and every item of FILE opens under its key
 *       with its plaintext; prints "ok N" or the first problem (exit 1)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keytier.h"

static const keytier_request req = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE,
                                    "worker-items", NULL};

static int fail(const char *what, keytier_err e)
{
    fprintf(stderr, "worker-items: %s: %s (%s)\n", what, keytier_error_name(e),
            keytier_last_error_detail());
    return 1;
}

static int make(keytier_ctx *ctx, char **a, long n)
{
    keytier_key *dk = NULL;
    keytier_err e = keytier_dep_key_open(ctx, &req, a[0], a[2], &dk);
    if (e != KEYTIER_OK)
        return fail("DEP key", e);
    FILE *f = fopen(a[4], "wb");
    if (f == NULL)
        return perror(a[4]), 1;
    for (long i = 0; i < n && e == KEYTIER_OK; i++) {
        char name[32], pt[64], id[KEYTIER_ID_SIZE];
        uint8_t env[512];
        size_t len = 0;
        keytier_key *k = NULL;
        snprintf(name, sizeof name, "m%06ld", i);
        snprintf(pt, sizeof pt, "item of %s", name);
        e = keytier_key_create(dk, name, id);
        if (e == KEYTIER_OK)
            e = keytier_key_open(dk, id, &k);
        if (e == KEYTIER_OK)
            e = keytier_seal(k, name, strlen(name), pt, strlen(pt), env,
                             sizeof env, &len);
        keytier_key_close(k);
        uint32_t l = (uint32_t)len;
        if (e == KEYTIER_OK &&
            (fwrite(&l, sizeof l, 1, f) != 1 || fwrite(env, len, 1, f) != 1))
            e = KEYTIER_E_IO;
    }
    keytier_key_close(dk);
    if (fclose(f) != 0 && e == KEYTIER_OK)
        e = KEYTIER_E_IO;
    return e == KEYTIER_OK ? 0 : fail("make", e);
}

/* Every key under new_dep once, none under old_dep. */
static int check_keys(keytier_ctx *ctx, char **a, long n)
{
    keytier_key_info *list = NULL;
    size_t count = 0;
    keytier_err e = keytier_key_list(ctx, a[0], a[2], &list, &count);
    if (e != KEYTIER_OK)
        return fail("list old DEP", e);
    keytier_key_list_free(list);
    if (count != 0) {
        fprintf(stderr, "worker-items: %zu keys left under the old DEP\n",
                count);
        return 1;
    }
    e = keytier_key_list(ctx, a[0], a[3], &list, &count);
    if (e != KEYTIER_OK)
        return fail("list new DEP", e);
    char *seen = calloc((size_t)n, 1);
    int bad = seen == NULL || count != (size_t)n;
    for (size_t i = 0; i < count && !bad; i++) {
        long j = strtol(list[i].name + 1, NULL, 10);
        bad = j < 0 || j >= n || seen[j]++ != 0 ||
              strcmp(list[i].dep_id, a[3]) != 0;
    }
    if (bad)
        fprintf(stderr,
                "worker-items: %zu keys under the new DEP, want %ld, each "
                "name once\n",
                count, n);
    free(seen);
    keytier_key_list_free(list);
    return bad;
}

/* Every item opens under its key, found by name (under the new DEP). */
static int check_items(keytier_ctx *ctx, char **a, long n)
{
    FILE *f = fopen(a[5], "rb");
    if (f == NULL)
        return perror(a[5]), 1;
    keytier_err e = KEYTIER_OK;
    long i = 0;
    for (; i < n && e == KEYTIER_OK; i++) {
        char name[32], pt[64];
        uint8_t env[512], out[512];
        uint32_t l = 0;
        size_t len = 0;
        keytier_key *k = NULL;
        keytier_key_info info;
        snprintf(name, sizeof name, "m%06ld", i);
        snprintf(pt, sizeof pt, "item of %s", name);
        if (fread(&l, sizeof l, 1, f) != 1 || l > sizeof env ||
            fread(env, l, 1, f) != 1) {
            e = KEYTIER_E_IO;
            break;
        }
        e = keytier_key_open_name(ctx, &req, a[0], a[1], name, &k);
        if (e == KEYTIER_OK) {
            keytier_key_get_info(k, &info);
            if (strcmp(info.dep_id, a[3]) != 0)
                e = KEYTIER_E_WRONG_PARENT;
        }
        if (e == KEYTIER_OK)
            e = keytier_open(k, name, strlen(name), env, l, out, sizeof out,
                             &len);
        if (e == KEYTIER_OK && (len != strlen(pt) || memcmp(out, pt, len)))
            e = KEYTIER_E_AUTH;
        keytier_key_close(k);
    }
    fclose(f);
    if (e != KEYTIER_OK) {
        fprintf(stderr, "worker-items: item m%06ld: ", i - 1);
        return fail("open", e);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int make_mode = argc == 7 && !strcmp(argv[1], "make");
    int check_mode = argc == 8 && !strcmp(argv[1], "check");
    if (!make_mode && !check_mode) {
        fprintf(stderr, "usage: worker-items make T W DEP N FILE | check T W "
                        "OLD NEW N FILE\n");
        return 2;
    }
    long n = strtol(argv[make_mode ? 5 : 6], NULL, 10);
    keytier_ctx *ctx = NULL;
    keytier_err e = keytier_ctx_open(NULL, &ctx);
    if (e != KEYTIER_OK)
        return fail("context", e);
    int rc = make_mode ? make(ctx, argv + 2, n)
                       : check_keys(ctx, argv + 2, n) ||
                             check_items(ctx, argv + 2, n);
    keytier_ctx_close(ctx);
    if (rc == 0 && check_mode)
        printf("ok %ld\n", n);
    return rc;
}
