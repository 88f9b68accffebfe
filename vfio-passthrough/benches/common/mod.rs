//! Shared by the benches: measuring a subject and its reference in the same run, printing the
//! ratio, and the emulated-host fixtures.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::Bencher;

thread_local! {
    /// Total time and iterations per benchmark id, accumulated over criterion's samples.
    static TOTALS: RefCell<HashMap<String, (Duration, u64)>> = RefCell::new(HashMap::new());
}

/// Runs `f` once per iteration through `iter_custom`, recording the time under `id`.
pub fn measure(b: &mut Bencher<'_>, id: &str, mut f: impl FnMut()) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = start.elapsed();
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            let e = t.entry(id.to_string()).or_default();
            e.0 += elapsed;
            e.1 += iters;
        });
        elapsed
    });
}

/// Mean time per iteration recorded under `id`.
pub fn mean(id: &str) -> Option<Duration> {
    TOTALS.with(|t| {
        t.borrow()
            .get(id)
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| *d / (*n as u32).max(1))
    })
}

/// Prints `subject / reference` as measured in this run.
pub fn report_ratio(subject: &str, reference: &str) {
    match (mean(subject), mean(reference)) {
        (Some(s), Some(r)) if r > Duration::ZERO => println!(
            "RATIO {subject} / {reference}: {:?} / {:?} = {:.2}x",
            s,
            r,
            s.as_secs_f64() / r.as_secs_f64()
        ),
        _ => println!("RATIO {subject} / {reference}: not measured"),
    }
}

/// [`report_ratio`], then what the subject's measured path includes, so that a ratio is read
/// against what it costs.
pub fn report_ratio_of(subject: &str, reference: &str, includes: &str) {
    report_ratio(subject, reference);
    println!("      {subject} = {includes}");
}

/// Prints `(subject - part) / reference`: the ratio left once a part measured on its own (a
/// syscall the subject makes) is taken out.
pub fn report_ratio_without(subject: &str, part: &str, reference: &str) {
    match (mean(subject), mean(part), mean(reference)) {
        (Some(s), Some(p), Some(r)) if r > Duration::ZERO => {
            let rest = s.saturating_sub(p);
            println!(
                "RATIO {subject} without {part} / {reference}: {:?} / {:?} = {:.2}x",
                rest,
                r,
                rest.as_secs_f64() / r.as_secs_f64()
            )
        }
        _ => println!("RATIO {subject} without {part} / {reference}: not measured"),
    }
}

/// An anonymous mapping of `len` bytes (`MAP_NORESERVE`: nothing is populated unless
/// `populate`), unmapped on drop.
pub struct Region {
    pub addr: u64,
    pub len: u64,
}

impl Region {
    pub fn new(len: u64, populate: bool) -> Self {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        if populate {
            flags |= libc::MAP_POPULATE;
        }
        // SAFETY: a fresh mapping chosen by the kernel; only the bench uses it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize + (2 << 20),
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of {len:#x} bytes failed");
        Region {
            addr: (p as u64).next_multiple_of(2 << 20),
            len,
        }
        .with_base(p as u64)
    }

    fn with_base(self, base: u64) -> Self {
        BASES.with(|b| {
            b.borrow_mut()
                .insert(self.addr, (base, self.len + (2 << 20)))
        });
        self
    }
}

thread_local! {
    static BASES: RefCell<HashMap<u64, (u64, u64)>> = RefCell::new(HashMap::new());
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some((base, len)) = BASES.with(|b| b.borrow_mut().remove(&self.addr)) {
            // SAFETY: unmaps the mapping `new` made.
            unsafe { libc::munmap(base as *mut libc::c_void, len as usize) };
        }
    }
}
