//! SSH keys: server host keys on disk, probe keys from `Probe` resources.

use std::path::Path;

use russh::keys::{ssh_key, HashAlg, PrivateKey, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read host key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host key {path} is not an OpenSSH private key: {source}")]
    Parse {
        path: String,
        #[source]
        source: ssh_key::Error,
    },
    #[error("cannot write host key {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a host key: {0}")]
    Generate(#[source] ssh_key::Error),
}

/// Load the ed25519 host key at `path`, creating it (mode 0600) when it does not exist.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let shown = path.display().to_string();
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        return PrivateKey::from_openssh(text).map_err(|source| KeyError::Parse {
            path: shown,
            source,
        });
    }
    let key = PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519)
        .map_err(KeyError::Generate)?;
    let text = key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(KeyError::Generate)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
            path: shown.clone(),
            source,
        })?;
    }
    write_private(path, text.as_bytes()).map_err(|source| KeyError::Write {
        path: shown,
        source,
    })?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// The OpenSSH public-key line of a key (`ssh-ed25519 AAAA...`), without comment.
pub fn public_line(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default()
}

/// SHA-256 fingerprint, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parse an OpenSSH public-key line.
pub fn parse_public(line: &str) -> Option<PublicKey> {
    PublicKey::from_openssh(line.trim()).ok()
}
