//! The VMM: the only crate that knows every concrete type and wires them together.

pub mod acpi;
pub mod assembly;
pub mod boot_entry;
pub mod buses;
pub mod cli;
pub mod event_loop;
pub mod harness;
pub mod hypervisor;
pub mod interrupts;
pub mod kvm;
pub mod launch;
pub mod layout;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod memory_slots;
pub mod passthrough;
pub mod pci;
pub mod platform;
pub mod power;
pub mod vcpu;
