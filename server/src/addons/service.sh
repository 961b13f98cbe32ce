#!/bin/sh
# caas-addon KIND start|health|backup|restore: the one entry point of an add-on's service
# container (postgres, redis, mysql), built into its image by caasd (server/src/addons/image.rs).
# It runs as the service's own user with no capabilities; the data lives in the add-on's volume at
# /var/lib/caas-addon, the password comes in $CAAS_ADDON_PASSWORD. backup writes a logical dump to
# stdout; restore reads one from stdin and either applies it whole or changes nothing.
set -eu
KIND=$1
ACTION=$2
DIR=/var/lib/caas-addon

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

case "$KIND.$ACTION" in
postgres.start)
    BIN=$(pg_bin)
    if [ ! -s "$DIR/data/PG_VERSION" ]; then
        pw=$(mktemp)
        printf '%s' "$CAAS_ADDON_PASSWORD" >"$pw"
        "$BIN/initdb" -D "$DIR/data" -U caas --pwfile="$pw" -E UTF8 --locale=C \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pw"
        echo "host all all all scram-sha-256" >>"$DIR/data/pg_hba.conf"
        echo "CREATE DATABASE caas" | "$BIN/postgres" --single -D "$DIR/data" postgres >/dev/null
    fi
    exec "$BIN/postgres" -D "$DIR/data" -c listen_addresses='*' -k /tmp
    ;;
postgres.health) exec "$(pg_bin)/pg_isready" -q -h /tmp -U caas -d caas ;;
postgres.backup) exec "$(pg_bin)/pg_dump" -Fc -h /tmp -U caas caas ;;
postgres.restore)
    # One transaction: a dump that fails half way leaves the database as it was.
    exec "$(pg_bin)/pg_restore" -h /tmp -U caas -d caas --clean --if-exists --no-owner \
        --no-privileges --single-transaction --exit-on-error
    ;;
redis.start)
    # A restore leaves its checked RDB beside the data; it replaces the data at the next start.
    if [ -f "$DIR/restore.rdb" ]; then
        rm -rf "$DIR/appendonlydir"
        mv "$DIR/restore.rdb" "$DIR/dump.rdb"
    fi
    aof=yes
    # Redis with appendonly on and no AOF yet starts empty: load the RDB first, then turn the
    # AOF on (which rewrites it from memory).
    if [ -f "$DIR/dump.rdb" ] && [ ! -d "$DIR/appendonlydir" ]; then
        aof=no
        (
            i=0
            until REDISCLI_AUTH=$CAAS_ADDON_PASSWORD redis-cli ping 2>/dev/null | grep -q PONG; do
                i=$((i + 1)); [ $i -lt 600 ] || exit 1; sleep 0.2
            done
            REDISCLI_AUTH=$CAAS_ADDON_PASSWORD redis-cli config set appendonly yes >/dev/null
        ) &
    fi
    exec redis-server --dir "$DIR" --port 6379 --bind '* -::*' --protected-mode no \
        --requirepass "$CAAS_ADDON_PASSWORD" --appendonly "$aof" --save "60 1"
    ;;
redis.health)
    REDISCLI_AUTH=$CAAS_ADDON_PASSWORD redis-cli ping | grep -q PONG
    # Not ready while a restore's AOF rewrite is under way or still loading.
    ! REDISCLI_AUTH=$CAAS_ADDON_PASSWORD redis-cli info persistence | grep -q '^loading:1'
    ;;
redis.backup)
    f=$(mktemp)
    REDISCLI_AUTH=$CAAS_ADDON_PASSWORD redis-cli --rdb "$f" >/dev/null 2>&1
    cat "$f"
    rm -f "$f"
    ;;
redis.restore)
    f=$DIR/restore.tmp
    cat >"$f"
    if ! redis-check-rdb "$f" >/dev/null 2>&1; then
        rm -f "$f"
        echo "not a Redis RDB dump" >&2
        exit 65
    fi
    mv "$f" "$DIR/restore.rdb"
    ;;
mysql.start)
    if [ ! -d "$DIR/data/mysql" ]; then
        mariadb-install-db --datadir="$DIR/data" --auth-root-authentication-method=socket \
            --skip-test-db >/dev/null
        pw=$(printf '%s' "$CAAS_ADDON_PASSWORD" | sed "s/'/''/g")
        cat >"$DIR/init.sql" <<SQL
CREATE DATABASE IF NOT EXISTS caas;
CREATE USER IF NOT EXISTS 'caas'@'%' IDENTIFIED BY '$pw';
GRANT ALL ON *.* TO 'caas'@'%' WITH GRANT OPTION;
SQL
    fi
    init=
    [ -f "$DIR/init.sql" ] && init=--init-file=$DIR/init.sql
    # Debian's config puts the pid file in /run/mysqld, which only its init script makes.
    exec mariadbd --datadir="$DIR/data" --socket=/tmp/mysql.sock --pid-file=/tmp/mysqld.pid \
        --bind-address=0.0.0.0 --port=3306 --skip-name-resolve $init
    ;;
mysql.health)
    mariadb-admin --socket=/tmp/mysql.sock -u caas -p"$CAAS_ADDON_PASSWORD" ping >/dev/null 2>&1
    ;;
mysql.backup)
    exec mariadb-dump --socket=/tmp/mysql.sock -u caas -p"$CAAS_ADDON_PASSWORD" \
        --single-transaction --routines --databases caas
    ;;
mysql.restore)
    exec mariadb --socket=/tmp/mysql.sock -u caas -p"$CAAS_ADDON_PASSWORD" caas
    ;;
*)
    echo "caas-addon: unknown $KIND $ACTION" >&2
    exit 64
    ;;
esac
