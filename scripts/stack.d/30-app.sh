# onebox-app on 127.0.0.1:8000 against the local MariaDB over its unix socket (unix_socket
# authentication: no password). The first run creates the `admin` user with a generated password
# in .onebox/admin-password (mode 600).
app_db_url="mysql://$(id -un)@localhost/onebox?socket=$mariadb_sock"
cat >>"$state/site.toml" <<TOML

[app]
listen = "127.0.0.1:8000"
database_url = "$app_db_url"
TOML
admin_exists=$(mariadb --no-defaults --socket="$mariadb_sock" -N -e \
  "SELECT COUNT(*) FROM onebox.users WHERE username = 'admin'" 2>/dev/null || echo 0)
if [[ ! -s $state/admin-password ]]; then
  (umask 077 && "$bin/onebox-app" --config "$state/site.toml" admin set-password admin --generate \
    </dev/null >"$state/admin-password.tmp" 2>"$log/app-admin.log" &&
    mv "$state/admin-password.tmp" "$state/admin-password") || {
    echo "stack: creating the admin user failed:" >&2; cat "$log/app-admin.log" >&2; false
  }
elif [[ $admin_exists != 1 ]]; then
  # The database was reset but the password file kept: give admin that password again.
  "$bin/onebox-app" --config "$state/site.toml" admin set-password admin \
    <"$state/admin-password" 2>"$log/app-admin.log"
fi
chmod 600 "$state/admin-password"
spawn app "$bin/onebox-app" --config "$state/site.toml"
wait_for app 30 curl -sf http://127.0.0.1:8000/healthz
cat >>"$state/try.txt" <<'TRY'
  curl http://127.0.0.1:8000/                 # the app directly; admin password in .onebox/admin-password
TRY
