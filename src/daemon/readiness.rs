//! Whether Karo takes notifications: once every AlertReaction watch has synced,
//! and no longer once shutdown has begun (so the Service stops sending).

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Readiness {
    synced: AtomicBool,
    stopping: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire)
    }

    /// The AlertReaction cache has synced.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Shutdown has begun.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}
