/*
 * The key cache (see cache.h).  A striped read-write lock guards the
 * table: a reader takes the stripe of its thread shared, a writer takes
 * every stripe exclusive, in order.  Hits on two cores then touch
 * different cache lines (the stripe's lock and its hit counter) instead of
 * bouncing one lock word between them.  Key bytes live in locked slabs,
 * never in the entries.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

typedef struct kt_slab {
    struct kt_slab *next;
    unsigned char *page;
} kt_slab;

typedef struct kt_centry {
    char *id, *org_id, *dep_id, *parent_id, *roots[KT_CACHE_ROOTS];
    uint64_t hash, gen;
    unsigned char *key; /* a slot of a slab */
    size_t len;
    void *aux; /* not secret: ids and the like */
    size_t aux_len;
    uint64_t expires, next_refresh;
    unsigned failures; /* refresh attempts failed in a row (backoff) */
    CK_RV last_rv;     /* of the last failed attempt */
    bool alerted, no_refresh;
    struct kt_centry *next;
} kt_centry;

/* What the maintenance pass hands to the refresh callback, unlocked. */
typedef struct kt_refresh_job {
    char *id, *dep_id;
    uint64_t gen;
} kt_refresh_job;

#define KT_CACHE_STRIPES 16

/* One stripe of the table lock, with the counters its readers bump, on
 * cache lines of its own. */
typedef struct kt_cache_stripe {
    _Alignas(64) pthread_rwlock_t lock;
    atomic_uint_fast64_t hits, misses;
} kt_cache_stripe;

struct kt_cache {
    kt_cache_stripe stripe[KT_CACHE_STRIPES];
    kt_cache_config cfg;
    kt_centry **buckets;
    size_t nbuckets, count;
    uint64_t next_gen;
    atomic_uint_fast64_t epoch; /* moves on at every invalidation */
    /* slabs of locked pages, cut into KT_CACHE_KEY_MAX slots */
    kt_slab *slabs;
    unsigned char *free_slots; /* linked through the slots themselves */
    size_t page_size;
    /* maintenance thread */
    pthread_mutex_t tlock;
    pthread_cond_t tcond;
    pthread_t thread;
    bool thread_started, stopping, poke;
    atomic_bool sync_now; /* sync at the next turn (kt_cache_sync_soon) */
    uint64_t alert_next;  /* no alert is due before (cache clock) */
    pthread_mutex_t maintain_lock; /* one maintenance pass at a time */
    /* counters */
    atomic_uint_fast64_t refreshes, refresh_failures, fallbacks, alerts,
        evictions, invalidations, locked_pages, unlocked_pages;
};

/* The stripe a thread reads under: threads are dealt stripes in turn. */
static kt_cache_stripe *kt_cache_my_stripe(kt_cache *c)
{
    static atomic_uint next;
    static _Thread_local unsigned mine; /* 0: not dealt yet */
    if (mine == 0)
        mine = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) %
                   KT_CACHE_STRIPES +
               1;
    return &c->stripe[mine - 1];
}

static kt_cache_stripe *kt_cache_rdlock(kt_cache *c)
{
    kt_cache_stripe *st = kt_cache_my_stripe(c);
    pthread_rwlock_rdlock(&st->lock);
    return st;
}

/* Every stripe, in order: the table is the writer's alone. */
static void kt_cache_wrlock(kt_cache *c)
{
    for (unsigned i = 0; i < KT_CACHE_STRIPES; i++)
        pthread_rwlock_wrlock(&c->stripe[i].lock);
}

static void kt_cache_wrunlock(kt_cache *c)
{
    for (unsigned i = KT_CACHE_STRIPES; i > 0; i--)
        pthread_rwlock_unlock(&c->stripe[i - 1].lock);
}

static uint64_t kt_cache_now(kt_cache *c)
{
    struct timespec ts;

    if (c->cfg.clock)
        return c->cfg.clock(c->cfg.clock_arg);
    /* Every hit reads the clock: the coarse one (a few ms of resolution,
     * nothing next to a TTL) costs a fraction of the precise one. */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Real monotonic milliseconds (the sync interval follows real time even
 * when a test injects the cache clock). */
static uint64_t kt_cache_real_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Ids are ours (DEP ids, key ids), not attacker-chosen: a multiply-xorshift
 * mix over 8-byte words, which every hit pays (byte-wise FNV was half the
 * cost of a lookup). */
static uint64_t kt_hash_str(const char *s)
{
    size_t n = strlen(s);
    uint64_t h = 1469598103934665603ull ^ n, w;

    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static unsigned char *kt_slot_get(kt_cache *c)
{
    unsigned char *slot;

    if (!c->free_slots) {
        kt_slab *slab = calloc(1, sizeof *slab);
        void *page;
        if (!slab)
            return NULL;
        page = mmap(NULL, c->page_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) {
            free(slab);
            return NULL;
        }
        /* Locked where RLIMIT_MEMLOCK allows; without it we still work.
         * The raw system call: sanitizer runtimes turn mlock() into a
         * no-op that reports success. */
        if (syscall(SYS_mlock, page, c->page_size) == 0)
            atomic_fetch_add(&c->locked_pages, 1);
        else
            atomic_fetch_add(&c->unlocked_pages, 1);
        madvise(page, c->page_size, MADV_DONTDUMP);
        slab->page = page;
        slab->next = c->slabs;
        c->slabs = slab;
        for (size_t off = 0; off + KT_CACHE_KEY_MAX <= c->page_size;
             off += KT_CACHE_KEY_MAX) {
            unsigned char *s = slab->page + off;
            memcpy(s, &c->free_slots, sizeof c->free_slots);
            c->free_slots = s;
        }
    }
    slot = c->free_slots;
    memcpy(&c->free_slots, slot, sizeof c->free_slots);
    kt_wipe(slot, KT_CACHE_KEY_MAX);
    return slot;
}

static void kt_slot_put(kt_cache *c, unsigned char *slot)
{
    kt_wipe(slot, KT_CACHE_KEY_MAX);
    memcpy(slot, &c->free_slots, sizeof c->free_slots);
    c->free_slots = slot;
}

static void kt_centry_free(kt_cache *c, kt_centry *e)
{
    if (e->key)
        kt_slot_put(c, e->key);
    free(e->id);
    free(e->org_id);
    free(e->dep_id);
    free(e->parent_id);
    free(e->aux);
    for (int i = 0; i < KT_CACHE_ROOTS; i++)
        free(e->roots[i]);
    free(e);
}

static kt_centry **kt_cache_slot_of(kt_cache *c, const char *id, uint64_t h)
{
    kt_centry **pp = &c->buckets[h & (c->nbuckets - 1)];

    while (*pp && ((*pp)->hash != h || strcmp((*pp)->id, id) != 0))
        pp = &(*pp)->next;
    return pp;
}

/* Unlinks and wipes *pp.  Under the write lock. */
static void kt_cache_remove(kt_cache *c, kt_centry **pp)
{
    kt_centry *e = *pp;

    *pp = e->next;
    c->count--;
    kt_centry_free(c, e);
}

static void *kt_cache_thread(void *arg);

keytier_err kt_cache_new(const kt_cache_config *cfg, kt_cache **out)
{
    kt_cache *c;
    size_t nb = 64;

    *out = NULL;
    if (!cfg || cfg->ttl_ms == 0)
        return kt_err(KEYTIER_E_CONFIG, "cache ttl must be positive");
    /* A refreshed entry is due again ttl - refresh_ahead later: past half
     * the TTL refreshing costs more unwraps than expiring, and at the TTL
     * it never pauses. */
    if (cfg->refresh_ahead_ms > cfg->ttl_ms / 2)
        return kt_err(KEYTIER_E_CONFIG,
                      "cache refresh_ahead (%llu ms) exceeds half the ttl "
                      "(%llu ms)",
                      (unsigned long long)cfg->refresh_ahead_ms,
                      (unsigned long long)cfg->ttl_ms);
    if (cfg->refresh_ahead_ms && (!cfg->refresh || cfg->retry_ms == 0))
        return kt_err(KEYTIER_E_CONFIG,
                      "cache refresh needs a callback and a retry interval");
    if (cfg->refresh_ahead_ms && cfg->alert_after_ms >= cfg->refresh_ahead_ms)
        return kt_err(KEYTIER_E_CONFIG,
                      "cache alert window (%llu ms) must be shorter than "
                      "refresh_ahead (%llu ms) to fire before expiry",
                      (unsigned long long)cfg->alert_after_ms,
                      (unsigned long long)cfg->refresh_ahead_ms);
    if (cfg->max_entries == 0)
        return kt_err(KEYTIER_E_CONFIG, "cache max_entries must be positive");
    if (cfg->sync_ms && (!cfg->sync || !cfg->background))
        return kt_err(KEYTIER_E_CONFIG,
                      "cache sync needs a callback and the background thread");
    /* aligned: each stripe on its own cache lines */
    if (posix_memalign((void **)&c, 64, sizeof *c) != 0)
        c = NULL;
    else
        memset(c, 0, sizeof *c);
    if (!c)
        return kt_err(KEYTIER_E_NOMEM, "cache");
    while (nb < cfg->max_entries && nb < (1u << 20))
        nb <<= 1;
    c->buckets = calloc(nb, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return kt_err(KEYTIER_E_NOMEM, "cache");
    }
    c->nbuckets = nb;
    c->cfg = *cfg;
    c->page_size = (size_t)sysconf(_SC_PAGESIZE);
    for (unsigned i = 0; i < KT_CACHE_STRIPES; i++)
        pthread_rwlock_init(&c->stripe[i].lock, NULL);
    pthread_mutex_init(&c->tlock, NULL);
    pthread_mutex_init(&c->maintain_lock, NULL);
    {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->tcond, &attr);
        pthread_condattr_destroy(&attr);
    }
    if (cfg->background) {
        if (pthread_create(&c->thread, NULL, kt_cache_thread, c) != 0) {
            kt_cache_free(c);
            return kt_err(KEYTIER_E_INTERNAL, "cannot start cache thread");
        }
        c->thread_started = true;
    }
    *out = c;
    return KEYTIER_OK;
}

void kt_cache_free(kt_cache *c)
{
    if (!c)
        return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->tlock);
        c->stopping = true;
        pthread_cond_signal(&c->tcond);
        pthread_mutex_unlock(&c->tlock);
        pthread_join(c->thread, NULL);
    }
    kt_cache_invalidate_all(c);
    while (c->slabs) {
        kt_slab *s = c->slabs;
        c->slabs = s->next;
        kt_wipe(s->page, c->page_size);
        syscall(SYS_munlock, s->page, c->page_size);
        munmap(s->page, c->page_size);
        free(s);
    }
    pthread_cond_destroy(&c->tcond);
    pthread_mutex_destroy(&c->tlock);
    pthread_mutex_destroy(&c->maintain_lock);
    for (unsigned i = 0; i < KT_CACHE_STRIPES; i++)
        pthread_rwlock_destroy(&c->stripe[i].lock);
    free(c->buckets);
    free(c);
}

static char *kt_strdup0(const char *s, bool *ok)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

/* Evicts the entry closest to expiry to make room.  Under the write lock. */
static void kt_cache_evict_one(kt_cache *c)
{
    kt_centry **victim = NULL;

    for (size_t b = 0; b < c->nbuckets; b++)
        for (kt_centry **pp = &c->buckets[b]; *pp; pp = &(*pp)->next)
            if (!victim || (*pp)->expires < (*victim)->expires)
                victim = pp;
    if (victim) {
        kt_cache_remove(c, victim);
        atomic_fetch_add(&c->evictions, 1);
    }
}

static bool kt_cache_refreshes(const kt_cache *c, const kt_centry *e)
{
    return c->cfg.refresh_ahead_ms && !e->no_refresh;
}

/* The alert's clock starts when the entry's refresh becomes due (not at
 * its first failure, which a hung vault or a busy thread may put after the
 * expiry): it fires alert_after_ms later unless a refresh succeeded. */
static uint64_t kt_cache_alert_due(const kt_cache *c, const kt_centry *e)
{
    return e->expires - c->cfg.refresh_ahead_ms + c->cfg.alert_after_ms;
}

static void kt_cache_poke(kt_cache *c)
{
    if (!c->thread_started)
        return;
    pthread_mutex_lock(&c->tlock);
    c->poke = true;
    pthread_cond_signal(&c->tcond);
    pthread_mutex_unlock(&c->tlock);
}

void kt_cache_sync_soon(kt_cache *c)
{
    atomic_store(&c->sync_now, true);
    kt_cache_poke(c);
}

keytier_err kt_cache_put(kt_cache *c, const char *id, const kt_cache_tags *tags,
                         const unsigned char *key, size_t len)
{
    kt_centry *e, **pp;
    uint64_t h, now;
    bool ok = true;

    if (!c || !id || !tags || !key || len == 0 || len > KT_CACHE_KEY_MAX ||
        tags->aux_len > KT_CACHE_AUX_MAX || (tags->aux_len && !tags->aux))
        return kt_err(KEYTIER_E_ARGS, "cache entry %s", id ? id : "(null)");
    e = calloc(1, sizeof *e);
    if (!e)
        return kt_err(KEYTIER_E_NOMEM, "cache entry %s", id);
    e->id = kt_strdup0(id, &ok);
    e->org_id = kt_strdup0(tags->org_id, &ok);
    e->dep_id = kt_strdup0(tags->dep_id, &ok);
    e->parent_id = kt_strdup0(tags->parent_id, &ok);
    e->no_refresh = tags->no_refresh;
    if (tags->aux_len) {
        e->aux = malloc(tags->aux_len);
        if (e->aux) {
            memcpy(e->aux, tags->aux, tags->aux_len);
            e->aux_len = tags->aux_len;
        } else {
            ok = false;
        }
    }
    for (int i = 0; i < KT_CACHE_ROOTS; i++)
        e->roots[i] = kt_strdup0(tags->roots[i], &ok);
    e->hash = h = kt_hash_str(id);
    kt_cache_wrlock(c);
    if (tags->epoch && *tags->epoch != atomic_load(&c->epoch)) {
        /* Invalidated since the caller read what it is caching. */
        kt_cache_wrunlock(c);
        kt_centry_free(c, e);
        return KEYTIER_OK;
    }
    if (ok)
        e->key = kt_slot_get(c);
    if (!ok || !e->key) {
        kt_cache_wrunlock(c);
        kt_centry_free(c, e);
        return kt_err(KEYTIER_E_NOMEM, "cache entry %s", id);
    }
    memcpy(e->key, key, len);
    e->len = len;
    now = kt_cache_now(c);
    e->expires = now + c->cfg.ttl_ms;
    e->gen = ++c->next_gen;
    e->last_rv = KT_CKR_NOT_STARTED;
    if (kt_cache_refreshes(c, e) && kt_cache_alert_due(c, e) < c->alert_next)
        c->alert_next = kt_cache_alert_due(c, e);
    pp = kt_cache_slot_of(c, id, h);
    if (*pp)
        kt_cache_remove(c, pp);
    else if (c->count >= c->cfg.max_entries)
        kt_cache_evict_one(c);
    pp = &c->buckets[h & (c->nbuckets - 1)];
    e->next = *pp;
    *pp = e;
    c->count++;
    kt_cache_wrunlock(c);
    kt_cache_poke(c);
    return KEYTIER_OK;
}

bool kt_cache_lookup(kt_cache *c, const char *id, unsigned char *out,
                     size_t cap, size_t *len, void *aux, size_t aux_len,
                     kt_cache_accept_fn accept, const void *accept_arg,
                     bool count_miss)
{
    uint64_t h = kt_hash_str(id), now = kt_cache_now(c);
    kt_centry *e;
    bool hit = false, expired = false;

    kt_cache_stripe *st = kt_cache_rdlock(c);
    e = *kt_cache_slot_of(c, id, h);
    if (e && now < e->expires && e->len <= cap &&
        (!aux || e->aux_len == aux_len) &&
        (!accept || accept(e->aux, accept_arg))) {
        memcpy(out, e->key, e->len);
        *len = e->len;
        if (aux)
            memcpy(aux, e->aux, aux_len);
        hit = true;
    } else if (e && now >= e->expires) {
        expired = true;
    }
    pthread_rwlock_unlock(&st->lock);
    if (hit) {
        atomic_fetch_add_explicit(&st->hits, 1, memory_order_relaxed);
        return true;
    }
    if (count_miss)
        atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
    if (expired) {
        /* Expired keys do not wait for the maintenance pass to be wiped. */
        kt_cache_wrlock(c);
        kt_centry **pp = kt_cache_slot_of(c, id, h);
        if (*pp && kt_cache_now(c) >= (*pp)->expires) {
            kt_cache_remove(c, pp);
            atomic_fetch_add(&c->evictions, 1);
        }
        kt_cache_wrunlock(c);
    }
    return false;
}

bool kt_cache_get(kt_cache *c, const char *id, unsigned char *out, size_t cap,
                  size_t *len)
{
    return kt_cache_lookup(c, id, out, cap, len, NULL, 0, NULL, NULL, true);
}

uint64_t kt_cache_epoch(kt_cache *c)
{
    return atomic_load(&c->epoch);
}

typedef bool (*kt_match_fn)(const kt_centry *e, const void *what);

/* A set of ids (DEP ids or key ids) an invalidation goes on with. */
typedef struct kt_idset {
    char **v;
    size_t n, cap;
    bool failed; /* out of memory: the caller drops everything instead */
} kt_idset;

static bool kt_idset_has(const kt_idset *s, const char *id)
{
    for (size_t i = 0; id && i < s->n; i++)
        if (strcmp(s->v[i], id) == 0)
            return true;
    return false;
}

static void kt_idset_add(kt_idset *s, const char *id)
{
    char *d;

    if (!id || kt_idset_has(s, id))
        return;
    d = strdup(id);
    if (!d ||
        !kt_array_reserve((void **)&s->v, &s->cap, s->n, sizeof *s->v, 8)) {
        free(d);
        s->failed = true;
        return;
    }
    s->v[s->n++] = d;
}

static void kt_idset_free(kt_idset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* Removes every entry match() takes; adds each one's dep_id (by_dep) or
 * id to *collect when not NULL.  Under the write lock. */
static size_t kt_cache_sweep(kt_cache *c, kt_match_fn match, const void *what,
                             kt_idset *collect, bool by_dep)
{
    size_t n = 0;

    for (size_t b = 0; b < c->nbuckets; b++) {
        kt_centry **pp = &c->buckets[b];
        while (*pp) {
            if (match(*pp, what)) {
                if (collect)
                    kt_idset_add(collect, by_dep ? (*pp)->dep_id : (*pp)->id);
                kt_cache_remove(c, pp);
                n++;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    return n;
}

static size_t kt_cache_invalidate(kt_cache *c, kt_match_fn match,
                                  const void *what)
{
    size_t n;

    kt_cache_wrlock(c);
    atomic_fetch_add(&c->epoch, 1);
    n = kt_cache_sweep(c, match, what, NULL, false);
    kt_cache_wrunlock(c);
    atomic_fetch_add(&c->invalidations, n);
    return n;
}

static bool kt_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static bool kt_match_id(const kt_centry *e, const void *w)
{
    return kt_eq(e->id, w);
}

static bool kt_match_dep(const kt_centry *e, const void *w)
{
    return kt_eq(e->dep_id, w);
}

static bool kt_match_tenant(const kt_centry *e, const void *w)
{
    return kt_eq(e->org_id, w);
}

static bool kt_match_root(const kt_centry *e, const void *w)
{
    for (int i = 0; i < KT_CACHE_ROOTS; i++)
        if (kt_eq(e->roots[i], w))
            return true;
    return false;
}

static bool kt_match_all(const kt_centry *e, const void *w)
{
    (void)e;
    (void)w;
    return true;
}

size_t kt_cache_invalidate_id(kt_cache *c, const char *id)
{
    return id ? kt_cache_invalidate(c, kt_match_id, id) : 0;
}

size_t kt_cache_invalidate_dep(kt_cache *c, const char *dep_id)
{
    return dep_id ? kt_cache_invalidate(c, kt_match_dep, dep_id) : 0;
}

size_t kt_cache_invalidate_tenant(kt_cache *c, const char *org_id)
{
    return org_id ? kt_cache_invalidate(c, kt_match_tenant, org_id) : 0;
}

/* `what` is a kt_idset. */
static bool kt_match_dep_in(const kt_centry *e, const void *w)
{
    return kt_idset_has((const kt_idset *)w, e->dep_id);
}

static bool kt_match_parent_in(const kt_centry *e, const void *w)
{
    return kt_idset_has((const kt_idset *)w, e->parent_id);
}

size_t kt_cache_invalidate_root(kt_cache *c, const char *root_uri)
{
    kt_idset deps = {0};
    size_t n;

    if (!root_uri)
        return 0;
    kt_cache_wrlock(c);
    atomic_fetch_add(&c->epoch, 1);
    /* The entries tagged with the root, then every key of their DEPs
     * (tier keys carry their DEP, not the roots). */
    n = kt_cache_sweep(c, kt_match_root, root_uri, &deps, true);
    if (deps.failed)
        n += kt_cache_sweep(c, kt_match_all, "", NULL, false);
    else if (deps.n)
        n += kt_cache_sweep(c, kt_match_dep_in, &deps, NULL, false);
    kt_cache_wrunlock(c);
    kt_idset_free(&deps);
    atomic_fetch_add(&c->invalidations, n);
    return n;
}

size_t kt_cache_invalidate_tree(kt_cache *c, const char *id)
{
    kt_idset ids = {0};
    size_t n, m, done = 0;

    if (!id)
        return 0;
    kt_idset_add(&ids, id);
    kt_cache_wrlock(c);
    atomic_fetch_add(&c->epoch, 1);
    n = kt_cache_sweep(c, kt_match_id, id, NULL, false);
    /* Level by level: the children of what was dropped, until none. */
    while (!ids.failed && done < ids.n) {
        kt_idset level = {0};
        for (size_t i = done; i < ids.n; i++)
            kt_idset_add(&level, ids.v[i]);
        done = ids.n;
        if (level.failed) {
            ids.failed = true;
            kt_idset_free(&level);
            break;
        }
        m = kt_cache_sweep(c, kt_match_parent_in, &level, &ids, false);
        n += m;
        kt_idset_free(&level);
    }
    if (ids.failed)
        n += kt_cache_sweep(c, kt_match_all, "", NULL, false);
    kt_cache_wrunlock(c);
    kt_idset_free(&ids);
    atomic_fetch_add(&c->invalidations, n);
    return n;
}

size_t kt_cache_invalidate_all(kt_cache *c)
{
    return kt_cache_invalidate(c, kt_match_all, "");
}

/* The wait before the next attempt of an entry whose refresh failed:
 * retry_ms, doubled at each failure in a row, at most an eighth of the
 * refresh window (so that several attempts still fit before expiry) but
 * never less than retry_ms.  A failing vault is never asked in a loop. */
static uint64_t kt_cache_backoff(const kt_cache *c, unsigned failures)
{
    uint64_t cap = c->cfg.refresh_ahead_ms / 8, wait = c->cfg.retry_ms;

    if (cap < c->cfg.retry_ms)
        cap = c->cfg.retry_ms;
    for (unsigned i = 1; i < failures && wait < cap; i++)
        wait *= 2;
    return wait < cap ? wait : cap;
}

/* The refresh of one entry has returned: apply it (the alert, if due, is
 * the caller's next step: kt_cache_alerts). */
static void kt_cache_refresh_done(kt_cache *c, const kt_refresh_job *job,
                                  CK_RV rv, const unsigned char *key,
                                  size_t len)
{
    kt_centry **pp, *e;
    uint64_t now;

    kt_cache_wrlock(c);
    now = kt_cache_now(c);
    pp = kt_cache_slot_of(c, job->id, kt_hash_str(job->id));
    e = *pp;
    /* Invalidated or replaced while we were asking the token: drop it. */
    if (!e || e->gen != job->gen) {
        kt_cache_wrunlock(c);
        return;
    }
    if (rv == CKR_OK && len > 0 && len <= KT_CACHE_KEY_MAX) {
        kt_wipe(e->key, KT_CACHE_KEY_MAX);
        memcpy(e->key, key, len);
        e->len = len;
        e->expires = now + c->cfg.ttl_ms;
        e->failures = 0;
        e->next_refresh = 0;
        e->alerted = false;
        if (kt_cache_alert_due(c, e) < c->alert_next)
            c->alert_next = kt_cache_alert_due(c, e);
        atomic_fetch_add(&c->refreshes, 1);
    } else if (kt_ckr_classify(rv) == KT_CKR_CLASS_DENIED) {
        /* The customer revoked the key: nothing may be served from it,
         * nor from the tier keys under its DEP. */
        size_t n = 1;
        char *gone = e->dep_id ? strdup(e->dep_id) : NULL;
        atomic_fetch_add(&c->epoch, 1);
        kt_cache_remove(c, pp);
        if (gone)
            n += kt_cache_sweep(c, kt_match_dep, gone, NULL, false);
        free(gone);
        atomic_fetch_add(&c->refresh_failures, 1);
        atomic_fetch_add(&c->invalidations, n);
    } else {
        atomic_fetch_add(&c->refresh_failures, 1);
        e->last_rv = rv == CKR_OK ? CKR_GENERAL_ERROR : rv;
        e->failures++;
        e->next_refresh = now + kt_cache_backoff(c, e->failures);
    }
    kt_cache_wrunlock(c);
}

/* One alert to fire, copied out of the table. */
typedef struct kt_alert_job {
    char *id, *org_id, *dep_id;
    kt_cache_alert alert;
} kt_alert_job;

/* Marks every entry whose alert is due and copies it into *out.  Under
 * the write lock.  Moves alert_next to the next due time. */
static size_t kt_cache_alerts_collect(kt_cache *c, uint64_t now,
                                      kt_alert_job **out)
{
    size_t n = 0, cap = 0;
    uint64_t next = UINT64_MAX;

    for (size_t b = 0; b < c->nbuckets; b++)
        for (kt_centry *e = c->buckets[b]; e; e = e->next) {
            if (!kt_cache_refreshes(c, e) || e->alerted || now >= e->expires)
                continue;
            uint64_t due = kt_cache_alert_due(c, e);
            if (now < due) {
                next = due < next ? due : next;
                continue;
            }
            if (!kt_array_reserve((void **)out, &cap, n, sizeof **out, 4)) {
                next = now; /* try again at the next pass */
                continue;
            }
            kt_alert_job *j = &(*out)[n++];
            e->alerted = true;
            j->id = strdup(e->id);
            j->org_id = e->org_id ? strdup(e->org_id) : NULL;
            j->dep_id = e->dep_id ? strdup(e->dep_id) : NULL;
            j->alert.failing_ms = now - (e->expires - c->cfg.refresh_ahead_ms);
            j->alert.expires_in_ms = e->expires - now;
            j->alert.last_error = e->last_rv;
        }
    c->alert_next = next;
    return n;
}

/* Fires the alerts that are due: an audit record and the callback. */
static void kt_cache_alerts(kt_cache *c)
{
    kt_alert_job *jobs = NULL;
    size_t n;

    if (!c->cfg.refresh_ahead_ms)
        return;
    kt_cache_wrlock(c);
    uint64_t now = kt_cache_now(c);
    n = now >= c->alert_next ? kt_cache_alerts_collect(c, now, &jobs) : 0;
    kt_cache_wrunlock(c);
    for (size_t i = 0; i < n; i++) {
        kt_alert_job *j = &jobs[i];
        if (!j->id) { /* out of memory: counted, nothing to name */
            atomic_fetch_add(&c->alerts, 1);
            free(j->org_id);
            free(j->dep_id);
            continue;
        }
        atomic_fetch_add(&c->alerts, 1);
        j->alert.id = j->id;
        j->alert.org_id = j->org_id;
        j->alert.dep_id = j->dep_id;
        if (c->cfg.audit &&
            kt_audit_cache_alert(c->cfg.audit, j->org_id, j->dep_id, j->id,
                                 j->alert.failing_ms,
                                 j->alert.expires_in_ms) != KEYTIER_OK) {
            /* The callback still fires: the alert must not be lost. */
        }
        if (c->cfg.alert)
            c->cfg.alert(c->cfg.alert_arg, &j->alert);
        free(j->id);
        free(j->org_id);
        free(j->dep_id);
    }
    free(jobs);
}

void kt_cache_maintain(kt_cache *c)
{
    kt_refresh_job *jobs = NULL;
    size_t njobs = 0, cap = 0;
    uint64_t now;

    pthread_mutex_lock(&c->maintain_lock);
    kt_cache_wrlock(c);
    now = kt_cache_now(c);
    for (size_t b = 0; b < c->nbuckets; b++) {
        kt_centry **pp = &c->buckets[b];
        while (*pp) {
            kt_centry *e = *pp;
            if (now >= e->expires) {
                kt_cache_remove(c, pp);
                atomic_fetch_add(&c->evictions, 1);
                continue;
            }
            pp = &e->next;
            if (!kt_cache_refreshes(c, e) ||
                now < e->expires - c->cfg.refresh_ahead_ms ||
                now < e->next_refresh)
                continue;
            if (!kt_array_reserve((void **)&jobs, &cap, njobs, sizeof *jobs, 8))
                continue;
            jobs[njobs].id = strdup(e->id);
            jobs[njobs].dep_id = e->dep_id ? strdup(e->dep_id) : NULL;
            jobs[njobs].gen = e->gen;
            if (jobs[njobs].id)
                njobs++;
            else
                free(jobs[njobs].dep_id);
        }
    }
    kt_cache_wrunlock(c);
    kt_cache_alerts(c);
    /* Token calls happen unlocked: hits go on while a vault is slow.
     * Alerts are looked at after each one: a refresh waits at most its
     * deadlines, so a long pass delays no alert by more than that. */
    for (size_t i = 0; i < njobs; i++) {
        unsigned char key[KT_CACHE_KEY_MAX];
        size_t len = 0;
        CK_RV rv = c->cfg.refresh(c->cfg.refresh_arg, jobs[i].id,
                                  jobs[i].dep_id, key, &len);
        kt_cache_refresh_done(c, &jobs[i], rv, key, len);
        kt_wipe(key, sizeof key);
        kt_cache_alerts(c);
        free(jobs[i].id);
        free(jobs[i].dep_id);
    }
    free(jobs);
    pthread_mutex_unlock(&c->maintain_lock);
}

/* When the next maintenance pass is due (cache clock), or UINT64_MAX. */
static uint64_t kt_cache_next_due(kt_cache *c)
{
    uint64_t due = UINT64_MAX;

    kt_cache_stripe *st = kt_cache_rdlock(c);
    for (size_t b = 0; b < c->nbuckets; b++)
        for (kt_centry *e = c->buckets[b]; e; e = e->next) {
            uint64_t t = e->expires;
            if (kt_cache_refreshes(c, e)) {
                uint64_t r = e->expires - c->cfg.refresh_ahead_ms;
                if (e->next_refresh > r)
                    r = e->next_refresh;
                if (r < t)
                    t = r;
                if (!e->alerted && kt_cache_alert_due(c, e) < t)
                    t = kt_cache_alert_due(c, e);
            }
            if (t < due)
                due = t;
        }
    pthread_rwlock_unlock(&st->lock);
    return due;
}

static void *kt_cache_thread(void *arg)
{
    kt_cache *c = arg;
    uint64_t next_sync = 0;

    pthread_mutex_lock(&c->tlock);
    while (!c->stopping) {
        uint64_t due, now, wait_ms;
        struct timespec ts;

        pthread_mutex_unlock(&c->tlock);
        if (c->cfg.sync_ms && (atomic_exchange(&c->sync_now, false) ||
                               kt_cache_real_now() >= next_sync)) {
            c->cfg.sync(c->cfg.sync_arg);
            next_sync = kt_cache_real_now() + c->cfg.sync_ms;
        }
        kt_cache_maintain(c);
        due = kt_cache_next_due(c);
        now = kt_cache_now(c);
        pthread_mutex_lock(&c->tlock);
        if (c->stopping)
            break;
        if (c->poke) {
            c->poke = false;
            continue;
        }
        /* An injected clock may not follow real time: re-check each second. */
        wait_ms = due > now ? due - now : 0;
        if (wait_ms > 1000)
            wait_ms = 1000;
        if (c->cfg.sync_ms) {
            uint64_t r = kt_cache_real_now();
            uint64_t s = next_sync > r ? next_sync - r : 0;
            if (s < wait_ms)
                wait_ms = s;
        }
        if (wait_ms == 0)
            continue;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(wait_ms / 1000);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!c->stopping && !c->poke &&
               pthread_cond_timedwait(&c->tcond, &c->tlock, &ts) != ETIMEDOUT)
            ;
        c->poke = false;
    }
    pthread_mutex_unlock(&c->tlock);
    return NULL;
}

void kt_cache_count_fallback(kt_cache *c)
{
    atomic_fetch_add(&c->fallbacks, 1);
}

void kt_cache_get_stats(kt_cache *c, kt_cache_stats *s)
{
    s->hits = s->misses = 0;
    for (unsigned i = 0; i < KT_CACHE_STRIPES; i++) {
        s->hits += atomic_load(&c->stripe[i].hits);
        s->misses += atomic_load(&c->stripe[i].misses);
    }
    s->refreshes = atomic_load(&c->refreshes);
    s->refresh_failures = atomic_load(&c->refresh_failures);
    s->fallbacks = atomic_load(&c->fallbacks);
    s->alerts = atomic_load(&c->alerts);
    s->evictions = atomic_load(&c->evictions);
    s->invalidations = atomic_load(&c->invalidations);
    s->locked_pages = atomic_load(&c->locked_pages);
    s->unlocked_pages = atomic_load(&c->unlocked_pages);
    uint64_t now = kt_cache_now(c);
    kt_cache_stripe *st = kt_cache_rdlock(c);
    s->entries = c->count;
    s->alerts_active = 0;
    for (size_t b = 0; b < c->nbuckets; b++)
        for (const kt_centry *e = c->buckets[b]; e; e = e->next)
            s->alerts_active += e->alerted && now < e->expires;
    pthread_rwlock_unlock(&st->lock);
}
