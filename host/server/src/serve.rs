//! The accept loop: bounded connections, header read timeout (slowloris), graceful shutdown.
//!
//! Why not `axum::serve`: it has no header read timeout and no connection bound. Over
//! `connections_max`, a connection is still answered (503 + Retry-After, then closed)
//! rather than reset, so a surge gets a clear answer instead of network errors.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::api::{App, router};
use crate::error::ApiError;

pub async fn serve(app: Arc<App>, on_listening: impl FnOnce(std::net::SocketAddr)) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.config.listen).await?;
    let addr = listener.local_addr()?;
    crate::write_addr_file(&app.config.data_dir, addr)?;
    let adm = app.config.admission.clone();
    let conns = Arc::new(tokio::sync::Semaphore::new(adm.connections_max.max(1) as usize));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(adm.header_read_timeout_ms))
        .keep_alive(true);
    let routes = router(app.clone());
    app.ready.store(true, Ordering::SeqCst);
    tracing::info!(%addr, "listening");
    on_listening(addr);

    let shutdown = shutdown_signal();
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
                        once.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(2)).keep_alive(false);
                        let conn = once.serve_connection(io, TowerToHyperService::new(svc));
                        tokio::spawn(async move {
                            let _ = conn.await;
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

async fn shutdown_signal() {
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
