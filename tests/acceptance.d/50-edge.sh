# Edge: HTTP redirects to HTTPS, HTTPS is served with a certificate from the CA in .onebox/ca.pem
# (pebble), over HTTP/1.1 and HTTP/2, with the app's home page behind it.
edge_https() { curl -sS --max-time 10 --cacert .onebox/ca.pem --resolve www.foobar.com:8443:127.0.0.1 \
  --resolve foobar.com:8443:127.0.0.1 --resolve other.example:8443:127.0.0.1 "$@"; }
edge_http() { curl -sS --max-time 10 --resolve www.foobar.com:8080:127.0.0.1 "$@"; }

edge_redirect() { # plain HTTP answers 308 to the same host and path on HTTPS
  local out; out=$(edge_http -i 'http://www.foobar.com:8080/some/path?q=1') || return 1
  echo "$out" | head -n 8
  grep -q '^HTTP/1.1 308' <<<"$out" &&
    grep -qi '^location: https://www.foobar.com:8443/some/path?q=1' <<<"$out"
}
edge_home() { # the home page through the edge, certificate verified against .onebox/ca.pem
  local out; out=$(edge_https -i https://www.foobar.com:8443/) || return 1
  echo "$out" | head -n 12
  grep -q '^HTTP/2 200' <<<"$out" && grep -qi '^x-request-id: ' <<<"$out"
}
edge_apex_h1() { # the apex name is on the certificate too; HTTP/1.1 works as well as h2
  local code; code=$(edge_https --http1.1 -o /dev/null -w '%{http_code} %{http_version}' https://foobar.com:8443/) || return 1
  echo "$code"; [[ $code == "200 1.1" ]]
}
edge_security_headers() {
  local out; out=$(edge_https -sI https://www.foobar.com:8443/) || return 1
  echo "$out"
  grep -qi '^strict-transport-security: max-age=' <<<"$out" && grep -qi '^x-content-type-options: nosniff' <<<"$out"
}
edge_unknown_host() { # a name the site does not serve gets 421, not the site
  local code; code=$(curl -sk --max-time 10 --resolve other.example:8443:127.0.0.1 -o /dev/null -w '%{http_code}' https://other.example:8443/)
  echo "$code"; [[ $code == 421 ]]
}

check "edge: http://www.foobar.com:8080/ redirects (308) to https://www.foobar.com:8443/" edge_redirect
check "edge: https://www.foobar.com:8443/ serves the home page over h2 with a verified certificate" edge_home
check "edge: https://foobar.com:8443/ over HTTP/1.1 with a verified certificate" edge_apex_h1
check "edge: HSTS and security headers on HTTPS" edge_security_headers
check "edge: an unknown Host gets 421" edge_unknown_host
if [[ $target == local ]]; then
  edge_static() { # a static file from the web root, with validators
    local out; out=$(edge_https -i https://www.foobar.com:8443/robots.txt) || return 1
    echo "$out"; grep -q '^HTTP/2 200' <<<"$out" && grep -qi '^etag: ' <<<"$out" && grep -q 'User-agent' <<<"$out"
  }
  edge_metrics() {
    local out; out=$(curl -sS --max-time 5 http://127.0.0.1:9100/metrics) || return 1
    grep -E '^onebox_edge_(certificate_from_ca|certificate_expiry_timestamp_seconds) ' <<<"$out"
    grep -q '^onebox_edge_certificate_from_ca 1' <<<"$out"
  }
  check "edge: a static file from the web root (robots.txt) with an ETag" edge_static
  check "edge: metrics on 127.0.0.1:9100 show the CA certificate and its expiry" edge_metrics
fi
