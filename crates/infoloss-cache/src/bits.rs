//! Bit streams of the packed mode: least significant bit first, bytes in order (bit `n` of the stream is bit
//! `n % 8` of byte `n / 8`); a row's stream is padded with zero bits to a whole byte.

/// Appends bits to a byte vector.
pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// The low `bits` bits of `v` (`bits ≤ 32`).
    pub(crate) fn put(&mut self, v: u64, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 32 || v >> bits == 0));
        self.acc |= v << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// `q` one bits, then a zero bit.
    pub(crate) fn put_unary(&mut self, mut q: u64) {
        while q >= 32 {
            self.put(u32::MAX as u64, 32);
            q -= 32;
        }
        self.put((1u64 << q) - 1, q as u32 + 1);
    }

    /// Pads to a whole byte.
    pub(crate) fn finish(self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// Reads bits from a byte slice; running past its end is an error, never a panic.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// The stream ended before the value did.
#[derive(Debug)]
pub(crate) struct Truncated;

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u64, Truncated> {
        let b = *self.data.get(self.pos / 8).ok_or(Truncated)?;
        let v = (b >> (self.pos % 8)) & 1;
        self.pos += 1;
        Ok(v as u64)
    }

    /// `bits` bits (`≤ 32`), first bit lowest.
    pub(crate) fn get(&mut self, bits: u32) -> Result<u64, Truncated> {
        if self.pos + bits as usize > self.data.len() * 8 {
            return Err(Truncated);
        }
        let mut v = 0;
        let mut got = 0;
        while got < bits {
            let byte = u64::from(self.data[self.pos / 8]);
            let off = (self.pos % 8) as u32;
            let take = (8 - off).min(bits - got);
            v |= ((byte >> off) & ((1 << take) - 1)) << got;
            got += take;
            self.pos += take as usize;
        }
        Ok(v)
    }

    /// The number of one bits before the next zero bit (which is consumed); at most `limit` ones are accepted.
    pub(crate) fn get_unary(&mut self, limit: u64) -> Result<u64, Truncated> {
        let mut q = 0;
        while self.bit()? == 1 {
            q += 1;
            if q > limit {
                return Err(Truncated);
            }
        }
        Ok(q)
    }

    /// Whole bytes consumed (the padding included).
    pub(crate) fn bytes_used(&self) -> usize {
        self.pos.div_ceil(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_unary_codes_round_trip_across_byte_boundaries() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        let vals: Vec<(u64, u32)> =
            (0..200).map(|i| ((i * 2_654_435_761u64) & ((1 << (i % 33)) - 1), (i % 33) as u32)).collect();
        for &(v, b) in &vals {
            w.put(v, b);
            w.put_unary(v % 70);
        }
        w.finish();
        let mut r = BitReader::new(&buf);
        for &(v, b) in &vals {
            assert_eq!(r.get(b).unwrap(), v);
            assert_eq!(r.get_unary(1000).unwrap(), v % 70);
        }
        assert_eq!(r.bytes_used(), buf.len());
        assert!(r.get(16).is_err(), "reading past the end is an error");
    }

    #[test]
    fn the_first_bit_is_the_lowest_bit_of_the_first_byte() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        w.put(0b101, 3);
        w.put_unary(2); // 1, 1, 0
        w.finish();
        assert_eq!(buf, [0b0001_1101]);
    }
}
