//! Streaming validation of an upload while it is written to the blob store.
//!
//! The request body is read once. Each chunk goes to the blob store (which hashes and writes
//! it under a temporary name) and, through a small bounded channel, to the strict package
//! reader on a blocking thread. When the body ends, the reader's verdict and the signature
//! checks run *before* the blob store sees end-of-file; a refusal turns into a read error, so
//! the blob store discards the temporary data and nothing becomes visible. One pass over the
//! bytes, memory bounded by a few chunks, and no blob of a refused upload ever exists.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::PollSender;

use crate::error::ApiError;

/// Chunks buffered between the upload and the validator.
const VALIDATOR_QUEUE: usize = 8;

/// A blocking `Read` over the chunks the upload hands over.
pub struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// The decision taken at end of body; `T` is what the handler needs afterwards.
pub type Verdict<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send>>;

/// Where the verdict is left for the handler (the blob store only sees an I/O error).
pub type VerdictSlot<T> = Arc<Mutex<Option<Result<T, ApiError>>>>;

/// An `AsyncRead` over the request body that feeds the validator and withholds end-of-file
/// until the verdict is in.
pub struct ValidatingReader<S, T> {
    body: S,
    to_validator: Option<PollSender<Bytes>>,
    /// Read from the body, not yet handed to the validator.
    unsent: Option<Bytes>,
    /// Handed to the validator, not yet to the blob store.
    unread: Bytes,
    verdict: Option<Verdict<T>>,
    make_verdict: Option<Box<dyn FnOnce() -> Verdict<T> + Send>>,
    slot: VerdictSlot<T>,
    finished: bool,
}

impl<S, T> ValidatingReader<S, T>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
    T: Send + 'static,
{
    /// Wraps `body`. Returns the reader, the validator's input, and the slot where the
    /// verdict (made by `make_verdict` once the body has ended or the validator gave up)
    /// will be found.
    pub fn new(
        body: S,
        make_verdict: impl FnOnce() -> Verdict<T> + Send + 'static,
    ) -> (Self, ChunkReader, VerdictSlot<T>) {
        let (tx, rx) = tokio::sync::mpsc::channel(VALIDATOR_QUEUE);
        let slot: VerdictSlot<T> = Arc::new(Mutex::new(None));
        let reader = Self {
            body,
            to_validator: Some(PollSender::new(tx)),
            unsent: None,
            unread: Bytes::new(),
            verdict: None,
            make_verdict: Some(Box::new(make_verdict)),
            slot: Arc::clone(&slot),
            finished: false,
        };
        (
            reader,
            ChunkReader {
                chunks: rx,
                current: Bytes::new(),
            },
            slot,
        )
    }

    /// Ends the validator's input and starts the verdict.
    fn start_verdict(&mut self) {
        self.to_validator = None;
        self.unsent = None;
        if let Some(make) = self.make_verdict.take() {
            self.verdict = Some(make());
        }
    }
}

impl<S, T> AsyncRead for ValidatingReader<S, T>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
    T: Send + 'static,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.unread.is_empty() {
                let n = buf.remaining().min(this.unread.len());
                buf.put_slice(&this.unread[..n]);
                this.unread = this.unread.slice(n..);
                return Poll::Ready(Ok(()));
            }
            if this.finished {
                return Poll::Ready(Ok(()));
            }
            if let Some(verdict) = this.verdict.as_mut() {
                let outcome = ready!(verdict.as_mut().poll(cx));
                this.verdict = None;
                this.finished = true;
                let refused = outcome.is_err();
                if let Ok(mut slot) = this.slot.lock() {
                    *slot = Some(outcome);
                }
                return Poll::Ready(if refused {
                    Err(io::Error::other("upload refused by validation"))
                } else {
                    Ok(())
                });
            }
            if let Some(chunk) = this.unsent.take() {
                let Some(sender) = this.to_validator.as_mut() else {
                    this.start_verdict();
                    continue;
                };
                match sender.poll_reserve(cx) {
                    Poll::Pending => {
                        this.unsent = Some(chunk);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(())) => {
                        if sender.send_item(chunk.clone()).is_err() {
                            this.start_verdict();
                            continue;
                        }
                        this.unread = chunk;
                    }
                    // The validator stopped reading: it has found something wrong already.
                    Poll::Ready(Err(_)) => this.start_verdict(),
                }
                continue;
            }
            match ready!(Pin::new(&mut this.body).poll_next(cx)) {
                Some(Ok(chunk)) => this.unsent = Some(chunk),
                Some(Err(e)) => {
                    // The client went away or sent less than it announced.
                    this.to_validator = None;
                    return Poll::Ready(Err(e));
                }
                None => this.start_verdict(),
            }
        }
    }
}
