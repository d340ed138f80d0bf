# Shared setup of the CLI scripts outage.sh runs (cli_read.sh, cli_ops.sh),
# sourced after tests/common.sh:
#
#   outage_cli_setup NAME PREFIX [CONF_LINE...]
#       the directory $KT_OUTAGE_DIR/NAME as $dir (and the working
#       directory), PIN, `kt`, both vaults thawed at exit; RSA root keys
#       PREFIXA in VaultA and PREFIXB in VaultB; $dir/lib.conf (exported as
#       KEYTIER_LIB_CONF) with both servers, the local service token, the
#       call deadline $DEADLINE_MS, a hedge of 200 ms and each CONF_LINE;
#       a DEP ($dep) of tenant acme with mailbox alice, and $dir/pt
#       encrypted to $dir/ct.
#
# Environment (outage.sh): KT_OUTAGE_DIR, KT_OUTAGE_ADDR_A/B,
# KT_OUTAGE_PID_A/B; meson: KT_CLI, P11KIT_CLIENT_MODULE.

kt() { "$KT_CLI" "$@"; }

thaw()
{
    kill -CONT "$KT_OUTAGE_PID_A" "$KT_OUTAGE_PID_B" 2>/dev/null || true
}

outage_cli_keygen()
{
    P11_KIT_SERVER_ADDRESS=$1 kt token keygen --module "$P11KIT_CLIENT_MODULE" \
        --token "$2" --label "$3" --type rsa2048 --pin-env PIN ||
        kt_fail "keygen $3 on $2"
}

outage_cli_setup()
{
    local name=$1 prefix=$2 uri_a uri_b
    shift 2
    [ -n "${KT_CLI:-}" ] || kt_fail "KT_CLI is not set"
    [ -n "${P11KIT_CLIENT_MODULE:-}" ] ||
        kt_fail "P11KIT_CLIENT_MODULE is not set"
    dir=$KT_OUTAGE_DIR/$name
    mkdir -p "$dir"
    cd "$dir" || kt_fail "cd $dir"
    export PIN=1234
    trap thaw EXIT
    uri_a=$(outage_cli_keygen "$KT_OUTAGE_ADDR_A" VaultA "${prefix}A")
    uri_b=$(outage_cli_keygen "$KT_OUTAGE_ADDR_B" VaultB "${prefix}B")
    umask 077
    kt_store_conf "$dir/store.db" >"$dir/store.conf"
    {
        echo "remote = $KT_OUTAGE_ADDR_A"
        echo "remote = $KT_OUTAGE_ADDR_B"
        echo "module = $SOFTHSM2_MODULE"
        echo "service_token = pkcs11:token=Service"
        cat "$dir/store.conf"
        echo "pin.VaultA = env:PIN"
        echo "pin.VaultB = env:PIN"
        echo "pin.Service = env:PIN"
        echo "allow_oaep_sha1 = yes"
        echo "approval.required = no"
        echo "log_file = $dir/lib.log"
        echo "avail.call_deadline_ms = $DEADLINE_MS"
        echo "avail.hedge_ms = 200"
        local line
        for line in "$@"; do echo "$line"; done
    } >"$dir/lib.conf"
    export KEYTIER_LIB_CONF=$dir/lib.conf
    dep=$(kt --json dep create --tenant acme --workload Exchange \
        --key-a "$uri_a" --key-b "$uri_b" | jq -er .dep_id) ||
        kt_fail "dep create"
    kt mailbox create --tenant acme --dep "$dep" alice >/dev/null ||
        kt_fail "mailbox create"
    head -c 5000 /dev/urandom >"$dir/pt"
    kt encrypt --tenant acme --mailbox alice -i "$dir/pt" -o "$dir/ct" ||
        kt_fail "encrypt"
}
