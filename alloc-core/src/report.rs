//! Fatal errors: one line on stderr, then `abort()`.
//!
//! Misuse (a double free, a free of an interior or foreign pointer) is caught, never
//! absorbed. The message is written with `write(2)` from a stack buffer: no formatting
//! machinery, no allocation, no panic hook.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

/// Ends the process for a double free of `addr` (one message wherever it is caught: a
/// local free, a remote push, the owner's collection of remote frees).
#[cold]
#[inline(never)]
pub fn double_free(addr: usize) -> ! {
    fatal("double free of", addr)
}

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
    // A raw system call: it leaves errno alone, and the scavenger thread may not enter
    // libc (`crate::sys`).
    #[cfg(not(miri))]
    crate::sys::write(2, bytes);
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

/// Text built in a fixed stack buffer, for diagnostics written without allocating
/// (warnings, the statistics summary). Text past the buffer's end is dropped.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, s: &[u8]) -> &mut Line {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    /// Appends a string.
    pub fn str(&mut self, s: &str) -> &mut Line {
        self.bytes(s.as_bytes())
    }

    /// Appends `v` in decimal, right-aligned in `width` columns (`printf("%*zu")`).
    pub fn dec_padded(&mut self, v: usize, width: usize) -> &mut Line {
        let mut tmp = [0u8; 20];
        let n = write_dec(&mut tmp, v);
        for _ in n..width {
            self.bytes(b" ");
        }
        self.bytes(&tmp[..n])
    }

    /// Appends `v` in decimal.
    pub fn dec(&mut self, v: usize) -> &mut Line {
        self.dec_padded(v, 0)
    }

    /// Appends `0x` and `v` in hex.
    pub fn hex(&mut self, v: usize) -> &mut Line {
        let mut tmp = [0u8; 16];
        let n = write_hex(&mut tmp, v);
        self.str("0x").bytes(&tmp[..n])
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the text to `fd` (retrying short and interrupted writes, ignoring other
    /// errors) and empties the line.
    pub fn flush_to(&mut self, fd: i32) {
        let mut done = 0;
        while done < self.len {
            let rest = &self.buf[done..self.len];
            #[cfg(not(miri))]
            // SAFETY: `rest` is a readable buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            #[cfg(miri)]
            let n = {
                let _ = fd;
                write_stderr(rest);
                rest.len() as isize
            };
            if n > 0 {
                done += n as usize;
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            } else {
                break;
            }
        }
        self.len = 0;
    }
}

/// Formatted text (`write!`) appended as [`Line::str`] appends it: what passes the
/// buffer's end is dropped, and writing never fails.
impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.str(s);
        Ok(())
    }
}

fn abort() -> ! {
    // The scavenger thread has no glibc thread descriptor, which `abort()` uses.
    #[cfg(not(any(miri, loom)))]
    if crate::scavenge::on_thread() {
        crate::sys::abort_thread();
    }
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

    #[test]
    fn lines_format_and_truncate() {
        let mut l = Line::new();
        l.str("a=")
            .dec(42)
            .str(" p=")
            .hex(0xbeef)
            .str(" [")
            .dec_padded(7, 3)
            .str("]");
        assert_eq!(l.as_bytes(), b"a=42 p=0xbeef [  7]");
        for _ in 0..100 {
            l.str("0123456789");
        }
        assert_eq!(l.as_bytes().len(), 512);
    }
}
