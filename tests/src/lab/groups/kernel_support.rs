//! What the `kernel-*` groups share: check helpers that name what failed, process memory for
//! device DMA, opening a lab PCI device through its cdev or its group with a DMA path, and
//! waiting on an eventfd. Not a group itself.

use std::fmt::{Debug, Display};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::{
    IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IoasAlloc,
    IoasMap,
};
use vfio_passthrough::host::iommufd::{Iommufd, KernelIommufd};
use vfio_passthrough::host::type1::{
    KernelType1Container, Type1Container, Type1DmaMap, VFIO_TYPE1V2_IOMMU,
};
use vfio_passthrough::vfio::kernel::{CdevDevice, KernelDevice, VfioGroup};
use vfio_passthrough::vfio::{VFIO_PCI_CONFIG_REGION_INDEX, VfioDevice};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::lab::sysfs::PciFunction;

/// What a check returns: `Err` carries what failed, with the values seen.
pub type Check = Result<(), String>;

/// Adds what was being done to a seam error.
pub fn on<T>(what: impl Display, result: Result<T, Errno>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

/// Fails unless `got == want`.
pub fn expect_eq<T: PartialEq + Debug>(what: impl Display, got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

/// Fails unless `result` is the errno `want`.
pub fn expect_errno<T: Debug>(what: impl Display, result: Result<T, Errno>, want: Errno) -> Check {
    match result {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: got {other:?}, expected {want:?}")),
    }
}

/// Fails with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(message()) }
}

/// Anonymous, page-aligned process memory that a device may DMA to. Accessed only with
/// volatile operations, never through references, since the device writes it behind our back.
#[derive(Debug)]
pub struct DmaBuffer {
    addr: NonNull<u8>,
    len: usize,
}

impl DmaBuffer {
    /// `len` bytes of zeroed memory.
    pub fn new(len: usize) -> Result<Self, String> {
        // SAFETY: a fresh private anonymous mapping chosen by the kernel; it overlaps nothing
        // Rust knows about.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!("mmap of {len} bytes: {}", Errno::last()));
        }
        let addr = NonNull::new(addr.cast()).ok_or("mmap returned NULL")?;
        Ok(Self { addr, len })
    }

    /// The process address, for MAP requests.
    pub fn va(&self) -> u64 {
        self.addr.as_ptr() as u64
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty buffers are not created.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` in at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len, "write past the DMA buffer");
        for (i, b) in data.iter().enumerate() {
            // SAFETY: inside the live mapping (asserted); volatile, no reference created.
            unsafe { self.addr.as_ptr().add(offset + i).write_volatile(*b) };
        }
    }

    /// Copies `len` bytes out from `offset`.
    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset + len <= self.len, "read past the DMA buffer");
        (0..len)
            // SAFETY: inside the live mapping (asserted); volatile, no reference created.
            .map(|i| unsafe { self.addr.as_ptr().add(offset + i).read_volatile() })
            .collect()
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly this mapping; owners drop their DMA mappings (the iommufd or
        // container holding them) before the buffer, see `LabDevice`'s field order.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

/// How a lab device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/dev/vfio/devices/vfioN` bound to a fresh iommufd, attached to one IOAS.
    Cdev,
    /// `/dev/vfio/<group>` in a fresh type1 container.
    Group,
}

impl Route {
    /// Both routes.
    pub const ALL: [Route; 2] = [Route::Cdev, Route::Group];

    /// The name used in case names.
    pub fn name(self) -> &'static str {
        match self {
            Route::Cdev => "cdev",
            Route::Group => "group",
        }
    }
}

/// Where the device's DMA is mapped.
#[derive(Debug)]
pub enum DmaPath {
    /// An IOAS of an iommufd the device is bound to and attached to.
    Iommufd {
        /// The context.
        ctx: Arc<KernelIommufd>,
        /// The IOAS.
        ioas: u32,
        /// The HWPT the attach reported.
        hwpt: u32,
    },
    /// The type1 container the device's group is in.
    Container {
        /// The container.
        container: Arc<KernelType1Container>,
        /// The group, kept open.
        group: Arc<VfioGroup>,
    },
}

/// A lab device opened for a test, with a DMA path and the buffers mapped into it. Fields drop
/// in order: the device first, then the DMA path (closing it unmaps everything), then buffers.
#[derive(Debug)]
pub struct LabDevice {
    /// The device.
    pub device: KernelDevice,
    /// Its DMA path.
    pub dma: DmaPath,
    buffers: Vec<Rc<DmaBuffer>>,
    /// The PCI address.
    pub bdf: String,
}

impl LabDevice {
    /// Opens `function` through `route`, ready for DMA.
    pub fn open(function: &PciFunction, route: Route) -> Result<Self, String> {
        match route {
            Route::Cdev => {
                let node = function
                    .vfio_cdev()
                    .ok_or_else(|| format!("{} has no VFIO cdev", function.bdf))?;
                let device = on(
                    format!("opening {}", node.display()),
                    CdevDevice::open(&node),
                )?;
                let ctx = Arc::new(on("opening /dev/iommu", KernelIommufd::open())?);
                let mut alloc = IoasAlloc::default();
                on("IOMMU_IOAS_ALLOC", ctx.ioas_alloc(&mut alloc))?;
                let dyn_ctx: Arc<dyn Iommufd> = ctx.clone();
                on("VFIO_DEVICE_BIND_IOMMUFD", device.bind_iommufd(&dyn_ctx))?;
                let hwpt = on(
                    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
                    device.attach_pt(alloc.out_ioas_id, None),
                )?;
                Ok(Self {
                    device: KernelDevice::Cdev(device),
                    dma: DmaPath::Iommufd {
                        ctx,
                        ioas: alloc.out_ioas_id,
                        hwpt,
                    },
                    buffers: Vec::new(),
                    bdf: function.bdf.clone(),
                })
            }
            Route::Group => {
                let group_id = function
                    .iommu_group()
                    .ok_or_else(|| format!("{} has no IOMMU group", function.bdf))?;
                let (container, group) = open_group_in_container(group_id)?;
                let device = on(
                    format!("VFIO_GROUP_GET_DEVICE_FD {}", function.bdf),
                    group.device(&function.bdf),
                )?;
                Ok(Self {
                    device: KernelDevice::Group(device),
                    dma: DmaPath::Container { container, group },
                    buffers: Vec::new(),
                    bdf: function.bdf.clone(),
                })
            }
        }
    }

    /// The device behind the seam.
    pub fn vfio(&self) -> &dyn VfioDevice {
        self.device.as_vfio()
    }

    /// Maps a new zeroed buffer of `len` bytes read-write at `iova` and returns it.
    pub fn map_buffer(&mut self, iova: u64, len: usize) -> Result<Rc<DmaBuffer>, String> {
        let buffer = Rc::new(DmaBuffer::new(len)?);
        match &self.dma {
            DmaPath::Iommufd { ctx, ioas, .. } => {
                let mut map = IoasMap {
                    flags: IOMMU_IOAS_MAP_FIXED_IOVA
                        | IOMMU_IOAS_MAP_READABLE
                        | IOMMU_IOAS_MAP_WRITEABLE,
                    ioas_id: *ioas,
                    user_va: buffer.va(),
                    length: len as u64,
                    iova,
                    ..Default::default()
                };
                // SAFETY: the buffer is kept in `self.buffers`, dropped after the iommufd (which
                // unmaps it on close), and only accessed with volatile operations.
                on(format!("IOMMU_IOAS_MAP at {iova:#x}"), unsafe {
                    ctx.ioas_map(&mut map)
                })?;
            }
            DmaPath::Container { container, .. } => {
                let map = Type1DmaMap::new(buffer.va(), iova, len as u64);
                // SAFETY: as above, with the container.
                on(format!("VFIO_IOMMU_MAP_DMA at {iova:#x}"), unsafe {
                    container.map_dma(&map)
                })?;
            }
        }
        self.buffers.push(Rc::clone(&buffer));
        Ok(buffer)
    }

    /// Reads `N` bytes of config space at `offset`.
    pub fn config_read<const N: usize>(&self, offset: u64) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        let n = on(
            format!("config read of {N} bytes at {offset:#x}"),
            self.vfio()
                .region_read(VFIO_PCI_CONFIG_REGION_INDEX, offset, &mut b),
        )?;
        expect_eq(format!("bytes read from config at {offset:#x}"), n, N)?;
        Ok(b)
    }

    /// Sets memory decoding and bus mastering in the command register.
    pub fn enable_memory_and_bus_master(&self) -> Check {
        let cmd = u16::from_le_bytes(self.config_read::<2>(4)?) | 0x2 | 0x4;
        let n = on(
            "config write of the command register",
            self.vfio()
                .region_write(VFIO_PCI_CONFIG_REGION_INDEX, 4, &cmd.to_le_bytes()),
        )?;
        expect_eq("bytes written to the command register", n, 2)
    }
}

/// Opens a new type1 container and group `id`, joins them and selects type1v2.
pub fn open_group_in_container(
    id: u32,
) -> Result<(Arc<KernelType1Container>, Arc<VfioGroup>), String> {
    let container = Arc::new(on("opening /dev/vfio/vfio", KernelType1Container::open())?);
    let group = Arc::new(on(format!("opening /dev/vfio/{id}"), VfioGroup::open(id))?);
    on(
        "VFIO_GROUP_SET_CONTAINER",
        group.set_container(container.as_ref()),
    )?;
    on(
        "VFIO_SET_IOMMU(TYPE1v2)",
        container.set_iommu(VFIO_TYPE1V2_IOMMU),
    )?;
    Ok((container, group))
}

/// A non-blocking eventfd.
pub fn eventfd() -> Result<EventFd, String> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))
}

/// Waits up to `timeout` for `fd` to be signalled; returns its counter.
pub fn wait_eventfd(fd: &EventFd, what: &str, timeout: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match fd.read() {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("{what}: no eventfd signal within {timeout:?}"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("{what}: reading the eventfd: {e}")),
        }
    }
}

/// Whether `fd` is signalled right now (consumes the signal).
pub fn eventfd_signalled(fd: &EventFd) -> bool {
    fd.read().is_ok()
}
