//! The locate API of `vantage engines`, reached from the data API (`--engines-url`):
//! a GET forwarded with a timeout, answering the engines' status and JSON body as they
//! are, so that the console locates addresses on its own origin.

use std::time::Duration;

use bytes::Bytes;

/// How long a forwarded request may take.
pub const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum EnginesError {
    #[error("--engines-url {url:?} is not an http(s) URL; give e.g. http://vantage-engines:8080")]
    BadUrl { url: String },
    #[error("cannot build the HTTP client for the engines: {0}")]
    Client(#[source] reqwest::Error),
    #[error("the locate engines at {url} did not answer: {source}; check that `vantage engines` runs there (--engines-url, VANTAGE_ENGINES_URL)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// An answer of the engines: status, Content-Type and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The engines' base URL and an HTTP client.
#[derive(Clone, Debug)]
pub struct Engines {
    client: reqwest::Client,
    base: String,
}

impl Engines {
    pub fn new(url: &str) -> Result<Self, EnginesError> {
        let base = url.trim_end_matches('/').to_owned();
        let ok = base
            .split_once("://")
            .is_some_and(|(scheme, host)| matches!(scheme, "http" | "https") && !host.is_empty());
        if !ok {
            return Err(EnginesError::BadUrl {
                url: url.to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(EnginesError::Client)?;
        Ok(Self { client, base })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// GET `path_and_query` (starting with `/`) from the engines.
    pub async fn get(&self, path_and_query: &str) -> Result<Answer, EnginesError> {
        let url = format!("{}{path_and_query}", self.base);
        let err = |source| EnginesError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let resp = self.client.get(&url).send().await.map_err(err)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.map_err(err)?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http() {
        assert!(
            Engines::new("http://engines:8080/").is_ok_and(|e| e.url() == "http://engines:8080")
        );
        assert!(Engines::new("https://e.example").is_ok());
        assert!(matches!(
            Engines::new("engines:8080"),
            Err(EnginesError::BadUrl { .. })
        ));
        assert!(matches!(
            Engines::new("ftp://x"),
            Err(EnginesError::BadUrl { .. })
        ));
    }
}
