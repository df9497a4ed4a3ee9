//! The HTTP API's threads: one accept loop hands each connection to one of `--threads`
//! threads, each running its own single-threaded event loop. A request is then parsed,
//! routed, sent to its nodes and answered on one thread: no wake-up crosses threads on
//! the hot path (on a multi-threaded runtime a query paid several, measured in
//! docs/benchmarks.md). Connections, not requests, are spread over the threads; each
//! connection is served by [`crate::http_connection`].
//!
//! A single listening socket (not one `SO_REUSEPORT` socket per thread) keeps a port
//! taken by another process an error at startup instead of a silently shared port.

use axum::Router;
use std::net::SocketAddr;
use tokio::sync::{mpsc, watch};

/// A connection accepted by the accept loop, on its way to a thread.
type Accepted = (std::net::TcpStream, SocketAddr);

/// Serves `router` on `listener` with `threads` threads until `shutdown` resolves, then
/// lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    threads: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut inboxes = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        let (inbox, mut connections) = mpsc::unbounded_channel::<Accepted>();
        inboxes.push(inbox);
        let (router, stopped) = (router.clone(), stopped.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        workers.push(
            std::thread::Builder::new()
                .name(format!("miroir-http-{index}"))
                .spawn(move || {
                    crate::nodes::set_http_thread(index + 1);
                    runtime.block_on(async move {
                        tokio::spawn(keep_timer_floor());
                        // Paths are normalized before routing, as in Meilisearch.
                        let service = tower::util::MapRequest::new(
                            router,
                            crate::http::normalize_path as fn(_) -> _,
                        );
                        let mut open = tokio::task::JoinSet::new();
                        let mut stopping = stopped.clone();
                        loop {
                            tokio::select! {
                                accepted = connections.recv() => {
                                    let Some((stream, peer)) = accepted else { break };
                                    // Registers the socket with this thread's event loop.
                                    match tokio::net::TcpStream::from_std(stream) {
                                        Ok(stream) => {
                                            open.spawn(crate::http_connection::serve(
                                                stream,
                                                peer,
                                                service.clone(),
                                                stopped.clone(),
                                            ));
                                        }
                                        Err(error) => tracing::warn!(%error, thread = index, "cannot take a connection over"),
                                    }
                                }
                                _ = stopping.wait_for(|stop| *stop) => break,
                                Some(_) = open.join_next(), if !open.is_empty() => {}
                            }
                        }
                        // Requests in flight finish; idle connections close.
                        while open.join_next().await.is_some() {}
                    });
                })?,
        );
    }
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // No Nagle delay on the client hop: a proxy's small answers must leave
                // at once.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY not set");
                }
                match stream.into_std() {
                    Ok(stream) => {
                        // A closed inbox means its thread ended (it logged why).
                        let _ = inboxes[next % threads].send((stream, peer));
                        next = next.wrapping_add(1);
                    }
                    Err(error) => tracing::warn!(%error, "cannot hand a connection over"),
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    })
    .await?;
    Ok(())
}

/// How far ahead [`keep_timer_floor`] keeps a timer: below any sensible node timeout.
const TIMER_FLOOR: std::time::Duration = std::time::Duration::from_millis(250);

/// Keeps one timer due within [`TIMER_FLOOR`] pending on this thread's runtime, forever.
/// Tokio wakes its own driver (an eventfd write, then one more `epoll_wait`) whenever a
/// new timer is due before every pending one, even from the driver's own thread: without
/// this, every node call's timeout did so, two system calls per query. A node call's
/// timeout is due later than this timer, so it registers without a wake-up.
async fn keep_timer_floor() {
    loop {
        tokio::time::sleep(TIMER_FLOOR).await;
    }
}

/// The client's address, for handlers (`ConnectInfo<Peer>`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);
