//! Kicking a vCPU thread out of `KVM_RUN` so it sees that the machine is stopping.
//!
//! A vCPU blocked in the kernel (a halted guest waits there, since the in-kernel LAPIC handles
//! HLT) only returns on a signal. The kick signal's handler sets `immediate_exit` in the thread's
//! `kvm_run`, so a kick that lands just before the thread enters `KVM_RUN` still makes that entry
//! return at once with `EINTR`: with "set the stop flag, then kick" on one side and "check the
//! flag, then run" on the other, no kick is lost.

use std::cell::Cell;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;

use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuFd;
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler, unblock_signal};

thread_local! {
    // Const-initialised and without a destructor, so the signal handler can use it safely.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The kick signal: the first real-time signal the C library leaves to applications.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn handle_kick(_: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own `kvm_run` mapping, registered by `KickableVcpu`
        // and cleared before the vCPU fd (and its mapping) can go away; a volatile byte store is
        // async-signal-safe.
        unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 1) };
    }
}

/// Installs the kick handler once per process.
pub fn install_handler() -> Result<(), std::io::Error> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), handle_kick).map_err(|e| e.errno()))
        .map_err(std::io::Error::from_raw_os_error)
}

/// A vCPU fd registered for kicks on the thread that runs it: a kick of this thread sets the
/// fd's `immediate_exit`. Not `Send`: the registration is per thread.
pub struct KickableVcpu {
    fd: VcpuFd,
    _this_thread_only: PhantomData<*const ()>,
}

impl KickableVcpu {
    /// Registers `fd`'s `kvm_run` for the current thread and unblocks the kick signal here.
    pub fn new(mut fd: VcpuFd) -> Result<Self, std::io::Error> {
        unblock_signal(kick_signal()).map_err(|e| std::io::Error::other(e.to_string()))?;
        let run: *mut kvm_run = fd.get_kvm_run();
        KVM_RUN.with(|c| c.set(run));
        Ok(Self {
            fd,
            _this_thread_only: PhantomData,
        })
    }

    /// The vCPU fd.
    pub fn fd(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }
}

impl Drop for KickableVcpu {
    fn drop(&mut self) {
        // Runs before `fd` (and the `kvm_run` mapping) is dropped.
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
    }
}
