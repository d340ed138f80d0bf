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

static const struct cli_cmd *const families[] = {
    cli_token_cmds,    cli_dep_cmds,       cli_tier_cmds,
    cli_crypt_cmds,    cli_audit_cmds,     cli_demo_cmds,
    cli_help_cmds,     cli_lifecycle_cmds, /* lifecycle */
    cli_approval_cmds, cli_files_cmds,
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
        "                 else the built-in defaults; `keytier help\n"
        "                 configuration`)\n"
        "  --json         one JSON document per command on stdout (JSON\n"
        "                 lines for lists); errors as {\"error\": {command,\n"
        "                 name, message, exit}}\n"
        "  --help         this text; `keytier COMMAND --help` for a command\n"
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
        "\n"
        "Errors are one line on stderr: `keytier COMMAND: what failed and\n"
        "why [KEYTIER_E_NAME]`, naming the key URI, token or file and the\n"
        "CKR_ code where a token call failed. PINs never appear.\n"
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

static void family_usage(const char *name)
{
    fprintf(stderr, "keytier %s: commands:\n", name);
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const struct cli_cmd *c = families[i]; c->family; c++)
            if (!strcmp(c->family, name))
                fprintf(stderr, "  keytier %s %s  %s\n", name,
                        c->verb ? c->verb : "", c->summary);
}

int main(int argc, char **argv)
{
    /* A remote token whose server died must not kill us on write. */
    signal(SIGPIPE, SIG_IGN);
    struct cli cli = {.name = "keytier"};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json")) {
            cli.json = true;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            cli.config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            cli.config = argv[i] + 9;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        } else {
            fprintf(stderr, "keytier: unknown option %s (see keytier --help)\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    if (i == argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    int used = 0;
    const struct cli_cmd *cmd = find_cmd(argc - i, argv + i, &used);
    if (cmd == NULL) {
        if (family_exists(argv[i])) {
            family_usage(argv[i]);
        } else {
            fprintf(stderr,
                    "keytier: unknown command '%s' (see keytier --help)\n",
                    argv[i]);
        }
        return CLI_USAGE;
    }
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
        if (!dashdash &&
            (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))) {
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
        fprintf(stderr, "keytier %s: cannot write standard output\n", name);
        rc = CLI_IO;
    }
    return rc;
}
