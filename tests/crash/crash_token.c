/*
 * Crash trials on keytier's module: a token ("Crash", <serial>.db, .key,
 * .seq) whose objects are created, changed (C_SetAttributeValue) and
 * destroyed, and whose user PIN is changed (C_SetPIN), by a driver that is
 * SIGKILLed at a random moment.  Acknowledged writes (tests/crash/crash.h):
 *   create ID      object ID ("oNNNNNN": CKA_ID of a secret key,
 *                  CKA_APPLICATION of a data object) made at version 0
 *   set ID V       its label and (data objects) value set to version V
 *   destroy ID     it destroyed
 *   pin N          the user PIN changed to PIN number N
 * An object's label is "ID.vV" and its CKA_VALUE a function of (ID, V) for
 * data objects, of (ID, 0) for secret keys (whose value cannot change), so
 * a change half applied shows in the object itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "crash.h"
#include "crash_area.h"

#define TOKEN_LABEL "Crash"
#define MAX_OBJS    64
#define VALUE_LEN   32

struct tobj {
    unsigned id, ver;
    bool live;
};

/* The token as the acknowledged (and landed) writes say it is. */
struct tmodel {
    struct tobj o[16384];
    size_t n; /* ids seen, live or not */
    unsigned pin;
    unsigned next_id;
    unsigned long acks, new_acks;
    unsigned tries;
};

struct tok {
    CK_FUNCTION_LIST *fl;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
};

static void pin_text(unsigned n, char out[16])
{
    if (n == 0)
        snprintf(out, 16, "1234"); /* testenv_keytier_token's */
    else
        snprintf(out, 16, "pin-%u", n);
}

static void obj_value(unsigned id, unsigned ver, unsigned char v[VALUE_LEN])
{
    struct crash_rng r = {((uint64_t)id << 32) | ver};
    for (size_t i = 0; i < VALUE_LEN; i += 8) {
        uint64_t x = crash_rng_next(&r);
        memcpy(v + i, &x, 8);
    }
}

static bool obj_is_data(unsigned id)
{
    return id % 2 == 0;
}

/* Where an object keeps its id: data objects have no CKA_ID. */
static CK_ATTRIBUTE_TYPE id_attr(bool data)
{
    return data ? CKA_APPLICATION : CKA_ID;
}

static struct tobj *model_find(struct tmodel *m, unsigned id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->o[i].id == id)
            return &m->o[i];
    return NULL;
}

/* Applies one acknowledged or landed write to the model. */
static bool model_apply(struct tmodel *m, const char *text)
{
    unsigned id, ver;
    if (sscanf(text, "create %u", &id) == 1) {
        if (model_find(m, id) != NULL || m->n == sizeof m->o / sizeof m->o[0])
            return false;
        m->o[m->n++] = (struct tobj){id, 0, true};
    } else if (sscanf(text, "set %u %u", &id, &ver) == 2) {
        struct tobj *o = model_find(m, id);
        if (o == NULL || !o->live)
            return false;
        o->ver = ver;
    } else if (sscanf(text, "destroy %u", &id) == 1) {
        struct tobj *o = model_find(m, id);
        if (o == NULL || !o->live)
            return false;
        o->live = false;
    } else if (sscanf(text, "pin %u", &id) == 1) {
        m->pin = id;
    } else {
        return false;
    }
    return true;
}

static bool model_load(const struct crash_log *log, struct tmodel *m)
{
    memset(m, 0, sizeof *m);
    m->next_id = 1;
    for (size_t i = 0; i < log->n; i++) {
        const struct crash_entry *e = &log->e[i];
        unsigned id;
        if (e->kind == CRASH_CHECK) {
            m->new_acks = 0;
            m->tries = 0;
        }
        m->tries += e->kind == CRASH_TRY;
        if (sscanf(e->text, "%*s %u", &id) == 1 && id >= m->next_id &&
            strncmp(e->text, "pin", 3) != 0)
            m->next_id = id + 1;
        if (e->kind != CRASH_OK && e->kind != CRASH_LANDED)
            continue;
        m->acks += e->kind == CRASH_OK;
        m->new_acks += e->kind == CRASH_OK;
        if (!model_apply(m, e->text)) {
            fprintf(stderr,
                    "crash token: ack log line %zu does not apply: "
                    "%s\n",
                    i + 1, e->text);
            return false;
        }
    }
    return true;
}

static size_t model_live(const struct tmodel *m, struct tobj **live, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n && k < cap; i++)
        if (m->o[i].live)
            live[k++] = (struct tobj *)&m->o[i];
    return k;
}

/* Loads the module, finds the token, opens a RW session. */
static bool tok_open(struct tok *t)
{
    const char *mod = getenv("KT_MODULE");
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    t->fl = mod ? p11_kit_module_load(mod, 0) : NULL;
    if (t->fl == NULL || p11_kit_module_initialize(t->fl) != CKR_OK ||
        t->fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) {
        fprintf(stderr, "crash token: cannot load the module %s\n",
                mod ? mod : "(KT_MODULE unset)");
        return false;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (t->fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            memcmp(ti.label, TOKEN_LABEL " ", sizeof TOKEN_LABEL) == 0) {
            t->slot = slots[i];
            CK_RV rv = t->fl->C_OpenSession(t->slot,
                                            CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                            NULL, NULL, &t->s);
            if (rv == CKR_OK)
                return true;
            fprintf(stderr, "crash token: C_OpenSession: 0x%lx\n", rv);
            return false;
        }
    }
    fprintf(stderr, "crash token: token %s not listed\n", TOKEN_LABEL);
    return false;
}

static CK_RV tok_login(struct tok *t, unsigned pin)
{
    char p[16];
    pin_text(pin, p);
    return t->fl->C_Login(t->s, CKU_USER, (CK_UTF8CHAR *)p, strlen(p));
}

/* The one object with id `id` (CK_INVALID_HANDLE: none); *count gets
 * how many there are. */
static CK_OBJECT_HANDLE tok_find(struct tok *t, unsigned id, CK_ULONG *count)
{
    char cid[16];
    snprintf(cid, sizeof cid, "o%06u", id);
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{id_attr(obj_is_data(id)), cid, strlen(cid)},
                           {CKA_TOKEN, &yes, sizeof yes}};
    CK_OBJECT_HANDLE h[4];
    *count = 0;
    if (t->fl->C_FindObjectsInit(t->s, tmpl, 2) != CKR_OK)
        return CK_INVALID_HANDLE;
    if (t->fl->C_FindObjects(t->s, h, 4, count) != CKR_OK)
        *count = 0;
    (void)t->fl->C_FindObjectsFinal(t->s);
    return *count == 1 ? h[0] : CK_INVALID_HANDLE;
}

static CK_RV tok_create(struct tok *t, unsigned id)
{
    char cid[16], label[32];
    unsigned char v[VALUE_LEN];
    snprintf(cid, sizeof cid, "o%06u", id);
    snprintf(label, sizeof label, "o%06u.v0", id);
    obj_value(id, 0, v);
    CK_OBJECT_CLASS cls = obj_is_data(id) ? CKO_DATA : CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {id_attr(obj_is_data(id)), cid, strlen(cid)},
        {CKA_LABEL, label, strlen(label)},
        {CKA_VALUE, v, sizeof v},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
    };
    CK_OBJECT_HANDLE h;
    return t->fl->C_CreateObject(t->s, a, obj_is_data(id) ? 6 : 9, &h);
}

static CK_RV tok_set(struct tok *t, unsigned id, unsigned ver)
{
    char label[32];
    unsigned char v[VALUE_LEN];
    CK_ULONG count;
    CK_OBJECT_HANDLE h = tok_find(t, id, &count);
    if (h == CK_INVALID_HANDLE)
        return CKR_OBJECT_HANDLE_INVALID;
    snprintf(label, sizeof label, "o%06u.v%u", id, ver);
    obj_value(id, ver, v);
    CK_ATTRIBUTE a[] = {{CKA_LABEL, label, strlen(label)},
                        {CKA_VALUE, v, sizeof v}};
    return t->fl->C_SetAttributeValue(t->s, h, a, obj_is_data(id) ? 2 : 1);
}

static CK_RV tok_destroy(struct tok *t, unsigned id)
{
    CK_ULONG count;
    CK_OBJECT_HANDLE h = tok_find(t, id, &count);
    if (h == CK_INVALID_HANDLE)
        return CKR_OBJECT_HANDLE_INVALID;
    return t->fl->C_DestroyObject(t->s, h);
}

static CK_RV tok_set_pin(struct tok *t, unsigned from, unsigned to)
{
    char o[16], n[16];
    pin_text(from, o);
    pin_text(to, n);
    return t->fl->C_SetPIN(t->s, (CK_UTF8CHAR *)o, strlen(o), (CK_UTF8CHAR *)n,
                           strlen(n));
}

/* One write chosen at random: "try", the call, "ok" (synced). */
static void drive_one(struct tok *t, struct tmodel *m, struct crash_rng *rng,
                      int log)
{
    struct tobj *live[MAX_OBJS];
    size_t n = model_live(m, live, MAX_OBJS);
    unsigned r = crash_rng_below(rng, 100);
    char text[64];
    CK_RV rv;
    struct tobj *o = n ? live[crash_rng_below(rng, (unsigned)n)] : NULL;
    if (r < 4) {
        snprintf(text, sizeof text, "pin %u", m->pin + 1);
        crash_log_put(log, CRASH_TRY, false, "%s", text);
        rv = tok_set_pin(t, m->pin, m->pin + 1);
    } else if (n < 8 || (r < 45 && n < MAX_OBJS / 2)) {
        snprintf(text, sizeof text, "create %u", m->next_id++);
        crash_log_put(log, CRASH_TRY, false, "%s", text);
        rv = tok_create(t, m->next_id - 1);
    } else if (r < 80) {
        snprintf(text, sizeof text, "set %u %u", o->id, o->ver + 1);
        crash_log_put(log, CRASH_TRY, false, "%s", text);
        rv = tok_set(t, o->id, o->ver + 1);
    } else {
        snprintf(text, sizeof text, "destroy %u", o->id);
        crash_log_put(log, CRASH_TRY, false, "%s", text);
        rv = tok_destroy(t, o->id);
    }
    if (rv != CKR_OK) {
        fprintf(stderr, "crash token: %s: 0x%lx\n", text, rv);
        _exit(3);
    }
    crash_log_put(log, CRASH_OK, true, "%s", text);
    (void)model_apply(m, text);
}

int crash_token_drive(const char *dir, uint64_t seed)
{
    char path[512];
    static struct tmodel m;
    struct crash_log log;
    struct crash_rng rng = {seed};
    struct tok t;
    snprintf(path, sizeof path, "%s/acks", dir);
    if (!crash_log_read(path, &log) || !model_load(&log, &m))
        return 2;
    crash_log_free(&log);
    int fd = crash_log_open(path);
    if (fd < 0 || !tok_open(&t))
        return 2;
    CK_RV rv = tok_login(&t, m.pin);
    if (rv != CKR_OK) {
        fprintf(stderr, "crash token: login with PIN %u: 0x%lx\n", m.pin, rv);
        return 2;
    }
    for (;;)
        drive_one(&t, &m, &rng, fd);
}

/* Reads an object's attributes: all must be there, its label must name
 * its id and version, its value must be that version's. */
static bool check_object(struct tok *t, CK_OBJECT_HANDLE h, unsigned *id,
                         unsigned *ver)
{
    CK_OBJECT_CLASS cls = 0;
    char cid[16] = "", label[40] = "";
    unsigned char v[VALUE_LEN + 1], want[VALUE_LEN];
    CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_ID, cid, sizeof cid - 1},
                        {CKA_LABEL, label, sizeof label - 1},
                        {CKA_VALUE, v, sizeof v}};
    CK_RV rv = t->fl->C_GetAttributeValue(t->s, h, a, 1);
    a[1].type = id_attr(cls == CKO_DATA);
    if (rv == CKR_OK)
        rv = t->fl->C_GetAttributeValue(t->s, h, a + 1, 3);
    if (rv != CKR_OK) {
        fprintf(stderr, "crash token: object %lu: attributes: 0x%lx\n", h, rv);
        return false;
    }
    cid[a[1].ulValueLen] = '\0';
    label[a[2].ulValueLen] = '\0';
    unsigned lid;
    if (sscanf(cid, "o%u", id) != 1 ||
        sscanf(label, "o%u.v%u", &lid, ver) != 2 || lid != *id ||
        cls != (obj_is_data(*id) ? CKO_DATA : CKO_SECRET_KEY)) {
        fprintf(stderr, "crash token: object %s: label %s, class %lu\n", cid,
                label, cls);
        return false;
    }
    obj_value(*id, obj_is_data(*id) ? *ver : 0, want);
    if (a[3].ulValueLen != VALUE_LEN || memcmp(v, want, VALUE_LEN) != 0) {
        fprintf(stderr,
                "crash token: object %s (%s): value is not that of "
                "its version\n",
                cid, label);
        return false;
    }
    return true;
}

/* Every object of the token, checked, into found[] (id, ver). */
static bool check_scan(struct tok *t, struct tobj *found, size_t cap, size_t *n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &yes, sizeof yes}};
    CK_OBJECT_HANDLE h[256];
    CK_ULONG k = 0;
    if (t->fl->C_FindObjectsInit(t->s, tmpl, 1) != CKR_OK ||
        t->fl->C_FindObjects(t->s, h, 256, &k) != CKR_OK)
        return false;
    (void)t->fl->C_FindObjectsFinal(t->s);
    *n = 0;
    for (CK_ULONG i = 0; i < k && *n < cap; i++, (*n)++) {
        found[*n].live = true;
        if (!check_object(t, h[i], &found[*n].id, &found[*n].ver))
            return false;
    }
    return k < cap;
}

/* Logs out if logged in; then the PIN must give `want`. */
static bool check_login(struct tok *t, unsigned pin, CK_RV want)
{
    (void)t->fl->C_Logout(t->s);
    CK_RV rv = tok_login(t, pin);
    if (rv == want)
        return true;
    fprintf(stderr, "crash token: login with PIN %u: 0x%lx, expected 0x%lx\n",
            pin, rv, want);
    return false;
}

/* Exactly one PIN opens the token: the acknowledged one, or, with a change
 * in flight, the old or the new one.  Wrong PINs first: the right one
 * resets the retry counter.  *landed: the change in flight is done. */
static bool check_pin(struct tok *t, unsigned pin, bool inflight, bool *landed)
{
    *landed = false;
    if (!inflight)
        return (pin == 0 || check_login(t, pin - 1, CKR_PIN_INCORRECT)) &&
               check_login(t, pin + 1, CKR_PIN_INCORRECT) &&
               check_login(t, pin, CKR_OK);
    (void)t->fl->C_Logout(t->s);
    CK_RV rv = tok_login(t, pin);
    if (rv == CKR_OK)
        return check_login(t, pin + 1, CKR_PIN_INCORRECT) &&
               check_login(t, pin, CKR_OK);
    if (rv != CKR_PIN_INCORRECT) {
        fprintf(stderr, "crash token: login with PIN %u: 0x%lx\n", pin, rv);
        return false;
    }
    *landed = true;
    return check_login(t, pin + 1, CKR_OK);
}

/* The object found for a model entry (NULL: none). */
static const struct tobj *found_get(const struct tobj *found, size_t n,
                                    unsigned id)
{
    for (size_t i = 0; i < n; i++)
        if (found[i].id == id)
            return &found[i];
    return NULL;
}

/* An object as found against what the model says: the same, or for the
 * write in flight (*landed) what it would make. */
static bool check_one(struct tmodel *m, const struct tobj *f, unsigned id,
                      const char *inflight, bool *landed)
{
    struct tobj *o = model_find(m, id);
    bool was = o && o->live;
    unsigned ver = o ? o->ver : 0, iid = 0, iver = 0;
    if (was == (f != NULL) && (!f || f->ver == ver))
        return true; /* as acknowledged */
    if (inflight && ((sscanf(inflight, "create %u", &iid) == 1 && iid == id &&
                      !was && f && f->ver == 0) ||
                     (sscanf(inflight, "set %u %u", &iid, &iver) == 2 &&
                      iid == id && was && f && f->ver == iver) ||
                     (sscanf(inflight, "destroy %u", &iid) == 1 && iid == id &&
                      was && !f))) {
        *landed = true;
        return true;
    }
    fprintf(stderr,
            "crash token: object o%06u: acknowledged %s v%u, found "
            "%s v%u (in flight: %s)\n",
            id, was ? "present" : "absent", ver, f ? "present" : "absent",
            f ? f->ver : 0, inflight ? inflight : "none");
    return false;
}

/* Every id the model knows and every id found agree. */
static bool check_objects(struct tmodel *m, const struct tobj *found, size_t n,
                          const char *inflight, bool *landed,
                          unsigned long *checked)
{
    for (size_t i = 0; i < m->n; i++) {
        if (!check_one(m, found_get(found, n, m->o[i].id), m->o[i].id, inflight,
                       landed))
            return false;
        *checked += m->o[i].live;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned a;
        for (a = 0; a < n; a++)
            if (a != i && found[a].id == found[i].id)
                break;
        if (a < n || (model_find(m, found[i].id) == NULL &&
                      !check_one(m, &found[i], found[i].id, inflight, landed)))
            return false;
    }
    return true;
}

static bool check_token(struct tok *t, struct tmodel *m, const char *inflight,
                        struct crash_result *r)
{
    static struct tobj found[MAX_OBJS * 2];
    size_t n = 0;
    bool landed = false, pin_landed = false;
    bool pin_inflight = inflight && strncmp(inflight, "pin ", 4) == 0;
    if (!check_pin(t, m->pin, pin_inflight, &pin_landed) ||
        !check_scan(t, found, MAX_OBJS * 2, &n) ||
        !check_objects(m, found, n, pin_inflight ? NULL : inflight, &landed,
                       &r->checked))
        return false;
    r->checked += 1; /* the PIN */
    r->landed = landed || pin_landed;
    return true;
}

int crash_token_check(const char *dir)
{
    char path[512];
    static struct tmodel m;
    struct crash_log log;
    struct crash_result r = {0};
    struct tok t;
    snprintf(path, sizeof path, "%s/acks", dir);
    if (!crash_log_read(path, &log) || !model_load(&log, &m))
        return 2;
    const char *inflight = crash_log_inflight(&log);
    r.acks = m.acks;
    r.new_acks = m.new_acks;
    r.tries = m.tries;
    r.inflight = inflight != NULL;
    if (!tok_open(&t) || !check_token(&t, &m, inflight, &r)) {
        fprintf(stderr, "crash token: check failed (%zu log lines)\n", log.n);
        return 1;
    }
    int fd = crash_log_open(path);
    if (fd < 0)
        return 2;
    if (r.landed)
        crash_log_put(fd, CRASH_LANDED, false, "%s", inflight);
    crash_log_put(fd, CRASH_CHECK, true, "token");
    crash_log_free(&log);
    (void)t.fl->C_CloseSession(t.s);
    p11_kit_module_finalize(t.fl);
    p11_kit_module_release(t.fl);
    crash_result_print(&r);
    return 0;
}
