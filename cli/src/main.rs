//! `plugstore`: the publisher's command-line tool.
//!
//! Accounts and sessions, publishers, API tokens, signing keys and certificates, and the
//! package workflow: pack, sign, publish, yank, verify. Results go to standard output (JSON
//! with `--json`); errors go to standard error with a hint of what to do next, and a non-zero
//! exit status.

mod api;
mod commands;
mod config;
mod context;
mod hints;
mod keys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plugstore_format::manifest::PluginId;
use plugstore_format::signing::SignatureAlgorithm;

use crate::api::{Rollout, StateChange};
use crate::commands::package::{SignerFiles, VerifyRequest};
use crate::commands::publish::{PublishRequest, VersionRef};
use crate::commands::publisher::{NewToken, TokenScope};
use crate::context::{Globals, Output};
use crate::keys::KeyAlgorithm;

#[derive(Debug, Parser)]
#[command(
    name = "plugstore",
    version,
    about = "Publish signed plugins to a plugstore registry",
    after_help = "From zero to published:\n  plugstore --registry https://plugins.example.org register --username alice --email alice@example.org\n  plugstore login --username alice\n  plugstore publisher create acme\n  plugstore keygen\n  plugstore cert request --publisher acme\n  plugstore publish ./my-plugin"
)]
struct Cli {
    /// Registry URL (default: the registry you last logged in to).
    #[arg(long, global = true, env = "PLUGSTORE_REGISTRY")]
    registry: Option<String>,
    /// Print results as JSON on standard output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account (password from the prompt, or the first line of standard input).
    Register {
        /// 2–39 lowercase letters, digits, hyphens.
        #[arg(long)]
        username: String,
        /// Contact address.
        #[arg(long)]
        email: String,
    },
    /// Log in with a password (a session), or store an API token (CI).
    Login {
        /// Log in as this user; the password comes from the prompt or standard input.
        #[arg(long, conflicts_with = "token")]
        username: Option<String>,
        /// Store this API token instead (`-` reads it from standard input).
        #[arg(long)]
        token: Option<String>,
    },
    /// End the session and forget the stored credential.
    Logout,
    /// Show who you are logged in as.
    Whoami,
    /// Publisher namespaces.
    #[command(subcommand)]
    Publisher(PublisherCommand),
    /// API tokens for CI and scripts.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Generate a signing key (PKCS#8 PEM, mode 0600).
    Keygen {
        /// Key type.
        #[arg(long, value_enum, default_value = "p256")]
        algorithm: KeyAlgorithm,
        /// Where to write it (default: <config>/plugstore/keys/signing.key).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Code-signing certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Package a plugin directory (plugin.toml at its root).
    Pack {
        /// The plugin directory.
        dir: PathBuf,
        /// The package file (default: ./<name>-<version>.tar).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a package with your key and certificate.
    Sign {
        /// The package file.
        package: PathBuf,
        #[command(flatten)]
        signer: SignerArgs,
        /// The signature file (default: PACKAGE.sig.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Pack (for a directory), sign and upload a version.
    Publish {
        /// A plugin directory or a package file.
        path: PathBuf,
        #[command(flatten)]
        signer: SignerArgs,
        /// Upload this signature instead of signing (from `plugstore sign` or openssl).
        #[arg(long, conflicts_with_all = ["key", "cert", "algorithm"])]
        signature: Option<PathBuf>,
        /// Refuse to publish unless plugin.toml's id names this publisher.
        #[arg(long)]
        publisher: Option<String>,
    },
    /// Yank a version: it stays downloadable by digest but is no longer offered.
    Yank {
        /// publisher/name@version.
        target: VersionRef,
        /// Shown to users of the version.
        #[arg(long)]
        reason: String,
    },
    /// Return a yanked version to published.
    Unyank {
        /// publisher/name@version.
        target: VersionRef,
        /// Recorded in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Offer a version's update to a share of hosts only (a staged rollout), or pause it.
    Rollout {
        /// publisher/name@version.
        target: VersionRef,
        /// Percentage of installs offered the update (100 is everyone). Raising it keeps
        /// every install that already had the offer.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
        /// Offer it to nobody new until run again without `--paused`.
        #[arg(long)]
        paused: bool,
    },
    /// Verify a package's signature offline, with the same checks as the store.
    Verify {
        /// The package file.
        package: PathBuf,
        /// Its signature (JSON envelope).
        #[arg(long)]
        signature: PathBuf,
        /// A trusted root CA certificate (PEM); repeatable. Its certificates may bind
        /// publishers by their urn:plugstore:publisher: URI.
        #[arg(long = "ca")]
        ca: Vec<PathBuf>,
        /// Also trust this registry's CA and apply its certificate revocations.
        #[arg(long, value_name = "REGISTRY")]
        publisher_ca_from: Option<String>,
    },
    /// Show a plugin and its public versions.
    Info {
        /// publisher/name.
        id: PluginId,
    },
}

#[derive(Debug, clap::Args)]
struct SignerArgs {
    /// Private key (default: <config>/plugstore/keys/signing.key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Certificate chain, leaf first (default: <config>/plugstore/keys/<publisher>.chain.pem).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Signature algorithm (default: the key's: ecdsa-p256-sha256, ecdsa-p384-sha384,
    /// ed25519, rsa-pss-sha256).
    #[arg(long, value_parser = parse_algorithm)]
    algorithm: Option<SignatureAlgorithm>,
}

impl From<SignerArgs> for SignerFiles {
    fn from(args: SignerArgs) -> Self {
        Self {
            key: args.key,
            cert: args.cert,
            algorithm: args.algorithm,
        }
    }
}

fn parse_algorithm(text: &str) -> Result<SignatureAlgorithm, String> {
    text.parse::<SignatureAlgorithm>().map_err(|_| {
        let known: Vec<&str> = SignatureAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
        format!("unknown algorithm; one of {}", known.join(", "))
    })
}

#[derive(Debug, Subcommand)]
enum PublisherCommand {
    /// Create a publisher; you become its owner (needs a login session).
    Create {
        /// Namespace: 2–39 lowercase letters, digits, hyphens.
        name: String,
        /// Human-readable name.
        #[arg(long)]
        display_name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token; its secret is shown once.
    Create {
        /// What it is for, e.g. github-actions.
        name: String,
        /// What it may do; repeatable.
        #[arg(long = "scope", value_enum, required = true)]
        scopes: Vec<TokenScope>,
        /// Limit it to this publisher.
        #[arg(long)]
        publisher: Option<String>,
        /// Limit it to this plugin of --publisher.
        #[arg(long, requires = "publisher")]
        plugin: Option<String>,
        /// Lifetime in days (default: the store's, 90).
        #[arg(long)]
        days: Option<u64>,
    },
    /// List your API tokens.
    List,
    /// Revoke an API token.
    Revoke {
        /// Token id (from `plugstore token list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Get a code-signing certificate for your key from the store's CA.
    Request {
        /// The publisher to sign for.
        #[arg(long)]
        publisher: String,
        /// The key (default: <config>/plugstore/keys/signing.key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to write the chain (default: <config>/plugstore/keys/<publisher>.chain.pem).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Lifetime in days (default: the store's maximum).
        #[arg(long)]
        days: Option<u32>,
        /// Subject common name (default: your username).
        #[arg(long)]
        name: Option<String>,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let globals = Globals {
        registry: cli.registry,
        out: Output::new(cli.json),
    };
    match cli.command {
        Command::Register { username, email } => {
            commands::account::register(&globals.connect()?, &username, &email).await
        }
        Command::Login { username, token } => {
            commands::account::login(&globals.connect()?, username.as_deref(), token.as_deref())
                .await
        }
        Command::Logout => commands::account::logout(&globals.connect()?).await,
        Command::Whoami => commands::account::whoami(&globals.connect()?).await,
        Command::Publisher(PublisherCommand::Create { name, display_name }) => {
            commands::publisher::create_publisher(
                &globals.connect()?,
                &name,
                display_name.as_deref(),
            )
            .await
        }
        Command::Token(TokenCommand::Create {
            name,
            scopes,
            publisher,
            plugin,
            days,
        }) => {
            commands::publisher::create_token(
                &globals.connect()?,
                NewToken {
                    name: &name,
                    scopes: &scopes,
                    publisher: publisher.as_deref(),
                    plugin: plugin.as_deref(),
                    days,
                },
            )
            .await
        }
        Command::Token(TokenCommand::List) => {
            commands::publisher::list_tokens(&globals.connect()?).await
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            commands::publisher::revoke_token(&globals.connect()?, id).await
        }
        Command::Keygen {
            algorithm,
            out,
            force,
        } => commands::keys::keygen(&globals, algorithm, out, force),
        Command::Cert(CertCommand::Request {
            publisher,
            key,
            out,
            days,
            name,
        }) => {
            commands::keys::request_certificate(
                &globals.connect()?,
                commands::keys::CertRequest {
                    publisher: &publisher,
                    key,
                    out,
                    days,
                    name: name.as_deref(),
                },
            )
            .await
        }
        Command::Pack { dir, out } => commands::package::pack(&globals, &dir, out),
        Command::Sign {
            package,
            signer,
            out,
        } => commands::package::sign_command(&globals, &package, &signer.into(), out),
        Command::Publish {
            path,
            signer,
            signature,
            publisher,
        } => {
            commands::publish::publish(
                &globals.connect()?,
                PublishRequest {
                    path,
                    signer: signer.into(),
                    signature,
                    publisher,
                },
            )
            .await
        }
        Command::Yank { target, reason } => {
            commands::publish::change_state(
                &globals.connect()?,
                &target,
                StateChange::Yank,
                &reason,
            )
            .await
        }
        Command::Unyank { target, reason } => {
            commands::publish::change_state(
                &globals.connect()?,
                &target,
                StateChange::Unyank,
                &reason,
            )
            .await
        }
        Command::Rollout {
            target,
            percent,
            paused,
        } => {
            commands::publish::set_rollout(
                &globals.connect()?,
                &target,
                Rollout { percent, paused },
            )
            .await
        }
        Command::Verify {
            package,
            signature,
            ca,
            publisher_ca_from,
        } => {
            commands::package::verify(
                &globals,
                VerifyRequest {
                    package: &package,
                    signature: &signature,
                    ca: &ca,
                    publisher_ca_from: publisher_ca_from.as_deref(),
                },
            )
            .await
        }
        Command::Info { id } => commands::publish::info(&globals.connect()?, &id).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = hints::hint_for(&error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
