#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server.
#
#   scripts/with-postgres.sh CMD [ARGS...]
#
# Starts a private server (newest installed Debian major, or $PGBIN) on a free
# port of 127.0.0.1 with its socket and data in a temporary directory, creates the
# database `consortium`, exports DATABASE_URL (and PGHOST/PGPORT/PGUSER/PGDATABASE
# for psql), runs CMD, then stops the server and deletes the directory, whether
# CMD succeeds, fails or is interrupted. Exits with CMD's exit status.
#
# initdb refuses to run as root, so as root the server runs as the `postgres`
# system user (created if missing); as any other user it runs as that user.
# fsync is off: the data is thrown away, and it makes the suite much faster.
set -euo pipefail

log() { echo "with-postgres: $*" >&2; }

if (($# == 0)); then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 64
fi

find_pgbin() {
    local dir
    if [[ -n ${PGBIN:-} ]]; then
        echo "$PGBIN"
        return
    fi
    # /usr/lib/postgresql/<major>/bin: take the newest installed major.
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    if [[ -z $dir || ! -x $dir/initdb ]]; then
        log "no PostgreSQL server found under /usr/lib/postgresql (run: make system-deps)"
        exit 69
    fi
    echo "$dir"
}

free_port() {
    # Ask the kernel for an unused port; without Python, guess one (the start
    # loop below retries when the guess is taken).
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        echo $((20000 + RANDOM % 40000))
    fi
}

PGBIN=$(find_pgbin)

# As root, everything server-side runs as `postgres`; otherwise as ourselves.
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
    if ! id -u postgres >/dev/null 2>&1; then
        if getent group postgres >/dev/null; then group=(--gid postgres); else group=(--user-group); fi
        useradd --system "${group[@]}" --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    as_pg=(runuser -u postgres --)
    # The server user must be able to reach the directory: keep it under /tmp
    # rather than a TMPDIR that may sit inside /root.
    tmp_parent=/tmp
else
    tmp_parent=${TMPDIR:-/tmp}
fi

PGTMP=$(mktemp -d "$tmp_parent/consortium-pg.XXXXXX")
started=0

# shellcheck disable=SC2329  # invoked from the EXIT trap
cleanup() {
    if ((started)); then
        "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGTMP"
}
# EXIT covers normal ends and `set -e` failures; the signal traps turn an
# interrupt into an exit (status 128+n) so that EXIT's cleanup runs.
trap 'rc=$?; trap - EXIT; cleanup; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if ((${#as_pg[@]})); then
    chown postgres: "$PGTMP"
fi

"${as_pg[@]}" "$PGBIN/initdb" -D "$PGTMP/data" -U postgres -A trust -E UTF8 --no-locale \
    --no-sync >"$PGTMP/initdb.log" 2>&1 || {
    cat "$PGTMP/initdb.log" >&2
    log "initdb failed"
    exit 70
}

# A port picked here can be taken before the server binds it: retry a few times.
for attempt in 1 2 3 4 5; do
    PGPORT=$(free_port)
    if "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 30 \
        -o "-p $PGPORT -k $PGTMP -c listen_addresses=127.0.0.1 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off" start >/dev/null; then
        started=1
        break
    fi
    log "server did not start on port $PGPORT (attempt $attempt)"
done
if ((!started)); then
    cat "$PGTMP/server.log" >&2 || true
    exit 70
fi

export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=consortium
"$PGBIN/psql" -X -q -d postgres -v ON_ERROR_STOP=1 -c 'CREATE DATABASE consortium' >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/consortium"
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"

set +e
"$@"
rc=$?
set -e
exit "$rc"
