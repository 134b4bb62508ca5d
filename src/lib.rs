//! Karo, the Kubernetes Alert Reaction Operator: Alertmanager webhook
//! notifications in, Kubernetes Jobs out.
//!
//! The pure core (`alert`, `matching`, `render`, `reaction`, `jobs`) needs no
//! cluster; `controller`, `reactor` and `webhook` talk to the API server and
//! to Alertmanager.

pub mod alert;
pub mod auth;
pub mod cli;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
pub mod events;
pub mod index;
pub mod jobs;
pub mod limits;
pub mod matching;
pub mod metrics;
pub mod offline;
pub mod reaction;
pub mod reactor;
pub mod reload;
pub mod render;
pub mod run;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod webhook;
