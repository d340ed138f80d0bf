#!/usr/bin/env bash
# Installs the Debian 12 packages keytier needs to build, test and run its
# demo. Idempotent: only missing packages are installed, and apt-get is not
# touched at all when nothing is missing.
set -euo pipefail

pkgs=(
  gcc libc6-dev pkg-config meson ninja-build          # build
  clang                                                # the second compiler (tools/test.sh); its runtime has libFuzzer (tools/fuzz.sh)
  libssl-dev openssl libsqlite3-dev sqlite3            # crypto, storage
  libpq-dev postgresql                                 # the PostgreSQL store; its test pass starts a throwaway cluster (tests/pg.sh)
  libp11-kit-dev p11-kit p11-kit-modules               # PKCS#11 header, URIs, module loading, RPC client
  libjson-c-dev                                        # audit log and --json output
  check                                                # unit tests
  softhsm2 opensc libengine-pkcs11-openssl gnutls-bin  # real peers in tests
  procps time util-linux psmisc                        # test harness (pkill, /usr/bin/time, unshare)
  jq                                                   # cli tests: JSON fields of --json output
  python3-prometheus-client                            # cli-ops: keytier stats --prometheus parsed by the Prometheus client's parser
  dpkg-dev debhelper lintian fakeroot man-db          # tools/deb-check.sh, the man pages' test
  openjdk-17-jdk-headless                              # interop: keytool and jarsigner through SunPKCS11
)

# From bookworm-backports (bookworm itself has none): OpenSSL 3's
# pkcs11-provider, which the interop test loads in front of the module.
backports=(pkcs11-provider)
backports_list=/etc/apt/sources.list.d/keytier-bookworm-backports.list

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
missing=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
missing_bp=()
for p in "${backports[@]}"; do
  installed "$p" || missing_bp+=("$p")
done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_bp[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "keytier: missing Debian packages: ${missing[*]} ${missing_bp[*]}" >&2
  [ ${#missing[@]} -eq 0 ] ||
    echo "keytier: run as root, or: apt-get install ${missing[*]}" >&2
  [ ${#missing_bp[@]} -eq 0 ] ||
    echo "keytier: run as root, or add bookworm-backports and:" \
      "apt-get install -t bookworm-backports ${missing_bp[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The backports suite is added once, in a file of its own; an apt source
# that already names bookworm-backports is left alone.
if [ ${#missing_bp[@]} -ne 0 ] &&
  ! grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list \
    /etc/apt/sources.list.d/; then
  echo "keytier: adding bookworm-backports ($backports_list)"
  echo 'deb http://deb.debian.org/debian bookworm-backports main' \
    >"$backports_list"
fi
echo "keytier: installing ${missing[*]} ${missing_bp[*]}"
apt-get update -qq
[ ${#missing[@]} -eq 0 ] ||
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ ${#missing_bp[@]} -eq 0 ] ||
  apt-get install -y -qq --no-install-recommends -t bookworm-backports \
    "${missing_bp[@]}" >/dev/null
