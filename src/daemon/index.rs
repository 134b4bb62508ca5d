//! The in-memory index of AlertReactions by alert name, kept by the controller
//! from its watch and read by the webhook: no API call per alert.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::core::plan::Reactions;
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
    by_alert: HashMap<String, Vec<Arc<CompiledReaction>>>,
}

/// Reactions by key and, for the Ready ones, by `alertName`.
#[derive(Default)]
pub struct ReactionIndex {
    inner: RwLock<Inner>,
}

impl Reactions for ReactionIndex {
    fn for_alert(&self, alert_name: &str) -> Vec<Arc<CompiledReaction>> {
        self.read(|inner| inner.by_alert.get(alert_name).cloned().unwrap_or_default())
    }
}

impl ReactionIndex {
    pub fn get(&self, key: &ObjectKey) -> Option<Entry> {
        self.read(|inner| inner.by_key.get(key).cloned())
    }

    /// Inserts or replaces one reaction.
    pub fn upsert(&self, key: ObjectKey, entry: Entry) {
        self.write(|inner| {
            inner.remove(&key);
            inner.insert(key, entry);
        });
    }

    pub fn remove(&self, key: &ObjectKey) {
        self.write(|inner| inner.remove(key));
    }

    /// Replaces the whole content (after a full list).
    pub fn replace_all(&self, entries: Vec<(ObjectKey, Entry)>) {
        self.write(|inner| {
            *inner = Inner::default();
            for (key, entry) in entries {
                inner.insert(key, entry);
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
    fn insert(&mut self, key: ObjectKey, entry: Entry) {
        if let Entry::Ready(r) = &entry {
            self.by_alert
                .entry(r.spec.alert_name.clone())
                .or_default()
                .push(r.clone());
        }
        self.by_key.insert(key, entry);
    }

    fn remove(&mut self, key: &ObjectKey) {
        if let Some(Entry::Ready(old)) = self.by_key.remove(key) {
            if let Some(list) = self.by_alert.get_mut(&old.spec.alert_name) {
                list.retain(|r| !(r.namespace == key.0 && r.name == key.1));
                if list.is_empty() {
                    self.by_alert.remove(&old.spec.alert_name);
                }
            }
        }
    }
}
