//! The probe's identity: an ed25519 key in an OpenSSH private key file.

use std::io::Write;
use std::path::Path;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

use crate::ProbeError;

/// A fresh ed25519 key.
pub fn generate_key() -> PrivateKey {
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("vantage-probe");
    key
}

/// The OpenSSH public-key line (`ssh-ed25519 AAAA... vantage-probe`).
pub fn public_line(key: &PrivateKey) -> Result<String, ProbeError> {
    Ok(key.public_key().to_openssh()?)
}

/// Write a new key to `path` (mode 0600), refusing to overwrite anything; return its
/// public-key line.
pub fn write_new_key(path: &Path) -> Result<String, ProbeError> {
    let file_err = |source| ProbeError::File {
        path: path.display().to_string(),
        source,
    };
    let key = generate_key();
    let pem = key.to_openssh(LineEnding::LF)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ProbeError::KeyExists {
                path: path.display().to_string(),
            }
        } else {
            file_err(e)
        }
    })?;
    file.write_all(pem.as_bytes()).map_err(file_err)?;
    file.sync_all().map_err(file_err)?;
    public_line(&key)
}

/// Load the probe key.
pub fn load_key(path: &Path) -> Result<PrivateKey, ProbeError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(ProbeError::File {
            path: path.display().to_string(),
            source,
        });
    }
    Ok(russh::keys::load_secret_key(path, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("probe_key");
        let line = write_new_key(&path).expect("keygen");
        assert!(line.starts_with("ssh-ed25519 "), "{line}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = load_key(&path).expect("load");
        assert_eq!(public_line(&key).expect("line"), line);
        assert!(matches!(
            write_new_key(&path),
            Err(ProbeError::KeyExists { .. })
        ));
        assert!(matches!(
            load_key(&dir.path().join("missing")),
            Err(ProbeError::File { .. })
        ));
    }
}
