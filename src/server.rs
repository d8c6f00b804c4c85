//! Serving HTTP/1.1, plain or with TLS, so that it holds against stalled clients: a client
//! must send a request's headers within `HEADER_TIMEOUT` (also the first request of a
//! connection, so an idle socket is closed), and at most `MAX_CONNECTIONS` connections are held
//! at once; past that, a new one is closed as soon as it is accepted, before it costs more than
//! its socket. HTTP/2 is not offered: its connections would escape the header timeout and hold
//! a slot for good after one request. How long a request may take is the router's to say.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Time a client has to send a request's headers, the first one included.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections held at once: far more than gateways and regulators need at a time, far fewer
/// than the file descriptors a process may open.
pub const MAX_CONNECTIONS: usize = 512;
/// How long requests in flight may finish after a stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Where to listen and whether to speak TLS.
pub struct Listener {
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
}

impl Listener {
    /// Binds `bind`; with `tls` (certificate and key PEM files), connections speak TLS.
    pub async fn bind(bind: &str, tls: Option<(&Path, &Path)>) -> anyhow::Result<Listener> {
        let listener = listen(bind)?;
        let tls =
            match tls {
                Some((cert, key)) => Some(RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                    anyhow::anyhow!("cannot use {} and {} for TLS: {e}", cert.display(), key.display())
                })?),
                None => None,
            };
        Ok(Listener { listener, tls })
    }

    /// Binds `bind` for TLS with a certificate and key given as PEM text.
    pub async fn bind_tls_pem(bind: &str, cert: Vec<u8>, key: Vec<u8>) -> anyhow::Result<Listener> {
        Ok(Listener { listener: listen(bind)?, tls: Some(RustlsConfig::from_pem(cert, key).await?) })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `router` until `stop`; requests in flight get `DRAIN` to finish.
    pub async fn serve(self, router: Router, stop: CancellationToken) -> io::Result<()> {
        let handle = axum_server::Handle::new();
        let stopping = {
            let handle = handle.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                handle.graceful_shutdown(Some(DRAIN));
            })
        };
        let limit = ConnectionLimit { inner: DefaultAcceptor, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)) };
        let server =
            axum_server::from_tcp(self.listener)?.handle(handle).first_request_timeout(HEADER_TIMEOUT).http1_only();
        let service = router.into_make_service();
        let served = match self.tls {
            Some(tls) => {
                let mut server = server.acceptor(RustlsAcceptor::new(tls).acceptor(limit));
                configure(&mut server);
                server.serve(service).await
            }
            None => {
                let mut server = server.acceptor(limit);
                configure(&mut server);
                server.serve(service).await
            }
        };
        // The server can also end on its own (an accept error); the stopping task ends with it.
        stop.cancel();
        let _ = stopping.await;
        served
    }
}

/// A socket listening on `bind`, ready for the async runtime.
fn listen(bind: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(bind).map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn configure<A: axum_server::Address, Acc>(server: &mut axum_server::Server<A, Acc>) {
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
}

/// Accepts a connection only while fewer than the limit are open; the permit lives as long as
/// the connection's stream.
#[derive(Clone)]
struct ConnectionLimit<A> {
    inner: A,
    slots: Arc<Semaphore>,
}

impl<A, I, S> Accept<I, S> for ConnectionLimit<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Limited<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.slots.clone().try_acquire_owned();
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let permit = permit.map_err(|_| io::Error::other("connection limit reached"))?;
            let (stream, service) = accepted.await?;
            Ok((Limited { stream, _permit: permit }, service))
        })
    }
}

/// A connection's stream with the permit that counts it.
pub struct Limited<S> {
    stream: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
