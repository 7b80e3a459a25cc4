//! RIPE Atlas API v2 shapes, pure: Measurement and Probe resources as RIPE Atlas
//! measurement and probe JSON, list filters, pagination, and the creation body.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use vantage_core::definition::{Definition, ProbeSource, Timing, KNOWN_TYPES};
use vantage_crd::{Measurement, MeasurementSpec, MeasurementState, Probe, SPECIFIED};

use crate::error::ApiError;

/// Default and largest `page_size` (RIPE Atlas: 50 and 500 for measurements).
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

/// RIPE Atlas measurement status `{id, name}` of a Measurement: its state's
/// ([`MeasurementState::ripe_status`]), or 0 Specified before it has one.
pub fn measurement_status(state: Option<MeasurementState>) -> (u8, &'static str) {
    state.map_or(SPECIFIED, MeasurementState::ripe_status)
}

fn state_name(m: &Measurement) -> Option<String> {
    let state = m.status.as_ref()?.state?;
    serde_json::to_value(state)
        .ok()?
        .as_str()
        .map(str::to_owned)
}

/// Unix seconds of an RFC 3339 time.
fn unix(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp())
}

fn creation_time(meta: &kube::api::ObjectMeta) -> Option<i64> {
    meta.creation_timestamp.as_ref().map(|t| t.0.as_second())
}

/// The measurement id, once the operator gave it one.
pub fn msm_id(m: &Measurement) -> Option<u64> {
    m.status.as_ref().and_then(|s| s.id)
}

/// A Measurement as RIPE Atlas measurement JSON. `base` is the API's URL (scheme and
/// host) for the `result` link. None until the measurement has an id.
pub fn measurement_json(m: &Measurement, base: &str) -> Option<Value> {
    let id = msm_id(m)?;
    let spec = &m.spec;
    let status = m.status.clone().unwrap_or_default();
    let state = state_name(m);
    let (status_id, status_name) = measurement_status(status.state);
    let when = status.state_since.as_deref().and_then(unix);
    // The definition's own fields (packets, size, protocol, query_type, ...) at the top
    // level, as RIPE Atlas puts them; defaults filled in from the validated task.
    let mut out = match serde_json::to_value(&spec.definition) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let task = spec.definition.validate(id, spec.timing()).ok();
    let created = creation_time(&m.metadata);
    let target = spec.definition.target.clone().unwrap_or_default();
    let target_ip = target.parse::<IpAddr>().ok().map(|ip| ip.to_string());
    let requested: i64 = spec.probes.iter().map(|p| p.requested.max(0)).sum();
    let fields = [
        ("id", json!(id)),
        ("group_id", json!(id)),
        ("type", json!(spec.definition.kind)),
        (
            "af",
            json!(task
                .as_ref()
                .map(|t| t.af)
                .or(spec.definition.af.and_then(|a| u8::try_from(a).ok()))),
        ),
        ("target", json!(target)),
        ("target_ip", json!(target_ip)),
        (
            "description",
            json!(spec.definition.description.clone().unwrap_or_default()),
        ),
        (
            "interval",
            json!(if spec.is_oneoff {
                None
            } else {
                task.as_ref().map(|t| t.interval)
            }),
        ),
        ("spread", json!(task.as_ref().map(|t| t.spread))),
        ("is_oneoff", json!(spec.is_oneoff)),
        ("is_public", json!(true)),
        (
            "resolve_on_probe",
            json!(spec.definition.resolve_on_probe.unwrap_or(false)),
        ),
        ("creation_time", json!(created)),
        ("start_time", json!(spec.start_time.or(created))),
        ("stop_time", json!(spec.stop_time)),
        (
            "status",
            json!({"id": status_id, "name": status_name, "when": when}),
        ),
        ("participant_count", json!(status.probe_count)),
        ("probes_requested", json!(requested)),
        ("probes_scheduled", json!(status.probe_count)),
        (
            "probes",
            Value::Array(status.probes.iter().map(|p| json!({"id": p})).collect()),
        ),
        ("participation_requests", participation_json(m)),
        (
            "result",
            json!(format!("{base}/api/v2/measurements/{id}/results/")),
        ),
        ("tags", json!([])),
        ("results_count", json!(status.results)),
        (
            "last_result",
            json!(status.last_result.as_deref().and_then(unix)),
        ),
        (
            "vantage",
            json!({"namespace": m.namespace(), "name": m.name_any(), "state": state,
                   "conditions": conditions_json(&status.conditions),
                   "probes_reported": status.probes_reported}),
        ),
    ];
    for (k, v) in fields {
        out.insert(k.to_owned(), v);
    }
    Some(Value::Object(out))
}

/// A resource's conditions as `[{type, status, reason, message, lastTransitionTime}]`.
fn conditions_json<T: serde::Serialize>(conditions: &[T]) -> Value {
    Value::Array(
        conditions
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect(),
    )
}

/// The participation requests of a measurement, RIPE Atlas style: its creation's
/// sources (`action: add`, ids 1..=n) then the requests made since, in order.
pub fn participation_json(m: &Measurement) -> Value {
    let created = m.spec.probes.iter().enumerate().map(|(i, p)| {
        let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("id".into(), json!(i + 1));
            map.insert("action".into(), json!("add"));
        }
        v
    });
    let later = m
        .participation_requests()
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok());
    Value::Array(created.chain(later).collect())
}

/// Refuse a `requested` above `max` (the installation's largest number of probes per
/// measurement), naming the field and the maximum. `already` probes count too (for
/// participation requests); `field` names the source (`probes[0]`, `[1]`).
pub fn requested_within(sources: &[(String, i64)], already: u64, max: u32) -> Result<(), ApiError> {
    let mut total = already;
    for (field, requested) in sources {
        let n = u64::try_from(*requested).unwrap_or(0);
        if n > u64::from(max) {
            return Err(ApiError::field(
                &format!("{field}.requested"),
                format!(
                    "{requested} is above this installation's maximum of {max} probes per measurement; ask for at most {max}"
                ),
            ));
        }
        total = total.saturating_add(n);
    }
    if total > u64::from(max) {
        let what = if already > 0 {
            format!(
                "{already} probes taking part plus {} requested",
                total - already
            )
        } else {
            format!("{total} probes requested in all")
        };
        return Err(ApiError::field(
            "probes",
            format!("{what} is above this installation's maximum of {max} probes per measurement; ask for fewer"),
        ));
    }
    Ok(())
}

/// One entry of a `POST /api/v2/measurements/{id}/participation-requests/` body
/// (cousteau's `AtlasChangeSource`): `{action, type, value, requested, tags}`.
#[derive(Deserialize, Debug, Clone)]
pub struct ChangeEntry {
    pub action: String,
    #[serde(flatten)]
    pub source: ProbeSource,
}

/// Validate a participation-requests body: a list of entries; `add` with any source
/// type, `remove` with `type: probes` and a list of probe ids. Errors name the entry
/// (`[1].type`).
pub fn change_entries(body: &[u8]) -> Result<Vec<ChangeEntry>, ApiError> {
    let entries: Vec<ChangeEntry> = serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "body",
            format!(
                "is not a list of participation requests ({e}); send [{{\"action\": \"add\", \"type\": \"area\", \"value\": \"WW\", \"requested\": 2}}]"
            ),
        )
    })?;
    if entries.is_empty() {
        return Err(ApiError::field(
            "body",
            "is an empty list; send at least one participation request",
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        match e.action.as_str() {
            "add" => {
                e.source
                    .validate(i)
                    .map_err(|err| ApiError::field(&change_field(&err.field, i), err.message))?;
            }
            "remove" => {
                if e.source.kind != "probes" {
                    return Err(ApiError::field(
                        &format!("[{i}].type"),
                        format!(
                            "{:?} cannot be removed; remove takes type \"probes\" with a comma-separated list of probe ids",
                            e.source.kind
                        ),
                    ));
                }
                let ids: Result<Vec<u32>, _> = e
                    .source
                    .value
                    .split(',')
                    .map(|v| v.trim().parse::<u32>())
                    .collect();
                if ids.map_or(true, |ids| ids.is_empty()) {
                    return Err(ApiError::field(
                        &format!("[{i}].value"),
                        format!(
                            "{:?} is not a comma-separated list of probe ids",
                            e.source.value
                        ),
                    ));
                }
            }
            other => {
                return Err(ApiError::field(
                    &format!("[{i}].action"),
                    format!("{other:?} is not an action; use \"add\" or \"remove\""),
                ))
            }
        }
    }
    Ok(entries)
}

/// `spec.probes[0].value` (the operator's path for source 0) as `[i].value`.
fn change_field(field: &str, i: usize) -> String {
    let rest = field
        .trim_start_matches("spec.")
        .trim_start_matches("probes")
        .trim_start_matches(|c: char| c == '[' || c.is_ascii_digit() || c == ']');
    format!("[{i}]{rest}")
}

/// RIPE Atlas probe status: 0 Never Connected, 1 Connected, 2 Disconnected, 3 Abandoned
/// (vantage: disabled).
pub fn probe_status(p: &Probe) -> (u8, &'static str) {
    let st = p.status.clone().unwrap_or_default();
    if !p.spec.enabled {
        (3, "Abandoned")
    } else if st.connected {
        (1, "Connected")
    } else if st.connected_since.is_some() || st.last_seen.is_some() {
        (2, "Disconnected")
    } else {
        (0, "Never Connected")
    }
}

/// The human-readable name RIPE Atlas gives a system tag (`system-ipv4-works` is
/// "system: IPv4 Works"); an unknown slug gets its words capitalised.
pub fn system_tag_name(slug: &str) -> String {
    let known = match slug {
        "system-ipv4-works" => "IPv4 Works",
        "system-ipv6-works" => "IPv6 Works",
        "system-ipv4-capable" => "IPv4 Capable",
        "system-ipv6-capable" => "IPv6 Capable",
        "system-resolves-a-correctly" => "Resolves A Correctly",
        "system-resolves-aaaa-correctly" => "Resolves AAAA Correctly",
        "system-ipv4-stable-1d" => "IPv4 Stable 1d",
        "system-ipv6-stable-1d" => "IPv6 Stable 1d",
        "system-anchor" => "Anchor",
        other => {
            let words: Vec<String> = other
                .trim_start_matches("system-")
                .split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect())
                        .unwrap_or_default()
                })
                .collect();
            return format!("system: {}", words.join(" "));
        }
    };
    format!("system: {known}")
}

/// A Probe as RIPE Atlas probe JSON.
pub fn probe_json(p: &Probe) -> Value {
    let s = &p.spec;
    let st = p.status.clone().unwrap_or_default();
    let address: Option<IpAddr> = st.address.as_deref().and_then(|a| a.parse().ok());
    let (v4, v6) = match address {
        Some(IpAddr::V4(a)) => (Some(a.to_string()), None),
        Some(IpAddr::V6(a)) => (None, Some(a.to_string())),
        None => (None, None),
    };
    let (status_id, status_name) = probe_status(p);
    let since = if st.connected {
        st.connected_since.as_deref()
    } else {
        st.last_seen.as_deref()
    }
    .and_then(unix);
    let geometry = s
        .location
        .map(|l| json!({"type": "Point", "coordinates": [l.longitude, l.latitude]}));
    // User tags, then the operator's system tags, as RIPE Atlas lists both.
    let mut tags: Vec<Value> = s
        .tags
        .iter()
        .map(|t| json!({"name": t, "slug": t}))
        .collect();
    for t in st.system_tags.iter().filter(|t| !s.tags.contains(t)) {
        tags.push(json!({"name": system_tag_name(t), "slug": t}));
    }
    json!({
        "id": s.id,
        "address_v4": v4,
        "address_v6": v6,
        "asn_v4": s.asn_v4,
        "asn_v6": s.asn_v6,
        "prefix_v4": s.prefix_v4,
        "prefix_v6": s.prefix_v6,
        "country_code": s.country_code,
        "description": p.name_any(),
        "geometry": geometry,
        "is_anchor": s.anchor,
        "is_public": true,
        "first_connected": creation_time(&p.metadata),
        "last_connected": st.last_seen.as_deref().and_then(unix),
        "status": {"id": status_id, "name": status_name, "since": since},
        "status_since": since,
        "tags": tags,
        "type": "Probe",
        "firmware_version": st.firmware,
        "controller": st.controller,
    })
}

/// Query parameters that never filter (RIPE Atlas accepts them everywhere).
const NEUTRAL: &[&str] = &[
    "page",
    "page_size",
    "key",
    "format",
    "fields",
    "optional_fields",
    "sort",
];

fn parse_u64(name: &str, v: &str) -> Result<u64, ApiError> {
    v.trim()
        .parse()
        .map_err(|_| ApiError::param(name, format!("{v:?} is not a non-negative integer")))
}

fn parse_list(name: &str, v: &str) -> Result<Vec<u64>, ApiError> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_u64(name, s))
        .collect()
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::param(name, format!("{v:?} is not true or false"))),
    }
}

/// An AS number (32 bits; `asn` also takes `AS1234`).
fn parse_asn(name: &str, v: &str) -> Result<u64, ApiError> {
    let t = v.trim();
    let digits = if name == "asn" {
        t.strip_prefix("AS").unwrap_or(t)
    } else {
        t
    };
    digits
        .parse::<u32>()
        .map(u64::from)
        .map_err(|_| ApiError::param(name, format!("{v:?} is not an AS number (0 to 4294967295)")))
}

/// The RIPE Atlas measurement status ids (0 Specified ... 8 Denied; there is no 3).
const STATUS_IDS: &[u64] = &[0, 1, 2, 4, 5, 6, 7, 8];

/// Whether `x` is a value `field` can have (`status` ids, `af` 4 or 6); RIPE Atlas
/// refuses other choices with a 400 too.
fn allowed(field: &str, x: u64) -> bool {
    match field {
        "status" => STATUS_IDS.contains(&x),
        "af" => x == 4 || x == 6,
        _ => true,
    }
}

fn allowed_text(field: &str) -> &'static str {
    match field {
        "status" => "a measurement status id; use 0, 1, 2, 4, 5, 6, 7 or 8",
        "af" => "an address family; use 4 or 6",
        _ => "allowed",
    }
}

/// Compare `x` with a numeric bound by the Django lookup suffix.
fn cmp_num(op: &str, x: u64, bound: u64) -> bool {
    match op {
        "gt" => x > bound,
        "gte" => x >= bound,
        "lt" => x < bound,
        "lte" => x <= bound,
        _ => x == bound,
    }
}

/// Measurement list filters, RIPE Atlas style (`type`, `status`, `status__in`, `id__in`,
/// `id__gt`, `af`, `target`, `target__contains`, `description__contains`, `is_oneoff`,
/// `start_time__gte`, ...). An unknown parameter is a 400 naming it.
pub fn measurement_filter(
    params: &BTreeMap<String, String>,
) -> Result<impl Fn(&Value) -> bool, ApiError> {
    type Check = Box<dyn Fn(&Value) -> bool + Send + Sync>;
    let mut checks: Vec<Check> = Vec::new();
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    for (name, value) in params {
        if NEUTRAL.contains(&name.as_str()) {
            continue;
        }
        let (field, op) = name.split_once("__").unwrap_or((name.as_str(), "exact"));
        match (field, op) {
            (
                "id" | "af" | "interval" | "start_time" | "stop_time" | "participant_count",
                "exact" | "gt" | "gte" | "lt" | "lte",
            ) => {
                let bound = parse_u64(name, value)?;
                if (field, op) == ("af", "exact") && !allowed(field, bound) {
                    return Err(ApiError::param(
                        name,
                        format!("{bound} is not {}", allowed_text(field)),
                    ));
                }
                let (f, o) = (field.to_owned(), op.to_owned());
                checks.push(Box::new(move |v| {
                    num(v, &f).is_some_and(|x| cmp_num(&o, x, bound))
                }));
            }
            ("id" | "status" | "af", "in") => {
                let set = parse_list(name, value)?;
                if let Some(bad) = set.iter().find(|x| !allowed(field, **x)) {
                    return Err(ApiError::param(
                        name,
                        format!("{bad} is not {}", allowed_text(field)),
                    ));
                }
                let f = if field == "status" {
                    "status".to_owned()
                } else {
                    field.to_owned()
                };
                checks.push(Box::new(move |v| {
                    let x = if f == "status" {
                        v["status"]["id"].as_u64()
                    } else {
                        num(v, &f)
                    };
                    x.is_some_and(|x| set.contains(&x))
                }));
            }
            ("status", "exact") => {
                let want = parse_u64(name, value)?;
                if !allowed(field, want) {
                    return Err(ApiError::param(
                        name,
                        format!("{want} is not {}", allowed_text(field)),
                    ));
                }
                checks.push(Box::new(move |v| v["status"]["id"].as_u64() == Some(want)));
            }
            ("type", "exact") => {
                let want = value.trim().to_ascii_lowercase();
                if !KNOWN_TYPES.contains(&want.as_str()) {
                    return Err(ApiError::param(
                        name,
                        format!(
                            "{value:?} is not a measurement type; use one of {}",
                            KNOWN_TYPES.join(", ")
                        ),
                    ));
                }
                checks.push(Box::new(move |v| text(v, "type") == want));
            }
            (
                "target" | "description",
                "exact" | "contains" | "icontains" | "startswith" | "endswith",
            ) => {
                let (f, o, want) = (field.to_owned(), op.to_owned(), value.clone());
                checks.push(Box::new(move |v| {
                    let t = text(v, &f);
                    match o.as_str() {
                        "contains" => t.contains(&want),
                        "icontains" => t.to_lowercase().contains(&want.to_lowercase()),
                        "startswith" => t.starts_with(&want),
                        "endswith" => t.ends_with(&want),
                        _ => t == want,
                    }
                }));
            }
            ("namespace", "exact") => {
                // vantage: the Kubernetes namespace that owns the measurement.
                let want = value.trim().to_owned();
                checks.push(Box::new(move |v| {
                    v["vantage"]["namespace"].as_str() == Some(want.as_str())
                }));
            }
            ("is_oneoff" | "is_public" | "resolve_on_probe", "exact") => {
                let want = parse_bool(name, value)?;
                let f = field.to_owned();
                checks.push(Box::new(move |v| {
                    v.get(&f).and_then(Value::as_bool) == Some(want)
                }));
            }
            _ => return Err(ApiError::param(
                name,
                "unknown filter; use type, status, status__in, id, id__in, id__gt/gte/lt/lte, af, \
                     target, target__contains, description, description__contains, is_oneoff, \
                     start_time__gte/lte, stop_time__gte/lte, interval, namespace, page, page_size",
            )),
        }
    }
    Ok(move |v: &Value| checks.iter().all(|c| c(v)))
}

/// Probe list filters: `id`, `id__in`, `country_code`, `asn`, `asn_v4`, `asn_v6`,
/// `status`, `tags` (comma-separated, all required), `is_anchor`, `is_public`.
pub fn probe_filter(
    params: &BTreeMap<String, String>,
) -> Result<impl Fn(&Value) -> bool, ApiError> {
    type Check = Box<dyn Fn(&Value) -> bool + Send + Sync>;
    let mut checks: Vec<Check> = Vec::new();
    for (name, value) in params {
        if NEUTRAL.contains(&name.as_str()) {
            continue;
        }
        match name.as_str() {
            "id" => {
                let want = parse_u64(name, value)?;
                let f = name.clone();
                checks.push(Box::new(move |v| v[&f].as_u64() == Some(want)));
            }
            "id__gt" | "id__gte" | "id__lt" | "id__lte" => {
                let bound = parse_u64(name, value)?;
                let op = name.trim_start_matches("id__").to_owned();
                checks.push(Box::new(move |v| v["id"].as_u64().is_some_and(|x| cmp_num(&op, x, bound))));
            }
            "asn_v4" | "asn_v6" => {
                let want = parse_asn(name, value)?;
                let f = name.clone();
                checks.push(Box::new(move |v| v[&f].as_u64() == Some(want)));
            }
            "asn" => {
                let want = parse_asn(name, value)?;
                checks.push(Box::new(move |v| {
                    v["asn_v4"].as_u64() == Some(want) || v["asn_v6"].as_u64() == Some(want)
                }));
            }
            "id__in" => {
                let set = parse_list(name, value)?;
                checks.push(Box::new(move |v| v["id"].as_u64().is_some_and(|x| set.contains(&x))));
            }
            "status" => {
                let want = parse_u64(name, value)?;
                if want > 3 {
                    return Err(ApiError::param(name, format!("{want} is not a probe status; use 0 Never Connected, 1 Connected, 2 Disconnected or 3 Abandoned")));
                }
                checks.push(Box::new(move |v| v["status"]["id"].as_u64() == Some(want)));
            }
            "country_code" => {
                let want = value.trim().to_ascii_uppercase();
                checks.push(Box::new(move |v| {
                    v["country_code"].as_str().map(str::to_ascii_uppercase).as_deref() == Some(want.as_str())
                }));
            }
            "tags" => {
                let want: Vec<String> = value.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
                checks.push(Box::new(move |v| {
                    let have: Vec<&str> = v["tags"].as_array().into_iter().flatten().filter_map(|t| t["slug"].as_str()).collect();
                    want.iter().all(|w| have.contains(&w.as_str()))
                }));
            }
            "is_anchor" | "is_public" => {
                let want = parse_bool(name, value)?;
                let f = name.clone();
                checks.push(Box::new(move |v| v[&f].as_bool() == Some(want)));
            }
            _ => {
                return Err(ApiError::param(
                    name,
                    "unknown filter; use id, id__in, id__gt/gte/lt/lte, country_code, asn, asn_v4, asn_v6, \
                     status, tags, is_anchor, is_public, page, page_size",
                ))
            }
        }
    }
    Ok(move |v: &Value| checks.iter().all(|c| c(v)))
}

/// `page` (1-based) and `page_size` from the query.
pub fn paging(params: &BTreeMap<String, String>) -> Result<(usize, usize), ApiError> {
    let page = match params.get("page") {
        None => 1,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| ApiError::param("page", format!("{v:?} is not a page number from 1")))?,
    };
    let size = match params.get("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
            .ok_or_else(|| {
                ApiError::param(
                    "page_size",
                    format!("{v:?} is out of range; use 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    Ok((page, size))
}

/// One page of `items` as RIPE Atlas lists answer: `{count, next, previous, results}`.
/// `url` is the list's absolute URL; `params` are the query, kept in next/previous.
pub fn page_of(
    items: Vec<Value>,
    url: &str,
    params: &BTreeMap<String, String>,
    page: usize,
    size: usize,
) -> Result<Value, ApiError> {
    let count = items.len();
    let pages = count.div_ceil(size).max(1);
    if page > pages {
        return Err(ApiError::not_found(format!(
            "page {page} does not exist: {count} objects make {pages} pages of {size}; ask for page 1 to {pages}"
        )));
    }
    let link = |p: usize| {
        let mut q = params.clone();
        q.insert("page".to_owned(), p.to_string());
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("{url}?{}", query.join("&"))
    };
    let results: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Ok(json!({
        "count": count,
        "next": (page < pages).then(|| link(page + 1)),
        "previous": (page > 1).then(|| link(page - 1)),
        "results": results,
    }))
}

/// Percent-encode a query component (unreserved characters and `,` kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `POST /api/v2/measurements/` body (RIPE Atlas).
#[derive(Deserialize, Debug, Clone)]
pub struct CreateRequest {
    pub definitions: Vec<Definition>,
    pub probes: Vec<ProbeSource>,
    #[serde(default)]
    pub start_time: Option<Value>,
    #[serde(default)]
    pub stop_time: Option<Value>,
    #[serde(default)]
    pub is_oneoff: bool,
    /// Accepted and ignored (RIPE Atlas credits).
    #[serde(default)]
    pub bill_to: Option<String>,
}

/// A time as RIPE Atlas takes it: Unix seconds, or an ISO 8601 / RFC 3339 string.
fn time_field(name: &str, v: &Option<Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|t| *t >= 0)
            .map(Some)
            .ok_or_else(|| ApiError::field(name, format!("{n} is not a Unix time in seconds"))),
        Some(Value::String(s)) => {
            if let Ok(t) = s.trim().parse::<i64>() {
                return Ok(Some(t));
            }
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| Some(t.timestamp()))
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S")
                        .map(|t| Some(t.and_utc().timestamp()))
                })
                .map_err(|_| {
                    ApiError::field(
                        name,
                        format!("{s:?} is not a time; use Unix seconds or 2024-05-01T12:00:00Z"),
                    )
                })
        }
        Some(other) => Err(ApiError::field(
            name,
            format!("{other} is not a time; use Unix seconds"),
        )),
    }
}

/// Rename `spec.x` (the operator's field paths) to the body's path.
fn body_field(field: &str, definition: usize) -> String {
    match field.strip_prefix("spec.") {
        Some(rest) if rest.starts_with("probes") => rest.to_owned(),
        Some(rest) if ["start_time", "stop_time", "is_oneoff"].contains(&rest) => rest.to_owned(),
        Some(rest) => format!("definitions[{definition}].{rest}"),
        None => format!("definitions[{definition}].{field}"),
    }
}

/// Validate a creation request (the same checks as the operator, errors naming the
/// body's field) and build one Measurement spec per definition.
pub fn specs_of(req: &CreateRequest, now: i64) -> Result<Vec<MeasurementSpec>, ApiError> {
    if req.definitions.is_empty() {
        return Err(ApiError::field(
            "definitions",
            "is empty; give at least one definition",
        ));
    }
    if req.definitions.len() > 100 {
        return Err(ApiError::field(
            "definitions",
            "has more than 100 entries; split the request",
        ));
    }
    if req.probes.is_empty() {
        return Err(ApiError::field(
            "probes",
            "is empty; give at least one source such as {\"type\": \"area\", \"value\": \"WW\", \"requested\": 5}",
        ));
    }
    for (i, p) in req.probes.iter().enumerate() {
        p.validate(i)
            .map_err(|e| ApiError::field(&body_field(&e.field, 0), e.message))?;
    }
    let start_time = time_field("start_time", &req.start_time)?;
    let stop_time = time_field("stop_time", &req.stop_time)?;
    if let (Some(start), Some(stop)) = (start_time, stop_time) {
        if stop <= start {
            return Err(ApiError::field(
                "stop_time",
                format!("{stop} is not after start_time {start}"),
            ));
        }
    }
    if let Some(stop) = stop_time {
        if stop <= now {
            return Err(ApiError::field(
                "stop_time",
                format!("{stop} is in the past (now {now})"),
            ));
        }
    }
    let timing = Timing {
        start_time,
        stop_time,
        is_oneoff: req.is_oneoff,
    };
    req.definitions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut d = d.clone();
            d.kind = d.kind.trim().to_ascii_lowercase();
            d.validate(0, timing)
                .map_err(|e| ApiError::field(&body_field(&e.field, i), e.message))?;
            // Built through serde, so that fields the spec gains keep their defaults.
            let mut spec = match serde_json::to_value(&d) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            spec.insert("probes".into(), json!(req.probes));
            spec.insert("start_time".into(), json!(start_time));
            spec.insert("stop_time".into(), json!(stop_time));
            spec.insert("is_oneoff".into(), json!(req.is_oneoff));
            serde_json::from_value::<MeasurementSpec>(Value::Object(spec))
                .map_err(|e| ApiError::field(&format!("definitions[{i}]"), e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_crd::MeasurementStatus;

    pub(crate) fn msm(yaml: &str) -> Measurement {
        serde_yaml::from_str(yaml).expect("fixture")
    }

    const PING: &str = r#"
apiVersion: vantage.dev/v1alpha1
kind: Measurement
metadata: {name: ping-1, namespace: team-a, creationTimestamp: "2024-05-01T12:00:00Z"}
spec:
  type: ping
  target: 192.0.2.1
  description: my ping
  packets: 5
  probes: [{type: country, value: NL, requested: 3}]
status:
  id: 1000007
  state: Ongoing
  probes: [11, 12]
  probeCount: 2
  results: 40
  lastResult: "2024-05-01T13:00:00Z"
"#;

    #[test]
    fn measurement_maps_to_ripe_json() {
        let v = measurement_json(&msm(PING), "https://api.example").expect("has an id");
        assert_eq!(v["id"], 1000007);
        assert_eq!(v["type"], "ping");
        assert_eq!(v["af"], 4);
        assert_eq!(v["target"], "192.0.2.1");
        assert_eq!(v["target_ip"], "192.0.2.1");
        assert_eq!(v["description"], "my ping");
        assert_eq!(v["packets"], 5);
        assert_eq!(v["interval"], 240, "RIPE default interval for ping");
        assert_eq!(v["status"]["id"], 2);
        assert_eq!(v["status"]["name"], "Ongoing");
        assert_eq!(v["participant_count"], 2);
        assert_eq!(v["probes_requested"], 3);
        assert_eq!(v["creation_time"], 1714564800);
        assert_eq!(v["start_time"], 1714564800);
        assert_eq!(v["stop_time"], Value::Null);
        assert_eq!(v["is_oneoff"], false);
        assert_eq!(v["last_result"], 1714568400);
        assert_eq!(v["probes"], json!([{"id": 11}, {"id": 12}]));
        assert_eq!(
            v["result"],
            "https://api.example/api/v2/measurements/1000007/results/"
        );
        assert_eq!(v["vantage"]["namespace"], "team-a");
    }

    #[test]
    fn measurement_without_id_is_not_listed() {
        let mut m = msm(PING);
        m.status = Some(MeasurementStatus::default());
        assert!(measurement_json(&m, "").is_none());
    }

    #[test]
    fn status_ids_follow_ripe() {
        use MeasurementState::*;
        assert_eq!(measurement_status(None), (0, "Specified"));
        let cases = [
            (Scheduled, 1, "Scheduled"),
            (Ongoing, 2, "Ongoing"),
            (Stopped, 4, "Stopped"),
            (ForcedToStop, 5, "Forced to stop"),
            (NoSuitableProbes, 6, "No suitable probes"),
            (Failed, 7, "Failed"),
            (Limited, 8, "Denied"),
        ];
        for (state, id, name) in cases {
            assert_eq!(measurement_status(Some(state)), (id, name), "{state:?}");
        }
    }

    #[test]
    fn status_when_is_the_state_change_and_requests_list_creation_first() {
        let mut m = msm(PING);
        if let Some(s) = m.status.as_mut() {
            s.state = Some(MeasurementState::ForcedToStop);
            s.state_since = Some("2024-05-01T14:00:00Z".into());
        }
        m.metadata.annotations = Some(BTreeMap::from([(
            vantage_crd::PARTICIPATION_ANNOTATION.to_owned(),
            r#"[{"id":2,"action":"remove","type":"probes","value":"11","requested":1}]"#.to_owned(),
        )]));
        let v = measurement_json(&m, "").expect("id");
        assert_eq!(
            v["status"],
            json!({"id": 5, "name": "Forced to stop", "when": 1714572000})
        );
        let reqs = v["participation_requests"].as_array().expect("list");
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            (
                reqs[0]["id"].as_u64(),
                reqs[0]["action"].as_str(),
                reqs[0]["type"].as_str()
            ),
            (Some(1), Some("add"), Some("country"))
        );
        assert_eq!(
            (
                reqs[1]["id"].as_u64(),
                reqs[1]["action"].as_str(),
                reqs[1]["value"].as_str()
            ),
            (Some(2), Some("remove"), Some("11"))
        );
    }

    #[test]
    fn requested_above_the_maximum_is_refused_naming_it() {
        let one = |r: i64| vec![("probes[0]".to_owned(), r)];
        assert!(requested_within(&one(1000), 0, 1000).is_ok());
        let e = requested_within(&one(1_000_000_000), 0, 1000).expect_err("too many");
        assert_eq!(e.pointer.as_deref(), Some("/probes/0/requested"));
        assert!(e.detail.contains("maximum of 1000"), "{}", e.detail);
        let two = vec![("probes[0]".to_owned(), 600), ("probes[1]".to_owned(), 600)];
        let e = requested_within(&two, 0, 1000).expect_err("sum");
        assert!(
            e.detail.starts_with("probes: 1200 probes requested"),
            "{}",
            e.detail
        );
        let e = requested_within(&one(10), 995, 1000).expect_err("with those taking part");
        assert!(e.detail.contains("995 probes taking part"), "{}", e.detail);
    }

    #[test]
    fn participation_bodies_are_validated_per_entry() {
        let ok = change_entries(
            br#"[{"action":"add","type":"country","value":"NL","requested":2},
                 {"action":"remove","type":"probes","value":"4,103","requested":2}]"#,
        )
        .expect("valid");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].source.value, "4,103");
        let bad = |body: &[u8], field: &str| {
            let e = change_entries(body).expect_err(field);
            assert!(e.detail.starts_with(field), "{field}: {}", e.detail);
        };
        bad(
            br#"[{"action":"swap","type":"probes","value":"1","requested":1}]"#,
            "[0].action",
        );
        bad(
            br#"[{"action":"add","type":"area","value":"WW","requested":1},{"action":"remove","type":"country","value":"NL","requested":1}]"#,
            "[1].type",
        );
        bad(
            br#"[{"action":"remove","type":"probes","value":"a,b","requested":1}]"#,
            "[0].value",
        );
        bad(
            br#"[{"action":"add","type":"country","value":"Holland","requested":1}]"#,
            "[0].value",
        );
        bad(br#"[]"#, "body");
        bad(br#"{"action":"add"}"#, "body");
    }

    fn probe(id: u32, connected: bool, cc: &str, tags: &[&str]) -> Probe {
        serde_json::from_value(json!({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe",
            "metadata": {"name": format!("probe-{id}")},
            "spec": {"id": id, "public_key": "ssh-ed25519 AAAA", "enabled": true, "country_code": cc,
                     "location": {"latitude": 52.0, "longitude": 4.5}, "asn_v4": 64500 + id, "tags": tags},
            "status": {"connected": connected, "address": "198.51.100.7", "connectedSince": "2024-05-01T12:00:00Z"},
        }))
        .expect("probe fixture")
    }

    #[test]
    fn probe_lists_user_and_system_tags_the_ripe_way() {
        let mut p = probe(5, true, "NL", &["home"]);
        p.spec.anchor = true;
        if let Some(st) = p.status.as_mut() {
            st.system_tags = vec![
                "system-anchor".into(),
                "system-ipv4-works".into(),
                "system-new-thing".into(),
            ];
        }
        let v = probe_json(&p);
        assert_eq!(
            v["tags"],
            json!([
                {"name": "home", "slug": "home"},
                {"name": "system: Anchor", "slug": "system-anchor"},
                {"name": "system: IPv4 Works", "slug": "system-ipv4-works"},
                {"name": "system: New Thing", "slug": "system-new-thing"},
            ])
        );
        assert_eq!(v["is_anchor"], true);
        let keep = |pairs: &[(&str, &str)]| probe_filter(&q(pairs)).expect("valid")(&v);
        assert!(keep(&[
            ("tags", "system-ipv4-works,home"),
            ("is_anchor", "true")
        ]));
        assert!(!keep(&[("tags", "system-ipv6-works")]));
        assert_eq!(probe_json(&probe(6, true, "NL", &[]))["is_anchor"], false);
    }

    #[test]
    fn probe_maps_to_ripe_json() {
        let v = probe_json(&probe(3, true, "NL", &["home", "system-ipv4-works"]));
        assert_eq!(v["id"], 3);
        assert_eq!(v["address_v4"], "198.51.100.7");
        assert_eq!(v["address_v6"], Value::Null);
        assert_eq!(v["asn_v4"], 64503);
        assert_eq!(v["country_code"], "NL");
        assert_eq!(
            v["geometry"],
            json!({"type": "Point", "coordinates": [4.5, 52.0]})
        );
        assert_eq!(
            v["status"],
            json!({"id": 1, "name": "Connected", "since": 1714564800})
        );
        assert_eq!(
            v["tags"][1],
            json!({"name": "system-ipv4-works", "slug": "system-ipv4-works"})
        );
        let off = probe_json(&probe(4, false, "DE", &[]));
        assert_eq!(off["status"]["name"], "Disconnected");
    }

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn measurement_filters() {
        let v = measurement_json(&msm(PING), "").expect("id");
        let keep = |pairs: &[(&str, &str)]| measurement_filter(&q(pairs)).expect("valid")(&v);
        assert!(keep(&[]));
        assert!(keep(&[("type", "ping"), ("status", "2")]));
        assert!(!keep(&[("type", "dns")]));
        assert!(keep(&[("status__in", "1,2")]));
        assert!(!keep(&[("status__in", "4,7")]));
        assert!(keep(&[("id__in", "5,1000007")]));
        assert!(keep(&[("id__gte", "1000007")]) && !keep(&[("id__gt", "1000007")]));
        assert!(keep(&[("description__contains", "y pi")]));
        assert!(keep(&[
            ("target", "192.0.2.1"),
            ("is_oneoff", "false"),
            ("af", "4")
        ]));
        assert!(!keep(&[("is_oneoff", "true")]));
        for (name, bad) in [
            ("type", "pong"),
            ("status", "3"),
            ("status__in", "2,9"),
            ("af", "5"),
            ("af__in", "4,7"),
        ] {
            let e = measurement_filter(&q(&[(name, bad)]))
                .err()
                .unwrap_or_else(|| panic!("{name}={bad} taken"));
            assert_eq!(e.pointer.as_deref(), Some(format!("?{name}").as_str()));
        }
        assert!(keep(&[("type", "PING"), ("af__in", "4,6")]));
        let e = measurement_filter(&q(&[("colour", "red")]))
            .err()
            .expect("unknown");
        assert_eq!(e.pointer.as_deref(), Some("?colour"));
        let e = measurement_filter(&q(&[("id__in", "1,x")]))
            .err()
            .expect("bad list");
        assert!(e.detail.starts_with("id__in:"), "{}", e.detail);
    }

    #[test]
    fn probe_filters() {
        let v = probe_json(&probe(3, true, "NL", &["home", "e2e"]));
        let keep = |pairs: &[(&str, &str)]| probe_filter(&q(pairs)).expect("valid")(&v);
        assert!(keep(&[("country_code", "nl"), ("status", "1")]));
        assert!(keep(&[("tags", "e2e,home"), ("asn", "AS64503")]));
        assert!(!keep(&[("tags", "e2e,office")]));
        assert!(keep(&[("id__in", "1,3")]) && !keep(&[("id", "4")]));
        assert!(probe_filter(&q(&[("status", "on")])).is_err());
        assert!(
            probe_filter(&q(&[("status", "4")])).is_err(),
            "no probe status 4"
        );
        assert!(
            probe_filter(&q(&[("asn", "4294967296")])).is_err(),
            "above 32 bits"
        );
        assert!(
            probe_filter(&q(&[("asn_v4", "AS1")])).is_err(),
            "AS only for asn"
        );
        assert!(keep(&[("asn_v4", "64503")]));
    }

    #[test]
    fn pages_link_next_and_previous() {
        let items: Vec<Value> = (0..5).map(|i| json!({"id": i})).collect();
        let params = q(&[("type", "ping"), ("page_size", "2"), ("page", "2")]);
        let (page, size) = paging(&params).expect("paging");
        let p = page_of(
            items.clone(),
            "http://h/api/v2/measurements/",
            &params,
            page,
            size,
        )
        .expect("page");
        assert_eq!(p["count"], 5);
        assert_eq!(p["results"], json!([{"id": 2}, {"id": 3}]));
        assert_eq!(
            p["next"],
            "http://h/api/v2/measurements/?page=3&page_size=2&type=ping"
        );
        assert_eq!(
            p["previous"],
            "http://h/api/v2/measurements/?page=1&page_size=2&type=ping"
        );
        let last = page_of(items.clone(), "u", &params, 3, 2).expect("last");
        assert_eq!(last["next"], Value::Null);
        assert!(page_of(items, "u", &params, 4, 2).is_err());
        assert!(paging(&q(&[("page_size", "501")])).is_err());
        assert!(paging(&q(&[("page", "0")])).is_err());
        assert_eq!(
            page_of(vec![], "u", &q(&[]), 1, 50).expect("empty")["count"],
            0
        );
    }

    fn create(body: Value) -> Result<Vec<MeasurementSpec>, ApiError> {
        let req: CreateRequest = serde_json::from_value(body).expect("shape");
        specs_of(&req, 1_700_000_000)
    }

    #[test]
    fn creation_validates_and_names_the_field() {
        let ok = create(json!({
            "definitions": [{"type": "ping", "af": 4, "target": "192.0.2.1", "description": "p"},
                            {"type": "traceroute", "af": 4, "target": "example.net", "protocol": "ICMP"}],
            "probes": [{"type": "area", "value": "WW", "requested": 2}],
            "is_oneoff": true, "start_time": 1_800_000_000}))
        .expect("valid");
        assert_eq!(ok.len(), 2);
        assert!(ok[0].is_oneoff && ok[1].start_time == Some(1_800_000_000));
        assert_eq!(ok[1].definition.kind, "traceroute");

        let e = create(json!({"definitions": [{"type": "ping", "target": "192.0.2.1"}, {"type": "ping", "target": "x", "packets": -2}],
                              "probes": [{"type": "area", "value": "WW", "requested": 1}]}))
        .expect_err("bad packets");
        assert!(
            e.detail.starts_with("definitions[1].packets:"),
            "{}",
            e.detail
        );
        assert_eq!(e.pointer.as_deref(), Some("/definitions/1/packets"));

        let e = create(
            json!({"definitions": [{"type": "pong", "target": "192.0.2.1"}],
                              "probes": [{"type": "area", "value": "WW", "requested": 1}]}),
        )
        .expect_err("bad type");
        assert!(e.detail.starts_with("definitions[0].type:"), "{}", e.detail);

        let e = create(json!({"definitions": [{"type": "ping", "target": "192.0.2.1"}],
                              "probes": [{"type": "country", "value": "Netherlands", "requested": 1}]}))
        .expect_err("bad country");
        assert!(e.detail.starts_with("probes[0].value:"), "{}", e.detail);

        let e =
            create(json!({"definitions": [{"type": "ping", "target": "192.0.2.1"}], "probes": []}))
                .expect_err("no probes");
        assert!(e.detail.starts_with("probes:"), "{}", e.detail);

        let e = create(
            json!({"definitions": [{"type": "ping", "target": "192.0.2.1"}],
                              "probes": [{"type": "area", "value": "WW", "requested": 1}],
                              "start_time": 1_800_000_100, "stop_time": "2027-01-01T00:00:00Z"}),
        )
        .expect_err("stop before start");
        assert!(e.detail.starts_with("stop_time:"), "{}", e.detail);
        let ok = create(
            json!({"definitions": [{"type": "ping", "target": "192.0.2.1"}],
                               "probes": [{"type": "area", "value": "WW", "requested": 1}],
                               "start_time": "2030-01-01T00:00:00"}),
        )
        .expect("ISO start");
        assert_eq!(ok[0].start_time, Some(1_893_456_000));
    }
}
