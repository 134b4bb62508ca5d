//! Karo, the Kubernetes Alert Reaction Operator: Alertmanager webhook
//! notifications in, Kubernetes Jobs out.
//!
//! The folders are the pipeline, and data flows one way through them:
//!
//! - `model`: what Karo reads (the AlertReaction CRD, the notification, the
//!   configuration);
//! - `core`: what Karo decides, pure (compile, match, render, plan);
//! - `daemon`: executing plans against the API server and recording outcomes;
//! - `http`: the edge that feeds notifications to the daemon;
//! - `operator`: `karo run`, wiring the daemon and the edge;
//! - `cli`: the command line and the offline commands (`render`, `validate`).
//!
//! ARCHITECTURE.md has the picture.

pub mod cli;
pub mod core;
pub mod daemon;
pub mod http;
pub mod model;
pub mod operator;
