#!/usr/bin/env bash
# Builds keytier (tests included, none run) in each build type a packager
# may choose, warnings as errors (tools/build.sh): release, plain, debug and
# debugoptimized with gcc, release with clang. Each goes to a directory of
# its own, build-types/CC-TYPE, kept between runs so that a later run only
# rebuilds what changed.
#   tools/build-types.sh [CC:TYPE...]   (default: all five)
# tools/test.sh runs it for the three its own builds do not cover (its
# `build` is gcc debugoptimized, its `build-clang` clang release).
set -euo pipefail
cd "$(dirname "$0")/.."
specs=("$@")
[ ${#specs[@]} -gt 0 ] ||
    specs=(gcc:release gcc:plain gcc:debug gcc:debugoptimized clang:release)
for spec in "${specs[@]}"; do
    cc=${spec%%:*} type=${spec#*:}
    case $cc:$type in
    gcc:* | clang:*) ;;
    *) echo "tools/build-types.sh: '$spec' is not gcc:TYPE or clang:TYPE" >&2; exit 2 ;;
    esac
    start=$SECONDS
    CC=$cc tools/build.sh "build-types/$cc-$type" --buildtype="$type"
    echo "build-types: $cc $type built warning-free ($((SECONDS - start)) s)"
done
