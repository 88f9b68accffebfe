//! The emulated device models (`docs/dma-engine.md` is their contract).
//!
//! - [`dma_engine`]: `emulated:dma-engine`, a descriptor-ring DMA controller with device
//!   memory, PASIDs, MSI-X/MSI/INTx, migration (v2 with PRE_COPY and P2P, and the v1 region)
//!   and DMA logging.
//! - [`mailbox`]: `emulated:mailbox`, a register file with a doorbell and INTx, and nothing
//!   else: the device without features.
//! - [`regs`]: register-file access helpers shared by the models.

pub mod dma_engine;
pub mod mailbox;
pub mod regs;
