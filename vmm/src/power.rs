//! How a running machine stops: the first exit request (power-off, reset, a vCPU failure) wins
//! and is what [`wait`](PowerControl::wait) returns; every vCPU then stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use devices::bus::lock;

/// Why the machine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest powered off (ACPI S5, or a KVM shutdown system event).
    PowerOff,
    /// The guest asked for a reset (i8042 command 0xfe, or a KVM reset system event); the VMM
    /// exits rather than rebooting.
    Reset,
    /// A vCPU hit a triple fault (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// The vCPU that faulted.
        vcpu: u32,
    },
    /// A vCPU stopped on an error it cannot recover from (emulation failure, failed entry,
    /// unexpected exit).
    VcpuError {
        /// The vCPU that failed.
        vcpu: u32,
        /// What happened, e.g. "KVM emulation failure at RIP 0x100004".
        message: String,
    },
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PowerOff => write!(f, "guest powered off"),
            Self::Reset => write!(f, "guest requested a reset"),
            Self::TripleFault { vcpu } => write!(f, "vCPU {vcpu} triple-faulted"),
            Self::VcpuError { vcpu, message } => write!(f, "vCPU {vcpu}: {message}"),
        }
    }
}

/// The machine's power state, shared by the devices that can stop it, the vCPUs and the owner
/// waiting for the exit.
#[derive(Debug, Default)]
pub struct PowerControl {
    reason: Mutex<Option<ExitReason>>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl PowerControl {
    /// A machine that is running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the machine to stop for `reason`. Only the first request is kept.
    pub fn request_exit(&self, reason: ExitReason) {
        let mut current = lock(&self.reason);
        if current.is_none() {
            log::info!("machine stopping: {reason}");
            *current = Some(reason);
        }
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Stops the machine without an exit reason (the VMM itself is shutting it down).
    pub fn stop(&self) {
        let _guard = lock(&self.reason);
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Whether vCPUs must stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The exit reason, if the machine was asked to exit.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        lock(&self.reason).clone()
    }

    /// Blocks until an exit is requested and returns its reason (a bare [`stop`](Self::stop)
    /// does not end the wait).
    pub fn wait_for_exit(&self) -> ExitReason {
        let mut reason = lock(&self.reason);
        loop {
            if let Some(reason) = reason.as_ref() {
                return reason.clone();
            }
            reason = self.changed.wait(reason).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until an exit is requested and returns its reason, or returns `None` once
    /// `timeout` has passed or the machine was stopped without a reason.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reason = lock(&self.reason);
        loop {
            if reason.is_some() || self.is_stopping() {
                return reason.clone();
            }
            reason = match deadline {
                None => self.changed.wait(reason).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(reason, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn first_exit_request_wins() {
        let p = PowerControl::new();
        assert!(!p.is_stopping());
        p.request_exit(ExitReason::Reset);
        p.request_exit(ExitReason::PowerOff);
        assert!(p.is_stopping());
        assert_eq!(p.wait(None), Some(ExitReason::Reset));
        assert_eq!(p.wait_for_exit(), ExitReason::Reset);
    }

    #[test]
    fn wait_wakes_when_another_thread_requests_exit() {
        let p = Arc::new(PowerControl::new());
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait(None))
        };
        p.request_exit(ExitReason::TripleFault { vcpu: 1 });
        assert_eq!(
            waiter.join().unwrap(),
            Some(ExitReason::TripleFault { vcpu: 1 })
        );
    }

    #[test]
    fn wait_times_out_without_a_request() {
        let p = PowerControl::new();
        assert_eq!(p.wait(Some(Duration::from_millis(1))), None);
        p.stop();
        assert_eq!(p.wait(None), None);
    }

    #[test]
    fn exit_reasons_read_as_sentences() {
        let e = ExitReason::VcpuError {
            vcpu: 0,
            message: "KVM emulation failure at RIP 0x100004".into(),
        };
        assert_eq!(
            e.to_string(),
            "vCPU 0: KVM emulation failure at RIP 0x100004"
        );
    }
}
