#!/usr/bin/env bash
# Installs the Debian packages the test-suite talks to, when they are missing.
# Runs unattended (CI has no stdin). Needs root or passwordless sudo; otherwise it says what to install.
set -euo pipefail
# chromium: the real-browser dashboard test; rsyslog (+gnutls): the SIEM delivery tests;
# openssl: the time-stamp tests' local TSA (`openssl ts -reply`, `openssl cms`).
PKGS=(${AUDITLOG_SYSTEM_PKGS:-chromium rsyslog rsyslog-gnutls ca-certificates openssl})
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
