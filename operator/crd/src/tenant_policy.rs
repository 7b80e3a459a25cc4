use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The limits of one tenant namespace (the RIPE Atlas credit and quota rules, as
/// numbers). Platform admins create it; tenants may read it. An absent limit is no
/// limit; with several policies in a namespace, the strictest value of each limit holds.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "TenantPolicy",
    namespaced,
    status = "TenantPolicyStatus",
    shortname = "tpol",
    category = "vantage",
    printcolumn(
        name = "Measurements",
        type_ = "integer",
        json_path = ".status.usage.measurements"
    ),
    printcolumn(
        name = "MaxMeasurements",
        type_ = "integer",
        json_path = ".spec.max_concurrent_measurements"
    ),
    printcolumn(
        name = "ResultsPerDay",
        type_ = "integer",
        json_path = ".status.usage.resultsPerDay"
    ),
    printcolumn(
        name = "MaxResultsPerDay",
        type_ = "integer",
        json_path = ".spec.max_results_per_day"
    ),
    printcolumn(
        name = "Limited",
        type_ = "integer",
        json_path = ".status.usage.limited"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct TenantPolicySpec {
    /// Measurements that may be Scheduled, Ongoing or waiting for probes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_measurements: Option<u32>,
    /// Probes one measurement may request (the sum of its sources' `requested`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1")
        .message("max_probes_per_measurement must be at least 1; to stop a tenant, set max_concurrent_measurements: 0"))]
    pub max_probes_per_measurement: Option<u32>,
    /// Shortest `interval` (seconds) of a periodic measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<u32>,
    /// Results the namespace's measurements may produce per day, estimated as probes ×
    /// runs per day (RIPE Atlas credits, counted in results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results_per_day: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicyStatus {
    /// What the namespace uses now.
    #[serde(default)]
    pub usage: TenantUsage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A namespace's use of its limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Admitted measurements (Scheduled, Ongoing or NoSuitableProbes).
    #[serde(default)]
    pub measurements: u32,
    /// Probes requested by the admitted measurements.
    #[serde(default)]
    pub probes: u64,
    /// Results per day of the admitted measurements: for each, the larger of the
    /// estimate (probes × runs per day) and the rate measured from stored results.
    #[serde(default)]
    pub results_per_day: u64,
    /// Results stored for the namespace's measurements.
    #[serde(default)]
    pub results_stored: u64,
    /// Measurements refused by a limit (state Limited).
    #[serde(default)]
    pub limited: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn every_kind_has_a_short_name_and_printer_columns() {
        for crd in crate::all_crds() {
            let kind = &crd.spec.names.kind;
            assert!(
                crd.spec
                    .names
                    .short_names
                    .as_ref()
                    .is_some_and(|s| !s.is_empty()),
                "{kind} has no short name"
            );
            let columns = crd.spec.versions[0]
                .additional_printer_columns
                .as_ref()
                .map_or(0, Vec::len);
            assert!(columns >= 2, "{kind} has {columns} printer columns");
            assert!(
                crd.spec
                    .names
                    .categories
                    .as_ref()
                    .is_some_and(|c| c.contains(&"vantage".to_owned())),
                "{kind} is not in `kubectl get vantage`"
            );
        }
    }

    #[test]
    fn tenant_policy_reads_snake_case_and_validates_probe_limit() {
        let p: TenantPolicySpec = serde_yaml::from_str(
            "{max_concurrent_measurements: 2, max_probes_per_measurement: 10, min_interval: 300, max_results_per_day: 10000}",
        )
        .expect("spec");
        assert_eq!(p.max_concurrent_measurements, Some(2));
        assert_eq!(p.max_results_per_day, Some(10_000));
        let crd = serde_json::to_value(TenantPolicy::crd()).expect("crd");
        let field = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["max_probes_per_measurement"];
        assert_eq!(field["x-kubernetes-validations"][0]["rule"], "self >= 1");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }
}
