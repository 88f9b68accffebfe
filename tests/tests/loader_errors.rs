//! Bad kernels, initramfs files and command lines: each gives the specific `LoaderError` and
//! leaves guest memory untouched.

mod boot_images;

use std::path::Path;

use boot_images::*;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm::layout::CMDLINE_MAX_SIZE;
use vmm::loader::{LoaderError, load_kernel, load_kernel_from_paths};

const RAM: u64 = 16 << 20;

fn load(image: &[u8], cmdline: &str, initrd: Option<&[u8]>) -> (LoaderError, GuestMemoryMmap) {
    let (_, mut kernel) = scratch_file("kernel", image);
    let mut initramfs = initrd.map(|bytes| scratch_file("initrd", bytes).1);
    let mem = guest_memory(RAM);
    let err = load_kernel(&mem, &mut kernel, cmdline, initramfs.as_mut())
        .expect_err("the load must fail");
    (err, mem)
}

fn assert_untouched(mem: &GuestMemoryMmap) {
    assert_eq!(first_nonzero(mem, 0, RAM), None, "guest memory was written");
}

#[test]
fn garbage_is_neither_elf_nor_bzimage() {
    let (err, mem) = load(&pattern(4096, 5), "", None);
    assert!(
        matches!(err, LoaderError::NotAKernel { size: 4096 }),
        "{err}"
    );
    assert!(err.to_string().contains("neither an ELF"), "{err}");
    assert_untouched(&mem);
}

#[test]
fn empty_file_is_not_a_kernel() {
    let (err, _) = load(&[], "", None);
    assert!(matches!(err, LoaderError::NotAKernel { size: 0 }), "{err}");
}

#[test]
fn truncated_elf_segment_is_reported_before_anything_is_written() {
    let mut image = ElfSpec::simple(None).build();
    image.truncate(image.len() - 100);
    let (err, mem) = load(&image, "", None);
    assert!(
        matches!(
            err,
            LoaderError::Truncated {
                what: "kernel ELF segment",
                ..
            }
        ),
        "{err}"
    );
    assert_untouched(&mem);
}

#[test]
fn elf_header_cut_short_is_truncated() {
    let image = ElfSpec::simple(None).build();
    let (err, _) = load(&image[..40], "", None);
    assert!(
        matches!(
            err,
            LoaderError::Truncated {
                what: "kernel ELF header",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_bzimage_has_no_protected_mode_kernel() {
    let spec = BzImageSpec::default();
    let image = spec.build();
    let (err, mem) = load(&image[..spec.setup_size()], "", None);
    assert!(matches!(err, LoaderError::Truncated { .. }), "{err}");
    assert_untouched(&mem);
}

#[test]
fn elf_segment_larger_than_ram_does_not_fit() {
    let mut spec = ElfSpec::simple(None);
    spec.segments[0].memsz = 2 * RAM;
    let (err, mem) = load(&spec.build(), "", None);
    assert!(
        matches!(
            err,
            LoaderError::KernelOutsideRam {
                start: 0x20_0000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("too large"), "{err}");
    assert_untouched(&mem);
}

#[test]
fn bzimage_whose_init_size_exceeds_ram_does_not_fit() {
    let spec = BzImageSpec {
        init_size: (RAM as u32) * 2,
        ..BzImageSpec::default()
    };
    let (err, mem) = load(&spec.build(), "", None);
    assert!(matches!(err, LoaderError::KernelOutsideRam { .. }), "{err}");
    assert_untouched(&mem);
}

#[test]
fn elf_below_one_mib_would_overwrite_the_boot_structures() {
    let mut spec = ElfSpec::simple(None);
    spec.segments[0].paddr = 0x8000;
    let (err, mem) = load(&spec.build(), "", None);
    assert!(
        matches!(err, LoaderError::KernelBelowHighMemory { addr: 0x8000 }),
        "{err}"
    );
    assert_untouched(&mem);
}

#[test]
fn thirty_two_bit_and_foreign_elves_are_refused() {
    let spec = ElfSpec {
        class: 1,
        ..ElfSpec::simple(None)
    };
    let (err, _) = load(&spec.build(), "", None);
    assert!(matches!(err, LoaderError::UnsupportedElf { .. }), "{err}");
    assert!(err.to_string().contains("not 64-bit"), "{err}");
    let spec = ElfSpec {
        machine: 183,
        ..ElfSpec::simple(None)
    };
    let (err, _) = load(&spec.build(), "", None);
    assert!(
        err.to_string().contains("machine 183 is not x86-64"),
        "{err}"
    );
}

#[test]
fn bzimage_without_a_64bit_entry_is_refused() {
    let old = BzImageSpec {
        version: 0x020a,
        ..BzImageSpec::default()
    };
    let (err, mem) = load(&old.build(), "", None);
    assert!(
        matches!(err, LoaderError::UnsupportedBzImage { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("2.10"), "{err}");
    assert_untouched(&mem);
    let no_64 = BzImageSpec {
        xloadflags: 0,
        ..BzImageSpec::default()
    };
    let (err, _) = load(&no_64.build(), "", None);
    assert!(err.to_string().contains("XLF_KERNEL_64"), "{err}");
}

#[test]
fn command_line_longer_than_the_layout_area_is_refused() {
    let cmdline = "a".repeat(CMDLINE_MAX_SIZE);
    let (err, mem) = load(&ElfSpec::simple(None).build(), &cmdline, None);
    assert!(
        matches!(err, LoaderError::CmdlineTooLong { len, max } if len == CMDLINE_MAX_SIZE && max == CMDLINE_MAX_SIZE - 1),
        "{err}"
    );
    assert_untouched(&mem);
}

#[test]
fn command_line_longer_than_the_kernels_cmdline_size_is_refused() {
    let spec = BzImageSpec {
        cmdline_size: 16,
        ..BzImageSpec::default()
    };
    let (err, mem) = load(&spec.build(), "console=ttyS0 quiet", None);
    assert!(
        matches!(err, LoaderError::CmdlineTooLong { len: 19, max: 16 }),
        "{err}"
    );
    assert_untouched(&mem);
}

#[test]
fn command_line_with_a_nul_is_refused() {
    let (err, _) = load(
        &ElfSpec::simple(None).build(),
        "root=/dev/vda\0init=/bin/sh",
        None,
    );
    assert!(
        matches!(err, LoaderError::CmdlineHasNul { offset: 13 }),
        "{err}"
    );
}

#[test]
fn initramfs_larger_than_the_room_below_initrd_addr_max_does_not_fit() {
    // The kernel needs 4 MiB from 1 MiB; only 3 MiB remain below initrd_addr_max (8 MiB).
    let spec = BzImageSpec {
        initrd_addr_max: (8 << 20) - 1,
        ..BzImageSpec::default()
    };
    let initrd = vec![1u8; 4 << 20];
    let (err, mem) = load(&spec.build(), "", Some(&initrd));
    assert!(
        matches!(err, LoaderError::InitramfsDoesNotFit { size, .. } if size == 4 << 20),
        "{err}"
    );
    assert_untouched(&mem);
}

#[test]
fn empty_initramfs_is_refused() {
    let (err, _) = load(&ElfSpec::simple(None).build(), "", Some(&[]));
    assert!(matches!(err, LoaderError::InitramfsEmpty), "{err}");
}

#[test]
fn memory_without_the_low_megabyte_cannot_take_the_boot_structures() {
    let (_, mut kernel) = scratch_file("kernel", &ElfSpec::simple(None).build());
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x10_0000), 16 << 20)]).unwrap();
    let err = load_kernel(&mem, &mut kernel, "", None).expect_err("no low memory");
    assert!(matches!(err, LoaderError::LowMemoryMissing), "{err}");
}

#[test]
fn errors_from_paths_name_the_file() {
    let mem = guest_memory(RAM);
    let (garbage, _) = scratch_file("not-a-kernel", &pattern(600, 2));
    let err = load_kernel_from_paths(&mem, &garbage, "", None).expect_err("garbage");
    assert!(
        err.to_string().starts_with(&garbage.display().to_string()),
        "{err}"
    );

    let (kernel, _) = scratch_file("kernel", &ElfSpec::simple(None).build());
    let missing = Path::new("/nonexistent/initrd.img");
    let err = load_kernel_from_paths(&mem, &kernel, "", Some(missing)).expect_err("missing");
    assert!(
        matches!(
            err,
            LoaderError::Open {
                what: "initramfs",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/initrd.img"), "{err}");

    let (initrd, _) = scratch_file("initrd", &[]);
    let err = load_kernel_from_paths(&mem, &kernel, "", Some(&initrd)).expect_err("empty");
    assert!(
        err.to_string().starts_with(&initrd.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().ends_with("the initramfs is empty"), "{err}");
    assert_untouched(&mem);
}
