//! The model: what Karo reads and is configured by. The `AlertReaction` custom
//! resource, the Alertmanager notification, Karo's configuration, and the field
//! error they share. Nothing here decides or talks to a cluster.

pub mod alert;
pub mod config;
pub mod crd;
pub mod error;
