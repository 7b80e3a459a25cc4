//! The trust anchor: the registration servers a probe may use and their host keys.
//!
//! ```yaml
//! registration:
//!   - addr: 127.0.0.1:14443
//!     host_key: "ssh-ed25519 AAAA... optional-comment"
//! firmware_keys:            # keys that sign firmware (vantage-sign); none: no updates
//!   - "ssh-ed25519 AAAA..."
//! ```

use std::path::Path;

use russh::keys::PublicKey;
use serde::Deserialize;

use crate::ProbeError;

#[derive(Deserialize)]
struct AnchorFile {
    registration: Vec<EntryFile>,
    #[serde(default)]
    firmware_keys: Vec<String>,
}

#[derive(Deserialize)]
struct EntryFile {
    addr: String,
    host_key: String,
}

/// One registration server.
#[derive(Clone, Debug)]
pub struct RegistrationServer {
    /// `host:port`.
    pub addr: String,
    /// The host key the server must present.
    pub host_key: PublicKey,
}

/// What is wrong in a trust anchor file: which entry, and why.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("{0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error("registration: list at least one server")]
    NoRegistration,
    #[error("registration[{index}].addr is empty")]
    EmptyAddr { index: usize },
    #[error("registration[{index}].host_key is not an OpenSSH public key: {source}")]
    HostKey {
        index: usize,
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    #[error("firmware_keys[{index}] is not an OpenSSH public key: {source}")]
    FirmwareKey {
        index: usize,
        #[source]
        source: russh::keys::ssh_key::Error,
    },
}

/// A parsed trust anchor: at least one registration server.
#[derive(Clone, Debug)]
pub struct Anchor {
    pub registration: Vec<RegistrationServer>,
    /// Keys whose signatures make firmware acceptable.
    pub firmware_keys: Vec<PublicKey>,
}

impl Anchor {
    pub fn load(path: &Path) -> Result<Self, ProbeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProbeError::File {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ProbeError::Anchor {
            path: path.display().to_string(),
            source,
        })
    }

    /// Parse the YAML text; the error says which entry is wrong.
    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let file: AnchorFile = serde_yaml::from_str(text).map_err(AnchorError::Yaml)?;
        if file.registration.is_empty() {
            return Err(AnchorError::NoRegistration);
        }
        let registration = file
            .registration
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                if e.addr.trim().is_empty() {
                    return Err(AnchorError::EmptyAddr { index: i });
                }
                let host_key = PublicKey::from_openssh(e.host_key.trim())
                    .map_err(|source| AnchorError::HostKey { index: i, source })?;
                Ok(RegistrationServer {
                    addr: e.addr.trim().to_owned(),
                    host_key,
                })
            })
            .collect::<Result<Vec<_>, AnchorError>>()?;
        let firmware_keys = file
            .firmware_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                PublicKey::from_openssh(k.trim())
                    .map_err(|source| AnchorError::FirmwareKey { index: i, source })
            })
            .collect::<Result<Vec<_>, AnchorError>>()?;
        Ok(Self {
            registration,
            firmware_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_anchor_and_reports_bad_keys() {
        let key = crate::identity::generate_key();
        let line = crate::identity::public_line(&key).expect("line");
        let text =
            format!("registration:\n  - addr: 127.0.0.1:14443\n    host_key: \"{line} reg-1\"\n");
        let anchor = Anchor::parse(&text).expect("parses");
        assert_eq!(anchor.registration[0].addr, "127.0.0.1:14443");
        assert_eq!(
            anchor.registration[0].host_key.key_data(),
            key.public_key().key_data()
        );

        let bad = Anchor::parse("registration:\n  - addr: x:1\n    host_key: nope\n")
            .expect_err("bad key");
        assert!(
            matches!(bad, AnchorError::HostKey { index: 0, .. }),
            "{bad}"
        );
        assert!(
            bad.to_string().contains("registration[0].host_key"),
            "{bad}"
        );
        assert!(matches!(
            Anchor::parse("registration: []\n"),
            Err(AnchorError::NoRegistration)
        ));
    }
}
