//! Classic Xen PV entry: the ELF notes Xen's PV domain builder reads, and the 64-bit stub it
//! jumps to.
//!
//! The PV ABI (xen/include/public/xen.h, "Start-of-day memory layout"; elfnote.h): Xen loads
//! the image at its link addresses (`VIRT_BASE` 0, so virtual == pseudo-physical), builds
//! page tables that map it plus the P2M list, `start_info`, the bootstrap page tables and a
//! boot stack, fills the page named by `HYPERCALL_PAGE`, and enters `ENTRY` in 64-bit mode
//! at CPL 3 with `rsi` = the virtual address of `start_info` and `rsp` on the boot stack.
//! The same image carries the PVH note (see `boot`); which entry runs is Xen's choice
//! (`dom0=pvh` or not), or QEMU's (PVH only).

/// Note types of xen/include/public/elfnote.h.
const XEN_ELFNOTE_ENTRY: u32 = 1;
const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
const XEN_ELFNOTE_GUEST_OS: u32 = 6;
const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
const XEN_ELFNOTE_LOADER: u32 = 8;

// Each note: namesz 4 ("Xen\0"), descsz, type, name, then the descriptor padded to 4 bytes.
// Numeric descriptors are 64-bit for a 64-bit guest.
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .balign 4
    .long 4, 2f - 1f, {entry}
    .asciz "Xen"
1:  .quad xen_pv_start64
2:  .balign 4
    .long 4, 2f - 1f, {hypercall_page}
    .asciz "Xen"
1:  .quad janus_hypercall_page
2:  .balign 4
    .long 4, 2f - 1f, {virt_base}
    .asciz "Xen"
1:  .quad 0
2:  .balign 4
    .long 4, 2f - 1f, {paddr_offset}
    .asciz "Xen"
1:  .quad 0
2:  .balign 4
    .long 4, 2f - 1f, {xen_version}
    .asciz "Xen"
1:  .asciz "xen-3.0"
2:  .balign 4
    .long 4, 2f - 1f, {guest_os}
    .asciz "Xen"
1:  .asciz "Janus"
2:  .balign 4
    .long 4, 2f - 1f, {guest_version}
    .asciz "Xen"
    "#,
    concat!("1:  .asciz \"", env!("CARGO_PKG_VERSION"), "\""),
    r#"
2:  .balign 4
    .long 4, 2f - 1f, {loader}
    .asciz "Xen"
1:  .asciz "generic"
2:  .balign 4

    .section .text.boot, "ax"
    .code64
    .global xen_pv_start64
xen_pv_start64:
    cld
    /* Boot time starts here: keep the TSC in r12 until .bss is zeroed. */
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, %r12
    movq %rsi, %r13               /* start_info */
    movq $__bss_start, %rdi
    movq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    movq %r12, BOOT_TSC(%rip)
    movq $__stack_main_top, %rsp
    movq %r13, %rdi
    xorl %ebp, %ebp               /* ends the frame-pointer chain */
    call {rust_entry}
    ud2
    "#,
    entry = const XEN_ELFNOTE_ENTRY,
    hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
    virt_base = const XEN_ELFNOTE_VIRT_BASE,
    paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    xen_version = const XEN_ELFNOTE_XEN_VERSION,
    guest_os = const XEN_ELFNOTE_GUEST_OS,
    guest_version = const XEN_ELFNOTE_GUEST_VERSION,
    loader = const XEN_ELFNOTE_LOADER,
    rust_entry = sym xen_pv_rust_entry,
    options(att_syntax)
);

extern "C" fn xen_pv_rust_entry(start_info: u64) -> ! {
    crate::kmain::start_xen_pv(start_info)
}
