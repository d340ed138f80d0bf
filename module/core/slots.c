/* Slots: the token directory scanned for <serial>.db files, one slot per
 * token with an ID from its serial, and one free slot for C_InitToken. */
#include "kt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static CK_SLOT_ID slot_id_for(const char *serial)
{
    char hex[9];
    memcpy(hex, serial, 8);
    hex[8] = '\0';
    /* Serial-derived IDs are stable across processes; free slots count from
     * 0, below this range. */
    return (CK_SLOT_ID)((strtoul(hex, NULL, 16) & 0x0fffffffUL) | 0x10000000UL);
}

static bool slot_known(const char *path)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].token->initialized &&
            strcmp(kt_g.slots[i].token->path, path) == 0)
            return true;
    return false;
}

static bool slot_id_used(CK_SLOT_ID id)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].id == id)
            return true;
    return false;
}

static KT_NODISCARD CK_RV slot_append(struct kt_token *t)
{
    struct kt_slot *ns = realloc(kt_g.slots, (kt_g.n_slots + 1) * sizeof(*ns));
    if (ns == NULL)
        return CKR_HOST_MEMORY;
    kt_g.slots = ns;
    kt_g.slots[kt_g.n_slots].id = t->slot_id;
    kt_g.slots[kt_g.n_slots].token = t;
    kt_g.n_slots++;
    return CKR_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

CK_RV kt_slots_add_free(void)
{
    size_t free_slots = 0;
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (!kt_g.slots[i].token->initialized)
            free_slots++;
    if (free_slots > 0 || kt_g.n_slots >= kt_g.cfg.slots)
        return CKR_OK;
    while (slot_id_used(kt_g.next_free_id))
        kt_g.next_free_id++;
    struct kt_token *t = kt_token_new_free(kt_g.next_free_id++);
    if (t == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = slot_append(t);
    if (rv != CKR_OK)
        kt_token_free(t);
    return rv;
}

CK_RV kt_slots_scan(void)
{
    const char *dir = kt_g.cfg.token_dir;
    if (dir[0] == '\0')
        return CKR_OK; /* no token directory: no slots (kt_config_load) */
    /* A token being created has a file but no slot yet: scan later. */
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].token->busy)
            return CKR_OK;
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    CK_RV rv = CKR_OK;
    if (d == NULL) {
        if (errno != ENOENT)
            kt_log(KT_LOG_ERROR, "token_dir %s: %s", dir, strerror(errno));
        return kt_slots_add_free();
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != KT_SERIAL_LEN + 3 || strcmp(e->d_name + l - 3, ".db") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (nn == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), name_cmp);
    /* Slots beyond the configured maximum keep one place for the free
     * slot. */
    for (size_t i = 0; i < n && rv == CKR_OK; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (slot_known(path))
            continue;
        size_t inited = 0;
        for (size_t j = 0; j < kt_g.n_slots; j++)
            if (kt_g.slots[j].token->initialized)
                inited++;
        if (inited + 1 >= kt_g.cfg.slots) {
            kt_log(KT_LOG_WARNING, "token %s not loaded: slots = %lu reached",
                   path, (unsigned long)kt_g.cfg.slots);
            continue;
        }
        struct kt_token *t = NULL;
        if (kt_token_open(path, 0, &t) != CKR_OK)
            continue; /* logged; the file is left untouched */
        CK_SLOT_ID id = slot_id_for(t->serial);
        while (slot_id_used(id))
            id++;
        t->slot_id = id;
        rv = slot_append(t);
        if (rv != CKR_OK)
            kt_token_free(t);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rv == CKR_OK)
        rv = kt_slots_add_free();
    return rv;
}

void kt_slots_free(void)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        kt_token_free(kt_g.slots[i].token);
    free(kt_g.slots);
    kt_g.slots = NULL;
    kt_g.n_slots = 0;
}

struct kt_token *kt_slot_token(CK_SLOT_ID id)
{
    for (size_t i = 0; i < kt_g.n_slots; i++)
        if (kt_g.slots[i].id == id)
            return kt_g.slots[i].token;
    return NULL;
}
