//! Fatal errors: one line on stderr, then `abort()`.
//!
//! Misuse (a double free, a free of an interior or foreign pointer) is caught, never
//! absorbed. The message is written with `write(2)` from a stack buffer: no formatting
//! machinery, no allocation, no panic hook.

/// Writes `gomalloc: <msg> 0x<addr>` and a newline to stderr and aborts the process.
#[cold]
#[inline(never)]
pub fn fatal(msg: &str, addr: usize) -> ! {
    let mut buf = [0u8; 256];
    let mut n = 0;
    for part in [b"gomalloc: ".as_slice(), msg.as_bytes(), b" 0x".as_slice()] {
        for &b in part {
            if n < buf.len() - 20 {
                buf[n] = b;
                n += 1;
            }
        }
    }
    n += write_hex(&mut buf[n..], addr);
    buf[n] = b'\n';
    n += 1;
    write_stderr(&buf[..n]);
    abort()
}

/// Writes `bytes` to file descriptor 2, ignoring errors.
pub fn write_stderr(bytes: &[u8]) {
    #[cfg(not(miri))]
    // SAFETY: `bytes` is a valid readable buffer of `bytes.len()` bytes.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
    #[cfg(miri)]
    {
        use std::io::Write;
        let _ = std::io::stderr().write_all(bytes);
    }
}

/// Formats `v` as lowercase hex (no prefix) into `out`; returns the length.
pub fn write_hex(out: &mut [u8], v: usize) -> usize {
    let digits = if v == 0 {
        1
    } else {
        (usize::BITS - v.leading_zeros()).div_ceil(4) as usize
    };
    for (i, o) in out[..digits].iter_mut().enumerate() {
        *o = b"0123456789abcdef"[(v >> (4 * (digits - 1 - i))) & 0xf];
    }
    digits
}

/// Formats `v` in decimal into `out`; returns the length.
pub fn write_dec(out: &mut [u8], mut v: usize) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (o, t) in out[..n].iter_mut().zip(tmp[..n].iter().rev()) {
        *o = *t;
    }
    n
}

fn abort() -> ! {
    #[cfg(not(miri))]
    // SAFETY: abort has no preconditions.
    unsafe {
        libc::abort()
    }
    #[cfg(miri)]
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_dec() {
        let mut b = [0u8; 32];
        let n = write_hex(&mut b, 0xdead_beef);
        assert_eq!(&b[..n], b"deadbeef");
        let n = write_hex(&mut b, 0);
        assert_eq!(&b[..n], b"0");
        let n = write_dec(&mut b, 1234567890);
        assert_eq!(&b[..n], b"1234567890");
        let n = write_dec(&mut b, 0);
        assert_eq!(&b[..n], b"0");
    }
}
