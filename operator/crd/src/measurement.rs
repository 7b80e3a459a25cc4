// KubeSchema copies the spec into a private struct for its schema; that copy never reads
// the `#[serde(skip)]` field `unreadable`, which rustc reports as dead code.
#![allow(dead_code)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use vantage_core::definition::{Definition, InvalidField, ProbeSource, Timing};

/// A measurement: one RIPE Atlas definition run by a set of probes.
///
/// Cross-field rules are CEL `x-kubernetes-validations` (checked by the API server at
/// admission) and the same rules again in the operator (`Invalid` condition naming the
/// field), for API servers or stand-ins that do not evaluate CEL. See [`CEL_RULES`].
///
/// Reading never fails: a spec whose fields have the wrong types (possible where the
/// API server does not check the schema, or for objects stored under an older schema)
/// becomes a spec with [`MeasurementSpec::unreadable`] set, which the operator reports
/// as `Invalid` naming the field. One bad object thus cannot break the watch of all.
#[derive(CustomResource, KubeSchema, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(CEL_STOP_AFTER_START)
    .message("stop_time must be after start_time")
    .field_path(".stop_time")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new(CEL_TARGET)
    .message("target is required unless type is dns with use_probe_resolver: true")
    .field_path(".target")
    .reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new(CEL_SOURCES)
    .message("probes needs at least one source, e.g. {type: area, value: WW, requested: 5}")
    .field_path(".probes")
    .reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new(CEL_REQUESTED)
    .message("every probes[].requested must be at least 1")
    .field_path(".probes")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new(CEL_INTERVAL)
    .message("interval must be from 60 to 604800 seconds")
    .field_path(".interval")
    .reason(Reason::FieldValueInvalid))]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "Measurement",
    namespaced,
    status = "MeasurementStatus",
    shortname = "msm",
    category = "vantage",
    printcolumn(name = "ID", type_ = "integer", json_path = ".status.id"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Status", type_ = "integer", json_path = ".status.statusId"),
    printcolumn(name = "Probes", type_ = "integer", json_path = ".status.probeCount"),
    printcolumn(name = "Results", type_ = "integer", json_path = ".status.results"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct MeasurementSpec {
    /// The definition, with RIPE Atlas API v2 field names (`type`, `af`, `target`, `packets`, ...).
    #[serde(flatten)]
    pub definition: Definition,
    /// Where the probes come from (RIPE Atlas `probes[]`).
    pub probes: Vec<ProbeSource>,
    /// Unix seconds; default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// Unix seconds; default: run until stopped or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<i64>,
    /// Run once on each probe instead of periodically.
    #[serde(default)]
    pub is_oneoff: bool,
    /// Stop the measurement on every probe, keeping the resource and its results.
    #[serde(default)]
    pub stopped: bool,
    /// Set when the stored spec could not be read: the field and what is wrong with it.
    #[serde(skip)]
    pub unreadable: Option<InvalidField>,
}

/// The spec as stored, read strictly.
#[derive(Deserialize)]
struct StrictSpec {
    #[serde(flatten)]
    definition: Definition,
    probes: Vec<ProbeSource>,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    stop_time: Option<i64>,
    #[serde(default)]
    is_oneoff: bool,
    #[serde(default)]
    stopped: bool,
}

impl From<StrictSpec> for MeasurementSpec {
    fn from(s: StrictSpec) -> Self {
        Self {
            definition: s.definition,
            probes: s.probes,
            start_time: s.start_time,
            stop_time: s.stop_time,
            is_oneoff: s.is_oneoff,
            stopped: s.stopped,
            unreadable: None,
        }
    }
}

impl<'de> Deserialize<'de> for MeasurementSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(Self::read(value))
    }
}

impl MeasurementSpec {
    /// Read a stored spec; never fails (see [`MeasurementSpec::unreadable`]).
    pub fn read(value: serde_json::Value) -> Self {
        match serde_json::from_value::<StrictSpec>(value.clone()) {
            Ok(strict) => strict.into(),
            Err(e) => {
                let mut spec = Self {
                    definition: Definition::default(),
                    probes: Vec::new(),
                    start_time: None,
                    stop_time: None,
                    is_oneoff: false,
                    stopped: false,
                    unreadable: Some(unreadable_field(&value, &e.to_string())),
                };
                // Keep what can be read, so that `stopped` and the type still show.
                if let Some(obj) = value.as_object() {
                    spec.stopped = obj
                        .get("stopped")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false);
                    spec.definition.kind = obj
                        .get("type")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned();
                }
                spec
            }
        }
    }
}

/// Which field of an unreadable spec is wrong: each field is tried alone on a minimal
/// readable spec, and each key of each probe source on a minimal source.
fn unreadable_field(value: &serde_json::Value, error: &str) -> InvalidField {
    use serde_json::{json, Value};
    let fix = |field: String, e: String| InvalidField {
        message: format!(
            "cannot be read: {e}; fix its type (see `kubectl explain measurement.{field}`)"
        ),
        field,
    };
    let Some(obj) = value.as_object() else {
        return fix("spec".into(), format!("{error}; spec must be an object"));
    };
    for (key, v) in obj {
        if key == "probes" {
            let Some(items) = v.as_array() else {
                return fix("spec.probes".into(), "not a list of sources".into());
            };
            for (i, item) in items.iter().enumerate() {
                let Some(item_obj) = item.as_object() else {
                    return fix(format!("spec.probes[{i}]"), "not an object".into());
                };
                for (k, iv) in item_obj {
                    let mut base = json!({"type": "area", "value": "WW", "requested": 1});
                    base[k] = iv.clone();
                    if let Err(e) = serde_json::from_value::<ProbeSource>(base) {
                        return fix(format!("spec.probes[{i}].{k}"), e.to_string());
                    }
                }
                if let Err(e) = serde_json::from_value::<ProbeSource>(item.clone()) {
                    return fix(format!("spec.probes[{i}]"), e.to_string());
                }
            }
            continue;
        }
        let mut base = json!({"type": "ping", "probes": []});
        base[key.as_str()] = v.clone();
        if let Err(e) = serde_json::from_value::<StrictSpec>(base) {
            return fix(format!("spec.{key}"), e.to_string());
        }
    }
    for required in ["type", "probes"] {
        if !obj.contains_key(required) || obj.get(required) == Some(&Value::Null) {
            return InvalidField {
                field: format!("spec.{required}"),
                message: "missing; it is required".into(),
            };
        }
    }
    fix("spec".into(), error.to_owned())
}

/// CEL: `stop_time`, when given with `start_time`, is after it (operator: `spec.stop_time`).
pub const CEL_STOP_AFTER_START: &str =
    "!has(self.start_time) || !has(self.stop_time) || self.stop_time > self.start_time";
/// CEL: a target unless the type is dns asking the probe's resolvers (operator: `spec.target`).
pub const CEL_TARGET: &str = "(self.type == 'dns' && has(self.use_probe_resolver) && self.use_probe_resolver) || (has(self.target) && self.target != '')";
/// CEL: at least one probe source (operator: `spec.probes`).
pub const CEL_SOURCES: &str = "size(self.probes) > 0";
/// CEL: every source requests at least one probe (operator: `spec.probes[i].requested`).
pub const CEL_REQUESTED: &str = "self.probes.all(p, p.requested >= 1)";
/// CEL: the interval is in RIPE Atlas' range (operator: `spec.interval`).
pub const CEL_INTERVAL: &str =
    "!has(self.interval) || (self.interval >= 60 && self.interval <= 604800)";
/// Every CEL rule of the Measurement spec, with the field the operator names for it.
pub const CEL_RULES: &[(&str, &str)] = &[
    (CEL_STOP_AFTER_START, "spec.stop_time"),
    (CEL_TARGET, "spec.target"),
    (CEL_SOURCES, "spec.probes"),
    (CEL_REQUESTED, "spec.probes[0].requested"),
    (CEL_INTERVAL, "spec.interval"),
];

impl MeasurementSpec {
    pub fn timing(&self) -> Timing {
        Timing {
            start_time: self.start_time,
            stop_time: self.stop_time,
            is_oneoff: self.is_oneoff,
        }
    }
}

/// Lifecycle states, as RIPE Atlas names them (a measurement without a state yet is
/// RIPE Atlas's `Specified`, status id 0). [`MeasurementState::ripe_status`] gives the
/// RIPE Atlas status id and name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MeasurementState {
    Scheduled,
    Ongoing,
    /// Ended: stopped by its owner, at `stop_time`, or a one-off whose probes all
    /// reported (or whose time ran out).
    Stopped,
    /// Ended by the system: every probe it ran on left (disconnected for too long,
    /// disabled or deleted), or every probe was removed from it.
    ForcedToStop,
    Failed,
    NoSuitableProbes,
    /// Refused by the namespace's TenantPolicy; not scheduled until it fits.
    Limited,
}

impl MeasurementState {
    /// RIPE Atlas measurement status `(id, name)`: 1 Scheduled, 2 Ongoing, 4 Stopped,
    /// 5 Forced to stop, 6 No suitable probes, 7 Failed; `Limited` (vantage's
    /// TenantPolicy refusal) is 8 Denied.
    pub fn ripe_status(self) -> (u8, &'static str) {
        match self {
            Self::Scheduled => (1, "Scheduled"),
            Self::Ongoing => (2, "Ongoing"),
            Self::Stopped => (4, "Stopped"),
            Self::ForcedToStop => (5, "Forced to stop"),
            Self::NoSuitableProbes => (6, "No suitable probes"),
            Self::Failed => (7, "Failed"),
            Self::Limited => (8, "Denied"),
        }
    }

    /// Whether the measurement has ended for good (for this generation of its spec).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Stopped | Self::ForcedToStop | Self::Failed)
    }
}

/// RIPE Atlas status `(0, "Specified")` of a measurement without a state yet.
pub const SPECIFIED: (u8, &str) = (0, "Specified");

/// Annotation holding a measurement's participation requests (RIPE Atlas
/// `participation-requests`): a JSON list of [`ParticipationRequest`], appended to by
/// the API, read by the operator, which applies each entry once (see
/// [`MeasurementStatus::participation_applied`]).
pub const PARTICIPATION_ANNOTATION: &str = "vantage.dev/participation-requests";

/// A participation request: add probes from a source, or remove listed probes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ParticipationRequest {
    /// The request id (RIPE Atlas `request_ids`), unique within the measurement: the
    /// creation's sources are 1..=n, requests continue from n+1.
    pub id: u32,
    /// `add` or `remove` (remove takes `type: probes` only).
    pub action: String,
    #[serde(flatten)]
    pub source: ProbeSource,
}

impl Measurement {
    /// The participation requests of the annotation, in order; an unreadable
    /// annotation reads as none (the API only ever writes readable ones).
    pub fn participation_requests(&self) -> Vec<ParticipationRequest> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PARTICIPATION_ANNOTATION))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementStatus {
    /// The measurement id (RIPE Atlas `msm_id`), unique in the installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MeasurementState>,
    /// The probes taking part.
    #[serde(default)]
    pub probes: Vec<u32>,
    #[serde(default)]
    pub probe_count: u32,
    /// Results stored so far.
    #[serde(default)]
    pub results: u64,
    /// How many of `probes` have sent at least one result.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probes_reported: u32,
    /// RIPE Atlas status id of `state` (0 Specified ... 7 Failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_id: Option<u8>,
    /// RFC 3339 time `state` was entered (RIPE Atlas `status.when`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<String>,
    /// How many entries of the participation-requests annotation are applied to
    /// `probes`: the operator applies entries from here on, once each.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub participation_applied: u32,
    /// RFC 3339 time of the newest result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// The TenantPolicy limit that refused it (state Limited), e.g. `max_probes_per_measurement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_carries_every_cel_rule_on_the_spec() {
        let crd = serde_json::to_value(Measurement::crd()).expect("crd");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let rules = spec["x-kubernetes-validations"]
            .as_array()
            .expect("x-kubernetes-validations on spec");
        assert_eq!(rules.len(), CEL_RULES.len());
        for (rule, _) in CEL_RULES {
            let r = rules
                .iter()
                .find(|r| r["rule"] == *rule)
                .unwrap_or_else(|| panic!("missing {rule}"));
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(r["fieldPath"].as_str().is_some_and(|p| p.starts_with('.')));
        }
        // The flattened definition's fields stay where CEL expects them.
        for field in [
            "type",
            "target",
            "start_time",
            "stop_time",
            "interval",
            "probes",
        ] {
            assert!(
                spec["properties"].get(field).is_some(),
                "spec.{field} in the schema"
            );
        }
    }

    #[test]
    fn an_unreadable_spec_is_read_and_names_its_field() {
        let cases = [
            (
                r#"{"type":"ping","target":"x.net","packets":"three","probes":[]}"#,
                "spec.packets",
            ),
            (
                r#"{"type":"ping","target":"x.net","probes":"NL"}"#,
                "spec.probes",
            ),
            (
                r#"{"type":"ping","target":"x.net","probes":[{"type":"area","value":"WW","requested":1},{"type":"country","value":"NL","requested":"two"}]}"#,
                "spec.probes[1].requested",
            ),
            (
                r#"{"type":"ping","target":"x.net","stop_time":"tomorrow","probes":[]}"#,
                "spec.stop_time",
            ),
            (r#"{"target":"x.net","probes":[]}"#, "spec.type"),
            (r#"{"type":"ping","stopped":true}"#, "spec.probes"),
            (r#""just a string""#, "spec"),
        ];
        for (json, field) in cases {
            let spec: MeasurementSpec = serde_json::from_str(json).expect("never fails");
            let bad = spec.unreadable.expect(json);
            assert_eq!(bad.field, field, "{json}: {bad}");
            assert!(!bad.message.is_empty());
        }
        let spec: MeasurementSpec =
            serde_json::from_str(r#"{"type":"ping","stopped":true}"#).expect("read");
        assert!(spec.stopped, "what can be read is kept");
        let ok: MeasurementSpec = serde_json::from_str(
            r#"{"type":"ping","target":"x.net","probes":[{"type":"area","value":"WW","requested":1}]}"#,
        )
        .expect("read");
        assert_eq!(ok.unreadable, None);
        // A list holding one unreadable object still reads as a whole.
        let list: Vec<Measurement> = serde_json::from_value(serde_json::json!([
            {"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement", "metadata": {"name": "bad"},
             "spec": {"type": "ping", "packets": [1], "probes": []}},
            {"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement", "metadata": {"name": "good"},
             "spec": {"type": "ping", "target": "x.net", "probes": []}}
        ]))
        .expect("list");
        assert_eq!(list.len(), 2);
        assert!(list[0].spec.unreadable.is_some() && list[1].spec.unreadable.is_none());
        // The skipped field is not in the schema.
        let crd = serde_json::to_value(Measurement::crd()).expect("crd");
        assert!(
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                ["properties"]
                .get("unreadable")
                .is_none()
        );
    }

    #[test]
    fn printer_columns_and_short_name() {
        let crd = Measurement::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["msm".to_owned()]));
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert!(columns.contains(&"State".to_owned()), "{columns:?}");
    }
}
