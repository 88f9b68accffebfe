//! Device specs for emulated devices: `emulated:<model>[,key=value...]`, e.g.
//! `emulated:dma-engine`, `emulated:dma-engine,pasid=off,migration=v1`, `emulated:mailbox`.
//!
//! | model | options |
//! |---|---|
//! | `dma-engine` | `pasid=on\|off` (the PASID capability; on), `migration=both\|v2\|v1\|off` (both), `iommu=vtd\|mock` (vtd) |
//! | `mailbox` | `iommu=vtd\|mock` (vtd) |
//!
//! `iommu` picks the IOMMU the device sits behind on the emulated host: a VT-d-like one with
//! 20-bit PASIDs, nesting and dirty tracking, or the kernel selftest's mock IOMMU (no PASID).

use std::fmt;
use std::str::FromStr;

use super::models::dma_engine::{DmaEngine, DmaEngineOptions, MigrationMode};
use super::models::mailbox::Mailbox;
use super::vfio_core::{EmulatedDeviceError, EmulatedVfioDevice};
use crate::host::emulated::IommuProfile;

/// The prefix of every emulated device spec.
pub const PREFIX: &str = "emulated:";

/// A device model and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatedModel {
    /// `dma-engine`.
    DmaEngine(DmaEngineOptions),
    /// `mailbox`.
    Mailbox,
}

/// The IOMMU an emulated device sits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IommuChoice {
    /// A VT-d-like IOMMU (20-bit PASIDs, nesting, dirty tracking).
    #[default]
    Vtd,
    /// The kernel selftest's mock IOMMU (no PASID).
    Mock,
}

impl IommuChoice {
    /// The emulated host's profile for this IOMMU.
    pub fn profile(self) -> IommuProfile {
        match self {
            IommuChoice::Vtd => IommuProfile::Vtd(Default::default()),
            IommuChoice::Mock => IommuProfile::MOCK,
        }
    }
}

/// A parsed `emulated:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedDeviceSpec {
    /// The spec as written (the device's name).
    pub text: String,
    /// The model.
    pub model: EmulatedModel,
    /// The IOMMU in front of it.
    pub iommu: IommuChoice,
}

/// A spec that names no emulated device, or a device that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EmulatedSpecError {
    /// The spec does not start with `emulated:`.
    #[error(
        "device spec '{spec}' is not an emulated device (expected '{PREFIX}<model>[,key=value...]')"
    )]
    NotEmulated {
        /// The spec.
        spec: String,
    },
    /// The model is not one we have.
    #[error("device spec '{spec}': unknown emulated model '{model}' (known: dma-engine, mailbox)")]
    UnknownModel {
        /// The spec.
        spec: String,
        /// The model named.
        model: String,
    },
    /// An option the model does not have.
    #[error("device spec '{spec}': model '{model}' has no option '{key}' (known: {known})")]
    UnknownOption {
        /// The spec.
        spec: String,
        /// The model.
        model: &'static str,
        /// The option named.
        key: String,
        /// The options the model has.
        known: &'static str,
    },
    /// An option without `=value`.
    #[error("device spec '{spec}': option '{item}' needs a value ('key=value')")]
    MissingValue {
        /// The spec.
        spec: String,
        /// The option as written.
        item: String,
    },
    /// A value the option does not take.
    #[error("device spec '{spec}': '{key}={value}' is not valid (expected {expected})")]
    BadValue {
        /// The spec.
        spec: String,
        /// The option.
        key: String,
        /// The value given.
        value: String,
        /// What it takes.
        expected: &'static str,
    },
    /// An option given twice.
    #[error("device spec '{spec}': option '{key}' is given more than once")]
    Duplicate {
        /// The spec.
        spec: String,
        /// The option.
        key: String,
    },
    /// Building the device failed.
    #[error("device spec '{spec}': {source}")]
    Build {
        /// The spec.
        spec: String,
        /// Why.
        #[source]
        source: EmulatedDeviceError,
    },
}

impl EmulatedDeviceSpec {
    /// Whether `spec` is meant for an emulated device (starts with `emulated:`).
    pub fn matches(spec: &str) -> bool {
        spec.starts_with(PREFIX)
    }

    /// Parses a spec.
    pub fn parse(spec: &str) -> Result<Self, EmulatedSpecError> {
        let Some(body) = spec.strip_prefix(PREFIX) else {
            return Err(EmulatedSpecError::NotEmulated { spec: spec.into() });
        };
        let mut items = body.split(',');
        let model_name = items.next().unwrap_or_default();
        let (model_key, known): (&'static str, &'static str) = match model_name {
            "dma-engine" => ("dma-engine", "pasid, migration, iommu"),
            "mailbox" => ("mailbox", "iommu"),
            other => {
                return Err(EmulatedSpecError::UnknownModel {
                    spec: spec.into(),
                    model: other.into(),
                });
            }
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut options = DmaEngineOptions::default();
        let mut iommu = IommuChoice::default();
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                return Err(EmulatedSpecError::MissingValue {
                    spec: spec.into(),
                    item: item.into(),
                });
            };
            if seen.contains(&key) {
                return Err(EmulatedSpecError::Duplicate {
                    spec: spec.into(),
                    key: key.into(),
                });
            }
            seen.push(key);
            let bad = |expected| EmulatedSpecError::BadValue {
                spec: spec.into(),
                key: key.into(),
                value: value.into(),
                expected,
            };
            match (model_key, key) {
                (_, "iommu") => {
                    iommu = match value {
                        "vtd" => IommuChoice::Vtd,
                        "mock" => IommuChoice::Mock,
                        _ => return Err(bad("vtd or mock")),
                    }
                }
                ("dma-engine", "pasid") => {
                    options.pasid = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad("on or off")),
                    }
                }
                ("dma-engine", "migration") => {
                    options.migration = match value {
                        "both" => MigrationMode::Both,
                        "v2" => MigrationMode::V2,
                        "v1" => MigrationMode::V1,
                        "off" => MigrationMode::Off,
                        _ => return Err(bad("both, v2, v1 or off")),
                    }
                }
                _ => {
                    return Err(EmulatedSpecError::UnknownOption {
                        spec: spec.into(),
                        model: model_key,
                        key: key.into(),
                        known,
                    });
                }
            }
        }
        let model = match model_key {
            "dma-engine" => EmulatedModel::DmaEngine(options),
            _ => EmulatedModel::Mailbox,
        };
        Ok(EmulatedDeviceSpec {
            text: spec.into(),
            model,
            iommu,
        })
    }

    /// Builds the device the spec describes.
    pub fn build(&self) -> Result<EmulatedVfioDevice, EmulatedSpecError> {
        let name = &self.text;
        let built = match self.model {
            EmulatedModel::DmaEngine(options) => {
                EmulatedVfioDevice::new(name, |irq| DmaEngine::new(name, options, irq))
            }
            EmulatedModel::Mailbox => EmulatedVfioDevice::new(name, |irq| {
                Ok::<_, std::convert::Infallible>(Mailbox::new(irq))
            }),
        };
        let device = built.map_err(|source| EmulatedSpecError::Build {
            spec: self.text.clone(),
            source,
        })?;
        device.set_iommu_profile(self.iommu.profile());
        Ok(device)
    }
}

impl FromStr for EmulatedDeviceSpec {
    type Err = EmulatedSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for EmulatedDeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_and_options_parse() {
        let s = EmulatedDeviceSpec::parse("emulated:dma-engine").unwrap();
        assert_eq!(
            s.model,
            EmulatedModel::DmaEngine(DmaEngineOptions::default())
        );
        assert_eq!(s.iommu, IommuChoice::Vtd);
        let s = EmulatedDeviceSpec::parse("emulated:dma-engine,pasid=off,migration=v1").unwrap();
        assert_eq!(
            s.model,
            EmulatedModel::DmaEngine(DmaEngineOptions {
                pasid: false,
                migration: MigrationMode::V1
            })
        );
        let s = EmulatedDeviceSpec::parse("emulated:mailbox,iommu=mock").unwrap();
        assert_eq!(
            (s.model, s.iommu),
            (EmulatedModel::Mailbox, IommuChoice::Mock)
        );
    }

    #[test]
    fn bad_specs_are_typed_errors_naming_the_spec() {
        let err = |s: &str| EmulatedDeviceSpec::parse(s).unwrap_err();
        assert!(matches!(
            err("vfio:0000:00:01.0"),
            EmulatedSpecError::NotEmulated { .. }
        ));
        let e = err("emulated:gpu");
        assert!(matches!(&e, EmulatedSpecError::UnknownModel { model, .. } if model == "gpu"));
        assert!(e.to_string().contains("'emulated:gpu'"));
        assert!(matches!(
            err("emulated:mailbox,pasid=on"),
            EmulatedSpecError::UnknownOption {
                model: "mailbox",
                ..
            }
        ));
        assert!(matches!(
            err("emulated:dma-engine,pasid"),
            EmulatedSpecError::MissingValue { .. }
        ));
        assert!(matches!(
            err("emulated:dma-engine,migration=v3"),
            EmulatedSpecError::BadValue { .. }
        ));
        assert!(matches!(
            err("emulated:dma-engine,pasid=on,pasid=off"),
            EmulatedSpecError::Duplicate { .. }
        ));
        assert!(matches!(
            err("emulated:"),
            EmulatedSpecError::UnknownModel { .. }
        ));
    }
}
