//! KVM's paravirtual interface, from Linux's `include/uapi/linux/kvm_para.h`,
//! `arch/x86/include/uapi/asm/kvm_para.h` and `Documentation/virt/kvm/x86/{cpuid,msr,
//! hypercalls}.rst`: the feature leaf, the hypercall instruction and numbers, and the
//! paravirtual MSRs with the structures they point at.
pub mod features;
pub mod hypercall;
pub mod msr;
