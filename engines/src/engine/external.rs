//! External engines over HTTP or NATS (protocol in docs/GEOLOCATION.md):
//! the request is `{"version": 1, "ip": "192.0.2.1"}` (HTTP: `POST <endpoint>`; NATS: a
//! request on the engine's subject); the answer is
//! `{"candidates": [{"cityId": 2759794, "score": 7}, {"latitude": 50.1, "longitude": 8.7, "score": 4}]}`.
//! A candidate names a GeoNames id, or a point that is mapped to the nearest city; an
//! engine with `spec.scope: country` may also name a country (`{"country": "NL",
//! "score": 6}`), mapped to the country's most populous city as the `rir` engine does.
//! Answers that do not parse, and candidates that name nothing or score outside 1..=10,
//! are dropped and counted (`vantage_engines_external_errors{engine,reason}`,
//! `vantage_engines_external_dropped_candidates{engine}`).

use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{finish, Candidate, Engine, Scope};
use crate::reducer::Representatives;
use crate::rir::country_code;
use crate::world::World;
use crate::{geo, BoxError, Error};

/// The most an answer may hold.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Serialize)]
struct Request<'a> {
    version: u32,
    ip: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    city_id: Option<u32>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    /// ISO 3166 alpha-2; only from a country-scoped engine.
    country: Option<String>,
    score: f64,
}

#[derive(Deserialize)]
struct Answer {
    candidates: Vec<WireCandidate>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub engine: String,
    /// `timeout`, `transport`, `status`, `too_large`, `malformed`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabel {
    pub engine: String,
}

/// Counters shared by the external engines.
#[derive(Clone, Default)]
pub struct ExternalMetrics {
    pub errors: Family<ErrorLabels, Counter>,
    pub dropped_candidates: Family<EngineLabel, Counter>,
}

impl ExternalMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "external_errors",
            "External engine calls that failed, by engine and reason",
            self.errors.clone(),
        );
        registry.register(
            "external_dropped_candidates",
            "Candidates from external engines dropped (unknown city, bad point, score outside 1..=10)",
            self.dropped_candidates.clone(),
        );
    }

    fn error(&self, engine: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                engine: engine.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// The request body of protocol version 1.
pub fn request_body(ip: IpAddr) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&Request {
        version: 1,
        ip: &ip.to_string(),
    })
    .map_err(|source| Error::Json {
        what: "encoding a request".into(),
        source,
    })
}

/// Parse a city-scoped engine's answer (see [`parse_scoped_answer`]).
pub fn parse_answer(
    bytes: &[u8],
    world: &World,
) -> Result<(Vec<Candidate>, usize), serde_json::Error> {
    parse_scoped_answer(bytes, world, Scope::City, &Representatives::default())
}

/// Parse an answer: `Err` when it is not the protocol's JSON; otherwise the candidates
/// that name a known city with a score in 1..=10, and how many were dropped. With
/// [`Scope::Country`] a candidate may name a country (`"country": "NL"`) instead: its
/// most populous city (`representatives`) stands for it; an unknown code is dropped. A
/// city-scoped engine's country candidate is dropped (it would name no city).
pub fn parse_scoped_answer(
    bytes: &[u8],
    world: &World,
    scope: Scope,
    representatives: &Representatives,
) -> Result<(Vec<Candidate>, usize), serde_json::Error> {
    let answer: Answer = serde_json::from_slice(bytes)?;
    let total = answer.candidates.len();
    let out: Vec<Candidate> = answer
        .candidates
        .into_iter()
        .filter_map(|c| {
            let city_id = match (c.city_id, c.latitude, c.longitude, &c.country) {
                (Some(id), _, _, _) => world.city(id)?.id,
                (None, Some(lat), Some(lon), _) if geo::valid_coordinates(lat, lon) => {
                    world.nearest(lat, lon)?.0.id
                }
                (None, None, None, Some(cc)) if scope == Scope::Country => {
                    representatives.get(world, country_code(cc.trim())?)?
                }
                _ => return None,
            };
            let score = c.score.round();
            (1.0..=10.0).contains(&score).then_some(Candidate {
                city_id,
                score: score as u8,
            })
        })
        .collect();
    let dropped = total - out.len();
    Ok((finish(out, 50), dropped))
}

/// An engine answering over HTTP.
pub struct HttpEngine {
    name: String,
    endpoint: hyper::Uri,
    timeout: Duration,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    metrics: ExternalMetrics,
    scope: Scope,
    representatives: Representatives,
}

impl HttpEngine {
    /// `endpoint` is a plain `http://` URL.
    pub fn new(name: &str, endpoint: &str, timeout: Duration) -> Result<Self, Error> {
        let uri: hyper::Uri = endpoint.parse().map_err(|e| Error::Config {
            problem: format!("engine {name}: endpoint {endpoint:?} is not a URL: {e}; give http://host:port/path"),
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::Config {
                problem: format!(
                    "engine {name}: endpoint {endpoint:?} must be http:// (put TLS in front of vantage, not between)"
                ),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            endpoint: uri,
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
            metrics: ExternalMetrics::default(),
            scope: Scope::City,
            representatives: Representatives::default(),
        })
    }

    /// Count errors and dropped candidates in `metrics`.
    pub fn with_metrics(mut self, metrics: ExternalMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// What the candidates stand for (`spec.scope`; city by default).
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    async fn call(&self, ip: IpAddr, world: &World) -> Result<Vec<Candidate>, Error> {
        let fail = |reason: &'static str, problem: String, source: Option<BoxError>| {
            self.metrics.error(&self.name, reason);
            Error::External {
                engine: self.name.clone(),
                at: format!("at {}", self.endpoint),
                reason,
                problem,
                source,
            }
        };
        let body = request_body(ip)?;
        let req = hyper::Request::post(self.endpoint.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail("transport", e.to_string(), Some(e.into())))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|e| {
                fail(
                    "timeout",
                    format!("no answer within {:?}", self.timeout),
                    Some(e.into()),
                )
            })?
            .map_err(|e| fail("transport", e.to_string(), Some(e.into())))?;
        let status = resp.status();
        let bytes = tokio::time::timeout(
            self.timeout,
            http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect(),
        )
        .await
        .map_err(|e| {
            fail(
                "timeout",
                format!("answer not read within {:?}", self.timeout),
                Some(e.into()),
            )
        })?
        .map_err(|e| fail("too_large", format!("reading the answer: {e}"), Some(e)))?
        .to_bytes();
        if !status.is_success() {
            return Err(fail(
                "status",
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
                None,
            ));
        }
        let (out, dropped) = parse_scoped_answer(&bytes, world, self.scope, &self.representatives)
            .map_err(|e| fail("malformed", format!("bad answer: {e}"), Some(e.into())))?;
        if dropped > 0 {
            self.metrics
                .dropped_candidates
                .get_or_create(&EngineLabel {
                    engine: self.name.clone(),
                })
                .inc_by(dropped as u64);
        }
        Ok(out)
    }
}

/// An engine answering NATS requests on a subject (same JSON as over HTTP).
pub struct NatsEngine {
    name: String,
    subject: String,
    client: async_nats::Client,
    timeout: Duration,
    metrics: ExternalMetrics,
    scope: Scope,
    representatives: Representatives,
}

/// Whether `subject` is a plain NATS subject to publish to (no wildcards or spaces).
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 255
        && subject.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && t.chars()
                    .all(|c| c.is_ascii_graphic() && c != '*' && c != '>')
        })
}

impl NatsEngine {
    pub fn new(
        name: &str,
        subject: &str,
        client: async_nats::Client,
        timeout: Duration,
        metrics: ExternalMetrics,
    ) -> Result<Self, Error> {
        if !valid_subject(subject) {
            return Err(Error::Config {
                problem: format!(
                    "engine {name}: nats_subject {subject:?} is not a plain subject (tokens of printable ASCII, no wildcards)"
                ),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            subject: subject.to_owned(),
            client,
            timeout,
            metrics,
            scope: Scope::City,
            representatives: Representatives::default(),
        })
    }

    /// What the candidates stand for (`spec.scope`; city by default).
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    async fn call(&self, ip: IpAddr, world: &World) -> Result<Vec<Candidate>, Error> {
        let fail = |reason: &'static str, problem: String, source: Option<BoxError>| {
            self.metrics.error(&self.name, reason);
            Error::External {
                engine: self.name.clone(),
                at: format!("on NATS {}", self.subject),
                reason,
                problem,
                source,
            }
        };
        let body = request_body(ip)?;
        let reply = tokio::time::timeout(
            self.timeout,
            self.client.request(self.subject.clone(), body.into()),
        )
        .await
        .map_err(|e| {
            fail(
                "timeout",
                format!("no answer within {:?}", self.timeout),
                Some(e.into()),
            )
        })?
        .map_err(|e| {
            let reason = match e.kind() {
                async_nats::RequestErrorKind::TimedOut => "timeout",
                _ => "transport",
            };
            fail(reason, e.to_string(), Some(e.into()))
        })?;
        if reply.payload.len() > MAX_ANSWER_BYTES {
            return Err(fail(
                "too_large",
                format!("answer of {} bytes", reply.payload.len()),
                None,
            ));
        }
        let (out, dropped) =
            parse_scoped_answer(&reply.payload, world, self.scope, &self.representatives)
                .map_err(|e| fail("malformed", format!("bad answer: {e}"), Some(e.into())))?;
        if dropped > 0 {
            self.metrics
                .dropped_candidates
                .get_or_create(&EngineLabel {
                    engine: self.name.clone(),
                })
                .inc_by(dropped as u64);
        }
        Ok(out)
    }
}

impl Engine for NatsEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn scope(&self) -> Scope {
        self.scope
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        self.call(ip, world).boxed()
    }
}

impl Engine for HttpEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn scope(&self) -> Scope {
        self.scope
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        self.call(ip, world).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::tiny;

    #[test]
    fn answers_are_parsed_and_bad_candidates_dropped() {
        let w = tiny();
        let (got, dropped) = parse_answer(
            br#"{"candidates": [{"cityId": 2759794, "score": 8}, {"cityId": 1, "score": 5},
                {"cityId": 2925533, "score": 0}, {"cityId": 2925533, "score": 11},
                {"latitude": 50.1, "longitude": 8.7, "score": 4.4}, {"latitude": 99, "longitude": 0, "score": 4},
                {"score": 3}]}"#,
            &w,
        )
        .expect("parses");
        assert_eq!(
            got,
            vec![
                Candidate {
                    city_id: 2759794,
                    score: 8
                },
                Candidate {
                    city_id: 2925533,
                    score: 4
                }
            ]
        );
        assert_eq!(dropped, 5);
        assert!(parse_answer(b"[1,2]", &w).is_err());
        assert!(parse_answer(b"{\"candidates\": 3}", &w).is_err());
    }

    #[test]
    fn a_country_scoped_engine_may_name_countries() {
        let w = tiny();
        let reps = Representatives::default();
        let answer =
            br#"{"candidates": [{"country": "nl", "score": 6}, {"country": "XX", "score": 5},
            {"country": "NLD", "score": 5}, {"cityId": 2925533, "score": 4}]}"#;
        let (got, dropped) =
            parse_scoped_answer(answer, &w, Scope::Country, &reps).expect("parses");
        let amsterdam = reps.get(&w, *b"NL").expect("NL has cities");
        assert_eq!(
            w.city(amsterdam).map(|c| c.name.as_str()),
            Some("Amsterdam"),
            "the most populous NL city of the tiny world"
        );
        assert_eq!(
            got,
            vec![
                Candidate {
                    city_id: amsterdam,
                    score: 6
                },
                Candidate {
                    city_id: 2925533,
                    score: 4
                }
            ]
        );
        assert_eq!(
            dropped, 2,
            "XX is no country of the world, NLD no alpha-2 code"
        );
        // A city-scoped engine naming a country names no city: dropped.
        let (got, dropped) = parse_answer(answer, &w).expect("parses");
        assert_eq!(got.len(), 1);
        assert_eq!(dropped, 3);
    }

    #[test]
    fn subjects() {
        assert!(valid_subject("geo.engine.py"));
        for bad in ["", "a..b", "geo.*", "geo.>", "a b", "geo.x*"] {
            assert!(!valid_subject(bad), "{bad:?}");
        }
    }
}
