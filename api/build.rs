//! Embeds the built console (`console/dist`, or `VANTAGE_CONSOLE_DIST`) in the binary:
//! writes `$OUT_DIR/console_files.rs`, a table of `(path, bytes, gzip)` with every file
//! of the folder as `include_bytes!`, and a gzip copy of the compressible ones made
//! here (served to clients that accept gzip). Without the folder the table is empty
//! and `vantage api` answers the console's pages with a 503 saying how to build it, so
//! that `cargo build` and `cargo clippy` work without Node.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Extensions worth compressing (text); images and fonts are compressed already.
const COMPRESSIBLE: &[&str] = &["html", "js", "mjs", "css", "json", "svg", "map", "txt"];

fn files(dir: &Path, under: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let rel = if under.is_empty() {
            name
        } else {
            format!("{under}/{name}")
        };
        if e.file_type()?.is_dir() {
            files(&path, &rel, out)?;
        } else {
            out.push((rel, path));
        }
    }
    Ok(())
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    enc.finish()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-env-changed=VANTAGE_CONSOLE_DIST");
    let dist = std::env::var_os("VANTAGE_CONSOLE_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../console/dist"));
    let mut list = Vec::new();
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        files(&dist, "", &mut list)?;
    } else if let Some(console) = dist.parent().filter(|p| p.is_dir()) {
        // Not built: rebuild once `npm run build` writes the folder (a missing path
        // would make cargo rerun this script, and rebuild the crate, every time).
        println!("cargo:rerun-if-changed={}", console.display());
    }
    let gz_dir = out_dir.join("console-gz");
    std::fs::create_dir_all(&gz_dir)?;
    let mut code = String::from(
        "/// One file of the built console: path under dist/, bytes, gzip of the bytes when smaller.\n\
         pub type File = (&'static str, &'static [u8], Option<&'static [u8]>);\n\
         /// The built console.\n\
         pub static FILES: &[File] = &[\n",
    );
    for (i, (rel, path)) in list.iter().enumerate() {
        let bytes = std::fs::read(path)?;
        let ext = rel.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
        let mut gz = "None".to_owned();
        if COMPRESSIBLE.contains(&ext) && bytes.len() > 256 {
            let packed = gzip(&bytes)?;
            if packed.len() < bytes.len() {
                let gz_path = gz_dir.join(format!("{i}.gz"));
                std::fs::write(&gz_path, packed)?;
                gz = format!("Some(include_bytes!({:?}))", gz_path.display().to_string());
            }
        }
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?}), {gz}),",
            path.canonicalize()?.display().to_string()
        )?;
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("console_files.rs"), code)?;
    Ok(())
}
