//! The certificate authority and the per-host leaf certificate cache.

use crate::cli::CaArgs;
use crate::config::Config;

/// `ccproxy ca [--pem]`.
pub fn command(_cfg: &Config, _args: &CaArgs) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy ca is not built yet")
}
