//! `ccproxy-bench [proxy|store|team|tui|llm|sessions|all]`: side-by-side figures and ratios
//! (never asserted as timings in tests). See README.md "Benchmark".

mod floor;
mod llm;
mod proxy;
mod sessions;
mod store;
mod team;
mod tui;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccproxy-bench: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        match which.as_str() {
            "proxy" => proxy::run().await,
            "store" => store::run().await,
            "tui" => tui::run().await,
            "team" => team::run().await,
            "llm" => llm::run().await,
            "sessions" => sessions::run().await,
            "all" => {
                proxy::run().await?;
                store::run().await?;
                tui::run().await?;
                llm::run().await
            }
            other => {
                anyhow::bail!(
                    "unknown benchmark `{other}`: use proxy, store, team, tui, llm, sessions or all"
                )
            }
        }
    });
    if let Err(e) = result {
        eprintln!("ccproxy-bench: {e:#}");
        std::process::exit(1);
    }
}
