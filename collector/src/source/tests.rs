use super::*;

use std::process::Command;

/// A dataset for the tests: `data.txt` must exist; each line is a word, `bad` lines are
/// reported and skipped.
#[derive(Debug, PartialEq)]
struct Words(Vec<String>);

impl Dataset for Words {
    const KIND: &'static str = "words";
    fn from_snapshot(s: &Snapshot) -> Result<(Self, Vec<BadLine>), DatasetError> {
        let (file, bytes) = s
            .named("data.txt")
            .next()
            .ok_or_else(|| DatasetError("data.txt is missing".into()))?;
        let mut words = Vec::new();
        let mut bad = Vec::new();
        for (i, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
            if line == "bad" {
                bad.push(BadLine {
                    file: file.to_owned(),
                    line: i + 1,
                    reason: "the word bad".into(),
                });
            } else {
                words.push(line.to_owned());
            }
        }
        Ok((Words(words), bad))
    }
}

fn git_cmd(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn words(w: &Watched<Words>) -> Vec<String> {
    w.get().0.clone()
}

#[test]
fn specs_parse_by_scheme() {
    let p = |s: &str| s.parse::<SourceSpec>().expect(s);
    assert_eq!(
        p("/etc/vantage/fp"),
        SourceSpec::Path("/etc/vantage/fp".into())
    );
    assert_eq!(
        p("https://github.com/ooni/blocking-fingerprints.git"),
        SourceSpec::Git {
            url: "https://github.com/ooni/blocking-fingerprints.git".into(),
            branch: None
        }
    );
    assert_eq!(
        p("git+https://example.org/lists#stable"),
        SourceSpec::Git {
            url: "https://example.org/lists".into(),
            branch: Some("stable".into())
        }
    );
    assert_eq!(
        p("https://example.org/lists/archive/main.tar.gz"),
        SourceSpec::Http {
            url: "https://example.org/lists/archive/main.tar.gz".into()
        }
    );
    for bad in ["", "ftp://example.org/x", "https://example.org/x#main"] {
        let e = bad.parse::<SourceSpec>().expect_err(bad).to_string();
        assert!(e.contains("source"), "{e}");
    }
    assert_eq!(p("git+file:///srv/r#b").to_string(), "git+file:///srv/r#b");
}

#[test]
fn directories_are_read_recursively_without_hidden_entries() {
    let d = tempfile::tempdir().expect("test setup");
    std::fs::create_dir_all(d.path().join("lists")).expect("test setup");
    std::fs::create_dir_all(d.path().join(".git")).expect("test setup");
    std::fs::write(d.path().join("lists/it.csv"), "a").expect("test setup");
    std::fs::write(d.path().join("global.csv"), "b").expect("test setup");
    std::fs::write(d.path().join(".git/HEAD"), "c").expect("test setup");
    let s = Snapshot::read_path(d.path()).expect("test setup");
    assert_eq!(
        s.files.keys().collect::<Vec<_>>(),
        ["global.csv", "lists/it.csv"]
    );
    assert_eq!(
        s.named("it.csv").map(|(p, _)| p).collect::<Vec<_>>(),
        ["lists/it.csv"]
    );
    assert!(
        s.version.starts_with("sha256:") && s.version.len() == 19,
        "{}",
        s.version
    );
    std::fs::write(d.path().join("global.csv"), "b2").expect("test setup");
    assert_ne!(
        Snapshot::read_path(d.path()).expect("test setup").version,
        s.version
    );
    // A single file is a snapshot of one file, named by its name.
    let one = Snapshot::read_path(&d.path().join("global.csv")).expect("test setup");
    assert_eq!(one.files.keys().collect::<Vec<_>>(), ["global.csv"]);
    let missing = Snapshot::read_path(&d.path().join("nope"))
        .expect_err("must fail")
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
}

#[tokio::test]
async fn git_sources_clone_then_pull_and_are_versioned_by_commit() {
    let repo = tempfile::tempdir().expect("test setup");
    git_cmd(repo.path(), &["init", "-q"]);
    std::fs::write(repo.path().join("data.txt"), "one\n").expect("test setup");
    git_cmd(repo.path(), &["add", "."]);
    git_cmd(repo.path(), &["commit", "-q", "-m", "one"]);
    let cache = tempfile::tempdir().expect("test setup");
    let spec: SourceSpec = format!("git+file://{}", repo.path().display())
        .parse()
        .expect("test setup");
    let first = fetch(&spec, cache.path()).await.expect("test setup");
    assert!(first.version.starts_with("git:"), "{}", first.version);
    assert_eq!(first.files["data.txt"], b"one\n");
    std::fs::write(repo.path().join("data.txt"), "two\n").expect("test setup");
    git_cmd(repo.path(), &["commit", "-q", "-am", "two"]);
    let second = fetch(&spec, cache.path()).await.expect("test setup");
    assert_ne!(second.version, first.version);
    assert_eq!(second.files["data.txt"], b"two\n");
    let broken: SourceSpec = "git+file:///nonexistent/repo".parse().expect("test setup");
    let e = fetch(&broken, tempfile::tempdir().expect("test setup").path())
        .await
        .expect_err("must fail")
        .to_string();
    assert!(
        e.contains("git clone") && e.contains("/nonexistent/repo"),
        "{e}"
    );
}

/// Serve `files` (path → bytes) on a loopback port.
async fn serve(files: BTreeMap<String, Vec<u8>>) -> std::net::SocketAddr {
    use axum::extract::{Path as UrlPath, State};
    let app = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::get(
                |State(files): State<Arc<BTreeMap<String, Vec<u8>>>>,
                 UrlPath(path): UrlPath<String>| async move {
                    match files.get(&path) {
                        Some(b) => (axum::http::StatusCode::OK, b.clone()),
                        None => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
                    }
                },
            ),
        )
        .with_state(Arc::new(files));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn tar_gz(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, body) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, body.as_bytes())
            .expect("test setup");
    }
    b.into_inner()
        .expect("test setup")
        .finish()
        .expect("test setup")
}

#[tokio::test]
async fn http_sources_unpack_archives_and_fetch_single_files() {
    let addr = serve(BTreeMap::from([
        (
            "lists-main.tar.gz".to_owned(),
            tar_gz(&[
                ("lists-main/lists/it.csv", "a"),
                ("lists-main/README.md", "r"),
            ]),
        ),
        ("data.txt".to_owned(), b"x\n".to_vec()),
        ("broken.tar.gz".to_owned(), b"not gzip".to_vec()),
    ]))
    .await;
    let cache = tempfile::tempdir().expect("test setup");
    let get = |p: &str| {
        format!("http://{addr}/{p}")
            .parse::<SourceSpec>()
            .expect("test setup")
    };
    let s = fetch(&get("lists-main.tar.gz"), cache.path())
        .await
        .expect("test setup");
    assert_eq!(
        s.files.keys().collect::<Vec<_>>(),
        ["README.md", "lists/it.csv"]
    );
    let one = fetch(&get("data.txt"), cache.path())
        .await
        .expect("test setup");
    assert_eq!(one.files.keys().collect::<Vec<_>>(), ["data.txt"]);
    let e = fetch(&get("missing.txt"), cache.path())
        .await
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("404"), "{e}");
    let e = fetch(&get("broken.tar.gz"), cache.path())
        .await
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("not a valid .tar.gz"), "{e}");
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_followed_source_reloads_counts_bad_lines_and_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().expect("test setup");
    std::fs::write(dir.path().join("data.txt"), "a\nbad\nb\n").expect("test setup");
    let metrics = SourceMetrics::default();
    let health = Health::default();
    let follow_cfg = Follow {
        spec: SourceSpec::Path(dir.path().to_owned()),
        every: Duration::from_millis(50),
        cache_dir: tempfile::tempdir().expect("test setup").keep(),
    };
    let (w, task) = follow(
        follow_cfg,
        || Words(vec![]),
        metrics.clone(),
        health.clone(),
    )
    .await;
    assert_eq!(words(&w), ["a", "b"]);
    let bad = |file: &str| {
        metrics
            .bad_lines
            .get_or_create(&FileLabel {
                kind: "words".into(),
                file: file.into(),
            })
            .get()
    };
    assert_eq!(bad("data.txt"), 1);
    let detail = &health.detail()["source.words"];
    assert_eq!(detail["bad_lines"], 1);
    assert_eq!(detail["origin"], "source");

    // A new version is put in force; its gauge replaces the old one.
    std::fs::write(dir.path().join("data.txt"), "c\n").expect("test setup");
    until("reload", || words(&w) == ["c"]).await;
    assert_eq!(bad("data.txt"), 0);
    let kind = KindLabel {
        kind: "words".into(),
    };
    assert_eq!(metrics.reloads.get_or_create(&kind).get(), 1);

    // A broken version is refused: the set stays, the failure is counted and shown.
    std::fs::remove_file(dir.path().join("data.txt")).expect("test setup");
    until("failure", || {
        metrics.failures.get_or_create(&kind).get() >= 1
    })
    .await;
    assert_eq!(words(&w), ["c"]);
    until("healthz error", || {
        health.detail()["source.words"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("data.txt is missing"))
    })
    .await;

    // Once fixed, the error clears.
    std::fs::write(dir.path().join("data.txt"), "d\n").expect("test setup");
    until("recovery", || words(&w) == ["d"]).await;
    until("error cleared", || {
        health.detail()["source.words"]["last_error"].is_null()
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn an_unreachable_source_starts_from_the_cached_copy_else_the_built_in_set() {
    let repo = tempfile::tempdir().expect("test setup");
    git_cmd(repo.path(), &["init", "-q"]);
    std::fs::write(repo.path().join("data.txt"), "cached\n").expect("test setup");
    git_cmd(repo.path(), &["add", "."]);
    git_cmd(repo.path(), &["commit", "-q", "-m", "one"]);
    let cache = tempfile::tempdir().expect("test setup").keep();
    let cfg = |spec: &str| Follow {
        spec: spec.parse().expect("test setup"),
        every: Duration::from_secs(3600),
        cache_dir: cache.clone(),
    };
    let url = format!("git+file://{}", repo.path().display());
    let (w, t) = follow(
        cfg(&url),
        || Words(vec!["built-in".into()]),
        SourceMetrics::default(),
        Health::default(),
    )
    .await;
    assert_eq!(words(&w), ["cached"]);
    t.abort();

    // The repository is gone: the copy kept from the last good fetch is used.
    drop(repo);
    let health = Health::default();
    let metrics = SourceMetrics::default();
    let (w, t) = follow(
        cfg(&url),
        || Words(vec!["built-in".into()]),
        metrics.clone(),
        health.clone(),
    )
    .await;
    assert_eq!(words(&w), ["cached"]);
    assert_eq!(health.detail()["source.words"]["origin"], "cached");
    assert_eq!(
        metrics
            .failures
            .get_or_create(&KindLabel {
                kind: "words".into()
            })
            .get(),
        1
    );
    t.abort();

    // No cache either: the built-in set.
    let health = Health::default();
    let (w, t) = follow(
        Follow {
            cache_dir: tempfile::tempdir().expect("test setup").keep(),
            ..cfg(&url)
        },
        || Words(vec!["built-in".into()]),
        SourceMetrics::default(),
        health.clone(),
    )
    .await;
    assert_eq!(words(&w), ["built-in"]);
    assert_eq!(health.detail()["source.words"]["origin"], "built-in");
    t.abort();
}
