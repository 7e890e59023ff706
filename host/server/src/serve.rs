//! The accept loop: bounded connections, header read timeout (slowloris), graceful shutdown.
//!
//! Why not `axum::serve`: it has no header read timeout and no connection bound. Over
//! `connections_max`, a connection is still answered (503 + Retry-After, then closed)
//! rather than reset, so a surge gets a clear answer instead of network errors. Refusing
//! is bounded too (`refusals_inflight_max`, each within `refusal_timeout_ms`): beyond, the
//! connection is closed at once, so a flood never grows the task count.
//!
//! The shape is mini-redis's `server::run(listener, shutdown)`: the caller binds the
//! listener and decides what shutdown is (a signal for `tenken serve`, a channel in tests).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::app::App;
use crate::error::ApiError;
use crate::routes::router;

pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    crate::write_addr_file(&app.config.data_dir, addr)?;
    let adm = app.config.admission.clone();
    let conns = Arc::new(tokio::sync::Semaphore::new(adm.connections_max.max(1) as usize));
    let refusals = Arc::new(tokio::sync::Semaphore::new(adm.refusals_inflight_max.max(1) as usize));
    let refusal_timeout = Duration::from_millis(adm.refusal_timeout_ms.max(1));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(adm.header_read_timeout_ms))
        .keep_alive(true);
    let routes = router(app.clone());
    app.ready.store(true, Ordering::SeqCst);
    tracing::info!(%addr, "listening");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(stream);
                match conns.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let conn = http.serve_connection(io, TowerToHyperService::new(routes.clone()));
                        let fut = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _ = fut.await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let Ok(refusing) = refusals.clone().try_acquire_owned() else {
                            // Even refusing is at its bound: close (dropping the stream).
                            app.metrics.refused("connection-dropped");
                            continue;
                        };
                        let retry = app.retry_after();
                        app.metrics.refused("too-many-connections");
                        let svc = tower::service_fn(move |_req: axum::extract::Request<hyper::body::Incoming>| async move {
                            let mut r = ApiError::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "too-many-connections",
                                "the server has as many connections as it can serve; retry after the Retry-After delay",
                            )
                            .retry_after(retry)
                            .into_response();
                            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                            Ok::<_, std::convert::Infallible>(r)
                        });
                        let mut once = hyper::server::conn::http1::Builder::new();
                        once.timer(TokioTimer::new()).header_read_timeout(refusal_timeout).keep_alive(false);
                        let conn = once.serve_connection(io, TowerToHyperService::new(svc));
                        tokio::spawn(async move {
                            // A client that sends its headers but never reads the answer
                            // must not hold the slot either.
                            let _ = tokio::time::timeout(refusal_timeout, conn).await;
                            drop(refusing);
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    app.ready.store(false, Ordering::SeqCst);
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(Duration::from_millis(adm.shutdown_grace_ms), graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within shutdown_grace_ms");
    }
    Ok(())
}

/// SIGINT or SIGTERM: what `tenken serve` stops on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
