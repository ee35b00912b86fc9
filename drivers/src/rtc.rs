//! CMOS real-time clock, the Motorola MC146818A and its PC chipset descendants (MC146818A
//! datasheet: "Address Map", "Register A", "Register B"), read once at boot for wall-clock
//! time. The century lives in a CMOS RAM byte the FADT's `CENTURY` field names (ACPI 6.5
//! §5.2.9, Table 5.9); without one the year is taken as 20xx.
//!
//! The clock updates its registers once a second. A read that straddles an update can mix
//! old and new fields (12:34:59 becoming 12:35:59), so fields are read only while no update
//! is in progress (`UIP` clear, as in Linux's `mc146818_avoid_UIP`) and accepted only when
//! two full reads agree. Every wait is bounded, and the registers are validated, since
//! firmware or a VMM can leave any value in them.

use x86_64::instructions::port::Port;

const INDEX_PORT: u16 = 0x70;
const DATA_PORT: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0A;
const STATUS_B: u8 = 0x0B;
/// The first byte of general-purpose CMOS RAM, after the clock and status registers A–D.
const FIRST_RAM_BYTE: u8 = 0x0E;
/// Bank 0, reachable through ports 0x70/0x71, holds 128 bytes; bit 7 of the index port is
/// not an address bit (see [`PortCmos`]).
const BANK_BYTES: u8 = 0x80;

/// Status A: the clock is about to update, or updating, its registers.
const UIP: u8 = 1 << 7;
/// Status B `DM`: fields are binary rather than BCD.
const DM_BINARY: u8 = 1 << 2;
/// Status B: hours run 0–23 rather than 1–12 with a PM flag.
const HOURS_24: u8 = 1 << 1;
/// In 12-hour mode, bit 7 of the hours register marks PM.
const HOUR_PM: u8 = 1 << 7;

/// Status A reads before the update counts as stuck. `UIP` stays set for at most 244 us
/// before an update plus the update's own 1984 us (datasheet "Update Cycle"); this many
/// port reads, hundreds of ns each, take far longer.
const MAX_UIP_READS: u32 = 1_000_000;
/// Full reads before the registers count as unstable. The clock updates once a second and
/// one read takes well under a millisecond even when the VMM traps every port access, so
/// two consecutive reads disagree at most once in a healthy clock.
const MAX_SNAPSHOTS: u32 = 8;
/// Registers that read 0xff together only when nothing answers the ports: status A at 0xff
/// would mean the divider held in reset, status B at 0xff the clock halted.
const ABSENCE_PROBE: [u8; 4] = [STATUS_A, STATUS_B, SECONDS, MINUTES];

/// Reads one CMOS register, a trait so the reading logic runs against a fake in host tests.
pub trait Cmos {
    /// `register` is below 0x80.
    fn read(&mut self, register: u8) -> u8;
}

/// The CMOS through I/O ports 0x70 (index) and 0x71 (data).
#[derive(Debug)]
pub struct PortCmos(());

impl PortCmos {
    /// # Safety
    /// The caller owns ports 0x70 and 0x71: nothing else, on any CPU or in an interrupt
    /// handler, selects a CMOS register while this value lives, since an index write and the
    /// data read that follows must not be split. Every access leaves bit 7 of port 0x70, the
    /// chipset's NMI-disable bit, clear, so NMIs stay enabled.
    pub unsafe fn new() -> Self {
        Self(())
    }
}

impl Cmos for PortCmos {
    fn read(&mut self, register: u8) -> u8 {
        // A larger index would set the NMI-disable bit instead of reaching a register.
        assert!(
            register < BANK_BYTES,
            "CMOS register {register:#04x} is beyond bank 0"
        );
        // SAFETY: the ports are owned by this value (constructor contract); the accesses
        // touch no memory, and the index leaves NMIs enabled.
        unsafe {
            Port::<u8>::new(INDEX_PORT).write(register);
            Port::<u8>::new(DATA_PORT).read()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// The registers all read 0xff: nothing answers ports 0x70/0x71.
    Absent,
    /// Status A kept `UIP` set.
    UpdateNeverEnds,
    /// No two consecutive reads of the registers agreed.
    Unstable,
    /// A register holds a value outside its field's range (or a bad BCD digit).
    Invalid { field: &'static str, value: u8 },
    /// The FADT's century index names a clock or status register, or a byte beyond bank 0.
    BadCenturyRegister(u8),
}

impl core::fmt::Display for RtcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Absent => write!(
                f,
                "CMOS RTC registers all read 0xff: there is no RTC at ports 0x70/0x71; \
                 give the VM an RTC or run without wall-clock time"
            ),
            Self::UpdateNeverEnds => write!(
                f,
                "CMOS RTC reported an update in progress for {MAX_UIP_READS} reads: the clock \
                 is stuck; check the VMM's RTC emulation"
            ),
            Self::Unstable => write!(
                f,
                "CMOS RTC time changed between each of {MAX_SNAPSHOTS} consecutive reads: \
                 the registers do not behave like a clock; check the VMM's RTC emulation"
            ),
            Self::Invalid { field, value } => write!(
                f,
                "CMOS RTC {field} register holds {value:#04x}, not a valid {field}: set the \
                 date and time in firmware setup or with the VMM's RTC base option"
            ),
            Self::BadCenturyRegister(index) => write!(
                f,
                "FADT names CMOS byte {index:#04x} as the century register, but that is not \
                 general-purpose CMOS RAM ({FIRST_RAM_BYTE:#04x}..{BANK_BYTES:#04x}): the \
                 FADT is wrong; ignore its CENTURY field"
            ),
        }
    }
}

/// A UTC calendar date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// Seconds since 1970-01-01 00:00:00 UTC in the proleptic Gregorian calendar (Howard
    /// Hinnant's `days_from_civil`). Dates before 1970 give 0; fields out of range (which
    /// [`read_time`] never returns) give a meaningless value, but never a panic.
    pub fn unix_seconds(&self) -> u64 {
        // Years start in March so that the leap day is the last day of the year.
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (i64::from(self.month) + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        // 1970-01-01 is day 719_468 counted from 0000-03-01.
        let days = era * 146_097 + day_of_era - 719_468;
        let seconds = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(seconds).unwrap_or(0)
    }
}

/// Reads, validates and decodes the clock. `century_register` is the FADT's `CENTURY` index
/// (`None` when the FADT has none, or has 0 there).
pub fn read_time(cmos: &mut impl Cmos, century_register: Option<u8>) -> Result<DateTime, RtcError> {
    if let Some(index) = century_register
        && !(FIRST_RAM_BYTE..BANK_BYTES).contains(&index)
    {
        return Err(RtcError::BadCenturyRegister(index));
    }
    if ABSENCE_PROBE
        .iter()
        .all(|&register| cmos.read(register) == 0xff)
    {
        return Err(RtcError::Absent);
    }
    let mut previous = Snapshot::read(cmos, century_register)?;
    for _ in 1..MAX_SNAPSHOTS {
        let current = Snapshot::read(cmos, century_register)?;
        if current == previous {
            return current.decode();
        }
        previous = current;
    }
    Err(RtcError::Unstable)
}

/// The raw seconds register: one index write and one data read, with no waiting or
/// decoding, for measuring what a CMOS access costs.
pub fn seconds_register(cmos: &mut impl Cmos) -> u8 {
    cmos.read(SECONDS)
}

/// The registers as read once, undecoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    status_b: u8,
    second: u8,
    minute: u8,
    hour: u8,
    day: u8,
    month: u8,
    year: u8,
    century: Option<u8>,
}

impl Snapshot {
    /// Waits (bounded) until no update is in progress, then reads every field.
    fn read(cmos: &mut impl Cmos, century_register: Option<u8>) -> Result<Self, RtcError> {
        let mut updating = true;
        for _ in 0..MAX_UIP_READS {
            if cmos.read(STATUS_A) & UIP == 0 {
                updating = false;
                break;
            }
            core::hint::spin_loop();
        }
        if updating {
            return Err(RtcError::UpdateNeverEnds);
        }
        Ok(Self {
            status_b: cmos.read(STATUS_B),
            second: cmos.read(SECONDS),
            minute: cmos.read(MINUTES),
            hour: cmos.read(HOURS),
            day: cmos.read(DAY_OF_MONTH),
            month: cmos.read(MONTH),
            year: cmos.read(YEAR),
            century: century_register.map(|index| cmos.read(index)),
        })
    }

    fn decode(&self) -> Result<DateTime, RtcError> {
        let binary = self.status_b & DM_BINARY != 0;
        let field = |name, raw| Field { name, raw, binary };
        let second = field("second", self.second).decode(0..=59)?;
        let minute = field("minute", self.minute).decode(0..=59)?;
        let hour = if self.status_b & HOURS_24 != 0 {
            field("hour", self.hour).decode(0..=23)?
        } else {
            // Reported as read, PM flag included.
            let invalid = RtcError::Invalid {
                field: "hour",
                value: self.hour,
            };
            let hour_12 = field("hour", self.hour & !HOUR_PM)
                .decode(1..=12)
                .map_err(|_| invalid)?;
            // 12 AM is midnight, 12 PM noon.
            hour_12 % 12 + if self.hour & HOUR_PM != 0 { 12 } else { 0 }
        };
        let month = field("month", self.month).decode(1..=12)?;
        let year_of_century = field("year", self.year).decode(0..=99)?;
        let century = match self.century {
            Some(raw) => field("century", raw).decode(19..=99)?,
            None => 20,
        };
        let year = u32::from(century) * 100 + u32::from(year_of_century);
        if year < 1970 {
            return Err(RtcError::Invalid {
                field: "year",
                value: self.year,
            });
        }
        let day = field("day", self.day).decode(1..=days_in_month(year, month))?;
        Ok(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }
}

/// One register's value in the clock's number format.
struct Field {
    name: &'static str,
    raw: u8,
    binary: bool,
}

impl Field {
    /// The field's value if it is valid BCD (or binary) within `range`. Errors carry the
    /// register as read, which is what a user sees in firmware setup.
    fn decode(self, range: core::ops::RangeInclusive<u8>) -> Result<u8, RtcError> {
        let invalid = RtcError::Invalid {
            field: self.name,
            value: self.raw,
        };
        let value = if self.binary {
            self.raw
        } else {
            let (tens, ones) = (self.raw >> 4, self.raw & 0x0f);
            if tens > 9 || ones > 9 {
                return Err(invalid);
            }
            tens * 10 + ones
        };
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(invalid)
        }
    }
}

fn days_in_month(year: u32, month: u8) -> u8 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// Status A as firmware leaves it: 32.768 kHz divider, 1.024 kHz periodic rate.
    const STATUS_A_NORMAL: u8 = 0x26;
    const BCD_24H: u8 = HOURS_24;
    const BINARY_12H: u8 = DM_BINARY;
    const CENTURY: u8 = 0x32;

    /// A register file with a clock that can tick after a set number of reads.
    struct FakeCmos {
        registers: [u8; 128],
        /// Status A reads that still report an update in progress.
        busy_reads: u32,
        /// Replaces `registers` once this many reads have been made.
        tick: Option<(u32, [u8; 128])>,
        /// Makes every read of the seconds register return a new value.
        racing_seconds: bool,
        reads: u32,
        seconds_reads: u32,
    }

    impl FakeCmos {
        fn new(registers: [u8; 128]) -> Self {
            Self {
                registers,
                busy_reads: 0,
                tick: None,
                racing_seconds: false,
                reads: 0,
                seconds_reads: 0,
            }
        }
    }

    impl Cmos for FakeCmos {
        fn read(&mut self, register: u8) -> u8 {
            assert!(register < BANK_BYTES);
            if let Some((after, later)) = self.tick
                && self.reads == after
            {
                self.registers = later;
            }
            self.reads += 1;
            match register {
                STATUS_A if self.busy_reads > 0 => {
                    self.busy_reads -= 1;
                    self.registers[usize::from(STATUS_A)] | UIP
                }
                SECONDS => {
                    self.seconds_reads += 1;
                    if self.racing_seconds {
                        (self.seconds_reads % 60) as u8
                    } else {
                        self.registers[usize::from(SECONDS)]
                    }
                }
                _ => self.registers[usize::from(register)],
            }
        }
    }

    /// Registers holding `[second, minute, hour, day, month, year]` in mode `status_b`.
    fn clock(status_b: u8, fields: [u8; 6]) -> [u8; 128] {
        let mut registers = [0; 128];
        registers[usize::from(STATUS_A)] = STATUS_A_NORMAL;
        registers[usize::from(STATUS_B)] = status_b;
        let [second, minute, hour, day, month, year] = fields;
        registers[usize::from(SECONDS)] = second;
        registers[usize::from(MINUTES)] = minute;
        registers[usize::from(HOURS)] = hour;
        registers[usize::from(DAY_OF_MONTH)] = day;
        registers[usize::from(MONTH)] = month;
        registers[usize::from(YEAR)] = year;
        registers
    }

    fn date(year: u32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
        DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    fn read(registers: [u8; 128], century: Option<u8>) -> Result<DateTime, RtcError> {
        read_time(&mut FakeCmos::new(registers), century)
    }

    /// `registers` with `century` in the century byte the tests' FADT names.
    fn with_century(mut registers: [u8; 128], century: u8) -> [u8; 128] {
        registers[usize::from(CENTURY)] = century;
        registers
    }

    #[test]
    fn bcd_24_hour_time_decodes() {
        let registers = clock(BCD_24H, [0x56, 0x34, 0x12, 0x21, 0x11, 0x26]);
        let time = read(registers, None).unwrap();
        assert_eq!(time, date(2026, 11, 21, 12, 34, 56));
        assert_eq!(time.unix_seconds(), 1_795_264_496);
    }

    #[test]
    fn binary_12_hour_time_decodes_am_and_pm() {
        let at = |hour| read(clock(BINARY_12H, [5, 6, hour, 7, 8, 30]), None);
        assert_eq!(at(HOUR_PM | 3).unwrap(), date(2030, 8, 7, 15, 6, 5));
        assert_eq!(at(HOUR_PM | 12).unwrap().hour, 12);
        assert_eq!(at(12).unwrap().hour, 0);
        assert_eq!(at(1).unwrap().hour, 1);
        assert_eq!(at(11).unwrap().hour, 11);
        assert_eq!(
            at(0),
            Err(RtcError::Invalid {
                field: "hour",
                value: 0
            })
        );
        assert_eq!(
            at(HOUR_PM | 13),
            Err(RtcError::Invalid {
                field: "hour",
                value: 0x8d
            })
        );
    }

    #[test]
    fn bcd_12_hour_pm_decodes() {
        let registers = clock(0, [0x00, 0x00, HOUR_PM | 0x11, 0x01, 0x01, 0x25]);
        assert_eq!(read(registers, None).unwrap().hour, 23);
    }

    #[test]
    fn the_century_register_sets_the_century() {
        let registers = clock(BCD_24H, [0x59, 0x59, 0x23, 0x31, 0x12, 0x99]);
        assert_eq!(
            read(with_century(registers, 0x19), Some(CENTURY)).unwrap(),
            date(1999, 12, 31, 23, 59, 59)
        );
        assert_eq!(
            read(with_century(registers, 0x21), Some(CENTURY))
                .unwrap()
                .year,
            2199
        );
        // Without a century register, 20xx.
        assert_eq!(read(registers, None).unwrap().year, 2099);
    }

    #[test]
    fn years_before_1970_are_refused() {
        let registers = clock(BCD_24H, [0, 0, 0, 0x01, 0x01, 0x69]);
        assert_eq!(
            read(with_century(registers, 0x19), Some(CENTURY)),
            Err(RtcError::Invalid {
                field: "year",
                value: 0x69
            })
        );
        assert_eq!(
            read(with_century(registers, 0x00), Some(CENTURY)),
            Err(RtcError::Invalid {
                field: "century",
                value: 0x00
            })
        );
    }

    #[test]
    fn leap_days_follow_the_gregorian_rules() {
        let feb_29 = clock(BCD_24H, [0, 0, 0, 0x29, 0x02, 0x00]);
        assert_eq!(
            read(with_century(feb_29, 0x20), Some(CENTURY)).unwrap(),
            date(2000, 2, 29, 0, 0, 0)
        );
        assert_eq!(
            read(with_century(feb_29, 0x21), Some(CENTURY)),
            Err(RtcError::Invalid {
                field: "day",
                value: 0x29
            })
        );
        assert!(read(clock(BCD_24H, [0, 0, 0, 0x29, 0x02, 0x24]), None).is_ok());
        assert!(read(clock(BCD_24H, [0, 0, 0, 0x29, 0x02, 0x23]), None).is_err());
        assert!(read(clock(BCD_24H, [0, 0, 0, 0x31, 0x04, 0x23]), None).is_err());
        assert!(read(clock(BCD_24H, [0, 0, 0, 0x30, 0x04, 0x23]), None).is_ok());
    }

    #[test]
    fn out_of_range_fields_and_bad_bcd_digits_are_named() {
        let cases = [
            ([0x5a, 0, 0, 1, 1, 0x26], "second", 0x5a),
            ([0x60, 0, 0, 1, 1, 0x26], "second", 0x60),
            ([0, 0x60, 0, 1, 1, 0x26], "minute", 0x60),
            ([0, 0, 0x24, 1, 1, 0x26], "hour", 0x24),
            ([0, 0, 0, 0x00, 1, 0x26], "day", 0x00),
            ([0, 0, 0, 1, 0x13, 0x26], "month", 0x13),
            ([0, 0, 0, 1, 0x00, 0x26], "month", 0x00),
            ([0, 0, 0, 1, 1, 0x2f], "year", 0x2f),
        ];
        for (fields, field, value) in cases {
            let err = read(clock(BCD_24H, fields), None).unwrap_err();
            assert_eq!(err, RtcError::Invalid { field, value });
            assert!(err.to_string().contains(field));
        }
        // A binary year above 99 cannot be a year of a century.
        assert_eq!(
            read(clock(DM_BINARY | HOURS_24, [0, 0, 0, 1, 1, 100]), None),
            Err(RtcError::Invalid {
                field: "year",
                value: 100
            })
        );
    }

    #[test]
    fn an_update_in_progress_is_waited_out() {
        let mut cmos = FakeCmos::new(clock(BCD_24H, [0x56, 0x34, 0x12, 0x21, 0x11, 0x26]));
        cmos.busy_reads = 5;
        assert_eq!(
            read_time(&mut cmos, None),
            Ok(date(2026, 11, 21, 12, 34, 56))
        );
        assert_eq!(cmos.busy_reads, 0);
    }

    #[test]
    fn an_update_that_never_ends_is_an_error_not_a_hang() {
        let mut cmos = FakeCmos::new(clock(BCD_24H, [0, 0, 0, 1, 1, 0x26]));
        cmos.busy_reads = u32::MAX;
        assert_eq!(read_time(&mut cmos, None), Err(RtcError::UpdateNeverEnds));
        assert_eq!(u32::MAX - cmos.busy_reads, MAX_UIP_READS + 1);
    }

    #[test]
    fn a_minute_rollover_during_a_read_is_retried() {
        let before = clock(BCD_24H, [0x59, 0x34, 0x12, 0x21, 0x11, 0x26]);
        let after = clock(BCD_24H, [0x00, 0x35, 0x12, 0x21, 0x11, 0x26]);
        let mut cmos = FakeCmos::new(before);
        // The probe reads status A; the first snapshot reads status A, B and seconds (0x59)
        // before the tick, then the new minute: a torn 12:35:59.
        cmos.tick = Some((4, after));
        assert_eq!(
            read_time(&mut cmos, None),
            Ok(date(2026, 11, 21, 12, 35, 0))
        );
    }

    #[test]
    fn registers_that_never_agree_are_unstable() {
        let mut cmos = FakeCmos::new(clock(DM_BINARY | HOURS_24, [0, 0, 0, 1, 1, 26]));
        cmos.racing_seconds = true;
        let err = read_time(&mut cmos, None).unwrap_err();
        assert_eq!(err, RtcError::Unstable);
        assert_eq!(cmos.seconds_reads, MAX_SNAPSHOTS);
        assert!(err.to_string().contains("8 consecutive reads"));
    }

    #[test]
    fn all_ones_is_absent() {
        assert_eq!(read([0xff; 128], None), Err(RtcError::Absent));
        assert_eq!(read([0xff; 128], Some(CENTURY)), Err(RtcError::Absent));
    }

    #[test]
    fn a_century_index_outside_cmos_ram_is_refused() {
        let registers = clock(BCD_24H, [0, 0, 0, 1, 1, 0x26]);
        for index in [0x00, SECONDS + 5, 0x0d, 0x80, 0xff] {
            assert_eq!(
                read(registers, Some(index)),
                Err(RtcError::BadCenturyRegister(index))
            );
        }
        for index in [FIRST_RAM_BYTE, BANK_BYTES - 1] {
            let mut registers = registers;
            registers[usize::from(index)] = 0x20;
            assert_eq!(read(registers, Some(index)).unwrap().year, 2026);
        }
    }

    #[test]
    fn seconds_register_is_one_raw_read() {
        let mut cmos = FakeCmos::new(clock(BCD_24H, [0x42, 0, 0, 1, 1, 0x26]));
        assert_eq!(seconds_register(&mut cmos), 0x42);
        assert_eq!(cmos.reads, 1);
    }

    #[test]
    fn unix_seconds_of_known_dates() {
        // Checked with `date -u -d '<date>' +%s`.
        assert_eq!(date(1970, 1, 1, 0, 0, 0).unix_seconds(), 0);
        assert_eq!(date(2000, 3, 1, 0, 0, 0).unix_seconds(), 951_868_800);
        assert_eq!(date(2000, 2, 29, 23, 59, 59).unix_seconds(), 951_868_799);
        assert_eq!(date(2026, 11, 21, 12, 34, 56).unix_seconds(), 1_795_264_496);
        assert_eq!(date(2024, 7, 4, 15, 30, 0).unix_seconds(), 1_720_107_000);
        assert_eq!(date(2099, 12, 31, 23, 59, 59).unix_seconds(), 4_102_444_799);
    }

    #[test]
    fn unix_seconds_before_1970_or_of_nonsense_fields_does_not_panic() {
        assert_eq!(date(1969, 12, 31, 23, 59, 59).unix_seconds(), 0);
        assert_eq!(date(0, 0, 0, 0, 0, 0).unix_seconds(), 0);
        let _ = date(u32::MAX, 255, 255, 255, 255, 255).unix_seconds();
    }
}
