//! The daemon: executes plans against the API server and records outcomes.
//!
//! - `controller` watches AlertReactions and keeps the `index` of compiled ones;
//! - `executor` plans each notification with the core and creates a Run per
//!   matched occurrence (the webhook's durable hand-off);
//! - `runs` follows the Runs while this replica holds the Lease: gates
//!   (cooldown, Forbid, `limits`' Job budget), Jobs, outcome, retention;
//! - `status` is the one writer of the AlertReaction status, `events` the one
//!   publisher of Events;
//! - `reload` owns the configuration and publishes each new snapshot;
//! - `alertmanager` is the client of Alertmanager's API (silences, alerts);
//! - `metrics`, `telemetry` and `readiness` are what the others report through.
//!
//! Each background task holds the narrow handles it needs, never the whole.

pub mod alertmanager;
pub mod controller;
pub mod events;
pub mod executor;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod readiness;
pub mod reload;
pub mod runs;
pub mod status;
pub mod telemetry;
