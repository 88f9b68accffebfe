//! What a first-stage walk needs to know about the table it walks: the root, the paging depth,
//! the request-handling flags and the host address width.
//!
//! The same settings come from two places: the `iommu_hwpt_vtd_s1` data of a nested HWPT
//! (`flags`, `pgtbl_addr`, `addr_width`) and, later, a guest's scalable-mode PASID-table entry
//! (FSPTPTR, FLPM, SRE, WPE, EAFE).

use super::pte::TABLE_BYTES;

/// Narrowest host address width accepted; VT-d hardware reports at least 39 bits (MGAW), so this
/// leaves room for small test setups without allowing nonsense.
pub const MIN_HOST_ADDRESS_WIDTH: u8 = 32;
/// Widest host address width: first-stage entries hold at most 52 address bits.
pub const MAX_HOST_ADDRESS_WIDTH: u8 = 52;

/// Errors building a [`FirstStageConfig`] from untrusted settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FirstStageConfigError {
    /// `addr_width` is neither 48 (4-level) nor 57 (5-level).
    #[error("First-stage address width {addr_width} is not supported (48 or 57)")]
    UnsupportedAddressWidth {
        /// The width asked for.
        addr_width: u32,
    },
    /// Flag bits outside SRE, EAFE and WPE are set.
    #[error("First-stage flags {flags:#x} have unknown bits {unknown:#x}")]
    UnknownFlags {
        /// All the flags given.
        flags: u64,
        /// The bits this model does not know.
        unknown: u64,
    },
    /// The host address width is outside 32..=52.
    #[error(
        "Host address width {width} is outside {MIN_HOST_ADDRESS_WIDTH}..={MAX_HOST_ADDRESS_WIDTH}"
    )]
    HostAddressWidth {
        /// The width asked for.
        width: u8,
    },
    /// The root table address is not 4 KiB aligned.
    #[error("First-stage root table address {root:#x} is not 4 KiB aligned")]
    UnalignedRoot {
        /// The root address given.
        root: u64,
    },
    /// The root table address does not fit the host address width.
    #[error(
        "First-stage root table address {root:#x} is beyond the {width}-bit host address width"
    )]
    RootBeyondHostWidth {
        /// The root address given.
        root: u64,
        /// The host address width.
        width: u8,
    },
}

/// First-stage paging depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// 4-level paging: 48-bit input addresses, root is an FS-PML4 table.
    FourLevel,
    /// 5-level paging: 57-bit input addresses, root is an FS-PML5 table.
    FiveLevel,
}

impl PagingMode {
    /// The mode for a uAPI `addr_width` (48 or 57).
    pub fn from_addr_width(addr_width: u32) -> Result<Self, FirstStageConfigError> {
        match addr_width {
            48 => Ok(PagingMode::FourLevel),
            57 => Ok(PagingMode::FiveLevel),
            _ => Err(FirstStageConfigError::UnsupportedAddressWidth { addr_width }),
        }
    }

    /// Number of paging levels, which is also the level of the root table.
    pub const fn levels(self) -> u8 {
        match self {
            PagingMode::FourLevel => 4,
            PagingMode::FiveLevel => 5,
        }
    }

    /// Input address width in bits (48 or 57).
    pub const fn input_width(self) -> u8 {
        match self {
            PagingMode::FourLevel => 48,
            PagingMode::FiveLevel => 57,
        }
    }

    /// Whether `iova` is canonical: its bits above the input width repeat the top input bit.
    pub const fn is_canonical(self, iova: u64) -> bool {
        let unused = 64 - self.input_width() as u32;
        (((iova << unused) as i64) >> unused) as u64 == iova
    }
}

/// How the walker treats requests: the `iommu_hwpt_vtd_s1` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FirstStageFlags {
    /// Supervisor requests enable (SRE): privileged requests are translated; when clear they are
    /// refused before any table is read.
    pub sre: bool,
    /// Extended access flag enable (EAFE): the walker sets EA (bit 10) next to A.
    pub eafe: bool,
    /// Write protect enable (WPE): privileged writes need R/W set at every level, as user writes
    /// always do. Without it privileged writes ignore R/W.
    pub wpe: bool,
}

impl FirstStageFlags {
    /// `IOMMU_VTD_S1_SRE`.
    pub const SRE: u64 = 1 << 0;
    /// `IOMMU_VTD_S1_EAFE`.
    pub const EAFE: u64 = 1 << 1;
    /// `IOMMU_VTD_S1_WPE`.
    pub const WPE: u64 = 1 << 2;

    /// Decodes uAPI flag bits, refusing unknown ones.
    ///
    /// Linux 6.12 ignores unknown bits in `iommu_hwpt_vtd_s1.flags`; a caller that must match it
    /// errno for errno masks them with `Self::SRE | Self::EAFE | Self::WPE` first.
    pub fn from_bits(flags: u64) -> Result<Self, FirstStageConfigError> {
        let unknown = flags & !(Self::SRE | Self::EAFE | Self::WPE);
        if unknown != 0 {
            return Err(FirstStageConfigError::UnknownFlags { flags, unknown });
        }
        Ok(FirstStageFlags {
            sre: flags & Self::SRE != 0,
            eafe: flags & Self::EAFE != 0,
            wpe: flags & Self::WPE != 0,
        })
    }

    /// The uAPI flag bits.
    pub const fn bits(self) -> u64 {
        (if self.sre { Self::SRE } else { 0 })
            | (if self.eafe { Self::EAFE } else { 0 })
            | (if self.wpe { Self::WPE } else { 0 })
    }
}

/// A validated first-stage translation setting. Build it with [`FirstStageConfig::new`] or
/// [`FirstStageConfig::from_hwpt_vtd_s1`]; the fields cannot be set to invalid values afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FirstStageConfig {
    root: u64,
    mode: PagingMode,
    flags: FirstStageFlags,
    host_address_width: u8,
    one_gib_pages: bool,
}

impl FirstStageConfig {
    /// A configuration with all flags clear and 1 GiB pages supported.
    ///
    /// `root` is the guest physical address of the root table; `host_address_width` bounds every
    /// address in a table entry (bits above it are reserved).
    pub fn new(
        root: u64,
        mode: PagingMode,
        host_address_width: u8,
    ) -> Result<Self, FirstStageConfigError> {
        if !(MIN_HOST_ADDRESS_WIDTH..=MAX_HOST_ADDRESS_WIDTH).contains(&host_address_width) {
            return Err(FirstStageConfigError::HostAddressWidth {
                width: host_address_width,
            });
        }
        if root % TABLE_BYTES != 0 {
            return Err(FirstStageConfigError::UnalignedRoot { root });
        }
        if root >> host_address_width != 0 {
            return Err(FirstStageConfigError::RootBeyondHostWidth {
                root,
                width: host_address_width,
            });
        }
        Ok(FirstStageConfig {
            root,
            mode,
            flags: FirstStageFlags::default(),
            host_address_width,
            one_gib_pages: true,
        })
    }

    /// The configuration an `iommu_hwpt_vtd_s1` describes (`flags`, `pgtbl_addr`, `addr_width`).
    pub fn from_hwpt_vtd_s1(
        flags: u64,
        pgtbl_addr: u64,
        addr_width: u32,
        host_address_width: u8,
    ) -> Result<Self, FirstStageConfigError> {
        let flags = FirstStageFlags::from_bits(flags)?;
        let mode = PagingMode::from_addr_width(addr_width)?;
        Ok(Self::new(pgtbl_addr, mode, host_address_width)?.with_flags(flags))
    }

    /// The same configuration with `flags`.
    pub const fn with_flags(mut self, flags: FirstStageFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The same configuration with 1 GiB leaves allowed or not (VT-d capability FS1GP). Without
    /// them, PS at level 3 is a reserved bit.
    pub const fn with_one_gib_pages(mut self, supported: bool) -> Self {
        self.one_gib_pages = supported;
        self
    }

    /// Guest physical address of the root table.
    pub const fn root(&self) -> u64 {
        self.root
    }

    /// Paging depth.
    pub const fn mode(&self) -> PagingMode {
        self.mode
    }

    /// Request-handling flags.
    pub const fn flags(&self) -> FirstStageFlags {
        self.flags
    }

    /// Host address width in bits.
    pub const fn host_address_width(&self) -> u8 {
        self.host_address_width
    }

    /// Whether 1 GiB leaves are allowed.
    pub const fn one_gib_pages(&self) -> bool {
        self.one_gib_pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwpt_data_decodes_flags_and_depth() {
        let config = FirstStageConfig::from_hwpt_vtd_s1(
            FirstStageFlags::SRE | FirstStageFlags::WPE,
            0x10_0000,
            57,
            48,
        )
        .unwrap();
        assert_eq!(config.mode(), PagingMode::FiveLevel);
        assert_eq!(config.root(), 0x10_0000);
        assert_eq!(
            config.flags(),
            FirstStageFlags {
                sre: true,
                eafe: false,
                wpe: true
            }
        );
        assert_eq!(config.flags().bits(), 5);
    }

    #[test]
    fn hwpt_data_with_bad_width_is_refused() {
        assert_eq!(
            FirstStageConfig::from_hwpt_vtd_s1(0, 0x1000, 39, 48),
            Err(FirstStageConfigError::UnsupportedAddressWidth { addr_width: 39 })
        );
    }

    #[test]
    fn unknown_flags_are_refused() {
        assert_eq!(
            FirstStageFlags::from_bits(0x9),
            Err(FirstStageConfigError::UnknownFlags {
                flags: 0x9,
                unknown: 0x8
            })
        );
    }

    #[test]
    fn root_must_be_aligned_and_inside_host_width() {
        assert_eq!(
            FirstStageConfig::new(0x1008, PagingMode::FourLevel, 48),
            Err(FirstStageConfigError::UnalignedRoot { root: 0x1008 })
        );
        assert_eq!(
            FirstStageConfig::new(1 << 40, PagingMode::FourLevel, 40),
            Err(FirstStageConfigError::RootBeyondHostWidth {
                root: 1 << 40,
                width: 40
            })
        );
        assert_eq!(
            FirstStageConfig::new(0, PagingMode::FourLevel, 53),
            Err(FirstStageConfigError::HostAddressWidth { width: 53 })
        );
    }

    #[test]
    fn canonical_addresses_sign_extend_the_top_input_bit() {
        let four = PagingMode::FourLevel;
        assert!(four.is_canonical(0x0000_7fff_ffff_f000));
        assert!(four.is_canonical(0xffff_8000_0000_0000));
        assert!(!four.is_canonical(0x0000_8000_0000_0000));
        assert!(!four.is_canonical(0x0001_0000_0000_0000));
        let five = PagingMode::FiveLevel;
        assert!(five.is_canonical(0x0000_8000_0000_0000));
        assert!(five.is_canonical(0x00ff_ffff_ffff_f000));
        assert!(!five.is_canonical(0x0100_0000_0000_0000));
        assert!(five.is_canonical(0xff00_0000_0000_0000));
    }
}
