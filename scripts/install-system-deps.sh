#!/usr/bin/env bash
# Install the Debian packages listed in scripts/system-packages.txt, if missing.
#
# Idempotent and quiet when everything is present: `apt-get update` runs only
# when something must actually be installed. Installing needs root; as another
# user the script only reports what is missing and fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
list="${SYSTEM_PACKAGES_FILE:-$here/system-packages.txt}"

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
missing=()
for pkg in "${wanted[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "system-deps: all present (${wanted[*]})"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "system-deps: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

echo "system-deps: installing ${missing[*]}"
apt-get update -q

# The tests start their own throwaway server (scripts/with-postgres.sh); keep the
# Debian package from creating (and possibly starting) a 'main' cluster on :5432.
# Same approach as the official postgres image: install postgresql-common first,
# then switch cluster creation off before the server package's postinst runs.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    is_installed postgresql-common || apt_install postgresql-common
    conf=/etc/postgresql-common/createcluster.conf
    if [[ -f $conf ]]; then
        sed -ri 's/^#?[[:space:]]*(create_main_cluster)[[:space:]]*=.*$/\1 = false/' "$conf"
        grep -q '^create_main_cluster = false' "$conf" || echo 'create_main_cluster = false' >>"$conf"
    fi
fi

apt_install "${missing[@]}"
echo "system-deps: done"
