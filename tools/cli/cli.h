/*
 * cli.h - shared types of the keytier command line.
 *
 * The CLI is a client of libkeytier's public header only (keytier.h): the
 * STYLE wall.  Each command family lives in its own cmd_<family>.c and
 * exposes its commands as rows of the table in main.c.
 */
#ifndef KT_CLI_H
#define KT_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "keytier.h"

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* Exit codes (documented in `keytier --help`; stable for scripts). */
enum cli_exit {
    CLI_OK = 0,
    CLI_ERROR = 1,       /* anything else: token, store, configuration */
    CLI_USAGE = 2,       /* bad command line */
    CLI_AUTH = 3,        /* data altered, truncated or under another key */
    CLI_REVOKED = 4,     /* the customer keys refused: access revoked */
    CLI_UNAVAILABLE = 5, /* no key could be reached */
    CLI_NOT_FOUND = 6,   /* tenant, DEP, mailbox, site, token or key */
    CLI_IO = 7,          /* a file could not be read or written */
    CLI_TAMPERED = 8,    /* audit log altered */
    CLI_UNANCHORED = 9,  /* audit log intact, newest records unanchored */
    CLI_APPROVAL = 10,   /* no live approval for a privileged operation */
    CLI_EMPTY = 11,      /* audit log empty: nothing verified */
    CLI_CONFLICT = 12,   /* conflicts with the current state: exists... */
    CLI_LIMIT = 13,      /* a limit is reached: DEPs, tier depth */
    CLI_PURGED = 14,     /* tenant purged: keys destroyed, data shredded */
    CLI_STORE_DOWN = 15, /* store unreachable: retry later */
};

struct cli {
    const char *config; /* --config FILE, or NULL (library default) */
    bool json;          /* --json */
    const char *name;   /* "token init": names the command in errors; NULL
                         * before the command is known */
    keytier_ctx *ctx;   /* opened on first use, closed at exit */
};

/* One command: `family verb` (verb NULL for one-word commands). */
struct cli_cmd {
    const char *family;
    const char *verb;
    const char *summary;
    const char *usage; /* full --help text */
    int (*run)(struct cli *cli, int argc, char **argv);
};

/* ---- util.c --------------------------------------------------------- */

/* Opens the library context on first use. */
int cli_ctx(struct cli *cli, keytier_ctx **out);
/* Reports a library error (one line on stderr; a JSON error document on
 * stdout with --json) and returns its exit code. */
int cli_fail_lib(struct cli *cli, keytier_err e);
/* Same, naming the object first: "mailbox 'bob' of tenant acme: ...". */
int cli_fail_lib_in(struct cli *cli, keytier_err e, const char *fmt, ...)
    CLI_PRINTF(3, 4);
/* Reports a CLI-side error named by e (the line ends with "[KEYTIER_E_...]";
 * --json: the same name) and returns e's exit code. */
int cli_error(struct cli *cli, keytier_err e, const char *fmt, ...)
    CLI_PRINTF(3, 4);
/* Exit code of an error (the table in util.c). */
int cli_exit_of(keytier_err e);
/* Prints one JSON document (a line) on stdout and releases it. */
void cli_json_put(json_object *obj);
/* Adds a string field unless s is NULL. */
void cli_json_str(json_object *obj, const char *key, const char *s);
const char *cli_dep_state_name(keytier_dep_state st);
/* A random (version 4) UUID for request ids. */
bool cli_uuid(char out[KEYTIER_ID_SIZE]);

/* Per-command option parsing: the getopt_long loop with the usage text
 * printed on `--help`; returns -1 when done, or the option. */
struct option;
int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts);
int cli_usage_error(struct cli *cli, const char *fmt, ...) CLI_PRINTF(2, 3);

/* PINs (pin.c): from --pin-env VAR, --pin-file FILE, --pin VALUE (with a
 * warning), or a no-echo prompt on the terminal.  The buffer is wiped by
 * cli_pin_free. */
struct cli_pin_src {
    const char *env;
    const char *file;
    char *value; /* argv string, wiped after reading */
};
char *cli_pin_get(struct cli *cli, const struct cli_pin_src *src,
                  const char *what, bool confirm, int *rc);
void cli_pin_free(char *pin);

/* Output files (util.c): written to a temp file beside FILE, renamed over
 * it only by cli_out_commit. */
struct cli_out {
    const char *path; /* NULL: stdout */
    char *tmp;
    int fd;
};
int cli_out_open(struct cli *cli, struct cli_out *o, const char *path);
int cli_out_commit(struct cli *cli, struct cli_out *o);
void cli_out_abort(struct cli_out *o);
int cli_in_open(struct cli *cli, const char *path, int *fd);
/* One line of f into buf (max bytes, newline included, NUL-terminated:
 * buf holds max + 1). Returns its length; 0 at end of file; -1 on a read
 * error (errno set); -2 when the line is longer than max (nothing more of
 * it is read). */
long cli_read_line(FILE *f, char *buf, size_t max);

/* Progress on a terminal (stderr) while a stream runs: a thread watching
 * the input offset.  No-op unless stderr is a terminal, --json is off and
 * the input is a regular file. */
struct cli_progress;
struct cli_progress *cli_progress_start(struct cli *cli, int in_fd,
                                        const char *what);
void cli_progress_stop(struct cli_progress *p, bool ok);

/* ---- cmd_dep.c: the health of a DEP's root keys --------------------- */

/* Probes dep_id's roots now (keytier_dep_health) and shows each: text
 * lines starting with indent, or the object "health" added to o (with
 * --json).  A purged DEP has none: "purged (crypto-shredded)", and in JSON
 * "health": null.  Returns CLI_OK or the exit code of the error reported. */
int cli_health_show(struct cli *cli, keytier_ctx *ctx, const char *dep_id,
                    keytier_dep_state state, json_object *o,
                    const char *indent);

/* ---- command families ------------------------------------------------ */

extern const struct cli_cmd cli_token_cmds[];
extern const struct cli_cmd cli_dep_cmds[];
extern const struct cli_cmd cli_tier_cmds[];
extern const struct cli_cmd cli_crypt_cmds[];
extern const struct cli_cmd cli_audit_cmds[];
extern const struct cli_cmd cli_demo_cmds[];
extern const struct cli_cmd cli_help_cmds[];
extern const struct cli_cmd cli_lifecycle_cmds[]; /* lifecycle */
extern const struct cli_cmd cli_approval_cmds[];
extern const struct cli_cmd cli_files_cmds[]; /* offboard */
extern const struct cli_cmd cli_worker_cmds[];
extern const struct cli_cmd cli_ops_cmds[]; /* health, stats */

/* Default module for token commands: $KEYTIER_MODULE, else the installed
 * keytier-pkcs11.so. */
const char *cli_default_module(void);

#endif /* KT_CLI_H */
