# MariaDB, a private instance for the local stack, started by the test kit as the Rust tests start
# theirs (onebox-testkit mariadb): datadir .onebox/mariadb/data (kept between runs, so posts survive
# `just up` restarts), unix socket .onebox/mariadb/mysqld.sock only (no TCP), the current system
# user authenticated by unix_socket (no password anywhere); the server's own log is
# .onebox/mariadb/mariadbd.log. SIGTERM (`stack stop`) shuts it down cleanly.
mariadb_dir=$state/mariadb
mariadb_sock=$mariadb_dir/mysqld.sock
spawn mariadb "$bin/onebox-testkit" mariadb "$mariadb_dir"
wait_for mariadb 60 grep -q '^ready ' "$log/mariadb.log"
mariadb --no-defaults --socket="$mariadb_sock" -e \
  'CREATE DATABASE IF NOT EXISTS onebox CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci'
