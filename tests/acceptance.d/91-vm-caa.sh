# The CAA record and the ACME account (onebox caa, run by onebox-caa.path), in the booted image.
# The VM's zone is given in its user-data (zones/foobar.com.zone: CAA `letsencrypt.org`) while its
# CA is pebble at 10.0.2.100: the zone's CAA line is the user's, so onebox caa must leave it
# alone and say so. The pinning itself is cli/tests/caa.rs (a generated zone, pebble).
if [[ $target == vm ]]; then
  caa_account() {
    local record uri ran caa
    record=$(vm_ssh sudo cat /var/lib/onebox-edge/acme/account.json) || return 1
    uri=$(grep -o '"account_uri":"[^"]*"' <<<"$record" | cut -d'"' -f4)
    echo "recorded: $record"
    [[ $uri == https://10.0.2.100:14000/* ]] || return 1
    vm_ssh systemctl is-active onebox-caa.path || return 1
    ran=$(vm_ssh sudo journalctl -u onebox-caa.service --no-pager -o cat) || return 1
    echo "$ran"
    grep -q 'left alone' <<<"$ran" || return 1
    caa=$(dig_ +norec +short foobar.com CAA) || return 1
    echo "CAA: $caa"
    [[ $caa == '0 issue "letsencrypt.org"' ]]
  }
  if [[ $vm_firmware == "$ops_firmware" ]]; then
    within 60 caa_account >/dev/null || true # the edge records its account once its certificate is in
  fi
  once "CAA: the edge records its ACME account; onebox caa leaves a CAA line the user wrote alone" caa_account
  if ((${#once_skipped[@]})); then
    echo "skip $target: ${#once_skipped[@]} checks of the guest's userspace run in the $ops_firmware boot only:"
    printf '       %s\n' "${once_skipped[@]}"
  fi
fi
