#!/usr/bin/env bash
# Install the Debian packages the platform and its tests need; installs nothing already there.
set -euo pipefail

packages=(postfix dovecot-imapd dovecot-lmtpd opendkim opendkim-tools postgresql ca-certificates)
# PowerDNS hosts bought domains' zones; adbtd runs its own pdns_server (SQLite backend, loopback).
packages+=(pdns-server pdns-backend-sqlite3)
if [ "${1:-}" = "--test" ]; then
    packages+=(redis-server chromium)  # chromium: the dashboard's browser tests (Playwright)
fi

# Debian's python3 needs python3-venv for `python3 -m venv`; a pyenv or system build may have it.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    packages+=(python3-venv python3-dev)
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-system: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # adbtd starts pdns_server itself with its own config; the packaged service stays off.
    if [[ " ${missing[*]} " == *" pdns-server "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now pdns >/dev/null 2>&1 || true
    fi
fi

# Mail is stored as this unprivileged user; the packages do not create it.
if ! id vmail >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin --user-group vmail
fi
