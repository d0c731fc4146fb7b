//! The metadata database: one SQL dialect subset shared by SQLite (embedded default) and
//! PostgreSQL (production), reached through sqlx's `Any` driver.
//!
//! Queries use `$1` placeholders (both engines accept them), store times as Unix seconds and
//! flags as nullable timestamps, so the same statement runs on either engine. Each engine has
//! its own migration directory with the same schema.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// The SQL engine behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Embedded SQLite in WAL mode.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Engine {
    /// Recognises the engine from a connection URL.
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// Name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// A connection pool and the engine it talks to.
#[derive(Debug, Clone)]
pub struct Database {
    /// The pool; every query goes through it.
    pub pool: AnyPool,
    /// Which engine the pool connects to.
    pub engine: Engine,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL names no supported engine.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// Connecting failed.
    #[error("cannot connect to the {engine} database: {source}")]
    Connect {
        engine: &'static str,
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file's directory could not be created.
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl Database {
    /// Opens a pool. For SQLite the file (and its directory) is created when missing and put
    /// in WAL mode with foreign keys enforced.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DatabaseError> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(url).ok_or(DatabaseError::UnsupportedUrl)?;
        let mut url = url.to_owned();
        if engine == Engine::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default().to_owned();
            create_private_database_file(std::path::Path::new(&path))?;
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers proceed during writes; busy_timeout turns lock
                        // contention into waiting instead of SQLITE_BUSY errors.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| DatabaseError::Connect {
                engine: engine.name(),
                source,
            })?;
        Ok(Self { pool, engine })
    }

    /// Applies pending migrations for this engine.
    pub async fn migrate(&self) -> Result<(), DatabaseError> {
        match self.engine {
            Engine::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Engine::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// A trivial round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

impl FromStr for Engine {
    type Err = DatabaseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_url(s).ok_or(DatabaseError::UnsupportedUrl)
    }
}

/// Creates the SQLite file (and its directory) readable by the owner only before SQLite opens
/// it: it holds password and token hashes. SQLite gives its `-wal` and `-shm` files the same
/// permissions as the database file.
fn create_private_database_file(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Current time as Unix seconds, the representation of every timestamp column.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Which of `values` a query answers. `sql` selects one text column and writes `{list}`
/// where the values go, as bound parameters (`IN ({list})`; it may appear more than once).
/// Both engines take at least 32766 parameters; callers keep lists to a few hundred.
pub async fn strings_among<'c, E>(
    executor: E,
    sql: &str,
    values: &[String],
) -> Result<HashSet<String>, sqlx::Error>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    if values.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = sql.replace("{list}", &placeholders(values.len()));
    // Not kept as a prepared statement: the text changes with the list's length.
    let mut query = sqlx::query_scalar::<_, String>(&sql).persistent(false);
    for value in values {
        query = query.bind(value);
    }
    Ok(query.fetch_all(executor).await?.into_iter().collect())
}

/// `$1, $2, …, $count`: the bound parameters of an `IN (…)` list.
pub fn placeholders(count: usize) -> String {
    (1..=count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a database error is a unique-constraint violation (a name already taken).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.kind() == sqlx::error::ErrorKind::UniqueViolation
                // SQLite through Any may not classify the error; its message is stable.
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}
