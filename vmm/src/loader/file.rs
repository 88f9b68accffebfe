//! Reading the kernel and initramfs files: sizes and exact reads that tell a truncated file
//! from an I/O error.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};

use super::LoaderError;

/// The size of `file` in bytes.
pub(super) fn size(file: &File, what: &'static str) -> Result<u64, LoaderError> {
    file.metadata()
        .map(|meta| meta.len())
        .map_err(|source| LoaderError::Read { what, source })
}

/// Reads exactly `buf.len()` bytes at `offset`; a short file is [`LoaderError::Truncated`].
pub(super) fn read_at(
    file: &mut File,
    offset: u64,
    buf: &mut [u8],
    what: &'static str,
    file_size: u64,
) -> Result<(), LoaderError> {
    let needed = offset.saturating_add(buf.len() as u64);
    if needed > file_size {
        return Err(LoaderError::Truncated {
            what,
            needed,
            size: file_size,
        });
    }
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|source| match source.kind() {
            // The file shrank after we measured it.
            ErrorKind::UnexpectedEof => LoaderError::Truncated {
                what,
                needed,
                size: file_size,
            },
            _ => LoaderError::Read { what, source },
        })
}
