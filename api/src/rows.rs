//! Reading ClickHouse: a byte stream for results (never buffered whole) and small JSON
//! answers for searches, behind a trait so that handlers are tested without a server.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error(
        "ClickHouse at {url} failed: {source}; check that it runs and --clickhouse-url is right"
    )]
    Query {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse answered a row that is not JSON: {0}")]
    Decode(#[source] serde_json::Error),
}

/// Queries the API runs. SQL is built by the caller with values quoted
/// (`vantage_platform::store::quote`) or parsed as numbers.
pub trait Rows: Send + Sync + 'static {
    /// The database the tables live in.
    fn database(&self) -> &str;
    /// The output of `sql` in `format` (e.g. `TabSeparatedRaw`), as it arrives.
    fn stream(
        &self,
        sql: String,
        format: &'static str,
    ) -> BoxStream<'static, Result<Bytes, RowsError>>;
    /// Every row of `sql` as a JSON object (`JSONEachRow`).
    fn fetch(&self, sql: String) -> BoxFuture<'_, Result<Vec<Value>, RowsError>>;
}

/// ClickHouse over HTTP.
#[derive(Clone)]
pub struct ClickHouseRows {
    client: clickhouse::Client,
    url: String,
    db: String,
}

impl ClickHouseRows {
    pub fn new(url: &str, db: &str) -> Self {
        Self {
            client: clickhouse::Client::default()
                .with_url(url)
                .with_validation(false)
                // On a cluster (--clickhouse-cluster) the tables are Distributed, and an
                // `IN (SELECT ... FROM <Distributed>)` runs its subquery once and ships the
                // set to the shards; ClickHouse's default refuses it. No effect on one node.
                .with_setting("distributed_product_mode", "global"),
            url: url.to_owned(),
            db: db.to_owned(),
        }
    }
}

impl Rows for ClickHouseRows {
    fn database(&self) -> &str {
        &self.db
    }

    fn stream(
        &self,
        sql: String,
        format: &'static str,
    ) -> BoxStream<'static, Result<Bytes, RowsError>> {
        let url = self.url.clone();
        let err = move |source| RowsError::Query {
            url: url.clone(),
            source,
        };
        match self.client.query_raw(&sql).fetch_bytes(format) {
            Ok(mut cursor) => {
                futures::stream::poll_fn(move |cx| cursor.poll_next(cx).map(Result::transpose))
                    .map_err(err)
                    .boxed()
            }
            Err(e) => futures::stream::once(async move { Err(err(e)) }).boxed(),
        }
    }

    fn fetch(&self, sql: String) -> BoxFuture<'_, Result<Vec<Value>, RowsError>> {
        Box::pin(async move {
            let bytes = self
                .client
                .query_raw(&sql)
                .fetch_bytes("JSONEachRow")
                .map_err(|source| RowsError::Query {
                    url: self.url.clone(),
                    source,
                })?
                .collect()
                .await
                .map_err(|source| RowsError::Query {
                    url: self.url.clone(),
                    source,
                })?;
            bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).map_err(RowsError::Decode))
                .collect()
        })
    }
}

/// Turn lines (one JSON document each, `\n`-terminated) into one JSON array, chunk by
/// chunk: `[`, the lines joined by `,`, `]`. Nothing is buffered beyond a chunk.
pub fn json_array<E: Send + 'static>(
    lines: BoxStream<'static, Result<Bytes, E>>,
) -> BoxStream<'static, Result<Bytes, E>> {
    let open = futures::stream::once(async { Ok(Bytes::from_static(b"[")) });
    let close = futures::stream::once(async { Ok(Bytes::from_static(b"]")) });
    // State: whether a line ended in the previous chunk and awaits its separator.
    let body = lines
        .scan(false, |pending, chunk| {
            let out = chunk.map(|chunk| {
                if chunk.is_empty() {
                    return chunk;
                }
                let mut out = Vec::with_capacity(chunk.len() + 1);
                if *pending {
                    out.push(b',');
                }
                let (body, ends) = match chunk.last() {
                    Some(b'\n') => (&chunk[..chunk.len() - 1], true),
                    _ => (&chunk[..], false),
                };
                out.extend(body.iter().map(|b| if *b == b'\n' { b',' } else { *b }));
                *pending = ends;
                Bytes::from(out)
            });
            futures::future::ready(Some(out))
        })
        .try_filter(|b| futures::future::ready(!b.is_empty()));
    open.chain(body).chain(close).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn joined(chunks: &[&'static str]) -> String {
        let s = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, ()>(Bytes::from_static(c.as_bytes())))
                .collect::<Vec<_>>(),
        )
        .boxed();
        let parts: Vec<Bytes> = json_array(s).try_collect().await.expect("no error");
        parts
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn lines_become_one_array_across_chunk_boundaries() {
        assert_eq!(joined(&[]).await, "[]");
        assert_eq!(joined(&["{\"a\":1}\n"]).await, "[{\"a\":1}]");
        assert_eq!(
            joined(&["{\"a\":1}\n{\"b\"", ":2}\n", "{\"c\":3}\n"]).await,
            "[{\"a\":1},{\"b\":2},{\"c\":3}]"
        );
        assert_eq!(
            joined(&["{\"a\":1}", "\n", "", "{\"b\":2}\n"]).await,
            "[{\"a\":1},{\"b\":2}]"
        );
        let v: Value = serde_json::from_str(&joined(&["{\"x\":\"a\\nb\"}\n{\"y\":[1,2]}\n"]).await)
            .expect("valid JSON");
        assert_eq!(v[0]["x"], "a\nb");
        assert_eq!(v[1]["y"][1], 2);
    }
}
