//! NATS routing: which subjects each vantage role may publish and subscribe to, derived
//! from the NATS map in `vantage_core::nats`, rendered as a NATS server
//! `authorization { users = [...] }` block.
//!
//! Every role gets exactly what its code does:
//!
//! | role | publishes | subscribes | JetStream API |
//! |---|---|---|---|
//! | operator | `$KV.vantage-schedules.>`, `$KV.vantage-meta.msm-seq`, `$KV.vantage-meta.drain.>` | its inbox | declares `RESULTS`, the KV buckets and the `collector` consumer; watches `vantage-sessions` |
//! | registration | `$KV.vantage-assignments.>`, `$KV.vantage-meta.firmware` | `vantage.heartbeat.*`, its inbox | reads those keys |
//! | controller | `vantage.results.>`, `vantage.heartbeat.*`, `$KV.vantage-sessions.>` | its inbox | watches assignments, schedules, `meta/firmware`, `meta/drain.*` |
//! | collector | acks of `RESULTS/collector` | its inbox | pulls from (and may update) the `collector` consumer |
//! | engines | requests on `vantage.engines.>` | its inbox | none |
//! | api | — | `vantage.results.>` (live results), its inbox | watches `vantage-sessions` (`probestatus` streams) |
//!
//! Replies go to per-role inboxes `_INBOX.<role>.>` (see
//! `vantage_platform::bus::inbox_prefix`), so no role can read another's replies.

use std::fmt::Write as _;

use vantage_core::nats as names;

/// Subjects external geolocation engines answer on (`GeolocationEngine.nats_subject`
/// must be under it for the engines role to reach it).
pub const ENGINE_SUBJECTS: &str = "vantage.engines.>";

/// A vantage component that connects to NATS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Operator,
    Registration,
    Controller,
    Collector,
    Engines,
    Api,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Operator,
        Role::Registration,
        Role::Controller,
        Role::Collector,
        Role::Engines,
        Role::Api,
    ];

    /// The role's name: its NATS user and (with `vantage-`) its connection name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Registration => "registration",
            Role::Controller => "controller",
            Role::Collector => "collector",
            Role::Engines => "engines",
            Role::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Allowed subjects of one role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

const API: &str = "$JS.API";

fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

impl Permissions {
    fn publish(&mut self, s: impl Into<String>) {
        let s = s.into();
        if !self.publish.contains(&s) {
            self.publish.push(s);
        }
    }
    fn subscribe(&mut self, s: impl Into<String>) {
        let s = s.into();
        if !self.subscribe.contains(&s) {
            self.subscribe.push(s);
        }
    }

    /// Bind to an existing stream (`get_stream`, `get_key_value`).
    fn stream_info(&mut self, stream: &str) {
        self.publish(format!("{API}.STREAM.INFO.{stream}"));
    }

    /// Create or update a stream (the operator owns the layout).
    fn stream_admin(&mut self, stream: &str) {
        self.stream_info(stream);
        self.publish(format!("{API}.STREAM.CREATE.{stream}"));
        self.publish(format!("{API}.STREAM.UPDATE.{stream}"));
    }

    /// Read keys matching `key` (a NATS filter) with direct gets.
    fn kv_read(&mut self, bucket: &str, key: &str) {
        let stream = kv_stream(bucket);
        self.stream_info(&stream);
        self.publish(format!("{API}.DIRECT.GET.{stream}.$KV.{bucket}.{key}"));
    }

    /// Watch keys: an ordered push consumer on the bucket's stream, delivered to the
    /// role's inbox, with flow control replies.
    fn kv_watch(&mut self, bucket: &str, key: &str) {
        let stream = kv_stream(bucket);
        self.kv_read(bucket, key);
        self.publish(format!("{API}.CONSUMER.CREATE.{stream}"));
        self.publish(format!("{API}.CONSUMER.CREATE.{stream}.>"));
        self.publish(format!("{API}.CONSUMER.DELETE.{stream}.*"));
        self.publish(format!("$JS.FC.{stream}.>"));
    }

    /// Put, create, update and delete keys matching `key`.
    fn kv_write(&mut self, bucket: &str, key: &str) {
        self.kv_read(bucket, key);
        self.publish(format!("$KV.{bucket}.{key}"));
    }

    fn inbox(&mut self, role: Role) {
        self.subscribe(format!("_INBOX.{}.>", role.name()));
    }
}

/// The permissions of `role`, derived from the NATS map.
pub fn permissions(role: Role) -> Permissions {
    let mut p = Permissions::default();
    p.inbox(role);
    let results = names::RESULTS_STREAM;
    let durable = names::COLLECTOR_DURABLE;
    match role {
        Role::Operator => {
            p.publish(format!("{API}.INFO"));
            p.stream_admin(results);
            for bucket in [
                names::SCHEDULES_BUCKET,
                names::ASSIGNMENTS_BUCKET,
                names::SESSIONS_BUCKET,
                names::META_BUCKET,
            ] {
                p.stream_admin(&kv_stream(bucket));
            }
            // The collector's durable consumer is part of the layout the operator owns.
            p.publish(format!("{API}.CONSUMER.CREATE.{results}.{durable}"));
            p.publish(format!("{API}.CONSUMER.CREATE.{results}.{durable}.>"));
            p.publish(format!("{API}.CONSUMER.DURABLE.CREATE.{results}.{durable}"));
            p.publish(format!("{API}.CONSUMER.INFO.{results}.{durable}"));
            p.kv_write(names::SCHEDULES_BUCKET, ">");
            p.kv_write(names::META_BUCKET, names::MSM_SEQ_KEY);
            p.kv_write(names::META_BUCKET, &format!("{}>", names::DRAIN_KEY_PREFIX));
            p.kv_watch(names::SESSIONS_BUCKET, ">");
        }
        Role::Registration => {
            p.kv_write(names::ASSIGNMENTS_BUCKET, ">");
            p.kv_write(names::META_BUCKET, names::FIRMWARE_KEY);
            p.subscribe(names::HEARTBEAT_WILDCARD);
            // Bus::attach binds to every stream of the layout.
            bind_all(&mut p);
        }
        Role::Controller => {
            p.stream_info(results);
            p.publish(names::RESULTS_SUBJECTS);
            p.publish(names::HEARTBEAT_WILDCARD);
            p.kv_write(names::SESSIONS_BUCKET, ">");
            p.kv_watch(names::ASSIGNMENTS_BUCKET, ">");
            p.kv_watch(names::SCHEDULES_BUCKET, ">");
            p.kv_watch(names::META_BUCKET, names::FIRMWARE_KEY);
            p.kv_watch(names::META_BUCKET, &format!("{}*", names::DRAIN_KEY_PREFIX));
            bind_all(&mut p);
        }
        Role::Collector => {
            p.stream_info(results);
            p.publish(format!("{API}.CONSUMER.INFO.{results}.{durable}"));
            p.publish(format!("{API}.CONSUMER.MSG.NEXT.{results}.{durable}"));
            p.publish(format!("$JS.ACK.{results}.{durable}.>"));
            // The operator declares the consumer; the collector may tune its own (ack
            // wait, pending acks) and no other.
            p.publish(format!("{API}.CONSUMER.CREATE.{results}.{durable}"));
            p.publish(format!("{API}.CONSUMER.CREATE.{results}.{durable}.>"));
            bind_all(&mut p);
        }
        Role::Engines => {
            p.publish(ENGINE_SUBJECTS);
        }
        Role::Api => {
            p.subscribe(names::RESULTS_SUBJECTS);
            // The streaming API's `probestatus` events: connects and disconnects.
            p.kv_watch(names::SESSIONS_BUCKET, ">");
        }
    }
    p
}

/// `Bus::attach` looks up the results stream and every bucket.
fn bind_all(p: &mut Permissions) {
    p.stream_info(names::RESULTS_STREAM);
    for bucket in [
        names::SCHEDULES_BUCKET,
        names::ASSIGNMENTS_BUCKET,
        names::SESSIONS_BUCKET,
        names::META_BUCKET,
    ] {
        p.stream_info(&kv_stream(bucket));
    }
}

/// One NATS user: a role and how its password is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub role: Role,
    pub name: String,
    /// The password as it goes into the config: a literal, or `$VAR` for an environment
    /// variable of the NATS server (which keeps secrets out of the ConfigMap).
    pub password: String,
}

fn quote(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Render `authorization { users = [...] }` for a NATS server config. Passwords that
/// start with `$` are left unquoted, so the server reads them from its environment.
pub fn render_authorization(users: &[User]) -> String {
    let mut out = String::from(
        "# Generated by `vantage nats-auth` from the NATS map (vantage_core::nats).\nauthorization {\n  users = [\n",
    );
    for u in users {
        let p = permissions(u.role);
        let password = if u.password.starts_with('$') {
            u.password.clone()
        } else {
            quote(&u.password)
        };
        // An empty allow list would allow everything: a role that publishes nothing is
        // denied every subject instead.
        let rule = |subjects: &[String]| {
            if subjects.is_empty() {
                "deny: [\">\"]".to_owned()
            } else {
                format!("allow: [{}]", list(subjects))
            }
        };
        let _ = write!(
            out,
            "    # role {}\n    {{\n      user: {}\n      password: {}\n      permissions: {{\n        publish: {{ {} }}\n        subscribe: {{ {} }}\n        allow_responses: false\n      }}\n    }}\n",
            u.role.name(),
            quote(&u.name),
            password,
            rule(&p.publish),
            rule(&p.subscribe),
        );
    }
    out.push_str("  ]\n}\n");
    out
}

/// The users of every role, named after it, with passwords from `$VANTAGE_NATS_<ROLE>`.
pub fn default_users() -> Vec<User> {
    Role::ALL
        .into_iter()
        .map(|role| User {
            role,
            name: format!("vantage-{}", role.name()),
            password: format!("$VANTAGE_NATS_{}", role.name().to_uppercase()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_operator_writes_schedules_and_declares_streams() {
        for role in Role::ALL {
            let p = permissions(role);
            let writes_schedules = p
                .publish
                .iter()
                .any(|s| s.starts_with("$KV.vantage-schedules"));
            assert_eq!(writes_schedules, role == Role::Operator, "{role:?}");
            let declares = p.publish.iter().any(|s| s.contains(".STREAM.CREATE."));
            assert_eq!(declares, role == Role::Operator, "{role:?}");
            assert!(
                !p.publish.iter().any(|s| s == ">" || s == "$JS.API.>"),
                "{role:?} has a blanket permission"
            );
            assert_eq!(p.subscribe[0], format!("_INBOX.{}.>", role.name()));
        }
        let c = permissions(Role::Controller);
        assert!(c.publish.contains(&"vantage.results.>".to_owned()));
        assert!(!permissions(Role::Collector)
            .publish
            .iter()
            .any(|s| s.starts_with("vantage.")));
    }

    #[test]
    fn config_reads_passwords_from_the_environment() {
        let cfg = render_authorization(&default_users());
        assert!(cfg.contains("password: $VANTAGE_NATS_CONTROLLER\n"));
        assert!(cfg.contains("user: \"vantage-collector\""));
        assert_eq!(cfg.matches("user:").count(), 6);
    }
}
