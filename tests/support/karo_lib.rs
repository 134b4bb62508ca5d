//! Every item of the `karo` library that the tests use, imported here and nowhere
//! else: when an item moves in `src/`, this is the one file to change.

pub use karo::cli::inputs::parse_documents as read_manifests;
pub use karo::cli::render::PLACEHOLDER_UID;
pub use karo::core::jobs::{build_job, job_name, JobInput, Skeleton, DEFAULT_SKELETON};
pub use karo::core::reaction::compile as compile_reaction;
pub use karo::core::render::Renderer;
pub use karo::core::snapshot::Snapshot;
pub use karo::daemon::metrics::Metrics;
pub use karo::model::alert::{fingerprint, parse_notification, Alert, Notification};
pub use karo::model::config::{
    load as load_config_file, AuthType, Config, JobDefaults, LogFormat, Overrides, Policy,
    TlsConfig,
};
pub use karo::model::crd::{crd_yaml, AlertReaction, AlertStatus};
pub use karo::model::run::crd_yaml as run_crd_yaml;
pub use karo::model::run::{AlertReactionRun, JobPhase, RunPhase, SilenceState};
pub use karo::model::yaml::value_to_string as yaml_value_to_string;
