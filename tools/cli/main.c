/*
 * keytier - the command line of libkeytier.
 *
 *   keytier [--config FILE] [--json] COMMAND [ARGS...]
 *
 * Commands come from the tables of the cmd_<family>.c files; this file
 * parses the global options, finds the row, answers --help and maps the
 * result to the documented exit codes.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kt_version.h"

static const struct cli_cmd *const families[] = {
    cli_token_cmds,    cli_dep_cmds,       cli_tier_cmds,
    cli_crypt_cmds,    cli_audit_cmds,     cli_demo_cmds,
    cli_help_cmds,     cli_lifecycle_cmds, /* lifecycle */
    cli_approval_cmds, cli_files_cmds,     cli_worker_cmds,
    cli_ops_cmds,
};

#define N_FAMILIES (sizeof families / sizeof families[0])

static void usage(FILE *f)
{
    fputs("usage: keytier [--config FILE] [--json] COMMAND [ARGS...]\n"
          "\n"
          "Customer-held key encryption at rest over PKCS#11 tokens: tokens\n"
          "and root keys, data encryption policies (DEPs), mailbox and site\n"
          "keys, streaming envelopes and the audit log.\n"
          "\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const struct cli_cmd *c = families[i]; c->family; c++) {
            char name[40];
            snprintf(name, sizeof name, "%s%s%s", c->family, c->verb ? " " : "",
                     c->verb ? c->verb : "");
            fprintf(f, "  %-18s %s\n", name, c->summary);
        }
    fputs(
        "\n"
        "Options:\n"
        "  --config FILE  library configuration (default: $KEYTIER_LIB_CONF,\n"
        "                 else the per-user or the system-wide file, else\n"
        "                 the built-in defaults; `keytier help\n"
        "                 configuration`)\n"
        "  --json         one JSON document per command on stdout (JSON\n"
        "                 lines for lists); errors as {\"error\": {command,\n"
        "                 name, message, exit}}\n"
        "  --help         this text; `keytier COMMAND --help` for a command\n"
        "  --version      the versions of keytier and the loaded libkeytier\n"
        "\n"
        "Exit codes:\n"
        "  0  success\n"
        "  1  failure (token, store, configuration, ...)\n"
        "  2  bad command line\n"
        "  3  data refused: altered, truncated or under another key\n"
        "  4  access revoked: the customer keys refused (user request)\n"
        "  5  keys unavailable: no customer key answered, no fallback\n"
        "  6  not found: tenant, DEP, mailbox, site, blob, token or key\n"
        "  7  a file could not be read or written\n"
        "  8  audit log altered (keytier audit verify)\n"
        "  9  audit log intact, but its newest records are not anchored\n"
        "     (keytier audit verify)\n"
        "  10 no live approval: the privileged operation needs one, or the\n"
        "     approval is expired, used, revoked, altered or for something\n"
        "     else (keytier approval)\n"
        "  11 audit log empty: nothing verified (keytier audit verify)\n"
        "  12 conflict with the current state: already exists\n"
        "     (KEYTIER_E_EXISTS), both customer keys in one token\n"
        "     (KEYTIER_E_SAME_TOKEN), DEP disabled, purged, rolling or\n"
        "     migrating (KEYTIER_E_DEP_STATE, KEYTIER_E_DEP_DISABLED), a\n"
        "     files DEP already in the region (KEYTIER_E_DEP_REGION), an\n"
        "     offboarded DEP (KEYTIER_E_OFFBOARDED)\n"
        "  13 limit reached: DEPs per tenant and workload\n"
        "     (KEYTIER_E_DEP_LIMIT), key tier depth (KEYTIER_E_DEPTH)\n"
        "  14 tenant purged: its keys were destroyed, its data is\n"
        "     crypto-shredded (KEYTIER_E_PURGED)\n"
        "  15 store unreachable: the PostgreSQL server refused or lost the\n"
        "     connection (KEYTIER_E_STORE_UNAVAILABLE); retry later\n"
        "`keytier health` has its own: 0 healthy, 1 degraded, 2 critical,\n"
        "3 unknown (`keytier health --help`).\n"
        "\n"
        "Errors are one line on stderr: `keytier COMMAND: what failed and\n"
        "why [KEYTIER_E_NAME]`, naming the key URI, token or file and the\n"
        "CKR_ code where a token call failed; command-line errors are\n"
        "KEYTIER_E_ARGS (exit 2), files that cannot be read or written\n"
        "KEYTIER_E_IO (exit 7). With --json the error document's name is\n"
        "the same KEYTIER_E_NAME. PINs never appear.\n"
        "Help (`--help`, `COMMAND --help`, `FAMILY --help`, `help TOPIC`)\n"
        "goes to stdout with exit 0.\n"
        "Help topics: keytier help configuration | fallback | envelope\n",
        f);
}

static const struct cli_cmd *find_cmd(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const struct cli_cmd *c = families[i]; c->family; c++) {
            if (strcmp(c->family, argv[0]) != 0)
                continue;
            if (c->verb == NULL) {
                *used = 1;
                return c;
            }
            if (argc > 1 && !strcmp(c->verb, argv[1])) {
                *used = 2;
                return c;
            }
        }
    return NULL;
}

static bool family_exists(const char *name)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const struct cli_cmd *c = families[i]; c->family; c++)
            if (!strcmp(c->family, name))
                return true;
    return false;
}

static void family_usage(FILE *f, const char *name)
{
    fprintf(f, "usage: keytier %s COMMAND [ARGS...]\n\nCommands:\n", name);
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const struct cli_cmd *c = families[i]; c->family; c++)
            if (!strcmp(c->family, name))
                fprintf(f, "  keytier %s %-12s %s\n", name,
                        c->verb ? c->verb : "", c->summary);
    fprintf(f, "\n`keytier %s COMMAND --help` for a command.\n", name);
}

static bool is_help(const char *arg)
{
    return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

/* No command of argv[0]: `keytier FAMILY --help` is help (stdout, 0); an
 * unknown family or verb is a usage error (stderr, 2). */
static int no_cmd(struct cli *cli, int argc, char **argv)
{
    if (!family_exists(argv[0]))
        return cli_usage_error(cli, "unknown command '%s'", argv[0]);
    if (argc > 1 && is_help(argv[1])) {
        family_usage(stdout, argv[0]);
        return CLI_OK;
    }
    family_usage(stderr, argv[0]);
    cli->name = argv[0];
    if (argc == 1)
        return cli_usage_error(cli, "a command is needed");
    return cli_usage_error(cli, "unknown command '%s'", argv[1]);
}

int main(int argc, char **argv)
{
    /* A remote token whose server died must not kill us on write. */
    signal(SIGPIPE, SIG_IGN);
    struct cli cli = {.name = NULL};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json")) {
            cli.json = true;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            cli.config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            cli.config = argv[i] + 9;
        } else if (is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--version")) {
            /* The library is the one loaded, which a packager may have
             * upgraded apart from the command. */
            printf("keytier %s (libkeytier %s)\n", KT_VERSION,
                   keytier_version());
            return CLI_OK;
        } else {
            return cli_usage_error(&cli, "unknown option %s", argv[i]);
        }
    }
    if (i == argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    int used = 0;
    const struct cli_cmd *cmd = find_cmd(argc - i, argv + i, &used);
    if (cmd == NULL)
        return no_cmd(&cli, argc - i, argv + i);
    static char name[48];
    snprintf(name, sizeof name, "%s%s%s", cmd->family, cmd->verb ? " " : "",
             cmd->verb ? cmd->verb : "");
    cli.name = name;

    /* The command's own arguments: argv[0] is the command name for
     * getopt; --json is accepted after the command as well; --help
     * anywhere before "--" prints the command's help. */
    int cargc = 0;
    char **cargv = calloc((size_t)argc + 1, sizeof *cargv);
    if (cargv == NULL)
        return CLI_ERROR;
    cargv[cargc++] = name;
    bool dashdash = false;
    for (int j = i + used; j < argc; j++) {
        if (!dashdash && !strcmp(argv[j], "--"))
            dashdash = true;
        if (!dashdash && is_help(argv[j])) {
            fputs(cmd->usage, stdout);
            free(cargv);
            return CLI_OK;
        }
        if (!dashdash && !strcmp(argv[j], "--json")) {
            cli.json = true;
            continue;
        }
        cargv[cargc++] = argv[j];
    }
    optind = 0; /* glibc: full reinitialisation of getopt */
    int rc = cmd->run(&cli, cargc, cargv);
    keytier_ctx_close(cli.ctx);
    free(cargv);
    if (fflush(stdout) != 0 && rc == CLI_OK) {
        fprintf(stderr, "keytier %s: cannot write standard output [%s]\n", name,
                keytier_error_name(KEYTIER_E_IO));
        rc = CLI_IO;
    }
    return rc;
}
