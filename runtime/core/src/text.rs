//! Byte strings in fixed buffers: what the runtime formats and joins without
//! allocating (paths for raw syscalls, event lines, the stand-alone report).

use core::fmt;

/// A `fmt::Write` into a fixed buffer that reports overflow as an error.
pub struct FixedBuf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl<'a> FixedBuf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FixedBuf { buf, len: 0 }
    }

    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for FixedBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        crate::mem::copy_slice(&mut self.buf[self.len..end], s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `parts` joined into `buf` with a NUL; the length including the NUL.
pub fn join(buf: &mut [u8], parts: &[&[u8]]) -> Option<usize> {
    let mut n = 0;
    for p in parts {
        if n + p.len() + 1 > buf.len() {
            return None;
        }
        crate::mem::copy_slice(&mut buf[n..n + p.len()], p);
        n += p.len();
    }
    buf[n] = 0;
    Some(n + 1)
}

/// The bytes of `buf` before its first NUL.
pub fn cstr(buf: &[u8]) -> &[u8] {
    let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    &buf[..n]
}

/// Stores `src` in `dst` with a NUL, cut to fit.
pub fn store_cstr(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len() - 1);
    crate::mem::copy_slice(&mut dst[..n], &src[..n]);
    dst[n] = 0;
}
