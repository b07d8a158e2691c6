//! Binary encoding of an [`Rrd`] for snapshots: the definition as JSON
//! (small, self-describing), then the live state and the rows as
//! little-endian numbers. Decoding validates every length against the
//! definition, so a corrupt snapshot is an error, never a panic.

use super::{CdpPrep, PdpPrep, Rra, Rrd, RrdDef};

/// Little-endian writer.
#[derive(Debug, Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i128(&mut self, v: i128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Error of decoding: what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt snapshot: {0}")]
pub struct Corrupt(pub String);

/// Little-endian reader over a slice.
#[derive(Debug)]
pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Corrupt> {
        if self.buf.len() < n {
            return Err(Corrupt(format!("truncated at {what}")));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8, Corrupt> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, Corrupt> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| Corrupt(what.into()))?,
        ))
    }
    pub fn i128(&mut self, what: &str) -> Result<i128, Corrupt> {
        let b = self.take(16, what)?;
        Ok(i128::from_le_bytes(
            b.try_into().map_err(|_| Corrupt(what.into()))?,
        ))
    }
    pub fn f64(&mut self, what: &str) -> Result<f64, Corrupt> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], Corrupt> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| Corrupt(format!("length of {what}")))?;
        self.take(n, what)
    }
    pub fn str(&mut self, what: &str) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| Corrupt(format!("utf-8 in {what}")))
    }
}

impl Rrd {
    /// Appends this RRD's encoding.
    pub fn encode(&self, e: &mut Enc) {
        // serde_json of plain data cannot fail.
        let def = serde_json::to_string(&self.def).unwrap_or_default();
        e.str(&def);
        e.u64(self.last_up);
        for p in &self.pdp {
            match p.last_ds {
                Some(v) => {
                    e.u8(1);
                    e.i128(v);
                }
                None => e.u8(0),
            }
            e.f64(p.val);
            e.u64(p.unkn_sec);
        }
        for r in &self.rras {
            e.u64(r.cur_row as u64);
            for c in &r.cdp {
                e.f64(c.val);
                e.u64(c.unkn_pdp);
                e.f64(c.primary);
                e.f64(c.secondary);
            }
            e.buf.reserve(r.data.len() * 8);
            for v in &r.data {
                e.f64(*v);
            }
        }
    }

    /// Reads one RRD written by [`Rrd::encode`].
    pub fn decode(d: &mut Dec<'_>) -> Result<Self, Corrupt> {
        let def: RrdDef = serde_json::from_str(d.str("definition")?)
            .map_err(|e| Corrupt(format!("definition: {e}")))?;
        let last_up = d.u64("last update")?;
        let mut rrd = Rrd::new(def, last_up).map_err(|e| Corrupt(e.to_string()))?;
        for i in 0..rrd.pdp.len() {
            let last_ds = match d.u8("last_ds tag")? {
                0 => None,
                1 => Some(d.i128("last_ds")?),
                t => return Err(Corrupt(format!("last_ds tag {t}"))),
            };
            rrd.pdp[i] = PdpPrep {
                last_ds,
                val: d.f64("pdp val")?,
                unkn_sec: d.u64("unknown seconds")?,
            };
        }
        for (ri, r) in rrd.rras.iter_mut().enumerate() {
            let rows = rrd.def.rras[ri].rows;
            let cur = d.u64("cur_row")? as usize;
            if cur >= rows {
                return Err(Corrupt(format!("cur_row {cur} >= rows {rows}")));
            }
            let cdp: Result<Vec<CdpPrep>, Corrupt> = (0..r.cdp.len())
                .map(|_| {
                    Ok(CdpPrep {
                        val: d.f64("cdp val")?,
                        unkn_pdp: d.u64("cdp unknown")?,
                        primary: d.f64("primary")?,
                        secondary: d.f64("secondary")?,
                    })
                })
                .collect();
            let raw = d.take(r.data.len() * 8, "rows")?;
            let data = raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            *r = Rra {
                cur_row: cur,
                data,
                cdp: cdp?,
            };
        }
        Ok(rrd)
    }
}
