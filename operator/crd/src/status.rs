//! Status writes by server-side apply, as controller-rs writes them: the field manager
//! sends the whole status it owns, so a field it stops sending is removed.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why a status was not written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot encode the status of {kind} {name}: {source}")]
    Encode {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot apply the status of {kind} {name} (server-side apply): {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The apply patch that sets `status` on a `K` (pure): `apiVersion`, `kind` and `status`.
pub fn status_patch<K, S>(status: &S) -> Result<Value, serde_json::Error>
where
    K: Resource<DynamicType = ()>,
    S: Serialize,
{
    Ok(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": serde_json::to_value(status)?,
    }))
}

/// Write `status` on the `K` named `name` by server-side apply as `manager`, forcing
/// ownership of the fields it sends (`PatchParams::apply(manager).force()`).
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<K, StatusError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let patch = status_patch::<K, S>(status).map_err(|source| StatusError::Encode {
        kind: K::kind(&()).into_owned(),
        name: name.to_owned(),
        source,
    })?;
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| StatusError::Apply {
        kind: K::kind(&()).into_owned(),
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MeasurementStatus, Probe, ProbeStatus};

    #[test]
    fn the_patch_names_the_type_and_carries_only_set_fields() {
        let status = ProbeStatus {
            connected: true,
            ..Default::default()
        };
        let patch = status_patch::<Probe, _>(&status).expect("patch");
        assert_eq!(patch["apiVersion"], "vantage.dev/v1alpha1");
        assert_eq!(patch["kind"], "Probe");
        assert_eq!(patch["status"]["connected"], true);
        assert_eq!(
            patch.as_object().map(|o| o.len()),
            Some(3),
            "no metadata or spec: {patch}"
        );
        let msm =
            status_patch::<crate::Measurement, _>(&MeasurementStatus::default()).expect("patch");
        assert!(
            msm["status"].get("limitedBy").is_none(),
            "an unset field is left out, so server-side apply removes it: {msm}"
        );
    }
}
