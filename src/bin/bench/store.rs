//! store benchmark.

pub async fn run() -> anyhow::Result<()> {
    Ok(())
}
