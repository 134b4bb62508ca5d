//! The daemon: executes plans against the API server and records outcomes.
//!
//! - `controller` watches AlertReactions and keeps the `index` of compiled ones;
//! - `executor` plans each notification with the core and carries the plan out
//!   (`gate` checks cooldown and Forbid against the Jobs, `limits` the budget);
//! - `status` is the one writer of the AlertReaction status, `events` the one
//!   publisher of Events;
//! - `reload` owns the configuration and publishes each new snapshot;
//! - `metrics`, `telemetry` and `readiness` are what the others report through.
//!
//! Each background task holds the narrow handles it needs, never the whole.

pub mod controller;
pub mod events;
pub mod executor;
pub mod gate;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod readiness;
pub mod reload;
pub mod status;
pub mod telemetry;
