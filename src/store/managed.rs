//! Stand-in until the `store` branch lands (the merge takes theirs).

use super::StoreError;
use crate::config::Config;

/// Stop the managed server if running.
pub async fn stop(_cfg: &Config) -> Result<bool, StoreError> {
    Ok(false)
}
