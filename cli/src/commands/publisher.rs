//! `publisher create` and the `token` commands.

use clap::ValueEnum;
use serde::Serialize;

use crate::api::{CreateTokenRequest, TokenView};
use crate::context::Context;
use crate::hints::explain;

/// `plugstore publisher create NAME`.
pub async fn create_publisher(
    ctx: &Context,
    name: &str,
    display_name: Option<&str>,
) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    auth.require_session("creating a publisher")?;
    let publisher = ctx
        .api
        .create_publisher(&auth.bearer, name, display_name)
        .await
        .map_err(|e| explain(e, auth.hint_context(Some(name))))?;
    ctx.out.print(&publisher, || {
        let shown = if publisher.display_name == publisher.name {
            publisher.name.clone()
        } else {
            format!("{} ({})", publisher.name, publisher.display_name)
        };
        format!(
            "created publisher {shown}; you are its owner\nnext: plugstore keygen, then plugstore cert request --publisher {}",
            publisher.name
        )
    })
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenScope {
    /// Publish new versions.
    Publish,
    /// Yank and unyank versions.
    Yank,
    /// Manage the publisher: members, certificates.
    ManagePublisher,
}

impl TokenScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Yank => "yank",
            Self::ManagePublisher => "manage-publisher",
        }
    }
}

/// What to create a token for.
#[derive(Debug)]
pub struct NewToken<'a> {
    /// Name.
    pub name: &'a str,
    /// Scopes (at least one).
    pub scopes: &'a [TokenScope],
    /// Publisher limit.
    pub publisher: Option<&'a str>,
    /// Plugin limit.
    pub plugin: Option<&'a str>,
    /// Lifetime in days.
    pub days: Option<u64>,
}

/// `plugstore token create`.
pub async fn create_token(ctx: &Context, new: NewToken<'_>) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    auth.require_session("creating an API token")?;
    let mut scopes: Vec<String> = new.scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scopes.sort();
    scopes.dedup();
    let request = CreateTokenRequest {
        name: new.name.to_owned(),
        scopes,
        publisher: new.publisher.map(str::to_owned),
        plugin: new.plugin.map(str::to_owned),
        expires_in_days: new.days,
    };
    let created = ctx
        .api
        .create_token(&auth.bearer, &request)
        .await
        .map_err(|e| explain(e, auth.hint_context(new.publisher)))?;
    ctx.out.print(&created, || {
        format!(
            "created API token {} `{}` ({}; expires {})\n\n    {}\n\nThis secret is shown once: store it now, e.g. as a CI secret.\nUse it with `plugstore login --token -` (reading it from standard input) or the PLUGSTORE_TOKEN environment variable.",
            created.token.id,
            created.token.name,
            describe_limits(&created.token),
            created.token.expires_at,
            created.secret.expose()
        )
    })
}

fn describe_limits(token: &TokenView) -> String {
    let mut text = format!("scopes: {}", token.scopes.join(", "));
    match (&token.publisher, &token.plugin) {
        (Some(publisher), Some(plugin)) => text.push_str(&format!("; only {publisher}/{plugin}")),
        (Some(publisher), None) => text.push_str(&format!("; only publisher {publisher}")),
        _ => text.push_str("; any of your publishers"),
    }
    text
}

/// `plugstore token list`.
pub async fn list_tokens(ctx: &Context) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    auth.require_session("listing API tokens")?;
    let tokens = ctx
        .api
        .list_tokens(&auth.bearer)
        .await
        .map_err(|e| explain(e, auth.hint_context(None)))?;
    ctx.out.print(&tokens, || {
        if tokens.is_empty() {
            return "you have no API tokens".into();
        }
        let mut text = String::new();
        for token in &tokens {
            let status = if token.revoked {
                "revoked".to_owned()
            } else {
                format!("expires {}", token.expires_at)
            };
            let used = token
                .last_used_at
                .as_deref()
                .map_or("never used".to_owned(), |at| format!("last used {at}"));
            text.push_str(&format!(
                "{:>5}  {}  ({}; {status}; {used})\n",
                token.id,
                token.name,
                describe_limits(token)
            ));
        }
        text
    })
}

/// What `token revoke` did, for `--json`.
#[derive(Debug, Serialize)]
struct RevokedToken {
    id: i64,
    revoked: bool,
}

/// `plugstore token revoke ID`.
pub async fn revoke_token(ctx: &Context, id: i64) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    auth.require_session("revoking an API token")?;
    ctx.api
        .revoke_token(&auth.bearer, id)
        .await
        .map_err(|e| explain(e, auth.hint_context(None)))?;
    ctx.out.print(&RevokedToken { id, revoked: true }, || {
        format!("revoked API token {id}")
    })
}
