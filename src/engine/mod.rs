//! One engine process: listeners, FlowHub, store writer, control socket, gateway child.
//!
//! [`Engine::start`] assembles everything in an order that fails fast on the
//! mistakes a user makes (engine already running, port in use) before the slow
//! parts (database, gateway), and returns only once every listener accepts.
//! [`Engine::shutdown`] undoes it: stop accepting, stop the gateway, flush the
//! store, stop the managed database, remove the pid and socket files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod control;
pub mod gateway;
pub mod logtail;
pub mod pidfile;
pub mod status;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::flow::FlowHub;
use crate::home::{self, Home};
use crate::proxy::{self, ProxyState, ReverseRoute};
use crate::store::Store;
use control::StatusFn;
use gateway::{Gateway, Launch, Output};
use pidfile::{Liveness, PidRecord};

pub use control::attach;
pub use status::{EngineStatus, Feed, GatewayStatus, Mode, RunMode};

/// Errors assembling the engine; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Another engine holds `ccproxy.lock`.
    #[error("{}", already_running(*pid, mode))]
    AlreadyRunning { pid: u32, mode: String },
    /// A listener could not bind, or the CA could not be set up.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// The store could not be opened.
    #[error("storage: {0}")]
    Store(String),
    /// The gateway did not come up.
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    /// The OpenTelemetry exporter could not be set up.
    #[error("{0}")]
    Otel(String),
    /// The price table named by `ccproxy.prices` is unusable.
    #[error(transparent)]
    Prices(#[from] crate::llm::PriceError),
    /// Files in `<home>`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// How long shutdown waits for the gateway to exit after SIGTERM.
pub const GATEWAY_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown lets the store flush.
pub const STORE_DEADLINE: Duration = Duration::from_secs(5);

/// State shared with the tasks that report status.
struct Shared {
    hub: FlowHub,
    pid: u32,
    mode: String,
    started_at: DateTime<Utc>,
    forward: Option<SocketAddr>,
    reverse: Option<SocketAddr>,
    gateway: Option<GatewayStatus>,
    store: Mutex<Option<Store>>,
    otel: Option<crate::otel::Exporter>,
}

impl Shared {
    fn status(&self) -> EngineStatus {
        let storage = self
            .store
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(Store::stats))
            .unwrap_or_default();
        EngineStatus {
            schema: 1,
            pid: self.pid,
            mode: self.mode.clone(),
            started_at: self.started_at,
            forward: self.forward.map(|a| a.to_string()),
            reverse: self.reverse.map(|a| a.to_string()),
            gateway: self.gateway.clone(),
            storage,
            flows: self.hub.snapshot(),
            otel: self.otel.as_ref().map(crate::otel::Exporter::stats),
        }
    }
}

/// A running engine: listeners, hub, store writer, gateway child.
pub struct Engine {
    /// The hub every listener publishes into.
    pub hub: crate::flow::FlowHub,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    listeners: Vec<JoinHandle<()>>,
    control: Option<JoinHandle<()>>,
    gateway: Option<Gateway>,
    otel: Option<(CancellationToken, JoinHandle<()>)>,
    lock: PathBuf,
    socket: PathBuf,
}

/// The one-line refusal when `ccproxy.lock` names a live engine.
pub fn already_running(pid: u32, mode: &str) -> String {
    format!("an engine is already running in this home (pid {pid}, {mode}): stop it with `ccproxy stop`, or see `ccproxy status`")
}

/// The public anthropic and openai endpoints for direct mode.
pub const PROVIDERS: (&str, &str) = ("https://api.anthropic.com", "https://api.openai.com");

impl Engine {
    /// Start everything for `mode`; returns once the listeners accept and storage is ready.
    pub async fn start(cfg: Arc<Config>, mode: Mode) -> Result<Self, EngineError> {
        let io = |what: String| move |source| EngineError::Io { what, source };
        let home = Home::new(&cfg);
        create_home(home.root()).map_err(io(format!("cannot create {}", home.root().display())))?;
        let pid = std::process::id();
        let lock = home.engine_lock();
        let gateway_command = match mode {
            Mode::Dual => gateway::resolve_command(&cfg),
            Mode::Forward => None,
        };
        let run_mode = RunMode::of(mode, gateway_command.is_some());
        let me = PidRecord::for_pid(pid).tagged(None, run_mode.as_str());
        match pidfile::acquire(&lock, &me)
            .map_err(io(format!("cannot write {}", lock.display())))?
        {
            Ok(()) => {}
            Err(holder) => {
                return Err(EngineError::AlreadyRunning {
                    pid: holder.pid,
                    mode: holder.mode.unwrap_or_else(|| "unknown mode".into()),
                })
            }
        }
        let started = Self::assemble(Arc::clone(&cfg), home, run_mode, gateway_command).await;
        if started.is_err() {
            pidfile::remove_if_owned(&lock, pid);
        }
        started
    }

    async fn assemble(
        cfg: Arc<Config>,
        home: Home,
        run_mode: RunMode,
        gateway_command: Option<Vec<String>>,
    ) -> Result<Self, EngineError> {
        let pid = std::process::id();
        reap_orphan_gateway(&home).await;

        // Bind first: a port in use is the commonest mistake and the cheapest to report.
        let forward = proxy::bind(&cfg.mitm.host, cfg.mitm.port).await?;
        let reverse = match run_mode {
            RunMode::DualGateway | RunMode::DualDirect => {
                Some(proxy::bind(&cfg.litellm.host, cfg.litellm.port).await?)
            }
            RunMode::Forward => None,
        };
        let local = |l: &tokio::net::TcpListener| {
            l.local_addr().map_err(|source| EngineError::Io {
                what: "cannot read a listener's address".into(),
                source,
            })
        };
        let forward_addr = local(&forward)?;
        let reverse_addr = reverse.as_ref().map(local).transpose()?;

        let hub = FlowHub::new(8192);
        crate::llm::PriceTable::install(crate::llm::PriceTable::configured(cfg.prices.as_deref())?);
        hub.set_analyzer(crate::llm::analyzer());
        let state = ProxyState::new(Arc::clone(&cfg), hub.clone())?;
        let store = Store::open(&cfg)
            .await
            .map_err(|e| EngineError::Store(format!("{e:#}")))?;
        hub.set_sink(store.sink());

        let shutdown = CancellationToken::new();
        let mut otel_task = None;
        let otel = match &cfg.otel {
            Some(o) => {
                let stop = CancellationToken::new();
                let (exporter, task) = crate::otel::Exporter::start(
                    o,
                    capture_host(),
                    hub.subscribe_quiet(),
                    stop.clone(),
                )
                .map_err(|e| EngineError::Otel(e.to_string()))?;
                tracing::info!(endpoint = %exporter.stats().endpoint, protocol = o.protocol.as_str(), "exporting LLM spans over OTLP");
                otel_task = Some((stop, task));
                Some(exporter)
            }
            None => None,
        };
        let mut listeners = vec![proxy::serve_forward(
            forward,
            Arc::clone(&state),
            shutdown.clone(),
        )];

        let mut gateway = None;
        if let Some(reverse) = reverse {
            let route = if let Some(command) = gateway_command {
                let ca = state.ca.files();
                let launch =
                    gateway_launch(&cfg, &home, command, forward_addr, &ca).map_err(|source| {
                        EngineError::Io {
                            what: "cannot find a free port for the gateway".into(),
                            source,
                        }
                    })?;
                let started = Gateway::spawn(&launch).await;
                let gw = match started {
                    Ok(gw) => gw,
                    Err(e) => {
                        shutdown.cancel();
                        store.shutdown(STORE_DEADLINE).await;
                        return Err(e.into());
                    }
                };
                tracing::info!(pid = gw.pid, port = gw.port, command = %gw.argv.join(" "), "gateway ready");
                warn_if_session_header_dropped(&launch);
                let route = ReverseRoute::Fixed(format!("http://127.0.0.1:{}", gw.port));
                gateway = Some(gw);
                route
            } else if let Some(upstream) = &cfg.upstream {
                tracing::info!(%upstream, "no gateway: the reverse listener goes to ccproxy.upstream");
                ReverseRoute::Fixed(upstream.clone())
            } else {
                tracing::info!(
                    "LiteLLM not found: the reverse listener goes straight to the providers"
                );
                ReverseRoute::Providers {
                    anthropic: PROVIDERS.0.into(),
                    openai: PROVIDERS.1.into(),
                }
            };
            listeners.push(proxy::serve_reverse(
                reverse,
                route,
                Arc::clone(&state),
                shutdown.clone(),
            ));
        }

        let shared = Arc::new(Shared {
            hub: hub.clone(),
            pid,
            mode: run_mode.as_str().to_string(),
            started_at: Utc::now(),
            forward: Some(forward_addr),
            reverse: reverse_addr,
            gateway: gateway.as_ref().map(|g| GatewayStatus {
                pid: g.pid,
                port: g.port,
                command: g.argv.clone(),
            }),
            store: Mutex::new(Some(store)),
            otel,
        });

        let socket = home.socket();
        let mut engine = Self {
            hub,
            cfg: Arc::clone(&cfg),
            shared,
            shutdown,
            listeners,
            control: None,
            otel: otel_task,
            gateway,
            lock: home.engine_lock(),
            socket: socket.clone(),
        };
        // The socket goes last: once it answers, everything else accepts.
        match control::bind(&socket) {
            Ok(listener) => {
                engine.control = Some(control::serve(
                    listener,
                    engine.hub.clone(),
                    engine.status_fn(),
                    engine.shutdown.clone(),
                ));
            }
            Err(source) => {
                engine.shutdown().await;
                return Err(EngineError::Io {
                    what: format!("cannot create the control socket {}", socket.display()),
                    source,
                });
            }
        }
        tracing::info!(
            mode = run_mode.as_str(),
            forward = %forward_addr,
            reverse = %reverse_addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
            "engine ready"
        );
        Ok(engine)
    }

    fn status_fn(&self) -> StatusFn {
        let shared = Arc::clone(&self.shared);
        Arc::new(move || shared.status())
    }

    /// A live feed for an in-process viewer.
    pub fn feed(&self) -> tokio::sync::mpsc::Receiver<Feed> {
        control::pump(
            self.hub.subscribe(),
            self.status_fn(),
            self.shutdown.clone(),
        )
    }

    /// Current status document.
    pub fn status(&self) -> Option<EngineStatus> {
        Some(self.shared.status())
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// A token cancelled when the engine shuts down (for tasks that live as long as it).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful shutdown: stop accepting, flush the store, stop children.
    pub async fn shutdown(mut self) {
        tracing::info!("engine shutting down");
        self.shutdown.cancel();
        let gateway = self.gateway.take().map(|g| g.stop(GATEWAY_GRACE));
        let listeners = futures::future::join_all(self.listeners.drain(..));
        // Listeners drain their connections; do not let a stuck one hold the exit.
        let drained = async {
            let _ = tokio::time::timeout(Duration::from_secs(5), listeners).await;
        };
        match gateway {
            Some(g) => {
                tokio::join!(g, drained);
            }
            None => drained.await,
        }
        if let Some(control) = self.control.take() {
            control.abort();
        }
        // Flows still in the analysis stage go to the store before it flushes.
        self.hub.settle(Duration::from_secs(5)).await;
        let store = self.shared.store.lock().ok().and_then(|mut s| s.take());
        if let Some(store) = store {
            // Also stops the managed database when this store started it.
            store.shutdown(STORE_DEADLINE).await;
        }
        if let Some((stop, task)) = self.otel.take() {
            // Every exchange has completed by now: send what is queued, within a deadline.
            stop.cancel();
            let _ = tokio::time::timeout(STORE_DEADLINE, task).await;
        }
        let pid = std::process::id();
        if matches!(pidfile::read(&self.lock), Ok(Some(r)) if r.pid == pid) {
            let _ = std::fs::remove_file(&self.socket);
        }
        pidfile::remove_if_owned(&self.lock, pid);
        tracing::info!("engine stopped");
    }
}

/// Create `<home>` private (0700, with any missing parent); an existing home
/// that others can read or enter gets one warning (its mode is the user's choice).
pub fn create_home(home: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)?;
    let mode = std::fs::metadata(home)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                home = %home.display(),
                mode = format!("{mode:o}"),
                "the ccproxy home is readable by other users, and it holds captured traffic: chmod 700 it"
            );
        });
    }
    Ok(())
}

/// The `proxy_auth` token, when it is on and the engine made it.
pub fn proxy_token(cfg: &Config) -> Option<String> {
    if !cfg.mitm.proxy_auth {
        return None;
    }
    proxy::auth::read_token(&Home::new(cfg).proxy_token())
        .ok()
        .flatten()
}

/// The gateway behind the reverse listener: a free port, the LiteLLM config,
/// the configured environment, and the proxy and CA variables that make its
/// provider calls go through the forward listener.
fn gateway_launch(
    cfg: &Config,
    home: &Home,
    command: Vec<String>,
    forward: SocketAddr,
    ca: &proxy::ca::CaFiles,
) -> std::io::Result<Launch> {
    let port = gateway::free_port("127.0.0.1")?;
    let mut env = gateway::configured_env(&cfg.gateway.environment);
    let mut routing = home::routing_env(forward, ca);
    if let Some(token) = proxy_token(cfg) {
        home::add_proxy_token(&mut routing, &token);
    }
    env.extend(routing);
    // An inherited NO_PROXY could let provider calls bypass capture; keep it
    // only when the user put it in ccproxy.litellm.environment.
    let env_remove = ["NO_PROXY", "no_proxy"]
        .into_iter()
        .filter(|n| !cfg.gateway.environment.contains_key(*n))
        .map(str::to_string)
        .collect();
    Ok(Launch {
        command,
        config: home.gateway_config().to_path_buf(),
        host: "127.0.0.1".into(),
        port,
        env,
        env_remove,
        output: Output::Log(home.gateway_log()),
        lock: home.gateway_lock(),
        owner: Some(std::process::id()),
    })
}

/// LiteLLM passes `x-*` client headers (so `x-claude-code-session-id`, which
/// joins the two legs of a call) on to providers only for the model groups
/// listed in `litellm_settings.model_group_settings.forward_client_headers_to_llm_api`.
/// Say so once when a LiteLLM config does not mention it.
fn warn_if_session_header_dropped(launch: &Launch) {
    let is_litellm = launch.command.iter().any(|a| a.contains("litellm"));
    let mentions = std::fs::read_to_string(&launch.config)
        .is_ok_and(|text| text.contains("forward_client_headers_to_llm_api"));
    if is_litellm && !mentions {
        tracing::info!(
            config = %launch.config.display(),
            "LiteLLM drops x-claude-code-session-id unless the model group is listed under \
             litellm_settings.model_group_settings.forward_client_headers_to_llm_api; \
             without it the forward leg of a call has no session id to join on"
        );
    }
}

/// A gateway left behind by an engine that died without shutting down
/// (`kill -9`) still holds its port; stop it before starting a new one.
async fn reap_orphan_gateway(home: &Home) {
    let path = home.gateway_lock();
    if let Liveness::Running(rec) = pidfile::check(&path) {
        // We hold ccproxy.lock, so whichever engine started it is gone.
        if rec.owner.is_some() {
            tracing::warn!(pid = rec.pid, "stopping a gateway left by a dead engine");
            pidfile::terminate(&rec, GATEWAY_GRACE, true).await;
            pidfile::remove_if_owned(&path, rec.pid);
        }
    }
}

/// The machine's name for the spans' `host.name`.
fn capture_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
