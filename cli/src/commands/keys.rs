//! `keygen` and `cert request`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{FileMode, write_atomically, write_new_file};
use crate::context::{Context, Globals};
use crate::hints::{HintExt as _, explain, hinted};
use crate::keys::{self, KeyAlgorithm, SigningKey};

/// What `keygen` made, for `--json`.
#[derive(Debug, Serialize)]
struct GeneratedKey {
    path: String,
    key_type: String,
    signature_algorithm: String,
    public_key_sha256: Option<String>,
}

/// `plugstore keygen`.
pub fn keygen(
    globals: &Globals,
    algorithm: KeyAlgorithm,
    out: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    let path = match out {
        Some(path) => path,
        None => globals.config()?.default_key_path(),
    };
    if path.exists() && !force {
        return Err(hinted(
            anyhow::anyhow!(
                "refusing to overwrite {}: certificates may have been issued for that key",
                path.display()
            ),
            "pass --force to replace it, or --out FILE to write the new key elsewhere",
        ));
    }
    let der = keys::generate(algorithm)?;
    let key = SigningKey::from_pkcs8_der(der)?;
    let pem = keys::pem_encode("PRIVATE KEY", key.pkcs8_der());
    write_new_file(&path, pem.as_bytes(), FileMode::Private, force)?;
    let generated = GeneratedKey {
        path: path.display().to_string(),
        key_type: key.kind().to_string(),
        signature_algorithm: key.kind().default_algorithm().to_string(),
        public_key_sha256: keys::public_key_summary(&key),
    };
    globals.out.print(&generated, || {
        format!(
            "generated a new {} key in {} (private: mode 0600, keep it out of version control)\npackages are signed with {}\nnext: plugstore cert request --publisher PUBLISHER",
            generated.key_type, generated.path, generated.signature_algorithm
        )
    })
}

/// Loads a signing key, saying how to make one when it is missing.
pub fn load_key(path: &Path) -> anyhow::Result<SigningKey> {
    if !path.exists() {
        return Err(hinted(
            anyhow::anyhow!("there is no signing key at {}", path.display()),
            "create one with `plugstore keygen` (or pass --key FILE)",
        ));
    }
    SigningKey::load(path)
}

/// A PEM CSR for `key` with subject `CN=common_name`. The store sets every extension itself.
pub fn build_csr(key: &SigningKey, common_name: &str) -> anyhow::Result<String> {
    let key_pair = key.rcgen_key_pair()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params.serialize_request(&key_pair)?;
    Ok(csr.pem()?)
}

/// What `cert request` did, for `--json`.
#[derive(Debug, Serialize)]
struct CertificateOutcome<'a> {
    publisher: &'a str,
    chain_file: String,
    #[serde(flatten)]
    certificate: &'a crate::api::CertificateView,
}

/// Options of `cert request`.
#[derive(Debug)]
pub struct CertRequest<'a> {
    /// Publisher to bind the certificate to.
    pub publisher: &'a str,
    /// Key file (default: the default key).
    pub key: Option<PathBuf>,
    /// Chain file to write (default: `keys/<publisher>.chain.pem`).
    pub out: Option<PathBuf>,
    /// Lifetime in days (default: the store's maximum).
    pub days: Option<u32>,
    /// Subject common name (default: the username).
    pub name: Option<&'a str>,
}

/// `plugstore cert request --publisher P`.
pub async fn request_certificate(ctx: &Context, request: CertRequest<'_>) -> anyhow::Result<()> {
    let key_path = request.key.unwrap_or_else(|| ctx.config.default_key_path());
    let key = load_key(&key_path)?;
    let auth = ctx.authenticate().await?;
    let hint_context = auth.hint_context(Some(request.publisher));
    let common_name = match (request.name, &auth.username) {
        (Some(name), _) => name.to_owned(),
        (None, Some(username)) => username.clone(),
        (None, None) => {
            ctx.api
                .me(&auth.bearer)
                .await
                .map_err(|e| explain(e, hint_context))?
                .username
        }
    };
    let csr = build_csr(&key, &common_name)?;
    let issued = ctx
        .api
        .issue_certificate(&auth.bearer, request.publisher, &csr, request.days)
        .await
        .map_err(|e| explain(e, hint_context))?;
    let out = request
        .out
        .unwrap_or_else(|| ctx.config.default_chain_path(request.publisher));
    write_atomically(&out, issued.chain_pem.as_bytes(), FileMode::Public)
        .hint("pass --out FILE to write the certificate chain elsewhere")?;
    let certificate = &issued.certificate;
    let outcome = CertificateOutcome {
        publisher: request.publisher,
        chain_file: out.display().to_string(),
        certificate,
    };
    ctx.out.print(&outcome, || {
        format!(
            "issued a code-signing certificate for publisher {}\n  subject:     {}\n  fingerprint: sha256:{}\n  expires:     {}\n  chain:       {}\nnext: plugstore publish DIR",
            request.publisher,
            certificate.subject,
            certificate.fingerprint,
            certificate.not_after,
            out.display()
        )
    })
}
