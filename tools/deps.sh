#!/usr/bin/env bash
# Installs the Debian 12 packages keytier needs to build, test and run its
# demo. Idempotent: only missing packages are installed, and apt-get is not
# touched at all when nothing is missing.
set -euo pipefail

pkgs=(
  gcc libc6-dev pkg-config meson ninja-build          # build
  clang                                                # the second compiler: tools/test.sh builds with it too
  libssl-dev openssl libsqlite3-dev sqlite3            # crypto, storage
  libp11-kit-dev p11-kit p11-kit-modules               # PKCS#11 header, URIs, module loading, RPC client
  libjson-c-dev                                        # audit log and --json output
  check                                                # unit tests
  softhsm2 opensc libengine-pkcs11-openssl gnutls-bin  # real peers in tests
  procps time util-linux psmisc                        # test harness (pkill, /usr/bin/time, unshare)
  jq                                                   # cli tests: JSON fields of --json output
  openjdk-17-jdk-headless                              # interop: keytool and jarsigner through SunPKCS11
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "keytier: missing Debian packages: ${missing[*]}" >&2
  echo "keytier: run as root, or: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "keytier: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
