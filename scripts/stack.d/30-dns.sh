# onebox-dns on 127.0.0.1:5353 (UDP and TCP), serving the provisioned zones, reading the
# provisioned site file; AXFR of foobar.com allowed to loopback only (the user-data's
# allow_transfer).
# shellcheck disable=SC2154,SC2034 # sourced by scripts/stack: its variables and the earlier fragments'
spawn dns "$bin/onebox-dns" --config "$site"
wait_for dns 10 dig +time=1 +tries=1 @127.0.0.1 -p 5353 foobar.com SOA +norec
cat >"$state/try.txt" <<'TRY'
  dig @127.0.0.1 -p 5353 www.foobar.com A
  dig @127.0.0.1 -p 5353 foobar.com AXFR
  target/dist/onebox status --config .onebox/root/etc/onebox/site.toml
TRY
