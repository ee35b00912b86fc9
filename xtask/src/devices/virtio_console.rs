//! The virtio-console check: the kernel writes `@janus console-check nonce=<16 hex digits>`
//! on the virtio console, which QEMU writes to a file, and reports the same nonce on the
//! serial console with `@janus test virtio-console pass nonce=<n>`.

/// What the kernel writes on the virtio console before the nonce.
pub const LINE_PREFIX: &str = "@janus console-check nonce=";

/// A nonce is 16 hex digits.
pub fn is_nonce(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks that the console log `log` (from the file named `file` in messages) carries
/// `nonce`: `Ok` with the one-line detail, or `Err` with what is wrong.
pub fn check_nonce(log: &str, nonce: &str, file: &str) -> Result<String, String> {
    if !is_nonce(nonce) {
        return Err(format!(
            "the serial console's nonce={nonce} is not 16 hex digits"
        ));
    }
    let found: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix(LINE_PREFIX))
        .collect();
    if found.iter().any(|n| n.eq_ignore_ascii_case(nonce)) {
        return Ok(format!("nonce {nonce} found in {file}"));
    }
    if log.trim().is_empty() {
        return Err(format!(
            "nonce {nonce} not found: {file} is empty, nothing arrived on the virtio console"
        ));
    }
    match found.last() {
        Some(other) => Err(format!(
            "nonce {nonce} not found: {file} has nonce={other} instead"
        )),
        None => Err(format!(
            "nonce {nonce} not found: {file} has {} bytes but no `{LINE_PREFIX}` line",
            log.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef";

    #[test]
    fn the_nonce_line_is_found_among_others() {
        for log in [
            "@janus console-check nonce=0123456789abcdef\n",
            "hello\r\n@janus console-check nonce=0123456789abcdef\r\nbye\r\n",
            "@janus console-check nonce=0123456789ABCDEF",
        ] {
            assert_eq!(
                check_nonce(log, NONCE, "virtcon.log"),
                Ok("nonce 0123456789abcdef found in virtcon.log".into()),
                "{log:?}"
            );
        }
    }

    #[test]
    fn a_missing_or_different_nonce_says_what_is_there() {
        assert_eq!(
            check_nonce("", NONCE, "virtcon.log").unwrap_err(),
            "nonce 0123456789abcdef not found: virtcon.log is empty, nothing arrived on the \
             virtio console"
        );
        assert_eq!(
            check_nonce(
                "@janus console-check nonce=fedcba9876543210\n",
                NONCE,
                "virtcon.log"
            )
            .unwrap_err(),
            "nonce 0123456789abcdef not found: virtcon.log has nonce=fedcba9876543210 instead"
        );
        assert_eq!(
            check_nonce("0123456789abcdef", NONCE, "virtcon.log").unwrap_err(),
            "nonce 0123456789abcdef not found: virtcon.log has 16 bytes but no \
             `@janus console-check nonce=` line"
        );
    }

    #[test]
    fn a_nonce_must_be_16_hex_digits() {
        assert!(is_nonce(NONCE));
        for bad in [
            "",
            "0123",
            "0123456789abcdefa",
            "0123456789abcdeg",
            "+123456789abcdef",
        ] {
            assert!(!is_nonce(bad), "{bad:?}");
            let err = check_nonce(&format!("{LINE_PREFIX}{bad}"), bad, "v.log").unwrap_err();
            assert!(err.contains("is not 16 hex digits"), "{err}");
        }
    }
}
