# DNS: onebox-dns answers for foobar.com with aa and refuses what is not its own. The zone is
# the one `onebox provision` generates for foobar.com with public_ipv4 8.8.8.8 (zones/foobar.com.zone),
# signed by onebox-dns (the generated zone's [[dns.zone]] dnssec = true; the VM's seed gives
# zones/foobar.com.zone in zones: with dnssec: true): DNSKEY, CDS/CDNSKEY, RRSIG and NSEC.
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
axfr() { # the whole signed zone over TCP, SOA first and last: the 11 records of the zone file,
  # 2 DNSKEY (KSK, ZSK), 1 CDS and 1 CDNSKEY (the KSK's), 5 NSEC (one per name: the apex, _dmarc,
  # www, ns1, ns2), 18 RRSIG (one per RRset: 10 at the apex — SOA NS A CAA MX TXT DNSKEY CDS
  # CDNSKEY NSEC — and 2 at each other name — its TXT or A, and its NSEC), the SOA again: 39
  local out; out=$(dig_ foobar.com AXFR) || return 1; echo "$out"
  axfr_count() { grep -cE "^[^;].*\sIN\s+$1\s" <<<"$out"; }
  [[ $(axfr_count SOA) == 2 && $(axfr_count DNSKEY) == 2 && $(axfr_count CDS) == 1 && $(axfr_count CDNSKEY) == 1 &&
    $(axfr_count NSEC) == 5 && $(axfr_count RRSIG) == 18 ]] && grep -q 'XFR size: 39 records' <<<"$out"
}
signed_www() { # +dnssec: www's A comes with its RRSIG (algorithm 13, 3 labels), aa
  local out; out=$(dig_ +dnssec +norec www.foobar.com A) || return 1; echo "$out"
  grep -q 'flags:.* aa' <<<"$out" &&
    grep -qE '^www\.foobar\.com\.\s+[0-9]+\s+IN\s+RRSIG\s+A 13 3 ' <<<"$out"
}
dnskey() { # two keys, algorithm 13 (ECDSA P-256): the KSK (flags 257) and the ZSK (256)
  local out; out=$(dig_ +noall +answer foobar.com DNSKEY) || return 1; echo "$out"
  [[ $(grep -cE '\sIN\s+DNSKEY\s' <<<"$out") == 2 ]] &&
    grep -qE '\sIN\s+DNSKEY\s+257 3 13 ' <<<"$out" && grep -qE '\sIN\s+DNSKEY\s+256 3 13 ' <<<"$out"
}

check "dig www.foobar.com A over UDP answers 8.8.8.8 with aa" www_a
check "dig www.foobar.com A over TCP answers 8.8.8.8 with aa" www_a +tcp
check "dig example.org A is REFUSED" refused
check "dig nothere.foobar.com is NXDOMAIN with the SOA, TTL 300" nxdomain
check "dig foobar.com NS: ns1 and ns2 with their glue" ns_glue
check "dig foobar.com CAA names the ACME CA" caa
check "dig foobar.com MX/TXT, _dmarc TXT: the domain sends no mail" no_mail
check "dig foobar.com AXFR over TCP transfers the whole signed zone (39 records)" axfr
check "dig +dnssec www.foobar.com A carries its RRSIG" signed_www
check "dig foobar.com DNSKEY: a KSK (257) and a ZSK (256), algorithm 13" dnskey
