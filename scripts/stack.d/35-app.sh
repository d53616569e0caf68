# onebox-app on 127.0.0.1:8000 from the provisioned site file, against the local MariaDB over
# its unix socket (unix_socket authentication: no password). 25-provision.sh made the database
# and the `admin` user (password in .onebox/admin-password).
# shellcheck disable=SC2154,SC2034 # sourced by scripts/stack: its variables and the earlier fragments'
spawn app "$bin/onebox-app" --config "$site"
wait_for app 30 curl -sf http://127.0.0.1:8000/healthz
cat >>"$state/try.txt" <<'TRY'
  curl http://127.0.0.1:8000/                 # the app directly; admin password in .onebox/admin-password
TRY
