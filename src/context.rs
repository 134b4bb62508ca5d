//! The state shared by the webhook, the reactor and the controller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use kube::Client;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::events::EventQueue;
use crate::index::ReactionIndex;
use crate::jobs::Skeleton;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::reload::ConfigSource;
use crate::render::Renderer;
use crate::status::StatusWriter;

/// A configuration in effect, with what is derived from it.
pub struct Runtime {
    pub config: Config,
    pub skeleton: Skeleton,
}

/// One per process, shared as `Arc<Context>`.
pub struct Context {
    pub client: Client,
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Metrics,
    /// `reportingInstance` of Karo's Events: the pod name.
    pub instance: String,
    pub renderer: Renderer,
    pub index: ReactionIndex,
    pub authenticator: Authenticator,
    /// The global Job creation budget (`limits.maxJobsPerMinute`).
    pub rate: RateLimiter,
    /// AlertReaction counters waiting to be written.
    pub status: StatusWriter,
    /// Events waiting to be published.
    pub events: EventQueue,
    /// Where the configuration is reloaded from.
    pub config_source: ConfigSource,
    /// Reloads run one at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    synced: AtomicBool,
}

impl Context {
    pub fn new(
        client: Client,
        runtime: Runtime,
        metrics: Metrics,
        config_source: ConfigSource,
    ) -> Arc<Self> {
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "karo".into());
        Arc::new(Context {
            instance,
            client,
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            renderer: Renderer::new(),
            index: ReactionIndex::default(),
            authenticator: Authenticator::default(),
            rate: RateLimiter::default(),
            status: StatusWriter::default(),
            events: EventQueue::default(),
            config_source,
            reload_lock: tokio::sync::Mutex::new(()),
            synced: AtomicBool::new(false),
        })
    }

    /// The configuration in effect now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Whether the AlertReaction cache has synced.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
    }
}
