//! `register`, `login`, `logout`, `whoami`.

use serde::Serialize;

use crate::api::{Secret, UserView};
use crate::config::StoredCredential;
use crate::context::{Context, CredentialKind, read_password, read_stdin_line};
use crate::hints::{HintContext, explain, hinted};

/// `plugstore register`.
pub async fn register(ctx: &Context, username: &str, email: &str) -> anyhow::Result<()> {
    let password = read_password("Password: ", true)?;
    let user = ctx
        .api
        .register(username, email, &password)
        .await
        .map_err(|e| explain(e, HintContext::default()))?;
    ctx.remember_registry_if_unset()?;
    ctx.out.print(&user, || {
        format!(
            "registered {} <{}> at {}\nnext: plugstore login --username {}",
            user.username, user.email, ctx.registry, user.username
        )
    })
}

/// What `login` did, for `--json`.
#[derive(Debug, Serialize)]
struct LoginOutcome<'a> {
    registry: &'a str,
    credential: CredentialKind,
    username: Option<&'a str>,
    credentials_file: String,
}

/// `plugstore login --username U` or `plugstore login --token TOKEN`.
pub async fn login(
    ctx: &Context,
    username: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let store = ctx.config.credentials();
    let mut session_days = None;
    let (credential, kind, username) = match (username, token) {
        (_, Some(token)) => {
            let token = if token == "-" {
                read_stdin_line("API token")?
            } else {
                token.trim().to_owned()
            };
            let token = Secret::new(token);
            // Checks the token before storing it, and learns whose it is.
            let me = ctx.api.me(&token).await.map_err(|e| {
                hinted(
                    e,
                    "check the token; create one with `plugstore token create NAME --scope publish --publisher PUBLISHER`",
                )
            })?;
            (
                StoredCredential::ApiToken {
                    username: Some(me.username.clone()),
                    token,
                },
                CredentialKind::ApiToken,
                me.username,
            )
        }
        (Some(username), None) => {
            let password = read_password("Password: ", false)?;
            let tokens = ctx.api.login(username, &password).await.map_err(|e| {
                explain(
                    e,
                    HintContext {
                        publisher: None,
                        username: Some(username),
                    },
                )
            })?;
            session_days = Some(tokens.refresh_expires_in.max(0) / 86_400);
            (
                StoredCredential::Session {
                    username: username.to_owned(),
                    refresh_token: tokens.refresh_token,
                },
                CredentialKind::Session,
                username.to_owned(),
            )
        }
        (None, None) => {
            return Err(hinted(
                anyhow::anyhow!("say how to log in"),
                "pass --username NAME (password from the prompt or standard input), or --token TOKEN for an API token",
            ));
        }
    };
    {
        let _lock = store.lock()?;
        store.put(&ctx.registry, credential)?;
    }
    ctx.remember_registry()?;
    let outcome = LoginOutcome {
        registry: &ctx.registry,
        credential: kind,
        username: Some(&username),
        credentials_file: store.path().display().to_string(),
    };
    ctx.out.print(&outcome, || {
        let mut text = format!(
            "logged in to {} as {username} with {}\ncredentials stored in {}",
            ctx.registry,
            kind.describe(),
            store.path().display()
        );
        if let Some(days) = session_days {
            text.push_str(&format!(
                "\nthe session lasts {days} days; each command renews its access token"
            ));
        }
        text
    })
}

/// What `logout` did, for `--json`.
#[derive(Debug, Serialize)]
struct LogoutOutcome<'a> {
    registry: &'a str,
    logged_out: bool,
}

/// `plugstore logout`: ends the session at the store and forgets the stored credential.
pub async fn logout(ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.config.credentials();
    let stored = store.get(&ctx.registry)?;
    let note = match stored {
        None => {
            let outcome = LogoutOutcome {
                registry: &ctx.registry,
                logged_out: false,
            };
            return ctx.out.print(&outcome, || {
                format!("you were not logged in to {}", ctx.registry)
            });
        }
        Some(StoredCredential::Session { .. }) => {
            // A session that cannot be refreshed has ended already; forgetting it is enough.
            match ctx.authenticate().await {
                Ok(auth) => {
                    if let Err(e) = ctx.api.logout(&auth.bearer).await {
                        eprintln!("warning: the store did not end the session: {e}");
                    }
                }
                Err(e) => eprintln!("warning: {e:#}"),
            }
            None
        }
        Some(StoredCredential::ApiToken { .. }) => Some(
            "the API token itself stays valid until it expires; revoke it with `plugstore token revoke ID`",
        ),
    };
    {
        let _lock = store.lock()?;
        store.remove(&ctx.registry)?;
    }
    let outcome = LogoutOutcome {
        registry: &ctx.registry,
        logged_out: true,
    };
    ctx.out.print(&outcome, || {
        let mut text = format!("logged out of {}", ctx.registry);
        if let Some(note) = note {
            text.push_str(&format!("\nnote: {note}"));
        }
        text
    })
}

/// `whoami --json`.
#[derive(Debug, Serialize)]
struct Identity<'a> {
    registry: &'a str,
    credential: CredentialKind,
    user: &'a UserView,
}

/// `plugstore whoami`.
pub async fn whoami(ctx: &Context) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    let user = ctx
        .api
        .me(&auth.bearer)
        .await
        .map_err(|e| explain(e, auth.hint_context(None)))?;
    let identity = Identity {
        registry: &ctx.registry,
        credential: auth.kind,
        user: &user,
    };
    ctx.out.print(&identity, || {
        format!(
            "{} <{}> (role: {}) at {}, with {}",
            user.username,
            user.email,
            user.role,
            ctx.registry,
            auth.kind.describe()
        )
    })
}
