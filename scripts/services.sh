#!/usr/bin/env bash
# Makes sure what the tests and drills need is installed and answering: PostgreSQL on
# 127.0.0.1:5432 (user postgres, no password), RabbitMQ on 127.0.0.1:5672 (guest/guest), the
# command-line tools the drills call (psql, curl, python3 with venv), and for the console's
# browser tests Chromium with its WebDriver and a Chinese font (so screenshots show the text). On Debian or Ubuntu, whatever is
# missing is installed with apt-get (as root, or through sudo) and started; elsewhere the script
# stops and names what to install.
set -euo pipefail

# Debian and Ubuntu package names: PostgreSQL's server and client, RabbitMQ's server, and tools.
PACKAGES_POSTGRES="postgresql postgresql-client"
PACKAGES_RABBITMQ="rabbitmq-server"
PACKAGES_TOOLS="curl python3 python3-venv procps"
PACKAGES_BROWSER="chromium chromium-driver fonts-wqy-microhei"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1
  fi
}

apt_updated=
install() {
  if ! command -v apt-get >/dev/null; then
    echo "missing: $*. This is not a Debian or Ubuntu machine: install them (PostgreSQL server and" >&2
    echo "client 13 or newer, RabbitMQ server 3.12 or newer, curl, python3, Chromium with chromedriver" >&2
    echo "and a Chinese font) and start them" >&2
    echo "on 127.0.0.1:5432 (user postgres, trust auth) and 127.0.0.1:5672 (guest/guest)." >&2
    exit 1
  fi
  echo "installing $*"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 90); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "$what did not come up" >&2
  return 1
}

missing_tools=()
for tool in curl python3 pkill; do command -v "$tool" >/dev/null || missing_tools+=("$tool"); done
# The API contract check installs schemathesis (PyPI) into a virtual environment.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing_tools+=(python3-venv)
[ ${#missing_tools[@]} -eq 0 ] || install $PACKAGES_TOOLS
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null ||
  { command -v fc-list >/dev/null && ! fc-list :lang=zh | grep -q .; }; then
  install $PACKAGES_BROWSER
fi

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
export PATH="$PATH:/usr/sbin:/sbin"

fresh_postgres=
if ! command -v pg_isready >/dev/null || ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if ! command -v pg_ctlcluster >/dev/null; then
    install $PACKAGES_POSTGRES
    fresh_postgres=1
  fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
  fi
fi
if [ -n "$fresh_postgres" ]; then
  # A package-installed server asks for a password over TCP; the tests connect as postgres
  # without one, on loopback only.
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! as_root grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
fi
psql -w -h 127.0.0.1 -U postgres -qAtc 'SELECT 1' >/dev/null || {
  echo "PostgreSQL answers on 127.0.0.1:5432 but refuses user postgres without a password:" >&2
  echo "add 'host all postgres 127.0.0.1/32 trust' to pg_hba.conf" >&2
  exit 1
}

if ! answers 5672; then
  if ! command -v rabbitmq-server >/dev/null; then
    install $PACKAGES_RABBITMQ
  fi
  if ! answers 5672; then
    echo "starting RabbitMQ"
    as_root rabbitmq-server -detached
    wait_for RabbitMQ as_root rabbitmq-diagnostics -q ping
  fi
fi
