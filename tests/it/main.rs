//! Karo's integration tests, in one test binary: `cargo test --test it`, or
//! `cargo test --test it <module>::` for one module.
//!
//! Most need the local platform (etcd, kube-apiserver, Alertmanager, Helm, promtool):
//! `eval "$(bash tests/platform/setup.sh)"` first (`make test` does it).

mod agreement;
mod alert_to_job;
mod alertmanager_api;
mod api_faults;
mod architecture;
mod chart;
mod cli;
mod cluster;
mod config_reload;
mod crd;
mod http_bounds;
mod image;
mod observability;
mod properties;
mod reaction_limits;
mod reading;
mod regex_parity;
mod runs;
mod security;
mod status_writers;

#[path = "../support"]
mod support {
    //! Everything in `tests/support`: the local platform the tests run against
    //! (`tests/platform/setup.sh` installs it), that is etcd and kube-apiserver,
    //! Alertmanager and the `karo` binary, all on loopback; and the helpers the tests
    //! share.
    //!
    //! Every process started here dies with the test that owns it (on drop, panics
    //! included) and, at the latest, with the test binary (`process` explains how).
    //!
    //! Declared here rather than in `tests/support/mod.rs`: that file is how
    //! `benches/karo_bench` includes the platform part alone (`bins`, `control_plane`,
    //! `karo_lib`, `process`, `ready`).

    pub mod alertmanager;
    pub mod bins;
    pub mod certs;
    pub mod cluster;
    pub mod control_plane;
    pub mod fault_proxy;
    pub mod files;
    pub mod karo_lib;
    pub mod karo_process;
    pub mod process;
    pub mod ready;
    pub mod runs;
    pub mod scenario;
    pub mod webhook;

    pub use control_plane::ControlPlane;
    pub use process::{free_port, Proc, TestDir};
    pub use ready::{wait_until, SOON};
}
