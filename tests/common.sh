# Shell helpers for keytier's shell test suites (interop, outage, cli, ...).
#
#   . "$KT_SOURCE_ROOT/tests/common.sh"      # or relative to the script
#
# Sourcing this file sets `set -euo pipefail`, defines the functions below
# and nothing else (but KT_CLI in ASan builds, see KT_OWN_ASAN_OPTIONS
# below): call kt_tmpdir first. Every helper that starts something
# registers its own cleanup, so a test only has to call kt_tmpdir and then
# use the other helpers; on any exit (success, failure, signal) background
# servers are stopped by PID and the temp dir is removed.
#
# Environment read (meson sets these through foreign_env_vars):
#   KT_SOURCE_ROOT   source tree (default: parent of this file's directory)
#   KT_MODULE        path of keytier-pkcs11.so
#   SOFTHSM2_MODULE  path of libsofthsm2.so
#   P11KIT_CLIENT_MODULE  path of p11-kit-client.so
#   KT_CLI           path of the keytier CLI (the cli, trust, outage and
#                    lifecycle suites)
#   KT_OWN_ASAN_OPTIONS  ASan builds only: ASAN_OPTIONS for the programs we
#                    build (leak detection on). The shell runs with the
#                    foreign tools' ASAN_OPTIONS (leak detection off), so
#                    sourcing this file then points KT_CLI at
#                    tests/keytier-own.sh, which runs the CLI (KT_CLI_BIN)
#                    with KT_OWN_ASAN_OPTIONS.

set -euo pipefail

KT_SOURCE_ROOT=${KT_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SOFTHSM2_MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
P11KIT_CLIENT_MODULE=${P11KIT_CLIENT_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so}
if [ -n "${KT_OWN_ASAN_OPTIONS:-}" ] && [ -n "${KT_CLI:-}" ] &&
    [ -z "${KT_CLI_BIN:-}" ]; then
    export KT_CLI_BIN=$KT_CLI
    export KT_CLI=$KT_SOURCE_ROOT/tests/keytier-own.sh
fi

# PIDs of background servers started by these helpers, stopped at exit.
KT_SERVER_PIDS=()
# Extra cleanup commands registered with kt_on_exit, run in reverse order.
KT_EXIT_CMDS=()

# kt_own PROGRAM ARGS...
#   Runs PROGRAM, one we build (a test program), with KT_OWN_ASAN_OPTIONS
#   in ASan builds: leak detection on for it, while the shell and the
#   foreign tools keep it off.
kt_own()
{
    if [ -n "${KT_OWN_ASAN_OPTIONS:-}" ]; then
        ASAN_OPTIONS=$KT_OWN_ASAN_OPTIONS "$@"
    else
        "$@"
    fi
}

# kt_log MESSAGE...
#   Prints a progress line on stderr, prefixed with the test's name, so the
#   meson log shows which step a failure happened in.
kt_log()
{
    echo "[$(basename "$0")] $*" >&2
}

# kt_fail MESSAGE...
#   Prints "FAIL: MESSAGE" on stderr and exits 1 (the exit trap cleans up).
kt_fail()
{
    echo "[$(basename "$0")] FAIL: $*" >&2
    exit 1
}

# kt_on_exit COMMAND
#   Registers COMMAND (a string evaluated with eval) to run at exit, before
#   servers are stopped and the temp dir is removed.
kt_on_exit()
{
    KT_EXIT_CMDS+=("$1")
}

# kt_cleanup (the EXIT trap; never call it directly)
#   Runs kt_on_exit commands (last registered first), stops every server
#   started with kt_server_start by its PID, removes KT_TMP. Keeps the exit
#   status of the test.
kt_cleanup()
{
    local rc=$? i
    set +e
    for ((i = ${#KT_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${KT_EXIT_CMDS[$i]}"
    done
    for i in "${KT_SERVER_PIDS[@]}"; do
        kt_server_stop "$i"
    done
    if [ -n "${KT_TMP:-}" ] && [ -d "$KT_TMP" ]; then
        rm -rf -- "$KT_TMP"
    fi
    exit "$rc"
}

# kt_tmpdir
#   Creates a fresh temp dir, exported as KT_TMP, and installs the cleanup
#   trap (EXIT, and INT/TERM/HUP turned into an exit so cleanup runs). HOME
#   and XDG_*_HOME point inside it, so nothing the test runs (pkcs11-tool,
#   p11-kit, openssl) writes to the real home directory.
kt_tmpdir()
{
    KT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/keytier-test.XXXXXX")
    export KT_TMP
    trap kt_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    mkdir -p "$KT_TMP/home"
    export HOME=$KT_TMP/home
    export XDG_DATA_HOME=$KT_TMP/home/.local/share
    export XDG_CONFIG_HOME=$KT_TMP/home/.config
}

# kt_store_conf FILE
#   Prints the library configuration's store lines for a store at FILE: a
#   SQLite file, or, when KT_TEST_PG holds a conninfo (tests/pg.sh, the
#   PostgreSQL pass of tools/test.sh), a fresh database kt_<random> on that
#   server, dropped at exit, and the audit log at FILE.audit.jsonl (a
#   PostgreSQL store has no file to put it beside).  Every test that writes
#   `store = ` takes it from here, so that the PostgreSQL pass reaches it.
#   Call it with its output redirected to a file, not inside $(...): the
#   drop at exit is registered in the calling shell.
kt_store_conf()
{
    local file=$1
    if [ -z "${KT_TEST_PG:-}" ]; then
        echo "store = $file"
        return
    fi
    local db
    db=kt_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    psql -qAt "$KT_TEST_PG" -c "CREATE DATABASE $db" >/dev/null ||
        kt_fail "cannot create database $db on $KT_TEST_PG"
    kt_on_exit "psql -qAt '$KT_TEST_PG' -c 'DROP DATABASE IF EXISTS $db WITH (FORCE)' >/dev/null"
    mkdir -p "$(dirname "$file")"
    echo "store = $KT_TEST_PG dbname=$db"
    echo "avail.audit_log = $file.audit.jsonl"
}

# kt_sql CONF SQL
#   Runs SQL (portable between SQLite and PostgreSQL: no quote(),
#   strftime(), x'' literals) on the store the library configuration CONF
#   names: sqlite3 on its file, or psql on its database (kt_store_conf), as
#   an operator or an attacker with the store would; prints the rows (one
#   value per line, columns separated by |).  Fails when the SQL does.
kt_sql()
{
    local conf=$1 sql=$2 store
    store=$(sed -n 's/^store = //p' "$conf")
    [ -n "$store" ] || kt_fail "kt_sql: no store in $conf"
    case $store in
    postgres://* | postgresql://* | *=*)
        psql -qAt -v ON_ERROR_STOP=1 "$store" -c "$sql" ;;
    *) sqlite3 -bail "$store" "$sql" ;;
    esac
}

# kt_keytier_conf DIR [EXTRA_LINE...]
#   Writes DIR/keytier.conf (the module's format, hsm-config/keytier.conf.example) with token_dir DIR/tokens,
#   pin_kdf_cost = 10 (fast tests) and log_file DIR/keytier.log, plus each
#   EXTRA_LINE verbatim ("pin_max_retries = 3"); exports KEYTIER_CONF.
kt_keytier_conf()
{
    local dir=$1
    shift
    mkdir -p "$dir"
    {
        echo "# written by tests/common.sh kt_keytier_conf"
        echo "token_dir = $dir/tokens"
        echo "slots = 8"
        echo "log_level = warning"
        echo "log_file = $dir/keytier.log"
        echo "pin_min_length = 4"
        echo "pin_max_length = 64"
        echo "pin_max_retries = 10"
        echo "pin_kdf_cost = 10"
        local line
        for line in "$@"; do
            echo "$line"
        done
    } >"$dir/keytier.conf"
    export KEYTIER_CONF=$dir/keytier.conf
}

# kt_softhsm2_conf DIR
#   Writes DIR/softhsm2.conf from hsm-config/softhsm2.conf (file backend)
#   with its token directory DIR/tokens; exports SOFTHSM2_CONF.
kt_softhsm2_conf()
{
    local dir=$1
    mkdir -p "$dir/tokens"
    sed "s|@TOKEN_DIR@|$dir/tokens|" \
        "$KT_SOURCE_ROOT/hsm-config/softhsm2.conf" >"$dir/softhsm2.conf"
    export SOFTHSM2_CONF=$dir/softhsm2.conf
}

# kt_module_use NAME [DIR]
#   Selects the module a test drives: NAME is "keytier" (path from KT_MODULE)
#   or "softhsm2" (path from SOFTHSM2_MODULE). Writes its config in DIR
#   (default $KT_TMP/NAME) and sets KT_P11_MODULE to the module's path.
kt_module_use()
{
    local name=$1 dir=${2:-$KT_TMP/$1}
    case $name in
    keytier)
        [ -n "${KT_MODULE:-}" ] || kt_fail "KT_MODULE is not set"
        KT_P11_MODULE=$KT_MODULE
        kt_keytier_conf "$dir"
        ;;
    softhsm2)
        KT_P11_MODULE=$SOFTHSM2_MODULE
        kt_softhsm2_conf "$dir"
        ;;
    *) kt_fail "unknown module '$name' (keytier or softhsm2)" ;;
    esac
    [ -f "$KT_P11_MODULE" ] || kt_fail "module $KT_P11_MODULE does not exist"
    export KT_P11_MODULE
}

# kt_p11 ARGS...
#   Runs pkcs11-tool on the selected module (kt_module_use) with ARGS.
kt_p11()
{
    pkcs11-tool --module "$KT_P11_MODULE" "$@"
}

# kt_free_slot
#   Prints the slot ID (0x...) of the first slot whose token is not
#   initialised, as `pkcs11-tool -L` shows it; fails if there is none.
kt_free_slot()
{
    local slot
    slot=$(kt_p11 -L 2>/dev/null | awk '
        /^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
        /token state: +uninitialized/ { print id; exit }')
    [ -n "$slot" ] || kt_fail "no slot with an uninitialised token"
    echo "$slot"
}

# kt_token_init LABEL SO_PIN USER_PIN
#   On the selected module, initialises the free slot's token as LABEL with
#   SO_PIN (pkcs11-tool --init-token), then sets USER_PIN as SO
#   (--init-pin). Afterwards `kt_p11 --token-label LABEL ...` reaches it.
kt_token_init()
{
    local label=$1 so_pin=$2 user_pin=$3 slot
    slot=$(kt_free_slot)
    kt_p11 --slot "$slot" --init-token --label "$label" --so-pin "$so_pin" \
        >/dev/null 2>"$KT_TMP/init-token.err" ||
        kt_fail "--init-token $label: $(cat "$KT_TMP/init-token.err")"
    kt_p11 --token-label "$label" --login --login-type so --so-pin "$so_pin" \
        --init-pin --pin "$user_pin" >/dev/null 2>"$KT_TMP/init-pin.err" ||
        kt_fail "--init-pin $label: $(cat "$KT_TMP/init-pin.err")"
}

# kt_server_start MODULE TOKEN_LABEL [SOCKET]
#   Starts `p11-kit server` exporting token TOKEN_LABEL of MODULE on a unix
#   socket (default $KT_TMP/p11kit-<label>.sock). The server daemonises and
#   prints shell assignments; they go to a file that is then sourced (reading
#   them through $(...) would hang: the daemon keeps the pipe open). Sets
#   and exports P11_KIT_SERVER_ADDRESS and P11_KIT_SERVER_PID; the server is
#   stopped by that PID at exit (or earlier with kt_server_stop).
kt_server_start()
{
    local module=$1 label=$2 sock=${3:-$KT_TMP/p11kit-$2.sock}
    local out=$KT_TMP/p11kit-server-$label.env
    rm -f "$sock"
    P11_KIT_SERVER_ADDRESS='' P11_KIT_SERVER_PID=''
    p11-kit server --sh --provider "$module" -n "$sock" \
        "pkcs11:token=$label" >"$out" 2>"$out.err" </dev/null ||
        kt_fail "p11-kit server: $(cat "$out.err")"
    # shellcheck disable=SC1090
    . "$out"
    [ -n "$P11_KIT_SERVER_PID" ] || kt_fail "p11-kit server printed no PID"
    KT_SERVER_PIDS+=("$P11_KIT_SERVER_PID")
    # The daemon may print its address before the socket exists.
    local i
    for ((i = 0; i < 100; i++)); do
        [ -S "$sock" ] && break
        kt_pid_alive "$P11_KIT_SERVER_PID" ||
            kt_fail "p11-kit server exited: $(cat "$out.err")"
        sleep 0.05
    done
    [ -S "$sock" ] || kt_fail "p11-kit server socket $sock missing after 5 s"
    kt_server_watchdog "$P11_KIT_SERVER_PID" "$sock"
    export P11_KIT_SERVER_ADDRESS P11_KIT_SERVER_PID
}

# kt_pid_alive PID
#   True if PID runs (a zombie counts as dead: a daemonised server is
#   reparented to init, which may reap it only a while later). Reads /proc
#   in bash: no ps, which can hang under the sanitizer build's ASan preload.
kt_pid_alive()
{
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [ "${line:0:1}" != Z ] && [ "${line:0:1}" != X ]
}

# kt_server_procs PID
#   Prints PID and the PIDs of its children: `p11-kit server` forks one
#   p11-kit-remote child per client connection, and a signal to the server
#   alone does not reach connections that are already open.
kt_server_procs()
{
    local f line rest
    echo "$1"
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        rest=${line##*) }   # "state ppid ..."
        rest=${rest#* }
        if [ "${rest%% *}" = "$1" ]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
}

# kt_server_signal SIGNAL PID
#   Sends SIGNAL to the server PID first (so it forks no new child) and
#   then to each of its connection children.
kt_server_signal()
{
    local sig=$1 p
    for p in $(kt_server_procs "$2"); do
        kill "-$sig" "$p" 2>/dev/null || true
    done
}

# kt_server_stop PID
#   Stops the server with this PID and its connection children: SIGCONT
#   (they may have been frozen by an outage test), SIGTERM, waits up to
#   5 s, then SIGKILL. Never kills by name. Returns 0 when the server is
#   gone.
kt_server_stop()
{
    local pid=$1 i procs
    kt_pid_alive "$pid" || return 0
    procs=$(kt_server_procs "$pid")
    kt_server_signal CONT "$pid"
    kt_server_signal TERM "$pid"
    for ((i = 0; i < 50; i++)); do
        kt_pid_alive "$pid" || break
        sleep 0.1
    done
    for i in $procs; do
        if kt_pid_alive "$i"; then kill -KILL "$i" 2>/dev/null || true; fi
    done
    sleep 0.1
    ! kt_pid_alive "$pid"
}

# kt_server_watchdog PID SOCKET (called by kt_server_start)
#   A background guard for the case where the test itself is SIGKILLed (a
#   meson timeout) and its exit trap never runs: once the test's shell is
#   gone, it kills the server and its children, provided PID is still the
#   server on SOCKET (never a recycled PID), and removes KT_TMP. Detached
#   from the test's output, so meson does not wait for it.
kt_server_watchdog()
{
    local pid=$1 sock=$2 test_pid=$$ tmp=$KT_TMP
    (
        trap '' HUP INT TERM
        while kt_pid_alive "$test_pid"; do sleep 1; done
        if kt_pid_alive "$pid" &&
            grep -qF -- "$sock" "/proc/$pid/cmdline" 2>/dev/null; then
            kt_server_signal CONT "$pid"
            kt_server_signal KILL "$pid"
        fi
        rm -rf -- "$tmp"
    ) </dev/null >/dev/null 2>&1 &
}

# kt_server_freeze PID / kt_server_thaw PID
#   SIGSTOP / SIGCONT the server and its connection children: calls from
#   connected and new clients hang (the shape of a vault outage).
#   kt_server_stop thaws before it stops, so a frozen server never
#   outlives the test.
kt_server_freeze()
{
    kt_server_signal STOP "$1"
}
kt_server_thaw()
{
    kt_server_signal CONT "$1"
}

# kt_server_crash PID
#   SIGKILL the server and its connection children at once (the shape of a
#   vault that died): client calls on open sessions then fail (after a
#   SIGPIPE, which a C client must ignore, they return CKR_DEVICE_REMOVED).
kt_server_crash()
{
    kt_server_signal KILL "$1"
}

# kt_use_remote
#   After kt_server_start: makes kt_p11 talk to the served token through
#   p11-kit-client.so (KT_P11_MODULE), as a remote application would.
kt_use_remote()
{
    [ -n "${P11_KIT_SERVER_ADDRESS:-}" ] || kt_fail "no p11-kit server started"
    KT_P11_MODULE=$P11KIT_CLIENT_MODULE
    export KT_P11_MODULE
}

# assert_eq EXPECTED ACTUAL [WHAT]
#   Fails the test unless the two strings are equal.
assert_eq()
{
    [ "$1" = "$2" ] ||
        kt_fail "${3:-value}: expected '$1', got '$2'"
}

# assert_contains HAYSTACK NEEDLE [WHAT]
#   Fails the test unless NEEDLE occurs (as a fixed string) in HAYSTACK.
assert_contains()
{
    case $1 in
    *"$2"*) ;;
    *) kt_fail "${3:-output}: '$2' not found in: $1" ;;
    esac
}

# assert_not_contains HAYSTACK NEEDLE [WHAT]
#   Fails the test if NEEDLE occurs (as a fixed string) in HAYSTACK.
assert_not_contains()
{
    case $1 in
    *"$2"*) kt_fail "${3:-output}: unexpected '$2' in: $1" ;;
    *) ;;
    esac
}

# assert_files_eq FILE1 FILE2 [WHAT]
#   Fails the test unless both files exist and have identical bytes.
assert_files_eq()
{
    [ -f "$1" ] || kt_fail "${3:-file}: $1 missing"
    [ -f "$2" ] || kt_fail "${3:-file}: $2 missing"
    cmp -s "$1" "$2" || kt_fail "${3:-file}: $1 and $2 differ"
}

# kt_flip_byte FILE OFFSET
#   Tampers with FILE in place: XORs the byte at OFFSET (from 0) with 0x01,
#   so the file surely changes. Uses only bash, od, head and tail (dd
#   aborts under the ASan preload of the sanitizer build).
kt_flip_byte()
{
    local file=$1 off=$2 size b
    size=$(stat -c %s "$file")
    [ "$off" -lt "$size" ] || kt_fail "kt_flip_byte: offset $off beyond $file"
    b=$(od -An -tu1 -j "$off" -N1 "$file" | tr -d ' ')
    {
        head -c "$off" "$file"
        printf "\\$(printf '%03o' $((b ^ 1)))"
        tail -c +$((off + 2)) "$file"
    } >"$file.flip"
    mv -f "$file.flip" "$file"
}

# expect_fail MESSAGE COMMAND [ARGS...]
#   Runs COMMAND; fails the test unless it exits non-zero AND one line of its
#   combined stdout+stderr is exactly MESSAGE. The output is kept in
#   KT_LAST_OUTPUT for further checks.
expect_fail()
{
    local msg=$1 rc=0
    shift
    KT_LAST_OUTPUT=$("$@" 2>&1) || rc=$?
    [ "$rc" -ne 0 ] ||
        kt_fail "'$*' succeeded, expected failure '$msg'; output: $KT_LAST_OUTPUT"
    grep -Fxq -- "$msg" <<<"$KT_LAST_OUTPUT" ||
        kt_fail "'$*' failed (exit $rc) without the line '$msg'; output: $KT_LAST_OUTPUT"
}

# expect_ok COMMAND [ARGS...]
#   Runs COMMAND; fails the test (showing its output) unless it exits 0.
#   The combined output is kept in KT_LAST_OUTPUT.
expect_ok()
{
    local rc=0
    KT_LAST_OUTPUT=$("$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || kt_fail "'$*' exited $rc; output: $KT_LAST_OUTPUT"
}
