//! The PV start-of-day structure (`struct start_info`, xen/include/public/xen.h).
//!
//! A PV guest is entered in long mode on Xen-built page tables with `rsi` holding the
//! virtual address of its `start_info`. Xen (or a toolstack) writes it and the guest treats
//! it as untrusted: the kernel copies [`StartInfo::SIZE`] bytes out and decodes them with
//! [`StartInfo::from_bytes`], then checks them with [`StartInfo::validate`].

use core::fmt;
use core::mem::{offset_of, size_of};

use super::event_channel::EvtchnPort;
use super::frame::{MachineAddr, Mfn, PAGE_SIZE};

/// The magic of a 64-bit x86 PV guest (`xen-<version>-<platform>`); the rest of the
/// 32-byte field is NUL.
pub const START_INFO_MAGIC: &[u8] = b"xen-3.0-x86_64";
/// `MAX_GUEST_CMDLINE`.
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// `SIF_PRIVILEGED`: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`: the initial control domain (dom0); the console union holds `dom0`.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MULTIBOOT_MOD`: `mod_start` is a multiboot module.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `SIF_MOD_START_PFN`: `mod_start` is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `SIF_VIRT_P2M_4TOOLS`: tools understand a virtually mapped P2M.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `SIF_PM_MASK`: power management options.
pub const SIF_PM_MASK: u32 = 0xff << 8;

/// `struct start_info` (xen/include/public/xen.h), x86_64 layout: 1168 bytes.
///
/// `console` is the header's union kept as two raw words: for a domU (`domU`) word 0 is
/// the console ring's MFN and the low half of word 1 its event channel; for dom0 (`dom0`)
/// word 0 holds `info_off` (low half) and `info_size` (high half). [`Self::console`]
/// decodes it by [`SIF_INITDOMAIN`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    pub magic: [u8; 32],
    /// Total pages allocated to this domain.
    pub nr_pages: u64,
    /// Machine address of the shared info page.
    pub shared_info: u64,
    /// `SIF_*`.
    pub flags: u32,
    /// Machine frame of the xenstore ring.
    pub store_mfn: u64,
    pub store_evtchn: u32,
    pub console: [u64; 2],
    /// Virtual address of the bootstrap page tables (the L4).
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the P2M list (one MFN per PFN, `nr_pages` entries).
    pub mfn_list: u64,
    /// Virtual address (or PFN with [`SIF_MOD_START_PFN`]) of the pre-loaded module.
    pub mod_start: u64,
    /// Size of the module in bytes.
    pub mod_len: u64,
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the initial P2M table frames (page tables included).
    pub first_p2m_pfn: u64,
    pub nr_p2m_frames: u64,
}

const _: () = assert!(size_of::<StartInfo>() == StartInfo::SIZE);
const _: () = assert!(offset_of!(StartInfo, magic) == 0);
const _: () = assert!(offset_of!(StartInfo, nr_pages) == 32);
const _: () = assert!(offset_of!(StartInfo, shared_info) == 40);
const _: () = assert!(offset_of!(StartInfo, flags) == 48);
const _: () = assert!(offset_of!(StartInfo, store_mfn) == 56);
const _: () = assert!(offset_of!(StartInfo, store_evtchn) == 64);
const _: () = assert!(offset_of!(StartInfo, console) == 72);
const _: () = assert!(offset_of!(StartInfo, pt_base) == 88);
const _: () = assert!(offset_of!(StartInfo, nr_pt_frames) == 96);
const _: () = assert!(offset_of!(StartInfo, mfn_list) == 104);
const _: () = assert!(offset_of!(StartInfo, mod_start) == 112);
const _: () = assert!(offset_of!(StartInfo, mod_len) == 120);
const _: () = assert!(offset_of!(StartInfo, cmd_line) == 128);
const _: () = assert!(offset_of!(StartInfo, first_p2m_pfn) == 1152);
const _: () = assert!(offset_of!(StartInfo, nr_p2m_frames) == 1160);

/// The console a PV guest was given (`start_info.console`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoConsole {
    /// A domU's console ring page and its event channel.
    DomU { mfn: Mfn, evtchn: EvtchnPort },
    /// Where dom0's `dom0_vga_console_info` sits in this `start_info` page.
    Dom0 { info_off: u32, info_size: u32 },
}

/// What is wrong with a `start_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// Fewer than [`StartInfo::SIZE`] bytes to decode.
    Short { len: usize },
    /// The magic is not `xen-3.0-x86_64`: not a 64-bit PV start (or not Xen at all).
    BadMagic { magic: [u8; 32] },
    /// `nr_pages` is zero.
    NoPages,
    /// No NUL within the command line's 1024 bytes.
    UnterminatedCommandLine,
    /// A field that must be page-aligned is not.
    Misaligned { field: &'static str, value: u64 },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len } => write!(
                f,
                "start_info: {len} bytes given, {} needed",
                StartInfo::SIZE
            ),
            Self::BadMagic { magic } => {
                f.write_str("start_info: bad magic \"")?;
                for &b in magic.iter().take_while(|&&b| b != 0) {
                    let shown = if b.is_ascii_graphic() {
                        char::from(b)
                    } else {
                        '?'
                    };
                    fmt::Write::write_char(f, shown)?;
                }
                f.write_str("\", expected \"xen-3.0-x86_64\" (not a 64-bit Xen PV boot?)")
            }
            Self::NoPages => f.write_str("start_info: nr_pages is 0, the domain has no memory"),
            Self::UnterminatedCommandLine => {
                f.write_str("start_info: command line has no NUL in its 1024 bytes")
            }
            Self::Misaligned { field, value } => {
                write!(f, "start_info: {field} {value:#x} is not page-aligned")
            }
        }
    }
}

impl StartInfo {
    pub const SIZE: usize = 1168;

    /// Decodes the first [`Self::SIZE`] bytes, each field little-endian at its header
    /// offset. Nothing is validated but the length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StartInfoError> {
        let short = StartInfoError::Short { len: bytes.len() };
        let bytes = bytes.get(..Self::SIZE).ok_or(short)?;
        let u64_at = |offset: usize| {
            let mut field = [0; 8];
            field.copy_from_slice(&bytes[offset..offset + 8]);
            u64::from_le_bytes(field)
        };
        let u32_at = |offset: usize| {
            let mut field = [0; 4];
            field.copy_from_slice(&bytes[offset..offset + 4]);
            u32::from_le_bytes(field)
        };
        let mut magic = [0; 32];
        magic.copy_from_slice(&bytes[0..32]);
        let mut cmd_line = [0; MAX_GUEST_CMDLINE];
        cmd_line.copy_from_slice(&bytes[128..128 + MAX_GUEST_CMDLINE]);
        Ok(Self {
            magic,
            nr_pages: u64_at(32),
            shared_info: u64_at(40),
            flags: u32_at(48),
            store_mfn: u64_at(56),
            store_evtchn: u32_at(64),
            console: [u64_at(72), u64_at(80)],
            pt_base: u64_at(88),
            nr_pt_frames: u64_at(96),
            mfn_list: u64_at(104),
            mod_start: u64_at(112),
            mod_len: u64_at(120),
            cmd_line,
            first_p2m_pfn: u64_at(1152),
            nr_p2m_frames: u64_at(1160),
        })
    }

    /// Encodes the structure; tests and fake loaders use it to build guest memory.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0; Self::SIZE];
        let mut put = |offset: usize, field: &[u8]| {
            out[offset..offset + field.len()].copy_from_slice(field);
        };
        put(0, &self.magic);
        put(32, &self.nr_pages.to_le_bytes());
        put(40, &self.shared_info.to_le_bytes());
        put(48, &self.flags.to_le_bytes());
        put(56, &self.store_mfn.to_le_bytes());
        put(64, &self.store_evtchn.to_le_bytes());
        put(72, &self.console[0].to_le_bytes());
        put(80, &self.console[1].to_le_bytes());
        put(88, &self.pt_base.to_le_bytes());
        put(96, &self.nr_pt_frames.to_le_bytes());
        put(104, &self.mfn_list.to_le_bytes());
        put(112, &self.mod_start.to_le_bytes());
        put(120, &self.mod_len.to_le_bytes());
        put(128, &self.cmd_line);
        put(1152, &self.first_p2m_pfn.to_le_bytes());
        put(1160, &self.nr_p2m_frames.to_le_bytes());
        out
    }

    /// Whether the magic is exactly `xen-3.0-x86_64` followed by NULs.
    pub fn magic_ok(&self) -> bool {
        let (text, rest) = self.magic.split_at(START_INFO_MAGIC.len());
        text == START_INFO_MAGIC && rest.iter().all(|&b| b == 0)
    }

    /// Checks what the kernel relies on: the magic, some memory, a terminated command
    /// line, and page alignment of the shared info page and the page-table base.
    pub fn validate(&self) -> Result<(), StartInfoError> {
        if !self.magic_ok() {
            return Err(StartInfoError::BadMagic { magic: self.magic });
        }
        if self.nr_pages == 0 {
            return Err(StartInfoError::NoPages);
        }
        self.command_line()?;
        for (field, value) in [("shared_info", self.shared_info), ("pt_base", self.pt_base)] {
            if !value.is_multiple_of(PAGE_SIZE) {
                return Err(StartInfoError::Misaligned { field, value });
            }
        }
        Ok(())
    }

    /// The command line, without its NUL terminator.
    pub fn command_line(&self) -> Result<&[u8], StartInfoError> {
        let end = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .ok_or(StartInfoError::UnterminatedCommandLine)?;
        Ok(&self.cmd_line[..end])
    }

    pub fn is_initial_domain(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }

    pub fn is_privileged(&self) -> bool {
        self.flags & SIF_PRIVILEGED != 0
    }

    /// Machine address of the shared info page.
    pub fn shared_info_addr(&self) -> MachineAddr {
        MachineAddr::new(self.shared_info)
    }

    /// The xenstore ring's frame and event channel.
    pub fn store(&self) -> (Mfn, EvtchnPort) {
        (Mfn::new(self.store_mfn), EvtchnPort(self.store_evtchn))
    }

    /// The console union, read as [`SIF_INITDOMAIN`] says.
    pub fn console(&self) -> StartInfoConsole {
        if self.is_initial_domain() {
            StartInfoConsole::Dom0 {
                info_off: self.console[0] as u32,
                info_size: (self.console[0] >> 32) as u32,
            }
        } else {
            StartInfoConsole::DomU {
                mfn: Mfn::new(self.console[0]),
                evtchn: EvtchnPort(self.console[1] as u32),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// A PV dom0 start_info with plausible values (not captured from a live Xen).
    fn dom0() -> StartInfo {
        let mut magic = [0; 32];
        magic[..14].copy_from_slice(START_INFO_MAGIC);
        let mut cmd_line = [0; MAX_GUEST_CMDLINE];
        cmd_line[..15].copy_from_slice(b"selftest bench ");
        StartInfo {
            magic,
            nr_pages: 0x3_0000,
            shared_info: 0x7fc_d000,
            flags: SIF_PRIVILEGED | SIF_INITDOMAIN | SIF_MOD_START_PFN,
            store_mfn: 0,
            store_evtchn: 0,
            console: [0x24 << 32 | 0x4b0, 0],
            pt_base: 0x60_0000,
            nr_pt_frames: 6,
            mfn_list: 0x40_0000,
            mod_start: 0,
            mod_len: 0,
            cmd_line,
            first_p2m_pfn: 0,
            nr_p2m_frames: 0,
        }
    }

    #[test]
    fn bytes_round_trip_through_the_header_offsets() {
        let info = dom0();
        let bytes = info.to_bytes();
        assert_eq!(&bytes[..14], b"xen-3.0-x86_64");
        assert_eq!(bytes[48], 0b1011);
        assert_eq!(&bytes[128..143], b"selftest bench ");
        assert_eq!(StartInfo::from_bytes(&bytes), Ok(info));
    }

    #[test]
    fn a_valid_dom0_start_info_decodes_its_parts() {
        let info = dom0();
        assert_eq!(info.validate(), Ok(()));
        assert!(info.is_initial_domain() && info.is_privileged());
        assert_eq!(info.command_line(), Ok(&b"selftest bench "[..]));
        assert_eq!(info.shared_info_addr().frame(), Mfn::new(0x7fcd));
        assert_eq!(
            info.console(),
            StartInfoConsole::Dom0 {
                info_off: 0x4b0,
                info_size: 0x24
            }
        );
    }

    #[test]
    fn a_domu_console_is_a_ring_frame_and_a_port() {
        let mut info = dom0();
        info.flags = 0;
        info.console = [0x1_2345, 3];
        assert_eq!(
            info.console(),
            StartInfoConsole::DomU {
                mfn: Mfn::new(0x1_2345),
                evtchn: EvtchnPort(3)
            }
        );
    }

    #[test]
    fn short_input_is_rejected() {
        let bytes = dom0().to_bytes();
        assert_eq!(
            StartInfo::from_bytes(&bytes[..1000]),
            Err(StartInfoError::Short { len: 1000 })
        );
    }

    #[test]
    fn bad_magic_is_named_in_the_error() {
        for bad in [
            &b"xen-3.0-x86_32p"[..],
            b"xen-3.0-x86_6",
            b"XEN-3.0-x86_64",
            b"",
        ] {
            let mut info = dom0();
            info.magic = [0; 32];
            info.magic[..bad.len()].copy_from_slice(bad);
            let err = info.validate().unwrap_err();
            assert!(matches!(err, StartInfoError::BadMagic { .. }), "{bad:?}");
        }
        let mut info = dom0();
        info.magic[20] = b'!';
        assert!(!info.magic_ok());
        let mut info = dom0();
        info.magic[..14].copy_from_slice(b"xen-3.0-x86_32");
        assert_eq!(
            info.validate().unwrap_err().to_string(),
            "start_info: bad magic \"xen-3.0-x86_32\", expected \"xen-3.0-x86_64\" \
             (not a 64-bit Xen PV boot?)"
        );
    }

    #[test]
    fn nonsense_fields_are_rejected() {
        let mut info = dom0();
        info.nr_pages = 0;
        assert_eq!(info.validate(), Err(StartInfoError::NoPages));

        let mut info = dom0();
        info.cmd_line = [b'a'; MAX_GUEST_CMDLINE];
        assert_eq!(
            info.validate(),
            Err(StartInfoError::UnterminatedCommandLine)
        );

        let mut info = dom0();
        info.shared_info += 8;
        assert_eq!(
            info.validate(),
            Err(StartInfoError::Misaligned {
                field: "shared_info",
                value: 0x7fc_d008
            })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut bytes = [0u8; StartInfo::SIZE];
        for round in 0..300 {
            for b in &mut bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if round % 3 == 0 {
                bytes[..14].copy_from_slice(START_INFO_MAGIC);
                bytes[14..32].fill(0);
            }
            // The padding after `flags` and `store_evtchn` is not a field: it does not
            // survive a decode.
            bytes[52..56].fill(0);
            bytes[68..72].fill(0);
            let info = StartInfo::from_bytes(&bytes).unwrap();
            let _ = info.validate().map_err(|e| e.to_string());
            let _ = info.console();
            let _ = info.command_line();
            assert!(
                info.to_bytes() == bytes,
                "round {round} does not round-trip"
            );
        }
    }
}
