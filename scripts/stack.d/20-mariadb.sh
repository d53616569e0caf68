# MariaDB, a private instance for the local stack: datadir .onebox/mariadb/data (kept between
# runs, so posts survive `just up` restarts), unix socket .onebox/mariadb/mysqld.sock only (no
# TCP), the current system user authenticated by unix_socket (no password anywhere).
mariadb_dir=$state/mariadb
mariadb_sock=$mariadb_dir/mysqld.sock
mariadb_user_args=()
[[ $(id -u) == 0 ]] && mariadb_user_args=(--user=root)
mkdir -p "$mariadb_dir"
if [[ ! -d $mariadb_dir/data/mysql ]]; then
  rm -rf "$mariadb_dir/data"
  mariadb-install-db --no-defaults "${mariadb_user_args[@]}" --datadir="$mariadb_dir/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$log/mariadb-install.log" 2>&1 || {
    echo "stack: mariadb-install-db failed; its log:" >&2
    tail -n 20 "$log/mariadb-install.log" >&2
    false
  }
fi
spawn mariadb mariadbd --no-defaults "${mariadb_user_args[@]}" --datadir="$mariadb_dir/data" \
  --socket="$mariadb_sock" --pid-file="$mariadb_dir/mysqld.pid" --skip-networking \
  --innodb-buffer-pool-size=128M --skip-log-bin
wait_for mariadb 30 mariadb-admin --no-defaults --socket="$mariadb_sock" ping
mariadb --no-defaults --socket="$mariadb_sock" -e \
  'CREATE DATABASE IF NOT EXISTS onebox CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci'
