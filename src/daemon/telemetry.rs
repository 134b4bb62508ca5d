//! Logging: `tracing` with a level or filter from the configuration, as text or
//! JSON. The level follows the configuration live.

use std::sync::OnceLock;

use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter, Registry};

use crate::model::config::LogFormat;

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let (filter, handle) = reload::Layer::new(EnvFilter::try_new(level)?);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init()?,
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init()?,
    }
    let _ = LEVEL.set(handle);
    Ok(())
}

/// Why the log level could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("key `logLevel`: {level:?} is not a level or filter: {source}")]
    Filter {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot change the log level: {0}")]
    Reload(#[from] reload::Error),
}

/// Changes the log level or filter of the running process.
pub fn set_level(level: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(level).map_err(|source| TelemetryError::Filter {
        level: level.to_string(),
        source,
    })?;
    match LEVEL.get() {
        Some(handle) => Ok(handle.reload(filter)?),
        None => Ok(()),
    }
}
