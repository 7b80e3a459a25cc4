//! Writes the CRDs to `crds/` and the NATS authorization block to
//! `nats/authorization.conf` (or checks them with `--check`).

use std::path::PathBuf;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let mut dir = PathBuf::from("crds");
    let mut nats = PathBuf::from("nats/authorization.conf");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => dir = args.next().context("--out needs a directory")?.into(),
            "--nats-out" => nats = args.next().context("--nats-out needs a file path")?.into(),
            other => bail!(
                "unknown argument {other:?}; usage: crdgen [--check] [--out DIR] [--nats-out FILE]"
            ),
        }
    }
    let mut stale = vantage_operator::crdgen::write_all(&dir, check)?;
    if vantage_operator::crdgen::write_nats_authorization(&nats, check)? {
        stale.push(nats.display().to_string());
    }
    if check && !stale.is_empty() {
        bail!(
            "stale generated files: {}; run `make crds` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}
