//! Writing one record's fields, packed little-endian, into a slot the caller owns.
//!
//! Guarantees: never writes past the slot; a too-small slot is reported by `finish`. Must
//! never allocate (it runs once per event).

/// Cursor over an event slot.
pub struct RecordWriter<'a> {
    out: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> RecordWriter<'a> {
    /// Starts writing at the beginning of `out`.
    pub fn new(out: &'a mut [u8]) -> RecordWriter<'a> {
        RecordWriter {
            out,
            pos: 0,
            overflow: false,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        match self.out.get_mut(self.pos..self.pos + bytes.len()) {
            Some(dst) => dst.copy_from_slice(bytes),
            None => self.overflow = true,
        }
        self.pos += bytes.len();
    }

    /// Appends a `u1`.
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    /// Appends a `u2`.
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    /// Appends a `u4`.
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    /// Appends a `u8`.
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    /// Appends an `f4`.
    pub fn f32(&mut self, v: f32) {
        self.put(&v.to_le_bytes());
    }
    /// Appends an `f8`.
    pub fn f64(&mut self, v: f64) {
        self.put(&v.to_le_bytes());
    }

    /// Bytes written, or `Err(needed)` if the slot was too small or not filled exactly.
    pub fn finish(self) -> Result<usize, usize> {
        if self.overflow || self.pos != self.out.len() {
            Err(self.pos)
        } else {
            Ok(self.pos)
        }
    }
}
