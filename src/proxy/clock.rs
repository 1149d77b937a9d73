//! The proxy's cheap clock for bookkeeping that needs milliseconds, not
//! nanoseconds (idle connections, pooled connections), read several times
//! per exchange.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds on a monotonic clock: the coarse one, a few milliseconds
/// fine, which reads without the time-stamp counter. (It cannot fail for a
/// valid clock id; the fallback only keeps this total.)
#[cfg(target_os = "linux")]
pub fn now_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(t) => (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000,
        Err(_) => fine_ms(),
    }
}

/// [`now_ms`] where there is no coarse clock.
#[cfg(not(target_os = "linux"))]
pub fn now_ms() -> u64 {
    fine_ms()
}

/// Milliseconds since the first call, on [`Instant`].
fn fine_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}
