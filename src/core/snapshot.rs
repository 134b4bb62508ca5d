//! A configuration in effect, with what is derived from it: the Job skeleton.
//! The daemon publishes a new snapshot on every successful reload; `karo render`
//! builds one from the same files.

use std::path::PathBuf;

use crate::core::jobs::{Skeleton, SkeletonError};
use crate::core::render::Renderer;
use crate::model::config::Config;

/// One immutable configuration: a request reads one snapshot from start to end.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub config: Config,
    pub skeleton: Skeleton,
}

/// Why a configuration cannot be put in effect.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("key `jobTemplateFile`: cannot read {}: {source}", .path.display())]
    ReadTemplate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Skeleton(#[from] SkeletonError),
}

impl Snapshot {
    /// Builds what a configuration implies (the Job skeleton), validating it whole.
    pub fn prepare(config: Config, renderer: &Renderer) -> Result<Snapshot, SnapshotError> {
        let skeleton = match &config.job_template_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    SnapshotError::ReadTemplate {
                        path: path.clone(),
                        source,
                    }
                })?;
                Skeleton::parse(&text, &path.display().to_string())?
            }
            None => Skeleton::builtin()?,
        };
        skeleton.validate(renderer)?;
        Ok(Snapshot { config, skeleton })
    }
}
