//! Creating secrets: private files and random opaque tokens.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

/// Writes `bytes` to a new file readable only by the owner (0600 on Unix), via a temporary
/// name and a rename so a crash never leaves a truncated key behind.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `len` bytes from the system CSPRNG, base64url without padding.
pub fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // SystemRandom only fails when the OS has no entropy source, which nothing here can fix.
    SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_else(|_| panic!("the OS random number generator failed"));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256, how opaque tokens are stored at rest.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}
