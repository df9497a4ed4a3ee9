//! The client-facing HTTP server: hyper's HTTP/1.1 connections (through `hyper-util`'s
//! tower adapter) on the multi-threaded runtime, one task per connection.
//!
//! What it adds around hyper:
//! - a cap on open connections (`--max-connections`): past it the accept loop waits, so
//!   the kernel's backlog holds newcomers instead of the gateway running out of memory
//!   or file descriptors;
//! - hyper's header-read timeout (`--client-idle-timeout`), which hyper 1.x also runs
//!   while a kept-alive connection waits for its next request: one bound for a slow
//!   client's head and for an idle connection;
//! - a graceful shutdown: no new connection, idle ones closed, requests in flight
//!   answered (bounded by `--shutdown-grace`).
//!
//! Request timeouts, body limits and panics are tower layers on the router
//! ([`crate::api::router`]).

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The client's address, for handlers (`ConnectInfo<Peer>`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Bounds on client connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a request head may take, and a kept-alive connection may stay idle.
    pub idle_timeout: Duration,
    /// How long requests in flight may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (up to `limits.shutdown_grace`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        // A client that shuts its write side after its request still gets the answer, as
        // from one Meilisearch.
        .half_close(true)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A free place first, then a connection to fill it.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // No Nagle delay on the client hop: a proxy's small answers must leave at once.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let service = router
            .clone()
            .map_request(move |request: http::Request<Incoming>| {
                let mut request: Request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(Peer(peer)));
                // Paths are normalized before routing, as in Meilisearch.
                crate::api::normalize_path(request)
            });
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _place = permit;
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                grace = %humantime::format_duration(limits.shutdown_grace),
                "requests still in flight at the end of the shutdown grace are cut"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 2,
        idle_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(5),
    };

    /// A loopback server over a small router; sending on the channel shuts it down.
    async fn server() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let router =
            Router::new()
                .route("/echo", post(|body: Bytes| async move { body }))
                .route(
                    "/peer",
                    get(|ConnectInfo(Peer(peer)): ConnectInfo<Peer>| async move {
                        peer.ip().to_string()
                    }),
                )
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        "done"
                    }),
                );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, LIMITS, async move {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    /// Writes `request` and reads until the server closes the connection.
    async fn exchange(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("the server closes the connection")
            .unwrap();
        answer
    }

    #[tokio::test]
    async fn requests_reach_the_router_with_the_peer_and_a_normalized_path() {
        let (address, _stop) = server().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let answer = exchange(
            &mut stream,
            "POST //echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none\
             GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.contains("\r\n\r\none"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn idle_and_slow_clients_are_closed_after_the_idle_timeout() {
        let (address, _stop) = server().await;
        // Idle after an answer.
        let mut idle = TcpStream::connect(address).await.unwrap();
        let started = tokio::time::Instant::now();
        let answer = exchange(&mut idle, "GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(
            started.elapsed() >= LIMITS.idle_timeout,
            "{:?}",
            started.elapsed()
        );
        // A head that never ends.
        let mut slow = TcpStream::connect(address).await.unwrap();
        let answer = exchange(&mut slow, "GET /peer HTTP/1.1\r\nX-Slow: ").await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
        let (address, _stop) = server().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn connections_past_the_limit_wait_for_a_free_place() {
        let (address, _stop) = server().await;
        let mut open = Vec::new();
        for _ in 0..LIMITS.max_connections {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.unwrap();
            open.push(stream);
        }
        // The third is accepted by the kernel but not served while two are open.
        let mut third = TcpStream::connect(address).await.unwrap();
        third
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        let waited =
            tokio::time::timeout(Duration::from_millis(100), third.read_exact(&mut head)).await;
        assert!(waited.is_err(), "served past the connection limit");
        drop(open);
        // Served once a place is free (the others close at once, or at the idle timeout).
        tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut head))
            .await
            .expect("served once a place is free")
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }

    #[tokio::test]
    async fn shutdown_answers_requests_in_flight_and_refuses_new_connections() {
        let (address, stop) = server().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("closed after its answer")
            .unwrap();
        assert!(answer.ends_with("\r\n\r\ndone"), "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(address).await.is_err());
    }
}
