# onebox-dns on 127.0.0.1:5353 (UDP and TCP), serving zones/.
spawn dns "$bin/onebox-dns" --listen 127.0.0.1:5353 --zones "$root/zones"
wait_for dns 10 dig +time=1 +tries=1 @127.0.0.1 -p 5353 foobar.com SOA +norec
cat >"$state/try.txt" <<'TRY'
  dig @127.0.0.1 -p 5353 www.foobar.com A
TRY
