//! Reading a device-state stream incrementally, as a resuming session receives it.
//!
//! Bytes arrive in arbitrary pieces (the uAPI only preserves their order). The decoder validates
//! each header and record as soon as it is complete and folds it into a [`StateImage`], so memory
//! stays bounded by the image rather than by the stream (PRE_COPY may resend a page many times).
//! The first error is sticky: later bytes are ignored and [`StreamDecoder::finish`] reports it.
//! Nothing reaches the device until `finish` has returned a complete image.

use std::collections::btree_map::Entry;

use super::{
    FORMAT_VERSION, HEADER_FIXED_LEN, KIND_END, KIND_PATCH, KIND_WHOLE, MAGIC, MAX_KIND_LEN,
    RECORD_HEADER_LEN, StateImage, StreamId, StreamLimits, crc_of,
};

/// Why a device-state stream was rejected. `at` is the stream offset of the header or record
/// at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The first bytes are not [`MAGIC`]: not a device-state stream.
    #[error("not a device-state stream: it starts with {found:02x?}, not the magic")]
    BadMagic {
        /// The first 8 bytes received.
        found: [u8; 8],
    },
    /// The framing version is one this code does not read.
    #[error(
        "device-state stream format version {found} is not supported (this reads {FORMAT_VERSION})"
    )]
    UnsupportedFormat {
        /// The version in the header.
        found: u32,
    },
    /// The header's device kind length is 0 or over [`MAX_KIND_LEN`].
    #[error("stream header names a device kind of {len} bytes (1 to {MAX_KIND_LEN} allowed)")]
    BadKindLength {
        /// The length in the header.
        len: u32,
    },
    /// The device kind is not UTF-8.
    #[error("stream header's device kind is not UTF-8")]
    BadKindName,
    /// The header's checksum does not match.
    #[error("stream header checksum {stored:#010x} does not match its contents ({computed:#010x})")]
    HeaderChecksum {
        /// The checksum in the stream.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The stream was saved from another kind of device or state version.
    #[error("stream was saved from {found}, which this device ({expected}) does not accept")]
    Foreign {
        /// The id in the stream header.
        found: StreamId,
        /// The resuming device's own id.
        expected: StreamId,
    },
    /// A record's checksum does not match: the record was damaged.
    #[error(
        "record {seq} at stream offset {at}: checksum {stored:#010x} does not match its contents ({computed:#010x})"
    )]
    RecordChecksum {
        /// Stream offset of the record.
        at: u64,
        /// The record's sequence number.
        seq: u32,
        /// The checksum in the stream.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// A record is missing, repeated or out of order.
    #[error("record at stream offset {at} has sequence number {found}, expected {expected}")]
    OutOfSequence {
        /// Stream offset of the record.
        at: u64,
        /// The sequence number due.
        expected: u32,
        /// The sequence number found.
        found: u32,
    },
    /// A record of a kind this format does not define.
    #[error("record at stream offset {at} has unknown kind {kind:#x}")]
    UnknownRecordKind {
        /// Stream offset of the record.
        at: u64,
        /// The kind found.
        kind: u32,
    },
    /// A record is malformed: non-zero reserved field, a WHOLE record with an offset, an END
    /// record with a payload.
    #[error("record at stream offset {at} is malformed: {what}")]
    MalformedRecord {
        /// Stream offset of the record.
        at: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A record's payload exceeds the session's limit.
    #[error("record at stream offset {at} carries {len} bytes, over the {max}-byte limit")]
    RecordTooLarge {
        /// Stream offset of the record.
        at: u64,
        /// The payload length claimed.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A PATCH names a section not sent whole before it.
    #[error(
        "record at stream offset {at} patches section {section}, which the stream has not sent"
    )]
    PatchUnknownSection {
        /// Stream offset of the record.
        at: u64,
        /// The section.
        section: u32,
    },
    /// A PATCH reaches beyond its section.
    #[error(
        "record at stream offset {at} patches [{offset:#x}, +{len:#x}) of section {section}, which is {section_len:#x} bytes"
    )]
    PatchOutOfBounds {
        /// Stream offset of the record.
        at: u64,
        /// The section.
        section: u32,
        /// The patch offset.
        offset: u64,
        /// The patch length.
        len: u32,
        /// The section's length.
        section_len: u64,
    },
    /// The sections together would exceed the session's limit.
    #[error(
        "record at stream offset {at} grows the device state to {size} bytes, over the {max}-byte limit"
    )]
    ImageTooLarge {
        /// Stream offset of the record.
        at: u64,
        /// The size the state would reach.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The end record's count disagrees with the records received.
    #[error(
        "end record at stream offset {at} counts {stated} records, but {actual} came before it"
    )]
    EndCountMismatch {
        /// Stream offset of the end record.
        at: u64,
        /// The count in the end record.
        stated: u64,
        /// Records received.
        actual: u32,
    },
    /// Bytes follow the end record.
    #[error("bytes follow the end record, at stream offset {at}")]
    TrailingBytes {
        /// Stream offset of the first extra byte.
        at: u64,
    },
    /// The stream stopped before its end record.
    #[error("stream is truncated: it stops at offset {at} inside the {inside}")]
    Truncated {
        /// Bytes received.
        at: u64,
        /// What was being read: `"header"`, `"record"` or `"stream (no end record)"`.
        inside: &'static str,
    },
}

#[derive(Debug)]
enum Phase {
    Header,
    Records,
    Ended,
    Failed(StreamError),
}

/// Incremental reader of one device-state stream.
#[derive(Debug)]
pub struct StreamDecoder {
    limits: StreamLimits,
    phase: Phase,
    /// Bytes of the header or record being assembled.
    unit: Vec<u8>,
    /// Stream offset where `unit` starts.
    unit_at: u64,
    id: Option<StreamId>,
    image: StateImage,
    image_bytes: u64,
    seq: u32,
}

impl StreamDecoder {
    /// A decoder for a new stream, within `limits`.
    pub fn new(limits: StreamLimits) -> Self {
        StreamDecoder {
            limits,
            phase: Phase::Header,
            unit: Vec::new(),
            unit_at: 0,
            id: None,
            image: StateImage::default(),
            image_bytes: 0,
            seq: 0,
        }
    }

    /// The stream's id, once its header has been received and checked.
    pub fn stream_id(&self) -> Option<&StreamId> {
        self.id.as_ref()
    }

    /// The error that stopped decoding, if any.
    pub fn error(&self) -> Option<&StreamError> {
        match &self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Marks the stream as rejected (e.g. foreign), unless it already failed.
    pub fn fail(&mut self, error: StreamError) {
        if !matches!(self.phase, Phase::Failed(_)) {
            self.phase = Phase::Failed(error);
            self.unit = Vec::new();
            self.image = StateImage::default();
        }
    }

    /// Takes the next bytes of the stream. Returns the (sticky) error once the stream is known to
    /// be bad; the bytes are accepted either way, as the data fd accepts them.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        while !data.is_empty() {
            match self.phase {
                Phase::Failed(ref e) => return Err(e.clone()),
                Phase::Ended => {
                    let at = self.unit_at;
                    self.fail(StreamError::TrailingBytes { at });
                }
                Phase::Header | Phase::Records => {
                    let need = match self.unit_need() {
                        Ok(need) => need,
                        Err(e) => {
                            self.fail(e);
                            continue;
                        }
                    };
                    let take = (need - self.unit.len()).min(data.len());
                    self.unit.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if let Err(e) = self.unit_progress() {
                        self.fail(e);
                    }
                }
            }
        }
        match &self.phase {
            Phase::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Ends the stream: the complete image and the stream's id, or why the stream is bad.
    pub fn finish(self) -> Result<(StreamId, StateImage), StreamError> {
        let at = self.unit_at + self.unit.len() as u64;
        match self.phase {
            Phase::Failed(e) => Err(e),
            Phase::Header => Err(StreamError::Truncated {
                at,
                inside: "header",
            }),
            Phase::Records if self.unit.is_empty() => Err(StreamError::Truncated {
                at,
                inside: "stream (no end record)",
            }),
            Phase::Records => Err(StreamError::Truncated {
                at,
                inside: "record",
            }),
            Phase::Ended => match self.id {
                Some(id) => Ok((id, self.image)),
                None => Err(StreamError::Truncated {
                    at,
                    inside: "header",
                }),
            },
        }
    }

    /// Bytes the current unit needs in total, as far as is known from what it holds.
    fn unit_need(&self) -> Result<usize, StreamError> {
        let u = &self.unit;
        match self.phase {
            Phase::Header if u.len() < HEADER_FIXED_LEN => Ok(HEADER_FIXED_LEN),
            Phase::Header => {
                let len = le32(&u[16..20]);
                if len == 0 || len as usize > MAX_KIND_LEN {
                    return Err(StreamError::BadKindLength { len });
                }
                Ok(HEADER_FIXED_LEN + len as usize + 4)
            }
            _ if u.len() < RECORD_HEADER_LEN => Ok(RECORD_HEADER_LEN),
            _ => {
                let len = le32(&u[12..16]);
                if len > self.limits.max_record {
                    return Err(StreamError::RecordTooLarge {
                        at: self.unit_at,
                        len,
                        max: self.limits.max_record,
                    });
                }
                Ok(RECORD_HEADER_LEN + len as usize)
            }
        }
    }

    /// Checks what the unit holds so far; consumes it when complete.
    fn unit_progress(&mut self) -> Result<(), StreamError> {
        let have = self.unit.len();
        if matches!(self.phase, Phase::Header) && have <= HEADER_FIXED_LEN {
            // Reject a foreign byte stream at its first bytes rather than after a bogus length.
            let n = have.min(MAGIC.len());
            if self.unit[..n] != MAGIC[..n] {
                let mut found = [0u8; 8];
                found[..n].copy_from_slice(&self.unit[..n]);
                return Err(StreamError::BadMagic { found });
            }
            if have == HEADER_FIXED_LEN {
                let version = le32(&self.unit[8..12]);
                if version != FORMAT_VERSION {
                    return Err(StreamError::UnsupportedFormat { found: version });
                }
            }
        }
        if have < self.unit_need()? {
            return Ok(());
        }
        match self.phase {
            Phase::Header => self.take_header()?,
            Phase::Records => self.take_record()?,
            // No unit is assembled once the stream has ended or failed.
            Phase::Ended | Phase::Failed(_) => return Ok(()),
        }
        self.unit_at += self.unit.len() as u64;
        self.unit.clear();
        Ok(())
    }

    fn take_header(&mut self) -> Result<(), StreamError> {
        let u = &self.unit;
        let body = u.len() - 4;
        let stored = le32(&u[body..]);
        let computed = crc_of(&[&u[..body]]);
        if stored != computed {
            return Err(StreamError::HeaderChecksum { stored, computed });
        }
        let kind = std::str::from_utf8(&u[HEADER_FIXED_LEN..body])
            .map_err(|_| StreamError::BadKindName)?
            .to_owned();
        self.id = Some(StreamId {
            kind,
            version: le32(&u[12..16]),
        });
        self.phase = Phase::Records;
        Ok(())
    }

    fn take_record(&mut self) -> Result<(), StreamError> {
        let at = self.unit_at;
        let u = &self.unit;
        let (head, payload) = u.split_at(RECORD_HEADER_LEN);
        let kind = le32(&head[0..4]);
        let seq = le32(&head[4..8]);
        let section = le32(&head[8..12]);
        let len = le32(&head[12..16]);
        let offset = le64(&head[16..24]);
        let stored = le32(&head[24..28]);
        let computed = crc_of(&[&head[..24], payload]);
        if stored != computed {
            return Err(StreamError::RecordChecksum {
                at,
                seq,
                stored,
                computed,
            });
        }
        if seq != self.seq {
            return Err(StreamError::OutOfSequence {
                at,
                expected: self.seq,
                found: seq,
            });
        }
        if le32(&head[28..32]) != 0 {
            return Err(StreamError::MalformedRecord {
                at,
                what: "reserved field is not zero",
            });
        }
        match kind {
            KIND_WHOLE => {
                if offset != 0 {
                    return Err(StreamError::MalformedRecord {
                        at,
                        what: "a WHOLE record has a non-zero offset",
                    });
                }
                let old = self.image.section(section).map_or(0, |s| s.len() as u64);
                let size = self.image_bytes - old + u64::from(len);
                if size > self.limits.max_image {
                    return Err(StreamError::ImageTooLarge {
                        at,
                        size,
                        max: self.limits.max_image,
                    });
                }
                self.image.sections.insert(section, payload.to_vec());
                self.image_bytes = size;
            }
            KIND_PATCH => {
                let Entry::Occupied(mut entry) = self.image.sections.entry(section) else {
                    return Err(StreamError::PatchUnknownSection { at, section });
                };
                let target = entry.get_mut();
                let section_len = target.len() as u64;
                let end = offset.checked_add(u64::from(len));
                match end {
                    Some(end) if end <= section_len => {
                        target[offset as usize..end as usize].copy_from_slice(payload);
                    }
                    _ => {
                        return Err(StreamError::PatchOutOfBounds {
                            at,
                            section,
                            offset,
                            len,
                            section_len,
                        });
                    }
                }
            }
            KIND_END => {
                if len != 0 || section != 0 {
                    return Err(StreamError::MalformedRecord {
                        at,
                        what: "the END record has a payload or a section",
                    });
                }
                if offset != u64::from(self.seq) {
                    return Err(StreamError::EndCountMismatch {
                        at,
                        stated: offset,
                        actual: self.seq,
                    });
                }
                self.phase = Phase::Ended;
            }
            _ => return Err(StreamError::UnknownRecordKind { at, kind }),
        }
        self.seq += 1;
        Ok(())
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
