/*
 * keytier token init | list | keygen: preparing tokens and root keys on
 * keytier's module (default) or any PKCS#11 module (--module PATH).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef KT_DEFAULT_MODULE
#define KT_DEFAULT_MODULE "keytier-pkcs11.so"
#endif

const char *cli_default_module(void)
{
    const char *env = getenv("KEYTIER_MODULE");
    return env != NULL && *env != '\0' ? env : KT_DEFAULT_MODULE;
}

enum {
    OPT_MODULE = 256,
    OPT_LABEL,
    OPT_TOKEN,
    OPT_TYPE,
    OPT_PIN,
    OPT_PIN_ENV,
    OPT_PIN_FILE,
    OPT_SO_PIN,
    OPT_SO_PIN_ENV,
    OPT_SO_PIN_FILE,
    OPT_APPROVAL,
};

#define PIN_OPTIONS                                                            \
    {"pin", required_argument, NULL, OPT_PIN},                                 \
        {"pin-env", required_argument, NULL, OPT_PIN_ENV},                     \
    {                                                                          \
        "pin-file", required_argument, NULL, OPT_PIN_FILE                      \
    }

static json_object *token_json(const keytier_token_info *t)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "slot", json_object_new_int64((int64_t)t->slot));
    json_object_object_add(o, "initialized",
                           json_object_new_boolean(t->initialized));
    json_object_object_add(o, "user_pin_set",
                           json_object_new_boolean(t->user_pin_set));
    json_object_object_add(o, "pin_locked",
                           json_object_new_boolean(t->pin_locked));
    cli_json_str(o, "label", t->label);
    cli_json_str(o, "manufacturer", t->manufacturer);
    cli_json_str(o, "model", t->model);
    cli_json_str(o, "serial", t->serial);
    if (t->uri[0] != '\0')
        cli_json_str(o, "uri", t->uri);
    return o;
}

static int cmd_token_init(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {"label", required_argument, NULL, OPT_LABEL},
        PIN_OPTIONS,
        {"so-pin", required_argument, NULL, OPT_SO_PIN},
        {"so-pin-env", required_argument, NULL, OPT_SO_PIN_ENV},
        {"so-pin-file", required_argument, NULL, OPT_SO_PIN_FILE},
        {0},
    };
    const char *module = cli_default_module(), *label = NULL;
    struct cli_pin_src user = {0}, so = {0};
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_MODULE:
            module = optarg;
            break;
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_PIN:
            user.value = optarg;
            break;
        case OPT_PIN_ENV:
            user.env = optarg;
            break;
        case OPT_PIN_FILE:
            user.file = optarg;
            break;
        case OPT_SO_PIN:
            so.value = optarg;
            break;
        case OPT_SO_PIN_ENV:
            so.env = optarg;
            break;
        case OPT_SO_PIN_FILE:
            so.file = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (label == NULL)
        return cli_usage_error(cli, "--label is required");
    int rc;
    char *so_pin = cli_pin_get(cli, &so, "SO PIN", true, &rc);
    if (so_pin == NULL)
        return rc;
    char *user_pin = cli_pin_get(cli, &user, "user PIN", true, &rc);
    if (user_pin == NULL) {
        cli_pin_free(so_pin);
        return rc;
    }
    keytier_token_info info;
    keytier_err e = keytier_token_init(module, label, so_pin, user_pin, &info);
    cli_pin_free(so_pin);
    cli_pin_free(user_pin);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = token_json(&info);
        cli_json_str(o, "module", module);
        cli_json_put(o);
    } else {
        printf("token '%s' initialised (serial %s) in %s\n  %s\n", info.label,
               info.serial, module, info.uri);
    }
    return CLI_OK;
}

static int cmd_token_list(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {0},
    };
    const char *module = cli_default_module();
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        if (c != OPT_MODULE)
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        module = optarg;
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    keytier_token_info *list = NULL;
    size_t n = 0;
    keytier_err e = keytier_token_list(module, &list, &n);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (!cli->json)
        printf("%-10s %-32s %-16s %-13s %s\n", "SLOT", "LABEL", "SERIAL",
               "STATE", "URI");
    for (size_t i = 0; i < n; i++) {
        const keytier_token_info *t = &list[i];
        if (cli->json) {
            cli_json_put(token_json(t));
            continue;
        }
        const char *state = !t->initialized    ? "free"
                            : t->pin_locked    ? "pin-locked"
                            : !t->user_pin_set ? "no-user-pin"
                                               : "ready";
        printf("0x%-8lx %-32s %-16s %-13s %s\n", t->slot,
               t->initialized ? t->label : "-", t->serial, state,
               t->initialized ? t->uri : "-");
    }
    keytier_token_list_free(list);
    return CLI_OK;
}

static const struct {
    const char *name;
    keytier_root_type type;
} key_types[] = {
    {"aes256", KEYTIER_ROOT_TYPE_AES256},
    {"rsa2048", KEYTIER_ROOT_TYPE_RSA2048},
    {"rsa3072", KEYTIER_ROOT_TYPE_RSA3072},
    {"rsa4096", KEYTIER_ROOT_TYPE_RSA4096},
};

static int cmd_token_keygen(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"label", required_argument, NULL, OPT_LABEL},
        {"type", required_argument, NULL, OPT_TYPE},
        PIN_OPTIONS,
        {0},
    };
    const char *module = cli_default_module(), *token = NULL, *label = NULL,
               *type = NULL;
    struct cli_pin_src user = {0};
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_MODULE:
            module = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_TYPE:
            type = optarg;
            break;
        case OPT_PIN:
            user.value = optarg;
            break;
        case OPT_PIN_ENV:
            user.env = optarg;
            break;
        case OPT_PIN_FILE:
            user.file = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (token == NULL || label == NULL || type == NULL)
        return cli_usage_error(cli, "--token, --label and --type are required");
    size_t t = 0;
    while (t < sizeof key_types / sizeof key_types[0] &&
           strcmp(key_types[t].name, type) != 0)
        t++;
    if (t == sizeof key_types / sizeof key_types[0])
        return cli_usage_error(
            cli, "--type %s: use aes256, rsa2048, rsa3072 or rsa4096", type);
    int rc;
    char *pin = cli_pin_get(cli, &user, "user PIN", false, &rc);
    if (pin == NULL)
        return rc;
    char uri[KEYTIER_URI_MAX];
    keytier_err e = keytier_root_generate(module, token, pin, label,
                                          key_types[t].type, uri);
    cli_pin_free(pin);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "token", token);
        cli_json_str(o, "label", label);
        cli_json_str(o, "type", key_types[t].name);
        cli_json_str(o, "uri", uri);
        cli_json_str(o, "module", module);
        cli_json_put(o);
    } else {
        printf("%s\n", uri);
    }
    return CLI_OK;
}

/* With the library configuration (--config, or the file the library
 * finds by itself) the service token is known, and destroying a key in it
 * needs an approval. */
static bool lib_config_in_force(const struct cli *cli)
{
    char dflt[4096];
    return cli->config != NULL || keytier_config_default(dflt, sizeof dflt);
}

static int cmd_token_destroy_key(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"label", required_argument, NULL, OPT_LABEL},
        {"approval", required_argument, NULL, OPT_APPROVAL},
        PIN_OPTIONS,
        {0},
    };
    const char *module = cli_default_module(), *token = NULL, *label = NULL;
    const char *approval = NULL;
    struct cli_pin_src user = {0};
    int c;
    while ((c = cli_getopt(cli, argc, argv, "", opts)) != -1) {
        switch (c) {
        case OPT_MODULE:
            module = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_APPROVAL:
            approval = optarg;
            break;
        case OPT_PIN:
            user.value = optarg;
            break;
        case OPT_PIN_ENV:
            user.env = optarg;
            break;
        case OPT_PIN_FILE:
            user.file = optarg;
            break;
        default:
            return cli_usage_error(cli, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
    if (token == NULL || label == NULL)
        return cli_usage_error(cli, "--token and --label are required");
    int rc;
    char *pin = cli_pin_get(cli, &user, "user PIN", false, &rc);
    if (pin == NULL)
        return rc;
    size_t n = 0;
    keytier_err e;
    if (approval != NULL || lib_config_in_force(cli)) {
        keytier_ctx *ctx;
        if ((rc = cli_ctx(cli, &ctx)) != CLI_OK) {
            cli_pin_free(pin);
            return rc;
        }
        e = keytier_root_destroy_approved(ctx, approval, module, token, pin,
                                          label, &n);
    } else {
        e = keytier_root_destroy(module, token, pin, label, &n);
    }
    cli_pin_free(pin);
    if (e != KEYTIER_OK)
        return cli_fail_lib(cli, e);
    if (cli->json) {
        json_object *o = json_object_new_object();
        cli_json_str(o, "token", token);
        cli_json_str(o, "label", label);
        json_object_object_add(o, "destroyed",
                               json_object_new_int64((int64_t)n));
        cli_json_put(o);
    } else {
        printf("destroyed key '%s' in token '%s' (%zu object%s)\n", label,
               token, n, n == 1 ? "" : "s");
    }
    return CLI_OK;
}

#define PIN_HELP                                                               \
    "PIN sources (one of; default: a prompt without echo on the terminal):\n"  \
    "  --pin-env VAR     read the user PIN from environment variable VAR\n"    \
    "  --pin-file FILE   read it from the first line of FILE\n"                \
    "  --pin PIN         on the command line (visible to other users: a\n"     \
    "                    warning is printed)\n"

const struct cli_cmd cli_token_cmds[] = {
    {"token", "init", "initialise a token in the module's free slot",
     "usage: keytier token init --label L [--module PATH] [PIN options]\n"
     "\n"
     "Initialises the token of the first free slot as L (C_InitToken), then\n"
     "sets the user PIN as security officer (C_InitPIN). Prints the token's\n"
     "label, serial and PKCS#11 URI.\n"
     "\n"
     "  --module PATH     PKCS#11 module (default: $KEYTIER_MODULE, else the\n"
     "                    installed keytier-pkcs11.so)\n" PIN_HELP
     "  --so-pin-env VAR, --so-pin-file FILE, --so-pin PIN\n"
     "                    the security officer PIN, likewise\n"
     "A prompt asks each PIN twice.\n"
     "JSON: {slot, initialized, user_pin_set, pin_locked, label, "
     "manufacturer,\n"
     "model, serial, uri, module}\n",
     cmd_token_init},
    {"token", "list", "list the module's tokens",
     "usage: keytier token list [--module PATH]\n"
     "\n"
     "One line per slot with a token: slot, label, serial, state (ready,\n"
     "no-user-pin, pin-locked, free) and the token URI.\n"
     "JSON lines: {slot, initialized, user_pin_set, pin_locked, label,\n"
     "manufacturer, model, serial, uri}\n",
     cmd_token_list},
    {"token", "keygen", "generate a non-extractable root key",
     "usage: keytier token keygen --token L --label K\n"
     "                            --type aes256|rsa2048|rsa3072|rsa4096\n"
     "                            [--module PATH] [PIN options]\n"
     "\n"
     "Generates root key K in token L, logged in as user: sensitive, never\n"
     "extractable, allowed to wrap and unwrap (RSA: a key pair, the public\n"
     "key wraps). Prints the key's PKCS#11 URI, for `keytier dep create`.\n"
     "\n"
     "  --module PATH     PKCS#11 module (default: $KEYTIER_MODULE, else the\n"
     "                    installed keytier-pkcs11.so)\n" PIN_HELP
     "JSON: {token, label, type, uri, module}\n",
     cmd_token_keygen},
    {"token", "destroy-key", "destroy a root key (the customer revokes it)",
     "usage: keytier token destroy-key --token L --label K [--module PATH]\n"
     "                                 [--approval ID] [PIN options]\n"
     "\n"
     "Destroys every object labelled K in token L (an AES root, or both\n"
     "halves of an RSA pair). When both customer keys of a DEP are gone,\n"
     "user reads are refused (access revoked, exit 4) while internal\n"
     "operations may still use the availability key.\n"
     "With the library configuration (--config, $KEYTIER_LIB_CONF or the\n"
     "file the library reads by default), a key in its service token is\n"
     "destroyed only with a live approval for operation\n"
     "service-key-destroy of tenant * and scope K (--approval).\n"
     "\n"
     "  --module PATH     PKCS#11 module (default: $KEYTIER_MODULE, else the\n"
     "                    installed keytier-pkcs11.so)\n" PIN_HELP
     "JSON: {token, label, destroyed}\n",
     cmd_token_destroy_key},
    {0},
};
