#!/usr/bin/env bash
# Mutation check of the security decisions (SECURITY.md "Mutation check").
#
#   tools/mutate.sh [--table FILE] [--keep DIR] [ID...]
#   tools/mutate.sh --check [--table FILE] [--build DIR]
#   tools/mutate.sh --list [--table FILE]
#
# The table (tools/mutants.txt by default) holds one mutant a line:
#
#   ID :: FILE :: ORIGINAL :: REPLACEMENT :: TEST...
#
# ORIGINAL is an exact fragment of one line of FILE (relative to the source
# root) that must occur exactly once in it; REPLACEMENT takes its place;
# TEST... are the meson test names (`meson test --list`, without the
# suite) of which at least one must fail with the mutant in place; NAME@CASE
# runs only the check test case CASE of NAME (CK_RUN_CASE).
#
# A run works on a private copy, never on the caller's files: a detached
# git worktree of HEAD (uncommitted changes are not mutated) in a
# temporary directory, with one build directory beside it.  It builds the
# copy, runs every named test once unmutated (they must pass, or nothing
# a mutant does could be told apart), then for each mutant (all, or the
# IDs named): applies it, rebuilds incrementally, runs its tests, restores
# the file.  Only what the mutant's tests run is rebuilt, with -Dwerror=false
# (a mutant that only warns still counts).  Each mutant is reported as killed (a test failed: named),
# SURVIVED, DID NOT BUILD or STALE (its original text is not found exactly
# once), then a summary with the time taken.  Exit status: 0 when every
# mutant was killed; 1 when any survived, did not build or is stale; 2 for
# a usage error or a baseline that fails.  --keep DIR keeps the copy and
# its build in DIR, and reuses them at the next run (an incremental build
# instead of a full one).
#
# --check runs nothing: it checks that every line of the table is well
# formed, that each ORIGINAL occurs exactly once in FILE of the tree this
# script is in, and with --build DIR that each TEST is a test of that
# build.  The `mutants-table` test of the tools suite runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
table=$root/tools/mutants.txt
mode=run keep="" build_check=""
ids=()

usage() {
  sed -n '4,6p' "$0" | sed 's/^# *//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --table) table=$(realpath "${2:?}"); shift 2 ;;
    --keep) keep=${2:?}; shift 2 ;;
    --check) mode=check; shift ;;
    --list) mode=list; shift ;;
    --build) build_check=$(realpath "${2:?}"); shift 2 ;;
    -h | --help) usage ;;
    -*) echo "tools/mutate.sh: unknown option $1" >&2; usage ;;
    *) ids+=("$1"); shift ;;
  esac
done
[ -f "$table" ] || { echo "tools/mutate.sh: no table $table" >&2; exit 2; }

# The table's mutants, one per index: M_ID, M_FILE, M_ORIG, M_REPL, M_TESTS.
M_ID=() M_FILE=() M_ORIG=() M_REPL=() M_TESTS=()
load_table() {
  local line n=0 bad=0 rest f
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    case $line in '' | '#'*) continue ;; esac
    local -a fields=()
    rest=$line
    while [[ $rest == *' :: '* ]]; do
      fields+=("${rest%% :: *}")
      rest=${rest#* :: }
    done
    fields+=("$rest")
    if [ ${#fields[@]} -ne 5 ] || [ -z "${fields[0]}" ] ||
      [ -z "${fields[2]}" ] || [ -z "${fields[4]}" ] ||
      [ "${fields[2]}" = "${fields[3]}" ]; then
      echo "$table:$n: not ID :: FILE :: ORIGINAL :: REPLACEMENT :: TESTS" \
        "(a replacement that differs, at least one test)" >&2
      bad=1
      continue
    fi
    for f in "${M_ID[@]}"; do
      [ "$f" != "${fields[0]}" ] || { echo "$table:$n: ID ${fields[0]} twice" >&2; bad=1; }
    done
    M_ID+=("${fields[0]}") M_FILE+=("${fields[1]}") M_ORIG+=("${fields[2]}")
    M_REPL+=("${fields[3]}") M_TESTS+=("${fields[4]}")
  done <"$table"
  [ "$bad" -eq 0 ] || exit 2
}

# mutant_edit MODE DIR I: MODE count prints how often the original occurs
# in the file (under DIR); MODE apply replaces it (it must occur once).
# Literal text (grep -F, quoted patterns); the rest of the file unchanged.
mutant_edit() {
  local path=$2/${M_FILE[$3]} orig=${M_ORIG[$3]} repl=${M_REPL[$3]} text c=0
  [ -f "$path" ] && c=$(grep -oF -e "$orig" "$path" | wc -l)
  case $1 in
    count) echo "$c" ;;
    apply)
      [ "$c" -eq 1 ] || return 1
      text=$(cat "$path" && echo .)
      text=${text%.}
      printf '%s' "${text/"$orig"/"$repl"}" >"$path"
      ;;
  esac
}

selected() { # I: is mutant I asked for?
  local id
  [ ${#ids[@]} -eq 0 ] && return 0
  for id in "${ids[@]}"; do [ "$id" = "${M_ID[$1]}" ] && return 0; done
  return 1
}

load_table
if [ ${#ids[@]} -gt 0 ]; then
  for id in "${ids[@]}"; do
    found=no
    for i in "${!M_ID[@]}"; do [ "${M_ID[$i]}" = "$id" ] && found=yes; done
    [ $found = yes ] || { echo "tools/mutate.sh: no mutant $id in $table" >&2; exit 2; }
  done
fi

if [ $mode = list ]; then
  for i in "${!M_ID[@]}"; do
    selected "$i" && printf '%-28s %s  [%s]\n' "${M_ID[$i]}" "${M_FILE[$i]}" "${M_TESTS[$i]}"
  done
  exit 0
fi

if [ $mode = check ]; then
  status=0
  declare -A known=()
  if [ -n "$build_check" ]; then
    while IFS= read -r t; do known[$t]=1; done < <(python3 -c '
import json, sys
for t in json.load(open(sys.argv[1] + "/meson-info/intro-tests.json")):
    print(t["name"])
' "$build_check")
  fi
  for i in "${!M_ID[@]}"; do
    selected "$i" || continue
    c=$(mutant_edit count "$root" "$i")
    if [ "$c" != 1 ]; then
      echo "STALE ${M_ID[$i]}: its original text occurs $c times in ${M_FILE[$i]}: «${M_ORIG[$i]}»"
      status=1
    fi
    for t in ${M_TESTS[$i]}; do
      t=${t%@*}
      if [ -n "$build_check" ] && [ -z "${known[$t]:-}" ]; then
        echo "UNKNOWN TEST ${M_ID[$i]}: $t is not a test of $build_check"
        status=1
      fi
    done
  done
  [ $status -eq 0 ] && echo "mutants table: ${#M_ID[@]} mutants, every original found once"
  exit $status
fi

# ---- a run ------------------------------------------------------------
start=$(date +%s)
if [ -n "$keep" ]; then
  work=$(mkdir -p "$keep" && cd "$keep" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/keytier-mutate.XXXXXX")
fi
src=$work/src build=$work/build log=$work/log
mkdir -p "$log"
cleanup() {
  if [ -z "$keep" ]; then
    git -C "$root" worktree remove --force "$src" 2>/dev/null || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
if [ -e "$src/.git" ]; then
  git -C "$src" checkout -q --detach -f "$(git -C "$root" rev-parse HEAD)"
else
  git -C "$root" worktree add -q --detach "$src" HEAD
fi
echo "mutate: a copy of $(git -C "$src" log -1 --format='%h %s') in $src"
(cd "$src" && tools/build.sh "$build" -Dwerror=false) || { echo "mutate: the unmutated copy does not build" >&2; exit 2; }

# run_tests LOGFILE TEST...: meson test's status.  NAME@CASE runs only the
# check test case CASE of test NAME (CK_RUN_CASE), in a run of its own.
run_tests() {
  local out=$1 t status=0
  local -a plain=()
  shift
  : >"$out"
  for t in "$@"; do
    if [[ $t == *@* ]]; then
      CK_RUN_CASE=${t#*@} meson test -C "$build" --no-rebuild --num-processes 2 \
        --print-errorlogs "${t%@*}" >>"$out" 2>&1 || status=1
    else
      plain+=("$t")
    fi
  done
  if [ ${#plain[@]} -gt 0 ]; then
    meson test -C "$build" --no-rebuild --num-processes 2 --print-errorlogs \
      "${plain[@]}" >>"$out" 2>&1 || status=1
  fi
  return $status
}
# build_for TEST...: builds what those tests run (their programs, the
# targets they depend on, the files their arguments and environment name),
# not every program of the tree: a mutant of lib/ would relink them all.
build_for() {
  local -a targets
  mapfile -t targets < <(python3 - "$build" "${@%@*}" <<'PY'
import json, os, sys
b = os.path.abspath(sys.argv[1]); names = set(sys.argv[2:])
info = lambda f: json.load(open(os.path.join(b, "meson-info", f)))
targets = {t["id"]: t for t in info("intro-targets.json")}
outputs = {f for t in targets.values() for f in t["filename"]}
want = set()
for t in info("intro-tests.json"):
    if t["name"] not in names:
        continue
    for d in t.get("depends", []):
        want.update(targets.get(d, {}).get("filename", []))
    for v in list(t["cmd"]) + list((t.get("env") or {}).values()):
        want.update(f for f in str(v).split(":") if f in outputs)
for f in sorted(want):
    print(os.path.relpath(f, b))
PY
  )
  ninja -C "$build" "${targets[@]}"
}
failed_tests() { # LOGFILE: the names of the tests that failed or timed out
  sed -n 's/^ *[0-9]*\/[0-9]* [^ ]* \/ \([^ ]*\) *\(FAIL\|TIMEOUT\|ERROR\).*/\1/p' "$1" |
    sort -u | tr '\n' ' '
}

# The baseline: every named test passes unmutated.
declare -A want=()
for i in "${!M_ID[@]}"; do
  selected "$i" || continue
  for t in ${M_TESTS[$i]}; do want[$t]=1; done
done
[ ${#want[@]} -gt 0 ] || { echo "mutate: no mutant selected" >&2; exit 2; }
echo "mutate: baseline, ${#want[@]} tests unmutated"
if ! run_tests "$log/baseline.txt" "${!want[@]}"; then
  echo "mutate: tests fail without any mutant ($(failed_tests "$log/baseline.txt")): see $log/baseline.txt" >&2
  exit 2
fi

n=0 killed=0 survived=() nobuild=() stale=()
for i in "${!M_ID[@]}"; do
  selected "$i" || continue
  n=$((n + 1))
  id=${M_ID[$i]} f=${M_FILE[$i]}
  t0=$(date +%s)
  if [ "$(mutant_edit count "$src" "$i")" != 1 ]; then
    echo "STALE         $id: original text not found exactly once in $f"
    stale+=("$id")
    continue
  fi
  cp -p "$src/$f" "$log/orig"
  mutant_edit apply "$src" "$i"
  # shellcheck disable=SC2086
  if ! build_for ${M_TESTS[$i]} >"$log/$id.build.txt" 2>&1; then
    echo "DID NOT BUILD $id: see $log/$id.build.txt"
    nobuild+=("$id")
  else
    # shellcheck disable=SC2086
    if run_tests "$log/$id.txt" ${M_TESTS[$i]}; then
      echo "SURVIVED      $id ($f; ${M_TESTS[$i]}) $(($(date +%s) - t0)) s"
      survived+=("$id")
    else
      echo "killed        $id by $(failed_tests "$log/$id.txt")$(($(date +%s) - t0)) s"
      killed=$((killed + 1))
    fi
  fi
  cp "$log/orig" "$src/$f"
done
secs=$(($(date +%s) - start))
echo "mutate: $n mutants, $killed killed, ${#survived[@]} survived${survived:+ (${survived[*]})}," \
  "${#nobuild[@]} did not build${nobuild:+ (${nobuild[*]})}, ${#stale[@]} stale${stale:+ (${stale[*]})};" \
  "$((secs / 60)) min $((secs % 60)) s"
[ "$killed" -eq "$n" ]
