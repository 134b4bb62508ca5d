//! Logging: `tracing` with a level or filter from the configuration, as text or
//! JSON. The level follows the configuration live.

use std::sync::OnceLock;

use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter, Registry};

use crate::config::LogFormat;

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

/// Changes the log level or filter of the running process.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match LEVEL.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
