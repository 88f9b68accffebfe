//! The vCPU thread: run the vCPU, dispatch I/O and MMIO exits to the buses, and turn every
//! other exit into a machine exit reason.

use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_bindings::{
    KVM_EXIT_IO_IN, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN, kvm_run,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::Killable;

use super::kick::{KickableVcpu, kick_signal};
use super::{Vcpu, VcpuError};
use crate::buses::{Buses, IoBus};
use crate::power::{ExitReason, PowerControl};

/// A running vCPU thread.
#[derive(Debug)]
pub struct VcpuHandle {
    id: u32,
    thread: JoinHandle<()>,
}

impl VcpuHandle {
    /// The vCPU id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Makes the vCPU leave `KVM_RUN` and look at the power state.
    pub fn kick(&self) {
        if let Err(e) = self.thread.kill(kick_signal()) {
            log::debug!("kick of vCPU {}: {e}", self.id);
        }
    }

    /// Waits for the thread to end (after the machine stopped and the vCPU was kicked).
    pub fn join(self) {
        if self.thread.join().is_err() {
            log::error!("the thread of vCPU {} panicked", self.id);
        }
    }
}

/// Starts `vcpu` on its own thread. It runs until `power` says the machine is stopping, and
/// requests the machine's exit itself when the guest powers off, faults or fails.
pub fn spawn(vcpu: Vcpu, buses: Buses, power: Arc<PowerControl>) -> Result<VcpuHandle, VcpuError> {
    let id = vcpu.id;
    let thread = std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| run(vcpu, &buses, &power));
            if std::panic::catch_unwind(run).is_err() {
                // Without this the machine would wait forever for an exit reason.
                power.request_exit(vcpu_error(id, "the vCPU thread panicked".into()));
            }
        })
        .map_err(|source| VcpuError::Thread { id, source })?;
    Ok(VcpuHandle { id, thread })
}

fn run(vcpu: Vcpu, buses: &Buses, power: &PowerControl) {
    let id = vcpu.id;
    let mut vcpu = match KickableVcpu::new(vcpu.fd) {
        Ok(v) => v,
        Err(e) => {
            power.request_exit(vcpu_error(id, format!("cannot set up vCPU kicks: {e}")));
            return;
        }
    };
    while !power.is_stopping() {
        if let Err(reason) = step(vcpu.fd(), id, buses) {
            power.request_exit(reason);
            break;
        }
    }
}

fn vcpu_error(vcpu: u32, message: String) -> ExitReason {
    ExitReason::VcpuError { vcpu, message }
}

/// What is left to do once the exit no longer borrows the vCPU.
enum Followup {
    None,
    PortIo,
    InternalError,
}

/// Runs the vCPU to its next exit and handles it. `Err` stops the machine.
fn step(fd: &mut VcpuFd, id: u32, buses: &Buses) -> Result<(), ExitReason> {
    let followup = match fd.run() {
        Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..)) => Followup::PortIo,
        Ok(VcpuExit::MmioRead(addr, data)) => {
            buses.mmio.read(addr, data);
            Followup::None
        }
        Ok(VcpuExit::MmioWrite(addr, data)) => {
            buses.mmio.write(addr, data);
            Followup::None
        }
        Ok(VcpuExit::InternalError) => Followup::InternalError,
        Ok(VcpuExit::Shutdown) => return Err(ExitReason::TripleFault { vcpu: id }),
        Ok(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _)) => {
            return Err(ExitReason::PowerOff);
        }
        Ok(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _)) => return Err(ExitReason::Reset),
        Ok(VcpuExit::Hlt) => {
            // The in-kernel local APIC handles HLT; this exit means KVM lost track of it.
            return Err(vcpu_error(
                id,
                "unexpected HLT exit with the in-kernel APIC".into(),
            ));
        }
        Ok(VcpuExit::FailEntry(reason, cpu)) => {
            return Err(vcpu_error(
                id,
                format!("KVM failed to enter the guest: hardware reason {reason:#x} on CPU {cpu}"),
            ));
        }
        Ok(VcpuExit::Intr) => Followup::None,
        Ok(other) => return Err(vcpu_error(id, format!("unexpected KVM exit {other:?}"))),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            // Kicked: clear the kick and let the caller look at the power state.
            fd.set_kvm_immediate_exit(0);
            Followup::None
        }
        Err(e) => return Err(vcpu_error(id, format!("KVM_RUN failed: {e}"))),
    };
    match followup {
        Followup::None => Ok(()),
        Followup::PortIo => {
            port_io(fd, &buses.pio);
            Ok(())
        }
        Followup::InternalError => Err(vcpu_error(id, describe_internal_error(fd))),
    }
}

/// Handles a `KVM_EXIT_IO`, including string I/O (`rep ins`/`outs`), which carries `count`
/// accesses of `size` bytes each. kvm-ioctls hands out the data without the access size, so this
/// reads the exit record itself.
fn port_io(fd: &mut VcpuFd, pio: &IoBus) {
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_IO, so `io` is the union member KVM filled in.
    let io = unsafe { run.__bindgen_anon_1.io };
    let size = usize::from(io.size);
    if size == 0 {
        return;
    }
    let base = std::ptr::from_mut::<kvm_run>(run).cast::<u8>();
    // SAFETY: KVM puts `count * size` bytes of data at `data_offset` inside the kvm_run mapping,
    // which `fd` keeps mapped; no other reference to those bytes exists while `data` lives.
    let data = unsafe {
        std::slice::from_raw_parts_mut(base.add(io.data_offset as usize), size * io.count as usize)
    };
    let port = u64::from(io.port);
    for access in data.chunks_mut(size) {
        if u32::from(io.direction) == KVM_EXIT_IO_IN {
            pio.read(port, access);
        } else {
            pio.write(port, access);
        }
    }
}

/// "KVM emulation failure at RIP 0x...", with the instruction bytes when KVM reports them.
fn describe_internal_error(fd: &mut VcpuFd) -> String {
    let rip = fd.get_regs().map(|r| r.rip);
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal` (and, for emulation
    // failures, its `emulation_failure` layout) is the union member KVM filled in.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let mut message = if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
        "KVM emulation failure".to_string()
    } else {
        format!("KVM internal error (suberror {})", internal.suberror)
    };
    match rip {
        Ok(rip) => message.push_str(&format!(" at RIP {rip:#x}")),
        Err(e) => message.push_str(&format!(" (RIP unavailable: {e})")),
    }
    if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
        // SAFETY: as above; the emulation-failure layout overlays `internal`.
        let failure = unsafe { run.__bindgen_anon_1.emulation_failure };
        // `ndata` counts the valid u64 words after it: flags, then 16 bytes of instruction.
        let has_bytes = failure.ndata >= 3
            && failure.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0;
        if has_bytes {
            // SAFETY: the flag says the instruction bytes are valid.
            let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
            let len = usize::from(insn.insn_size).min(insn.insn_bytes.len());
            let bytes: Vec<String> = insn.insn_bytes[..len]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            message.push_str(&format!(" (instruction bytes {})", bytes.join(" ")));
        }
    }
    message
}
