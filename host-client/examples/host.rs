//! A minimal host application: the whole update cycle from the command line.
//!
//! ```text
//! cargo run -p plugstore-client --example host -- \
//!     http://127.0.0.1:8080 ./1.root.json ./plugins ./store-ca.pem <command>
//!
//! commands:
//!   check                    list verified updates, refused offers and revocations
//!   update                   check, then install every verified update (with progress)
//!   install <id> [version]   install one version (default: the newest for this host)
//!   list                     installed plugins, their previous version and whether disabled
//!   rollback <id>            make the previous version current again
//! ```

use std::error::Error;
use std::io::Write as _;

use plugstore_client::{Client, ClientBuilder, UpdateCheck};
use plugstore_format::manifest::{PluginId, Target};
use semver::Version;

const USAGE: &str = "usage: host <base-url> <root.json> <install-dir> <store-ca.pem> \
                     (check | update | install <id> [version] | list | rollback <id>)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base_url, root, dir, ca, command, rest @ ..] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let client = ClientBuilder::new(base_url)
        .trusted_root(std::fs::read(root)?)
        .store_ca_pem(std::fs::read(ca)?)
        .install_dir(dir)
        .host(
            "org.example.host",
            Version::new(2, 3, 0),
            Target::current().unwrap_or(Target::LinuxX86_64),
        )
        .build()?;
    match (command.as_str(), rest) {
        ("check", []) => {
            report(&client.check_updates().await?);
        }
        ("update", []) => {
            let check = client.check_updates().await?;
            report(&check);
            for update in &check.updates {
                let package = &update.package;
                println!("updating {} to {}", package.id, package.version);
                let installed = client.install_update(update, progress).await?;
                println!(
                    "\n  installed in {} ({:?}), signed by {}",
                    installed.path.display(),
                    installed.fetched,
                    installed.signer.subject
                );
            }
        }
        ("install", [id, version @ ..]) if version.len() <= 1 => {
            let id: PluginId = id.parse()?;
            let version = match version.first() {
                Some(version) => version.parse()?,
                None => client
                    .latest_version(&id)
                    .await?
                    .ok_or_else(|| format!("{id} has no version for this host"))?,
            };
            let installed = client.install(&id, &version, progress).await?;
            println!(
                "\ninstalled {id} {} in {}",
                installed.version,
                installed.path.display()
            );
        }
        ("list", []) => list(&client).await?,
        ("rollback", [id]) => {
            let state = client.rollback(&id.parse()?).await?;
            println!("{id} is back at {}", state.current.version);
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

fn progress(received: u64, total: u64) {
    let percent = received
        .saturating_mul(100)
        .checked_div(total)
        .unwrap_or(100);
    print!("\r  {received}/{total} bytes ({percent}%)");
    let _ = std::io::stdout().flush();
}

fn report(check: &UpdateCheck) {
    for update in &check.updates {
        let package = &update.package;
        println!(
            "update: {} {} -> {} ({} bytes{})",
            package.id,
            update.installed_version,
            package.version,
            package.package.length,
            if package.patch.is_some() {
                ", patch available"
            } else {
                ""
            }
        );
    }
    for refusal in &check.refusals {
        println!(
            "refused: {} {}: {}",
            refusal.id, refusal.version, refusal.reason
        );
    }
    for awaiting in &check.awaiting {
        println!(
            "not yet confirmed: {} {} (signed in snapshot {}, this host has {}); ask again later",
            awaiting.id, awaiting.version, awaiting.signed_in_snapshot, awaiting.verified_snapshot
        );
    }
    for revocation in &check.revocations {
        println!(
            "revoked and disabled: {} {} ({})",
            revocation.id,
            revocation.version,
            revocation
                .reason
                .as_deref()
                .unwrap_or("blocked by the store")
        );
    }
    if check.updates.is_empty()
        && check.refusals.is_empty()
        && check.awaiting.is_empty()
        && check.revocations.is_empty()
    {
        println!("everything is up to date");
    }
}

async fn list(client: &Client) -> Result<(), Box<dyn Error>> {
    for plugin in client.list().await? {
        let state = &plugin.state;
        println!(
            "{} {}{}{}",
            plugin.id,
            state.current.version,
            state
                .previous
                .as_ref()
                .map(|previous| format!(" (previous {})", previous.version))
                .unwrap_or_default(),
            state
                .disabled
                .as_ref()
                .map(|disabled| format!(" DISABLED: {}", disabled.reason))
                .unwrap_or_default(),
        );
    }
    Ok(())
}
