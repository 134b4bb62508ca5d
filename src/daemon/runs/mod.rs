//! Following Runs to their outcome. Every replica accepts webhooks and creates
//! Runs; the one replica that holds the Lease (`leader`) does the rest:
//!
//! - `runner` reconciles each Run: decides its gates (`gatekeeper`), creates its
//!   Jobs (owned by the Run, retried while the API server refuses for a passing
//!   reason), follows them to completion, and records the outcome on the Run,
//!   the reaction's status, Events and metrics;
//! - `retention` deletes finished Runs once their occurrence is no longer
//!   delivered, resolved, or beyond the history limit.
//!
//! All state is in the API server: a new leader carries on where the last one
//! stopped, and a crash between a Run and its Jobs loses nothing.

pub mod approval;
pub mod closing;
pub mod ctx;
pub mod gatekeeper;
pub mod leader;
pub mod retention;
pub mod runner;
