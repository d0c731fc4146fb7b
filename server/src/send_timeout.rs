//! Giving up on a client that stops reading: nginx's `send_timeout`.
//!
//! A response is written as fast as its client reads it. A client that stops reading keeps
//! its connection, and what the response holds, for as long as it likes: a blob download
//! holds one of `http.max_concurrent_downloads` slots, so a few hundred such clients would
//! have every other download refused with `503`. The request timeout does not help: it ends
//! once the response starts. [`SendTimeout`] fails a write that has made no progress for
//! `http.send_timeout_secs`; hyper then drops the connection and, with it, the response and
//! whatever it held. A slow client that keeps reading is never cut off: the limit is between
//! two writes that make progress, not on the whole response.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection whose writes fail after `limit` without progress: see the [module](self).
#[derive(Debug)]
pub struct SendTimeout<S> {
    stream: S,
    limit: Duration,
    /// The write deadline, kept between stalls so that a slow client does not cost an
    /// allocation per stalled write.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` is armed: the last write returned `Pending`.
    stalled: bool,
}

impl<S> SendTimeout<S> {
    /// Wraps `stream`.
    pub fn new(stream: S, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            stall: None,
            stalled: false,
        }
    }

    /// The connection.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// What a write that returned `written` means: progress disarms the deadline; waiting
    /// arms it (once per stall) and fails when it passes.
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if written.is_ready() {
            self.stalled = false;
            return written;
        }
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.limit;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let Some(stall) = self.stall.as_mut() else {
            return Poll::Pending;
        };
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {:?}", self.limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        self.after_write(cx, flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Short, so that the tests run in real time, with margins wide enough for a loaded test
    /// machine to pause a thread without changing the outcome.
    const LIMIT: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn a_client_that_reads_nothing_is_given_up_on() {
        // A pipe that holds 1 KiB: the rest of the answer waits for the reader.
        let (server, _client) = tokio::io::duplex(1024);
        let mut server = SendTimeout::new(server, LIMIT);
        let started = Instant::now();
        let error = server
            .write_all(&vec![0u8; 64 * 1024])
            .await
            .expect_err("the write must fail");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= LIMIT && waited < LIMIT * 8, "waited {waited:?}");
    }

    #[tokio::test]
    async fn a_slow_client_that_keeps_reading_gets_everything() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut server = SendTimeout::new(server, LIMIT);
        let answer = vec![7u8; 16 * 1024];
        let expected = answer.clone();
        let reader = tokio::spawn(async move {
            // 1 KiB every 100 ms: the whole answer takes three times the limit, but no write
            // waits longer than a fifth of it.
            let mut received = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                tokio::time::sleep(LIMIT / 5).await;
                let read = client.read(&mut chunk).await.expect("read");
                if read == 0 {
                    return received;
                }
                received.extend_from_slice(&chunk[..read]);
            }
        });
        server
            .write_all(&answer)
            .await
            .expect("a slow reader is not cut off");
        server.shutdown().await.expect("shutdown");
        drop(server);
        assert!(reader.await.expect("reader") == expected);
    }
}
