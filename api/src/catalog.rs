//! What the API knows from Kubernetes: Measurements, Probes and API keys (Secrets),
//! behind a small trait so that the handlers are tested without a cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use vantage_crd::{Measurement, Probe};

/// Label that marks a Secret as an API key; its `key` entry is the key, and measurements
/// created with it go into the Secret's namespace.
pub const API_KEY_LABEL: &str = "vantage.dev/api-key";
/// The Secret entry holding the key.
pub const API_KEY_ENTRY: &str = "key";
/// Label put on Measurements created through the API.
pub const CREATED_BY_LABEL: &str = "vantage.dev/created-by";
/// Annotation naming the API key Secret a Measurement was created with.
pub const KEY_ANNOTATION: &str = "vantage.dev/api-key";

/// Who an API key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOwner {
    pub namespace: String,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The Kubernetes API refused the object (validation, quota, admission, RBAC).
    #[error("the Kubernetes API refused the Measurement ({code} {reason}): {message}")]
    Refused {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("the Kubernetes API failed: {0}; check that it is reachable and the API's service account may create Measurements")]
    Kube(#[source] kube::Error),
}

impl CatalogError {
    /// What a catalog answers for a change it cannot make (HTTP 501).
    fn not_implemented(message: String) -> Self {
        CatalogError::Refused {
            code: 501,
            reason: "NotImplemented".into(),
            message,
        }
    }
}

/// A catalog with no Measurements, Probes or API keys that creates nothing: the data API
/// serving results without Kubernetes (benchmarks, tests of the result routes).
pub struct EmptyCatalog;

impl Catalog for EmptyCatalog {
    fn measurements(&self) -> Vec<Arc<Measurement>> {
        Vec::new()
    }
    fn probes(&self) -> Vec<Arc<Probe>> {
        Vec::new()
    }
    fn key_owner(&self, _key: &str) -> Option<KeyOwner> {
        None
    }
    fn create(&self, msm: Measurement) -> BoxFuture<'_, Result<String, CatalogError>> {
        no_kubernetes(msm)
    }
    fn ready(&self) -> bool {
        true
    }
}

/// A read-only catalog of the Measurements and Probes it was given, with no API keys:
/// the data API without Kubernetes over a fixed set (tests, the console's benchmarks).
#[derive(Clone, Default)]
pub struct FixedCatalog {
    pub measurements: Vec<Arc<Measurement>>,
    pub probes: Vec<Arc<Probe>>,
}

impl Catalog for FixedCatalog {
    fn measurements(&self) -> Vec<Arc<Measurement>> {
        self.measurements.clone()
    }
    fn probes(&self) -> Vec<Arc<Probe>> {
        self.probes.clone()
    }
    fn key_owner(&self, _key: &str) -> Option<KeyOwner> {
        None
    }
    fn create(&self, msm: Measurement) -> BoxFuture<'_, Result<String, CatalogError>> {
        no_kubernetes(msm)
    }
    fn ready(&self) -> bool {
        true
    }
}

/// The refusal of a catalog without Kubernetes asked to create `msm`.
fn no_kubernetes(msm: Measurement) -> BoxFuture<'static, Result<String, CatalogError>> {
    let message = format!(
        "this API has no Kubernetes catalog, so it cannot create {}",
        msm.metadata.name.as_deref().unwrap_or("a Measurement")
    );
    Box::pin(async move { Err(CatalogError::not_implemented(message)) })
}

/// Measurements, Probes and API keys, and creating Measurements.
pub trait Catalog: Send + Sync + 'static {
    fn measurements(&self) -> Vec<Arc<Measurement>>;
    fn probes(&self) -> Vec<Arc<Probe>>;
    /// The owner of `key`, if it is a known API key.
    fn key_owner(&self, key: &str) -> Option<KeyOwner>;
    /// Create a Measurement (its namespace is in its metadata); answers its name.
    fn create(&self, msm: Measurement) -> BoxFuture<'_, Result<String, CatalogError>>;
    /// Whether the initial lists have arrived.
    fn ready(&self) -> bool;

    /// Change a Measurement by JSON merge patch (stop it, add participation requests).
    /// A patch naming `metadata.resourceVersion` fails with code 409 if the object
    /// changed since. The default refuses: a catalog that only reads.
    fn patch_measurement(
        &self,
        namespace: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), CatalogError>> {
        let _ = patch;
        let message = format!("this catalog cannot change {namespace}/{name}");
        Box::pin(async move { Err(CatalogError::not_implemented(message)) })
    }

    fn measurement_by_id(&self, id: u64) -> Option<Arc<Measurement>> {
        self.measurements()
            .into_iter()
            .find(|m| m.status.as_ref().and_then(|s| s.id) == Some(id))
    }

    fn measurement_named(&self, namespace: &str, name: &str) -> Option<Arc<Measurement>> {
        self.measurements()
            .into_iter()
            .find(|m| m.namespace().as_deref() == Some(namespace) && m.name_any() == name)
    }
}

/// Equal in time independent of where the first difference is.
pub fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The owner of `key` among API key Secrets.
pub fn owner_among<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    key: &str,
) -> Option<KeyOwner> {
    if key.is_empty() {
        return None;
    }
    let mut found = None;
    for s in secrets {
        let value = s
            .data
            .as_ref()
            .and_then(|d| d.get(API_KEY_ENTRY))
            .map(|b| b.0.as_slice())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(API_KEY_ENTRY))
                    .map(|v| v.as_bytes())
            });
        // Every Secret is compared, so the time does not tell which one matched.
        if let Some(v) = value {
            if same_key(v.trim_ascii(), key.as_bytes()) && found.is_none() {
                found = Some(KeyOwner {
                    namespace: s.namespace().unwrap_or_default(),
                    secret: s.name_any(),
                });
            }
        }
    }
    found
}

/// The catalog from reflectors over the Kubernetes API.
pub struct KubeCatalog {
    client: Client,
    measurements: Store<Measurement>,
    probes: Store<Probe>,
    keys: Store<Secret>,
    ready: Arc<AtomicBool>,
}

fn follow<K>(api: Api<K>, config: watcher::Config, what: &'static str) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = kube::runtime::reflector::store::<K>();
    let stream = reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects()
        .for_each(move |r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, what, "watch error");
            }
        });
    tokio::spawn(stream);
    store
}

impl KubeCatalog {
    /// Start the reflectors (Measurements and Probes in every namespace, API key Secrets).
    pub fn start(client: Client) -> Self {
        let measurements = follow(
            Api::<Measurement>::all(client.clone()),
            watcher::Config::default(),
            "measurements",
        );
        let probes = follow(
            Api::<Probe>::all(client.clone()),
            watcher::Config::default(),
            "probes",
        );
        let keys = follow(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&format!("{API_KEY_LABEL}=true")),
            "api key secrets",
        );
        let ready = Arc::new(AtomicBool::new(false));
        let (m, p, k, r) = (
            measurements.clone(),
            probes.clone(),
            keys.clone(),
            ready.clone(),
        );
        tokio::spawn(async move {
            let ok = m.wait_until_ready().await.is_ok()
                && p.wait_until_ready().await.is_ok()
                && k.wait_until_ready().await.is_ok();
            r.store(ok, Ordering::Relaxed);
            tracing::info!(ok, "Measurements, Probes and API keys listed");
        });
        Self {
            client,
            measurements,
            probes,
            keys,
            ready,
        }
    }
}

impl Catalog for KubeCatalog {
    fn measurements(&self) -> Vec<Arc<Measurement>> {
        self.measurements.state()
    }

    fn probes(&self) -> Vec<Arc<Probe>> {
        self.probes.state()
    }

    fn key_owner(&self, key: &str) -> Option<KeyOwner> {
        let secrets = self.keys.state();
        owner_among(secrets.iter().map(|s| s.as_ref()), key)
    }

    fn create(&self, msm: Measurement) -> BoxFuture<'_, Result<String, CatalogError>> {
        Box::pin(async move {
            let ns = msm.namespace().unwrap_or_else(|| "default".to_owned());
            let api = Api::<Measurement>::namespaced(self.client.clone(), &ns);
            match api.create(&PostParams::default(), &msm).await {
                Ok(created) => Ok(created.name_any()),
                Err(kube::Error::Api(s)) => Err(CatalogError::Refused {
                    code: s.code,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                }),
                Err(e) => Err(CatalogError::Kube(e)),
            }
        })
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn patch_measurement(
        &self,
        namespace: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), CatalogError>> {
        let api = Api::<Measurement>::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move {
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) => Err(CatalogError::Refused {
                    code: s.code,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                }),
                Err(e) => Err(CatalogError::Kube(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(ns: &str, name: &str, key: &[u8]) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.data = Some(BTreeMap::from([(
            API_KEY_ENTRY.to_owned(),
            ByteString(key.to_vec()),
        )]));
        s
    }

    #[test]
    fn keys_map_to_their_namespace() {
        let secrets = [
            secret("team-a", "k1", b"alpha\n"),
            secret("team-b", "k2", b"bravo"),
        ];
        assert_eq!(
            owner_among(&secrets, "alpha"),
            Some(KeyOwner {
                namespace: "team-a".into(),
                secret: "k1".into()
            })
        );
        assert_eq!(
            owner_among(&secrets, "bravo").map(|o| o.namespace),
            Some("team-b".into())
        );
        assert_eq!(owner_among(&secrets, "brav"), None);
        assert_eq!(owner_among(&secrets, ""), None);
        assert!(same_key(b"abc", b"abc") && !same_key(b"abc", b"abd") && !same_key(b"ab", b"abc"));
    }
}
