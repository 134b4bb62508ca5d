//! Every item of the `karo` library that the tests use, imported here and nowhere
//! else: when an item moves in `src/`, this is the one file to change.

pub use karo::alert::{fingerprint, parse_notification, Alert, Notification};
pub use karo::config::{
    load as load_config_file, AuthType, Config, JobDefaults, LogFormat, Overrides, Policy,
    TlsConfig,
};
pub use karo::crd::{crd_yaml, AlertReaction, AlertStatus};
pub use karo::jobs::{build_job, job_name, JobInput, Skeleton, DEFAULT_SKELETON};
pub use karo::metrics::Metrics;
pub use karo::offline::PLACEHOLDER_UID;
pub use karo::reaction::compile as compile_reaction;
pub use karo::render::Renderer;
pub use karo::run::prepare as prepare_run;
