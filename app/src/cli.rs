//! The command line: serve (the default) and `admin set-password USER`.

use crate::config::{ConfigError, Settings};
use crate::{model, password, server};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The onebox application server: users, posts and settings in MySQL.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The site file; its `[app]` section configures the server.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve HTTP on this address instead of `[app] listen` (port 0 picks a free port).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Use this database instead of `[app] database_url`, e.g.
    /// `mysql://onebox@localhost/onebox?socket=/run/mysqld/mysqld.sock`.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// What to do; without one, serve.
    #[command(subcommand)]
    command: Option<Command>,
}

/// What onebox-app can do besides serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the site (the default).
    Serve,
    /// Manage the users who may write.
    Admin {
        /// The user action.
        #[command(subcommand)]
        action: AdminCommand,
    },
}

/// User management.
#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Creates USER or sets their password, read as one line from standard input; ends their
    /// sessions.
    SetPassword {
        /// The user name.
        user: String,
        /// Generate a password instead and print it, once, on standard output.
        #[arg(long)]
        generate: bool,
    },
}

/// An error about the command line or the configuration, as opposed to a failure at run time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// The exit code for `err`: 2 for usage and configuration errors, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() || err.downcast_ref::<ConfigError>().is_some() {
        2
    } else {
        1
    }
}

impl Cli {
    /// Runs the command.
    pub fn run(&self) -> anyhow::Result<()> {
        let settings = Settings::load(
            self.config.as_deref(),
            self.listen,
            self.database_url.clone(),
        )?;
        // Before any thread starts: taking the socket clears LISTEN_FDS and LISTEN_PID.
        let inherited = match &self.command {
            None | Some(Command::Serve) => {
                crate::handover::inherited_listener().map_err(server::ServeError::Inherited)?
            }
            Some(Command::Admin { .. }) => None,
        };
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        match &self.command {
            None | Some(Command::Serve) => runtime.block_on(server::serve(settings, inherited))?,
            Some(Command::Admin {
                action: AdminCommand::SetPassword { user, generate },
            }) => runtime.block_on(set_password(&settings, user, *generate))?,
        }
        Ok(())
    }
}

async fn set_password(settings: &Settings, user: &str, generate: bool) -> anyhow::Result<()> {
    let user = user.trim();
    if user.is_empty()
        || user.chars().count() > crate::input::MAX_USERNAME
        || user.chars().any(char::is_control)
    {
        return Err(UsageError(format!(
            "the user name `{user}` must be 1 to 64 characters without control characters"
        ))
        .into());
    }
    let password = if generate {
        password::generate_password()?
    } else {
        read_password(user)?
    };
    let hash = password::hash_password(&password)?;
    let db = server::open_database(settings).await?;
    model::set_password(&db, user, &hash).await?;
    db.close().await;
    if generate {
        println!("{password}");
    }
    eprintln!("onebox-app: the password of `{user}` is set");
    Ok(())
}

fn read_password(user: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("New password for {user} (shown as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let length = password.chars().count();
    if length < 8 {
        return Err(UsageError(format!(
            "the password read from standard input has {length} characters; it needs at least 8 \
             (or use --generate)"
        ))
        .into());
    }
    if length > 1024 {
        return Err(UsageError("the password is longer than 1024 characters".into()).into());
    }
    Ok(password.to_string())
}
