//! Alerts: a check of `onebox doctor` that fails is a problem. A new problem is sent at once, one
//! still there again after `[alerts] repeat_secs` (a day by default), and a problem that went
//! away once as fixed — to the webhook (a JSON POST) and by e-mail through the SMTP relay
//! (lettre). What was sent is kept in a root-only state file; a send that fails is retried at
//! the next run.

use crate::backup::Site;
use crate::doctor::{Check, Status};
use crate::rootfs::{Perm, Root};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The state file's name in `[backup] state_dir`.
pub const STATE_FILE: &str = "alerts.json";

/// A problem being reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    /// When it was first seen (unix time).
    since: i64,
    /// When it was last sent (unix time).
    sent: i64,
}

/// The state file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    problems: BTreeMap<String, Open>,
}

/// One event of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The check (`backup`, `service.onebox-app` …).
    pub check: String,
    /// `problem` or `fixed`.
    pub state: &'static str,
    /// What the check found.
    pub detail: String,
    /// Its fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What `--alert` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sent {
    /// The events sent (empty: nothing new).
    pub events: Vec<Event>,
    /// The channels they went to (`webhook`, `email`).
    pub channels: Vec<String>,
    /// Why a channel failed (the events are sent again next time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Sent {
    /// One line for people.
    pub fn summary(&self) -> String {
        if self.events.is_empty() && self.errors.is_empty() {
            return "nothing new to send".into();
        }
        let mut s = format!(
            "{} event(s) ({}) to {}",
            self.events.len(),
            self.events
                .iter()
                .map(|e| format!("{} {}", e.check, e.state))
                .collect::<Vec<_>>()
                .join(", "),
            if self.channels.is_empty() {
                "no channel (none configured)".into()
            } else {
                self.channels.join(" and ")
            }
        );
        if !self.errors.is_empty() {
            s += &format!("; FAILED: {}", self.errors.join("; "));
        }
        s
    }
}

/// Works out the events from `checks`, sends them, records what was sent.
pub async fn process(site: &Site, checks: &[Check]) -> anyhow::Result<Sent> {
    let state_rel = site.state_dir()?.join(STATE_FILE);
    let state_path = site.host(&state_rel);
    let mut state: State = match std::fs::read(&state_path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{}", state_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => anyhow::bail!("{}: {e}", state_path.display()),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let repeat = site.file.alerts.repeat_secs.get() as i64;
    let mut events = Vec::new();
    let mut next = State::default();
    for c in checks {
        match (c.status, state.problems.remove(&c.name)) {
            (Status::Fail, Some(open)) if now - open.sent < repeat => {
                next.problems.insert(c.name.clone(), open);
            }
            (Status::Fail, open) => {
                events.push(Event {
                    check: c.name.clone(),
                    state: "problem",
                    detail: c.detail.clone(),
                    fix: c.fix.clone(),
                });
                next.problems.insert(
                    c.name.clone(),
                    Open {
                        since: open.map_or(now, |o| o.since),
                        sent: now,
                    },
                );
            }
            // Could not be checked: the problem is neither confirmed nor fixed.
            (Status::Unknown, Some(open)) => {
                next.problems.insert(c.name.clone(), open);
            }
            (_, Some(_)) => events.push(Event {
                check: c.name.clone(),
                state: "fixed",
                detail: c.detail.clone(),
                fix: None,
            }),
            (_, None) => {}
        }
    }
    // Problems of checks that no longer exist are dropped silently.
    let mut sent = Sent {
        events,
        ..Sent::default()
    };
    if sent.events.is_empty() {
        return Ok(sent);
    }
    let alerts = &site.file.alerts;
    let creds = site.host(&site.relative(&alerts.credentials_dir)?);
    let domain = site.file.site.domain.to_string();
    let host = hostname();
    let timeout = alerts.timeout_secs.secs();
    let webhook = read_secret(&creds.join("webhook_url"))?;
    if let Some(url) = webhook {
        let body = serde_json::json!({
            "domain": domain,
            "host": host,
            "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "events": sent.events,
        });
        match post(&url, &body, timeout).await {
            Ok(()) => sent.channels.push("webhook".into()),
            Err(e) => sent.errors.push(format!("webhook: {e}")),
        }
    }
    if !alerts.email_to.is_empty() {
        let password = read_secret(&creds.join("smtp_password"))?;
        let (subject, text) = email_text(&domain, &host, &sent.events);
        match email(site, password, &subject, &text).await {
            Ok(()) => sent.channels.push("email".into()),
            Err(e) => sent.errors.push(format!("e-mail: {e:#}")),
        }
    }
    if sent.errors.is_empty() {
        let root = Root::open(&site.root)?;
        root.write_atomic(
            &state_rel,
            &serde_json::to_vec_pretty(&next)?,
            Perm {
                mode: 0o600,
                owner: Some((0, 0)),
            },
            Perm {
                mode: 0o700,
                owner: Some((0, 0)),
            },
            true,
        )?;
    }
    Ok(sent)
}

/// A one-line secret file (`None` when there is none).
fn read_secret(path: &std::path::Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Ok(None),
        Ok(t) => Ok(Some(t.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "onebox".into())
}

/// POSTs `body` as JSON; any 2xx is success. The URL is never shown (it carries a token).
async fn post(
    url: &str,
    body: &serde_json::Value,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let answer = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("the POST failed: {}", e.without_url()))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", answer.status()))
    }
}

/// The subject and text of an alert e-mail.
fn email_text(domain: &str, host: &str, events: &[Event]) -> (String, String) {
    let problems = events.iter().filter(|e| e.state == "problem").count();
    let fixed = events.len() - problems;
    let subject = match (problems, fixed) {
        (0, _) => format!("[onebox {domain}] fixed: {}", names(events)),
        (_, 0) => format!("[onebox {domain}] PROBLEM: {}", names(events)),
        _ => format!("[onebox {domain}] PROBLEM and fixed: {}", names(events)),
    };
    let mut text = format!("onebox doctor on {host} ({domain}):\n\n");
    for e in events {
        text += &format!(
            "{} {}: {}\n",
            if e.state == "problem" {
                "PROBLEM"
            } else {
                "fixed  "
            },
            e.check,
            e.detail
        );
        if let Some(fix) = &e.fix {
            text += &format!("        fix: {fix}\n");
        }
    }
    text += "\n`onebox doctor` shows every check.\n";
    (subject, text)
}

fn names(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| e.check.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends one e-mail through the configured relay (blocking, on a worker thread).
async fn email(
    site: &Site,
    password: Option<String>,
    subject: &str,
    text: &str,
) -> anyhow::Result<()> {
    use lettre::message::Mailbox;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};
    let a = site.file.alerts.clone();
    let relay = a
        .smtp_relay
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no [alerts] smtp_relay"))?;
    let from: Mailbox = match &a.email_from {
        Some(f) => f.as_str().parse()?,
        None => format!("onebox@{}", site.file.site.domain).parse()?,
    };
    let mut builder = Message::builder().from(from).subject(subject);
    for to in &a.email_to {
        builder = builder.to(to.as_str().parse()?);
    }
    let message = builder.body(text.to_string())?;
    let host = relay.host().to_string();
    let tls = || TlsParameters::new(host.clone());
    let mut transport = SmtpTransport::builder_dangerous(relay.host())
        .port(relay.port())
        .timeout(Some(a.timeout_secs.secs()));
    transport = match a.smtp_tls {
        onebox_site::ops::SmtpTls::None => transport.tls(Tls::None),
        onebox_site::ops::SmtpTls::Starttls => transport.tls(Tls::Required(tls()?)),
        onebox_site::ops::SmtpTls::Tls => transport.tls(Tls::Wrapper(tls()?)),
    };
    if let Some(user) = &a.smtp_username {
        transport =
            transport.credentials(Credentials::new(user.clone(), password.unwrap_or_default()));
    }
    let mailer = transport.build();
    tokio::task::spawn_blocking(move || mailer.send(&message))
        .await?
        .map_err(|e| anyhow::anyhow!("{relay:?}: {e}"))?;
    Ok(())
}
