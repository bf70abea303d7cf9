//! A deadline on the HTTP phase of a connection (slow-loris defence).
//!
//! The WebSocket handshake timeout of [`super::connection`] only starts once
//! the connection is upgraded. Before that, hyper (as axum runs it, without a
//! timer) would wait forever for a request's headers, so a client could hold
//! any number of TCP connections open by sending nothing, or a few bytes of
//! a request now and then. [`UpgradeDeadline`] wraps a listener so that
//! every accepted connection must reach the WebSocket upgrade within the
//! handshake timeout: until the upgrade handler opens the connection's
//! [`UpgradeLatch`], a read after the deadline fails, and hyper closes the
//! connection. Plain HTTP requests (`/healthz`) on a kept-alive connection
//! count against the same deadline.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Opened by the upgrade handler: the connection is now a WebSocket and the
/// HTTP deadline no longer applies. Reaches the handler as connect info.
#[derive(Clone, Debug, Default)]
pub(crate) struct UpgradeLatch(Arc<AtomicBool>);

impl UpgradeLatch {
    /// Lifts the deadline of this connection.
    pub(crate) fn open(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A listener whose connections must upgrade within `timeout`.
pub(crate) struct UpgradeDeadline<L> {
    inner: L,
    timeout: Duration,
}

impl<L> UpgradeDeadline<L> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: L, timeout: Duration) -> Self {
        UpgradeDeadline { inner, timeout }
    }
}

impl<L: Listener> Listener for UpgradeDeadline<L> {
    type Io = DeadlineIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let io = DeadlineIo {
            inner: io,
            latch: UpgradeLatch::default(),
            deadline: Some(Box::pin(tokio::time::sleep(self.timeout))),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl<L: Listener> Connected<IncomingStream<'_, UpgradeDeadline<L>>> for UpgradeLatch {
    fn connect_info(stream: IncomingStream<'_, UpgradeDeadline<L>>) -> Self {
        stream.io().latch.clone()
    }
}

/// An accepted connection under the deadline.
pub(crate) struct DeadlineIo<T> {
    inner: T,
    latch: UpgradeLatch,
    /// `None` once the latch was seen open.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deadline.is_some() && this.latch.is_open() {
            this.deadline = None;
        }
        if let Some(deadline) = this.deadline.as_mut() {
            // Polling registers the timer, so a read that waits for bytes
            // that never come is woken, and fails, at the deadline.
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no WebSocket upgrade within the handshake timeout",
                )));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
