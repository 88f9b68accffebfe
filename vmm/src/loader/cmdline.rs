//! The kernel command line: checked against the kernel's and the layout's limits, written NUL
//! terminated at [`CMDLINE_START`].

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::LoaderError;
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};

/// Checks that `cmdline` fits the layout's area and `kernel_max` (the kernel's limit, without
/// the NUL), and has no NUL of its own.
pub(super) fn check(cmdline: &str, kernel_max: usize) -> Result<(), LoaderError> {
    if let Some(offset) = cmdline.bytes().position(|b| b == 0) {
        return Err(LoaderError::CmdlineHasNul { offset });
    }
    let max = kernel_max.min(CMDLINE_MAX_SIZE - 1);
    if cmdline.len() > max {
        return Err(LoaderError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    Ok(())
}

/// Writes the checked command line and its NUL at [`CMDLINE_START`].
pub(super) fn write(guest_mem: &GuestMemoryMmap, cmdline: &str) -> Result<(), LoaderError> {
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    guest_mem
        .write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|source| LoaderError::GuestMemory {
            what: "command line",
            addr: CMDLINE_START,
            source,
        })
}
