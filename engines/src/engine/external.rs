//! External engines over HTTP (protocol in docs/GEOLOCATION.md):
//! `POST <endpoint>` with `{"version": 1, "ip": "192.0.2.1"}`; the answer is
//! `{"candidates": [{"cityId": 2759794, "score": 7}, {"latitude": 50.1, "longitude": 8.7, "score": 4}]}`.
//! A candidate names a GeoNames id, or a point that is mapped to the nearest city.

use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use super::{finish, Candidate, Engine};
use crate::world::World;
use crate::{geo, Error};

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
    score: f64,
}

#[derive(Deserialize)]
struct Answer {
    candidates: Vec<WireCandidate>,
}

/// An engine answering over HTTP.
pub struct HttpEngine {
    name: String,
    endpoint: hyper::Uri,
    timeout: Duration,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl HttpEngine {
    /// `endpoint` is a plain `http://` URL.
    pub fn new(name: &str, endpoint: &str, timeout: Duration) -> Result<Self, Error> {
        let uri: hyper::Uri = endpoint.parse().map_err(|e| {
            Error::Config(format!(
                "engine {name}: endpoint {endpoint:?} is not a URL: {e}"
            ))
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::Config(format!(
                "engine {name}: endpoint {endpoint:?} must be http:// (put TLS in front of vantage, not between)"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            endpoint: uri,
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn call(&self, ip: IpAddr, world: &World) -> Result<Vec<Candidate>, Error> {
        let fail = |what: String| {
            Error::Engine(format!(
                "external engine {} at {}: {what}",
                self.name, self.endpoint
            ))
        };
        let body = serde_json::to_vec(&Request {
            version: 1,
            ip: &ip.to_string(),
        })
        .map_err(|e| fail(e.to_string()))?;
        let req = hyper::Request::post(self.endpoint.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        let answer: Answer =
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("bad answer: {e}")))?;
        let out = answer
            .candidates
            .into_iter()
            .filter_map(|c| {
                let city_id = match (c.city_id, c.latitude, c.longitude) {
                    (Some(id), _, _) => world.city(id)?.id,
                    (None, Some(lat), Some(lon)) if geo::valid_coordinates(lat, lon) => {
                        world.nearest(lat, lon)?.0.id
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
        Ok(finish(out, 50))
    }
}

impl Engine for HttpEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        self.call(ip, world).boxed()
    }
}
