/*
 * keytier approval request | grant | list | revoke | register | fingerprint:
 * approvals of privileged operations (DESIGN.md §2 "Approvals").  A
 * requester asks, another person grants with the key in their own token,
 * and the privileged command takes the approval's id (--approval).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

enum {
    OPT_OP = 256,
    OPT_TENANT,
    OPT_SCOPE,
    OPT_JUSTIFICATION,
    OPT_REQUESTER,
    OPT_EXPIRES,
    OPT_MULTI_USE,
    OPT_APPROVER,
    OPT_KEY,
    OPT_PIN,
    OPT_PIN_ENV,
    OPT_PIN_FILE,
    OPT_BY,
    OPT_REASON,
    OPT_NAME,
    OPT_PUBKEY,
    OPT_APPROVAL,
    OPT_TOKEN,
    OPT_LABEL,
    OPT_PUBKEY_OUT,
};

#define SPKI_FILE_MAX 4096

static const char *const state_names[] = {"requested", "granted", "used",
                                          "revoked", "expired"};

static const char *state_name(keytier_approval_state st)
{
    return (unsigned)st < sizeof state_names / sizeof state_names[0]
               ? state_names[st]
               : "unknown";
}

static json_object *approval_json(const keytier_approval_info *a)
{
    json_object *o = json_object_new_object();
    cli_json_str(o, "id", a->id);
    cli_json_str(o, "operation", keytier_approval_op_name(a->op));
    cli_json_str(o, "state", state_name(a->state));
    cli_json_str(o, "tenant", a->tenant);
    cli_json_str(o, "scope", a->scope);
    cli_json_str(o, "justification", a->justification);
    cli_json_str(o, "requester", a->requester);
    if (a->approver[0]) {
        cli_json_str(o, "approver", a->approver);
        cli_json_str(o, "approver_key", a->approver_key);
    }
    json_object_object_add(o, "single_use",
                           json_object_new_boolean(a->single_use));
    json_object_object_add(o, "created", json_object_new_int64(a->created));
    json_object_object_add(o, "expires", json_object_new_int64(a->expires));
    if (a->granted)
        json_object_object_add(o, "granted", json_object_new_int64(a->granted));
    if (a->used)
        json_object_object_add(o, "used", json_object_new_int64(a->used));
    return o;
}

/* "90" or "90s", "30m", "8h", "1d": seconds. */
static bool parse_duration(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v <= 0)
        return false;
    long long unit = 1;
    if (*end == 'm')
        unit = 60;
    else if (*end == 'h')
        unit = 3600;
    else if (*end == 'd')
        unit = 86400;
    else if (*end != 's' && *end != '\0')
        return false;
    if (*end != '\0' && end[1] != '\0')
        return false;
    if (v > INT64_MAX / unit)
        return false;
    *out = (int64_t)(v * unit);
    return true;
}

static int cmd_request(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"op", required_argument, NULL, OPT_OP},
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"justification", required_argument, NULL, OPT_JUSTIFICATION},
        {"requester", required_argument, NULL, OPT_REQUESTER},
        {"expires", required_argument, NULL, OPT_EXPIRES},
        {"multi-use", no_argument, NULL, OPT_MULTI_USE},
        {0},
    };
    const char *op_name = NULL, *tenant = NULL, *scope = NULL;
    const char *why = NULL, *requester = NULL, *expires = "8h";
    bool multi = false;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_OP:
            op_name = optarg;
            break;
        case OPT_TENANT:
            tenant = optarg;
            break;
        case OPT_SCOPE:
            scope = optarg;
            break;
        case OPT_JUSTIFICATION:
            why = optarg;
            break;
        case OPT_REQUESTER:
            requester = optarg;
            break;
        case OPT_EXPIRES:
            expires = optarg;
            break;
        case OPT_MULTI_USE:
            multi = true;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (!op_name || !tenant || !why || !requester)
        return cli_usage_error(cli, "--op, --tenant, --justification and "
                                    "--requester are required");
    keytier_approval_op op;
    if (keytier_approval_op_parse(op_name, &op) != KEYTIER_OK)
        return cli_usage_error(cli, "%s", keytier_last_error_detail());
    int64_t ttl;
    if (!parse_duration(expires, &ttl))
        return cli_usage_error(cli,
                               "--expires %s: a duration such as 90s, 30m, "
                               "8h or 1d",
                               expires);
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_approval_info a;
    keytier_err e = keytier_approval_request(
        ctx, op, tenant, scope ? scope : KEYTIER_APPROVAL_ANY, why, requester,
        ttl, !multi, &a);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json)
        cli_json_put(approval_json(&a));
    else
        printf("%s\n", a.id);
    return CLI_OK;
}

static int cmd_grant(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"approver", required_argument, NULL, OPT_APPROVER},
        {"key", required_argument, NULL, OPT_KEY},
        {"pin", required_argument, NULL, OPT_PIN},
        {"pin-env", required_argument, NULL, OPT_PIN_ENV},
        {"pin-file", required_argument, NULL, OPT_PIN_FILE},
        {0},
    };
    const char *approver = NULL, *key = NULL;
    struct cli_pin_src src = {0};
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_APPROVER:
            approver = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_PIN:
            src.value = optarg;
            break;
        case OPT_PIN_ENV:
            src.env = optarg;
            break;
        case OPT_PIN_FILE:
            src.file = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc || !approver || !key)
        return cli_usage_error(cli, "the approval's id, --approver and --key "
                                    "are required");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    char *pin = cli_pin_get(cli, &src, "approver token PIN", false, &rc);
    if (pin == NULL)
        return rc;
    keytier_approval_info a;
    keytier_err e =
        keytier_approval_grant(ctx, argv[optind], approver, key, pin, &a);
    cli_pin_free(pin);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json)
        cli_json_put(approval_json(&a));
    else
        printf("approval %s granted by %s: %s of %s (%s), until %" PRId64 "\n",
               a.id, a.approver, keytier_approval_op_name(a.op), a.tenant,
               a.scope, a.expires);
    return CLI_OK;
}

static int cmd_list(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {0},
    };
    const char *tenant = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c != OPT_TENANT)
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        tenant = optarg;
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_approval_info *list = NULL;
    size_t n = 0;
    keytier_err e = keytier_approval_list(ctx, tenant, &list, &n);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    for (size_t i = 0; i < n; i++) {
        const keytier_approval_info *a = &list[i];
        if (cli->json)
            cli_json_put(approval_json(a));
        else
            printf("%s  %-9s  %s  %s  %s  requester %s%s%s\n", a->id,
                   state_name(a->state), keytier_approval_op_name(a->op),
                   a->tenant, a->scope, a->requester,
                   a->approver[0] ? ", approver " : "", a->approver);
    }
    keytier_approval_list_free(list);
    return CLI_OK;
}

static int cmd_revoke(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"by", required_argument, NULL, OPT_BY},
        {"reason", required_argument, NULL, OPT_REASON},
        {0},
    };
    const char *by = NULL, *reason = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_BY:
            by = optarg;
            break;
        case OPT_REASON:
            reason = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc || by == NULL)
        return cli_usage_error(cli, "the approval's id and --by are required");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    keytier_err e = keytier_approval_revoke(ctx, argv[optind], by, reason);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "id", argv[optind]);
        cli_json_str(o, "state", "revoked");
        cli_json_put(o);
    } else {
        printf("approval %s revoked\n", argv[optind]);
    }
    return CLI_OK;
}

/* A DER SubjectPublicKeyInfo from a file, at most SPKI_FILE_MAX bytes. */
static int read_spki(struct cli *cli, const char *path, unsigned char *buf,
                     size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli_error(cli, KEYTIER_E_IO, "cannot read %s: %s", path,
                         strerror(errno));
    *len = fread(buf, 1, SPKI_FILE_MAX, f);
    bool more = fgetc(f) != EOF, bad = ferror(f) != 0;
    fclose(f);
    if (bad)
        return cli_error(cli, KEYTIER_E_IO, "cannot read %s", path);
    if (more || *len == 0)
        return cli_error(cli, KEYTIER_E_ARGS,
                         "%s: need a DER public key of 1 to %d bytes (e.g. "
                         "pkcs11-tool --read-object --type pubkey)",
                         path, SPKI_FILE_MAX);
    return CLI_OK;
}

static int cmd_fingerprint(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"pubkey", required_argument, NULL, OPT_PUBKEY},
        {0},
    };
    const char *pubkey = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c != OPT_PUBKEY)
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        pubkey = optarg;
    }
    if (optind != argc || pubkey == NULL)
        return cli_usage_error(cli, "--pubkey FILE is required");
    unsigned char spki[SPKI_FILE_MAX];
    size_t len = 0;
    int rc = read_spki(cli, pubkey, spki, &len);
    if (rc != CLI_OK)
        return rc;
    char fpr[KEYTIER_FINGERPRINT_SIZE];
    keytier_err e = keytier_approver_fingerprint(spki, len, fpr);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "fingerprint", fpr);
        cli_json_put(o);
    } else {
        printf("%s\n", fpr);
    }
    return CLI_OK;
}

static int cmd_register(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"pubkey", required_argument, NULL, OPT_PUBKEY},
        {"approval", required_argument, NULL, OPT_APPROVAL},
        {0},
    };
    const char *name = NULL, *pubkey = NULL, *approval = NULL;
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_NAME:
            name = optarg;
            break;
        case OPT_PUBKEY:
            pubkey = optarg;
            break;
        case OPT_APPROVAL:
            approval = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc || name == NULL || pubkey == NULL)
        return cli_usage_error(cli, "--name and --pubkey are required");
    unsigned char spki[SPKI_FILE_MAX];
    size_t len = 0;
    int rc = read_spki(cli, pubkey, spki, &len);
    if (rc != CLI_OK)
        return rc;
    keytier_ctx *ctx;
    if ((rc = cli_ctx(cli, &ctx)) != CLI_OK)
        return rc;
    keytier_err e = keytier_approver_register(ctx, name, spki, len, approval);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    char fpr[KEYTIER_FINGERPRINT_SIZE];
    if (keytier_approver_fingerprint(spki, len, fpr) != KEYTIER_OK)
        fpr[0] = '\0';
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "approver", name);
        cli_json_str(o, "fingerprint", fpr);
        cli_json_put(o);
    } else {
        printf("approver %s registered (%s)\n", name, fpr);
    }
    return CLI_OK;
}

static int cmd_keygen(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"token", required_argument, NULL, OPT_TOKEN},
        {"label", required_argument, NULL, OPT_LABEL},
        {"pubkey-out", required_argument, NULL, OPT_PUBKEY_OUT},
        {"pin", required_argument, NULL, OPT_PIN},
        {"pin-env", required_argument, NULL, OPT_PIN_ENV},
        {"pin-file", required_argument, NULL, OPT_PIN_FILE},
        {0},
    };
    const char *token = NULL, *label = NULL, *out = NULL;
    struct cli_pin_src src = {0};
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_PUBKEY_OUT:
            out = optarg;
            break;
        case OPT_PIN:
            src.value = optarg;
            break;
        case OPT_PIN_ENV:
            src.env = optarg;
            break;
        case OPT_PIN_FILE:
            src.file = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc || !token || !label || !out)
        return cli_usage_error(
            cli, "--token, --label and --pubkey-out are required");
    keytier_ctx *ctx;
    int rc = cli_ctx(cli, &ctx);
    if (rc != CLI_OK)
        return rc;
    char *pin = cli_pin_get(cli, &src, "approver token PIN", false, &rc);
    if (pin == NULL)
        return rc;
    unsigned char spki[SPKI_FILE_MAX];
    size_t len = sizeof spki;
    char uri[KEYTIER_URI_MAX], fpr[KEYTIER_FINGERPRINT_SIZE];
    keytier_err e =
        keytier_approver_keygen(ctx, token, pin, label, spki, &len, uri);
    cli_pin_free(pin);
    if (e == KEYTIER_OK)
        e = keytier_approver_fingerprint(spki, len, fpr);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    struct cli_out o;
    if ((rc = cli_out_open(cli, &o, out)) != CLI_OK)
        return rc;
    if (write(o.fd, spki, len) != (ssize_t)len) {
        cli_out_abort(&o);
        return cli_error(cli, KEYTIER_E_IO, "cannot write %s: %s", out,
                         strerror(errno));
    }
    if ((rc = cli_out_commit(cli, &o)) != CLI_OK)
        return rc;
    if (cli->json) {
        json_object *j = json_object_new_object();
        cli_json_str(j, "key", uri);
        cli_json_str(j, "fingerprint", fpr);
        cli_json_put(j);
    } else {
        printf("%s\n%s\n", uri, fpr);
    }
    return CLI_OK;
}

#define OPS_HELP                                                               \
    "Operations (--op): recover (scope: the lost DEP's id), purge (scope "     \
    "*),\n"                                                                    \
    "service-key-destroy and service-key-replace (tenant *, scope: the key\n"  \
    "label), files-availability-read (scope: the DEP id), change-approvers\n"  \
    "(tenant *, scope: the approver's name), files-offboard (scope: the\n"     \
    "files DEP's id).\n"

const struct cli_cmd cli_approval_cmds[] = {
    {"approval", "request", "ask for an approval of a privileged operation",
     "usage: keytier approval request --op OP --tenant T [--scope S]\n"
     "           --justification TEXT --requester NAME [--expires DURATION]\n"
     "           [--multi-use]\n"
     "\n"
     "Records a request and prints its id. An approver other than the\n"
     "requester grants it (keytier approval grant); the privileged command\n"
     "then takes --approval ID. --expires: 90s, 30m, 8h (default), 1d; at\n"
     "most approval.max_ttl. The approval serves one operation unless\n"
     "--multi-use. --scope defaults to * (every scope of OP and T).\n" OPS_HELP
     "JSON: {id, operation, state, tenant, scope, justification, requester,\n"
     "single_use, created, expires}\n",
     cmd_request},
    {"approval", "grant", "grant a request with the key in your token",
     "usage: keytier approval grant ID --approver NAME --key URI\n"
     "           [--pin-env VAR | --pin-file FILE | --pin PIN]\n"
     "\n"
     "Signs request ID in your token: URI is your private key's PKCS#11 URI\n"
     "(its module must be a `module` of the configuration); the PIN is\n"
     "prompted for without one of the options. NAME must be pinned with\n"
     "that key's fingerprint (approval.approver) and registered (keytier\n"
     "approval register), and may not be the requester.\n"
     "JSON: the approval as keytier approval request prints it, with\n"
     "approver, approver_key and granted.\n",
     cmd_grant},
    {"approval", "list", "list approvals and their states",
     "usage: keytier approval list [--tenant T]\n"
     "\n"
     "States: requested, granted, used, revoked, expired. An approval seen\n"
     "expired for the first time is written to the audit log.\n"
     "JSON lines: one approval per line.\n",
     cmd_list},
    {"approval", "revoke", "revoke an approval before it is used",
     "usage: keytier approval revoke ID --by NAME [--reason TEXT]\n"
     "\n"
     "A revoked approval serves no operation. Audited.\n"
     "JSON: {id, state}\n",
     cmd_revoke},
    {"approval", "register", "register an approver's public key",
     "usage: keytier approval register --name NAME --pubkey FILE\n"
     "           [--approval ID]\n"
     "\n"
     "FILE: the DER public key (ECDSA P-256, or RSA of 2048 bits or more)\n"
     "of the key pair in NAME's token, e.g. from pkcs11-tool --read-object\n"
     "--type pubkey. Its fingerprint must be pinned for NAME in the\n"
     "configuration (approval.approver = NAME sha256:HEX). Once an approver\n"
     "is registered, registering needs an approval for change-approvers of\n"
     "tenant * and scope NAME.\n"
     "JSON: {approver, fingerprint}\n",
     cmd_register},
    {"approval", "keygen", "make an approver's key pair in their token",
     "usage: keytier approval keygen --token URI --label L --pubkey-out FILE\n"
     "           [--pin-env VAR | --pin-file FILE | --pin PIN]\n"
     "\n"
     "Generates an ECDSA P-256 key pair in token URI (a token of a\n"
     "configured module): the private key never leaves it and may only\n"
     "sign. Writes the DER public key to FILE and prints the private key's\n"
     "URI (for approval grant --key) and the fingerprint to pin\n"
     "(approval.approver = NAME FINGERPRINT).\n"
     "JSON: {key, fingerprint}\n",
     cmd_keygen},
    {"approval", "fingerprint", "print a public key's fingerprint to pin",
     "usage: keytier approval fingerprint --pubkey FILE\n"
     "\n"
     "Prints sha256:HEX of the DER public key in FILE, the value of an\n"
     "approval.approver line.\n"
     "JSON: {fingerprint}\n",
     cmd_fingerprint},
    {0},
};
