//! Field checks shared by every measurement type: numeric ranges, ports, enumerations
//! and host names, each failing with an [`InvalidField`] that names the field.

use std::net::IpAddr;

use super::InvalidField;

pub(super) fn one_of(
    field: &str,
    value: Option<&str>,
    default: &str,
    allowed: &[&str],
) -> Result<String, InvalidField> {
    let v = value.map(str::trim).unwrap_or(default).to_ascii_uppercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(InvalidField::new(
            format!("spec.{field}"),
            format!("unknown {field} {v:?}; use one of {}", allowed.join(", ")),
        ))
    }
}

pub(super) fn ranged(
    field: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<u32, InvalidField> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(InvalidField::new(
            format!("spec.{field}"),
            format!("{v} is out of range; use a value from {min} to {max} (default {default})"),
        ));
    }
    u32::try_from(v)
        .map_err(|_| InvalidField::new(format!("spec.{field}"), format!("{v} does not fit")))
}

pub(super) fn port(field: &str, value: Option<i64>, default: u16) -> Result<u16, InvalidField> {
    let v = ranged(field, value, i64::from(default), 1, 65_535)?;
    u16::try_from(v)
        .map_err(|_| InvalidField::new(format!("spec.{field}"), format!("{v} does not fit")))
}

/// Is `s` a plausible host: an IP address, or a DNS name of valid labels.
pub fn is_host(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        // A name of only digits and dots is a malformed address, not a host name.
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}
