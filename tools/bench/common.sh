# shellcheck shell=bash
# The preamble the shell benchmarks of tools/bench/ share (sourced, not
# run): a temp dir removed at exit, keytier's module with three tokens
# (vault-a, vault-b, svc) driven through the `keytier` CLI, the library's
# configuration on a SQLite file or on a throwaway PostgreSQL cluster.
#
#   . "$(dirname "$0")/common.sh"
#   bench_setup NAME BASE_DIR BUILD_DIR   # cd's into the temp dir
#   a=$(bench_key vault-a ra); b=$(bench_key vault-b rb)
#   bench_lib_conf sqlite                 # or postgresql
#   dep=$(bench_dep "$a" "$b")
#
# Sets kt (the CLI), module, dir, bench_root; exports KEYTIER_CONF,
# KEYTIER_MODULE, PIN, SO_PIN and, from bench_lib_conf, KEYTIER_LIB_CONF.
# bench_pg and bench_pg_db alone give a script a PostgreSQL database.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_pg_dir=
dir=
trap bench_cleanup EXIT

# bench_setup NAME BASE_DIR BUILD_DIR: checks the build, makes
# BASE_DIR/keytier-bench-NAME.XXXXXX (removed at exit with the PostgreSQL
# cluster bench_lib_conf may start) and the module's three tokens in it.
bench_setup()
{
    local name=$1 base=$2 build=$3 t
    case $build in /*) ;; *) build=$bench_root/$build ;; esac
    kt=$build/tools/cli/keytier
    module=$build/module/keytier-pkcs11.so
    [ -x "$kt" ] && [ -f "$module" ] ||
        { echo "build $build first (tools/build.sh $build)" >&2; exit 1; }
    dir=$(mktemp -d "$base/keytier-bench-$name.XXXXXX")
    cd "$dir"
    printf 'token_dir = %s/tokens\npin_kdf_cost = 10\nlog_file = %s/module.log\n' \
        "$dir" "$dir" >module.conf
    export KEYTIER_CONF=$dir/module.conf KEYTIER_MODULE=$module
    export PIN=bench-user-pin SO_PIN=bench-so-pin
    for t in vault-a vault-b svc; do
        "$kt" token init --label $t --so-pin-env SO_PIN --pin-env PIN >/dev/null
    done
}

bench_cleanup()
{
    [ -z "$bench_pg_dir" ] ||
        (cd / && "$bench_root/tests/pg.sh" stop "$bench_pg_dir")
    [ -z "$dir" ] || rm -rf -- "$dir"
}

# bench_key TOKEN LABEL: an AES-256 root on keytier's module; prints its URI.
bench_key()
{
    "$kt" token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN
}

# bench_pg: starts the throwaway PostgreSQL cluster once (tests/pg.sh, on
# a Unix socket under /tmp, removed at exit; its conninfo in
# bench_pg_info), with PostgreSQL's durable defaults put back (fsync and
# synchronous_commit on: tests/pg.sh turns them off), so that a commit
# waits for its WAL flush as a production server's does.  Call it in the
# script's shell, not in $(...).
bench_pg()
{
    [ -z "$bench_pg_dir" ] || return 0
    bench_pg_dir=$(mktemp -u /tmp/ktpg.XXXXXX)
    bench_pg_info=$(cd / && "$bench_root/tests/pg.sh" start "$bench_pg_dir")
    echo "throwaway PostgreSQL cluster in $bench_pg_dir" >&2
    psql -qAt "$bench_pg_info" -c "ALTER SYSTEM SET fsync = on" \
        -c "ALTER SYSTEM SET synchronous_commit = on" \
        -c "SELECT pg_reload_conf()" >/dev/null
}

# bench_pg_db: a fresh database on the cluster of bench_pg; prints its name.
bench_pg_db()
{
    local db
    db=kt_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    psql -qAt "$bench_pg_info" -c "CREATE DATABASE $db" >/dev/null
    echo "$db"
}

# bench_store STORE FILE: the store lines of a library configuration:
# `sqlite`, the SQLite file FILE; `postgresql`, a fresh database on the
# cluster of bench_pg and the audit log at FILE.audit.jsonl.
bench_store()
{
    case $1 in
    sqlite) echo "store = $2" ;;
    postgresql)
        bench_pg
        local db
        db=$(bench_pg_db)
        echo "store = $bench_pg_info dbname=$db"
        echo "avail.audit_log = $2.audit.jsonl"
        ;;
    *) echo "unknown store '$1' (sqlite or postgresql)" >&2; exit 2 ;;
    esac
}

# bench_lib_conf STORE [NAME]: writes $dir/NAME.conf (default lib) for the
# module's tokens on a fresh store (bench_store) and exports it as
# KEYTIER_LIB_CONF.
bench_lib_conf()
{
    local name=${2:-lib}
    {
        echo "module = $module"
        echo "service_token = pkcs11:token=svc"
        bench_store "$1" "$dir/$name.db"
        echo "pin.vault-a = env:PIN"
        echo "pin.vault-b = env:PIN"
        echo "pin.svc = env:PIN"
    } >"$dir/$name.conf"
    export KEYTIER_LIB_CONF=$dir/$name.conf
}

# bench_dep KEY_A KEY_B: a DEP for tenant bench, workload Exchange; prints
# its id.
bench_dep()
{
    "$kt" --json dep create --tenant bench --workload Exchange \
        --key-a "$1" --key-b "$2" | jq -r .dep_id
}
