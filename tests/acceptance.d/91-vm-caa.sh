# The CAA record pinned to the ACME account (onebox caa, run by onebox-caa.path), in the booted
# image. Pebble's directory is at an IP address here (10.0.2.100), which no CAA record can name:
# the VM shows the edge recording its account and the units running the command on it; the
# pinning itself is cli/tests/caa.rs (pebble at `localhost`).
if [[ $target == vm ]]; then
  caa_account() {
    local record ran
    record=$(vm_ssh sudo cat /var/lib/onebox-edge/acme/account.json) || return 1
    echo "$record"
    grep -q '"account_uri":"https://10\.0\.2\.100:14000/' <<<"$record" || return 1
    vm_ssh systemctl is-active onebox-caa.path || return 1
    ran=$(vm_ssh sudo journalctl -u onebox-caa.service --no-pager -o cat) || return 1
    echo "$ran"
    grep -q 'no CAA record to pin' <<<"$ran"
  }
  check "CAA: the edge records its ACME account's URL; onebox-caa.path runs onebox caa on it" within 60 caa_account
fi
