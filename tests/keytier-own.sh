#!/usr/bin/env bash
# The keytier CLI as the shell tests run it in an ASan build (tests/common.sh
# points KT_CLI here when KT_OWN_ASAN_OPTIONS is set): the shell and the
# foreign tools around it run with leak detection off (foreign_env_vars in
# tests/meson.build), the CLI we build with it on. exec keeps the PID, so
# tests that signal or time the CLI see the CLI itself.
ASAN_OPTIONS=$KT_OWN_ASAN_OPTIONS exec "$KT_CLI_BIN" "$@"
