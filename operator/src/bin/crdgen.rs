//! Writes the CRDs to `crds/` (or checks them with `--check`).

use std::path::PathBuf;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let mut dir = PathBuf::from("crds");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => dir = args.next().context("--out needs a directory")?.into(),
            other => bail!("unknown argument {other:?}; usage: crdgen [--check] [--out DIR]"),
        }
    }
    let stale = vantage_operator::crdgen::write_all(&dir, check)?;
    if check && !stale.is_empty() {
        bail!(
            "stale CRDs: {}; run `make crds` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}
