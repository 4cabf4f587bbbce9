//! Standard error that never fails the run: a closed pipe (`2>&1 | head -n1`) or a full
//! device (`2>/dev/full`) loses the message, not the answers. `eprintln!` panics there.

use std::io::Write;

/// Writes one line to standard error, ignoring any failure.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` that cannot panic: use it for every diagnostic.
#[macro_export]
macro_rules! stderr_line {
    ($($arg:tt)*) => {
        $crate::stderr::line(format_args!($($arg)*))
    };
}
