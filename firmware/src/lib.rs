//! Signed probe firmware.
//!
//! A firmware release is a bundle (the new `vantage-probe` binary), its version, its
//! SHA-256 digest and a signature. The signature is an SSHSIG (the format of
//! `ssh-keygen -Y sign`) by an ed25519 key kept offline, over the *manifest*
//! `vantage-firmware v1\nversion <n>\ndigest sha256:<hex>\n`: it binds the version to the
//! bytes, so an old signed bundle cannot be replayed as a newer version.
//!
//! Anyone can check a release with stock OpenSSH:
//! `printf 'vantage-firmware v1\nversion 6000\ndigest sha256:…\n' | ssh-keygen -Y verify -f allowed_signers -I vantage -n vantage-firmware -s sig`.

use russh::keys::ssh_key::{self, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use sha2::{Digest, Sha256};

/// SSHSIG namespace of firmware signatures.
pub const NAMESPACE: &str = "vantage-firmware";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FirmwareError {
    #[error("bundle digest is {actual}, the release says {expected}: the bundle was altered; refusing it")]
    Tampered { expected: String, actual: String },
    #[error("release carries no signature; refusing unsigned firmware")]
    Unsigned,
    #[error("signature is not an SSHSIG PEM block: {0}; sign the release with `vantage-sign` or `ssh-keygen -Y sign -n vantage-firmware`")]
    BadSignatureFormat(#[source] ssh_key::Error),
    #[error("no trusted firmware key verifies this release (version {version}); refusing it")]
    Untrusted { version: u32 },
    #[error("signing failed: {0}")]
    Sign(#[source] ssh_key::Error),
    #[error("cannot generate an ed25519 signing key: {0}")]
    GenerateKey(#[source] ssh_key::Error),
}

/// `sha256:<hex>` of a bundle.
pub fn digest(bundle: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bundle)))
}

/// `sha256:<hex>` of a file, read in small pieces (a probe hashes its own executable
/// at start and should not hold it in memory to do so).
pub fn digest_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The signed text: version and digest.
pub fn manifest(version: u32, digest: &str) -> String {
    format!("vantage-firmware v1\nversion {version}\ndigest {digest}\n")
}

/// Sign a bundle: returns its digest and the armored SSHSIG over the manifest.
pub fn sign(
    key: &PrivateKey,
    version: u32,
    bundle: &[u8],
) -> Result<(String, String), FirmwareError> {
    let d = digest(bundle);
    let sig = key
        .sign(NAMESPACE, HashAlg::Sha512, manifest(version, &d).as_bytes())
        .map_err(FirmwareError::Sign)?;
    let pem = sig.to_pem(LineEnding::LF).map_err(FirmwareError::Sign)?;
    Ok((d, pem))
}

/// Check a bundle against its release: the digest first, then a signature by one of the
/// `trusted` keys over the manifest.
pub fn verify(
    bundle: &[u8],
    version: u32,
    expected_digest: &str,
    signature: &str,
    trusted: &[PublicKey],
) -> Result<(), FirmwareError> {
    let actual = digest(bundle);
    if actual != expected_digest {
        return Err(FirmwareError::Tampered {
            expected: expected_digest.to_owned(),
            actual,
        });
    }
    if signature.trim().is_empty() {
        return Err(FirmwareError::Unsigned);
    }
    let sig = SshSig::from_pem(signature.trim()).map_err(FirmwareError::BadSignatureFormat)?;
    let text = manifest(version, expected_digest);
    if trusted
        .iter()
        .any(|k| k.verify(NAMESPACE, text.as_bytes(), &sig).is_ok())
    {
        Ok(())
    } else {
        Err(FirmwareError::Untrusted { version })
    }
}

/// Whether probe `id` is in the first `percentage` percent of a rollout. Stable per probe
/// and version, so a probe does not flip in and out as the percentage grows.
pub fn in_rollout(probe_id: u32, version: u32, percentage: Option<u8>) -> bool {
    let Some(p) = percentage else { return true };
    let h = Sha256::digest(format!("{version}/{probe_id}").as_bytes());
    u16::from(h[0]) * 100 / 256 < u16::from(p.min(100))
}

/// A new ed25519 signing key.
pub fn generate_key() -> Result<PrivateKey, FirmwareError> {
    PrivateKey::random(&mut rand::rng(), russh::keys::ssh_key::Algorithm::Ed25519)
        .map_err(FirmwareError::GenerateKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_release_verifies_and_every_alteration_is_refused() {
        let key = generate_key().expect("key");
        let other = generate_key().expect("key");
        let bundle = b"#!/bin/sh\necho new firmware\n".to_vec();
        let (d, sig) = sign(&key, 6000, &bundle).expect("sign");
        let trusted = [key.public_key().clone()];
        assert_eq!(verify(&bundle, 6000, &d, &sig, &trusted), Ok(()));

        let mut tampered = bundle.clone();
        tampered[3] ^= 1;
        assert!(matches!(
            verify(&tampered, 6000, &d, &sig, &trusted),
            Err(FirmwareError::Tampered { .. })
        ));
        assert_eq!(
            verify(&bundle, 6000, &d, "", &trusted),
            Err(FirmwareError::Unsigned)
        );
        assert!(matches!(
            verify(&bundle, 6000, &d, "garbage", &trusted),
            Err(FirmwareError::BadSignatureFormat(_))
        ));
        // A signed release replayed under another version number.
        assert_eq!(
            verify(&bundle, 6001, &d, &sig, &trusted),
            Err(FirmwareError::Untrusted { version: 6001 })
        );
        // Signed by a key the probe does not trust.
        let (d2, sig2) = sign(&other, 6000, &bundle).expect("sign");
        assert_eq!(
            verify(&bundle, 6000, &d2, &sig2, &trusted),
            Err(FirmwareError::Untrusted { version: 6000 })
        );
    }

    #[test]
    fn file_digest_matches_bytes_digest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("b");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(digest_file(&path).expect("digest"), digest(&bytes));
    }

    #[test]
    fn rollout_percentage_is_stable_and_roughly_right() {
        let in25: usize = (0..10_000)
            .filter(|id| in_rollout(*id, 6000, Some(25)))
            .count();
        assert!((2_000..3_000).contains(&in25), "{in25}");
        assert!((0..1000).all(|id| in_rollout(id, 6000, None) && in_rollout(id, 6000, Some(100))));
        assert!((0..1000).all(|id| !in_rollout(id, 6000, Some(0))));
        // Growing the percentage only adds probes.
        assert!(
            (0..1000).all(|id| !in_rollout(id, 6000, Some(10)) || in_rollout(id, 6000, Some(50)))
        );
    }
}
