//! Kubernetes Events about any vantage resource: one [`Event`] is pure data, [`Events`]
//! publishes it to the API (events.k8s.io), to memory (tests and benchmarks), or nowhere.

use std::sync::{Arc, Mutex};

use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};

use crate::FIELD_MANAGER;

/// One Event about an object (pure data; [`Events`] publishes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    /// `Ongoing`, `Limited`, `ScalingUp`, `DrainStarted`, ...
    pub reason: String,
    pub note: String,
}

impl Event {
    pub fn new(warning: bool, reason: impl Into<String>, note: impl Into<String>) -> Self {
        Self {
            warning,
            reason: reason.into(),
            note: note.into(),
        }
    }
}

/// One Event as [`Events::Memory`] keeps it, with the object it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub namespace: String,
    pub name: String,
    pub event: Event,
}

/// Where Events go.
#[derive(Clone)]
pub enum Events {
    Kube(Recorder),
    Memory(Arc<Mutex<Vec<Emitted>>>),
    Off,
}

/// The API truncates longer notes; so do we, on a character boundary.
const MAX_NOTE_CHARS: usize = 1000;

impl Events {
    /// Events through the API, reported as [`FIELD_MANAGER`].
    pub fn kube(client: Client) -> Self {
        Self::Kube(Recorder::new(client, FIELD_MANAGER.into()))
    }

    /// Publish `events` about `obj`; a failure is logged, not fatal.
    pub async fn publish<K>(&self, obj: &K, events: &[Event])
    where
        K: Resource<DynamicType = ()>,
    {
        for e in events {
            match self {
                Self::Off => {}
                Self::Memory(list) => {
                    if let Ok(mut list) = list.lock() {
                        list.push(Emitted {
                            namespace: obj.namespace().unwrap_or_default(),
                            name: obj.name_any(),
                            event: e.clone(),
                        });
                    }
                }
                Self::Kube(recorder) => {
                    let event = KubeEvent {
                        type_: if e.warning {
                            EventType::Warning
                        } else {
                            EventType::Normal
                        },
                        reason: e.reason.clone(),
                        note: Some(e.note.chars().take(MAX_NOTE_CHARS).collect()),
                        action: "Reconcile".into(),
                        secondary: None,
                    };
                    if let Err(err) = recorder.publish(&event, &obj.object_ref(&())).await {
                        tracing::warn!(
                            kind = %K::kind(&()),
                            name = %obj.name_any(),
                            error = %err,
                            "cannot publish event"
                        );
                    }
                }
            }
        }
    }
}
