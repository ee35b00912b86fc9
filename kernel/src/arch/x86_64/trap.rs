//! CPU exceptions: a naked entry stub per vector saves the registers into a [`TrapFrame`] and
//! calls [`dispatch`]. A page fault at a probe resumes at its fixup; every other exception is
//! fatal: it is reported (vector, error code, registers, backtrace) and the machine stops
//! with the fatal exit status.
//!
//! The same stubs serve a Xen PV kernel, which has no IDT: Xen delivers exceptions through
//! the trap table given to `set_trap_table`, on the current stack, with the interrupted `rcx`
//! and `r11` pushed above the CPU-style frame, and the kernel returns with `HYPERVISOR_iret`
//! (it runs at CPL 3, where `iretq` cannot restore its event mask). A flag set once at the PV
//! entry selects those two differences.
//!
//! Xen PV also enters the kernel through two callbacks on the same kind of frame, and they
//! reuse this path under pseudo-vectors above the 256 hardware ones: the event upcall
//! ([`XEN_EVENT_UPCALL`], handled by `platform::xen_events`, then returned from like an
//! exception) and the failsafe callback ([`XEN_FAILSAFE`], fatal).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, Ordering};

use janus_hypercall::xen::hypercall::HypercallPage;
use janus_hypercall::xen::traps::{TrapInfo, TrapTableError, iret_entry_offset};

use x86_64::VirtAddr;
use x86_64::registers::control::Cr2;
use x86_64::registers::segmentation::{CS, Segment};

use super::{backtrace, extable, gdt, idt, interrupt, stack};
use crate::emergency_println;
use crate::platform::exit::{ExitCode, exit};

/// What the entry stub and the CPU leave on the stack, lowest address first.
#[derive(Debug)]
#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// 15 saved registers, vector, error code, then the CPU's 5-word interrupt frame.
const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);
const _: () = assert!(offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(offset_of!(TrapFrame, rip) == 17 * 8);

/// Whether exceptions arrive and return the Xen PV way; set before the trap table exists.
static XEN_PV_FRAMES: AtomicBool = AtomicBool::new(false);

#[unsafe(naked)]
unsafe extern "C" fn trap_common() {
    // On entry rsp is 16-byte aligned plus the CPU frame (40), error code and vector (16):
    // 15 more pushes (120) bring it back to a 16-byte boundary for the call.
    core::arch::naked_asm!(
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14",
        "push r15",
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "add rsp, 16",
        "cmp byte ptr [rip + {xen_pv}], 0",
        "jne 2f",
        "iretq",
        // HYPERVISOR_iret's context: the hypercall stub pushes rcx, r11 and rax above
        // these flags (0: not a return from a system call).
        "2:",
        "push 0",
        "jmp janus_hypercall_page + {iret}",
        dispatch = sym dispatch,
        xen_pv = sym XEN_PV_FRAMES,
        iret = const iret_entry_offset(),
    )
}

/// Entry stubs; `error_code` marks the vectors for which the CPU pushes one.
macro_rules! entry_stubs {
    ($($name:ident: $vector:literal $($error_code:ident)?;)*) => {
        $(
            #[unsafe(naked)]
            unsafe extern "C" fn $name() {
                core::arch::naked_asm!(
                    "cmp byte ptr [rip + {xen_pv}], 0",
                    "je 2f",
                    "pop rcx",
                    "pop r11",
                    "2:",
                    entry_stubs!(@pad $($error_code)?),
                    "push {vector}",
                    "jmp {common}",
                    vector = const $vector,
                    common = sym trap_common,
                    xen_pv = sym XEN_PV_FRAMES,
                )
            }
        )*
        const ENTRY_STUBS: [unsafe extern "C" fn(); 32] = [$($name),*];
    };
    (@pad error_code) => { "" };
    (@pad) => { "push 0" };
}

entry_stubs! {
    divide_error: 0;
    debug: 1;
    nmi: 2;
    breakpoint: 3;
    overflow: 4;
    bound_range: 5;
    invalid_opcode: 6;
    device_not_available: 7;
    double_fault: 8 error_code;
    coprocessor_segment_overrun: 9;
    invalid_tss: 10 error_code;
    segment_not_present: 11 error_code;
    stack_segment_fault: 12 error_code;
    general_protection: 13 error_code;
    page_fault: 14 error_code;
    reserved_15: 15;
    x87_floating_point: 16;
    alignment_check: 17 error_code;
    machine_check: 18;
    simd_floating_point: 19;
    virtualization: 20;
    control_protection: 21 error_code;
    reserved_22: 22;
    reserved_23: 23;
    reserved_24: 24;
    reserved_25: 25;
    reserved_26: 26;
    reserved_27: 27;
    hypervisor_injection: 28;
    vmm_communication: 29 error_code;
    security: 30 error_code;
    reserved_31: 31;
}

/// Entry stubs for the interrupt vectors of [`interrupt::VECTORS`], in that order. Only a
/// kernel with an IDT gets interrupts: Xen PV delivers events by upcall.
macro_rules! interrupt_stubs {
    ($($name:ident: $vector:expr;)*) => {
        $(
            #[unsafe(naked)]
            unsafe extern "C" fn $name() {
                core::arch::naked_asm!(
                    "push 0",
                    "push {vector}",
                    "jmp {common}",
                    vector = const $vector,
                    common = sym trap_common,
                )
            }
        )*
        const INTERRUPT_STUBS: [unsafe extern "C" fn(); interrupt::VECTORS.len()] = [$($name),*];
    };
}

interrupt_stubs! {
    pic_0: interrupt::VECTORS[0];
    pic_1: interrupt::VECTORS[1];
    pic_2: interrupt::VECTORS[2];
    pic_3: interrupt::VECTORS[3];
    pic_4: interrupt::VECTORS[4];
    pic_5: interrupt::VECTORS[5];
    pic_6: interrupt::VECTORS[6];
    pic_7: interrupt::VECTORS[7];
    pic_8: interrupt::VECTORS[8];
    pic_9: interrupt::VECTORS[9];
    pic_10: interrupt::VECTORS[10];
    pic_11: interrupt::VECTORS[11];
    pic_12: interrupt::VECTORS[12];
    pic_13: interrupt::VECTORS[13];
    pic_14: interrupt::VECTORS[14];
    pic_15: interrupt::VECTORS[15];
    device_0: interrupt::VECTORS[16];
    device_1: interrupt::VECTORS[17];
    device_2: interrupt::VECTORS[18];
    device_3: interrupt::VECTORS[19];
    device_4: interrupt::VECTORS[20];
    device_5: interrupt::VECTORS[21];
    device_6: interrupt::VECTORS[22];
    device_7: interrupt::VECTORS[23];
    apic_timer: interrupt::VECTORS[24];
    xen_callback: interrupt::VECTORS[25];
    apic_spurious: interrupt::VECTORS[26];
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide-error",
    "debug",
    "nmi",
    "breakpoint",
    "overflow",
    "bound-range",
    "invalid-opcode",
    "device-not-available",
    "double-fault",
    "coprocessor-segment-overrun",
    "invalid-tss",
    "segment-not-present",
    "stack-segment-fault",
    "general-protection",
    "page-fault",
    "reserved",
    "x87-floating-point",
    "alignment-check",
    "machine-check",
    "simd-floating-point",
    "virtualization",
    "control-protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor-injection",
    "vmm-communication",
    "security",
    "reserved",
];

const INVALID_OPCODE: u64 = 6;
const GENERAL_PROTECTION: u64 = 13;
const PAGE_FAULT: u64 = 14;

/// The pseudo-vector of Xen PV's event upcall in [`TrapFrame::vector`]: no hardware
/// vector is 256 or more, so nothing else can arrive as it.
pub const XEN_EVENT_UPCALL: u64 = 0x100;
/// The pseudo-vector of Xen PV's failsafe callback; its error code packs the four data
/// selectors Xen failed to load, `ds | es << 16 | fs << 32 | gs << 48`.
pub const XEN_FAILSAFE: u64 = 0x101;

/// Xen PV's event upcall. Xen enters it with the frame of an exception without error
/// code, `rcx` and `r11` above it (`create_bounce_frame` with `TBF_INTERRUPT`,
/// xen/arch/x86/x86_64/entry.S), and with upcalls masked; the `HYPERVISOR_iret` at the
/// end of [`trap_common`] restores the mask from the frame's `rflags.IF`.
#[unsafe(naked)]
unsafe extern "C" fn xen_event_upcall() {
    core::arch::naked_asm!(
        "pop rcx",
        "pop r11",
        "push 0",
        "push {vector}",
        "jmp {common}",
        vector = const XEN_EVENT_UPCALL,
        common = sym trap_common,
    )
}

/// Xen PV's failsafe callback: Xen could not load a data segment register while
/// switching back to this vCPU, and enters here with `ds`, `es`, `fs`, `gs` between
/// `r11` and `rip` (`load_segments`, xen/arch/x86/domain.c). The four selectors are packed
/// into the one word that becomes the error code, so the frame matches [`TrapFrame`] from
/// there on; the report is fatal and never returns.
#[unsafe(naked)]
unsafe extern "C" fn xen_failsafe() {
    // After the two pops: ds at 0, es at 8, fs at 16, gs at 24, rip at 32; rax is saved
    // below them while it packs the selectors into gs's slot, the one just below rip.
    core::arch::naked_asm!(
        "pop rcx",
        "pop r11",
        "push rax",
        "movzx eax, word ptr [rsp + 32]",
        "shl rax, 16",
        "mov ax, word ptr [rsp + 24]",
        "shl rax, 16",
        "mov ax, word ptr [rsp + 16]",
        "shl rax, 16",
        "mov ax, word ptr [rsp + 8]",
        "mov [rsp + 32], rax",
        "pop rax",
        "add rsp, 24",
        "push {vector}",
        "jmp {common}",
        vector = const XEN_FAILSAFE,
        common = sym trap_common,
    )
}

/// Where Xen PV should enter for the event upcall (`CALLBACKTYPE_event`); only once
/// [`init_xen_pv`] has selected Xen-style returns.
pub fn xen_event_upcall_entry() -> VirtAddr {
    VirtAddr::new(xen_event_upcall as *const () as u64)
}

/// Where Xen PV should enter for the failsafe callback (`CALLBACKTYPE_failsafe`).
pub fn xen_failsafe_entry() -> VirtAddr {
    VirtAddr::new(xen_failsafe as *const () as u64)
}

fn exception_name(vector: u64) -> &'static str {
    match vector {
        XEN_EVENT_UPCALL => "xen-event-upcall",
        XEN_FAILSAFE => "xen-failsafe",
        _ => usize::try_from(vector)
            .ok()
            .and_then(|v| EXCEPTION_NAMES.get(v))
            .copied()
            .unwrap_or("unknown"),
    }
}

fn ist_for(vector: usize) -> u16 {
    match vector {
        2 => stack::IST_NMI,
        8 => stack::IST_DOUBLE_FAULT,
        14 => stack::IST_PAGE_FAULT,
        18 => stack::IST_MACHINE_CHECK,
        _ => 0,
    }
}

/// Loads the GDT/TSS and an IDT routing the 32 exception vectors and the interrupt vectors
/// to their stubs.
pub fn init() {
    gdt::init();
    let code = CS::get_reg().0;
    let exceptions = ENTRY_STUBS
        .iter()
        .enumerate()
        .map(|(vector, stub)| (vector as u8, *stub as usize as u64, ist_for(vector)));
    let interrupts = interrupt::VECTORS
        .iter()
        .zip(INTERRUPT_STUBS)
        .map(|(&vector, stub)| (vector, stub as usize as u64, 0));
    idt::load(code, exceptions.chain(interrupts));
}

/// Vectors a PV kernel does not handle: Xen keeps NMI and machine checks (they come as
/// callbacks, if registered) and never reflects a double fault.
const NOT_FOR_XEN_PV: [usize; 3] = [2, 8, 18];

/// Routes the exception vectors to the same stubs through Xen's virtual IDT. Events stay
/// masked in handlers, as an interrupt gate clears IF; `int3` and `into` may be raised by
/// software at any privilege.
pub fn init_xen_pv(xen: &HypercallPage) -> Result<(), TrapTableError> {
    XEN_PV_FRAMES.store(true, Ordering::SeqCst);
    let mut table = [TrapInfo::default(); 32];
    let mut count = 0;
    for (vector, stub) in ENTRY_STUBS.iter().enumerate() {
        if NOT_FOR_XEN_PV.contains(&vector) {
            continue;
        }
        let dpl = if vector == 3 || vector == 4 { 3 } else { 0 };
        table[count] = TrapInfo::kernel(vector as u8, *stub as usize as u64, dpl, true);
        count += 1;
    }
    // SAFETY: every stub saves the frame, handles its vector through `dispatch`, and
    // returns with HYPERVISOR_iret now that XEN_PV_FRAMES is set.
    unsafe { xen.set_trap_table(&table[..count]) }
}

extern "C" fn dispatch(frame: &mut TrapFrame) {
    if frame.vector == XEN_EVENT_UPCALL {
        crate::platform::xen_events::handle_upcall();
        return;
    }
    if let Ok(vector @ 32..) = u8::try_from(frame.vector) {
        interrupt::handle(vector);
        return;
    }
    if matches!(
        frame.vector,
        INVALID_OPCODE | GENERAL_PROTECTION | PAGE_FAULT
    ) && let Some(fixup) = extable::fixup_for(frame.rip)
    {
        frame.rip = fixup;
        return;
    }
    fatal(frame)
}

fn page_fault_cause(error: u64) -> &'static str {
    match (error & 1 != 0, error & 2 != 0, error & 16 != 0) {
        (_, _, true) => "instruction fetch",
        (false, true, _) => "write to a not-present page",
        (false, false, _) => "read of a not-present page",
        (true, true, _) => "write to a protected page",
        (true, false, _) => "read of a protected page",
    }
}

fn fatal(frame: &TrapFrame) -> ! {
    let vector = frame.vector;
    let name = exception_name(vector);
    let cr2 = Cr2::read_raw();
    emergency_println!();
    emergency_println!(
        "!! FAULT: {name} (vector {vector}) error={:#x} rip={:#018x} cr2={cr2:#018x}",
        frame.error_code,
        frame.rip
    );
    let guard = (frame.vector == PAGE_FAULT)
        .then(|| stack::guard_hit(cr2))
        .flatten();
    if frame.vector == PAGE_FAULT {
        emergency_println!("!! {}", page_fault_cause(frame.error_code));
    }
    if frame.vector == XEN_FAILSAFE {
        let selector = |n: u32| (frame.error_code >> (16 * n)) & 0xffff;
        emergency_println!(
            "!! Xen failsafe callback: could not load a segment register on return \
             (selectors ds={:#x} es={:#x} fs={:#x} gs={:#x}; Xen put the null selector in the \
             one it could not load)",
            selector(0),
            selector(1),
            selector(2),
            selector(3)
        );
    }
    if let Some(stack) = guard {
        emergency_println!(
            "!! kernel stack overflow: {cr2:#x} is in the guard page of the '{}' stack",
            stack.name
        );
    }
    emergency_println!(
        "!! rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx
    );
    emergency_println!(
        "!! rsi={:#018x} rdi={:#018x} rbp={:#018x} rsp={:#018x}",
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.rsp
    );
    emergency_println!(
        "!! r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}",
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11
    );
    emergency_println!(
        "!! r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}",
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
    emergency_println!(
        "!! cs={:#x} ss={:#x} rflags={:#x}",
        frame.cs,
        frame.ss,
        frame.rflags
    );
    print_backtrace(frame.rip, frame.rbp);
    match guard {
        Some(stack) => emergency_println!(
            "@janus abort kind=fault vector={vector} exception={name} error={:#x} rip={:#x} \
             cr2={cr2:#x} guard={}",
            frame.error_code,
            frame.rip,
            stack.name
        ),
        None => emergency_println!(
            "@janus abort kind=fault vector={vector} exception={name} error={:#x} rip={:#x} \
             cr2={cr2:#x}",
            frame.error_code,
            frame.rip
        ),
    }
    exit(ExitCode::Fatal)
}

/// Prints `bt #N 0x...` lines, which `cargo xtask run` symbolizes.
pub fn print_backtrace(rip: u64, rbp: u64) {
    emergency_println!("backtrace:");
    backtrace::walk(rip, rbp, |depth, address| {
        emergency_println!("  bt #{depth} {address:#018x}");
    });
}
