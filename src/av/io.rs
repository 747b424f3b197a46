//! Where a pipeline reads from and writes to. The engine does not know whether its input is a
//! file or a socket: an [`InputSource`] is a file path or bytes arriving in order through a
//! custom AVIO reader; an [`OutputSink`] is a file (a [`FileSink`]), or the muxed bytes written
//! in order to a writer (a socket, a channel, a segmenter).
//!
//! A file sink is written in place, or made final by the [`Publish`] its caller hands in (the
//! atomic file of `output::file`: temporary name, fsync, rename). The engine only calls it at
//! the right moments: it seals each output when its muxer closes it, and publishes all of a
//! run's outputs together once every stage has succeeded, or discards them.
//!
//! Owns the endpoints only; imports nothing outside `av`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::ff;

/// How long a channel reader waits before letting the demuxer look at its cancel flag again.
const POLL: Duration = Duration::from_millis(100);

/// Reads the chunks sent on a channel, in order (a socket's receiving thread, a hub reader). The
/// senders hanging up is the end of the stream. A read that waits longer than a moment returns
/// [`std::io::ErrorKind::Interrupted`], which libav's reader retries after checking for a cancel,
/// so that a cancel reaches a stalled feed.
pub struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.chunk.len() {
            match self.rx.recv_timeout(POLL) {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(std::io::ErrorKind::Interrupted.into())
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Sends what is written as chunks on a channel (to a socket's sending thread, a segmenter). A
/// full channel holds the muxer back; a receiver gone is a broken pipe.
pub struct ChannelWriter {
    tx: Sender<Vec<u8>>,
}

impl ChannelWriter {
    pub fn new(tx: Sender<Vec<u8>>) -> ChannelWriter {
        ChannelWriter { tx }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .send(buf.to_vec())
            .map_err(|_| std::io::ErrorKind::BrokenPipe)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes read in order (a socket, the receiving end of a channel), handed to the demuxer once.
#[derive(Clone)]
pub struct ByteSource {
    reader: Arc<Mutex<Option<Box<dyn Read + Send>>>>,
    /// A name for messages, and a hint to the format probe (`udp-in.ts`).
    pub name: String,
}

impl ByteSource {
    pub fn new(name: impl Into<String>, reader: impl Read + Send + 'static) -> ByteSource {
        ByteSource {
            reader: Arc::new(Mutex::new(Some(Box::new(reader)))),
            name: name.into(),
        }
    }

    /// A source fed through a channel of at most `capacity` chunks: send the bytes on the
    /// sender, and drop it at the end of the stream.
    pub fn channel(name: impl Into<String>, capacity: usize) -> (Sender<Vec<u8>>, ByteSource) {
        let (tx, rx) = bounded(capacity);
        (tx, ByteSource::new(name, ChannelReader::new(rx)))
    }

    /// The reader, once: a stream cannot be read twice.
    pub(super) fn take(&self) -> Option<Box<dyn Read + Send>> {
        self.reader.lock().ok()?.take()
    }
}

/// Bytes written in order (a socket, the sending end of a channel, a segmenter), handed to the
/// muxer once.
#[derive(Clone)]
pub struct ByteSink {
    writer: Arc<Mutex<Option<Box<dyn Write + Send>>>>,
    pub name: String,
}

impl ByteSink {
    pub fn new(name: impl Into<String>, writer: impl Write + Send + 'static) -> ByteSink {
        ByteSink {
            writer: Arc::new(Mutex::new(Some(Box::new(writer)))),
            name: name.into(),
        }
    }

    /// A sink whose bytes arrive on the returned receiver, at most `capacity` chunks ahead of
    /// it; the receiver sees the end when the run is over.
    pub fn channel(name: impl Into<String>, capacity: usize) -> (ByteSink, Receiver<Vec<u8>>) {
        let (tx, rx) = bounded(capacity);
        (ByteSink::new(name, ChannelWriter::new(tx)), rx)
    }

    fn take(&self) -> Option<Box<dyn Write + Send>> {
        self.writer.lock().ok()?.take()
    }
}

impl std::fmt::Debug for ByteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteSource({})", self.name)
    }
}

impl std::fmt::Debug for ByteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteSink({})", self.name)
    }
}

/// What a pipeline reads.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// A file, opened by path (the probe may hand over the context it opened).
    File(PathBuf),
    /// A byte stream, read through a custom AVIO reader; not seekable.
    Stream(ByteSource),
    /// Packets of a demux shared with other readers (a live source's one demux): live
    /// pipelines only.
    Packets(PacketFeed),
}

/// A subscription to a shared demux, handed to the pipeline that reads it, once.
#[derive(Clone)]
pub struct PacketFeed {
    reader: Arc<Mutex<Option<super::packets::PacketReader>>>,
    /// A name for messages.
    pub name: String,
}

impl PacketFeed {
    pub fn new(name: impl Into<String>, reader: super::packets::PacketReader) -> PacketFeed {
        PacketFeed {
            reader: Arc::new(Mutex::new(Some(reader))),
            name: name.into(),
        }
    }

    /// The reader, once.
    pub(super) fn take(&self) -> Option<super::packets::PacketReader> {
        self.reader.lock().ok()?.take()
    }
}

impl std::fmt::Debug for PacketFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PacketFeed({})", self.name)
    }
}

impl InputSource {
    /// The file, when the input is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            InputSource::File(p) => Some(p),
            InputSource::Stream(_) | InputSource::Packets(_) => None,
        }
    }

    /// What messages call it: the file's path, or the stream's name.
    pub fn label(&self) -> PathBuf {
        match self {
            InputSource::File(p) => p.clone(),
            InputSource::Stream(s) => PathBuf::from(&s.name),
            InputSource::Packets(s) => PathBuf::from(&s.name),
        }
    }

    /// Whether two inputs are the same file or the very same stream (one decode can feed both).
    pub fn same_as(&self, other: &InputSource) -> bool {
        match (self, other) {
            (InputSource::File(a), InputSource::File(b)) => a == b,
            (InputSource::Stream(a), InputSource::Stream(b)) => Arc::ptr_eq(&a.reader, &b.reader),
            (InputSource::Packets(a), InputSource::Packets(b)) => Arc::ptr_eq(&a.reader, &b.reader),
            _ => false,
        }
    }

    /// Opens a stream input for demuxing; `interrupt` returning `true` aborts a stalled read.
    pub(super) fn open_stream(
        s: &ByteSource,
        interrupt: impl FnMut() -> bool + Send + 'static,
    ) -> Result<ff::format::context::Input, ff::Error> {
        Self::open_stream_with(s, ff::Dictionary::new(), interrupt)
    }

    /// As [`InputSource::open_stream`], with demuxer options (e.g. a shorter `analyzeduration`
    /// for a live feed).
    pub(super) fn open_stream_with(
        s: &ByteSource,
        mut opts: ff::Dictionary,
        interrupt: impl FnMut() -> bool + Send + 'static,
    ) -> Result<ff::format::context::Input, ff::Error> {
        let reader = s.take().ok_or(ff::Error::Other { errno: libc::EBUSY })?;
        let io = ff::format::context::StreamIo::from_read(reader)?;
        // As for files: what arrives must not make the demuxer open files or the network.
        opts.set("protocol_whitelist", "none");
        ff::format::input_from_stream_with_interrupt(io, Some(&s.name), Some(opts), interrupt)
    }
}

impl From<PathBuf> for InputSource {
    fn from(p: PathBuf) -> Self {
        InputSource::File(p)
    }
}

/// Where one output of a pipeline goes.
#[derive(Debug, Clone)]
pub enum OutputSink {
    /// A file the muxer writes by path.
    File(FileSink),
    /// The muxed bytes, in order, through a custom AVIO writer. The muxer must not need to
    /// seek (MPEG-TS, fragmented MP4, Matroska live).
    Stream(ByteSink),
}

/// How a written file becomes final. The engine writes the output at [`Publish::writing`],
/// calls [`Publish::seal`] in its muxing thread once the muxer closed it complete, and, after
/// the run, [`Publish::publish`] on every output when every stage succeeded, else
/// [`Publish::discard`].
pub trait Publish: Send + Sync {
    /// Where the file is written until it is published.
    fn writing(&self, path: &Path) -> PathBuf;
    /// The file `written` is complete: make it durable.
    fn seal(&self, written: &Path) -> std::io::Result<()>;
    /// Every output of the run is complete: `written` becomes `path`.
    fn publish(&self, written: &Path, path: &Path) -> std::io::Result<()>;
    /// The run failed: remove what it wrote (never a file already under its final name).
    fn discard(&self, written: &Path);
}

/// A file output: its final path, and what publishes it.
#[derive(Clone)]
pub struct FileSink {
    pub path: PathBuf,
    publish: Option<Arc<dyn Publish>>,
}

impl FileSink {
    /// Written under its final name and left as it is whatever the run's outcome: the files of
    /// a package, or of a live window, inside a folder the caller publishes or serves whole.
    pub fn in_place(path: impl Into<PathBuf>) -> FileSink {
        FileSink {
            path: path.into(),
            publish: None,
        }
    }

    /// Written, then made final, by `publish`.
    pub fn published(path: impl Into<PathBuf>, publish: Arc<dyn Publish>) -> FileSink {
        FileSink {
            path: path.into(),
            publish: Some(publish),
        }
    }

    /// Where the muxer writes it.
    pub fn writing(&self) -> PathBuf {
        match &self.publish {
            Some(p) => p.writing(&self.path),
            None => self.path.clone(),
        }
    }

    /// What publishes it, unless it is written in place.
    pub fn publisher(&self) -> Option<&dyn Publish> {
        self.publish.as_deref()
    }
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.publish.is_some() {
            "published"
        } else {
            "in place"
        };
        write!(f, "FileSink({}, {how})", self.path.display())
    }
}

impl OutputSink {
    /// The final file, when the output is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            OutputSink::File(f) => Some(&f.path),
            OutputSink::Stream(_) => None,
        }
    }

    /// What publishes the file when the run completes, when the output is a file so published
    /// (such an output is a whole file, which may be measured as it is written).
    pub fn publisher(&self) -> Option<&dyn Publish> {
        match self {
            OutputSink::File(f) => f.publisher(),
            OutputSink::Stream(_) => None,
        }
    }

    /// Opens a stream output for muxing with `muxer`.
    pub(super) fn open_stream(
        s: &ByteSink,
        muxer: &str,
    ) -> Result<ff::format::context::Output, ff::Error> {
        let writer = s.take().ok_or(ff::Error::Other { errno: libc::EBUSY })?;
        let io = ff::format::context::StreamIo::from_write(writer)?;
        ff::format::output_to_stream(io, None, Some(muxer))
    }
}
