//! The enabled engine set from `GeolocationEngine` resources: a reflector over one
//! namespace, a pure plan (resources → engine configurations and a verdict per
//! resource), the engines built from the plan, and status conditions on each resource.
//!
//! Built-in engines: `spec.engine` is the engine's name. External engines:
//! `spec.engine: external` with `spec.http_endpoint` or `spec.nats_subject`, joining the
//! reducer under the resource's name. Two resources naming the same engine: the first by
//! name wins, the other is `Invalid`.
//!
//! Conditions are written by server-side apply as [`FIELD_MANAGER`].

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use vantage_crd::conditions;
use vantage_crd::{apply_status, GeolocationEngine, GeolocationEngineStatus, StatusError};
use vantage_crd::{EngineScope, GeolocationEngineSpec};

use crate::engine::Scope;
use crate::reducer::{builtin_scope, EngineConfig, BUILTINS};
use crate::{Engines, Error};

/// Condition reasons on a `GeolocationEngine`.
pub mod reason {
    /// In the reducer.
    pub const ENABLED: &str = "Enabled";
    /// `spec.enabled: false`: only `?engines=` runs it.
    pub const DISABLED: &str = "Disabled";
    /// The spec cannot work; the message names the field.
    pub const INVALID_SPEC: &str = vantage_crd::conditions::reason::INVALID_SPEC;
    pub const VALID: &str = vantage_crd::conditions::reason::VALID;
    /// The spec is fine but the engine cannot be built here (e.g. no NATS connection).
    pub const UNAVAILABLE: &str = "Unavailable";
}

/// The field manager of the GeolocationEngine status writes.
pub const FIELD_MANAGER: &str = "vantage-engines";

/// A spec that cannot work: the field and what is wrong with it. A validation finding,
/// with no underlying error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field,
        message: message.into(),
    }
}

/// What became of one resource.
#[derive(Debug, Clone)]
pub enum Verdict {
    Enabled {
        weight: f64,
    },
    Disabled,
    Invalid(InvalidSpec),
    /// The spec is valid but the engine cannot be built in this process.
    Unavailable(Arc<Error>),
}

/// Equal verdicts give equal conditions: `Unavailable` compares by its message.
impl PartialEq for Verdict {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Enabled { weight: a }, Self::Enabled { weight: b }) => a == b,
            (Self::Disabled, Self::Disabled) => true,
            (Self::Invalid(a), Self::Invalid(b)) => a == b,
            (Self::Unavailable(a), Self::Unavailable(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

/// The engine configuration a resource asks for, or why it cannot be one (naming the field).
pub fn config_from(name: &str, spec: &GeolocationEngineSpec) -> Result<EngineConfig, InvalidSpec> {
    if !spec.weight.is_finite() || spec.weight < 0.0 {
        return Err(invalid(
            "spec.weight",
            format!(
                "{} is not a finite number ≥ 0; the reducer multiplies scores by it",
                spec.weight
            ),
        ));
    }
    let engine = spec.engine.trim();
    let mut cfg = EngineConfig::new(engine, spec.weight, spec.enabled);
    if engine == "external" {
        cfg.name = name.to_owned();
        cfg.scope = spec.scope.map_or(Scope::City, scope_of);
        match (&spec.http_endpoint, &spec.nats_subject) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "spec.http_endpoint and spec.nats_subject",
                    "give one of them, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "spec.http_endpoint or spec.nats_subject",
                    "an external engine needs one (http://host:port/path, or a NATS subject)",
                ))
            }
            (Some(url), None) => {
                if !url.starts_with("http://") || url.parse::<hyper::Uri>().is_err() {
                    return Err(invalid(
                        "spec.http_endpoint",
                        format!(
                            "{url:?} is not an http:// URL (put TLS termination next to the engine)"
                        ),
                    ));
                }
                cfg.http_endpoint = Some(url.clone());
            }
            (None, Some(subject)) => {
                if !crate::engine::external::valid_subject(subject) {
                    return Err(invalid(
                        "spec.nats_subject",
                        format!(
                            "{subject:?} is not a plain NATS subject (dot-separated printable tokens, no wildcards)"
                        ),
                    ));
                }
                cfg.nats_subject = Some(subject.clone());
            }
        }
        return Ok(cfg);
    }
    if !BUILTINS.contains(&engine) && engine != crate::engine::geofeed::NAME {
        return Err(invalid(
            "spec.engine",
            format!(
                "unknown engine {engine:?}; use one of {}, {} or external",
                BUILTINS.join(", "),
                crate::engine::geofeed::NAME
            ),
        ));
    }
    if spec.http_endpoint.is_some() || spec.nats_subject.is_some() {
        return Err(invalid(
            "spec.http_endpoint/spec.nats_subject",
            format!("only for engine external, not the built-in {engine:?}"),
        ));
    }
    let own = builtin_scope(engine);
    if let Some(asked) = spec.scope.map(scope_of).filter(|s| *s != own) {
        return Err(invalid(
            "spec.scope",
            format!(
                "{} is only for engine external; the built-in {engine:?} has scope {}: leave spec.scope out",
                scope_name(asked),
                scope_name(own)
            ),
        ));
    }
    Ok(cfg)
}

fn scope_of(s: EngineScope) -> Scope {
    match s {
        EngineScope::City => Scope::City,
        EngineScope::Country => Scope::Country,
    }
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::City => "city",
        Scope::Country => "country",
    }
}

/// Engine configurations (in resource-name order) and a verdict per resource name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub configs: Vec<EngineConfig>,
    pub verdicts: BTreeMap<String, Verdict>,
}

/// Resources (name, spec) → the engine set. Pure.
pub fn plan(resources: &[(String, GeolocationEngineSpec)]) -> Plan {
    let mut sorted: Vec<&(String, GeolocationEngineSpec)> = resources.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Plan::default();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (name, spec) in sorted {
        let verdict = match config_from(name, spec) {
            Err(why) => Verdict::Invalid(why),
            Ok(cfg) => {
                if let Some(first) = owner.get(&cfg.name) {
                    Verdict::Invalid(invalid(
                        "spec.engine",
                        format!(
                            "engine {:?} is already configured by GeolocationEngine {first:?}",
                            cfg.name
                        ),
                    ))
                } else {
                    owner.insert(cfg.name.clone(), name.clone());
                    let v = if cfg.enabled {
                        Verdict::Enabled { weight: cfg.weight }
                    } else {
                        Verdict::Disabled
                    };
                    out.configs.push(cfg);
                    v
                }
            }
        };
        out.verdicts.insert(name.clone(), verdict);
    }
    out
}

/// The conditions a verdict asks for, when they differ from `existing`.
pub fn conditions_for(
    existing: &[Condition],
    verdict: &Verdict,
    generation: Option<i64>,
    now: Time,
) -> Option<Vec<Condition>> {
    let mut cs = existing.to_vec();
    let (ready, ready_reason, msg, invalid) = match verdict {
        Verdict::Enabled { weight } => (
            true,
            reason::ENABLED,
            format!("in the reducer with weight {weight}"),
            false,
        ),
        Verdict::Disabled => (
            false,
            reason::DISABLED,
            "spec.enabled is false: not in the reducer (?engines= still runs it)".to_owned(),
            false,
        ),
        Verdict::Invalid(why) => (false, reason::INVALID_SPEC, why.to_string(), true),
        Verdict::Unavailable(why) => (false, reason::UNAVAILABLE, why.to_string(), false),
    };
    let mut changed = conditions::set(
        &mut cs,
        conditions::READY,
        ready,
        ready_reason,
        msg.clone(),
        generation,
        now.clone(),
    );
    changed |= if invalid {
        conditions::set(
            &mut cs,
            conditions::INVALID,
            true,
            reason::INVALID_SPEC,
            msg,
            generation,
            now,
        )
    } else {
        conditions::set(
            &mut cs,
            conditions::INVALID,
            false,
            reason::VALID,
            "the spec is valid",
            generation,
            now,
        )
    };
    changed.then_some(cs)
}

/// Write the conditions of one resource by server-side apply.
pub async fn write_status(
    api: &Api<GeolocationEngine>,
    name: &str,
    conditions: &[Condition],
) -> Result<(), StatusError> {
    let status = GeolocationEngineStatus {
        conditions: conditions.to_vec(),
    };
    apply_status(api, name, FIELD_MANAGER, &status)
        .await
        .map(|_| ())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Counters of the resource follower.
#[derive(Clone, Default)]
pub struct Metrics {
    pub syncs: Counter,
    pub status_failures: Counter,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "engine_set_changes",
            "Times the engine set was rebuilt from GeolocationEngine resources",
            self.syncs.clone(),
        );
        registry.register(
            "engine_status_failures",
            "GeolocationEngine status patches that failed",
            self.status_failures.clone(),
        );
    }
}

/// Rebuild the engine set from the resources in `store` when it changed, and write
/// the resources' conditions. Returns the configurations in force.
pub async fn sync(
    store: &Store<GeolocationEngine>,
    api: &Api<GeolocationEngine>,
    engines: &Engines,
    target: &crate::api::Api,
    last: &mut Option<Vec<EngineConfig>>,
    metrics: &Metrics,
) {
    let objects = store.state();
    let resources: Vec<(String, GeolocationEngineSpec)> = objects
        .iter()
        .map(|o| (o.name_any(), o.spec.clone()))
        .collect();
    let mut plan = plan(&resources);
    // Build every engine: one that cannot be built is left out and said so.
    let mut built = Vec::new();
    let mut unavailable: BTreeMap<String, Arc<Error>> = BTreeMap::new();
    for cfg in &plan.configs {
        match engines.build(cfg) {
            Ok(engine) => built.push((engine, cfg.clone())),
            Err(e) => {
                unavailable.insert(cfg.name.clone(), Arc::new(e));
            }
        }
    }
    for (resource, verdict) in plan.verdicts.iter_mut() {
        let engine_name = resources
            .iter()
            .find(|(n, _)| n == resource)
            .map(|(n, spec)| {
                if spec.engine.trim() == "external" {
                    n.clone()
                } else {
                    spec.engine.trim().to_owned()
                }
            });
        if let Some(why) = engine_name.and_then(|n| unavailable.get(&n)) {
            if !matches!(verdict, Verdict::Invalid(_)) {
                *verdict = Verdict::Unavailable(why.clone());
            }
        }
    }
    let configs: Vec<EngineConfig> = built.iter().map(|(_, c)| c.clone()).collect();
    if last.as_ref() != Some(&configs) {
        tracing::info!(
            engines = ?configs.iter().filter(|c| c.enabled).map(|c| (&c.name, c.weight)).collect::<Vec<_>>(),
            "engine set from GeolocationEngine resources"
        );
        target.locator().set_engines(built);
        target.clear_memory_cache();
        metrics.syncs.inc();
        *last = Some(configs.clone());
    }
    for o in &objects {
        let name = o.name_any();
        let Some(verdict) = plan.verdicts.get(&name) else {
            continue;
        };
        let existing = o
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        if let Some(cs) = conditions_for(existing, verdict, o.metadata.generation, now()) {
            if let Err(e) = write_status(api, &name, &cs).await {
                metrics.status_failures.inc();
                tracing::warn!(resource = %name, error = %e, "cannot write GeolocationEngine status");
            }
        }
    }
}

/// Follow the `GeolocationEngine` resources of `namespace` until the process stops,
/// keeping `target`'s engine set equal to the enabled resources. `ready` is called
/// after the first full listing.
pub async fn follow(
    client: Client,
    namespace: &str,
    engines: Arc<Engines>,
    target: Arc<crate::api::Api>,
    metrics: Metrics,
    ready: impl Fn(),
) -> Result<(), Error> {
    let api: Api<GeolocationEngine> = Api::namespaced(client, namespace);
    let (store, writer) = reflector::store::<GeolocationEngine>();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut last = None;
    let mut listed = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(watcher::Event::InitDone) => {
                sync(&store, &api, &engines, &target, &mut last, &metrics).await;
                if !listed {
                    listed = true;
                    ready();
                }
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                sync(&store, &api, &engines, &target, &mut last, &metrics).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, %namespace, "watching GeolocationEngine resources");
            }
        }
    }
    Err(Error::Config {
        problem: format!("the watch on GeolocationEngine resources in {namespace} ended"),
    })
}

/// What the engines need of a `Probe`: where it is, its networks, whether it can measure.
pub fn probe_info(p: &vantage_crd::Probe) -> Option<crate::engine::active::ProbeInfo> {
    let loc = p.spec.location?;
    let prefixes = [&p.spec.prefix_v4, &p.spec.prefix_v6]
        .into_iter()
        .flatten()
        .filter_map(|s| s.parse::<ipnet::IpNet>().ok())
        .collect();
    Some(crate::engine::active::ProbeInfo {
        id: p.spec.id,
        latitude: loc.latitude,
        longitude: loc.longitude,
        country: p.spec.country_code.clone(),
        asn: p.spec.asn_v4.or(p.spec.asn_v6),
        prefixes,
        available: p.spec.enabled && p.status.as_ref().is_some_and(|s| s.connected),
    })
}

/// Follow `Probe` resources (cluster-wide) into the probe directory (for choosing probes)
/// and the probe locations (for reading stored RTTs), until the process stops.
pub async fn follow_probes(
    client: Client,
    directory: crate::engine::active::ProbeDirectory,
    locations: crate::engine::latency::ProbeLocations,
) {
    let api: Api<vantage_crd::Probe> = Api::all(client);
    let (store, writer) = reflector::store::<vantage_crd::Probe>();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "watching Probe resources");
                continue;
            }
        }
        let infos: Vec<_> = store.state().iter().filter_map(|p| probe_info(p)).collect();
        if let Ok(mut d) = directory.write() {
            *d = infos.iter().map(|p| (p.id, p.clone())).collect();
        }
        if let Ok(mut l) = locations.write() {
            *l = infos
                .iter()
                .map(|p| (p.id, (p.latitude, p.longitude)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> GeolocationEngineSpec {
        serde_yaml::from_str(yaml).expect("spec")
    }

    #[test]
    fn specs_become_configs_or_name_the_bad_field() {
        let cfg = config_from("rdns", &spec("engine: reverse-dns\nweight: 2")).expect("valid");
        assert_eq!(cfg, EngineConfig::new("reverse-dns", 2.0, true));
        let ext = config_from(
            "py",
            &spec("engine: external\nhttp_endpoint: http://10.0.0.1:8000/locate"),
        )
        .expect("valid");
        assert_eq!(ext.name, "py");
        assert_eq!(
            ext.http_endpoint.as_deref(),
            Some("http://10.0.0.1:8000/locate")
        );
        let nats = config_from(
            "n",
            &spec("engine: external\nnats_subject: geo.py\nenabled: false"),
        )
        .expect("valid");
        assert_eq!(nats.nats_subject.as_deref(), Some("geo.py"));
        assert!(!nats.enabled);
        for (yaml, field) in [
            ("engine: magic", "spec.engine"),
            (
                "engine: external",
                "spec.http_endpoint or spec.nats_subject",
            ),
            (
                "engine: external\nhttp_endpoint: https://x/",
                "spec.http_endpoint",
            ),
            ("engine: external\nnats_subject: geo.*", "spec.nats_subject"),
            (
                "engine: external\nnats_subject: a\nhttp_endpoint: http://x/",
                "spec.http_endpoint and spec.nats_subject",
            ),
            (
                "engine: latency\nhttp_endpoint: http://x/",
                "spec.http_endpoint",
            ),
            ("engine: latency\nweight: -1", "spec.weight"),
            ("engine: latency\nscope: country", "spec.scope"),
            ("engine: rir\nscope: city", "spec.scope"),
        ] {
            let err = config_from("x", &spec(yaml)).expect_err(yaml);
            assert!(err.to_string().starts_with(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn scope_is_for_external_engines_and_carried_into_the_plan() {
        let resources: Vec<(String, GeolocationEngineSpec)> =
            serde_yaml::from_str::<Vec<(String, GeolocationEngineSpec)>>(
                r#"
- [geoip-cc, {engine: external, http_endpoint: "http://10.0.0.1/", scope: country}]
- [geoip-city, {engine: external, nats_subject: geo.city}]
- [geoip-explicit, {engine: external, nats_subject: geo.explicit, scope: city}]
- [registry, {engine: rir, scope: country}]
- [rdns, {engine: reverse-dns, scope: city}]
- [cbg, {engine: latency, scope: country}]
"#,
            )
            .expect("fixture");
        let p = plan(&resources);
        let scopes: Vec<(&str, Scope)> = p
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.scope))
            .collect();
        assert_eq!(
            scopes,
            vec![
                ("geoip-cc", Scope::Country),
                ("geoip-city", Scope::City),
                ("geoip-explicit", Scope::City),
                ("reverse-dns", Scope::City),
                ("rir", Scope::City),
            ],
            "a built-in's config keeps the default; the engine itself knows its scope"
        );
        match &p.verdicts["cbg"] {
            Verdict::Invalid(why) => {
                assert_eq!(why.field, "spec.scope");
                assert!(why.message.contains("has scope city"), "{why}");
            }
            other => panic!("latency with scope country: {other:?}"),
        }
        assert_eq!(p.verdicts["registry"], Verdict::Enabled { weight: 1.0 });
        // A scope that is not city or country does not parse (the CRD schema refuses it).
        assert!(serde_yaml::from_str::<GeolocationEngineSpec>(
            "engine: external\nnats_subject: a\nscope: region"
        )
        .is_err());
    }

    #[test]
    fn geofeed_is_a_builtin_unavailable_without_geofeeds() {
        let cfg = config_from("geo", &spec("engine: geofeed\nweight: 1.5")).expect("valid");
        assert_eq!(cfg, EngineConfig::new("geofeed", 1.5, true));
        let engines = Engines::new(
            Arc::new(crate::engine::latency::StaticRtts::default()),
            Arc::new(crate::engine::geofeed::GeofeedEngine::fixed(
                Default::default(),
                None,
            )),
            Arc::new(crate::engine::crowd::Crowdsourced::new(
                Arc::new(crate::engine::crowd::MemoryCrowdStore::default()),
                Default::default(),
            )),
            std::time::Duration::from_secs(1),
        );
        let Err(err) = engines.build(&cfg) else {
            panic!("geofeed built without geofeeds");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("--geofeed-file") && msg.contains("--geofeed-refs"),
            "{msg}"
        );
        let engines = engines.with_geofeed(
            Arc::new(crate::data::DataFiles::fixed(
                "geofeed",
                crate::geofeed::Geofeeds::default(),
            )),
            None,
        );
        assert_eq!(engines.build(&cfg).expect("built").name(), "geofeed");
    }

    #[test]
    fn plan_keeps_the_first_of_duplicates_and_disabled_engines() {
        let resources: Vec<(String, GeolocationEngineSpec)> =
            serde_yaml::from_str::<Vec<(String, GeolocationEngineSpec)>>(
                r#"
- [rdns-b, {engine: reverse-dns}]
- [rdns-a, {engine: reverse-dns, weight: 3}]
- [cbg, {engine: latency, enabled: false}]
- [bogus, {engine: geoip}]
"#,
            )
            .expect("fixture");
        let p = plan(&resources);
        let names: Vec<(&str, f64, bool)> = p
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.weight, c.enabled))
            .collect();
        assert_eq!(
            names,
            vec![("latency", 1.0, false), ("reverse-dns", 3.0, true)]
        );
        assert_eq!(p.verdicts["rdns-a"], Verdict::Enabled { weight: 3.0 });
        assert_eq!(p.verdicts["cbg"], Verdict::Disabled);
        assert!(
            matches!(&p.verdicts["rdns-b"], Verdict::Invalid(m) if m.message.contains("rdns-a")),
            "{:?}",
            p.verdicts["rdns-b"]
        );
        assert!(matches!(&p.verdicts["bogus"], Verdict::Invalid(m) if m.field == "spec.engine"));
    }

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"))
    }

    #[test]
    fn conditions_change_only_when_the_verdict_does() {
        let v = Verdict::Enabled { weight: 1.0 };
        let cs = conditions_for(&[], &v, Some(1), at(10)).expect("new");
        let ready = conditions::get(&cs, conditions::READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", reason::ENABLED)
        );
        assert_eq!(conditions_for(&cs, &v, Some(1), at(20)), None, "no change");
        let bad = Verdict::Invalid(invalid("spec.engine", "unknown"));
        let cs2 = conditions_for(&cs, &bad, Some(2), at(30)).expect("changed");
        let invalid = conditions::get(&cs2, conditions::INVALID).expect("invalid");
        assert_eq!(invalid.status, "True");
        assert_eq!(invalid.message, "spec.engine: unknown");
        assert_eq!(invalid.last_transition_time, at(30));
        let ready = conditions::get(&cs2, conditions::READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::INVALID_SPEC)
        );
    }
}
