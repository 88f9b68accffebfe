//! Booting hand-assembled guests under KVM in each boot protocol, and the ways a guest stops the
//! machine (power-off, reset, triple fault).

mod common;

use common::{load, machine, run_to_exit};
use vmm::boot_entry::BootProtocol;
use vmm::power::ExitReason;

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn linux64_guest_prints_on_com1_and_powers_off() {
    let (mut m, serial) = machine();
    load(&mut m, &common::linux64_hello(), BootProtocol::Linux64);
    assert_eq!(run_to_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "long mode: hello\n");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn pvh_guest_prints_on_com1_and_powers_off() {
    let (mut m, serial) = machine();
    load(&mut m, &common::pvh_hello(), BootProtocol::Pvh);
    assert_eq!(run_to_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "pvh: hello\n");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn i8042_reset_command_stops_the_machine_with_reset() {
    let (mut m, serial) = machine();
    // mov al, 0xfe; out 0x64, al; hlt
    load(
        &mut m,
        &[0xb0, 0xfe, 0xe6, 0x64, 0xf4],
        BootProtocol::Linux64,
    );
    assert_eq!(run_to_exit(&mut m, &serial), ExitReason::Reset);
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn undefined_instruction_without_an_idt_is_a_triple_fault() {
    let (mut m, serial) = machine();
    // ud2: #UD finds no usable IDT entry (the boot IDT is empty), then #DF, then shutdown.
    load(&mut m, &[0x0f, 0x0b], BootProtocol::Linux64);
    assert_eq!(
        run_to_exit(&mut m, &serial),
        ExitReason::TripleFault { vcpu: 0 }
    );
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn second_vcpu_waits_for_sipi_and_does_not_block_power_off() {
    let serial = vmm::platform::SerialCapture::new();
    let config = vmm::machine::MachineConfig {
        memory_size: 16 << 20,
        vcpus: 2,
        devices: vmm::assembly::DeviceConfig::new(vmm::platform::SerialSink::Capture(
            serial.clone(),
        )),
    };
    let mut m = vmm::machine::Machine::new(&config).unwrap();
    load(&mut m, &common::linux64_hello(), BootProtocol::Linux64);
    // vCPU 1 blocks in KVM_RUN waiting for INIT/SIPI; stopping must kick it out.
    assert_eq!(run_to_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "long mode: hello\n");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn instruction_kvm_cannot_emulate_is_reported_with_its_rip() {
    let (mut m, serial) = machine();
    // shlx eax, ebx, ecx (c4 e2 71 f7 c3), then power off (66 ba 04 06; 66 b8 00 34; 66 ef).
    let code = [
        0xc4, 0xe2, 0x71, 0xf7, 0xc3, 0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x34, 0x66, 0xef,
    ];
    load(&mut m, &code, BootProtocol::Linux64);
    match run_to_exit(&mut m, &serial) {
        // A host whose KVM emulates every instruction cannot emulate SHLX (measured); a host
        // running guests natively just executes it.
        ExitReason::PowerOff => {
            eprintln!("skipped: this host runs SHLX natively, there is no emulation failure to see")
        }
        ExitReason::VcpuError { vcpu: 0, message } => assert!(
            message.starts_with(
                "KVM emulation failure at RIP 0x100000 (instruction bytes c4 e2 71 f7 c3"
            ),
            "{message}"
        ),
        other => panic!("unexpected exit: {other:?}"),
    }
}
