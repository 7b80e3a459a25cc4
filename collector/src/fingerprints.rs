//! Blockpage fingerprints: a versioned YAML data file (`collector/data/fingerprints.yaml`)
//! that the intake reloads when it changes, the way OONI's fastpath follows its
//! fingerprint repository. A file that fails to parse is logged and ignored; the last
//! good set stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

/// An HTTP blockpage: matches when every condition given matches one response.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpFingerprint {
    pub name: String,
    /// The body contains this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The response has this header (name compared case-insensitively) ...
    #[serde(default)]
    pub header_name: Option<String>,
    /// ... whose value starts with this.
    #[serde(default)]
    pub header_prefix: Option<String>,
    /// Country the fingerprint is known from (informational).
    #[serde(default)]
    pub cc: Option<String>,
}

/// A DNS answer known to point at a blockpage or a sinkhole.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsFingerprint {
    pub name: String,
    pub addr: String,
    #[serde(default)]
    pub cc: Option<String>,
}

/// One version of the fingerprint file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fingerprints {
    pub version: String,
    #[serde(default)]
    pub http: Vec<HttpFingerprint>,
    #[serde(default)]
    pub dns: Vec<DnsFingerprint>,
}

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("cannot read fingerprints {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fingerprints {path} are not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

/// Why a text is not a fingerprint set.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not UTF-8: {source}")]
    Utf8 {
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("{source}")]
    Yaml {
        #[source]
        source: serde_yaml::Error,
    },
    #[error("`version` is empty")]
    EmptyVersion,
}

impl HttpFingerprint {
    /// Whether a response with `body` and `headers` (name, value) matches.
    pub fn matches(&self, body: Option<&str>, headers: &[(String, String)]) -> bool {
        if self.body_contains.is_none() && self.header_name.is_none() {
            return false;
        }
        if let Some(needle) = &self.body_contains {
            if !body.is_some_and(|b| b.contains(needle.as_str())) {
                return false;
            }
        }
        if let Some(name) = &self.header_name {
            let prefix = self.header_prefix.as_deref().unwrap_or("");
            if !headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.starts_with(prefix))
            {
                return false;
            }
        }
        true
    }
}

impl Fingerprints {
    pub fn parse(yaml: &str) -> Result<Self, ParseError> {
        let fp: Fingerprints =
            serde_yaml::from_str(yaml).map_err(|source| ParseError::Yaml { source })?;
        if fp.version.trim().is_empty() {
            return Err(ParseError::EmptyVersion);
        }
        Ok(fp)
    }

    pub fn load(path: &Path) -> Result<Self, FingerprintError> {
        let text = std::fs::read_to_string(path).map_err(|source| FingerprintError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| FingerprintError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The first HTTP fingerprint matching a response.
    pub fn match_http(
        &self,
        body: Option<&str>,
        headers: &[(String, String)],
    ) -> Option<&HttpFingerprint> {
        self.http.iter().find(|f| f.matches(body, headers))
    }

    /// The first DNS fingerprint matching an answer.
    pub fn match_dns(&self, addr: &str) -> Option<&DnsFingerprint> {
        self.dns.iter().find(|f| f.addr == addr)
    }
}

/// The fingerprints in force, shared between the fastpath and the reloader.
#[derive(Clone)]
pub struct FingerprintSet {
    current: Arc<RwLock<Arc<Fingerprints>>>,
}

impl FingerprintSet {
    pub fn new(fp: Fingerprints) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(fp))),
        }
    }

    pub fn get(&self) -> Arc<Fingerprints> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, fp: Fingerprints) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(fp);
    }

    /// Re-read `path` every `every`; swap in a new set when the file's content changed
    /// and parses. Runs until the task is dropped. `on_reload` is called with each new version.
    pub async fn watch(self, path: PathBuf, every: Duration, on_reload: impl Fn(&str) + Send) {
        let mut last: Option<Vec<u8>> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(now) = tokio::fs::read(&path).await else {
                continue;
            };
            if last.as_ref() == Some(&now) {
                continue;
            }
            last = Some(now.clone());
            match std::str::from_utf8(&now)
                .map_err(|source| ParseError::Utf8 { source })
                .and_then(Fingerprints::parse)
            {
                Ok(fp) if fp == *self.get() => {}
                Ok(fp) => {
                    tracing::info!(version = %fp.version, http = fp.http.len(), dns = fp.dns.len(), "fingerprints reloaded");
                    on_reload(&fp.version);
                    self.set(fp);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "fingerprints changed but do not parse; keeping the old set")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_parses() {
        let fp = Fingerprints::parse(include_str!("../data/fingerprints.yaml")).expect("parses");
        assert!(!fp.version.is_empty());
        assert!(!fp.http.is_empty() && !fp.dns.is_empty());
        // Test fingerprints live in tests/fixtures/fingerprints.yaml, never here.
        let names = fp
            .http
            .iter()
            .map(|f| &f.name)
            .chain(fp.dns.iter().map(|f| &f.name));
        for name in names {
            assert!(
                !name.starts_with("vantage_test"),
                "{name} is a test fingerprint"
            );
        }
    }

    #[test]
    fn http_conditions_all_have_to_match() {
        let f = HttpFingerprint {
            name: "x".into(),
            body_contains: Some("blocked by order".into()),
            header_name: Some("Server".into()),
            header_prefix: Some("Kerio".into()),
            cc: None,
        };
        let h = vec![("server".to_owned(), "Kerio Control".to_owned())];
        assert!(f.matches(Some("<h1>blocked by order</h1>"), &h));
        assert!(!f.matches(Some("<h1>blocked by order</h1>"), &[]));
        assert!(!f.matches(Some("hello"), &h));
        let empty = HttpFingerprint {
            name: "e".into(),
            body_contains: None,
            header_name: None,
            header_prefix: None,
            cc: None,
        };
        assert!(!empty.matches(Some("x"), &h));
        assert!(matches!(
            Fingerprints::parse("version: ''"),
            Err(ParseError::EmptyVersion)
        ));
        assert!(matches!(
            Fingerprints::parse("version: 1\nbogus: 2"),
            Err(ParseError::Yaml { .. })
        ));
    }

    #[tokio::test]
    async fn reloads_when_the_file_changes_and_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fp.yaml");
        std::fs::write(&path, "version: '1'\n").expect("write");
        let set = FingerprintSet::new(Fingerprints::load(&path).expect("load"));
        let task = tokio::spawn(
            set.clone()
                .watch(path.clone(), Duration::from_millis(20), |_| {}),
        );
        std::fs::write(
            &path,
            "version: '2'\ndns: [{name: sink, addr: 10.10.34.35}]\n",
        )
        .expect("write");
        let mut seen = String::new();
        for _ in 0..100 {
            seen = set.get().version.clone();
            if seen == "2" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen, "2");
        std::fs::write(&path, "version: [broken").expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(set.get().version, "2");
        task.abort();
    }
}
