# DNS: onebox-dns answers for foobar.com with aa and refuses what is not its own. The zone is
# the one `onebox provision` generates for foobar.com with public_ipv4 8.8.8.8 (zones/foobar.com.zone).
# shellcheck disable=SC2154 # dns_port: set by tests/acceptance, which sources this
dig_() { dig +time=2 +tries=2 @127.0.0.1 -p "$dns_port" "$@"; }

www_a() { # www.foobar.com A → 8.8.8.8 with aa, over UDP ($1 empty) or TCP (+tcp)
  local out; out=$(dig_ ${1:-} +norec www.foobar.com A) || return 1
  echo "$out"
  grep -q 'flags:.* aa' <<<"$out" && grep -qE '^www\.foobar\.com\.\s+[0-9]+\s+IN\s+A\s+8\.8\.8\.8$' <<<"$out"
}
refused() { local out; out=$(dig_ example.org A) || return 1; echo "$out"; grep -q 'status: REFUSED' <<<"$out"; }
nxdomain() { # negative answer: NXDOMAIN, aa, the SOA with TTL min(3600, 300) = 300 (RFC 2308)
  local out; out=$(dig_ nothere.foobar.com A) || return 1; echo "$out"
  grep -q 'status: NXDOMAIN' <<<"$out" && grep -q 'flags:.* aa' <<<"$out" &&
    grep -qE '^foobar\.com\.\s+300\s+IN\s+SOA\s' <<<"$out"
}
ns_glue() { # two NS, each name server's address in the additional section
  local out; out=$(dig_ foobar.com NS) || return 1; echo "$out"
  grep -qE '^ns1\.foobar\.com\.\s+[0-9]+\s+IN\s+A\s+8\.8\.8\.8$' <<<"$out" &&
    grep -qE '^ns2\.foobar\.com\.\s+[0-9]+\s+IN\s+A\s+8\.8\.8\.8$' <<<"$out"
}
caa() { # the ACME CA's domain (letsencrypt.org; the test CA's host where the site uses one)
  local out; out=$(dig_ +short foobar.com CAA) || return 1; echo "$out"; grep -qE '^0 issue "[^"]+"$' <<<"$out"
}
no_mail() { # null MX (RFC 7505), SPF -all, DMARC reject: nobody sends mail as foobar.com
  local mx spf dmarc
  mx=$(dig_ +short foobar.com MX) && spf=$(dig_ +short foobar.com TXT) &&
    dmarc=$(dig_ +short _dmarc.foobar.com TXT) || return 1
  echo "$mx / $spf / $dmarc"
  [[ $mx == "0 ." && $spf == '"v=spf1 -all"' && $dmarc == '"v=DMARC1; p=reject"' ]]
}
axfr() { # the whole zone over TCP, SOA first and last
  local out; out=$(dig_ foobar.com AXFR) || return 1; echo "$out"
  [[ $(grep -cE '\sIN\s+SOA\s' <<<"$out") == 2 ]] && grep -q 'XFR size: 12 records' <<<"$out"
}

check "dig www.foobar.com A over UDP answers 8.8.8.8 with aa" www_a
check "dig www.foobar.com A over TCP answers 8.8.8.8 with aa" www_a +tcp
check "dig example.org A is REFUSED" refused
check "dig nothere.foobar.com is NXDOMAIN with the SOA, TTL 300" nxdomain
check "dig foobar.com NS: ns1 and ns2 with their glue" ns_glue
check "dig foobar.com CAA names the ACME CA" caa
check "dig foobar.com MX/TXT, _dmarc TXT: the domain sends no mail" no_mail
check "dig foobar.com AXFR over TCP transfers the whole zone" axfr
