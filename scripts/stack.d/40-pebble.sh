# pebble, a real ACME CA, on https://127.0.0.1:14000/dir (management API :15000), with
# pebble-challtestsrv as its DNS on 127.0.0.1:8053 answering every name with 127.0.0.1: pebble
# validates the edge's challenges on this machine, never through the real foobar.com zone.
# pebble forgets its CA at every start, so the edge's ACME state is reset below in 50-edge.sh.
pebble_dir=$state/pebble
mkdir -p "$pebble_dir"
if [[ ! -s $pebble_dir/cert.pem ]]; then
  # pebble's own HTTPS certificate (Debian ships no test certs): a throwaway CA and a leaf for
  # localhost/127.0.0.1. minica.pem is what the edge trusts for the directory (acme.directory_ca).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=onebox local minica" -keyout "$pebble_dir/minica.key" -out "$pebble_dir/minica.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$pebble_dir/key.pem" -out "$pebble_dir/cert.csr" 2>/dev/null
  openssl x509 -req -in "$pebble_dir/cert.csr" -CA "$pebble_dir/minica.pem" -CAkey "$pebble_dir/minica.key" \
    -CAcreateserial -days 3650 -out "$pebble_dir/cert.pem" \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n') 2>/dev/null
  chmod 600 "$pebble_dir/minica.key" "$pebble_dir/key.pem"
fi
cat >"$pebble_dir/pebble.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:14000",
    "managementListenAddress": "127.0.0.1:15000",
    "certificate": "$pebble_dir/cert.pem",
    "privateKey": "$pebble_dir/key.pem",
    "httpPort": 8080,
    "tlsPort": 8443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
spawn challtestsrv pebble-challtestsrv -dns01 127.0.0.1:8053 -http01 "" -https01 "" -tlsalpn01 "" \
  -management 127.0.0.1:8055 -defaultIPv4 127.0.0.1 -defaultIPv6 ""
wait_for challtestsrv 10 dig +time=1 +tries=1 @127.0.0.1 -p 8053 www.foobar.com A
# PEBBLE_VA_NOSLEEP: validate at once rather than after a random 0-15 s pause (validation
# itself stays real: no PEBBLE_VA_ALWAYS_VALID).
PEBBLE_VA_NOSLEEP=1 spawn pebble pebble -config "$pebble_dir/pebble.json" -dnsserver 127.0.0.1:8053
wait_for pebble 20 curl -sf --cacert "$pebble_dir/minica.pem" https://127.0.0.1:14000/dir
