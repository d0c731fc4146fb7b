//! Closing a connection without losing the answer: the "lingering close" of nginx and Apache.
//!
//! The store refuses some requests before reading their bodies: an upload without a token, to
//! a publisher the caller is not a member of, or larger than allowed. hyper then writes the
//! refusal and closes the connection while the client is still sending. Closing a socket
//! with unread bytes makes the kernel answer with a reset, and a client still writing the
//! body sees "broken pipe" or "connection reset" instead of the problem+json that says what
//! to fix. curl, reqwest and every other HTTP/1.1 client that does not wait for
//! `100 Continue` do.
//!
//! [`LingeringClose`] stops that at the point where hyper closes the connection
//! (`poll_shutdown`): it sends the end of the stream, so the client has the whole answer, and
//! then reads and discards what the client still sends until the client closes too, for at
//! most [`LINGER_TIME`] in all and [`LINGER_IDLE`] without a byte. A connection that closes
//! normally reaches the end of the stream at once, so this costs one read per connection, not
//! per request.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::send_timeout::SendTimeout;

/// The longest a closing connection is read from (nginx's `lingering_time`). A client that
/// is still sending after this gets the reset: its upload could not have been of any use.
pub const LINGER_TIME: Duration = Duration::from_secs(30);

/// The longest a closing connection may send nothing before it is dropped (nginx's
/// `lingering_timeout`).
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// A connection that lingers when closed: see the [module](self).
#[derive(Debug)]
pub struct LingeringClose<S> {
    stream: S,
    /// The longest the close lingers, in all and without a byte.
    limits: (Duration, Duration),
    /// Set once the write side is shut: from then on, reads are discarded.
    lingering: Option<Linger>,
}

#[derive(Debug)]
struct Linger {
    /// Ends the linger whatever the client does.
    deadline: Pin<Box<Sleep>>,
    /// Ends it when the client has sent nothing for [`LINGER_IDLE`]; reset by every read.
    idle: Pin<Box<Sleep>>,
}

impl<S> LingeringClose<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Self::with_limits(stream, LINGER_TIME, LINGER_IDLE)
    }

    /// Wraps `stream`, lingering at most `time` in all and `idle` without a byte. Tests use
    /// short limits instead of tokio's paused clock, whose feature would reach the benchmarked
    /// binary through the dev-dependencies and put a lock on every clock read.
    fn with_limits(stream: S, time: Duration, idle: Duration) -> Self {
        Self {
            stream,
            limits: (time, idle),
            lingering: None,
        }
    }

    /// The connection.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.lingering.is_none() {
            // Flushes what is written and sends the end of the stream: the client now has
            // the whole answer, whatever happens to the bytes it still sends.
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            let now = Instant::now();
            let (time, idle) = this.limits;
            this.lingering = Some(Linger {
                deadline: Box::pin(tokio::time::sleep_until(now + time)),
                idle: Box::pin(tokio::time::sleep_until(now + idle)),
            });
        }
        let Some(linger) = this.lingering.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if linger.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let mut discard = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut discard);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // The client closed its side (or the connection broke): nothing more to wait for.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let idle_until = Instant::now() + this.limits.1;
                    linger.idle.as_mut().reset(idle_until);
                }
                // tokio's cooperative budget also ends here under a flood, yielding the thread
                // to its other connections; the deadline is checked when polled again.
                Poll::Pending => {
                    return match linger.idle.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// axum-server's acceptor for TLS: lingers on the TCP connection beneath TLS, once the TLS
/// session has sent its `close_notify`, and gives up on a client that reads nothing for
/// `send_timeout` ([`SendTimeout`]), as plain HTTP connections do.
#[derive(Debug, Clone, Copy)]
pub struct LingeringAcceptor {
    /// `http.send_timeout_secs`.
    pub send_timeout: Duration,
}

impl<I, S> axum_server::accept::Accept<I, S> for LingeringAcceptor {
    type Stream = LingeringClose<SendTimeout<I>>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let stream = SendTimeout::new(stream, self.send_timeout);
        std::future::ready(Ok((LingeringClose::new(stream), service)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    /// A client that sends `body_len` bytes after its request, and reads the answer only once
    /// everything is sent, as an HTTP/1.1 client uploading a body does.
    async fn send_all_then_read(
        addr: std::net::SocketAddr,
        body_len: usize,
    ) -> io::Result<Vec<u8>> {
        let mut client = TcpStream::connect(addr).await?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            client.write_all(&chunk).await?;
            sent += chunk.len();
        }
        client.shutdown().await?;
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await?;
        Ok(answer)
    }

    /// A server that answers at once, reads nothing, and closes as hyper does.
    async fn answer_unread(listener: TcpListener, linger: bool) {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = stream.set_nodelay(true);
        let mut stream = LingeringClose::new(stream);
        stream
            .write_all(b"refused")
            .await
            .expect("write the answer");
        if linger {
            stream.shutdown().await.expect("linger");
        }
    }

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        (listener, addr)
    }

    // More than loopback's socket buffers hold, so the client is still sending at the close.
    const BODY_LEN: usize = 64 * 1024 * 1024;

    #[tokio::test]
    async fn a_client_still_sending_gets_the_answer() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(answer_unread(listener, true));
        let answer = send_all_then_read(addr, BODY_LEN)
            .await
            .expect("the answer");
        assert_eq!(answer, b"refused");
        server.await.expect("server");
    }

    /// What the lingering is for: without it, the same client loses the answer.
    #[tokio::test]
    async fn without_lingering_the_client_sees_a_reset() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(answer_unread(listener, false));
        let outcome = send_all_then_read(addr, BODY_LEN).await;
        server.await.expect("server");
        assert!(outcome.is_err(), "expected a reset, got {outcome:?}");
    }

    /// Short limits, so that the tests run in real time, with margins wide enough for a
    /// loaded test machine to pause a thread without changing the outcome.
    const TIME: Duration = Duration::from_millis(2000);
    const IDLE: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_idle_limit() {
        let (listener, addr) = listener().await;
        let client = TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let mut stream = LingeringClose::with_limits(stream, TIME, IDLE);
        let started = Instant::now();
        stream.shutdown().await.expect("linger");
        let lingered = started.elapsed();
        assert!(lingered >= IDLE && lingered < TIME, "lingered {lingered:?}");
        drop(client);
    }

    #[tokio::test]
    async fn a_client_that_keeps_sending_is_dropped_at_the_deadline() {
        let (listener, addr) = listener().await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let trickle = tokio::spawn(async move {
            // A byte every 20 ms, well within the idle limit, for far longer than the deadline.
            for _ in 0..500 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut stream = LingeringClose::with_limits(stream, TIME, IDLE);
        let started = Instant::now();
        stream.shutdown().await.expect("linger");
        let lingered = started.elapsed();
        assert!(
            lingered >= TIME && lingered < Duration::from_secs(8),
            "lingered {lingered:?}"
        );
        drop(stream);
        trickle.abort();
    }
}
