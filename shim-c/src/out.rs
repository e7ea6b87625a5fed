//! Text output that never allocates: a fixed stack buffer, decimal numbers, `write(2)`.
//!
//! `malloc_stats`, `malloc_info` and the panic handler print through this; `printf` and
//! `core::fmt` are not used because both may allocate or take locks inside the allocator.

/// A line (or a few) of text built in a stack buffer. Text past the buffer is dropped.
pub(crate) struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    /// An empty buffer.
    pub(crate) const fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Appends `s` (truncated at the end of the buffer).
    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn bytes(&mut self, s: &[u8]) {
        for &b in s {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Appends `v` in decimal.
    pub(crate) fn dec(&mut self, v: usize) {
        self.dec_padded(v, 0);
    }

    /// Appends `v` in decimal, right-aligned in `width` columns (`printf("%*zu")`).
    pub(crate) fn dec_padded(&mut self, mut v: usize, width: usize) {
        let mut tmp = [b' '; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        let digits = tmp.len() - i;
        for _ in digits..width {
            self.bytes(b" ");
        }
        self.bytes(&tmp[i..]);
    }

    /// The text so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the text to file descriptor `fd` (retrying short writes, ignoring errors)
    /// and empties the buffer.
    pub(crate) fn flush(&mut self, fd: libc::c_int) {
        let mut done = 0;
        while done < self.len {
            let rest = &self.buf[done..self.len];
            // SAFETY: `rest` is a readable buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                done += n as usize;
            } else if n < 0 && errno() == libc::EINTR {
                continue;
            } else {
                break;
            }
        }
        self.len = 0;
    }
}

/// The calling thread's `errno`.
#[inline(always)]
pub(crate) fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline(always)]
pub(crate) fn set_errno(e: libc::c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e }
}
