//! The device-state stream: what a saving session hands out and a resuming session takes in.
//!
//! The VFIO uAPI leaves the data stream opaque; this is our format, shared by the v2 data stream
//! and the v1 region so that both carry the same bytes. It is built so that the destination can
//! reject a corrupt, truncated, reordered or foreign stream *before* anything reaches the device:
//! every record carries a sequence number and a CRC-32 (IEEE), the header names the device kind
//! and its state version, and only an explicit end record makes a stream complete.
//!
//! ```text
//! header   magic "VFDSTATE" | format version u32 | device version u32 | kind length u32 |
//!          kind bytes (UTF-8, 1..=64) | crc32 u32 (over everything before it)
//! record   kind u32 | seq u32 | section u32 | payload length u32 | offset u64 |
//!          crc32 u32 (over the 24 bytes before it and the payload) | reserved u32 (0) | payload
//! ```
//!
//! All integers are little endian. Record kinds: `WHOLE` (the payload is the section's entire new
//! contents; `offset` is 0), `PATCH` (the payload overwrites `[offset, offset + len)` of a
//! section sent earlier in the same stream, and must lie inside it), `END` (no payload; `offset`
//! holds the number of records before it). Sequence numbers start at 0 and count every record.
//!
//! The device's state is a set of sections (device memory, registers, queue state...) whose ids
//! and contents are the device's business; the stream only carries them. A typical live
//! migration sends a section `WHOLE` during PRE_COPY, `PATCH`es of what got dirty afterwards,
//! and the small non-iterative sections `WHOLE` in STOP_COPY.

mod decode;
mod encode;

use std::collections::BTreeMap;
use std::fmt;

pub use decode::{StreamDecoder, StreamError};
pub use encode::{EncodeError, StreamEncoder};

/// The magic that opens every device-state stream.
pub const MAGIC: [u8; 8] = *b"VFDSTATE";
/// The version of the framing described in this module.
pub const FORMAT_VERSION: u32 = 1;
/// The longest device kind name a header may carry.
pub const MAX_KIND_LEN: usize = 64;
/// Bytes of a record header (before its payload).
pub const RECORD_HEADER_LEN: usize = 32;
/// Bytes of the fixed part of the stream header (before the kind name).
const HEADER_FIXED_LEN: usize = 20;

/// Record kind: the section's whole contents.
const KIND_WHOLE: u32 = 1;
/// Record kind: a patch of part of a section sent earlier.
const KIND_PATCH: u32 = 2;
/// Record kind: the end of the stream.
const KIND_END: u32 = 0x454e_4421;

/// Which device a stream belongs to: its kind (e.g. `"emulated:dma-engine"`) and the version of
/// its state layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId {
    /// The device kind; 1 to [`MAX_KIND_LEN`] bytes of UTF-8.
    pub kind: String,
    /// The version of the device's state sections.
    pub version: u32,
}

impl StreamId {
    /// A stream id.
    pub fn new(kind: impl Into<String>, version: u32) -> Self {
        StreamId {
            kind: kind.into(),
            version,
        }
    }

    /// Bytes of the stream header for this id.
    pub fn header_len(&self) -> usize {
        HEADER_FIXED_LEN + self.kind.len() + 4
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.kind, self.version)
    }
}

/// One piece of device state handed to the stream by the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChunk {
    /// The entire contents of a section (replacing any earlier contents).
    Whole {
        /// The device's section id.
        section: u32,
        /// The section's bytes.
        data: Vec<u8>,
    },
    /// New bytes for part of a section already sent whole in this stream.
    Patch {
        /// The device's section id.
        section: u32,
        /// Byte offset inside the section.
        offset: u64,
        /// The bytes at `offset`.
        data: Vec<u8>,
    },
}

impl StateChunk {
    /// The payload bytes of this chunk.
    pub fn data(&self) -> &[u8] {
        match self {
            StateChunk::Whole { data, .. } | StateChunk::Patch { data, .. } => data,
        }
    }

    /// Bytes this chunk takes in the stream, framing included.
    pub fn encoded_len(&self) -> u64 {
        (RECORD_HEADER_LEN + self.data().len()) as u64
    }
}

/// The device state a complete, valid stream describes: every section's final contents, after
/// all patches. This is what a device loads at RESUMING -> STOP, in one piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateImage {
    sections: BTreeMap<u32, Vec<u8>>,
}

impl StateImage {
    /// The contents of `section`, if the stream carried it.
    pub fn section(&self, section: u32) -> Option<&[u8]> {
        self.sections.get(&section).map(Vec::as_slice)
    }

    /// Section ids and contents, by ascending id.
    pub fn sections(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.sections
            .iter()
            .map(|(id, data)| (*id, data.as_slice()))
    }

    /// Number of sections.
    pub fn len(&self) -> usize {
        self.sections.len()
    }

    /// True when the stream carried no section.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Total bytes over all sections.
    pub fn total_bytes(&self) -> u64 {
        self.sections.values().map(|d| d.len() as u64).sum()
    }
}

/// Bounds a resuming session puts on what a stream may make it hold, so that a hostile stream
/// cannot make the destination allocate without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Largest payload of one record.
    pub max_record: u32,
    /// Largest total size of all sections.
    pub max_image: u64,
}

impl Default for StreamLimits {
    /// 64 MiB per record and 256 MiB of state: far above the emulated devices (1 MiB of device
    /// memory), small enough to be safe on a 24 GiB host.
    fn default() -> Self {
        StreamLimits {
            max_record: 64 << 20,
            max_image: 256 << 20,
        }
    }
}

fn crc_of(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for p in parts {
        hasher.update(p);
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests;
