# DNS: onebox-dns answers for foobar.com with aa and refuses what is not its own.
dig_() { dig +time=2 +tries=2 @127.0.0.1 -p "$dns_port" "$@"; }

www_a() { # www.foobar.com A → 8.8.8.8 with aa, over UDP ($1 empty) or TCP (+tcp)
  local out; out=$(dig_ ${1:-} +norec www.foobar.com A) || return 1
  echo "$out"
  grep -q 'flags:.* aa' <<<"$out" && grep -qE '^www\.foobar\.com\.\s+[0-9]+\s+IN\s+A\s+8\.8\.8\.8$' <<<"$out"
}
refused() { local out; out=$(dig_ example.org A) || return 1; echo "$out"; grep -q 'status: REFUSED' <<<"$out"; }

check "dig www.foobar.com A over UDP answers 8.8.8.8 with aa" www_a
check "dig www.foobar.com A over TCP answers 8.8.8.8 with aa" www_a +tcp
check "dig example.org A is REFUSED" refused
