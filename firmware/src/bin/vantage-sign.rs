//! `vantage-sign`: sign probe firmware offline.
//!
//! ```text
//! vantage-sign keygen --out firmware-signing.key      # prints the public key for trust anchors
//! vantage-sign sign --key firmware-signing.key --bundle vantage-probe --version 6000 \
//!     [--rollout lazy|forced] [--percentage 25] [--name fw-6000]   # prints a ProbeFirmware
//! vantage-sign verify --pubkey "ssh-ed25519 AAAA…" --bundle vantage-probe --version 6000 \
//!     --digest sha256:… --signature sig.pem
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context};
use russh::keys::ssh_key::{LineEnding, PrivateKey, PublicKey};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn need(args: &[String], name: &str) -> anyhow::Result<String> {
    flag(args, name).with_context(|| format!("missing {name}"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("keygen") => {
            let out = PathBuf::from(need(&args, "--out")?);
            if out.exists() {
                bail!("{} exists; refusing to overwrite a signing key", out.display());
            }
            let key = vantage_firmware::generate_key()?;
            let text = key.to_openssh(LineEnding::LF).context("encoding the key")?;
            write_private(&out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", key.public_key().to_openssh().context("encoding the public key")?);
        }
        Some("sign") => {
            let key = PrivateKey::read_openssh_file(std::path::Path::new(&need(&args, "--key")?)).context("reading the signing key")?;
            let bundle_path = need(&args, "--bundle")?;
            let bundle = std::fs::read(&bundle_path).with_context(|| format!("reading {bundle_path}"))?;
            let version: u32 = need(&args, "--version")?.parse().context("--version must be a number")?;
            let rollout = flag(&args, "--rollout").unwrap_or_else(|| "lazy".into());
            if rollout != "lazy" && rollout != "forced" {
                bail!("--rollout must be lazy or forced");
            }
            let percentage = flag(&args, "--percentage").map(|p| p.parse::<u8>()).transpose().context("--percentage must be 0-100")?;
            let name = flag(&args, "--name").unwrap_or_else(|| format!("firmware-{version}"));
            let file = std::path::Path::new(&bundle_path).file_name().and_then(|f| f.to_str()).unwrap_or("bundle").to_owned();
            let (digest, signature) = vantage_firmware::sign(&key, version, &bundle)?;
            println!("apiVersion: vantage.dev/v1alpha1\nkind: ProbeFirmware\nmetadata:\n  name: {name}\nspec:");
            println!("  version: {version}\n  bundle: {file}\n  digest: {digest}\n  rollout: {rollout}");
            if let Some(p) = percentage {
                println!("  percentage: {p}");
            }
            println!("  signature: |");
            for line in signature.lines() {
                println!("    {line}");
            }
        }
        Some("verify") => {
            let key = PublicKey::from_openssh(&need(&args, "--pubkey")?).context("--pubkey is not an OpenSSH public key")?;
            let bundle = std::fs::read(need(&args, "--bundle")?).context("reading the bundle")?;
            let version: u32 = need(&args, "--version")?.parse().context("--version must be a number")?;
            let signature = std::fs::read_to_string(need(&args, "--signature")?).context("reading the signature")?;
            vantage_firmware::verify(&bundle, version, &need(&args, "--digest")?, &signature, &[key])?;
            println!("good signature for version {version}");
        }
        _ => bail!("usage: vantage-sign keygen --out KEY | sign --key KEY --bundle FILE --version N [--rollout lazy|forced] [--percentage P] [--name NAME] | verify --pubkey LINE --bundle FILE --version N --digest D --signature FILE"),
    }
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
