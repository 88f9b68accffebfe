//! Guest-visible IOMMUs (virtio-iommu, Intel VT-d) and the consumer-side traits stating what they
//! need from the host. Never touches the host itself.
#![forbid(unsafe_code)]

pub mod iotlb;
pub mod vtd;
