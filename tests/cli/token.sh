#!/usr/bin/env bash
# keytier token init | list | keygen | destroy-key on keytier's module and
# SoftHSM2: output, JSON fields, exit codes, PIN sources and every error.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
all_output=$KT_TMP/all-output
: >"$all_output"
keep() { printf '%s\n' "$KT_LAST_OUTPUT" >>"$all_output"; }

kt_log "token list: a fresh module shows one free slot"
expect_ok kt --json token list
keep
assert_eq 1 "$(jq -s length <<<"$KT_LAST_OUTPUT")" "slots"
assert_eq false "$(jf .initialized <<<"$KT_LAST_OUTPUT")" "initialized"
assert_eq null "$(jq -r .uri <<<"$KT_LAST_OUTPUT")" "free slot has no URI"

kt_log "token init with PINs from the environment"
expect_ok kt --json token init --label vault-a --so-pin-env SO_PIN --pin-env PIN
keep
assert_eq vault-a "$(jf .label <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(jf .initialized <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(jf .user_pin_set <<<"$KT_LAST_OUTPUT")"
assert_eq "$KT_MODULE" "$(jf .module <<<"$KT_LAST_OUTPUT")"
serial=$(jf .serial <<<"$KT_LAST_OUTPUT")
assert_contains "$(jf .uri <<<"$KT_LAST_OUTPUT")" "serial=$serial;token=vault-a"

kt_log "token init with PINs from files, human output"
printf '%s\n' "$SO_PIN" >"$KT_TMP/so.pin"
printf '%s\n' "$PIN" >"$KT_TMP/user.pin"
chmod 600 "$KT_TMP/so.pin" "$KT_TMP/user.pin" # PIN files are owner-only
expect_ok kt token init --label vault-b --so-pin-file "$KT_TMP/so.pin" \
    --pin-file "$KT_TMP/user.pin"
keep
assert_contains "$KT_LAST_OUTPUT" "token 'vault-b' initialised (serial "

kt_log "token init with PINs on the command line: accepted with a warning"
expect_ok kt token init --label cmdline --so-pin "$SO_PIN" --pin "$PIN"
keep
assert_contains "$KT_LAST_OUTPUT" "keytier token init: warning: a SO PIN on the command line is visible to other users of this machine; prefer --pin-env or --pin-file"
assert_contains "$KT_LAST_OUTPUT" "keytier token init: warning: a user PIN on the command line is visible"

kt_log "token list: human and JSON lines"
expect_ok kt token list
keep
assert_contains "$KT_LAST_OUTPUT" "vault-a"
assert_contains "$KT_LAST_OUTPUT" "ready"
assert_contains "$KT_LAST_OUTPUT" "free"
expect_ok kt token list --json
assert_eq "cmdline vault-a vault-b" \
    "$(jq -r 'select(.initialized) | .label' <<<"$KT_LAST_OUTPUT" | sort | xargs)"

kt_log "token init errors"
expect_fail "keytier token init: already exists: token 'vault-a' already exists in $KT_MODULE [KEYTIER_E_EXISTS]" \
    kt token init --label vault-a --so-pin-env SO_PIN --pin-env PIN
expect_rc 12 kt token init --label vault-a --so-pin-env SO_PIN --pin-env PIN
expect_fail "keytier token init: --label is required (see 'keytier token init --help') [KEYTIER_E_ARGS]" \
    kt token init --so-pin-env SO_PIN --pin-env PIN
expect_rc 2 kt token init --so-pin-env SO_PIN --pin-env PIN
expect_fail "keytier token init: SO PIN needed: not on a terminal, use --so-pin-env VAR or --so-pin-file FILE [KEYTIER_E_ARGS]" \
    kt token init --label x </dev/null
expect_rc 2 kt token init --label x </dev/null
expect_fail "keytier token init: user PIN: environment variable NO_SUCH_VAR is not set or empty [KEYTIER_E_ARGS]" \
    kt token init --label x --so-pin-env SO_PIN --pin-env NO_SUCH_VAR
expect_fail "keytier token init: SO PIN: PIN file $KT_TMP/none: cannot open: No such file or directory [KEYTIER_E_IO]" \
    kt token init --label x --so-pin-file "$KT_TMP/none" --pin-env PIN
expect_rc 7 kt token init --label x --so-pin-file "$KT_TMP/none" --pin-env PIN
expect_fail "keytier token init: token operation failed: token 'shortpin': C_InitPIN: CKR_PIN_LEN_RANGE [KEYTIER_E_TOKEN]" \
    env P=12 "$KT_CLI" token init --label shortpin --so-pin-env SO_PIN --pin-env P
expect_fail "keytier token list: PKCS#11 module could not be loaded: $KT_TMP/no-module.so: couldn't load module: $KT_TMP/no-module.so: $KT_TMP/no-module.so: cannot open shared object file: No such file or directory [KEYTIER_E_MODULE]" \
    kt token list --module "$KT_TMP/no-module.so"

kt_log "token keygen aes256: a URI naming token, key and type"
expect_ok kt token keygen --token vault-a --label root-a --type aes256 --pin-env PIN
keep
uri=$KT_LAST_OUTPUT
assert_contains "$uri" "pkcs11:serial=$serial;token=vault-a;id=%"
assert_contains "$uri" ";object=root-a;type=secret-key"
expect_ok kt --json token keygen --token vault-b --label root-b --type aes256 \
    --pin-file "$KT_TMP/user.pin"
keep
assert_eq aes256 "$(jf .type <<<"$KT_LAST_OUTPUT")"
assert_eq vault-b "$(jf .token <<<"$KT_LAST_OUTPUT")"
assert_eq root-b "$(jf .label <<<"$KT_LAST_OUTPUT")"
assert_contains "$(jf .uri <<<"$KT_LAST_OUTPUT")" "object=root-b;type=secret-key"

kt_log "the root is sensitive and never extractable (pkcs11-tool's view)"
KT_P11_MODULE=$KT_MODULE
objs=$(kt_p11 --token-label vault-a --login --pin "$PIN" --list-objects --type secrkey 2>&1)
assert_contains "$objs" "Secret Key Object; AES length 32"
assert_contains "$objs" "label:      root-a"
assert_contains "$objs" "sensitive, always sensitive, never extractable, local"
assert_contains "$objs" "wrap, unwrap"

kt_log "token keygen errors"
expect_fail "keytier token keygen: token login failed: token 'vault-a': C_Login: CKR_PIN_INCORRECT [KEYTIER_E_LOGIN]" \
    env WRONG=9999-wrong "$KT_CLI" token keygen --token vault-a --label k --type aes256 --pin-env WRONG
expect_rc 1 env WRONG=9999-wrong "$KT_CLI" token keygen --token vault-a --label k --type aes256 --pin-env WRONG
expect_fail "keytier token keygen: already exists: token 'vault-a' already has a key 'root-a' [KEYTIER_E_EXISTS]" \
    kt token keygen --token vault-a --label root-a --type aes256 --pin-env PIN
expect_fail "keytier token keygen: no configured token matches: token 'nope' in $KT_MODULE [KEYTIER_E_TOKEN_NOT_FOUND]" \
    kt token keygen --token nope --label k --type aes256 --pin-env PIN
expect_rc 6 kt token keygen --token nope --label k --type aes256 --pin-env PIN
expect_fail "keytier token keygen: --type des3: use aes256, rsa2048, rsa3072 or rsa4096 (see 'keytier token keygen --help') [KEYTIER_E_ARGS]" \
    kt token keygen --token vault-a --label k --type des3 --pin-env PIN
expect_fail "keytier token keygen: --token, --label and --type are required (see 'keytier token keygen --help') [KEYTIER_E_ARGS]" \
    kt token keygen --token vault-a --pin-env PIN
expect_fail "keytier token keygen: unknown option --bogus (see 'keytier token keygen --help') [KEYTIER_E_ARGS]" \
    kt token keygen --bogus
expect_fail "keytier token keygen: user PIN needed: not on a terminal, use --pin-env VAR or --pin-file FILE [KEYTIER_E_ARGS]" \
    kt token keygen --token vault-a --label k --type aes256 </dev/null

kt_log "token destroy-key"
expect_ok kt --json token destroy-key --token vault-b --label root-b --pin-env PIN
assert_eq 1 "$(jf .destroyed <<<"$KT_LAST_OUTPUT")"
expect_fail "keytier token destroy-key: root key not found: token 'vault-b' has no key 'root-b' [KEYTIER_E_KEY_NOT_FOUND]" \
    kt token destroy-key --token vault-b --label root-b --pin-env PIN
expect_rc 6 kt token destroy-key --token vault-b --label root-b --pin-env PIN
expect_ok kt token keygen --token vault-b --label root-b --type aes256 --pin-env PIN

kt_log "SoftHSM2 through --module: RSA roots"
kt_softhsm2_conf "$KT_TMP/softhsm2"
expect_ok kt token init --module "$SOFTHSM2_MODULE" --label hsm --so-pin-env SO_PIN --pin-env PIN
keep
expect_ok kt token keygen --module "$SOFTHSM2_MODULE" --token hsm --label rsa-root \
    --type rsa2048 --pin-env PIN
keep
assert_contains "$KT_LAST_OUTPUT" ";token=hsm;id=%"
assert_contains "$KT_LAST_OUTPUT" ";object=rsa-root;type=private"
KT_P11_MODULE=$SOFTHSM2_MODULE
objs=$(kt_p11 --token-label hsm --login --pin "$PIN" --list-objects 2>&1)
assert_contains "$objs" "Private Key Object; RSA"
assert_contains "$objs" "Public Key Object; RSA 2048 bits"
assert_contains "$objs" "never extractable"
expect_ok kt token keygen --module "$SOFTHSM2_MODULE" --token hsm --label rsa3 \
    --type rsa3072 --pin-env PIN
expect_ok kt --json token destroy-key --module "$SOFTHSM2_MODULE" --token hsm \
    --label rsa-root --pin-env PIN
assert_eq 2 "$(jf .destroyed <<<"$KT_LAST_OUTPUT")" "both halves of the pair"

kt_log "no PIN in any output or in the module's log"
for secret in "$PIN" "$SO_PIN"; do
    ! grep -qF -- "$secret" "$all_output" || kt_fail "a PIN appears in the output"
    ! grep -qF -- "$secret" "$KT_TMP/module/keytier.log" 2>/dev/null ||
        kt_fail "a PIN appears in the module log"
done
kt_log "ok"

kt_log "PINs from a terminal prompt (a pty from script(1)): no echo, asked twice"
# tty_run COMMAND PROMPT ANSWER...: runs COMMAND on a pty; each time the
# next PROMPT ("SO PIN") is shown (echo is off by then) sends its ANSWER.
tty_run()
{
    local cmd=$1 chunk prompt answer
    shift
    TTY_OUT=
    coproc TTY { script -qec "$cmd" /dev/null 2>&1; }
    while [ $# -ge 2 ]; do
        prompt=$1 answer=$2
        shift 2
        while :; do
            IFS= read -r -d ':' -t 60 chunk <&"${TTY[0]}" ||
                kt_fail "no prompt '$prompt' from '$cmd': $TTY_OUT"
            TTY_OUT+="$chunk:"
            [[ $chunk == *"$prompt" ]] && break
        done
        printf '%s\n' "$answer" >&"${TTY[1]}"
    done
    TTY_OUT+=$(cat <&"${TTY[0]}")
    wait "$TTY_PID" || true
}
tty_run "'$KT_CLI' token init --label tty" "SO PIN" "$SO_PIN" "SO PIN (again)" "$SO_PIN" \
    "user PIN" "$PIN" "user PIN (again)" "$PIN"
assert_contains "$TTY_OUT" "token 'tty' initialised"
assert_not_contains "$TTY_OUT" "$PIN" "echoed PIN"
assert_not_contains "$TTY_OUT" "$SO_PIN" "echoed SO PIN"
tty_run "'$KT_CLI' token keygen --token tty --label k --type aes256" "user PIN" "$PIN"
assert_contains "$TTY_OUT" ";token=tty;id=%"
assert_not_contains "$TTY_OUT" "$PIN" "echoed PIN"
tty_run "'$KT_CLI' token init --label tty2; echo rc=\$?" "SO PIN" "$SO_PIN" \
    "SO PIN (again)" "different"
assert_contains "$TTY_OUT" "keytier token init: SO PIN: the two entries differ"
assert_contains "$TTY_OUT" "rc=2"
kt_log "ok (terminal)"
