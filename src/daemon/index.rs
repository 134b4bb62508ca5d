//! The in-memory index of AlertReactions by alert name, kept by the controller
//! from its watch and read by the webhook: no API call per alert.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::core::plan::{ReactionGroup, Reactions};
use crate::core::reaction::{CompiledReaction, Invalid, InvalidReason};
use crate::model::crd::AlertReaction;

/// Namespace and name of an AlertReaction.
pub type ObjectKey = (String, String);

/// What the index holds for one AlertReaction.
#[derive(Debug, Clone)]
pub enum Entry {
    Ready(Arc<CompiledReaction>),
    Invalid {
        uid: String,
        generation: i64,
        error: Invalid,
        /// The resource as read, to validate again after a configuration change
        /// (absent when it could not be read at all).
        object: Option<Arc<AlertReaction>>,
    },
}

impl Entry {
    pub fn generation(&self) -> i64 {
        match self {
            Entry::Ready(r) => r.generation,
            Entry::Invalid { generation, .. } => *generation,
        }
    }

    /// Valid, but stopped by its failure budget.
    pub fn stopped(&self) -> bool {
        matches!(self, Entry::Invalid { error, .. } if error.reason == InvalidReason::FailureBudgetExhausted)
    }

    pub fn uid(&self) -> &str {
        match self {
            Entry::Ready(r) => &r.uid,
            Entry::Invalid { uid, .. } => uid,
        }
    }
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<ObjectKey, Entry>,
    /// The Ready reactions by `alertName`, in the order they came.
    lists: HashMap<String, Vec<Arc<CompiledReaction>>>,
    /// `lists` compiled, rebuilt for an alert name whenever its list changes.
    by_alert: HashMap<String, Arc<ReactionGroup>>,
}

/// Reactions by key and, for the Ready ones, by `alertName`.
#[derive(Default)]
pub struct ReactionIndex {
    inner: RwLock<Inner>,
}

impl Reactions for ReactionIndex {
    fn for_alert(&self, alert_name: &str) -> Option<Arc<ReactionGroup>> {
        self.read(|inner| inner.by_alert.get(alert_name).cloned())
    }
}

impl ReactionIndex {
    pub fn get(&self, key: &ObjectKey) -> Option<Entry> {
        self.read(|inner| inner.by_key.get(key).cloned())
    }

    /// Inserts or replaces one reaction.
    pub fn upsert(&self, key: ObjectKey, entry: Entry) {
        self.write(|inner| {
            let old = inner.remove(&key);
            let new = inner.insert(key, entry);
            if let Some(old) = old.as_deref().filter(|o| new.as_deref() != Some(*o)) {
                inner.rebuild(old);
            }
            if let Some(new) = new {
                inner.rebuild(&new);
            }
        });
    }

    pub fn remove(&self, key: &ObjectKey) {
        self.write(|inner| {
            if let Some(name) = inner.remove(key) {
                inner.rebuild(&name);
            }
        });
    }

    /// Replaces the whole content (after a full list).
    pub fn replace_all(&self, entries: Vec<(ObjectKey, Entry)>) {
        self.write(|inner| {
            *inner = Inner::default();
            for (key, entry) in entries {
                inner.insert(key, entry);
            }
            let names: Vec<String> = inner.lists.keys().cloned().collect();
            for name in names {
                inner.rebuild(&name);
            }
        });
    }

    /// Every entry, for recompiling after a configuration change.
    /// How many reactions are stopped by their failure budget.
    pub fn stopped(&self) -> usize {
        self.read(|inner| inner.by_key.values().filter(|e| e.stopped()).count())
    }

    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read(|inner| inner.by_key.keys().cloned().collect())
    }

    /// (Ready, not Ready) counts.
    pub fn counts(&self) -> (usize, usize) {
        self.read(|inner| {
            let ready = inner
                .by_key
                .values()
                .filter(|e| matches!(e, Entry::Ready(_)))
                .count();
            (ready, inner.by_key.len() - ready)
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        match self.inner.read() {
            Ok(inner) => f(&inner),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.inner.write() {
            Ok(mut inner) => f(&mut inner),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl Inner {
    /// Inserts `entry`; the alert name whose group must be rebuilt, if any.
    fn insert(&mut self, key: ObjectKey, entry: Entry) -> Option<String> {
        let name = match &entry {
            Entry::Ready(r) => {
                self.lists
                    .entry(r.spec.alert_name.clone())
                    .or_default()
                    .push(r.clone());
                Some(r.spec.alert_name.clone())
            }
            Entry::Invalid { .. } => None,
        };
        self.by_key.insert(key, entry);
        name
    }

    /// Removes `key`; the alert name whose group must be rebuilt, if any.
    fn remove(&mut self, key: &ObjectKey) -> Option<String> {
        let Some(Entry::Ready(old)) = self.by_key.remove(key) else {
            return None;
        };
        if let Some(list) = self.lists.get_mut(&old.spec.alert_name) {
            list.retain(|r| !(r.namespace == key.0 && r.name == key.1));
            if list.is_empty() {
                self.lists.remove(&old.spec.alert_name);
            }
        }
        Some(old.spec.alert_name.clone())
    }

    /// Compiles the group of `alert_name` again from its list.
    fn rebuild(&mut self, alert_name: &str) {
        match self.lists.get(alert_name) {
            Some(list) => {
                let group = Arc::new(ReactionGroup::new(list.clone()));
                self.by_alert.insert(alert_name.to_owned(), group);
            }
            None => {
                self.by_alert.remove(alert_name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::reaction;
    use crate::core::render::Renderer;
    use crate::model::alert::Alert;
    use crate::model::config::Policy;

    fn ready(name: &str, alert_name: &str, team: &str) -> (ObjectKey, Entry) {
        let spec = serde_json::json!({
            "alertName": alert_name,
            "matchers": [{"name": "team", "operator": "=", "value": team}],
            "actions": [{"name": "echo", "image": "busybox", "command": ["echo"]}],
        });
        let mut ar = AlertReaction::new(name, serde_json::from_value(spec).expect("spec"));
        ar.metadata.namespace = Some("default".into());
        ar.metadata.uid = Some(format!("uid-{name}"));
        let r = reaction::compile(&ar, &Renderer::new(), &Policy::default()).expect("compiles");
        (("default".into(), name.into()), Entry::Ready(Arc::new(r)))
    }

    /// Names of the reactions for `alert_name` and which of them match team `team`.
    fn decide(index: &ReactionIndex, alert_name: &str, team: &str) -> Vec<(String, bool)> {
        let alert = Alert {
            labels: [("team".to_string(), team.to_string())].into(),
            ..Alert::default()
        };
        let mut evaluation = Default::default();
        index
            .for_alert(alert_name)
            .map(|g| {
                g.evaluate(&alert, &mut evaluation)
                    .map(|(r, failing)| (r.name.clone(), failing.is_none()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_match_table_follows_every_change() {
        let index = ReactionIndex::default();
        index.replace_all(vec![
            ready("a", "Disk", "x"),
            ready("b", "Disk", "y"),
            ready("c", "Cpu", "x"),
        ]);
        let pair = |n: &str, m: bool| (n.to_string(), m);
        assert_eq!(
            decide(&index, "Disk", "x"),
            [pair("a", true), pair("b", false)]
        );
        assert_eq!(decide(&index, "Cpu", "x"), [pair("c", true)]);

        // A new matcher for a reaction already there.
        let (key, entry) = ready("b", "Disk", "x");
        index.upsert(key, entry);
        assert_eq!(
            decide(&index, "Disk", "x"),
            [pair("a", true), pair("b", true)]
        );

        // Moved to another alert name.
        let (key, entry) = ready("a", "Cpu", "z");
        index.upsert(key, entry);
        assert_eq!(decide(&index, "Disk", "x"), [pair("b", true)]);
        assert_eq!(
            decide(&index, "Cpu", "z"),
            [pair("c", false), pair("a", true)]
        );

        index.remove(&("default".into(), "b".into()));
        assert!(index.for_alert("Disk").is_none());
        index.remove(&("default".into(), "c".into()));
        assert_eq!(decide(&index, "Cpu", "x"), [pair("a", false)]);
    }
}
