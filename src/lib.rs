//! Karo, the Kubernetes Alert Reaction Operator: Alertmanager webhook
//! notifications in, Kubernetes Jobs out.

pub mod cli;
pub mod crd;
