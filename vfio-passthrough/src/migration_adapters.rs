//! The `migration` crate's user-side protocols over the VFIO device seam: whatever the backend
//! (kernel, emulated), a [`VfioDevice`] migrates through these adapters.
//!
//! - [`VfioMigrationDevice`] and [`VfioDataStream`]: the v2 protocol's
//!   [`MigrationDevice`] / [`DataStream`] over `VFIO_DEVICE_FEATURE_MIG_*` and the session's
//!   [`MigrationData`].
//! - [`VfioV1Region`]: the deprecated v1 region's [`V1RegionAccess`] over region info,
//!   `pread`/`pwrite` and mappings of the region's sparse-mmap areas.

use std::ops::Range;

use migration::user_v1::V1RegionAccess;
use migration::user_v2::{DataStream, MigrationDevice, ReadOutcome};
use migration::vfio_v1::{REGION_SUBTYPE_MIGRATION_DEPRECATED, REGION_TYPE_MIGRATION_DEPRECATED};
use migration::vfio_v2::{DeviceState, PrecopyInfo};

use crate::errno::Errno;
use crate::vfio::{MigrationData, MmapArea, VFIO_PCI_NUM_REGIONS, VfioDevice, region_info};

/// Why a device's migration interface could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationAdapterError {
    /// The device has no v1 migration region.
    #[error("the device has no v1 migration region (device-specific region of type (3, 1))")]
    NoV1Region,
    /// A device call failed.
    #[error("{what} failed: {errno}")]
    Device {
        /// The call and its target.
        what: String,
        /// The device's errno.
        errno: Errno,
    },
}

/// The v2 migration controls of a VFIO device.
#[derive(Debug)]
pub struct VfioMigrationDevice<'a> {
    device: &'a dyn VfioDevice,
}

impl<'a> VfioMigrationDevice<'a> {
    /// The migration controls of `device`.
    pub fn new(device: &'a dyn VfioDevice) -> Self {
        VfioMigrationDevice { device }
    }
}

/// A migration session's data stream.
#[derive(Debug)]
pub struct VfioDataStream(pub Box<dyn MigrationData>);

impl DataStream for VfioDataStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Errno> {
        ReadOutcome::from_read_result(self.0.read(buf))
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        self.0.write(data)
    }

    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno> {
        let info = self.0.precopy_info()?;
        Ok(PrecopyInfo {
            initial_bytes: info.initial_bytes,
            dirty_bytes: info.dirty_bytes,
        })
    }
}

impl MigrationDevice for VfioMigrationDevice<'_> {
    type Stream = VfioDataStream;

    fn migration_flags(&self) -> Result<u64, Errno> {
        self.device.migration_flags()
    }

    fn state(&self) -> Result<DeviceState, Errno> {
        let raw = self.device.mig_state()?;
        // A state outside the uAPI enum is a broken backend, not a caller error.
        DeviceState::try_from(raw).map_err(|_| Errno::EPROTO)
    }

    fn set_state(&mut self, state: DeviceState) -> Result<Option<VfioDataStream>, Errno> {
        Ok(self.device.set_mig_state(state as u32)?.map(VfioDataStream))
    }

    fn data_size(&self) -> Result<u64, Errno> {
        self.device.mig_data_size()
    }

    fn reset(&mut self) -> Result<(), Errno> {
        self.device.reset()
    }
}

/// The v1 migration region of a VFIO device, with its mmap-able extents mapped.
#[derive(Debug)]
pub struct VfioV1Region<'a> {
    device: &'a dyn VfioDevice,
    index: u32,
    size: u64,
    maps: Vec<(Range<u64>, MmapArea)>,
}

impl<'a> VfioV1Region<'a> {
    /// Finds the v1 region of `device` and maps its sparse-mmap areas. An area that cannot be
    /// mapped is used through `pread`/`pwrite` instead (the region allows both).
    pub fn open(device: &'a dyn VfioDevice) -> Result<Self, MigrationAdapterError> {
        let info = device
            .device_info()
            .map_err(|errno| MigrationAdapterError::Device {
                what: "VFIO_DEVICE_GET_INFO".into(),
                errno,
            })?;
        for index in VFIO_PCI_NUM_REGIONS..info.num_regions {
            let region =
                region_info(device, index).map_err(|errno| MigrationAdapterError::Device {
                    what: format!("VFIO_DEVICE_GET_REGION_INFO of region {index}"),
                    errno,
                })?;
            let v1 = (
                REGION_TYPE_MIGRATION_DEPRECATED,
                REGION_SUBTYPE_MIGRATION_DEPRECATED,
            );
            if region.region_type() != Some(v1) {
                continue;
            }
            let mut maps = Vec::new();
            for (offset, len) in region.mmap_areas() {
                match device.region_mmap(index, offset, len, true) {
                    Ok(area) => maps.push((offset..offset + len, area)),
                    Err(errno) => log::warn!(
                        "v1 region {index}: mapping [{offset:#x}, +{len:#x}) failed ({errno}); using pread/pwrite"
                    ),
                }
            }
            return Ok(VfioV1Region {
                device,
                index,
                size: region.size,
                maps,
            });
        }
        Err(MigrationAdapterError::NoV1Region)
    }

    /// The region's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    fn mapping(&self, offset: u64, len: usize) -> Result<(&MmapArea, usize), Errno> {
        let end = offset.checked_add(len as u64).ok_or(Errno::EINVAL)?;
        self.maps
            .iter()
            .find(|(r, _)| r.start <= offset && end <= r.end)
            .map(|(r, area)| (area, (offset - r.start) as usize))
            .ok_or(Errno::EINVAL)
    }
}

impl V1RegionAccess for VfioV1Region<'_> {
    fn region_size(&self) -> u64 {
        self.size
    }

    fn mmap_extents(&self) -> Vec<Range<u64>> {
        self.maps.iter().map(|(r, _)| r.clone()).collect()
    }

    fn read_u32(&mut self, offset: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.trapped_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write_u32(&mut self, offset: u64, value: u32) -> Result<(), Errno> {
        self.trapped_write(offset, &value.to_le_bytes())
    }

    fn read_u64(&mut self, offset: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.trapped_read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u64(&mut self, offset: u64, value: u64) -> Result<(), Errno> {
        self.trapped_write(offset, &value.to_le_bytes())
    }

    fn trapped_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // One pread: header fields must be read at their exact width, so the access is not
        // split; a short read means the device reported less than the region holds.
        let n = self.device.region_read(self.index, offset, buf)?;
        if n != buf.len() {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn trapped_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let n = self.device.region_write(self.index, offset, data)?;
        if n != data.len() {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn mmap_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let (area, at) = self.mapping(offset, buf.len())?;
        area.read(at, buf)
    }

    fn mmap_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let (area, at) = self.mapping(offset, data.len())?;
        area.write(at, data)
    }

    fn reset(&mut self) -> Result<(), Errno> {
        self.device.reset()
    }
}
