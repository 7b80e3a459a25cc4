//! Every object of the rendered Helm chart (`charts/rendered/*.yaml`, written by
//! `charts/render.py`) deserializes into its k8s-openapi type (or vantage's own CRD
//! type), and serializes back to exactly what was rendered. k8s-openapi types ignore
//! unknown fields, so the round trip is what catches a misspelt or misplaced field: it
//! is dropped on the way in and missing on the way out.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn rendered_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/rendered")
}

/// The first place where `got` (the typed round trip) differs from `want` (the YAML).
fn first_difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    None => {
                        return Some(format!(
                            "{p}: unknown field (dropped by the typed round trip)"
                        ))
                    }
                    Some(gv) => {
                        if let Some(d) = first_difference(&p, wv, gv) {
                            return Some(d);
                        }
                    }
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("{path}.{k}: added by the typed round trip"))
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                return Some(format!("{path}: {} items became {}", w.len(), g.len()));
            }
            w.iter()
                .zip(g)
                .enumerate()
                .find_map(|(i, (wv, gv))| first_difference(&format!("{path}[{i}]"), wv, gv))
        }
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => None,
        _ if want == got => None,
        _ => Some(format!("{path}: rendered {want} but the type holds {got}")),
    }
}

/// Deserialize `doc` as `T` and check the strict round trip.
fn check<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    match first_difference("", doc, &back) {
        None => Ok(()),
        Some(d) => Err(d),
    }
}

/// Every kind the chart renders in some case.
const KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "Job",
    "Service",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "CustomResourceDefinition",
    "ServiceMonitor",
    "ControllerPool",
    "GeolocationEngine",
];

fn check_kind(doc: &Value) -> Result<&'static str, String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let result = match (api_version, kind) {
        ("apps/v1", "Deployment") => check::<Deployment>(doc),
        ("apps/v1", "StatefulSet") => check::<StatefulSet>(doc),
        ("batch/v1", "Job") => check::<Job>(doc),
        ("v1", "Service") => check::<Service>(doc),
        ("v1", "ServiceAccount") => check::<ServiceAccount>(doc),
        ("v1", "ConfigMap") => check::<ConfigMap>(doc),
        ("v1", "Secret") => check::<Secret>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => check::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => check::<ClusterRoleBinding>(doc),
        ("rbac.authorization.k8s.io/v1", "Role") => check::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => check::<RoleBinding>(doc),
        ("networking.k8s.io/v1", "NetworkPolicy") => check::<NetworkPolicy>(doc),
        ("policy/v1", "PodDisruptionBudget") => check::<PodDisruptionBudget>(doc),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            check::<CustomResourceDefinition>(doc)
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => check::<DynamicObject>(doc),
        ("vantage.dev/v1alpha1", "ControllerPool") => check::<vantage_crd::ControllerPool>(doc),
        ("vantage.dev/v1alpha1", "GeolocationEngine") => {
            check::<vantage_crd::GeolocationEngine>(doc)
        }
        _ => Err(format!(
            "no type for {api_version} {kind}: add it to operator/tests/chart.rs"
        )),
    };
    result?;
    KINDS
        .iter()
        .copied()
        .find(|k| *k == kind)
        .ok_or_else(|| format!("{kind} is missing from KINDS"))
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            Value::deserialize(d).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn every_rendered_object_deserializes_into_its_type() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rendered_dir())
        .unwrap_or_else(|e| panic!("cannot list charts/rendered ({e}); run charts/render.py"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|p| p.ends_with("default.yaml")),
        "charts/rendered/default.yaml is missing; run charts/render.py"
    );

    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeMap::<&'static str, usize>::new();
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{} holds no objects", file.display());
        for doc in &docs {
            let name = format!(
                "{}: {} {}",
                file.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                doc["kind"].as_str().unwrap_or("?"),
                doc["metadata"]["name"].as_str().unwrap_or("?")
            );
            match check_kind(doc) {
                Ok(kind) => *seen.entry(kind).or_default() += 1,
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "rendered objects that do not match their types:\n  {}",
        failures.join("\n  ")
    );
    for kind in KINDS {
        assert!(
            seen.contains_key(kind),
            "no {kind} in any rendered case: the non-default values (charts/vantage/ci) should render one"
        );
    }
}

#[test]
fn the_round_trip_catches_a_misspelt_field() {
    let doc: Value = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicey": "Always"}]}}}
    });
    let err = check::<Deployment>(&doc).expect_err("a misspelt field must fail");
    assert!(
        err.contains(".spec.template.spec.containers[0].imagePullPolicey"),
        "{err}"
    );
    let mut pool: Value = serde_json::json!({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "ControllerPool",
        "metadata": {"name": "p"},
        "spec": {"probes_per_controller": 1, "min_replicas": 1, "max_replicas": 2, "headroom": 1.5,
                 "regions": [], "ssh_port": 443, "service_type": "ClusterIP"}
    });
    check::<vantage_crd::ControllerPool>(&pool).expect("a well-formed pool passes");
    pool["spec"]["sshPort"] = 22.into();
    assert!(check::<vantage_crd::ControllerPool>(&pool).is_err());
}
