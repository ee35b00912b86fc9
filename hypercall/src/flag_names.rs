//! Printing flag sets as the `@janus env` line wants values: no spaces, no `=`.

use core::fmt;

/// Writes the names of the set bits of `bits`, lowest first, joined by `,`; a bit without
/// a name prints as `bit<N>`, an empty set as `none`.
pub(crate) fn write_flag_names(
    f: &mut fmt::Formatter<'_>,
    bits: u32,
    names: &[(u32, &str)],
) -> fmt::Result {
    if bits == 0 {
        return f.write_str("none");
    }
    let mut first = true;
    for bit in 0..u32::BITS {
        let mask = 1 << bit;
        if bits & mask == 0 {
            continue;
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        match names.iter().find(|(m, _)| *m == mask) {
            Some((_, name)) => f.write_str(name)?,
            None => write!(f, "bit{bit}")?,
        }
    }
    Ok(())
}
