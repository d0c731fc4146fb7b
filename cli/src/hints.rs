//! Errors that say what to do next.
//!
//! Every failure is printed as `error: …`, and when the CLI knows the way out, a `hint: …` line
//! follows. Commands attach hints where they know the context (which publisher, which key
//! file); problems from the store get a hint by their stable `type` and `code`.

use std::fmt;

use crate::api::{ApiError, Problem};

/// An error with a suggestion of what to do next.
#[derive(Debug)]
pub struct Hinted {
    error: anyhow::Error,
    hint: String,
}

impl Hinted {
    /// The suggestion.
    pub fn hint(&self) -> &str {
        &self.hint
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The whole chain of the wrapped error, so nothing is lost by wrapping.
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Hinted {}

/// `error` with `hint`.
pub fn hinted(error: impl Into<anyhow::Error>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error: error.into(),
        hint: hint.into(),
    })
}

/// Attaches hints to results.
pub trait HintExt<T> {
    /// On error, adds `hint`.
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> HintExt<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| hinted(e, hint))
    }
}

/// What a command knows that makes a hint precise.
#[derive(Debug, Default, Clone, Copy)]
pub struct HintContext<'a> {
    /// The publisher acted on.
    pub publisher: Option<&'a str>,
    /// The signed-in user.
    pub username: Option<&'a str>,
}

/// An API error as an `anyhow::Error`, with the hint that fits it in `context`.
pub fn explain(error: ApiError, context: HintContext<'_>) -> anyhow::Error {
    match api_hint(&error, context) {
        Some(hint) => hinted(error, hint),
        None => error.into(),
    }
}

/// The hint for an error, whether or not a command attached one.
pub fn hint_for(error: &anyhow::Error) -> Option<String> {
    if let Some(hinted) = error.chain().find_map(|e| e.downcast_ref::<Hinted>()) {
        return Some(hinted.hint().to_owned());
    }
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ApiError>())
        .and_then(|e| api_hint(e, HintContext::default()))
}

fn api_hint(error: &ApiError, context: HintContext<'_>) -> Option<String> {
    match error {
        ApiError::Problem {
            problem,
            retry_after,
        } => problem_hint(problem, *retry_after, context),
        ApiError::Transport { .. } => Some(
            "check the registry URL (--registry or PLUGSTORE_REGISTRY) and that the store is running"
                .into(),
        ),
        ApiError::ListTooLong { .. } => Some(
            "the registry keeps naming a next page; report this to the registry's operators"
                .into(),
        ),
        ApiError::Unexpected { .. } | ApiError::Decode { .. } => Some(
            "check that --registry points at a plugstore registry (its API is under /api/v1)"
                .into(),
        ),
    }
}

fn login_hint(context: HintContext<'_>) -> String {
    format!(
        "log in with `plugstore login --username {}`",
        context.username.unwrap_or("NAME")
    )
}

/// The hint for a problem from the store.
pub fn problem_hint(
    problem: &Problem,
    retry_after: Option<u64>,
    context: HintContext<'_>,
) -> Option<String> {
    let publisher = context.publisher.unwrap_or("PUBLISHER");
    let detail = problem.detail.as_deref().unwrap_or_default();
    let hint = match problem.kind() {
        "untrusted-certificate" => format!(
            "request a new certificate with `plugstore cert request --publisher {publisher}`"
        ),
        "invalid-signature" => match problem.code.as_deref() {
            Some("bad-signature" | "algorithm-key-mismatch") => format!(
                "sign with the key your certificate was issued for, or get a certificate for your key with `plugstore cert request --publisher {publisher} --key KEY`"
            ),
            _ => "sign the package again with `plugstore sign` (or let `plugstore publish` sign it)"
                .into(),
        },
        "manifest-mismatch" => {
            "make `id` and `version` in plugin.toml name the plugin and version you publish".into()
        }
        "version-exists" => {
            "version numbers are never reused: raise `version` in plugin.toml and publish again"
                .into()
        }
        "invalid-package" => {
            "fix what the message names and pack again (see the publisher guide's package format page)"
                .into()
        }
        "payload-too-large" => "make the package smaller or ask the store's operators".into(),
        "upload-truncated" => "the connection broke during the upload; run the command again".into(),
        "forbidden" if detail.contains("not a member") => format!(
            "ask an owner of `{publisher}` to add you as a member, or publish under a publisher of your own (`plugstore publisher create NAME`, then use it in plugin.toml's id)"
        ),
        "forbidden" if detail.contains("API tokens cannot") => format!(
            "this needs a login session, not an API token: {}",
            login_hint(context)
        ),
        "forbidden" if detail.contains("lacks the") || detail.contains("limited to") => format!(
            "use a token made for this: `plugstore token create NAME --scope publish --scope yank --publisher {publisher}`"
        ),
        "forbidden" if detail.contains("registration is closed") => {
            "ask an admin of the store to create your account".into()
        }
        "forbidden" if detail.contains("role in publisher") => {
            format!("ask an owner of `{publisher}` to change your role")
        }
        "not-found" if detail.starts_with("no publisher") => {
            format!("create it with `plugstore publisher create {publisher}`, or check the name")
        }
        "conflict" if detail.contains("already exists") => "choose another name".into(),
        "unauthorized" => login_hint(context),
        "refresh-token-reused" => format!(
            "the store ended the session because its refresh token was used twice (a copied credentials file?); {}",
            login_hint(context)
        ),
        "invalid-credentials" => "check the username and password".into(),
        "rate-limited" => match retry_after {
            Some(secs) => format!("wait {secs} seconds and try again"),
            None => "wait a minute and try again".into(),
        },
        "unavailable" | "timeout" => "the store has a temporary problem; try again later".into(),
        "internal" => {
            "try again later; if it keeps failing, tell the store's operators the request id".into()
        }
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str, code: Option<&str>) -> Problem {
        Problem {
            problem_type: format!("/problems/{kind}"),
            title: kind.into(),
            status: 403,
            detail: Some(detail.into()),
            code: code.map(str::to_owned),
            request_id: None,
        }
    }

    #[test]
    fn certificate_problems_point_at_cert_request() {
        let hint = problem_hint(
            &problem("untrusted-certificate", "expired", Some("expired")),
            None,
            HintContext {
                publisher: Some("acme"),
                username: None,
            },
        )
        .unwrap();
        assert_eq!(
            hint,
            "request a new certificate with `plugstore cert request --publisher acme`"
        );
    }

    #[test]
    fn membership_problems_name_the_publisher() {
        let hint = problem_hint(
            &problem(
                "forbidden",
                "you are not a member of publisher `acme`",
                None,
            ),
            None,
            HintContext {
                publisher: Some("acme"),
                username: None,
            },
        )
        .unwrap();
        assert!(hint.contains("owner of `acme`"), "{hint}");
    }

    #[test]
    fn hints_survive_context_and_are_found_in_the_chain() {
        let error = hinted(anyhow::anyhow!("inner"), "do this").context("outer");
        assert_eq!(hint_for(&error).as_deref(), Some("do this"));
        assert_eq!(format!("{error:#}"), "outer: inner");
        let api = anyhow::Error::new(ApiError::Problem {
            problem: Box::new(problem("rate-limited", "slow down", None)),
            retry_after: Some(7),
        });
        assert_eq!(
            hint_for(&api).as_deref(),
            Some("wait 7 seconds and try again")
        );
    }
}
