//! Tests of the site file as a whole: errors, defaults, and the README's reference.

use super::*;

fn parse_str(text: &str) -> Result<SiteFile, ConfigError> {
    parse(Path::new("site.toml"), text)
}

fn error(text: &str) -> String {
    match parse_str(text) {
        Ok(file) => format!("no error: {file:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn reads_a_site() {
    let file = parse_str("[site]\ndomain = \"Foobar.COM.\"\npublic_ipv4 = \"8.8.8.8\"\n")
        .expect("valid site");
    assert_eq!(file.site.domain(), "foobar.com");
    assert_eq!(file.site.names(), vec!["foobar.com", "www.foobar.com"]);
    assert_eq!(file.dns, DnsConfig::default());
    assert_eq!(file.edge, EdgeConfig::default());
    assert_eq!(file.app, AppConfig::default());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = error("[site]\ndomain = \"foobar.com\"\ncolour = \"blue\"\n");
    assert!(e.starts_with("site.toml:3:1: site.colour: "), "{e}");
    let e = error("[site]\ndomain = \"foobar.com\"\n[ap]\n");
    assert!(e.starts_with("site.toml:3:"), "{e}");
    assert!(e.contains("ap"), "{e}");
    let e = error("[site]\ndomain = \"foobar.com\"\n[app]\nsession_hours = 3\n");
    assert!(e.starts_with("site.toml:4:1: app.session_hours: "), "{e}");
}

#[test]
fn bad_values_name_their_key_line_and_column() {
    let cases = [
        (
            "[site]\ndomain = \"no spaces.com\"\n",
            "site.toml:2:10: site.domain: ",
            "not a domain",
        ),
        (
            "[site]\ndomain = \"../../x\"\n",
            "site.toml:2:10: site.domain: ",
            "empty label",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[edge.limits]\nkeepalive_secs = 1\nmax_headers = 0\n",
            "site.toml:5:15: edge.limits.max_headers: ",
            "between 1 and 10000",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[edge]\nmetrics_listen = \"0.0.0.0:9100\"\n",
            "site.toml:4:18: edge.metrics_listen: ",
            "loopback",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[edge]\nthreads = 0\n",
            "site.toml:4:11: edge.threads: ",
            "between 1",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[edge.upstream]\nservers = []\n",
            "site.toml:4:11: edge.upstream.servers: ",
            "empty",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[edge.upstream]\nhealth_path = \"healthz\"\n",
            "site.toml:4:15: edge.upstream.health_path: ",
            "start with `/`",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[edge.acme]\nemail = \"nobody\"\n",
            "site.toml:4:9: edge.acme.email: ",
            "e-mail",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[app]\nposts_per_page = 501\n",
            "site.toml:4:18: app.posts_per_page: ",
            "between 1 and 500",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[app]\nlogin_lockout_secs = -1\n",
            "site.toml:4:22: app.login_lockout_secs: ",
            "at least 1",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[app]\ndatabase_url = \"postgres://x@y/z\"\n",
            "site.toml:4:16: app.database_url: ",
            "mysql://",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[dns]\ntcp_idle_timeout_secs = 0\n",
            "site.toml:4:25: dns.tcp_idle_timeout_secs: ",
            "between 1 and 3600",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[[dns.zone]]\nname = \"a.com\"\n[[dns.zone]]\nname = \"b..com\"\n",
            "site.toml:6:8: dns.zone[1].name: ",
            "empty label",
        ),
        (
            "[site]\ndomain = \"a.com\"\n[[dns.zone]]\nname = \"a.com\"\nallow_transfer = [\"1.2.3.4\", \"x\"]\n",
            "site.toml:5:18: dns.zone[0].allow_transfer: ",
            "`x` is not an IP address",
        ),
    ];
    for (text, prefix, words) in cases {
        let e = error(text);
        assert!(e.starts_with(prefix) && e.contains(words), "{text:?}:\n{e}");
    }
}

#[test]
fn rules_across_keys_point_at_a_key() {
    let e = error(
        "[site]\ndomain = \"a.com\"\n[edge.acme]\nemail = \"a@b.example\"\nca = \"custom\"\n",
    );
    assert!(e.starts_with("site.toml:5:6: edge.acme.ca: "), "{e}");
    assert!(e.contains("directory_url"), "{e}");
    let e = error(
        "[site]\ndomain = \"a.com\"\n[edge.acme]\ndirectory_url = \"https://x.example/dir\"\n",
    );
    assert!(
        e.starts_with("site.toml:4:17: edge.acme.directory_url: "),
        "{e}"
    );
    let e = error(
        "[site]\ndomain = \"a.com\"\n[[dns.zone]]\nname = \"a.com\"\n[[dns.zone]]\nname = \"A.com.\"\n",
    );
    assert!(e.starts_with("site.toml:6:8: dns.zone[1].name: "), "{e}");
    let e = error(
        "[site]\ndomain = \"a.com\"\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"http://x/dir\"\n",
    );
    assert!(
        e.starts_with("site.toml:5:17: edge.acme.directory_url: "),
        "{e}"
    );
    assert!(e.contains("https://"), "{e}");
}

#[test]
fn machine_checks_name_the_key_or_its_default() {
    let file = parse_str("[site]\ndomain = \"a.com\"\n[edge]\n\nweb_root = \"/nowhere\"\n")
        .expect("valid");
    let e = file
        .error_at(
            file.edge.web_root.span(),
            "edge.web_root",
            "is not a directory",
        )
        .to_string();
    assert_eq!(e, "site.toml:5:12: edge.web_root: is not a directory");
    let file = parse_str("[site]\ndomain = \"a.com\"\n").expect("valid");
    let e = file
        .error_at(
            file.edge.web_root.span(),
            "edge.web_root",
            "is not a directory",
        )
        .to_string();
    assert_eq!(
        e,
        "site.toml: edge.web_root (not set, so its default): is not a directory"
    );
}

#[test]
fn the_domain_is_required() {
    let e = error("[dns]\nquery_log = true\n");
    assert!(e.contains("site"), "{e}");
    let e = error("[site]\npublic_ipv4 = \"8.8.8.8\"\n");
    assert!(e.contains("domain"), "{e}");
}

/// The `toml` blocks of the README's "Configuration" section: the keys each table documents,
/// and the text of the lines that show defaults (uncommented; `e.g.` lines and tables left out).
fn readme_reference() -> (
    std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    String,
) {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("\n## Configuration")
        .expect("a Configuration section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let mut documented = std::collections::BTreeMap::<_, std::collections::BTreeSet<_>>::new();
    let mut defaults = String::new();
    let (mut in_block, mut table, mut example_table) = (false, String::new(), false);
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```toml";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = line.strip_prefix("# ").unwrap_or(line);
        let example = line.contains("e.g.");
        if let Some(header) = code.strip_prefix('[') {
            table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .to_string();
            example_table = example;
            if !example {
                defaults.push_str(&format!("[{table}]\n"));
            }
        } else if let Some((key, _)) = code.split_once(" =")
            && !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            documented
                .entry(table.clone())
                .or_default()
                .insert(key.to_string());
            if !example && !example_table {
                defaults.push_str(code);
                defaults.push('\n');
            }
        }
    }
    (documented, defaults)
}

/// The keys a table type accepts, from its "unknown field" error.
fn keys_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let err = match toml::from_str::<T>("zz_not_a_key = 1\n") {
        Ok(_) => return Vec::new(),
        Err(err) => err.message().to_string(),
    };
    let expected = err.split("expected").nth(1).unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_reference_shows_the_real_defaults_and_every_key() {
    let (documented, defaults) = readme_reference();
    let file = parse(Path::new("README.md"), &defaults)
        .map_err(|e| format!("{e}\n{defaults}"))
        .expect("the README's reference parses");
    assert_eq!(file.site.domain(), "foobar.com");
    assert_eq!(file.dns, DnsConfig::default(), "README [dns] defaults");
    assert_eq!(file.edge, EdgeConfig::default(), "README [edge] defaults");
    assert_eq!(file.app, AppConfig::default(), "README [app] defaults");
    assert_eq!(
        file.backup,
        BackupConfig::default(),
        "README [backup] defaults"
    );
    assert_eq!(
        file.alerts,
        AlertsConfig::default(),
        "README [alerts] defaults"
    );
    let tables = [
        ("site", keys_of::<Site>()),
        ("dns", keys_of::<DnsConfig>()),
        ("dns.zone", keys_of::<ZoneConfig>()),
        ("dns.tsig", keys_of::<dns::TsigKey>()),
        ("edge", keys_of::<EdgeConfig>()),
        ("edge.upstream", keys_of::<edge::UpstreamConfig>()),
        ("edge.acme", keys_of::<edge::AcmeConfig>()),
        ("edge.headers", keys_of::<edge::HeadersConfig>()),
        ("edge.limits", keys_of::<edge::LimitsConfig>()),
        ("edge.upgrade", keys_of::<edge::UpgradeConfig>()),
        ("edge.page_cache", keys_of::<edge::PageCacheConfig>()),
        ("app", keys_of::<AppConfig>()),
        ("backup", keys_of::<BackupConfig>()),
        ("alerts", keys_of::<AlertsConfig>()),
    ];
    for (table, keys) in tables {
        assert!(!keys.is_empty(), "no keys found for [{table}]");
        for key in keys {
            let subtable = format!("{table}.{key}");
            let shown = documented.get(table).is_some_and(|k| k.contains(&key))
                || documented.contains_key(&subtable);
            assert!(shown, "README: [{table}] {key} is not documented");
        }
    }
}
