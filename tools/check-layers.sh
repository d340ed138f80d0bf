#!/usr/bin/env bash
# Checks that a source tree keeps its layers, from the object files a build
# made of it: a file may call (or reference data of) files of its own folder
# and of the folders below it, never of a folder above it, and no two files
# of different folders depend on each other through a circle.
#
#   tools/check-layers.sh [options] BUILD_DIR TREE LAYER...
#
# TREE is a folder of the source tree (module, lib); the LAYERs are its
# subfolders from the bottom up (module: ossl base store mech core api). Every
# source file of TREE that the build compiles must lie in one of them. The
# object of each source comes from BUILD_DIR/compile_commands.json; which
# symbols an object defines and which it needs come from nm, so calls
# through macros and inline wrappers count, and comments or strings do not.
#
# Options:
#   --acyclic          also refuse circles between files of the same folder
#   --nodiscard MACRO  every function of TREE that returns CK_RV, except the
#                      C_* entry points, is declared with MACRO, and no
#                      other spelling of warn_unused_result / nodiscard is
#                      used in TREE (but the one #define of a public header
#                      in TREE/include/, which cannot include MACRO's)
#   --only FOLDER=ERE  only FOLDER's files may use external symbols matching
#                      the extended regular expression ERE (e.g. the
#                      library only one folder wraps); may be repeated
#   --allow FILE       known exceptions, one a line: "CALLER CALLEE REASON"
#                      (files relative to the source root, '#' starts a
#                      comment line); such a call is left out of every rule
#                      above. An entry without a reason, or one whose call
#                      no longer exists, is itself a break, so the list can
#                      only shrink
#   --print            print the file-level edges (caller -> callee)
# Exit status: 0 clean, 1 a rule broken (each break printed), 2 usage.
set -euo pipefail

acyclic=0
allow=
nodiscard=
only=()
print=0
while [ $# -gt 0 ]; do
  case $1 in
    --acyclic) acyclic=1; shift ;;
    --allow) allow=$2; shift 2 ;;
    --nodiscard) nodiscard=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --print) print=1; shift ;;
    --) shift; break ;;
    -*) echo "check-layers: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 3 ]; then
  echo "usage: check-layers.sh [--acyclic] [--allow FILE] [--nodiscard MACRO]" \
    "[--only FOLDER=ERE]... [--print]" \
    "BUILD_DIR TREE LAYER..." >&2
  exit 2
fi
build=$(cd "$1" && pwd)
tree=${2%/}
shift 2
layers=("$@")
NM=${NM:-nm}

ccdb=$build/compile_commands.json
[ -f "$ccdb" ] || { echo "check-layers: no $ccdb" >&2; exit 2; }
for tool in jq "$NM" tsort; do
  command -v "$tool" >/dev/null ||
    { echo "check-layers: $tool is needed" >&2; exit 2; }
done

# The source root the build directory was configured from.
src=$(jq -r '.directories.source' "$build/meson-info/meson-info.json")
[ -n "$src" ] && [ -d "$src/$tree" ] ||
  { echo "check-layers: cannot find $tree in the source tree" >&2; exit 2; }


work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
broken() { echo "check-layers: $*"; fail=1; }

# source (relative to the root) <TAB> object (absolute), for TREE's files;
# a file compiled into several targets is checked once.  Each step below is
# one process for all files (a process per file made the check take
# minutes on a loaded machine).
jq -r '.[] | .directory + "/" + .file' "$ccdb" | tr '\n' '\0' |
  xargs -0 realpath -m -- >"$work/files"
jq -r '.[] | .directory + "/" + .output' "$ccdb" >"$work/outs"
paste "$work/files" "$work/outs" |
  awk -F'\t' -v root="$src/" -v t="$tree/" '
    index($1, root) == 1 { rel = substr($1, length(root) + 1)
      if (index(rel, t) == 1) print rel "\t" $2 }' |
  sort -u -t$'\t' -k1,1 >"$work/objs"
[ -s "$work/objs" ] || { broken "no object of $tree/ in $ccdb"; exit 1; }

awk -F'\t' -v t="$tree" -v names="${layers[*]}" '
  BEGIN { n = split(names, ls, " "); for (i = 1; i <= n; i++) lv[ls[i]] = i }
  { sub_ = substr($1, length(t) + 2); folder = sub_; sub(/\/.*/, "", folder)
    if (folder == sub_ || !(folder in lv)) print $1 }' "$work/objs" \
  >"$work/nolayer"
while read -r rel; do
  broken "$rel is in no layer (${layers[*]})"
done <"$work/nolayer"
while IFS=$'\t' read -r rel obj; do
  [ -f "$obj" ] || { echo "check-layers: $obj not built" >&2; exit 2; }
done <"$work/objs"

# nm -A names the object before each symbol ("OBJ:ADDR T SYM", "OBJ: U
# SYM"); the objects' sources come from the objs table.
cut -f2 "$work/objs" | tr '\n' '\0' |
  xargs -0 "$NM" -A --defined-only -g >"$work/nmdefs"
cut -f2 "$work/objs" | tr '\n' '\0' | xargs -0 "$NM" -A -u >"$work/nmuses"
nm_rows='
  NR == FNR { src[$2] = $1; next }
  { i = index($0, ".o:"); obj = substr($0, 1, i + 1)
    n = split(substr($0, i + 3), f, " ")
    if (!(obj in src)) next
    if (defs && n == 3) print f[3] "\t" src[obj]
    if (!defs) print src[obj] "\t" f[n] }'
awk -F'\t' -v defs=1 "$nm_rows" "$work/objs" "$work/nmdefs" >"$work/defs"
awk -F'\t' -v defs=0 "$nm_rows" "$work/objs" "$work/nmuses" >"$work/uses"

sort -u "$work/defs" >"$work/defs.s"
# A symbol defined twice in TREE would make the graph ambiguous.
cut -f1 "$work/defs.s" | uniq -d | while read -r sym; do
  echo "check-layers: $sym is defined in more than one file of $tree/"
done | tee "$work/dups"
[ -s "$work/dups" ] && fail=1

# caller <TAB> callee, both files of TREE; symbols from outside (libc,
# OpenSSL, a library below TREE) are not edges.
sort -t$'\t' -k2,2 "$work/uses" |
  join -t$'\t' -1 2 -2 1 -o 1.1,2.2 - "$work/defs.s" |
  awk -F'\t' '$1 != $2' | sort -u >"$work/edges"
[ "$print" = 1 ] && sed 's/\t/ -> /' "$work/edges"

# Known exceptions: each must name a call that exists and say why; the
# calls they name are then left out of the rules below.
if [ -n "$allow" ]; then
  [ -r "$allow" ] || { echo "check-layers: cannot read $allow" >&2; exit 2; }
  : >"$work/allowed"
  n=0
  while read -r a b why; do
    n=$((n + 1))
    case $a in '' | '#'*) continue ;; esac
    if [ -z "$b" ] || [ -z "$why" ]; then
      broken "$allow:$n: want CALLER CALLEE REASON"
      continue
    fi
    if ! grep -qxF "$a"$'\t'"$b" "$work/edges"; then
      broken "$allow:$n: $a does not call $b; remove the entry"
      continue
    fi
    printf '%s\t%s\n' "$a" "$b" >>"$work/allowed"
  done <"$allow"
  sort -u "$work/allowed" | comm -23 "$work/edges" - >"$work/kept"
  mv "$work/kept" "$work/edges"
fi


# Rule 1: nothing calls upwards. The levels are looked up in one awk pass
# (a subshell per edge made this the slow part of the check); only the
# edges that break the rule are looked at again, for their symbols.
awk -F'\t' -v t="$tree" -v names="${layers[*]}" '
  BEGIN { n = split(names, ls, " "); for (i = 1; i <= n; i++) lv[ls[i]] = i }
  {
    a = substr($1, length(t) + 2); sub(/\/.*/, "", a)
    b = substr($2, length(t) + 2); sub(/\/.*/, "", b)
    if ((a in lv) && (b in lv) && lv[b] > lv[a])
      print $1 "\t" $2 "\t" a "\t" b
  }' "$work/edges" >"$work/up"
while IFS=$'\t' read -r a b fa fb; do
  syms=$(awk -F'\t' -v a="$a" '$1 == a { print $2 }' "$work/uses" |
    sort -u | join - <(awk -F'\t' -v b="$b" '$2 == b { print $1 }' \
      "$work/defs.s") | tr '\n' ' ')
  broken "$a ($fa) calls $b ($fb, a layer above): $syms"
done <"$work/up"

# Rule 2: no circle between folders. With rule 1 kept none can exist; the
# check stands on its own so that a layer list given in the wrong order
# cannot hide one.
awk -F'\t' -v t="$tree" '{
  a = substr($1, length(t) + 2); sub(/\/.*/, "", a)
  b = substr($2, length(t) + 2); sub(/\/.*/, "", b)
  if (a != b) print a, b
}' "$work/edges" | sort -u >"$work/fedges"
if ! tsort "$work/fedges" >/dev/null 2>"$work/floops"; then
  broken "folders of $tree/ call each other in a circle:" \
    "$(grep -v 'input contains a loop' "$work/floops" | sed 's/^tsort: //' |
      sort -u | tr '\n' ' ')"
fi

# Optional rule 3: no circle between any two files.
if [ "$acyclic" = 1 ]; then
  tr '\t' ' ' <"$work/edges" >"$work/e2"
  if ! tsort "$work/e2" >/dev/null 2>"$work/loops"; then
    broken "files of $tree/ call each other in a circle:" \
      "$(grep -v 'input contains a loop' "$work/loops" | sed 's/^tsort: //' |
        sort -u | tr '\n' ' ')"
  fi
fi

# Optional rule: symbols of an outside library used by one folder only.
for rule in "${only[@]}"; do
  owner=${rule%%=*}
  ere=${rule#*=}
  awk -F'\t' -v t="$tree/$owner/" -v e="$ere" '
    NR == FNR { def[$1] = 1; next }
    index($1, t) != 1 && !($2 in def) && $2 ~ e { print $1 "\t" $2 }' \
    "$work/defs.s" "$work/uses" | sort -u >"$work/only"
  while IFS=$'\t' read -r f sym; do
    broken "$f uses $sym, which only $tree/$owner/ may use"
  done <"$work/only"
done

# Optional rule 4: must-use CK_RV results, spelled one way.
if [ -n "$nodiscard" ]; then
  export KT_ND=$nodiscard
  files=$(cd "$src" && find "$tree" -name '*.[ch]' | sort)
  # Each declaration or definition on one line, comments and preprocessor
  # lines removed, then every one that returns CK_RV from a named function
  # (not a C_* entry point, not a function pointer) must carry the macro.
  # A function passes when one of its declarations carries the macro (a
  # header's prototype covers the definition in the .c file).
  for f in $files; do
    sed -e '/^[[:space:]]*#/d' "$src/$f" |
      perl -0777 -pe 's{/\*.*?\*/}{ }gs; s{//[^\n]*}{}g; s/\s+/ /g; s/([;{}])/$1\n/g' |
      perl -ne 'next unless /(?:^|[ ;}])CK_RV ([A-Za-z_]\w*) ?\(/;
        $n = $1; next if $n =~ /^C_/;
        print "$n\t", (index($_, $ENV{KT_ND}) >= 0 ? 1 : 0), "\t'"$f"'\n"'
  done >"$work/ndall"
  awk -F'\t' -v m="$nodiscard" '
    { if ($2 == 1) ok[$1] = 1; at[$1] = $3 }
    END { for (n in at) if (!(n in ok))
      print "check-layers: " at[n] ": " n " returns CK_RV but is not " m }' \
    "$work/ndall" | sort | tee "$work/nd"
  [ -s "$work/nd" ] && fail=1
  # The one exception: a public header (TREE/include/), installed for
  # users and standing alone, defines its own spelling of it once.
  (cd "$src" && grep -rnE 'warn_unused_result|\[\[(gnu::)?nodiscard' "$tree" |
    grep -v "define $nodiscard" |
    grep -vE "^$tree/include/[^:]+:[0-9]+:#define [A-Z_]+ " || true) |
    tee "$work/nd2"
  if [ -s "$work/nd2" ]; then
    echo "check-layers: spell must-use results $nodiscard (above)"
    fail=1
  fi
fi

[ "$fail" = 0 ] && echo "check-layers: $tree/ keeps its layers (${layers[*]})"
exit "$fail"
