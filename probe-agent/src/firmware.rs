//! Firmware updates on the probe.
//!
//! Registration may offer a newer release (`RegistrationReply.firmware`). The probe
//! fetches the bundle with `FETCH <version>` over SSH from the same registration server,
//! checks its digest and its signature against the firmware keys in the trust anchor
//! (`vantage_firmware::verify`), replaces its own executable atomically, records the
//! installed version next to its key, and re-executes itself. A bundle that fails a check
//! is refused, logged and counted; the running firmware carries on, and the same release
//! is not fetched again until the probe restarts.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::PublicKey;
use vantage_core::frame::FirmwareOffer;
use vantage_core::result::PROBE_FW;

use crate::ProbeError;

/// The probe's firmware state.
pub struct Firmware {
    exe: PathBuf,
    state: PathBuf,
    trusted: Vec<PublicKey>,
    version: u32,
    refused: Mutex<HashSet<(u32, String)>>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ProbeError + '_ {
    move |source| ProbeError::File {
        path: path.display().to_string(),
        source,
    }
}

impl Firmware {
    /// The running firmware: the version recorded at the last install if this executable
    /// is that install, else the version compiled in.
    pub fn load(exe: PathBuf, state: PathBuf, trusted: Vec<PublicKey>) -> Self {
        let recorded = std::fs::read_to_string(&state).ok().and_then(|s| {
            let mut words = s.split_whitespace();
            Some((words.next()?.parse::<u32>().ok()?, words.next()?.to_owned()))
        });
        // Hashed in pieces, and only when an install was recorded: reading the whole
        // executable at once made the agent's start-up peak twice its idle size.
        let version = match recorded {
            Some((v, d))
                if vantage_firmware::digest_file(&exe).is_ok_and(|running| running == d) =>
            {
                v
            }
            _ => PROBE_FW,
        };
        Self {
            exe,
            state,
            trusted,
            version,
            refused: Mutex::new(HashSet::new()),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether to fetch this offer: newer, and not refused before.
    pub fn wants(&self, offer: &FirmwareOffer) -> bool {
        offer.version > self.version
            && !self
                .refused
                .lock()
                .map(|r| r.contains(&(offer.version, offer.digest.clone())))
                .unwrap_or(true)
    }

    /// Remember that this release failed its checks.
    pub fn refuse(&self, offer: &FirmwareOffer) {
        if let Ok(mut r) = self.refused.lock() {
            r.insert((offer.version, offer.digest.clone()));
        }
    }

    /// Check the bundle and install it in place of the running executable.
    pub fn install(&self, offer: &FirmwareOffer, bundle: &[u8]) -> Result<(), ProbeError> {
        if self.trusted.is_empty() {
            return Err(ProbeError::NoFirmwareKeys);
        }
        vantage_firmware::verify(
            bundle,
            offer.version,
            &offer.digest,
            &offer.signature,
            &self.trusted,
        )
        .map_err(ProbeError::Firmware)?;
        let staged = self.exe.with_extension("new");
        std::fs::write(&staged, bundle).map_err(io(&staged))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&staged))?;
        std::fs::rename(&staged, &self.exe).map_err(io(&self.exe))?;
        std::fs::write(&self.state, format!("{} {}\n", offer.version, offer.digest))
            .map_err(io(&self.state))?;
        Ok(())
    }

    /// Replace this process with the installed firmware, same arguments. Returns only on error.
    pub fn reexec(&self) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(&self.exe)
            .args(std::env::args_os().skip(1))
            .exec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_a_good_bundle_and_refuses_a_tampered_one() {
        let dir = tempfile::tempdir().expect("dir");
        let exe = dir.path().join("vantage-probe");
        std::fs::write(&exe, b"old firmware").expect("exe");
        let signer = vantage_firmware::generate_key().expect("key");
        let fw = Firmware::load(
            exe.clone(),
            dir.path().join("probe.key.fw"),
            vec![signer.public_key().clone()],
        );
        assert_eq!(fw.version(), PROBE_FW);

        let bundle = b"new firmware".to_vec();
        let (digest, signature) =
            vantage_firmware::sign(&signer, PROBE_FW + 1, &bundle).expect("sign");
        let offer = FirmwareOffer {
            version: PROBE_FW + 1,
            digest,
            signature,
            size: bundle.len() as u64,
        };
        assert!(fw.wants(&offer));

        let mut tampered = bundle.clone();
        tampered[0] ^= 0x20;
        let err = fw.install(&offer, &tampered).expect_err("tampered");
        assert!(err.to_string().contains("altered"), "{err}");
        assert_eq!(
            std::fs::read(&exe).expect("exe"),
            b"old firmware",
            "old firmware keeps running"
        );
        fw.refuse(&offer);
        assert!(!fw.wants(&offer), "a refused release is not fetched again");

        let fresh = Firmware::load(
            exe.clone(),
            dir.path().join("probe.key.fw"),
            vec![signer.public_key().clone()],
        );
        fresh
            .install(&offer, &bundle)
            .expect("good bundle installs");
        assert_eq!(std::fs::read(&exe).expect("exe"), bundle);
        // After a restart, the installed executable reports the installed version.
        let after = Firmware::load(
            exe.clone(),
            dir.path().join("probe.key.fw"),
            vec![signer.public_key().clone()],
        );
        assert_eq!(after.version(), PROBE_FW + 1);
        // An executable that is not the recorded install runs the built-in version.
        std::fs::write(&exe, b"replaced by hand").expect("exe");
        let replaced = Firmware::load(
            exe,
            dir.path().join("probe.key.fw"),
            vec![signer.public_key().clone()],
        );
        assert_eq!(replaced.version(), PROBE_FW);
    }

    #[test]
    fn no_firmware_keys_means_no_firmware() {
        let dir = tempfile::tempdir().expect("dir");
        let exe = dir.path().join("vantage-probe");
        std::fs::write(&exe, b"old").expect("exe");
        let fw = Firmware::load(exe, dir.path().join("state"), vec![]);
        let offer = FirmwareOffer {
            version: PROBE_FW + 1,
            digest: vantage_firmware::digest(b"x"),
            signature: "sig".into(),
            size: 1,
        };
        assert!(fw.install(&offer, b"x").is_err());
    }
}
