//! Xen's error codes (xen/include/public/errno.h; the values follow x86 Linux). Hypercalls
//! return `-errno` on failure.

use core::fmt;

macro_rules! xen_errors {
    ($($name:ident = $value:literal, $text:literal;)*) => {
        /// A Xen error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum XenError {
            $($name,)*
            /// A negative result whose value this kernel does not know.
            Unknown(i64),
        }

        impl XenError {
            /// The error for a negative hypercall result.
            pub fn from_errno(errno: i64) -> Self {
                match errno {
                    $($value => Self::$name,)*
                    other => Self::Unknown(other),
                }
            }

            /// The positive errno value.
            pub fn errno(self) -> i64 {
                match self {
                    $(Self::$name => $value,)*
                    Self::Unknown(other) => other,
                }
            }

            fn describe(self) -> &'static str {
                match self {
                    $(Self::$name => $text,)*
                    Self::Unknown(_) => "unknown error",
                }
            }
        }
    };
}

xen_errors! {
    Eperm = 1, "operation not permitted";
    Enoent = 2, "no such entry";
    Esrch = 3, "no such domain or process";
    Eintr = 4, "interrupted";
    Eio = 5, "I/O error";
    Enxio = 6, "no such device or address";
    E2big = 7, "argument list too long";
    Enoexec = 8, "exec format error";
    Ebadf = 9, "bad file number";
    Echild = 10, "no child processes";
    Eagain = 11, "try again";
    Enomem = 12, "out of memory";
    Eacces = 13, "permission denied";
    Efault = 14, "bad address";
    Ebusy = 16, "busy";
    Eexist = 17, "already exists";
    Exdev = 18, "cross-device link";
    Enodev = 19, "no such device";
    Enotdir = 20, "not a directory";
    Eisdir = 21, "is a directory";
    Einval = 22, "invalid argument";
    Enfile = 23, "file table overflow";
    Emfile = 24, "too many open files";
    Enospc = 28, "no space left";
    Erofs = 30, "read-only";
    Emlink = 31, "too many links";
    Edom = 33, "argument out of domain";
    Erange = 34, "result out of range";
    Edeadlk = 35, "deadlock would occur";
    Enametoolong = 36, "name too long";
    Enolck = 37, "no locks available";
    Enosys = 38, "function not implemented";
    Enotempty = 39, "not empty";
    Enodata = 61, "no data available";
    Etime = 62, "timer expired";
    Ebadmsg = 74, "not a data message";
    Eoverflow = 75, "value too large";
    Eilseq = 84, "illegal byte sequence";
    Erestart = 85, "interrupted call should be restarted";
    Enotsock = 88, "not a socket";
    Emsgsize = 90, "message too large";
    Eopnotsupp = 95, "operation not supported";
    Eaddrinuse = 98, "address in use";
    Eaddrnotavail = 99, "address not available";
    Enobufs = 105, "no buffer space";
    Eisconn = 106, "already connected";
    Enotconn = 107, "not connected";
    Etimedout = 110, "timed out";
    Econnrefused = 111, "connection refused";
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Xen error {} ({})", self.errno(), self.describe())
    }
}

/// A raw hypercall result: non-negative is success, `-errno` an error.
pub fn check(result: i64) -> Result<u64, XenError> {
    if result < 0 {
        Err(XenError::from_errno(result.wrapping_neg()))
    } else {
        Ok(result as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_results_map_to_errors() {
        assert_eq!(check(-38), Err(XenError::Enosys));
        assert_eq!(check(-1), Err(XenError::Eperm));
        assert_eq!(check(-22), Err(XenError::Einval));
        assert_eq!(check(-4242), Err(XenError::Unknown(4242)));
        assert_eq!(check(i64::MIN), Err(XenError::Unknown(i64::MIN)));
    }

    #[test]
    fn non_negative_results_are_values() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(0x4_0011), Ok(0x4_0011));
    }

    #[test]
    fn errno_round_trips_and_messages_name_the_code() {
        for errno in 1..=120 {
            let e = XenError::from_errno(errno);
            assert_eq!(e.errno(), errno);
        }
        assert_eq!(
            XenError::Enosys.to_string(),
            "Xen error 38 (function not implemented)"
        );
    }
}
