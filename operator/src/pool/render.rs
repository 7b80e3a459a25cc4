//! What a ControllerPool renders (pure): validation of the spec, then the StatefulSet of
//! controllers, the headless Service, one Service per pod and the registration
//! Deployment and Services, as JSON objects for server-side apply.
//!
//! The pods match the Helm chart's: the same `vantage controller` / `vantage registration`
//! arguments, environment, ports, health probes, `restricted` security contexts and
//! volumes (see `charts/vantage/templates/registration.yaml`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use vantage_crd::{ControllerPool, ControllerPoolSpec, RegistrationSpec};

use super::scale::Policy;

pub const DEFAULT_IMAGE: &str = "ghcr.io/vantage-dev/vantage:latest";
pub const DEFAULT_NATS_URL: &str = "nats://nats.nats.svc:4222";
/// Port the SSH servers listen on in the pod (unprivileged).
pub const CONTAINER_SSH_PORT: u16 = 2222;
pub const CONTROLLER_METRICS_PORT: u16 = 9092;
pub const REGISTRATION_METRICS_PORT: u16 = 9091;
/// Label carrying the pool's name on everything it renders.
pub const POOL_LABEL: &str = "vantage.dev/controller-pool";
/// Label of the per-pod Services, so that the operator can prune them on scale-down.
pub const PER_POD_LABEL: &str = "vantage.dev/per-pod-service";
/// The component label: `controller` or [`REGISTRATION_COMPONENT`].
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The component label's value on the registration objects.
pub const REGISTRATION_COMPONENT: &str = "registration";
/// Label the StatefulSet controller puts on each pod.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// A spec the operator cannot render; the message names the field and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

fn invalid(msg: impl Into<String>) -> InvalidSpec {
    InvalidSpec(msg.into())
}

const SERVICE_TYPES: &[&str] = &["LoadBalancer", "NodePort", "ClusterIP"];

/// The pre-authentication flags of both SSH servers; none when the spec leaves the
/// defaults.
fn preauth_args(spec: &ControllerPoolSpec) -> Vec<String> {
    let Some(p) = &spec.pre_auth else {
        return Vec::new();
    };
    let mut args = Vec::new();
    if let Some(g) = p.grace_seconds {
        args.push(format!("--preauth-grace={g}"));
    }
    if let Some(m) = p.max_startups {
        args.push(format!("--max-startups={}:{}:{}", m.start, m.rate, m.full));
    }
    if let Some(n) = p.per_source {
        args.push(format!("--max-startups-per-source={n}"));
    }
    args
}

/// Check the fields the operator relies on; the first problem, naming its field.
pub fn validate(spec: &ControllerPoolSpec) -> Result<(), InvalidSpec> {
    if spec.probes_per_controller == 0 {
        return Err(invalid("spec.probes_per_controller: must be at least 1"));
    }
    if spec.max_replicas == 0 {
        return Err(invalid("spec.max_replicas: must be at least 1"));
    }
    if spec.min_replicas > spec.max_replicas {
        return Err(invalid(format!(
            "spec.min_replicas: {} is above spec.max_replicas {}; lower min_replicas or raise max_replicas",
            spec.min_replicas, spec.max_replicas
        )));
    }
    if !(spec.headroom.is_finite() && spec.headroom >= 1.0) {
        return Err(invalid(format!(
            "spec.headroom: {} must be a number of at least 1 (e.g. 1.25 for 25 % spare)",
            spec.headroom
        )));
    }
    if !SERVICE_TYPES.contains(&spec.service_type.as_str()) {
        return Err(invalid(format!(
            "spec.service_type: {:?} is not one of LoadBalancer, NodePort, ClusterIP",
            spec.service_type
        )));
    }
    if spec.ssh_port == 0 {
        return Err(invalid("spec.ssh_port: must be a port number (1-65535)"));
    }
    if let Some(d) = spec.scale_down_dead_band {
        if !(d.is_finite() && (0.0..=1.0).contains(&d)) {
            return Err(invalid(format!(
                "spec.scale_down_dead_band: {d} must be a fraction between 0 and 1"
            )));
        }
    }
    if let Some(p) = spec.image_pull_policy.as_deref() {
        if !["Always", "IfNotPresent", "Never"].contains(&p) {
            return Err(invalid(format!(
                "spec.image_pull_policy: {p:?} is not one of Always, IfNotPresent, Never"
            )));
        }
    }
    if let Some(p) = spec.external_traffic_policy.as_deref() {
        if !["Cluster", "Local"].contains(&p) {
            return Err(invalid(format!(
                "spec.external_traffic_policy: {p:?} is not one of Cluster, Local"
            )));
        }
    }
    if let Some(t) = spec
        .registration
        .as_ref()
        .and_then(|r| r.service_type.as_deref())
    {
        if !SERVICE_TYPES.contains(&t) {
            return Err(invalid(format!(
                "spec.registration.service_type: {t:?} is not one of LoadBalancer, NodePort, ClusterIP"
            )));
        }
    }
    if let Some(m) = spec.pre_auth.as_ref().and_then(|p| p.max_startups) {
        if m.full == 0 || m.start > m.full || m.rate > 100 {
            return Err(invalid(format!(
                "spec.pre_auth.max_startups: {{start: {}, rate: {}, full: {}}} needs 1 <= full, start <= full and rate <= 100 (e.g. start 200, rate 30, full 1000)",
                m.start, m.rate, m.full
            )));
        }
    }
    if let Some(g) = spec.pre_auth.as_ref().and_then(|p| p.grace_seconds) {
        if !(1..=600).contains(&g) {
            return Err(invalid(format!(
                "spec.pre_auth.grace_seconds: {g} must be between 1 and 600"
            )));
        }
    }
    if let Some(n) = &spec.nats {
        if n.password_secret.is_some() && n.secret_name.is_some() {
            return Err(invalid(
                "spec.nats.password_secret: per-role users need the URL in spec.nats.url; unset spec.nats.secret_name (a URL from a Secret cannot carry each role's user)",
            ));
        }
    }
    if spec.regions.iter().any(|r| r.contains(',') || r.is_empty()) {
        return Err(invalid(
            "spec.regions: each entry is one ISO country code (no commas, not empty)",
        ));
    }
    Ok(())
}

/// The scaling knobs of a (valid) spec.
pub fn policy(spec: &ControllerPoolSpec) -> Policy {
    Policy {
        min: spec.min_replicas,
        max: spec.max_replicas,
        per_controller: spec.probes_per_controller,
        headroom: spec.headroom,
        dead_band: spec.scale_down_dead_band.unwrap_or(0.1),
        stabilization_ms: i64::from(spec.scale_down_stabilization_seconds.unwrap_or(300)) * 1000,
    }
}

/// Names of what a pool renders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub statefulset: String,
    pub headless: String,
    pub registration: String,
}

impl Names {
    pub fn of(pool: &str) -> Self {
        Self {
            statefulset: format!("{pool}-controller"),
            headless: format!("{pool}-controller-headless"),
            registration: format!("{pool}-registration"),
        }
    }
    /// Pod (and controller) name of ordinal `i`; its Service has the same name.
    pub fn pod(&self, i: u32) -> String {
        format!("{}-{i}", self.statefulset)
    }
    /// The ordinal of a controller of this pool, from its name.
    pub fn ordinal(&self, controller: &str) -> Option<u32> {
        controller
            .strip_prefix(&self.statefulset)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }
}

/// Everything a pool renders at `replicas` controllers.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub statefulset: Value,
    pub headless: Value,
    pub per_pod: Vec<Value>,
    /// Registration Deployment, its Service and its metrics Service (empty when off).
    pub registration: Vec<Value>,
}

impl Rendered {
    /// Every object, in apply order.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        std::iter::once(&self.statefulset)
            .chain(std::iter::once(&self.headless))
            .chain(self.per_pod.iter())
            .chain(self.registration.iter())
    }
}

fn owner(pool: &ControllerPool) -> Option<OwnerReference> {
    pool.controller_owner_ref(&())
}

fn labels(pool: &ControllerPool, component: &str) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = BTreeMap::new();
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "vantage-operator".into(),
    );
    l.insert("app.kubernetes.io/part-of".into(), "vantage".into());
    l.extend(pool.spec.labels.clone());
    l.extend(selector(pool, component));
    l
}

fn selector(pool: &ControllerPool, component: &str) -> BTreeMap<String, String> {
    let name = pool
        .spec
        .labels
        .get("app.kubernetes.io/name")
        .cloned()
        .unwrap_or_else(|| "vantage".into());
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), name),
        (COMPONENT_LABEL.into(), component.into()),
        (POOL_LABEL.into(), pool.name_any()),
    ])
}

fn meta(pool: &ControllerPool, name: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({
        "name": name,
        "namespace": pool.namespace().unwrap_or_else(|| "default".into()),
        "labels": labels,
        "ownerReferences": owner(pool).into_iter().collect::<Vec<_>>(),
    })
}

fn security_contexts() -> (Value, Value) {
    (
        json!({
            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        }),
        json!({
            "runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
        }),
    )
}

fn health_probes() -> (Value, Value) {
    (
        json!({"httpGet": {"path": "/healthz", "port": "metrics"},
               "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 6}),
        json!({"httpGet": {"path": "/healthz", "port": "metrics"},
               "initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}),
    )
}

/// `url` with the user `user` and the password `$(NATS_PASSWORD)` (which Kubernetes
/// substitutes from the env entry before it) in each of its comma-separated addresses.
pub fn url_with_user(url: &str, user: &str) -> String {
    url.split(',')
        .map(|a| {
            let a = a.trim();
            match a.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{user}:$(NATS_PASSWORD)@{rest}"),
                None => format!("{user}:$(NATS_PASSWORD)@{a}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// RUST_LOG and NATS_URL of a pod of `role` (`controller`, `registration`); with
/// `nats.password_secret` also NATS_PASSWORD, and the URL names the role's NATS user.
fn backend_env(spec: &ControllerPoolSpec, role: &str) -> Vec<Value> {
    let nats = spec.nats.clone().unwrap_or_default();
    let url = nats.url.unwrap_or_else(|| DEFAULT_NATS_URL.into());
    let mut env = vec![
        json!({"name": "RUST_LOG", "value": spec.log_level.clone().unwrap_or_else(|| "info".into())}),
    ];
    match (nats.secret_name, nats.password_secret) {
        (Some(secret), _) => env.push(json!({"name": "NATS_URL", "valueFrom": {"secretKeyRef": {
            "name": secret, "key": nats.secret_key.unwrap_or_else(|| "url".into())}}})),
        (None, Some(passwords)) => {
            env.push(
                json!({"name": "NATS_PASSWORD", "valueFrom": {"secretKeyRef": {
                "name": passwords, "key": role}}}),
            );
            env.push(json!({"name": "NATS_URL", "value": url_with_user(&url, &format!("vantage-{role}"))}));
        }
        (None, None) => env.push(json!({"name": "NATS_URL", "value": url})),
    }
    env
}

fn resources_or(r: &Option<k8s_openapi::api::core::v1::ResourceRequirements>, d: Value) -> Value {
    r.as_ref()
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or(d)
}

fn pod_common(spec: &ControllerPoolSpec, pod: &mut serde_json::Map<String, Value>) {
    if !spec.image_pull_secrets.is_empty() {
        pod.insert(
            "imagePullSecrets".into(),
            spec.image_pull_secrets
                .iter()
                .map(|n| json!({"name": n}))
                .collect(),
        );
    }
    if !spec.node_selector.is_empty() {
        pod.insert("nodeSelector".into(), json!(spec.node_selector));
    }
    if !spec.tolerations.is_empty() {
        pod.insert(
            "tolerations".into(),
            serde_json::to_value(&spec.tolerations).unwrap_or(Value::Null),
        );
    }
}

/// Render the pool at `replicas` controllers. The spec must have passed [`validate`].
pub fn render(pool: &ControllerPool, replicas: u32) -> Rendered {
    let spec = &pool.spec;
    let name = pool.name_any();
    let names = Names::of(&name);
    let image = spec.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into());
    let pull = spec
        .image_pull_policy
        .clone()
        .unwrap_or_else(|| "IfNotPresent".into());
    let (pod_sc, container_sc) = security_contexts();
    let (liveness, readiness) = health_probes();
    let ctl_labels = labels(pool, "controller");
    let ctl_selector = selector(pool, "controller");

    // The controllers.
    let advertise = match &spec.advertise_domain {
        Some(d) => format!("--advertise=$(POD_NAME).{d}:{}", spec.ssh_port),
        None => format!(
            "--advertise=$(POD_NAME).$(POD_NAMESPACE).svc.{}:{}",
            spec.cluster_domain.as_deref().unwrap_or("cluster.local"),
            spec.ssh_port
        ),
    };
    let spool_mib = spec.spool_max_mib.unwrap_or(1024);
    let spool_size = format!("{}Mi", spool_mib + spool_mib / 4);
    let mut args = vec![
        "controller".to_owned(),
        "--name=$(POD_NAME)".to_owned(),
        advertise,
        format!("--capacity={}", spec.session_limit.unwrap_or(20_000)),
    ];
    if !spec.regions.is_empty() {
        args.push(format!("--regions={}", spec.regions.join(",")));
    }
    args.extend([
        format!("--listen=0.0.0.0:{CONTAINER_SSH_PORT}"),
        "--host-key=/etc/vantage/host-keys/$(POD_NAME)".to_owned(),
        "--spool-dir=/var/lib/vantage/spool".to_owned(),
        format!("--spool-max-mib={spool_mib}"),
        format!("--metrics-addr=0.0.0.0:{CONTROLLER_METRICS_PORT}"),
    ]);
    args.extend(preauth_args(spec));
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
    ];
    env.extend(backend_env(spec, "controller"));
    let persistent = spec.spool_persistent.unwrap_or(false);
    let mut volumes = vec![json!({"name": "host-keys", "secret": {
        "secretName": spec.host_keys_secret.clone().unwrap_or_else(|| format!("{name}-controller-host-keys")),
        "defaultMode": 288
    }})];
    if !persistent {
        volumes.push(json!({"name": "spool", "emptyDir": {"sizeLimit": spool_size}}));
    }
    let mut pod = serde_json::Map::new();
    pod.insert(
        "serviceAccountName".into(),
        json!(spec
            .service_account
            .clone()
            .unwrap_or_else(|| format!("{name}-controller"))),
    );
    pod.insert("automountServiceAccountToken".into(), json!(false));
    pod.insert("securityContext".into(), pod_sc.clone());
    pod_common(spec, &mut pod);
    pod.insert(
        "containers".into(),
        json!([{
            "name": "controller",
            "image": image,
            "imagePullPolicy": pull,
            "args": args,
            "env": env,
            "ports": [
                {"name": "ssh", "containerPort": CONTAINER_SSH_PORT, "protocol": "TCP"},
                {"name": "metrics", "containerPort": CONTROLLER_METRICS_PORT, "protocol": "TCP"}
            ],
            "livenessProbe": liveness,
            "readinessProbe": readiness,
            "securityContext": container_sc,
            "resources": resources_or(&spec.resources, json!({
                "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})),
            "volumeMounts": [
                {"name": "host-keys", "mountPath": "/etc/vantage/host-keys", "readOnly": true},
                {"name": "spool", "mountPath": "/var/lib/vantage/spool"}
            ]
        }]),
    );
    pod.insert("volumes".into(), json!(volumes));
    let mut sts_spec = json!({
        "serviceName": names.headless,
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": ctl_selector},
        "template": {"metadata": {"labels": ctl_labels}, "spec": pod},
    });
    if persistent {
        let mut claim = json!({"accessModes": ["ReadWriteOnce"],
                               "resources": {"requests": {"storage": spool_size}}});
        if let Some(class) = &spec.spool_storage_class {
            claim["storageClassName"] = json!(class);
        }
        sts_spec["volumeClaimTemplates"] = json!([{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "spool"}, "spec": claim}]);
    }
    let statefulset = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": meta(pool, &names.statefulset, &ctl_labels),
        "spec": sts_spec,
    });

    let mut headless_labels = ctl_labels.clone();
    headless_labels.insert("vantage.dev/metrics".into(), "true".into());
    let headless = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(pool, &names.headless, &headless_labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": ctl_selector,
            "ports": [
                {"name": "ssh", "port": spec.ssh_port, "targetPort": "ssh", "protocol": "TCP"},
                {"name": "metrics", "port": CONTROLLER_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
            ]
        }
    });

    let per_pod = (0..replicas)
        .map(|i| {
            let pod_name = names.pod(i);
            let mut l = ctl_labels.clone();
            l.insert(PER_POD_LABEL.into(), "true".into());
            let mut m = meta(pool, &pod_name, &l);
            if !spec.service_annotations.is_empty() {
                m["annotations"] = json!(spec.service_annotations);
            }
            let mut sel = ctl_selector.clone();
            sel.insert(POD_NAME_LABEL.into(), pod_name);
            let mut svc = json!({
                "type": spec.service_type,
                "selector": sel,
                "ports": [{"name": "ssh", "port": spec.ssh_port, "targetPort": "ssh", "protocol": "TCP"}]
            });
            if spec.service_type != "ClusterIP" {
                if let Some(p) = &spec.external_traffic_policy {
                    svc["externalTrafficPolicy"] = json!(p);
                }
            }
            json!({"apiVersion": "v1", "kind": "Service", "metadata": m, "spec": svc})
        })
        .collect();

    let reg = spec.registration.clone().unwrap_or_default();
    let registration = if reg.enabled.unwrap_or(true) {
        render_registration(pool, &names, &reg, &image, &pull)
    } else {
        Vec::new()
    };
    Rendered {
        statefulset,
        headless,
        per_pod,
        registration,
    }
}

fn render_registration(
    pool: &ControllerPool,
    names: &Names,
    reg: &RegistrationSpec,
    image: &str,
    pull: &str,
) -> Vec<Value> {
    let spec = &pool.spec;
    let name = pool.name_any();
    let l = labels(pool, REGISTRATION_COMPONENT);
    let sel = selector(pool, REGISTRATION_COMPONENT);
    let (pod_sc, container_sc) = security_contexts();
    let (liveness, readiness) = health_probes();
    let mut pod = serde_json::Map::new();
    pod.insert(
        "serviceAccountName".into(),
        json!(reg
            .service_account
            .clone()
            .unwrap_or_else(|| format!("{name}-registration"))),
    );
    // The registration server reads Probes and ProbeFirmwares from the API.
    pod.insert("automountServiceAccountToken".into(), json!(true));
    pod.insert("securityContext".into(), pod_sc);
    pod_common(spec, &mut pod);
    let mut registration_args = vec![
        "registration".to_owned(),
        format!("--listen=0.0.0.0:{CONTAINER_SSH_PORT}"),
        "--host-key=/etc/vantage/host-key/ssh_host_ed25519_key".to_owned(),
        format!("--metrics-addr=0.0.0.0:{REGISTRATION_METRICS_PORT}"),
    ];
    registration_args.extend(preauth_args(spec));
    pod.insert(
        "containers".into(),
        json!([{
            "name": "registration",
            "image": image,
            "imagePullPolicy": pull,
            "args": registration_args,
            "env": backend_env(spec, "registration"),
            "ports": [
                {"name": "ssh", "containerPort": CONTAINER_SSH_PORT, "protocol": "TCP"},
                {"name": "metrics", "containerPort": REGISTRATION_METRICS_PORT, "protocol": "TCP"}
            ],
            "livenessProbe": liveness,
            "readinessProbe": readiness,
            "securityContext": container_sc,
            "resources": resources_or(&reg.resources, json!({
                "requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})),
            "volumeMounts": [{"name": "host-key", "mountPath": "/etc/vantage/host-key", "readOnly": true}]
        }]),
    );
    pod.insert(
        "volumes".into(),
        json!([{"name": "host-key", "secret": {
            "secretName": reg.host_key_secret.clone().unwrap_or_else(|| format!("{name}-registration-host-key")),
            "defaultMode": 288,
            "items": [{"key": "ssh_host_ed25519_key", "path": "ssh_host_ed25519_key"}]
        }}]),
    );
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(pool, &names.registration, &l),
        "spec": {
            "replicas": reg.replicas.unwrap_or(2),
            "selector": {"matchLabels": sel},
            "template": {"metadata": {"labels": l}, "spec": pod}
        }
    });
    let service_type = reg
        .service_type
        .clone()
        .unwrap_or_else(|| "LoadBalancer".into());
    let mut svc_meta = meta(pool, &names.registration, &l);
    if !reg.service_annotations.is_empty() {
        svc_meta["annotations"] = json!(reg.service_annotations);
    }
    let mut svc_spec = json!({
        "type": service_type,
        "selector": sel,
        "ports": [{"name": "ssh", "port": reg.port.unwrap_or(443), "targetPort": "ssh", "protocol": "TCP"}]
    });
    if service_type != "ClusterIP" {
        if let Some(p) = &spec.external_traffic_policy {
            svc_spec["externalTrafficPolicy"] = json!(p);
        }
    }
    let service =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": svc_meta, "spec": svc_spec});
    let mut ml = l.clone();
    ml.insert("vantage.dev/metrics".into(), "true".into());
    let metrics = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(pool, &format!("{}-metrics", names.registration), &ml),
        "spec": {"type": "ClusterIP", "selector": sel, "ports": [
            {"name": "metrics", "port": REGISTRATION_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]}
    });
    vec![deployment, service, metrics]
}
