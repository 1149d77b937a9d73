//! Who captured a row: `capture_host` (the machine's hostname, or
//! `ccproxy.identity.host`) and `capture_user` (the OS user, or
//! `ccproxy.identity.user`), so many machines can share one server.
//!
//! [`init`] (called by [`crate::store::Store::open`]) stamps every flow
//! created afterwards with it (`Flow::capture_host`/`capture_user`), so the
//! spool keeps it and the filter's `~host` sees it; a flow without one (made
//! before, or read from an old spool) is recorded as the engine's identity.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The `capture_host` / `capture_user` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub host: String,
    pub user: String,
}

impl Identity {
    /// The configured identity, with the hostname and OS user for what is not configured.
    pub fn from_config(cfg: &Config) -> Self {
        let detected = detect();
        Self {
            host: cfg
                .identity
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or(detected.host),
            user: cfg
                .identity
                .user
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or(detected.user),
        }
    }
}

/// The machine's hostname and the OS user running this process.
pub fn detect() -> Identity {
    let host = whoami::hostname()
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| whoami::username().ok())
        .unwrap_or_else(|| "unknown".into());
    Identity { host, user }
}

static CURRENT: RwLock<Option<Arc<Identity>>> = RwLock::new(None);

/// Make `cfg`'s identity the one rows without their own are recorded as.
pub fn init(cfg: &Config) -> Arc<Identity> {
    let id = Arc::new(Identity::from_config(cfg));
    crate::flow::set_capture_identity(&id.host, &id.user);
    if let Ok(mut cur) = CURRENT.write() {
        *cur = Some(Arc::clone(&id));
    }
    id
}

/// The engine's identity ([`detect`]ed until [`init`] runs).
pub fn current() -> Arc<Identity> {
    if let Some(id) = CURRENT.read().ok().and_then(|c| c.clone()) {
        return id;
    }
    let id = Arc::new(detect());
    if let Ok(mut cur) = CURRENT.write() {
        cur.get_or_insert_with(|| Arc::clone(&id));
    }
    id
}
