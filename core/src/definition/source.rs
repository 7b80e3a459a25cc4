//! Where probes come from: RIPE Atlas `probes[]` entries ([`ProbeSource`]) and their
//! validation into typed [`Source`]s.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::InvalidField;

/// Where probes come from (RIPE Atlas `probes[]` entry).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProbeSource {
    /// Source kind: area, country, asn, prefix, probes or msm.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value for the kind: an area name (WW, West, North-Central, South-Central,
    /// North-East, South-East), an ISO country code, an AS number, a prefix, a
    /// comma-separated list of probe ids, or a measurement id.
    pub value: String,
    /// How many probes to take from this source.
    pub requested: i64,
    /// Tag filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TagFilter>,
}

/// `tags: {include: [...], exclude: [...]}`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct TagFilter {
    /// A probe must carry every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// A probe must carry none of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// The default cluster maximum of `requested` for one probe source (the operator's
/// `--max-requested`): RIPE Atlas, too, caps the probes of one measurement at 1,000.
pub const DEFAULT_MAX_REQUESTED: u32 = 1000;

/// RIPE Atlas areas.
pub const AREAS: &[&str] = &[
    "WW",
    "West",
    "North-Central",
    "South-Central",
    "North-East",
    "South-East",
];

/// A typed, validated probe source.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    Area(String),
    Country(String),
    Asn(u32),
    Prefix(ipnet::IpNet),
    Probes(Vec<u32>),
    Msm(u64),
}

/// A validated probe source.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub kind: SourceKind,
    pub requested: u32,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl ProbeSource {
    /// Validate one `probes[]` entry; `index` is its position, for the message.
    pub fn validate(&self, index: usize) -> Result<Source, InvalidField> {
        let at = |f: &str| format!("spec.probes[{index}].{f}");
        let requested = u32::try_from(self.requested)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                InvalidField::new(
                    at("requested"),
                    format!("{} is not a positive count", self.requested),
                )
            })?;
        let value = self.value.trim();
        let kind = match self.kind.as_str() {
            "area" => {
                let area = AREAS
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(value))
                    .ok_or_else(|| InvalidField::new(at("value"), format!("unknown area {value:?}; use one of {}", AREAS.join(", "))))?;
                SourceKind::Area((*area).to_owned())
            }
            "country" => {
                if value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(InvalidField::new(at("value"), format!("{value:?} is not a two-letter ISO 3166 country code")));
                }
                SourceKind::Country(value.to_ascii_uppercase())
            }
            "asn" => SourceKind::Asn(
                value
                    .trim_start_matches("AS")
                    .parse()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not an AS number")))?,
            ),
            "prefix" => SourceKind::Prefix(
                value
                    .parse()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not a prefix such as 192.0.2.0/24")))?,
            ),
            "probes" => SourceKind::Probes(
                value
                    .split(',')
                    .map(|p| p.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not a comma-separated list of probe ids")))?,
            ),
            "msm" => SourceKind::Msm(
                value
                    .parse()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not a measurement id")))?,
            ),
            other => {
                return Err(InvalidField::new(
                    at("type"),
                    format!("unknown probe source type {other:?}; use area, country, asn, prefix, probes or msm"),
                ))
            }
        };
        let tags = self.tags.clone().unwrap_or_default();
        Ok(Source {
            kind,
            requested,
            include: tags.include,
            exclude: tags.exclude,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sources_validate() {
        let yaml = r#"
- {type: area, value: ww, requested: 5}
- {type: country, value: nl, requested: 2, tags: {include: [system-ipv4-works], exclude: [datacentre]}}
- {type: asn, value: "AS3333", requested: 1}
- {type: prefix, value: 193.0.0.0/21, requested: 1}
- {type: probes, value: "1001, 1002", requested: 2}
- {type: msm, value: "1000002", requested: 10}
"#;
        let sources: Vec<ProbeSource> = serde_yaml::from_str(yaml).expect("yaml");
        let v: Vec<Source> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.validate(i).expect("valid"))
            .collect();
        assert_eq!(v[0].kind, SourceKind::Area("WW".into()));
        assert_eq!(v[1].kind, SourceKind::Country("NL".into()));
        assert_eq!(v[1].include, vec!["system-ipv4-works".to_string()]);
        assert_eq!(v[2].kind, SourceKind::Asn(3333));
        assert_eq!(v[4].kind, SourceKind::Probes(vec![1001, 1002]));
        assert_eq!(v[5].kind, SourceKind::Msm(1_000_002));

        let bad = ProbeSource {
            kind: "city".into(),
            value: "x".into(),
            requested: 1,
            tags: None,
        };
        assert_eq!(
            bad.validate(3).expect_err("kind").field,
            "spec.probes[3].type"
        );
        let zero = ProbeSource {
            kind: "area".into(),
            value: "WW".into(),
            requested: 0,
            tags: None,
        };
        assert_eq!(
            zero.validate(0).expect_err("zero").field,
            "spec.probes[0].requested"
        );
    }
}
