//! A saving session's outgoing bytes: the encoded stream not yet read, and how much of it is the
//! initial pre-copy state.

use crate::device_stream::{EncodeError, StateChunk, StreamEncoder, StreamId};

/// The saving side of one session.
#[derive(Debug)]
pub(crate) struct SavingStream {
    encoder: StreamEncoder,
    /// Encoded bytes; `buf[pos..]` is not read yet.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of `buf[pos..]` that belong to the initial pre-copy state.
    initial_left: u64,
    /// Whether the end record has been queued.
    ended: bool,
}

impl SavingStream {
    /// A stream holding the header and `initial` (the pre-copy initial state, or the whole state
    /// for a STOP_COPY session, then `end`).
    pub(crate) fn open(
        id: &StreamId,
        max_record: u32,
        chunks: &[StateChunk],
        end: bool,
    ) -> Result<Self, EncodeError> {
        let mut buf = Vec::new();
        StreamEncoder::header(id, &mut buf)?;
        let mut stream = SavingStream {
            encoder: StreamEncoder::new(max_record),
            buf,
            pos: 0,
            initial_left: 0,
            ended: false,
        };
        stream.append(chunks, end)?;
        if !end {
            stream.initial_left = stream.pending();
        }
        Ok(stream)
    }

    /// Queues `chunks` (and the end record with `end`); all or nothing.
    pub(crate) fn append(&mut self, chunks: &[StateChunk], end: bool) -> Result<(), EncodeError> {
        let mut encoder = self.encoder;
        let mut tail = Vec::with_capacity(chunks.iter().map(|c| c.encoded_len() as usize).sum());
        for chunk in chunks {
            encoder.chunk(chunk, &mut tail)?;
        }
        if end {
            encoder.end(&mut tail)?;
        }
        self.encoder = encoder;
        self.buf.extend_from_slice(&tail);
        self.ended |= end;
        Ok(())
    }

    /// Bytes queued and not yet read.
    pub(crate) fn pending(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// Initial pre-copy bytes not yet read.
    pub(crate) fn initial_left(&self) -> u64 {
        self.initial_left
    }

    /// Whether the end record has been queued (STOP_COPY reached).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Copies the next queued bytes into `out`; returns how many.
    pub(crate) fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.initial_left -= self.initial_left.min(n as u64);
        // Drop what was read once it dominates the buffer, so a long pre-copy stays small.
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 1 << 20 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        n
    }
}
