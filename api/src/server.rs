//! The HTTP server under the API's routes, with the limits a public server
//! needs: a deadline for each request's headers (which also closes connections
//! left idle), a slowest pace for request bodies, and a cap on open
//! connections. A client that trickles its headers or body, or holds idle
//! connections open, loses them instead of holding the server's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits of [`serve`].
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Time from a connection's first byte, or from the end of its last
    /// answer, to the end of the next request's headers; also how long an
    /// idle connection is kept.
    pub header_timeout: Duration,
    /// The slowest a request body may come, in bytes per second on average,
    /// once `body_grace` has passed.
    pub min_body_rate: u64,
    pub body_grace: Duration,
    /// Connections open at once; more wait in the listen queue.
    pub max_connections: usize,
    /// How long open connections get to finish at a shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            min_body_rate: 16 << 10,
            body_grace: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A request body that came slower than [`ServerLimits::min_body_rate`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body came too slowly: {received} bytes in {seconds:.0} s, and \
     the slowest accepted is {rate} bytes/s"
)]
pub struct BodyTooSlow {
    pub received: u64,
    pub seconds: f64,
    pub rate: u64,
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests
/// finish for [`ServerLimits::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let limits_for_body = limits.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let mut request = request.map(|body| {
                Body::new(PacedBody::new(
                    body,
                    limits_for_body.min_body_rate,
                    limits_for_body.body_grace,
                ))
            });
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move { router.oneshot(request).await }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        let grace = limits.shutdown_grace;
        connections.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace, connection).await;
                }
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(limits.shutdown_grace, connections.wait()).await;
    Ok(())
}

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTooSlow`] once it falls below the
    /// slowest pace, even while no byte comes at all.
    struct PacedBody<B> {
        #[pin]
        inner: B,
        started: Instant,
        received: u64,
        rate: u64,
        grace: Duration,
        #[pin]
        deadline: Sleep,
    }
}

impl<B> PacedBody<B> {
    fn new(inner: B, rate: u64, grace: Duration) -> Self {
        let started = Instant::now();
        PacedBody {
            inner,
            started,
            received: 0,
            rate: rate.max(1),
            grace,
            deadline: tokio::time::sleep_until(started + grace),
        }
    }
}

/// When a body that has brought `received` bytes falls behind the pace.
fn due(started: Instant, received: u64, rate: u64, grace: Duration) -> Instant {
    started + grace.max(Duration::from_secs_f64((received + 1) as f64 / rate as f64))
}

impl<B> HttpBody for PacedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    let next = due(*this.started, *this.received, *this.rate, *this.grace);
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                    received: *this.received,
                    seconds: this.started.elapsed().as_secs_f64(),
                    rate: *this.rate,
                })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_due_by_its_pace_after_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        assert_eq!(due(t0, 0, 1000, grace), t0 + grace);
        assert_eq!(due(t0, 99_999, 1000, grace), t0 + Duration::from_secs(100));
    }
}
