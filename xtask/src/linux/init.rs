//! The peer's `/init`: a static x86-64 Linux executable, written here byte by byte, that
//! prints [`MARKER`] and powers the machine off. Written rather than taken from a package so
//! the initramfs needs no libc, no busybox and no host tools, and the user space in the
//! measured boot is one page.
//!
//! The file is an ELF64 header, one `PT_LOAD` program header and the code, which the one
//! segment maps together (System V ABI, "ELF header" and "Program header"; x86-64 psABI for
//! the machine number). The code makes raw system calls (Linux's x86-64 convention: number
//! in `rax`, arguments in `rdi`, `rsi`, `rdx`; `syscall`).

/// What /init prints: the console line that proves the kernel reached user space.
pub const MARKER: &str = "janus-linux-peer: init reached";

/// Where the executable is loaded: the customary base of non-PIE x86-64 executables, far
/// above the low pages `vm.mmap_min_addr` keeps unmapped.
pub const LOAD_ADDRESS: u64 = 0x40_0000;

const ELF_HEADER_SIZE: usize = 64;
const PROGRAM_HEADER_SIZE: usize = 56;

/// Where the code starts in the file: right after the headers, which the segment maps too.
pub const CODE_OFFSET: usize = ELF_HEADER_SIZE + PROGRAM_HEADER_SIZE;

// System call numbers (Linux's arch/x86/entry/syscalls/syscall_64.tbl).
const SYS_WRITE: u32 = 1;
const SYS_EXIT: u32 = 60;
const SYS_REBOOT: u32 = 169;

// reboot(2)'s arguments (Linux's include/uapi/linux/reboot.h).
const LINUX_REBOOT_MAGIC1: u32 = 0xfee1_dead;
const LINUX_REBOOT_MAGIC2: u32 = 672_274_793;
const LINUX_REBOOT_CMD_POWER_OFF: u32 = 0x4321_fedc;

/// The kernel opens /dev/console as init's descriptors 0, 1 and 2.
const STDOUT: u32 = 1;

// ELF constants (System V ABI; Linux's include/uapi/linux/elf.h).
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_R: u32 = 4;
const PAGE_SIZE: u64 = 0x1000;

/// The executable: prints `MARKER` and a newline on standard output, then asks the kernel
/// to power off. Should that fail, it exits, which makes the kernel panic (init may not
/// exit), which `panic=-1` turns into a reboot and QEMU's `-no-reboot` into its exit.
pub fn executable() -> Vec<u8> {
    let line = format!("{MARKER}\n");
    elf_executable(&program(line.as_bytes()))
}

/// The machine code, followed by `message`. Position-independent: the message is addressed
/// relative to the instruction pointer.
fn program(message: &[u8]) -> Vec<u8> {
    let length = u32::try_from(message.len()).expect("a message shorter than 4 GiB");
    let mut code = Assembler::default();
    // write(STDOUT, message, length)
    code.mov(Register::Eax, SYS_WRITE);
    code.mov(Register::Edi, STDOUT);
    let message_displacement = code.lea_rsi_rip_relative();
    code.mov(Register::Edx, length);
    code.syscall();
    // reboot(MAGIC1, MAGIC2, POWER_OFF): does not return when it works.
    code.mov(Register::Eax, SYS_REBOOT);
    code.mov(Register::Edi, LINUX_REBOOT_MAGIC1);
    code.mov(Register::Esi, LINUX_REBOOT_MAGIC2);
    code.mov(Register::Edx, LINUX_REBOOT_CMD_POWER_OFF);
    code.syscall();
    // exit(0), again and again: nothing may run into the message's bytes.
    let exit = code.here();
    code.mov(Register::Eax, SYS_EXIT);
    code.zero(Register::Edi);
    code.syscall();
    code.jmp_back_to(exit);
    let message_at = code.here();
    code.patch_displacement(message_displacement, message_at);
    code.bytes.extend_from_slice(message);
    code.bytes
}

/// A 32-bit general register, by its number in instruction encodings (Intel SDM vol. 2,
/// table 2-2). Writing one zeroes the upper half of its 64-bit register, so it sets a whole
/// system call argument.
#[derive(Clone, Copy)]
enum Register {
    Eax = 0,
    Edx = 2,
    Esi = 6,
    Edi = 7,
}

/// Encodes the few instructions [`program`] needs (Intel SDM vol. 2).
#[derive(Default)]
struct Assembler {
    bytes: Vec<u8>,
}

impl Assembler {
    fn here(&self) -> usize {
        self.bytes.len()
    }

    /// `mov r32, imm32`: B8+r, then the value.
    fn mov(&mut self, register: Register, value: u32) {
        self.bytes.push(0xb8 + register as u8);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// `xor r32, r32`: 31 /r, ModRM mode 11 with the register as both operands.
    fn zero(&mut self, register: Register) {
        let r = register as u8;
        self.bytes.extend_from_slice(&[0x31, 0xc0 | (r << 3) | r]);
    }

    /// `lea rsi, [rip + disp32]`: REX.W, 8D /r, ModRM 0x35 (mode 00, reg rsi, r/m 101 =
    /// RIP-relative), then a zero displacement whose offset is returned, to be patched
    /// once the target's place is known.
    fn lea_rsi_rip_relative(&mut self) -> usize {
        self.bytes.extend_from_slice(&[0x48, 0x8d, 0x35]);
        let displacement = self.here();
        self.bytes.extend_from_slice(&[0; 4]);
        displacement
    }

    /// Points the displacement at `displacement_at` to `target`: RIP-relative addresses
    /// count from the end of the instruction, which the displacement ends.
    fn patch_displacement(&mut self, displacement_at: usize, target: usize) {
        let next_instruction = displacement_at + 4;
        let relative = i32::try_from(target as i64 - next_instruction as i64)
            .expect("code smaller than 2 GiB");
        self.bytes[displacement_at..next_instruction].copy_from_slice(&relative.to_le_bytes());
    }

    /// `syscall`: 0F 05.
    fn syscall(&mut self) {
        self.bytes.extend_from_slice(&[0x0f, 0x05]);
    }

    /// `jmp rel8`: EB, then the distance from the end of the instruction to `target`.
    fn jmp_back_to(&mut self, target: usize) {
        let next_instruction = self.here() + 2;
        let relative = i8::try_from(target as i64 - next_instruction as i64)
            .expect("a short jump: within 128 bytes");
        self.bytes.extend_from_slice(&[0xeb, relative as u8]);
    }
}

/// An ELF64 x86-64 executable whose one segment maps the whole file, headers included,
/// readable and executable at [`LOAD_ADDRESS`], entered at `code`'s first byte.
fn elf_executable(code: &[u8]) -> Vec<u8> {
    let file_size = (CODE_OFFSET + code.len()) as u64;
    let entry = LOAD_ADDRESS + CODE_OFFSET as u64;
    let mut elf = Vec::with_capacity(CODE_OFFSET + code.len());

    // ELF header.
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, EV_CURRENT]);
    elf.resize(16, 0); // OS ABI 0 (System V), ABI version 0, padding
    elf.extend_from_slice(&ET_EXEC.to_le_bytes()); // e_type
    elf.extend_from_slice(&EM_X86_64.to_le_bytes()); // e_machine
    elf.extend_from_slice(&u32::from(EV_CURRENT).to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes()); // e_entry
    elf.extend_from_slice(&(ELF_HEADER_SIZE as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(ELF_HEADER_SIZE as u16).to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&(PROGRAM_HEADER_SIZE as u16).to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shentsize
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx: SHN_UNDEF
    debug_assert_eq!(elf.len(), ELF_HEADER_SIZE);

    // The program header. Offset 0 and the page-aligned address agree modulo the
    // alignment, as the loader requires.
    elf.extend_from_slice(&PT_LOAD.to_le_bytes()); // p_type
    elf.extend_from_slice(&(PF_R | PF_X).to_le_bytes()); // p_flags
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&file_size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&file_size.to_le_bytes()); // p_memsz: no zero-filled tail
    elf.extend_from_slice(&PAGE_SIZE.to_le_bytes()); // p_align
    debug_assert_eq!(elf.len(), CODE_OFFSET);

    elf.extend_from_slice(code);
    elf
}

// The executable is not run on the host: as root, its reboot call would power the host off.
#[cfg(test)]
mod tests {
    use object::elf::{PF_R, PF_X, PT_LOAD};
    use object::read::elf::{ElfFile64, ProgramHeader};
    use object::{Architecture, Endianness, Object, ObjectKind, ObjectSegment};

    use super::*;

    #[test]
    fn the_elf_is_an_x86_64_executable_entered_after_its_headers() {
        let bytes = executable();
        let file = ElfFile64::<Endianness>::parse(&*bytes).unwrap();
        assert_eq!(file.architecture(), Architecture::X86_64);
        assert_eq!(file.kind(), ObjectKind::Executable);
        assert!(file.is_little_endian() && file.is_64());
        assert_eq!(file.entry(), LOAD_ADDRESS + CODE_OFFSET as u64);
        assert_eq!(file.sections().count(), 0);
    }

    #[test]
    fn one_readable_executable_segment_maps_the_whole_file() {
        let bytes = executable();
        let file = ElfFile64::<Endianness>::parse(&*bytes).unwrap();
        let segments: Vec<_> = file.segments().collect();
        assert_eq!(segments.len(), 1);
        let segment = &segments[0];
        assert_eq!(segment.address(), LOAD_ADDRESS);
        assert_eq!(segment.size(), bytes.len() as u64);
        assert_eq!(segment.file_range(), (0, bytes.len() as u64));
        assert_eq!(segment.align(), PAGE_SIZE);
        let header = &file.elf_program_headers()[0];
        let endian = file.endian();
        assert_eq!(header.p_type(endian), PT_LOAD);
        assert_eq!(header.p_flags(endian), PF_R | PF_X);
        assert_eq!(header.p_memsz(endian), header.p_filesz(endian));
        let entry = file.entry();
        assert!((LOAD_ADDRESS..LOAD_ADDRESS + segment.size()).contains(&entry));
    }

    #[test]
    fn write_points_at_the_marker_line_with_its_length() {
        let code = program(b"hello\n");
        // mov eax, 1; mov edi, 1; lea rsi, [rip + d]; mov edx, 6; syscall
        assert_eq!(&code[..10], &[0xb8, 1, 0, 0, 0, 0xbf, 1, 0, 0, 0]);
        assert_eq!(&code[10..13], &[0x48, 0x8d, 0x35]);
        let displacement = i32::from_le_bytes(code[13..17].try_into().unwrap());
        let message_at = (17 + displacement) as usize;
        assert_eq!(&code[message_at..], b"hello\n");
        assert_eq!(&code[17..22], &[0xba, 6, 0, 0, 0]);
        assert_eq!(&code[22..24], &[0x0f, 0x05]);
    }

    #[test]
    fn reboot_asks_for_power_off_with_both_magic_numbers() {
        let code = program(b"x\n");
        let reboot = &code[24..46];
        let mut expected = vec![0xb8];
        expected.extend(169u32.to_le_bytes());
        expected.push(0xbf);
        expected.extend(0xfee1_deadu32.to_le_bytes());
        expected.push(0xbe);
        expected.extend(672_274_793u32.to_le_bytes());
        expected.push(0xba);
        expected.extend(0x4321_fedcu32.to_le_bytes());
        expected.extend([0x0f, 0x05]);
        assert_eq!(reboot, expected);
    }

    #[test]
    fn a_failed_reboot_ends_in_an_exit_loop_before_the_message() {
        let code = program(b"x\n");
        // mov eax, 60; xor edi, edi; syscall; jmp back to the mov
        let exit = &code[46..57];
        assert_eq!(
            exit,
            &[
                0xb8,
                60,
                0,
                0,
                0,
                0x31,
                0xff,
                0x0f,
                0x05,
                0xeb,
                (-11i8) as u8
            ]
        );
        assert_eq!(&code[57..], b"x\n");
    }

    #[test]
    fn the_executable_prints_the_marker() {
        let bytes = executable();
        assert!(bytes.ends_with(format!("{MARKER}\n").as_bytes()));
    }
}
