# pebble, a real ACME CA, on https://127.0.0.1:14000/dir (management API :15000), with
# pebble-challtestsrv as its DNS on 127.0.0.1:8053 answering every name with 127.0.0.1: pebble
# validates the edge's challenges on this machine, never through the real foobar.com zone.
# Started by the test kit as the Rust tests start theirs (onebox-testkit pebble): its own HTTPS
# certificate from a throwaway CA, .onebox/pebble/minica.pem, which the edge trusts for the
# directory (acme.directory_ca); PEBBLE_VA_NOSLEEP (validation at once, and real: never
# PEBBLE_VA_ALWAYS_VALID). pebble forgets its CA at every start, so the edge's ACME state is reset
# below in 50-edge.sh.
pebble_dir=$state/pebble
spawn pebble "$bin/onebox-testkit" pebble "$pebble_dir" --http-port 8080 --tls-port 8443 \
  --directory-port 14000 --management-port 15000 --dns-port 8053 --dns-management-port 8055
wait_for pebble 30 grep -q '^ready ' "$log/pebble.log"
