//! The kernel's GDT and TSS. The TSS matters only for its interrupt stack table: faults that
//! must work even when the kernel stack is gone (double fault, NMI, machine check, page
//! fault) switch to stacks of their own.

use spin::Once;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use super::stack;

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stacks = stack::all();
        for (slot, ist) in [
            stack::IST_DOUBLE_FAULT,
            stack::IST_NMI,
            stack::IST_MACHINE_CHECK,
            stack::IST_PAGE_FAULT,
        ]
        .into_iter()
        .enumerate()
        {
            // all()[0] is the main stack; the IST stacks follow in slot order.
            tss.interrupt_stack_table[usize::from(ist) - 1] = stacks[slot + 1].top;
        }
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose descriptors are valid 64-bit
    // kernel code/data segments and an available TSS.
    unsafe {
        CS::set_reg(selectors.code);
        SS::set_reg(selectors.data);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
        load_tss(selectors.tss);
    }
}
