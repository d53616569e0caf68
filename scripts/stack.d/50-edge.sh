# onebox-edge from the provisioned site file: HTTP 127.0.0.1:8080, HTTPS 127.0.0.1:8443, metrics
# 127.0.0.1:9100, certificate for foobar.com and www.foobar.com from the local pebble (HTTP-01),
# the app at 127.0.0.1:8000. The root that issued the edge's certificate is written to
# .onebox/ca.pem once it is served.
# pebble starts with a new CA every time: an old certificate would not chain to it, and the
# directory's HTTPS certificate comes from a new CA too (acme.directory_ca of the user-data).
# shellcheck disable=SC2154,SC2034 # sourced by scripts/stack: its variables and the earlier fragments'
rm -rf "$site_root/var/lib/onebox-edge" "$state/ca.pem"
cp "${pebble_ca:-$state/pebble/minica.pem}" "$site_root/etc/onebox/pebble-ca.pem"
www=$site_root/var/www/onebox
[[ -f $www/robots.txt ]] || printf 'User-agent: *\nAllow: /\n' >"$www/robots.txt"
"$bin/onebox-edge" --config "$site" check >/dev/null
spawn edge "$bin/onebox-edge" --config "$site"
wait_for edge 20 curl -sk -o /dev/null --resolve www.foobar.com:8443:127.0.0.1 https://www.foobar.com:8443/robots.txt

# The edge serves the pebble-issued certificate once curl verifies it against pebble's root.
edge_serves_pebble_cert() {
  curl -sf --cacert "$site_root/etc/onebox/pebble-ca.pem" https://127.0.0.1:15000/roots/0 >"$state/ca.pem.tmp" &&
    curl -sf -o /dev/null --cacert "$state/ca.pem.tmp" --resolve www.foobar.com:8443:127.0.0.1 \
      https://www.foobar.com:8443/robots.txt
}
wait_for edge 60 edge_serves_pebble_cert
mv "$state/ca.pem.tmp" "$state/ca.pem"
cat >>"$state/try.txt" <<'TRY'
  curl --cacert .onebox/ca.pem --resolve www.foobar.com:8443:127.0.0.1 https://www.foobar.com:8443/
  curl -i --resolve www.foobar.com:8080:127.0.0.1 http://www.foobar.com:8080/   # 308 to HTTPS
  curl http://127.0.0.1:9100/metrics                                           # edge metrics
TRY
