//! The VMM: the only crate that knows every concrete type and wires them together.

pub mod acpi;
pub mod boot_entry;
pub mod layout;
pub mod loader;
