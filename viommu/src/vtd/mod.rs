//! Intel VT-d building blocks: the first-stage (x86-64 paging) walker, its faults, and the
//! settings it runs under.
//!
//! Two users share them: the emulated host walks a nested HWPT's guest table
//! (`IOMMU_HWPT_DATA_VTD_S1`) with every table access going through stage 2, and the guest-visible
//! VT-d model walks the tables its PASID entries point at. Caching lives in [`crate::iotlb`].

pub mod access;
pub mod config;
pub mod fault;
pub mod first_stage;
pub mod memory;
pub mod pte;
pub mod table_builder;

pub use access::{Access, Permissions};
pub use config::{FirstStageConfig, FirstStageConfigError, FirstStageFlags, PagingMode};
pub use fault::{FaultReason, FaultRecord, FirstStageFault};
pub use first_stage::{MAX_FLAG_UPDATE_RETRIES, Translation, walk};
pub use memory::{PageBlock, SparseTableMemory, Stage2Fault, TableMemory};
pub use pte::PageSize;
pub use table_builder::{FirstStageTableBuilder, TableBuildError};
