//! The model: what Karo reads, records and is configured by. The `AlertReaction`
//! and `AlertReactionRun` custom resources, the Alertmanager notification,
//! Karo's configuration, durations, and the field error they share. Nothing here
//! decides or talks to a cluster.

pub mod alert;
pub mod config;
pub mod crd;
pub mod duration;
pub mod error;
pub mod run;
pub mod yaml;
