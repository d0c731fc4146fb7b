//! `plugstore-server`: the registry service and its operator commands.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use plugstore_server::app::AppState;
use plugstore_server::auth::Role;
use plugstore_server::blob_gc::collect_unreferenced;
use plugstore_server::config::{FlagOverride, LoadedSettings, Settings};
use plugstore_server::controllers::auth::create_user;
use plugstore_server::db::Database;
use plugstore_server::serve;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

// The update check allocates a few dozen short-lived buffers per request on two threads;
// glibc's malloc was about a tenth of its profile (free lists consolidated under the
// 40 KB answers), mimalloc's thread-local pages a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "plugstore-server",
    version,
    about = "The plugstore registry service"
)]
struct Cli {
    /// TOML configuration file (also `PLUGSTORE_CONFIG`).
    #[arg(long, global = true, env = "PLUGSTORE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:8080 (`http.bind`).
    #[arg(long, global = true)]
    bind: Option<String>,
    /// Data directory for the embedded defaults (`data_dir`).
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// Database URL, sqlite:// or postgres:// (`database.url`).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// User and key administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The scan worker built into this binary, the same as `plugstore-scanner`
    /// (`plugstore-server scanner worker --help`).
    #[command(disable_help_flag = true)]
    Scanner {
        /// The scanner's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// TUF signing keys: generate, rotate, sign and install a new root
    /// (`plugstore-server keys --help`).
    #[command(disable_help_flag = true)]
    Keys {
        /// The key commands' arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user; the password is read from the first line of standard input.
    CreateUser {
        /// Username.
        #[arg(long)]
        username: String,
        /// Email address.
        #[arg(long)]
        email: String,
        /// developer, reviewer or admin.
        #[arg(long, default_value = "developer")]
        role: String,
    },
    /// Generate a new JWT signing key; older keys keep verifying until their tokens expire.
    RotateJwtKey,
    /// Delete stored blobs that nothing refers to (left by failed writes). Safe while the
    /// store serves.
    CollectBlobs {
        /// Keep blobs written less than this many hours ago.
        #[arg(long, default_value_t = 24)]
        min_age_hours: u64,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every effective setting and where it came from (secrets masked).
    Show,
}

fn load_settings(cli: &Cli) -> anyhow::Result<LoadedSettings> {
    let mut flags = Vec::new();
    let mut flag = |key: &'static str, flag: &'static str, value: &Option<String>| {
        if let Some(value) = value {
            flags.push(FlagOverride {
                key,
                value: value.clone(),
                flag,
            });
        }
    };
    flag("http.bind", "--bind", &cli.bind);
    flag("data_dir", "--data-dir", &cli.data_dir);
    flag("database.url", "--database-url", &cli.database_url);
    Ok(Settings::load(
        cli.config.as_deref(),
        std::env::vars(),
        flags,
    )?)
}

/// Logs to stderr, filtered by `RUST_LOG` (when set, valid and not empty), else `log.level`,
/// else `info`.
///
/// Directives that only name targets and levels (the usual ones) become a [`Targets`] filter.
/// `EnvFilter` is kept for span and field directives: it takes a lock shared by all threads
/// on every span enter and exit, which every request's span pays several times.
fn init_logging(settings: &Settings) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| {
            !directives.trim().is_empty() && EnvFilter::try_new(directives).is_ok()
        })
        .unwrap_or_else(|| settings.log.level.clone());
    // `Targets` would take a span directive (`[request]=debug`) for a target name.
    let spans_or_fields = directives.contains(['[', '{']);
    let targets = directives
        .parse::<Targets>()
        .ok()
        .filter(|_| !spans_or_fields);
    let filter: Box<dyn Layer<Registry> + Send + Sync> = match targets {
        Some(targets) => Box::new(targets),
        None => {
            Box::new(EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info")))
        }
    };
    let logs = tracing_subscriber::registry().with(filter);
    // Colours only for a person at a terminal: under Docker, systemd or a file they would be
    // escape codes in every line. NO_COLOR (no-color.org) turns them off anywhere.
    let colours = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    if settings.log.format == "json" {
        logs.with(output.json()).init();
    } else {
        logs.with(output).init();
    }
}

/// The arguments that reach the built-in scanner's command line again (the embedded worker
/// starts its analysis children with them).
const SCANNER_INVOCATION: &str = "scanner";

/// TUF key management, which the `plugstore-tuf` crate's command line does (it runs on the
/// offline machines of root key holders too).
const KEYS_INVOCATION: &str = "keys";

fn main() -> anyhow::Result<ExitCode> {
    // The scanner has its own command line and runtime; it takes over before this one parses
    // anything, so that its arguments are its own.
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    let mut rest = args.peekable();
    if rest
        .next_if(|first| first == OsStr::new(SCANNER_INVOCATION))
        .is_some()
    {
        let scanner_args = std::iter::once(scanner_program_name(&program)).chain(rest);
        return Ok(plugstore_scanner::cli::main(
            scanner_args,
            vec![SCANNER_INVOCATION.into()],
        ));
    }
    if rest
        .next_if(|first| first == OsStr::new(KEYS_INVOCATION))
        .is_some()
    {
        let keys_args = std::iter::once(OsString::from("plugstore-server keys")).chain(rest);
        return Ok(plugstore_tuf::cli::main(keys_args));
    }
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run(Cli::parse()))
        .map(|()| ExitCode::SUCCESS)
}

/// `plugstore-server scanner`, as the scanner's usage and errors name it.
fn scanner_program_name(program: &OsStr) -> OsString {
    let mut name = program.to_owned();
    name.push(" ");
    name.push(SCANNER_INVOCATION);
    name
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let loaded = load_settings(&cli)?;
    let settings = loaded.settings.clone();
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config(ConfigCommand::Show) => {
            print!("{}", loaded.render());
            Ok(())
        }
        Command::Migrate => {
            init_logging(&settings);
            let db = Database::connect(&settings.database.url, 1).await?;
            db.migrate().await?;
            println!("database is up to date ({})", db.engine.name());
            Ok(())
        }
        Command::Admin(AdminCommand::RotateJwtKey) => {
            let ring = plugstore_server::auth::jwt::KeyRing::open(std::path::Path::new(
                &settings.auth.jwt_keys_dir,
            ))?;
            let kid = ring.rotate()?;
            println!("new JWT signing key {kid}; running servers pick it up within 30 seconds");
            Ok(())
        }
        Command::Admin(AdminCommand::CollectBlobs {
            min_age_hours,
            dry_run,
        }) => {
            init_logging(&settings);
            let app = AppState::open(settings).await?;
            let min_age = std::time::Duration::from_secs(min_age_hours.saturating_mul(3600));
            let report = collect_unreferenced(&app.db, app.blobs.as_ref(), min_age, dry_run)
                .await
                .context("collecting unreferenced blobs")?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!(
                "{} blobs: {} referenced, {} younger than {min_age_hours} h; {verb} {} ({} bytes)",
                report.examined,
                report.referenced,
                report.young,
                report.collected,
                report.collected_bytes
            );
            Ok(())
        }
        Command::Admin(AdminCommand::CreateUser {
            username,
            email,
            role,
        }) => {
            init_logging(&settings);
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role `{role}`; use developer, reviewer or admin")
            })?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!(
                    "no password on standard input; e.g. `echo \"$PASSWORD\" | plugstore-server admin create-user …`"
                );
            }
            let app = AppState::open(settings).await?;
            let user = create_user(&app, &username, &email, password, role)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created {} `{}` (id {})",
                user.role.as_str(),
                user.username,
                user.id
            );
            Ok(())
        }
        Command::Serve => {
            init_logging(&settings);
            serve_command(settings).await
        }
        Command::Scanner { .. } => bail!(
            "`scanner` takes no server options: run `plugstore-server scanner ARGS` with `scanner` first"
        ),
        Command::Keys { .. } => bail!(
            "`keys` takes no server options: run `plugstore-server keys ARGS` with `keys` first"
        ),
    }
}

async fn serve_command(settings: Settings) -> anyhow::Result<()> {
    serve::check_embedded_worker(&settings)?;
    let listener = tokio::net::TcpListener::bind(settings.bind_addr())
        .await
        .with_context(|| format!("cannot listen on {} (http.bind)", settings.http.bind))?;
    let public_url = settings.http.public_url.clone();
    let app = AppState::open(settings).await?;
    let admins: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND deleted_at IS NULL",
    )
    .fetch_one(&app.db.pool)
    .await?;
    println!("plugstore is running at {public_url}  (API reference: {public_url}/docs)");
    if admins == 0 {
        println!(
            "No admin yet. Create one with:\n  echo 'a-long-password' | plugstore-server admin create-user --username admin1 --email you@example.org --role admin"
        );
    }
    serve::run(app, listener).await
}
