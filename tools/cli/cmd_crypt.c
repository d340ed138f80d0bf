/*
 * keytier encrypt | decrypt: streaming envelopes (lib/envelope/ENVELOPE.md)
 * under a mailbox key (mail shape) or a blob key below a site key (files
 * shape).
 *
 * Memory stays constant whatever the size: the library streams chunk by
 * chunk between file descriptors.  Output to a file goes to a temp file
 * beside it that is renamed over FILE only after the whole stream
 * succeeded, so a failed run leaves no partial or unauthenticated FILE.
 * Decryption to standard output writes nothing unless the whole envelope
 * authenticates: a first pass checks every chunk (decrypting into
 * /dev/null), a second pass writes the plaintext. Input that cannot be read
 * twice (a pipe) is first spooled, as ciphertext, into an unnamed temp file
 * (O_TMPFILE, gone with the process), so memory stays constant.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

enum {
    OPT_TENANT = 256,
    OPT_MAILBOX,
    OPT_SITE,
    OPT_BLOB,
    OPT_WORKLOAD,
    OPT_REQUEST_ID,
    OPT_INTERNAL,
    OPT_APPROVAL
};

struct crypt_args {
    const char *tenant, *mailbox, *site, *blob, *workload;
    const char *in, *out, *request_id, *internal, *approval;
    keytier_internal_op op; /* NONE unless --internal */
    char uuid[KEYTIER_ID_SIZE];
};

/* --internal NAME: one of the library's fixed set of operations, whose
 * list the error names. */
static int crypt_internal(struct cli *cli, const char *name,
                          keytier_internal_op *op)
{
    if (keytier_internal_op_parse(name, op) == KEYTIER_OK)
        return CLI_OK;
    const char *detail = keytier_last_error_detail();
    const char *msg = keytier_strerror(KEYTIER_E_ARGS);
    size_t n = strlen(msg);
    if (strncmp(detail, msg, n) == 0 && strncmp(detail + n, ": ", 2) == 0)
        detail += n + 2;
    return cli_usage_error(cli, "--internal: %s", detail);
}

static int crypt_parse(struct cli *cli, int argc, char **argv, bool decrypt,
                       struct crypt_args *a)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"mailbox", required_argument, NULL, OPT_MAILBOX},
        {"site", required_argument, NULL, OPT_SITE},
        {"blob", required_argument, NULL, OPT_BLOB},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"request-id", required_argument, NULL, OPT_REQUEST_ID},
        {"internal", required_argument, NULL, OPT_INTERNAL},
        {"approval", required_argument, NULL, OPT_APPROVAL},
        {"in", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'o'},
        {0},
    };
    memset(a, 0, sizeof *a);
    int c;
    while ((c = cli_getopt(cli, argc, argv, "i:o:", opts)) != -1) {
        switch (c) {
        case OPT_TENANT:
            a->tenant = optarg;
            break;
        case OPT_MAILBOX:
            a->mailbox = optarg;
            break;
        case OPT_SITE:
            a->site = optarg;
            break;
        case OPT_BLOB:
            a->blob = optarg;
            break;
        case OPT_WORKLOAD:
            a->workload = optarg;
            break;
        case OPT_REQUEST_ID:
            a->request_id = optarg;
            break;
        case OPT_INTERNAL:
            if (!decrypt)
                return cli_usage_error(cli, "--internal is for decrypt");
            a->internal = optarg;
            if (crypt_internal(cli, optarg, &a->op) != CLI_OK)
                return CLI_USAGE;
            break;
        case OPT_APPROVAL:
            if (!decrypt)
                return cli_usage_error(cli, "--approval is for decrypt");
            a->approval = optarg;
            break;
        case 'i':
            a->in = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option or missing value: %s",
                                   argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (a->tenant == NULL)
        return cli_usage_error(cli, "--tenant is required");
    if ((a->mailbox == NULL) == (a->site == NULL))
        return cli_usage_error(cli, "give --mailbox M or --site S --blob B");
    if (a->site != NULL && a->blob == NULL)
        return cli_usage_error(cli, "--site needs --blob NAME");
    if (a->mailbox != NULL && a->blob != NULL)
        return cli_usage_error(cli, "--blob goes with --site");
    if (a->workload == NULL)
        a->workload = a->mailbox ? "Exchange" : "SharePoint";
    if (a->request_id == NULL) {
        if (!cli_uuid(a->uuid))
            return cli_error(cli, KEYTIER_E_CRYPTO,
                             "no random bytes for a request id");
        a->request_id = a->uuid;
    }
    return CLI_OK;
}

/* The key data is sealed under: the mailbox key, or the blob's key below
 * the site key (created on first encryption of that blob). */
static int crypt_key(struct cli *cli, const struct crypt_args *a, bool create,
                     keytier_key **out)
{
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_request req = {a->internal ? KEYTIER_REQUEST_INTERNAL
                                       : KEYTIER_REQUEST_USER,
                           a->op, a->request_id, a->approval};
    const char *name = a->mailbox ? a->mailbox : a->site;
    keytier_key *k = NULL;
    keytier_err e =
        keytier_key_open_name(ctx, &req, a->tenant, a->workload, name, &k);
    if (e != KEYTIER_OK)
        return cli_fail_lib_in(cli, e, "%s '%s' of tenant %s (%s)",
                               a->mailbox ? "mailbox" : "site", name, a->tenant,
                               a->workload);
    if (a->mailbox != NULL) {
        *out = k;
        return CLI_OK;
    }
    keytier_key_info si;
    keytier_key_get_info(k, &si);
    keytier_key_info *kids = NULL;
    size_t n = 0;
    e = keytier_key_list(ctx, a->tenant, si.key_id, &kids, &n);
    if (e != KEYTIER_OK) {
        keytier_key_close(k);
        return cli_fail_lib(cli, e);
    }
    char id[KEYTIER_ID_SIZE] = "";
    for (size_t i = 0; i < n; i++)
        if (!strcmp(kids[i].name, a->blob))
            memcpy(id, kids[i].key_id, sizeof id);
    keytier_key_list_free(kids);
    if (id[0] == '\0') {
        if (!create) {
            keytier_key_close(k);
            return cli_error(cli, KEYTIER_E_NOT_FOUND,
                             "blob '%s' not found in site '%s' of tenant %s",
                             a->blob, a->site, a->tenant);
        }
        e = keytier_key_create(k, a->blob, id);
        if (e != KEYTIER_OK) {
            keytier_key_close(k);
            return cli_fail_lib(cli, e);
        }
    }
    keytier_key *blob = NULL;
    e = keytier_key_open(k, id, &blob);
    keytier_key_close(k);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    *out = blob;
    return CLI_OK;
}

/* Makes in readable twice: a regular file is used as it is (its start
 * offset in *start), anything else is copied into an unnamed temp file in
 * $TMPDIR (or /tmp) whose descriptor replaces *in. Ciphertext only. */
static int crypt_rewindable(struct cli *cli, int *in, off_t *start,
                            const char *what)
{
    struct stat st;
    if (fstat(*in, &st) == 0 && S_ISREG(st.st_mode)) {
        *start = lseek(*in, 0, SEEK_CUR);
        if (*start >= 0)
            return CLI_OK;
    }
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    int tmp = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (tmp < 0)
        return cli_error(cli, KEYTIER_E_IO,
                         "cannot spool %s into a temp file in %s: %s", what,
                         dir, strerror(errno));
    static unsigned char buf[1 << 16];
    for (;;) {
        ssize_t n = read(*in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            close(tmp);
            return cli_error(cli, KEYTIER_E_IO, "reading %s: %s", what,
                             strerror(err));
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(tmp, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                int err = errno;
                close(tmp);
                return cli_error(cli, KEYTIER_E_IO, "spooling %s into %s: %s",
                                 what, dir, strerror(err));
            }
            off += w;
        }
    }
    if (*in > STDERR_FILENO)
        close(*in);
    *in = tmp;
    *start = 0;
    if (lseek(tmp, 0, SEEK_SET) != 0)
        return cli_error(cli, KEYTIER_E_IO, "rewinding the spooled %s: %s",
                         what, strerror(errno));
    return CLI_OK;
}

/* Decryption to standard output: authenticate the whole envelope first,
 * then decrypt it again into the output, so a failed run writes nothing. */
static keytier_err crypt_open_verified(struct cli *cli, keytier_key *key,
                                       int in, off_t start, int out)
{
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0)
        return KEYTIER_E_IO;
    struct cli_progress *p = cli_progress_start(cli, in, "verifying");
    keytier_err e = keytier_open_stream(key, NULL, 0, in, null);
    cli_progress_stop(p, e == KEYTIER_OK);
    close(null);
    if (e != KEYTIER_OK)
        return e;
    if (lseek(in, start, SEEK_SET) != start)
        return KEYTIER_E_IO;
    p = cli_progress_start(cli, in, "decrypting");
    e = keytier_open_stream(key, NULL, 0, in, out);
    cli_progress_stop(p, e == KEYTIER_OK);
    return e;
}

static int crypt_run(struct cli *cli, int argc, char **argv, bool decrypt)
{
    struct crypt_args a;
    int rc = crypt_parse(cli, argc, argv, decrypt, &a);
    if (rc != CLI_OK)
        return rc;
    if (a.out == NULL && !decrypt && isatty(STDOUT_FILENO))
        return cli_usage_error(cli, "refusing to write ciphertext to a "
                                    "terminal: use -o FILE or a pipe");
    int in = -1;
    rc = cli_in_open(cli, a.in, &in);
    if (rc != CLI_OK)
        return rc;
    keytier_key *key = NULL;
    rc = crypt_key(cli, &a, !decrypt, &key);
    if (rc != CLI_OK)
        goto out;
    struct cli_out o;
    rc = cli_out_open(cli, &o, a.out);
    if (rc != CLI_OK)
        goto out;
    keytier_err e;
    if (decrypt && a.out == NULL) {
        off_t start = 0;
        rc = crypt_rewindable(cli, &in, &start, a.in ? a.in : "standard input");
        if (rc != CLI_OK)
            goto out;
        e = crypt_open_verified(cli, key, in, start, o.fd);
    } else {
        struct cli_progress *p =
            cli_progress_start(cli, in, decrypt ? "decrypting" : "encrypting");
        e = decrypt ? keytier_open_stream(key, NULL, 0, in, o.fd)
                    : keytier_seal_stream(key, NULL, 0, in, o.fd);
        cli_progress_stop(p, e == KEYTIER_OK);
    }
    if (e != KEYTIER_OK) {
        cli_out_abort(&o);
        rc = cli_fail_lib_in(cli, e, "%s", a.in ? a.in : "standard input");
        goto out;
    }
    rc = cli_out_commit(cli, &o);
    if (rc == CLI_OK && cli->json) {
        keytier_key_info ki;
        keytier_key_get_info(key, &ki);
        json_object *j = json_object_new_object();
        cli_json_str(j, "operation", decrypt ? "decrypt" : "encrypt");
        cli_json_str(j, "tenant", a.tenant);
        cli_json_str(j, a.mailbox ? "mailbox" : "site",
                     a.mailbox ? a.mailbox : a.site);
        cli_json_str(j, "blob", a.blob);
        cli_json_str(j, "key_id", ki.key_id);
        cli_json_str(j, "dep_id", ki.dep_id);
        cli_json_str(j, "request_id", a.request_id);
        cli_json_str(j, "internal", keytier_internal_op_name(a.op));
        cli_json_str(j, "approval", a.approval);
        cli_json_str(j, "output", a.out ? a.out : "-");
        /* With output on stdout the data is the document: no JSON. */
        if (a.out != NULL)
            cli_json_put(j);
        else
            json_object_put(j);
    }
out:
    keytier_key_close(key);
    if (in > STDERR_FILENO)
        close(in);
    return rc;
}

static int cmd_encrypt(struct cli *cli, int argc, char **argv)
{
    return crypt_run(cli, argc, argv, false);
}

static int cmd_decrypt(struct cli *cli, int argc, char **argv)
{
    return crypt_run(cli, argc, argv, true);
}

#define CRYPT_COMMON                                                           \
    "  --tenant T          the tenant (organisation id)\n"                     \
    "  --mailbox M         mail shape: data under mailbox M's key\n"           \
    "  --site S --blob B   files shape: data under blob B's key in site S\n"   \
    "  --workload W        default Exchange (--mailbox), SharePoint "          \
    "(--site)\n"                                                               \
    "  -i, --in FILE       input (default: standard input)\n"                  \
    "  -o, --out FILE      output (default: standard output); written to a\n"  \
    "                      temp file beside FILE and renamed only on "         \
    "success\n"                                                                \
    "  --request-id R      copied into audit records (default: a new UUID)\n"

const struct cli_cmd cli_crypt_cmds[] = {
    {"encrypt", NULL, "encrypt a stream into an envelope",
     "usage: keytier encrypt --tenant T (--mailbox M | --site S --blob B)\n"
     "                       [-i FILE] [-o FILE] [--request-id R]\n"
     "\n"
     "Seals the input into a chunked AES-256-GCM envelope "
     "(lib/envelope/ENVELOPE.md)\n"
     "in constant memory. A blob key is created on first use.\n" CRYPT_COMMON
     "JSON (with -o FILE): {operation, tenant, mailbox|site, blob, key_id,\n"
     "dep_id, request_id, output}\n",
     cmd_encrypt},
    {"decrypt", NULL, "decrypt an envelope",
     "usage: keytier decrypt --tenant T (--mailbox M | --site S --blob B)\n"
     "                       [-i FILE] [-o FILE] [--request-id R]\n"
     "                       [--internal OP] [--approval ID]\n"
     "\n"
     "Opens an envelope made by `keytier encrypt`. The DEP key is read by\n"
     "the fallback rule (`keytier help fallback`): a user request fails with\n"
     "exit 4 when the customer has revoked its keys.\n" CRYPT_COMMON
     "  --internal OP       the service's own processing, one of: move,\n"
     "                      index, malware-scan, ediscovery, dlp (mail\n"
     "                      shape: may use the availability key when the\n"
     "                      workload falls back, revocation included; files\n"
     "                      shape: never), recover (either shape, whatever\n"
     "                      the error; files shape with an approval)\n"
     "  --approval ID       a live approval (operation\n"
     "                      files-availability-read, the tenant, scope the\n"
     "                      DEP id): a files-shape read through the\n"
     "                      availability key needs one, else exit 10\n"
     "With -o FILE, FILE appears only after every chunk authenticated. To\n"
     "standard output nothing is written unless the whole envelope\n"
     "authenticates (a first pass checks it; input from a pipe is spooled as\n"
     "ciphertext into an unnamed temp file); otherwise exit 3.\n"
     "JSON (with -o FILE): {operation, tenant, mailbox|site, blob, key_id,\n"
     "dep_id, request_id, internal, approval, output}\n",
     cmd_decrypt},
    {0},
};
