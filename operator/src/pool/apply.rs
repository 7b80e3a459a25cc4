//! What the ControllerPool reconciler changes in the cluster: server-side apply of the
//! rendered workloads, deletion of the per-pod Services of removed ordinals, and of the
//! registration objects once `spec.registration.enabled` is false. Objects are found by the
//! labels [`super::render`] puts on them.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::render::{
    self, Names, COMPONENT_LABEL, PER_POD_LABEL, POOL_LABEL, REGISTRATION_COMPONENT,
};
use super::PoolError;
use crate::FIELD_MANAGER;

/// Server-side apply of every rendered object, forcing ownership of its fields.
pub async fn apply(
    client: &Client,
    ns: &str,
    rendered: &render::Rendered,
) -> Result<(), PoolError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for obj in rendered.objects() {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let result = match obj["kind"].as_str() {
            Some("StatefulSet") => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ()),
            Some("Deployment") => Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ()),
            _ => Api::<Service>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ()),
        };
        result.map_err(PoolError::Kube)?;
    }
    Ok(())
}

/// Delete the per-pod Services of ordinals at or above `replicas`.
pub async fn prune_per_pod(
    client: &Client,
    ns: &str,
    names: &Names,
    pool: &str,
    replicas: u32,
) -> Result<(), PoolError> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{POOL_LABEL}={pool},{PER_POD_LABEL}=true"));
    let list = api.list(&lp).await.map_err(PoolError::Kube)?;
    for svc in list {
        let n = svc.name_any();
        if names.ordinal(&n).is_some_and(|i| i >= replicas) && delete(&api, &n).await? {
            tracing::info!(service = %n, "deleted the Service of a removed controller");
        }
    }
    Ok(())
}

/// The label selector of the registration objects of `pool`.
pub fn registration_selector(pool: &str) -> String {
    format!("{POOL_LABEL}={pool},{COMPONENT_LABEL}={REGISTRATION_COMPONENT}")
}

/// Delete the registration objects of `pool` (its Deployment and Services, found by
/// label), left over from when `spec.registration.enabled` was true. Returns how many went.
pub async fn sweep_registration(client: &Client, ns: &str, pool: &str) -> Result<usize, PoolError> {
    let lp = ListParams::default().labels(&registration_selector(pool));
    let deployments = sweep::<Deployment>(&Api::namespaced(client.clone(), ns), &lp, pool).await?;
    let services = sweep::<Service>(&Api::namespaced(client.clone(), ns), &lp, pool).await?;
    Ok(deployments + services)
}

async fn sweep<K>(api: &Api<K>, lp: &ListParams, pool: &str) -> Result<usize, PoolError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut deleted = 0;
    for obj in api.list(lp).await.map_err(PoolError::Kube)? {
        let n = obj.name_any();
        if delete(api, &n).await? {
            deleted += 1;
            tracing::info!(pool, kind = %K::kind(&()), name = %n, "deleted a registration object: spec.registration.enabled is false");
        }
    }
    Ok(deleted)
}

/// Delete `name`; false if it was already gone.
async fn delete<K>(api: &Api<K>, name: &str) -> Result<bool, PoolError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(PoolError::Kube(e)),
    }
}
