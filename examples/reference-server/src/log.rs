//! The stderr writer: one task owns stderr so that a reader that never drains it stalls only that task.

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

/// How many flood lines are written between two yields, so a big flood shares the runtime.
const FLOOD_BATCH: u64 = 512;

enum Message {
    Line(String),
    Flush(oneshot::Sender<()>),
}

/// A handle for writing diagnostic lines to stderr; sending never blocks.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    prefix: String,
    tx: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(line) => f.debug_tuple("Line").field(line).finish(),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Log {
    /// Starts the stderr task, which first writes `flood` lines `flood line i` between log lines.
    pub(crate) fn spawn<W>(name: &str, output: W, flood: u64) -> Self
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(output, rx, flood));
        Self {
            prefix: format!("{} {name}", crate::BINARY_NAME),
            tx,
        }
    }

    /// Writes a line exactly as given.
    pub(crate) fn raw(&self, line: String) {
        // A stderr task that has stopped (stderr closed) is not worth failing a request over.
        let _ = self.tx.send(Message::Line(line));
    }

    /// Writes a line prefixed with the server's binary and name.
    pub(crate) fn line(&self, text: &str) {
        self.raw(format!("{}: {text}", self.prefix));
    }

    /// Waits until everything sent so far has reached stderr.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn write_loop<W>(output: W, mut rx: mpsc::UnboundedReceiver<Message>, flood: u64)
where
    W: AsyncWrite + Unpin,
{
    let mut out = BufWriter::new(output);
    let mut next_flood = 1;
    loop {
        // Log lines go out as soon as they are queued; the flood fills the gaps between them.
        let message = if next_flood <= flood {
            match rx.try_recv() {
                Ok(message) => message,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let line = format!("flood line {next_flood}\n");
                    if next_flood % FLOOD_BATCH == 0 {
                        tokio::task::yield_now().await;
                    }
                    next_flood += 1;
                    if out.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    if next_flood > flood && out.flush().await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv().await {
                Some(message) => message,
                None => break,
            }
        };
        let written = match message {
            Message::Line(mut line) => {
                line.push('\n');
                match out.write_all(line.as_bytes()).await {
                    Ok(()) if rx.is_empty() => out.flush().await,
                    other => other,
                }
            }
            Message::Flush(done) => {
                let flushed = out.flush().await;
                let _ = done.send(());
                flushed
            }
        };
        if written.is_err() {
            return;
        }
    }
    // Every handle is gone; whatever is still buffered goes out before the task ends.
    let _ = out.flush().await;
}
