/*
 * keytier demo: the story of docs/DESIGN.md in one command.
 *
 * Everything happens in a fresh temp dir that is removed at the end: two
 * customer tokens (vault A on SoftHSM2 when it is installed, vault B on
 * keytier's module), each served by its own `p11-kit server` and reached
 * through p11-kit-client.so as a remote HSM would be; the service's token
 * on keytier's module; a DEP, a mailbox, data written and read back; vault
 * A frozen (SIGSTOP) and the read still served by B; both frozen and the
 * audited fallback to the availability key; the customer revoking its
 * keys and a user read refused; the audit chain verified.
 *
 * Each step prints one line ("ok N: ..."); a step that does not behave as
 * claimed prints "FAILED N: ..." and the demo exits 1.  The servers are
 * stopped by PID (and their process group: one child per connection) on
 * every exit path, signals included.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DEMO_TENANT      "contoso"
#define DEMO_WORKLOAD    "Exchange"
#define DEMO_MAILBOX     "alice@contoso.example"
#define DEMO_DEADLINE_MS 1000
#define DEMO_HEDGE_MS    100
#define DEMO_SOFTHSM2    "/usr/lib/softhsm/libsofthsm2.so"
/* Lockbox: the customer's approver and the service's operator. */
#define DEMO_APPROVER_TOKEN "lockbox-approver"
#define DEMO_APPROVER       "contoso-approver"
#define DEMO_REQUESTER      "service-operator"

enum { OPT_MODULE = 256, OPT_SOFTHSM2, OPT_NO_SOFTHSM2 };

/* State the signal handler needs: only plain values. */
static volatile pid_t demo_servers[2];
#define DEMO_DIR_MAX  256
#define DEMO_PATH_MAX 320
static char demo_dir[DEMO_DIR_MAX];

struct demo {
    struct cli *cli;
    int step;
    const char *module;   /* keytier-pkcs11.so */
    const char *softhsm2; /* NULL: vault A on keytier's module too */
    char pin[33];         /* one random user PIN for the demo's tokens */
    char so_pin[33];
    const char *vault_module[2];
    char vault_conf[2][DEMO_PATH_MAX]; /* KEYTIER_CONF of a keytier vault */
    char sock[2][DEMO_PATH_MAX];
    char uri[2][KEYTIER_URI_MAX];
    char service_conf[DEMO_PATH_MAX];
    char conf[DEMO_PATH_MAX]; /* the library's */
    keytier_ctx *ctx;
    char dep_id[KEYTIER_ID_SIZE];
    char audit[DEMO_PATH_MAX];
    bool frozen[2];
};

static const char *const vault_label[2] = {"vault-a", "vault-b"};
static const char *const root_label[2] = {"contoso-root-a", "contoso-root-b"};

static void demo_ok(struct demo *d, const char *fmt, ...) CLI_PRINTF(2, 3);
static void demo_ok(struct demo *d, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->step++;
    if (d->cli->json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "step", json_object_new_int(d->step));
        json_object_object_add(o, "ok", json_object_new_boolean(1));
        cli_json_str(o, "message", msg);
        cli_json_put(o);
    } else {
        printf("ok %d: %s\n", d->step, msg);
    }
    fflush(stdout);
}

static int demo_fail(struct demo *d, const char *fmt, ...) CLI_PRINTF(2, 3);
static int demo_fail(struct demo *d, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->step++;
    if (d->cli->json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "step", json_object_new_int(d->step));
        json_object_object_add(o, "ok", json_object_new_boolean(0));
        cli_json_str(o, "message", msg);
        cli_json_put(o);
    } else {
        printf("FAILED %d: %s\n", d->step, msg);
    }
    fflush(stdout);
    return CLI_ERROR;
}

static int demo_fail_lib(struct demo *d, const char *what, keytier_err e)
{
    return demo_fail(d, "%s: %s [%s]", what, keytier_last_error_detail(),
                     keytier_error_name(e));
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- servers ------------------------------------------------------------ */

/* Signals a server and every process of its group (p11-kit server forks
 * one p11-kit-remote child per connection, which keeps the group) and any
 * child that left the group.  Not for the signal handler (reads /proc). */
static void demo_signal(pid_t pid, int sig)
{
    if (pid <= 0)
        return;
    kill(pid, sig);
    kill(-pid, sig);
    DIR *dir = opendir("/proc");
    if (dir == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        char path[300], buf[512];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "re");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        char state;
        long ppid;
        if (rp != NULL && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 &&
            ppid == pid)
            kill((pid_t)atol(de->d_name), sig);
    }
    closedir(dir);
}

static bool demo_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' && rp[2] != 'Z';
}

static void demo_server_stop(int i)
{
    pid_t pid = demo_servers[i];
    if (pid <= 0)
        return;
    demo_signal(pid, SIGCONT);
    demo_signal(pid, SIGTERM);
    for (int t = 0; t < 50 && demo_alive(pid); t++)
        usleep(100 * 1000);
    demo_signal(pid, SIGKILL);
    demo_servers[i] = 0;
}

/* Runs argv with `env` added, output to out_path; waits for it. */
static int demo_spawn(char *const argv[], const char *conf_env,
                      const char *out_path)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || nul < 0)
            _exit(127);
        dup2(nul, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (conf_env != NULL)
            setenv("KEYTIER_CONF", conf_env, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `p11-kit server --sh` daemonises and prints its PID. */
static int demo_server_start(struct demo *d, int i)
{
    char out[DEMO_PATH_MAX], uri[64];
    snprintf(d->sock[i], sizeof d->sock[i], "%s/%s.sock", demo_dir,
             vault_label[i]);
    snprintf(out, sizeof out, "%s/%s-server.out", demo_dir, vault_label[i]);
    snprintf(uri, sizeof uri, "pkcs11:token=%s", vault_label[i]);
    char *argv[] = {
        "p11-kit", "server",   "--sh", "--provider", (char *)d->vault_module[i],
        "-n",      d->sock[i], uri,    NULL};
    int rc =
        demo_spawn(argv, d->vault_conf[i][0] ? d->vault_conf[i] : NULL, out);
    FILE *f = fopen(out, "re");
    char line[1024];
    long pid = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        const char *p = strstr(line, "P11_KIT_SERVER_PID=");
        if (p != NULL)
            pid = atol(p + strlen("P11_KIT_SERVER_PID="));
    }
    if (f != NULL)
        fclose(f);
    if (rc != 0 || pid <= 0)
        return demo_fail(d, "start p11-kit server for %s (exit %d, see %s)",
                         vault_label[i], rc, out);
    demo_servers[i] = (pid_t)pid;
    struct stat st;
    for (int t = 0; t < 100 && stat(d->sock[i], &st) != 0; t++)
        usleep(50 * 1000);
    if (stat(d->sock[i], &st) != 0)
        return demo_fail(d, "p11-kit server for %s: no socket %s",
                         vault_label[i], d->sock[i]);
    return CLI_OK;
}

static void demo_freeze(struct demo *d, int i, bool freeze)
{
    demo_signal(demo_servers[i], freeze ? SIGSTOP : SIGCONT);
    d->frozen[i] = freeze;
}

/* ---- cleanup ------------------------------------------------------------ */

static void demo_rmtree(void)
{
    if (demo_dir[0] == '\0')
        return;
    char *argv[] = {"rm", "-rf", "--", demo_dir, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execv("/bin/rm", argv);
        _exit(127);
    }
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    demo_dir[0] = '\0';
}

/* Async-signal-safe: stop the servers (and their groups), remove the
 * temp dir, die of the same signal. _Fork, not fork: fork runs the
 * pthread_atfork handlers of every loaded PKCS#11 module, and the signal may
 * have interrupted this thread inside one of those modules holding the very
 * lock its prepare handler takes (seen: keytier-pkcs11.so, a hang). */
static void demo_on_signal(int sig)
{
    for (int i = 0; i < 2; i++) {
        pid_t pid = demo_servers[i];
        if (pid > 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
    }
    if (demo_dir[0] != '\0') {
        pid_t pid = _Fork();
        if (pid == 0) {
            char *argv[] = {"rm", "-rf", "--", demo_dir, NULL};
            execv("/bin/rm", argv);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void demo_cleanup(struct demo *d)
{
    /* Thaw first: closing the context waits for calls still running on
     * its workers, and a frozen server would hold them forever. */
    for (int i = 0; i < 2; i++)
        if (d->frozen[i])
            demo_freeze(d, i, false);
    keytier_ctx_close(d->ctx);
    d->ctx = NULL;
    for (int i = 0; i < 2; i++)
        demo_server_stop(i);
    demo_rmtree();
    explicit_bzero(d->pin, sizeof d->pin);
    explicit_bzero(d->so_pin, sizeof d->so_pin);
}

/* ---- steps -------------------------------------------------------------- */

static bool demo_random_pin(char out[33])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return false;
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return true;
}

static int demo_write(struct demo *d, const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) != 0)
        return demo_fail(d, "write %s: %s", path, strerror(errno));
    return CLI_OK;
}

/* A keytier module config of its own for one token directory. */
static int demo_keytier_conf(struct demo *d, const char *name, char *out,
                             size_t cap)
{
    char text[4096];
    snprintf(out, cap, "%s/%s.conf", demo_dir, name);
    snprintf(text, sizeof text,
             "# keytier module config of the demo's %s\n"
             "token_dir = %s/%s-tokens\n"
             "log_level = warning\n"
             "log_file = %s/%s.log\n"
             "pin_kdf_cost = 10\n",
             name, demo_dir, name, demo_dir, name);
    return demo_write(d, out, text);
}

/* The token configurations: SoftHSM2's for vault A when it is there, else
 * a keytier one, and keytier ones for vault B and the service token. */
static int demo_token_confs(struct demo *d)
{
    int rc;
    if (d->softhsm2 != NULL) {
        char conf[DEMO_PATH_MAX], text[4096];
        snprintf(conf, sizeof conf, "%s/softhsm2.conf", demo_dir);
        snprintf(text, sizeof text, "%s/softhsm2-tokens", demo_dir);
        if (mkdir(text, 0700) != 0)
            return demo_fail(d, "mkdir %s: %s", text, strerror(errno));
        snprintf(text, sizeof text,
                 "directories.tokendir = %s/softhsm2-tokens\n"
                 "objectstore.backend = file\nlog.level = ERROR\n",
                 demo_dir);
        if ((rc = demo_write(d, conf, text)) != CLI_OK)
            return rc;
        setenv("SOFTHSM2_CONF", conf, 1);
    } else if ((rc = demo_keytier_conf(d, vault_label[0], d->vault_conf[0],
                                       sizeof d->vault_conf[0])) != CLI_OK) {
        return rc;
    }
    if ((rc = demo_keytier_conf(d, vault_label[1], d->vault_conf[1],
                                sizeof d->vault_conf[1])) != CLI_OK ||
        (rc = demo_keytier_conf(d, "keytier-service", d->service_conf,
                                sizeof d->service_conf)) != CLI_OK)
        return rc;
    return CLI_OK;
}

/* Customer tokens and their roots, each in its own token directory (the
 * module reads KEYTIER_CONF at C_Initialize), and the service token. The
 * roots are RSA-2048: p11-kit's RPC carries RSA-OAEP but not the AES
 * key-wrap mechanisms, and the vaults are remote. */
static int demo_tokens(struct demo *d)
{
    keytier_err e;
    for (int i = 0; i < 2; i++) {
        if (d->vault_conf[i][0])
            setenv("KEYTIER_CONF", d->vault_conf[i], 1);
        e = keytier_token_init(d->vault_module[i], vault_label[i], d->so_pin,
                               d->pin, NULL);
        if (e != KEYTIER_OK)
            return demo_fail_lib(d, "create customer token", e);
        e = keytier_root_generate(d->vault_module[i], vault_label[i], d->pin,
                                  root_label[i], KEYTIER_ROOT_TYPE_RSA2048,
                                  d->uri[i]);
        if (e != KEYTIER_OK)
            return demo_fail_lib(d, "generate customer root key", e);
        demo_ok(d,
                "customer vault %c: token '%s' on %s with root key '%s' "
                "(RSA-2048, private key never extractable)",
                'A' + i, vault_label[i],
                d->vault_module[i] == d->softhsm2 ? "SoftHSM2" : "keytier",
                root_label[i]);
    }
    setenv("KEYTIER_CONF", d->service_conf, 1);
    e = keytier_token_init(d->module, "keytier-service", d->so_pin, d->pin,
                           NULL);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "create the service token", e);
    demo_ok(d, "service token 'keytier-service' on keytier (holds the "
               "availability keys)");
    /* The customer's approver holds a token of its own. */
    e = keytier_token_init(d->module, DEMO_APPROVER_TOKEN, d->so_pin, d->pin,
                           NULL);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "create the approver's token", e);
    return CLI_OK;
}

/* The library: both vaults through p11-kit-client.so, the service token
 * directly; no cache so every read asks the tokens. */
static int demo_lib_open(struct demo *d)
{
    char pinfile[DEMO_PATH_MAX], conf[DEMO_PATH_MAX], text[8192];
    int rc;
    snprintf(pinfile, sizeof pinfile, "%s/user.pin", demo_dir);
    char pinline[40];
    snprintf(pinline, sizeof pinline, "%s\n", d->pin);
    if ((rc = demo_write(d, pinfile, pinline)) != CLI_OK)
        return rc;
    snprintf(conf, sizeof conf, "%s/keytier-lib.conf", demo_dir);
    snprintf(text, sizeof text,
             "# libkeytier config of the demo\n"
             "remote = unix:path=%s\n"
             "remote = unix:path=%s\n"
             "module = %s\n"
             "service_token = pkcs11:token=keytier-service\n"
             "store = %s/keytier.db\n"
             "pin.vault-a = file:%s\n"
             "pin.vault-b = file:%s\n"
             "pin.keytier-service = file:%s\n"
             "log_file = %s/lib.log\n"
             "# SoftHSM2 2.6 does RSA-OAEP with SHA-1 only\n"
             "allow_oaep_sha1 = yes\n"
             "avail.cache_ttl_ms = 0\n"
             "avail.call_deadline_ms = %d\n"
             "avail.hedge_ms = %d\n",
             d->sock[0], d->sock[1], d->module, demo_dir, pinfile, pinfile,
             pinfile, demo_dir, DEMO_DEADLINE_MS, DEMO_HEDGE_MS);
    if ((rc = demo_write(d, conf, text)) != CLI_OK)
        return rc;
    memcpy(d->conf, conf, sizeof d->conf);
    keytier_err e = keytier_ctx_open(conf, &d->ctx);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "open the library", e);
    e = keytier_audit_log_path(d->ctx, d->audit, sizeof d->audit);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "audit log path", e);
    return CLI_OK;
}

static int demo_setup(struct demo *d)
{
    int rc;
    if (!demo_random_pin(d->pin) || !demo_random_pin(d->so_pin))
        return demo_fail(d, "no random bytes for PINs");
    d->vault_module[0] = d->softhsm2 ? d->softhsm2 : d->module;
    d->vault_module[1] = d->module;
    if ((rc = demo_token_confs(d)) != CLI_OK || (rc = demo_tokens(d)) != CLI_OK)
        return rc;
    for (int i = 0; i < 2; i++)
        if ((rc = demo_server_start(d, i)) != CLI_OK)
            return rc;
    demo_ok(d,
            "each vault is remote: p11-kit server pid %d serves vault A, pid "
            "%d vault B (unix sockets in the temp dir)",
            (int)demo_servers[0], (int)demo_servers[1]);
    return demo_lib_open(d);
}

static const char demo_message[] =
    "From: cfo@contoso.example\nSubject: Q3 numbers\n\n"
    "Revenue up 12%. Do not forward.\n";

/* Opens the mailbox key (a DEP-key read by the fallback rule) and reads
 * the envelope back. */
static keytier_err demo_read(struct demo *d, const keytier_request *req,
                             const unsigned char *env, size_t env_len,
                             double *ms)
{
    double t0 = now_ms();
    keytier_key *k = NULL;
    keytier_err e = keytier_key_open_name(d->ctx, req, DEMO_TENANT,
                                          DEMO_WORKLOAD, DEMO_MAILBOX, &k);
    unsigned char out[sizeof demo_message + 256];
    size_t n = 0;
    if (e == KEYTIER_OK)
        e = keytier_open(k, DEMO_MAILBOX, strlen(DEMO_MAILBOX), env, env_len,
                         out, sizeof out, &n);
    keytier_key_close(k);
    *ms = now_ms() - t0;
    if (e == KEYTIER_OK &&
        (n != strlen(demo_message) || memcmp(out, demo_message, n) != 0))
        e = KEYTIER_E_INTERNAL;
    return e;
}

/* The last record of the audit log (NULL if none). */
static json_object *demo_audit_last(struct demo *d, uint64_t *count)
{
    FILE *f = fopen(d->audit, "re");
    *count = 0;
    if (f == NULL)
        return NULL;
    char *line = malloc(KEYTIER_AUDIT_LINE_MAX + 1), *last = NULL;
    while (line != NULL && cli_read_line(f, line, KEYTIER_AUDIT_LINE_MAX) > 0) {
        (*count)++;
        free(last);
        last = strdup(line);
    }
    free(line);
    fclose(f);
    json_object *o = last ? json_tokener_parse(last) : NULL;
    free(last);
    return o;
}

static const char *demo_jstr(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v)
                                                 : "?";
}

/* "A timeout (system), B timeout (system)" from a fallback record. */
static void demo_key_errors(json_object *rec, char *out, size_t cap)
{
    json_object *errs;
    out[0] = '\0';
    if (!json_object_object_get_ex(rec, "CustomerKeyErrors", &errs))
        return;
    size_t len = 0;
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        json_object *e = json_object_array_get_idx(errs, i);
        int n = snprintf(out + len, cap - len, "%s%s %s (%s)", i ? ", " : "",
                         demo_jstr(e, "Key"), demo_jstr(e, "Error"),
                         demo_jstr(e, "Class"));
        if (n < 0 || (size_t)n >= cap - len)
            return;
        len += (size_t)n;
    }
}

/* The approver's key pair in its token, its fingerprint pinned in the
 * configuration (the context is opened again to read it) and its public
 * key registered. */
static int demo_approver(struct demo *d, char key[KEYTIER_URI_MAX])
{
    uint8_t spki[1024];
    size_t len = sizeof spki;
    char fpr[KEYTIER_FINGERPRINT_SIZE];
    keytier_err e =
        keytier_approver_keygen(d->ctx, "pkcs11:token=" DEMO_APPROVER_TOKEN,
                                d->pin, "approval-key", spki, &len, key);
    if (e == KEYTIER_OK)
        e = keytier_approver_fingerprint(spki, len, fpr);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "make the approver's key pair", e);
    FILE *f = fopen(d->conf, "ae");
    bool written = f != NULL && fprintf(f, "approval.approver = %s %s\n",
                                        DEMO_APPROVER, fpr) > 0;
    if (f != NULL && fclose(f) != 0)
        written = false;
    if (!written)
        return demo_fail(d, "cannot pin the approver in %s", d->conf);
    keytier_ctx_close(d->ctx);
    d->ctx = NULL;
    e = keytier_ctx_open(d->conf, &d->ctx);
    if (e == KEYTIER_OK)
        e = keytier_approver_register(d->ctx, DEMO_APPROVER, spki, len, NULL);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "register the approver", e);
    demo_ok(d,
            "Lockbox: approver '%s' made an ECDSA P-256 key pair in its own "
            "token '%s' (sign only, never extractable); its fingerprint "
            "%.23s... is pinned in the configuration",
            DEMO_APPROVER, DEMO_APPROVER_TOKEN, fpr);
    return CLI_OK;
}

/* An approval granted for a few seconds serves nothing once they have
 * passed, and its expiry is recorded. (Long enough for the grant to come
 * first on a slow, loaded or sanitizer-built run.) */
#define DEMO_SHORT_TTL 3
static int demo_expiry(struct demo *d, const char *key, const char *dep_id)
{
    keytier_approval_info a;
    keytier_err e = keytier_approval_request(
        d->ctx, KEYTIER_APPROVAL_RECOVER, DEMO_TENANT, dep_id,
        "standing access", DEMO_REQUESTER, DEMO_SHORT_TTL, 0, &a);
    if (e == KEYTIER_OK)
        e = keytier_approval_grant(d->ctx, a.id, DEMO_APPROVER, key, d->pin,
                                   &a);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "a short approval", e);
    while ((int64_t)time(NULL) <= a.expires)
        usleep(100 * 1000);
    e = keytier_approval_consume(d->ctx, KEYTIER_APPROVAL_RECOVER, DEMO_TENANT,
                                 dep_id, a.id);
    if (e != KEYTIER_E_APPROVAL_EXPIRED)
        return demo_fail(d,
                         "an approval past its expiry: expected "
                         "KEYTIER_E_APPROVAL_EXPIRED, got %s",
                         keytier_error_name(e));
    uint64_t records = 0;
    json_object *rec = demo_audit_last(d, &records);
    bool audited = rec != NULL &&
                   !strcmp(demo_jstr(rec, "Activity"), "Approval expired") &&
                   !strcmp(demo_jstr(rec, "ApprovalId"), a.id);
    json_object_put(rec);
    if (!audited)
        return demo_fail(d, "expired approval: no audit record naming it");
    demo_ok(d,
            "an approval granted for %d s expired by itself: refused, and "
            "its expiry is in the audit log",
            DEMO_SHORT_TTL);
    return CLI_OK;
}

/* Recovery of the revoked DEP: refused without an approval, then asked
 * for, granted with the approver's token, run, and the approval spent;
 * then an approval that expires by itself. */
static int demo_lockbox(struct demo *d, const keytier_request *user,
                        const unsigned char *env, size_t env_len)
{
    char key[KEYTIER_URI_MAX], uri[2][KEYTIER_URI_MAX];
    int rc = demo_approver(d, key);
    if (rc != CLI_OK)
        return rc;
    static const char *const new_root[2] = {"contoso-root-a2",
                                            "contoso-root-b2"};
    keytier_err e = KEYTIER_OK;
    for (int i = 0; i < 2 && e == KEYTIER_OK; i++) {
        char remote[DEMO_PATH_MAX + 32];
        snprintf(remote, sizeof remote, "remote:unix:path=%s", d->sock[i]);
        e = keytier_root_generate(remote, vault_label[i], d->pin, new_root[i],
                                  KEYTIER_ROOT_TYPE_RSA2048, uri[i]);
    }
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "new customer root keys", e);
    keytier_dep_info nd;
    keytier_migration mig;
    e = keytier_dep_recover(d->ctx, DEMO_TENANT, d->dep_id, uri[0], uri[1], &nd,
                            &mig);
    if (e != KEYTIER_E_APPROVAL_REQUIRED)
        return demo_fail(d,
                         "recovery without an approval: expected "
                         "KEYTIER_E_APPROVAL_REQUIRED, got %s",
                         keytier_error_name(e));
    keytier_approval_info a;
    e = keytier_approval_request(d->ctx, KEYTIER_APPROVAL_RECOVER, DEMO_TENANT,
                                 d->dep_id, "both vault keys lost: ticket 4711",
                                 DEMO_REQUESTER, 3600, 1, &a);
    if (e == KEYTIER_OK)
        e = keytier_approval_grant(d->ctx, a.id, DEMO_APPROVER, key, d->pin,
                                   &a);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "request and grant the recovery", e);
    e = keytier_dep_recover_approved(d->ctx, a.id, DEMO_TENANT, d->dep_id,
                                     uri[0], uri[1], &nd, &mig);
    if (e == KEYTIER_OK)
        e = keytier_migrate_run(d->ctx, mig.migration_id, NULL, NULL, &mig);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "recovery with the approval", e);
    double ms;
    e = demo_read(d, user, env, env_len, &ms);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "user read after recovery", e);
    e = keytier_dep_recover_approved(d->ctx, a.id, DEMO_TENANT, d->dep_id,
                                     uri[0], uri[1], NULL, NULL);
    if (e != KEYTIER_E_APPROVAL_USED)
        return demo_fail(d,
                         "the same approval again: expected "
                         "KEYTIER_E_APPROVAL_USED, got %s",
                         keytier_error_name(e));
    demo_ok(d,
            "recovery refused without an approval; '%s' asked for one, '%s' "
            "granted it with the key in its token; new DEP %s, %" PRIu64
            " key(s) moved, the user reads the message again; the "
            "single-use approval is spent",
            DEMO_REQUESTER, DEMO_APPROVER, nd.dep_id, mig.done);
    return demo_expiry(d, key, nd.dep_id);
}

/* The message sealed under the mailbox key, as the story reads it back. */
struct demo_envelope {
    unsigned char b[sizeof demo_message + 1024];
    size_t len;
};

/* A DEP for the tenant, a mailbox key under it, a message sealed and read
 * back. */
static int demo_mailbox(struct demo *d, const keytier_request *user,
                        struct demo_envelope *env)
{
    keytier_dep_info dep;
    keytier_err e = keytier_dep_create(d->ctx, DEMO_TENANT, DEMO_WORKLOAD,
                                       d->uri[0], d->uri[1], &dep);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "create the DEP", e);
    memcpy(d->dep_id, dep.dep_id, sizeof d->dep_id);
    demo_ok(d,
            "DEP %s for tenant '%s' (%s): its key is stored only wrapped by "
            "vault A, vault B and a new availability key",
            dep.dep_id, DEMO_TENANT, DEMO_WORKLOAD);

    keytier_key *dk = NULL, *mk = NULL;
    char mid[KEYTIER_ID_SIZE];
    e = keytier_dep_key_open(d->ctx, user, DEMO_TENANT, d->dep_id, &dk);
    if (e == KEYTIER_OK)
        e = keytier_key_create(dk, DEMO_MAILBOX, mid);
    keytier_key_close(dk);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "create the mailbox", e);
    e = keytier_key_open_name(d->ctx, user, DEMO_TENANT, DEMO_WORKLOAD,
                              DEMO_MAILBOX, &mk);
    env->len = 0;
    if (e == KEYTIER_OK)
        e = keytier_seal(mk, DEMO_MAILBOX, strlen(DEMO_MAILBOX), demo_message,
                         strlen(demo_message), env->b, sizeof env->b,
                         &env->len);
    keytier_key_close(mk);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "encrypt a message", e);
    if (memmem(env->b, env->len, "Revenue", 7) != NULL)
        return demo_fail(d, "the envelope contains the plaintext");
    double ms;
    e = demo_read(d, user, env->b, env->len, &ms);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "read the message back", e);
    demo_ok(d,
            "mailbox '%s' created; a %zu-byte message sealed into a %zu-byte "
            "envelope and read back intact",
            DEMO_MAILBOX, strlen(demo_message), env->len);
    return CLI_OK;
}

/* Vault A down: B answers (after the hedge offset at most), with no
 * fallback and no audit record. The counters before it in *st0. */
static int demo_one_down(struct demo *d, const keytier_request *user,
                         const struct demo_envelope *env,
                         keytier_avail_stats *st0)
{
    keytier_avail_stats st1;
    uint64_t records0 = 0, records1 = 0;
    double ms;
    if (keytier_avail_stats_get(d->ctx, st0) != KEYTIER_OK)
        return demo_fail_lib(d, "availability counters", KEYTIER_E_INTERNAL);
    json_object_put(demo_audit_last(d, &records0));

    demo_freeze(d, 0, true);
    keytier_err e = demo_read(d, user, env->b, env->len, &ms);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "read with vault A frozen", e);
    if (keytier_avail_stats_get(d->ctx, &st1) != KEYTIER_OK ||
        st1.fallbacks != st0->fallbacks)
        return demo_fail(d, "read with vault A frozen used the availability "
                            "key");
    json_object_put(demo_audit_last(d, &records1));
    if (records1 != records0)
        return demo_fail(d, "read with vault A frozen wrote an audit record");
    demo_ok(d,
            "vault A frozen (SIGSTOP on its p11-kit server): read still "
            "served by vault B in %.0f ms, no fallback, no audit record",
            ms);
    return CLI_OK;
}

/* Both down: the deadline passes, the availability key answers and the
 * fallback is audited under the user's request id. The counters after it
 * in *st1. */
static int demo_both_down(struct demo *d, const keytier_request *user,
                          const struct demo_envelope *env,
                          const keytier_avail_stats *st0,
                          keytier_avail_stats *st1)
{
    uint64_t records = 0;
    double ms;
    demo_freeze(d, 1, true);
    keytier_err e = demo_read(d, user, env->b, env->len, &ms);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "read with both vaults frozen", e);
    if (keytier_avail_stats_get(d->ctx, st1) != KEYTIER_OK ||
        st1->fallbacks != st0->fallbacks + 1)
        return demo_fail(d, "read with both vaults frozen: expected one "
                            "fallback");
    json_object *rec = demo_audit_last(d, &records);
    if (rec == NULL ||
        strcmp(demo_jstr(rec, "Activity"), "Fallback to availability key") !=
            0 ||
        strcmp(demo_jstr(rec, "RequestId"), user->request_id) != 0) {
        json_object_put(rec);
        return demo_fail(d,
                         "no 'Fallback to availability key' record for "
                         "request %s in %s",
                         user->request_id, d->audit);
    }
    char errs[256];
    demo_key_errors(rec, errs, sizeof errs);
    json_object_put(rec);
    demo_ok(d,
            "both vaults frozen: read served by the availability key after "
            "%.1f s; audited 'Fallback to availability key' (%s)",
            ms / 1000, errs);
    return CLI_OK;
}

/* Both vaults back: a customer key serves again, no new fallback. */
static int demo_back(struct demo *d, const keytier_request *user,
                     const struct demo_envelope *env,
                     const keytier_avail_stats *st1)
{
    keytier_avail_stats st;
    double ms;
    demo_freeze(d, 0, false);
    demo_freeze(d, 1, false);
    keytier_err e = demo_read(d, user, env->b, env->len, &ms);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "read with both vaults back", e);
    if (keytier_avail_stats_get(d->ctx, &st) != KEYTIER_OK ||
        st.fallbacks != st1->fallbacks)
        return demo_fail(d, "read with both vaults back used the "
                            "availability key");
    demo_ok(d,
            "vaults back (SIGCONT): read served by a customer key again "
            "(%.0f ms), no new fallback",
            ms);
    return CLI_OK;
}

/* The customer revokes: destroys both roots in its vaults (through the
 * same servers the service uses). A user read is refused; an internal
 * operation still reads, audited. */
static int demo_revoke(struct demo *d, const keytier_request *user,
                       const struct demo_envelope *env)
{
    double ms;
    keytier_err e;
    for (int i = 0; i < 2; i++) {
        char remote[DEMO_PATH_MAX + 32];
        snprintf(remote, sizeof remote, "remote:unix:path=%s", d->sock[i]);
        e = keytier_root_destroy(remote, vault_label[i], d->pin, root_label[i],
                                 NULL);
        if (e != KEYTIER_OK)
            return demo_fail_lib(d, "revoke a customer key", e);
    }
    e = demo_read(d, user, env->b, env->len, &ms);
    if (e != KEYTIER_E_REVOKED)
        return demo_fail(d,
                         "user read after revocation: expected "
                         "KEYTIER_E_REVOKED, got %s (%s)",
                         keytier_error_name(e), keytier_last_error_detail());
    demo_ok(d,
            "the customer destroyed both root keys: a user read is "
            "refused: %s",
            keytier_strerror(e));

    char rid2[KEYTIER_ID_SIZE];
    uint64_t records = 0;
    if (!cli_uuid(rid2))
        return demo_fail(d, "no random bytes");
    keytier_request internal = {KEYTIER_REQUEST_INTERNAL,
                                KEYTIER_INTERNAL_INDEX, rid2, NULL};
    e = demo_read(d, &internal, env->b, env->len, &ms);
    if (e != KEYTIER_OK)
        return demo_fail_lib(d, "internal read after revocation", e);
    json_object *rec = demo_audit_last(d, &records);
    bool audited = rec != NULL &&
                   !strcmp(demo_jstr(rec, "Operation"), "index") &&
                   !strcmp(demo_jstr(rec, "RequestId"), rid2);
    json_object_put(rec);
    if (!audited)
        return demo_fail(d, "internal read: no audit record naming 'index'");
    demo_ok(d, "an internal operation ('index') still reads through the "
               "availability key, and the audit log says so");
    return CLI_OK;
}

static int demo_story(struct demo *d)
{
    char rid[KEYTIER_ID_SIZE];
    struct demo_envelope env;
    keytier_avail_stats st0, st1;
    int rc;
    if (!cli_uuid(rid))
        return demo_fail(d, "no random bytes");
    keytier_request user = {KEYTIER_REQUEST_USER, KEYTIER_INTERNAL_NONE, rid,
                            NULL};
    if ((rc = demo_mailbox(d, &user, &env)) != CLI_OK ||
        (rc = demo_one_down(d, &user, &env, &st0)) != CLI_OK ||
        (rc = demo_both_down(d, &user, &env, &st0, &st1)) != CLI_OK ||
        (rc = demo_back(d, &user, &env, &st1)) != CLI_OK ||
        (rc = demo_revoke(d, &user, &env)) != CLI_OK ||
        (rc = demo_lockbox(d, &user, env.b, env.len)) != CLI_OK)
        return rc;

    /* The chain and its keyed anchor (the service token's MAC
     * over the newest record). */
    keytier_audit_report rep;
    keytier_err e = keytier_audit_verify_anchored(d->ctx, d->audit, &rep);
    if (e != KEYTIER_OK)
        return demo_fail(d, "audit log: line %" PRIu64 ": %s", rep.bad_line,
                         keytier_last_error_detail());
    demo_ok(d,
            "audit log: %" PRIu64 " records, hash chain verified, anchored at "
            "record %" PRIu64 " by the service token",
            rep.records, rep.anchored_seq);
    return CLI_OK;
}

static int cmd_demo(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {"softhsm2", required_argument, NULL, OPT_SOFTHSM2},
        {"no-softhsm2", no_argument, NULL, OPT_NO_SOFTHSM2},
        {0},
    };
    struct demo d = {.cli = cli, .module = cli_default_module()};
    const char *env = getenv("SOFTHSM2_MODULE");
    d.softhsm2 = env != NULL && *env ? env : DEMO_SOFTHSM2;
    bool explicit_softhsm2 = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_MODULE:
            d.module = optarg;
            break;
        case OPT_SOFTHSM2:
            d.softhsm2 = optarg;
            explicit_softhsm2 = true;
            break;
        case OPT_NO_SOFTHSM2:
            d.softhsm2 = NULL;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (d.softhsm2 != NULL && access(d.softhsm2, R_OK) != 0) {
        if (explicit_softhsm2)
            return cli_error(cli, KEYTIER_E_NOT_FOUND, "--softhsm2 %s: %s",
                             d.softhsm2, strerror(errno));
        d.softhsm2 = NULL; /* not installed: vault A on keytier too */
    }
    if (access(d.module, R_OK) != 0)
        return cli_error(cli, KEYTIER_E_NOT_FOUND, "module %s: %s", d.module,
                         strerror(errno));

    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0' || strlen(tmp) > 128)
        tmp = "/tmp";
    snprintf(demo_dir, sizeof demo_dir, "%s/keytier-demo.XXXXXX", tmp);
    if (mkdtemp(demo_dir) == NULL) {
        int err = errno;
        demo_dir[0] = '\0';
        return cli_error(cli, KEYTIER_E_IO, "cannot create a temp dir: %s",
                         strerror(err));
    }
    struct sigaction sa = {.sa_handler = demo_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (!cli->json)
        printf("== keytier demo in %s (removed at the end)\n", demo_dir);
    fflush(stdout);
    int rc = demo_setup(&d);
    if (rc == CLI_OK)
        rc = demo_story(&d);
    demo_cleanup(&d);
    if (rc == CLI_OK && !cli->json)
        printf("== demo complete: %d steps behaved as claimed; servers "
               "stopped, temp dir removed\n",
               d.step);
    return rc;
}

const struct cli_cmd cli_demo_cmds[] = {
    {"demo", NULL, "the DESIGN.md story end to end, in a temp dir",
     "usage: keytier demo [--module PATH] [--softhsm2 PATH | --no-softhsm2]\n"
     "\n"
     "In a fresh temp dir (removed at the end): customer vault A (SoftHSM2\n"
     "when installed) and vault B (keytier), each behind its own `p11-kit\n"
     "server`; the service token; a DEP and a mailbox; a message written\n"
     "and read back; vault A frozen (SIGSTOP) and the read served by B;\n"
     "both frozen and the audited fallback to the availability key; both\n"
     "root keys destroyed and a user read refused while an internal one\n"
     "still works; recovery under new customer keys refused until an\n"
     "approver grants it with the key in its own token, the approval then\n"
     "spent, and a short approval expiring; the audit chain verified. One line "
     "per step: `ok N: ...`\n"
     "or `FAILED N: ...` (exit 1). The servers are stopped by PID on every\n"
     "exit path.\n"
     "\n"
     "  --module PATH     keytier-pkcs11.so (default: $KEYTIER_MODULE, else\n"
     "                    the installed one)\n"
     "  --softhsm2 PATH   SoftHSM2 for vault A (default: $SOFTHSM2_MODULE,\n"
     "                    else " DEMO_SOFTHSM2 ")\n"
     "JSON lines: {step, ok, message}\n",
     cmd_demo},
    {0},
};
