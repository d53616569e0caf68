# onebox-app: the home page rendered from MySQL through the edge over HTTPS, /healthz, the
# admin area, and (local stack) a login with the admin password and a post made through the
# API that then shows on the home page. The VM's own login/post checks are in 90-vm.sh.
app_https() { curl -sS --max-time 10 --cacert .onebox/ca.pem --resolve www.foobar.com:8443:127.0.0.1 "$@"; }
app_home() {
  local out; out=$(app_https -f https://www.foobar.com:8443/) || return 1
  grep -q '<header><h1><a href="/">' <<<"$out" || { echo "$out" | head -20; return 1; }
}
app_healthz() { local out; out=$(app_https -f https://www.foobar.com:8443/healthz) && [[ $out == ok ]]; }
app_admin() { app_https -f https://www.foobar.com:8443/admin | grep -q 'name="password"'; }
check "app: home page over HTTPS through the edge, rendered from MySQL" app_home
check "app: /healthz through the edge is 200 ok" app_healthz
check "app: /admin shows the login form over HTTPS" app_admin
# A body over the app's max_body_bytes (1 MiB by default, under the edge's 10 MiB): the app
# answers 413 before the body has arrived and drains the rest, so curl, still sending, gets it.
app_too_large() {
  local out
  out=$(head -c 3145728 /dev/zero | tr '\0' ' ' | app_https -i -H 'Content-Type: application/json' \
    --data-binary @- https://www.foobar.com:8443/api/login) || return 1
  echo "$out" | head -3
  grep -q '^HTTP/[0-9.]* 413' <<<"$out" && grep -q 'too large' <<<"$out"
}
check "app: a 3 MiB body to the API through the edge gets the app's 413, not a broken connection" app_too_large

if [[ $target == local ]]; then
  app_jar=$(mktemp)
  app_title="Acceptance post $(date +%s)-$RANDOM"
  app_login() {
    local pw out
    pw=$(cat .onebox/admin-password) || return 1
    out=$(app_https -i -c "$app_jar" -H 'Content-Type: application/json' \
      -d "$(jq -n --arg p "$pw" '{username: "admin", password: $p}')" \
      https://www.foobar.com:8443/api/login) || return 1
    echo "$out" | head -20
    grep -q '^HTTP/[0-9.]* 200' <<<"$out" &&
      grep -qi '^set-cookie: onebox_session=.*HttpOnly; SameSite=Lax; Secure' <<<"$out"
  }
  app_post() {
    local out
    out=$(app_https -f -b "$app_jar" -H 'Content-Type: application/json' \
      -d "$(jq -n --arg t "$app_title" '{title: $t, body: "Made by **tests/acceptance**.", published: true}')" \
      https://www.foobar.com:8443/api/posts) || return 1
    jq -e --arg t "$app_title" '.title == $t and .published == true' <<<"$out"
  }
  app_on_home() { app_https -f https://www.foobar.com:8443/ | grep -qF "$app_title"; }
  app_no_session() {
    local code
    code=$(app_https -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      -d '{"title": "x", "body": "", "published": true}' https://www.foobar.com:8443/api/posts)
    echo "status $code"; [[ $code == 401 ]]
  }
  check "app: login with the admin password via the API (Secure session cookie)" app_login
  check "app: create a post through the API" app_post
  check "app: the new post is on the home page" app_on_home
  check "app: writing without a session is 401" app_no_session
  rm -f "$app_jar"
fi
