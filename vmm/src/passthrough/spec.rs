//! What `--device vfio=<spec>[,id=<name>]` and `--host-iommu` ask for.
//!
//! ```text
//! --device vfio=<spec>[,id=<name>]
//!   <spec>  emulated:<model>[,<key>=<value>...]   a device model of the emulated host
//!         | /sys/bus/pci/devices/<domain:bus:dev.fn> a host PCI device bound to vfio-pci
//!         | /sys/bus/mdev/devices/<uuid>             a host mediated device
//!         | /dev/vfio/devices/vfio<N>                a host device's VFIO cdev
//!         | <domain:bus:dev.fn>                      a host PCI device by address
//!   <name>  letters, digits, '-', '_' and '.'; unique among the devices (default vfio<N>)
//! ```
//!
//! The `id=` item may stand anywhere after the spec's first item; everything else belongs to the
//! spec (the emulated models' options, see
//! [`EmulatedDeviceSpec`](vfio_passthrough::emulated_device::EmulatedDeviceSpec)).

use std::fmt;
use std::path::PathBuf;

use clap::ValueEnum;
use devices::pci::PciBdf;
use vfio_passthrough::emulated_device::{EmulatedDeviceSpec, EmulatedSpecError};

/// The one device type `--device` knows.
const VFIO_PREFIX: &str = "vfio=";
/// The longest device id accepted.
const MAX_ID_LEN: usize = 32;

/// Which host IOMMU backend devices use (`--host-iommu`). Emulated devices always use the
/// emulated host: its iommufd, or its type1 container with `container`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum HostIommu {
    /// iommufd (`/dev/iommu`, VFIO cdevs) when the host has it, else the legacy type1 container;
    /// the emulated host's iommufd for emulated devices.
    #[default]
    Auto,
    /// iommufd only: refuse a host device if the host has no `/dev/iommu` or no VFIO cdev for it.
    Iommufd,
    /// the legacy VFIO type1 container (`/dev/vfio/vfio`, devices opened through their group),
    /// the emulated host's for emulated devices.
    Container,
}

impl fmt::Display for HostIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostIommu::Auto => "auto",
            HostIommu::Iommufd => "iommufd",
            HostIommu::Container => "container",
        })
    }
}

/// Where a passed-through device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSource {
    /// A device model of the emulated host.
    Emulated(EmulatedDeviceSpec),
    /// A host device: a sysfs path, a VFIO cdev node or a PCI address, as given.
    Host(PathBuf),
}

impl fmt::Display for DeviceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSource::Emulated(spec) => write!(f, "{spec}"),
            DeviceSource::Host(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One `--device vfio=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughSpec {
    /// The device's name in logs and errors: the `id=` given, or `vfio<N>`.
    pub id: String,
    /// The device.
    pub source: DeviceSource,
}

/// A `--device` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceSpecError {
    /// Not `vfio=...`.
    #[error("'{text}' is not a device: expected vfio=<spec>[,id=<name>]")]
    NotVfio {
        /// The value as given.
        text: String,
    },
    /// `vfio=` with nothing after it.
    #[error("'{text}' names no device: expected vfio=<spec>[,id=<name>]")]
    Empty {
        /// The value as given.
        text: String,
    },
    /// The spec is neither an emulated model nor a host device path or address.
    #[error(
        "'{spec}' is not a device spec: expected emulated:<model>[,options], a sysfs path \
         (/sys/bus/pci/devices/<bdf>), a VFIO cdev (/dev/vfio/devices/vfioN) or a PCI address \
         (0000:01:00.0)"
    )]
    UnknownSpec {
        /// The spec.
        spec: String,
    },
    /// The emulated spec is wrong (unknown model, option or value).
    #[error("{0}")]
    Emulated(String),
    /// A host device with options other than `id`.
    #[error("host device '{spec}' takes no options but id=<name> (got '{option}')")]
    HostOption {
        /// The device path or address.
        spec: String,
        /// The option given.
        option: String,
    },
    /// `id=` given twice in one value.
    #[error("'{text}' gives id= more than once")]
    IdTwice {
        /// The value as given.
        text: String,
    },
    /// An id that is empty, too long or has other characters than letters, digits, `-`, `_`,
    /// `.`.
    #[error(
        "device id '{id}' is not valid: use 1 to {MAX_ID_LEN} letters, digits, '-', '_' or '.'"
    )]
    BadId {
        /// The id given.
        id: String,
    },
    /// Two devices with the same id.
    #[error("device id '{id}' is used by more than one --device")]
    DuplicateId {
        /// The id.
        id: String,
    },
}

impl From<EmulatedSpecError> for DeviceSpecError {
    fn from(e: EmulatedSpecError) -> Self {
        DeviceSpecError::Emulated(e.to_string())
    }
}

/// A `--device` value as parsed, before default ids are given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceArg {
    /// The `id=` given, if any.
    pub id: Option<String>,
    /// The device.
    pub source: DeviceSource,
}

impl DeviceArg {
    /// Parses `vfio=<spec>[,id=<name>]`.
    pub fn parse(text: &str) -> Result<Self, DeviceSpecError> {
        let body = text
            .strip_prefix(VFIO_PREFIX)
            .ok_or_else(|| DeviceSpecError::NotVfio { text: text.into() })?;
        let mut id = None;
        let mut items = Vec::new();
        for (i, item) in body.split(',').enumerate() {
            match item.strip_prefix("id=").filter(|_| i > 0) {
                Some(value) => {
                    if id.replace(value.to_string()).is_some() {
                        return Err(DeviceSpecError::IdTwice { text: text.into() });
                    }
                }
                None => items.push(item),
            }
        }
        if let Some(id) = &id {
            check_id(id)?;
        }
        let spec = items.join(",");
        if items.first().is_none_or(|first| first.is_empty()) {
            return Err(DeviceSpecError::Empty { text: text.into() });
        }
        let source = if EmulatedDeviceSpec::matches(&spec) {
            DeviceSource::Emulated(EmulatedDeviceSpec::parse(&spec)?)
        } else {
            let (first, rest) = (items[0], &items[1..]);
            if let Some(option) = rest.first() {
                return Err(DeviceSpecError::HostOption {
                    spec: first.into(),
                    option: (*option).into(),
                });
            }
            if !first.starts_with('/') && first.parse::<PciBdf>().is_err() {
                return Err(DeviceSpecError::UnknownSpec { spec });
            }
            DeviceSource::Host(PathBuf::from(first))
        };
        Ok(Self { id, source })
    }
}

fn check_id(id: &str) -> Result<(), DeviceSpecError> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match ok {
        true => Ok(()),
        false => Err(DeviceSpecError::BadId { id: id.into() }),
    }
}

/// Gives every device its id: the one given, or the lowest free `vfio<N>`. Two devices with the
/// same id are refused.
pub fn assign_ids(args: Vec<DeviceArg>) -> Result<Vec<PassthroughSpec>, DeviceSpecError> {
    let mut taken: Vec<String> = Vec::new();
    for id in args.iter().filter_map(|a| a.id.as_ref()) {
        if taken.contains(id) {
            return Err(DeviceSpecError::DuplicateId { id: id.clone() });
        }
        taken.push(id.clone());
    }
    let mut next = 0;
    Ok(args
        .into_iter()
        .map(|arg| {
            let id = arg.id.unwrap_or_else(|| {
                loop {
                    let candidate = format!("vfio{next}");
                    next += 1;
                    if !taken.contains(&candidate) {
                        break candidate;
                    }
                }
            });
            PassthroughSpec {
                id,
                source: arg.source,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeviceArg, DeviceSpecError> {
        DeviceArg::parse(text)
    }

    #[test]
    fn emulated_specs_keep_their_options_and_lose_the_id() {
        let arg = parse("vfio=emulated:dma-engine,pasid=off,id=dma0,migration=v1").unwrap();
        assert_eq!(arg.id.as_deref(), Some("dma0"));
        let DeviceSource::Emulated(spec) = arg.source else {
            panic!("not emulated");
        };
        assert_eq!(spec.text, "emulated:dma-engine,pasid=off,migration=v1");
    }

    #[test]
    fn host_paths_and_addresses_are_host_devices() {
        for text in [
            "/sys/bus/pci/devices/0000:01:00.0",
            "/dev/vfio/devices/vfio0",
            "0000:01:00.0",
        ] {
            let arg = parse(&format!("vfio={text},id=nic")).unwrap();
            assert_eq!(arg.source, DeviceSource::Host(PathBuf::from(text)));
            assert_eq!(arg.id.as_deref(), Some("nic"));
        }
    }

    #[test]
    fn bad_values_are_refused_with_what_was_given() {
        let cases: &[(&str, &str)] = &[
            ("virtio=net", "'virtio=net' is not a device"),
            ("vfio=", "'vfio=' names no device"),
            ("vfio=,", "'vfio=,' names no device"),
            ("vfio=,id=a", "'vfio=,id=a' names no device"),
            ("vfio=id=x", "'id=x' is not a device spec"),
            ("vfio=gpu0", "'gpu0' is not a device spec"),
            ("vfio=emulated:gpu", "unknown emulated model 'gpu'"),
            ("vfio=emulated:mailbox,pasid=on", "has no option 'pasid'"),
            (
                "vfio=/sys/bus/pci/devices/0000:01:00.0,rombar=0",
                "takes no options but id=<name> (got 'rombar=0')",
            ),
            (
                "vfio=emulated:mailbox,id=a,id=b",
                "gives id= more than once",
            ),
            ("vfio=emulated:mailbox,id=", "device id '' is not valid"),
            (
                "vfio=emulated:mailbox,id=a b",
                "device id 'a b' is not valid",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn default_ids_skip_the_ones_given_and_duplicates_are_refused() {
        let arg = |text| parse(text).unwrap();
        let specs = assign_ids(vec![
            arg("vfio=emulated:dma-engine"),
            arg("vfio=emulated:dma-engine,id=vfio0"),
            arg("vfio=emulated:mailbox"),
        ])
        .unwrap();
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["vfio1", "vfio0", "vfio2"]);
        let err = assign_ids(vec![
            arg("vfio=emulated:dma-engine,id=dma"),
            arg("vfio=emulated:mailbox,id=dma"),
        ])
        .unwrap_err();
        assert_eq!(err, DeviceSpecError::DuplicateId { id: "dma".into() });
    }
}
