//! PVH entry: the `XEN_ELFNOTE_PHYS32_ENTRY` note, the 32-bit stub that reaches long mode, and
//! the hand-over to Rust.
//!
//! The PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h, "PVH boot ABI" docs): entry
//! in 32-bit protected mode, paging off, flat 4 GiB segments, `ebx` = physical address of
//! `struct hvm_start_info`. QEMU's `-kernel` and Xen both use it.

/// `XEN_ELFNOTE_PHYS32_ENTRY` (xen/include/public/elfnote.h).
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

// The stub builds throw-away page tables that identity-map the first 4 GiB with 2 MiB pages
// (enough for the image, the start info, the command line and the early frame allocator);
// Rust replaces them with the kernel's own tables before anything else runs.
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .balign 4
    .long 4                       /* namesz: "Xen\0" */
    .long 8                       /* descsz: QEMU reads the entry as a 64-bit value */
    .long {phys32_entry}
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .bss.boot_page_tables, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff      /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff      /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    /* Boot time starts here: keep the TSC in esi:ebp until .bss is zeroed. */
    rdtsc
    movl %eax, %esi
    movl %edx, %ebp

zero_bss:
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movl %esi, (BOOT_TSC)
    movl %ebp, (BOOT_TSC + 4)
    movl $__stack_main_top, %esp

setup_page_tables:
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, (boot_pml4)
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt(, %ecx, 8)
    incl %ecx
    cmpl $4, %ecx
    jb 1b
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax               /* present, writable, 2 MiB */
    movl %eax, boot_pd(, %ecx, 8)
    movl %ecx, %eax
    shrl $11, %eax
    movl %eax, boot_pd + 4(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 2b

enable_long_mode:
    movl %cr4, %eax
    orl $(1 << 5), %eax           /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx        /* EFER */
    rdmsr
    orl $(1 << 8), %eax           /* LME */
    wrmsr
    movl %cr0, %eax
    orl $(1 << 31), %eax          /* PG */
    movl %eax, %cr0

jump_to_64bit:
    lgdt (boot_gdt_pointer)
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movl %ebx, %edi               /* start info physical address */
    xorl %ebp, %ebp               /* ends the frame-pointer chain */
    call {rust_entry}
    ud2
    "#,
    phys32_entry = const XEN_ELFNOTE_PHYS32_ENTRY,
    rust_entry = sym pvh_rust_entry,
    options(att_syntax)
);

/// TSC value at the first instruction of the PVH entry, written by the stub.
#[unsafe(no_mangle)]
static mut BOOT_TSC: u64 = 0;

/// TSC at kernel entry, the start of the boot time reported in `@janus done boot_us=`.
pub fn boot_tsc() -> u64 {
    // SAFETY: written once by the boot stub before any Rust code runs, read-only afterwards.
    unsafe { core::ptr::addr_of!(BOOT_TSC).read() }
}

extern "C" fn pvh_rust_entry(start_info_paddr: u32) -> ! {
    crate::kmain::start_pvh(u64::from(start_info_paddr))
}
