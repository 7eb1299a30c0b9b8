#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the multi-worker tuning test and
# export SSL_TEXTVAE_POSTGRES_URL (plus SSL_TEXTVAE_POSTGRES_STOP, a command that stops it).
# .ci/run sources this file; run on its own it prints the URL. It installs Debian's
# postgresql package when no server binaries are found, unless SSL_TEXTVAE_PG_NO_INSTALL=1.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.

_ssl_textvae_start_postgres() {
    local bindir run_as dir port
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bindir" ] && command -v pg_ctl >/dev/null 2>&1; then
        bindir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    fi
    if [ -z "$bindir" ]; then
        if [ "${SSL_TEXTVAE_PG_NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
            echo "start_postgres: no PostgreSQL binaries found" >&2
            return 1
        fi
        echo "start_postgres: installing postgresql with apt-get" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq postgresql >/dev/null || return 1
        bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [ -n "$bindir" ] || return 1
    fi
    dir=$(mktemp -d /tmp/ssl_textvae_pg.XXXXXX) || return 1
    run_as=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres || return 1
        chown postgres "$dir"
        run_as=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    (cd "$dir" && "${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust >"$dir/initdb.log" 2>&1) \
        || { cat "$dir/initdb.log" >&2; return 1; }
    (cd "$dir" && "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null) \
        || { cat "$dir/server.log" >&2; return 1; }
    (cd "$dir" && "${run_as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres ssl_textvae) \
        || return 1
    export SSL_TEXTVAE_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$port/ssl_textvae"
    export SSL_TEXTVAE_POSTGRES_STOP="cd $dir && ${run_as[*]} $bindir/pg_ctl -D $dir/data -m fast stop"
    echo "start_postgres: PostgreSQL running at $SSL_TEXTVAE_POSTGRES_URL" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    _ssl_textvae_start_postgres && echo "$SSL_TEXTVAE_POSTGRES_URL"
else
    _ssl_textvae_start_postgres
fi
