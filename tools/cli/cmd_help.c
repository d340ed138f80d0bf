/*
 * keytier help [TOPIC]: the configuration file, the fallback rule and the
 * envelope guarantees, for people at a terminal.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char help_configuration[] =
    "keytier help configuration\n"
    "\n"
    "The library reads one file: --config FILE, else $KEYTIER_LIB_CONF, else\n"
    "$XDG_CONFIG_HOME/keytier/keytier-lib.conf (~/.config/keytier/...) if it\n"
    "exists, else /etc/keytier/keytier-lib.conf if it exists, else built-in\n"
    "defaults (no modules; store at $XDG_DATA_HOME/keytier/keytier.db or\n"
    "~/.local/share/keytier/keytier.db). keytier.conf(5) describes every\n"
    "key; commented examples: keytier-lib.conf.example, and a complete\n"
    "setup with two remote vaults: keytier-cli.conf.example (in hsm-config/\n"
    "of the sources, /usr/share/doc/keytier/examples/ when installed).\n"
    "\n"
    "Format: `key = value` lines; `#` starts a comment. An unknown key, a bad\n"
    "value or a key given twice is an error naming the file, line and key.\n"
    "\n"
    "  module = PATH          a PKCS#11 module to load (repeatable)\n"
    "  remote = unix:path=S   a token served by `p11-kit server` on socket S\n"
    "                         (through p11-kit-client.so; repeatable)\n"
    "  service_token = URI    the token that holds availability keys and\n"
    "                         the audit log's anchor key\n"
    "  store = PATH           the metadata store (SQLite)\n"
    "  pin.LABEL = SRC        user PIN of token LABEL: env:VAR, file:PATH or\n"
    "                         value:PIN (then keep the file 0600)\n"
    "  log_level, log_file    error|warning|info|debug; default stderr\n"
    "  log_target = syslog    to the system logger (journald) instead;\n"
    "                         log_syslog_socket = PATH (default /dev/log)\n"
    "  dep_limit = 50         DEPs per tenant and workload\n"
    "  allow_oaep_sha1 = no   RSA roots on tokens without OAEP SHA-256\n"
    "  envelope_chunk_size    plaintext bytes per envelope chunk\n"
    "  workload.W.shape = mail|files, workload.W.availability_key =\n"
    "  aes256|rsa2048, workload.W.dep_limit = N\n"
    "  avail.call_deadline_ms, avail.hedge_ms, avail.cache_ttl_ms,\n"
    "  avail.cache_refresh_ahead_ms (default ttl/5; at most ttl/2, and\n"
    "  ttl - refresh_ahead >= 1000), avail.cache_alert_after_ms (default\n"
    "  refresh_ahead/2; refresh_ahead - alert_after must exceed\n"
    "  min(hedge_ms, call_deadline_ms) + call_deadline_ms, so the alert\n"
    "  comes before expiry), avail.cache_retry_ms (>= 100; default at\n"
    "  most refresh_ahead/4): a combination that breaks a rule is refused\n"
    "  at open naming the keys,\n"
    "  avail.audit_log = PATH (default: the store path + .audit.jsonl),\n"
    "  node = NAME   this node's name in its audit records (default: the\n"
    "                host name); each node on a store needs its own\n"
    "                avail.audit_log (`keytier audit verify --help`),\n"
    "  avail.outage_fallback.W = yes|no   (`keytier help fallback`)\n"
    "  avail.stats_publish_ms = 10000   how often a process with a cache\n"
    "                publishes its counters to the store for `keytier\n"
    "                stats` and `keytier health` (0: never)\n"
    "  approval.approver = NAME sha256:HEX   an approver and the fingerprint\n"
    "                         of their public key (repeatable; `keytier\n"
    "                         approval --help`)\n"
    "  approval.max_ttl = 28800   longest life of an approval, seconds\n"
    "  approval.required = yes    privileged operations need an approval\n"
    "  worker.batch = 256         keys a worker claims at once\n"
    "  worker.lease_ms = 30000    how long a claim is its worker's own\n"
    "  worker.poll_ms = 5000      a worker's pause when nothing is runnable\n"
    "\n"
    "Token commands (token init/list/keygen) need no configuration: they\n"
    "work on --module PATH, default $KEYTIER_MODULE, else the installed\n"
    "keytier-pkcs11.so, whose own file is named by $KEYTIER_CONF, else\n"
    "/etc/keytier/keytier.conf (keytier.conf.example).\n";

static const char help_fallback[] =
    "keytier help fallback\n"
    "\n"
    "Reading a DEP key (every decrypt, every mailbox/site create):\n"
    " 1. one customer key, picked at random, is asked to unwrap it;\n"
    " 2. if it fails (or is slower than avail.hedge_ms) the other one too;\n"
    " 3. if both fail, each failure is classified by its CKR_ code:\n"
    "    - system (token absent, device error, session lost, server\n"
    "      unreachable, call past avail.call_deadline_ms): the\n"
    "      availability key unwraps it and an audit record `Fallback to\n"
    "      availability key` names both errors and the request id;\n"
    "    - denied (key destroyed, CKA_UNWRAP off, PIN changed or locked,\n"
    "      wrapped key refused): a user request fails with `access\n"
    "      revoked` (exit 4) and no fallback.\n"
    " 4. internal operations are a fixed set (`decrypt --internal OP`),\n"
    "    decided per workload shape:\n"
    "      move, index, malware-scan, ediscovery, dlp: mail shape, when\n"
    "        the workload falls back on outages, whatever the class;\n"
    "        files shape, never;\n"
    "      recover: either shape, whatever the class;\n"
    "    the library's own re-encryption (roll, assign, migrate) never.\n"
    "\n"
    "Per workload: mail-shaped workloads fall back on outages; the files\n"
    "shape (SharePoint) only for the internal operation `recover`\n"
    "(avail.outage_fallback.W = yes|no changes the outage part). On the\n"
    "files shape every read through the availability key first uses a live\n"
    "approval (`decrypt --approval ID`; operation files-availability-read,\n"
    "scope the DEP id, see `keytier approval --help`), named in its audit\n"
    "record; without one it fails with exit 10. Unwrapped DEP keys are\n"
    "cached for avail.cache_ttl_ms. `keytier audit list` shows the records,\n"
    "`keytier audit verify` checks their hash chain.\n";

static const char help_envelope[] =
    "keytier help envelope\n"
    "\n"
    "`keytier encrypt` writes a chunked AES-256-GCM envelope "
    "(lib/envelope/ENVELOPE.md):\n"
    "a header naming the tenant and key and committing to the key, then\n"
    "chunks each authenticated with its index, the last one marked final.\n"
    "\n"
    "`keytier decrypt -o FILE` writes to a temp file beside FILE and renames\n"
    "it only after the final chunk authenticated: a failed run leaves no\n"
    "FILE (an existing FILE is untouched). To standard output, decrypt\n"
    "first authenticates the whole envelope, then decrypts it again into\n"
    "the output: a bad chunk, a dropped, repeated or reordered chunk, or a\n"
    "missing end stops decrypt with exit 3 and an error line before any\n"
    "plaintext is written. Input from a pipe is spooled, as ciphertext, into\n"
    "an unnamed temp file in $TMPDIR (or /tmp) so it can be read twice.\n"
    "`keytier encrypt -o FILE` likewise leaves no partial FILE.\n";

static const struct {
    const char *name;
    const char *text;
} topics[] = {
    {"configuration", help_configuration},
    {"fallback", help_fallback},
    {"envelope", help_envelope},
};

static int cmd_help(struct cli *cli, int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error(cli,
                               "one topic: configuration, fallback, envelope");
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        if (!strcmp(argv[1], topics[i].name)) {
            fputs(topics[i].text, stdout);
            return CLI_OK;
        }
    return cli_usage_error(cli, "no help topic '%s'", argv[1]);
}

const struct cli_cmd cli_help_cmds[] = {
    {"help", NULL, "help on a topic: configuration, fallback, envelope",
     "usage: keytier help configuration | fallback | envelope\n", cmd_help},
    {0},
};
