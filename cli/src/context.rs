//! What every command starts from: the global flags, the state directory, the registry and
//! the caller's credential.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use serde::Serialize;

use crate::api::{ApiError, RegistryClient, Secret, SessionTokens};
use crate::config::{ConfigDir, StoredCredential, normalize_registry};
use crate::hints::{HintContext, explain, hinted};

/// An API token given through the environment (CI), used instead of stored credentials.
pub const TOKEN_ENV: &str = "PLUGSTORE_TOKEN";

/// Longest `Retry-After` the CLI waits out by itself before a session renewal.
const MAX_RATE_LIMIT_WAIT_SECS: u64 = 15;

fn environment_token() -> Option<Secret> {
    std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
}

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Human text, or JSON when `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether `--json` was given.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Prints `value` as JSON with `--json`, else the text `human` makes.
    pub fn print<T: Serialize>(
        self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            let text = human();
            println!("{}", text.trim_end());
        }
        Ok(())
    }
}

/// The global flags, before any command needs the network.
#[derive(Debug)]
pub struct Globals {
    /// `--registry` / `PLUGSTORE_REGISTRY`.
    pub registry: Option<String>,
    /// Output mode.
    pub out: Output,
}

impl Globals {
    /// The state directory.
    pub fn config(&self) -> anyhow::Result<ConfigDir> {
        ConfigDir::locate()
    }

    /// Everything a command that talks to the registry needs.
    pub fn connect(&self) -> anyhow::Result<Context> {
        let config = self.config()?;
        let registry = match &self.registry {
            Some(url) => normalize_registry(url)?,
            None => match config.settings()?.registry {
                Some(url) => normalize_registry(&url)?,
                None => {
                    return Err(hinted(
                        anyhow::anyhow!("no registry is configured"),
                        "pass --registry URL (or set PLUGSTORE_REGISTRY); `plugstore login` remembers it as the default",
                    ));
                }
            },
        };
        let api = RegistryClient::new(&registry)?;
        Ok(Context {
            registry,
            api,
            config,
            out: self.out,
        })
    }
}

/// A command's connection to one registry.
#[derive(Debug)]
pub struct Context {
    /// The registry URL, normalised (the key of its credentials).
    pub registry: String,
    /// The API client.
    pub api: RegistryClient,
    /// The state directory.
    pub config: ConfigDir,
    /// Output mode.
    pub out: Output,
}

/// Which kind of credential authenticated the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// A login session (refresh token exchanged for an access token).
    Session,
    /// A stored API token.
    ApiToken,
    /// An API token from `PLUGSTORE_TOKEN`.
    EnvironmentToken,
}

impl CredentialKind {
    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Session => "a login session",
            Self::ApiToken => "an API token",
            Self::EnvironmentToken => "an API token from PLUGSTORE_TOKEN",
        }
    }
}

/// The caller's bearer credential for this invocation.
#[derive(Debug)]
pub struct Auth {
    /// `Authorization: Bearer` value.
    pub bearer: Secret,
    /// Where it came from.
    pub kind: CredentialKind,
    /// The user, when known without asking the store.
    pub username: Option<String>,
}

impl Auth {
    /// Hint context naming this user.
    pub fn hint_context<'a>(&'a self, publisher: Option<&'a str>) -> HintContext<'a> {
        HintContext {
            publisher,
            username: self.username.as_deref(),
        }
    }

    /// Refuses API tokens for actions the store allows only to login sessions.
    pub fn require_session(&self, what: &str) -> anyhow::Result<()> {
        if self.kind == CredentialKind::Session {
            return Ok(());
        }
        Err(hinted(
            anyhow::anyhow!(
                "{what} needs a login session, but you are signed in with {}",
                self.kind.describe()
            ),
            match self.kind {
                CredentialKind::EnvironmentToken => {
                    "unset PLUGSTORE_TOKEN and log in with `plugstore login --username NAME`"
                }
                _ => "log in with a password: `plugstore login --username NAME`",
            },
        ))
    }
}

impl Context {
    /// Fails, without asking the store, when there is no credential for this registry (so a
    /// command can do its local work first and still stop early for a missing login).
    pub fn ensure_logged_in(&self) -> anyhow::Result<()> {
        if environment_token().is_some() || self.config.credentials().get(&self.registry)?.is_some()
        {
            return Ok(());
        }
        Err(self.not_logged_in())
    }

    fn not_logged_in(&self) -> anyhow::Error {
        hinted(
            anyhow::anyhow!("you are not logged in to {}", self.registry),
            "run `plugstore login --username NAME` (or `plugstore login --token TOKEN` with an API token)",
        )
    }

    /// The caller's credential for this registry: `PLUGSTORE_TOKEN`, a stored API token, or
    /// the stored session, whose refresh token is exchanged (and rotated) here.
    pub async fn authenticate(&self) -> anyhow::Result<Auth> {
        if let Some(token) = environment_token() {
            return Ok(Auth {
                bearer: token,
                kind: CredentialKind::EnvironmentToken,
                username: None,
            });
        }
        let store = self.config.credentials();
        // Held across the refresh: two concurrent invocations must not spend the same
        // refresh token, or the store revokes the session.
        let _lock = store.lock()?;
        match store.get(&self.registry)? {
            None => Err(self.not_logged_in()),
            Some(StoredCredential::ApiToken { username, token }) => Ok(Auth {
                bearer: token,
                kind: CredentialKind::ApiToken,
                username,
            }),
            Some(StoredCredential::Session {
                username,
                refresh_token,
            }) => {
                let tokens = match self.refresh(&refresh_token).await {
                    Ok(tokens) => tokens,
                    Err(ApiError::Problem { problem, .. }) if problem.status == 401 => {
                        store.remove(&self.registry)?;
                        return Err(hinted(
                            anyhow::anyhow!(
                                "your session at {} has ended: {problem}",
                                self.registry
                            ),
                            format!("log in again with `plugstore login --username {username}`"),
                        ));
                    }
                    Err(e) => {
                        return Err(explain(
                            e,
                            HintContext {
                                publisher: None,
                                username: Some(&username),
                            },
                        ));
                    }
                };
                store
                    .put(
                        &self.registry,
                        StoredCredential::Session {
                            username: username.clone(),
                            refresh_token: tokens.refresh_token,
                        },
                    )
                    .with_context(|| {
                        format!(
                            "storing the rotated refresh token in {} (log in again if this persists)",
                            store.path().display()
                        )
                    })?;
                Ok(Auth {
                    bearer: tokens.access_token,
                    kind: CredentialKind::Session,
                    username: Some(username),
                })
            }
        }
    }

    /// Exchanges a refresh token, waiting once if the store's rate limit asks for a short
    /// pause (refreshes share the login limit). A refused request does not spend the token.
    async fn refresh(&self, refresh_token: &Secret) -> Result<SessionTokens, ApiError> {
        match self.api.refresh(refresh_token).await {
            Err(ApiError::Problem {
                problem,
                retry_after: Some(wait),
            }) if problem.status == 429 && wait <= MAX_RATE_LIMIT_WAIT_SECS => {
                eprintln!(
                    "note: the store limits logins and session renewals; retrying in {wait} s"
                );
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                self.api.refresh(refresh_token).await
            }
            other => other,
        }
    }

    /// Remembers this registry as the default.
    pub fn remember_registry(&self) -> anyhow::Result<()> {
        let mut settings = self.config.settings()?;
        if settings.registry.as_deref() != Some(self.registry.as_str()) {
            settings.registry = Some(self.registry.clone());
            self.config.save_settings(&settings)?;
        }
        Ok(())
    }

    /// Remembers this registry as the default unless one is set already.
    pub fn remember_registry_if_unset(&self) -> anyhow::Result<()> {
        if self.config.settings()?.registry.is_none() {
            self.remember_registry()?;
        }
        Ok(())
    }
}

/// Reads a password: from the terminal without echo, or the first line of standard input
/// when it is not a terminal (scripts, CI).
pub fn read_password(prompt: &str, confirm: bool) -> anyhow::Result<Secret> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password(prompt).context("reading the password")?;
        if confirm {
            let again =
                rpassword::prompt_password("Repeat password: ").context("reading the password")?;
            if again != password {
                anyhow::bail!("the passwords do not match");
            }
        }
        if password.is_empty() {
            anyhow::bail!("the password is empty");
        }
        return Ok(Secret::new(password));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(hinted(
            anyhow::anyhow!("no password on standard input"),
            "type it at the prompt, or pipe it: `printf '%s\\n' \"$PASSWORD\" | plugstore …`",
        ));
    }
    Ok(Secret::new(password))
}

/// Reads one secret line from standard input (for `--token -`).
pub fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let value = line.trim().to_owned();
    if value.is_empty() {
        anyhow::bail!("no {what} on standard input");
    }
    Ok(value)
}

/// A Unix time as RFC 3339 (UTC), the way the store writes times.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}
