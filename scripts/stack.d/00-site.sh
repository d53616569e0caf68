# The local stack's site file: [site] here; each later fragment appends its own section.
cat >"$state/site.toml" <<'SITE'
[site]
domain = "foobar.com"
SITE
