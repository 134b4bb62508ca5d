//! The platform part of `tests/support`, as `benches/karo_bench` includes it (with
//! `#[path]`): etcd and kube-apiserver on loopback, and child processes and temp dirs
//! that cannot outlive the bench. The integration tests declare these modules, with
//! the rest of this directory, in `tests/it/main.rs`.
#![allow(
    dead_code,
    unused_imports,
    reason = "the bench uses part of the platform"
)]

pub mod bins;
pub mod control_plane;
pub mod karo_lib;
pub mod process;
pub mod ready;

pub use bins::karo_bin;
pub use control_plane::ControlPlane;
pub use process::{free_port, Proc, TestDir};
pub use ready::wait_until;
