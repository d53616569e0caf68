# The site, provisioned as a server's first boot does it: `onebox provision` from the local
# user-data into .onebox/root (site file .onebox/root/etc/onebox/site.toml, zones in
# .onebox/root/etc/onebox/zones, web root .onebox/root/var/www/onebox), the database `onebox`
# in the MariaDB of 20-mariadb.sh, and the first admin password in
# .onebox/root/root/onebox-admin-password (kept: a second run changes nothing).
# shellcheck disable=SC2154,SC2034 # sourced by scripts/stack: its variables and the earlier fragments'
site_root=$state/root
site=$site_root/etc/onebox/site.toml
# The rooted site file looks for MariaDB where a server has it.
mkdir -p "$site_root/run/mysqld"
ln -sfn "$mariadb_sock" "$site_root/run/mysqld/mysqld.sock"
"$bin/onebox" provision --user-data scripts/local.user-data.yaml --root "$site_root" \
  --app-bin "$bin/onebox-app" >"$log/provision.log" 2>&1 || {
  echo "stack: onebox provision failed; its log:" >&2
  cat "$log/provision.log" >&2
  false
}
# Where the README and the acceptance suite look for it.
ln -sfn root/root/onebox-admin-password "$state/admin-password"
