//! The floor under the proxy's figures: a bare hyper HTTP/1.1 forwarder, run
//! as a child of the proxy benchmark (`CCPROXY_BENCH_BREAKDOWN=1`).
//!
//! It is what ccproxy would cost with nothing of its own: one single-threaded
//! runtime per core (as the engine's workers), each client connection with
//! its own upstream connection, the request sent on in origin form and the
//! response streamed back. No capture, no flow, no limits or timeouts, no
//! hop-by-hop handling, no pool. Measured beside ccproxy with the upstream in
//! `excluded_hosts` (the engine's own path without capture), it splits
//! ccproxy's cost into hyper's, the engine's and the capture's.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

/// Set in the environment of the re-executed floor child: the upstream's address.
pub const FLOOR_ENV: &str = "CCPROXY_BENCH_FLOOR_CHILD";

/// Serve until stdin closes, forwarding everything to `upstream`.
pub async fn child(upstream: SocketAddr) -> anyhow::Result<()> {
    let n = std::thread::available_parallelism().map_or(1, usize::from);
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        workers.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("floor-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("LISTEN {}", listener.local_addr()?);
    let accept = async {
        for next in 0usize.. {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            // Registered with the worker's reactor: handed over as a std socket.
            let Ok(socket) = socket.into_std() else {
                continue;
            };
            workers[next % n].spawn(async move {
                if let Ok(socket) = TcpStream::from_std(socket) {
                    serve(socket, upstream).await;
                }
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = super::proxy::stdin_closed() => {}
    }
    Ok(())
}

/// One client connection, with its upstream connection opened at its first request.
async fn serve(socket: TcpStream, upstream: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let sender: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::new(Mutex::new(None));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let sender = Arc::clone(&sender);
        async move {
            Ok::<_, std::convert::Infallible>(match forward(&sender, upstream, req).await {
                Ok(resp) => resp.map(Body::Upstream),
                Err(e) => {
                    let mut resp = Response::new(Body::Failed(format!("{e:#}\n")));
                    *resp.status_mut() = StatusCode::BAD_GATEWAY;
                    resp
                }
            })
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), service)
        .await;
}

async fn forward(
    sender: &Mutex<Option<SendRequest<Incoming>>>,
    upstream: SocketAddr,
    mut req: Request<Incoming>,
) -> anyhow::Result<Response<Incoming>> {
    let mut slot = sender.lock().await;
    if slot.as_ref().is_none_or(SendRequest::is_closed) {
        let io = TcpStream::connect(upstream).await.context("connect")?;
        io.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        *slot = Some(send);
    }
    let send = slot.as_mut().context("no upstream connection")?;
    send.ready().await?;
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str)
        .parse()?;
    *req.uri_mut() = path;
    Ok(send.send_request(req).await?)
}

/// The upstream's body as it comes, or a short error text.
enum Body {
    Upstream(Incoming),
    Failed(String),
}

impl hyper::body::Body for Body {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            Body::Upstream(b) => std::pin::Pin::new(b).poll_frame(cx),
            Body::Failed(text) => {
                let text = std::mem::take(text);
                std::task::Poll::Ready(
                    (!text.is_empty()).then(|| Ok(hyper::body::Frame::data(text.into()))),
                )
            }
        }
    }
}
