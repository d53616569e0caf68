# onebox-dns on 127.0.0.1:5353 (UDP and TCP), serving zones/, reading its [dns] section of the
# site file; AXFR of foobar.com allowed to loopback only.
cat >>"$state/site.toml" <<DNS

[dns]
listen = ["127.0.0.1:5353"]
zones = "$root/zones"

[[dns.zone]]
name = "foobar.com"
allow_transfer = ["127.0.0.1", "::1"]
DNS
spawn dns "$bin/onebox-dns" --config "$state/site.toml"
wait_for dns 10 dig +time=1 +tries=1 @127.0.0.1 -p 5353 foobar.com SOA +norec
cat >"$state/try.txt" <<'TRY'
  dig @127.0.0.1 -p 5353 www.foobar.com A
  dig @127.0.0.1 -p 5353 foobar.com AXFR
TRY
