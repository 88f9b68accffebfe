//! Writing a device-state stream: header, records, end.

use super::{
    FORMAT_VERSION, HEADER_FIXED_LEN, KIND_END, KIND_PATCH, KIND_WHOLE, MAGIC, MAX_KIND_LEN,
    RECORD_HEADER_LEN, StateChunk, StreamId, crc_of,
};

/// Why a stream could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The device kind is empty or longer than [`MAX_KIND_LEN`] bytes.
    #[error("device kind {kind:?} is {len} bytes; a stream header takes 1 to {MAX_KIND_LEN}")]
    KindLength {
        /// The kind given.
        kind: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A chunk's payload does not fit in one record.
    #[error("chunk of section {section} is {len} bytes, over the {max}-byte record limit")]
    ChunkTooLarge {
        /// The section.
        section: u32,
        /// The payload length.
        len: usize,
        /// The largest payload allowed.
        max: u32,
    },
    /// The stream already holds `u32::MAX` records.
    #[error("stream already holds {records} records, the most a sequence number can count")]
    TooManyRecords {
        /// Records written so far.
        records: u32,
    },
}

/// Writes records with consecutive sequence numbers. It is a small value: clone it to encode a
/// batch tentatively and keep the clone only if the whole batch succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEncoder {
    seq: u32,
    max_record: u32,
}

impl StreamEncoder {
    /// An encoder refusing payloads over `max_record` bytes.
    pub fn new(max_record: u32) -> Self {
        StreamEncoder { seq: 0, max_record }
    }

    /// Records written so far.
    pub fn records(&self) -> u32 {
        self.seq
    }

    /// Appends the stream header for `id` to `out`.
    pub fn header(id: &StreamId, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = id.kind.len();
        if len == 0 || len > MAX_KIND_LEN {
            return Err(EncodeError::KindLength {
                kind: id.kind.clone(),
                len,
            });
        }
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&id.version.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        debug_assert_eq!(out.len() - start, HEADER_FIXED_LEN);
        out.extend_from_slice(id.kind.as_bytes());
        let crc = crc_of(&[&out[start..]]);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Appends one record carrying `chunk` to `out`.
    pub fn chunk(&mut self, chunk: &StateChunk, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (kind, section, offset, data) = match chunk {
            StateChunk::Whole { section, data } => (KIND_WHOLE, *section, 0, data),
            StateChunk::Patch {
                section,
                offset,
                data,
            } => (KIND_PATCH, *section, *offset, data),
        };
        let len = u32::try_from(data.len())
            .ok()
            .filter(|l| *l <= self.max_record)
            .ok_or(EncodeError::ChunkTooLarge {
                section,
                len: data.len(),
                max: self.max_record,
            })?;
        self.record(kind, section, offset, len, data, out)
    }

    /// Appends the end record to `out`.
    pub fn end(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let count = u64::from(self.seq);
        self.record(KIND_END, 0, count, 0, &[], out)
    }

    fn record(
        &mut self,
        kind: u32,
        section: u32,
        offset: u64,
        len: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if self.seq == u32::MAX {
            return Err(EncodeError::TooManyRecords { records: self.seq });
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[0..4].copy_from_slice(&kind.to_le_bytes());
        head[4..8].copy_from_slice(&self.seq.to_le_bytes());
        head[8..12].copy_from_slice(&section.to_le_bytes());
        head[12..16].copy_from_slice(&len.to_le_bytes());
        head[16..24].copy_from_slice(&offset.to_le_bytes());
        let crc = crc_of(&[&head[..24], payload]);
        head[24..28].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(payload);
        self.seq += 1;
        Ok(())
    }
}
